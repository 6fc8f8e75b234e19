/* generations: the projector's side of store generations (the layout on disk and the
 * switch are lib/gen.c's) — open, follow a switch, rebuild, list, roll back. */
#include "generations.h"
#include "erasures.h"
#include "gen.h"
#include "log.h"
#include "rm_err.h"
#include "rm_time.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* How often the daemon looks at "current": one readlink, so cheap; 200 ms keeps the
 * window in which it writes a generation nobody serves any more short. */
#define GENERATIONS_FOLLOW_MS 200
/* Erasures are rare and a compaction that could lose their tombstone is a day away
 * (delete.retention.ms): a second is prompt enough and costs nothing between them. */
#define GENERATIONS_ERASURES_PUSH_MS 1000
#define GENERATIONS_BUSY_LOG_MS 60000
/* After a failed switch: each attempt builds a producer and reads the DLQ topics'
 * watermarks on the consumer thread, so attempts are spaced out. */
#define GENERATIONS_SWITCH_RETRY_MS 5000
#define GENERATIONS_TTY_REDRAW_MS 200      /* progress bar refresh on a terminal */
#define GENERATIONS_LOG_PROGRESS_MS 5000   /* progress line period without a terminal */
#define GENERATIONS_MAX_ROUNDS 5           /* catch-up rounds before the switch */
#define GENERATIONS_SHORT_ROUND_MS 2000    /* a round this short leaves little behind: switch */
#define GENERATIONS_MAX_PARTITIONS 4096
#define GENERATIONS_BAR_WIDTH 24

static int parse_durability(const char *text, store_durability_t *ret)
{
    if (strcmp(text, "sync") == 0)
        *ret = STORE_SYNC;
    else if (strcmp(text, "nometasync") == 0)
        *ret = STORE_NOMETASYNC;
    else if (strcmp(text, "periodic") == 0)
        *ret = STORE_PERIODIC;
    else
        return RM_EINVAL;
    return 0;
}

/* A store remembers the view definition that built it; another one needs a rebuild. */
static int check_view_hash(store_t *store, const view_t *view)
{
    MDB_txn *txn;
    int rc = store_write_begin(store, &txn);
    if (rc)
        return rc;
    const void *data;
    size_t len;
    rc = store_meta_get(store, txn, "view_hash", &data, &len);
    if (rc == RM_ENOTFOUND) {
        rc = store_meta_put(store, txn, "view_hash", view->v_hash, strlen(view->v_hash));
        if (!rc)
            rc = store_meta_put(store, txn, "view_name", view->v_name, strlen(view->v_name));
        if (rc) {
            store_write_abort(txn);
            return rc;
        }
        return store_write_commit(store, txn);
    }
    bool same = rc == 0 && len == strlen(view->v_hash) && memcmp(data, view->v_hash, len) == 0;
    store_write_abort(txn);
    if (rc)
        return rc;
    return same ? 0 : RM_EMISMATCH;
}

/* Like generations_open_writer, but hands back the error instead of logging it. building:
 * a generation a rebuild fills, which nobody reads before the switch, so it needs to be
 * durable only then (store_close syncs it; rebuild_switch switches only if that sync
 * succeeded): periodic durability whatever projector.durability says, which is still
 * checked, for the daemon that writes the generation after the switch. */
static store_t *open_writer(const app_t *app, const char *dir, bool building, int *ret_rc,
                            char *err, size_t errlen)
{
    store_opts_t sopts = {
        .so_dir = dir,
        .so_map_size_bytes = (size_t)cfg_int(app->ap_cfg, "projector.map_size_mb") << 20,
        .so_sync_interval_ms = cfg_int(app->ap_cfg, "projector.sync_interval_ms"),
    };
    if (parse_durability(cfg_str(app->ap_cfg, "projector.durability"), &sopts.so_durability)) {
        snprintf(err, errlen, "projector.durability: expected sync, nometasync or periodic");
        *ret_rc = RM_ECONFIG;
        return NULL;
    }
    /* No fsync per commit; MDB_NOSYNC with the unsynced mark (store.h note 6), so an OS
     * crash before the final sync leaves the generation suspect, and gen_switch refuses a
     * suspect one. The background sync still runs every sync_interval_ms: it writes the
     * pages back while the rebuild computes (measured: with no sync before the final one,
     * that sync wrote the whole store at the end, and rebuilds were no faster). */
    if (building)
        sopts.so_durability = STORE_PERIODIC;
    store_t *store = NULL;
    int rc = store_open_rc(&sopts, &store, err, errlen);
    if (rc) {
        *ret_rc = rc;
        return NULL;
    }
    rc = check_view_hash(store, app->ap_view);
    if (rc) {
        snprintf(err, errlen, "%s",
                 rc == RM_EMISMATCH ? "store was built by another view definition: rebuild it"
                                    : "cannot read the store's metadata");
        store_close(store);
        *ret_rc = rc;
        return NULL;
    }
    return store;
}

