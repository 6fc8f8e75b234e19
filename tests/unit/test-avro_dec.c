/* Tests of avro_dec.c: framing, validation of poison shapes, resolved decoding. */
#include "avro_dec.h"
#include "rm_err.h"
#include "tsupport.h"

#include <check.h>
#include <string.h>

static catalog_t *catalog;
static avro_dec_t *dec;

static void setup(void)
{
    catalog = ts_catalog();
    dec = avro_dec_new(catalog);
    ck_assert_ptr_nonnull(dec);
}

static void teardown(void)
{
    avro_dec_destroy(dec);
    catalog_destroy(catalog);
}

/* A tiny hand encoder, so poison can be shaped byte by byte. */
static void put_long(buf_t *b, int64_t v)
{
    /* zigzag; the sign mask without shifting a negative value */
    uint64_t z = ((uint64_t)v << 1) ^ (0 - ((uint64_t)v >> 63));
    while (z & ~0x7FULL) {
        buf_append_char(b, (char)((z & 0x7F) | 0x80));
        z >>= 7;
    }
    buf_append_char(b, (char)z);
}

static void put_str(buf_t *b, const char *s)
{
    put_long(b, (int64_t)strlen(s));
    buf_append_str(b, s);
}

static void frame(buf_t *b, int id)
{
    unsigned char h[5] = {0, 0, 0, 0, (unsigned char)id};
    buf_append(b, h, 5);
}

/* CustomerRegistered (id 1) up to but excluding the enum and boolean. */
static void registered_prefix(buf_t *b)
{
    frame(b, 1);
    put_str(b, "e-1");
    put_long(b, 1700000000000);
    put_long(b, 1);
    put_str(b, "C1");
    put_str(b, "Ada");
    put_str(b, "ada@example.com");
    put_str(b, "+441234567890");
}

static int decode(buf_t *b, char *reason)
{
    avro_dec_event_t ev;
    return avro_dec_decode(dec, b->b_data, b->b_len, &ev, reason, 192);
}

START_TEST(test_valid_round_trip)
{
    buf_t b = BUF_INIT;
    ck_assert_int_eq(ts_event(catalog, 4, &b, "event_id=e-9", "occurred_at=1700000000123",
                              "version=2", "order_id=O1", "customer_id=C1", "lines=3",
                              "total_cents=1999", "currency=EUR", NULL),
                     0);
    avro_dec_event_t ev;
    char reason[192];
    ck_assert_int_eq(avro_dec_decode(dec, b.b_data, b.b_len, &ev, reason, sizeof(reason)), 0);
    ck_assert_int_eq(ev.ade_schema_id, 4);
    ck_assert_str_eq(ev.ade_reader->ce_full_name, "c360.orders.OrderCreated");
    avro_value_t field;
    const char *s = NULL;
    size_t size = 0;
    ck_assert_int_eq(avro_value_get_by_name(ev.ade_value, "order_id", &field, NULL), 0);
    ck_assert_int_eq(avro_value_get_string(&field, &s, &size), 0);
    ck_assert_str_eq(s, "O1");
    ck_assert_int_eq(avro_value_get_by_name(ev.ade_value, "lines", &field, NULL), 0);
    ck_assert_int_eq(avro_value_get_size(&field, &size), 0);
    ck_assert_uint_eq(size, 3);
    /* The same decoder again (cached), with fewer lines: the array must be reset. */
    ck_assert_int_eq(ts_event(catalog, 4, &b, "event_id=e-10", "version=3", "order_id=O2",
                              "customer_id=C1", "lines=1", NULL),
                     0);
    ck_assert_int_eq(avro_dec_decode(dec, b.b_data, b.b_len, &ev, reason, sizeof(reason)), 0);
    avro_value_get_by_name(ev.ade_value, "lines", &field, NULL);
    avro_value_get_size(&field, &size);
    ck_assert_uint_eq(size, 1);
    buf_free(&b);
}
END_TEST

