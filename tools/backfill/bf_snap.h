/* bf_snap: one JSON line of a source service's snapshot -> one Confluent-framed snapshot
 * event (docs/backfill.md).
 *
 * Each aggregate (customers, orders, loyalty, returns) has a table of the JSON members it
 * reads, their kinds and the Avro field each fills; bf_snap_new checks that table against
 * the catalog's snapshot schema once, so a schema and the parser cannot drift apart.
 * Every line is validated completely before it is encoded: a bad line is reported as
 * "member: problem" and nothing of it is produced.
 *
 * event_id is "bf:<aggregate>:<entity id>:v<version>": the same entity at the same version
 * always gets the same id, so a re-run produces identical events. occurred_at is the time
 * the entity last changed (its updated_at, else its creation time), which keeps the view's
 * last-writer-wins stamps comparable with the live events'.
 *
 * Not thread-safe: one bf_snap_t per thread. */
#ifndef BF_SNAP_H
#define BF_SNAP_H

#include "catalog.h"

#include <stdbool.h>
#include <stddef.h>

#define BF_SNAP_DEFAULT_VERSION_FIELD "version"

typedef struct bf_snap bf_snap_t;

/* One encoded snapshot event; every pointer is borrowed from the bf_snap_t and valid
 * until its next bf_snap_parse or bf_snap_destroy. */
typedef struct bf_snap_msg {
    const char *bsm_topic;  /* the snapshot record's catalog topic */
    const char *bsm_key;    /* the aggregate id: same key, so same partition, as live events */
    size_t bsm_key_len;
    const void *bsm_value;  /* 0x00, schema id (BE32), Avro body */
    size_t bsm_value_len;
    bool bsm_not_shown;     /* a state the view keeps no trace of (a closed return): the line
                               is valid but there is nothing to produce; value is NULL */
} bf_snap_msg_t;

/* The aggregate names bf_snap_new accepts, NULL-terminated (for --help). */
extern const char *const bf_snap_aggregates[];

/* Prepares the parser and encoder of aggregate. version_field names the JSON member that
 * holds the entity version (NULL: "version"). catalog must outlive the result. Returns
 * NULL with errstr set: unknown aggregate, snapshot record missing from the catalog or
 * without a topic, or a schema that does not match the aggregate's table. */
bf_snap_t *bf_snap_new(const catalog_t *catalog, const char *aggregate, const char *version_field,
                       char *errstr, size_t errlen);
void bf_snap_destroy(bf_snap_t *snap);

/* The snapshot record's full name, e.g. "c360.orders.OrderSnapshot". */
const char *bf_snap_record(const bf_snap_t *snap);

/* Parses, validates and encodes one line (len bytes, no newline needed). Returns 0 and
 * fills ret_msg; RM_EINVAL with "member: problem" in errstr for an invalid line (the
 * caller adds FILE:LINE); RM_ENOMEM. ret_msg is written only on success. */
int bf_snap_parse(bf_snap_t *snap, const char *line, size_t len, bf_snap_msg_t *ret_msg,
                  char *errstr, size_t errlen);

/* Parses an ISO 8601 UTC time or offset time ("2024-03-01T12:00:00Z",
 * "2024-03-01T12:00:00.250+01:00") into epoch milliseconds at or after 1970. Returns 0 or
 * RM_EINVAL. Exposed for tests. */
int bf_snap_parse_time(const char *text, int64_t *ret_ms);

/* The catalog entry snapshots are written with (its topic is where they go). */
const catalog_entry_t *bf_snap_entry(const bf_snap_t *snap);
/* Frames snapshots with schema_id instead of the catalog's id (a registry's: app_frame_id). */
void bf_snap_set_frame_id(bf_snap_t *snap, int32_t schema_id);

#endif
