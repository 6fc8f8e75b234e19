/* http_live: fetching live sections at request time (http_live.h). */
#include "http_live.h"
#include "breaker.h"
#include "http_live_map.h"
#include "log.h"
#include "metrics.h"
#include "remote.h"
#include "rm_build.h"
#include "rm_err.h"
#include "rm_time.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Largest answer accepted from a live service: a section is a handful of small records;
 * an answer past this is a broken or hostile service, and is "bad response". */
#define LIVE_BODY_MAX_BYTES (256 * 1024)
/* Longest single wait for transfer progress: short enough to notice a passed deadline
 * promptly even if curl reported no timer. */
#define LIVE_POLL_MAX_MS 20

typedef enum live_outcome {
    LIVE_OK = 0,
    LIVE_NOT_CONFIGURED,
    LIVE_CIRCUIT_OPEN,
    LIVE_TIMEOUT,
    LIVE_REFUSED,
    LIVE_HTTP_ERROR,
    LIVE_BAD_RESPONSE,
    LIVE_ERROR,
    LIVE_OUTCOME_COUNT
} live_outcome_t;

/* Metric label of each outcome (readmodel_live_fetches_total{outcome}). */
static const char *const outcome_labels[LIVE_OUTCOME_COUNT] = {
    "ok",      "not_configured", "circuit_open", "timeout",
    "refused", "http_error",     "bad_response", "error"};

/* From 1 ms (a service on the same host) to 10 s (VIEW_LIVE_DEADLINE_MAX_MS). */
static const double latency_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                        0.15,  0.25,   0.5,   1,    2.5,   5,    10};
#define LATENCY_BUCKETS (sizeof(latency_bounds) / sizeof(latency_bounds[0]))

typedef struct live_section {
    const view_live_t *ls_def;
    const char *ls_name;
    bool ls_configured;
    char ls_base[REMOTE_URL_MAX_BYTES / 2];
    breaker_t *ls_breaker;
    uint64_t ls_outcomes[LIVE_OUTCOME_COUNT]; /* atomics */
    uint64_t ls_latency[LATENCY_BUCKETS + 1]; /* atomics; calls made only */
    uint64_t ls_latency_ns_sum; /* atomic */
} live_section_t;

struct http_live {
    const view_t *hl_view;
    live_section_t *hl_sections; /* one per view live section, in v_lives order */
    size_t hl_count;
    struct curl_slist *hl_headers;
    pthread_key_t hl_tls;
};

/* One section's transfer on one worker thread; reused request after request. */
typedef struct live_xfer {
    CURL *lx_easy;
    buf_t lx_body;
    bool lx_too_big;
    bool lx_active; /* added to the multi handle for this request */
    bool lx_done;
    CURLcode lx_code;
    breaker_ticket_t lx_ticket;
    int64_t lx_start_ns;
} live_xfer_t;

typedef struct live_tls {
    CURLM *lt_multi; /* its connection cache keeps connections alive (note 2) */
    live_xfer_t *lt_xfers; /* hl_count */
    size_t lt_count;
    buf_t lt_values; /* the mapped JSON of this request's live sections */
} live_tls_t;

static void tls_free(void *data)
{
    live_tls_t *tls = data;
    if (!tls)
        return;
    for (size_t i = 0; i < tls->lt_count; i++) {
        if (tls->lt_xfers[i].lx_easy)
            curl_easy_cleanup(tls->lt_xfers[i].lx_easy);
        buf_free(&tls->lt_xfers[i].lx_body);
    }
    free(tls->lt_xfers);
    if (tls->lt_multi)
        curl_multi_cleanup(tls->lt_multi);
    buf_free(&tls->lt_values);
    free(tls);
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ctx)
{
    live_xfer_t *xfer = ctx;
    size_t len = size * nmemb;
    if (xfer->lx_body.b_len + len > LIVE_BODY_MAX_BYTES) {
        xfer->lx_too_big = true;
        return 0; /* curl ends the transfer with CURLE_WRITE_ERROR */
    }
    return buf_append(&xfer->lx_body, data, len) ? 0 : len;
}

