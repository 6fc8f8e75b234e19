/* buf: growable byte buffer and JSON text appenders. */
#include "buf.h"
#include "rm_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(buf_t *buf)
{
    buf->b_data = NULL;
    buf->b_len = 0;
    buf->b_cap = 0;
}

void buf_free(buf_t *buf)
{
    if (!buf)
        return;
    free(buf->b_data);
    buf_init(buf);
}

int buf_reserve(buf_t *buf, size_t extra)
{
    size_t need = buf->b_len + extra + 1;
    if (need <= buf->b_cap)
        return 0;
    size_t cap = buf->b_cap ? buf->b_cap : 256;
    while (cap < need)
        cap *= 2;
    char *data = realloc(buf->b_data, cap);
    if (!data)
        return RM_ENOMEM;
    buf->b_data = data;
    buf->b_cap = cap;
    return 0;
}

int buf_append(buf_t *buf, const void *data, size_t len)
{
    if (buf_reserve(buf, len))
        return RM_ENOMEM;
    if (len)
        memcpy(buf->b_data + buf->b_len, data, len);
    buf->b_len += len;
    buf->b_data[buf->b_len] = '\0';
    return 0;
}

int buf_append_str(buf_t *buf, const char *str)
{
    return buf_append(buf, str, strlen(str));
}

int buf_append_char(buf_t *buf, char c)
{
    return buf_append(buf, &c, 1);
}

int buf_printf(buf_t *buf, const char *fmt, ...)
{
    /* Format straight into the spare capacity: a second pass only when it did not fit
     * (measuring first cost every call two vsnprintf; they were a fifth of a query-api
     * request's instructions under callgrind). */
    size_t room = buf->b_cap > buf->b_len ? buf->b_cap - buf->b_len : 0;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(room ? buf->b_data + buf->b_len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0)
        return RM_EINVAL;
    if ((size_t)n >= room) {
        if (buf_reserve(buf, (size_t)n))
            return RM_ENOMEM;
        va_start(ap, fmt);
        vsnprintf(buf->b_data + buf->b_len, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    buf->b_len += (size_t)n;
    return 0;
}

static int b64url_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '-' ? 62 : c == '_' ? 63 : -1;
}

ssize_t buf_b64url_decode(const char *in, size_t len, unsigned char *out, size_t cap,
                          bool canonical)
{
    if (len % 4 == 1)
        return -1; /* one character left over encodes no whole byte */
    size_t n = 0;
    uint32_t bits = 0; /* decoded bits not yet in a whole byte */
    int bit_count = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value(in[i]);
        if (v < 0)
            return -1;
        bits = bits << 6 | (uint32_t)v;
        bit_count += 6;
        if (bit_count >= 8) {
            bit_count -= 8;
            if (n >= cap)
                return -1;
            out[n++] = (unsigned char)(bits >> bit_count);
            bits &= (UINT32_C(1) << bit_count) - 1;
        }
    }
    return canonical && bits ? -1 : (ssize_t)n;
}

const char *buf_i64_text(int64_t value, char tmp[BUF_I64_TEXT])
{
    char *p = &tmp[BUF_I64_TEXT - 1];
    /* Work in unsigned so INT64_MIN does not overflow on negation. */
    uint64_t mag = value < 0 ? (uint64_t)0 - (uint64_t)value : (uint64_t)value;
    *p = '\0';
    do {
        *--p = (char)('0' + mag % 10);
        mag /= 10;
    } while (mag);
    if (value < 0)
        *--p = '-';
    return p;
}

int buf_append_i64(buf_t *buf, int64_t value)
{
    char tmp[BUF_I64_TEXT];
    const char *text = buf_i64_text(value, tmp);
    return buf_append(buf, text, (size_t)(tmp + BUF_I64_TEXT - 1 - text));
}

/* Length of the valid UTF-8 sequence starting at s (at most avail bytes), or
 * 0 if it is not valid (overlong, surrogate, out of range, truncated). */
static size_t utf8_seq_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n > avail)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

int buf_append_json_str(buf_t *buf, const char *str, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    /* Worst case: every byte becomes \u00XX (6 bytes) or U+FFFD (3 bytes). */
    if (buf_reserve(buf, len * 6 + 2))
        return RM_ENOMEM;
    char *out = buf->b_data + buf->b_len;
    const unsigned char *s = (const unsigned char *)str;
    *out++ = '"';
    for (size_t i = 0; i < len;) {
        unsigned char c = s[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            *out++ = (char)c;
            i++;
            continue;
        }
        if (c < 0x80) {
            *out++ = '\\';
            switch (c) {
            case '"':
                *out++ = '"';
                break;
            case '\\':
                *out++ = '\\';
                break;
            case '\n':
                *out++ = 'n';
                break;
            case '\r':
                *out++ = 'r';
                break;
            case '\t':
                *out++ = 't';
                break;
            case '\b':
                *out++ = 'b';
                break;
            case '\f':
                *out++ = 'f';
                break;
            default:
                *out++ = 'u';
                *out++ = '0';
                *out++ = '0';
                *out++ = hex[c >> 4];
                *out++ = hex[c & 15];
            }
            i++;
            continue;
        }
        size_t n = utf8_seq_len(s + i, len - i);
        if (n == 0) {
            memcpy(out, "\xEF\xBF\xBD", 3);
            out += 3;
            i++;
        } else {
            memcpy(out, s + i, n);
            out += n;
            i += n;
        }
    }
    *out++ = '"';
    buf->b_len = (size_t)(out - buf->b_data);
    buf->b_data[buf->b_len] = '\0';
    return 0;
}
