/* failpoint: SIGKILL at a named point for crash tests, and skipped applications
 * (see failpoint.h). */
#include "failpoint.h"
#include "rm_err.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
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

/* RM_FAILPOINT_ERROR: read at every pass (points that inject errors are passed about
 * once a second), so a test can arm, change or disarm it between cases; a changed
 * spec restarts the pass count. */
static pthread_mutex_t error_lock = PTHREAD_MUTEX_INITIALIZER;
static char error_spec[128];
static char error_name[64];
static long error_first, error_count, error_passes;

static void error_arm(const char *spec)
{
    snprintf(error_spec, sizeof(error_spec), "%s", spec);
    error_count = error_passes = 0;
    const char *colon = strchr(spec, ':');
    if (!colon || (size_t)(colon - spec) >= sizeof(error_name))
        return;
    char *end;
    long first = strtol(colon + 1, &end, 10);
    long count = *end == ':' ? strtol(end + 1, NULL, 10) : 1;
    if (first <= 0 || count <= 0)
        return;
    memcpy(error_name, spec, (size_t)(colon - spec));
    error_name[colon - spec] = '\0';
    error_first = first;
    error_count = count;
}

int failpoint_errno(const char *name)
{
    const char *spec = getenv("RM_FAILPOINT_ERROR");
    if (__builtin_expect(!spec || !*spec, 1))
        return 0;
    pthread_mutex_lock(&error_lock);
    if (strcmp(spec, error_spec) != 0)
        error_arm(spec);
    long pass = 0;
    if (error_count && strcmp(name, error_name) == 0)
        pass = ++error_passes;
    pthread_mutex_unlock(&error_lock);
    if (pass < error_first || pass >= error_first + error_count)
        return 0;
    fprintf(stderr, "failpoint %s: EIO (pass %ld)\n", name, pass);
    return EIO;
}

typedef struct failpoint_skip {
    char *fs_topic;
    int32_t fs_partition;
    int64_t fs_offset;
} failpoint_skip_t;

struct failpoint_skips {
    failpoint_skip_t *fss_items;
    size_t fss_count;
};

void failpoint_skips_destroy(failpoint_skips_t *skips)
{
    if (!skips)
        return;
    for (size_t i = 0; i < skips->fss_count; i++)
        free(skips->fss_items[i].fs_topic);
    free(skips->fss_items);
    free(skips);
}

/* One "topic:partition:offset" of len bytes (the topic may not contain ':'). */
static int parse_skip(const char *entry, size_t len, failpoint_skip_t *ret_skip)
{
    char text[320];
    if (len == 0 || len >= sizeof(text))
        return RM_EINVAL;
    memcpy(text, entry, len);
    text[len] = '\0';
    char *second = strrchr(text, ':');
    if (!second || second == text)
        return RM_EINVAL;
    *second = '\0';
    char *first = strrchr(text, ':');
    if (!first || first == text)
        return RM_EINVAL;
    *first = '\0';
    char *end;
    errno = 0;
    long partition = strtol(first + 1, &end, 10);
    if (errno || *end || end == first + 1 || partition < 0 || partition > INT32_MAX)
        return RM_EINVAL;
    long long offset = strtoll(second + 1, &end, 10);
    if (errno || *end || end == second + 1 || offset < 0)
        return RM_EINVAL;
    if (!(ret_skip->fs_topic = strdup(text)))
        return RM_ENOMEM;
    ret_skip->fs_partition = (int32_t)partition;
    ret_skip->fs_offset = offset;
    return 0;
}

int failpoint_skips_parse(const char *spec, failpoint_skips_t **ret_skips, char *errstr,
                          size_t errlen)
{
    if (!spec || !*spec) {
        *ret_skips = NULL;
        return 0;
    }
    failpoint_skips_t *skips = calloc(1, sizeof(*skips));
    if (!skips || !(skips->fss_items = calloc(FAILPOINT_SKIP_MAX, sizeof(failpoint_skip_t)))) {
        free(skips);
        snprintf(errstr, errlen, "out of memory");
        return RM_ENOMEM;
    }
    for (const char *p = spec;;) {
        size_t len = strcspn(p, ","); /* 0 for an empty entry: rejected below */
        int rc = skips->fss_count == FAILPOINT_SKIP_MAX
                     ? RM_EINVAL
                     : parse_skip(p, len, &skips->fss_items[skips->fss_count]);
        if (rc) {
            snprintf(errstr, errlen,
                     "%s: '%.*s': expected topic:partition:offset[,...] (at most %d)",
                     FAILPOINT_SKIP_ENV, (int)(len > 200 ? 200 : len), p, FAILPOINT_SKIP_MAX);
            failpoint_skips_destroy(skips);
            return rc;
        }
        skips->fss_count++;
        p += len;
        if (!*p)
            break;
        p++; /* the comma: an entry must follow */
    }
    *ret_skips = skips;
    return 0;
}

bool failpoint_skips_has(const failpoint_skips_t *skips, const char *topic, int32_t partition,
                         int64_t offset)
{
    for (size_t i = 0; skips && i < skips->fss_count; i++) {
        const failpoint_skip_t *s = &skips->fss_items[i];
        if (s->fs_offset == offset && s->fs_partition == partition &&
            strcmp(s->fs_topic, topic) == 0)
            return true;
    }
    return false;
}

size_t failpoint_skips_count(const failpoint_skips_t *skips)
{
    return skips ? skips->fss_count : 0;
}
