/* batch_plan: the order a consumed batch is applied in, and which of its messages wait
 * for the next batch.
 *
 * Kafka orders messages only within a partition, so a batch may be applied in any order
 * that keeps each partition's messages in arrival order. The plan uses that freedom to
 * avoid parking (why it is safe: plan_batch in pipeline.c):
 *   (1) messages of topics that learn links come first, then the others, each group in
 *       arrival order — a payment whose OrderCreated is anywhere in the batch finds it;
 *   (2) a message of another topic whose timestamp is at or past the link horizon (the
 *       oldest "last consumed" timestamp among link partitions that still have messages
 *       beyond the batch) is held back for the next batch, and with it every later
 *       message of its partition, so its partition's order is kept. A message is held at
 *       most max_holds times, after which it is applied (and parks if it must): holding
 *       delays, it never decides an outcome.
 * Pure functions over plain data; no allocation. Any thread. */
#ifndef RM_BATCH_PLAN_H
#define RM_BATCH_PLAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One consumed message, in arrival order. */
typedef struct batch_plan_msg {
    uint32_t bpm_part; /* dense index of its (topic, partition): < part_count */
    bool bpm_link; /* its topic learns links */
    int64_t bpm_timestamp_ms; /* Kafka message timestamp; < 0: unknown (never held) */
    unsigned bpm_holds; /* batches it was already held back from */
} batch_plan_msg_t;

/* One partition of the view's topics. */
typedef struct batch_plan_part {
    bool bpp_link; /* its topic learns links */
    bool bpp_more; /* messages beyond this batch exist (or may: unknown) */
    int64_t bpp_last_ms; /* timestamp of the last message applied from it before this
                            batch; < 0: none yet */
} batch_plan_part_t;

/* The link horizon: the smallest, over link partitions with bpp_more, of the timestamp of
 * their last message in msgs (or bpp_last_ms when msgs has none of theirs). INT64_MAX when
 * no link partition has more to come: then nothing needs to wait. */
int64_t batch_plan_horizon(const batch_plan_msg_t *msgs, size_t count,
                           const batch_plan_part_t *parts, size_t part_count);

/* Plans msgs[0..count): ret_order[0..*ret_apply_count) receives the indexes of the
 * messages to apply now, in apply order ((1) above); ret_hold[i] is set for each message
 * held back ((2) above; its index is not in ret_order). held_part is caller scratch of
 * part_count entries (overwritten). max_holds 0 holds nothing. Every index in [0, count)
 * is either in ret_order exactly once or held. */
void batch_plan_make(const batch_plan_msg_t *msgs, size_t count, int64_t horizon_ms,
                     unsigned max_holds, bool *held_part, size_t part_count, uint32_t *ret_order,
                     size_t *ret_apply_count, bool *ret_hold);

#endif
