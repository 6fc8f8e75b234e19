/* engine: the generic view engine — decode, route, guard, apply, park.
 *
 * This file holds the engine's life cycle, its transaction hooks and the apply path (decode,
 * route to a view key, version guard, dispatch of the operations). The operations live in
 * engine_ops.c, engine_list.c and engine_link.c, expressions in engine_eval.c, parking in
 * engine_park.c, the erasure ledger in engine_ledger.c, tombstones and repairs in
 * engine_control.c; engine_int.h is what they share.
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
#include "engine_int.h"
#include "degraded.h"
#include "topic_counts.h"

#include <string.h>

#define ENGINE_VERSION_SECTION "\xff" /* sorts after every section name (view.c allows no 0xff) */
#define ENGINE_REPAIR_RECORD "readmodel.Repair"
#define ENGINE_HANDLED_RECORD "readmodel.DeadLetterHandled"

const char *engine_outcome_name(engine_outcome_t outcome)
{
    static const char *const names[ENGINE__OUTCOMES] = {"applied", "stale",     "no_rule", "parked",
                                                        "erased",  "tombstone", "rejected"};
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
    const catalog_entry_t *repair =
        view->v_repair_topic ? catalog_latest(catalog, ENGINE_REPAIR_RECORD) : NULL;
    static const char *const names[ENGINE_REPAIR__FIELDS] = {"view_key", "section",     "op",
                                                             "item_id",  "fields_json", "view",
                                                             "event_id", "occurred_at", "version"};
    for (size_t i = 0; repair && i < ENGINE_REPAIR__FIELDS; i++) {
        engine->en_repair_fields[i] =
            avro_schema_record_field_get_index(repair->ce_schema, names[i]);
        if (engine->en_repair_fields[i] < 0)
            repair = NULL; /* not the record we know: its messages count as no_rule */
    }
    engine->en_repair_reader = repair;
    const catalog_entry_t *handled =
        view->v_repair_topic ? catalog_latest(catalog, ENGINE_HANDLED_RECORD) : NULL;
    static const char *const hnames[4] = {"view", "topic", "partition", "offset"};
    for (size_t i = 0; handled && i < 4; i++) {
        engine->en_handled_fields[i] =
            avro_schema_record_field_get_index(handled->ce_schema, hnames[i]);
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
        rc = engine_pending_upgrade(engine, txn);
    if (!rc)
        rc = topic_counts_init(engine->en_store, txn); /* after the upgrade: format 2 only */
    return rc || !engine->en_erasures ? rc : engine_ledger_import(engine, txn);
}

int engine_txn_precommit(engine_t *engine, MDB_txn *txn)
{
    int rc = engine_ledger_append(engine);
    if (rc)
        return rc;
    if (!engine->en_pending_seq_dirty)
        return 0;
    engine->en_pending_seq_dirty = false;
    return store_meta_put_i64(engine->en_store, txn, "pending_seq", engine->en_pending_seq);
}

/* ---- the apply path ---- */

/* Reads event_id, occurred_at and version (at those reader indexes) into the stamp. */
int engine_read_meta_at(engine_ev_t *ev, int id_index, int time_index, int version_index,
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
    return engine_read_meta_at(ev, rule->vr_event_id_index, rule->vr_occurred_at_index,
                               rule->vr_version_index, res);
}

/* Version guard: returns 1 if the event is stale, 0 if new (and fills vkey with the
 * guard's key). The guard lives in `doc` under the view key ("key \0 \xff \0 type \0
 * id"), next to the fragments the event changes: one dirty page fewer per event than
 * a separate table keyed by entity (measured on a 543k-event backlog: 49k -> 57k events/s), and
 * erasure removes it with the rest of the key. */
int engine_guard_check(engine_t *engine, MDB_txn *txn, engine_ev_t *ev, const char *type,
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
     * needs the shares too: its contribution may still count (engine_op_contribute). */
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
    if (engine_eval_id(ev, &ev->ev_rule->vr_entity_id, &id, &id_len, res, "entity id"))
        return RM_EVALIDATE;
    return engine_guard_check(engine, txn, ev, ev->ev_rule->vr_entity_type, id, id_len, vkey,
                              ret_vlen);
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
            if (engine_eval_id(ev, &op->vo_item, &id, &id_len, res, "item id"))
                return RM_EVALIDATE;
        } else if (op->vo_kind == VIEW_OP_LINK) {
            if (engine_eval_id(ev, &op->vo_link_id, &id, &id_len, res, "link id"))
                return RM_EVALIDATE;
        }
    }
    return 0;
}

