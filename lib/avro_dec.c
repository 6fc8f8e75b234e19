/* avro_dec: Confluent framing, pre-decode validation and cached resolved decoders. */
#include "avro_dec.h"
#include "rm_err.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Decoders are kept in a small open-addressing table keyed by schema id. */
#define AVRO_DEC_SLOTS 1024

typedef struct avro_dec_entry {
    int32_t de_id; /* 0: empty slot */
    const catalog_entry_t *de_writer;
    const catalog_entry_t *de_reader;
    avro_value_iface_t *de_writer_iface;
    avro_value_t de_writer_value;
    int *de_field_map; /* reader field index -> writer field index, or -1 */
    /* Reader fields the writer lacks that have a non-null default: the default as a value
     * of the reader field's schema (de_default_iface[i] NULL: none, the field reads as
     * absent). Built once per schema id. */
    avro_value_iface_t **de_default_iface;
    avro_value_t *de_defaults;
    int de_bad_field; /* build_field_map failed: the reader field index it failed on */
} avro_dec_entry_t;

struct avro_dec {
    const catalog_t *ad_catalog;
    avro_reader_t ad_reader;
    avro_dec_entry_t ad_entries[AVRO_DEC_SLOTS];
};

avro_dec_t *avro_dec_new(const catalog_t *catalog)
{
    avro_dec_t *dec = calloc(1, sizeof(*dec));
    if (!dec)
        return NULL;
    dec->ad_catalog = catalog;
    dec->ad_reader = avro_reader_memory("", 0);
    if (!dec->ad_reader) {
        free(dec);
        return NULL;
    }
    return dec;
}

static void entry_free(avro_dec_entry_t *entry)
{
    if (entry->de_writer_iface) {
        avro_value_decref(&entry->de_writer_value);
        avro_value_iface_decref(entry->de_writer_iface);
    }
    free(entry->de_field_map);
    size_t count = entry->de_reader ? avro_schema_record_size(entry->de_reader->ce_schema) : 0;
    for (size_t i = 0; entry->de_default_iface && i < count; i++) {
        if (entry->de_default_iface[i]) {
            avro_value_decref(&entry->de_defaults[i]);
            avro_value_iface_decref(entry->de_default_iface[i]);
        }
    }
    free(entry->de_default_iface);
    free(entry->de_defaults);
    memset(entry, 0, sizeof(*entry));
}

void avro_dec_destroy(avro_dec_t *dec)
{
    if (!dec)
        return;
    for (size_t i = 0; i < AVRO_DEC_SLOTS; i++)
        if (dec->ad_entries[i].de_id)
            entry_free(&dec->ad_entries[i]);
    avro_reader_free(dec->ad_reader);
    free(dec);
}

int avro_dec_encode_frame(int32_t schema_id, avro_value_t *value, buf_t *out)
{
    size_t size;
    if (avro_value_sizeof(value, &size))
        return RM_EINVAL;
    buf_reset(out);
    if (buf_reserve(out, size + 5))
        return RM_ENOMEM;
    unsigned char *p = (unsigned char *)out->b_data;
    p[0] = 0;
    p[1] = (unsigned char)((uint32_t)schema_id >> 24);
    p[2] = (unsigned char)((uint32_t)schema_id >> 16);
    p[3] = (unsigned char)((uint32_t)schema_id >> 8);
    p[4] = (unsigned char)schema_id;
    avro_writer_t writer = avro_writer_memory((char *)p + 5, (int64_t)size);
    if (!writer)
        return RM_ENOMEM;
    int rc = avro_value_write(writer, value) ? RM_EINVAL : 0;
    avro_writer_free(writer);
    out->b_len = rc ? 0 : size + 5;
    return rc;
}

