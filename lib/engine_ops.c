/* engine_ops: the write operations of a rule on one view key — fields of a fragment, list
 * items (via engine_list.c), counters and shares, the version record, the field indexes
 * kept in step, and the marks that keep a section's freshness when an item goes. Notes
 * are those of engine.c. */
#include "engine_int.h"
#include "index.h"

#include <string.h>

/* ---- fragments ---- */

/* Merges the assignments of op into frag. Returns true if any slot changed. */
bool engine_merge(const engine_ev_t *ev, const view_op_t *op, const view_section_t *section,
                  frag_t *frag)
{
    bool changed = false;
    for (size_t i = 0; i < op->vo_assign_count; i++) {
        const view_assign_t *as = &op->vo_assigns[i];
        engine_val_t val;
        if (ev->ev_repair_vals)
            val = ev->ev_repair_vals[i];
        else if (engine_eval(ev, &as->va_value, &val))
            continue;
        if (val.ev_type == FRAG_ABSENT)
            continue; /* a null optional field means "unchanged" */
        frag_slot_t *slot = &frag->f_slots[as->va_field];
        if (slot->fsl_type != FRAG_ABSENT && !frag_stamp_newer(&ev->ev_stamp, &slot->fsl_stamp))
            continue; /* an older write loses (last-writer-wins per field) */
        slot->fsl_type = val.ev_type;
        slot->fsl_stamp = ev->ev_stamp;
        slot->fsl_int = val.ev_int;
        slot->fsl_str = val.ev_str;
        slot->fsl_str_len = val.ev_len;
        changed = true;
    }
    if (changed) {
        if (section->vs_sort_field >= 0 &&
            frag->f_slots[section->vs_sort_field].fsl_type == FRAG_INT)
            frag->f_sort = frag->f_slots[section->vs_sort_field].fsl_int;
        if (ev->ev_prov.fp_event_ms >= frag->f_prov.fp_event_ms)
            frag->f_prov = ev->ev_prov;
    }
    return changed;
}

int engine_frag_load(engine_t *engine, MDB_txn *txn, const char *key, size_t klen,
                     const view_section_t *section, frag_t *frag, bool *ret_found)
{
    MDB_val val;
    int rc = db_get(engine, txn, STORE_DB_DOC, key, klen, &val);
    if (rc == RM_ENOTFOUND) {
        frag_init(frag, section->vs_field_count);
        *ret_found = false;
        return 0;
    }
    if (rc)
        return rc;
    *ret_found = true;
    return frag_decode(val.mv_data, val.mv_size, section->vs_field_count, frag);
}

int engine_frag_store(engine_t *engine, MDB_txn *txn, const char *key, size_t klen,
                      const view_section_t *section, const frag_t *frag)
{
    int rc = frag_encode(frag, section, &engine->en_frag_buf);
    if (rc)
        return rc;
    return db_put(engine, txn, STORE_DB_DOC, key, klen, engine->en_frag_buf.b_data,
                  engine->en_frag_buf.b_len);
}

void engine_index_value_of(const view_index_t *index, const frag_t *frag, engine_idxval_t *out)
{
    const frag_slot_t *slot = &frag->f_slots[index->vi_field];
    out->iv_len = slot->fsl_type == FRAG_STR
                      ? index_normalize(index->vi_norm, slot->fsl_str, slot->fsl_str_len,
                                        out->iv_value, sizeof(out->iv_value))
                      : -1;
}

int engine_index_write(engine_t *engine, MDB_txn *txn, const engine_ev_t *ev,
                       const view_index_t *index, const engine_idxval_t *val, bool put)
{
    char key[512];
    size_t klen = index_key(key, sizeof(key), index->vi_name, val->iv_value, (size_t)val->iv_len,
                            ev->ev_key, ev->ev_key_len);
    if (!klen)
        return 0; /* too long to index: lookups will not find it, nothing else breaks */
    return put ? db_put(engine, txn, STORE_DB_IDX, key, klen, "", 0)
               : db_del(engine, txn, STORE_DB_IDX, key, klen);
}

