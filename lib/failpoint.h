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

extern int failpoint_state; /* -1 not read yet, 0 off, 1 armed */

void failpoint_pass(const char *name);

static inline void failpoint(const char *name)
{
    if (__builtin_expect(failpoint_state != 0, 0))
        failpoint_pass(name);
}

#endif
