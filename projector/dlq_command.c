/* dlq_command: `projector dlq` — list, replay and purge the view's dead letters (the
 * outbox that records and publishes them is lib/outbox.c; see dlq_command.h). */
#include "dlq_command.h"
#include "avro_dec.h"
#include "buf.h"
#include "kafka.h"
#include "log.h"
#include "outbox.h"
#include "rm_time.h"

#include <avro.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DLQ_TIMEOUT_MS 10000

typedef struct dlq_run {
    app_t *dr_app;
    const char *dr_command;
    bool dr_dry_run;
    rd_kafka_t *dr_consumer;
    rd_kafka_t *dr_producer;
    size_t dr_count;
    int dr_failures;
    /* readmodel.DeadLetterHandled on the view's repairs topic: clears the entity's
     * degraded mark (lib/degraded.h). NULL entry: the view has no repairs topic. */
    const catalog_entry_t *dr_handled;
    int32_t dr_frame_id; /* its id (app_frame_id: the registry's in registry mode) */
    avro_value_iface_t *dr_iface;
    avro_value_t dr_value;
    size_t dr_handled_count;
    /* Original messages (topic/partition/offset) handled in this run: each replica
     * publishes its own letter for a poison message (outbox.h note 3). */
    char **dr_seen;
    size_t dr_seen_count;
    size_t dr_seen_cap;
    size_t dr_duplicates;
} dlq_run_t;

static const char *header(rd_kafka_headers_t *hdrs, const char *name, char *out, size_t cap)
{
    const void *val;
    size_t size;
    if (!hdrs || rd_kafka_header_get_last(hdrs, name, &val, &size) || size >= cap)
        return NULL;
    memcpy(out, val, size);
    out[size] = '\0';
    return out;
}

/* Whether the original message behind a letter was handled earlier in this run;
 * remembers it otherwise. A letter without coordinates is never a duplicate. */
static bool seen_before(dlq_run_t *run, rd_kafka_headers_t *hdrs)
{
    char topic[256], part[32], off[32], coords[330];
    if (!header(hdrs, "__connect.errors.topic", topic, sizeof(topic)) ||
        !header(hdrs, "__connect.errors.partition", part, sizeof(part)) ||
        !header(hdrs, "__connect.errors.offset", off, sizeof(off)))
        return false;
    snprintf(coords, sizeof(coords), "%s/%s/%s", topic, part, off);
    for (size_t i = 0; i < run->dr_seen_count; i++)
        if (strcmp(run->dr_seen[i], coords) == 0)
            return true;
    if (run->dr_seen_count == run->dr_seen_cap) {
        size_t cap = run->dr_seen_cap ? run->dr_seen_cap * 2 : 64;
        char **grown = realloc(run->dr_seen, cap * sizeof(*grown));
        if (!grown)
            return false; /* handled again at worst: replays are harmless (version guard) */
        run->dr_seen = grown;
        run->dr_seen_cap = cap;
    }
    char *copy = strdup(coords);
    if (copy)
        run->dr_seen[run->dr_seen_count++] = copy;
    return false;
}

/* One JSON line describing a dead letter (no payload: it may hold PII). */
static void print_letter(const rd_kafka_message_t *m, rd_kafka_headers_t *hdrs)
{
    char topic[256], part[32], off[32], cls[64], reason[1100], seq[32], replica[80];
    buf_t out = BUF_INIT;
    buf_append_str(&out, "{\"dlq_topic\":");
    const char *dlq = rd_kafka_topic_name(m->rkt);
    buf_append_json_str(&out, dlq, strlen(dlq));
    buf_printf(&out, ",\"dlq_partition\":%d,\"dlq_offset\":%lld,\"topic\":", m->partition,
               (long long)m->offset);
    const char *t = header(hdrs, "__connect.errors.topic", topic, sizeof(topic));
    buf_append_json_str(&out, t ? t : "", t ? strlen(t) : 0);
    buf_printf(&out, ",\"partition\":%s,\"offset\":%s,\"error\":",
               header(hdrs, "__connect.errors.partition", part, sizeof(part)) ?: "null",
               header(hdrs, "__connect.errors.offset", off, sizeof(off)) ?: "null");
    const char *c = header(hdrs, "__connect.errors.exception.class.name", cls, sizeof(cls));
    buf_append_json_str(&out, c ? c : "", c ? strlen(c) : 0);
    buf_append_str(&out, ",\"reason\":");
    const char *r = header(hdrs, "__connect.errors.exception.message", reason, sizeof(reason));
    buf_append_json_str(&out, r ? r : "", r ? strlen(r) : 0);
    buf_printf(&out, ",\"outbox_seq\":%s,\"replica\":",
               header(hdrs, "readmodel.outbox.seq", seq, sizeof(seq)) ?: "null");
    const char *rep = header(hdrs, "readmodel.replica", replica, sizeof(replica));
    buf_append_json_str(&out, rep ? rep : "", rep ? strlen(rep) : 0);
    buf_append_str(&out, "}");
    printf("%s\n", out.b_data);
    buf_free(&out);
}

