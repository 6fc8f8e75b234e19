/* view: load and validate a view definition (schemas/views/<name>.yaml).
 *
 * Validation happens here, once, against the reader schemas of the catalog, so
 * the engine's hot path can trust every index and type it is handed. Every error
 * names file, line and the path of the offending key. */
#include "view.h"
#include "frag.h"
#include "rm_err.h"
#include "yml.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct view_ld {
    view_t *vl_view;
    const catalog_t *vl_catalog;
    const char *vl_file;
    char *vl_err;
    size_t vl_errlen;
    bool vl_failed;
} view_ld_t;

__attribute__((format(printf, 4, 5))) static int ld_fail(view_ld_t *ld, const yml_node_t *node,
                                                         const char *where, const char *fmt, ...)
{
    if (ld->vl_failed)
        return RM_ECONFIG;
    ld->vl_failed = true;
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    snprintf(ld->vl_err, ld->vl_errlen, "%s:%u: %s: %s", ld->vl_file, yml_line(node), where, what);
    return RM_ECONFIG;
}

static int ld_name(view_ld_t *ld, const yml_node_t *node, const char *where, char **ret)
{
    const char *s = yml_scalar(node);
    if (!s || !*s)
        return ld_fail(ld, node, where, "expected a non-empty name");
    if (strlen(s) > VIEW_NAME_MAX_BYTES)
        return ld_fail(ld, node, where, "longer than %d bytes", VIEW_NAME_MAX_BYTES);
    for (const char *p = s; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-' || *p == '.'))
            return ld_fail(ld, node, where, "'%s': only letters, digits, '_', '-', '.'", s);
    }
    *ret = strdup(s);
    return *ret ? 0 : RM_ENOMEM;
}

/* Rejects keys of map that are not in allowed (typos must not pass silently). */
static int ld_keys(view_ld_t *ld, const yml_node_t *map, const char *where,
                   const char *const *allowed)
{
    if (yml_kind(map) != YML_MAP)
        return ld_fail(ld, map, where, "expected a mapping");
    for (size_t i = 0; i < yml_count(map); i++) {
        const char *key = yml_scalar(yml_map_key_at(map, i));
        bool ok = false;
        for (size_t a = 0; key && allowed[a]; a++)
            ok |= strcmp(key, allowed[a]) == 0;
        if (!ok)
            return ld_fail(ld, yml_map_key_at(map, i), where, "unknown key '%s'",
                           key ? key : "?");
    }
    return 0;
}

static int parse_i64(const char *s, int64_t *ret)
{
    if (!s || !*s)
        return RM_EINVAL;
    if (strcmp(s, "true") == 0 || strcmp(s, "false") == 0) {
        *ret = s[0] == 't';
        return 0;
    }
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end)
        return RM_EINVAL;
    *ret = v;
    return 0;
}

static int ld_field_type(view_ld_t *ld, const yml_node_t *node, const char *where,
                         view_type_t *ret)
{
    const char *s = yml_scalar(node);
    static const char *const names[] = {"string", "long", "bool", "timestamp"};
    for (int i = 0; s && i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            *ret = (view_type_t)i;
            return 0;
        }
    }
    return ld_fail(ld, node, where, "type must be string, long, bool or timestamp");
}

/* `mask:` says how the query API shows a pii field to a role without the entitlement. */
static int ld_field_mask(view_ld_t *ld, const yml_node_t *node, const char *where,
                         view_field_t *field)
{
    if (!node)
        return 0;
    static const char *const names[] = {"redact", "last4", "email", "initials"};
    const char *s = yml_scalar(node);
    for (size_t i = 0; s && i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(s, names[i]) == 0) {
            if (!field->vf_pii || field->vf_type != VIEW_T_STRING)
                return ld_fail(ld, node, where, "mask applies to string fields with pii: true");
            field->vf_mask = (view_mask_t)i;
            return 0;
        }
    return ld_fail(ld, node, where, "mask must be redact, last4, email or initials");
}

static int ld_field(view_ld_t *ld, const yml_node_t *key, const yml_node_t *val,
                    const char *where, view_field_t *field)
{
    if (ld_name(ld, key, where, &field->vf_name))
        return RM_ECONFIG;
    if (yml_kind(val) == YML_SCALAR)
        return ld_field_type(ld, val, where, &field->vf_type);
    static const char *const allowed[] = {"type", "default", "pii", "mask", NULL};
    if (ld_keys(ld, val, where, allowed) ||
        ld_field_type(ld, yml_map_get(val, "type"), where, &field->vf_type))
        return RM_ECONFIG;
    const yml_node_t *dflt = yml_map_get(val, "default");
    if (dflt) {
        const char *s = yml_scalar(dflt);
        if (!s)
            return ld_fail(ld, dflt, where, "default must be a scalar");
        field->vf_has_default = true;
        if (field->vf_type == VIEW_T_STRING) {
            if (!(field->vf_default_str = strdup(s)))
                return RM_ENOMEM;
        } else if (parse_i64(s, &field->vf_default_int)) {
            return ld_fail(ld, dflt, where, "default '%s' is not a number", s);
        }
    }
    const yml_node_t *pii = yml_map_get(val, "pii");
    if (pii) {
        const char *s = yml_scalar(pii);
        if (!s || (strcmp(s, "true") && strcmp(s, "false")))
            return ld_fail(ld, pii, where, "pii must be true or false");
        field->vf_pii = s[0] == 't';
    }
    return ld_field_mask(ld, yml_map_get(val, "mask"), where, field);
}

