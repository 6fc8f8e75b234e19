/* drift: picks and injects the differences between sources and view (see drift.h).
 *
 * Notes on the design:
 * (1) Every drift item takes a customer no other item has, and never an erased one
 *     (nothing of it is served): items cannot mask or repeat each other, so the manifest
 *     is exactly diff(truth, store oracle) minus updated_at (tested).
 * (2) Unapplied events are verified by building the store oracle without them and
 *     comparing the customer's view documents; an event whose absence changes nothing
 *     served (a delay later superseded by the delivery, an old contact update) is
 *     rejected and another drawn. A few rounds suffice; each is one oracle build.
 * (3) The kinds draw from a prng stream of their own: adding drift never changes the
 *     event stream (except that the unapplied events travel as poison). */
#include "drift.h"
#include "prng.h"
#include "rm_err.h"

#include <stdlib.h>
#include <string.h>

#define DRIFT_PRNG_STREAM 0xd21f7
#define DAY_MS INT64_C(86400000)
#define COUNT_OF(array) (sizeof(array) / sizeof((array)[0]))

struct drift {
    const model_t *dr_model;
    prng_t dr_prng;
    drift_opts_t dr_opts;
    bool *dr_withheld; /* per event */
    bool *dr_used; /* per customer: has a drift item (note 1) */
    bool *dr_erased; /* per customer */
    drift_event_t *dr_events;
    size_t dr_event_count;
    json_t *dr_entries; /* manifest lines; unapplied ones carry "_event": index */
    json_t **dr_pending; /* the records of the pending items (borrowed from the truth) */
    size_t dr_pending_count;
};

/* ---- comparing view documents ------------------------------------------------------------- */

static int add_entry(json_t *entries, const char *kind, const char *key, const char *section,
                     const char *item, const char *field, const json_t *store, const json_t *source,
                     json_int_t event)
{
    json_t *entry = json_object();
    if (!entry)
        return RM_ENOMEM;
    int bad = json_object_set_new(entry, "kind", json_string(kind));
    bad |= json_object_set_new(entry, "key", json_string(key));
    bad |= json_object_set_new(entry, "section", json_string(section));
    bad |= json_object_set_new(entry, "item", item ? json_string(item) : json_null());
    bad |= json_object_set_new(entry, "field", field ? json_string(field) : json_null());
    bad |= json_object_set_new(entry, "store", store ? json_deep_copy(store) : json_null());
    bad |= json_object_set_new(entry, "source", source ? json_deep_copy(source) : json_null());
    if (event >= 0)
        bad |= json_object_set_new(entry, "_event", json_integer(event));
    bad |= json_array_append_new(entries, entry);
    return bad ? RM_ENOMEM : 0;
}

/* Field by field, except updated_at (metadata of the change, not a compared value). */
static int diff_object(json_t *entries, json_int_t event, const char *key, const char *section,
                       const char *item, const json_t *source, const json_t *store)
{
    const char *field;
    const json_t *value;
    int rc = 0;
    json_object_foreach((json_t *)source, field, value)
    {
        const json_t *old = json_object_get(store, field);
        if (strcmp(field, "updated_at") != 0 && !json_equal(value, old))
            rc = rc ? rc
                    : add_entry(entries, "unapplied", key, section, item, field, old, value, event);
    }
    return rc;
}

static const json_t *find_item(const json_t *list, const char *id_field, const char *id)
{
    size_t i;
    const json_t *item;
    json_array_foreach(list, i, item)
    {
        if (strcmp(json_string_value(json_object_get(item, id_field)), id) == 0)
            return item;
    }
    return NULL;
}

