/* http_problem: RFC 9457 problem+json bodies. */
#include "http_problem.h"

#include <string.h>

int http_problem_render(buf_t *out, unsigned status, const char *slug, const char *title,
                        const char *detail, const char *instance)
{
    int rc = buf_printf(out, "{\"type\":\"%s%s\",\"title\":", HTTP_PROBLEM_BASE, slug);
    rc = rc ? rc : buf_append_json_str(out, title, strlen(title));
    rc = rc ? rc : buf_printf(out, ",\"status\":%u", status);
    if (!rc && detail) {
        rc = buf_append_str(out, ",\"detail\":");
        rc = rc ? rc : buf_append_json_str(out, detail, strlen(detail));
    }
    if (!rc && instance) {
        rc = buf_append_str(out, ",\"instance\":");
        /* Bounded: an attacker's 2 KB path does not belong in every error body. */
        size_t len = strlen(instance);
        rc = rc ? rc : buf_append_json_str(out, instance, len > 256 ? 256 : len);
    }
    return rc ? rc : buf_append_char(out, '}');
}

struct MHD_Response *http_problem_response(unsigned status, const char *slug, const char *title,
                                           const char *detail, const char *instance)
{
    buf_t out = BUF_INIT;
    if (http_problem_render(&out, status, slug, title, detail, instance)) {
        buf_free(&out);
        return NULL;
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(out.b_len, out.b_data, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        buf_free(&out);
        return NULL;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/problem+json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, HTTP_CACHE_NONE);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, HTTP_VARY_CREDENTIALS);
    return resp;
}
