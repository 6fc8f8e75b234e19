/* repair: readmodel.Repair events on the view's repairs topic (repair.h). */
#include "repair.h"
#include "avro_dec.h"
#include "buf.h"
#include "kafka.h"
#include "kprod.h"
#include "log.h"
#include "rm_err.h"
#include "rm_time.h"

#include <avro.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPAIR_RECORD "readmodel.Repair"

struct repair {
    const app_t *rp_app;
    char rp_run_id[128];
    kprod_t *rp_producer;
    const catalog_entry_t *rp_entry;
    int32_t rp_frame_id; /* its id (app_frame_id: the registry's in registry mode) */
    avro_value_iface_t *rp_iface;
    avro_value_t rp_value;
    bool rp_has_value;
    buf_t rp_frame;
    uint64_t rp_seq;
};

/* clang-format off */
static const char *const repair_producer_defaults[] = {
    "enable.idempotence", "true",   /* a retried send must not publish a correction twice */
    "linger.ms", "5",
    NULL,
};
/* clang-format on */

/* kprod counts deliveries and failures; each failure is logged here, once. */
static void on_report(void *opaque, const kprod_report_t *report)
{
    (void)opaque;
    if (report->kr_err)
        log_error("repair not delivered", LOG_S("error", report->kr_reason));
}

repair_t *repair_new(const app_t *app, const char *run_id, char *errstr, size_t errlen)
{
    const view_t *view = app->ap_view;
    if (!view->v_repair_topic) {
        snprintf(errstr, errlen, "%s: the view declares no repairs topic (repairs: {topic: ...})",
                 view->v_path);
        return NULL;
    }
    const catalog_entry_t *entry = catalog_latest(app->ap_catalog, REPAIR_RECORD);
    if (!entry) {
        snprintf(errstr, errlen, "the schema catalog has no %s record", REPAIR_RECORD);
        return NULL;
    }
    int32_t frame_id;
    if (app_frame_id(app, entry, view->v_repair_topic, &frame_id, errstr, errlen))
        return NULL;
    repair_t *repair = calloc(1, sizeof(*repair));
    if (!repair) {
        snprintf(errstr, errlen, "out of memory");
        return NULL;
    }
    repair->rp_app = app;
    repair->rp_frame_id = frame_id;
    repair->rp_entry = entry;
    snprintf(repair->rp_run_id, sizeof(repair->rp_run_id), "%s", run_id);
    buf_init(&repair->rp_frame);
    repair->rp_iface = avro_generic_class_from_schema(entry->ce_schema);
    if (!repair->rp_iface || avro_generic_value_new(repair->rp_iface, &repair->rp_value)) {
        snprintf(errstr, errlen, "cannot prepare the %s encoder: %s", REPAIR_RECORD,
                 avro_strerror());
        repair_destroy(repair);
        return NULL;
    }
    repair->rp_has_value = true;
    rd_kafka_conf_t *conf = kafka_conf_new(app->ap_cfg, repair_producer_defaults, errstr, errlen);
    if (!conf) {
        repair_destroy(repair);
        return NULL;
    }
    char kerr[512];
    repair->rp_producer = kprod_new(conf, on_report, repair, kerr, sizeof(kerr));
    if (!repair->rp_producer) {
        snprintf(errstr, errlen, "cannot create the repair producer: %s", kerr);
        repair_destroy(repair);
        return NULL;
    }
    return repair;
}

void repair_destroy(repair_t *repair)
{
    if (!repair)
        return;
    kprod_destroy(repair->rp_producer, 0, false);
    if (repair->rp_has_value)
        avro_value_decref(&repair->rp_value);
    if (repair->rp_iface)
        avro_value_iface_decref(repair->rp_iface);
    buf_free(&repair->rp_frame);
    free(repair);
}

