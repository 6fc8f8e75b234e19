/* http_cursor: sealed page cursors (see http_cursor.h). */
#include "http_cursor.h"
#include "buf.h"
#include "rm_err.h"
#include "store.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#define CURSOR_VERSION 2 /* 1 was the unsealed layout: refused */
#define CURSOR_TAG_BYTES 16
#define CURSOR_PLAIN_BYTES (8 + 1 + VIEW_KEY_MAX_BYTES)
#define CURSOR_KEY_MAX_BYTES 256 /* longest configured key read */
#define CURSOR_DOMAIN "rm-cursor-2"

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int derive(const unsigned char *master, size_t len, const char *label, unsigned char *out)
{
    unsigned int n = 0;
    return HMAC(EVP_sha256(), master, (int)len, (const unsigned char *)label, strlen(label), out,
                &n) &&
                   n == HTTP_CURSOR_KEY_BYTES
               ? 0
               : RM_ECONFIG;
}

int http_cursor_keys_init(http_cursor_keys_t *keys, const cfg_t *cfg, bool *ret_random,
                          char *errstr, size_t errlen)
{
    const char *path = cfg_str(cfg, "query_api.cursor_key_file");
    const char *inline_key = cfg_str(cfg, "query_api.cursor_key");
    unsigned char master[CURSOR_KEY_MAX_BYTES];
    size_t n = 0;
    bool random = false;
    if (*path) {
        FILE *f = fopen(path, "rb");
        n = f ? fread(master, 1, sizeof(master), f) : 0;
        int err = errno;
        if (f)
            fclose(f);
        while (n && (master[n - 1] == '\n' || master[n - 1] == '\r'))
            n--;
        if (n < HTTP_CURSOR_KEY_BYTES) {
            snprintf(errstr, errlen, "query_api.cursor_key_file: %s: %s", path,
                     f ? "shorter than 32 bytes" : strerror(err));
            OPENSSL_cleanse(master, sizeof(master));
            return RM_ECONFIG;
        }
    } else if (*inline_key) {
        n = strlen(inline_key);
        if (n < HTTP_CURSOR_KEY_BYTES || n > sizeof(master)) {
            snprintf(errstr, errlen, "query_api.cursor_key: must have 32 to %d bytes",
                     CURSOR_KEY_MAX_BYTES);
            return RM_ECONFIG;
        }
        memcpy(master, inline_key, n);
    } else {
        n = HTTP_CURSOR_KEY_BYTES;
        random = true;
        if (RAND_bytes(master, (int)n) != 1) {
            snprintf(errstr, errlen, "query_api.cursor_key: cannot draw a random key");
            return RM_ECONFIG;
        }
    }
    int rc = derive(master, n, "readmodel cursor mac", keys->ck_mac);
    rc = rc ? rc : derive(master, n, "readmodel cursor enc", keys->ck_enc);
    OPENSSL_cleanse(master, sizeof(master));
    if (rc) {
        snprintf(errstr, errlen, "query_api.cursor_key: HMAC-SHA256 failed");
        return rc;
    }
    *ret_random = random;
    return 0;
}

