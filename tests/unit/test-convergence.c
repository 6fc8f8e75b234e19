/* Convergence property: for many seeds, the simulator's stream applied in several
 * interleavings that Kafka permits (per-partition order kept, partitions interleaved at
 * random, some messages redelivered later) gives byte-identical stores, and every
 * document equals the simulator's independent oracle. The stream also removes list
 * items the three ways the view knows — `delete` ops of rules (a settled payment closes
 * its issue), tombstones on `orders` and reconcile's DELETE repairs (on their own topic,
 * so they may come before the order they remove) — and some of them hit customers with
 * more than the 20 orders the list keeps, where the 21st must come back. No broker: the
 * engine is driven directly, so hundreds of interleavings cost seconds. */
#include "engine.h"
#include "frag.h"
#include "render.h"
#include "rm_err.h"
#include "tsupport.h"
#include "../../tools/simulate/avro_enc.h"
#include "../../tools/simulate/model.h"
#include "../../tools/simulate/oracle.h"

#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CV_PARTITIONS 4        /* per topic */
#define CV_GROWN_PARTITIONS 8 /* ... after partitions were added, halfway through a stream */
#define CV_MAX_PARTITIONS 8
#define CV_GROWN_SEEDS 10
#define CV_FORMAT1_SEEDS 4 /* stores continued from format-1 fragments */
#define CV_CUSTOMERS 120       /* per seed: ~3,000 events */
#define CV_SEEDS 20
#define CV_INTERLEAVINGS 4
#define CV_BATCH 400           /* messages per transaction, like a small group commit */

typedef struct cv_msg {
    const char *cm_topic;
    int32_t cm_partition;
    int64_t cm_offset;
    int64_t cm_timestamp_ms;
    char *cm_key;
    void *cm_value; /* NULL: a tombstone */
    size_t cm_len;
} cv_msg_t;

/* A customer whose orders the stream removes: what its list must hold at the end. */
typedef struct cv_removal {
    char cr_customer[SIM_ID_MAX];
    char cr_deleted[3][SIM_ID_MAX];
    size_t cr_deleted_count;
    size_t cr_want_orders; /* min(20, orders left) */
} cv_removal_t;

#define CV_MAX_REMOVALS 64
#define CV_ORDERS_KEPT 20 /* max_items of orders in customer360.yaml */

typedef struct cv_stream {
    cv_msg_t *cs_msgs;
    size_t cs_count;
    json_t *cs_oracle; /* key -> oracle line (customers with removals taken out) */
    cv_removal_t cs_removals[CV_MAX_REMOVALS];
    size_t cs_removal_count;
    uint32_t cs_partitions_now; /* partitions per topic for the next message */
} cv_stream_t;

/* An order as the stream creates it. */
typedef struct cv_order {
    char co_id[SIM_ID_MAX];
    char co_customer[SIM_ID_MAX];
    int64_t co_created_ms;
} cv_order_t;

static catalog_t *catalog;
static view_t *view;

