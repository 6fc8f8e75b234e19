/* report: findings as JSON lines, a summary table and a Prometheus textfile (report.h). */
#include "report.h"
#include "buf.h"
#include "rm_err.h"
#include "rm_time.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define REPORT_MAX_SECTIONS 32

typedef struct report_section {
    char rs_name[64];
    uint64_t rs_checked;
    uint64_t rs_counts[REPORT__CLASSES];       /* findings */
    uint64_t rs_keys[REPORT__CLASSES];         /* distinct keys with a finding */
    char rs_last_key[REPORT__CLASSES][129];    /* findings of a key come together */
} report_section_t;

struct report {
    report_opts_t rp_opts;
    char *rp_tmp;           /* path.tmp being written, or NULL */
    FILE *rp_file;
    uint64_t rp_keys;
    uint64_t rp_counts[REPORT__CLASSES];
    uint64_t rp_unknown_keys;           /* distinct keys with any unknown section */
    char rp_last_unknown[129];
    uint64_t rp_repaired;
    report_section_t rp_sections[REPORT_MAX_SECTIONS];
    size_t rp_section_count;
    int64_t rp_started_ms;  /* wall clock */
    buf_t rp_line;
};

const char *report_class_name(report_class_t cls)
{
    static const char *const names[REPORT__CLASSES] = {"drift", "pending", "unknown"};
    return cls < REPORT__CLASSES ? names[cls] : "?";
}

static char *tmp_path(const char *path)
{
    size_t len = strlen(path) + 5;
    char *tmp = malloc(len);
    if (tmp)
        snprintf(tmp, len, "%s.tmp", path);
    return tmp;
}

report_t *report_new(const report_opts_t *opts, char *errstr, size_t errlen)
{
    report_t *report = calloc(1, sizeof(*report));
    if (!report) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    report->rp_opts = *opts;
    report->rp_started_ms = rm_wall_ms();
    buf_init(&report->rp_line);
    if (opts->ro_path) {
        report->rp_tmp = tmp_path(opts->ro_path);
        report->rp_file = report->rp_tmp ? fopen(report->rp_tmp, "w") : NULL;
        if (!report->rp_file) {
            snprintf(errstr, errlen, "%s: cannot create: %s",
                     report->rp_tmp ? report->rp_tmp : opts->ro_path, strerror(errno));
            report_destroy(report);
            return NULL;
        }
    }
    return report;
}

void report_destroy(report_t *report)
{
    if (!report)
        return;
    if (report->rp_file) {
        fclose(report->rp_file);
        unlink(report->rp_tmp);
    }
    free(report->rp_tmp);
    buf_free(&report->rp_line);
    free(report);
}

static report_section_t *section_of(report_t *report, const char *name)
{
    for (size_t i = 0; i < report->rp_section_count; i++)
        if (strcmp(report->rp_sections[i].rs_name, name) == 0)
            return &report->rp_sections[i];
    if (report->rp_section_count == REPORT_MAX_SECTIONS)
        return NULL;
    report_section_t *s = &report->rp_sections[report->rp_section_count++];
    snprintf(s->rs_name, sizeof(s->rs_name), "%s", name);
    return s;
}

void report_checked(report_t *report, const char *section)
{
    if (!section) {
        report->rp_keys++;
        return;
    }
    report_section_t *s = section_of(report, section);
    if (s)
        s->rs_checked++;
}

static void append_str_or_null(buf_t *b, const char *s)
{
    if (s)
        buf_append_json_str(b, s, strlen(s));
    else
        buf_append_str(b, "null");
}

/* rf_store / rf_other are JSON texts already; absent is written as null. */
static void append_json_or_null(buf_t *b, const char *json)
{
    buf_append_str(b, json ? json : "null");
}

