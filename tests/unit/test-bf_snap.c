/* Tests of bf_snap.c: valid lines become the right framed events (decoded back with the
 * projector's own decoder), every kind of bad line is named by member, times parse. */
#include "avro_dec.h"
#include "../../tools/backfill/bf_snap.h"
#include "rm_err.h"
#include "tsupport.h"

#include <check.h>
#include <stdio.h>
#include <string.h>

static catalog_t *catalog;
static avro_dec_t *dec;

static void setup(void)
{
    char err[512];
    catalog = catalog_load(RM_TEST_SRCDIR "/schemas/catalog.yaml", err, sizeof(err));
    ck_assert_msg(catalog != NULL, "%s", err);
    dec = avro_dec_new(catalog);
    ck_assert_ptr_nonnull(dec);
}

static void teardown(void)
{
    avro_dec_destroy(dec);
    catalog_destroy(catalog);
}

static bf_snap_t *snap_of(const char *aggregate, const char *version_field)
{
    char err[512];
    bf_snap_t *snap = bf_snap_new(catalog, aggregate, version_field, err, sizeof(err));
    ck_assert_msg(snap != NULL, "%s", err);
    return snap;
}

/* Decodes msg and returns field name of the record rendered as text (static buffer). */
static const char *field(const bf_snap_msg_t *msg, const char *name)
{
    static char out[256];
    avro_dec_event_t ev;
    char reason[128];
    ck_assert_int_eq(
        avro_dec_decode(dec, msg->bsm_value, msg->bsm_value_len, &ev, reason, sizeof(reason)), 0);
    avro_value_t v, branch;
    ck_assert_int_eq(avro_value_get_by_name(ev.ade_value, name, &v, NULL), 0);
    if (avro_value_get_type(&v) == AVRO_UNION) {
        ck_assert_int_eq(avro_value_get_current_branch(&v, &branch), 0);
        v = branch;
    }
    const char *s;
    size_t size;
    int64_t l = 0;
    int i = 0;
    switch (avro_value_get_type(&v)) {
    case AVRO_STRING:
        avro_value_get_string(&v, &s, &size);
        snprintf(out, sizeof(out), "%s", s);
        break;
    case AVRO_INT64:
        avro_value_get_long(&v, &l);
        snprintf(out, sizeof(out), "%lld", (long long)l);
        break;
    case AVRO_BOOLEAN:
        avro_value_get_boolean(&v, &i);
        snprintf(out, sizeof(out), "%s", i ? "true" : "false");
        break;
    case AVRO_ENUM:
        avro_value_get_enum(&v, &i);
        snprintf(out, sizeof(out), "%s", avro_schema_enum_get(avro_value_get_schema(&v), i));
        break;
    case AVRO_NULL:
        snprintf(out, sizeof(out), "null");
        break;
    default:
        snprintf(out, sizeof(out), "?");
    }
    return out;
}

static bf_snap_msg_t parse_ok(bf_snap_t *snap, const char *line)
{
    bf_snap_msg_t msg;
    char err[512];
    int rc = bf_snap_parse(snap, line, strlen(line), &msg, err, sizeof(err));
    ck_assert_msg(rc == 0, "%s: %s", line, err);
    return msg;
}

START_TEST(test_order_line_encodes)
{
    bf_snap_t *snap = snap_of("orders", NULL);
    ck_assert_str_eq(bf_snap_record(snap), "c360.orders.OrderSnapshot");
    const char *line =
        "{\"id\":\"O1\",\"customer_id\":\"C1\",\"placed_at\":\"2024-03-01T12:00:00.25Z\","
        "\"total_cents\":1999,\"currency\":\"EUR\",\"line_count\":3,"
        "\"updated_at\":1709300000000,\"version\":3,\"extra\":[1,2]}\n";
    bf_snap_msg_t msg = parse_ok(snap, line);
    ck_assert_str_eq(msg.bsm_topic, "orders");
    ck_assert_uint_eq(msg.bsm_key_len, 2);
    ck_assert(memcmp(msg.bsm_key, "O1", 2) == 0);
    ck_assert(!msg.bsm_not_shown);
    const unsigned char *v = msg.bsm_value;
    ck_assert(v[0] == 0 && v[1] == 0 && v[2] == 0 && v[3] == 0 && v[4] == 41);
    ck_assert_str_eq(field(&msg, "event_id"), "bf:orders:O1:v3");
    ck_assert_str_eq(field(&msg, "version"), "3");
    ck_assert_str_eq(field(&msg, "snapshot_of"), "orders");
    ck_assert_str_eq(field(&msg, "placed_at"), "1709294400250");
    ck_assert_str_eq(field(&msg, "occurred_at"), "1709300000000"); /* updated_at */
    ck_assert_str_eq(field(&msg, "status"), "CREATED");            /* the default */
    ck_assert_str_eq(field(&msg, "customer_id"), "C1");
    ck_assert_str_eq(field(&msg, "line_count"), "3");
    /* the same line again: the same bytes (deterministic ids, a re-run changes nothing) */
    bf_snap_msg_t again = parse_ok(snap, line);
    ck_assert_uint_eq(again.bsm_value_len, msg.bsm_value_len);
    bf_snap_destroy(snap);
}
END_TEST