/* Logs why open_writer failed. */
static store_t *open_writer_logged(const app_t *app, const char *dir, bool building,
                                   bool *ret_usage)
{
    char err[1024];
    int rc = 0;
    store_t *store = open_writer(app, dir, building, &rc, err, sizeof(err));
    if (!store) {
        log_error("cannot open the view store", LOG_S("store", dir),
                  LOG_S("view_hash", app->ap_view->v_hash), LOG_S("error", err));
        *ret_usage = rc == RM_ECONFIG;
    }
    return store;
}

store_t *generations_open_writer(const app_t *app, const char *dir, bool *ret_usage)
{
    return open_writer_logged(app, dir, false, ret_usage);
}

static void push_erasures(generations_follow_t *gf, int wait_ms, bool final)
{
    char err[512];
    int rc = erasures_topic_push(gf->gf_erasures_topic, wait_ms, err, sizeof(err));
    int64_t now = rm_mono_ms();
    if (rc && (final || now - gf->gf_push_logged_ms >= GENERATIONS_BUSY_LOG_MS)) {
        gf->gf_push_logged_ms = now;
        log_warn("cannot publish erasures to the erasure topic; retrying",
                 LOG_S("view", gf->gf_app->ap_view->v_name), LOG_S("error", err));
    }
}

void generations_push_erasures_final(generations_follow_t *gf, int wait_ms)
{
    if (!gf->gf_erasures_topic)
        return;
    int64_t deadline = rm_mono_ms() + wait_ms;
    do
        push_erasures(gf, 100, true);
    while (erasures_topic_pending(gf->gf_erasures_topic) > 0 && rm_mono_ms() < deadline);
    int64_t pending = erasures_topic_pending(gf->gf_erasures_topic);
    if (pending > 0)
        log_warn("erasures not yet acknowledged by the erasure topic; the next start publishes "
                 "them again",
                 LOG_S("view", gf->gf_app->ap_view->v_name), LOG_I("ledger_bytes", pending));
}

int generations_follow_tick(void *arg, pipeline_t *pl)
{
    generations_follow_t *gf = arg;
    int64_t now = rm_mono_ms();
    if (gf->gf_erasures_topic && now >= gf->gf_next_push_ms) {
        gf->gf_next_push_ms = now + GENERATIONS_ERASURES_PUSH_MS;
        push_erasures(gf, 0, false);
    }
    if (now < gf->gf_next_check_ms)
        return 0;
    gf->gf_next_check_ms = now + GENERATIONS_FOLLOW_MS;
    char dir[GEN_DIR_MAX];
    int64_t id;
    if (gen_current(gf->gf_app->ap_store_dir, &id, dir, sizeof(dir)) != 0 ||
        strcmp(dir, gf->gf_dir) == 0)
        return 0; /* unchanged, or momentarily unresolvable: keep writing what we have */
    char err[1024];
    int rc = 0;
    store_t *store = open_writer(gf->gf_app, dir, false, &rc, err, sizeof(err));
    if (!store) {
        if (rc == RM_EMISMATCH) {
            log_error("the new current generation was built by another view definition; "
                      "stopping (restart with the new definition)",
                      LOG_S("store", dir), LOG_I("generation", id));
            return RM_EMISMATCH;
        }
        /* E.g. the rebuild has switched but not yet closed it: try again next tick. */
        if (now - gf->gf_busy_logged_ms >= GENERATIONS_BUSY_LOG_MS) {
            gf->gf_busy_logged_ms = now;
            log_warn("cannot open the new current generation yet; still writing the old one",
                     LOG_S("store", dir), LOG_I("generation", id), LOG_S("error", err));
        }
        return 0;
    }
    rc = pipeline_switch_store(pl, store, id, err, sizeof(err));
    if (rc) {
        /* All or nothing: the pipeline holds nothing of store and still writes ours. */
        store_close(store);
        gf->gf_next_check_ms = now + GENERATIONS_SWITCH_RETRY_MS;
        if (gf->gf_switch_failures++ == 0 ||
            now - gf->gf_switch_logged_ms >= GENERATIONS_BUSY_LOG_MS) {
            gf->gf_switch_logged_ms = now;
            log_error("cannot switch to the new store generation; still writing the current "
                      "one, retrying",
                      LOG_S("view", gf->gf_app->ap_view->v_name), LOG_S("store", dir),
                      LOG_I("generation", id), LOG_I("current_generation", gf->gf_generation),
                      LOG_I("failures", gf->gf_switch_failures), LOG_S("error", err),
                      LOG_I("retry_in_ms", GENERATIONS_SWITCH_RETRY_MS));
        }
        return 0;
    }
    gf->gf_switch_failures = 0;
    log_info("switched to a new store generation", LOG_S("view", gf->gf_app->ap_view->v_name),
             LOG_I("generation", id), LOG_I("previous_generation", gf->gf_generation),
             LOG_S("store", dir));
    store_close(gf->gf_store);
    gf->gf_store = store;
    gf->gf_generation = id;
    snprintf(gf->gf_dir, sizeof(gf->gf_dir), "%s", dir);
    return 0;
}

