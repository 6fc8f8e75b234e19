/* outbox: dead letters recorded in the store, published to Kafka from there.
 *
 * Notes on the design:
 * (1) A rejected message is written to `outbox` in the SAME transaction that advances
 *     its partition's offset: a crash can neither lose the dead letter nor skip the
 *     offset without it.
 * (2) Each entry is assigned its dead-letter partition when it is written
 *     (original partition mod the DLQ topic's partition count), and entries are
 *     produced in sequence order with an idempotent producer, which keeps order per
 *     partition. So "entry published" is decidable from Kafka alone: an entry of DLQ
 *     partition P with sequence s was published iff the newest dead letter of this
 *     view in P carries a sequence >= s (header readmodel.outbox.seq).
 * (3) On start, outbox_recover() reads the newest dead letter of each DLQ partition
 *     and deletes the entries already there — so a crash between produce and delete
 *     re-publishes nothing: no dead letter missing, none duplicated.
 * (4) Entries are deleted only after the broker acknowledged them.
 * Thread: the pipeline's consumer thread. */
#ifndef RM_OUTBOX_H
#define RM_OUTBOX_H

#include "cfg.h"
#include "store.h"

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OUTBOX_DLQ_SUFFIX ".dlq"

typedef struct outbox outbox_t;

/* What is known of a dead letter when it is recorded. */
typedef struct outbox_letter {
    const char *ol_topic;     /* original topic */
    int32_t ol_partition;
    int64_t ol_offset;
    int64_t ol_timestamp_ms;
    const void *ol_key;
    size_t ol_key_len;
    const void *ol_value;     /* NULL for a tombstone */
    size_t ol_value_len;
    const char *ol_error;     /* error class, e.g. "decode" */
    const char *ol_reason;    /* short reason, never payload */
} outbox_letter_t;

typedef struct outbox_stats {
    uint64_t os_recorded;   /* dead letters written to the outbox */
    uint64_t os_published;  /* acknowledged by the broker */
    uint64_t os_recovered;  /* found already published at start (not re-sent) */
    uint64_t os_pending;    /* in the outbox now */
} outbox_stats_t;

/* view_name and group go into the headers; topics are the view's source topics (their
 * DLQ topics' partition counts are looked up once, here). cfg supplies the kafka
 * properties for the producer (the same cluster). Returns NULL with a message in errstr. */
outbox_t *outbox_new(store_t *store, const cfg_t *cfg, const char *view_name, const char *group,
                     char *const *topics, size_t topic_count, char *errstr, size_t errlen);
void outbox_destroy(outbox_t *outbox);

/* Must be called after beginning each write transaction / before committing it. */
int outbox_txn_begin(outbox_t *outbox, MDB_txn *txn);
int outbox_txn_precommit(outbox_t *outbox, MDB_txn *txn);

/* Records a dead letter in txn. Returns 0 or a store error. */
int outbox_record(outbox_t *outbox, MDB_txn *txn, const outbox_letter_t *letter);

/* Deletes the entries that the DLQ topics already hold (note 3). Call once at start,
 * before consuming. Returns 0, or an error when the DLQ topics cannot be read (then
 * nothing is deleted and entries may be published again later — never lost). */
int outbox_recover(outbox_t *outbox, int timeout_ms);

/* Publishes pending entries in sequence order and deletes the acknowledged ones.
 * Bounded by timeout_ms; what is not acknowledged stays for the next call. */
int outbox_flush(outbox_t *outbox, int timeout_ms);

/* Whether outbox_flush has work: entries recorded since the last flush, or left
 * unacknowledged (or found at start) and not yet published. */
/* A new generation of the store (rebuild) takes over from `previous`, the generation it
 * replaces. The previous one consumed its topics up to its stored offsets and recorded
 * the dead letters of that part of the log (and published them, or still holds them), so:
 * entries for those offsets are deleted; the offsets are remembered in meta
 * ("dlq_seen/<topic>/<partition>") and outbox_record skips letters below them from then
 * on (the new generation re-consumes the messages the old one applied before the
 * switch); and the sequence continues after the previous one's. Run by the writer of the
 * new generation before it publishes anything — the rebuild before its switch, the daemon
 * at the switch (with the old generation's final offsets); running it again is harmless.
 * Returns 0 or a store error. */
int outbox_adopt(outbox_t *outbox, store_t *previous);

bool outbox_flush_due(const outbox_t *outbox);

void outbox_get_stats(const outbox_t *outbox, outbox_stats_t *ret_stats);

#endif
