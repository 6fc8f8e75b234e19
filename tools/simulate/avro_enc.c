/* avro_enc: Confluent-framed Avro encoding of simulated events (see avro_enc.h). */
#include "avro_enc.h"
#include "rm_err.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Schema versions per record name that one encoder can write. */
#define ENC_MAX_VERSIONS 8
/* Output buffer start; grown by doubling to fit the largest message seen. */
#define ENC_INITIAL_BYTES 1024

typedef struct enc_field {
    int ef_sim_field; /* sim_field_t, or -1 for a field left null */
    avro_schema_t ef_schema; /* the field's schema (borrowed from the catalog) */
} enc_field_t;

typedef struct enc_type {
    const catalog_entry_t *et_entry;
    int32_t et_frame_id; /* the id framed: the catalog's, or the registry's (avro_enc_register) */
    avro_value_iface_t *et_iface;
    avro_value_t et_value;
    bool et_has_value;
    enc_field_t *et_fields;
    size_t et_field_count;
    /* OrderLine field indexes, when the schema has lines */
    size_t et_line_sku, et_line_quantity, et_line_price;
} enc_type_t;

struct avro_enc {
    enc_type_t enc_types[SIM_EVENT_TYPE_COUNT][ENC_MAX_VERSIONS]; /* oldest first */
    size_t enc_versions[SIM_EVENT_TYPE_COUNT];
    avro_writer_t enc_writer;
    char *enc_buf;
    size_t enc_cap;
    char enc_error[256];
};

/* ---- set-up ----------------------------------------------------------------------------- */

static bool is_nullable(avro_schema_t schema)
{
    if (!is_avro_union(schema))
        return false;
    for (size_t b = 0; b < avro_schema_union_size(schema); b++) {
        if (is_avro_null(avro_schema_union_branch(schema, (int)b)))
            return true;
    }
    return false;
}

static int line_index(avro_schema_t line_schema, const char *name, size_t *ret_index, char *errstr,
                      size_t errlen)
{
    int index = avro_schema_record_field_get_index(line_schema, name);
    if (index < 0) {
        snprintf(errstr, errlen, "%s: lines item has no field '%s'", avro_schema_name(line_schema),
                 name);
        return RM_EINVAL;
    }
    *ret_index = (size_t)index;
    return 0;
}

/* The model field a schema field fills: by name, else by one of its aliases (a field
 * renamed in a later version keeps the old name as an alias). -1 when none. */
static int model_field_of(const catalog_entry_t *entry, size_t index, const char *name)
{
    int field = model_field_lookup(name);
    if (field >= 0)
        return field;
    json_t *root = json_load_file(entry->ce_file, 0, NULL); /* avro-c drops aliases */
    json_t *aliases =
        json_object_get(json_array_get(json_object_get(root, "fields"), index), "aliases");
    json_t *alias;
    size_t i;
    json_array_foreach(aliases, i, alias)
    {
        if (json_is_string(alias) && (field = model_field_lookup(json_string_value(alias))) >= 0)
            break;
    }
    json_decref(root);
    return field;
}

