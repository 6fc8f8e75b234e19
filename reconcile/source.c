/* source: URLs and record mapping for source services (source.h). */
#include "source.h"
#include "remote.h"
#include "rm_err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int source_url(const view_source_t *src, const char *base, const char *key, long page, char *out,
               size_t cap)
{
    size_t n = remote_url(base, src->vsrc_path, key, strlen(key), out, cap);
    if (n == 0)
        return RM_EINVAL;
    if (page > 1) {
        int m = snprintf(out + n, cap - n, "%c%s=%ld", strchr(out, '?') ? '&' : '?',
                         src->vsrc_page_param, page);
        if (m < 0 || (size_t)m >= cap - n)
            return RM_EINVAL;
    }
    return 0;
}

/* A source value in the view field's type; anything that does not convert is kept as
 * it is, so the comparison reports it instead of hiding it. */
static json_t *convert(const view_field_t *field, json_t *value)
{
    if (!value)
        return json_null();
    if (field->vf_type == VIEW_T_TIMESTAMP && json_is_string(value)) {
        int64_t ms;
        if (remote_parse_time(json_string_value(value), &ms) == 0)
            return json_integer(ms);
    }
    if (field->vf_type == VIEW_T_STRING && json_is_integer(value)) {
        char text[32];
        snprintf(text, sizeof(text), "%lld", (long long)json_integer_value(value));
        return json_string(text);
    }
    return json_incref(value);
}

json_t *source_map_record(const view_t *view, const view_source_t *src, json_t *record)
{
    const view_section_t *section = &view->v_sections[src->vsrc_section];
    json_t *out = json_object();
    if (!out)
        return NULL;
    for (size_t i = 0; i < src->vsrc_field_count; i++) {
        const view_src_field_t *f = &src->vsrc_fields[i];
        const view_field_t *field = &section->vs_fields[f->vsf_field];
        json_object_set_new(out, field->vf_name,
                            convert(field, remote_member(record, f->vsf_path)));
    }
    if (src->vsrc_updated_at) {
        json_t *at = remote_member(record, src->vsrc_updated_at);
        int64_t ms = 0;
        if (json_is_integer(at))
            ms = json_integer_value(at);
        else if (json_is_string(at) && remote_parse_time(json_string_value(at), &ms))
            ms = 0;
        if (ms > 0)
            json_object_set_new(out, SOURCE_UPDATED, json_integer(ms));
    }
    if (src->vsrc_item_field >= 0) {
        json_t *id = json_object_get(out, section->vs_fields[src->vsrc_item_field].vf_name);
        if (json_is_string(id))
            json_object_set(out, SOURCE_ITEM, id);
    }
    return out;
}

int source_page(const view_source_t *src, json_t *answer, json_t **ret_items, long *ret_next_page,
                const char **ret_next_url)
{
    *ret_next_page = 0;
    *ret_next_url = NULL;
    json_t *items = json_is_array(answer) ? answer : remote_member(answer, src->vsrc_items);
    if (!json_is_array(items))
        return RM_EINVAL;
    *ret_items = items;
    json_t *next =
        src->vsrc_next && json_is_object(answer) ? remote_member(answer, src->vsrc_next) : NULL;
    if (json_is_integer(next) && json_integer_value(next) > 0)
        *ret_next_page = (long)json_integer_value(next);
    else if (json_is_string(next) && json_string_length(next) > 0)
        *ret_next_url = json_string_value(next);
    else if (next && !json_is_null(next))
        return RM_EINVAL;
    return 0;
}
