/* Tests of outbox.c against an in-process mock Kafka cluster: what a restart's recovery
 * deletes, what a generation switch or rollback hands over, and when a dead letter may
 * be published at all. */
#include "cfg.h"
#include "outbox.h"
#include "rm_err.h"
#include "store.h"
#include "topic_counts.h"
#include "tsupport.h"

#include <check.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdlib.h>
#include <string.h>

#define T_VIEW "customer360"
#define T_GROUP "readmodel-customer360"
#define T_TIMEOUT_MS 5000
#define T_API_PRODUCE 0
#define T_API_LIST_OFFSETS 2

static rd_kafka_t *mock_rk; /* hosts the mock cluster */
static rd_kafka_mock_cluster_t *mock;
static rd_kafka_t *probe; /* a client of it: reads watermarks, publishes by hand */
static cfg_t *cfg;
static char *const topics[] = {"orders"};

static void setup(void)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "0", err, sizeof(err));
    mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    ck_assert_msg(mock_rk != NULL, "%s", err);
    mock = rd_kafka_mock_cluster_new(mock_rk, 2);
    ck_assert_ptr_nonnull(mock);
    /* Two DLQ partitions led by different brokers: one can fail while the other waits. */
    ck_assert_int_eq(rd_kafka_mock_topic_create(mock, "orders.dlq", 2, 1), 0);
    ck_assert_int_eq(rd_kafka_mock_partition_set_leader(mock, "orders.dlq", 0, 1), 0);
    ck_assert_int_eq(rd_kafka_mock_partition_set_leader(mock, "orders.dlq", 1, 2), 0);
    cfg = cfg_load(NULL, err, sizeof(err));
    ck_assert_msg(cfg != NULL, "%s", err);
    ck_assert_int_eq(cfg_set(cfg, "kafka.bootstrap.servers", rd_kafka_mock_cluster_bootstraps(mock),
                             err, sizeof(err)),
                     0);
    ck_assert_int_eq(cfg_set(cfg, "kafka.log_level", "0", err, sizeof(err)), 0);
    conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(mock), err,
                      sizeof(err));
    probe = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    ck_assert_msg(probe != NULL, "%s", err);
}

static void teardown(void)
{
    cfg_destroy(cfg);
    rd_kafka_destroy(probe);
    rd_kafka_mock_cluster_destroy(mock);
    rd_kafka_destroy(mock_rk);
}

static outbox_t *new_outbox(store_t *store)
{
    char err[512];
    outbox_t *outbox = NULL;
    int rc = outbox_new(store, cfg, T_VIEW, T_GROUP, topics, 1, &outbox, err, sizeof(err));
    ck_assert_msg(rc == 0 && outbox != NULL, "%s", err);
    return outbox;
}

/* One committed transaction that dead-letters orders/partition/offset and moves the
 * partition's stored offset past it, as a batch does. */
static void record(store_t *store, outbox_t *outbox, int32_t partition, int64_t offset)
{
    MDB_txn *txn;
    ck_assert_int_eq(store_write_begin(store, &txn), 0);
    ck_assert_int_eq(topic_counts_init(store, txn), 0); /* as engine_txn_begin does */
    ck_assert_int_eq(outbox_txn_begin(outbox, txn), 0);
    outbox_letter_t letter = {"orders", partition, offset, 1000,     "k",
                              1,        "bad",     3,      "decode", "test poison"};
    ck_assert_int_eq(outbox_record(outbox, txn, &letter), 0);
    store_offset_t off = {offset + 1, offset + 1, 1000, 1000};
    ck_assert_int_eq(store_offset_put(store, txn, "orders", partition, &off), 0);
    ck_assert_int_eq(outbox_txn_precommit(outbox, txn), 0);
    ck_assert_int_eq(store_write_commit(store, txn), 0);
}

