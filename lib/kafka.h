/* kafka: librdkafka configuration from the project config, and small shared helpers.
 *
 * Every librdkafka property can be set from config (cfg.h `kafka:` map, RM_KAFKA_*
 * environment, -X flags); programs pass their own defaults, which config overrides. */
#ifndef RM_KAFKA_H
#define RM_KAFKA_H

#include "cfg.h"

#include <librdkafka/rdkafka.h>
#include <signal.h>

/* Builds a conf: first defaults (pairs name, value, ..., terminated by NULL), then every
 * kafka property of cfg (cfg may be NULL). Returns NULL with "kafka.<name>: problem"
 * in errstr. The caller owns the conf (rd_kafka_new takes it over on success). */
rd_kafka_conf_t *kafka_conf_new(const cfg_t *cfg, const char *const *defaults, char *errstr,
                                size_t errlen);

/* Checks that a client built from cfg can log in to the cluster, for up to timeout_ms:
 * returns RM_ECONFIG with the broker's reason in errstr when the login is refused
 * (RD_KAFKA_RESP_ERR__AUTHENTICATION: wrong credentials or mechanism) or TLS fails
 * (RD_KAFKA_RESP_ERR__SSL: an untrusted or mismatched certificate), which no retry
 * fixes; 0 once metadata arrives, or when the time runs out without either (a broker
 * that is down is the callers' retry loops' business); RM_ECONFIG for a property
 * librdkafka refuses. Blocks up to timeout_ms, or until *stop is set (stop may be NULL;
 * a signal handler sets it): then 0 within a few hundred ms, as when the time runs out. */
int kafka_check_login(const cfg_t *cfg, int timeout_ms, volatile sig_atomic_t *stop, char *errstr,
                      size_t errlen);

/* Maps a librdkafka error to rm_err_t. */
int kafka_err(rd_kafka_resp_err_t err);

#endif
