/* wrlog: an LD_PRELOAD write-order recorder for crash-consistency tests (ALICE-style).
 *
 * Loaded into a process with LD_PRELOAD, it logs, in the order they complete, every
 * write, truncation, sync, rename and unlink on files whose path contains
 * $RM_WRLOG_MATCH, with the bytes written, into the binary file $RM_WRLOG. The replay
 * (tests/integration/crashimg.py) builds from it the disk states an OS crash may leave:
 * everything a completed sync covered, plus any subset of the writes after it.
 *
 * Notes on the design:
 * (1) A write is logged after the real call returns, a sync's begin before the real call
 *     and its end after it. So a write logged before a SYNC_BEGIN completed before that
 *     sync started, and the sync covers it; a write logged later is never assumed
 *     covered (conservative when threads race).
 * (2) write(2) and writev(2) carry no offset: LMDB seeks and then writev()s, so the
 *     position is read with lseek(fd, 0, SEEK_CUR) before the call.
 * (3) A file opened with O_DSYNC or O_SYNC (LMDB's meta-page descriptor in sync mode)
 *     makes each of its writes durable on return; its records carry that flag.
 * (4) One mutex orders the records; the real I/O runs outside it except for the log's
 *     own write, so the recorded process keeps its concurrency.
 *
 * Record: struct wrlog_rec, then wr_len payload bytes (the data of a WRITE, a path for
 * OPEN and UNLINK, "from\0to" for RENAME). Little-endian, as on the recording host. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

enum wrlog_op {
    WRLOG_OPEN = 1, /* wr_file: a new file id; wr_aux: open flags; payload: path */
    WRLOG_WRITE = 2, /* wr_offset, wr_len, payload; wr_aux 1: O_DSYNC (note 3) */
    WRLOG_SYNC_BEGIN = 3, /* wr_aux: 0 fsync, 1 fdatasync, 2 msync (wr_file 0: unknown) */
    WRLOG_SYNC_END = 4, /* wr_aux: 0 or the errno of the failed sync */
    WRLOG_TRUNCATE = 5, /* wr_offset: the new size */
    WRLOG_RENAME = 6, /* payload: "from\0to" */
    WRLOG_UNLINK = 7, /* payload: path */
};

struct wrlog_rec {
    uint32_t wr_op;
    uint32_t wr_file;
    int64_t wr_offset;
    int64_t wr_len;
    int64_t wr_aux;
};

#define WRLOG_MAX_FDS 4096

static pthread_mutex_t wrlog_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t wrlog_once = PTHREAD_ONCE_INIT;
static int wrlog_fd = -1;
static const char *wrlog_match;
static uint32_t wrlog_next_file = 1;
static uint32_t wrlog_files[WRLOG_MAX_FDS]; /* fd -> file id, 0 untracked */
static bool wrlog_dsync[WRLOG_MAX_FDS];

static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_close)(int);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_pwritev)(int, const struct iovec *, int, off_t);
static int (*real_ftruncate)(int, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_msync)(void *, size_t, int);
static int (*real_rename)(const char *, const char *);
static int (*real_unlink)(const char *);

