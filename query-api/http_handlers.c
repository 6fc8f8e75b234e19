/* http_handlers: lookups, readiness, status and metrics (the view itself: http_view.c).
 * JSON is assembled by appending bytes (stored fragments are ready JSON); jansson never
 * runs on a request. */
#include "http_handlers.h"
#include "pipeline.h"
#include "rm_time.h"
#include "http_auth.h"
#include "http_fresh.h"
#include "http_live.h"
#include "http_problem.h"
#include "http_query.h"
#include "index.h"
#include "render.h"
#include "rm_err.h"
#include "topic_counts.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HTTP_LOOKUP_LIMIT 20 /* matches returned by a lookup */
#define HTTP_STALL_MS 60000 /* no commit for this long while behind: not ready */

static struct MHD_Response *json_response(const buf_t *body)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(body->b_len, body->b_data, MHD_RESPMEM_MUST_COPY);
    if (resp)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    return resp;
}

static struct MHD_Response *problem(unsigned status, const char *slug, const char *title,
                                    const char *detail, const char *instance, unsigned *ret_status)
{
    *ret_status = status;
    return http_problem_response(status, slug, title, detail, instance);
}

static struct MHD_Response *not_ready(http_ctx_t *ctx, unsigned *ret_status)
{
    char detail[320];
    snprintf(detail, sizeof(detail), "the view store is not open yet: %s", http_store_error(ctx));
    return problem(503, "not-ready", "Not ready", detail, NULL, ret_status);
}

typedef struct lookup_ctx {
    const view_t *lc_view;
    store_t *lc_store;
    MDB_txn *lc_txn;
    int lc_summary; /* single section returned as the summary, or -1 */
    const render_shape_t *lc_shape; /* the caller's fields and masks */
    buf_t *lc_body;
    size_t lc_count;
} lookup_ctx_t;

static int add_match(void *ctx, const char *key, size_t key_len)
{
    lookup_ctx_t *lc = ctx;
    buf_t *b = lc->lc_body;
    int rc = buf_append_str(b, lc->lc_count++ ? ",{\"key\":" : "{\"key\":");
    rc = rc ? rc : buf_append_json_str(b, key, key_len);
    if (!rc && lc->lc_summary >= 0) {
        rc = buf_printf(b, ",\"%s\":", lc->lc_view->v_sections[lc->lc_summary].vs_name);
        rc = rc ? rc
                : render_single_shaped(lc->lc_view, lc->lc_store, lc->lc_txn, key, key_len,
                                       lc->lc_summary, lc->lc_shape, b);
    }
    return rc ? rc : buf_append_char(b, '}');
}

struct MHD_Response *http_handle_lookup(http_ctx_t *ctx, struct MHD_Connection *conn,
                                        const http_request_t *req, unsigned *ret_status)
{
    const view_t *view = ctx->hc_app->ap_view;
    if (strcmp(req->hr_view, view->v_name) != 0)
        return problem(404, "unknown-view", "Unknown view", "this server serves another view",
                       "/v1/views/{view}", ret_status);
    const view_index_t *index;
    char decoded[HTTP_KEY_MAX_BYTES + 1];
    size_t decoded_len;
    http_values_t values = http_values_of(conn);
    struct MHD_Response *bad =
        http_query_lookup(view, &values, &index, decoded, &decoded_len, ret_status);
    if (bad)
        return bad;
    struct MHD_Response *denied =
        http_auth_lookup(req->hr_caller, view, index, decoded, decoded_len, ret_status);
    if (denied)
        return denied;
    store_t *store;
    MDB_txn *txn;
    int trc = http_txn(ctx, &store, &txn);
    if (trc == RM_ENOTFOUND)
        return not_ready(ctx, ret_status);
    if (trc)
        return problem(500, "internal", "Internal error", "cannot read the store", NULL,
                       ret_status);
    buf_t *body = http_body();
    int summary = index->vi_section;
    for (size_t s = 0; summary < 0 && s < view->v_section_count; s++)
        if (view->v_sections[s].vs_kind == VIEW_SINGLE)
            summary = (int)s;
    /* The summary is part of what the caller reads: only a section it may read, through
     * its field allowlist and masks. */
    render_shape_t shape;
    render_shape_all(&shape);
    http_auth_shape(req->hr_caller, view, &shape, false, ret_status); /* grant checked above */
    if (summary >= 0 && !(shape.sh_sections & (UINT32_C(1) << summary)))
        summary = -1;
    req->hr_caller->cl_sections = summary >= 0 ? UINT32_C(1) << summary : 0;
    lookup_ctx_t lc = {view, store, txn, summary, &shape, body, 0};
    buf_printf(body, "{\"view\":\"%s\",\"index\":\"%s\",\"matches\":[", view->v_name,
               index->vi_name);
    int rc = index_lookup(view, store, txn, index->vi_name, decoded, decoded_len, HTTP_LOOKUP_LIMIT,
                          add_match, &lc);
    http_txn_done();
    if (rc == RM_EINVAL)
        return problem(400, "bad-lookup", "Bad lookup",
                       "the value cannot be normalised for this index", "/v1/views/{view}",
                       ret_status);
    if (rc)
        return problem(500, "internal", "Internal error", rm_strerror(rc), NULL, ret_status);
    buf_append_str(body, "]}");
    *ret_status = 200;
    struct MHD_Response *resp = json_response(body);
    if (resp) { /* a lookup has no tag to revalidate with: nothing keeps it (http_problem.h) */
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "private, " HTTP_CACHE_NONE);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, HTTP_VARY_CREDENTIALS);
    }
    return resp;
}

