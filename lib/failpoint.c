/* failpoint: SIGKILL at a named point for crash tests (see failpoint.h). */
#include "failpoint.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int failpoint_state = -1;
static char armed_name[64];
static long armed_count;

void failpoint_pass(const char *name)
{
    if (failpoint_state < 0) {
        const char *spec = getenv("RM_FAILPOINT");
        const char *colon = spec ? strrchr(spec, ':') : NULL;
        failpoint_state = 0;
        if (colon && (size_t)(colon - spec) < sizeof(armed_name)) {
            memcpy(armed_name, spec, (size_t)(colon - spec));
            armed_name[colon - spec] = '\0';
            armed_count = strtol(colon + 1, NULL, 10);
            failpoint_state = armed_count > 0;
        }
        if (!failpoint_state)
            return;
    }
    if (strcmp(name, armed_name) == 0 && --armed_count == 0) {
        fprintf(stderr, "failpoint %s: SIGKILL\n", name);
        raise(SIGKILL);
    }
}
