/* Tests of reconcile/storediff.c: two stores built by the engine from the same events,
 * one of them missing some applications, must differ exactly where a reader would see
 * it — and not where only provenance differs. */
#include "engine.h"
#include "frag.h"
#include "report.h"
#include "rm_err.h"
#include "storediff.h"
#include "tsupport.h"

#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Schema ids of schemas/catalog.yaml. */
enum { REG = 1, ERASED = 3, ORDER = 4, CANCEL = 5, LOYALTY = 12 };

typedef ts_engine_t side_t;

static catalog_t *catalog;
static view_t *view;
static side_t live, replay;
static buf_t msg;
static char *report_dir;
static char report_path[4200];

static void setup(void)
{
    catalog = ts_catalog();
    view = ts_view(catalog);
    ts_engine_open(&live, view, catalog, NULL);
    ts_engine_open(&replay, view, catalog, NULL);
    buf_init(&msg);
    report_dir = ts_tmpdir();
    snprintf(report_path, sizeof(report_path), "%s/report.jsonl", report_dir);
}

static void teardown(void)
{
    ts_engine_close(&live);
    ts_engine_close(&replay);
    view_destroy(view);
    catalog_destroy(catalog);
    buf_free(&msg);
    ts_rmtree(report_dir);
}

/* Applies the message in `msg` to s in its own transaction. */
static void apply_to(side_t *s, const char *topic)
{
    engine_result_t res = ts_engine_apply(s, topic, 0, NULL, msg.b_data, msg.b_len);
    ck_assert_int_eq(res.er_outcome, ENGINE_APPLIED);
}

#define EV(schema, ...) ck_assert_int_eq(ts_event(catalog, schema, &msg, __VA_ARGS__, NULL), 0)
/* The event in `msg` reaches both stores, or only the replay (a lost application). */
#define BOTH(topic) (apply_to(&live, topic), apply_to(&replay, topic))
#define REPLAY_ONLY(topic) apply_to(&replay, topic)

static void customer(const char *id, const char *email)
{
    char c[64], e[96], ev[64];
    snprintf(c, sizeof(c), "customer_id=%s", id);
    snprintf(e, sizeof(e), "email=%s", email);
    snprintf(ev, sizeof(ev), "event_id=reg-%s", id);
    EV(REG, ev, "occurred_at=1000", "version=1", c, "name=Ada", e, "phone=+441234567",
       "preferred_channel=EMAIL", "marketing_opt_in=true");
}

static void order(const char *id, const char *cust, int64_t at)
{
    char e[64], o[64], t[64], c[64];
    snprintf(e, sizeof(e), "event_id=oc-%s", id);
    snprintf(o, sizeof(o), "order_id=%s", id);
    snprintf(t, sizeof(t), "occurred_at=%lld", (long long)at);
    snprintf(c, sizeof(c), "customer_id=%s", cust);
    EV(ORDER, e, t, "version=1", o, c, "lines=2", "total_cents=500", "currency=EUR");
}

/* Runs the diff into a fresh report; returns the findings (a JSON array, caller decrefs). */
static json_t *diff(storediff_stats_t *ret_stats)
{
    char err[512];
    report_opts_t ropts = {.ro_view = "customer360",
                           .ro_mode = "diff-replay",
                           .ro_run_id = "t",
                           .ro_path = report_path};
    report_t *report = report_new(&ropts, err, sizeof(err));
    ck_assert_msg(report != NULL, "%s", err);
    MDB_txn *ltxn, *rtxn;
    ck_assert_int_eq(store_read_begin(live.te_store, &ltxn), 0);
    ck_assert_int_eq(store_read_begin(replay.te_store, &rtxn), 0);
    storediff_stats_t stats;
    int rc = storediff_run(view, live.te_store, ltxn, replay.te_store, rtxn, report, &stats, err,
                           sizeof(err));
    ck_assert_msg(rc == 0, "%s", err);
    store_read_end(ltxn);
    store_read_end(rtxn);
    FILE *devnull = fopen("/dev/null", "w");
    ck_assert_int_eq(report_finish(report, devnull, 1, err, sizeof(err)), 0);
    fclose(devnull);
    ck_assert_uint_eq(report_count(report, REPORT_DRIFT), stats.sds_findings);
    ck_assert_uint_eq(report_keys(report), stats.sds_keys);
    report_destroy(report);
    json_t *findings = json_array();
    FILE *f = fopen(report_path, "r");
    ck_assert_ptr_nonnull(f);
    char line[8192];
    while (fgets(line, sizeof(line), f)) {
        json_t *j = json_loads(line, 0, NULL);
        ck_assert_ptr_nonnull(j);
        if (json_object_get(j, "summary"))
            json_decref(j);
        else
            json_array_append_new(findings, j);
    }
    fclose(f);
    if (ret_stats)
        *ret_stats = stats;
    return findings;
}

