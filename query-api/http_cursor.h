/* http_cursor: page cursors that show nothing and cannot be forged.
 *
 * A cursor names a position in one list section of one document (render.h
 * render_cursor_t: the sort key and item id of the last item returned). Handed out as is,
 * it would show both whatever the caller's field allowlist says, and a hand-made one would
 * answer "which items sort after X" for any X: a binary-search oracle on the sort field.
 * So a cursor is sealed: deterministic authenticated encryption (SIV built from
 * HMAC-SHA256, RFC 5297's construction with HMAC in place of CMAC and CTR):
 *   P   = sort key (be64) | id length (1 byte) | id, zero-padded to VIEW_KEY_MAX_BYTES
 *   T   = HMAC(mac key, "rm-cursor-2" \0 view \0 key \0 section \0 P), first 16 bytes
 *   C   = P xor HMAC(enc key, T | be32 0) | HMAC(enc key, T | be32 1) | ...
 *   out = base64url(version 2 | T | C)
 * P has one length for every cursor, so not even the id's length shows. T binds the
 * cursor to the view, the document key and the section: a cursor of another key or
 * section, an altered byte or a hand-made one fails the check (a 400). Deterministic: the
 * same position gives the same cursor, so a document's entity tag (http_etag.h) stays put.
 *
 * The mac and enc keys are derived from one server key: query_api.cursor_key_file (or
 * RM_CURSOR_KEY), shared by every replica behind one address so that a cursor from one is
 * good at another; neither set, a random key drawn at start (cursors then die with the
 * process, and differ between replicas). Thread: keys are written once at start, then
 * read by any HTTP worker. */
#ifndef RM_HTTP_CURSOR_H
#define RM_HTTP_CURSOR_H

#include "cfg.h"
#include "render.h"

#include <stddef.h>
#include <stdint.h>

#define HTTP_CURSOR_KEY_BYTES 32
/* version + 16-byte tag + 8 + 1 + VIEW_KEY_MAX_BYTES, in unpadded base64url */
#define HTTP_CURSOR_SEALED_BYTES (1 + 16 + 8 + 1 + VIEW_KEY_MAX_BYTES)
#define HTTP_CURSOR_TEXT_MAX ((HTTP_CURSOR_SEALED_BYTES * 4 + 2) / 3)

typedef struct http_cursor_keys {
    unsigned char ck_mac[HTTP_CURSOR_KEY_BYTES];
    unsigned char ck_enc[HTTP_CURSOR_KEY_BYTES];
} http_cursor_keys_t;

/* Where a cursor is good: one list section of one document. Borrowed strings; key has
 * key_len bytes and no NUL. */
typedef struct http_cursor_scope {
    const http_cursor_keys_t *cs_keys;
    const char *cs_view;
    const char *cs_key;
    size_t cs_key_len;
} http_cursor_scope_t;

/* Derives the keys from query_api.cursor_key_file, else query_api.cursor_key (at least
 * 32 bytes either way), else a random key. Returns 0, or RM_ECONFIG with errstr filled (an
 * unreadable or short key file, a short key, no randomness). *ret_random says whether the
 * key was drawn at random (the caller may warn that cursors will not cross replicas). */
int http_cursor_keys_init(http_cursor_keys_t *keys, const cfg_t *cfg, bool *ret_random,
                          char *errstr, size_t errlen);

/* Writes the sealed cursor (rc_set) of section in scope into out (cap >=
 * HTTP_CURSOR_TEXT_MAX + 1, NUL-terminated). Returns its length, or 0 when it does not fit
 * or HMAC fails. */
size_t http_cursor_seal(const http_cursor_scope_t *scope, const char *section,
                        const render_cursor_t *cursor, char *out, size_t cap);

/* Opens text, a cursor http_cursor_seal wrote for section in scope. Returns 0 and
 * *ret_cursor (rc_set), or RM_EINVAL for anything else: bad base64url, wrong length or
 * version, a tag that does not check (another view, key or section, an altered or made-up
 * cursor, another server key), an impossible id. Constant time in the tag comparison. */
int http_cursor_open(const http_cursor_scope_t *scope, const char *section, const char *text,
                     render_cursor_t *ret_cursor);

#endif
