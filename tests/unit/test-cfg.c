/* Tests of cfg.c: defaults, YAML loading, error messages (file:line: key), precedence
 * (file < env < flag), kafka passthrough and --help output. */
#include "cfg.h"
#include "rm_err.h"
#include "tsupport.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

static char *tmpdir;
static char yaml_path[512];
static char err[1024];

/* Removes every RM_* variable, so the host environment cannot change the results. */
static void clear_rm_env(void)
{
    for (;;) {
        char name[256] = "";
        for (char **entry = environ; *entry; entry++) {
            if (strncmp(*entry, "RM_", 3) == 0) {
                size_t len = strcspn(*entry, "=");
                snprintf(name, sizeof(name), "%.*s", (int)len, *entry);
                break;
            }
        }
        if (!*name)
            return;
        unsetenv(name);
    }
}

static void setup(void)
{
    clear_rm_env();
    tmpdir = ts_tmpdir();
    snprintf(yaml_path, sizeof(yaml_path), "%s/p.yaml", tmpdir);
}

static void teardown(void)
{
    clear_rm_env();
    ts_rmtree(tmpdir);
    tmpdir = NULL;
}

static const char *write_yaml(const char *text)
{
    FILE *file = fopen(yaml_path, "w");
    ck_assert_ptr_nonnull(file);
    fputs(text, file);
    fclose(file);
    return yaml_path;
}

/* Loading text must fail with exactly "<path>:<expected>". */
static void expect_load_error(const char *text, const char *expected)
{
    char want[2048];
    snprintf(want, sizeof(want), "%s:%s", yaml_path, expected);
    cfg_t *cfg = cfg_load(write_yaml(text), err, sizeof(err));
    ck_assert_ptr_null(cfg);
    ck_assert_str_eq(err, want);
}

static cfg_t *load_ok(const char *text)
{
    cfg_t *cfg = cfg_load(text ? write_yaml(text) : NULL, err, sizeof(err));
    ck_assert_msg(cfg != NULL, "cfg_load failed: %s", err);
    return cfg;
}

START_TEST(test_defaults)
{
    cfg_t *cfg = load_ok(NULL);
    ck_assert_str_eq(cfg_str(cfg, "data_dir"), "./data");
    ck_assert_str_eq(cfg_str(cfg, "view"), "schemas/views/customer360.yaml");
    ck_assert_str_eq(cfg_str(cfg, "catalog"), "schemas/catalog.yaml");
    ck_assert_str_eq(cfg_str(cfg, "log.level"), "info");
    ck_assert_str_eq(cfg_str(cfg, "log.format"), "auto");
    ck_assert_int_eq(cfg_int(cfg, "projector.batch_max_events"), 50000);
    ck_assert_int_eq(cfg_int(cfg, "projector.batch_max_ms"), 20);
    ck_assert_str_eq(cfg_str(cfg, "projector.durability"), "periodic");
    ck_assert_int_eq(cfg_int(cfg, "projector.sync_interval_ms"), 1000);
    ck_assert_int_eq(cfg_int(cfg, "projector.map_size_mb"), 1024);
    ck_assert_int_eq(cfg_int(cfg, "projector.metadata_refresh_ms"), 10000);
    ck_assert_str_eq(cfg_str(cfg, "projector.metrics_listen"), "127.0.0.1:9464");
    ck_assert_str_eq(cfg_str(cfg, "query_api.listen"), "127.0.0.1:8080");
    ck_assert_int_eq(cfg_int(cfg, "query_api.threads"), 2);
    ck_assert_int_eq(cfg_int(cfg, "query_api.max_connections"), 4096);
    ck_assert_int_eq(cfg_int(cfg, "query_api.timeout_s"), 30);
    ck_assert_str_eq(cfg_origin(cfg, "data_dir"), "default");
    ck_assert_uint_eq(cfg_kafka_count(cfg), 0);
    ck_assert_ptr_null(cfg_kafka_get(cfg, "bootstrap.servers"));
    ck_assert_ptr_null(cfg_origin(cfg, "kafka.bootstrap.servers"));
    cfg_destroy(cfg);
    cfg_destroy(NULL);
}
END_TEST

