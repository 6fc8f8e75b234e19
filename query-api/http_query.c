/* http_query: a view or lookup request's query arguments and headers (see http_query.h). */
#include "http_query.h"
#include "http_problem.h"
#include "rm_err.h"

#include <stdio.h>
#include <string.h>

/* Longest decoded query value or header we parse: 64 consistency tokens of a 64-byte
 * topic are ~6 KB; libmicrohttpd's own request limit is far above anything real. */
#define HTTP_VIEW_PARAM_MAX_BYTES 8192
/* Most items a list page may ask for: far above any bounded list (orders keep 20), low
 * enough that the number is plainly a page size. */
#define HTTP_VIEW_PAGE_MAX 100000
/* Largest staleness budget accepted: a day; beyond that a budget means nothing. */
#define HTTP_VIEW_BUDGET_MAX_MS 86400000

static const char view_instance[] = "/v1/views/{view}/{key}";

static struct MHD_Response *problem(unsigned status, const char *slug, const char *title,
                                    const char *detail, unsigned *ret_status)
{
    *ret_status = status;
    return http_problem_response(status, slug, title, detail, view_instance);
}

/* The decoded value of query parameter name in out (NUL-terminated). Returns 1 when
 * present, 0 when absent, RM_EINVAL when malformed or too long. */
static int query_arg(const http_values_t *values, const char *name, char *out, size_t cap)
{
    const char *raw = values->hv_get(values->hv_cls, MHD_GET_ARGUMENT_KIND, name);
    if (!raw)
        return 0;
    int len = http_query_decode(raw, strlen(raw), out, cap - 1);
    if (len < 0)
        return RM_EINVAL;
    out[len] = '\0';
    return 1;
}

/* A bounded integer parameter; *ret_value is left alone when absent. */
static struct MHD_Response *int_arg(const http_values_t *values, const char *name, int64_t min,
                                    int64_t max, bool *ret_given, int64_t *ret_value,
                                    unsigned *ret_status)
{
    char text[32];
    int given = query_arg(values, name, text, sizeof(text));
    int64_t value = 0;
    if (given > 0 && http_params_uint(text, max, &value) == 0 && value >= min) {
        *ret_value = value;
        if (ret_given)
            *ret_given = true;
        return NULL;
    }
    if (given == 0)
        return NULL;
    char detail[160];
    snprintf(detail, sizeof(detail), "%s must be an integer from %lld to %lld", name,
             (long long)min, (long long)max);
    return problem(400, "bad-parameter", "Bad parameter", detail, ret_status);
}

static struct MHD_Response *parse_fields(const view_t *view, const http_values_t *values,
                                         char *text, http_view_query_t *vq, unsigned *ret_status)
{
    int given = query_arg(values, "fields", text, HTTP_VIEW_PARAM_MAX_BYTES);
    if (given == 0)
        return NULL;
    char bad[VIEW_NAME_MAX_BYTES + 1];
    int rc = given < 0
                 ? RM_EINVAL
                 : http_params_fields(view, text, &vq->vq_shape.sh_sections, bad, sizeof(bad));
    if (rc == RM_ENOTFOUND) {
        char detail[256];
        snprintf(detail, sizeof(detail), "fields names '%s', which is not a section of %s", bad,
                 view->v_name);
        return problem(400, "unknown-section", "Unknown section", detail, ret_status);
    }
    if (rc)
        return problem(400, "bad-parameter", "Bad parameter",
                       "fields must be a comma-separated list of section names", ret_status);
    return NULL;
}

/* <section>_limit and <section>_cursor of every list section. */
static struct MHD_Response *parse_pages(const view_t *view, const http_cursor_scope_t *cursors,
                                        const http_values_t *values, char *text,
                                        http_view_query_t *vq, unsigned *ret_status)
{
    for (size_t s = 0; s < view->v_section_count; s++) {
        if (view->v_sections[s].vs_kind != VIEW_LIST || view->v_sections[s].vs_live)
            continue; /* a live list is never paged: it is whatever the service answers */
        /* The names are built by hand: two snprintf per list section were a tenth of
         * this function's cost on every read, most of which have no parameters. */
        char name[VIEW_NAME_MAX_BYTES + 16];
        size_t base = strlen(view->v_sections[s].vs_name);
        if (base > VIEW_NAME_MAX_BYTES)
            base = VIEW_NAME_MAX_BYTES;
        memcpy(name, view->v_sections[s].vs_name, base);
        memcpy(name + base, "_limit", sizeof("_limit"));
        int64_t limit = 0;
        struct MHD_Response *resp =
            int_arg(values, name, 1, HTTP_VIEW_PAGE_MAX, NULL, &limit, ret_status);
        if (resp)
            return resp;
        vq->vq_shape.sh_limit[s] = (size_t)limit;
        memcpy(name + base, "_cursor", sizeof("_cursor"));
        int given = query_arg(values, name, text, HTTP_VIEW_PARAM_MAX_BYTES);
        if (given != 0 && (given < 0 || http_cursor_open(cursors, view->v_sections[s].vs_name, text,
                                                         &vq->vq_shape.sh_after[s]))) {
            char detail[160];
            snprintf(detail, sizeof(detail),
                     "%s is not a cursor this server issued (pass a *_next_cursor as is)", name);
            return problem(400, "bad-cursor", "Bad cursor", detail, ret_status);
        }
    }
    return NULL;
}

