/* metrics: Prometheus text exposition (format 0.0.4) into a buf_t, and histograms.
 *
 * No registry and no global state: each program renders its metrics from its own
 * snapshot of counters when scraped. Histograms are plain structs updated by one
 * thread and copied (under the owner's lock) for rendering. */
#ifndef RM_METRICS_H
#define RM_METRICS_H

#include "buf.h"

#include <stddef.h>
#include <stdint.h>

#define METRICS_MAX_BUCKETS 16

typedef struct metrics_hist {
    size_t mh_bucket_count;
    double mh_bounds[METRICS_MAX_BUCKETS];    /* upper bounds, ascending (+Inf implied) */
    uint64_t mh_counts[METRICS_MAX_BUCKETS + 1]; /* per bucket, not cumulative; last = +Inf */
    double mh_sum;
    uint64_t mh_count;
} metrics_hist_t;

/* bounds: bucket_count ascending upper bounds (at most METRICS_MAX_BUCKETS). */
void metrics_hist_init(metrics_hist_t *hist, const double *bounds, size_t bucket_count);
void metrics_hist_observe(metrics_hist_t *hist, double value);

/* "# HELP name help\n# TYPE name type\n". type: counter, gauge, histogram. */
int metrics_family(buf_t *out, const char *name, const char *type, const char *help);
/* One sample line. labels: NULL, or pairs "k","v",...,NULL (values are escaped). */
int metrics_sample_i64(buf_t *out, const char *name, int64_t value, const char *const *labels);
int metrics_sample_f64(buf_t *out, const char *name, double value, const char *const *labels);
/* The _bucket/_sum/_count lines of a histogram (family line not included). */
int metrics_hist_render(buf_t *out, const char *name, const metrics_hist_t *hist,
                        const char *const *labels);

#endif
