/* outbox: dead letters recorded with the batch, published to <topic>.dlq (see outbox.h). */
#include "outbox.h"
#include "failpoint.h"
#include "kafka.h"
#include "log.h"
#include "rm_err.h"
#include "rm_time.h"

#include <errno.h>
#include <stdio.h>
#include <sys/random.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#define OUTBOX_METADATA_TIMEOUT_MS 5000
#define OUTBOX_REPLICA_BYTES 16 /* random bytes of a replica id (32 hex digits) */
#define OUTBOX_SCAN_MAX_ERRORS 100 /* consumer errors tolerated while scanning one partition */

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
    rd_kafka_t *ob_producer;
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

/* The largest original value a dead letter carries: below librdkafka's default
 * message.max.bytes (1,000,000) and a default broker's limit, with room for headers. */
#define OUTBOX_MAX_VALUE_BYTES 900000

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

static int seq_list_add(seq_list_t *list, int64_t seq)
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

static bool seq_list_has(const seq_list_t *list, int64_t seq)
{
    for (size_t i = 0; i < list->sl_count; i++)
        if (list->sl_seqs[i] == seq)
            return true;
    return false;
}

static void seq_list_remove(seq_list_t *list, int64_t seq)
{
    for (size_t i = 0; i < list->sl_count; i++)
        if (list->sl_seqs[i] == seq) {
            list->sl_seqs[i] = list->sl_seqs[--list->sl_count];
            return;
        }
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    outbox_t *outbox = opaque;
    (void)rk;
    int64_t seq = (int64_t)(intptr_t)msg->_private;
    /* Out of memory: a failed letter is then not retried in this run and an acknowledged
     * one not deleted; both stay in the outbox, and the next start's recovery decides. */
    if (msg->err) {
        log_warn("dead letter not acknowledged; it will be published again",
                 LOG_S("topic", rd_kafka_topic_name(msg->rkt)), LOG_I("partition", msg->partition),
                 LOG_I("outbox_seq", seq), LOG_S("error", rd_kafka_err2str(msg->err)));
        (void)seq_list_add(&outbox->ob_failed, seq); /* only this one is produced again */
    } else {
        (void)seq_list_add(&outbox->ob_acked, seq);
    }
}

/* The DLQ topic's partition count (1 when unknown); *ret_absent only when the broker
 * answered that the topic does not exist — never on a timeout, so that recovery is
 * skipped only where nothing can have been published. */
static int32_t dlq_partitions(rd_kafka_t *rk, const char *dlq, bool *ret_absent)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, dlq, NULL);
    const struct rd_kafka_metadata *md;
    int32_t count = 1;
    *ret_absent = false;
    if (rd_kafka_metadata(rk, 0, rkt, &md, OUTBOX_METADATA_TIMEOUT_MS) == 0) {
        if (md->topic_cnt == 1 && !md->topics[0].err && md->topics[0].partition_cnt > 0)
            count = md->topics[0].partition_cnt;
        *ret_absent =
            md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
    return count;
}

/* The replica id (note 3): read from meta, or drawn and stored on first use. */
static int load_replica(outbox_t *outbox)
{
    MDB_txn *txn;
    int rc = store_write_begin(outbox->ob_store, &txn);
    if (rc)
        return rc;
    const void *data;
    size_t len;
    rc = store_meta_get(outbox->ob_store, txn, "outbox_replica", &data, &len);
    if (rc == 0 && len == sizeof(outbox->ob_replica) - 1) {
        memcpy(outbox->ob_replica, data, len);
        outbox->ob_replica[len] = '\0';
        store_write_abort(txn);
        return 0;
    }
    unsigned char bytes[OUTBOX_REPLICA_BYTES];
    if (rc == RM_ENOTFOUND || rc == 0)
        rc = getrandom(bytes, sizeof(bytes), 0) == (ssize_t)sizeof(bytes) ? 0 : RM_EIO;
    for (size_t i = 0; !rc && i < sizeof(bytes); i++)
        snprintf(outbox->ob_replica + 2 * i, 3, "%02x", bytes[i]);
    if (!rc)
        rc = store_meta_put(outbox->ob_store, txn, "outbox_replica", outbox->ob_replica,
                            strlen(outbox->ob_replica));
    if (rc) {
        store_write_abort(txn);
        return rc;
    }
    return store_write_commit(outbox->ob_store, txn);
}

