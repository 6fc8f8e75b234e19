/* gen: generations of a view store and the atomic "current" switch (see gen.h). */
#include "gen.h"
#include "rm_err.h"
#include "rm_time.h"
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define GEN_CURRENT "current"
#define GEN_PREVIOUS "previous"
#define GEN_LAYOUT_LOCK "gen.lock"
#define GEN_PREFIX "gen-"
#define GEN_MAX_LIST 4096 /* generations looked at in one directory; far above any keep */

static int path_join(char *out, size_t outlen, const char *dir, const char *name)
{
    return (size_t)snprintf(out, outlen, "%s/%s", dir, name) >= outlen ? RM_EINVAL : 0;
}

void gen_dir_name(int64_t id, char *out, size_t outlen)
{
    snprintf(out, outlen, GEN_PREFIX "%06lld", (long long)id);
}

/* "gen-000042" -> 42; -1 for any other name (including "gen-000042.tmp"). */
static int64_t parse_gen_name(const char *name)
{
    if (strncmp(name, GEN_PREFIX, strlen(GEN_PREFIX)) != 0)
        return -1;
    const char *digits = name + strlen(GEN_PREFIX);
    if (strlen(digits) != 6)
        return -1;
    int64_t id = 0;
    for (const char *p = digits; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        id = id * 10 + (*p - '0');
    }
    return id > 0 ? id : -1;
}

/* The generation a link ("current", "previous") names, or RM_ENOTFOUND. */
static int read_link_id(const char *view_dir, const char *link, int64_t *ret_id)
{
    char path[GEN_DIR_MAX], target[256];
    if (path_join(path, sizeof(path), view_dir, link))
        return RM_EINVAL;
    ssize_t n = readlink(path, target, sizeof(target) - 1);
    if (n < 0)
        return errno == ENOENT || errno == ENOTDIR ? RM_ENOTFOUND : rm_err_from_errno(errno);
    target[n] = '\0';
    int64_t id = parse_gen_name(target);
    if (id < 0)
        return RM_EINVAL; /* someone pointed it elsewhere by hand: refuse to guess */
    *ret_id = id;
    return 0;
}

static bool file_exists(const char *dir, const char *name)
{
    char path[GEN_DIR_MAX];
    struct stat sb;
    return path_join(path, sizeof(path), dir, name) == 0 && stat(path, &sb) == 0;
}

int gen_current(const char *view_dir, int64_t *ret_id, char *out, size_t outlen)
{
    int64_t id;
    int rc = read_link_id(view_dir, GEN_CURRENT, &id);
    if (rc == 0) {
        char name[32];
        gen_dir_name(id, name, sizeof(name));
        if (path_join(out, outlen, view_dir, name))
            return RM_EINVAL;
        if (ret_id)
            *ret_id = id;
        return 0;
    }
    if (rc != RM_ENOTFOUND)
        return rc;
    if (!file_exists(view_dir, "data.mdb"))
        return RM_ENOTFOUND;
    if ((size_t)snprintf(out, outlen, "%s", view_dir) >= outlen)
        return RM_EINVAL;
    if (ret_id)
        *ret_id = 0;
    return 0;
}

int gen_current_dir(const char *view_dir, char *out, size_t outlen)
{
    return gen_current(view_dir, NULL, out, outlen);
}

int gen_lock_file(const char *view_dir, const char *name, int *ret_fd)
{
    char path[GEN_DIR_MAX];
    if (path_join(path, sizeof(path), view_dir, name))
        return RM_EINVAL;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return rm_err_from_errno(errno);
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        close(fd);
        return err == EWOULDBLOCK ? RM_EBUSY : rm_err_from_errno(err);
    }
    *ret_fd = fd;
    return 0;
}

/* The layout lock is held briefly by every layout change, so wait for it. */
static int lock_layout(const char *view_dir, int *ret_fd)
{
    char path[GEN_DIR_MAX];
    if (path_join(path, sizeof(path), view_dir, GEN_LAYOUT_LOCK))
        return RM_EINVAL;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return rm_err_from_errno(errno);
    if (flock(fd, LOCK_EX) != 0) {
        int err = errno;
        close(fd);
        return rm_err_from_errno(err);
    }
    *ret_fd = fd;
    return 0;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return rm_err_from_errno(errno);
    int rc = fsync(fd) == 0 ? 0 : rm_err_from_errno(errno);
    close(fd);
    return rc;
}

