/* test-simulate: the simulator's promises — determinism, a well-formed stream, Avro that
 * decodes back to what the model says, and an oracle consistent with the events. */
#include "../../tools/simulate/avro_enc.h"
#include "catalog.h"
#include "../../tools/simulate/drift.h"
#include "../../tools/simulate/faults.h"
#include "../../tools/simulate/model.h"
#include "../../tools/simulate/oracle.h"
#include "rm_build.h"
#include "rm_err.h"
#include "tsupport.h"
#include "../../tools/simulate/truth.h"

#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define START_MS INT64_C(1700000000000)

static model_t *make_model(uint64_t seed, uint32_t customers)
{
    char errstr[256];
    model_t *model = model_new(seed, customers, errstr, sizeof(errstr));
    ck_assert_msg(model != NULL, "%s", errstr);
    model_set_start(model, START_MS);
    return model;
}

/* The oracle as text (malloc'd). */
static char *oracle_text(const model_t *model, size_t *ret_len)
{
    char errstr[256];
    oracle_t *oracle = oracle_build(model, errstr, sizeof(errstr));
    ck_assert_msg(oracle != NULL, "%s", errstr);
    char *text = NULL;
    FILE *out = open_memstream(&text, ret_len);
    ck_assert_ptr_nonnull(out);
    ck_assert_int_eq(oracle_write(oracle, out), 0);
    fclose(out);
    oracle_destroy(oracle);
    return text;
}

START_TEST(test_same_seed_same_stream)
{
    model_t *a = make_model(7, 300), *b = make_model(7, 300);
    ck_assert_uint_eq(model_event_count(a), model_event_count(b));
    sim_payload_t pa, pb;
    for (size_t i = 0; i < model_event_count(a); i++) {
        model_payload(a, model_event(a, i), &pa);
        model_payload(b, model_event(b, i), &pb);
        ck_assert_str_eq(pa.pl_key, pb.pl_key);
        ck_assert_int_eq(model_event(a, i)->ev_type, model_event(b, i)->ev_type);
    }
    size_t len_a, len_b;
    char *text_a = oracle_text(a, &len_a), *text_b = oracle_text(b, &len_b);
    ck_assert_uint_eq(len_a, len_b);
    ck_assert(memcmp(text_a, text_b, len_a) == 0);
    free(text_a);
    free(text_b);
    model_destroy(a);
    model_destroy(b);
}
END_TEST

START_TEST(test_seeds_never_share_ids)
{
    model_t *a = make_model(1, 50), *b = make_model(11, 50);
    ck_assert_str_eq(model_customer_id(a, 0), "C1-000001");
    ck_assert_str_eq(model_customer_id(b, 0), "C11-000001");
    sim_payload_t pa, pb;
    model_payload(a, model_event(a, 0), &pa);
    model_payload(b, model_event(b, 0), &pb);
    ck_assert_str_ne(pa.pl_event_id, pb.pl_event_id);
    model_destroy(a);
    model_destroy(b);
}
END_TEST

/* Version counters per aggregate kind, indexed by customer or order. */
enum { AGG_CUSTOMER, AGG_LOYALTY, AGG_ORDER, AGG_PAYMENT, AGG_SHIPMENT, AGG_RETURN, AGG_COUNT };

static int aggregate_of(sim_event_type_t type)
{
    switch (type) {
    case SIM_CUSTOMER_REGISTERED:
    case SIM_CUSTOMER_CONTACT_UPDATED:
    case SIM_CUSTOMER_ERASED:
        return AGG_CUSTOMER;
    case SIM_LOYALTY_TIER_CHANGED:
        return AGG_LOYALTY;
    case SIM_ORDER_CREATED:
    case SIM_ORDER_CANCELLED:
        return AGG_ORDER;
    case SIM_PAYMENT_SETTLED:
    case SIM_PAYMENT_FAILED:
    case SIM_PAYMENT_REVERSED:
        return AGG_PAYMENT;
    case SIM_SHIPMENT_DISPATCHED:
    case SIM_SHIPMENT_DELAYED:
    case SIM_SHIPMENT_DELIVERED:
        return AGG_SHIPMENT;
    default:
        return AGG_RETURN;
    }
}

