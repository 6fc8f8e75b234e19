/* simulate: generates a seeded Customer 360 event stream, produces it to Kafka as
 * Confluent-framed Avro, and writes the oracle (the exact expected view per customer). */
#include "avro_enc.h"
#include "rm_time.h"
#include "catalog.h"
#include "cfg.h"
#include "chaos.h"
#include "drift.h"
#include "faults.h"
#include "kafka.h"
#include "log.h"
#include "model.h"
#include "oracle.h"
#include "producer.h"
#include "rm_build.h"
#include "rm_err.h"
#include "sources.h"
#include "summary.h"
#include "truth.h"

#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXIT_USAGE 2
#define DEFAULT_CUSTOMERS 1000
/* A sanity bound: the whole world is held in memory (about 1.5 KB per customer). */
#define MAX_CUSTOMERS 10000000
/* Progress lines on a TTY are redrawn at most this often. */
#define PROGRESS_INTERVAL_MS 200

/* Producer defaults; -X and RM_KAFKA_* override any of them. murmur2_random
 * is the Java client's partitioner, so keys land where Java producers would put them. */
/* clang-format off */
static const char *const producer_defaults[] = {
    "partitioner", "murmur2_random",
    "enable.idempotence", "true",
    "linger.ms", "5",
    "queue.buffering.max.messages", "1000000",
    NULL,
};
/* clang-format on */

typedef struct options {
    const char *op_bootstrap;
    const char *op_oracle;
    const char *op_catalog;
    const char *op_registry;
    uint32_t op_customers;
    uint64_t op_seed;
    int64_t op_start_ms;
    bool op_has_start;
    bool op_summary;
    bool op_dry_run;
    int op_verbosity; /* -1 quiet, 0 normal, 1 verbose */
    chaos_opts_t op_chaos;
    bool op_evolve;
    const char *op_poison_manifest;
    drift_opts_t op_drift;
    const char *op_drift_manifest;
    const char *op_truth;
    const char *op_serve_sources; /* HOST:PORT */
    const char *op_ready_file;
    const char *op_source_faults;
    const char *op_fault_manifest;
    const char *op_topics; /* --topics: produce only to these (comma-separated) */
    int64_t op_timestamp_offset_ms; /* --timestamp-offset-ms */
    const char **op_kafka; /* "name=value" from -X, in order */
    size_t op_kafka_count;
} options_t;

enum {
    OPT_CUSTOMERS = 256,
    OPT_SEED,
    OPT_ORACLE,
    OPT_CATALOG,
    OPT_REGISTRY,
    OPT_START_MS,
    OPT_SUMMARY,
    OPT_DRY_RUN,
    OPT_DUPLICATES,
    OPT_SKEW,
    OPT_POISON,
    OPT_POISON_MANIFEST,
    OPT_OVERSIZE_BYTES,
    OPT_EVOLVE,
    OPT_SERVE_SOURCES,
    OPT_READY_FILE,
    OPT_TRUTH,
    OPT_DRIFT_UNPUBLISHED,
    OPT_DRIFT_UNAPPLIED,
    OPT_DRIFT_DIVERGE,
    OPT_DRIFT_PENDING,
    OPT_DRIFT_MANIFEST,
    OPT_SOURCE_FAULTS,
    OPT_FAULT_MANIFEST,
    OPT_TOPICS,
    OPT_TIMESTAMP_OFFSET_MS
};

/* The schema id unapplied events are framed with: registered nowhere, so the projector
 * dead-letters them ("published but never applied"). */
#define UNAPPLIED_SCHEMA_ID 9999

/* Just past the projector's default projector.max_message_bytes (1 MiB). */
#define DEFAULT_OVERSIZE_BYTES (1048576 + 4096)

