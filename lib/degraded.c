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
    rc = rc ? rc
            : buf_printf(&json, ",\"partition\":%d,\"offset\":%lld,\"error\":", ev->de_partition,
                         (long long)ev->de_offset);
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

#define DEGRADED_WAIT_PREFIX "degraded-wait/"
#define DEGRADED_WAIT_PREFIX_LEN (sizeof(DEGRADED_WAIT_PREFIX) - 1)

/* "degraded-wait/" link \0 id \0 (the prefix degraded_link_learned looks up); with a
 * topic, followed by topic \0 partition(be32) offset(be64). Returns 0 when too long. */
static size_t wait_key(char *out, const char *link, const char *id, size_t id_len,
                       const char *topic, int32_t partition, int64_t offset)
{
    size_t llen = strlen(link), tlen = topic ? strlen(topic) : 0;
    size_t len = DEGRADED_WAIT_PREFIX_LEN + llen + 1 + id_len + 1 + (topic ? tlen + 13 : 0);
    if (len > DEGRADED_KEY_BYTES)
        return 0;
    char *p = out;
    memcpy(p, DEGRADED_WAIT_PREFIX, DEGRADED_WAIT_PREFIX_LEN);
    p += DEGRADED_WAIT_PREFIX_LEN;
    memcpy(p, link, llen);
    p[llen] = '\0';
    p += llen + 1;
    memcpy(p, id, id_len);
    p[id_len] = '\0';
    p += id_len + 1;
    if (topic) {
        memcpy(p, topic, tlen);
        p[tlen] = '\0';
        store_be32((unsigned char *)p + tlen + 1, (uint32_t)partition);
        store_be64((unsigned char *)p + tlen + 5, (uint64_t)offset);
    }
    return len;
}

int degraded_mark_wait(const view_t *view, store_t *store, MDB_txn *txn, const degraded_event_t *ev,
                       int64_t parked_at_ms)
{
    if (!ev->de_key || ev->de_key_len == 0 || ev->de_key_len > VIEW_KEY_MAX_BYTES ||
        memchr(ev->de_key, '\0', ev->de_key_len) || !view->v_link_count)
        return 0; /* nothing a link could ever resolve */
    buf_t value = BUF_INIT;
    int rc = buf_append(&value, &parked_at_ms, 8);
    rc = rc ? rc : buf_append(&value, &ev->de_timestamp_ms, 8);
    rc = rc ? rc : buf_append(&value, ev->de_error, strlen(ev->de_error) + 1);
    rc = rc ? rc : buf_append(&value, ev->de_reason, strnlen(ev->de_reason, 512));
    bool waits = false;
    /* The key may name an entity of any link: it waits under each, and the first link
     * that learns it applies the mark (the others then find it applied). */
    for (size_t l = 0; !rc && l < view->v_link_count; l++) {
        char key[DEGRADED_KEY_BYTES];
        size_t klen = wait_key(key, view->v_links[l], ev->de_key, ev->de_key_len, ev->de_topic,
                               ev->de_partition, ev->de_offset);
        if (!klen)
            continue; /* too long to wait here */
        MDB_val k = {klen, key}, v = {value.b_len, value.b_data};
        rc = rm_err_from_mdb(mdb_put(txn, store_dbi(store, STORE_DB_META), &k, &v, 0));
        waits = true;
    }
    buf_free(&value);
    if (rc || !waits)
        return rc;
    /* The record degraded_clear finds: empty while the mark waits, so that handling the
     * dead letter before its link arrives cancels the mark. */
    char name[400];
    meta_name(name, sizeof(name), ev->de_topic, ev->de_partition, ev->de_offset);
    return store_meta_put(store, txn, name, "", 0);
}