START_TEST(test_stream_is_well_formed)
{
    const uint32_t customers = 2000;
    model_t *model = make_model(1, customers);
    size_t events = model_event_count(model), orders = model_order_count(model);
    ck_assert_uint_ge(events, 50000); /* >= 50,000 events for 2,000 customers */
    int64_t *versions[AGG_COUNT];
    for (int a = 0; a < AGG_COUNT; a++)
        versions[a] = calloc(orders > customers ? orders : customers, sizeof(int64_t));
    bool *erased = calloc(customers, sizeof(bool));
    uint32_t *order_count = calloc(customers, sizeof(uint32_t));
    int64_t previous_ms = START_MS - 1;
    for (size_t i = 0; i < events; i++) {
        const sim_event_t *ev = model_event(model, i);
        ck_assert_int_eq(ev->ev_occurred_at, previous_ms + 1); /* unique, increasing */
        previous_ms = ev->ev_occurred_at;
        ck_assert_msg(!erased[ev->ev_customer], "event after erasure at %zu", i);
        int agg = aggregate_of(ev->ev_type);
        size_t index = agg <= AGG_LOYALTY ? ev->ev_customer : ev->ev_ref;
        ck_assert_int_eq(ev->ev_version, versions[agg][index] + 1);
        versions[agg][index] = ev->ev_version;
        /* everything about an order follows its creation */
        if (agg > AGG_LOYALTY && ev->ev_type != SIM_ORDER_CREATED)
            ck_assert_int_ge(versions[AGG_ORDER][ev->ev_ref], 1);
        if (ev->ev_type == SIM_ORDER_CREATED)
            order_count[ev->ev_customer]++;
        if (ev->ev_type == SIM_CUSTOMER_ERASED)
            erased[ev->ev_customer] = true;
    }
    uint32_t heavy = 0, erased_count = 0;
    for (uint32_t c = 0; c < customers; c++) {
        heavy += order_count[c] > 20;
        erased_count += erased[c];
    }
    ck_assert_uint_gt(heavy, 0); /* the 20-order trim is exercised */
    ck_assert_uint_gt(erased_count, 0); /* about 1% */
    ck_assert_uint_lt(erased_count, customers / 20);
    for (int a = 0; a < AGG_COUNT; a++)
        free(versions[a]);
    free(erased);
    free(order_count);
    model_destroy(model);
}
END_TEST