/* Points link at gen-id: a new symlink renamed over the old one (note 1). */
static int set_link(const char *view_dir, const char *link, int64_t id)
{
    char name[32], tmp[GEN_DIR_MAX], path[GEN_DIR_MAX], tmp_name[64];
    gen_dir_name(id, name, sizeof(name));
    snprintf(tmp_name, sizeof(tmp_name), "%s.tmp", link);
    if (path_join(tmp, sizeof(tmp), view_dir, tmp_name) ||
        path_join(path, sizeof(path), view_dir, link))
        return RM_EINVAL;
    unlink(tmp); /* left by a crash between symlink and rename */
    if (symlink(name, tmp) != 0)
        return rm_err_from_errno(errno);
    if (rename(tmp, path) != 0) {
        int err = errno;
        unlink(tmp);
        return rm_err_from_errno(err);
    }
    return 0;
}

static int write_created(const char *gen_dir, int64_t created_ms)
{
    char path[GEN_DIR_MAX];
    if (path_join(path, sizeof(path), gen_dir, "created"))
        return RM_EINVAL;
    FILE *f = fopen(path, "w");
    if (!f)
        return rm_err_from_errno(errno);
    fprintf(f, "%lld\n", (long long)created_ms);
    return fclose(f) == 0 ? 0 : RM_EIO;
}

/* Ids of the gen-* directories, ascending. */
static int scan_ids(const char *view_dir, int64_t *ids, size_t cap, size_t *ret_count)
{
    size_t count = 0;
    DIR *dir = opendir(view_dir);
    if (!dir) {
        if (errno == ENOENT) {
            *ret_count = 0;
            return 0;
        }
        return rm_err_from_errno(errno);
    }
    struct dirent *de;
    while ((de = readdir(dir)) && count < cap) {
        int64_t id = parse_gen_name(de->d_name);
        if (id > 0)
            ids[count++] = id;
    }
    closedir(dir);
    for (size_t i = 1; i < count; i++) /* insertion sort: a handful of entries */
        for (size_t j = i; j > 0 && ids[j - 1] > ids[j]; j--) {
            int64_t t = ids[j];
            ids[j] = ids[j - 1];
            ids[j - 1] = t;
        }
    *ret_count = count;
    return 0;
}

static int gen_path(const char *view_dir, int64_t id, char *out, size_t outlen)
{
    char name[32];
    gen_dir_name(id, name, sizeof(name));
    return path_join(out, outlen, view_dir, name);
}

/* Moves the flat store's files into gen-000001 while holding its writer lock. */
static int migrate_flat(const char *view_dir)
{
    int lock_fd = -1;
    int rc = gen_lock_file(view_dir, "writer.lock", &lock_fd);
    if (rc)
        return rc;
    char gen_dir[GEN_DIR_MAX];
    rc = gen_path(view_dir, 1, gen_dir, sizeof(gen_dir));
    if (!rc && mkdir(gen_dir, 0755) != 0 && errno != EEXIST)
        rc = rm_err_from_errno(errno);
    if (!rc && file_exists(gen_dir, "data.mdb"))
        rc = RM_EEXISTS; /* both layouts hold a store: a human must choose */
    /* data.mdb first: once it is gone no reader resolves the flat store, so none can
     * open (and re-create) a flat lock.mdb with a reader table the writer never sees. */
    static const char *const files[] = {"data.mdb", "lock.mdb"};
    for (size_t i = 0; !rc && i < 2; i++) {
        char from[GEN_DIR_MAX], to[GEN_DIR_MAX];
        if (path_join(from, sizeof(from), view_dir, files[i]) ||
            path_join(to, sizeof(to), gen_dir, files[i]))
            rc = RM_EINVAL;
        else if (rename(from, to) != 0 && errno != ENOENT)
            rc = rm_err_from_errno(errno);
    }
    if (!rc)
        rc = write_created(gen_dir, rm_wall_ms());
    if (!rc)
        rc = fsync_dir(gen_dir);
    if (!rc)
        rc = set_link(view_dir, GEN_CURRENT, 1);
    if (!rc)
        rc = fsync_dir(view_dir);
    if (!rc) {
        char path[GEN_DIR_MAX];
        if (!path_join(path, sizeof(path), view_dir, "writer.lock"))
            unlink(path);
    }
    close(lock_fd);
    return rc;
}

