/* http_fresh: store lag and consistency-token waits (see http_fresh.h). */
#include "http_fresh.h"
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

static int add_lag(void *ctx, const char *topic, int32_t partition, const store_offset_t *off)
{
    http_lag_t *lag = ctx;
    (void)topic;
    (void)partition;
    int64_t behind = off->so_high_watermark > off->so_next_offset
                         ? off->so_high_watermark - off->so_next_offset
                         : 0;
    lag->hl_partitions++;
    lag->hl_messages += behind;
    if (behind && off->so_last_event_ms && lag->hl_now_ms - off->so_last_event_ms > lag->hl_lag_ms)
        lag->hl_lag_ms = lag->hl_now_ms - off->so_last_event_ms;
    if (off->so_updated_ms > lag->hl_newest_commit_ms)
        lag->hl_newest_commit_ms = off->so_updated_ms;
    return 0;
}

int http_fresh_lag(store_t *store, MDB_txn *txn, int64_t now_ms, http_lag_t *ret_lag)
{
    http_lag_t lag = {now_ms, 0, 0, 0, 0};
    int rc = store_offset_foreach(store, txn, add_lag, &lag);
    if (!rc)
        *ret_lag = lag;
    return rc;
}

/* Fills wait's missing mask and have offsets from txn. */
static int check(store_t *store, MDB_txn *txn, const http_min_offset_t *tokens, size_t count,
                 http_wait_t *wait)
{
    wait->hw_missing = 0;
    for (size_t i = 0; i < count; i++) {
        store_offset_t off;
        int rc = store_offset_get(store, txn, tokens[i].mo_topic, tokens[i].mo_partition, &off);
        if (rc && rc != RM_ENOTFOUND)
            return rc;
        wait->hw_have[i] = rc ? 0 : off.so_next_offset;
        if (wait->hw_have[i] <= tokens[i].mo_offset)
            wait->hw_missing |= UINT64_C(1) << i;
    }
    wait->hw_reached = wait->hw_missing == 0;
    return 0;
}

/* Takes a waiter slot; false when query_api.consistency_max_waiters are taken. */
static bool waiter_enter(http_ctx_t *ctx)
{
    int64_t max_waiters = cfg_int(ctx->hc_app->ap_cfg, "query_api.consistency_max_waiters");
    if (__atomic_add_fetch(&ctx->hc_waiters, 1, __ATOMIC_RELAXED) <= max_waiters)
        return true;
    __atomic_sub_fetch(&ctx->hc_waiters, 1, __ATOMIC_RELAXED);
    return false;
}

static void waiter_leave(http_ctx_t *ctx)
{
    __atomic_sub_fetch(&ctx->hc_waiters, 1, __ATOMIC_RELAXED);
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
        rc = rc ? rc : check(*store, *txn, tokens, count, wait);
    }
    return rc;
}

int http_fresh_wait(http_ctx_t *ctx, const http_min_offset_t *tokens, size_t count,
                    int64_t wait_ms, store_t **ret_store, MDB_txn **ret_txn, http_wait_t *ret_wait)
{
    assert(count <= HTTP_MIN_OFFSETS_MAX); /* hw_missing has one bit per token */
    http_wait_t wait;
    memset(&wait, 0, sizeof(wait));
    int64_t start = rm_mono_ms();
    MDB_txn *txn = NULL;
    store_t *store = NULL;
    int rc = http_txn(ctx, &store, &txn);
    rc = rc ? rc : check(store, txn, tokens, count, &wait);
    if (!rc && !wait.hw_reached && wait_ms > 0) {
        if (waiter_enter(ctx)) {
            rc = poll_until(ctx, &store, tokens, count, start + wait_ms, &txn, &wait);
            waiter_leave(ctx);
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
