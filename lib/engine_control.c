/* engine_control: records that are not events of a rule — tombstones (null values)
 * and reconcile's repairs. jansson is needed here only. */
#include "engine_int.h"

#include <jansson.h>
#include <string.h>

/* ---- tombstones (`tombstones:` in the view definition) ---- */

/* A null-value record: what the view definition declares for its topic. Erase: the key is
 * a view key, erased like an erase op (final: later events are dropped). Delete: the key
 * is an item id of a list section whose view key the link knows; counters are left as they
 * are (the events that counted did happen). While the link does not know the item, the
 * tombstone is parked for it. Without a rule it is counted and skipped. */
int engine_apply_tombstone(engine_t *engine, MDB_txn *txn, const engine_msg_t *msg,
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
    ev.ev_prov =
        (frag_prov_t){msg->em_timestamp_ms, msg->em_offset, msg->em_partition, (uint16_t)topic};
    res->er_event_ms = msg->em_timestamp_ms;
    int rc;
    if (tomb->vt_kind == VIEW_TOMB_ERASE) {
        memcpy(ev.ev_key_buf, msg->em_key, msg->em_key_len);
        ev.ev_key = ev.ev_key_buf;
        ev.ev_key_len = msg->em_key_len;
    } else {
        const char *link = view->v_links[tomb->vt_link];
        rc = engine_resolve_link(engine, txn, link, msg->em_key, msg->em_key_len, &ev);
        if (rc == RM_ENOTFOUND) {
            /* Not projected yet, or never: the tombstone need not share its item's
             * partition (another partitioner, partitions added), so it may come first.
             * It waits for the link like an event (unparked by the event that teaches
             * it); its stamp then keeps every older write of the item out. */
            rc = engine_park(engine, txn, msg, link, msg->em_key, msg->em_key_len);
            if (!rc)
                res->er_outcome = ENGINE_PARKED;
            return rc == RM_EVALIDATE ? 0 : rc;
        }
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
        rc = engine_op_erase(engine, txn, &ev);
    } else {
        view_op_t op = {.vo_kind = VIEW_OP_DELETE, .vo_section = tomb->vt_section};
        ev.ev_repair_item = msg->em_key;
        ev.ev_repair_item_len = msg->em_key_len;
        rc = engine_op_fragment(engine, txn, &ev, &op, res);
        if (!rc && ev.ev_removed)
            rc = engine_update_marks(engine, txn, &ev);
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
    json_object_foreach(fields, name, value)
    {
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
int engine_apply_repair(engine_t *engine, MDB_txn *txn, engine_ev_t *ev, engine_result_t *res)
{
    const view_t *view = engine->en_view;
    const int *idx = engine->en_repair_fields;
    if (engine_read_meta_at(ev, idx[ENGINE_REPAIR_EVENT_ID], idx[ENGINE_REPAIR_OCCURRED_AT],
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
    if (list != (kind != VIEW_OP_SET) ||
        (list && (!item || item_len == 0 || item_len > VIEW_KEY_MAX_BYTES ||
                  memchr(item, '\0', item_len)))) {
        reject(res, RM_EVALIDATE,
               "repair operation does not fit the section (SET for single, "
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
        rc = engine_guard_check(engine, txn, ev, "repair", id, id_len, vkey, &vlen);
    if (rc == 1 || rc == RM_EVALIDATE) {
        res->er_outcome = ENGINE_STALE;
        json_decref(fields);
        return 0;
    }
    int64_t version = ev->ev_stamp.fs_version;
    if (!rc)
        rc = db_put(engine, txn, STORE_DB_DOC, vkey, vlen, &version, sizeof(version));
    if (!rc)
        rc = engine_op_fragment(engine, txn, ev, &op, res);
    if (!rc && ev->ev_removed)
        rc = engine_update_marks(engine, txn, ev);
    json_decref(fields);
    if (rc == RM_EVALIDATE)
        return RM_ESTORE;
    if (!rc)
        res->er_outcome = ENGINE_APPLIED;
    return rc;
}
