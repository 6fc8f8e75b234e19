/* remote: addressing the services a view names (reconcile's sources, the query API's live
 * sections) — base URLs from a "name=URL,..." setting, path templates with the view key,
 * and the ISO 8601 times such services answer with.
 *
 * Pure functions; any thread. */
#ifndef RM_REMOTE_H
#define RM_REMOTE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* Longest URL built from a base and a template (URLs past this are refused, not cut). */
#define REMOTE_URL_MAX_BYTES 2048

/* Parses "name=URL,name=URL" and finds service's base URL. Returns 0 and the URL (without
 * trailing '/') in out, RM_ENOTFOUND when service has none, or RM_EINVAL when the list is
 * malformed or the URL does not fit in cap. */
int remote_base_url(const char *urls, const char *service, char *out, size_t cap);

/* Checks that every entry of "name=URL,..." has a name and an http:// or https:// URL.
 * Returns 0, or RM_EINVAL with the offending entry (cut to fit) in bad. */
int remote_check_urls(const char *urls, char *bad, size_t bad_cap);

/* base + path_template with its "{key}" replaced by key (key_len bytes) percent-escaped
 * as one path segment: everything but letters, digits, '-', '_' and '~' (RFC 3986's
 * unreserved characters less '.', so that no key is a "." or ".." segment). Returns the length
 * written to out (NUL-terminated), or 0 when it does not fit in cap or the template has no {key}.
 */
size_t remote_url(const char *base, const char *path_template, const char *key, size_t key_len,
                  char *out, size_t cap);

/* The member of object at a dotted path ("total.cents"), or NULL. Borrowed. */
json_t *remote_member(json_t *object, const char *path);

/* ISO 8601 date-time ("2026-12-01T20:00:00.123Z", "+01:00" offsets, no fraction) to epoch
 * ms. A time without a zone is refused (ambiguous). Returns 0 or RM_EINVAL. */
int remote_parse_time(const char *text, int64_t *ret_ms);

#endif
