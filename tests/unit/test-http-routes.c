/* Tests of query-api/http_routes.c and http_problem.c: routes, percent-decoding tricks,
 * oversized input, and problem+json bodies. */
#include "../../query-api/http_problem.h"
#include "../../query-api/http_routes.h"
#include "tsupport.h"

#include <check.h>
#include <string.h>

static http_request_t parse(const char *url)
{
    http_request_t req;
    http_parse_path(url, &req);
    return req;
}

START_TEST(test_routes)
{
    ck_assert_int_eq(parse("/healthz").hr_route, HTTP_ROUTE_HEALTHZ);
    ck_assert_int_eq(parse("/readyz").hr_route, HTTP_ROUTE_READYZ);
    ck_assert_int_eq(parse("/metrics").hr_route, HTTP_ROUTE_METRICS);
    ck_assert_int_eq(parse("/").hr_route, HTTP_ROUTE_NOT_FOUND);
    ck_assert_int_eq(parse("/healthz/").hr_route, HTTP_ROUTE_NOT_FOUND);
    ck_assert_int_eq(parse("/v2/views/x/y").hr_route, HTTP_ROUTE_NOT_FOUND);
    /* the agent screen is a page of its own, open like the dashboard (it carries no data) */
    ck_assert_int_eq(parse("/ui/").hr_route, HTTP_ROUTE_UI);
    ck_assert_int_eq(parse("/ui").hr_route, HTTP_ROUTE_UI);
    ck_assert_str_eq(http_route_name(HTTP_ROUTE_UI), "ui");
    ck_assert_int_eq(parse("/ui/x").hr_route, HTTP_ROUTE_NOT_FOUND);
    ck_assert_int_eq(parse("/v1/status/history").hr_route, HTTP_ROUTE_HISTORY);
    ck_assert_str_eq(http_route_name(HTTP_ROUTE_HISTORY), "status_history");
    http_request_t req = parse("/v1/views/customer360/C1-000042");
    ck_assert_int_eq(req.hr_route, HTTP_ROUTE_VIEW);
    ck_assert_str_eq(req.hr_view, "customer360");
    ck_assert_str_eq(req.hr_key, "C1-000042");
    req = parse("/v1/views/customer360");
    ck_assert_int_eq(req.hr_route, HTTP_ROUTE_LOOKUP);
    ck_assert_str_eq(req.hr_view, "customer360");
}
END_TEST

START_TEST(test_percent_encoding_tricks)
{
    http_request_t req = parse("/v1/views/v/a%2Fb%20c%C3%A9");
    ck_assert_int_eq(req.hr_route, HTTP_ROUTE_VIEW);
    ck_assert_str_eq(req.hr_key, "a/b c\xc3\xa9");
    ck_assert_uint_eq(req.hr_key_len, 7);
    ck_assert_int_eq(parse("/v1/views/v/a%00b").hr_route, HTTP_ROUTE_BAD);  /* encoded NUL */
    ck_assert_int_eq(parse("/v1/views/v/a%4").hr_route, HTTP_ROUTE_BAD);    /* truncated */
    ck_assert_int_eq(parse("/v1/views/v/a%").hr_route, HTTP_ROUTE_BAD);
    ck_assert_int_eq(parse("/v1/views/v/a%zz").hr_route, HTTP_ROUTE_BAD);   /* not hex */
    ck_assert_int_eq(parse("/v1/views/v/a/b").hr_route, HTTP_ROUTE_BAD);    /* raw slash */
    ck_assert_int_eq(parse("/v1/views/v/").hr_route, HTTP_ROUTE_BAD);       /* empty key */
    ck_assert_int_eq(parse("/v1/views//k").hr_route, HTTP_ROUTE_BAD);       /* empty view */
    ck_assert_int_eq(parse("/v1/views/v%2e/k").hr_route, HTTP_ROUTE_BAD);   /* escapes in view */
    ck_assert_int_eq(parse("/v1/views/v/%2e%2e").hr_route, HTTP_ROUTE_VIEW); /* ".." is a key */
    char out[8];
    ck_assert_int_eq(http_percent_decode("a+b", 3, out, sizeof(out)), 3); /* '+' kept */
    ck_assert_int_eq(memcmp(out, "a+b", 3), 0);
    ck_assert_int_eq(http_query_decode("a+b%2B", 6, out, sizeof(out)), 4); /* query: space */
    ck_assert_int_eq(memcmp(out, "a b+", 4), 0);
    /* decoded exactly once: an escaped escape stays an escape */
    http_request_t twice = parse("/v1/views/v/%2541");
    ck_assert_str_eq(twice.hr_key, "%41");
}
END_TEST

START_TEST(test_long_input)
{
    char url[4096];
    strcpy(url, "/v1/views/v/");
    memset(url + 12, 'k', 128);
    url[12 + 128] = '\0';
    ck_assert_int_eq(parse(url).hr_route, HTTP_ROUTE_VIEW); /* 128 bytes: the limit */
    strcat(url, "k");
    ck_assert_int_eq(parse(url).hr_route, HTTP_ROUTE_BAD);
    memset(url + 12, 'k', 3000);
    url[3012] = '\0';
    http_request_t req = parse(url);
    ck_assert_int_eq(req.hr_route, HTTP_ROUTE_BAD);
    ck_assert_str_eq(req.hr_problem, "the path is too long");
    /* 128 bytes that decode from 384 escaped ones are fine; 129 are not */
    strcpy(url, "/v1/views/v/");
    for (int i = 0; i < 129; i++)
        strcat(url, "%41");
    ck_assert_int_eq(parse(url).hr_route, HTTP_ROUTE_BAD);
}
END_TEST

START_TEST(test_problem_json)
{
    buf_t out = BUF_INIT;
    ck_assert_int_eq(http_problem_render(&out, 404, "not-found", "Not found", "no \"such\" key",
                                         "/v1/views/{view}/{key}"),
                     0);
    ck_assert(ts_json_equal(out.b_data,
                            "{\"type\":\"https://readmodel.dev/problems/not-found\",\"title\":"
                            "\"Not found\",\"status\":404,\"detail\":\"no \\\"such\\\" key\","
                            "\"instance\":\"/v1/views/{view}/{key}\"}"));
    buf_free(&out);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("http-routes");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_routes);
    tcase_add_test(tc, test_percent_encoding_tricks);
    tcase_add_test(tc, test_long_input);
    tcase_add_test(tc, test_problem_json);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