START_TEST(test_framing_errors)
{
    char reason[192];
    buf_t b = BUF_INIT;
    buf_append(&b, "\0\0\0", 3);
    ck_assert_int_eq(decode(&b, reason), RM_EFRAME);
    buf_reset(&b);
    registered_prefix(&b);
    b.b_data[0] = 1; /* wrong magic byte */
    ck_assert_int_eq(decode(&b, reason), RM_EFRAME);
    ck_assert_str_eq(reason, "magic byte is not 0");
    buf_reset(&b);
    frame(&b, 99); /* unknown schema id */
    put_str(&b, "x");
    ck_assert_int_eq(decode(&b, reason), RM_ESCHEMA);
    ck_assert_str_eq(reason, "unknown schema id 99");
    buf_free(&b);
}
END_TEST

START_TEST(test_poison_shapes)
{
    char reason[192];
    buf_t b = BUF_INIT;

    registered_prefix(&b); /* truncated: enum and boolean missing */
    ck_assert_int_eq(decode(&b, reason), RM_EDECODE);
    ck_assert_str_eq(reason, "truncated varint");

    buf_reset(&b);
    registered_prefix(&b);
    put_long(&b, 9); /* enum index out of range (4 symbols) */
    buf_append_char(&b, 0);
    ck_assert_int_eq(decode(&b, reason), RM_EDECODE);
    ck_assert_str_eq(reason, "enum index 9 out of range");

    buf_reset(&b);
    registered_prefix(&b);
    put_long(&b, 0);
    buf_append_char(&b, 2); /* boolean byte 2 */
    ck_assert_int_eq(decode(&b, reason), RM_EDECODE);

    buf_reset(&b);
    registered_prefix(&b);
    put_long(&b, 0);
    buf_append_char(&b, 1);
    buf_append_char(&b, 7); /* trailing garbage */
    ck_assert_int_eq(decode(&b, reason), RM_EDECODE);
    ck_assert_str_eq(reason, "1 trailing bytes after the record");

    buf_reset(&b);
    frame(&b, 1);
    put_long(&b, 1000000000); /* declared string length far past the message */
    buf_append_str(&b, "abc");
    ck_assert_int_eq(decode(&b, reason), RM_EDECODE);
    ck_assert_msg(strstr(reason, "past the end") != NULL, "%s", reason);

    buf_reset(&b);
    frame(&b, 1);
    put_long(&b, -5); /* negative length */
    ck_assert_int_eq(decode(&b, reason), RM_EDECODE);

    buf_reset(&b);
    frame(&b, 1);
    put_str(&b, "\xff\xfe"); /* invalid UTF-8 */
    ck_assert_int_eq(decode(&b, reason), RM_EDECODE);
    ck_assert_str_eq(reason, "string is not valid UTF-8");

    buf_reset(&b);
    frame(&b, 1);
    for (int i = 0; i < 11; i++) /* varint longer than 10 bytes */
        buf_append_char(&b, (char)0x81);
    ck_assert_int_eq(decode(&b, reason), RM_EDECODE);

    buf_reset(&b); /* union index out of range: CustomerContactUpdated.email */
    frame(&b, 2);
    put_str(&b, "e");
    put_long(&b, 1);
    put_long(&b, 2);
    put_str(&b, "C1");
    put_long(&b, 5);
    ck_assert_int_eq(decode(&b, reason), RM_EDECODE);
    ck_assert_str_eq(reason, "union index 5 out of range");

    buf_reset(&b); /* array block count larger than the message */
    frame(&b, 4);
    put_str(&b, "e");
    put_long(&b, 1);
    put_long(&b, 1);
    put_str(&b, "O1");
    put_str(&b, "C1");
    put_long(&b, 1LL << 40);
    ck_assert_int_eq(decode(&b, reason), RM_EDECODE);
    buf_free(&b);
}
END_TEST