static int prepare_type(enc_type_t *et, sim_event_type_t type, const catalog_entry_t *entry,
                        char *errstr, size_t errlen)
{
    const char *full_name = model_event_type_name(type);
    et->et_entry = entry;
    et->et_frame_id = entry->ce_id;
    if (!et->et_entry->ce_topic) {
        snprintf(errstr, errlen, "schema id %d (%s) has no topic in the catalog",
                 (int)et->et_entry->ce_id, full_name);
        return RM_ECONFIG;
    }
    avro_schema_t schema = et->et_entry->ce_schema;
    et->et_field_count = avro_schema_record_size(schema);
    et->et_fields = calloc(et->et_field_count ? et->et_field_count : 1, sizeof(*et->et_fields));
    if (!et->et_fields)
        return RM_ENOMEM;
    for (size_t i = 0; i < et->et_field_count; i++) {
        enc_field_t *ef = &et->et_fields[i];
        const char *name = avro_schema_record_field_name(schema, (int)i);
        ef->ef_schema = avro_schema_record_field_get_by_index(schema, (int)i);
        ef->ef_sim_field = model_field_of(et->et_entry, i, name);
        if (ef->ef_sim_field < 0 && !is_nullable(ef->ef_schema)) {
            snprintf(errstr, errlen, "schema id %d (%s): field '%s' is not one simulate can fill",
                     (int)et->et_entry->ce_id, full_name, name);
            return RM_ESCHEMA;
        }
        if (ef->ef_sim_field == SIM_F_LINES) {
            avro_schema_t line =
                is_avro_array(ef->ef_schema) ? avro_schema_array_items(ef->ef_schema) : NULL;
            if (!line || !is_avro_record(line)) {
                snprintf(errstr, errlen, "schema id %d (%s): 'lines' is not an array of records",
                         (int)et->et_entry->ce_id, full_name);
                return RM_ESCHEMA;
            }
            if (line_index(line, "sku", &et->et_line_sku, errstr, errlen) ||
                line_index(line, "quantity", &et->et_line_quantity, errstr, errlen) ||
                line_index(line, "unit_price_cents", &et->et_line_price, errstr, errlen))
                return RM_ESCHEMA;
        }
    }
    et->et_iface = avro_generic_class_from_schema(schema);
    if (!et->et_iface || avro_generic_value_new(et->et_iface, &et->et_value) != 0) {
        snprintf(errstr, errlen, "schema id %d (%s): %s", (int)et->et_entry->ce_id, full_name,
                 avro_strerror());
        return RM_ESCHEMA;
    }
    et->et_has_value = true;
    return 0;
}

avro_enc_t *avro_enc_new(const catalog_t *catalog, char *errstr, size_t errlen)
{
    avro_enc_t *enc = calloc(1, sizeof(*enc));
    if (!enc) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    enc->enc_cap = ENC_INITIAL_BYTES;
    enc->enc_buf = calloc(1, enc->enc_cap); /* avro_writer_memory takes a const buffer */
    enc->enc_writer = enc->enc_buf ? avro_writer_memory(enc->enc_buf, (int64_t)enc->enc_cap) : NULL;
    if (!enc->enc_writer) {
        snprintf(errstr, errlen, "out of memory");
        goto fail;
    }
    for (int type = 0; type < SIM_EVENT_TYPE_COUNT; type++) {
        const char *full_name = model_event_type_name(type);
        for (size_t i = 0; i < catalog_count(catalog); i++) {
            const catalog_entry_t *entry = catalog_at(catalog, i); /* ascending ids */
            if (strcmp(entry->ce_full_name, full_name) != 0)
                continue;
            if (enc->enc_versions[type] == ENC_MAX_VERSIONS) {
                snprintf(errstr, errlen, "%s: more than %d schema versions", full_name,
                         ENC_MAX_VERSIONS);
                goto fail;
            }
            int rc = prepare_type(&enc->enc_types[type][enc->enc_versions[type]++], type, entry,
                                  errstr, errlen);
            if (rc == RM_ENOMEM)
                snprintf(errstr, errlen, "out of memory");
            if (rc)
                goto fail;
        }
        if (!enc->enc_versions[type]) {
            snprintf(errstr, errlen, "catalog has no schema for %s", full_name);
            goto fail;
        }
    }
    return enc;
fail:
    avro_enc_destroy(enc);
    return NULL;
}

void avro_enc_destroy(avro_enc_t *enc)
{
    if (!enc)
        return;
    for (int type = 0; type < SIM_EVENT_TYPE_COUNT; type++)
        for (size_t v = 0; v < ENC_MAX_VERSIONS; v++) {
            enc_type_t *et = &enc->enc_types[type][v];
            if (et->et_has_value)
                avro_value_decref(&et->et_value);
            if (et->et_iface)
                avro_value_iface_decref(et->et_iface);
            free(et->et_fields);
        }
    if (enc->enc_writer)
        avro_writer_free(enc->enc_writer);
    free(enc->enc_buf);
    free(enc);
}

const catalog_entry_t *avro_enc_entry(const avro_enc_t *enc, sim_event_type_t type)
{
    return enc->enc_types[type][enc->enc_versions[type] - 1].et_entry;
}

size_t avro_enc_versions(const avro_enc_t *enc, sim_event_type_t type)
{
    return enc->enc_versions[type];
}