/* stale: the entity already applied a newer version (note 9): only the operations whose
 * effect does not depend on the order of versions run — links (last claim wins by
 * stamp), erasure (final), shares older than the event's version (engine_op_contribute) and
 * upserts into ghosts (engine_list_write). */
static int run_ops(engine_t *engine, MDB_txn *txn, engine_ev_t *ev, bool key_erased, bool stale,
                   engine_result_t *res)
{
    const view_rule_t *rule = ev->ev_rule;
    for (size_t i = 0; i < rule->vr_op_count; i++) {
        const view_op_t *op = &rule->vr_ops[i];
        int rc = 0;
        if (op->vo_kind == VIEW_OP_LINK)
            rc = engine_op_link(engine, txn, ev, op, key_erased, res);
        else if (key_erased || ev->ev_erased ||
                 (stale && op->vo_kind != VIEW_OP_ERASE && op->vo_kind != VIEW_OP_UPSERT &&
                  op->vo_kind != VIEW_OP_CONTRIBUTE))
            continue;
        else if (op->vo_kind == VIEW_OP_ERASE)
            rc = engine_op_erase(engine, txn, ev);
        else if (op->vo_kind == VIEW_OP_INCR || op->vo_kind == VIEW_OP_DECR)
            rc = engine_op_counter(engine, txn, ev, op);
        else if (op->vo_kind == VIEW_OP_CONTRIBUTE)
            rc = engine_op_contribute(engine, txn, ev, op);
        else
            rc = engine_op_fragment(engine, txn, ev, op, res);
        if (rc)
            return rc;
    }
    if (key_erased || ev->ev_erased || !ev->ev_removed)
        return 0;
    return engine_update_marks(engine, txn, ev);
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
        avro_dec_field(ev->ev_dec, (size_t)idx[2], &field) ||
        avro_value_get_int(&field, &partition) ||
        avro_dec_field(ev->ev_dec, (size_t)idx[3], &field) ||
        avro_value_get_long(&field, &offset)) {
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
int engine_resolve_link(engine_t *engine, MDB_txn *txn, const char *link, const char *id,
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

/* Finds the view key of ev: the rule's key, or through the rule's link. Sets *ret_routed
 * false when the event goes no further (rejected, parked or erased: res says which). */
static int route_key(engine_t *engine, MDB_txn *txn, engine_ev_t *ev, engine_result_t *res,
                     bool *ret_routed)
{
    const view_rule_t *rule = ev->ev_rule;
    *ret_routed = false;
    if (rule->vr_via_link < 0) {
        if (engine_eval_id(ev, &rule->vr_key, &ev->ev_key, &ev->ev_key_len, res, "view key"))
            return 0;
    } else {
        const char *id;
        size_t id_len;
        if (engine_eval_id(ev, &rule->vr_via_id, &id, &id_len, res, "link id"))
            return 0;
        const char *link = engine->en_view->v_links[rule->vr_via_link];
        int rc = engine_resolve_link(engine, txn, link, id, id_len, ev);
        if (rc == RM_ENOTFOUND) {
            /* The version is checked when it is applied: the guard lives under the
             * view key, which is what the link will tell. */
            res->er_outcome = ENGINE_PARKED;
            rc = engine_park(engine, txn, ev->ev_msg, link, id, id_len);
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
    *ret_routed = true;
    return 0;
}

/* Decodes msg into ev->ev_dec (which the caller points at its avro_dec_event_t) and finds
 * its rule (ev_rule, res->er_rule; none: NULL) and provenance. Returns 0, or the decode
 * error with res REJECTED (RM_EUNAVAIL included: the pipeline tells it apart). */
static int decode_event(engine_t *engine, const engine_msg_t *msg, engine_ev_t *ev,
                        engine_result_t *res)
{
    avro_dec_event_t *dev = (avro_dec_event_t *)ev->ev_dec;
    int rc = avro_dec_decode(engine->en_dec, msg->em_value, msg->em_value_len, dev, res->er_reason,
                             sizeof(res->er_reason));
    if (rc) {
        res->er_outcome = ENGINE_REJECTED;
        res->er_error = rc;
        return rc;
    }
    const view_t *view = engine->en_view;
    for (size_t i = 0; i < view->v_rule_count && !ev->ev_rule; i++)
        if (view->v_rules[i].vr_reader == dev->ade_reader) {
            ev->ev_rule = &view->v_rules[i];
            res->er_rule = (int)i;
        }
    int topic = view_topic_index(view, msg->em_topic);
    ev->ev_prov.fp_topic = (uint16_t)(topic < 0 ? UINT16_MAX : topic);
    ev->ev_prov.fp_partition = msg->em_partition;
    ev->ev_prov.fp_offset = msg->em_offset;
    return 0;
}

int engine_apply_msg(engine_t *engine, MDB_txn *txn, const engine_msg_t *msg, engine_result_t *res)
{
    memset(res, 0, sizeof(*res));
    res->er_rule = -1;
    if (!msg->em_value)
        return engine_apply_tombstone(engine, txn, msg, res);
    if (msg->em_value_len > engine->en_max_message_bytes) {
        reject(res, RM_EVALIDATE, "message larger than projector.max_message_bytes");
        return 0;
    }
    avro_dec_event_t dev = {0}; /* filled by decode_event (cppcheck cannot follow ev_dec) */
    engine_ev_t ev = {.ev_msg = msg, .ev_dec = &dev, .ev_new_link = -1};
    int rc = decode_event(engine, msg, &ev, res);
    if (rc)
        return 0;
    rc = keep_schema(engine, txn, dev.ade_writer);
    if (rc)
        return rc;
    const view_t *view = engine->en_view;
    if (!ev.ev_rule && engine->en_repair_reader && dev.ade_reader == engine->en_repair_reader)
        return engine_apply_repair(engine, txn, &ev, res);
    if (!ev.ev_rule && engine->en_handled_reader && dev.ade_reader == engine->en_handled_reader)
        return apply_handled(engine, &ev, txn, res);
    if (!ev.ev_rule) {
        res->er_outcome = ENGINE_NO_RULE;
        return 0;
    }
    if (read_meta(&ev, res))
        return 0;
    res->er_event_ms = ev.ev_stamp.fs_time_ms;

    bool routed;
    rc = route_key(engine, txn, &ev, res, &routed);
    if (rc || !routed)
        return rc;
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
        if (rc == 0 && (rc = engine_version_put(engine, txn, &ev)))
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
        rc = engine_unpark(engine, txn, view->v_links[ev.ev_new_link], id, id_len,
                           &res->er_unparked);
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
    return engine_apply_msg(engine, txn, msg, ret_result);
}

/* FNV-1a, 64 bits, over the link name, a NUL and the id: which link a rule claims. */
static uint64_t link_hash(const char *link, const char *id, size_t id_len)
{
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0, n = strlen(link) + 1; i < n; i++)
        h = (h ^ (unsigned char)link[i]) * 1099511628211ull;
    for (size_t i = 0; i < id_len; i++)
        h = (h ^ (unsigned char)id[i]) * 1099511628211ull;
    return h;
}

/* The rule's checks that engine_apply makes before it writes (meta, ids, route), without
 * parking: the kind of key (engine_key_kind_t), filling key's flags and, for VIEW and
 * PARKS, key->ek_key. *ret_rc: a store error, else 0. */
static engine_key_kind_t key_of_rule(engine_t *engine, MDB_txn *txn, engine_ev_t *ev,
                                     engine_result_t *res, engine_key_t *key, int *ret_rc)
{
    const view_rule_t *rule = ev->ev_rule;
    const char *id;
    size_t id_len;
    *ret_rc = 0;
    if (read_meta(ev, res) || validate_ops(ev, res) ||
        engine_eval_id(ev, &rule->vr_entity_id, &id, &id_len, res, "entity id"))
        return ENGINE_KEY_UNKNOWN;
    for (size_t i = 0; i < rule->vr_op_count; i++) {
        const view_op_t *op = &rule->vr_ops[i];
        if (op->vo_kind == VIEW_OP_ERASE || (op->vo_kind == VIEW_OP_LINK && key->ek_learns))
            return ENGINE_KEY_UNKNOWN; /* an erasure writes links of other keys; two claims */
        if (op->vo_kind == VIEW_OP_LINK) {
            if (engine_eval_id(ev, &op->vo_link_id, &id, &id_len, res, "link id"))
                return ENGINE_KEY_UNKNOWN;
            key->ek_learns = true;
            key->ek_link_hash = link_hash(engine->en_view->v_links[op->vo_link], id, id_len);
        }
    }
    if (rule->vr_via_link < 0) {
        if (engine_eval_id(ev, &rule->vr_key, &ev->ev_key, &ev->ev_key_len, res, "view key"))
            return ENGINE_KEY_UNKNOWN;
    } else {
        if (engine_eval_id(ev, &rule->vr_via_id, &id, &id_len, res, "link id"))
            return ENGINE_KEY_UNKNOWN;
        key->ek_via_link = true;
        const char *link = engine->en_view->v_links[rule->vr_via_link];
        int rc = engine_resolve_link(engine, txn, link, id, id_len, ev);
        if (rc == ENGINE_LINK_ERASED)
            return ENGINE_KEY_NONE; /* dropped as erased: writes nothing */
        if (rc == RM_ENOTFOUND) {
            ev->ev_key_len = join_key(ev->ev_key_buf, link, strlen(link), id, id_len);
            if (!ev->ev_key_len || ev->ev_key_len > sizeof(key->ek_key))
                return ENGINE_KEY_UNKNOWN;
            ev->ev_key = ev->ev_key_buf;
            memcpy(key->ek_key, ev->ev_key, ev->ev_key_len);
            key->ek_key_len = ev->ev_key_len;
            return ENGINE_KEY_PARKS;
        }
        if (rc) {
            *ret_rc = rc;
            return ENGINE_KEY_UNKNOWN;
        }
    }
    if (ev->ev_key_len > sizeof(key->ek_key))
        return ENGINE_KEY_UNKNOWN;
    memcpy(key->ek_key, ev->ev_key, ev->ev_key_len);
    key->ek_key_len = ev->ev_key_len;
    return ENGINE_KEY_VIEW;
}

int engine_view_key(engine_t *engine, MDB_txn *txn, const engine_msg_t *msg, engine_key_t *ret_key,
                    char *reason, size_t reasonlen)
{
    engine_key_t key = {.ek_kind = ENGINE_KEY_UNKNOWN};
    engine_result_t res = {.er_rule = -1};
    const view_t *view = engine->en_view;
    if (!msg->em_value) {
        /* A tombstone with a rule erases a key or deletes through a link: kept in order. */
        int topic = view_topic_index(view, msg->em_topic);
        if (topic < 0 || !view->v_tombstones ||
            view->v_tombstones[topic].vt_kind == VIEW_TOMB_IGNORE)
            key.ek_kind = ENGINE_KEY_NONE;
        *ret_key = key;
        return 0;
    }
    if (msg->em_value_len > engine->en_max_message_bytes) {
        *ret_key = key;
        return 0;
    }
    avro_dec_event_t dev = {0}; /* as in engine_apply_msg */
    engine_ev_t ev = {.ev_msg = msg, .ev_dec = &dev, .ev_new_link = -1};
    int rc = decode_event(engine, msg, &ev, &res);
    if (rc == RM_EUNAVAIL) {
        snprintf(reason, reasonlen, "%s", res.er_reason);
        return rc;
    }
    if (!rc && ev.ev_rule) {
        key.ek_kind = key_of_rule(engine, txn, &ev, &res, &key, &rc);
        if (rc)
            return rc; /* a store error */
    } else if (!rc && dev.ade_reader != engine->en_repair_reader &&
               dev.ade_reader != engine->en_handled_reader) {
        key.ek_kind = ENGINE_KEY_NONE; /* no rule: counted and skipped */
    }
    *ret_key = key;
    return 0;
}
