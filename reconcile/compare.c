/* compare: store against source for one section of one key (compare.h). */
#include "compare.h"
#include "rm_err.h"
#include "source.h"

#include <stdlib.h>
#include <string.h>

static int64_t updated_of(json_t *record)
{
    json_t *at = json_object_get(record, SOURCE_UPDATED);
    return json_is_integer(at) ? json_integer_value(at) : 0;
}

static report_class_t classify(const compare_ctx_t *ctx, int64_t store_ms, int64_t source_ms)
{
    if (source_ms > store_ms && ctx->cc_now_ms - source_ms < ctx->cc_budget_ms)
        return REPORT_PENDING;
    return REPORT_DRIFT;
}

typedef struct cmp_where {
    const char *cw_key;
    const char *cw_section;
    const char *cw_item;
    int64_t cw_store_ms;
    int64_t cw_source_ms;
    const char *cw_url;
} cmp_where_t;

static int emit(const compare_ctx_t *ctx, const cmp_where_t *w, report_class_t cls,
                const char *field, json_t *store, json_t *source, const char *reason)
{
    char *s = store ? json_dumps(store, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    char *o = source ? json_dumps(source, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    report_finding_t f = {
        .rf_class = cls,
        .rf_key = w->cw_key,
        .rf_section = w->cw_section,
        .rf_item = w->cw_item,
        .rf_field = field,
        .rf_store = s,
        .rf_other = o,
        .rf_reason = reason,
        .rf_store_event_ms = w->cw_store_ms,
        .rf_source_updated_ms = w->cw_source_ms,
        .rf_url = w->cw_url,
    };
    int rc = report_add(ctx->cc_report, &f);
    free(s);
    free(o);
    return rc;
}

static bool same(json_t *a, json_t *b)
{
    if (!a || json_is_null(a))
        return !b || json_is_null(b);
    return b && json_equal(a, b);
}

/* The mapped fields of source that are not null: what an upsert or set would write. */
static json_t *fields_of(json_t *source)
{
    json_t *out = json_object();
    const char *name;
    json_t *value;
    json_object_foreach(source, name, value)
    {
        if (name[0] != '@' && !json_is_null(value))
            json_object_set(out, name, value);
    }
    return out;
}

/* Field by field; differing DRIFT fields are added to fix. */
static int compare_record(const compare_ctx_t *ctx, const cmp_where_t *w, json_t *store,
                          json_t *source, json_t *fix, bool *ret_drift)
{
    const char *name;
    json_t *value;
    json_object_foreach(source, name, value)
    {
        if (name[0] == '@')
            continue;
        json_t *have = json_object_get(store, name);
        if (same(have, value))
            continue;
        report_class_t cls = classify(ctx, w->cw_store_ms, w->cw_source_ms);
        int rc = emit(ctx, w, cls, name, have, value, "value");
        if (rc)
            return rc;
        if (cls == REPORT_DRIFT) {
            *ret_drift = true;
            if (!json_is_null(value))
                json_object_set(fix, name, value);
        }
    }
    return 0;
}

static int fix(const compare_ctx_t *ctx, const cmp_where_t *w, compare_op_t op, json_t *fields,
               const char *reason)
{
    if (!ctx->cc_fix)
        return 0;
    return ctx->cc_fix(ctx->cc_fix_ctx, w->cw_key, w->cw_section, op, w->cw_item, fields, w->cw_url,
                       reason);
}

static int compare_single(const compare_ctx_t *ctx, cmp_where_t *w, json_t *store, json_t *source)
{
    bool has_store = store && json_is_object(store);
    if (!source)
        return has_store ? emit(ctx, w, REPORT_DRIFT, NULL, store, NULL, "missing-in-source") : 0;
    w->cw_source_ms = updated_of(source);
    json_t *fields = fields_of(source);
    int rc = 0;
    if (!fields)
        return RM_ENOMEM;
    if (!has_store) {
        report_class_t cls = classify(ctx, w->cw_store_ms, w->cw_source_ms);
        rc = emit(ctx, w, cls, NULL, NULL, fields, "missing-in-store");
        if (!rc && cls == REPORT_DRIFT)
            rc = fix(ctx, w, COMPARE_SET, fields, "missing-in-store");
    } else {
        json_t *changes = json_object();
        bool drift = false;
        rc = changes ? compare_record(ctx, w, store, source, changes, &drift) : RM_ENOMEM;
        if (!rc && drift && json_object_size(changes))
            rc = fix(ctx, w, COMPARE_SET, changes, "value");
        json_decref(changes);
    }
    json_decref(fields);
    return rc;
}

typedef struct cmp_item {
    json_t *ci_item;
    int64_t ci_sort;
    const char *ci_id;
} cmp_item_t;

static int by_response_order(const void *a, const void *b)
{
    const cmp_item_t *x = a, *y = b;
    if (x->ci_sort != y->ci_sort)
        return x->ci_sort > y->ci_sort ? -1 : 1;
    return strcmp(x->ci_id, y->ci_id);
}

void compare_shape_list(const view_section_t *section, json_t *items)
{
    size_t n = json_array_size(items);
    if (n == 0)
        return;
    cmp_item_t *sorted = calloc(n, sizeof(*sorted));
    if (!sorted)
        return;
    const char *sort_name =
        section->vs_sort_field >= 0 ? section->vs_fields[section->vs_sort_field].vf_name : NULL;
    for (size_t i = 0; i < n; i++) {
        json_t *item = json_array_get(items, i);
        json_t *sort = sort_name ? json_object_get(item, sort_name) : NULL;
        json_t *id = json_object_get(item, SOURCE_ITEM);
        sorted[i] = (cmp_item_t){json_incref(item),
                                 json_is_integer(sort) ? json_integer_value(sort) : INT64_MIN,
                                 json_is_string(id) ? json_string_value(id) : ""};
    }
    qsort(sorted, n, sizeof(*sorted), by_response_order);
    json_array_clear(items);
    size_t keep = section->vs_max_items && n > section->vs_max_items ? section->vs_max_items : n;
    for (size_t i = 0; i < n; i++) {
        if (i < keep)
            json_array_append(items, sorted[i].ci_item);
        json_decref(sorted[i].ci_item);
    }
    free(sorted);
}

static int compare_list(const compare_ctx_t *ctx, cmp_where_t *w, const view_section_t *section,
                        json_t *store, json_t *source, int item_field)
{
    const char *id_name = section->vs_fields[item_field].vf_name;
    json_t *by_id = json_object(); /* store items by id */
    if (!by_id)
        return RM_ENOMEM;
    size_t i;
    json_t *item;
    json_array_foreach(store, i, item)
    {
        json_t *id = json_object_get(item, id_name);
        if (json_is_string(id))
            json_object_set(by_id, json_string_value(id), item);
    }
    int rc = 0;
    json_array_foreach(source, i, item)
    {
        json_t *id = json_object_get(item, SOURCE_ITEM);
        if (!json_is_string(id))
            continue; /* an item without an id cannot be matched: mapped ids are required */
        w->cw_item = json_string_value(id);
        w->cw_source_ms = updated_of(item);
        json_t *have = json_object_get(by_id, w->cw_item);
        json_t *fields = fields_of(item);
        if (!fields)
            rc = RM_ENOMEM;
        else if (!have) {
            report_class_t cls = classify(ctx, w->cw_store_ms, w->cw_source_ms);
            rc = emit(ctx, w, cls, NULL, NULL, fields, "missing-in-store");
            if (!rc && cls == REPORT_DRIFT)
                rc = fix(ctx, w, COMPARE_UPSERT, fields, "missing-in-store");
        } else {
            json_t *changes = json_object();
            bool drift = false;
            rc = changes ? compare_record(ctx, w, have, item, changes, &drift) : RM_ENOMEM;
            if (!rc && drift && json_object_size(changes))
                rc = fix(ctx, w, COMPARE_UPSERT, changes, "value");
            json_decref(changes);
            json_object_del(by_id, w->cw_item);
        }
        json_decref(fields);
        if (rc)
            break;
    }
    const char *id;
    json_t *left;
    w->cw_source_ms = 0;
    json_object_foreach(by_id, id, left)
    {
        if (rc)
            break;
        w->cw_item = id;
        rc = emit(ctx, w, REPORT_DRIFT, NULL, left, NULL, "missing-in-source");
        if (!rc) {
            json_t *none = json_object();
            rc = none ? fix(ctx, w, COMPARE_DELETE, none, "missing-in-source") : RM_ENOMEM;
            json_decref(none);
        }
    }
    json_decref(by_id);
    return rc;
}

int compare_section(const compare_ctx_t *ctx, const char *key, int section, json_t *store,
                    json_t *source, int64_t store_event_ms, const char *url)
{
    const view_t *view = ctx->cc_view;
    const view_section_t *sec = &view->v_sections[section];
    const view_source_t *src = view_source_for(view, section);
    cmp_where_t w = {
        .cw_key = key, .cw_section = sec->vs_name, .cw_store_ms = store_event_ms, .cw_url = url};
    if (sec->vs_kind != VIEW_LIST)
        return compare_single(ctx, &w, store, source);
    json_t *no_source = source ? NULL : json_array();
    json_t *no_store = json_is_array(store) ? NULL : json_array();
    int rc = RM_ENOMEM;
    if ((source || no_source) && (json_is_array(store) || no_store)) {
        if (source)
            compare_shape_list(sec, source);
        rc = compare_list(ctx, &w, sec, no_store ? no_store : store, source ? source : no_source,
                          src->vsrc_item_field);
    }
    json_decref(no_source);
    json_decref(no_store);
    return rc;
}