START_TEST(test_file_nested_and_dotted)
{
    cfg_t *cfg = load_ok("# comment\n"
                         "data_dir: /var/lib/rm\n"
                         "projector:\n"
                         "  batch_max_events: 5000\n"
                         "  durability: sync\n"
                         "query_api.threads: 8\n"
                         "log: {level: debug}\n"
                         "projector.metrics_listen: ''\n");
    ck_assert_str_eq(cfg_str(cfg, "data_dir"), "/var/lib/rm");
    ck_assert_int_eq(cfg_int(cfg, "projector.batch_max_events"), 5000);
    ck_assert_str_eq(cfg_str(cfg, "projector.durability"), "sync");
    ck_assert_int_eq(cfg_int(cfg, "query_api.threads"), 8);
    ck_assert_str_eq(cfg_str(cfg, "log.level"), "debug");
    ck_assert_str_eq(cfg_str(cfg, "projector.metrics_listen"), "");
    char want[4200];
    snprintf(want, sizeof(want), "%s:4", yaml_path);
    ck_assert_str_eq(cfg_origin(cfg, "projector.batch_max_events"), want);
    snprintf(want, sizeof(want), "%s:7", yaml_path);
    ck_assert_str_eq(cfg_origin(cfg, "log.level"), want);
    ck_assert_str_eq(cfg_origin(cfg, "query_api.listen"), "default");
    cfg_destroy(cfg);
}
END_TEST

START_TEST(test_empty_file_gives_defaults)
{
    cfg_t *cfg = load_ok("# nothing set\n");
    ck_assert_int_eq(cfg_int(cfg, "projector.batch_max_ms"), 20);
    cfg_destroy(cfg);
}
END_TEST

START_TEST(test_bad_yaml)
{
    cfg_t *cfg = cfg_load(write_yaml("projector:\n  batch_max_ms: [5\nlog: x\n"), err, sizeof(err));
    ck_assert_ptr_null(cfg);
    char want[4200];
    snprintf(want, sizeof(want), "%s:", yaml_path);
    ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "got %s", err);
}
END_TEST

START_TEST(test_missing_file)
{
    ck_assert_ptr_null(cfg_load("/nonexistent/p.yaml", err, sizeof(err)));
    ck_assert_msg(strncmp(err, "/nonexistent/p.yaml: cannot open", 32) == 0, "got %s", err);
}
END_TEST

START_TEST(test_unknown_keys)
{
    expect_load_error("data_dir: x\nprojector:\n  batch_max_evnts: 5\n",
                      "3: projector.batch_max_evnts: unknown key");
    expect_load_error("bogus: 1\n", "1: bogus: unknown key");
    expect_load_error("bogus: {a: 1}\n", "1: bogus: unknown key");
    expect_load_error("\nlog.levle: info\n", "2: log.levle: unknown key");
}
END_TEST

START_TEST(test_wrong_types)
{
    expect_load_error("projector:\n  batch_max_ms: soon\n",
                      "2: projector.batch_max_ms: expected an integer between 1 and 60000, got "
                      "'soon'");
    expect_load_error("projector:\n  batch_max_ms: 12ms\n",
                      "2: projector.batch_max_ms: expected an integer between 1 and 60000, got "
                      "'12ms'");
    expect_load_error("projector:\n  batch_max_ms: [1, 2]\n",
                      "2: projector.batch_max_ms: expected a value, got a list");
    expect_load_error("projector: 5\n", "1: projector: expected a mapping, got a scalar");
    expect_load_error("data_dir: ''\n", "1: data_dir: expected a non-empty string");
    expect_load_error("- a\n- b\n", "1: (top level): expected a mapping, got a list");
}
END_TEST

START_TEST(test_out_of_range)
{
    expect_load_error("projector: {batch_max_ms: 0}\n",
                      "1: projector.batch_max_ms: expected an integer between 1 and 60000, got "
                      "'0'");
    expect_load_error("query_api:\n  threads: 257\n",
                      "2: query_api.threads: expected an integer between 1 and 256, got '257'");
    expect_load_error("query_api:\n  threads: 99999999999999999999\n",
                      "2: query_api.threads: expected an integer between 1 and 256, got "
                      "'99999999999999999999'");
}
END_TEST

