/* audit: the audit log of view reads (see audit.h). */
#include "audit.h"
#include "buf.h"
#include "rm_err.h"
#include "rm_time.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* 32 bytes: the HMAC-SHA256 block gains nothing from a longer key than the hash. */
#define AUDIT_KEY_BYTES 32
#define AUDIT_KEY_MAX_BYTES 1024

struct audit {
    int au_fd;          /* -1: no audit log */
    bool au_own_fd;
    unsigned char au_key[AUDIT_KEY_MAX_BYTES];
    size_t au_key_len;
};

static int load_key(audit_t *audit, const cfg_t *cfg, const char **ret_warning, char *errstr,
                    size_t errlen)
{
    const char *path = cfg_str(cfg, "query_api.audit.hmac_key_file");
    const char *inline_key = cfg_str(cfg, "query_api.audit.hmac_key");
    if (*path) {
        FILE *f = fopen(path, "rb");
        size_t n = f ? fread(audit->au_key, 1, sizeof(audit->au_key), f) : 0;
        if (f)
            fclose(f);
        while (n && (audit->au_key[n - 1] == '\n' || audit->au_key[n - 1] == '\r'))
            n--;
        if (n < 16) {
            snprintf(errstr, errlen, "query_api.audit.hmac_key_file: %s: %s", path,
                     f ? "shorter than 16 bytes" : strerror(errno));
            return RM_ECONFIG;
        }
        audit->au_key_len = n;
    } else if (*inline_key) {
        size_t n = strlen(inline_key);
        if (n < 16 || n > sizeof(audit->au_key)) {
            snprintf(errstr, errlen, "query_api.audit.hmac_key: must have 16 to %d bytes",
                     AUDIT_KEY_MAX_BYTES);
            return RM_ECONFIG;
        }
        memcpy(audit->au_key, inline_key, n);
        audit->au_key_len = n;
    } else {
        if (RAND_bytes(audit->au_key, AUDIT_KEY_BYTES) != 1) {
            snprintf(errstr, errlen, "query_api.audit: cannot draw a random HMAC key");
            return RM_ECONFIG;
        }
        audit->au_key_len = AUDIT_KEY_BYTES;
        if (*cfg_str(cfg, "query_api.audit.file"))
            *ret_warning = "no query_api.audit.hmac_key_file: customer ids in the audit log are "
                       "hashed with a random key drawn at start (comparable within this run only)";
    }
    return 0;
}

audit_t *audit_new(const cfg_t *cfg, const char **ret_warning, char *errstr, size_t errlen)
{
    audit_t *audit = calloc(1, sizeof(*audit));
    if (!audit) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    audit->au_fd = -1;
    *ret_warning = NULL;
    if (load_key(audit, cfg, ret_warning, errstr, errlen)) {
        audit_destroy(audit);
        return NULL;
    }
    const char *path = cfg_str(cfg, "query_api.audit.file");
    if (strcmp(path, "-") == 0) {
        audit->au_fd = STDERR_FILENO;
    } else if (*path) {
        audit->au_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (audit->au_fd < 0) {
            snprintf(errstr, errlen, "query_api.audit.file: %s: %s", path, strerror(errno));
            audit_destroy(audit);
            return NULL;
        }
        audit->au_own_fd = true;
    }
    return audit;
}

void audit_destroy(audit_t *audit)
{
    if (!audit)
        return;
    if (audit->au_own_fd)
        close(audit->au_fd);
    OPENSSL_cleanse(audit->au_key, sizeof(audit->au_key));
    free(audit);
}

void audit_hmac_hex(const audit_t *audit, const void *data, size_t len, char out[65])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    HMAC(EVP_sha256(), audit->au_key, (int)audit->au_key_len, data, len, digest, &digest_len);
    for (unsigned i = 0; i < digest_len && i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
}

int audit_write(audit_t *audit, const audit_record_t *record)
{
    if (audit->au_fd < 0)
        return 0;
    buf_t b = BUF_INIT;
    int rc = buf_printf(&b, "{\"ts_ms\":%lld,\"event\":\"%s\",\"principal\":",
                        (long long)rm_wall_ms(), record->ar_event);
    rc = rc ? rc : buf_append_json_str(&b, record->ar_principal, strlen(record->ar_principal));
    rc = rc ? rc : buf_printf(&b, ",\"auth\":\"%s\",\"request_id\":", record->ar_method);
    rc = rc ? rc : buf_append_json_str(&b, record->ar_request_id, strlen(record->ar_request_id));
    rc = rc ? rc : buf_append_str(&b, ",\"view\":");
    rc = rc ? rc : buf_append_json_str(&b, record->ar_view, strlen(record->ar_view));
    char hex[65];
    if (!rc && record->ar_key) {
        audit_hmac_hex(audit, record->ar_key, record->ar_key_len, hex);
        rc = buf_printf(&b, ",\"key_hmac\":\"%s\"", hex);
    }
    if (!rc && record->ar_index) {
        audit_hmac_hex(audit, record->ar_value, record->ar_value_len, hex);
        rc = buf_printf(&b, ",\"index\":\"%s\",\"value_hmac\":\"%s\"", record->ar_index, hex);
    }
    rc = rc ? rc : buf_append_str(&b, ",\"sections\":[");
    bool comma = false;
    for (size_t s = 0; !rc && record->ar_section_names[s]; s++) {
        if (!(record->ar_sections & (UINT32_C(1) << s)))
            continue;
        rc = buf_printf(&b, "%s\"%s\"", comma ? "," : "", record->ar_section_names[s]);
        comma = true;
    }
    rc = rc ? rc : buf_printf(&b, "],\"status\":%u}\n", record->ar_status);
    if (!rc) {
        ssize_t n = write(audit->au_fd, b.b_data, b.b_len);
        rc = n == (ssize_t)b.b_len ? 0 : RM_EIO;
    }
    buf_free(&b);
    return rc;
}
