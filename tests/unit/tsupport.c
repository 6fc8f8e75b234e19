/* tsupport: shared helpers of the unit tests. */
#include "tsupport.h"

#include <avro.h>
#include <check.h>
#include <ftw.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef RM_TEST_SRCDIR
#error "RM_TEST_SRCDIR must be defined by the build"
#endif

const char *ts_src(const char *relpath, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", RM_TEST_SRCDIR, relpath);
    return out;
}

char *ts_tmpdir(void)
{
    char tmpl[] = "/tmp/rmtest-XXXXXX";
    char *dir = mkdtemp(tmpl);
    if (!dir)
        abort();
    return strdup(dir);
}

void ts_write_file(const char *dir, const char *name, const char *text)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *file = fopen(path, "w");
    if (!file || fputs(text, file) < 0 || fclose(file) != 0)
        abort();
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void ts_rmtree(char *path)
{
    if (!path)
        return;
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(path);
}

catalog_t *ts_catalog(void)
{
    char path[4096], err[512];
    catalog_t *catalog =
        catalog_load(ts_src("schemas/catalog.yaml", path, sizeof(path)), err, sizeof(err));
    if (!catalog) {
        fprintf(stderr, "catalog: %s\n", err);
        abort();
    }
    return catalog;
}

view_t *ts_view(const catalog_t *catalog)
{
    char path[4096], err[512];
    view_t *view = view_load(ts_src("schemas/views/customer360.yaml", path, sizeof(path)), catalog,
                             err, sizeof(err));
    if (!view) {
        fprintf(stderr, "view: %s\n", err);
        abort();
    }
    return view;
}

store_t *ts_store(const char *dir)
{
    char err[512];
    store_opts_t opts = {
        .so_dir = dir, .so_map_size_bytes = 64 << 20, .so_durability = STORE_PERIODIC};
    store_t *store = store_open(&opts, err, sizeof(err));
    if (!store) {
        fprintf(stderr, "store: %s\n", err);
        abort();
    }
    return store;
}

int ts_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

void ts_engine_open(ts_engine_t *te, const view_t *view, const catalog_t *catalog,
                    const engine_opts_t *opts)
{
    te->te_dir = ts_tmpdir();
    te->te_store = ts_store(te->te_dir);
    te->te_engine = engine_new(view, catalog, te->te_store, opts);
    ck_assert_ptr_nonnull(te->te_engine);
    te->te_offset = 0;
}

void ts_engine_close(ts_engine_t *te)
{
    engine_destroy(te->te_engine);
    store_close(te->te_store);
    ts_rmtree(te->te_dir);
}

engine_result_t ts_engine_apply(ts_engine_t *te, const char *topic, int64_t timestamp_ms,
                                const char *key, const void *value, size_t value_len)
{
    MDB_txn *txn;
    engine_result_t res;
    ck_assert_int_eq(store_write_begin(te->te_store, &txn), 0);
    ck_assert_int_eq(engine_txn_begin(te->te_engine, txn), 0);
    engine_msg_t m = {topic, 0,        te->te_offset++, timestamp_ms, key, key ? strlen(key) : 0,
                      value, value_len};
    ck_assert_int_eq(engine_apply(te->te_engine, txn, &m, &res), 0);
    ck_assert_int_eq(engine_txn_precommit(te->te_engine, txn), 0);
    ck_assert_int_eq(store_write_commit(te->te_store, txn), 0);
    return res;
}

static int set_value(avro_value_t *field, const char *text)
{
    avro_schema_t schema = avro_value_get_schema(field);
    switch (avro_typeof(schema)) {
    case AVRO_STRING:
        return avro_value_set_string(field, text);
    case AVRO_INT64:
        return avro_value_set_long(field, strtoll(text, NULL, 10));
    case AVRO_INT32:
        return avro_value_set_int(field, (int32_t)strtol(text, NULL, 10));
    case AVRO_BOOLEAN:
        return avro_value_set_boolean(field, strcmp(text, "true") == 0);
    case AVRO_ENUM: {
        int index = avro_schema_enum_get_by_name(schema, text);
        return index < 0 ? -1 : avro_value_set_enum(field, index);
    }
    case AVRO_UNION: {
        avro_value_t branch;
        bool is_null = strcmp(text, "null") == 0;
        for (size_t i = 0; i < avro_schema_union_size(schema); i++) {
            bool branch_null = is_avro_null(avro_schema_union_branch(schema, (int)i));
            if (branch_null != is_null)
                continue;
            if (avro_value_set_branch(field, (int)i, &branch))
                return -1;
            return is_null ? avro_value_set_null(&branch) : set_value(&branch, text);
        }
        return -1;
    }
    case AVRO_ARRAY: {
        long n = strtol(text, NULL, 10);
        for (long i = 0; i < n; i++) {
            avro_value_t item;
            if (avro_value_append(field, &item, NULL))
                return -1;
        }
        return 0;
    }
    default:
        return -1;
    }
}