int avro_dec_frame(const void *data, size_t len, int32_t *ret_schema_id, const void **ret_body,
                   size_t *ret_body_len)
{
    const unsigned char *p = data;
    if (len < 5 || p[0] != 0)
        return RM_EFRAME;
    *ret_schema_id =
        (int32_t)((uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 8 | p[4]);
    *ret_body = p + 5;
    *ret_body_len = len - 5;
    return 0;
}

/* ---- validation ---- */

typedef struct vcur {
    const unsigned char *vc_p;
    const unsigned char *vc_end;
    char *vc_reason;
    size_t vc_reasonlen;
} vcur_t;

__attribute__((format(printf, 2, 3))) static int vfail(vcur_t *vc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(vc->vc_reason, vc->vc_reasonlen, fmt, ap);
    va_end(ap);
    return RM_EDECODE;
}

static int read_long(vcur_t *vc, int64_t *ret)
{
    uint64_t value = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (vc->vc_p >= vc->vc_end)
            return vfail(vc, "truncated varint");
        unsigned char b = *vc->vc_p++;
        if (shift == 63 && (b & 0x7E))
            return vfail(vc, "varint overflows 64 bits");
        value |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *ret = (int64_t)((value >> 1) ^ (~(value & 1) + 1)); /* zigzag */
            return 0;
        }
    }
    return vfail(vc, "varint longer than 10 bytes");
}

static bool utf8_valid(const unsigned char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        unsigned char c = s[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            n = 2;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 3;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + n > len)
            return false;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n;
    }
    return true;
}

static int take(vcur_t *vc, int64_t len, const char *what)
{
    if (len < 0)
        return vfail(vc, "negative %s length", what);
    if (len > vc->vc_end - vc->vc_p)
        return vfail(vc, "%s length %lld past the end of the message", what, (long long)len);
    vc->vc_p += len;
    return 0;
}

static int validate(vcur_t *vc, avro_schema_t schema, int depth);

/* Arrays and maps: blocks of (count, [byte size if count < 0], items), ended by 0. */
static int validate_blocks(vcur_t *vc, avro_schema_t items, bool is_map, int depth)
{
    for (;;) {
        int64_t count;
        if (read_long(vc, &count))
            return RM_EDECODE;
        if (count == 0)
            return 0;
        if (count < 0) {
            int64_t size;
            if (count == INT64_MIN || read_long(vc, &size))
                return vfail(vc, "bad block header");
            if (size < 0 || size > vc->vc_end - vc->vc_p)
                return vfail(vc, "block size past the end of the message");
            count = -count;
        }
        /* Each item takes at least one byte unless its type is null; bound the loop
         * by the bytes left so a huge declared count cannot spin. */
        if (count > (vc->vc_end - vc->vc_p) + 1024)
            return vfail(vc, "block count %lld exceeds the message", (long long)count);
        for (int64_t i = 0; i < count; i++) {
            if (is_map) {
                int64_t klen;
                if (read_long(vc, &klen))
                    return RM_EDECODE;
                const unsigned char *k = vc->vc_p;
                if (take(vc, klen, "map key"))
                    return RM_EDECODE;
                if (!utf8_valid(k, (size_t)klen))
                    return vfail(vc, "map key is not valid UTF-8");
            }
            if (validate(vc, items, depth + 1))
                return RM_EDECODE;
        }
    }
}