int generations_parse_time(const char *text, int64_t *ret_ms)
{
    struct tm tm = {0};
    const char *p = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        return RM_EINVAL;
    int64_t ms = 0;
    if (*p == '.' || *p == ',') {
        int64_t scale = 100;
        for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
            ms += scale > 0 ? (*p - '0') * scale : 0;
    }
    int64_t offset_s = 0;
    if (*p == 'Z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int hours, minutes, used = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &hours, &minutes, &used) != 2 || used != 5 || hours > 23 ||
            minutes > 59)
            return RM_EINVAL;
        offset_s = (hours * 3600 + minutes * 60) * (*p == '+' ? 1 : -1);
        p += 1 + used;
    } else {
        return RM_EINVAL; /* a time without a zone means something else on every host */
    }
    if (*p)
        return RM_EINVAL;
    time_t t = timegm(&tm);
    *ret_ms = ((int64_t)t - offset_s) * 1000 + ms;
    return 0;
}

/* ---- rebuild progress ---- */

typedef struct progress {
    const app_t *pg_app;
    bool pg_tty;
    pipeline_partition_t *pg_parts;
    int64_t *pg_prev_next;     /* per partition: next offset at the previous draw */
    double *pg_rate;           /* per partition: events/s, smoothed */
    size_t pg_lines;           /* lines drawn last time (cursor moves back over them) */
    int64_t pg_prev_ms;
    int64_t pg_next_draw_ms;
    int64_t pg_start_ms;
} progress_t;

static void format_eta(char *out, size_t len, double seconds)
{
    if (seconds < 0 || seconds > 359999)
        snprintf(out, len, "--:--");
    else if (seconds >= 3600)
        snprintf(out, len, "%d:%02d:%02d", (int)seconds / 3600, (int)seconds / 60 % 60,
                 (int)seconds % 60);
    else
        snprintf(out, len, "%02d:%02d", (int)seconds / 60, (int)seconds % 60);
}

