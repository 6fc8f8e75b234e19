/* Tests of pipeline.c against an in-process mock Kafka cluster: a run until caught up
 * applies every partition's messages, whatever their interleaving, dead-letters the
 * poison without stopping, stores the offsets with the state, and a second run over the
 * same log applies nothing again. */
#include "pipeline.h"
#include "render.h"
#include "rm_err.h"
#include "rm_time.h"
#include "tsupport.h"

#include <check.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdlib.h>
#include <string.h>

/* schema ids in schemas/catalog.yaml */
enum { REG = 1, ORDER = 4, CANCELLED = 5, SETTLED = 6, FAILED = 7, REVERSED = 8 };

static rd_kafka_t *mock_rk; /* hosts the mock cluster */
static rd_kafka_mock_cluster_t *mock;
static rd_kafka_t *producer;
static cfg_t *cfg;
static catalog_t *catalog;
static view_t *view;
static char *dir;
static store_t *store;
static buf_t msg;

static void setup(void)
{
    char err[512], name[300];
    catalog = ts_catalog();
    view = ts_view(catalog);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "0", err, sizeof(err));
    mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    ck_assert_msg(mock_rk != NULL, "%s", err);
    mock = rd_kafka_mock_cluster_new(mock_rk, 1);
    ck_assert_ptr_nonnull(mock);
    for (size_t t = 0; t < view->v_topic_count; t++) {
        ck_assert_int_eq(rd_kafka_mock_topic_create(mock, view->v_topics[t], 2, 1), 0);
        snprintf(name, sizeof(name), "%s.dlq", view->v_topics[t]);
        ck_assert_int_eq(rd_kafka_mock_topic_create(mock, name, 2, 1), 0);
    }
    cfg = cfg_load(NULL, err, sizeof(err));
    ck_assert_msg(cfg != NULL, "%s", err);
    const char *bootstrap = rd_kafka_mock_cluster_bootstraps(mock);
    ck_assert_int_eq(cfg_set(cfg, "kafka.bootstrap.servers", bootstrap, err, sizeof(err)), 0);
    ck_assert_int_eq(cfg_set(cfg, "kafka.log_level", "0", err, sizeof(err)), 0);
    conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, err, sizeof(err));
    rd_kafka_conf_set(conf, "log_level", "0", err, sizeof(err));
    producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    ck_assert_msg(producer != NULL, "%s", err);
    dir = ts_tmpdir();
    store = ts_store(dir);
    buf_init(&msg);
}

static void teardown(void)
{
    buf_free(&msg);
    store_close(store);
    ts_rmtree(dir);
    cfg_destroy(cfg);
    rd_kafka_destroy(producer);
    rd_kafka_mock_cluster_destroy(mock);
    rd_kafka_destroy(mock_rk);
    view_destroy(view);
    catalog_destroy(catalog);
}

#define EV(schema, ...) ck_assert_int_eq(ts_event(catalog, schema, &msg, __VA_ARGS__, NULL), 0)

