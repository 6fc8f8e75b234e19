/* http_view: GET /v1/views/{view}/{key} — the document shaped by its query (fields, list
 * pages), its ETag and If-None-Match, the freshness headers, the staleness budget and
 * consistency tokens. docs/query-api.md is the reference for every parameter and header.
 *
 * Notes on the design:
 * (1) The body is assembled first and the ETag is a weak tag (http_etag.h) over its bytes
 *     less the ranges that move while the entity does not: every lag figure, the
 *     staleness verdict, the consistency outcome and a live section's fetch time (the
 *     render and append_tail record them). Everything else — sections, live ones
 *     included, provenance, marks, cursors — is in the hash, so a tag never outlives a
 *     byte of what it says about the customer. Other volatile numbers (the wait's
 *     duration, the commit age) go into headers only.
 * (2) A request with consistency tokens renders from the very read txn in which the
 *     tokens were seen applied (http_fresh_wait), never from a later or earlier one.
 * (3) Live sections (http_live.h) are fetched after the txn is taken and before the
 *     render, which places them; the txn stays open for the fetch (at most the section's
 *     deadline). Their fetched_at is in the body but not in the tag (note 1): a document
 *     with a live section keeps its tag while the service answers the same. */
#include "buf.h"
#include "http_etag.h"
#include "rm_time.h"
#include "http_fresh.h"
#include "http_auth.h"
#include "http_handlers.h"
#include "http_live.h"
#include "http_params.h"
#include "http_query.h"
#include "http_problem.h"
#include "render.h"
#include "rm_err.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char view_instance[] = "/v1/views/{view}/{key}";

static struct MHD_Response *problem(unsigned status, const char *slug, const char *title,
                                    const char *detail, unsigned *ret_status)
{
    *ret_status = status;
    return http_problem_response(status, slug, title, detail, view_instance);
}

/* Appends "<section>_next_cursor" of each list page that has more, then lag, staleness
 * and consistency, before the document's closing brace. */
static int append_tail(const view_t *view, const http_cursor_scope_t *cursors,
                       const http_view_query_t *vq, const render_pages_t *pages,
                       const http_lag_t *lag, const http_wait_t *wait, render_spans_t *spans,
                       buf_t *body)
{
    body->b_len--; /* the document's '}' */
    int rc = 0;
    for (size_t s = 0; !rc && s < view->v_section_count; s++) {
        if (!pages->rp_more[s])
            continue;
        char cursor[HTTP_CURSOR_TEXT_MAX + 1];
        if (!http_cursor_seal(cursors, view->v_sections[s].vs_name, &pages->rp_next[s], cursor,
                              sizeof(cursor)))
            return RM_EINVAL;
        rc = buf_printf(body, ",\"%s_next_cursor\":\"%s\"", view->v_sections[s].vs_name, cursor);
    }
    /* Appended, not printf'd (this runs for every read). lag.seconds is hl_lag_ms / 1000
     * with three decimals: the digits of the milliseconds, exactly what %.3f printed. */
    assert(lag->hl_lag_ms >= 0);
    char millis[4] = {(char)('0' + lag->hl_lag_ms % 1000 / 100),
                      (char)('0' + lag->hl_lag_ms % 100 / 10), (char)('0' + lag->hl_lag_ms % 10),
                      '\0'};
    size_t volatile_at = body->b_len; /* from here to the closing brace: note 1 */
    rc = rc ? rc : buf_append_str(body, ",\"lag\":{\"messages\":");
    rc = rc ? rc : buf_append_i64(body, lag->hl_messages);
    rc = rc ? rc : buf_append_str(body, ",\"seconds\":");
    rc = rc ? rc : buf_append_i64(body, lag->hl_lag_ms / 1000);
    rc = rc ? rc : buf_append_char(body, '.');
    rc = rc ? rc : buf_append_str(body, millis);
    rc = rc ? rc : buf_append_str(body, ",\"partitions\":");
    rc = rc ? rc : buf_append_i64(body, (int64_t)lag->hl_partitions);
    rc = rc ? rc : buf_append_char(body, '}');
    if (!rc && vq->vq_has_budget)
        rc = buf_printf(body, ",\"staleness\":{\"budget_ms\":%lld,\"lag_ms\":%lld,\"met\":%s}",
                        (long long)vq->vq_budget_ms, (long long)lag->hl_lag_ms,
                        lag->hl_lag_ms <= vq->vq_budget_ms ? "true" : "false");
    if (!rc && vq->vq_token_count) {
        rc = buf_printf(body, ",\"consistency\":{\"reached\":%s",
                        wait->hw_reached ? "true" : "false");
        if (!rc && !wait->hw_reached)
            rc = buf_printf(body, ",\"reason\":\"%s\"",
                            wait->hw_busy          ? "busy"
                            : wait->hw_unreachable ? "unreachable"
                                                   : "timeout");
        rc = rc ? rc : buf_append_str(body, ",\"missing\":[");
        bool comma = false;
        for (size_t i = 0; !rc && i < vq->vq_token_count; i++) {
            if (!(wait->hw_missing & (UINT64_C(1) << i)))
                continue;
            const http_min_offset_t *token = &vq->vq_tokens[i];
            rc = buf_printf(body,
                            "%s{\"topic\":\"%s\",\"partition\":%d,\"want\":%lld,\"have\":%lld}",
                            comma ? "," : "", token->mo_topic, token->mo_partition,
                            (long long)token->mo_offset, (long long)wait->hw_have[i]);
            comma = true;
        }
        rc = rc ? rc : buf_append_str(body, "]}");
    }
    if (!rc)
        render_spans_add(spans, volatile_at, body->b_len);
    return rc ? rc : buf_append_char(body, '}');
}