static int diff_list(json_t *entries, json_int_t event, const char *key, const char *section,
                     const json_t *source, const json_t *store)
{
    const char *id_field = truth_item_id_field(section);
    size_t i;
    const json_t *item;
    int rc = 0;
    json_array_foreach(source, i, item)
    {
        const char *id = json_string_value(json_object_get(item, id_field));
        const json_t *old = find_item(store, id_field, id);
        rc = old ? diff_object(entries, event, key, section, id, item, old)
                 : add_entry(entries, "unapplied", key, section, id, NULL, NULL, item, event);
        if (rc)
            return rc;
    }
    json_array_foreach(store, i, item)
    {
        const char *id = json_string_value(json_object_get(item, id_field));
        if (!rc && !find_item(source, id_field, id))
            rc = add_entry(entries, "unapplied", key, section, id, NULL, item, NULL, event);
    }
    return rc;
}

/* Appends one entry per differing field of two view documents (counters aside: no
 * source service serves them). */
static int diff_docs(json_t *entries, json_int_t event, const json_t *source_doc,
                     const json_t *store_doc)
{
    static const char *const sections[] = {
        "profile", "orders", "payment_issues", "delivery_exceptions", "loyalty", "returns"};
    const char *key = json_string_value(json_object_get(source_doc, "key"));
    const json_t *source = json_object_get(source_doc, "sections");
    const json_t *store = json_object_get(store_doc, "sections");
    int rc = 0;
    for (size_t s = 0; s < COUNT_OF(sections) && !rc; s++) {
        const json_t *now = json_object_get(source, sections[s]);
        const json_t *old = json_object_get(store, sections[s]);
        if (json_is_array(now))
            rc = diff_list(entries, event, key, sections[s], now, old);
        else if (json_is_object(now) && json_is_object(old))
            rc = diff_object(entries, event, key, sections[s], NULL, now, old);
        else if (!json_equal(now, old))
            rc = add_entry(entries, "unapplied", key, sections[s], NULL, NULL, old, now, event);
    }
    return rc;
}

/* ---- unapplied ------------------------------------------------------------------------------ */

static bool withholdable(const sim_event_t *ev)
{
    switch (ev->ev_type) {
    case SIM_CUSTOMER_CONTACT_UPDATED:
    case SIM_ORDER_CANCELLED:
    case SIM_PAYMENT_FAILED:
    case SIM_SHIPMENT_DELAYED:
    case SIM_LOYALTY_TIER_CHANGED:
    case SIM_RETURN_OPENED:
        return true;
    default:
        return false;
    }
}

/* A random eligible event not tried before, or SIZE_MAX when none is left. */
static size_t draw_event(drift_t *drift, const bool *rejected)
{
    size_t events = model_event_count(drift->dr_model);
    size_t start = (size_t)prng_below(&drift->dr_prng, events);
    for (size_t step = 0; step < events; step++) {
        size_t i = (start + step) % events;
        const sim_event_t *ev = model_event(drift->dr_model, i);
        if (!rejected[i] && withholdable(ev) && !drift->dr_used[ev->ev_customer] &&
            !drift->dr_erased[ev->ev_customer])
            return i;
    }
    return SIZE_MAX;
}

/* Checks the candidates in dr_events[first..]: keeps those whose absence shows in the view
 * (recording their manifest lines), rejects the others. Returns the number kept. */
static int verify_round(drift_t *drift, const oracle_t *full, bool *rejected, size_t first,
                        size_t *ret_kept, char *errstr, size_t errlen)
{
    oracle_t *store = oracle_build_without(drift->dr_model, drift->dr_withheld, errstr, errlen);
    if (!store)
        return RM_ENOMEM;
    size_t kept = first;
    int rc = 0;
    for (size_t k = first; k < drift->dr_event_count && !rc; k++) {
        drift_event_t de = drift->dr_events[k];
        uint32_t customer = model_event(drift->dr_model, de.de_index)->ev_customer;
        json_t *now = oracle_customer_doc(full, customer, 0);
        json_t *old = oracle_customer_doc(store, customer, 0);
        size_t before = json_array_size(drift->dr_entries);
        rc = now && old ? diff_docs(drift->dr_entries, (json_int_t)kept, now, old) : RM_ENOMEM;
        json_decref(now);
        json_decref(old);
        if (rc)
            break;
        if (json_array_size(drift->dr_entries) == before) {
            rejected[de.de_index] = true; /* invisible: note 2 */
            drift->dr_withheld[de.de_index] = false;
            drift->dr_used[customer] = false;
        } else {
            drift->dr_events[kept++] = de;
        }
    }
    oracle_destroy(store);
    if (rc)
        snprintf(errstr, errlen, "out of memory comparing oracles");
    *ret_kept = kept;
    return rc;
}

