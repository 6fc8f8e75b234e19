/* store: one view's LMDB environment — opening, durability, transactions (the records it
 * keeps beside the fragments, offsets and meta, are in store_records.c).
 *
 * Notes on the design (see also store.h):
 * (1) Environment flags: MDB_NOTLS so a reader thread can reset/renew one txn
 *     across requests; MDB_NORDAHEAD because the working set is random point reads.
 *     The writer adds MDB_NOSYNC or MDB_NOMETASYNC by durability mode.
 * (2) The writer lock is an flock on a separate file, not LMDB's own lock: LMDB
 *     allows several writer processes (serialised), and two projectors on one
 *     store would each seek to the stored offsets and race — we want the second
 *     one to fail fast instead.
 * (3) mdb_reader_check() runs at open: stale reader slots of crashed readers pin
 *     old pages and make the file grow.
 * (4) Periodic durability syncs on a thread of its own (store_sync_main), not inside
 *     store_write_commit: the fdatasync of a second's dirty pages took 50-370 ms on
 *     this machine, and inline it stalled the writer (and every event waiting behind
 *     the batch) that long once per interval. Without MDB_WRITEMAP, LMDB 0.9.24's
 *     mdb_env_sync(env, 1) is a bare fdatasync(me_fd) that reads only me_flags, so it
 *     may run while the writer commits: the writer's pwrite()s that precede the
 *     fdatasync are durable when it returns, later ones wait for the next sync. Only
 *     mdb_env_set_mapsize must not overlap it (docs/architecture.md §8 asks for no txn during a
 *     resize; we also keep the sync out): st_map_lock is held across a sync and across
 *     store_grow.
 * (5) A failed sync latches for the life of the store, on disk too: Linux marks the
 *     pages whose writeback failed clean, so a later fdatasync "succeeds" without
 *     writing them, and the file may hold a torn tree that only the page cache hides.
 *     st_sync_err is never cleared; every store_write_commit returns RM_ESUSPECT, the
 *     final sync of store_close is reported, and the file STORE_SYNC_FAILED_MARK makes
 *     every later store_open (reader or writer) and gen_switch refuse the store until a
 *     rebuild replaces it. An EIO from mdb_txn_commit (sync and nometasync modes sync
 *     inside it) latches the same way.
 * (6) MDB_NOSYNC without MDB_WRITEMAP keeps no write order: after an OS crash the meta
 *     page may be on disk without the pages it points to, or pages a synced snapshot
 *     uses may have been overwritten by later commits (LMDB reuses them). So a periodic
 *     writer first makes STORE_UNSYNCED_MARK durable (file and directory fsynced) with
 *     the boot id, before LMDB writes anything, and removes it only after the final sync
 *     of a clean close. store_check_durable() finds the mark with another boot's id: an
 *     OS restart happened while writes were unsynced, and the store is suspect. A
 *     process crash keeps every commit in the page cache, so the same boot id is fine.
 *     Sync and nometasync modes need the mark only while they create the environment
 *     (LMDB writes its first meta pages without a sync; the mark goes after the first
 *     sync): from then on LMDB writes a meta page only after the data pages it points
 *     to are synced (LMDB's documented integrity for them).
 *     tests/integration/test_crash_images.py checks all of this on replayed write
 *     orders.
 * (7) What must not run ahead of the disk (publishing dead letters, committing Kafka
 *     offsets: an OS crash would roll back the transaction behind them) asks
 *     store_durable_txnid(): the id of the newest commit known to be on disk. The writer
 *     syncs once at open, so whatever an earlier process left in the page cache counts
 *     as durable from then on. */
#include "store.h"
#include "failpoint.h"
#include "rm_time.h"
#include "rm_err.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STORE_DEFAULT_MAP_BYTES ((size_t)1 << 30)
#define STORE_MAX_READERS 512 /* HTTP worker threads plus tools; each holds one slot */
#define STORE_UNSYNCED_MARK "unsynced-boot"  /* note 6: a NOSYNC writer's boot id */
#define STORE_SYNC_FAILED_MARK "sync-failed" /* note 5: an fsync of this store failed */
#define STORE_BOOT_ID_ENV "RM_BOOT_ID_FILE"  /* tests simulate a reboot with another file */
#define STORE_BOOT_ID_PATH "/proc/sys/kernel/random/boot_id"

