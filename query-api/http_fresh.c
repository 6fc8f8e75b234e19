/* http_fresh: store lag and consistency-token waits (see http_fresh.h). */
#include "http_fresh.h"
#include "http_logend.h"
#include "rm_time.h"
#include "cfg.h"
#include "rm_err.h"

#include <assert.h>
#include <string.h>
#include <time.h>

/* Poll period of a consistency wait. The projector commits at most every
 * projector.batch_max_ms (20 ms by default), so 2 ms adds little to a read-your-writes
 * answer, while a renew plus one offsets get per token costs a few µs per poll. */
#define HTTP_FRESH_POLL_MS 2

/* Longest wait for Kafka's answer on a partition's log end (note 3): a broker round trip
 * is a few ms; a broker that does not answer in this time leaves the token unknown, and
 * the request waits for it as it would have. */
#define HTTP_FRESH_LOGEND_TIMEOUT_MS 500

/* State of one scan of the offsets db. The scan keeps what does not depend on the clock
 * (a memo, http_ctx.h); lag_of derives the lag as of now from it. A partition's time lag
 * is now - its newest applied event time while it is behind, so the worst one is the
 * partition behind with the oldest such time: one minimum, whatever now is. */
typedef struct lag_scan {
    http_lag_memo_t *ls_memo;
    const view_t *ls_view;        /* NULL: the view's total only */
    int ls_topic;                 /* index of the previous row's topic: rows come sorted by
                                     topic, so most rows skip the name lookup */
} lag_scan_t;

static int add_lag(void *ctx, const char *topic, int32_t partition, const store_offset_t *off)
{
    lag_scan_t *scan = ctx;
    http_lag_memo_t *memo = scan->ls_memo;
    (void)partition;
    int64_t behind = off->so_high_watermark > off->so_next_offset
                         ? off->so_high_watermark - off->so_next_offset
                         : 0;
    /* no event time yet: behind, but no time lag to measure (as before the memo) */
    int64_t oldest = behind && off->so_last_event_ms ? off->so_last_event_ms : INT64_MAX;
    memo->lm_partitions++;
    memo->lm_messages += behind;
    if (oldest < memo->lm_oldest_behind_ms)
        memo->lm_oldest_behind_ms = oldest;
    if (off->so_updated_ms > memo->lm_newest_commit_ms)
        memo->lm_newest_commit_ms = off->so_updated_ms;
    if (!scan->ls_view)
        return 0;
    const view_t *view = scan->ls_view;
    if (scan->ls_topic < 0 || strcmp(view->v_topics[scan->ls_topic], topic) != 0)
        scan->ls_topic = view_topic_index(view, topic);
    if (scan->ls_topic >= 0) {
        memo->lm_topic_messages[scan->ls_topic] += behind;
        if (oldest < memo->lm_topic_oldest_ms[scan->ls_topic])
            memo->lm_topic_oldest_ms[scan->ls_topic] = oldest;
    }
    return 0;
}

static int scan_lag(const view_t *view, store_t *store, MDB_txn *txn, http_lag_memo_t *ret_memo)
{
    http_lag_memo_t memo;
    memo.lm_partitions = 0;
    memo.lm_messages = 0;
    memo.lm_newest_commit_ms = 0;
    memo.lm_oldest_behind_ms = INT64_MAX;
    for (size_t t = 0; view && t < view->v_topic_count; t++) {
        memo.lm_topic_messages[t] = 0;
        memo.lm_topic_oldest_ms[t] = INT64_MAX;
    }
    lag_scan_t scan = {&memo, view, -1};
    int rc = store_offset_foreach(store, txn, add_lag, &scan);
    if (rc)
        return rc;
    memo.lm_txn_id = mdb_txn_id(txn);
    memo.lm_valid = view != NULL;
    *ret_memo = memo;
    return 0;
}

/* The time lag as of now_ms of a partition set whose oldest behind event time is oldest. */
static int64_t lag_ms_of(int64_t now_ms, int64_t oldest)
{
    return oldest != INT64_MAX && now_ms > oldest ? now_ms - oldest : 0;
}

static void lag_of(const http_lag_memo_t *memo, int64_t now_ms, http_lag_t *ret_lag)
{
    ret_lag->hl_now_ms = now_ms;
    ret_lag->hl_partitions = memo->lm_partitions;
    ret_lag->hl_messages = memo->lm_messages;
    ret_lag->hl_lag_ms = lag_ms_of(now_ms, memo->lm_oldest_behind_ms);
    ret_lag->hl_newest_commit_ms = memo->lm_newest_commit_ms;
}

