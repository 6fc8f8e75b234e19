/* Tests of gen.c: current resolution (flat and generations), migration of a flat
 * store, create/switch/previous, listing with offsets, pruning. */
#include "gen.h"
#include "rm_err.h"
#include "store.h"
#include "tsupport.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char *view_dir;

static void setup(void)
{
    view_dir = ts_tmpdir();
}

static void teardown(void)
{
    ts_rmtree(view_dir);
}

/* Writes a store in dir with one offset record (topic "t", partition p -> next). */
static void make_store(const char *dir, int32_t partition, int64_t next)
{
    char err[512];
    store_opts_t opts = {.so_dir = dir, .so_map_size_bytes = 4 << 20, .so_durability = STORE_SYNC};
    store_t *store = store_open(&opts, err, sizeof(err));
    ck_assert_msg(store != NULL, "%s", err);
    MDB_txn *txn;
    ck_assert_int_eq(store_write_begin(store, &txn), 0);
    store_offset_t off = {next, next + 5, 1000, 2000};
    ck_assert_int_eq(store_offset_put(store, txn, "t", partition, &off), 0);
    ck_assert_int_eq(store_write_commit(store, txn), 0);
    store_close(store);
}

static int64_t next_offset_in(const char *dir, int32_t partition)
{
    char err[512];
    store_opts_t opts = {.so_dir = dir, .so_readonly = true};
    store_t *store = store_open(&opts, err, sizeof(err));
    ck_assert_msg(store != NULL, "%s", err);
    MDB_txn *txn;
    ck_assert_int_eq(store_read_begin(store, &txn), 0);
    store_offset_t off = {0};
    int rc = store_offset_get(store, txn, "t", partition, &off);
    store_read_end(txn);
    store_close(store);
    return rc ? -1 : off.so_next_offset;
}

static bool exists(const char *name)
{
    char path[4096];
    struct stat sb;
    snprintf(path, sizeof(path), "%s/%s", view_dir, name);
    return lstat(path, &sb) == 0;
}

START_TEST(test_nothing_yet)
{
    char dir[4096];
    ck_assert_int_eq(gen_current_dir(view_dir, dir, sizeof(dir)), RM_ENOTFOUND);
    gen_info_t *gens;
    size_t count = 99;
    ck_assert_int_eq(gen_list(view_dir, true, &gens, &count), 0);
    ck_assert_uint_eq(count, 0);
    gen_list_free(gens, count);
    int64_t prev;
    ck_assert_int_eq(gen_previous(view_dir, &prev), RM_ENOTFOUND);
}
END_TEST

START_TEST(test_flat_store_resolves_then_migrates)
{
    make_store(view_dir, 0, 42);
    char dir[4096];
    int64_t id = -1;
    /* Readers of a not-yet-migrated store keep working. */
    ck_assert_int_eq(gen_current(view_dir, &id, dir, sizeof(dir)), 0);
    ck_assert_str_eq(dir, view_dir);
    ck_assert_int_eq(id, 0);

    bool migrated = false;
    ck_assert_int_eq(gen_prepare(view_dir, &migrated), 0);
    ck_assert(migrated);
    ck_assert(!exists("data.mdb") && !exists("lock.mdb"));
    ck_assert(exists("gen-000001/data.mdb") && exists("current"));
    ck_assert_int_eq(gen_current(view_dir, &id, dir, sizeof(dir)), 0);
    ck_assert_int_eq(id, 1);
    char want[4096];
    snprintf(want, sizeof(want), "%s/gen-000001", view_dir);
    ck_assert_str_eq(dir, want);
    ck_assert_int_eq(next_offset_in(dir, 0), 42); /* the data moved with it */

    /* Once only: a second start changes nothing. */
    ck_assert_int_eq(gen_prepare(view_dir, &migrated), 0);
    ck_assert(!migrated);
    ck_assert(!exists("gen-000002"));
}
END_TEST

START_TEST(test_migration_refuses_a_flat_store_being_written)
{
    char err[512];
    store_opts_t opts = {.so_dir = view_dir, .so_map_size_bytes = 4 << 20};
    store_t *writer = store_open(&opts, err, sizeof(err)); /* holds writer.lock */
    ck_assert_msg(writer != NULL, "%s", err);
    ck_assert_int_eq(gen_prepare(view_dir, NULL), RM_EBUSY);
    ck_assert(exists("data.mdb") && !exists("current"));
    store_close(writer);
    ck_assert_int_eq(gen_prepare(view_dir, NULL), 0);
}
END_TEST

