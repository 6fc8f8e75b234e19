/* http_live: live sections of a view answer — fetched from their service at request time,
 * within the section's deadline, behind a circuit breaker per section (docs/query-api.md,
 * "Live sections").
 *
 * Notes on the design:
 * (1) A failure is an answer, not an error: whatever goes wrong (no URL configured, breaker
 *     open, refused, timeout, an HTTP error, an answer that is not the declared shape), the
 *     section is null with freshness {"mode":"unavailable","reason":R} and the rest of the
 *     document is served with 200. R is one of a fixed set of short tokens (below), so it
 *     never carries what the service said.
 * (2) The fetch runs on the HTTP worker that serves the request, with one curl multi
 *     handle per worker thread: its connection cache keeps connections to the service
 *     alive between requests, and the live sections of one request are fetched in
 *     parallel. CURLOPT_TIMEOUT_MS bounds each whole transfer (name lookup, connect,
 *     request, body) by the section's deadline_ms, and the wait loop is bounded by the same
 *     deadline, so a request never waits longer than its slowest live section's deadline.
 * (3) While a worker fetches, its other connections wait: the deadline and the breaker keep
 *     that short; a client that does not need a live section leaves it out with ?fields=.
 * (4) Only keys with a stored document are fetched (render_exists first): an unknown key
 *     answers 404 without calling the service. A request that would call no service (its
 *     live sections are all "not configured") skips that check — the render that follows
 *     finds the document anyway, and the extra B-tree descent was ~5% of a read's CPU —
 *     and its outcomes are counted by http_live_served once the document was served, so
 *     the metrics still count only reads of stored documents.
 * (5) Every outcome of a call counts for the breaker except "circuit open" (no call) and
 *     "not configured" (no service): a 404 from the service is a success (it knows
 *     nothing of the key: [] or null, mode live).
 *
 * Reasons: "not configured", "circuit open", "timeout", "refused", "http NNN",
 * "bad response", "error" (any other transfer failure). */
#ifndef RM_HTTP_LIVE_H
#define RM_HTTP_LIVE_H

#include "buf.h"
#include "cfg.h"
#include "render.h"
#include "store.h"
#include "view.h"

#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct http_live http_live_t;

#define HTTP_LIVE_REASON_MAX 32

/* The outcome of one live section for one request. */
typedef struct http_live_answer {
    bool la_fetched;        /* the section was selected and an outcome is known */
    bool la_available;
    int64_t la_fetched_ms;  /* wall clock when the answer arrived */
    char la_reason[HTTP_LIVE_REASON_MAX]; /* unavailable: why (see above) */
    size_t la_value_off;    /* available: the mapped JSON in the thread's value buffer */
    size_t la_value_len;
} http_live_answer_t;

/* The live sections of one request. Borrows the thread's buffers: valid until the next
 * http_live_fetch on the same thread. */
typedef struct http_live_result {
    const buf_t *lr_values;
    uint32_t lr_unavailable; /* bit s: live section s is unavailable */
    uint32_t lr_uncounted;   /* bit s: its "not configured" outcome is not counted yet (note 4) */
    http_live_answer_t lr_answers[FRAG_MAX_SLOTS]; /* by section index */
} http_live_result_t;

/* Reads query_api.live_urls and the breaker settings for view's live sections (view and
 * cfg must outlive it). Call before the HTTP workers start (it initialises libcurl).
 * Returns NULL with "query_api.live_urls: ..." in errstr when the setting is malformed.
 * A live section whose service has no URL is logged once (warning) and always answers
 * "not configured". */
http_live_t *http_live_new(const view_t *view, const cfg_t *cfg, char *errstr, size_t errlen);
/* After the HTTP workers have stopped. NULL-safe. */
void http_live_destroy(http_live_t *live);

/* Fetches the live sections selected in shape (sh_sections) for key, unless key has no
 * document in txn, maps each answer through shape's field allowlist and PII masks
 * (sh_fields, sh_mask_pii: set them first), and points shape's live emitter (render.h) at
 * *ret_result, so that the render that follows places them; the emitter marks each
 * fetched_at volatile (render.h render_spans_t). Never fails: failures are answers
 * (note 1). live may be NULL (no live sections are served then). HTTP worker threads. */
void http_live_fetch(http_live_t *live, store_t *store, MDB_txn *txn, const char *key,
                     size_t key_len, render_shape_t *shape, http_live_result_t *ret_result);

/* The document of result's request was served (200 or 304): counts the outcomes left
 * uncounted by http_live_fetch (note 4). live may be NULL. HTTP worker threads. */
void http_live_served(http_live_t *live, const http_live_result_t *result);

/* Adds X-Readmodel-Unavailable: <section>[,<section>...] when a live section was
 * unavailable. resp may be NULL. */
void http_live_add_headers(const http_live_t *live, const http_live_result_t *result,
                           struct MHD_Response *resp);

/* Appends the live metrics (Prometheus text): fetch latency histogram, outcomes by reason,
 * breaker state. Any thread. Returns 0 or an rm_err_t. */
int http_live_metrics(http_live_t *live, buf_t *out);

#endif
