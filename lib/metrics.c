/* metrics: Prometheus text exposition helpers. */
#include "metrics.h"
#include "rm_err.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

void metrics_hist_init(metrics_hist_t *hist, const double *bounds, size_t bucket_count)
{
    memset(hist, 0, sizeof(*hist));
    if (bucket_count > METRICS_MAX_BUCKETS)
        bucket_count = METRICS_MAX_BUCKETS;
    hist->mh_bucket_count = bucket_count;
    memcpy(hist->mh_bounds, bounds, bucket_count * sizeof(double));
}

void metrics_hist_observe(metrics_hist_t *hist, double value)
{
    size_t i = 0;
    while (i < hist->mh_bucket_count && value > hist->mh_bounds[i])
        i++;
    hist->mh_counts[i]++;
    hist->mh_sum += value;
    hist->mh_count++;
}

int metrics_family(buf_t *out, const char *name, const char *type, const char *help)
{
    return buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Label values escape backslash, double quote and newline (exposition format). */
static int append_labels(buf_t *out, const char *const *labels, const char *extra_key,
                         const char *extra_value)
{
    if ((!labels || !labels[0]) && !extra_key)
        return 0;
    int rc = buf_append_char(out, '{');
    bool first = true;
    for (size_t i = 0; !rc && labels && labels[i]; i += 2) {
        rc = buf_printf(out, "%s%s=\"", first ? "" : ",", labels[i]);
        for (const char *p = labels[i + 1] ? labels[i + 1] : ""; !rc && *p; p++) {
            if (*p == '\\' || *p == '"')
                rc = buf_append_char(out, '\\') || buf_append_char(out, *p);
            else if (*p == '\n')
                rc = buf_append_str(out, "\\n");
            else
                rc = buf_append_char(out, *p);
        }
        rc = rc ? rc : buf_append_char(out, '"');
        first = false;
    }
    if (!rc && extra_key)
        rc = buf_printf(out, "%s%s=\"%s\"", first ? "" : ",", extra_key, extra_value);
    return rc ? RM_ENOMEM : buf_append_char(out, '}');
}

int metrics_sample_i64(buf_t *out, const char *name, int64_t value, const char *const *labels)
{
    int rc = buf_append_str(out, name);
    rc = rc ? rc : append_labels(out, labels, NULL, NULL);
    return rc ? rc : buf_printf(out, " %lld\n", (long long)value);
}

int metrics_sample_f64(buf_t *out, const char *name, double value, const char *const *labels)
{
    int rc = buf_append_str(out, name);
    rc = rc ? rc : append_labels(out, labels, NULL, NULL);
    if (rc)
        return rc;
    if (isnan(value))
        return buf_append_str(out, " NaN\n");
    if (isinf(value))
        return buf_append_str(out, value > 0 ? " +Inf\n" : " -Inf\n");
    return buf_printf(out, " %.17g\n", value);
}

int metrics_hist_render(buf_t *out, const char *name, const metrics_hist_t *hist,
                        const char *const *labels)
{
    uint64_t cumulative = 0;
    int rc = 0;
    for (size_t i = 0; !rc && i <= hist->mh_bucket_count; i++) {
        cumulative += hist->mh_counts[i];
        char le[32];
        if (i < hist->mh_bucket_count)
            snprintf(le, sizeof(le), "%g", hist->mh_bounds[i]);
        else
            snprintf(le, sizeof(le), "+Inf");
        rc = buf_printf(out, "%s_bucket", name);
        rc = rc ? rc : append_labels(out, labels, "le", le);
        rc = rc ? rc : buf_printf(out, " %llu\n", (unsigned long long)cumulative);
    }
    rc = rc ? rc : buf_printf(out, "%s_sum", name);
    rc = rc ? rc : append_labels(out, labels, NULL, NULL);
    rc = rc ? rc : buf_printf(out, " %.17g\n", hist->mh_sum);
    rc = rc ? rc : buf_printf(out, "%s_count", name);
    rc = rc ? rc : append_labels(out, labels, NULL, NULL);
    return rc ? rc : buf_printf(out, " %llu\n", (unsigned long long)hist->mh_count);
}