static int set_str(avro_value_t *record, const char *name, const char *text)
{
    avro_value_t field;
    if (avro_value_get_by_name(record, name, &field, NULL))
        return RM_EINVAL;
    return avro_value_set_string(&field, text) ? RM_EINVAL : 0;
}

static int set_long(avro_value_t *record, const char *name, int64_t v)
{
    avro_value_t field;
    if (avro_value_get_by_name(record, name, &field, NULL))
        return RM_EINVAL;
    return avro_value_set_long(&field, v) ? RM_EINVAL : 0;
}

static int encode(repair_t *repair, const char *event_id, const char *key, const char *section,
                  compare_op_t op, const char *item, const char *fields, const char *url,
                  const char *reason, int64_t read_ms)
{
    avro_value_t *rec = &repair->rp_value, field, branch;
    avro_value_reset(rec);
    int rc = set_str(rec, "event_id", event_id);
    rc = rc ? rc : set_long(rec, "occurred_at", read_ms);
    rc = rc ? rc : set_long(rec, "version", 1);
    rc = rc ? rc : set_str(rec, "view", repair->rp_app->ap_view->v_name);
    rc = rc ? rc : set_str(rec, "view_key", key);
    rc = rc ? rc : set_str(rec, "section", section);
    rc = rc ? rc : set_str(rec, "fields_json", fields);
    rc = rc ? rc : set_str(rec, "run_id", repair->rp_run_id);
    rc = rc ? rc : set_str(rec, "source_url", url ? url : "");
    rc = rc ? rc : set_str(rec, "reason", reason ? reason : "");
    if (rc)
        return rc;
    if (avro_value_get_by_name(rec, "op", &field, NULL) || avro_value_set_enum(&field, (int)op))
        return RM_EINVAL;
    /* item_id is ["null", "string"]: branch 0 is null, 1 a string */
    if (avro_value_get_by_name(rec, "item_id", &field, NULL) ||
        avro_value_set_branch(&field, item ? 1 : 0, &branch) ||
        (item ? avro_value_set_string(&branch, item) : avro_value_set_null(&branch)))
        return RM_EINVAL;
    return avro_dec_encode_frame(repair->rp_frame_id, rec, &repair->rp_frame);
}

int repair_publish(repair_t *repair, const char *key, const char *section, compare_op_t op,
                   const char *item, json_t *fields, const char *url, const char *reason,
                   int64_t read_ms)
{
    char event_id[160];
    snprintf(event_id, sizeof(event_id), "%s/%llu", repair->rp_run_id,
             (unsigned long long)++repair->rp_seq);
    char *text = json_dumps(fields, JSON_COMPACT | JSON_SORT_KEYS);
    if (!text)
        return RM_ENOMEM;
    int rc = encode(repair, event_id, key, section, op, item, text, url, reason, read_ms);
    free(text);
    if (rc) {
        log_error("cannot encode a repair", LOG_S("key", key), LOG_S("section", section));
        return rc;
    }
    kprod_msg_t msg = {
        .km_topic = repair->rp_app->ap_view->v_repair_topic,
        .km_key = key,
        .km_key_len = strlen(key),
        .km_value = repair->rp_frame.b_data,
        .km_value_len = repair->rp_frame.b_len,
    };
    rc = kprod_send(repair->rp_producer, &msg); /* waits out a full queue */
    if (rc) {
        log_error("cannot queue a repair", LOG_S("error", kprod_last_error(repair->rp_producer)));
        return RM_EKAFKA;
    }
    kprod_poll(repair->rp_producer);
    return 0;
}

int repair_flush(repair_t *repair, int timeout_ms, uint64_t *ret_failed)
{
    int rc = kprod_flush(repair->rp_producer, timeout_ms);
    *ret_failed = kprod_failed(repair->rp_producer) + kprod_queued(repair->rp_producer);
    return rc || *ret_failed ? RM_EKAFKA : 0;
}

uint64_t repair_delivered(const repair_t *repair)
{
    return kprod_delivered(repair->rp_producer);
}