START_TEST(test_encoded_events_decode_to_the_payload)
{
    char errstr[256];
    catalog_t *catalog =
        catalog_load(RM_SOURCE_DIR "/schemas/catalog.yaml", errstr, sizeof(errstr));
    ck_assert_msg(catalog != NULL, "%s", errstr);
    avro_enc_t *enc = avro_enc_new(catalog, errstr, sizeof(errstr));
    ck_assert_msg(enc != NULL, "%s", errstr);
    model_t *model = make_model(3, 200);
    bool seen[SIM_EVENT_TYPE_COUNT] = {false};
    sim_payload_t pl;
    for (size_t i = 0; i < model_event_count(model); i++) {
        const sim_event_t *ev = model_event(model, i);
        model_payload(model, ev, &pl);
        const unsigned char *data;
        size_t len;
        ck_assert_int_eq(avro_enc_encode(enc, ev->ev_type, &pl, (const void **)&data, &len), 0);
        const catalog_entry_t *entry = avro_enc_entry(enc, ev->ev_type);
        ck_assert_uint_gt(len, AVRO_ENC_HEADER_BYTES);
        ck_assert_int_eq(data[0], 0);
        ck_assert_int_eq((data[1] << 24) | (data[2] << 16) | (data[3] << 8) | data[4],
                         entry->ce_id);
        avro_value_iface_t *iface = avro_generic_class_from_schema(entry->ce_schema);
        avro_value_t value, field;
        ck_assert_int_eq(avro_generic_value_new(iface, &value), 0);
        avro_reader_t reader = avro_reader_memory((const char *)data + AVRO_ENC_HEADER_BYTES,
                                                  (int64_t)(len - AVRO_ENC_HEADER_BYTES));
        ck_assert_int_eq(avro_value_read(reader, &value), 0);
        size_t body_bytes;
        avro_value_sizeof(&value, &body_bytes);
        ck_assert_uint_eq(body_bytes, len - AVRO_ENC_HEADER_BYTES); /* nothing left over */
        const char *str = NULL;
        size_t str_len = 0;
        int64_t occurred_at = 0;
        ck_assert_int_eq(avro_value_get_by_name(&value, "event_id", &field, NULL), 0);
        ck_assert_int_eq(avro_value_get_string(&field, &str, &str_len), 0);
        ck_assert_str_eq(str, pl.pl_event_id);
        ck_assert_int_eq(avro_value_get_by_name(&value, "occurred_at", &field, NULL), 0);
        ck_assert_int_eq(avro_value_get_long(&field, &occurred_at), 0);
        ck_assert_int_eq(occurred_at, ev->ev_occurred_at);
        seen[ev->ev_type] = true;
        avro_reader_free(reader);
        avro_value_decref(&value);
        avro_value_iface_decref(iface);
    }
    for (int type = 0; type < SIM_EVENT_TYPE_COUNT; type++)
        ck_assert_msg(seen[type], "no %s in the stream", model_event_type_name(type));
    model_destroy(model);
    avro_enc_destroy(enc);
    catalog_destroy(catalog);
}
END_TEST

/* Settled minus reversed amounts per customer, recomputed from the events through the
 * order -> customer link, must equal the oracle's counter; lists must be sorted. */
START_TEST(test_oracle_agrees_with_events)
{
    model_t *model = make_model(5, 500);
    uint32_t customers = model_customer_count(model);
    int64_t *settled = calloc(customers, sizeof(int64_t));
    uint32_t *order_owner = calloc(model_order_count(model), sizeof(uint32_t));
    sim_payload_t pl;
    for (size_t i = 0; i < model_event_count(model); i++) {
        const sim_event_t *ev = model_event(model, i);
        model_payload(model, ev, &pl);
        if (ev->ev_type == SIM_ORDER_CREATED)
            order_owner[ev->ev_ref] = ev->ev_customer;
        else if (ev->ev_type == SIM_PAYMENT_SETTLED)
            settled[order_owner[ev->ev_ref]] += pl.pl_int[SIM_F_AMOUNT_CENTS];
        else if (ev->ev_type == SIM_PAYMENT_REVERSED)
            settled[order_owner[ev->ev_ref]] -= pl.pl_int[SIM_F_AMOUNT_CENTS];
    }
    size_t len;
    char *text = oracle_text(model, &len);
    FILE *in = fmemopen(text, len, "r");
    char *line = NULL;
    size_t cap = 0;
    uint32_t lines = 0;
    char previous_key[SIM_ID_MAX] = "";
    while (getline(&line, &cap, in) > 0) {
        json_error_t error;
        json_t *doc = json_loads(line, 0, &error);
        ck_assert_msg(doc != NULL, "%s", error.text);
        const char *key = json_string_value(json_object_get(doc, "key"));
        ck_assert_ptr_nonnull(key);
        ck_assert_int_lt(strcmp(previous_key, key), 0);
        snprintf(previous_key, sizeof(previous_key), "%s", key);
        uint32_t customer = (uint32_t)strtoul(strchr(key, '-') + 1, NULL, 10) - 1;
        json_t *sections = json_object_get(doc, "sections");
        if (json_is_true(json_object_get(doc, "erased"))) {
            ck_assert_ptr_null(sections);
        } else {
            json_t *counters = json_object_get(sections, "counters");
            ck_assert_int_eq(
                json_integer_value(json_object_get(counters, "lifetime_settled_cents")),
                settled[customer]);
            json_int_t orders = json_integer_value(json_object_get(counters, "lifetime_orders"));
            json_t *list = json_object_get(sections, "orders");
            ck_assert_uint_eq(json_array_size(list), orders < 20 ? orders : 20);
            for (size_t k = 1; k < json_array_size(list); k++)
                ck_assert_int_gt(
                    json_integer_value(json_object_get(json_array_get(list, k - 1), "created_at")),
                    json_integer_value(json_object_get(json_array_get(list, k), "created_at")));
        }
        json_decref(doc);
        lines++;
    }
    ck_assert_uint_eq(lines, customers);
    free(line);
    fclose(in);
    free(text);
    free(settled);
    free(order_owner);
    model_destroy(model);
}
END_TEST