START_TEST(test_bad_enum)
{
    expect_load_error("log:\n  level: loud\n",
                      "2: log.level: expected one of debug|info|warn|error, got 'loud'");
    expect_load_error("projector: {durability: fsync}\n",
                      "1: projector.durability: expected one of sync|nometasync|periodic, got "
                      "'fsync'");
    /* Prefixes of allowed values are not allowed values. */
    expect_load_error("log: {format: js}\n",
                      "1: log.format: expected one of auto|json|text, got 'js'");
}
END_TEST

START_TEST(test_precedence)
{
    const char *text = "projector:\n  batch_max_ms: 50\n  batch_max_events: 7\n";
    cfg_t *cfg = load_ok(text);
    ck_assert_int_eq(cfg_int(cfg, "projector.batch_max_ms"), 50);
    cfg_destroy(cfg);

    setenv("RM_BATCH_MAX_MS", "70", 1);
    cfg = load_ok(text);
    ck_assert_int_eq(cfg_int(cfg, "projector.batch_max_ms"), 70);
    ck_assert_str_eq(cfg_origin(cfg, "projector.batch_max_ms"), "env RM_BATCH_MAX_MS");
    ck_assert_int_eq(cfg_int(cfg, "projector.batch_max_events"), 7); /* file still applies */

    ck_assert_int_eq(cfg_set(cfg, "projector.batch_max_ms", "90", err, sizeof(err)), 0);
    ck_assert_int_eq(cfg_int(cfg, "projector.batch_max_ms"), 90);
    ck_assert_str_eq(cfg_origin(cfg, "projector.batch_max_ms"), "flag");
    ck_assert_int_eq(cfg_set_pair(cfg, "data_dir=/srv/x=y", err, sizeof(err)), 0);
    ck_assert_str_eq(cfg_str(cfg, "data_dir"), "/srv/x=y");
    cfg_destroy(cfg);
}
END_TEST

START_TEST(test_env_errors)
{
    setenv("RM_BATCH_MAX_MS", "soon", 1);
    ck_assert_ptr_null(cfg_load(NULL, err, sizeof(err)));
    ck_assert_str_eq(err, "RM_BATCH_MAX_MS: expected an integer between 1 and 60000, got 'soon'");
    unsetenv("RM_BATCH_MAX_MS");
    setenv("RM_DURABILITY", "never", 1);
    ck_assert_ptr_null(cfg_load(NULL, err, sizeof(err)));
    ck_assert_str_eq(err, "RM_DURABILITY: expected one of sync|nometasync|periodic, got 'never'");
    unsetenv("RM_DURABILITY");
    /* An empty variable is a value: it is how metrics are switched off. */
    setenv("RM_METRICS_LISTEN", "", 1);
    cfg_t *cfg = load_ok(NULL);
    ck_assert_str_eq(cfg_str(cfg, "projector.metrics_listen"), "");
    cfg_destroy(cfg);
}
END_TEST

START_TEST(test_flag_errors)
{
    cfg_t *cfg = load_ok(NULL);
    ck_assert_int_eq(cfg_set_pair(cfg, "nokey", err, sizeof(err)), RM_ECONFIG);
    ck_assert_str_eq(err, "'nokey': expected key=value");
    ck_assert_int_eq(cfg_set_pair(cfg, "=5", err, sizeof(err)), RM_ECONFIG);
    ck_assert_str_eq(err, "'=5': expected key=value");
    ck_assert_int_eq(cfg_set_pair(cfg, "nope=1", err, sizeof(err)), RM_ECONFIG);
    ck_assert_str_eq(err, "nope: unknown key");
    ck_assert_int_eq(cfg_set(cfg, "query_api.timeout_s", "-1", err, sizeof(err)), RM_ECONFIG);
    ck_assert_str_eq(err, "query_api.timeout_s: expected an integer between 1 and 86400, got '-1'");
    ck_assert_int_eq(cfg_set(cfg, "kafka.", "x", err, sizeof(err)), RM_ECONFIG);
    ck_assert_str_eq(err, "kafka.: empty librdkafka property name");
    /* A rejected value leaves the previous one in place. */
    ck_assert_int_eq(cfg_int(cfg, "query_api.timeout_s"), 30);
    ck_assert_str_eq(cfg_origin(cfg, "query_api.timeout_s"), "default");
    cfg_destroy(cfg);
}
END_TEST