static int progress_tick(void *arg, pipeline_t *pl)
{
    progress_t *pg = arg;
    int64_t now = rm_mono_ms();
    if (now < pg->pg_next_draw_ms)
        return 0;
    pg->pg_next_draw_ms =
        now + (pg->pg_tty ? GENERATIONS_TTY_REDRAW_MS : GENERATIONS_LOG_PROGRESS_MS);
    size_t count = pipeline_partitions(pl, pg->pg_parts, GENERATIONS_MAX_PARTITIONS);
    if (count > GENERATIONS_MAX_PARTITIONS)
        count = GENERATIONS_MAX_PARTITIONS;
    double dt = pg->pg_prev_ms ? (double)(now - pg->pg_prev_ms) / 1000.0 : 0;
    pg->pg_prev_ms = now;
    int64_t done = 0, total = 0;
    double rate = 0;
    for (size_t i = 0; i < count; i++) {
        const pipeline_partition_t *pp = &pg->pg_parts[i];
        int64_t next = pp->pp_next_offset >= 0 ? pp->pp_next_offset : pp->pp_start_offset;
        if (next < 0)
            next = 0;
        if (dt > 0) {
            double instant = (double)(next - pg->pg_prev_next[i]) / dt;
            /* Smoothed over ~1 s of draws so the ETA does not jump with every batch. */
            pg->pg_rate[i] = pg->pg_rate[i] == 0 ? instant : 0.7 * pg->pg_rate[i] + 0.3 * instant;
        }
        pg->pg_prev_next[i] = next;
        int64_t start = pp->pp_start_offset > 0 ? pp->pp_start_offset : 0;
        int64_t target = pp->pp_target > 0 ? pp->pp_target : pp->pp_high_watermark;
        if (target < next)
            target = next;
        done += next - start;
        total += target - start;
        rate += pg->pg_rate[i];
    }
    double eta = rate > 0 ? (double)(total - done) / rate : (total == done ? 0 : -1);
    char eta_text[32];
    format_eta(eta_text, sizeof(eta_text), eta);
    if (!pg->pg_tty) {
        log_info("rebuild progress", LOG_S("view", pg->pg_app->ap_view->v_name),
                 LOG_I("partitions", count), LOG_I("events_done", done),
                 LOG_I("events_total", total), LOG_I("percent", total ? done * 100 / total : 100),
                 LOG_I("events_per_s", (int64_t)rate), LOG_I("eta_s", eta < 0 ? -1 : (int64_t)eta));
        return 0;
    }
    /* Back over the previous drawing, then one line per partition and a total. */
    if (pg->pg_lines)
        printf("\033[%zuF", pg->pg_lines);
    for (size_t i = 0; i < count; i++) {
        const pipeline_partition_t *pp = &pg->pg_parts[i];
        int64_t next = pg->pg_prev_next[i];
        int64_t start = pp->pp_start_offset > 0 ? pp->pp_start_offset : 0;
        int64_t target = pp->pp_target > 0 ? pp->pp_target : pp->pp_high_watermark;
        if (target < next)
            target = next;
        double frac = target > start ? (double)(next - start) / (double)(target - start) : 1.0;
        int filled = (int)(frac * GENERATIONS_BAR_WIDTH + 0.5);
        char bar[GENERATIONS_BAR_WIDTH + 1];
        for (int b = 0; b < GENERATIONS_BAR_WIDTH; b++)
            bar[b] = b < filled ? '#' : '.';
        bar[GENERATIONS_BAR_WIDTH] = '\0';
        char part_eta[32];
        format_eta(part_eta, sizeof(part_eta),
                   pg->pg_rate[i] > 0 ? (double)(target - next) / pg->pg_rate[i]
                                      : (target == next ? 0 : -1));
        char name[300];
        snprintf(name, sizeof(name), "%s/%d", pp->pp_topic, pp->pp_partition);
        printf("\033[2K%-16s [%s] %3d%% %10lld/%-10lld %9.0f ev/s ETA %s\n", name, bar,
               (int)(frac * 100), (long long)next, (long long)target, pg->pg_rate[i], part_eta);
    }
    printf("\033[2Ktotal %lld/%lld events, %.0f ev/s, ETA %s, elapsed %llds\n", (long long)done,
           (long long)total, rate, eta_text, (long long)((now - pg->pg_start_ms) / 1000));
    fflush(stdout);
    pg->pg_lines = count + 1;
    return 0;
}

/* The rebuild's side of outbox_adopt: the current generation (opened read-only while the
 * daemon writes it) is the one the new generation replaces. No current one: nothing. */
static int adopt_current(const char *view_dir, pipeline_t *pl)
{
    char dir[4096], err[512];
    int64_t id;
    int rc = gen_current(view_dir, &id, dir, sizeof(dir));
    if (rc == RM_ENOTFOUND)
        return 0;
    if (rc)
        return rc;
    /* A current generation that may have lost writes is not read at all (a torn LMDB
     * file can crash its reader): the new one records its own dead letters under a new
     * replica id (outbox.h note 3), so those the torn one published appear again. */
    rc = store_check_durable(dir, err, sizeof(err));
    if (rc == RM_ESUSPECT) {
        log_warn("not comparing dead letters with the current generation: it may have lost "
                 "writes",
                 LOG_S("store", dir), LOG_S("reason", err));
        return 0;
    }
    store_opts_t sopts = {.so_dir = dir, .so_readonly = true};
    store_t *current = rc ? NULL : store_open(&sopts, err, sizeof(err));
    if (!current) {
        log_error("cannot open the current generation", LOG_S("error", err));
        return RM_ESTORE;
    }
    rc = pipeline_adopt_previous(pl, current);
    store_close(current);
    return rc;
}

