/* erasures: the erasure ledger of a view, an append-only file beside its generations. */
#include "erasures.h"
#include "rm_err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define ERASURES_TAG 'E'
#define ERASURES_FIXED_BYTES ERASURES_RECORD_BYTES(0) /* tag, key length, erased_at, checksum */

struct erasures {
    int er_fd; /* -1: read-only and the file does not exist (an empty ledger) */
    bool er_readonly;
    int64_t er_valid_end; /* end of the complete records seen so far */
};

static uint32_t erasures_fnv(const unsigned char *p, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

erasures_t *erasures_open(const char *view_dir, bool readonly, char *errstr, size_t errlen)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", view_dir, ERASURES_FILE) >= sizeof(path)) {
        snprintf(errstr, errlen, "%s: path too long", view_dir);
        return NULL;
    }
    erasures_t *erasures = calloc(1, sizeof(*erasures));
    if (!erasures) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    erasures->er_readonly = readonly;
    bool existed = access(path, F_OK) == 0;
    erasures->er_fd =
        open(path, readonly ? O_RDONLY | O_CLOEXEC : O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (erasures->er_fd < 0 && !(readonly && errno == ENOENT)) {
        snprintf(errstr, errlen, "%s: %s", path, strerror(errno));
        free(erasures);
        return NULL;
    }
    if (!readonly && !existed) {
        /* The new file's directory entry must survive an OS crash like its records. */
        int dfd = open(view_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int rc = dfd >= 0 ? fsync(dfd) : -1;
        if (dfd >= 0)
            close(dfd);
        if (rc) {
            snprintf(errstr, errlen, "%s: fsync: %s", view_dir, strerror(errno));
            erasures_close(erasures);
            return NULL;
        }
    }
    return erasures;
}

void erasures_close(erasures_t *erasures)
{
    if (!erasures)
        return;
    if (erasures->er_fd >= 0)
        close(erasures->er_fd);
    free(erasures);
}

bool erasures_readonly(const erasures_t *erasures)
{
    return erasures->er_readonly;
}

/* Reads the file from offset from to its end into a new buffer. */
static int read_from(const erasures_t *erasures, int64_t from, unsigned char **ret_data,
                     size_t *ret_len)
{
    *ret_data = NULL;
    *ret_len = 0;
    if (erasures->er_fd < 0)
        return 0;
    struct stat st;
    if (fstat(erasures->er_fd, &st))
        return RM_EIO;
    if (st.st_size <= from)
        return 0;
    size_t len = (size_t)(st.st_size - from), got = 0;
    unsigned char *data = malloc(len);
    if (!data)
        return RM_ENOMEM;
    while (got < len) {
        ssize_t n = pread(erasures->er_fd, data + got, len - got, (off_t)(from + (int64_t)got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* shorter than fstat said: another process cut a torn tail */
        got += (size_t)n;
    }
    *ret_data = data;
    *ret_len = got;
    return 0;
}

/* Length of the complete, intact record at p (0 when there is none). */
static size_t record_at(const unsigned char *p, size_t left, const char **ret_key,
                        size_t *ret_key_len, int64_t *ret_at)
{
    if (left < ERASURES_FIXED_BYTES || p[0] != ERASURES_TAG)
        return 0;
    size_t key_len = (size_t)p[1] | (size_t)p[2] << 8;
    size_t len = ERASURES_FIXED_BYTES + key_len;
    if (key_len == 0 || left < len)
        return 0;
    uint32_t sum = 0;
    for (int i = 0; i < 4; i++)
        sum |= (uint32_t)p[len - 4 + (size_t)i] << (8 * i);
    if (sum != erasures_fnv(p, len - 4))
        return 0;
    uint64_t at = 0;
    for (int i = 0; i < 8; i++)
        at |= (uint64_t)p[3 + key_len + (size_t)i] << (8 * i);
    *ret_key = (const char *)p + 3;
    *ret_key_len = key_len;
    *ret_at = (int64_t)at;
    return len;
}

int erasures_scan(erasures_t *erasures, int64_t from, erasures_cb cb, void *ctx, int64_t *ret_end)
{
    unsigned char *data;
    size_t len;
    int rc = read_from(erasures, from, &data, &len);
    if (rc)
        return rc;
    size_t pos = 0;
    for (;;) {
        const char *key;
        size_t key_len, n;
        int64_t at;
        if (!(n = record_at(data + pos, len - pos, &key, &key_len, &at)))
            break;
        if (cb && (rc = cb(ctx, key, key_len, at)))
            break;
        pos += n;
    }
    free(data);
    if (!rc && from + (int64_t)pos > erasures->er_valid_end)
        erasures->er_valid_end = from + (int64_t)pos;
    if (ret_end)
        *ret_end = from + (int64_t)pos;
    return rc;
}

int erasures_end(erasures_t *erasures, int64_t *ret_end)
{
    return erasures_scan(erasures, erasures->er_valid_end, NULL, NULL, ret_end);
}

static void put_le(unsigned char *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

int erasures_append(erasures_t *erasures, const char *const *keys, const size_t *lens,
                    const int64_t *erased_at_ms, size_t count)
{
    if (erasures->er_readonly || erasures->er_fd < 0)
        return RM_EINVAL;
    size_t total = 0;
    for (size_t i = 0; i < count; i++) {
        if (lens[i] == 0 || lens[i] > UINT16_MAX)
            return RM_EINVAL;
        total += ERASURES_FIXED_BYTES + lens[i];
    }
    if (!count)
        return 0;
    unsigned char *buf = malloc(total), *p = buf;
    if (!buf)
        return RM_ENOMEM;
    for (size_t i = 0; i < count; i++) {
        size_t len = ERASURES_FIXED_BYTES + lens[i];
        p[0] = ERASURES_TAG;
        put_le(p + 1, lens[i], 2);
        memcpy(p + 3, keys[i], lens[i]);
        put_le(p + 3 + lens[i], (uint64_t)erased_at_ms[i], 8);
        put_le(p + len - 4, erasures_fnv(p, len - 4), 4);
        p += len;
    }
    int rc = 0;
    while (flock(erasures->er_fd, LOCK_EX) && errno == EINTR)
        ;
    int64_t end;
    struct stat st;
    /* Under the lock, the end of the intact records is where this append goes; bytes
     * past it are a torn record of a crashed append, never read. */
    rc = erasures_end(erasures, &end);
    if (!rc && fstat(erasures->er_fd, &st))
        rc = RM_EIO;
    if (!rc && st.st_size > end && ftruncate(erasures->er_fd, (off_t)end))
        rc = RM_EIO;
    for (size_t done = 0; !rc && done < total;) {
        ssize_t n = pwrite(erasures->er_fd, buf + done, total - done, (off_t)(end + (int64_t)done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            rc = errno == ENOSPC ? RM_EDISKFULL : RM_EIO;
        else
            done += (size_t)n;
    }
    if (!rc && fdatasync(erasures->er_fd))
        rc = RM_EIO;
    if (!rc)
        erasures->er_valid_end = end + (int64_t)total;
    flock(erasures->er_fd, LOCK_UN);
    free(buf);
    return rc;
}
