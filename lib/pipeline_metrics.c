/* pipeline_metrics: the counters the consumer thread publishes after each batch, and their
 * Prometheus text (pipeline_render_metrics, any thread). */
#include "pipeline_int.h"
#include "log.h"
#include "rm_time.h"

#include <stdio.h>
#include <string.h>

void pipeline_get_stats(pipeline_t *pl, pipeline_stats_t *ret_stats)
{
    pthread_mutex_lock(&pl->pi_lock);
    *ret_stats = pl->pi_snap.ps_stats;
    pthread_mutex_unlock(&pl->pi_lock);
}

/* Consumer thread: publishes the counters for scrapes (after a batch, or once a
 * second when idle so high watermarks and lag keep moving). */
void pipeline_publish_snapshot(pipeline_t *pl)
{
    const view_t *view = pl->pi_opts.po_view;
    store_t *store = pl->pi_opts.po_store;
    size_t parked = 0, map_bytes = 0, used_bytes = 0;
    MDB_txn *txn;
    if (store_read_begin(store, &txn) == 0) {
        engine_parked_count(pl->pi_engine, txn, &parked);
        store_read_end(txn);
    }
    store_usage(store, &map_bytes, &used_bytes);
    pthread_mutex_lock(&pl->pi_lock);
    pipeline_snapshot_t *snap = &pl->pi_snap;
    snap->ps_stats = pl->pi_stats;
    memcpy(snap->ps_applied_by_rule, pl->pi_applied_by_rule, view->v_rule_count * sizeof(uint64_t));
    snap->ps_batch_events = pl->pi_batch_events;
    snap->ps_commit_seconds = pl->pi_commit_seconds;
    store_sync_stats(store, &snap->ps_sync);
    memcpy(snap->ps_tps, pl->pi_tps, pl->pi_tp_count * sizeof(pipeline_tp_t));
    for (size_t i = 0; i < pl->pi_tp_count; i++) {
        int64_t low = 0, high = 0;
        rd_kafka_get_watermark_offsets(pl->pi_rk, view->v_topics[pl->pi_tps[i].pt_topic],
                                       pl->pi_tps[i].pt_partition, &low, &high);
        snap->ps_high[i] = high;
    }
    snap->ps_tp_count = pl->pi_tp_count;
    snap->ps_parked = parked;
    snap->ps_map_bytes = map_bytes;
    snap->ps_used_bytes = used_bytes;
    /* Crashed readers (a killed query API) must not pin pages for long. */
    int dead = store_reader_check(store);
    if (dead > 0)
        log_info("cleared stale reader slots", LOG_I("slots", dead));
    outbox_get_stats(pl->pi_outbox, &snap->ps_outbox);
    memcpy(snap->ps_gaps, pl->pi_gaps, sizeof(snap->ps_gaps));
    snap->ps_expired = pl->pi_expired;
    snap->ps_switch_failures = pl->pi_switch_failures;
    snap->ps_expiry_checks = pl->pi_expiry_checks;
    snap->ps_registry_waits = pl->pi_registry_waits;
    snap->ps_registry_paused = 0;
    for (size_t i = 0; i < pl->pi_tp_count; i++)
        snap->ps_registry_paused += pl->pi_tps[i].pt_held_offset >= 0;
    pthread_mutex_unlock(&pl->pi_lock);
    pl->pi_next_snapshot_ms = rm_mono_ms() + 1000;
}

/* A scrape being written: the first error sticks and every later write is skipped, so a
 * family reads as one call instead of a test of rc around each line. */
typedef struct scrape {
    buf_t *sc_out;
    const char *const *sc_view_labels; /* {"view", <view>, NULL} */
    int sc_rc;
} scrape_t;

/* The HELP and TYPE lines of a family; true when its samples may follow. */
static bool family(scrape_t *sc, const char *name, const char *type, const char *help)
{
    if (!sc->sc_rc)
        sc->sc_rc = metrics_family(sc->sc_out, name, type, help);
    return !sc->sc_rc;
}

/* A family of one sample labelled with the view only: most of the projector's metrics. */
static void family_sample(scrape_t *sc, const char *name, const char *type, const char *help,
                          int64_t value)
{
    if (family(sc, name, type, help))
        sc->sc_rc = metrics_sample_i64(sc->sc_out, name, value, sc->sc_view_labels);
}

static void family_hist(scrape_t *sc, const char *name, const char *help,
                        const metrics_hist_t *hist)
{
    if (family(sc, name, "histogram", help))
        sc->sc_rc = metrics_hist_render(sc->sc_out, name, hist, sc->sc_view_labels);
}

enum { PART_NEXT_OFFSET, PART_HIGH_WATERMARK, PART_LAG_MESSAGES, PART_LAG_SECONDS, PART__COUNT };

static const struct {
    const char *pf_name;
    const char *pf_help;
} part_families[PART__COUNT] = {
    {"readmodel_partition_next_offset", "Next offset to apply, as committed in the store."},
    {"readmodel_partition_high_watermark", "Partition high watermark as last fetched."},
    {"readmodel_partition_lag_messages", "High watermark minus next offset."},
    {"readmodel_partition_lag_seconds",
     "Now minus the newest applied event time (0 when caught up)."},
};