int gen_prepare(const char *view_dir, bool *ret_migrated)
{
    int lock_fd = -1;
    int rc = lock_layout(view_dir, &lock_fd);
    if (rc)
        return rc;
    bool migrated = false;
    int64_t id;
    rc = read_link_id(view_dir, GEN_CURRENT, &id);
    if (rc == RM_ENOTFOUND) {
        int64_t ids[GEN_MAX_LIST];
        size_t count = 0;
        if (file_exists(view_dir, "data.mdb")) {
            rc = migrate_flat(view_dir);
            migrated = rc == 0;
        } else if ((rc = scan_ids(view_dir, ids, GEN_MAX_LIST, &count)) == 0) {
            /* No link: a fresh view, or a crash inside the first creation or a
             * migration (data.mdb already moved). Either way the newest holds it. */
            char gen_dir[GEN_DIR_MAX];
            int64_t newest = count ? ids[count - 1] : 1;
            rc = gen_path(view_dir, newest, gen_dir, sizeof(gen_dir));
            if (!rc && mkdir(gen_dir, 0755) != 0 && errno != EEXIST)
                rc = rm_err_from_errno(errno);
            if (!rc && !file_exists(gen_dir, "created"))
                rc = write_created(gen_dir, rm_wall_ms());
            rc = rc ? rc : set_link(view_dir, GEN_CURRENT, newest);
            rc = rc ? rc : fsync_dir(view_dir);
        }
    }
    close(lock_fd);
    if (!rc && ret_migrated)
        *ret_migrated = migrated;
    return rc;
}

int gen_create(const char *view_dir, int64_t *ret_id, char *ret_dir, size_t dirlen)
{
    int lock_fd = -1;
    int rc = lock_layout(view_dir, &lock_fd);
    if (rc)
        return rc;
    int64_t ids[GEN_MAX_LIST];
    size_t count;
    rc = scan_ids(view_dir, ids, GEN_MAX_LIST, &count);
    int64_t id = count ? ids[count - 1] + 1 : 1;
    if (!rc && id > GEN_ID_MAX)
        rc = RM_EEXISTS;
    char gen_dir[GEN_DIR_MAX];
    rc = rc ? rc : gen_path(view_dir, id, gen_dir, sizeof(gen_dir));
    if (!rc && mkdir(gen_dir, 0755) != 0)
        rc = rm_err_from_errno(errno);
    rc = rc ? rc : write_created(gen_dir, rm_wall_ms());
    rc = rc ? rc : fsync_dir(view_dir);
    close(lock_fd);
    if (rc)
        return rc;
    if ((size_t)snprintf(ret_dir, dirlen, "%s", gen_dir) >= dirlen)
        return RM_EINVAL;
    *ret_id = id;
    return 0;
}

int gen_switch(const char *view_dir, int64_t id)
{
    char gen_dir[GEN_DIR_MAX];
    if (id <= 0 || id > GEN_ID_MAX || gen_path(view_dir, id, gen_dir, sizeof(gen_dir)))
        return RM_EINVAL;
    int lock_fd = -1;
    int rc = lock_layout(view_dir, &lock_fd);
    if (rc)
        return rc;
    if (!file_exists(gen_dir, "data.mdb"))
        rc = RM_ENOTFOUND;
    char why[512];
    if (!rc)
        rc = store_check_durable(gen_dir, why, sizeof(why)); /* note 5 */
    int64_t old = 0;
    int orc = rc ? rc : read_link_id(view_dir, GEN_CURRENT, &old);
    if (!rc && orc && orc != RM_ENOTFOUND)
        rc = orc;
    if (!rc && old != id) {
        /* previous first: a crash between the two renames leaves previous == current,
         * which is harmless; the other order could lose the way back. */
        if (old > 0)
            rc = set_link(view_dir, GEN_PREVIOUS, old);
        rc = rc ? rc : set_link(view_dir, GEN_CURRENT, id);
        rc = rc ? rc : fsync_dir(view_dir);
    }
    close(lock_fd);
    return rc;
}

