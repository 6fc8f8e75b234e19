/* engine_list: bounded lists with deletions (engine.c, note 8) — visible, hidden and
 * ghost items, deletion stamps, and the settling that keeps the top N visible. */
#include "engine_int.h"

#include <string.h>

/* ---- lists: bounded, with deletions (note 8) ---- */

#define ENGINE_HIDDEN_PREFIX                                                                       \
    "\xff"                                                                                         \
    "h" /* trimmed items and ghosts: kept, never served */
#define ENGINE_DELETED_PREFIX                                                                      \
    "\xff"                                                                                         \
    "d" /* deletion stamps of list items */
#define ENGINE_SETTLE_ROUNDS 4 /* one change moves at most two items; a bound */

/* Where item of section lives: visible (prefix ""), hidden or its deletion stamp. */
static size_t list_key(char *out, const engine_ev_t *ev, const char *prefix,
                       const view_section_t *section, const char *item, size_t item_len)
{
    char name[VIEW_NAME_MAX_BYTES + 4]; /* no snprintf: this runs three times per list op */
    size_t plen = strlen(prefix), slen = strlen(section->vs_name);
    if (plen + slen >= sizeof(name))
        return 0;
    memcpy(name, prefix, plen);
    memcpy(name + plen, section->vs_name, slen + 1);
    return store_doc_key(out, ENGINE_KEY_BYTES, ev->ev_key, ev->ev_key_len, name, item, item_len);
}

/* An item takes a place in the list when it has its sort field (written by the upsert
 * that creates it), or any field in a list without one; else it is a ghost: fields
 * written after a deletion by events that do not create the item (a payment's status). */
static bool list_eligible(const view_section_t *section, const frag_t *frag)
{
    if (section->vs_sort_field >= 0)
        return frag->f_slots[section->vs_sort_field].fsl_type != FRAG_ABSENT;
    for (size_t i = 0; i < section->vs_field_count; i++)
        if (frag->f_slots[i].fsl_type != FRAG_ABSENT)
            return true;
    return false;
}

/* Response order: larger sort key first, then smaller item key. */
static bool list_ranks_above(int64_t sort_a, const MDB_val *key_a, int64_t sort_b,
                             const MDB_val *key_b)
{
    if (sort_a != sort_b)
        return sort_a > sort_b;
    size_t n = key_a->mv_size < key_b->mv_size ? key_a->mv_size : key_b->mv_size;
    int c = memcmp(key_a->mv_data, key_b->mv_data, n);
    return c ? c < 0 : key_a->mv_size < key_b->mv_size;
}

typedef struct engine_pick {
    char ep_key[ENGINE_KEY_BYTES];
    size_t ep_key_len; /* 0: none */
    int64_t ep_sort;
    size_t ep_count; /* items scanned (eligible ones, for the hidden space) */
} engine_pick_t;

/* Scans the items under prefix; picks the worst (want_best false) or the best eligible
 * one, and counts them. */
static int list_scan(engine_t *engine, MDB_txn *txn, const view_section_t *section,
                     const char *prefix, size_t plen, bool want_best, engine_pick_t *pick)
{
    MDB_cursor *cur;
    int rc = rm_err_from_mdb(mdb_cursor_open(txn, store_dbi(engine->en_store, STORE_DB_DOC), &cur));
    if (rc)
        return rc;
    pick->ep_key_len = 0;
    pick->ep_count = 0;
    MDB_val key = {plen, (void *)prefix}, val;
    int mrc = mdb_cursor_get(cur, &key, &val, MDB_SET_RANGE);
    for (; mrc == 0; mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        if (key.mv_size <= plen || memcmp(key.mv_data, prefix, plen) != 0)
            break;
        frag_t frag;
        if ((rc = frag_decode(val.mv_data, val.mv_size, section->vs_field_count, &frag)))
            break;
        if (want_best && !list_eligible(section, &frag))
            continue;
        pick->ep_count++;
        MDB_val picked = {pick->ep_key_len, pick->ep_key};
        bool take = pick->ep_key_len == 0 ||
                    (want_best ? list_ranks_above(frag.f_sort, &key, pick->ep_sort, &picked)
                               : list_ranks_above(pick->ep_sort, &picked, frag.f_sort, &key));
        if (take && key.mv_size <= sizeof(pick->ep_key)) {
            memcpy(pick->ep_key, key.mv_data, key.mv_size);
            pick->ep_key_len = key.mv_size;
            pick->ep_sort = frag.f_sort;
        }
    }
    mdb_cursor_close(cur);
    if (!rc && mrc && mrc != MDB_NOTFOUND)
        rc = rm_err_from_mdb(mrc);
    return rc;
}

