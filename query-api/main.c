/* query-api: serve a view's store as JSON over HTTP. Wiring only (see http_*.c). */
#include "app.h"
#include "auth.h"
#include "cfg.h"
#include "http_server.h"
#include "log.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *out)
{
    fprintf(out, "Usage: query-api --config FILE [options]\n"
                 "\n"
                 "Serves the view's LMDB store (opened read-only) as JSON over HTTP:\n"
                 "  GET /v1/views/{view}/{key}         the document, its freshness and lag; takes\n"
                 "                                     fields, <list>_limit, <list>_cursor,\n"
                 "                                     max_staleness_ms, min_offsets, wait_ms\n"
                 "                                     and If-None-Match (docs/query-api.md)\n"
                 "  GET /v1/views/{view}?{index}=VALUE  lookup by a declared index (email, phone,\n"
                 "                                     order_id, ...)\n"
                 "  GET /healthz  /readyz  /metrics  /v1/status  /dashboard  /openapi.json\n"
                 "Live sections of the view (live: in its definition) are fetched from their\n"
                 "service on each read, within their deadline (query_api.live_urls).\n"
                 "With query_api.tls.cert_file and key_file it serves HTTPS only, and with\n"
                 "query_api.tls.client_ca_file it requires client certificates signed by that CA.\n"
                 "Errors are RFC 9457 application/problem+json. View reads and lookups need\n"
                 "'Authorization: Bearer JWT' or 'X-Api-Key: KEY' unless query_api.auth.enabled\n"
                 "is off (docs/query-api.md, Security).\n"
                 "\n"
                 "       query-api token --config FILE --sub NAME --role ROLE [...] [--ttl-s N]\n"
                 "prints a development HS256 token signed with the configured secret (see\n"
                 "'query-api token --help').\n"
                 "\n"
                 "Options:\n"
                 "  -c, --config FILE       config file (YAML)\n"
                 "  -s, --set KEY=VALUE     set a config key (beats environment and file)\n"
                 "      --log-level LEVEL   debug, info, warn or error\n"
                 "  -v, -q                  more / less logging\n"
                 "  -V, --version           print version and library versions\n"
                 "  -h, --help              this help\n"
                 "\n"
                 "SIGTERM or SIGINT stop it (exit 0). Exit codes: 0 ok, 1 runtime failure\n"
                 "(a busy port, out of memory: a restart may pass),\n"
                 "2 usage or configuration error.\n"
                 "\n"
                 "Configuration keys (flag > environment > file > default):\n");
    cfg_print_help(out, NULL);
}

static void token_usage(FILE *out)
{
    fprintf(out, "Usage: query-api token --config FILE --sub NAME --role ROLE [--role ROLE...]\n"
                 "                       [--ttl-s SECONDS] [--set KEY=VALUE...]\n"
                 "\n"
                 "Prints a bearer token (HS256) on stdout, signed with the configured secret\n"
                 "(query_api.auth.hs256_secret_file or RM_JWT_HS256_SECRET) and carrying the\n"
                 "configured kid, issuer and audience: for development, the demo and tests.\n"
                 "Production tokens come from the identity provider.\n"
                 "\n"
                 "  -c, --config FILE   config file (YAML)\n"
                 "  -s, --set K=V       set a config key\n"
                 "      --sub NAME      the token's subject (the principal in the audit log)\n"
                 "      --role ROLE     a role of the policy file (repeatable)\n"
                 "      --ttl-s N       lifetime in seconds (default 3600, at most 31536000)\n"
                 "\n"
                 "Exit codes: 0 printed, 2 usage or configuration error.\n");
}

