/* erasures_topic: the erasure ledger published to, and merged from, a compacted topic. */
#include "erasures_topic.h"
#include "kafka.h"
#include "kprod.h"
#include "rm_err.h"
#include "rm_time.h"
#include "view.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ERASURES_TOPIC_APPEND_BATCH 1024 /* keys per ledger append when merging */
#define ERASURES_TOPIC_POLL_MS 100 /* one consumer poll of a pull */
/* One metadata or watermark request: short, so that a caller retrying an unreachable
 * broker notices a stop request soon (a pod has 30 s to stop). */
#define ERASURES_TOPIC_REQUEST_MS 5000
/* How long a push step waits for the cluster id before it first produces. */
#define ERASURES_TOPIC_CLUSTERID_MS 100

struct erasures_topic {
    const cfg_t *et_cfg;
    char *et_topic;
    char *et_view_dir;
    erasures_t *et_erasures;
    kprod_t *et_producer; /* NULL: this client only pulls */
    char et_identity[512]; /* "<topic> <cluster id>" once the cluster id is known */
    bool et_mark_loaded; /* et_mark was read (needs et_identity) */
    int64_t et_mark; /* ledger offset up to which every record is acknowledged */
    int64_t et_inflight_end; /* ledger offset up to which records were produced */
    int64_t et_outstanding; /* produced, delivery not yet reported */
    bool et_failed; /* a delivery failed since the last push step */
    char et_delivery_err[256];
};

int erasures_topic_name(const cfg_t *cfg, const char *view_name, char *out, size_t cap)
{
    const char *topic = cfg_str(cfg, "projector.erasures_topic");
    int n = *topic ? snprintf(out, cap, "%s", topic)
                   : snprintf(out, cap, "%s%s", view_name, ERASURES_TOPIC_SUFFIX);
    return n < 0 || (size_t)n >= cap ? RM_EINVAL : 0;
}

/* ---- the published mark ---- */

typedef struct mark_walk {
    int64_t mw_pos; /* offset of the record the callback is given */
    int64_t mw_target; /* the stored mark */
    bool mw_found;
} mark_walk_t;

static int mark_walk_one(void *ctx, const char *key, size_t key_len, int64_t erased_at_ms)
{
    mark_walk_t *mw = ctx;
    (void)key;
    (void)erased_at_ms;
    if (mw->mw_pos == mw->mw_target) {
        mw->mw_found = true;
        return 1; /* stop: the mark is the start of this record */
    }
    mw->mw_pos += (int64_t)ERASURES_RECORD_BYTES(key_len);
    return mw->mw_pos > mw->mw_target ? 1 : 0; /* passed it: inside a record */
}

int64_t erasures_topic_mark_load(const char *view_dir, const char *identity, erasures_t *erasures)
{
    char path[4096], text[600];
    snprintf(path, sizeof(path), "%s/%s", view_dir, ERASURES_PUBLISHED_FILE);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    char *end;
    errno = 0;
    long long mark = strtoll(text, &end, 10);
    /* A mark of another topic or cluster (a renamed topic, a migration) says nothing
     * about this one. */
    size_t id_len = strlen(identity);
    if (errno || end == text || mark <= 0 || *end != ' ' || strncmp(end + 1, identity, id_len) ||
        strcmp(end + 1 + id_len, "\n"))
        return 0;
    /* Republishing is cheap and idempotent; skipping is a lost erasure. So the mark is
     * trusted only where it is a record boundary of this ledger (a ledger replaced by
     * another file, or shortened, publishes everything again). */
    mark_walk_t mw = {0, mark, false};
    int64_t end_offset;
    int rc = erasures_scan(erasures, 0, mark_walk_one, &mw, &end_offset);
    if (rc < 0)
        return 0;
    if (!mw.mw_found && rc == 0 && end_offset == mark)
        mw.mw_found = true; /* the mark is the ledger's end */
    return mw.mw_found ? mark : 0;
}

