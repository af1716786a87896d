/*
 * server/pool_sys.h - clock, condition-variable, thread and result helpers
 * shared by the pool's files (server/pool*.c) and server/connpool.c
 * (internal to server/).
 *
 * Threads: every function is thread-safe and keeps no state.
 */
#ifndef MAILPOOL_POOL_SYS_H
#define MAILPOOL_POOL_SYS_H

#include <pthread.h>
#include <time.h>
#include <smtpcore/smtp.h>
#include "config/config.h"

/* Seconds on CLOCK_MONOTONIC. */
double pool_mono_now(void);
/* The absolute CLOCK_MONOTONIC time t (seconds) for pthread_cond_timedwait. */
struct timespec pool_abstime(double t);
/* Initialises a condition variable that times out on CLOCK_MONOTONIC. */
int pool_cond_init(pthread_cond_t *cv);
/* Starts a thread with every asynchronous signal blocked (SIGPIPE, SIGTERM,
   SIGINT ... stay with the threads that want them); 0 or an errno value. */
int pool_thread_start(pthread_t *t, void *(*fn)(void *), void *arg);
/* Replaces res by a local failure (kind SMTP_ERR_LOCAL, code 0) carrying
   message and status. */
void pool_result_local(struct smtp_result *res, enum smtp_delivery status,
                       const char *message);
/* relay.tls (parsed by config/) as smtpcore's mode; also used by the
   mailpool send command. */
enum smtp_tls_mode pool_smtp_tls(enum cfg_tls mode);

#endif /* MAILPOOL_POOL_SYS_H */