/* ---- truth and drift ---------------------------------------------------------- */

typedef int (*text_writer_fn)(const void *ctx, FILE *out);

static char *write_text(text_writer_fn write, const void *ctx, size_t *ret_len)
{
    char *text = NULL;
    FILE *out = open_memstream(&text, ret_len);
    ck_assert_ptr_nonnull(out);
    ck_assert_int_eq(write(ctx, out), 0);
    fclose(out);
    return text;
}

static int truth_writer(const void *ctx, FILE *out)
{
    return truth_write(ctx, out);
}

static int store_writer(const void *ctx, FILE *out)
{
    return truth_write_oracle(ctx, out);
}

static int manifest_writer(const void *ctx, FILE *out)
{
    return drift_write_manifest(ctx, out);
}

#define PENDING_AT_MS INT64_C(1900000000000)

/* drift and truth of model with opts, drift applied. */
static truth_t *make_truth(const model_t *model, const drift_opts_t *opts, drift_t **ret_drift)
{
    char errstr[256];
    drift_t *drift = drift_new(model, opts, errstr, sizeof(errstr));
    ck_assert_msg(drift != NULL, "%s", errstr);
    truth_t *truth = truth_new(model, drift_withheld(drift), errstr, sizeof(errstr));
    ck_assert_msg(truth != NULL, "%s", errstr);
    ck_assert_int_eq(drift_apply(drift, truth, errstr, sizeof(errstr)), 0);
    drift_stamp_pending(drift, PENDING_AT_MS);
    ck_assert_int_eq(truth_index(truth), 0);
    *ret_drift = drift;
    return truth;
}

START_TEST(test_truth_without_drift_is_the_oracle)
{
    model_t *model = make_model(5, 500);
    drift_opts_t none = {0};
    drift_t *drift;
    truth_t *truth = make_truth(model, &none, &drift);
    size_t oracle_len, truth_len, store_len;
    char *oracle = oracle_text(model, &oracle_len);
    char *text = write_text(truth_writer, truth, &truth_len);
    char *store = write_text(store_writer, truth, &store_len);
    ck_assert_uint_eq(truth_len, oracle_len);
    ck_assert(memcmp(text, oracle, oracle_len) == 0); /* byte-identical */
    ck_assert_uint_eq(store_len, oracle_len);
    ck_assert(memcmp(store, oracle, oracle_len) == 0);
    free(oracle);
    free(text);
    free(store);
    truth_destroy(truth);
    drift_destroy(drift);
    model_destroy(model);
}
END_TEST

