/* http_auth: the query API's gate — request limits, authentication, rate limits — and the
 * authorization and audit hooks the view and lookup handlers call. The policies
 * themselves live in auth.c (who may read what), ratelimit.c and audit.c; this module
 * only maps them onto HTTP (401 + WWW-Authenticate, 403, 414, 431, 429 + Retry-After,
 * X-Request-Id). docs/query-api.md "Security". */
#ifndef RM_HTTP_AUTH_H
#define RM_HTTP_AUTH_H

#include "audit.h"
#include "auth.h"
#include "http_ctx.h"
#include "ratelimit.h"
#include "render.h"

#include <microhttpd.h>

#define HTTP_REQUEST_ID_MAX_BYTES 64

/* Longest bearer token remembered per connection; real tokens are under 2 KB (auth.h). */
#define HTTP_TOKEN_MEMO_MAX_BYTES 2048

/* The bearer token last verified on one connection and the principal it granted. A
 * keep-alive client sends the same token with every request: comparing it with this
 * copy (in constant time) costs a fraction of hashing it for auth's shared cache, which
 * was the largest cost of authentication per request. Same validity as the shared
 * cache: only a token that verified, only until its expiry (exp + leeway). One per
 * connection (http_server.c), used by the connection's worker thread only. */
typedef struct http_token_memo {
    size_t tm_len; /* 0: empty */
    char tm_token[HTTP_TOKEN_MEMO_MAX_BYTES];
    auth_principal_t tm_principal;
} http_token_memo_t;

/* Who is calling and, once a handler ran, what it was given (for the audit line). */
typedef struct http_caller {
    auth_principal_t cl_principal;
    char cl_request_id[HTTP_REQUEST_ID_MAX_BYTES + 1];
    uint32_t cl_sections;  /* sections returned */
    const char *cl_index;  /* lookup: index name (static, the view's) */
    char cl_value[HTTP_KEY_MAX_BYTES + 1]; /* lookup: the decoded value (hashed in the log) */
    size_t cl_value_len;
    bool cl_admitted; /* passed the whole gate: only such requests are audited */
} http_caller_t;

/* Builds the security state from the config (auth, rate limiters, audit log) into ctx.
 * Returns 0, or RM_ECONFIG with errstr. Main thread, before the daemon starts. */
int http_auth_init(http_ctx_t *ctx, char *errstr, size_t errlen);
void http_auth_cleanup(http_ctx_t *ctx);

/* Who calls: on a route that needs no credentials (query_api.auth.open_routes, an unknown
 * or malformed route, or auth off) an anonymous principal with everything (method
 * AUTH_OFF); otherwise the principal of the bearer token authz ("Bearer <jwt>") or of the
 * API key, verified at now_ms. NULL with caller->cl_principal filled, or a 401 (returned,
 * with *ret_status) that never quotes the credential. authz and api_key are header
 * values or NULL. memo (NULL: none) is the connection's http_token_memo_t: a bearer token
 * equal to its copy is not verified again, and one that verifies replaces it. The
 * gate's authentication step, without a connection (fuzz_http.c). Any thread; memo only
 * from the thread serving its connection. */
struct MHD_Response *http_auth_identify(struct auth *auth, const http_request_t *req,
                                        const char *authz, const char *api_key, int64_t now_ms,
                                        http_token_memo_t *memo, http_caller_t *caller,
                                        unsigned *ret_status);

/* The gate's first steps, for every request whatever its method: a request id, the
 * size limits and the per-IP rate limit. Resets caller. NULL when the request may go
 * on, else the error response with *ret_status. HTTP worker. */
struct MHD_Response *http_auth_admit(http_ctx_t *ctx, struct MHD_Connection *conn, const char *url,
                                     http_caller_t *caller, unsigned *ret_status);

/* Runs before any route: size limits, per-IP rate limit, authentication (unless the
 * route is open) and the per-principal rate limit. memo: the connection's token memo,
 * or NULL. Returns NULL when the request may proceed (caller filled), else the error
 * response with *ret_status. HTTP worker. */
struct MHD_Response *http_auth_gate(http_ctx_t *ctx, struct MHD_Connection *conn, const char *url,
                                    const http_request_t *req, http_token_memo_t *memo,
                                    http_caller_t *caller, unsigned *ret_status);

/* View handler: restricts shape to what the caller may see (sections, fields, masks).
 * A `fields` naming a section the caller may not read, or a caller with no section of
 * the view at all, is a 403 (returned, with *ret_status); NULL when shape was narrowed. */
struct MHD_Response *http_auth_shape(http_caller_t *caller, const view_t *view,
                                     render_shape_t *shape, bool fields_given,
                                     unsigned *ret_status);

/* Lookup handler: may the caller search index (a PII field's index needs pii)? NULL or a
 * 403. Records the index and value for the audit line. */
struct MHD_Response *http_auth_lookup(http_caller_t *caller, const view_t *view,
                                      const view_index_t *index, const char *value,
                                      size_t value_len, unsigned *ret_status);

/* After the response: the audit line of a view read or lookup that passed the gate
 * (other routes, and requests the gate refused: nothing), and the X-Request-Id header
 * on resp (may be NULL). */
void http_auth_finish(http_ctx_t *ctx, const http_request_t *req, http_caller_t *caller,
                      struct MHD_Response *resp, unsigned status);

#endif