static int validate(vcur_t *vc, avro_schema_t schema, int depth)
{
    if (depth > AVRO_DEC_MAX_DEPTH)
        return vfail(vc, "nesting deeper than %d", AVRO_DEC_MAX_DEPTH);
    int64_t n;
    switch (avro_typeof(schema)) {
    case AVRO_NULL:
        return 0;
    case AVRO_BOOLEAN:
        if (vc->vc_p >= vc->vc_end)
            return vfail(vc, "truncated boolean");
        if (*vc->vc_p > 1)
            return vfail(vc, "boolean byte %u", *vc->vc_p);
        vc->vc_p++;
        return 0;
    case AVRO_INT32:
        if (read_long(vc, &n))
            return RM_EDECODE;
        if (n < INT32_MIN || n > INT32_MAX)
            return vfail(vc, "int out of range");
        return 0;
    case AVRO_INT64:
        return read_long(vc, &n);
    case AVRO_FLOAT:
        return take(vc, 4, "float");
    case AVRO_DOUBLE:
        return take(vc, 8, "double");
    case AVRO_BYTES:
        if (read_long(vc, &n))
            return RM_EDECODE;
        return take(vc, n, "bytes");
    case AVRO_STRING: {
        if (read_long(vc, &n))
            return RM_EDECODE;
        const unsigned char *s = vc->vc_p;
        if (take(vc, n, "string"))
            return RM_EDECODE;
        if (!utf8_valid(s, (size_t)n))
            return vfail(vc, "string is not valid UTF-8");
        return 0;
    }
    case AVRO_FIXED:
        return take(vc, avro_schema_fixed_size(schema), "fixed");
    case AVRO_ENUM:
        if (read_long(vc, &n))
            return RM_EDECODE;
        if (n < 0 || n >= avro_schema_enum_number_of_symbols(schema))
            return vfail(vc, "enum index %lld out of range", (long long)n);
        return 0;
    case AVRO_UNION:
        if (read_long(vc, &n))
            return RM_EDECODE;
        if (n < 0 || (size_t)n >= avro_schema_union_size(schema))
            return vfail(vc, "union index %lld out of range", (long long)n);
        return validate(vc, avro_schema_union_branch(schema, (int)n), depth + 1);
    case AVRO_RECORD: {
        size_t fields = avro_schema_record_size(schema);
        for (size_t i = 0; i < fields; i++)
            if (validate(vc, avro_schema_record_field_get_by_index(schema, (int)i), depth + 1))
                return RM_EDECODE;
        return 0;
    }
    case AVRO_ARRAY:
        return validate_blocks(vc, avro_schema_array_items(schema), false, depth);
    case AVRO_MAP:
        return validate_blocks(vc, avro_schema_map_values(schema), true, depth);
    case AVRO_LINK:
        return validate(vc, avro_schema_link_target(schema), depth + 1);
    }
    return vfail(vc, "unsupported schema type");
}

int avro_dec_validate(avro_schema_t schema, const void *body, size_t len, char *reason,
                      size_t reasonlen)
{
    vcur_t vc = {body, (const unsigned char *)body + len, reason, reasonlen};
    if (validate(&vc, schema, 0))
        return RM_EDECODE;
    if (vc.vc_p != vc.vc_end)
        return vfail(&vc, "%zu trailing bytes after the record", (size_t)(vc.vc_end - vc.vc_p));
    return 0;
}

/* ---- decoders ---- */

static avro_schema_t deref(avro_schema_t schema)
{
    while (schema && is_avro_link(schema))
        schema = avro_schema_link_target(schema);
    return schema;
}

/* Whether values written as w can be read where the reader declared r without
 * conversion: the same shape all the way down. Enums are read by symbol name, so their
 * symbol lists may differ. Avro's promotions (int to long, float to double, string to
 * bytes) are not supported: they would need a converting copy per field. */
static bool same_shape(avro_schema_t w, avro_schema_t r, int depth)
{
    w = deref(w);
    r = deref(r);
    if (!w || !r || depth > AVRO_DEC_MAX_DEPTH || avro_typeof(w) != avro_typeof(r))
        return false;
    switch (avro_typeof(w)) {
    case AVRO_FIXED:
        return avro_schema_fixed_size(w) == avro_schema_fixed_size(r);
    case AVRO_ARRAY:
        return same_shape(avro_schema_array_items(w), avro_schema_array_items(r), depth + 1);
    case AVRO_MAP:
        return same_shape(avro_schema_map_values(w), avro_schema_map_values(r), depth + 1);
    case AVRO_UNION:
        if (avro_schema_union_size(w) != avro_schema_union_size(r))
            return false;
        for (size_t i = 0; i < avro_schema_union_size(w); i++)
            if (!same_shape(avro_schema_union_branch(w, (int)i),
                            avro_schema_union_branch(r, (int)i), depth + 1))
                return false;
        return true;
    case AVRO_RECORD:
        if (avro_schema_record_size(w) != avro_schema_record_size(r))
            return false;
        for (size_t i = 0; i < avro_schema_record_size(w); i++)
            if (strcmp(avro_schema_record_field_name(w, (int)i),
                       avro_schema_record_field_name(r, (int)i)) != 0 ||
                !same_shape(avro_schema_record_field_get_by_index(w, (int)i),
                            avro_schema_record_field_get_by_index(r, (int)i), depth + 1))
                return false;
        return true;
    default:
        return true;
    }
}

