/* Tests of query-api/http_etag.c: the tag of a body and If-None-Match matching. */
#include "../../query-api/http_etag.h"
#include "tsupport.h"

#include <check.h>
#include <string.h>

START_TEST(test_etag_of)
{
    char a[HTTP_ETAG_CHARS], b[HTTP_ETAG_CHARS];
    http_etag_of("", 0, NULL, a);
    ck_assert_str_eq(a, "W/\"2d06800538d394c2\""); /* XXH3-64 of nothing (xxHash's tests) */
    http_etag_of("a", 1, NULL, a);
    ck_assert_str_eq(a, "W/\"e6c632b61e964e1f\""); /* XXH3_64bits("a", 1), seed 0 */
    http_etag_of("{\"x\":1}", 7, NULL, a);
    http_etag_of("{\"x\":1}", 7, NULL, b);
    ck_assert_str_eq(a, b);
    http_etag_of("{\"x\":2}", 7, NULL, b);
    ck_assert_str_ne(a, b);
    ck_assert_uint_eq(strlen(a), HTTP_ETAG_CHARS - 1);
}
END_TEST

/* The ranges a render marks volatile are left out, and only those: two documents that
 * differ only in their lag and fetch time share a tag; any other difference does not. */
START_TEST(test_etag_skips_volatile_ranges)
{
    static const char one[] = "{\"s\":[1],\"f\":{\"at\":111,\"lag\":5},\"t\":9}";
    static const char two[] = "{\"s\":[1],\"f\":{\"at\":22222,\"lag\":70},\"t\":9}";
    static const char other[] = "{\"s\":[2],\"f\":{\"at\":111,\"lag\":5},\"t\":9}";
    static const char three[] = "{\"s\":[1],\"f\":{\"at\":111,\"lag\":5},\"t\":8}";
    render_spans_t sa = {0}, sb = {0}, sc = {0}, sd = {0};
    const char *docs[] = {one, two, other, three};
    render_spans_t *spans[] = {&sa, &sb, &sc, &sd};
    char tags[4][HTTP_ETAG_CHARS];
    for (int d = 0; d < 4; d++) {
        const char *at = strstr(docs[d], "\"at\":") + 5, *lag = strstr(docs[d], "\"lag\":") + 6;
        render_spans_add(spans[d], (size_t)(at - docs[d]), (size_t)(strchr(at, ',') - docs[d]));
        render_spans_add(spans[d], (size_t)(lag - docs[d]), (size_t)(strchr(lag, '}') - docs[d]));
        http_etag_of(docs[d], strlen(docs[d]), spans[d], tags[d]);
    }
    ck_assert_str_eq(tags[0], tags[1]);
    ck_assert_str_ne(tags[0], tags[2]);
    ck_assert_str_ne(tags[0], tags[3]);
    /* without ranges, or with more than fit, every byte counts */
    char whole[HTTP_ETAG_CHARS];
    http_etag_of(one, strlen(one), NULL, whole);
    ck_assert_str_ne(whole, tags[0]);
    render_spans_t full = {0};
    for (int i = 0; i < RENDER_MAX_SPANS + 1; i++)
        render_spans_add(&full, 0, 0);
    ck_assert(full.rsp_overflow);
    http_etag_of(one, strlen(one), &full, tags[2]);
    ck_assert_str_eq(tags[2], whole);
}
END_TEST

START_TEST(test_if_none_match)
{
    const char *etag = "W/\"0123456789abcdef\"";
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
    tcase_add_test(tc, test_etag_skips_volatile_ranges);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