static const char *const store_db_names[STORE_DB__COUNT] = {
    "doc", "link", "rlink", "pending", "erased", "offsets", "outbox", "meta", "idx",
};

struct store {
    MDB_env *st_env;
    MDB_dbi st_dbi[STORE_DB__COUNT];
    char *st_dir;
    bool st_readonly;
    int st_lock_fd;
    store_durability_t st_durability;
    int64_t st_sync_interval_ms;
    size_t st_map_bytes;
    pthread_mutex_t st_map_lock;  /* held across a sync and a map resize (note 4) */
    /* STORE_PERIODIC's sync thread (note 4). The writer only touches the two atomics,
     * so a commit never waits for the sync thread, not even for a lock. */
    atomic_bool st_sync_dirty;     /* a commit since the last sync began, or it failed */
    atomic_int st_sync_err;        /* rm_err_t of the first failed sync; never cleared */
    /* Note 7: the newest committed write txn, and the newest known to be on disk. */
    _Atomic uint64_t st_last_txnid;
    _Atomic uint64_t st_durable_txnid;
    bool st_sync_started;
    bool st_env_opened;            /* mdb_env_open succeeded: close may sync it */
    pthread_t st_sync_thread;
    pthread_mutex_t st_sync_lock;  /* guards the three fields below; never held in I/O */
    pthread_cond_t st_sync_cond;   /* signalled to stop the thread (CLOCK_MONOTONIC) */
    bool st_sync_stop;
    store_sync_stats_t st_sync_stats;
};

static int store_take_lock(store_t *store, char *errstr, size_t errlen)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/writer.lock", store->st_dir);
    store->st_lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (store->st_lock_fd < 0) {
        snprintf(errstr, errlen, "%s: cannot open: %s", path, strerror(errno));
        return RM_EIO;
    }
    if (flock(store->st_lock_fd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(errstr, errlen, "%s: store is locked by another writer", store->st_dir);
        return RM_EBUSY;
    }
    return 0;
}

static int store_path(char *out, size_t outlen, const char *dir, const char *name)
{
    return (size_t)snprintf(out, outlen, "%s/%s", dir, name) >= outlen ? RM_EINVAL : 0;
}

static int store_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return rm_err_from_errno(errno);
    int rc = fsync(fd) == 0 ? 0 : rm_err_from_errno(errno);
    close(fd);
    return rc;
}

/* This boot's id (36 characters) into out (>= 64 bytes). */
static int store_boot_id(char *out, size_t outlen)
{
    const char *path = getenv(STORE_BOOT_ID_ENV);
    FILE *f = fopen(path && *path ? path : STORE_BOOT_ID_PATH, "r");
    if (!f)
        return rm_err_from_errno(errno);
    bool ok = fgets(out, (int)outlen, f) != NULL;
    fclose(f);
    if (!ok)
        return RM_EIO;
    out[strcspn(out, "\n")] = '\0';
    return *out ? 0 : RM_EIO;
}

