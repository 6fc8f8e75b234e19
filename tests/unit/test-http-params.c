/* Tests of query-api/http_params.c: the fields list, page cursors (round trip and every
 * way a cursor can be malformed), consistency tokens and bounded integers. */
#include "../../query-api/http_params.h"
#include "rm_err.h"
#include "tsupport.h"

#include <check.h>
#include <string.h>

/* A view with just the sections the fields parser looks at. */
static view_section_t sections[] = {
    {.vs_name = (char *)"profile", .vs_kind = VIEW_SINGLE},
    {.vs_name = (char *)"orders", .vs_kind = VIEW_LIST},
    {.vs_name = (char *)"orders_archive", .vs_kind = VIEW_LIST},
    {.vs_name = (char *)"counters", .vs_kind = VIEW_COUNTERS},
};

static view_t fake_view(void)
{
    view_t view;
    memset(&view, 0, sizeof(view));
    view.v_name = (char *)"customer360";
    view.v_sections = sections;
    view.v_section_count = sizeof(sections) / sizeof(sections[0]);
    return view;
}

START_TEST(test_fields)
{
    view_t view = fake_view();
    uint32_t mask = 0;
    char bad[16];
    ck_assert_int_eq(http_params_fields(&view, "profile,orders", &mask, bad, sizeof(bad)), 0);
    ck_assert_uint_eq(mask, 0x3);
    ck_assert_int_eq(http_params_fields(&view, "counters", &mask, bad, sizeof(bad)), 0);
    ck_assert_uint_eq(mask, 0x8);
    ck_assert_int_eq(http_params_fields(&view, "orders,orders", &mask, bad, sizeof(bad)), 0);
    ck_assert_uint_eq(mask, 0x2);
    ck_assert_int_eq(http_params_fields(&view, "orders_archive", &mask, bad, sizeof(bad)), 0);
    ck_assert_uint_eq(mask, 0x4); /* a name that extends another is its own section */
    mask = 77;
    ck_assert_int_eq(http_params_fields(&view, "profile,bogus", &mask, bad, sizeof(bad)),
                     RM_ENOTFOUND);
    ck_assert_str_eq(bad, "bogus");
    ck_assert_uint_eq(mask, 77); /* written only on success */
    ck_assert_int_eq(http_params_fields(&view, "order", &mask, bad, sizeof(bad)), RM_ENOTFOUND);
    ck_assert_int_eq(http_params_fields(&view, "Profile", &mask, bad, sizeof(bad)), RM_ENOTFOUND);
    ck_assert_int_eq(http_params_fields(&view, "profile ", &mask, bad, sizeof(bad)), RM_ENOTFOUND);
    ck_assert_int_eq(
        http_params_fields(&view, "a-very-long-unknown-section-name", &mask, bad, sizeof(bad)),
        RM_ENOTFOUND);
    ck_assert_uint_eq(strlen(bad), sizeof(bad) - 1); /* truncated, terminated */
    ck_assert_int_eq(http_params_fields(&view, "", &mask, bad, sizeof(bad)), RM_EINVAL);
    ck_assert_int_eq(http_params_fields(&view, "profile,", &mask, bad, sizeof(bad)), RM_EINVAL);
    ck_assert_int_eq(http_params_fields(&view, ",profile", &mask, NULL, 0), RM_EINVAL);
    ck_assert_int_eq(http_params_fields(&view, "profile,,orders", &mask, NULL, 0), RM_EINVAL);
}
END_TEST

static render_cursor_t cursor_of(int64_t sort, const char *id)
{
    render_cursor_t cursor = {.rc_set = true, .rc_sort = sort, .rc_id_len = strlen(id)};
    memcpy(cursor.rc_id, id, strlen(id));
    return cursor;
}

