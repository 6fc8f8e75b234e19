/* pipeline: consume → group-commit batch → apply → commit with offsets (see pipeline.h). */
#include "pipeline.h"
#include "rm_time.h"
#include "failpoint.h"
#include "kafka.h"
#include "log.h"
#include "metrics.h"
#include "outbox.h"
#include "degraded.h"
#include "rm_err.h"

#include <assert.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PIPE_POLL_IDLE_MS 100     /* poll timeout when no batch is open: bounds stop latency */
#define PIPE_METADATA_TIMEOUT_MS 5000
#define PIPE_BACKOFF_MAX_MS 5000  /* disk-full / I/O retry backoff ceiling */
#define PIPE_MAX_PARTITIONS 4096
#define PIPE_OUTBOX_FLUSH_MS 2000 /* bounded wait for dead-letter acks between batches */
/* And before a clean exit: a broker that is up acks in milliseconds; one that is not
 * must not hold a SIGTERM (the letters stay in the outbox for the next start). Part of
 * the shutdown bound docs/runbook.md states. */
#define PIPE_OUTBOX_EXIT_FLUSH_MS 3000
#define PIPE_HOLD_MIN_MS 250      /* first retry of a partition held for the registry */
#define PIPE_SEEK_TIMEOUT_MS 2000 /* seeking a held partition back to its held message */
#define PIPE_RESEEK_MS 500 /* at most this often again, if messages past it still come */

/* Why a stored offset is outside its partition's log (handle_gap); the readmodel_gaps_total
 * label and the "cause" of the gap record. */
typedef enum pipe_gap_cause {
    PIPE_GAP_RETENTION = 0, /* below the log start: deleted before the view saw it */
    PIPE_GAP_LOG_TRUNCATED, /* beyond the log end: topic recreated, or unclean election */
    PIPE_GAP_UNKNOWN, /* the watermarks could not be read: not recorded */
    PIPE_GAP__CAUSES
} pipe_gap_cause_t;

static const char *const pipe_gap_cause_names[PIPE_GAP__CAUSES] = {"retention", "log-truncated",
                                                                   "unknown"};

typedef struct pipe_tp {
    int pt_topic;           /* index into the view's topics */
    int32_t pt_partition;
    int64_t pt_next_offset; /* committed in the store; -1: nothing stored yet */
    int64_t pt_last_event_ms;
    int64_t pt_target;      /* --until-caught-up: high watermark at start; with
                               po_stop_offsets: the stop offset (0: not listed) */
    bool pt_stop_reached;   /* po_stop_offsets: a message at or above pt_target arrived */
    int64_t pt_batch_next;  /* next offset after the open batch (-1: untouched) */
    int64_t pt_batch_event_ms;
    int64_t pt_gate_ms;     /* > 0: skip messages older than this (note 6 in pipeline.h) */
    int64_t pt_start_offset; /* where this run started the partition (-1: unknown) */
    bool pt_gap_pending; /* load_targets: a gap to handle before this run is caught up */
    /* Link topics only (expire_parked): every message produced before pt_read_ms (wall
     * clock) has been applied; a probe (pt_probe_ms > 0) waits for the stored offset to
     * reach pt_probe_high, the high watermark seen at pt_probe_ms. */
    int64_t pt_read_ms;
    int64_t pt_probe_ms;
    int64_t pt_probe_high;
    /* Registry outage (note 10 in pipeline.h): the message at pt_held_offset could not be
     * decoded because its schema could not be fetched; the partition is paused and
     * sought back to it until pt_resume_ms. -1: not held. */
    int64_t pt_held_offset;
    int64_t pt_batch_held;     /* the open batch held the partition at this offset, or -1 */
    int64_t pt_resume_ms;      /* monotonic */
    int64_t pt_hold_backoff_ms;
    bool pt_expect_held;       /* resumed: the first message must be pt_held_offset */
    int64_t pt_reseek_ms;      /* monotonic: when fill_batch last sought it back again */
} pipe_tp_t;

/* What a scrape sees: copied by the consumer thread under pi_lock after each batch. */
typedef struct pipe_snapshot {
    pipe_stats_t ps_stats;
    uint64_t *ps_applied_by_rule; /* per view rule: events applied */
    metrics_hist_t ps_batch_events;
    metrics_hist_t ps_commit_seconds;
    store_sync_stats_t ps_sync;   /* of the store being written */
    pipe_tp_t *ps_tps;
    int64_t *ps_high;             /* per partition: high watermark as last seen */
    size_t ps_tp_count;
    size_t ps_parked;
    size_t ps_map_bytes;
    size_t ps_used_bytes;
    int64_t ps_generation;
    outbox_stats_t ps_outbox;
    uint64_t ps_gaps[PIPE_GAP__CAUSES];
    uint64_t ps_expired;
    uint64_t ps_switch_failures;
    uint64_t ps_expiry_checks;
    uint64_t ps_registry_waits;
    size_t ps_registry_paused;
} pipe_snapshot_t;

struct pipe {
    pipe_opts_t pi_opts;
    pthread_mutex_t pi_lock;      /* guards pi_snap */
    pipe_snapshot_t pi_snap;
    uint64_t *pi_applied_by_rule; /* consumer thread's live counters */
    metrics_hist_t pi_batch_events;
    metrics_hist_t pi_commit_seconds;
    int64_t pi_next_snapshot_ms;
    int64_t pi_next_expire_ms;
    int64_t pi_parked_max_age_ms;
    int64_t pi_parked_check_ms; /* projector.parked_check_interval_ms */
    const store_t *pi_probed_store; /* the store the link-topic probes were taken for */
    uint64_t pi_expiry_checks; /* expiry passes run */
    bool pi_continue_on_gap;
    int pi_gap_tp;                /* index of a partition that hit a gap, or -1 */
    int64_t pi_gap_offset;        /* the offset that was out of range */
    uint64_t pi_gaps[PIPE_GAP__CAUSES]; /* gaps detected since start, by cause */
    uint64_t pi_expired;          /* parked events dead-lettered (link-timeout) */
    uint64_t pi_switch_failures; /* pipe_switch_store calls that kept the old store */
    rd_kafka_t *pi_rk;
    engine_t *pi_engine;
    outbox_t *pi_outbox;
    pipe_tp_t *pi_tps;
    size_t pi_tp_count;
    bool *pi_link_topic;          /* per view topic: carries events that learn links */
    rd_kafka_message_t **pi_batch;
    bool *pi_batch_skip;          /* per batch slot: before the start time (note 6) */
    size_t pi_batch_count;
    size_t pi_batch_cap;
    pipe_close_t pi_batch_closed_by; /* what closed the open batch (fill_batch) */
    int64_t pi_batch_max_events;
    int64_t pi_batch_max_ms;
    int64_t pi_metadata_refresh_ms;
    int64_t pi_next_metadata_ms;
    volatile sig_atomic_t pi_stop;
    pipe_stats_t pi_stats;
    failpoint_skips_t *pi_skips;  /* RM_TEST_SKIP_APPLY; NULL (the normal case): none */
    /* Kafka offset commits wait until the store commit they describe is durable
     * (commit_kafka_offsets): the snapshot waiting for the disk, and the newer one. */
    rd_kafka_topic_partition_list_t *pi_kafka_waiting;
    uint64_t pi_kafka_waiting_txnid;
    rd_kafka_topic_partition_list_t *pi_kafka_next;
    uint64_t pi_kafka_next_txnid;
    uint64_t pi_batch_hook_skips; /* skipped by it in the open batch's transaction */
    uint64_t pi_registry_waits;   /* messages held for the schema registry (note 10) */
    size_t pi_registry_marked;    /* paused partitions the store's mark says (note 10) */
    char pi_registry_reason[192]; /* why the last message was held */
};

static pipe_tp_t *tp_find(pipe_t *pipe, int topic, int32_t partition)
{
    for (size_t i = 0; i < pipe->pi_tp_count; i++)
        if (pipe->pi_tps[i].pt_topic == topic && pipe->pi_tps[i].pt_partition == partition)
            return &pipe->pi_tps[i];
    return NULL;
}

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