/* What a rebuild holds while it runs, released by rebuild_release(). */
typedef struct rebuild {
    int rb_lock_fd;
    int64_t rb_id; /* the new generation */
    char rb_dir[GEN_DIR_MAX];
    store_t *rb_store;
    erasures_t *rb_erasures;
    pipeline_t *rb_pipe;
    progress_t rb_pg;
} rebuild_t;

static void rebuild_release(rebuild_t *rb)
{
    pipeline_destroy(rb->rb_pipe);
    store_close(rb->rb_store);
    erasures_close(rb->rb_erasures);
    free(rb->rb_pg.pg_parts);
    free(rb->rb_pg.pg_prev_next);
    free(rb->rb_pg.pg_rate);
    if (rb->rb_lock_fd >= 0)
        close(rb->rb_lock_fd);
}

/* The rebuild lock, a new generation with its writer, and the erasure ledger with every
 * erasure any replica published. Returns the exit code. */
static int rebuild_open(const app_t *app, rebuild_t *rb, volatile sig_atomic_t *stop_requested)
{
    const char *view_dir = app->ap_store_dir;
    int rc = app_mkdirs(view_dir);
    if (!rc)
        rc = gen_lock_file(view_dir, "rebuild.lock", &rb->rb_lock_fd);
    if (rc) {
        log_error(rc == RM_EBUSY ? "another rebuild of this view is running"
                                 : "cannot prepare the view directory",
                  LOG_S("path", view_dir), LOG_S("error", rm_strerror(rc)));
        return APP_EXIT_FAILURE;
    }
    rc = gen_create(view_dir, &rb->rb_id, rb->rb_dir, sizeof(rb->rb_dir));
    if (rc) {
        log_error("cannot create a new generation", LOG_S("path", view_dir),
                  LOG_S("error", rm_strerror(rc)));
        return APP_EXIT_FAILURE;
    }
    bool usage = false;
    rb->rb_store = open_writer_logged(app, rb->rb_dir, true, &usage);
    if (!rb->rb_store)
        return usage ? APP_EXIT_USAGE : APP_EXIT_FAILURE;
    /* The new generation starts from every erasure the view ever applied, whether or
     * not the log still holds the event that caused it (erasures.h). */
    char err[1024];
    rb->rb_erasures = erasures_open(view_dir, false, err, sizeof(err));
    if (!rb->rb_erasures) {
        log_error("cannot open the erasure ledger", LOG_S("error", err));
        return APP_EXIT_FAILURE;
    }
    /* And from every erasure another replica published, before its first event. */
    rc = app_pull_erasures(app, rb->rb_erasures, view_dir, NULL, stop_requested, NULL);
    return rc ? app_exit_for(rc) : APP_EXIT_OK;
}

/* The pipeline that fills the new generation, with its progress bar. Returns the exit
 * code. */
static int rebuild_pipe(const app_t *app, rebuild_t *rb, int64_t start_time_ms)
{
    progress_t *pg = &rb->rb_pg;
    *pg = (progress_t){
        .pg_app = app, .pg_tty = isatty(STDOUT_FILENO) == 1, .pg_start_ms = rm_mono_ms()};
    pg->pg_parts = calloc(GENERATIONS_MAX_PARTITIONS, sizeof(*pg->pg_parts));
    pg->pg_prev_next = calloc(GENERATIONS_MAX_PARTITIONS, sizeof(*pg->pg_prev_next));
    pg->pg_rate = calloc(GENERATIONS_MAX_PARTITIONS, sizeof(*pg->pg_rate));
    /* The new generation is not live: it holds its dead letters; they are published by the
     * daemon after the switch, less those the current generation already recorded. Nor
     * does it commit offsets to the consumer group: lag tooling reads the group as the
     * live projector's position (a rebuild from offset 0 would show a caught-up daemon
     * far behind). Not to a group of its own either: the projector never joins its
     * group, so a finished rebuild's leftover group would look like a stalled consumer
     * whose lag grows until Kafka expires it, and a literal ACL on a configured group.id
     * would not cover it; the rebuild's progress is in its own output. The daemon that
     * adopts the generation commits its offsets (pipeline.h note 11). */
    pipeline_opts_t popts = {.po_cfg = app->ap_cfg,
                             .po_view = app->ap_view,
                             .po_catalog = app->ap_catalog,
                             .po_store = rb->rb_store,
                             .po_until_caught_up = true,
                             .po_start_time_ms = start_time_ms,
                             .po_generation = rb->rb_id,
                             .po_tick = progress_tick,
                             .po_tick_arg = pg,
                             .po_hold_dead_letters = true,
                             .po_no_group_commit = true,
                             .po_erasures = rb->rb_erasures,
                             .po_registry = app->ap_registry};
    /* A generation must not go live missing the beginning of a log without saying so. */
    popts.po_check_log_start = true;
    char err[1024];
    int rc = RM_ENOMEM;
    snprintf(err, sizeof(err), "out of memory");
    if (pg->pg_parts && pg->pg_prev_next && pg->pg_rate)
        rc = pipeline_new(&popts, &rb->rb_pipe, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "projector: %s\n", err);
        return app_exit_for(rc);
    }
    return APP_EXIT_OK;
}

