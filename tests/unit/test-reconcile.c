/* Tests of reconcile's source mapping (source.c) and comparison (compare.c) against the
 * real Customer 360 definition: the URLs it builds, the conversions, and that every kind
 * of difference is reported once, classified by freshness, with the right correction. */
#include "compare.h"
#include "report.h"
#include "rm_err.h"
#include "source.h"
#include "tsupport.h"
#include "view.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static catalog_t *catalog;
static view_t *view;
static char *dir;

static void setup(void)
{
    catalog = ts_catalog();
    view = ts_view(catalog);
    dir = ts_tmpdir();
}

static void teardown(void)
{
    view_destroy(view);
    catalog_destroy(catalog);
    ts_rmtree(dir);
}

START_TEST(test_times)
{
    int64_t ms;
    ck_assert_int_eq(remote_parse_time("1970-01-01T00:00:00Z", &ms), 0);
    ck_assert_int_eq(ms, 0);
    ck_assert_int_eq(remote_parse_time("2026-12-01T20:00:00.123Z", &ms), 0);
    ck_assert_int_eq(ms, 1796155200123LL);
    ck_assert_int_eq(remote_parse_time("2026-12-01T21:00:00.1+01:00", &ms), 0);
    ck_assert_int_eq(ms, 1796155200100LL);
    ck_assert_int_eq(remote_parse_time("2026-12-01T20:00:00", &ms), RM_EINVAL); /* no zone */
    ck_assert_int_eq(remote_parse_time("2026-13-01T20:00:00Z", &ms), RM_EINVAL);
    ck_assert_int_eq(remote_parse_time("yesterday", &ms), RM_EINVAL);
    ck_assert_int_eq(remote_parse_time("2026-12-01T20:00:00.Z", &ms), RM_EINVAL);
}
END_TEST

START_TEST(test_urls)
{
    char base[256], url[512];
    const char *urls = "customers=http://crm:8080/,orders=http://oms:9000/api";
    ck_assert_int_eq(remote_base_url(urls, "customers", base, sizeof(base)), 0);
    ck_assert_str_eq(base, "http://crm:8080");
    ck_assert_int_eq(remote_base_url(urls, "orders", base, sizeof(base)), 0);
    ck_assert_str_eq(base, "http://oms:9000/api");
    ck_assert_int_eq(remote_base_url(urls, "order", base, sizeof(base)), RM_ENOTFOUND);
    ck_assert_int_eq(remote_base_url("customers", "customers", base, sizeof(base)), RM_EINVAL);
    const view_source_t *orders = view_source_for(view, view_section_index(view, "orders"));
    ck_assert_int_eq(source_url(orders, base, "C1/ä b", 1, url, sizeof(url)), 0);
    ck_assert_str_eq(url, "http://oms:9000/api/customers/C1%2F%C3%A4%20b/orders");
    ck_assert_int_eq(source_url(orders, base, "C1", 3, url, sizeof(url)), 0);
    ck_assert_str_eq(url, "http://oms:9000/api/customers/C1/orders?page=3");
    const view_source_t *returns = view_source_for(view, view_section_index(view, "returns"));
    ck_assert_int_eq(source_url(returns, base, "C1", 2, url, sizeof(url)), 0);
    ck_assert_str_eq(url, "http://oms:9000/api/customers/C1/returns?status=open&page=2");
}
END_TEST

static json_t *parse(const char *text)
{
    json_error_t err;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &err);
    ck_assert_msg(v != NULL, "%s: %s", text, err.text);
    return v;
}