static int pick_unapplied(drift_t *drift, const oracle_t *full, char *errstr, size_t errlen)
{
    bool *rejected = calloc(model_event_count(drift->dr_model), sizeof(bool));
    if (!rejected)
        return RM_ENOMEM;
    uint32_t wanted = drift->dr_opts.do_unapplied;
    size_t kept = 0;
    int rc = 0;
    while (kept < wanted && !rc) {
        drift->dr_event_count = kept;
        while (drift->dr_event_count < wanted) {
            size_t i = draw_event(drift, rejected);
            if (i == SIZE_MAX)
                break;
            drift->dr_withheld[i] = true;
            drift->dr_used[model_event(drift->dr_model, i)->ev_customer] = true;
            drift->dr_events[drift->dr_event_count++] =
                (drift_event_t){.de_index = i, .de_ack = {.ka_offset = -1}};
        }
        if (drift->dr_event_count == kept) {
            snprintf(errstr, errlen,
                     "--drift-unapplied: only %zu of %u events can be withheld visibly "
                     "(one per customer); simulate more customers",
                     kept, wanted);
            rc = RM_ENOTFOUND;
            break;
        }
        rc = verify_round(drift, full, rejected, kept, &kept, errstr, errlen);
    }
    drift->dr_event_count = kept;
    free(rejected);
    return rc;
}

drift_t *drift_new(const model_t *model, const drift_opts_t *opts, char *errstr, size_t errlen)
{
    uint32_t customers = model_customer_count(model);
    oracle_t *full = NULL;
    drift_t *drift = calloc(1, sizeof(*drift));
    if (!drift)
        goto oom;
    drift->dr_model = model;
    drift->dr_opts = *opts;
    prng_seed(&drift->dr_prng, model_seed(model), DRIFT_PRNG_STREAM);
    drift->dr_withheld = calloc(model_event_count(model), sizeof(bool));
    drift->dr_used = calloc(customers, sizeof(bool));
    drift->dr_erased = calloc(customers, sizeof(bool));
    drift->dr_events = calloc(opts->do_unapplied + 1, sizeof(*drift->dr_events));
    drift->dr_pending = calloc(opts->do_pending + 1, sizeof(*drift->dr_pending));
    drift->dr_entries = json_array();
    if (!drift->dr_withheld || !drift->dr_used || !drift->dr_erased || !drift->dr_events ||
        !drift->dr_pending || !drift->dr_entries)
        goto oom;
    full = oracle_build(model, errstr, errlen);
    if (!full)
        goto fail;
    for (uint32_t c = 0; c < customers; c++)
        drift->dr_erased[c] = oracle_customer_erased(full, c);
    int rc = opts->do_unapplied ? pick_unapplied(drift, full, errstr, errlen) : 0;
    oracle_destroy(full);
    full = NULL;
    if (rc == RM_ENOMEM)
        goto oom;
    if (rc)
        goto fail;
    return drift;
oom:
    snprintf(errstr, errlen, "out of memory picking drift");
fail:
    oracle_destroy(full);
    drift_destroy(drift);
    return NULL;
}

void drift_destroy(drift_t *drift)
{
    if (!drift)
        return;
    free(drift->dr_withheld);
    free(drift->dr_used);
    free(drift->dr_erased);
    free(drift->dr_events);
    free(drift->dr_pending);
    json_decref(drift->dr_entries);
    free(drift);
}