/* Each round catches up with the high watermarks as they were when it started; the live
 * daemon keeps writing the old generation meanwhile, so a short last round means the
 * switch makes the view go back in time by very little. Returns the pipeline's error. */
static int rebuild_rounds(pipeline_t *pl, volatile sig_atomic_t *stop_requested)
{
    int rc = 0;
    for (int round = 0; round < GENERATIONS_MAX_ROUNDS && !rc && !*stop_requested; round++) {
        int64_t round_start = rm_mono_ms();
        rc = pipeline_run(pl);
        if (rm_mono_ms() - round_start < GENERATIONS_SHORT_ROUND_MS)
            break;
    }
    return rc;
}

/* A complete generation: its dead letters compared with the current one's, closed (the
 * final sync makes it durable, or it is not switched to), made current, old ones pruned.
 * Returns the exit code. */
static int rebuild_switch(const app_t *app, rebuild_t *rb)
{
    const char *view_dir = app->ap_store_dir;
    /* Dead letters the current generation already recorded are not the new one's to
     * publish (the daemon repeats this at the switch with its final offsets). */
    int rc = adopt_current(view_dir, rb->rb_pipe);
    if (rc) {
        log_error("cannot compare dead letters with the current generation",
                  LOG_S("error", rm_strerror(rc)));
        return APP_EXIT_FAILURE;
    }
    /* Close before switching: the daemon opens the new generation as its writer. */
    pipeline_destroy(rb->rb_pipe);
    rb->rb_pipe = NULL;
    rc = store_close(rb->rb_store);
    rb->rb_store = NULL;
    if (rc) {
        log_error("cannot make the new generation durable; current generation unchanged",
                  LOG_S("view", app->ap_view->v_name), LOG_I("generation", rb->rb_id),
                  LOG_S("error", rm_strerror(rc)));
        return APP_EXIT_FAILURE;
    }
    rc = gen_switch(view_dir, rb->rb_id);
    if (rc) {
        log_error("cannot switch the current generation", LOG_S("path", view_dir),
                  LOG_I("generation", rb->rb_id), LOG_S("error", rm_strerror(rc)));
        return APP_EXIT_FAILURE;
    }
    return APP_EXIT_OK;
}

/* Says why a rebuild that did not complete leaves the current generation as it is.
 * Returns the exit code. */
static int rebuild_refused(const app_t *app, const rebuild_t *rb, int rc)
{
    if (rc == RM_EGAP) {
        /* The pipeline logged the partition; a generation missing the beginning of a log
         * must not go live unless on_gap=continue recorded the gap in it. */
        log_error("rebuild refused: retention deleted events the new generation would need "
                  "(the log no longer starts at offset 0, or not before --from-time); current "
                  "generation unchanged. projector.on_gap=continue builds it anyway, with the gap "
                  "recorded",
                  LOG_S("view", app->ap_view->v_name), LOG_I("generation", rb->rb_id));
        return APP_EXIT_GAP;
    }
    log_error(rc ? "rebuild failed; current generation unchanged"
                 : "rebuild interrupted; current generation unchanged",
              LOG_S("view", app->ap_view->v_name), LOG_I("generation", rb->rb_id),
              LOG_S("error", rc ? rm_strerror(rc) : NULL));
    return APP_EXIT_FAILURE;
}

