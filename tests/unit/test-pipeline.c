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

enum { REG = 1, ORDER = 4, SETTLED = 6 }; /* schema ids in schemas/catalog.yaml */

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

static pipeline_stats_t run_until_caught_up(void)
{
    char err[512];
    pipeline_opts_t opts = {.po_cfg = cfg,
                            .po_view = view,
                            .po_catalog = catalog,
                            .po_store = store,
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

static const char *sections_of(const char *key)
{
    static buf_t out;
    MDB_txn *txn;
    buf_reset(&out);
    ck_assert_int_eq(store_read_begin(store, &txn), 0);
    int rc = render_sections(view, store, txn, key, strlen(key), &out);
    store_read_end(txn);
    ck_assert_int_eq(rc, 0);
    return out.b_data;
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

/* A run until caught up loads its targets (high watermarks) with one request per broker,
 * not one per partition: a rebuild's catch-up rounds each did one query per partition,
 * queued behind the consumer's fetches, and ran for seconds with nothing to read. Here 12
 * partitions behind a 200 ms round trip: one query each is at least 24 round trips
 * (4.8 s) before the run can tell it is caught up; one per broker is a few round trips. */
START_TEST(test_a_caught_up_run_queries_its_targets_in_one_round_trip)
{
    EV(REG, "event_id=r1", "occurred_at=1000", "version=1", "customer_id=C1", "name=Ada",
       "email=ada@example.com", "phone=+441234", "preferred_channel=EMAIL",
       "marketing_opt_in=true");
    produce("customers", 0, "C1", msg.b_data, msg.b_len);
    ck_assert_uint_eq(run_until_caught_up().ps_messages, 1);
    ck_assert_int_eq(rd_kafka_mock_broker_set_rtt(mock, 1, 200), RD_KAFKA_RESP_ERR_NO_ERROR);
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
    ck_assert_msg(took_ms < 3000, "a caught-up run took %lld ms behind a 200 ms round trip",
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
    tcase_add_test(tc, test_a_caught_up_run_queries_its_targets_in_one_round_trip);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
