/* Tests of store.c: key layout, offsets bookkeeping, meta, the writer lock,
 * read-only opening, and periodic durability's sync thread. */
#include "rm_err.h"
#include "store.h"
#include "tsupport.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

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
    /* The reason as a code, for callers that decide on it. */
    store_t *second = NULL;
    ck_assert_int_eq(store_open_rc(&opts, &second, err, sizeof(err)), RM_EBUSY);
    ck_assert_ptr_null(second);
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
    store_t *none = NULL;
    ck_assert_int_eq(store_open_rc(&missing, &none, err, sizeof(err)), RM_ENOTFOUND);
    ck_assert_ptr_null(none);
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

/* Writes n doc records of value_len bytes, keys "k<i>" (6 bytes each for i < 100000). */
static void put_docs(int n, size_t value_len)
{
    char value[1024];
    memset(value, 'v', sizeof(value));
    MDB_txn *txn;
    ck_assert_int_eq(store_write_begin(store, &txn), 0);
    for (int i = 0; i < n; i++) {
        char key[16];
        snprintf(key, sizeof(key), "k%05d", i);
        MDB_val k = {6, key}, v = {value_len, value};
        ck_assert_int_eq(mdb_put(txn, store_dbi(store, STORE_DB_DOC), &k, &v, 0), 0);
    }
    ck_assert_int_eq(store_write_commit(store, txn), 0);
}

static store_space_t space_now(void)
{
    MDB_txn *txn;
    store_space_t space;
    ck_assert_int_eq(store_read_begin(store, &txn), 0);
    ck_assert_int_eq(store_space(store, txn, true, &space), 0);
    store_read_end(txn);
    return space;
}

/* The bench states store bytes beside rendered JSON: each figure must be what it says. */
START_TEST(test_space_splits_the_bytes_in_use)
{
    store_space_t before = space_now();
    put_docs(2000, 200);
    store_space_t after = space_now();
    ck_assert_uint_eq(after.ss_kv_bytes - before.ss_kv_bytes, 2000 * (6 + 200));
    /* 206-byte records, 8-byte node headers and 2-byte slot pointers in 4 KB leaves:
     * at least 2000 * 216 bytes of leaves, and a half-empty split tree at most twice. */
    ck_assert_uint_ge(after.ss_tree_bytes, 2000 * 216);
    ck_assert_uint_le(after.ss_tree_bytes, 2 * 2000 * 216 + 64 * 4096);
    /* Rewriting every record copies its pages: the old copies go to the free list. */
    put_docs(2000, 200);
    put_docs(2000, 200);
    store_space_t rewritten = space_now();
    ck_assert_uint_eq(rewritten.ss_kv_bytes, after.ss_kv_bytes);
    ck_assert_uint_ge(rewritten.ss_free_bytes, 2000 * 216 / 2);
    size_t map, used;
    ck_assert_int_eq(store_usage(store, &map, &used), 0);
    ck_assert_uint_le(rewritten.ss_tree_bytes + rewritten.ss_free_bytes, used);
}
END_TEST

/* A periodic store syncing every interval_ms in a directory of its own. */
static store_t *open_periodic(const char *path, int64_t interval_ms)
{
    char err[512];
    store_opts_t opts = {.so_dir = path,
                         .so_map_size_bytes = 8 << 20,
                         .so_durability = STORE_PERIODIC,
                         .so_sync_interval_ms = interval_ms};
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

/* An fsync failure is not swallowed, and no later successful fsync clears it: Linux
 * marks the pages whose writeback failed clean, so the next fdatasync succeeds without
 * writing them. Every later commit is refused, and the store stays refused after a
 * reopen, until a rebuild replaces it. */
START_TEST(test_failed_sync_latches)
{
    setenv("RM_FAILPOINT_ERROR", "store-sync:1:1", 1); /* the first sync fails */
    char *path = ts_tmpdir();
    store_t *periodic = open_periodic(path, 5);
    ck_assert_int_eq(commit_one(periodic, "before", 1), 0); /* dirty: the thread syncs */
    int64_t deadline = mono_ms() + 10000;
    int rc = 0, attempt = 0;
    while (rc == 0 && mono_ms() < deadline)
        rc = commit_one(periodic, "refused", ++attempt);
    ck_assert_int_ne(rc, 0);
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
    /* A later sync succeeds (the failpoint is spent), yet commits stay refused. */
    ck_assert_int_eq(store_sync(periodic), 0);
    ck_assert_int_ne(commit_one(periodic, "after", 1), 0);
    store_sync_stats_t stats;
    store_sync_stats(periodic, &stats);
    ck_assert_uint_eq(stats.sst_failures, 1);
    store_close(periodic);
    unsetenv("RM_FAILPOINT_ERROR");
    /* Neither a writer nor a reader may open it again as if it were durable. */
    char err[512];
    store_opts_t wopts = {
        .so_dir = path, .so_map_size_bytes = 8 << 20, .so_durability = STORE_PERIODIC};
    store_t *again = store_open(&wopts, err, sizeof(err));
    ck_assert_msg(again == NULL, "a store whose fsync failed was opened for writing");
    store_opts_t ropts = {.so_dir = path, .so_readonly = true};
    again = store_open(&ropts, err, sizeof(err));
    ck_assert_msg(again == NULL, "a store whose fsync failed was opened for reading");
    ts_rmtree(path);
}
END_TEST

/* Sync mode fsyncs inside mdb_txn_commit: an EIO there latches the same way, and the
 * store is refused when opened again. */
START_TEST(test_failed_commit_sync_latches)
{
    char *path = ts_tmpdir();
    char err[512];
    store_opts_t opts = {.so_dir = path, .so_map_size_bytes = 8 << 20, .so_durability = STORE_SYNC};
    store_t *synced = store_open(&opts, err, sizeof(err));
    ck_assert_msg(synced != NULL, "%s", err);
    ck_assert_int_eq(commit_one(synced, "n", 1), 0);
    setenv("RM_FAILPOINT_ERROR", "store-commit:1:1", 1);
    ck_assert_int_eq(commit_one(synced, "n", 2), RM_ESUSPECT);
    ck_assert_int_eq(commit_one(synced, "n", 3), RM_ESUSPECT); /* the failpoint is spent */
    unsetenv("RM_FAILPOINT_ERROR");
    ck_assert_int_eq(store_close(synced), RM_ESUSPECT);
    ck_assert_msg(store_open(&opts, err, sizeof(err)) == NULL, "reopened after a failed commit");
    store_t *again = NULL;
    ck_assert_int_eq(store_open_rc(&opts, &again, err, sizeof(err)), RM_ESUSPECT);
    ck_assert_ptr_null(again);
    ts_rmtree(path);
}
END_TEST

/* Simulated boots: the boot id the store reads comes from RM_BOOT_ID_FILE. */
static void set_boot_id(const char *path, const char *id)
{
    ts_write_file(path, "boot_id", id);
    char file[4096];
    snprintf(file, sizeof(file), "%s/boot_id", path);
    setenv("RM_BOOT_ID_FILE", file, 1);
}

/* A writer process that commits and dies without closing (kill -9 at any point after
 * the commit): the store as an OS crash or a process crash would find it. */
static void crash_after_commit(const char *path, store_durability_t durability)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        char err[512];
        store_opts_t opts = {.so_dir = path,
                             .so_map_size_bytes = 8 << 20,
                             .so_durability = durability,
                             .so_sync_interval_ms = 3600000};
        store_t *child = store_open(&opts, err, sizeof(err));
        MDB_txn *txn;
        int rc = child ? store_write_begin(child, &txn) : 1;
        rc = rc ? rc : store_meta_put_i64(child, txn, "n", 7);
        rc = rc ? rc : store_write_commit(child, txn);
        _exit(rc ? 1 : 0);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the writer child failed");
}

