/* view_options: the optional blocks of a view definition — field indexes, reconcile's
 * sources, live sections, the repairs topic and tombstones (view.c, the loader). */
#include "view_int.h"
#include "rm_err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int ld_index(view_ld_t *ld, const yml_node_t *key, const yml_node_t *val,
                    view_index_t *index)
{
    char where[120];
    snprintf(where, sizeof(where), "indexes.%s", yml_scalar(key) ? yml_scalar(key) : "?");
    static const char *const allowed[] = {"section", "field", "link", "normalize", NULL};
    index->vi_section = index->vi_field = index->vi_link = -1;
    if (view_ld_name(ld, key, "indexes", &index->vi_name) || view_ld_keys(ld, val, where, allowed))
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
        return view_ld_fail(ld, norm, where, "normalize must be none, lowercase or e164");
    const yml_node_t *link = yml_map_get(val, "link");
    if (link) {
        for (size_t l = 0; yml_scalar(link) && l < ld->vl_view->v_link_count; l++)
            if (strcmp(yml_scalar(link), ld->vl_view->v_links[l]) == 0)
                index->vi_link = (int)l;
        if (index->vi_link < 0)
            return view_ld_fail(ld, link, where, "link: unknown link");
        if (yml_map_get(val, "section") || yml_map_get(val, "field"))
            return view_ld_fail(ld, val, where,
                                "an index is over a link or over a field, not both");
        return 0;
    }
    const yml_node_t *sec = yml_map_get(val, "section");
    const yml_node_t *field = yml_map_get(val, "field");
    index->vi_section = yml_scalar(sec) ? view_section_index(ld->vl_view, yml_scalar(sec)) : -1;
    if (index->vi_section < 0)
        return view_ld_fail(ld, sec ? sec : val, where, "section: unknown section");
    const view_section_t *section = &ld->vl_view->v_sections[index->vi_section];
    if (section->vs_kind != VIEW_SINGLE)
        return view_ld_fail(ld, sec, where, "field indexes are supported on single sections only");
    for (size_t f = 0; yml_scalar(field) && f < section->vs_field_count; f++)
        if (strcmp(yml_scalar(field), section->vs_fields[f].vf_name) == 0)
            index->vi_field = (int)f;
    if (index->vi_field < 0)
        return view_ld_fail(ld, field ? field : val, where, "field: not a field of %s",
                            section->vs_name);
    if (section->vs_fields[index->vi_field].vf_type != VIEW_T_STRING)
        return view_ld_fail(ld, field, where, "field: only string fields can be indexed");
    size_t same_section = 0;
    for (size_t i = 0; ld->vl_view->v_indexes + i != index; i++)
        same_section += ld->vl_view->v_indexes[i].vi_section == index->vi_section;
    if (same_section >= VIEW_MAX_FIELD_INDEXES)
        return view_ld_fail(ld, sec, where, "at most %d field indexes per section",
                            VIEW_MAX_FIELD_INDEXES);
    return 0;
}

