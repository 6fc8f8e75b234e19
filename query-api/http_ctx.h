/* http_ctx: the query API's shared state — the store (opened lazily: the API may start
 * before the projector created it), fixed responses, request counters — and the
 * per-thread read transaction and buffer every handler uses. */
#ifndef RM_HTTP_CTX_H
#define RM_HTTP_CTX_H

#include "app.h"
#include "buf.h"
#include "http_routes.h"
#include "metrics.h"
#include "store.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdint.h>

/* Status codes counted per route (index into hs_requests). */
#define HTTP_STATUS_SLOTS 9
extern const unsigned http_status_codes[HTTP_STATUS_SLOTS];

typedef struct http_stats {
    uint64_t hs_requests[HTTP_ROUTE__COUNT][HTTP_STATUS_SLOTS]; /* atomics */
    uint64_t hs_latency_buckets[HTTP_ROUTE__COUNT][METRICS_MAX_BUCKETS + 1];
    uint64_t hs_latency_ns_sum[HTTP_ROUTE__COUNT];
} http_stats_t;

typedef struct http_ctx {
    app_t *hc_app;
    pthread_mutex_t hc_store_lock; /* guards opening hc_store */
    store_t *hc_store;             /* NULL until it opens; then fixed until exit */
    int64_t hc_next_open_ms;
    char hc_store_error[256];
    struct MHD_Response *hc_healthz;   /* created once, reused (DESIGN.md §8) */
    struct MHD_Response *hc_not_found;
    struct MHD_Response *hc_dashboard;
    struct MHD_Response *hc_openapi;
    http_stats_t hc_stats;
    int64_t hc_waiters;            /* requests in a consistency wait (atomic; http_fresh.c) */
    struct http_live *hc_live;     /* live sections (http_live.h); fixed while serving */
} http_ctx_t;

/* Per worker thread: a read txn reused with reset/renew, and the response buffer. */
typedef struct http_tls {
    MDB_txn *ht_txn;
    buf_t ht_body;
} http_tls_t;

/* The store, opening it if it is not open yet (at most once a second). NULL while it
 * cannot be opened; the reason is in hc_store_error. Any thread. */
store_t *http_store(http_ctx_t *ctx);

/* A read txn for this thread on store (renewed); release with http_txn_done(). */
int http_txn(http_ctx_t *ctx, store_t *store, MDB_txn **ret_txn);
void http_txn_done(void);
/* This thread's response buffer, emptied. */
buf_t *http_body(void);

/* Upper bounds of the latency histogram (seconds). */
extern const double http_latency_bounds[];
extern const size_t http_latency_bucket_count;

#endif
