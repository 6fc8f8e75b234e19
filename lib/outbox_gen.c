/* outbox_gen: an outbox taking over from a previous store generation (outbox.h note 6). */
#include "outbox_int.h"
#include "log.h"
#include "topic_counts.h"

#include <errno.h>
#include <unistd.h>

/* Whether this store's outbox may have published ("outbox_live", set by the first flush
 * that finds entries, before it produces any). */
int outbox_is_live(store_t *store, MDB_txn *txn, bool *ret_live)
{
    int64_t live = 0;
    int rc = store_meta_get_i64(store, txn, "outbox_live", &live);
    if (rc && rc != RM_ENOTFOUND)
        return rc;
    *ret_live = rc == 0 && live;
    return 0;
}

int outbox_mark_live(outbox_t *outbox)
{
    MDB_txn *txn;
    int rc = store_write_begin(outbox->ob_store, &txn);
    bool live = false;
    if (!rc)
        rc = outbox_is_live(outbox->ob_store, txn, &live);
    if (!rc && live) {
        store_write_abort(txn);
        outbox->ob_live = true;
        return 0;
    }
    if (!rc)
        rc = store_meta_put_i64(outbox->ob_store, txn, "outbox_live", 1);
    if (rc) {
        store_write_abort(txn);
        return rc;
    }
    rc = store_write_commit(outbox->ob_store, txn);
    outbox->ob_live = rc == 0;
    return rc;
}

/* A rebuild adopted `previous` before its switch and named it in "outbox_replaces"; the
 * daemon finishes that takeover at the switch. If it died first and now starts on the
 * new generation, recovery finishes it here from the generation's directory. */
int outbox_finish_takeover(outbox_t *outbox)
{
    MDB_txn *txn;
    int rc = store_read_begin(outbox->ob_store, &txn);
    if (rc)
        return rc;
    const void *data;
    size_t len = 0;
    char dir[4096] = "";
    bool live = false;
    rc = outbox_is_live(outbox->ob_store, txn, &live);
    int grc = rc ? rc : store_meta_get(outbox->ob_store, txn, "outbox_replaces", &data, &len);
    if (grc == 0 && len > 0 && len < sizeof(dir)) {
        memcpy(dir, data, len);
        dir[len] = '\0';
    }
    store_read_end(txn);
    if (rc || live || !dir[0])
        return rc;
    char err[512], data_path[4200];
    snprintf(data_path, sizeof(data_path), "%s/data.mdb", dir);
    if (access(data_path, F_OK) != 0 && errno == ENOENT) {
        /* Deleted since (gen_prune): nothing is left to take over. This store keeps
         * its own replica id, so none of its letters can be taken for one of that
         * generation's; what that generation had not published is gone with it. */
        MDB_txn *wtxn;
        rc = store_write_begin(outbox->ob_store, &wtxn);
        if (rc)
            return rc;
        rc = store_meta_put(outbox->ob_store, wtxn, "outbox_replaces", "", 0);
        if (rc) {
            store_write_abort(wtxn);
            return rc;
        }
        return store_write_commit(outbox->ob_store, wtxn);
    }
    store_opts_t sopts = {.so_dir = dir, .so_readonly = true};
    store_t *previous = store_open(&sopts, err, sizeof(err));
    if (!previous)
        return RM_ESTORE; /* recovery fails and is retried; nothing is published meanwhile */
    rc = outbox_adopt(outbox, previous, false);
    store_close(previous);
    return rc;
}

typedef struct adopt_ctx {
    outbox_t *ac_outbox;
    MDB_txn *ac_txn;
} adopt_ctx_t;

static int remember_seen(void *ctx, const char *topic, int32_t partition,
                         const store_offset_t *offset)
{
    adopt_ctx_t *ac = ctx;
    char name[300];
    int64_t have = 0;
    seen_name(name, sizeof(name), topic, partition);
    int rc = store_meta_get_i64(ac->ac_outbox->ob_store, ac->ac_txn, name, &have);
    if (rc && rc != RM_ENOTFOUND)
        return rc;
    if (rc == 0 && have >= offset->so_next_offset)
        return 0;
    return store_meta_put_i64(ac->ac_outbox->ob_store, ac->ac_txn, name, offset->so_next_offset);
}

/* An entry copied out of a txn (its bytes must outlive the txn's changes). */
typedef struct held_entry {
    int64_t he_seq;
    unsigned char *he_bytes;
    size_t he_len; /* header and variable parts, without a txn id */
} held_entry_t;

typedef struct held_list {
    held_entry_t *hl_entries;
    size_t hl_count;
    size_t hl_cap;
} held_list_t;

