/* http_history: the dashboard's last 15 minutes, kept in the query API's memory.
 *
 * A thread of its own samples the store every HTTP_HISTORY_INTERVAL_MS: per topic the
 * summed message lag, the worst time lag, the summed next offsets (the apply rate is
 * their difference over time), the parked events and the dead letters waiting (the
 * projector's counters, topic_counts.h), and the same two view-wide. The ring holds
 * HTTP_HISTORY_SAMPLES samples (15 minutes, about 350 KB), so a
 * dashboard opened now draws the last 15 minutes at once. GET /v1/status/history serves
 * it as JSON (docs/query-api.md). */
#ifndef RM_HTTP_HISTORY_H
#define RM_HTTP_HISTORY_H

#include "buf.h"
#include "http_ctx.h"
#include "store.h"

#include <stdint.h>

#define HTTP_HISTORY_INTERVAL_MS 2000
#define HTTP_HISTORY_SAMPLES 450 /* 15 minutes at HTTP_HISTORY_INTERVAL_MS */
#define HTTP_HISTORY_TOPICS 16 /* topics tracked; a view's further topics are left out */

typedef struct http_history http_history_t;

/* An empty ring of capacity samples (no thread). NULL when out of memory. */
http_history_t *http_history_new(size_t capacity);
/* Starts the sampling thread on ctx's store (after http_store_start). 0 or an rm_err_t. */
int http_history_start(http_history_t *h, http_ctx_t *ctx);
/* Stops the thread (if started) and frees h. NULL is a no-op. Before http_store_stop. */
void http_history_free(http_history_t *h);

/* One sample, built partition by partition: begin, one add per partition, then end,
 * which appends it to the ring (the oldest sample goes when it is full). One thread. */
void http_history_begin(http_history_t *h, int64_t now_ms);
void http_history_add(http_history_t *h, const char *topic, const store_offset_t *off);
/* The topic's parked events and dead letters waiting (topic_counts.h), between begin and
 * end; a topic never given counts is null in the sample. */
void http_history_add_counts(http_history_t *h, const char *topic, int64_t parked,
                             int64_t dead_letters);
void http_history_end(http_history_t *h, uint64_t parked, uint64_t dead_letters);

/* Appends the ring as JSON, oldest sample first:
 * {"interval_ms":2000,"capacity":450,"topics":["orders",...],
 *  "samples":[{"t":ms,"parked":n,"dead_letters":n,"lag_messages":[..],"lag_seconds":[..],
 *              "next_offset":[..],"topic_parked":[..],"topic_dead_letters":[..]},...]}
 * with one array entry per topic, in "topics" order (null where the topic was not yet
 * seen). Any thread. 0 or an rm_err_t. */
int http_history_json(http_history_t *h, buf_t *out);

/* GET /v1/status/history: http_history_json as a 200 (a 500 problem when out of memory). */
struct MHD_Response *http_history_response(http_history_t *h, unsigned *ret_status);

#endif