START_TEST(test_fresh_view_and_crash_repair)
{
    ck_assert_int_eq(gen_prepare(view_dir, NULL), 0);
    char dir[4096];
    int64_t id;
    ck_assert_int_eq(gen_current(view_dir, &id, dir, sizeof(dir)), 0);
    ck_assert_int_eq(id, 1);
    /* A crash that lost the link (between moving data.mdb and linking): repaired to
     * the newest generation. */
    make_store(dir, 0, 7);
    char link[4200];
    snprintf(link, sizeof(link), "%s/current", view_dir);
    ck_assert_int_eq(unlink(link), 0);
    ck_assert_int_eq(gen_prepare(view_dir, NULL), 0);
    ck_assert_int_eq(gen_current(view_dir, &id, dir, sizeof(dir)), 0);
    ck_assert_int_eq(id, 1);
    ck_assert_int_eq(next_offset_in(dir, 0), 7);
}
END_TEST

START_TEST(test_create_switch_previous)
{
    ck_assert_int_eq(gen_prepare(view_dir, NULL), 0);
    char dir1[4096], dir2[4096], dir[4096];
    int64_t id;
    ck_assert_int_eq(gen_current(view_dir, &id, dir1, sizeof(dir1)), 0);
    make_store(dir1, 0, 10);

    ck_assert_int_eq(gen_create(view_dir, &id, dir2, sizeof(dir2)), 0);
    ck_assert_int_eq(id, 2);
    /* Not current until switched; an empty generation cannot be switched to. */
    ck_assert_int_eq(gen_current(view_dir, &id, dir, sizeof(dir)), 0);
    ck_assert_int_eq(id, 1);
    ck_assert_int_eq(gen_switch(view_dir, 2), RM_ENOTFOUND);
    ck_assert_int_eq(gen_switch(view_dir, 9), RM_ENOTFOUND);

    make_store(dir2, 0, 20);
    ck_assert_int_eq(gen_switch(view_dir, 2), 0);
    ck_assert_int_eq(gen_current(view_dir, &id, dir, sizeof(dir)), 0);
    ck_assert_int_eq(id, 2);
    ck_assert_str_eq(dir, dir2);
    ck_assert(!exists("current.tmp"));
    int64_t prev;
    ck_assert_int_eq(gen_previous(view_dir, &prev), 0);
    ck_assert_int_eq(prev, 1);

    /* Rollback is a switch back; previous then points forward (like "cd -"). */
    ck_assert_int_eq(gen_switch(view_dir, 1), 0);
    ck_assert_int_eq(gen_current(view_dir, &id, dir, sizeof(dir)), 0);
    ck_assert_int_eq(id, 1);
    ck_assert_int_eq(gen_previous(view_dir, &prev), 0);
    ck_assert_int_eq(prev, 2);
    /* Switching to the current one changes nothing. */
    ck_assert_int_eq(gen_switch(view_dir, 1), 0);
    ck_assert_int_eq(gen_previous(view_dir, &prev), 0);
    ck_assert_int_eq(prev, 2);
}
END_TEST

/* A generation whose store lost writes (an fsync failed while it was written) is never
 * made current: not by a rebuild's switch, not by a rollback. */
START_TEST(test_switch_refuses_a_store_whose_sync_failed)
{
    ck_assert_int_eq(gen_prepare(view_dir, NULL), 0);
    char dir1[4096], dir2[4096];
    int64_t id;
    ck_assert_int_eq(gen_current(view_dir, &id, dir1, sizeof(dir1)), 0);
    make_store(dir1, 0, 10);
    ck_assert_int_eq(gen_create(view_dir, &id, dir2, sizeof(dir2)), 0);
    setenv("RM_FAILPOINT_ERROR", "store-sync:1:1", 1); /* the close's final sync fails */
    char err[512];
    store_opts_t opts = {.so_dir = dir2,
                         .so_map_size_bytes = 4 << 20,
                         .so_durability = STORE_PERIODIC,
                         .so_sync_interval_ms = 3600000};
    store_t *store = store_open(&opts, err, sizeof(err));
    ck_assert_msg(store != NULL, "%s", err);
    MDB_txn *txn;
    ck_assert_int_eq(store_write_begin(store, &txn), 0);
    store_offset_t off = {20, 25, 1000, 2000};
    ck_assert_int_eq(store_offset_put(store, txn, "t", 0, &off), 0);
    ck_assert_int_eq(store_write_commit(store, txn), 0);
    store_close(store);
    unsetenv("RM_FAILPOINT_ERROR");
    ck_assert_int_ne(gen_switch(view_dir, id), 0);
    ck_assert_int_eq(gen_current(view_dir, &id, dir2, sizeof(dir2)), 0);
    ck_assert_int_eq(id, 1);
}
END_TEST