static int held_add(held_list_t *list, const outbox_entry_t *e, const void *bytes)
{
    if (list->hl_count == list->hl_cap) {
        size_t cap = list->hl_cap ? list->hl_cap * 2 : 64;
        held_entry_t *grown = realloc(list->hl_entries, cap * sizeof(*grown));
        if (!grown)
            return RM_ENOMEM;
        list->hl_entries = grown;
        list->hl_cap = cap;
    }
    held_entry_t *he = &list->hl_entries[list->hl_count];
    he->he_bytes = malloc(e->oe_body_len);
    if (!he->he_bytes)
        return RM_ENOMEM;
    memcpy(he->he_bytes, bytes, e->oe_body_len);
    he->he_seq = e->oe_seq;
    he->he_len = e->oe_body_len;
    list->hl_count++;
    return 0;
}

static void held_free(held_list_t *list)
{
    for (size_t i = 0; i < list->hl_count; i++)
        free(list->hl_entries[i].he_bytes);
    free(list->hl_entries);
}

/* Writes an entry under seq in txn, stamped with txn's id (its durability is txn's). */
static int put_entry(outbox_t *outbox, MDB_txn *txn, int64_t seq, const unsigned char *bytes,
                     size_t len, uint8_t add_flags)
{
    unsigned char key[8];
    store_be64(key, (uint64_t)seq);
    MDB_val k = {sizeof(key), key}, v = {len + 8, NULL};
    int rc = mdb_put(txn, store_dbi(outbox->ob_store, STORE_DB_OUTBOX), &k, &v, MDB_RESERVE);
    if (rc)
        return rm_err_from_mdb(rc);
    outbox_hdr_t hdr;
    memcpy(&hdr, bytes, sizeof(hdr));
    hdr.oh_flags |= (uint8_t)(OUTBOX_F_TXNID | add_flags);
    memcpy(v.mv_data, &hdr, sizeof(hdr));
    memcpy((unsigned char *)v.mv_data + sizeof(hdr), bytes + sizeof(hdr), len - sizeof(hdr));
    store_be64((unsigned char *)v.mv_data + len, (uint64_t)mdb_txn_id(txn));
    return 0;
}

/* This store's own entries (not adopted ones): those for offsets `previous` consumed
 * are dropped (it recorded the same letters); the rest are kept in ret_own. */
static int sort_own(outbox_t *outbox, MDB_txn *wtxn, store_t *previous, MDB_txn *rtxn,
                    held_list_t *ret_own, size_t *ret_dropped)
{
    MDB_dbi dbi = store_dbi(outbox->ob_store, STORE_DB_OUTBOX);
    MDB_cursor *cur = NULL;
    int rc = rm_err_from_mdb(mdb_cursor_open(wtxn, dbi, &cur));
    seq_list_t dropped = {0};
    MDB_val k, v;
    int mrc = rc ? MDB_NOTFOUND : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    for (; !rc && mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        outbox_entry_t e;
        char topic[256];
        store_offset_t seen;
        if (entry_decode(&k, &v, &e) || e.oe_hdr.oh_topic_len >= sizeof(topic) ||
            (e.oe_hdr.oh_flags & OUTBOX_F_ADOPTED))
            continue;
        memcpy(topic, e.oe_topic, e.oe_hdr.oh_topic_len);
        topic[e.oe_hdr.oh_topic_len] = '\0';
        if (store_offset_get(previous, rtxn, topic, e.oe_hdr.oh_partition, &seen) == 0 &&
            e.oe_hdr.oh_offset < seen.so_next_offset)
            rc = seq_list_add(&dropped, e.oe_seq);
        else
            rc = held_add(ret_own, &e, v.mv_data);
    }
    if (cur)
        mdb_cursor_close(cur);
    if (!rc && mrc && mrc != MDB_NOTFOUND)
        rc = rm_err_from_mdb(mrc);
    for (size_t i = 0; !rc && i < dropped.sl_count; i++) {
        unsigned char key[8];
        store_be64(key, (uint64_t)dropped.sl_seqs[i]);
        MDB_val dk = {sizeof(key), key};
        rc = rm_err_from_mdb(mdb_del(wtxn, dbi, &dk, NULL));
    }
    *ret_dropped = dropped.sl_count;
    free(dropped.sl_seqs);
    return rc;
}

/* Moves this store's own entries after every sequence the lineage has used: a store
 * that never published numbered them on its own, so they may repeat sequences that
 * `previous` published (and recovery would take them for published). */
static int renumber_own(outbox_t *outbox, MDB_txn *wtxn, const held_list_t *own, int64_t *seq)
{
    MDB_dbi dbi = store_dbi(outbox->ob_store, STORE_DB_OUTBOX);
    int rc = 0;
    for (size_t i = 0; !rc && i < own->hl_count; i++) {
        unsigned char key[8];
        store_be64(key, (uint64_t)own->hl_entries[i].he_seq);
        MDB_val dk = {sizeof(key), key};
        rc = rm_err_from_mdb(mdb_del(wtxn, dbi, &dk, NULL));
    }
    for (size_t i = 0; !rc && i < own->hl_count; i++)
        rc = put_entry(outbox, wtxn, ++*seq, own->hl_entries[i].he_bytes, own->hl_entries[i].he_len,
                       0);
    return rc;
}

