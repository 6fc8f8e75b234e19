/* Tests of lib/degraded.c: a dead letter marks the customer its key reaches (directly or
 * through a link), the document lists the mark until the letter is handled, a key that
 * reaches nothing yet waits for its link and is applied when the link is learned, and a
 * waiting mark whose link never comes is dropped at the parked events' link-timeout. */
#include "degraded.h"
#include "render.h"
#include "rm_err.h"
#include "rm_time.h"
#include "tsupport.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

enum { REG = 1, ORDER = 4 }; /* schema ids in schemas/catalog.yaml */

static catalog_t *catalog;
static view_t *view;
static ts_engine_t fx;
static buf_t msg;

static void setup(void)
{
    catalog = ts_catalog();
    view = ts_view(catalog);
    ts_engine_open(&fx, view, catalog, NULL);
    buf_init(&msg);
}

static void teardown(void)
{
    ts_engine_close(&fx);
    view_destroy(view);
    catalog_destroy(catalog);
    buf_free(&msg);
}

#define EV(schema, ...) ck_assert_int_eq(ts_event(catalog, schema, &msg, __VA_ARGS__, NULL), 0)

static engine_outcome_t apply(const char *topic)
{
    return ts_engine_apply(&fx, topic, 0, NULL, msg.b_data, msg.b_len).er_outcome;
}

static void register_customer(const char *id)
{
    char c[64], e[64];
    snprintf(c, sizeof(c), "customer_id=%s", id);
    snprintf(e, sizeof(e), "event_id=reg-%s", id);
    EV(REG, e, "occurred_at=1000", "version=1", c, "name=Ada", "email=ada@example.com",
       "phone=+441234", "preferred_channel=EMAIL", "marketing_opt_in=true");
    ck_assert_int_eq(apply("customers"), ENGINE_APPLIED);
}

static void create_order(const char *order_id, const char *customer_id)
{
    char e[64], o[64], c[64];
    snprintf(e, sizeof(e), "event_id=oc-%s", order_id);
    snprintf(o, sizeof(o), "order_id=%s", order_id);
    snprintf(c, sizeof(c), "customer_id=%s", customer_id);
    EV(ORDER, e, "occurred_at=1500", "version=1", o, c, "lines=1", "total_cents=500",
       "currency=EUR");
    ck_assert_int_eq(apply("orders"), ENGINE_APPLIED);
}

/* The whole document of key, or "NOTFOUND"; static. */
static const char *doc_of(const char *key)
{
    static buf_t out;
    MDB_txn *txn;
    buf_reset(&out);
    ck_assert_int_eq(store_read_begin(fx.te_store, &txn), 0);
    int rc = render_view(view, fx.te_store, txn, key, strlen(key), &out);
    store_read_end(txn);
    if (rc == RM_ENOTFOUND)
        return "NOTFOUND";
    ck_assert_int_eq(rc, 0);
    return out.b_data;
}

static degraded_event_t letter(const char *topic, int64_t offset, const char *key)
{
    return (degraded_event_t){topic, 2, offset, 1234, key, strlen(key), "decode", "bad bytes"};
}

/* Runs one of the functions below in a write transaction of its own. */
static bool mark(const degraded_event_t *ev)
{
    MDB_txn *txn;
    bool marked = false;
    ck_assert_int_eq(store_write_begin(fx.te_store, &txn), 0);
    ck_assert_int_eq(degraded_mark(view, fx.te_store, txn, ev, &marked), 0);
    if (!marked)
        ck_assert_int_eq(degraded_mark_wait(view, fx.te_store, txn, ev, rm_wall_ms()), 0);
    ck_assert_int_eq(store_write_commit(fx.te_store, txn), 0);
    return marked;
}

static bool clear(const char *topic, int64_t offset)
{
    MDB_txn *txn;
    bool cleared = false;
    ck_assert_int_eq(store_write_begin(fx.te_store, &txn), 0);
    ck_assert_int_eq(degraded_clear(fx.te_store, txn, topic, 2, offset, &cleared), 0);
    ck_assert_int_eq(store_write_commit(fx.te_store, txn), 0);
    return cleared;
}

static size_t expire(int64_t cutoff_ms)
{
    MDB_txn *txn;
    size_t dropped = 0;
    ck_assert_int_eq(store_write_begin(fx.te_store, &txn), 0);
    ck_assert_int_eq(degraded_expire_waiting(fx.te_store, txn, cutoff_ms, &dropped), 0);
    ck_assert_int_eq(store_write_commit(fx.te_store, txn), 0);
    return dropped;
}

START_TEST(test_a_letter_marks_its_customer_until_handled)
{
    register_customer("C1");
    create_order("O1", "C1");
    ck_assert(!strstr(doc_of("C1"), "\"degraded\":[{"));
    degraded_event_t by_key = letter("customers", 7, "C1");
    ck_assert(mark(&by_key));
    degraded_event_t by_link = letter("orders", 9, "O1"); /* reaches C1 through the order */
    ck_assert(mark(&by_link));
    const char *d = doc_of("C1");
    ck_assert_msg(strstr(d, "\"offset\":7") && strstr(d, "\"offset\":9") &&
                      strstr(d, "\"reason\":\"bad bytes\""),
                  "%s", d);
    ck_assert(clear("customers", 7));
    ck_assert(!clear("customers", 7)); /* handled twice: once */
    d = doc_of("C1");
    ck_assert_msg(!strstr(d, "\"offset\":7") && strstr(d, "\"offset\":9"), "%s", d);
    ck_assert(clear("orders", 9));
    ck_assert(!strstr(doc_of("C1"), "\"offset\":9"));
}
END_TEST

/* A letter read before its order: it waits, and the order's creation applies it. */
START_TEST(test_a_mark_waits_for_its_link)
{
    register_customer("C1");
    degraded_event_t early = letter("orders", 11, "O2");
    ck_assert(!mark(&early));
    ck_assert(!strstr(doc_of("C1"), "\"offset\":11"));
    create_order("O2", "C1");
    const char *d = doc_of("C1");
    ck_assert_msg(strstr(d, "\"offset\":11") != NULL, "%s", d);
    ck_assert_uint_eq(expire(rm_wall_ms() + 1), 0); /* applied: nothing left waiting */
}
END_TEST

/* One whose link never comes is dropped at link-timeout, never earlier, and a key that
 * names nothing marks nobody. */
START_TEST(test_a_waiting_mark_expires)
{
    register_customer("C1");
    int64_t before = rm_wall_ms();
    degraded_event_t orphan = letter("orders", 12, "O-never");
    ck_assert(!mark(&orphan));
    ck_assert_uint_eq(expire(before - 1), 0);
    ck_assert_uint_eq(expire(rm_wall_ms() + 1), 1);
    create_order("O-never", "C1"); /* too late: the mark is gone with its parked events */
    ck_assert(!strstr(doc_of("C1"), "\"offset\":12"));
    ck_assert_str_eq(doc_of("nobody"), "NOTFOUND");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("degraded");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_a_letter_marks_its_customer_until_handled);
    tcase_add_test(tc, test_a_mark_waits_for_its_link);
    tcase_add_test(tc, test_a_waiting_mark_expires);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
