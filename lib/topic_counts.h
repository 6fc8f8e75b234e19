/* topic_counts: per source topic, the parked events and the dead letters a store holds.
 *
 * Notes on the design:
 * (1) The counters live in the meta db ("topic_counts/<topic>", three native i64) and are
 *     changed in the same write transaction as the entry they count, so they are exactly
 *     as durable as the pending and outbox dbs: /v1/status reads O(topics) values instead
 *     of scanning hundreds of thousands of parked events on every poll.
 * (2) A store written before the counters existed has no "topic_counts_format" in meta.
 *     Until topic_counts_init has counted it once (by a scan, in the projector's first
 *     write transaction), topic_counts_add does nothing and topic_counts_foreach answers
 *     RM_ENOTFOUND, so a reader never shows a half-kept figure.
 * (3) Entries the scan cannot decode (written by a newer version) are not counted, and
 *     removing one does not decrement: counters and scan agree on what they see. */
#ifndef RM_TOPIC_COUNTS_H
#define RM_TOPIC_COUNTS_H

#include "store.h"

#include <lmdb.h>
#include <stddef.h>
#include <stdint.h>

typedef enum topic_counts_kind {
    TOPIC_COUNTS_PARKED = 0, /* events in the pending db, by their own topic */
    TOPIC_COUNTS_DEAD_LETTERS = 1, /* dead letters in the outbox, not yet published */
    /* dead letters recorded since the store was first counted (never decremented; a store
     * counted by topic_counts_init starts from what its outbox held) */
    TOPIC_COUNTS_RECORDED = 2,
    TOPIC_COUNTS_KINDS = 3,
} topic_counts_kind_t;

typedef struct topic_counts {
    int64_t tc_count[TOPIC_COUNTS_KINDS]; /* indexed by topic_counts_kind_t */
} topic_counts_t;

/* Adds delta to the kind counter of topic in the write txn; a no-op while the store is
 * not counted yet (note 2). 0 or a store error. */
int topic_counts_add(store_t *store, MDB_txn *txn, const char *topic, size_t topic_len,
                     topic_counts_kind_t kind, int64_t delta);

/* Counts the store by a scan of the pending and outbox dbs once, if it was never counted
 * (note 2); otherwise only reads one meta value. Pending values must already be in
 * format 2 (engine_txn_begin upgrades them first). 0 or a store error. */
int topic_counts_init(store_t *store, MDB_txn *txn);

/* Sets every topic's dead-letter counter from a scan of the outbox (after outbox_adopt
 * moved, dropped and copied entries wholesale); recorded totals are kept. A no-op while
 * the store is not counted. 0 or a store error. */
int topic_counts_recount_dead_letters(store_t *store, MDB_txn *txn);

/* cb gets each topic with its counts (topic is NUL-terminated, valid during the call).
 * A non-zero return from cb stops the walk and is returned. */
typedef int (*topic_counts_cb)(void *ctx, const char *topic, const topic_counts_t *counts);

/* The stored counters, by topic name. RM_ENOTFOUND when the store is not counted yet;
 * otherwise 0 or a store error. Any txn (read or write). */
int topic_counts_foreach(store_t *store, MDB_txn *txn, topic_counts_cb cb, void *ctx);

/* What the counters should be, by a full scan of the pending and outbox dbs (recorded
 * equals the dead letters held). For the one-time count, tools and tests: cost grows with
 * the parked events. 0, RM_ENOMEM or a store error. Any txn. */
int topic_counts_scan(store_t *store, MDB_txn *txn, topic_counts_cb cb, void *ctx);

#endif