/* The command line, as data: getopt's table and --help are both generated from it. */
static const struct cli_option {
    const char *co_name;
    int co_id;
    const char *co_arg; /* NULL: a flag */
    const char *co_help;
} cli_options[] = {
    {"bootstrap", 'b', "HOST:PORT", "Kafka bootstrap servers (required unless --dry-run)"},
    {"customers", OPT_CUSTOMERS, "N", "customers to simulate (default 1000)"},
    {"seed", OPT_SEED, "S", "seed; ids carry it, so seeds never collide (default 1)"},
    {"oracle", OPT_ORACLE, "FILE", "write the expected view, one JSON line per customer"},
    {"catalog", OPT_CATALOG, "FILE",
     "schema catalog (default schemas/catalog.yaml, env RM_CATALOG)"},
    {"registry", OPT_REGISTRY, "URL",
     "register the schemas with this schema registry and frame"
     "\n                               with its ids (env RM_SCHEMA_REGISTRY_URL; subjects by"
     "\n                               schema_registry.subject_naming, default <topic>-value)"},
    {"start-ms", OPT_START_MS, "MS", "occurred_at of the first event (default: now - events)"},
    {"summary", OPT_SUMMARY, NULL, "print a JSON summary of the stream to stdout"},
    {"dry-run", OPT_DRY_RUN, NULL, "generate and encode, but produce nothing"},
    {"duplicates", OPT_DUPLICATES, "PCT",
     "chaos: produce PCT% of messages twice, 1..256 messages"
     "\n                               later (default 0)"},
    {"skew", OPT_SKEW, "N",
     "chaos: hold 'orders' back behind N other messages, so"
     "\n                               payments and shipments come before their order (default 0)"},
    {"poison", OPT_POISON, "N",
     "chaos: inject N malformed messages, cycling through the"
     "\n                               shapes truncated, unknown schema id, wrong magic, enum"
     "\n                               or union index out of range, string past the end, invalid"
     "\n                               UTF-8 and oversized, spread evenly over the stream"},
    {"poison-manifest", OPT_POISON_MANIFEST, "FILE",
     "write where each poison message landed (JSON lines:"
     "\n                               topic, partition, offset, shape, key)"},
    {"topics", OPT_TOPICS, "A,B,...",
     "produce only to these topics (the oracle still describes the\n"
     "                               whole stream): run again with the same --seed and\n"
     "                               --start-ms and the other topics to hold some back"},
    {"timestamp-offset-ms", OPT_TIMESTAMP_OFFSET_MS, "MS",
     "stamp messages MS before the time they are produced, as a\n"
     "                               replay of old history (default: now)"},
    {"evolve", OPT_EVOLVE, NULL,
     "write each event with one of its record's schema versions, picked per event\n"
     "                               (v1 and v2 writers interleaved; default: the newest)"},
    {"oversize-bytes", OPT_OVERSIZE_BYTES, "N",
     "size of the oversized poison message (default 1052672)"},
    {"serve-sources", OPT_SERVE_SOURCES, "HOST:PORT",
     "after the stream, serve the source services (systems of\n"
     "                               record, and the risk service's fraud holds) over HTTP\n"
     "                               until SIGTERM/SIGINT; port 0 = any; POST /_faults\n"
     "                               switches a service's faults at run time (README)"},
    {"sources-ready-file", OPT_READY_FILE, "FILE",
     "once listening, write the base URL to FILE (atomically)"},
    {"truth", OPT_TRUTH, "FILE", "write what the sources hold, in the oracle's format"},
    {"drift-unpublished", OPT_DRIFT_UNPUBLISHED, "N",
     "drift: N fields changed in a source and never published"},
    {"drift-unapplied", OPT_DRIFT_UNAPPLIED, "N",
     "drift: N events published as poison (schema id 9999) instead\n"
     "                               of themselves: the sources have them, --oracle does not"},
    {"drift-diverge", OPT_DRIFT_DIVERGE, "N",
     "drift: N list items whose source value differs from the event's"},
    {"drift-pending", OPT_DRIFT_PENDING, "N",
     "drift: N source changes made just now (updated_at = serving\n"
     "                               start): not yet projected, not drift"},
    {"drift-manifest", OPT_DRIFT_MANIFEST, "FILE",
     "write every injected difference (JSON lines, view names)"},
    {"source-faults", OPT_SOURCE_FAULTS, "SPEC",
     "source faults, comma-separated: flaky=PCT, down=SERVICE,\n"
     "                               slow=PCT:MS, timeout=PCT (see README)"},
    {"fault-manifest", OPT_FAULT_MANIFEST, "FILE",
     "write the customer keys that 'down' and 'timeout' affect"},
    {NULL, 'X', "PROP=VALUE", "set any librdkafka property (repeatable)"},
    {"quiet", 'q', NULL, "only warnings and errors on stderr"},
    {"verbose", 'v', NULL, "debug logs on stderr"},
    {"version", 'V', NULL, "print the version and exit"},
    {"help", 'h', NULL, "print this help and exit"},
};
#define CLI_OPTION_COUNT (sizeof(cli_options) / sizeof(cli_options[0]))

static volatile sig_atomic_t stop_requested;

static void on_signal(int signo)
{
    (void)signo;
    stop_requested = 1;
}

static void usage(FILE *out)
{
    fprintf(out, "Usage: simulate --bootstrap HOST:PORT [options]\n"
                 "Produces a deterministic Customer 360 event stream (Confluent-framed Avro)\n"
                 "and writes the oracle: the exact view every customer must end up with.\n\n");
    for (size_t i = 0; i < CLI_OPTION_COUNT; i++) {
        const struct cli_option *co = &cli_options[i];
        char left[64];
        if (co->co_name && co->co_id < 256)
            snprintf(left, sizeof(left), "-%c, --%s%s%s", co->co_id, co->co_name,
                     co->co_arg ? " " : "", co->co_arg ? co->co_arg : "");
        else if (co->co_name)
            snprintf(left, sizeof(left), "    --%s%s%s", co->co_name, co->co_arg ? " " : "",
                     co->co_arg ? co->co_arg : "");
        else
            snprintf(left, sizeof(left), "-%c %s", co->co_id, co->co_arg);
        fprintf(out, "  %-28s %s\n", left, co->co_help);
    }
    fprintf(out,
            "\nExit status: 0 ok, 1 runtime failure (e.g. a delivery failed), 2 usage error.\n");
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "simulate: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'simulate --help'.\n");
    return EXIT_USAGE;
}

static bool parse_u64(const char *text, uint64_t max, uint64_t *ret_value)
{
    char *end;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno || end == text || *end || text[0] == '-' || value > max)
        return false;
    *ret_value = value;
    return true;
}

/* The options that take a number, checked against their range. Returns -1 when it is
 * valid (stored in op), else the exit status of the usage error. */
