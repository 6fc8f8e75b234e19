/* pipeline: consume → group-commit batch → apply → commit with offsets (see pipeline.h).
 * Here: life cycle and the consume loop. Assignment, targets and gaps: pipeline_assign.c;
 * dead letters and link-timeout: pipeline_letters.c; partitions held for the registry:
 * pipeline_hold.c; metrics: pipeline_metrics.c; the engine and outbox of a store, and the
 * switch to a new generation (note 7): pipeline_store.c; the order a batch is applied in
 * (sorted by view key): pipeline_order.c; shared: pipeline_int.h. */
#include "pipeline_int.h"
#include "rm_time.h"
#include "failpoint.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "outbox.h"
#include "rm_err.h"

#include <assert.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PIPELINE_POLL_IDLE_MS 100 /* poll timeout when no batch is open: bounds stop latency */
/* Before a clean exit: a broker that is up acks in milliseconds; one that is not must
 * not hold a SIGTERM (the letters stay in the outbox for the next start). Part of the
 * shutdown bound docs/runbook.md states. */
#define PIPELINE_OUTBOX_EXIT_FLUSH_MS 3000

/* A topic "learns links" when the catalog says producers publish on it a record
 * whose rule has a link operation (e.g. OrderCreated on orders). */
static void mark_link_topics(const view_t *view, const catalog_t *catalog, bool *link_topic)
{
    for (size_t r = 0; r < view->v_rule_count; r++) {
        const view_rule_t *rule = &view->v_rules[r];
        bool learns = false;
        for (size_t o = 0; o < rule->vr_op_count; o++)
            learns |= rule->vr_ops[o].vo_kind == VIEW_OP_LINK;
        for (size_t c = 0; learns && c < catalog_count(catalog); c++) {
            const catalog_entry_t *entry = catalog_at(catalog, c);
            int topic = entry->ce_topic && strcmp(entry->ce_full_name, rule->vr_event) == 0
                            ? view_topic_index(view, entry->ce_topic)
                            : -1;
            if (topic >= 0)
                link_topic[topic] = true;
        }
    }
}

/* The consumer, not yet assigned (note 1). NULL with a message in errstr when librdkafka
 * refuses the settings (a property, or a combination it checks when it builds the client):
 * a configuration error. */
