/* engine_int: what the parts of the view engine (engine*.c) share; private to them.
 * The design notes the parts refer to ("note N") are at the top of engine.c. Like engine.h,
 * everything here runs on the thread that owns the engine, inside its write txn. */
#ifndef RM_ENGINE_INT_H
#define RM_ENGINE_INT_H

#include "engine.h"
#include "avro_dec.h"
#include "buf.h"
#include "frag.h"
#include "index.h"
#include "rm_err.h"

#include <stdio.h>
#include <string.h>

#define ENGINE_ERASED_LINK "\0" /* a link value no view key can equal (keys hold no NUL) */
#define ENGINE_KEY_BYTES 512
#define ENGINE_PENDING_FORMAT_META "pending_format" /* meta: layout of parked values */
#define ENGINE_STAMP_BYTES 20 /* i64 time, i64 version, u32 tie; native order */

/* Fields of a readmodel.Repair record (schemas/avro/Repair.v1.avsc), looked up once. */
enum {
    ENGINE_REPAIR_KEY = 0,
    ENGINE_REPAIR_SECTION,
    ENGINE_REPAIR_OP,
    ENGINE_REPAIR_ITEM,
    ENGINE_REPAIR_FIELDS,
    ENGINE_REPAIR_VIEW,
    ENGINE_REPAIR_EVENT_ID,
    ENGINE_REPAIR_OCCURRED_AT,
    ENGINE_REPAIR_VERSION,
    ENGINE_REPAIR__FIELDS
};

/* Remote schema ids remembered per transaction as already kept in the store; past this
 * many distinct ids in one transaction, each further use costs one meta lookup. */
#define ENGINE_KEPT_IDS 64

struct engine {
    const view_t *en_view;
    store_t *en_store;
    avro_dec_t *en_dec;
    size_t en_max_message_bytes;
    engine_rejected_cb en_unparked_rejected; /* engine_opts_t */
    void *en_unparked_rejected_ctx;
    int64_t en_pending_seq;
    bool en_pending_seq_dirty;
    buf_t en_frag_buf;    /* encoded fragment being written */
    buf_t en_marks_buf;
    buf_t en_scratch;     /* a parked event being written */
    buf_t en_unpark;      /* a parked event being re-applied (unpark is not re-entrant:
                             parked events come through links and never learn links) */
    const catalog_entry_t *en_repair_reader; /* readmodel.Repair, if the view takes repairs */
    const catalog_entry_t *en_handled_reader; /* readmodel.DeadLetterHandled, likewise */
    int en_handled_fields[4];                 /* view, topic, partition, offset */
    int en_repair_fields[ENGINE_REPAIR__FIELDS]; /* its field indexes */
    erasures_t *en_erasures; /* the view's erasure ledger, or NULL (engine_opts_t) */
    buf_t en_erased; /* keys this txn erased, for the ledger: u16 len | key | i64 at */
    bool en_importing; /* erasing what the ledger holds: nothing to append */
    buf_t en_move; /* a list item moving between visible and hidden (note 8) */
    int32_t en_kept[ENGINE_KEPT_IDS]; /* remote schema ids known kept in this txn's store */
    size_t en_kept_count;
};

/* An entity's share of one counter (note 7). Stored packed after the version. */
typedef struct engine_share {
    uint16_t es_section;
    uint16_t es_field;
    int64_t es_amount;
    int64_t es_version; /* the entity version that set it (note 9) */
} engine_share_t;
/* u16 section, u16 field | ENGINE_SHARE_VERSIONED, i64 amount, then i64 version when
 * flagged; native order like the version. Records written before shares kept their
 * version have 12-byte shares, set by the record's version at the latest. */
#define ENGINE_SHARE_BYTES 12
#define ENGINE_SHARE_VERSIONED 0x8000
#define ENGINE_SHARE_V_BYTES 20

