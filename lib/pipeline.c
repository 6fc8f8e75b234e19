/* pipeline: consume → group-commit batch → apply → commit with offsets (see pipeline.h).
 * Here: life cycle, the consume loop and the store switch. Assignment, targets and gaps:
 * pipeline_assign.c; dead letters and link-timeout: pipeline_letters.c; partitions held for
 * the registry: pipeline_hold.c; metrics: pipeline_metrics.c; shared: pipeline_int.h. */
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

#define PIPE_POLL_IDLE_MS 100 /* poll timeout when no batch is open: bounds stop latency */
/* Before a clean exit: a broker that is up acks in milliseconds; one that is not must
 * not hold a SIGTERM (the letters stay in the outbox for the next start). Part of the
 * shutdown bound docs/runbook.md states. */
#define PIPE_OUTBOX_EXIT_FLUSH_MS 3000

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

/* The engine and outbox of store (both hold the store; rebuilt on a switch). */
static int make_store_parts(pipe_t *pipe, store_t *store, engine_t **ret_engine,
                            outbox_t **ret_outbox, char *errstr, size_t errlen)
{
    const pipe_opts_t *opts = &pipe->pi_opts;
    const cfg_t *cfg = opts->po_cfg;
    engine_opts_t eopts = {
        .eo_max_message_bytes = (size_t)cfg_int(cfg, "projector.max_message_bytes"),
        .eo_erasures = opts->po_erasures,
        .eo_unparked_rejected = opts->po_scratch ? NULL : pipe_dead_letter_unparked,
        .eo_unparked_rejected_ctx = pipe};
    /* Every schema this store's events were decoded with, so that they decode again
     * with the registry down (registry.h note 4). */
    int prc = registry_preload(opts->po_catalog, store);
    if (prc) {
        snprintf(errstr, errlen, "cannot load the schemas kept in the store: %s", rm_strerror(prc));
        return prc;
    }
    engine_t *engine = engine_new(opts->po_view, opts->po_catalog, store, &eopts);
    if (!engine) {
        snprintf(errstr, errlen, "out of memory");
        return RM_ENOMEM;
    }
    char group[160];
    snprintf(group, sizeof(group), "readmodel-%s", opts->po_view->v_name);
    const char *effective_group =
        cfg_kafka_get(cfg, "group.id") ? cfg_kafka_get(cfg, "group.id") : group;
    outbox_t *outbox = NULL;
    int rc = outbox_new(store, cfg, opts->po_view->v_name, effective_group, opts->po_view->v_topics,
                        opts->po_view->v_topic_count, &outbox, errstr, errlen);
    if (rc) {
        engine_destroy(engine);
        return rc;
    }
    *ret_engine = engine;
    *ret_outbox = outbox;
    return 0;
}

/* The consumer, not yet assigned (note 1). NULL with a message in errstr when librdkafka
 * refuses the settings (a property, or a combination it checks when it builds the client):
 * a configuration error. */
static rd_kafka_t *consumer_new(const pipe_opts_t *opts, char *errstr, size_t errlen)
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

