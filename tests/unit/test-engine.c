/* Tests of engine.c (and render.c) on the real Customer 360 definition: every
 * operation, the version guard, parking, trimming, erasure and convergence. */
#include "degraded.h"
#include "engine.h"
#include "index.h"
#include "render.h"
#include "rm_err.h"
#include "rm_time.h"
#include "topic_counts.h"
#include "tsupport.h"

#include <check.h>
#include <stdio.h>
#include <string.h>

/* Schema ids of schemas/catalog.yaml. */
enum {
    REPAIR = 30,
    REG = 1,
    CONTACT = 2,
    ERASED = 3,
    ORDER = 4,
    CANCEL = 5,
    SETTLED = 6,
    FAILED = 7,
    REVERSED = 8,
    DISPATCHED = 9,
    DELAYED = 10,
    DELIVERED = 11,
    LOYALTY = 12,
    RET_OPEN = 13,
    RET_CLOSE = 14,
    CUSTOMER_SNAP = 40,
    ORDER_SNAP = 41,
    LOYALTY_SNAP = 42,
    RETURN_SNAP = 43
};

typedef ts_engine_t fixture_t;

static catalog_t *catalog;
static view_t *view;
static fixture_t fx, fx2;
static buf_t msg;

static void setup(void)
{
    catalog = ts_catalog();
    view = ts_view(catalog);
    ts_engine_open(&fx, view, catalog, NULL);
    ts_engine_open(&fx2, view, catalog, NULL);
    buf_init(&msg);
}

static void teardown(void)
{
    ts_engine_close(&fx);
    ts_engine_close(&fx2);
    view_destroy(view);
    catalog_destroy(catalog);
    buf_free(&msg);
}

/* Applies the message in `msg` in its own transaction; returns the result. */
static engine_result_t apply_to(fixture_t *f, const char *topic)
{
    return ts_engine_apply(f, topic, 0, NULL, msg.b_data, msg.b_len);
}

#define EV(schema, ...) ck_assert_int_eq(ts_event(catalog, schema, &msg, __VA_ARGS__, NULL), 0)
#define APPLY(topic) apply_to(&fx, topic).er_outcome

/* Renders the sections of key; returns a static string or "NOTFOUND". */
static const char *sections_of(fixture_t *f, const char *key)
{
    static buf_t out;
    MDB_txn *txn;
    buf_reset(&out);
    ck_assert_int_eq(store_read_begin(f->te_store, &txn), 0);
    int rc = render_sections(view, f->te_store, txn, key, strlen(key), &out);
    store_read_end(txn);
    if (rc == RM_ENOTFOUND)
        return "NOTFOUND";
    ck_assert_int_eq(rc, 0);
    return out.b_data;
}

static void register_c1_expect(engine_outcome_t outcome)
{
    EV(REG, "event_id=r1", "occurred_at=1000", "version=1", "customer_id=C1", "name=Ada",
       "email=ada@example.com", "phone=+441234", "preferred_channel=EMAIL",
       "marketing_opt_in=true");
    ck_assert_int_eq(APPLY("customers"), outcome);
}

static void register_c1(void)
{
    register_c1_expect(ENGINE_APPLIED);
}

static void order(const char *id, int64_t at, int64_t version)
{
    char e[64], o[64], t[64], v[64];
    snprintf(e, sizeof(e), "event_id=oc-%s-%lld", id, (long long)version);
    snprintf(o, sizeof(o), "order_id=%s", id);
    snprintf(t, sizeof(t), "occurred_at=%lld", (long long)at);
    snprintf(v, sizeof(v), "version=%lld", (long long)version);
    EV(ORDER, e, t, v, o, "customer_id=C1", "lines=2", "total_cents=500", "currency=EUR");
}

/* A repair from reconcile: sets fields with its own stamp (wins over older writes, loses
 * to newer events), keeps indexes in step, is applied once, and never resurrects. */
#define REPAIR_EV(id, at, key, section, op, item, json)                                            \
    EV(REPAIR, "event_id=" id, "occurred_at=" at, "version=1", "view=customer360",                 \
       "view_key=" key, "section=" section, "op=" op, "item_id=" item, "fields_json=" json,        \
       "run_id=run1", "source_url=http://src/x", "reason=test")

START_TEST(test_repairs_apply_once_and_lose_to_newer_events)
{
    register_c1();
    order("O1", 1500, 1);
    ck_assert_int_eq(APPLY("orders"), ENGINE_APPLIED);
    REPAIR_EV("run1/1", "3000", "C1", "profile", "SET", "null",
              "{\"email\":\"fixed@example.com\"}");
    ck_assert_int_eq(APPLY("customer360.repairs"), ENGINE_APPLIED);
    ck_assert_int_eq(APPLY("customer360.repairs"), ENGINE_STALE); /* redelivered */
    const char *s = sections_of(&fx, "C1");
    ck_assert_msg(strstr(s, "\"email\":\"fixed@example.com\"") && strstr(s, "\"name\":\"Ada\""),
                  "%s", s);
    /* an older contact update arriving late loses; a newer one wins */
    EV(CONTACT, "event_id=c2", "occurred_at=2000", "version=2", "customer_id=C1",
       "email=late@example.com", "phone=null", "preferred_channel=SMS", "marketing_opt_in=false");
    ck_assert_int_eq(APPLY("customers"), ENGINE_APPLIED);
    ck_assert_ptr_nonnull(strstr(sections_of(&fx, "C1"), "fixed@example.com"));
    EV(CONTACT, "event_id=c3", "occurred_at=4000", "version=3", "customer_id=C1",
       "email=new@example.com", "phone=null", "preferred_channel=SMS", "marketing_opt_in=false");
    ck_assert_int_eq(APPLY("customers"), ENGINE_APPLIED);
    ck_assert_ptr_nonnull(strstr(sections_of(&fx, "C1"), "new@example.com"));

    /* list items: upsert a missing one, fix a field, delete an extra one */
    REPAIR_EV("run1/2", "3000", "C1", "orders", "UPSERT", "O9",
              "{\"order_id\":\"O9\",\"created_at\":1200,\"total_cents\":77,\"currency\":\"GBP\","
              "\"line_count\":1,\"status\":\"CREATED\"}");
    ck_assert_int_eq(APPLY("customer360.repairs"), ENGINE_APPLIED);
    REPAIR_EV("run1/3", "3000", "C1", "orders", "UPSERT", "O1", "{\"status\":\"CANCELLED\"}");
    ck_assert_int_eq(APPLY("customer360.repairs"), ENGINE_APPLIED);
    s = sections_of(&fx, "C1");
    ck_assert_msg(strstr(s, "\"order_id\":\"O9\"") && strstr(s, "\"total_cents\":77") &&
                      strstr(s, "\"status\":\"CANCELLED\""),
                  "%s", s);
    REPAIR_EV("run1/4", "3000", "C1", "orders", "DELETE", "O9", "{}");
    ck_assert_int_eq(APPLY("customer360.repairs"), ENGINE_APPLIED);
    ck_assert_ptr_null(strstr(sections_of(&fx, "C1"), "\"O9\""));

    /* poison repairs are rejected with a reason, without effect */
    REPAIR_EV("run1/5", "3000", "C1", "profile", "SET", "null", "{\"nope\":1}");
    ck_assert_int_eq(APPLY("customer360.repairs"), ENGINE_REJECTED);
    REPAIR_EV("run1/6", "3000", "C1", "profile", "SET", "null", "{\"name\":5}");
    ck_assert_int_eq(APPLY("customer360.repairs"), ENGINE_REJECTED);
    REPAIR_EV("run1/7", "3000", "C1", "orders", "SET", "null", "{}");
    ck_assert_int_eq(APPLY("customer360.repairs"), ENGINE_REJECTED);
    REPAIR_EV("run1/8", "3000", "C1", "profile", "SET", "null", "not json");
    ck_assert_int_eq(APPLY("customer360.repairs"), ENGINE_REJECTED);

    /* erased keys stay erased */
    EV(ERASED, "event_id=e1", "occurred_at=5000", "version=4", "customer_id=C1");
    ck_assert_int_eq(APPLY("customers"), ENGINE_APPLIED);
    REPAIR_EV("run1/9", "6000", "C1", "profile", "SET", "null", "{\"name\":\"Zombie\"}");
    ck_assert_int_eq(APPLY("customer360.repairs"), ENGINE_ERASED);
    ck_assert_str_eq(sections_of(&fx, "C1"), "NOTFOUND");
}
END_TEST

/* Tombstones follow the rule the definition declares for their topic. */
static engine_outcome_t apply_tombstone_to(const char *topic, const char *key)
{
    return ts_engine_apply(&fx, topic, 9000, key, NULL, 0).er_outcome;
}