/* A generation a periodic writer had open when the OS restarted may be torn: a rollback
 * (or any switch) to it is refused, while the same store in the same boot is fine. */
START_TEST(test_switch_refuses_a_generation_torn_by_a_reboot)
{
    ck_assert_int_eq(gen_prepare(view_dir, NULL), 0);
    char dir1[4096], dir2[4096];
    int64_t id;
    ck_assert_int_eq(gen_current(view_dir, &id, dir1, sizeof(dir1)), 0);
    make_store(dir1, 0, 10);
    ck_assert_int_eq(gen_create(view_dir, &id, dir2, sizeof(dir2)), 0);
    ts_write_file(view_dir, "boot_id", "boot-one\n");
    char boot_path[4200];
    snprintf(boot_path, sizeof(boot_path), "%s/boot_id", view_dir);
    setenv("RM_BOOT_ID_FILE", boot_path, 1);
    pid_t pid = fork(); /* a periodic writer that dies with its store open */
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        char err[512];
        store_opts_t opts = {.so_dir = dir2,
                             .so_map_size_bytes = 4 << 20,
                             .so_durability = STORE_PERIODIC,
                             .so_sync_interval_ms = 3600000};
        store_t *store = store_open(&opts, err, sizeof(err));
        MDB_txn *txn;
        store_offset_t off = {20, 25, 1000, 2000};
        int rc = store ? store_write_begin(store, &txn) : 1;
        rc = rc ? rc : store_offset_put(store, txn, "t", 0, &off);
        rc = rc ? rc : store_write_commit(store, txn);
        _exit(rc ? 1 : 0);
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ts_write_file(view_dir, "boot_id", "boot-two\n");
    ck_assert_int_eq(gen_switch(view_dir, id), RM_ESUSPECT);
    ts_write_file(view_dir, "boot_id", "boot-one\n"); /* a process crash only */
    ck_assert_int_eq(gen_switch(view_dir, id), 0);
    unsetenv("RM_BOOT_ID_FILE");
}
END_TEST

START_TEST(test_list_reports_offsets_and_state)
{
    ck_assert_int_eq(gen_prepare(view_dir, NULL), 0);
    char dir1[4096], dir2[4096];
    int64_t id;
    ck_assert_int_eq(gen_current(view_dir, &id, dir1, sizeof(dir1)), 0);
    make_store(dir1, 0, 10);
    make_store(dir1, 1, 5);
    ck_assert_int_eq(gen_create(view_dir, &id, dir2, sizeof(dir2)), 0);
    make_store(dir2, 0, 3);
    ck_assert_int_eq(gen_switch(view_dir, 2), 0);

    gen_info_t *gens;
    size_t count;
    ck_assert_int_eq(gen_list(view_dir, true, &gens, &count), 0);
    ck_assert_uint_eq(count, 2);
    ck_assert_int_eq(gens[0].gi_id, 1);
    ck_assert(!gens[0].gi_current && gens[0].gi_previous);
    ck_assert(gens[1].gi_current && !gens[1].gi_previous);
    ck_assert_uint_eq(gens[0].gi_topic_count, 1);
    ck_assert_str_eq(gens[0].gi_topics[0].gt_topic, "t");
    ck_assert_int_eq(gens[0].gi_topics[0].gt_partitions, 2);
    ck_assert_int_eq(gens[0].gi_topics[0].gt_next_offset_sum, 15);
    ck_assert_int_eq(gens[0].gi_topics[0].gt_lag_sum, 10);
    ck_assert_int_eq(gens[1].gi_topics[0].gt_next_offset_sum, 3);
    ck_assert(gens[1].gi_size_bytes > 0);
    ck_assert(gens[1].gi_created_ms > 1600000000000LL);
    ck_assert(!gens[1].gi_writer_active);
    gen_list_free(gens, count);

    /* A held writer lock shows (and protects the generation from pruning). */
    char err[512];
    store_opts_t opts = {.so_dir = dir2, .so_map_size_bytes = 4 << 20};
    store_t *writer = store_open(&opts, err, sizeof(err));
    ck_assert_msg(writer != NULL, "%s", err);
    ck_assert_int_eq(gen_list(view_dir, false, &gens, &count), 0);
    ck_assert(gens[1].gi_writer_active && gens[1].gi_topics == NULL);
    gen_list_free(gens, count);
    store_close(writer);
}
END_TEST

