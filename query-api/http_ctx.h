/* http_ctx: the query API's shared state — the store (opened lazily: the API may start
 * before the projector created it), fixed responses, request counters — and the
 * per-thread read transaction and buffer every handler uses. */
#ifndef RM_HTTP_CTX_H
#define RM_HTTP_CTX_H

#include "app.h"
#include "buf.h"
#include "http_cursor.h"
#include "http_routes.h"
#include "metrics.h"
#include "store.h"

#include <microhttpd.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>
#include <stdint.h>

/* Most consistency waiters query_api.consistency_max_waiters allows (cfg.c). */
#define HTTP_MAX_WAITERS 256

/* Status codes counted per route (index into hs_requests). */
#define HTTP_STATUS_SLOTS 12
extern const unsigned http_status_codes[HTTP_STATUS_SLOTS];

typedef struct http_stats {
    uint64_t hs_requests[HTTP_ROUTE__COUNT][HTTP_STATUS_SLOTS]; /* atomics */
    uint64_t hs_latency_buckets[HTTP_ROUTE__COUNT][METRICS_MAX_BUCKETS + 1];
    uint64_t hs_latency_ns_sum[HTTP_ROUTE__COUNT];
} http_stats_t;

/* One opened generation of the view store (gen.h), shared by the worker threads.
 * Handover on a switch (docs/design.md "Store generations"): the watcher thread opens
 * the new generation and makes it hc_gen; a request that starts afterwards moves its
 * thread's read txn over; a request in flight finishes in the old one. The old
 * environment is closed when its last reference goes: hc_gen's own, plus one per
 * thread whose (reset or running) read txn lives in it. LMDB requires every txn of an
 * env to be gone before mdb_env_close; with MDB_NOTLS a reset txn may be aborted by
 * another thread, so the watcher aborts those of idle threads (under the thread's
 * ht_lock) instead of waiting for their next request. */
typedef struct http_gen {
    store_t *hg_store;
    int64_t hg_id;        /* generation number; 0 for a flat (not yet migrated) store;
                             atomic: relabelled in place by a migration */
    char hg_dir[4096];    /* watcher thread only */
    dev_t hg_dev;         /* data.mdb's identity: a migration renames the same file */
    ino_t hg_ino;
    int hg_refs;          /* guarded by hc_store_lock */
} http_gen_t;

struct http_tls;

typedef struct http_ctx {
    app_t *hc_app;
    pthread_mutex_t hc_store_lock; /* guards the hc_gen swap, every hg_refs, hc_threads */
    http_gen_t *hc_gen;            /* NULL until a store opens (atomic loads) */
    struct http_tls *hc_threads;   /* every worker's state, for the idle sweep */
    pthread_t hc_watcher;
    bool hc_watcher_running;
    int hc_stop;                   /* atomic: the watcher exits */
    const char *hc_store_error;    /* atomic: why no store is served, a static string naming
                                      no path (http_store_error) */
    struct MHD_Response *hc_healthz;   /* created once, reused (docs/architecture.md §8) */
    struct MHD_Response *hc_not_found;
    struct MHD_Response *hc_dashboard;
    struct MHD_Response *hc_ui; /* the agent screen page (ui.html) */
    struct http_history *hc_history; /* the dashboard's last 15 minutes (http_history.h) */
    struct MHD_Response *hc_openapi;
    http_stats_t hc_stats;
    int64_t hc_waiters;            /* requests in a consistency wait (under hc_waiter_lock;
                                      atomic loads for /metrics; http_fresh.c) */
    pthread_mutex_t hc_waiter_lock;
    uint64_t hc_waiting[HTTP_MAX_WAITERS]; /* hashes of the principals waiting; 0: free */
    struct http_logend *hc_logend; /* partition log ends from Kafka (http_logend.h) */
    /* Security (http_auth.c): set up before the daemon starts, immutable after. */
    struct auth *hc_auth;
    struct rl *hc_ip_limit;        /* NULL: no per-IP limit */
    struct rl *hc_principal_limit; /* NULL: no per-principal limit */
    struct audit *hc_audit;
    const char *hc_section_names[33]; /* the view's section names, NULL-terminated (audit) */
    size_t hc_max_url_bytes;
    int64_t hc_consistency_wait_ms; /* query_api.consistency_wait_ms, read once */
    size_t hc_max_header_bytes;
    uint64_t hc_request_seq;       /* atomic: generated request ids */
    uint32_t hc_request_salt;      /* random per process: ids differ between runs */
    uint64_t hc_audit_failures;    /* atomic: audit lines that could not be written */
    struct http_live *hc_live;     /* live sections (http_live.h); fixed while serving */
    http_cursor_keys_t hc_cursor_keys; /* seal page cursors (http_cursor.h); fixed while serving */
    struct https *hc_https; /* TLS (https.h); NULL: plain HTTP */
} http_ctx_t;