/* Writes dir/name durably: a temporary file fsynced, renamed, the directory fsynced. */
static int store_write_mark(const char *dir, const char *name, const char *text)
{
    char path[4096], tmp[4200];
    if (store_path(path, sizeof(path), dir, name) ||
        (size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
        return RM_EINVAL;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return rm_err_from_errno(errno);
    size_t len = strlen(text);
    int rc = write(fd, text, len) == (ssize_t)len && fsync(fd) == 0 ? 0 : rm_err_from_errno(errno);
    close(fd);
    if (!rc && rename(tmp, path) != 0)
        rc = rm_err_from_errno(errno);
    if (rc)
        unlink(tmp);
    return rc ? rc : store_fsync_dir(dir);
}

static bool store_mark_exists(const char *dir, const char *name)
{
    char path[4096];
    struct stat sb;
    return store_path(path, sizeof(path), dir, name) == 0 && stat(path, &sb) == 0;
}

/* Removes the unsynced mark once everything it covered is synced (note 6). */
static int store_clear_unsynced(const char *dir)
{
    char path[4096];
    if (store_path(path, sizeof(path), dir, STORE_UNSYNCED_MARK))
        return RM_EINVAL;
    if (unlink(path) != 0)
        return errno == ENOENT ? 0 : rm_err_from_errno(errno);
    return store_fsync_dir(dir);
}

int store_check_durable(const char *dir, char *why, size_t whylen)
{
    char path[4096], marked[128] = "", boot[128];
    if (store_mark_exists(dir, STORE_SYNC_FAILED_MARK)) {
        snprintf(why, whylen,
                 "%s: an fsync of this store failed, so it may have lost writes; "
                 "rebuild it",
                 dir);
        return RM_ESUSPECT;
    }
    if (store_path(path, sizeof(path), dir, STORE_UNSYNCED_MARK))
        return RM_EINVAL;
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT)
            return 0;
        snprintf(why, whylen, "%s: cannot read: %s", path, strerror(errno));
        return rm_err_from_errno(errno);
    }
    if (!fgets(marked, sizeof(marked), f))
        marked[0] = '\0';
    fclose(f);
    marked[strcspn(marked, "\n")] = '\0';
    int rc = store_boot_id(boot, sizeof(boot));
    if (rc) {
        snprintf(why, whylen, "%s: cannot read the boot id: %s", dir, rm_strerror(rc));
        return rc;
    }
    if (strcmp(marked, boot) != 0) {
        snprintf(why, whylen,
                 "%s: the OS restarted while a periodic-durability writer had "
                 "unsynced writes in it, so it may be torn; rebuild it",
                 dir);
        return RM_ESUSPECT;
    }
    return 0;
}

/* Makes a failed sync permanent (note 5): in memory for every later commit, on disk for
 * every later open. Any thread. */
static void store_latch_sync_failure(store_t *store, int err)
{
    int expected = 0;
    if (!atomic_compare_exchange_strong(&store->st_sync_err, &expected, err))
        return; /* latched already */
    char text[128];
    snprintf(text, sizeof(text), "%s\n", rm_strerror(err));
    /* Best effort: if the disk takes no mark either, the unsynced mark of a periodic
     * store still makes the next boot refuse it, and this process commits nothing more. */
    (void)store_write_mark(store->st_dir, STORE_SYNC_FAILED_MARK, text);
}

static int store_open_dbs(store_t *store, char *errstr, size_t errlen)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(store->st_env, NULL, store->st_readonly ? MDB_RDONLY : 0, &txn);
    if (rc) {
        snprintf(errstr, errlen, "%s: begin: %s", store->st_dir, mdb_strerror(rc));
        return rm_err_from_mdb(rc);
    }
    for (int i = 0; i < STORE_DB__COUNT; i++) {
        rc = mdb_dbi_open(txn, store_db_names[i], store->st_readonly ? 0 : MDB_CREATE,
                          &store->st_dbi[i]);
        if (rc) {
            snprintf(errstr, errlen, "%s: database %s: %s", store->st_dir, store_db_names[i],
                     rc == MDB_NOTFOUND ? "missing (no projector has written this store yet)"
                                        : mdb_strerror(rc));
            mdb_txn_abort(txn);
            return rm_err_from_mdb(rc);
        }
    }
    rc = mdb_txn_commit(txn);
    if (rc) {
        snprintf(errstr, errlen, "%s: commit: %s", store->st_dir, mdb_strerror(rc));
        return rm_err_from_mdb(rc);
    }
    return 0;
}

/* Buckets of readmodel_store_sync_seconds: from a clean file's ~50 µs fdatasync to
 * the 2.5 s of a stalled disk; 0.05-0.5 s is where this machine's syncs fell. */