/* Everything about the event being applied that the operations need. */
typedef struct engine_ev {
    const engine_msg_t *ev_msg;
    const view_rule_t *ev_rule;
    const avro_dec_event_t *ev_dec; /* the decoded event; fields via avro_dec_field */
    const char *ev_key;
    size_t ev_key_len;
    frag_stamp_t ev_stamp;
    frag_prov_t ev_prov;
    uint32_t ev_touched;   /* bit per section changed */
    uint32_t ev_removed;   /* bit per section that lost an item (delete or trim) */
    bool ev_erased;        /* this event erased the key */
    int ev_new_link;       /* link learned by this event (index), or -1 */
    const char *ev_link_id;
    size_t ev_link_id_len;
    char ev_key_buf[VIEW_KEY_MAX_BYTES]; /* view key copied out of the link's page */
    /* A repair (engine_apply_repair) brings its values and item id instead of expressions. */
    const struct engine_val *ev_repair_vals; /* one per assignment of the op */
    const char *ev_repair_item;
    size_t ev_repair_item_len;
    /* The entity's version record (engine_guard_check), rewritten when a share changes. */
    int64_t ev_record_version; /* the version it keeps: the newer of the event's and its own */
    bool ev_stale; /* the entity applied a newer version already (note 9) */
    char ev_vkey[ENGINE_KEY_BYTES];
    size_t ev_vkey_len;
    size_t ev_share_count;
    engine_share_t ev_shares[VIEW_MAX_CONTRIBUTIONS];
} engine_ev_t;

/* A value computed from an expression. */
typedef struct engine_val {
    frag_type_t ev_type;  /* FRAG_ABSENT: "unchanged" (a null optional field) */
    int64_t ev_int;
    const char *ev_str;
    size_t ev_len;
} engine_val_t;

/* The normalised value of an indexed field of frag, or len -1 when it has none. */
typedef struct engine_idxval {
    char iv_value[INDEX_VALUE_MAX_BYTES + 1];
    int iv_len;
} engine_idxval_t;

#define ENGINE_MAX_FIELD_INDEXES VIEW_MAX_FIELD_INDEXES

/* engine_resolve_link: the link's entity was erased. */
#define ENGINE_LINK_ERASED 1

/* ---- small LMDB helpers: map MDB codes once ---- */

static inline int db_get(engine_t *engine, MDB_txn *txn, store_db_t db, const void *k, size_t klen,
                         MDB_val *ret_val)
{
    MDB_val key = {klen, (void *)k};
    return rm_err_from_mdb(mdb_get(txn, store_dbi(engine->en_store, db), &key, ret_val));
}

static inline int db_put(engine_t *engine, MDB_txn *txn, store_db_t db, const void *k, size_t klen,
                         const void *v, size_t vlen)
{
    MDB_val key = {klen, (void *)k}, val = {vlen, (void *)v};
    return rm_err_from_mdb(mdb_put(txn, store_dbi(engine->en_store, db), &key, &val, 0));
}

static inline int db_del(engine_t *engine, MDB_txn *txn, store_db_t db, const void *k, size_t klen)
{
    MDB_val key = {klen, (void *)k};
    int rc = rm_err_from_mdb(mdb_del(txn, store_dbi(engine->en_store, db), &key, NULL));
    return rc == RM_ENOTFOUND ? 0 : rc;
}

/* Joins parts with NUL separators into out. Returns the length or 0 if too long. */
static inline size_t join_key(char *out, const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen + 1 + blen > ENGINE_KEY_BYTES - 1)
        return 0;
    memcpy(out, a, alen);
    out[alen] = '\0';
    memcpy(out + alen + 1, b, blen);
    return alen + 1 + blen;
}

static inline void touch(engine_ev_t *ev, int section)
{
    ev->ev_touched |= 1u << section;
}

/* A removed item takes its provenance with it, so the section's freshness must be
 * kept in the marks record (render.c takes the newest of marks and fragments). */
static inline void touch_removed(engine_ev_t *ev, int section)
{
    ev->ev_touched |= 1u << section;
    ev->ev_removed |= 1u << section;
}

static inline void reject(engine_result_t *res, int error, const char *reason)
{
    res->er_outcome = ENGINE_REJECTED;
    res->er_error = error;
    snprintf(res->er_reason, sizeof(res->er_reason), "%s", reason);
}

