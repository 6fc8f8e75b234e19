/* mask: how a PII field is shown to a caller without the pii entitlement.
 *
 * The masks keep just enough for an agent to confirm an identity with the customer on the
 * phone ("the number ending 5678?") and nothing that identifies them on its own. Their
 * output has a fixed prefix, so it does not reveal the length of what it hides. Pure
 * functions; any thread. */
#ifndef RM_MASK_H
#define RM_MASK_H

#include "buf.h"
#include "view.h"

#include <stddef.h>

/* Appends the JSON string (quoted, escaped) of value (len bytes, UTF-8) masked by mask:
 *   VIEW_MASK_REDACT    "***"
 *   VIEW_MASK_LAST4     "***" + the last 4 digits ("+44 20 7946 0018" -> "***0018");
 *                       fewer than 4 digits: "***"
 *   VIEW_MASK_EMAIL     first character + "***@" + domain ("ada@x.org" -> "a***@x.org");
 *                       no '@' or nothing before it: "***"
 *   VIEW_MASK_INITIALS  first character of each word, each followed by '.', separated by
 *                       spaces ("Ada King Lovelace" -> "A. K. L."); at most 8 initials
 * A "character" is one UTF-8 sequence, so a multi-byte letter is never cut. Returns 0 or
 * RM_ENOMEM. */
int mask_append_json(view_mask_t mask, const char *value, size_t len, buf_t *out);

#endif
