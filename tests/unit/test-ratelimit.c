/* Tests of query-api/ratelimit.c: burst, refusal with the wait, refill, separate keys. */
#include "../../query-api/ratelimit.h"
#include "rm_err.h"
#include "tsupport.h"

#include <check.h>
#include <string.h>

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

START_TEST(test_collisions_share_nothing)
{
    rl_t *rl = rl_new(1, 1, 1); /* one slot: every key collides */
    int64_t retry;
    ck_assert_int_eq(rl_take(rl, "a", 1, 0, &retry), 0);
    ck_assert_int_eq(rl_take(rl, "a", 1, 0, &retry), RM_EBUSY);
    ck_assert_int_eq(rl_take(rl, "b", 1, 0, &retry), 0); /* b takes the slot, fresh */
    ck_assert_int_eq(rl_take(rl, "b", 1, 0, &retry), RM_EBUSY);
    rl_destroy(rl);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("ratelimit");
    TCase *tc = tcase_create("ratelimit");
    tcase_add_test(tc, test_bucket);
    tcase_add_test(tc, test_collisions_share_nothing);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