START_TEST(test_tombstones_follow_the_declared_rule)
{
    register_c1();
    order("O1", 1500, 1);
    ck_assert_int_eq(APPLY("orders"), ENGINE_APPLIED);
    order("O2", 1600, 1);
    ck_assert_int_eq(APPLY("orders"), ENGINE_APPLIED);
    /* orders: the item goes, the rest stays (counters keep what happened) */
    ck_assert_int_eq(apply_tombstone_to("orders", "O1"), ENGINE_APPLIED);
    const char *s = sections_of(&fx, "C1");
    ck_assert_msg(!strstr(s, "\"O1\"") && strstr(s, "\"O2\"") && strstr(s, "\"lifetime_orders\":2"),
                  "%s", s);
    /* an order not known yet: the tombstone waits for its link (the next test) */
    ck_assert_int_eq(apply_tombstone_to("orders", "O-unknown"), ENGINE_PARKED);
    /* a later duplicate of the order's creation does not bring it back */
    order("O1", 1500, 1);
    ck_assert_int_eq(APPLY("orders"), ENGINE_STALE);
    /* payments declare nothing: counted and skipped */
    ck_assert_int_eq(apply_tombstone_to("payments", "P1"), ENGINE_TOMBSTONE);
    ck_assert_int_eq(apply_tombstone_to("customers", NULL), ENGINE_REJECTED);
    /* customers: erase, final */
    ck_assert_int_eq(apply_tombstone_to("customers", "C1"), ENGINE_APPLIED);
    ck_assert_str_eq(sections_of(&fx, "C1"), "NOTFOUND");
    ck_assert_int_eq(apply_tombstone_to("customers", "C1"), ENGINE_ERASED);
    register_c1_expect(ENGINE_ERASED);
    ck_assert_int_eq(apply_tombstone_to("orders", "O2"), ENGINE_ERASED);
}
END_TEST

/* A tombstone on `orders` need not share its order's partition: a producer with another
 * partitioner, or partitions added since, put it elsewhere. Read before the order's
 * creation taught the link, it waits parked for it; then it deletes the order, whose
 * events are all older than the tombstone, and a second copy of the creation stays out. */
START_TEST(test_a_tombstone_before_its_order_still_deletes_it)
{
    register_c1();
    ck_assert_int_eq(apply_tombstone_to("orders", "O7"), ENGINE_PARKED);
    order("O7", 1500, 1);
    engine_result_t res = apply_to(&fx, "orders");
    ck_assert_int_eq(res.er_outcome, ENGINE_APPLIED);
    ck_assert_uint_eq(res.er_unparked, 1);
    order("O8", 1600, 1);
    ck_assert_int_eq(APPLY("orders"), ENGINE_APPLIED);
    const char *s = sections_of(&fx, "C1");
    ck_assert_msg(!strstr(s, "\"O7\"") && strstr(s, "\"O8\"") && strstr(s, "\"lifetime_orders\":2"),
                  "%s", s);
    order("O7", 1500, 1);
    ck_assert_int_eq(APPLY("orders"), ENGINE_STALE);
    ck_assert_ptr_null(strstr(sections_of(&fx, "C1"), "\"O7\""));
    size_t parked;
    MDB_txn *txn;
    ck_assert_int_eq(store_read_begin(fx.te_store, &txn), 0);
    ck_assert_int_eq(engine_parked_count(fx.te_engine, txn, &parked), 0);
    store_read_end(txn);
    ck_assert_uint_eq(parked, 0);
}
END_TEST

static int tombstone_expired(void *ctx, MDB_txn *txn, const engine_parked_t *parked)
{
    (void)txn;
    (*(int *)ctx)++;
    ck_assert_str_eq(parked->ep_link, "order");
    ck_assert_str_eq(parked->ep_msg.em_topic, "orders");
    ck_assert_ptr_null(parked->ep_msg.em_value); /* still a tombstone, for its dead letter */
    ck_assert_int_eq((int)parked->ep_msg.em_key_len, 3);
    ck_assert_int_eq(memcmp(parked->ep_msg.em_key, "O-x", 3), 0);
    return 0;
}

/* A parked tombstone whose item never comes expires like a parked event: handed to the
 * pipeline (which dead-letters it, link-timeout) as the null-value record it was. */
START_TEST(test_a_parked_tombstone_expires_as_a_tombstone)
{
    register_c1();
    ck_assert_int_eq(apply_tombstone_to("orders", "O-x"), ENGINE_PARKED);
    MDB_txn *txn;
    int seen = 0;
    size_t expired = 0;
    ck_assert_int_eq(store_write_begin(fx.te_store, &txn), 0);
    ck_assert_int_eq(engine_txn_begin(fx.te_engine, txn), 0);
    ck_assert_int_eq(engine_expire_parked(fx.te_engine, txn, rm_wall_ms() + 1, tombstone_expired,
                                          &seen, &expired),
                     0);
    ck_assert_int_eq(engine_txn_precommit(fx.te_engine, txn), 0);
    ck_assert_int_eq(store_write_commit(fx.te_store, txn), 0);
    ck_assert_int_eq(seen, 1);
    ck_assert_uint_eq(expired, 1);
}
END_TEST

START_TEST(test_profile_set_and_empty_sections)
{
    register_c1();
    ck_assert(ts_json_equal(
        sections_of(&fx, "C1"),
        "{\"profile\":{\"customer_id\":\"C1\",\"name\":\"Ada\",\"email\":\"ada@example.com\","
        "\"phone\":\"+441234\",\"preferred_channel\":\"EMAIL\",\"marketing_opt_in\":true,"
        "\"registered_at\":1000,\"updated_at\":1000},\"orders\":[],\"payment_issues\":[],"
        "\"delivery_exceptions\":[],\"loyalty\":null,\"returns\":[],"
        "\"counters\":{\"lifetime_orders\":0,\"lifetime_settled_cents\":0}}"));
    ck_assert_str_eq(sections_of(&fx, "C2"), "NOTFOUND");
}
END_TEST

START_TEST(test_contact_update_null_means_unchanged)
{
    register_c1();
    EV(CONTACT, "event_id=c2", "occurred_at=2000", "version=2", "customer_id=C1", "email=null",
       "phone=+449999", "preferred_channel=SMS", "marketing_opt_in=false");
    ck_assert_int_eq(APPLY("customers"), ENGINE_APPLIED);
    const char *s = sections_of(&fx, "C1");
    ck_assert_msg(strstr(s, "\"email\":\"ada@example.com\"") &&
                      strstr(s, "\"phone\":\"+449999\"") && strstr(s, "\"updated_at\":2000") &&
                      strstr(s, "\"registered_at\":1000"),
                  "%s", s);
}
END_TEST

START_TEST(test_version_guard_ignores_duplicates_and_old_versions)
{
    register_c1();
    order("O1", 1100, 1);
    ck_assert_int_eq(APPLY("orders"), ENGINE_APPLIED);
    ck_assert_int_eq(APPLY("orders"), ENGINE_STALE); /* the same event redelivered */
    EV(SETTLED, "event_id=p1", "occurred_at=1200", "version=1", "payment_id=P1", "order_id=O1",
       "amount_cents=500", "currency=EUR");
    ck_assert_int_eq(APPLY("payments"), ENGINE_APPLIED);
    ck_assert_int_eq(APPLY("payments"), ENGINE_STALE);
    const char *s = sections_of(&fx, "C1");
    ck_assert_msg(strstr(s, "\"lifetime_orders\":1,\"lifetime_settled_cents\":500") != NULL, "%s",
                  s);
    ck_assert_msg(strstr(s, "\"payment_status\":\"SETTLED\"") != NULL, "%s", s);
}
END_TEST

START_TEST(test_parked_until_link_arrives)
{
    register_c1();
    EV(FAILED, "event_id=p1a", "occurred_at=1200", "version=1", "payment_id=P1", "order_id=O1",
       "amount_cents=500", "currency=EUR", "reason=card declined");
    ck_assert_int_eq(APPLY("payments"), ENGINE_PARKED);
    EV(SETTLED, "event_id=p1b", "occurred_at=1300", "version=2", "payment_id=P1", "order_id=O1",
       "amount_cents=500", "currency=EUR");
    ck_assert_int_eq(APPLY("payments"), ENGINE_PARKED);
    order("O1", 1100, 1);
    engine_result_t res = apply_to(&fx, "orders");
    ck_assert_int_eq(res.er_outcome, ENGINE_APPLIED);
    ck_assert_uint_eq(res.er_unparked, 2);
    const char *s = sections_of(&fx, "C1");
    ck_assert_msg(strstr(s, "\"payment_status\":\"SETTLED\"") &&
                      strstr(s, "\"payment_issues\":[]") &&
                      strstr(s, "\"lifetime_settled_cents\":500"),
                  "%s", s);
    MDB_txn *txn;
    size_t parked;
    store_read_begin(fx.te_store, &txn);
    ck_assert_int_eq(engine_parked_count(fx.te_engine, txn, &parked), 0);
    store_read_end(txn);
    ck_assert_uint_eq(parked, 0);
}
END_TEST

/* What the pipeline's dead-letter hook saw (eo_unparked_rejected). */
typedef struct rejected_log {
    int rl_count;
    char rl_topic[32];
    int64_t rl_offset;
    engine_result_t rl_res;
    size_t rl_value_len;
} rejected_log_t;