static int dead_letter_unparked(void *ctx, MDB_txn *txn, const engine_msg_t *msg,
                                const engine_result_t *res);

/* The engine and outbox of store (both hold the store; rebuilt on a switch). */
static int make_store_parts(pipe_t *pipe, store_t *store, engine_t **ret_engine,
                            outbox_t **ret_outbox, char *errstr, size_t errlen)
{
    const pipe_opts_t *opts = &pipe->pi_opts;
    const cfg_t *cfg = opts->po_cfg;
    engine_opts_t eopts = {
        .eo_max_message_bytes = (size_t)cfg_int(cfg, "projector.max_message_bytes"),
        .eo_erasures = opts->po_erasures,
        .eo_unparked_rejected = opts->po_scratch ? NULL : dead_letter_unparked,
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
    const char *effective_group = cfg_kafka_get(cfg, "group.id") ? cfg_kafka_get(cfg, "group.id") : group;
    outbox_t *outbox = outbox_new(store, cfg, opts->po_view->v_name, effective_group,
                                  opts->po_view->v_topics, opts->po_view->v_topic_count, errstr, errlen);
    if (!outbox) {
        engine_destroy(engine);
        return RM_EKAFKA;
    }
    *ret_engine = engine;
    *ret_outbox = outbox;
    return 0;
}

pipe_t *pipe_new(const pipe_opts_t *opts, char *errstr, size_t errlen)
{
    pipe_t *pipe = calloc(1, sizeof(*pipe));
    if (!pipe) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    pipe->pi_opts = *opts;
    pthread_mutex_init(&pipe->pi_lock, NULL);
    /* Buckets: batch sizes from 1 to the 50k where docs/architecture.md §3 measured the LMDB
     * plateau; commit latencies from 100 µs (no fsync) to 2.5 s (a stalled disk). */
    static const double batch_bounds[] = {1, 10, 100, 500, 1000, 2000, 5000, 10000, 20000, 50000};
    static const double commit_bounds[] = {0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                           0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};
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
        !pipe->pi_link_topic ||
        !pipe->pi_snap.ps_applied_by_rule || !pipe->pi_snap.ps_tps || !pipe->pi_snap.ps_high) {
        snprintf(errstr, errlen, "out of memory");
        pipe_destroy(pipe);
        return NULL;
    }

    /* Read once: the hot path then tests one pointer (failpoint.h). */
    if (!opts->po_scratch &&
        failpoint_skips_parse(getenv(FAILPOINT_SKIP_ENV), &pipe->pi_skips, errstr, errlen)) {
        pipe_destroy(pipe);
        return NULL;
    }
    char group[160];
    snprintf(group, sizeof(group), "readmodel-%s", opts->po_view->v_name);
    /* Defaults chosen for exactly-once effect (docs/architecture.md §2) and for librdkafka
     * 2.0.2's prefetch stall (§8): the prefetch queue holds well over a second of
     * peak input so the fetcher never idles for its fixed 1 s backoff. Config
     * overrides any of them. */
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
    rd_kafka_conf_t *conf = kafka_conf_new(cfg, defaults, errstr, errlen);
    if (!conf) {
        pipe_destroy(pipe);
        return NULL;
    }
    char rkerr[512];
    pipe->pi_rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, rkerr, sizeof(rkerr));
    if (!pipe->pi_rk) {
        snprintf(errstr, errlen, "kafka consumer: %s", rkerr);
        rd_kafka_conf_destroy(conf);
        pipe_destroy(pipe);
        return NULL;
    }
    if (make_store_parts(pipe, opts->po_store, &pipe->pi_engine, &pipe->pi_outbox, errstr, errlen)) {
        pipe_destroy(pipe);
        return NULL;
    }
    return pipe;
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

void pipe_get_stats(pipe_t *pipe, pipe_stats_t *ret_stats)
{
    pthread_mutex_lock(&pipe->pi_lock);
    *ret_stats = pipe->pi_snap.ps_stats;
    pthread_mutex_unlock(&pipe->pi_lock);
}

/* Consumer thread: publishes the counters for scrapes (after a batch, or once a
 * second when idle so high watermarks and lag keep moving). */
static void publish_snapshot(pipe_t *pipe)
{
    const view_t *view = pipe->pi_opts.po_view;
    store_t *store = pipe->pi_opts.po_store;
    size_t parked = 0, map_bytes = 0, used_bytes = 0;
    MDB_txn *txn;
    if (store_read_begin(store, &txn) == 0) {
        engine_parked_count(pipe->pi_engine, txn, &parked);
        store_read_end(txn);
    }
    store_usage(store, &map_bytes, &used_bytes);
    pthread_mutex_lock(&pipe->pi_lock);
    pipe_snapshot_t *snap = &pipe->pi_snap;
    snap->ps_stats = pipe->pi_stats;
    memcpy(snap->ps_applied_by_rule, pipe->pi_applied_by_rule,
           view->v_rule_count * sizeof(uint64_t));
    snap->ps_batch_events = pipe->pi_batch_events;
    snap->ps_commit_seconds = pipe->pi_commit_seconds;
    store_sync_stats(store, &snap->ps_sync);
    memcpy(snap->ps_tps, pipe->pi_tps, pipe->pi_tp_count * sizeof(pipe_tp_t));
    for (size_t i = 0; i < pipe->pi_tp_count; i++) {
        int64_t low = 0, high = 0;
        rd_kafka_get_watermark_offsets(pipe->pi_rk, view->v_topics[pipe->pi_tps[i].pt_topic],
                                       pipe->pi_tps[i].pt_partition, &low, &high);
        snap->ps_high[i] = high;
    }
    snap->ps_tp_count = pipe->pi_tp_count;
    snap->ps_parked = parked;
    snap->ps_map_bytes = map_bytes;
    snap->ps_used_bytes = used_bytes;
    /* Crashed readers (a killed query API) must not pin pages for long. */
    int dead = store_reader_check(store);
    if (dead > 0)
        log_info("cleared stale reader slots", LOG_I("slots", dead));
    outbox_get_stats(pipe->pi_outbox, &snap->ps_outbox);
    memcpy(snap->ps_gaps, pipe->pi_gaps, sizeof(snap->ps_gaps));
    snap->ps_expired = pipe->pi_expired;
    snap->ps_switch_failures = pipe->pi_switch_failures;
    snap->ps_expiry_checks = pipe->pi_expiry_checks;
    snap->ps_registry_waits = pipe->pi_registry_waits;
    snap->ps_registry_paused = 0;
    for (size_t i = 0; i < pipe->pi_tp_count; i++)
        snap->ps_registry_paused += pipe->pi_tps[i].pt_held_offset >= 0;
    pthread_mutex_unlock(&pipe->pi_lock);
    pipe->pi_next_snapshot_ms = rm_mono_ms() + 1000;
}