START_TEST(test_every_truncation_is_rejected)
{
    /* Every strict prefix of a valid message must be rejected, never crash or leak. */
    buf_t b = BUF_INIT;
    ck_assert_int_eq(ts_event(catalog, 4, &b, "event_id=e-1", "order_id=O1", "customer_id=C1",
                              "lines=2", "currency=EUR", NULL),
                     0);
    char reason[192];
    avro_dec_event_t ev;
    for (size_t len = 0; len < b.b_len; len++)
        ck_assert_int_ne(avro_dec_decode(dec, b.b_data, len, &ev, reason, sizeof(reason)), 0);
    ck_assert_int_eq(avro_dec_decode(dec, b.b_data, b.b_len, &ev, reason, sizeof(reason)), 0);
    buf_free(&b);
}
END_TEST

/* A v1 writer read as v2: the renamed field through its alias, the added one absent,
 * the one v2 dropped ignored. */
START_TEST(test_v1_read_as_v2)
{
    buf_t b = BUF_INIT;
    ck_assert_int_eq(ts_event(catalog, 2, &b, "event_id=e-2", "customer_id=C1",
                              "phone=+441234567890", "preferred_channel=SMS", NULL),
                     0);
    char reason[192];
    avro_dec_event_t ev;
    ck_assert_int_eq(avro_dec_decode(dec, b.b_data, b.b_len, &ev, reason, sizeof(reason)), 0);
    ck_assert_int_eq(ev.ade_writer->ce_id, 2);
    ck_assert_int_eq(ev.ade_reader->ce_id, 15);
    avro_schema_t reader = ev.ade_reader->ce_schema;
    avro_value_t field, branch;
    const char *s;
    size_t size;
    int mobile = avro_schema_record_field_get_index(reader, "mobile");
    ck_assert_int_eq(avro_dec_field(&ev, (size_t)mobile, &field), 0);
    ck_assert_int_eq(avro_value_get_current_branch(&field, &branch), 0);
    ck_assert_int_eq(avro_value_get_string(&branch, &s, &size), 0);
    ck_assert_str_eq(s, "+441234567890");
    int locale = avro_schema_record_field_get_index(reader, "locale");
    ck_assert_int_eq(avro_dec_field(&ev, (size_t)locale, &field), 1);

    /* PaymentSettled v1 carries currency, which v2 dropped */
    ck_assert_int_eq(ts_event(catalog, 6, &b, "event_id=e-3", "payment_id=P1", "order_id=O1",
                              "currency=EUR", NULL),
                     0);
    ck_assert_int_eq(avro_dec_decode(dec, b.b_data, b.b_len, &ev, reason, sizeof(reason)), 0);
    ck_assert_int_eq(ev.ade_reader->ce_id, 16);
    int ref = avro_schema_record_field_get_index(ev.ade_reader->ce_schema, "settlement_ref");
    ck_assert_int_eq(avro_dec_field(&ev, (size_t)ref, &field), 1);
    buf_free(&b);
}
END_TEST

