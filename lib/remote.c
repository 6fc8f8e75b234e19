/* remote: base URLs, URL templates and ISO 8601 times of remote services (remote.h). */
#include "remote.h"
#include "rm_err.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

int remote_base_url(const char *urls, const char *service, char *out, size_t cap)
{
    size_t nlen = strlen(service);
    const char *p = urls;
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

int remote_check_urls(const char *urls, char *bad, size_t bad_cap)
{
    for (const char *p = urls; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        const char *url = eq ? eq + 1 : NULL;
        size_t ulen = url ? len - (size_t)(url - p) : 0;
        bool http = url && ((ulen > 7 && strncmp(url, "http://", 7) == 0) ||
                            (ulen > 8 && strncmp(url, "https://", 8) == 0));
        if (!eq || eq == p || !http || ulen >= REMOTE_URL_MAX_BYTES / 2) {
            snprintf(bad, bad_cap, "%.*s", (int)(len < 200 ? len : 200), p);
            return RM_EINVAL;
        }
        p = end ? end + 1 : NULL;
    }
    return 0;
}

size_t remote_url(const char *base, const char *path_template, const char *key, size_t key_len,
                  char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    const char *at = strstr(path_template, "{key}");
    if (!at)
        return 0;
    int n = snprintf(out, cap, "%s%.*s", base, (int)(at - path_template), path_template);
    if (n < 0 || (size_t)n >= cap)
        return 0;
    size_t len = (size_t)n;
    for (size_t i = 0; i < key_len; i++) {
        unsigned char c = (unsigned char)key[i];
        /* '.' is escaped too: a key of "." or ".." would otherwise be a dot-segment that
         * curl and the service resolve (RFC 3986 §5.2.4), reaching another path. */
        bool plain = isalnum(c) || c == '-' || c == '_' || c == '~';
        if (len + (plain ? 1 : 3) >= cap)
            return 0;
        if (plain) {
            out[len++] = (char)c;
        } else {
            out[len++] = '%';
            out[len++] = hex[c >> 4];
            out[len++] = hex[c & 15];
        }
    }
    n = snprintf(out + len, cap - len, "%s", at + 5);
    if (n < 0 || (size_t)n >= cap - len)
        return 0;
    return len + (size_t)n;
}

json_t *remote_member(json_t *object, const char *path)
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

int remote_parse_time(const char *text, int64_t *ret_ms)
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
    struct tm tm = {.tm_year = year - 1900,
                    .tm_mon = mon - 1,
                    .tm_mday = day,
                    .tm_hour = hour,
                    .tm_min = min,
                    .tm_sec = sec};
    time_t t = timegm(&tm);
    *ret_ms = ((int64_t)t - (int64_t)offset_min * 60) * 1000 + ms;
    return 0;
}
