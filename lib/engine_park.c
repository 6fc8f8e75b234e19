/* engine_park: events whose view key waits for a link (engine.c, note 3) — parking,
 * unparking when the link is learned, expiry, and the upgrade of old parked values. */
#include "engine_int.h"
#include "rm_time.h"
#include "topic_counts.h"

#include <string.h>

#define ENGINE_PENDING_FORMAT 2
#define ENGINE_PARKED_HEAD 9 /* u8 kind, i64 parked_at_ms (engine_park()) */
/* What a parked value holds: an event waiting for its view key, or a tombstone (a null
 * value) whose `delete` rule waits for the link that names its item's view key. */
enum { ENGINE_PARKED_EVENT = 1, ENGINE_PARKED_TOMBSTONE = 2 };

/* Rewrites format-1 parked events (no kind, no parked_at) as format 2, once per store.
 * Their parking time was never recorded, so it counts from now: an upgrade may make an
 * event wait longer than projector.parked_max_age_s, never shorter. */
int engine_pending_upgrade(engine_t *engine, MDB_txn *txn)
{
    MDB_dbi dbi = store_dbi(engine->en_store, STORE_DB_PENDING);
    MDB_cursor *cur;
    int rc = rm_err_from_mdb(mdb_cursor_open(txn, dbi, &cur));
    if (rc)
        return rc;
    char key[ENGINE_KEY_BYTES];
    uint8_t kind = ENGINE_PARKED_EVENT;
    int64_t now_ms = rm_wall_ms();
    MDB_val k, v;
    int mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (mrc == 0) {
        if (k.mv_size > sizeof(key)) {
            mrc = MDB_CORRUPTED;
            break;
        }
        memcpy(key, k.mv_data, k.mv_size);
        size_t klen = k.mv_size;
        buf_t *b = &engine->en_scratch;
        buf_reset(b);
        rc = buf_append(b, &kind, 1);
        rc = rc ? rc : buf_append(b, &now_ms, 8);
        rc = rc ? rc : buf_append(b, v.mv_data, v.mv_size);
        if (rc)
            break;
        /* Through the cursor: the value changes size, and the cursor stays on the key. */
        MDB_val nk = {klen, key}, nv = {b->b_len, b->b_data};
        mrc = mdb_cursor_put(cur, &nk, &nv, 0);
        if (mrc == 0)
            mrc = mdb_cursor_get(cur, &nk, &nv, MDB_SET);
        if (mrc == 0)
            mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (!rc && mrc != MDB_NOTFOUND)
        rc = rm_err_from_mdb(mrc);
    return rc ? rc
              : store_meta_put_i64(engine->en_store, txn, ENGINE_PENDING_FORMAT_META,
                                   ENGINE_PENDING_FORMAT);
}

/* ---- parking ---- */

/* Parked value (format 2): u8 kind | i64 parked_at_ms | i32 partition | i64 offset |
 *   i64 timestamp | u16 topic_len | topic | u32 key_len | key | value (none for a
 *   tombstone, whose kind says the value was null, not empty).
 * parked_at_ms is the wall clock of the transaction that parked it: how long an entry has
 * waited in this store, which is what link-timeout means. The message's own timestamp
 * says when it was produced, and a first deployment or a rebuild over old history would
 * read every parked event as long overdue. Format 1 (before parked_at and kind) is
 * rewritten once by engine_txn_begin (engine_pending_upgrade). */

int engine_park(engine_t *engine, MDB_txn *txn, const engine_msg_t *msg, const char *link,
                const char *id, size_t id_len)
{
    char key[ENGINE_KEY_BYTES];
    size_t klen = join_key(key, link, strlen(link), id, id_len);
    if (!klen || klen + 9 > sizeof(key))
        return RM_EVALIDATE;
    key[klen++] = '\0';
    store_be64((unsigned char *)key + klen, (uint64_t)++engine->en_pending_seq);
    klen += 8;
    engine->en_pending_seq_dirty = true;
    buf_t *b = &engine->en_scratch;
    buf_reset(b);
    uint16_t topic_len = (uint16_t)strlen(msg->em_topic);
    uint32_t key_len = (uint32_t)msg->em_key_len;
    uint8_t kind = msg->em_value ? ENGINE_PARKED_EVENT : ENGINE_PARKED_TOMBSTONE;
    int64_t parked_at_ms = rm_wall_ms();
    int rc = buf_append(b, &kind, 1);
    rc = rc ? rc : buf_append(b, &parked_at_ms, 8);
    rc = rc ? rc : buf_append(b, &msg->em_partition, 4);
    rc = rc ? rc : buf_append(b, &msg->em_offset, 8);
    rc = rc ? rc : buf_append(b, &msg->em_timestamp_ms, 8);
    rc = rc ? rc : buf_append(b, &topic_len, 2);
    rc = rc ? rc : buf_append(b, msg->em_topic, topic_len);
    rc = rc ? rc : buf_append(b, &key_len, 4);
    rc = rc ? rc : buf_append(b, msg->em_key, key_len);
    if (msg->em_value)
        rc = rc ? rc : buf_append(b, msg->em_value, msg->em_value_len);
    rc = rc ? rc : db_put(engine, txn, STORE_DB_PENDING, key, klen, b->b_data, b->b_len);
    return rc ? rc
              : topic_counts_add(engine->en_store, txn, msg->em_topic, topic_len,
                                 TOPIC_COUNTS_PARKED, 1);
}

/* Decodes a parked envelope (written by engine_park()); topic is copied into topic_buf. */
static int parked_decode(const char *data, size_t len, engine_msg_t *msg, char *topic_buf,
                         size_t topic_cap, uint8_t *ret_kind, int64_t *ret_parked_at_ms)
{
    const char *p = data, *end = data + len;
    uint16_t topic_len;
    uint32_t key_len;
    memset(msg, 0, sizeof(*msg));
    if (end - p < ENGINE_PARKED_HEAD + 22)
        return RM_ESTORE;
    memcpy(ret_kind, p, 1);
    memcpy(ret_parked_at_ms, p + 1, 8);
    if (*ret_kind != ENGINE_PARKED_EVENT && *ret_kind != ENGINE_PARKED_TOMBSTONE)
        return RM_ESTORE; /* written by a newer version: left alone, never misread */
    p += ENGINE_PARKED_HEAD;
    memcpy(&msg->em_partition, p, 4);
    memcpy(&msg->em_offset, p + 4, 8);
    memcpy(&msg->em_timestamp_ms, p + 12, 8);
    memcpy(&topic_len, p + 20, 2);
    p += 22;
    if (end - p < topic_len + 4 || topic_len >= topic_cap)
        return RM_ESTORE;
    memcpy(topic_buf, p, topic_len);
    topic_buf[topic_len] = '\0';
    p += topic_len;
    memcpy(&key_len, p, 4);
    p += 4;
    if ((size_t)(end - p) < key_len)
        return RM_ESTORE;
    msg->em_topic = topic_buf;
    msg->em_key = p;
    msg->em_key_len = key_len;
    p += key_len;
    if (*ret_kind == ENGINE_PARKED_TOMBSTONE)
        return p == end ? 0 : RM_ESTORE;
    msg->em_value = p;
    msg->em_value_len = (size_t)(end - p);
    return 0;
}

int engine_expire_parked(engine_t *engine, MDB_txn *txn, int64_t cutoff_ms, engine_expired_cb cb,
                         void *ctx, size_t *ret_expired)
{
    MDB_cursor *cur;
    int rc =
        rm_err_from_mdb(mdb_cursor_open(txn, store_dbi(engine->en_store, STORE_DB_PENDING), &cur));
    if (rc)
        return rc;
    size_t expired = 0;
    MDB_val key, val;
    int mrc;
    for (mrc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); mrc == 0;
         mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        engine_msg_t msg;
        char topic[256], link[VIEW_NAME_MAX_BYTES + 1];
        uint8_t kind;
        int64_t parked_at_ms;
        if (parked_decode(val.mv_data, val.mv_size, &msg, topic, sizeof(topic), &kind,
                          &parked_at_ms) ||
            parked_at_ms >= cutoff_ms)
            continue;
        const char *sep = memchr(key.mv_data, '\0', key.mv_size);
        size_t link_len = sep ? (size_t)(sep - (const char *)key.mv_data) : 0;
        if (link_len > VIEW_NAME_MAX_BYTES)
            link_len = 0;
        memcpy(link, key.mv_data, link_len);
        link[link_len] = '\0';
        /* Copy the value out: the callback writes (the outbox), which may move pages. */
        buf_t *b = &engine->en_unpark;
        buf_reset(b);
        if ((rc = buf_append(b, val.mv_data, val.mv_size)))
            break;
        parked_decode(b->b_data, b->b_len, &msg, topic, sizeof(topic), &kind, &parked_at_ms);
        if ((rc = rm_err_from_mdb(mdb_cursor_del(cur, 0))))
            break;
        if ((rc = topic_counts_add(engine->en_store, txn, msg.em_topic, strlen(msg.em_topic),
                                   TOPIC_COUNTS_PARKED, -1)))
            break;
        engine_parked_t parked = {msg, link, parked_at_ms};
        if ((rc = cb(ctx, txn, &parked)))
            break;
        expired++;
    }
    mdb_cursor_close(cur);
    if (!rc && mrc && mrc != MDB_NOTFOUND)
        rc = rm_err_from_mdb(mrc);
    *ret_expired = expired;
    return rc;
}

