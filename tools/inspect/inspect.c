/* inspect: read a view store from the command line — a document, the offsets, counts.
 * Opens the store read-only, so it is safe next to a running projector. */
#include "app.h"
#include "gen.h"
#include "buf.h"
#include "engine.h"
#include "render.h"
#include "rm_err.h"
#include "store.h"
#include "topic_counts.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

static void usage(FILE *out)
{
    fprintf(out, "Usage: inspect --config FILE [--set KEY=VALUE]... COMMAND\n"
                 "\n"
                 "Commands (output on stdout, JSON):\n"
                 "  get KEY...     the view document of each key (one JSON line each;\n"
                 "                 {\"key\":K,\"error\":\"not found\"} when absent)\n"
                 "  offsets        stored next offset, high watermark and lag per partition\n"
                 "  stats          entries per database and store size: bytes in use (the file's\n"
                 "                 high-water mark), in B-tree pages, on LMDB's free list,\n"
                 "                 and of keys and values\n"
                 "  topics         per topic, parked events and dead letters, twice: counted by\n"
                 "                 a full scan now (\"scanned\") and as the projector keeps them\n"
                 "                 (\"counted\"; null before it first counted the store)\n"
                 "\n"
                 "Exit codes: 0 ok, 1 a key was not found or the store cannot be read,\n"
                 "2 usage or configuration error.\n");
}

static int print_offset(void *ctx, const char *topic, int32_t partition, const store_offset_t *off)
{
    bool *first = ctx;
    printf("%s{\"topic\":\"%s\",\"partition\":%d,\"next_offset\":%lld,\"high_watermark\":%lld,"
           "\"lag_messages\":%lld,\"last_event_ms\":%lld,\"updated_ms\":%lld}",
           *first ? "" : ",\n", topic, partition, (long long)off->so_next_offset,
           (long long)off->so_high_watermark,
           (long long)(off->so_high_watermark > off->so_next_offset
                           ? off->so_high_watermark - off->so_next_offset
                           : 0),
           (long long)off->so_last_event_ms, (long long)off->so_updated_ms);
    *first = false;
    return 0;
}

static int cmd_stats(store_t *store, MDB_txn *txn)
{
    printf("{");
    for (int i = 0; i < STORE_DB__COUNT; i++) {
        MDB_stat st;
        if (mdb_stat(txn, store_dbi(store, (store_db_t)i), &st))
            return APP_EXIT_FAILURE;
        printf("\"%s\":%zu,", store_db_name((store_db_t)i), st.ms_entries);
    }
    size_t map = 0, used = 0;
    store_usage(store, &map, &used);
    store_space_t space;
    if (store_space(store, txn, true, &space))
        return APP_EXIT_FAILURE;
    printf("\"map_bytes\":%zu,\"used_bytes\":%zu,\"tree_bytes\":%zu,\"free_bytes\":%zu,"
           "\"kv_bytes\":%zu}\n",
           map, used, space.ss_tree_bytes, space.ss_free_bytes, space.ss_kv_bytes);
    return APP_EXIT_OK;
}

/* Appends one topic's counts to the list in ctx (a buf_t). */
static int print_topic(void *ctx, const char *topic, const topic_counts_t *counts)
{
    buf_t *b = ctx;
    int rc = buf_append_str(b, b->b_len ? ",{\"topic\":" : "{\"topic\":");
    rc = rc ? rc : buf_append_json_str(b, topic, strlen(topic));
    return rc ? rc
              : buf_printf(b,
                           ",\"parked\":%lld,\"dead_letters_pending\":%lld,"
                           "\"dead_letters_recorded\":%lld}",
                           (long long)counts->tc_count[TOPIC_COUNTS_PARKED],
                           (long long)counts->tc_count[TOPIC_COUNTS_DEAD_LETTERS],
                           (long long)counts->tc_count[TOPIC_COUNTS_RECORDED]);
}