static void wrlog_init(void)
{
    real_open = dlsym(RTLD_NEXT, "open");
    real_open64 = dlsym(RTLD_NEXT, "open64");
    real_openat = dlsym(RTLD_NEXT, "openat");
    real_close = dlsym(RTLD_NEXT, "close");
    real_write = dlsym(RTLD_NEXT, "write");
    real_pwrite = dlsym(RTLD_NEXT, "pwrite");
    real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
    real_writev = dlsym(RTLD_NEXT, "writev");
    real_pwritev = dlsym(RTLD_NEXT, "pwritev");
    real_ftruncate = dlsym(RTLD_NEXT, "ftruncate");
    real_fsync = dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    real_msync = dlsym(RTLD_NEXT, "msync");
    real_rename = dlsym(RTLD_NEXT, "rename");
    real_unlink = dlsym(RTLD_NEXT, "unlink");
    const char *path = getenv("RM_WRLOG");
    wrlog_match = getenv("RM_WRLOG_MATCH");
    if (path && *path && wrlog_match && *wrlog_match)
        wrlog_fd = real_open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

static void wrlog_ready(void)
{
    pthread_once(&wrlog_once, wrlog_init);
}

/* The log's own writes; a short write would corrupt the log, so loop. */
static void wrlog_emit(const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = real_write(wrlog_fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            abort(); /* a test helper: a lost record must not pass silently */
        p += n;
        len -= (size_t)n;
    }
}

/* Appends one record with up to two payload parts. Takes wrlog_lock unless held. */
static void wrlog_record_locked(uint32_t op, uint32_t file, int64_t offset, int64_t aux,
                                const void *a, size_t alen, const void *b, size_t blen)
{
    struct wrlog_rec rec = {op, file, offset, (int64_t)(alen + blen), aux};
    wrlog_emit(&rec, sizeof(rec));
    if (alen)
        wrlog_emit(a, alen);
    if (blen)
        wrlog_emit(b, blen);
}

static void wrlog_record(uint32_t op, uint32_t file, int64_t offset, int64_t aux, const void *a,
                         size_t alen, const void *b, size_t blen)
{
    pthread_mutex_lock(&wrlog_lock);
    wrlog_record_locked(op, file, offset, aux, a, alen, b, blen);
    pthread_mutex_unlock(&wrlog_lock);
}

static bool wrlog_matches(const char *path)
{
    return wrlog_fd >= 0 && path && strstr(path, wrlog_match) != NULL;
}

static uint32_t wrlog_file_of(int fd)
{
    return wrlog_fd >= 0 && fd >= 0 && fd < WRLOG_MAX_FDS ? wrlog_files[fd] : 0;
}

static void wrlog_opened(int fd, const char *path, int flags)
{
    if (fd < 0 || fd >= WRLOG_MAX_FDS || !wrlog_matches(path))
        return;
    pthread_mutex_lock(&wrlog_lock);
    uint32_t file = wrlog_next_file++;
    wrlog_files[fd] = file;
    wrlog_dsync[fd] = (flags & (O_DSYNC | O_SYNC)) != 0;
    wrlog_record_locked(WRLOG_OPEN, file, 0, flags, path, strlen(path) + 1, NULL, 0);
    pthread_mutex_unlock(&wrlog_lock);
}

static int open_common(int (*fn)(const char *, int, ...), const char *path, int flags, va_list ap)
{
    mode_t mode = 0;
    if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE)
        mode = (mode_t)va_arg(ap, int);
    int fd = fn(path, flags, mode);
    wrlog_opened(fd, path, flags);
    return fd;
}

int open(const char *path, int flags, ...)
{
    wrlog_ready();
    va_list ap;
    va_start(ap, flags);
    int fd = open_common(real_open, path, flags, ap);
    va_end(ap);
    return fd;
}

int open64(const char *path, int flags, ...)
{
    wrlog_ready();
    va_list ap;
    va_start(ap, flags);
    int fd = open_common(real_open64 ? real_open64 : real_open, path, flags, ap);
    va_end(ap);
    return fd;
}