int pipe_render_metrics(pipe_t *pipe, buf_t *out)
{
    const view_t *view = pipe->pi_opts.po_view;
    int64_t wall = rm_wall_ms();
    int rc = 0;
    pthread_mutex_lock(&pipe->pi_lock);
    const pipe_snapshot_t *snap = &pipe->pi_snap;
#define FAMILY(name, type, help) rc = rc ? rc : metrics_family(out, name, type, help)
    FAMILY("readmodel_partition_next_offset", "gauge", "Next offset to apply, as committed in the store.");
    for (size_t i = 0; !rc && i < snap->ps_tp_count; i++) {
        const pipe_tp_t *tp = &snap->ps_tps[i];
        char part[16];
        snprintf(part, sizeof(part), "%d", tp->pt_partition);
        const char *labels[] = {"view", view->v_name, "topic", view->v_topics[tp->pt_topic],
                                "partition", part, NULL};
        rc = metrics_sample_i64(out, "readmodel_partition_next_offset",
                                tp->pt_next_offset < 0 ? 0 : tp->pt_next_offset, labels);
    }
    FAMILY("readmodel_partition_high_watermark", "gauge", "Partition high watermark as last fetched.");
    FAMILY("readmodel_partition_lag_messages", "gauge", "High watermark minus next offset.");
    FAMILY("readmodel_partition_lag_seconds", "gauge",
           "Now minus the newest applied event time (0 when caught up).");
    for (size_t i = 0; !rc && i < snap->ps_tp_count; i++) {
        const pipe_tp_t *tp = &snap->ps_tps[i];
        char part[16];
        snprintf(part, sizeof(part), "%d", tp->pt_partition);
        const char *labels[] = {"view", view->v_name, "topic", view->v_topics[tp->pt_topic],
                                "partition", part, NULL};
        int64_t next = tp->pt_next_offset < 0 ? 0 : tp->pt_next_offset;
        int64_t lag = snap->ps_high[i] > next ? snap->ps_high[i] - next : 0;
        double lag_s = lag && tp->pt_last_event_ms ? (double)(wall - tp->pt_last_event_ms) / 1000.0 : 0;
        rc = metrics_sample_i64(out, "readmodel_partition_high_watermark", snap->ps_high[i], labels);
        rc = rc ? rc : metrics_sample_i64(out, "readmodel_partition_lag_messages", lag, labels);
        rc = rc ? rc : metrics_sample_f64(out, "readmodel_partition_lag_seconds", lag_s < 0 ? 0 : lag_s, labels);
    }
    FAMILY("readmodel_events_total", "counter", "Events consumed, by outcome.");
    for (int o = 0; !rc && o < ENGINE__OUTCOMES; o++) {
        const char *labels[] = {"view", view->v_name, "outcome", engine_outcome_name(o), NULL};
        rc = metrics_sample_i64(out, "readmodel_events_total", (int64_t)snap->ps_stats.ps_outcomes[o], labels);
    }
    FAMILY("readmodel_events_applied_total", "counter", "Events applied, by event type.");
    for (size_t r = 0; !rc && r < view->v_rule_count; r++) {
        const char *labels[] = {"view", view->v_name, "event", view->v_rules[r].vr_event, NULL};
        rc = metrics_sample_i64(out, "readmodel_events_applied_total", (int64_t)snap->ps_applied_by_rule[r], labels);
    }
    const char *vlabels[] = {"view", view->v_name, NULL};
    FAMILY("readmodel_batch_events", "histogram", "Events per committed batch.");
    rc = rc ? rc : metrics_hist_render(out, "readmodel_batch_events", &snap->ps_batch_events, vlabels);
    FAMILY("readmodel_commit_seconds", "histogram", "Time to apply and commit one batch.");
    rc = rc ? rc : metrics_hist_render(out, "readmodel_commit_seconds", &snap->ps_commit_seconds, vlabels);
    static const char *const closed_by[PIPE_CLOSE__COUNT] = {"drained", "max_ms", "max_events",
                                                             "stopped"};
    FAMILY("readmodel_batches_total", "counter",
           "Committed batches by what closed them: drained (the consumer queue was empty), "
           "max_ms, max_events, stopped.");
    for (int c = 0; !rc && c < PIPE_CLOSE__COUNT; c++) {
        const char *labels[] = {"view", view->v_name, "closed_by", closed_by[c], NULL};
        rc = metrics_sample_i64(out, "readmodel_batches_total",
                                (int64_t)snap->ps_stats.ps_batches_closed[c], labels);
    }
    FAMILY("readmodel_store_syncs_total", "counter",
           "Background fsyncs of the store (periodic durability), by outcome.");
    for (int failed = 0; !rc && failed < 2; failed++) {
        const char *labels[] = {"view", view->v_name, "outcome", failed ? "failed" : "ok", NULL};
        rc = metrics_sample_i64(out, "readmodel_store_syncs_total",
                                (int64_t)(failed ? snap->ps_sync.sst_failures : snap->ps_sync.sst_syncs),
                                labels);
    }
    FAMILY("readmodel_store_sync_seconds", "histogram", "Duration of one successful store fsync.");
    rc = rc ? rc : metrics_hist_render(out, "readmodel_store_sync_seconds", &snap->ps_sync.sst_seconds, vlabels);
    FAMILY("readmodel_batch_retries_total", "counter", "Batches re-applied after a store error.");
    rc = rc ? rc : metrics_sample_i64(out, "readmodel_batch_retries_total", (int64_t)snap->ps_stats.ps_commit_retries, vlabels);
    FAMILY("readmodel_map_grows_total", "counter", "Times the LMDB map was grown.");
    rc = rc ? rc : metrics_sample_i64(out, "readmodel_map_grows_total", (int64_t)snap->ps_stats.ps_map_grows, vlabels);
    FAMILY("readmodel_parked_events", "gauge", "Events waiting for a link.");
    rc = rc ? rc : metrics_sample_i64(out, "readmodel_parked_events", (int64_t)snap->ps_parked, vlabels);
    FAMILY("readmodel_dead_letters_total", "counter", "Messages dead-lettered (recorded in the outbox).");
    rc = rc ? rc : metrics_sample_i64(out, "readmodel_dead_letters_total", (int64_t)snap->ps_outbox.os_recorded, vlabels);
    FAMILY("readmodel_dead_letters_published_total", "counter", "Dead letters acknowledged by the broker.");
    rc = rc ? rc : metrics_sample_i64(out, "readmodel_dead_letters_published_total", (int64_t)snap->ps_outbox.os_published, vlabels);
    FAMILY("readmodel_dead_letters_pending", "gauge", "Dead letters waiting in the outbox.");
    rc = rc ? rc : metrics_sample_i64(out, "readmodel_dead_letters_pending", (int64_t)snap->ps_outbox.os_pending, vlabels);
    FAMILY("readmodel_gaps_total", "counter",
           "Partitions found with a stored offset outside the log, by cause: retention (below "
           "the log start), log-truncated (beyond the log end), unknown (no watermarks to "
           "tell; the projector stops and looks again at its next start).");
    for (int c = 0; !rc && c < PIPE_GAP__CAUSES; c++) {
        const char *labels[] = {"view", view->v_name, "cause", pipe_gap_cause_names[c], NULL};
        rc = metrics_sample_i64(out, "readmodel_gaps_total", (int64_t)snap->ps_gaps[c], labels);
    }
    FAMILY("readmodel_parked_expired_total", "counter", "Parked events dead-lettered with link-timeout.");
    rc = rc ? rc : metrics_sample_i64(out, "readmodel_parked_expired_total", (int64_t)snap->ps_expired, vlabels);
    FAMILY("readmodel_parked_expiry_checks_total", "counter",
           "Passes that looked for parked events past projector.parked_max_age_s.");
    rc = rc ? rc
            : metrics_sample_i64(out, "readmodel_parked_expiry_checks_total",
                                 (int64_t)snap->ps_expiry_checks, vlabels);
    FAMILY("readmodel_store_map_bytes", "gauge", "LMDB map size.");
    rc = rc ? rc : metrics_sample_i64(out, "readmodel_store_map_bytes", (int64_t)snap->ps_map_bytes, vlabels);
    FAMILY("readmodel_store_used_bytes", "gauge", "LMDB bytes in use.");
    rc = rc ? rc : metrics_sample_i64(out, "readmodel_store_used_bytes", (int64_t)snap->ps_used_bytes, vlabels);
    FAMILY("readmodel_store_generation", "gauge", "Store generation being written (0: flat store).");
    rc = rc ? rc : metrics_sample_i64(out, "readmodel_store_generation", snap->ps_generation, vlabels);
    FAMILY("readmodel_generation_switch_failures_total", "counter",
           "Switches to a new store generation that failed; the old one is still written.");
    rc = rc ? rc
            : metrics_sample_i64(out, "readmodel_generation_switch_failures_total",
                                 (int64_t)snap->ps_switch_failures, vlabels);
    FAMILY("readmodel_schema_registry_paused_partitions", "gauge",
           "Partitions paused because a message's schema could not be fetched from the "
           "schema registry (an outage, not poison: retried with backoff).");
    rc = rc ? rc
            : metrics_sample_i64(out, "readmodel_schema_registry_paused_partitions",
                                 (int64_t)snap->ps_registry_paused, vlabels);
    FAMILY("readmodel_schema_registry_waits_total", "counter",
           "Messages held back (not applied, not dead-lettered) for an unavailable registry.");
    rc = rc ? rc
            : metrics_sample_i64(out, "readmodel_schema_registry_waits_total",
                                 (int64_t)snap->ps_registry_waits, vlabels);
    if (pipe->pi_opts.po_registry) {
        registry_stats_t rs;
        registry_get_stats(pipe->pi_opts.po_registry, &rs);
        FAMILY("readmodel_schema_registry_errors_total", "counter",
               "Schema registry requests that failed (connection, timeout, 5xx, auth).");
        rc = rc ? rc
                : metrics_sample_i64(out, "readmodel_schema_registry_errors_total",
                                     (int64_t)rs.rs_errors, vlabels);
        FAMILY("readmodel_schema_registry_fetches_total", "counter",
               "Schemas fetched from the schema registry by id.");
        rc = rc ? rc
                : metrics_sample_i64(out, "readmodel_schema_registry_fetches_total",
                                     (int64_t)rs.rs_fetches, vlabels);
        FAMILY("readmodel_schema_registry_not_found_total", "counter",
               "Schema ids the registry answered 40403 for (their messages are dead-lettered).");
        rc = rc ? rc
                : metrics_sample_i64(out, "readmodel_schema_registry_not_found_total",
                                     (int64_t)rs.rs_not_found, vlabels);
        FAMILY("readmodel_schema_registry_up", "gauge",
               "1 when the last schema registry request succeeded, 0 while it is failing.");
        rc = rc ? rc
                : metrics_sample_i64(out, "readmodel_schema_registry_up", rs.rs_down ? 0 : 1,
                                     vlabels);
    }
#undef FAMILY
    pthread_mutex_unlock(&pipe->pi_lock);
    return rc;
}

