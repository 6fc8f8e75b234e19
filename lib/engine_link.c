/* engine_link: links (last claim wins by stamp, re-pointing) and erasure of a view key
 * (engine.c, note 4), which turns the key's links into "erased" markers. */
#include "engine_int.h"

#include <string.h>

/* Deletes every key of db that starts with prefix; calls on_key for each first. */
static int delete_prefix(engine_t *engine, MDB_txn *txn, store_db_t db, const char *prefix,
                         size_t plen,
                         int (*on_key)(engine_t *, MDB_txn *, const MDB_val *, const MDB_val *),
                         MDB_txn *cb_txn)
{
    for (;;) {
        MDB_cursor *cur;
        int rc = rm_err_from_mdb(mdb_cursor_open(txn, store_dbi(engine->en_store, db), &cur));
        if (rc)
            return rc;
        MDB_val key = {plen, (void *)prefix}, val;
        rc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
        if (rc || key.mv_size < plen || memcmp(key.mv_data, prefix, plen) != 0) {
            mdb_cursor_close(cur);
            return rc && rc != MDB_NOTFOUND ? rm_err_from_mdb(rc) : 0;
        }
        char copy[ENGINE_KEY_BYTES], vcopy[ENGINE_STAMP_BYTES];
        size_t clen = key.mv_size < sizeof(copy) ? key.mv_size : sizeof(copy);
        size_t vlen = val.mv_size <= sizeof(vcopy) ? val.mv_size : 0; /* only small values */
        memcpy(copy, key.mv_data, clen);
        memcpy(vcopy, val.mv_data, vlen);
        rc = rm_err_from_mdb(mdb_cursor_del(cur, 0));
        mdb_cursor_close(cur);
        if (rc)
            return rc;
        if (on_key) {
            MDB_val k = {clen, copy}, v = {vlen, vcopy};
            rc = on_key(engine, cb_txn, &k, &v);
            if (rc)
                return rc;
        }
    }
}

static bool link_is_erased(const MDB_val *target)
{
    return target->mv_size == 1 && memcmp(target->mv_data, ENGINE_ERASED_LINK, 1) == 0;
}

/* A link is last-writer-wins by the stamp of the event that claimed it, whatever view
 * key the claim names (the version guard is per view key, so it cannot order claims of
 * two customers on one order). The stamp is the value of the link's reverse link
 * ("owner \0 link \0 id"; owner "" for an erased marker). A store written before links
 * had stamps holds "": the oldest possible claim. */
static int link_claim_get(engine_t *engine, MDB_txn *txn, const char *owner, size_t owner_len,
                          const char *lkey, size_t lklen, frag_stamp_t *ret_stamp)
{
    char rkey[ENGINE_KEY_BYTES];
    size_t rlen = join_key(rkey, owner, owner_len, lkey, lklen);
    memset(ret_stamp, 0, sizeof(*ret_stamp));
    MDB_val val;
    int rc = rlen ? db_get(engine, txn, STORE_DB_RLINK, rkey, rlen, &val) : RM_ENOTFOUND;
    if (rc == RM_ENOTFOUND)
        return 0;
    if (rc || val.mv_size != ENGINE_STAMP_BYTES)
        return rc;
    const char *p = val.mv_data;
    memcpy(&ret_stamp->fs_time_ms, p, 8);
    memcpy(&ret_stamp->fs_version, p + 8, 8);
    memcpy(&ret_stamp->fs_tie, p + 16, 4);
    return 0;
}

static int link_claim_put(engine_t *engine, MDB_txn *txn, const char *owner, size_t owner_len,
                          const char *lkey, size_t lklen, const frag_stamp_t *stamp)
{
    char rkey[ENGINE_KEY_BYTES], val[ENGINE_STAMP_BYTES];
    size_t rlen = join_key(rkey, owner, owner_len, lkey, lklen);
    if (!rlen)
        return RM_EVALIDATE;
    memcpy(val, &stamp->fs_time_ms, 8);
    memcpy(val + 8, &stamp->fs_version, 8);
    memcpy(val + 16, &stamp->fs_tie, 4);
    return db_put(engine, txn, STORE_DB_RLINK, rkey, rlen, val, sizeof(val));
}

/* rlink key "view_key \0 link \0 foreign_id" → turn link "link \0 foreign_id" into a marker,
 * if it still points at view_key: a store written before re-pointing removed the old
 * reverse link may hold one for a link another key owns now. The marker keeps the claim's
 * stamp, so a newer claim of another key still wins over it. */
static int erase_link(engine_t *engine, MDB_txn *txn, const MDB_val *rkey, const MDB_val *claim)
{
    const char *k = rkey->mv_data;
    const char *sep = memchr(k, '\0', rkey->mv_size);
    if (!sep)
        return 0;
    size_t owner_len = (size_t)(sep - k), off = owner_len + 1;
    MDB_val target;
    int rc = db_get(engine, txn, STORE_DB_LINK, k + off, rkey->mv_size - off, &target);
    if (rc == RM_ENOTFOUND)
        return 0;
    if (rc)
        return rc;
    if (target.mv_size != owner_len || memcmp(target.mv_data, k, owner_len) != 0)
        return 0;
    rc = db_put(engine, txn, STORE_DB_LINK, k + off, rkey->mv_size - off, ENGINE_ERASED_LINK, 1);
    if (rc || claim->mv_size != ENGINE_STAMP_BYTES)
        return rc;
    char rmarker[ENGINE_KEY_BYTES];
    size_t rlen = join_key(rmarker, "", 0, k + off, rkey->mv_size - off);
    return rlen ? db_put(engine, txn, STORE_DB_RLINK, rmarker, rlen, claim->mv_data, claim->mv_size)
                : RM_ESTORE;
}