int openat(int dirfd, const char *path, int flags, ...)
{
    wrlog_ready();
    va_list ap;
    va_start(ap, flags);
    mode_t mode = 0;
    if ((flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE)
        mode = (mode_t)va_arg(ap, int);
    va_end(ap);
    int fd = real_openat(dirfd, path, flags, mode);
    wrlog_opened(fd, path, flags);
    return fd;
}

int close(int fd)
{
    wrlog_ready();
    if (fd >= 0 && fd < WRLOG_MAX_FDS && wrlog_files[fd]) {
        pthread_mutex_lock(&wrlog_lock);
        wrlog_files[fd] = 0;
        pthread_mutex_unlock(&wrlog_lock);
    }
    return real_close(fd);
}

static void wrlog_wrote(int fd, uint32_t file, int64_t offset, const struct iovec *iov, int iovcnt,
                        ssize_t done)
{
    if (!file || done <= 0)
        return;
    pthread_mutex_lock(&wrlog_lock);
    struct wrlog_rec rec = {WRLOG_WRITE, file, offset, done, wrlog_dsync[fd]};
    wrlog_emit(&rec, sizeof(rec));
    size_t left = (size_t)done;
    for (int i = 0; i < iovcnt && left; i++) {
        size_t part = iov[i].iov_len < left ? iov[i].iov_len : left;
        wrlog_emit(iov[i].iov_base, part);
        left -= part;
    }
    pthread_mutex_unlock(&wrlog_lock);
}

ssize_t write(int fd, const void *data, size_t len)
{
    wrlog_ready();
    uint32_t file = wrlog_file_of(fd);
    off_t pos = file ? lseek(fd, 0, SEEK_CUR) : 0; /* note 2 */
    ssize_t n = real_write(fd, data, len);
    struct iovec iov = {(void *)data, len};
    wrlog_wrote(fd, file, pos, &iov, 1, n);
    return n;
}

ssize_t pwrite(int fd, const void *data, size_t len, off_t offset)
{
    wrlog_ready();
    ssize_t n = real_pwrite(fd, data, len, offset);
    struct iovec iov = {(void *)data, len};
    wrlog_wrote(fd, wrlog_file_of(fd), offset, &iov, 1, n);
    return n;
}

ssize_t pwrite64(int fd, const void *data, size_t len, off_t offset)
{
    wrlog_ready();
    ssize_t n = (real_pwrite64 ? real_pwrite64 : real_pwrite)(fd, data, len, offset);
    struct iovec iov = {(void *)data, len};
    wrlog_wrote(fd, wrlog_file_of(fd), offset, &iov, 1, n);
    return n;
}

ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
    wrlog_ready();
    uint32_t file = wrlog_file_of(fd);
    off_t pos = file ? lseek(fd, 0, SEEK_CUR) : 0; /* note 2 */
    ssize_t n = real_writev(fd, iov, iovcnt);
    wrlog_wrote(fd, file, pos, iov, iovcnt, n);
    return n;
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset)
{
    wrlog_ready();
    ssize_t n = real_pwritev(fd, iov, iovcnt, offset);
    wrlog_wrote(fd, wrlog_file_of(fd), offset, iov, iovcnt, n);
    return n;
}

int ftruncate(int fd, off_t length)
{
    wrlog_ready();
    int rc = real_ftruncate(fd, length);
    uint32_t file = wrlog_file_of(fd);
    if (file && rc == 0)
        wrlog_record(WRLOG_TRUNCATE, file, length, 0, NULL, 0, NULL, 0);
    return rc;
}

static int sync_common(int (*fn)(int), int fd, int kind)
{
    uint32_t file = wrlog_file_of(fd);
    if (file)
        wrlog_record(WRLOG_SYNC_BEGIN, file, 0, kind, NULL, 0, NULL, 0);
    int rc = fn(fd);
    int err = errno;
    if (file)
        wrlog_record(WRLOG_SYNC_END, file, 0, rc ? err : 0, NULL, 0, NULL, 0);
    errno = err;
    return rc;
}

int fsync(int fd)
{
    wrlog_ready();
    return sync_common(real_fsync, fd, 0);
}

int fdatasync(int fd)
{
    wrlog_ready();
    return sync_common(real_fdatasync, fd, 1);
}

int msync(void *addr, size_t len, int flags)
{
    wrlog_ready();
    /* The map's file is not known here; without MDB_WRITEMAP LMDB never calls it, and
     * a record with file 0 tells the replay that something it cannot place happened. */
    if (wrlog_fd >= 0)
        wrlog_record(WRLOG_SYNC_BEGIN, 0, 0, 2, NULL, 0, NULL, 0);
    int rc = real_msync(addr, len, flags);
    int err = errno;
    if (wrlog_fd >= 0)
        wrlog_record(WRLOG_SYNC_END, 0, 0, rc ? err : 0, NULL, 0, NULL, 0);
    errno = err;
    return rc;
}

int rename(const char *from, const char *to)
{
    wrlog_ready();
    int rc = real_rename(from, to);
    if (rc == 0 && (wrlog_matches(from) || wrlog_matches(to)))
        wrlog_record(WRLOG_RENAME, 0, 0, 0, from, strlen(from) + 1, to, strlen(to) + 1);
    return rc;
}

int unlink(const char *path)
{
    wrlog_ready();
    int rc = real_unlink(path);
    if (rc == 0 && wrlog_matches(path))
        wrlog_record(WRLOG_UNLINK, 0, 0, 0, path, strlen(path) + 1, NULL, 0);
    return rc;
}
