/* audit: the audit log of view reads (see audit.h).
 *
 * Notes on the design:
 * (1) One write(2) per request was a third of the query API's syscalls under load
 *     (strace: recvfrom, sendmsg, write per request) and syscalls are dear on this VM;
 *     so lines go to au_pending under au_lock and the flusher thread writes them in
 *     batches. The expensive part of a line, its HMACs, is computed before the lock.
 * (2) The flusher starts its clock at the first line of a batch (au_first_ns), so a line
 *     waits at most flush_ms, and an idle log costs no wake-ups at all.
 * (3) A batch is swapped out under the lock and written outside it: request threads
 *     keep appending while the disk works. Past AUDIT_MAX_PENDING_BYTES they wait for
 *     the flusher — a slow disk slows reads down, it never drops their lines.
 * (4) HMAC-SHA256 with the key's inner and outer blocks hashed once at start (RFC 2104
 *     §4, "precomputed"): per line two SHA-256 compressions instead of four, and no
 *     OpenSSL 3 provider fetch and context allocation per call, which HMAC() does
 *     (callgrind: 20,700 instructions per line before, about 5,000 after). */
/* SHA256_Init/Update/Final and SHA256_CTX are deprecated in OpenSSL 3 in favour of the
 * EVP API, which cannot copy a digest state without allocating (note 4). */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "audit.h"
#include "buf.h"
#include "rm_err.h"
#include "rm_time.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* 32 bytes: the HMAC-SHA256 block gains nothing from a longer key than the hash. */
#define AUDIT_KEY_BYTES 32
#define AUDIT_KEY_MAX_BYTES 1024
#define AUDIT_SHA256_BLOCK 64
/* A batch this large is written at once, before flush_ms: ~250 lines, one write. */
#define AUDIT_FLUSH_BYTES (64 * 1024)
/* Request threads wait beyond this (note 3): ~1 s of lines at 30k reads/s. */
#define AUDIT_MAX_PENDING_BYTES (8 * 1024 * 1024)

struct audit {
    int au_fd;          /* -1: no audit log */
    bool au_own_fd;
    bool au_pipe_sized; /* not a regular file: writes of at most PIPE_BUF, whole lines */
    SHA256_CTX au_inner; /* the key's ipad block hashed (note 4) */
    SHA256_CTX au_outer; /* the key's opad block hashed */
    int64_t au_flush_ms; /* 0: every line written by audit_write itself */
    pthread_mutex_t au_lock;
    pthread_cond_t au_wake;    /* flusher: a batch began, grew past AUDIT_FLUSH_BYTES, or stop */
    pthread_cond_t au_drained; /* request threads: au_pending has room again */
    buf_t au_pending;          /* whole lines not yet written; au_lock */
    int64_t au_first_ns;       /* monotonic time of au_pending's first line; au_lock */
    bool au_stop;              /* au_lock */
    bool au_flusher_started;
    pthread_t au_flusher;
    uint64_t au_lost_lines; /* atomic */
};

static void hmac_prepare(audit_t *audit, const unsigned char *key, size_t key_len)
{
    unsigned char block[AUDIT_SHA256_BLOCK] = {0};
    if (key_len > sizeof(block))
        SHA256(key, key_len, block); /* RFC 2104: a longer key is hashed first */
    else
        memcpy(block, key, key_len);
    unsigned char pad[AUDIT_SHA256_BLOCK];
    for (size_t i = 0; i < sizeof(pad); i++)
        pad[i] = block[i] ^ 0x36;
    SHA256_Init(&audit->au_inner);
    SHA256_Update(&audit->au_inner, pad, sizeof(pad));
    for (size_t i = 0; i < sizeof(pad); i++)
        pad[i] = block[i] ^ 0x5c;
    SHA256_Init(&audit->au_outer);
    SHA256_Update(&audit->au_outer, pad, sizeof(pad));
    OPENSSL_cleanse(block, sizeof(block));
    OPENSSL_cleanse(pad, sizeof(pad));
}

