/* source: a source service's answer, reshaped into the view's own terms.
 *
 * The view definition's `sources:` (view.h, view_source_t) says where a section's
 * system of record lives and which member holds each field. This module builds the
 * URLs and maps records into objects keyed by view field names with view types
 * (timestamps as epoch ms: ISO 8601 strings are converted), so that compare.c can
 * compare like with like. A mapped record also carries two members no view field
 * can be named ("@" is not allowed in names): "@updated_at" (epoch ms, when the
 * source says it last changed the record; absent if unknown) and "@item" (list
 * sections: the item id as a string).
 *
 * Pure functions over jansson values; any thread. */
#ifndef RC_SOURCE_H
#define RC_SOURCE_H

#include "remote.h" /* remote_base_url, remote_member, remote_parse_time */
#include "view.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define SOURCE_UPDATED "@updated_at"
#define SOURCE_ITEM "@item"

/* The URL of page (1 = the first; 0: none) of key's record: base + path with {key}
 * URL-escaped, plus "<page_param>=<page>" for pages after the first. Returns 0 or
 * RM_EINVAL (does not fit). */
int source_url(const view_source_t *src, const char *base, const char *key, long page, char *out,
               size_t cap);

/* Maps one record (a JSON object) to the view's fields. Returns a new reference. */
json_t *source_map_record(const view_t *view, const view_source_t *src, json_t *record);

/* A list page: its items (borrowed) and the next page — a page number (> 0) or a URL
 * (borrowed), neither when this is the last page. Returns 0 or RM_EINVAL (not the
 * shape the definition declares). */
int source_page(const view_source_t *src, json_t *answer, json_t **ret_items, long *ret_next_page,
                const char **ret_next_url);

#endif
