/* store: one view's LMDB environment — layout, transactions, offsets, meta.
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
 *     old pages and make the file grow. */
#include "store.h"
#include "rm_time.h"
#include "rm_err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STORE_DEFAULT_MAP_BYTES ((size_t)1 << 30)
#define STORE_MAX_READERS 512 /* HTTP worker threads plus tools; each holds one slot */

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
    int64_t st_last_sync_ms;
    size_t st_map_bytes;
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

store_t *store_open(const store_opts_t *opts, char *errstr, size_t errlen)
{
    store_t *store = calloc(1, sizeof(*store));
    if (!store || !(store->st_dir = strdup(opts->so_dir))) {
        snprintf(errstr, errlen, "out of memory");
        free(store);
        return NULL;
    }
    store->st_readonly = opts->so_readonly;
    store->st_lock_fd = -1;
    store->st_durability = opts->so_durability;
    store->st_sync_interval_ms = opts->so_sync_interval_ms > 0 ? opts->so_sync_interval_ms : 1000;
    store->st_last_sync_ms = rm_mono_ms();

    if (!store->st_readonly) {
        if (mkdir(store->st_dir, 0755) != 0 && errno != EEXIST) {
            snprintf(errstr, errlen, "%s: cannot create: %s", store->st_dir, strerror(errno));
            goto fail;
        }
        if (store_take_lock(store, errstr, errlen))
            goto fail;
    } else {
        struct stat sb;
        char data_path[4096];
        snprintf(data_path, sizeof(data_path), "%s/data.mdb", store->st_dir);
        if (stat(data_path, &sb) != 0) {
            snprintf(errstr, errlen, "%s: no store yet: %s", store->st_dir, strerror(errno));
            goto fail;
        }
    }

    int rc = mdb_env_create(&store->st_env);
    if (rc) {
        snprintf(errstr, errlen, "mdb_env_create: %s", mdb_strerror(rc));
        goto fail;
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
                                on the sparse file; bench/README.md) */
    else if (store->st_durability == STORE_NOMETASYNC)
        flags |= MDB_NOMETASYNC;
    rc = mdb_env_open(store->st_env, store->st_dir, flags, 0644);
    if (rc) {
        snprintf(errstr, errlen, "%s: open: %s", store->st_dir, mdb_strerror(rc));
        goto fail;
    }
    int dead = 0;
    mdb_reader_check(store->st_env, &dead);
    MDB_envinfo info;
    mdb_env_info(store->st_env, &info);
    store->st_map_bytes = info.me_mapsize;
    if (store_open_dbs(store, errstr, errlen))
        goto fail;
    return store;
fail:
    store_close(store);
    return NULL;
}

