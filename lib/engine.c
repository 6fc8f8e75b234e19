/* engine: the generic view engine — decode, route, guard, apply, park.
 *
 * Notes on the design:
 * (1) Idempotence. Every rule names the entity whose `version` guards it; an event
 *     whose version is not newer than the last applied version of that entity (kept
 *     under the view key, see check_version) is ignored (ENGINE_STALE). The version is
 *     written in the same transaction as the changes, so a redelivered or re-published
 *     event can never apply twice. This subsumes a window of seen event ids for
 *     versioned events (docs/design.md).
 * (2) Convergence. Field writes are last-writer-wins per field by the stamp
 *     (occurred_at, version, hash of event id); counters add; a bounded list shows the
 *     top N of its live items by sort key (8). All three are order-independent, so any
 *     interleaving of partitions that Kafka permits yields the same documents.
 * (3) Parking. An event whose view key comes through a link that is not known yet
 *     is stored in `pending` under the foreign id, and applied — in arrival order,
 *     through the normal path, version guard included — in the transaction that
 *     learns the link.
 * (4) Erasure deletes every fragment of the key, turns its links into "erased"
 *     markers (so late events through them are dropped, not parked forever), and
 *     records the key in `erased` so later events cannot resurrect it.
 * (5) Freshness. Every fragment carries the provenance of the newest event applied to
 *     it; only when an item is removed is its section's provenance kept in the marks
 *     record ("key \0 \0"), saving a read and a write on most events.
 * (6) Borrowed bytes. Values read from LMDB point into pages that a later write in
 *     the same txn may reuse, so a fragment is decoded, merged and re-encoded
 *     before the next write; strings from the event point into avro-c's value,
 *     valid until the next decode.
 * (7) Shares. `contribute` makes a counter the sum, over entities, of each entity's
 *     current share (e.g. 1 per order, whoever first told us about it: OrderCreated or
 *     a backfilled OrderSnapshot). The share is kept in the entity's version record and
 *     the counter moves by new share - old share, so an entity counts once however many
 *     of its versions are applied, in whatever order they arrive.
 * (8) Lists with deletes. Keeping the top N by dropping what falls out would make a
 *     list depend on arrival order as soon as items can also be deleted (a delete that
 *     comes before an insert leaves N items, after it N-1). So a list item that falls
 *     out of a bounded list is kept out of sight ("key \0 \xffh section \0 item"), updates
 *     still reach it, and a delete brings the best hidden one back. A delete records its
 *     stamp ("key \0 \xffd section \0 item"), clears the item's fields written before it
 *     and makes every older write to the item lose, so a delete and a write commute (a
 *     repair's DELETE may be consumed before the order it removes). Fields that newer
 *     writes left after a delete stay as a hidden ghost until an upsert gives the item
 *     its sort field again. The visible list is then the top N of the live items by
 *     sort key, a function of the set of events. Cost: one hidden fragment per item
 *     beyond N and one 20-byte stamp per deleted item, per key, for as long as the key
 *     lives — the same order as the version records the guard keeps per entity (1).
 * (9) Stale versions. Kafka orders an entity's events only while they share a
 *     partition; once a topic gains partitions, an entity's newer versions can be applied
 *     before older ones still waiting in the old partition. A stale event is therefore
 *     not dropped whole: its link op runs (a link is last-writer-wins by the stamp of the
 *     claim, kept in its reverse link, whatever view key the claim names), its erase op
 *     runs (final), its contribute ops run for shares a newer version has not set (each
 *     share keeps the version that set it), and its upserts fill list items that a newer
 *     version updated but none created (an OrderCancelled v2 applied first leaves a
 *     ghost, see 8). Its
 *     other ops — set, update, delete, incr, decr — are skipped: the newer version's
 *     state stands (docs/guarantees.md, "When partitions are added"). */
#include "engine.h"
#include "avro_dec.h"
#include "buf.h"
#include "degraded.h"
#include "frag.h"
#include "index.h"
#include "rm_err.h"
#include "rm_time.h"
#include "topic_counts.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENGINE_ERASED_LINK "\0" /* a link value no view key can equal (keys hold no NUL) */
#define ENGINE_KEY_BYTES 512
#define ENGINE_VERSION_SECTION "\xff" /* sorts after every section name (view.c allows no 0xff) */
#define ENGINE_REPAIR_RECORD "readmodel.Repair"
#define ENGINE_HANDLED_RECORD "readmodel.DeadLetterHandled"
#define ENGINE_PENDING_FORMAT_META "pending_format" /* meta: layout of parked values */
#define ENGINE_PENDING_FORMAT 2
#define ENGINE_PARKED_HEAD 9 /* u8 kind, i64 parked_at_ms (park()) */
enum { ENGINE_PARKED_EVENT = 1 }; /* the only kind a parked value has so far */

/* Fields of a readmodel.Repair record (schemas/avro/Repair.v1.avsc), looked up once. */
enum { ENGINE_REPAIR_KEY = 0, ENGINE_REPAIR_SECTION, ENGINE_REPAIR_OP, ENGINE_REPAIR_ITEM,
       ENGINE_REPAIR_FIELDS, ENGINE_REPAIR_VIEW, ENGINE_REPAIR_EVENT_ID, ENGINE_REPAIR_OCCURRED_AT,
       ENGINE_REPAIR_VERSION, ENGINE_REPAIR__FIELDS };

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
    /* A repair (apply_repair) brings its values and item id instead of expressions. */
    const struct engine_val *ev_repair_vals; /* one per assignment of the op */
    const char *ev_repair_item;
    size_t ev_repair_item_len;
    /* The entity's version record (guard_check), rewritten when a share changes. */
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

const char *engine_outcome_name(engine_outcome_t outcome)
{
    static const char *const names[ENGINE__OUTCOMES] = {
        "applied", "stale", "no_rule", "parked", "erased", "tombstone", "rejected"};
    return outcome < ENGINE__OUTCOMES ? names[outcome] : "unknown";
}

engine_t *engine_new(const view_t *view, const catalog_t *catalog, store_t *store,
                     const engine_opts_t *opts)
{
    engine_t *engine = calloc(1, sizeof(*engine));
    if (!engine)
        return NULL;
    engine->en_view = view;
    engine->en_store = store;
    engine->en_erasures = opts ? opts->eo_erasures : NULL;
    engine->en_max_message_bytes = opts && opts->eo_max_message_bytes
                                       ? opts->eo_max_message_bytes
                                       : ENGINE_DEFAULT_MAX_MESSAGE_BYTES;
    if (opts) {
        engine->en_unparked_rejected = opts->eo_unparked_rejected;
        engine->en_unparked_rejected_ctx = opts->eo_unparked_rejected_ctx;
    }
    engine->en_dec = avro_dec_new(catalog);
    if (!engine->en_dec) {
        free(engine);
        return NULL;
    }
    const catalog_entry_t *repair = view->v_repair_topic
                                        ? catalog_latest(catalog, ENGINE_REPAIR_RECORD)
                                        : NULL;
    static const char *const names[ENGINE_REPAIR__FIELDS] = {
        "view_key", "section", "op", "item_id", "fields_json", "view", "event_id", "occurred_at",
        "version"};
    for (size_t i = 0; repair && i < ENGINE_REPAIR__FIELDS; i++) {
        engine->en_repair_fields[i] = avro_schema_record_field_get_index(repair->ce_schema, names[i]);
        if (engine->en_repair_fields[i] < 0)
            repair = NULL; /* not the record we know: its messages count as no_rule */
    }
    engine->en_repair_reader = repair;
    const catalog_entry_t *handled = view->v_repair_topic
                                         ? catalog_latest(catalog, ENGINE_HANDLED_RECORD)
                                         : NULL;
    static const char *const hnames[4] = {"view", "topic", "partition", "offset"};
    for (size_t i = 0; handled && i < 4; i++) {
        engine->en_handled_fields[i] = avro_schema_record_field_get_index(handled->ce_schema,
                                                                          hnames[i]);
        if (engine->en_handled_fields[i] < 0)
            handled = NULL;
    }
    engine->en_handled_reader = handled;
    return engine;
}

void engine_destroy(engine_t *engine)
{
    if (!engine)
        return;
    avro_dec_destroy(engine->en_dec);
    buf_free(&engine->en_frag_buf);
    buf_free(&engine->en_marks_buf);
    buf_free(&engine->en_scratch);
    buf_free(&engine->en_unpark);
    buf_free(&engine->en_erased);
    buf_free(&engine->en_move);
    free(engine);
}