static int load_key(audit_t *audit, const cfg_t *cfg, const char **ret_warning, char *errstr,
                    size_t errlen)
{
    const char *path = cfg_str(cfg, "query_api.audit.hmac_key_file");
    const char *inline_key = cfg_str(cfg, "query_api.audit.hmac_key");
    unsigned char key[AUDIT_KEY_MAX_BYTES];
    size_t n;
    if (*path) {
        FILE *f = fopen(path, "rb");
        n = f ? fread(key, 1, sizeof(key), f) : 0;
        if (f)
            fclose(f);
        while (n && (key[n - 1] == '\n' || key[n - 1] == '\r'))
            n--;
        if (n < 16) {
            snprintf(errstr, errlen, "query_api.audit.hmac_key_file: %s: %s", path,
                     f ? "shorter than 16 bytes" : strerror(errno));
            OPENSSL_cleanse(key, sizeof(key));
            return RM_ECONFIG;
        }
    } else if (*inline_key) {
        n = strlen(inline_key);
        if (n < 16 || n > sizeof(key)) {
            snprintf(errstr, errlen, "query_api.audit.hmac_key: must have 16 to %d bytes",
                     AUDIT_KEY_MAX_BYTES);
            return RM_ECONFIG;
        }
        memcpy(key, inline_key, n);
    } else {
        if (RAND_bytes(key, AUDIT_KEY_BYTES) != 1) {
            snprintf(errstr, errlen, "query_api.audit: cannot draw a random HMAC key");
            return RM_ECONFIG;
        }
        n = AUDIT_KEY_BYTES;
        if (*cfg_str(cfg, "query_api.audit.file"))
            *ret_warning =
                "no query_api.audit.hmac_key_file: customer ids in the audit log are "
                "hashed with a random key drawn at start (comparable within this run only)";
    }
    hmac_prepare(audit, key, n);
    OPENSSL_cleanse(key, sizeof(key));
    return 0;
}

/* Counts the lines in [data, data + len): what a failed write lost. */
static uint64_t lines_in(const char *data, size_t len)
{
    uint64_t lines = 0;
    for (const char *p = data; (p = memchr(p, '\n', (size_t)(data + len - p))); p++)
        lines++;
    return lines;
}

/* Writes whole lines; on a pipe or terminal in pieces of at most PIPE_BUF that end at a
 * line's end, which the kernel writes atomically (a longer line goes alone, as before). */
static void write_lines(audit_t *audit, const char *data, size_t len)
{
    while (len) {
        size_t piece = len;
        if (audit->au_pipe_sized && piece > PIPE_BUF) {
            const char *end = data + PIPE_BUF;
            while (end > data && end[-1] != '\n')
                end--;
            if (end == data) { /* one line longer than PIPE_BUF */
                const char *nl = memchr(data + PIPE_BUF, '\n', len - PIPE_BUF);
                end = nl ? nl + 1 : data + len;
            }
            piece = (size_t)(end - data);
        }
        ssize_t n = write(audit->au_fd, data, piece);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            __atomic_fetch_add(&audit->au_lost_lines, lines_in(data, len), __ATOMIC_RELAXED);
            return;
        }
        data += n;
        len -= (size_t)n;
    }
}

static void deadline_after(struct timespec *ts, int64_t mono_ns)
{
    ts->tv_sec = (time_t)(mono_ns / 1000000000);
    ts->tv_nsec = (long)(mono_ns % 1000000000);
}