static void add_int_header(struct MHD_Response *resp, const char *name, int64_t value)
{
    /* Not snprintf: three of these per read, and it cost more than the header itself. */
    char tmp[BUF_I64_TEXT];
    MHD_add_response_header(resp, name, buf_i64_text(value, tmp));
}

/* The headers of a 200 and of a 304 alike (RFC 9110 §15.4.5: a 304 carries what the 200
 * would have). etag may be NULL (an error answer). */
static void add_headers(struct MHD_Response *resp, const char *etag, const http_view_query_t *vq,
                        const http_lag_t *lag, const http_wait_t *wait)
{
    if (!resp)
        return;
    if (etag) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, HTTP_CACHE_PRIVATE);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, HTTP_VARY_CREDENTIALS);
    }
    if (lag) {
        add_int_header(resp, "X-Readmodel-Lag-Ms", lag->hl_lag_ms);
        add_int_header(resp, "X-Readmodel-Lag-Messages", lag->hl_messages);
        if (lag->hl_newest_commit_ms)
            add_int_header(resp, "X-Readmodel-Commit-Age-Ms",
                           lag->hl_now_ms > lag->hl_newest_commit_ms
                               ? lag->hl_now_ms - lag->hl_newest_commit_ms
                               : 0);
        if (vq->vq_has_budget)
            MHD_add_response_header(resp, "X-Readmodel-Staleness-Exceeded",
                                    lag->hl_lag_ms > vq->vq_budget_ms ? "true" : "false");
    }
    if (vq->vq_token_count) {
        MHD_add_response_header(resp, "X-Readmodel-Consistency",
                                wait->hw_reached ? "reached" : "not-reached");
        add_int_header(resp, "X-Readmodel-Consistency-Wait-Ms", wait->hw_waited_ms);
    }
}

/* Reads the lag, then renders the document in txn with each section's share of it in its
 * freshness (one scan of the offsets serves the headers, the body's lag and the sections). */
static int render_in(http_ctx_t *ctx, store_t *store, MDB_txn *txn, const http_request_t *req,
                     http_view_query_t *vq, buf_t *body, render_pages_t *ret_pages,
                     http_lag_t *ret_lag, render_spans_t *ret_spans)
{
    const view_t *view = ctx->hc_app->ap_view;
    http_topic_lag_t topics[VIEW_MAX_TOPICS];
    render_lag_t sections[FRAG_MAX_SLOTS];
    int rc =
        http_fresh_lag_topics(view, store, txn, rm_wall_ms(), http_lag_memo(), ret_lag, topics);
    if (rc)
        return rc;
    http_fresh_section_lag(view, topics, sections);
    vq->vq_shape.sh_lag = sections;
    vq->vq_shape.sh_volatile = ret_spans;
    rc = render_view_shaped(view, store, txn, req->hr_key, req->hr_key_len, &vq->vq_shape, body,
                            ret_pages);
    vq->vq_shape.sh_lag = NULL; /* borrowed for this render only */
    vq->vq_shape.sh_volatile = NULL;
    return rc;
}

