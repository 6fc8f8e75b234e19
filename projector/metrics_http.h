/* metrics_http: the projector's small HTTP listener — /metrics (Prometheus text)
 * and /healthz — so the projector is observable even where no query API runs. */
#ifndef RM_METRICS_HTTP_H
#define RM_METRICS_HTTP_H

#include "pipeline.h"

typedef struct metrics_http metrics_http_t;

/* Starts listening on listen ("host:port") in its own thread; the pipeline must outlive it.
 * Returns NULL with a message in errstr. */
metrics_http_t *metrics_http_start(const char *listen, pipeline_t *pl, char *errstr, size_t errlen);
void metrics_http_stop(metrics_http_t *server);

#endif