static int replay_letter(dlq_run_t *run, const rd_kafka_message_t *m, rd_kafka_headers_t *hdrs)
{
    char topic[256], part[32], coords[320];
    if (!header(hdrs, "__connect.errors.topic", topic, sizeof(topic)) ||
        !header(hdrs, "__connect.errors.partition", part, sizeof(part)))
        return -1;
    snprintf(coords, sizeof(coords), "%s/%d/%lld", rd_kafka_topic_name(m->rkt), m->partition,
             (long long)m->offset);
    rd_kafka_headers_t *out = rd_kafka_headers_new(2);
    rd_kafka_header_add(out, "readmodel.replay-of", -1, coords, -1);
    /* Same partition as the original: per-entity order is per partition. */
    rd_kafka_resp_err_t err = rd_kafka_producev(
        run->dr_producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(atoi(part)),
        RD_KAFKA_V_KEY(m->key, m->key_len), RD_KAFKA_V_VALUE(m->payload, m->len),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(out), RD_KAFKA_V_END);
    if (err) {
        rd_kafka_headers_destroy(out);
        return -1;
    }
    return 0;
}

/* Publishes readmodel.DeadLetterHandled for the letter m (replayed or purged), keyed by its
 * original message key, so the projector clears the degraded mark it caused. */
