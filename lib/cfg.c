/* cfg: the configuration table and its loaders (defaults, YAML file, environment, flags).
 *
 * Every source goes through one validator (set_key), so a value is checked the same way
 * whether it came from the file, the environment or a flag; only the prefix of the
 * error message (file:line, variable name, key) differs. */
#include "cfg.h"
#include "rm_err.h"
#include "yml.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

#define CFG_KAFKA_PREFIX "kafka."
#define CFG_KAFKA_ENV_PREFIX "RM_KAFKA_"
#define CFG_PROBLEM_MAX 256

typedef struct cfg_key {
    const char *ck_name;
    const char *ck_default;
    const char *ck_env;
    const char *ck_help;
    int64_t ck_min; /* CFG_INT */
    int64_t ck_max; /* CFG_INT */
    const char *ck_values; /* CFG_ENUM: allowed values, '|'-separated */
    cfg_type_t ck_type;
    bool ck_allow_empty; /* CFG_STRING */
} cfg_key_t;

#define CFG_STR(name, def, env, allow_empty, help)                                                 \
    {.ck_name = name,                                                                              \
     .ck_type = CFG_STRING,                                                                        \
     .ck_default = def,                                                                            \
     .ck_env = env,                                                                                \
     .ck_allow_empty = allow_empty,                                                                \
     .ck_help = help}
#define CFG_INTEGER(name, def, env, min, max, help)                                                \
    {.ck_name = name,                                                                              \
     .ck_type = CFG_INT,                                                                           \
     .ck_default = def,                                                                            \
     .ck_env = env,                                                                                \
     .ck_min = min,                                                                                \
     .ck_max = max,                                                                                \
     .ck_help = help}
#define CFG_CHOICE(name, def, env, values, help)                                                   \
    {.ck_name = name,                                                                              \
     .ck_type = CFG_ENUM,                                                                          \
     .ck_default = def,                                                                            \
     .ck_env = env,                                                                                \
     .ck_values = values,                                                                          \
     .ck_help = help}

/* TLS 1.2 and 1.3 only, forward-secret key exchange and AEAD ciphers only (what Mozilla's
 * "intermediate" profile allows); GnuTLS's NORMAL still offers TLS 1.0/1.1, RSA key
 * exchange and CBC ciphers. */
#define CFG_TLS_PRIORITIES                                                                         \
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:-CIPHER-ALL:"      \
    "+AES-256-GCM:+AES-128-GCM:+CHACHA20-POLY1305"

/* Upper bounds exist so that deadline arithmetic (now_ms() + value) and size shifts
 * (map_size_mb << 20) can never overflow; they are far above any sensible setting. */
