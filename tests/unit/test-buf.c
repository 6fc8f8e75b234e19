/* Tests of buf.c: growth, integers and JSON string escaping. */
#include "buf.h"
#include "tsupport.h"

#include <check.h>
#include <stdint.h>
#include <string.h>

START_TEST(test_append_and_reset)
{
    buf_t b = BUF_INIT;
    for (int i = 0; i < 1000; i++)
        ck_assert_int_eq(buf_append_str(&b, "abc"), 0);
    ck_assert_uint_eq(b.b_len, 3000);
    ck_assert_uint_eq(strlen(b.b_data), 3000);
    size_t cap = b.b_cap;
    buf_reset(&b);
    ck_assert_uint_eq(b.b_len, 0);
    ck_assert_uint_eq(b.b_cap, cap); /* memory kept for reuse */
    ck_assert_int_eq(buf_printf(&b, "%d-%s", 42, "x"), 0);
    ck_assert_str_eq(b.b_data, "42-x");
    buf_free(&b);
    buf_free(&b); /* idempotent */
}
END_TEST

START_TEST(test_i64_extremes)
{
    buf_t b = BUF_INIT;
    buf_append_i64(&b, INT64_MIN);
    buf_append_char(&b, ' ');
    buf_append_i64(&b, INT64_MAX);
    buf_append_char(&b, ' ');
    buf_append_i64(&b, 0);
    ck_assert_str_eq(b.b_data, "-9223372036854775808 9223372036854775807 0");
    buf_free(&b);
    char tmp[BUF_I64_TEXT];
    ck_assert_str_eq(buf_i64_text(INT64_MIN, tmp), "-9223372036854775808");
    ck_assert_str_eq(buf_i64_text(-7, tmp), "-7");
    ck_assert_str_eq(buf_i64_text(1800, tmp), "1800");
}
END_TEST

START_TEST(test_b64url_decode)
{
    unsigned char out[8];
    ck_assert_int_eq(buf_b64url_decode("aGk", 3, out, sizeof(out), true), 2); /* "hi" */
    ck_assert_int_eq(memcmp(out, "hi", 2), 0);
    ck_assert_int_eq(buf_b64url_decode("-_8", 3, out, sizeof(out), true), 2);
    ck_assert_int_eq(out[0], 0xfb);
    ck_assert_int_eq(out[1], 0xff);
    ck_assert_int_eq(buf_b64url_decode("aGl", 3, out, sizeof(out), true), -1); /* spare bits */
    ck_assert_int_eq(buf_b64url_decode("aGl", 3, out, sizeof(out), false), 2);
    ck_assert_int_eq(buf_b64url_decode("aGk=", 4, out, sizeof(out), false), -1); /* padding */
    ck_assert_int_eq(buf_b64url_decode("aGk+", 4, out, sizeof(out), false), -1); /* not url */
    ck_assert_int_eq(buf_b64url_decode("aGlhY", 5, out, sizeof(out), false), -1); /* 4n+1 */
    ck_assert_int_eq(buf_b64url_decode("aGloaQ", 6, out, 3, false), -1); /* past cap */
    ck_assert_int_eq(buf_b64url_decode("", 0, out, sizeof(out), true), 0);
}
END_TEST

START_TEST(test_json_escapes)
{
    buf_t b = BUF_INIT;
    const char in[] = "a\"b\\c\n\t\x01/\xc3\xa9";
    buf_append_json_str(&b, in, sizeof(in) - 1);
    ck_assert_str_eq(b.b_data, "\"a\\\"b\\\\c\\n\\t\\u0001/\xc3\xa9\"");
    buf_free(&b);
}
END_TEST

START_TEST(test_json_invalid_utf8_replaced)
{
    buf_t b = BUF_INIT;
    /* lone continuation, overlong '/', surrogate U+D800, truncated 3-byte sequence */
    const char in[] = "x\x80y\xc0\xafz\xed\xa0\x80w\xe2\x82";
    buf_append_json_str(&b, in, sizeof(in) - 1);
    ck_assert_str_eq(b.b_data, "\"x\xef\xbf\xbdy\xef\xbf\xbd\xef\xbf\xbdz\xef\xbf\xbd\xef\xbf\xbd"
                               "\xef\xbf\xbdw\xef\xbf\xbd\xef\xbf\xbd\"");
    buf_free(&b);
}
END_TEST

START_TEST(test_json_embedded_nul)
{
    buf_t b = BUF_INIT;
    buf_append_json_str(&b, "a\0b", 3);
    ck_assert_str_eq(b.b_data, "\"a\\u0000b\"");
    buf_free(&b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("buf");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_append_and_reset);
    tcase_add_test(tc, test_i64_extremes);
    tcase_add_test(tc, test_b64url_decode);
    tcase_add_test(tc, test_json_escapes);
    tcase_add_test(tc, test_json_invalid_utf8_replaced);
    tcase_add_test(tc, test_json_embedded_nul);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
