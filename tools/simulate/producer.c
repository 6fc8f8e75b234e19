/* producer: the simulator's sends through kprod, with the replay settings (producer.h). */
#include "producer.h"
#include "log.h"
#include "rm_err.h"
#include "rm_time.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct producer {
    kprod_t *pr_kprod;
    const char *pr_only_topics; /* producer_set_replay; NULL: every topic */
    int64_t pr_timestamp_offset_ms; /* producer_set_replay; 0: librdkafka's timestamps */
};

/* librdkafka's own log lines go through log.h, so stderr keeps one format. Levels are
 * syslog's: 0-4 (emerg..warning) are warnings for us, the rest debug. Transient errors
 * (a broker down) arrive here too, as "ERROR" lines: librdkafka retries them. */
static void on_log(const rd_kafka_t *rk, int level, const char *facility, const char *message)
{
    (void)rk;
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
    rd_kafka_conf_set_log_cb(conf, on_log);
    producer->pr_kprod = kprod_new(conf, kprod_report_ack, NULL, errstr, errlen);
    if (!producer->pr_kprod) {
        free(producer);
        return NULL;
    }
    return producer;
}

void producer_destroy(producer_t *producer)
{
    if (!producer)
        return;
    kprod_destroy(producer->pr_kprod, 0, false);
    free(producer);
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

int producer_send_acked(producer_t *producer, const char *topic, const void *key, size_t key_len,
                        const void *value, size_t value_len, kprod_ack_t *ack)
{
    if (producer->pr_only_topics && !topic_listed(producer->pr_only_topics, topic)) {
        if (ack)
            *ack = (kprod_ack_t){-1, -1, 0, true};
        return 0;
    }
    kprod_msg_t msg = {
        .km_topic = topic,
        .km_key = key,
        .km_key_len = key_len,
        .km_value = value,
        .km_value_len = value_len,
        .km_timestamp_ms =
            producer->pr_timestamp_offset_ms ? rm_wall_ms() - producer->pr_timestamp_offset_ms : 0,
        .km_opaque = ack,
    };
    return kprod_send(producer->pr_kprod, &msg);
}

int producer_flush(producer_t *producer)
{
    int rc = kprod_flush(producer->pr_kprod, -1);
    return rc || kprod_failed(producer->pr_kprod) ? RM_EKAFKA : 0;
}

kprod_t *producer_kprod(producer_t *producer)
{
    return producer->pr_kprod;
}
