/* http_fresh: what the store can promise about freshness — its lag as the projector
 * recorded it with its commits, and waiting until consistency tokens are applied.
 *
 * Notes on the design:
 * (1) Lag comes only from the store's offsets db: per partition, the high watermark the
 *     projector saw at its last commit against the next offset it committed, and the
 *     newest event time it applied. The query API has no Kafka client; so while the
 *     projector is down the store cannot see events produced since, and reports the lag
 *     it last knew (docs/query-api.md says so; the commit age is a separate header).
 *     The same scan yields each topic's lag, and a section's lag is that of the topics
 *     feeding it (view.h vs_feeds, computed once when the view is loaded): one pass over
 *     a few dozen offsets per request, whether the headers or the sections use it.
 * (2) A consistency wait sleeps and polls inside the libmicrohttpd worker that runs the
 *     request: simple, no timer machinery, and bounded by query_api.consistency_wait_ms.
 *     A waiting worker serves none of its other connections, so at most
 *     query_api.consistency_max_waiters requests wait at once, and at most one of them
 *     per principal, so one caller cannot take every slot; the others answer at once
 *     with what the store has (reached: false, reason "busy").
 * (3) Only an offset that exists can be waited for: one at or past the partition's log
 *     end (http_logend.h: the store's high watermark, else Kafka) answers at once with
 *     reason "unreachable". The check runs inside the waiter slot, so a broker that does
 *     not answer costs no more workers than waits already may. */
#ifndef RM_HTTP_FRESH_H
#define RM_HTTP_FRESH_H

#include "http_ctx.h"
#include "http_params.h"
#include "render.h"

#include <stdbool.h>
#include <stdint.h>

/* The store's lag at its last commits, summed over every partition it consumes. */
typedef struct http_lag {
    int64_t hl_now_ms; /* wall clock the lag was measured at */
    size_t hl_partitions;
    int64_t hl_messages; /* sum of high watermark - next offset */
    int64_t hl_lag_ms; /* worst partition that is behind: now - newest applied
                          event time; 0 when every partition is caught up */
    int64_t hl_newest_commit_ms; /* wall clock of the newest commit; 0: none yet */
} http_lag_t;

/* Reads the lag in txn as of now_ms. Returns 0 or a store error; *ret_lag on success.
 * Any thread with its own txn. */
int http_fresh_lag(store_t *store, MDB_txn *txn, int64_t now_ms, http_lag_t *ret_lag);

/* The lag of one topic: messages behind summed over its partitions, and the time lag of
 * its worst partition that is behind (0 when all are caught up), as in http_lag_t. */
typedef struct http_topic_lag {
    int64_t tl_messages;
    int64_t tl_ms;
} http_topic_lag_t;

/* http_fresh_lag, plus in the same scan of the offsets the lag of each of view's topics:
 * ret_topics has view->v_topic_count entries, indexed as v_topics (a partition of a topic
 * the view no longer consumes counts in *ret_lag only). Written only on success. memo
 * (NULL: none) is the calling thread's http_lag_memo(): when it holds this txn's
 * snapshot the offsets are not scanned again — they cannot have changed within one
 * snapshot, and a read used to spend 7% of its instructions rescanning them. Any
 * thread with its own txn. */
int http_fresh_lag_topics(const view_t *view, store_t *store, MDB_txn *txn, int64_t now_ms,
                          http_lag_memo_t *memo, http_lag_t *ret_lag, http_topic_lag_t *ret_topics);

/* Each section's lag (ret_sections: view->v_section_count entries) from the lag of the
 * topics that feed it (view.h vs_feeds): messages summed, the worst time lag. A section
 * fed by every topic has the view's lag; one fed by none (live) has 0. */
void http_fresh_section_lag(const view_t *view, const http_topic_lag_t *topics,
                            render_lag_t *ret_sections);

/* The outcome of waiting for tokens. */
typedef struct http_wait {
    bool hw_reached; /* every token applied */
    bool hw_busy; /* did not wait: too many requests, or this principal, were waiting */
    bool hw_unreachable; /* did not wait: a token's offset is past its partition's log end
                            (or the partition does not exist) */
    int64_t hw_waited_ms;
    uint64_t hw_missing; /* bit i: tokens[i] was not applied */
    int64_t hw_have[HTTP_MIN_OFFSETS_MAX]; /* next offset of tokens[i]'s partition in the
                                              final txn (0 when none is stored) */
} http_wait_t;

/* Waits up to wait_ms until the store's next offset of every token's partition is
 * greater than its offset, renewing this thread's read txn every HTTP_FRESH_POLL_MS
 * (so a wait that spans a generation switch continues in the new generation).
 * principal (NULL: none, auth off) holds at most one waiter slot; a token past its
 * partition's log end is not waited for (note 3).
 * count <= HTTP_MIN_OFFSETS_MAX. On return 0, *ret_store and *ret_txn are this thread's
 * (from http_txn) in which the outcome *ret_wait was observed: the caller renders from
 * them, so the answer reflects the offsets reported, and ends with http_txn_done(). On
 * error no txn is open (RM_ENOTFOUND: no store). HTTP worker threads. */
int http_fresh_wait(http_ctx_t *ctx, const char *principal, const http_min_offset_t *tokens,
                    size_t count, int64_t wait_ms, store_t **ret_store, MDB_txn **ret_txn,
                    http_wait_t *ret_wait);

/* Requests in a consistency wait now (for /metrics). Any thread. */
int64_t http_fresh_waiters(http_ctx_t *ctx);

#endif
