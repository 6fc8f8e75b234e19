/* buf: a growable byte buffer, and appenders that write JSON text into it.
 *
 * Used on hot paths (fragment encoding, response assembly): a buffer is reset
 * and reused, so in the steady state appending allocates nothing. All
 * functions return 0 or RM_ENOMEM; after RM_ENOMEM the buffer keeps its old
 * content. Not thread-safe: one buffer per thread. */
#ifndef RM_BUF_H
#define RM_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct buf {
    char *b_data;  /* always NUL-terminated when b_cap > 0 (the NUL is not in b_len) */
    size_t b_len;
    size_t b_cap;
} buf_t;

#define BUF_INIT {NULL, 0, 0}

void buf_init(buf_t *buf);
/* Frees the memory; the buffer is then empty and may be reused. NULL-safe. */
void buf_free(buf_t *buf);
/* Empties the buffer, keeping its memory. */
static inline void buf_reset(buf_t *buf)
{
    buf->b_len = 0;
    if (buf->b_cap)
        buf->b_data[0] = '\0';
}
/* Ensures room for extra more bytes (plus the NUL). */
int buf_reserve(buf_t *buf, size_t extra);
int buf_append(buf_t *buf, const void *data, size_t len);
int buf_append_str(buf_t *buf, const char *str);
int buf_append_char(buf_t *buf, char c);
int buf_printf(buf_t *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends a decimal integer. */
int buf_append_i64(buf_t *buf, int64_t value);
/* value in decimal, NUL-terminated, written at the end of tmp; returns its start (in
 * tmp). For hot paths where snprintf costs more than the text (response headers). */
/* Decodes unpadded base64url (RFC 4648 §5) of in[0..len) into out. Returns the byte
 * count, or -1 on a character outside the alphabet, more than cap bytes, a length that
 * leaves one character over (len % 4 == 1), or — when canonical — non-zero bits after
 * the last whole byte (so each value has one spelling). */
ssize_t buf_b64url_decode(const char *in, size_t len, unsigned char *out, size_t cap,
                          bool canonical);
#define BUF_I64_TEXT 24
const char *buf_i64_text(int64_t value, char tmp[BUF_I64_TEXT]);
/* Appends str as a quoted JSON string, escaping per RFC 8259. Bytes that are
 * not valid UTF-8 are replaced by U+FFFD, so the output is always valid JSON. */
int buf_append_json_str(buf_t *buf, const char *str, size_t len);

#endif
