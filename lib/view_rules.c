/* view_rules: the sections and rules of a view definition — fields and their types,
 * expressions over a rule's event, operations and the counter shares they contribute —
 * checked against the catalog's reader schemas (view.c, the loader). */
#include "view_int.h"
#include "rm_err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int ld_field_type(view_ld_t *ld, const yml_node_t *node, const char *where, view_type_t *ret)
{
    const char *s = yml_scalar(node);
    static const char *const names[] = {"string", "long", "bool", "timestamp"};
    for (int i = 0; s && i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            *ret = (view_type_t)i;
            return 0;
        }
    }
    return view_ld_fail(ld, node, where, "type must be string, long, bool or timestamp");
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
                return view_ld_fail(ld, node, where,
                                    "mask applies to string fields with pii: true");
            field->vf_mask = (view_mask_t)i;
            return 0;
        }
    return view_ld_fail(ld, node, where, "mask must be redact, last4, email or initials");
}

static int ld_field(view_ld_t *ld, const yml_node_t *key, const yml_node_t *val, const char *where,
                    view_field_t *field)
{
    if (view_ld_name(ld, key, where, &field->vf_name))
        return RM_ECONFIG;
    if (yml_kind(val) == YML_SCALAR)
        return ld_field_type(ld, val, where, &field->vf_type);
    static const char *const allowed[] = {"type", "default", "pii", "mask", NULL};
    if (view_ld_keys(ld, val, where, allowed) ||
        ld_field_type(ld, yml_map_get(val, "type"), where, &field->vf_type))
        return RM_ECONFIG;
    const yml_node_t *dflt = yml_map_get(val, "default");
    if (dflt) {
        const char *s = yml_scalar(dflt);
        if (!s)
            return view_ld_fail(ld, dflt, where, "default must be a scalar");
        field->vf_has_default = true;
        if (field->vf_type == VIEW_T_STRING) {
            if (!(field->vf_default_str = strdup(s)))
                return RM_ENOMEM;
        } else if (view_parse_i64(s, &field->vf_default_int)) {
            return view_ld_fail(ld, dflt, where, "default '%s' is not a number", s);
        }
    }
    const yml_node_t *pii = yml_map_get(val, "pii");
    if (pii) {
        const char *s = yml_scalar(pii);
        if (!s || (strcmp(s, "true") && strcmp(s, "false")))
            return view_ld_fail(ld, pii, where, "pii must be true or false");
        field->vf_pii = s[0] == 't';
    }
    return ld_field_mask(ld, yml_map_get(val, "mask"), where, field);
}