/* Partition i's lag in messages: its high watermark minus its next offset. */
static int64_t partition_lag(const pipeline_snapshot_t *snap, size_t i)
{
    int64_t next = snap->ps_tps[i].pt_next_offset < 0 ? 0 : snap->ps_tps[i].pt_next_offset;
    return snap->ps_high[i] > next ? snap->ps_high[i] - next : 0;
}

/* Renders family f's sample for partition i of the snapshot. */
static int partition_sample(scrape_t *sc, int f, const pipeline_snapshot_t *snap, size_t i,
                            int64_t wall, const char **labels)
{
    const pipeline_tp_t *tp = &snap->ps_tps[i];
    const char *name = part_families[f].pf_name;
    switch (f) {
    case PART_NEXT_OFFSET:
        return metrics_sample_i64(sc->sc_out, name, tp->pt_next_offset < 0 ? 0 : tp->pt_next_offset,
                                  labels);
    case PART_HIGH_WATERMARK:
        return metrics_sample_i64(sc->sc_out, name, snap->ps_high[i], labels);
    case PART_LAG_MESSAGES:
        return metrics_sample_i64(sc->sc_out, name, partition_lag(snap, i), labels);
    default: {
        double lag_s = partition_lag(snap, i) && tp->pt_last_event_ms
                           ? (double)(wall - tp->pt_last_event_ms) / 1000.0
                           : 0;
        return metrics_sample_f64(sc->sc_out, name, lag_s < 0 ? 0 : lag_s, labels);
    }
    }
}

/* Per partition: stored offset, high watermark, lag in messages and seconds. Each family's
 * samples in one group after its HELP/TYPE lines, as the exposition format requires. */
static void render_partitions(scrape_t *sc, const view_t *view, const pipeline_snapshot_t *snap,
                              int64_t wall)
{
    for (int f = 0; f < PART__COUNT; f++) {
        family(sc, part_families[f].pf_name, "gauge", part_families[f].pf_help);
        for (size_t i = 0; !sc->sc_rc && i < snap->ps_tp_count; i++) {
            const pipeline_tp_t *tp = &snap->ps_tps[i];
            char part[16];
            snprintf(part, sizeof(part), "%d", tp->pt_partition);
            const char *labels[] = {
                "view",      view->v_name, "topic", view->v_topics[tp->pt_topic],
                "partition", part,         NULL};
            sc->sc_rc = partition_sample(sc, f, snap, i, wall, labels);
        }
    }
}

/* Events by outcome and by type, batches by size, latency and what closed them. */
static void render_batches(scrape_t *sc, const view_t *view, const pipeline_snapshot_t *snap)
{
    family(sc, "readmodel_events_total", "counter", "Events consumed, by outcome.");
    for (int o = 0; !sc->sc_rc && o < ENGINE__OUTCOMES; o++) {
        const char *labels[] = {"view", view->v_name, "outcome", engine_outcome_name(o), NULL};
        sc->sc_rc = metrics_sample_i64(sc->sc_out, "readmodel_events_total",
                                       (int64_t)snap->ps_stats.ps_outcomes[o], labels);
    }
    family(sc, "readmodel_events_applied_total", "counter", "Events applied, by event type.");
    for (size_t r = 0; !sc->sc_rc && r < view->v_rule_count; r++) {
        const char *labels[] = {"view", view->v_name, "event", view->v_rules[r].vr_event, NULL};
        sc->sc_rc = metrics_sample_i64(sc->sc_out, "readmodel_events_applied_total",
                                       (int64_t)snap->ps_applied_by_rule[r], labels);
    }
    family_hist(sc, "readmodel_batch_events", "Events per committed batch.",
                &snap->ps_batch_events);
    family_hist(sc, "readmodel_commit_seconds", "Time to apply and commit one batch.",
                &snap->ps_commit_seconds);
    static const char *const closed_by[PIPELINE_CLOSE__COUNT] = {"drained", "max_ms", "max_events",
                                                                 "stopped"};
    family(sc, "readmodel_batches_total", "counter",
           "Committed batches by what closed them: drained (the consumer queue was empty), "
           "max_ms, max_events, stopped.");
    for (int c = 0; !sc->sc_rc && c < PIPELINE_CLOSE__COUNT; c++) {
        const char *labels[] = {"view", view->v_name, "closed_by", closed_by[c], NULL};
        sc->sc_rc = metrics_sample_i64(sc->sc_out, "readmodel_batches_total",
                                       (int64_t)snap->ps_stats.ps_batches_closed[c], labels);
    }
}

