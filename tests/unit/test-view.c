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
    ck_assert_uint_eq(view->v_section_count, 8);
    int holds = view_section_index(view, "fraud_holds");
    ck_assert_int_ge(holds, 0);
    ck_assert(view->v_sections[holds].vs_live);
    const view_live_t *live = view_live_for(view, holds);
    ck_assert_ptr_nonnull(live);
    ck_assert_str_eq(live->vlv_service, "risk");
    ck_assert_str_eq(live->vlv_path, "/customers/{key}/holds");
    ck_assert_int_eq(live->vlv_deadline_ms, 150);
    ck_assert_str_eq(live->vlv_items, "holds");
    ck_assert_uint_eq(live->vlv_field_count, 3);
    ck_assert_str_eq(view->v_sections[holds].vs_fields[live->vlv_fields[0].vsf_field].vf_name,
                     "hold_id");
    ck_assert_str_eq(live->vlv_fields[0].vsf_path, "id");
    ck_assert_ptr_null(view_source_for(view, holds)); /* nothing stored to reconcile */
    ck_assert_ptr_null(view_live_for(view, view_section_index(view, "profile")));
    ck_assert(!view->v_sections[view_section_index(view, "profile")].vs_live);
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
    ck_assert_int_eq(view->v_tombstones[view_topic_index(view, "customers")].vt_kind,
                     VIEW_TOMB_ERASE);
    ck_assert_int_eq(view->v_tombstones[view_topic_index(view, "orders")].vt_kind,
                     VIEW_TOMB_DELETE);
    ck_assert_int_eq(view->v_tombstones[view_topic_index(view, "payments")].vt_kind,
                     VIEW_TOMB_IGNORE);
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
#define RULE                                                                                       \
    "rules:\n  - event: c360.customers.CustomerRegistered\n"                                       \
    "    entity: {type: c, id: customer_id}\n    key: customer_id\n"                               \
    "    ops: [{set: {section: profile, fields: {name: name}}}]\n"
    expect_error(HEAD SECTIONS RULE
                 "sources:\n  nope: {service: s, path: '/c/{key}', fields: {a: b}}\n",
                 "14: sources.nope: not a section of this view");
    expect_error(HEAD SECTIONS RULE
                 "sources:\n  profile: {service: s, path: '/c/1', fields: {name: n}}\n",
                 "14: sources.profile: path: expected an absolute path template containing {key}");
    expect_error(HEAD SECTIONS RULE
                 "sources:\n  profile: {service: s, path: '/c/{key}', fields: {nmae: n}}\n",
                 "14: sources.profile: 'nmae' is not a field of profile");
    expect_error(HEAD SECTIONS RULE "sources:\n  profile: {service: s, path: '/c/{key}', items: x,"
                                    " fields: {name: n}}\n",
                 "14: sources.profile: items, item and next_page are for list sections");
    expect_error(HEAD SECTIONS RULE
                 "sources:\n  profile: {service: s, path: '/c/{key}', fields: {name: a..b}}\n",
                 "14: sources.profile: 'a..b' is not a member path");
    expect_error(HEAD SECTIONS RULE "tombstones: {orders: erase}\n",
                 "13: tombstones.orders: not one of the view's topics");
    expect_error(
        HEAD SECTIONS RULE "tombstones: {customers: drop}\n",
        "13: tombstones.customers: expected ignore, erase or {delete: {section: S, link: L}}");
    expect_error(HEAD SECTIONS RULE
                 "tombstones: {customers: {delete: {section: profile, link: x}}}\n",
                 "13: tombstones.customers: delete.section: expected a list section");
    expect_error(HEAD SECTIONS RULE "repairs: {topic: customers}\n",
                 "13: repairs.topic: must not be one of the view's topics");
#undef RULE
}
END_TEST