static const double store_sync_bounds[] = {0.0001, 0.001, 0.005, 0.01, 0.025, 0.05,
                                           0.1,    0.25,  0.5,   1,    2.5};

static void durable_at_least(store_t *store, uint64_t txnid)
{
    uint64_t seen = atomic_load(&store->st_durable_txnid);
    while (seen < txnid && !atomic_compare_exchange_weak(&store->st_durable_txnid, &seen, txnid))
        ;
}

/* One fdatasync of the environment, timed and counted; a failure latches (note 5).
 * Any thread; takes st_map_lock so that no resize runs during it, then st_sync_lock to
 * record the outcome. */
static int store_sync_once(store_t *store)
{
    pthread_mutex_lock(&store->st_map_lock);
    int64_t start_ns = rm_mono_ns();
    int err = failpoint_errno("store-sync");
    /* Every commit up to this one has written its pages before the fdatasync starts. */
    uint64_t txnid = atomic_load(&store->st_last_txnid);
    int rc = err ? err : mdb_env_sync(store->st_env, 1);
    double seconds = (double)(rm_mono_ns() - start_ns) / 1e9;
    pthread_mutex_unlock(&store->st_map_lock);
    rc = rc ? rm_err_from_mdb(rc) : 0;
    if (!rc)
        durable_at_least(store, txnid);
    pthread_mutex_lock(&store->st_sync_lock);
    if (rc) {
        store->st_sync_stats.sst_failures++;
    } else {
        store->st_sync_stats.sst_syncs++;
        metrics_hist_observe(&store->st_sync_stats.sst_seconds, seconds);
    }
    pthread_mutex_unlock(&store->st_sync_lock);
    if (rc) /* after the count: whoever sees the latch sees the failure counted */
        store_latch_sync_failure(store, rc);
    return rc;
}

static struct timespec store_deadline(int64_t after_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t ns = (int64_t)ts.tv_nsec + after_ms % 1000 * 1000000;
    ts.tv_sec += (time_t)(after_ms / 1000 + ns / 1000000000);
    ts.tv_nsec = (long)(ns % 1000000000);
    return ts;
}

/* The sync thread: every st_sync_interval_ms (start to start), an fdatasync if
 * anything was committed since the last one began; none after a failure (note 5). */
static void *store_sync_main(void *arg)
{
    store_t *store = arg;
    pthread_mutex_lock(&store->st_sync_lock);
    struct timespec next = store_deadline(store->st_sync_interval_ms);
    while (!store->st_sync_stop) {
        if (pthread_cond_timedwait(&store->st_sync_cond, &store->st_sync_lock, &next) != ETIMEDOUT)
            continue; /* a stop, or a spurious wake-up before the deadline */
        next = store_deadline(store->st_sync_interval_ms);
        /* Commits from now on wait for the next sync. */
        if (!atomic_exchange(&store->st_sync_dirty, false) || atomic_load(&store->st_sync_err))
            continue;
        pthread_mutex_unlock(&store->st_sync_lock);
        store_sync_once(store);
        pthread_mutex_lock(&store->st_sync_lock);
    }
    pthread_mutex_unlock(&store->st_sync_lock);
    return NULL;
}

static int store_start_sync_thread(store_t *store, char *errstr, size_t errlen)
{
    int rc = pthread_create(&store->st_sync_thread, NULL, store_sync_main, store);
    if (rc) {
        snprintf(errstr, errlen, "%s: cannot start the sync thread: %s", store->st_dir,
                 strerror(rc));
        return RM_ENOMEM;
    }
    store->st_sync_started = true;
    return 0;
}