static const cfg_key_t cfg_keys[] = {
    CFG_STR("data_dir", "./data", "RM_DATA_DIR", false, "root directory of the view stores"),
    CFG_STR("view", "schemas/views/customer360.yaml", "RM_VIEW", false, "view definition file"),
    CFG_STR("catalog", "schemas/catalog.yaml", "RM_CATALOG", false, "schema catalog file"),
    /* A Confluent-compatible schema registry (registry.h); empty: the catalog's ids only. */
    CFG_STR("schema_registry.url", "", "RM_SCHEMA_REGISTRY_URL", true,
            "schema registry base URL (http:// or https://); writer ids then come from it, "
            "the catalog's files stay the reader schemas; empty: offline, catalog ids"),
    CFG_STR("schema_registry.username", "", "RM_SCHEMA_REGISTRY_USERNAME", true,
            "schema registry basic auth user (empty: none)"),
    CFG_STR("schema_registry.password", "", "RM_SCHEMA_REGISTRY_PASSWORD", true,
            "schema registry basic auth password: set it in the environment, not in a file"),
    CFG_STR("schema_registry.ca_file", "", "RM_SCHEMA_REGISTRY_CA_FILE", true,
            "PEM CA bundle to verify an https registry (empty: the system's)"),
    CFG_INTEGER("schema_registry.timeout_ms", "5000", "RM_SCHEMA_REGISTRY_TIMEOUT_MS", 100, 600000,
                "one registry request's deadline (a slower answer counts as an outage)"),
    CFG_CHOICE("schema_registry.subject_naming", "topic", "RM_SCHEMA_REGISTRY_SUBJECT_NAMING",
               "topic|record|topic_record",
               "producers' subject naming strategy: <topic>-value, <record full name>, or "
               "<topic>-<record full name>"),
    CFG_CHOICE("log.level", "info", "RM_LOG_LEVEL", "debug|info|warn|error", "lowest level logged"),
    CFG_CHOICE("log.format", "auto", "RM_LOG_FORMAT", "auto|json|text",
               "auto: text on a terminal, JSON lines otherwise"),
    /* 50,000: a backlog of 100k customers projects ~20% faster than with 10,000 (fewer
     * copy-on-write pages written per event, docs/design.md §6); in live traffic a
     * batch closes when the consumer queue is empty, so only a backlog fills one. */
    CFG_INTEGER("projector.batch_max_events", "50000", "RM_BATCH_MAX_EVENTS", 1, 1000000,
                "group commit: most events applied in one transaction"),
    CFG_INTEGER("projector.batch_max_ms", "20", "RM_BATCH_MAX_MS", 1, 60000,
                "group commit: longest a batch stays open (it closes earlier, as soon as "
                "the consumer queue is empty)"),
    CFG_CHOICE("projector.durability", "periodic", "RM_DURABILITY", "sync|nometasync|periodic",
               "when the live generation's commits reach the disk (a rebuild writes its new "
               "one periodic); docs say what each mode survives"),
    CFG_INTEGER("projector.sync_interval_ms", "1000", "RM_SYNC_INTERVAL_MS", 1, 3600000,
                "periodic durability: fsync period (on the store's own thread)"),
    CFG_INTEGER("projector.map_size_mb", "1024", "RM_MAP_SIZE_MB", 1, 16777216,
                "initial LMDB map size (grown on demand)"),
    CFG_INTEGER("projector.metadata_refresh_ms", "10000", "RM_METADATA_REFRESH_MS", 100, 3600000,
                "how often new partitions are looked for"),
    CFG_STR("projector.metrics_listen", "127.0.0.1:9464", "RM_METRICS_LISTEN", true,
            "metrics address:port; empty disables"),
    CFG_CHOICE("projector.on_gap", "stop", "RM_ON_GAP", "stop|continue",
               "a stored offset below the log start (data deleted unseen): stop, or record "
               "the gap and continue from the log start"),
    CFG_INTEGER("projector.parked_max_age_s", "86400", "RM_PARKED_MAX_AGE_S", 1, 31536000,
                "events waiting for a link longer than this are dead-lettered (link-timeout)"),
    CFG_INTEGER("projector.parked_check_interval_ms", "10000", "RM_PARKED_CHECK_INTERVAL_MS", 100,
                3600000, "how often parked events are checked against parked_max_age_s"),
    CFG_INTEGER("projector.max_message_bytes", "1048576", "RM_MAX_MESSAGE_BYTES", 64, 104857600,
                "larger messages are dead-lettered"),
    CFG_STR("projector.erasures_topic", "", "RM_ERASURES_TOPIC", true,
            "compacted topic the view's erasures are replicated through; empty: "
            "<view>.erasures"),
    CFG_INTEGER("projector.keep_generations", "2", "RM_KEEP_GENERATIONS", 1, 1000,
                "store generations kept after a rebuild switch: current, previous, newest others"),
    CFG_STR("query_api.listen", "127.0.0.1:8080", "RM_LISTEN", false, "HTTP address:port"),
    CFG_INTEGER("query_api.threads", "2", "RM_HTTP_THREADS", 1, 256, "HTTP worker threads"),
    CFG_INTEGER("query_api.max_connections", "4096", "RM_MAX_CONNECTIONS", 1, 1000000,
                "most concurrent HTTP connections"),
    CFG_INTEGER("query_api.timeout_s", "30", "RM_HTTP_TIMEOUT_S", 1, 86400,
                "idle HTTP connection timeout"),
    CFG_INTEGER("query_api.consistency_wait_ms", "2000", "RM_CONSISTENCY_WAIT_MS", 0, 60000,
                "longest wait of a view read for its min_offsets token (a wait_ms parameter "
                "may lower it); 0 never waits"),
    CFG_INTEGER("query_api.consistency_max_waiters", "1", "RM_CONSISTENCY_MAX_WAITERS", 0, 256,
                "view reads that may wait for a token at once (each holds an HTTP worker "
                "thread); beyond, they answer at once"),
    CFG_STR("query_api.reconcile_report", "", "RM_RECONCILE_REPORT", true,
            "the report `reconcile --report` writes: its summary is the dashboard's \"last "
            "reconciliation\" and /v1/status's reconcile; empty: not shown"),
    CFG_INTEGER("query_api.max_url_bytes", "4096", "RM_MAX_URL_BYTES", 256, 65536,
                "longest path plus query string; longer requests answer 414"),
    CFG_INTEGER("query_api.max_header_bytes", "16384", "RM_MAX_HEADER_BYTES", 1024, 65536,
                "largest sum of request header sizes; larger requests answer 431"),
    CFG_STR("query_api.tls.cert_file", "", "RM_TLS_CERT_FILE", true,
            "server certificate chain (PEM); with key_file the API serves HTTPS only on "
            "query_api.listen"),
    CFG_STR("query_api.tls.key_file", "", "RM_TLS_KEY_FILE", true,
            "private key of cert_file (PEM, unencrypted); needed with cert_file"),
    CFG_STR("query_api.tls.client_ca_file", "", "RM_TLS_CLIENT_CA_FILE", true,
            "CA certificates (PEM) client certificates must chain to; set: a connection "
            "without a valid client certificate is refused"),
    CFG_STR("query_api.tls.crl_file", "", "RM_TLS_CRL_FILE", true,
            "certificate revocation lists (PEM) signed by client_ca_file's CAs; a client "
            "certificate they list is refused (read at start: restart to refresh)"),
    CFG_STR("query_api.tls.priorities", CFG_TLS_PRIORITIES, "RM_TLS_PRIORITIES", false,
            "GnuTLS priority string: protocol versions, key exchanges and ciphers offered"),
    CFG_CHOICE("query_api.auth.enabled", "on", "RM_AUTH_ENABLED", "on|off",
               "on: view reads and lookups need a bearer JWT or an API key (deny by default); "
               "off: anyone reads everything unmasked (tests and local use only)"),
    CFG_STR("query_api.auth.policy", "", "RM_AUTH_POLICY", true,
            "roles and API keys (YAML; docs/query-api.md#security); needed when auth is on"),
    CFG_STR("query_api.auth.open_routes",
            "healthz,readyz,metrics,status,status_history,dashboard,openapi,ui",
            "RM_AUTH_OPEN_ROUTES", true,
            "routes served without credentials (no customer data behind them); empty "
            "closes them all"),
    CFG_STR("query_api.auth.issuer", "", "RM_JWT_ISSUER", true,
            "required `iss` of bearer tokens (needed when a JWT key is configured)"),
    CFG_STR("query_api.auth.audience", "", "RM_JWT_AUDIENCE", true,
            "required `aud` of bearer tokens (needed when a JWT key is configured)"),
    CFG_INTEGER("query_api.auth.leeway_s", "30", "RM_JWT_LEEWAY_S", 0, 300,
                "clock skew tolerated on exp and nbf"),
    CFG_STR("query_api.auth.hs256_secret_file", "", "RM_JWT_HS256_SECRET_FILE", true,
            "file holding the HS256 secret (>= 32 bytes); beats hs256_secret"),
    CFG_STR("query_api.auth.hs256_secret", "", "RM_JWT_HS256_SECRET", true,
            "the HS256 secret itself: set it in the environment, never in a config file"),
    CFG_STR("query_api.auth.hs256_kid", "", "RM_JWT_HS256_KID", true,
            "kid of the HS256 secret (empty: tokens without a kid)"),
    CFG_STR("query_api.auth.jwt_keys", "", "RM_JWT_KEYS", true,
            "public keys as kid:ALG:file.pem[,...], ALG RS256 or ES256"),
    CFG_STR("query_api.auth.roles_claim", "roles", "RM_JWT_ROLES_CLAIM", false,
            "token claim holding the caller's role names (string or array)"),
    CFG_INTEGER("query_api.auth.cache_entries", "4096", "RM_AUTH_CACHE_ENTRIES", 16, 1048576,
                "verified tokens remembered (by SHA-256) until they expire"),
    CFG_STR("query_api.audit.file", "-", "RM_AUDIT_FILE", true,
            "audit log of view reads and lookups (JSON lines): a path, '-' for stderr, "
            "empty for none"),
    CFG_STR("query_api.audit.hmac_key_file", "", "RM_AUDIT_HMAC_KEY_FILE", true,
            "key of the HMAC-SHA256 that hides customer ids in the audit log"),
    CFG_STR("query_api.audit.hmac_key", "", "RM_AUDIT_HMAC_KEY", true,
            "the audit HMAC key itself (environment only); neither set: a random key per run"),
    CFG_STR("query_api.cursor_key_file", "", "RM_CURSOR_KEY_FILE", true,
            "server key (at least 32 bytes) that seals page cursors; the same file on every "
            "replica behind one address, so a cursor from one is good at another"),
    CFG_STR("query_api.cursor_key", "", "RM_CURSOR_KEY", true,
            "the cursor key itself (environment only); neither set: a random key per run "
            "(cursors then die with the process and differ between replicas)"),
    CFG_INTEGER("query_api.audit.flush_ms", "20", "RM_AUDIT_FLUSH_MS", 0, 1000,
                "audit lines are written within this many ms of their request (one write "
                "per batch; a crash loses at most this window); 0: one write per line"),
    CFG_INTEGER("query_api.rate_limit.ip_rps", "0", "RM_RATE_LIMIT_IP_RPS", 0, 10000000,
                "requests per second per client address (token bucket); 0: no limit"),
    CFG_INTEGER("query_api.rate_limit.ip_burst", "200", "RM_RATE_LIMIT_IP_BURST", 1, 10000000,
                "bucket size of the per-address limit"),
    CFG_INTEGER("query_api.rate_limit.principal_rps", "0", "RM_RATE_LIMIT_PRINCIPAL_RPS", 0,
                10000000, "requests per second per authenticated caller; 0: no limit"),
    CFG_INTEGER("query_api.rate_limit.principal_burst", "200", "RM_RATE_LIMIT_PRINCIPAL_BURST", 1,
                10000000, "bucket size of the per-caller limit"),
    CFG_STR("query_api.live_urls", "", "RM_LIVE_URLS", true,
            "base URL of each service named in the view's live sections, as name=URL,... "
            "(e.g. risk=http://risk.internal:8080); a section whose service has none is "
            "served unavailable"),
    CFG_INTEGER("query_api.live_breaker_failures", "5", "RM_LIVE_BREAKER_FAILURES", 1, 1000000,
                "consecutive failed fetches of a live service that open its circuit breaker"),
    CFG_INTEGER("query_api.live_breaker_cooldown_ms", "5000", "RM_LIVE_BREAKER_COOLDOWN_MS", 1,
                86400000,
                "how long an open breaker answers 'circuit open' without calling, before one "
                "trial request"),
    CFG_STR("reconcile.source_urls", "", "RM_SOURCE_URLS", true,
            "base URL of each source service named in the view's sources, as "
            "name=URL,name=URL (e.g. customers=http://crm.internal:8080)"),
    CFG_INTEGER("reconcile.concurrency", "8", "RM_RECONCILE_CONCURRENCY", 1, 256,
                "source requests in flight at once"),
    CFG_INTEGER("reconcile.rate_limit", "200", "RM_RECONCILE_RATE_LIMIT", 0, 1000000,
                "most source requests started per second (protects the sources); 0: no limit"),
    CFG_INTEGER("reconcile.timeout_ms", "2000", "RM_RECONCILE_TIMEOUT_MS", 1, 600000,
                "deadline of one source request"),
    CFG_INTEGER("reconcile.retries", "3", "RM_RECONCILE_RETRIES", 0, 20,
                "retries of a failed source request (5xx, timeout, connection), with "
                "exponential backoff and jitter; 4xx other than 429 is not retried"),
    CFG_INTEGER("reconcile.freshness_budget_ms", "60000", "RM_FRESHNESS_BUDGET_MS", 0, 86400000,
                "a difference where the source changed after the store's event time and less "
                "than this long ago is 'not yet projected', not drift"),
};
#define CFG_KEY_COUNT (sizeof(cfg_keys) / sizeof(cfg_keys[0]))