START_TEST(test_customer_optional_members)
{
    bf_snap_t *snap = snap_of("customers", "rev");
    bf_snap_msg_t msg = parse_ok(snap, "{\"id\":\"C1\",\"name\":\"Ada\",\"email\":null,"
                                       "\"preferred_channel\":\"SMS\",\"marketing_opt_in\":false,"
                                       "\"registered_at\":1000,\"rev\":2}");
    ck_assert_str_eq(field(&msg, "email"), "null");
    ck_assert_str_eq(field(&msg, "phone"), "null");
    ck_assert_str_eq(field(&msg, "updated_at"), "1000"); /* absent: registered_at */
    ck_assert_str_eq(field(&msg, "occurred_at"), "1000");
    ck_assert_str_eq(field(&msg, "event_id"), "bf:customers:C1:v2");
    ck_assert_str_eq(field(&msg, "marketing_opt_in"), "false");
    msg = parse_ok(snap, "{\"id\":\"C1\",\"name\":\"Ada\",\"email\":\"a@example.com\","
                         "\"preferred_channel\":\"SMS\",\"marketing_opt_in\":true,"
                         "\"registered_at\":1000,\"updated_at\":\"1970-01-01T01:00:02+01:00\","
                         "\"rev\":5}");
    ck_assert_str_eq(field(&msg, "email"), "a@example.com");
    ck_assert_str_eq(field(&msg, "updated_at"), "2000");
    bf_snap_destroy(snap);
}
END_TEST

START_TEST(test_loyalty_and_returns)
{
    bf_snap_t *snap = snap_of("loyalty", NULL);
    bf_snap_msg_t msg = parse_ok(snap, "{\"customer_id\":\"C9\",\"tier\":\"GOLD\",\"points\":10,"
                                       "\"updated_at\":5,\"version\":1}");
    ck_assert_str_eq(msg.bsm_topic, "loyalty");
    ck_assert_str_eq(field(&msg, "tier"), "GOLD");
    ck_assert_str_eq(field(&msg, "event_id"), "bf:loyalty:C9:v1");
    bf_snap_destroy(snap);
    snap = snap_of("returns", NULL);
    msg = parse_ok(snap, "{\"id\":\"R1\",\"order_id\":\"O1\",\"reason\":\"damaged\","
                         "\"opened_at\":7,\"version\":1}");
    ck_assert(!msg.bsm_not_shown);
    ck_assert_str_eq(field(&msg, "reason"), "damaged");
    msg = parse_ok(snap, "{\"id\":\"R2\",\"order_id\":\"O1\",\"reason\":\"late\","
                         "\"opened_at\":7,\"status\":\"CLOSED\",\"version\":2}");
    ck_assert(msg.bsm_not_shown);
    ck_assert_ptr_null(msg.bsm_value);
    bf_snap_destroy(snap);
}
END_TEST