const bool *drift_withheld(const drift_t *drift)
{
    return drift->dr_withheld;
}

size_t drift_unapplied_count(const drift_t *drift)
{
    return drift->dr_event_count;
}

drift_event_t *drift_unapplied(drift_t *drift, size_t i)
{
    return &drift->dr_events[i];
}

drift_event_t *drift_find(drift_t *drift, size_t index)
{
    if (!drift->dr_withheld[index])
        return NULL;
    for (size_t i = 0; i < drift->dr_event_count; i++) {
        if (drift->dr_events[i].de_index == index)
            return &drift->dr_events[i];
    }
    return NULL;
}

const json_t *drift_entries(const drift_t *drift)
{
    return drift->dr_entries;
}

/* ---- source-only changes -------------------------------------------------------------------- */

typedef struct drift_target {
    const char *dt_section;
    const char *dt_field;
} drift_target_t;

/* Spread over every served section; a kind cycles through its pool. */
static const drift_target_t unpublished_pool[] = {
    {"profile", "email"},
    {"loyalty", "points"},
    {"orders", "status"},
    {"profile", "phone"},
    {"returns", "reason"},
    {"payment_issues", "reason"},
    {"profile", "preferred_channel"},
    {"orders", "total_cents"},
    {"loyalty", "tier"},
    {"profile", "marketing_opt_in"},
    {"orders", "currency"},
    {"payment_issues", "amount_cents"},
    {"profile", "name"},
};
/* "values that diverge": list items whose source value is not what the event carried */
static const drift_target_t diverge_pool[] = {
    {"orders", "total_cents"},
    {"returns", "reason"},
    {"orders", "currency"},
    {"payment_issues", "amount_cents"},
    {"delivery_exceptions", "reason"},
    {"delivery_exceptions", "new_eta"},
};
static const drift_target_t pending_pool[] = {
    {"profile", "email"},
    {"orders", "status"},
    {"loyalty", "points"},
    {"payment_issues", "reason"},
    {"delivery_exceptions", "new_eta"},
    {"returns", "reason"},
    {"profile", "marketing_opt_in"},
};

static const char *const channels[] = {"EMAIL", "SMS", "PHONE", "NONE"};
static const char *const tiers[] = {"BRONZE", "SILVER", "GOLD", "PLATINUM"};
static const char *const currencies[] = {"EUR", "GBP", "USD"};
static const char *const return_reasons[] = {"wrong_size", "damaged", "not_as_described",
                                             "changed_mind"};
static const char *const payment_reasons[] = {"insufficient_funds", "card_expired", "do_not_honor",
                                              "chargeback_fraud"};
static const char *const delay_reasons[] = {"weather", "carrier_capacity", "address_issue",
                                            "customs_hold"};

/* The symbol after current in table (the first when current is not in it). */
static json_t *next_symbol(const char *const *table, size_t count, const char *current)
{
    for (size_t i = 0; i < count; i++) {
        if (current && strcmp(table[i], current) == 0)
            return json_string(table[(i + 1) % count]);
    }
    return json_string(strcmp(table[0], current ? current : "") ? table[0] : table[1]);
}

