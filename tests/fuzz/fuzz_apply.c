/* fuzz_apply: libFuzzer harness over Confluent framing + Avro validation/decoding +
 * the view engine's apply path, on the real Customer 360 definition.
 *
 * Input format: byte 0 selects the topic (mod the view's topic count), the rest is
 * the message value. Every input is applied in its own write transaction to one
 * store that lives for the whole run, so state-dependent paths (parking, links,
 * trimming, erasure) are reached too. Any crash, sanitizer report or leak fails. */
#include "catalog.h"
#include "engine.h"
#include "render.h"
#include "store.h"
#include "view.h"

#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static catalog_t *catalog;
static view_t *view;
static store_t *store;
static engine_t *engine;
static int64_t offset;
static char scratch_dir[] = "/tmp/rmfuzz-XXXXXX";

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Releases everything at exit, so LeakSanitizer's final check sees real leaks only,
 * and removes the scratch store. */
static void cleanup(void)
{
    engine_destroy(engine);
    store_close(store);
    view_destroy(view);
    catalog_destroy(catalog);
    nftw(scratch_dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void init(void)
{
    char err[512], path[4096];
    const char *src = getenv("RM_SOURCE_DIR") ? getenv("RM_SOURCE_DIR") : RM_FUZZ_SRCDIR;
    snprintf(path, sizeof(path), "%s/schemas/catalog.yaml", src);
    catalog = catalog_load(path, err, sizeof(err));
    snprintf(path, sizeof(path), "%s/schemas/views/customer360.yaml", src);
    view = catalog ? view_load(path, catalog, err, sizeof(err)) : NULL;
    store_opts_t opts = {.so_dir = mkdtemp(scratch_dir),
                         .so_map_size_bytes = 256 << 20,
                         .so_durability = STORE_PERIODIC,
                         .so_sync_interval_ms = 1 << 30};
    store = view ? store_open(&opts, err, sizeof(err)) : NULL;
    engine = store ? engine_new(view, catalog, store, NULL) : NULL;
    if (!engine) {
        fprintf(stderr, "fuzz_apply: init failed: %s\n", err);
        abort();
    }
    atexit(cleanup);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!engine)
        init();
    if (size < 1)
        return 0;
    const char *topic = view->v_topics[data[0] % view->v_topic_count];
    MDB_txn *txn;
    if (store_write_begin(store, &txn))
        abort();
    engine_txn_begin(engine, txn);
    engine_msg_t msg = {topic, 0, offset++, 0, NULL, 0, data + 1, size - 1};
    engine_result_t res;
    int rc = engine_apply(engine, txn, &msg, &res);
    if (rc == 0 && engine_txn_precommit(engine, txn) == 0)
        store_write_commit(store, txn);
    else
        store_write_abort(txn);
    /* Rendering whatever a fuzzed key produced must also be safe. */
    if (store_read_begin(store, &txn) == 0) {
        buf_t out = BUF_INIT;
        render_view(view, store, txn, (const char *)data + 1, size - 1 > 128 ? 128 : size - 1,
                    &out);
        buf_free(&out);
        store_read_end(txn);
    }
    return 0;
}