int report_add(report_t *report, const report_finding_t *f)
{
    report->rp_counts[f->rf_class]++;
    report_section_t *s = section_of(report, f->rf_section);
    const char *key = f->rf_key ? f->rf_key : "";
    if (s) {
        s->rs_counts[f->rf_class]++;
        if (strncmp(s->rs_last_key[f->rf_class], key, sizeof(s->rs_last_key[0])) != 0) {
            s->rs_keys[f->rf_class]++;
            snprintf(s->rs_last_key[f->rf_class], sizeof(s->rs_last_key[0]), "%s", key);
        }
    }
    if (f->rf_class == REPORT_UNKNOWN &&
        strncmp(report->rp_last_unknown, key, sizeof(report->rp_last_unknown)) != 0) {
        report->rp_unknown_keys++;
        snprintf(report->rp_last_unknown, sizeof(report->rp_last_unknown), "%s", key);
    }
    if (!report->rp_file)
        return 0;
    buf_t *b = &report->rp_line;
    buf_reset(b);
    buf_append_str(b, "{\"class\":\"");
    buf_append_str(b, report_class_name(f->rf_class));
    buf_append_str(b, "\",\"mode\":\"");
    buf_append_str(b, report->rp_opts.ro_mode);
    buf_append_str(b, "\",\"key\":");
    append_str_or_null(b, f->rf_key);
    buf_append_str(b, ",\"section\":");
    append_str_or_null(b, f->rf_section);
    buf_append_str(b, ",\"item\":");
    append_str_or_null(b, f->rf_item);
    buf_append_str(b, ",\"field\":");
    append_str_or_null(b, f->rf_field);
    buf_append_str(b, ",\"store\":");
    append_json_or_null(b, f->rf_store);
    buf_append_str(b, strcmp(report->rp_opts.ro_mode, "diff-replay") == 0 ? ",\"replay\":"
                                                                          : ",\"source\":");
    append_json_or_null(b, f->rf_other);
    buf_append_str(b, ",\"reason\":");
    append_str_or_null(b, f->rf_reason);
    buf_printf(b, ",\"store_event_time\":%lld", (long long)f->rf_store_event_ms);
    if (f->rf_source_updated_ms)
        buf_printf(b, ",\"source_updated_at\":%lld", (long long)f->rf_source_updated_ms);
    buf_append_str(b, ",\"url\":");
    append_str_or_null(b, f->rf_url);
    buf_append_str(b, ",\"run_id\":");
    append_str_or_null(b, report->rp_opts.ro_run_id);
    buf_append_str(b, "}\n");
    if (fwrite(b->b_data, 1, b->b_len, report->rp_file) != b->b_len)
        return RM_EIO;
    return 0;
}

void report_repaired(report_t *report)
{
    report->rp_repaired++;
}

uint64_t report_count(const report_t *report, report_class_t cls)
{
    return report->rp_counts[cls];
}

uint64_t report_keys(const report_t *report)
{
    return report->rp_keys;
}

uint64_t report_sections_checked(const report_t *report)
{
    uint64_t n = 0;
    for (size_t i = 0; i < report->rp_section_count; i++)
        n += report->rp_sections[i].rs_checked;
    return n;
}

uint64_t report_unknown_keys(const report_t *report)
{
    return report->rp_unknown_keys;
}

/* One gauge per view and mode, its value with `decimals` decimals (0 for counts). */
static void gauge(FILE *out, const char *name, const char *help, const char *view, const char *mode,
                  double value, int decimals)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s gauge\n%s{view=\"%s\",mode=\"%s\"} %.*f\n", name, help,
            name, name, view, mode, decimals, value);
}

