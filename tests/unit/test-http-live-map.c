/* Tests of http_live_map.c: a live service's answer in the section's declared shape. */
#include "../../query-api/http_live_map.h"
#include "remote.h"
#include "rm_err.h"
#include "tsupport.h"

#include <check.h>
#include <stdio.h>
#include <string.h>

static catalog_t *catalog;
static char *dir;
static view_t *view;

#define DEFINITION                                                                                 \
    "view: v\nkey: customer_id\ntopics: [customers]\n"                                             \
    "sections:\n"                                                                                  \
    "  profile:\n    kind: single\n    fields: {name: string}\n"                                   \
    "  holds:\n    kind: list\n    max_items: 2\n    sort_by: placed_at\n"                         \
    "    fields: {hold_id: string, amount: long, placed_at: timestamp, open: bool,\n"              \
    "             reason: {type: string, default: unknown}}\n"                                     \
    "  risk:\n    kind: single\n"                                                                  \
    "    fields: {score: long, band: {type: string, pii: true, mask: initials}}\n"                 \
    "rules:\n  - event: c360.customers.CustomerRegistered\n"                                       \
    "    entity: {type: c, id: customer_id}\n    key: customer_id\n"                               \
    "    ops: [{set: {section: profile, fields: {name: name}}}]\n"                                 \
    "live:\n"                                                                                      \
    "  holds: {service: r, path: '/h/{key}', deadline_ms: 50, items: data.holds,\n"                \
    "          fields: {hold_id: id, amount: amount.cents, placed_at: at, open: open,\n"           \
    "                   reason: why}}\n"                                                           \
    "  risk: {service: r, path: '/s/{key}', deadline_ms: 50, fields: {score: score, band: "        \
    "band}}\n"

static void setup(void)
{
    catalog = ts_catalog();
    dir = ts_tmpdir();
    ts_write_file(dir, "v.yaml", DEFINITION);
    char path[4096], err[512];
    snprintf(path, sizeof(path), "%s/v.yaml", dir);
    view = view_load(path, catalog, err, sizeof(err));
    ck_assert_msg(view != NULL, "%s", err);
}

static void teardown(void)
{
    view_destroy(view);
    catalog_destroy(catalog);
    ts_rmtree(dir);
}

static int map(int section, const char *body, buf_t *out)
{
    buf_reset(out);
    const view_live_t *live = view_live_for(view, section);
    ck_assert_ptr_nonnull(live);
    return http_live_map(view, live, UINT32_MAX, 0, body, body ? strlen(body) : 0, out);
}

START_TEST(test_list_maps_names_types_and_defaults)
{
    buf_t out = BUF_INIT;
    ck_assert_int_eq(
        map(1,
            "{\"data\":{\"holds\":["
            "{\"id\":\"H1\",\"amount\":{\"cents\":250},\"at\":\"2026-12-01T20:00:00.123Z\","
            "\"open\":true,\"why\":\"velocity\",\"extra\":1},"
            "{\"id\":7,\"at\":1700000000000,\"open\":false,\"why\":null}]}}",
            &out),
        0);
    /* declared order, declared names; ISO time to ms; a number id to a string; a missing
     * member null, a null one its default; unknown members dropped */
    ck_assert_str_eq(
        out.b_data, "[{\"hold_id\":\"H1\",\"amount\":250,\"placed_at\":1796155200123,\"open\":true,"
                    "\"reason\":\"velocity\"},"
                    "{\"hold_id\":\"7\",\"amount\":null,\"placed_at\":1700000000000,\"open\":false,"
                    "\"reason\":\"unknown\"}]");
    /* at most max_items, in the service's order */
    ck_assert_int_eq(
        map(1, "{\"data\":{\"holds\":[{\"id\":\"a\"},{\"id\":\"b\"},{\"id\":\"c\"}]}}", &out), 0);
    ck_assert(strstr(out.b_data, "\"b\"") && !strstr(out.b_data, "\"c\""));
    ck_assert_int_eq(map(1, "{\"data\":{\"holds\":[]}}", &out), 0);
    ck_assert_str_eq(out.b_data, "[]");
    /* 404 (NULL body): the service knows nothing of the key */
    ck_assert_int_eq(map(1, NULL, &out), 0);
    ck_assert_str_eq(out.b_data, "[]");
    ck_assert_int_eq(map(2, NULL, &out), 0);
    ck_assert_str_eq(out.b_data, "null");
    buf_free(&out);
}
END_TEST

START_TEST(test_single_maps_an_object)
{
    buf_t out = BUF_INIT;
    ck_assert_int_eq(map(2, "{\"score\":87,\"band\":\"high\",\"why\":\"x\"}", &out), 0);
    ck_assert_str_eq(out.b_data, "{\"score\":87,\"band\":\"high\"}");
    ck_assert_int_eq(map(2, "null", &out), 0);
    ck_assert_str_eq(out.b_data, "null");
    buf_free(&out);
}
END_TEST

