/* batch_plan: apply order and hold-back of a consumed batch (see batch_plan.h). */
#include "batch_plan.h"

#include <assert.h>
#include <string.h>

int64_t batch_plan_horizon(const batch_plan_msg_t *msgs, size_t count,
                           const batch_plan_part_t *parts, size_t part_count)
{
    int64_t horizon = INT64_MAX;
    for (size_t p = 0; p < part_count; p++) {
        if (!parts[p].bpp_link || !parts[p].bpp_more)
            continue;
        /* The last of its messages in the batch, scanning backwards: link partitions are
         * few and a backlog batch usually holds messages of each near its end. */
        int64_t last = parts[p].bpp_last_ms;
        for (size_t i = count; i-- > 0;) {
            if (msgs[i].bpm_part == p) {
                last = msgs[i].bpm_timestamp_ms;
                break;
            }
        }
        if (last < horizon)
            horizon = last;
    }
    return horizon;
}

void batch_plan_make(const batch_plan_msg_t *msgs, size_t count, int64_t horizon_ms,
                     unsigned max_holds, bool *held_part, size_t part_count, uint32_t *ret_order,
                     size_t *ret_apply_count, bool *ret_hold)
{
    memset(held_part, 0, part_count * sizeof(*held_part));
    size_t n = 0;
    for (size_t i = 0; i < count; i++) {
        ret_hold[i] = false;
        if (msgs[i].bpm_link)
            ret_order[n++] = (uint32_t)i;
    }
    for (size_t i = 0; i < count; i++) {
        const batch_plan_msg_t *m = &msgs[i];
        if (m->bpm_link)
            continue;
        assert(m->bpm_part < part_count);
        /* Once one message of a partition waits, every later one of it waits too: that
         * is what keeps the partition's order. An earlier message held fewer times than
         * a later one cannot exist (a partition's held messages are carried together). */
        bool hold =
            held_part[m->bpm_part] || (m->bpm_holds < max_holds && m->bpm_timestamp_ms >= 0 &&
                                       m->bpm_timestamp_ms >= horizon_ms);
        if (hold) {
            held_part[m->bpm_part] = true;
            ret_hold[i] = true;
        } else {
            ret_order[n++] = (uint32_t)i;
        }
    }
    *ret_apply_count = n;
}
