/* source: URLs and record mapping for source services (source.h). */
#include "source.h"
#include "rm_err.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int source_base_url(const char *source_urls, const char *service, char *out, size_t cap)
{
    size_t nlen = strlen(service);
    const char *p = source_urls;
    while (p && *p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        if (!eq)
            return RM_EINVAL;
        if ((size_t)(eq - p) == nlen && memcmp(p, service, nlen) == 0) {
            size_t ulen = len - nlen - 1;
            while (ulen && eq[ulen] == '/')
                ulen--;
            if (ulen == 0 || ulen >= cap)
                return RM_EINVAL;
            memcpy(out, eq + 1, ulen);
            out[ulen] = '\0';
            return 0;
        }
        p = end ? end + 1 : NULL;
    }
    return RM_ENOTFOUND;
}

/* RFC 3986 unreserved characters pass; everything else is %-escaped. */
static size_t escape(const char *in, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            if (n + 1 >= cap)
                return 0;
            out[n++] = (char)*p;
        } else {
            if (n + 3 >= cap)
                return 0;
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    out[n] = '\0';
    return n;
}

int source_url(const view_source_t *src, const char *base, const char *key, long page, char *out,
               size_t cap)
{
    char escaped[3 * 128 + 1];
    if (!escape(key, escaped, sizeof(escaped)) && *key)
        return RM_EINVAL;
    const char *at = strstr(src->vsrc_path, "{key}");
    int n = snprintf(out, cap, "%s%.*s%s%s", base, (int)(at - src->vsrc_path), src->vsrc_path,
                     escaped, at + 5);
    if (n < 0 || (size_t)n >= cap)
        return RM_EINVAL;
    if (page > 1) {
        int m = snprintf(out + n, cap - (size_t)n, "%c%s=%ld", strchr(out, '?') ? '&' : '?',
                         src->vsrc_page_param, page);
        if (m < 0 || (size_t)m >= cap - (size_t)n)
            return RM_EINVAL;
    }
    return 0;
}

json_t *source_member(json_t *object, const char *path)
{
    char name[256];
    const char *p = path;
    json_t *node = object;
    while (node && *p) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        if (len >= sizeof(name) || !json_is_object(node))
            return NULL;
        memcpy(name, p, len);
        name[len] = '\0';
        node = json_object_get(node, name);
        p = dot ? dot + 1 : p + len;
    }
    return node;
}

static int digits(const char **p, int n, int *ret)
{
    int v = 0;
    for (int i = 0; i < n; i++, (*p)++) {
        if (!isdigit((unsigned char)**p))
            return RM_EINVAL;
        v = v * 10 + (**p - '0');
    }
    *ret = v;
    return 0;
}

int source_parse_time(const char *text, int64_t *ret_ms)
{
    const char *p = text;
    int year, mon, day, hour, min, sec, ms = 0;
    if (digits(&p, 4, &year) || *p++ != '-' || digits(&p, 2, &mon) || *p++ != '-' ||
        digits(&p, 2, &day) || (*p != 'T' && *p != 't' && *p != ' '))
        return RM_EINVAL;
    p++;
    if (digits(&p, 2, &hour) || *p++ != ':' || digits(&p, 2, &min) || *p++ != ':' ||
        digits(&p, 2, &sec))
        return RM_EINVAL;
    if (*p == '.') {
        p++;
        int scale = 100, n = 0;
        while (isdigit((unsigned char)*p)) {
            if (n++ < 3) {
                ms += (*p - '0') * scale;
                scale /= 10;
            }
            p++;
        }
        if (n == 0)
            return RM_EINVAL;
    }
    int offset_min = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om;
        if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om))
            return RM_EINVAL;
        offset_min = sign * (oh * 60 + om);
    } else {
        return RM_EINVAL; /* a time without a zone is ambiguous: refuse it */
    }
    if (*p || mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60)
        return RM_EINVAL;
    struct tm tm = {.tm_year = year - 1900, .tm_mon = mon - 1, .tm_mday = day,
                    .tm_hour = hour, .tm_min = min, .tm_sec = sec};
    time_t t = timegm(&tm);
    *ret_ms = ((int64_t)t - (int64_t)offset_min * 60) * 1000 + ms;
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
        if (source_parse_time(json_string_value(value), &ms) == 0)
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
        json_object_set_new(out, field->vf_name, convert(field, source_member(record, f->vsf_path)));
    }
    if (src->vsrc_updated_at) {
        json_t *at = source_member(record, src->vsrc_updated_at);
        int64_t ms = 0;
        if (json_is_integer(at))
            ms = json_integer_value(at);
        else if (json_is_string(at) && source_parse_time(json_string_value(at), &ms))
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
    json_t *items = json_is_array(answer) ? answer : source_member(answer, src->vsrc_items);
    if (!json_is_array(items))
        return RM_EINVAL;
    *ret_items = items;
    json_t *next = src->vsrc_next && json_is_object(answer) ? source_member(answer, src->vsrc_next)
                                                            : NULL;
    if (json_is_integer(next) && json_integer_value(next) > 0)
        *ret_next_page = (long)json_integer_value(next);
    else if (json_is_string(next) && json_string_length(next) > 0)
        *ret_next_url = json_string_value(next);
    else if (next && !json_is_null(next))
        return RM_EINVAL;
    return 0;
}
