/* Tests of view.c: the real definition loads; mistakes are reported with file,
 * line and path. */
#include "tsupport.h"
#include "view.h"

#include <check.h>
#include <stdio.h>
#include <string.h>

static catalog_t *catalog;
static char *dir;

static void setup(void)
{
    catalog = ts_catalog();
    dir = ts_tmpdir();
}

static void teardown(void)
{
    catalog_destroy(catalog);
    ts_rmtree(dir);
}

START_TEST(test_real_definition_loads)
{
    char path[4096], err[512];
    view_t *view = view_load(ts_src("schemas/views/customer360.yaml", path, sizeof(path)), catalog,
                             err, sizeof(err));
    ck_assert_msg(view != NULL, "%s", err);
    ck_assert_str_eq(view->v_name, "customer360");
    ck_assert_uint_eq(view->v_topic_count, 7); /* six domain topics and the repairs topic */
    ck_assert_str_eq(view->v_topics[6], "customer360.repairs");
    ck_assert_str_eq(view->v_repair_topic, "customer360.repairs");
    ck_assert_uint_eq(view->v_source_count, 6); /* every section but the counters */
    ck_assert_uint_eq(view->v_section_count, 7);
    int orders = view_section_index(view, "orders");
    ck_assert_int_ge(orders, 0);
    ck_assert_uint_eq(view->v_sections[orders].vs_max_items, 20);
    const view_source_t *src = view_source_for(view, orders);
    ck_assert_ptr_nonnull(src);
    ck_assert_str_eq(src->vsrc_service, "orders");
    ck_assert_str_eq(src->vsrc_items, "orders");
    ck_assert_str_eq(src->vsrc_page_param, "page");
    ck_assert_str_eq(view->v_sections[orders].vs_fields[src->vsrc_item_field].vf_name, "order_id");
    ck_assert_ptr_null(view_source_for(view, view_section_index(view, "counters")));
    ck_assert_int_eq(view->v_tombstones[view_topic_index(view, "customers")].vt_kind, VIEW_TOMB_ERASE);
    ck_assert_int_eq(view->v_tombstones[view_topic_index(view, "orders")].vt_kind, VIEW_TOMB_DELETE);
    ck_assert_int_eq(view->v_tombstones[view_topic_index(view, "payments")].vt_kind, VIEW_TOMB_IGNORE);
    const view_rule_t *rule = view_rule_for(view, "c360.payments.PaymentSettled");
    ck_assert_ptr_nonnull(rule);
    ck_assert_int_ge(rule->vr_via_link, 0);
    ck_assert_ptr_null(view_rule_for(view, "c360.nope.Nothing"));
    ck_assert_uint_eq(strlen(view->v_hash), 16);
    view_destroy(view);
}
END_TEST

/* Writes text to a file and expects view_load to fail with exactly `expected`
 * (after the file name). */
static void expect_error(const char *text, const char *expected)
{
    char path[4096], err[512];
    snprintf(path, sizeof(path), "%s/v.yaml", dir);
    ts_write_file(dir, "v.yaml", text);
    view_t *view = view_load(path, catalog, err, sizeof(err));
    ck_assert_ptr_null(view);
    const char *rest = strstr(err, "v.yaml:");
    ck_assert_msg(rest && strcmp(rest + 7, expected) == 0, "got '%s', want '%s'", err, expected);
}

#define HEAD "view: v\nkey: customer_id\ntopics: [customers]\n"
#define SECTIONS "sections:\n  profile:\n    kind: single\n    fields: {name: string}\n"