int http_fresh_lag(store_t *store, MDB_txn *txn, int64_t now_ms, http_lag_t *ret_lag)
{
    http_lag_memo_t memo;
    int rc = scan_lag(NULL, store, txn, &memo);
    if (!rc)
        lag_of(&memo, now_ms, ret_lag);
    return rc;
}

int http_fresh_lag_topics(const view_t *view, store_t *store, MDB_txn *txn, int64_t now_ms,
                          http_lag_memo_t *memo, http_lag_t *ret_lag, http_topic_lag_t *ret_topics)
{
    assert(view->v_topic_count <= VIEW_MAX_TOPICS); /* view_load refuses more */
    http_lag_memo_t local = {.lm_valid = false}; /* no memo given: scan every time */
    if (!memo)
        memo = &local;
    if (!memo->lm_valid || memo->lm_txn_id != mdb_txn_id(txn)) {
        int rc = scan_lag(view, store, txn, memo);
        if (rc) {
            memo->lm_valid = false;
            return rc;
        }
    }
    lag_of(memo, now_ms, ret_lag);
    for (size_t t = 0; t < view->v_topic_count; t++) {
        ret_topics[t].tl_messages = memo->lm_topic_messages[t];
        ret_topics[t].tl_ms = lag_ms_of(now_ms, memo->lm_topic_oldest_ms[t]);
    }
    return 0;
}

void http_fresh_section_lag(const view_t *view, const http_topic_lag_t *topics,
                            render_lag_t *ret_sections)
{
    for (size_t s = 0; s < view->v_section_count; s++) {
        render_lag_t lag = {0, 0};
        for (size_t t = 0; t < view->v_topic_count; t++) {
            if (!(view->v_sections[s].vs_feeds & (UINT64_C(1) << t)))
                continue;
            lag.rl_messages += topics[t].tl_messages;
            if (topics[t].tl_ms > lag.rl_ms)
                lag.rl_ms = topics[t].tl_ms;
        }
        ret_sections[s] = lag;
    }
}

/* Fills wait's missing mask and have offsets from txn, and (known_end not NULL) each
 * token's partition's high watermark as the store last recorded it (0: none). */
static int check(store_t *store, MDB_txn *txn, const http_min_offset_t *tokens, size_t count,
                 http_wait_t *wait, int64_t *known_end)
{
    wait->hw_missing = 0;
    for (size_t i = 0; i < count; i++) {
        store_offset_t off;
        int rc = store_offset_get(store, txn, tokens[i].mo_topic, tokens[i].mo_partition, &off);
        if (rc && rc != RM_ENOTFOUND)
            return rc;
        wait->hw_have[i] = rc ? 0 : off.so_next_offset;
        if (known_end)
            known_end[i] = rc ? 0 : off.so_high_watermark;
        if (wait->hw_have[i] <= tokens[i].mo_offset)
            wait->hw_missing |= UINT64_C(1) << i;
    }
    wait->hw_reached = wait->hw_missing == 0;
    return 0;
}

static uint64_t principal_hash(const char *principal)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)principal; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h ? h : 1; /* 0 marks a free entry */
}

/* Takes a waiter slot for principal (NULL: none); false when
 * query_api.consistency_max_waiters are taken or principal already holds one. On true,
 * *ret_entry is the slot's index for waiter_leave. Waits are rare next to reads, so one
 * lock is cheap here. */
static bool waiter_enter(http_ctx_t *ctx, const char *principal, size_t *ret_entry)
{
    int64_t max_waiters = cfg_int(ctx->hc_app->ap_cfg, "query_api.consistency_max_waiters");
    uint64_t hash = principal ? principal_hash(principal) : 0;
    bool entered = false;
    pthread_mutex_lock(&ctx->hc_waiter_lock);
    size_t free_entry = HTTP_MAX_WAITERS;
    bool held = false;
    for (size_t i = 0; i < HTTP_MAX_WAITERS; i++) {
        if (!ctx->hc_waiting[i] && free_entry == HTTP_MAX_WAITERS)
            free_entry = i;
        held |= hash && ctx->hc_waiting[i] == hash;
    }
    if (ctx->hc_waiters < max_waiters && !held && free_entry < HTTP_MAX_WAITERS) {
        /* a waiter without a principal still takes an entry: the count stays the
         * number of entries in use */
        ctx->hc_waiting[free_entry] = hash ? hash : UINT64_MAX;
        __atomic_store_n(&ctx->hc_waiters, ctx->hc_waiters + 1, __ATOMIC_RELAXED);
        *ret_entry = free_entry;
        entered = true;
    }
    pthread_mutex_unlock(&ctx->hc_waiter_lock);
    return entered;
}