/* Writers the newest reader cannot read are refused with a reason, not misread. */
START_TEST(test_incompatible_writers)
{
    char *dir = ts_tmpdir();
    ts_write_file(dir, "catalog.yaml",
                  "schemas:\n"
                  "  - {id: 1, file: R1.avsc, topic: t}\n"
                  "  - {id: 2, file: R2.avsc, topic: t}\n"
                  "  - {id: 3, file: S1.avsc, topic: t}\n"
                  "  - {id: 4, file: S2.avsc, topic: t}\n"
                  "  - {id: 5, file: U1.avsc, topic: t}\n"
                  "  - {id: 6, file: U2.avsc, topic: t}\n"
                  "  - {id: 7, file: V1.avsc, topic: t}\n"
                  "  - {id: 8, file: V2.avsc, topic: t}\n");
    ts_write_file(dir, "U1.avsc",
                  "{\"type\":\"record\",\"name\":\"U\",\"fields\":["
                  "{\"name\":\"a\",\"type\":\"string\"}]}");
    ts_write_file(dir, "U2.avsc",
                  "{\"type\":\"record\",\"name\":\"U\",\"fields\":["
                  "{\"name\":\"a\",\"type\":\"string\"},"
                  "{\"name\":\"locale\",\"type\":\"string\",\"default\":\"en\"},"
                  "{\"name\":\"tier\",\"type\":{\"type\":\"enum\",\"name\":\"Tier\","
                  "\"symbols\":[\"BRONZE\",\"SILVER\"]},\"default\":\"SILVER\"},"
                  "{\"name\":\"vip\",\"type\":[\"boolean\",\"null\"],\"default\":true},"
                  "{\"name\":\"note\",\"type\":[\"null\",\"string\"],\"default\":null}]}");
    ts_write_file(dir, "V1.avsc",
                  "{\"type\":\"record\",\"name\":\"V\",\"fields\":["
                  "{\"name\":\"a\",\"type\":\"string\"}]}");
    ts_write_file(dir, "V2.avsc",
                  "{\"type\":\"record\",\"name\":\"V\",\"fields\":["
                  "{\"name\":\"a\",\"type\":\"string\"},"
                  "{\"name\":\"lines\",\"type\":{\"type\":\"array\",\"items\":\"long\"},"
                  "\"default\":[]}]}");
    ts_write_file(dir, "R1.avsc",
                  "{\"type\":\"record\",\"name\":\"R\",\"fields\":["
                  "{\"name\":\"a\",\"type\":\"string\"},"
                  "{\"name\":\"b\",\"type\":\"int\"}]}");
    ts_write_file(dir, "R2.avsc",
                  "{\"type\":\"record\",\"name\":\"R\",\"fields\":["
                  "{\"name\":\"a\",\"type\":\"string\"},"
                  "{\"name\":\"b\",\"type\":\"long\"}]}");
    ts_write_file(dir, "S1.avsc",
                  "{\"type\":\"record\",\"name\":\"S\",\"fields\":["
                  "{\"name\":\"a\",\"type\":\"string\"}]}");
    ts_write_file(dir, "S2.avsc",
                  "{\"type\":\"record\",\"name\":\"S\",\"fields\":["
                  "{\"name\":\"a\",\"type\":\"string\"},"
                  "{\"name\":\"c\",\"type\":\"long\",\"default\":0}]}");
    char path[4200], err[256];
    snprintf(path, sizeof(path), "%s/catalog.yaml", dir);
    catalog_t *cat = catalog_load(path, err, sizeof(err));
    ck_assert_msg(cat != NULL, "%s", err);
    avro_dec_t *d = avro_dec_new(cat);
    buf_t b = BUF_INIT;
    char reason[192];
    avro_dec_event_t ev;
    ck_assert_int_eq(ts_event(cat, 1, &b, "a=x", "b=7", NULL), 0);
    ck_assert_int_eq(avro_dec_decode(d, b.b_data, b.b_len, &ev, reason, sizeof(reason)),
                     RM_ESCHEMA);
    ck_assert_msg(strstr(reason, "field 'b' changed type"), "%s", reason);
    /* S1 lacks S2's c, which defaults to 0: read as 0 */
    ck_assert_int_eq(ts_event(cat, 3, &b, "a=x", NULL), 0);
    ck_assert_int_eq(avro_dec_decode(d, b.b_data, b.b_len, &ev, reason, sizeof(reason)), 0);
    avro_value_t field;
    int64_t c = -1;
    ck_assert_int_eq(avro_dec_field(&ev, 1, &field), 0);
    ck_assert_int_eq(avro_value_get_long(&field, &c), 0);
    ck_assert_int_eq(c, 0);
    /* scalar, enum and union defaults; a default this decoder cannot build is refused */
    ck_assert_int_eq(ts_event(cat, 5, &b, "a=y", NULL), 0);
    ck_assert_int_eq(avro_dec_decode(d, b.b_data, b.b_len, &ev, reason, sizeof(reason)), 0);
    const char *str;
    size_t size;
    int symbol, flag;
    ck_assert_int_eq(avro_dec_field(&ev, 1, &field), 0);
    ck_assert_int_eq(avro_value_get_string(&field, &str, &size), 0);
    ck_assert_str_eq(str, "en");
    ck_assert_int_eq(avro_dec_field(&ev, 2, &field), 0);
    ck_assert_int_eq(avro_value_get_enum(&field, &symbol), 0);
    ck_assert_int_eq(symbol, 1); /* SILVER */
    ck_assert_int_eq(avro_dec_field(&ev, 3, &field), 0);
    avro_value_t branch;
    ck_assert_int_eq(avro_value_get_current_branch(&field, &branch), 0);
    ck_assert_int_eq(avro_value_get_boolean(&branch, &flag), 0);
    ck_assert_int_eq(flag, 1);
    ck_assert_int_eq(avro_dec_field(&ev, 4, &field), 1); /* ["null", ...] default null: absent */
    ck_assert_int_eq(ts_event(cat, 7, &b, "a=z", NULL), 0);
    ck_assert_int_eq(avro_dec_decode(d, b.b_data, b.b_len, &ev, reason, sizeof(reason)),
                     RM_ESCHEMA);
    ck_assert_msg(strstr(reason, "field 'lines' is missing and has no usable default"), "%s",
                  reason);
    ck_assert_int_eq(ts_event(cat, 4, &b, "a=x", "c=5", NULL), 0); /* the reader itself */
    ck_assert_int_eq(avro_dec_decode(d, b.b_data, b.b_len, &ev, reason, sizeof(reason)), 0);
    buf_free(&b);
    avro_dec_destroy(d);
    catalog_destroy(cat);
    ts_rmtree(dir);
}
END_TEST

