/* http_routes: pure request parsing for the query API — which route a path names and
 * what its parameters are. No sockets and no store, so every malformed-URL case is a
 * unit test (tests/unit/test-http-routes.c). */
#ifndef RM_HTTP_ROUTES_H
#define RM_HTTP_ROUTES_H

#include <stdbool.h>
#include <stddef.h>

#define HTTP_KEY_MAX_BYTES 128 /* = VIEW_KEY_MAX_BYTES */
#define HTTP_PATH_MAX_BYTES 2048

typedef enum http_route {
    HTTP_ROUTE_NOT_FOUND = 0, /* no such route */
    HTTP_ROUTE_BAD,           /* a route, malformed (bad escape, key too long, ...) */
    HTTP_ROUTE_VIEW,          /* GET /v1/views/{view}/{key} */
    HTTP_ROUTE_LOOKUP,        /* GET /v1/views/{view}?{index}=value */
    HTTP_ROUTE_HEALTHZ,
    HTTP_ROUTE_READYZ,
    HTTP_ROUTE_METRICS,
    HTTP_ROUTE_STATUS,        /* GET /v1/status: lag and health as JSON (the dashboard's data) */
    HTTP_ROUTE_DASHBOARD,     /* GET /dashboard: the lag dashboard page */
    HTTP_ROUTE_OPENAPI,       /* GET /openapi.json: the API description */
    HTTP_ROUTE_UI,            /* GET /ui/: the Customer 360 agent screen (a page, no data) */
    HTTP_ROUTE_HISTORY,       /* GET /v1/status/history: the dashboard's last 15 minutes */
    HTTP_ROUTE__COUNT
} http_route_t;

typedef struct http_request {
    http_route_t hr_route;
    char hr_view[65];                     /* VIEW and LOOKUP */
    char hr_key[HTTP_KEY_MAX_BYTES + 1];  /* VIEW: percent-decoded key (no NUL inside) */
    size_t hr_key_len;
    const char *hr_problem;               /* BAD: what is wrong (static text) */
    struct http_caller *hr_caller;        /* set by the server after parsing (http_auth.h):
                                             who asks; handlers record what they returned */
} http_request_t;

/* Parses url (the path without the query string, NOT yet percent-decoded: the server
 * turns off libmicrohttpd's own unescaping so that a path is decoded exactly once) into
 * req. Never fails: the route says what was found. */
void http_parse_path(const char *url, http_request_t *req);

/* Decodes %XX escapes of in (in_len bytes) into out (cap bytes). Returns the decoded
 * length, or -1 for a malformed escape, a decoded NUL, or output longer than cap. '+'
 * is kept as is (paths are not form-encoded). */
int http_percent_decode(const char *in, size_t in_len, char *out, size_t cap);

/* Like http_percent_decode, for a query-string value: '+' decodes to a space. */
int http_query_decode(const char *in, size_t in_len, char *out, size_t cap);

/* A stable route label for metrics and logs. */
const char *http_route_name(http_route_t route);

#endif