/* Produces value to (topic, partition) and waits for the broker's acknowledgement. */
static void produce(const char *topic, int32_t partition, const char *key, const void *value,
                    size_t len)
{
    rd_kafka_resp_err_t err =
        rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition),
                          RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE((void *)value, len),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    ck_assert_int_eq(err, RD_KAFKA_RESP_ERR_NO_ERROR);
    ck_assert_int_eq(rd_kafka_flush(producer, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
}

/* Produces a tombstone (a null value) to (topic, partition). */
static void produce_tombstone(const char *topic, int32_t partition, const char *key)
{
    produce(topic, partition, key, NULL, 0);
}

static pipeline_stats_t run_into(store_t *into)
{
    char err[512];
    pipeline_opts_t opts = {.po_cfg = cfg,
                            .po_view = view,
                            .po_catalog = catalog,
                            .po_store = into,
                            .po_until_caught_up = true,
                            .po_generation = 1};
    pipeline_t *pl = NULL;
    ck_assert_msg(pipeline_new(&opts, &pl, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(pipeline_run(pl), 0);
    pipeline_stats_t stats;
    pipeline_get_stats(pl, &stats);
    pipeline_destroy(pl);
    return stats;
}

static pipeline_stats_t run_until_caught_up(void)
{
    return run_into(store);
}

/* The rendered sections of key in from (a copy: the caller frees it); "" when absent. */
static char *sections_in(store_t *from, const char *key)
{
    buf_t out = BUF_INIT;
    MDB_txn *txn;
    ck_assert_int_eq(store_read_begin(from, &txn), 0);
    int rc = render_sections(view, from, txn, key, strlen(key), &out);
    store_read_end(txn);
    ck_assert(rc == 0 || rc == RM_ENOTFOUND);
    char *copy = strdup(rc == 0 && out.b_data ? out.b_data : "");
    buf_free(&out);
    return copy;
}

static const char *sections_of(const char *key)
{
    static char *last;
    free(last);
    last = sections_in(store, key);
    return last;
}

static int64_t log_end(const char *topic, int32_t partition)
{
    int64_t low, high;
    ck_assert_int_eq(
        rd_kafka_query_watermark_offsets(producer, topic, partition, &low, &high, 10000),
        RD_KAFKA_RESP_ERR_NO_ERROR);
    return high;
}

START_TEST(test_a_run_applies_dead_letters_and_resumes)
{
    /* The payment first, in its own topic and run: it waits for the order's link. */
    EV(SETTLED, "event_id=p1", "occurred_at=1300", "version=1", "payment_id=P1", "order_id=O1",
       "amount_cents=500", "currency=EUR");
    produce("payments", 1, "P1", msg.b_data, msg.b_len);
    pipeline_stats_t stats = run_until_caught_up();
    ck_assert_uint_eq(stats.ps_outcomes[ENGINE_PARKED], 1);
    EV(REG, "event_id=r1", "occurred_at=1000", "version=1", "customer_id=C1", "name=Ada",
       "email=ada@example.com", "phone=+441234", "preferred_channel=EMAIL",
       "marketing_opt_in=true");
    produce("customers", 0, "C1", msg.b_data, msg.b_len);
    static const char poison[] = "\x00\x00\x00\x00\x04\xff\xff"; /* truncated OrderCreated */
    produce("orders", 0, "O-bad", poison, sizeof(poison) - 1);
    EV(ORDER, "event_id=o1", "occurred_at=1100", "version=1", "order_id=O1", "customer_id=C1",
       "lines=1", "total_cents=500", "currency=EUR");
    produce("orders", 0, "O1", msg.b_data, msg.b_len);

    stats = run_until_caught_up();
    ck_assert_uint_eq(stats.ps_messages, 3);
    ck_assert_uint_eq(stats.ps_outcomes[ENGINE_APPLIED], 2); /* the payment with its order */
    ck_assert_uint_eq(stats.ps_outcomes[ENGINE_REJECTED], 1);
    const char *s = sections_of("C1");
    ck_assert_msg(strstr(s, "\"order_id\":\"O1\"") && strstr(s, "\"payment_status\":\"SETTLED\"") &&
                      strstr(s, "\"lifetime_settled_cents\":500"),
                  "%s", s);
    /* the poison went to its DLQ partition, after the run made its batch durable */
    ck_assert_int_eq(log_end("orders.dlq", 0) + log_end("orders.dlq", 1), 1);

    /* A second run over the same log resumes at the stored offsets: nothing again. */
    stats = run_until_caught_up();
    ck_assert_uint_eq(stats.ps_outcomes[ENGINE_APPLIED], 0);
    ck_assert_uint_eq(stats.ps_outcomes[ENGINE_REJECTED], 0);
    ck_assert_int_eq(log_end("orders.dlq", 0) + log_end("orders.dlq", 1), 1);
    /* and only what is new after them */
    EV(SETTLED, "event_id=p2", "occurred_at=1400", "version=1", "payment_id=P2", "order_id=O1",
       "amount_cents=250", "currency=EUR");
    produce("payments", 0, "P2", msg.b_data, msg.b_len);
    stats = run_until_caught_up();
    ck_assert_uint_eq(stats.ps_messages, 1);
    ck_assert_uint_eq(stats.ps_outcomes[ENGINE_APPLIED], 1);
    s = sections_of("C1");
    ck_assert_msg(strstr(s, "\"lifetime_settled_cents\":750") != NULL, "%s", s);
}
END_TEST

/* A batch whose arrival order is not the order of its view keys, with what makes order
 * matter for one key (an entity's versions, a duplicate, an old version after a newer
 * one), erasure and deletion tombstones, an event that parks, and poison: applied sorted by
 * view key in one batch, it leaves the documents that one message per batch (arrival
 * order) leaves. */
START_TEST(test_a_sorted_batch_equals_one_message_per_batch)
{
    /* A payment parked in both stores before the rest: its order's link is then claimed
     * for C2 and re-pointed to C1 in one batch, so the first claim applied takes it. */
    char err[512];
    char *oracle_dir = ts_tmpdir();
    store_t *oracle = ts_store(oracle_dir);
    EV(SETTLED, "event_id=p7", "occurred_at=1300", "version=1", "payment_id=P7", "order_id=O7",
       "amount_cents=700", "currency=EUR");
    produce("payments", 1, "P7", msg.b_data, msg.b_len);
    ck_assert_uint_eq(run_until_caught_up().ps_outcomes[ENGINE_PARKED], 1);
    ck_assert_int_eq(cfg_set(cfg, "projector.batch_max_events", "1", err, sizeof(err)), 0);
    ck_assert_uint_eq(run_into(oracle).ps_outcomes[ENGINE_PARKED], 1);
    ck_assert_int_eq(cfg_set(cfg, "projector.batch_max_events", "50000", err, sizeof(err)), 0);
    EV(ORDER, "event_id=o7a", "occurred_at=1000", "version=1", "order_id=O7", "customer_id=C2",
       "lines=1", "total_cents=700", "currency=EUR");
    produce("orders", 0, "O7", msg.b_data, msg.b_len);
    EV(ORDER, "event_id=o7b", "occurred_at=2000", "version=2", "order_id=O7", "customer_id=C1",
       "lines=1", "total_cents=700", "currency=EUR");
    produce("orders", 0, "O7", msg.b_data, msg.b_len);
    static const char *const customers[] = {"C5", "C2", "C4", "C1", "C3", "C6"};
    for (size_t i = 0; i < 6; i++) {
        char id[32], ev[32];
        snprintf(id, sizeof(id), "customer_id=%s", customers[i]);
        snprintf(ev, sizeof(ev), "event_id=r%zu", i);
        EV(REG, ev, "occurred_at=1000", "version=1", id, "name=N", "email=n@example.com",
           "phone=+441234", "preferred_channel=EMAIL", "marketing_opt_in=true");
        produce("customers", (int32_t)(i % 2), customers[i], msg.b_data, msg.b_len);
        if (strcmp(customers[i], "C4") == 0) {
            produce_tombstone("customers", 0, "C4"); /* erased: C4's later events drop */
            EV(REG, "event_id=r4b", "occurred_at=1001", "version=2", "customer_id=C4", "name=Z",
               "email=z@example.com", "phone=+441234", "preferred_channel=EMAIL",
               "marketing_opt_in=false");
            produce("customers", 0, "C4", msg.b_data, msg.b_len);
        }
    }
    static const char *const orders[][2] = {{"O6", "C6"}, {"O1", "C1"}, {"O4", "C4"},
                                            {"O3", "C3"}, {"O5", "C5"}, {"O2", "C2"}};
    for (size_t i = 0; i < 6; i++) {
        char order[32], customer[32], ev[32], at[32];
        snprintf(order, sizeof(order), "order_id=%s", orders[i][0]);
        snprintf(customer, sizeof(customer), "customer_id=%s", orders[i][1]);
        snprintf(ev, sizeof(ev), "event_id=o%zu", i);
        snprintf(at, sizeof(at), "occurred_at=%zu", 1100 + i);
        EV(ORDER, ev, at, "version=1", order, customer, "lines=1", "total_cents=500",
           "currency=EUR");
        produce("orders", (int32_t)(i % 2), orders[i][0], msg.b_data, msg.b_len);
    }
    EV(CANCELLED, "event_id=oc1", "occurred_at=1200", "version=2", "order_id=O1", "customer_id=C1");
    produce("orders", 1, "O1", msg.b_data, msg.b_len);
    produce_tombstone("orders", 1, "O2"); /* deletes C2's order line */
    static const char poison[] = "\x00\x00\x00\x00\x06\xff\xff"; /* truncated PaymentSettled */
    /* Payments: P1's versions in order, P3's newest first then an old one and a duplicate,
     * P9's order never comes (parked); each partition's keys out of order. */
    EV(SETTLED, "event_id=p6", "occurred_at=1300", "version=1", "payment_id=P6", "order_id=O6",
       "amount_cents=600", "currency=EUR");
    produce("payments", 0, "P6", msg.b_data, msg.b_len);
    EV(FAILED, "event_id=p1a", "occurred_at=1301", "version=1", "payment_id=P1", "order_id=O1",
       "amount_cents=100", "currency=EUR", "reason=card");
    produce("payments", 0, "P1", msg.b_data, msg.b_len);
    produce("payments", 0, "Pbad", poison, sizeof(poison) - 1);
    EV(SETTLED, "event_id=p3b", "occurred_at=1302", "version=2", "payment_id=P3", "order_id=O3",
       "amount_cents=300", "currency=EUR");
    produce("payments", 0, "P3", msg.b_data, msg.b_len);
    EV(SETTLED, "event_id=p1b", "occurred_at=1303", "version=2", "payment_id=P1", "order_id=O1",
       "amount_cents=100", "currency=EUR");
    produce("payments", 0, "P1", msg.b_data, msg.b_len);
    EV(FAILED, "event_id=p3a", "occurred_at=1299", "version=1", "payment_id=P3", "order_id=O3",
       "amount_cents=300", "currency=EUR", "reason=old");
    produce("payments", 0, "P3", msg.b_data, msg.b_len);
    EV(REVERSED, "event_id=p1c", "occurred_at=1304", "version=3", "payment_id=P1", "order_id=O1",
       "amount_cents=100", "currency=EUR", "reason=chargeback");
    produce("payments", 0, "P1", msg.b_data, msg.b_len);
    EV(SETTLED, "event_id=p3b", "occurred_at=1302", "version=2", "payment_id=P3", "order_id=O3",
       "amount_cents=300", "currency=EUR");
    produce("payments", 0, "P3", msg.b_data, msg.b_len); /* a duplicate */
    EV(SETTLED, "event_id=p9", "occurred_at=1305", "version=1", "payment_id=P9", "order_id=O9",
       "amount_cents=900", "currency=EUR");
    produce("payments", 0, "P9", msg.b_data, msg.b_len);
    EV(FAILED, "event_id=p5", "occurred_at=1306", "version=1", "payment_id=P5", "order_id=O5",
       "amount_cents=500", "currency=EUR", "reason=card");
    produce("payments", 1, "P5", msg.b_data, msg.b_len);
    EV(SETTLED, "event_id=p2", "occurred_at=1307", "version=1", "payment_id=P2", "order_id=O2",
       "amount_cents=200", "currency=EUR");
    produce("payments", 1, "P2", msg.b_data, msg.b_len);

    pipeline_stats_t sorted = run_until_caught_up();
    ck_assert_int_eq(cfg_set(cfg, "projector.batch_max_events", "1", err, sizeof(err)), 0);
    pipeline_stats_t one_by_one = run_into(oracle);
    ck_assert_uint_eq(sorted.ps_messages, one_by_one.ps_messages);
    ck_assert_uint_eq(one_by_one.ps_batches, one_by_one.ps_messages);
    ck_assert_uint_lt(sorted.ps_batches, sorted.ps_messages); /* it did batch */
    for (size_t i = 0; i < 6; i++) {
        char *want = sections_in(oracle, customers[i]), *got = sections_in(store, customers[i]);
        ck_assert_msg(strcmp(want, got) == 0, "%s: sorted %s, one by one %s", customers[i], got,
                      want);
        free(want);
        free(got);
    }
    /* Every partition's stored offset is its log end, although a sorted pass applied its
     * messages out of offset order: a second run consumes nothing. */
    for (size_t t = 0; t < view->v_topic_count; t++)
        for (int32_t p = 0; p < 2; p++) {
            MDB_txn *txn;
            store_offset_t off = {0};
            ck_assert_int_eq(store_read_begin(store, &txn), 0);
            int rc = store_offset_get(store, txn, view->v_topics[t], p, &off);
            store_read_end(txn);
            ck_assert(rc == 0 || rc == RM_ENOTFOUND);
            ck_assert_int_eq(off.so_next_offset, log_end(view->v_topics[t], p));
        }
    ck_assert_uint_eq(run_until_caught_up().ps_messages, 0);
    const char *c1 = sections_of("C1");
    ck_assert_msg(strstr(c1, "\"payment_status\":\"REVERSED\"") != NULL, "%s", c1);
    store_close(oracle);
    ts_rmtree(oracle_dir);
}
END_TEST

/* A registry for the catalog (catalog_set_fetcher): ids 104 and 106 are OrderCreated and
 * PaymentSettled; 199 cannot be fetched now. */
static int fetch_schema(void *ctx, int32_t id, char **ret_text, char *reason, size_t reasonlen)
{
    (void)ctx;
    const char *file = id == 104   ? "schemas/avro/OrderCreated.v1.avsc"
                       : id == 106 ? "schemas/avro/PaymentSettled.v1.avsc"
                                   : NULL;
    if (!file) {
        snprintf(reason, reasonlen, "registry down");
        return RM_EUNAVAIL;
    }
    char path[1024];
    FILE *f = fopen(ts_src(file, path, sizeof(path)), "rb");
    ck_assert_ptr_nonnull(f);
    char *text = calloc(1, 65536);
    size_t n = fread(text, 1, 65535, f);
    text[n] = '\0';
    fclose(f);
    *ret_text = text;
    return 0;
}

static int stop_after_three(void *arg, pipeline_t *pl)
{
    (void)arg;
    pipeline_stats_t stats;
    pipeline_get_stats(pl, &stats);
    return stats.ps_messages >= 3 ? 1 : 0; /* the three payments were consumed */
}

/* A message whose writer schema the registry cannot give now holds its partition in a
 * sorted batch too: a later message of the partition whose key sorts first is not applied,
 * and the stored offset stops at the held message. */
START_TEST(test_a_sorted_batch_holds_a_partition_at_a_registry_outage)
{
    catalog_set_fetcher(catalog, fetch_schema, NULL);
    EV(ORDER, "event_id=o1", "occurred_at=1100", "version=1", "order_id=O1", "customer_id=C1",
       "lines=1", "total_cents=500", "currency=EUR");
    msg.b_data[4] = 104; /* the registry's id (ids below 256: one byte) */
    produce("orders", 0, "O1", msg.b_data, msg.b_len);
    EV(ORDER, "event_id=o2", "occurred_at=1101", "version=1", "order_id=O2", "customer_id=C2",
       "lines=1", "total_cents=500", "currency=EUR");
    msg.b_data[4] = 104;
    produce("orders", 0, "O2", msg.b_data, msg.b_len);
    ck_assert_uint_eq(run_until_caught_up().ps_outcomes[ENGINE_APPLIED], 2);

    static const char *const payments[][3] = {
        {"P1", "O2", "\x6a"}, {"P9", "O1", "\xc7"}, {"P2", "O1", "\x6a"}}; /* 106, 199 */
    for (size_t i = 0; i < 3; i++) {
        char ev[32], payment[32], order[32];
        snprintf(ev, sizeof(ev), "event_id=p%zu", i);
        snprintf(payment, sizeof(payment), "payment_id=%s", payments[i][0]);
        snprintf(order, sizeof(order), "order_id=%s", payments[i][1]);
        EV(SETTLED, ev, "occurred_at=1300", "version=1", payment, order, "amount_cents=500",
           "currency=EUR");
        msg.b_data[4] = payments[i][2][0];
        /* one produce request: one record batch, so one fetch brings all three */
        ck_assert_int_eq(
            rd_kafka_producev(producer, RD_KAFKA_V_TOPIC("payments"), RD_KAFKA_V_PARTITION(0),
                              RD_KAFKA_V_KEY(payments[i][0], 2),
                              RD_KAFKA_V_VALUE(msg.b_data, msg.b_len),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
            RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    ck_assert_int_eq(rd_kafka_flush(producer, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    char err[512];
    pipeline_opts_t opts = {.po_cfg = cfg,
                            .po_view = view,
                            .po_catalog = catalog,
                            .po_store = store,
                            .po_generation = 1,
                            .po_tick = stop_after_three};
    pipeline_t *pl = NULL;
    ck_assert_msg(pipeline_new(&opts, &pl, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(pipeline_run(pl), 1);
    pipeline_destroy(pl);
    const char *s = sections_of("C2");
    ck_assert_msg(strstr(s, "\"lifetime_settled_cents\":500") != NULL, "%s", s);
    s = sections_of("C1"); /* P2 (key C1) sorts before P1 (C2) but comes after the held P9 */
    ck_assert_msg(strstr(s, "lifetime_settled_cents\":500") == NULL, "%s", s);
    MDB_txn *txn;
    store_offset_t off;
    ck_assert_int_eq(store_read_begin(store, &txn), 0);
    int rc = store_offset_get(store, txn, "payments", 0, &off);
    store_read_end(txn);
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(off.so_next_offset, 1);
}
END_TEST

/* A run until caught up loads its targets (high watermarks) with one request per broker,
 * not one per partition: a rebuild's catch-up rounds each did one query per partition,
 * queued behind the consumer's fetches, and ran for seconds with nothing to read. Here 12
 * partitions behind a 1 s round trip: one query each took 16 s before the run could tell it
 * was caught up; one per broker is a few round trips, so the bound below is far from
 * both. */
START_TEST(test_a_caught_up_run_queries_its_targets_in_one_round_trip)
{
    EV(REG, "event_id=r1", "occurred_at=1000", "version=1", "customer_id=C1", "name=Ada",
       "email=ada@example.com", "phone=+441234", "preferred_channel=EMAIL",
       "marketing_opt_in=true");
    produce("customers", 0, "C1", msg.b_data, msg.b_len);
    ck_assert_uint_eq(run_until_caught_up().ps_messages, 1);
    ck_assert_int_eq(rd_kafka_mock_broker_set_rtt(mock, 1, 1000), RD_KAFKA_RESP_ERR_NO_ERROR);
    char err[512];
    /* Holding dead letters (as a rebuild does) skips the outbox recovery's own queries. */
    pipeline_opts_t opts = {.po_cfg = cfg,
                            .po_view = view,
                            .po_catalog = catalog,
                            .po_store = store,
                            .po_until_caught_up = true,
                            .po_hold_dead_letters = true,
                            .po_generation = 1};
    pipeline_t *pl = NULL;
    ck_assert_msg(pipeline_new(&opts, &pl, err, sizeof(err)) == 0, "%s", err);
    int64_t start_ms = rm_mono_ms();
    ck_assert_int_eq(pipeline_run(pl), 0);
    int64_t took_ms = rm_mono_ms() - start_ms;
    pipeline_stats_t stats;
    pipeline_get_stats(pl, &stats);
    pipeline_destroy(pl);
    ck_assert_uint_eq(stats.ps_messages, 0);
    fprintf(stderr, "caught-up run: %lld ms\n", (long long)took_ms);
    ck_assert_msg(took_ms < 8000, "a caught-up run took %lld ms behind a 1 s round trip",
                  (long long)took_ms);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pipeline");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_a_run_applies_dead_letters_and_resumes);
    tcase_add_test(tc, test_a_sorted_batch_equals_one_message_per_batch);
    tcase_add_test(tc, test_a_sorted_batch_holds_a_partition_at_a_registry_outage);
    tcase_add_test(tc, test_a_caught_up_run_queries_its_targets_in_one_round_trip);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
