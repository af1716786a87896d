/*
 * server/pool.c - the worker pool: its life (new, drain, free), the
 * bounded job queue, the worker threads and the gauges (server/pool.h).
 *
 * Public: pool_new, pool_submit, pool_submit_all, pool_capacity,
 * pool_stats, pool_room, pool_ready, pool_drain, pool_free,
 * pool_set_signer.  Internal (server/pool_internal.h):
 * pool_dequeue_locked.  The rest of the pool: one job's attempts in
 * server/pool_run.c, chains in server/pool_chain.c, the deadline sweeper
 * in server/pool_sweep.c; the SMTP connections in server/connpool.c, the
 * retry rules (a table) in server/retry.h.
 *
 * A worker takes the oldest job and runs it to its end (pool_run_job);
 * submitting never blocks (POOL_FULL at once).  The drain stops taking
 * jobs, waits for the queue and the running jobs up to its timeout,
 * finishes what is still queued as never attempted, QUITs the pooled
 * connections and joins the threads.
 *
 * Errors: pool_new fails (NULL, err set) on bad settings or when threads
 * cannot start; a job never fails to finish: its failure is its result.
 * Threads: pool->mu guards the queue, the gauges, the rate slot and the
 * flags (struct pool in server/pool_internal.h says which field).  Lock
 * order: pool->mu, then the connection pool's cp->mu (only pool_stats
 * takes both).  No lock is held across SMTP I/O, sleeps (the condvar
 * waits release it), log writes or job->done.
 */
#include "server/pool.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/log.h"
#include "server/pool_internal.h"
#include "server/pool_sys.h"

/* Takes the first waiting job (pool->head not NULL) and notes how long it
   waited.  Caller holds pool->mu. */
struct job *pool_dequeue_locked(struct pool *pool)
{
    struct job *job = pool->head;

    pool->head = job->next_;
    if (pool->head == NULL)
        pool->tail = NULL;
    job->next_ = NULL;
    pool->queued--;
    job->wait_ms = pool_mono_now() * 1000.0 - job->submitted_;
    return job;
}

/* A worker: runs queued jobs until the pool stops. */
static void *pool_worker(void *arg)
{
    struct pool *pool = arg;

    pthread_mutex_lock(&pool->mu);
    for (;;) {
        struct job *job;

        while (pool->head == NULL && !pool->stopping)
            pthread_cond_wait(&pool->work_cv, &pool->mu);
        if (pool->head == NULL)
            break; /* stopping and nothing left */
        job = pool_dequeue_locked(pool);
        pool->busy++;
        pthread_mutex_unlock(&pool->mu);
        pool_run_job(pool, job);
        pthread_mutex_lock(&pool->mu);
        pool->busy--;
        if (pool->queued == 0 && pool->busy == 0)
            pthread_cond_broadcast(&pool->drain_cv);
    }
    pthread_mutex_unlock(&pool->mu);
    return NULL;
}

/* Checks the pool settings; -1 with err naming the key. */
static int pool_check_cfg(const struct cfg *cfg, char *err, size_t errlen)
{
    const char *key = NULL;

    if (cfg->pool.workers < 1)
        key = "pool.workers";
    else if (cfg->pool.queue < 1)
        key = "pool.queue";
    else if (cfg->pool.connections < 1)
        key = "pool.connections";
    if (key == NULL)
        return 0;
    snprintf(err, errlen, "%s: must be at least 1", key);
    return -1;
}

/* Stops and joins the workers started so far (pool_new's error path). */
static void pool_stop_workers(struct pool *pool)
{
    pthread_mutex_lock(&pool->mu);
    pool->stopping = 1;
    pthread_cond_broadcast(&pool->work_cv);
    pthread_mutex_unlock(&pool->mu);
    for (size_t i = 0; i < pool->nthreads; i++)
        pthread_join(pool->threads[i], NULL);
    pool->nthreads = 0;
    pool_stop_sweeper(pool);
}