static void *flusher_main(void *arg)
{
    audit_t *audit = arg;
    buf_t writing = BUF_INIT;
    pthread_mutex_lock(&audit->au_lock);
    for (;;) {
        while (!audit->au_pending.b_len && !audit->au_stop)
            pthread_cond_wait(&audit->au_wake, &audit->au_lock);
        if (!audit->au_pending.b_len)
            break; /* stopped, and everything is written */
        struct timespec deadline;
        deadline_after(&deadline, audit->au_first_ns + audit->au_flush_ms * 1000000);
        while (!audit->au_stop && audit->au_pending.b_len < AUDIT_FLUSH_BYTES &&
               pthread_cond_timedwait(&audit->au_wake, &audit->au_lock, &deadline) != ETIMEDOUT)
            ;
        buf_t batch = audit->au_pending; /* note 3: swap, write outside the lock */
        audit->au_pending = writing;
        writing = batch;
        pthread_cond_broadcast(&audit->au_drained);
        pthread_mutex_unlock(&audit->au_lock);
        write_lines(audit, writing.b_data, writing.b_len);
        buf_reset(&writing);
        pthread_mutex_lock(&audit->au_lock);
    }
    pthread_mutex_unlock(&audit->au_lock);
    buf_free(&writing);
    return NULL;
}

static int start_flusher(audit_t *audit)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* rm_mono_ns's clock */
    int rc = pthread_cond_init(&audit->au_wake, &attr);
    pthread_condattr_destroy(&attr);
    if (rc)
        return RM_ENOMEM;
    if (pthread_create(&audit->au_flusher, NULL, flusher_main, audit)) {
        pthread_cond_destroy(&audit->au_wake);
        return RM_ENOMEM;
    }
    pthread_setname_np(audit->au_flusher, "audit-flush");
    audit->au_flusher_started = true;
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
    pthread_mutex_init(&audit->au_lock, NULL);
    pthread_cond_init(&audit->au_drained, NULL);
    buf_init(&audit->au_pending);
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
    struct stat st;
    audit->au_pipe_sized = audit->au_fd >= 0 && (fstat(audit->au_fd, &st) || !S_ISREG(st.st_mode));
    audit->au_flush_ms = cfg_int(cfg, "query_api.audit.flush_ms");
    if (audit->au_fd >= 0 && audit->au_flush_ms > 0 && start_flusher(audit)) {
        snprintf(errstr, errlen, "query_api.audit: cannot start the flusher thread");
        audit_destroy(audit);
        return NULL;
    }
    return audit;
}

void audit_destroy(audit_t *audit)
{
    if (!audit)
        return;
    if (audit->au_flusher_started) {
        pthread_mutex_lock(&audit->au_lock);
        audit->au_stop = true; /* the flusher writes what is pending, then returns */
        pthread_cond_signal(&audit->au_wake);
        pthread_mutex_unlock(&audit->au_lock);
        pthread_join(audit->au_flusher, NULL);
        pthread_cond_destroy(&audit->au_wake);
    }
    if (audit->au_own_fd)
        close(audit->au_fd);
    pthread_cond_destroy(&audit->au_drained);
    pthread_mutex_destroy(&audit->au_lock);
    buf_free(&audit->au_pending);
    OPENSSL_cleanse(&audit->au_inner, sizeof(audit->au_inner));
    OPENSSL_cleanse(&audit->au_outer, sizeof(audit->au_outer));
    free(audit);
}