static live_tls_t *tls_get(http_live_t *live)
{
    live_tls_t *tls = pthread_getspecific(live->hl_tls);
    if (tls)
        return tls;
    tls = calloc(1, sizeof(*tls));
    if (!tls)
        return NULL;
    tls->lt_multi = curl_multi_init();
    tls->lt_xfers = calloc(live->hl_count ? live->hl_count : 1, sizeof(*tls->lt_xfers));
    if (!tls->lt_multi || !tls->lt_xfers) {
        tls_free(tls);
        return NULL;
    }
    tls->lt_count = live->hl_count;
    for (size_t i = 0; i < live->hl_count; i++) {
        live_xfer_t *xfer = &tls->lt_xfers[i];
        CURL *easy = xfer->lx_easy = curl_easy_init();
        if (!easy) {
            tls_free(tls);
            return NULL;
        }
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, live->hl_headers);
        curl_easy_setopt(easy, CURLOPT_USERAGENT, "readmodel-query-api/" RM_VERSION);
        curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(easy, CURLOPT_WRITEDATA, xfer);
        curl_easy_setopt(easy, CURLOPT_PRIVATE, xfer);
        curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM for timeouts */
        curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS,
                         (long)live->hl_sections[i].ls_def->vlv_deadline_ms);
        curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    }
    if (pthread_setspecific(live->hl_tls, tls)) {
        tls_free(tls);
        return NULL;
    }
    return tls;
}