static int write_metrics(report_t *report, int64_t duration_ms, char *errstr, size_t errlen)
{
    const char *path = report->rp_opts.ro_metrics_path;
    char *tmp = tmp_path(path);
    FILE *out = tmp ? fopen(tmp, "w") : NULL;
    if (!out) {
        snprintf(errstr, errlen, "%s: cannot create: %s", tmp ? tmp : path, strerror(errno));
        free(tmp);
        return RM_EIO;
    }
    const char *view = report->rp_opts.ro_view, *mode = report->rp_opts.ro_mode;
    /* Names are spelled out (not built with %s) so that tests/integration/test_deploy.py
     * finds every name the alert rules use in this file. */
    static const struct {
        const char *name, *help;
        report_class_t cls;
        bool keys;
    } per_section[] = {
        {"readmodel_reconcile_drift_keys",
         "Keys whose section differs beyond the freshness budget.", REPORT_DRIFT, true},
        {"readmodel_reconcile_drift_fields", "Differing fields (or whole missing items) found.",
         REPORT_DRIFT, false},
        {"readmodel_reconcile_pending_keys",
         "Keys whose section differs but the source changed within the freshness budget.",
         REPORT_PENDING, true},
        {"readmodel_reconcile_unknown_sections", "Keys whose section could not be checked.",
         REPORT_UNKNOWN, true},
    };
    for (size_t m = 0; m < sizeof(per_section) / sizeof(per_section[0]); m++) {
        fprintf(out, "# HELP %s %s\n# TYPE %s gauge\n", per_section[m].name, per_section[m].help,
                per_section[m].name);
        for (size_t i = 0; i < report->rp_section_count; i++) {
            const report_section_t *sec = &report->rp_sections[i];
            uint64_t v = per_section[m].keys ? sec->rs_keys[per_section[m].cls]
                                             : sec->rs_counts[per_section[m].cls];
            fprintf(out, "%s{view=\"%s\",mode=\"%s\",section=\"%s\"} %llu\n", per_section[m].name,
                    view, mode, sec->rs_name, (unsigned long long)v);
        }
    }
    gauge(out, "readmodel_reconcile_unknown_keys", "Keys with a section that could not be checked.",
          view, mode, (double)report->rp_unknown_keys, 0);
    gauge(out, "readmodel_reconcile_keys_checked", "Keys compared in the last run.", view, mode,
          (double)report->rp_keys, 0);
    gauge(out, "readmodel_reconcile_repairs", "Repair events published in the last run.", view,
          mode, (double)report->rp_repaired, 0);
    gauge(out, "readmodel_reconcile_duration_seconds", "Duration of the last run.", view, mode,
          (double)duration_ms / 1000.0, 3);
    gauge(out, "readmodel_reconcile_last_run_timestamp_seconds", "When the last run ended.", view,
          mode, (double)rm_wall_ms() / 1000.0, 3);
    int bad = ferror(out);
    bad |= fclose(out);
    if (bad || rename(tmp, path)) {
        snprintf(errstr, errlen, "%s: cannot write: %s", path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return RM_EIO;
    }
    free(tmp);
    return 0;
}

int report_finish(report_t *report, FILE *out, int64_t duration_ms, char *errstr, size_t errlen)
{
    if (out) {
        fprintf(out, "%-22s %9s %9s %9s %9s\n", "section", "checked", "drift", "pending",
                "unknown");
        for (size_t i = 0; i < report->rp_section_count; i++) {
            const report_section_t *s = &report->rp_sections[i];
            fprintf(out, "%-22s %9llu %9llu %9llu %9llu\n", s->rs_name,
                    (unsigned long long)s->rs_checked,
                    (unsigned long long)s->rs_counts[REPORT_DRIFT],
                    (unsigned long long)s->rs_counts[REPORT_PENDING],
                    (unsigned long long)s->rs_counts[REPORT_UNKNOWN]);
        }
        fprintf(out, "%-22s %9llu %9llu %9llu %9llu\n", "total (keys)",
                (unsigned long long)report->rp_keys,
                (unsigned long long)report->rp_counts[REPORT_DRIFT],
                (unsigned long long)report->rp_counts[REPORT_PENDING],
                (unsigned long long)report->rp_counts[REPORT_UNKNOWN]);
        fprintf(out, "%s: %s in %.1f s (%.0f keys/s)\n", report->rp_opts.ro_mode,
                report->rp_counts[REPORT_DRIFT] ? "DRIFT FOUND" : "no drift",
                (double)duration_ms / 1000.0,
                duration_ms > 0 ? (double)report->rp_keys * 1000.0 / (double)duration_ms : 0.0);
        if (report->rp_repaired)
            fprintf(out, "repairs published: %llu\n", (unsigned long long)report->rp_repaired);
    }
    if (report->rp_file) {
        buf_t *b = &report->rp_line;
        buf_reset(b);
        buf_printf(b, "{\"summary\":{\"mode\":\"%s\",\"view\":", report->rp_opts.ro_mode);
        append_str_or_null(b, report->rp_opts.ro_view);
        buf_append_str(b, ",\"run_id\":");
        append_str_or_null(b, report->rp_opts.ro_run_id);
        buf_printf(b,
                   ",\"keys\":%llu,\"drift\":%llu,\"pending\":%llu,\"unknown\":%llu,"
                   "\"repairs\":%llu,\"started_at\":%lld,\"duration_ms\":%lld}}\n",
                   (unsigned long long)report->rp_keys,
                   (unsigned long long)report->rp_counts[REPORT_DRIFT],
                   (unsigned long long)report->rp_counts[REPORT_PENDING],
                   (unsigned long long)report->rp_counts[REPORT_UNKNOWN],
                   (unsigned long long)report->rp_repaired, (long long)report->rp_started_ms,
                   (long long)duration_ms);
        bool bad = fwrite(b->b_data, 1, b->b_len, report->rp_file) != b->b_len;
        bad |= fclose(report->rp_file) != 0;
        report->rp_file = NULL;
        if (bad || rename(report->rp_tmp, report->rp_opts.ro_path)) {
            snprintf(errstr, errlen, "%s: cannot write: %s", report->rp_opts.ro_path,
                     strerror(errno));
            unlink(report->rp_tmp);
            return RM_EIO;
        }
    }
    if (report->rp_opts.ro_metrics_path)
        return write_metrics(report, duration_ms, errstr, errlen);
    return 0;
}
