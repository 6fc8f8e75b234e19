/* projector: consume a view's topics and project them into its LMDB store.
 * Wiring only: the logic lives in lib/ (pipeline, engine, store). */
#include "app.h"
#include "cfg.h"
#include "dlq_command.h"
#include "erasures.h"
#include "gen.h"
#include "generations.h"
#include "kafka.h"
#include "log.h"
#include "metrics_http.h"
#include "pipeline.h"
#include "rm_err.h"
#include "store.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pipeline_t *volatile running_pipe;
static volatile sig_atomic_t stop_requested;

/* Installed before anything slow (broker metadata can take seconds), so a stop during
 * start-up is honoured: the pipeline is never started, or stops after its batch. */
static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
    if (running_pipe)
        pipeline_stop(running_pipe);
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: projector --config FILE [options]\n"
            "       projector --config FILE dlq list|replay|purge [--dry-run]\n"
            "       projector --config FILE rebuild [--from earliest|--from-time ISO8601]\n"
            "       projector --config FILE generations [--json]\n"
            "       projector --config FILE rollback [--to N]\n"
            "\n"
            "Consumes the view's Kafka topics (Confluent-framed Avro), applies the view\n"
            "definition and writes the view's LMDB store with the consumed offsets in the\n"
            "same transaction: a crash or a redelivery never applies an event twice.\n"
            "\n"
            "Options:\n"
            "  -c, --config FILE       config file (YAML); see config/example.yaml\n"
            "  -u, --until-caught-up   exit 0 once every partition reached the high\n"
            "                          watermark it had at start\n"
            "  -s, --set KEY=VALUE     set a config key (beats environment and file)\n"
            "  -X PROP=VALUE           set a librdkafka property (same as --set kafka.PROP=VALUE)\n"
            "      --log-level LEVEL   debug, info, warn or error\n"
            "  -v, -q                  more / less logging\n"
            "  -V, --version           print version and library versions\n"
            "  -h, --help              this help\n"
            "\n"
            "Dead letters (<topic>.dlq) of this view:\n"
            "  dlq list                print the unhandled ones as JSON lines\n"
            "  dlq replay [--dry-run]  re-publish them to their original topic (after a fix)\n"
            "  dlq purge [--dry-run]   mark them handled without re-publishing\n"
            "\n"
            "Store generations (<data_dir>/<view>/gen-N, \"current\" links the live one):\n"
            "  rebuild                 build a new generation from the topics while the daemon\n"
            "                          and the query API keep serving the current one, then\n"
            "                          switch atomically; both follow the switch by themselves\n"
            "    --from earliest       from the beginning of every partition (default)\n"
            "    --from-time TIME      from the first message at or after TIME (ISO 8601 with\n"
            "                          a zone, e.g. 2024-05-01T12:00:00Z)\n"
            "                          Progress: bars on a terminal, a log line every 5 s\n"
            "                          otherwise. Keeps projector.keep_generations.\n"
            "                          Refused (exit 3) when retention deleted the start of\n"
            "                          a log it needs, unless projector.on_gap=continue:\n"
            "                          then it records the gap and switches.\n"
            "  generations [--json]    list them: current, previous, size, offsets per topic\n"
            "  rollback [--to N]       make the previous (or generation N) current again\n"
            "\n"
            "SIGTERM or SIGINT finish the current batch, commit and exit 0, waiting at most\n"
            "~10 s for Kafka even with the brokers down.\n"
            "Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error (also:\n"
            "the schema registry's newest writer of a record cannot feed the view; the\n"
            "brokers refuse the login or their certificate is not trusted, checked at start),\n"
            "3 stopped on a gap, or a rebuild refused for one (projector.on_gap=stop:\n"
            "restarting will not help),\n"
            "4 an fsync of the store failed: restart it, the start rebuilds the view from\n"
            "Kafka (it does so by itself for a generation torn by an OS crash, too).\n"
            "\n"
            "Configuration keys (flag > environment > file > default):\n");
    cfg_print_help(out, NULL);
}

/* How long an exiting daemon waits for the broker to acknowledge its last erasures
 * (those it cannot prove published are published again at the next start). Part of the
 * shutdown bound docs/runbook.md states, with the brokers down too. */