START_TEST(test_drift_is_deterministic)
{
    drift_opts_t opts = {.do_unpublished = 7, .do_unapplied = 6, .do_diverge = 4, .do_pending = 3};
    char *texts[2][2];
    size_t lens[2][2];
    for (int run = 0; run < 2; run++) {
        model_t *model = make_model(9, 400);
        drift_t *drift;
        truth_t *truth = make_truth(model, &opts, &drift);
        texts[run][0] = write_text(truth_writer, truth, &lens[run][0]);
        texts[run][1] = write_text(manifest_writer, drift, &lens[run][1]);
        truth_destroy(truth);
        drift_destroy(drift);
        model_destroy(model);
    }
    for (int k = 0; k < 2; k++) {
        ck_assert_uint_eq(lens[0][k], lens[1][k]);
        ck_assert(memcmp(texts[0][k], texts[1][k], lens[0][k]) == 0);
        free(texts[0][k]);
        free(texts[1][k]);
    }
}
END_TEST

/* Every difference between two view documents as "key|section|item|field" strings (item
 * and field empty where they do not apply), compared independently of drift.c: every
 * field of every item, items matched by the first field (their id); counters and
 * updated_at are not served by a source and not compared. */
static void collect_diffs(json_t *out, const char *key, const json_t *source, const json_t *store)
{
    const char *section;
    const json_t *now;
    json_object_foreach((json_t *)source, section, now)
    {
        const json_t *old = json_object_get(store, section);
        char line[512];
        if (strcmp(section, "counters") == 0)
            continue;
        if (json_is_object(now) && json_is_object(old)) {
            const char *field;
            const json_t *value;
            json_object_foreach((json_t *)now, field, value)
            {
                if (strcmp(field, "updated_at") &&
                    !json_equal(value, json_object_get(old, field))) {
                    snprintf(line, sizeof(line), "%s|%s||%s", key, section, field);
                    json_array_append_new(out, json_string(line));
                }
            }
        } else if (json_is_array(now)) {
            const json_t *lists[2] = {now, old};
            for (int side = 0; side < 2; side++) {
                size_t i;
                const json_t *item;
                json_array_foreach(lists[side], i, item)
                {
                    const char *id_field = json_object_iter_key(json_object_iter((json_t *)item));
                    const char *id = json_string_value(json_object_get(item, id_field));
                    const json_t *other = NULL;
                    size_t j;
                    const json_t *candidate;
                    json_array_foreach(lists[1 - side], j, candidate)
                    {
                        if (json_equal(json_object_get(candidate, id_field),
                                       json_object_get(item, id_field)))
                            other = candidate;
                    }
                    if (!other) {
                        snprintf(line, sizeof(line), "%s|%s|%s|", key, section, id);
                        json_array_append_new(out, json_string(line));
                        continue;
                    }
                    const char *field;
                    const json_t *value;
                    json_object_foreach((json_t *)item, field, value)
                    {
                        if (side == 0 && !json_equal(value, json_object_get(other, field))) {
                            snprintf(line, sizeof(line), "%s|%s|%s|%s", key, section, id, field);
                            json_array_append_new(out, json_string(line));
                        }
                    }
                }
            }
        } else if (!json_equal(now, old)) {
            snprintf(line, sizeof(line), "%s|%s||", key, section);
            json_array_append_new(out, json_string(line));
        }
    }
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(json_string_value(*(json_t *const *)a), json_string_value(*(json_t *const *)b));
}

/* The sorted strings of array, as one newline-separated text (malloc'd). */
static char *sorted_text(json_t *array)
{
    size_t n = json_array_size(array);
    json_t **items = calloc(n + 1, sizeof(*items));
    for (size_t i = 0; i < n; i++)
        items[i] = json_array_get(array, i);
    qsort(items, n, sizeof(*items), compare_strings);
    char *text = NULL;
    size_t len;
    FILE *out = open_memstream(&text, &len);
    for (size_t i = 0; i < n; i++)
        fprintf(out, "%s\n", json_string_value(items[i]));
    fclose(out);
    free(items);
    return text;
}

/* diff(truth, store oracle) over every customer equals the manifest exactly, and each
 * manifest line's store/source values are the documents' values. */
