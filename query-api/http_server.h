/* http_server: the query API's libmicrohttpd daemon — dispatch, counting, fixed
 * responses. */
#ifndef RM_HTTP_SERVER_H
#define RM_HTTP_SERVER_H

#include "http_ctx.h"

typedef struct http_server http_server_t;

/* Starts listening per cfg (query_api.listen, threads, max_connections, timeout_s).
 * app must outlive the server. Returns NULL with a message in errstr. */
http_server_t *http_server_start(app_t *app, char *errstr, size_t errlen);
/* Stops accepting, waits for the workers, closes the store. NULL-safe. */
void http_server_stop(http_server_t *server);

#endif
