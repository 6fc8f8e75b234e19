/* failpoint: named places where a crash test can kill the process at a chosen moment.
 *
 * RM_FAILPOINT="NAME:N" makes the N-th pass through failpoint NAME raise SIGKILL (no
 * handler, no flush, no atexit: what a power cut or the OOM killer does to us). Unset,
 * each point costs one predictable branch on a cached flag. The names in use:
 *   apply-event      after an event was applied inside the write transaction (mid-batch)
 *   batch-commit     after the LMDB commit, before anything else learns of it
 *   outbox-produced  after dead letters were acknowledged by Kafka, before their delete
 * Thread-safe enough for its use: points are passed on the consumer thread only.
 *
 * Injected errors: RM_FAILPOINT_ERROR="NAME:N[:COUNT]" makes passes N to N+COUNT-1
 * (COUNT defaults to 1) through failpoint_errno(NAME) return EIO, so a test can
 * see what the code does with an I/O error it cannot provoke otherwise. The names:
 *   store-sync       the store's fsync (store.c), on its sync thread, store_sync() or
 *                    store_close()
 *   store-commit     mdb_txn_commit in store_write_commit, as if the fsync of a sync or
 *                    nometasync commit failed (the txn is aborted, EIO returned)
 *   assign           the pipeline's partition assignment (pipeline_assign.c): at start, when
 *                    partitions are added, after a gap, at a generation switch
 * failpoint_errno may be called from any thread; it reads the variable at every pass
 * (a test may change it between cases, which restarts the count). */
#ifndef RM_FAILPOINT_H
#define RM_FAILPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

extern int failpoint_state; /* -1 not read yet, 0 off, 1 armed */

void failpoint_pass(const char *name);

static inline void failpoint(const char *name)
{
    if (__builtin_expect(failpoint_state != 0, 0))
        failpoint_pass(name);
}

/* 0, or the errno to act on instead of doing the I/O at point name (see above). Unset,
 * the cost is one getenv: keep such points off per-event paths. */
int failpoint_errno(const char *name);

/* Skipped applications: a test hook for reconcile's diff-replay, which must find
 * "lost applications". RM_TEST_SKIP_APPLY="topic:partition:offset[,...]" makes the
 * pipeline consume those offsets WITHOUT applying them — exactly what a projector bug
 * that drops an event would do (the offset advances, the view does not change). The
 * pipeline reads the variable once in pipeline_new (never for a scratch pipeline), so
 * when it is unset the cost is one NULL test per event. Never set it in production. */
#define FAILPOINT_SKIP_ENV "RM_TEST_SKIP_APPLY"
#define FAILPOINT_SKIP_MAX 1024 /* offsets in one spec: a test names a handful */

typedef struct failpoint_skips failpoint_skips_t;

/* Parses spec (NULL or "" gives *ret_skips = NULL: nothing to skip). Returns 0, or
 * RM_EINVAL with the offending entry in errstr, or RM_ENOMEM. The caller owns
 * *ret_skips (failpoint_skips_destroy). */
int failpoint_skips_parse(const char *spec, failpoint_skips_t **ret_skips, char *errstr,
                          size_t errlen);
void failpoint_skips_destroy(failpoint_skips_t *skips);
/* Whether (topic, partition, offset) is listed. skips may be NULL (false). */
bool failpoint_skips_has(const failpoint_skips_t *skips, const char *topic, int32_t partition,
                         int64_t offset);
/* Number of listed offsets (0 for NULL). */
size_t failpoint_skips_count(const failpoint_skips_t *skips);

#endif
