/* test-simulate: the simulator's promises — determinism, a well-formed stream, Avro that
 * decodes back to what the model says, and an oracle consistent with the events. */
#include "avro_enc.h"
#include "catalog.h"
#include "model.h"
#include "oracle.h"
#include "rm_build.h"

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
    ck_assert_uint_ge(events, 50000); /* issue 2: >= 50,000 events for 2,000 customers */
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
    suite_add_tcase(suite, tcase);
    SRunner *runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
