/* topic_counts: per-topic counters of parked events and dead letters (see topic_counts.h). */
#include "topic_counts.h"
#include "outbox.h"
#include "rm_err.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOPIC_COUNTS_PREFIX "topic_counts/"
#define TOPIC_COUNTS_FORMAT_META "topic_counts_format"
#define TOPIC_COUNTS_FORMAT 1
#define TOPIC_COUNTS_TOPIC_MAX 255 /* the longest Kafka topic name is 249 bytes */

/* Where a parked value (engine.c, park(): format 2) keeps its topic: u8 kind | i64
 * parked_at_ms | i32 partition | i64 offset | i64 timestamp | u16 topic_len | topic |
 * u32 key_len | key | value. Read here so the count does not depend on engine internals;
 * it accepts exactly what the engine's parked_decode accepts (note 3). */
#define TOPIC_COUNTS_PARKED_KIND_EVENT 1
#define TOPIC_COUNTS_PARKED_KIND_TOMBSTONE 2
#define TOPIC_COUNTS_PARKED_TOPIC_LEN_AT 29
static bool parked_topic(const MDB_val *v, const char **ret_topic, size_t *ret_len)
{
    const unsigned char *p = v->mv_data;
    uint16_t topic_len;
    uint32_t key_len;
    if (v->mv_size < TOPIC_COUNTS_PARKED_TOPIC_LEN_AT + 2 ||
        (p[0] != TOPIC_COUNTS_PARKED_KIND_EVENT && p[0] != TOPIC_COUNTS_PARKED_KIND_TOMBSTONE))
        return false;
    memcpy(&topic_len, p + TOPIC_COUNTS_PARKED_TOPIC_LEN_AT, 2);
    size_t at = TOPIC_COUNTS_PARKED_TOPIC_LEN_AT + 2;
    if (v->mv_size - at < (size_t)topic_len + 4 || topic_len > TOPIC_COUNTS_TOPIC_MAX)
        return false;
    memcpy(&key_len, p + at + topic_len, 4);
    if (v->mv_size - at - topic_len - 4 < key_len)
        return false;
    *ret_topic = (const char *)p + at;
    *ret_len = topic_len;
    return true;
}

static int name_for(char *name, size_t cap, const char *topic, size_t topic_len)
{
    if (topic_len > TOPIC_COUNTS_TOPIC_MAX)
        return RM_EVALIDATE;
    snprintf(name, cap, "%s%.*s", TOPIC_COUNTS_PREFIX, (int)topic_len, topic);
    return memchr(topic, '\0', topic_len) ? RM_EVALIDATE : 0;
}

static int counted(store_t *store, MDB_txn *txn, bool *ret_counted)
{
    int64_t format;
    int rc = store_meta_get_i64(store, txn, TOPIC_COUNTS_FORMAT_META, &format);
    if (rc && rc != RM_ENOTFOUND)
        return rc;
    *ret_counted = rc == 0;
    return 0;
}

static int get_counts(store_t *store, MDB_txn *txn, const char *name, topic_counts_t *ret)
{
    const void *data;
    size_t len;
    int rc = store_meta_get(store, txn, name, &data, &len);
    if (rc)
        return rc;
    if (len != sizeof(*ret))
        return RM_ESTORE;
    memcpy(ret, data, sizeof(*ret));
    return 0;
}

int topic_counts_add(store_t *store, MDB_txn *txn, const char *topic, size_t topic_len,
                     topic_counts_kind_t kind, int64_t delta)
{
    char name[sizeof(TOPIC_COUNTS_PREFIX) + TOPIC_COUNTS_TOPIC_MAX + 1];
    int rc = name_for(name, sizeof(name), topic, topic_len);
    if (rc)
        return rc == RM_EVALIDATE ? 0 : rc; /* a name no scan reports either */
    topic_counts_t counts = {{0}};
    rc = get_counts(store, txn, name, &counts);
    if (rc == RM_ENOTFOUND) {
        /* A topic's first entry, or a store not counted yet: only the first is kept. */
        bool is_counted;
        if ((rc = counted(store, txn, &is_counted)) || !is_counted)
            return rc;
    } else if (rc) {
        return rc;
    }
    counts.tc_count[kind] += delta;
    return store_meta_put(store, txn, name, &counts, sizeof(counts));
}

/* ---- scans ---- */

typedef struct tally_entry {
    char te_topic[TOPIC_COUNTS_TOPIC_MAX + 1];
    topic_counts_t te_counts;
} tally_entry_t;

typedef struct tally {
    tally_entry_t *ta_entries;
    size_t ta_count, ta_cap;
} tally_t;

/* A view has a handful of source topics: a linear search beats a hash table here. */
static int tally_add(tally_t *t, const char *topic, size_t topic_len, topic_counts_kind_t kind)
{
    if (topic_len > TOPIC_COUNTS_TOPIC_MAX || memchr(topic, '\0', topic_len))
        return 0;
    for (size_t i = 0; i < t->ta_count; i++) {
        tally_entry_t *e = &t->ta_entries[i];
        if (strlen(e->te_topic) == topic_len && memcmp(e->te_topic, topic, topic_len) == 0) {
            e->te_counts.tc_count[kind]++;
            return 0;
        }
    }
    if (t->ta_count == t->ta_cap) {
        size_t cap = t->ta_cap ? t->ta_cap * 2 : 8;
        tally_entry_t *entries = realloc(t->ta_entries, cap * sizeof(*entries));
        if (!entries)
            return RM_ENOMEM;
        t->ta_entries = entries;
        t->ta_cap = cap;
    }
    tally_entry_t *e = &t->ta_entries[t->ta_count++];
    memset(e, 0, sizeof(*e));
    memcpy(e->te_topic, topic, topic_len);
    e->te_counts.tc_count[kind] = 1;
    return 0;
}

