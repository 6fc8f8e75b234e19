/* Tests of store.c: key layout, offsets bookkeeping, meta, the writer lock,
 * read-only opening, and periodic durability's sync thread. */
#include "rm_err.h"
#include "store.h"
#include "tsupport.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static char *dir;
static store_t *store;

static void setup(void)
{
    char err[512];
    dir = ts_tmpdir();
    store_opts_t opts = {.so_dir = dir, .so_map_size_bytes = 8 << 20, .so_durability = STORE_SYNC};
    store = store_open(&opts, err, sizeof(err));
    ck_assert_msg(store != NULL, "%s", err);
}

static void teardown(void)
{
    store_close(store);
    ts_rmtree(dir);
}

START_TEST(test_doc_key_layout)
{
    char key[512];
    size_t len = store_doc_key(key, sizeof(key), "C1", 2, "orders", "O7", 2);
    ck_assert_uint_eq(len, 12);
    ck_assert_int_eq(memcmp(key, "C1\0orders\0O7", 12), 0);
    len = store_doc_key(key, sizeof(key), "C1", 2, "", "", 0); /* the marks key */
    ck_assert_uint_eq(len, 4);
    ck_assert_int_eq(memcmp(key, "C1\0\0", 4), 0);
    char big[600];
    memset(big, 'x', sizeof(big));
    ck_assert_uint_eq(store_doc_key(key, sizeof(key), big, 510, "s", "", 0), 0);
}
END_TEST

static int count_cb(void *ctx, const char *topic, int32_t partition, const store_offset_t *off)
{
    char *seen = ctx;
    char line[128];
    snprintf(line, sizeof(line), "%s/%d=%lld;", topic, partition, (long long)off->so_next_offset);
    strcat(seen, line);
    return 0;
}

START_TEST(test_offsets_commit_with_the_txn)
{
    MDB_txn *txn;
    store_offset_t off = {42, 50, 1000, 2000}, got;
    ck_assert_int_eq(store_write_begin(store, &txn), 0);
    ck_assert_int_eq(store_offset_put(store, txn, "orders", 3, &off), 0);
    ck_assert_int_eq(store_offset_put(store, txn, "orders", 12, &off), 0);
    ck_assert_int_eq(store_offset_put(store, txn, "customers", 0, &off), 0);
    store_write_abort(txn); /* an aborted batch leaves no offsets behind */
    ck_assert_int_eq(store_read_begin(store, &txn), 0);
    ck_assert_int_eq(store_offset_get(store, txn, "orders", 3, &got), RM_ENOTFOUND);
    store_read_end(txn);

    ck_assert_int_eq(store_write_begin(store, &txn), 0);
    ck_assert_int_eq(store_offset_put(store, txn, "orders", 12, &off), 0);
    off.so_next_offset = 7;
    ck_assert_int_eq(store_offset_put(store, txn, "orders", 3, &off), 0);
    ck_assert_int_eq(store_offset_put(store, txn, "customers", 0, &off), 0);
    ck_assert_int_eq(store_write_commit(store, txn), 0);
    ck_assert_int_eq(store_read_begin(store, &txn), 0);
    ck_assert_int_eq(store_offset_get(store, txn, "orders", 3, &got), 0);
    ck_assert_int_eq(got.so_next_offset, 7);
    ck_assert_int_eq(got.so_high_watermark, 50);
    char seen[512] = "";
    ck_assert_int_eq(store_offset_foreach(store, txn, count_cb, seen), 0);
    /* big-endian partitions sort numerically: 3 before 12 */
    ck_assert_str_eq(seen, "customers/0=7;orders/3=7;orders/12=42;");
    store_read_end(txn);
}
END_TEST