struct MHD_Response *http_handle_view(http_ctx_t *ctx, struct MHD_Connection *conn,
                                      const http_request_t *req, unsigned *ret_status)
{
    const view_t *view = ctx->hc_app->ap_view;
    if (strcmp(req->hr_view, view->v_name) != 0)
        return problem(404, "unknown-view", "Unknown view", "this server serves another view",
                       ret_status);
    http_view_query_t vq;
    http_values_t values = http_values_of(conn);
    /* A cursor is good for this document's section only (http_cursor.h). */
    http_cursor_scope_t cursors = {&ctx->hc_cursor_keys, view->v_name, req->hr_key,
                                   req->hr_key_len};
    struct MHD_Response *resp =
        http_query_view(view, ctx->hc_consistency_wait_ms, &cursors, &values, &vq, ret_status);
    resp = resp ? resp
                : http_auth_shape(req->hr_caller, view, &vq.vq_shape,
                                  vq.vq_shape.sh_sections != RENDER_ALL_SECTIONS, ret_status);
    if (resp)
        return resp;
    store_t *store;
    MDB_txn *txn;
    http_wait_t wait = {0};
    const auth_principal_t *principal = &req->hr_caller->cl_principal;
    int rc =
        vq.vq_token_count
            ? http_fresh_wait(ctx, principal->ap_method == AUTH_OFF ? NULL : principal->ap_name,
                              vq.vq_tokens, vq.vq_token_count, vq.vq_wait_ms, &store, &txn, &wait)
            : http_txn(ctx, &store, &txn);
    if (rc == RM_ENOTFOUND) {
        char detail[320];
        snprintf(detail, sizeof(detail), "the view store is not open yet: %s",
                 http_store_error(ctx));
        *ret_status = 503;
        return http_problem_response(503, "not-ready", "Not ready", detail, NULL);
    }
    if (rc) {
        *ret_status = 500;
        return http_problem_response(500, "internal", "Internal error", "cannot read the store",
                                     NULL);
    }
    http_live_result_t live; /* note 3 */
    http_live_fetch(ctx->hc_live, store, txn, req->hr_key, req->hr_key_len, &vq.vq_shape, &live);
    buf_t *body = http_body();
    render_pages_t pages;
    http_lag_t lag;
    render_spans_t spans;
    spans.rsp_count = 0;
    spans.rsp_overflow = false;
    rc = render_in(ctx, store, txn, req, &vq, body, &pages, &lag, &spans);
    http_txn_done();
    if (rc == RM_ENOTFOUND) {
        resp = problem(404, "not-found", "Not found", "no document for this key in this view",
                       ret_status);
        add_headers(resp, NULL, &vq, NULL, &wait); /* a token not reached may explain it */
        return resp;
    }
    if (rc == RM_EINVAL)
        return problem(400, "bad-request", "Bad request", "this key cannot exist", ret_status);
    rc = rc ? rc : append_tail(view, &cursors, &vq, &pages, &lag, &wait, &spans, body);
    if (rc) {
        *ret_status = 500;
        return http_problem_response(500, "internal", "Internal error", rm_strerror(rc), NULL);
    }
    char etag[HTTP_ETAG_CHARS];
    http_etag_of(body->b_data, body->b_len, &spans, etag);
    const char *if_none_match =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_IF_NONE_MATCH);
    if (if_none_match && http_etag_matches(if_none_match, etag)) {
        *ret_status = 304;
        resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    } else {
        *ret_status = 200;
        resp = MHD_create_response_from_buffer(body->b_len, body->b_data, MHD_RESPMEM_MUST_COPY);
        if (resp)
            MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    }
    add_headers(resp, etag, &vq, &lag, &wait);
    http_live_served(ctx->hc_live, &live);
    http_live_add_headers(ctx->hc_live, &live, resp);
    return resp;
}
