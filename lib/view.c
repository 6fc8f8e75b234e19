/* view: load and validate a view definition (schemas/views/<name>.yaml).
 *
 * Validation happens here, once, against the reader schemas of the catalog, so
 * the engine's hot path can trust every index and type it is handed. Every error
 * names file, line and the path of the offending key.
 *
 * This file holds the entry (view_load, view_destroy), the top level of a definition
 * and the checks every part uses (view_int.h); view_rules.c loads sections and rules,
 * view_options.c the optional blocks, view_feeds.c derives the feeding topics, and
 * view_query.c holds the lookups over a loaded view. */
#include "view.h"
#include "view_feeds.h"
#include "view_int.h"
#include "rm_err.h"
#include "yml.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((format(printf, 4, 5))) int view_ld_fail(view_ld_t *ld, const yml_node_t *node,
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

int view_ld_name(view_ld_t *ld, const yml_node_t *node, const char *where, char **ret)
{
    const char *s = yml_scalar(node);
    if (!s || !*s)
        return view_ld_fail(ld, node, where, "expected a non-empty name");
    if (strlen(s) > VIEW_NAME_MAX_BYTES)
        return view_ld_fail(ld, node, where, "longer than %d bytes", VIEW_NAME_MAX_BYTES);
    for (const char *p = s; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-' || *p == '.'))
            return view_ld_fail(ld, node, where, "'%s': only letters, digits, '_', '-', '.'", s);
    }
    *ret = strdup(s);
    return *ret ? 0 : RM_ENOMEM;
}

/* Rejects keys of map that are not in allowed (typos must not pass silently). */
int view_ld_keys(view_ld_t *ld, const yml_node_t *map, const char *where,
                 const char *const *allowed)
{
    if (yml_kind(map) != YML_MAP)
        return view_ld_fail(ld, map, where, "expected a mapping");
    for (size_t i = 0; i < yml_count(map); i++) {
        const char *key = yml_scalar(yml_map_key_at(map, i));
        bool ok = false;
        for (size_t a = 0; key && allowed[a]; a++)
            ok |= strcmp(key, allowed[a]) == 0;
        if (!ok)
            return view_ld_fail(ld, yml_map_key_at(map, i), where, "unknown key '%s'",
                                key ? key : "?");
    }
    return 0;
}

int view_parse_i64(const char *s, int64_t *ret)
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

static int ld_names(view_ld_t *ld, const yml_node_t *node, const char *where, bool is_map,
                    char ***ret, size_t *ret_count)
{
    if (yml_kind(node) != (is_map ? YML_MAP : YML_SEQ))
        return view_ld_fail(ld, node, where, is_map ? "expected a mapping" : "expected a list");
    *ret_count = yml_count(node);
    *ret = calloc(*ret_count ? *ret_count : 1, sizeof(char *));
    if (!*ret)
        return RM_ENOMEM;
    for (size_t i = 0; i < *ret_count; i++) {
        const yml_node_t *n = is_map ? yml_map_key_at(node, i) : yml_seq_at(node, i);
        if (view_ld_name(ld, n, where, &(*ret)[i]))
            return RM_ECONFIG;
    }
    return 0;
}

static int ld_view(view_ld_t *ld, const yml_node_t *root)
{
    view_t *view = ld->vl_view;
    static const char *const allowed[] = {"view",     "key",        "topics",  "links",
                                          "sections", "rules",      "indexes", "sources",
                                          "repairs",  "tombstones", "live",    NULL};
    if (view_ld_keys(ld, root, "(top level)", allowed))
        return RM_ECONFIG;
    const yml_node_t *n;
    if (view_ld_name(ld, yml_map_get(root, "view"), "view", &view->v_name) ||
        view_ld_name(ld, yml_map_get(root, "key"), "key", &view->v_key_field))
        return RM_ECONFIG;
    if (!(n = yml_map_get(root, "topics")) ||
        ld_names(ld, n, "topics", false, &view->v_topics, &view->v_topic_count))
        return view_ld_fail(ld, n ? n : root, "topics", "expected a non-empty list of topics");
    if (view->v_topic_count == 0)
        return view_ld_fail(ld, n, "topics", "expected a non-empty list of topics");
    if ((n = yml_map_get(root, "links")) &&
        ld_names(ld, n, "links", true, &view->v_links, &view->v_link_count))
        return RM_ECONFIG;
    n = yml_map_get(root, "sections");
    if (yml_kind(n) != YML_MAP || yml_count(n) == 0 || yml_count(n) > VIEW_MAX_SECTIONS)
        return view_ld_fail(ld, n ? n : root, "sections", "expected 1..%d sections",
                            VIEW_MAX_SECTIONS);
    view->v_sections = calloc(yml_count(n), sizeof(*view->v_sections));
    if (!view->v_sections)
        return RM_ENOMEM;
    for (size_t i = 0; i < yml_count(n); i++) {
        view->v_section_count = i + 1;
        if (view_ld_section(ld, yml_map_key_at(n, i), yml_map_value_at(n, i), &view->v_sections[i]))
            return RM_ECONFIG;
    }
    if ((n = yml_map_get(root, "indexes")) && view_ld_indexes(ld, n))
        return RM_ECONFIG;
    if ((n = yml_map_get(root, "sources")) && view_ld_sources(ld, n))
        return RM_ECONFIG;
    if ((n = yml_map_get(root, "repairs")) && view_ld_repairs(ld, n))
        return RM_ECONFIG;
    if (view->v_topic_count > VIEW_MAX_TOPICS)
        return view_ld_fail(ld, yml_map_get(root, "topics"), "topics",
                            "at most %d topics, the repairs topic included", VIEW_MAX_TOPICS);
    if ((n = yml_map_get(root, "live")) &&
        view_ld_lives(ld, n)) /* before the rules: they check it */
        return RM_ECONFIG;
    if (view_ld_tombstones(ld, yml_map_get(root, "tombstones")))
        return RM_ECONFIG;
    n = yml_map_get(root, "rules");
    if (yml_kind(n) != YML_SEQ || yml_count(n) == 0)
        return view_ld_fail(ld, n ? n : root, "rules", "expected a non-empty list");
    view->v_rules = calloc(yml_count(n), sizeof(*view->v_rules));
    if (!view->v_rules)
        return RM_ENOMEM;
    for (size_t i = 0; i < yml_count(n); i++) {
        view->v_rule_count = i + 1;
        if (view_ld_rule(ld, yml_seq_at(n, i), i, &view->v_rules[i]) ||
            view_ld_check_shares(ld, yml_seq_at(n, i), i))
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
                           : view_ld_fail(&ld, NULL, "(top level)", "empty document");
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
