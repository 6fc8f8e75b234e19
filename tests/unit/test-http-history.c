/* Tests of query-api/http_history.c: the dashboard's ring of samples stays bounded,
 * keeps the newest, rolls partitions up per topic with /v1/status's definitions, and
 * prints as JSON. */
#include "../../query-api/http_history.h"
#include "tsupport.h"

#include <check.h>
#include <string.h>

static void sample(http_history_t *h, int64_t t, int64_t next)
{
    http_history_begin(h, t);
    /* orders: one partition 5 behind whose newest event is 1.5 s old, one caught up */
    store_offset_t behind = {next, next + 5, t - 1500, t - 100};
    store_offset_t level = {next, next, t - 90000, t - 100};
    http_history_add(h, "orders", &behind);
    http_history_add(h, "orders", &level);
    if (t >= 3000) {
        store_offset_t c = {7, 7, 1, 1}; /* a topic that appears later */
        http_history_add(h, "customers", &c);
    }
    http_history_add_counts(h, "orders", 2, 1); /* customers has no counters: null */
    http_history_end(h, 2, 1);
}

START_TEST(test_ring_bounded_newest_kept)
{
    http_history_t *h = http_history_new(3);
    ck_assert_ptr_nonnull(h);
    for (int i = 1; i <= 5; i++)
        sample(h, i * 1000, i * 10);
    buf_t out = BUF_INIT;
    ck_assert_int_eq(http_history_json(h, &out), 0);
    ck_assert_str_eq(out.b_data,
                     "{\"interval_ms\":2000,\"capacity\":3,\"topics\":[\"orders\",\"customers\"],"
                     "\"samples\":["
                     "{\"t\":3000,\"parked\":2,\"dead_letters\":1,\"lag_messages\":[5,0],"
                     "\"lag_seconds\":[1.500,0.000],\"next_offset\":[60,7],"
                     "\"topic_parked\":[2,null],\"topic_dead_letters\":[1,null]},"
                     "{\"t\":4000,\"parked\":2,\"dead_letters\":1,\"lag_messages\":[5,0],"
                     "\"lag_seconds\":[1.500,0.000],\"next_offset\":[80,7],"
                     "\"topic_parked\":[2,null],\"topic_dead_letters\":[1,null]},"
                     "{\"t\":5000,\"parked\":2,\"dead_letters\":1,\"lag_messages\":[5,0],"
                     "\"lag_seconds\":[1.500,0.000],\"next_offset\":[100,7],"
                     "\"topic_parked\":[2,null],\"topic_dead_letters\":[1,null]}]}");
    buf_free(&out);
    http_history_free(h);
}
END_TEST

START_TEST(test_unseen_topic_is_null)
{
    http_history_t *h = http_history_new(4);
    sample(h, 1000, 1);
    sample(h, 3000, 2);
    buf_t out = BUF_INIT;
    ck_assert_int_eq(http_history_json(h, &out), 0);
    /* customers was not there at t=1000: null, not 0 (the chart leaves a gap) */
    ck_assert_ptr_nonnull(strstr(out.b_data, "\"lag_messages\":[5,null]"));
    ck_assert_ptr_nonnull(strstr(out.b_data, "\"next_offset\":[4,7]"));
    buf_free(&out);
    http_history_free(h);
}
END_TEST

START_TEST(test_empty)
{
    http_history_t *h = http_history_new(2);
    buf_t out = BUF_INIT;
    ck_assert_int_eq(http_history_json(h, &out), 0);
    ck_assert_str_eq(out.b_data,
                     "{\"interval_ms\":2000,\"capacity\":2,\"topics\":[],\"samples\":[]}");
    buf_free(&out);
    http_history_free(h);
    ck_assert_ptr_null(http_history_new(0));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("http-history");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_ring_bounded_newest_kept);
    tcase_add_test(tc, test_unseen_topic_is_null);
    tcase_add_test(tc, test_empty);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