/* The aliases of the reader's index-th field, read from its .avsc: avro-c 1.11 parses
 * and drops them. Returns a borrowed array from root, or NULL. */
static json_t *field_aliases(json_t *root, size_t index)
{
    json_t *field = json_array_get(json_object_get(root, "fields"), index);
    json_t *aliases = json_object_get(field, "aliases");
    return json_is_array(aliases) ? aliases : NULL;
}

/* Sets value (of schema) from a JSON default, as the Avro specification reads defaults:
 * a union's default is for its first branch. Scalars and enums only; returns false for
 * anything else (records, arrays, maps, bytes) or a default of the wrong type. */
static bool set_default(avro_value_t *value, avro_schema_t schema, json_t *def)
{
    schema = deref(schema);
    switch (avro_typeof(schema)) {
    case AVRO_STRING:
        return json_is_string(def) && avro_value_set_string(value, json_string_value(def)) == 0;
    case AVRO_INT32:
        return json_is_integer(def) &&
               avro_value_set_int(value, (int32_t)json_integer_value(def)) == 0;
    case AVRO_INT64:
        return json_is_integer(def) && avro_value_set_long(value, json_integer_value(def)) == 0;
    case AVRO_BOOLEAN:
        return json_is_boolean(def) && avro_value_set_boolean(value, json_is_true(def)) == 0;
    case AVRO_DOUBLE:
        return json_is_number(def) && avro_value_set_double(value, json_number_value(def)) == 0;
    case AVRO_FLOAT:
        return json_is_number(def) &&
               avro_value_set_float(value, (float)json_number_value(def)) == 0;
    case AVRO_NULL:
        return json_is_null(def) && avro_value_set_null(value) == 0;
    case AVRO_ENUM: {
        int symbol =
            json_is_string(def) ? avro_schema_enum_get_by_name(schema, json_string_value(def)) : -1;
        return symbol >= 0 && avro_value_set_enum(value, symbol) == 0;
    }
    case AVRO_UNION: {
        avro_value_t branch;
        return avro_value_set_branch(value, 0, &branch) == 0 &&
               set_default(&branch, avro_schema_union_branch(schema, 0), def);
    }
    default:
        return false;
    }
}

/* The default of the reader's index-th field (from its .avsc), as a value; false when it
 * has none or one this decoder cannot build. */
static bool build_default(avro_dec_entry_t *entry, json_t *root, size_t index, avro_schema_t rf)
{
    json_t *field = json_array_get(json_object_get(root, "fields"), index);
    json_t *def = json_object_get(field, "default");
    if (!def)
        return false;
    avro_value_iface_t *iface = avro_generic_class_from_schema(rf);
    if (!iface)
        return false;
    if (avro_generic_value_new(iface, &entry->de_defaults[index])) {
        avro_value_iface_decref(iface);
        return false;
    }
    if (!set_default(&entry->de_defaults[index], rf, def)) {
        avro_value_decref(&entry->de_defaults[index]);
        avro_value_iface_decref(iface);
        return false;
    }
    entry->de_default_iface[index] = iface;
    return true;
}

