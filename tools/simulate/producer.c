/* producer: librdkafka producing with delivery accounting (see producer.h). */
#include "producer.h"
#include "kafka.h"
#include "log.h"
#include "rm_err.h"
#include "rm_time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long to serve delivery reports while the local queue is full: long enough to
 * free room, short enough to notice a fatal error quickly. */
#define QUEUE_FULL_WAIT_MS 50
#define FLUSH_STEP_MS 1000
/* The view has six topics; a topic-per-event-type catalog has fourteen. */
#define MAX_TOPICS 64

struct producer {
    rd_kafka_t *pr_rk;
    rd_kafka_topic_t *pr_topics[MAX_TOPICS];
    size_t pr_topic_count;
    uint64_t pr_delivered;
    uint64_t pr_failed;
    char pr_error[512];
    bool pr_fatal;
    const char *pr_only_topics; /* producer_set_replay; NULL: every topic */
    int64_t pr_timestamp_offset_ms; /* producer_set_replay; 0: librdkafka's timestamps */
};

static void record_error(producer_t *producer, const char *what, const char *reason)
{
    if (!producer->pr_error[0])
        snprintf(producer->pr_error, sizeof(producer->pr_error), "%s: %s", what, reason);
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    producer_t *producer = opaque;
    producer_ack_t *ack = msg->_private; /* the msg_opaque given to producev */
    if (ack) {
        ack->pa_partition = msg->partition;
        ack->pa_offset = msg->err ? -1 : msg->offset;
        ack->pa_err = msg->err;
        ack->pa_done = true;
    }
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        producer->pr_delivered++;
        return;
    }
    producer->pr_failed++;
    record_error(producer, rd_kafka_topic_name(msg->rkt), rd_kafka_err2str(msg->err));
}

/* Served by rd_kafka_poll on the producing thread. Transient errors (a broker down) are
 * retried by librdkafka and only logged; a fatal one stops production. */
static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    producer_t *producer = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char fatal[256];
        rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
        producer->pr_fatal = true;
        record_error(producer, "fatal producer error", fatal);
        return;
    }
    log_warn("kafka error", LOG_S("error", rd_kafka_err2name(err)), LOG_S("reason", reason));
}

/* librdkafka's own log lines go through log.h, so stderr keeps one format. Levels are
 * syslog's: 0-4 (emerg..warning) are warnings for us, the rest debug. */
static void on_log(const rd_kafka_t *rk, int level, const char *facility, const char *message)
{
    if (level <= 4)
        log_warn("librdkafka", LOG_S("facility", facility), LOG_S("message", message));
    else
        log_debug("librdkafka", LOG_S("facility", facility), LOG_S("message", message));
}

producer_t *producer_new(rd_kafka_conf_t *conf, char *errstr, size_t errlen)
{
    producer_t *producer = calloc(1, sizeof(*producer));
    if (!producer) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    rd_kafka_conf_set_opaque(conf, producer);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_log_cb(conf, on_log);
    producer->pr_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, errlen);
    if (!producer->pr_rk) {
        rd_kafka_conf_destroy(conf);
        free(producer);
        return NULL;
    }
    return producer;
}

void producer_destroy(producer_t *producer)
{
    if (!producer)
        return;
    for (size_t i = 0; i < producer->pr_topic_count; i++)
        rd_kafka_topic_destroy(producer->pr_topics[i]);
    if (producer->pr_rk)
        rd_kafka_destroy(producer->pr_rk);
    free(producer);
}

/* Topic handles are created once per topic: producev by name would look the topic up
 * under librdkafka's lock for every message. */
static rd_kafka_topic_t *topic_handle(producer_t *producer, const char *topic)
{
    for (size_t i = 0; i < producer->pr_topic_count; i++) {
        if (strcmp(rd_kafka_topic_name(producer->pr_topics[i]), topic) == 0)
            return producer->pr_topics[i];
    }
    if (producer->pr_topic_count == MAX_TOPICS)
        return NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(producer->pr_rk, topic, NULL);
    if (rkt)
        producer->pr_topics[producer->pr_topic_count++] = rkt;
    return rkt;
}

void producer_set_replay(producer_t *producer, const char *only_topics, int64_t timestamp_offset_ms)
{
    producer->pr_only_topics = only_topics;
    producer->pr_timestamp_offset_ms = timestamp_offset_ms;
}

/* Whether topic is one of the comma-separated names in list. */
static bool topic_listed(const char *list, const char *topic)
{
    size_t len = strlen(topic);
    for (const char *p = list; *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (n == len && strncmp(p, topic, n) == 0)
            return true;
        p += comma ? n + 1 : n;
    }
    return false;
}

int producer_send(producer_t *producer, const char *topic, const void *key, size_t key_len,
                  const void *value, size_t value_len)
{
    return producer_send_acked(producer, topic, key, key_len, value, value_len, NULL);
}

int producer_send_acked(producer_t *producer, const char *topic, const void *key,
                        size_t key_len, const void *value, size_t value_len,
                        producer_ack_t *ack)
{
    if (producer->pr_only_topics && !topic_listed(producer->pr_only_topics, topic)) {
        if (ack)
            *ack = (producer_ack_t){-1, -1, 0, true};
        return 0;
    }
    rd_kafka_topic_t *rkt = topic_handle(producer, topic);
    if (!rkt) {
        record_error(producer, topic, "cannot create topic handle");
        return RM_EKAFKA;
    }
    for (;;) {
        if (producer->pr_fatal)
            return RM_EKAFKA;
        rd_kafka_resp_err_t err = rd_kafka_producev(
            producer->pr_rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_KEY(key, key_len),
            RD_KAFKA_V_VALUE((void *)value, value_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_TIMESTAMP(producer->pr_timestamp_offset_ms
                                     ? rm_wall_ms() - producer->pr_timestamp_offset_ms
                                     : 0),
            RD_KAFKA_V_OPAQUE(ack), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
            return 0;
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            record_error(producer, topic, rd_kafka_err2str(err));
            return kafka_err(err);
        }
        rd_kafka_poll(producer->pr_rk, QUEUE_FULL_WAIT_MS);
    }
}

void producer_poll(producer_t *producer)
{
    rd_kafka_poll(producer->pr_rk, 0);
}

int producer_flush(producer_t *producer)
{
    /* flush() returns on timeout with messages still queued; message.timeout.ms bounds
     * how long any of them can stay, so this loop ends. */
    while (rd_kafka_outq_len(producer->pr_rk) > 0 && !producer->pr_fatal)
        rd_kafka_flush(producer->pr_rk, FLUSH_STEP_MS);
    return producer->pr_failed || producer->pr_fatal ? RM_EKAFKA : 0;
}

uint64_t producer_delivered(const producer_t *producer)
{
    return producer->pr_delivered;
}

uint64_t producer_failed(const producer_t *producer)
{
    return producer->pr_failed;
}

const char *producer_error(const producer_t *producer)
{
    return producer->pr_error[0] ? producer->pr_error : NULL;
}
