/* backfill: turns a source service's snapshot (JSON lines, one entity per line) into
 * snapshot events on the view's topics, so a view can be built for history that predates
 * the log (docs/backfill.md).
 *
 * Two passes: every line is validated and encoded into an unnamed spool file first, so a
 * bad line stops the run before anything is produced; then the spool is produced and every
 * delivery report is awaited. Exit: 0 ok, 1 runtime failure (a delivery failed), 2 usage
 * or invalid input. */
#include "app.h"
#include "bf_snap.h"
#include "kafka.h"
#include "log.h"
#include "kprod.h"
#include "rm_err.h"
#include "rm_time.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Progress is redrawn at most this often: fast enough to look live, rare enough to cost
 * nothing next to producing. */
#define PROGRESS_INTERVAL_MS 200
#define PROGRESS_BAR_WIDTH 30
/* Invalid lines printed before the rest are only counted: a wrong file (say, orders given
 * as customers) would otherwise print one error per line. */
#define MAX_REPORTED_ERRORS 100
#define MAX_LINE_BYTES (1024 * 1024)

/* Producer defaults; config and -X override all but idempotence (see main). murmur2_random
 * is the Java client's partitioner and simulate's: a snapshot event lands in the partition
 * of its entity's live events, so they stay in order with each other. */
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
    app_args_t op_app;
    const char *op_aggregate;
    const char *op_input;
    const char *op_version_field;
    bool op_dry_run;
    bool op_skip_invalid;
    char op_storage[APP_MAX_SETS][512]; /* "kafka.<pair>" strings for -X */
    size_t op_storage_used;
} options_t;

typedef struct counts {
    uint64_t c_read;      /* non-blank lines */
    uint64_t c_valid;     /* lines encoded into the spool */
    uint64_t c_invalid;
    uint64_t c_not_shown; /* valid lines of a state the view does not show */
    uint64_t c_produced;  /* delivered */
    uint64_t c_failed;
} counts_t;

static volatile sig_atomic_t stop_requested;

static void on_signal(int signo)
{
    (void)signo;
    stop_requested = 1;
}

static void usage(FILE *out)
{
    fprintf(
        out,
        "Usage: backfill --config FILE --aggregate NAME --input FILE.jsonl [options]\n"
        "Turns a snapshot of a source service's current state (JSON lines, one entity per\n"
        "line) into snapshot events (c360.<aggregate>.<Name>Snapshot) on the aggregate's\n"
        "topic, keyed by the entity id like its live events. The view's version guard makes\n"
        "a re-run, or a snapshot older than what the log already applied, change nothing.\n"
        "Input format per aggregate: docs/backfill.md.\n\n"
        "  -c, --config FILE          config file (data_dir, view, catalog, kafka.*)\n"
        "  -a, --aggregate NAME       customers, orders, loyalty or returns\n"
        "  -i, --input FILE           the snapshot, JSON lines; '-' reads stdin\n"
        "      --version-field NAME   the member holding the entity version (default\n"
        "                             'version'); it must count on the same scale as the\n"
        "                             entity's live events\n"
        "  -n, --dry-run              validate and encode every line, produce nothing\n"
        "      --skip-invalid         report invalid lines, skip them and produce the rest\n"
        "                             (default: any invalid line stops the run, exit 2)\n"
        "  -b, --bootstrap HOST:PORT  kafka.bootstrap.servers\n"
        "  -X PROP=VALUE              any librdkafka property (repeatable); enable.idempotence\n"
        "                             is always on\n"
        "  -s, --set KEY=VALUE        any config key (repeatable)\n"
        "  -q, --quiet                warnings and errors only, no progress bar\n"
        "  -v, --verbose              debug logs\n"
        "  -V, --version              print the version and exit\n"
        "  -h, --help                 print this help and exit\n\n"
        "Invalid lines are reported on stderr as FILE:LINE: member: problem. Blank lines are\n"
        "ignored. A progress bar is drawn on stderr when it is a terminal. The last line on\n"
        "stdout is the summary: backfill aggregate=A read=N valid=N produced=N skipped=N\n"
        "invalid=N not_shown=N failed=N dry_run=BOOL (skipped = invalid + not_shown: closed\n"
        "returns, which the view does not show).\n\n"
        "Exit status: 0 ok; 1 runtime failure (a delivery failed, the broker refused);\n"
        "2 usage error or invalid input (nothing was produced).\n");
}

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "backfill: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\nTry 'backfill --help'.\n");
    return APP_EXIT_USAGE;
}