static uint64_t cv_rand(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint32_t key_hash(const char *key)
{
    uint32_t h = 2166136261u;
    for (; *key; key++)
        h = (h ^ (unsigned char)*key) * 16777619u;
    return h;
}

static int order_newest_first(const void *a, const void *b)
{
    const cv_order_t *x = a, *y = b;
    int c = strcmp(x->co_customer, y->co_customer);
    if (c)
        return c;
    if (x->co_created_ms != y->co_created_ms)
        return x->co_created_ms > y->co_created_ms ? -1 : 1;
    return strcmp(x->co_id, y->co_id);
}

/* Appends a message for topic at the end of its partition's queue: the key's partition,
 * or the next one with `elsewhere` (as a producer with another partitioner puts it). */
static cv_msg_t *stream_push_to(cv_stream_t *cs, int64_t (*next_offset)[CV_MAX_PARTITIONS],
                                const char *topic_name, const char *key, int64_t timestamp_ms,
                                bool elsewhere)
{
    int topic = view_topic_index(view, topic_name);
    ck_assert_int_ge(topic, 0);
    cs->cs_msgs = realloc(cs->cs_msgs, (cs->cs_count + 1) * sizeof(cv_msg_t));
    cv_msg_t *m = &cs->cs_msgs[cs->cs_count++];
    memset(m, 0, sizeof(*m));
    m->cm_topic = view->v_topics[topic];
    m->cm_key = strdup(key);
    m->cm_partition = (int32_t)((key_hash(key) + (elsewhere ? 1 : 0)) % cs->cs_partitions_now);
    m->cm_offset = next_offset[topic][m->cm_partition]++;
    m->cm_timestamp_ms = timestamp_ms;
    return m;
}

static cv_msg_t *stream_push(cv_stream_t *cs, int64_t (*next_offset)[CV_MAX_PARTITIONS],
                             const char *topic_name, const char *key, int64_t timestamp_ms)
{
    return stream_push_to(cs, next_offset, topic_name, key, timestamp_ms, false);
}

/* Removes order o: a tombstone on `orders` (keyed by the order: after its events in their
 * partition, or on every other removal in another partition, so possibly before all of
 * them) or a DELETE repair (its own topic: any time). */
static void stream_remove(cv_stream_t *cs, int64_t (*next_offset)[CV_MAX_PARTITIONS],
                          const cv_order_t *o, bool repair, int64_t at_ms, cv_removal_t *cr)
{
    if (!repair) {
        stream_push_to(cs, next_offset, "orders", o->co_id, at_ms, cs->cs_removal_count % 2);
    } else {
        buf_t b = BUF_INIT;
        char id[96], at[64], key[96], item[96];
        snprintf(id, sizeof(id), "event_id=cv-repair-%s", o->co_id);
        snprintf(at, sizeof(at), "occurred_at=%lld", (long long)at_ms);
        snprintf(key, sizeof(key), "view_key=%s", o->co_customer);
        snprintf(item, sizeof(item), "item_id=%s", o->co_id);
        ck_assert_int_eq(ts_event(catalog, 30, &b, id, at, "version=1", "view=customer360", key,
                                  "section=orders", "op=DELETE", item, "fields_json={}",
                                  "run_id=cv", "source_url=http://cv", "reason=cv", NULL),
                         0);
        cv_msg_t *m = stream_push(cs, next_offset, "customer360.repairs", o->co_customer, at_ms);
        m->cm_value = b.b_data;
        m->cm_len = b.b_len;
    }
    snprintf(cr->cr_deleted[cr->cr_deleted_count++], sizeof(cr->cr_deleted[0]), "%s", o->co_id);
}

/* Picks the removals: on every customer with more orders than the list keeps, a
 * tombstone on its 3rd newest order, a repair on its 5th newest and a tombstone on its
 * oldest (already trimmed); on every 8th other customer with orders, a repair of its
 * newest. Their oracle lines are taken out (the oracle knows no removals). */
static void stream_add_removals(cv_stream_t *cs, int64_t (*next_offset)[CV_MAX_PARTITIONS],
                                cv_order_t *orders, size_t order_count, int64_t end_ms)
{
    qsort(orders, order_count, sizeof(*orders), order_newest_first);
    size_t customers = 0;
    for (size_t first = 0, last; first < order_count; first = last) {
        for (last = first;
             last < order_count && strcmp(orders[last].co_customer, orders[first].co_customer) == 0;
             last++)
            ;
        size_t n = last - first;
        bool heavy = n > CV_ORDERS_KEPT;
        if ((!heavy && customers++ % 8 != 0) || cs->cs_removal_count == CV_MAX_REMOVALS)
            continue;
        json_t *line = json_object_get(cs->cs_oracle, orders[first].co_customer);
        if (!line || json_is_true(json_object_get(line, "erased")))
            continue;
        cv_removal_t *cr = &cs->cs_removals[cs->cs_removal_count++];
        snprintf(cr->cr_customer, sizeof(cr->cr_customer), "%s", orders[first].co_customer);
        if (heavy) {
            stream_remove(cs, next_offset, &orders[first + 2], false, end_ms + 1000, cr);
            stream_remove(cs, next_offset, &orders[first + 4], true, end_ms + 2000, cr);
            stream_remove(cs, next_offset, &orders[last - 1], false, end_ms + 3000, cr);
        } else {
            stream_remove(cs, next_offset, &orders[first], true, end_ms + 2000, cr);
        }
        size_t left = n - cr->cr_deleted_count;
        cr->cr_want_orders = left < CV_ORDERS_KEPT ? left : CV_ORDERS_KEPT;
        json_object_del(cs->cs_oracle, cr->cr_customer);
    }
}

/* grown: the topics gain partitions halfway through the stream, so the keys of an
 * entity's later events map to other partitions than its earlier ones. */
static void stream_build(uint64_t seed, bool grown, cv_stream_t *cs)
{
    char err[256];
    model_t *model = model_new(seed, CV_CUSTOMERS, err, sizeof(err));
    ck_assert_msg(model != NULL, "%s", err);
    model_set_start(model, 1700000000000);
    avro_enc_t *enc = avro_enc_new(catalog, err, sizeof(err));
    ck_assert_msg(enc != NULL, "%s", err);
    cs->cs_count = model_event_count(model);
    cs->cs_msgs = calloc(cs->cs_count, sizeof(cv_msg_t));
    int64_t next_offset[16][CV_MAX_PARTITIONS] = {{0}};
    cs->cs_partitions_now = CV_PARTITIONS;
    cv_order_t *orders = calloc(cs->cs_count, sizeof(*orders));
    size_t order_count = 0;
    int64_t end_ms = 0;
    for (size_t i = 0; i < cs->cs_count; i++) {
        const sim_event_t *ev = model_event(model, i);
        sim_payload_t pl;
        model_payload(model, ev, &pl);
        if (ev->ev_occurred_at > end_ms)
            end_ms = ev->ev_occurred_at;
        if (ev->ev_type == SIM_ORDER_CREATED) {
            cv_order_t *o = &orders[order_count++];
            snprintf(o->co_id, sizeof(o->co_id), "%s", pl.pl_order_id);
            snprintf(o->co_customer, sizeof(o->co_customer), "%s", pl.pl_str[SIM_F_CUSTOMER_ID]);
            o->co_created_ms = ev->ev_occurred_at;
        }
        const void *data;
        size_t len;
        ck_assert_int_eq(avro_enc_encode(enc, (sim_event_type_t)ev->ev_type, &pl, &data, &len), 0);
        cv_msg_t *m = &cs->cs_msgs[i];
        const catalog_entry_t *entry = avro_enc_entry(enc, (sim_event_type_t)ev->ev_type);
        int topic = view_topic_index(view, entry->ce_topic);
        ck_assert_int_ge(topic, 0);
        m->cm_topic = view->v_topics[topic];
        m->cm_key = strdup(pl.pl_key);
        if (grown && i == cs->cs_count / 2)
            cs->cs_partitions_now = CV_GROWN_PARTITIONS;
        m->cm_partition = (int32_t)(key_hash(pl.pl_key) % cs->cs_partitions_now);
        m->cm_offset = next_offset[topic][m->cm_partition]++;
        m->cm_value = malloc(len);
        memcpy(m->cm_value, data, len);
        m->cm_len = len;
        m->cm_timestamp_ms = ev->ev_occurred_at;
    }
    oracle_t *oracle = oracle_build(model, err, sizeof(err));
    ck_assert_msg(oracle != NULL, "%s", err);
    char *text = NULL;
    size_t text_len = 0;
    FILE *mem = open_memstream(&text, &text_len);
    ck_assert_int_eq(oracle_write(oracle, mem), 0);
    fclose(mem);
    cs->cs_oracle = json_object();
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *o = json_loads(line, 0, NULL);
        ck_assert_ptr_nonnull(o);
        json_object_set_new(cs->cs_oracle, json_string_value(json_object_get(o, "key")), o);
    }
    free(text);
    if (!grown)
        stream_add_removals(cs, next_offset, orders, order_count, end_ms + 86400000);
    free(orders);
    oracle_destroy(oracle);
    avro_enc_destroy(enc);
    model_destroy(model);
}

