/* store_records: the keys and records the store keeps beside the fragments — the doc key
 * layout, the next offset of every partition, and the meta entries (store.h). Each runs
 * in the caller's transaction; only the layout is known here, not the environment. */
#include "rm_err.h"
#include "store.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

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

int store_doc_exists(store_t *store, MDB_txn *txn, const char *view_key, size_t view_key_len,
                     bool *ret_found)
{
    char prefix[512]; /* "view_key \0": every doc key of view_key starts with it */
    *ret_found = false;
    if (view_key_len == 0 || view_key_len >= sizeof(prefix))
        return RM_EINVAL;
    memcpy(prefix, view_key, view_key_len);
    prefix[view_key_len] = '\0';
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, store_dbi(store, STORE_DB_DOC), &cur);
    if (rc)
        return rm_err_from_mdb(rc);
    MDB_val key = {view_key_len + 1, prefix}, val;
    rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
    *ret_found =
        rc == 0 && key.mv_size > view_key_len && memcmp(key.mv_data, prefix, view_key_len + 1) == 0;
    mdb_cursor_close(cur);
    return rc && rc != MDB_NOTFOUND ? rm_err_from_mdb(rc) : 0;
}

/* offsets key: topic \0 partition(be32) */
static size_t store_offset_key(unsigned char *out, size_t cap, const char *topic, int32_t partition)
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
    int rc = mdb_get(txn, store_dbi(store, STORE_DB_OFFSETS), &key, &val);
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
    return rm_err_from_mdb(mdb_put(txn, store_dbi(store, STORE_DB_OFFSETS), &key, &val, 0));
}

int store_offset_foreach(store_t *store, MDB_txn *txn, store_offset_cb cb, void *ctx)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, store_dbi(store, STORE_DB_OFFSETS), &cur);
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
    int rc = mdb_get(txn, store_dbi(store, STORE_DB_META), &key, &val);
    if (rc)
        return rm_err_from_mdb(rc);
    *ret_data = val.mv_data;
    *ret_len = val.mv_size;
    return 0;
}

int store_meta_put(store_t *store, MDB_txn *txn, const char *name, const void *data, size_t len)
{
    MDB_val key = {strlen(name), (void *)name}, val = {len, (void *)data};
    return rm_err_from_mdb(mdb_put(txn, store_dbi(store, STORE_DB_META), &key, &val, 0));
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
    int rc = mdb_cursor_open(txn, store_dbi(store, STORE_DB_META), &cur);
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
