/* http_logend: partition log ends from Kafka, remembered (see http_logend.h). */
#include "http_logend.h"
#include "kafka.h"
#include "log.h"
#include "rm_err.h"
#include "view.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Partitions remembered: a view consumes a few topics of a few dozen partitions; past
 * this the oldest entry is replaced (it is only a cache of a value Kafka can give again). */
#define HTTP_LOGEND_SLOTS 512

typedef struct logend_slot {
    char ls_topic[VIEW_NAME_MAX_BYTES + 1]; /* "": free */
    int32_t ls_partition;
    int64_t ls_end; /* highest log end seen */
} logend_slot_t;

struct http_logend {
    const cfg_t *le_cfg;
    rd_kafka_t *le_rk; /* created on the first question (note 1), under le_lock */
    bool le_failed;    /* its creation failed: not tried again */
    pthread_mutex_t le_lock;
    logend_slot_t le_slots[HTTP_LOGEND_SLOTS];
    size_t le_next_victim;
};

http_logend_t *http_logend_new(const cfg_t *cfg, char *errstr, size_t errlen)
{
    http_logend_t *logend = calloc(1, sizeof(*logend));
    if (!logend) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&logend->le_lock, NULL);
    logend->le_cfg = cfg;
    rd_kafka_conf_t *conf = kafka_conf_new(cfg, NULL, errstr, errlen);
    if (!conf) {
        http_logend_destroy(logend);
        return NULL;
    }
    rd_kafka_conf_destroy(conf);
    return logend;
}

/* The client, created on the first call (note 1); NULL when it cannot be. */
static rd_kafka_t *client(http_logend_t *logend)
{
    pthread_mutex_lock(&logend->le_lock);
    if (!logend->le_rk && !logend->le_failed) {
        /* No group: this client only asks for watermarks, it never consumes or commits. */
        static const char *const defaults[] = {"client.id", "readmodel-query-api", NULL};
        char errstr[512] = "";
        rd_kafka_conf_t *conf = kafka_conf_new(logend->le_cfg, defaults, errstr, sizeof(errstr));
        if (conf &&
            !(logend->le_rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr))))
            rd_kafka_conf_destroy(conf);
        if (!logend->le_rk) {
            logend->le_failed = true;
            log_warn("no Kafka client for consistency tokens: tokens past the store's high "
                     "watermark are waited for, not checked against the log end",
                     LOG_S("error", errstr));
        }
    }
    rd_kafka_t *rk = logend->le_rk;
    pthread_mutex_unlock(&logend->le_lock);
    return rk;
}

void http_logend_destroy(http_logend_t *logend)
{
    if (!logend)
        return;
    if (logend->le_rk)
        rd_kafka_destroy(logend->le_rk);
    pthread_mutex_destroy(&logend->le_lock);
    free(logend);
}

/* The slot of topic/partition, or NULL. Under le_lock. */
static logend_slot_t *slot_of(http_logend_t *logend, const char *topic, int32_t partition)
{
    for (size_t i = 0; i < HTTP_LOGEND_SLOTS && logend->le_slots[i].ls_topic[0]; i++)
        if (logend->le_slots[i].ls_partition == partition &&
            strcmp(logend->le_slots[i].ls_topic, topic) == 0)
            return &logend->le_slots[i];
    return NULL;
}

static int64_t remembered_end(http_logend_t *logend, const char *topic, int32_t partition)
{
    pthread_mutex_lock(&logend->le_lock);
    const logend_slot_t *slot = slot_of(logend, topic, partition);
    int64_t end = slot ? slot->ls_end : 0;
    pthread_mutex_unlock(&logend->le_lock);
    return end;
}

static void remember_end(http_logend_t *logend, const char *topic, int32_t partition, int64_t end)
{
    pthread_mutex_lock(&logend->le_lock);
    logend_slot_t *slot = slot_of(logend, topic, partition);
    if (!slot) {
        size_t i = 0;
        while (i < HTTP_LOGEND_SLOTS && logend->le_slots[i].ls_topic[0])
            i++;
        if (i == HTTP_LOGEND_SLOTS) { /* full: replace in turn */
            i = logend->le_next_victim;
            logend->le_next_victim = (i + 1) % HTTP_LOGEND_SLOTS;
        }
        slot = &logend->le_slots[i];
        snprintf(slot->ls_topic, sizeof(slot->ls_topic), "%s", topic);
        slot->ls_partition = partition;
        slot->ls_end = 0;
    }
    if (end > slot->ls_end)
        slot->ls_end = end;
    pthread_mutex_unlock(&logend->le_lock);
}

int http_logend_exists(http_logend_t *logend, const char *topic, int32_t partition, int64_t offset,
                       int64_t known_end, int timeout_ms, bool *ret_exists)
{
    if (offset < known_end || offset < remembered_end(logend, topic, partition)) {
        *ret_exists = true;
        return 0;
    }
    rd_kafka_t *rk = client(logend);
    if (!rk)
        return RM_EKAFKA;
    int64_t low = 0, high = 0;
    rd_kafka_resp_err_t err =
        rd_kafka_query_watermark_offsets(rk, topic, partition, &low, &high, timeout_ms);
    if (err)
        return kafka_err(err);
    remember_end(logend, topic, partition, high);
    *ret_exists = offset < high;
    return 0;
}
