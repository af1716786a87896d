/*
 * server/pool.c - the worker pool: a bounded job queue, N worker threads,
 * the retry loop, the global rate limit and the drain (server/pool.h).
 *
 * Public: pool_new, pool_submit, pool_stats, pool_room, pool_ready,
 * pool_drain, pool_free.  The SMTP connections live in server/connpool.c, the retry
 * rules (a table) in server/retry.h.
 *
 * A worker takes the oldest job, then for each attempt: waits for its rate
 * slot (sends only), acquires a pooled connection (opening one if allowed),
 * runs the send or the query, asks pool_retry_decide what the outcome
 * means, gives the connection back (kept, QUIT or dropped), and either
 * finishes, retries after a backoff (counted), or retries at once on
 * another connection when the reused one was found dead at its first
 * command (not counted; at most connections + 1 times per job).  A send
 * that reached the final dot is never sent again.
 *
 * Chains: when a send's first attempt gets a reused connection, more
 * sends wait in the queue, no rate limit is set and the pool is not
 * draining, the worker takes about its share of them (at most
 * POOL_CHAIN_MAX - 1, within messages_per_conn) and sends them all with
 * smtp_conn_send_mails: each final dot carries the next envelope, one round
 * trip a message instead of two.  That is each taken job's first attempt,
 * judged by the same rules (on a connection already used, so "reused"); a
 * final outcome finishes the job at once, anything else goes on through
 * the usual attempts after the worker's own job is finished.  Once the
 * drain deadline passes a chain starts no further message: the ones not
 * started end as never attempted, like the jobs still queued.  (A new
 * connection carries one message alone first; so does a drain: the
 * deadline bounds the work to the messages on the wire.)  Queries (VRFY, EXPN,
 * HELP) run on pooled connections too, with smtp_transactionsv_no_close
 * and the smtp_vrfy/smtp_expn/smtp_help constructors; they are idempotent.
 *
 * DKIM: a send is signed (server/sign.c) when its worker takes it, its
 * own or a chain's, just before its first attempt, so both the HTTP
 * path and the durable queue's deliveries are signed at this one place;
 * a signing failure fails the job, never sent unsigned.
 *
 * Finishing a job: attempts and duration_ms set, one "smtp" log line, then
 * job->done exactly once, with no lock held.
 *
 * Errors: pool_new fails (NULL, err set) on bad settings or when threads
 * cannot start; a job never fails to finish: its failure is its result.
 * Threads: pool->mu guards the queue, the gauges, the rate slot and the
 * flags.  Lock order: pool->mu, then the connection pool's cp->mu (only
 * pool_stats takes both).  No lock is held across SMTP I/O, sleeps (the
 * condvar waits release it), log writes or job->done.
 */
#include "server/pool.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/connpool.h"
#include "server/log.h"
#include "server/pool_sys.h"
#include "server/retry.h"
#include "server/sign.h"

#define POOL_SHUTDOWN_MSG "mailpool is shutting down; not sent"
#define POOL_CHAIN_MAX 16 /* sends on one connection in one chain */
#define POOL_SWEEP_S 0.1  /* how often queued deadlines are read */
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

static const char *const pool_kind_names[] = {
    [JOB_SEND] = "send",
    [JOB_VERIFY] = "verify",
    [JOB_EXPAND] = "expand",
    [JOB_HELP] = "help",
};

/* The job kind's name for the logs. */
static const char *pool_kind_name(enum job_kind kind)
{
    if ((int)kind < JOB_SEND || (int)kind > JOB_HELP)
        return "unknown";
    return pool_kind_names[kind];
}

/* Waits until the monotonic time `until` or until stopping.
   Precondition: pool->mu held (released while waiting).  -1 if stopping. */
static int pool_sleep_until(struct pool *pool, double until)
{
    while (!pool->stopping && pool_mono_now() < until) {
        struct timespec ts = pool_abstime(until);
        pthread_cond_timedwait(&pool->stop_cv, &pool->mu, &ts);
    }
    return pool->stopping ? -1 : 0;
}