void audit_hmac_hex(const audit_t *audit, const void *data, size_t len, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char inner[SHA256_DIGEST_LENGTH], digest[SHA256_DIGEST_LENGTH];
    SHA256_CTX ctx = audit->au_inner; /* note 4 */
    SHA256_Update(&ctx, data, len);
    SHA256_Final(inner, &ctx);
    ctx = audit->au_outer;
    SHA256_Update(&ctx, inner, sizeof(inner));
    SHA256_Final(digest, &ctx);
    OPENSSL_cleanse(&ctx, sizeof(ctx));
    for (size_t i = 0; i < sizeof(digest); i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
    out[64] = '\0';
}

static int append_line(buf_t *b, const audit_record_t *record, const char *key_hex,
                       const char *value_hex)
{
    int rc = buf_append_str(b, "{\"ts_ms\":");
    rc = rc ? rc : buf_append_i64(b, rm_wall_ms());
    rc = rc ? rc : buf_append_str(b, ",\"event\":\"");
    rc = rc ? rc : buf_append_str(b, record->ar_event);
    rc = rc ? rc : buf_append_str(b, "\",\"principal\":");
    rc = rc ? rc : buf_append_json_str(b, record->ar_principal, strlen(record->ar_principal));
    rc = rc ? rc : buf_append_str(b, ",\"auth\":\"");
    rc = rc ? rc : buf_append_str(b, record->ar_method);
    rc = rc ? rc : buf_append_str(b, "\",\"request_id\":");
    rc = rc ? rc : buf_append_json_str(b, record->ar_request_id, strlen(record->ar_request_id));
    rc = rc ? rc : buf_append_str(b, ",\"view\":");
    rc = rc ? rc : buf_append_json_str(b, record->ar_view, strlen(record->ar_view));
    /* Appended, not printf'd: this runs for every read (the hex digits and the view's
     * index names need no escaping). */
    if (!rc && key_hex) {
        rc = buf_append_str(b, ",\"key_hmac\":\"");
        rc = rc ? rc : buf_append(b, key_hex, 64);
        rc = rc ? rc : buf_append_char(b, '"');
    }
    if (!rc && value_hex) {
        rc = buf_append_str(b, ",\"index\":\"");
        rc = rc ? rc : buf_append_str(b, record->ar_index);
        rc = rc ? rc : buf_append_str(b, "\",\"value_hmac\":\"");
        rc = rc ? rc : buf_append(b, value_hex, 64);
        rc = rc ? rc : buf_append_char(b, '"');
    }
    rc = rc ? rc : buf_append_str(b, ",\"sections\":[");
    bool comma = false;
    for (size_t s = 0; !rc && record->ar_section_names[s]; s++) {
        if (!(record->ar_sections & (UINT32_C(1) << s)))
            continue;
        rc = buf_append_str(b, comma ? ",\"" : "\"");
        rc = rc ? rc : buf_append_str(b, record->ar_section_names[s]);
        rc = rc ? rc : buf_append_char(b, '"');
        comma = true;
    }
    rc = rc ? rc : buf_append_str(b, "],\"status\":");
    rc = rc ? rc : buf_append_i64(b, record->ar_status);
    return rc ? rc : buf_append_str(b, "}\n");
}

int audit_write(audit_t *audit, const audit_record_t *record)
{
    if (audit->au_fd < 0)
        return 0;
    char key_hex[65], value_hex[65]; /* note 1: hashed before the lock */
    if (record->ar_key)
        audit_hmac_hex(audit, record->ar_key, record->ar_key_len, key_hex);
    if (record->ar_index)
        audit_hmac_hex(audit, record->ar_value, record->ar_value_len, value_hex);
    pthread_mutex_lock(&audit->au_lock);
    buf_t *pending = &audit->au_pending;
    while (audit->au_flusher_started && pending->b_len >= AUDIT_MAX_PENDING_BYTES)
        pthread_cond_wait(&audit->au_drained, &audit->au_lock); /* note 3 */
    size_t start = pending->b_len;
    int rc = append_line(pending, record, record->ar_key ? key_hex : NULL,
                         record->ar_index ? value_hex : NULL);
    if (rc) {
        pending->b_len = start; /* no half line, ever */
    } else if (!audit->au_flusher_started) {
        ssize_t n = write(audit->au_fd, pending->b_data, pending->b_len);
        rc = n == (ssize_t)pending->b_len ? 0 : RM_EIO;
        buf_reset(pending);
    } else if (start == 0) {
        audit->au_first_ns = rm_mono_ns(); /* note 2: the batch's clock starts */
        pthread_cond_signal(&audit->au_wake);
    } else if (start < AUDIT_FLUSH_BYTES && pending->b_len >= AUDIT_FLUSH_BYTES) {
        pthread_cond_signal(&audit->au_wake);
    }
    pthread_mutex_unlock(&audit->au_lock);
    return rc;
}

uint64_t audit_lost_lines(const audit_t *audit)
{
    return __atomic_load_n(&audit->au_lost_lines, __ATOMIC_RELAXED);
}