typedef struct cfg_value {
    char *cv_text; /* the value as given (canonical for ints after parsing) */
    int64_t cv_int; /* CFG_INT */
    char *cv_origin; /* "default", "env RM_X", "flag" or "file:line" */
} cfg_value_t;

typedef struct cfg_kafka_prop {
    char *kp_name;
    char *kp_value;
    char *kp_origin;
} cfg_kafka_prop_t;

struct cfg {
    cfg_value_t cf_values[CFG_KEY_COUNT]; /* parallel to cfg_keys */
    cfg_kafka_prop_t *cf_kafka;
    size_t cf_kafka_count;
    size_t cf_kafka_cap;
};

static const cfg_key_t *find_key(const char *name)
{
    for (size_t i = 0; i < CFG_KEY_COUNT; i++)
        if (strcmp(cfg_keys[i].ck_name, name) == 0)
            return &cfg_keys[i];
    return NULL;
}

static bool enum_allows(const char *values, const char *text)
{
    size_t len = strlen(text);
    for (const char *p = values; *p;) {
        const char *end = strchr(p, '|');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == len && strncmp(p, text, n) == 0)
            return true;
        p += n + (end ? 1 : 0);
    }
    return false;
}

/* Checks text against key's type; on success stores *ret_int (CFG_INT). On failure
 * writes the problem ("expected ..., got '...'") and returns RM_ECONFIG. */
