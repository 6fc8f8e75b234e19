/* gen: store generations — the layout of a view directory and its atomic switch.
 *
 * A view directory <data_dir>/<view>/ holds generations and two symlinks:
 *   gen-000001/  gen-000002/ ...   each one LMDB environment (store.h) + writer.lock
 *                                  + "created" (creation time, ms since the epoch)
 *   current  -> gen-00000N         the generation every program serves and writes
 *   previous -> gen-00000M         the one current replaced (the default rollback)
 *   gen.lock                       flock held while the layout changes
 *
 * Notes on the design:
 * (1) A switch is one rename(2) of a freshly made symlink "current.tmp" over
 *     "current", followed by an fsync of the directory: a reader resolving "current"
 *     sees the old or the new generation, never a missing link, and the switch
 *     survives an OS crash once gen_switch returns.
 * (2) Every layout change (prepare, create, switch, prune) holds gen.lock, so two
 *     processes cannot both create gen-000004 or prune what the other switches to.
 * (3) A generation whose writer.lock is held (the live projector, or a rebuild still
 *     writing it) is never pruned, whatever its age.
 * (4) The flat layout that predates generations (data.mdb directly in the view
 *     directory) is still resolved by gen_current_dir, so readers keep working until
 *     the writer migrates it (gen_prepare) — which needs the flat store's writer lock.
 * (5) A generation whose store may have lost writes (store_check_durable: a failed
 *     fsync, or an OS crash while a periodic writer had unsynced writes) is never made
 *     current, neither by a rebuild's switch nor by a rollback.
 *
 * Threads: every function may be called from any thread; none keeps state between
 * calls. Functions return 0 or a negative rm_err_t (rm_err.h). */
#ifndef RM_GEN_H
#define RM_GEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GEN_ID_MAX 999999 /* six digits in the directory name */
#define GEN_DIR_MAX 4096

/* One topic of a generation's offsets db, summed over its partitions. */
typedef struct gen_topic {
    char gt_topic[256];
    int32_t gt_partitions;
    int64_t gt_next_offset_sum; /* events consumed from the topic (from offset 0) */
    int64_t gt_lag_sum;         /* high watermark minus next offset, at the last commit */
    int64_t gt_updated_ms;      /* newest commit touching the topic */
} gen_topic_t;

/* What gen_list reports about one generation (plain data). */
typedef struct gen_info {
    int64_t gi_id;
    char gi_path[GEN_DIR_MAX];
    bool gi_current;
    bool gi_previous;
    bool gi_writer_active;   /* its writer.lock is held (live projector or rebuild) */
    int64_t gi_created_ms;
    int64_t gi_size_bytes;   /* allocated on disk (st_blocks) of every file in it */
    gen_topic_t *gi_topics;  /* owned by the list; NULL unless offsets were asked for */
    size_t gi_topic_count;
    char gi_error[256];      /* why the offsets could not be read, or "" */
} gen_info_t;

/* Resolves the directory of view_dir's current store into out: "<view_dir>/gen-N"
 * when the "current" link exists, view_dir itself for a flat (not yet migrated)
 * store. Returns RM_ENOTFOUND when there is neither, RM_EINVAL when out is too small.
 * ret_id (may be NULL) gets the generation number, 0 for a flat store. */
int gen_current(const char *view_dir, int64_t *ret_id, char *out, size_t outlen);
/* The same without the number: what every program that opens a store calls. */
int gen_current_dir(const char *view_dir, char *out, size_t outlen);

/* The directory name of generation id ("gen-000042") into out (>= 16 bytes). */
void gen_dir_name(int64_t id, char *out, size_t outlen);

/* Writer start-up (the projector, before it opens the current store): makes sure
 * view_dir has a "current" link. A flat store is moved into gen-000001 (data.mdb and
 * lock.mdb renamed, so readers that have it open keep their map and reader table);
 * an empty view gets an empty gen-000001; a layout a crash left without "current"
 * gets it pointed at its newest generation. Returns RM_EBUSY when the flat store's
 * writer lock is held (another projector still writes it). ret_migrated (may be
 * NULL) is set to true when a flat store was moved. */
int gen_prepare(const char *view_dir, bool *ret_migrated);

/* Creates the next generation directory (highest existing id + 1) with its
 * "created" file. The caller opens a store in it; it is not current until
 * gen_switch. Returns RM_EEXISTS when GEN_ID_MAX is reached. */
int gen_create(const char *view_dir, int64_t *ret_id, char *ret_dir, size_t dirlen);

/* Makes generation id current (note 1); the generation it replaces becomes
 * "previous". Switching to the current one is a no-op. Returns RM_ENOTFOUND when
 * gen-id has no data.mdb (never switch readers to an empty directory), RM_ESUSPECT
 * when its store may have lost writes (note 5). */
int gen_switch(const char *view_dir, int64_t id);

/* The generation "previous" points at. RM_ENOTFOUND when there is none. */
int gen_previous(const char *view_dir, int64_t *ret_id);

/* Deletes generations beyond keep (>= 1): current always stays, then "previous",
 * then the newest others, until keep are left; generations with an active writer
 * are never deleted (note 3). ret_removed (may be NULL) counts the deleted ones. */
int gen_prune(const char *view_dir, int keep, size_t *ret_removed);

/* Lists the generations in id order into a new array (free with gen_list_free).
 * with_offsets opens each one read-only to summarise its offsets db: never ask for
 * that in a process that has one of them open (LMDB: one open per process).
 * An empty or missing view_dir gives 0 entries. */
int gen_list(const char *view_dir, bool with_offsets, gen_info_t **ret_gens, size_t *ret_count);
void gen_list_free(gen_info_t *gens, size_t count);

/* Takes an exclusive, non-blocking flock on <view_dir>/<name> (e.g. "rebuild.lock")
 * and returns its fd in ret_fd (close it to release). RM_EBUSY when held. */
int gen_lock_file(const char *view_dir, const char *name, int *ret_fd);

#endif