static int ld_section(view_ld_t *ld, const yml_node_t *key, const yml_node_t *val,
                      view_section_t *section)
{
    char where[160];
    snprintf(where, sizeof(where), "sections.%s", yml_scalar(key) ? yml_scalar(key) : "?");
    static const char *const allowed[] = {"kind", "fields", "max_items", "sort_by", NULL};
    if (ld_name(ld, key, "sections", &section->vs_name) || ld_keys(ld, val, where, allowed))
        return RM_ECONFIG;
    const yml_node_t *kind = yml_map_get(val, "kind");
    const char *k = yml_scalar(kind);
    if (k && strcmp(k, "single") == 0)
        section->vs_kind = VIEW_SINGLE;
    else if (k && strcmp(k, "list") == 0)
        section->vs_kind = VIEW_LIST;
    else if (k && strcmp(k, "counters") == 0)
        section->vs_kind = VIEW_COUNTERS;
    else
        return ld_fail(ld, kind ? kind : val, where, "kind must be single, list or counters");
    const yml_node_t *fields = yml_map_get(val, "fields");
    if (yml_kind(fields) != YML_MAP || yml_count(fields) == 0)
        return ld_fail(ld, fields ? fields : val, where, "fields: expected a non-empty mapping");
    if (yml_count(fields) > FRAG_MAX_SLOTS)
        return ld_fail(ld, fields, where, "more than %d fields", FRAG_MAX_SLOTS);
    section->vs_field_count = yml_count(fields);
    section->vs_fields = calloc(section->vs_field_count, sizeof(*section->vs_fields));
    if (!section->vs_fields)
        return RM_ENOMEM;
    for (size_t i = 0; i < section->vs_field_count; i++) {
        char fwhere[240];
        snprintf(fwhere, sizeof(fwhere), "%s.fields", where);
        if (ld_field(ld, yml_map_key_at(fields, i), yml_map_value_at(fields, i), fwhere,
                     &section->vs_fields[i]))
            return RM_ECONFIG;
        if (section->vs_kind == VIEW_COUNTERS && section->vs_fields[i].vf_type != VIEW_T_LONG)
            return ld_fail(ld, yml_map_value_at(fields, i), fwhere, "counters must be long");
    }
    section->vs_sort_field = -1;
    const yml_node_t *sort = yml_map_get(val, "sort_by");
    const yml_node_t *max = yml_map_get(val, "max_items");
    if ((sort || max) && section->vs_kind != VIEW_LIST)
        return ld_fail(ld, sort ? sort : max, where, "sort_by/max_items apply to lists only");
    if (sort) {
        for (size_t i = 0; i < section->vs_field_count; i++)
            if (yml_scalar(sort) && strcmp(yml_scalar(sort), section->vs_fields[i].vf_name) == 0)
                section->vs_sort_field = (int)i;
        if (section->vs_sort_field < 0)
            return ld_fail(ld, sort, where, "sort_by: no field '%s'",
                           yml_scalar(sort) ? yml_scalar(sort) : "?");
        if (section->vs_fields[section->vs_sort_field].vf_type == VIEW_T_STRING)
            return ld_fail(ld, sort, where, "sort_by: must be a long or timestamp field");
    }
    if (max) {
        int64_t n;
        if (parse_i64(yml_scalar(max), &n) || n < 1 || n > 100000)
            return ld_fail(ld, max, where, "max_items: expected an integer 1..100000");
        if (section->vs_sort_field < 0)
            return ld_fail(ld, max, where, "max_items needs sort_by (what to trim)");
        section->vs_max_items = (uint32_t)n;
    }
    return 0;
}

/* Resolves an event field of the rule's reader schema: index and Avro shape. */
static int ld_event_field(view_ld_t *ld, const yml_node_t *node, const char *where,
                          const view_rule_t *rule, const char *name, view_expr_t *expr)
{
    avro_schema_t record = rule->vr_reader->ce_schema;
    int index = avro_schema_record_field_get_index(record, name);
    if (index < 0)
        return ld_fail(ld, node, where, "event %s has no field '%s'", rule->vr_event, name);
    avro_schema_t fs = avro_schema_record_field_get_by_index(record, index);
    view_src_type_t src;
    if (is_avro_string(fs))
        src = VIEW_SRC_STRING;
    else if (is_avro_enum(fs))
        src = VIEW_SRC_ENUM;
    else if (is_avro_int64(fs))
        src = VIEW_SRC_LONG;
    else if (is_avro_int32(fs))
        src = VIEW_SRC_INT;
    else if (is_avro_boolean(fs))
        src = VIEW_SRC_BOOL;
    else if (is_avro_array(fs))
        src = VIEW_SRC_ARRAY;
    else if (is_avro_union(fs) && avro_schema_union_size(fs) == 2) {
        avro_schema_t a = avro_schema_union_branch(fs, 0), b = avro_schema_union_branch(fs, 1);
        avro_schema_t other = is_avro_null(a) ? b : is_avro_null(b) ? a : NULL;
        if (other && is_avro_string(other))
            src = VIEW_SRC_OPT_STRING;
        else if (other && (is_avro_int64(other) || is_avro_int32(other)))
            src = VIEW_SRC_OPT_LONG;
        else
            return ld_fail(ld, node, where, "field '%s': unsupported union", name);
    } else {
        return ld_fail(ld, node, where, "field '%s': unsupported Avro type", name);
    }
    if (!(expr->ve_field = strdup(name)))
        return RM_ENOMEM;
    expr->ve_field_index = index;
    expr->ve_src = src;
    return 0;
}

static bool src_fits(view_src_type_t src, view_type_t type)
{
    switch (type) {
    case VIEW_T_STRING:
        return src == VIEW_SRC_STRING || src == VIEW_SRC_ENUM || src == VIEW_SRC_OPT_STRING;
    case VIEW_T_LONG:
    case VIEW_T_TIMESTAMP:
        return src == VIEW_SRC_LONG || src == VIEW_SRC_INT || src == VIEW_SRC_OPT_LONG;
    case VIEW_T_BOOL: return src == VIEW_SRC_BOOL;
    }
    return false;
}

/* An expression: "field", {const: v} or {count: field}, checked against the target type. */
static int ld_expr(view_ld_t *ld, const yml_node_t *node, const char *where,
                   const view_rule_t *rule, view_type_t target, view_expr_t *expr)
{
    if (yml_kind(node) == YML_SCALAR) {
        expr->ve_kind = VIEW_EXPR_FIELD;
        if (ld_event_field(ld, node, where, rule, yml_scalar(node), expr))
            return RM_ECONFIG;
        if (!src_fits(expr->ve_src, target))
            return ld_fail(ld, node, where, "field '%s' has the wrong type for this target",
                           expr->ve_field);
        return 0;
    }
    static const char *const allowed[] = {"const", "count", NULL};
    if (ld_keys(ld, node, where, allowed) || yml_count(node) != 1)
        return ld_fail(ld, node, where, "expected a field name, {const: V} or {count: F}");
    const yml_node_t *c = yml_map_get(node, "const");
    if (c) {
        const char *s = yml_scalar(c);
        if (!s)
            return ld_fail(ld, c, where, "const must be a scalar");
        expr->ve_kind = VIEW_EXPR_CONST;
        if (target == VIEW_T_STRING) {
            expr->ve_const_str = strdup(s);
            return expr->ve_const_str ? 0 : RM_ENOMEM;
        }
        expr->ve_const_is_int = true;
        if (parse_i64(s, &expr->ve_const_int))
            return ld_fail(ld, c, where, "const '%s' is not a number", s);
        return 0;
    }
    const yml_node_t *cnt = yml_map_get(node, "count");
    expr->ve_kind = VIEW_EXPR_COUNT;
    if (ld_event_field(ld, cnt, where, rule, yml_scalar(cnt) ? yml_scalar(cnt) : "", expr))
        return RM_ECONFIG;
    if (expr->ve_src != VIEW_SRC_ARRAY)
        return ld_fail(ld, cnt, where, "count needs an array field");
    if (target != VIEW_T_LONG)
        return ld_fail(ld, cnt, where, "count yields a long");
    return 0;
}

static int ld_section_ref(view_ld_t *ld, const yml_node_t *op, const char *where,
                          view_section_kind_t kind, int *ret)
{
    const yml_node_t *sec = yml_map_get(op, "section");
    int index = yml_scalar(sec) ? view_section_index(ld->vl_view, yml_scalar(sec)) : -1;
    if (index < 0)
        return ld_fail(ld, sec ? sec : op, where, "section: unknown section");
    if (ld->vl_view->v_sections[index].vs_kind != kind)
        return ld_fail(ld, sec, where, "section %s has the wrong kind for this operation",
                       yml_scalar(sec));
    if (ld->vl_view->v_sections[index].vs_live)
        return ld_fail(ld, sec, where, "section %s is live (fetched at request time): no rule "
                                       "may write it", yml_scalar(sec));
    *ret = index;
    return 0;
}