static int validate(const cfg_key_t *key, const char *text, int64_t *ret_int, char *problem,
                    size_t cap)
{
    switch (key->ck_type) {
    case CFG_STRING:
        if (!key->ck_allow_empty && *text == '\0') {
            snprintf(problem, cap, "expected a non-empty string");
            return RM_ECONFIG;
        }
        return 0;
    case CFG_ENUM:
        if (!enum_allows(key->ck_values, text)) {
            snprintf(problem, cap, "expected one of %s, got '%s'", key->ck_values, text);
            return RM_ECONFIG;
        }
        return 0;
    case CFG_INT: {
        char *end;
        errno = 0;
        long long value = strtoll(text, &end, 10);
        if (errno || end == text || *end || value < key->ck_min || value > key->ck_max) {
            snprintf(problem, cap, "expected an integer between %lld and %lld, got '%s'",
                     (long long)key->ck_min, (long long)key->ck_max, text);
            return RM_ECONFIG;
        }
        *ret_int = value;
        return 0;
    }
    }
    assert(!"unknown cfg type");
    return RM_ECONFIG;
}

static int replace_str(char **slot, const char *text)
{
    char *copy = strdup(text);
    if (!copy)
        return RM_ENOMEM;
    free(*slot);
    *slot = copy;
    return 0;
}