static int record_rejected(void *ctx, MDB_txn *txn, const engine_msg_t *m,
                           const engine_result_t *res)
{
    (void)txn;
    rejected_log_t *log = ctx;
    log->rl_count++;
    snprintf(log->rl_topic, sizeof(log->rl_topic), "%s", m->em_topic);
    log->rl_offset = m->em_offset;
    log->rl_res = *res;
    log->rl_value_len = m->em_value_len;
    return 0;
}

/* A parked event that fails validation once its link is known is handed to the
 * dead-letter hook with its own coordinates and a reason, exactly like one that arrives
 * after its link; it never vanishes. */
START_TEST(test_parked_event_rejected_on_unpark_is_dead_lettered)
{
    rejected_log_t log = {0};
    engine_opts_t opts = {.eo_unparked_rejected = record_rejected,
                          .eo_unparked_rejected_ctx = &log};
    engine_destroy(fx.te_engine);
    fx.te_engine = engine_new(view, catalog, fx.te_store, &opts);
    ck_assert_ptr_nonnull(fx.te_engine);
    register_c1();
    EV(SETTLED, "event_id=p1", "occurred_at=1300", "version=1", "payment_id=", "order_id=O1",
       "amount_cents=500", "currency=EUR");
    size_t poison_len = msg.b_len;
    int64_t poison_offset = fx.te_offset;
    ck_assert_int_eq(APPLY("payments"), ENGINE_PARKED);
    ck_assert_int_eq(log.rl_count, 0);
    order("O1", 1100, 1);
    engine_result_t res = apply_to(&fx, "orders");
    ck_assert_int_eq(res.er_outcome, ENGINE_APPLIED);
    ck_assert_int_eq(log.rl_count, 1);
    ck_assert_str_eq(log.rl_topic, "payments");
    ck_assert_int_eq(log.rl_offset, poison_offset);
    ck_assert_uint_eq(log.rl_value_len, poison_len);
    ck_assert_int_eq(log.rl_res.er_outcome, ENGINE_REJECTED);
    ck_assert_int_eq(log.rl_res.er_error, RM_EVALIDATE);
    ck_assert_msg(log.rl_res.er_reason[0] != '\0', "no reason");
    /* The same event after its link: the same outcome and reason. */
    EV(SETTLED, "event_id=p2", "occurred_at=1300", "version=1", "payment_id=", "order_id=O1",
       "amount_cents=500", "currency=EUR");
    engine_result_t direct = apply_to(&fx, "payments");
    ck_assert_int_eq(direct.er_outcome, ENGINE_REJECTED);
    ck_assert_str_eq(direct.er_reason, log.rl_res.er_reason);
    const char *s = sections_of(&fx, "C1");
    ck_assert_msg(strstr(s, "\"lifetime_settled_cents\":0") != NULL, "%s", s);
}
END_TEST

static int count_expired(void *ctx, MDB_txn *txn, const engine_parked_t *parked)
{
    (void)txn;
    (*(int *)ctx)++;
    ck_assert_str_eq(parked->ep_link, "order");
    ck_assert_int_eq(parked->ep_msg.em_timestamp_ms, 0); /* the message's own, kept */
    return 0;
}

/* Runs one expiry pass with cutoff_ms in its own transaction; returns how many expired. */
static int expire_before(int64_t cutoff_ms)
{
    MDB_txn *txn;
    int seen = 0;
    size_t expired = 0;
    ck_assert_int_eq(store_write_begin(fx.te_store, &txn), 0);
    ck_assert_int_eq(engine_txn_begin(fx.te_engine, txn), 0);
    ck_assert_int_eq(
        engine_expire_parked(fx.te_engine, txn, cutoff_ms, count_expired, &seen, &expired), 0);
    ck_assert_int_eq(engine_txn_precommit(fx.te_engine, txn), 0);
    ck_assert_int_eq(store_write_commit(fx.te_store, txn), 0);
    ck_assert_uint_eq(expired, (size_t)seen);
    return seen;
}

/* Link-timeout counts the time an event waited in this store, not the age of its
 * message: a replay of old history (here: messages stamped 1970) parks events that have
 * waited no time at all, and a pass whose cutoff is a day ago expires none of them. */
START_TEST(test_parking_age_is_time_waited_in_this_store)
{
    register_c1();
    EV(SETTLED, "event_id=p1", "occurred_at=1300", "version=1", "payment_id=P1", "order_id=O1",
       "amount_cents=500", "currency=EUR");
    int64_t before_ms = rm_wall_ms();
    ck_assert_int_eq(APPLY("payments"), ENGINE_PARKED);
    ck_assert_int_eq(expire_before(rm_wall_ms() - 86400 * 1000LL), 0);
    ck_assert_int_eq(expire_before(before_ms - 1), 0);
    order("O1", 1100, 1);
    engine_result_t res = apply_to(&fx, "orders");
    ck_assert_uint_eq(res.er_unparked, 1);
    const char *s = sections_of(&fx, "C1");
    ck_assert_msg(strstr(s, "\"lifetime_settled_cents\":500") != NULL, "%s", s);
    /* and one that truly waited past the cutoff does expire */
    EV(SETTLED, "event_id=p2", "occurred_at=1400", "version=1", "payment_id=P2", "order_id=O2",
       "amount_cents=700", "currency=EUR");
    ck_assert_int_eq(APPLY("payments"), ENGINE_PARKED);
    ck_assert_int_eq(expire_before(rm_wall_ms() + 1), 1);
}
END_TEST

/* A store written before parked events carried their parking time (format 1: no kind,
 * no parked_at) is upgraded by the first transaction: the event counts as parked now
 * (waits longer, never shorter), and it is still applied when its link arrives. */
START_TEST(test_format1_parked_events_are_upgraded)
{
    EV(SETTLED, "event_id=p1", "occurred_at=1300", "version=1", "payment_id=P1", "order_id=O1",
       "amount_cents=500", "currency=EUR");
    buf_t v1 = BUF_INIT;
    int32_t partition = 3;
    int64_t offset = 77, timestamp = 5;
    uint16_t topic_len = 8;
    uint32_t key_len = 2;
    buf_append(&v1, &partition, 4);
    buf_append(&v1, &offset, 8);
    buf_append(&v1, &timestamp, 8);
    buf_append(&v1, &topic_len, 2);
    buf_append(&v1, "payments", 8);
    buf_append(&v1, &key_len, 4);
    buf_append(&v1, "P1", 2);
    buf_append(&v1, msg.b_data, msg.b_len);
    unsigned char key[32] = "order\0O1\0";
    store_be64(key + 9, 1);
    MDB_txn *txn;
    ck_assert_int_eq(store_write_begin(fx.te_store, &txn), 0);
    MDB_val k = {17, key}, v = {v1.b_len, v1.b_data};
    ck_assert_int_eq(mdb_put(txn, store_dbi(fx.te_store, STORE_DB_PENDING), &k, &v, 0), 0);
    ck_assert_int_eq(store_meta_put_i64(fx.te_store, txn, "pending_seq", 1), 0);
    ck_assert_int_eq(store_write_commit(fx.te_store, txn), 0);
    buf_free(&v1);

    int64_t before_ms = rm_wall_ms();
    register_c1(); /* the first engine transaction upgrades */
    ck_assert_int_eq(expire_before(before_ms - 1), 0);
    order("O1", 1100, 1);
    engine_result_t res = apply_to(&fx, "orders");
    ck_assert_uint_eq(res.er_unparked, 1);
    const char *s = sections_of(&fx, "C1");
    ck_assert_msg(strstr(s, "\"lifetime_settled_cents\":500") != NULL, "%s", s);
}
END_TEST

/* ---- per-topic counters of parked events ---- */

typedef struct counts_seen {
    int cs_topics;
    char cs_topic[4][32];
    topic_counts_t cs_counts[4];
} counts_seen_t;

static int note_counts(void *ctx, const char *topic, const topic_counts_t *counts)
{
    counts_seen_t *seen = ctx;
    ck_assert_int_lt(seen->cs_topics, 4);
    snprintf(seen->cs_topic[seen->cs_topics], sizeof(seen->cs_topic[0]), "%s", topic);
    seen->cs_counts[seen->cs_topics++] = *counts;
    return 0;
}

/* The parked count of topic in seen (0 when absent). */
static int64_t parked_of(const counts_seen_t *seen, const char *topic)
{
    for (int i = 0; i < seen->cs_topics; i++)
        if (strcmp(seen->cs_topic[i], topic) == 0)
            return seen->cs_counts[i].tc_count[TOPIC_COUNTS_PARKED];
    return 0;
}

/* The stored counters of f's store equal a full scan of its pending db, topic by topic;
 * returns the total parked. */
