/* app: the start-up every program shares — config, flags, logging, catalog, view.
 *
 * Programs parse their own argv (getopt_long), collect the common flags into an
 * app_args_t and call app_load(); they never copy this sequence. Exit codes of all
 * programs: 0 success, 1 runtime failure, 2 usage or configuration error, 3 (projector)
 * stopped on a gap, 4 (projector) a generation to rebuild after a failed fsync (APP_EXIT_*). */
#ifndef RM_APP_H
#define RM_APP_H

#include "catalog.h"
#include "registry.h"
#include "cfg.h"
#include "erasures.h"
#include "erasures_topic.h"
#include "view.h"

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define APP_EXIT_OK 0
#define APP_EXIT_FAILURE 1
#define APP_EXIT_USAGE 2
#define APP_EXIT_GAP 3 /* projector: stopped on a gap (projector.on_gap=stop); do not restart */
/* projector: an fsync of the store failed; the generation may have lost writes and is
 * marked so. Restart it: the next start rebuilds the generation from Kafka. */
#define APP_EXIT_REBUILD 4
#define APP_MAX_SETS 64

typedef struct app_args {
    const char *aa_config;            /* --config FILE, or NULL */
    const char *aa_sets[APP_MAX_SETS]; /* --set key=value and -X prop=value (as "kafka.prop=v") */
    size_t aa_set_count;
    const char *aa_log_level;         /* --log-level, or NULL */
    int aa_verbosity;                 /* -v: +1, -q: -1 */
} app_args_t;

typedef struct app {
    const char *ap_prog;
    cfg_t *ap_cfg;
    catalog_t *ap_catalog;
    registry_t *ap_registry; /* schema_registry.url set: ap_catalog resolves through it */
    view_t *ap_view;
    char ap_store_dir[4096]; /* <data_dir>/<view name> */
} app_t;

/* Records a -X prop=value flag as "kafka.prop=value". Returns 0 or RM_EINVAL (too many). */
int app_args_add_kafka(app_args_t *args, const char *pair, char *storage, size_t storage_len);
/* Records a --set key=value flag. Returns 0 or RM_EINVAL. */
int app_args_add_set(app_args_t *args, const char *pair);

/* Loads everything; with load_view false, stops after config and logging. On error
 * prints "prog: message" to stderr and returns APP_EXIT_USAGE or APP_EXIT_FAILURE;
 * returns 0 on success. */
int app_load(app_t *app, const char *prog, const app_args_t *args, bool load_view);
void app_cleanup(app_t *app);

/* The schema id to frame a message of entry's record produced on topic with: the
 * catalog's id offline; with a schema registry, the id the registry gives the entry's
 * .avsc when it is registered (POST /subjects/{subject}/versions, idempotent) under the
 * subject naming strategy. Returns 0, or an error with errstr set. For the messages this
 * project writes itself (repairs, dead-letter-handled markers, backfill snapshots). */
int app_frame_id(const app_t *app, const catalog_entry_t *entry, const char *topic, int32_t *ret_id,
                 char *errstr, size_t errlen);

/* The exit code of a program that cannot start because of err (a negative rm_err_t):
 * APP_EXIT_USAGE for RM_ECONFIG, a setting no restart fixes (systemd's
 * RestartPreventExitStatus=2), APP_EXIT_FAILURE for anything else. Decided by code, never
 * by an error's text. */
int app_exit_for(int err);

/* -V: version and build features (library versions) on stdout. */
void app_print_version(const char *prog);

/* Parses "host:port" (IPv4 address or "localhost"; port 0..65535) for a listener.
 * Returns 0 or RM_EINVAL. */
struct sockaddr_in;
int app_parse_listen(const char *text, struct sockaddr_in *ret_addr);

/* mkdir -p. Returns 0 or an rm_err_t. */
int app_mkdirs(const char *path);

/* Merges the view's erasure topic (erasures_topic.h) into the ledger at view_dir before
 * anything is applied, logging the outcome. A broker that does not answer is retried
 * with backoff, never skipped, until *stop is set (stop may be NULL: never); a
 * topic the broker says does not exist is fine (nothing was published to it) and sets
 * *ret_missing (may be NULL). When et is given (a publishing client) it is used, else a
 * pull-only client is made. Returns 0, RM_ETIMEOUT (stopped), RM_ECONFIG or another
 * rm_err code. */
int app_pull_erasures(const app_t *app, erasures_t *erasures, const char *view_dir,
                      erasures_topic_t *et, volatile sig_atomic_t *stop, bool *ret_missing);

#endif