int erasures_topic_mark_store(const char *view_dir, const char *identity, int64_t mark)
{
    char path[4096], tmp[4200], text[600];
    snprintf(path, sizeof(path), "%s/%s", view_dir, ERASURES_PUBLISHED_FILE);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int len = snprintf(text, sizeof(text), "%" PRId64 " %s\n", mark, identity);
    if (len < 0 || (size_t)len >= sizeof(text))
        return RM_EINVAL;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return RM_EIO;
    bool ok = write(fd, text, (size_t)len) == len && fsync(fd) == 0;
    ok = close(fd) == 0 && ok;
    ok = ok && rename(tmp, path) == 0;
    int dfd = ok ? open(view_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    ok = ok && dfd >= 0 && fsync(dfd) == 0;
    if (dfd >= 0)
        close(dfd);
    if (!ok)
        unlink(tmp);
    return ok ? 0 : RM_EIO;
}

/* ---- the client ---- */

static void on_delivery(void *opaque, const kprod_report_t *report)
{
    erasures_topic_t *et = opaque;
    et->et_outstanding--;
    if (report->kr_err && !et->et_failed) {
        et->et_failed = true;
        snprintf(et->et_delivery_err, sizeof(et->et_delivery_err), "%s: %s", et->et_topic,
                 report->kr_reason);
    }
}

erasures_topic_t *erasures_topic_new(const cfg_t *cfg, const char *topic, erasures_t *erasures,
                                     const char *view_dir, bool publish, char *errstr,
                                     size_t errlen)
{
    erasures_topic_t *et = calloc(1, sizeof(*et));
    if (!et || !(et->et_topic = strdup(topic)) || !(et->et_view_dir = strdup(view_dir))) {
        snprintf(errstr, errlen, "out of memory");
        erasures_topic_destroy(et);
        return NULL;
    }
    et->et_cfg = cfg;
    et->et_erasures = erasures;
    if (!publish)
        return et;
    /* As the dead-letter producer (outbox.c): idempotent, and no message timeout, so a
     * record is retried until the broker takes it. */
    const char *const defaults[] = {
        "enable.idempotence", "true", "message.timeout.ms", "0", "linger.ms", "5", "client.id",
        "readmodel-erasures", NULL};
    rd_kafka_conf_t *conf = kafka_conf_new(cfg, defaults, errstr, errlen);
    if (!conf) {
        erasures_topic_destroy(et);
        return NULL;
    }
    et->et_producer = kprod_new(conf, on_delivery, et, errstr, errlen);
    if (!et->et_producer) {
        erasures_topic_destroy(et);
        return NULL;
    }
    return et;
}

void erasures_topic_destroy(erasures_topic_t *et)
{
    if (!et)
        return;
    /* Purge so that destroy does not wait for records the broker cannot take; they are
     * past the mark and published again at the next start. */
    kprod_destroy(et->et_producer, 0, true);
    free(et->et_topic);
    free(et->et_view_dir);
    free(et);
}

/* ---- pull ---- */

typedef struct et_key {
    char *ek_key;
    size_t ek_len;
    int64_t ek_at;
} et_key_t;

typedef struct et_keys {
    et_key_t *ks_items;
    size_t ks_count;
    size_t ks_cap;
} et_keys_t;

static int keys_add(et_keys_t *ks, const char *key, size_t len, int64_t at)
{
    if (ks->ks_count == ks->ks_cap) {
        size_t cap = ks->ks_cap ? ks->ks_cap * 2 : 256;
        et_key_t *items = realloc(ks->ks_items, cap * sizeof(*items));
        if (!items)
            return RM_ENOMEM;
        ks->ks_items = items;
        ks->ks_cap = cap;
    }
    char *copy = malloc(len);
    if (!copy)
        return RM_ENOMEM;
    memcpy(copy, key, len);
    ks->ks_items[ks->ks_count++] = (et_key_t){copy, len, at};
    // cppcheck-suppress memleak ; copy is owned by ks_items (freed by keys_free)
    return 0;
}

static void keys_free(et_keys_t *ks)
{
    for (size_t i = 0; i < ks->ks_count; i++)
        free(ks->ks_items[i].ek_key);
    free(ks->ks_items);
}

static int key_cmp(const void *a, const void *b)
{
    const et_key_t *x = a, *y = b;
    size_t n = x->ek_len < y->ek_len ? x->ek_len : y->ek_len;
    int c = memcmp(x->ek_key, y->ek_key, n);
    return c ? c : (x->ek_len > y->ek_len) - (x->ek_len < y->ek_len);
}

static int ledger_key(void *ctx, const char *key, size_t key_len, int64_t erased_at_ms)
{
    return keys_add(ctx, key, key_len, erased_at_ms);
}

/* One record of the topic into ks; anything that is not an erasure is skipped. */
static int topic_record(et_keys_t *ks, const rd_kafka_message_t *m)
{
    if (!m->key || m->key_len == 0 || m->key_len > VIEW_KEY_MAX_BYTES ||
        memchr(m->key, '\0', m->key_len) || !m->payload)
        return 0; /* not a view key, or a tombstone: never written by a projector */
    int64_t at = 0;
    json_t *value = json_loadb(m->payload, m->len, 0, NULL);
    json_t *field = value ? json_object_get(value, "erased_at_ms") : NULL;
    if (json_is_integer(field))
        at = json_integer_value(field);
    json_decref(value);
    return keys_add(ks, m->key, m->key_len, at);
}

static rd_kafka_t *pull_consumer(const erasures_topic_t *et, char *errstr, size_t errlen)
{
    /* Named after the projector's group, as the dead-letter recovery's is, so that an
     * ACL on the group prefix covers it; nothing is ever committed to it. */
    const char *base = cfg_kafka_get(et->et_cfg, "group.id");
    char group[300];
    snprintf(group, sizeof(group), "%s-erasures", base ? base : "readmodel");
    /* No commits: the topic is read whole at every pull. */
    const char *const defaults[] = {"group.id",
                                    group,
                                    "enable.auto.commit",
                                    "false",
                                    "enable.partition.eof",
                                    "true",
                                    "fetch.wait.max.ms",
                                    "10",
                                    NULL};
    rd_kafka_conf_t *conf = kafka_conf_new(et->et_cfg, defaults, errstr, errlen);
    if (!conf)
        return NULL;
    /* The shared kafka map holds the projector's own group settings: keep ours. */
    rd_kafka_conf_set(conf, "group.id", group, NULL, 0);
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", NULL, 0);
    rd_kafka_conf_set(conf, "enable.partition.eof", "true", NULL, 0);
    char rkerr[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, rkerr, sizeof(rkerr));
    if (!rk) {
        snprintf(errstr, errlen, "kafka consumer: %s", rkerr);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

/* The topic's partition count; RM_ENOTFOUND only when the broker says it is missing. */
static int topic_partitions(rd_kafka_t *rk, const char *topic, int timeout_ms, int32_t *ret_count,
                            char *errstr, size_t errlen)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md;
    rd_kafka_resp_err_t err =
        rkt ? rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms) : RD_KAFKA_RESP_ERR__INVALID_ARG;
    if (rkt)
        rd_kafka_topic_destroy(rkt);
    if (err) {
        snprintf(errstr, errlen, "%s: metadata: %s", topic, rd_kafka_err2str(err));
        return err == RD_KAFKA_RESP_ERR__TIMED_OUT ? RM_ETIMEOUT : RM_EKAFKA;
    }
    int rc = 0;
    if (md->topic_cnt != 1) {
        rc = RM_EKAFKA;
    } else if (md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
        rc = RM_ENOTFOUND;
    } else if (md->topics[0].err || md->topics[0].partition_cnt <= 0) {
        rc = RM_EKAFKA; /* e.g. leader not available yet: try again */
    } else {
        *ret_count = md->topics[0].partition_cnt;
    }
    if (rc)
        snprintf(errstr, errlen, "%s: %s", topic,
                 rc == RM_ENOTFOUND ? "no such topic" : rd_kafka_err2str(md->topics[0].err));
    rd_kafka_metadata_destroy(md);
    return rc;
}

/* Reads every partition from its start to its high watermark as of now into ks. */
static int read_topic(rd_kafka_t *rk, const char *topic, int timeout_ms, et_keys_t *ks,
                      char *errstr, size_t errlen)
{
    int64_t deadline = rm_mono_ms() + timeout_ms;
    int32_t count = 0;
    int rc = topic_partitions(
        rk, topic, timeout_ms < ERASURES_TOPIC_REQUEST_MS ? timeout_ms : ERASURES_TOPIC_REQUEST_MS,
        &count, errstr, errlen);
    if (rc)
        return rc;
    int64_t *high = calloc((size_t)count, sizeof(*high));
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(count);
    if (!high || !list) {
        free(high);
        if (list)
            rd_kafka_topic_partition_list_destroy(list);
        return RM_ENOMEM;
    }
    int32_t remaining = 0;
    for (int32_t p = 0; p < count && !rc; p++) {
        int64_t low;
        int64_t left = deadline - rm_mono_ms();
        int wait = (int)(left < ERASURES_TOPIC_REQUEST_MS ? left : ERASURES_TOPIC_REQUEST_MS);
        rd_kafka_resp_err_t err =
            rd_kafka_query_watermark_offsets(rk, topic, p, &low, &high[p], wait > 0 ? wait : 1);
        if (err) {
            snprintf(errstr, errlen, "%s [%d]: watermarks: %s", topic, (int)p,
                     rd_kafka_err2str(err));
            rc = err == RD_KAFKA_RESP_ERR__TIMED_OUT ? RM_ETIMEOUT : RM_EKAFKA;
        } else if (high[p] > low) {
            rd_kafka_topic_partition_list_add(list, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
            remaining++;
        }
    }
    if (!rc && remaining && rd_kafka_assign(rk, list)) {
        snprintf(errstr, errlen, "%s: cannot assign", topic);
        rc = RM_EKAFKA;
    }
    rd_kafka_topic_partition_list_destroy(list);
    while (!rc && remaining > 0) {
        if (rm_mono_ms() >= deadline) {
            snprintf(errstr, errlen, "%s: not read to its end in %d ms", topic, timeout_ms);
            rc = RM_ETIMEOUT;
            break;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, ERASURES_TOPIC_POLL_MS);
        if (!m)
            continue;
        int32_t p = m->partition;
        bool mine = m->rkt && p >= 0 && p < count && high[p] > 0;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && mine)
            rc = topic_record(ks, m);
        /* Done with a partition at its high watermark of the start: compaction leaves
         * gaps in offsets, and the end of the log says so with an EOF event. */
        if (mine &&
            (m->err == RD_KAFKA_RESP_ERR_NO_ERROR || m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) &&
            m->offset + (m->err ? 0 : 1) >= high[p]) {
            high[p] = 0;
            remaining--;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_assign(rk, NULL);
    free(high);
    return rc;
}

int erasures_topic_pull(erasures_topic_t *et, int timeout_ms, size_t *ret_merged, char *errstr,
                        size_t errlen)
{
    rd_kafka_t *rk = pull_consumer(et, errstr, errlen);
    if (!rk)
        return RM_ECONFIG;
    et_keys_t topic = {0}, ledger = {0};
    int rc = read_topic(rk, et->et_topic, timeout_ms, &topic, errstr, errlen);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    if (!rc && (rc = erasures_scan(et->et_erasures, 0, ledger_key, &ledger, NULL)))
        snprintf(errstr, errlen, "erasure ledger: %s", rm_strerror(rc));
    size_t merged = 0;
    if (!rc && topic.ks_count) {
        qsort(topic.ks_items, topic.ks_count, sizeof(et_key_t), key_cmp);
        /* An empty ledger has no array at all: qsort and bsearch must not see NULL. */
        if (ledger.ks_count)
            qsort(ledger.ks_items, ledger.ks_count, sizeof(et_key_t), key_cmp);
        const char *keys[ERASURES_TOPIC_APPEND_BATCH];
        size_t lens[ERASURES_TOPIC_APPEND_BATCH];
        int64_t ats[ERASURES_TOPIC_APPEND_BATCH];
        size_t n = 0;
        for (size_t i = 0; !rc && i < topic.ks_count; i++) {
            const et_key_t *k = &topic.ks_items[i];
            bool dup = i > 0 && key_cmp(k, &topic.ks_items[i - 1]) == 0;
            if (!dup && !(ledger.ks_count && bsearch(k, ledger.ks_items, ledger.ks_count,
                                                     sizeof(et_key_t), key_cmp))) {
                keys[n] = k->ek_key;
                lens[n] = k->ek_len;
                ats[n++] = k->ek_at;
            }
            if (n && (n == ERASURES_TOPIC_APPEND_BATCH || i + 1 == topic.ks_count)) {
                rc = erasures_append(et->et_erasures, keys, lens, ats, n);
                merged += rc ? 0 : n;
                n = 0;
            }
        }
        if (rc)
            snprintf(errstr, errlen, "erasure ledger: %s", rm_strerror(rc));
    }
    keys_free(&topic);
    keys_free(&ledger);
    if (!rc)
        *ret_merged = merged;
    return rc;
}

int erasures_topic_create(erasures_topic_t *et, int timeout_ms, char *errstr, size_t errlen)
{
    if (!et->et_producer)
        return RM_EINVAL;
    rd_kafka_t *rk = kprod_rk(et->et_producer);
    char rkerr[256];
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(et->et_topic, 1, -1, rkerr, sizeof(rkerr));
    if (!nt) {
        snprintf(errstr, errlen, "%s: %s", et->et_topic, rkerr);
        return RM_EKAFKA;
    }
    rd_kafka_NewTopic_set_config(nt, "cleanup.policy", "compact");
    rd_kafka_AdminOptions_t *opts = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, NULL, 0);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_CreateTopics(rk, &nt, 1, opts, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
    int rc = RM_ETIMEOUT;
    snprintf(errstr, errlen, "%s: create: no answer in %d ms", et->et_topic, timeout_ms);
    if (ev && rd_kafka_event_error(ev)) {
        snprintf(errstr, errlen, "%s: create: %s", et->et_topic, rd_kafka_event_error_string(ev));
        rc = rd_kafka_event_error(ev) == RD_KAFKA_RESP_ERR__TIMED_OUT ? RM_ETIMEOUT : RM_EKAFKA;
    } else if (ev) {
        size_t n = 0;
        const rd_kafka_topic_result_t **res =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
        rd_kafka_resp_err_t err =
            n == 1 ? rd_kafka_topic_result_error(res[0]) : RD_KAFKA_RESP_ERR__FAIL;
        rc = err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS
                 ? 0
                 : RM_EKAFKA;
        if (rc)
            snprintf(errstr, errlen, "%s: create: %s", et->et_topic,
                     n == 1 && rd_kafka_topic_result_error_string(res[0])
                         ? rd_kafka_topic_result_error_string(res[0])
                         : rd_kafka_err2str(err));
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_NewTopic_destroy(nt);
    return rc;
}

/* ---- push ---- */

typedef struct et_produce {
    erasures_topic_t *ep_et;
    int64_t ep_pos; /* ledger offset of the record the callback is given */
    int ep_rc; /* rm_err_t of a refused produce */
} et_produce_t;

static int produce_one(void *ctx, const char *key, size_t key_len, int64_t erased_at_ms)
{
    et_produce_t *ep = ctx;
    char value[48];
    int len = snprintf(value, sizeof(value), "{\"erased_at_ms\":%" PRId64 "}", erased_at_ms);
    kprod_msg_t msg = {
        .km_topic = ep->ep_et->et_topic,
        .km_key = key,
        .km_key_len = key_len,
        .km_value = value,
        .km_value_len = (size_t)len,
    };
    int rc = kprod_try_send(ep->ep_et->et_producer, &msg);
    if (rc) {
        ep->ep_rc = rc;
        return 1; /* stop here; a full queue is produced again by the next step */
    }
    ep->ep_et->et_outstanding++;
    ep->ep_pos += (int64_t)ERASURES_RECORD_BYTES(key_len);
    return 0;
}

int erasures_topic_push(erasures_topic_t *et, int wait_ms, char *errstr, size_t errlen)
{
    if (!et->et_producer)
        return RM_EINVAL;
    if (et->et_outstanding > 0 && wait_ms > 0)
        (void)kprod_flush(et->et_producer, wait_ms); /* what is left is waited for later */
    else
        kprod_poll(et->et_producer);
    if (et->et_outstanding > 0)
        return 0;
    if (!et->et_mark_loaded) {
        /* The mark belongs to one topic of one cluster: wait until the producer knows
         * which cluster it talks to (its first metadata answer). */
        char *cluster = rd_kafka_clusterid(kprod_rk(et->et_producer), ERASURES_TOPIC_CLUSTERID_MS);
        if (!cluster) {
            snprintf(errstr, errlen, "%s: the cluster id is not known yet", et->et_topic);
            return 0; /* nothing is produced until then; try again at the next step */
        }
        snprintf(et->et_identity, sizeof(et->et_identity), "%s %s", et->et_topic, cluster);
        free(cluster);
        et->et_mark = et->et_inflight_end =
            erasures_topic_mark_load(et->et_view_dir, et->et_identity, et->et_erasures);
        et->et_mark_loaded = true;
    }
    int rc = 0;
    if (et->et_failed) {
        /* Produce again from the mark: duplicates are harmless (idempotent by key). */
        et->et_failed = false;
        et->et_inflight_end = et->et_mark;
        snprintf(errstr, errlen, "%s", et->et_delivery_err);
        rc = RM_EKAFKA;
    } else if (et->et_inflight_end > et->et_mark) {
        if ((rc = erasures_topic_mark_store(et->et_view_dir, et->et_identity,
                                            et->et_inflight_end))) {
            snprintf(errstr, errlen, "%s/%s: cannot write", et->et_view_dir,
                     ERASURES_PUBLISHED_FILE);
            return rc;
        }
        et->et_mark = et->et_inflight_end;
    }
    et_produce_t ep = {et, et->et_inflight_end, 0};
    int src = erasures_scan(et->et_erasures, et->et_inflight_end, produce_one, &ep, NULL);
    et->et_inflight_end = ep.ep_pos;
    if (src < 0) {
        snprintf(errstr, errlen, "erasure ledger: %s", rm_strerror(src));
        return src;
    }
    if (ep.ep_rc && ep.ep_rc != RM_EBUSY) {
        snprintf(errstr, errlen, "%s", kprod_last_error(et->et_producer));
        return ep.ep_rc;
    }
    return rc;
}

int64_t erasures_topic_pending(erasures_topic_t *et)
{
    int64_t end = 0;
    if (erasures_end(et->et_erasures, &end))
        return 1; /* unknown: not proven published */
    return end > et->et_mark ? end - et->et_mark : 0;
}
