/*
 * server/pool_sys.c - clock, condvar, thread and result helpers of the pool
 * (server/pool_sys.h).
 *
 * Public (to server/): pool_mono_now, pool_abstime, pool_cond_init,
 * pool_thread_start, pool_result_local, pool_smtp_tls.
 * Errors: pool_cond_init and pool_thread_start return an errno value.
 * Threads: stateless, thread-safe.
 */
#include "server/pool_sys.h"
#include "util/clock.h"

#include <signal.h>
#include <stdio.h>

/* Seconds on CLOCK_MONOTONIC. */
double pool_mono_now(void)
{
    return util_mono_now();
}

/* The absolute monotonic time t as a timespec. */
struct timespec pool_abstime(double t)
{
    struct timespec ts;

    if (t < 0)
        t = 0;
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L)
        ts.tv_nsec = 999999999L;
    if (ts.tv_nsec < 0)
        ts.tv_nsec = 0;
    return ts;
}

/* A condition variable on CLOCK_MONOTONIC. */
int pool_cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t attr;
    int rc = pthread_condattr_init(&attr);

    if (rc != 0)
        return rc;
    rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(cv, &attr);
    pthread_condattr_destroy(&attr);
    return rc;
}

/* pthread_create with asynchronous signals blocked in the new thread. */
int pool_thread_start(pthread_t *t, void *(*fn)(void *), void *arg)
{
    sigset_t all, old;
    int rc;

    sigfillset(&all);
    /* Faults must still reach the thread that caused them. */
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(t, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

/* Replaces res by a local failure with message and status. */
void pool_result_local(struct smtp_result *res, enum smtp_delivery status,
                       const char *message)
{
    smtp_result_clear(res);
    res->kind = SMTP_ERR_LOCAL;
    res->status = status;
    snprintf(res->message, sizeof res->message, "%s", message);
    snprintf(res->enhanced, sizeof res->enhanced, "4.3.0");
    smtp_result_settle(res); /* 451 4.3.0: not sent, transient */
}

enum smtp_tls_mode pool_smtp_tls(enum cfg_tls mode)
{
    switch (mode) {
    case CFG_TLS_NONE: return SMTP_TLS_NONE;
    case CFG_TLS_REQUIRED: return SMTP_TLS_REQUIRED;
    case CFG_TLS_IMPLICIT: return SMTP_TLS_IMPLICIT;
    case CFG_TLS_OPPORTUNISTIC:
    default: return SMTP_TLS_OPPORTUNISTIC;
    }
}
