/* store: one view's LMDB environment — its layout, transactions and offsets.
 *
 * A view store is the directory <data_dir>/<view>/current -> gen-N/ (see docs/store.md)
 * holding one LMDB environment with these named databases:
 *   doc      view_key \0 section \0 item_id  -> fragment (frag.h); the single fragment
 *            of a section has an empty item_id; key "view_key \0 \0" holds the
 *            freshness marks of removed items; "view_key \0 \xff \0 type \0 id" ->
 *            i64 the last applied version of an entity (engine.c, check_version).
 *   link     link \0 foreign_id               -> view_key
 *   rlink    view_key \0 link \0 foreign_id   -> "" (reverse of link; erasure)
 *   pending  link \0 foreign_id \0 seq(be64)   -> parked event (engine_park.c)
 *   erased   view_key                          -> erased-at event time (i64)
 *   offsets  topic \0 partition(be32)          -> store_offset_t
 *   outbox   seq(be64)                         -> message to publish (dead letters)
 *   meta     name                              -> value (view hash, counters, ...)
 *   idx      index \0 normalized_value \0 view_key -> "" (secondary lookups, index.h)
 * Integer keys are big-endian so they sort; values are native-endian (an LMDB file
 * is not portable across architectures anyway).
 *
 * Notes on the design:
 * (1) Exactly one process writes a store (the projector); it holds an exclusive
 *     flock on <dir>/writer.lock for its lifetime. Readers open MDB_RDONLY.
 * (2) The next offset of every partition is written in the same write transaction
 *     as the changes it caused (store_offset_put inside the batch's txn).
 * (3) The map grows only while no transaction of this process is open
 *     (store_grow); readers that see MDB_MAP_RESIZED adopt the new size.
 *
 * (4) STORE_PERIODIC syncs on a background thread owned by the store (started by
 *     store_open, joined by store_close, which then syncs once more), so a commit
 *     never waits for an fsync.
 * (5) A failed fsync is permanent: every later commit fails with RM_ESUSPECT, and the
 *     store is marked on disk so that no program opens it again (store_check_durable);
 *     only a rebuild into a new generation replaces it.
 * (6) A periodic writer keeps a mark with the boot id in the directory while it may
 *     have unsynced writes; after an OS restart store_check_durable finds another boot's
 *     id and refuses the store (MDB_NOSYNC keeps no write order, so it may be torn).
 *
 * Threads: a store_t may be shared by threads. Write transactions belong to the one
 * writer thread. Read transactions are per thread (the env is opened MDB_NOTLS so a
 * reader may reset/renew its txn across requests). */
#ifndef RM_STORE_H
#define RM_STORE_H

#include "metrics.h"

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct store store_t;

typedef enum store_db {
    STORE_DB_DOC = 0,
    STORE_DB_LINK,
    STORE_DB_RLINK,
    STORE_DB_PENDING,
    STORE_DB_ERASED,
    STORE_DB_OFFSETS,
    STORE_DB_OUTBOX,
    STORE_DB_META,
    STORE_DB_IDX,
    STORE_DB__COUNT
} store_db_t;

/* What a commit promises (docs/guarantees.md has the full table). */
typedef enum store_durability {
    STORE_SYNC = 0,       /* fsync on every commit: survives OS crash per commit */
    STORE_NOMETASYNC,     /* MDB_NOMETASYNC: an OS crash may lose the last commit */
    STORE_PERIODIC,       /* MDB_NOSYNC + mdb_env_sync every interval on the store's
                             sync thread: an OS crash while it is open may tear it, so
                             the store is then refused (note 6) and must be rebuilt */
} store_durability_t;

/* The fsyncs of a store (store_sync_stats). */
typedef struct store_sync_stats {
    uint64_t sst_syncs;          /* succeeded */
    uint64_t sst_failures;       /* failed (the first one latched the store, note 5) */
    metrics_hist_t sst_seconds;  /* duration of each successful sync */
} store_sync_stats_t;

typedef struct store_opts {
    const char *so_dir;             /* environment directory (created if writable) */
    bool so_readonly;
    size_t so_map_size_bytes;       /* initial map size for a writer; 0 = 1 GiB */
    store_durability_t so_durability;
    int64_t so_sync_interval_ms;    /* STORE_PERIODIC; 0 = 1000 */
} store_opts_t;

typedef struct store_offset {
    int64_t so_next_offset;    /* next offset to consume */
    int64_t so_high_watermark; /* partition's high watermark when last seen */
    int64_t so_last_event_ms;  /* newest event time (occurred_at) applied from it */
    int64_t so_updated_ms;     /* wall clock of the commit that wrote this record */
} store_offset_t;

