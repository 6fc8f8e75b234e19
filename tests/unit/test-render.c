/* Tests of lib/render.c: the document's shape (sections in definition order, absent ones
 * null / [] / zeros), list order (newest first, ties by item id), keyset pages that an
 * insert between two reads does not shift, sections left out with their freshness, lag
 * figures recorded as volatile spans, and keys that cannot exist. */
#include "render.h"
#include "rm_err.h"
#include "tsupport.h"

#include <check.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

enum { REG = 1, ORDER = 4 }; /* schema ids in schemas/catalog.yaml */

static catalog_t *catalog;
static view_t *view;
static ts_engine_t fx;
static buf_t msg;
static int orders_section;

static void setup(void)
{
    catalog = ts_catalog();
    view = ts_view(catalog);
    ts_engine_open(&fx, view, catalog, NULL);
    buf_init(&msg);
    orders_section = view_section_index(view, "orders");
    ck_assert_int_ge(orders_section, 0);
}

static void teardown(void)
{
    ts_engine_close(&fx);
    view_destroy(view);
    catalog_destroy(catalog);
    buf_free(&msg);
}

#define EV(schema, ...) ck_assert_int_eq(ts_event(catalog, schema, &msg, __VA_ARGS__, NULL), 0)

static void register_c1(void)
{
    EV(REG, "event_id=r1", "occurred_at=1000", "version=1", "customer_id=C1", "name=Ada",
       "email=ada@example.com", "phone=+441234", "preferred_channel=EMAIL",
       "marketing_opt_in=true");
    ck_assert_int_eq(ts_engine_apply(&fx, "customers", 0, NULL, msg.b_data, msg.b_len).er_outcome,
                     ENGINE_APPLIED);
}

static void order(const char *id, int64_t at)
{
    char e[64], o[64], t[64];
    snprintf(e, sizeof(e), "event_id=oc-%s", id);
    snprintf(o, sizeof(o), "order_id=%s", id);
    snprintf(t, sizeof(t), "occurred_at=%lld", (long long)at);
    EV(ORDER, e, t, "version=1", o, "customer_id=C1", "lines=1", "total_cents=5", "currency=EUR");
    ck_assert_int_eq(ts_engine_apply(&fx, "orders", 0, NULL, msg.b_data, msg.b_len).er_outcome,
                     ENGINE_APPLIED);
}

/* Renders key through shape (NULL: render_view) and parses it; the caller frees it. */
static json_t *render(const char *key, const render_shape_t *shape, render_pages_t *pages,
                      int *ret_rc)
{
    buf_t out = BUF_INIT;
    MDB_txn *txn;
    ck_assert_int_eq(store_read_begin(fx.te_store, &txn), 0);
    int rc = shape
                 ? render_view_shaped(view, fx.te_store, txn, key, strlen(key), shape, &out, pages)
                 : render_view(view, fx.te_store, txn, key, strlen(key), &out);
    store_read_end(txn);
    *ret_rc = rc;
    json_t *doc = NULL;
    if (rc == 0) {
        json_error_t jerr;
        doc = json_loadb(out.b_data, out.b_len, 0, &jerr);
        ck_assert_msg(doc != NULL, "not JSON (%s): %s", jerr.text, out.b_data);
    }
    buf_free(&out);
    return doc;
}

/* The order ids of a rendered document's orders, comma-separated; static. */
static const char *order_ids(json_t *doc)
{
    static char ids[512];
    ids[0] = '\0';
    json_t *orders = json_object_get(json_object_get(doc, "sections"), "orders"), *item;
    size_t i;
    json_array_foreach(orders, i, item)
    {
        if (i)
            strcat(ids, ",");
        strcat(ids, json_string_value(json_object_get(item, "order_id")));
    }
    return ids;
}

START_TEST(test_the_document_has_every_section_in_definition_order)
{
    register_c1();
    int rc;
    json_t *doc = render("C1", NULL, NULL, &rc);
    ck_assert_int_eq(rc, 0);
    ck_assert_str_eq(json_string_value(json_object_get(doc, "key")), "C1");
    json_t *sections = json_object_get(doc, "sections");
    /* stored sections in definition order; live ones (no emitter here) left out */
    size_t stored = 0;
    for (size_t s = 0; s < view->v_section_count; s++)
        stored += !view->v_sections[s].vs_live;
    ck_assert_uint_eq(json_object_size(sections), stored);
    ck_assert_uint_lt(stored, view->v_section_count); /* the view has a live section */
    const char *name;
    json_t *value;
    size_t s = 0;
    json_object_foreach(sections, name, value)
    {
        while (view->v_sections[s].vs_live)
            s++;
        ck_assert_str_eq(name, view->v_sections[s].vs_name);
        s++;
    }
    ck_assert(json_is_array(json_object_get(sections, "orders")));
    ck_assert_uint_eq(json_array_size(json_object_get(sections, "orders")), 0);
    ck_assert(json_is_null(json_object_get(sections, "loyalty")));
    ck_assert_int_eq(json_integer_value(
                         json_object_get(json_object_get(sections, "counters"), "lifetime_orders")),
                     0);
    /* the profile's freshness names the event that wrote it */
    json_t *fresh = json_object_get(json_object_get(doc, "freshness"), "profile");
    ck_assert_str_eq(json_string_value(json_object_get(fresh, "topic")), "customers");
    ck_assert_int_eq(json_integer_value(json_object_get(fresh, "event_time")), 1000);
    json_decref(doc);
}
END_TEST

