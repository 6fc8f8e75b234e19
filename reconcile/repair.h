/* repair: publish corrections as readmodel.Repair events to the view's repairs topic.
 *
 * The reconciler never writes a live store (one writer per store, docs/architecture.md §1): it
 * publishes what the source says, keyed by the view key (so one customer's repairs
 * stay in order on one partition), and the projector applies them like any other
 * event. Each carries provenance — run id, source URL, reason — so the log is the
 * audit trail. The event's occurred_at is the time the source was read: the repair
 * wins over every older write and loses to any newer event (lib/engine_control.c).
 *
 * Thread: one thread. */
#ifndef RC_REPAIR_H
#define RC_REPAIR_H

#include "app.h"
#include "compare.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct repair repair_t;

/* A producer for app's view (which must declare repairs.topic) with every kafka.*
 * property of the config. Returns NULL with a message in errstr. */
repair_t *repair_new(const app_t *app, const char *run_id, char *errstr, size_t errlen);
void repair_destroy(repair_t *repair);

/* Queues one correction. read_ms: when the source was read. Returns 0 or a negative
 * rm_err_t (RM_EKAFKA: the local queue refused it). */
int repair_publish(repair_t *repair, const char *key, const char *section, compare_op_t op,
                   const char *item, json_t *fields, const char *url, const char *reason,
                   int64_t read_ms);

/* Waits until every queued correction is acknowledged or failed. Returns 0 when all were
 * delivered, RM_EKAFKA otherwise (ret_failed says how many). */
int repair_flush(repair_t *repair, int timeout_ms, uint64_t *ret_failed);

uint64_t repair_delivered(const repair_t *repair);

#endif