static int ld_assigns(view_ld_t *ld, const yml_node_t *fields, const char *where,
                      const view_rule_t *rule, view_op_t *op)
{
    const view_section_t *section = &ld->vl_view->v_sections[op->vo_section];
    if (yml_kind(fields) != YML_MAP || yml_count(fields) == 0)
        return ld_fail(ld, fields, where, "fields: expected a non-empty mapping");
    op->vo_assign_count = yml_count(fields);
    op->vo_assigns = calloc(op->vo_assign_count, sizeof(*op->vo_assigns));
    if (!op->vo_assigns)
        return RM_ENOMEM;
    for (size_t i = 0; i < op->vo_assign_count; i++) {
        const char *name = yml_scalar(yml_map_key_at(fields, i));
        view_assign_t *as = &op->vo_assigns[i];
        as->va_field = -1;
        for (size_t f = 0; name && f < section->vs_field_count; f++)
            if (strcmp(name, section->vs_fields[f].vf_name) == 0)
                as->va_field = (int)f;
        if (as->va_field < 0)
            return ld_fail(ld, yml_map_key_at(fields, i), where, "section %s has no field '%s'",
                           section->vs_name, name ? name : "?");
        if (ld_expr(ld, yml_map_value_at(fields, i), where, rule,
                    section->vs_fields[as->va_field].vf_type, &as->va_value))
            return RM_ECONFIG;
    }
    return 0;
}

static int ld_op(view_ld_t *ld, const yml_node_t *node, const char *where, view_rule_t *rule,
                 view_op_t *op)
{
    static const char *const kinds[] = {"set",  "upsert", "update", "delete",    "incr",
                                        "decr", "erase",  "link",   "contribute"};
    op->vo_line = yml_line(node);
    op->vo_section = -1;
    op->vo_link = -1;
    if (yml_kind(node) != YML_MAP || yml_count(node) != 1)
        return ld_fail(ld, node, where, "expected one operation, e.g. {set: {...}}");
    const char *k = yml_scalar(yml_map_key_at(node, 0));
    const yml_node_t *body = yml_map_value_at(node, 0);
    int kind = -1;
    for (int i = 0; k && i < (int)(sizeof(kinds) / sizeof(kinds[0])); i++)
        if (strcmp(k, kinds[i]) == 0)
            kind = i;
    if (kind < 0)
        return ld_fail(ld, node, where, "unknown operation '%s'", k ? k : "?");
    op->vo_kind = (view_op_kind_t)kind;
    char owhere[240];
    snprintf(owhere, sizeof(owhere), "%s.%s", where, k);
    switch (op->vo_kind) {
    case VIEW_OP_SET: {
        static const char *const allowed[] = {"section", "fields", NULL};
        if (ld_keys(ld, body, owhere, allowed) ||
            ld_section_ref(ld, body, owhere, VIEW_SINGLE, &op->vo_section))
            return RM_ECONFIG;
        return ld_assigns(ld, yml_map_get(body, "fields"), owhere, rule, op);
    }
    case VIEW_OP_UPSERT:
    case VIEW_OP_UPDATE:
    case VIEW_OP_DELETE: {
        static const char *const allowed[] = {"section", "item", "fields", NULL};
        if (ld_keys(ld, body, owhere, allowed) ||
            ld_section_ref(ld, body, owhere, VIEW_LIST, &op->vo_section))
            return RM_ECONFIG;
        const yml_node_t *item = yml_map_get(body, "item");
        if (!item)
            return ld_fail(ld, body, owhere, "item: missing (the field holding the item id)");
        if (ld_expr(ld, item, owhere, rule, VIEW_T_STRING, &op->vo_item))
            return RM_ECONFIG;
        if (op->vo_kind == VIEW_OP_DELETE)
            return yml_map_get(body, "fields")
                       ? ld_fail(ld, body, owhere, "delete takes no fields")
                       : 0;
        return ld_assigns(ld, yml_map_get(body, "fields"), owhere, rule, op);
    }
    case VIEW_OP_INCR:
    case VIEW_OP_DECR:
    case VIEW_OP_CONTRIBUTE: {
        static const char *const allowed[] = {"section", "field", "by", NULL};
        if (ld_keys(ld, body, owhere, allowed) ||
            ld_section_ref(ld, body, owhere, VIEW_COUNTERS, &op->vo_section))
            return RM_ECONFIG;
        const view_section_t *section = &ld->vl_view->v_sections[op->vo_section];
        const yml_node_t *field = yml_map_get(body, "field");
        op->vo_counter_field = -1;
        for (size_t f = 0; yml_scalar(field) && f < section->vs_field_count; f++)
            if (strcmp(yml_scalar(field), section->vs_fields[f].vf_name) == 0)
                op->vo_counter_field = (int)f;
        if (op->vo_counter_field < 0)
            return ld_fail(ld, field ? field : body, owhere, "field: unknown counter");
        const yml_node_t *by = yml_map_get(body, "by");
        if (!by)
            return ld_fail(ld, body, owhere, "by: missing");
        return ld_expr(ld, by, owhere, rule, VIEW_T_LONG, &op->vo_by);
    }
    case VIEW_OP_ERASE:
        if (yml_kind(body) != YML_MAP || yml_count(body) != 0)
            return ld_fail(ld, body, owhere, "erase takes no arguments: use erase: {}");
        return 0;
    case VIEW_OP_LINK: {
        static const char *const allowed[] = {"name", "id", NULL};
        if (ld_keys(ld, body, owhere, allowed))
            return RM_ECONFIG;
        const yml_node_t *name = yml_map_get(body, "name");
        for (size_t l = 0; yml_scalar(name) && l < ld->vl_view->v_link_count; l++)
            if (strcmp(yml_scalar(name), ld->vl_view->v_links[l]) == 0)
                op->vo_link = (int)l;
        if (op->vo_link < 0)
            return ld_fail(ld, name ? name : body, owhere, "name: unknown link");
        const yml_node_t *id = yml_map_get(body, "id");
        if (!id)
            return ld_fail(ld, body, owhere, "id: missing");
        return ld_expr(ld, id, owhere, rule, VIEW_T_STRING, &op->vo_link_id);
    }
    }
    return 0;
}

static int ld_meta_field(view_ld_t *ld, const yml_node_t *node, const char *where,
                         const view_rule_t *rule, const char *name, bool is_string, int *ret)
{
    view_expr_t expr = {0};
    int rc = ld_event_field(ld, node, where, rule, name, &expr);
    free(expr.ve_field);
    if (rc)
        return rc;
    bool ok = is_string ? expr.ve_src == VIEW_SRC_STRING : expr.ve_src == VIEW_SRC_LONG;
    if (!ok)
        return ld_fail(ld, node, where, "event %s: field '%s' must be a %s", rule->vr_event,
                       name, is_string ? "string" : "long");
    *ret = expr.ve_field_index;
    return 0;
}