static void check_manifest_is_the_diff(const model_t *model, const drift_t *drift,
                                       const truth_t *truth)
{
    json_t *diffs = json_array(), *listed = json_array();
    for (uint32_t c = 0; c < model_customer_count(model); c++) {
        json_t *now = truth_view_doc(truth, c), *old = truth_store_doc(truth, c);
        collect_diffs(diffs, model_customer_id(model, c), json_object_get(now, "sections"),
                      json_object_get(old, "sections"));
        json_decref(now);
        json_decref(old);
    }
    size_t i;
    const json_t *entry;
    json_array_foreach(drift_entries(drift), i, entry)
    {
        const char *item = json_string_value(json_object_get(entry, "item"));
        const char *field = json_string_value(json_object_get(entry, "field"));
        char line[512];
        snprintf(line, sizeof(line), "%s|%s|%s|%s",
                 json_string_value(json_object_get(entry, "key")),
                 json_string_value(json_object_get(entry, "section")), item ? item : "",
                 field ? field : "");
        json_array_append_new(listed, json_string(line));
    }
    char *want = sorted_text(diffs), *got = sorted_text(listed);
    ck_assert_str_eq(got, want);
    ck_assert_uint_gt(json_array_size(listed), 0);
    free(want);
    free(got);
    json_decref(diffs);
    json_decref(listed);
}

START_TEST(test_unapplied_drift_changes_the_oracle_at_the_manifest)
{
    model_t *model = make_model(4, 600);
    drift_opts_t opts = {.do_unapplied = 12};
    drift_t *drift;
    truth_t *truth = make_truth(model, &opts, &drift);
    ck_assert_uint_eq(drift_unapplied_count(drift), 12);
    size_t withheld = 0;
    for (size_t i = 0; i < model_event_count(model); i++) {
        if (!drift_withheld(drift)[i])
            continue;
        withheld++;
        int type = model_event(model, i)->ev_type;
        ck_assert(type != SIM_CUSTOMER_REGISTERED && type != SIM_ORDER_CREATED &&
                  type != SIM_CUSTOMER_ERASED && type != SIM_PAYMENT_SETTLED);
        ck_assert_ptr_nonnull(drift_find(drift, i));
    }
    ck_assert_uint_eq(withheld, 12);
    /* the truth is the full stream: with no source drift it is the plain oracle */
    size_t oracle_len, truth_len;
    char *oracle = oracle_text(model, &oracle_len);
    char *text = write_text(truth_writer, truth, &truth_len);
    ck_assert(truth_len == oracle_len && memcmp(text, oracle, oracle_len) == 0);
    free(oracle);
    free(text);
    check_manifest_is_the_diff(model, drift, truth);
    truth_destroy(truth);
    drift_destroy(drift);
    model_destroy(model);
}
END_TEST