/* A value of field different from current, as the source would hold it. */
static json_t *changed_value(prng_t *prng, const char *section, const char *field,
                             const json_t *current)
{
    const char *text = json_string_value(current);
    char buf[256];
    if (strcmp(field, "email") == 0) {
        snprintf(buf, sizeof(buf), "source.%s", text ? text : "x@example.com");
        return json_string(buf);
    }
    if (strcmp(field, "phone") == 0) {
        snprintf(buf, sizeof(buf), "%s", text ? text : "+440000000000");
        size_t len = strlen(buf);
        buf[len - 1] = (char)('0' + (buf[len - 1] - '0' + 1) % 10);
        return json_string(buf);
    }
    if (strcmp(field, "name") == 0) {
        snprintf(buf, sizeof(buf), "%s-Source", text ? text : "");
        return json_string(buf);
    }
    if (strcmp(field, "preferred_channel") == 0)
        return next_symbol(channels, COUNT_OF(channels), text);
    if (strcmp(field, "tier") == 0)
        return next_symbol(tiers, COUNT_OF(tiers), text);
    if (strcmp(field, "currency") == 0)
        return next_symbol(currencies, COUNT_OF(currencies), text);
    if (strcmp(field, "marketing_opt_in") == 0)
        return json_boolean(!json_is_true(current));
    if (strcmp(field, "status") == 0)
        return json_string(strcmp(text, "CANCELLED") == 0 ? "CREATED" : "CANCELLED");
    if (strcmp(field, "new_eta") == 0)
        return json_integer(json_integer_value(current) + DAY_MS);
    if (strcmp(field, "reason") == 0) {
        if (strcmp(section, "returns") == 0)
            return next_symbol(return_reasons, COUNT_OF(return_reasons), text);
        if (strcmp(section, "payment_issues") == 0)
            return next_symbol(payment_reasons, COUNT_OF(payment_reasons), text);
        return next_symbol(delay_reasons, COUNT_OF(delay_reasons), text);
    }
    /* points, total_cents, amount_cents */
    return json_integer(json_integer_value(current) + 1 + (json_int_t)prng_below(prng, 999));
}

/* The record of section that a target would change in sections, or NULL when the
 * customer has none (no loyalty account, no returns...). Orders: one of the newest
 * ORACLE_MAX_ORDERS, the ones the view shows. */
static json_t *pick_record(prng_t *prng, json_t *sections, const char *section)
{
    json_t *value = json_object_get(sections, section);
    if (json_is_object(value))
        return value;
    size_t count = json_array_size(value);
    if (strcmp(section, "orders") == 0 && count > ORACLE_MAX_ORDERS)
        count = ORACLE_MAX_ORDERS;
    return count ? json_array_get(value, (size_t)prng_below(prng, count)) : NULL;
}

/* One item of kind: a fresh customer with the target's section, changed in place. */
static int inject(drift_t *drift, truth_t *truth, const char *kind, const drift_target_t *target,
                  bool pending, bool *ret_done)
{
    const model_t *model = drift->dr_model;
    uint32_t customers = model_customer_count(model);
    uint32_t start = (uint32_t)prng_below(&drift->dr_prng, customers);
    for (uint32_t step = 0; step < customers; step++) {
        uint32_t c = (start + step) % customers;
        if (drift->dr_used[c] || drift->dr_erased[c])
            continue;
        json_t *sections = json_object_get(truth_doc(truth, c), "sections");
        json_t *record = pick_record(&drift->dr_prng, sections, target->dt_section);
        if (!record)
            continue;
        json_t *old = json_object_get(record, target->dt_field);
        json_t *store = json_deep_copy(old);
        json_t *now = changed_value(&drift->dr_prng, target->dt_section, target->dt_field, old);
        const char *id_field = truth_item_id_field(target->dt_section);
        const char *item = id_field ? json_string_value(json_object_get(record, id_field)) : NULL;
        int rc = store && now
                     ? add_entry(drift->dr_entries, kind, model_customer_id(model, c),
                                 target->dt_section, item, target->dt_field, store, now, -1)
                     : RM_ENOMEM;
        json_decref(store);
        if (rc || json_object_set_new(record, target->dt_field, now) != 0)
            return RM_ENOMEM;
        if (pending)
            drift->dr_pending[drift->dr_pending_count++] = record;
        drift->dr_used[c] = true;
        *ret_done = true;
        return 0;
    }
    *ret_done = false;
    return 0;
}