static int parse_number_option(int c, const char *arg, options_t *op)
{
    uint64_t number;
    switch (c) {
    case OPT_CUSTOMERS:
        if (!parse_u64(arg, MAX_CUSTOMERS, &number) || number == 0)
            return usage_error("--customers: expected 1..10000000, got '%s'", arg);
        op->op_customers = (uint32_t)number;
        break;
    case OPT_SEED:
        if (!parse_u64(arg, UINT64_MAX, &number))
            return usage_error("--seed: expected a non-negative integer, got '%s'", arg);
        op->op_seed = number;
        break;
    case OPT_START_MS:
        if (!parse_u64(arg, INT64_MAX / 2, &number))
            return usage_error("--start-ms: expected epoch milliseconds, got '%s'", arg);
        op->op_start_ms = (int64_t)number;
        op->op_has_start = true;
        break;
    case OPT_DUPLICATES:
        if (!parse_u64(arg, 100, &number))
            return usage_error("--duplicates: expected a percentage 0..100, got '%s'", arg);
        op->op_chaos.co_duplicate_pct = (uint32_t)number;
        break;
    case OPT_SKEW:
        if (!parse_u64(arg, 100000000, &number))
            return usage_error("--skew: expected a message count, got '%s'", arg);
        op->op_chaos.co_skew = (uint32_t)number;
        break;
    case OPT_POISON:
        if (!parse_u64(arg, 1000000, &number))
            return usage_error("--poison: expected 0..1000000, got '%s'", arg);
        op->op_chaos.co_poison = (uint32_t)number;
        break;
    case OPT_TIMESTAMP_OFFSET_MS:
        if (!parse_u64(arg, INT64_MAX / 4, &number))
            return usage_error("--timestamp-offset-ms: expected milliseconds, got '%s'", arg);
        op->op_timestamp_offset_ms = (int64_t)number;
        break;
    case OPT_OVERSIZE_BYTES:
        if (!parse_u64(arg, 64u << 20, &number) || number < 64)
            return usage_error("--oversize-bytes: expected 64..67108864, got '%s'", arg);
        op->op_chaos.co_oversize_bytes = (size_t)number;
        break;
    case OPT_DRIFT_UNPUBLISHED:
    case OPT_DRIFT_UNAPPLIED:
    case OPT_DRIFT_DIVERGE:
    case OPT_DRIFT_PENDING: {
        static const char *const names[] = {"unpublished", "unapplied", "diverge", "pending"};
        uint32_t *counts[] = {&op->op_drift.do_unpublished, &op->op_drift.do_unapplied,
                              &op->op_drift.do_diverge, &op->op_drift.do_pending};
        if (!parse_u64(arg, 100000, &number)) {
            char what[64];
            snprintf(what, sizeof(what), "--drift-%s: expected 0..100000, got '%%s'",
                     names[c - OPT_DRIFT_UNPUBLISHED]);
            return usage_error(what, arg);
        }
        *counts[c - OPT_DRIFT_UNPUBLISHED] = (uint32_t)number;
        break;
    }
    }
    return -1;
}

/* The getopt table of cli_options (the ones with a long name) into long_options, which has
 * room for CLI_OPTION_COUNT + 1 entries. */
static void build_long_options(struct option *long_options)
{
    size_t n = 0;
    for (size_t i = 0; i < CLI_OPTION_COUNT; i++) {
        if (cli_options[i].co_name)
            long_options[n++] = (struct option){
                cli_options[i].co_name, cli_options[i].co_arg ? required_argument : no_argument,
                NULL, cli_options[i].co_id};
    }
    long_options[n] = (struct option){NULL, 0, NULL, 0};
}

/* The options stored as they come: file names, addresses and switches. Returns whether c
 * is one of them. */
static bool parse_plain_option(int c, const char *arg, options_t *op)
{
    switch (c) {
    case 'b':
        op->op_bootstrap = arg;
        return true;
    case OPT_ORACLE:
        op->op_oracle = arg;
        return true;
    case OPT_CATALOG:
        op->op_catalog = arg;
        return true;
    case OPT_REGISTRY:
        op->op_registry = arg;
        return true;
    case OPT_SUMMARY:
        op->op_summary = true;
        return true;
    case OPT_DRY_RUN:
        op->op_dry_run = true;
        return true;
    case OPT_TOPICS:
        op->op_topics = arg;
        return true;
    case OPT_POISON_MANIFEST:
        op->op_poison_manifest = arg;
        return true;
    case OPT_EVOLVE:
        op->op_evolve = true;
        return true;
    case OPT_SERVE_SOURCES:
        op->op_serve_sources = arg;
        return true;
    case OPT_READY_FILE:
        op->op_ready_file = arg;
        return true;
    case OPT_TRUTH:
        op->op_truth = arg;
        return true;
    case OPT_DRIFT_MANIFEST:
        op->op_drift_manifest = arg;
        return true;
    case OPT_SOURCE_FAULTS:
        op->op_source_faults = arg;
        return true;
    case OPT_FAULT_MANIFEST:
        op->op_fault_manifest = arg;
        return true;
    case 'q':
        op->op_verbosity = -1;
        return true;
    case 'v':
        op->op_verbosity = 1;
        return true;
    }
    return false;
}