int generations_rebuild_main(const app_t *app, int64_t start_time_ms, pipeline_t *volatile *running,
                             volatile sig_atomic_t *stop_requested)
{
    rebuild_t rb = {.rb_lock_fd = -1};
    int exit_code = rebuild_open(app, &rb, stop_requested);
    if (!exit_code)
        exit_code = rebuild_pipe(app, &rb, start_time_ms);
    if (exit_code) {
        rebuild_release(&rb);
        return exit_code;
    }
    *running = rb.rb_pipe;
    if (*stop_requested)
        pipeline_stop(rb.rb_pipe);
    log_info("rebuild started", LOG_S("view", app->ap_view->v_name), LOG_I("generation", rb.rb_id),
             LOG_S("store", rb.rb_dir), LOG_I("from_time_ms", start_time_ms));
    int64_t t0 = rm_mono_ms();
    int rc = rebuild_rounds(rb.rb_pipe, stop_requested);
    progress_tick(&rb.rb_pg, rb.rb_pipe); /* the final state, not one 5 s old */
    rb.rb_pg.pg_next_draw_ms = 0;
    progress_tick(&rb.rb_pg, rb.rb_pipe);
    pipeline_stats_t stats;
    pipeline_get_stats(rb.rb_pipe, &stats);
    *running = NULL;
    double seconds = (double)(rm_mono_ms() - t0) / 1000.0;
    exit_code = rc || *stop_requested ? rebuild_refused(app, &rb, rc) : rebuild_switch(app, &rb);
    if (exit_code) {
        rebuild_release(&rb);
        return exit_code;
    }
    size_t removed = 0;
    const char *view_dir = app->ap_store_dir;
    rc = gen_prune(view_dir, (int)cfg_int(app->ap_cfg, "projector.keep_generations"), &removed);
    if (rc)
        log_warn("cannot delete old generations", LOG_S("path", view_dir),
                 LOG_S("error", rm_strerror(rc)));
    log_info("rebuild switched", LOG_S("view", app->ap_view->v_name), LOG_I("generation", rb.rb_id),
             LOG_I("messages", stats.ps_messages), LOG_I("batches", stats.ps_batches),
             LOG_I("applied", stats.ps_outcomes[ENGINE_APPLIED]),
             LOG_I("skipped_before_start", stats.ps_skipped_before_start),
             LOG_I("elapsed_ms", (int64_t)(seconds * 1000)), LOG_I("generations_deleted", removed));
    printf("rebuilt %s as generation %lld: %llu events (%llu applied, %llu before the start time) "
           "in %.1f s, %.0f events/s; current -> gen-%06lld\n",
           app->ap_view->v_name, (long long)rb.rb_id, (unsigned long long)stats.ps_messages,
           (unsigned long long)stats.ps_outcomes[ENGINE_APPLIED],
           (unsigned long long)stats.ps_skipped_before_start, seconds,
           seconds > 0 ? (double)stats.ps_messages / seconds : 0.0, (long long)rb.rb_id);
    rebuild_release(&rb);
    return APP_EXIT_OK;
}

int generations_repair_current(const app_t *app, const char *dir, pipeline_t *volatile *running,
                               volatile sig_atomic_t *stop_requested, bool *ret_rebuilt)
{
    char why[1024];
    *ret_rebuilt = false;
    int rc = store_check_durable(dir, why, sizeof(why));
    if (rc == 0)
        return APP_EXIT_OK;
    if (rc != RM_ESUSPECT) {
        log_error("cannot tell whether the current generation is intact", LOG_S("store", dir),
                  LOG_S("error", why));
        return APP_EXIT_FAILURE;
    }
    log_warn("the current generation may have lost writes; rebuilding it from Kafka before "
             "serving",
             LOG_S("view", app->ap_view->v_name), LOG_S("store", dir), LOG_S("reason", why));
    int exit_code = generations_rebuild_main(app, 0, running, stop_requested);
    *ret_rebuilt = exit_code == APP_EXIT_OK;
    return exit_code;
}

/* ---- generations, rollback ---- */

static void format_time(char *out, size_t len, int64_t ms)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static json_t *gen_json(const gen_info_t *gi)
{
    char created[32];
    format_time(created, sizeof(created), gi->gi_created_ms);
    json_t *topics = json_array();
    int64_t events = 0;
    for (size_t t = 0; t < gi->gi_topic_count; t++) {
        const gen_topic_t *gt = &gi->gi_topics[t];
        events += gt->gt_next_offset_sum;
        json_array_append_new(topics, json_pack("{s:s, s:i, s:I, s:I, s:I}", "topic", gt->gt_topic,
                                                "partitions", gt->gt_partitions, "next_offset_sum",
                                                (json_int_t)gt->gt_next_offset_sum, "lag_messages",
                                                (json_int_t)gt->gt_lag_sum, "updated_ms",
                                                (json_int_t)gt->gt_updated_ms));
    }
    json_t *obj =
        json_pack("{s:I, s:s, s:b, s:b, s:b, s:I, s:s, s:I, s:I, s:o}", "id", (json_int_t)gi->gi_id,
                  "path", gi->gi_path, "current", gi->gi_current, "previous", gi->gi_previous,
                  "writer_active", gi->gi_writer_active, "created_ms",
                  (json_int_t)gi->gi_created_ms, "created", created, "size_bytes",
                  (json_int_t)gi->gi_size_bytes, "events", (json_int_t)events, "topics", topics);
    if (obj && gi->gi_error[0])
        json_object_set_new(obj, "error", json_string(gi->gi_error));
    return obj;
}

