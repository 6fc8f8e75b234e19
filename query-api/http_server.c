/* http_server: libmicrohttpd wiring for the query API.
 *
 * Notes on the design (docs/architecture.md §8):
 * (1) MHD 0.9.75 answers "Connection: close" when a response is queued in the first
 *     call of the access handler, which cuts throughput ~7x; so the first call only
 *     marks the connection and returns MHD_YES, and the response is queued in the second.
 * (2) MHD_USE_EPOLL_INTERNAL_THREAD with a thread pool: each worker owns its connections,
 *     its read transaction and its buffer (http_ctx.c), so requests share no lock.
 * (3) Fixed answers (health, unknown route) are built once and queued again and again.
 * (4) With TLS (https.h) the same rules hold, except that the client certificate, when
 *     one is required, is checked in the first call, as soon as the request's head is
 *     read and before any byte of its body or any route: a refusal closes the
 *     connection rather than answering, and a client without a certificate cannot hold
 *     a worker reading an endless body. Other methods than GET and HEAD are answered
 *     405 in the first call too, unread.
 * (5) Every connection owns a bearer-token memo (http_auth.h) for its life: a keep-alive
 *     client's token is verified once per connection, not hashed on every request. The
 *     same per-connection state remembers that the TLS client certificate verified
 *     (https.h): there is one socket context and one notify callback per daemon. */
#include "http_server.h"
#include "rm_time.h"
#include "http_auth.h"
#include "http_handlers.h"
#include "http_history.h"
#include "http_live.h"
#include "http_logend.h"
#include "http_problem.h"
#include "https.h"
#include "log.h"
#include "rm_err.h"

/* The dashboard page, embedded at build time from dashboard.html (tools/embed.py). */
extern const char http_dashboard_html[];
extern const size_t http_dashboard_html_len;
/* The Customer 360 agent screen, embedded from ui.html the same way. */
extern const char http_ui_html[];
extern const size_t http_ui_html_len;
/* The OpenAPI document, embedded from openapi.json the same way. */
extern const char http_openapi_json[];
extern const size_t http_openapi_json_len;

#include <netinet/in.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct http_server {
    http_ctx_t hs_ctx;
    struct MHD_Daemon *hs_daemon;
};

static int first_call_marker;

/* libmicrohttpd would percent-decode the path and query values before the handler;
 * decoding happens once, in http_routes.c, so this leaves them as they arrived (a
 * double decode would turn "%2541" into "A", and "%00" would silently cut a key). */
static size_t raw_unescape(void *cls, struct MHD_Connection *conn, char *s)
{
    (void)cls;
    (void)conn;
    return strlen(s);
}

static int status_slot(unsigned status)
{
    for (int i = 0; i < HTTP_STATUS_SLOTS; i++)
        if (http_status_codes[i] == status)
            return i;
    return HTTP_STATUS_SLOTS - 2; /* count unknown statuses as 500 */
}

static void count(http_ctx_t *ctx, http_route_t route, unsigned status, int64_t elapsed_ns)
{
    http_stats_t *st = &ctx->hc_stats;
    __atomic_fetch_add(&st->hs_requests[route][status_slot(status)], 1, __ATOMIC_RELAXED);
    size_t b = 0;
    double secs = (double)elapsed_ns / 1e9;
    while (b < http_latency_bucket_count && secs > http_latency_bounds[b])
        b++;
    __atomic_fetch_add(&st->hs_latency_buckets[route][b], 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&st->hs_latency_ns_sum[route], (uint64_t)elapsed_ns, __ATOMIC_RELAXED);
}

static enum MHD_Result queue(struct MHD_Connection *conn, unsigned status,
                             struct MHD_Response *resp, bool shared)
{
    if (!resp) {
        resp = http_problem_response(500, "internal", "Internal error", "out of memory", NULL);
        status = 500;
        shared = false;
        if (!resp)
            return MHD_NO;
    }
    enum MHD_Result ret = MHD_queue_response(conn, status, resp);
    if (!shared)
        MHD_destroy_response(resp);
    return ret;
}

