/* outbox: dead letters recorded with the batch, published to <topic>.dlq (see outbox.h). */
#include "outbox.h"
#include "outbox_int.h"
#include "failpoint.h"
#include "kafka.h"
#include "log.h"
#include "rm_err.h"
#include "rm_time.h"
#include "topic_counts.h"

#include <errno.h>
#include <stdio.h>
#include <sys/random.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#define OUTBOX_METADATA_TIMEOUT_MS 5000
#define OUTBOX_METADATA_MIN_MS 200 /* per DLQ topic lookup once that deadline passed */
#define OUTBOX_SCAN_MAX_ERRORS 100 /* consumer errors tolerated while scanning one partition */
/* Last wait for acks when the outbox is destroyed: its callers have flushed already
 * (pipeline_run's exit, a generation switch), so this only collects acks on their way. */
#define OUTBOX_DESTROY_FLUSH_MS 1000

/* The largest original value a dead letter carries: below librdkafka's default
 * message.max.bytes (1,000,000) and a default broker's limit, with room for headers. */
#define OUTBOX_MAX_VALUE_BYTES 900000

static void on_delivery(void *opaque, const kprod_report_t *report)
{
    outbox_t *outbox = opaque;
    int64_t seq = (int64_t)(intptr_t)report->kr_opaque;
    /* Out of memory: a failed letter is then not retried in this run and an acknowledged
     * one not deleted; both stay in the outbox, and the next start's recovery decides. */
    if (report->kr_err) {
        log_warn("dead letter not acknowledged; it will be published again",
                 LOG_S("topic", report->kr_topic), LOG_I("partition", report->kr_partition),
                 LOG_I("outbox_seq", seq), LOG_S("error", report->kr_reason));
        (void)seq_list_add(&outbox->ob_failed, seq); /* only this one is produced again */
    } else {
        (void)seq_list_add(&outbox->ob_acked, seq);
    }
}

/* The DLQ topic's partition count (1 when unknown); *ret_absent only when the broker
 * answered that the topic does not exist — never on a timeout, so that recovery is
 * skipped only where nothing can have been published. Waits at most timeout_ms. */
static int32_t dlq_partitions(rd_kafka_t *rk, const char *dlq, int timeout_ms, bool *ret_absent)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, dlq, NULL);
    const struct rd_kafka_metadata *md;
    int32_t count = 1;
    *ret_absent = false;
    if (rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms) == 0) {
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
    outbox->ob_producer = kprod_new(conf, on_delivery, outbox, errstr, errlen);
    return outbox->ob_producer ? 0 : RM_EKAFKA;
}

/* An idempotent producer that met a permanent error (a letter the broker refuses: too
 * large for the DLQ topic, not authorized) is dead for good: every later produce fails.
 * Start a new one. What the old one had in flight may or may not be in Kafka, so a
 * recovery decides before anything is published again (note 4). */
static int producer_renew_if_fatal(outbox_t *outbox)
{
    char reason[512];
    if (!kprod_fatal(outbox->ob_producer, reason, sizeof(reason)))
        return 0;
    log_warn("dead-letter producer failed for good; starting a new one", LOG_S("error", reason));
    kprod_destroy(outbox->ob_producer, 0, false);
    outbox->ob_producer = NULL;
    outbox->ob_recovered = false;
    outbox->ob_next_recover_ms = 0;
    char errstr[512];
    return producer_new(outbox, errstr, sizeof(errstr));
}

int outbox_new(store_t *store, const cfg_t *cfg, const char *view_name, const char *group,
               char *const *topics, size_t topic_count, outbox_t **ret_outbox, char *errstr,
               size_t errlen)
{
    outbox_t *outbox = calloc(1, sizeof(*outbox));
    if (!outbox || !(outbox->ob_view = strdup(view_name)) || !(outbox->ob_group = strdup(group)) ||
        !(outbox->ob_topics = calloc(topic_count, sizeof(*outbox->ob_topics)))) {
        snprintf(errstr, errlen, "out of memory");
        outbox_destroy(outbox);
        return RM_ENOMEM;
    }
    outbox->ob_store = store;
    outbox->ob_cfg = cfg;
    if (producer_new(outbox, errstr, errlen)) {
        /* librdkafka builds a client or refuses its settings (a property, a combination
         * such as acks=1 with idempotence, a certificate it cannot load). */
        outbox_destroy(outbox);
        return RM_ECONFIG;
    }
    /* One deadline for all the lookups: with the brokers down, seven topics at 5 s each
     * held a start (and a SIGTERM during it) for 35 s. Past it, each lookup still gets a
     * broker round trip's time (a connected broker answers in milliseconds); one that
     * times out leaves its count unknown (1). */
    int64_t deadline = rm_mono_ms() + OUTBOX_METADATA_TIMEOUT_MS;
    for (size_t i = 0; i < topic_count; i++) {
        outbox_topic_t *ot = &outbox->ob_topics[i];
        size_t len = strlen(topics[i]) + sizeof(OUTBOX_DLQ_SUFFIX);
        ot->ot_topic = strdup(topics[i]);
        ot->ot_dlq = malloc(len);
        if (!ot->ot_topic || !ot->ot_dlq) {
            snprintf(errstr, errlen, "out of memory");
            outbox_destroy(outbox);
            return RM_ENOMEM;
        }
        snprintf(ot->ot_dlq, len, "%s%s", topics[i], OUTBOX_DLQ_SUFFIX);
        int64_t left = deadline - rm_mono_ms();
        int wait_ms = left > OUTBOX_METADATA_MIN_MS ? (int)left : OUTBOX_METADATA_MIN_MS;
        ot->ot_partitions =
            dlq_partitions(kprod_rk(outbox->ob_producer), ot->ot_dlq, wait_ms, &ot->ot_absent);
        outbox->ob_topic_count = i + 1;
    }
    int rc = load_replica(outbox);
    if (rc) {
        snprintf(errstr, errlen, "outbox: cannot keep the replica id: %s", rm_strerror(rc));
        outbox_destroy(outbox);
        return rc;
    }
    *ret_outbox = outbox;
    return 0;
}

