/* replay: diff-replay — rebuild the view from the log in a scratch store and diff it
 * with the live store (see replay.h). */
#include "replay.h"

#include "gen.h"
#include "kafka.h"
#include "log.h"
#include "pipeline.h"
#include "rm_err.h"
#include "rm_time.h"
#include "storediff.h"

#include <errno.h>
#include <ftw.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define REPLAY_WATERMARK_TIMEOUT_MS 10000
#define REPLAY_PROGRESS_EVERY_MS 500
/* The scratch store never syncs on its own (note 4 of replay.h): a day is "never" for a
 * replay, and store_close still syncs once so a kept scratch store is complete. */
#define REPLAY_SYNC_INTERVAL_MS (24LL * 3600 * 1000)

typedef struct replay_stops {
    pipeline_stop_t *rs_stops; /* pst_topic strdup'ed */
    size_t rs_count;
    size_t rs_cap;
    int64_t rs_total;      /* sum of the stop offsets: events to replay */
    const view_t *rs_view;
} replay_stops_t;

static void stops_free(replay_stops_t *stops)
{
    for (size_t i = 0; i < stops->rs_count; i++)
        free((char *)stops->rs_stops[i].pst_topic);
    free(stops->rs_stops);
}

static int collect_stop(void *ctx, const char *topic, int32_t partition,
                        const store_offset_t *offset)
{
    replay_stops_t *stops = ctx;
    if (view_topic_index(stops->rs_view, topic) < 0 || offset->so_next_offset <= 0)
        return 0; /* nothing applied from it (a topic the view no longer reads cannot
                     occur: the view hash matched) */
    if (stops->rs_count == stops->rs_cap) {
        size_t cap = stops->rs_cap ? 2 * stops->rs_cap : 64;
        pipeline_stop_t *grown = realloc(stops->rs_stops, cap * sizeof(*grown));
        if (!grown)
            return RM_ENOMEM;
        stops->rs_stops = grown;
        stops->rs_cap = cap;
    }
    char *copy = strdup(topic);
    if (!copy)
        return RM_ENOMEM;
    stops->rs_stops[stops->rs_count++] = (pipeline_stop_t){copy, partition, offset->so_next_offset};
    stops->rs_total += offset->so_next_offset;
    // cppcheck-suppress memleak ; copy is owned by rs_stops (freed by stops_free)
    return 0;
}

/* The live store must have been built by this view definition. */
static int check_live_meta(store_t *live, MDB_txn *txn, const view_t *view, char *errstr,
                           size_t errlen)
{
    const void *data;
    size_t len;
    int rc = store_meta_get(live, txn, "view_hash", &data, &len);
    if (rc == RM_ENOTFOUND ||
        (rc == 0 && (len != strlen(view->v_hash) || memcmp(data, view->v_hash, len)))) {
        snprintf(errstr, errlen,
                 "%s: the live store was built by another view definition "
                 "(or none): a replay with this one would report its changes as drift",
                 store_dir(live));
        return RM_EMISMATCH;
    }
    if (rc) {
        snprintf(errstr, errlen, "%s: cannot read the store's metadata: %s", store_dir(live),
                 rm_strerror(rc));
        return rc;
    }
    return 0;
}

typedef struct gap_ctx {
    char *gc_errstr;
    size_t gc_errlen;
} gap_ctx_t;

static int on_recorded_gap(void *ctx, const char *name, size_t name_len, const void *value,
                           size_t value_len)
{
    gap_ctx_t *gc = ctx;
    snprintf(gc->gc_errstr, gc->gc_errlen,
             "replay incomplete: the live store continued past deleted events (%.*s: %.*s); "
             "a replay cannot rebuild what it skipped",
             (int)name_len, name, (int)(value_len > 300 ? 300 : value_len), (const char *)value);
    return RM_EGAP;
}

/* Note 3 of replay.h: every partition to replay must still start at offset 0 and
 * reach its stop offset. */