/* Applies one waiting mark (key and value of its "degraded-wait/" record). */
static int apply_waiting(const view_t *view, store_t *store, MDB_txn *txn, const char *key,
                         size_t klen, const char *value, size_t vlen)
{
    /* key: prefix link \0 id \0 topic \0 partition offset */
    const char *end = key + klen, *p = key + DEGRADED_WAIT_PREFIX_LEN;
    const char *link_end = memchr(p, '\0', (size_t)(end - p));
    const char *id = link_end ? link_end + 1 : NULL;
    const char *id_end = id ? memchr(id, '\0', (size_t)(end - id)) : NULL;
    const char *topic = id_end ? id_end + 1 : NULL;
    const char *topic_end = topic ? memchr(topic, '\0', (size_t)(end - topic)) : NULL;
    if (!topic_end || end - topic_end != 13 || vlen < 17)
        return RM_ESTORE;
    char topic_buf[256], error[64], reason[512];
    int64_t timestamp_ms;
    snprintf(topic_buf, sizeof(topic_buf), "%.*s", (int)(topic_end - topic), topic);
    memcpy(&timestamp_ms, value + 8, 8);
    const char *err = value + 16, *err_end = memchr(err, '\0', vlen - 16);
    if (!err_end)
        return RM_ESTORE;
    snprintf(error, sizeof(error), "%s", err);
    snprintf(reason, sizeof(reason), "%.*s", (int)(value + vlen - err_end - 1), err_end + 1);
    int32_t partition = (int32_t)store_get_be32((const unsigned char *)topic_end + 1);
    int64_t offset = (int64_t)store_get_be64((const unsigned char *)topic_end + 5);
    char name[400];
    meta_name(name, sizeof(name), topic_buf, partition, offset);
    const void *vkey;
    size_t vkey_len;
    int rc = store_meta_get(store, txn, name, &vkey, &vkey_len);
    if (rc == RM_ENOTFOUND || (rc == 0 && vkey_len > 0))
        return 0; /* handled before its link came, or marked through another link */
    if (rc)
        return rc;
    degraded_event_t ev = {topic_buf, partition, offset, timestamp_ms, id, (size_t)(id_end - id),
                           error,     reason};
    bool marked;
    return degraded_mark(view, store, txn, &ev, &marked);
}

/* Calls fn on each "degraded-wait/" record under prefix, in key order, and deletes it
 * when fn says so. Each record is copied out and the cursor closed before fn runs: fn
 * writes the meta db, which may move pages. */
typedef int (*wait_fn)(void *ctx, const char *key, size_t klen, const char *value, size_t vlen,
                       bool *ret_delete);

static int each_waiting(store_t *store, MDB_txn *txn, const char *prefix, size_t plen, wait_fn fn,
                        void *ctx)
{
    char key[DEGRADED_KEY_BYTES];
    memcpy(key, prefix, plen);
    size_t klen = plen;
    buf_t value = BUF_INIT;
    int rc = 0;
    for (bool first = true;; first = false) {
        MDB_cursor *cur;
        rc = rm_err_from_mdb(mdb_cursor_open(txn, store_dbi(store, STORE_DB_META), &cur));
        if (rc)
            break;
        MDB_val k = {klen, key}, v;
        int mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        /* After the first record, SET_RANGE finds it again when it was kept: step past. */
        if (!first && mrc == 0 && k.mv_size == klen && memcmp(k.mv_data, key, klen) == 0)
            mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        if (mrc || k.mv_size < plen || k.mv_size > sizeof(key) ||
            memcmp(k.mv_data, prefix, plen) != 0) {
            mdb_cursor_close(cur);
            rc = mrc && mrc != MDB_NOTFOUND ? rm_err_from_mdb(mrc) : 0;
            break;
        }
        memcpy(key, k.mv_data, k.mv_size);
        klen = k.mv_size;
        buf_reset(&value);
        rc = buf_append(&value, v.mv_data, v.mv_size);
        mdb_cursor_close(cur); /* fn writes: the next record is looked up afresh */
        bool del = false;
        if (!rc)
            rc = fn(ctx, key, klen, value.b_data, value.b_len, &del);
        if (!rc && del) {
            MDB_val dk = {klen, key};
            rc = rm_err_from_mdb(mdb_del(txn, store_dbi(store, STORE_DB_META), &dk, NULL));
        }
        if (rc)
            break;
    }
    buf_free(&value);
    return rc;
}