int view_ld_section(view_ld_t *ld, const yml_node_t *key, const yml_node_t *val,
                    view_section_t *section)
{
    char where[160];
    snprintf(where, sizeof(where), "sections.%s", yml_scalar(key) ? yml_scalar(key) : "?");
    static const char *const allowed[] = {"kind", "fields", "max_items", "sort_by", NULL};
    if (view_ld_name(ld, key, "sections", &section->vs_name) ||
        view_ld_keys(ld, val, where, allowed))
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
        return view_ld_fail(ld, kind ? kind : val, where, "kind must be single, list or counters");
    const yml_node_t *fields = yml_map_get(val, "fields");
    if (yml_kind(fields) != YML_MAP || yml_count(fields) == 0)
        return view_ld_fail(ld, fields ? fields : val, where,
                            "fields: expected a non-empty mapping");
    if (yml_count(fields) > VIEW_MAX_FIELDS)
        return view_ld_fail(ld, fields, where, "more than %d fields", VIEW_MAX_FIELDS);
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
            return view_ld_fail(ld, yml_map_value_at(fields, i), fwhere, "counters must be long");
    }
    section->vs_sort_field = -1;
    const yml_node_t *sort = yml_map_get(val, "sort_by");
    const yml_node_t *max = yml_map_get(val, "max_items");
    if ((sort || max) && section->vs_kind != VIEW_LIST)
        return view_ld_fail(ld, sort ? sort : max, where, "sort_by/max_items apply to lists only");
    if (sort) {
        for (size_t i = 0; i < section->vs_field_count; i++)
            if (yml_scalar(sort) && strcmp(yml_scalar(sort), section->vs_fields[i].vf_name) == 0)
                section->vs_sort_field = (int)i;
        if (section->vs_sort_field < 0)
            return view_ld_fail(ld, sort, where, "sort_by: no field '%s'",
                                yml_scalar(sort) ? yml_scalar(sort) : "?");
        if (section->vs_fields[section->vs_sort_field].vf_type == VIEW_T_STRING)
            return view_ld_fail(ld, sort, where, "sort_by: must be a long or timestamp field");
    }
    if (max) {
        int64_t n;
        if (view_parse_i64(yml_scalar(max), &n) || n < 1 || n > 100000)
            return view_ld_fail(ld, max, where, "max_items: expected an integer 1..100000");
        if (section->vs_sort_field < 0)
            return view_ld_fail(ld, max, where, "max_items needs sort_by (what to trim)");
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
        return view_ld_fail(ld, node, where, "event %s has no field '%s'", rule->vr_event, name);
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
            return view_ld_fail(ld, node, where, "field '%s': unsupported union", name);
    } else {
        return view_ld_fail(ld, node, where, "field '%s': unsupported Avro type", name);
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
    case VIEW_T_BOOL:
        return src == VIEW_SRC_BOOL;
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
            return view_ld_fail(ld, node, where, "field '%s' has the wrong type for this target",
                                expr->ve_field);
        return 0;
    }
    static const char *const allowed[] = {"const", "count", NULL};
    if (view_ld_keys(ld, node, where, allowed) || yml_count(node) != 1)
        return view_ld_fail(ld, node, where, "expected a field name, {const: V} or {count: F}");
    const yml_node_t *c = yml_map_get(node, "const");
    if (c) {
        const char *s = yml_scalar(c);
        if (!s)
            return view_ld_fail(ld, c, where, "const must be a scalar");
        expr->ve_kind = VIEW_EXPR_CONST;
        if (target == VIEW_T_STRING) {
            expr->ve_const_str = strdup(s);
            return expr->ve_const_str ? 0 : RM_ENOMEM;
        }
        expr->ve_const_is_int = true;
        if (view_parse_i64(s, &expr->ve_const_int))
            return view_ld_fail(ld, c, where, "const '%s' is not a number", s);
        return 0;
    }
    const yml_node_t *cnt = yml_map_get(node, "count");
    expr->ve_kind = VIEW_EXPR_COUNT;
    if (ld_event_field(ld, cnt, where, rule, yml_scalar(cnt) ? yml_scalar(cnt) : "", expr))
        return RM_ECONFIG;
    if (expr->ve_src != VIEW_SRC_ARRAY)
        return view_ld_fail(ld, cnt, where, "count needs an array field");
    if (target != VIEW_T_LONG)
        return view_ld_fail(ld, cnt, where, "count yields a long");
    return 0;
}

static int ld_section_ref(view_ld_t *ld, const yml_node_t *op, const char *where,
                          view_section_kind_t kind, int *ret)
{
    const yml_node_t *sec = yml_map_get(op, "section");
    int index = yml_scalar(sec) ? view_section_index(ld->vl_view, yml_scalar(sec)) : -1;
    if (index < 0)
        return view_ld_fail(ld, sec ? sec : op, where, "section: unknown section");
    if (ld->vl_view->v_sections[index].vs_kind != kind)
        return view_ld_fail(ld, sec, where, "section %s has the wrong kind for this operation",
                            yml_scalar(sec));
    if (ld->vl_view->v_sections[index].vs_live)
        return view_ld_fail(ld, sec, where,
                            "section %s is live (fetched at request time): no rule "
                            "may write it",
                            yml_scalar(sec));
    *ret = index;
    return 0;
}

