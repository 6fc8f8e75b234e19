/* index: secondary lookups declared in a view definition (`indexes:`).
 *
 * Two kinds:
 *   field index  {section: profile, field: email, normalize: lowercase}
 *                maintained by the engine in the same transaction as the fragment:
 *                db `idx` holds "name \0 normalized_value \0 view_key" -> "" (composite
 *                keys, not MDB_DUPSORT — docs/architecture.md §1). Single sections only.
 *   link index   {link: order} — answered from the link table the engine keeps anyway.
 * Normalisation is declared, never hard-coded per field:
 *   none       the value as is
 *   lowercase  ASCII letters lowered, surrounding blanks removed (emails)
 *   e164       '+' then 8..15 digits; spaces, dots, dashes and parentheses dropped,
 *              a leading "00" read as '+'; anything else is not indexed (phones)
 * Pure functions and read-only lookups; any thread with its own txn. */
#ifndef RM_INDEX_H
#define RM_INDEX_H

#include "store.h"
#include "view.h"

#include <stddef.h>

#define INDEX_VALUE_MAX_BYTES 128

/* Normalises value (len bytes) per norm into out (cap >= INDEX_VALUE_MAX_BYTES + 1,
 * NUL-terminated). Returns the length, or -1 when the value cannot be indexed. */
int index_normalize(view_norm_t norm, const char *value, size_t len, char *out, size_t cap);

/* Builds the idx key "name \0 value \0 view_key" into out (cap >= 512). Returns the
 * length or 0 when too long. view_key may be NULL/0 for the lookup prefix. */
size_t index_key(char *out, size_t cap, const char *name, const char *value, size_t value_len,
                 const char *view_key, size_t view_key_len);

/* Calls cb with every view key the index maps value to (raw value; normalised here),
 * at most limit keys. Returns 0, RM_ENOTFOUND for an unknown index name, RM_EINVAL for
 * a value that cannot be normalised, or a store error. Keys are borrowed (valid until
 * the txn ends). A non-zero return of cb stops the walk and is returned. */
typedef int (*index_cb)(void *ctx, const char *view_key, size_t view_key_len);
int index_lookup(const view_t *view, store_t *store, MDB_txn *txn, const char *name,
                 const char *value, size_t value_len, size_t limit, index_cb cb, void *ctx);

#endif