/* T over the scope and the plaintext (http_cursor.h). */
static int tag_of(const http_cursor_scope_t *scope, const char *section, const unsigned char *plain,
                  unsigned char tag[CURSOR_TAG_BYTES])
{
    unsigned char full[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    static const unsigned char zero = 0;
    /* The pieces are joined for the one-shot HMAC() (HMAC_CTX is deprecated in OpenSSL 3,
     * and EVP_MAC would fetch the algorithm on every call). */
    unsigned char msg[sizeof(CURSOR_DOMAIN) + VIEW_NAME_MAX_BYTES + 1 + VIEW_KEY_MAX_BYTES + 1 +
                      VIEW_NAME_MAX_BYTES + 1 + CURSOR_PLAIN_BYTES];
    size_t view_len = strlen(scope->cs_view), section_len = strlen(section);
    if (view_len > VIEW_NAME_MAX_BYTES || section_len > VIEW_NAME_MAX_BYTES ||
        scope->cs_key_len > VIEW_KEY_MAX_BYTES)
        return RM_EINVAL;
    size_t len = 0;
    memcpy(msg, CURSOR_DOMAIN, sizeof(CURSOR_DOMAIN)); /* with its NUL */
    len += sizeof(CURSOR_DOMAIN);
    memcpy(msg + len, scope->cs_view, view_len);
    len += view_len;
    msg[len++] = zero;
    memcpy(msg + len, scope->cs_key, scope->cs_key_len);
    len += scope->cs_key_len;
    msg[len++] = zero;
    memcpy(msg + len, section, section_len);
    len += section_len;
    msg[len++] = zero;
    memcpy(msg + len, plain, CURSOR_PLAIN_BYTES);
    len += CURSOR_PLAIN_BYTES;
    bool ok = HMAC(EVP_sha256(), scope->cs_keys->ck_mac, HTTP_CURSOR_KEY_BYTES, msg, len, full,
                   &n) != NULL;
    if (!ok || n < CURSOR_TAG_BYTES)
        return RM_EINVAL;
    memcpy(tag, full, CURSOR_TAG_BYTES);
    return 0;
}

/* data ^= the keystream of tag (http_cursor.h). */
static int keystream_xor(const http_cursor_keys_t *keys, const unsigned char tag[CURSOR_TAG_BYTES],
                         unsigned char *data, size_t len)
{
    unsigned char block_in[CURSOR_TAG_BYTES + 4], block[EVP_MAX_MD_SIZE];
    memcpy(block_in, tag, CURSOR_TAG_BYTES);
    for (size_t off = 0, counter = 0; off < len; counter++) {
        store_be32(block_in + CURSOR_TAG_BYTES, (uint32_t)counter);
        unsigned int n = 0;
        if (!HMAC(EVP_sha256(), keys->ck_enc, HTTP_CURSOR_KEY_BYTES, block_in, sizeof(block_in),
                  block, &n) ||
            n == 0)
            return RM_EINVAL;
        for (unsigned int i = 0; i < n && off < len; i++)
            data[off++] ^= block[i];
    }
    return 0;
}

size_t http_cursor_seal(const http_cursor_scope_t *scope, const char *section,
                        const render_cursor_t *cursor, char *out, size_t cap)
{
    unsigned char raw[HTTP_CURSOR_SEALED_BYTES];
    unsigned char *tag = raw + 1, *plain = raw + 1 + CURSOR_TAG_BYTES;
    if (cursor->rc_id_len > VIEW_KEY_MAX_BYTES || cap < HTTP_CURSOR_TEXT_MAX + 1)
        return 0;
    raw[0] = CURSOR_VERSION;
    memset(plain, 0, CURSOR_PLAIN_BYTES);
    store_be64(plain, (uint64_t)cursor->rc_sort);
    plain[8] = (unsigned char)cursor->rc_id_len;
    memcpy(plain + 9, cursor->rc_id, cursor->rc_id_len);
    if (tag_of(scope, section, plain, tag) ||
        keystream_xor(scope->cs_keys, tag, plain, CURSOR_PLAIN_BYTES))
        return 0;
    size_t n = 0;
    for (size_t i = 0; i < sizeof(raw); i += 3) {
        uint32_t chunk = (uint32_t)raw[i] << 16;
        if (i + 1 < sizeof(raw))
            chunk |= (uint32_t)raw[i + 1] << 8;
        if (i + 2 < sizeof(raw))
            chunk |= raw[i + 2];
        size_t chars = sizeof(raw) - i >= 3 ? 4 : sizeof(raw) - i + 1; /* unpadded */
        for (size_t c = 0; c < chars; c++)
            out[n++] = b64url[(chunk >> (18 - 6 * c)) & 63];
    }
    out[n] = '\0';
    OPENSSL_cleanse(raw, sizeof(raw));
    return n;
}

int http_cursor_open(const http_cursor_scope_t *scope, const char *section, const char *text,
                     render_cursor_t *ret_cursor)
{
    size_t len = strlen(text);
    unsigned char raw[HTTP_CURSOR_SEALED_BYTES + 3];
    if (len > HTTP_CURSOR_TEXT_MAX)
        return RM_EINVAL;
    ssize_t decoded = buf_b64url_decode(text, len, raw, sizeof(raw), true);
    if (decoded != HTTP_CURSOR_SEALED_BYTES || raw[0] != CURSOR_VERSION)
        return RM_EINVAL;
    unsigned char *tag = raw + 1, *plain = raw + 1 + CURSOR_TAG_BYTES;
    unsigned char want[CURSOR_TAG_BYTES];
    if (keystream_xor(scope->cs_keys, tag, plain, CURSOR_PLAIN_BYTES) ||
        tag_of(scope, section, plain, want) || CRYPTO_memcmp(want, tag, CURSOR_TAG_BYTES) != 0)
        return RM_EINVAL;
    size_t id_len = plain[8];
    /* Only a cursor this server sealed gets here, so these hold; checked all the same. */
    if (id_len == 0 || id_len > VIEW_KEY_MAX_BYTES || memchr(plain + 9, '\0', id_len))
        return RM_EINVAL;
    ret_cursor->rc_set = true;
    ret_cursor->rc_sort = (int64_t)store_get_be64(plain);
    ret_cursor->rc_id_len = id_len;
    memcpy(ret_cursor->rc_id, plain + 9, id_len);
    OPENSSL_cleanse(raw, sizeof(raw));
    return 0;
}
