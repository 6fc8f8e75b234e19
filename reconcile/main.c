/* reconcile: prove on a schedule that a view agrees with its systems of record and with
 * its own log — and repair it through the log when it does not (docs/reconcile.md).
 * Wiring only: diff_source.c, replay.c, compare.c, fetch.c, repair.c, report.c. */
#include "app.h"
#include "cfg.h"
#include "diff_source.h"
#include "gen.h"
#include "kafka.h"
#include "log.h"
#include "repair.h"
#include "replay.h"
#include "report.h"
#include "rm_err.h"
#include "rm_time.h"
#include "source.h"
#include "store.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Exit codes of reconcile (scripts and the CronJob rely on them). */
#define RC_EXIT_CLEAN 0    /* no drift */
#define RC_EXIT_DRIFT 1    /* drift found (repaired or not) */
#define RC_EXIT_CANNOT 2   /* could not run: usage, configuration, store, sources, Kafka */

static void usage(FILE *out)
{
    fprintf(
        out,
        "Usage: reconcile --config FILE [options] diff-source [--all|--sample N|--keys FILE]\n"
        "                                         [--since TIME] [--repair]\n"
        "       reconcile --config FILE [options] diff-replay [--scratch DIR] [--keep-scratch]\n"
        "\n"
        "diff-source   fetch each key's records from the source services the view definition\n"
        "              names (sources:), compare them field by field with the live store and\n"
        "              report every difference: drift, not yet projected (the source changed\n"
        "              after the store's event time, within reconcile.freshness_budget_ms),\n"
        "              or unknown (the source could not be read: never counted as drift).\n"
        "  --all           every key of the store (default)\n"
        "  --sample N      N keys drawn uniformly (reproducible with --seed S)\n"
        "  --keys FILE     the keys listed in FILE, one per line ('-' = stdin); finds keys\n"
        "                  the store lacks entirely\n"
        "  --since TIME    only keys with a section projected at or after TIME (ISO 8601\n"
        "                  such as 2026-12-01T00:00:00Z, or epoch milliseconds)\n"
        "  --repair        publish a correction event per drifting item to the view's repairs\n"
        "                  topic; the projector applies it (a second run reports no drift)\n"
        "\n"
        "diff-replay   replay the view's topics into a scratch store with the same engine, up\n"
        "              to exactly the live store's offsets, and diff the two stores.\n"
        "  --scratch DIR   build the scratch store in DIR (default: a temporary directory)\n"
        "  --keep-scratch  keep it afterwards\n"
        "\n"
        "Options:\n"
        "  -c, --config FILE       config file (YAML)\n"
        "  -r, --report FILE       findings as JSON lines, then a summary line\n"
        "  -m, --metrics-textfile FILE  Prometheus text format for node_exporter's\n"
        "                          textfile collector (e.g. .../readmodel_reconcile.prom)\n"
        "      --run-id ID         names this run in reports and repair events\n"
        "                          (default rc-<UTC time>-<pid>)\n"
        "      --seed S            seed of --sample (default 1)\n"
        "  -s, --set KEY=VALUE     set a config key (beats environment and file)\n"
        "  -X PROP=VALUE           set a librdkafka property (repairs, replay)\n"
        "      --log-level LEVEL   debug, info, warn or error\n"
        "  -v, -q                  more / less logging\n"
        "  -V, --version           print version and library versions\n"
        "  -h, --help              this help\n"
        "\n"
        "stdout gets a summary table; logs go to stderr.\n"
        "Exit codes: 0 no drift, 1 drift found, 2 could not run.\n"
        "\n"
        "Configuration keys (flag > environment > file > default):\n");
    cfg_print_help(out, "reconcile.");
    cfg_print_help(out, "data_dir");
    cfg_print_help(out, "view");
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "reconcile: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'reconcile --help'.\n");
    return RC_EXIT_CANNOT;
}

static int parse_time_arg(const char *text, int64_t *ret_ms)
{
    char *end;
    long long ms = strtoll(text, &end, 10);
    if (*text && !*end && ms > 0) {
        *ret_ms = ms;
        return 0;
    }
    return remote_parse_time(text, ret_ms);
}