/* Note 6: where partitions with no stored offset start for po_start_time_ms, and
 * their time gate. A partition the broker cannot answer for starts at the beginning,
 * gated; a lookup failure leaves it there too (slower, never wrong). */
static void resolve_start_time(pipe_t *pipe, pipe_tp_t *tps, int64_t *start)
{
    const view_t *view = pipe->pi_opts.po_view;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)pipe->pi_tp_count);
    for (size_t i = 0; i < pipe->pi_tp_count; i++) {
        pipe_tp_t *tp = &tps[i];
        if (tp->pt_next_offset >= 0 || tp->pt_start_offset >= 0)
            continue;
        tp->pt_gate_ms = pipe->pi_opts.po_start_time_ms;
        rd_kafka_topic_partition_list_add(list, view->v_topics[tp->pt_topic], tp->pt_partition)
            ->offset = pipe->pi_opts.po_start_time_ms;
    }
    rd_kafka_resp_err_t err = list->cnt ? rd_kafka_offsets_for_times(pipe->pi_rk, list,
                                                                     PIPE_METADATA_TIMEOUT_MS)
                                        : RD_KAFKA_RESP_ERR_NO_ERROR;
    if (err)
        log_warn("offsets for the start time unavailable; scanning from the log start",
                 LOG_S("error", rd_kafka_err2str(err)));
    for (int i = 0; !err && i < list->cnt; i++) {
        const rd_kafka_topic_partition_t *p = &list->elems[i];
        /* tps is pi_tps or a copy of it in the same order (pipe_switch_store). */
        pipe_tp_t *tp = tp_find(pipe, view_topic_index(view, p->topic), p->partition);
        if (tp && !p->err && p->offset >= 0)
            start[tp - pipe->pi_tps] = p->offset;
    }
    rd_kafka_topic_partition_list_destroy(list);
}

/* Fills tps (pi_tps, or the copy a switch prepares) with store's offsets where none is
 * known yet (pt_next_offset < 0). */
static int load_offsets(pipe_t *pipe, store_t *store, pipe_tp_t *tps)
{
    const view_t *view = pipe->pi_opts.po_view;
    MDB_txn *txn;
    int rc = store_read_begin(store, &txn);
    if (rc)
        return rc;
    for (size_t i = 0; i < pipe->pi_tp_count; i++) {
        pipe_tp_t *tp = &tps[i];
        store_offset_t off;
        if (tp->pt_next_offset < 0 &&
            store_offset_get(store, txn, view->v_topics[tp->pt_topic], tp->pt_partition, &off) == 0) {
            tp->pt_next_offset = off.so_next_offset;
            tp->pt_last_event_ms = off.so_last_event_ms;
        }
    }
    store_read_end(txn);
    return 0;
}

/* (Re)assigns every partition of tps at its next offset (or where this run started it,
 * or the beginning). Fills in pt_start_offset and, for a start time, pt_gate_ms of tps.
 * On error the consumer's assignment is unchanged. */
