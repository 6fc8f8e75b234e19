/* http_etag: entity tags of view responses and If-None-Match matching (RFC 9110 §8.8.3,
 * §13.1.2). Pure functions, any thread (tests/unit/test-http-etag.c).
 *
 * A view document's tag is weak (RFC 9110 §8.8.1): two answers with one tag say the same
 * about the entity — the same sections, live ones included, the same provenance, marks and
 * page cursors — but may differ in the figures that move on every read while the entity
 * does not (lag, a live section's fetch time: render.h render_spans_t). Those are left out
 * of the hash, so a client polling an unchanged customer gets 304s, and the headers of
 * each 304 carry the current lag. docs/query-api.md, Caching, is the reference. */
#ifndef RM_HTTP_ETAG_H
#define RM_HTTP_ETAG_H

#include "render.h"

#include <stdbool.h>
#include <stddef.h>

#define HTTP_ETAG_CHARS 21 /* W/ '"' + 16 hex digits + '"' + NUL */

/* Writes the weak entity tag of body (len bytes) without the ranges in skip (NULL: none;
 * one that overflowed: none left out) — XXH3-64 of the remaining bytes in order, as
 * W/"16 hex digits" — into out (HTTP_ETAG_CHARS bytes). Bodies equal outside their
 * skipped ranges give equal tags; a change of any other byte changes the tag (barring a
 * 2^-64 collision, acceptable for a cache validator: the worst case is one stale 304). */
void http_etag_of(const void *body, size_t len, const render_spans_t *skip,
                  char out[HTTP_ETAG_CHARS]);

/* True when the If-None-Match field value if_none_match matches etag: "*", or a
 * comma-separated list holding etag under the weak comparison (a W/ prefix on either side
 * is ignored), as RFC 9110 prescribes for If-None-Match. A malformed list never matches
 * (the full response is the safe answer). */
bool http_etag_matches(const char *if_none_match, const char *etag);

#endif