void outbox_destroy(outbox_t *outbox)
{
    if (!outbox)
        return;
    /* Bounded: letters the broker does not take now stay in the store (note 5), and the
     * next start's recovery (note 4) tells the ones that got through from the rest.
     * Purged, so that destroy does not wait for them (message.timeout.ms is infinite) or
     * for the idempotent producer's id from a broker that is gone. */
    kprod_destroy(outbox->ob_producer, OUTBOX_DESTROY_FLUSH_MS, true);
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
    rc = topic_counts_add(outbox->ob_store, txn, letter->ol_topic, hdr.oh_topic_len,
                          TOPIC_COUNTS_DEAD_LETTERS, 1);
    return rc ? rc
              : topic_counts_add(outbox->ob_store, txn, letter->ol_topic, hdr.oh_topic_len,
                                 TOPIC_COUNTS_RECORDED, 1);
}

int outbox_entry_topic(const MDB_val *k, const MDB_val *v, const char **ret_topic, size_t *ret_len)
{
    outbox_entry_t e;
    int rc = entry_decode(k, v, &e);
    if (rc)
        return rc;
    *ret_topic = e.oe_topic;
    *ret_len = e.oe_hdr.oh_topic_len;
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
    const void *value = h->oh_has_value ? e->oe_value : NULL;
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
    kprod_msg_t msg = {
        .km_topic = dlq,
        .km_has_partition = true,
        .km_partition = h->oh_dlq_partition,
        .km_key = h->oh_key_len ? e->oe_key : NULL,
        .km_key_len = h->oh_key_len,
        .km_value = value,
        .km_value_len = value_len,
        .km_headers = hdrs,
        .km_opaque = (void *)(intptr_t)e->oe_seq,
    };
    /* A full queue is not waited out: the flush stops and the next one goes on. */
    int rc = kprod_try_send(outbox->ob_producer, &msg);
    if (rc)
        rd_kafka_headers_destroy(hdrs);
    return rc;
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
        MDB_val k = {8, key}, v;
        int mrc = mdb_get(txn, store_dbi(outbox->ob_store, STORE_DB_OUTBOX), &k, &v);
        const char *topic;
        size_t topic_len;
        if (mrc == 0 && outbox_entry_topic(&k, &v, &topic, &topic_len) == 0)
            rc = topic_counts_add(outbox->ob_store, txn, topic, topic_len,
                                  TOPIC_COUNTS_DEAD_LETTERS, -1);
        if (mrc == 0 && !rc)
            mrc = mdb_del(txn, store_dbi(outbox->ob_store, STORE_DB_OUTBOX), &k, NULL);
        rc = rc ? rc : mrc == MDB_NOTFOUND ? 0 : rm_err_from_mdb(mrc);
    }
    if (rc) {
        store_write_abort(txn);
        return rc;
    }
    return store_write_commit(outbox->ob_store, txn);
}

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
        int lrc = outbox_mark_live(outbox);
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
    (void)kprod_flush(outbox->ob_producer, timeout_ms); /* what is left goes on */
    kprod_poll(outbox->ob_producer);
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

int outbox_recover(outbox_t *outbox, int timeout_ms)
{
    outbox->ob_next_recover_ms = rm_mono_ms() + OUTBOX_RECOVER_RETRY_MS;
    recover_part_t *parts = NULL;
    size_t count = 0, deleted_total = 0;
    int rc = outbox_finish_takeover(outbox);
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

bool outbox_flush_due(const outbox_t *outbox)
{
    return outbox->ob_unflushed || outbox->ob_stats.os_pending > 0;
}

void outbox_get_stats(const outbox_t *outbox, outbox_stats_t *ret_stats)
{
    *ret_stats = outbox->ob_stats;
}
