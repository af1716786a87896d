/*
 * server/pool_run.c - one job of the worker pool from its taking to its
 * done callback (server/pool_internal.h).
 *
 * Internal (to the pool's files): pool_run_job, pool_attempts,
 * pool_again, pool_settle, pool_finish, pool_job_ready, pool_job_started,
 * pool_job_started_why, pool_stopping.
 *
 * For each attempt a worker waits for its rate slot (sends only),
 * acquires a pooled connection (opening one if allowed), runs the send or
 * the query (or a chain, server/pool_chain.c), asks pool_retry_decide what
 * the outcome means, gives the connection back (kept, QUIT or dropped),
 * and either finishes, retries after a backoff (counted), or retries at
 * once on another connection when the reused one was found dead at its
 * first command (not counted; at most connections + 1 times per job).  A
 * send that reached the final dot is never sent again.  Queries (VRFY,
 * EXPN, HELP) run on pooled connections too, with
 * smtp_transactionsv_no_close and the smtp_vrfy/smtp_expn/smtp_help
 * constructors; they are idempotent.
 *
 * DKIM: a send is signed (server/sign.c) when its worker takes it, its
 * own or a chain's, just before its first attempt, so both the HTTP path
 * and the durable queue's deliveries are signed at this one place; a
 * signing failure fails the job, never sent unsigned.
 *
 * Finishing a job: attempts and duration_ms set, one "smtp" log line,
 * then job->done exactly once, with no lock held.
 *
 * Threads: called by the workers (and pool_finish by the sweeper and the
 * draining thread).  pool->mu guards the rate slot, the retries counter
 * and the draining and stopping flags read here; it is taken for those
 * reads and writes only and released across every sleep (the condvar
 * waits), SMTP I/O, log write and job->done.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "util/log.h"
#include "server/pool_internal.h"
#include "server/pool_sys.h"
#include "server/sign.h"

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
int pool_again(struct pool *pool, struct job *job, struct pool_verdict v,
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

/* Why a job whose started mark failed is not sent. */
const char *pool_job_started_why(void)
{
    return "the message is no longer this process's to send";
}

/* Calls the job's started callback, if any: NULL, or why the job must
   not be sent (it is finished never attempted). */
const char *pool_job_started(struct job *job)
{
    if (job->started == NULL || job->started(job, job->started_ctx) == 0)
        return NULL;
    return pool_job_started_why();
}

/* 1 once the drain deadline has passed. */
int pool_stopping(struct pool *pool)
{
    int stopping;

    pthread_mutex_lock(&pool->mu);
    stopping = pool->stopping;
    pthread_mutex_unlock(&pool->mu);
    return stopping;
}

/* Attempts the job until its outcome is final (server/retry.h); with ch,
   its first connection may carry a chain. */
void pool_attempts(struct pool *pool, struct job *job, struct pool_chain *ch,
                   struct pool_try *tr)
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
void pool_settle(struct job *job, const struct pool_try *tr)
{
    if (job->attempts == 0) /* stopped before anything was tried */
        pool_result_local(&job->result,
                          job->kind == JOB_SEND ? SMTP_DELIVERY_FAILED
                                                : SMTP_DELIVERY_NONE,
                          POOL_SHUTDOWN_MSG);
    job->unreachable = tr->open_failed && job->attempts > 0;
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
void pool_finish(struct job *job)
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
const char *pool_job_ready(struct pool *pool, struct job *job, char *why,
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
void pool_run_job(struct pool *pool, struct job *job)
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
