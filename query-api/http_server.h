/* http_server: the query API's libmicrohttpd daemon — dispatch, counting, fixed
 * responses. */
#ifndef RM_HTTP_SERVER_H
#define RM_HTTP_SERVER_H

#include "http_ctx.h"

typedef struct http_server http_server_t;

/* Starts listening per cfg (query_api.listen, threads, max_connections, timeout_s).
 * app must outlive the server. Returns 0 and the server in *ret_server, or with a message
 * in errstr: RM_ECONFIG for settings no restart fixes (the address, TLS files, the
 * authentication policy, cursor keys, live services), RM_ENOMEM, or the error of a step
 * that may pass on a restart (a busy port: rm_err_from_errno, e.g. RM_EIO). */
int http_server_start(app_t *app, http_server_t **ret_server, char *errstr, size_t errlen);
/* Stops accepting, waits for the workers, closes the store. NULL-safe. */
void http_server_stop(http_server_t *server);

#endif
