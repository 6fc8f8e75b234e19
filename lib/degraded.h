/* degraded: entities whose events were dead-lettered, so an agent never sees a silently
 * wrong customer.
 *
 * When the pipeline dead-letters a message, degraded_mark() resolves its Kafka message
 * key to a view key — the key itself when the store has that view key, or through any of
 * the view's links (an order id reaches its customer) — and records, in the same
 * transaction, which event is missing and why. The renderer lists the marks of a key in
 * the document's "degraded" array (render.h). A message key that resolves to nothing
 * (a payment id, an unknown customer) marks nothing: there is no entity to warn about.
 *
 * Marks are cleared by readmodel.DeadLetterHandled events, which `projector dlq replay`
 * and `dlq purge` publish to the view's repairs topic for every letter they handle; the
 * engine applies them like any event (one writer). Erasure removes the marks with the rest
 * of the key.
 *
 * Layout (store.h): doc "view_key \0 \xfe \0 topic \0 partition(be32) offset(be64)" ->
 * JSON {"topic","partition","offset","error","reason","timestamp"}; meta
 * "degraded/<topic>/<partition>/<offset>" -> view_key, to find the mark again.
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

/* Removes the mark of the dead letter at (topic, partition, offset), if any.
 * Returns 0 or a store error. */
int degraded_clear(store_t *store, MDB_txn *txn, const char *topic, int32_t partition,
                   int64_t offset, bool *ret_cleared);

#endif