int pipe_new(const pipe_opts_t *opts, pipe_t **ret_pipe, char *errstr, size_t errlen)
{
    pipe_t *pipe = calloc(1, sizeof(*pipe));
    if (!pipe) {
        snprintf(errstr, errlen, "out of memory");
        return RM_ENOMEM;
    }
    pipe->pi_opts = *opts;
    pthread_mutex_init(&pipe->pi_lock, NULL);
    /* Buckets: batch sizes from 1 to the 50k where docs/architecture.md §3 measured the LMDB
     * plateau; commit latencies from 100 µs (no fsync) to 2.5 s (a stalled disk). */
    static const double batch_bounds[] = {1, 10, 100, 500, 1000, 2000, 5000, 10000, 20000, 50000};
    static const double commit_bounds[] = {0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                           0.05,   0.1,    0.25,  0.5,    1,     2.5};
    metrics_hist_init(&pipe->pi_batch_events, batch_bounds, 10);
    metrics_hist_init(&pipe->pi_commit_seconds, commit_bounds, 13);
    const cfg_t *cfg = opts->po_cfg;
    pipe->pi_batch_max_events = cfg_int(cfg, "projector.batch_max_events");
    pipe->pi_batch_max_ms = cfg_int(cfg, "projector.batch_max_ms");
    pipe->pi_metadata_refresh_ms = cfg_int(cfg, "projector.metadata_refresh_ms");
    pipe->pi_parked_max_age_ms = cfg_int(cfg, "projector.parked_max_age_s") * 1000;
    pipe->pi_parked_check_ms = cfg_int(cfg, "projector.parked_check_interval_ms");
    pipe->pi_continue_on_gap =
        !opts->po_scratch && strcmp(cfg_str(cfg, "projector.on_gap"), "continue") == 0;
    pipe->pi_gap_tp = -1;
    pipe->pi_batch_cap = (size_t)pipe->pi_batch_max_events;
    pipe->pi_batch = calloc(pipe->pi_batch_cap, sizeof(*pipe->pi_batch));
    pipe->pi_batch_skip = calloc(pipe->pi_batch_cap, sizeof(*pipe->pi_batch_skip));
    pipe->pi_snap.ps_generation = opts->po_generation;
    pipe->pi_tps = calloc(PIPE_MAX_PARTITIONS, sizeof(*pipe->pi_tps));
    size_t rules = opts->po_view->v_rule_count;
    pipe->pi_link_topic = calloc(opts->po_view->v_topic_count, sizeof(bool));
    if (pipe->pi_link_topic)
        mark_link_topics(opts->po_view, opts->po_catalog, pipe->pi_link_topic);
    pipe->pi_applied_by_rule = calloc(rules, sizeof(uint64_t));
    pipe->pi_snap.ps_applied_by_rule = calloc(rules, sizeof(uint64_t));
    pipe->pi_snap.ps_tps = calloc(PIPE_MAX_PARTITIONS, sizeof(pipe_tp_t));
    pipe->pi_snap.ps_high = calloc(PIPE_MAX_PARTITIONS, sizeof(int64_t));
    if (!pipe->pi_batch || !pipe->pi_batch_skip || !pipe->pi_tps || !pipe->pi_applied_by_rule ||
        !pipe->pi_link_topic || !pipe->pi_snap.ps_applied_by_rule || !pipe->pi_snap.ps_tps ||
        !pipe->pi_snap.ps_high) {
        snprintf(errstr, errlen, "out of memory");
        pipe_destroy(pipe);
        return RM_ENOMEM;
    }
    /* Read once: the hot path then tests one pointer (failpoint.h). */
    int rc = opts->po_scratch ? 0
                              : failpoint_skips_parse(getenv(FAILPOINT_SKIP_ENV), &pipe->pi_skips,
                                                      errstr, errlen);
    if (!rc && !(pipe->pi_rk = consumer_new(opts, errstr, errlen)))
        rc = RM_ECONFIG;
    if (!rc)
        rc = make_store_parts(pipe, opts->po_store, &pipe->pi_engine, &pipe->pi_outbox, errstr,
                              errlen);
    if (rc) {
        pipe_destroy(pipe);
        return rc;
    }
    *ret_pipe = pipe;
    return 0;
}

static void batch_release(pipe_t *pipe)
{
    for (size_t i = 0; i < pipe->pi_batch_count; i++)
        rd_kafka_message_destroy(pipe->pi_batch[i]);
    pipe->pi_batch_count = 0;
}

void pipe_destroy(pipe_t *pipe)
{
    if (!pipe)
        return;
    if (pipe->pi_batch)
        batch_release(pipe);
    if (pipe->pi_rk) {
        rd_kafka_assign(pipe->pi_rk, NULL);
        rd_kafka_consumer_close(pipe->pi_rk);
        rd_kafka_destroy(pipe->pi_rk);
    }
    engine_destroy(pipe->pi_engine);
    outbox_destroy(pipe->pi_outbox);
    failpoint_skips_destroy(pipe->pi_skips);
    if (pipe->pi_kafka_waiting)
        rd_kafka_topic_partition_list_destroy(pipe->pi_kafka_waiting);
    if (pipe->pi_kafka_next)
        rd_kafka_topic_partition_list_destroy(pipe->pi_kafka_next);
    free(pipe->pi_batch);
    free(pipe->pi_batch_skip);
    free(pipe->pi_tps);
    free(pipe->pi_applied_by_rule);
    free(pipe->pi_link_topic);
    free(pipe->pi_snap.ps_applied_by_rule);
    free(pipe->pi_snap.ps_tps);
    free(pipe->pi_snap.ps_high);
    pthread_mutex_destroy(&pipe->pi_lock);
    free(pipe);
}

void pipe_stop(pipe_t *pipe)
{
    pipe->pi_stop = 1;
}

/* In the batch's txn: the next offset of every partition the batch read (note 1), with
 * the high watermark and newest event time the query API reports as lag. */