static int add_gap(void *ctx, const char *name, size_t name_len, const void *value, size_t len)
{
    buf_t *b = ctx;
    (void)name;
    (void)name_len;
    if (b->b_data[b->b_len - 1] != '[')
        buf_append_char(b, ',');
    return buf_append(b, value, len); /* written by the projector as a JSON object */
}

/* The projector's registry-outage mark (pipeline.h note 10) as a JSON object (malloc'd)
 * while partitions are paused, else NULL. */
static char *registry_mark(store_t *store, MDB_txn *txn)
{
    const void *mark;
    size_t mark_len;
    if (store_meta_get(store, txn, PIPELINE_REGISTRY_META, &mark, &mark_len) || mark_len == 0 ||
        memmem(mark, mark_len, "\"paused_partitions\":0,", 22))
        return NULL;
    return strndup(mark, mark_len);
}

struct MHD_Response *http_handle_readyz(http_ctx_t *ctx, unsigned *ret_status)
{
    store_t *store;
    MDB_txn *txn;
    int trc = http_txn(ctx, &store, &txn);
    if (trc == RM_ENOTFOUND)
        return not_ready(ctx, ret_status);
    if (trc)
        return problem(503, "not-ready", "Not ready", "cannot read the store", NULL, ret_status);
    http_lag_t lag;
    buf_t *body = http_body();
    int rc = http_fresh_lag(store, txn, rm_wall_ms(), &lag);
    buf_append_str(body, "[");
    if (!rc)
        rc = store_meta_foreach(store, txn, "gap/", add_gap, body);
    buf_append_str(body, "]");
    /* Partitions paused for a schema registry outage (pipeline.h note 10): degraded, like
     * a gap, since every replica depends on the same registry. */
    char *registry = rc ? NULL : registry_mark(store, txn);
    http_txn_done();
    if (rc)
        return problem(503, "not-ready", "Not ready", "cannot read the store", NULL, ret_status);
    if (lag.hl_partitions == 0)
        return problem(503, "not-ready", "Not ready", "the projector has not committed a batch yet",
                       NULL, ret_status);
    if (lag.hl_messages > 0 && lag.hl_now_ms - lag.hl_newest_commit_ms > HTTP_STALL_MS) {
        char detail[200];
        snprintf(detail, sizeof(detail),
                 "the projector is stalled: %lld messages behind and no commit for %lld s",
                 (long long)lag.hl_messages,
                 (long long)((lag.hl_now_ms - lag.hl_newest_commit_ms) / 1000));
        return problem(503, "not-ready", "Not ready", detail, NULL, ret_status);
    }
    /* Gaps make the view degraded, not unready: every replica has the same gap, so
     * taking them out of rotation would only turn a partial answer into none. */
    char *gaps = strdup(body->b_data);
    buf_reset(body);
    buf_printf(body,
               "{\"status\":\"%s\",\"partitions\":%zu,\"lag_messages\":%lld,\"lag_seconds\":%.3f,"
               "\"gaps\":%s%s%s}",
               (gaps && strcmp(gaps, "[]")) || registry ? "degraded" : "ready", lag.hl_partitions,
               (long long)lag.hl_messages, (double)lag.hl_lag_ms / 1000.0, gaps ? gaps : "[]",
               registry ? ",\"schema_registry\":" : "", registry ? registry : "");
    free(gaps);
    free(registry);
    *ret_status = 200;
    return json_response(body);
}

/* The per-partition families of the store, each rendered by one pass over the offsets so
 * that its samples form one group after its HELP/TYPE lines (the exposition format). */