int generations_list_main(const app_t *app, bool json)
{
    gen_info_t *gens = NULL;
    size_t count = 0;
    int rc = gen_list(app->ap_store_dir, true, &gens, &count);
    if (rc) {
        log_error("cannot list generations", LOG_S("path", app->ap_store_dir),
                  LOG_S("error", rm_strerror(rc)));
        return APP_EXIT_FAILURE;
    }
    if (json) {
        json_t *arr = json_array();
        for (size_t i = 0; i < count; i++)
            json_array_append_new(arr, gen_json(&gens[i]));
        char *text = json_dumps(arr, JSON_COMPACT);
        if (text)
            printf("%s\n", text);
        free(text);
        json_decref(arr);
    } else {
        if (!count) {
            char dir[GEN_DIR_MAX];
            fprintf(stderr,
                    gen_current_dir(app->ap_store_dir, dir, sizeof(dir)) == 0
                        ? "projector: %s: flat store (no generations until the projector starts)\n"
                        : "projector: %s: no generations\n",
                    app->ap_store_dir);
        } else {
            printf("%-4s %-8s %-21s %10s %12s  %s\n", "GEN", "STATE", "CREATED", "SIZE_MB",
                   "EVENTS", "TOPICS (partitions: next offsets summed)");
        }
        for (size_t i = 0; i < count; i++) {
            const gen_info_t *gi = &gens[i];
            char created[32], topics[1024] = "";
            format_time(created, sizeof(created), gi->gi_created_ms);
            int64_t events = 0;
            for (size_t t = 0; t < gi->gi_topic_count; t++) {
                const gen_topic_t *gt = &gi->gi_topics[t];
                events += gt->gt_next_offset_sum;
                size_t used = strlen(topics);
                snprintf(topics + used, sizeof(topics) - used, "%s%s(%d):%lld", t ? " " : "",
                         gt->gt_topic, gt->gt_partitions, (long long)gt->gt_next_offset_sum);
            }
            const char *state = gi->gi_current         ? "current"
                                : gi->gi_previous      ? "previous"
                                : gi->gi_writer_active ? "building"
                                                       : "";
            printf("%-4lld %-8s %-21s %10.1f %12lld  %s\n", (long long)gi->gi_id, state, created,
                   (double)gi->gi_size_bytes / (1024.0 * 1024.0), (long long)events,
                   gi->gi_error[0] ? gi->gi_error : topics);
        }
    }
    gen_list_free(gens, count);
    return APP_EXIT_OK;
}

int generations_rollback_main(const app_t *app, int64_t to)
{
    const char *view_dir = app->ap_store_dir;
    char dir[GEN_DIR_MAX];
    int64_t current = 0;
    int rc = gen_current(view_dir, &current, dir, sizeof(dir));
    if (rc || current == 0) {
        log_error("no store generations to roll back", LOG_S("path", view_dir),
                  LOG_S("error", rc ? rm_strerror(rc) : "flat store"));
        return APP_EXIT_FAILURE;
    }
    int64_t target = to;
    if (target <= 0 && gen_previous(view_dir, &target) != 0) {
        log_error("no previous generation to roll back to; give --to N", LOG_S("path", view_dir));
        return APP_EXIT_FAILURE;
    }
    if (target == current) {
        log_error("that generation is already current", LOG_I("generation", target));
        return APP_EXIT_FAILURE;
    }
    rc = gen_switch(view_dir, target);
    if (rc) {
        log_error(rc == RM_ENOTFOUND ? "no such generation (or it holds no store)"
                                     : "cannot switch the current generation",
                  LOG_S("path", view_dir), LOG_I("generation", target),
                  LOG_S("error", rm_strerror(rc)));
        return APP_EXIT_FAILURE;
    }
    log_info("rolled back", LOG_S("view", app->ap_view->v_name), LOG_I("generation", target),
             LOG_I("previous_generation", current));
    printf("current -> gen-%06lld (was gen-%06lld)\n", (long long)target, (long long)current);
    return APP_EXIT_OK;
}
