/* cfg: the one configuration of every program — file, environment, flags.
 *
 * Config is data (docs/style.md): one table in cfg.c describes every key (name, type,
 * default, environment variable, help); parsing, validation and --help output are
 * generated from it. Precedence: a flag beats an environment variable beats the
 * config file beats the default.
 *
 * The file is YAML. Keys are nested maps (`projector: {batch_max_events: 5000}`)
 * addressed as dotted names ("projector.batch_max_events"). The `kafka:` map is
 * passed through verbatim to librdkafka (any property), e.g.
 *   kafka: {bootstrap.servers: "127.0.0.1:9092", fetch.wait.max.ms: 10}
 * (values must be scalars; a top-level `kafka.client.id: x` works too).
 * Environment: each table key has a variable (RM_DATA_DIR, ...); and any librdkafka
 * property P can be set with RM_KAFKA_<P upper-cased, '.' -> '_'>
 * (RM_KAFKA_BOOTSTRAP_SERVERS -> bootstrap.servers).
 *
 * Errors name the file, the line and the key: "etc/p.yaml:7: projector.batch_max_ms:
 * expected an integer between 1 and 60000, got 'soon'"; from the environment the variable
 * replaces file:line ("RM_BATCH_MAX_MS: expected ..."). Unknown keys are errors (typos must
 * not be silently ignored). Integer keys have a range and enum keys a set of values, both
 * printed by cfg_print_help(). A cfg_t is modified only while the program starts
 * (cfg_load, then cfg_set for flags, on one thread); afterwards it is immutable and may be
 * read from any thread. */
#ifndef RM_CFG_H
#define RM_CFG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct cfg cfg_t;

/* Every key of the table (defaults in parentheses):
 *   data_dir                  (./data)        RM_DATA_DIR      root of the view stores
 *   view                      (schemas/views/customer360.yaml) RM_VIEW  view definition
 *   catalog                   (schemas/catalog.yaml)           RM_CATALOG schema catalog
 *   schema_registry.url       ("")            RM_SCHEMA_REGISTRY_URL  writer ids from a registry
 *   schema_registry.username, .password, .ca_file, .timeout_ms (5000), .subject_naming
 *                             (topic|record|topic_record): RM_SCHEMA_REGISTRY_<KEY>
 *   log.level                 (info)          RM_LOG_LEVEL     debug|info|warn|error
 *   log.format                (auto)          RM_LOG_FORMAT    auto|json|text
 *   projector.batch_max_events (10000)        RM_BATCH_MAX_EVENTS  group commit: events per txn
 *   projector.batch_max_ms    (20)            RM_BATCH_MAX_MS  group commit: max wait
 *   projector.durability      (periodic)      RM_DURABILITY    sync|nometasync|periodic
 *   projector.sync_interval_ms (1000)         RM_SYNC_INTERVAL_MS  periodic mode's fsync period
 *   projector.map_size_mb     (1024)          RM_MAP_SIZE_MB   initial LMDB map size
 *   projector.metadata_refresh_ms (10000)     RM_METADATA_REFRESH_MS  new-partition discovery
 *   projector.metrics_listen  (127.0.0.1:9464) RM_METRICS_LISTEN  "" disables
 *   projector.on_gap          (stop)          RM_ON_GAP        stop|continue
 *   projector.parked_max_age_s (86400)        RM_PARKED_MAX_AGE_S  link-timeout for parked events
 *   projector.parked_check_interval_ms (10000) RM_PARKED_CHECK_INTERVAL_MS  how often it is checked
 *   projector.max_message_bytes (1048576)     RM_MAX_MESSAGE_BYTES  larger ones are dead letters
 *   projector.keep_generations (2)            RM_KEEP_GENERATIONS  generations kept (gen.h)
 *   query_api.listen          (127.0.0.1:8080) RM_LISTEN       address:port
 *   query_api.threads         (2)             RM_HTTP_THREADS  worker threads
 *   query_api.max_connections (4096)          RM_MAX_CONNECTIONS
 *   query_api.timeout_s       (30)            RM_HTTP_TIMEOUT_S  idle connection timeout
 *   query_api.consistency_wait_ms (2000)      RM_CONSISTENCY_WAIT_MS  min_offsets wait bound
 *   query_api.consistency_max_waiters (1)     RM_CONSISTENCY_MAX_WAITERS  concurrent waits
 *   query_api.reconcile_report ("")          RM_RECONCILE_REPORT  last reconcile summary shown
 *   query_api.max_url_bytes   (4096)          RM_MAX_URL_BYTES  longer: 414
 *   query_api.max_header_bytes (16384)        RM_MAX_HEADER_BYTES  larger: 431
 *   query_api.tls.*           cert_file, key_file (both or neither: HTTPS), client_ca_file
 *                             (client certificates required), priorities (TLS >= 1.2)
 *   query_api.auth.*          enabled (on), policy, open_routes, issuer, audience,
 *                             leeway_s, hs256_secret_file, hs256_secret, hs256_kid,
 *                             jwt_keys, roles_claim, cache_entries (docs/query-api.md)
 *   query_api.audit.*         file (-), hmac_key_file, hmac_key
 *   query_api.rate_limit.*    ip_rps (0: off), ip_burst, principal_rps, principal_burst
 *   query_api.live_urls       ("")            RM_LIVE_URLS     name=URL,... of live services
 *   query_api.live_breaker_failures (5)       RM_LIVE_BREAKER_FAILURES  failures that open it
 *   query_api.live_breaker_cooldown_ms (5000) RM_LIVE_BREAKER_COOLDOWN_MS  open before a trial
 *   reconcile.source_urls     ("")            RM_SOURCE_URLS   name=URL,... of source services
 *   reconcile.concurrency     (8)             RM_RECONCILE_CONCURRENCY  requests in flight
 *   reconcile.rate_limit      (200)           RM_RECONCILE_RATE_LIMIT  requests started per second
 *   reconcile.timeout_ms      (2000)          RM_RECONCILE_TIMEOUT_MS  per-request deadline
 *   reconcile.retries         (3)             RM_RECONCILE_RETRIES  retries with backoff
 *   reconcile.freshness_budget_ms (60000)     RM_FRESHNESS_BUDGET_MS  "not yet projected" window
 */