static void waiter_leave(http_ctx_t *ctx, size_t entry)
{
    pthread_mutex_lock(&ctx->hc_waiter_lock);
    ctx->hc_waiting[entry] = 0;
    __atomic_store_n(&ctx->hc_waiters, ctx->hc_waiters - 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&ctx->hc_waiter_lock);
}

int64_t http_fresh_waiters(http_ctx_t *ctx)
{
    return __atomic_load_n(&ctx->hc_waiters, __ATOMIC_RELAXED);
}

/* Whether some token not yet applied can never be: its offset at or past its partition's
 * log end, or a partition Kafka does not have (note 3). Unknown (Kafka not answering)
 * is not unreachable. */
static bool unreachable(http_ctx_t *ctx, const http_min_offset_t *tokens, size_t count,
                        const http_wait_t *wait, const int64_t *known_end, int64_t deadline_ms)
{
    for (size_t i = 0; ctx->hc_logend && i < count; i++) {
        if (!(wait->hw_missing & (UINT64_C(1) << i)))
            continue;
        int64_t left_ms = deadline_ms - rm_mono_ms();
        int timeout_ms =
            left_ms < HTTP_FRESH_LOGEND_TIMEOUT_MS ? (int)left_ms : HTTP_FRESH_LOGEND_TIMEOUT_MS;
        if (timeout_ms <= 0)
            return false;
        bool exists = true;
        int rc = http_logend_exists(ctx->hc_logend, tokens[i].mo_topic, tokens[i].mo_partition,
                                    tokens[i].mo_offset, known_end[i], timeout_ms, &exists);
        if (rc == RM_ENOTFOUND || (!rc && !exists))
            return true;
    }
    return false;
}

/* Renews the txn every HTTP_FRESH_POLL_MS until the tokens are reached or the deadline
 * (monotonic ms) passes. On error no txn is open. */
static int poll_until(http_ctx_t *ctx, store_t **store, const http_min_offset_t *tokens,
                      size_t count, int64_t deadline_ms, MDB_txn **txn, http_wait_t *wait)
{
    int rc = 0;
    while (!rc && !wait->hw_reached && rm_mono_ms() < deadline_ms) {
        /* Reset before sleeping: an open read txn would pin the pages the projector is
         * replacing, and the renewed one sees its newest commit. */
        http_txn_done();
        struct timespec pause = {0, HTTP_FRESH_POLL_MS * 1000000L};
        nanosleep(&pause, NULL);
        rc = http_txn(ctx, store, txn);
        rc = rc ? rc : check(*store, *txn, tokens, count, wait, NULL);
    }
    return rc;
}

int http_fresh_wait(http_ctx_t *ctx, const char *principal, const http_min_offset_t *tokens,
                    size_t count, int64_t wait_ms, store_t **ret_store, MDB_txn **ret_txn,
                    http_wait_t *ret_wait)
{
    assert(count <= HTTP_MIN_OFFSETS_MAX); /* hw_missing has one bit per token */
    http_wait_t wait;
    memset(&wait, 0, sizeof(wait));
    int64_t start = rm_mono_ms();
    MDB_txn *txn = NULL;
    store_t *store = NULL;
    int64_t known_end[HTTP_MIN_OFFSETS_MAX];
    int rc = http_txn(ctx, &store, &txn);
    rc = rc ? rc : check(store, txn, tokens, count, &wait, known_end);
    size_t entry;
    if (!rc && !wait.hw_reached && wait_ms > 0) {
        if (waiter_enter(ctx, principal, &entry)) {
            /* Asking Kafka may take a round trip: not while holding a read txn. The store
             * is read again afterwards, so the answer comes from one snapshot. */
            http_txn_done();
            wait.hw_unreachable =
                unreachable(ctx, tokens, count, &wait, known_end, start + wait_ms);
            rc = http_txn(ctx, &store, &txn);
            rc = rc ? rc : check(store, txn, tokens, count, &wait, NULL);
            if (!rc && !wait.hw_unreachable)
                rc = poll_until(ctx, &store, tokens, count, start + wait_ms, &txn, &wait);
            waiter_leave(ctx, entry);
        } else {
            wait.hw_busy = true;
        }
    }
    if (rc) {
        http_txn_done();
        return rc;
    }
    wait.hw_waited_ms = rm_mono_ms() - start;
    *ret_store = store;
    *ret_txn = txn;
    *ret_wait = wait;
    return 0;
}
