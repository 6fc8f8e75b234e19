/* http_auth: limits, authentication, authorization hooks and audit over HTTP (see
 * http_auth.h).
 *
 * Notes on the design:
 * (1) Order of the gate: size limits first (cheapest, and nothing else should parse an
 *     oversized request), then the per-IP limit (before any signature check, so a flood
 *     of forged tokens costs a bucket lookup, not an RSA verification), then the
 *     credentials, then the per-principal limit.
 * (2) A 401 never says more than a fixed reason ("expired", "unknown key id"); it never
 *     quotes the token or the key, and neither does any log line.
 * (3) Open routes (health, metrics, the dashboard and its status JSON, the OpenAPI
 *     document) carry no customer data; they skip authentication but not the limits.
 * (4) The audit log records reads: requests that passed the whole gate. What an
 *     attacker can send without limit — requests refused by a limit, 401s, methods
 *     other than GET and HEAD — writes no audit line, so it can neither flood the log
 *     nor push real reads out of a rate-limited sink (journald); the request metrics
 *     count them by route and status. Other methods pass the size and per-address
 *     limits (http_auth_admit) before their 405. */
#include "http_auth.h"
#include "http_problem.h"
#include "log.h"
#include "rm_err.h"
#include "rm_time.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Buckets per limiter: one per client seen recently; 64 Ki buckets are ~6 MB. */
#define HTTP_AUTH_RL_SLOTS 65536

int http_auth_init(http_ctx_t *ctx, char *errstr, size_t errlen)
{
    const cfg_t *cfg = ctx->hc_app->ap_cfg;
    const view_t *view = ctx->hc_app->ap_view;
    for (size_t s = 0; s < view->v_section_count && s < 32; s++)
        ctx->hc_section_names[s] = view->v_sections[s].vs_name;
    ctx->hc_max_url_bytes = (size_t)cfg_int(cfg, "query_api.max_url_bytes");
    ctx->hc_max_header_bytes = (size_t)cfg_int(cfg, "query_api.max_header_bytes");
    if (RAND_bytes((unsigned char *)&ctx->hc_request_salt, sizeof(ctx->hc_request_salt)) != 1)
        ctx->hc_request_salt = (uint32_t)rm_wall_ms();
    if (!(ctx->hc_auth = auth_new(cfg, view, errstr, errlen)))
        return RM_ECONFIG;
    if (!auth_enabled(ctx->hc_auth))
        log_warn("query_api.auth.enabled is off: every caller reads every section and field "
                 "unmasked");
    const char *warning = NULL;
    if (!(ctx->hc_audit = audit_new(cfg, &warning, errstr, errlen)))
        return RM_ECONFIG;
    if (warning)
        log_warn(warning);
    int64_t ip_rps = cfg_int(cfg, "query_api.rate_limit.ip_rps");
    int64_t principal_rps = cfg_int(cfg, "query_api.rate_limit.principal_rps");
    if (ip_rps && !(ctx->hc_ip_limit = rl_new(ip_rps, cfg_int(cfg, "query_api.rate_limit.ip_burst"),
                                              HTTP_AUTH_RL_SLOTS)))
        return RM_ENOMEM;
    if (principal_rps && !(ctx->hc_principal_limit = rl_new(
                               principal_rps, cfg_int(cfg, "query_api.rate_limit.principal_burst"),
                               HTTP_AUTH_RL_SLOTS)))
        return RM_ENOMEM;
    return 0;
}

void http_auth_cleanup(http_ctx_t *ctx)
{
    auth_destroy(ctx->hc_auth);
    rl_destroy(ctx->hc_ip_limit);
    rl_destroy(ctx->hc_principal_limit);
    audit_destroy(ctx->hc_audit);
}

static struct MHD_Response *fail(unsigned status, const char *slug, const char *title,
                                 const char *detail, unsigned *ret_status)
{
    *ret_status = status;
    return http_problem_response(status, slug, title, detail, NULL);
}

static struct MHD_Response *unauthorized(const char *reason, bool credentials_given,
                                         unsigned *ret_status)
{
    struct MHD_Response *resp = fail(401, "unauthorized", "Unauthorized", reason, ret_status);
    if (resp) {
        /* RFC 6750 §3: error="invalid_token" only when a token was presented. */
        char value[200];
        snprintf(value, sizeof(value), "Bearer realm=\"readmodel\"%s%s%s",
                 credentials_given ? ", error=\"invalid_token\", error_description=\"" : "",
                 credentials_given ? reason : "", credentials_given ? "\"" : "");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, value);
    }
    return resp;
}