static int producer_new(outbox_t *outbox, char *errstr, size_t errlen)
{
    /* Idempotence keeps per-partition order across retries; no message timeout, so a
     * dead letter is retried until the broker takes it. */
    const char *const defaults[] = {
        "enable.idempotence", "true", "message.timeout.ms", "0", "linger.ms", "5", "client.id",
        "readmodel-dlq",      NULL,
    };
    rd_kafka_conf_t *conf = kafka_conf_new(outbox->ob_cfg, defaults, errstr, errlen);
    if (!conf)
        return RM_ECONFIG;
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, outbox);
    char rkerr[512];
    outbox->ob_producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, rkerr, sizeof(rkerr));
    if (!outbox->ob_producer) {
        snprintf(errstr, errlen, "kafka producer: %s", rkerr);
        rd_kafka_conf_destroy(conf);
        return RM_EKAFKA;
    }
    return 0;
}

/* An idempotent producer that met a permanent error (a letter the broker refuses: too
 * large for the DLQ topic, not authorized) is dead for good: every later produce fails.
 * Start a new one. What the old one had in flight may or may not be in Kafka, so a
 * recovery decides before anything is published again (note 4). */
static int producer_renew_if_fatal(outbox_t *outbox)
{
    char reason[512];
    if (!rd_kafka_fatal_error(outbox->ob_producer, reason, sizeof(reason)))
        return 0;
    log_warn("dead-letter producer failed for good; starting a new one", LOG_S("error", reason));
    rd_kafka_destroy(outbox->ob_producer);
    outbox->ob_producer = NULL;
    outbox->ob_recovered = false;
    outbox->ob_next_recover_ms = 0;
    char errstr[512];
    return producer_new(outbox, errstr, sizeof(errstr));
}

outbox_t *outbox_new(store_t *store, const cfg_t *cfg, const char *view_name, const char *group,
                     char *const *topics, size_t topic_count, char *errstr, size_t errlen)
{
    outbox_t *outbox = calloc(1, sizeof(*outbox));
    if (!outbox || !(outbox->ob_view = strdup(view_name)) || !(outbox->ob_group = strdup(group)) ||
        !(outbox->ob_topics = calloc(topic_count, sizeof(*outbox->ob_topics)))) {
        snprintf(errstr, errlen, "out of memory");
        outbox_destroy(outbox);
        return NULL;
    }
    outbox->ob_store = store;
    outbox->ob_cfg = cfg;
    if (producer_new(outbox, errstr, errlen)) {
        outbox_destroy(outbox);
        return NULL;
    }
    for (size_t i = 0; i < topic_count; i++) {
        outbox_topic_t *ot = &outbox->ob_topics[i];
        size_t len = strlen(topics[i]) + sizeof(OUTBOX_DLQ_SUFFIX);
        ot->ot_topic = strdup(topics[i]);
        ot->ot_dlq = malloc(len);
        if (!ot->ot_topic || !ot->ot_dlq) {
            snprintf(errstr, errlen, "out of memory");
            outbox_destroy(outbox);
            return NULL;
        }
        snprintf(ot->ot_dlq, len, "%s%s", topics[i], OUTBOX_DLQ_SUFFIX);
        ot->ot_partitions = dlq_partitions(outbox->ob_producer, ot->ot_dlq, &ot->ot_absent);
        outbox->ob_topic_count = i + 1;
    }
    int rc = load_replica(outbox);
    if (rc) {
        snprintf(errstr, errlen, "outbox: cannot keep the replica id: %s", rm_strerror(rc));
        outbox_destroy(outbox);
        return NULL;
    }
    return outbox;
}

