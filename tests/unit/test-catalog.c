/* Tests of catalog.c: the real schemas/catalog.yaml, version lookup, and every load error
 * (file:line: field) on catalogs written to a temporary directory. */
#include "catalog.h"
#include "tsupport.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *tmpdir;
static char catalog_path[512];
static char err[1024];

static const char record_v1[] =
    "{\"type\":\"record\",\"name\":\"Thing\",\"namespace\":\"t.ns\",\"fields\":[{\"name\":\"a\","
    "\"type\":\"long\"}]}";
static const char record_v2[] =
    "{\"type\":\"record\",\"name\":\"Thing\",\"namespace\":\"t.ns\",\"fields\":[{\"name\":\"a\","
    "\"type\":\"long\"},{\"name\":\"b\",\"type\":[\"null\",\"string\"],\"default\":null}]}";
static const char record_no_namespace[] =
    "{\"type\":\"record\",\"name\":\"Bare\",\"fields\":[{\"name\":\"a\",\"type\":\"int\"}]}";
static const char enum_schema[] = "{\"type\":\"enum\",\"name\":\"Color\",\"symbols\":[\"RED\"]}";

static void setup(void)
{
    tmpdir = ts_tmpdir();
    snprintf(catalog_path, sizeof(catalog_path), "%s/catalog.yaml", tmpdir);
}

static void teardown(void)
{
    ts_rmtree(tmpdir);
    tmpdir = NULL;
}

static void write_file(const char *name, const char *text)
{
    ts_write_file(tmpdir, name, text);
}

/* Writes the usual .avsc files and the catalog text. */
static void write_catalog(const char *text)
{
    write_file("thing1.avsc", record_v1);
    write_file("thing2.avsc", record_v2);
    write_file("bare.avsc", record_no_namespace);
    write_file("color.avsc", enum_schema);
    write_file("broken.avsc", "{\"type\":\"record\",\"name\":");
    write_file("catalog.yaml", text);
}

/* Loading text must fail with exactly "<catalog path>:<expected>". */
static void expect_error(const char *text, const char *expected)
{
    char want[2048];
    snprintf(want, sizeof(want), "%s:%s", catalog_path, expected);
    write_catalog(text);
    catalog_t *catalog = catalog_load(catalog_path, err, sizeof(err));
    ck_assert_ptr_null(catalog);
    ck_assert_str_eq(err, want);
}

START_TEST(test_real_catalog)
{
    char path[4096];
    catalog_t *catalog =
        catalog_load(ts_src("schemas/catalog.yaml", path, sizeof(path)), err, sizeof(err));
    ck_assert_msg(catalog != NULL, "%s", err);
    ck_assert_uint_eq(catalog_count(catalog), 22);
    const catalog_entry_t *entry = catalog_get(catalog, 4);
    ck_assert_ptr_nonnull(entry);
    ck_assert_int_eq(entry->ce_id, 4);
    ck_assert_str_eq(entry->ce_full_name, "c360.orders.OrderCreated");
    ck_assert_str_eq(entry->ce_topic, "orders");
    char want[4200];
    snprintf(want, sizeof(want), "%s/schemas/avro/OrderCreated.v1.avsc", RM_TEST_SRCDIR);
    ck_assert_str_eq(entry->ce_file, want);
    ck_assert(is_avro_record(entry->ce_schema));
    ck_assert_ptr_eq(catalog_latest(catalog, "c360.orders.OrderCreated"), entry);
    ck_assert_str_eq(catalog_get(catalog, 8)->ce_full_name, "c360.payments.PaymentReversed");
    ck_assert_ptr_null(catalog_get(catalog, 0));
    ck_assert_ptr_null(catalog_get(catalog, 17));
    /* two versions of one record: the newest is the reader */
    ck_assert_int_eq(catalog_latest(catalog, "c360.customers.CustomerContactUpdated")->ce_id, 15);
    ck_assert_ptr_null(catalog_latest(catalog, "OrderCreated")); /* full names only */
    /* ids are unique and kept in ascending order (not necessarily dense) */
    for (size_t i = 1; i < catalog_count(catalog); i++)
        ck_assert_int_gt(catalog_at(catalog, i)->ce_id, catalog_at(catalog, i - 1)->ce_id);
    ck_assert_int_eq(catalog_at(catalog, 0)->ce_id, 1);
    ck_assert_ptr_null(catalog_at(catalog, catalog_count(catalog)));
    ck_assert_ptr_nonnull(catalog_get(catalog, 30)); /* readmodel.Repair */
    ck_assert_str_eq(catalog_get(catalog, 41)->ce_full_name, "c360.orders.OrderSnapshot");
    catalog_destroy(catalog);
    catalog_destroy(NULL);
}
END_TEST

