/* Tests of kprod.c against an in-process mock Kafka cluster: where a message landed, a
 * full queue waited out or refused, bounded flushes and purges, failed deliveries and a
 * fatal producer error, each as the rm_err_t the header promises. */
#include "kprod.h"
#include "rm_err.h"
#include "rm_time.h"
#include "tsupport.h"

#include <check.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdlib.h>
#include <string.h>

#define T_TOPIC "events"
#define T_TIMEOUT_MS 10000

static rd_kafka_t *mock_rk; /* hosts the mock cluster */
static rd_kafka_mock_cluster_t *mock;

static void setup(void)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "0", err, sizeof(err));
    mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    ck_assert_msg(mock_rk != NULL, "%s", err);
    mock = rd_kafka_mock_cluster_new(mock_rk, 1);
    ck_assert_ptr_nonnull(mock);
    ck_assert_int_eq(rd_kafka_mock_topic_create(mock, T_TOPIC, 2, 1), 0);
}

static void teardown(void)
{
    rd_kafka_mock_cluster_destroy(mock);
    rd_kafka_destroy(mock_rk);
}

/* A conf for the mock cluster, quick to reconnect, plus pairs name, value, ..., NULL. */
static rd_kafka_conf_t *new_conf(const char *const *pairs)
{
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    ck_assert_int_eq(rd_kafka_conf_set(conf, "bootstrap.servers",
                                       rd_kafka_mock_cluster_bootstraps(mock), err, sizeof(err)),
                     RD_KAFKA_CONF_OK);
    rd_kafka_conf_set(conf, "log_level", "0", err, sizeof(err));
    rd_kafka_conf_set(conf, "reconnect.backoff.ms", "10", err, sizeof(err));
    rd_kafka_conf_set(conf, "reconnect.backoff.max.ms", "100", err, sizeof(err));
    for (size_t i = 0; pairs && pairs[i]; i += 2)
        ck_assert_msg(rd_kafka_conf_set(conf, pairs[i], pairs[i + 1], err, sizeof(err)) ==
                          RD_KAFKA_CONF_OK,
                      "%s", err);
    return conf;
}

static kprod_t *new_kprod(rd_kafka_conf_t *conf, kprod_report_fn *report, void *opaque)
{
    char err[512];
    kprod_t *kp = kprod_new(conf, report, opaque, err, sizeof(err));
    ck_assert_msg(kp != NULL, "%s", err);
    return kp;
}

static kprod_msg_t msg_of(const char *key, void *opaque)
{
    return (kprod_msg_t){.km_topic = T_TOPIC,
                         .km_key = key,
                         .km_key_len = strlen(key),
                         .km_value = "v",
                         .km_value_len = 1,
                         .km_opaque = opaque};
}

/* The reports a producer gave, counted. */
typedef struct seen {
    int sn_ok;
    int sn_failed;
    int sn_last_err;
} seen_t;

static void count_report(void *opaque, const kprod_report_t *report)
{
    seen_t *seen = opaque;
    if (report->kr_err) {
        seen->sn_failed++;
        seen->sn_last_err = report->kr_err;
        ck_assert_ptr_nonnull(report->kr_reason);
        ck_assert_int_eq(report->kr_offset, -1);
    } else {
        seen->sn_ok++;
    }
}

START_TEST(test_an_acked_send_says_where_it_landed)
{
    kprod_t *kp = new_kprod(new_conf(NULL), kprod_report_ack, NULL);
    kprod_ack_t first = {.ka_offset = -1}, second = {.ka_offset = -1};
    kprod_msg_t msg = msg_of("k1", &first);
    msg.km_has_partition = true;
    msg.km_partition = 1;
    msg.km_headers = rd_kafka_headers_new(1);
    rd_kafka_header_add(msg.km_headers, "h", -1, "x", -1);
    ck_assert_int_eq(kprod_send(kp, &msg), 0); /* the headers are kprod's now */
    msg = msg_of("k2", &second);
    msg.km_has_partition = true;
    msg.km_partition = 1;
    ck_assert_int_eq(kprod_send(kp, &msg), 0);
    ck_assert_int_eq(kprod_flush(kp, T_TIMEOUT_MS), 0);
    ck_assert(first.ka_done && second.ka_done);
    ck_assert_int_eq(first.ka_err, 0);
    ck_assert_int_eq(first.ka_partition, 1);
    ck_assert_int_eq(first.ka_offset, 0);
    ck_assert_int_eq(second.ka_offset, 1);
    ck_assert_uint_eq(kprod_delivered(kp), 2);
    ck_assert_uint_eq(kprod_failed(kp), 0);
    ck_assert_uint_eq(kprod_queued(kp), 0);
    ck_assert_ptr_null(kprod_error(kp));
    kprod_destroy(kp, 0, false);
}
END_TEST

/* A one-message queue: a second message is refused at once by kprod_try_send, and
 * kprod_send waits until the first is delivered. */