static struct MHD_Response *too_many(int64_t retry_after_ms, const char *who, unsigned *ret_status)
{
    char detail[128];
    int64_t seconds = (retry_after_ms + 999) / 1000;
    snprintf(detail, sizeof(detail), "the %s rate limit is exhausted; retry in %lld s", who,
             (long long)seconds);
    struct MHD_Response *resp = fail(429, "rate-limited", "Too many requests", detail, ret_status);
    if (resp) {
        char value[24];
        snprintf(value, sizeof(value), "%lld", (long long)seconds);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, value);
    }
    return resp;
}

static enum MHD_Result add_header_size(void *cls, enum MHD_ValueKind kind, const char *key,
                                       const char *value)
{
    (void)kind;
    *(size_t *)cls += strlen(key) + (value ? strlen(value) : 0) + 4; /* ": " and CRLF */
    return MHD_YES;
}

static void request_id(http_ctx_t *ctx, struct MHD_Connection *conn, http_caller_t *caller)
{
    const char *given = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    size_t len = given ? strlen(given) : 0;
    bool ok = len > 0 && len <= HTTP_REQUEST_ID_MAX_BYTES;
    for (size_t i = 0; ok && i < len; i++) {
        char c = given[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '-' || c == '_' || c == '.';
    }
    if (ok) { /* a caller's id links our audit line to its own logs */
        memcpy(caller->cl_request_id, given, len + 1);
        return;
    }
    /* "%08x-%llx" of the salt and the sequence number, by hand: every request without an
     * id of its own (most) comes here, and snprintf was its largest cost. */
    static const char hex[] = "0123456789abcdef";
    uint64_t seq = __atomic_add_fetch(&ctx->hc_request_seq, 1, __ATOMIC_RELAXED);
    char *p = caller->cl_request_id;
    for (int shift = 28; shift >= 0; shift -= 4)
        *p++ = hex[(ctx->hc_request_salt >> shift) & 15];
    *p++ = '-';
    int digits = 1;
    while (digits < 16 && seq >> (4 * digits))
        digits++;
    for (int d = digits - 1; d >= 0; d--)
        *p++ = hex[(seq >> (4 * d)) & 15];
    *p = '\0';
}

/* The client address as text (the per-IP bucket's key). */
static size_t client_ip(struct MHD_Connection *conn, char *out, size_t cap)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    out[0] = '\0';
    if (info && info->client_addr) {
        const struct sockaddr *sa = info->client_addr;
        if (sa->sa_family == AF_INET)
            inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)cap);
        else if (sa->sa_family == AF_INET6)
            inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)cap);
    }
    return strlen(out);
}

/* A bearer token through the connection's memo (http_auth.h), else auth's cache. */
static int bearer(auth_t *auth, const char *token, int64_t now_ms, http_token_memo_t *memo,
                  auth_principal_t *ret_principal, const char **ret_reason)
{
    size_t len = strlen(token);
    if (memo && len && memo->tm_len == len && CRYPTO_memcmp(memo->tm_token, token, len) == 0 &&
        now_ms <= memo->tm_principal.ap_expires_ms) {
        *ret_principal = memo->tm_principal;
        return 0;
    }
    int rc = auth_bearer(auth, token, len, now_ms, ret_principal, ret_reason);
    if (memo) {
        memo->tm_len = 0; /* another token on this connection: forget the old one */
        if (!rc && len <= sizeof(memo->tm_token)) {
            memcpy(memo->tm_token, token, len);
            memo->tm_principal = *ret_principal;
            memo->tm_len = len;
        }
    }
    return rc;
}

/* Credentials: "Authorization: Bearer <jwt>" or "X-Api-Key: <key>". */
static struct MHD_Response *authenticate(auth_t *auth, const char *authz, const char *api_key,
                                         int64_t now_ms, http_token_memo_t *memo,
                                         http_caller_t *caller, unsigned *ret_status)
{
    const char *reason = "credentials required (Authorization: Bearer, or X-Api-Key)";
    int rc = RM_EINVAL;
    if (authz && api_key) {
        reason = "give one credential, not both";
    } else if (authz) {
        if (strncasecmp(authz, "Bearer ", 7) != 0) {
            reason = "the Authorization scheme must be Bearer";
        } else {
            const char *token = authz + 7;
            while (*token == ' ')
                token++;
            rc = bearer(auth, token, now_ms, memo, &caller->cl_principal, &reason);
        }
    } else if (api_key) {
        rc = auth_api_key(auth, api_key, strlen(api_key), &caller->cl_principal, &reason);
    }
    return rc ? unauthorized(reason, authz || api_key, ret_status) : NULL;
}