int gen_previous(const char *view_dir, int64_t *ret_id)
{
    return read_link_id(view_dir, GEN_PREVIOUS, ret_id);
}

/* Whether a generation's writer.lock is held by some process right now. */
static bool writer_active(const char *gen_dir)
{
    int fd;
    int rc = gen_lock_file(gen_dir, "writer.lock", &fd);
    if (rc == 0) {
        close(fd);
        return false;
    }
    return rc == RM_EBUSY;
}

/* Generation directories are flat: files only. */
static int remove_gen_dir(const char *gen_dir)
{
    DIR *dir = opendir(gen_dir);
    if (!dir)
        return rm_err_from_errno(errno);
    struct dirent *de;
    int rc = 0;
    while ((de = readdir(dir))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char path[GEN_DIR_MAX];
        if (path_join(path, sizeof(path), gen_dir, de->d_name) || unlink(path) != 0)
            rc = rc ? rc : RM_EIO;
    }
    closedir(dir);
    if (!rc && rmdir(gen_dir) != 0)
        rc = rm_err_from_errno(errno);
    return rc;
}

int gen_prune(const char *view_dir, int keep, size_t *ret_removed)
{
    if (keep < 1)
        return RM_EINVAL;
    int lock_fd = -1;
    int rc = lock_layout(view_dir, &lock_fd);
    if (rc)
        return rc;
    int64_t ids[GEN_MAX_LIST];
    size_t count = 0, removed = 0;
    int64_t current = 0, previous = 0;
    rc = scan_ids(view_dir, ids, GEN_MAX_LIST, &count);
    if (!rc)
        rc = read_link_id(view_dir, GEN_CURRENT, &current);
    if (!rc && gen_previous(view_dir, &previous) != 0)
        previous = 0;
    /* Survivors in order of preference: current, previous, then the newest others. */
    bool keep_previous = !rc && previous > 0 && previous != current && keep >= 2;
    int kept = 1 + keep_previous;
    for (size_t n = count; !rc && n-- > 0;) {
        int64_t id = ids[n];
        if (id == current || (keep_previous && id == previous))
            continue;
        char gen_dir[GEN_DIR_MAX];
        if (gen_path(view_dir, id, gen_dir, sizeof(gen_dir)))
            continue;
        if (writer_active(gen_dir))
            continue; /* note 3: a rebuild in progress, or a writer not yet moved on */
        if (kept < keep) {
            kept++;
            continue;
        }
        if (id == previous) {
            char link[GEN_DIR_MAX];
            if (!path_join(link, sizeof(link), view_dir, GEN_PREVIOUS))
                unlink(link); /* no way back to a deleted generation */
        }
        int drc = remove_gen_dir(gen_dir);
        if (drc)
            rc = drc;
        else
            removed++;
    }
    if (!rc && removed)
        rc = fsync_dir(view_dir);
    close(lock_fd);
    if (ret_removed)
        *ret_removed = removed;
    return rc;
}

static int64_t dir_size_bytes(const char *gen_dir)
{
    DIR *dir = opendir(gen_dir);
    if (!dir)
        return 0;
    int64_t total = 0;
    struct dirent *de;
    while ((de = readdir(dir))) {
        char path[GEN_DIR_MAX];
        struct stat sb;
        if (!path_join(path, sizeof(path), gen_dir, de->d_name) && lstat(path, &sb) == 0 &&
            S_ISREG(sb.st_mode))
            total += (int64_t)sb.st_blocks * 512;
    }
    closedir(dir);
    return total;
}