START_TEST(test_latest_is_highest_id)
{
    write_catalog("schemas:\n"
                  "  - {id: 7, file: thing2.avsc, topic: things}\n"
                  "  - {id: 3, file: thing1.avsc}\n"
                  "  - {id: 5, file: bare.avsc}\n");
    catalog_t *catalog = catalog_load(catalog_path, err, sizeof(err));
    ck_assert_msg(catalog != NULL, "%s", err);
    ck_assert_uint_eq(catalog_count(catalog), 3);
    ck_assert_int_eq(catalog_latest(catalog, "t.ns.Thing")->ce_id, 7);
    ck_assert_int_eq(catalog_at(catalog, 0)->ce_id, 3); /* ascending ids */
    ck_assert_ptr_null(catalog_get(catalog, 3)->ce_topic);
    ck_assert_str_eq(catalog_get(catalog, 7)->ce_topic, "things");
    ck_assert_str_eq(catalog_get(catalog, 5)->ce_full_name, "Bare");
    ck_assert_ptr_eq(catalog_latest(catalog, "Bare"), catalog_get(catalog, 5));
    catalog_destroy(catalog);
}
END_TEST

START_TEST(test_absolute_file)
{
    char text[2048];
    write_file("thing1.avsc", record_v1);
    snprintf(text, sizeof(text), "schemas:\n  - {id: 1, file: %s/thing1.avsc}\n", tmpdir);
    write_file("catalog.yaml", text);
    catalog_t *catalog = catalog_load(catalog_path, err, sizeof(err));
    ck_assert_msg(catalog != NULL, "%s", err);
    ck_assert_str_eq(catalog_get(catalog, 1)->ce_full_name, "t.ns.Thing");
    catalog_destroy(catalog);
}
END_TEST

START_TEST(test_duplicate_id)
{
    expect_error("schemas:\n"
                 "  - id: 1\n"
                 "    file: thing1.avsc\n"
                 "  - id: 1\n"
                 "    file: thing2.avsc\n",
                 "4: schemas[1].id: duplicate id 1");
}
END_TEST

START_TEST(test_bad_ids)
{
    expect_error("schemas:\n  - {id: 0, file: thing1.avsc}\n",
                 "2: schemas[0].id: expected a schema id 1..2147483647, got '0'");
    expect_error("schemas:\n  - {id: 1, file: thing1.avsc}\n  - {id: -3, file: thing2.avsc}\n",
                 "3: schemas[1].id: expected a schema id 1..2147483647, got '-3'");
    expect_error("schemas:\n  - {id: four, file: thing1.avsc}\n",
                 "2: schemas[0].id: expected a schema id 1..2147483647, got 'four'");
    expect_error("schemas:\n  - {id: 2147483648, file: thing1.avsc}\n",
                 "2: schemas[0].id: expected a schema id 1..2147483647, got '2147483648'");
}
END_TEST

START_TEST(test_missing_file)
{
    char expected[1024];
    snprintf(expected, sizeof(expected),
             "3: schemas[0].file: cannot read '%s/nope.avsc': not found", tmpdir);
    expect_error("schemas:\n"
                 "  - id: 1\n"
                 "    file: nope.avsc\n",
                 expected);
}
END_TEST

START_TEST(test_not_a_record)
{
    char expected[1024];
    snprintf(expected, sizeof(expected),
             "3: schemas[1].file: '%s/color.avsc' is not a record schema (events are records)",
             tmpdir);
    expect_error("schemas:\n  - {id: 1, file: thing1.avsc}\n  - {id: 2, file: color.avsc}\n",
                 expected);
}
END_TEST

START_TEST(test_bad_json)
{
    write_catalog("schemas:\n  - {id: 1, file: broken.avsc}\n");
    ck_assert_ptr_null(catalog_load(catalog_path, err, sizeof(err)));
    char want[2048];
    snprintf(want, sizeof(want),
             "%s:2: schemas[0].file: '%s/broken.avsc' is not a valid Avro schema", catalog_path,
             tmpdir);
    ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "got %s", err);
}
END_TEST

START_TEST(test_shape_errors)
{
    expect_error("schemas:\n  - {id: 1, file: thing1.avsc, topik: x}\n",
                 "2: schemas[0].topik: unknown key");
    expect_error("schemas:\n  - {file: thing1.avsc}\n", "2: schemas[0].id: missing");
    expect_error("schemas:\n  - {id: 1}\n", "2: schemas[0].file: missing");
    expect_error("schemas:\n  - thing1.avsc\n",
                 "2: schemas[0]: expected a mapping {id, file, topic}");
    expect_error("schemas: []\n", "1: schemas: expected a non-empty list");
    expect_error("version: 2\nschemas: []\n", "1: version: unknown key");
    expect_error("- 1\n", "1: (top level): expected a mapping with 'schemas'");
}
END_TEST

START_TEST(test_unreadable_catalog)
{
    ck_assert_ptr_null(catalog_load("/nonexistent/catalog.yaml", err, sizeof(err)));
    ck_assert_msg(strncmp(err, "/nonexistent/catalog.yaml: cannot open", 38) == 0, "got %s", err);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("catalog");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_real_catalog);
    tcase_add_test(tc, test_latest_is_highest_id);
    tcase_add_test(tc, test_absolute_file);
    tcase_add_test(tc, test_duplicate_id);
    tcase_add_test(tc, test_bad_ids);
    tcase_add_test(tc, test_missing_file);
    tcase_add_test(tc, test_not_a_record);
    tcase_add_test(tc, test_bad_json);
    tcase_add_test(tc, test_shape_errors);
    tcase_add_test(tc, test_unreadable_catalog);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