/* avro_dec_encode_frame writes what avro_dec_decode reads back. */
START_TEST(test_encode_frame_round_trip)
{
    const catalog_entry_t *repair = catalog_latest(catalog, "readmodel.Repair");
    ck_assert_ptr_nonnull(repair);
    avro_value_iface_t *iface = avro_generic_class_from_schema(repair->ce_schema);
    avro_value_t value, field;
    ck_assert_int_eq(avro_generic_value_new(iface, &value), 0);
    ck_assert_int_eq(avro_value_get_by_name(&value, "view_key", &field, NULL), 0);
    ck_assert_int_eq(avro_value_set_string(&field, "C7"), 0);
    avro_value_t branch; /* a union must have a branch to be written: item_id = null */
    ck_assert_int_eq(avro_value_get_by_name(&value, "item_id", &field, NULL), 0);
    ck_assert_int_eq(avro_value_set_branch(&field, 0, &branch), 0);
    buf_t b = BUF_INIT;
    ck_assert_int_eq(avro_dec_encode_frame(repair->ce_id, &value, &b), 0);
    avro_dec_t *d = avro_dec_new(catalog);
    avro_dec_event_t ev;
    char reason[192];
    ck_assert_int_eq(avro_dec_decode(d, b.b_data, b.b_len, &ev, reason, sizeof(reason)), 0);
    ck_assert_int_eq(ev.ade_schema_id, repair->ce_id);
    const char *key;
    size_t size;
    int idx = avro_schema_record_field_get_index(repair->ce_schema, "view_key");
    ck_assert_int_eq(avro_dec_field(&ev, (size_t)idx, &field), 0);
    ck_assert_int_eq(avro_value_get_string(&field, &key, &size), 0);
    ck_assert_str_eq(key, "C7");
    avro_dec_destroy(d);
    buf_free(&b);
    avro_value_decref(&value);
    avro_value_iface_decref(iface);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("avro_dec");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_valid_round_trip);
    tcase_add_test(tc, test_framing_errors);
    tcase_add_test(tc, test_poison_shapes);
    tcase_add_test(tc, test_every_truncation_is_rejected);
    tcase_add_test(tc, test_v1_read_as_v2);
    tcase_add_test(tc, test_incompatible_writers);
    tcase_add_test(tc, test_encode_frame_round_trip);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
