/* outbox_int: what outbox.c (publishing, recovery) and outbox_gen.c (taking over from a
 * previous store generation) share: the outbox itself and the stored entry's layout.
 * Private to those two files. */
#ifndef RM_OUTBOX_INT_H
#define RM_OUTBOX_INT_H

#include "kprod.h"
#include "outbox.h"
#include "rm_err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OUTBOX_REPLICA_BYTES 16 /* random bytes of a replica id (32 hex digits) */

typedef struct outbox_topic {
    char *ot_topic; /* source topic */
    char *ot_dlq; /* <topic>.dlq */
    int32_t ot_partitions; /* of the DLQ topic; 1 when unknown */
    bool ot_absent; /* the broker said the DLQ topic does not exist (yet) */
} outbox_topic_t;

/* A growable list of sequence numbers. */
typedef struct seq_list {
    int64_t *sl_seqs;
    size_t sl_count;
    size_t sl_cap;
} seq_list_t;

struct outbox {
    store_t *ob_store;
    kprod_t *ob_producer;
    const cfg_t *ob_cfg;
    char *ob_view;
    char *ob_group;
    char ob_replica[2 * OUTBOX_REPLICA_BYTES + 1]; /* note 3 */
    outbox_topic_t *ob_topics;
    size_t ob_topic_count;
    int64_t ob_seq; /* last sequence recorded (loaded per write txn) */
    bool ob_seq_dirty;
    int64_t ob_produced_seq; /* every entry up to it was handed to the producer */
    seq_list_t ob_acked; /* acknowledged since the last flush: to delete */
    seq_list_t ob_failed; /* delivery failed: to produce again (note 5) */
    bool ob_recovered; /* a recovery succeeded: publishing is allowed (note 4) */
    bool ob_live; /* "outbox_live" is set: this store may have published */
    int ob_recover_rc; /* the last recovery's result */
    int64_t ob_next_recover_ms;
    bool ob_unflushed; /* recorded since the last flush looked at the table */
    outbox_stats_t ob_stats;
};

/* Entry flags. */
#define OUTBOX_F_TXNID 1 /* the entry ends with the id of the txn that wrote it (be64) */
#define OUTBOX_F_ADOPTED 2 /* copied from a previous generation: its sequence is final */

/* The stored entry: fixed header, then topic, error, reason, key and value, then (with
 * OUTBOX_F_TXNID; entries of older versions lack it) the writing txn's id. */
typedef struct outbox_hdr {
    int32_t oh_partition;
    int32_t oh_dlq_partition;
    int64_t oh_offset;
    int64_t oh_timestamp_ms;
    uint8_t oh_has_value;
    uint8_t oh_flags; /* OUTBOX_F_* */
    uint16_t oh_topic_len;
    uint16_t oh_error_len;
    uint16_t oh_reason_len;
    uint32_t oh_key_len;
    uint32_t oh_value_len;
} outbox_hdr_t;

/* A decoded entry, borrowing from the stored bytes. */
typedef struct outbox_entry {
    int64_t oe_seq;
    outbox_hdr_t oe_hdr;
    const char *oe_topic, *oe_error, *oe_reason;
    const void *oe_key, *oe_value;
    size_t oe_body_len; /* header and variable parts, without the txn id */
    uint64_t oe_txnid; /* of the txn that wrote it; 0: written before ids were kept */
} outbox_entry_t;

static inline int entry_decode(const MDB_val *k, const MDB_val *v, outbox_entry_t *ret)
{
    if (k->mv_size != 8 || v->mv_size < sizeof(outbox_hdr_t))
        return RM_ESTORE;
    ret->oe_seq = (int64_t)store_get_be64(k->mv_data);
    memcpy(&ret->oe_hdr, v->mv_data, sizeof(outbox_hdr_t));
    const outbox_hdr_t *h = &ret->oe_hdr;
    size_t need = sizeof(*h) + h->oh_topic_len + h->oh_error_len + h->oh_reason_len +
                  h->oh_key_len + h->oh_value_len;
    ret->oe_body_len = need;
    ret->oe_txnid = 0;
    if (h->oh_flags & OUTBOX_F_TXNID) {
        if (v->mv_size != need + 8)
            return RM_ESTORE;
        ret->oe_txnid = store_get_be64((const unsigned char *)v->mv_data + need);
    } else if (v->mv_size != need) {
        return RM_ESTORE;
    }
    const char *p = (const char *)v->mv_data + sizeof(*h);
    ret->oe_topic = p;
    ret->oe_error = p += h->oh_topic_len;
    ret->oe_reason = p += h->oh_error_len;
    ret->oe_key = p += h->oh_reason_len;
    ret->oe_value = p + h->oh_key_len;
    return 0;
}

static inline int seq_list_add(seq_list_t *list, int64_t seq)
{
    if (list->sl_count == list->sl_cap) {
        size_t cap = list->sl_cap ? list->sl_cap * 2 : 64;
        int64_t *seqs = realloc(list->sl_seqs, cap * sizeof(*seqs));
        if (!seqs)
            return RM_ENOMEM;
        list->sl_seqs = seqs;
        list->sl_cap = cap;
    }
    list->sl_seqs[list->sl_count++] = seq;
    return 0;
}

static inline bool seq_list_has(const seq_list_t *list, int64_t seq)
{
    for (size_t i = 0; i < list->sl_count; i++)
        if (list->sl_seqs[i] == seq)
            return true;
    return false;
}

static inline void seq_list_remove(seq_list_t *list, int64_t seq)
{
    for (size_t i = 0; i < list->sl_count; i++)
        if (list->sl_seqs[i] == seq) {
            list->sl_seqs[i] = list->sl_seqs[--list->sl_count];
            return;
        }
}

/* meta name of the offset below which a previous generation dead-lettered (outbox_adopt) */
static inline void seen_name(char *out, size_t cap, const char *topic, int32_t partition)
{
    snprintf(out, cap, "dlq_seen/%s/%d", topic, partition);
}

/* Whether store's outbox may have published ("outbox_live", set by the first flush that
 * finds entries, before it produces any). Returns 0 or a store error. */
int outbox_is_live(store_t *store, MDB_txn *txn, bool *ret_live);
/* Sets "outbox_live" for outbox's store (once). Returns 0 or a store error. */
int outbox_mark_live(outbox_t *outbox);
/* Finishes a takeover a crash cut short (outbox_recover's first step; outbox.h). */
int outbox_finish_takeover(outbox_t *outbox);

#endif