void store_close(store_t *store)
{
    if (!store)
        return;
    if (store->st_env) {
        if (!store->st_readonly)
            mdb_env_sync(store->st_env, 1);
        mdb_env_close(store->st_env);
    }
    if (store->st_lock_fd >= 0)
        close(store->st_lock_fd);
    free(store->st_dir);
    free(store);
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
    int rc = mdb_txn_commit(txn);
    if (rc)
        return rm_err_from_mdb(rc);
    if (store->st_durability == STORE_PERIODIC) {
        int64_t now = rm_mono_ms();
        if (now - store->st_last_sync_ms >= store->st_sync_interval_ms) {
            store->st_last_sync_ms = now;
            rc = mdb_env_sync(store->st_env, 1);
            if (rc)
                return rm_err_from_mdb(rc);
        }
    }
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
    int rc = mdb_env_set_mapsize(store->st_env, map);
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
    store->st_last_sync_ms = rm_mono_ms();
    return rm_err_from_mdb(mdb_env_sync(store->st_env, 1));
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

size_t store_doc_key(char *out, size_t cap, const char *view_key, size_t view_key_len,
                     const char *section, const char *item, size_t item_len)
{
    size_t section_len = strlen(section);
    size_t len = view_key_len + 1 + section_len + 1 + item_len;
    if (len > cap || len > 511)
        return 0;
    char *p = out;
    memcpy(p, view_key, view_key_len);
    p += view_key_len;
    *p++ = '\0';
    memcpy(p, section, section_len);
    p += section_len;
    *p++ = '\0';
    if (item_len)
        memcpy(p, item, item_len);
    return len;
}

/* offsets key: topic \0 partition(be32) */
static size_t store_offset_key(unsigned char *out, size_t cap, const char *topic,
                               int32_t partition)
{
    size_t topic_len = strlen(topic);
    if (topic_len + 5 > cap)
        return 0;
    memcpy(out, topic, topic_len);
    out[topic_len] = '\0';
    store_be32(out + topic_len + 1, (uint32_t)partition);
    return topic_len + 5;
}

int store_offset_get(store_t *store, MDB_txn *txn, const char *topic, int32_t partition,
                     store_offset_t *ret_offset)
{
    unsigned char kbuf[300];
    MDB_val key = {store_offset_key(kbuf, sizeof(kbuf), topic, partition), kbuf}, val;
    if (!key.mv_size)
        return RM_EINVAL;
    int rc = mdb_get(txn, store->st_dbi[STORE_DB_OFFSETS], &key, &val);
    if (rc)
        return rm_err_from_mdb(rc);
    if (val.mv_size != sizeof(*ret_offset))
        return RM_ESTORE;
    memcpy(ret_offset, val.mv_data, sizeof(*ret_offset));
    return 0;
}

int store_offset_put(store_t *store, MDB_txn *txn, const char *topic, int32_t partition,
                     const store_offset_t *offset)
{
    unsigned char kbuf[300];
    MDB_val key = {store_offset_key(kbuf, sizeof(kbuf), topic, partition), kbuf};
    MDB_val val = {sizeof(*offset), (void *)offset};
    if (!key.mv_size)
        return RM_EINVAL;
    return rm_err_from_mdb(mdb_put(txn, store->st_dbi[STORE_DB_OFFSETS], &key, &val, 0));
}

int store_offset_foreach(store_t *store, MDB_txn *txn, store_offset_cb cb, void *ctx)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, store->st_dbi[STORE_DB_OFFSETS], &cur);
    if (rc)
        return rm_err_from_mdb(rc);
    MDB_val key, val;
    int ret = 0;
    for (rc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        const unsigned char *k = key.mv_data;
        if (key.mv_size < 6 || k[key.mv_size - 5] != '\0' || val.mv_size != sizeof(store_offset_t))
            continue; /* not an offsets record of ours; never written by this version */
        char topic[256];
        size_t topic_len = key.mv_size - 5;
        if (topic_len >= sizeof(topic))
            continue;
        memcpy(topic, k, topic_len);
        topic[topic_len] = '\0';
        store_offset_t off;
        memcpy(&off, val.mv_data, sizeof(off));
        ret = cb(ctx, topic, (int32_t)store_get_be32(k + topic_len + 1), &off);
        if (ret)
            break;
    }
    mdb_cursor_close(cur);
    if (!ret && rc != MDB_NOTFOUND)
        ret = rm_err_from_mdb(rc);
    return ret;
}

int store_meta_get(store_t *store, MDB_txn *txn, const char *name, const void **ret_data,
                   size_t *ret_len)
{
    MDB_val key = {strlen(name), (void *)name}, val;
    int rc = mdb_get(txn, store->st_dbi[STORE_DB_META], &key, &val);
    if (rc)
        return rm_err_from_mdb(rc);
    *ret_data = val.mv_data;
    *ret_len = val.mv_size;
    return 0;
}

int store_meta_put(store_t *store, MDB_txn *txn, const char *name, const void *data, size_t len)
{
    MDB_val key = {strlen(name), (void *)name}, val = {len, (void *)data};
    return rm_err_from_mdb(mdb_put(txn, store->st_dbi[STORE_DB_META], &key, &val, 0));
}

int store_meta_get_i64(store_t *store, MDB_txn *txn, const char *name, int64_t *ret_value)
{
    const void *data;
    size_t len;
    int rc = store_meta_get(store, txn, name, &data, &len);
    if (rc)
        return rc;
    if (len != sizeof(int64_t))
        return RM_ESTORE;
    memcpy(ret_value, data, sizeof(int64_t));
    return 0;
}

int store_meta_foreach(store_t *store, MDB_txn *txn, const char *prefix, store_meta_cb cb,
                       void *ctx)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, store->st_dbi[STORE_DB_META], &cur);
    if (rc)
        return rm_err_from_mdb(rc);
    size_t plen = strlen(prefix);
    MDB_val key = {plen, (void *)prefix}, val;
    int ret = 0;
    for (rc = mdb_cursor_get(cur, &key, &val, plen ? MDB_SET_RANGE : MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        if (key.mv_size < plen || memcmp(key.mv_data, prefix, plen) != 0)
            break;
        ret = cb(ctx, key.mv_data, key.mv_size, val.mv_data, val.mv_size);
        if (ret)
            break;
    }
    mdb_cursor_close(cur);
    if (!ret && rc && rc != MDB_NOTFOUND)
        ret = rm_err_from_mdb(rc);
    return ret;
}

int store_meta_put_i64(store_t *store, MDB_txn *txn, const char *name, int64_t value)
{
    return store_meta_put(store, txn, name, &value, sizeof(value));
}
