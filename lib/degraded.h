/* degraded: entities whose events were dead-lettered, so an agent never sees a silently
 * wrong customer.
 *
 * When the pipeline dead-letters a message, degraded_mark() resolves its Kafka message
 * key to a view key — the key itself when the store has that view key, or through any of
 * the view's links (an order id reaches its customer) — and records, in the same
 * transaction, which event is missing and why. The renderer lists the marks of a key in
 * the document's "degraded" array (render.h). A message key that resolves to nothing
 * (a payment id, an unknown customer) marks nothing: there is no entity to warn about.
 * Arrival order does not matter: when the key resolves to nothing yet, the mark waits
 * under the view's links (degraded_mark_wait) and is applied in the transaction that
 * learns the link, as parked events are; one that never finds its link is dropped with
 * the parked events' link-timeout.
 *
 * Marks are cleared by readmodel.DeadLetterHandled events, which `projector dlq replay`
 * and `dlq purge` publish to the view's repairs topic for every letter they handle; the
 * engine applies them like any event (one writer). Erasure removes the marks with the rest
 * of the key.
 *
 * Layout (store.h): doc "view_key \0 \xfe \0 topic \0 partition(be32) offset(be64)" ->
 * JSON {"topic","partition","offset","error","reason","timestamp"}; meta
 * "degraded/<topic>/<partition>/<offset>" -> view_key, to find the mark again (empty
 * while the mark waits for its link); a waiting mark: meta
 * "degraded-wait/" link \0 id \0 topic \0 partition(be32) offset(be64) ->
 * i64 parked_at_ms | i64 timestamp_ms | error \0 reason.
 * Thread: the store's writer thread (mark, clear); render reads on any thread. */
#ifndef RM_DEGRADED_H
#define RM_DEGRADED_H

#include "store.h"
#include "view.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DEGRADED_SECTION "\xfe" /* sorts after section names, before versions ("\xff") */

typedef struct degraded_event {
    const char *de_topic;
    int32_t de_partition;
    int64_t de_offset;
    int64_t de_timestamp_ms;
    const void *de_key;    /* the Kafka message key; may be NULL */
    size_t de_key_len;
    const char *de_error;  /* error class ("schema", "decode", "link-timeout", ...) */
    const char *de_reason; /* short reason, never payload bytes */
} degraded_event_t;

/* Marks the entity the message key resolves to. *ret_marked says whether it resolved.
 * Returns 0 or a store error (then abort the txn and retry the batch). */
int degraded_mark(const view_t *view, store_t *store, MDB_txn *txn, const degraded_event_t *ev,
                  bool *ret_marked);

/* For a mark degraded_mark could not resolve: its key may name an entity through a link
 * not known yet (an order's dead letter read before the order). The mark then waits under
 * each of the view's links for the key, parked_at_ms being the wall clock now, and is
 * applied by degraded_link_learned. A key no link can hold is ignored. Returns 0 or a
 * store error. */
int degraded_mark_wait(const view_t *view, store_t *store, MDB_txn *txn, const degraded_event_t *ev,
                       int64_t parked_at_ms);

/* Link `link` now maps id to a view key (engine.c, in the transaction that learned it):
 * applies the marks waiting for it, unless their dead letter was handled meanwhile or
 * the mark was applied through another link. Returns 0 or a store error. */
int degraded_link_learned(const view_t *view, store_t *store, MDB_txn *txn, const char *link,
                          const char *id, size_t id_len);

/* Drops the marks that have waited since before cutoff_ms (the parked events'
 * link-timeout; their dead letters exist already), counting them in *ret_dropped.
 * Returns 0 or a store error. */
int degraded_expire_waiting(store_t *store, MDB_txn *txn, int64_t cutoff_ms, size_t *ret_dropped);

/* Removes the mark of the dead letter at (topic, partition, offset), if any.
 * Returns 0 or a store error. */
int degraded_clear(store_t *store, MDB_txn *txn, const char *topic, int32_t partition,
                   int64_t offset, bool *ret_cleared);

#endif