struct MHD_Response *http_auth_identify(auth_t *auth, const http_request_t *req, const char *authz,
                                        const char *api_key, int64_t now_ms,
                                        http_token_memo_t *memo, http_caller_t *caller,
                                        unsigned *ret_status)
{
    if (auth_route_open(auth, http_route_name(req->hr_route)) ||
        req->hr_route == HTTP_ROUTE_NOT_FOUND || req->hr_route == HTTP_ROUTE_BAD) {
        /* No customer data behind these; a 404 or 400 tells an anonymous caller nothing. */
        auth_principal_all(&caller->cl_principal);
        snprintf(caller->cl_principal.ap_name, sizeof(caller->cl_principal.ap_name), "%s",
                 auth_enabled(auth) ? "anonymous" : "auth-off");
        return NULL;
    }
    return authenticate(auth, authz, api_key, now_ms, memo, caller, ret_status);
}

struct MHD_Response *http_auth_admit(http_ctx_t *ctx, struct MHD_Connection *conn, const char *url,
                                     http_caller_t *caller, unsigned *ret_status)
{
    memset(caller, 0, sizeof(*caller));
    snprintf(caller->cl_principal.ap_name, sizeof(caller->cl_principal.ap_name), "unauthenticated");
    request_id(ctx, conn, caller);
    if (strlen(url) > ctx->hc_max_url_bytes)
        return fail(414, "uri-too-long", "URI too long",
                    "the path is longer than "
                    "query_api.max_url_bytes",
                    ret_status);
    size_t header_bytes = 0;
    MHD_get_connection_values(conn, MHD_HEADER_KIND, add_header_size, &header_bytes);
    size_t query_bytes = 0;
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, add_header_size, &query_bytes);
    if (query_bytes + strlen(url) > ctx->hc_max_url_bytes)
        return fail(414, "uri-too-long", "URI too long",
                    "the query string is longer than "
                    "query_api.max_url_bytes",
                    ret_status);
    if (header_bytes > ctx->hc_max_header_bytes)
        return fail(431, "headers-too-large", "Request header fields too large",
                    "the headers are larger than query_api.max_header_bytes", ret_status);
    int64_t retry_ms;
    char ip[64];
    if (ctx->hc_ip_limit) {
        size_t ip_len = client_ip(conn, ip, sizeof(ip));
        if (rl_take(ctx->hc_ip_limit, ip, ip_len, rm_mono_ms(), &retry_ms))
            return too_many(retry_ms, "per-client-address", ret_status);
    }
    return NULL;
}

struct MHD_Response *http_auth_gate(http_ctx_t *ctx, struct MHD_Connection *conn, const char *url,
                                    const http_request_t *req, http_token_memo_t *memo,
                                    http_caller_t *caller, unsigned *ret_status)
{
    struct MHD_Response *resp = http_auth_admit(ctx, conn, url, caller, ret_status);
    if (resp)
        return resp;
    resp = http_auth_identify(
        ctx->hc_auth, req,
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Api-Key"), rm_wall_ms(), memo, caller,
        ret_status);
    if (resp)
        return resp;
    int64_t retry_ms;
    const char *name = caller->cl_principal.ap_name;
    /* an open route's anonymous caller is no principal to rate-limit */
    if (caller->cl_principal.ap_method != AUTH_OFF && ctx->hc_principal_limit &&
        rl_take(ctx->hc_principal_limit, name, strlen(name), rm_mono_ms(), &retry_ms))
        return too_many(retry_ms, "per-principal", ret_status);
    caller->cl_admitted = true;
    return NULL;
}

