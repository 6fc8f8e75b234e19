/* kprod: the project's librdkafka producer (see kprod.h). */
#include "kprod.h"
#include "kafka.h"
#include "rm_err.h"
#include "rm_time.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long to serve delivery reports while the local queue is full: long enough to free
 * room, short enough to notice a fatal error quickly. */
#define KPROD_QUEUE_FULL_WAIT_MS 50
/* One rd_kafka_flush call of a longer flush: a fatal error is noticed between calls. */
#define KPROD_FLUSH_STEP_MS 1000
/* Topic handles kept: the view has six topics, a topic-per-event-type catalog fourteen;
 * past this, messages name their topic and librdkafka looks it up each time. */
#define KPROD_MAX_TOPICS 64

struct kprod {
    rd_kafka_t *kp_rk;
    rd_kafka_topic_t *kp_topics[KPROD_MAX_TOPICS];
    size_t kp_topic_count;
    kprod_report_fn *kp_report;
    void *kp_opaque;
    uint64_t kp_delivered;
    uint64_t kp_failed;
    char kp_error[512]; /* the first error */
    char kp_last_error[512]; /* the most recent one */
};

static void record_error(kprod_t *kp, const char *what, const char *reason)
{
    snprintf(kp->kp_last_error, sizeof(kp->kp_last_error), "%s: %s", what, reason);
    if (!kp->kp_error[0])
        snprintf(kp->kp_error, sizeof(kp->kp_error), "%s", kp->kp_last_error);
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    (void)rk;
    kprod_t *kp = opaque;
    const char *topic = rd_kafka_topic_name(msg->rkt);
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        kp->kp_delivered++;
    } else {
        kp->kp_failed++;
        record_error(kp, topic, rd_kafka_err2str(msg->err));
    }
    if (!kp->kp_report)
        return;
    kprod_report_t report = {
        .kr_topic = topic,
        .kr_partition = msg->partition,
        .kr_offset = msg->err ? -1 : msg->offset,
        .kr_err = msg->err ? kafka_err(msg->err) : 0,
        .kr_reason = msg->err ? rd_kafka_err2str(msg->err) : NULL,
        .kr_opaque = msg->_private, /* the msg_opaque given to producev */
    };
    kp->kp_report(kp->kp_opaque, &report);
}

void kprod_report_ack(void *opaque, const kprod_report_t *report)
{
    (void)opaque;
    kprod_ack_t *ack = report->kr_opaque;
    if (!ack)
        return;
    ack->ka_partition = report->kr_partition;
    ack->ka_offset = report->kr_offset;
    ack->ka_err = report->kr_err;
    ack->ka_done = true;
}

kprod_t *kprod_new(rd_kafka_conf_t *conf, kprod_report_fn *report, void *opaque, char *errstr,
                   size_t errlen)
{
    kprod_t *kp = calloc(1, sizeof(*kp));
    if (!kp) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    kp->kp_report = report;
    kp->kp_opaque = opaque;
    rd_kafka_conf_set_opaque(conf, kp);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    char rkerr[512];
    kp->kp_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, rkerr, sizeof(rkerr));
    if (!kp->kp_rk) {
        snprintf(errstr, errlen, "kafka producer: %s", rkerr);
        rd_kafka_conf_destroy(conf);
        free(kp);
        return NULL;
    }
    return kp;
}

