/* http_ctx: lazily opened store, per-thread read transactions and buffers. */
#include "http_ctx.h"
#include "rm_time.h"
#include "log.h"
#include "rm_err.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

const unsigned http_status_codes[HTTP_STATUS_SLOTS] = {200, 304, 400, 401, 403, 404, 405,
                                                    414, 429, 431, 500, 503};
/* From 50 µs (a cached view) to 1 s (a stalled disk). */
const double http_latency_bounds[] = {0.00005, 0.0001, 0.00025, 0.0005, 0.001,
                                      0.0025,  0.005,  0.01,    0.05,   0.25, 1};
const size_t http_latency_bucket_count = sizeof(http_latency_bounds) / sizeof(double);

/* A missing store is retried at most this often: cheap (one stat()) yet short enough that
 * a store created by a projector that starts after us is served almost at once. */
#define HTTP_REOPEN_MS 200

/* Per-thread state lives behind a pthread key so that it is released when
 * libmicrohttpd's worker threads exit (MHD_stop_daemon, before the store closes). */
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

static void tls_free(void *data)
{
    http_tls_t *tls = data;
    if (tls->ht_txn)
        store_read_end(tls->ht_txn);
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
    if (!tls && (tls = calloc(1, sizeof(*tls))))
        pthread_setspecific(tls_key, tls);
    return tls;
}

store_t *http_store(http_ctx_t *ctx)
{
    store_t *store = __atomic_load_n(&ctx->hc_store, __ATOMIC_ACQUIRE);
    if (store)
        return store;
    pthread_mutex_lock(&ctx->hc_store_lock);
    if (!ctx->hc_store && rm_mono_ms() >= ctx->hc_next_open_ms) {
        ctx->hc_next_open_ms = rm_mono_ms() + HTTP_REOPEN_MS;
        store_opts_t opts = {.so_dir = ctx->hc_app->ap_store_dir, .so_readonly = true};
        char err[256];
        store_t *opened = store_open(&opts, err, sizeof(err));
        if (opened) {
            log_info("store opened", LOG_S("store", ctx->hc_app->ap_store_dir));
            __atomic_store_n(&ctx->hc_store, opened, __ATOMIC_RELEASE);
        } else {
            snprintf(ctx->hc_store_error, sizeof(ctx->hc_store_error), "%s", err);
        }
    }
    store = ctx->hc_store;
    pthread_mutex_unlock(&ctx->hc_store_lock);
    return store;
}

int http_txn(http_ctx_t *ctx, store_t *store, MDB_txn **ret_txn)
{
    (void)ctx;
    http_tls_t *tls = tls_get();
    if (!tls)
        return RM_ENOMEM;
    int rc = tls->ht_txn ? store_read_renew(store, &tls->ht_txn)
                         : store_read_begin(store, &tls->ht_txn);
    if (rc) {
        tls->ht_txn = NULL;
        return rc;
    }
    *ret_txn = tls->ht_txn;
    return 0;
}

void http_txn_done(void)
{
    /* Reset, not abort: the next request on this thread renews it without allocating
     * a reader slot (DESIGN.md §8). */
    http_tls_t *tls = tls_get();
    if (tls && tls->ht_txn)
        store_read_reset(tls->ht_txn);
}

buf_t *http_body(void)
{
    static __thread buf_t fallback; /* only if the allocation above failed */
    http_tls_t *tls = tls_get();
    buf_t *body = tls ? &tls->ht_body : &fallback;
    buf_reset(body);
    return body;
}
