/* http_routes: path parsing and percent-decoding (see http_routes.h). */
#include "http_routes.h"

#include <string.h>

static int hex(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int decode(const char *in, size_t in_len, char *out, size_t cap, bool plus_is_space)
{
    size_t n = 0;
    for (size_t i = 0; i < in_len; i++) {
        char c = in[i];
        if (c == '%') {
            if (in_len - i < 3) /* a truncated escape such as "%4" at the end */
                return -1;
            int h = hex(in[i + 1]), l = hex(in[i + 2]);
            if (h < 0 || l < 0)
                return -1;
            c = (char)(h << 4 | l);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        }
        if (c == '\0' || n >= cap)
            return -1;
        out[n++] = c;
    }
    return (int)n;
}

int http_percent_decode(const char *in, size_t in_len, char *out, size_t cap)
{
    return decode(in, in_len, out, cap, false);
}

int http_query_decode(const char *in, size_t in_len, char *out, size_t cap)
{
    return decode(in, in_len, out, cap, true);
}

const char *http_route_name(http_route_t route)
{
    static const char *const names[HTTP_ROUTE__COUNT] = {
        "not_found", "bad_request", "view",      "lookup",  "healthz", "readyz",
        "metrics",   "status",      "dashboard", "openapi", "ui",      "status_history"};
    return route < HTTP_ROUTE__COUNT ? names[route] : "unknown";
}

static void bad(http_request_t *req, const char *problem)
{
    req->hr_route = HTTP_ROUTE_BAD;
    req->hr_problem = problem;
}

void http_parse_path(const char *url, http_request_t *req)
{
    memset(req, 0, sizeof(*req));
    size_t len = strlen(url);
    if (len > HTTP_PATH_MAX_BYTES)
        return bad(req, "the path is too long");
    if (strcmp(url, "/healthz") == 0) {
        req->hr_route = HTTP_ROUTE_HEALTHZ;
        return;
    }
    if (strcmp(url, "/readyz") == 0) {
        req->hr_route = HTTP_ROUTE_READYZ;
        return;
    }
    if (strcmp(url, "/metrics") == 0) {
        req->hr_route = HTTP_ROUTE_METRICS;
        return;
    }
    if (strcmp(url, "/v1/status") == 0) {
        req->hr_route = HTTP_ROUTE_STATUS;
        return;
    }
    if (strcmp(url, "/v1/status/history") == 0) {
        req->hr_route = HTTP_ROUTE_HISTORY;
        return;
    }
    if (strcmp(url, "/openapi.json") == 0) {
        req->hr_route = HTTP_ROUTE_OPENAPI;
        return;
    }
    if (strcmp(url, "/dashboard") == 0 || strcmp(url, "/dashboard/") == 0) {
        req->hr_route = HTTP_ROUTE_DASHBOARD;
        return;
    }
    if (strcmp(url, "/ui/") == 0 || strcmp(url, "/ui") == 0) {
        req->hr_route = HTTP_ROUTE_UI;
        return;
    }
    static const char prefix[] = "/v1/views/";
    if (strncmp(url, prefix, sizeof(prefix) - 1) != 0)
        return; /* HTTP_ROUTE_NOT_FOUND */
    const char *view = url + sizeof(prefix) - 1;
    const char *slash = strchr(view, '/');
    size_t view_len = slash ? (size_t)(slash - view) : strlen(view);
    if (view_len == 0 || view_len >= sizeof(req->hr_view))
        return bad(req, "the view name is missing or too long");
    for (size_t i = 0; i < view_len; i++) {
        char c = view[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-' || c == '.'))
            return bad(req, "the view name holds characters a view name cannot have");
    }
    memcpy(req->hr_view, view, view_len);
    if (!slash) {
        req->hr_route = HTTP_ROUTE_LOOKUP;
        return;
    }
    const char *key = slash + 1;
    size_t key_len = strlen(key);
    if (key_len == 0)
        return bad(req, "the key is empty");
    if (memchr(key, '/', key_len))
        return bad(req, "the key holds a '/': percent-encode it as %2F");
    int n = http_percent_decode(key, key_len, req->hr_key, HTTP_KEY_MAX_BYTES);
    if (n < 0)
        return bad(req, "the key has a malformed percent escape, an encoded NUL, or is "
                        "longer than 128 bytes");
    req->hr_key[n] = '\0';
    req->hr_key_len = (size_t)n;
    req->hr_route = HTTP_ROUTE_VIEW;
}