http_live_t *http_live_new(const view_t *view, const cfg_t *cfg, char *errstr, size_t errlen)
{
    const char *urls = cfg_str(cfg, "query_api.live_urls");
    char bad[256];
    if (remote_check_urls(urls, bad, sizeof(bad))) {
        snprintf(errstr, errlen, "query_api.live_urls: '%s' is not name=http://host:port", bad);
        return NULL;
    }
    http_live_t *live = calloc(1, sizeof(*live));
    if (!live || curl_global_init(CURL_GLOBAL_DEFAULT)) {
        free(live);
        snprintf(errstr, errlen, "cannot initialise libcurl");
        return NULL;
    }
    live->hl_view = view;
    live->hl_count = view->v_live_count;
    live->hl_sections = calloc(live->hl_count ? live->hl_count : 1, sizeof(*live->hl_sections));
    live->hl_headers = curl_slist_append(NULL, "Accept: application/json");
    bool ok =
        live->hl_sections && live->hl_headers && pthread_key_create(&live->hl_tls, tls_free) == 0;
    if (!ok) {
        curl_slist_free_all(live->hl_headers);
        free(live->hl_sections);
        free(live);
        curl_global_cleanup();
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    uint32_t failures = (uint32_t)cfg_int(cfg, "query_api.live_breaker_failures");
    int64_t cooldown_ms = cfg_int(cfg, "query_api.live_breaker_cooldown_ms");
    for (size_t i = 0; i < live->hl_count; i++) {
        live_section_t *ls = &live->hl_sections[i];
        ls->ls_def = &view->v_lives[i];
        ls->ls_name = view->v_sections[ls->ls_def->vlv_section].vs_name;
        ls->ls_configured =
            remote_base_url(urls, ls->ls_def->vlv_service, ls->ls_base, sizeof(ls->ls_base)) == 0;
        if (!(ls->ls_breaker = breaker_new(failures, cooldown_ms))) {
            http_live_destroy(live);
            snprintf(errstr, errlen, "out of memory");
            return NULL;
        }
        if (!ls->ls_configured)
            log_warn("live section has no service URL: it is served unavailable",
                     LOG_S("section", ls->ls_name), LOG_S("service", ls->ls_def->vlv_service),
                     LOG_S("setting", "query_api.live_urls"));
    }
    return live;
}

void http_live_destroy(http_live_t *live)
{
    if (!live)
        return;
    tls_free(pthread_getspecific(live->hl_tls)); /* this thread's (workers freed theirs) */
    pthread_setspecific(live->hl_tls, NULL);
    pthread_key_delete(live->hl_tls);
    for (size_t i = 0; i < live->hl_count; i++)
        breaker_destroy(live->hl_sections[i].ls_breaker);
    free(live->hl_sections);
    curl_slist_free_all(live->hl_headers);
    free(live);
    curl_global_cleanup();
}

/* ---- one request ---------------------------------------------------------------------- */

static void count_outcome(live_section_t *ls, live_outcome_t outcome)
{
    __atomic_fetch_add(&ls->ls_outcomes[outcome], 1, __ATOMIC_RELAXED);
}

/* The answer of an unavailable section, not counted. */
static void mark_unavailable(http_live_result_t *result, size_t section, const char *reason)
{
    http_live_answer_t *answer = &result->lr_answers[section];
    answer->la_fetched = true;
    answer->la_available = false;
    answer->la_fetched_ms = rm_wall_ms();
    size_t reason_len = strnlen(reason, sizeof(answer->la_reason) - 1);
    memcpy(answer->la_reason, reason, reason_len);
    answer->la_reason[reason_len] = '\0';
    result->lr_unavailable |= UINT32_C(1) << section;
}

static void unavailable(http_live_result_t *result, size_t section, live_section_t *ls,
                        live_outcome_t outcome, const char *reason)
{
    mark_unavailable(result, section, reason);
    count_outcome(ls, outcome);
}

/* Starts section i's transfer; false (with the answer set) when it is not to be made. */
static bool start(http_live_t *live, live_tls_t *tls, size_t i, const char *key, size_t key_len,
                  http_live_result_t *result)
{
    live_section_t *ls = &live->hl_sections[i];
    size_t section = (size_t)ls->ls_def->vlv_section;
    live_xfer_t *xfer = &tls->lt_xfers[i];
    char url[REMOTE_URL_MAX_BYTES];
    if (!ls->ls_configured) {
        unavailable(result, section, ls, LIVE_NOT_CONFIGURED, "not configured");
        return false;
    }
    if (!remote_url(ls->ls_base, ls->ls_def->vlv_path, key, key_len, url, sizeof(url))) {
        unavailable(result, section, ls, LIVE_ERROR, "error"); /* cannot happen for keys
                                                                  VIEW_KEY_MAX_BYTES long */
        return false;
    }
    xfer->lx_ticket = breaker_allow(ls->ls_breaker, rm_mono_ms());
    if (xfer->lx_ticket == BREAKER_REFUSED) {
        unavailable(result, section, ls, LIVE_CIRCUIT_OPEN, "circuit open");
        return false;
    }
    buf_reset(&xfer->lx_body);
    xfer->lx_too_big = false;
    xfer->lx_done = false;
    xfer->lx_code = CURLE_OK;
    xfer->lx_start_ns = rm_mono_ns();
    curl_easy_setopt(xfer->lx_easy, CURLOPT_URL, url); /* curl copies the string */
    if (curl_multi_add_handle(tls->lt_multi, xfer->lx_easy) != CURLM_OK) {
        breaker_record(ls->ls_breaker, xfer->lx_ticket, true, rm_mono_ms()); /* not its fault */
        unavailable(result, section, ls, LIVE_ERROR, "error");
        return false;
    }
    xfer->lx_active = true;
    return true;
}

/* Drives the transfers until all are done or deadline_ns passes. */
static void run(live_tls_t *tls, int64_t deadline_ns)
{
    for (;;) {
        int running = 0;
        if (curl_multi_perform(tls->lt_multi, &running) != CURLM_OK)
            break;
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(tls->lt_multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            live_xfer_t *xfer;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&xfer);
            xfer->lx_done = true;
            xfer->lx_code = msg->data.result;
        }
        int64_t left_ms = (deadline_ns - rm_mono_ns()) / 1000000;
        if (running == 0 || left_ms <= 0)
            break;
        curl_multi_poll(tls->lt_multi, NULL, 0,
                        (int)(left_ms < LIVE_POLL_MAX_MS ? left_ms : LIVE_POLL_MAX_MS), NULL);
    }
}

