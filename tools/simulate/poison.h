/* poison: builds the malformed messages a real topic eventually carries, one shape at a
 * time, so that the projector's dead-letter path can be tested against an exact list.
 *
 * Shapes derived from a valid framed message: truncated body, unknown schema id, wrong
 * magic byte, oversized (the valid frame padded past the size limit). Shapes built from a
 * catalog schema: a record written field by field with placeholder values and exactly one
 * bad spot — an enum ordinal or a union index out of range, a string whose declared length
 * runs far past the message, a string that is not UTF-8. Walking the schema (instead of
 * hard-coding byte offsets) keeps the shapes right when the schemas change. */
#ifndef SIM_POISON_H
#define SIM_POISON_H

#include "buf.h"
#include "catalog.h"

#include <stddef.h>

typedef enum poison_shape {
    POISON_TRUNCATED = 0,
    POISON_UNKNOWN_SCHEMA,
    POISON_WRONG_MAGIC,
    POISON_ENUM_RANGE,
    POISON_UNION_RANGE,
    POISON_STRING_PAST_END,
    POISON_INVALID_UTF8,
    POISON_OVERSIZED,
    POISON_SHAPE_COUNT
} poison_shape_t;

/* A schema id no catalog uses (catalog ids are small and dense). */
#define POISON_UNKNOWN_SCHEMA_ID 0x7ead0001

/* "truncated", "unknown-schema-id", ... (stable: tests and manifests use them). */
const char *poison_shape_name(poison_shape_t shape);

/* Writes a poison message of shape into out (reset first). valid/valid_len is a valid
 * framed message of schema entry valid_entry; the derived shapes start from it. The
 * schema-built shapes use the first catalog schema with a suitable field and point
 * *ret_entry at it (the derived ones at valid_entry): its topic is where the message
 * belongs. oversize_bytes is the size of an oversized message. Returns 0, RM_EINVAL
 * when no catalog schema has the field the shape needs, or RM_ENOMEM. */
int poison_build(poison_shape_t shape, const catalog_t *catalog, const catalog_entry_t *valid_entry,
                 const void *valid, size_t valid_len, size_t oversize_bytes, buf_t *out,
                 const catalog_entry_t **ret_entry);

#endif
