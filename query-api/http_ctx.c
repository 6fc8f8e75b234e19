/* http_ctx: the served store generation, its handover, per-thread read txns and buffers. */
#include "http_ctx.h"
#include "gen.h"
#include "rm_time.h"
#include "log.h"
#include "rm_err.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

const unsigned http_status_codes[HTTP_STATUS_SLOTS] = {200, 304, 400, 401, 403, 404,
                                                       405, 414, 429, 431, 500, 503};
/* From 50 µs (a cached view) to 1 s (a stalled disk). */
const double http_latency_bounds[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                      0.005,   0.01,   0.05,    0.25,   1};
const size_t http_latency_bucket_count = sizeof(http_latency_bounds) / sizeof(double);

/* How often the watcher resolves "current": a missing store, a new generation or a
 * rollback is noticed within this; cheap (a readlink and a stat). */
#define HTTP_REOPEN_MS 200

/* Per-thread state lives behind a pthread key so that it is released when
 * libmicrohttpd's worker threads exit (MHD_stop_daemon, before the store closes). */
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

/* Drops one reference; the last one closes the environment. hc_store_lock held. */
static void gen_release(http_gen_t *gen)
{
    if (gen && --gen->hg_refs == 0) {
        log_info("store generation closed",
                 LOG_I("generation", __atomic_load_n(&gen->hg_id, __ATOMIC_RELAXED)));
        store_close(gen->hg_store);
        free(gen);
    }
}

/* Ends the thread's txn and gives its generation back. ht_lock and hc_store_lock held
 * (or the owning thread exiting). */
static void tls_leave_gen(http_tls_t *tls)
{
    if (tls->ht_txn)
        store_read_end(tls->ht_txn); /* MDB_NOTLS: any thread may end a reset txn */
    tls->ht_txn = NULL;
    tls->ht_lag_memo.lm_valid = false; /* txn ids of another environment are unrelated */
    gen_release(tls->ht_gen);
    tls->ht_gen = NULL;
}

static void tls_free(void *data)
{
    http_tls_t *tls = data;
    http_ctx_t *ctx = tls->ht_ctx;
    if (ctx) {
        pthread_mutex_lock(&ctx->hc_store_lock);
        for (http_tls_t **p = &ctx->hc_threads; *p; p = &(*p)->ht_next)
            if (*p == tls) {
                *p = tls->ht_next;
                break;
            }
        tls_leave_gen(tls);
        pthread_mutex_unlock(&ctx->hc_store_lock);
    }
    pthread_mutex_destroy(&tls->ht_lock);
    buf_free(&tls->ht_body);
    free(tls);
}

static void tls_init_key(void)
{
    pthread_key_create(&tls_key, tls_free);
}

static http_tls_t *tls_get(void)
{
    pthread_once(&tls_once, tls_init_key);
    http_tls_t *tls = pthread_getspecific(tls_key);
    if (!tls && (tls = calloc(1, sizeof(*tls)))) {
        pthread_mutex_init(&tls->ht_lock, NULL);
        pthread_setspecific(tls_key, tls);
    }
    return tls;
}

int64_t http_generation(http_ctx_t *ctx)
{
    pthread_mutex_lock(&ctx->hc_store_lock);
    int64_t id = ctx->hc_gen ? __atomic_load_n(&ctx->hc_gen->hg_id, __ATOMIC_RELAXED) : -1;
    pthread_mutex_unlock(&ctx->hc_store_lock);
    return id;
}

int http_txn(http_ctx_t *ctx, store_t **ret_store, MDB_txn **ret_txn)
{
    http_tls_t *tls = tls_get();
    if (!tls)
        return RM_ENOMEM;
    if (!tls->ht_ctx) {
        pthread_mutex_lock(&ctx->hc_store_lock);
        tls->ht_ctx = ctx;
        tls->ht_next = ctx->hc_threads;
        ctx->hc_threads = tls;
        pthread_mutex_unlock(&ctx->hc_store_lock);
    }
    if (tls->ht_active) /* a second http_txn without http_txn_done: keep the first */
        http_txn_done();
    pthread_mutex_lock(&tls->ht_lock);
    http_gen_t *gen = __atomic_load_n(&ctx->hc_gen, __ATOMIC_ACQUIRE);
    if (!gen) {
        pthread_mutex_unlock(&tls->ht_lock);
        return RM_ENOTFOUND;
    }
    if (tls->ht_gen != gen) {
        /* A new generation (or the first request): move this thread's txn over. */
        pthread_mutex_lock(&ctx->hc_store_lock);
        tls_leave_gen(tls);
        gen = ctx->hc_gen;
        if (!gen) { /* dropped meanwhile (drop_suspect) */
            pthread_mutex_unlock(&ctx->hc_store_lock);
            pthread_mutex_unlock(&tls->ht_lock);
            return RM_ENOTFOUND;
        }
        gen->hg_refs++;
        tls->ht_gen = gen;
        pthread_mutex_unlock(&ctx->hc_store_lock);
    }
    int rc = tls->ht_txn ? store_read_renew(gen->hg_store, &tls->ht_txn)
                         : store_read_begin(gen->hg_store, &tls->ht_txn);
    if (rc) {
        tls->ht_txn = NULL;
        pthread_mutex_unlock(&tls->ht_lock);
        return rc;
    }
    tls->ht_active = true;
    *ret_store = gen->hg_store;
    *ret_txn = tls->ht_txn;
    return 0;
}

