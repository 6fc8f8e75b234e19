/* fetch: bounded, rate-limited, retrying HTTP GETs on one curl multi handle (fetch.h). */
#include "fetch.h"
#include "buf.h"
#include "log.h"
#include "rm_err.h"
#include "rm_time.h"
#include "rm_build.h"

#include <curl/curl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define FETCH_MAX_BODY (16u << 20) /* a source answer larger than this is refused */

typedef struct fetch_req {
    struct fetch_req *fq_next;
    char *fq_url;
    fetch_cb fq_cb;
    void *fq_ctx;
    int fq_attempts;
    int64_t fq_not_before_ms; /* monotonic: a retry waits for its backoff */
    CURL *fq_easy;
    buf_t fq_body;
    bool fq_too_big;
} fetch_req_t;

struct fetch {
    fetch_opts_t fe_opts;
    CURLM *fe_multi;
    struct curl_slist *fe_headers;
    fetch_req_t *fe_ready_head, *fe_ready_tail; /* FIFO of requests ready to start */
    fetch_req_t *fe_delayed;                    /* retries waiting for their backoff */
    int fe_active;
    double fe_tokens;
    int64_t fe_refill_ms;
    uint64_t fe_rand;
    fetch_stats_t fe_stats;
};

static void push_ready(fetch_t *fetch, fetch_req_t *req)
{
    req->fq_next = NULL;
    if (fetch->fe_ready_tail)
        fetch->fe_ready_tail->fq_next = req;
    else
        fetch->fe_ready_head = req;
    fetch->fe_ready_tail = req;
}

static fetch_req_t *pop_ready(fetch_t *fetch)
{
    fetch_req_t *req = fetch->fe_ready_head;
    if (req) {
        fetch->fe_ready_head = req->fq_next;
        if (!fetch->fe_ready_head)
            fetch->fe_ready_tail = NULL;
    }
    return req;
}

static void req_free(fetch_req_t *req)
{
    if (!req)
        return;
    free(req->fq_url);
    buf_free(&req->fq_body);
    free(req);
}

fetch_t *fetch_new(const fetch_opts_t *opts)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT))
        return NULL;
    fetch_t *fetch = calloc(1, sizeof(*fetch));
    if (!fetch)
        return NULL;
    fetch->fe_opts = *opts;
    if (fetch->fe_opts.fo_concurrency < 1)
        fetch->fe_opts.fo_concurrency = 1;
    if (fetch->fe_opts.fo_backoff_ms <= 0)
        fetch->fe_opts.fo_backoff_ms = 100;
    fetch->fe_multi = curl_multi_init();
    fetch->fe_headers = curl_slist_append(NULL, "Accept: application/json");
    if (!fetch->fe_multi || !fetch->fe_headers) {
        fetch_destroy(fetch);
        return NULL;
    }
    /* One connection per source host and request in flight, kept alive between keys. */
    curl_multi_setopt(fetch->fe_multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                      (long)fetch->fe_opts.fo_concurrency);
    fetch->fe_tokens = 1;
    fetch->fe_refill_ms = rm_mono_ms();
    fetch->fe_rand = (uint64_t)rm_wall_ms() * 6364136223846793005ULL + 1442695040888963407ULL;
    return fetch;
}

void fetch_destroy(fetch_t *fetch)
{
    if (!fetch)
        return;
    fetch_req_t *req;
    while ((req = pop_ready(fetch)))
        req_free(req);
    while ((req = fetch->fe_delayed)) {
        fetch->fe_delayed = req->fq_next;
        req_free(req);
    }
    if (fetch->fe_multi)
        curl_multi_cleanup(fetch->fe_multi);
    curl_slist_free_all(fetch->fe_headers);
    free(fetch);
    curl_global_cleanup();
}

int fetch_get(fetch_t *fetch, const char *url, fetch_cb cb, void *ctx)
{
    fetch_req_t *req = calloc(1, sizeof(*req));
    if (!req || !(req->fq_url = strdup(url))) {
        free(req);
        return RM_ENOMEM;
    }
    req->fq_cb = cb;
    req->fq_ctx = ctx;
    buf_init(&req->fq_body);
    push_ready(fetch, req);
    return 0;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    fetch_req_t *req = userdata;
    size_t len = size * nmemb;
    if (req->fq_body.b_len + len > FETCH_MAX_BODY) {
        req->fq_too_big = true;
        return 0; /* aborts the transfer */
    }
    return buf_append(&req->fq_body, data, len) ? 0 : len;
}

/* Refills the token bucket; true if a request may start now. Burst: a tenth of a second. */
static bool take_token(fetch_t *fetch, int64_t now)
{
    int rate = fetch->fe_opts.fo_rate_per_s;
    if (rate <= 0)
        return true;
    double burst = rate / 10.0 > 1.0 ? rate / 10.0 : 1.0;
    fetch->fe_tokens += (double)(now - fetch->fe_refill_ms) * rate / 1000.0;
    fetch->fe_refill_ms = now;
    if (fetch->fe_tokens > burst)
        fetch->fe_tokens = burst;
    if (fetch->fe_tokens < 1.0)
        return false;
    fetch->fe_tokens -= 1.0;
    return true;
}