static int assign_tps(pipe_t *pipe, pipe_tp_t *tps)
{
    const view_t *view = pipe->pi_opts.po_view;
    int64_t *start = malloc((pipe->pi_tp_count ? pipe->pi_tp_count : 1) * sizeof(*start));
    if (!start)
        return RM_ENOMEM;
    for (size_t i = 0; i < pipe->pi_tp_count; i++)
        start[i] = tps[i].pt_next_offset >= 0    ? tps[i].pt_next_offset
                   : tps[i].pt_start_offset >= 0 ? tps[i].pt_start_offset
                                                 : RD_KAFKA_OFFSET_BEGINNING;
    if (pipe->pi_opts.po_start_time_ms > 0)
        resolve_start_time(pipe, tps, start);
    rd_kafka_topic_partition_list_t *list =
        rd_kafka_topic_partition_list_new((int)pipe->pi_tp_count);
    for (size_t i = 0; i < pipe->pi_tp_count; i++) {
        pipe_tp_t *tp = &tps[i];
        if (tp->pt_start_offset < 0)
            tp->pt_start_offset = start[i] >= 0 ? start[i] : 0;
        rd_kafka_topic_partition_list_add(list, view->v_topics[tp->pt_topic], tp->pt_partition)
            ->offset = start[i];
    }
    free(start);
    /* A failpoint, so a test can see what a failed assignment leaves behind. */
    rd_kafka_resp_err_t err =
        failpoint_errno("assign") ? RD_KAFKA_RESP_ERR__FAIL : rd_kafka_assign(pipe->pi_rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (err) {
        log_error("assign failed", LOG_S("error", rd_kafka_err2str(err)));
        return kafka_err(err);
    }
    return 0;
}

/* Loads stored offsets for partitions that have none yet and (re)assigns every known
 * partition at its stored next offset (or the beginning when nothing is stored). */
static int assign_all(pipe_t *pipe)
{
    int rc = load_offsets(pipe, pipe->pi_opts.po_store, pipe->pi_tps);
    return rc ? rc : assign_tps(pipe, pipe->pi_tps);
}

/* Discovers the partitions of the view's topics; assigns when new ones appeared. */
static int refresh_partitions(pipe_t *pipe)
{
    const view_t *view = pipe->pi_opts.po_view;
    const struct rd_kafka_metadata *md;
    rd_kafka_resp_err_t err = rd_kafka_metadata(pipe->pi_rk, 1, NULL, &md, PIPE_METADATA_TIMEOUT_MS);
    pipe->pi_next_metadata_ms = rm_mono_ms() + pipe->pi_metadata_refresh_ms;
    if (err) {
        log_warn("metadata request failed; retrying later", LOG_S("error", rd_kafka_err2str(err)));
        return kafka_err(err);
    }
    size_t before = pipe->pi_tp_count;
    for (int t = 0; t < md->topic_cnt; t++) {
        const struct rd_kafka_metadata_topic *mt = &md->topics[t];
        int topic = view_topic_index(view, mt->topic);
        if (topic < 0 || mt->err)
            continue;
        for (int p = 0; p < mt->partition_cnt; p++) {
            if (tp_find(pipe, topic, mt->partitions[p].id) || pipe->pi_tp_count >= PIPE_MAX_PARTITIONS)
                continue;
            pipe_tp_t *tp = &pipe->pi_tps[pipe->pi_tp_count++];
            memset(tp, 0, sizeof(*tp));
            tp->pt_topic = topic;
            tp->pt_partition = mt->partitions[p].id;
            tp->pt_next_offset = -1;
            tp->pt_target = -1;
            tp->pt_batch_next = -1;
            tp->pt_start_offset = -1;
            tp->pt_held_offset = -1;
            tp->pt_batch_held = -1;
        }
    }
    for (size_t v = 0; v < view->v_topic_count; v++) {
        bool found = false;
        for (size_t i = 0; i < pipe->pi_tp_count; i++)
            found |= pipe->pi_tps[i].pt_topic == (int)v;
        if (!found)
            log_warn("topic has no partitions yet", LOG_S("topic", view->v_topics[v]));
    }
    rd_kafka_metadata_destroy(md);
    if (pipe->pi_tp_count == before)
        return 0;
    log_info("assigning partitions", LOG_I("partitions", pipe->pi_tp_count),
             LOG_I("new", pipe->pi_tp_count - before));
    return assign_all(pipe);
}

/* po_stop_offsets: each partition's target is its stop offset, 0 when not listed. */
static int load_stop_targets(pipe_t *pipe)
{
    const pipe_opts_t *opts = &pipe->pi_opts;
    for (size_t i = 0; i < pipe->pi_tp_count; i++)
        pipe->pi_tps[i].pt_target = 0;
    for (size_t s = 0; s < opts->po_stop_count; s++) {
        const pipe_stop_t *stop = &opts->po_stop_offsets[s];
        pipe_tp_t *tp = tp_find(pipe, view_topic_index(opts->po_view, stop->pst_topic),
                                stop->pst_partition);
        if (!tp) {
            log_error("stop offset for a partition that does not exist",
                      LOG_S("topic", stop->pst_topic), LOG_I("partition", stop->pst_partition));
            return RM_ENOTFOUND;
        }
        tp->pt_target = stop->pst_offset;
    }
    return 0;
}

/* --until-caught-up: the high watermark of every partition as it is now. */
static int load_targets(pipe_t *pipe)
{
    const view_t *view = pipe->pi_opts.po_view;
    if (pipe->pi_opts.po_stop_offsets)
        return load_stop_targets(pipe);
    for (size_t i = 0; i < pipe->pi_tp_count; i++) {
        pipe_tp_t *tp = &pipe->pi_tps[i];
        int64_t low, high;
        rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
            pipe->pi_rk, view->v_topics[tp->pt_topic], tp->pt_partition, &low, &high,
            PIPE_METADATA_TIMEOUT_MS);
        if (err) {
            log_error("watermark query failed", LOG_S("topic", view->v_topics[tp->pt_topic]),
                      LOG_I("partition", tp->pt_partition), LOG_S("error", rd_kafka_err2str(err)));
            return kafka_err(err);
        }
        tp->pt_target = high;
        /* Beyond the log end no fetch would ever error, and the target is already reached.
         * po_check_log_start: a partition this store has never seen must start at the
         * log start 0, or at a start time that is inside what retention kept. */
        bool unseen_deleted = pipe->pi_opts.po_check_log_start && tp->pt_next_offset < 0 &&
                              low > 0 && tp->pt_start_offset <= low;
        tp->pt_gap_pending = tp->pt_next_offset > high || unseen_deleted;
    }
    return 0;
}

static bool caught_up(const pipe_t *pipe)
{
    for (size_t i = 0; i < pipe->pi_tp_count; i++) {
        const pipe_tp_t *tp = &pipe->pi_tps[i];
        int64_t next = tp->pt_next_offset < 0 ? 0 : tp->pt_next_offset;
        if (tp->pt_target > 0 && next < tp->pt_target && !tp->pt_stop_reached)
            return false;
    }
    return true;
}

static void handle_error_message(pipe_t *pipe, const rd_kafka_message_t *msg)
{
    const char *topic = msg->rkt ? rd_kafka_topic_name(msg->rkt) : "";
    if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
        return;
    if (msg->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
        msg->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE) {
        /* auto.offset.reset=error: the stored offset is gone (retention). Never skip
         * silently: pipe_run records the gap and stops or continues per config. */
        pipe_tp_t *tp = tp_find(pipe, view_topic_index(pipe->pi_opts.po_view, topic), msg->partition);
        if (tp && pipe->pi_gap_tp < 0) {
            pipe->pi_gap_tp = (int)(tp - pipe->pi_tps);
            pipe->pi_gap_offset = tp->pt_next_offset;
        }
        return;
    }
    log_error("consumer error", LOG_S("topic", topic), LOG_I("partition", msg->partition),
              LOG_I("offset", msg->offset), LOG_S("error", rd_kafka_message_errstr(msg)));
}

/* The first gap load_targets found, as if a fetch had met it (pipe_run handles them
 * all before it applies anything). */
static void take_pending_gap(pipe_t *pipe)
{
    for (size_t i = 0; pipe->pi_gap_tp < 0 && i < pipe->pi_tp_count; i++) {
        if (pipe->pi_tps[i].pt_gap_pending) {
            pipe->pi_gap_tp = (int)i;
            pipe->pi_gap_offset = pipe->pi_tps[i].pt_next_offset;
        }
    }
}

/* Records a gap in meta ("gap/<topic>/<partition>", with its cause) so the API can report
 * the view as degraded for that partition, then stops (RM_EGAP) or resumes.
 * Below the log start (retention) it resumes at the log start: the events in between are
 * gone. Beyond the log end (a recreated topic, or a log an unclean leader election cut
 * back) it resumes at the log end, never lower: what is below the end the view has either
 * applied (truncation) or can only get by a rebuild (recreation, which also resets the
 * entity versions the guard compares), and re-reading it would dead-letter its poison and
 * mark its entities degraded a second time. */