static int inject_kind(drift_t *drift, truth_t *truth, const char *kind, uint32_t count,
                       const drift_target_t *pool, size_t pool_len, bool pending, char *errstr,
                       size_t errlen)
{
    for (uint32_t i = 0; i < count; i++) {
        bool done = false;
        for (size_t t = 0; t < pool_len && !done; t++) {
            int rc = inject(drift, truth, kind, &pool[(i + t) % pool_len], pending, &done);
            if (rc) {
                snprintf(errstr, errlen, "out of memory injecting drift");
                return rc;
            }
        }
        if (!done) {
            snprintf(errstr, errlen,
                     "--drift-%s: no customer left for item %u of %u (one per customer); "
                     "simulate more customers",
                     kind, i + 1, count);
            return RM_ENOTFOUND;
        }
    }
    return 0;
}

int drift_apply(drift_t *drift, truth_t *truth, char *errstr, size_t errlen)
{
    int rc = inject_kind(drift, truth, "unpublished", drift->dr_opts.do_unpublished,
                         unpublished_pool, COUNT_OF(unpublished_pool), false, errstr, errlen);
    rc = rc ? rc
            : inject_kind(drift, truth, "diverge", drift->dr_opts.do_diverge, diverge_pool,
                          COUNT_OF(diverge_pool), false, errstr, errlen);
    rc = rc ? rc
            : inject_kind(drift, truth, "pending", drift->dr_opts.do_pending, pending_pool,
                          COUNT_OF(pending_pool), true, errstr, errlen);
    return rc;
}

void drift_stamp_pending(drift_t *drift, int64_t pending_at_ms)
{
    /* pending changes must be newer than any event the store can hold */
    size_t events = model_event_count(drift->dr_model);
    if (events && pending_at_ms <= model_event(drift->dr_model, events - 1)->ev_occurred_at)
        pending_at_ms = model_event(drift->dr_model, events - 1)->ev_occurred_at + 1;
    for (size_t i = 0; i < drift->dr_pending_count; i++) {
        /* out of memory here only leaves the stream's stamp: the item then reads as
         * unpublished drift, which the caller cannot do better than anyway */
        json_t *stamp = json_integer(pending_at_ms);
        if (stamp)
            json_object_set_new(drift->dr_pending[i], "updated_at", stamp);
    }
}

/* ---- manifest -------------------------------------------------------------------------------- */

static json_t *event_json(const drift_t *drift, const drift_event_t *de)
{
    const sim_event_t *ev = model_event(drift->dr_model, de->de_index);
    sim_payload_t pl;
    model_payload(drift->dr_model, ev, &pl);
    bool delivered = de->de_ack.ka_done && !de->de_ack.ka_err && de->de_ack.ka_offset >= 0;
    return json_pack("{s:s, s:s, s:s?, s:o, s:o}", "record",
                     model_event_type_name((sim_event_type_t)ev->ev_type), "event_id",
                     pl.pl_event_id, "topic", de->de_topic, "partition",
                     delivered ? json_integer(de->de_ack.ka_partition) : json_null(), "offset",
                     delivered ? json_integer(de->de_ack.ka_offset) : json_null());
}

int drift_write_manifest(const drift_t *drift, FILE *out)
{
    size_t i;
    const json_t *entry;
    int rc = 0;
    json_array_foreach(drift->dr_entries, i, entry)
    {
        json_t *line = json_deep_copy(entry);
        if (!line)
            return RM_ENOMEM;
        json_t *index = json_object_get(line, "_event");
        json_t *event =
            index ? event_json(drift, &drift->dr_events[json_integer_value(index)]) : json_null();
        json_object_del(line, "_event");
        if (!event || json_object_set_new(line, "event", event) != 0)
            rc = RM_ENOMEM;
        else if (json_dumpf(line, out, JSON_COMPACT) != 0 || fputc('\n', out) == EOF)
            rc = RM_EIO;
        json_decref(line);
        if (rc)
            return rc;
    }
    return fflush(out) != 0 ? RM_EIO : 0;
}