/* Opens (creating if writable) the environment in opts->so_dir. A writer takes the
 * writer lock and fails with "locked by another writer" if it is held; a STORE_PERIODIC
 * writer makes the unsynced mark durable (note 6) before LMDB writes anything and
 * starts its sync thread. Readers and writers alike refuse a store that
 * store_check_durable() finds suspect. Returns NULL with a message in errstr. */
store_t *store_open(const store_opts_t *opts, char *errstr, size_t errlen);
/* store_open, telling why by code: returns 0 and the store in *ret_store, or with the
 * message in errstr RM_EBUSY (another writer holds the lock), RM_ESUSPECT (refused as
 * suspect, store_check_durable), RM_ENOMEM, or the error of the step that failed
 * (rm_err_from_errno, rm_err_from_mdb: RM_EIO, RM_ENOTFOUND, RM_ESTORE, ...). */
int store_open_rc(const store_opts_t *opts, store_t **ret_store, char *errstr, size_t errlen);
/* Stops and joins the sync thread, syncs a writer's environment one last time, removes
 * a periodic writer's unsynced mark once that sync succeeded, and closes it. Returns 0;
 * RM_ESUSPECT when this or any earlier sync of the store failed: its commits may not be
 * on disk, and the store is marked so (note 5) — never switch to it; or another rm_err_t
 * when the unsynced mark could not be removed (everything is synced, but the store will
 * be refused after a reboot). A reader returns 0. No txn may be open. Accepts NULL. */
int store_close(store_t *store);

/* Whether the store in dir may be opened as a durable one (no store needed: reads the
 * marks only). 0 if so; RM_ESUSPECT with the reason in why when an fsync of it failed
 * (note 5) or the OS restarted while a periodic writer had it open with unsynced writes
 * (note 6); another rm_err_t when the marks or the boot id cannot be read. The boot id
 * is read from /proc/sys/kernel/random/boot_id, or from the file named by the
 * environment variable RM_BOOT_ID_FILE (tests simulate a reboot with it). Any thread. */
int store_check_durable(const char *dir, char *why, size_t whylen);

MDB_env *store_env(store_t *store);
/* The LMDB name of a database ("doc", "link", ...). */
const char *store_db_name(store_db_t db);
MDB_dbi store_dbi(const store_t *store, store_db_t db);
const char *store_dir(const store_t *store);

/* Read transactions. begin adopts a map resized by the writer (MDB_MAP_RESIZED).
 * A reader may keep its txn and call store_read_reset() between uses and
 * store_read_renew() before the next; renew also adopts a resized map. */
int store_read_begin(store_t *store, MDB_txn **ret_txn);
void store_read_reset(MDB_txn *txn);
int store_read_renew(store_t *store, MDB_txn **txn);
void store_read_end(MDB_txn *txn);

/* Write transactions (writer thread only). commit maps LMDB errors to rm_err_t
 * (RM_EMAPFULL, RM_EDISKFULL, ...); on error the txn is aborted. In STORE_PERIODIC
 * mode commit never syncs (the sync thread does). Once any sync of the store has
 * failed (the sync thread's, store_sync's, or the one inside an LMDB commit that
 * returned EIO), commit aborts the txn and returns RM_ESUSPECT, forever (note 5):
 * retrying cannot help; the generation must be rebuilt. */
int store_write_begin(store_t *store, MDB_txn **ret_txn);
int store_write_commit(store_t *store, MDB_txn *txn);
void store_write_abort(MDB_txn *txn);
/* Doubles the map size. Only while no txn of this process is open; waits for a sync
 * in progress on the sync thread. */
int store_grow(store_t *store);
/* Clears reader slots left by crashed processes (they pin old pages and make the file
 * grow; docs/architecture.md §8). Returns the number cleared, or a negative rm_err_t. */
int store_reader_check(store_t *store);
/* Forces an fsync of data and meta pages now, on the caller's thread (any thread of
 * a writer); counted in the sync stats like the thread's. A failure latches (note 5):
 * its success afterwards proves nothing about the pages whose writeback failed. */
int store_sync(store_t *store);
/* The id (mdb_txn_id) of the newest write transaction that is on disk whatever the OS
 * does next: in STORE_SYNC every commit; in STORE_NOMETASYNC every commit but the newest;
 * in STORE_PERIODIC the newest committed before the last successful sync began. A writer
 * syncs once at open, so what an earlier process committed is durable from then on (if
 * that sync fails, from the next successful one). A write txn's id is known
 * before it commits (mdb_txn_id), so a record written in it can carry the id to compare
 * with this. Any thread; 0 for a reader. */
