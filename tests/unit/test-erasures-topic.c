/* Tests of erasures_topic.c: the published mark, and that nothing unacknowledged is
 * marked published or merged as read (the broker here never answers). */
#include "cfg.h"
#include "erasures.h"
#include "erasures_topic.h"
#include "rm_err.h"
#include "tsupport.h"

#include <check.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define ID "v.erasures c1" /* topic and cluster id */

static erasures_t *ledger_with(const char *dir, size_t count)
{
    static const char *const keys[] = {"C1", "C22", "C333"};
    static const size_t lens[] = {2, 3, 4};
    static const int64_t ats[] = {100, 200, 300};
    char err[256];
    erasures_t *e = erasures_open(dir, false, err, sizeof(err));
    ck_assert_msg(e != NULL, "%s", err);
    ck_assert_int_eq(erasures_append(e, keys, lens, ats, count), 0);
    return e;
}

static bool published_file_exists(const char *dir)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s", dir, ERASURES_PUBLISHED_FILE);
    return access(path, F_OK) == 0;
}

START_TEST(test_the_mark_is_trusted_only_on_a_record_boundary)
{
    char *dir = ts_tmpdir();
    erasures_t *e = ledger_with(dir, 3); /* records at 0, 17, 35; end 54 */
    ck_assert_int_eq(erasures_topic_mark_load(dir, ID, e), 0); /* no file: publish all */
    ck_assert_int_eq(erasures_topic_mark_store(dir, ID, 17), 0);
    ck_assert_int_eq(erasures_topic_mark_load(dir, ID, e), 17);
    ck_assert_int_eq(erasures_topic_mark_store(dir, ID, 54), 0);
    ck_assert_int_eq(erasures_topic_mark_load(dir, ID, e), 54); /* the end: all published */
    /* A mark inside a record, or past the end (the ledger was replaced or cut back),
     * could skip an erasure: publish everything again. */
    ck_assert_int_eq(erasures_topic_mark_store(dir, ID, 20), 0);
    ck_assert_int_eq(erasures_topic_mark_load(dir, ID, e), 0);
    ck_assert_int_eq(erasures_topic_mark_store(dir, ID, 90), 0);
    ck_assert_int_eq(erasures_topic_mark_load(dir, ID, e), 0);
    ck_assert_int_eq(erasures_topic_mark_store(dir, ID, 17), 0);
    ck_assert_int_eq(erasures_topic_mark_load(dir, "v.erasures other-cluster", e), 0);
    ck_assert_int_eq(erasures_topic_mark_load(dir, "renamed.erasures c1", e), 0);
    ck_assert_int_eq(erasures_topic_mark_load(dir, "v.erasures c", e), 0); /* a prefix */
    ts_write_file(dir, ERASURES_PUBLISHED_FILE, "17x v.erasures c1");
    ck_assert_int_eq(erasures_topic_mark_load(dir, ID, e), 0);
    ts_write_file(dir, ERASURES_PUBLISHED_FILE, "");
    ck_assert_int_eq(erasures_topic_mark_load(dir, ID, e), 0);
    erasures_close(e);
    ts_rmtree(dir);
}
END_TEST

static cfg_t *unreachable_broker(void)
{
    char err[256];
    cfg_t *cfg = cfg_load(NULL, err, sizeof(err));
    ck_assert_msg(cfg != NULL, "%s", err);
    /* Port 1 on loopback: connections are refused, nothing ever answers. */
    ck_assert_int_eq(cfg_set(cfg, "kafka.bootstrap.servers", "127.0.0.1:1", err, sizeof(err)), 0);
    ck_assert_int_eq(cfg_set(cfg, "kafka.log_level", "0", err, sizeof(err)), 0);
    return cfg;
}

START_TEST(test_nothing_unacknowledged_is_marked_published)
{
    char err[256], *dir = ts_tmpdir();
    cfg_t *cfg = unreachable_broker();
    erasures_t *e = ledger_with(dir, 2);
    erasures_topic_t *et = erasures_topic_new(cfg, "v.erasures", e, dir, true, err, sizeof(err));
    ck_assert_msg(et != NULL, "%s", err);
    ck_assert_int_eq(erasures_topic_pending(et), 2 * 15 + 5);
    ck_assert_int_eq(erasures_topic_push(et, 0, err, sizeof(err)), 0); /* produced */
    ck_assert_int_eq(erasures_topic_push(et, 300, err, sizeof(err)), 0); /* still in flight */
    ck_assert_int_eq(erasures_topic_pending(et), 2 * 15 + 5);
    ck_assert(!published_file_exists(dir));
    erasures_topic_destroy(et);
    erasures_close(e);
    cfg_destroy(cfg);
    ts_rmtree(dir);
}
END_TEST

START_TEST(test_a_pull_that_reaches_no_broker_is_an_error_not_an_empty_topic)
{
    char err[256], *dir = ts_tmpdir();
    cfg_t *cfg = unreachable_broker();
    erasures_t *e = ledger_with(dir, 1);
    erasures_topic_t *et = erasures_topic_new(cfg, "v.erasures", e, dir, false, err, sizeof(err));
    ck_assert_msg(et != NULL, "%s", err);
    size_t merged = 99;
    int rc = erasures_topic_pull(et, 500, &merged, err, sizeof(err));
    ck_assert_msg(rc == RM_ETIMEOUT || rc == RM_EKAFKA, "pull: %d %s", rc, err);
    ck_assert_int_eq(merged, 99); /* written only on success */
    ck_assert_int_eq(erasures_topic_push(et, 0, err, sizeof(err)), RM_EINVAL); /* pull-only */
    erasures_topic_destroy(et);
    erasures_close(e);
    cfg_destroy(cfg);
    ts_rmtree(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("erasures-topic");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_the_mark_is_trusted_only_on_a_record_boundary);
    tcase_add_test(tc, test_nothing_unacknowledged_is_marked_published);
    tcase_add_test(tc, test_a_pull_that_reaches_no_broker_is_an_error_not_an_empty_topic);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
