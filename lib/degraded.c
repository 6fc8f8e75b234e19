/* degraded: marks on entities whose events were dead-lettered (degraded.h). */
#include "degraded.h"
#include "buf.h"
#include "rm_err.h"

#include <stdio.h>
#include <string.h>

#define DEGRADED_KEY_BYTES 512

static void meta_name(char *out, size_t cap, const char *topic, int32_t partition, int64_t offset)
{
    snprintf(out, cap, "degraded/%s/%d/%lld", topic, partition, (long long)offset);
}

/* The mark's doc key: view_key \0 \xfe \0 topic \0 partition(be32) offset(be64). */
static size_t mark_key(char *out, const char *vkey, size_t vkey_len, const char *topic,
                       int32_t partition, int64_t offset)
{
    char item[300];
    size_t tlen = strlen(topic);
    if (tlen + 13 > sizeof(item))
        return 0;
    memcpy(item, topic, tlen);
    item[tlen] = '\0';
    store_be32((unsigned char *)item + tlen + 1, (uint32_t)partition);
    store_be64((unsigned char *)item + tlen + 5, (uint64_t)offset);
    return store_doc_key(out, DEGRADED_KEY_BYTES, vkey, vkey_len, DEGRADED_SECTION, item,
                         tlen + 13);
}

/* The view key a message key names: itself, or through a link. 0 with *ret_len 0 when
 * it names none. out must hold VIEW_KEY_MAX_BYTES. */
static int resolve(const view_t *view, store_t *store, MDB_txn *txn, const degraded_event_t *ev,
                   char *out, size_t *ret_len)
{
    *ret_len = 0;
    if (!ev->de_key || ev->de_key_len == 0 || ev->de_key_len > VIEW_KEY_MAX_BYTES ||
        memchr(ev->de_key, '\0', ev->de_key_len))
        return 0;
    bool found;
    int rc = store_doc_exists(store, txn, ev->de_key, ev->de_key_len, &found);
    if (rc || found) {
        if (found) {
            memcpy(out, ev->de_key, ev->de_key_len);
            *ret_len = ev->de_key_len;
        }
        return rc;
    }
    for (size_t l = 0; l < view->v_link_count; l++) {
        char lkey[DEGRADED_KEY_BYTES];
        size_t llen = strlen(view->v_links[l]);
        if (llen + 1 + ev->de_key_len > sizeof(lkey))
            continue;
        memcpy(lkey, view->v_links[l], llen);
        lkey[llen] = '\0';
        memcpy(lkey + llen + 1, ev->de_key, ev->de_key_len);
        MDB_val k = {llen + 1 + ev->de_key_len, lkey}, v;
        rc = mdb_get(txn, store_dbi(store, STORE_DB_LINK), &k, &v);
        if (rc == MDB_NOTFOUND)
            continue;
        if (rc)
            return rm_err_from_mdb(rc);
        /* An erased entity's links hold a single NUL: nothing left to warn about. */
        if (v.mv_size == 0 || v.mv_size > VIEW_KEY_MAX_BYTES || memchr(v.mv_data, '\0', v.mv_size))
            continue;
        memcpy(out, v.mv_data, v.mv_size);
        *ret_len = v.mv_size;
        return 0;
    }
    return 0;
}

int degraded_mark(const view_t *view, store_t *store, MDB_txn *txn, const degraded_event_t *ev,
                  bool *ret_marked)
{
    *ret_marked = false;
    char vkey[VIEW_KEY_MAX_BYTES];
    size_t vlen;
    int rc = resolve(view, store, txn, ev, vkey, &vlen);
    if (rc || vlen == 0)
        return rc;
    char key[DEGRADED_KEY_BYTES];
    size_t klen = mark_key(key, vkey, vlen, ev->de_topic, ev->de_partition, ev->de_offset);
    if (!klen)
        return 0; /* a topic name too long to mark: the dead letter itself is still kept */
    buf_t json = BUF_INIT;
    rc = buf_append_str(&json, "{\"topic\":");
    rc = rc ? rc : buf_append_json_str(&json, ev->de_topic, strlen(ev->de_topic));
    rc = rc ? rc : buf_printf(&json, ",\"partition\":%d,\"offset\":%lld,\"error\":",
                              ev->de_partition, (long long)ev->de_offset);
    rc = rc ? rc : buf_append_json_str(&json, ev->de_error, strlen(ev->de_error));
    rc = rc ? rc : buf_append_str(&json, ",\"reason\":");
    rc = rc ? rc : buf_append_json_str(&json, ev->de_reason, strnlen(ev->de_reason, 512));
    rc = rc ? rc : buf_printf(&json, ",\"timestamp\":%lld}", (long long)ev->de_timestamp_ms);
    if (!rc) {
        MDB_val k = {klen, key}, v = {json.b_len, json.b_data};
        rc = rm_err_from_mdb(mdb_put(txn, store_dbi(store, STORE_DB_DOC), &k, &v, 0));
    }
    buf_free(&json);
    char name[400];
    meta_name(name, sizeof(name), ev->de_topic, ev->de_partition, ev->de_offset);
    if (!rc)
        rc = store_meta_put(store, txn, name, vkey, vlen);
    *ret_marked = rc == 0;
    return rc;
}

int degraded_clear(store_t *store, MDB_txn *txn, const char *topic, int32_t partition,
                   int64_t offset, bool *ret_cleared)
{
    *ret_cleared = false;
    char name[400];
    meta_name(name, sizeof(name), topic, partition, offset);
    const void *vkey;
    size_t vlen;
    int rc = store_meta_get(store, txn, name, &vkey, &vlen);
    if (rc == RM_ENOTFOUND)
        return 0;
    if (rc)
        return rc;
    char key[DEGRADED_KEY_BYTES];
    char copy[VIEW_KEY_MAX_BYTES];
    if (vlen == 0 || vlen > sizeof(copy))
        return RM_ESTORE;
    memcpy(copy, vkey, vlen); /* the meta page may move when the doc db is written */
    size_t klen = mark_key(key, copy, vlen, topic, partition, offset);
    if (klen) {
        MDB_val k = {klen, key};
        rc = mdb_del(txn, store_dbi(store, STORE_DB_DOC), &k, NULL);
        *ret_cleared = rc == 0;
        if (rc && rc != MDB_NOTFOUND) /* gone already: erased with its key */
            return rm_err_from_mdb(rc);
    }
    MDB_val mk = {strlen(name), name};
    rc = mdb_del(txn, store_dbi(store, STORE_DB_META), &mk, NULL);
    return rc && rc != MDB_NOTFOUND ? rm_err_from_mdb(rc) : 0;
}
