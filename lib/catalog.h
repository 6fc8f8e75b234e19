/* catalog: the schema catalog — Confluent schema id -> Avro schema (schemas/catalog.yaml).
 *
 * Loaded once at start; immutable afterwards and safe to read from any thread.
 * The catalog owns every avro_schema_t it hands out (valid until catalog_destroy). */
#ifndef RM_CATALOG_H
#define RM_CATALOG_H

#include <avro.h>
#include <stddef.h>
#include <stdint.h>

typedef struct catalog catalog_t;

typedef struct catalog_entry {
    int32_t ce_id; /* the Confluent schema id */
    const char *ce_file; /* resolved path of the .avsc file */
    const char *ce_topic; /* topic producers publish it on (may be NULL) */
    const char *ce_full_name; /* record full name, e.g. "c360.orders.OrderCreated" */
    avro_schema_t ce_schema; /* parsed schema (a record) */
} catalog_entry_t;

/* Loads path (YAML: `schemas: [{id, file, topic}]`); files are relative to the
 * catalog's directory. Errors name the file, line and field, e.g.
 * "schemas/catalog.yaml:12: schemas[3].id: duplicate id 4" (schemas[] is 0-based). Ids
 * must be 1..INT32_MAX and unique; every file must hold a record schema. Returns NULL on
 * error; the caller owns the result (catalog_destroy, NULL-safe). */
catalog_t *catalog_load(const char *path, char *errstr, size_t errlen);
void catalog_destroy(catalog_t *catalog);

/* Entry for schema_id, or NULL if the id is unknown. */
const catalog_entry_t *catalog_get(const catalog_t *catalog, int32_t schema_id);
/* The newest entry (highest id) whose record has full_name: the reader schema the
 * view engine decodes into. NULL if no schema has that name. */
const catalog_entry_t *catalog_latest(const catalog_t *catalog, const char *full_name);
size_t catalog_count(const catalog_t *catalog);
/* index-th entry in ascending id order (0 <= index < catalog_count), or NULL. */
const catalog_entry_t *catalog_at(const catalog_t *catalog, size_t index);

#endif