const catalog_entry_t *avro_enc_entry_version(const avro_enc_t *enc, sim_event_type_t type,
                                              size_t version)
{
    return enc->enc_types[type][version].et_entry;
}

const char *avro_enc_last_error(const avro_enc_t *enc)
{
    return enc->enc_error[0] ? enc->enc_error : "no error";
}

/* ---- encoding ----------------------------------------------------------------------------- */

static int fail(avro_enc_t *enc, const enc_type_t *et, const char *field, const char *problem)
{
    snprintf(enc->enc_error, sizeof(enc->enc_error), "schema id %d field '%s': %s",
             (int)et->et_entry->ce_id, field, problem);
    return RM_EINVAL;
}

static int set_lines(avro_enc_t *enc, const enc_type_t *et, avro_value_t *array,
                     const sim_payload_t *pl)
{
    for (size_t i = 0; i < pl->pl_line_count; i++) {
        const sim_line_t *li = &pl->pl_lines[i];
        avro_value_t item, field;
        if (avro_value_append(array, &item, NULL) ||
            avro_value_get_by_index(&item, et->et_line_sku, &field, NULL) ||
            avro_value_set_string(&field, li->li_sku) ||
            avro_value_get_by_index(&item, et->et_line_quantity, &field, NULL) ||
            avro_value_set_int(&field, li->li_quantity) ||
            avro_value_get_by_index(&item, et->et_line_price, &field, NULL) ||
            avro_value_set_long(&field, li->li_unit_price_cents))
            return fail(enc, et, "lines", avro_strerror());
    }
    return 0;
}

/* Writes field f of pl into value, whose schema is schema. */
static int set_value(avro_enc_t *enc, const enc_type_t *et, avro_value_t *value,
                     avro_schema_t schema, int f, const sim_payload_t *pl, const char *name)
{
    bool present = f >= 0 && (pl->pl_present & (1u << f));
    const char *str = present ? pl->pl_str[f] : NULL;
    int64_t number = present ? pl->pl_int[f] : 0;
    int rc;
    switch (avro_typeof(schema)) {
    case AVRO_UNION: {
        /* ["null", T]: null when the event lacks the field or carries a null string */
        int null_branch = -1, value_branch = -1;
        for (size_t b = 0; b < avro_schema_union_size(schema); b++) {
            if (is_avro_null(avro_schema_union_branch(schema, (int)b)))
                null_branch = null_branch < 0 ? (int)b : null_branch;
            else
                value_branch = value_branch < 0 ? (int)b : value_branch;
        }
        avro_schema_t value_schema =
            value_branch >= 0 ? avro_schema_union_branch(schema, value_branch) : NULL;
        bool textual = value_schema && (is_avro_string(value_schema) || is_avro_enum(value_schema));
        bool is_null = !present || (textual && !str);
        int b = is_null ? null_branch : value_branch;
        avro_value_t branch;
        if (b < 0)
            return fail(enc, et, name, "no union branch fits the value");
        if (avro_value_set_branch(value, b, &branch))
            return fail(enc, et, name, avro_strerror());
        if (is_null)
            return avro_value_set_null(&branch) ? fail(enc, et, name, avro_strerror()) : 0;
        return set_value(enc, et, &branch, value_schema, f, pl, name);
    }
    default:
        break;
    }
    if (!present)
        return fail(enc, et, name, "the event does not carry this field");
    switch (avro_typeof(schema)) {
    case AVRO_STRING:
        if (!str)
            return fail(enc, et, name, "null for a non-null string");
        rc = avro_value_set_string(value, str);
        break;
    case AVRO_INT64:
        rc = avro_value_set_long(value, number);
        break;
    case AVRO_INT32:
        rc = avro_value_set_int(value, (int32_t)number);
        break;
    case AVRO_BOOLEAN:
        rc = avro_value_set_boolean(value, number != 0);
        break;
    case AVRO_ENUM: {
        int ordinal = str ? avro_schema_enum_get_by_name(schema, str) : -1;
        if (ordinal < 0)
            return fail(enc, et, name, "symbol not in the enum");
        rc = avro_value_set_enum(value, ordinal);
        break;
    }
    case AVRO_ARRAY:
        if (f != SIM_F_LINES)
            return fail(enc, et, name, "unexpected array");
        return set_lines(enc, et, value, pl);
    default:
        return fail(enc, et, name, "unsupported Avro type");
    }
    return rc ? fail(enc, et, name, avro_strerror()) : 0;
}