static int start(fetch_t *fetch, fetch_req_t *req)
{
    CURL *easy = curl_easy_init();
    if (!easy)
        return RM_ENOMEM;
    buf_reset(&req->fq_body);
    req->fq_too_big = false;
    req->fq_attempts++;
    curl_easy_setopt(easy, CURLOPT_URL, req->fq_url);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, fetch->fe_headers);
    curl_easy_setopt(easy, CURLOPT_USERAGENT, "readmodel-reconcile/" RM_VERSION);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, req);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, req);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)fetch->fe_opts.fo_timeout_ms);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, ""); /* whatever curl can decode */
    if (curl_multi_add_handle(fetch->fe_multi, easy)) {
        curl_easy_cleanup(easy);
        return RM_EIO;
    }
    req->fq_easy = easy;
    fetch->fe_active++;
    fetch->fe_stats.fs_requests++;
    return 0;
}

static bool retryable(long status)
{
    return status == 0 || status == 429 || status >= 500;
}

static uint64_t next_rand(fetch_t *fetch)
{
    fetch->fe_rand = fetch->fe_rand * 6364136223846793005ULL + 1442695040888963407ULL;
    return fetch->fe_rand >> 33;
}

static void finish(fetch_t *fetch, fetch_req_t *req, CURLcode code)
{
    long status = 0;
    curl_easy_getinfo(req->fq_easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(fetch->fe_multi, req->fq_easy);
    curl_easy_cleanup(req->fq_easy);
    req->fq_easy = NULL;
    fetch->fe_active--;
    if (code != CURLE_OK)
        status = 0;
    if (retryable(status) && req->fq_attempts <= fetch->fe_opts.fo_retries && !req->fq_too_big) {
        /* Full jitter: uniform in [0, base * 2^(attempt-1)], so retries of many keys
         * against a struggling source do not arrive in waves. */
        int64_t cap = (int64_t)fetch->fe_opts.fo_backoff_ms << (req->fq_attempts - 1);
        req->fq_not_before_ms = rm_mono_ms() + (int64_t)(next_rand(fetch) % (uint64_t)(cap + 1));
        req->fq_next = fetch->fe_delayed;
        fetch->fe_delayed = req;
        fetch->fe_stats.fs_retries++;
        log_debug("source request retried", LOG_S("url", req->fq_url), LOG_I("status", status),
                  LOG_S("error", code == CURLE_OK ? "" : curl_easy_strerror(code)),
                  LOG_I("attempt", req->fq_attempts));
        return;
    }
    buf_append_char(&req->fq_body, '\0');
    fetch_result_t result = {
        .fr_status = status,
        .fr_body = req->fq_body.b_data ? req->fq_body.b_data : "",
        .fr_len = req->fq_body.b_len ? req->fq_body.b_len - 1 : 0,
        .fr_error = req->fq_too_big                    ? "answer larger than 16 MiB"
                    : code == CURLE_OPERATION_TIMEDOUT ? "timeout"
                    : code != CURLE_OK                 ? curl_easy_strerror(code)
                                                       : NULL,
        .fr_attempts = req->fq_attempts,
        .fr_done_ms = rm_wall_ms(),
    };
    if (!((status >= 200 && status < 300) || status == 404))
        fetch->fe_stats.fs_failed++;
    req->fq_cb(req->fq_ctx, req->fq_url, &result);
    req_free(req);
}

/* Moves retries whose backoff has passed to the ready queue; returns the ms until
 * the next one is due (or -1 if none waits). */
static int64_t release_delayed(fetch_t *fetch, int64_t now)
{
    int64_t next = -1;
    fetch_req_t **link = &fetch->fe_delayed;
    while (*link) {
        fetch_req_t *req = *link;
        if (req->fq_not_before_ms <= now) {
            *link = req->fq_next;
            push_ready(fetch, req);
            continue;
        }
        int64_t wait = req->fq_not_before_ms - now;
        if (next < 0 || wait < next)
            next = wait;
        link = &req->fq_next;
    }
    return next;
}

int fetch_run(fetch_t *fetch)
{
    for (;;) {
        int64_t now = rm_mono_ms();
        int64_t wait = release_delayed(fetch, now);
        bool throttled = false;
        while (fetch->fe_active < fetch->fe_opts.fo_concurrency && fetch->fe_ready_head) {
            if (!take_token(fetch, now)) {
                throttled = true;
                break;
            }
            fetch_req_t *req = pop_ready(fetch);
            if (start(fetch, req)) {
                /* cannot even build a handle: answer "no answer" rather than hang */
                fetch_result_t result = {.fr_error = "cannot start the request",
                                         .fr_attempts = req->fq_attempts,
                                         .fr_body = "",
                                         .fr_done_ms = rm_wall_ms()};
                fetch->fe_stats.fs_failed++;
                req->fq_cb(req->fq_ctx, req->fq_url, &result);
                req_free(req);
            }
        }
        if (!fetch->fe_active && !fetch->fe_ready_head && !fetch->fe_delayed)
            return 0;
        int running;
        if (curl_multi_perform(fetch->fe_multi, &running))
            return RM_EIO;
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(fetch->fe_multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            fetch_req_t *req;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&req);
            finish(fetch, req, msg->data.result);
        }
        int timeout = 50;
        if (throttled)
            timeout = 5;
        if (wait >= 0 && wait < timeout)
            timeout = (int)wait;
        if (fetch->fe_active && curl_multi_poll(fetch->fe_multi, NULL, 0, timeout, NULL))
            return RM_EIO;
        if (!fetch->fe_active && (throttled || wait >= 0))
            rm_sleep_ms(timeout);
    }
}

fetch_stats_t fetch_stats(const fetch_t *fetch)
{
    return fetch->fe_stats;
}
