/* outbox: dead letters recorded with the batch, published to <topic>.dlq (see outbox.h). */
#include "outbox.h"
#include "failpoint.h"
#include "kafka.h"
#include "log.h"
#include "rm_err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OUTBOX_METADATA_TIMEOUT_MS 5000
#define OUTBOX_PUBLISH_MAX 10000 /* entries handed to the producer per flush call */
#define OUTBOX_RECOVER_SCAN 1000 /* newest dead letters read per DLQ partition at start */

typedef struct outbox_topic {
    char *ot_topic;       /* source topic */
    char *ot_dlq;         /* <topic>.dlq */
    int32_t ot_partitions; /* of the DLQ topic; 1 when unknown */
    bool ot_absent;        /* the broker said the DLQ topic does not exist (yet) */
} outbox_topic_t;

struct outbox {
    store_t *ob_store;
    rd_kafka_t *ob_producer;
    const cfg_t *ob_cfg;
    char *ob_view;
    char *ob_group;
    outbox_topic_t *ob_topics;
    size_t ob_topic_count;
    int64_t ob_seq;          /* last sequence recorded (loaded per write txn) */
    bool ob_seq_dirty;
    int64_t ob_produced_seq; /* highest sequence handed to the producer */
    int64_t *ob_acked;       /* sequences acknowledged since the last flush */
    size_t ob_acked_count;
    size_t ob_acked_cap;
    bool ob_failed;          /* a delivery failed: re-produce from the oldest entry */
    bool ob_unflushed;       /* recorded since the last flush looked at the table */
    outbox_stats_t ob_stats;
};

/* The largest original value a dead letter carries: below librdkafka's default
 * message.max.bytes (1,000,000) and a default broker's limit, with room for headers. */
#define OUTBOX_MAX_VALUE_BYTES 900000

/* The stored entry: fixed header then variable parts. */
typedef struct outbox_hdr {
    int32_t oh_partition;
    int32_t oh_dlq_partition;
    int64_t oh_offset;
    int64_t oh_timestamp_ms;
    uint8_t oh_has_value;
    uint8_t oh_pad;
    uint16_t oh_topic_len;
    uint16_t oh_error_len;
    uint16_t oh_reason_len;
    uint32_t oh_key_len;
    uint32_t oh_value_len;
} outbox_hdr_t;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    outbox_t *outbox = opaque;
    (void)rk;
    if (msg->err) {
        /* Re-produced from the oldest entry by the next flush. */
        log_warn("dead letter not acknowledged; it will be published again",
                 LOG_S("topic", rd_kafka_topic_name(msg->rkt)), LOG_I("partition", msg->partition),
                 LOG_I("outbox_seq", (int64_t)(intptr_t)msg->_private),
                 LOG_S("error", rd_kafka_err2str(msg->err)));
        outbox->ob_failed = true;
        return;
    }
    if (outbox->ob_acked_count == outbox->ob_acked_cap) {
        size_t cap = outbox->ob_acked_cap ? outbox->ob_acked_cap * 2 : 256;
        int64_t *acked = realloc(outbox->ob_acked, cap * sizeof(int64_t));
        if (!acked) {
            outbox->ob_failed = true; /* re-sent later, recovered from Kafka on restart */
            return;
        }
        outbox->ob_acked = acked;
        outbox->ob_acked_cap = cap;
    }
    outbox->ob_acked[outbox->ob_acked_count++] = (int64_t)(intptr_t)msg->_private;
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
        *ret_absent = md->topic_cnt == 1 &&
                      md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
    return count;
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
    /* Idempotence keeps per-partition order across retries (note 2); no message
     * timeout, so a dead letter is retried until the broker takes it. */
    const char *const defaults[] = {
        "enable.idempotence", "true", "message.timeout.ms", "0", "linger.ms", "5",
        "client.id", "readmodel-dlq", NULL,
    };
    rd_kafka_conf_t *conf = kafka_conf_new(cfg, defaults, errstr, errlen);
    if (!conf) {
        outbox_destroy(outbox);
        return NULL;
    }
    /* Consumer-only properties in the shared kafka map would make a producer warn. */
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, outbox);
    char rkerr[512];
    outbox->ob_producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, rkerr, sizeof(rkerr));
    if (!outbox->ob_producer) {
        snprintf(errstr, errlen, "kafka producer: %s", rkerr);
        rd_kafka_conf_destroy(conf);
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
    free(outbox->ob_acked);
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
        .oh_topic_len = (uint16_t)strlen(letter->ol_topic),
        .oh_error_len = (uint16_t)strlen(letter->ol_error),
        .oh_reason_len = (uint16_t)strnlen(letter->ol_reason, 1024),
        .oh_key_len = (uint32_t)letter->ol_key_len,
        .oh_value_len = (uint32_t)letter->ol_value_len,
    };
    size_t len = sizeof(hdr) + hdr.oh_topic_len + hdr.oh_error_len + hdr.oh_reason_len +
                 hdr.oh_key_len + hdr.oh_value_len;
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
    if (v->mv_size != need)
        return RM_ESTORE;
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
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(10);
    rd_kafka_header_add(hdrs, "__connect.errors.topic", -1, topic, -1);
    rd_kafka_header_add(hdrs, "__connect.errors.partition", -1, partition, -1);
    rd_kafka_header_add(hdrs, "__connect.errors.offset", -1, offset, -1);
    rd_kafka_header_add(hdrs, "__connect.errors.exception.class.name", -1, error, -1);
    rd_kafka_header_add(hdrs, "__connect.errors.exception.message", -1, reason, -1);
    rd_kafka_header_add(hdrs, "readmodel.original.timestamp", -1, ts, -1);
    rd_kafka_header_add(hdrs, "readmodel.consumer.group", -1, outbox->ob_group, -1);
    rd_kafka_header_add(hdrs, "readmodel.view", -1, outbox->ob_view, -1);
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