static int ledger_import(engine_t *engine, MDB_txn *txn);
static int ledger_append(engine_t *engine);
/* Rewrites format-1 parked events (no kind, no parked_at) as format 2, once per store.
 * Their parking time was never recorded, so it counts from now: an upgrade may make an
 * event wait longer than projector.parked_max_age_s, never shorter. */
static int pending_upgrade(engine_t *engine, MDB_txn *txn)
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

int engine_txn_begin(engine_t *engine, MDB_txn *txn)
{
    int rc = store_meta_get_i64(engine->en_store, txn, "pending_seq", &engine->en_pending_seq);
    if (rc == RM_ENOTFOUND) {
        engine->en_pending_seq = 0;
        rc = 0;
    }
    engine->en_pending_seq_dirty = false;
    engine->en_kept_count = 0; /* an aborted txn may have kept some: check again */
    buf_reset(&engine->en_erased);
    int64_t format;
    if (!rc)
        rc = store_meta_get_i64(engine->en_store, txn, ENGINE_PENDING_FORMAT_META, &format);
    if (rc == RM_ENOTFOUND)
        rc = pending_upgrade(engine, txn);
    if (!rc)
        rc = topic_counts_init(engine->en_store, txn); /* after the upgrade: format 2 only */
    return rc || !engine->en_erasures ? rc : ledger_import(engine, txn);
}

int engine_txn_precommit(engine_t *engine, MDB_txn *txn)
{
    int rc = ledger_append(engine);
    if (rc)
        return rc;
    if (!engine->en_pending_seq_dirty)
        return 0;
    engine->en_pending_seq_dirty = false;
    return store_meta_put_i64(engine->en_store, txn, "pending_seq", engine->en_pending_seq);
}

/* ---- small LMDB helpers: map MDB codes once ---- */

static int db_get(engine_t *engine, MDB_txn *txn, store_db_t db, const void *k, size_t klen,
                  MDB_val *ret_val)
{
    MDB_val key = {klen, (void *)k};
    return rm_err_from_mdb(mdb_get(txn, store_dbi(engine->en_store, db), &key, ret_val));
}

static int db_put(engine_t *engine, MDB_txn *txn, store_db_t db, const void *k, size_t klen,
                  const void *v, size_t vlen)
{
    MDB_val key = {klen, (void *)k}, val = {vlen, (void *)v};
    return rm_err_from_mdb(mdb_put(txn, store_dbi(engine->en_store, db), &key, &val, 0));
}

static int db_del(engine_t *engine, MDB_txn *txn, store_db_t db, const void *k, size_t klen)
{
    MDB_val key = {klen, (void *)k};
    int rc = rm_err_from_mdb(mdb_del(txn, store_dbi(engine->en_store, db), &key, NULL));
    return rc == RM_ENOTFOUND ? 0 : rc;
}

/* Joins parts with NUL separators into out. Returns the length or 0 if too long. */
static size_t join_key(char *out, const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen + 1 + blen > ENGINE_KEY_BYTES - 1)
        return 0;
    memcpy(out, a, alen);
    out[alen] = '\0';
    memcpy(out + alen + 1, b, blen);
    return alen + 1 + blen;
}

/* ---- expressions ---- */

static int eval(const engine_ev_t *ev, const view_expr_t *expr, engine_val_t *ret)
{
    if (expr->ve_kind == VIEW_EXPR_CONST) {
        if (expr->ve_const_is_int) {
            ret->ev_type = FRAG_INT;
            ret->ev_int = expr->ve_const_int;
        } else {
            ret->ev_type = FRAG_STR;
            ret->ev_str = expr->ve_const_str;
            ret->ev_len = strlen(expr->ve_const_str);
        }
        return 0;
    }
    avro_value_t field, branch;
    int found = avro_dec_field(ev->ev_dec, (size_t)expr->ve_field_index, &field);
    if (found < 0)
        return RM_EDECODE;
    if (found > 0) { /* an optional field this writer predates: null */
        ret->ev_type = FRAG_ABSENT;
        return 0;
    }
    avro_value_t *v = &field;
    if (expr->ve_src == VIEW_SRC_OPT_STRING || expr->ve_src == VIEW_SRC_OPT_LONG) {
        if (avro_value_get_current_branch(&field, &branch))
            return RM_EDECODE;
        if (avro_value_get_type(&branch) == AVRO_NULL) {
            ret->ev_type = FRAG_ABSENT;
            return 0;
        }
        v = &branch;
    }
    switch (expr->ve_src) {
    case VIEW_SRC_STRING:
    case VIEW_SRC_OPT_STRING: {
        const char *s;
        size_t size;
        if (avro_value_get_string(v, &s, &size))
            return RM_EDECODE;
        ret->ev_type = FRAG_STR;
        ret->ev_str = s;
        ret->ev_len = size ? size - 1 : 0; /* avro-c counts the NUL */
        return 0;
    }
    case VIEW_SRC_ENUM: {
        int symbol;
        if (avro_value_get_enum(v, &symbol))
            return RM_EDECODE;
        const char *name = avro_schema_enum_get(avro_value_get_schema(v), symbol);
        if (!name)
            return RM_EDECODE;
        ret->ev_type = FRAG_STR;
        ret->ev_str = name;
        ret->ev_len = strlen(name);
        return 0;
    }
    case VIEW_SRC_LONG:
    case VIEW_SRC_OPT_LONG:
        if (avro_value_get_type(v) == AVRO_INT32) {
            int32_t i;
            if (avro_value_get_int(v, &i))
                return RM_EDECODE;
            ret->ev_int = i;
        } else if (avro_value_get_long(v, &ret->ev_int)) {
            return RM_EDECODE;
        }
        ret->ev_type = FRAG_INT;
        return 0;
    case VIEW_SRC_INT: {
        int32_t i;
        if (avro_value_get_int(v, &i))
            return RM_EDECODE;
        ret->ev_type = FRAG_INT;
        ret->ev_int = i;
        return 0;
    }
    case VIEW_SRC_BOOL: {
        int b;
        if (avro_value_get_boolean(v, &b))
            return RM_EDECODE;
        ret->ev_type = FRAG_BOOL;
        ret->ev_int = b != 0;
        return 0;
    }
    case VIEW_SRC_ARRAY: {
        size_t n;
        if (avro_value_get_size(v, &n))
            return RM_EDECODE;
        ret->ev_type = FRAG_INT;
        ret->ev_int = (int64_t)n;
        return 0;
    }
    }
    return RM_EDECODE;
}

/* An id (view key, item id, link id): a non-empty string without NUL, bounded. */
static int eval_id(const engine_ev_t *ev, const view_expr_t *expr, const char **ret_str,
                   size_t *ret_len, engine_result_t *res, const char *what)
{
    engine_val_t val;
    if (eval(ev, expr, &val) || val.ev_type != FRAG_STR || val.ev_len == 0 ||
        val.ev_len > VIEW_KEY_MAX_BYTES || memchr(val.ev_str, '\0', val.ev_len)) {
        res->er_outcome = ENGINE_REJECTED;
        res->er_error = RM_EVALIDATE;
        snprintf(res->er_reason, sizeof(res->er_reason),
                 "%s is missing, empty, longer than %d bytes or holds NUL", what,
                 VIEW_KEY_MAX_BYTES);
        return RM_EVALIDATE;
    }
    *ret_str = val.ev_str;
    *ret_len = val.ev_len;
    return 0;
}

/* ---- fragments ---- */

static void touch(engine_ev_t *ev, int section)
{
    ev->ev_touched |= 1u << section;
}

/* A removed item takes its provenance with it, so the section's freshness must be
 * kept in the marks record (render.c takes the newest of marks and fragments). */
static void touch_removed(engine_ev_t *ev, int section)
{
    ev->ev_touched |= 1u << section;
    ev->ev_removed |= 1u << section;
}

/* Merges the assignments of op into frag. Returns true if any slot changed. */
static bool merge(const engine_ev_t *ev, const view_op_t *op, const view_section_t *section,
                  frag_t *frag)
{
    bool changed = false;
    for (size_t i = 0; i < op->vo_assign_count; i++) {
        const view_assign_t *as = &op->vo_assigns[i];
        engine_val_t val;
        if (ev->ev_repair_vals)
            val = ev->ev_repair_vals[i];
        else if (eval(ev, &as->va_value, &val))
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
        if (section->vs_sort_field >= 0 && frag->f_slots[section->vs_sort_field].fsl_type == FRAG_INT)
            frag->f_sort = frag->f_slots[section->vs_sort_field].fsl_int;
        if (ev->ev_prov.fp_event_ms >= frag->f_prov.fp_event_ms)
            frag->f_prov = ev->ev_prov;
    }
    return changed;
}