/* Maps a finished (or abandoned) transfer to the section's answer, shaped by the caller's
 * field allowlist and masks as a stored section would be. */
static void finish(http_live_t *live, live_tls_t *tls, size_t i, const render_shape_t *shape,
                   http_live_result_t *result)
{
    live_section_t *ls = &live->hl_sections[i];
    size_t section = (size_t)ls->ls_def->vlv_section;
    live_xfer_t *xfer = &tls->lt_xfers[i];
    curl_multi_remove_handle(tls->lt_multi, xfer->lx_easy);
    xfer->lx_active = false;
    int64_t elapsed_ns = rm_mono_ns() - xfer->lx_start_ns;
    long status = 0;
    curl_easy_getinfo(xfer->lx_easy, CURLINFO_RESPONSE_CODE, &status);
    live_outcome_t outcome = LIVE_OK;
    char reason[HTTP_LIVE_REASON_MAX] = "";
    buf_t *values = &tls->lt_values;
    size_t mark = values->b_len;
    if (!xfer->lx_done || xfer->lx_code == CURLE_OPERATION_TIMEDOUT) {
        outcome = LIVE_TIMEOUT;
    } else if (xfer->lx_code == CURLE_COULDNT_CONNECT) {
        outcome = LIVE_REFUSED;
    } else if (xfer->lx_too_big) {
        outcome = LIVE_BAD_RESPONSE;
    } else if (xfer->lx_code != CURLE_OK) {
        outcome = LIVE_ERROR;
    } else if (status != 200 && status != 404) {
        outcome = LIVE_HTTP_ERROR;
        snprintf(reason, sizeof(reason), "http %ld", status);
    } else if (http_live_map(live->hl_view, ls->ls_def, shape->sh_fields[section],
                             shape->sh_mask_pii ? ~shape->sh_pii_shown[section] : 0,
                             status == 404 ? NULL : xfer->lx_body.b_data, xfer->lx_body.b_len,
                             values)) {
        outcome = LIVE_BAD_RESPONSE;
    }
    breaker_record(ls->ls_breaker, xfer->lx_ticket, outcome == LIVE_OK, rm_mono_ms());
    size_t b = 0;
    double secs = (double)elapsed_ns / 1e9;
    while (b < LATENCY_BUCKETS && secs > latency_bounds[b])
        b++;
    __atomic_fetch_add(&ls->ls_latency[b], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&ls->ls_latency_ns_sum, (uint64_t)elapsed_ns, __ATOMIC_RELAXED);
    if (outcome != LIVE_OK) {
        static const char *const reasons[LIVE_OUTCOME_COUNT] = {
            "", "not configured", "circuit open", "timeout", "refused",
            "", "bad response",   "error"};
        unavailable(result, section, ls, outcome, reason[0] ? reason : reasons[outcome]);
        return;
    }
    http_live_answer_t *answer = &result->lr_answers[section];
    answer->la_fetched = true;
    answer->la_available = true;
    answer->la_fetched_ms = rm_wall_ms();
    answer->la_value_off = mark;
    answer->la_value_len = values->b_len - mark;
    count_outcome(ls, LIVE_OK);
}