/* "key/section/item/field/reason store→replay" of finding i, for compact assertions. */
static const char *describe(json_t *findings, size_t i)
{
    static char out[1024];
    json_t *f = json_array_get(findings, i);
    ck_assert_ptr_nonnull(f);
    char *store = json_dumps(json_object_get(f, "store"), JSON_ENCODE_ANY | JSON_COMPACT);
    char *other = json_dumps(json_object_get(f, "replay"), JSON_ENCODE_ANY | JSON_COMPACT);
    const char *item = json_string_value(json_object_get(f, "item"));
    const char *field = json_string_value(json_object_get(f, "field"));
    snprintf(out, sizeof(out), "%s/%s/%s/%s/%s %s>%s", json_string_value(json_object_get(f, "key")),
             json_string_value(json_object_get(f, "section")), item ? item : "-",
             field ? field : "-", json_string_value(json_object_get(f, "reason")), store, other);
    free(store);
    free(other);
    return out;
}

#define ASSERT_FINDING(findings, i, text) ck_assert_str_eq(describe(findings, i), text)

START_TEST(test_identical_stores_have_no_findings)
{
    customer("C1", "ada@example.com");
    BOTH("customers");
    order("O1", "C1", 1500);
    BOTH("orders");
    EV(LOYALTY, "event_id=l1", "occurred_at=1600", "version=1", "customer_id=C1", "tier=GOLD",
       "points=10");
    BOTH("loyalty");
    storediff_stats_t stats;
    json_t *findings = diff(&stats);
    ck_assert_uint_eq(json_array_size(findings), 0);
    ck_assert_uint_eq(stats.sds_keys, 1);
    ck_assert_uint_ge(stats.sds_fragments, 4); /* profile, orders/O1, loyalty, counters */
    ck_assert_uint_ge(stats.sds_entries, 3);   /* link order:O1, idx email and phone */
    json_decref(findings);
}
END_TEST

START_TEST(test_lost_field_updates_are_reported_field_by_field)
{
    customer("C1", "ada@example.com");
    BOTH("customers");
    order("O1", "C1", 1500);
    BOTH("orders");
    EV(LOYALTY, "event_id=l1", "occurred_at=1600", "version=1", "customer_id=C1", "tier=GOLD",
       "points=10");
    BOTH("loyalty");
    EV(LOYALTY, "event_id=l2", "occurred_at=1700", "version=2", "customer_id=C1", "tier=GOLD",
       "points=20");
    REPLAY_ONLY("loyalty"); /* points and updated_at differ; tier does not */
    EV(CANCEL, "event_id=x1", "occurred_at=1800", "version=2", "order_id=O1", "customer_id=C1",
       "reason=r");
    REPLAY_ONLY("orders");
    json_t *findings = diff(NULL);
    /* in key order: "C1 \0 loyalty" sorts before "C1 \0 orders \0 O1" */
    ck_assert_uint_eq(json_array_size(findings), 3);
    ASSERT_FINDING(findings, 0, "C1/loyalty/-/points/value 10>20");
    ASSERT_FINDING(findings, 1, "C1/loyalty/-/updated_at/value 1600>1700");
    ASSERT_FINDING(findings, 2, "C1/orders/O1/status/value \"CREATED\">\"CANCELLED\"");
    json_decref(findings);
}
END_TEST