void kprod_destroy(kprod_t *kp, int flush_timeout_ms, bool purge)
{
    if (!kp)
        return;
    if (flush_timeout_ms > 0)
        (void)kprod_flush(kp, flush_timeout_ms);
    if (purge) {
        rd_kafka_purge(kp->kp_rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(kp->kp_rk, 0); /* the purged messages' reports */
    }
    for (size_t i = 0; i < kp->kp_topic_count; i++)
        rd_kafka_topic_destroy(kp->kp_topics[i]);
    rd_kafka_destroy(kp->kp_rk);
    free(kp);
}

/* Topic handles are created once per topic: producev by name looks the topic up under
 * librdkafka's lock for every message. NULL when the table is full. */
static rd_kafka_topic_t *topic_handle(kprod_t *kp, const char *topic)
{
    for (size_t i = 0; i < kp->kp_topic_count; i++) {
        if (strcmp(rd_kafka_topic_name(kp->kp_topics[i]), topic) == 0)
            return kp->kp_topics[i];
    }
    if (kp->kp_topic_count == KPROD_MAX_TOPICS)
        return NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(kp->kp_rk, topic, NULL);
    if (rkt)
        kp->kp_topics[kp->kp_topic_count++] = rkt;
    return rkt;
}

static rd_kafka_resp_err_t produce(kprod_t *kp, rd_kafka_topic_t *rkt, const kprod_msg_t *msg)
{
    /* Locals, not expressions: librdkafka's RD_KAFKA_V_* macros cast their argument
     * without parentheses, so "a ? b : c" would be mis-parsed. */
    int32_t partition = msg->km_has_partition ? msg->km_partition : RD_KAFKA_PARTITION_UA;
    void *value = (void *)msg->km_value;
    if (!rkt)
        return rd_kafka_producev(
            kp->kp_rk, RD_KAFKA_V_TOPIC(msg->km_topic), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_KEY(msg->km_key, msg->km_key_len),
            RD_KAFKA_V_VALUE(value, msg->km_value_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADERS(msg->km_headers), RD_KAFKA_V_TIMESTAMP(msg->km_timestamp_ms),
            RD_KAFKA_V_OPAQUE(msg->km_opaque), RD_KAFKA_V_END);
    return rd_kafka_producev(
        kp->kp_rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_PARTITION(partition),
        RD_KAFKA_V_KEY(msg->km_key, msg->km_key_len), RD_KAFKA_V_VALUE(value, msg->km_value_len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(msg->km_headers),
        RD_KAFKA_V_TIMESTAMP(msg->km_timestamp_ms), RD_KAFKA_V_OPAQUE(msg->km_opaque),
        RD_KAFKA_V_END);
}

/* Records why a send was refused and maps the code. */
static int send_failed(kprod_t *kp, const char *topic, rd_kafka_resp_err_t err)
{
    char reason[256];
    if (err == RD_KAFKA_RESP_ERR__FATAL && kprod_fatal(kp, reason, sizeof(reason))) {
        record_error(kp, "fatal producer error", reason);
        return RM_EKAFKA;
    }
    record_error(kp, topic, rd_kafka_err2str(err));
    return kafka_err(err);
}

static int send_msg(kprod_t *kp, const kprod_msg_t *msg, bool wait_when_full)
{
    rd_kafka_topic_t *rkt = topic_handle(kp, msg->km_topic);
    for (;;) {
        rd_kafka_resp_err_t err = produce(kp, rkt, msg);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
            return 0;
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            return send_failed(kp, msg->km_topic, err);
        if (!wait_when_full)
            return RM_EBUSY;
        rd_kafka_poll(kp->kp_rk, KPROD_QUEUE_FULL_WAIT_MS);
    }
}

int kprod_send(kprod_t *kp, const kprod_msg_t *msg)
{
    return send_msg(kp, msg, true);
}

int kprod_try_send(kprod_t *kp, const kprod_msg_t *msg)
{
    return send_msg(kp, msg, false);
}

void kprod_poll(kprod_t *kp)
{
    rd_kafka_poll(kp->kp_rk, 0);
}

int kprod_flush(kprod_t *kp, int timeout_ms)
{
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : rm_mono_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - rm_mono_ms();
        int step = left < 0 ? 0 : left > KPROD_FLUSH_STEP_MS ? KPROD_FLUSH_STEP_MS : (int)left;
        rd_kafka_flush(kp->kp_rk, step);
        char reason[256];
        if (kprod_fatal(kp, reason, sizeof(reason))) {
            record_error(kp, "fatal producer error", reason);
            return RM_EKAFKA;
        }
        if (rd_kafka_outq_len(kp->kp_rk) == 0)
            return 0;
        if (rm_mono_ms() >= deadline)
            return RM_ETIMEOUT;
    }
}

uint64_t kprod_queued(kprod_t *kp)
{
    int len = rd_kafka_outq_len(kp->kp_rk);
    return len > 0 ? (uint64_t)len : 0;
}

uint64_t kprod_delivered(const kprod_t *kp)
{
    return kp->kp_delivered;
}

uint64_t kprod_failed(const kprod_t *kp)
{
    return kp->kp_failed;
}

const char *kprod_error(const kprod_t *kp)
{
    return kp->kp_error[0] ? kp->kp_error : NULL;
}

const char *kprod_last_error(const kprod_t *kp)
{
    return kp->kp_last_error[0] ? kp->kp_last_error : NULL;
}

int kprod_fatal(kprod_t *kp, char *reason, size_t reason_len)
{
    return rd_kafka_fatal_error(kp->kp_rk, reason, reason_len) ? RM_EKAFKA : 0;
}

rd_kafka_t *kprod_rk(kprod_t *kp)
{
    return kp->kp_rk;
}