static int64_t assert_counters_match_scan(fixture_t *f)
{
    static const char *const topics[] = {"payments", "shipments", "orders", "customers"};
    counts_seen_t stored = {0}, scanned = {0};
    MDB_txn *txn;
    ck_assert_int_eq(store_read_begin(f->te_store, &txn), 0);
    ck_assert_int_eq(topic_counts_foreach(f->te_store, txn, note_counts, &stored), 0);
    ck_assert_int_eq(topic_counts_scan(f->te_store, txn, note_counts, &scanned), 0);
    size_t parked;
    ck_assert_int_eq(engine_parked_count(f->te_engine, txn, &parked), 0);
    store_read_end(txn);
    int64_t total = 0;
    for (size_t i = 0; i < sizeof(topics) / sizeof(topics[0]); i++) {
        ck_assert_msg(parked_of(&stored, topics[i]) == parked_of(&scanned, topics[i]),
                      "%s: %lld counted, %lld parked", topics[i],
                      (long long)parked_of(&stored, topics[i]),
                      (long long)parked_of(&scanned, topics[i]));
        total += parked_of(&stored, topics[i]);
    }
    ck_assert_int_eq(total, (int64_t)parked);
    return total;
}

/* Parked events of two topics for order id i (0 <= i < 30). */
static void park_for_order(int i, int n)
{
    char e[32], pid[32], oid[32];
    snprintf(e, sizeof(e), "event_id=x%d-%d", i, n);
    snprintf(oid, sizeof(oid), "order_id=RO%d", i);
    if (n % 2) {
        snprintf(pid, sizeof(pid), "payment_id=RP%d-%d", i, n);
        EV(SETTLED, e, "occurred_at=1300", "version=1", pid, oid, "amount_cents=5", "currency=EUR");
        ck_assert_int_eq(APPLY("payments"), ENGINE_PARKED);
    } else {
        snprintf(pid, sizeof(pid), "shipment_id=RS%d-%d", i, n);
        EV(DISPATCHED, e, "occurred_at=350", "version=1", pid, oid, "carrier=c", "eta=999");
        ck_assert_int_eq(APPLY("shipments"), ENGINE_PARKED);
    }
}

/* The counters kept with each park, unpark and expiry equal a full scan after a random
 * mix of them, and a store written before the counters existed is counted once by its
 * first write transaction. */
START_TEST(test_parked_counters_equal_a_scan)
{
    register_c1();
    uint32_t state = 12345;
    bool ordered[30] = {0};
    int64_t marks[64];
    int mark_count = 0;
    for (int step = 0; step < 400; step++) {
        state = state * 1103515245u + 12345u;
        uint32_t r = (state >> 8) % 100;
        int i = (int)((state >> 20) % 30);
        if (r < 70 && !ordered[i]) {
            park_for_order(i, step);
        } else if (r < 85 && !ordered[i]) {
            char id[16];
            snprintf(id, sizeof(id), "RO%d", i);
            order(id, 1100, 1);
            ck_assert_int_eq(APPLY("orders"), ENGINE_APPLIED);
            ordered[i] = true;
        } else if (r < 95) {
            if (mark_count < 64)
                marks[mark_count++] = rm_wall_ms();
        } else if (mark_count) {
            expire_before(marks[(state >> 4) % (uint32_t)mark_count]);
        }
        if (step % 50 == 49)
            assert_counters_match_scan(&fx);
    }
    ck_assert_int_gt(assert_counters_match_scan(&fx), 0);
    expire_before(rm_wall_ms() + 1);
    ck_assert_int_eq(assert_counters_match_scan(&fx), 0);

    /* A store of the version before: parked events, no counters. */
    for (int n = 0; n < 5; n++)
        park_for_order(99, 1000 + n);
    MDB_txn *txn;
    ck_assert_int_eq(store_write_begin(fx.te_store, &txn), 0);
    static const char *const names[] = {"topic_counts_format", "topic_counts/payments",
                                        "topic_counts/shipments"};
    for (size_t n = 0; n < sizeof(names) / sizeof(names[0]); n++) {
        MDB_val k = {strlen(names[n]), (void *)names[n]};
        int mrc = mdb_del(txn, store_dbi(fx.te_store, STORE_DB_META), &k, NULL);
        ck_assert_msg(mrc == 0 || mrc == MDB_NOTFOUND, "%s", mdb_strerror(mrc));
    }
    ck_assert_int_eq(store_write_commit(fx.te_store, txn), 0);
    counts_seen_t none = {0};
    ck_assert_int_eq(store_read_begin(fx.te_store, &txn), 0);
    ck_assert_int_eq(topic_counts_foreach(fx.te_store, txn, note_counts, &none), RM_ENOTFOUND);
    store_read_end(txn);
    park_for_order(99, 2000); /* its first write transaction counts it */
    ck_assert_int_eq(assert_counters_match_scan(&fx), 6);
}
END_TEST

/* The view key a dead letter's mark was applied to ("" when none, "waiting" while it
 * waits for its link). */
static const char *marked_key(const char *topic, int partition, int offset)
{
    static char out[64];
    char name[128];
    snprintf(name, sizeof(name), "degraded/%s/%d/%d", topic, partition, offset);
    MDB_txn *txn;
    const void *data;
    size_t len;
    ck_assert_int_eq(store_read_begin(fx.te_store, &txn), 0);
    int rc = store_meta_get(fx.te_store, txn, name, &data, &len);
    snprintf(out, sizeof(out), "%s", rc ? "" : len ? "" : "waiting");
    if (!rc && len)
        snprintf(out, sizeof(out), "%.*s", (int)len, (const char *)data);
    store_read_end(txn);
    return out;
}

/* Marks a dead letter keyed by order id `key` as the pipeline does: at once when the key
 * resolves, else waiting for a link. */
static void dead_letter_mark(const char *key, int offset)
{
    degraded_event_t ev = {"orders", 1, offset, 0, key, strlen(key), "framing", "wrong magic"};
    MDB_txn *txn;
    bool marked;
    ck_assert_int_eq(store_write_begin(fx.te_store, &txn), 0);
    ck_assert_int_eq(degraded_mark(view, fx.te_store, txn, &ev, &marked), 0);
    if (!marked)
        ck_assert_int_eq(degraded_mark_wait(view, fx.te_store, txn, &ev, rm_wall_ms()), 0);
    ck_assert_int_eq(store_write_commit(fx.te_store, txn), 0);
}

/* A dead letter read before the link that names its customer marks the customer when the
 * link arrives; one handled meanwhile marks nobody; one whose link never comes is dropped
 * with link-timeout. */
START_TEST(test_degraded_mark_waits_for_its_link)
{
    register_c1();
    dead_letter_mark("O1", 9);
    dead_letter_mark("O2", 10);
    dead_letter_mark("O3", 11);
    ck_assert_str_eq(marked_key("orders", 1, 9), "waiting");
    MDB_txn *txn;
    bool cleared;
    ck_assert_int_eq(store_write_begin(fx.te_store, &txn), 0);
    ck_assert_int_eq(degraded_clear(fx.te_store, txn, "orders", 1, 10, &cleared), 0);
    ck_assert_int_eq(store_write_commit(fx.te_store, txn), 0);
    ck_assert_str_eq(marked_key("orders", 1, 10), "");
    order("O1", 1100, 1);
    ck_assert_int_eq(APPLY("orders"), ENGINE_APPLIED);
    order("O2", 1200, 1);
    ck_assert_int_eq(APPLY("orders"), ENGINE_APPLIED);
    ck_assert_str_eq(marked_key("orders", 1, 9), "C1");
    ck_assert_str_eq(marked_key("orders", 1, 10), "");
    size_t dropped = 0;
    ck_assert_int_eq(store_write_begin(fx.te_store, &txn), 0);
    ck_assert_int_eq(
        degraded_expire_waiting(fx.te_store, txn, rm_wall_ms() - 86400 * 1000LL, &dropped), 0);
    ck_assert_uint_eq(dropped, 0);
    ck_assert_int_eq(degraded_expire_waiting(fx.te_store, txn, rm_wall_ms() + 1, &dropped), 0);
    ck_assert_uint_eq(dropped, 1); /* O3's: O1's and O2's left when their link came */
    ck_assert_int_eq(store_write_commit(fx.te_store, txn), 0);
    ck_assert_str_eq(marked_key("orders", 1, 11), "");
}
END_TEST

START_TEST(test_bounded_list_keeps_newest_twenty)
{
    register_c1();
    /* 25 orders arriving in a scrambled order of creation time. */
    for (int i = 0; i < 25; i++) {
        int k = (i * 7) % 25;
        char id[16];
        snprintf(id, sizeof(id), "O%02d", k);
        order(id, 10000 + k, 1);
        ck_assert_int_eq(APPLY("orders"), ENGINE_APPLIED);
    }
    /* A payment for a trimmed order changes counters but recreates nothing. */
    EV(SETTLED, "event_id=px", "occurred_at=20000", "version=1", "payment_id=PX", "order_id=O00",
       "amount_cents=7", "currency=EUR");
    ck_assert_int_eq(APPLY("payments"), ENGINE_APPLIED);
    const char *s = sections_of(&fx, "C1");
    for (int k = 0; k < 25; k++) {
        char needle[32];
        snprintf(needle, sizeof(needle), "\"order_id\":\"O%02d\"", k);
        ck_assert_msg((strstr(s, needle) != NULL) == (k >= 5), "order %d: %s", k, s);
    }
    ck_assert_msg(strstr(s, "\"lifetime_orders\":25,\"lifetime_settled_cents\":7") != NULL, "%s",
                  s);
    /* newest first */
    ck_assert(strstr(s, "\"O24\"") < strstr(s, "\"O23\""));
}
END_TEST