static int ld_rule(view_ld_t *ld, const yml_node_t *node, size_t index, view_rule_t *rule)
{
    char where[64];
    snprintf(where, sizeof(where), "rules[%zu]", index);
    static const char *const allowed[] = {"event", "entity", "key", "via", "ops", NULL};
    rule->vr_line = yml_line(node);
    rule->vr_via_link = -1;
    if (ld_keys(ld, node, where, allowed))
        return RM_ECONFIG;
    const yml_node_t *event = yml_map_get(node, "event");
    if (!yml_scalar(event))
        return ld_fail(ld, event ? event : node, where, "event: missing record full name");
    if (!(rule->vr_event = strdup(yml_scalar(event))))
        return RM_ENOMEM;
    rule->vr_reader = catalog_latest(ld->vl_catalog, rule->vr_event);
    if (!rule->vr_reader)
        return ld_fail(ld, event, where, "event %s is not in the schema catalog",
                       rule->vr_event);
    for (size_t r = 0; r < index; r++)
        if (strcmp(ld->vl_view->v_rules[r].vr_event, rule->vr_event) == 0)
            return ld_fail(ld, event, where, "a rule for %s already exists", rule->vr_event);
    if (ld_meta_field(ld, node, where, rule, "event_id", true, &rule->vr_event_id_index) ||
        ld_meta_field(ld, node, where, rule, "occurred_at", false, &rule->vr_occurred_at_index) ||
        ld_meta_field(ld, node, where, rule, "version", false, &rule->vr_version_index))
        return RM_ECONFIG;

    const yml_node_t *entity = yml_map_get(node, "entity");
    static const char *const entity_keys[] = {"type", "id", NULL};
    if (!entity)
        return ld_fail(ld, node, where, "entity: missing (the aggregate whose version guards it)");
    if (ld_keys(ld, entity, where, entity_keys) ||
        ld_name(ld, yml_map_get(entity, "type"), where, &rule->vr_entity_type) ||
        ld_expr(ld, yml_map_get(entity, "id"), where, rule, VIEW_T_STRING, &rule->vr_entity_id))
        return RM_ECONFIG;

    const yml_node_t *key = yml_map_get(node, "key");
    const yml_node_t *via = yml_map_get(node, "via");
    if (!key == !via)
        return ld_fail(ld, node, where, "exactly one of key and via is required");
    if (key) {
        if (ld_expr(ld, key, where, rule, VIEW_T_STRING, &rule->vr_key))
            return RM_ECONFIG;
    } else {
        static const char *const via_keys[] = {"link", "id", NULL};
        if (ld_keys(ld, via, where, via_keys))
            return RM_ECONFIG;
        const yml_node_t *link = yml_map_get(via, "link");
        for (size_t l = 0; yml_scalar(link) && l < ld->vl_view->v_link_count; l++)
            if (strcmp(yml_scalar(link), ld->vl_view->v_links[l]) == 0)
                rule->vr_via_link = (int)l;
        if (rule->vr_via_link < 0)
            return ld_fail(ld, link ? link : via, where, "via.link: unknown link");
        if (ld_expr(ld, yml_map_get(via, "id"), where, rule, VIEW_T_STRING, &rule->vr_via_id))
            return RM_ECONFIG;
    }
    const yml_node_t *ops = yml_map_get(node, "ops");
    if (yml_kind(ops) != YML_SEQ || yml_count(ops) == 0)
        return ld_fail(ld, ops ? ops : node, where, "ops: expected a non-empty list");
    rule->vr_op_count = yml_count(ops);
    rule->vr_ops = calloc(rule->vr_op_count, sizeof(*rule->vr_ops));
    if (!rule->vr_ops)
        return RM_ENOMEM;
    for (size_t i = 0; i < rule->vr_op_count; i++) {
        char owhere[96];
        snprintf(owhere, sizeof(owhere), "%s.ops[%zu]", where, i);
        if (ld_op(ld, yml_seq_at(ops, i), owhere, rule, &rule->vr_ops[i]))
            return RM_ECONFIG;
        if (rule->vr_ops[i].vo_kind == VIEW_OP_LINK && rule->vr_via_link >= 0)
            return ld_fail(ld, yml_seq_at(ops, i), owhere,
                           "a link can only be learned by a rule with a direct key");
    }
    return 0;
}

static int ld_names(view_ld_t *ld, const yml_node_t *node, const char *where, bool is_map,
                    char ***ret, size_t *ret_count)
{
    if (yml_kind(node) != (is_map ? YML_MAP : YML_SEQ))
        return ld_fail(ld, node, where, is_map ? "expected a mapping" : "expected a list");
    *ret_count = yml_count(node);
    *ret = calloc(*ret_count ? *ret_count : 1, sizeof(char *));
    if (!*ret)
        return RM_ENOMEM;
    for (size_t i = 0; i < *ret_count; i++) {
        const yml_node_t *n = is_map ? yml_map_key_at(node, i) : yml_seq_at(node, i);
        if (ld_name(ld, n, where, &(*ret)[i]))
            return RM_ECONFIG;
    }
    return 0;
}

static int ld_index(view_ld_t *ld, const yml_node_t *key, const yml_node_t *val,
                    view_index_t *index)
{
    char where[120];
    snprintf(where, sizeof(where), "indexes.%s", yml_scalar(key) ? yml_scalar(key) : "?");
    static const char *const allowed[] = {"section", "field", "link", "normalize", NULL};
    index->vi_section = index->vi_field = index->vi_link = -1;
    if (ld_name(ld, key, "indexes", &index->vi_name) || ld_keys(ld, val, where, allowed))
        return RM_ECONFIG;
    const yml_node_t *norm = yml_map_get(val, "normalize");
    const char *ns = norm ? yml_scalar(norm) : "none";
    if (ns && strcmp(ns, "none") == 0)
        index->vi_norm = VIEW_NORM_NONE;
    else if (ns && strcmp(ns, "lowercase") == 0)
        index->vi_norm = VIEW_NORM_LOWERCASE;
    else if (ns && strcmp(ns, "e164") == 0)
        index->vi_norm = VIEW_NORM_E164;
    else
        return ld_fail(ld, norm, where, "normalize must be none, lowercase or e164");
    const yml_node_t *link = yml_map_get(val, "link");
    if (link) {
        for (size_t l = 0; yml_scalar(link) && l < ld->vl_view->v_link_count; l++)
            if (strcmp(yml_scalar(link), ld->vl_view->v_links[l]) == 0)
                index->vi_link = (int)l;
        if (index->vi_link < 0)
            return ld_fail(ld, link, where, "link: unknown link");
        if (yml_map_get(val, "section") || yml_map_get(val, "field"))
            return ld_fail(ld, val, where, "an index is over a link or over a field, not both");
        return 0;
    }
    const yml_node_t *sec = yml_map_get(val, "section");
    const yml_node_t *field = yml_map_get(val, "field");
    index->vi_section = yml_scalar(sec) ? view_section_index(ld->vl_view, yml_scalar(sec)) : -1;
    if (index->vi_section < 0)
        return ld_fail(ld, sec ? sec : val, where, "section: unknown section");
    const view_section_t *section = &ld->vl_view->v_sections[index->vi_section];
    if (section->vs_kind != VIEW_SINGLE)
        return ld_fail(ld, sec, where, "field indexes are supported on single sections only");
    for (size_t f = 0; yml_scalar(field) && f < section->vs_field_count; f++)
        if (strcmp(yml_scalar(field), section->vs_fields[f].vf_name) == 0)
            index->vi_field = (int)f;
    if (index->vi_field < 0)
        return ld_fail(ld, field ? field : val, where, "field: not a field of %s", section->vs_name);
    if (section->vs_fields[index->vi_field].vf_type != VIEW_T_STRING)
        return ld_fail(ld, field, where, "field: only string fields can be indexed");
    size_t same_section = 0;
    for (size_t i = 0; ld->vl_view->v_indexes + i != index; i++)
        same_section += ld->vl_view->v_indexes[i].vi_section == index->vi_section;
    if (same_section >= VIEW_MAX_FIELD_INDEXES)
        return ld_fail(ld, sec, where, "at most %d field indexes per section", VIEW_MAX_FIELD_INDEXES);
    return 0;
}