/* Keeps the field indexes of a single section in step with one fragment change. */
int engine_index_update(engine_t *engine, MDB_txn *txn, const engine_ev_t *ev, int section,
                        const engine_idxval_t *before, const engine_idxval_t *after)
{
    const view_t *view = engine->en_view;
    for (size_t i = 0, n = 0; i < view->v_index_count; i++) {
        const view_index_t *index = &view->v_indexes[i];
        if (index->vi_section != section)
            continue;
        const engine_idxval_t *b = &before[n], *a = &after[n];
        n++;
        if (b->iv_len == a->iv_len &&
            (b->iv_len < 0 || memcmp(b->iv_value, a->iv_value, (size_t)a->iv_len) == 0))
            continue;
        int rc = b->iv_len >= 0 ? engine_index_write(engine, txn, ev, index, b, false) : 0;
        if (!rc && a->iv_len >= 0)
            rc = engine_index_write(engine, txn, ev, index, a, true);
        if (rc)
            return rc;
    }
    return 0;
}

/* Normalised values of every field index over section, in index order. */
size_t engine_index_values(const view_t *view, int section, const frag_t *frag,
                           engine_idxval_t *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < view->v_index_count && n < cap; i++)
        if (view->v_indexes[i].vi_section == section)
            engine_index_value_of(&view->v_indexes[i], frag, &out[n++]);
    return n;
}

int engine_op_fragment(engine_t *engine, MDB_txn *txn, engine_ev_t *ev, const view_op_t *op,
                       engine_result_t *res)
{
    const view_section_t *section = &engine->en_view->v_sections[op->vo_section];
    const char *item = "";
    size_t item_len = 0;
    if (ev->ev_repair_item) {
        item = ev->ev_repair_item;
        item_len = ev->ev_repair_item_len;
    } else if (op->vo_kind != VIEW_OP_SET &&
               engine_eval_id(ev, &op->vo_item, &item, &item_len, res, "item id")) {
        return RM_EVALIDATE;
    }
    if (op->vo_kind == VIEW_OP_DELETE)
        return engine_list_delete(engine, txn, ev, op->vo_section, item, item_len);
    if (section->vs_kind == VIEW_LIST)
        return engine_list_write(engine, txn, ev, op, item, item_len);
    char key[ENGINE_KEY_BYTES];
    size_t klen = store_doc_key(key, sizeof(key), ev->ev_key, ev->ev_key_len, section->vs_name,
                                item, item_len);
    if (!klen)
        return RM_EVALIDATE;
    frag_t frag;
    bool found;
    int rc = engine_frag_load(engine, txn, key, klen, section, &frag, &found);
    if (rc)
        return rc;
    engine_idxval_t before[ENGINE_MAX_FIELD_INDEXES], after[ENGINE_MAX_FIELD_INDEXES];
    size_t indexed = engine_index_values(engine->en_view, op->vo_section, &frag, before,
                                         ENGINE_MAX_FIELD_INDEXES);
    if (!engine_merge(ev, op, section, &frag))
        return 0;
    touch(ev, op->vo_section);
    /* Normalise before the put: slots may borrow from the page the put rewrites. */
    engine_index_values(engine->en_view, op->vo_section, &frag, after, ENGINE_MAX_FIELD_INDEXES);
    rc = engine_frag_store(engine, txn, key, klen, section, &frag);
    if (!rc && indexed)
        rc = engine_index_update(engine, txn, ev, op->vo_section, before, after);
    return rc;
}

/* Adds delta to counter field of section. */
static int counter_add(engine_t *engine, MDB_txn *txn, engine_ev_t *ev, int section_index,
                       int field, int64_t delta)
{
    const view_section_t *section = &engine->en_view->v_sections[section_index];
    char key[ENGINE_KEY_BYTES];
    size_t klen =
        store_doc_key(key, sizeof(key), ev->ev_key, ev->ev_key_len, section->vs_name, "", 0);
    frag_t frag;
    bool found;
    int rc = engine_frag_load(engine, txn, key, klen, section, &frag, &found);
    if (rc)
        return rc;
    frag_slot_t *slot = &frag.f_slots[field];
    int64_t base = slot->fsl_type == FRAG_INT ? slot->fsl_int : 0;
    /* Counters add, so they need no stamp for convergence; keep the newest for provenance. */
    if (slot->fsl_type == FRAG_ABSENT || frag_stamp_newer(&ev->ev_stamp, &slot->fsl_stamp))
        slot->fsl_stamp = ev->ev_stamp;
    slot->fsl_type = FRAG_INT;
    slot->fsl_int = base + delta;
    if (ev->ev_prov.fp_event_ms >= frag.f_prov.fp_event_ms)
        frag.f_prov = ev->ev_prov;
    touch(ev, section_index);
    return engine_frag_store(engine, txn, key, klen, section, &frag);
}