/* Returns -1 when parsing succeeded, else the exit status. */
static int parse_options(int argc, char **argv, options_t *op)
{
    enum { OPT_VERSION_FIELD = 256, OPT_SKIP_INVALID };
    static const struct option long_options[] = {
        {"config", required_argument, NULL, 'c'},
        {"aggregate", required_argument, NULL, 'a'},
        {"input", required_argument, NULL, 'i'},
        {"version-field", required_argument, NULL, OPT_VERSION_FIELD},
        {"dry-run", no_argument, NULL, 'n'},
        {"skip-invalid", no_argument, NULL, OPT_SKIP_INVALID},
        {"bootstrap", required_argument, NULL, 'b'},
        {"set", required_argument, NULL, 's'},
        {"quiet", no_argument, NULL, 'q'},
        {"verbose", no_argument, NULL, 'v'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "c:a:i:nb:X:s:qvVh", long_options, NULL)) != -1) {
        switch (c) {
        case 'c':
            op->op_app.aa_config = optarg;
            break;
        case 'a':
            op->op_aggregate = optarg;
            break;
        case 'i':
            op->op_input = optarg;
            break;
        case OPT_VERSION_FIELD:
            op->op_version_field = optarg;
            break;
        case 'n':
            op->op_dry_run = true;
            break;
        case OPT_SKIP_INVALID:
            op->op_skip_invalid = true;
            break;
        case 'b':
        case 'X': {
            if (op->op_storage_used == APP_MAX_SETS)
                return usage_error("%s", "too many -X/--bootstrap flags");
            char *slot = op->op_storage[op->op_storage_used++];
            char pair[512];
            snprintf(pair, sizeof(pair), "%s%s", c == 'b' ? "bootstrap.servers=" : "", optarg);
            if (!strchr(pair, '='))
                return usage_error("-X %s: expected PROP=VALUE", optarg);
            if (app_args_add_kafka(&op->op_app, pair, slot, sizeof(op->op_storage[0])))
                return usage_error("-X %s: too long, or too many flags", optarg);
            break;
        }
        case 's':
            if (app_args_add_set(&op->op_app, optarg))
                return usage_error("%s", "too many --set flags");
            break;
        case 'q':
            op->op_app.aa_verbosity--;
            break;
        case 'v':
            op->op_app.aa_verbosity++;
            break;
        case 'V':
            app_print_version("backfill");
            return APP_EXIT_OK;
        case 'h':
            usage(stdout);
            return APP_EXIT_OK;
        default:
            fprintf(stderr, "Try 'backfill --help'.\n");
            return APP_EXIT_USAGE;
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (!op->op_aggregate)
        return usage_error("%s", "--aggregate is required (customers, orders, loyalty, returns)");
    if (!op->op_input)
        return usage_error("%s", "--input is required ('-' for stdin)");
    return -1;
}

/* ---- progress ---- */

typedef struct progress {
    bool pg_on;
    const char *pg_what;
    uint64_t pg_total; /* 0: unknown */
    int64_t pg_start_ms;
    int64_t pg_last_ms;
} progress_t;

static void progress_begin(progress_t *pg, bool on, const char *what, uint64_t total)
{
    *pg = (progress_t){on, what, total, rm_mono_ms(), 0};
}

static void progress_draw(progress_t *pg, uint64_t done, const char *unit, bool final)
{
    int64_t now = rm_mono_ms();
    if (!pg->pg_on || (!final && now - pg->pg_last_ms < PROGRESS_INTERVAL_MS))
        return;
    pg->pg_last_ms = now;
    double secs = (double)(now - pg->pg_start_ms) / 1000.0;
    double rate = secs > 0 ? (double)done / secs : 0;
    if (pg->pg_total) {
        uint64_t shown = done > pg->pg_total ? pg->pg_total : done;
        int filled = (int)(shown * PROGRESS_BAR_WIDTH / pg->pg_total);
        char bar[PROGRESS_BAR_WIDTH + 1];
        memset(bar, '#', (size_t)filled);
        memset(bar + filled, '.', (size_t)(PROGRESS_BAR_WIDTH - filled));
        bar[PROGRESS_BAR_WIDTH] = '\0';
        fprintf(stderr, "\r%-10s [%s] %3d%% %" PRIu64 "/%" PRIu64 " %s, %.0f/s   ", pg->pg_what,
                bar, (int)(shown * 100 / pg->pg_total), done, pg->pg_total, unit, rate);
    } else {
        fprintf(stderr, "\r%-10s %" PRIu64 " %s, %.0f/s   ", pg->pg_what, done, unit, rate);
    }
    if (final)
        fputc('\n', stderr);
    fflush(stderr);
}

/* ---- pass 1: validate and spool ---- */

/* Spool record: u32 key length, key, u32 value length, value (host order: same process). */
static int spool_write(FILE *spool, const bf_snap_msg_t *msg)
{
    uint32_t klen = (uint32_t)msg->bsm_key_len, vlen = (uint32_t)msg->bsm_value_len;
    if (fwrite(&klen, 4, 1, spool) != 1 || fwrite(msg->bsm_key, 1, klen, spool) != klen ||
        fwrite(&vlen, 4, 1, spool) != 1 || fwrite(msg->bsm_value, 1, vlen, spool) != vlen)
        return rm_err_from_errno(errno ? errno : EIO);
    return 0;
}

static bool blank(const char *line, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r' && line[i] != '\n')
            return false;
    return true;
}

/* Reads every line of in. Returns 0, or an rm_err_t on an I/O failure (logged). */
static int validate_input(bf_snap_t *snap, FILE *in, const char *name, FILE *spool,
                          bool progress_on, counts_t *counts, const char **ret_topic)
{
    progress_t pg;
    struct stat st;
    uint64_t total = fstat(fileno(in), &st) == 0 && S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
    progress_begin(&pg, progress_on, "validating", total);
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    uint64_t bytes = 0;
    ssize_t len;
    int rc = 0;
    while (!stop_requested && (len = getline(&line, &cap, in)) >= 0) {
        lineno++;
        bytes += (uint64_t)len;
        progress_draw(&pg, bytes, "bytes", false);
        if (blank(line, (size_t)len))
            continue;
        counts->c_read++;
        bf_snap_msg_t msg;
        char err[512];
        int prc = (size_t)len > MAX_LINE_BYTES
                      ? (snprintf(err, sizeof(err), "(line): longer than %d bytes", MAX_LINE_BYTES),
                         RM_EINVAL)
                      : bf_snap_parse(snap, line, (size_t)len, &msg, err, sizeof(err));
        if (prc == RM_EINVAL) {
            if (++counts->c_invalid <= MAX_REPORTED_ERRORS) {
                if (pg.pg_on)
                    fputc('\n', stderr);
                fprintf(stderr, "%s:%zu: %s\n", name, lineno, err);
            }
            continue;
        }
        if (prc) {
            rc = prc;
            log_error("cannot encode", LOG_S("input", name), LOG_I("line", lineno),
                      LOG_S("error", rm_strerror(prc)));
            break;
        }
        *ret_topic = msg.bsm_topic;
        if (msg.bsm_not_shown) {
            counts->c_not_shown++;
            continue;
        }
        if ((rc = spool_write(spool, &msg))) {
            log_error("cannot write the spool file", LOG_S("error", rm_strerror(rc)));
            break;
        }
        counts->c_valid++;
    }
    if (!rc && ferror(in)) {
        rc = rm_err_from_errno(errno);
        log_error("cannot read the input", LOG_S("input", name), LOG_S("error", rm_strerror(rc)));
    }
    free(line);
    progress_draw(&pg, bytes, "bytes", true);
    if (counts->c_invalid > MAX_REPORTED_ERRORS)
        fprintf(stderr, "%s: %" PRIu64 " more invalid lines not shown\n", name,
                counts->c_invalid - MAX_REPORTED_ERRORS);
    return rc;
}

/* ---- pass 2: produce ---- */

static int produce_spool(kprod_t *kp, FILE *spool, const char *topic, bool progress_on,
                         counts_t *counts)
{
    progress_t pg;
    progress_begin(&pg, progress_on, "producing", counts->c_valid);
    rewind(spool);
    char *key = NULL, *value = NULL;
    size_t key_cap = 0, value_cap = 0;
    int rc = 0;
    for (uint64_t i = 0; i < counts->c_valid && !stop_requested; i++) {
        uint32_t klen, vlen;
        if (fread(&klen, 4, 1, spool) != 1) {
            rc = RM_EIO;
            break;
        }
        if (klen > key_cap) {
            char *k = realloc(key, klen);
            if (!k) {
                rc = RM_ENOMEM;
                break;
            }
            key = k;
            key_cap = klen;
        }
        if (fread(key, 1, klen, spool) != klen || fread(&vlen, 4, 1, spool) != 1) {
            rc = RM_EIO;
            break;
        }
        if (vlen > value_cap) {
            char *v = realloc(value, vlen);
            if (!v) {
                rc = RM_ENOMEM;
                break;
            }
            value = v;
            value_cap = vlen;
        }
        if (fread(value, 1, vlen, spool) != vlen) {
            rc = RM_EIO;
            break;
        }
        kprod_msg_t msg = {.km_topic = topic,
                           .km_key = key,
                           .km_key_len = klen,
                           .km_value = value,
                           .km_value_len = vlen};
        if ((rc = kprod_send(kp, &msg)))
            break;
        kprod_poll(kp);
        progress_draw(&pg, kprod_delivered(kp), "events", false);
    }
    free(key);
    free(value);
    if (rc)
        log_error("cannot produce", LOG_S("topic", topic), LOG_S("error", rm_strerror(rc)),
                  LOG_S("detail", kprod_error(kp) ? kprod_error(kp) : ""));
    /* Flush even after a failure: what was queued is still delivered or counted. */
    int flush_rc = kprod_flush(kp, -1);
    if (!flush_rc && kprod_failed(kp))
        flush_rc = RM_EKAFKA;
    progress_draw(&pg, kprod_delivered(kp), "events", true);
    counts->c_produced = kprod_delivered(kp);
    counts->c_failed = kprod_failed(kp);
    if (flush_rc)
        log_error("delivery failed", LOG_S("topic", topic), LOG_I("failed", counts->c_failed),
                  LOG_I("delivered", counts->c_produced),
                  LOG_S("error", kprod_error(kp) ? kprod_error(kp) : "fatal"));
    return rc ? rc : flush_rc;
}

/* What one run holds between its steps; run_cleanup releases whatever was set. */
typedef struct run {
    bf_snap_t *r_snap;
    FILE *r_in;
    const char *r_input_name;
    FILE *r_spool;
    rd_kafka_conf_t *r_conf;
    kprod_t *r_kp;
    const char *r_topic;
    bool r_progress_on;
    counts_t r_counts;
} run_t;

/* The aggregate's snapshot shape with its frame id, refused when the view has no rule for
 * it. 0, or the exit status to stop with. */
static int run_load_snapshot(run_t *run, app_t *app, const options_t *op)
{
    char errstr[512];
    run->r_snap = bf_snap_new(app->ap_catalog, op->op_aggregate, op->op_version_field, errstr,
                              sizeof(errstr));
    if (!run->r_snap) {
        fprintf(stderr, "backfill: %s\n", errstr);
        return APP_EXIT_USAGE;
    }
    bf_snap_t *snap = run->r_snap;
    int32_t frame_id = bf_snap_entry(snap)->ce_id;
    if (!op->op_dry_run && app_frame_id(app, bf_snap_entry(snap), bf_snap_entry(snap)->ce_topic,
                                        &frame_id, errstr, sizeof(errstr))) {
        fprintf(stderr, "backfill: %s\n", errstr);
        return APP_EXIT_FAILURE;
    }
    bf_snap_set_frame_id(snap, frame_id);
    if (!view_rule_for(app->ap_view, bf_snap_record(snap))) {
        fprintf(stderr, "backfill: view %s has no rule for %s: its events would change nothing\n",
                app->ap_view->v_name, bf_snap_record(snap));
        return APP_EXIT_USAGE;
    }
    return 0;
}

/* The producer configuration, built before reading anything so a bad -X is a usage error,
 * not a late failure. Idempotence is forced: a retried send must not become a second copy
 * in the log. 0, or the exit status to stop with. */
static int run_producer_conf(run_t *run, app_t *app, const options_t *op)
{
    char errstr[512];
    run->r_conf = kafka_conf_new(app->ap_cfg, producer_defaults, errstr, sizeof(errstr));
    if (!run->r_conf || rd_kafka_conf_set(run->r_conf, "enable.idempotence", "true", errstr,
                                          sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "backfill: %s\n", errstr);
        return APP_EXIT_USAGE;
    }
    if (!op->op_dry_run && !cfg_kafka_get(app->ap_cfg, "bootstrap.servers"))
        return usage_error("%s", "no kafka.bootstrap.servers (config, -b or "
                                 "RM_KAFKA_BOOTSTRAP_SERVERS), or use --dry-run");
    return 0;
}

/* The input (a file or "-" for stdin) and the spool the valid lines are copied to. 0, or
 * the exit status to stop with. */
static int run_open_files(run_t *run, const options_t *op)
{
    bool from_stdin = strcmp(op->op_input, "-") == 0;
    run->r_input_name = from_stdin ? "(stdin)" : op->op_input;
    run->r_in = from_stdin ? stdin : fopen(op->op_input, "r");
    if (!run->r_in) {
        fprintf(stderr, "backfill: %s: %s\n", op->op_input, strerror(errno));
        return APP_EXIT_USAGE;
    }
    run->r_spool = tmpfile();
    if (!run->r_spool) {
        log_error("cannot create a spool file", LOG_S("error", strerror(errno)));
        return APP_EXIT_FAILURE;
    }
    return 0;
}

/* Produces the spooled valid events (not on a dry run). The exit status; *ret_summary is
 * false when the failure comes before anything is produced. */
static int run_produce(run_t *run, const options_t *op, bool *ret_summary)
{
    *ret_summary = true;
    if (op->op_dry_run || !run->r_counts.c_valid)
        return APP_EXIT_OK;
    char errstr[512];
    run->r_kp = kprod_new(run->r_conf, NULL, NULL, errstr, sizeof(errstr));
    run->r_conf = NULL;
    if (!run->r_kp) {
        log_error("cannot create the producer", LOG_S("error", errstr));
        *ret_summary = false;
        return APP_EXIT_FAILURE;
    }
    if (produce_spool(run->r_kp, run->r_spool, run->r_topic, run->r_progress_on, &run->r_counts))
        return APP_EXIT_FAILURE;
    if (stop_requested) {
        log_warn("interrupted: the rest was not produced",
                 LOG_I("produced", run->r_counts.c_produced),
                 LOG_I("valid", run->r_counts.c_valid));
        return APP_EXIT_FAILURE;
    }
    return APP_EXIT_OK;
}

/* Validates every line, then produces the valid ones. The exit status; *ret_summary says
 * whether the summary line is due. */
static int run_validate_and_produce(run_t *run, const options_t *op, bool *ret_summary)
{
    *ret_summary = false;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    run->r_progress_on = op->op_app.aa_verbosity >= 0 && isatty(STDERR_FILENO);
    if (validate_input(run->r_snap, run->r_in, run->r_input_name, run->r_spool, run->r_progress_on,
                       &run->r_counts, &run->r_topic))
        return APP_EXIT_FAILURE;
    if (stop_requested) {
        log_warn("interrupted before producing anything");
        return APP_EXIT_FAILURE;
    }
    const counts_t *counts = &run->r_counts;
    if (counts->c_invalid && !op->op_skip_invalid) {
        fprintf(stderr,
                "backfill: %" PRIu64 " invalid line%s: nothing produced "
                "(--skip-invalid produces the valid ones)\n",
                counts->c_invalid, counts->c_invalid == 1 ? "" : "s");
        *ret_summary = true;
        return APP_EXIT_USAGE;
    }
    return run_produce(run, op, ret_summary);
}

static void print_summary(const options_t *op, const counts_t *counts)
{
    printf("backfill aggregate=%s read=%" PRIu64 " valid=%" PRIu64 " produced=%" PRIu64
           " skipped=%" PRIu64 " invalid=%" PRIu64 " not_shown=%" PRIu64 " failed=%" PRIu64
           " dry_run=%s\n",
           op->op_aggregate, counts->c_read, counts->c_valid, counts->c_produced,
           counts->c_invalid + counts->c_not_shown, counts->c_invalid, counts->c_not_shown,
           counts->c_failed, op->op_dry_run ? "true" : "false");
    fflush(stdout);
}

static void run_cleanup(run_t *run)
{
    if (run->r_in && run->r_in != stdin)
        fclose(run->r_in);
    if (run->r_spool)
        fclose(run->r_spool);
    if (run->r_conf)
        rd_kafka_conf_destroy(run->r_conf);
    kprod_destroy(run->r_kp, 0, false);
    bf_snap_destroy(run->r_snap);
}

int main(int argc, char **argv)
{
    static options_t op;
    int status = parse_options(argc, argv, &op);
    if (status >= 0)
        return status;
    app_t app;
    status = app_load(&app, "backfill", &op.op_app, true);
    if (status) {
        app_cleanup(&app);
        return status;
    }
    run_t run = {0};
    status = run_load_snapshot(&run, &app, &op);
    if (!status)
        status = run_producer_conf(&run, &app, &op);
    if (!status)
        status = run_open_files(&run, &op);
    if (!status) {
        bool summary;
        status = run_validate_and_produce(&run, &op, &summary);
        if (summary)
            print_summary(&op, &run.r_counts);
    }
    run_cleanup(&run);
    app_cleanup(&app);
    return status;
}