START_TEST(test_kafka_passthrough)
{
    setenv("RM_KAFKA_BOOTSTRAP_SERVERS", "10.0.0.1:9092", 1);
    setenv("RM_KAFKA_CLIENT_ID", "proj-1", 1);
    cfg_t *cfg = load_ok("kafka:\n"
                         "  bootstrap.servers: \"127.0.0.1:9092\"\n"
                         "  fetch.wait.max.ms: 10\n"
                         "  queued.min.messages: 200000\n"
                         "kafka.debug: broker\n");
    ck_assert_int_eq(cfg_set_pair(cfg, "kafka.fetch.wait.max.ms=5", err, sizeof(err)), 0);
    ck_assert_uint_eq(cfg_kafka_count(cfg), 5);
    /* Order of first appearance; later sources replace values in place. */
    ck_assert_str_eq(cfg_kafka_name(cfg, 0), "bootstrap.servers");
    ck_assert_str_eq(cfg_kafka_value(cfg, 0), "10.0.0.1:9092");
    ck_assert_str_eq(cfg_kafka_name(cfg, 1), "fetch.wait.max.ms");
    ck_assert_str_eq(cfg_kafka_value(cfg, 1), "5");
    ck_assert_str_eq(cfg_kafka_name(cfg, 2), "queued.min.messages");
    ck_assert_str_eq(cfg_kafka_value(cfg, 2), "200000");
    ck_assert_str_eq(cfg_kafka_name(cfg, 3), "debug"); /* a dotted top-level key */
    ck_assert_str_eq(cfg_kafka_value(cfg, 3), "broker");
    ck_assert_str_eq(cfg_kafka_name(cfg, 4), "client.id");
    ck_assert_str_eq(cfg_kafka_get(cfg, "client.id"), "proj-1");
    ck_assert_ptr_null(cfg_kafka_get(cfg, "group.id"));
    ck_assert_str_eq(cfg_origin(cfg, "kafka.bootstrap.servers"), "env RM_KAFKA_BOOTSTRAP_SERVERS");
    ck_assert_str_eq(cfg_origin(cfg, "kafka.fetch.wait.max.ms"), "flag");
    char want[4200];
    snprintf(want, sizeof(want), "%s:4", yaml_path);
    ck_assert_str_eq(cfg_origin(cfg, "kafka.queued.min.messages"), want);
    cfg_destroy(cfg);
}
END_TEST

START_TEST(test_kafka_errors)
{
    expect_load_error("kafka:\n  fetch: {wait.max.ms: 10}\n",
                      "2: kafka.fetch: expected a scalar value (librdkafka properties are flat), "
                      "got a mapping");
    expect_load_error("kafka: localhost\n",
                      "1: kafka: expected a mapping of librdkafka properties");
}
END_TEST

START_TEST(test_print_help)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    cfg_print_help(out, NULL);
    fclose(out);
    ck_assert_ptr_nonnull(strstr(text, "projector.batch_max_events"));
    ck_assert_ptr_nonnull(strstr(text, "RM_BATCH_MAX_EVENTS"));
    ck_assert_ptr_nonnull(strstr(text, "default: 50000"));
    ck_assert_ptr_nonnull(strstr(text, "sync|nometasync|periodic"));
    ck_assert_ptr_nonnull(strstr(text, "RM_KAFKA_<PROPERTY>"));
    free(text);

    out = open_memstream(&text, &len);
    cfg_print_help(out, "query_api.");
    fclose(out);
    ck_assert_ptr_nonnull(strstr(text, "query_api.listen"));
    ck_assert_ptr_null(strstr(text, "projector."));
    ck_assert_ptr_null(strstr(text, "kafka."));
    free(text);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cfg");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_defaults);
    tcase_add_test(tc, test_file_nested_and_dotted);
    tcase_add_test(tc, test_empty_file_gives_defaults);
    tcase_add_test(tc, test_bad_yaml);
    tcase_add_test(tc, test_missing_file);
    tcase_add_test(tc, test_unknown_keys);
    tcase_add_test(tc, test_wrong_types);
    tcase_add_test(tc, test_out_of_range);
    tcase_add_test(tc, test_bad_enum);
    tcase_add_test(tc, test_precedence);
    tcase_add_test(tc, test_env_errors);
    tcase_add_test(tc, test_flag_errors);
    tcase_add_test(tc, test_kafka_passthrough);
    tcase_add_test(tc, test_kafka_errors);
    tcase_add_test(tc, test_print_help);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