static int tally_db(store_t *store, MDB_txn *txn, store_db_t db, tally_t *t)
{
    MDB_cursor *cur;
    int rc = rm_err_from_mdb(mdb_cursor_open(txn, store_dbi(store, db), &cur));
    if (rc)
        return rc;
    MDB_val k, v;
    int mrc;
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && !rc;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const char *topic;
        size_t topic_len;
        if (db == STORE_DB_PENDING ? parked_topic(&v, &topic, &topic_len)
                                   : outbox_entry_topic(&k, &v, &topic, &topic_len) == 0)
            rc =
                tally_add(t, topic, topic_len,
                          db == STORE_DB_PENDING ? TOPIC_COUNTS_PARKED : TOPIC_COUNTS_DEAD_LETTERS);
    }
    mdb_cursor_close(cur);
    return rc ? rc : mrc == MDB_NOTFOUND ? 0 : rm_err_from_mdb(mrc);
}

int topic_counts_scan(store_t *store, MDB_txn *txn, topic_counts_cb cb, void *ctx)
{
    tally_t t = {0};
    int rc = tally_db(store, txn, STORE_DB_PENDING, &t);
    rc = rc ? rc : tally_db(store, txn, STORE_DB_OUTBOX, &t);
    for (size_t i = 0; !rc && i < t.ta_count; i++) {
        topic_counts_t *c = &t.ta_entries[i].te_counts;
        c->tc_count[TOPIC_COUNTS_RECORDED] = c->tc_count[TOPIC_COUNTS_DEAD_LETTERS];
        rc = cb(ctx, t.ta_entries[i].te_topic, c);
    }
    free(t.ta_entries);
    return rc;
}

/* ---- the stored counters ---- */

typedef struct foreach_ctx {
    topic_counts_cb fc_cb;
    void *fc_ctx;
} foreach_ctx_t;

static int foreach_one(void *ctx, const char *name, size_t name_len, const void *value,
                       size_t value_len)
{
    foreach_ctx_t *fc = ctx;
    char topic[TOPIC_COUNTS_TOPIC_MAX + 1];
    size_t topic_len = name_len - (sizeof(TOPIC_COUNTS_PREFIX) - 1);
    topic_counts_t counts;
    if (topic_len > TOPIC_COUNTS_TOPIC_MAX || value_len != sizeof(counts))
        return RM_ESTORE;
    memcpy(topic, name + sizeof(TOPIC_COUNTS_PREFIX) - 1, topic_len);
    topic[topic_len] = '\0';
    memcpy(&counts, value, sizeof(counts));
    return fc->fc_cb(fc->fc_ctx, topic, &counts);
}

int topic_counts_foreach(store_t *store, MDB_txn *txn, topic_counts_cb cb, void *ctx)
{
    bool is_counted;
    int rc = counted(store, txn, &is_counted);
    if (rc)
        return rc;
    if (!is_counted)
        return RM_ENOTFOUND;
    foreach_ctx_t fc = {cb, ctx};
    return store_meta_foreach(store, txn, TOPIC_COUNTS_PREFIX, foreach_one, &fc);
}

typedef struct store_ctx {
    store_t *sc_store;
    MDB_txn *sc_txn;
} store_ctx_t;

static int put_counts(void *ctx, const char *topic, const topic_counts_t *counts)
{
    store_ctx_t *sc = ctx;
    char name[sizeof(TOPIC_COUNTS_PREFIX) + TOPIC_COUNTS_TOPIC_MAX + 1];
    int rc = name_for(name, sizeof(name), topic, strlen(topic));
    return rc ? rc : store_meta_put(sc->sc_store, sc->sc_txn, name, counts, sizeof(*counts));
}

int topic_counts_init(store_t *store, MDB_txn *txn)
{
    bool is_counted;
    int rc = counted(store, txn, &is_counted);
    if (rc || is_counted)
        return rc;
    store_ctx_t sc = {store, txn};
    rc = topic_counts_scan(store, txn, put_counts, &sc);
    return rc ? rc : store_meta_put_i64(store, txn, TOPIC_COUNTS_FORMAT_META, TOPIC_COUNTS_FORMAT);
}

static int collect_stored(void *ctx, const char *topic, const topic_counts_t *counts)
{
    tally_t *t = ctx;
    int rc = tally_add(t, topic, strlen(topic), TOPIC_COUNTS_PARKED);
    if (!rc) {
        topic_counts_t *c = &t->ta_entries[t->ta_count - 1].te_counts;
        *c = *counts;
        c->tc_count[TOPIC_COUNTS_DEAD_LETTERS] = 0; /* recounted below */
    }
    return rc;
}

int topic_counts_recount_dead_letters(store_t *store, MDB_txn *txn)
{
    bool is_counted;
    int rc = counted(store, txn, &is_counted);
    if (rc || !is_counted)
        return rc;
    /* Stored topics first (each once: meta names are unique), then the outbox's letters
     * are added to them; written only after both walks, never under a cursor. */
    tally_t t = {0};
    rc = topic_counts_foreach(store, txn, collect_stored, &t);
    rc = rc ? rc : tally_db(store, txn, STORE_DB_OUTBOX, &t);
    store_ctx_t sc = {store, txn};
    for (size_t i = 0; !rc && i < t.ta_count; i++)
        rc = put_counts(&sc, t.ta_entries[i].te_topic, &t.ta_entries[i].te_counts);
    free(t.ta_entries);
    return rc;
}