START_TEST(test_mapping)
{
    int orders = view_section_index(view, "orders");
    const view_source_t *src = view_source_for(view, orders);
    json_t *answer = parse("{\"orders\":[{\"id\":\"O1\",\"placed_at\":\"1970-01-01T00:00:01.5Z\","
                           "\"total_cents\":500,\"currency\":\"EUR\",\"line_count\":2,"
                           "\"status\":\"CREATED\",\"updated_at\":\"1970-01-01T00:00:02Z\"}],"
                           "\"next_page\":2}");
    json_t *items;
    long next;
    const char *next_url;
    ck_assert_int_eq(source_page(src, answer, &items, &next, &next_url), 0);
    ck_assert_int_eq(next, 2);
    ck_assert_ptr_null(next_url);
    json_t *mapped = source_map_record(view, src, json_array_get(items, 0));
    char *text = json_dumps(mapped, JSON_SORT_KEYS | JSON_COMPACT);
    ck_assert_str_eq(text, "{\"@item\":\"O1\",\"@updated_at\":2000,\"created_at\":1500,"
                           "\"currency\":\"EUR\",\"line_count\":2,\"order_id\":\"O1\","
                           "\"payment_status\":null,\"shipment_status\":null,"
                           "\"status\":\"CREATED\",\"total_cents\":500}");
    free(text);
    json_decref(mapped);
    json_decref(answer);
    answer = parse("{\"orders\":{}}");
    ck_assert_int_eq(source_page(src, answer, &items, &next, &next_url), RM_EINVAL);
    json_decref(answer);
    answer = parse("{\"a\":{\"b\":{\"c\":7}}}");
    ck_assert_int_eq(json_integer_value(remote_member(answer, "a.b.c")), 7);
    ck_assert_ptr_null(remote_member(answer, "a.x.c"));
    json_decref(answer);
}
END_TEST

/* Collects corrections as "op section item fields" lines. */
static char fixes[4096];
static int on_fix(void *ctx, const char *key, const char *section, compare_op_t op,
                  const char *item, json_t *fields, const char *url, const char *reason)
{
    (void)ctx, (void)url, (void)reason;
    static const char *const ops[] = {"SET", "UPSERT", "DELETE"};
    char *text = json_dumps(fields, JSON_SORT_KEYS | JSON_COMPACT);
    size_t n = strlen(fixes);
    snprintf(fixes + n, sizeof(fixes) - n, "%s %s %s %s %s\n", ops[op], key, section,
             item ? item : "-", text);
    free(text);
    return 0;
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    static char data[16384];
    size_t n = fread(data, 1, sizeof(data) - 1, f);
    data[n] = '\0';
    fclose(f);
    return data;
}

