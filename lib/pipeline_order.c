/* pipeline_order: the order a batch is applied in — each pass sorted by the view key its
 * messages write, so that a batch touches each key's B-tree pages once (docs/design.md §6).
 *
 * Notes on the design:
 * (1) Why the sort is safe. apply_batch_once applies a pass in the order of the triple
 *     (class, key, arrival). A message's class is twice the number of barriers (below)
 *     before it in its partition, plus one for a barrier itself. Ordering by class alone,
 *     arrival order inside a class, keeps every partition's order: it is an interleaving
 *     Kafka permits, which gives the same documents as any other (docs/design.md §3, the
 *     convergence the engine's notes 2 and 8 give). Inside a class there are no barriers,
 *     only messages that write under one key each — their view key, or for one that
 *     parks the foreign id it waits for (the pending entries of one id are unparked in the
 *     order they were parked, so that order is kept: same key, arrival order) — and the
 *     link state every one of them read when its key was computed does not change while
 *     the class is applied. Messages of different keys then touch disjoint state and
 *     commute; messages of one key keep arrival order. So sorting a class by key leaves
 *     the state that arrival order leaves. An entity's events share a view key (its version
 *     guard lives under it, engine.c note 1), so the guard sees them in arrival order.
 * (2) Barriers: messages whose effect reaches beyond one key or whose key is unknown —
 *     poison (dead-lettered in arrival order), erasures (they turn other messages' links
 *     into markers), tombstones that erase or delete, repairs, dead-letter-handled records,
 *     and in a pass where a message claims a link, every message that routes through one
 *     (its key may change under the claim). What links a pass's claims write is checked
 *     too: two claims of one foreign id for different keys (a re-pointed link) would
 *     unpark its events into whichever comes first, so such a pass is applied in arrival
 *     order. Messages that change nothing (no rule) go anywhere.
 * (3) Keys are computed per pass after the previous pass was applied, so links the first
 *     pass learned route the second pass's events (as in arrival order, where the second
 *     pass also came after the first). What the second decode costs: docs/design.md §6.
 * (4) The registry hold (pipeline.h note 10): a message whose writer schema cannot be
 *     fetched now holds its partition here, before anything is applied, and nothing of
 *     that partition at or after it is applied in the batch. */
#include "pipeline_int.h"
#include "rm_err.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Sort order of a pass: class, key, arrival (the last makes the sort stable). */
static int entry_cmp(const void *a, const void *b)
{
    const pipeline_entry_t *x = a, *y = b;
    if (x->pe_class != y->pe_class)
        return x->pe_class < y->pe_class ? -1 : 1;
    uint32_t n = x->pe_key_len < y->pe_key_len ? x->pe_key_len : y->pe_key_len;
    int c = n ? memcmp(x->pe_key, y->pe_key, n) : 0;
    if (c)
        return c;
    if (x->pe_key_len != y->pe_key_len)
        return x->pe_key_len < y->pe_key_len ? -1 : 1;
    return x->pe_slot < y->pe_slot ? -1 : x->pe_slot > y->pe_slot;
}

/* Computes the key of one message (note 4 for RM_EUNAVAIL). 0 or a store error. */
static int key_one(pipeline_t *pl, MDB_txn *txn, pipeline_entry_t *entry)
{
    const rd_kafka_message_t *m = pl->pi_batch[entry->pe_slot];
    pipeline_tp_t *tp = entry->pe_tp;
    entry->pe_kind = ENGINE_KEY_NONE; /* before the start time, or held: not applied */
    if (pl->pi_batch_skip[entry->pe_slot] ||
        (tp->pt_batch_held >= 0 && m->offset >= tp->pt_batch_held))
        return 0;
    rd_kafka_timestamp_type_t tstype;
    engine_msg_t msg = {rd_kafka_topic_name(m->rkt),
                        m->partition,
                        m->offset,
                        rd_kafka_message_timestamp(m, &tstype),
                        m->key,
                        m->key_len,
                        m->payload,
                        m->len};
    engine_key_t key;
    char reason[sizeof(pl->pi_registry_reason)];
    int rc = engine_view_key(pl->pi_engine, txn, &msg, &key, reason, sizeof(reason));
    if (rc == RM_EUNAVAIL) {
        tp->pt_batch_held = m->offset; /* arrival order: the partition's first such */
        snprintf(pl->pi_registry_reason, sizeof(pl->pi_registry_reason), "%s", reason);
        return 0;
    }
    if (rc)
        return rc;
    entry->pe_kind = (uint8_t)key.ek_kind;
    entry->pe_via_link = key.ek_via_link;
    entry->pe_learns = key.ek_learns;
    entry->pe_link_hash = key.ek_link_hash;
    entry->pe_key_off = (uint32_t)pl->pi_order_keys.b_len;
    entry->pe_key_len = 0;
    if (key.ek_kind == ENGINE_KEY_VIEW || key.ek_kind == ENGINE_KEY_PARKS) {
        /* A parking key starts with a NUL, which no view key holds: the two never meet. */
        if ((key.ek_kind == ENGINE_KEY_PARKS && buf_append_char(&pl->pi_order_keys, '\0')) ||
            buf_append(&pl->pi_order_keys, key.ek_key, key.ek_key_len))
            return RM_ENOMEM;
        entry->pe_key_len = (uint32_t)(pl->pi_order_keys.b_len - entry->pe_key_off);
    }
    return 0;
}

