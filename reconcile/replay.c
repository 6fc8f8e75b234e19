/* PLACEHOLDER until the diff-replay branch is merged; never committed. */
#include "replay.h"
#include "rm_err.h"
#include <stdio.h>
int replay_run(const replay_opts_t *opts, char *errstr, size_t errlen)
{
    (void)opts;
    snprintf(errstr, errlen, "diff-replay is not built yet");
    return RM_EINVAL;
}