int engine_op_counter(engine_t *engine, MDB_txn *txn, engine_ev_t *ev, const view_op_t *op)
{
    engine_val_t by;
    if (engine_eval(ev, &op->vo_by, &by) || by.ev_type != FRAG_INT)
        return 0; /* a null amount adds nothing */
    return counter_add(engine, txn, ev, op->vo_section, op->vo_counter_field,
                       op->vo_kind == VIEW_OP_INCR ? by.ev_int : -by.ev_int);
}

/* The version record: the entity's applied version, then its counter shares (note 7). */
int engine_version_put(engine_t *engine, MDB_txn *txn, const engine_ev_t *ev)
{
    unsigned char val[8 + VIEW_MAX_CONTRIBUTIONS * ENGINE_SHARE_V_BYTES];
    memcpy(val, &ev->ev_record_version, 8);
    size_t len = 8;
    for (size_t i = 0; i < ev->ev_share_count; i++, len += ENGINE_SHARE_V_BYTES) {
        uint16_t field = (uint16_t)(ev->ev_shares[i].es_field | ENGINE_SHARE_VERSIONED);
        memcpy(val + len, &ev->ev_shares[i].es_section, 2);
        memcpy(val + len + 2, &field, 2);
        memcpy(val + len + 4, &ev->ev_shares[i].es_amount, 8);
        memcpy(val + len + 12, &ev->ev_shares[i].es_version, 8);
    }
    return db_put(engine, txn, STORE_DB_DOC, ev->ev_vkey, ev->ev_vkey_len, val, len);
}

/* Sets the entity's share of a counter and moves the counter by the difference. */
int engine_op_contribute(engine_t *engine, MDB_txn *txn, engine_ev_t *ev, const view_op_t *op)
{
    engine_val_t by;
    if (engine_eval(ev, &op->vo_by, &by) || by.ev_type != FRAG_INT)
        return 0; /* a null share means "unchanged", like a null field */
    engine_share_t *share = NULL;
    for (size_t i = 0; i < ev->ev_share_count && !share; i++)
        if (ev->ev_shares[i].es_section == op->vo_section &&
            ev->ev_shares[i].es_field == op->vo_counter_field)
            share = &ev->ev_shares[i];
    if (share && ev->ev_stamp.fs_version <= share->es_version)
        return 0; /* a stale event: a newer version of the entity set this share */
    if (!share) {
        /* view_load bounds the counters an entity type contributes to */
        if (ev->ev_share_count == VIEW_MAX_CONTRIBUTIONS)
            return RM_ESTORE;
        share = &ev->ev_shares[ev->ev_share_count++];
        *share = (engine_share_t){(uint16_t)op->vo_section, (uint16_t)op->vo_counter_field, 0, 0};
    }
    int64_t delta = by.ev_int - share->es_amount;
    share->es_version = ev->ev_stamp.fs_version;
    if (delta == 0) /* the share's version moved: a stale event must see it */
        return engine_version_put(engine, txn, ev);
    share->es_amount = by.ev_int;
    int rc = counter_add(engine, txn, ev, op->vo_section, op->vo_counter_field, delta);
    return rc ? rc : engine_version_put(engine, txn, ev);
}

/* ---- marks ---- */

int engine_update_marks(engine_t *engine, MDB_txn *txn, engine_ev_t *ev)
{
    const view_t *view = engine->en_view;
    char key[ENGINE_KEY_BYTES];
    size_t klen = store_doc_key(key, sizeof(key), ev->ev_key, ev->ev_key_len, "", "", 0);
    frag_marks_t marks;
    MDB_val val;
    int rc = db_get(engine, txn, STORE_DB_DOC, key, klen, &val);
    if (rc == RM_ENOTFOUND)
        frag_marks_init(&marks, view->v_section_count);
    else if (rc)
        return rc;
    else if ((rc = frag_marks_decode(val.mv_data, val.mv_size, view->v_section_count, &marks)))
        return rc;
    bool changed = false;
    for (size_t s = 0; s < view->v_section_count; s++) {
        if (!(ev->ev_removed & (1u << s)))
            continue;
        if (ev->ev_prov.fp_event_ms >= marks.fm_sections[s].fp_event_ms) {
            marks.fm_sections[s] = ev->ev_prov;
            changed = true;
        }
    }
    if (!changed)
        return 0;
    rc = frag_marks_encode(&marks, &engine->en_marks_buf);
    if (rc)
        return rc;
    return db_put(engine, txn, STORE_DB_DOC, key, klen, engine->en_marks_buf.b_data,
                  engine->en_marks_buf.b_len);
}