static void stream_free(cv_stream_t *cs)
{
    for (size_t i = 0; i < cs->cs_count; i++) {
        free(cs->cs_msgs[i].cm_key);
        free(cs->cs_msgs[i].cm_value);
    }
    free(cs->cs_msgs);
    json_decref(cs->cs_oracle);
}

/* Applies the stream in one permitted interleaving: each (topic, partition) queue is
 * consumed in order; which queue goes next is random; about 3% of messages are also
 * redelivered a little later. Returns the store's comparable bytes. */
/* The comparable state of store: everything but bookkeeping that records arrival order
 * (pending sequence, offsets, outbox, meta, and the freshness marks of removed list
 * items — docs/guarantees.md, "Ordering"). pending itself must be empty. */
static char *dump_store(store_t *store, size_t *ret_len)
{
    MDB_txn *txn;
    static const store_db_t dbs[] = {STORE_DB_DOC,   STORE_DB_IDX,    STORE_DB_LINK,
                                     STORE_DB_RLINK, STORE_DB_ERASED, STORE_DB_PENDING};
    buf_t dump = BUF_INIT;
    ck_assert_int_eq(store_read_begin(store, &txn), 0);
    for (size_t d = 0; d < sizeof(dbs) / sizeof(dbs[0]); d++) {
        MDB_cursor *cur;
        mdb_cursor_open(txn, store_dbi(store, dbs[d]), &cur);
        MDB_val k, v;
        buf_printf(&dump, "[%s]", store_db_name(dbs[d]));
        for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            ck_assert_msg(dbs[d] != STORE_DB_PENDING, "an event is still parked");
            const char *kd = k.mv_data;
            if (dbs[d] == STORE_DB_DOC && k.mv_size >= 2 && kd[k.mv_size - 1] == '\0' &&
                kd[k.mv_size - 2] == '\0')
                continue; /* "key \0 \0": the marks record */
            buf_append(&dump, &k.mv_size, sizeof(k.mv_size));
            buf_append(&dump, k.mv_data, k.mv_size);
            buf_append(&dump, &v.mv_size, sizeof(v.mv_size));
            buf_append(&dump, v.mv_data, v.mv_size);
        }
        mdb_cursor_close(cur);
    }
    store_read_end(txn);
    *ret_len = dump.b_len;
    return dump.b_data;
}