static int ld_indexes(view_ld_t *ld, const yml_node_t *node)
{
    if (yml_kind(node) != YML_MAP)
        return ld_fail(ld, node, "indexes", "expected a mapping");
    ld->vl_view->v_indexes = calloc(yml_count(node) ? yml_count(node) : 1, sizeof(view_index_t));
    if (!ld->vl_view->v_indexes)
        return RM_ENOMEM;
    for (size_t i = 0; i < yml_count(node); i++) {
        ld->vl_view->v_index_count = i + 1;
        if (ld_index(ld, yml_map_key_at(node, i), yml_map_value_at(node, i),
                     &ld->vl_view->v_indexes[i]))
            return RM_ECONFIG;
    }
    return 0;
}

/* The counter shares of one entity type are kept in its version record (engine.c), so
 * the counters its rules contribute to are bounded, and one rule contributes to a counter
 * at most once (two shares of one entity in one counter would overwrite each other). */
static int ld_check_shares(view_ld_t *ld, const yml_node_t *node, size_t index)
{
    const view_rule_t *rule = &ld->vl_view->v_rules[index];
    int seen[VIEW_MAX_CONTRIBUTIONS][2];
    size_t count = 0;
    for (size_t r = 0; r <= index; r++) {
        const view_rule_t *other = &ld->vl_view->v_rules[r];
        if (strcmp(other->vr_entity_type, rule->vr_entity_type) != 0)
            continue;
        for (size_t o = 0; o < other->vr_op_count; o++) {
            const view_op_t *op = &other->vr_ops[o];
            if (op->vo_kind != VIEW_OP_CONTRIBUTE)
                continue;
            bool known = false;
            for (size_t p = 0; p < o && r == index; p++)
                if (other->vr_ops[p].vo_kind == VIEW_OP_CONTRIBUTE &&
                    other->vr_ops[p].vo_section == op->vo_section &&
                    other->vr_ops[p].vo_counter_field == op->vo_counter_field)
                    return ld_fail(ld, node, "rules", "rules[%zu] contributes twice to one counter",
                                   index);
            for (size_t s = 0; s < count; s++)
                known |= seen[s][0] == op->vo_section && seen[s][1] == op->vo_counter_field;
            if (known)
                continue;
            if (count == VIEW_MAX_CONTRIBUTIONS)
                return ld_fail(ld, node, "rules", "entity type %s contributes to more than %d "
                               "counters", rule->vr_entity_type, VIEW_MAX_CONTRIBUTIONS);
            seen[count][0] = op->vo_section;
            seen[count][1] = op->vo_counter_field;
            count++;
        }
    }
    return 0;
}

/* A dotted member path of a source record: names of [A-Za-z0-9_-] joined by '.'. */
static int ld_src_path(view_ld_t *ld, const yml_node_t *node, const char *where, char **ret)
{
    const char *s = yml_scalar(node);
    if (!s || !*s || strlen(s) > 2 * VIEW_NAME_MAX_BYTES)
        return ld_fail(ld, node, where, "expected a member path such as 'total.cents'");
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-' || (*p == '.' && p != s && p[1] && p[1] != '.')))
            return ld_fail(ld, node, where, "'%s' is not a member path", s);
    *ret = strdup(s);
    return *ret ? 0 : RM_ENOMEM;
}

static int ld_field_of(view_ld_t *ld, const yml_node_t *node, const char *where,
                       const view_section_t *section, int *ret)
{
    const char *name = yml_scalar(node);
    for (size_t f = 0; name && f < section->vs_field_count; f++)
        if (strcmp(name, section->vs_fields[f].vf_name) == 0) {
            *ret = (int)f;
            return 0;
        }
    return ld_fail(ld, node, where, "'%s' is not a field of %s", name ? name : "?",
                   section->vs_name);
}

static int ld_source(view_ld_t *ld, const yml_node_t *key, const yml_node_t *val,
                     view_source_t *src)
{
    char where[120];
    snprintf(where, sizeof(where), "sources.%s", yml_scalar(key) ? yml_scalar(key) : "?");
    static const char *const allowed[] = {"service", "path", "items", "next_page", "page_param",
                                          "item", "updated_at", "fields", NULL};
    src->vsrc_line = yml_line(key);
    src->vsrc_item_field = -1;
    if (ld_keys(ld, val, where, allowed))
        return RM_ECONFIG;
    src->vsrc_section = yml_scalar(key) ? view_section_index(ld->vl_view, yml_scalar(key)) : -1;
    if (src->vsrc_section < 0)
        return ld_fail(ld, key, where, "not a section of this view");
    for (view_source_t *s = ld->vl_view->v_sources; s != src; s++)
        if (s->vsrc_section == src->vsrc_section)
            return ld_fail(ld, key, where, "section has two sources");
    const view_section_t *section = &ld->vl_view->v_sections[src->vsrc_section];
    if (section->vs_kind == VIEW_COUNTERS)
        return ld_fail(ld, key, where, "counters are derived by the view and have no source");
    const yml_node_t *path = yml_map_get(val, "path");
    const char *ps = yml_scalar(path);
    if (ld_name(ld, yml_map_get(val, "service"), where, &src->vsrc_service))
        return RM_ECONFIG;
    if (!ps || ps[0] != '/' || !strstr(ps, "{key}") || strchr(ps, ' '))
        return ld_fail(ld, path ? path : val, where,
                       "path: expected an absolute path template containing {key}");
    if (!(src->vsrc_path = strdup(ps)))
        return RM_ENOMEM;
    const yml_node_t *n;
    bool list = section->vs_kind == VIEW_LIST;
    if (list) {
        if (ld_src_path(ld, yml_map_get(val, "items"), where, &src->vsrc_items) ||
            ld_field_of(ld, yml_map_get(val, "item"), where, section, &src->vsrc_item_field))
            return RM_ECONFIG;
        if ((n = yml_map_get(val, "next_page")) && ld_src_path(ld, n, where, &src->vsrc_next))
            return RM_ECONFIG;
        if ((n = yml_map_get(val, "page_param"))) {
            if (ld_name(ld, n, where, &src->vsrc_page_param))
                return RM_ECONFIG;
        } else if (!(src->vsrc_page_param = strdup("page"))) {
            return RM_ENOMEM;
        }
    } else if (yml_map_get(val, "items") || yml_map_get(val, "item") ||
               yml_map_get(val, "next_page")) {
        return ld_fail(ld, val, where, "items, item and next_page are for list sections");
    }
    if ((n = yml_map_get(val, "updated_at")) && ld_src_path(ld, n, where, &src->vsrc_updated_at))
        return RM_ECONFIG;
    const yml_node_t *fields = yml_map_get(val, "fields");
    if (yml_kind(fields) != YML_MAP || yml_count(fields) == 0)
        return ld_fail(ld, fields ? fields : val, where, "fields: expected a mapping of "
                                                         "view field: source member");
    src->vsrc_fields = calloc(yml_count(fields), sizeof(*src->vsrc_fields));
    if (!src->vsrc_fields)
        return RM_ENOMEM;
    bool has_item = !list;
    for (size_t i = 0; i < yml_count(fields); i++) {
        view_src_field_t *f = &src->vsrc_fields[i];
        src->vsrc_field_count = i + 1;
        if (ld_field_of(ld, yml_map_key_at(fields, i), where, section, &f->vsf_field) ||
            ld_src_path(ld, yml_map_value_at(fields, i), where, &f->vsf_path))
            return RM_ECONFIG;
        has_item |= f->vsf_field == src->vsrc_item_field;
    }
    if (!has_item)
        return ld_fail(ld, fields, where, "fields: must map the item field %s",
                       section->vs_fields[src->vsrc_item_field].vf_name);
    return 0;
}