int outbox_flush(outbox_t *outbox, int timeout_ms)
{
    outbox->ob_unflushed = false; /* the scan below sees every committed entry */
    MDB_txn *txn;
    int rc = store_read_begin(outbox->ob_store, &txn);
    if (rc)
        return rc;
    MDB_cursor *cur = NULL;
    rc = rm_err_from_mdb(mdb_cursor_open(txn, store_dbi(outbox->ob_store, STORE_DB_OUTBOX), &cur));
    size_t produced = 0, pending = 0;
    if (outbox->ob_failed) {
        outbox->ob_failed = false;
        outbox->ob_produced_seq = 0; /* re-produce what was not acknowledged */
    }
    MDB_val k, v;
    int mrc;
    for (mrc = rc ? MDB_NOTFOUND : mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        pending++;
        outbox_entry_t e;
        if (entry_decode(&k, &v, &e) || e.oe_seq <= outbox->ob_produced_seq ||
            produced >= OUTBOX_PUBLISH_MAX)
            continue;
        rc = produce_entry(outbox, &e);
        if (rc)
            break;
        outbox->ob_produced_seq = e.oe_seq;
        produced++;
    }
    if (cur)
        mdb_cursor_close(cur);
    store_read_end(txn);
    outbox->ob_stats.os_pending = pending;
    if (pending == 0)
        return rc;
    rd_kafka_flush(outbox->ob_producer, timeout_ms);
    rd_kafka_poll(outbox->ob_producer, 0);
    if (outbox->ob_acked_count)
        failpoint("outbox-produced");
    int drc = delete_seqs(outbox, outbox->ob_acked, outbox->ob_acked_count);
    if (!drc) {
        outbox->ob_stats.os_published += outbox->ob_acked_count;
        outbox->ob_stats.os_pending -= outbox->ob_acked_count;
        outbox->ob_acked_count = 0;
    }
    if (outbox->ob_stats.os_pending)
        log_info("dead letters waiting for the broker", LOG_I("pending", outbox->ob_stats.os_pending),
                 LOG_I("produced_now", produced), LOG_S("error", rm_strerror(rc ? rc : drc)));
    return rc ? rc : drc;
}