int ts_event(const catalog_t *catalog, int schema_id, buf_t *out, ...)
{
    const catalog_entry_t *entry = catalog_get(catalog, schema_id);
    if (!entry) {
        fprintf(stderr, "ts_event: unknown schema id %d\n", schema_id);
        return -1;
    }
    avro_value_iface_t *iface = avro_generic_class_from_schema(entry->ce_schema);
    avro_value_t value;
    avro_generic_value_new(iface, &value);
    /* Unions default to their null branch so unset optional fields encode. */
    size_t fields = avro_schema_record_size(entry->ce_schema);
    for (size_t i = 0; i < fields; i++) {
        avro_value_t field, branch;
        avro_value_get_by_index(&value, i, &field, NULL);
        if (avro_value_get_type(&field) == AVRO_UNION)
            avro_value_set_branch(&field, 0, &branch);
    }
    va_list ap;
    va_start(ap, out);
    int rc = 0;
    for (const char *spec; !rc && (spec = va_arg(ap, const char *));) {
        const char *eq = strchr(spec, '=');
        char name[128];
        if (!eq || (size_t)(eq - spec) >= sizeof(name)) {
            rc = -1;
            break;
        }
        memcpy(name, spec, (size_t)(eq - spec));
        name[eq - spec] = '\0';
        avro_value_t field;
        if (avro_value_get_by_name(&value, name, &field, NULL) || set_value(&field, eq + 1)) {
            fprintf(stderr, "ts_event: cannot set %s on schema %d: %s\n", spec, schema_id,
                    avro_strerror());
            rc = -1;
        }
    }
    va_end(ap);
    size_t size = 0;
    if (!rc)
        rc = avro_value_sizeof(&value, &size);
    buf_reset(out);
    unsigned char header[5] = {0, (unsigned char)(schema_id >> 24),
                               (unsigned char)(schema_id >> 16), (unsigned char)(schema_id >> 8),
                               (unsigned char)schema_id};
    if (!rc) {
        buf_append(out, header, 5);
        buf_reserve(out, size);
        avro_writer_t writer = avro_writer_memory(out->b_data + 5, (int64_t)size);
        rc = avro_value_write(writer, &value);
        avro_writer_free(writer);
        out->b_len = 5 + size;
    }
    avro_value_decref(&value);
    avro_value_iface_decref(iface);
    return rc ? -1 : 0;
}

bool ts_json_equal(const char *actual, const char *expected)
{
    json_error_t err;
    json_t *a = json_loads(actual, 0, &err);
    if (!a) {
        fprintf(stderr, "actual is not JSON (%s): %s\n", err.text, actual);
        return false;
    }
    json_t *e = json_loads(expected, 0, &err);
    if (!e) {
        fprintf(stderr, "expected is not JSON (%s): %s\n", err.text, expected);
        json_decref(a);
        return false;
    }
    bool same = json_equal(a, e);
    if (!same) {
        char *as = json_dumps(a, JSON_SORT_KEYS | JSON_COMPACT);
        char *es = json_dumps(e, JSON_SORT_KEYS | JSON_COMPACT);
        fprintf(stderr, "JSON differs\n  actual:   %s\n  expected: %s\n", as, es);
        free(as);
        free(es);
    }
    json_decref(a);
    json_decref(e);
    return same;
}

#define TS_V1_PUT(out, type, value)                                                                \
    do {                                                                                           \
        type v_ = (value);                                                                         \
        ck_assert_int_eq(buf_append((out), &v_, sizeof(v_)), 0);                                   \
    } while (0)

void ts_frag_encode_v1(const frag_t *frag, const view_section_t *section, buf_t *out)
{
    buf_reset(out);
    TS_V1_PUT(out, uint8_t, 1);
    TS_V1_PUT(out, uint8_t, 0);
    TS_V1_PUT(out, uint16_t, (uint16_t)frag->f_slot_count);
    TS_V1_PUT(out, uint16_t, frag->f_prov.fp_topic);
    TS_V1_PUT(out, uint16_t, 0);
    TS_V1_PUT(out, int32_t, frag->f_prov.fp_partition);
    TS_V1_PUT(out, int64_t, frag->f_prov.fp_offset);
    TS_V1_PUT(out, int64_t, frag->f_prov.fp_event_ms);
    TS_V1_PUT(out, int64_t, frag->f_sort);
    size_t json_len_at = out->b_len;
    TS_V1_PUT(out, uint32_t, 0);
    for (size_t i = 0; i < frag->f_slot_count; i++) {
        const frag_slot_t *slot = &frag->f_slots[i];
        TS_V1_PUT(out, uint8_t, (uint8_t)slot->fsl_type);
        if (slot->fsl_type == FRAG_ABSENT)
            continue;
        TS_V1_PUT(out, int64_t, slot->fsl_stamp.fs_time_ms);
        TS_V1_PUT(out, int64_t, slot->fsl_stamp.fs_version);
        TS_V1_PUT(out, uint32_t, slot->fsl_stamp.fs_tie);
        if (slot->fsl_type == FRAG_INT || slot->fsl_type == FRAG_BOOL) {
            TS_V1_PUT(out, int64_t, slot->fsl_int);
        } else if (slot->fsl_type == FRAG_STR) {
            TS_V1_PUT(out, uint32_t, (uint32_t)slot->fsl_str_len);
            ck_assert_int_eq(buf_append(out, slot->fsl_str, slot->fsl_str_len), 0);
        }
    }
    size_t json_start = out->b_len;
    ck_assert_int_eq(frag_render_json(frag, section, out), 0);
    uint32_t json_len = (uint32_t)(out->b_len - json_start);
    memcpy(out->b_data + json_len_at, &json_len, sizeof(json_len));
}
