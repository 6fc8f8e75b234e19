/* registry: a client of a Confluent-compatible Schema Registry's REST API (libcurl).
 *
 * Notes on the design:
 * (1) Three answers, kept apart because the pipeline treats them differently: the schema
 *     (0), "this id does not exist" (RM_ENOTFOUND: Confluent's 404 with error_code 40403,
 *     the only answer that makes a message poison), and "cannot tell now" (RM_EUNAVAIL:
 *     no connection, timeout, TLS failure, 5xx, 401/403, any other body). A message
 *     whose schema is unavailable is not at fault and is retried, never dead-lettered.
 * (2) After a failure for a schema id, the client answers RM_EUNAVAIL for that id at once,
 *     without a request, until a backoff has passed (doubling from 200 ms to 5 s), so
 *     that paused partitions retrying do not hammer a registry that is down. The backoff
 *     is kept per id (subject requests share one), so that one id the registry fails
 *     for does not hold up the others.
 * (3) Subject names follow the producer's naming strategy (registry_subject): topic
 *     (TopicNameStrategy, "<topic>-value", Confluent's default), record
 *     (RecordNameStrategy, "<record full name>") or topic_record
 *     (TopicRecordNameStrategy, "<topic>-<record full name>").
 * (4) registry_attach makes a catalog resolve writer ids through the registry
 *     (catalog.h note 2); the engine keeps every schema it used in its store's meta db
 *     ("schema/<id>", engine.h), and registry_preload puts those back in the catalog at
 *     start, so a restart decodes every id seen before without asking the registry.
 *
 * Threads: any; each request uses its own curl handle. Counters are atomic. */
#ifndef RM_REGISTRY_H
#define RM_REGISTRY_H

#include "catalog.h"
#include "store.h"
#include "view.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct registry registry_t;

typedef enum registry_naming {
    REGISTRY_TOPIC_NAME = 0, /* "<topic>-value" */
    REGISTRY_RECORD_NAME, /* "<record full name>" */
    REGISTRY_TOPIC_RECORD, /* "<topic>-<record full name>" */
} registry_naming_t;

typedef struct registry_opts {
    const char *ro_url; /* base URL, http:// or https:// */
    const char *ro_username; /* basic auth; NULL or "": none */
    const char *ro_password;
    const char *ro_ca_file; /* PEM bundle to verify the registry's certificate; NULL: system */
    int64_t ro_timeout_ms; /* per request; 0 = 5000 */
    int64_t ro_backoff_max_ms; /* note 2; 0 = 5000 */
    registry_naming_t ro_naming;
} registry_opts_t;

/* Counters for metrics (registry_get_stats). */
typedef struct registry_stats {
    uint64_t rs_fetches; /* schemas fetched */
    uint64_t rs_not_found; /* ids the registry answered 40403 for */
    uint64_t rs_errors; /* requests that failed (unavailable: note 1) */
    uint64_t rs_skipped; /* requests not made during a backoff (note 2) */
    bool rs_down; /* the last request failed */
} registry_stats_t;

/* Copies opts (the strings too). Returns NULL with a message in errstr (bad URL, out of
 * memory). */
registry_t *registry_new(const registry_opts_t *opts, char *errstr, size_t errlen);
void registry_destroy(registry_t *registry);

/* Parses "topic", "record" or "topic_record". Returns 0 or RM_EINVAL. */
int registry_naming_parse(const char *text, registry_naming_t *ret_naming);

/* The subject of a record published on topic under the registry's naming strategy, into
 * out. Returns the length, or 0 when it does not fit. */
size_t registry_subject(const registry_t *registry, const char *topic, const char *full_name,
                        char *out, size_t cap);

/* GET /schemas/ids/{id}: 0 and the schema text (malloc'd) in ret_text; RM_ENOTFOUND;
 * RM_EUNAVAIL; RM_ENOMEM (note 1). reason gets a short message. */
int registry_fetch(registry_t *registry, int32_t schema_id, char **ret_text, char *reason,
                   size_t reasonlen);
/* POST /subjects/{subject}/versions: registers schema_text (idempotent) and returns its
 * id. Errors: RM_EINVAL (the registry refused the schema: 4xx), RM_EUNAVAIL, RM_ENOMEM. */
int registry_register(registry_t *registry, const char *subject, const char *schema_text,
                      int32_t *ret_id, char *reason, size_t reasonlen);
/* GET /subjects/{subject}/versions/{version} (version <= 0: latest): its id and text
 * (malloc'd). RM_ENOTFOUND when the subject or version does not exist; RM_EUNAVAIL;
 * RM_ENOMEM. */
int registry_version(registry_t *registry, const char *subject, int32_t version, int32_t *ret_id,
                     char **ret_text, char *reason, size_t reasonlen);
/* GET /subjects/{subject}/versions: the versions (malloc'd array, ascending as the
 * registry lists them). RM_ENOTFOUND when the subject does not exist; RM_EUNAVAIL. */
int registry_versions(registry_t *registry, const char *subject, int32_t **ret_versions,
                      size_t *ret_count, char *reason, size_t reasonlen);

/* Makes catalog resolve writer ids through registry (note 4); registry must outlive it. */
void registry_attach(registry_t *registry, catalog_t *catalog);
/* Adds to catalog every schema kept in store's meta db (note 4). Returns 0 or an error of
 * the store (or RM_ESCHEMA when a kept schema no longer parses). */
int registry_preload(const catalog_t *catalog, store_t *store);

/* The start-up check: for each rule of view, the newest schema the registry holds for
 * the rule's record — on the subjects of the topics the catalog puts it on (any of the
 * view's when none), under the naming strategy — must be readable as the rule's reader
 * schema by the evolution rules of avro_dec (avro_dec_check). Returns 0, with the number
 * of rules whose record has no version in the registry yet in ret_unchecked; RM_ESCHEMA
 * with "<view file>:<line>: field '<name>' of <record> cannot be read ..." in errstr (the
 * line of the rule's first use of the field); RM_EUNAVAIL (nothing could be checked);
 * RM_ENOMEM. Adds the schemas it fetched to catalog. */
int registry_check_view(registry_t *registry, const view_t *view, const catalog_t *catalog,
                        size_t *ret_unchecked, char *errstr, size_t errlen);

void registry_get_stats(registry_t *registry, registry_stats_t *ret_stats);

#endif
