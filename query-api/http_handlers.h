/* http_handlers: one function per route. Each returns a response to queue (the caller
 * queues and destroys it) and sets *ret_status. Worker threads; thread-safe. */
#ifndef RM_HTTP_HANDLERS_H
#define RM_HTTP_HANDLERS_H

#include "http_ctx.h"

/* GET /v1/views/{view}/{key} (http_view.c): reads query parameters and headers of conn. */
struct MHD_Response *http_handle_view(http_ctx_t *ctx, struct MHD_Connection *conn,
                                      const http_request_t *req, unsigned *ret_status);
struct MHD_Response *http_handle_lookup(http_ctx_t *ctx, struct MHD_Connection *conn,
                                        const http_request_t *req, unsigned *ret_status);
struct MHD_Response *http_handle_readyz(http_ctx_t *ctx, unsigned *ret_status);
struct MHD_Response *http_handle_metrics(http_ctx_t *ctx, unsigned *ret_status);
/* The dashboard's data: per partition offsets and lag, parked events, dead letters waiting
 * in the outbox, recorded gaps and a derived state (running, catching-up, stalled,
 * degraded, not-ready). */
struct MHD_Response *http_handle_status(http_ctx_t *ctx, unsigned *ret_status);

#endif