static inline uint32_t fnv32(const char *s, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

/* engine.c */
int engine_read_meta_at(engine_ev_t *ev, int id_index, int time_index, int version_index,
                        engine_result_t *res);
int engine_guard_check(engine_t *engine, MDB_txn *txn, engine_ev_t *ev, const char *type,
                       const char *id, size_t id_len, char *vkey, size_t *ret_vlen);
int engine_resolve_link(engine_t *engine, MDB_txn *txn, const char *link, const char *id,
                        size_t id_len, engine_ev_t *ev);
int engine_apply_msg(engine_t *engine, MDB_txn *txn, const engine_msg_t *msg, engine_result_t *res);

/* engine_eval.c */
int engine_eval(const engine_ev_t *ev, const view_expr_t *expr, engine_val_t *ret);
int engine_eval_id(const engine_ev_t *ev, const view_expr_t *expr, const char **ret_str,
                   size_t *ret_len, engine_result_t *res, const char *what);

/* engine_ops.c */
bool engine_merge(const engine_ev_t *ev, const view_op_t *op, const view_section_t *section,
                  frag_t *frag);
int engine_frag_load(engine_t *engine, MDB_txn *txn, const char *key, size_t klen,
                     const view_section_t *section, frag_t *frag, bool *ret_found);
int engine_frag_store(engine_t *engine, MDB_txn *txn, const char *key, size_t klen,
                      const view_section_t *section, const frag_t *frag);
void engine_index_value_of(const view_index_t *index, const frag_t *frag, engine_idxval_t *out);
int engine_index_write(engine_t *engine, MDB_txn *txn, const engine_ev_t *ev,
                       const view_index_t *index, const engine_idxval_t *val, bool put);
int engine_index_update(engine_t *engine, MDB_txn *txn, const engine_ev_t *ev, int section,
                        const engine_idxval_t *before, const engine_idxval_t *after);
size_t engine_index_values(const view_t *view, int section, const frag_t *frag,
                           engine_idxval_t *out, size_t cap);
int engine_op_fragment(engine_t *engine, MDB_txn *txn, engine_ev_t *ev, const view_op_t *op,
                       engine_result_t *res);
int engine_op_counter(engine_t *engine, MDB_txn *txn, engine_ev_t *ev, const view_op_t *op);
int engine_version_put(engine_t *engine, MDB_txn *txn, const engine_ev_t *ev);
int engine_op_contribute(engine_t *engine, MDB_txn *txn, engine_ev_t *ev, const view_op_t *op);
int engine_update_marks(engine_t *engine, MDB_txn *txn, engine_ev_t *ev);

/* engine_list.c */
int engine_list_delete(engine_t *engine, MDB_txn *txn, engine_ev_t *ev, int section_index,
                       const char *item, size_t item_len);
int engine_list_write(engine_t *engine, MDB_txn *txn, engine_ev_t *ev, const view_op_t *op,
                      const char *item, size_t item_len);

/* engine_link.c */
int engine_op_erase(engine_t *engine, MDB_txn *txn, engine_ev_t *ev);
int engine_op_link(engine_t *engine, MDB_txn *txn, engine_ev_t *ev, const view_op_t *op,
                   bool key_erased, engine_result_t *res);

/* engine_ledger.c */
int engine_ledger_append(engine_t *engine);
int engine_ledger_import(engine_t *engine, MDB_txn *txn);

/* engine_park.c */
int engine_pending_upgrade(engine_t *engine, MDB_txn *txn);
int engine_park(engine_t *engine, MDB_txn *txn, const engine_msg_t *msg, const char *link,
                const char *id, size_t id_len);
int engine_unpark(engine_t *engine, MDB_txn *txn, const char *link, const char *id, size_t id_len,
                  size_t *ret_count);

/* engine_control.c */
int engine_apply_tombstone(engine_t *engine, MDB_txn *txn, const engine_msg_t *msg,
                           engine_result_t *res);
int engine_apply_repair(engine_t *engine, MDB_txn *txn, engine_ev_t *ev, engine_result_t *res);

#endif