START_TEST(test_bad_lines_name_the_member)
{
    static const struct {
        const char *line, *want;
    } cases[] = {
        {"{\"id\":\"O1\"", "(line): not JSON: "},
        {"[1,2]", "(line): expected a JSON object"},
        {"{\"id\":\"O1\",\"id\":\"O2\"}", "(line): not JSON: duplicate object key"},
        {"{}", "id: missing"},
        {"{\"id\":7}", "id: expected a string"},
        {"{\"id\":\"\"}", "id: expected a non-empty id of at most 128 bytes"},
        {"{\"id\":\"O\\u00001\"}", "(line): not JSON: \\u0000 is not allowed"}, /* jansson */
        {"{\"id\":\"O1\",\"customer_id\":null}", "customer_id: must not be null"},
        {"{\"id\":\"O1\",\"customer_id\":\"C1\",\"placed_at\":\"2024-02-30T00:00:00Z\"}",
         "placed_at: expected epoch milliseconds or an ISO 8601 time"},
        {"{\"id\":\"O1\",\"customer_id\":\"C1\",\"placed_at\":-1}",
         "placed_at: expected epoch milliseconds or an ISO 8601 time"},
        {"{\"id\":\"O1\",\"customer_id\":\"C1\",\"placed_at\":1,\"total_cents\":1.5}",
         "total_cents: expected an integer >= 0"},
        {"{\"id\":\"O1\",\"customer_id\":\"C1\",\"placed_at\":1,\"total_cents\":1,"
         "\"currency\":\"eur\"}",
         "currency: expected an ISO 4217 code"},
        {"{\"id\":\"O1\",\"customer_id\":\"C1\",\"placed_at\":1,\"total_cents\":1,"
         "\"currency\":\"EUR\",\"line_count\":1,\"status\":\"SHIPPED\"}",
         "status: expected one of CREATED, CANCELLED"},
        {"{\"id\":\"O1\",\"customer_id\":\"C1\",\"placed_at\":1,\"total_cents\":1,"
         "\"currency\":\"EUR\",\"line_count\":1}",
         "version: missing"},
        {"{\"id\":\"O1\",\"customer_id\":\"C1\",\"placed_at\":1,\"total_cents\":1,"
         "\"currency\":\"EUR\",\"line_count\":1,\"version\":0}",
         "version: expected an integer >= 1"},
        {"{\"id\":\"O1\",\"customer_id\":\"C1\",\"placed_at\":10,\"total_cents\":1,"
         "\"currency\":\"EUR\",\"line_count\":1,\"updated_at\":9,\"version\":1}",
         "updated_at: earlier than placed_at"},
    };
    bf_snap_t *snap = snap_of("orders", NULL);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bf_snap_msg_t msg = {0};
        char err[512] = "";
        int rc = bf_snap_parse(snap, cases[i].line, strlen(cases[i].line), &msg, err, sizeof(err));
        ck_assert_msg(rc == RM_EINVAL, "case %zu accepted", i);
        ck_assert_msg(strncmp(err, cases[i].want, strlen(cases[i].want)) == 0,
                      "case %zu: got '%s', want '%s...'", i, err, cases[i].want);
        ck_assert_ptr_null(msg.bsm_value); /* written only on success */
    }
    bf_snap_destroy(snap);
}
END_TEST

START_TEST(test_setup_errors)
{
    char err[256];
    ck_assert_ptr_null(bf_snap_new(catalog, "payments", NULL, err, sizeof(err)));
    ck_assert_str_eq(err, "unknown aggregate 'payments' (customers, orders, loyalty, returns)");
    ck_assert_ptr_null(bf_snap_new(catalog, "orders", "total_cents", err, sizeof(err)));
    ck_assert_str_eq(err, "--version-field: 'total_cents' is a member of orders, not a version");
}
END_TEST

START_TEST(test_iso_times)
{
    int64_t ms;
    ck_assert_int_eq(bf_snap_parse_time("1970-01-01T00:00:00Z", &ms), 0);
    ck_assert_int_eq(ms, 0);
    ck_assert_int_eq(bf_snap_parse_time("2024-02-29T23:59:59.999Z", &ms), 0);
    ck_assert_int_eq(ms, 1709251199999);
    ck_assert_int_eq(bf_snap_parse_time("2024-03-01T01:00:00+01:00", &ms), 0);
    ck_assert_int_eq(ms, 1709251200000);
    ck_assert_int_eq(bf_snap_parse_time("2024-02-29T18:30:00-05:30", &ms), 0);
    ck_assert_int_eq(ms, 1709251200000);
    ck_assert_int_eq(bf_snap_parse_time("2024-03-01T00:00:00.123456789Z", &ms), 0);
    ck_assert_int_eq(ms, 1709251200123);
    static const char *const bad[] = {
        "2024-03-01T00:00:00",      /* no zone */
        "2023-02-29T00:00:00Z",     /* not a leap year */
        "2024-13-01T00:00:00Z",     "2024-03-01T24:00:00Z",
        "2024-03-01T00:60:00Z",     "2024-03-01 00:00:00Z",
        "1969-12-31T23:59:59Z",     "2024-03-01T00:00:00.Z",
        "2024-03-01T00:00:00Zjunk", "",
        "2024-3-1T00:00:00Z",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(bf_snap_parse_time(bad[i], &ms) == RM_EINVAL, "accepted '%s'", bad[i]);
}
END_TEST

int main(void)
{
    Suite *suite = suite_create("bf_snap");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_order_line_encodes);
    tcase_add_test(tc, test_customer_optional_members);
    tcase_add_test(tc, test_loyalty_and_returns);
    tcase_add_test(tc, test_bad_lines_name_the_member);
    tcase_add_test(tc, test_setup_errors);
    tcase_add_test(tc, test_iso_times);
    suite_add_tcase(suite, tc);
    return ts_run(suite);
}