/* The JSON of an entry's schema (avro-c drops aliases and defaults it does not use). */
static json_t *schema_json(const catalog_entry_t *entry)
{
    return entry->ce_json ? json_loads(entry->ce_json, 0, NULL)
                          : json_load_file(entry->ce_file, 0, NULL);
}

/* Maps every reader field to the writer's field of the same name or of one of its
 * aliases. A reader field the writer lacks must have a default: null (an optional field
 * added later: the engine sees it as absent) or a scalar/enum default, which the field
 * then reads as. Writer fields the reader lacks are
 * decoded and ignored (a field dropped later). avro-c's own resolver cannot be used: it
 * refuses a reader field the writer lacks, default or not, and ignores aliases. */
static int build_field_map(avro_dec_entry_t *entry, char *reason, size_t reasonlen)
{
    avro_schema_t w = entry->de_writer->ce_schema, r = entry->de_reader->ce_schema;
    size_t count = avro_schema_record_size(r);
    entry->de_field_map = calloc(count ? count : 1, sizeof(int));
    entry->de_default_iface = calloc(count ? count : 1, sizeof(avro_value_iface_t *));
    entry->de_defaults = calloc(count ? count : 1, sizeof(avro_value_t));
    if (!entry->de_field_map || !entry->de_default_iface || !entry->de_defaults)
        return RM_ENOMEM;
    json_t *root = NULL;
    int rc = 0;
    for (size_t i = 0; i < count && !rc; i++) {
        const char *name = avro_schema_record_field_name(r, (int)i);
        avro_schema_t rf = avro_schema_record_field_get_by_index(r, (int)i);
        int wi = avro_schema_record_field_get_index(w, name);
        if (wi < 0 && entry->de_writer != entry->de_reader) {
            if (!root)
                root = schema_json(entry->de_reader);
            json_t *aliases = field_aliases(root, i), *alias;
            size_t ai;
            json_array_foreach(aliases, ai, alias)
            {
                if (json_is_string(alias) &&
                    (wi = avro_schema_record_field_get_index(w, json_string_value(alias))) >= 0)
                    break;
            }
        }
        entry->de_field_map[i] = wi;
        if (wi < 0) {
            avro_schema_t d = deref(rf);
            bool null_first =
                is_avro_union(d) && is_avro_null(deref(avro_schema_union_branch(d, 0)));
            if (!root)
                root = schema_json(entry->de_reader);
            json_t *def =
                json_object_get(json_array_get(json_object_get(root, "fields"), i), "default");
            if (null_first && (!def || json_is_null(def)))
                continue; /* absent, as the engine reads a null optional field */
            if (!build_default(entry, root, i, rf)) {
                snprintf(reason, reasonlen,
                         "schema id %d cannot be read as schema id %d: field '%s' is missing "
                         "and has no usable default",
                         entry->de_writer->ce_id, entry->de_reader->ce_id, name);
                rc = RM_ESCHEMA;
                entry->de_bad_field = (int)i;
            }
        } else if (!same_shape(avro_schema_record_field_get_by_index(w, wi), rf, 0)) {
            snprintf(reason, reasonlen,
                     "schema id %d cannot be read as schema id %d: field '%s' changed type",
                     entry->de_writer->ce_id, entry->de_reader->ce_id, name);
            rc = RM_ESCHEMA;
            entry->de_bad_field = (int)i;
        }
    }
    json_decref(root);
    return rc;
}

int avro_dec_check(const catalog_entry_t *writer, const catalog_entry_t *reader, int *ret_bad_field,
                   char *reason, size_t reasonlen)
{
    avro_dec_entry_t entry = {.de_writer = writer, .de_reader = reader, .de_bad_field = -1};
    int rc = build_field_map(&entry, reason, reasonlen);
    *ret_bad_field = rc == RM_ESCHEMA ? entry.de_bad_field : -1;
    if (rc == RM_ENOMEM)
        snprintf(reason, reasonlen, "out of memory");
    entry_free(&entry);
    return rc;
}

