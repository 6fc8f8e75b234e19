/* catalog: the schema catalog — Confluent schema id -> Avro schema (schemas/catalog.yaml).
 *
 * Two sources of writer schemas:
 * (1) offline (the default): the ids of catalog.yaml, loaded once at start and immutable;
 * (2) remote: once catalog_set_fetcher() has been called, writer ids are resolved ONLY
 *     through the fetcher (a schema registry, registry.h) and kept in a table that only
 *     grows: the registry's ids are global and unrelated to catalog.yaml's, so the two
 *     are never mixed. catalog.yaml's records still are the reader schemas
 *     (catalog_latest), the shapes the view definition was written against.
 * The static part is safe to read from any thread; the remote table is guarded by a
 * mutex, and its entries never move or change once added.
 * The catalog owns every avro_schema_t it hands out (valid until catalog_destroy). */
#ifndef RM_CATALOG_H
#define RM_CATALOG_H

#include <avro.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct catalog catalog_t;

/* Meta db names ("schema/<id>" -> schema text) under which a store keeps every remote
 * schema its engine used (engine.h), so a restart can decode them offline. */
#define CATALOG_META_PREFIX "schema/"

typedef struct catalog_entry {
    int32_t ce_id; /* the Confluent schema id */
    const char *ce_file; /* resolved path of the .avsc file */
    const char *ce_topic; /* topic producers publish it on (may be NULL) */
    const char *ce_full_name; /* record full name, e.g. "c360.orders.OrderCreated" */
    avro_schema_t ce_schema; /* parsed schema (a record) */
    const char *ce_json; /* remote entries: the schema text as the registry served it
                            (ce_file is NULL); NULL for catalog.yaml's entries */
} catalog_entry_t;

/* Loads path (YAML: `schemas: [{id, file, topic}]`); files are relative to the
 * catalog's directory. Errors name the file, line and field, e.g.
 * "schemas/catalog.yaml:12: schemas[3].id: duplicate id 4" (schemas[] is 0-based). Ids
 * must be 1..INT32_MAX and unique; every file must hold a record schema. Returns NULL on
 * error; the caller owns the result (catalog_destroy, NULL-safe). */
catalog_t *catalog_load(const char *path, char *errstr, size_t errlen);
void catalog_destroy(catalog_t *catalog);

/* Fetches the text of a writer schema by id: 0 and a malloc'd string in ret_text;
 * RM_ENOTFOUND when the source says the id does not exist; RM_EUNAVAIL (or any other
 * error) when it cannot answer now. reason gets a short message. Any thread. */
typedef int (*catalog_fetch_fn)(void *ctx, int32_t schema_id, char **ret_text, char *reason,
                                size_t reasonlen);

/* Switches the catalog to remote writer ids (note 2). Call before any other thread uses
 * the catalog; ctx must outlive it. */
void catalog_set_fetcher(catalog_t *catalog, catalog_fetch_fn fetch, void *ctx);
/* Whether writer ids are remote. */
bool catalog_is_remote(const catalog_t *catalog);

/* The writer schema of schema_id: offline, the catalog.yaml entry; remote, the table's
 * entry, fetched and added on first use. Returns 0 and the entry; RM_ESCHEMA when the id
 * does not exist (catalog.yaml lacks it, or the registry answered "not found") or its
 * schema is not a record; RM_EUNAVAIL when the registry cannot answer now (the message
 * is not at fault: retry it later); RM_ENOMEM. reason gets a short message. */
int catalog_resolve(const catalog_t *catalog, int32_t schema_id, const catalog_entry_t **ret_entry,
                    char *reason, size_t reasonlen);
/* Adds a remote entry from its schema text (a copy kept in a store, or a fetch) unless
 * the id is there already. Returns 0 and the entry; RM_ESCHEMA (not a record schema),
 * RM_EINVAL (the catalog is not remote), RM_ENOMEM. */
int catalog_add_remote(const catalog_t *catalog, int32_t schema_id, const char *text,
                       const catalog_entry_t **ret_entry, char *reason, size_t reasonlen);
/* Number of remote entries, and the index-th (in the order they were added). */
size_t catalog_remote_count(const catalog_t *catalog);
const catalog_entry_t *catalog_remote_at(const catalog_t *catalog, size_t index);

/* Entry of catalog.yaml for schema_id, or NULL if the id is unknown (offline ids only). */
const catalog_entry_t *catalog_get(const catalog_t *catalog, int32_t schema_id);
/* The newest entry (highest id) whose record has full_name: the reader schema the
 * view engine decodes into. NULL if no schema has that name. */
const catalog_entry_t *catalog_latest(const catalog_t *catalog, const char *full_name);
size_t catalog_count(const catalog_t *catalog);
/* index-th entry in ascending id order (0 <= index < catalog_count), or NULL. */
const catalog_entry_t *catalog_at(const catalog_t *catalog, size_t index);

#endif