/* Removes the key's entries from every field index (before its fragments go). */
static int erase_indexes(engine_t *engine, MDB_txn *txn, engine_ev_t *ev)
{
    const view_t *view = engine->en_view;
    for (size_t i = 0; i < view->v_index_count; i++) {
        const view_index_t *index = &view->v_indexes[i];
        if (index->vi_section < 0)
            continue;
        const view_section_t *section = &view->v_sections[index->vi_section];
        char key[ENGINE_KEY_BYTES];
        size_t klen =
            store_doc_key(key, sizeof(key), ev->ev_key, ev->ev_key_len, section->vs_name, "", 0);
        frag_t frag;
        bool found;
        int rc = engine_frag_load(engine, txn, key, klen, section, &frag, &found);
        if (rc)
            return rc;
        engine_idxval_t val;
        engine_index_value_of(index, &frag, &val);
        if (found && val.iv_len >= 0 &&
            (rc = engine_index_write(engine, txn, ev, index, &val, false)))
            return rc;
    }
    return 0;
}

int engine_op_erase(engine_t *engine, MDB_txn *txn, engine_ev_t *ev)
{
    int irc = erase_indexes(engine, txn, ev);
    if (irc)
        return irc;
    char prefix[ENGINE_KEY_BYTES];
    memcpy(prefix, ev->ev_key, ev->ev_key_len);
    prefix[ev->ev_key_len] = '\0';
    size_t plen = ev->ev_key_len + 1;
    int rc = delete_prefix(engine, txn, STORE_DB_DOC, prefix, plen, NULL, NULL);
    if (!rc)
        rc = delete_prefix(engine, txn, STORE_DB_RLINK, prefix, plen, erase_link, txn);
    if (!rc)
        rc = db_put(engine, txn, STORE_DB_ERASED, ev->ev_key, ev->ev_key_len,
                    &ev->ev_stamp.fs_time_ms, sizeof(int64_t));
    if (!rc && engine->en_erasures && !engine->en_importing) {
        uint16_t len = (uint16_t)ev->ev_key_len; /* view keys are at most 128 bytes */
        rc = buf_append(&engine->en_erased, &len, sizeof(len));
        rc = rc ? rc : buf_append(&engine->en_erased, ev->ev_key, ev->ev_key_len);
        rc = rc ? rc : buf_append(&engine->en_erased, &ev->ev_stamp.fs_time_ms, sizeof(int64_t));
    }
    ev->ev_erased = true;
    return rc;
}

int engine_op_link(engine_t *engine, MDB_txn *txn, engine_ev_t *ev, const view_op_t *op,
                   bool key_erased, engine_result_t *res)
{
    const char *id;
    size_t id_len;
    if (engine_eval_id(ev, &op->vo_link_id, &id, &id_len, res, "link id"))
        return RM_EVALIDATE;
    const char *link = engine->en_view->v_links[op->vo_link];
    char key[ENGINE_KEY_BYTES];
    size_t klen = join_key(key, link, strlen(link), id, id_len);
    if (!klen)
        return RM_EVALIDATE;
    const char *target = key_erased ? ENGINE_ERASED_LINK : ev->ev_key;
    size_t target_len = key_erased ? 1 : ev->ev_key_len;
    const char *owner = key_erased ? "" : ev->ev_key; /* whose reverse link holds the claim */
    size_t owner_len = key_erased ? 0 : ev->ev_key_len;
    MDB_val old;
    int rc = db_get(engine, txn, STORE_DB_LINK, key, klen, &old);
    if (rc && rc != RM_ENOTFOUND)
        return rc;
    if (rc == 0) {
        bool same = old.mv_size == target_len && memcmp(old.mv_data, target, target_len) == 0;
        char old_owner[VIEW_KEY_MAX_BYTES];
        size_t old_owner_len =
            link_is_erased(&old) || old.mv_size > sizeof(old_owner) ? 0 : old.mv_size;
        memcpy(old_owner, old.mv_data, old_owner_len); /* the page changes with the puts */
        frag_stamp_t claim;
        if ((rc = link_claim_get(engine, txn, old_owner, old_owner_len, key, klen, &claim)))
            return rc;
        if (!frag_stamp_newer(&ev->ev_stamp, &claim))
            return 0; /* an older claim (or this one again) changes nothing */
        if (same) /* the newest claim of this owner: link_claim_get must see it */
            return link_claim_put(engine, txn, owner, owner_len, key, klen, &ev->ev_stamp);
        /* Re-pointed (e.g. a snapshot names a new owner): the old owner's reverse link
         * must go, or erasing that owner would turn this link into an erased marker. */
        char rkey[ENGINE_KEY_BYTES];
        size_t rlen = join_key(rkey, old_owner, old_owner_len, key, klen);
        if (rlen && (rc = db_del(engine, txn, STORE_DB_RLINK, rkey, rlen)))
            return rc;
    }
    rc = db_put(engine, txn, STORE_DB_LINK, key, klen, target, target_len);
    if (!rc)
        rc = link_claim_put(engine, txn, owner, owner_len, key, klen, &ev->ev_stamp);
    ev->ev_new_link = op->vo_link;
    ev->ev_link_id = id;
    ev->ev_link_id_len = id_len;
    return rc;
}