uint64_t store_durable_txnid(store_t *store);
/* Whether a thread of the store syncs it in the background (STORE_PERIODIC): otherwise
 * a commit that is not durable yet stays so until the next commit or store_sync(). */
bool store_syncs_in_background(const store_t *store);
/* The id of the newest write transaction committed (by this handle, or found at open).
 * Any thread. */
uint64_t store_last_txnid(store_t *store);
/* A copy of the sync counters (any thread). Zero for a store without syncs. */
void store_sync_stats(store_t *store, store_sync_stats_t *ret_stats);
/* Map size and bytes in use (last page * page size). */
int store_usage(store_t *store, size_t *ret_map_bytes, size_t *ret_used_bytes);
/* Where the bytes in use go, read in txn: pages of the B-trees (every database, the
 * main one included), pages on LMDB's free list (left by copy-on-write, reused by later
 * transactions, never returned to the file system), and the key and value bytes the
 * trees hold (a walk of every entry, only with count_kv). */
typedef struct store_space {
    size_t ss_tree_bytes;
    size_t ss_free_bytes;
    size_t ss_kv_bytes;
} store_space_t;
int store_space(store_t *store, MDB_txn *txn, bool count_kv, store_space_t *ret_space);

/* Builds a doc key "view_key \0 section \0 item" into out (cap >= 512).
 * Returns the length, or 0 if it would not fit. section may be "" (marks key). */
size_t store_doc_key(char *out, size_t cap, const char *view_key, size_t view_key_len,
                     const char *section, const char *item, size_t item_len);

/* Whether the doc db holds anything under view_key (a fragment, a mark, a version):
 * 0 with *ret_found, or an rm_err_t. view_key_len 1..511, no NUL inside (the caller's
 * check). */
int store_doc_exists(store_t *store, MDB_txn *txn, const char *view_key, size_t view_key_len,
                     bool *ret_found);

/* Offsets of (topic, partition). get returns RM_ENOTFOUND when none is stored. */
int store_offset_get(store_t *store, MDB_txn *txn, const char *topic, int32_t partition,
                     store_offset_t *ret_offset);
int store_offset_put(store_t *store, MDB_txn *txn, const char *topic, int32_t partition,
                     const store_offset_t *offset);
/* Calls cb for every stored (topic, partition) in key order; a non-zero return
 * from cb stops the walk and is returned. */
typedef int (*store_offset_cb)(void *ctx, const char *topic, int32_t partition,
                               const store_offset_t *offset);
int store_offset_foreach(store_t *store, MDB_txn *txn, store_offset_cb cb, void *ctx);

/* meta: small named values. get returns a borrowed pointer (valid until txn ends). */
int store_meta_get(store_t *store, MDB_txn *txn, const char *name, const void **ret_data,
                   size_t *ret_len);
int store_meta_put(store_t *store, MDB_txn *txn, const char *name, const void *data, size_t len);
int store_meta_get_i64(store_t *store, MDB_txn *txn, const char *name, int64_t *ret_value);
/* Calls cb for every meta entry whose name starts with prefix (e.g. "gap/": the gaps the
 * projector recorded, value a JSON object). Values are borrowed until the txn ends. A
 * non-zero return of cb stops the walk and is returned. */
typedef int (*store_meta_cb)(void *ctx, const char *name, size_t name_len, const void *value,
                             size_t value_len);
int store_meta_foreach(store_t *store, MDB_txn *txn, const char *prefix, store_meta_cb cb,
                       void *ctx);
int store_meta_put_i64(store_t *store, MDB_txn *txn, const char *name, int64_t value);

/* Big-endian helpers for keys. */
static inline void store_be32(unsigned char *out, uint32_t v)
{
    out[0] = (unsigned char)(v >> 24);
    out[1] = (unsigned char)(v >> 16);
    out[2] = (unsigned char)(v >> 8);
    out[3] = (unsigned char)v;
}
static inline void store_be64(unsigned char *out, uint64_t v)
{
    store_be32(out, (uint32_t)(v >> 32));
    store_be32(out + 4, (uint32_t)v);
}
static inline uint32_t store_get_be32(const unsigned char *in)
{
    return (uint32_t)in[0] << 24 | (uint32_t)in[1] << 16 | (uint32_t)in[2] << 8 | in[3];
}
static inline uint64_t store_get_be64(const unsigned char *in)
{
    return (uint64_t)store_get_be32(in) << 32 | store_get_be32(in + 4);
}

#endif