int view_ld_indexes(view_ld_t *ld, const yml_node_t *node)
{
    if (yml_kind(node) != YML_MAP)
        return view_ld_fail(ld, node, "indexes", "expected a mapping");
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

/* A dotted member path of a source record: names of [A-Za-z0-9_-] joined by '.'. */
static int ld_src_path(view_ld_t *ld, const yml_node_t *node, const char *where, char **ret)
{
    const char *s = yml_scalar(node);
    if (!s || !*s || strlen(s) > 2 * VIEW_NAME_MAX_BYTES)
        return view_ld_fail(ld, node, where, "expected a member path such as 'total.cents'");
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-' || (*p == '.' && p != s && p[1] && p[1] != '.')))
            return view_ld_fail(ld, node, where, "'%s' is not a member path", s);
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
    return view_ld_fail(ld, node, where, "'%s' is not a field of %s", name ? name : "?",
                        section->vs_name);
}

static int ld_source(view_ld_t *ld, const yml_node_t *key, const yml_node_t *val,
                     view_source_t *src)
{
    char where[120];
    snprintf(where, sizeof(where), "sources.%s", yml_scalar(key) ? yml_scalar(key) : "?");
    static const char *const allowed[] = {"service",    "path",       "items",
                                          "next_page",  "page_param", "item",
                                          "updated_at", "fields",     NULL};
    src->vsrc_line = yml_line(key);
    src->vsrc_item_field = -1;
    if (view_ld_keys(ld, val, where, allowed))
        return RM_ECONFIG;
    src->vsrc_section = yml_scalar(key) ? view_section_index(ld->vl_view, yml_scalar(key)) : -1;
    if (src->vsrc_section < 0)
        return view_ld_fail(ld, key, where, "not a section of this view");
    for (view_source_t *s = ld->vl_view->v_sources; s != src; s++)
        if (s->vsrc_section == src->vsrc_section)
            return view_ld_fail(ld, key, where, "section has two sources");
    const view_section_t *section = &ld->vl_view->v_sections[src->vsrc_section];
    if (section->vs_kind == VIEW_COUNTERS)
        return view_ld_fail(ld, key, where, "counters are derived by the view and have no source");
    const yml_node_t *path = yml_map_get(val, "path");
    const char *ps = yml_scalar(path);
    if (view_ld_name(ld, yml_map_get(val, "service"), where, &src->vsrc_service))
        return RM_ECONFIG;
    if (!ps || ps[0] != '/' || !strstr(ps, "{key}") || strchr(ps, ' '))
        return view_ld_fail(ld, path ? path : val, where,
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
            if (view_ld_name(ld, n, where, &src->vsrc_page_param))
                return RM_ECONFIG;
        } else if (!(src->vsrc_page_param = strdup("page"))) {
            return RM_ENOMEM;
        }
    } else if (yml_map_get(val, "items") || yml_map_get(val, "item") ||
               yml_map_get(val, "next_page")) {
        return view_ld_fail(ld, val, where, "items, item and next_page are for list sections");
    }
    if ((n = yml_map_get(val, "updated_at")) && ld_src_path(ld, n, where, &src->vsrc_updated_at))
        return RM_ECONFIG;
    const yml_node_t *fields = yml_map_get(val, "fields");
    if (yml_kind(fields) != YML_MAP || yml_count(fields) == 0)
        return view_ld_fail(ld, fields ? fields : val, where,
                            "fields: expected a mapping of "
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
        return view_ld_fail(ld, fields, where, "fields: must map the item field %s",
                            section->vs_fields[src->vsrc_item_field].vf_name);
    return 0;
}

int view_ld_sources(view_ld_t *ld, const yml_node_t *node)
{
    if (yml_kind(node) != YML_MAP)
        return view_ld_fail(ld, node, "sources", "expected a mapping of section: source");
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
    static const char *const allowed[] = {"service", "path",   "deadline_ms",
                                          "items",   "fields", NULL};
    view_t *view = ld->vl_view;
    live->vlv_line = yml_line(key);
    if (view_ld_keys(ld, val, where, allowed))
        return RM_ECONFIG;
    live->vlv_section = yml_scalar(key) ? view_section_index(view, yml_scalar(key)) : -1;
    if (live->vlv_section < 0)
        return view_ld_fail(ld, key, where,
                            "not a section of this view (declare its fields under "
                            "sections:)");
    view_section_t *section = &view->v_sections[live->vlv_section];
    if (section->vs_live)
        return view_ld_fail(ld, key, where, "section is declared live twice");
    if (section->vs_kind == VIEW_COUNTERS)
        return view_ld_fail(ld, key, where, "counters are derived by the view and cannot be live");
    if (view_source_for(view, live->vlv_section))
        return view_ld_fail(ld, key, where,
                            "a live section has no stored copy to reconcile: remove "
                            "it from sources");
    for (size_t i = 0; i < view->v_index_count; i++)
        if (view->v_indexes[i].vi_section == live->vlv_section)
            return view_ld_fail(ld, key, where,
                                "a live section is not stored and cannot be "
                                "indexed (index %s)",
                                view->v_indexes[i].vi_name);
    section->vs_live = true;
    const yml_node_t *path = yml_map_get(val, "path");
    const char *ps = yml_scalar(path);
    if (view_ld_name(ld, yml_map_get(val, "service"), where, &live->vlv_service))
        return RM_ECONFIG;
    if (!ps || ps[0] != '/' || !strstr(ps, "{key}") || strchr(ps, ' '))
        return view_ld_fail(ld, path ? path : val, where,
                            "path: expected an absolute path template containing {key}");
    if (!(live->vlv_path = strdup(ps)))
        return RM_ENOMEM;
    const yml_node_t *deadline = yml_map_get(val, "deadline_ms");
    if (!deadline)
        return view_ld_fail(ld, val, where,
                            "deadline_ms: missing (a live section needs a deadline)");
    if (view_parse_i64(yml_scalar(deadline), &live->vlv_deadline_ms) || live->vlv_deadline_ms < 1 ||
        live->vlv_deadline_ms > VIEW_LIVE_DEADLINE_MAX_MS)
        return view_ld_fail(ld, deadline, where, "deadline_ms: expected an integer from 1 to %d",
                            VIEW_LIVE_DEADLINE_MAX_MS);
    const yml_node_t *items = yml_map_get(val, "items");
    if (items && section->vs_kind != VIEW_LIST)
        return view_ld_fail(ld, items, where, "items is for list sections");
    if (items && ld_src_path(ld, items, where, &live->vlv_items))
        return RM_ECONFIG;
    const yml_node_t *fields = yml_map_get(val, "fields");
    if (yml_kind(fields) != YML_MAP || yml_count(fields) == 0)
        return view_ld_fail(ld, fields ? fields : val, where,
                            "fields: expected a mapping of "
                            "view field: source member");
    live->vlv_fields = calloc(yml_count(fields), sizeof(*live->vlv_fields));
    if (!live->vlv_fields)
        return RM_ENOMEM;
    uint64_t mapped = 0; /* bit f: section field f has a member (VIEW_MAX_FIELDS <= 64) */
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
            return view_ld_fail(ld, fields, where, "fields: %s is not mapped to a member",
                                section->vs_fields[f].vf_name);
    return 0;
}

int view_ld_lives(view_ld_t *ld, const yml_node_t *node)
{
    if (yml_kind(node) != YML_MAP)
        return view_ld_fail(ld, node, "live", "expected a mapping of section: service");
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
int view_ld_repairs(view_ld_t *ld, const yml_node_t *node)
{
    static const char *const allowed[] = {"topic", NULL};
    view_t *view = ld->vl_view;
    if (view_ld_keys(ld, node, "repairs", allowed) ||
        view_ld_name(ld, yml_map_get(node, "topic"), "repairs.topic", &view->v_repair_topic))
        return RM_ECONFIG;
    if (view_topic_index(view, view->v_repair_topic) >= 0)
        return view_ld_fail(ld, node, "repairs.topic", "must not be one of the view's topics");
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
int view_ld_tombstones(view_ld_t *ld, const yml_node_t *node)
{
    view_t *view = ld->vl_view;
    view->v_tombstones = calloc(view->v_topic_count, sizeof(view_tombstone_t));
    if (!view->v_tombstones)
        return RM_ENOMEM;
    if (!node)
        return 0;
    if (yml_kind(node) != YML_MAP)
        return view_ld_fail(ld, node, "tombstones", "expected a mapping of topic: rule");
    for (size_t i = 0; i < yml_count(node); i++) {
        const yml_node_t *key = yml_map_key_at(node, i), *val = yml_map_value_at(node, i);
        char where[120];
        snprintf(where, sizeof(where), "tombstones.%s", yml_scalar(key) ? yml_scalar(key) : "?");
        int t = yml_scalar(key) ? view_topic_index(view, yml_scalar(key)) : -1;
        if (t < 0)
            return view_ld_fail(ld, key, where, "not one of the view's topics");
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
        static const char *const outer[] = {"delete", NULL}, *const inner[] = {"section", "link",
                                                                               NULL};
        const yml_node_t *del = yml_kind(val) == YML_MAP ? yml_map_get(val, "delete") : NULL;
        if (!del || view_ld_keys(ld, val, where, outer))
            return view_ld_fail(ld, val, where,
                                "expected ignore, erase or {delete: {section: S, link: L}}");
        if (view_ld_keys(ld, del, where, inner))
            return RM_ECONFIG;
        const yml_node_t *sec = yml_map_get(del, "section"), *link = yml_map_get(del, "link");
        tomb->vt_kind = VIEW_TOMB_DELETE;
        tomb->vt_section = yml_scalar(sec) ? view_section_index(view, yml_scalar(sec)) : -1;
        if (tomb->vt_section < 0 || view->v_sections[tomb->vt_section].vs_kind != VIEW_LIST)
            return view_ld_fail(ld, sec ? sec : del, where,
                                "delete.section: expected a list section");
        tomb->vt_link = -1;
        for (size_t l = 0; yml_scalar(link) && l < view->v_link_count; l++)
            if (strcmp(yml_scalar(link), view->v_links[l]) == 0)
                tomb->vt_link = (int)l;
        if (tomb->vt_link < 0)
            return view_ld_fail(ld, link ? link : del, where,
                                "delete.link: not a link of this view");
    }
    return 0;
}