enum { STORE_NEXT_OFFSET, STORE_LAG_MESSAGES, STORE_LAG_SECONDS, STORE__FAMILIES };

static const struct {
    const char *sf_name;
    const char *sf_help;
} store_families[STORE__FAMILIES] = {
    {"readmodel_store_partition_next_offset",
     "Next offset the store has applied, per partition (as committed)."},
    {"readmodel_store_partition_lag_messages",
     "High watermark at the last commit minus next offset."},
    {"readmodel_store_partition_lag_seconds",
     "Now minus the newest applied event time, when behind."},
};

typedef struct metrics_pass {
    buf_t *mp_out;
    const char *mp_view;
    int64_t mp_now;
    int mp_family; /* which of store_families this pass renders */
} metrics_pass_t;

static int metrics_partition(void *ctx, const char *topic, int32_t partition,
                             const store_offset_t *off)
{
    const metrics_pass_t *mp = ctx;
    char part[16];
    snprintf(part, sizeof(part), "%d", partition);
    const char *labels[] = {"view", mp->mp_view, "topic", topic, "partition", part, NULL};
    const char *name = store_families[mp->mp_family].sf_name;
    int64_t lag = off->so_high_watermark > off->so_next_offset
                      ? off->so_high_watermark - off->so_next_offset
                      : 0;
    if (mp->mp_family == STORE_NEXT_OFFSET)
        return metrics_sample_i64(mp->mp_out, name, off->so_next_offset, labels);
    if (mp->mp_family == STORE_LAG_MESSAGES)
        return metrics_sample_i64(mp->mp_out, name, lag, labels);
    double lag_s =
        lag && off->so_last_event_ms ? (double)(mp->mp_now - off->so_last_event_ms) / 1000.0 : 0;
    return metrics_sample_f64(mp->mp_out, name, lag_s < 0 ? 0 : lag_s, labels);
}

struct MHD_Response *http_handle_metrics(http_ctx_t *ctx, unsigned *ret_status)
{
    buf_t *b = http_body();
    const http_stats_t *st = &ctx->hc_stats;
    metrics_family(b, "readmodel_http_requests_total", "counter",
                   "HTTP requests by route and status.");
    for (int r = 0; r < HTTP_ROUTE__COUNT; r++)
        for (int s = 0; s < HTTP_STATUS_SLOTS; s++) {
            uint64_t n = __atomic_load_n(&st->hs_requests[r][s], __ATOMIC_RELAXED);
            if (!n)
                continue;
            char status[8];
            snprintf(status, sizeof(status), "%u", http_status_codes[s]);
            const char *labels[] = {"route", http_route_name((http_route_t)r), "status", status,
                                    NULL};
            metrics_sample_i64(b, "readmodel_http_requests_total", (int64_t)n, labels);
        }
    metrics_family(b, "readmodel_http_request_duration_seconds", "histogram",
                   "Time to handle a request (after headers are read).");
    for (int r = 0; r < HTTP_ROUTE__COUNT; r++) {
        metrics_hist_t h;
        metrics_hist_init(&h, http_latency_bounds, http_latency_bucket_count);
        for (size_t i = 0; i <= http_latency_bucket_count; i++) {
            h.mh_counts[i] = __atomic_load_n(&st->hs_latency_buckets[r][i], __ATOMIC_RELAXED);
            h.mh_count += h.mh_counts[i];
        }
        if (!h.mh_count)
            continue;
        h.mh_sum = (double)__atomic_load_n(&st->hs_latency_ns_sum[r], __ATOMIC_RELAXED) / 1e9;
        const char *labels[] = {"route", http_route_name((http_route_t)r), NULL};
        metrics_hist_render(b, "readmodel_http_request_duration_seconds", &h, labels);
    }
    /* The audit sink may lose lines the query API accepted (docs/query-api.md, Audit):
     * those it could see fail are counted here, both the batched and the direct ones. */
    metrics_family(b, "readmodel_audit_lost_lines_total", "counter",
                   "Audit lines that could not be written (disk full, I/O error).");
    metrics_sample_i64(b, "readmodel_audit_lost_lines_total",
                       (int64_t)(audit_lost_lines(ctx->hc_audit) +
                                 __atomic_load_n(&ctx->hc_audit_failures, __ATOMIC_RELAXED)),
                       NULL);
    metrics_family(b, "readmodel_http_consistency_waiters", "gauge",
                   "Requests waiting for consistency tokens now.");
    metrics_sample_i64(b, "readmodel_http_consistency_waiters", http_fresh_waiters(ctx), NULL);
    http_live_metrics(ctx->hc_live, b);
    store_t *store = NULL;
    MDB_txn *txn;
    int64_t generation = -1;
    if (http_txn(ctx, &store, &txn) == 0) {
        generation = http_txn_generation();
        metrics_pass_t mp = {b, ctx->hc_app->ap_view->v_name, rm_wall_ms(), 0};
        for (mp.mp_family = 0; mp.mp_family < STORE__FAMILIES; mp.mp_family++) {
            metrics_family(b, store_families[mp.mp_family].sf_name, "gauge",
                           store_families[mp.mp_family].sf_help);
            store_offset_foreach(store, txn, metrics_partition, &mp);
        }
        http_txn_done();
    }
    metrics_family(b, "readmodel_http_store_open", "gauge", "1 when the view store is open.");
    const char *vlabels[] = {"view", ctx->hc_app->ap_view->v_name, NULL};
    metrics_sample_i64(b, "readmodel_http_store_open", store != NULL, vlabels);
    if (generation >= 0) {
        metrics_family(
            b, "readmodel_store_generation", "gauge",
            "Store generation being served (0: flat store, before the projector moved it).");
        metrics_sample_i64(b, "readmodel_store_generation", generation, vlabels);
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(b->b_len, b->b_data, MHD_RESPMEM_MUST_COPY);
    if (resp)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                                "text/plain; version=0.0.4; charset=utf-8");
    *ret_status = 200;
    return resp;
}