static store_t *try_open(const char *path, bool readonly, store_durability_t durability)
{
    char err[512];
    store_opts_t opts = {.so_dir = path,
                         .so_readonly = readonly,
                         .so_map_size_bytes = 8 << 20,
                         .so_durability = durability};
    return store_open(&opts, err, sizeof(err));
}

/* A periodic (MDB_NOSYNC) writer that did not close cleanly leaves a store that an OS
 * crash may have torn: after another boot it is refused (readers and writers) until a
 * rebuild replaces it. After a process crash in the same boot the page cache holds
 * every commit, so it opens. A sync-mode store is never refused for a reboot. */
START_TEST(test_os_restart_makes_an_unsynced_periodic_store_suspect)
{
    char *path = ts_tmpdir();
    char *boot = ts_tmpdir();
    set_boot_id(boot, "11111111-1111-1111-1111-111111111111\n");
    crash_after_commit(path, STORE_PERIODIC);
    set_boot_id(boot, "22222222-2222-2222-2222-222222222222\n");
    store_t *s = try_open(path, true, STORE_PERIODIC);
    ck_assert_msg(s == NULL, "a reader opened a periodic store torn by a simulated reboot");
    store_close(s);
    s = try_open(path, false, STORE_PERIODIC);
    ck_assert_msg(s == NULL, "a writer opened a periodic store torn by a simulated reboot");
    store_close(s);
    s = try_open(path, false, STORE_SYNC);
    ck_assert_msg(s == NULL, "a sync-mode writer opened a periodic store torn by a reboot");
    store_close(s);
    /* Same boot: a process crash only. */
    set_boot_id(boot, "11111111-1111-1111-1111-111111111111\n");
    s = try_open(path, true, STORE_PERIODIC);
    ck_assert_msg(s != NULL, "a process crash made the store suspect");
    store_close(s);
    ts_rmtree(path);

    /* Sync mode: every commit is durable, a reboot changes nothing. */
    path = ts_tmpdir();
    set_boot_id(boot, "33333333-3333-3333-3333-333333333333\n");
    crash_after_commit(path, STORE_SYNC);
    set_boot_id(boot, "44444444-4444-4444-4444-444444444444\n");
    s = try_open(path, true, STORE_SYNC);
    ck_assert_msg(s != NULL, "a sync-mode store was refused after a reboot");
    store_close(s);
    ts_rmtree(path);

    /* A periodic store closed cleanly (final sync done) survives a reboot. */
    path = ts_tmpdir();
    set_boot_id(boot, "55555555-5555-5555-5555-555555555555\n");
    store_t *periodic = open_periodic(path, 3600000);
    ck_assert_int_eq(commit_one(periodic, "n", 1), 0);
    store_close(periodic);
    set_boot_id(boot, "66666666-6666-6666-6666-666666666666\n");
    s = try_open(path, true, STORE_PERIODIC);
    ck_assert_msg(s != NULL, "a cleanly closed periodic store was refused after a reboot");
    store_close(s);
    unsetenv("RM_BOOT_ID_FILE");
    ts_rmtree(path);
    ts_rmtree(boot);
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
    tcase_add_test(tc, test_space_splits_the_bytes_in_use);
    tcase_add_test(tc, test_periodic_syncs_in_the_background);
    tcase_add_test(tc, test_failed_sync_latches);
    tcase_add_test(tc, test_failed_commit_sync_latches);
    tcase_add_test(tc, test_os_restart_makes_an_unsynced_periodic_store_suspect);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