static rd_kafka_t *consumer_new(const pipeline_opts_t *opts, char *errstr, size_t errlen)
{
    char group[160];
    snprintf(group, sizeof(group), "readmodel-%s", opts->po_view->v_name);
    /* Defaults chosen for exactly-once effect (docs/architecture.md §2) and for librdkafka
     * 2.0.2's prefetch stall (§8): the prefetch queue holds well over a second of
     * peak input so the fetcher never idles for its fixed 1 s backoff. Config
     * overrides any of them. Formatted by hand: one key and its value a line. */
    /* clang-format off */
    const char *const defaults[] = {
        "group.id", group,
        "enable.auto.commit", "false",
        "enable.auto.offset.store", "false",
        "auto.offset.reset", "error",
        "enable.partition.eof", "false",
        "queued.min.messages", "1000000",
        "queued.max.messages.kbytes", "1048576",
        "fetch.wait.max.ms", "10",
        "fetch.message.max.bytes", "4194304",
        "client.id", "readmodel-projector",
        /* The projector never joins its group (it assigns every partition itself), so
         * the session timeout has one effect here: how long closing the consumer waits
         * for a group coordinator to take offset commits it queued while none was
         * reachable (librdkafka's default, 45 s, held a SIGTERM that long with the
         * brokers down). The store holds the offsets; the next start commits them. */
        "session.timeout.ms", "3000",
        NULL,
    };
    /* clang-format on */
    rd_kafka_conf_t *conf = kafka_conf_new(opts->po_cfg, defaults, errstr, errlen);
    if (!conf)
        return NULL;
    char rkerr[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, rkerr, sizeof(rkerr));
    if (!rk) {
        snprintf(errstr, errlen, "kafka consumer: %s", rkerr);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

int pipeline_new(const pipeline_opts_t *opts, pipeline_t **ret_pipeline, char *errstr,
                 size_t errlen)
{
    pipeline_t *pl = calloc(1, sizeof(*pl));
    if (!pl) {
        snprintf(errstr, errlen, "out of memory");
        return RM_ENOMEM;
    }
    pl->pi_opts = *opts;
    pthread_mutex_init(&pl->pi_lock, NULL);
    /* Buckets: batch sizes from 1 to the 50k where docs/architecture.md §3 measured the LMDB
     * plateau; commit latencies from 100 µs (no fsync) to 2.5 s (a stalled disk). */
    static const double batch_bounds[] = {1, 10, 100, 500, 1000, 2000, 5000, 10000, 20000, 50000};
    static const double commit_bounds[] = {0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                           0.05,   0.1,    0.25,  0.5,    1,     2.5};
    metrics_hist_init(&pl->pi_batch_events, batch_bounds, 10);
    metrics_hist_init(&pl->pi_commit_seconds, commit_bounds, 13);
    const cfg_t *cfg = opts->po_cfg;
    pl->pi_batch_max_events = cfg_int(cfg, "projector.batch_max_events");
    pl->pi_batch_max_ms = cfg_int(cfg, "projector.batch_max_ms");
    pl->pi_metadata_refresh_ms = cfg_int(cfg, "projector.metadata_refresh_ms");
    pl->pi_parked_max_age_ms = cfg_int(cfg, "projector.parked_max_age_s") * 1000;
    pl->pi_parked_check_ms = cfg_int(cfg, "projector.parked_check_interval_ms");
    pl->pi_continue_on_gap =
        !opts->po_scratch && strcmp(cfg_str(cfg, "projector.on_gap"), "continue") == 0;
    pl->pi_gap_tp = -1;
    pl->pi_batch_cap = (size_t)pl->pi_batch_max_events;
    pl->pi_batch = calloc(pl->pi_batch_cap, sizeof(*pl->pi_batch));
    pl->pi_batch_skip = calloc(pl->pi_batch_cap, sizeof(*pl->pi_batch_skip));
    pl->pi_order = calloc(pl->pi_batch_cap, sizeof(*pl->pi_order));
    pl->pi_claims = calloc(pl->pi_batch_cap, sizeof(*pl->pi_claims));
    pl->pi_snap.ps_generation = opts->po_generation;
    pl->pi_tps = calloc(PIPELINE_MAX_PARTITIONS, sizeof(*pl->pi_tps));
    size_t rules = opts->po_view->v_rule_count;
    pl->pi_link_topic = calloc(opts->po_view->v_topic_count, sizeof(bool));
    if (pl->pi_link_topic)
        mark_link_topics(opts->po_view, opts->po_catalog, pl->pi_link_topic);
    pl->pi_applied_by_rule = calloc(rules, sizeof(uint64_t));
    pl->pi_snap.ps_applied_by_rule = calloc(rules, sizeof(uint64_t));
    pl->pi_snap.ps_tps = calloc(PIPELINE_MAX_PARTITIONS, sizeof(pipeline_tp_t));
    pl->pi_snap.ps_high = calloc(PIPELINE_MAX_PARTITIONS, sizeof(int64_t));
    if (!pl->pi_batch || !pl->pi_batch_skip || !pl->pi_order || !pl->pi_claims || !pl->pi_tps ||
        !pl->pi_applied_by_rule || !pl->pi_link_topic || !pl->pi_snap.ps_applied_by_rule ||
        !pl->pi_snap.ps_tps || !pl->pi_snap.ps_high) {
        snprintf(errstr, errlen, "out of memory");
        pipeline_destroy(pl);
        return RM_ENOMEM;
    }
    /* Read once: the hot path then tests one pointer (failpoint.h). */
    int rc = opts->po_scratch
                 ? 0
                 : failpoint_skips_parse(getenv(FAILPOINT_SKIP_ENV), &pl->pi_skips, errstr, errlen);
    if (!rc && !(pl->pi_rk = consumer_new(opts, errstr, errlen)))
        rc = RM_ECONFIG;
    if (!rc)
        rc = pipeline_make_store_parts(pl, opts->po_store, &pl->pi_engine, &pl->pi_outbox, errstr,
                                       errlen);
    if (rc) {
        pipeline_destroy(pl);
        return rc;
    }
    *ret_pipeline = pl;
    return 0;
}

static void batch_release(pipeline_t *pl)
{
    for (size_t i = 0; i < pl->pi_batch_count; i++)
        rd_kafka_message_destroy(pl->pi_batch[i]);
    pl->pi_batch_count = 0;
}

void pipeline_destroy(pipeline_t *pl)
{
    if (!pl)
        return;
    if (pl->pi_batch)
        batch_release(pl);
    if (pl->pi_rk) {
        rd_kafka_assign(pl->pi_rk, NULL);
        rd_kafka_consumer_close(pl->pi_rk);
        rd_kafka_destroy(pl->pi_rk);
    }
    engine_destroy(pl->pi_engine);
    outbox_destroy(pl->pi_outbox);
    failpoint_skips_destroy(pl->pi_skips);
    if (pl->pi_kafka_waiting)
        rd_kafka_topic_partition_list_destroy(pl->pi_kafka_waiting);
    if (pl->pi_kafka_next)
        rd_kafka_topic_partition_list_destroy(pl->pi_kafka_next);
    free(pl->pi_batch);
    free(pl->pi_batch_skip);
    free(pl->pi_order);
    free(pl->pi_claims);
    buf_free(&pl->pi_order_keys);
    free(pl->pi_tps);
    free(pl->pi_applied_by_rule);
    free(pl->pi_link_topic);
    free(pl->pi_snap.ps_applied_by_rule);
    free(pl->pi_snap.ps_tps);
    free(pl->pi_snap.ps_high);
    pthread_mutex_destroy(&pl->pi_lock);
    free(pl);
}

void pipeline_stop(pipeline_t *pl)
{
    pl->pi_stop = 1;
}

/* In the batch's txn: the next offset of every partition the batch read (note 1), with
 * the high watermark and newest event time the query API reports as lag. */
static int put_batch_offsets(pipeline_t *pl, MDB_txn *txn)
{
    const view_t *view = pl->pi_opts.po_view;
    int64_t wall = rm_wall_ms();
    int rc = 0;
    for (size_t i = 0; !rc && i < pl->pi_tp_count; i++) {
        pipeline_tp_t *tp = &pl->pi_tps[i];
        if (tp->pt_batch_next < 0)
            continue;
        int64_t low = 0, high = 0;
        rd_kafka_get_watermark_offsets(pl->pi_rk, view->v_topics[tp->pt_topic], tp->pt_partition,
                                       &low, &high);
        store_offset_t off = {tp->pt_batch_next,
                              high > tp->pt_batch_next ? high : tp->pt_batch_next,
                              tp->pt_batch_event_ms > tp->pt_last_event_ms ? tp->pt_batch_event_ms
                                                                           : tp->pt_last_event_ms,
                              wall};
        rc = store_offset_put(pl->pi_opts.po_store, txn, view->v_topics[tp->pt_topic],
                              tp->pt_partition, &off);
    }
    return rc;
}

/* A message of the batch counts as consumed: its partition's next offset is past it. The
 * largest wins, since a sorted pass applies a partition's messages out of offset order
 * (pipeline_order.c); none at or past a held message counts (apply_one). */
static void consumed(pipeline_tp_t *tp, int64_t offset, int64_t event_ms)
{
    if (offset + 1 > tp->pt_batch_next)
        tp->pt_batch_next = offset + 1;
    if (event_ms > tp->pt_batch_event_ms)
        tp->pt_batch_event_ms = event_ms;
}

/* Applies one message of the open batch in txn. Returns 0; a store error; or RM_EUNAVAIL
 * when its writer schema cannot be fetched now although a later message of its partition
 * was applied already (sorted: its schema answered when the keys were computed): then the
 * batch must be applied again in arrival order (note 10 in pipeline.h). */
static int apply_one(pipeline_t *pl, MDB_txn *txn, const pipeline_entry_t *entry,
                     uint64_t *outcomes, uint64_t *applied_by_rule, uint64_t *skipped)
{
    const rd_kafka_message_t *m = pl->pi_batch[entry->pe_slot];
    pipeline_tp_t *tp = entry->pe_tp;
    if (tp->pt_batch_held >= 0 && m->offset >= tp->pt_batch_held)
        return 0; /* at or behind a message held for the registry: consumed again later */
    if (pl->pi_batch_skip[entry->pe_slot]) {
        /* Before the start time: not applied, but its offset is consumed. */
        consumed(tp, m->offset, 0);
        (*skipped)++;
        return 0;
    }
    const char *topic = rd_kafka_topic_name(m->rkt);
    rd_kafka_timestamp_type_t tstype;
    engine_msg_t msg = {topic,  m->partition, m->offset,  rd_kafka_message_timestamp(m, &tstype),
                        m->key, m->key_len,   m->payload, m->len};
    if (__builtin_expect(pl->pi_skips != NULL, 0) &&
        failpoint_skips_has(pl->pi_skips, topic, m->partition, m->offset)) {
        /* Test hook: consumed, offset advanced, nothing applied (a "lost application"). */
        log_warn("test hook: event consumed without applying it", LOG_S("env", FAILPOINT_SKIP_ENV),
                 LOG_S("topic", topic), LOG_I("partition", m->partition),
                 LOG_I("offset", m->offset));
        pl->pi_batch_hook_skips++;
        consumed(tp, m->offset, 0);
        return 0;
    }
    engine_result_t res;
    int rc = engine_apply(pl->pi_engine, txn, &msg, &res);
    if (rc)
        return rc;
    if (res.er_outcome == ENGINE_REJECTED && res.er_error == RM_EUNAVAIL) {
        if (tp->pt_batch_next > m->offset)
            return RM_EUNAVAIL;
        /* Not poison (note 10): neither applied nor dead-lettered, and nothing after it
         * in its partition is applied before it. */
        tp->pt_batch_held = m->offset;
        snprintf(pl->pi_registry_reason, sizeof(pl->pi_registry_reason), "%s", res.er_reason);
        return 0;
    }
    failpoint("apply-event");
    outcomes[res.er_outcome]++;
    if (res.er_outcome == ENGINE_APPLIED && res.er_rule >= 0)
        applied_by_rule[res.er_rule]++;
    if (res.er_outcome == ENGINE_REJECTED && !pl->pi_opts.po_scratch &&
        (rc = pipeline_dead_letter_rejected(pl, txn, &msg, &res, "event dead-lettered")))
        return rc;
    consumed(tp, m->offset, res.er_event_ms);
    return 0;
}

/* Applies the open batch in one transaction with its offsets; sorted: each pass by view
 * key (pipeline_order.c), else in arrival order. Returns 0 once committed, RM_EMAPFULL
 * after growing the map (caller retries), RM_EUNAVAIL (apply_one: retry in arrival
 * order), or another error. */
static int apply_batch_once(pipeline_t *pl, bool sorted, uint64_t *outcomes,
                            uint64_t *applied_by_rule, uint64_t *skipped)
{
    store_t *store = pl->pi_opts.po_store;
    MDB_txn *txn;
    int rc = store_write_begin(store, &txn);
    if (rc)
        return rc;
    rc = engine_txn_begin(pl->pi_engine, txn);
    if (!rc)
        rc = outbox_txn_begin(pl->pi_outbox, txn);
    for (size_t i = 0; i < pl->pi_tp_count; i++) {
        pl->pi_tps[i].pt_batch_next = -1;
        pl->pi_tps[i].pt_batch_held = -1;
    }
    pl->pi_batch_hook_skips = 0;
    /* Two passes: messages of link-learning topics first, then the rest. Kafka fixes no
     * order across partitions, and every partition belongs to one topic, so a partition's
     * messages all fall in one pass; links learned anywhere in the batch are then known
     * before the events that need them, which avoids parking (measured: a backlog parked
     * 46% of its events). Each pass's keys are computed once the pass before it was
     * applied, so the second pass routes through the links the first one learned. */
    for (int pass = 0; !rc && pass < 2; pass++) {
        size_t count = 0;
        rc = pipeline_order_pass(pl, txn, pass == 0, sorted, &count);
        for (size_t i = 0; !rc && i < count; i++)
            rc = apply_one(pl, txn, &pl->pi_order[i], outcomes, applied_by_rule, skipped);
    }
    if (!rc)
        rc = put_batch_offsets(pl, txn);
    if (!rc)
        rc = pipeline_mark_registry_outage(pl, txn);
    if (!rc)
        rc = engine_txn_precommit(pl->pi_engine, txn);
    if (!rc)
        rc = outbox_txn_precommit(pl->pi_outbox, txn);
    if (rc) {
        store_write_abort(txn);
        return rc;
    }
    return store_write_commit(store, txn);
}

/* Commits to Kafka (for lag tooling) the offsets of store commits that are durable: an
 * OS crash in periodic mode rolls the store back, and Kafka must not claim more than
 * the store keeps. A snapshot waits for the disk while newer offsets collect in the
 * next one, so that steady commits cannot postpone Kafka's offsets forever. */
static void commit_kafka_offsets(pipeline_t *pl, bool may_sync)
{
    store_t *store = pl->pi_opts.po_store;
    uint64_t durable = store_durable_txnid(store);
    uint64_t wanted = pl->pi_kafka_waiting ? pl->pi_kafka_waiting_txnid
                      : pl->pi_kafka_next  ? pl->pi_kafka_next_txnid
                                           : 0;
    /* nometasync: the newest commit is durable only once the next one is, and a quiet
     * view has no next one; with no sync thread to wait for, the idle loop syncs (never
     * after each batch: that would be an fsync per commit, as in sync mode). */
    if (may_sync && durable < wanted && !store_syncs_in_background(store) && store_sync(store) == 0)
        durable = store_durable_txnid(store);
    if (pl->pi_kafka_waiting && durable >= pl->pi_kafka_waiting_txnid) {
        rd_kafka_commit(pl->pi_rk, pl->pi_kafka_waiting, 1);
        rd_kafka_topic_partition_list_destroy(pl->pi_kafka_waiting);
        pl->pi_kafka_waiting = NULL;
    }
    if (!pl->pi_kafka_waiting && pl->pi_kafka_next) {
        pl->pi_kafka_waiting = pl->pi_kafka_next;
        pl->pi_kafka_waiting_txnid = pl->pi_kafka_next_txnid;
        pl->pi_kafka_next = NULL;
        if (durable >= pl->pi_kafka_waiting_txnid) { /* sync durability: at once */
            rd_kafka_commit(pl->pi_rk, pl->pi_kafka_waiting, 1);
            rd_kafka_topic_partition_list_destroy(pl->pi_kafka_waiting);
            pl->pi_kafka_waiting = NULL;
        }
    }
}

/* Before an exit or a switch of the store: makes the store durable now, then commits
 * every queued offset. */
void pipeline_commit_all_kafka_offsets(pipeline_t *pl)
{
    if (!pl->pi_kafka_waiting && !pl->pi_kafka_next)
        return;
    store_sync(pl->pi_opts.po_store);
    commit_kafka_offsets(pl, false);
    commit_kafka_offsets(pl, false);
    /* Left only when the sync failed: those offsets are not durable, and they belong to
     * a store that is not written any more. */
    if (pl->pi_kafka_waiting)
        rd_kafka_topic_partition_list_destroy(pl->pi_kafka_waiting);
    if (pl->pi_kafka_next)
        rd_kafka_topic_partition_list_destroy(pl->pi_kafka_next);
    pl->pi_kafka_waiting = pl->pi_kafka_next = NULL;
}

/* Sets partition's offset in a list queued for Kafka, adding the partition if absent:
 * a newer offset replaces an older one still waiting. */
static void queue_offset(rd_kafka_topic_partition_list_t *list, const char *topic,
                         int32_t partition, int64_t offset)
{
    rd_kafka_topic_partition_t *p = rd_kafka_topic_partition_list_find(list, topic, partition);
    if (!p)
        p = rd_kafka_topic_partition_list_add(list, topic, partition);
    p->offset = offset;
}

/* Note 11: only the live view's pipeline speaks for the group. */
static bool commits_to_group(const pipeline_t *pl)
{
    return !pl->pi_opts.po_scratch && !pl->pi_opts.po_no_group_commit;
}

void pipeline_queue_stored_offsets(pipeline_t *pl)
{
    if (!commits_to_group(pl))
        return;
    const view_t *view = pl->pi_opts.po_view;
    if (!pl->pi_kafka_next)
        pl->pi_kafka_next = rd_kafka_topic_partition_list_new(8);
    rd_kafka_topic_partition_list_t *list = pl->pi_kafka_next;
    for (size_t i = 0; i < pl->pi_tp_count; i++) {
        const pipeline_tp_t *tp = &pl->pi_tps[i];
        if (tp->pt_next_offset < 0)
            continue;
        queue_offset(list, view->v_topics[tp->pt_topic], tp->pt_partition, tp->pt_next_offset);
    }
    if (!list->cnt) {
        rd_kafka_topic_partition_list_destroy(list);
        pl->pi_kafka_next = NULL;
        return;
    }
    /* The store holds these offsets as of its newest commit: the durability wait
     * (commit_kafka_offsets) applies to them as to a batch's. */
    pl->pi_kafka_next_txnid = store_last_txnid(pl->pi_opts.po_store);
}

/* After the LMDB commit: advance in-memory offsets; queue them for Kafka (note 11: only
 * a pipeline that speaks for the group builds the list, not a rebuild's or a replay's). */
static void batch_committed(pipeline_t *pl)
{
    const view_t *view = pl->pi_opts.po_view;
    bool queue = commits_to_group(pl);
    if (queue && !pl->pi_kafka_next)
        pl->pi_kafka_next = rd_kafka_topic_partition_list_new(8);
    for (size_t i = 0; i < pl->pi_tp_count; i++) {
        pipeline_tp_t *tp = &pl->pi_tps[i];
        if (tp->pt_batch_next < 0)
            continue;
        tp->pt_next_offset = tp->pt_batch_next;
        if (tp->pt_batch_event_ms > tp->pt_last_event_ms)
            tp->pt_last_event_ms = tp->pt_batch_event_ms;
        if (queue)
            queue_offset(pl->pi_kafka_next, view->v_topics[tp->pt_topic], tp->pt_partition,
                         tp->pt_next_offset);
    }
    if (!queue)
        return;
    if (!pl->pi_kafka_next->cnt) {
        rd_kafka_topic_partition_list_destroy(pl->pi_kafka_next);
        pl->pi_kafka_next = NULL;
        return;
    }
    pl->pi_kafka_next_txnid = store_last_txnid(pl->pi_opts.po_store);
    commit_kafka_offsets(pl, false);
}

/* Note 9 in pipeline.h: with no batch open, moves each partition's next offset up to
 * the consumer's position when transaction markers or aborted records lie between. */
static int advance_past_control_records(pipeline_t *pl)
{
    /* rd_kafka_assign() resets a position to INVALID, so a re-assign (a store switch,
     * a gap) never carries an old position over; a pending gap is handled first. */
    if (pl->pi_batch_count || !pl->pi_tp_count || pl->pi_gap_tp >= 0)
        return 0;
    bool stop_offsets = pl->pi_opts.po_stop_offsets != NULL;
    const view_t *view = pl->pi_opts.po_view;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)pl->pi_tp_count);
    for (size_t i = 0; i < pl->pi_tp_count; i++)
        rd_kafka_topic_partition_list_add(list, view->v_topics[pl->pi_tps[i].pt_topic],
                                          pl->pi_tps[i].pt_partition);
    bool any = false;
    for (size_t i = 0; i < pl->pi_tp_count; i++)
        pl->pi_tps[i].pt_batch_next = -1;
    if (rd_kafka_position(pl->pi_rk, list) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < list->cnt; i++) {
            const rd_kafka_topic_partition_t *p = &list->elems[i];
            pipeline_tp_t *tp =
                pipeline_tp_find(pl, view_topic_index(view, p->topic), p->partition);
            int64_t next = tp && tp->pt_next_offset > 0 ? tp->pt_next_offset : 0;
            int64_t position = p->offset;
            /* A replay ends exactly at its stop offsets (unlisted partitions: 0). */
            if (tp && stop_offsets)
                position = position < tp->pt_target ? position : tp->pt_target;
            if (tp && !p->err && position > next) {
                tp->pt_batch_next = position;
                any = true;
            }
        }
    }
    rd_kafka_topic_partition_list_destroy(list);
    if (!any)
        return 0;
    store_t *store = pl->pi_opts.po_store;
    MDB_txn *txn;
    int rc = store_write_begin(store, &txn);
    if (rc)
        return rc;
    int64_t wall = rm_wall_ms();
    for (size_t i = 0; !rc && i < pl->pi_tp_count; i++) {
        pipeline_tp_t *tp = &pl->pi_tps[i];
        if (tp->pt_batch_next < 0)
            continue;
        int64_t low = 0, high = 0;
        rd_kafka_get_watermark_offsets(pl->pi_rk, view->v_topics[tp->pt_topic], tp->pt_partition,
                                       &low, &high);
        tp->pt_batch_event_ms = tp->pt_last_event_ms;
        store_offset_t off = {tp->pt_batch_next,
                              high > tp->pt_batch_next ? high : tp->pt_batch_next,
                              tp->pt_last_event_ms, wall};
        rc = store_offset_put(store, txn, view->v_topics[tp->pt_topic], tp->pt_partition, &off);
    }
    rc = rc ? (store_write_abort(txn), rc) : store_write_commit(store, txn);
    if (!rc)
        batch_committed(pl);
    return rc;
}

