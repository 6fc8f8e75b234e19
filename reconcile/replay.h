/* replay: `reconcile diff-replay` — replay the view's topics into a scratch store with
 * the projector's own pipeline and diff it against the live store.
 *
 * Notes on the design (docs/reconcile.md, "diff-replay"):
 * (1) Both stores reflect the same prefix of the log: the live store is opened
 *     read-only and ONE read transaction is held from reading its next offsets to the
 *     end of the diff, so the projector may keep writing without moving what is
 *     compared; the scratch pipeline stops every partition exactly at those offsets
 *     (pipeline_opts_t.po_stop_offsets).
 * (2) The replay is the projector's pipeline and engine (lib/pipeline.c), not a copy,
 *     in scratch mode: no dead letters, no DLQ or consumer-group traffic, no parked
 *     event expiry (pipeline.h).
 * (3) A replay must see the whole history: if a partition's log starts above 0
 *     (retention; the dev broker keeps ~5 MB per partition), the live store recorded
 *     a gap, or the replay does not end exactly at the live offsets, the run fails
 *     with RM_EGAP ("could not run") instead of reporting the missing history as drift.
 * (4) The scratch store is written without fsync (STORE_PERIODIC, no interval sync):
 *     a crash loses only the scratch, which a new run rebuilds anyway.
 *
 * Thread: the caller's; replay_run blocks until done (the pipeline runs on a second
 * thread only while progress is shown). */
#ifndef RC_REPLAY_H
#define RC_REPLAY_H

#include "app.h"
#include "report.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct replay_opts {
    const app_t *rpo_app;        /* config, catalog, view; the live store is ap_store_dir's
                                    current generation (gen_current_dir) */
    report_t *rpo_report;        /* findings go here (report_add / report_checked) */
    const char *rpo_scratch_dir; /* where the scratch store is built (created; must not hold
                                    a store yet); NULL: a fresh directory
                                    <data_dir>/.replay-<view>-XXXXXX */
    bool rpo_keep_scratch;       /* keep it afterwards (for inspection) */
    bool rpo_progress;           /* progress on stderr (a TTY) */
} replay_opts_t;

/* Returns 0 when the replay and the diff ran (findings may exist), or a negative rm_err_t
 * with a message in errstr when it could not run: RM_ENOTFOUND (no live store),
 * RM_EMISMATCH (the live store was built by another view definition), RM_EGAP (the log
 * no longer holds the history the live store was built from: note 3), RM_EEXISTS (the
 * scratch directory already holds a store), RM_EKAFKA, or a store error. Logs the
 * replay and diff rates (events/s, keys/s) at info level. */
int replay_run(const replay_opts_t *opts, char *errstr, size_t errlen);

#endif
