/* http_params: pure parsers for the view endpoint's query parameters — the fields list,
 * page cursors, consistency tokens and bounded integers. No sockets and no store, so
 * every malformed input is a unit test (tests/unit/test-http-params.c). Inputs are
 * already percent-decoded (http_query_decode). All functions are thread-safe. */
#ifndef RM_HTTP_PARAMS_H
#define RM_HTTP_PARAMS_H

#include "render.h"
#include "view.h"

#include <stddef.h>
#include <stdint.h>

/* Most topic/partition/offset tokens one request may carry: a client tracks the offsets
 * of the writes it made since its last read, a handful; 64 keeps the wait loop's work per
 * poll (one offsets get each) well under a millisecond. */
#define HTTP_MIN_OFFSETS_MAX 64
/* base64url of a cursor: a version byte, 8 bytes of sort key and up to 128 of item id. */
#define HTTP_CURSOR_MAX_CHARS 184

/* One consistency token "topic:partition:offset": the request wants the store to have
 * applied offset (its next offset > offset) of that partition. */
typedef struct http_min_offset {
    char mo_topic[VIEW_NAME_MAX_BYTES + 1];
    int32_t mo_partition;
    int64_t mo_offset;
} http_min_offset_t;

/* Parses a non-negative decimal integer (digits only, no sign or spaces) no greater than
 * max. Returns 0 and *ret_value, or RM_EINVAL. */
int http_params_uint(const char *text, int64_t max, int64_t *ret_value);

/* Parses a comma-separated list of view's section names ("profile,orders") into a mask
 * (bit s: section s). Returns 0, or RM_EINVAL for an empty list or an empty name, or
 * RM_ENOTFOUND for a name that is not a section of view; then the offending name is
 * copied (truncated, NUL-terminated) to bad, which may be NULL. */
int http_params_fields(const view_t *view, const char *text, uint32_t *ret_mask, char *bad,
                       size_t bad_cap);

/* Writes cursor (rc_set) as unpadded base64url into out (cap >= HTTP_CURSOR_MAX_CHARS + 1,
 * NUL-terminated). Returns the length. */
size_t http_params_cursor_encode(const render_cursor_t *cursor, char *out, size_t cap);

/* Parses what http_params_cursor_encode wrote. Returns 0 and *ret_cursor (rc_set), or
 * RM_EINVAL for anything else: bad alphabet, padding, impossible length, unknown
 * version byte, an empty item id or one holding a NUL. */
int http_params_cursor_decode(const char *text, render_cursor_t *ret_cursor);

/* Parses consistency tokens "topic:partition:offset[,topic:partition:offset...]" (topic:
 * [A-Za-z0-9._-], at most VIEW_NAME_MAX_BYTES; partition 0..INT32_MAX; offset
 * 0..INT64_MAX) and appends them to tokens[*count..cap) — so a query parameter and a
 * header can be merged. A repeated topic/partition keeps the highest offset. Returns 0,
 * or RM_EINVAL (malformed, or more than cap tokens); *count is then unspecified. */
int http_params_min_offsets(const char *text, http_min_offset_t *tokens, size_t cap, size_t *count);

#endif