static int claim_cmp(const void *a, const void *b)
{
    const pipeline_claim_t *x = a, *y = b;
    return x->pc_hash < y->pc_hash ? -1 : x->pc_hash > y->pc_hash;
}

/* Note 2: whether two claims of the pass name one foreign id for different keys. */
static bool claims_conflict(pipeline_t *pl, size_t count)
{
    pipeline_claim_t *claims = pl->pi_claims;
    size_t n = 0;
    for (size_t i = 0; i < count; i++)
        if (pl->pi_order[i].pe_learns)
            claims[n++] = (pipeline_claim_t){pl->pi_order[i].pe_link_hash, (uint32_t)i};
    qsort(claims, n, sizeof(*claims), claim_cmp);
    for (size_t i = 1; i < n; i++) {
        const pipeline_entry_t *x = &pl->pi_order[claims[i - 1].pc_entry],
                               *y = &pl->pi_order[claims[i].pc_entry];
        if (claims[i - 1].pc_hash == claims[i].pc_hash &&
            (x->pe_key_len != y->pe_key_len || !x->pe_key_len ||
             memcmp(x->pe_key, y->pe_key, x->pe_key_len) != 0))
            return true;
    }
    return false;
}

/* Note 1: classes from barriers, in arrival order. */
static void assign_classes(pipeline_t *pl, size_t count, bool claims)
{
    for (size_t i = 0; i < count; i++)
        pl->pi_order[i].pe_tp->pt_pass_barriers = 0;
    for (size_t i = 0; i < count; i++) {
        pipeline_entry_t *entry = &pl->pi_order[i];
        bool barrier = entry->pe_kind == ENGINE_KEY_UNKNOWN || (claims && entry->pe_via_link);
        uint32_t *barriers = &entry->pe_tp->pt_pass_barriers;
        entry->pe_class = 2 * *barriers + (barrier ? 1 : 0);
        if (barrier) {
            entry->pe_key_len = 0;
            (*barriers)++;
        }
        entry->pe_key = entry->pe_key_len ? pl->pi_order_keys.b_data + entry->pe_key_off : NULL;
    }
}

int pipeline_order_pass(pipeline_t *pl, MDB_txn *txn, bool link_pass, bool sorted,
                        size_t *ret_count)
{
    const view_t *view = pl->pi_opts.po_view;
    size_t count = 0;
    for (size_t slot = 0; slot < pl->pi_batch_count; slot++) {
        const rd_kafka_message_t *m = pl->pi_batch[slot];
        int topic = view_topic_index(view, rd_kafka_topic_name(m->rkt));
        if ((topic >= 0 && pl->pi_link_topic[topic]) != link_pass)
            continue;
        pipeline_entry_t *entry = &pl->pi_order[count++];
        *entry = (pipeline_entry_t){.pe_slot = (uint32_t)slot,
                                    .pe_tp = pipeline_tp_find(pl, topic, m->partition)};
        assert(entry->pe_tp); /* fill_batch keeps only messages of known partitions */
    }
    *ret_count = count;
    if (!sorted || count < 2)
        return 0;
    buf_reset(&pl->pi_order_keys);
    bool claims = false;
    for (size_t i = 0; i < count; i++) {
        int rc = key_one(pl, txn, &pl->pi_order[i]);
        if (rc)
            return rc;
        claims |= pl->pi_order[i].pe_learns;
    }
    assign_classes(pl, count, claims);
    if (claims && claims_conflict(pl, count))
        return 0; /* arrival order (note 2) */
    qsort(pl->pi_order, count, sizeof(*pl->pi_order), entry_cmp);
    return 0;
}