/* `query-api token`: a development token (see token_usage). */
static int token_main(int argc, char **argv)
{
    static const struct option options[] = {{"config", required_argument, NULL, 'c'},
                                            {"set", required_argument, NULL, 's'},
                                            {"sub", required_argument, NULL, 'S'},
                                            {"role", required_argument, NULL, 'r'},
                                            {"ttl-s", required_argument, NULL, 't'},
                                            {"help", no_argument, NULL, 'h'},
                                            {NULL, 0, NULL, 0}};
    app_args_t args = {0};
    const char *sub = NULL, *roles[16];
    size_t role_count = 0;
    long long ttl_s = 3600;
    int opt;
    while ((opt = getopt_long(argc, argv, "c:s:h", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            args.aa_config = optarg;
            break;
        case 's':
            if (app_args_add_set(&args, optarg)) {
                fprintf(stderr, "query-api token: too many --set flags\n");
                return APP_EXIT_USAGE;
            }
            break;
        case 'S':
            sub = optarg;
            break;
        case 'r':
            if (role_count == sizeof(roles) / sizeof(roles[0])) {
                fprintf(stderr, "query-api token: at most 16 roles\n");
                return APP_EXIT_USAGE;
            }
            roles[role_count++] = optarg;
            break;
        case 't': {
            char *end;
            ttl_s = strtoll(optarg, &end, 10);
            if (*end || ttl_s < 1 || ttl_s > 31536000) {
                fprintf(stderr, "query-api token: --ttl-s must be 1 to 31536000\n");
                return APP_EXIT_USAGE;
            }
            break;
        }
        case 'h':
            token_usage(stdout);
            return APP_EXIT_OK;
        default:
            token_usage(stderr);
            return APP_EXIT_USAGE;
        }
    }
    if (!sub || !*sub || role_count == 0 || optind < argc) {
        fprintf(stderr, "query-api token: --sub and at least one --role are required\n");
        token_usage(stderr);
        return APP_EXIT_USAGE;
    }
    app_t app;
    int exit_code = app_load(&app, "query-api token", &args, false);
    char err[512], *token = NULL;
    if (!exit_code && auth_mint_hs256(app.ap_cfg, sub, roles, role_count, ttl_s,
                                      (int64_t)time(NULL), &token, err, sizeof(err))) {
        fprintf(stderr, "query-api token: %s\n", err);
        exit_code = APP_EXIT_USAGE;
    }
    if (token)
        printf("%s\n", token);
    free(token);
    app_cleanup(&app);
    return exit_code;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "token") == 0)
        return token_main(argc - 1, argv + 1);
    static const struct option options[] = {{"config", required_argument, NULL, 'c'},
                                            {"set", required_argument, NULL, 's'},
                                            {"log-level", required_argument, NULL, 'L'},
                                            {"version", no_argument, NULL, 'V'},
                                            {"help", no_argument, NULL, 'h'},
                                            {NULL, 0, NULL, 0}};
    app_args_t args = {0};
    int opt;
    while ((opt = getopt_long(argc, argv, "c:s:vqVh", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            args.aa_config = optarg;
            break;
        case 's':
            if (app_args_add_set(&args, optarg)) {
                fprintf(stderr, "query-api: too many --set flags\n");
                return APP_EXIT_USAGE;
            }
            break;
        case 'L':
            args.aa_log_level = optarg;
            break;
        case 'v':
            args.aa_verbosity++;
            break;
        case 'q':
            args.aa_verbosity--;
            break;
        case 'V':
            app_print_version("query-api");
            return APP_EXIT_OK;
        case 'h':
            usage(stdout);
            return APP_EXIT_OK;
        default:
            usage(stderr);
            return APP_EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "query-api: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return APP_EXIT_USAGE;
    }
    /* Block the stop signals before any thread starts, then wait for them here. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    app_t app;
    int exit_code = app_load(&app, "query-api", &args, true);
    if (exit_code) {
        app_cleanup(&app);
        return exit_code;
    }
    char err[512];
    http_server_t *server = NULL;
    int rc = http_server_start(&app, &server, err, sizeof(err));
    if (rc) {
        log_error("cannot start the HTTP server", LOG_S("error", err));
        app_cleanup(&app);
        /* RM_ECONFIG: settings no restart fixes (2); a busy port or memory may pass (1). */
        return app_exit_for(rc);
    }
    log_info("query-api listening", LOG_S("listen", cfg_str(app.ap_cfg, "query_api.listen")),
             LOG_S("scheme", *cfg_str(app.ap_cfg, "query_api.tls.cert_file") ? "https" : "http"),
             LOG_S("view", app.ap_view->v_name), LOG_S("store", app.ap_store_dir),
             LOG_I("threads", cfg_int(app.ap_cfg, "query_api.threads")));
    int sig;
    sigwait(&stop, &sig);
    log_info("query-api stopping", LOG_I("signal", sig));
    http_server_stop(server);
    app_cleanup(&app);
    return APP_EXIT_OK;
}
