/*
 * util/clock.c - the monotonic clock every module measures intervals with.
 *
 * Public: util_mono_now.
 * Errors: none (CLOCK_MONOTONIC is always there on Linux).
 * Threads: stateless, thread-safe.
 */
#include "util/clock.h"

#include <time.h>

/* Seconds on CLOCK_MONOTONIC. */
double util_mono_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