#define MAIN_ERASURES_FINAL_MS 3000
#define MAIN_CREATE_TOPIC_MS 10000
/* How long the start waits for a first answer from the brokers before leaving a slow or
 * absent cluster to the clients' own retries: a refused login arrives in well under a
 * second on a healthy broker (a TLS handshake plus one SASL round trip). */
#define MAIN_LOGIN_CHECK_MS 10000

/* The daemon's erasure topic client: merges the topic into the ledger (retrying while
 * the broker does not answer), creates the topic when it is missing, and hands back
 * the client that publishes the ledger from then on. Returns an exit code. */
static int start_erasures_topic(const app_t *app, erasures_t *erasures, erasures_topic_t **ret_et)
{
    char topic[512], err[1024];
    erasures_topic_t *et = NULL;
    if (erasures_topic_name(app->ap_cfg, app->ap_view->v_name, topic, sizeof(topic)) == 0)
        et = erasures_topic_new(app->ap_cfg, topic, erasures, app->ap_store_dir, true, err,
                                sizeof(err));
    else
        snprintf(err, sizeof(err), "projector.erasures_topic: too long");
    if (!et) {
        log_error("cannot start the erasure topic's client", LOG_S("error", err));
        return APP_EXIT_USAGE;
    }
    bool missing = false;
    int rc = app_pull_erasures(app, erasures, app->ap_store_dir, et, &stop_requested, &missing);
    if (rc) {
        erasures_topic_destroy(et);
        return stop_requested ? APP_EXIT_OK : app_exit_for(rc);
    }
    if (missing && (rc = erasures_topic_create(et, MAIN_CREATE_TOPIC_MS, err, sizeof(err))))
        log_warn("cannot create the erasure topic; create it (cleanup.policy=compact) or let "
                 "the broker create it at the first erasure",
                 LOG_S("topic", topic), LOG_S("error", err));
    else if (missing)
        log_info("created the erasure topic", LOG_S("topic", topic));
    *ret_et = et;
    return APP_EXIT_OK;
}

/* Refuses to start when the registry's newest schema of a record cannot be read as the view
 * definition needs (registry_check_view). A registry that cannot answer now is no reason
 * to stay down: messages then wait for it one by one (pipeline.h note 10). */
static int check_view_against_registry(app_t *app)
{
    char err[1024];
    size_t unchecked = 0;
    int rc = registry_check_view(app->ap_registry, app->ap_view, app->ap_catalog, &unchecked, err,
                                 sizeof(err));
    if (rc == RM_ESCHEMA) {
        fprintf(stderr, "projector: %s\n", err);
        return APP_EXIT_USAGE;
    }
    if (rc)
        log_warn("cannot check the view definition against the schema registry; starting anyway",
                 LOG_S("error", rc == RM_EUNAVAIL ? err : rm_strerror(rc)));
    else if (unchecked)
        log_warn("the schema registry has no schema yet for some records the view reads",
                 LOG_I("rules", (int64_t)unchecked));
    return 0;
}

/* The command line: the daemon's flags, and the subcommand with its own. */
typedef struct cli {
    app_args_t cl_args;
    bool cl_until_caught_up, cl_dry_run, cl_json;
    const char *cl_from, *cl_from_time, *cl_to_text;
    const char *cl_dlq_command; /* dlq COMMAND */
    const char *cl_gen_command; /* rebuild, generations or rollback */
    bool cl_rebuild;
    int64_t cl_start_time_ms; /* rebuild --from-time */
    int64_t cl_to;            /* rollback --to */
} cli_t;

/* Reads the flags into cli. Returns -1 to go on, else the exit code (--help, --version,
 * a usage error). */