static int ld_sources(view_ld_t *ld, const yml_node_t *node)
{
    if (yml_kind(node) != YML_MAP)
        return ld_fail(ld, node, "sources", "expected a mapping of section: source");
    ld->vl_view->v_sources = calloc(yml_count(node) ? yml_count(node) : 1, sizeof(view_source_t));
    if (!ld->vl_view->v_sources)
        return RM_ENOMEM;
    for (size_t i = 0; i < yml_count(node); i++) {
        ld->vl_view->v_source_count = i + 1;
        if (ld_source(ld, yml_map_key_at(node, i), yml_map_value_at(node, i),
                      &ld->vl_view->v_sources[i]))
            return RM_ECONFIG;
    }
    return 0;
}

/* One `live:` entry: a section the query API fetches at request time (view.h). Checked
 * against what else the definition says about that section, because a live section has
 * no fragments: nothing may index it, reconcile it or write it (ld_section_ref). */
static int ld_live(view_ld_t *ld, const yml_node_t *key, const yml_node_t *val, view_live_t *live)
{
    char where[120];
    snprintf(where, sizeof(where), "live.%s", yml_scalar(key) ? yml_scalar(key) : "?");
    static const char *const allowed[] = {"service", "path", "deadline_ms", "items", "fields",
                                          NULL};
    view_t *view = ld->vl_view;
    live->vlv_line = yml_line(key);
    if (ld_keys(ld, val, where, allowed))
        return RM_ECONFIG;
    live->vlv_section = yml_scalar(key) ? view_section_index(view, yml_scalar(key)) : -1;
    if (live->vlv_section < 0)
        return ld_fail(ld, key, where, "not a section of this view (declare its fields under "
                                       "sections:)");
    view_section_t *section = &view->v_sections[live->vlv_section];
    if (section->vs_live)
        return ld_fail(ld, key, where, "section is declared live twice");
    if (section->vs_kind == VIEW_COUNTERS)
        return ld_fail(ld, key, where, "counters are derived by the view and cannot be live");
    if (view_source_for(view, live->vlv_section))
        return ld_fail(ld, key, where, "a live section has no stored copy to reconcile: remove "
                                       "it from sources");
    for (size_t i = 0; i < view->v_index_count; i++)
        if (view->v_indexes[i].vi_section == live->vlv_section)
            return ld_fail(ld, key, where, "a live section is not stored and cannot be "
                                           "indexed (index %s)", view->v_indexes[i].vi_name);
    section->vs_live = true;
    const yml_node_t *path = yml_map_get(val, "path");
    const char *ps = yml_scalar(path);
    if (ld_name(ld, yml_map_get(val, "service"), where, &live->vlv_service))
        return RM_ECONFIG;
    if (!ps || ps[0] != '/' || !strstr(ps, "{key}") || strchr(ps, ' '))
        return ld_fail(ld, path ? path : val, where,
                       "path: expected an absolute path template containing {key}");
    if (!(live->vlv_path = strdup(ps)))
        return RM_ENOMEM;
    const yml_node_t *deadline = yml_map_get(val, "deadline_ms");
    if (!deadline)
        return ld_fail(ld, val, where, "deadline_ms: missing (a live section needs a deadline)");
    if (parse_i64(yml_scalar(deadline), &live->vlv_deadline_ms) || live->vlv_deadline_ms < 1 ||
        live->vlv_deadline_ms > VIEW_LIVE_DEADLINE_MAX_MS)
        return ld_fail(ld, deadline, where, "deadline_ms: expected an integer from 1 to %d",
                       VIEW_LIVE_DEADLINE_MAX_MS);
    const yml_node_t *items = yml_map_get(val, "items");
    if (items && section->vs_kind != VIEW_LIST)
        return ld_fail(ld, items, where, "items is for list sections");
    if (items && ld_src_path(ld, items, where, &live->vlv_items))
        return RM_ECONFIG;
    const yml_node_t *fields = yml_map_get(val, "fields");
    if (yml_kind(fields) != YML_MAP || yml_count(fields) == 0)
        return ld_fail(ld, fields ? fields : val, where, "fields: expected a mapping of "
                                                         "view field: source member");
    live->vlv_fields = calloc(yml_count(fields), sizeof(*live->vlv_fields));
    if (!live->vlv_fields)
        return RM_ENOMEM;
    uint64_t mapped = 0; /* bit f: section field f has a member (FRAG_MAX_SLOTS <= 64) */
    for (size_t i = 0; i < yml_count(fields); i++) {
        view_src_field_t *f = &live->vlv_fields[i];
        live->vlv_field_count = i + 1;
        if (ld_field_of(ld, yml_map_key_at(fields, i), where, section, &f->vsf_field) ||
            ld_src_path(ld, yml_map_value_at(fields, i), where, &f->vsf_path))
            return RM_ECONFIG;
        mapped |= UINT64_C(1) << f->vsf_field;
    }
    /* Every field is mapped: the answer's shape is then the declared one, field for field,
     * whatever the service sends (a member it lacks reads as the default or null). */
    for (size_t f = 0; f < section->vs_field_count; f++)
        if (!(mapped & (UINT64_C(1) << f)))
            return ld_fail(ld, fields, where, "fields: %s is not mapped to a member",
                           section->vs_fields[f].vf_name);
    return 0;
}