/* Validates and stores one table value. The value is untouched on failure. */
static int set_key(cfg_t *cfg, const cfg_key_t *key, const char *text, const char *origin,
                   char *problem, size_t cap)
{
    cfg_value_t *value = &cfg->cf_values[key - cfg_keys];
    int64_t parsed = 0;
    int rc = validate(key, text, &parsed, problem, cap);
    if (rc)
        return rc;
    if (replace_str(&value->cv_text, text) || replace_str(&value->cv_origin, origin)) {
        snprintf(problem, cap, "out of memory");
        return RM_ENOMEM;
    }
    value->cv_int = parsed;
    return 0;
}

/* Sets a librdkafka property; a second set of one name replaces its value in place. */
static int set_kafka(cfg_t *cfg, const char *name, const char *text, const char *origin,
                     char *problem, size_t cap)
{
    if (*name == '\0') {
        snprintf(problem, cap, "empty librdkafka property name");
        return RM_ECONFIG;
    }
    cfg_kafka_prop_t *prop = NULL;
    for (size_t i = 0; i < cfg->cf_kafka_count && !prop; i++)
        if (strcmp(cfg->cf_kafka[i].kp_name, name) == 0)
            prop = &cfg->cf_kafka[i];
    if (!prop) {
        if (cfg->cf_kafka_count == cfg->cf_kafka_cap) {
            size_t new_cap = cfg->cf_kafka_cap ? 2 * cfg->cf_kafka_cap : 16;
            cfg_kafka_prop_t *grown = realloc(cfg->cf_kafka, new_cap * sizeof(*grown));
            if (!grown)
                goto oom;
            cfg->cf_kafka = grown;
            cfg->cf_kafka_cap = new_cap;
        }
        prop = &cfg->cf_kafka[cfg->cf_kafka_count];
        memset(prop, 0, sizeof(*prop));
        if (replace_str(&prop->kp_name, name))
            goto oom;
        cfg->cf_kafka_count++;
    }
    if (replace_str(&prop->kp_value, text) || replace_str(&prop->kp_origin, origin))
        goto oom;
    return 0;
oom:
    snprintf(problem, cap, "out of memory");
    return RM_ENOMEM;
}

static int fail(char *errstr, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *errstr, size_t errlen, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errstr, errlen, fmt, ap);
    va_end(ap);
    return rc;
}

/* True when some table key lives below "prefix." (so a map there is meaningful). */
static bool is_section(const char *prefix)
{
    size_t len = strlen(prefix);
    for (size_t i = 0; i < CFG_KEY_COUNT; i++)
        if (strncmp(cfg_keys[i].ck_name, prefix, len) == 0 && cfg_keys[i].ck_name[len] == '.')
            return true;
    return false;
}

static const char *kind_name(yml_kind_t kind)
{
    return kind == YML_SEQ ? "a list" : kind == YML_MAP ? "a mapping" : "nothing";
}