static int check_history(const app_t *app, const replay_stops_t *stops, char *errstr, size_t errlen)
{
    const char *const defaults[] = {"client.id", "readmodel-reconcile-replay", NULL};
    rd_kafka_conf_t *conf = kafka_conf_new(app->ap_cfg, defaults, errstr, errlen);
    if (!conf)
        return RM_ECONFIG;
    char rkerr[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, rkerr, sizeof(rkerr));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errlen, "kafka consumer: %s", rkerr);
        return RM_EKAFKA;
    }
    int rc = 0;
    for (size_t i = 0; !rc && i < stops->rs_count; i++) {
        const pipeline_stop_t *stop = &stops->rs_stops[i];
        int64_t low = -1, high = -1;
        rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
            rk, stop->pst_topic, stop->pst_partition, &low, &high, REPLAY_WATERMARK_TIMEOUT_MS);
        if (err) {
            snprintf(errstr, errlen, "%s:%d: cannot read the log's watermarks: %s", stop->pst_topic,
                     stop->pst_partition, rd_kafka_err2str(err));
            rc = kafka_err(err);
        } else if (low > 0) {
            snprintf(errstr, errlen,
                     "replay incomplete: %s:%d starts at offset %lld (older events were deleted by "
                     "retention); the live store was built from offset 0, so a replay cannot see "
                     "all of its history",
                     stop->pst_topic, stop->pst_partition, (long long)low);
            rc = RM_EGAP;
        } else if (high < stop->pst_offset) {
            snprintf(errstr, errlen,
                     "replay incomplete: %s:%d ends at offset %lld, below the live store's %lld "
                     "(was the topic recreated?)",
                     stop->pst_topic, stop->pst_partition, (long long)high,
                     (long long)stop->pst_offset);
            rc = RM_EGAP;
        }
    }
    rd_kafka_destroy(rk);
    return rc;
}

/* The scratch store's offsets must equal the stops (the replay ended exactly there). */
static int check_reached(store_t *scratch, const replay_stops_t *stops, char *errstr, size_t errlen)
{
    MDB_txn *txn = NULL;
    int rc = store_read_begin(scratch, &txn);
    for (size_t i = 0; !rc && i < stops->rs_count; i++) {
        const pipeline_stop_t *stop = &stops->rs_stops[i];
        store_offset_t off = {0};
        int grc = store_offset_get(scratch, txn, stop->pst_topic, stop->pst_partition, &off);
        if (grc && grc != RM_ENOTFOUND) {
            rc = grc;
            snprintf(errstr, errlen, "scratch store: %s", rm_strerror(grc));
        } else if (off.so_next_offset != stop->pst_offset) {
            snprintf(errstr, errlen,
                     "replay incomplete: %s:%d reached offset %lld, the live store is at %lld",
                     stop->pst_topic, stop->pst_partition, (long long)off.so_next_offset,
                     (long long)stop->pst_offset);
            rc = RM_EGAP;
        }
    }
    if (txn)
        store_read_end(txn);
    return rc;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

/* Removes the scratch store: the whole directory when replay_run made it, only the
 * store's files (and the directory if that empties it) when the caller named it. */
static void remove_scratch(const char *dir, bool made_here)
{
    if (made_here) {
        if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
            log_warn("cannot remove the scratch store", LOG_S("dir", dir),
                     LOG_S("error", strerror(errno)));
        return;
    }
    static const char *const files[] = {"data.mdb", "lock.mdb", "writer.lock"}; /* store.h note 1 */
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        if (unlink(path) != 0 && errno != ENOENT)
            log_warn("cannot remove the scratch store", LOG_S("file", path),
                     LOG_S("error", strerror(errno)));
    }
    rmdir(dir); /* only when empty: the caller's other files stay */
}

/* Makes the scratch directory into out: the one asked for (created, must not hold a
 * store), or a fresh one next to the live stores (sized for a store, unlike /tmp). */
static int make_scratch_dir(const replay_opts_t *opts, char *out, size_t outlen, char *errstr,
                            size_t errlen)
{
    const app_t *app = opts->rpo_app;
    if (opts->rpo_scratch_dir) {
        snprintf(out, outlen, "%s", opts->rpo_scratch_dir);
        int rc = app_mkdirs(out);
        if (rc) {
            snprintf(errstr, errlen, "%s: cannot create the scratch directory: %s", out,
                     rm_strerror(rc));
            return rc;
        }
        char data[4200];
        snprintf(data, sizeof(data), "%s/data.mdb", out);
        if (access(data, F_OK) == 0) {
            snprintf(errstr, errlen, "%s already holds a store; a replay starts from an empty one",
                     out);
            return RM_EEXISTS;
        }
        return 0;
    }
    const char *data_dir = cfg_str(app->ap_cfg, "data_dir");
    int rc = app_mkdirs(data_dir);
    if ((size_t)snprintf(out, outlen, "%s/.replay-%s-XXXXXX", data_dir, app->ap_view->v_name) >=
        outlen) {
        snprintf(errstr, errlen, "data_dir too long");
        return RM_EINVAL;
    }
    if (rc || !mkdtemp(out)) {
        snprintf(errstr, errlen, "%s: cannot create a scratch directory: %s", data_dir,
                 rc ? rm_strerror(rc) : strerror(errno));
        return rc ? rc : rm_err_from_errno(errno);
    }
    return 0;
}

typedef struct replay_thread {
    pipeline_t *rt_pipe;
    int rt_rc;
    atomic_bool rt_done;
} replay_thread_t;