typedef struct learn_ctx {
    const view_t *lc_view;
    store_t *lc_store;
    MDB_txn *lc_txn;
} learn_ctx_t;

static int learn_one(void *ctx, const char *key, size_t klen, const char *value, size_t vlen,
                     bool *ret_delete)
{
    learn_ctx_t *lc = ctx;
    *ret_delete = true;
    return apply_waiting(lc->lc_view, lc->lc_store, lc->lc_txn, key, klen, value, vlen);
}

int degraded_link_learned(const view_t *view, store_t *store, MDB_txn *txn, const char *link,
                          const char *id, size_t id_len)
{
    char prefix[DEGRADED_KEY_BYTES];
    size_t plen = wait_key(prefix, link, id, id_len, NULL, 0, 0);
    if (!plen)
        return 0;
    learn_ctx_t lc = {view, store, txn};
    return each_waiting(store, txn, prefix, plen, learn_one, &lc);
}

typedef struct expire_ctx {
    store_t *xc_store;
    MDB_txn *xc_txn;
    int64_t xc_cutoff_ms;
    size_t xc_dropped;
} expire_ctx_t;

static int expire_one(void *ctx, const char *key, size_t klen, const char *value, size_t vlen,
                      bool *ret_delete)
{
    expire_ctx_t *xc = ctx;
    int64_t parked_at_ms = 0;
    if (vlen >= 8)
        memcpy(&parked_at_ms, value, 8);
    *ret_delete = parked_at_ms < xc->xc_cutoff_ms;
    if (!*ret_delete)
        return 0;
    xc->xc_dropped++;
    /* Forget the waiting record too, unless another link applied the mark. */
    const char *end = key + klen, *p = key + DEGRADED_WAIT_PREFIX_LEN;
    for (int field = 0; field < 2 && p; field++) {
        const char *nul = memchr(p, '\0', (size_t)(end - p));
        p = nul ? nul + 1 : NULL;
    }
    const char *topic_end = p ? memchr(p, '\0', (size_t)(end - p)) : NULL;
    if (!topic_end || end - topic_end != 13)
        return 0;
    char topic[256], name[400];
    snprintf(topic, sizeof(topic), "%.*s", (int)(topic_end - p), p);
    meta_name(name, sizeof(name), topic,
              (int32_t)store_get_be32((const unsigned char *)topic_end + 1),
              (int64_t)store_get_be64((const unsigned char *)topic_end + 5));
    const void *vkey;
    size_t vkey_len;
    int rc = store_meta_get(xc->xc_store, xc->xc_txn, name, &vkey, &vkey_len);
    if (rc == RM_ENOTFOUND || (rc == 0 && vkey_len > 0))
        return 0;
    if (rc)
        return rc;
    MDB_val mk = {strlen(name), name};
    rc = mdb_del(xc->xc_txn, store_dbi(xc->xc_store, STORE_DB_META), &mk, NULL);
    return rc && rc != MDB_NOTFOUND ? rm_err_from_mdb(rc) : 0;
}

int degraded_expire_waiting(store_t *store, MDB_txn *txn, int64_t cutoff_ms, size_t *ret_dropped)
{
    expire_ctx_t xc = {store, txn, cutoff_ms, 0};
    int rc =
        each_waiting(store, txn, DEGRADED_WAIT_PREFIX, DEGRADED_WAIT_PREFIX_LEN, expire_one, &xc);
    if (!rc)
        *ret_dropped = xc.xc_dropped;
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
    if (vlen == 0) {
        /* Still waiting for its link: forgetting the record cancels it (the parked copy
         * finds no record when the link comes, degraded_mark_parked). */
        MDB_val mk = {strlen(name), name};
        rc = mdb_del(txn, store_dbi(store, STORE_DB_META), &mk, NULL);
        *ret_cleared = rc == 0;
        return rc && rc != MDB_NOTFOUND ? rm_err_from_mdb(rc) : 0;
    }
    if (vlen > sizeof(copy))
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