/* Newest outbox sequence of this view found in one DLQ partition, or 0. */
static int64_t newest_published(outbox_t *outbox, rd_kafka_t *consumer, const char *dlq,
                                int32_t partition, int timeout_ms)
{
    int64_t low, high;
    if (rd_kafka_query_watermark_offsets(consumer, dlq, partition, &low, &high, timeout_ms) ||
        high <= low)
        return 0;
    int64_t start = high - OUTBOX_RECOVER_SCAN > low ? high - OUTBOX_RECOVER_SCAN : low;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, dlq, partition)->offset = start;
    rd_kafka_assign(consumer, list);
    rd_kafka_topic_partition_list_destroy(list);
    int64_t newest = 0;
    for (int64_t seen = start; seen < high;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, timeout_ms);
        if (!m)
            break;
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        seen = m->offset + 1;
        rd_kafka_headers_t *hdrs;
        const void *val;
        size_t size;
        if (rd_kafka_message_headers(m, &hdrs) == 0 &&
            rd_kafka_header_get_last(hdrs, "readmodel.view", &val, &size) == 0 &&
            size == strlen(outbox->ob_view) && memcmp(val, outbox->ob_view, size) == 0 &&
            rd_kafka_header_get_last(hdrs, "readmodel.outbox.seq", &val, &size) == 0 && size < 24) {
            char text[24];
            memcpy(text, val, size);
            text[size] = '\0';
            int64_t seq = strtoll(text, NULL, 10);
            if (seq > newest)
                newest = seq;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_assign(consumer, NULL);
    return newest;
}

