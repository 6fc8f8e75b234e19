/* Tests of query-api/ratelimit.c: burst, refusal with the wait, refill, separate keys. */
#include "../../query-api/ratelimit.h"
#include "rm_err.h"
#include "tsupport.h"

#include <check.h>
#include <stdio.h>
#include <string.h>

/* Ways per set of the table (ratelimit.c RL_WAYS): a table of that many slots is one set. */
#define RL_WAYS_FOR_TESTS 8

START_TEST(test_bucket)
{
    rl_t *rl = rl_new(2, 3, 64); /* 2 per second, bursts of 3 */
    ck_assert_ptr_nonnull(rl);
    int64_t retry = 0;
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(rl_take(rl, "alice", 5, 1000, &retry), 0);
    ck_assert_int_eq(rl_take(rl, "alice", 5, 1000, &retry), RM_EBUSY);
    ck_assert_int_eq(retry, 500); /* one token at 2/s */
    ck_assert_int_eq(rl_take(rl, "bob", 3, 1000, &retry), 0); /* own bucket */
    ck_assert_int_eq(rl_take(rl, "alice", 5, 1499, &retry), RM_EBUSY);
    ck_assert_int_eq(retry, 1); /* 998 of 1000 millitokens refilled: 2 more at 2/ms */
    ck_assert_int_eq(rl_take(rl, "alice", 5, 1500, &retry), 0);
    ck_assert_int_eq(rl_take(rl, "alice", 5, 1500, &retry), RM_EBUSY);
    /* a long idle time refills to the burst, not beyond */
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(rl_take(rl, "alice", 5, 10000000, &retry), 0);
    ck_assert_int_eq(rl_take(rl, "alice", 5, 10000000, &retry), RM_EBUSY);
    /* a clock that goes back does not mint tokens */
    ck_assert_int_eq(rl_take(rl, "alice", 5, 5, &retry), RM_EBUSY);
    rl_destroy(rl);
}
END_TEST

/* Two keys in one slot used to alternate, each eviction handing the newcomer a full
 * bucket: neither was ever limited. An evicted slot now hands over what it had left. */
START_TEST(test_colliding_keys_stay_limited)
{
    rl_t *rl = rl_new(1, 1, 1); /* one slot: every key collides */
    int64_t retry;
    int granted = 0;
    for (int i = 0; i < 20; i++)
        granted += rl_take(rl, i % 2 ? "b" : "a", 1, 0, &retry) == 0;
    ck_assert_int_eq(granted, 1); /* the one token of the shared slot, no more */
    /* and it refills at the configured rate, not faster */
    ck_assert_int_eq(rl_take(rl, "a", 1, 999, &retry), RM_EBUSY);
    ck_assert_int_eq(rl_take(rl, "b", 1, 1000, &retry), 0);
    ck_assert_int_eq(rl_take(rl, "a", 1, 1000, &retry), RM_EBUSY);
    rl_destroy(rl);
}
END_TEST

/* In a table of several slots, keys that hash to the same set keep their own buckets
 * (the set has ways for them), and more colliding keys than ways get, together, no more
 * than the set's buckets could give. */
START_TEST(test_colliding_keys_in_a_set)
{
    rl_t *rl = rl_new(1, 2, RL_WAYS_FOR_TESTS); /* one set of RL_WAYS_FOR_TESTS ways */
    int64_t retry;
    char key[8];
    /* two keys: each its own bucket of 2 */
    ck_assert_int_eq(rl_take(rl, "a", 1, 0, &retry), 0);
    ck_assert_int_eq(rl_take(rl, "b", 1, 0, &retry), 0);
    ck_assert_int_eq(rl_take(rl, "a", 1, 0, &retry), 0);
    ck_assert_int_eq(rl_take(rl, "b", 1, 0, &retry), 0);
    ck_assert_int_eq(rl_take(rl, "a", 1, 0, &retry), RM_EBUSY);
    ck_assert_int_eq(rl_take(rl, "b", 1, 0, &retry), RM_EBUSY);
    /* many keys rotating through the one set at one instant */
    int granted = 0;
    for (int round = 0; round < 10; round++)
        for (int k = 0; k < 3 * RL_WAYS_FOR_TESTS; k++) {
            int n = snprintf(key, sizeof(key), "k%d", k);
            granted += rl_take(rl, key, (size_t)n, 0, &retry) == 0;
        }
    ck_assert_int_le(granted, 2 * RL_WAYS_FOR_TESTS);
    rl_destroy(rl);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ratelimit");
    TCase *tc = tcase_create("ratelimit");
    tcase_add_test(tc, test_bucket);
    tcase_add_test(tc, test_colliding_keys_stay_limited);
    tcase_add_test(tc, test_colliding_keys_in_a_set);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