START_TEST(test_erasure_is_final)
{
    register_c1();
    order("O1", 1100, 1);
    ck_assert_int_eq(APPLY("orders"), ENGINE_APPLIED);
    EV(ERASED, "event_id=x1", "occurred_at=1500", "version=2", "customer_id=C1");
    ck_assert_int_eq(APPLY("customers"), ENGINE_APPLIED);
    ck_assert_str_eq(sections_of(&fx, "C1"), "NOTFOUND");
    /* Late events through the erased customer's link are dropped, not parked. */
    EV(SETTLED, "event_id=p9", "occurred_at=1400", "version=1", "payment_id=P9", "order_id=O1",
       "amount_cents=5", "currency=EUR");
    ck_assert_int_eq(APPLY("payments"), ENGINE_ERASED);
    /* A later order for the erased customer does not resurrect it, and its own
     * payments are dropped rather than parked forever. */
    order("O2", 1600, 1);
    ck_assert_int_eq(APPLY("orders"), ENGINE_ERASED);
    EV(SETTLED, "event_id=p10", "occurred_at=1700", "version=1", "payment_id=P10", "order_id=O2",
       "amount_cents=5", "currency=EUR");
    ck_assert_int_eq(APPLY("payments"), ENGINE_ERASED);
    ck_assert_str_eq(sections_of(&fx, "C1"), "NOTFOUND");
}
END_TEST

START_TEST(test_poison_is_rejected_without_effect)
{
    register_c1();
    const char *before = strdup(sections_of(&fx, "C1"));
    EV(ORDER, "event_id=bad", "occurred_at=1100", "version=1", "order_id=", "customer_id=C1");
    engine_result_t res = apply_to(&fx, "orders");
    ck_assert_int_eq(res.er_outcome, ENGINE_REJECTED);
    ck_assert_int_eq(res.er_error, RM_EVALIDATE);
    ck_assert_str_eq(sections_of(&fx, "C1"), before);
    buf_reset(&msg);
    buf_append(&msg, "\x00\x00\x00\x00\x04garbage", 12);
    res = apply_to(&fx, "orders");
    ck_assert_int_eq(res.er_outcome, ENGINE_REJECTED);
    ck_assert_int_eq(res.er_error, RM_EDECODE);
    ck_assert_str_eq(sections_of(&fx, "C1"), before);
    free((void *)before);
}
END_TEST

/* The same events applied in two orders Kafka permits (different partitions
 * interleaved differently) must give byte-identical documents. */
START_TEST(test_interleavings_converge)
{
    typedef struct {
        const char *topic;
        int schema;
        const char *f[9];
    } ev_t;
    static const ev_t evs[] = {
        {"customers",
         REG,
         {"event_id=a1", "occurred_at=100", "version=1", "customer_id=C1", "name=N", "email=e@x",
          "phone=+1", "preferred_channel=SMS", "marketing_opt_in=false"}},
        {"orders",
         ORDER,
         {"event_id=a2", "occurred_at=200", "version=1", "order_id=O1", "customer_id=C1", "lines=1",
          "total_cents=10", "currency=EUR", NULL}},
        {"payments",
         FAILED,
         {"event_id=a3", "occurred_at=300", "version=1", "payment_id=P1", "order_id=O1",
          "amount_cents=10", "currency=EUR", "reason=r", NULL}},
        {"shipments",
         DISPATCHED,
         {"event_id=a4", "occurred_at=350", "version=1", "shipment_id=S1", "order_id=O1",
          "carrier=c", "eta=999", NULL}},
        {"payments",
         SETTLED,
         {"event_id=a5", "occurred_at=400", "version=1", "payment_id=P2", "order_id=O1",
          "amount_cents=10", "currency=EUR", NULL}},
        {"shipments",
         DELAYED,
         {"event_id=a6", "occurred_at=450", "version=2", "shipment_id=S1", "order_id=O1",
          "reason=storm", "new_eta=1999", NULL}},
        {"loyalty",
         LOYALTY,
         {"event_id=a7", "occurred_at=500", "version=1", "customer_id=C1", "tier=GOLD", "points=10",
          NULL}},
        {"returns",
         RET_OPEN,
         {"event_id=a8", "occurred_at=600", "version=1", "return_id=R1", "order_id=O1",
          "reason=size", NULL}},
    };
    static const int order_a[] = {0, 1, 2, 3, 4, 5, 6, 7};
    static const int order_b[] = {7, 5, 4, 3, 2, 6, 1, 0}; /* every cross-topic skew at once */
    const int *orders[2] = {order_a, order_b};
    fixture_t *fs[2] = {&fx, &fx2};
    for (int run = 0; run < 2; run++) {
        for (int i = 0; i < 8; i++) {
            const ev_t *e = &evs[orders[run][i]];
            ck_assert_int_eq(ts_event(catalog, e->schema, &msg, e->f[0], e->f[1], e->f[2], e->f[3],
                                      e->f[4], e->f[5], e->f[6], e->f[7], e->f[8], NULL),
                             0);
            engine_result_t res = apply_to(fs[run], e->topic);
            ck_assert_int_ne(res.er_outcome, ENGINE_REJECTED);
        }
    }
    char *a = strdup(sections_of(&fx, "C1"));
    ck_assert_str_eq(a, sections_of(&fx2, "C1"));
    ck_assert_msg(strstr(a, "\"payment_status\":\"SETTLED\"") &&
                      strstr(a, "\"shipment_status\":\"DELAYED\""),
                  "%s", a);
    free(a);
}
END_TEST

static void order_snapshot(const char *id, int64_t at, int64_t version, const char *status)
{
    char e[64], o[64], t[64], v[64], st[64];
    snprintf(e, sizeof(e), "event_id=bf:orders:%s:v%lld", id, (long long)version);
    snprintf(o, sizeof(o), "order_id=%s", id);
    snprintf(t, sizeof(t), "occurred_at=%lld", (long long)at);
    snprintf(v, sizeof(v), "version=%lld", (long long)version);
    snprintf(st, sizeof(st), "status=%s", status);
    EV(ORDER_SNAP, e, t, v, "snapshot_of=orders", o, "customer_id=C1", "placed_at=1100",
       "total_cents=500", "currency=EUR", "line_count=2", st);
}

static const char *orders_counter(void)
{
    static char out[64];
    const char *s = sections_of(&fx, "C1");
    const char *c = strstr(s, "\"lifetime_orders\":");
    ck_assert_msg(c != NULL, "%s", s);
    snprintf(out, sizeof(out), "%.*s", (int)strcspn(c, ",}"), c);
    return out;
}

/* A snapshot of an order whose OrderCreated was applied: newer values win, the order
 * still counts once; the same snapshot again (a re-run) is stale. */
START_TEST(test_snapshot_after_live_counts_once)
{
    register_c1();
    order("O1", 1100, 1);
    ck_assert_int_eq(APPLY("orders"), ENGINE_APPLIED);
    ck_assert_str_eq(orders_counter(), "\"lifetime_orders\":1");
    order_snapshot("O1", 1500, 2, "CANCELLED");
    ck_assert_int_eq(APPLY("orders"), ENGINE_APPLIED);
    ck_assert_int_eq(APPLY("orders"), ENGINE_STALE);
    order_snapshot("O1", 1600, 3, "CANCELLED");
    ck_assert_int_eq(APPLY("orders"), ENGINE_APPLIED);
    const char *s = sections_of(&fx, "C1");
    ck_assert_msg(strstr(s, "\"status\":\"CANCELLED\"") != NULL, "%s", s);
    ck_assert_str_eq(orders_counter(), "\"lifetime_orders\":1");
    /* a snapshot older than the live state changes nothing */
    order_snapshot("O1", 1050, 1, "CREATED");
    ck_assert_int_eq(APPLY("orders"), ENGINE_STALE);
}
END_TEST

/* The reverse: the snapshot first, then the log's older events of that order are stale,
 * and events of other entities find the order through the link the snapshot learned. */
