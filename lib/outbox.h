/* outbox: dead letters recorded in the store, published to Kafka from there.
 *
 * Notes on the design:
 * (1) A rejected message is written to `outbox` in the SAME transaction that advances
 *     its partition's offset: a crash can neither lose the dead letter nor skip the
 *     offset without it.
 * (2) Each entry is assigned its dead-letter partition when it is written (original
 *     partition mod the DLQ topic's partition count) and a sequence number of its
 *     store's lineage, never reused: the next generation of a store continues the
 *     sequence, and entries are published only once the transaction that recorded
 *     them is durable (store_durable_txnid), so an OS crash cannot roll back a
 *     sequence Kafka already holds.
 * (3) Each replica publishes its own dead letters, marked with its replica id
 *     (header readmodel.replica: random, kept in the store's meta and handed from
 *     generation to generation) besides readmodel.view and readmodel.consumer.group.
 *     Replicas are independent full copies, so a poison message is dead-lettered once
 *     per replica; `projector dlq` handles each original message once per run.
 * (4) "Entry published" is decided from Kafka: on start, outbox_recover() reads the
 *     last OUTBOX_RECOVER_SCAN letters of each DLQ partition that has entries waiting
 *     and deletes exactly the entries whose (view, replica, sequence) it finds there.
 *     Nothing is inferred from order, so a letter that failed while a later one got
 *     through, or another replica's higher sequences, cannot make an unpublished
 *     entry look published. An entry published longer ago than that window is
 *     published again (a duplicate, never a loss); a flush hands at most
 *     OUTBOX_PUBLISH_MAX entries to the producer, well inside the window. Until a
 *     recovery has succeeded, nothing is published (retried by outbox_flush).
 * (5) Entries are deleted only after the broker acknowledged them; a failed delivery
 *     is produced again by itself, not with everything else in flight.
 * (6) Store generations (gen.h): outbox_adopt (outbox_gen.c) hands the previous
 *     generation's entries to the next one, so a switch or a rollback abandons no dead
 *     letter. A generation rebuilt without reading its torn predecessor (an OS crash in
 *     periodic mode) cannot inherit its replica id: it publishes under a new one, so its
 *     letters appear once more in the DLQ topics (duplicates, never a loss).
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
/* Letters read per DLQ partition by a recovery (note 4): the largest flush, plus room
 * for other replicas' letters published meanwhile. */
#define OUTBOX_RECOVER_SCAN 5000
#define OUTBOX_PUBLISH_MAX 1000 /* entries handed to the producer per flush */
#define OUTBOX_RECOVER_RETRY_MS 10000 /* a failed recovery is tried again this late */

typedef struct outbox outbox_t;

/* What is known of a dead letter when it is recorded. */
typedef struct outbox_letter {
    const char *ol_topic; /* original topic */
    int32_t ol_partition;
    int64_t ol_offset;
    int64_t ol_timestamp_ms;
    const void *ol_key;
    size_t ol_key_len;
    const void *ol_value; /* NULL for a tombstone */
    size_t ol_value_len;
    const char *ol_error; /* error class, e.g. "decode" */
    const char *ol_reason; /* short reason, never payload */
} outbox_letter_t;

typedef struct outbox_stats {
    uint64_t os_recorded; /* dead letters written to the outbox */
    uint64_t os_published; /* acknowledged by the broker */
    uint64_t os_recovered; /* found already published at start (not re-sent) */
    uint64_t os_pending; /* in the outbox now */
} outbox_stats_t;

/* view_name and group go into the headers; topics are the view's source topics (their
 * DLQ topics' partition counts are looked up once, here). cfg supplies the kafka
 * properties for the producer (the same cluster). Reads the store's replica id, drawing
 * and storing one (a write txn) if it has none. Returns 0 and the outbox in *ret_outbox
 * (the caller owns it), or with a message in errstr: RM_ECONFIG when librdkafka refuses
 * the producer's settings (no retry helps), RM_ENOMEM, or the store's error. */
int outbox_new(store_t *store, const cfg_t *cfg, const char *view_name, const char *group,
               char *const *topics, size_t topic_count, outbox_t **ret_outbox, char *errstr,
               size_t errlen);
/* Bounded (about 1 s, whatever the brokers do): collects the acks on their way, then
 * drops what the producer still holds; those entries stay in the store (note 5) and the
 * next start's recovery (note 4) decides which of them Kafka has. Accepts NULL. */
void outbox_destroy(outbox_t *outbox);

/* Must be called after beginning each write transaction / before committing it. */
int outbox_txn_begin(outbox_t *outbox, MDB_txn *txn);
int outbox_txn_precommit(outbox_t *outbox, MDB_txn *txn);

/* Records a dead letter in txn. Returns 0 or a store error. */
int outbox_record(outbox_t *outbox, MDB_txn *txn, const outbox_letter_t *letter);

/* Deletes the entries that the DLQ topics already hold (note 4). Call once at start,
 * before consuming; timeout_ms bounds each broker request. It also finishes a takeover
 * that a crash interrupted (outbox_adopt with before_switch, then no final adopt).
 * Returns 0, or an error (RM_EKAFKA, RM_ETIMEOUT, a store error) when the DLQ topics
 * cannot be read: then nothing is deleted, and outbox_flush publishes nothing until a
 * later recovery succeeds. */
int outbox_recover(outbox_t *outbox, int timeout_ms);

/* Publishes pending entries whose transaction is durable (note 2), in sequence order,
 * and deletes the acknowledged ones; first retries a recovery that has not succeeded
 * yet (at most every OUTBOX_RECOVER_RETRY_MS). Bounded by timeout_ms; what is not
 * acknowledged stays for the next call. Returns 0, the recovery's error, or a store or
 * producer error. */
int outbox_flush(outbox_t *outbox, int timeout_ms);

/* A new generation of the store takes over from `previous`, the generation it replaces
 * (or, after a rollback, the one rolled back from). `previous` consumed its topics up to
 * its stored offsets and recorded the dead letters of that part of the log, so:
 * entries of this store for those offsets are deleted; the offsets are remembered in meta
 * ("dlq_seen/<topic>/<partition>") and outbox_record skips letters below them from then
 * on (this store re-consumes the messages `previous` applied); and the sequence
 * continues after the previous one's.
 * before_switch (the rebuild, while `previous` is still live and publishing): only that,
 * plus a note naming `previous`, so that a crash before the final adopt is finished by
 * outbox_recover. Otherwise (the daemon at the switch, `previous` written no more): also
 * every entry `previous` still holds is copied here (published or not: recovery tells),
 * and, unless this store has published before, its own entries are renumbered after
 * every sequence of `previous` and it takes over the replica id. Running it again is
 * harmless. Returns 0 or a store error (nothing changed). */
int outbox_adopt(outbox_t *outbox, store_t *previous, bool before_switch);

/* Whether outbox_flush has work: entries recorded since the last flush, or left
 * unacknowledged (or found at start, or not durable yet) and not yet published. */
bool outbox_flush_due(const outbox_t *outbox);

void outbox_get_stats(const outbox_t *outbox, outbox_stats_t *ret_stats);

/* The source topic of a stored outbox entry (key and value as read from the outbox db):
 * *ret_topic borrows from v (not NUL-terminated). RM_ESTORE when the entry cannot be
 * decoded. Any thread, any txn. */
int outbox_entry_topic(const MDB_val *k, const MDB_val *v, const char **ret_topic, size_t *ret_len);

#endif
