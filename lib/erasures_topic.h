/* erasures_topic: replicates a view's erasure ledger (erasures.h) through a compacted
 * Kafka topic, so that a replica started on an empty data directory, or one whose
 * volume was lost, knows every erasure before it applies its first event.
 *
 * Notes on the design:
 * (1) The topic (projector.erasures_topic, default <view>.erasures) is keyed by the
 *     erased view key; the value is {"erased_at_ms":N}. Records are never tombstoned,
 *     so with cleanup.policy=compact the broker keeps one per key for ever, however
 *     long ago the tombstone on the source topic was compacted away.
 * (2) Publishing is at-least-once and idempotent by key: a record is produced only
 *     after it is durable in the ledger, and <view_dir>/erasures.published holds the
 *     ledger offset up to which every record was acknowledged, with the topic and the
 *     cluster id it was acknowledged by. A start publishes again everything past it;
 *     everything, when the mark is not a record boundary of this ledger (a ledger
 *     replaced by hand) or names another topic or cluster.
 * (3) Pulling reads every partition from its start to the high watermark read at the
 *     start of the pull, and appends to the ledger every key the ledger lacks; the
 *     engine then erases those keys in every store (engine.h, eo_erasures). A broker
 *     that does not answer is an error (RM_ETIMEOUT, RM_EKAFKA): the caller retries, it
 *     never proceeds without the erasures. A topic the broker says does not exist is
 *     RM_ENOTFOUND (nothing was ever published to it).
 *
 * Threads: an erasures_topic_t is used by one thread at a time. Library code: it does
 * not log; errors come back as rm_err codes with a message in the errstr given. */
#ifndef RM_ERASURES_TOPIC_H
#define RM_ERASURES_TOPIC_H

#include "cfg.h"
#include "erasures.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ERASURES_TOPIC_SUFFIX ".erasures"
#define ERASURES_PUBLISHED_FILE "erasures.published"

typedef struct erasures_topic erasures_topic_t;

/* The topic name: projector.erasures_topic, or <view_name>.erasures when it is empty.
 * Returns 0 or RM_EINVAL (does not fit in cap). */
int erasures_topic_name(const cfg_t *cfg, const char *view_name, char *out, size_t cap);

/* A client for topic. erasures (borrowed; outlives the client) is the ledger that
 * pulls append to and pushes read from; view_dir holds the published mark. publish:
 * false for a client that only pulls (no producer is created, erasures_topic_push is
 * refused). Returns NULL with errstr filled ("kafka..." for a configuration error). */
erasures_topic_t *erasures_topic_new(const cfg_t *cfg, const char *topic, erasures_t *erasures,
                                     const char *view_dir, bool publish, char *errstr,
                                     size_t errlen);
/* Does not wait for records in flight (they are published again at the next start). */
void erasures_topic_destroy(erasures_topic_t *et);

/* Note 3. ret_merged gets the number of keys appended to the ledger. Returns 0,
 * RM_ENOTFOUND (no such topic), RM_ETIMEOUT or RM_EKAFKA (broker trouble: retry),
 * RM_EIO (the ledger), RM_ENOMEM, RM_ECONFIG (the consumer cannot be made from the
 * kafka settings). errstr says what failed. Blocks up to about timeout_ms. */
int erasures_topic_pull(erasures_topic_t *et, int timeout_ms, size_t *ret_merged, char *errstr,
                        size_t errlen);

/* Creates the topic (compacted, one partition, the broker's replication factor) when
 * the broker says it is missing. Returns 0 when it exists afterwards, RM_ETIMEOUT, or
 * RM_EKAFKA (the broker refused: the operator creates it, docs/runbook.md). */
int erasures_topic_create(erasures_topic_t *et, int timeout_ms, char *errstr, size_t errlen);

/* Note 2, one step: serves delivery reports for up to wait_ms (0: only those already
 * received); when every record produced is acknowledged, records the mark; then
 * produces the ledger's records past what is in flight. The mark is read at the first
 * step that learns the cluster id (waiting up to 100 ms for it); until then nothing is
 * produced and the step returns 0. Call it again until erasures_topic_pending is 0.
 * Returns 0, RM_EKAFKA (a delivery failed: the records are produced again by the next
 * call; or the producer refused a record), RM_EIO, RM_ENOMEM. */
int erasures_topic_push(erasures_topic_t *et, int wait_ms, char *errstr, size_t errlen);

/* Ledger bytes not yet acknowledged by the broker (0: all published). */
int64_t erasures_topic_pending(erasures_topic_t *et);

/* The published mark (note 2) as kept in view_dir, checked against the ledger: the
 * stored offset when it was stored for identity ("<topic> <cluster id>") and is a
 * record boundary of erasures; 0 when the file is missing or unreadable, names another
 * topic or cluster, or lies past the ledger's end or inside a record. Exposed for the
 * unit tests. */
int64_t erasures_topic_mark_load(const char *view_dir, const char *identity, erasures_t *erasures);
/* Replaces the mark durably (temporary file, fsync, rename, fsync of view_dir).
 * Returns 0, RM_EINVAL (identity too long) or RM_EIO. */
int erasures_topic_mark_store(const char *view_dir, const char *identity, int64_t mark);

#endif