typedef struct rc_options {
    app_args_t ro_args;
    const char *ro_command;
    const char *ro_report;
    const char *ro_metrics;
    const char *ro_run_id;
    const char *ro_keys;
    const char *ro_scratch;
    bool ro_keep_scratch;
    bool ro_repair;
    size_t ro_sample;
    uint64_t ro_seed;
    int64_t ro_since_ms;
} rc_options_t;

enum {
    OPT_RUN_ID = 256,
    OPT_SEED,
    OPT_ALL,
    OPT_SAMPLE,
    OPT_KEYS,
    OPT_SINCE,
    OPT_REPAIR,
    OPT_SCRATCH,
    OPT_KEEP_SCRATCH
};

static const struct option long_options[] = {
    {"config", required_argument, NULL, 'c'},
    {"report", required_argument, NULL, 'r'},
    {"metrics-textfile", required_argument, NULL, 'm'},
    {"run-id", required_argument, NULL, OPT_RUN_ID},
    {"seed", required_argument, NULL, OPT_SEED},
    {"all", no_argument, NULL, OPT_ALL},
    {"sample", required_argument, NULL, OPT_SAMPLE},
    {"keys", required_argument, NULL, OPT_KEYS},
    {"since", required_argument, NULL, OPT_SINCE},
    {"repair", no_argument, NULL, OPT_REPAIR},
    {"scratch", required_argument, NULL, OPT_SCRATCH},
    {"keep-scratch", no_argument, NULL, OPT_KEEP_SCRATCH},
    {"set", required_argument, NULL, 's'},
    {"log-level", required_argument, NULL, 'L'},
    {"version", no_argument, NULL, 'V'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* The options that choose which keys diff-source checks (--seed, --all, --sample, --keys,
 * --since) and --repair. Returns -1 to go on, or an exit code. */
static int parse_selection_option(int opt, const char *arg, rc_options_t *op)
{
    char *end;
    switch (opt) {
    case OPT_SEED:
        op->ro_seed = strtoull(arg, &end, 10);
        if (!*arg || *end)
            return usage_error("--seed: expected a number, got '%s'", arg);
        break;
    case OPT_ALL:
        op->ro_sample = 0;
        op->ro_keys = NULL;
        break;
    case OPT_SAMPLE: {
        long long n = strtoll(arg, &end, 10);
        if (!*arg || *end || n < 1)
            return usage_error("--sample: expected a positive number, got '%s'", arg);
        op->ro_sample = (size_t)n;
        break;
    }
    case OPT_KEYS:
        op->ro_keys = arg;
        break;
    case OPT_SINCE:
        if (parse_time_arg(arg, &op->ro_since_ms))
            return usage_error("--since: expected ISO 8601 (2026-12-01T00:00:00Z) or epoch "
                               "ms, got '%s'",
                               arg);
        break;
    case OPT_REPAIR:
        op->ro_repair = true;
        break;
    }
    return -1;
}

/* The one subcommand after the options, and the options that belong to the other one or
 * exclude each other. Returns -1 to go on, or an exit code. */
static int parse_command(int argc, char **argv, rc_options_t *op)
{
    if (optind + 1 != argc)
        return usage_error("%s", optind == argc ? "a subcommand is required: diff-source or "
                                                  "diff-replay"
                                                : "only one subcommand may be given");
    op->ro_command = argv[optind];
    if (strcmp(op->ro_command, "diff-source") && strcmp(op->ro_command, "diff-replay"))
        return usage_error("unknown subcommand '%s' (diff-source or diff-replay)", op->ro_command);
    bool source = strcmp(op->ro_command, "diff-source") == 0;
    if (!source && (op->ro_repair || op->ro_keys || op->ro_sample || op->ro_since_ms))
        return usage_error("%s", "--repair, --keys, --sample and --since are diff-source options");
    if (source && (op->ro_scratch || op->ro_keep_scratch))
        return usage_error("%s", "--scratch and --keep-scratch are diff-replay options");
    if (op->ro_keys && op->ro_sample)
        return usage_error("%s", "--keys and --sample exclude each other");
    return -1;
}

/* Returns -1 to go on, or an exit code. Options may come before or after the
 * subcommand (getopt permutes). */
static int parse(int argc, char **argv, rc_options_t *op)
{
    static char kafka_sets[APP_MAX_SETS][512];
    int opt;
    while ((opt = getopt_long(argc, argv, "c:r:m:s:X:vqVh", long_options, NULL)) != -1) {
        int rc = 0;
        switch (opt) {
        case 'c':
            op->ro_args.aa_config = optarg;
            break;
        case 'r':
            op->ro_report = optarg;
            break;
        case 'm':
            op->ro_metrics = optarg;
            break;
        case OPT_RUN_ID:
            op->ro_run_id = optarg;
            break;
        case OPT_SEED:
        case OPT_ALL:
        case OPT_SAMPLE:
        case OPT_KEYS:
        case OPT_SINCE:
        case OPT_REPAIR: {
            int status = parse_selection_option(opt, optarg, op);
            if (status >= 0)
                return status;
            break;
        }
        case OPT_SCRATCH:
            op->ro_scratch = optarg;
            break;
        case OPT_KEEP_SCRATCH:
            op->ro_keep_scratch = true;
            break;
        case 's':
            rc = app_args_add_set(&op->ro_args, optarg);
            break;
        case 'X':
            rc = app_args_add_kafka(&op->ro_args, optarg, kafka_sets[op->ro_args.aa_set_count],
                                    sizeof(kafka_sets[0]));
            break;
        case 'L':
            op->ro_args.aa_log_level = optarg;
            break;
        case 'v':
            op->ro_args.aa_verbosity++;
            break;
        case 'q':
            op->ro_args.aa_verbosity--;
            break;
        case 'V':
            app_print_version("reconcile");
            return RC_EXIT_CLEAN;
        case 'h':
            usage(stdout);
            return RC_EXIT_CLEAN;
        default:
            usage(stderr);
            return RC_EXIT_CANNOT;
        }
        if (rc)
            return usage_error("%s", "too many --set/-X flags");
    }
    return parse_command(argc, argv, op);
}

/* A stopped run has no verdict: exit 2 at once, leaving no partial report in place
 * (only FILE.tmp, which the next run overwrites). */
static void on_signal(int sig)
{
    (void)sig;
    _exit(RC_EXIT_CANNOT);
}

static int run_diff_source(const app_t *app, const rc_options_t *op, report_t *report)
{
    char err[1024], dir[4096];
    int grc = gen_current_dir(app->ap_store_dir, dir, sizeof(dir));
    if (grc) {
        log_error("cannot find the view store's current generation",
                  LOG_S("store", app->ap_store_dir), LOG_S("error", rm_strerror(grc)));
        return RM_ESTORE;
    }
    /* A read-only store: reconcile never writes a live store (repairs go through Kafka). */
    store_opts_t sopts = {.so_dir = dir, .so_readonly = true};
    store_t *store = store_open(&sopts, err, sizeof(err));
    if (!store) {
        log_error("cannot open the view store", LOG_S("error", err));
        return RM_ESTORE;
    }
    repair_t *repair = NULL;
    if (op->ro_repair && !(repair = repair_new(app, op->ro_run_id, err, sizeof(err)))) {
        log_error("cannot set up repairs", LOG_S("error", err));
        store_close(store);
        return RM_ECONFIG;
    }
    diff_source_opts_t dso = {
        .dso_app = app,
        .dso_store = store,
        .dso_report = report,
        .dso_repair = repair,
        .dso_keys_file = op->ro_keys,
        .dso_sample = op->ro_sample,
        .dso_seed = op->ro_seed ? op->ro_seed : 1,
        .dso_since_ms = op->ro_since_ms,
        .dso_progress = isatty(STDERR_FILENO) && op->ro_args.aa_verbosity >= 0,
    };
    int rc = diff_source_run(&dso, err, sizeof(err));
    if (rc)
        log_error("diff-source could not run", LOG_S("error", err));
    if (repair) {
        uint64_t failed = 0;
        int frc = repair_flush(repair, 30000, &failed);
        log_info("repairs published", LOG_S("topic", app->ap_view->v_repair_topic),
                 LOG_I("delivered", repair_delivered(repair)), LOG_I("failed", failed));
        if (frc && !rc) {
            log_error("some repairs were not delivered", LOG_I("failed", failed));
            rc = frc;
        }
        repair_destroy(repair);
    }
    store_close(store);
    return rc;
}

/* As the projector's start: long enough for a first answer from a loaded broker. */
#define RC_LOGIN_CHECK_MS 10000

int main(int argc, char **argv)
{
    rc_options_t op = {0};
    int status = parse(argc, argv, &op);
    if (status >= 0)
        return status;
    char run_id[96];
    if (!op.ro_run_id) {
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        char when[32];
        strftime(when, sizeof(when), "%Y%m%dT%H%M%SZ", &tm);
        snprintf(run_id, sizeof(run_id), "rc-%s-%ld", when, (long)getpid());
        op.ro_run_id = run_id;
    }
    app_t app;
    int exit_code = app_load(&app, "reconcile", &op.ro_args, true);
    if (exit_code)
        return RC_EXIT_CANNOT;
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    char err[1024];
    /* diff-replay reads the topics and --repair publishes to them: a refused login or an
     * untrusted certificate would otherwise leave their clients retrying. */
    bool uses_kafka = strcmp(op.ro_command, "diff-source") != 0 || op.ro_repair;
    if (uses_kafka && kafka_check_login(app.ap_cfg, RC_LOGIN_CHECK_MS, NULL, err, sizeof(err))) {
        log_error("cannot connect to Kafka", LOG_S("error", err));
        app_cleanup(&app);
        return RC_EXIT_CANNOT;
    }
    report_opts_t ropts = {.ro_view = app.ap_view->v_name,
                           .ro_mode = op.ro_command,
                           .ro_run_id = op.ro_run_id,
                           .ro_path = op.ro_report,
                           .ro_metrics_path = op.ro_metrics};
    report_t *report = report_new(&ropts, err, sizeof(err));
    if (!report) {
        log_error("cannot create the report", LOG_S("error", err));
        app_cleanup(&app);
        return RC_EXIT_CANNOT;
    }
    log_info("reconcile started", LOG_S("mode", op.ro_command), LOG_S("run_id", op.ro_run_id),
             LOG_S("view", app.ap_view->v_name), LOG_S("store", app.ap_store_dir));
    int64_t started = rm_mono_ms();
    int rc;
    if (strcmp(op.ro_command, "diff-source") == 0) {
        rc = run_diff_source(&app, &op, report);
    } else {
        replay_opts_t rpo = {.rpo_app = &app,
                             .rpo_report = report,
                             .rpo_scratch_dir = op.ro_scratch,
                             .rpo_keep_scratch = op.ro_keep_scratch,
                             .rpo_progress = isatty(STDERR_FILENO) && op.ro_args.aa_verbosity >= 0};
        rc = replay_run(&rpo, err, sizeof(err));
        if (rc)
            log_error("diff-replay could not run", LOG_S("error", err));
    }
    if (rc) {
        exit_code = RC_EXIT_CANNOT; /* no report is renamed into place: it would be partial */
    } else if (report_finish(report, stdout, rm_mono_ms() - started, err, sizeof(err))) {
        log_error("cannot write the report", LOG_S("error", err));
        exit_code = RC_EXIT_CANNOT;
    } else if (report_sections_checked(report) &&
               report_count(report, REPORT_UNKNOWN) == report_sections_checked(report)) {
        /* Not one key could be checked: "no drift" would be a lie. */
        log_error("no key could be checked: every source read failed (see the report)",
                  LOG_I("keys", report_keys(report)));
        exit_code = RC_EXIT_CANNOT;
    } else {
        exit_code = report_count(report, REPORT_DRIFT) ? RC_EXIT_DRIFT : RC_EXIT_CLEAN;
        log_info("reconcile finished", LOG_S("mode", op.ro_command),
                 LOG_I("keys", report_keys(report)),
                 LOG_I("drift", report_count(report, REPORT_DRIFT)),
                 LOG_I("pending", report_count(report, REPORT_PENDING)),
                 LOG_I("unknown", report_count(report, REPORT_UNKNOWN)), LOG_I("exit", exit_code));
    }
    report_destroy(report);
    app_cleanup(&app);
    return exit_code;
}
