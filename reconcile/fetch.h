/* fetch: polite concurrent HTTP GETs against source services (libcurl multi).
 *
 * The reconciler reads systems of record that serve production traffic, so this
 * module is built to protect them: at most `concurrency` requests in flight, at most
 * `rate_per_s` started per second (a token bucket), a hard per-request deadline,
 * and retries with exponential backoff and full jitter for answers that may succeed
 * later (no answer, timeout, 429, 5xx); other 4xx are final.
 *
 * Usage: fetch_get() queues a request; fetch_run() drives the transfers and calls
 * each request's callback exactly once, from fetch_run(), with the final answer
 * (callbacks may queue more requests). Thread: one thread. */
#ifndef RC_FETCH_H
#define RC_FETCH_H

#include <stddef.h>
#include <stdint.h>

typedef struct fetch fetch_t;

typedef struct fetch_opts {
    int fo_concurrency;   /* >= 1 */
    int fo_rate_per_s;    /* 0: unlimited */
    int fo_timeout_ms;    /* per attempt */
    int fo_retries;       /* extra attempts after the first */
    int fo_backoff_ms;    /* first backoff (doubles per retry, full jitter); 0: 100 */
} fetch_opts_t;

typedef struct fetch_result {
    long fr_status;         /* HTTP status of the final attempt; 0: no answer */
    const char *fr_body;    /* borrowed for the callback; NUL-terminated */
    size_t fr_len;
    const char *fr_error;   /* status 0: why ("timeout", curl's message) */
    int fr_attempts;
    int64_t fr_done_ms;     /* wall clock when the answer arrived */
} fetch_result_t;

typedef void (*fetch_cb)(void *ctx, const char *url, const fetch_result_t *result);

/* Returns NULL on failure (curl could not be initialised). */
fetch_t *fetch_new(const fetch_opts_t *opts);
void fetch_destroy(fetch_t *fetch);

/* Queues GET url (copied). Returns 0 or RM_ENOMEM. */
int fetch_get(fetch_t *fetch, const char *url, fetch_cb cb, void *ctx);

/* Runs until every queued request (including those queued by callbacks) finished.
 * Returns 0, or RM_EIO if curl failed as a whole. */
int fetch_run(fetch_t *fetch);

/* Counters for the summary. */
typedef struct fetch_stats {
    uint64_t fs_requests;  /* attempts started */
    uint64_t fs_retries;
    uint64_t fs_failed;    /* requests whose final answer was not 2xx/404 */
} fetch_stats_t;
fetch_stats_t fetch_stats(const fetch_t *fetch);

#endif
