/*
 * bench_clock.h - the clocks the queue benchmarks (bench_claims.c,
 * bench_writer.c) time and stamp with.  Header-only: each bench is one
 * file linked on its own.
 */
#ifndef MAILPOOL_BENCH_CLOCK_H
#define MAILPOOL_BENCH_CLOCK_H

#include <time.h>

/* Monotonic seconds. */
static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Wall-clock Unix seconds (the queue's clock). */
static inline double bench_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif /* MAILPOOL_BENCH_CLOCK_H */