/* Takes the next slot of the global rate limit and waits for it. */
static int pool_rate_wait(struct pool *pool)
{
    double now, slot;
    int rc;

    if (pool->rate <= 0)
        return 0;
    pthread_mutex_lock(&pool->mu);
    now = pool_mono_now();
    slot = pool->rate_next > now ? pool->rate_next : now;
    pool->rate_next = slot + 1.0 / pool->rate;
    rc = pool_sleep_until(pool, slot);
    pthread_mutex_unlock(&pool->mu);
    return rc;
}

/* Logs a retry about to happen (never addresses or reply text). */
static void pool_log_retry(const struct job *job, const char *why,
                           long backoff_ms)
{
    struct log_field f[] = {
        LOG_STR("request_id", job->request_id[0] ? job->request_id : NULL),
        LOG_STR("job", pool_kind_name(job->kind)),
        LOG_STR("reason", why),
        LOG_NUM("attempts", job->attempts),
        LOG_STR("result", smtp_kind_name(job->result.kind)),
        LOG_NUM("code", job->result.code),
        LOG_STR("command", job->result.command[0] ? job->result.command : NULL),
        LOG_NUM("backoff_ms", backoff_ms),
    };

    log_event_num(LOG_WARN, "smtp_retry", f, sizeof f / sizeof f[0]);
}

/* Counts a retry and sleeps the backoff; -1 when the pool stops. */
static int pool_backoff(struct pool *pool, struct job *job)
{
    long ms;
    int rc;

    pthread_mutex_lock(&pool->mu);
    ms = pool_backoff_ms(pool->cfg->pool.retry_backoff_ms, job->attempts,
                         pool->draining);
    pool->retries++;
    pthread_mutex_unlock(&pool->mu);
    pool_log_retry(job, "temporary failure", ms);
    pthread_mutex_lock(&pool->mu);
    rc = pool_sleep_until(pool, pool_mono_now() + (double)ms / 1000.0);
    pthread_mutex_unlock(&pool->mu);
    return rc;
}

/* One attempt of the job's command on an open connection. */
static void pool_run_step(struct job *job, struct smtp_conn *conn)
{
    struct smtp_txn *txn;

    if (job->kind == JOB_SEND) {
        const struct smtp_message *m = job_message(job);

        smtp_conn_send_mail(conn, m->from, m->to, m->nto, m->headers,
                            m->nheaders, m->body, m->sopts, &job->result);
        return;
    }
    if (job->kind == JOB_VERIFY)
        txn = smtp_vrfy(job->arg);
    else if (job->kind == JOB_EXPAND)
        txn = smtp_expn(job->arg);
    else
        txn = smtp_help(job->arg);
    /* A NULL txn (out of memory) is reported as a local error. */
    smtp_transactionsv_no_close(conn, &txn, 1, &job->result);
    smtp_txn_free(txn);
}

/* After an attempt judged v: 1 to attempt again (a stale pooled
   connection is replaced at once and not counted; a temporary failure
   waits its backoff), 0 when the outcome is final. */
static int pool_again(struct pool *pool, struct job *job, struct pool_verdict v,
                      struct pool_try *tr)
{
    int limit = job->no_retry                 ? 0
                : pool->cfg->pool.retries > 0 ? pool->cfg->pool.retries
                                              : 0;

    if (v.next == POOL_NEXT_REPLACE && tr->free_left-- > 0) {
        job->attempts--; /* a stale connection: not counted */
        pthread_mutex_lock(&pool->mu);
        pool->retries++;
        pthread_mutex_unlock(&pool->mu);
        pool_log_retry(job, "stale pooled connection", 0);
        return 1;
    }
    return v.next != POOL_NEXT_DONE && job->attempts <= limit &&
           pool_backoff(pool, job) == 0;
}

/* Takes the first waiting job (pool->head not NULL) and notes how long it
   waited.  Caller holds pool->mu. */
static struct job *pool_dequeue_locked(struct pool *pool)
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

static void pool_finish(struct job *job);

/* Points link l at job. */
static void pool_link_init(struct pool_link *l, struct job *job)
{
    memset(l, 0, sizeof *l);
    l->job = job;
}

static const char *pool_job_ready(struct pool *pool, struct job *job, char *why,
                                  size_t whylen);