/* Returns -1 when parsing succeeded, else the exit status. */
static int parse_options(int argc, char **argv, options_t *op)
{
    struct option long_options[CLI_OPTION_COUNT + 1];
    build_long_options(long_options);
    op->op_kafka = calloc((size_t)argc, sizeof(*op->op_kafka));
    if (!op->op_kafka)
        return EXIT_FAILURE;

    int c, rc;
    while ((c = getopt_long(argc, argv, "b:X:qvVh", long_options, NULL)) != -1) {
        if (parse_plain_option(c, optarg, op))
            continue;
        switch (c) {
        case OPT_CUSTOMERS:
        case OPT_SEED:
        case OPT_START_MS:
        case OPT_DUPLICATES:
        case OPT_SKEW:
        case OPT_POISON:
        case OPT_TIMESTAMP_OFFSET_MS:
        case OPT_OVERSIZE_BYTES:
        case OPT_DRIFT_UNPUBLISHED:
        case OPT_DRIFT_UNAPPLIED:
        case OPT_DRIFT_DIVERGE:
        case OPT_DRIFT_PENDING:
            if ((rc = parse_number_option(c, optarg, op)) >= 0)
                return rc;
            break;
        case 'X':
            if (!strchr(optarg, '=') || optarg[0] == '=')
                return usage_error("-X: expected name=value, got '%s'", optarg);
            op->op_kafka[op->op_kafka_count++] = optarg;
            break;
        case 'V':
            printf("simulate %s (librdkafka %s, avro-c %s)\n", RM_VERSION, rd_kafka_version_str(),
                   RM_AVRO_VERSION);
            return EXIT_SUCCESS;
        case 'h':
            usage(stdout);
            return EXIT_SUCCESS;
        default:
            fprintf(stderr, "Try 'simulate --help'.\n");
            return EXIT_USAGE;
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    return -1;
}

/* Registers the encoder's schemas with the configured registry (avro_enc_register). */
static int register_schemas(const cfg_t *cfg, avro_enc_t *enc)
{
    char errstr[512] = "";
    registry_opts_t ro = {
        .ro_url = cfg_str(cfg, "schema_registry.url"),
        .ro_username = cfg_str(cfg, "schema_registry.username"),
        .ro_password = cfg_str(cfg, "schema_registry.password"),
        .ro_ca_file = cfg_str(cfg, "schema_registry.ca_file"),
        .ro_timeout_ms = cfg_int(cfg, "schema_registry.timeout_ms"),
    };
    registry_naming_parse(cfg_str(cfg, "schema_registry.subject_naming"), &ro.ro_naming);
    registry_t *registry = registry_new(&ro, errstr, sizeof(errstr));
    int rc = registry ? avro_enc_register(enc, registry, errstr, sizeof(errstr)) : RM_ECONFIG;
    registry_destroy(registry);
    if (rc)
        log_error("cannot register the schemas with the schema registry", LOG_S("url", ro.ro_url),
                  LOG_S("error", errstr));
    return rc;
}

/* Applies flags to the project config: a flag beats RM_* variables beats defaults. */
static int apply_flags(cfg_t *cfg, const options_t *op, char *errstr, size_t errlen)
{
    if (op->op_catalog && cfg_set(cfg, "catalog", op->op_catalog, errstr, errlen))
        return RM_ECONFIG;
    if (op->op_registry && cfg_set(cfg, "schema_registry.url", op->op_registry, errstr, errlen))
        return RM_ECONFIG;
    if (op->op_bootstrap &&
        cfg_set(cfg, "kafka.bootstrap.servers", op->op_bootstrap, errstr, errlen))
        return RM_ECONFIG;
    for (size_t i = 0; i < op->op_kafka_count; i++) {
        char key[512];
        snprintf(key, sizeof(key), "kafka.%s", op->op_kafka[i]);
        if (cfg_set_pair(cfg, key, errstr, errlen))
            return RM_ECONFIG;
    }
    return 0;
}

typedef int (*writer_fn)(const void *ctx, FILE *out);

/* Writes a file through write to path.tmp and renames it, so readers never see half a
 * file. Logs failures with what and the path. */
static int write_atomic(const char *path, const char *what, writer_fn write, const void *ctx)
{
    char tmp_path[4096];
    snprintf(tmp_path, sizeof(tmp_path), "%s.tmp", path);
    FILE *out = fopen(tmp_path, "w");
    int rc = out ? write(ctx, out) : rm_err_from_errno(errno);
    if (out && fclose(out) != 0 && !rc)
        rc = RM_EIO;
    if (!rc && rename(tmp_path, path) != 0)
        rc = rm_err_from_errno(errno);
    if (rc) {
        log_error("cannot write a file", LOG_S("what", what), LOG_S("path", path),
                  LOG_S("error", rm_strerror(rc)));
        unlink(tmp_path);
    } else {
        log_info("file written", LOG_S("what", what), LOG_S("path", path));
    }
    return rc;
}

static int write_oracle_to(const void *ctx, FILE *out)
{
    return oracle_write(ctx, out);
}

static int write_store_oracle_to(const void *ctx, FILE *out)
{
    return truth_write_oracle(ctx, out);
}

static int write_truth_to(const void *ctx, FILE *out)
{
    return truth_write(ctx, out);
}

static int write_drift_manifest_to(const void *ctx, FILE *out)
{
    return drift_write_manifest(ctx, out);
}

typedef struct fault_ctx {
    const faults_t *fc_faults;
    const truth_t *fc_truth;
} fault_ctx_t;

static int write_fault_manifest_to(const void *ctx, FILE *out)
{
    const fault_ctx_t *fc = ctx;
    return faults_write_manifest(fc->fc_faults, fc->fc_truth, out);
}

static int write_url_to(const void *ctx, FILE *out)
{
    return fprintf(out, "%s\n", (const char *)ctx) < 0 ? RM_EIO : 0;
}

/* Writes the oracle of the whole stream (no drift asked for). */
static int write_oracle(const model_t *model, const char *path)
{
    char errstr[256];
    oracle_t *oracle = oracle_build(model, errstr, sizeof(errstr));
    if (!oracle) {
        log_error("cannot build the oracle", LOG_S("error", errstr));
        return RM_ENOMEM;
    }
    int rc = write_atomic(path, "oracle", write_oracle_to, oracle);
    if (!rc)
        log_info("oracle written", LOG_S("path", path),
                 LOG_I("customers", model_customer_count(model)),
                 LOG_I("erased", oracle_erased_count(oracle)));
    oracle_destroy(oracle);
    return rc;
}

static void show_progress(size_t done, size_t total, int64_t started_ms, bool final)
{
    double seconds = (double)(rm_mono_ms() - started_ms) / 1000.0;
    fprintf(stderr, "\rsimulate: %zu/%zu events (%3zu%%) %8.0f ev/s%s", done, total,
            total ? done * 100 / total : 100, seconds > 0 ? (double)done / seconds : 0.0,
            final ? "\n" : "");
}

/* Encodes every event in occurred_at order and, unless producer is NULL, produces it
 * keyed by its aggregate id. Returns 0 or the first error (already logged). */
/* Sends an unapplied event: its own bytes, key and topic, but framed with a schema id no
 * catalog has, so the projector dead-letters it (drift.h (1)). Bypasses chaos: its
 * delivery report must name this message. */
static int send_unapplied(producer_t *producer, drift_event_t *de, const char *key,
                          const void *value, size_t value_len)
{
    unsigned char *poison = malloc(value_len);
    if (!poison)
        return RM_ENOMEM;
    memcpy(poison, value, value_len);
    poison[1] = (unsigned char)(UNAPPLIED_SCHEMA_ID >> 24);
    poison[2] = (unsigned char)(UNAPPLIED_SCHEMA_ID >> 16);
    poison[3] = (unsigned char)(UNAPPLIED_SCHEMA_ID >> 8);
    poison[4] = (unsigned char)UNAPPLIED_SCHEMA_ID;
    int rc = producer_send_acked(producer, de->de_topic, key, strlen(key), poison, value_len,
                                 &de->de_ack);
    free(poison);
    return rc;
}

static int run_stream(const model_t *model, avro_enc_t *enc, producer_t *producer, chaos_t *chaos,
                      drift_t *drift, bool evolve, summary_t *summary, bool progress)
{
    sim_payload_t pl;
    size_t total = model_event_count(model);
    int64_t started_ms = rm_mono_ms(), shown_ms = started_ms;
    for (size_t i = 0; i < total; i++) {
        if (stop_requested) {
            log_warn("interrupted: the stream is incomplete", LOG_I("events_sent", i));
            return RM_EIO;
        }
        const sim_event_t *ev = model_event(model, i);
        model_payload(model, ev, &pl);
        const void *value;
        size_t value_len;
        size_t versions = avro_enc_versions(enc, ev->ev_type);
        /* a fixed hash of the rank: deterministic, and no draw from the model's prng */
        size_t version = evolve ? (size_t)((i * 2654435761u) >> 11) % versions : versions - 1;
        int rc = avro_enc_encode_version(enc, ev->ev_type, version, &pl, &value, &value_len);
        if (rc) {
            log_error("cannot encode event", LOG_S("type", model_event_type_name(ev->ev_type)),
                      LOG_S("error", rc == RM_EINVAL ? avro_enc_last_error(enc) : rm_strerror(rc)));
            return rc;
        }
        summary_count(summary, ev, value_len);
        drift_event_t *unapplied = drift ? drift_find(drift, i) : NULL;
        if (unapplied) {
            unapplied->de_topic = avro_enc_entry_version(enc, ev->ev_type, version)->ce_topic;
            rc = producer ? send_unapplied(producer, unapplied, pl.pl_key, value, value_len) : 0;
            if (rc) {
                log_error("cannot produce", LOG_S("topic", unapplied->de_topic),
                          LOG_S("error", kprod_error(producer_kprod(producer))));
                return rc;
            }
        } else if (producer) {
            const catalog_entry_t *entry = avro_enc_entry_version(enc, ev->ev_type, version);
            const char *topic = entry->ce_topic;
            rc = chaos ? chaos_send(chaos, producer, i, entry, pl.pl_key, strlen(pl.pl_key), value,
                                    value_len)
                       : producer_send(producer, topic, pl.pl_key, strlen(pl.pl_key), value,
                                       value_len);
            if (rc) {
                log_error("cannot produce", LOG_S("topic", topic),
                          LOG_S("error", kprod_error(producer_kprod(producer))));
                return rc;
            }
            if ((i & 1023) == 0)
                kprod_poll(producer_kprod(producer));
        }
        if (progress && rm_mono_ms() - shown_ms >= PROGRESS_INTERVAL_MS) {
            shown_ms = rm_mono_ms();
            show_progress(i, total, started_ms, false);
        }
    }
    if (chaos && producer) {
        int rc = chaos_drain(chaos, producer);
        if (rc) {
            log_error("cannot produce", LOG_S("error", kprod_error(producer_kprod(producer))));
            return rc;
        }
    }
    if (progress)
        show_progress(total, total, started_ms, true);
    return 0;
}

static bool chaos_wanted(const chaos_opts_t *opts)
{
    return opts->co_duplicate_pct || opts->co_skew || opts->co_poison;
}

/* Writes the poison manifest after the flush (every offset is known by then). */
static int write_manifest(const chaos_t *chaos, const char *path)
{
    FILE *out = fopen(path, "w");
    if (!out) {
        log_error("cannot write the poison manifest", LOG_S("file", path),
                  LOG_S("error", strerror(errno)));
        return RM_EIO;
    }
    int rc = chaos_write_manifest(chaos, out);
    if (fclose(out) != 0 && !rc)
        rc = RM_EIO;
    if (rc)
        log_error("the poison manifest is incomplete", LOG_S("file", path),
                  LOG_S("error", rm_strerror(rc)));
    return rc;
}

/* Takes conf over. */
static producer_t *start_producer(rd_kafka_conf_t *conf)
{
    char errstr[512];
    producer_t *producer = producer_new(conf, errstr, sizeof(errstr));
    if (!producer)
        log_error("cannot create the producer", LOG_S("error", errstr));
    return producer;
}

static bool sources_wanted(const options_t *op)
{
    const drift_opts_t *d = &op->op_drift;
    return op->op_serve_sources || op->op_truth || op->op_drift_manifest || op->op_fault_manifest ||
           d->do_unpublished || d->do_unapplied || d->do_diverge || d->do_pending;
}

/* Checks the reconciliation options that depend on each other. Returns nonzero (with *status
 * set to the exit status) on a usage error. */
static int check_source_options(const options_t *op, faults_t *ret_faults, int *status)
{
    char errstr[256];
    if (op->op_ready_file && !op->op_serve_sources) {
        *status = usage_error("%s", "--sources-ready-file needs --serve-sources");
        return -1;
    }
    if (faults_parse(op->op_source_faults, op->op_seed, ret_faults, errstr, sizeof(errstr))) {
        *status = usage_error("%s", errstr);
        return -1;
    }
    return 0;
}

/* Waits for SIGINT or SIGTERM. The signals are blocked first, in this thread and so in
 * every thread started afterwards (the server's), so sigwait() is their only receiver;
 * one that arrived during the stream already set stop_requested. */
static void block_stop_signals(sigset_t *ret_set)
{
    sigemptyset(ret_set);
    sigaddset(ret_set, SIGINT);
    sigaddset(ret_set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, ret_set, NULL);
}

/* After the stream: stamps the pending drift with the time serving starts, writes --truth
 * and the manifests, and serves until a stop signal. Returns 0 or an rm_err_t (logged). */
static int finish_sources(const options_t *op, drift_t *drift, truth_t *truth,
                          const faults_t *faults)
{
    char errstr[256];
    drift_stamp_pending(drift, rm_wall_ms());
    int rc = truth_index(truth);
    if (rc) {
        log_error("cannot index the sources' orders", LOG_S("error", rm_strerror(rc)));
        return rc;
    }
    fault_ctx_t fc = {faults, truth};
    if ((op->op_truth && (rc = write_atomic(op->op_truth, "truth", write_truth_to, truth))) ||
        (op->op_drift_manifest && (rc = write_atomic(op->op_drift_manifest, "drift manifest",
                                                     write_drift_manifest_to, drift))) ||
        (op->op_fault_manifest && (rc = write_atomic(op->op_fault_manifest, "fault manifest",
                                                     write_fault_manifest_to, &fc))))
        return rc;
    log_info("drift injected", LOG_I("unapplied", drift_unapplied_count(drift)),
             LOG_I("unpublished", op->op_drift.do_unpublished),
             LOG_I("diverge", op->op_drift.do_diverge), LOG_I("pending", op->op_drift.do_pending));
    if (!op->op_serve_sources)
        return 0;

    sigset_t stop_set;
    block_stop_signals(&stop_set);
    sources_t *sources = sources_start(truth, faults, op->op_serve_sources, errstr, sizeof(errstr));
    if (!sources) {
        log_error("cannot serve the sources", LOG_S("error", errstr));
        return RM_EIO;
    }
    log_info("sources listening", LOG_S("url", sources_url(sources)));
    if (op->op_ready_file)
        rc = write_atomic(op->op_ready_file, "sources ready file", write_url_to,
                          sources_url(sources));
    int signo = 0;
    if (!rc && !stop_requested)
        sigwait(&stop_set, &signo);
    log_info("sources stopping", LOG_I("signal", signo));
    sources_stop(sources);
    return rc;
}

/* The source services' drift and truth (--serve-sources, --truth), made before the
 * stream: too few customers for the drift is a usage error, and nothing should have been
 * produced by then. Returns -1 when ready, else the exit status. */
static int setup_sources(const options_t *op, const model_t *model, drift_t **ret_drift,
                         truth_t **ret_truth)
{
    char errstr[512];
    drift_t *drift = drift_new(model, &op->op_drift, errstr, sizeof(errstr));
    if (!drift) {
        fprintf(stderr, "simulate: %s\n", errstr);
        return EXIT_USAGE;
    }
    *ret_drift = drift;
    truth_t *truth = truth_new(model, drift_withheld(drift), errstr, sizeof(errstr));
    if (!truth) {
        log_error("cannot build the sources' truth", LOG_S("error", errstr));
        return EXIT_FAILURE;
    }
    *ret_truth = truth;
    int rc = drift_apply(drift, truth, errstr, sizeof(errstr));
    if (rc) {
        fprintf(stderr, "simulate: %s\n", errstr);
        return rc == RM_ENOTFOUND ? EXIT_USAGE : EXIT_FAILURE;
    }
    return -1;
}

/* The chaos of --duplicates, --skew and --poison over a stream of `events`; raises the
 * producer's message size limit (in conf) for the oversized poison. NULL on failure
 * (logged). */
static chaos_t *setup_chaos(options_t *op, const cfg_t *cfg, const catalog_t *catalog,
                            size_t events, rd_kafka_conf_t *conf)
{
    char errstr[512];
    if (!op->op_chaos.co_oversize_bytes)
        op->op_chaos.co_oversize_bytes = DEFAULT_OVERSIZE_BYTES;
    chaos_t *chaos = chaos_new(&op->op_chaos, catalog, op->op_seed, events, errstr, sizeof(errstr));
    if (!chaos) {
        log_error("cannot set up chaos", LOG_S("error", errstr));
        return NULL;
    }
    /* the oversized poison must get past our own producer's size limit */
    char max_bytes[32];
    snprintf(max_bytes, sizeof(max_bytes), "%zu", op->op_chaos.co_oversize_bytes + 65536);
    if (op->op_chaos.co_poison && !cfg_kafka_get(cfg, "message.max.bytes") &&
        rd_kafka_conf_set(conf, "message.max.bytes", max_bytes, errstr, sizeof(errstr))) {
        log_error("cannot raise message.max.bytes", LOG_S("error", errstr));
        chaos_destroy(chaos);
        return NULL;
    }
    return chaos;
}

/* After the stream: flushes the producer even after a failure (what was queued should
 * still arrive or be counted), logs what was delivered and injected, and writes the
 * poison manifest. Returns rc, or the first failure of these steps. */
static int finish_stream(producer_t *producer, chaos_t *chaos, const options_t *op,
                         const summary_t *summary, int rc)
{
    int flush_rc = producer_flush(producer);
    kprod_t *kp = producer_kprod(producer);
    if (flush_rc) {
        log_error("delivery failed", LOG_I("failed", kprod_failed(kp)),
                  LOG_I("delivered", kprod_delivered(kp)), LOG_S("error", kprod_error(kp)));
        rc = rc ? rc : flush_rc;
    } else {
        log_info("stream produced", LOG_I("delivered", kprod_delivered(kp)),
                 LOG_I("bytes", summary->su_bytes));
    }
    if (chaos) {
        chaos_counts_t counts = chaos_counts(chaos);
        log_info("chaos injected", LOG_I("duplicates", counts.cc_duplicates),
                 LOG_I("held_back", counts.cc_held), LOG_I("poison", counts.cc_poison));
    }
    if (!rc && chaos && op->op_poison_manifest)
        rc = write_manifest(chaos, op->op_poison_manifest);
    return rc;
}

/* What one run holds between its steps; sim_cleanup releases whatever was set. */
typedef struct sim {
    cfg_t *sm_cfg;
    catalog_t *sm_catalog;
    avro_enc_t *sm_enc;
    model_t *sm_model;
    rd_kafka_conf_t *sm_conf;
    producer_t *sm_producer;
    chaos_t *sm_chaos;
    drift_t *sm_drift;
    truth_t *sm_truth;
    faults_t sm_faults;
    summary_t sm_summary;
} sim_t;

/* The project config with the flags applied, the producer configuration (built even for
 * --dry-run, so that a bad -X is reported before any work) and the source faults. Returns
 * -1 to go on, else the exit status. */
static int sim_configure(sim_t *sim, const options_t *op)
{
    char errstr[512];
    sim->sm_cfg = cfg_load(NULL, errstr, sizeof(errstr));
    if (!sim->sm_cfg || apply_flags(sim->sm_cfg, op, errstr, sizeof(errstr))) {
        fprintf(stderr, "simulate: %s\n", errstr);
        return EXIT_USAGE;
    }
    if (!op->op_dry_run && !cfg_kafka_get(sim->sm_cfg, "bootstrap.servers"))
        return usage_error("%s", "--bootstrap is required (or --dry-run)");
    sim->sm_conf = kafka_conf_new(sim->sm_cfg, producer_defaults, errstr, sizeof(errstr));
    if (!sim->sm_conf) {
        fprintf(stderr, "simulate: %s\n", errstr);
        return EXIT_USAGE;
    }
    int status;
    if (check_source_options(op, &sim->sm_faults, &status))
        return status;
    return -1;
}

/* The catalog and the Avro encoder (its schemas registered when a registry is set), and
 * the generated stream. Returns -1 to go on, else the exit status (logged). */
static int sim_generate(sim_t *sim, const options_t *op)
{
    char errstr[512];
    sim->sm_catalog = catalog_load(cfg_str(sim->sm_cfg, "catalog"), errstr, sizeof(errstr));
    if (!sim->sm_catalog) {
        log_error("cannot load the schema catalog", LOG_S("error", errstr));
        return EXIT_FAILURE;
    }
    sim->sm_enc = avro_enc_new(sim->sm_catalog, errstr, sizeof(errstr));
    if (!sim->sm_enc) {
        log_error("cannot prepare Avro encoding", LOG_S("error", errstr));
        return EXIT_FAILURE;
    }
    if (*cfg_str(sim->sm_cfg, "schema_registry.url") && register_schemas(sim->sm_cfg, sim->sm_enc))
        return EXIT_FAILURE;
    sim->sm_model = model_new(op->op_seed, op->op_customers, errstr, sizeof(errstr));
    if (!sim->sm_model) {
        log_error("cannot generate the stream", LOG_S("error", errstr));
        return EXIT_FAILURE;
    }
    size_t events = model_event_count(sim->sm_model);
    model_set_start(sim->sm_model,
                    op->op_has_start ? op->op_start_ms : rm_wall_ms() - (int64_t)events);
    log_info("stream generated", LOG_I("seed", (int64_t)op->op_seed),
             LOG_I("customers", op->op_customers), LOG_I("events", events));
    return -1;
}

/* Before anything is produced: the sources' drift and truth, the oracle, the poison checks,
 * the chaos and the producer. Returns -1 to go on, else the exit status. */
static int sim_prepare(sim_t *sim, options_t *op)
{
    int status;
    if (sources_wanted(op) &&
        (status = setup_sources(op, sim->sm_model, &sim->sm_drift, &sim->sm_truth)) >= 0)
        return status;
    /* with drift, the oracle is what the store can hold: without the unapplied events */
    if (op->op_oracle &&
        (sim->sm_truth ? write_atomic(op->op_oracle, "oracle", write_store_oracle_to, sim->sm_truth)
                       : write_oracle(sim->sm_model, op->op_oracle)))
        return EXIT_FAILURE;
    size_t events = model_event_count(sim->sm_model);
    if (op->op_chaos.co_poison > events)
        return usage_error("%s", "--poison: more poison messages than stream events");
    if (op->op_poison_manifest && !op->op_chaos.co_poison)
        return usage_error("%s", "--poison-manifest needs --poison N");
    if (!op->op_dry_run && chaos_wanted(&op->op_chaos) &&
        !(sim->sm_chaos = setup_chaos(op, sim->sm_cfg, sim->sm_catalog, events, sim->sm_conf)))
        return EXIT_FAILURE;
    if (!op->op_dry_run) {
        sim->sm_producer = start_producer(sim->sm_conf);
        sim->sm_conf = NULL;
        if (!sim->sm_producer)
            return EXIT_FAILURE;
        producer_set_replay(sim->sm_producer, op->op_topics, op->op_timestamp_offset_ms);
    }
    return -1;
}

/* Produces the stream, then the summary and the sources. Returns the exit status. */
static int sim_run(sim_t *sim, const options_t *op)
{
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    bool progress = op->op_verbosity >= 0 && isatty(STDERR_FILENO);
    int rc = run_stream(sim->sm_model, sim->sm_enc, sim->sm_producer, sim->sm_chaos, sim->sm_drift,
                        op->op_evolve, &sim->sm_summary, progress);
    if (sim->sm_producer)
        rc = finish_stream(sim->sm_producer, sim->sm_chaos, op, &sim->sm_summary, rc);
    if (rc)
        return EXIT_FAILURE;
    if (op->op_summary && summary_write(&sim->sm_summary, sim->sm_model, sim->sm_enc, stdout)) {
        log_error("cannot write the summary to stdout");
        return EXIT_FAILURE;
    }
    if (sim->sm_truth && finish_sources(op, sim->sm_drift, sim->sm_truth, &sim->sm_faults))
        return EXIT_FAILURE;
    return EXIT_SUCCESS;
}

static void sim_cleanup(sim_t *sim)
{
    truth_destroy(sim->sm_truth);
    drift_destroy(sim->sm_drift);
    if (sim->sm_conf)
        rd_kafka_conf_destroy(sim->sm_conf);
    producer_destroy(sim->sm_producer);
    chaos_destroy(sim->sm_chaos);
    model_destroy(sim->sm_model);
    avro_enc_destroy(sim->sm_enc);
    catalog_destroy(sim->sm_catalog);
    cfg_destroy(sim->sm_cfg);
}

int main(int argc, char **argv)
{
    options_t op = {.op_customers = DEFAULT_CUSTOMERS, .op_seed = 1};
    int status = parse_options(argc, argv, &op);
    if (status >= 0) {
        free(op.op_kafka);
        return status;
    }
    log_init("simulate",
             op.op_verbosity < 0   ? LOG_WARN
             : op.op_verbosity > 0 ? LOG_DEBUG
                                   : LOG_INFO,
             LOG_FORMAT_AUTO);

    sim_t sim = {.sm_summary = SUMMARY_INIT};
    status = sim_configure(&sim, &op);
    if (status < 0)
        status = sim_generate(&sim, &op);
    if (status < 0)
        status = sim_prepare(&sim, &op);
    if (status < 0)
        status = sim_run(&sim, &op);
    sim_cleanup(&sim);
    free(op.op_kafka);
    return status;
}