/* The section of a doc key "view_key \0 [\xffh] section \0 item" that holds a fragment
 * (visible or hidden list item, single, counters), or NULL: marks, versions, deletion
 * stamps and degraded marks are other records. */
static const view_section_t *fragment_section(const MDB_val *k)
{
    const char *key = k->mv_data, *end = key + k->mv_size;
    const char *name = memchr(key, '\0', k->mv_size);
    if (!name++)
        return NULL;
    if (end - name >= 2 && name[0] == '\xff' && name[1] == 'h')
        name += 2;
    const char *nul = memchr(name, '\0', (size_t)(end - name));
    char section[VIEW_NAME_MAX_BYTES];
    if (!nul || nul == name || (size_t)(nul - name) >= sizeof(section))
        return NULL;
    memcpy(section, name, (size_t)(nul - name));
    section[nul - name] = '\0';
    int s = view_section_index(view, section);
    return s < 0 ? NULL : &view->v_sections[s];
}

/* Rewrites every fragment of store in format 1, as an earlier version wrote them. */
static void downgrade_fragments(store_t *store)
{
    MDB_txn *txn;
    ck_assert_int_eq(store_write_begin(store, &txn), 0);
    MDB_cursor *cur;
    ck_assert_int_eq(mdb_cursor_open(txn, store_dbi(store, STORE_DB_DOC), &cur), 0);
    buf_t v1 = BUF_INIT;
    size_t rewritten = 0;
    MDB_val k, v;
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const view_section_t *section = fragment_section(&k);
        frag_t frag;
        if (!section || frag_decode(v.mv_data, v.mv_size, section->vs_field_count, &frag))
            continue;
        ts_frag_encode_v1(&frag, section, &v1);
        char key[512]; /* k points into a page the put may move; doc keys are shorter */
        ck_assert_uint_le(k.mv_size, sizeof(key));
        memcpy(key, k.mv_data, k.mv_size);
        MDB_val nk = {k.mv_size, key}, nv = {v1.b_len, v1.b_data};
        ck_assert_int_eq(mdb_cursor_put(cur, &nk, &nv, MDB_CURRENT), 0);
        rewritten++;
    }
    mdb_cursor_close(cur);
    buf_free(&v1);
    ck_assert_uint_gt(rewritten, CV_CUSTOMERS / 2);
    ck_assert_int_eq(store_write_commit(store, txn), 0);
}