START_TEST(test_source_errors)
{
#define RULE "rules:\n  - event: c360.customers.CustomerRegistered\n" \
             "    entity: {type: c, id: customer_id}\n    key: customer_id\n" \
             "    ops: [{set: {section: profile, fields: {name: name}}}]\n"
    expect_error(HEAD SECTIONS RULE "sources:\n  nope: {service: s, path: '/c/{key}', fields: {a: b}}\n",
                 "14: sources.nope: not a section of this view");
    expect_error(HEAD SECTIONS RULE "sources:\n  profile: {service: s, path: '/c/1', fields: {name: n}}\n",
                 "14: sources.profile: path: expected an absolute path template containing {key}");
    expect_error(HEAD SECTIONS RULE "sources:\n  profile: {service: s, path: '/c/{key}', fields: {nmae: n}}\n",
                 "14: sources.profile: 'nmae' is not a field of profile");
    expect_error(HEAD SECTIONS RULE "sources:\n  profile: {service: s, path: '/c/{key}', items: x,"
                                    " fields: {name: n}}\n",
                 "14: sources.profile: items, item and next_page are for list sections");
    expect_error(HEAD SECTIONS RULE "sources:\n  profile: {service: s, path: '/c/{key}', fields: {name: a..b}}\n",
                 "14: sources.profile: 'a..b' is not a member path");
    expect_error(HEAD SECTIONS RULE "tombstones: {orders: erase}\n",
                 "13: tombstones.orders: not one of the view's topics");
    expect_error(HEAD SECTIONS RULE "tombstones: {customers: drop}\n",
                 "13: tombstones.customers: expected ignore, erase or {delete: {section: S, link: L}}");
    expect_error(HEAD SECTIONS RULE "tombstones: {customers: {delete: {section: profile, link: x}}}\n",
                 "13: tombstones.customers: delete.section: expected a list section");
    expect_error(HEAD SECTIONS RULE "repairs: {topic: customers}\n",
                 "13: repairs.topic: must not be one of the view's topics");
#undef RULE
}
END_TEST

START_TEST(test_errors_name_line_and_path)
{
    expect_error(HEAD SECTIONS "rules: []\nbogus: 1\n", "9: (top level): unknown key 'bogus'");
    expect_error(HEAD "sections:\n  profile:\n    kind: blob\n    fields: {a: string}\n"
                      "rules: []\n",
                 "6: sections.profile: kind must be single, list or counters");
    expect_error(HEAD SECTIONS "rules:\n  - event: c360.customers.Nope\n"
                               "    entity: {type: c, id: customer_id}\n"
                               "    key: customer_id\n    ops: [{erase: {}}]\n",
                 "9: rules[0]: event c360.customers.Nope is not in the schema catalog");
    expect_error(HEAD SECTIONS "rules:\n  - event: c360.customers.CustomerRegistered\n"
                               "    entity: {type: c, id: customer_id}\n"
                               "    key: customer_id\n"
                               "    ops:\n      - set: {section: profile, fields: {name: nmae}}\n",
                 "13: rules[0].ops[0].set: event c360.customers.CustomerRegistered has no field 'nmae'");
    expect_error(HEAD SECTIONS "rules:\n  - event: c360.customers.CustomerRegistered\n"
                               "    entity: {type: c, id: customer_id}\n"
                               "    key: customer_id\n"
                               "    ops:\n      - set: {section: profile, fields: {name: marketing_opt_in}}\n",
                 "13: rules[0].ops[0].set: field 'marketing_opt_in' has the wrong type for this target");
    expect_error(HEAD SECTIONS "rules:\n  - event: c360.customers.CustomerRegistered\n"
                               "    key: customer_id\n    ops: [{erase: {}}]\n",
                 "9: rules[0]: entity: missing (the aggregate whose version guards it)");
}
END_TEST

START_TEST(test_contribute_errors)
{
    const char *head = HEAD "sections:\n  c:\n    kind: counters\n    fields: {n: long}\n"
                            "rules:\n  - event: c360.orders.OrderCreated\n"
                            "    entity: {type: order, id: order_id}\n    key: customer_id\n"
                            "    ops:\n";
    char text[1024];
    snprintf(text, sizeof(text), "%s%s", head,
             "      - contribute: {section: c, field: n, by: {const: 1}}\n"
             "      - contribute: {section: c, field: n, by: total_cents}\n");
    expect_error(text, "9: rules: rules[0] contributes twice to one counter");
    snprintf(text, sizeof(text), "%s%s", head,
             "      - contribute: {section: c, field: m, by: {const: 1}}\n");
    expect_error(text, "13: rules[0].ops[0].contribute: field: unknown counter");
}
END_TEST


int main(void)
{
    Suite *s = suite_create("view");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_real_definition_loads);
    tcase_add_test(tc, test_errors_name_line_and_path);
    tcase_add_test(tc, test_contribute_errors);
    tcase_add_test(tc, test_source_errors);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
