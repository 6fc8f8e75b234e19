/* Tests of erasures.c: the erasure ledger's records, torn tails and read-only use. */
#include "erasures.h"
#include "rm_err.h"
#include "tsupport.h"

#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int collect(void *ctx, const char *key, size_t key_len, int64_t erased_at_ms)
{
    char *out = ctx;
    size_t len = strlen(out);
    snprintf(out + len, 256 - len, "%.*s@%lld;", (int)key_len, key, (long long)erased_at_ms);
    return 0;
}

static const char *all(erasures_t *erasures, int64_t from)
{
    static char out[256];
    out[0] = '\0';
    ck_assert_int_eq(erasures_scan(erasures, from, collect, out, NULL), 0);
    return out;
}

START_TEST(test_append_scan_and_a_torn_tail)
{
    char err[256], path[4096], *dir = ts_tmpdir();
    erasures_t *e = erasures_open(dir, false, err, sizeof(err));
    ck_assert_msg(e != NULL, "%s", err);
    const char *keys[] = {"C1", "C22"};
    size_t lens[] = {2, 3};
    int64_t ats[] = {100, 200};
    ck_assert_int_eq(erasures_append(e, keys, lens, ats, 2), 0);
    ck_assert_str_eq(all(e, 0), "C1@100;C22@200;");
    int64_t end;
    ck_assert_int_eq(erasures_end(e, &end), 0);
    ck_assert_int_eq(end, 2 * 15 + 5);
    /* A crash in the middle of an append leaves a torn record: readers stop before it. */
    snprintf(path, sizeof(path), "%s/%s", dir, ERASURES_FILE);
    int fd = open(path, O_WRONLY | O_APPEND);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd,
                           "E\x05\x00"
                           "C9",
                           5),
                     5);
    close(fd);
    erasures_t *other = erasures_open(dir, true, err, sizeof(err));
    ck_assert_msg(other != NULL, "%s", err);
    ck_assert_str_eq(all(other, 0), "C1@100;C22@200;");
    int64_t other_end;
    ck_assert_int_eq(erasures_end(other, &other_end), 0);
    ck_assert_int_eq(other_end, end);
    ck_assert_int_eq(erasures_append(other, keys, lens, ats, 1), RM_EINVAL); /* read-only */
    /* The next append cuts the torn record off and goes where it began. */
    const char *more[] = {"C3"};
    size_t more_len[] = {2};
    int64_t more_at[] = {300};
    ck_assert_int_eq(erasures_append(e, more, more_len, more_at, 1), 0);
    ck_assert_str_eq(all(other, 0), "C1@100;C22@200;C3@300;");
    ck_assert_str_eq(all(other, end), "C3@300;");
    erasures_close(other);
    erasures_close(e);
    ts_rmtree(dir);
}
END_TEST

START_TEST(test_a_missing_ledger_reads_empty)
{
    char err[256], *dir = ts_tmpdir();
    erasures_t *e = erasures_open(dir, true, err, sizeof(err));
    ck_assert_msg(e != NULL, "%s", err);
    ck_assert(erasures_readonly(e));
    ck_assert_str_eq(all(e, 0), "");
    int64_t end = -1;
    ck_assert_int_eq(erasures_end(e, &end), 0);
    ck_assert_int_eq(end, 0);
    erasures_close(e);
    ck_assert_ptr_null(erasures_open("/nonexistent/dir", false, err, sizeof(err)));
    ts_rmtree(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("erasures");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_append_scan_and_a_torn_tail);
    tcase_add_test(tc, test_a_missing_ledger_reads_empty);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