/* What a connection remembers between its requests (note 5): MHD keeps one socket
 * context per connection and calls one MHD_OPTION_NOTIFY_CONNECTION, so the bearer-token
 * memo and the TLS client verification share this struct. */
typedef struct http_conn {
    bool hn_tls_verified; /* https_client_allowed passed once on this connection */
    http_token_memo_t hn_memo;
} http_conn_t;

/* Allocated when a connection opens, wiped and freed when it closes. */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    http_ctx_t *ctx = cls;
    (void)conn;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        /* ~2.4 KB per connection, so only where tokens or certificates are checked */
        bool wanted = auth_enabled(ctx->hc_auth) || ctx->hc_https;
        /* NULL when out of memory: the shared token cache still serves, and the client
         * certificate is verified on every request instead of once */
        *socket_context = wanted ? calloc(1, sizeof(http_conn_t)) : NULL;
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        http_conn_t *state = *socket_context;
        if (state)
            OPENSSL_cleanse(state, sizeof(*state)); /* a token is a credential */
        free(state);
        *socket_context = NULL;
    }
}

static http_conn_t *connection_state(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return info ? info->socket_context : NULL;
}

/* The first call for a request: its head is read, its body (if any) is not. What is
 * refused whatever the body says is refused here (note 4): a TLS client without an
 * acceptable certificate (the connection is closed), and a method other than GET and
 * HEAD (a 405 with Allow, after the size and per-address limits, never audited:
 * http_auth.c note 4). Answering now means the body is never read, so neither can
 * stream one without end; libmicrohttpd then closes the connection, as it must when it
 * has not read the body. MHD_YES: go on to the request's next call. */
static enum MHD_Result first_call(http_ctx_t *ctx, struct MHD_Connection *conn, const char *url,
                                  const char *method)
{
    http_conn_t *state = connection_state(conn);
    const char *refused;
    if (ctx->hc_https && !https_client_allowed(ctx->hc_https, conn,
                                               state ? &state->hn_tls_verified : NULL, &refused)) {
        log_warn("TLS client refused", LOG_S("reason", refused));
        return MHD_NO;
    }
    if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0)
        return MHD_YES;
    int64_t start = rm_mono_ns();
    http_request_t req;
    http_caller_t caller;
    http_parse_path(url, &req);
    req.hr_caller = &caller;
    unsigned status = 405;
    struct MHD_Response *resp = http_auth_admit(ctx, conn, url, &caller, &status);
    if (!resp) {
        resp = http_problem_response(405, "method-not-allowed", "Method not allowed",
                                     "only GET and HEAD are served", NULL);
        if (resp)
            MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    }
    http_auth_finish(ctx, &req, &caller, resp, status);
    enum MHD_Result ret = queue(conn, status, resp, false);
    count(ctx, req.hr_route, status, rm_mono_ns() - start);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    http_ctx_t *ctx = cls;
    (void)version;
    (void)upload_data;
    if (*con_cls == NULL) {
        *con_cls = &first_call_marker; /* note 1 */
        return first_call(ctx, conn, url, method);
    }
    if (*upload_data_size) {
        *upload_data_size = 0; /* GET/HEAD only: a body is read and ignored */
        return MHD_YES;
    }
    http_conn_t *state = connection_state(conn);
    int64_t start = rm_mono_ns();
    http_request_t req;
    http_caller_t caller;
    http_parse_path(url, &req);
    req.hr_caller = &caller;
    unsigned status = 200;
    struct MHD_Response *resp = NULL;
    bool shared = false;
    if ((resp = http_auth_gate(ctx, conn, url, &req, state ? &state->hn_memo : NULL, &caller,
                               &status))) {
        /* refused before any route: limits or credentials (http_auth.c note 1) */
    } else {
        switch (req.hr_route) {
        case HTTP_ROUTE_HEALTHZ:
            resp = ctx->hc_healthz;
            shared = true;
            break;
        case HTTP_ROUTE_NOT_FOUND:
            status = 404;
            resp = ctx->hc_not_found;
            shared = true;
            break;
        case HTTP_ROUTE_BAD:
            status = 400;
            resp = http_problem_response(400, "bad-request", "Bad request", req.hr_problem, NULL);
            break;
        case HTTP_ROUTE_VIEW:
            resp = http_handle_view(ctx, conn, &req, &status);
            break;
        case HTTP_ROUTE_LOOKUP:
            resp = http_handle_lookup(ctx, conn, &req, &status);
            break;
        case HTTP_ROUTE_READYZ:
            resp = http_handle_readyz(ctx, &status);
            break;
        case HTTP_ROUTE_METRICS:
            resp = http_handle_metrics(ctx, &status);
            break;
        case HTTP_ROUTE_STATUS:
            resp = http_handle_status(ctx, &status);
            break;
        case HTTP_ROUTE_DASHBOARD:
            resp = ctx->hc_dashboard;
            shared = true;
            break;
        case HTTP_ROUTE_OPENAPI:
            resp = ctx->hc_openapi;
            shared = true;
            break;
        case HTTP_ROUTE_UI:
            resp = ctx->hc_ui;
            shared = true;
            break;
        case HTTP_ROUTE_HISTORY:
            resp = http_history_response(ctx->hc_history, &status);
            break;
        case HTTP_ROUTE__COUNT:
            break;
        }
    }
    /* Fixed responses are shared by every request: no per-request header on them. */
    http_auth_finish(ctx, &req, &caller, shared ? NULL : resp, status);
    enum MHD_Result ret = queue(conn, status, resp, shared);
    count(ctx, req.hr_route, status, rm_mono_ns() - start);
    return ret;
}