static int put_batch_offsets(pipe_t *pipe, MDB_txn *txn)
{
    const view_t *view = pipe->pi_opts.po_view;
    int64_t wall = rm_wall_ms();
    int rc = 0;
    for (size_t i = 0; !rc && i < pipe->pi_tp_count; i++) {
        pipe_tp_t *tp = &pipe->pi_tps[i];
        if (tp->pt_batch_next < 0)
            continue;
        int64_t low = 0, high = 0;
        rd_kafka_get_watermark_offsets(pipe->pi_rk, view->v_topics[tp->pt_topic], tp->pt_partition,
                                       &low, &high);
        store_offset_t off = {tp->pt_batch_next,
                              high > tp->pt_batch_next ? high : tp->pt_batch_next,
                              tp->pt_batch_event_ms > tp->pt_last_event_ms ? tp->pt_batch_event_ms
                                                                           : tp->pt_last_event_ms,
                              wall};
        rc = store_offset_put(pipe->pi_opts.po_store, txn, view->v_topics[tp->pt_topic],
                              tp->pt_partition, &off);
    }
    return rc;
}

/* Applies the open batch in one transaction with its offsets. Returns 0 once
 * committed, RM_EMAPFULL after growing the map (caller retries), or another error. */
static int apply_batch_once(pipe_t *pipe, uint64_t *outcomes, uint64_t *applied_by_rule,
                            uint64_t *skipped)
{
    const view_t *view = pipe->pi_opts.po_view;
    store_t *store = pipe->pi_opts.po_store;
    MDB_txn *txn;
    int rc = store_write_begin(store, &txn);
    if (rc)
        return rc;
    rc = engine_txn_begin(pipe->pi_engine, txn);
    if (!rc)
        rc = outbox_txn_begin(pipe->pi_outbox, txn);
    for (size_t i = 0; i < pipe->pi_tp_count; i++) {
        pipe->pi_tps[i].pt_batch_next = -1;
        pipe->pi_tps[i].pt_batch_held = -1;
    }
    pipe->pi_batch_hook_skips = 0;
    /* Two passes: messages of link-learning topics first, then the rest, each in
     * arrival order. Kafka fixes no order across partitions, and every partition
     * belongs to one topic, so per-partition order is kept; what changes is that
     * links learned anywhere in the batch are known before the events that need
     * them, which avoids parking (measured: a backlog parked 46% of its events). */
    for (size_t n = 0; !rc && n < 2 * pipe->pi_batch_count; n++) {
        bool first_pass = n < pipe->pi_batch_count;
        size_t slot = first_pass ? n : n - pipe->pi_batch_count;
        const rd_kafka_message_t *m = pipe->pi_batch[slot];
        const char *topic = rd_kafka_topic_name(m->rkt);
        int topic_index = view_topic_index(view, topic);
        bool link_topic = topic_index >= 0 && pipe->pi_link_topic[topic_index];
        if (link_topic != first_pass)
            continue;
        pipe_tp_t *msg_tp = pipe_tp_find(pipe, topic_index, m->partition); /* looked up once */
        if (msg_tp && msg_tp->pt_batch_held >= 0)
            continue; /* behind a message held for the registry: consumed again later */
        if (pipe->pi_batch_skip[slot]) {
            /* Before the start time: not applied, but its offset is consumed. */
            pipe_tp_t *tp = msg_tp;
            if (tp)
                tp->pt_batch_next = m->offset + 1;
            (*skipped)++;
            continue;
        }
        rd_kafka_timestamp_type_t tstype;
        engine_msg_t msg = {
            topic,  m->partition, m->offset,  rd_kafka_message_timestamp(m, &tstype),
            m->key, m->key_len,   m->payload, m->len};
        engine_result_t res;
        if (__builtin_expect(pipe->pi_skips != NULL, 0) &&
            failpoint_skips_has(pipe->pi_skips, topic, m->partition, m->offset)) {
            /* Test hook: consumed, offset advanced, nothing applied (a "lost application"). */
            log_warn("test hook: event consumed without applying it",
                     LOG_S("env", FAILPOINT_SKIP_ENV), LOG_S("topic", topic),
                     LOG_I("partition", m->partition), LOG_I("offset", m->offset));
            pipe->pi_batch_hook_skips++;
            pipe_tp_t *tp = msg_tp;
            if (tp)
                tp->pt_batch_next = m->offset + 1;
            continue;
        }
        rc = engine_apply(pipe->pi_engine, txn, &msg, &res);
        if (rc)
            break;
        if (res.er_outcome == ENGINE_REJECTED && res.er_error == RM_EUNAVAIL && msg_tp) {
            /* Not poison (note 10): neither applied nor dead-lettered, and nothing after it
             * in its partition is applied before it. */
            msg_tp->pt_batch_held = m->offset;
            snprintf(pipe->pi_registry_reason, sizeof(pipe->pi_registry_reason), "%s",
                     res.er_reason);
            continue;
        }
        failpoint("apply-event");
        outcomes[res.er_outcome]++;
        if (res.er_outcome == ENGINE_APPLIED && res.er_rule >= 0)
            applied_by_rule[res.er_rule]++;
        if (res.er_outcome == ENGINE_REJECTED && !pipe->pi_opts.po_scratch &&
            (rc = pipe_dead_letter_rejected(pipe, txn, &msg, &res, "event dead-lettered")))
            break;
        pipe_tp_t *tp = msg_tp;
        if (tp) {
            tp->pt_batch_next = m->offset + 1;
            if (res.er_event_ms > tp->pt_batch_event_ms)
                tp->pt_batch_event_ms = res.er_event_ms;
        }
    }
    if (!rc)
        rc = put_batch_offsets(pipe, txn);
    if (!rc)
        rc = pipe_mark_registry_outage(pipe, txn);
    if (!rc)
        rc = engine_txn_precommit(pipe->pi_engine, txn);
    if (!rc)
        rc = outbox_txn_precommit(pipe->pi_outbox, txn);
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
static void commit_kafka_offsets(pipe_t *pipe, bool may_sync)
{
    store_t *store = pipe->pi_opts.po_store;
    uint64_t durable = store_durable_txnid(store);
    uint64_t wanted = pipe->pi_kafka_waiting ? pipe->pi_kafka_waiting_txnid
                      : pipe->pi_kafka_next  ? pipe->pi_kafka_next_txnid
                                             : 0;
    /* nometasync: the newest commit is durable only once the next one is, and a quiet
     * view has no next one; with no sync thread to wait for, the idle loop syncs (never
     * after each batch: that would be an fsync per commit, as in sync mode). */
    if (may_sync && durable < wanted && !store_syncs_in_background(store) && store_sync(store) == 0)
        durable = store_durable_txnid(store);
    if (pipe->pi_kafka_waiting && durable >= pipe->pi_kafka_waiting_txnid) {
        rd_kafka_commit(pipe->pi_rk, pipe->pi_kafka_waiting, 1);
        rd_kafka_topic_partition_list_destroy(pipe->pi_kafka_waiting);
        pipe->pi_kafka_waiting = NULL;
    }
    if (!pipe->pi_kafka_waiting && pipe->pi_kafka_next) {
        pipe->pi_kafka_waiting = pipe->pi_kafka_next;
        pipe->pi_kafka_waiting_txnid = pipe->pi_kafka_next_txnid;
        pipe->pi_kafka_next = NULL;
        if (durable >= pipe->pi_kafka_waiting_txnid) { /* sync durability: at once */
            rd_kafka_commit(pipe->pi_rk, pipe->pi_kafka_waiting, 1);
            rd_kafka_topic_partition_list_destroy(pipe->pi_kafka_waiting);
            pipe->pi_kafka_waiting = NULL;
        }
    }
}

/* Before an exit or a switch of the store: makes the store durable now, then commits
 * every queued offset. */
static void commit_all_kafka_offsets(pipe_t *pipe)
{
    if (!pipe->pi_kafka_waiting && !pipe->pi_kafka_next)
        return;
    store_sync(pipe->pi_opts.po_store);
    commit_kafka_offsets(pipe, false);
    commit_kafka_offsets(pipe, false);
    /* Left only when the sync failed: those offsets are not durable, and they belong to
     * a store that is not written any more. */
    if (pipe->pi_kafka_waiting)
        rd_kafka_topic_partition_list_destroy(pipe->pi_kafka_waiting);
    if (pipe->pi_kafka_next)
        rd_kafka_topic_partition_list_destroy(pipe->pi_kafka_next);
    pipe->pi_kafka_waiting = pipe->pi_kafka_next = NULL;
}

/* After the LMDB commit: advance in-memory offsets; queue them for Kafka. */
static void batch_committed(pipe_t *pipe)
{
    const view_t *view = pipe->pi_opts.po_view;
    if (!pipe->pi_kafka_next)
        pipe->pi_kafka_next = rd_kafka_topic_partition_list_new(8);
    rd_kafka_topic_partition_list_t *list = pipe->pi_kafka_next;
    for (size_t i = 0; i < pipe->pi_tp_count; i++) {
        pipe_tp_t *tp = &pipe->pi_tps[i];
        if (tp->pt_batch_next < 0)
            continue;
        tp->pt_next_offset = tp->pt_batch_next;
        if (tp->pt_batch_event_ms > tp->pt_last_event_ms)
            tp->pt_last_event_ms = tp->pt_batch_event_ms;
        const char *topic = view->v_topics[tp->pt_topic];
        rd_kafka_topic_partition_t *p =
            rd_kafka_topic_partition_list_find(list, topic, tp->pt_partition);
        if (!p)
            p = rd_kafka_topic_partition_list_add(list, topic, tp->pt_partition);
        p->offset = tp->pt_next_offset;
    }
    pipe->pi_kafka_next_txnid = store_last_txnid(pipe->pi_opts.po_store);
    if (pipe->pi_opts.po_scratch || !list->cnt) {
        rd_kafka_topic_partition_list_destroy(list);
        pipe->pi_kafka_next = NULL;
        return;
    }
    commit_kafka_offsets(pipe, false);
}

/* Note 9 in pipeline.h: with no batch open, moves each partition's next offset up to
 * the consumer's position when transaction markers or aborted records lie between. */
static int advance_past_control_records(pipe_t *pipe)
{
    /* rd_kafka_assign() resets a position to INVALID, so a re-assign (a store switch,
     * a gap) never carries an old position over; a pending gap is handled first. */
    if (pipe->pi_batch_count || !pipe->pi_tp_count || pipe->pi_gap_tp >= 0)
        return 0;
    bool stop_offsets = pipe->pi_opts.po_stop_offsets != NULL;
    const view_t *view = pipe->pi_opts.po_view;
    rd_kafka_topic_partition_list_t *list =
        rd_kafka_topic_partition_list_new((int)pipe->pi_tp_count);
    for (size_t i = 0; i < pipe->pi_tp_count; i++)
        rd_kafka_topic_partition_list_add(list, view->v_topics[pipe->pi_tps[i].pt_topic],
                                          pipe->pi_tps[i].pt_partition);
    bool any = false;
    for (size_t i = 0; i < pipe->pi_tp_count; i++)
        pipe->pi_tps[i].pt_batch_next = -1;
    if (rd_kafka_position(pipe->pi_rk, list) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < list->cnt; i++) {
            const rd_kafka_topic_partition_t *p = &list->elems[i];
            pipe_tp_t *tp = pipe_tp_find(pipe, view_topic_index(view, p->topic), p->partition);
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
    store_t *store = pipe->pi_opts.po_store;
    MDB_txn *txn;
    int rc = store_write_begin(store, &txn);
    if (rc)
        return rc;
    int64_t wall = rm_wall_ms();
    for (size_t i = 0; !rc && i < pipe->pi_tp_count; i++) {
        pipe_tp_t *tp = &pipe->pi_tps[i];
        if (tp->pt_batch_next < 0)
            continue;
        int64_t low = 0, high = 0;
        rd_kafka_get_watermark_offsets(pipe->pi_rk, view->v_topics[tp->pt_topic], tp->pt_partition,
                                       &low, &high);
        tp->pt_batch_event_ms = tp->pt_last_event_ms;
        store_offset_t off = {tp->pt_batch_next,
                              high > tp->pt_batch_next ? high : tp->pt_batch_next,
                              tp->pt_last_event_ms, wall};
        rc = store_offset_put(store, txn, view->v_topics[tp->pt_topic], tp->pt_partition, &off);
    }
    rc = rc ? (store_write_abort(txn), rc) : store_write_commit(store, txn);
    if (!rc)
        batch_committed(pipe);
    return rc;
}

static int apply_batch(pipe_t *pipe)
{
    int64_t backoff_ms = 100;
    size_t rules = pipe->pi_opts.po_view->v_rule_count;
    uint64_t applied_by_rule[rules ? rules : 1];
    for (;;) {
        uint64_t outcomes[ENGINE__OUTCOMES] = {0}, skipped = 0;
        memset(applied_by_rule, 0, sizeof(applied_by_rule));
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int rc = apply_batch_once(pipe, outcomes, applied_by_rule, &skipped);
        if (rc == 0) {
            failpoint("batch-commit");
            clock_gettime(CLOCK_MONOTONIC, &t1);
            metrics_hist_observe(&pipe->pi_commit_seconds,
                                 (double)(t1.tv_sec - t0.tv_sec) +
                                     (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
            metrics_hist_observe(&pipe->pi_batch_events, (double)pipe->pi_batch_count);
            batch_committed(pipe);
            pipe_hold_partitions(pipe);
            for (size_t r = 0; r < rules; r++)
                pipe->pi_applied_by_rule[r] += applied_by_rule[r];
            for (int i = 0; i < ENGINE__OUTCOMES; i++)
                pipe->pi_stats.ps_outcomes[i] += outcomes[i];
            pipe->pi_stats.ps_messages += pipe->pi_batch_count - skipped;
            pipe->pi_stats.ps_skipped_before_start += skipped;
            pipe->pi_stats.ps_skipped_by_hook += pipe->pi_batch_hook_skips;
            pipe->pi_stats.ps_batches++;
            pipe->pi_stats.ps_batches_closed[pipe->pi_batch_closed_by]++;
            batch_release(pipe);
            pipe_flush_dead_letters(pipe, PIPE_OUTBOX_FLUSH_MS, true, false);
            pipe_publish_snapshot(pipe);
            return 0;
        }
        pipe->pi_stats.ps_commit_retries++;
        if (rc == RM_EMAPFULL) {
            int grc = store_grow(pipe->pi_opts.po_store);
            pipe->pi_stats.ps_map_grows++;
            log_info("store map full: grew it, re-applying the batch",
                     LOG_S("view", pipe->pi_opts.po_view->v_name),
                     LOG_I("events", pipe->pi_batch_count));
            if (grc)
                return grc;
            continue;
        }
        if (rc != RM_EDISKFULL && rc != RM_EIO)
            return rc;
        /* Transient: keep the batch and the last committed state, retry later. */
        log_error("store write failed; consumption paused, retrying",
                  LOG_S("view", pipe->pi_opts.po_view->v_name), LOG_S("error", rm_strerror(rc)),
                  LOG_I("retry_in_ms", backoff_ms));
        for (int64_t slept = 0; slept < backoff_ms && !pipe->pi_stop; slept += 50)
            usleep(50 * 1000);
        if (pipe->pi_stop)
            return rc; /* nothing committed: the batch is simply consumed again later */
        backoff_ms = backoff_ms * 2 > PIPE_BACKOFF_MAX_MS ? PIPE_BACKOFF_MAX_MS : backoff_ms * 2;
    }
}

/* Fills the batch (note 2 in pipeline.h): waits up to PIPE_POLL_IDLE_MS for a first
 * message, then takes what the consumer queue holds right now and closes when it is
 * empty, at max events, max ms after the first message, or on stop or a gap. */
static void fill_batch(pipe_t *pipe)
{
    const view_t *view = pipe->pi_opts.po_view;
    int64_t deadline = 0;
    pipe->pi_batch_closed_by = PIPE_CLOSE_STOPPED;
    while (!pipe->pi_stop) {
        if (pipe->pi_batch_count >= pipe->pi_batch_cap) {
            pipe->pi_batch_closed_by = PIPE_CLOSE_MAX_EVENTS;
            break;
        }
        int timeout = PIPE_POLL_IDLE_MS;
        if (pipe->pi_batch_count) {
            if (rm_mono_ms() >= deadline) {
                pipe->pi_batch_closed_by = PIPE_CLOSE_MAX_MS;
                break;
            }
            /* No waiting once a batch is open: what arrives during its apply and commit
             * makes the next batch. Measured at 5,000 ev/s (docs/design.md §6): waiting
             * out batch_max_ms (20 ms) was most of the ack-to-visible time. */
            timeout = 0;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(pipe->pi_rk, timeout);
        if (!m) {
            if (!pipe->pi_batch_count)
                return; /* idle: let the caller do periodic work */
            pipe->pi_batch_closed_by = PIPE_CLOSE_DRAINED;
            break;
        }
        if (m->err) {
            pipe_handle_error_message(pipe, m);
            rd_kafka_message_destroy(m);
            if (pipe->pi_gap_tp >= 0)
                break;
            continue;
        }
        pipe_tp_t *tp =
            pipe_tp_find(pipe, view_topic_index(view, rd_kafka_topic_name(m->rkt)), m->partition);
        if (!tp || (tp->pt_next_offset >= 0 && m->offset < tp->pt_next_offset)) {
            pipe->pi_stats.ps_skipped_redelivered++;
            rd_kafka_message_destroy(m);
            continue;
        }
        if (tp->pt_held_offset >= 0 && pipe_hold_drops(pipe, tp, m)) { /* note 10 */
            rd_kafka_message_destroy(m);
            continue;
        }
        if (pipe->pi_opts.po_stop_offsets && m->offset >= tp->pt_target) {
            /* Checked per message, not per batch: the replay must end exactly there. */
            tp->pt_stop_reached = true;
            pipe->pi_stats.ps_beyond_stop++;
            rd_kafka_message_destroy(m);
            continue;
        }
        if (!pipe->pi_batch_count)
            deadline = rm_mono_ms() + pipe->pi_batch_max_ms;
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
        pipe->pi_batch_skip[pipe->pi_batch_count] = skip;
        pipe->pi_batch[pipe->pi_batch_count++] = m;
    }
}

int pipe_run(pipe_t *pipe)
{
    /* Dead letters a crash left between produce and delete are already in Kafka. */
    int orc = pipe->pi_opts.po_hold_dead_letters || pipe->pi_opts.po_scratch
                  ? 0
                  : outbox_recover(pipe->pi_outbox, PIPE_METADATA_TIMEOUT_MS);
    if (orc)
        log_warn("cannot read the dead-letter topics to recover the outbox; pending dead "
                 "letters wait until they can be read (retried every 10 s)",
                 LOG_S("error", rm_strerror(orc)));
    int rc = pipe_refresh_partitions(pipe);
    if (rc && rc != RM_ETIMEOUT && rc != RM_EKAFKA)
        return rc;
    bool finite = pipe->pi_opts.po_until_caught_up || pipe->pi_opts.po_stop_offsets;
    if (finite) {
        if (rc)
            return rc;
        rc = pipe_load_targets(pipe);
        if (rc)
            return rc;
        /* Before anything is applied: the gap's offset is the one stored now. */
        for (pipe_take_pending_gap(pipe); pipe->pi_gap_tp >= 0; pipe_take_pending_gap(pipe)) {
            rc = pipe_handle_gap(pipe);
            if (rc)
                return rc;
        }
    }
    for (;;) {
        if ((finite && pipe_caught_up(pipe)) || pipe->pi_stop) {
            /* Leave no dead letter unpublished behind a clean exit when the broker
             * allows (bounded; what remains is published on the next start). */
            pipe_flush_dead_letters(pipe, PIPE_OUTBOX_EXIT_FLUSH_MS, true, true);
            commit_all_kafka_offsets(pipe);
            return 0;
        }
        pipe_resume_held(pipe);
        fill_batch(pipe);
        if (pipe->pi_batch_count) {
            rc = apply_batch(pipe);
            if (rc) {
                batch_release(pipe);
                return rc;
            }
        } else if ((rc = advance_past_control_records(pipe))) {
            return rc;
        }
        if (pipe->pi_gap_tp >= 0) {
            rc = pipe_handle_gap(pipe);
            if (rc)
                return rc;
        }
        if (!pipe->pi_opts.po_scratch && rm_mono_ms() >= pipe->pi_next_expire_ms) {
            rc = pipe_expire_parked(pipe);
            if (rc)
                log_error("cannot expire parked events", LOG_S("error", rm_strerror(rc)));
        }
        if (rm_mono_ms() >= pipe->pi_next_metadata_ms)
            pipe_refresh_partitions(pipe);
        if (rm_mono_ms() >= pipe->pi_next_snapshot_ms) {
            pipe_flush_dead_letters(pipe, PIPE_OUTBOX_FLUSH_MS, true, false);
            commit_kafka_offsets(pipe, true);
            pipe_publish_snapshot(pipe);
        }
        if (pipe->pi_opts.po_tick && (rc = pipe->pi_opts.po_tick(pipe->pi_opts.po_tick_arg, pipe)))
            return rc;
    }
}

/* Note 7: all or nothing. Everything that can fail (the new engine and outbox, the
 * adoption of the old generation's dead letters, the new store's offsets, the
 * consumer's assignment at them) happens before the pipeline lets go of anything of the
 * old generation; rd_kafka_assign is the last step that can fail, and a failed one
 * leaves the assignment as it was. Only then are the parts swapped, which cannot fail.
 * On failure the pipeline holds nothing of store and keeps writing the old one. */
int pipe_switch_store(pipe_t *pipe, store_t *store, int64_t generation, char *errstr, size_t errlen)
{
    assert(pipe->pi_batch_count == 0); /* between batches only (po_tick) */
    engine_t *engine = NULL;
    outbox_t *outbox = NULL;
    pipe_tp_t *tps = NULL;
    int rc = make_store_parts(pipe, store, &engine, &outbox, errstr, errlen);
    if (rc)
        goto failed;
    /* Dead letters recorded in the old generation: publish what the broker takes now. */
    pipe_flush_dead_letters(pipe, PIPE_OUTBOX_FLUSH_MS, true, true);
    commit_all_kafka_offsets(pipe);
    /* The new generation (a rebuild) re-consumes what the old one applied since the
     * rebuild caught up: it must not record those dead letters a second time. */
    rc = outbox_adopt(outbox, pipe->pi_opts.po_store, false);
    if (rc) {
        snprintf(errstr, errlen, "cannot adopt the previous generation's dead letters: %s",
                 rm_strerror(rc));
        goto failed;
    }
    tps = malloc((pipe->pi_tp_count ? pipe->pi_tp_count : 1) * sizeof(*tps));
    if (!tps) {
        rc = RM_ENOMEM;
        snprintf(errstr, errlen, "out of memory");
        goto failed;
    }
    memcpy(tps, pipe->pi_tps, pipe->pi_tp_count * sizeof(*tps));
    for (size_t i = 0; i < pipe->pi_tp_count; i++) {
        pipe_tp_t *tp = &tps[i];
        tp->pt_next_offset = -1; /* loaded from the new store below */
        tp->pt_last_event_ms = 0;
        tp->pt_batch_event_ms = 0;
        tp->pt_gate_ms = 0;
        tp->pt_start_offset = -1;
        /* Assigned afresh at the new store's offsets below: nothing is held any more. */
        tp->pt_held_offset = -1;
        tp->pt_batch_held = -1;
        tp->pt_expect_held = false;
    }
    int orc = outbox_recover(outbox, PIPE_METADATA_TIMEOUT_MS);
    if (orc)
        log_warn("cannot read the dead-letter topics to recover the outbox; pending dead "
                 "letters wait until they can be read (retried every 10 s)",
                 LOG_S("error", rm_strerror(orc)));
    rc = pipe_load_offsets(pipe, store, tps);
    if (rc) {
        snprintf(errstr, errlen, "cannot read the new generation's offsets: %s", rm_strerror(rc));
        goto failed;
    }
    rc = pipe_assign_tps(pipe, tps);
    if (rc) {
        snprintf(errstr, errlen, "cannot assign the partitions at the new generation's offsets: %s",
                 rm_strerror(rc));
        goto failed;
    }
    /* Committed: the consumer reads at the new offsets; swap the parts to match. */
    engine_destroy(pipe->pi_engine);
    outbox_destroy(pipe->pi_outbox);
    pipe->pi_engine = engine;
    pipe->pi_outbox = outbox;
    pipe->pi_opts.po_store = store;
    pipe->pi_opts.po_generation = generation;
    /* Partitions paused for the registry are read afresh from the new store's offsets
     * (note 10): whatever a fresh assignment keeps of the pause, lift it. */
    rd_kafka_topic_partition_list_t *held = rd_kafka_topic_partition_list_new(4);
    for (size_t i = 0; i < pipe->pi_tp_count; i++)
        if (pipe->pi_tps[i].pt_held_offset >= 0)
            rd_kafka_topic_partition_list_add(
                held, pipe->pi_opts.po_view->v_topics[pipe->pi_tps[i].pt_topic],
                pipe->pi_tps[i].pt_partition);
    if (held->cnt)
        rd_kafka_resume_partitions(pipe->pi_rk, held);
    rd_kafka_topic_partition_list_destroy(held);
    pipe->pi_registry_marked = 0; /* the new store has no mark yet */
    memcpy(pipe->pi_tps, tps, pipe->pi_tp_count * sizeof(*tps));
    free(tps);
    pthread_mutex_lock(&pipe->pi_lock);
    pipe->pi_snap.ps_generation = generation;
    pthread_mutex_unlock(&pipe->pi_lock);
    pipe_publish_snapshot(pipe);
    return 0;

failed:
    engine_destroy(engine);
    outbox_destroy(outbox);
    free(tps);
    pipe->pi_switch_failures++;
    pipe_publish_snapshot(pipe);
    return rc;
}

int pipe_adopt_previous(pipe_t *pipe, store_t *previous)
{
    return outbox_adopt(pipe->pi_outbox, previous, true);
}