static int64_t read_created(const char *gen_dir)
{
    char path[GEN_DIR_MAX];
    long long ms = 0;
    if (!path_join(path, sizeof(path), gen_dir, "created")) {
        FILE *f = fopen(path, "r");
        if (f) {
            if (fscanf(f, "%lld", &ms) != 1)
                ms = 0;
            fclose(f);
        }
    }
    struct stat sb;
    if (ms <= 0 && stat(gen_dir, &sb) == 0) /* made by hand: the best guess we have */
        ms = (long long)sb.st_mtim.tv_sec * 1000 + sb.st_mtim.tv_nsec / 1000000;
    return ms;
}

static int add_topic_offset(void *ctx, const char *topic, int32_t partition,
                            const store_offset_t *offset)
{
    (void)partition;
    gen_info_t *gi = ctx;
    gen_topic_t *gt = NULL;
    for (size_t i = 0; i < gi->gi_topic_count && !gt; i++)
        if (strcmp(gi->gi_topics[i].gt_topic, topic) == 0)
            gt = &gi->gi_topics[i];
    if (!gt) {
        gen_topic_t *grown = realloc(gi->gi_topics, (gi->gi_topic_count + 1) * sizeof(*grown));
        if (!grown)
            return RM_ENOMEM;
        gi->gi_topics = grown;
        gt = &grown[gi->gi_topic_count++];
        memset(gt, 0, sizeof(*gt));
        snprintf(gt->gt_topic, sizeof(gt->gt_topic), "%s", topic);
    }
    gt->gt_partitions++;
    gt->gt_next_offset_sum += offset->so_next_offset;
    if (offset->so_high_watermark > offset->so_next_offset)
        gt->gt_lag_sum += offset->so_high_watermark - offset->so_next_offset;
    if (offset->so_updated_ms > gt->gt_updated_ms)
        gt->gt_updated_ms = offset->so_updated_ms;
    return 0;
}

static void read_offsets(gen_info_t *gi)
{
    if (!file_exists(gi->gi_path, "data.mdb")) {
        snprintf(gi->gi_error, sizeof(gi->gi_error), "no store in it (rebuild not started)");
        return;
    }
    store_opts_t opts = {.so_dir = gi->gi_path, .so_readonly = true};
    char err[256];
    store_t *store = store_open(&opts, err, sizeof(err));
    if (!store) {
        snprintf(gi->gi_error, sizeof(gi->gi_error), "%s", err);
        return;
    }
    MDB_txn *txn;
    int rc = store_read_begin(store, &txn);
    if (!rc) {
        rc = store_offset_foreach(store, txn, add_topic_offset, gi);
        store_read_end(txn);
    }
    if (rc)
        snprintf(gi->gi_error, sizeof(gi->gi_error), "offsets: %s", rm_strerror(rc));
    store_close(store);
}

int gen_list(const char *view_dir, bool with_offsets, gen_info_t **ret_gens, size_t *ret_count)
{
    int64_t ids[GEN_MAX_LIST];
    size_t count;
    int rc = scan_ids(view_dir, ids, GEN_MAX_LIST, &count);
    if (rc)
        return rc;
    int64_t current = 0, previous = 0;
    if (read_link_id(view_dir, GEN_CURRENT, &current))
        current = 0;
    if (gen_previous(view_dir, &previous))
        previous = 0;
    gen_info_t *gens = calloc(count ? count : 1, sizeof(*gens));
    if (!gens)
        return RM_ENOMEM;
    for (size_t i = 0; i < count; i++) {
        gen_info_t *gi = &gens[i];
        gi->gi_id = ids[i];
        if (gen_path(view_dir, ids[i], gi->gi_path, sizeof(gi->gi_path))) {
            gen_list_free(gens, count);
            return RM_EINVAL;
        }
        gi->gi_current = ids[i] == current;
        gi->gi_previous = ids[i] == previous;
        gi->gi_writer_active = writer_active(gi->gi_path);
        gi->gi_created_ms = read_created(gi->gi_path);
        gi->gi_size_bytes = dir_size_bytes(gi->gi_path);
        if (with_offsets)
            read_offsets(gi);
    }
    *ret_gens = gens;
    *ret_count = count;
    return 0;
}

void gen_list_free(gen_info_t *gens, size_t count)
{
    if (!gens)
        return;
    for (size_t i = 0; i < count; i++)
        free(gens[i].gi_topics);
    free(gens);
}