static int note_orders(void *ctx, const char *topic, const topic_counts_t *counts)
{
    ck_assert_str_eq(topic, "orders"); /* the only topic these tests dead-letter */
    *(topic_counts_t *)ctx = *counts;
    return 0;
}

/* The dead letters the counters say store holds for orders equal a scan of its outbox
 * (and the outbox's own figure); returns them. */
static int64_t counted_letters(store_t *store, const outbox_t *outbox)
{
    topic_counts_t stored = {{0}}, scanned = {{0}};
    MDB_txn *txn;
    ck_assert_int_eq(store_read_begin(store, &txn), 0);
    ck_assert_int_eq(topic_counts_foreach(store, txn, note_orders, &stored), 0);
    ck_assert_int_eq(topic_counts_scan(store, txn, note_orders, &scanned), 0);
    MDB_stat st;
    ck_assert_int_eq(mdb_stat(txn, store_dbi(store, STORE_DB_OUTBOX), &st), 0);
    store_read_end(txn);
    ck_assert_int_eq(stored.tc_count[TOPIC_COUNTS_DEAD_LETTERS],
                     scanned.tc_count[TOPIC_COUNTS_DEAD_LETTERS]);
    ck_assert_int_eq(stored.tc_count[TOPIC_COUNTS_DEAD_LETTERS], (int64_t)st.ms_entries);
    (void)outbox;
    return stored.tc_count[TOPIC_COUNTS_DEAD_LETTERS];
}

/* Publishes what is due, after making every commit durable (see the durability test). */
static void flush(store_t *store, outbox_t *outbox)
{
    ck_assert_int_eq(store_sync(store), 0);
    ck_assert_int_eq(outbox_flush(outbox, T_TIMEOUT_MS), 0);
}

static int64_t dlq_count_in(int32_t partition)
{
    int64_t low = 0, high = 0;
    ck_assert_int_eq(
        rd_kafka_query_watermark_offsets(probe, "orders.dlq", partition, &low, &high, T_TIMEOUT_MS),
        0);
    return high - low;
}

static int64_t dlq_count(void)
{
    return dlq_count_in(0);
}

/* The next count requests of api_key fail with err (a broker refusing them). */
static void fail_requests(int16_t api_key, size_t count, rd_kafka_resp_err_t err)
{
    rd_kafka_resp_err_t errs[count];
    for (size_t i = 0; i < count; i++)
        errs[i] = err;
    rd_kafka_mock_push_request_errors_array(mock, api_key, count, errs);
}

static outbox_stats_t stats_of(const outbox_t *outbox)
{
    outbox_stats_t stats;
    outbox_get_stats(outbox, &stats);
    return stats;
}

/* Produces to orders.dlq what `store`'s outbox would publish for sequence seq, as if a
 * delivery had succeeded and the process died before the entry was deleted. */
static void publish_as(store_t *store, int64_t seq)
{
    char text[32];
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(4);
    snprintf(text, sizeof(text), "%lld", (long long)seq);
    rd_kafka_header_add(hdrs, "readmodel.view", -1, T_VIEW, -1);
    rd_kafka_header_add(hdrs, "readmodel.consumer.group", -1, T_GROUP, -1);
    rd_kafka_header_add(hdrs, "readmodel.outbox.seq", -1, text, -1);
    MDB_txn *txn;
    const void *replica;
    size_t len;
    ck_assert_int_eq(store_read_begin(store, &txn), 0);
    if (store_meta_get(store, txn, "outbox_replica", &replica, &len) == 0)
        rd_kafka_header_add(hdrs, "readmodel.replica", -1, replica, (ssize_t)len);
    store_read_end(txn);
    ck_assert_int_eq(rd_kafka_producev(probe, RD_KAFKA_V_TOPIC("orders.dlq"),
                                       RD_KAFKA_V_PARTITION(0), RD_KAFKA_V_VALUE("bad", 3),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                       RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END),
                     0);
    ck_assert_int_eq(rd_kafka_flush(probe, T_TIMEOUT_MS), 0);
}