START_TEST(test_source_drift_is_exactly_the_manifest)
{
    model_t *model = make_model(6, 800);
    drift_opts_t opts = {.do_unpublished = 13, .do_diverge = 6, .do_pending = 7, .do_unapplied = 5};
    drift_t *drift;
    truth_t *truth = make_truth(model, &opts, &drift);
    check_manifest_is_the_diff(model, drift, truth);
    /* pending records are stamped with the serving time, the others keep the stream's */
    size_t i;
    const json_t *entry;
    size_t kinds[4] = {0};
    json_array_foreach(drift_entries(drift), i, entry)
    {
        const char *kind = json_string_value(json_object_get(entry, "kind"));
        const char *key = json_string_value(json_object_get(entry, "key"));
        const char *section = json_string_value(json_object_get(entry, "section"));
        const json_t *sections = truth_customer(truth, key);
        ck_assert_ptr_nonnull(sections);
        const json_t *record = json_object_get(sections, section);
        if (json_is_array(record)) {
            const char *id_field = truth_item_id_field(section);
            const json_t *found = NULL, *item;
            size_t k;
            json_array_foreach(record, k, item)
            {
                if (strcmp(json_string_value(json_object_get(item, id_field)),
                           json_string_value(json_object_get(entry, "item"))) == 0)
                    found = item;
            }
            record = found;
        }
        ck_assert_ptr_nonnull(record);
        json_int_t updated_at = json_integer_value(json_object_get(record, "updated_at"));
        if (strcmp(kind, "pending") == 0) {
            ck_assert_int_eq(updated_at, PENDING_AT_MS);
            kinds[3]++;
        } else {
            ck_assert_int_lt(updated_at, PENDING_AT_MS);
            kinds[strcmp(kind, "unpublished") == 0 ? 0 : strcmp(kind, "diverge") == 0 ? 1 : 2]++;
        }
        if (strcmp(kind, "unapplied") != 0)
            ck_assert(json_equal(
                json_object_get(entry, "source"),
                json_object_get(record, json_string_value(json_object_get(entry, "field")))));
    }
    ck_assert_uint_eq(kinds[0], 13);
    ck_assert_uint_eq(kinds[1], 6);
    ck_assert_uint_eq(kinds[3], 7);
    ck_assert_uint_ge(kinds[2], 5);
    truth_destroy(truth);
    drift_destroy(drift);
    model_destroy(model);
}
END_TEST

START_TEST(test_faults_are_a_function_of_seed_and_url)
{
    char errstr[256];
    faults_t a, b;
    ck_assert_int_eq(
        faults_parse("flaky=30,down=loyalty,slow=20:150,timeout=10", 1, &a, errstr, sizeof(errstr)),
        0);
    ck_assert(a.fa_down[FAULTS_LOYALTY] && !a.fa_down[FAULTS_ORDERS]);
    ck_assert_uint_eq(a.fa_slow_ms, 150);
    ck_assert_int_eq(faults_parse("timeout=10", 2, &b, errstr, sizeof(errstr)), 0);
    unsigned selected = 0, same = 0;
    for (int i = 0; i < 2000; i++) {
        char url[64];
        snprintf(url, sizeof(url), "/customers/C1-%06d", i);
        bool hit = faults_selected(&a, "timeout", url, 10);
        ck_assert(hit == faults_selected(&a, "timeout", url, 10));
        selected += hit;
        same += hit == faults_selected(&b, "timeout", url, 10);
    }
    ck_assert_uint_gt(selected, 140); /* 10% of 2,000, give or take */
    ck_assert_uint_lt(selected, 260);
    ck_assert_uint_lt(same, 2000); /* another seed, another selection */
    ck_assert_int_eq(faults_parse("down=nope", 1, &b, errstr, sizeof(errstr)), RM_EINVAL);
    ck_assert_int_eq(faults_parse("flaky=101", 1, &b, errstr, sizeof(errstr)), RM_EINVAL);
    ck_assert_int_eq(faults_parse("slow=5", 1, &b, errstr, sizeof(errstr)), RM_EINVAL);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("simulate");
    TCase *tcase = tcase_create("core");
    tcase_set_timeout(tcase, 60);
    tcase_add_test(tcase, test_same_seed_same_stream);
    tcase_add_test(tcase, test_seeds_never_share_ids);
    tcase_add_test(tcase, test_stream_is_well_formed);
    tcase_add_test(tcase, test_encoded_events_decode_to_the_payload);
    tcase_add_test(tcase, test_oracle_agrees_with_events);
    tcase_add_test(tcase, test_truth_without_drift_is_the_oracle);
    tcase_add_test(tcase, test_drift_is_deterministic);
    tcase_add_test(tcase, test_unapplied_drift_changes_the_oracle_at_the_manifest);
    tcase_add_test(tcase, test_source_drift_is_exactly_the_manifest);
    tcase_add_test(tcase, test_faults_are_a_function_of_seed_and_url);
    suite_add_tcase(suite, tcase);
    return ts_run(suite);
}
