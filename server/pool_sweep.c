/*
 * server/pool_sweep.c - the pool's sweeper thread: a synchronous send
 * still queued at its deadline (job->deadline, http.send_deadline) is
 * answered then, not sent and marked expired, instead of when a worker
 * frees up (server/pool_internal.h).
 *
 * Internal (to the pool's files): pool_sweeper_start, pool_stop_sweeper.
 *
 * Threads: one sweeper thread per pool, started by pool_new and stopped
 * by pool_drain (or pool_new's error path) on the owner thread.  It reads
 * the queue every POOL_SWEEP_S seconds holding pool->mu (which guards the
 * queue, the counts and the stopping flag), unlinks the late jobs under
 * it, and finishes them (log line, job->done) with no lock held.
 * pool->sweeper and pool->sweeping belong to the owner thread.
 */
#include <stddef.h>
#include <time.h>

#include "server/pool_internal.h"
#include "server/pool_sys.h"

#define POOL_SWEEP_S 0.1 /* how often queued deadlines are read */

/* Unlinks the queued jobs whose deadline has passed; the list of them.
   Caller holds pool->mu. */
static struct job *pool_take_expired_locked(struct pool *pool, double now)
{
    struct job *out = NULL, **link = &pool->head, *prev = NULL;
    while (*link != NULL) {
        struct job *job = *link;
        if (job->deadline <= 0 || now <= job->deadline) {
            prev = job;
            link = &job->next_;
            continue;
        }
        *link = job->next_;
        if (pool->tail == job)
            pool->tail = prev;
        pool->queued--;
        job->next_ = out;
        out = job;
    }
    return out;
}

/* The sweeper: a synchronous send still queued at its deadline is
   answered then (not sent, expired), not when a worker frees up. */
static void *pool_sweeper(void *arg)
{
    struct pool *pool = arg;

    pthread_mutex_lock(&pool->mu);
    while (!pool->stopping) {
        struct job *left = pool_take_expired_locked(pool, pool_mono_now());
        if (left == NULL) {
            struct timespec ts = pool_abstime(pool_mono_now() + POOL_SWEEP_S);
            pthread_cond_timedwait(&pool->stop_cv, &pool->mu, &ts);
            continue;
        }
        pthread_mutex_unlock(&pool->mu);
        while (left != NULL) { /* never attempted */
            struct job *job = left;
            left = job->next_;
            job->next_ = NULL;
            job->expired = 1;
            pool_result_local(&job->result, SMTP_DELIVERY_FAILED,
                              POOL_DEADLINE_MSG);
            pool_finish(job);
        }
        pthread_mutex_lock(&pool->mu);
        if (pool->queued == 0 && pool->busy == 0)
            pthread_cond_broadcast(&pool->drain_cv);
    }
    pthread_mutex_unlock(&pool->mu);
    return NULL;
}

/* Starts the sweeper thread; 0 or an errno value. */
int pool_sweeper_start(struct pool *pool)
{
    int rc = pool_thread_start(&pool->sweeper, pool_sweeper, pool);

    if (rc == 0)
        pool->sweeping = 1;
    return rc;
}

/* Stops and joins the sweeper, if it runs. */
void pool_stop_sweeper(struct pool *pool)
{
    if (!pool->sweeping)
        return;
    pthread_mutex_lock(&pool->mu);
    pool->stopping = 1;
    pthread_cond_broadcast(&pool->stop_cv);
    pthread_mutex_unlock(&pool->mu);
    pthread_join(pool->sweeper, NULL);
    pool->sweeping = 0;
}