START_TEST(test_live_after_snapshot_is_stale)
{
    order_snapshot("O1", 1500, 2, "CANCELLED");
    ck_assert_int_eq(APPLY("orders"), ENGINE_APPLIED);
    order("O1", 1100, 1);
    ck_assert_int_eq(APPLY("orders"), ENGINE_STALE);
    EV(CANCEL, "event_id=x2", "occurred_at=1500", "version=2", "order_id=O1", "customer_id=C1");
    ck_assert_int_eq(APPLY("orders"), ENGINE_STALE);
    ck_assert_str_eq(orders_counter(), "\"lifetime_orders\":1");
    EV(SETTLED, "event_id=p1", "occurred_at=1200", "version=1", "payment_id=P1", "order_id=O1",
       "amount_cents=500", "currency=EUR");
    ck_assert_int_eq(APPLY("payments"), ENGINE_APPLIED);
    order("O2", 1700, 1);
    ck_assert_int_eq(APPLY("orders"), ENGINE_APPLIED);
    const char *s = sections_of(&fx, "C1");
    ck_assert_msg(strstr(s, "\"lifetime_orders\":2,\"lifetime_settled_cents\":500") != NULL, "%s",
                  s);
    ck_assert_msg(strstr(s, "\"order_id\":\"O1\",\"created_at\":1100,\"total_cents\":500,"
                            "\"currency\":\"EUR\",\"line_count\":2,\"status\":\"CANCELLED\","
                            "\"payment_status\":\"SETTLED\"") != NULL,
                  "%s", s);
}
END_TEST

/* Customer, loyalty and return snapshots fill their sections like the live events. */
START_TEST(test_snapshots_fill_sections)
{
    EV(CUSTOMER_SNAP, "event_id=bf:customers:C1:v3", "occurred_at=2000", "version=3",
       "snapshot_of=customers", "customer_id=C1", "name=Ada", "email=ada@example.com", "phone=null",
       "preferred_channel=SMS", "marketing_opt_in=false", "registered_at=1000", "updated_at=2000");
    ck_assert_int_eq(APPLY("customers"), ENGINE_APPLIED);
    EV(REG, "event_id=r1", "occurred_at=1000", "version=1", "customer_id=C1", "name=Old",
       "email=old@example.com", "phone=+441234", "preferred_channel=EMAIL",
       "marketing_opt_in=true");
    /* version 1 < 3: stale, the profile keeps the snapshot's values */
    ck_assert_int_eq(APPLY("customers"), ENGINE_STALE);
    EV(LOYALTY_SNAP, "event_id=bf:loyalty:C1:v2", "occurred_at=2100", "version=2",
       "snapshot_of=loyalty", "customer_id=C1", "tier=GOLD", "points=1200", "updated_at=2100");
    ck_assert_int_eq(APPLY("loyalty"), ENGINE_APPLIED);
    EV(RETURN_SNAP, "event_id=bf:returns:R1:v1", "occurred_at=2200", "version=1",
       "snapshot_of=returns", "return_id=R1", "order_id=O1", "reason=damaged", "opened_at=2200");
    ck_assert_int_eq(APPLY("returns"), ENGINE_PARKED); /* the order is not known yet */
    order_snapshot("O1", 1100, 1, "CREATED");
    engine_result_t res = apply_to(&fx, "orders");
    ck_assert_int_eq(res.er_outcome, ENGINE_APPLIED);
    ck_assert_uint_eq(res.er_unparked, 1);
    ck_assert(ts_json_equal(
        sections_of(&fx, "C1"),
        "{\"profile\":{\"customer_id\":\"C1\",\"name\":\"Ada\",\"email\":\"ada@example.com\","
        "\"phone\":null,\"preferred_channel\":\"SMS\",\"marketing_opt_in\":false,"
        "\"registered_at\":1000,\"updated_at\":2000},"
        "\"orders\":[{\"order_id\":\"O1\",\"created_at\":1100,\"total_cents\":500,"
        "\"currency\":\"EUR\",\"line_count\":2,\"status\":\"CREATED\",\"payment_status\":\"NONE\","
        "\"shipment_status\":\"NONE\"}],\"payment_issues\":[],\"delivery_exceptions\":[],"
        "\"loyalty\":{\"tier\":\"GOLD\",\"points\":1200,\"updated_at\":2100},"
        "\"returns\":[{\"return_id\":\"R1\",\"order_id\":\"O1\",\"reason\":\"damaged\","
        "\"opened_at\":2200}],"
        "\"counters\":{\"lifetime_orders\":1,\"lifetime_settled_cents\":0}}"));
}
END_TEST

/* contribute on its own: a counter is the sum of each entity's newest share, whatever
 * the order in which versions arrive, and erasure takes the shares with the key. */
START_TEST(test_contribute_moves_by_the_change_of_share)
{
    char path[4096], err[512], *dir = ts_tmpdir();
    ts_write_file(dir, "v.yaml",
                  "view: v\nkey: customer_id\ntopics: [orders]\n"
                  "sections:\n  counters:\n    kind: counters\n"
                  "    fields: {spent: long, orders: long}\n"
                  "rules:\n  - event: c360.orders.OrderCreated\n"
                  "    entity: {type: order, id: order_id}\n    key: customer_id\n    ops:\n"
                  "      - contribute: {section: counters, field: spent, by: total_cents}\n"
                  "      - contribute: {section: counters, field: orders, by: {const: 1}}\n");
    snprintf(path, sizeof(path), "%s/v.yaml", dir);
    view_t *own = view_load(path, catalog, err, sizeof(err));
    ck_assert_msg(own != NULL, "%s", err);
    store_opts_t opts = {
        .so_dir = dir, .so_map_size_bytes = 16 << 20, .so_durability = STORE_PERIODIC};
    store_t *store = store_open(&opts, err, sizeof(err));
    ck_assert_msg(store != NULL, "%s", err);
    engine_t *engine = engine_new(own, catalog, store, NULL);
    static const struct {
        const char *id, *total;
        int version;
        const char *want;
    } steps[] = {
        {"O1", "total_cents=500", 1, "{\"counters\":{\"spent\":500,\"orders\":1}}"},
        {"O1", "total_cents=300", 3, "{\"counters\":{\"spent\":300,\"orders\":1}}"},
        {"O1", "total_cents=900", 2, "{\"counters\":{\"spent\":300,\"orders\":1}}"}, /* stale */
        {"O2", "total_cents=200", 1, "{\"counters\":{\"spent\":500,\"orders\":2}}"},
        {"O2", "total_cents=0", 2, "{\"counters\":{\"spent\":300,\"orders\":2}}"},
    };
    buf_t out;
    buf_init(&out);
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        char o[32], v[32];
        snprintf(o, sizeof(o), "order_id=%s", steps[i].id);
        snprintf(v, sizeof(v), "version=%d", steps[i].version);
        EV(ORDER, "event_id=e", "occurred_at=1000", v, o, "customer_id=C1", "lines=1",
           steps[i].total, "currency=EUR");
        MDB_txn *txn;
        engine_result_t res;
        ck_assert_int_eq(store_write_begin(store, &txn), 0);
        ck_assert_int_eq(engine_txn_begin(engine, txn), 0);
        engine_msg_t m = {"orders", 0, (int64_t)i, 0, NULL, 0, msg.b_data, msg.b_len};
        ck_assert_int_eq(engine_apply(engine, txn, &m, &res), 0);
        ck_assert_int_eq(engine_txn_precommit(engine, txn), 0);
        ck_assert_int_eq(store_write_commit(store, txn), 0);
        buf_reset(&out);
        ck_assert_int_eq(store_read_begin(store, &txn), 0);
        ck_assert_int_eq(render_sections(own, store, txn, "C1", 2, &out), 0);
        store_read_end(txn);
        ck_assert_msg(ts_json_equal(out.b_data, steps[i].want), "step %zu", i);
    }
    buf_free(&out);
    engine_destroy(engine);
    store_close(store);
    view_destroy(own);
    ts_rmtree(dir);
}
END_TEST

static int collect_key(void *ctx, const char *key, size_t len)
{
    buf_t *out = ctx;
    if (out->b_len)
        buf_append_char(out, ',');
    return buf_append(out, key, len);
}

/* Keys the index maps value to, comma-separated ("" when none). */
static const char *lookup(const char *index, const char *value)
{
    static buf_t out;
    MDB_txn *txn;
    buf_reset(&out);
    buf_append_str(&out, "");
    ck_assert_int_eq(store_read_begin(fx.te_store, &txn), 0);
    int rc =
        index_lookup(view, fx.te_store, txn, index, value, strlen(value), 10, collect_key, &out);
    store_read_end(txn);
    return rc ? "ERROR" : out.b_data;
}