static int ld_assigns(view_ld_t *ld, const yml_node_t *fields, const char *where,
                      const view_rule_t *rule, view_op_t *op)
{
    const view_section_t *section = &ld->vl_view->v_sections[op->vo_section];
    if (yml_kind(fields) != YML_MAP || yml_count(fields) == 0)
        return view_ld_fail(ld, fields, where, "fields: expected a non-empty mapping");
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
            return view_ld_fail(ld, yml_map_key_at(fields, i), where,
                                "section %s has no field '%s'", section->vs_name,
                                name ? name : "?");
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
        return view_ld_fail(ld, node, where, "expected one operation, e.g. {set: {...}}");
    const char *k = yml_scalar(yml_map_key_at(node, 0));
    const yml_node_t *body = yml_map_value_at(node, 0);
    int kind = -1;
    for (int i = 0; k && i < (int)(sizeof(kinds) / sizeof(kinds[0])); i++)
        if (strcmp(k, kinds[i]) == 0)
            kind = i;
    if (kind < 0)
        return view_ld_fail(ld, node, where, "unknown operation '%s'", k ? k : "?");
    op->vo_kind = (view_op_kind_t)kind;
    char owhere[240];
    snprintf(owhere, sizeof(owhere), "%s.%s", where, k);
    switch (op->vo_kind) {
    case VIEW_OP_SET: {
        static const char *const allowed[] = {"section", "fields", NULL};
        if (view_ld_keys(ld, body, owhere, allowed) ||
            ld_section_ref(ld, body, owhere, VIEW_SINGLE, &op->vo_section))
            return RM_ECONFIG;
        return ld_assigns(ld, yml_map_get(body, "fields"), owhere, rule, op);
    }
    case VIEW_OP_UPSERT:
    case VIEW_OP_UPDATE:
    case VIEW_OP_DELETE: {
        static const char *const allowed[] = {"section", "item", "fields", NULL};
        if (view_ld_keys(ld, body, owhere, allowed) ||
            ld_section_ref(ld, body, owhere, VIEW_LIST, &op->vo_section))
            return RM_ECONFIG;
        const yml_node_t *item = yml_map_get(body, "item");
        if (!item)
            return view_ld_fail(ld, body, owhere, "item: missing (the field holding the item id)");
        if (ld_expr(ld, item, owhere, rule, VIEW_T_STRING, &op->vo_item))
            return RM_ECONFIG;
        if (op->vo_kind == VIEW_OP_DELETE)
            return yml_map_get(body, "fields")
                       ? view_ld_fail(ld, body, owhere, "delete takes no fields")
                       : 0;
        return ld_assigns(ld, yml_map_get(body, "fields"), owhere, rule, op);
    }
    case VIEW_OP_INCR:
    case VIEW_OP_DECR:
    case VIEW_OP_CONTRIBUTE: {
        static const char *const allowed[] = {"section", "field", "by", NULL};
        if (view_ld_keys(ld, body, owhere, allowed) ||
            ld_section_ref(ld, body, owhere, VIEW_COUNTERS, &op->vo_section))
            return RM_ECONFIG;
        const view_section_t *section = &ld->vl_view->v_sections[op->vo_section];
        const yml_node_t *field = yml_map_get(body, "field");
        op->vo_counter_field = -1;
        for (size_t f = 0; yml_scalar(field) && f < section->vs_field_count; f++)
            if (strcmp(yml_scalar(field), section->vs_fields[f].vf_name) == 0)
                op->vo_counter_field = (int)f;
        if (op->vo_counter_field < 0)
            return view_ld_fail(ld, field ? field : body, owhere, "field: unknown counter");
        const yml_node_t *by = yml_map_get(body, "by");
        if (!by)
            return view_ld_fail(ld, body, owhere, "by: missing");
        return ld_expr(ld, by, owhere, rule, VIEW_T_LONG, &op->vo_by);
    }
    case VIEW_OP_ERASE:
        if (yml_kind(body) != YML_MAP || yml_count(body) != 0)
            return view_ld_fail(ld, body, owhere, "erase takes no arguments: use erase: {}");
        return 0;
    case VIEW_OP_LINK: {
        static const char *const allowed[] = {"name", "id", NULL};
        if (view_ld_keys(ld, body, owhere, allowed))
            return RM_ECONFIG;
        const yml_node_t *name = yml_map_get(body, "name");
        for (size_t l = 0; yml_scalar(name) && l < ld->vl_view->v_link_count; l++)
            if (strcmp(yml_scalar(name), ld->vl_view->v_links[l]) == 0)
                op->vo_link = (int)l;
        if (op->vo_link < 0)
            return view_ld_fail(ld, name ? name : body, owhere, "name: unknown link");
        const yml_node_t *id = yml_map_get(body, "id");
        if (!id)
            return view_ld_fail(ld, body, owhere, "id: missing");
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
        return view_ld_fail(ld, node, where, "event %s: field '%s' must be a %s", rule->vr_event,
                            name, is_string ? "string" : "long");
    *ret = expr.ve_field_index;
    return 0;
}

int view_ld_rule(view_ld_t *ld, const yml_node_t *node, size_t index, view_rule_t *rule)
{
    char where[64];
    snprintf(where, sizeof(where), "rules[%zu]", index);
    static const char *const allowed[] = {"event", "entity", "key", "via", "ops", NULL};
    rule->vr_line = yml_line(node);
    rule->vr_via_link = -1;
    if (view_ld_keys(ld, node, where, allowed))
        return RM_ECONFIG;
    const yml_node_t *event = yml_map_get(node, "event");
    if (!yml_scalar(event))
        return view_ld_fail(ld, event ? event : node, where, "event: missing record full name");
    if (!(rule->vr_event = strdup(yml_scalar(event))))
        return RM_ENOMEM;
    rule->vr_reader = catalog_latest(ld->vl_catalog, rule->vr_event);
    if (!rule->vr_reader)
        return view_ld_fail(ld, event, where, "event %s is not in the schema catalog",
                            rule->vr_event);
    for (size_t r = 0; r < index; r++)
        if (strcmp(ld->vl_view->v_rules[r].vr_event, rule->vr_event) == 0)
            return view_ld_fail(ld, event, where, "a rule for %s already exists", rule->vr_event);
    if (ld_meta_field(ld, node, where, rule, "event_id", true, &rule->vr_event_id_index) ||
        ld_meta_field(ld, node, where, rule, "occurred_at", false, &rule->vr_occurred_at_index) ||
        ld_meta_field(ld, node, where, rule, "version", false, &rule->vr_version_index))
        return RM_ECONFIG;

    const yml_node_t *entity = yml_map_get(node, "entity");
    static const char *const entity_keys[] = {"type", "id", NULL};
    if (!entity)
        return view_ld_fail(ld, node, where,
                            "entity: missing (the aggregate whose version guards it)");
    if (view_ld_keys(ld, entity, where, entity_keys) ||
        view_ld_name(ld, yml_map_get(entity, "type"), where, &rule->vr_entity_type) ||
        ld_expr(ld, yml_map_get(entity, "id"), where, rule, VIEW_T_STRING, &rule->vr_entity_id))
        return RM_ECONFIG;

    const yml_node_t *key = yml_map_get(node, "key");
    const yml_node_t *via = yml_map_get(node, "via");
    if (!key == !via)
        return view_ld_fail(ld, node, where, "exactly one of key and via is required");
    if (key) {
        if (ld_expr(ld, key, where, rule, VIEW_T_STRING, &rule->vr_key))
            return RM_ECONFIG;
    } else {
        static const char *const via_keys[] = {"link", "id", NULL};
        if (view_ld_keys(ld, via, where, via_keys))
            return RM_ECONFIG;
        const yml_node_t *link = yml_map_get(via, "link");
        for (size_t l = 0; yml_scalar(link) && l < ld->vl_view->v_link_count; l++)
            if (strcmp(yml_scalar(link), ld->vl_view->v_links[l]) == 0)
                rule->vr_via_link = (int)l;
        if (rule->vr_via_link < 0)
            return view_ld_fail(ld, link ? link : via, where, "via.link: unknown link");
        if (ld_expr(ld, yml_map_get(via, "id"), where, rule, VIEW_T_STRING, &rule->vr_via_id))
            return RM_ECONFIG;
    }
    const yml_node_t *ops = yml_map_get(node, "ops");
    if (yml_kind(ops) != YML_SEQ || yml_count(ops) == 0)
        return view_ld_fail(ld, ops ? ops : node, where, "ops: expected a non-empty list");
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
            return view_ld_fail(ld, yml_seq_at(ops, i), owhere,
                                "a link can only be learned by a rule with a direct key");
    }
    return 0;
}

/* The counter shares of one entity type are kept in its version record (engine.c), so
 * the counters its rules contribute to are bounded, and one rule contributes to a counter
 * at most once (two shares of one entity in one counter would overwrite each other). */
int view_ld_check_shares(view_ld_t *ld, const yml_node_t *node, size_t index)
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
                    return view_ld_fail(ld, node, "rules",
                                        "rules[%zu] contributes twice to one counter", index);
            for (size_t s = 0; s < count; s++)
                known |= seen[s][0] == op->vo_section && seen[s][1] == op->vo_counter_field;
            if (known)
                continue;
            if (count == VIEW_MAX_CONTRIBUTIONS)
                return view_ld_fail(ld, node, "rules",
                                    "entity type %s contributes to more than %d "
                                    "counters",
                                    rule->vr_entity_type, VIEW_MAX_CONTRIBUTIONS);
            seen[count][0] = op->vo_section;
            seen[count][1] = op->vo_counter_field;
            count++;
        }
    }
    return 0;
}