static int parse_flags(int argc, char **argv, cli_t *cli)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},    {"until-caught-up", no_argument, NULL, 'u'},
        {"set", required_argument, NULL, 's'},       {"log-level", required_argument, NULL, 'L'},
        {"version", no_argument, NULL, 'V'},         {"help", no_argument, NULL, 'h'},
        {"dry-run", no_argument, NULL, 'n'},         {"from", required_argument, NULL, 'F'},
        {"from-time", required_argument, NULL, 'T'}, {"json", no_argument, NULL, 'j'},
        {"to", required_argument, NULL, 't'},        {NULL, 0, NULL, 0},
    };
    static char kafka_sets[APP_MAX_SETS][512]; /* -X values, borrowed by cl_args */
    app_args_t *args = &cli->cl_args;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:us:X:vqVh", options, NULL)) != -1) {
        int rc = 0;
        switch (opt) {
        case 'c':
            args->aa_config = optarg;
            break;
        case 'u':
            cli->cl_until_caught_up = true;
            break;
        case 's':
            rc = app_args_add_set(args, optarg);
            break;
        case 'X':
            rc = app_args_add_kafka(args, optarg, kafka_sets[args->aa_set_count],
                                    sizeof(kafka_sets[0]));
            break;
        case 'L':
            args->aa_log_level = optarg;
            break;
        case 'v':
            args->aa_verbosity++;
            break;
        case 'q':
            args->aa_verbosity--;
            break;
        case 'n':
            cli->cl_dry_run = true;
            break;
        case 'F':
            cli->cl_from = optarg;
            break;
        case 'T':
            cli->cl_from_time = optarg;
            break;
        case 'j':
            cli->cl_json = true;
            break;
        case 't':
            cli->cl_to_text = optarg;
            break;
        case 'V':
            app_print_version("projector");
            return APP_EXIT_OK;
        case 'h':
            usage(stdout);
            return APP_EXIT_OK;
        default:
            usage(stderr);
            return APP_EXIT_USAGE;
        }
        if (rc) {
            fprintf(stderr, "projector: too many --set/-X flags\n");
            return APP_EXIT_USAGE;
        }
    }
    return -1;
}

/* The subcommand after the flags, and the flags that belong to another one. Returns -1
 * to go on, else the exit code of the usage error. */