START_TEST(test_meta_values)
{
    MDB_txn *txn;
    int64_t v;
    ck_assert_int_eq(store_write_begin(store, &txn), 0);
    ck_assert_int_eq(store_meta_get_i64(store, txn, "n", &v), RM_ENOTFOUND);
    ck_assert_int_eq(store_meta_put_i64(store, txn, "n", -5), 0);
    ck_assert_int_eq(store_meta_get_i64(store, txn, "n", &v), 0);
    ck_assert_int_eq(v, -5);
    ck_assert_int_eq(store_write_commit(store, txn), 0);
}
END_TEST

static int collect_meta(void *ctx, const char *name, size_t name_len, const void *value,
                        size_t value_len)
{
    char line[256];
    snprintf(line, sizeof(line), "%.*s=%.*s;", (int)name_len, name, (int)value_len,
             (const char *)value);
    strcat(ctx, line);
    return 0;
}

START_TEST(test_meta_prefix_walk)
{
    MDB_txn *txn;
    ck_assert_int_eq(store_write_begin(store, &txn), 0);
    store_meta_put(store, txn, "gap/orders/3", "a", 1);
    store_meta_put(store, txn, "gap/customers/0", "b", 1);
    store_meta_put(store, txn, "gaz", "x", 1);
    store_meta_put(store, txn, "ga", "y", 1);
    char seen[256] = "";
    ck_assert_int_eq(store_meta_foreach(store, txn, "gap/", collect_meta, seen), 0);
    ck_assert_str_eq(seen, "gap/customers/0=b;gap/orders/3=a;");
    store_write_abort(txn);
}
END_TEST

START_TEST(test_single_writer_and_readonly)
{
    char err[512];
    store_opts_t opts = {.so_dir = dir};
    ck_assert_ptr_null(store_open(&opts, err, sizeof(err)));
    ck_assert_msg(strstr(err, "locked by another writer") != NULL, "%s", err);
    opts.so_readonly = true;
    store_t *reader = store_open(&opts, err, sizeof(err));
    ck_assert_msg(reader != NULL, "%s", err);
    MDB_txn *txn;
    ck_assert_int_eq(store_read_begin(reader, &txn), 0);
    store_read_reset(txn);
    ck_assert_int_eq(store_read_renew(reader, &txn), 0);
    store_read_end(txn);
    store_close(reader);
    store_opts_t missing = {.so_dir = "/nonexistent/store", .so_readonly = true};
    ck_assert_ptr_null(store_open(&missing, err, sizeof(err)));
}
END_TEST

START_TEST(test_grow_keeps_data)
{
    MDB_txn *txn;
    size_t map_before, used;
    ck_assert_int_eq(store_usage(store, &map_before, &used), 0);
    ck_assert_int_eq(store_grow(store), 0);
    size_t map_after;
    ck_assert_int_eq(store_usage(store, &map_after, &used), 0);
    ck_assert_uint_eq(map_after, map_before * 2);
    ck_assert_int_eq(store_write_begin(store, &txn), 0);
    ck_assert_int_eq(store_meta_put_i64(store, txn, "after_grow", 1), 0);
    ck_assert_int_eq(store_write_commit(store, txn), 0);
}
END_TEST

/* A periodic store syncing every interval_ms in a directory of its own. */
static store_t *open_periodic(const char *path, int64_t interval_ms)
{
    char err[512];
    store_opts_t opts = {.so_dir = path, .so_map_size_bytes = 8 << 20,
                         .so_durability = STORE_PERIODIC, .so_sync_interval_ms = interval_ms};
    store_t *periodic = store_open(&opts, err, sizeof(err));
    ck_assert_msg(periodic != NULL, "%s", err);
    return periodic;
}