/* Moves the stored value of item key from one place (prefix from) to another. */
static int list_move(engine_t *engine, MDB_txn *txn, engine_ev_t *ev, const view_section_t *section,
                     const engine_pick_t *pick, size_t from_plen, const char *to_prefix)
{
    const char *item = pick->ep_key + from_plen;
    size_t item_len = pick->ep_key_len - from_plen;
    char to[ENGINE_KEY_BYTES];
    size_t to_len = list_key(to, ev, to_prefix, section, item, item_len);
    MDB_val val;
    int rc = to_len ? db_get(engine, txn, STORE_DB_DOC, pick->ep_key, pick->ep_key_len, &val)
                    : RM_ESTORE;
    if (rc)
        return rc;
    buf_t *b = &engine->en_move;
    buf_reset(b); /* copied out: the put may rewrite the page the value is on */
    if ((rc = buf_append(b, val.mv_data, val.mv_size)))
        return rc;
    rc = db_put(engine, txn, STORE_DB_DOC, to, to_len, b->b_data, b->b_len);
    return rc ? rc : db_del(engine, txn, STORE_DB_DOC, pick->ep_key, pick->ep_key_len);
}

/* Restores the bounded list's invariant after one change: the visible items are the
 * max_items first (response order) of the eligible ones, the rest are hidden. A new
 * item needs only the visible side (look_hidden false); a removal, or a change of a
 * hidden item or of a sort key, may bring a hidden one back. */
static int list_settle(engine_t *engine, MDB_txn *txn, engine_ev_t *ev, int section_index,
                       bool look_hidden)
{
    const view_section_t *section = &engine->en_view->v_sections[section_index];
    char vprefix[ENGINE_KEY_BYTES], hprefix[ENGINE_KEY_BYTES];
    size_t vlen = list_key(vprefix, ev, "", section, "", 0);
    size_t hlen = list_key(hprefix, ev, ENGINE_HIDDEN_PREFIX, section, "", 0);
    if (!vlen || !hlen)
        return RM_ESTORE;
    for (int round = 0; round < ENGINE_SETTLE_ROUNDS; round++) {
        engine_pick_t worst, best;
        int rc = list_scan(engine, txn, section, vprefix, vlen, false, &worst);
        if (rc)
            return rc;
        if (worst.ep_count > section->vs_max_items) {
            touch_removed(ev, section_index);
            if ((rc = list_move(engine, txn, ev, section, &worst, vlen, ENGINE_HIDDEN_PREFIX)))
                return rc;
            continue;
        }
        if (!look_hidden)
            return 0;
        if ((rc = list_scan(engine, txn, section, hprefix, hlen, true, &best)))
            return rc;
        if (!best.ep_key_len)
            return 0;
        bool room = worst.ep_count < section->vs_max_items;
        if (!room) { /* full: only a hidden item that ranks above the worst shown one */
            MDB_val bk = {best.ep_key_len - hlen, best.ep_key + hlen},
                    wk = {worst.ep_key_len - vlen, worst.ep_key + vlen};
            if (!list_ranks_above(best.ep_sort, &bk, worst.ep_sort, &wk))
                return 0;
        }
        touch_removed(ev, section_index);
        if (!room && (rc = list_move(engine, txn, ev, section, &worst, vlen, ENGINE_HIDDEN_PREFIX)))
            return rc;
        if ((rc = list_move(engine, txn, ev, section, &best, hlen, "")))
            return rc;
    }
    return 0;
}

/* The item's deletion stamp: the newest delete that reached it. */
static int deleted_get(engine_t *engine, MDB_txn *txn, const char *key, size_t klen,
                       frag_stamp_t *ret_stamp, bool *ret_found)
{
    MDB_val val;
    int rc = db_get(engine, txn, STORE_DB_DOC, key, klen, &val);
    *ret_found = rc == 0;
    if (rc == RM_ENOTFOUND)
        return 0;
    if (rc)
        return rc;
    if (val.mv_size != ENGINE_STAMP_BYTES)
        return RM_ESTORE;
    const char *p = val.mv_data;
    memcpy(&ret_stamp->fs_time_ms, p, 8);
    memcpy(&ret_stamp->fs_version, p + 8, 8);
    memcpy(&ret_stamp->fs_tie, p + 16, 4);
    return 0;
}