/* Two replicas of one view publish to the same DLQ partition with their own sequences;
 * a restart of one must not take the other's letters for its own. */
START_TEST(test_recovery_ignores_another_replicas_letters)
{
    char *dir_a = ts_tmpdir(), *dir_b = ts_tmpdir();
    store_t *store_a = ts_store(dir_a), *store_b = ts_store(dir_b);
    outbox_t *outbox_a = new_outbox(store_a), *outbox_b = new_outbox(store_b);
    for (int64_t offset = 0; offset < 5; offset++)
        record(store_b, outbox_b, 0, offset);
    flush(store_b, outbox_b);
    ck_assert_int_eq(dlq_count(), 5);
    /* Replica A records two letters and stops before publishing them. */
    record(store_a, outbox_a, 0, 1);
    record(store_a, outbox_a, 0, 3);
    outbox_destroy(outbox_a);
    outbox_a = new_outbox(store_a);
    ck_assert_int_eq(outbox_recover(outbox_a, T_TIMEOUT_MS), 0);
    ck_assert_uint_eq(stats_of(outbox_a).os_recovered, 0);
    ck_assert_uint_eq(stats_of(outbox_a).os_pending, 2);
    flush(store_a, outbox_a);
    ck_assert_int_eq(dlq_count(), 7);
    /* And the other way round: B restarts after A published; nothing of B's is pending. */
    outbox_destroy(outbox_b);
    outbox_b = new_outbox(store_b);
    ck_assert_int_eq(outbox_recover(outbox_b, T_TIMEOUT_MS), 0);
    flush(store_b, outbox_b);
    ck_assert_int_eq(dlq_count(), 7);
    outbox_destroy(outbox_a);
    outbox_destroy(outbox_b);
    store_close(store_a);
    store_close(store_b);
    ts_rmtree(dir_a);
    ts_rmtree(dir_b);
}
END_TEST

/* A letter that failed while a later one of the same partition got through (a permanent
 * per-message error) is not published, whatever newer sequence the partition holds. */
START_TEST(test_recovery_keeps_a_letter_a_later_one_overtook)
{
    char *dir = ts_tmpdir();
    store_t *store = ts_store(dir);
    outbox_t *outbox = new_outbox(store);
    record(store, outbox, 0, 1);
    record(store, outbox, 0, 2);
    publish_as(store, 2); /* sequence 2 reached the broker, 1 did not */
    outbox_destroy(outbox);
    outbox = new_outbox(store);
    ck_assert_int_eq(outbox_recover(outbox, T_TIMEOUT_MS), 0);
    ck_assert_uint_eq(stats_of(outbox).os_recovered, 1);
    ck_assert_uint_eq(stats_of(outbox).os_pending, 1);
    flush(store, outbox);
    ck_assert_int_eq(dlq_count(), 2);
    ck_assert_uint_eq(stats_of(outbox).os_pending, 0);
    outbox_destroy(outbox);
    store_close(store);
    ts_rmtree(dir);
}
END_TEST

/* When the DLQ cannot be read at start, nothing is published blindly: the letters wait
 * until a recovery succeeds, and then only the unpublished ones go out. */