/* An embedded page: it loads nothing from elsewhere, and says so to the browser; it holds
 * no data (its scripts call the API with the caller's credential), so any cache may keep
 * it, but a frame elsewhere may not show it. NULL when out of memory (queue() answers 500). */
static struct MHD_Response *page_response(const char *html, size_t len)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len, (void *)html, MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return NULL;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/html; charset=utf-8");
    MHD_add_response_header(resp, "Content-Security-Policy",
                            "default-src 'self'; script-src 'unsafe-inline'; "
                            "style-src 'unsafe-inline'; frame-ancestors 'none'");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    return resp;
}

int http_server_start(app_t *app, http_server_t **ret_server, char *errstr, size_t errlen)
{
    struct sockaddr_in addr;
    const char *listen = cfg_str(app->ap_cfg, "query_api.listen");
    if (app_parse_listen(listen, &addr)) {
        snprintf(errstr, errlen, "query_api.listen: expected host:port, got '%s'", listen);
        return RM_ECONFIG;
    }
    http_server_t *server = calloc(1, sizeof(*server));
    if (!server) {
        snprintf(errstr, errlen, "out of memory");
        return RM_ENOMEM;
    }
    http_ctx_t *ctx = &server->hs_ctx;
    ctx->hc_app = app;
    pthread_mutex_init(&ctx->hc_store_lock, NULL);
    pthread_mutex_init(&ctx->hc_waiter_lock, NULL);
    static const char healthz[] = "{\"status\":\"ok\"}";
    ctx->hc_healthz = MHD_create_response_from_buffer(sizeof(healthz) - 1, (void *)healthz,
                                                      MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(ctx->hc_healthz, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    ctx->hc_not_found = http_problem_response(404, "not-found", "Not found", "no such route", NULL);
    ctx->hc_dashboard = MHD_create_response_from_buffer(
        http_dashboard_html_len, (void *)http_dashboard_html, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(ctx->hc_dashboard, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "text/html; charset=utf-8");
    /* The page loads nothing from elsewhere; say so to the browser too. */
    MHD_add_response_header(
        ctx->hc_dashboard, "Content-Security-Policy",
        "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'");
    ctx->hc_ui = page_response(http_ui_html, http_ui_html_len);
    ctx->hc_openapi = MHD_create_response_from_buffer(
        http_openapi_json_len, (void *)http_openapi_json, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(ctx->hc_openapi, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (https_load(app->ap_cfg, &ctx->hc_https, errstr, errlen)) {
        http_server_stop(server);
        return RM_ECONFIG;
    }
    /* Read once: cfg lookups are a table scan, too slow for every request. */
    ctx->hc_consistency_wait_ms = cfg_int(app->ap_cfg, "query_api.consistency_wait_ms");
    if (http_auth_init(ctx, errstr, errlen)) {
        http_server_stop(server);
        return RM_ECONFIG;
    }
    if (!(ctx->hc_logend = http_logend_new(app->ap_cfg, errstr, errlen))) {
        http_server_stop(server);
        return RM_ECONFIG;
    }
    if (!(ctx->hc_live = http_live_new(app->ap_view, app->ap_cfg, errstr, errlen))) {
        http_server_stop(server);
        return RM_ECONFIG;
    }
    bool random_cursor_key;
    if (http_cursor_keys_init(&ctx->hc_cursor_keys, app->ap_cfg, &random_cursor_key, errstr,
                              errlen)) {
        http_server_stop(server);
        return RM_ECONFIG;
    }
    if (random_cursor_key)
        log_info("no query_api.cursor_key_file: page cursors are sealed with a key drawn at "
                 "start (good until a restart, at this process only)");
    int src = http_store_start(ctx); /* serves a store that exists now; follows "current" */
    if (src) {
        snprintf(errstr, errlen, "cannot start the store watcher: %s", rm_strerror(src));
        http_server_stop(server);
        return src;
    }
    ctx->hc_history = http_history_new(HTTP_HISTORY_SAMPLES);
    if (!ctx->hc_history || (src = http_history_start(ctx->hc_history, ctx))) {
        snprintf(errstr, errlen, "cannot start the status history: %s",
                 rm_strerror(ctx->hc_history ? src : RM_ENOMEM));
        http_server_stop(server);
        return ctx->hc_history ? src : RM_ENOMEM;
    }
    struct MHD_OptionItem tls_opts[HTTPS_MHD_OPTIONS + 1];
    size_t tls_count = ctx->hc_https ? https_mhd_options(ctx->hc_https, tls_opts) : 0;
    tls_opts[tls_count] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    server->hs_daemon = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG | (ctx->hc_https ? https_mhd_flags() : 0),
        0, NULL, NULL, on_request, ctx, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg_int(app->ap_cfg, "query_api.threads"),
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg_int(app->ap_cfg, "query_api.max_connections"),
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)cfg_int(app->ap_cfg, "query_api.timeout_s"),
        MHD_OPTION_UNESCAPE_CALLBACK, raw_unescape, NULL, MHD_OPTION_NOTIFY_CONNECTION,
        on_connection, ctx, MHD_OPTION_ARRAY, tls_opts, MHD_OPTION_END);
    if (!server->hs_daemon) {
        /* libmicrohttpd said why on stderr (MHD_USE_ERROR_LOG). Most often the port is
         * busy, which a restart may find free: not configuration. */
        snprintf(errstr, errlen, "query_api.listen: cannot listen on %s", listen);
        http_server_stop(server);
        return RM_EIO;
    }
    *ret_server = server;
    return 0;
}

void http_server_stop(http_server_t *server)
{
    if (!server)
        return;
    if (server->hs_daemon)
        MHD_stop_daemon(server->hs_daemon); /* joins the workers: their txns end first */
    http_ctx_t *ctx = &server->hs_ctx;
    if (ctx->hc_healthz)
        MHD_destroy_response(ctx->hc_healthz);
    if (ctx->hc_not_found)
        MHD_destroy_response(ctx->hc_not_found);
    if (ctx->hc_dashboard)
        MHD_destroy_response(ctx->hc_dashboard);
    if (ctx->hc_openapi)
        MHD_destroy_response(ctx->hc_openapi);
    if (ctx->hc_ui)
        MHD_destroy_response(ctx->hc_ui);
    http_history_free(ctx->hc_history); /* its thread reads the store: before closing it */
    http_store_stop(ctx);
    http_auth_cleanup(ctx);
    http_live_destroy(ctx->hc_live); /* after the workers: their curl handles are freed */
    http_logend_destroy(ctx->hc_logend);
    https_destroy(ctx->hc_https);    /* after the daemon, which borrowed its PEM strings */
    pthread_mutex_destroy(&ctx->hc_store_lock);
    pthread_mutex_destroy(&ctx->hc_waiter_lock);
    free(server);
}