static int parse_command(int argc, char **argv, cli_t *cli)
{
    if (optind + 2 == argc && strcmp(argv[optind], "dlq") == 0) {
        cli->cl_dlq_command = argv[optind + 1];
    } else if (optind + 1 == argc &&
               (strcmp(argv[optind], "rebuild") == 0 || strcmp(argv[optind], "generations") == 0 ||
                strcmp(argv[optind], "rollback") == 0)) {
        cli->cl_gen_command = argv[optind];
    } else if (optind < argc) {
        fprintf(stderr, "projector: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return APP_EXIT_USAGE;
    }
    const char *gen = cli->cl_gen_command, *from = cli->cl_from, *from_time = cli->cl_from_time;
    cli->cl_rebuild = gen && strcmp(gen, "rebuild") == 0;
    const char *misplaced =
        (from || from_time) && !cli->cl_rebuild ? "--from/--from-time belong to rebuild"
        : cli->cl_json && !(gen && strcmp(gen, "generations") == 0)
            ? "--json belongs to generations"
        : cli->cl_to_text && !(gen && strcmp(gen, "rollback") == 0) ? "--to belongs to rollback"
        : from && from_time                     ? "give --from or --from-time, not both"
        : from && strcmp(from, "earliest") != 0 ? "--from: only 'earliest' (or use --from-time)"
        : cli->cl_until_caught_up && gen        ? "--until-caught-up is for the daemon"
                                                : NULL;
    if (!misplaced && from_time && generations_parse_time(from_time, &cli->cl_start_time_ms))
        misplaced = "--from-time: expected ISO 8601 with a zone, e.g. 2024-05-01T12:00:00Z";
    if (!misplaced && from_time && cli->cl_start_time_ms <= 0)
        misplaced = "--from-time: must be after 1970";
    if (!misplaced && cli->cl_to_text) {
        char *end;
        cli->cl_to = strtoll(cli->cl_to_text, &end, 10);
        if (*end || cli->cl_to <= 0 || cli->cl_to > GEN_ID_MAX)
            misplaced = "--to: expected a generation number (see 'generations')";
    }
    if (misplaced) {
        fprintf(stderr, "projector: %s\n", misplaced);
        return APP_EXIT_USAGE;
    }
    return -1;
}

/* dlq, rebuild, generations or rollback, on a loaded app. Returns the exit code. */
static int run_command(app_t *app, const cli_t *cli)
{
    if (cli->cl_dlq_command)
        return dlq_main(app, cli->cl_dlq_command, cli->cl_dry_run);
    if (cli->cl_rebuild)
        return generations_rebuild_main(app, cli->cl_start_time_ms, &running_pipe, &stop_requested);
    if (strcmp(cli->cl_gen_command, "generations") == 0)
        return generations_list_main(app, cli->cl_json);
    return generations_rollback_main(app, cli->cl_to);
}

/* The data directory and the current generation (a flat store of an older version moved
 * into its first one). Returns the exit code. */
static int find_current_generation(app_t *app, generations_follow_t *follow)
{
    int rc = app_mkdirs(cfg_str(app->ap_cfg, "data_dir"));
    if (rc) {
        log_error("cannot create data_dir", LOG_S("path", cfg_str(app->ap_cfg, "data_dir")),
                  LOG_S("error", rm_strerror(rc)));
        return APP_EXIT_FAILURE;
    }
    rc = app_mkdirs(app->ap_store_dir);
    bool migrated = false;
    rc = rc ? rc : gen_prepare(app->ap_store_dir, &migrated);
    rc = rc ? rc
            : gen_current(app->ap_store_dir, &follow->gf_generation, follow->gf_dir,
                          sizeof(follow->gf_dir));
    if (rc) {
        log_error(rc == RM_EBUSY
                      ? "cannot move the store into generations: another projector writes it"
                      : "cannot prepare the store's generations",
                  LOG_S("path", app->ap_store_dir), LOG_S("error", rm_strerror(rc)));
        return APP_EXIT_FAILURE;
    }
    if (migrated)
        log_info("moved the flat store into its first generation", LOG_S("store", follow->gf_dir));
    return APP_EXIT_OK;
}

/* Everything before the first event: the brokers' login, the erasure ledger merged with
 * the erasure topic, the current generation rebuilt if it may have lost writes, and its
 * writer opened. Returns the exit code; APP_EXIT_OK with stop_requested set when a
 * SIGTERM came meanwhile. */
static int prepare_daemon(app_t *app, generations_follow_t *follow, erasures_t **ret_erasures)
{
    char err[1024];
    int exit_code = find_current_generation(app, follow);
    if (exit_code)
        return exit_code;
    /* A refused login or an untrusted certificate would otherwise keep every client
     * below retrying forever: a configuration error, said once, before anything starts. */
    int rc = kafka_check_login(app->ap_cfg, MAIN_LOGIN_CHECK_MS, &stop_requested, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "projector: cannot connect to Kafka: %s\n", err);
        return APP_EXIT_USAGE;
    }
    if (stop_requested)
        return APP_EXIT_OK; /* stopped while waiting for the brokers: nothing was started */
    /* Before anything is applied (a repair's rebuild included): every erasure any replica
     * published, so a store started empty, or behind a compacted tombstone, never holds
     * an erased key (erasures_topic.h). */
    erasures_t *erasures = erasures_open(app->ap_store_dir, false, err, sizeof(err));
    if (!erasures) {
        log_error("cannot open the erasure ledger", LOG_S("error", err));
        return APP_EXIT_FAILURE;
    }
    *ret_erasures = erasures;
    exit_code = start_erasures_topic(app, erasures, &follow->gf_erasures_topic);
    if (exit_code || stop_requested)
        return exit_code; /* a stop while the erasure topic was read: start nothing more */
    /* Never serve or extend a generation that may have lost writes: rebuild it first. */
    bool rebuilt = false;
    exit_code =
        generations_repair_current(app, follow->gf_dir, &running_pipe, &stop_requested, &rebuilt);
    if (!exit_code && rebuilt &&
        gen_current(app->ap_store_dir, &follow->gf_generation, follow->gf_dir,
                    sizeof(follow->gf_dir)))
        exit_code = APP_EXIT_FAILURE;
    if (exit_code)
        return exit_code;
    bool usage_error = false;
    follow->gf_store = generations_open_writer(app, follow->gf_dir, &usage_error);
    if (!follow->gf_store)
        return usage_error ? APP_EXIT_USAGE : APP_EXIT_FAILURE;
    return APP_EXIT_OK;
}

/* The pipeline over the writer's generation, with its metrics listener, until it stops.
 * Returns the exit code. */