/* The handle with its locks, condition and counters; nothing on disk yet. */
static store_t *store_alloc(const store_opts_t *opts)
{
    store_t *store = calloc(1, sizeof(*store));
    if (!store || !(store->st_dir = strdup(opts->so_dir))) {
        free(store);
        return NULL;
    }
    store->st_readonly = opts->so_readonly;
    store->st_lock_fd = -1;
    store->st_durability = opts->so_durability;
    store->st_sync_interval_ms = opts->so_sync_interval_ms > 0 ? opts->so_sync_interval_ms : 1000;
    atomic_init(&store->st_sync_dirty, false);
    atomic_init(&store->st_sync_err, 0);
    pthread_mutex_init(&store->st_map_lock, NULL);
    pthread_mutex_init(&store->st_sync_lock, NULL);
    pthread_condattr_t cond_attr; /* the thread's deadlines are CLOCK_MONOTONIC */
    pthread_condattr_init(&cond_attr);
    pthread_condattr_setclock(&cond_attr, CLOCK_MONOTONIC);
    pthread_cond_init(&store->st_sync_cond, &cond_attr);
    pthread_condattr_destroy(&cond_attr);
    metrics_hist_init(&store->st_sync_stats.sst_seconds, store_sync_bounds,
                      sizeof(store_sync_bounds) / sizeof(store_sync_bounds[0]));
    return store;
}

/* The writer's directory: created, locked, refused if a crash left it unproven (note 9),
 * and marked unsynced for this boot when an OS crash could tear what it writes. */
static int store_prepare_writer_dir(store_t *store, char *errstr, size_t errlen)
{
    if (mkdir(store->st_dir, 0755) != 0 && errno != EEXIST) {
        int rc = rm_err_from_errno(errno);
        snprintf(errstr, errlen, "%s: cannot create: %s", store->st_dir, strerror(errno));
        return rc;
    }
    int rc = store_take_lock(store, errstr, errlen);
    if (rc || (rc = store_check_durable(store->st_dir, errstr, errlen)))
        return rc;
    char boot[128], data_path[4096];
    struct stat sb;
    /* A new environment's first meta pages are written without a sync: until the
     * first sync, an OS crash can leave a file LMDB refuses, in every mode. */
    bool fresh = store_path(data_path, sizeof(data_path), store->st_dir, "data.mdb") == 0 &&
                 stat(data_path, &sb) != 0 && errno == ENOENT;
    if ((store->st_durability == STORE_PERIODIC || fresh) &&
        ((rc = store_boot_id(boot, sizeof(boot))) ||
         (rc = store_write_mark(store->st_dir, STORE_UNSYNCED_MARK, boot)))) {
        snprintf(errstr, errlen, "%s: cannot mark the store unsynced: %s", store->st_dir,
                 rm_strerror(rc));
        return rc;
    }
    return 0;
}

/* A reader's directory: it must hold a store, and one a crash left proven. */
static int store_check_reader_dir(store_t *store, char *errstr, size_t errlen)
{
    struct stat sb;
    char data_path[4096];
    snprintf(data_path, sizeof(data_path), "%s/data.mdb", store->st_dir);
    if (stat(data_path, &sb) != 0) {
        int rc = rm_err_from_errno(errno);
        snprintf(errstr, errlen, "%s: no store yet: %s", store->st_dir, strerror(errno));
        return rc;
    }
    return store_check_durable(store->st_dir, errstr, errlen);
}

/* Opens the LMDB environment with the flags of the durability mode. */
static int store_open_env(store_t *store, const store_opts_t *opts, char *errstr, size_t errlen)
{
    int rc = mdb_env_create(&store->st_env);
    if (rc) {
        snprintf(errstr, errlen, "mdb_env_create: %s", mdb_strerror(rc));
        return rm_err_from_mdb(rc);
    }
    mdb_env_set_maxdbs(store->st_env, STORE_DB__COUNT + 8);
    mdb_env_set_maxreaders(store->st_env, STORE_MAX_READERS);
    if (!store->st_readonly) {
        size_t map = opts->so_map_size_bytes ? opts->so_map_size_bytes : STORE_DEFAULT_MAP_BYTES;
        mdb_env_set_mapsize(store->st_env, map);
    }
    unsigned flags = MDB_NOTLS | MDB_NORDAHEAD;
    if (store->st_readonly)
        flags |= MDB_RDONLY;
    else if (store->st_durability == STORE_PERIODIC)
        flags |= MDB_NOSYNC; /* not MDB_WRITEMAP: measured 2x slower here (page faults
                                on the sparse file; docs/design.md §6) */
    else if (store->st_durability == STORE_NOMETASYNC)
        flags |= MDB_NOMETASYNC;
    rc = mdb_env_open(store->st_env, store->st_dir, flags, 0644);
    if (rc) {
        snprintf(errstr, errlen, "%s: open: %s", store->st_dir, mdb_strerror(rc));
        return rm_err_from_mdb(rc);
    }
    store->st_env_opened = true;
    return 0;
}