static int handle_gap(pipe_t *pipe)
{
    const view_t *view = pipe->pi_opts.po_view;
    store_t *store = pipe->pi_opts.po_store;
    pipe_tp_t *tp = &pipe->pi_tps[pipe->pi_gap_tp];
    const char *topic = view->v_topics[tp->pt_topic];
    int64_t stored = pipe->pi_gap_offset;
    pipe->pi_gap_tp = -1;
    tp->pt_gap_pending = false;
    int64_t low = -1, high = -1;
    rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
        pipe->pi_rk, topic, tp->pt_partition, &low, &high, PIPE_METADATA_TIMEOUT_MS);
    if (!err && stored >= low && stored <= high) {
        /* Out of range a moment ago, inside the log now (the watermarks moved with a
         * leader change): nothing is missing, so read on from the stored offset. */
        log_warn("offset was out of range but is inside the log now; reading on",
                 LOG_S("view", view->v_name), LOG_S("topic", topic),
                 LOG_I("partition", tp->pt_partition), LOG_I("stored_offset", stored),
                 LOG_I("log_start", low), LOG_I("log_end", high));
        return assign_all(pipe);
    }
    pipe_gap_cause_t cause = err || low < 0  ? PIPE_GAP_UNKNOWN
                             : stored > high ? PIPE_GAP_LOG_TRUNCATED
                                             : PIPE_GAP_RETENTION;
    pipe->pi_gaps[cause]++;
    if (cause == PIPE_GAP_UNKNOWN) {
        /* Nothing to record yet: a restart (this is not APP_EXIT_GAP) looks again. */
        log_error("offset out of range and the log's watermarks are unavailable; stopping",
                  LOG_S("view", view->v_name), LOG_S("topic", topic),
                  LOG_I("partition", tp->pt_partition), LOG_I("stored_offset", stored),
                  LOG_S("error", rd_kafka_err2str(err)));
        return err ? kafka_err(err) : RM_EKAFKA;
    }
    int64_t resume = cause == PIPE_GAP_LOG_TRUNCATED ? high : low;
    bool resumes = pipe->pi_continue_on_gap;
    static const char *const what[PIPE_GAP_UNKNOWN][2] = {
        {"gap: events were deleted before this view saw them; stopping (projector.on_gap=stop)",
         "gap: events were deleted before this view saw them; recorded, continuing from the "
         "log start"},
        {"gap: the log ends before the stored offset (topic deleted and recreated, or cut back "
         "by an unclean leader election); stopping (projector.on_gap=stop)",
         "gap: the log ends before the stored offset (topic deleted and recreated, or cut back "
         "by an unclean leader election); recorded, continuing from the log end"},
    };
    log_error(what[cause][resumes], LOG_S("view", view->v_name), LOG_S("topic", topic),
              LOG_I("partition", tp->pt_partition), LOG_S("cause", pipe_gap_cause_names[cause]),
              LOG_I("stored_offset", stored), LOG_I("log_start", low), LOG_I("log_end", high));
    char name[320], value[400];
    snprintf(name, sizeof(name), "gap/%s/%d", topic, tp->pt_partition);
    snprintf(value, sizeof(value),
             "{\"topic\":\"%s\",\"partition\":%d,\"cause\":\"%s\",\"stored_offset\":%lld,"
             "\"log_start\":%lld,\"log_end\":%lld,\"detected_ms\":%lld,\"action\":\"%s\","
             "\"resumed_at\":%lld}",
             topic, tp->pt_partition, pipe_gap_cause_names[cause], (long long)stored,
             (long long)low, (long long)high, (long long)rm_wall_ms(),
             resumes ? "continued" : "stopped", (long long)(resumes ? resume : -1));
    MDB_txn *txn;
    int rc = store_write_begin(store, &txn);
    if (!rc)
        rc = store_meta_put(store, txn, name, value, strlen(value));
    if (!rc && resumes) {
        /* The offset moves in the same transaction as the record. */
        store_offset_t off = {resume, high, tp->pt_last_event_ms, rm_wall_ms()};
        rc = store_offset_put(store, txn, topic, tp->pt_partition, &off);
    }
    rc = rc ? (store_write_abort(txn), rc) : store_write_commit(store, txn);
    if (rc)
        return rc;
    if (!resumes)
        return RM_EGAP;
    tp->pt_next_offset = resume;
    return assign_all(pipe);
}

/* The entity a dead letter's key names is marked degraded in the same txn (degraded.h). */
static int mark_degraded(pipe_t *pipe, MDB_txn *txn, const outbox_letter_t *letter)
{
    degraded_event_t ev = {letter->ol_topic, letter->ol_partition, letter->ol_offset,
                           letter->ol_timestamp_ms, letter->ol_key, letter->ol_key_len,
                           letter->ol_error, letter->ol_reason};
    bool marked;
    int rc = degraded_mark(pipe->pi_opts.po_view, pipe->pi_opts.po_store, txn, &ev, &marked);
    /* Not resolved yet: the entity may come through a link not known yet. */
    return rc || marked ? rc
                        : degraded_mark_wait(pipe->pi_opts.po_view, pipe->pi_opts.po_store, txn,
                                             &ev, rm_wall_ms());
}

typedef struct expire_ctx {
    pipe_t *ec_pipe;
    char ec_reason[160];
} expire_ctx_t;

static int dead_letter_expired(void *ctx, MDB_txn *txn, const engine_parked_t *parked)
{
    expire_ctx_t *ec = ctx;
    snprintf(ec->ec_reason, sizeof(ec->ec_reason),
             "link-timeout: link '%s' not learned within %lld s", parked->ep_link,
             (long long)(ec->ec_pipe->pi_parked_max_age_ms / 1000));
    const engine_msg_t *m = &parked->ep_msg;
    outbox_letter_t letter = {m->em_topic, m->em_partition, m->em_offset, m->em_timestamp_ms,
                              m->em_key, m->em_key_len, m->em_value, m->em_value_len,
                              "link-timeout", ec->ec_reason};
    log_warn("parked event expired; dead-lettered", LOG_S("view", ec->ec_pipe->pi_opts.po_view->v_name),
             LOG_S("topic", m->em_topic), LOG_I("partition", m->em_partition),
             LOG_I("offset", m->em_offset), LOG_S("link", parked->ep_link));
    int rc = outbox_record(ec->ec_pipe->pi_outbox, txn, &letter);
    return rc ? rc : mark_degraded(ec->ec_pipe, txn, &letter);
}

static const char *error_class(int err);

/* A parked event rejected when its link arrived: dead-lettered like one rejected on
 * arrival, in the transaction that unparked it (engine_opts_t.eo_unparked_rejected). */
static int dead_letter_unparked(void *ctx, MDB_txn *txn, const engine_msg_t *msg,
                                const engine_result_t *res)
{
    pipe_t *pipe = ctx;
    outbox_letter_t letter = {msg->em_topic,        msg->em_partition, msg->em_offset,
                              msg->em_timestamp_ms, msg->em_key,       msg->em_key_len,
                              msg->em_value,        msg->em_value_len, error_class(res->er_error),
                              res->er_reason};
    int rc = outbox_record(pipe->pi_outbox, txn, &letter);
    rc = rc ? rc : mark_degraded(pipe, txn, &letter);
    if (!rc)
        log_warn("parked event dead-lettered when its link arrived",
                 LOG_S("view", pipe->pi_opts.po_view->v_name), LOG_S("topic", msg->em_topic),
                 LOG_I("partition", msg->em_partition), LOG_I("offset", msg->em_offset),
                 LOG_S("error", error_class(res->er_error)), LOG_S("reason", res->er_reason));
    return rc;
}

/* Publishes recorded dead letters, unless this pipeline holds them (po_hold_dead_letters).
 * A letter goes out only once its transaction is durable (outbox.h note 2); before a
 * clean exit or a switch of the store, sync_first makes it durable now rather than at
 * the next background sync, so that nothing is left behind that the broker would take. */
static void flush_dead_letters(pipe_t *pipe, int timeout_ms, bool only_when_due, bool sync_first)
{
    if (pipe->pi_opts.po_hold_dead_letters || pipe->pi_opts.po_scratch)
        return;
    if (only_when_due && !outbox_flush_due(pipe->pi_outbox))
        return;
    if (sync_first)
        store_sync(pipe->pi_opts.po_store); /* a failure only leaves letters waiting */
    outbox_flush(pipe->pi_outbox, timeout_ms);
}

/* The wall time before which every message of the link topics has been applied: a
 * parked event's link can still come while a link topic has a backlog older than the
 * event's wait, so link-timeout counts only time the link topics were read through.
 * Each partition's cached high watermark (as of its last fetch) is a probe; once the
 * stored offset reaches it, everything produced before the probe was applied. */
static int64_t links_read_until(pipe_t *pipe, int64_t now_ms)
{
    const view_t *view = pipe->pi_opts.po_view;
    bool new_store = pipe->pi_probed_store != pipe->pi_opts.po_store;
    pipe->pi_probed_store = pipe->pi_opts.po_store;
    int64_t read_until = now_ms;
    for (size_t i = 0; i < pipe->pi_tp_count; i++) {
        pipe_tp_t *tp = &pipe->pi_tps[i];
        if (!pipe->pi_link_topic[tp->pt_topic])
            continue;
        if (new_store) /* another generation: what the old one read proves nothing */
            tp->pt_read_ms = tp->pt_probe_ms = 0;
        int64_t low = -1, high = -1;
        rd_kafka_get_watermark_offsets(pipe->pi_rk, view->v_topics[tp->pt_topic], tp->pt_partition,
                                       &low, &high);
        int64_t next = tp->pt_next_offset >= 0 ? tp->pt_next_offset : low >= 0 ? low : 0;
        if (tp->pt_probe_ms > 0 && next >= tp->pt_probe_high) {
            tp->pt_read_ms = tp->pt_probe_ms;
            tp->pt_probe_ms = 0;
        }
        if (tp->pt_probe_ms == 0 && high >= 0) {
            if (next >= high) {
                tp->pt_read_ms = now_ms;
            } else {
                tp->pt_probe_ms = now_ms;
                tp->pt_probe_high = high;
            }
        }
        if (tp->pt_read_ms < read_until)
            read_until = tp->pt_read_ms;
    }
    return read_until;
}

