/* Tests of query-api/http_cursor.c: sealed page cursors. */
#include "../../query-api/http_cursor.h"
#include "buf.h"
#include "rm_err.h"
#include "tsupport.h"

#include <check.h>
#include <string.h>

static http_cursor_keys_t keys, other_keys;

static void setup(void)
{
    memset(&keys, 1, sizeof(keys));
    memset(&other_keys, 2, sizeof(other_keys));
}

static render_cursor_t position(int64_t sort, const char *id)
{
    render_cursor_t cursor = {.rc_set = true, .rc_sort = sort, .rc_id_len = strlen(id)};
    memcpy(cursor.rc_id, id, strlen(id));
    return cursor;
}

START_TEST(test_seal_then_open)
{
    http_cursor_scope_t scope = {&keys, "customer360", "C1", 2};
    render_cursor_t in = position(1796292741083, "O-000017"), out;
    char text[HTTP_CURSOR_TEXT_MAX + 1], again[HTTP_CURSOR_TEXT_MAX + 1];
    size_t n = http_cursor_seal(&scope, "orders", &in, text, sizeof(text));
    ck_assert_uint_eq(n, HTTP_CURSOR_TEXT_MAX);
    ck_assert_uint_eq(strlen(text), n);
    ck_assert_int_eq(http_cursor_open(&scope, "orders", text, &out), 0);
    ck_assert(out.rc_set);
    ck_assert_int_eq(out.rc_sort, in.rc_sort);
    ck_assert_uint_eq(out.rc_id_len, in.rc_id_len);
    ck_assert(memcmp(out.rc_id, in.rc_id, in.rc_id_len) == 0);
    /* deterministic: the same position in the same scope is the same text */
    ck_assert_uint_eq(http_cursor_seal(&scope, "orders", &in, again, sizeof(again)), n);
    ck_assert_str_eq(text, again);
    /* every cursor has one length, whatever its id's */
    render_cursor_t longer = position(1, "an-item-id-much-longer-than-the-other-one");
    ck_assert_uint_eq(http_cursor_seal(&scope, "orders", &longer, again, sizeof(again)), n);
    /* too small a buffer: nothing */
    ck_assert_uint_eq(http_cursor_seal(&scope, "orders", &in, again, 10), 0);
}
END_TEST

START_TEST(test_nothing_shows)
{
    http_cursor_scope_t scope = {&keys, "customer360", "C1", 2};
    render_cursor_t in = position(0x0102030405060708, "ITEM-ID-VISIBLE");
    char text[HTTP_CURSOR_TEXT_MAX + 1];
    ck_assert_uint_gt(http_cursor_seal(&scope, "orders", &in, text, sizeof(text)), 0);
    unsigned char raw[HTTP_CURSOR_SEALED_BYTES];
    ck_assert_int_eq(buf_b64url_decode(text, strlen(text), raw, sizeof(raw), true),
                     HTTP_CURSOR_SEALED_BYTES);
    ck_assert_ptr_null(memmem(raw, sizeof(raw), "ITEM-ID", 7));
    static const unsigned char sort[] = {1, 2, 3, 4, 5, 6, 7, 8};
    ck_assert_ptr_null(memmem(raw, sizeof(raw), sort, 4));
}
END_TEST

START_TEST(test_bound_and_unforgeable)
{
    http_cursor_scope_t scope = {&keys, "customer360", "C1", 2};
    render_cursor_t in = position(42, "O1"), out;
    char text[HTTP_CURSOR_TEXT_MAX + 1];
    ck_assert_uint_gt(http_cursor_seal(&scope, "orders", &in, text, sizeof(text)), 0);
    http_cursor_scope_t other_key = {&keys, "customer360", "C2", 2};
    http_cursor_scope_t other_view = {&keys, "customer361", "C1", 2};
    http_cursor_scope_t other_server = {&other_keys, "customer360", "C1", 2};
    ck_assert_int_eq(http_cursor_open(&other_key, "orders", text, &out), RM_EINVAL);
    ck_assert_int_eq(http_cursor_open(&other_view, "orders", text, &out), RM_EINVAL);
    ck_assert_int_eq(http_cursor_open(&other_server, "orders", text, &out), RM_EINVAL);
    ck_assert_int_eq(http_cursor_open(&scope, "returns", text, &out), RM_EINVAL);
    /* any changed character is refused */
    for (size_t i = 0; i < strlen(text); i++) {
        char forged[HTTP_CURSOR_TEXT_MAX + 1];
        memcpy(forged, text, sizeof(forged));
        forged[i] = forged[i] == 'A' ? 'B' : 'A';
        ck_assert_msg(http_cursor_open(&scope, "orders", forged, &out) == RM_EINVAL, "at %zu", i);
    }
    /* the old unsealed layout (version 1, sort key, id) and junk */
    static const char *const bad[] = {"", "AQAAAAAAAAAqTzE", "!!!!", "x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_int_eq(http_cursor_open(&scope, "orders", bad[i], &out), RM_EINVAL);
    char longer[HTTP_CURSOR_TEXT_MAX + 8];
    snprintf(longer, sizeof(longer), "%sAAAA", text);
    ck_assert_int_eq(http_cursor_open(&scope, "orders", longer, &out), RM_EINVAL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("http-cursor");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_seal_then_open);
    tcase_add_test(tc, test_nothing_shows);
    tcase_add_test(tc, test_bound_and_unforgeable);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