/* {"scanned":[...],"counted":[...]|null}: the scan costs a walk of the pending db. */
static int cmd_topics(store_t *store, MDB_txn *txn)
{
    buf_t scanned = BUF_INIT, counted = BUF_INIT;
    int rc = topic_counts_scan(store, txn, print_topic, &scanned);
    int crc = rc ? rc : topic_counts_foreach(store, txn, print_topic, &counted);
    if (!rc && (!crc || crc == RM_ENOTFOUND))
        printf("{\"scanned\":[%s],\"counted\":%s%s%s}\n", scanned.b_len ? scanned.b_data : "",
               crc ? "null" : "[", crc || !counted.b_len ? "" : counted.b_data, crc ? "" : "]");
    else
        fprintf(stderr, "inspect: %s\n", rm_strerror(rc ? rc : crc));
    buf_free(&scanned);
    buf_free(&counted);
    return rc || (crc && crc != RM_ENOTFOUND) ? APP_EXIT_FAILURE : APP_EXIT_OK;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {{"config", required_argument, NULL, 'c'},
                                            {"set", required_argument, NULL, 's'},
                                            {"help", no_argument, NULL, 'h'},
                                            {NULL, 0, NULL, 0}};
    app_args_t args = {0};
    int opt;
    while ((opt = getopt_long(argc, argv, "+c:s:h", options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            args.aa_config = optarg;
            break;
        case 's':
            app_args_add_set(&args, optarg);
            break;
        case 'h':
            usage(stdout);
            return APP_EXIT_OK;
        default:
            usage(stderr);
            return APP_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return APP_EXIT_USAGE;
    }
    const char *command = argv[optind++];
    app_t app;
    int exit_code = app_load(&app, "inspect", &args, true);
    if (exit_code) {
        app_cleanup(&app);
        return exit_code;
    }
    char err[1024];
    char store_dir[4096];
    if (gen_current_dir(app.ap_store_dir, store_dir, sizeof(store_dir)) != 0) {
        fprintf(stderr, "inspect: %s: no store yet\n", app.ap_store_dir);
        app_cleanup(&app);
        return APP_EXIT_FAILURE;
    }
    store_opts_t sopts = {.so_dir = store_dir, .so_readonly = true};
    store_t *store = store_open(&sopts, err, sizeof(err));
    if (!store) {
        fprintf(stderr, "inspect: %s\n", err);
        app_cleanup(&app);
        return APP_EXIT_FAILURE;
    }
    MDB_txn *txn;
    if (store_read_begin(store, &txn)) {
        fprintf(stderr, "inspect: cannot begin a read transaction\n");
        store_close(store);
        app_cleanup(&app);
        return APP_EXIT_FAILURE;
    }
    buf_t out = BUF_INIT;
    if (strcmp(command, "get") == 0) {
        for (; optind < argc; optind++) {
            buf_reset(&out);
            int rc = render_view(app.ap_view, store, txn, argv[optind], strlen(argv[optind]), &out);
            if (rc) {
                buf_reset(&out);
                buf_append_str(&out, "{\"key\":");
                buf_append_json_str(&out, argv[optind], strlen(argv[optind]));
                buf_printf(&out, ",\"error\":\"%s\"}", rm_strerror(rc));
                exit_code = APP_EXIT_FAILURE;
            }
            printf("%s\n", out.b_data);
        }
    } else if (strcmp(command, "offsets") == 0) {
        bool first = true;
        printf("[");
        store_offset_foreach(store, txn, print_offset, &first);
        printf("]\n");
    } else if (strcmp(command, "stats") == 0) {
        exit_code = cmd_stats(store, txn);
    } else if (strcmp(command, "topics") == 0) {
        exit_code = cmd_topics(store, txn);
    } else {
        fprintf(stderr, "inspect: unknown command '%s'\n", command);
        usage(stderr);
        exit_code = APP_EXIT_USAGE;
    }
    buf_free(&out);
    store_read_end(txn);
    store_close(store);
    app_cleanup(&app);
    return exit_code;
}
