/* http_etag: entity tags of view responses and If-None-Match matching (RFC 9110 §8.8.3,
 * §13.1.2). Pure functions, any thread (tests/unit/test-http-etag.c). */
#ifndef RM_HTTP_ETAG_H
#define RM_HTTP_ETAG_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_ETAG_CHARS 19 /* '"' + 16 hex digits + '"' + NUL */

/* Writes the strong entity tag of body (len bytes) — XXH3-64 of every byte, as 16 hex
 * digits in double quotes — into out (HTTP_ETAG_CHARS bytes). Equal bodies give equal
 * tags; a change of any byte changes the tag (barring a 2^-64 collision, acceptable for a
 * cache validator: the worst case is one stale 304). */
void http_etag_of(const void *body, size_t len, char out[HTTP_ETAG_CHARS]);

/* True when the If-None-Match field value if_none_match matches etag: "*", or a
 * comma-separated list holding etag under the weak comparison (a W/ prefix is ignored),
 * as RFC 9110 prescribes for If-None-Match. A malformed list never matches (the full
 * response is the safe answer). */
bool http_etag_matches(const char *if_none_match, const char *etag);

#endif
