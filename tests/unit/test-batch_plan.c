/* Tests of batch_plan.c: the apply order of a batch keeps every partition's order, puts
 * link topics first, and holds back whole partition tails behind the link horizon. */
#include "batch_plan.h"

#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MSGS 4096
#define MAX_PARTS 16

static batch_plan_msg_t msgs[MAX_MSGS];
static uint32_t order[MAX_MSGS];
static bool hold[MAX_MSGS];
static bool held_part[MAX_PARTS];

/* The invariants every plan must keep, whatever the input: each index once (applied or
 * held); per partition, applied messages in arrival order and before any held one;
 * link messages first and never held. */
/* Per-message checks without Check's per-assertion bookkeeping (the random test makes
 * millions). */
#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ck_abort_msg(__VA_ARGS__);                                                             \
    } while (0)

static void check_plan(size_t count, size_t applied)
{
    static bool seen[MAX_MSGS];
    memset(seen, 0, sizeof(seen));
    size_t held = 0;
    for (size_t i = 0; i < count; i++)
        held += hold[i];
    EXPECT(applied + held == count, "%zu applied + %zu held != %zu", applied, held, count);
    int64_t last_slot[MAX_PARTS];
    for (size_t p = 0; p < MAX_PARTS; p++)
        last_slot[p] = -1;
    bool others_started = false;
    for (size_t n = 0; n < applied; n++) {
        uint32_t i = order[n];
        EXPECT(i < count, "slot %u out of range", i);
        EXPECT(!seen[i] && !hold[i], "slot %u twice", i);
        seen[i] = true;
        const batch_plan_msg_t *m = &msgs[i];
        EXPECT(!(m->bpm_link && others_started), "link message %u after another topic's", i);
        others_started |= !m->bpm_link;
        EXPECT((int64_t)i > last_slot[m->bpm_part], "partition %u out of order at slot %u",
               m->bpm_part, i);
        last_slot[m->bpm_part] = i;
    }
    /* Once a partition has a held message, nothing later of it was applied. */
    bool part_held[MAX_PARTS] = {false};
    for (size_t i = 0; i < count; i++) {
        EXPECT(!(hold[i] && msgs[i].bpm_link), "link message %zu held", i);
        EXPECT(hold[i] || !part_held[msgs[i].bpm_part],
               "slot %zu applied after a held slot of its partition", i);
        part_held[msgs[i].bpm_part] |= hold[i];
    }
}

START_TEST(test_link_topics_first_stable_within_partition)
{
    /* Partitions 0,1 are of a link topic (orders); 2,3 of payments. Interleaved arrival. */
    static const uint32_t parts[] = {2, 0, 3, 2, 1, 0, 3, 1, 2, 0};
    size_t count = sizeof(parts) / sizeof(parts[0]);
    for (size_t i = 0; i < count; i++)
        msgs[i] = (batch_plan_msg_t){parts[i], parts[i] < 2, (int64_t)(100 + i), 0};
    size_t applied;
    batch_plan_make(msgs, count, INT64_MAX, 6, held_part, 4, order, &applied, hold);
    static const uint32_t want[] = {1, 4, 5, 7, 9, 0, 2, 3, 6, 8};
    ck_assert_uint_eq(applied, count);
    for (size_t n = 0; n < count; n++)
        ck_assert_uint_eq(order[n], want[n]);
    check_plan(count, applied);
}
END_TEST