void outbox_destroy(outbox_t *outbox)
{
    if (!outbox)
        return;
    if (outbox->ob_producer) {
        rd_kafka_flush(outbox->ob_producer, 2000);
        rd_kafka_destroy(outbox->ob_producer);
    }
    for (size_t i = 0; i < outbox->ob_topic_count; i++) {
        free(outbox->ob_topics[i].ot_topic);
        free(outbox->ob_topics[i].ot_dlq);
    }
    free(outbox->ob_topics);
    free(outbox->ob_acked.sl_seqs);
    free(outbox->ob_failed.sl_seqs);
    free(outbox->ob_view);
    free(outbox->ob_group);
    free(outbox);
}

int outbox_txn_begin(outbox_t *outbox, MDB_txn *txn)
{
    int rc = store_meta_get_i64(outbox->ob_store, txn, "outbox_seq", &outbox->ob_seq);
    if (rc == RM_ENOTFOUND) {
        outbox->ob_seq = 0;
        rc = 0;
    }
    outbox->ob_seq_dirty = false;
    return rc;
}

int outbox_txn_precommit(outbox_t *outbox, MDB_txn *txn)
{
    if (!outbox->ob_seq_dirty)
        return 0;
    outbox->ob_seq_dirty = false;
    return store_meta_put_i64(outbox->ob_store, txn, "outbox_seq", outbox->ob_seq);
}

static const outbox_topic_t *topic_of(const outbox_t *outbox, const char *topic)
{
    for (size_t i = 0; i < outbox->ob_topic_count; i++)
        if (strcmp(outbox->ob_topics[i].ot_topic, topic) == 0)
            return &outbox->ob_topics[i];
    return NULL;
}

/* meta name of the offset below which a previous generation dead-lettered (outbox_adopt) */
static void seen_name(char *out, size_t cap, const char *topic, int32_t partition)
{
    snprintf(out, cap, "dlq_seen/%s/%d", topic, partition);
}

int outbox_record(outbox_t *outbox, MDB_txn *txn, const outbox_letter_t *letter)
{
    char seen[300];
    int64_t below;
    seen_name(seen, sizeof(seen), letter->ol_topic, letter->ol_partition);
    int src = store_meta_get_i64(outbox->ob_store, txn, seen, &below);
    if (src == 0 && letter->ol_offset < below)
        return 0; /* a previous generation of this store recorded this very dead letter */
    if (src && src != RM_ENOTFOUND)
        return src;
    const outbox_topic_t *ot = topic_of(outbox, letter->ol_topic);
    outbox_hdr_t hdr = {
        .oh_partition = letter->ol_partition,
        .oh_dlq_partition = ot ? letter->ol_partition % ot->ot_partitions : 0,
        .oh_offset = letter->ol_offset,
        .oh_timestamp_ms = letter->ol_timestamp_ms,
        .oh_has_value = letter->ol_value != NULL,
        .oh_flags = OUTBOX_F_TXNID,
        .oh_topic_len = (uint16_t)strlen(letter->ol_topic),
        .oh_error_len = (uint16_t)strlen(letter->ol_error),
        .oh_reason_len = (uint16_t)strnlen(letter->ol_reason, 1024),
        .oh_key_len = (uint32_t)letter->ol_key_len,
        .oh_value_len = (uint32_t)letter->ol_value_len,
    };
    size_t body = sizeof(hdr) + hdr.oh_topic_len + hdr.oh_error_len + hdr.oh_reason_len +
                  hdr.oh_key_len + hdr.oh_value_len;
    size_t len = body + 8;
    unsigned char key[8];
    store_be64(key, (uint64_t)++outbox->ob_seq);
    outbox->ob_seq_dirty = true;
    MDB_val k = {sizeof(key), key}, v = {len, NULL};
    int rc = mdb_put(txn, store_dbi(outbox->ob_store, STORE_DB_OUTBOX), &k, &v, MDB_RESERVE);
    if (rc)
        return rm_err_from_mdb(rc);
    unsigned char *p = v.mv_data;
    memcpy(p, &hdr, sizeof(hdr));
    p += sizeof(hdr);
    memcpy(p, letter->ol_topic, hdr.oh_topic_len);
    p += hdr.oh_topic_len;
    memcpy(p, letter->ol_error, hdr.oh_error_len);
    p += hdr.oh_error_len;
    memcpy(p, letter->ol_reason, hdr.oh_reason_len);
    p += hdr.oh_reason_len;
    if (hdr.oh_key_len)
        memcpy(p, letter->ol_key, hdr.oh_key_len);
    p += hdr.oh_key_len;
    if (hdr.oh_value_len)
        memcpy(p, letter->ol_value, hdr.oh_value_len);
    /* Published only once this txn is durable (note 2). */
    store_be64((unsigned char *)v.mv_data + body, (uint64_t)mdb_txn_id(txn));
    outbox->ob_stats.os_recorded++;
    outbox->ob_unflushed = true; /* even if txn aborts: one flush too many is harmless */
    return 0;
}

