/* mask: PII masks (see mask.h). */
#include "mask.h"

#include <string.h>

#define MASK_HIDDEN "***"
/* Initials kept from a name: enough for any real name, bounded for a hostile one. */
#define MASK_MAX_INITIALS 8

/* Length of the UTF-8 sequence that starts at s (1 for a stray continuation byte, so a
 * malformed string still advances). */
static size_t utf8_len(const char *s, size_t left)
{
    unsigned char c = (unsigned char)s[0];
    size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return n > left ? left : n;
}

static int last4(const char *value, size_t len, buf_t *out)
{
    char digits[4];
    size_t found = 0;
    for (size_t i = len; i > 0 && found < 4; i--)
        if (value[i - 1] >= '0' && value[i - 1] <= '9')
            digits[3 - found++] = value[i - 1];
    if (found < 4)
        return buf_append_json_str(out, MASK_HIDDEN, 3);
    char masked[8] = MASK_HIDDEN;
    memcpy(masked + 3, digits, 4);
    return buf_append_json_str(out, masked, 7);
}

static int email(const char *value, size_t len, buf_t *out)
{
    const char *at = memchr(value, '@', len);
    if (!at || at == value)
        return buf_append_json_str(out, MASK_HIDDEN, 3);
    buf_t tmp = BUF_INIT;
    size_t first = utf8_len(value, (size_t)(at - value));
    int rc = buf_append(&tmp, value, first);
    rc = rc ? rc : buf_append_str(&tmp, MASK_HIDDEN);
    rc = rc ? rc : buf_append(&tmp, at, len - (size_t)(at - value));
    rc = rc ? rc : buf_append_json_str(out, tmp.b_data, tmp.b_len);
    buf_free(&tmp);
    return rc;
}

static int initials(const char *value, size_t len, buf_t *out)
{
    char text[MASK_MAX_INITIALS * 7];
    size_t n = 0, count = 0;
    bool word_start = true;
    for (size_t i = 0; i < len && count < MASK_MAX_INITIALS;) {
        size_t clen = utf8_len(value + i, len - i);
        bool space = value[i] == ' ' || value[i] == '\t' || value[i] == '-';
        if (!space && word_start) {
            if (count++)
                text[n++] = ' ';
            memcpy(text + n, value + i, clen);
            n += clen;
            text[n++] = '.';
        }
        word_start = space;
        i += clen;
    }
    if (!count)
        return buf_append_json_str(out, MASK_HIDDEN, 3);
    return buf_append_json_str(out, text, n);
}

int mask_append_json(view_mask_t mask, const char *value, size_t len, buf_t *out)
{
    switch (mask) {
    case VIEW_MASK_LAST4:
        return last4(value, len, out);
    case VIEW_MASK_EMAIL:
        return email(value, len, out);
    case VIEW_MASK_INITIALS:
        return initials(value, len, out);
    case VIEW_MASK_REDACT:
        break;
    }
    return buf_append_json_str(out, MASK_HIDDEN, 3);
}
