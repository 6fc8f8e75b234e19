/* Tests of failpoint.c: the RM_TEST_SKIP_APPLY parser (the test hook of diff-replay) and
 * RM_FAILPOINT_ERROR's injected errors. */
#include "failpoint.h"
#include "rm_err.h"
#include "tsupport.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

START_TEST(test_skips_parse_and_match)
{
    char err[256];
    failpoint_skips_t *skips = NULL;
    ck_assert_int_eq(failpoint_skips_parse(NULL, &skips, err, sizeof(err)), 0);
    ck_assert_ptr_null(skips);
    ck_assert_int_eq(failpoint_skips_parse("", &skips, err, sizeof(err)), 0);
    ck_assert_ptr_null(skips);
    ck_assert(!failpoint_skips_has(NULL, "orders", 0, 1));

    ck_assert_int_eq(
        failpoint_skips_parse("orders:3:17,customer360.repairs:0:0", &skips, err, sizeof(err)), 0);
    ck_assert_uint_eq(failpoint_skips_count(skips), 2);
    ck_assert(failpoint_skips_has(skips, "orders", 3, 17));
    ck_assert(failpoint_skips_has(skips, "customer360.repairs", 0, 0));
    ck_assert(!failpoint_skips_has(skips, "orders", 3, 18));
    ck_assert(!failpoint_skips_has(skips, "orders", 2, 17));
    ck_assert(!failpoint_skips_has(skips, "order", 3, 17));
    failpoint_skips_destroy(skips);
}
END_TEST

START_TEST(test_skips_reject_malformed_entries)
{
    static const char *const bad[] = {"orders",      "orders:1",    ":1:2",
                                      "orders:x:2",  "orders:1:",   "orders:1:2,",
                                      "orders:-1:2", "orders:1:-2", "orders:1:2,loyalty"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[256] = "";
        failpoint_skips_t *skips = (failpoint_skips_t *)1;
        int rc = failpoint_skips_parse(bad[i], &skips, err, sizeof(err));
        ck_assert_msg(rc == RM_EINVAL, "'%s' accepted", bad[i]);
        ck_assert_msg(strstr(err, FAILPOINT_SKIP_ENV) != NULL, "%s", err);
        ck_assert_ptr_eq(skips, (failpoint_skips_t *)1); /* untouched on error */
    }
}
END_TEST

START_TEST(test_errno_passes_in_range)
{
    setenv("RM_FAILPOINT_ERROR", "store-sync:2:2", 1);
    ck_assert_int_eq(failpoint_errno("store-sync"), 0);
    ck_assert_int_eq(failpoint_errno("other-point"), 0); /* not counted */
    ck_assert_int_eq(failpoint_errno("store-sync"), EIO);
    ck_assert_int_eq(failpoint_errno("store-sync"), EIO);
    ck_assert_int_eq(failpoint_errno("store-sync"), 0);
    setenv("RM_FAILPOINT_ERROR", "store-sync:1", 1); /* re-armed: the count restarts */
    ck_assert_int_eq(failpoint_errno("store-sync"), EIO);
    ck_assert_int_eq(failpoint_errno("store-sync"), 0);
    setenv("RM_FAILPOINT_ERROR", "store-sync:0", 1); /* malformed: never fails */
    ck_assert_int_eq(failpoint_errno("store-sync"), 0);
    unsetenv("RM_FAILPOINT_ERROR");
    ck_assert_int_eq(failpoint_errno("store-sync"), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("failpoint");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_skips_parse_and_match);
    tcase_add_test(tc, test_skips_reject_malformed_entries);
    tcase_add_test(tc, test_errno_passes_in_range);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