/* `live:` (view.h view_live_t): the declaration parses, and every mistake says where. */
START_TEST(test_live_sections)
{
#define RULE                                                                                       \
    "rules:\n  - event: c360.customers.CustomerRegistered\n"                                       \
    "    entity: {type: c, id: customer_id}\n    key: customer_id\n"                               \
    "    ops: [{set: {section: profile, fields: {name: name}}}]\n"
#define HOLDS "  holds:\n    kind: list\n    fields: {hold_id: string, placed_at: timestamp}\n"
#define LIVE(body) "live:\n  holds: {service: risk, path: '/c/{key}/holds', " body "}\n"
    char path[4096], err[512];
    snprintf(path, sizeof(path), "%s/v.yaml", dir);
    ts_write_file(dir, "v.yaml",
                  HEAD SECTIONS HOLDS RULE LIVE(
                      "deadline_ms: 80, items: data.holds, fields: {hold_id: id, placed_at: at}"));
    view_t *view = view_load(path, catalog, err, sizeof(err));
    ck_assert_msg(view != NULL, "%s", err);
    ck_assert_uint_eq(view->v_live_count, 1);
    const view_live_t *live = view_live_for(view, 1);
    ck_assert_ptr_nonnull(live);
    ck_assert(view->v_sections[1].vs_live && !view->v_sections[0].vs_live);
    ck_assert_int_eq(live->vlv_deadline_ms, 80);
    ck_assert_str_eq(live->vlv_items, "data.holds");
    ck_assert_uint_eq(live->vlv_line, 17);
    ck_assert_int_eq(live->vlv_fields[1].vsf_field, 1);
    ck_assert_str_eq(live->vlv_fields[1].vsf_path, "at");
    view_destroy(view);

    /* items is optional: then the answer itself is the array */
    ts_write_file(
        dir, "v.yaml",
        HEAD SECTIONS HOLDS RULE LIVE("deadline_ms: 80, fields: {hold_id: id, placed_at: at}"));
    view = view_load(path, catalog, err, sizeof(err));
    ck_assert_msg(view != NULL, "%s", err);
    ck_assert_ptr_null(view->v_lives[0].vlv_items);
    view_destroy(view);

    expect_error(HEAD SECTIONS HOLDS RULE "live:\n  nope: {service: r, path: '/c/{key}', "
                                          "deadline_ms: 5, fields: {a: b}}\n",
                 "17: live.nope: not a section of this view (declare its fields under sections:)");
    expect_error(HEAD SECTIONS HOLDS RULE LIVE("fields: {hold_id: id, placed_at: at}"),
                 "17: live.holds: deadline_ms: missing (a live section needs a deadline)");
    expect_error(HEAD SECTIONS HOLDS RULE LIVE("deadline_ms: 0, fields: {hold_id: id}"),
                 "17: live.holds: deadline_ms: expected an integer from 1 to 10000");
    expect_error(HEAD SECTIONS HOLDS RULE LIVE("deadline_ms: 10001, fields: {hold_id: id}"),
                 "17: live.holds: deadline_ms: expected an integer from 1 to 10000");
    expect_error(HEAD SECTIONS HOLDS RULE LIVE("deadline_ms: soon, fields: {hold_id: id}"),
                 "17: live.holds: deadline_ms: expected an integer from 1 to 10000");
    expect_error(HEAD SECTIONS HOLDS RULE LIVE("deadline_ms: 5, fields: {hold_id: id}"),
                 "17: live.holds: fields: placed_at is not mapped to a member");
    expect_error(HEAD SECTIONS HOLDS RULE LIVE("deadline_ms: 5, fields: {hold_id: id, plced: x}"),
                 "17: live.holds: 'plced' is not a field of holds");
    expect_error(
        HEAD SECTIONS HOLDS RULE LIVE("deadline_ms: 5, fields: {hold_id: id, placed_at: a..b}"),
        "17: live.holds: 'a..b' is not a member path");
    expect_error(HEAD SECTIONS HOLDS RULE LIVE("deadline_ms: 5, timeout: 3, fields: {hold_id: id}"),
                 "17: live.holds: unknown key 'timeout'");
    expect_error(HEAD SECTIONS HOLDS RULE
                 "live:\n  holds: {service: risk, path: '/c/holds', deadline_ms: 5, "
                 "fields: {hold_id: id, placed_at: at}}\n",
                 "17: live.holds: path: expected an absolute path template containing {key}");
    expect_error(HEAD SECTIONS HOLDS RULE "live:\n  profile: {service: risk, path: '/c/{key}', "
                                          "deadline_ms: 5, items: x, fields: {name: n}}\n",
                 "17: live.profile: items is for list sections");
    /* a live section has no fragments: no rule may write it, no source reconciles it */
    expect_error(HEAD SECTIONS HOLDS
                 "rules:\n  - event: c360.customers.CustomerRegistered\n"
                 "    entity: {type: c, id: customer_id}\n    key: customer_id\n"
                 "    ops: [{upsert: {section: holds, item: customer_id, "
                 "fields: {hold_id: customer_id}}}]\n" LIVE(
                     "deadline_ms: 5, fields: {hold_id: id, placed_at: at}"),
                 "15: rules[0].ops[0].upsert: section holds is live (fetched at request time): "
                 "no rule may write it");
    expect_error(
        HEAD SECTIONS HOLDS RULE
        "sources:\n  holds: {service: s, path: '/h/{key}', items: h, item: hold_id, "
        "fields: {hold_id: id}}\n" LIVE("deadline_ms: 5, fields: {hold_id: id, placed_at: at}"),
        "19: live.holds: a live section has no stored copy to reconcile: remove it "
        "from sources");
#undef LIVE
#undef HOLDS
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
    expect_error(
        HEAD SECTIONS "rules:\n  - event: c360.customers.CustomerRegistered\n"
                      "    entity: {type: c, id: customer_id}\n"
                      "    key: customer_id\n"
                      "    ops:\n      - set: {section: profile, fields: {name: nmae}}\n",
        "13: rules[0].ops[0].set: event c360.customers.CustomerRegistered has no field 'nmae'");
    expect_error(
        HEAD SECTIONS
        "rules:\n  - event: c360.customers.CustomerRegistered\n"
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

/* The set of topics named, as a vs_feeds bit set of view. */
static uint64_t topic_set(const view_t *view, const char *const *names)
{
    uint64_t set = 0;
    for (; *names; names++) {
        int t = view_topic_index(view, *names);
        ck_assert_msg(t >= 0, "%s", *names);
        set |= UINT64_C(1) << t;
    }
    return set;
}

#define REPAIRS "customer360.repairs"
#define FEEDS(view, section, ...)                                                                  \
    do {                                                                                           \
        const char *const names_[] = {__VA_ARGS__, NULL};                                          \
        int s_ = view_section_index(view, section);                                                \
        ck_assert_int_ge(s_, 0);                                                                   \
        ck_assert_msg(view->v_sections[s_].vs_feeds == topic_set(view, names_),                    \
                      "%s: feeds %llx, want %llx", section,                                        \
                      (unsigned long long)view->v_sections[s_].vs_feeds,                           \
                      (unsigned long long)topic_set(view, names_));                                \
    } while (0)

/* Which topics feed each section of Customer 360: the topics of the rules that write it,
 * the order link's topic for rules found through it, the repairs topic everywhere, and no
 * topic for the live section. Erasures (customers) feed nothing by themselves. */
START_TEST(test_section_feeds)
{
    char path[4096], err[512];
    view_t *view = view_load(ts_src("schemas/views/customer360.yaml", path, sizeof(path)), catalog,
                             err, sizeof(err));
    ck_assert_msg(view != NULL, "%s", err);
    FEEDS(view, "profile", "customers", REPAIRS);
    FEEDS(view, "orders", "orders", "payments", "shipments", REPAIRS);
    FEEDS(view, "payment_issues", "payments", "orders", REPAIRS);
    FEEDS(view, "delivery_exceptions", "shipments", "orders", REPAIRS);
    FEEDS(view, "loyalty", "loyalty", REPAIRS);
    FEEDS(view, "returns", "returns", "orders", REPAIRS);
    FEEDS(view, "counters", "orders", "payments", REPAIRS);
    ck_assert_uint_eq(view->v_sections[view_section_index(view, "fraud_holds")].vs_feeds, 0);
    view_destroy(view);
}
END_TEST

/* A record the catalog places on none of the view's topics may arrive on any of them;
 * more than VIEW_MAX_TOPICS topics is refused. */
START_TEST(test_feeds_of_a_record_elsewhere)
{
    char path[4096], err[512];
    snprintf(path, sizeof(path), "%s/v.yaml", dir);
    ts_write_file(dir, "v.yaml",
                  "view: v\nkey: customer_id\ntopics: [alpha, beta, customers]\n" SECTIONS
                  "  other:\n    kind: single\n    fields: {name: string}\n"
                  "rules:\n  - event: c360.customers.CustomerRegistered\n"
                  "    entity: {type: c, id: customer_id}\n    key: customer_id\n"
                  "    ops: [{set: {section: profile, fields: {name: name}}}]\n"
                  "  - event: c360.orders.OrderCreated\n"
                  "    entity: {type: o, id: order_id}\n    key: customer_id\n"
                  "    ops: [{set: {section: other, fields: {name: currency}}}]\n");
    view_t *view = view_load(path, catalog, err, sizeof(err));
    ck_assert_msg(view != NULL, "%s", err);
    FEEDS(view, "profile", "customers"); /* the catalog's topic of CustomerRegistered */
    FEEDS(view, "other", "alpha", "beta", "customers"); /* OrderCreated is on orders */
    view_destroy(view);

    char text[8192] = "view: v\nkey: customer_id\ntopics: [t0";
    for (int t = 1; t <= VIEW_MAX_TOPICS; t++)
        snprintf(text + strlen(text), sizeof(text) - strlen(text), ", t%d", t);
    snprintf(text + strlen(text), sizeof(text) - strlen(text),
             "]\n" SECTIONS "rules:\n  - event: c360.customers.CustomerRegistered\n"
             "    entity: {type: c, id: customer_id}\n    key: customer_id\n"
             "    ops: [{erase: {}}]\n");
    expect_error(text, "3: topics: at most 64 topics, the repairs topic included");
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
    tcase_add_test(tc, test_live_sections);
    tcase_add_test(tc, test_section_feeds);
    tcase_add_test(tc, test_feeds_of_a_record_elsewhere);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
