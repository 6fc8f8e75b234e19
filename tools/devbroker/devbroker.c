/* devbroker: an embedded Kafka-protocol broker (librdkafka's mock cluster) in its own
 * process on loopback, for the demo, the tests and benchmarks.
 *
 * It must be a separate process: crash tests kill the projector, and a mock cluster
 * lives inside the process that created it (docs/architecture.md §2). Fault injection commands
 * are read line by line from --control FIFO (or stdin with --control -). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_TOPICS                                                                             \
    "customers,orders,payments,shipments,loyalty,returns,customers.dlq,orders.dlq,payments.dlq,"   \
    "shipments.dlq,loyalty.dlq,returns.dlq,customer360.repairs,customer360.repairs.dlq,"           \
    "customer360.erasures"

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: devbroker [options]\n"
            "\n"
            "Runs a Kafka-protocol broker (librdkafka mock cluster) on loopback until SIGINT\n"
            "or SIGTERM, prints its bootstrap address as the first line of stdout.\n"
            "\n"
            "  -p, --partitions N      partitions per topic (default 6)\n"
            "  -b, --brokers N         brokers (default 1)\n"
            "  -t, --topics A,B,...    topics to create (default: the Customer 360 topics,\n"
            "                          their .dlq topics, customer360.repairs and its .dlq,\n"
            "                          customer360.erasures)\n"
            "  -f, --bootstrap-file F  also write the address to F (atomically)\n"
            "  -c, --control FIFO      read fault-injection commands from FIFO ('-': stdin):\n"
            "                            broker-down ID | broker-up ID | rtt ID MS\n"
            "                            leader TOPIC PARTITION BROKER\n"
            "                            error APIKEY COUNT ERRCODE  (e.g. error 1 5 6: Fetch)\n"
            "                            clear APIKEY\n"
            "  -h, --help              this help\n"
            "Exit codes: 0 stopped by a signal, 1 runtime failure, 2 usage error.\n");
}

static int write_file_atomic(const char *path, const char *text)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -1;
    fprintf(f, "%s\n", text);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static void run_command(rd_kafka_mock_cluster_t *mc, char *line)
{
    char *argv[6] = {0};
    int argc = 0;
    for (char *tok = strtok(line, " \t\r\n"); tok && argc < 6; tok = strtok(NULL, " \t\r\n"))
        argv[argc++] = tok;
    if (argc == 0)
        return;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (strcmp(argv[0], "broker-down") == 0 && argc == 2)
        err = rd_kafka_mock_broker_set_down(mc, atoi(argv[1]));
    else if (strcmp(argv[0], "broker-up") == 0 && argc == 2)
        err = rd_kafka_mock_broker_set_up(mc, atoi(argv[1]));
    else if (strcmp(argv[0], "rtt") == 0 && argc == 3)
        err = rd_kafka_mock_broker_set_rtt(mc, atoi(argv[1]), atoi(argv[2]));
    else if (strcmp(argv[0], "leader") == 0 && argc == 4)
        err = rd_kafka_mock_partition_set_leader(mc, argv[1], atoi(argv[2]), atoi(argv[3]));
    else if (strcmp(argv[0], "error") == 0 && argc == 4) {
        int count = atoi(argv[2]);
        rd_kafka_resp_err_t *errs = calloc((size_t)(count > 0 ? count : 1), sizeof(*errs));
        for (int i = 0; i < count; i++)
            errs[i] = (rd_kafka_resp_err_t)atoi(argv[3]);
        rd_kafka_mock_push_request_errors_array(mc, (int16_t)atoi(argv[1]), (size_t)count, errs);
        free(errs);
    } else if (strcmp(argv[0], "clear") == 0 && argc == 2)
        rd_kafka_mock_clear_request_errors(mc, (int16_t)atoi(argv[1]));
    else {
        fprintf(stderr, "devbroker: error: unknown command '%s'\n", argv[0]);
        return;
    }
    if (err)
        fprintf(stderr, "devbroker: error: %s: %s\n", argv[0], rd_kafka_err2str(err));
    else
        fprintf(stderr, "devbroker: ok: %s\n", argv[0]);
}

typedef struct db_options {
    int do_partitions;
    int do_brokers;
    const char *do_topics;
    const char *do_bootstrap_file;
    const char *do_control;
} db_options_t;

/* Returns -1 to go on, or the exit code (0 after --help, 2 on a usage error). */
static int parse_options(int argc, char **argv, db_options_t *op)
{
    static const struct option options[] = {{"partitions", required_argument, NULL, 'p'},
                                            {"brokers", required_argument, NULL, 'b'},
                                            {"topics", required_argument, NULL, 't'},
                                            {"bootstrap-file", required_argument, NULL, 'f'},
                                            {"control", required_argument, NULL, 'c'},
                                            {"help", no_argument, NULL, 'h'},
                                            {NULL, 0, NULL, 0}};
    *op = (db_options_t){.do_partitions = 6, .do_brokers = 1, .do_topics = DEFAULT_TOPICS};
    int opt;
    while ((opt = getopt_long(argc, argv, "p:b:t:f:c:h", options, NULL)) != -1) {
        switch (opt) {
        case 'p':
            op->do_partitions = atoi(optarg);
            break;
        case 'b':
            op->do_brokers = atoi(optarg);
            break;
        case 't':
            op->do_topics = optarg;
            break;
        case 'f':
            op->do_bootstrap_file = optarg;
            break;
        case 'c':
            op->do_control = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (op->do_partitions < 1 || op->do_partitions > 1000 || op->do_brokers < 1 ||
        op->do_brokers > 16 || optind < argc) {
        usage(stderr);
        return 2;
    }
    return -1;
}

/* Each topic of the comma-separated list; one that cannot be created is reported and
 * skipped. */
static void create_topics(rd_kafka_mock_cluster_t *mc, const db_options_t *op)
{
    int replicas = op->do_brokers < 3 ? op->do_brokers : 3;
    char *list = strdup(op->do_topics);
    for (char *t = strtok(list, ","); t; t = strtok(NULL, ",")) {
        rd_kafka_resp_err_t terr = rd_kafka_mock_topic_create(mc, t, op->do_partitions, replicas);
        if (terr)
            fprintf(stderr, "devbroker: topic %s: %s\n", t, rd_kafka_err2str(terr));
    }
    free(list);
}

/* The bootstrap address as the first line of stdout, and in --bootstrap-file. */
static void announce_bootstrap(rd_kafka_mock_cluster_t *mc, const char *bootstrap_file)
{
    const char *bootstrap = rd_kafka_mock_cluster_bootstraps(mc);
    printf("%s\n", bootstrap);
    fflush(stdout);
    if (bootstrap_file && write_file_atomic(bootstrap_file, bootstrap) != 0)
        fprintf(stderr, "devbroker: cannot write %s: %s\n", bootstrap_file, strerror(errno));
}

/* The descriptor commands are read from: 0 for "-", the FIFO (created when missing), or -1
 * without --control or when the FIFO cannot be opened. */
static int open_control(const char *control)
{
    if (!control)
        return -1;
    if (strcmp(control, "-") == 0)
        return 0;
    if (mkfifo(control, 0600) != 0 && errno != EEXIST)
        fprintf(stderr, "devbroker: cannot create %s: %s\n", control, strerror(errno));
    return open(control, O_RDWR | O_NONBLOCK); /* RDWR: never sees EOF */
}

/* Runs each complete line read from control_fd as a command until a signal stops it. */
static void serve_control(rd_kafka_mock_cluster_t *mc, int control_fd)
{
    char line[512];
    size_t used = 0;
    while (!stopping) {
        struct pollfd pfd = {control_fd, POLLIN, 0};
        int n = poll(control_fd >= 0 ? &pfd : NULL, control_fd >= 0 ? 1 : 0, 200);
        if (n <= 0 || !(pfd.revents & POLLIN))
            continue;
        ssize_t got = read(control_fd, line + used, sizeof(line) - 1 - used);
        if (got <= 0) {
            if (control_fd == 0 && got == 0)
                control_fd = -1; /* stdin closed: keep running */
            continue;
        }
        used += (size_t)got;
        line[used] = '\0';
        char *nl;
        while ((nl = strchr(line, '\n'))) {
            *nl = '\0';
            run_command(mc, line);
            memmove(line, nl + 1, used - (size_t)(nl + 1 - line) + 1);
            used -= (size_t)(nl + 1 - line);
        }
        if (used == sizeof(line) - 1)
            used = 0; /* an over-long line: drop it */
    }
}

int main(int argc, char **argv)
{
    db_options_t op;
    int status = parse_options(argc, argv, &op);
    if (status >= 0)
        return status;
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk) {
        fprintf(stderr, "devbroker: %s\n", err);
        return 1;
    }
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(rk, op.do_brokers);
    if (!mc) {
        fprintf(stderr, "devbroker: cannot create the mock cluster\n");
        rd_kafka_destroy(rk);
        return 1;
    }
    create_topics(mc, &op);
    announce_bootstrap(mc, op.do_bootstrap_file);
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int control_fd = open_control(op.do_control);
    serve_control(mc, control_fd);
    if (control_fd > 0)
        close(control_fd);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
