/* kafka: librdkafka configuration built from defaults plus the project config. */
#include "kafka.h"
#include "log.h"
#include "rm_err.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

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
    log_level_t mapped = level <= 3   ? LOG_ERROR
                         : level == 4 ? LOG_WARN
                         : level <= 6 ? LOG_INFO
                                      : LOG_DEBUG;
    if (!log_enabled(mapped))
        return;
    log_field_t fields[] = {LOG_S("client", rk ? rd_kafka_name(rk) : NULL),
                            LOG_S("facility", facility)};
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

/* What the login check's error callback saw first. */
typedef struct {
    rd_kafka_resp_err_t kl_err;
    char kl_reason[512];
} kafka_login_t;

static void kafka_login_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    kafka_login_t *login = opaque;
    if (login->kl_err == RD_KAFKA_RESP_ERR_NO_ERROR &&
        (err == RD_KAFKA_RESP_ERR__AUTHENTICATION || err == RD_KAFKA_RESP_ERR__SSL)) {
        login->kl_err = err;
        snprintf(login->kl_reason, sizeof(login->kl_reason), "%s", reason);
    }
}

static long long kafka_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int kafka_check_login(const cfg_t *cfg, int timeout_ms, volatile sig_atomic_t *stop, char *errstr,
                      size_t errlen)
{
    /* A producer: it joins no group and fetches nothing; only its connection matters. */
    static const char *const defaults[] = {"log_level", "0", NULL};
    kafka_login_t login = {.kl_err = RD_KAFKA_RESP_ERR_NO_ERROR};
    rd_kafka_conf_t *conf = kafka_conf_new(cfg, defaults, errstr, errlen);
    if (!conf)
        return RM_ECONFIG;
    /* The caller's own clients log the broker's failures; this one stays quiet. */
    rd_kafka_conf_set_log_cb(conf, NULL);
    rd_kafka_conf_set_error_cb(conf, kafka_login_error);
    rd_kafka_conf_set_opaque(conf, &login);
    char rkerr[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, rkerr, sizeof(rkerr));
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errlen, "kafka producer: %s", rkerr);
        return RM_ECONFIG;
    }
    long long deadline = kafka_now_ms() + timeout_ms;
    int rc = 0;
    for (;;) {
        /* Short metadata requests, polled in between: the error callback only runs
         * from rd_kafka_poll. */
        const struct rd_kafka_metadata *md = NULL;
        if (rd_kafka_metadata(rk, 0, NULL, &md, 200) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            rd_kafka_metadata_destroy(md);
            break;
        }
        rd_kafka_poll(rk, 50);
        if (login.kl_err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(errstr, errlen, "%s: %s",
                     login.kl_err == RD_KAFKA_RESP_ERR__SSL ? "TLS failed" : "login refused",
                     login.kl_reason);
            rc = RM_ECONFIG;
            break;
        }
        if (kafka_now_ms() >= deadline || (stop && *stop))
            break;
    }
    rd_kafka_destroy(rk);
    return rc;
}

int kafka_err(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return RM_OK;
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
        return RM_ETIMEOUT;
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
        return RM_ENOTFOUND;
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
        return RM_EINVAL;
    default:
        return RM_EKAFKA;
    }
}