START_TEST(test_indexes_follow_the_document)
{
    EV(REG, "event_id=r1", "occurred_at=1000", "version=1", "customer_id=C1", "name=Ada",
       "email= Ada@Example.COM ", "phone=+44 (0)20-7946.0018", "preferred_channel=EMAIL");
    ck_assert_int_eq(APPLY("customers"), ENGINE_APPLIED);
    ck_assert_str_eq(lookup("email", "ada@example.com"), "C1");
    ck_assert_str_eq(lookup("email", "ADA@EXAMPLE.COM"), "C1"); /* the query is normalised too */
    ck_assert_str_eq(lookup("phone", "0044 0 20 7946 0018"), "C1");
    EV(CONTACT, "event_id=c2", "occurred_at=2000", "version=2", "customer_id=C1",
       "email=ada@new.example", "phone=null", "preferred_channel=SMS");
    ck_assert_int_eq(APPLY("customers"), ENGINE_APPLIED);
    ck_assert_str_eq(lookup("email", "ada@example.com"), ""); /* the old value is gone */
    ck_assert_str_eq(lookup("email", "ada@new.example"), "C1");
    ck_assert_str_eq(lookup("phone", "+4402079460018"), "C1"); /* null: unchanged */
    order("O1", 2100, 1);
    ck_assert_int_eq(APPLY("orders"), ENGINE_APPLIED);
    ck_assert_str_eq(lookup("order_id", "O1"), "C1");
    ck_assert_str_eq(lookup("nope", "x"), "ERROR");
    EV(ERASED, "event_id=x1", "occurred_at=3000", "version=3", "customer_id=C1");
    ck_assert_int_eq(APPLY("customers"), ENGINE_APPLIED);
    ck_assert_str_eq(lookup("email", "ada@new.example"), "");
    ck_assert_str_eq(lookup("phone", "+4402079460018"), "");
    ck_assert_str_eq(lookup("order_id", "O1"), "");
}
END_TEST

/* An order moved to another customer (a snapshot naming a new owner) leaves no reverse
 * link behind: erasing its first customer must not take the second one's order link. */
START_TEST(test_repointed_link_survives_erasure_of_its_old_owner)
{
    register_c1();
    order("O1", 1100, 1);
    ck_assert_int_eq(APPLY("orders"), ENGINE_APPLIED);
    EV(ORDER_SNAP, "event_id=bf:orders:O1:v2", "occurred_at=1200", "version=2",
       "snapshot_of=orders", "order_id=O1", "customer_id=C2", "placed_at=1100", "total_cents=500",
       "currency=EUR", "line_count=2", "status=CREATED");
    ck_assert_int_eq(APPLY("orders"), ENGINE_APPLIED);
    EV(ERASED, "event_id=x1", "occurred_at=1500", "version=2", "customer_id=C1");
    ck_assert_int_eq(APPLY("customers"), ENGINE_APPLIED);
    EV(SETTLED, "event_id=p1", "occurred_at=1600", "version=1", "payment_id=P1", "order_id=O1",
       "amount_cents=500", "currency=EUR");
    engine_result_t res = apply_to(&fx, "payments");
    ck_assert_msg(res.er_outcome == ENGINE_APPLIED, "the payment of C2's order was %s",
                  engine_outcome_name(res.er_outcome));
    const char *s = sections_of(&fx, "C2");
    ck_assert_msg(strstr(s, "\"payment_status\":\"SETTLED\"") &&
                      strstr(s, "\"lifetime_settled_cents\":500"),
                  "%s", s);
    ck_assert_str_eq(lookup("order_id", "O1"), "C2");
}
END_TEST

/* Applies msg (from `msg`) to store through engine in its own txn; returns the outcome. */
static engine_outcome_t apply_with(engine_t *engine, store_t *store, const char *topic)
{
    MDB_txn *txn;
    engine_result_t res;
    ck_assert_int_eq(store_write_begin(store, &txn), 0);
    ck_assert_int_eq(engine_txn_begin(engine, txn), 0);
    engine_msg_t m = {topic, 0, 0, 0, NULL, 0, msg.b_data, msg.b_len};
    ck_assert_int_eq(engine_apply(engine, txn, &m, &res), 0);
    ck_assert_int_eq(engine_txn_precommit(engine, txn), 0);
    ck_assert_int_eq(store_write_commit(store, txn), 0);
    return res.er_outcome;
}

static void register_key(const char *key)
{
    char k[64];
    snprintf(k, sizeof(k), "customer_id=%s", key);
    EV(REG, "event_id=r1", "occurred_at=1000", "version=1", k, "name=Ada", "email=ada@example.com",
       "phone=+441234", "preferred_channel=EMAIL");
}

/* The erasure ledger carries an erasure into every store of the view — a new generation
 * whose log lost the tombstone (compaction), an older generation rolled back to, a store
 * that predates the ledger — so none of them serves the erased customer again. */
START_TEST(test_erasure_ledger_reaches_every_store)
{
    char err[256], *ledger_dir = ts_tmpdir();
    erasures_t *ledger = erasures_open(ledger_dir, false, err, sizeof(err));
    ck_assert_msg(ledger != NULL, "%s", err);
    engine_opts_t with_ledger = {.eo_erasures = ledger};
    /* An older generation, built before the erasure (and before the ledger existed). */
    register_key("C1");
    ck_assert_int_eq(apply_with(fx2.te_engine, fx2.te_store, "customers"), ENGINE_APPLIED);
    register_key("C2");
    ck_assert_int_eq(apply_with(fx2.te_engine, fx2.te_store, "customers"), ENGINE_APPLIED);
    EV(ERASED, "event_id=x2", "occurred_at=1500", "version=2", "customer_id=C2");
    ck_assert_int_eq(apply_with(fx2.te_engine, fx2.te_store, "customers"), ENGINE_APPLIED);
    /* The live generation erases C1 through the ledger-aware engine. */
    engine_t *live = engine_new(view, catalog, fx.te_store, &with_ledger);
    register_key("C1");
    ck_assert_int_eq(apply_with(live, fx.te_store, "customers"), ENGINE_APPLIED);
    EV(ERASED, "event_id=x1", "occurred_at=1500", "version=2", "customer_id=C1");
    ck_assert_int_eq(apply_with(live, fx.te_store, "customers"), ENGINE_APPLIED);
    engine_destroy(live);
    /* A rebuild over the compacted log: the registration is there, the erasure is not. */
    char *dir = ts_tmpdir();
    store_t *fresh = ts_store(dir);
    engine_t *rebuild = engine_new(view, catalog, fresh, &with_ledger);
    register_key("C1");
    ck_assert_int_eq(apply_with(rebuild, fresh, "customers"), ENGINE_ERASED);
    order("O1", 1100, 1);
    ck_assert_int_eq(apply_with(rebuild, fresh, "orders"), ENGINE_ERASED);
    engine_destroy(rebuild);
    /* Rolled back to the older generation: C1 goes at its first transaction, and its
     * own erasure of C2 reaches the ledger. */
    engine_t *rolled = engine_new(view, catalog, fx2.te_store, &with_ledger);
    register_key("C3");
    ck_assert_int_eq(apply_with(rolled, fx2.te_store, "customers"), ENGINE_APPLIED);
    engine_destroy(rolled);
    ck_assert_str_eq(sections_of(&fx2, "C1"), "NOTFOUND");
    engine_t *again = engine_new(view, catalog, fresh, &with_ledger);
    register_key("C2");
    ck_assert_int_eq(apply_with(again, fresh, "customers"), ENGINE_ERASED);
    register_key("C3");
    ck_assert_int_eq(apply_with(again, fresh, "customers"), ENGINE_APPLIED);
    engine_destroy(again);
    store_close(fresh);
    ts_rmtree(dir);
    erasures_close(ledger);
    ts_rmtree(ledger_dir);
}
END_TEST

/* A bounded list under deletes: 20 orders, then O21's creation and O05's tombstone (on
 * different partitions, so in either order), then a DELETE repair of O22 that may come
 * before or after O22's creation. Both orders keep the 20 newest of what is left. */
static void orders_with_deletes(fixture_t *f, bool tombstone_first, bool repair_first)
{
    for (int i = 1; i <= 20; i++) {
        char id[16];
        snprintf(id, sizeof(id), "O%02d", i);
        order(id, 1000 + i, 1);
        ck_assert_int_eq(apply_to(f, "orders").er_outcome, ENGINE_APPLIED);
    }
    MDB_txn *txn;
    engine_result_t res;
    for (int step = 0; step < 4; step++) {
        bool tomb = step == (tombstone_first ? 0 : 1);
        bool o21 = step == (tombstone_first ? 1 : 0);
        bool repair = step == (repair_first ? 2 : 3);
        if (o21 || (!tomb && !repair)) {
            order(o21 ? "O21" : "O22", o21 ? 1021 : 1022, 1);
            ck_assert_int_eq(apply_to(f, "orders").er_outcome, ENGINE_APPLIED);
        } else if (tomb) {
            ck_assert_int_eq(store_write_begin(f->te_store, &txn), 0);
            ck_assert_int_eq(engine_txn_begin(f->te_engine, txn), 0);
            engine_msg_t m = {"orders", 1, f->te_offset++, 9000, "O05", 3, NULL, 0};
            ck_assert_int_eq(engine_apply(f->te_engine, txn, &m, &res), 0);
            ck_assert_int_eq(res.er_outcome, ENGINE_APPLIED);
            ck_assert_int_eq(engine_txn_precommit(f->te_engine, txn), 0);
            ck_assert_int_eq(store_write_commit(f->te_store, txn), 0);
        } else {
            REPAIR_EV("run1/1", "5000", "C1", "orders", "DELETE", "O22", "{}");
            ck_assert_int_eq(apply_to(f, "customer360.repairs").er_outcome, ENGINE_APPLIED);
        }
    }
}