/* Frees what pool_new built (threads already joined). */
static void pool_destroy(struct pool *pool)
{
    pool_conns_free(pool->conns);
    pthread_cond_destroy(&pool->work_cv);
    pthread_cond_destroy(&pool->drain_cv);
    pthread_cond_destroy(&pool->stop_cv);
    pthread_mutex_destroy(&pool->mu);
    free(pool->threads);
    free(pool);
}

/* Builds the pool and starts its workers; NULL with err set. */
struct pool *pool_new(const struct cfg *cfg, char *err, size_t errlen)
{
    struct pool *pool;

    if (pool_check_cfg(cfg, err, errlen) < 0)
        return NULL;
    pool = calloc(1, sizeof *pool);
    if (pool == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pool->cfg = cfg;
    pool->cap = (size_t)cfg->pool.queue;
    pool->nworkers = (size_t)cfg->pool.workers;
    pool->rate = cfg->pool.rate > 0 ? cfg->pool.rate : 0;
    pthread_mutex_init(&pool->mu, NULL);
    pool_cond_init(&pool->work_cv);
    pool_cond_init(&pool->drain_cv);
    pool_cond_init(&pool->stop_cv);
    pool->threads = calloc(pool->nworkers, sizeof *pool->threads);
    if (pool->threads == NULL) {
        snprintf(err, errlen, "out of memory");
        pool_destroy(pool);
        return NULL;
    }
    pool->conns = pool_conns_new(cfg, err, errlen);
    if (pool->conns == NULL) {
        pool_destroy(pool);
        return NULL;
    }
    for (; pool->nthreads < pool->nworkers; pool->nthreads++) {
        int rc = pool_thread_start(&pool->threads[pool->nthreads], pool_worker,
                                   pool);
        if (rc != 0) {
            snprintf(err, errlen,
                     "cannot start worker thread %zu "
                     "(error %d)",
                     pool->nthreads + 1, rc);
            pool_stop_workers(pool);
            pool_destroy(pool);
            return NULL;
        }
    }
    if (pool_sweeper_start(pool) != 0) {
        snprintf(err, errlen, "cannot start the deadline thread");
        pool_stop_workers(pool);
        pool_destroy(pool);
        return NULL;
    }
    return pool;
}

/* Appends job to the queue.  Caller holds pool->mu and checked room. */
static void pool_enqueue_locked(struct pool *pool, struct job *job,
                                double now_ms)
{
    assert(job != NULL && job->done != NULL);
    job->next_ = NULL;
    job->submitted_ = now_ms;
    job->attempts = 0;
    job->unreachable = 0;
    job->duration_ms = 0;
    job->wait_ms = 0;
    if (pool->tail != NULL)
        pool->tail->next_ = job;
    else
        pool->head = job;
    pool->tail = job;
    pool->queued++;
}

/* Queues job unless the queue is full or the pool drains; never blocks. */
int pool_submit(struct pool *pool, struct job *job)
{
    return pool_submit_all(pool, &job, 1);
}

/* Queues all of jobs[0..n) or none; never blocks. */
int pool_submit_all(struct pool *pool, struct job *const *jobs, size_t n)
{
    int rc = POOL_OK;
    double now_ms = pool_mono_now() * 1000.0;

    pthread_mutex_lock(&pool->mu);
    if (pool->draining) {
        rc = POOL_DRAINING;
    } else if (n > pool->cap - pool->queued) { /* queued <= cap */
        rc = POOL_FULL;
    } else {
        for (size_t i = 0; i < n; i++)
            pool_enqueue_locked(pool, jobs[i], now_ms);
        if (n > 1)
            pthread_cond_broadcast(&pool->work_cv);
        else if (n == 1)
            pthread_cond_signal(&pool->work_cv);
    }
    pthread_mutex_unlock(&pool->mu);
    return rc;
}

/* The most jobs that can wait. */
size_t pool_capacity(const struct pool *pool)
{
    return pool->cap; /* fixed at pool_new */
}

/* A consistent snapshot of the gauges (pool->mu, then cp->mu). */
void pool_stats(struct pool *pool, struct pool_stats *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&pool->mu);
    out->queued = pool->queued;
    out->busy_workers = pool->busy;
    out->workers = pool->nworkers;
    out->draining = pool->draining;
    out->retries = pool->retries;
    pool_conns_stats(pool->conns, out);
    pthread_mutex_unlock(&pool->mu);
}