/* A writer's first durable point: what an earlier process left is synced once (note 7),
 * and an unsynced mark a periodic writer left is cleared by a sync or nometasync one. */
static int store_settle_writer(store_t *store, char *errstr, size_t errlen)
{
    /* A periodic writer of this boot crashed and a sync or nometasync writer takes over,
     * or a sync or nometasync writer created the environment: once everything is
     * synced, the mark has nothing left to cover. */
    int rc = 0;
    if (store->st_durability != STORE_PERIODIC &&
        store_mark_exists(store->st_dir, STORE_UNSYNCED_MARK) &&
        ((rc = store_sync_once(store)) || (rc = store_clear_unsynced(store->st_dir))))
        snprintf(errstr, errlen, "%s: cannot sync what a periodic writer left", store->st_dir);
    return rc;
}

int store_open_rc(const store_opts_t *opts, store_t **ret_store, char *errstr, size_t errlen)
{
    store_t *store = store_alloc(opts);
    if (!store) {
        snprintf(errstr, errlen, "out of memory");
        return RM_ENOMEM;
    }
    int rc = store->st_readonly ? store_check_reader_dir(store, errstr, errlen)
                                : store_prepare_writer_dir(store, errstr, errlen);
    if (rc || (rc = store_open_env(store, opts, errstr, errlen)))
        goto fail;
    if (!store->st_readonly && (rc = store_settle_writer(store, errstr, errlen)))
        goto fail;
    int dead = 0;
    mdb_reader_check(store->st_env, &dead);
    MDB_envinfo info;
    mdb_env_info(store->st_env, &info);
    store->st_map_bytes = info.me_mapsize;
    if ((rc = store_open_dbs(store, errstr, errlen)))
        goto fail;
    if (!store->st_readonly) {
        /* Note 7: what an earlier process committed may still be in the page cache only;
         * one sync now makes it durable. Not counted as a sync of this run (nor a pass of
         * the store-sync failpoint); a failure latches like any other (note 5). */
        mdb_env_info(store->st_env, &info); /* after store_open_dbs' commit */
        atomic_store(&store->st_last_txnid, (uint64_t)info.me_last_txnid);
        int src = store->st_durability == STORE_SYNC ? 0 : mdb_env_sync(store->st_env, 1);
        if (src)
            store_latch_sync_failure(store, rm_err_from_mdb(src));
        else
            durable_at_least(store, atomic_load(&store->st_last_txnid));
    }
    if (!store->st_readonly && store->st_durability == STORE_PERIODIC &&
        (rc = store_start_sync_thread(store, errstr, errlen)))
        goto fail;
    *ret_store = store;
    return 0;
fail:
    store_close(store);
    return rc;
}

store_t *store_open(const store_opts_t *opts, char *errstr, size_t errlen)
{
    store_t *store = NULL;
    return store_open_rc(opts, &store, errstr, errlen) == 0 ? store : NULL;
}

