/* report: what a reconciliation run found, in the three forms its users read.
 *
 * - stdout: a human summary table (per section: keys checked, drift, not yet
 *   projected, unknown) and, per finding, nothing — findings go to the report file;
 * - the report file (--report FILE): JSON lines, one per finding, then one
 *   {"summary":...} line; written to FILE.tmp and renamed at the end;
 * - the metrics file (--metrics-textfile FILE): Prometheus text format for the node
 *   exporter's textfile collector (written to FILE.tmp, renamed), e.g.
 *     readmodel_reconcile_drift_keys{view="customer360",mode="diff-source",section="orders"} 3
 *   (keys with drift per section; the names are those deploy/prometheus/alerts.yml uses)
 *
 * Classes (docs/reconcile.md): DRIFT — the store and the source (or the replay)
 * disagree and the source's change is older than the freshness budget; PENDING —
 * "not yet projected": the source changed after the store's event time for that
 * section and within the budget; UNKNOWN — the source could not be read (down,
 * timeout, 5xx after retries, unreadable answer): never counted as drift.
 *
 * Thread: one thread (the reconciler's event loop). */
#ifndef RC_REPORT_H
#define RC_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum report_class {
    REPORT_DRIFT = 0,
    REPORT_PENDING,
    REPORT_UNKNOWN,
    REPORT__CLASSES
} report_class_t;

/* One difference. Strings are borrowed for the call. Values are JSON texts ("42",
 * "\"EUR\"", "null"); NULL means "absent on that side" (a missing item or record). */
typedef struct report_finding {
    report_class_t rf_class;
    const char *rf_key;
    const char *rf_section;
    const char *rf_item;          /* list sections: the item id; NULL for single sections */
    const char *rf_field;         /* NULL: the whole record/item is missing on one side */
    const char *rf_store;         /* the live store's value */
    const char *rf_other;         /* the source's (diff-source) or the replay's (diff-replay) */
    const char *rf_reason;        /* "value", "missing-in-store", "missing-in-source",
                                     "http 503", "timeout", ... */
    int64_t rf_store_event_ms;    /* the store's freshness for the section (0: none) */
    int64_t rf_source_updated_ms; /* the source record's updated_at (0: unknown) */
    const char *rf_url;           /* the source URL read, or NULL */
} report_finding_t;

typedef struct report report_t;

typedef struct report_opts {
    const char *ro_view;         /* view name, a metrics label */
    const char *ro_mode;         /* "diff-source" or "diff-replay" */
    const char *ro_run_id;
    const char *ro_path;         /* JSON-lines report file, or NULL */
    const char *ro_metrics_path; /* Prometheus textfile, or NULL */
} report_opts_t;

/* Opens the report (creates path.tmp). Returns NULL with a message in errstr. */
report_t *report_new(const report_opts_t *opts, char *errstr, size_t errlen);
/* Removes any .tmp file that was not finished. NULL-safe. */
void report_destroy(report_t *report);

/* Counts one checked (key, section); section NULL counts the key only. */
void report_checked(report_t *report, const char *section);
/* Records one finding. Returns 0 or RM_EIO. */
int report_add(report_t *report, const report_finding_t *finding);
/* Counts a repair event published for a finding. */
void report_repaired(report_t *report);

/* Totals. */
uint64_t report_count(const report_t *report, report_class_t cls);
uint64_t report_keys(const report_t *report);
/* (key, section) pairs checked, including those that came out UNKNOWN. */
uint64_t report_sections_checked(const report_t *report);
/* Distinct keys with at least one UNKNOWN section. */
uint64_t report_unknown_keys(const report_t *report);

/* Writes the summary table to out, the summary line and the metrics file, and renames
 * the files into place. Returns 0 or RM_EIO (with the path in errstr). */
int report_finish(report_t *report, FILE *out, int64_t duration_ms, char *errstr, size_t errlen);

const char *report_class_name(report_class_t cls);

#endif
