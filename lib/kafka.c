/* kafka: librdkafka configuration built from defaults plus the project config. */
#include "kafka.h"
#include "log.h"
#include "rm_err.h"

#include <stdio.h>

static int conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, char *errstr,
                    size_t errlen)
{
    char rkerr[256];
    if (rd_kafka_conf_set(conf, name, value, rkerr, sizeof(rkerr)) != RD_KAFKA_CONF_OK) {
        snprintf(errstr, errlen, "kafka.%s: %s", name, rkerr);
        return RM_ECONFIG;
    }
    return 0;
}

/* librdkafka's own log lines go through log.c, so stderr stays one JSON object per
 * line (syslog levels: 0-3 error, 4 warning, 5-6 info, 7 debug). */
static void kafka_log(const rd_kafka_t *rk, int level, const char *facility, const char *message)
{
    log_level_t mapped = level <= 3 ? LOG_ERROR : level == 4 ? LOG_WARN : level <= 6 ? LOG_INFO : LOG_DEBUG;
    if (!log_enabled(mapped))
        return;
    log_field_t fields[] = {LOG_S("client", rk ? rd_kafka_name(rk) : NULL), LOG_S("facility", facility)};
    log_emit(mapped, message, fields, 2);
}

rd_kafka_conf_t *kafka_conf_new(const cfg_t *cfg, const char *const *defaults, char *errstr,
                                size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, kafka_log);
    for (size_t i = 0; defaults && defaults[i]; i += 2) {
        if (conf_set(conf, defaults[i], defaults[i + 1], errstr, errlen))
            goto fail;
    }
    for (size_t i = 0; cfg && i < cfg_kafka_count(cfg); i++) {
        if (conf_set(conf, cfg_kafka_name(cfg, i), cfg_kafka_value(cfg, i), errstr, errlen))
            goto fail;
    }
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

int kafka_err(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR: return RM_OK;
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT: return RM_ETIMEOUT;
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART: return RM_ENOTFOUND;
    case RD_KAFKA_RESP_ERR__INVALID_ARG: return RM_EINVAL;
    default: return RM_EKAFKA;
    }
}
