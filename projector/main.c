/* projector: consume a view's topics and project them into its LMDB store.
 * Wiring only: the logic lives in lib/ (pipeline, engine, store). */
#include "app.h"
#include "cfg.h"
#include "dlq.h"
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

static pipe_t *volatile running_pipe;
static volatile sig_atomic_t stop_requested;

/* Installed before anything slow (broker metadata can take seconds), so a stop during
 * start-up is honoured: the pipeline is never started, or stops after its batch. */
static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
    if (running_pipe)
        pipe_stop(running_pipe);
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: projector --config FILE [options]\n"
            "       projector --config FILE dlq list|replay|purge [--dry-run]\n"
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
            "SIGTERM or SIGINT finish the current batch, commit and exit 0.\n"
            "Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error,\n"
            "3 stopped on a gap (projector.on_gap=stop: restarting will not help).\n"
            "\n"
            "Configuration keys (flag > environment > file > default):\n");
    cfg_print_help(out, NULL);
}

static int parse_durability(const char *text, store_durability_t *ret)
{
    if (strcmp(text, "sync") == 0)
        *ret = STORE_SYNC;
    else if (strcmp(text, "nometasync") == 0)
        *ret = STORE_NOMETASYNC;
    else if (strcmp(text, "periodic") == 0)
        *ret = STORE_PERIODIC;
    else
        return RM_EINVAL;
    return 0;
}