int store_close(store_t *store)
{
    if (!store)
        return 0;
    if (store->st_sync_started) {
        pthread_mutex_lock(&store->st_sync_lock);
        store->st_sync_stop = true;
        pthread_cond_signal(&store->st_sync_cond);
        pthread_mutex_unlock(&store->st_sync_lock);
        pthread_join(store->st_sync_thread, NULL);
    }
    int rc = 0;
    /* The final sync: what the thread had not synced yet reaches the disk now; only then
     * may the unsynced mark go (note 6). */
    if (store->st_env_opened && !store->st_readonly) {
        if (atomic_load(&store->st_sync_err) || store_sync_once(store))
            rc = RM_ESUSPECT; /* latched and marked (note 5) */
        else if (store->st_durability == STORE_PERIODIC)
            rc = store_clear_unsynced(store->st_dir);
    }
    if (store->st_env)
        mdb_env_close(store->st_env);
    if (store->st_lock_fd >= 0)
        close(store->st_lock_fd);
    pthread_cond_destroy(&store->st_sync_cond);
    pthread_mutex_destroy(&store->st_sync_lock);
    pthread_mutex_destroy(&store->st_map_lock);
    free(store->st_dir);
    free(store);
    return rc;
}

const char *store_db_name(store_db_t db)
{
    return db < STORE_DB__COUNT ? store_db_names[db] : "?";
}

MDB_env *store_env(store_t *store)
{
    return store->st_env;
}

MDB_dbi store_dbi(const store_t *store, store_db_t db)
{
    return store->st_dbi[db];
}

const char *store_dir(const store_t *store)
{
    return store->st_dir;
}

/* A writer in another process grew the map: adopt its size (0 = use the file's). */
static int store_adopt_resize(store_t *store)
{
    int rc = mdb_env_set_mapsize(store->st_env, 0);
    return rm_err_from_mdb(rc);
}

int store_read_begin(store_t *store, MDB_txn **ret_txn)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(store->st_env, NULL, MDB_RDONLY, &txn);
    if (rc == MDB_MAP_RESIZED) {
        if (store_adopt_resize(store))
            return RM_ESTORE;
        rc = mdb_txn_begin(store->st_env, NULL, MDB_RDONLY, &txn);
    }
    if (rc)
        return rm_err_from_mdb(rc);
    *ret_txn = txn;
    return 0;
}

void store_read_reset(MDB_txn *txn)
{
    mdb_txn_reset(txn);
}

int store_read_renew(store_t *store, MDB_txn **txn)
{
    int rc = mdb_txn_renew(*txn);
    if (rc == 0)
        return 0;
    /* A renew cannot adopt a resized map; start over with a fresh txn. */
    mdb_txn_abort(*txn);
    *txn = NULL;
    return store_read_begin(store, txn);
}

void store_read_end(MDB_txn *txn)
{
    if (txn)
        mdb_txn_abort(txn);
}

int store_write_begin(store_t *store, MDB_txn **ret_txn)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(store->st_env, NULL, 0, &txn);
    if (rc)
        return rm_err_from_mdb(rc);
    *ret_txn = txn;
    return 0;
}

int store_write_commit(store_t *store, MDB_txn *txn)
{
    if (atomic_load(&store->st_sync_err)) {
        /* Note 5: no commit on top of writes the disk refused, whatever a later sync says. */
        mdb_txn_abort(txn);
        return RM_ESUSPECT;
    }
    uint64_t txnid = mdb_txn_id(txn); /* note 7; the txn is gone after the commit */
    int rc = failpoint_errno("store-commit");
    if (rc)
        mdb_txn_abort(txn);
    else
        rc = mdb_txn_commit(txn);
    if (rc == EIO) {
        store_latch_sync_failure(store, RM_EIO); /* the sync inside the commit, note 5 */
        return RM_ESUSPECT;
    }
    if (rc)
        return rm_err_from_mdb(rc);
    uint64_t before = atomic_exchange(&store->st_last_txnid, txnid);
    /* Note 7: a commit of STORE_SYNC is on disk; one of STORE_NOMETASYNC makes the
     * previous one durable (its fdatasync covers the previous meta page). */
    if (store->st_durability == STORE_SYNC)
        durable_at_least(store, txnid);
    else if (store->st_durability == STORE_NOMETASYNC)
        durable_at_least(store, before);
    atomic_store(&store->st_sync_dirty, true);
    return 0;
}