int64_t http_txn_generation(void)
{
    http_tls_t *tls = tls_get();
    return tls && tls->ht_gen ? __atomic_load_n(&tls->ht_gen->hg_id, __ATOMIC_RELAXED) : -1;
}

void http_txn_done(void)
{
    http_tls_t *tls = tls_get();
    if (!tls || !tls->ht_active)
        return;
    /* Reset, not abort: the next request on this thread renews it without allocating
     * a reader slot (docs/architecture.md §8). */
    if (tls->ht_txn)
        store_read_reset(tls->ht_txn);
    http_ctx_t *ctx = tls->ht_ctx;
    if (tls->ht_gen != __atomic_load_n(&ctx->hc_gen, __ATOMIC_ACQUIRE)) {
        /* Switched while this request ran: let the old environment go now. */
        pthread_mutex_lock(&ctx->hc_store_lock);
        tls_leave_gen(tls);
        pthread_mutex_unlock(&ctx->hc_store_lock);
    }
    tls->ht_active = false;
    pthread_mutex_unlock(&tls->ht_lock);
}

buf_t *http_body(void)
{
    static __thread buf_t fallback; /* only if the allocation above failed */
    http_tls_t *tls = tls_get();
    buf_t *body = tls ? &tls->ht_body : &fallback;
    buf_reset(body);
    return body;
}

http_lag_memo_t *http_lag_memo(void)
{
    http_tls_t *tls = tls_get();
    return tls && tls->ht_active ? &tls->ht_lag_memo : NULL;
}

/* Idle threads still hold a reset txn in an old generation: end them here so the old
 * environment closes now rather than at their next request. Watcher thread. */
static void sweep_idle(http_ctx_t *ctx)
{
    pthread_mutex_lock(&ctx->hc_store_lock);
    for (http_tls_t *tls = ctx->hc_threads; tls; tls = tls->ht_next) {
        if (!tls->ht_gen || tls->ht_gen == ctx->hc_gen || pthread_mutex_trylock(&tls->ht_lock) != 0)
            continue; /* busy ones give it back in http_txn_done */
        tls_leave_gen(tls);
        pthread_mutex_unlock(&tls->ht_lock);
    }
    pthread_mutex_unlock(&ctx->hc_store_lock);
}

/* Records why no store is served: the public reason (status, 503 bodies) names no path,
 * since those routes are open to anyone; the log line, for the operator, does. Logged
 * when the reason changes, not at every retry. Watcher thread (and the start-up). */
const char *http_store_error(http_ctx_t *ctx)
{
    const char *reason = __atomic_load_n(&ctx->hc_store_error, __ATOMIC_ACQUIRE);
    return reason ? reason : "no store yet";
}

static void store_unavailable(http_ctx_t *ctx, const char *reason, const char *dir,
                              const char *detail)
{
    const char *was = __atomic_load_n(&ctx->hc_store_error, __ATOMIC_ACQUIRE);
    if (was && strcmp(was, reason) == 0)
        return;
    __atomic_store_n(&ctx->hc_store_error, reason, __ATOMIC_RELEASE);
    log_warn("the view store cannot be served yet", LOG_S("reason", reason), LOG_S("store", dir),
             LOG_S("error", detail));
}

/* Stops serving the open generation once its store is marked as possibly missing
 * writes (an fsync of the writer failed): pages the kernel dropped from its cache would
 * be read again from a disk that never got them. Requests answer 503 until a rebuilt
 * generation is current. Watcher thread. */
