/* http_live_map: a live service's JSON answer to the section's declared shape (http_live_map.h). */
#include "http_live_map.h"
#include "mask.h"
#include "remote.h"
#include "rm_err.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

static int append_default(const view_field_t *field, buf_t *out)
{
    if (!field->vf_has_default)
        return buf_append_str(out, "null");
    if (field->vf_type == VIEW_T_STRING)
        return buf_append_json_str(out, field->vf_default_str, strlen(field->vf_default_str));
    if (field->vf_type == VIEW_T_BOOL)
        return buf_append_str(out, field->vf_default_int ? "true" : "false");
    return buf_append_i64(out, field->vf_default_int);
}

/* One value in the field's type; RM_EINVAL when it cannot be. */
static int append_value(const view_field_t *field, json_t *value, buf_t *out)
{
    if (!value || json_is_null(value))
        return append_default(field, out);
    switch (field->vf_type) {
    case VIEW_T_STRING:
        if (json_is_string(value))
            return buf_append_json_str(out, json_string_value(value), json_string_length(value));
        if (json_is_integer(value)) /* ids sent as numbers: the declared type is a string */
            return buf_printf(out, "\"%lld\"", (long long)json_integer_value(value));
        break;
    case VIEW_T_LONG:
        if (json_is_integer(value))
            return buf_append_i64(out, json_integer_value(value));
        break;
    case VIEW_T_BOOL:
        if (json_is_boolean(value))
            return buf_append_str(out, json_is_true(value) ? "true" : "false");
        break;
    case VIEW_T_TIMESTAMP: {
        int64_t ms;
        if (json_is_integer(value))
            return buf_append_i64(out, json_integer_value(value));
        if (json_is_string(value) && remote_parse_time(json_string_value(value), &ms) == 0)
            return buf_append_i64(out, ms);
        break;
    }
    }
    return RM_EINVAL;
}

/* A PII field for a caller without the entitlement, as frag_render_json_filtered masks a
 * stored one: a string (or string default) through the field's mask, null as null, any
 * other value redacted. The value is still checked against the field's type first, so a
 * wrong answer is refused the same whoever asks. */
static int append_masked(const view_field_t *field, json_t *value, buf_t *out)
{
    buf_t plain = BUF_INIT;
    int rc = append_value(field, value, &plain);
    bool absent = !value || json_is_null(value);
    if (rc)
        ; /* not the declared type */
    else if (strcmp(plain.b_data, "null") == 0)
        rc = buf_append_str(out, "null");
    else if (field->vf_type == VIEW_T_STRING && json_is_string(value))
        rc = mask_append_json(field->vf_mask, json_string_value(value), json_string_length(value),
                              out);
    else if (field->vf_type == VIEW_T_STRING && absent)
        rc = mask_append_json(field->vf_mask, field->vf_default_str, strlen(field->vf_default_str),
                              out);
    else
        rc = mask_append_json(VIEW_MASK_REDACT, "", 0, out);
    buf_free(&plain);
    return rc;
}

/* {"field":value,...} of one record: the fields in `fields`, in definition order. */
static int append_record(const view_section_t *section, const view_live_t *live, json_t *record,
                         uint32_t fields, uint32_t masked, buf_t *out)
{
    if (!json_is_object(record))
        return RM_EINVAL;
    int rc = buf_append_char(out, '{');
    bool comma = false;
    for (size_t f = 0; !rc && f < section->vs_field_count; f++) {
        const view_field_t *field = &section->vs_fields[f];
        const char *path = NULL;
        for (size_t m = 0; m < live->vlv_field_count; m++)
            if (live->vlv_fields[m].vsf_field == (int)f)
                path = live->vlv_fields[m].vsf_path;
        json_t *value = path ? remote_member(record, path) : NULL;
        if (!(fields & (UINT32_C(1) << f))) {
            /* left out, but an answer of the wrong shape is refused whoever asks */
            buf_t ignored = BUF_INIT;
            rc = append_value(field, value, &ignored);
            buf_free(&ignored);
            continue;
        }
        rc = comma ? buf_append_char(out, ',') : 0;
        comma = true;
        rc = rc ? rc : buf_append_json_str(out, field->vf_name, strlen(field->vf_name));
        rc = rc ? rc : buf_append_char(out, ':');
        if (!rc)
            rc = field->vf_pii && (masked & (UINT32_C(1) << f)) ? append_masked(field, value, out)
                                                                : append_value(field, value, out);
    }
    return rc ? rc : buf_append_char(out, '}');
}

static int map_answer(const view_section_t *section, const view_live_t *live, json_t *root,
                      uint32_t fields, uint32_t masked, buf_t *out)
{
    if (section->vs_kind != VIEW_LIST)
        return json_is_null(root) ? buf_append_str(out, "null")
                                  : append_record(section, live, root, fields, masked, out);
    json_t *items = live->vlv_items ? remote_member(root, live->vlv_items) : root;
    if (!json_is_array(items))
        return RM_EINVAL;
    size_t count = json_array_size(items);
    if (section->vs_max_items && count > section->vs_max_items)
        count = section->vs_max_items;
    int rc = buf_append_char(out, '[');
    for (size_t i = 0; !rc && i < count; i++) {
        rc = i ? buf_append_char(out, ',') : 0;
        rc = rc ? rc : append_record(section, live, json_array_get(items, i), fields, masked, out);
    }
    return rc ? rc : buf_append_char(out, ']');
}

int http_live_map(const view_t *view, const view_live_t *live, uint32_t fields, uint32_t masked,
                  const char *body, size_t len, buf_t *out)
{
    const view_section_t *section = &view->v_sections[live->vlv_section];
    if (!body)
        return buf_append_str(out, section->vs_kind == VIEW_LIST ? "[]" : "null");
    json_error_t error;
    json_t *root = json_loadb(body, len, JSON_DECODE_ANY, &error);
    if (!root)
        return RM_EINVAL;
    size_t mark = out->b_len;
    int rc = map_answer(section, live, root, fields, masked, out);
    json_decref(root);
    if (rc && out->b_cap) {
        out->b_len = mark; /* a half-mapped answer never reaches a client */
        out->b_data[mark] = '\0';
    }
    return rc;
}