/* Applies, in arrival order, every event parked under (link, id). */
int engine_unpark(engine_t *engine, MDB_txn *txn, const char *link, const char *id, size_t id_len,
                  size_t *ret_count)
{
    char prefix[ENGINE_KEY_BYTES];
    size_t plen = join_key(prefix, link, strlen(link), id, id_len);
    if (!plen)
        return 0;
    prefix[plen++] = '\0';
    for (;;) {
        MDB_cursor *cur;
        int rc = rm_err_from_mdb(
            mdb_cursor_open(txn, store_dbi(engine->en_store, STORE_DB_PENDING), &cur));
        if (rc)
            return rc;
        MDB_val key = {plen, prefix}, val;
        rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
        if (rc || key.mv_size != plen + 8 || memcmp(key.mv_data, prefix, plen) != 0) {
            mdb_cursor_close(cur);
            return rc && rc != MDB_NOTFOUND ? rm_err_from_mdb(rc) : 0;
        }
        buf_t *b = &engine->en_unpark;
        buf_reset(b);
        rc = buf_append(b, val.mv_data, val.mv_size);
        if (!rc)
            rc = rm_err_from_mdb(mdb_cursor_del(cur, 0));
        mdb_cursor_close(cur);
        if (rc)
            return rc;
        engine_msg_t msg;
        char topic[256];
        uint8_t kind;
        int64_t parked_at_ms;
        if (parked_decode(b->b_data, b->b_len, &msg, topic, sizeof(topic), &kind, &parked_at_ms))
            continue;
        if ((rc = topic_counts_add(engine->en_store, txn, topic, strlen(topic), TOPIC_COUNTS_PARKED,
                                   -1)))
            return rc;
        engine_result_t sub;
        rc = engine_apply_msg(engine, txn, &msg, &sub);
        /* Poison found only now is still poison: it goes where it would have gone had
         * its link been known on arrival, never nowhere. */
        if (!rc && sub.er_outcome == ENGINE_REJECTED && engine->en_unparked_rejected)
            rc = engine->en_unparked_rejected(engine->en_unparked_rejected_ctx, txn, &msg, &sub);
        if (rc)
            return rc;
        (*ret_count)++;
    }
}

int engine_parked_count(engine_t *engine, MDB_txn *txn, size_t *ret_count)
{
    MDB_stat st;
    int rc = mdb_stat(txn, store_dbi(engine->en_store, STORE_DB_PENDING), &st);
    if (rc)
        return rm_err_from_mdb(rc);
    *ret_count = st.ms_entries;
    return 0;
}