static void drop_suspect(http_ctx_t *ctx)
{
    http_gen_t *cur = ctx->hc_gen;
    char why[256];
    if (!cur || store_check_durable(cur->hg_dir, why, sizeof(why)) != RM_ESUSPECT)
        return;
    log_error("the served store generation may have lost writes; no longer serving it",
              LOG_S("store", cur->hg_dir), LOG_I("generation", cur->hg_id));
    store_unavailable(ctx, "the store may have lost writes; it is being rebuilt", cur->hg_dir, why);
    pthread_mutex_lock(&ctx->hc_store_lock);
    __atomic_store_n(&ctx->hc_gen, NULL, __ATOMIC_RELEASE);
    gen_release(cur);
    pthread_mutex_unlock(&ctx->hc_store_lock);
}

/* Opens the current generation if it is not the one served. Watcher thread (and the
 * start-up, before it runs). */
static void follow_current(http_ctx_t *ctx)
{
    char dir[4096], data_path[4200], err[256];
    int64_t id;
    drop_suspect(ctx);
    int rc = gen_current(ctx->hc_app->ap_store_dir, &id, dir, sizeof(dir));
    http_gen_t *cur = ctx->hc_gen; /* only this thread swaps it */
    if (rc) {
        if (!cur)
            store_unavailable(ctx, "no store yet", ctx->hc_app->ap_store_dir, rm_strerror(rc));
        return; /* a switch in progress, or none yet: keep serving what is open */
    }
    if (cur && strcmp(cur->hg_dir, dir) == 0)
        return;
    struct stat sb;
    snprintf(data_path, sizeof(data_path), "%s/data.mdb", dir);
    if (stat(data_path, &sb) != 0) {
        if (!cur)
            store_unavailable(ctx, "no store yet", dir, "no data.mdb");
        return;
    }
    if (cur && cur->hg_dev == sb.st_dev && cur->hg_ino == sb.st_ino) {
        /* The flat store moved into gen-000001 (renamed, same file): never open one
         * environment twice in a process (LMDB's locks are per process). */
        snprintf(cur->hg_dir, sizeof(cur->hg_dir), "%s", dir);
        __atomic_store_n(&cur->hg_id, id, __ATOMIC_RELAXED);
        log_info("store moved into generations; same environment", LOG_S("store", dir),
                 LOG_I("generation", id));
        return;
    }
    store_opts_t opts = {.so_dir = dir, .so_readonly = true};
    store_t *store = store_open(&opts, err, sizeof(err));
    http_gen_t *gen = store ? calloc(1, sizeof(*gen)) : NULL;
    if (!gen) {
        store_close(store);
        store_unavailable(ctx, "cannot open the store", dir, store ? "out of memory" : err);
        return;
    }
    gen->hg_store = store;
    gen->hg_id = id;
    snprintf(gen->hg_dir, sizeof(gen->hg_dir), "%s", dir);
    gen->hg_dev = sb.st_dev;
    gen->hg_ino = sb.st_ino;
    gen->hg_refs = 1; /* hc_gen's */
    pthread_mutex_lock(&ctx->hc_store_lock);
    __atomic_store_n(&ctx->hc_gen, gen, __ATOMIC_RELEASE);
    gen_release(cur);
    pthread_mutex_unlock(&ctx->hc_store_lock);
    log_info(cur ? "serving a new store generation" : "store opened", LOG_S("store", dir),
             LOG_I("generation", id));
}

static void *watcher_main(void *arg)
{
    http_ctx_t *ctx = arg;
    while (!__atomic_load_n(&ctx->hc_stop, __ATOMIC_ACQUIRE)) {
        struct timespec pause = {0, HTTP_REOPEN_MS * 1000000L};
        nanosleep(&pause, NULL);
        follow_current(ctx);
        sweep_idle(ctx);
    }
    return NULL;
}

int http_store_start(http_ctx_t *ctx)
{
    follow_current(ctx); /* serve a store that exists at once */
    int err = pthread_create(&ctx->hc_watcher, NULL, watcher_main, ctx);
    if (err)
        return rm_err_from_errno(err);
    ctx->hc_watcher_running = true;
    return 0;
}

void http_store_stop(http_ctx_t *ctx)
{
    if (ctx->hc_watcher_running) {
        __atomic_store_n(&ctx->hc_stop, 1, __ATOMIC_RELEASE);
        pthread_join(ctx->hc_watcher, NULL);
        ctx->hc_watcher_running = false;
    }
    pthread_mutex_lock(&ctx->hc_store_lock);
    /* Workers are joined: threads that never exited through the key (none in MHD's
     * pool, but be safe) still hold references here. */
    for (http_tls_t *tls = ctx->hc_threads; tls; tls = tls->ht_next) {
        tls_leave_gen(tls);
        tls->ht_ctx = NULL;
    }
    ctx->hc_threads = NULL;
    gen_release(ctx->hc_gen);
    ctx->hc_gen = NULL;
    pthread_mutex_unlock(&ctx->hc_store_lock);
}
