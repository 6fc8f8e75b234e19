/* app: shared program start-up: config, flags, logging, catalog, view. */
#include "app.h"
#include "log.h"
#include "rm_err.h"
#include "rm_build.h"

#include <avro.h>
#include <jansson.h>
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <lmdb.h>
#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

int app_args_add_set(app_args_t *args, const char *pair)
{
    if (args->aa_set_count >= APP_MAX_SETS)
        return RM_EINVAL;
    args->aa_sets[args->aa_set_count++] = pair;
    return 0;
}

int app_args_add_kafka(app_args_t *args, const char *pair, char *storage, size_t storage_len)
{
    if ((size_t)snprintf(storage, storage_len, "kafka.%s", pair) >= storage_len)
        return RM_EINVAL;
    return app_args_add_set(args, storage);
}

int app_parse_listen(const char *text, struct sockaddr_in *ret_addr)
{
    const char *colon = strrchr(text, ':');
    if (!colon || colon == text || (size_t)(colon - text) >= 64)
        return RM_EINVAL;
    char host[64];
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || port < 0 || port > 65535)
        return RM_EINVAL;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
        return RM_EINVAL;
    *ret_addr = addr;
    return 0;
}

int app_mkdirs(const char *path)
{
    char tmp[4096];
    if (strlen(path) >= sizeof(tmp))
        return RM_EINVAL;
    strcpy(tmp, path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return rm_err_from_errno(errno);
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return rm_err_from_errno(errno);
    return 0;
}

int app_load(app_t *app, const char *prog, const app_args_t *args, bool load_view)
{
    char err[1024];
    memset(app, 0, sizeof(*app));
    app->ap_prog = prog;
    app->ap_cfg = cfg_load(args->aa_config, err, sizeof(err));
    if (!app->ap_cfg) {
        fprintf(stderr, "%s: %s\n", prog, err);
        return APP_EXIT_USAGE;
    }
    for (size_t i = 0; i < args->aa_set_count; i++) {
        if (cfg_set_pair(app->ap_cfg, args->aa_sets[i], err, sizeof(err))) {
            fprintf(stderr, "%s: %s\n", prog, err);
            return APP_EXIT_USAGE;
        }
    }
    log_level_t level;
    log_format_t format;
    const char *level_text =
        args->aa_log_level ? args->aa_log_level : cfg_str(app->ap_cfg, "log.level");
    if (log_level_parse(level_text, &level)) {
        fprintf(stderr, "%s: --log-level: expected debug, info, warn or error, got '%s'\n", prog,
                level_text);
        return APP_EXIT_USAGE;
    }
    int shifted = (int)level - args->aa_verbosity;
    level = shifted < LOG_DEBUG   ? LOG_DEBUG
            : shifted > LOG_ERROR ? LOG_ERROR
                                  : (log_level_t)shifted;
    if (log_format_parse(cfg_str(app->ap_cfg, "log.format"), &format))
        format = LOG_FORMAT_AUTO;
    log_init(prog, level, format);
    if (!load_view)
        return 0;
    app->ap_catalog = catalog_load(cfg_str(app->ap_cfg, "catalog"), err, sizeof(err));
    if (!app->ap_catalog) {
        fprintf(stderr, "%s: %s\n", prog, err);
        return APP_EXIT_USAGE;
    }
    const char *registry_url = cfg_str(app->ap_cfg, "schema_registry.url");
    if (registry_url && *registry_url) {
        registry_opts_t ro = {
            .ro_url = registry_url,
            .ro_username = cfg_str(app->ap_cfg, "schema_registry.username"),
            .ro_password = cfg_str(app->ap_cfg, "schema_registry.password"),
            .ro_ca_file = cfg_str(app->ap_cfg, "schema_registry.ca_file"),
            .ro_timeout_ms = cfg_int(app->ap_cfg, "schema_registry.timeout_ms"),
        };
        if (registry_naming_parse(cfg_str(app->ap_cfg, "schema_registry.subject_naming"),
                                  &ro.ro_naming) ||
            !(app->ap_registry = registry_new(&ro, err, sizeof(err)))) {
            fprintf(stderr, "%s: %s\n", prog, err);
            return APP_EXIT_USAGE;
        }
        registry_attach(app->ap_registry, app->ap_catalog);
    }
    app->ap_view = view_load(cfg_str(app->ap_cfg, "view"), app->ap_catalog, err, sizeof(err));
    if (!app->ap_view) {
        fprintf(stderr, "%s: %s\n", prog, err);
        return APP_EXIT_USAGE;
    }
    if ((size_t)snprintf(app->ap_store_dir, sizeof(app->ap_store_dir), "%s/%s",
                         cfg_str(app->ap_cfg, "data_dir"),
                         app->ap_view->v_name) >= sizeof(app->ap_store_dir)) {
        fprintf(stderr, "%s: data_dir: path too long\n", prog);
        return APP_EXIT_USAGE;
    }
    return 0;
}

int app_frame_id(const app_t *app, const catalog_entry_t *entry, const char *topic, int32_t *ret_id,
                 char *errstr, size_t errlen)
{
    if (!app->ap_registry) {
        *ret_id = entry->ce_id;
        return 0;
    }
    json_t *root = entry->ce_file ? json_load_file(entry->ce_file, 0, NULL) : NULL;
    char *text = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (!text) {
        snprintf(errstr, errlen, "cannot read the schema of %s", entry->ce_full_name);
        return RM_EIO;
    }
    char subject[512];
    int rc =
        registry_subject(app->ap_registry, topic, entry->ce_full_name, subject, sizeof(subject))
            ? registry_register(app->ap_registry, subject, text, ret_id, errstr, errlen)
            : RM_EINVAL;
    if (rc == RM_EINVAL &&
        !registry_subject(app->ap_registry, topic, entry->ce_full_name, subject, sizeof(subject)))
        snprintf(errstr, errlen, "subject too long");
    free(text);
    return rc;
}

void app_cleanup(app_t *app)
{
    view_destroy(app->ap_view);
    catalog_destroy(app->ap_catalog);
    registry_destroy(app->ap_registry);
    cfg_destroy(app->ap_cfg);
    memset(app, 0, sizeof(*app));
}

int app_exit_for(int err)
{
    return err == RM_ECONFIG ? APP_EXIT_USAGE : APP_EXIT_FAILURE;
}

void app_print_version(const char *prog)
{
    int major, minor, patch;
    mdb_version(&major, &minor, &patch);
    printf("%s %s\n", prog, RM_VERSION);
    printf("  librdkafka %s\n", rd_kafka_version_str());
    printf("  lmdb %d.%d.%d\n", major, minor, patch);
    printf("  avro-c %s (build time; avro-c has no runtime version call)\n", RM_AVRO_VERSION);
    printf("  libmicrohttpd %s\n", MHD_get_version());
}

#define APP_PULL_TIMEOUT_MS 30000 /* one read of the erasure topic to its end */
#define APP_PULL_BACKOFF_MAX_MS 10000

int app_pull_erasures(const app_t *app, erasures_t *erasures, const char *view_dir,
                      erasures_topic_t *et, volatile sig_atomic_t *stop, bool *ret_missing)
{
    if (ret_missing)
        *ret_missing = false;
    char topic[512], err[1024];
    if (erasures_topic_name(app->ap_cfg, app->ap_view->v_name, topic, sizeof(topic))) {
        log_error("projector.erasures_topic: name too long");
        return RM_ECONFIG;
    }
    erasures_topic_t *own = NULL;
    if (!et && !(et = own = erasures_topic_new(app->ap_cfg, topic, erasures, view_dir, false, err,
                                               sizeof(err)))) {
        log_error("cannot read the erasure topic", LOG_S("topic", topic), LOG_S("error", err));
        return RM_ECONFIG;
    }
    int backoff_ms = 250, rc;
    for (int attempt = 1;; attempt++) {
        size_t merged = 0;
        rc = erasures_topic_pull(et, APP_PULL_TIMEOUT_MS, &merged, err, sizeof(err));
        if (rc == 0) {
            log_info("erasures merged from the erasure topic", LOG_S("topic", topic),
                     LOG_I("merged", (int64_t)merged));
            break;
        }
        if (rc == RM_ENOTFOUND) {
            log_info("no erasure topic yet: nothing was ever erased through it",
                     LOG_S("topic", topic));
            if (ret_missing)
                *ret_missing = true;
            break;
        }
        if (rc == RM_ECONFIG || rc == RM_EIO || rc == RM_ENOMEM) {
            log_error("cannot merge the erasure topic", LOG_S("topic", topic), LOG_S("error", err));
            break;
        }
        bool give_up = stop && *stop;
        log_warn(
            give_up
                ? "cannot read the erasure topic; giving up"
                : "cannot read the erasure topic; nothing is applied until it is read, retrying",
            LOG_S("topic", topic), LOG_I("attempt", attempt), LOG_S("error", err));
        if (give_up) {
            rc = RM_ETIMEOUT;
            break;
        }
        for (int slept = 0; slept < backoff_ms && !(stop && *stop); slept += 50)
            usleep(50 * 1000);
        backoff_ms =
            backoff_ms * 2 > APP_PULL_BACKOFF_MAX_MS ? APP_PULL_BACKOFF_MAX_MS : backoff_ms * 2;
    }
    erasures_topic_destroy(own);
    return rc == RM_ENOTFOUND ? 0 : rc;
}