static void round_trip(int64_t sort, const char *id)
{
    render_cursor_t in = cursor_of(sort, id), out;
    char text[HTTP_CURSOR_MAX_CHARS + 1];
    size_t len = http_params_cursor_encode(&in, text, sizeof(text));
    ck_assert_uint_eq(len, strlen(text));
    ck_assert_uint_le(len, HTTP_CURSOR_MAX_CHARS);
    ck_assert_msg(
        strspn(text, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == len,
        "not base64url: %s", text);
    memset(&out, 0, sizeof(out));
    ck_assert_int_eq(http_params_cursor_decode(text, &out), 0);
    ck_assert(out.rc_set);
    ck_assert_int_eq(out.rc_sort, sort);
    ck_assert_uint_eq(out.rc_id_len, strlen(id));
    ck_assert_int_eq(memcmp(out.rc_id, id, strlen(id)), 0);
}

START_TEST(test_cursor_round_trip)
{
    round_trip(1700000000123, "O7-000042-3");
    round_trip(0, "x");
    round_trip(-1, "ab"); /* every remainder of the byte count mod 3 */
    round_trip(INT64_MIN, "abc");
    round_trip(INT64_MAX, "\xff\xfe/+=?&");
    char id[VIEW_KEY_MAX_BYTES + 1];
    memset(id, 'k', VIEW_KEY_MAX_BYTES);
    id[VIEW_KEY_MAX_BYTES] = '\0';
    round_trip(42, id);
}
END_TEST

START_TEST(test_cursor_malformed)
{
    render_cursor_t out = {0};
    char good[HTTP_CURSOR_MAX_CHARS + 1];
    render_cursor_t in = cursor_of(5, "O1");
    size_t len = http_params_cursor_encode(&in, good, sizeof(good)); /* 11 bytes: 15 chars */
    ck_assert_uint_eq(len, 15);
    ck_assert_int_eq(http_params_cursor_decode("", &out), RM_EINVAL);
    ck_assert_int_eq(http_params_cursor_decode("AQ", &out), RM_EINVAL); /* version only */
    ck_assert_int_eq(http_params_cursor_decode("AQAAAAAAAAAF", &out), RM_EINVAL); /* no id */
    char text[256];
    strcpy(text, good);
    strcat(text, "=");
    ck_assert_int_eq(http_params_cursor_decode(text, &out), RM_EINVAL); /* padding */
    strcpy(text, good);
    text[3] = '+'; /* base64, not base64url */
    ck_assert_int_eq(http_params_cursor_decode(text, &out), RM_EINVAL);
    strcpy(text, good);
    text[14] = (char)(text[14] + 1); /* non-zero bits after the last byte */
    ck_assert_int_eq(http_params_cursor_decode(text, &out), RM_EINVAL);
    strcpy(text, good);
    text[15] = 'A'; /* 17 chars: one is left over, which encodes no whole byte */
    text[16] = 'A';
    text[17] = '\0';
    ck_assert_int_eq(http_params_cursor_decode(text, &out), RM_EINVAL);
    strcpy(text, good);
    text[0] = 'A'; /* "AgAA": version 2 */
    text[1] = 'g';
    ck_assert_int_eq(http_params_cursor_decode(text, &out), RM_EINVAL);
    render_cursor_t nul = cursor_of(5, "a");
    nul.rc_id_len = 2; /* "a\0" */
    http_params_cursor_encode(&nul, text, sizeof(text));
    ck_assert_int_eq(http_params_cursor_decode(text, &out), RM_EINVAL);
    memset(text, 'A', 200);
    text[200] = '\0';
    ck_assert_int_eq(http_params_cursor_decode(text, &out), RM_EINVAL); /* too long */
    ck_assert(!out.rc_set); /* never written on failure */
    ck_assert_int_eq(http_params_cursor_decode(good, &out), 0);
}
END_TEST

START_TEST(test_min_offsets)
{
    http_min_offset_t tokens[4];
    size_t count = 0;
    ck_assert_int_eq(http_params_min_offsets("orders:3:1234,payments:1:77", tokens, 4, &count), 0);
    ck_assert_uint_eq(count, 2);
    ck_assert_str_eq(tokens[0].mo_topic, "orders");
    ck_assert_int_eq(tokens[0].mo_partition, 3);
    ck_assert_int_eq(tokens[0].mo_offset, 1234);
    ck_assert_str_eq(tokens[1].mo_topic, "payments");
    ck_assert_int_eq(tokens[1].mo_partition, 1);
    ck_assert_int_eq(tokens[1].mo_offset, 77);
    /* appended (a header after the parameter); a repeated partition keeps the highest */
    ck_assert_int_eq(
        http_params_min_offsets("orders:3:99,orders:3:2000,a.b_c-d:0:0", tokens, 4, &count), 0);
    ck_assert_uint_eq(count, 3);
    ck_assert_int_eq(tokens[0].mo_offset, 2000);
    ck_assert_str_eq(tokens[2].mo_topic, "a.b_c-d");
    ck_assert_int_eq(http_params_min_offsets("t:2147483647:9223372036854775807", tokens, 4, &count),
                     0);
    ck_assert_int_eq(tokens[3].mo_partition, INT32_MAX);
    ck_assert_int_eq(tokens[3].mo_offset, INT64_MAX);
    ck_assert_int_eq(http_params_min_offsets("u:0:1", tokens, 4, &count), RM_EINVAL); /* full */

    static const char *const bad[] = {
        "",
        ",",
        "orders",
        "orders:3",
        "orders:3:",
        ":3:1",
        "orders::1",
        "orders:3:1,",
        "orders:-1:5",
        "orders:3:-5",
        "orders:3:1:2",
        "orders:3:1x",
        "orders: 3:1",
        "ord ers:3:1",
        "ord/ers:3:1",
        "orders:2147483648:1",
        "orders:3:9223372036854775808",
        "orders:3:99999999999999999999999",
        "orders:+3:1",
        "a-topic-name-that-is-longer-than-sixty-four-bytes-which-kafka-allows-but-we-not:0:1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        count = 0;
        ck_assert_msg(http_params_min_offsets(bad[i], tokens, 4, &count) == RM_EINVAL,
                      "accepted '%s'", bad[i]);
    }
}
END_TEST

START_TEST(test_uint)
{
    int64_t value = -1;
    ck_assert_int_eq(http_params_uint("0", 10, &value), 0);
    ck_assert_int_eq(value, 0);
    ck_assert_int_eq(http_params_uint("10", 10, &value), 0);
    ck_assert_int_eq(value, 10);
    ck_assert_int_eq(http_params_uint("007", 10, &value), 0);
    ck_assert_int_eq(value, 7);
    value = -1;
    ck_assert_int_eq(http_params_uint("11", 10, &value), RM_EINVAL);
    ck_assert_int_eq(http_params_uint("5", 0, &value), RM_EINVAL); /* digit above max */
    ck_assert_int_eq(http_params_uint("", 10, &value), RM_EINVAL);
    ck_assert_int_eq(http_params_uint("-1", 10, &value), RM_EINVAL);
    ck_assert_int_eq(http_params_uint("1e3", 10000, &value), RM_EINVAL);
    ck_assert_int_eq(http_params_uint(" 1", 10, &value), RM_EINVAL);
    ck_assert_int_eq(http_params_uint("9223372036854775807", INT64_MAX, &value), 0);
    ck_assert_int_eq(value, INT64_MAX);
    ck_assert_int_eq(http_params_uint("9223372036854775808", INT64_MAX, &value), RM_EINVAL);
    ck_assert_int_eq(value, INT64_MAX);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("http-params");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_fields);
    tcase_add_test(tc, test_cursor_round_trip);
    tcase_add_test(tc, test_cursor_malformed);
    tcase_add_test(tc, test_min_offsets);
    tcase_add_test(tc, test_uint);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
