/* replay: `reconcile diff-replay` — replay the log into a scratch store, diff it with the
 * live store (docs/reconcile.md). */
#ifndef RC_REPLAY_H
#define RC_REPLAY_H

#include "app.h"
#include "report.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct replay_opts {
    const app_t *rpo_app;        /* config, catalog, view, ap_store_dir (lib/app.h) */
    report_t *rpo_report;        /* findings go here (report_add / report_checked) */
    const char *rpo_scratch_dir; /* where the scratch store is built; NULL: a fresh temp dir */
    bool rpo_keep_scratch;       /* keep it afterwards (for inspection) */
    bool rpo_progress;           /* progress on stderr (a TTY) */
} replay_opts_t;

/* Returns 0 when the replay and the diff ran (findings may exist), or a negative rm_err_t
 * with a message in errstr when it could not run. */
int replay_run(const replay_opts_t *opts, char *errstr, size_t errlen);

#endif