/* The render emitter (render.h render_live_fn): ctx is the request's result. */
static int emit(void *ctx, size_t section, bool freshness, render_spans_t *volatile_spans,
                buf_t *out)
{
    const http_live_result_t *result = ctx;
    const http_live_answer_t *answer = &result->lr_answers[section];
    if (!freshness)
        return answer->la_available
                   ? buf_append(out, result->lr_values->b_data + answer->la_value_off,
                                answer->la_value_len)
                   : buf_append_str(out, "null");
    if (answer->la_available) {
        /* The fetch time changes on every read; what was fetched is in "sections". */
        int rc = buf_append_str(out, "{\"mode\":\"live\",\"fetched_at\":");
        size_t at = out->b_len;
        rc = rc ? rc : buf_append_i64(out, answer->la_fetched_ms);
        if (!rc)
            render_spans_add(volatile_spans, at, out->b_len);
        return rc ? rc : buf_append_char(out, '}');
    }
    const char *reason = answer->la_fetched ? answer->la_reason : "error";
    int rc = buf_append_str(out, "{\"mode\":\"unavailable\",\"reason\":");
    rc = rc ? rc : buf_append_json_str(out, reason, strlen(reason));
    return rc ? rc : buf_append_char(out, '}');
}

void http_live_fetch(http_live_t *live, store_t *store, MDB_txn *txn, const char *key,
                     size_t key_len, render_shape_t *shape, http_live_result_t *ret_result)
{
    static const buf_t no_values = BUF_INIT;
    memset(ret_result, 0, sizeof(*ret_result));
    ret_result->lr_values = &no_values;
    if (!live)
        return; /* sh_live stays NULL: live sections are left out */
    shape->sh_live = emit;
    shape->sh_live_ctx = ret_result;
    uint32_t wanted = 0, callable = 0;
    for (size_t i = 0; i < live->hl_count; i++) {
        uint32_t bit =
            shape->sh_sections & (UINT32_C(1) << live->hl_sections[i].ls_def->vlv_section);
        wanted |= bit;
        callable |= live->hl_sections[i].ls_configured ? bit : 0;
    }
    if (wanted && !callable) { /* no call to make: no existence check either (note 4) */
        for (size_t i = 0; i < live->hl_count; i++) {
            size_t section = (size_t)live->hl_sections[i].ls_def->vlv_section;
            if (wanted & (UINT32_C(1) << section))
                mark_unavailable(ret_result, section, "not configured");
        }
        ret_result->lr_uncounted = wanted;
        return;
    }
    if (!wanted || render_exists(live->hl_view, store, txn, key, key_len) != 0)
        return; /* nothing to fetch, or the answer is a 404/400 (note 4) */
    live_tls_t *tls = tls_get(live);
    if (!tls) {
        for (size_t i = 0; i < live->hl_count; i++)
            if (wanted & (UINT32_C(1) << live->hl_sections[i].ls_def->vlv_section))
                unavailable(ret_result, (size_t)live->hl_sections[i].ls_def->vlv_section,
                            &live->hl_sections[i], LIVE_ERROR, "error");
        return;
    }
    buf_reset(&tls->lt_values);
    ret_result->lr_values = &tls->lt_values;
    int64_t deadline_ns = rm_mono_ns();
    int64_t longest_ms = 0;
    for (size_t i = 0; i < live->hl_count; i++) {
        const view_live_t *def = live->hl_sections[i].ls_def;
        if (!(wanted & (UINT32_C(1) << def->vlv_section)) ||
            !start(live, tls, i, key, key_len, ret_result))
            continue;
        if (def->vlv_deadline_ms > longest_ms)
            longest_ms = def->vlv_deadline_ms;
    }
    if (longest_ms)
        run(tls, deadline_ns + longest_ms * 1000000);
    for (size_t i = 0; i < live->hl_count; i++)
        if (tls->lt_xfers[i].lx_active)
            finish(live, tls, i, shape, ret_result);
}

void http_live_served(http_live_t *live, const http_live_result_t *result)
{
    for (size_t i = 0; live && result->lr_uncounted && i < live->hl_count; i++)
        if (result->lr_uncounted & (UINT32_C(1) << live->hl_sections[i].ls_def->vlv_section))
            count_outcome(&live->hl_sections[i], LIVE_NOT_CONFIGURED);
}

