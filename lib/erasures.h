/* erasures: the erasure ledger of a view — every erased view key, kept outside the
 * store generations so that no rebuild, rollback, replay or backfill forgets one.
 *
 * Why a ledger: a store generation records its erasures in its own `erased` db, but the
 * event that caused one may not be in the log any more when the next generation is
 * built (on a compacted topic a tombstone goes after delete.retention.ms). The ledger,
 * <view_dir>/erasures.log, is shared by every generation of the view: the engine
 * appends the keys a transaction erases (and fsyncs them) before the transaction
 * commits, and applies the records a generation has not seen at the start of its next
 * transaction (engine.h, engine_opts_t.eo_erasures).
 *
 * Format: a sequence of records, each 'E' | u16 key_len (LE) | key | i64 erased_at_ms
 * (LE) | u32 FNV-1a of the bytes before it. Appends only; a torn last record (a crash in
 * the middle of an append) is ignored by readers and cut off by the next writer.
 * Duplicates are harmless: an erasure is final and idempotent.
 *
 * Threads: an erasures_t is used by one thread at a time. Several processes (the
 * daemon and a rebuild) may append to one ledger: appends hold an exclusive flock. */
#ifndef RM_ERASURES_H
#define RM_ERASURES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ERASURES_FILE "erasures.log"
/* Bytes of one record of a key of key_len bytes (the format above). */
#define ERASURES_RECORD_BYTES(key_len) ((size_t)(1 + 2 + 8 + 4) + (size_t)(key_len))

typedef struct erasures erasures_t;

/* Opens <view_dir>/erasures.log, creating it (and fsyncing view_dir) unless readonly.
 * readonly: a missing file reads as an empty ledger, and erasures_append fails with
 * RM_EINVAL. Returns NULL with errstr filled on failure. */
erasures_t *erasures_open(const char *view_dir, bool readonly, char *errstr, size_t errlen);
void erasures_close(erasures_t *erasures);

/* Whether erasures was opened read-only (appends are refused). */
bool erasures_readonly(const erasures_t *erasures);

/* Appends one record per key and makes them durable (fdatasync) before returning.
 * keys[i] has lens[i] bytes (1..65535, no NUL needed). Returns 0, RM_EINVAL, RM_EIO. */
int erasures_append(erasures_t *erasures, const char *const *keys, const size_t *lens,
                    const int64_t *erased_at_ms, size_t count);

/* The byte offset just past the last complete record (what erasures_scan reaches). */
int erasures_end(erasures_t *erasures, int64_t *ret_end);

typedef int (*erasures_cb)(void *ctx, const char *key, size_t key_len, int64_t erased_at_ms);

/* Calls cb for every complete record at or after byte offset from (an offset returned
 * by erasures_end or erasures_scan; 0 = the start), stopping at the first non-zero
 * return of cb, which it returns. ret_end gets the offset after the last record
 * passed to cb. Returns 0, RM_EIO, or cb's code. */
int erasures_scan(erasures_t *erasures, int64_t from, erasures_cb cb, void *ctx, int64_t *ret_end);

#endif