START_TEST(test_a_full_queue_is_refused_or_waited_out)
{
    seen_t seen = {0};
    rd_kafka_mock_broker_set_down(mock, 1); /* the first message cannot leave yet */
    kprod_t *kp = new_kprod(new_conf((const char *[]){"queue.buffering.max.messages", "1", NULL}),
                            count_report, &seen);
    kprod_msg_t msg = msg_of("k1", NULL);
    ck_assert_int_eq(kprod_send(kp, &msg), 0);
    msg = msg_of("k2", NULL);
    ck_assert_int_eq(kprod_try_send(kp, &msg), RM_EBUSY);
    ck_assert_ptr_null(kprod_error(kp)); /* a full queue is not an error */
    rd_kafka_mock_broker_set_up(mock, 1);
    ck_assert_int_eq(kprod_send(kp, &msg), 0);
    ck_assert_int_eq(kprod_flush(kp, T_TIMEOUT_MS), 0);
    ck_assert_int_eq(seen.sn_ok, 2);
    ck_assert_uint_eq(kprod_delivered(kp), 2);
    kprod_destroy(kp, 0, false);
}
END_TEST

/* A flush with a bound returns at it with the message still queued; a destroy that
 * purges does not wait for it, and reports it failed. */
START_TEST(test_a_bounded_flush_and_a_purging_destroy_return_in_time)
{
    seen_t seen = {0};
    rd_kafka_mock_broker_set_down(mock, 1);
    kprod_t *kp =
        new_kprod(new_conf((const char *[]){"message.timeout.ms", "0", NULL}), count_report, &seen);
    kprod_msg_t msg = msg_of("k1", NULL);
    ck_assert_int_eq(kprod_send(kp, &msg), 0);
    int64_t start = rm_mono_ms();
    ck_assert_int_eq(kprod_flush(kp, 300), RM_ETIMEOUT);
    int64_t took = rm_mono_ms() - start;
    /* the upper bound only catches a flush that ignores its bound: it is loose */
    ck_assert_msg(took >= 300 && took < T_TIMEOUT_MS, "flush returned after %lld ms",
                  (long long)took);
    ck_assert_uint_eq(kprod_queued(kp), 1);
    ck_assert_int_eq(seen.sn_failed, 0);
    kprod_destroy(kp, 100, true);
    ck_assert_int_eq(seen.sn_failed, 1);
    ck_assert_int_eq(seen.sn_ok, 0);
}
END_TEST

/* A message that times out is counted, reported with an rm_err_t and named by
 * kprod_error; flushing it is not an error of its own. */
START_TEST(test_a_failed_delivery_is_counted_and_named)
{
    seen_t seen = {0};
    rd_kafka_mock_broker_set_down(mock, 1);
    kprod_t *kp = new_kprod(new_conf((const char *[]){"message.timeout.ms", "200", NULL}),
                            count_report, &seen);
    kprod_msg_t msg = msg_of("k1", NULL);
    ck_assert_int_eq(kprod_send(kp, &msg), 0);
    ck_assert_int_eq(kprod_flush(kp, -1), 0);
    ck_assert_uint_eq(kprod_failed(kp), 1);
    ck_assert_uint_eq(kprod_delivered(kp), 0);
    ck_assert_int_eq(seen.sn_failed, 1);
    ck_assert_int_lt(seen.sn_last_err, 0);
    ck_assert_ptr_nonnull(kprod_error(kp));
    ck_assert_msg(strncmp(kprod_error(kp), T_TOPIC ": ", strlen(T_TOPIC) + 2) == 0, "%s",
                  kprod_error(kp));
    ck_assert_str_eq(kprod_error(kp), kprod_last_error(kp));
    kprod_destroy(kp, 0, false);
}
END_TEST

/* After a fatal error (an idempotent producer's broken sequence) every send and flush
 * says RM_EKAFKA at once, and kprod_fatal gives the reason. */
START_TEST(test_a_fatal_error_stops_sends_and_flushes)
{
    kprod_t *kp =
        new_kprod(new_conf((const char *[]){"enable.idempotence", "true", NULL}), NULL, NULL);
    kprod_msg_t msg = msg_of("k1", NULL);
    ck_assert_int_eq(kprod_send(kp, &msg), 0);
    ck_assert_int_eq(kprod_flush(kp, T_TIMEOUT_MS), 0);
    char reason[256];
    ck_assert_int_eq(kprod_fatal(kp, reason, sizeof(reason)), 0);
    ck_assert_int_eq(rd_kafka_test_fatal_error(
                         kprod_rk(kp), RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, "test"),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    ck_assert_int_eq(kprod_fatal(kp, reason, sizeof(reason)), RM_EKAFKA);
    ck_assert_int_eq(kprod_send(kp, &msg), RM_EKAFKA);
    ck_assert_msg(strstr(kprod_last_error(kp), "fatal producer error") != NULL, "%s",
                  kprod_last_error(kp));
    ck_assert_int_eq(kprod_flush(kp, T_TIMEOUT_MS), RM_EKAFKA);
    kprod_destroy(kp, 0, false);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("kprod");
    TCase *tc = tcase_create("kprod");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_an_acked_send_says_where_it_landed);
    tcase_add_test(tc, test_a_full_queue_is_refused_or_waited_out);
    tcase_add_test(tc, test_a_bounded_flush_and_a_purging_destroy_return_in_time);
    tcase_add_test(tc, test_a_failed_delivery_is_counted_and_named);
    tcase_add_test(tc, test_a_fatal_error_stops_sends_and_flushes);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