/* Copies every entry `previous` holds, under its own sequence, marked adopted. */
static int copy_previous(outbox_t *outbox, MDB_txn *wtxn, store_t *previous, MDB_txn *rtxn,
                         int64_t *ret_max_seq)
{
    MDB_cursor *cur = NULL;
    int rc = rm_err_from_mdb(mdb_cursor_open(rtxn, store_dbi(previous, STORE_DB_OUTBOX), &cur));
    MDB_val k, v;
    int mrc = rc ? MDB_NOTFOUND : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    for (; !rc && mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        outbox_entry_t e;
        if (entry_decode(&k, &v, &e))
            continue;
        rc = put_entry(outbox, wtxn, e.oe_seq, v.mv_data, e.oe_body_len, OUTBOX_F_ADOPTED);
        if (e.oe_seq > *ret_max_seq)
            *ret_max_seq = e.oe_seq;
    }
    if (cur)
        mdb_cursor_close(cur);
    if (!rc && mrc && mrc != MDB_NOTFOUND)
        rc = rm_err_from_mdb(mrc);
    return rc;
}

static int adopt_in(outbox_t *outbox, MDB_txn *wtxn, store_t *previous, MDB_txn *rtxn,
                    bool before_switch, size_t *ret_dropped)
{
    store_t *store = outbox->ob_store;
    held_list_t own = {0};
    int64_t old_seq = 0, new_seq = 0;
    bool live = false;
    int rc = outbox_is_live(store, wtxn, &live);
    if (!rc) {
        int grc = store_meta_get_i64(previous, rtxn, "outbox_seq", &old_seq);
        rc = grc == RM_ENOTFOUND ? 0 : grc;
    }
    if (!rc) {
        int grc = store_meta_get_i64(store, wtxn, "outbox_seq", &new_seq);
        rc = grc == RM_ENOTFOUND ? 0 : grc;
    }
    if (!rc)
        rc = sort_own(outbox, wtxn, previous, rtxn, &own, ret_dropped);
    /* Sequences continue after the previous generation's (note 2). */
    int64_t seq = old_seq > new_seq ? old_seq : new_seq;
    if (!rc && !before_switch) {
        int64_t copied_max = 0;
        if (!live)
            rc = renumber_own(outbox, wtxn, &own, &seq);
        if (!rc)
            rc = copy_previous(outbox, wtxn, previous, rtxn, &copied_max);
        if (copied_max > seq)
            seq = copied_max;
    }
    held_free(&own);
    if (!rc)
        rc = store_meta_put_i64(store, wtxn, "outbox_seq", seq);
    /* From now on, letters below the previous generation's offsets are not recorded
     * again: that generation consumed those messages and dead-lettered the poison. */
    if (!rc)
        rc = store_offset_foreach(previous, rtxn, remember_seen, &(adopt_ctx_t){outbox, wtxn});
    const void *data;
    size_t len;
    if (!rc && !before_switch && !live &&
        store_meta_get(previous, rtxn, "outbox_replica", &data, &len) == 0 &&
        len == sizeof(outbox->ob_replica) - 1) {
        /* One lineage, one replica id (note 3). */
        rc = store_meta_put(store, wtxn, "outbox_replica", data, len);
        if (!rc) {
            memcpy(outbox->ob_replica, data, len);
            outbox->ob_replica[len] = '\0';
        }
    }
    /* Entries were dropped, renumbered and copied wholesale: count them again. */
    if (!rc)
        rc = topic_counts_recount_dead_letters(store, wtxn);
    const char *replaces = before_switch ? store_dir(previous) : "";
    if (!rc)
        rc = store_meta_put(store, wtxn, "outbox_replaces", replaces, strlen(replaces));
    return rc;
}

int outbox_adopt(outbox_t *outbox, store_t *previous, bool before_switch)
{
    MDB_txn *rtxn, *wtxn;
    char replica[sizeof(outbox->ob_replica)];
    memcpy(replica, outbox->ob_replica, sizeof(replica));
    int rc = store_read_begin(previous, &rtxn);
    if (rc)
        return rc;
    rc = store_write_begin(outbox->ob_store, &wtxn);
    if (rc) {
        store_read_end(rtxn);
        return rc;
    }
    size_t dropped = 0;
    rc = adopt_in(outbox, wtxn, previous, rtxn, before_switch, &dropped);
    store_read_end(rtxn);
    if (rc)
        store_write_abort(wtxn);
    else
        rc = store_write_commit(outbox->ob_store, wtxn);
    if (rc) {
        memcpy(outbox->ob_replica, replica, sizeof(replica)); /* nothing changed */
        return rc;
    }
    MDB_txn *txn;
    MDB_stat st = {0};
    if (store_read_begin(outbox->ob_store, &txn) == 0) {
        mdb_stat(txn, store_dbi(outbox->ob_store, STORE_DB_OUTBOX), &st);
        store_read_end(txn);
    }
    outbox->ob_stats.os_pending = st.ms_entries;
    outbox->ob_unflushed = st.ms_entries > 0;
    if (dropped)
        log_info("dead letters already recorded by the previous generation dropped",
                 LOG_I("dropped", dropped));
    return 0;
}
