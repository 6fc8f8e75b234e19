/* failpoint: named places where a crash test can kill the process at a chosen moment.
 *
 * RM_FAILPOINT="NAME:N" makes the N-th pass through failpoint NAME raise SIGKILL (no
 * handler, no flush, no atexit: what a power cut or the OOM killer does to us). Unset,
 * each point costs one predictable branch on a cached flag. The names in use:
 *   apply-event      after an event was applied inside the write transaction (mid-batch)
 *   batch-commit     after the LMDB commit, before anything else learns of it
 *   outbox-produced  after dead letters were acknowledged by Kafka, before their delete
 * Thread-safe enough for its use: points are passed on the consumer thread only. */
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

/* Skipped applications: a test hook for reconcile's diff-replay, which must find
 * "lost applications". RM_TEST_SKIP_APPLY="topic:partition:offset[,...]" makes the
 * pipeline consume those offsets WITHOUT applying them — exactly what a projector bug
 * that drops an event would do (the offset advances, the view does not change). The
 * pipeline reads the variable once in pipe_new (never for a scratch pipeline), so
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