static int apply_batch(pipeline_t *pl)
{
    int64_t backoff_ms = 100;
    size_t rules = pl->pi_opts.po_view->v_rule_count;
    uint64_t applied_by_rule[rules ? rules : 1];
    bool sorted = true;
    for (;;) {
        uint64_t outcomes[ENGINE__OUTCOMES] = {0}, skipped = 0;
        memset(applied_by_rule, 0, sizeof(applied_by_rule));
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int rc = apply_batch_once(pl, sorted, outcomes, applied_by_rule, &skipped);
        if (rc == 0) {
            failpoint("batch-commit");
            clock_gettime(CLOCK_MONOTONIC, &t1);
            metrics_hist_observe(&pl->pi_commit_seconds,
                                 (double)(t1.tv_sec - t0.tv_sec) +
                                     (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
            metrics_hist_observe(&pl->pi_batch_events, (double)pl->pi_batch_count);
            batch_committed(pl);
            pipeline_hold_partitions(pl);
            for (size_t r = 0; r < rules; r++)
                pl->pi_applied_by_rule[r] += applied_by_rule[r];
            for (int i = 0; i < ENGINE__OUTCOMES; i++)
                pl->pi_stats.ps_outcomes[i] += outcomes[i];
            pl->pi_stats.ps_messages += pl->pi_batch_count - skipped;
            pl->pi_stats.ps_skipped_before_start += skipped;
            pl->pi_stats.ps_skipped_by_hook += pl->pi_batch_hook_skips;
            pl->pi_stats.ps_batches++;
            pl->pi_stats.ps_batches_closed[pl->pi_batch_closed_by]++;
            batch_release(pl);
            pipeline_flush_dead_letters(pl, PIPELINE_OUTBOX_FLUSH_MS, true, false);
            pipeline_publish_snapshot(pl);
            return 0;
        }
        pl->pi_stats.ps_commit_retries++;
        if (rc == RM_EUNAVAIL && sorted) {
            /* The registry failed between the key pass and the apply: never commit an
             * offset past a held message; arrival order holds it where it is. */
            sorted = false;
            continue;
        }
        if (rc == RM_EMAPFULL) {
            int grc = store_grow(pl->pi_opts.po_store);
            pl->pi_stats.ps_map_grows++;
            log_info("store map full: grew it, re-applying the batch",
                     LOG_S("view", pl->pi_opts.po_view->v_name),
                     LOG_I("events", pl->pi_batch_count));
            if (grc)
                return grc;
            continue;
        }
        if (rc != RM_EDISKFULL && rc != RM_EIO)
            return rc;
        /* Transient: keep the batch and the last committed state, retry later. */
        log_error("store write failed; consumption paused, retrying",
                  LOG_S("view", pl->pi_opts.po_view->v_name), LOG_S("error", rm_strerror(rc)),
                  LOG_I("retry_in_ms", backoff_ms));
        for (int64_t slept = 0; slept < backoff_ms && !pl->pi_stop; slept += 50)
            usleep(50 * 1000);
        if (pl->pi_stop)
            return rc; /* nothing committed: the batch is simply consumed again later */
        backoff_ms =
            backoff_ms * 2 > PIPELINE_BACKOFF_MAX_MS ? PIPELINE_BACKOFF_MAX_MS : backoff_ms * 2;
    }
}

/* Fills the batch (note 2 in pipeline.h): waits up to PIPELINE_POLL_IDLE_MS for a first
 * message, then takes what the consumer queue holds right now and closes when it is
 * empty, at max events, max ms after the first message, or on stop or a gap. */
static void fill_batch(pipeline_t *pl)
{
    const view_t *view = pl->pi_opts.po_view;
    int64_t deadline = 0;
    pl->pi_batch_closed_by = PIPELINE_CLOSE_STOPPED;
    while (!pl->pi_stop) {
        if (pl->pi_batch_count >= pl->pi_batch_cap) {
            pl->pi_batch_closed_by = PIPELINE_CLOSE_MAX_EVENTS;
            break;
        }
        int timeout = PIPELINE_POLL_IDLE_MS;
        if (pl->pi_batch_count) {
            if (rm_mono_ms() >= deadline) {
                pl->pi_batch_closed_by = PIPELINE_CLOSE_MAX_MS;
                break;
            }
            /* No waiting once a batch is open: what arrives during its apply and commit
             * makes the next batch. Measured at 5,000 ev/s (docs/design.md §6): waiting
             * out batch_max_ms (20 ms) was most of the ack-to-visible time. */
            timeout = 0;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(pl->pi_rk, timeout);
        if (!m) {
            if (!pl->pi_batch_count)
                return; /* idle: let the caller do periodic work */
            pl->pi_batch_closed_by = PIPELINE_CLOSE_DRAINED;
            break;
        }
        if (m->err) {
            pipeline_handle_error_message(pl, m);
            rd_kafka_message_destroy(m);
            if (pl->pi_gap_tp >= 0)
                break;
            continue;
        }
        pipeline_tp_t *tp =
            pipeline_tp_find(pl, view_topic_index(view, rd_kafka_topic_name(m->rkt)), m->partition);
        if (!tp || (tp->pt_next_offset >= 0 && m->offset < tp->pt_next_offset)) {
            pl->pi_stats.ps_skipped_redelivered++;
            rd_kafka_message_destroy(m);
            continue;
        }
        if (tp->pt_held_offset >= 0 && pipeline_hold_drops(pl, tp, m)) { /* note 10 */
            rd_kafka_message_destroy(m);
            continue;
        }
        if (pl->pi_opts.po_stop_offsets && m->offset >= tp->pt_target) {
            /* Checked per message, not per batch: the replay must end exactly there. */
            tp->pt_stop_reached = true;
            pl->pi_stats.ps_beyond_stop++;
            rd_kafka_message_destroy(m);
            continue;
        }
        if (!pl->pi_batch_count)
            deadline = rm_mono_ms() + pl->pi_batch_max_ms;
        /* Decided here, in arrival order, so that a re-applied batch decides the same. */
        bool skip = false;
        if (tp->pt_gate_ms > 0) {
            rd_kafka_timestamp_type_t tstype;
            int64_t ts = rd_kafka_message_timestamp(m, &tstype);
            if (ts >= 0 && ts < tp->pt_gate_ms)
                skip = true;
            else
                tp->pt_gate_ms = 0; /* the first message at or after the start time */
        }
        pl->pi_batch_skip[pl->pi_batch_count] = skip;
        pl->pi_batch[pl->pi_batch_count++] = m;
    }
}

int pipeline_run(pipeline_t *pl)
{
    /* Dead letters a crash left between produce and delete are already in Kafka. */
    int orc = pl->pi_opts.po_hold_dead_letters || pl->pi_opts.po_scratch
                  ? 0
                  : outbox_recover(pl->pi_outbox, PIPELINE_METADATA_TIMEOUT_MS);
    if (orc)
        log_warn("cannot read the dead-letter topics to recover the outbox; pending dead "
                 "letters wait until they can be read (retried every 10 s)",
                 LOG_S("error", rm_strerror(orc)));
    int rc = pipeline_refresh_partitions(pl);
    if (rc && rc != RM_ETIMEOUT && rc != RM_EKAFKA)
        return rc;
    bool finite = pl->pi_opts.po_until_caught_up || pl->pi_opts.po_stop_offsets;
    if (finite) {
        if (rc)
            return rc;
        rc = pipeline_load_targets(pl);
        if (rc)
            return rc;
        /* Before anything is applied: the gap's offset is the one stored now. */
        for (pipeline_take_pending_gap(pl); pl->pi_gap_tp >= 0; pipeline_take_pending_gap(pl)) {
            rc = pipeline_handle_gap(pl);
            if (rc)
                return rc;
        }
    }
    for (;;) {
        if ((finite && pipeline_caught_up(pl)) || pl->pi_stop) {
            /* Leave no dead letter unpublished behind a clean exit when the broker
             * allows (bounded; what remains is published on the next start). */
            pipeline_flush_dead_letters(pl, PIPELINE_OUTBOX_EXIT_FLUSH_MS, true, true);
            pipeline_commit_all_kafka_offsets(pl);
            return 0;
        }
        pipeline_resume_held(pl);
        fill_batch(pl);
        if (pl->pi_batch_count) {
            rc = apply_batch(pl);
            if (rc) {
                batch_release(pl);
                return rc;
            }
        } else if ((rc = advance_past_control_records(pl))) {
            return rc;
        }
        if (pl->pi_gap_tp >= 0) {
            rc = pipeline_handle_gap(pl);
            if (rc)
                return rc;
        }
        if (!pl->pi_opts.po_scratch && rm_mono_ms() >= pl->pi_next_expire_ms) {
            rc = pipeline_expire_parked(pl);
            if (rc)
                log_error("cannot expire parked events", LOG_S("error", rm_strerror(rc)));
        }
        if (rm_mono_ms() >= pl->pi_next_metadata_ms)
            pipeline_refresh_partitions(pl);
        if (rm_mono_ms() >= pl->pi_next_snapshot_ms) {
            pipeline_flush_dead_letters(pl, PIPELINE_OUTBOX_FLUSH_MS, true, false);
            commit_kafka_offsets(pl, true);
            pipeline_publish_snapshot(pl);
        }
        if (pl->pi_opts.po_tick && (rc = pl->pi_opts.po_tick(pl->pi_opts.po_tick_arg, pl)))
            return rc;
    }
}