static int ensure_room(avro_enc_t *enc, size_t bytes)
{
    if (bytes <= enc->enc_cap)
        return 0;
    size_t cap = enc->enc_cap;
    while (cap < bytes)
        cap *= 2;
    char *grown = realloc(enc->enc_buf, cap);
    if (!grown)
        return RM_ENOMEM;
    enc->enc_buf = grown;
    enc->enc_cap = cap;
    return 0;
}

int avro_enc_encode(avro_enc_t *enc, sim_event_type_t type, const sim_payload_t *pl,
                    const void **ret_data, size_t *ret_len)
{
    return avro_enc_encode_version(enc, type, enc->enc_versions[type] - 1, pl, ret_data, ret_len);
}

int avro_enc_encode_version(avro_enc_t *enc, sim_event_type_t type, size_t version,
                            const sim_payload_t *pl, const void **ret_data, size_t *ret_len)
{
    enc_type_t *et = &enc->enc_types[type][version];
    avro_value_t *record = &et->et_value;
    avro_value_reset(record);
    for (size_t i = 0; i < et->et_field_count; i++) {
        const enc_field_t *ef = &et->et_fields[i];
        const char *name = NULL;
        avro_value_t field;
        if (avro_value_get_by_index(record, i, &field, &name))
            return fail(enc, et, "?", avro_strerror());
        int rc = set_value(enc, et, &field, ef->ef_schema, ef->ef_sim_field, pl, name);
        if (rc)
            return rc;
    }
    size_t body_bytes = 0;
    if (avro_value_sizeof(record, &body_bytes))
        return fail(enc, et, "*", avro_strerror());
    if (ensure_room(enc, AVRO_ENC_HEADER_BYTES + body_bytes))
        return RM_ENOMEM;
    avro_writer_memory_set_dest(enc->enc_writer, enc->enc_buf + AVRO_ENC_HEADER_BYTES,
                                (int64_t)body_bytes);
    if (avro_value_write(enc->enc_writer, record))
        return fail(enc, et, "*", avro_strerror());
    uint32_t schema_id = (uint32_t)et->et_frame_id;
    enc->enc_buf[0] = AVRO_ENC_MAGIC;
    enc->enc_buf[1] = (char)(schema_id >> 24);
    enc->enc_buf[2] = (char)(schema_id >> 16);
    enc->enc_buf[3] = (char)(schema_id >> 8);
    enc->enc_buf[4] = (char)schema_id;
    *ret_data = enc->enc_buf;
    *ret_len = AVRO_ENC_HEADER_BYTES + body_bytes;
    return 0;
}

int avro_enc_register(avro_enc_t *enc, registry_t *registry, char *errstr, size_t errlen)
{
    for (int type = 0; type < SIM_EVENT_TYPE_COUNT; type++)
        for (size_t v = 0; v < enc->enc_versions[type]; v++) {
            enc_type_t *et = &enc->enc_types[type][v];
            const catalog_entry_t *entry = et->et_entry;
            /* The .avsc text as written (avro-c's own JSON drops aliases and docs). */
            json_t *root = json_load_file(entry->ce_file, 0, NULL);
            char *text = root ? json_dumps(root, JSON_COMPACT) : NULL;
            json_decref(root);
            if (!text) {
                snprintf(errstr, errlen, "cannot read '%s'", entry->ce_file);
                return RM_EIO;
            }
            char subject[512];
            int rc =
                registry_subject(registry, entry->ce_topic, entry->ce_full_name, subject,
                                 sizeof(subject))
                    ? registry_register(registry, subject, text, &et->et_frame_id, errstr, errlen)
                    : RM_EINVAL;
            free(text);
            if (rc) {
                if (rc == RM_EINVAL && !*errstr)
                    snprintf(errstr, errlen, "subject too long");
                return rc;
            }
        }
    return 0;
}

int32_t avro_enc_frame_id(const avro_enc_t *enc, sim_event_type_t type, size_t version)
{
    return enc->enc_types[type][version].et_frame_id;
}