typedef enum cfg_type { CFG_STRING, CFG_INT, CFG_ENUM } cfg_type_t;

/* Loads defaults, then path (NULL: no file), then the environment.
 * Returns NULL on error with "file:line: key: problem" (or "RM_VAR: problem") in errstr.
 * The caller owns the result; free it with cfg_destroy() (NULL-safe). */
cfg_t *cfg_load(const char *path, char *errstr, size_t errlen);
void cfg_destroy(cfg_t *cfg);

/* Sets key=value as a flag would (highest precedence). key is a table key or
 * "kafka.<property>". Returns 0, or RM_ECONFIG (RM_ENOMEM) with "key: problem" in errstr;
 * a rejected value leaves the previous one in place. */
int cfg_set(cfg_t *cfg, const char *key, const char *value, char *errstr, size_t errlen);
/* Parses "key=value" (as given to --set / -X) and calls cfg_set. */
int cfg_set_pair(cfg_t *cfg, const char *pair, char *errstr, size_t errlen);

/* Typed getters for table keys. Asking for an unknown key or the wrong type is a
 * programmer error (assert). Strings are owned by cfg. */
const char *cfg_str(const cfg_t *cfg, const char *key);
int64_t cfg_int(const cfg_t *cfg, const char *key);

/* librdkafka passthrough properties, in the order they were set (file, env, flags;
 * a later set of the same name replaces the value in place). */
size_t cfg_kafka_count(const cfg_t *cfg);
const char *cfg_kafka_name(const cfg_t *cfg, size_t index);
const char *cfg_kafka_value(const cfg_t *cfg, size_t index);
/* Value of one kafka property, or NULL when not set. */
const char *cfg_kafka_get(const cfg_t *cfg, const char *name);

/* Where a key's value came from: "default", "env RM_X", "flag", or "file:line". key may
 * also be "kafka.<property>"; then NULL means the property is not set. Owned by cfg. */
const char *cfg_origin(const cfg_t *cfg, const char *key);

/* Prints the table (key, default, env var, help) for --help, keys starting with
 * prefix (NULL or "" for all), indented for a usage text. */
void cfg_print_help(FILE *out, const char *prefix);

#endif