int outbox_recover(outbox_t *outbox, int timeout_ms)
{
    /* Which (DLQ topic, partition) pairs have entries waiting? */
    MDB_txn *txn;
    int rc = store_read_begin(outbox->ob_store, &txn);
    if (rc)
        return rc;
    MDB_stat st;
    mdb_stat(txn, store_dbi(outbox->ob_store, STORE_DB_OUTBOX), &st);
    store_read_end(txn);
    outbox->ob_stats.os_pending = st.ms_entries;
    if (st.ms_entries == 0)
        return 0;
    char errstr[256];
    char group[300];
    snprintf(group, sizeof(group), "%s-dlq-recovery", outbox->ob_group);
    const char *const defaults[] = {"group.id", group, "enable.auto.commit", "false",
                                    "enable.partition.eof", "false",
                                    /* short fetch waits: the scan reads a few tails, one
                                       partition after the other (500 ms each otherwise) */
                                    "fetch.wait.max.ms", "10", NULL};
    rd_kafka_conf_t *conf = kafka_conf_new(outbox->ob_cfg, defaults, errstr, sizeof(errstr));
    if (!conf)
        return RM_ECONFIG;
    rd_kafka_t *consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (!consumer) {
        rd_kafka_conf_destroy(conf);
        return RM_EKAFKA;
    }
    size_t deleted_total = 0;
    for (size_t t = 0; !rc && t < outbox->ob_topic_count; t++) {
        const outbox_topic_t *ot = &outbox->ob_topics[t];
        /* Nothing was published to a topic that does not exist; asking for its
         * watermarks would only wait out the timeout. */
        for (int32_t p = 0; !rc && !ot->ot_absent && p < ot->ot_partitions; p++) {
            int64_t newest = newest_published(outbox, consumer, ot->ot_dlq, p, timeout_ms);
            if (!newest)
                continue;
            /* Delete this partition's entries up to newest. */
            int64_t *seqs = NULL;
            size_t count = 0, cap = 0;
            MDB_txn *rtxn = NULL;
            MDB_cursor *cur = NULL;
            rc = store_read_begin(outbox->ob_store, &rtxn);
            if (!rc)
                rc = rm_err_from_mdb(mdb_cursor_open(rtxn, store_dbi(outbox->ob_store, STORE_DB_OUTBOX), &cur));
            MDB_val k, v;
            for (int mrc = rc ? MDB_NOTFOUND : mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0;
                 mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
                outbox_entry_t e;
                if (entry_decode(&k, &v, &e) || e.oe_seq > newest ||
                    e.oe_hdr.oh_dlq_partition != p || e.oe_hdr.oh_topic_len != strlen(ot->ot_topic) ||
                    memcmp(e.oe_topic, ot->ot_topic, e.oe_hdr.oh_topic_len) != 0)
                    continue;
                if (count == cap) {
                    cap = cap ? cap * 2 : 64;
                    int64_t *grown = realloc(seqs, cap * sizeof(int64_t));
                    if (!grown) {
                        rc = RM_ENOMEM;
                        break;
                    }
                    seqs = grown;
                }
                seqs[count++] = e.oe_seq;
            }
            if (cur)
                mdb_cursor_close(cur);
            store_read_end(rtxn);
            if (!rc)
                rc = delete_seqs(outbox, seqs, count);
            if (!rc)
                deleted_total += count;
            free(seqs);
        }
    }
    rd_kafka_consumer_close(consumer);
    rd_kafka_destroy(consumer);
    outbox->ob_stats.os_recovered += deleted_total;
    outbox->ob_stats.os_pending -= deleted_total < outbox->ob_stats.os_pending ? deleted_total : outbox->ob_stats.os_pending;
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

int outbox_adopt(outbox_t *outbox, store_t *previous)
{
    MDB_txn *rtxn, *wtxn;
    int rc = store_read_begin(previous, &rtxn);
    if (rc)
        return rc;
    rc = store_write_begin(outbox->ob_store, &wtxn);
    if (rc) {
        store_read_end(rtxn);
        return rc;
    }
    /* Collect first, delete after: no cursor repositioning after deletes. */
    int64_t *seqs = NULL;
    size_t dropped = 0, cap = 0;
    MDB_cursor *cur = NULL;
    rc = rm_err_from_mdb(mdb_cursor_open(wtxn, store_dbi(outbox->ob_store, STORE_DB_OUTBOX), &cur));
    MDB_val k, v;
    int mrc = rc ? MDB_NOTFOUND : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    for (; mrc == 0; mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        outbox_entry_t e;
        char topic[256];
        store_offset_t seen;
        if (entry_decode(&k, &v, &e) || e.oe_hdr.oh_topic_len >= sizeof(topic))
            continue;
        memcpy(topic, e.oe_topic, e.oe_hdr.oh_topic_len);
        topic[e.oe_hdr.oh_topic_len] = '\0';
        /* The previous generation consumed this offset: it recorded (and published, or
         * still holds) the same dead letter. */
        if (store_offset_get(previous, rtxn, topic, e.oe_hdr.oh_partition, &seen) != 0 ||
            e.oe_hdr.oh_offset >= seen.so_next_offset)
            continue;
        if (dropped == cap) {
            cap = cap ? cap * 2 : 64;
            int64_t *grown = realloc(seqs, cap * sizeof(*seqs));
            if (!grown) {
                rc = RM_ENOMEM;
                break;
            }
            seqs = grown;
        }
        seqs[dropped++] = e.oe_seq;
    }
    if (cur)
        mdb_cursor_close(cur);
    if (!rc && mrc && mrc != MDB_NOTFOUND)
        rc = rm_err_from_mdb(mrc);
    for (size_t i = 0; !rc && i < dropped; i++) {
        unsigned char key[8];
        store_be64(key, (uint64_t)seqs[i]);
        MDB_val dk = {sizeof(key), key};
        rc = rm_err_from_mdb(mdb_del(wtxn, store_dbi(outbox->ob_store, STORE_DB_OUTBOX), &dk, NULL));
    }
    free(seqs);
    /* From now on, letters below the previous generation's offsets are not recorded
     * again: that generation consumed those messages and dead-lettered the poison. */
    if (!rc)
        rc = store_offset_foreach(previous, rtxn, remember_seen, &(adopt_ctx_t){outbox, wtxn});
    /* Sequences continue after the previous generation's, so "published" stays decidable
     * from the DLQ partitions' newest sequence (note 2). */
    int64_t old_seq = 0, new_seq = 0;
    if (!rc) {
        int grc = store_meta_get_i64(previous, rtxn, "outbox_seq", &old_seq);
        rc = grc == RM_ENOTFOUND ? 0 : grc;
    }
    if (!rc) {
        int grc = store_meta_get_i64(outbox->ob_store, wtxn, "outbox_seq", &new_seq);
        rc = grc == RM_ENOTFOUND ? 0 : grc;
    }
    if (!rc && old_seq > new_seq)
        rc = store_meta_put_i64(outbox->ob_store, wtxn, "outbox_seq", old_seq);
    store_read_end(rtxn);
    if (rc) {
        store_write_abort(wtxn);
        return rc;
    }
    rc = store_write_commit(outbox->ob_store, wtxn);
    if (!rc && dropped) {
        outbox->ob_stats.os_pending -= dropped < outbox->ob_stats.os_pending ? dropped
                                                                           : outbox->ob_stats.os_pending;
        log_info("dead letters already recorded by the previous generation dropped",
                 LOG_I("dropped", dropped));
    }
    return rc;
}

bool outbox_flush_due(const outbox_t *outbox)
{
    return outbox->ob_unflushed || outbox->ob_stats.os_pending > 0;
}

void outbox_get_stats(const outbox_t *outbox, outbox_stats_t *ret_stats)
{
    *ret_stats = outbox->ob_stats;
}