typedef struct status_ctx {
    buf_t *sc_body;
    int64_t sc_now;
    size_t sc_count;
} status_ctx_t;

static int status_partition(void *ctx, const char *topic, int32_t partition,
                            const store_offset_t *off)
{
    status_ctx_t *sc = ctx;
    int64_t lag = off->so_high_watermark > off->so_next_offset
                      ? off->so_high_watermark - off->so_next_offset
                      : 0;
    double lag_s =
        lag && off->so_last_event_ms ? (double)(sc->sc_now - off->so_last_event_ms) / 1000.0 : 0;
    int rc = buf_append_str(sc->sc_body, sc->sc_count++ ? ",{\"topic\":" : "{\"topic\":");
    rc = rc ? rc : buf_append_json_str(sc->sc_body, topic, strlen(topic));
    return rc ? rc
              : buf_printf(sc->sc_body,
                           ",\"partition\":%d,\"next_offset\":%lld,\"high_watermark\":%lld,"
                           "\"lag_messages\":%lld,\"lag_seconds\":%.3f,"
                           "\"last_event_ms\":%lld,\"committed_ms\":%lld}",
                           partition, (long long)off->so_next_offset,
                           (long long)off->so_high_watermark, (long long)lag, lag_s < 0 ? 0 : lag_s,
                           (long long)off->so_last_event_ms, (long long)off->so_updated_ms);
}

/* One element of "topics": the counters the projector keeps per topic (topic_counts.h). */
static int status_topic(void *ctx, const char *topic, const topic_counts_t *counts)
{
    buf_t *b = ctx;
    int rc = buf_append_str(b, strcmp(b->b_data, "[") ? ",{\"topic\":" : "{\"topic\":");
    rc = rc ? rc : buf_append_json_str(b, topic, strlen(topic));
    return rc ? rc
              : buf_printf(b,
                           ",\"parked\":%lld,\"dead_letters_pending\":%lld,"
                           "\"dead_letters_recorded\":%lld}",
                           (long long)counts->tc_count[TOPIC_COUNTS_PARKED],
                           (long long)counts->tc_count[TOPIC_COUNTS_DEAD_LETTERS],
                           (long long)counts->tc_count[TOPIC_COUNTS_RECORDED]);
}

/* The summary line ({"summary":{...}}) that ends the report of the last reconcile run
 * (reconcile/report.h; the file is replaced atomically), appended as JSON, or null when
 * none is configured or readable. Reads the file's last 4 KiB: no JSON parser on a path
 * the dashboard polls. */