static int ld_lives(view_ld_t *ld, const yml_node_t *node)
{
    if (yml_kind(node) != YML_MAP)
        return ld_fail(ld, node, "live", "expected a mapping of section: service");
    ld->vl_view->v_lives = calloc(yml_count(node) ? yml_count(node) : 1, sizeof(view_live_t));
    if (!ld->vl_view->v_lives)
        return RM_ENOMEM;
    for (size_t i = 0; i < yml_count(node); i++) {
        ld->vl_view->v_live_count = i + 1;
        if (ld_live(ld, yml_map_key_at(node, i), yml_map_value_at(node, i),
                    &ld->vl_view->v_lives[i]))
            return RM_ECONFIG;
    }
    return 0;
}

/* `repairs: {topic: T}`: the topic reconcile publishes corrections to. The projector
 * consumes it like the others, so it is appended to v_topics. */
static int ld_repairs(view_ld_t *ld, const yml_node_t *node)
{
    static const char *const allowed[] = {"topic", NULL};
    view_t *view = ld->vl_view;
    if (ld_keys(ld, node, "repairs", allowed) ||
        ld_name(ld, yml_map_get(node, "topic"), "repairs.topic", &view->v_repair_topic))
        return RM_ECONFIG;
    if (view_topic_index(view, view->v_repair_topic) >= 0)
        return ld_fail(ld, node, "repairs.topic", "must not be one of the view's topics");
    char **grown = realloc(view->v_topics, (view->v_topic_count + 1) * sizeof(char *));
    if (!grown)
        return RM_ENOMEM;
    view->v_topics = grown;
    if (!(grown[view->v_topic_count] = strdup(view->v_repair_topic)))
        return RM_ENOMEM;
    view->v_topic_count++;
    return 0;
}

/* `tombstones: {topic: ignore | erase | {delete: {section: S, link: L}}}`. Parsed after
 * `repairs` so that every topic of the view is known. */
static int ld_tombstones(view_ld_t *ld, const yml_node_t *node)
{
    view_t *view = ld->vl_view;
    view->v_tombstones = calloc(view->v_topic_count, sizeof(view_tombstone_t));
    if (!view->v_tombstones)
        return RM_ENOMEM;
    if (!node)
        return 0;
    if (yml_kind(node) != YML_MAP)
        return ld_fail(ld, node, "tombstones", "expected a mapping of topic: rule");
    for (size_t i = 0; i < yml_count(node); i++) {
        const yml_node_t *key = yml_map_key_at(node, i), *val = yml_map_value_at(node, i);
        char where[120];
        snprintf(where, sizeof(where), "tombstones.%s", yml_scalar(key) ? yml_scalar(key) : "?");
        int t = yml_scalar(key) ? view_topic_index(view, yml_scalar(key)) : -1;
        if (t < 0)
            return ld_fail(ld, key, where, "not one of the view's topics");
        view_tombstone_t *tomb = &view->v_tombstones[t];
        const char *word = yml_scalar(val);
        if (word && strcmp(word, "ignore") == 0) {
            tomb->vt_kind = VIEW_TOMB_IGNORE;
            continue;
        }
        if (word && strcmp(word, "erase") == 0) {
            tomb->vt_kind = VIEW_TOMB_ERASE;
            continue;
        }
        static const char *const outer[] = {"delete", NULL}, *const inner[] = {"section", "link", NULL};
        const yml_node_t *del = yml_kind(val) == YML_MAP ? yml_map_get(val, "delete") : NULL;
        if (!del || ld_keys(ld, val, where, outer))
            return ld_fail(ld, val, where,
                           "expected ignore, erase or {delete: {section: S, link: L}}");
        if (ld_keys(ld, del, where, inner))
            return RM_ECONFIG;
        const yml_node_t *sec = yml_map_get(del, "section"), *link = yml_map_get(del, "link");
        tomb->vt_kind = VIEW_TOMB_DELETE;
        tomb->vt_section = yml_scalar(sec) ? view_section_index(view, yml_scalar(sec)) : -1;
        if (tomb->vt_section < 0 || view->v_sections[tomb->vt_section].vs_kind != VIEW_LIST)
            return ld_fail(ld, sec ? sec : del, where, "delete.section: expected a list section");
        tomb->vt_link = -1;
        for (size_t l = 0; yml_scalar(link) && l < view->v_link_count; l++)
            if (strcmp(yml_scalar(link), view->v_links[l]) == 0)
                tomb->vt_link = (int)l;
        if (tomb->vt_link < 0)
            return ld_fail(ld, link ? link : del, where, "delete.link: not a link of this view");
    }
    return 0;
}

static int ld_view(view_ld_t *ld, const yml_node_t *root)
{
    view_t *view = ld->vl_view;
    static const char *const allowed[] = {"view",    "key",     "topics",  "links",
                                          "sections", "rules",  "indexes", "sources",
                                          "repairs",  "tombstones", "live", NULL};
    if (ld_keys(ld, root, "(top level)", allowed))
        return RM_ECONFIG;
    const yml_node_t *n;
    if (ld_name(ld, yml_map_get(root, "view"), "view", &view->v_name) ||
        ld_name(ld, yml_map_get(root, "key"), "key", &view->v_key_field))
        return RM_ECONFIG;
    if (!(n = yml_map_get(root, "topics")) ||
        ld_names(ld, n, "topics", false, &view->v_topics, &view->v_topic_count))
        return ld_fail(ld, n ? n : root, "topics", "expected a non-empty list of topics");
    if (view->v_topic_count == 0)
        return ld_fail(ld, n, "topics", "expected a non-empty list of topics");
    if ((n = yml_map_get(root, "links")) &&
        ld_names(ld, n, "links", true, &view->v_links, &view->v_link_count))
        return RM_ECONFIG;
    n = yml_map_get(root, "sections");
    if (yml_kind(n) != YML_MAP || yml_count(n) == 0 || yml_count(n) > FRAG_MAX_SLOTS)
        return ld_fail(ld, n ? n : root, "sections", "expected 1..%d sections", FRAG_MAX_SLOTS);
    view->v_sections = calloc(yml_count(n), sizeof(*view->v_sections));
    if (!view->v_sections)
        return RM_ENOMEM;
    for (size_t i = 0; i < yml_count(n); i++) {
        view->v_section_count = i + 1;
        if (ld_section(ld, yml_map_key_at(n, i), yml_map_value_at(n, i), &view->v_sections[i]))
            return RM_ECONFIG;
    }
    if ((n = yml_map_get(root, "indexes")) && ld_indexes(ld, n))
        return RM_ECONFIG;
    if ((n = yml_map_get(root, "sources")) && ld_sources(ld, n))
        return RM_ECONFIG;
    if ((n = yml_map_get(root, "repairs")) && ld_repairs(ld, n))
        return RM_ECONFIG;
    if (view->v_topic_count > VIEW_MAX_TOPICS)
        return ld_fail(ld, yml_map_get(root, "topics"), "topics",
                       "at most %d topics, the repairs topic included", VIEW_MAX_TOPICS);
    if ((n = yml_map_get(root, "live")) && ld_lives(ld, n)) /* before the rules: they check it */
        return RM_ECONFIG;
    if (ld_tombstones(ld, yml_map_get(root, "tombstones")))
        return RM_ECONFIG;
    n = yml_map_get(root, "rules");
    if (yml_kind(n) != YML_SEQ || yml_count(n) == 0)
        return ld_fail(ld, n ? n : root, "rules", "expected a non-empty list");
    view->v_rules = calloc(yml_count(n), sizeof(*view->v_rules));
    if (!view->v_rules)
        return RM_ENOMEM;
    for (size_t i = 0; i < yml_count(n); i++) {
        view->v_rule_count = i + 1;
        if (ld_rule(ld, yml_seq_at(n, i), i, &view->v_rules[i]) ||
            ld_check_shares(ld, yml_seq_at(n, i), i))
            return RM_ECONFIG;
    }
    view_feeds_compute(view, ld->vl_catalog);
    return 0;
}