static int load_kafka_map(cfg_t *cfg, const char *file, const yml_node_t *map, char *errstr,
                          size_t errlen)
{
    char problem[CFG_PROBLEM_MAX], origin[4200];
    for (size_t i = 0; i < yml_count(map); i++) {
        const yml_node_t *key = yml_map_key_at(map, i);
        const yml_node_t *value = yml_map_value_at(map, i);
        const char *name = yml_scalar(key) ? yml_scalar(key) : "?";
        if (!yml_scalar(value))
            return fail(errstr, errlen, RM_ECONFIG,
                        "%s:%u: kafka.%s: expected a scalar value (librdkafka properties are "
                        "flat), got %s",
                        file, yml_line(value), name, kind_name(yml_kind(value)));
        snprintf(origin, sizeof(origin), "%s:%u", file, yml_line(value));
        int rc = set_kafka(cfg, name, yml_scalar(value), origin, problem, sizeof(problem));
        if (rc)
            return fail(errstr, errlen, rc, "%s:%u: kafka.%s: %s", file, yml_line(key), name,
                        problem);
    }
    return 0;
}

/* Walks a mapping whose keys are below prefix ("" at the top); nested maps become
 * dotted names, so `projector: {batch_max_ms: 5}` sets "projector.batch_max_ms". */
static int load_map(cfg_t *cfg, const char *file, const yml_node_t *map, const char *prefix,
                    char *errstr, size_t errlen)
{
    char name[512], problem[CFG_PROBLEM_MAX], origin[4200];
    for (size_t i = 0; i < yml_count(map); i++) {
        const yml_node_t *key = yml_map_key_at(map, i);
        const yml_node_t *value = yml_map_value_at(map, i);
        unsigned line = yml_line(key);
        if (!yml_scalar(key))
            return fail(errstr, errlen, RM_ECONFIG, "%s:%u: %s: keys must be scalars", file, line,
                        *prefix ? prefix : "(top level)");
        snprintf(name, sizeof(name), "%s%s%s", prefix, *prefix ? "." : "", yml_scalar(key));
        if (strcmp(name, "kafka") == 0) {
            if (yml_kind(value) != YML_MAP)
                return fail(errstr, errlen, RM_ECONFIG,
                            "%s:%u: kafka: expected a mapping of librdkafka properties", file,
                            yml_line(value));
            int rc = load_kafka_map(cfg, file, value, errstr, errlen);
            if (rc)
                return rc;
            continue;
        }
        if (strncmp(name, CFG_KAFKA_PREFIX, strlen(CFG_KAFKA_PREFIX)) == 0 && yml_scalar(value)) {
            /* `kafka.client.id: x` at the top level, as cfg_set() accepts it */
            snprintf(origin, sizeof(origin), "%s:%u", file, yml_line(value));
            int rc = set_kafka(cfg, name + strlen(CFG_KAFKA_PREFIX), yml_scalar(value), origin,
                               problem, sizeof(problem));
            if (rc)
                return fail(errstr, errlen, rc, "%s:%u: %s: %s", file, line, name, problem);
            continue;
        }
        const cfg_key_t *ck = find_key(name);
        if (yml_kind(value) == YML_MAP && !ck && is_section(name)) {
            int rc = load_map(cfg, file, value, name, errstr, errlen);
            if (rc)
                return rc;
            continue;
        }
        if (!ck && is_section(name))
            return fail(errstr, errlen, RM_ECONFIG, "%s:%u: %s: expected a mapping, got %s", file,
                        yml_line(value), name,
                        yml_scalar(value) ? "a scalar" : kind_name(yml_kind(value)));
        if (!ck)
            return fail(errstr, errlen, RM_ECONFIG, "%s:%u: %s: unknown key", file, line, name);
        if (!yml_scalar(value))
            return fail(errstr, errlen, RM_ECONFIG, "%s:%u: %s: expected a value, got %s", file,
                        yml_line(value), name, kind_name(yml_kind(value)));
        snprintf(origin, sizeof(origin), "%s:%u", file, yml_line(value));
        int rc = set_key(cfg, ck, yml_scalar(value), origin, problem, sizeof(problem));
        if (rc)
            return fail(errstr, errlen, rc, "%s:%u: %s: %s", file, yml_line(value), name, problem);
    }
    return 0;
}

static int load_file(cfg_t *cfg, const char *path, char *errstr, size_t errlen)
{
    yml_doc_t *doc = yml_load_file(path, errstr, errlen);
    if (!doc)
        return RM_ECONFIG;
    const yml_node_t *root = yml_root(doc);
    int rc = 0;
    if (root && yml_kind(root) != YML_MAP)
        rc = fail(errstr, errlen, RM_ECONFIG, "%s:%u: (top level): expected a mapping, got %s",
                  path, yml_line(root),
                  yml_kind(root) == YML_SCALAR ? "a scalar" : kind_name(yml_kind(root)));
    else if (root)
        rc = load_map(cfg, path, root, "", errstr, errlen);
    yml_destroy(doc);
    return rc;
}

