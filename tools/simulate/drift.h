/* drift: differences between the systems of record and the view, injected on purpose so
 * that the reconciler's tests know the exact answer.
 *
 * Kinds (all deterministic from the seed; each drift item has a customer of its own, so
 * items never interact — e.g. a pending change never hides an unpublished one):
 * (1) unapplied: events published but never applied — the producer sends them as poison
 *     (an unregistered schema id) that the projector dead-letters. The truth has them,
 *     the store oracle (--oracle) does not. Only events nothing later depends on are
 *     withheld (CustomerContactUpdated, OrderCancelled, PaymentFailed, ShipmentDelayed,
 *     LoyaltyTierChanged, ReturnOpened), and only when the view visibly differs without
 *     them (the two oracles are compared; otherwise another event is picked).
 * (2) unpublished: a field changed in the source and never published; the record's
 *     updated_at stays the stream's time, so it is real drift.
 * (3) diverge: a list item whose source value differs from what its event carried.
 * (4) pending: a source-only change made "just now": the record's updated_at is the wall
 *     clock when serving starts, newer than anything the store has for it.
 *
 * The manifest (drift_write_manifest) has one JSON line per differing field:
 *   {"kind","key","section","item","field","store","source","event"}
 * in view names and types; an unapplied event that changed several fields, or added a
 * whole list item (field null, the item as value), has one line for each.
 * Not thread-safe; used before serving starts. */
#ifndef SIM_DRIFT_H
#define SIM_DRIFT_H

#include "model.h"
#include "producer.h"
#include "truth.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct drift_opts {
    uint32_t do_unpublished;
    uint32_t do_unapplied;
    uint32_t do_diverge;
    uint32_t do_pending;
} drift_opts_t;

/* One withheld (unapplied) event and where its poison landed. */
typedef struct drift_event {
    size_t de_index; /* model event index */
    const char *de_topic; /* set by the producing code (borrowed, static lifetime) */
    kprod_ack_t de_ack; /* filled by the delivery report; ka_offset -1 when not produced */
} drift_event_t;

typedef struct drift drift_t;

/* Picks the unapplied events of model (model_set_start() called; it must outlive the
 * drift). Returns NULL with errstr set when there are not enough suitable events or
 * customers, or when out of memory. */
drift_t *drift_new(const model_t *model, const drift_opts_t *opts, char *errstr, size_t errlen);
void drift_destroy(drift_t *drift);

/* Flags per model event: true for the withheld ones. Borrowed, valid until destroy. */
const bool *drift_withheld(const drift_t *drift);
size_t drift_unapplied_count(const drift_t *drift);
/* The i-th unapplied event, i < drift_unapplied_count(); mutable so that the producing
 * code can record its topic and acknowledgement. */
drift_event_t *drift_unapplied(drift_t *drift, size_t i);
/* The unapplied event whose model event index is index, or NULL when it is not withheld. */
drift_event_t *drift_find(drift_t *drift, size_t index);

/* Makes the unpublished, diverging and pending changes in truth's documents (a truth
 * built with drift_withheld(); it must outlive the drift). Returns 0, RM_ENOMEM, or
 * RM_ENOTFOUND with errstr set when no customer is left for an item. */
int drift_apply(drift_t *drift, truth_t *truth, char *errstr, size_t errlen);
/* Stamps the pending records with updated_at = pending_at_ms ("just now": call it when
 * serving starts), raised past the stream's last event time if need be. */
void drift_stamp_pending(drift_t *drift, int64_t pending_at_ms);

/* Writes the manifest (see above). Returns 0, RM_ENOMEM or RM_EIO. */
int drift_write_manifest(const drift_t *drift, FILE *out);

/* The items of the manifest so far, one per line (borrowed array of objects). */
const json_t *drift_entries(const drift_t *drift);

#endif