START_TEST(test_hold_behind_horizon_keeps_partition_tail)
{
    /* Link partition 0 delivered up to ts 105 and has more; payments partition 1 has
     * messages at 101, 104, 106, 102 (a later offset may carry an older timestamp:
     * it must wait anyway, behind 106 of its own partition). */
    batch_plan_part_t parts[2] = {{true, true, -1}, {false, false, -1}};
    size_t count = 0;
    msgs[count++] = (batch_plan_msg_t){1, false, 101, 0};
    msgs[count++] = (batch_plan_msg_t){0, true, 103, 0};
    msgs[count++] = (batch_plan_msg_t){1, false, 104, 0};
    msgs[count++] = (batch_plan_msg_t){0, true, 105, 0};
    msgs[count++] = (batch_plan_msg_t){1, false, 106, 0};
    msgs[count++] = (batch_plan_msg_t){1, false, 102, 0};
    int64_t horizon = batch_plan_horizon(msgs, count, parts, 2);
    ck_assert_int_eq(horizon, 105);
    size_t applied;
    batch_plan_make(msgs, count, horizon, 6, held_part, 2, order, &applied, hold);
    ck_assert_uint_eq(applied, 4);
    static const uint32_t want[] = {1, 3, 0, 2};
    for (size_t n = 0; n < applied; n++)
        ck_assert_uint_eq(order[n], want[n]);
    ck_assert(hold[4] && hold[5]);
    check_plan(count, applied);

    /* At its limit of holds a message is applied, and what follows it may wait. */
    msgs[4].bpm_holds = 6;
    msgs[5].bpm_timestamp_ms = 107;
    batch_plan_make(msgs, count, horizon, 6, held_part, 2, order, &applied, hold);
    ck_assert_uint_eq(applied, 5);
    ck_assert(!hold[4] && hold[5]);
    check_plan(count, applied);
    /* max_holds 0: the pure link-first order, nothing waits. */
    msgs[4].bpm_holds = 0;
    batch_plan_make(msgs, count, horizon, 0, held_part, 2, order, &applied, hold);
    ck_assert_uint_eq(applied, count);
    check_plan(count, applied);
}
END_TEST

START_TEST(test_horizon)
{
    batch_plan_part_t parts[4] = {
        {true, true, 50}, /* link, more to come, nothing in the batch: its last applied */
        {true, true, 10}, /* link, more, in the batch at 70 */
        {true, false, 5}, /* link, caught up: no constraint */
        {false, true, 1}, /* not a link topic: no constraint */
    };
    size_t count = 0;
    msgs[count++] = (batch_plan_msg_t){1, true, 60, 0};
    msgs[count++] = (batch_plan_msg_t){3, false, 2, 0};
    msgs[count++] = (batch_plan_msg_t){1, true, 70, 0};
    msgs[count++] = (batch_plan_msg_t){2, true, 3, 0};
    ck_assert_int_eq(batch_plan_horizon(msgs, count, parts, 4), 50);
    parts[0].bpp_more = false;
    ck_assert_int_eq(batch_plan_horizon(msgs, count, parts, 4), 70);
    parts[1].bpp_more = false;
    ck_assert_int_eq(batch_plan_horizon(msgs, count, parts, 4), INT64_MAX);
    /* A lagging link partition never seen yet (-1) holds every timestamped message. */
    parts[0] = (batch_plan_part_t){true, true, -1};
    ck_assert_int_eq(batch_plan_horizon(msgs, count, parts, 4), -1);
    /* ... but not one without a timestamp. */
    msgs[0] = (batch_plan_msg_t){3, false, -1, 0};
    size_t applied;
    batch_plan_make(msgs, 1, -1, 6, held_part, 4, order, &applied, hold);
    ck_assert_uint_eq(applied, 1);
}
END_TEST

/* Random batches: the invariants hold for any arrival, horizon and hold counts. */
START_TEST(test_random_batches_keep_invariants)
{
    srand(7);
    for (int round = 0; round < 300; round++) {
        size_t count = (size_t)(rand() % MAX_MSGS);
        size_t parts = 1 + (size_t)(rand() % MAX_PARTS);
        unsigned holds_of[MAX_PARTS] = {0};
        for (size_t i = 0; i < count; i++) {
            uint32_t p = (uint32_t)(rand() % (int)parts);
            /* Hold counts never grow along a partition (carried messages lead it). */
            if (holds_of[p] == 0 && i == 0)
                holds_of[p] = (unsigned)(rand() % 4);
            else if (holds_of[p] > 0 && rand() % 8 == 0)
                holds_of[p]--;
            msgs[i] = (batch_plan_msg_t){p, p % 3 == 0, rand() % 1000 - 10, holds_of[p]};
        }
        size_t applied;
        batch_plan_make(msgs, count, rand() % 1100, (unsigned)(rand() % 4), held_part, parts, order,
                        &applied, hold);
        check_plan(count, applied);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("batch_plan");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_link_topics_first_stable_within_partition);
    tcase_add_test(tc, test_hold_behind_horizon_keeps_partition_tail);
    tcase_add_test(tc, test_horizon);
    tcase_add_test(tc, test_random_batches_keep_invariants);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
