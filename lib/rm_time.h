/* rm_time: the two clocks every module reads, in one place.
 * Monotonic for intervals and deadlines, wall (realtime) for event and commit times. */
#ifndef RM_TIME_H
#define RM_TIME_H

#include <stdint.h>
#include <time.h>

static inline int64_t rm_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t rm_mono_ms(void)
{
    return rm_mono_ns() / 1000000;
}

static inline int64_t rm_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleeps ms milliseconds (restarting after signals is not needed by any caller). */
static inline void rm_sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

#endif