/* A decoded entry, borrowing from the stored bytes. */
typedef struct outbox_entry {
    int64_t oe_seq;
    outbox_hdr_t oe_hdr;
    const char *oe_topic, *oe_error, *oe_reason;
    const void *oe_key, *oe_value;
    size_t oe_body_len; /* header and variable parts, without the txn id */
    uint64_t oe_txnid; /* of the txn that wrote it; 0: written before ids were kept */
} outbox_entry_t;

static int entry_decode(const MDB_val *k, const MDB_val *v, outbox_entry_t *ret)
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

static int produce_entry(outbox_t *outbox, const outbox_entry_t *e)
{
    char topic[256], dlq[272], partition[16], offset[24], ts[24], seq[24], error[128], reason[1100];
    const outbox_hdr_t *h = &e->oe_hdr;
    snprintf(topic, sizeof(topic), "%.*s", (int)h->oh_topic_len, e->oe_topic);
    snprintf(dlq, sizeof(dlq), "%s%s", topic, OUTBOX_DLQ_SUFFIX);
    snprintf(partition, sizeof(partition), "%d", h->oh_partition);
    snprintf(offset, sizeof(offset), "%lld", (long long)h->oh_offset);
    snprintf(ts, sizeof(ts), "%lld", (long long)h->oh_timestamp_ms);
    snprintf(seq, sizeof(seq), "%lld", (long long)e->oe_seq);
    snprintf(error, sizeof(error), "%.*s", (int)h->oh_error_len, e->oe_error);
    snprintf(reason, sizeof(reason), "%.*s", (int)h->oh_reason_len, e->oe_reason);
    /* Header names follow Kafka Connect's dead-letter convention, plus our own. */
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(12);
    rd_kafka_header_add(hdrs, "__connect.errors.topic", -1, topic, -1);
    rd_kafka_header_add(hdrs, "__connect.errors.partition", -1, partition, -1);
    rd_kafka_header_add(hdrs, "__connect.errors.offset", -1, offset, -1);
    rd_kafka_header_add(hdrs, "__connect.errors.exception.class.name", -1, error, -1);
    rd_kafka_header_add(hdrs, "__connect.errors.exception.message", -1, reason, -1);
    rd_kafka_header_add(hdrs, "readmodel.original.timestamp", -1, ts, -1);
    rd_kafka_header_add(hdrs, "readmodel.consumer.group", -1, outbox->ob_group, -1);
    rd_kafka_header_add(hdrs, "readmodel.view", -1, outbox->ob_view, -1);
    rd_kafka_header_add(hdrs, "readmodel.replica", -1, outbox->ob_replica, -1);
    rd_kafka_header_add(hdrs, "readmodel.outbox.seq", -1, seq, -1);
    /* Locals, not expressions: librdkafka's RD_KAFKA_V_* macros cast their argument
     * without parentheses, so "a ? b : c" would be mis-parsed. */
    const void *key = h->oh_key_len ? e->oe_key : NULL;
    void *value = h->oh_has_value ? (void *)e->oe_value : NULL;
    size_t value_len = h->oh_value_len;
    if (value && value_len > OUTBOX_MAX_VALUE_BYTES) {
        char value_bytes[24]; /* rd_kafka_header_add copies it */
        /* It would exceed the producer's (and a default broker's) message size and
         * block every dead letter behind it. The bytes stay readable at the original
         * coordinates in the headers. */
        snprintf(value_bytes, sizeof(value_bytes), "%zu", value_len);
        rd_kafka_header_add(hdrs, "readmodel.value.dropped", -1, "too-large", -1);
        rd_kafka_header_add(hdrs, "readmodel.value.bytes", -1, value_bytes, -1);
        value = NULL;
        value_len = 0;
    }
    rd_kafka_resp_err_t err = rd_kafka_producev(
        outbox->ob_producer, RD_KAFKA_V_TOPIC(dlq), RD_KAFKA_V_PARTITION(h->oh_dlq_partition),
        RD_KAFKA_V_KEY(key, h->oh_key_len), RD_KAFKA_V_VALUE(value, value_len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
        RD_KAFKA_V_OPAQUE((void *)(intptr_t)e->oe_seq), RD_KAFKA_V_END);
    if (err) {
        rd_kafka_headers_destroy(hdrs);
        return kafka_err(err);
    }
    return 0;
}

static int delete_seqs(outbox_t *outbox, const int64_t *seqs, size_t count)
{
    if (!count)
        return 0;
    MDB_txn *txn;
    int rc = store_write_begin(outbox->ob_store, &txn);
    for (size_t i = 0; !rc && i < count; i++) {
        unsigned char key[8];
        store_be64(key, (uint64_t)seqs[i]);
        MDB_val k = {8, key};
        int mrc = mdb_del(txn, store_dbi(outbox->ob_store, STORE_DB_OUTBOX), &k, NULL);
        rc = mrc == MDB_NOTFOUND ? 0 : rm_err_from_mdb(mrc);
    }
    if (rc) {
        store_write_abort(txn);
        return rc;
    }
    return store_write_commit(outbox->ob_store, txn);
}

static int mark_live(outbox_t *outbox);

int outbox_flush(outbox_t *outbox, int timeout_ms)
{
    int prc = producer_renew_if_fatal(outbox);
    if (prc)
        return prc;
    if (!outbox->ob_recovered) {
        /* Note 4: publishing before a recovery would send again what Kafka holds. */
        if (rm_mono_ms() < outbox->ob_next_recover_ms)
            return outbox->ob_recover_rc;
        int rrc = outbox_recover(outbox, timeout_ms);
        if (rrc)
            return rrc;
    }
    if (!outbox->ob_live && (outbox->ob_unflushed || outbox->ob_stats.os_pending)) {
        /* Before anything of this store can reach Kafka: from now on its entries keep
         * their sequences (outbox_adopt renumbers only a store that never published). */
        int lrc = mark_live(outbox);
        if (lrc)
            return lrc;
    }
    outbox->ob_unflushed = false; /* the scan below sees every committed entry */
    uint64_t durable = store_durable_txnid(outbox->ob_store);
    MDB_txn *txn;
    int rc = store_read_begin(outbox->ob_store, &txn);
    if (rc)
        return rc;
    MDB_cursor *cur = NULL;
    rc = rm_err_from_mdb(mdb_cursor_open(txn, store_dbi(outbox->ob_store, STORE_DB_OUTBOX), &cur));
    size_t produced = 0, pending = 0;
    /* Once one entry cannot go (not durable yet, or the flush is full), no later one
     * goes either: ob_produced_seq must never pass an entry that was not produced. */
    bool stopped = false, undurable = false;
    MDB_val k, v;
    int mrc;
    for (mrc = rc ? MDB_NOTFOUND : mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        pending++;
        outbox_entry_t e;
        if (entry_decode(&k, &v, &e))
            continue;
        bool retry = seq_list_has(&outbox->ob_failed, e.oe_seq);
        if (stopped || (!retry && e.oe_seq <= outbox->ob_produced_seq))
            continue; /* in flight, or acknowledged and about to be deleted */
        if (e.oe_txnid > durable || produced >= OUTBOX_PUBLISH_MAX) {
            stopped = true; /* note 2: an OS crash could still take it back */
            undurable = e.oe_txnid > durable;
            continue;
        }
        rc = produce_entry(outbox, &e);
        if (rc)
            break;
        if (retry)
            seq_list_remove(&outbox->ob_failed, e.oe_seq);
        else
            outbox->ob_produced_seq = e.oe_seq;
        produced++;
    }
    if (cur)
        mdb_cursor_close(cur);
    store_read_end(txn);
    outbox->ob_stats.os_pending = pending;
    if (undurable && !store_syncs_in_background(outbox->ob_store)) {
        /* nometasync: the newest commit is durable only once the next one is; in a
         * quiet moment there may be none. The next flush publishes it. */
        int src = store_sync(outbox->ob_store);
        rc = rc ? rc : src;
        outbox->ob_unflushed = true;
    }
    if (pending == 0)
        return rc;
    rd_kafka_flush(outbox->ob_producer, timeout_ms);
    rd_kafka_poll(outbox->ob_producer, 0);
    if (outbox->ob_acked.sl_count)
        failpoint("outbox-produced");
    size_t acked = outbox->ob_acked.sl_count;
    int drc = delete_seqs(outbox, outbox->ob_acked.sl_seqs, acked);
    if (!drc) {
        outbox->ob_stats.os_published += acked;
        outbox->ob_stats.os_pending -= acked < pending ? acked : pending;
        outbox->ob_acked.sl_count = 0;
    }
    return rc ? rc : drc;
}

/* The sequences of this replica's letters of this view among the last
 * OUTBOX_RECOVER_SCAN letters of one DLQ partition (note 4), appended to ret_seqs.
 * Returns 0, or an error when the partition could not be read to its end. */
static int scan_published(outbox_t *outbox, rd_kafka_t *consumer, const char *dlq,
                          int32_t partition, int timeout_ms, seq_list_t *ret_seqs)
{
    int64_t low, high;
    rd_kafka_resp_err_t err =
        rd_kafka_query_watermark_offsets(consumer, dlq, partition, &low, &high, timeout_ms);
    if (err)
        return kafka_err(err);
    if (high <= low)
        return 0;
    int64_t start = high - OUTBOX_RECOVER_SCAN > low ? high - OUTBOX_RECOVER_SCAN : low;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, dlq, partition)->offset = start;
    err = rd_kafka_assign(consumer, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (err)
        return kafka_err(err);
    int rc = 0, errors = 0;
    size_t view_len = strlen(outbox->ob_view), replica_len = strlen(outbox->ob_replica);
    for (int64_t seen = start; !rc && seen < high;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, timeout_ms);
        if (!m) {
            rc = RM_ETIMEOUT; /* a partial scan would make published letters look unpublished */
            break;
        }
        if (m->err) {
            if (++errors > OUTBOX_SCAN_MAX_ERRORS)
                rc = kafka_err(m->err);
            rd_kafka_message_destroy(m);
            continue;
        }
        seen = m->offset + 1;
        rd_kafka_headers_t *hdrs;
        const void *val;
        size_t size;
        if (rd_kafka_message_headers(m, &hdrs) == 0 &&
            rd_kafka_header_get_last(hdrs, "readmodel.view", &val, &size) == 0 &&
            size == view_len && memcmp(val, outbox->ob_view, size) == 0 &&
            rd_kafka_header_get_last(hdrs, "readmodel.replica", &val, &size) == 0 &&
            size == replica_len && memcmp(val, outbox->ob_replica, size) == 0 &&
            rd_kafka_header_get_last(hdrs, "readmodel.outbox.seq", &val, &size) == 0 && size < 24) {
            char text[24];
            memcpy(text, val, size);
            text[size] = '\0';
            rc = seq_list_add(ret_seqs, strtoll(text, NULL, 10));
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_assign(consumer, NULL);
    return rc;
}

/* A DLQ partition with entries waiting. */
typedef struct recover_part {
    char rp_dlq[272];
    int32_t rp_partition;
} recover_part_t;

static bool entry_in_part(const outbox_entry_t *e, const recover_part_t *rp)
{
    size_t len = strlen(rp->rp_dlq) - strlen(OUTBOX_DLQ_SUFFIX);
    return e->oe_hdr.oh_dlq_partition == rp->rp_partition && e->oe_hdr.oh_topic_len == len &&
           memcmp(e->oe_topic, rp->rp_dlq, len) == 0;
}

/* The DLQ partitions that entries wait for, each once. */
static int waiting_parts(outbox_t *outbox, recover_part_t **ret_parts, size_t *ret_count)
{
    MDB_txn *txn;
    int rc = store_read_begin(outbox->ob_store, &txn);
    if (rc)
        return rc;
    MDB_cursor *cur = NULL;
    rc = rm_err_from_mdb(mdb_cursor_open(txn, store_dbi(outbox->ob_store, STORE_DB_OUTBOX), &cur));
    recover_part_t *parts = NULL;
    size_t count = 0, cap = 0;
    MDB_val k, v;
    for (int mrc = rc ? MDB_NOTFOUND : mdb_cursor_get(cur, &k, &v, MDB_FIRST); !rc && mrc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        outbox_entry_t e;
        if (entry_decode(&k, &v, &e) || e.oe_hdr.oh_topic_len >= 256)
            continue;
        bool known = false;
        for (size_t i = 0; !known && i < count; i++)
            known = entry_in_part(&e, &parts[i]);
        if (known)
            continue;
        if (count == cap) {
            cap = cap ? cap * 2 : 8;
            recover_part_t *grown = realloc(parts, cap * sizeof(*parts));
            if (!grown) {
                rc = RM_ENOMEM;
                break;
            }
            parts = grown;
        }
        snprintf(parts[count].rp_dlq, sizeof(parts[count].rp_dlq), "%.*s%s",
                 (int)e.oe_hdr.oh_topic_len, e.oe_topic, OUTBOX_DLQ_SUFFIX);
        parts[count++].rp_partition = e.oe_hdr.oh_dlq_partition;
    }
    if (cur)
        mdb_cursor_close(cur);
    store_read_end(txn);
    if (rc) {
        free(parts);
        return rc;
    }
    *ret_parts = parts;
    *ret_count = count;
    return 0;
}

/* Deletes the entries of one DLQ partition whose sequence is in published. */
static int delete_published(outbox_t *outbox, const recover_part_t *rp, const seq_list_t *published,
                            size_t *ret_deleted)
{
    seq_list_t doomed = {0};
    MDB_txn *txn;
    int rc = store_read_begin(outbox->ob_store, &txn);
    if (rc)
        return rc;
    MDB_cursor *cur = NULL;
    rc = rm_err_from_mdb(mdb_cursor_open(txn, store_dbi(outbox->ob_store, STORE_DB_OUTBOX), &cur));
    MDB_val k, v;
    for (int mrc = rc ? MDB_NOTFOUND : mdb_cursor_get(cur, &k, &v, MDB_FIRST); !rc && mrc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        outbox_entry_t e;
        if (entry_decode(&k, &v, &e) == 0 && entry_in_part(&e, rp) &&
            seq_list_has(published, e.oe_seq))
            rc = seq_list_add(&doomed, e.oe_seq);
    }
    if (cur)
        mdb_cursor_close(cur);
    store_read_end(txn);
    if (!rc)
        rc = delete_seqs(outbox, doomed.sl_seqs, doomed.sl_count);
    if (!rc)
        *ret_deleted = doomed.sl_count;
    free(doomed.sl_seqs);
    return rc;
}

static bool dlq_absent(const outbox_t *outbox, const char *dlq)
{
    for (size_t i = 0; i < outbox->ob_topic_count; i++)
        if (strcmp(outbox->ob_topics[i].ot_dlq, dlq) == 0)
            return outbox->ob_topics[i].ot_absent;
    return false;
}

static int finish_takeover(outbox_t *outbox);

int outbox_recover(outbox_t *outbox, int timeout_ms)
{
    outbox->ob_next_recover_ms = rm_mono_ms() + OUTBOX_RECOVER_RETRY_MS;
    recover_part_t *parts = NULL;
    size_t count = 0, deleted_total = 0;
    int rc = finish_takeover(outbox);
    if (!rc)
        rc = waiting_parts(outbox, &parts, &count);
    rd_kafka_t *consumer = NULL;
    if (!rc && count) {
        char errstr[256], group[300];
        snprintf(group, sizeof(group), "%s-dlq-recovery", outbox->ob_group);
        const char *const defaults[] = {"group.id", group, "enable.auto.commit", "false",
                                        "enable.partition.eof", "false",
                                        /* short fetch waits: the scan reads a few tails, one
                                           partition after the other (500 ms each otherwise) */
                                        "fetch.wait.max.ms", "10", NULL};
        rd_kafka_conf_t *conf = kafka_conf_new(outbox->ob_cfg, defaults, errstr, sizeof(errstr));
        if (!conf)
            rc = RM_ECONFIG;
        else if (!(consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr)))) {
            rd_kafka_conf_destroy(conf);
            rc = RM_EKAFKA;
        }
    }
    for (size_t i = 0; !rc && i < count; i++) {
        /* Nothing was published to a topic that does not exist; asking for its
         * watermarks would only wait out the timeout. */
        if (dlq_absent(outbox, parts[i].rp_dlq))
            continue;
        seq_list_t published = {0};
        size_t deleted = 0;
        rc = scan_published(outbox, consumer, parts[i].rp_dlq, parts[i].rp_partition, timeout_ms,
                            &published);
        if (!rc && published.sl_count)
            rc = delete_published(outbox, &parts[i], &published, &deleted);
        deleted_total += deleted;
        free(published.sl_seqs);
    }
    if (consumer) {
        rd_kafka_consumer_close(consumer);
        rd_kafka_destroy(consumer);
    }
    free(parts);
    MDB_txn *txn;
    MDB_stat st = {0};
    if (store_read_begin(outbox->ob_store, &txn) == 0) {
        mdb_stat(txn, store_dbi(outbox->ob_store, STORE_DB_OUTBOX), &st);
        store_read_end(txn);
    }
    outbox->ob_stats.os_pending = st.ms_entries;
    outbox->ob_stats.os_recovered += deleted_total;
    outbox->ob_recover_rc = rc;
    if (!rc) {
        /* Every entry left is unpublished: produce them all from the start. */
        outbox->ob_recovered = true;
        outbox->ob_produced_seq = 0;
        outbox->ob_failed.sl_count = 0;
        outbox->ob_unflushed = st.ms_entries > 0;
    }
    return rc;
}