static int entry_build(avro_dec_t *dec, avro_dec_entry_t *entry, int32_t id, char *reason,
                       size_t reasonlen)
{
    const catalog_entry_t *writer;
    int rc = catalog_resolve(dec->ad_catalog, id, &writer, reason, reasonlen);
    if (rc)
        return rc;
    entry->de_writer = writer;
    /* A remote writer of a record catalog.yaml does not list is read as itself (no rule
     * of the view names it). */
    entry->de_reader = catalog_latest(dec->ad_catalog, writer->ce_full_name);
    if (!entry->de_reader)
        entry->de_reader = writer;
    rc = build_field_map(entry, reason, reasonlen);
    if (rc) {
        if (rc == RM_ENOMEM)
            snprintf(reason, reasonlen, "out of memory");
        entry_free(entry);
        return rc;
    }
    entry->de_writer_iface = avro_generic_class_from_schema(writer->ce_schema);
    if (!entry->de_writer_iface ||
        avro_generic_value_new(entry->de_writer_iface, &entry->de_writer_value)) {
        snprintf(reason, reasonlen, "schema id %d: %s", id, avro_strerror());
        entry_free(entry);
        return RM_ENOMEM;
    }
    entry->de_id = id;
    return 0;
}

static avro_dec_entry_t *entry_slot(avro_dec_t *dec, int32_t id)
{
    size_t h = ((uint32_t)id * 2654435761u) % AVRO_DEC_SLOTS;
    for (size_t i = 0; i < AVRO_DEC_SLOTS; i++) {
        avro_dec_entry_t *entry = &dec->ad_entries[(h + i) % AVRO_DEC_SLOTS];
        if (entry->de_id == id || entry->de_id == 0)
            return entry;
    }
    return NULL;
}

int avro_dec_decode(avro_dec_t *dec, const void *data, size_t len, avro_dec_event_t *ret_event,
                    char *reason, size_t reasonlen)
{
    int32_t id;
    const void *body;
    size_t body_len;
    if (avro_dec_frame(data, len, &id, &body, &body_len)) {
        snprintf(reason, reasonlen,
                 len < 5 ? "shorter than the 5-byte Confluent header" : "magic byte is not 0");
        return RM_EFRAME;
    }
    if (id <= 0) {
        snprintf(reason, reasonlen, "invalid schema id %d", id);
        return RM_ESCHEMA;
    }
    avro_dec_entry_t *entry = entry_slot(dec, id);
    if (!entry) {
        snprintf(reason, reasonlen, "too many schema ids");
        return RM_ESCHEMA;
    }
    if (entry->de_id == 0) {
        int rc = entry_build(dec, entry, id, reason, reasonlen);
        if (rc)
            return rc;
    }
    int rc = avro_dec_validate(entry->de_writer->ce_schema, body, body_len, reason, reasonlen);
    if (rc)
        return rc;
    avro_reader_memory_set_source(dec->ad_reader, body, (int64_t)body_len);
    if (avro_value_read(dec->ad_reader, &entry->de_writer_value)) {
        snprintf(reason, reasonlen, "avro: %s", avro_strerror());
        return RM_EDECODE;
    }
    ret_event->ade_schema_id = id;
    ret_event->ade_writer = entry->de_writer;
    ret_event->ade_reader = entry->de_reader;
    ret_event->ade_value = &entry->de_writer_value;
    ret_event->ade_field_map = entry->de_field_map;
    ret_event->ade_defaults = entry->de_defaults;
    return 0;
}

int avro_dec_field(const avro_dec_event_t *event, size_t reader_index, avro_value_t *ret_value)
{
    int wi = event->ade_field_map[reader_index];
    if (wi < 0) {
        if (event->ade_defaults && event->ade_defaults[reader_index].iface) {
            *ret_value = event->ade_defaults[reader_index];
            return 0;
        }
        return 1;
    }
    return avro_value_get_by_index(event->ade_value, (size_t)wi, ret_value, NULL) ? -1 : 0;
}