START_TEST(test_bounded_list_converges_with_deletes)
{
    orders_with_deletes(&fx, false, false);
    orders_with_deletes(&fx2, true, true);
    char *a = strdup(sections_of(&fx, "C1"));
    const char *b = sections_of(&fx2, "C1");
    for (int i = 1; i <= 22; i++) {
        char needle[32];
        snprintf(needle, sizeof(needle), "\"order_id\":\"O%02d\"", i);
        ck_assert_msg((strstr(a, needle) != NULL) == (i != 5 && i != 22), "order O%02d %s", i,
                      strstr(a, needle) ? "shown" : "missing");
    }
    ck_assert_msg(strcmp(a, b) == 0, "the two arrival orders give different documents");
    free(a);
}
END_TEST

/* After partitions are added, one entity's events can straddle partitions and arrive
 * out of version order. The older version is stale, but its link is still learned: the
 * payment parked for the order, and later ones, reach the customer. */
START_TEST(test_a_stale_version_still_learns_its_link)
{
    register_c1();
    EV(SETTLED, "event_id=p1", "occurred_at=1300", "version=1", "payment_id=P1", "order_id=O1",
       "amount_cents=500", "currency=EUR");
    ck_assert_int_eq(APPLY("payments"), ENGINE_PARKED);
    EV(CANCEL, "event_id=x2", "occurred_at=1200", "version=2", "order_id=O1", "customer_id=C1");
    ck_assert_int_eq(APPLY("orders"), ENGINE_APPLIED);
    order("O1", 1100, 1);
    engine_result_t res = apply_to(&fx, "orders");
    ck_assert_int_eq(res.er_outcome, ENGINE_STALE);
    ck_assert_uint_eq(res.er_unparked, 1);
    EV(SETTLED, "event_id=p2", "occurred_at=1400", "version=1", "payment_id=P2", "order_id=O1",
       "amount_cents=7", "currency=EUR");
    res = apply_to(&fx, "payments");
    ck_assert_msg(res.er_outcome == ENGINE_APPLIED, "a payment of the order was %s",
                  engine_outcome_name(res.er_outcome));
    ck_assert_str_eq(lookup("order_id", "O1"), "C1");
    /* ... and the order is listed and counted as when its versions arrive in order */
    const char *s = sections_of(&fx, "C1");
    ck_assert_msg(strstr(s, "\"order_id\":\"O1\",\"created_at\":1100") &&
                      strstr(s, "\"status\":\"CANCELLED\",\"payment_status\":\"SETTLED\""),
                  "%s", strstr(s, "\"orders\""));
    ck_assert_msg(strstr(s, "\"lifetime_orders\":1,\"lifetime_settled_cents\":507"), "%s",
                  strstr(s, "\"counters\""));
}
END_TEST

/* The same straddling: PaymentReversed v2 before PaymentSettled v1 must leave the settled
 * total where the in-order stream leaves it (0), not at -amount. */
START_TEST(test_a_counter_does_not_depend_on_version_arrival)
{
    register_c1();
    order("O1", 1100, 1);
    ck_assert_int_eq(APPLY("orders"), ENGINE_APPLIED);
    EV(REVERSED, "event_id=p1b", "occurred_at=1400", "version=2", "payment_id=P1", "order_id=O1",
       "amount_cents=100", "currency=EUR", "reason=chargeback");
    ck_assert_int_eq(APPLY("payments"), ENGINE_APPLIED);
    EV(SETTLED, "event_id=p1a", "occurred_at=1300", "version=1", "payment_id=P1", "order_id=O1",
       "amount_cents=100", "currency=EUR");
    ck_assert_int_eq(APPLY("payments"), ENGINE_STALE);
    const char *s = sections_of(&fx, "C1");
    ck_assert_msg(strstr(s, "\"lifetime_settled_cents\":0") != NULL, "%s",
                  strstr(s, "\"counters\""));
}
END_TEST

/* A stale claim on a link loses to a newer one even under another view key (the guard
 * is per view key): an order a snapshot moved to C2 stays with C2 when the order's
 * creation for C1 arrives late. */
START_TEST(test_an_older_link_claim_loses)
{
    register_c1();
    EV(ORDER_SNAP, "event_id=bf:orders:O1:v2", "occurred_at=1200", "version=2",
       "snapshot_of=orders", "order_id=O1", "customer_id=C2", "placed_at=1100", "total_cents=500",
       "currency=EUR", "line_count=2", "status=CREATED");
    ck_assert_int_eq(APPLY("orders"), ENGINE_APPLIED);
    order("O1", 1100, 1);
    (void)APPLY("orders");
    ck_assert_str_eq(lookup("order_id", "O1"), "C2");
}
END_TEST

/* An erasure older (by version) than an event already applied is still an erasure. */
START_TEST(test_a_stale_erasure_still_erases)
{
    register_c1();
    EV(CONTACT, "event_id=c4", "occurred_at=2000", "version=4", "customer_id=C1",
       "email=new@example.com", "phone=null", "preferred_channel=SMS", "marketing_opt_in=false");
    ck_assert_int_eq(APPLY("customers"), ENGINE_APPLIED);
    EV(ERASED, "event_id=x3", "occurred_at=1500", "version=3", "customer_id=C1");
    (void)APPLY("customers");
    ck_assert_str_eq(sections_of(&fx, "C1"), "NOTFOUND");
}
END_TEST

START_TEST(test_normalisation_rules)
{
    char out[INDEX_VALUE_MAX_BYTES + 1];
    ck_assert_int_eq(index_normalize(VIEW_NORM_E164, "+1 (555) 010-9999", 17, out, sizeof(out)),
                     12);
    ck_assert_str_eq(out, "+15550109999");
    ck_assert_int_eq(index_normalize(VIEW_NORM_E164, "555 0109", 8, out, sizeof(out)),
                     -1); /* no country */
    ck_assert_int_eq(index_normalize(VIEW_NORM_E164, "+1234", 5, out, sizeof(out)),
                     -1);     /* too short */
    ck_assert_int_eq(index_normalize(VIEW_NORM_E164, "+12345678901234567", 18, out, sizeof(out)),
                     -1);
    ck_assert_int_eq(index_normalize(VIEW_NORM_E164, "+44x1234567890", 14, out, sizeof(out)), -1);
    ck_assert_int_eq(index_normalize(VIEW_NORM_LOWERCASE, "  A@B.C ", 8, out, sizeof(out)), 5);
    ck_assert_str_eq(out, "a@b.c");
    ck_assert_int_eq(index_normalize(VIEW_NORM_LOWERCASE, "   ", 3, out, sizeof(out)), -1);
    ck_assert_int_eq(index_normalize(VIEW_NORM_NONE, "a\0b", 3, out, sizeof(out)), -1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("engine");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_profile_set_and_empty_sections);
    tcase_add_test(tc, test_contact_update_null_means_unchanged);
    tcase_add_test(tc, test_version_guard_ignores_duplicates_and_old_versions);
    tcase_add_test(tc, test_parked_until_link_arrives);
    tcase_add_test(tc, test_parked_event_rejected_on_unpark_is_dead_lettered);
    tcase_add_test(tc, test_parking_age_is_time_waited_in_this_store);
    tcase_add_test(tc, test_format1_parked_events_are_upgraded);
    tcase_add_test(tc, test_parked_counters_equal_a_scan);
    tcase_add_test(tc, test_degraded_mark_waits_for_its_link);
    tcase_add_test(tc, test_bounded_list_keeps_newest_twenty);
    tcase_add_test(tc, test_erasure_is_final);
    tcase_add_test(tc, test_poison_is_rejected_without_effect);
    tcase_add_test(tc, test_interleavings_converge);
    tcase_add_test(tc, test_indexes_follow_the_document);
    tcase_add_test(tc, test_normalisation_rules);
    tcase_add_test(tc, test_snapshot_after_live_counts_once);
    tcase_add_test(tc, test_live_after_snapshot_is_stale);
    tcase_add_test(tc, test_snapshots_fill_sections);
    tcase_add_test(tc, test_contribute_moves_by_the_change_of_share);
    tcase_add_test(tc, test_repairs_apply_once_and_lose_to_newer_events);
    tcase_add_test(tc, test_tombstones_follow_the_declared_rule);
    tcase_add_test(tc, test_a_tombstone_before_its_order_still_deletes_it);
    tcase_add_test(tc, test_a_parked_tombstone_expires_as_a_tombstone);
    tcase_add_test(tc, test_repointed_link_survives_erasure_of_its_old_owner);
    tcase_add_test(tc, test_erasure_ledger_reaches_every_store);
    tcase_add_test(tc, test_bounded_list_converges_with_deletes);
    tcase_add_test(tc, test_a_stale_version_still_learns_its_link);
    tcase_add_test(tc, test_a_counter_does_not_depend_on_version_arrival);
    tcase_add_test(tc, test_an_older_link_claim_loses);
    tcase_add_test(tc, test_a_stale_erasure_still_erases);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
