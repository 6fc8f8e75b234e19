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

/* A new response for a problem (the caller queues and destroys it). NULL on ENOMEM. */
struct MHD_Response *http_problem_response(unsigned status, const char *slug, const char *title,
                                           const char *detail, const char *instance);

#endif
