/* tsupport: helpers shared by the unit tests — temp dirs, Avro events, JSON checks. */
#ifndef RM_TSUPPORT_H
#define RM_TSUPPORT_H

#include "buf.h"
#include "catalog.h"
#include "engine.h"
#include "frag.h"
#include "store.h"
#include "view.h"

#include <check.h>
#include <stdbool.h>
#include <stddef.h>

/* Path of a file in the source tree (RM_TEST_SRCDIR). Static buffer per call site. */
const char *ts_src(const char *relpath, char *out, size_t cap);
/* Creates a fresh temporary directory; returns its path (malloc'd). */
char *ts_tmpdir(void);
/* Writes text to dir/name (replacing it); aborts on failure. */
void ts_write_file(const char *dir, const char *name, const char *text);
/* rm -rf path and free it. */
void ts_rmtree(char *path);

/* The real catalog (schemas/catalog.yaml); aborts the test on failure. */
catalog_t *ts_catalog(void);

/* The real Customer 360 definition (schemas/views/customer360.yaml) over catalog;
 * aborts the test on failure. */
view_t *ts_view(const catalog_t *catalog);

/* A writable scratch store in dir (64 MiB map, periodic durability); aborts on failure. */
store_t *ts_store(const char *dir);

/* Runs every test of suite s (and frees it); returns the exit status: EXIT_FAILURE when
 * any test failed. */
int ts_run(Suite *s);

/* A scratch store with an engine over it: the fixture of the tests that apply events. */
typedef struct ts_engine {
    char *te_dir;
    store_t *te_store;
    engine_t *te_engine;
    int64_t te_offset; /* the offset the next ts_engine_apply() gives its message */
} ts_engine_t;

/* Opens a fresh fixture for view (opts may be NULL); aborts the test on failure. */
void ts_engine_open(ts_engine_t *te, const view_t *view, const catalog_t *catalog,
                    const engine_opts_t *opts);
/* Destroys the engine, closes the store and removes its directory. */
void ts_engine_close(ts_engine_t *te);
/* Applies one message (value NULL: a tombstone) at the next offset of partition 0, in a
 * transaction of its own; checks every step returns 0 and returns the result. */
engine_result_t ts_engine_apply(ts_engine_t *te, const char *topic, int64_t timestamp_ms,
                                const char *key, const void *value, size_t value_len);

/* Builds a Confluent-framed Avro message for schema_id into out (reset first).
 * Fields are given as "name=value" strings, NULL-terminated; the value is coerced to
 * the field's type (string, long/int, boolean true/false, enum symbol, union: "null"
 * or the non-null branch's value, array: "N" gives N default items). Fields not
 * given get zero values. Returns 0 or -1 (with a message on stderr). */
int ts_event(const catalog_t *catalog, int schema_id, buf_t *out, ...) __attribute__((sentinel));

/* Compares JSON texts semantically (jansson). On mismatch prints both and returns false. */
bool ts_json_equal(const char *actual, const char *expected);

/* The fragment encoder of format 1, as frag_encode was before format 2 (native endian,
 * fixed widths): builds the values that stores written by earlier versions hold, which
 * frag_decode must go on reading. Into out (reset first); aborts the test on failure. */
void ts_frag_encode_v1(const frag_t *frag, const view_section_t *section, buf_t *out);

#endif
