/* http_query: what a view or lookup request asks — read from its query arguments and
 * headers through an http_values_t rather than a libmicrohttpd connection, so the same
 * code runs in the server and, without a socket, in tests/fuzz/fuzz_http.c. Nothing here
 * touches the store. docs/query-api.md is the reference for every parameter.
 *
 * Every function answers a malformed request with a problem response (the caller queues
 * and destroys it) and *ret_status, or NULL when the request may proceed. Thread-safe. */
#ifndef RM_HTTP_QUERY_H
#define RM_HTTP_QUERY_H

#include "http_cursor.h"
#include "http_params.h"
#include "http_routes.h"
#include "render.h"
#include "view.h"

#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>

/* Returns the raw value (as it arrived, not percent-decoded: http_server.c turns off
 * libmicrohttpd's unescaping) of the query argument (MHD_GET_ARGUMENT_KIND) or header
 * (MHD_HEADER_KIND) name, or NULL when absent. The value lives as long as the request. */
typedef const char *(*http_value_fn)(void *cls, enum MHD_ValueKind kind, const char *name);

/* Where a request's values come from. */
typedef struct http_values {
    http_value_fn hv_get;
    void *hv_cls;
} http_values_t;

/* The values of a libmicrohttpd connection (borrowed: valid while conn's request is). */
http_values_t http_values_of(struct MHD_Connection *conn);

/* What a view request's query string asks of the document. */
typedef struct http_view_query {
    render_shape_t vq_shape; /* fields and list pages; the caller's grants come later */
    bool vq_has_budget;
    int64_t vq_budget_ms; /* max_staleness_ms */
    http_min_offset_t vq_tokens[HTTP_MIN_OFFSETS_MAX]; /* min_offsets + the header, merged */
    size_t vq_token_count;
    int64_t vq_wait_ms; /* wait_ms, never above the configured bound */
} http_view_query_t;

/* Parses fields, <list>_limit, <list>_cursor, max_staleness_ms, min_offsets,
 * X-Readmodel-Min-Offsets and wait_ms of a GET /v1/views/{view}/{key} into *vq for view.
 * wait_bound_ms is query_api.consistency_wait_ms (a request may only lower it). Cursors
 * are opened in the scope cursors (http_cursor.h): the requested document. A malformed
 * value, a cursor not sealed for this document and section, or a token naming a topic the
 * view does not consume, is a 400. */
struct MHD_Response *http_query_view(const view_t *view, int64_t wait_bound_ms,
                                     const http_cursor_scope_t *cursors,
                                     const http_values_t *values, http_view_query_t *vq,
                                     unsigned *ret_status);

/* Finds the one index argument of a GET /v1/views/{view}?{index}=value and decodes its
 * value into decoded (NUL-terminated, no NUL inside). NULL with *ret_index and
 * *ret_len, or a 400 when no index or more than one is given, or the value is empty,
 * longer than HTTP_KEY_MAX_BYTES or badly percent-encoded. */
struct MHD_Response *http_query_lookup(const view_t *view, const http_values_t *values,
                                       const view_index_t **ret_index,
                                       char decoded[HTTP_KEY_MAX_BYTES + 1], size_t *ret_len,
                                       unsigned *ret_status);

#endif
