/*
 * util/clock.h - the monotonic clock.
 */
#ifndef UTIL_CLOCK_H
#define UTIL_CLOCK_H

/* Seconds on CLOCK_MONOTONIC (an arbitrary origin; for intervals only). */
double util_mono_now(void);

#endif
