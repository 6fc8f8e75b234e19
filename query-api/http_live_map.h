/* http_live_map: a live service's answer, reshaped into the view's own terms.
 *
 * The view definition's `live:` entry (view.h, view_live_t) names the member of the
 * service's record that holds each field of the section. The answer is mapped to the
 * JSON the section would have if it were stored: an object with the section's fields in
 * definition order (single sections), or an array of such objects (list sections, at most
 * vs_max_items when set, in the service's order). Values are converted to the field's
 * type: timestamps from epoch ms or ISO 8601 strings, strings from strings (integers are
 * written in decimal); a missing or null member is the field's default, else null. Like a
 * stored section for the same caller, only the fields of its allowlist are written, and
 * PII fields are masked for a caller without the entitlement (mask.h).
 *
 * jansson parses the answer: the fetch it follows costs milliseconds over the network, so
 * the parse (microseconds for a few KB) is not what docs/architecture.md §8 keeps off the request
 * path. Pure; any thread. */
#ifndef RM_HTTP_LIVE_MAP_H
#define RM_HTTP_LIVE_MAP_H

#include "buf.h"
#include "view.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Appends the section's JSON mapped from the answer body (len bytes) to out, with the
 * fields whose bit is set in fields (bit f: field f of the section), and each PII field
 * whose bit is set in masked shown masked (render.h sh_fields; the caller derives masked
 * from sh_mask_pii and sh_pii_shown, so a live section is masked field by field exactly
 * as a stored one). A 404
 * answer is passed as body NULL: the service knows nothing of the key, which maps to []
 * (list) or null (single). Returns 0, or RM_EINVAL when the answer is not JSON or not the
 * shape the definition declares (out is then unchanged), or RM_ENOMEM. */
int http_live_map(const view_t *view, const view_live_t *live, uint32_t fields, uint32_t masked,
                  const char *body, size_t len, buf_t *out);

#endif
