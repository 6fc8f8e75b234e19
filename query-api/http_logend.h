/* http_logend: the log end (high watermark) of a Kafka partition, for consistency tokens.
 *
 * A token names an offset a client was told its write got; an offset at or past the
 * partition's log end was never written, so waiting for it only holds a worker for
 * query_api.consistency_wait_ms. The store records the high watermark the projector saw
 * at its last commit, which only grows: an offset below it exists. Above it the store
 * cannot tell (the write may be newer than the last commit), so this module asks Kafka
 * (rd_kafka_query_watermark_offsets, one broker round trip) and remembers the highest
 * end seen per partition, so a partition's later tokens below it cost no round trip.
 *
 * Notes on the design:
 * (1) The Kafka client is created on the first question, not at start: librdkafka
 *     connects to the bootstrap brokers as soon as a client exists, and the query API
 *     serves without Kafka (its config need not even hold the consumer's credentials).
 *     So a query API whose clients never send tokens past the store's knowledge never
 *     talks to Kafka. A client that cannot be created is logged once and never tried
 *     again; every token is then "unknown".
 * (2) A lookup that fails (broker down, timeout) says "unknown", never "unreachable":
 *     the caller then waits as before, bounded by the wait and the waiter limits.
 *
 * Thread: http_logend_new/destroy on the main thread; http_logend_get from any HTTP
 * worker (the table has one lock; queries run outside it). */
#ifndef RM_HTTP_LOGEND_H
#define RM_HTTP_LOGEND_H

#include "cfg.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct http_logend http_logend_t;

/* A log-end lookup over the config's kafka.* properties (cfg must outlive it), checked
 * now, used from the first question on. NULL with errstr on a configuration error (a
 * property librdkafka does not accept). */
http_logend_t *http_logend_new(const cfg_t *cfg, char *errstr, size_t errlen);
void http_logend_destroy(http_logend_t *logend);

/* Whether offset of topic/partition exists in the log: 0 and *ret_exists (offset <
 * log end), after at most one broker round trip of up to timeout_ms; RM_ENOTFOUND when
 * Kafka says the topic or partition does not exist; RM_ETIMEOUT or RM_EKAFKA when it
 * could not be asked (then nothing is known). known_end is a log end the caller already
 * knows (the store's high watermark; 0: none): an offset below it exists, unasked. */
int http_logend_exists(http_logend_t *logend, const char *topic, int32_t partition, int64_t offset,
                       int64_t known_end, int timeout_ms, bool *ret_exists);

#endif