static char *read_file(const char *path, size_t *ret_len, char *errstr, size_t errlen)
{
    FILE *file = fopen(path, "rb");
    if (!file) {
        snprintf(errstr, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    char *data = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *grown = realloc(data, cap + 1);
            if (!grown) {
                free(data);
                fclose(file);
                snprintf(errstr, errlen, "%s: out of memory", path);
                return NULL;
            }
            data = grown;
        }
        size_t n = fread(data + len, 1, cap - len, file);
        len += n;
        if (n == 0)
            break;
    }
    fclose(file);
    data[len] = '\0';
    *ret_len = len;
    return data;
}

view_t *view_load(const char *path, const catalog_t *catalog, char *errstr, size_t errlen)
{
    size_t len;
    char *text = read_file(path, &len, errstr, errlen);
    if (!text)
        return NULL;
    yml_doc_t *doc = yml_load_string(path, text, len, errstr, errlen);
    view_t *view = calloc(1, sizeof(*view));
    if (!doc || !view || !(view->v_path = strdup(path))) {
        if (doc)
            snprintf(errstr, errlen, "%s: out of memory", path);
        free(text);
        yml_destroy(doc);
        view_destroy(view);
        return NULL;
    }
    uint64_t hash = 1469598103934665603ULL; /* FNV-1a 64 */
    for (size_t i = 0; i < len; i++)
        hash = (hash ^ (unsigned char)text[i]) * 1099511628211ULL;
    snprintf(view->v_hash, sizeof(view->v_hash), "%016llx", (unsigned long long)hash);
    free(text);

    view_ld_t ld = {view, catalog, path, errstr, errlen, false};
    int rc = yml_root(doc) ? ld_view(&ld, yml_root(doc))
                           : ld_fail(&ld, NULL, "(top level)", "empty document");
    if (rc && !ld.vl_failed)
        snprintf(errstr, errlen, "%s: %s", path, rm_strerror(rc));
    yml_destroy(doc);
    if (rc) {
        view_destroy(view);
        return NULL;
    }
    return view;
}

static void expr_free(view_expr_t *expr)
{
    free(expr->ve_field);
    free(expr->ve_const_str);
}

void view_destroy(view_t *view)
{
    if (!view)
        return;
    for (size_t i = 0; i < view->v_rule_count; i++) {
        view_rule_t *rule = &view->v_rules[i];
        for (size_t o = 0; o < rule->vr_op_count; o++) {
            view_op_t *op = &rule->vr_ops[o];
            for (size_t a = 0; a < op->vo_assign_count; a++)
                expr_free(&op->vo_assigns[a].va_value);
            free(op->vo_assigns);
            expr_free(&op->vo_item);
            expr_free(&op->vo_by);
            expr_free(&op->vo_link_id);
        }
        free(rule->vr_ops);
        free(rule->vr_event);
        free(rule->vr_entity_type);
        expr_free(&rule->vr_entity_id);
        expr_free(&rule->vr_key);
        expr_free(&rule->vr_via_id);
    }
    free(view->v_rules);
    for (size_t i = 0; i < view->v_index_count; i++)
        free(view->v_indexes[i].vi_name);
    free(view->v_indexes);
    for (size_t i = 0; i < view->v_source_count; i++) {
        view_source_t *src = &view->v_sources[i];
        for (size_t f = 0; f < src->vsrc_field_count; f++)
            free(src->vsrc_fields[f].vsf_path);
        free(src->vsrc_fields);
        free(src->vsrc_service);
        free(src->vsrc_path);
        free(src->vsrc_items);
        free(src->vsrc_next);
        free(src->vsrc_page_param);
        free(src->vsrc_updated_at);
    }
    free(view->v_sources);
    for (size_t i = 0; i < view->v_live_count; i++) {
        view_live_t *live = &view->v_lives[i];
        for (size_t f = 0; f < live->vlv_field_count; f++)
            free(live->vlv_fields[f].vsf_path);
        free(live->vlv_fields);
        free(live->vlv_service);
        free(live->vlv_path);
        free(live->vlv_items);
    }
    free(view->v_lives);
    free(view->v_repair_topic);
    free(view->v_tombstones);
    for (size_t i = 0; i < view->v_section_count; i++) {
        view_section_t *section = &view->v_sections[i];
        for (size_t f = 0; f < section->vs_field_count; f++) {
            free(section->vs_fields[f].vf_name);
            free(section->vs_fields[f].vf_default_str);
        }
        free(section->vs_fields);
        free(section->vs_name);
    }
    free(view->v_sections);
    for (size_t i = 0; i < view->v_topic_count; i++)
        free(view->v_topics[i]);
    free(view->v_topics);
    for (size_t i = 0; i < view->v_link_count; i++)
        free(view->v_links[i]);
    free(view->v_links);
    free(view->v_name);
    free(view->v_key_field);
    free(view->v_path);
    free(view);
}

const view_rule_t *view_rule_for(const view_t *view, const char *full_name)
{
    for (size_t i = 0; i < view->v_rule_count; i++)
        if (strcmp(view->v_rules[i].vr_event, full_name) == 0)
            return &view->v_rules[i];
    return NULL;
}

int view_section_index(const view_t *view, const char *name)
{
    for (size_t i = 0; i < view->v_section_count; i++)
        if (strcmp(view->v_sections[i].vs_name, name) == 0)
            return (int)i;
    return -1;
}

const view_source_t *view_source_for(const view_t *view, int section)
{
    for (size_t i = 0; i < view->v_source_count; i++)
        if (view->v_sources[i].vsrc_section == section)
            return &view->v_sources[i];
    return NULL;
}

const view_live_t *view_live_for(const view_t *view, int section)
{
    for (size_t i = 0; i < view->v_live_count; i++)
        if (view->v_lives[i].vlv_section == section)
            return &view->v_lives[i];
    return NULL;
}

const view_index_t *view_index_named(const view_t *view, const char *name)
{
    for (size_t i = 0; i < view->v_index_count; i++)
        if (strcmp(view->v_indexes[i].vi_name, name) == 0)
            return &view->v_indexes[i];
    return NULL;
}

int view_topic_index(const view_t *view, const char *topic)
{
    for (size_t i = 0; i < view->v_topic_count; i++)
        if (strcmp(view->v_topics[i], topic) == 0)
            return (int)i;
    return -1;
}