struct MHD_Response *http_auth_shape(http_caller_t *caller, const view_t *view,
                                     render_shape_t *shape, bool fields_given, unsigned *ret_status)
{
    const auth_principal_t *p = &caller->cl_principal;
    uint32_t all =
        view->v_section_count >= 32 ? UINT32_MAX : (UINT32_C(1) << view->v_section_count) - 1;
    uint32_t allowed = p->ap_sections & all;
    if (!allowed)
        return fail(403, "forbidden", "Forbidden",
                    "no role of this caller grants a section "
                    "of this view",
                    ret_status);
    uint32_t wanted = shape->sh_sections & all;
    if (fields_given && (wanted & ~allowed)) {
        char detail[160] = "fields names a section this caller may not read:";
        for (size_t s = 0; s < view->v_section_count; s++)
            if (wanted & ~allowed & (UINT32_C(1) << s))
                snprintf(detail + strlen(detail), sizeof(detail) - strlen(detail), " %s",
                         view->v_sections[s].vs_name);
        return fail(403, "forbidden-section", "Forbidden section", detail, ret_status);
    }
    shape->sh_sections = wanted & allowed;
    for (size_t s = 0; s < FRAG_MAX_SLOTS; s++) {
        shape->sh_fields[s] = p->ap_fields[s];
        shape->sh_pii_shown[s] = p->ap_pii_fields[s];
    }
    shape->sh_mask_pii = true; /* but not the fields of sh_pii_shown */
    caller->cl_sections = shape->sh_sections;
    return NULL;
}

struct MHD_Response *http_auth_lookup(http_caller_t *caller, const view_t *view,
                                      const view_index_t *index, const char *value,
                                      size_t value_len, unsigned *ret_status)
{
    const auth_principal_t *p = &caller->cl_principal;
    caller->cl_index = index->vi_name;
    size_t n = value_len < HTTP_KEY_MAX_BYTES ? value_len : HTTP_KEY_MAX_BYTES;
    memcpy(caller->cl_value, value, n);
    caller->cl_value_len = n;
    if (!(p->ap_sections &
          ((view->v_section_count >= 32 ? UINT32_MAX
                                        : (UINT32_C(1) << view->v_section_count) - 1))))
        return fail(403, "forbidden", "Forbidden",
                    "no role of this caller grants a section "
                    "of this view",
                    ret_status);
    if (index->vi_section < 0 || index->vi_field < 0)
        return NULL; /* a link index (order_id): answers with keys, shaped like reads */
    /* Searching by a field tells whether a customer has a value there: the caller must
     * be able to read that field, unmasked when it is PII (auth.h note 5). */
    uint32_t section_bit = UINT32_C(1) << index->vi_section;
    uint32_t field_bit = UINT32_C(1) << index->vi_field;
    if (!(p->ap_sections & section_bit) || !(p->ap_fields[index->vi_section] & field_bit))
        return fail(403, "forbidden-lookup", "Forbidden lookup",
                    "searching by a field "
                    "needs the right to read it",
                    ret_status);
    if (view->v_sections[index->vi_section].vs_fields[index->vi_field].vf_pii &&
        !(p->ap_pii_fields[index->vi_section] & field_bit))
        return fail(403, "forbidden-lookup", "Forbidden lookup",
                    "searching by a PII field "
                    "needs pii granted on that field",
                    ret_status);
    return NULL;
}

void http_auth_finish(http_ctx_t *ctx, const http_request_t *req, http_caller_t *caller,
                      struct MHD_Response *resp, unsigned status)
{
    if (resp)
        MHD_add_response_header(resp, "X-Request-Id", caller->cl_request_id);
    /* Only what passed the gate is a read: a refusal by a limit (429, 414, 431), a 401
     * and a 405 are what any client can send without end, and each is counted in
     * readmodel_http_requests_total by route and status instead (note 4). */
    if (!caller->cl_admitted ||
        (req->hr_route != HTTP_ROUTE_VIEW && req->hr_route != HTTP_ROUTE_LOOKUP))
        return;
    static const char *const methods[] = {"none", "jwt", "api_key", "off"};
    bool served = status == 200 || status == 304;
    audit_record_t record = {
        .ar_event = req->hr_route == HTTP_ROUTE_VIEW ? "view_read" : "lookup",
        .ar_principal = caller->cl_principal.ap_name,
        .ar_method = methods[caller->cl_principal.ap_method],
        .ar_request_id = caller->cl_request_id,
        .ar_view = req->hr_view,
        .ar_key = req->hr_route == HTTP_ROUTE_VIEW ? req->hr_key : NULL,
        .ar_key_len = req->hr_key_len,
        .ar_index = caller->cl_index,
        .ar_value = caller->cl_value,
        .ar_value_len = caller->cl_value_len,
        .ar_section_names = ctx->hc_section_names,
        .ar_sections = served ? caller->cl_sections : 0,
        .ar_status = status,
    };
    if (audit_write(ctx->hc_audit, &record))
        __atomic_fetch_add(&ctx->hc_audit_failures, 1, __ATOMIC_RELAXED);
}