/* Dead-letters parked events that have waited in this store longer than
 * projector.parked_max_age_s while the link topics were read (links_read_until). The
 * messages' own timestamps play no part: replayed history has waited no time. */
static int expire_parked(pipe_t *pipe)
{
    pipe->pi_next_expire_ms = rm_mono_ms() + pipe->pi_parked_check_ms;
    pipe->pi_expiry_checks++;
    int64_t cutoff_ms = links_read_until(pipe, rm_wall_ms()) - pipe->pi_parked_max_age_ms;
    store_t *store = pipe->pi_opts.po_store;
    MDB_txn *txn;
    int rc = store_write_begin(store, &txn);
    if (rc)
        return rc;
    expire_ctx_t ctx = {pipe, ""};
    size_t expired = 0;
    rc = engine_txn_begin(pipe->pi_engine, txn);
    rc = rc ? rc : outbox_txn_begin(pipe->pi_outbox, txn);
    rc = rc ? rc
            : engine_expire_parked(pipe->pi_engine, txn, cutoff_ms, dead_letter_expired, &ctx,
                                   &expired);
    size_t marks_dropped = 0;
    rc = rc ? rc : degraded_expire_waiting(store, txn, cutoff_ms, &marks_dropped);
    rc = rc ? rc : outbox_txn_precommit(pipe->pi_outbox, txn);
    if (rc || (!expired && !marks_dropped)) {
        store_write_abort(txn);
        return rc;
    }
    rc = store_write_commit(store, txn);
    if (!rc) {
        pipe->pi_expired += expired;
        flush_dead_letters(pipe, PIPE_OUTBOX_FLUSH_MS, false, false);
    }
    return rc;
}

/* The dead letter's error class (header __connect.errors.exception.class.name). */
static const char *error_class(int err)
{
    switch (err) {
    case RM_EFRAME: return "framing";
    case RM_ESCHEMA: return "schema";
    case RM_EDECODE: return "decode";
    case RM_EVALIDATE: return "validation";
    default: return "other";
    }
}

/* Partitions held for the registry once this batch commits. */
static size_t registry_held_after_batch(const pipe_t *pipe)
{
    size_t held = 0;
    for (size_t i = 0; i < pipe->pi_tp_count; i++)
        held += pipe->pi_tps[i].pt_held_offset >= 0 || pipe->pi_tps[i].pt_batch_held >= 0;
    return held;
}

/* Note 8: the store says how many partitions wait for the registry, for /readyz (the
 * query API reads it); written only when the number changes. */
static int mark_registry_outage(pipe_t *pipe, MDB_txn *txn)
{
    size_t held = registry_held_after_batch(pipe);
    if (held == pipe->pi_registry_marked)
        return 0;
    char value[512];
    json_t *reason = json_string(held ? pipe->pi_registry_reason : "");
    char *quoted = reason ? json_dumps(reason, JSON_ENCODE_ANY) : NULL;
    json_decref(reason);
    snprintf(value, sizeof(value), "{\"paused_partitions\":%zu,\"since_ms\":%lld,\"reason\":%s}",
             held, (long long)rm_wall_ms(), quoted ? quoted : "\"\"");
    free(quoted);
    return store_meta_put(pipe->pi_opts.po_store, txn, PIPE_REGISTRY_META, value, strlen(value));
}

/* After a commit: pauses each partition the batch held for the registry and seeks it back
 * to the held message, to be retried after a backoff (note 10). */
static void hold_partitions(pipe_t *pipe)
{
    const view_t *view = pipe->pi_opts.po_view;
    pipe->pi_registry_marked = registry_held_after_batch(pipe);
    for (size_t i = 0; i < pipe->pi_tp_count; i++) {
        pipe_tp_t *tp = &pipe->pi_tps[i];
        if (tp->pt_batch_held < 0) {
            if (tp->pt_batch_next >= 0 && tp->pt_held_offset < 0)
                tp->pt_hold_backoff_ms = 0; /* it moved on: the next outage starts afresh */
            continue;
        }
        tp->pt_held_offset = tp->pt_batch_held;
        tp->pt_batch_held = -1;
        int64_t backoff = tp->pt_hold_backoff_ms ? tp->pt_hold_backoff_ms * 2 : PIPE_HOLD_MIN_MS;
        tp->pt_hold_backoff_ms = backoff > PIPE_BACKOFF_MAX_MS ? PIPE_BACKOFF_MAX_MS : backoff;
        tp->pt_resume_ms = rm_mono_ms() + tp->pt_hold_backoff_ms;
        pipe->pi_registry_waits++;
        rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(list, view->v_topics[tp->pt_topic], tp->pt_partition)
            ->offset = tp->pt_held_offset;
        rd_kafka_pause_partitions(pipe->pi_rk, list);
        rd_kafka_error_t *err = rd_kafka_seek_partitions(pipe->pi_rk, list, PIPE_SEEK_TIMEOUT_MS);
        if (err) /* fill_batch drops what a failed seek lets through (pt_expect_held) */
            rd_kafka_error_destroy(err);
        rd_kafka_topic_partition_list_destroy(list);
        log_warn("schema registry unavailable: partition paused, nothing dead-lettered",
                 LOG_S("view", view->v_name), LOG_S("topic", view->v_topics[tp->pt_topic]),
                 LOG_I("partition", tp->pt_partition), LOG_I("offset", tp->pt_held_offset),
                 LOG_I("retry_in_ms", tp->pt_hold_backoff_ms),
                 LOG_S("reason", pipe->pi_registry_reason));
    }
}

