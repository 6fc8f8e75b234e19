/* diff_source: `reconcile diff-source` — compare the live store with the systems of
 * record, key by key and section by section, and optionally publish repairs.
 *
 * For each selected key: render the stored document (one read transaction), fetch
 * every section that has a source (fetch.h: bounded, rate-limited, retried, paged),
 * map the answers into the view's terms (source.h) and compare (compare.h). A
 * section whose source cannot be read is UNKNOWN, never drift. Keys are processed
 * with at most 2 x concurrency keys in flight, so memory stays flat on any store size.
 *
 * Thread: the caller's. */
#ifndef RC_DIFF_SOURCE_H
#define RC_DIFF_SOURCE_H

#include "app.h"
#include "repair.h"
#include "report.h"
#include "store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct diff_source_opts {
    const app_t *dso_app;
    store_t *dso_store;          /* the live store, read-only */
    report_t *dso_report;
    repair_t *dso_repair;        /* NULL: report only */
    const char *dso_keys_file;   /* one view key per line; NULL: every key of the store */
    size_t dso_sample;           /* > 0: that many keys, drawn uniformly (reservoir) */
    uint64_t dso_seed;           /* for the sample */
    int64_t dso_since_ms;        /* > 0: only keys with a section newer than this */
    bool dso_progress;           /* a progress line on stderr */
} diff_source_opts_t;

/* Returns 0 when the comparison ran (findings may exist), or a negative rm_err_t with a
 * message in errstr when it could not run (bad config, unreadable keys file, store). */
int diff_source_run(const diff_source_opts_t *opts, char *errstr, size_t errlen);

/* Every view key of the store, in key order. Caller frees each string and the array.
 * Shared with diff-replay. Returns 0 or a negative rm_err_t. */
int diff_store_keys(store_t *store, char ***ret_keys, size_t *ret_count);

#endif