static int publish_handled(dlq_run_t *run, const rd_kafka_message_t *m, rd_kafka_headers_t *hdrs)
{
    if (!run->dr_handled)
        return 0;
    char topic[256], part[32], off[32], event_id[400];
    if (!header(hdrs, "__connect.errors.topic", topic, sizeof(topic)) ||
        !header(hdrs, "__connect.errors.partition", part, sizeof(part)) ||
        !header(hdrs, "__connect.errors.offset", off, sizeof(off)))
        return -1;
    snprintf(event_id, sizeof(event_id), "dlq/%s/%d/%lld", rd_kafka_topic_name(m->rkt),
             m->partition, (long long)m->offset);
    avro_value_t *rec = &run->dr_value, f;
    avro_value_reset(rec);
    bool replay = strcmp(run->dr_command, "replay") == 0;
    int bad =
        avro_value_get_by_name(rec, "event_id", &f, NULL) || avro_value_set_string(&f, event_id);
    bad = bad || avro_value_get_by_name(rec, "occurred_at", &f, NULL) ||
          avro_value_set_long(&f, rm_wall_ms());
    bad = bad || avro_value_get_by_name(rec, "version", &f, NULL) || avro_value_set_long(&f, 1);
    bad = bad || avro_value_get_by_name(rec, "view", &f, NULL) ||
          avro_value_set_string(&f, run->dr_app->ap_view->v_name);
    bad = bad || avro_value_get_by_name(rec, "topic", &f, NULL) || avro_value_set_string(&f, topic);
    bad = bad || avro_value_get_by_name(rec, "partition", &f, NULL) ||
          avro_value_set_int(&f, atoi(part));
    bad = bad || avro_value_get_by_name(rec, "offset", &f, NULL) ||
          avro_value_set_long(&f, strtoll(off, NULL, 10));
    bad = bad || avro_value_get_by_name(rec, "action", &f, NULL) ||
          avro_value_set_enum(&f, replay ? 0 : 1);
    buf_t frame = BUF_INIT;
    bad = bad || avro_dec_encode_frame(run->dr_frame_id, rec, &frame) != 0;
    rd_kafka_resp_err_t err =
        bad ? RD_KAFKA_RESP_ERR__BAD_MSG
            : rd_kafka_producev(
                  run->dr_producer, RD_KAFKA_V_TOPIC(run->dr_app->ap_view->v_repair_topic),
                  RD_KAFKA_V_KEY(m->key, m->key_len), RD_KAFKA_V_VALUE(frame.b_data, frame.b_len),
                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    buf_free(&frame);
    if (err)
        return -1;
    run->dr_handled_count++;
    return 0;
}

/* Consumes every DLQ partition from the group's offset to its high watermark. */
static int walk(dlq_run_t *run)
{
    const view_t *view = run->dr_app->ap_view;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(16);
    int64_t remaining = 0;
    for (size_t t = 0; t < view->v_topic_count; t++) {
        char dlq[300];
        snprintf(dlq, sizeof(dlq), "%s%s", view->v_topics[t], OUTBOX_DLQ_SUFFIX);
        const struct rd_kafka_metadata *md;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(run->dr_consumer, dlq, NULL);
        if (rd_kafka_metadata(run->dr_consumer, 0, rkt, &md, DLQ_TIMEOUT_MS) == 0) {
            for (int p = 0;
                 md->topic_cnt == 1 && !md->topics[0].err && p < md->topics[0].partition_cnt; p++)
                rd_kafka_topic_partition_list_add(list, dlq, md->topics[0].partitions[p].id);
            rd_kafka_metadata_destroy(md);
        }
        rd_kafka_topic_destroy(rkt);
    }
    /* Start at the group's committed offsets (beginning when none). */
    rd_kafka_committed(run->dr_consumer, list, DLQ_TIMEOUT_MS);
    for (int i = 0; i < list->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &list->elems[i];
        int64_t low, high;
        if (rd_kafka_query_watermark_offsets(run->dr_consumer, tp->topic, tp->partition, &low,
                                             &high, DLQ_TIMEOUT_MS))
            high = low = 0;
        if (tp->offset < low)
            tp->offset = low;
        remaining += high > tp->offset ? high - tp->offset : 0;
        tp->opaque = (void *)(intptr_t)high; /* where to stop */
    }
    rd_kafka_assign(run->dr_consumer, list);
    while (remaining > 0) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(run->dr_consumer, DLQ_TIMEOUT_MS);
        if (!m) {
            fprintf(stderr, "projector dlq: timed out reading the dead-letter topics\n");
            run->dr_failures++;
            break;
        }
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        remaining--;
        rd_kafka_headers_t *hdrs = NULL;
        char owner[128];
        rd_kafka_message_headers(m, &hdrs);
        const char *v = header(hdrs, "readmodel.view", owner, sizeof(owner));
        bool mine = v && strcmp(v, view->v_name) == 0;
        /* list shows every replica's letter; replay and purge act once per message */
        if (mine && strcmp(run->dr_command, "list") != 0 && seen_before(run, hdrs)) {
            run->dr_duplicates++;
            mine = false;
        }
        if (mine) {
            run->dr_count++;
            if (strcmp(run->dr_command, "list") == 0 || run->dr_dry_run)
                print_letter(m, hdrs);
            else if ((strcmp(run->dr_command, "replay") == 0 && replay_letter(run, m, hdrs)) ||
                     publish_handled(run, m, hdrs))
                run->dr_failures++;
        }
        for (int i = 0; i < list->cnt; i++)
            if (list->elems[i].partition == m->partition &&
                strcmp(list->elems[i].topic, rd_kafka_topic_name(m->rkt)) == 0)
                list->elems[i].offset = m->offset + 1;
        rd_kafka_message_destroy(m);
    }
    int rc = 0;
    bool advance = strcmp(run->dr_command, "list") != 0 && !run->dr_dry_run && !run->dr_failures;
    if (advance && run->dr_producer && rd_kafka_flush(run->dr_producer, DLQ_TIMEOUT_MS)) {
        fprintf(stderr, "projector dlq: replayed events were not all acknowledged\n");
        advance = false;
        rc = -1;
    }
    if (advance && list->cnt && rd_kafka_commit(run->dr_consumer, list, 0)) {
        fprintf(stderr, "projector dlq: cannot commit the dead-letter group's offsets\n");
        rc = -1;
    }
    rd_kafka_assign(run->dr_consumer, NULL);
    rd_kafka_topic_partition_list_destroy(list);
    return rc;
}