/* Why a job whose started mark failed is not sent. */
static const char *pool_job_started_why(void)
{
    return "the message is no longer this process's to send";
}

/* Calls the job's started callback, if any: NULL, or why the job must
   not be sent (it is finished never attempted). */
static const char *pool_job_started(struct job *job)
{
    if (job->started == NULL || job->started(job, job->started_ctx) == 0)
        return NULL;
    return pool_job_started_why();
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
static size_t pool_chain_fill(struct pool *pool, struct pool_chain *ch,
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

/* 1 once the drain deadline has passed. */
static int pool_stopping(struct pool *pool)
{
    int stopping;

    pthread_mutex_lock(&pool->mu);
    stopping = pool->stopping;
    pthread_mutex_unlock(&pool->mu);
    return stopping;
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
static struct pool_verdict pool_chain_run(struct pool_chain *ch,
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

/* Attempts the job until its outcome is final (server/retry.h); with ch,
   its first connection may carry a chain. */
static void pool_attempts(struct pool *pool, struct job *job,
                          struct pool_chain *ch, struct pool_try *tr)
{
    int idem = job->kind != JOB_SEND;

    for (;;) {
        struct pool_conn *pc = NULL;
        struct pool_verdict v;
        int reused = 0, rc;

        if (!idem && pool_rate_wait(pool) < 0)
            break;
        rc = pool_conns_acquire(pool->conns, &pc, &reused, &job->result);
        if (rc == POOL_ACQ_STOPPED)
            break;
        job->attempts++;
        if (rc == POOL_ACQ_FAILED) {
            v = pool_retry_decide(&job->result, POOL_PHASE_OPEN, 0, idem);
            tr->open_failed = pool_kind_is_transport(job->result.kind);
        } else {
            smtp_result_clear(&job->result);
            if (ch != NULL && pool_chain_fill(pool, ch, job, pc, reused) > 1) {
                v = pool_chain_run(ch, pool_conn_smtp(pc), reused);
            } else {
                pool_run_step(job, pool_conn_smtp(pc));
                v = pool_retry_decide(&job->result, POOL_PHASE_RUN, reused,
                                      idem);
            }
            pool_conns_release(pool->conns, pc, v.fate);
            tr->open_failed = 0;
        }
        if (!pool_again(pool, job, v, tr))
            break;
    }
}

/* The last fields of a job whose attempts are over. */
static void pool_settle(struct job *job, const struct pool_try *tr)
{
    if (job->attempts == 0) /* stopped before anything was tried */
        pool_result_local(&job->result,
                          job->kind == JOB_SEND ? SMTP_DELIVERY_FAILED
                                                : SMTP_DELIVERY_NONE,
                          POOL_SHUTDOWN_MSG);
    job->unreachable = tr->open_failed && job->attempts > 0;
}

/* The taken jobs of a chain whose first attempt was not final, or that
   the chain never started (the drain deadline passed): their further
   attempts (none once stopping), one job after the other, then their
   end. */
static void pool_chain_rest(struct pool *pool, struct pool_chain *ch)
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

/* Logs the job's outcome: one line per finished SMTP job. */
static void pool_log_job(const struct job *job)
{
    const struct smtp_result *r = &job->result;
    int ok = r->kind == SMTP_OK;
    struct log_field f[] = {
        LOG_STR("request_id", job->request_id[0] ? job->request_id : NULL),
        LOG_STR("job", pool_kind_name(job->kind)),
        LOG_STR("message_id", r->message_id[0] ? r->message_id : NULL),
        LOG_STR("status", smtp_delivery_name(r->status)),
        LOG_STR("result", smtp_kind_name(r->kind)),
        LOG_NUM("code", r->code),
        LOG_STR("enhanced", r->reply.enhanced[0] ? r->reply.enhanced : NULL),
        LOG_NUM("accepted", r->naccepted),
        LOG_NUM("rejected", r->nrejected),
        LOG_NUM("attempts", job->attempts),
        LOG_NUM("duration_ms", job->duration_ms),
        LOG_NUM("wait_ms", job->wait_ms),
        LOG_STR("command", !ok && r->command[0] ? r->command : NULL),
        job->unreachable ? LOG_BOOL("unreachable", 1) : LOG_STR(NULL, NULL),
    };

    log_event_num(ok ? LOG_INFO : LOG_WARN, "smtp", f, sizeof f / sizeof f[0]);
}

/* Sets the final fields, logs, and hands the job back (no lock held). */
static void pool_finish(struct job *job)
{
    if (job->kind == JOB_SEND && job->result.kind != SMTP_OK &&
        job->result.status == SMTP_DELIVERY_NONE)
        job->result.status = SMTP_DELIVERY_FAILED;
    job->duration_ms = pool_mono_now() * 1000.0 - job->submitted_;
    if (job->attempts == 0 && job->wait_ms == 0)
        job->wait_ms = job->duration_ms; /* never left the queue */
    pool_log_job(job);
    if (job->done != NULL)
        job->done(job, job->done_ctx); /* the job is theirs now */
    else
        job_free(job);
}

/* NULL when the job is well-formed, else why not. */
static const char *pool_job_check(const struct job *job)
{
    const struct job_message *m = &job->msg;

    switch (job->kind) {
    case JOB_SEND:
        if (m->from == NULL || (m->nto > 0 && m->to == NULL) ||
            (m->nheaders > 0 && m->headers == NULL))
            return "malformed message job";
        for (size_t i = 0; i < m->nto; i++)
            if (m->to[i] == NULL)
                return "malformed message job";
        for (size_t i = 0; i < m->nheaders; i++)
            if (m->headers[i].name == NULL || m->headers[i].value == NULL)
                return "malformed message job";
        return NULL;
    case JOB_VERIFY:
    case JOB_EXPAND: return job->arg == NULL ? "missing argument" : NULL;
    case JOB_HELP: return NULL;
    }
    return "unknown job kind";
}

/* NULL when the job is well-formed, taken before its deadline and, a
   send, signed (when the configuration says so); else why not, in why or
   a constant. */
static const char *pool_job_ready(struct pool *pool, struct job *job, char *why,
                                  size_t whylen)
{
    const char *bad = pool_job_check(job);
    char sw[200];

    if (bad == NULL && job->deadline > 0 && pool_mono_now() > job->deadline) {
        job->expired = 1; /* taken too late: nothing is sent */
        return POOL_DEADLINE_MSG;
    }
    if (bad != NULL || job->kind != JOB_SEND || pool->sign == NULL)
        return bad;
    if (sign_message(pool->sign, &job->msg, time(NULL), sw, sizeof sw) < 0) {
        snprintf(why, whylen, "DKIM signing failed: %s", sw);
        return why;
    }
    return NULL;
}

/* Runs one job to its end and calls its done callback, then the rest of
   the jobs that went in its chain. */
static void pool_run_job(struct pool *pool, struct job *job)
{
    struct pool_chain ch = { .pool = pool };
    struct pool_try tr = { pool->cfg->pool.connections + 1, 0 };
    char buf[256];
    const char *why = pool_job_ready(pool, job, buf, sizeof buf);

    why = why != NULL ? why : pool_job_started(job);
    if (why != NULL) {
        pool_result_local(&job->result,
                          job->kind == JOB_SEND ? SMTP_DELIVERY_FAILED
                                                : SMTP_DELIVERY_NONE,
                          why);
    } else {
        pool_attempts(pool, job, &ch, &tr);
        pool_settle(job, &tr);
    }
    pool_finish(job);
    pool_chain_rest(pool, &ch);
}

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

/* Stops and joins the sweeper, if it runs. */
static void pool_stop_sweeper(struct pool *pool)
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
    if (pool_thread_start(&pool->sweeper, pool_sweeper, pool) != 0) {
        snprintf(err, errlen, "cannot start the deadline thread");
        pool_stop_workers(pool);
        pool_destroy(pool);
        return NULL;
    }
    pool->sweeping = 1;
    return pool;
}

/* Queues job unless the queue is full or the pool drains; never blocks. */
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

int pool_submit(struct pool *pool, struct job *job)
{
    return pool_submit_all(pool, &job, 1);
}

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

/* 1 when the relay is reachable (an open connection or a fresh probe). */
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
