/* storediff: compare two stores of one view — the live store and a replay's scratch
 * store (reconcile diff-replay) — and report every visible difference.
 *
 * Notes on the design:
 * (1) A merge join: the `doc`, `link`, `idx` and `erased` databases of both stores are
 *     walked side by side in key order (LMDB's default byte order), so memory stays
 *     constant and each store is read once, sequentially, whatever its size.
 * (2) What is compared is what a reader sees: the rendered JSON of each fragment
 *     (frag.h), section by section, item by item, field by field. Equal JSON bytes end
 *     the comparison of a fragment at once; only fragments that differ are parsed
 *     (jansson), to name the differing fields. An absent counters fragment renders as
 *     zeros (render.h), so it equals a stored all-zero one.
 * (3) Provenance is not compared: field stamps, the fragment header (topic, partition,
 *     offset, event time of the newest event applied), the per-key freshness marks of
 *     removed items and the per-entity version records. They describe *how* a value
 *     was reached; a replay batches differently from the live projector, and the
 *     engine guarantees only that the values converge (docs/design.md §3). A lost
 *     application that changed no visible value (it was superseded) is therefore not
 *     reported — by design: there is nothing to repair.
 * (4) Links, secondary index entries and erasures are compared too (an OrderCreated
 *     that was never applied loses a link, and every later event of that order is
 *     parked instead of applied). They are reported on the pseudo-sections "_links"
 *     (item "link:foreign_id"), "_indexes" (item "index:normalized_value") and
 *     "_erased". Parked events (`pending`) are not compared: they are not visible, and
 *     the live projector may have expired some that a replay keeps.
 *
 * Findings are class REPORT_DRIFT; rf_store is the live value, rf_other the replay's;
 * reason "value", "missing-in-store" (only the replay has it) or "missing-in-replay".
 *
 * Thread: any one thread; the caller owns both read transactions. */
#ifndef RC_STOREDIFF_H
#define RC_STOREDIFF_H

#include "report.h"
#include "store.h"
#include "view.h"

#include <stddef.h>
#include <stdint.h>

#define STOREDIFF_LINKS "_links"
#define STOREDIFF_INDEXES "_indexes"
#define STOREDIFF_ERASED "_erased"

typedef struct storediff_stats {
    uint64_t sds_keys;      /* view keys with a document in either store */
    uint64_t sds_fragments; /* fragments compared (the union of both stores) */
    uint64_t sds_entries;   /* link, index and erasure entries compared */
    uint64_t sds_findings;
} storediff_stats_t;

/* Compares the store read through live_txn with the one read through other_txn (both
 * built by view) and adds every difference to report, counting each compared key
 * (report_checked(NULL)) and each (key, section) pair. Returns 0 — findings or not —
 * or a store error (RM_ESTORE for a corrupt fragment, with its key in errstr), or
 * RM_EIO when the report cannot be written. ret_stats is written on success. */
int storediff_run(const view_t *view, store_t *live, MDB_txn *live_txn, store_t *other,
                  MDB_txn *other_txn, report_t *report, storediff_stats_t *ret_stats, char *errstr,
                  size_t errlen);

#endif