/* RM_KAFKA_FETCH_WAIT_MAX_MS -> fetch.wait.max.ms. No librdkafka property that can be
 * set from a string has '_' in its name, so the mapping is unambiguous. */
static int load_kafka_env(cfg_t *cfg, const char *entry, char *errstr, size_t errlen)
{
    const char *eq = strchr(entry, '=');
    if (!eq)
        return 0;
    char var[256], name[256], problem[CFG_PROBLEM_MAX], origin[300];
    size_t var_len = (size_t)(eq - entry);
    size_t prefix_len = strlen(CFG_KAFKA_ENV_PREFIX);
    if (var_len >= sizeof(var))
        return fail(errstr, errlen, RM_ECONFIG, "%.40s...: variable name too long", entry);
    memcpy(var, entry, var_len);
    var[var_len] = '\0';
    size_t n = 0;
    for (const char *p = var + prefix_len; *p; p++)
        name[n++] = *p == '_' ? '.' : (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
    name[n] = '\0';
    snprintf(origin, sizeof(origin), "env %s", var);
    int rc = set_kafka(cfg, name, eq + 1, origin, problem, sizeof(problem));
    return rc ? fail(errstr, errlen, rc, "%s: %s", var, problem) : 0;
}

static int load_env(cfg_t *cfg, char *errstr, size_t errlen)
{
    char problem[CFG_PROBLEM_MAX], origin[300];
    for (size_t i = 0; i < CFG_KEY_COUNT; i++) {
        const char *text = getenv(cfg_keys[i].ck_env);
        if (!text)
            continue;
        snprintf(origin, sizeof(origin), "env %s", cfg_keys[i].ck_env);
        int rc = set_key(cfg, &cfg_keys[i], text, origin, problem, sizeof(problem));
        if (rc)
            return fail(errstr, errlen, rc, "%s: %s", cfg_keys[i].ck_env, problem);
    }
    size_t prefix_len = strlen(CFG_KAFKA_ENV_PREFIX);
    for (char **entry = environ; entry && *entry; entry++) {
        if (strncmp(*entry, CFG_KAFKA_ENV_PREFIX, prefix_len) != 0)
            continue;
        int rc = load_kafka_env(cfg, *entry, errstr, errlen);
        if (rc)
            return rc;
    }
    return 0;
}

cfg_t *cfg_load(const char *path, char *errstr, size_t errlen)
{
    cfg_t *cfg = calloc(1, sizeof(*cfg));
    if (!cfg) {
        fail(errstr, errlen, RM_ENOMEM, "out of memory");
        return NULL;
    }
    char problem[CFG_PROBLEM_MAX];
    for (size_t i = 0; i < CFG_KEY_COUNT; i++) {
        /* A default that fails its own validation is a bug in the table. */
        int rc =
            set_key(cfg, &cfg_keys[i], cfg_keys[i].ck_default, "default", problem, sizeof(problem));
        assert(rc != RM_ECONFIG);
        if (rc) {
            fail(errstr, errlen, rc, "%s", problem);
            cfg_destroy(cfg);
            return NULL;
        }
    }
    if ((path && load_file(cfg, path, errstr, errlen)) || load_env(cfg, errstr, errlen)) {
        cfg_destroy(cfg);
        return NULL;
    }
    return cfg;
}

void cfg_destroy(cfg_t *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < CFG_KEY_COUNT; i++) {
        free(cfg->cf_values[i].cv_text);
        free(cfg->cf_values[i].cv_origin);
    }
    for (size_t i = 0; i < cfg->cf_kafka_count; i++) {
        free(cfg->cf_kafka[i].kp_name);
        free(cfg->cf_kafka[i].kp_value);
        free(cfg->cf_kafka[i].kp_origin);
    }
    free(cfg->cf_kafka);
    free(cfg);
}

int cfg_set(cfg_t *cfg, const char *key, const char *value, char *errstr, size_t errlen)
{
    char problem[CFG_PROBLEM_MAX];
    size_t prefix_len = strlen(CFG_KAFKA_PREFIX);
    int rc;
    if (strncmp(key, CFG_KAFKA_PREFIX, prefix_len) == 0) {
        rc = set_kafka(cfg, key + prefix_len, value, "flag", problem, sizeof(problem));
    } else {
        const cfg_key_t *ck = find_key(key);
        if (!ck)
            return fail(errstr, errlen, RM_ECONFIG, "%s: unknown key", key);
        rc = set_key(cfg, ck, value, "flag", problem, sizeof(problem));
    }
    return rc ? fail(errstr, errlen, rc == RM_ENOMEM ? RM_ENOMEM : RM_ECONFIG, "%s: %s", key,
                     problem)
              : 0;
}