static void append_reconcile(http_ctx_t *ctx, buf_t *b)
{
    const char *path = cfg_str(ctx->hc_app->ap_cfg, "query_api.reconcile_report");
    char tail[4096];
    ssize_t n = -1;
    int fd = *path ? open(path, O_RDONLY | O_CLOEXEC) : -1;
    if (fd >= 0) {
        struct stat st;
        if (fstat(fd, &st) == 0 && st.st_size > 0) {
            off_t from =
                st.st_size > (off_t)sizeof(tail) - 1 ? st.st_size - (off_t)sizeof(tail) + 1 : 0;
            n = pread(fd, tail, sizeof(tail) - 1, from);
        }
        close(fd);
    }
    while (n > 0 && (tail[n - 1] == '\n' || tail[n - 1] == '\r'))
        n--;
    if (n <= 0) {
        buf_append_str(b, "null");
        return;
    }
    tail[n] = '\0';
    const char *line = strrchr(tail, '\n');
    line = line ? line + 1 : tail;
    static const char head[] = "{\"summary\":";
    size_t len = strlen(line);
    if (strncmp(line, head, sizeof(head) - 1) != 0 || len < sizeof(head) + 1 ||
        line[len - 1] != '}' || line[sizeof(head) - 1] != '{') {
        buf_append_str(b, "null"); /* a report cut short or not a reconcile report */
        return;
    }
    buf_append(b, line + sizeof(head) - 1, len - (sizeof(head) - 1) - 1);
}

struct MHD_Response *http_handle_status(http_ctx_t *ctx, unsigned *ret_status)
{
    const view_t *view = ctx->hc_app->ap_view;
    buf_t *b = http_body();
    store_t *store;
    MDB_txn *txn;
    *ret_status = 200;
    if (http_txn(ctx, &store, &txn)) {
        buf_printf(b, "{\"view\":\"%s\",\"state\":\"not-ready\",\"reason\":", view->v_name);
        buf_append_json_str(b, http_store_error(ctx), strlen(http_store_error(ctx)));
        buf_append_str(b, ",\"partitions\":[],\"gaps\":[]}");
        return json_response(b);
    }
    status_ctx_t sc = {b, rm_wall_ms(), 0};
    http_lag_t lag = {sc.sc_now, 0, 0, 0, 0};
    MDB_stat parked, outbox;
    int rc = http_fresh_lag(store, txn, sc.sc_now, &lag);
    rc = rc ? rc : rm_err_from_mdb(mdb_stat(txn, store_dbi(store, STORE_DB_PENDING), &parked));
    rc = rc ? rc : rm_err_from_mdb(mdb_stat(txn, store_dbi(store, STORE_DB_OUTBOX), &outbox));
    buf_t gaps = BUF_INIT;
    buf_append_str(&gaps, "[");
    rc = rc ? rc : store_meta_foreach(store, txn, "gap/", add_gap, &gaps);
    buf_append_str(&gaps, "]");
    /* Per topic from the projector's counters, never a scan of the pending db: null
     * until a projector of this version has counted the store once. */
    buf_t topics = BUF_INIT;
    buf_append_str(&topics, "[");
    int trc = rc ? rc : topic_counts_foreach(store, txn, status_topic, &topics);
    if (trc == RM_ENOTFOUND) {
        buf_reset(&topics);
        buf_append_str(&topics, "null");
    } else {
        rc = trc;
        buf_append_str(&topics, "]");
    }
    char *registry = rc ? NULL : registry_mark(store, txn);
    const char *state = strcmp(gaps.b_data, "[]") || registry ? "degraded"
                        : lag.hl_partitions == 0              ? "not-ready"
                        : lag.hl_messages > 0 && sc.sc_now - lag.hl_newest_commit_ms > HTTP_STALL_MS
                            ? "stalled"
                        : lag.hl_messages > 0 ? "catching-up"
                                              : "running";
    buf_printf(b,
               "{\"view\":\"%s\",\"generation\":%lld,\"state\":\"%s\",\"now_ms\":%lld,\"lag_"
               "messages\":%lld,"
               "\"lag_seconds\":%.3f,\"last_commit_ms\":%lld,\"parked\":%zu,"
               "\"dead_letters_pending\":%zu,\"topics\":%s,\"gaps\":%s,%s%s%s\"partitions\":[",
               view->v_name, (long long)http_txn_generation(), state, (long long)sc.sc_now,
               (long long)lag.hl_messages, (double)lag.hl_lag_ms / 1000.0,
               (long long)lag.hl_newest_commit_ms, rc ? 0 : parked.ms_entries,
               rc ? 0 : outbox.ms_entries, topics.b_data, gaps.b_data,
               registry ? "\"schema_registry\":" : "", registry ? registry : "",
               registry ? "," : "");
    buf_free(&gaps);
    buf_free(&topics);
    free(registry);
    if (!rc)
        rc = store_offset_foreach(store, txn, status_partition, &sc);
    http_txn_done();
    if (rc)
        return problem(500, "internal", "Internal error", rm_strerror(rc), NULL, ret_status);
    buf_append_str(b, "],\"reconcile\":");
    append_reconcile(ctx, b);
    buf_append_char(b, '}');
    return json_response(b);
}