static int deleted_put(engine_t *engine, MDB_txn *txn, const char *key, size_t klen,
                       const frag_stamp_t *stamp)
{
    char val[ENGINE_STAMP_BYTES];
    memcpy(val, &stamp->fs_time_ms, 8);
    memcpy(val + 8, &stamp->fs_version, 8);
    memcpy(val + 16, &stamp->fs_tie, 4);
    return db_put(engine, txn, STORE_DB_DOC, key, klen, val, sizeof(val));
}

/* One list item: the three places it may be kept, and its deletion stamp. */
typedef struct engine_item {
    char li_vkey[ENGINE_KEY_BYTES]; /* visible */
    char li_hkey[ENGINE_KEY_BYTES]; /* hidden: trimmed, or a ghost */
    char li_dkey[ENGINE_KEY_BYTES]; /* its deletion stamp */
    size_t li_vlen, li_hlen, li_dlen;
    bool li_was_deleted;
    frag_stamp_t li_deleted; /* the newest delete that reached it, if li_was_deleted */
} engine_item_t;

/* Builds the item's keys and reads its deletion stamp, as engine_list_delete and
 * engine_list_write both begin. RM_EVALIDATE when a key does not fit. */
static int list_item_find(engine_t *engine, MDB_txn *txn, const engine_ev_t *ev,
                          const view_section_t *section, const char *item, size_t item_len,
                          engine_item_t *it)
{
    it->li_vlen = list_key(it->li_vkey, ev, "", section, item, item_len);
    it->li_hlen = list_key(it->li_hkey, ev, ENGINE_HIDDEN_PREFIX, section, item, item_len);
    it->li_dlen = list_key(it->li_dkey, ev, ENGINE_DELETED_PREFIX, section, item, item_len);
    if (!it->li_vlen || !it->li_hlen || !it->li_dlen)
        return RM_EVALIDATE;
    return deleted_get(engine, txn, it->li_dkey, it->li_dlen, &it->li_deleted, &it->li_was_deleted);
}

/* The item's fragment from where it is kept: visible, else hidden, else neither (an
 * empty frag). Its slots borrow from LMDB pages until the next put of this txn. */
static int list_item_load(engine_t *engine, MDB_txn *txn, const engine_item_t *it,
                          const view_section_t *section, frag_t *ret_frag, bool *ret_visible,
                          bool *ret_hidden)
{
    *ret_hidden = false;
    int rc =
        engine_frag_load(engine, txn, it->li_vkey, it->li_vlen, section, ret_frag, ret_visible);
    if (!rc && !*ret_visible)
        rc = engine_frag_load(engine, txn, it->li_hkey, it->li_hlen, section, ret_frag, ret_hidden);
    return rc;
}

/* A delete of a list item: every field written before it goes, and so does any later
 * write that is older than it (engine_list_write), so deletes and writes commute. What newer
 * writes left stays as a ghost until an upsert gives the item its place again. */
int engine_list_delete(engine_t *engine, MDB_txn *txn, engine_ev_t *ev, int section_index,
                       const char *item, size_t item_len)
{
    const view_section_t *section = &engine->en_view->v_sections[section_index];
    engine_item_t it;
    int rc = list_item_find(engine, txn, ev, section, item, item_len, &it);
    if (rc)
        return rc;
    const frag_stamp_t *deleted = &it.li_deleted;
    if (!it.li_was_deleted || frag_stamp_newer(&ev->ev_stamp, deleted)) {
        it.li_deleted = ev->ev_stamp;
        if ((rc = deleted_put(engine, txn, it.li_dkey, it.li_dlen, deleted)))
            return rc;
    }
    /* Loaded after the stamp's put, which may rewrite the page the slots borrow from. */
    frag_t frag;
    bool visible, hidden;
    if ((rc = list_item_load(engine, txn, &it, section, &frag, &visible, &hidden)))
        return rc;
    if (!visible && !hidden)
        return 0;
    engine_idxval_t before[ENGINE_MAX_FIELD_INDEXES], after[ENGINE_MAX_FIELD_INDEXES];
    size_t indexed = engine_index_values(engine->en_view, section_index, &frag, before,
                                         ENGINE_MAX_FIELD_INDEXES);
    bool any = false, cleared = false;
    for (size_t i = 0; i < section->vs_field_count; i++) {
        frag_slot_t *slot = &frag.f_slots[i];
        if (slot->fsl_type != FRAG_ABSENT && !frag_stamp_newer(&slot->fsl_stamp, deleted)) {
            slot->fsl_type = FRAG_ABSENT;
            cleared = true;
        }
        any |= slot->fsl_type != FRAG_ABSENT;
    }
    if (!cleared)
        return 0; /* a redelivered delete, or one older than every field */
    if (section->vs_sort_field >= 0 && frag.f_slots[section->vs_sort_field].fsl_type == FRAG_ABSENT)
        frag.f_sort = 0;
    bool eligible = list_eligible(section, &frag);
    engine_index_values(engine->en_view, section_index, &frag, after, ENGINE_MAX_FIELD_INDEXES);
    if (visible && eligible)
        rc = engine_frag_store(engine, txn, it.li_vkey, it.li_vlen, section, &frag);
    else if (any)
        rc = engine_frag_store(engine, txn, it.li_hkey, it.li_hlen, section, &frag);
    if (!rc && visible && !eligible)
        rc = db_del(engine, txn, STORE_DB_DOC, it.li_vkey, it.li_vlen);
    else if (!rc && hidden && !any)
        rc = db_del(engine, txn, STORE_DB_DOC, it.li_hkey, it.li_hlen);
    if (!rc && indexed)
        rc = engine_index_update(engine, txn, ev, section_index, before, after);
    if (rc || !visible)
        return rc;
    if (!eligible)
        touch_removed(ev, section_index);
    else
        touch(ev, section_index);
    return section->vs_max_items ? list_settle(engine, txn, ev, section_index, true) : 0;
}