void store_write_abort(MDB_txn *txn)
{
    if (txn)
        mdb_txn_abort(txn);
}

int store_grow(store_t *store)
{
    size_t map = store->st_map_bytes * 2;
    pthread_mutex_lock(&store->st_map_lock); /* waits for a sync in progress (note 4) */
    int rc = mdb_env_set_mapsize(store->st_env, map);
    pthread_mutex_unlock(&store->st_map_lock);
    if (rc)
        return rm_err_from_mdb(rc);
    store->st_map_bytes = map;
    return 0;
}

int store_reader_check(store_t *store)
{
    int dead = 0;
    int rc = mdb_reader_check(store->st_env, &dead);
    return rc ? rm_err_from_mdb(rc) : dead;
}

int store_sync(store_t *store)
{
    return store_sync_once(store);
}

bool store_syncs_in_background(const store_t *store)
{
    return store->st_sync_started;
}

uint64_t store_last_txnid(store_t *store)
{
    return atomic_load(&store->st_last_txnid);
}

uint64_t store_durable_txnid(store_t *store)
{
    return atomic_load(&store->st_durable_txnid);
}

void store_sync_stats(store_t *store, store_sync_stats_t *ret_stats)
{
    pthread_mutex_lock(&store->st_sync_lock);
    *ret_stats = store->st_sync_stats;
    pthread_mutex_unlock(&store->st_sync_lock);
}

int store_usage(store_t *store, size_t *ret_map_bytes, size_t *ret_used_bytes)
{
    MDB_envinfo info;
    MDB_stat st;
    int rc = mdb_env_info(store->st_env, &info);
    if (!rc)
        rc = mdb_env_stat(store->st_env, &st);
    if (rc)
        return rm_err_from_mdb(rc);
    *ret_map_bytes = info.me_mapsize;
    *ret_used_bytes = (info.me_last_pgno + 1) * (size_t)st.ms_psize;
    return 0;
}

static size_t tree_pages(const MDB_stat *st)
{
    return st->ms_branch_pages + st->ms_leaf_pages + st->ms_overflow_pages;
}

/* Adds the key and value bytes of every entry of dbi to *kv. */
static int count_kv_bytes(MDB_txn *txn, MDB_dbi dbi, size_t *kv)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc)
        return rm_err_from_mdb(rc);
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); !rc;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
        *kv += k.mv_size + v.mv_size;
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rm_err_from_mdb(rc);
}

/* Pages listed in the free database (dbi 0): each record is an id list whose first
 * element is its length, as mdb_stat -f reads it. */
static int count_free_pages(MDB_txn *txn, size_t *ret_pages)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, 0, &cur);
    if (rc)
        return rm_err_from_mdb(rc);
    MDB_val k, v;
    size_t pages = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); !rc;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        size_t n;
        memcpy(&n, v.mv_data, sizeof(n));
        pages += n;
    }
    mdb_cursor_close(cur);
    *ret_pages = pages;
    return rc == MDB_NOTFOUND ? 0 : rm_err_from_mdb(rc);
}

int store_space(store_t *store, MDB_txn *txn, bool count_kv, store_space_t *ret_space)
{
    MDB_stat st;
    int rc = mdb_stat(txn, 1, &st); /* the main database, which names the others */
    if (rc)
        return rm_err_from_mdb(rc);
    size_t psize = st.ms_psize, pages = tree_pages(&st), kv = 0;
    for (int i = 0; !rc && i < STORE_DB__COUNT; i++) {
        rc = mdb_stat(txn, store->st_dbi[i], &st);
        pages += rc ? 0 : tree_pages(&st);
        if (!rc && count_kv)
            rc = count_kv_bytes(txn, store->st_dbi[i], &kv);
    }
    if (rc)
        return rc < 0 ? rc : rm_err_from_mdb(rc);
    size_t free_pages = 0;
    if ((rc = count_free_pages(txn, &free_pages)))
        return rc;
    *ret_space = (store_space_t){pages * psize, free_pages * psize, kv};
    return 0;
}