static struct MHD_Response *bad_token(const char *detail, unsigned *ret_status)
{
    return problem(400, "bad-consistency-token", "Bad consistency token", detail, ret_status);
}

/* min_offsets (query) and X-Readmodel-Min-Offsets (header), merged; wait_ms. */
static struct MHD_Response *parse_tokens(const view_t *view, const http_values_t *values,
                                         char *text, http_view_query_t *vq, unsigned *ret_status)
{
    static const char syntax[] = "min_offsets must be topic:partition:offset[,...] with at "
                                 "most 64 tokens";
    int given = query_arg(values, "min_offsets", text, HTTP_VIEW_PARAM_MAX_BYTES);
    if (given < 0 ||
        (given > 0 &&
         http_params_min_offsets(text, vq->vq_tokens, HTTP_MIN_OFFSETS_MAX, &vq->vq_token_count)))
        return bad_token(syntax, ret_status);
    const char *header = values->hv_get(values->hv_cls, MHD_HEADER_KIND, "X-Readmodel-Min-Offsets");
    if (header &&
        (strlen(header) >= HTTP_VIEW_PARAM_MAX_BYTES ||
         http_params_min_offsets(header, vq->vq_tokens, HTTP_MIN_OFFSETS_MAX, &vq->vq_token_count)))
        return bad_token("X-Readmodel-Min-Offsets must be topic:partition:offset[,...] with at "
                         "most 64 tokens",
                         ret_status);
    for (size_t i = 0; i < vq->vq_token_count; i++) {
        size_t t = 0;
        while (t < view->v_topic_count && strcmp(view->v_topics[t], vq->vq_tokens[i].mo_topic))
            t++;
        if (t == view->v_topic_count) {
            char detail[160];
            snprintf(detail, sizeof(detail), "%s consumes no topic '%s': its offsets never come",
                     view->v_name, vq->vq_tokens[i].mo_topic);
            return bad_token(detail, ret_status);
        }
    }
    return NULL;
}

struct MHD_Response *http_query_view(const view_t *view, int64_t wait_bound_ms,
                                     const http_cursor_scope_t *cursors,
                                     const http_values_t *values, http_view_query_t *vq,
                                     unsigned *ret_status)
{
    char text[HTTP_VIEW_PARAM_MAX_BYTES];
    render_shape_all(&vq->vq_shape);
    vq->vq_has_budget = false;
    vq->vq_token_count = 0;
    vq->vq_wait_ms = wait_bound_ms;
    struct MHD_Response *resp = parse_fields(view, values, text, vq, ret_status);
    resp = resp ? resp : parse_pages(view, cursors, values, text, vq, ret_status);
    resp = resp ? resp
                : int_arg(values, "max_staleness_ms", 0, HTTP_VIEW_BUDGET_MAX_MS,
                          &vq->vq_has_budget, &vq->vq_budget_ms, ret_status);
    resp = resp ? resp : parse_tokens(view, values, text, vq, ret_status);
    int64_t wait_ms = vq->vq_wait_ms;
    resp = resp ? resp : int_arg(values, "wait_ms", 0, 60000, NULL, &wait_ms, ret_status);
    if (wait_ms < vq->vq_wait_ms)
        vq->vq_wait_ms = wait_ms; /* a request may only lower the configured bound */
    return resp;
}

static const char *connection_value(void *cls, enum MHD_ValueKind kind, const char *name)
{
    return MHD_lookup_connection_value(cls, kind, name);
}

http_values_t http_values_of(struct MHD_Connection *conn)
{
    return (http_values_t){connection_value, conn};
}

static const char lookup_instance[] = "/v1/views/{view}";

struct MHD_Response *http_query_lookup(const view_t *view, const http_values_t *values,
                                       const view_index_t **ret_index,
                                       char decoded[HTTP_KEY_MAX_BYTES + 1], size_t *ret_len,
                                       unsigned *ret_status)
{
    const view_index_t *index = NULL;
    const char *value = NULL;
    size_t given = 0;
    for (size_t i = 0; i < view->v_index_count; i++) {
        const char *v =
            values->hv_get(values->hv_cls, MHD_GET_ARGUMENT_KIND, view->v_indexes[i].vi_name);
        if (v) {
            index = &view->v_indexes[i];
            value = v;
            given++;
        }
    }
    if (given != 1) {
        char detail[256] = "give exactly one of:";
        for (size_t i = 0; i < view->v_index_count; i++)
            snprintf(detail + strlen(detail), sizeof(detail) - strlen(detail), " %s",
                     view->v_indexes[i].vi_name);
        *ret_status = 400;
        return http_problem_response(400, "bad-lookup", "Bad lookup", detail, lookup_instance);
    }
    int decoded_len = http_query_decode(value, strlen(value), decoded, HTTP_KEY_MAX_BYTES);
    if (decoded_len <= 0) {
        *ret_status = 400;
        return http_problem_response(
            400, "bad-lookup", "Bad lookup",
            "the value is empty, longer than 128 bytes, or badly percent-encoded", lookup_instance);
    }
    decoded[decoded_len] = '\0';
    *ret_index = index;
    *ret_len = (size_t)decoded_len;
    return NULL;
}
