/* summary: per-type and per-topic counts of the generated stream, as JSON. */
#include "summary.h"
#include "rm_err.h"

#include <jansson.h>
#include <string.h>

void summary_count(summary_t *summary, const sim_event_t *ev, size_t value_bytes)
{
    if (summary->su_events == 0)
        summary->su_first_occurred_at = ev->ev_occurred_at;
    summary->su_last_occurred_at = ev->ev_occurred_at;
    summary->su_by_type[ev->ev_type]++;
    summary->su_events++;
    summary->su_bytes += value_bytes;
}

/* Adds count to object[key]; returns false on allocation failure. */
static bool add_count(json_t *object, const char *key, uint64_t count)
{
    json_t *old = json_object_get(object, key);
    json_int_t base = old ? json_integer_value(old) : 0;
    return json_object_set_new(object, key, json_integer(base + (json_int_t)count)) == 0;
}

static bool set_int(json_t *object, const char *key, int64_t value)
{
    return json_object_set_new(object, key, json_integer((json_int_t)value)) == 0;
}

int summary_write(const summary_t *summary, const model_t *model, const avro_enc_t *enc, FILE *out)
{
    json_t *root = json_object(), *by_type = json_object(), *by_topic = json_object();
    bool ok = root && by_type && by_topic;
    ok = ok && json_object_set_new(root, "seed", json_integer((json_int_t)model_seed(model))) == 0;
    ok = ok && set_int(root, "customers", model_customer_count(model));
    ok = ok && set_int(root, "erased", (int64_t)summary->su_by_type[SIM_CUSTOMER_ERASED]);
    ok = ok && set_int(root, "orders", (int64_t)summary->su_by_type[SIM_ORDER_CREATED]);
    ok = ok && set_int(root, "events", (int64_t)summary->su_events);
    ok = ok && set_int(root, "bytes", (int64_t)summary->su_bytes);
    ok = ok && set_int(root, "first_occurred_at", summary->su_first_occurred_at);
    ok = ok && set_int(root, "last_occurred_at", summary->su_last_occurred_at);
    for (int type = 0; ok && type < SIM_EVENT_TYPE_COUNT; type++) {
        ok = add_count(by_type, model_event_type_name(type), summary->su_by_type[type]) &&
             add_count(by_topic, avro_enc_entry(enc, type)->ce_topic, summary->su_by_type[type]);
    }
    ok = ok && json_object_set(root, "by_type", by_type) == 0 &&
         json_object_set(root, "by_topic", by_topic) == 0;
    int rc = RM_ENOMEM;
    if (ok) {
        rc = json_dumpf(root, out, JSON_COMPACT) == 0 && fputc('\n', out) != EOF && fflush(out) == 0
                 ? 0
                 : RM_EIO;
    }
    json_decref(by_type);
    json_decref(by_topic);
    json_decref(root);
    return rc;
}
