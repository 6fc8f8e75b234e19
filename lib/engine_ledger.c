/* engine_ledger: the view's erasure ledger (erasures.h) — appending this store's
 * erasures, exporting those of a store that predates it, importing those of others. */
#include "engine_int.h"

#include <string.h>

/* ---- the erasure ledger (erasures.h) ---- */

#define ENGINE_LEDGER_META "erasures_at" /* ledger offset this store has applied up to */
#define ENGINE_LEDGER_BATCH 1024 /* keys per append when a store exports its own */

/* Appends the keys this txn erased, durably, before the txn commits: a crash between
 * the two leaves the ledger ahead of the store, which only erases early what the log
 * is about to erase anyway (an erasure is final, note 4). */
int engine_ledger_append(engine_t *engine)
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
    return rc ? rc : engine_ledger_append(engine);
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
    return engine_op_erase(ei->ei_engine, ei->ei_txn, &ev);
}

/* Erases, in txn, the keys the ledger recorded after this store last looked. */
int engine_ledger_import(engine_t *engine, MDB_txn *txn)
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