int dlq_main(app_t *app, const char *command, bool dry_run)
{
    if (strcmp(command, "list") && strcmp(command, "replay") && strcmp(command, "purge")) {
        fprintf(stderr, "projector dlq: unknown command '%s' (list, replay or purge)\n", command);
        return APP_EXIT_USAGE;
    }
    char err[512], group[300];
    const char *base = cfg_kafka_get(app->ap_cfg, "group.id");
    snprintf(group, sizeof(group), "%s%s-dlq", base ? base : "readmodel-",
             base ? "" : app->ap_view->v_name);
    const char *const cdefaults[] = {
        "group.id", group, "enable.auto.commit", "false", "enable.partition.eof", "false", NULL};
    dlq_run_t run = {.dr_app = app, .dr_command = command, .dr_dry_run = dry_run};
    rd_kafka_conf_t *conf = kafka_conf_new(app->ap_cfg, cdefaults, err, sizeof(err));
    if (!conf || !(run.dr_consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err)))) {
        fprintf(stderr, "projector dlq: %s\n", err);
        return APP_EXIT_USAGE;
    }
    bool writes = strcmp(command, "list") != 0 && !dry_run;
    if (writes && app->ap_view->v_repair_topic &&
        (run.dr_handled = catalog_latest(app->ap_catalog, "readmodel.DeadLetterHandled"))) {
        if (app_frame_id(app, run.dr_handled, app->ap_view->v_repair_topic, &run.dr_frame_id, err,
                         sizeof(err))) {
            fprintf(stderr, "projector dlq: %s\n", err);
            rd_kafka_destroy(run.dr_consumer);
            return APP_EXIT_FAILURE;
        }
        run.dr_iface = avro_generic_class_from_schema(run.dr_handled->ce_schema);
        if (!run.dr_iface || avro_generic_value_new(run.dr_iface, &run.dr_value)) {
            fprintf(stderr, "projector dlq: cannot prepare the DeadLetterHandled encoder\n");
            if (run.dr_iface)
                avro_value_iface_decref(run.dr_iface);
            rd_kafka_destroy(run.dr_consumer);
            return APP_EXIT_FAILURE;
        }
    }
    if (writes) {
        const char *const pdefaults[] = {"enable.idempotence", "true", NULL};
        rd_kafka_conf_t *pconf = kafka_conf_new(app->ap_cfg, pdefaults, err, sizeof(err));
        if (!pconf ||
            !(run.dr_producer = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, err, sizeof(err)))) {
            fprintf(stderr, "projector dlq: %s\n", err);
            rd_kafka_destroy(run.dr_consumer);
            return APP_EXIT_USAGE;
        }
    }
    int rc = walk(&run);
    fprintf(stderr, "projector dlq %s: %zu dead letter(s)%s\n", command, run.dr_count,
            dry_run ? " (dry run: nothing changed)" : "");
    if (run.dr_duplicates)
        fprintf(stderr,
                "projector dlq %s: %zu more letter(s) of the same messages from other "
                "replicas (acted on once)\n",
                command, run.dr_duplicates);
    for (size_t i = 0; i < run.dr_seen_count; i++)
        free(run.dr_seen[i]);
    free(run.dr_seen);
    if (run.dr_handled_count)
        fprintf(
            stderr,
            "projector dlq %s: %zu handled marker(s) published to %s (they clear degraded marks)\n",
            command, run.dr_handled_count, app->ap_view->v_repair_topic);
    if (run.dr_iface) {
        avro_value_decref(&run.dr_value);
        avro_value_iface_decref(run.dr_iface);
    }
    if (run.dr_producer)
        rd_kafka_destroy(run.dr_producer);
    rd_kafka_consumer_close(run.dr_consumer);
    rd_kafka_destroy(run.dr_consumer);
    return rc || run.dr_failures ? APP_EXIT_FAILURE : APP_EXIT_OK;
}
