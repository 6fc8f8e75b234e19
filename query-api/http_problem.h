/* http_problem: RFC 9457 problem details (application/problem+json) with stable types. */
#ifndef RM_HTTP_PROBLEM_H
#define RM_HTTP_PROBLEM_H

#include "buf.h"

#include <microhttpd.h>

#define HTTP_PROBLEM_BASE "https://readmodel.dev/problems/"

/* Renders {"type":BASE slug,"title":..,"status":..,"detail":..,"instance":path} into out
 * (appending). detail and instance are escaped; neither may hold payload or PII. */
int http_problem_render(buf_t *out, unsigned status, const char *slug, const char *title,
                        const char *detail, const char *instance);

/* Cache directives of answers that carry customer data or depend on the caller's
 * credentials (docs/query-api.md, Caching): a view document may be kept by the caller's
 * own cache only, and revalidated with its entity tag before every use; the answer
 * depends on the credentials, so no cache may serve it for other ones. */
#define HTTP_CACHE_PRIVATE "private, no-cache"
#define HTTP_CACHE_NONE "no-store"
#define HTTP_VARY_CREDENTIALS "Authorization, X-Api-Key"

/* A new response for a problem (the caller queues and destroys it), with Cache-Control
 * no-store and Vary on the credentials: no cache keeps an error, which would otherwise
 * outlive what caused it, or answer one caller with another's. NULL on ENOMEM. */
struct MHD_Response *http_problem_response(unsigned status, const char *slug, const char *title,
                                           const char *detail, const char *instance);

#endif