START_TEST(test_compare_classifies_and_fixes)
{
    char path[4096], err[256];
    snprintf(path, sizeof(path), "%s/r.jsonl", dir);
    report_opts_t ro = {
        .ro_view = "customer360", .ro_mode = "diff-source", .ro_run_id = "t", .ro_path = path};
    report_t *report = report_new(&ro, err, sizeof(err));
    ck_assert_ptr_nonnull(report);
    fixes[0] = '\0';
    compare_ctx_t cc = {.cc_view = view,
                        .cc_report = report,
                        .cc_now_ms = 100000,
                        .cc_budget_ms = 10000,
                        .cc_fix = on_fix};
    int profile = view_section_index(view, "profile");
    int orders = view_section_index(view, "orders");
    int loyalty = view_section_index(view, "loyalty");
    /* profile: email drifted long ago (updated_at 1000 < store time 5000) */
    json_t *store =
        parse("{\"customer_id\":\"C1\",\"name\":\"Ada\",\"email\":\"a@x\",\"phone\":null,"
              "\"updated_at\":5000}");
    json_t *source = parse("{\"customer_id\":\"C1\",\"name\":\"Ada\",\"email\":\"b@x\","
                           "\"phone\":null,\"@updated_at\":1000}");
    ck_assert_int_eq(compare_section(&cc, "C1", profile, store, source, 5000, "u"), 0);
    json_decref(store);
    json_decref(source);
    /* loyalty: changed 5 s ago, after the store's event time: not yet projected */
    store = parse("{\"tier\":\"GOLD\",\"points\":10}");
    source = parse("{\"tier\":\"GOLD\",\"points\":20,\"@updated_at\":95000}");
    ck_assert_int_eq(compare_section(&cc, "C1", loyalty, store, source, 90000, "u"), 0);
    json_decref(store);
    json_decref(source);
    /* orders: O1 differs, O2 missing in the store, O3 missing in the source */
    store = parse("[{\"order_id\":\"O1\",\"created_at\":10,\"status\":\"CREATED\"},"
                  "{\"order_id\":\"O3\",\"created_at\":5,\"status\":\"CREATED\"}]");
    source =
        parse("[{\"order_id\":\"O1\",\"created_at\":10,\"status\":\"CANCELLED\",\"@item\":\"O1\"},"
              "{\"order_id\":\"O2\",\"created_at\":20,\"status\":\"CREATED\",\"@item\":\"O2\"}]");
    ck_assert_int_eq(compare_section(&cc, "C1", orders, store, source, 50, "u"), 0);
    json_decref(store);
    json_decref(source);
    /* absent on both sides, and a record only the store has */
    ck_assert_int_eq(compare_section(&cc, "C2", loyalty, NULL, NULL, 0, "u"), 0);
    store = parse("{\"tier\":\"GOLD\",\"points\":10}");
    ck_assert_int_eq(compare_section(&cc, "C3", loyalty, store, NULL, 0, "u"), 0);
    json_decref(store);

    ck_assert_uint_eq(report_count(report, REPORT_DRIFT), 5);
    ck_assert_uint_eq(report_count(report, REPORT_PENDING), 1);
    /* list items in the section's order: newest first */
    ck_assert_str_eq(fixes, "SET C1 profile - {\"email\":\"b@x\"}\n"
                            "UPSERT C1 orders O2 {\"created_at\":20,\"order_id\":\"O2\","
                            "\"status\":\"CREATED\"}\n"
                            "UPSERT C1 orders O1 {\"status\":\"CANCELLED\"}\n"
                            "DELETE C1 orders O3 {}\n");
    ck_assert_int_eq(report_finish(report, NULL, 10, err, sizeof(err)), 0);
    report_destroy(report);
    const char *text = read_all(path);
    ck_assert_msg(strstr(text, "{\"class\":\"drift\",\"mode\":\"diff-source\",\"key\":\"C1\","
                               "\"section\":\"profile\",\"item\":null,\"field\":\"email\","
                               "\"store\":\"a@x\",\"source\":\"b@x\",\"reason\":\"value\""),
                  "%s", text);
    ck_assert_msg(strstr(text, "\"class\":\"pending\",\"mode\":\"diff-source\",\"key\":\"C1\","
                               "\"section\":\"loyalty\""),
                  "%s", text);
    ck_assert_msg(strstr(text,
                         "\"key\":\"C3\",\"section\":\"loyalty\",\"item\":null,\"field\":null,"
                         "\"store\":{\"tier\":\"GOLD\",\"points\":10},\"source\":null,"
                         "\"reason\":\"missing-in-source\""),
                  "%s", text);
    ck_assert_ptr_nonnull(strstr(text, "{\"summary\":{\"mode\":\"diff-source\""));
}
END_TEST

START_TEST(test_lists_are_cut_like_the_view)
{
    const view_section_t *orders = &view->v_sections[view_section_index(view, "orders")];
    json_t *items = json_array();
    for (int i = 0; i < 25; i++) {
        char id[16];
        snprintf(id, sizeof(id), "O%02d", i);
        json_array_append_new(items, json_pack("{s:s,s:I,s:s}", "order_id", id, "created_at",
                                               (json_int_t)(i / 2), "@item", id));
    }
    compare_shape_list(orders, items);
    ck_assert_uint_eq(json_array_size(items), 20);
    /* newest first; equal times by id ascending: 24, then 22 23, ... */
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(items, 0), "@item")), "O24");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(items, 1), "@item")), "O22");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(items, 2), "@item")), "O23");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(items, 19), "@item")), "O04");
    json_decref(items);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("reconcile");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_times);
    tcase_add_test(tc, test_urls);
    tcase_add_test(tc, test_mapping);
    tcase_add_test(tc, test_compare_classifies_and_fixes);
    tcase_add_test(tc, test_lists_are_cut_like_the_view);
    SRunner *sr = srunner_create(s);
    suite_add_tcase(s, tc);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