/* One write txn putting meta name = value; returns store_write_commit's result. */
static int commit_one(store_t *periodic, const char *name, int64_t value)
{
    MDB_txn *txn;
    ck_assert_int_eq(store_write_begin(periodic, &txn), 0);
    ck_assert_int_eq(store_meta_put_i64(periodic, txn, name, value), 0);
    return store_write_commit(periodic, txn);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The syncs happen on the store's thread while the writer keeps committing: the
 * counter advances with no store_sync() call and no commit fails. */
START_TEST(test_periodic_syncs_in_the_background)
{
    char *path = ts_tmpdir();
    store_t *periodic = open_periodic(path, 5);
    store_sync_stats_t stats;
    int64_t deadline = mono_ms() + 10000, commits = 0;
    do {
        ck_assert_int_eq(commit_one(periodic, "n", commits++), 0);
        store_sync_stats(periodic, &stats);
    } while (stats.sst_syncs < 3 && mono_ms() < deadline);
    ck_assert_uint_ge(stats.sst_syncs, 3);
    ck_assert_uint_eq(stats.sst_failures, 0);
    ck_assert_uint_eq(stats.sst_seconds.mh_count, stats.sst_syncs);
    /* A resize waits for a sync in progress instead of running beside it. */
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(store_grow(periodic), 0);
        ck_assert_int_eq(commit_one(periodic, "after_grow", i), 0);
    }
    store_close(periodic);
    /* What the last commit wrote is there after close (and its final sync). */
    periodic = open_periodic(path, 5);
    MDB_txn *txn;
    int64_t v;
    ck_assert_int_eq(store_read_begin(periodic, &txn), 0);
    ck_assert_int_eq(store_meta_get_i64(periodic, txn, "n", &v), 0);
    ck_assert_int_eq(v, commits - 1);
    store_read_end(txn);
    store_close(periodic);
    ts_rmtree(path);
}
END_TEST

/* An fsync failure on the sync thread is not swallowed: the next commit returns it,
 * its transaction is not committed, and commits resume once a sync succeeds. */
START_TEST(test_failed_sync_fails_the_next_commit)
{
    setenv("RM_FAILPOINT_ERROR", "store-sync:1:2", 1); /* the first two syncs fail */
    char *path = ts_tmpdir();
    store_t *periodic = open_periodic(path, 5);
    ck_assert_int_eq(commit_one(periodic, "before", 1), 0); /* dirty: the thread syncs */
    int64_t deadline = mono_ms() + 10000;
    int rc = 0, attempt = 0;
    while (rc == 0 && mono_ms() < deadline)
        rc = commit_one(periodic, "refused", ++attempt);
    ck_assert_int_eq(rc, RM_EIO);
    MDB_txn *txn;
    int64_t v;
    ck_assert_int_eq(store_read_begin(periodic, &txn), 0);
    /* The refused attempt left nothing behind: the value is the one before it. */
    if (attempt > 1) {
        ck_assert_int_eq(store_meta_get_i64(periodic, txn, "refused", &v), 0);
        ck_assert_int_eq(v, attempt - 1);
    } else {
        ck_assert_int_eq(store_meta_get_i64(periodic, txn, "refused", &v), RM_ENOTFOUND);
    }
    store_read_end(txn);
    while (rc != 0 && mono_ms() < deadline) {
        ck_assert_int_eq(rc, RM_EIO); /* keeps failing until a sync succeeds */
        rc = commit_one(periodic, "after", 1);
    }
    ck_assert_int_eq(rc, 0);
    store_sync_stats_t stats;
    store_sync_stats(periodic, &stats);
    ck_assert_uint_eq(stats.sst_failures, 2);
    ck_assert_uint_ge(stats.sst_syncs, 1);
    store_close(periodic);
    unsetenv("RM_FAILPOINT_ERROR");
    ts_rmtree(path);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_doc_key_layout);
    tcase_add_test(tc, test_offsets_commit_with_the_txn);
    tcase_add_test(tc, test_meta_values);
    tcase_add_test(tc, test_meta_prefix_walk);
    tcase_add_test(tc, test_single_writer_and_readonly);
    tcase_add_test(tc, test_grow_keeps_data);
    tcase_add_test(tc, test_periodic_syncs_in_the_background);
    tcase_add_test(tc, test_failed_sync_fails_the_next_commit);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