/* How many fragments of store are in format 1 and in format 2 (their first byte). */
static void count_formats(store_t *store, size_t *ret_v1, size_t *ret_v2)
{
    MDB_txn *txn;
    ck_assert_int_eq(store_read_begin(store, &txn), 0);
    MDB_cursor *cur;
    ck_assert_int_eq(mdb_cursor_open(txn, store_dbi(store, STORE_DB_DOC), &cur), 0);
    *ret_v1 = *ret_v2 = 0;
    MDB_val k, v;
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (!fragment_section(&k) || !v.mv_size)
            continue;
        *ret_v1 += ((const unsigned char *)v.mv_data)[0] == 1;
        *ret_v2 += ((const unsigned char *)v.mv_data)[0] == 2;
    }
    mdb_cursor_close(cur);
    store_read_end(txn);
}

/* Applies cs in one interleaving into a fresh store; returns its dump (dump_store).
 * downgrade: at the first commit past half the stream, every fragment is rewritten in
 * format 1 — as if an earlier version had written the store so far. */
static char *apply_interleaving(const cv_stream_t *cs, uint64_t shuffle_seed, bool rush_new,
                                bool downgrade, size_t *ret_len, store_t **ret_store,
                                char **ret_dir)
{
    char err[512];
    char *dir = ts_tmpdir();
    store_opts_t opts = {.so_dir = dir,
                         .so_map_size_bytes = 256 << 20,
                         .so_durability = STORE_PERIODIC,
                         .so_sync_interval_ms = 1 << 30};
    store_t *store = store_open(&opts, err, sizeof(err));
    ck_assert_msg(store != NULL, "%s", err);
    engine_t *engine = engine_new(view, catalog, store, NULL);
    /* queues: message indexes per (topic, partition), in stream order */
    size_t nq = view->v_topic_count * CV_MAX_PARTITIONS;
    size_t **queue = calloc(nq, sizeof(size_t *)), *qlen = calloc(nq, sizeof(size_t)),
           *qpos = calloc(nq, sizeof(size_t));
    for (size_t q = 0; q < nq; q++)
        queue[q] = malloc(cs->cs_count * sizeof(size_t));
    for (size_t i = 0; i < cs->cs_count; i++) {
        const cv_msg_t *m = &cs->cs_msgs[i];
        size_t q = (size_t)view_topic_index(view, m->cm_topic) * CV_MAX_PARTITIONS +
                   (size_t)m->cm_partition;
        queue[q][qlen[q]++] = i;
    }
    uint64_t rng = shuffle_seed;
    size_t left = cs->cs_count, in_txn = 0, left_new = 0;
    for (size_t q = 0; q < nq; q++)
        left_new += q % CV_MAX_PARTITIONS >= CV_PARTITIONS ? qlen[q] : 0;
    size_t redeliver[64];
    size_t redeliver_count = 0;
    MDB_txn *txn = NULL;
    while (left || redeliver_count) {
        if (!txn) {
            ck_assert_int_eq(store_write_begin(store, &txn), 0);
            ck_assert_int_eq(engine_txn_begin(engine, txn), 0);
        }
        size_t index;
        if (redeliver_count && (cv_rand(&rng) % 8 == 0 || !left)) {
            index = redeliver[--redeliver_count];
        } else {
            /* rush_new: the added partitions are mostly consumed first (a consumer that
             * catches up on them faster), so an entity's newer versions often come
             * before its older ones still waiting in the old partitions. */
            bool only_new = rush_new && left_new && cv_rand(&rng) % 8 != 0;
            size_t q;
            do
                q = cv_rand(&rng) % nq;
            while (qpos[q] == qlen[q] || (only_new && q % CV_MAX_PARTITIONS < CV_PARTITIONS));
            if (q % CV_MAX_PARTITIONS >= CV_PARTITIONS)
                left_new--;
            index = queue[q][qpos[q]++];
            left--;
            if (cv_rand(&rng) % 32 == 0 && redeliver_count < 64)
                redeliver[redeliver_count++] = index;
        }
        const cv_msg_t *m = &cs->cs_msgs[index];
        engine_msg_t msg = {m->cm_topic, m->cm_partition,   m->cm_offset, m->cm_timestamp_ms,
                            m->cm_key,   strlen(m->cm_key), m->cm_value,  m->cm_len};
        engine_result_t res;
        ck_assert_int_eq(engine_apply(engine, txn, &msg, &res), 0);
        ck_assert_msg(res.er_outcome != ENGINE_REJECTED, "rejected: %s", res.er_reason);
        if (++in_txn == CV_BATCH) {
            ck_assert_int_eq(engine_txn_precommit(engine, txn), 0);
            ck_assert_int_eq(store_write_commit(store, txn), 0);
            txn = NULL;
            in_txn = 0;
            if (downgrade && left <= cs->cs_count / 2) {
                downgrade_fragments(store);
                downgrade = false;
            }
        }
    }
    if (txn) {
        ck_assert_int_eq(engine_txn_precommit(engine, txn), 0);
        ck_assert_int_eq(store_write_commit(store, txn), 0);
    }
    for (size_t q = 0; q < nq; q++)
        free(queue[q]);
    free(queue);
    free(qlen);
    free(qpos);
    engine_destroy(engine);
    char *dump = dump_store(store, ret_len);
    *ret_store = store;
    *ret_dir = dir;
    return dump;
}