/* A store remembers the view definition that built it; another one needs a rebuild. */
static int check_view_hash(store_t *store, const view_t *view)
{
    MDB_txn *txn;
    int rc = store_write_begin(store, &txn);
    if (rc)
        return rc;
    const void *data;
    size_t len;
    rc = store_meta_get(store, txn, "view_hash", &data, &len);
    if (rc == RM_ENOTFOUND) {
        rc = store_meta_put(store, txn, "view_hash", view->v_hash, strlen(view->v_hash));
        if (!rc)
            rc = store_meta_put(store, txn, "view_name", view->v_name, strlen(view->v_name));
        if (rc) {
            store_write_abort(txn);
            return rc;
        }
        return store_write_commit(store, txn);
    }
    bool same = rc == 0 && len == strlen(view->v_hash) && memcmp(data, view->v_hash, len) == 0;
    store_write_abort(txn);
    if (rc)
        return rc;
    return same ? 0 : RM_EMISMATCH;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"until-caught-up", no_argument, NULL, 'u'},
        {"set", required_argument, NULL, 's'},
        {"log-level", required_argument, NULL, 'L'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {"dry-run", no_argument, NULL, 'n'},
        {NULL, 0, NULL, 0},
    };
    bool dry_run = false;
    app_args_t args = {0};
    static char kafka_sets[APP_MAX_SETS][512];
    bool until_caught_up = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:us:X:vqVh", options, NULL)) != -1) {
        int rc = 0;
        switch (opt) {
        case 'c': args.aa_config = optarg; break;
        case 'u': until_caught_up = true; break;
        case 's': rc = app_args_add_set(&args, optarg); break;
        case 'X':
            rc = app_args_add_kafka(&args, optarg, kafka_sets[args.aa_set_count],
                                    sizeof(kafka_sets[0]));
            break;
        case 'L': args.aa_log_level = optarg; break;
        case 'v': args.aa_verbosity++; break;
        case 'q': args.aa_verbosity--; break;
        case 'n': dry_run = true; break;
        case 'V': app_print_version("projector"); return APP_EXIT_OK;
        case 'h': usage(stdout); return APP_EXIT_OK;
        default: usage(stderr); return APP_EXIT_USAGE;
        }
        if (rc) {
            fprintf(stderr, "projector: too many --set/-X flags\n");
            return APP_EXIT_USAGE;
        }
    }
    const char *dlq_command = NULL;
    if (optind + 2 == argc && strcmp(argv[optind], "dlq") == 0) {
        dlq_command = argv[optind + 1];
    } else if (optind < argc) {
        fprintf(stderr, "projector: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return APP_EXIT_USAGE;
    }

    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    app_t app;
    int exit_code = app_load(&app, "projector", &args, true);
    if (exit_code || dlq_command) {
        if (!exit_code)
            exit_code = dlq_main(&app, dlq_command, dry_run);
        app_cleanup(&app);
        return exit_code;
    }
    store_opts_t sopts = {
        .so_dir = app.ap_store_dir,
        .so_map_size_bytes = (size_t)cfg_int(app.ap_cfg, "projector.map_size_mb") << 20,
        .so_sync_interval_ms = cfg_int(app.ap_cfg, "projector.sync_interval_ms"),
    };
    if (parse_durability(cfg_str(app.ap_cfg, "projector.durability"), &sopts.so_durability)) {
        fprintf(stderr, "projector: projector.durability: expected sync, nometasync or periodic\n");
        app_cleanup(&app);
        return APP_EXIT_USAGE;
    }
    char err[1024];
    store_t *store = NULL;
    pipe_t *pipe = NULL;
    metrics_http_t *metrics = NULL;
    int rc = app_mkdirs(cfg_str(app.ap_cfg, "data_dir"));
    if (rc) {
        log_error("cannot create data_dir", LOG_S("path", cfg_str(app.ap_cfg, "data_dir")),
                  LOG_S("error", rm_strerror(rc)));
        exit_code = APP_EXIT_FAILURE;
        goto out;
    }
    store = store_open(&sopts, err, sizeof(err));
    if (!store) {
        log_error("cannot open the view store", LOG_S("error", err));
        exit_code = APP_EXIT_FAILURE;
        goto out;
    }
    rc = check_view_hash(store, app.ap_view);
    if (rc) {
        log_error(rc == RM_EMISMATCH ? "store was built by another view definition: rebuild it"
                                     : "cannot read the store's metadata",
                  LOG_S("store", app.ap_store_dir), LOG_S("view_hash", app.ap_view->v_hash),
                  LOG_S("error", rm_strerror(rc)));
        exit_code = APP_EXIT_FAILURE;
        goto out;
    }
    pipe_opts_t popts = {.po_cfg = app.ap_cfg, .po_view = app.ap_view, .po_catalog = app.ap_catalog,
                         .po_store = store, .po_until_caught_up = until_caught_up};
    pipe = pipe_new(&popts, err, sizeof(err));
    if (!pipe) {
        fprintf(stderr, "projector: %s\n", err);
        /* "kafka.<prop>: ..." and "kafka consumer/producer: ..." are configuration errors
         * (an invalid value, a missing SASL password): restarting will not fix them. */
        exit_code = strncmp(err, "kafka", 5) == 0 ? APP_EXIT_USAGE : APP_EXIT_FAILURE;
        goto out;
    }
    const char *metrics_listen = cfg_str(app.ap_cfg, "projector.metrics_listen");
    if (*metrics_listen && !until_caught_up) {
        metrics = metrics_http_start(metrics_listen, pipe, err, sizeof(err));
        if (!metrics) {
            log_error("cannot start the metrics listener", LOG_S("error", err));
            exit_code = APP_EXIT_FAILURE;
            goto out;
        }
    }
    running_pipe = pipe;
    if (stop_requested)
        pipe_stop(pipe);
    log_info("projector started", LOG_S("view", app.ap_view->v_name),
             LOG_S("store", app.ap_store_dir),
             LOG_S("durability", cfg_str(app.ap_cfg, "projector.durability")),
             LOG_I("until_caught_up", until_caught_up));
    rc = pipe_run(pipe);
    pipe_stats_t stats;
    pipe_get_stats(pipe, &stats);
    log_info(rc ? "projector stopped on error" : "projector stopped",
             LOG_S("view", app.ap_view->v_name), LOG_I("messages", stats.ps_messages),
             LOG_I("applied", stats.ps_outcomes[ENGINE_APPLIED]),
             LOG_I("stale", stats.ps_outcomes[ENGINE_STALE]),
             LOG_I("parked", stats.ps_outcomes[ENGINE_PARKED]),
             LOG_I("rejected", stats.ps_outcomes[ENGINE_REJECTED]),
             LOG_I("batches", stats.ps_batches), LOG_S("error", rc ? rm_strerror(rc) : NULL));
    exit_code = rc == RM_EGAP ? APP_EXIT_GAP : rc ? APP_EXIT_FAILURE : APP_EXIT_OK;
out:
    running_pipe = NULL;
    metrics_http_stop(metrics);
    pipe_destroy(pipe);
    store_close(store);
    app_cleanup(&app);
    return exit_code;
}
