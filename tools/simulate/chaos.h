/* chaos: the delivery faults a real Kafka estate adds to a clean stream, injected between
 * the model and the producer so that the oracle stays exact.
 *
 * (1) Duplicates: a share of messages is produced a second time, 1..256 messages later
 *     (a producer retry or an upstream replay: same bytes, same key, new offset). A copy
 *     is only ever scheduled once its original has been handed to the producer, so
 *     per-partition order stays one a real producer could write.
 * (2) Skew: messages of the skew topic (the one that carries links, "orders") are held
 *     back behind N messages of the other topics, in order, so that payments and
 *     shipments arrive before the order that links them to a customer. Kafka promises
 *     no order across topics, so every skew is a legal delivery.
 * (3) Poison: N malformed messages of every shape in poison.h, spread evenly over the
 *     stream, keyed like the event they follow; each one's partition and offset is
 *     recorded from its delivery report for the manifest (chaos_write_manifest).
 * None of this changes what the view must become: the oracle is untouched.
 * Not thread-safe; one chaos_t per producing thread. */
#ifndef SIM_CHAOS_H
#define SIM_CHAOS_H

#include "catalog.h"
#include "producer.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct chaos_opts {
    uint32_t co_duplicate_pct; /* 0..100: share of messages produced twice */
    uint32_t co_skew; /* hold the skew topic back behind this many messages (0: off) */
    const char *co_skew_topic; /* default "orders" */
    uint32_t co_poison; /* poison messages to inject (0: none) */
    size_t co_oversize_bytes; /* size of the oversized poison message */
} chaos_opts_t;

typedef struct chaos_counts {
    uint64_t cc_duplicates;
    uint64_t cc_held; /* messages that were held back by the skew */
    uint64_t cc_poison;
} chaos_counts_t;

typedef struct chaos chaos_t;

/* events: the number of stream messages that will pass (to spread the poison). Returns
 * NULL with errstr set on a bad option or when out of memory. */
chaos_t *chaos_new(const chaos_opts_t *opts, const catalog_t *catalog, uint64_t seed, size_t events,
                   char *errstr, size_t errlen);
void chaos_destroy(chaos_t *chaos);

/* Passes the index-th stream message (framed with entry's schema) through the chaos
 * stage to producer. Returns 0 or producer_send's error. */
int chaos_send(chaos_t *chaos, producer_t *producer, size_t index, const catalog_entry_t *entry,
               const char *key, size_t key_len, const void *value, size_t value_len);
/* Produces everything still held or scheduled. Call once, after the last chaos_send. */
int chaos_drain(chaos_t *chaos, producer_t *producer);

chaos_counts_t chaos_counts(const chaos_t *chaos);
/* After producer_flush: one JSON line per poison message, {"topic", "partition",
 * "offset", "shape", "key"}. Returns 0, or RM_EKAFKA if one was not delivered. */
int chaos_write_manifest(const chaos_t *chaos, FILE *out);

#endif
