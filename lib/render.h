/* render: assemble a view document as JSON from its stored fragments.
 *
 * One cursor scan over the key's prefix in `doc`; fragments are stored as ready
 * JSON (frag.h) and appended without re-parsing. Used by the query API, tests and
 * tools. Output shape (docs/api.md):
 *   {"view":"customer360","key":"C1",
 *    "sections":{"profile":{...}|null,"orders":[...],...,"counters":{...}},
 *    "freshness":{"<section>":{"mode":"projected","event_time":ms,"topic":"t",
 *                 "partition":p,"offset":o}|null, ...}}
 * Sections appear in definition order. List items are sorted by the section's
 * sort field, newest first, ties by item id ascending. Absent single sections are
 * null, absent lists [], absent counters all 0.
 *
 * Thread: any thread, with its own read txn and its own buffer. */
#ifndef RM_RENDER_H
#define RM_RENDER_H

#include "buf.h"
#include "store.h"
#include "view.h"

/* Appends the document of key to out. Returns 0, RM_ENOTFOUND when the key has no
 * fragment (never projected, or erased), RM_EINVAL for a key that cannot exist
 * (empty, too long, contains NUL), or a store error. On error out is unchanged. */
int render_view(const view_t *view, store_t *store, MDB_txn *txn, const char *key,
                size_t key_len, buf_t *out);

/* Appends only the "sections" object's value ({...}) — the part the oracle
 * describes. Same returns as render_view. */
int render_sections(const view_t *view, store_t *store, MDB_txn *txn, const char *key,
                    size_t key_len, buf_t *out);

/* Appends the JSON of one single section of key (e.g. the profile, as a lookup's
 * summary): its stored fragment, or null. Returns 0, RM_EINVAL when the section is not
 * a single section or the key cannot exist, or a store error. */
int render_single(const view_t *view, store_t *store, MDB_txn *txn, const char *key,
                  size_t key_len, int section, buf_t *out);

#endif