START_TEST(test_a_failed_recovery_publishes_nothing)
{
    char *dir = ts_tmpdir();
    store_t *store = ts_store(dir);
    outbox_t *outbox = new_outbox(store);
    record(store, outbox, 0, 1);
    publish_as(store, 1); /* published; the process died before deleting it */
    outbox_destroy(outbox);
    outbox = new_outbox(store);
    fail_requests(T_API_LIST_OFFSETS, 100, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    ck_assert_int_ne(outbox_recover(outbox, 1000), 0);
    ck_assert_int_ne(outbox_flush(outbox, 1000), 0);
    rd_kafka_mock_clear_request_errors(mock, T_API_LIST_OFFSETS);
    ck_assert_int_eq(dlq_count(), 1);
    ck_assert_int_eq(outbox_recover(outbox, T_TIMEOUT_MS), 0);
    flush(store, outbox);
    ck_assert_int_eq(dlq_count(), 1);
    ck_assert_uint_eq(stats_of(outbox).os_pending, 0);
    outbox_destroy(outbox);
    store_close(store);
    ts_rmtree(dir);
}
END_TEST

/* A failed delivery is produced again by itself: a letter still in flight when another
 * one fails is not produced a second time. */
START_TEST(test_a_failed_delivery_repeats_only_itself)
{
    char *dir = ts_tmpdir();
    store_t *store = ts_store(dir);
    outbox_t *outbox = new_outbox(store);
    ck_assert_int_eq(outbox_recover(outbox, T_TIMEOUT_MS), 0);
    record(store, outbox, 0, 1); /* DLQ partition 0, broker 1: acknowledged after 3 s */
    record(store, outbox, 1, 1); /* DLQ partition 1, broker 2: refused at once */
    rd_kafka_mock_broker_push_request_error_rtts(mock, 1, T_API_PRODUCE, 1,
                                                 RD_KAFKA_RESP_ERR_NO_ERROR, 3000);
    rd_kafka_mock_broker_push_request_error_rtts(mock, 2, T_API_PRODUCE, 1,
                                                 RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, 0);
    ck_assert_int_eq(store_sync(store), 0);
    outbox_flush(outbox, 500); /* the first is written but not acknowledged yet */
    flush(store, outbox); /* waits for everything outstanding */
    ck_assert_int_eq(dlq_count_in(0), 1);
    ck_assert_int_eq(dlq_count_in(1), 1);
    ck_assert_uint_eq(stats_of(outbox).os_pending, 0);
    outbox_destroy(outbox);
    store_close(store);
    ts_rmtree(dir);
}
END_TEST

/* An idempotent producer that met a fatal error refuses every later letter; the outbox
 * starts a new one, and what the old one had in flight is not sent twice. */
START_TEST(test_a_fatal_producer_error_is_survived)
{
    char *dir = ts_tmpdir();
    store_t *store = ts_store(dir);
    outbox_t *outbox = new_outbox(store);
    ck_assert_int_eq(outbox_recover(outbox, T_TIMEOUT_MS), 0);
    record(store, outbox, 0, 1);
    fail_requests(T_API_PRODUCE, 1, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER);
    ck_assert_int_eq(store_sync(store), 0);
    outbox_flush(outbox, 2000);
    record(store, outbox, 0, 2);
    flush(store, outbox);
    ck_assert_int_eq(dlq_count(), 2);
    ck_assert_uint_eq(stats_of(outbox).os_pending, 0);
    outbox_destroy(outbox);
    store_close(store);
    ts_rmtree(dir);
}
END_TEST

/* Periodic durability: a dead letter is published only once the commit that recorded it
 * is on disk; before, an OS crash could roll it back after Kafka has it. */
START_TEST(test_a_letter_waits_until_its_commit_is_durable)
{
    char *dir = ts_tmpdir();
    store_t *store = ts_store(dir);
    outbox_t *outbox = new_outbox(store);
    setenv("RM_FAILPOINT_ERROR", "store-sync:1:1000000", 1);
    record(store, outbox, 0, 1);
    outbox_flush(outbox, 1000);
    ck_assert_int_eq(dlq_count(), 0);
    ck_assert_uint_eq(stats_of(outbox).os_pending, 1);
    unsetenv("RM_FAILPOINT_ERROR");
    flush(store, outbox);
    ck_assert_int_eq(dlq_count(), 1);
    ck_assert_uint_eq(stats_of(outbox).os_pending, 0);
    outbox_destroy(outbox);
    store_close(store);
    ts_rmtree(dir);
}
END_TEST

/* nometasync durability: a commit is durable once the next one is, and in a quiet
 * moment there is no next one; the letter must not wait for traffic. */
START_TEST(test_a_quiet_nometasync_store_still_publishes)
{
    char *dir = ts_tmpdir(), err[512];
    store_opts_t opts = {
        .so_dir = dir, .so_map_size_bytes = 64 << 20, .so_durability = STORE_NOMETASYNC};
    store_t *store = store_open(&opts, err, sizeof(err));
    ck_assert_msg(store != NULL, "%s", err);
    outbox_t *outbox = new_outbox(store);
    ck_assert_int_eq(outbox_recover(outbox, T_TIMEOUT_MS), 0);
    record(store, outbox, 0, 1);
    outbox_flush(outbox, T_TIMEOUT_MS);
    outbox_flush(outbox, T_TIMEOUT_MS);
    ck_assert_int_eq(dlq_count(), 1);
    ck_assert_uint_eq(stats_of(outbox).os_pending, 0);
    outbox_destroy(outbox);
    store_close(store);
    ts_rmtree(dir);
}
END_TEST

/* A rebuild (rebuild --from-time while the daemon lags) holds letters for offsets the
 * live generation has not reached yet; the live one has meanwhile published letters
 * with the same sequence numbers. After the switch they must still be published. */
START_TEST(test_a_rebuilds_held_letters_survive_the_switch)
{
    char *dir_live = ts_tmpdir(), *dir_next = ts_tmpdir();
    store_t *live = ts_store(dir_live), *next = ts_store(dir_next);
    outbox_t *outbox_live = new_outbox(live), *held = new_outbox(next);
    for (int64_t offset = 2; offset <= 8; offset += 3)
        record(live, outbox_live, 0, offset); /* sequences 1..3, offsets below 9 */
    ck_assert_int_eq(counted_letters(live, outbox_live), 3);
    flush(live, outbox_live);
    ck_assert_int_eq(dlq_count(), 3);
    ck_assert_int_eq(counted_letters(live, outbox_live), 0); /* deleted once published */
    record(next, held, 0, 12); /* sequences 1..2 in the rebuild's own store */
    record(next, held, 0, 14);
    ck_assert_int_eq(outbox_adopt(held, live, true), 0); /* the rebuild, before its switch */
    ck_assert_int_eq(counted_letters(next, held), 2);
    outbox_destroy(held);
    /* The daemon at the switch: adopts with the live generation's final state. */
    outbox_t *outbox_next = new_outbox(next);
    ck_assert_int_eq(outbox_adopt(outbox_next, live, false), 0);
    counted_letters(next, outbox_next);
    outbox_destroy(outbox_live);
    ck_assert_int_eq(outbox_recover(outbox_next, T_TIMEOUT_MS), 0);
    counted_letters(next, outbox_next);
    flush(next, outbox_next);
    ck_assert_int_eq(dlq_count(), 5);
    ck_assert_int_eq(counted_letters(next, outbox_next), 0);
    ck_assert_uint_eq(stats_of(outbox_next).os_pending, 0);
    outbox_destroy(outbox_next);
    store_close(live);
    store_close(next);
    ts_rmtree(dir_live);
    ts_rmtree(dir_next);
}
END_TEST

/* The daemon died between the rebuild's switch and its own takeover, and starts on the
 * new generation: its recovery finishes the takeover from the old generation's
 * directory, which kept recording after the rebuild had looked at it. */
START_TEST(test_a_takeover_cut_short_by_a_crash_is_finished_at_start)
{
    char *dir_live = ts_tmpdir(), *dir_next = ts_tmpdir();
    store_t *live = ts_store(dir_live), *next = ts_store(dir_next);
    outbox_t *outbox_live = new_outbox(live), *held = new_outbox(next);
    for (int64_t offset = 2; offset <= 8; offset += 3)
        record(live, outbox_live, 0, offset); /* sequences 1..3 */
    flush(live, outbox_live);
    record(next, held, 0, 12); /* the rebuild's own sequences 1..2 */
    record(next, held, 0, 14);
    ck_assert_int_eq(outbox_adopt(held, live, true), 0);
    outbox_destroy(held);
    /* The live generation, still behind the rebuild, publishes sequence 4 after that
     * look, records 5 and dies before publishing it. */
    record(live, outbox_live, 0, 10);
    flush(live, outbox_live);
    record(live, outbox_live, 0, 11);
    ck_assert_int_eq(dlq_count(), 4);
    outbox_destroy(outbox_live);
    store_close(live);
    outbox_t *outbox_next = new_outbox(next);
    ck_assert_int_eq(outbox_recover(outbox_next, T_TIMEOUT_MS), 0);
    flush(next, outbox_next);
    ck_assert_int_eq(dlq_count(), 7);
    ck_assert_uint_eq(stats_of(outbox_next).os_pending, 0);
    /* A letter below the old generation's final offsets is not recorded again. */
    record(next, outbox_next, 0, 11);
    flush(next, outbox_next);
    ck_assert_int_eq(dlq_count(), 7);
    outbox_destroy(outbox_next);
    store_close(next);
    ts_rmtree(dir_live);
    ts_rmtree(dir_next);
}
END_TEST

/* A switch that fails after the takeover (the pipeline keeps writing the old generation)
 * leaves the new store unpublished: when the switch is tried again, its letters are
 * numbered again after what the old generation published meanwhile. */
START_TEST(test_a_failed_switch_leaves_the_takeover_repeatable)
{
    char *dir_live = ts_tmpdir(), *dir_next = ts_tmpdir();
    store_t *live = ts_store(dir_live), *next = ts_store(dir_next);
    outbox_t *outbox_live = new_outbox(live), *held = new_outbox(next);
    for (int64_t offset = 2; offset <= 8; offset += 3)
        record(live, outbox_live, 0, offset); /* sequences 1..3 */
    flush(live, outbox_live);
    record(next, held, 0, 12);
    record(next, held, 0, 14);
    ck_assert_int_eq(outbox_adopt(held, live, true), 0);
    outbox_destroy(held);
    outbox_t *attempt = new_outbox(next); /* the switch's first attempt fails late */
    ck_assert_int_eq(outbox_adopt(attempt, live, false), 0);
    ck_assert_int_eq(outbox_recover(attempt, T_TIMEOUT_MS), 0);
    outbox_destroy(attempt);
    record(live, outbox_live, 0, 10); /* sequences 4..5 */
    record(live, outbox_live, 0, 11);
    flush(live, outbox_live);
    ck_assert_int_eq(dlq_count(), 5);
    attempt = new_outbox(next);
    ck_assert_int_eq(outbox_adopt(attempt, live, false), 0);
    outbox_destroy(outbox_live);
    ck_assert_int_eq(outbox_recover(attempt, T_TIMEOUT_MS), 0);
    flush(next, attempt);
    ck_assert_int_eq(dlq_count(), 7);
    ck_assert_uint_eq(stats_of(attempt).os_pending, 0);
    outbox_destroy(attempt);
    store_close(live);
    store_close(next);
    ts_rmtree(dir_live);
    ts_rmtree(dir_next);
}
END_TEST

/* Letters the old generation recorded but had not published when the daemon switched
 * away from it are published by the new one; so are the new one's after a rollback. */
START_TEST(test_a_switch_and_a_rollback_abandon_no_letter)
{
    char *dir_old = ts_tmpdir(), *dir_new = ts_tmpdir();
    store_t *old = ts_store(dir_old), *new = ts_store(dir_new);
    outbox_t *outbox_old = new_outbox(old);
    record(old, outbox_old, 0, 3);
    record(old, outbox_old, 0, 6);
    /* The broker refuses everything while the switch flushes the old generation. */
    fail_requests(T_API_PRODUCE, 1000, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
    store_sync(old);
    outbox_flush(outbox_old, 200);
    outbox_destroy(outbox_old);
    rd_kafka_mock_clear_request_errors(mock, T_API_PRODUCE);
    /* The new generation caught up with the old one: it re-recorded both letters. */
    outbox_t *outbox_new = new_outbox(new);
    record(new, outbox_new, 0, 3);
    record(new, outbox_new, 0, 6);
    outbox_destroy(outbox_new);
    outbox_new = new_outbox(new);
    ck_assert_int_eq(outbox_adopt(outbox_new, old, false), 0);
    ck_assert_int_eq(counted_letters(new, outbox_new), 2); /* its own two dropped, two copied */
    ck_assert_int_eq(outbox_recover(outbox_new, T_TIMEOUT_MS), 0);
    flush(new, outbox_new);
    ck_assert_int_eq(dlq_count(), 2);
    ck_assert_int_eq(counted_letters(new, outbox_new), 0);
    /* The new generation records one more and is rolled back before publishing it. */
    record(new, outbox_new, 0, 9);
    outbox_destroy(outbox_new);
    outbox_old = new_outbox(old);
    ck_assert_int_eq(outbox_adopt(outbox_old, new, false), 0);
    counted_letters(old, outbox_old);
    ck_assert_int_eq(outbox_recover(outbox_old, T_TIMEOUT_MS), 0);
    flush(old, outbox_old);
    ck_assert_int_eq(dlq_count(), 3);
    ck_assert_int_eq(counted_letters(old, outbox_old), 0);
    /* The old generation re-consumes offsets 7..9: the letter at 9 is not recorded again. */
    record(old, outbox_old, 0, 9);
    flush(old, outbox_old);
    ck_assert_int_eq(dlq_count(), 3);
    outbox_destroy(outbox_old);
    store_close(old);
    store_close(new);
    ts_rmtree(dir_old);
    ts_rmtree(dir_new);
}
END_TEST

/* Settings librdkafka refuses for the idempotent producer are a configuration error,
 * told by code (the projector exits 2 on it), and they leave nothing behind. */
START_TEST(test_a_producer_setting_librdkafka_refuses_is_a_config_error)
{
    char *dir = ts_tmpdir(), err[512] = "";
    store_t *store = ts_store(dir);
    ck_assert_int_eq(cfg_set(cfg, "kafka.acks", "1", err, sizeof(err)), 0);
    outbox_t *outbox = NULL;
    int rc = outbox_new(store, cfg, T_VIEW, T_GROUP, topics, 1, &outbox, err, sizeof(err));
    ck_assert_msg(rc == RM_ECONFIG, "%d: %s", rc, err);
    ck_assert_ptr_null(outbox);
    ck_assert_msg(strstr(err, "acks") != NULL, "%s", err);
    store_close(store);
    ts_rmtree(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("outbox");
    TCase *tc = tcase_create("outbox");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_recovery_ignores_another_replicas_letters);
    tcase_add_test(tc, test_recovery_keeps_a_letter_a_later_one_overtook);
    tcase_add_test(tc, test_a_failed_recovery_publishes_nothing);
    tcase_add_test(tc, test_a_failed_delivery_repeats_only_itself);
    tcase_add_test(tc, test_a_fatal_producer_error_is_survived);
    tcase_add_test(tc, test_a_letter_waits_until_its_commit_is_durable);
    tcase_add_test(tc, test_a_quiet_nometasync_store_still_publishes);
    tcase_add_test(tc, test_a_rebuilds_held_letters_survive_the_switch);
    tcase_add_test(tc, test_a_takeover_cut_short_by_a_crash_is_finished_at_start);
    tcase_add_test(tc, test_a_failed_switch_leaves_the_takeover_repeatable);
    tcase_add_test(tc, test_a_switch_and_a_rollback_abandon_no_letter);
    tcase_add_test(tc, test_a_producer_setting_librdkafka_refuses_is_a_config_error);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
