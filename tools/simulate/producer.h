/* producer: the simulator's sending side: the library producer (kprod.h) plus the replay
 * settings, a topic filter and restamped timestamps.
 *
 * All functions must be called from one thread (delivery reports are served on the
 * calling thread, so the counters need no lock). */
#ifndef SIM_PRODUCER_H
#define SIM_PRODUCER_H

#include "kprod.h"

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

typedef struct producer producer_t;

/* Creates the producer. conf is taken over in every case (the caller sets its pointer to
 * NULL). Returns NULL with errstr set on failure. */
producer_t *producer_new(rd_kafka_conf_t *conf, char *errstr, size_t errlen);
/* Destroys without flushing; NULL-safe. */
void producer_destroy(producer_t *producer);

/* Queues one message (key and value are copied) on topic, partitioned by key with the
 * configured partitioner. Blocks, serving delivery reports, while the local queue is full.
 * Returns 0, RM_EKAFKA (fatal producer error, e.g. idempotence violated; see
 * kprod_error) or another rm_err_t mapped from librdkafka. */
int producer_send(producer_t *producer, const char *topic, const void *key, size_t key_len,
                  const void *value, size_t value_len);
/* producer_send, and ack (owned by the caller, kept alive until producer_flush returns)
 * receives the message's partition and offset when its delivery report is served. */
int producer_send_acked(producer_t *producer, const char *topic, const void *key, size_t key_len,
                        const void *value, size_t value_len, kprod_ack_t *ack);

/* Replaying history: from now on only messages to a topic in the comma-separated list
 * only_topics are produced (NULL: all; the others are dropped, and an ack given for one is
 * marked done with partition and offset -1), and each message is stamped
 * timestamp_offset_ms before the time it is produced (0: librdkafka's own timestamp).
 * only_topics is borrowed for the producer's lifetime. */
void producer_set_replay(producer_t *producer, const char *only_topics,
                         int64_t timestamp_offset_ms);

/* Waits until every queued message is delivered or has failed (bounded by
 * message.timeout.ms). Returns 0 when none failed since the start, RM_EKAFKA otherwise. */
int producer_flush(producer_t *producer);

/* The library producer, for serving reports and reading its counters and first error
 * (kprod_poll, kprod_delivered, kprod_failed, kprod_error). Borrowed. */
kprod_t *producer_kprod(producer_t *producer);

#endif