/* Jobs the workers can start soon (0 while draining). */
size_t pool_room(struct pool *pool)
{
    size_t room = 0;

    pthread_mutex_lock(&pool->mu);
    if (!pool->draining && pool->queued + pool->busy < 2 * pool->nworkers &&
        pool->queued < pool->cap)
        room = 2 * pool->nworkers - pool->queued - pool->busy;
    pthread_mutex_unlock(&pool->mu);
    return room;
}

/* 1 when the relay is reachable (an open connection or a fresh probe). */
int pool_ready(struct pool *pool)
{
    return pool_conns_ready(pool->conns);
}

/* Takes every queued job off the queue (stopping).  Precondition:
   pool->mu held. */
static struct job *pool_take_queue(struct pool *pool, size_t *n)
{
    struct job *list = pool->head;

    *n = pool->queued;
    pool->head = pool->tail = NULL;
    pool->queued = 0;
    return list;
}

/* Stops taking jobs, waits, fails what is left queued, closes, joins. */
void pool_drain(struct pool *pool, int timeout_s)
{
    struct job *left;
    size_t nleft, nthreads = pool->nthreads;
    double deadline = pool_mono_now() + (timeout_s > 0 ? timeout_s : 0);
    int timed_out;

    pthread_mutex_lock(&pool->mu);
    if (pool->draining) { /* drained (or draining) */
        pthread_mutex_unlock(&pool->mu);
        return;
    }
    pool->draining = 1;
    while ((pool->queued > 0 || pool->busy > 0) && pool_mono_now() < deadline) {
        struct timespec ts = pool_abstime(deadline);
        pthread_cond_timedwait(&pool->drain_cv, &pool->mu, &ts);
    }
    timed_out = pool->queued > 0 || pool->busy > 0;
    pool->stopping = 1;
    left = pool_take_queue(pool, &nleft);
    pthread_cond_broadcast(&pool->work_cv);
    pthread_cond_broadcast(&pool->stop_cv);
    pthread_mutex_unlock(&pool->mu);

    pool_conns_stop(pool->conns); /* waiters for a conn give up */
    while (left != NULL) {        /* never attempted: no dupes */
        struct job *job = left;
        left = job->next_;
        job->next_ = NULL;
        pool_result_local(&job->result,
                          job->kind == JOB_SEND ? SMTP_DELIVERY_FAILED
                                                : SMTP_DELIVERY_NONE,
                          POOL_SHUTDOWN_MSG);
        pool_finish(job);
    }
    for (size_t i = 0; i < nthreads; i++)
        pthread_join(pool->threads[i], NULL);
    pool->nthreads = 0;
    pool_stop_sweeper(pool);
    pool_conns_close_all(pool->conns); /* QUIT the idle ones */

    pthread_mutex_lock(&pool->mu);
    pool->drained = 1;
    pthread_mutex_unlock(&pool->mu);
    log_event_num(LOG_INFO, "pool_drained",
                  (struct log_field[]){ LOG_BOOL("timed_out", timed_out),
                                        LOG_NUM("failed_queued", nleft) },
                  2);
}

/* Frees the pool (draining it at once first if nobody did). */
void pool_free(struct pool *pool)
{
    int drained;

    if (pool == NULL)
        return;
    pthread_mutex_lock(&pool->mu);
    drained = pool->drained;
    pthread_mutex_unlock(&pool->mu);
    if (!drained)
        pool_drain(pool, 0);
    pool_destroy(pool);
}

/* Sets the DKIM signer; before the first submit. */
void pool_set_signer(struct pool *pool, const struct sign_set *set)
{
    pool->sign = set;
}