static void check_oracle(const cv_stream_t *cs, store_t *store)
{
    MDB_txn *txn;
    buf_t out = BUF_INIT;
    ck_assert_int_eq(store_read_begin(store, &txn), 0);
    const char *key;
    json_t *o;
    size_t checked = 0;
    json_object_foreach(cs->cs_oracle, key, o)
    {
        buf_reset(&out);
        int rc = render_sections(view, store, txn, key, strlen(key), &out);
        if (json_is_true(json_object_get(o, "erased"))) {
            ck_assert_msg(rc == RM_ENOTFOUND, "%s was erased but is still served", key);
            continue;
        }
        ck_assert_int_eq(rc, 0);
        char *want = json_dumps(json_object_get(o, "sections"), JSON_COMPACT);
        ck_assert_msg(ts_json_equal(out.b_data, want), "customer %s differs from the oracle", key);
        free(want);
        checked++;
    }
    /* Removed orders are gone, and the list is refilled from the ones it had trimmed. */
    for (size_t r = 0; r < cs->cs_removal_count; r++) {
        const cv_removal_t *cr = &cs->cs_removals[r];
        buf_reset(&out);
        ck_assert_int_eq(
            render_sections(view, store, txn, cr->cr_customer, strlen(cr->cr_customer), &out), 0);
        json_t *doc = json_loads(out.b_data, 0, NULL);
        json_t *list = json_object_get(doc, "orders");
        ck_assert_msg(json_array_size(list) == cr->cr_want_orders,
                      "customer %s: %zu orders, want %zu", cr->cr_customer, json_array_size(list),
                      cr->cr_want_orders);
        size_t i;
        json_t *item;
        json_array_foreach(list, i, item)
        {
            const char *id = json_string_value(json_object_get(item, "order_id"));
            for (size_t d = 0; d < cr->cr_deleted_count; d++)
                ck_assert_msg(strcmp(id, cr->cr_deleted[d]) != 0, "customer %s still shows %s",
                              cr->cr_customer, id);
        }
        json_decref(doc);
    }
    store_read_end(txn);
    buf_free(&out);
    ck_assert_uint_gt(checked, CV_CUSTOMERS / 2);
}

START_TEST(test_interleavings_give_identical_stores)
{
    catalog = ts_catalog();
    view = ts_view(catalog);
    cv_stream_t cs = {0};
    uint64_t seed = 1000 + (uint64_t)_i;
    stream_build(seed, false, &cs);
    char *first = NULL;
    size_t first_len = 0;
    for (int il = 0; il < CV_INTERLEAVINGS; il++) {
        size_t len;
        store_t *store;
        char *dir;
        char *dump =
            apply_interleaving(&cs, seed * 131 + (uint64_t)il, false, false, &len, &store, &dir);
        if (il == 0) {
            check_oracle(&cs, store);
            first = dump;
            first_len = len;
        } else {
            if (getenv("CV_DUMP") && (len != first_len || memcmp(dump, first, len) != 0)) {
                char name[64];
                snprintf(name, sizeof(name), "/tmp/cv-%llu-0.bin", (unsigned long long)seed);
                FILE *f = fopen(name, "wb");
                fwrite(first, 1, first_len, f);
                fclose(f);
                snprintf(name, sizeof(name), "/tmp/cv-%llu-%d.bin", (unsigned long long)seed, il);
                f = fopen(name, "wb");
                fwrite(dump, 1, len, f);
                fclose(f);
            }
            ck_assert_msg(len == first_len && memcmp(dump, first, len) == 0,
                          "seed %llu: interleaving %d gives a different store",
                          (unsigned long long)seed, il);
            free(dump);
        }
        store_close(store);
        ts_rmtree(dir);
    }
    free(first);
    stream_free(&cs);
    view_destroy(view);
    catalog_destroy(catalog);
}
END_TEST