/* An upsert or update of a list item, wherever it is kept (note 8). */
int engine_list_write(engine_t *engine, MDB_txn *txn, engine_ev_t *ev, const view_op_t *op,
                      const char *item, size_t item_len)
{
    const view_section_t *section = &engine->en_view->v_sections[op->vo_section];
    engine_item_t it;
    int rc = list_item_find(engine, txn, ev, section, item, item_len, &it);
    if (rc)
        return rc;
    if (it.li_was_deleted && !frag_stamp_newer(&ev->ev_stamp, &it.li_deleted))
        return 0; /* the item was deleted after this write was made */
    frag_t frag;
    bool visible, hidden;
    if ((rc = list_item_load(engine, txn, &it, section, &frag, &visible, &hidden)))
        return rc;
    /* A stale upsert fills only a ghost: an item a newer version updated but no version
     * created yet (OrderCancelled v2 before OrderCreated v1). Anything else is the newer
     * state (created, or deleted) and stands — also against a re-published old event. */
    if (ev->ev_stale && !(hidden && !list_eligible(section, &frag)))
        return 0;
    if (!visible && !hidden && op->vo_kind == VIEW_OP_UPDATE && !it.li_was_deleted &&
        section->vs_sort_field < 0)
        return 0; /* nothing to update */
    engine_idxval_t before[ENGINE_MAX_FIELD_INDEXES], after[ENGINE_MAX_FIELD_INDEXES];
    size_t indexed = engine_index_values(engine->en_view, op->vo_section, &frag, before,
                                         ENGINE_MAX_FIELD_INDEXES);
    int64_t sort_before = frag.f_sort;
    if (!engine_merge(ev, op, section, &frag))
        return 0;
    bool eligible = list_eligible(section, &frag);
    /* Normalise before the put: slots may borrow from the page the put rewrites. */
    engine_index_values(engine->en_view, op->vo_section, &frag, after, ENGINE_MAX_FIELD_INDEXES);
    bool to_visible = visible || (eligible && !section->vs_max_items) || (eligible && !hidden);
    rc = to_visible ? engine_frag_store(engine, txn, it.li_vkey, it.li_vlen, section, &frag)
                    : engine_frag_store(engine, txn, it.li_hkey, it.li_hlen, section, &frag);
    if (!rc && hidden && to_visible)
        rc = db_del(engine, txn, STORE_DB_DOC, it.li_hkey, it.li_hlen);
    if (!rc && indexed)
        rc = engine_index_update(engine, txn, ev, op->vo_section, before, after);
    if (rc)
        return rc;
    if (to_visible)
        touch(ev, op->vo_section);
    if (!section->vs_max_items || !eligible)
        return 0;
    if (!visible && !hidden) /* a new item: at most the worst visible one goes */
        return list_settle(engine, txn, ev, op->vo_section, false);
    if (hidden || frag.f_sort != sort_before)
        return list_settle(engine, txn, ev, op->vo_section, true);
    return 0;
}
