/* http_params: query-parameter parsers of the view endpoint (see http_params.h). */
#include "http_params.h"
#include "buf.h"
#include "rm_err.h"
#include "store.h"

#include <stdbool.h>
#include <string.h>

/* First byte of a decoded cursor: lets the layout change later while old cursors are
 * still told apart (and rejected) rather than misread. */
#define HTTP_CURSOR_VERSION 1
#define HTTP_CURSOR_HEAD_BYTES 9 /* version + be64 sort key */

int http_params_uint(const char *text, int64_t max, int64_t *ret_value)
{
    int64_t value = 0;
    if (*text == '\0')
        return RM_EINVAL;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9')
            return RM_EINVAL;
        int digit = *p - '0';
        if (digit > max || value > (max - digit) / 10)
            return RM_EINVAL; /* also guards the multiplication against overflow */
        value = value * 10 + digit;
    }
    *ret_value = value;
    return 0;
}

static void copy_bad(char *bad, size_t cap, const char *name, size_t len)
{
    if (!bad || !cap)
        return;
    if (len >= cap)
        len = cap - 1;
    memcpy(bad, name, len);
    bad[len] = '\0';
}

int http_params_fields(const view_t *view, const char *text, uint32_t *ret_mask, char *bad,
                       size_t bad_cap)
{
    uint32_t mask = 0;
    const char *p = text;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0) {
            copy_bad(bad, bad_cap, "", 0);
            return RM_EINVAL;
        }
        size_t s = 0;
        while (s < view->v_section_count && !(strlen(view->v_sections[s].vs_name) == len &&
                                              memcmp(view->v_sections[s].vs_name, p, len) == 0))
            s++;
        if (s == view->v_section_count) {
            copy_bad(bad, bad_cap, p, len);
            return RM_ENOTFOUND;
        }
        mask |= UINT32_C(1) << s;
        if (!comma)
            break;
        p = comma + 1;
    }
    *ret_mask = mask;
    return 0;
}

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t http_params_cursor_encode(const render_cursor_t *cursor, char *out, size_t cap)
{
    unsigned char raw[HTTP_CURSOR_HEAD_BYTES + VIEW_KEY_MAX_BYTES];
    raw[0] = HTTP_CURSOR_VERSION;
    store_be64(raw + 1, (uint64_t)cursor->rc_sort);
    size_t id_len =
        cursor->rc_id_len <= VIEW_KEY_MAX_BYTES ? cursor->rc_id_len : VIEW_KEY_MAX_BYTES;
    memcpy(raw + HTTP_CURSOR_HEAD_BYTES, cursor->rc_id, id_len);
    size_t raw_len = HTTP_CURSOR_HEAD_BYTES + id_len, n = 0;
    for (size_t i = 0; i < raw_len && n + 4 < cap; i += 3) {
        uint32_t chunk = (uint32_t)raw[i] << 16;
        if (i + 1 < raw_len)
            chunk |= (uint32_t)raw[i + 1] << 8;
        if (i + 2 < raw_len)
            chunk |= raw[i + 2];
        size_t chars = raw_len - i >= 3 ? 4 : raw_len - i + 1; /* unpadded */
        for (size_t c = 0; c < chars; c++)
            out[n++] = b64url[(chunk >> (18 - 6 * c)) & 63];
    }
    out[n] = '\0';
    return n;
}

int http_params_cursor_decode(const char *text, render_cursor_t *ret_cursor)
{
    size_t len = strlen(text);
    if (len > HTTP_CURSOR_MAX_CHARS)
        return RM_EINVAL;
    unsigned char raw[HTTP_CURSOR_HEAD_BYTES + VIEW_KEY_MAX_BYTES + 3];
    ssize_t decoded = buf_b64url_decode(text, len, raw, sizeof(raw), true);
    if (decoded < 0)
        return RM_EINVAL;
    size_t raw_len = (size_t)decoded;
    if (raw_len <= HTTP_CURSOR_HEAD_BYTES ||
        raw_len > HTTP_CURSOR_HEAD_BYTES + VIEW_KEY_MAX_BYTES || raw[0] != HTTP_CURSOR_VERSION)
        return RM_EINVAL;
    size_t id_len = raw_len - HTTP_CURSOR_HEAD_BYTES;
    if (memchr(raw + HTTP_CURSOR_HEAD_BYTES, '\0', id_len))
        return RM_EINVAL;
    ret_cursor->rc_set = true;
    ret_cursor->rc_sort = (int64_t)store_get_be64(raw + 1);
    ret_cursor->rc_id_len = id_len;
    memcpy(ret_cursor->rc_id, raw + HTTP_CURSOR_HEAD_BYTES, id_len);
    return 0;
}

static bool topic_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

/* Parses digits of text[0..len) no greater than max. */
static int parse_bounded(const char *text, size_t len, int64_t max, int64_t *ret_value)
{
    char digits[24];
    if (len == 0 || len >= sizeof(digits))
        return RM_EINVAL;
    memcpy(digits, text, len);
    digits[len] = '\0';
    return http_params_uint(digits, max, ret_value);
}

static int parse_token(const char *text, size_t len, http_min_offset_t *ret_token)
{
    const char *colon1 = memchr(text, ':', len);
    if (!colon1)
        return RM_EINVAL;
    size_t topic_len = (size_t)(colon1 - text);
    const char *rest = colon1 + 1;
    size_t rest_len = len - topic_len - 1;
    const char *colon2 = memchr(rest, ':', rest_len);
    if (!colon2 || topic_len == 0 || topic_len > VIEW_NAME_MAX_BYTES)
        return RM_EINVAL;
    for (size_t i = 0; i < topic_len; i++)
        if (!topic_char(text[i]))
            return RM_EINVAL;
    int64_t partition, offset;
    size_t partition_len = (size_t)(colon2 - rest);
    if (parse_bounded(rest, partition_len, INT32_MAX, &partition) ||
        parse_bounded(colon2 + 1, rest_len - partition_len - 1, INT64_MAX, &offset))
        return RM_EINVAL; /* a third ':' lands here too: it is not a digit */
    memcpy(ret_token->mo_topic, text, topic_len);
    ret_token->mo_topic[topic_len] = '\0';
    ret_token->mo_partition = (int32_t)partition;
    ret_token->mo_offset = offset;
    return 0;
}

int http_params_min_offsets(const char *text, http_min_offset_t *tokens, size_t cap, size_t *count)
{
    const char *p = text;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        http_min_offset_t token;
        if (parse_token(p, len, &token))
            return RM_EINVAL;
        size_t i = 0;
        while (i < *count && !(tokens[i].mo_partition == token.mo_partition &&
                               strcmp(tokens[i].mo_topic, token.mo_topic) == 0))
            i++;
        if (i < *count) {
            if (token.mo_offset > tokens[i].mo_offset)
                tokens[i].mo_offset = token.mo_offset;
        } else if (*count < cap) {
            tokens[(*count)++] = token;
        } else {
            return RM_EINVAL;
        }
        if (!comma)
            return 0;
        p = comma + 1;
    }
}