static int run_pipeline(app_t *app, const cli_t *cli, generations_follow_t *follow,
                        erasures_t *erasures)
{
    char err[1024];
    pipeline_t *pl = NULL;
    metrics_http_t *metrics = NULL;
    pipeline_opts_t popts = {.po_cfg = app->ap_cfg,
                             .po_view = app->ap_view,
                             .po_catalog = app->ap_catalog,
                             .po_store = follow->gf_store,
                             .po_until_caught_up = cli->cl_until_caught_up,
                             .po_generation = follow->gf_generation,
                             .po_tick = generations_follow_tick,
                             .po_tick_arg = follow,
                             .po_erasures = erasures,
                             .po_registry = app->ap_registry};
    int exit_code = APP_EXIT_OK, rc = pipeline_new(&popts, &pl, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "projector: %s\n", err);
        /* RM_ECONFIG: Kafka settings librdkafka refuses; restarting will not fix them. */
        return app_exit_for(rc);
    }
    const char *metrics_listen = cfg_str(app->ap_cfg, "projector.metrics_listen");
    if (*metrics_listen && !cli->cl_until_caught_up &&
        !(metrics = metrics_http_start(metrics_listen, pl, err, sizeof(err)))) {
        log_error("cannot start the metrics listener", LOG_S("error", err));
        pipeline_destroy(pl);
        return APP_EXIT_FAILURE;
    }
    running_pipe = pl;
    if (stop_requested) {
        /* Stopped during start-up (with the brokers down, the lookups above take
         * seconds): the pipeline would first read the DLQ topics and the metadata
         * again, at seconds each, only to stop. Nothing was applied; exit now. */
        log_info("stopped before the pipeline started", LOG_S("view", app->ap_view->v_name));
        goto out;
    }
    log_info("projector started", LOG_S("view", app->ap_view->v_name),
             LOG_S("store", follow->gf_dir), LOG_I("generation", follow->gf_generation),
             LOG_S("durability", cfg_str(app->ap_cfg, "projector.durability")),
             LOG_I("until_caught_up", cli->cl_until_caught_up));
    rc = pipeline_run(pl);
    pipeline_stats_t stats;
    pipeline_get_stats(pl, &stats);
    log_info(rc ? "projector stopped on error" : "projector stopped",
             LOG_S("view", app->ap_view->v_name), LOG_I("messages", stats.ps_messages),
             LOG_I("applied", stats.ps_outcomes[ENGINE_APPLIED]),
             LOG_I("stale", stats.ps_outcomes[ENGINE_STALE]),
             LOG_I("parked", stats.ps_outcomes[ENGINE_PARKED]),
             LOG_I("rejected", stats.ps_outcomes[ENGINE_REJECTED]),
             LOG_I("batches", stats.ps_batches), LOG_S("error", rc ? rm_strerror(rc) : NULL));
    exit_code = rc == RM_EGAP       ? APP_EXIT_GAP
                : rc == RM_ESUSPECT ? APP_EXIT_REBUILD
                : rc                ? APP_EXIT_FAILURE
                                    : APP_EXIT_OK;
out:
    running_pipe = NULL;
    metrics_http_stop(metrics);
    pipeline_destroy(pl);
    return exit_code;
}

int main(int argc, char **argv)
{
    cli_t cli = {0};
    int exit_code = parse_flags(argc, argv, &cli);
    if (exit_code < 0)
        exit_code = parse_command(argc, argv, &cli);
    if (exit_code >= 0)
        return exit_code;

    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    app_t app;
    exit_code = app_load(&app, "projector", &cli.cl_args, true);
    if (!exit_code && app.ap_registry && !cli.cl_dlq_command &&
        (!cli.cl_gen_command || cli.cl_rebuild))
        exit_code = check_view_against_registry(&app);
    if (exit_code || cli.cl_dlq_command || cli.cl_gen_command) {
        if (!exit_code)
            exit_code = run_command(&app, &cli);
        app_cleanup(&app);
        return exit_code;
    }
    generations_follow_t follow = {.gf_app = &app};
    erasures_t *erasures = NULL;
    exit_code = prepare_daemon(&app, &follow, &erasures);
    if (!exit_code && !stop_requested)
        exit_code = run_pipeline(&app, &cli, &follow, erasures);
    generations_push_erasures_final(&follow, MAIN_ERASURES_FINAL_MS);
    erasures_topic_destroy(follow.gf_erasures_topic);
    /* The final sync of the generation: if it fails, the generation is marked and the
     * next start rebuilds it; say so with the exit code, whatever else happened. */
    if (store_close(follow.gf_store) == RM_ESUSPECT) {
        log_error("the store's final fsync failed; the next start rebuilds the generation",
                  LOG_S("store", follow.gf_dir));
        exit_code = APP_EXIT_REBUILD;
    }
    erasures_close(erasures);
    app_cleanup(&app);
    return exit_code;
}