static void *run_pipe(void *arg)
{
    replay_thread_t *rt = arg;
    rt->rt_rc = pipeline_run(rt->rt_pipe);
    atomic_store(&rt->rt_done, true);
    return NULL;
}

/* Runs the pipeline; with progress, on a second thread while this one reports. */
static int run_with_progress(pipeline_t *pl, bool progress, int64_t total)
{
    if (!progress)
        return pipeline_run(pl);
    replay_thread_t rt = {pl, 0, false};
    pthread_t thread;
    if (pthread_create(&thread, NULL, run_pipe, &rt) != 0)
        return pipeline_run(pl);
    int64_t start = rm_mono_ms();
    while (!atomic_load(&rt.rt_done)) {
        usleep(REPLAY_PROGRESS_EVERY_MS * 1000);
        pipeline_stats_t stats;
        pipeline_get_stats(pl, &stats);
        double seconds = (double)(rm_mono_ms() - start) / 1000.0;
        fprintf(stderr, "\rreplay: %llu / %lld events (%3.0f%%), %.0f events/s   ",
                (unsigned long long)stats.ps_messages, (long long)total,
                total ? 100.0 * (double)stats.ps_messages / (double)total : 100.0,
                seconds > 0 ? (double)stats.ps_messages / seconds : 0.0);
    }
    fprintf(stderr, "\n");
    pthread_join(thread, NULL);
    return rt.rt_rc;
}

/* Builds the scratch store up to the stops; returns the pipeline's stats. */
static int replay_into(const replay_opts_t *opts, store_t *scratch, const replay_stops_t *stops,
                       pipeline_stats_t *ret_stats, char *errstr, size_t errlen)
{
    const app_t *app = opts->rpo_app;
    /* The view's hash, as the projector writes it, so a kept scratch store can be
     * served or inspected by the other programs. */
    MDB_txn *txn;
    int rc = store_write_begin(scratch, &txn);
    if (!rc) {
        rc = store_meta_put(scratch, txn, "view_hash", app->ap_view->v_hash,
                            strlen(app->ap_view->v_hash));
        rc = rc ? rc
                : store_meta_put(scratch, txn, "view_name", app->ap_view->v_name,
                                 strlen(app->ap_view->v_name));
        rc = rc ? (store_write_abort(txn), rc) : store_write_commit(scratch, txn);
    }
    if (rc) {
        snprintf(errstr, errlen, "scratch store: %s", rm_strerror(rc));
        return rc;
    }
    /* The replay erases what the live view erased even where the log lost the event (a
     * compacted tombstone); read-only: a replay adds nothing to the view's ledger. */
    erasures_t *erasures = erasures_open(app->ap_store_dir, true, errstr, errlen);
    if (!erasures)
        return RM_EIO;
    pipeline_opts_t popts = {
        .po_cfg = app->ap_cfg,
        .po_view = app->ap_view,
        .po_catalog = app->ap_catalog,
        .po_store = scratch,
        .po_stop_offsets = stops->rs_stops,
        .po_stop_count = stops->rs_count,
        .po_scratch = true,
        .po_erasures = erasures,
        .po_registry = app->ap_registry,
    };
    pipeline_t *pl = NULL;
    rc = pipeline_new(&popts, &pl, errstr, errlen);
    if (rc) {
        erasures_close(erasures);
        return rc;
    }
    rc = run_with_progress(pl, opts->rpo_progress, stops->rs_total);
    pipeline_get_stats(pl, ret_stats);
    pipeline_destroy(pl);
    erasures_close(erasures);
    if (rc == RM_EGAP)
        snprintf(errstr, errlen,
                 "replay incomplete: events were deleted by retention while they "
                 "were replayed");
    else if (rc)
        snprintf(errstr, errlen, "replay failed: %s", rm_strerror(rc));
    return rc;
}