START_TEST(test_prune_keeps_current_previous_and_active)
{
    ck_assert_int_eq(gen_prepare(view_dir, NULL), 0);
    char dir[4096];
    int64_t id;
    ck_assert_int_eq(gen_current(view_dir, &id, dir, sizeof(dir)), 0);
    make_store(dir, 0, 1);
    for (int i = 2; i <= 5; i++) {
        ck_assert_int_eq(gen_create(view_dir, &id, dir, sizeof(dir)), 0);
        ck_assert_int_eq(id, i);
        make_store(dir, 0, i);
    }
    /* current 3 (previous 1: a rollback history), 2, 4 and 5 others; 5 is being built. */
    ck_assert_int_eq(gen_switch(view_dir, 1), 0);
    ck_assert_int_eq(gen_switch(view_dir, 3), 0);
    char err[512];
    store_opts_t opts = {.so_dir = dir, .so_map_size_bytes = 4 << 20};
    store_t *builder = store_open(&opts, err, sizeof(err));
    ck_assert_msg(builder != NULL, "%s", err);

    size_t removed = 0;
    ck_assert_int_eq(gen_prune(view_dir, 0, &removed), RM_EINVAL);
    ck_assert_int_eq(gen_prune(view_dir, 2, &removed), 0);
    ck_assert_uint_eq(removed, 2); /* 2 and 4 */
    ck_assert(exists("gen-000001") && exists("gen-000003") && exists("gen-000005"));
    ck_assert(!exists("gen-000002") && !exists("gen-000004"));
    store_close(builder);

    /* keep 1: only current survives, and the link to a deleted previous goes too. */
    ck_assert_int_eq(gen_prune(view_dir, 1, &removed), 0);
    ck_assert_uint_eq(removed, 2);
    ck_assert(exists("gen-000003") && !exists("gen-000001") && !exists("gen-000005"));
    int64_t prev;
    ck_assert_int_eq(gen_previous(view_dir, &prev), RM_ENOTFOUND);
    ck_assert_int_eq(gen_current(view_dir, &id, dir, sizeof(dir)), 0);
    ck_assert_int_eq(id, 3);
    ck_assert_int_eq(next_offset_in(dir, 0), 3);
}
END_TEST

START_TEST(test_foreign_link_is_refused)
{
    char link[4200];
    snprintf(link, sizeof(link), "%s/current", view_dir);
    ck_assert_int_eq(symlink("/etc", link), 0);
    char dir[4096];
    ck_assert_int_eq(gen_current_dir(view_dir, dir, sizeof(dir)), RM_EINVAL);
    char small[8];
    ck_assert_int_eq(unlink(link), 0);
    ck_assert_int_eq(gen_prepare(view_dir, NULL), 0);
    ck_assert_int_eq(gen_current_dir(view_dir, small, sizeof(small)), RM_EINVAL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("gen");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_nothing_yet);
    tcase_add_test(tc, test_flat_store_resolves_then_migrates);
    tcase_add_test(tc, test_migration_refuses_a_flat_store_being_written);
    tcase_add_test(tc, test_fresh_view_and_crash_repair);
    tcase_add_test(tc, test_create_switch_previous);
    tcase_add_test(tc, test_switch_refuses_a_store_whose_sync_failed);
    tcase_add_test(tc, test_switch_refuses_a_generation_torn_by_a_reboot);
    tcase_add_test(tc, test_list_reports_offsets_and_state);
    tcase_add_test(tc, test_prune_keeps_current_previous_and_active);
    tcase_add_test(tc, test_foreign_link_is_refused);
    suite_add_tcase(s, tc);
    return ts_run(s);
}