/* Partitions added halfway: an entity's versions may now be applied out of order. What
 * must hold (docs/guarantees.md, "When partitions are added"): no event stays parked (no
 * link is lost), no erased customer is served, and the counters and the orders list —
 * which follow each entity's newest version, not the arrival order — equal the
 * oracle's in every interleaving. */
START_TEST(test_added_partitions_lose_no_link_and_no_counter)
{
    catalog = ts_catalog();
    view = ts_view(catalog);
    cv_stream_t cs = {0};
    uint64_t seed = 2000 + (uint64_t)_i;
    stream_build(seed, true, &cs);
    static const char *const sections[] = {"counters", "orders"};
    for (int il = 0; il < 3; il++) {
        size_t len;
        store_t *store;
        char *dir;
        free(apply_interleaving(&cs, seed * 131 + (uint64_t)il, il > 0, false, &len, &store, &dir));
        MDB_txn *txn;
        buf_t out = BUF_INIT;
        ck_assert_int_eq(store_read_begin(store, &txn), 0);
        const char *key;
        json_t *o;
        json_object_foreach(cs.cs_oracle, key, o)
        {
            buf_reset(&out);
            int rc = render_sections(view, store, txn, key, strlen(key), &out);
            if (json_is_true(json_object_get(o, "erased"))) {
                ck_assert_msg(rc == RM_ENOTFOUND, "%s was erased but is still served", key);
                continue;
            }
            ck_assert_int_eq(rc, 0);
            json_t *doc = json_loads(out.b_data, 0, NULL);
            for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++) {
                json_t *want = json_object_get(json_object_get(o, "sections"), sections[i]);
                json_t *got = json_object_get(doc, sections[i]);
                char *w = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS),
                     *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
                ck_assert_msg(json_equal(want, got),
                              "seed %llu, customer %s, %s: %.300s, want %.300s",
                              (unsigned long long)seed, key, sections[i], g, w);
                free(w);
                free(g);
            }
            json_decref(doc);
        }
        store_read_end(txn);
        buf_free(&out);
        store_close(store);
        ts_rmtree(dir);
    }
    stream_free(&cs);
    view_destroy(view);
    catalog_destroy(catalog);
}
END_TEST

/* A store an earlier version wrote (format-1 fragments) and this one continues: the
 * fragments it rewrites become format 2, the others stay as they were, and every document
 * still equals the oracle — old fragments are read, merged and served as new ones. */
START_TEST(test_store_of_format1_fragments_is_continued)
{
    catalog = ts_catalog();
    view = ts_view(catalog);
    cv_stream_t cs = {0};
    uint64_t seed = 3000 + (uint64_t)_i;
    stream_build(seed, false, &cs);
    size_t len;
    store_t *store;
    char *dir;
    free(apply_interleaving(&cs, seed * 131, false, true, &len, &store, &dir));
    size_t v1, v2;
    count_formats(store, &v1, &v2);
    ck_assert_msg(v1 > 0 && v2 > 0, "seed %llu: %zu format-1 and %zu format-2 fragments",
                  (unsigned long long)seed, v1, v2);
    check_oracle(&cs, store);
    store_close(store);
    ts_rmtree(dir);
    stream_free(&cs);
    view_destroy(view);
    catalog_destroy(catalog);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("convergence");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 300);
    tcase_add_loop_test(tc, test_interleavings_give_identical_stores, 0, CV_SEEDS);
    tcase_add_loop_test(tc, test_added_partitions_lose_no_link_and_no_counter, 0, CV_GROWN_SEEDS);
    tcase_add_loop_test(tc, test_store_of_format1_fragments_is_continued, 0, CV_FORMAT1_SEEDS);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
