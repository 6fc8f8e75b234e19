/* generations: the projector's side of store generations (lib/gen.h) — opening the current
 * generation as its writer, following a switch while the daemon runs, and the
 * `rebuild`, `generations` and `rollback` subcommands. */
#ifndef RM_GENERATIONS_H
#define RM_GENERATIONS_H

#include "app.h"
#include "pipeline.h"
#include "store.h"

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>

/* Opens dir as the view's writable store with the projector.* durability settings and
 * checks (or, in a new store, records) the view definition's hash. Returns NULL after
 * logging why; *ret_usage is set when the cause is configuration (exit 2). */
store_t *generations_open_writer(const app_t *app, const char *dir, bool *ret_usage);

/* The daemon following "current": a po_tick callback state. */
typedef struct generations_follow {
    const app_t *gf_app;
    store_t *gf_store; /* the store the pipeline writes; owned here */
    int64_t gf_generation;
    char gf_dir[4096];
    int64_t gf_next_check_ms;
    int64_t gf_busy_logged_ms; /* a locked new generation is logged once a minute */
    int64_t gf_switch_failures; /* failed switches in a row (the first is always logged) */
    int64_t gf_switch_logged_ms; /* then once a minute */
    erasures_topic_t *gf_erasures_topic; /* publishes the ledger; NULL: not published */
    int64_t gf_next_push_ms;
    int64_t gf_push_logged_ms; /* a failing publication is logged once a minute */
} generations_follow_t;

/* Publishes the erasure ledger until nothing is pending or wait_ms has passed, then
 * logs what is left (published again at the next start). For the daemon's exit. */
void generations_push_erasures_final(generations_follow_t *gf, int wait_ms);

/* po_tick: every GENERATIONS_ERASURES_PUSH_MS, publishes new ledger records (erasures_topic.h);
 * every GENERATIONS_FOLLOW_MS, resolves "current"; when it names another
 * generation, opens it and hands it to the pipeline (pipeline_switch_store), then closes
 * the old store. A failed switch leaves the daemon writing the old store; it is logged
 * and retried every GENERATIONS_SWITCH_RETRY_MS. A generation built by another view definition
 * stops the daemon (RM_EMISMATCH: it must be restarted with the new definition). Consumer thread.
 */
int generations_follow_tick(void *arg, pipeline_t *pl);

/* Subcommands; each returns an exit code (APP_EXIT_*). rebuild: start_time_ms 0 for
 * --from earliest, else the --from-time; it publishes its pipeline in *running while
 * it runs (for the signal handler's pipeline_stop) and gives up without switching once
 * *stop_requested is set. */
int generations_rebuild_main(const app_t *app, int64_t start_time_ms, pipeline_t *volatile *running,
                             volatile sig_atomic_t *stop_requested);
int generations_list_main(const app_t *app, bool json);

/* Daemon start-up, before dir (the current generation) is opened: when
 * store_check_durable finds it suspect (a failed fsync, or an OS restart while a
 * periodic writer had unsynced writes), rebuilds the view from the beginning of its
 * topics into a new generation and switches to it, as `rebuild` does, without opening
 * the suspect one (its dead letters are not adopted: the new generation records its
 * own, and the daemon's start-up recovery skips those already published). Returns
 * APP_EXIT_OK with *ret_rebuilt telling whether it rebuilt, or the rebuild's exit code;
 * *running and *stop_requested as for generations_rebuild_main. */
int generations_repair_current(const app_t *app, const char *dir, pipeline_t *volatile *running,
                               volatile sig_atomic_t *stop_requested, bool *ret_rebuilt);
int generations_rollback_main(const app_t *app, int64_t to);

/* Parses an ISO 8601 date-time with a zone into ms since the epoch. 0 or RM_EINVAL. */
int generations_parse_time(const char *text, int64_t *ret_ms);

#endif
