/*
 * server/pool.h - the worker pool and its pooled SMTP connections.
 *
 * pool_new starts cfg->pool.workers threads that take jobs from a bounded
 * queue (cfg->pool.queue) and run them over at most cfg->pool.connections
 * SMTP connections to the configured relay, reused from message to message.
 * Retries: temporary failures (4xx, connection lost before the final dot) are
 * retried with backoff up to cfg->pool.retries times, on a fresh connection;
 * a failure after the final dot is status "unknown" and never resent; 5xx is
 * never retried (the full table is in server/retry.h).  VRFY/EXPN/HELP jobs
 * run on the pooled connections too.  An optional cfg->pool.rate limits
 * message sends per second across the whole pool.
 *
 * Threads: every function here is thread-safe except pool_free, which must
 * be called once, after pool_drain, by the thread that made the pool.
 */
#ifndef MAILPOOL_POOL_H
#define MAILPOOL_POOL_H

#include <stddef.h>
#include "config/config.h"
#include "server/job.h"

struct pool;
struct sign_set;

enum pool_submit_err {
    POOL_OK = 0,
    POOL_FULL = -1,    /* the queue is full: try later (503) */
    POOL_DRAINING = -2 /* shutting down: no new work (503) */
};

/* Gauges for /metrics and /readyz; a consistent snapshot. */
struct pool_stats {
    size_t queued; /* jobs waiting */
    size_t busy_workers;
    size_t workers;
    size_t conns_open; /* SMTP connections open (idle + busy) */
    size_t conns_idle;
    size_t conns_busy;
    int draining;
    unsigned long long conns_opened; /* counters since start */
    unsigned long long conns_failed;
    unsigned long long retries;
};

/* Starts the workers; NULL with err set on failure.  cfg is borrowed and
   must outlive the pool. */
struct pool *pool_new(const struct cfg *cfg, char *err, size_t errlen);
/* Hands job to the pool (POOL_OK: the pool owns it until job->done). */
int pool_submit(struct pool *pool, struct job *job);
/* Hands all of jobs[0..n) to the pool, or none: POOL_OK (the pool owns
   each until its done), POOL_FULL when the queue has no room for all n,
   POOL_DRAINING.  A synchronous batch goes in whole or is refused whole,
   so no caller gets a 200 with messages that were never tried. */
int pool_submit_all(struct pool *pool, struct job *const *jobs, size_t n);
/* The most jobs that can wait (pool.queue).  Thread-safe (fixed). */
size_t pool_capacity(const struct pool *pool);
void pool_stats(struct pool *pool, struct pool_stats *out);
/* Jobs the workers can start soon: twice the workers, less what waits
   and what runs (at most what the queue can take), 0 while draining.  The
   durable queue claims no more than this, so few of its messages wait in
   memory marked sending.  Thread-safe. */
size_t pool_room(struct pool *pool);
/* 1 when a relay connection is open or a probe (connect + EHLO + QUIT)
   succeeds now; 0 otherwise.  Probes at most once per second (in between,
   and while another thread probes, the last answer is returned); a probe
   blocks the caller (each of connect, greeting, EHLO, QUIT at most 5 s)
   and uses one connection outside the pool's limit. */
int pool_ready(struct pool *pool);
/* Stops taking jobs, waits up to timeout_s for queued and in-flight jobs
   (those still queued then are finished as failed with a "shutting down"
   message, on the calling thread), QUITs the pooled connections and joins
   the workers.  Jobs already running when the deadline passes are finished
   first (bounded by the relay timeouts) but not retried any more.  A
   second call returns at once. */
void pool_drain(struct pool *pool, int timeout_s);
/* Frees the pool; drains it with timeout 0 first if nobody did.  NULL is a
   no-op. */
void pool_free(struct pool *pool);

/* DKIM: each send is signed with set (server/sign.h, borrowed; it must
   outlive the pool) when a worker takes it to be attempted.  Call before
   the first pool_submit; NULL (the default) signs nothing. */
void pool_set_signer(struct pool *pool, const struct sign_set *set);

#endif /* MAILPOOL_POOL_H */