int cfg_set_pair(cfg_t *cfg, const char *pair, char *errstr, size_t errlen)
{
    const char *eq = strchr(pair, '=');
    if (!eq || eq == pair)
        return fail(errstr, errlen, RM_ECONFIG, "'%s': expected key=value", pair);
    char key[512];
    size_t key_len = (size_t)(eq - pair);
    if (key_len >= sizeof(key))
        return fail(errstr, errlen, RM_ECONFIG, "%.40s...: key too long", pair);
    memcpy(key, pair, key_len);
    key[key_len] = '\0';
    return cfg_set(cfg, key, eq + 1, errstr, errlen);
}

static const cfg_value_t *value_of(const cfg_t *cfg, const char *key, const cfg_key_t **ret_key)
{
    const cfg_key_t *ck = find_key(key);
    assert(ck && "cfg: unknown key");
    *ret_key = ck;
    return &cfg->cf_values[ck - cfg_keys];
}

const char *cfg_str(const cfg_t *cfg, const char *key)
{
    const cfg_key_t *ck;
    const cfg_value_t *value = value_of(cfg, key, &ck);
    assert(ck->ck_type != CFG_INT && "cfg_str on an integer key");
    return value->cv_text;
}

int64_t cfg_int(const cfg_t *cfg, const char *key)
{
    const cfg_key_t *ck;
    const cfg_value_t *value = value_of(cfg, key, &ck);
    assert(ck->ck_type == CFG_INT && "cfg_int on a non-integer key");
    return value->cv_int;
}

size_t cfg_kafka_count(const cfg_t *cfg)
{
    return cfg->cf_kafka_count;
}

const char *cfg_kafka_name(const cfg_t *cfg, size_t index)
{
    assert(index < cfg->cf_kafka_count);
    return cfg->cf_kafka[index].kp_name;
}

const char *cfg_kafka_value(const cfg_t *cfg, size_t index)
{
    assert(index < cfg->cf_kafka_count);
    return cfg->cf_kafka[index].kp_value;
}

static const cfg_kafka_prop_t *find_kafka(const cfg_t *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->cf_kafka_count; i++)
        if (strcmp(cfg->cf_kafka[i].kp_name, name) == 0)
            return &cfg->cf_kafka[i];
    return NULL;
}

const char *cfg_kafka_get(const cfg_t *cfg, const char *name)
{
    const cfg_kafka_prop_t *prop = find_kafka(cfg, name);
    return prop ? prop->kp_value : NULL;
}

const char *cfg_origin(const cfg_t *cfg, const char *key)
{
    size_t prefix_len = strlen(CFG_KAFKA_PREFIX);
    if (strncmp(key, CFG_KAFKA_PREFIX, prefix_len) == 0) {
        const cfg_kafka_prop_t *prop = find_kafka(cfg, key + prefix_len);
        return prop ? prop->kp_origin : NULL;
    }
    const cfg_key_t *ck;
    return value_of(cfg, key, &ck)->cv_origin;
}

void cfg_print_help(FILE *out, const char *prefix)
{
    size_t prefix_len = prefix ? strlen(prefix) : 0;
    for (size_t i = 0; i < CFG_KEY_COUNT; i++) {
        const cfg_key_t *ck = &cfg_keys[i];
        if (strncmp(ck->ck_name, prefix ? prefix : "", prefix_len) != 0)
            continue;
        fprintf(out, "  %-32s %-24s default: %s\n", ck->ck_name, ck->ck_env,
                *ck->ck_default ? ck->ck_default : "\"\"");
        if (ck->ck_type == CFG_INT)
            fprintf(out, "      %s (integer %lld..%lld)\n", ck->ck_help, (long long)ck->ck_min,
                    (long long)ck->ck_max);
        else if (ck->ck_type == CFG_ENUM)
            fprintf(out, "      %s (%s)\n", ck->ck_help, ck->ck_values);
        else
            fprintf(out, "      %s\n", ck->ck_help);
    }
    if (strncmp(CFG_KAFKA_PREFIX "<property>", prefix ? prefix : "", prefix_len) == 0)
        fprintf(out, "  %-32s %s\n      %s\n", CFG_KAFKA_PREFIX "<property>",
                CFG_KAFKA_ENV_PREFIX "<PROPERTY>",
                "any librdkafka property, passed through verbatim ('.' is '_' in the "
                "variable name)");
}