/* Resumes the held partitions whose backoff has passed; their held message comes again. */
static void resume_held(pipe_t *pipe)
{
    const view_t *view = pipe->pi_opts.po_view;
    int64_t now = rm_mono_ms();
    for (size_t i = 0; i < pipe->pi_tp_count; i++) {
        pipe_tp_t *tp = &pipe->pi_tps[i];
        if (tp->pt_held_offset < 0 || now < tp->pt_resume_ms || tp->pt_expect_held)
            continue;
        rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(list, view->v_topics[tp->pt_topic], tp->pt_partition)
            ->offset = tp->pt_held_offset;
        rd_kafka_resume_partitions(pipe->pi_rk, list);
        rd_kafka_topic_partition_list_destroy(list);
        tp->pt_expect_held = true;
    }
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
        pipe_tp_t *msg_tp = tp_find(pipe, topic_index, m->partition); /* looked up once */
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
        engine_msg_t msg = {topic, m->partition, m->offset, rd_kafka_message_timestamp(m, &tstype),
                            m->key, m->key_len, m->payload, m->len};
        engine_result_t res;
        if (__builtin_expect(pipe->pi_skips != NULL, 0) &&
            failpoint_skips_has(pipe->pi_skips, topic, m->partition, m->offset)) {
            /* Test hook: consumed, offset advanced, nothing applied (a "lost application"). */
            log_warn("test hook: event consumed without applying it", LOG_S("env", FAILPOINT_SKIP_ENV),
                     LOG_S("topic", topic), LOG_I("partition", m->partition), LOG_I("offset", m->offset));
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
        if (res.er_outcome == ENGINE_REJECTED && !pipe->pi_opts.po_scratch) {
            outbox_letter_t letter = {topic, m->partition, m->offset, msg.em_timestamp_ms,
                                      m->key, m->key_len, m->payload, m->len,
                                      error_class(res.er_error), res.er_reason};
            rc = outbox_record(pipe->pi_outbox, txn, &letter);
            rc = rc ? rc : mark_degraded(pipe, txn, &letter);
            if (rc)
                break;
            log_warn("event dead-lettered", LOG_S("view", view->v_name), LOG_S("topic", topic),
                     LOG_I("partition", m->partition), LOG_I("offset", m->offset),
                     LOG_S("error", error_class(res.er_error)), LOG_S("reason", res.er_reason));
        }
        pipe_tp_t *tp = msg_tp;
        if (tp) {
            tp->pt_batch_next = m->offset + 1;
            if (res.er_event_ms > tp->pt_batch_event_ms)
                tp->pt_batch_event_ms = res.er_event_ms;
        }
    }
    int64_t wall = rm_wall_ms();
    for (size_t i = 0; !rc && i < pipe->pi_tp_count; i++) {
        pipe_tp_t *tp = &pipe->pi_tps[i];
        if (tp->pt_batch_next < 0)
            continue;
        int64_t low = 0, high = 0;
        rd_kafka_get_watermark_offsets(pipe->pi_rk, view->v_topics[tp->pt_topic], tp->pt_partition,
                                       &low, &high);
        store_offset_t off = {tp->pt_batch_next, high > tp->pt_batch_next ? high : tp->pt_batch_next,
                              tp->pt_batch_event_ms > tp->pt_last_event_ms ? tp->pt_batch_event_ms
                                                                           : tp->pt_last_event_ms,
                              wall};
        rc = store_offset_put(store, txn, view->v_topics[tp->pt_topic], tp->pt_partition, &off);
    }
    if (!rc)
        rc = mark_registry_outage(pipe, txn);
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
    if (may_sync && durable < wanted && !store_syncs_in_background(store) &&
        store_sync(store) == 0)
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

/* Note 8 in pipeline.h: with no batch open, moves each partition's next offset up to
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
            pipe_tp_t *tp = tp_find(pipe, view_topic_index(view, p->topic), p->partition);
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
                                 (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
            metrics_hist_observe(&pipe->pi_batch_events, (double)pipe->pi_batch_count);
            batch_committed(pipe);
            hold_partitions(pipe);
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
            flush_dead_letters(pipe, PIPE_OUTBOX_FLUSH_MS, true, false);
            publish_snapshot(pipe);
            return 0;
        }
        pipe->pi_stats.ps_commit_retries++;
        if (rc == RM_EMAPFULL) {
            int grc = store_grow(pipe->pi_opts.po_store);
            pipe->pi_stats.ps_map_grows++;
            log_info("store map full: grew it, re-applying the batch",
                     LOG_S("view", pipe->pi_opts.po_view->v_name), LOG_I("events", pipe->pi_batch_count));
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

/* Seeks a held partition back to its held message (asynchronously). */
static void seek_held(pipe_t *pipe, const pipe_tp_t *tp)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, pipe->pi_opts.po_view->v_topics[tp->pt_topic],
                                      tp->pt_partition)
        ->offset = tp->pt_held_offset;
    rd_kafka_error_t *err = rd_kafka_seek_partitions(pipe->pi_rk, list, 0);
    if (err)
        rd_kafka_error_destroy(err);
    rd_kafka_topic_partition_list_destroy(list);
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
            handle_error_message(pipe, m);
            rd_kafka_message_destroy(m);
            if (pipe->pi_gap_tp >= 0)
                break;
            continue;
        }
        pipe_tp_t *tp = tp_find(pipe, view_topic_index(view, rd_kafka_topic_name(m->rkt)),
                                m->partition);
        if (!tp || (tp->pt_next_offset >= 0 && m->offset < tp->pt_next_offset)) {
            pipe->pi_stats.ps_skipped_redelivered++;
            rd_kafka_message_destroy(m);
            continue;
        }
        if (tp->pt_held_offset >= 0) {
            /* Held for the registry (note 10): until resumed, and then until the held
             * message itself comes again, what arrives is fetched before the seek. */
            if (!tp->pt_expect_held || m->offset != tp->pt_held_offset) {
                if (tp->pt_expect_held && m->offset > tp->pt_held_offset &&
                    rm_mono_ms() - tp->pt_reseek_ms >= PIPE_RESEEK_MS) {
                    tp->pt_reseek_ms = rm_mono_ms();
                    seek_held(pipe, tp); /* the seek was lost (a re-assignment): again */
                }
                rd_kafka_message_destroy(m);
                continue;
            }
            tp->pt_held_offset = -1;
            tp->pt_expect_held = false;
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
    int rc = refresh_partitions(pipe);
    if (rc && rc != RM_ETIMEOUT && rc != RM_EKAFKA)
        return rc;
    bool finite = pipe->pi_opts.po_until_caught_up || pipe->pi_opts.po_stop_offsets;
    if (finite) {
        if (rc)
            return rc;
        rc = load_targets(pipe);
        if (rc)
            return rc;
        /* Before anything is applied: the gap's offset is the one stored now. */
        for (take_pending_gap(pipe); pipe->pi_gap_tp >= 0; take_pending_gap(pipe)) {
            rc = handle_gap(pipe);
            if (rc)
                return rc;
        }
    }
    for (;;) {
        if ((finite && caught_up(pipe)) || pipe->pi_stop) {
            /* Leave no dead letter unpublished behind a clean exit when the broker
             * allows (bounded; what remains is published on the next start). */
            flush_dead_letters(pipe, PIPE_OUTBOX_EXIT_FLUSH_MS, true, true);
            commit_all_kafka_offsets(pipe);
            return 0;
        }
        resume_held(pipe);
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
            rc = handle_gap(pipe);
            if (rc)
                return rc;
        }
        if (!pipe->pi_opts.po_scratch && rm_mono_ms() >= pipe->pi_next_expire_ms) {
            rc = expire_parked(pipe);
            if (rc)
                log_error("cannot expire parked events", LOG_S("error", rm_strerror(rc)));
        }
        if (rm_mono_ms() >= pipe->pi_next_metadata_ms)
            refresh_partitions(pipe);
        if (rm_mono_ms() >= pipe->pi_next_snapshot_ms) {
            flush_dead_letters(pipe, PIPE_OUTBOX_FLUSH_MS, true, false);
            commit_kafka_offsets(pipe, true);
            publish_snapshot(pipe);
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
    flush_dead_letters(pipe, PIPE_OUTBOX_FLUSH_MS, true, true);
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
    rc = load_offsets(pipe, store, tps);
    if (rc) {
        snprintf(errstr, errlen, "cannot read the new generation's offsets: %s", rm_strerror(rc));
        goto failed;
    }
    rc = assign_tps(pipe, tps);
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
            rd_kafka_topic_partition_list_add(held, pipe->pi_opts.po_view->v_topics[pipe->pi_tps[i].pt_topic],
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
    publish_snapshot(pipe);
    return 0;

failed:
    engine_destroy(engine);
    outbox_destroy(outbox);
    free(tps);
    pipe->pi_switch_failures++;
    publish_snapshot(pipe);
    return rc;
}

int pipe_adopt_previous(pipe_t *pipe, store_t *previous)
{
    return outbox_adopt(pipe->pi_outbox, previous, true);
}

size_t pipe_partitions(pipe_t *pipe, pipe_partition_t *out, size_t cap)
{
    const view_t *view = pipe->pi_opts.po_view;
    for (size_t i = 0; i < pipe->pi_tp_count && i < cap; i++) {
        const pipe_tp_t *tp = &pipe->pi_tps[i];
        int64_t low = 0, high = -1;
        rd_kafka_get_watermark_offsets(pipe->pi_rk, view->v_topics[tp->pt_topic], tp->pt_partition,
                                       &low, &high);
        out[i] = (pipe_partition_t){view->v_topics[tp->pt_topic], tp->pt_partition,
                                    tp->pt_next_offset, tp->pt_start_offset, tp->pt_target, high};
    }
    return pipe->pi_tp_count;
}