START_TEST(test_missing_items_sections_and_links)
{
    customer("C1", "ada@example.com");
    BOTH("customers");
    order("O1", "C1", 1500);
    REPLAY_ONLY("orders"); /* the live store lost an OrderCreated: item, link, counter */
    customer("C2", "bob@example.com");
    apply_to(&live, "customers"); /* ... and the replay lacks a whole customer */
    json_t *findings = diff(NULL);
    size_t n = json_array_size(findings);
    char all[4096] = "";
    for (size_t i = 0; i < n; i++) {
        strncat(all, describe(findings, i), sizeof(all) - strlen(all) - 2);
        strcat(all, "\n");
    }
    ck_assert_msg(strstr(all, "C1/orders/O1/-/missing-in-store null>{\"order_id\":\"O1\""), "%s",
                  all);
    ck_assert_msg(strstr(all, "C1/counters/-/lifetime_orders/value 0>1"), "%s", all);
    ck_assert_msg(strstr(all, "C1/_links/order:O1/-/missing-in-store null>\"C1\""), "%s", all);
    ck_assert_msg(strstr(all, "C2/profile/-/-/missing-in-replay {\"customer_id\":\"C2\""), "%s",
                  all);
    ck_assert_msg(strstr(all, "C2/_indexes/email:bob@example.com/-/missing-in-replay true>null"),
                  "%s", all);
    ck_assert_msg(strstr(all, "C2/_indexes/phone:+441234567/-/missing-in-replay true>null"), "%s",
                  all);
    /* C2's counters fragment (if any) renders as zeros: no finding on either side */
    ck_assert_msg(!strstr(all, "C2/counters"), "%s", all);
    json_decref(findings);
}
END_TEST

START_TEST(test_erasure_difference)
{
    customer("C1", "ada@example.com");
    BOTH("customers");
    EV(ERASED, "event_id=e1", "occurred_at=5000", "version=2", "customer_id=C1");
    REPLAY_ONLY("customers");
    json_t *findings = diff(NULL);
    size_t n = json_array_size(findings);
    bool erased = false, profile = false;
    for (size_t i = 0; i < n; i++) {
        const char *d = describe(findings, i);
        erased |= strcmp(d, "C1/_erased/-/-/missing-in-store null>5000") == 0;
        profile |= strncmp(d, "C1/profile/-/-/missing-in-replay", 32) == 0;
    }
    ck_assert_msg(erased && profile, "%s", describe(findings, 0));
    json_decref(findings);
}
END_TEST

/* Rewrites the provenance header of every fragment of replay (note 3 of storediff.h):
 * a different offset, partition and topic, as a replay's other batching could give. */
static void scramble_provenance(void)
{
    MDB_txn *txn;
    ck_assert_int_eq(store_write_begin(replay.te_store, &txn), 0);
    MDB_cursor *cur;
    ck_assert_int_eq(mdb_cursor_open(txn, store_dbi(replay.te_store, STORE_DB_DOC), &cur), 0);
    MDB_val k, v;
    size_t changed = 0;
    buf_t out = BUF_INIT;
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const char *nul = memchr(k.mv_data, '\0', k.mv_size);
        const char *section = nul + 1;
        int s = view_section_index(view, section);
        if (s < 0)
            continue; /* marks and version records */
        frag_t frag;
        const view_section_t *sec = &view->v_sections[s];
        ck_assert_int_eq(frag_decode(v.mv_data, v.mv_size, sec->vs_field_count, &frag), 0);
        frag.f_prov.fp_offset += 1000;
        frag.f_prov.fp_partition += 3;
        frag.f_prov.fp_topic = 1;
        for (size_t i = 0; i < frag.f_slot_count; i++)
            frag.f_slots[i].fsl_stamp.fs_tie ^= 0x5a5a;
        ck_assert_int_eq(frag_encode(&frag, sec, &out), 0);
        /* A value of another size makes LMDB delete and re-add the node, moving the bytes
         * of a dirty page that k points into: put a copy of the key. */
        char key[256];
        ck_assert_uint_le(k.mv_size, sizeof(key));
        memcpy(key, k.mv_data, k.mv_size);
        MDB_val nk = {k.mv_size, key}, nv = {out.b_len, out.b_data};
        ck_assert_int_eq(mdb_cursor_put(cur, &nk, &nv, MDB_CURRENT), 0);
        changed++;
    }
    mdb_cursor_close(cur);
    buf_free(&out);
    ck_assert_uint_ge(changed, 2);
    ck_assert_int_eq(store_write_commit(replay.te_store, txn), 0);
}

START_TEST(test_provenance_only_differences_are_ignored)
{
    customer("C1", "ada@example.com");
    BOTH("customers");
    order("O1", "C1", 1500);
    BOTH("orders");
    scramble_provenance();
    json_t *findings = diff(NULL);
    ck_assert_msg(json_array_size(findings) == 0, "%s", describe(findings, 0));
    json_decref(findings);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("storediff");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_identical_stores_have_no_findings);
    tcase_add_test(tc, test_lost_field_updates_are_reported_field_by_field);
    tcase_add_test(tc, test_missing_items_sections_and_links);
    tcase_add_test(tc, test_erasure_difference);
    tcase_add_test(tc, test_provenance_only_differences_are_ignored);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