/* ---- generations (note 6) ---- */

/* Whether this store's outbox may have published ("outbox_live", set by the first flush
 * that finds entries, before it produces any). */
static int is_live(store_t *store, MDB_txn *txn, bool *ret_live)
{
    int64_t live = 0;
    int rc = store_meta_get_i64(store, txn, "outbox_live", &live);
    if (rc && rc != RM_ENOTFOUND)
        return rc;
    *ret_live = rc == 0 && live;
    return 0;
}

static int mark_live(outbox_t *outbox)
{
    MDB_txn *txn;
    int rc = store_write_begin(outbox->ob_store, &txn);
    bool live = false;
    if (!rc)
        rc = is_live(outbox->ob_store, txn, &live);
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
static int finish_takeover(outbox_t *outbox)
{
    MDB_txn *txn;
    int rc = store_read_begin(outbox->ob_store, &txn);
    if (rc)
        return rc;
    const void *data;
    size_t len = 0;
    char dir[4096] = "";
    bool live = false;
    rc = is_live(outbox->ob_store, txn, &live);
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
    int rc = is_live(store, wtxn, &live);
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

bool outbox_flush_due(const outbox_t *outbox)
{
    return outbox->ob_unflushed || outbox->ob_stats.os_pending > 0;
}

void outbox_get_stats(const outbox_t *outbox, outbox_stats_t *ret_stats)
{
    *ret_stats = outbox->ob_stats;
}
