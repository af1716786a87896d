/*
 * server/pool_chain.c - chains: several sends on one reused connection,
 * each final dot carrying the next envelope (server/pool_internal.h).
 *
 * Internal (to the pool's files): pool_chain_fill, pool_chain_run,
 * pool_chain_rest.
 *
 * When a send's first attempt gets a reused connection, more sends wait
 * in the queue, no rate limit is set and the pool is not draining, the
 * worker takes about its share of them (at most POOL_CHAIN_MAX - 1, within
 * messages_per_conn) and sends them all with smtp_conn_send_mails: one
 * round trip a message instead of two.  That is each taken job's first
 * attempt, judged by the same rules (on a connection already used, so
 * "reused"); a final outcome finishes the job at once, anything else goes
 * on through the usual attempts after the worker's own job is finished.
 * Once the drain deadline passes a chain starts no further message: the
 * ones not started end as never attempted, like the jobs still queued.
 * (A new connection carries one message alone first; so does a drain: the
 * deadline bounds the work to the messages on the wire.)
 *
 * Threads: a chain (struct pool_chain) belongs to the worker that formed
 * it and needs no lock.  Taking jobs off the queue holds pool->mu (which
 * guards the queue); everything else here runs without a lock, SMTP I/O
 * and job->done included.
 */
#include <string.h>

#include "server/pool_internal.h"
#include "server/pool_sys.h"

/* Takes up to max send jobs from the head of the queue (in order), no more
   than the worker's share of it; none while draining. */
static size_t pool_take_sends(struct pool *pool, struct job **out, size_t max)
{
    size_t n = 0, share;

    pthread_mutex_lock(&pool->mu);
    share = (pool->queued + pool->nworkers - 1) / pool->nworkers;
    if (max > share)
        max = share;
    while (!pool->draining && n < max && pool->head != NULL &&
           pool->head->kind == JOB_SEND) {
        out[n++] = pool_dequeue_locked(pool);
    }
    pthread_mutex_unlock(&pool->mu);
    return n;
}

/* Points link l at job. */
static void pool_link_init(struct pool_link *l, struct job *job)
{
    memset(l, 0, sizeof *l);
    l->job = job;
}

/* Finishes a taken job that must not be sent (why), never attempted. */
static void pool_chain_drop(struct job **taken, const char *why)
{
    pool_result_local(&(*taken)->result, SMTP_DELIVERY_FAILED, why);
    pool_finish(*taken);
    *taken = NULL;
}

/* Checks the taken jobs and marks them started: with one started_all
   call when they all share it, else one started call each.  Those that
   must not be sent are finished and set to NULL. */
static void pool_chain_mark(struct pool *pool, struct job **taken, size_t n)
{
    struct job *ready[POOL_CHAIN_MAX];
    int rcs[POOL_CHAIN_MAX];
    void (*fn)(struct job *const *, size_t, int *) = NULL;
    size_t k = 0;
    int all = 1;

    for (size_t i = 0; i < n; i++) {
        char buf[256];
        const char *why = pool_job_ready(pool, taken[i], buf, sizeof buf);

        if (why != NULL) {
            pool_chain_drop(&taken[i], why);
            continue;
        }
        if (k > 0 && taken[i]->started_all != fn)
            all = 0;
        fn = taken[i]->started_all;
        ready[k++] = taken[i];
    }
    all = all && fn != NULL;
    if (all && k > 0)
        fn(ready, k, rcs);
    for (size_t i = 0, j = 0; i < n; i++) {
        const char *why;

        if (taken[i] == NULL)
            continue;
        why = all ? (rcs[j++] == 0 ? NULL : pool_job_started_why())
                  : pool_job_started(taken[i]);
        if (why != NULL)
            pool_chain_drop(&taken[i], why);
    }
}

/* Makes job the head of a chain on pc with the sends taken from the queue
   (once per chain, on the first attempt only).  Taken jobs that are
   malformed are finished at once, never attempted.  Returns the chain's
   length; below 2 there is no chain. */
size_t pool_chain_fill(struct pool *pool, struct pool_chain *ch,
                       struct job *job, struct pool_conn *pc, int reused)
{
    struct job *taken[POOL_CHAIN_MAX - 1];
    size_t max = POOL_CHAIN_MAX - 1, n;
    unsigned long budget;

    if (ch->used || job->kind != JOB_SEND || pool->rate > 0 || !reused)
        return 0;
    ch->used = 1;
    budget = pool_conn_budget(pool->conns, pc);
    if (budget - 1 < max)
        max = budget - 1;
    n = max > 0 ? pool_take_sends(pool, taken, max) : 0;
    if (n == 0)
        return 0;
    pool_link_init(&ch->link[0], job);
    ch->n = 1;
    pool_chain_mark(pool, taken, n);
    for (size_t i = 0; i < n; i++)
        if (taken[i] != NULL)
            pool_link_init(&ch->link[ch->n++], taken[i]);
    return ch->n;
}

/* smtp_message_done_fn of a chain: judges message i's attempt; a taken job
   whose outcome is final is finished now.  Asks for no further message
   once the drain deadline has passed. */
static int pool_chain_done(void *ctx, size_t i, struct smtp_result *res)
{
    struct pool_chain *ch = ctx;
    struct pool_link *l = &ch->link[i];

    (void)res; /* it is l->job->result */
    l->started = 1;
    if (i > 0)
        l->job->attempts++; /* link 0's was counted by its loop */
    l->v = pool_retry_decide(&l->job->result, POOL_PHASE_RUN,
                             ch->reused || i > 0, 0);
    if (l->v.fate == POOL_CONN_DROP)
        ch->fate = POOL_CONN_DROP;
    if (i > 0 && l->v.next != POOL_NEXT_DONE) {
        l->pending = 1;
    } else if (i > 0) {
        pool_finish(l->job); /* the job is theirs now */
        l->job = NULL;
    } /* link 0: the worker's loop goes on */
    return pool_stopping(ch->pool);
}

/* Sends the chain over conn; returns link 0's verdict with the fate the
   whole chain leaves the connection in. */
struct pool_verdict pool_chain_run(struct pool_chain *ch,
                                   struct smtp_conn *conn, int reused)
{
    struct smtp_message mails[POOL_CHAIN_MAX];
    struct smtp_result *res[POOL_CHAIN_MAX];
    struct pool_verdict v;

    for (size_t i = 0; i < ch->n; i++) {
        mails[i] = *job_message(ch->link[i].job);
        res[i] = &ch->link[i].job->result;
    }
    ch->reused = reused;
    ch->fate = POOL_CONN_KEEP;
    smtp_conn_send_mails(conn, mails, ch->n, res, pool_chain_done, ch);
    v = ch->link[0].v;
    v.fate = ch->fate;
    return v;
}

/* The taken jobs of a chain whose first attempt was not final, or that
   the chain never started (the drain deadline passed): their further
   attempts (none once stopping), one job after the other, then their
   end. */
void pool_chain_rest(struct pool *pool, struct pool_chain *ch)
{
    for (size_t i = 1; i < ch->n; i++) {
        struct pool_link *l = &ch->link[i];
        struct pool_try tr = { pool->cfg->pool.connections + 1, 0 };

        if (l->started && !l->pending)
            continue;    /* finished already */
        if (!l->started) /* never attempted */
            smtp_result_clear(&l->job->result);
        if (!l->started ? !pool_stopping(pool)
                        : pool_again(pool, l->job, l->v, &tr))
            pool_attempts(pool, l->job, NULL, &tr);
        pool_settle(l->job, &tr);
        pool_finish(l->job);
    }
    ch->n = 0;
}