static void render_registry(scrape_t *sc, registry_t *registry)
{
    registry_stats_t rs;
    registry_get_stats(registry, &rs);
    family_sample(sc, "readmodel_schema_registry_errors_total", "counter",
                  "Schema registry requests that failed (connection, timeout, 5xx, auth).",
                  (int64_t)rs.rs_errors);
    family_sample(sc, "readmodel_schema_registry_fetches_total", "counter",
                  "Schemas fetched from the schema registry by id.", (int64_t)rs.rs_fetches);
    family_sample(sc, "readmodel_schema_registry_not_found_total", "counter",
                  "Schema ids the registry answered 40403 for (their messages are "
                  "dead-lettered).",
                  (int64_t)rs.rs_not_found);
    family_sample(sc, "readmodel_schema_registry_up", "gauge",
                  "1 when the last schema registry request succeeded, 0 while it is failing.",
                  rs.rs_down ? 0 : 1);
}

int pipeline_render_metrics(pipeline_t *pl, buf_t *out)
{
    const view_t *view = pl->pi_opts.po_view;
    int64_t wall = rm_wall_ms();
    const char *vlabels[] = {"view", view->v_name, NULL};
    scrape_t scrape = {out, vlabels, 0}, *sc = &scrape;
    pthread_mutex_lock(&pl->pi_lock);
    const pipeline_snapshot_t *snap = &pl->pi_snap;
    render_partitions(sc, view, snap, wall);
    render_batches(sc, view, snap);
    family(sc, "readmodel_store_syncs_total", "counter",
           "Background fsyncs of the store (periodic durability), by outcome.");
    for (int failed = 0; !sc->sc_rc && failed < 2; failed++) {
        const char *labels[] = {"view", view->v_name, "outcome", failed ? "failed" : "ok", NULL};
        sc->sc_rc = metrics_sample_i64(
            out, "readmodel_store_syncs_total",
            (int64_t)(failed ? snap->ps_sync.sst_failures : snap->ps_sync.sst_syncs), labels);
    }
    family_hist(sc, "readmodel_store_sync_seconds", "Duration of one successful store fsync.",
                &snap->ps_sync.sst_seconds);
    family_sample(sc, "readmodel_batch_retries_total", "counter",
                  "Batches re-applied after a store error.",
                  (int64_t)snap->ps_stats.ps_commit_retries);
    family_sample(sc, "readmodel_map_grows_total", "counter", "Times the LMDB map was grown.",
                  (int64_t)snap->ps_stats.ps_map_grows);
    family_sample(sc, "readmodel_parked_events", "gauge", "Events waiting for a link.",
                  (int64_t)snap->ps_parked);
    family_sample(sc, "readmodel_dead_letters_total", "counter",
                  "Messages dead-lettered (recorded in the outbox).",
                  (int64_t)snap->ps_outbox.os_recorded);
    family_sample(sc, "readmodel_dead_letters_published_total", "counter",
                  "Dead letters acknowledged by the broker.",
                  (int64_t)snap->ps_outbox.os_published);
    family_sample(sc, "readmodel_dead_letters_pending", "gauge",
                  "Dead letters waiting in the outbox.", (int64_t)snap->ps_outbox.os_pending);
    family(sc, "readmodel_gaps_total", "counter",
           "Partitions found with a stored offset outside the log, by cause: retention (below "
           "the log start), log-truncated (beyond the log end), unknown (no watermarks to "
           "tell; the projector stops and looks again at its next start).");
    for (int c = 0; !sc->sc_rc && c < PIPELINE_GAP__CAUSES; c++) {
        const char *labels[] = {"view", view->v_name, "cause", pipeline_gap_cause_names[c], NULL};
        sc->sc_rc =
            metrics_sample_i64(out, "readmodel_gaps_total", (int64_t)snap->ps_gaps[c], labels);
    }
    family_sample(sc, "readmodel_parked_expired_total", "counter",
                  "Parked events dead-lettered with link-timeout.", (int64_t)snap->ps_expired);
    family_sample(sc, "readmodel_parked_expiry_checks_total", "counter",
                  "Passes that looked for parked events past projector.parked_max_age_s.",
                  (int64_t)snap->ps_expiry_checks);
    family_sample(sc, "readmodel_store_map_bytes", "gauge", "LMDB map size.",
                  (int64_t)snap->ps_map_bytes);
    family_sample(sc, "readmodel_store_used_bytes", "gauge", "LMDB bytes in use.",
                  (int64_t)snap->ps_used_bytes);
    family_sample(sc, "readmodel_store_generation", "gauge",
                  "Store generation being written (0: flat store).", snap->ps_generation);
    family_sample(sc, "readmodel_generation_switch_failures_total", "counter",
                  "Switches to a new store generation that failed; the old one is still written.",
                  (int64_t)snap->ps_switch_failures);
    family_sample(sc, "readmodel_schema_registry_paused_partitions", "gauge",
                  "Partitions paused because a message's schema could not be fetched from the "
                  "schema registry (an outage, not poison: retried with backoff).",
                  (int64_t)snap->ps_registry_paused);
    family_sample(sc, "readmodel_schema_registry_waits_total", "counter",
                  "Messages held back (not applied, not dead-lettered) for an unavailable "
                  "registry.",
                  (int64_t)snap->ps_registry_waits);
    if (pl->pi_opts.po_registry)
        render_registry(sc, pl->pi_opts.po_registry);
    pthread_mutex_unlock(&pl->pi_lock);
    return sc->sc_rc;
}
