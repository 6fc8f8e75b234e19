/* poison: malformed messages for dead-letter tests (see poison.h). */
#include "poison.h"
#include "rm_err.h"

#include <avro.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* A declared string length far past any message the projector accepts. */
#define POISON_FAR_LENGTH 50000000

static const char *const shape_names[POISON_SHAPE_COUNT] = {
    "truncated",          "unknown-schema-id", "wrong-magic",  "enum-out-of-range",
    "union-out-of-range", "string-past-end",   "invalid-utf8", "oversized",
};

const char *poison_shape_name(poison_shape_t shape)
{
    return shape < POISON_SHAPE_COUNT ? shape_names[shape] : "unknown";
}

static int put_long(buf_t *out, int64_t value)
{
    uint64_t z = ((uint64_t)value << 1) ^ (value < 0 ? UINT64_MAX : 0); /* zigzag */
    unsigned char bytes[10];
    size_t n = 0;
    do {
        bytes[n] = (unsigned char)(z & 0x7f);
        z >>= 7;
        if (z)
            bytes[n] |= 0x80;
        n++;
    } while (z);
    return buf_append(out, bytes, n);
}

static int put_frame(buf_t *out, unsigned char magic, int32_t schema_id)
{
    unsigned char head[5] = {magic, (unsigned char)((uint32_t)schema_id >> 24),
                             (unsigned char)((uint32_t)schema_id >> 16),
                             (unsigned char)((uint32_t)schema_id >> 8), (unsigned char)schema_id};
    return buf_append(out, head, sizeof(head));
}

typedef struct writer {
    buf_t *w_out;
    poison_shape_t w_shape;
    bool w_done; /* the one bad spot was written */
} writer_t;

/* Writes a placeholder value of schema; the first spot the shape can spoil is spoiled. */
static int put_value(writer_t *w, avro_schema_t schema)
{
    switch (avro_typeof(schema)) {
    case AVRO_STRING:
    case AVRO_BYTES:
        if (!w->w_done && avro_typeof(schema) == AVRO_STRING &&
            w->w_shape == POISON_STRING_PAST_END) {
            w->w_done = true;
            return put_long(w->w_out, POISON_FAR_LENGTH) ||
                   buf_append(w->w_out, "x", 1); /* and then the message ends */
        }
        if (!w->w_done && avro_typeof(schema) == AVRO_STRING && w->w_shape == POISON_INVALID_UTF8) {
            w->w_done = true;
            return put_long(w->w_out, 3) || buf_append(w->w_out, "\xff\xfe\xc0", 3);
        }
        return put_long(w->w_out, 1) || buf_append(w->w_out, "x", 1);
    case AVRO_INT32:
    case AVRO_INT64:
        return put_long(w->w_out, 1);
    case AVRO_FLOAT:
        return buf_append(w->w_out, "\0\0\0\0", 4);
    case AVRO_DOUBLE:
        return buf_append(w->w_out, "\0\0\0\0\0\0\0\0", 8);
    case AVRO_BOOLEAN:
        return buf_append(w->w_out, "\0", 1);
    case AVRO_NULL:
        return 0;
    case AVRO_ENUM:
        if (!w->w_done && w->w_shape == POISON_ENUM_RANGE) {
            w->w_done = true;
            return put_long(w->w_out, (int64_t)avro_schema_enum_number_of_symbols(schema) + 5);
        }
        return put_long(w->w_out, 0);
    case AVRO_UNION:
        if (!w->w_done && w->w_shape == POISON_UNION_RANGE) {
            w->w_done = true;
            return put_long(w->w_out, (int64_t)avro_schema_union_size(schema) + 3);
        }
        return put_long(w->w_out, 0) || put_value(w, avro_schema_union_branch(schema, 0));
    case AVRO_ARRAY:
    case AVRO_MAP:
        return put_long(w->w_out, 0); /* an empty block list */
    case AVRO_FIXED: {
        int64_t size = avro_schema_fixed_size(schema);
        for (int64_t i = 0; i < size; i++)
            if (buf_append(w->w_out, "\0", 1))
                return RM_ENOMEM;
        return 0;
    }
    case AVRO_RECORD:
        for (size_t i = 0; i < avro_schema_record_size(schema); i++) {
            int rc = put_value(w, avro_schema_record_field_get_by_index(schema, (int)i));
            if (rc)
                return rc;
        }
        return 0;
    case AVRO_LINK:
        return put_value(w, avro_schema_link_target(schema));
    }
    return RM_EINVAL;
}

/* Builds the shape from the first catalog schema where it lands; RM_EINVAL if none. */
static int build_from_schema(poison_shape_t shape, const catalog_t *catalog, buf_t *out,
                             const catalog_entry_t **ret_entry)
{
    for (size_t i = 0; i < catalog_count(catalog); i++) {
        const catalog_entry_t *entry = catalog_at(catalog, i);
        if (!entry->ce_topic)
            continue;
        buf_reset(out);
        writer_t w = {.w_out = out, .w_shape = shape};
        if (put_frame(out, 0, entry->ce_id) || put_value(&w, entry->ce_schema))
            return RM_ENOMEM;
        if (w.w_done) {
            *ret_entry = entry;
            return 0;
        }
    }
    return RM_EINVAL;
}

int poison_build(poison_shape_t shape, const catalog_t *catalog, const catalog_entry_t *valid_entry,
                 const void *valid, size_t valid_len, size_t oversize_bytes, buf_t *out,
                 const catalog_entry_t **ret_entry)
{
    const unsigned char *bytes = valid;
    buf_reset(out);
    *ret_entry = valid_entry;
    switch (shape) {
    case POISON_TRUNCATED: /* the frame and half the body */
        return buf_append(out, bytes, 5 + (valid_len - 5) / 2);
    case POISON_UNKNOWN_SCHEMA:
        return put_frame(out, 0, POISON_UNKNOWN_SCHEMA_ID) ||
                       buf_append(out, bytes + 5, valid_len - 5)
                   ? RM_ENOMEM
                   : 0;
    case POISON_WRONG_MAGIC:
        return buf_append_char(out, 0x01) || buf_append(out, bytes + 1, valid_len - 1) ? RM_ENOMEM
                                                                                       : 0;
    case POISON_OVERSIZED:
        if (buf_append(out, bytes, valid_len) || buf_reserve(out, oversize_bytes))
            return RM_ENOMEM;
        while (out->b_len < oversize_bytes)
            if (buf_append_char(out, 'p'))
                return RM_ENOMEM;
        return 0;
    case POISON_ENUM_RANGE:
    case POISON_UNION_RANGE:
    case POISON_STRING_PAST_END:
    case POISON_INVALID_UTF8:
        return build_from_schema(shape, catalog, out, ret_entry);
    case POISON_SHAPE_COUNT:
        break;
    }
    return RM_EINVAL;
}
