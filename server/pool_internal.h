/*
 * server/pool_internal.h - what the worker pool's files share (internal
 * to server/; the public interface is server/pool.h).
 *
 * pool.c: the pool's life (new, drain, free), the bounded queue, the
 * workers, the gauges.  pool_run.c: one job from its taking to its done
 * callback (checks, signing, attempts, retries, the rate limit, the log
 * line).  pool_chain.c: chains of sends on one reused connection.
 * pool_sweep.c: the sweeper thread that answers queued jobs past their
 * deadline.
 *
 * Locks: struct pool's fields marked "guarded by pool->mu" are read and
 * written only with pool->mu held, in every one of these files.  Lock
 * order: pool->mu, then the connection pool's cp->mu (only pool_stats
 * takes both).  No lock is held across SMTP I/O, sleeps (the condvar waits
 * release it), log writes or job->done.  A function whose name ends in
 * _locked is called with pool->mu held.
 */
#ifndef MAILPOOL_POOL_INTERNAL_H
#define MAILPOOL_POOL_INTERNAL_H

#include <pthread.h>
#include <stddef.h>

#include "server/connpool.h"
#include "server/pool.h"
#include "server/retry.h"

#define POOL_SHUTDOWN_MSG "mailpool is shutting down; not sent"
#define POOL_CHAIN_MAX 16 /* sends on one connection in one chain */
#define POOL_DEADLINE_MSG \
    "not started before its deadline " \
    "(http.send_deadline): not sent"

struct pool {
    const struct cfg *cfg; /* borrowed, read-only */
    struct pool_conns *conns;
    pthread_t *threads; /* owner thread only */
    size_t nthreads;    /* started; owner thread only */
    size_t cap;         /* cfg->pool.queue */
    size_t nworkers;    /* cfg->pool.workers */
    double rate;        /* messages per second; 0: off */

    pthread_mutex_t mu;
    pthread_cond_t work_cv;      /* a job was queued, or stopping */
    pthread_cond_t drain_cv;     /* nothing queued and nothing running */
    pthread_cond_t stop_cv;      /* stopping: cuts sleeps short */
    struct job *head;            /* guarded by pool->mu */
    struct job *tail;            /* guarded by pool->mu */
    size_t queued;               /* guarded by pool->mu */
    size_t busy;                 /* guarded by pool->mu */
    int draining;                /* guarded by pool->mu: no new jobs */
    int stopping;                /* guarded by pool->mu: drain deadline
                                       passed, workers exit */
    int drained;                 /* guarded by pool->mu */
    double rate_next;            /* guarded by pool->mu: next free slot */
    pthread_t sweeper;           /* finishes jobs past their deadline */
    int sweeping;                /* the sweeper runs; owner thread only */
    unsigned long long retries;  /* guarded by pool->mu */
    const struct sign_set *sign; /* set before the first submit; read
                                       only afterwards */
};

/* The retry state of one job across its attempts. */
struct pool_try {
    int free_left;   /* stale-connection replacements left */
    int open_failed; /* the last attempt could not connect */
};

/* A send of a chain and what smtp_conn_send_mails needs for it. */
struct pool_link {
    struct job *job;
    struct pool_verdict v; /* of the job's first attempt */
    int started;           /* smtp_conn_send_mails handled it */
    int pending;           /* v asks for more attempts */
};

/* A worker's chain: its own job (link 0), then the jobs it took from the
   queue.  Owned by the worker; no lock. */
struct pool_chain {
    struct pool *pool;
    struct pool_link link[POOL_CHAIN_MAX];
    size_t n;
    int used;                 /* tried once (only the first attempt) */
    int reused;               /* link 0's connection was reused */
    enum pool_conn_fate fate; /* DROP when any verdict said so */
};

/* ---- pool.c ---- */

/* Takes the first waiting job (pool->head not NULL) and notes how long it
   waited.  Caller holds pool->mu. */
struct job *pool_dequeue_locked(struct pool *pool);

/* ---- pool_run.c ---- */

/* Runs one job to its end and calls its done callback, then the rest of
   the jobs that went in its chain.  No lock held. */
void pool_run_job(struct pool *pool, struct job *job);
/* Attempts the job until its outcome is final (server/retry.h); with ch,
   its first connection may carry a chain.  No lock held. */
void pool_attempts(struct pool *pool, struct job *job, struct pool_chain *ch,
                   struct pool_try *tr);
/* After an attempt judged v: 1 to attempt again (after the backoff, or at
   once for a stale pooled connection), 0 when the outcome is final.  Takes
   pool->mu for the counter; sleeps without it. */
int pool_again(struct pool *pool, struct job *job, struct pool_verdict v,
               struct pool_try *tr);
/* The last fields of a job whose attempts are over. */
void pool_settle(struct job *job, const struct pool_try *tr);
/* Sets the final fields, logs, and hands the job back through job->done.
   No lock held. */
void pool_finish(struct job *job);
/* NULL when the job is well-formed, taken before its deadline and, a
   send, signed (when the configuration says so); else why not, in why or
   a constant.  No lock held. */
const char *pool_job_ready(struct pool *pool, struct job *job, char *why,
                           size_t whylen);
/* Calls the job's started callback, if any: NULL, or why the job must not
   be sent. */
const char *pool_job_started(struct job *job);
/* Why a job whose started mark failed is not sent. */
const char *pool_job_started_why(void);
/* 1 once the drain deadline has passed (takes pool->mu). */
int pool_stopping(struct pool *pool);

/* ---- pool_chain.c ---- */

/* Makes job the head of a chain on pc with sends taken from the queue
   (once per chain); the chain's length, below 2 no chain. */
size_t pool_chain_fill(struct pool *pool, struct pool_chain *ch,
                       struct job *job, struct pool_conn *pc, int reused);
/* Sends the chain over conn; link 0's verdict with the chain's fate. */
struct pool_verdict pool_chain_run(struct pool_chain *ch,
                                   struct smtp_conn *conn, int reused);
/* The further attempts and the end of a chain's taken jobs. */
void pool_chain_rest(struct pool *pool, struct pool_chain *ch);

/* ---- pool_sweep.c ---- */

/* Starts the sweeper thread; 0 or an errno value.  Owner thread. */
int pool_sweeper_start(struct pool *pool);
/* Stops and joins the sweeper, if it runs.  Owner thread, no lock held. */
void pool_stop_sweeper(struct pool *pool);

#endif /* MAILPOOL_POOL_INTERNAL_H */