void http_live_add_headers(const http_live_t *live, const http_live_result_t *result,
                           struct MHD_Response *resp)
{
    if (!live || !resp || !result->lr_unavailable)
        return;
    char names[FRAG_MAX_SLOTS * (VIEW_NAME_MAX_BYTES + 1) + 1];
    size_t len = 0;
    for (size_t i = 0; i < live->hl_count; i++) {
        size_t section = (size_t)live->hl_sections[i].ls_def->vlv_section;
        if (!(result->lr_unavailable & (UINT32_C(1) << section)))
            continue;
        /* Copied, not snprintf'd: every read of a view whose live service is down or not
         * configured comes here. A name has at most VIEW_NAME_MAX_BYTES (view.h). */
        size_t name_len = strnlen(live->hl_sections[i].ls_name, VIEW_NAME_MAX_BYTES);
        if (len)
            names[len++] = ',';
        memcpy(names + len, live->hl_sections[i].ls_name, name_len);
        len += name_len;
    }
    names[len] = '\0';
    MHD_add_response_header(resp, "X-Readmodel-Unavailable", names);
}

int http_live_metrics(http_live_t *live, buf_t *out)
{
    if (!live || live->hl_count == 0)
        return 0;
    int rc = metrics_family(out, "readmodel_live_fetch_duration_seconds", "histogram",
                            "Time of live section fetches that called the service.");
    for (size_t i = 0; !rc && i < live->hl_count; i++) {
        live_section_t *ls = &live->hl_sections[i];
        metrics_hist_t h;
        metrics_hist_init(&h, latency_bounds, LATENCY_BUCKETS);
        for (size_t b = 0; b <= LATENCY_BUCKETS; b++) {
            h.mh_counts[b] = __atomic_load_n(&ls->ls_latency[b], __ATOMIC_RELAXED);
            h.mh_count += h.mh_counts[b];
        }
        h.mh_sum = (double)__atomic_load_n(&ls->ls_latency_ns_sum, __ATOMIC_RELAXED) / 1e9;
        const char *labels[] = {"section", ls->ls_name, "service", ls->ls_def->vlv_service, NULL};
        rc = metrics_hist_render(out, "readmodel_live_fetch_duration_seconds", &h, labels);
    }
    rc = rc ? rc
            : metrics_family(out, "readmodel_live_fetches_total", "counter",
                             "Live section fetches by outcome (ok, or why it was unavailable).");
    for (size_t i = 0; !rc && i < live->hl_count; i++) {
        live_section_t *ls = &live->hl_sections[i];
        for (int o = 0; !rc && o < LIVE_OUTCOME_COUNT; o++) {
            const char *labels[] = {
                "section", ls->ls_name,       "service", ls->ls_def->vlv_service,
                "outcome", outcome_labels[o], NULL};
            rc = metrics_sample_i64(out, "readmodel_live_fetches_total",
                                    (int64_t)__atomic_load_n(&ls->ls_outcomes[o], __ATOMIC_RELAXED),
                                    labels);
        }
    }
    rc = rc ? rc
            : metrics_family(out, "readmodel_live_breaker_state", "gauge",
                             "Circuit breaker of a live section: 0 closed, 1 open, 2 half-open.");
    for (size_t i = 0; !rc && i < live->hl_count; i++) {
        live_section_t *ls = &live->hl_sections[i];
        const char *labels[] = {"section", ls->ls_name, "service", ls->ls_def->vlv_service, NULL};
        rc = metrics_sample_i64(out, "readmodel_live_breaker_state",
                                (int64_t)breaker_state(ls->ls_breaker, NULL), labels);
    }
    rc = rc ? rc
            : metrics_family(out, "readmodel_live_breaker_opened_total", "counter",
                             "Times the circuit breaker of a live section opened.");
    for (size_t i = 0; !rc && i < live->hl_count; i++) {
        live_section_t *ls = &live->hl_sections[i];
        uint64_t opened = 0;
        breaker_state(ls->ls_breaker, &opened);
        const char *labels[] = {"section", ls->ls_name, "service", ls->ls_def->vlv_service, NULL};
        rc =
            metrics_sample_i64(out, "readmodel_live_breaker_opened_total", (int64_t)opened, labels);
    }
    return rc;
}
