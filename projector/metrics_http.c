/* metrics_http: /metrics and /healthz for the projector (libmicrohttpd, one thread).
 * Scrapes are rare, so this is deliberately plain: no keep-alive tricks, a fresh
 * buffer per scrape. */
#include "metrics_http.h"
#include "app.h"

#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct metrics_http {
    struct MHD_Daemon *mh_daemon;
    pipeline_t *mh_pipe;
};

static enum MHD_Result respond(struct MHD_Connection *conn, unsigned status, const char *type,
                               char *body, size_t len)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    enum MHD_Result ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload,
                              size_t *upload_size, void **state)
{
    metrics_http_t *server = cls;
    (void)version;
    (void)upload;
    (void)upload_size;
    (void)state;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return respond(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", strdup("GET only\n"), 9);
    if (strcmp(url, "/healthz") == 0)
        return respond(conn, MHD_HTTP_OK, "application/json", strdup("{\"status\":\"ok\"}"), 15);
    if (strcmp(url, "/metrics") != 0)
        return respond(conn, MHD_HTTP_NOT_FOUND, "text/plain", strdup("not found\n"), 10);
    buf_t out = BUF_INIT;
    if (pipeline_render_metrics(server->mh_pipe, &out) || !out.b_data) {
        buf_free(&out);
        return respond(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "text/plain", strdup("error\n"), 6);
    }
    return respond(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", out.b_data,
                   out.b_len);
}

metrics_http_t *metrics_http_start(const char *listen, pipeline_t *pl, char *errstr, size_t errlen)
{
    struct sockaddr_in addr;
    if (app_parse_listen(listen, &addr)) {
        snprintf(errstr, errlen, "projector.metrics_listen: expected host:port, got '%s'", listen);
        return NULL;
    }
    metrics_http_t *server = calloc(1, sizeof(*server));
    if (!server) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    server->mh_pipe = pl;
    server->mh_daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0,
                                         NULL, NULL, handle, server, MHD_OPTION_SOCK_ADDR,
                                         (struct sockaddr *)&addr, MHD_OPTION_CONNECTION_LIMIT, 64,
                                         MHD_OPTION_CONNECTION_TIMEOUT, 10, MHD_OPTION_END);
    if (!server->mh_daemon) {
        snprintf(errstr, errlen, "projector.metrics_listen: cannot listen on %s", listen);
        free(server);
        return NULL;
    }
    return server;
}

void metrics_http_stop(metrics_http_t *server)
{
    if (!server)
        return;
    MHD_stop_daemon(server->mh_daemon);
    free(server);
}