/* Anything not in the declared shape is refused whole, and leaves out unchanged. */
START_TEST(test_wrong_shapes_are_refused)
{
    buf_t out = BUF_INIT;
    static const char *const lists[] = {
        "not json",
        "{\"data\":{\"holds\":{}}}", /* not an array */
        "{\"holds\":[]}", /* not at items' path */
        "[{\"id\":\"a\"}]", /* the array, but items is declared */
        "{\"data\":{\"holds\":[1]}}", /* an item that is not an object */
        "{\"data\":{\"holds\":[{\"id\":true}]}}", /* string field from a bool */
        "{\"data\":{\"holds\":[{\"amount\":{\"cents\":\"5\"}}]}}", /* long from a string */
        "{\"data\":{\"holds\":[{\"at\":\"yesterday\"}]}}", /* not a time */
        "{\"data\":{\"holds\":[{\"at\":\"2026-12-01T20:00:00\"}]}}", /* a time without zone */
        "{\"data\":{\"holds\":[{\"open\":1}]}}", /* bool from a number */
    };
    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        buf_reset(&out);
        buf_append_str(&out, "kept");
        const view_live_t *live = view_live_for(view, 1);
        ck_assert_msg(http_live_map(view, live, UINT32_MAX, 0, lists[i], strlen(lists[i]), &out) ==
                          RM_EINVAL,
                      "accepted %s", lists[i]);
        ck_assert_str_eq(out.b_data, "kept");
    }
    ck_assert_int_eq(map(2, "[]", &out), RM_EINVAL);
    ck_assert_int_eq(map(2, "{\"score\":1.5}", &out), RM_EINVAL);
    buf_free(&out);
}
END_TEST

/* A caller sees of a live section what it would see of a stored one: the fields its
 * allowlist names, and PII fields masked without the entitlement. */
START_TEST(test_fields_and_masks_apply)
{
    buf_t out = BUF_INIT;
    const view_live_t *risk = view_live_for(view, 2), *holds = view_live_for(view, 1);
    const char *answer = "{\"score\":7,\"band\":\"Very High\"}";
    ck_assert_int_eq(
        http_live_map(view, risk, UINT32_MAX, UINT32_MAX, answer, strlen(answer), &out), 0);
    ck_assert_str_eq(out.b_data, "{\"score\":7,\"band\":\"V. H.\"}");
    buf_reset(&out);
    /* a grant of this one PII field (bit 1 clear in masked) shows it, as for a stored one */
    ck_assert_int_eq(
        http_live_map(view, risk, UINT32_MAX, ~(1u << 1), answer, strlen(answer), &out), 0);
    ck_assert_str_eq(out.b_data, "{\"score\":7,\"band\":\"Very High\"}");
    buf_reset(&out);
    ck_assert_int_eq(http_live_map(view, risk, 1u, 0, answer, strlen(answer), &out), 0);
    ck_assert_str_eq(out.b_data, "{\"score\":7}");
    buf_reset(&out);
    const char *null_band = "{\"score\":7,\"band\":null}";
    ck_assert_int_eq(
        http_live_map(view, risk, UINT32_MAX, UINT32_MAX, null_band, strlen(null_band), &out), 0);
    ck_assert_str_eq(out.b_data, "{\"score\":7,\"band\":null}");
    buf_reset(&out);
    const char *list = "{\"data\":{\"holds\":[{\"id\":\"H1\",\"why\":\"velocity\"}]}}";
    ck_assert_int_eq(
        http_live_map(view, holds, (1u << 0) | (1u << 4), UINT32_MAX, list, strlen(list), &out), 0);
    ck_assert_str_eq(out.b_data, "[{\"hold_id\":\"H1\",\"reason\":\"velocity\"}]");
    buf_free(&out);
}
END_TEST

/* The key is one path segment of the service's URL, whatever it holds: "." and ".." are
 * segments a client or server would resolve (RFC 3986 §5.2.4), and '/' a separator. */
START_TEST(test_url_escapes_the_key_as_one_segment)
{
    static const struct {
        const char *key;
        const char *url;
    } cases[] = {
        {"C1", "http://r/customers/C1/holds"},
        {"..", "http://r/customers/%2E%2E/holds"},
        {".", "http://r/customers/%2E/holds"},
        {"a.b", "http://r/customers/a%2Eb/holds"},
        {"../admin", "http://r/customers/%2E%2E%2Fadmin/holds"},
        {"x?y#z", "http://r/customers/x%3Fy%23z/holds"},
        {"A-_~9", "http://r/customers/A-_~9/holds"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char url[256];
        size_t len = remote_url("http://r", "/customers/{key}/holds", cases[i].key,
                                strlen(cases[i].key), url, sizeof(url));
        ck_assert_msg(len == strlen(cases[i].url), "%s: %zu", cases[i].key, len);
        ck_assert_str_eq(url, cases[i].url);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("http-live-map");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_list_maps_names_types_and_defaults);
    tcase_add_test(tc, test_single_maps_an_object);
    tcase_add_test(tc, test_wrong_shapes_are_refused);
    tcase_add_test(tc, test_url_escapes_the_key_as_one_segment);
    tcase_add_test(tc, test_fields_and_masks_apply);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