/* The offsets scan of one read snapshot, free of the clock (http_fresh.c): what a view
 * answer's lag is derived from as of any now. Valid for lm_txn_id in the generation the
 * thread's txn lives in; cleared whenever the thread leaves that generation. */
typedef struct http_lag_memo {
    bool lm_valid;
    size_t lm_txn_id; /* mdb_txn_id of the snapshot scanned */
    size_t lm_partitions;
    int64_t lm_messages;
    int64_t lm_newest_commit_ms;
    int64_t lm_oldest_behind_ms; /* oldest last event time of a partition that is
                                    behind; INT64_MAX: none is */
    int64_t lm_topic_messages[VIEW_MAX_TOPICS];
    int64_t lm_topic_oldest_ms[VIEW_MAX_TOPICS];
} http_lag_memo_t;

/* Per worker thread: a read txn reused with reset/renew, and the response buffer. */
typedef struct http_tls {
    pthread_mutex_t ht_lock; /* held by the thread from http_txn to http_txn_done */
    bool ht_active; /* between http_txn and http_txn_done (own thread only) */
    http_gen_t *ht_gen; /* the generation ht_txn lives in; holds a reference */
    MDB_txn *ht_txn;
    buf_t ht_body;
    http_lag_memo_t ht_lag_memo; /* under ht_lock, like ht_txn */
    http_ctx_t *ht_ctx;
    struct http_tls *ht_next; /* in hc_threads */
} http_tls_t;

/* Opens the current generation now (start-up) and starts the watcher thread that
 * follows "current" every HTTP_REOPEN_MS. Returns 0 or an rm_err_t. */
int http_store_start(http_ctx_t *ctx);
/* Stops the watcher and closes the store. After MHD_stop_daemon (workers joined). */
void http_store_stop(http_ctx_t *ctx);

/* Why no store is served yet, for answers anyone may read: a fixed phrase that names no
 * path (the log has the details). Any thread. */
const char *http_store_error(http_ctx_t *ctx);

/* A read txn for this thread in the current generation, and its store; both valid
 * until http_txn_done() on this thread, which must follow every success. Returns
 * RM_ENOTFOUND while no store is open (the reason is http_store_error). HTTP worker
 * threads. */
int http_txn(http_ctx_t *ctx, store_t **ret_store, MDB_txn **ret_txn);
/* The generation of this thread's txn (between http_txn and http_txn_done). */
int64_t http_txn_generation(void);
void http_txn_done(void);
/* The generation being served, or -1 when none is open. Any thread. */
int64_t http_generation(http_ctx_t *ctx);
/* This thread's response buffer, emptied. */
buf_t *http_body(void);
/* This thread's lag memo (see http_lag_memo_t), between http_txn and http_txn_done; NULL
 * outside them. */
http_lag_memo_t *http_lag_memo(void);

/* Upper bounds of the latency histogram (seconds). */
extern const double http_latency_bounds[];
extern const size_t http_latency_bucket_count;

#endif