/* Replays, checks the replay is complete, diffs. live_txn is the snapshot (note 1). */
static int replay_and_diff(const replay_opts_t *opts, store_t *live, MDB_txn *live_txn,
                           const replay_stops_t *stops, const char *scratch_dir, char *errstr,
                           size_t errlen)
{
    const app_t *app = opts->rpo_app;
    store_opts_t sopts = {
        .so_dir = scratch_dir,
        .so_map_size_bytes = (size_t)cfg_int(app->ap_cfg, "projector.map_size_mb") << 20,
        .so_durability = STORE_PERIODIC,
        .so_sync_interval_ms = REPLAY_SYNC_INTERVAL_MS,
    };
    store_t *scratch = store_open(&sopts, errstr, errlen);
    if (!scratch)
        return RM_ESTORE;
    pipeline_stats_t pstats;
    int64_t t0 = rm_mono_ms();
    int rc = replay_into(opts, scratch, stops, &pstats, errstr, errlen);
    int64_t replay_ms = rm_mono_ms() - t0;
    if (!rc)
        rc = check_reached(scratch, stops, errstr, errlen);
    if (!rc) {
        log_info("replay finished", LOG_S("view", app->ap_view->v_name),
                 LOG_I("events", pstats.ps_messages), LOG_I("ms", replay_ms),
                 LOG_I("events_per_s",
                       replay_ms > 0 ? (int64_t)pstats.ps_messages * 1000 / replay_ms : 0),
                 LOG_I("applied", pstats.ps_outcomes[ENGINE_APPLIED]),
                 LOG_I("parked", pstats.ps_outcomes[ENGINE_PARKED]),
                 LOG_I("rejected", pstats.ps_outcomes[ENGINE_REJECTED]));
        if ((int64_t)pstats.ps_messages != stops->rs_total)
            log_warn("the replay consumed fewer messages than the offsets span (compaction or "
                     "transaction markers); the live store saw the same log",
                     LOG_I("messages", pstats.ps_messages), LOG_I("offsets", stops->rs_total));
    }
    MDB_txn *scratch_txn = NULL;
    if (!rc && (rc = store_read_begin(scratch, &scratch_txn)) != 0)
        snprintf(errstr, errlen, "scratch store: %s", rm_strerror(rc));
    if (!rc) {
        storediff_stats_t dstats;
        t0 = rm_mono_ms();
        rc = storediff_run(app->ap_view, live, live_txn, scratch, scratch_txn, opts->rpo_report,
                           &dstats, errstr, errlen);
        int64_t diff_ms = rm_mono_ms() - t0;
        if (!rc)
            log_info("diff finished", LOG_S("view", app->ap_view->v_name),
                     LOG_I("keys", dstats.sds_keys), LOG_I("fragments", dstats.sds_fragments),
                     LOG_I("entries", dstats.sds_entries), LOG_I("findings", dstats.sds_findings),
                     LOG_I("ms", diff_ms),
                     LOG_I("keys_per_s", diff_ms > 0 ? (int64_t)dstats.sds_keys * 1000 / diff_ms
                                                     : (int64_t)dstats.sds_keys * 1000));
    }
    if (scratch_txn)
        store_read_end(scratch_txn);
    store_close(scratch);
    return rc;
}

int replay_run(const replay_opts_t *opts, char *errstr, size_t errlen)
{
    const app_t *app = opts->rpo_app;
    /* The generation the projector writes and the query API serves (gen.h). */
    char live_dir[GEN_DIR_MAX];
    int grc = gen_current_dir(app->ap_store_dir, live_dir, sizeof(live_dir));
    if (grc) {
        snprintf(errstr, errlen, "%s: no view store (current generation): %s", app->ap_store_dir,
                 rm_strerror(grc));
        return RM_ENOTFOUND;
    }
    store_opts_t lopts = {.so_dir = live_dir, .so_readonly = true};
    char err[1024];
    store_t *live = store_open(&lopts, err, sizeof(err));
    if (!live) {
        snprintf(errstr, errlen, "cannot open the live store: %s", err);
        return RM_ENOTFOUND;
    }
    replay_stops_t stops = {.rs_view = app->ap_view};
    MDB_txn *live_txn = NULL;
    char scratch_dir[4096] = "";
    int rc = store_read_begin(live, &live_txn);
    if (rc)
        snprintf(errstr, errlen, "%s: %s", live_dir, rm_strerror(rc));
    if (!rc)
        rc = check_live_meta(live, live_txn, app->ap_view, errstr, errlen);
    if (!rc) {
        gap_ctx_t gc = {errstr, errlen};
        rc = store_meta_foreach(live, live_txn, "gap/", on_recorded_gap, &gc);
    }
    if (!rc && (rc = store_offset_foreach(live, live_txn, collect_stop, &stops)) != 0)
        snprintf(errstr, errlen, "%s: reading offsets: %s", live_dir, rm_strerror(rc));
    if (!rc)
        rc = check_history(app, &stops, errstr, errlen);
    if (!rc)
        rc = make_scratch_dir(opts, scratch_dir, sizeof(scratch_dir), errstr, errlen);
    if (!rc) {
        log_info("replaying into a scratch store", LOG_S("view", app->ap_view->v_name),
                 LOG_S("scratch", scratch_dir), LOG_I("partitions", stops.rs_count),
                 LOG_I("events", stops.rs_total));
        rc = replay_and_diff(opts, live, live_txn, &stops, scratch_dir, errstr, errlen);
        if (opts->rpo_keep_scratch)
            log_info("scratch store kept", LOG_S("dir", scratch_dir));
        else
            remove_scratch(scratch_dir, !opts->rpo_scratch_dir);
    }
    if (live_txn)
        store_read_end(live_txn);
    store_close(live);
    stops_free(&stops);
    return rc;
}
