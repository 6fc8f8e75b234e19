/* Tests of query-api/http_etag.c: the tag of a body and If-None-Match matching. */
#include "../../query-api/http_etag.h"
#include "tsupport.h"

#include <check.h>
#include <string.h>

START_TEST(test_etag_of)
{
    char a[HTTP_ETAG_CHARS], b[HTTP_ETAG_CHARS];
    http_etag_of("", 0, a);
    ck_assert_str_eq(a, "\"2d06800538d394c2\""); /* XXH3-64 of nothing (xxHash's own tests) */
    http_etag_of("a", 1, a);
    ck_assert_str_eq(a, "\"e6c632b61e964e1f\""); /* XXH3_64bits("a", 1), seed 0 */
    http_etag_of("{\"x\":1}", 7, a);
    http_etag_of("{\"x\":1}", 7, b);
    ck_assert_str_eq(a, b);
    http_etag_of("{\"x\":2}", 7, b);
    ck_assert_str_ne(a, b);
    ck_assert_uint_eq(strlen(a), HTTP_ETAG_CHARS - 1);
}
END_TEST

START_TEST(test_if_none_match)
{
    const char *etag = "\"0123456789abcdef\"";
    ck_assert(http_etag_matches("\"0123456789abcdef\"", etag));
    ck_assert(http_etag_matches("W/\"0123456789abcdef\"", etag)); /* weak comparison */
    ck_assert(http_etag_matches("\"x\", \"0123456789abcdef\"", etag));
    ck_assert(http_etag_matches("\"x\",\t\"0123456789abcdef\" ", etag));
    ck_assert(http_etag_matches("\"x\", , \"0123456789abcdef\"", etag)); /* empty element */
    ck_assert(http_etag_matches("*", etag));
    ck_assert(http_etag_matches(" * ", etag));
    ck_assert(!http_etag_matches("\"0123456789abcdee\"", etag));
    ck_assert(!http_etag_matches("0123456789abcdef", etag)); /* unquoted: malformed */
    ck_assert(!http_etag_matches("\"0123456789abcdef", etag));
    ck_assert(!http_etag_matches("\"0123456789abcde\"", etag));
    ck_assert(!http_etag_matches("\"0123456789ABCDEF\"", etag)); /* tags are case-sensitive */
    ck_assert(!http_etag_matches("", etag));
    ck_assert(!http_etag_matches("*, \"x\"", etag));
    ck_assert(!http_etag_matches("\"x\" \"0123456789abcdef\"", etag)); /* no comma */
    ck_assert(!http_etag_matches("w/\"0123456789abcdef\"", etag)); /* W/ is case-sensitive */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("http-etag");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_etag_of);
    tcase_add_test(tc, test_if_none_match);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