/* Pages follow the keyset: an order added between two reads, newer than the page read,
 * shifts nothing on the next page. Ties on the sort key go by item id. */
START_TEST(test_pages_follow_the_keyset)
{
    register_c1();
    order("O1", 1100);
    order("O2", 1200);
    order("O3", 1200); /* the same time as O2: ids ascending */
    order("O4", 1300);
    int rc;
    json_t *doc = render("C1", NULL, NULL, &rc);
    ck_assert_str_eq(order_ids(doc), "O4,O2,O3,O1");
    json_decref(doc);

    render_shape_t shape;
    render_shape_all(&shape);
    shape.sh_limit[orders_section] = 2;
    render_pages_t pages;
    doc = render("C1", &shape, &pages, &rc);
    ck_assert_str_eq(order_ids(doc), "O4,O2");
    ck_assert(pages.rp_more[orders_section]);
    json_decref(doc);
    order("O5", 1400); /* arrives while the client pages */
    shape.sh_after[orders_section] = pages.rp_next[orders_section];
    doc = render("C1", &shape, &pages, &rc);
    ck_assert_str_eq(order_ids(doc), "O3,O1");
    ck_assert(!pages.rp_more[orders_section]);
    json_decref(doc);
}
END_TEST

/* A shape without a section leaves out the section and its freshness; lag figures are
 * added to the projected freshness and recorded as volatile spans (not in the tag). */
START_TEST(test_sections_left_out_and_lag_spans)
{
    register_c1();
    order("O1", 1100);
    render_shape_t shape;
    render_shape_all(&shape);
    shape.sh_sections &= ~(1u << orders_section);
    render_lag_t lag[FRAG_MAX_SLOTS] = {{0}};
    for (size_t s = 0; s < view->v_section_count; s++)
        lag[s] = (render_lag_t){7, 250};
    render_spans_t spans = {0};
    shape.sh_lag = lag;
    shape.sh_volatile = &spans;
    int rc;
    json_t *doc = render("C1", &shape, NULL, &rc);
    ck_assert_int_eq(rc, 0);
    ck_assert_ptr_null(json_object_get(json_object_get(doc, "sections"), "orders"));
    ck_assert_ptr_null(json_object_get(json_object_get(doc, "freshness"), "orders"));
    json_t *profile_lag =
        json_object_get(json_object_get(json_object_get(doc, "freshness"), "profile"), "lag");
    ck_assert_int_eq(json_integer_value(json_object_get(profile_lag, "messages")), 7);
    ck_assert_int_eq(json_integer_value(json_object_get(profile_lag, "ms")), 250);
    ck_assert_uint_ge(spans.rsp_count, 1);
    ck_assert(!spans.rsp_overflow);
    for (size_t i = 0; i < spans.rsp_count; i++) {
        ck_assert_uint_lt(spans.rsp_start[i], spans.rsp_end[i]);
        if (i)
            ck_assert_uint_le(spans.rsp_end[i - 1], spans.rsp_start[i]);
    }
    json_decref(doc);
}
END_TEST

START_TEST(test_keys_that_cannot_exist)
{
    register_c1();
    MDB_txn *txn;
    buf_t out = BUF_INIT;
    char long_key[VIEW_KEY_MAX_BYTES + 2];
    memset(long_key, 'k', sizeof(long_key) - 1);
    long_key[sizeof(long_key) - 1] = '\0';
    ck_assert_int_eq(store_read_begin(fx.te_store, &txn), 0);
    ck_assert_int_eq(render_view(view, fx.te_store, txn, "", 0, &out), RM_EINVAL);
    ck_assert_int_eq(render_view(view, fx.te_store, txn, long_key, strlen(long_key), &out),
                     RM_EINVAL);
    ck_assert_int_eq(render_view(view, fx.te_store, txn, "C\0x", 3, &out), RM_EINVAL);
    ck_assert_int_eq(render_view(view, fx.te_store, txn, "C2", 2, &out), RM_ENOTFOUND);
    ck_assert_uint_eq(out.b_len, 0); /* unchanged on error */
    ck_assert_int_eq(render_exists(view, fx.te_store, txn, "C1", 2), 0);
    ck_assert_int_eq(render_exists(view, fx.te_store, txn, "C", 1), RM_ENOTFOUND);
    store_read_end(txn);
    buf_free(&out);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("render");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_the_document_has_every_section_in_definition_order);
    tcase_add_test(tc, test_pages_follow_the_keyset);
    tcase_add_test(tc, test_sections_left_out_and_lag_spans);
    tcase_add_test(tc, test_keys_that_cannot_exist);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