static int frag_load(engine_t *engine, MDB_txn *txn, const char *key, size_t klen,
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

static int frag_store(engine_t *engine, MDB_txn *txn, const char *key, size_t klen,
                      const view_section_t *section, const frag_t *frag)
{
    int rc = frag_encode(frag, section, &engine->en_frag_buf);
    if (rc)
        return rc;
    return db_put(engine, txn, STORE_DB_DOC, key, klen, engine->en_frag_buf.b_data,
                  engine->en_frag_buf.b_len);
}

/* ---- lists: bounded, with deletions (note 8) ---- */

#define ENGINE_HIDDEN_PREFIX                                                                       \
    "\xff"                                                                                         \
    "h" /* trimmed items and ghosts: kept, never served */
#define ENGINE_DELETED_PREFIX                                                                      \
    "\xff"                                                                                         \
    "d" /* deletion stamps of list items */
#define ENGINE_STAMP_BYTES 20 /* i64 time, i64 version, u32 tie; native order */
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

/* The normalised value of an indexed field of frag, or len -1 when it has none. */
typedef struct engine_idxval {
    char iv_value[INDEX_VALUE_MAX_BYTES + 1];
    int iv_len;
} engine_idxval_t;

static void index_value_of(const view_index_t *index, const frag_t *frag, engine_idxval_t *out)
{
    const frag_slot_t *slot = &frag->f_slots[index->vi_field];
    out->iv_len = slot->fsl_type == FRAG_STR
                      ? index_normalize(index->vi_norm, slot->fsl_str, slot->fsl_str_len,
                                        out->iv_value, sizeof(out->iv_value))
                      : -1;
}

static int index_write(engine_t *engine, MDB_txn *txn, const engine_ev_t *ev,
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
static int index_update(engine_t *engine, MDB_txn *txn, const engine_ev_t *ev, int section,
                        const engine_idxval_t *before, const engine_idxval_t *after)
{
    const view_t *view = engine->en_view;
    for (size_t i = 0, n = 0; i < view->v_index_count; i++) {
        const view_index_t *index = &view->v_indexes[i];
        if (index->vi_section != section)
            continue;
        const engine_idxval_t *b = &before[n], *a = &after[n];
        n++;
        if (b->iv_len == a->iv_len && (b->iv_len < 0 || memcmp(b->iv_value, a->iv_value, (size_t)a->iv_len) == 0))
            continue;
        int rc = b->iv_len >= 0 ? index_write(engine, txn, ev, index, b, false) : 0;
        if (!rc && a->iv_len >= 0)
            rc = index_write(engine, txn, ev, index, a, true);
        if (rc)
            return rc;
    }
    return 0;
}

/* Normalised values of every field index over section, in index order. */
static size_t index_values(const view_t *view, int section, const frag_t *frag,
                           engine_idxval_t *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < view->v_index_count && n < cap; i++)
        if (view->v_indexes[i].vi_section == section)
            index_value_of(&view->v_indexes[i], frag, &out[n++]);
    return n;
}

#define ENGINE_MAX_FIELD_INDEXES VIEW_MAX_FIELD_INDEXES

/* A delete of a list item: every field written before it goes, and so does any later
 * write that is older than it (list_write), so deletes and writes commute. What newer
 * writes left stays as a ghost until an upsert gives the item its place again. */
static int list_delete(engine_t *engine, MDB_txn *txn, engine_ev_t *ev, int section_index,
                       const char *item, size_t item_len)
{
    const view_section_t *section = &engine->en_view->v_sections[section_index];
    char vkey[ENGINE_KEY_BYTES], hkey[ENGINE_KEY_BYTES], dkey[ENGINE_KEY_BYTES];
    size_t vlen = list_key(vkey, ev, "", section, item, item_len);
    size_t hlen = list_key(hkey, ev, ENGINE_HIDDEN_PREFIX, section, item, item_len);
    size_t dlen = list_key(dkey, ev, ENGINE_DELETED_PREFIX, section, item, item_len);
    if (!vlen || !hlen || !dlen)
        return RM_EVALIDATE;
    frag_stamp_t deleted;
    bool known;
    int rc = deleted_get(engine, txn, dkey, dlen, &deleted, &known);
    if (rc)
        return rc;
    if (!known || frag_stamp_newer(&ev->ev_stamp, &deleted)) {
        deleted = ev->ev_stamp;
        if ((rc = deleted_put(engine, txn, dkey, dlen, &deleted)))
            return rc;
    }
    frag_t frag;
    bool visible, hidden = false;
    if ((rc = frag_load(engine, txn, vkey, vlen, section, &frag, &visible)))
        return rc;
    if (!visible && (rc = frag_load(engine, txn, hkey, hlen, section, &frag, &hidden)))
        return rc;
    if (!visible && !hidden)
        return 0;
    engine_idxval_t before[ENGINE_MAX_FIELD_INDEXES], after[ENGINE_MAX_FIELD_INDEXES];
    size_t indexed =
        index_values(engine->en_view, section_index, &frag, before, ENGINE_MAX_FIELD_INDEXES);
    bool any = false, cleared = false;
    for (size_t i = 0; i < section->vs_field_count; i++) {
        frag_slot_t *slot = &frag.f_slots[i];
        if (slot->fsl_type != FRAG_ABSENT && !frag_stamp_newer(&slot->fsl_stamp, &deleted)) {
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
    index_values(engine->en_view, section_index, &frag, after, ENGINE_MAX_FIELD_INDEXES);
    if (visible && eligible)
        rc = frag_store(engine, txn, vkey, vlen, section, &frag);
    else if (any)
        rc = frag_store(engine, txn, hkey, hlen, section, &frag);
    if (!rc && visible && !eligible)
        rc = db_del(engine, txn, STORE_DB_DOC, vkey, vlen);
    else if (!rc && hidden && !any)
        rc = db_del(engine, txn, STORE_DB_DOC, hkey, hlen);
    if (!rc && indexed)
        rc = index_update(engine, txn, ev, section_index, before, after);
    if (rc || !visible)
        return rc;
    if (!eligible)
        touch_removed(ev, section_index);
    else
        touch(ev, section_index);
    return section->vs_max_items ? list_settle(engine, txn, ev, section_index, true) : 0;
}

/* An upsert or update of a list item, wherever it is kept (note 8). */
static int list_write(engine_t *engine, MDB_txn *txn, engine_ev_t *ev, const view_op_t *op,
                      const char *item, size_t item_len)
{
    const view_section_t *section = &engine->en_view->v_sections[op->vo_section];
    char vkey[ENGINE_KEY_BYTES], hkey[ENGINE_KEY_BYTES], dkey[ENGINE_KEY_BYTES];
    size_t vlen = list_key(vkey, ev, "", section, item, item_len);
    size_t hlen = list_key(hkey, ev, ENGINE_HIDDEN_PREFIX, section, item, item_len);
    size_t dlen = list_key(dkey, ev, ENGINE_DELETED_PREFIX, section, item, item_len);
    if (!vlen || !hlen || !dlen)
        return RM_EVALIDATE;
    frag_stamp_t deleted;
    bool was_deleted;
    int rc = deleted_get(engine, txn, dkey, dlen, &deleted, &was_deleted);
    if (rc)
        return rc;
    if (was_deleted && !frag_stamp_newer(&ev->ev_stamp, &deleted))
        return 0; /* the item was deleted after this write was made */
    frag_t frag;
    bool visible, hidden = false;
    if ((rc = frag_load(engine, txn, vkey, vlen, section, &frag, &visible)))
        return rc;
    if (!visible && (rc = frag_load(engine, txn, hkey, hlen, section, &frag, &hidden)))
        return rc;
    /* A stale upsert fills only a ghost: an item a newer version updated but no version
     * created yet (OrderCancelled v2 before OrderCreated v1). Anything else is the newer
     * state (created, or deleted) and stands — also against a re-published old event. */
    if (ev->ev_stale && !(hidden && !list_eligible(section, &frag)))
        return 0;
    if (!visible && !hidden && op->vo_kind == VIEW_OP_UPDATE && !was_deleted &&
        section->vs_sort_field < 0)
        return 0; /* nothing to update */
    engine_idxval_t before[ENGINE_MAX_FIELD_INDEXES], after[ENGINE_MAX_FIELD_INDEXES];
    size_t indexed =
        index_values(engine->en_view, op->vo_section, &frag, before, ENGINE_MAX_FIELD_INDEXES);
    int64_t sort_before = frag.f_sort;
    if (!merge(ev, op, section, &frag))
        return 0;
    bool eligible = list_eligible(section, &frag);
    /* Normalise before the put: slots may borrow from the page the put rewrites. */
    index_values(engine->en_view, op->vo_section, &frag, after, ENGINE_MAX_FIELD_INDEXES);
    bool to_visible = visible || (eligible && !section->vs_max_items) || (eligible && !hidden);
    rc = to_visible ? frag_store(engine, txn, vkey, vlen, section, &frag)
                    : frag_store(engine, txn, hkey, hlen, section, &frag);
    if (!rc && hidden && to_visible)
        rc = db_del(engine, txn, STORE_DB_DOC, hkey, hlen);
    if (!rc && indexed)
        rc = index_update(engine, txn, ev, op->vo_section, before, after);
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

static int op_fragment(engine_t *engine, MDB_txn *txn, engine_ev_t *ev, const view_op_t *op,
                       engine_result_t *res)
{
    const view_section_t *section = &engine->en_view->v_sections[op->vo_section];
    const char *item = "";
    size_t item_len = 0;
    if (ev->ev_repair_item) {
        item = ev->ev_repair_item;
        item_len = ev->ev_repair_item_len;
    } else if (op->vo_kind != VIEW_OP_SET &&
               eval_id(ev, &op->vo_item, &item, &item_len, res, "item id")) {
        return RM_EVALIDATE;
    }
    if (op->vo_kind == VIEW_OP_DELETE)
        return list_delete(engine, txn, ev, op->vo_section, item, item_len);
    if (section->vs_kind == VIEW_LIST)
        return list_write(engine, txn, ev, op, item, item_len);
    char key[ENGINE_KEY_BYTES];
    size_t klen = store_doc_key(key, sizeof(key), ev->ev_key, ev->ev_key_len, section->vs_name,
                                item, item_len);
    if (!klen)
        return RM_EVALIDATE;
    frag_t frag;
    bool found;
    int rc = frag_load(engine, txn, key, klen, section, &frag, &found);
    if (rc)
        return rc;
    engine_idxval_t before[ENGINE_MAX_FIELD_INDEXES], after[ENGINE_MAX_FIELD_INDEXES];
    size_t indexed = index_values(engine->en_view, op->vo_section, &frag, before,
                                  ENGINE_MAX_FIELD_INDEXES);
    if (!merge(ev, op, section, &frag))
        return 0;
    touch(ev, op->vo_section);
    /* Normalise before the put: slots may borrow from the page the put rewrites. */
    index_values(engine->en_view, op->vo_section, &frag, after, ENGINE_MAX_FIELD_INDEXES);
    rc = frag_store(engine, txn, key, klen, section, &frag);
    if (!rc && indexed)
        rc = index_update(engine, txn, ev, op->vo_section, before, after);
    return rc;
}

/* Adds delta to counter field of section. */
static int counter_add(engine_t *engine, MDB_txn *txn, engine_ev_t *ev, int section_index,
                       int field, int64_t delta)
{
    const view_section_t *section = &engine->en_view->v_sections[section_index];
    char key[ENGINE_KEY_BYTES];
    size_t klen = store_doc_key(key, sizeof(key), ev->ev_key, ev->ev_key_len, section->vs_name,
                                "", 0);
    frag_t frag;
    bool found;
    int rc = frag_load(engine, txn, key, klen, section, &frag, &found);
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
    return frag_store(engine, txn, key, klen, section, &frag);
}

static int op_counter(engine_t *engine, MDB_txn *txn, engine_ev_t *ev, const view_op_t *op)
{
    engine_val_t by;
    if (eval(ev, &op->vo_by, &by) || by.ev_type != FRAG_INT)
        return 0; /* a null amount adds nothing */
    return counter_add(engine, txn, ev, op->vo_section, op->vo_counter_field,
                       op->vo_kind == VIEW_OP_INCR ? by.ev_int : -by.ev_int);
}

/* The version record: the entity's applied version, then its counter shares (note 7). */
static int version_put(engine_t *engine, MDB_txn *txn, const engine_ev_t *ev)
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
static int op_contribute(engine_t *engine, MDB_txn *txn, engine_ev_t *ev, const view_op_t *op)
{
    engine_val_t by;
    if (eval(ev, &op->vo_by, &by) || by.ev_type != FRAG_INT)
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
        return version_put(engine, txn, ev);
    share->es_amount = by.ev_int;
    int rc = counter_add(engine, txn, ev, op->vo_section, op->vo_counter_field, delta);
    return rc ? rc : version_put(engine, txn, ev);
}

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
        size_t klen = store_doc_key(key, sizeof(key), ev->ev_key, ev->ev_key_len,
                                    section->vs_name, "", 0);
        frag_t frag;
        bool found;
        int rc = frag_load(engine, txn, key, klen, section, &frag, &found);
        if (rc)
            return rc;
        engine_idxval_t val;
        index_value_of(index, &frag, &val);
        if (found && val.iv_len >= 0 && (rc = index_write(engine, txn, ev, index, &val, false)))
            return rc;
    }
    return 0;
}

static int op_erase(engine_t *engine, MDB_txn *txn, engine_ev_t *ev)
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

/* ---- the erasure ledger (erasures.h) ---- */

#define ENGINE_LEDGER_META "erasures_at" /* ledger offset this store has applied up to */
#define ENGINE_LEDGER_BATCH 1024 /* keys per append when a store exports its own */

/* Appends the keys this txn erased, durably, before the txn commits: a crash between
 * the two leaves the ledger ahead of the store, which only erases early what the log
 * is about to erase anyway (an erasure is final, note 4). */
static int ledger_append(engine_t *engine)
{
    buf_t *b = &engine->en_erased;
    if (!b->b_len || erasures_readonly(engine->en_erasures))
        return 0;
    const char *keys[ENGINE_LEDGER_BATCH];
    size_t lens[ENGINE_LEDGER_BATCH];
    int64_t ats[ENGINE_LEDGER_BATCH];
    size_t n = 0, pos = 0;
    int rc = 0;
    while (!rc && pos < b->b_len) {
        uint16_t len;
        memcpy(&len, b->b_data + pos, sizeof(len));
        keys[n] = b->b_data + pos + sizeof(len);
        lens[n] = len;
        memcpy(&ats[n], b->b_data + pos + sizeof(len) + len, sizeof(int64_t));
        pos += sizeof(len) + len + sizeof(int64_t);
        if (++n == ENGINE_LEDGER_BATCH || pos == b->b_len) {
            rc = erasures_append(engine->en_erasures, keys, lens, ats, n);
            n = 0;
        }
    }
    if (!rc)
        buf_reset(b);
    return rc;
}

/* A store that predates the ledger: its erasures go into the ledger first. */
static int ledger_export(engine_t *engine, MDB_txn *txn)
{
    MDB_cursor *cur;
    int rc =
        rm_err_from_mdb(mdb_cursor_open(txn, store_dbi(engine->en_store, STORE_DB_ERASED), &cur));
    if (rc)
        return rc;
    buf_t *b = &engine->en_erased;
    MDB_val key, val;
    int mrc;
    for (mrc = mdb_cursor_get(cur, &key, &val, MDB_FIRST); !rc && mrc == 0;
         mrc = mdb_cursor_get(cur, &key, &val, MDB_NEXT)) {
        int64_t at = 0;
        if (key.mv_size == 0 || key.mv_size > VIEW_KEY_MAX_BYTES)
            continue;
        if (val.mv_size == sizeof(at))
            memcpy(&at, val.mv_data, sizeof(at));
        uint16_t len = (uint16_t)key.mv_size;
        rc = buf_append(b, &len, sizeof(len));
        rc = rc ? rc : buf_append(b, key.mv_data, key.mv_size);
        rc = rc ? rc : buf_append(b, &at, sizeof(at));
    }
    mdb_cursor_close(cur);
    if (!rc && mrc && mrc != MDB_NOTFOUND)
        rc = rm_err_from_mdb(mrc);
    return rc ? rc : ledger_append(engine);
}

typedef struct engine_import {
    engine_t *ei_engine;
    MDB_txn *ei_txn;
} engine_import_t;

static int ledger_import_one(void *ctx, const char *key, size_t key_len, int64_t erased_at_ms)
{
    engine_import_t *ei = ctx;
    if (key_len > VIEW_KEY_MAX_BYTES || memchr(key, '\0', key_len))
        return 0; /* not a view key: written by something else, nothing to erase */
    MDB_val erased;
    int rc = db_get(ei->ei_engine, ei->ei_txn, STORE_DB_ERASED, key, key_len, &erased);
    if (rc != RM_ENOTFOUND)
        return rc;
    engine_ev_t ev = {.ev_new_link = -1, .ev_key_len = key_len};
    memcpy(ev.ev_key_buf, key, key_len);
    ev.ev_key = ev.ev_key_buf;
    ev.ev_stamp.fs_time_ms = erased_at_ms;
    return op_erase(ei->ei_engine, ei->ei_txn, &ev);
}

/* Erases, in txn, the keys the ledger recorded after this store last looked. */
static int ledger_import(engine_t *engine, MDB_txn *txn)
{
    int64_t at, end;
    int rc = store_meta_get_i64(engine->en_store, txn, ENGINE_LEDGER_META, &at);
    bool known = rc == 0;
    if (rc == RM_ENOTFOUND) {
        at = 0;
        rc = erasures_readonly(engine->en_erasures) ? 0 : ledger_export(engine, txn);
    }
    if (!rc)
        rc = erasures_end(engine->en_erasures, &end);
    if (rc || (known && end <= at))
        return rc;
    engine_import_t ei = {engine, txn};
    engine->en_importing = true;
    rc = erasures_scan(engine->en_erasures, at, ledger_import_one, &ei, &end);
    engine->en_importing = false;
    return rc ? rc : store_meta_put_i64(engine->en_store, txn, ENGINE_LEDGER_META, end);
}

static int op_link(engine_t *engine, MDB_txn *txn, engine_ev_t *ev, const view_op_t *op,
                   bool key_erased, engine_result_t *res)
{
    const char *id;
    size_t id_len;
    if (eval_id(ev, &op->vo_link_id, &id, &id_len, res, "link id"))
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

/* ---- marks ---- */

static int update_marks(engine_t *engine, MDB_txn *txn, engine_ev_t *ev)
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

/* ---- parking ---- */

/* Parked value (format 2): u8 kind | i64 parked_at_ms | i32 partition | i64 offset |
 *   i64 timestamp | u16 topic_len | topic | u32 key_len | key | value.
 * parked_at_ms is the wall clock of the transaction that parked it: how long an entry has
 * waited in this store, which is what link-timeout means. The message's own timestamp
 * says when it was produced, and a first deployment or a rebuild over old history would
 * read every parked event as long overdue. Format 1 (before parked_at and kind) is
 * rewritten once by engine_txn_begin (pending_upgrade). */

static int park(engine_t *engine, MDB_txn *txn, const engine_msg_t *msg, const char *link,
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
    uint8_t kind = ENGINE_PARKED_EVENT;
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
    rc = rc ? rc : buf_append(b, msg->em_value, msg->em_value_len);
    rc = rc ? rc : db_put(engine, txn, STORE_DB_PENDING, key, klen, b->b_data, b->b_len);
    return rc ? rc
              : topic_counts_add(engine->en_store, txn, msg->em_topic, topic_len,
                                 TOPIC_COUNTS_PARKED, 1);
}

static int apply_msg(engine_t *engine, MDB_txn *txn, const engine_msg_t *msg,
                     engine_result_t *res);

/* Decodes a parked envelope (written by park()); topic is copied into topic_buf. */
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
    if (*ret_kind != ENGINE_PARKED_EVENT)
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
    msg->em_value = p;
    msg->em_value_len = (size_t)(end - p);
    return 0;
}

int engine_expire_parked(engine_t *engine, MDB_txn *txn, int64_t cutoff_ms, engine_expired_cb cb,
                         void *ctx, size_t *ret_expired)
{
    MDB_cursor *cur;
    int rc = rm_err_from_mdb(mdb_cursor_open(txn, store_dbi(engine->en_store, STORE_DB_PENDING), &cur));
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
static int unpark(engine_t *engine, MDB_txn *txn, const char *link, const char *id,
                  size_t id_len, size_t *ret_count)
{
    char prefix[ENGINE_KEY_BYTES];
    size_t plen = join_key(prefix, link, strlen(link), id, id_len);
    if (!plen)
        return 0;
    prefix[plen++] = '\0';
    for (;;) {
        MDB_cursor *cur;
        int rc =
            rm_err_from_mdb(mdb_cursor_open(txn, store_dbi(engine->en_store, STORE_DB_PENDING), &cur));
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
        rc = apply_msg(engine, txn, &msg, &sub);
        /* Poison found only now is still poison: it goes where it would have gone had
         * its link been known on arrival, never nowhere. */
        if (!rc && sub.er_outcome == ENGINE_REJECTED && engine->en_unparked_rejected)
            rc = engine->en_unparked_rejected(engine->en_unparked_rejected_ctx, txn, &msg, &sub);
        if (rc)
            return rc;
        (*ret_count)++;
    }
}

/* ---- the apply path ---- */

static void reject(engine_result_t *res, int error, const char *reason)
{
    res->er_outcome = ENGINE_REJECTED;
    res->er_error = error;
    snprintf(res->er_reason, sizeof(res->er_reason), "%s", reason);
}

static uint32_t fnv32(const char *s, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

/* Reads event_id, occurred_at and version (at those reader indexes) into the stamp. */
static int read_meta_at(engine_ev_t *ev, int id_index, int time_index, int version_index,
                        engine_result_t *res)
{
    avro_value_t field;
    const char *event_id;
    size_t event_id_len;
    int64_t occurred_at, version;
    if (avro_dec_field(ev->ev_dec, (size_t)id_index, &field) ||
        avro_value_get_string(&field, &event_id, &event_id_len) ||
        avro_dec_field(ev->ev_dec, (size_t)time_index, &field) ||
        avro_value_get_long(&field, &occurred_at) ||
        avro_dec_field(ev->ev_dec, (size_t)version_index, &field) ||
        avro_value_get_long(&field, &version)) {
        reject(res, RM_EVALIDATE, "event_id, occurred_at or version unreadable");
        return RM_EVALIDATE;
    }
    if (version < 1 || event_id_len <= 1) {
        reject(res, RM_EVALIDATE, version < 1 ? "version < 1" : "empty event_id");
        return RM_EVALIDATE;
    }
    ev->ev_stamp.fs_time_ms = occurred_at;
    ev->ev_stamp.fs_version = version;
    ev->ev_stamp.fs_tie = fnv32(event_id, event_id_len - 1);
    ev->ev_prov.fp_event_ms = occurred_at;
    return 0;
}

static int read_meta(engine_ev_t *ev, engine_result_t *res)
{
    const view_rule_t *rule = ev->ev_rule;
    return read_meta_at(ev, rule->vr_event_id_index, rule->vr_occurred_at_index,
                        rule->vr_version_index, res);
}

/* Version guard: returns 1 if the event is stale, 0 if new (and fills vkey with the
 * guard's key). The guard lives in `doc` under the view key ("key \0 \xff \0 type \0
 * id"), next to the fragments the event changes: one dirty page fewer per event than
 * a separate table keyed by entity (measured on a 543k-event backlog: 49k -> 57k events/s), and erasure removes
 * it with the rest of the key. */
static int guard_check(engine_t *engine, MDB_txn *txn, engine_ev_t *ev, const char *type,
                       const char *id, size_t id_len, char *vkey, size_t *ret_vlen)
{
    char item[ENGINE_KEY_BYTES];
    size_t item_len = join_key(item, type, strlen(type), id, id_len);
    size_t vlen = item_len ? store_doc_key(vkey, ENGINE_KEY_BYTES, ev->ev_key, ev->ev_key_len,
                                           ENGINE_VERSION_SECTION, item, item_len)
                           : 0;
    if (!vlen)
        return RM_EVALIDATE;
    MDB_val val;
    int rc = db_get(engine, txn, STORE_DB_DOC, vkey, vlen, &val);
    *ret_vlen = vlen;
    memcpy(ev->ev_vkey, vkey, vlen);
    ev->ev_vkey_len = vlen;
    ev->ev_share_count = 0;
    ev->ev_record_version = ev->ev_stamp.fs_version;
    if (rc == RM_ENOTFOUND)
        return 0;
    if (rc)
        return rc;
    int64_t applied;
    if (val.mv_size < sizeof(applied))
        return RM_ESTORE;
    memcpy(&applied, val.mv_data, sizeof(applied));
    /* Copied out: the page is rewritten by the writes the event makes. A stale event
     * needs the shares too: its contribution may still count (op_contribute). */
    const unsigned char *p = (const unsigned char *)val.mv_data + sizeof(applied),
                        *end = (const unsigned char *)val.mv_data + val.mv_size;
    size_t shares = 0;
    for (; p < end; shares++) {
        if (shares == VIEW_MAX_CONTRIBUTIONS || end - p < ENGINE_SHARE_BYTES)
            return RM_ESTORE;
        engine_share_t *share = &ev->ev_shares[shares];
        memcpy(&share->es_section, p, 2);
        memcpy(&share->es_field, p + 2, 2);
        memcpy(&share->es_amount, p + 4, 8);
        share->es_version = applied;
        p += ENGINE_SHARE_BYTES;
        if (share->es_field & ENGINE_SHARE_VERSIONED) {
            if (end - p < ENGINE_SHARE_V_BYTES - ENGINE_SHARE_BYTES)
                return RM_ESTORE;
            share->es_field &= (uint16_t)~ENGINE_SHARE_VERSIONED;
            memcpy(&share->es_version, p, 8);
            p += ENGINE_SHARE_V_BYTES - ENGINE_SHARE_BYTES;
        }
    }
    ev->ev_share_count = shares;
    if (ev->ev_stamp.fs_version <= applied) {
        ev->ev_record_version = applied;
        return 1;
    }
    return 0;
}

static int check_version(engine_t *engine, MDB_txn *txn, engine_ev_t *ev, char *vkey,
                         size_t *ret_vlen, engine_result_t *res)
{
    const char *id;
    size_t id_len;
    if (eval_id(ev, &ev->ev_rule->vr_entity_id, &id, &id_len, res, "entity id"))
        return RM_EVALIDATE;
    return guard_check(engine, txn, ev, ev->ev_rule->vr_entity_type, id, id_len, vkey, ret_vlen);
}

/* Checks every id the operations will use before any of them writes, so a poison
 * event is rejected whole and never half-applied. */
static int validate_ops(const engine_ev_t *ev, engine_result_t *res)
{
    const view_rule_t *rule = ev->ev_rule;
    for (size_t i = 0; i < rule->vr_op_count; i++) {
        const view_op_t *op = &rule->vr_ops[i];
        const char *id;
        size_t id_len;
        if (op->vo_kind == VIEW_OP_UPSERT || op->vo_kind == VIEW_OP_UPDATE ||
            op->vo_kind == VIEW_OP_DELETE) {
            if (eval_id(ev, &op->vo_item, &id, &id_len, res, "item id"))
                return RM_EVALIDATE;
        } else if (op->vo_kind == VIEW_OP_LINK) {
            if (eval_id(ev, &op->vo_link_id, &id, &id_len, res, "link id"))
                return RM_EVALIDATE;
        }
    }
    return 0;
}

/* stale: the entity already applied a newer version (note 9): only the operations whose
 * effect does not depend on the order of versions run — links (last claim wins by
 * stamp), erasure (final), shares older than the event's version (op_contribute) and
 * upserts into ghosts (list_write). */
static int run_ops(engine_t *engine, MDB_txn *txn, engine_ev_t *ev, bool key_erased, bool stale,
                   engine_result_t *res)
{
    const view_rule_t *rule = ev->ev_rule;
    for (size_t i = 0; i < rule->vr_op_count; i++) {
        const view_op_t *op = &rule->vr_ops[i];
        int rc = 0;
        if (op->vo_kind == VIEW_OP_LINK)
            rc = op_link(engine, txn, ev, op, key_erased, res);
        else if (key_erased || ev->ev_erased ||
                 (stale && op->vo_kind != VIEW_OP_ERASE && op->vo_kind != VIEW_OP_UPSERT &&
                  op->vo_kind != VIEW_OP_CONTRIBUTE))
            continue;
        else if (op->vo_kind == VIEW_OP_ERASE)
            rc = op_erase(engine, txn, ev);
        else if (op->vo_kind == VIEW_OP_INCR || op->vo_kind == VIEW_OP_DECR)
            rc = op_counter(engine, txn, ev, op);
        else if (op->vo_kind == VIEW_OP_CONTRIBUTE)
            rc = op_contribute(engine, txn, ev, op);
        else
            rc = op_fragment(engine, txn, ev, op, res);
        if (rc)
            return rc;
    }
    if (key_erased || ev->ev_erased || !ev->ev_removed)
        return 0;
    return update_marks(engine, txn, ev);
}

/* A readmodel.DeadLetterHandled (projector dlq replay|purge): clears the degraded mark
 * the dead letter put on its entity (degraded.h). Idempotent, so it needs no guard. */
static int apply_handled(engine_t *engine, engine_ev_t *ev, MDB_txn *txn, engine_result_t *res)
{
    const int *idx = engine->en_handled_fields;
    avro_value_t field;
    const char *view_name, *topic;
    size_t view_len, topic_len;
    int32_t partition;
    int64_t offset;
    if (avro_dec_field(ev->ev_dec, (size_t)idx[0], &field) ||
        avro_value_get_string(&field, &view_name, &view_len) ||
        avro_dec_field(ev->ev_dec, (size_t)idx[1], &field) ||
        avro_value_get_string(&field, &topic, &topic_len) ||
        avro_dec_field(ev->ev_dec, (size_t)idx[2], &field) || avro_value_get_int(&field, &partition) ||
        avro_dec_field(ev->ev_dec, (size_t)idx[3], &field) || avro_value_get_long(&field, &offset)) {
        reject(res, RM_EDECODE, "dead-letter-handled fields unreadable");
        return 0;
    }
    if (strcmp(view_name, engine->en_view->v_name) != 0) {
        reject(res, RM_EVALIDATE, "dead-letter-handled for another view");
        return 0;
    }
    bool cleared;
    int rc = degraded_clear(engine->en_store, txn, topic, partition, offset, &cleared);
    if (!rc)
        res->er_outcome = cleared ? ENGINE_APPLIED : ENGINE_STALE;
    return rc;
}

/* Resolves a foreign id through a link into ev's view key, copied into ev_key_buf (the
 * link's page may be rewritten by later writes in the txn). Returns 0, RM_ENOTFOUND when
 * the link does not know the id, ENGINE_LINK_ERASED when its entity was erased, or a
 * store error. */
#define ENGINE_LINK_ERASED 1
static int resolve_link(engine_t *engine, MDB_txn *txn, const char *link, const char *id,
                        size_t id_len, engine_ev_t *ev)
{
    char lkey[ENGINE_KEY_BYTES];
    size_t lklen = join_key(lkey, link, strlen(link), id, id_len);
    MDB_val target;
    int rc = lklen ? db_get(engine, txn, STORE_DB_LINK, lkey, lklen, &target) : RM_ENOTFOUND;
    if (rc)
        return rc;
    if (target.mv_size == 1 && memcmp(target.mv_data, ENGINE_ERASED_LINK, 1) == 0)
        return ENGINE_LINK_ERASED;
    if (target.mv_size > sizeof(ev->ev_key_buf))
        return RM_ESTORE;
    memcpy(ev->ev_key_buf, target.mv_data, target.mv_size);
    ev->ev_key = ev->ev_key_buf;
    ev->ev_key_len = target.mv_size;
    return 0;
}

/* ---- tombstones (`tombstones:` in the view definition) ---- */

/* A null-value record: what the view definition declares for its topic. Erase: the key is
 * a view key, erased like an erase op (final: later events are dropped). Delete: the key
 * is an item id of a list section whose view key the link knows; counters are left as they
 * are (the events that counted did happen). Without a rule, or with a key that names
 * nothing, it is counted and skipped. */
static int apply_tombstone(engine_t *engine, MDB_txn *txn, const engine_msg_t *msg,
                           engine_result_t *res)
{
    const view_t *view = engine->en_view;
    res->er_outcome = ENGINE_TOMBSTONE;
    int topic = view_topic_index(view, msg->em_topic);
    if (topic < 0 || !view->v_tombstones || view->v_tombstones[topic].vt_kind == VIEW_TOMB_IGNORE)
        return 0;
    const view_tombstone_t *tomb = &view->v_tombstones[topic];
    if (!msg->em_key || msg->em_key_len == 0 || msg->em_key_len > VIEW_KEY_MAX_BYTES ||
        memchr(msg->em_key, '\0', msg->em_key_len)) {
        reject(res, RM_EVALIDATE, "tombstone key missing, longer than 128 bytes or holding NUL");
        return 0;
    }
    engine_ev_t ev = {.ev_msg = msg, .ev_new_link = -1};
    ev.ev_stamp.fs_time_ms = msg->em_timestamp_ms;
    ev.ev_stamp.fs_tie = fnv32(msg->em_key, msg->em_key_len);
    ev.ev_prov = (frag_prov_t){msg->em_timestamp_ms, msg->em_offset, msg->em_partition,
                               (uint16_t)topic};
    res->er_event_ms = msg->em_timestamp_ms;
    int rc;
    if (tomb->vt_kind == VIEW_TOMB_ERASE) {
        memcpy(ev.ev_key_buf, msg->em_key, msg->em_key_len);
        ev.ev_key = ev.ev_key_buf;
        ev.ev_key_len = msg->em_key_len;
    } else {
        rc = resolve_link(engine, txn, view->v_links[tomb->vt_link], msg->em_key,
                          msg->em_key_len, &ev);
        if (rc == RM_ENOTFOUND)
            return 0; /* nothing of it was ever projected */
        if (rc == ENGINE_LINK_ERASED)
            res->er_outcome = ENGINE_ERASED;
        if (rc)
            return rc == ENGINE_LINK_ERASED ? 0 : rc;
    }
    MDB_val erased;
    rc = db_get(engine, txn, STORE_DB_ERASED, ev.ev_key, ev.ev_key_len, &erased);
    if (rc == 0) {
        res->er_outcome = ENGINE_ERASED;
        return 0;
    }
    if (rc != RM_ENOTFOUND)
        return rc;
    if (tomb->vt_kind == VIEW_TOMB_ERASE) {
        rc = op_erase(engine, txn, &ev);
    } else {
        view_op_t op = {.vo_kind = VIEW_OP_DELETE, .vo_section = tomb->vt_section};
        ev.ev_repair_item = msg->em_key;
        ev.ev_repair_item_len = msg->em_key_len;
        rc = op_fragment(engine, txn, &ev, &op, res);
        if (!rc && ev.ev_removed)
            rc = update_marks(engine, txn, &ev);
    }
    if (rc == RM_EVALIDATE)
        return RM_ESTORE;
    if (!rc)
        res->er_outcome = ENGINE_APPLIED;
    return rc;
}

/* ---- repairs (reconcile --repair; docs/reconcile.md) ---- */

/* Reads a string field of a repair into ret (borrowed from the decoded value). */
static int repair_str(const engine_t *engine, const engine_ev_t *ev, int which, const char **ret,
                      size_t *ret_len)
{
    avro_value_t field, branch, *v = &field;
    if (avro_dec_field(ev->ev_dec, (size_t)engine->en_repair_fields[which], &field))
        return RM_EDECODE;
    if (avro_value_get_type(&field) == AVRO_UNION) {
        if (avro_value_get_current_branch(&field, &branch))
            return RM_EDECODE;
        if (avro_value_get_type(&branch) == AVRO_NULL) {
            *ret = NULL;
            *ret_len = 0;
            return 0;
        }
        v = &branch;
    }
    size_t size;
    if (avro_value_get_string(v, ret, &size))
        return RM_EDECODE;
    *ret_len = size ? size - 1 : 0;
    return 0;
}

/* Converts the JSON field values of a repair into assignments of the section's types. */
static int repair_values(const view_section_t *section, json_t *fields, view_assign_t *assigns,
                         engine_val_t *vals, size_t *ret_count, engine_result_t *res)
{
    const char *name;
    json_t *value;
    size_t n = 0;
    json_object_foreach(fields, name, value) {
        int f = -1;
        for (size_t i = 0; i < section->vs_field_count; i++)
            if (strcmp(section->vs_fields[i].vf_name, name) == 0)
                f = (int)i;
        if (f < 0 || n >= FRAG_MAX_SLOTS) {
            reject(res, RM_EVALIDATE, "repair names a field the section does not have");
            return RM_EVALIDATE;
        }
        engine_val_t *val = &vals[n];
        view_type_t type = section->vs_fields[f].vf_type;
        if (json_is_null(value)) {
            val->ev_type = FRAG_ABSENT;
        } else if (type == VIEW_T_STRING && json_is_string(value)) {
            val->ev_type = FRAG_STR;
            val->ev_str = json_string_value(value);
            val->ev_len = json_string_length(value);
        } else if ((type == VIEW_T_LONG || type == VIEW_T_TIMESTAMP) && json_is_integer(value)) {
            val->ev_type = FRAG_INT;
            val->ev_int = json_integer_value(value);
        } else if (type == VIEW_T_BOOL && json_is_boolean(value)) {
            val->ev_type = FRAG_BOOL;
            val->ev_int = json_is_true(value);
        } else {
            reject(res, RM_EVALIDATE, "repair value does not have the field's type");
            return RM_EVALIDATE;
        }
        assigns[n] = (view_assign_t){.va_field = f};
        n++;
    }
    *ret_count = n;
    return 0;
}

/* A readmodel.Repair: set the fields of a single section, or upsert/delete a list item,
 * of one view key, with the repair's stamp — so it wins over every write older than the
 * source read it reflects and loses to any newer event. Each repair is its own entity
 * (type "repair", id = event_id) under the version guard, so a redelivery is stale. */
static int apply_repair(engine_t *engine, MDB_txn *txn, engine_ev_t *ev, engine_result_t *res)
{
    const view_t *view = engine->en_view;
    const int *idx = engine->en_repair_fields;
    if (read_meta_at(ev, idx[ENGINE_REPAIR_EVENT_ID], idx[ENGINE_REPAIR_OCCURRED_AT],
                     idx[ENGINE_REPAIR_VERSION], res))
        return 0;
    res->er_event_ms = ev->ev_stamp.fs_time_ms;
    const char *target, *section_name, *item, *fields_text;
    size_t target_len, section_len, item_len, fields_len;
    avro_value_t op_field;
    int op_symbol;
    if (repair_str(engine, ev, ENGINE_REPAIR_VIEW, &target, &target_len) ||
        repair_str(engine, ev, ENGINE_REPAIR_KEY, &ev->ev_key, &ev->ev_key_len) ||
        repair_str(engine, ev, ENGINE_REPAIR_SECTION, &section_name, &section_len) ||
        repair_str(engine, ev, ENGINE_REPAIR_ITEM, &item, &item_len) ||
        repair_str(engine, ev, ENGINE_REPAIR_FIELDS, &fields_text, &fields_len) ||
        avro_dec_field(ev->ev_dec, (size_t)idx[ENGINE_REPAIR_OP], &op_field) ||
        avro_value_get_enum(&op_field, &op_symbol)) {
        reject(res, RM_EDECODE, "repair fields unreadable");
        return 0;
    }
    if (!target || strcmp(target, view->v_name) != 0) {
        reject(res, RM_EVALIDATE, "repair for another view");
        return 0;
    }
    if (!ev->ev_key || ev->ev_key_len == 0 || ev->ev_key_len > VIEW_KEY_MAX_BYTES ||
        memchr(ev->ev_key, '\0', ev->ev_key_len)) {
        reject(res, RM_EVALIDATE, "repair view key missing, too long or holding NUL");
        return 0;
    }
    int section = section_name ? view_section_index(view, section_name) : -1;
    static const view_op_kind_t kinds[] = {VIEW_OP_SET, VIEW_OP_UPSERT, VIEW_OP_DELETE};
    if (section < 0 || op_symbol < 0 || op_symbol > 2) {
        reject(res, RM_EVALIDATE, "repair names an unknown section or operation");
        return 0;
    }
    const view_section_t *sec = &view->v_sections[section];
    view_op_kind_t kind = kinds[op_symbol];
    bool list = sec->vs_kind == VIEW_LIST;
    if (list != (kind != VIEW_OP_SET) || (list && (!item || item_len == 0 ||
                                                   item_len > VIEW_KEY_MAX_BYTES ||
                                                   memchr(item, '\0', item_len)))) {
        reject(res, RM_EVALIDATE, "repair operation does not fit the section (SET for single, "
                                  "UPSERT/DELETE with an item id for lists)");
        return 0;
    }
    json_error_t jerr;
    json_t *fields = json_loadb(fields_text ? fields_text : "", fields_len, 0, &jerr);
    if (!json_is_object(fields)) {
        json_decref(fields);
        reject(res, RM_EVALIDATE, "repair fields_json is not a JSON object");
        return 0;
    }
    view_assign_t assigns[FRAG_MAX_SLOTS];
    engine_val_t vals[FRAG_MAX_SLOTS];
    view_op_t op = {.vo_kind = kind, .vo_section = section, .vo_assigns = assigns};
    int rc = repair_values(sec, fields, assigns, vals, &op.vo_assign_count, res);
    if (rc) {
        json_decref(fields);
        return 0;
    }
    ev->ev_repair_vals = vals;
    ev->ev_repair_item = list ? item : NULL;
    ev->ev_repair_item_len = list ? item_len : 0;
    MDB_val erased;
    rc = db_get(engine, txn, STORE_DB_ERASED, ev->ev_key, ev->ev_key_len, &erased);
    if (rc == 0) {
        res->er_outcome = ENGINE_ERASED; /* a repair must not resurrect an erased key */
        json_decref(fields);
        return 0;
    }
    char vkey[ENGINE_KEY_BYTES];
    size_t vlen = 0;
    const char *id = NULL;
    size_t id_len = 0;
    if (rc == RM_ENOTFOUND)
        rc = repair_str(engine, ev, ENGINE_REPAIR_EVENT_ID, &id, &id_len);
    if (!rc)
        rc = guard_check(engine, txn, ev, "repair", id, id_len, vkey, &vlen);
    if (rc == 1 || rc == RM_EVALIDATE) {
        res->er_outcome = ENGINE_STALE;
        json_decref(fields);
        return 0;
    }
    int64_t version = ev->ev_stamp.fs_version;
    if (!rc)
        rc = db_put(engine, txn, STORE_DB_DOC, vkey, vlen, &version, sizeof(version));
    if (!rc)
        rc = op_fragment(engine, txn, ev, &op, res);
    if (!rc && ev->ev_removed)
        rc = update_marks(engine, txn, ev);
    json_decref(fields);
    if (rc == RM_EVALIDATE)
        return RM_ESTORE;
    if (!rc)
        res->er_outcome = ENGINE_APPLIED;
    return rc;
}

/* Keeps a schema fetched from the registry in the store, in the transaction of the event
 * that used it (registry.h note 4): whatever that transaction made (a fragment, a parked
 * event) can then be decoded again after a restart with the registry down. */
static int keep_schema(engine_t *engine, MDB_txn *txn, const catalog_entry_t *writer)
{
    if (!writer->ce_json)
        return 0;
    for (size_t i = 0; i < engine->en_kept_count; i++)
        if (engine->en_kept[i] == writer->ce_id)
            return 0;
    char name[32];
    snprintf(name, sizeof(name), CATALOG_META_PREFIX "%d", (int)writer->ce_id);
    const void *data;
    size_t len;
    int rc = store_meta_get(engine->en_store, txn, name, &data, &len);
    if (rc == RM_ENOTFOUND)
        rc = store_meta_put(engine->en_store, txn, name, writer->ce_json, strlen(writer->ce_json));
    if (!rc && engine->en_kept_count < ENGINE_KEPT_IDS)
        engine->en_kept[engine->en_kept_count++] = writer->ce_id;
    return rc;
}

static int apply_msg(engine_t *engine, MDB_txn *txn, const engine_msg_t *msg,
                     engine_result_t *res)
{
    memset(res, 0, sizeof(*res));
    res->er_rule = -1;
    if (!msg->em_value)
        return apply_tombstone(engine, txn, msg, res);
    if (msg->em_value_len > engine->en_max_message_bytes) {
        reject(res, RM_EVALIDATE, "message larger than projector.max_message_bytes");
        return 0;
    }
    avro_dec_event_t dev;
    int rc = avro_dec_decode(engine->en_dec, msg->em_value, msg->em_value_len, &dev,
                             res->er_reason, sizeof(res->er_reason));
    if (rc) {
        res->er_outcome = ENGINE_REJECTED;
        res->er_error = rc;
        return 0;
    }
    rc = keep_schema(engine, txn, dev.ade_writer);
    if (rc)
        return rc;
    const view_t *view = engine->en_view;
    engine_ev_t ev = {.ev_msg = msg, .ev_dec = &dev, .ev_new_link = -1};
    for (size_t i = 0; i < view->v_rule_count && !ev.ev_rule; i++)
        if (view->v_rules[i].vr_reader == dev.ade_reader) {
            ev.ev_rule = &view->v_rules[i];
            res->er_rule = (int)i;
        }
    int topic = view_topic_index(view, msg->em_topic);
    ev.ev_prov.fp_topic = (uint16_t)(topic < 0 ? UINT16_MAX : topic);
    ev.ev_prov.fp_partition = msg->em_partition;
    ev.ev_prov.fp_offset = msg->em_offset;
    if (!ev.ev_rule && engine->en_repair_reader && dev.ade_reader == engine->en_repair_reader)
        return apply_repair(engine, txn, &ev, res);
    if (!ev.ev_rule && engine->en_handled_reader && dev.ade_reader == engine->en_handled_reader)
        return apply_handled(engine, &ev, txn, res);
    if (!ev.ev_rule) {
        res->er_outcome = ENGINE_NO_RULE;
        return 0;
    }
    if (read_meta(&ev, res))
        return 0;
    res->er_event_ms = ev.ev_stamp.fs_time_ms;

    const view_rule_t *rule = ev.ev_rule;
    if (rule->vr_via_link < 0) {
        if (eval_id(&ev, &rule->vr_key, &ev.ev_key, &ev.ev_key_len, res, "view key"))
            return 0;
    } else {
        const char *id;
        size_t id_len;
        if (eval_id(&ev, &rule->vr_via_id, &id, &id_len, res, "link id"))
            return 0;
        const char *link = view->v_links[rule->vr_via_link];
        rc = resolve_link(engine, txn, link, id, id_len, &ev);
        if (rc == RM_ENOTFOUND) {
            /* The version is checked when it is applied: the guard lives under the
             * view key, which is what the link will tell. */
            res->er_outcome = ENGINE_PARKED;
            rc = park(engine, txn, msg, link, id, id_len);
            if (rc == RM_EVALIDATE) {
                reject(res, RM_EVALIDATE, "link id too long to park");
                return 0;
            }
            return rc;
        }
        if (rc == ENGINE_LINK_ERASED) {
            res->er_outcome = ENGINE_ERASED;
            return 0;
        }
        if (rc)
            return rc;
    }
    MDB_val erased;
    rc = db_get(engine, txn, STORE_DB_ERASED, ev.ev_key, ev.ev_key_len, &erased);
    if (rc && rc != RM_ENOTFOUND)
        return rc;
    bool key_erased = rc == 0;
    if (validate_ops(&ev, res))
        return 0;
    if (!key_erased) {
        /* An erased key keeps no versions: its events only refresh "erased" markers,
         * which is idempotent, and whether they came before or after the erasure then
         * leaves the same store (convergence, note 2). */
        char vkey[ENGINE_KEY_BYTES];
        size_t vlen = 0;
        rc = check_version(engine, txn, &ev, vkey, &vlen, res);
        if (rc == RM_EVALIDATE)
            return 0;
        if (rc < 0)
            return rc;
        if (rc == 0 && (rc = version_put(engine, txn, &ev)))
            return rc;
    }
    bool stale = rc == 1;
    ev.ev_stale = stale;
    rc = run_ops(engine, txn, &ev, key_erased, stale, res);
    if (rc == RM_EVALIDATE)
        return RM_ESTORE; /* validate_ops vouched for every id: this is a bug, not poison */
    if (rc)
        return rc;
    res->er_outcome = key_erased ? ENGINE_ERASED : stale ? ENGINE_STALE : ENGINE_APPLIED;
    if (ev.ev_new_link >= 0) {
        /* Copy the link id: unparking decodes other events into the same values. */
        char id[VIEW_KEY_MAX_BYTES];
        size_t id_len = ev.ev_link_id_len;
        memcpy(id, ev.ev_link_id, id_len);
        rc = unpark(engine, txn, view->v_links[ev.ev_new_link], id, id_len, &res->er_unparked);
        /* Dead letters whose key waited for this link mark their entity now. */
        if (!rc)
            rc = degraded_link_learned(view, engine->en_store, txn, view->v_links[ev.ev_new_link],
                                       id, id_len);
    }
    return rc;
}

int engine_apply(engine_t *engine, MDB_txn *txn, const engine_msg_t *msg,
                 engine_result_t *ret_result)
{
    return apply_msg(engine, txn, msg, ret_result);
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
