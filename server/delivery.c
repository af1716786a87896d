/*
 * server/delivery.c - delivery from the durable queue (server/delivery.h).
 *
 * Public: delivery_start, delivery_kick, delivery_stop, delivery_free,
 * delivery_stats, delivery_backoff_s, delivery_attempt_of,
 * delivery_attempt_clear.
 *
 * The rules after an attempt (the job's result):
 *   never attempted (the pool stopped first)      -> queued, uncounted
 *   sent                                          -> sent
 *   partial or rejected with recipients deferred
 *   with 4xx, and attempts and age left           -> retry, the stored
 *                                                    message narrowed to
 *                                                    those recipients
 *   partial, rejected otherwise                   -> final, as said
 *   (a final state after earlier attempts is partial when some recipients
 *   got the message in one attempt and others were refused in another)
 *   unknown (the final dot went out, no reply)    -> unknown, never resent
 *   failed, temporary by server/retry.h (4xx, a
 *   transport failure before the final dot)       -> retry after a backoff,
 *                                                    or failed once
 *                                                    max_attempts or
 *                                                    max_age is reached
 *   failed, anything else (5xx, local, AUTH)      -> failed
 *
 * Claims ask for the queue's lease (queue.lease), which the queue renews
 * while this process lives; a worker marks each message started
 * (queue_start) before its SMTP transaction, so a dead replica's messages
 * not yet started go back to queued and only those started end unknown;
 * the queue wakes the loop (delivery_kick) when another replica
 * enqueued.
 *
 * Threads: d->mu guards the flags and counters; the claiming thread holds
 * no lock while it talks to the queue or the pool.  Job outcomes arrive on
 * pool workers (on_done), which record them asynchronously.
 */
#include "server/delivery.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "server/job.h"
#include "util/log.h"
#include "server/pool_sys.h"
#include "server/retry.h"

#define DELIVERY_GROUP 64   /* messages claimed at once at most */
#define DELIVERY_POLL_S 1.0 /* look at the queue at least this often */
#define DELIVERY_CHAIN 16   /* SQLite: claimed per worker at most */

struct delivery {
    struct pool *pool;
    struct queue *q;
    const struct cfg *cfg;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;        /* kicked, or stopping */
    int kicked;               /* guarded by mu */
    int stopping;             /* guarded by mu */
    struct delivery_stats st; /* guarded by mu */
};

/* What a submitted job carries back to on_done. */
struct delivery_ctx {
    struct delivery *d;
    char id[QUEUE_ID_LEN];
    int attempt; /* counting this one */
    double created_at;
};

/* Wall-clock Unix seconds (the queue's clock). */
static double delivery_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double delivery_backoff_s(double base, double max, int attempt, double jitter)
{
    double s = base;
    for (int i = 1; i < attempt && s < max; i++)
        s *= 2;
    if (s > max)
        s = max;
    if (jitter < 0.5)
        jitter = 0.5;
    return s * (jitter > 1 ? 1 : jitter);
}

/* A uniform number in [0.5, 1]. */
static double delivery_jitter(void)
{
    unsigned v = 0;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v)
        v = (unsigned)time(NULL);
    return 0.5 + (double)(v % 10001) / 20000.0;
}

/* Appends s and a separator to a growing string; -1 when out of memory. */
static int cat(char **buf, size_t *len, const char *s, const char *sep)
{
    size_t k = strlen(s), m = strlen(sep);
    char *nb = realloc(*buf, *len + k + m + 1);
    if (nb == NULL)
        return -1;
    memcpy(nb + *len, s, k);
    memcpy(nb + *len + k, sep, m);
    *len += k + m;
    nb[*len] = '\0';
    *buf = nb;
    return 0;
}

/* v[0..n) joined by sep, as a new string; NULL when out of memory. */
static char *join(char *const *v, size_t n, const char *sep)
{
    char *out = calloc(1, 1);
    size_t len = 0;
    for (size_t i = 0; out != NULL && i < n; i++)
        if (cat(&out, &len, v[i], i + 1 < n ? sep : "") < 0) {
            free(out);
            out = NULL;
        }
    return out;
}

/* The rejected list: "rcpt\tcode\tenhanced\ttext / text" per line. */
static char *join_rejected(const struct smtp_result *res)
{
    char *out = calloc(1, 1);
    size_t len = 0;
    for (size_t i = 0; out != NULL && i < res->nrejected; i++) {
        const struct smtp_rcpt_failure *f = &res->rejected[i];
        char code[16], *text = join(f->reply.lines, f->reply.nlines, " / ");
        snprintf(code, sizeof code, "%d", f->reply.code);
        if (text == NULL || cat(&out, &len, f->recipient, "\t") < 0 ||
            cat(&out, &len, code, "\t") < 0 ||
            cat(&out, &len, f->reply.enhanced, "\t") < 0 ||
            cat(&out, &len, text, i + 1 < res->nrejected ? "\n" : "") < 0) {
            free(out);
            out = NULL;
        }
        free(text);
    }
    return out;
}

void delivery_attempt_clear(struct delivery_attempt *da)
{
    if (da == NULL)
        return;
    free(da->enhanced);
    free(da->text);
    free(da->accepted);
    free(da->rejected);
    free(da->error);
    memset(da, 0, sizeof *da);
}

int delivery_attempt_of(const struct job *job, double at,
                        struct delivery_attempt *da)
{
    const struct smtp_result *res = &job->result;
    memset(da, 0, sizeof *da);
    da->enhanced = strdup(res->reply.enhanced);
    da->text = join(res->reply.lines, res->reply.nlines, "\n");
    da->accepted = join(res->accepted, res->naccepted, "\n");
    da->rejected = join_rejected(res);
    da->error = strdup(res->message);
    if (da->enhanced == NULL || da->text == NULL || da->accepted == NULL ||
        da->rejected == NULL || da->error == NULL) {
        delivery_attempt_clear(da);
        return -1;
    }
    da->a = (struct queue_attempt){
        .at = at,
        .status = smtp_delivery_name(res->status),
        .code = res->code,
        .enhanced = da->enhanced,
        .text = da->text,
        .accepted = da->accepted,
        .rejected = da->rejected,
        .error = da->error,
    };
    return 0;
}

/* What the earlier attempts of message x did: bit 1, some recipient was
   accepted; bit 2, some was refused for good (5xx).  0 on a first
   attempt (nothing earlier) or when the record cannot be read. */
static unsigned delivery_history(struct delivery *d,
                                 const struct delivery_ctx *x)
{
    struct queue_doc doc;
    unsigned h = 0;
    if (x->attempt <= 1 || queue_get(d->q, x->id, &doc) != QUEUE_OK)
        return 0;
    for (size_t i = 0; i < doc.nattempts; i++) {
        const struct queue_attempt_rec *a = &doc.attempts[i];
        /* Only a transaction the relay took part of says anything about
           recipients: after a refused MAIL, the pipelined RCPTs' 503s
           are not refusals of those mailboxes. */
        int took = a->status != NULL && (strcmp(a->status, "partial") == 0 ||
                                         strcmp(a->status, "rejected") == 0);
        if (a->accepted != NULL && a->accepted[0] != '\0')
            h |= 1;
        /* rejected: "rcpt\tcode\tenhanced\ttext" lines */
        for (const char *l = took ? a->rejected : NULL;
             l != NULL && *l != '\0';) {
            const char *tab = strchr(l, '\t');
            if (tab != NULL && tab[1] == '5')
                h |= 2;
            l = strchr(l, '\n');
            if (l != NULL)
                l++;
        }
    }
    queue_doc_clear(&doc);
    return h;
}

/* A final state of this attempt, seen with the earlier ones: a message
   some of whose recipients got it in an earlier attempt, and others not,
   is partial (RFC 5321 leaves each recipient's fate to its reply). */
static enum queue_state delivery_final(struct delivery *d,
                                       const struct delivery_ctx *x,
                                       enum queue_state s)
{
    unsigned h;
    if (s == QUEUE_UNKNOWN || s == QUEUE_PARTIAL || x->attempt <= 1)
        return s;
    h = delivery_history(d, x);
    if (s == QUEUE_SENT)
        return h & 2 ? QUEUE_PARTIAL : QUEUE_SENT;
    return h & 1 ? QUEUE_PARTIAL : s; /* rejected, failed */
}

/* How many recipients the relay deferred with a 4xx reply. */
static size_t delivery_deferred(const struct smtp_result *res)
{
    size_t n = 0;
    for (size_t i = 0; i < res->nrejected; i++)
        n += res->rejected[i].reply.code >= 400 &&
             res->rejected[i].reply.code < 500;
    return n;
}

/* The state the job's outcome moves its message to; *next_at for retry.
   *narrow is set when the retry sends only the recipients deferred with
   4xx (the others accepted, or refused for good). */
static enum queue_state delivery_decide(struct delivery *d,
                                        const struct delivery_ctx *x,
                                        const struct job *job, double now,
                                        double *next_at, int *narrow)
{
    const struct smtp_result *res = &job->result;
    int can_retry = x->attempt < d->cfg->queue.max_attempts &&
                    now - x->created_at < d->cfg->queue.max_age;
    struct pool_verdict v;
    *next_at = now;
    *narrow = 0;
    switch (res->status) {
    case SMTP_DELIVERY_SENT: return delivery_final(d, x, QUEUE_SENT);
    case SMTP_DELIVERY_PARTIAL:
    case SMTP_DELIVERY_REJECTED:
        if (delivery_deferred(res) == 0 || !can_retry)
            return delivery_final(d, x,
                                  res->status == SMTP_DELIVERY_PARTIAL
                                      ? QUEUE_PARTIAL
                                      : QUEUE_REJECTED);
        *narrow = 1; /* the 4xx-deferred ones, alone, later */
        break;
    case SMTP_DELIVERY_UNKNOWN: return QUEUE_UNKNOWN;
    default:
        v = pool_retry_decide(
            res, job->unreachable ? POOL_PHASE_OPEN : POOL_PHASE_RUN, 0, 0);
        if (v.next == POOL_NEXT_DONE || !can_retry)
            return delivery_final(d, x, QUEUE_FAILED);
        break;
    }
    *next_at = now + delivery_backoff_s(d->cfg->queue.retry_base,
                                        d->cfg->queue.retry_max, x->attempt,
                                        delivery_jitter());
    return QUEUE_RETRY;
}

/* The message of job narrowed to the recipients deferred with 4xx, as a
   queue blob (*out, caller frees); -1 when out of memory. */
static int delivery_narrowed(struct job *job, void **out, size_t *len)
{
    const struct smtp_result *res = &job->result;
    struct job_message *m = &job->msg;
    char **to = calloc(res->nrejected + 1, sizeof *to);
    size_t n = 0;
    int rc;
    if (to == NULL)
        return -1;
    for (size_t i = 0; i < res->nrejected; i++) {
        int code = res->rejected[i].reply.code;
        if (code >= 400 && code < 500 &&
            (to[n] = strdup(res->rejected[i].recipient)) != NULL)
            n++;
    }
    for (size_t i = 0; i < m->nto; i++)
        free(m->to[i]);
    free(m->to);
    m->to = to; /* the job is freed after the record */
    m->nto = n;
    rc = job_message_encode(job, out, len);
    return rc;
}

/* Records the job's attempt and the message's next state. */
static void delivery_record(struct delivery *d, struct delivery_ctx *x,
                            struct job *job)
{
    double now = delivery_now(), next_at;
    int narrow;
    enum queue_state state = delivery_decide(d, x, job, now, &next_at, &narrow);
    struct delivery_attempt da;
    void *blob = NULL;
    size_t blob_len = 0;
    int ok = delivery_attempt_of(job, now, &da) == 0;
    if (ok && narrow && delivery_narrowed(job, &blob, &blob_len) == 0) {
        da.a.retry_blob = blob;
        da.a.retry_blob_len = blob_len;
    } else if (narrow) {
        state = QUEUE_PARTIAL; /* out of memory: never resend to all */
    }
    /* counted before the record is handed over, so a reader who sees the
       final state sees the count */
    pthread_mutex_lock(&d->mu);
    if (state == QUEUE_RETRY)
        d->st.retries++;
    else if (queue_state_is_final(state))
        d->st.finished[state]++;
    pthread_mutex_unlock(&d->mu);
    if (!ok || queue_record(d->q, x->id, &da.a, state, next_at) != QUEUE_OK) {
        /* It stays sending: unknown at the next start, never resent. */
        struct log_field f[] = { LOG_STR("queue_id", x->id) };
        log_event_num(LOG_ERROR, "queue_record_failed", f, 1);
    }
    if (ok)
        delivery_attempt_clear(&da);
    free(blob);
}

/* A job from the queue is back (pool worker, or the draining thread). */
static void on_done(struct job *job, void *ctx)
{
    struct delivery_ctx *x = ctx;
    struct delivery *d = x->d;
    if (job->attempts == 0)
        queue_release(d->q, x->id); /* never attempted */
    else
        delivery_record(d, x, job);
    job_free(job);
    free(x);
    pthread_mutex_lock(&d->mu);
    d->st.in_flight--;
    d->kicked = 1; /* room in the pool again */
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

/* 1 once delivery_stop was called: jobs still waiting in the pool are
   not sent but go back to queued for the next start. */
static int delivery_stopping(struct delivery *d)
{
    int stopping;
    pthread_mutex_lock(&d->mu);
    stopping = d->stopping;
    pthread_mutex_unlock(&d->mu);
    return stopping;
}

/* The job's started callback: its message is marked started in the
   queue before the worker opens its SMTP transaction, so a replica dying
   from now on leaves it unknown, never resent; until then it would go
   back to queued.  Nonzero (not sent) when the mark is not stored. */
static int on_started(struct job *job, void *ctx)
{
    struct delivery_ctx *x = ctx;
    int rc;
    (void)job;
    if (delivery_stopping(x->d))
        return -1; /* back to queued (on_done) */
    rc = queue_start(x->d->q, x->id);
    if (rc != QUEUE_OK) {
        struct log_field f[] = { LOG_STR("queue_id", x->id) };
        log_event_num(LOG_WARN, "queue_start_failed", f, 1);
    }
    return rc == QUEUE_OK ? 0 : -1;
}

/* The started_all of a job: the messages of the sends a chain took,
   marked started in one write (queue_start_all). */
static void on_started_all(struct job *const *jobs, size_t n, int *rcs)
{
    struct delivery *d = ((struct delivery_ctx *)jobs[0]->started_ctx)->d;
    const char **ids = delivery_stopping(d) ? NULL : calloc(n, sizeof *ids);
    for (size_t i = 0; ids == NULL && i < n; i++)
        rcs[i] = on_started(jobs[i], jobs[i]->started_ctx);
    if (ids == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        ids[i] = ((struct delivery_ctx *)jobs[i]->started_ctx)->id;
    queue_start_all(d->q, ids, n, rcs);
    for (size_t i = 0; i < n; i++) {
        if (rcs[i] != QUEUE_OK) {
            struct log_field f[] = { LOG_STR("queue_id", ids[i]) };
            log_event_num(LOG_WARN, "queue_start_failed", f, 1);
        }
        rcs[i] = rcs[i] == QUEUE_OK ? 0 : -1;
    }
    free(ids);
}

/* Submits one claimed message; on failure it goes back to queued. */
static void delivery_submit(struct delivery *d, const struct queue_claimed *c)
{
    struct job *job = job_new(JOB_SEND);
    struct delivery_ctx *x = calloc(1, sizeof *x);
    if (job == NULL || x == NULL ||
        job_message_decode(job, c->blob, c->blob_len) < 0) {
        struct log_field f[] = { LOG_STR("queue_id", c->id) };
        log_event_num(LOG_ERROR, "queue_message_unreadable", f, 1);
        job_free(job);
        free(x);
        queue_release(d->q, c->id);
        return;
    }
    x->d = d;
    snprintf(x->id, sizeof x->id, "%s", c->id);
    x->attempt = c->attempts;
    x->created_at = c->created_at;
    snprintf(job->request_id, sizeof job->request_id, "%s", c->id);
    job->no_retry = 1;
    job->done = on_done;
    job->done_ctx = x;
    job->started = on_started;
    job->started_ctx = x;
    job->started_all = on_started_all;
    pthread_mutex_lock(&d->mu);
    d->st.in_flight++;
    d->st.claims++;
    pthread_mutex_unlock(&d->mu);
    if (pool_submit(d->pool, job) != POOL_OK) {
        job->attempts = 0;
        on_done(job, x); /* back to queued */
    }
}

/* How many messages to claim now.  PostgreSQL: what the pool takes (two
   a worker), so that replicas share the work.  SQLite (one process): up
   to DELIVERY_CHAIN a worker in flight, so that a worker's connection
   carries a chain of them; claimed messages not yet started go back to
   queued after a crash, so the larger window resends nothing.  Below half
   the window free, none (each claim is a commit): the next kick asks
   again. */
static size_t delivery_room(struct delivery *d)
{
    struct pool_stats ps;
    size_t room = pool_room(d->pool), window, in_flight, cap;
    if (strcmp(queue_backend(d->q), "sqlite") != 0)
        return room < DELIVERY_GROUP ? room : DELIVERY_GROUP;
    pool_stats(d->pool, &ps);
    window = ps.workers * DELIVERY_CHAIN;
    cap = pool_capacity(d->pool);
    pthread_mutex_lock(&d->mu);
    in_flight = d->st.in_flight;
    pthread_mutex_unlock(&d->mu);
    if (ps.draining || in_flight >= window || ps.queued >= cap)
        return 0;
    room = window - in_flight;
    if (room > cap - ps.queued)
        room = cap - ps.queued;
    if (in_flight > 0 && room < window / 2)
        return 0;
    return room < DELIVERY_GROUP ? room : DELIVERY_GROUP;
}

/* Claims and submits one group; returns how many were claimed and sets
   *room to what the pool could take. */
static size_t delivery_round(struct delivery *d, size_t *room)
{
    struct queue_claimed *c = NULL;
    size_t n = 0;
    *room = delivery_room(d);
    if (*room == 0 || queue_claim(d->q, delivery_now(), *room,
                                  queue_lease_s(d->q), &c, &n) != QUEUE_OK)
        return 0;
    for (size_t i = 0; i < n; i++)
        delivery_submit(d, &c[i]);
    queue_claimed_free(c, n);
    return n;
}

/* Waits until kicked, stopping, or the next message is due (at most
   DELIVERY_POLL_S).  Precondition: d->mu held. */
static void delivery_wait(struct delivery *d, size_t room)
{
    double wait = DELIVERY_POLL_S, when;
    if (room > 0) {
        pthread_mutex_unlock(&d->mu);
        if (queue_next_due(d->q, &when) == 1 && when - delivery_now() < wait)
            wait = when - delivery_now();
        pthread_mutex_lock(&d->mu);
    }
    if (wait <= 0 || d->kicked || d->stopping)
        return;
    struct timespec ts = pool_abstime(pool_mono_now() + wait);
    pthread_cond_timedwait(&d->cv, &d->mu, &ts);
}

/* The claiming thread. */
static void *delivery_main(void *arg)
{
    struct delivery *d = arg;
    pthread_mutex_lock(&d->mu);
    while (!d->stopping) {
        size_t room = 0, n;
        d->kicked = 0;
        pthread_mutex_unlock(&d->mu);
        n = delivery_round(d, &room);
        pthread_mutex_lock(&d->mu);
        if (n == 0 || n < room)
            delivery_wait(d, room);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

/* The queue's wake function: another replica enqueued. */
static void delivery_wake(void *ctx)
{
    delivery_kick(ctx);
}

struct delivery *delivery_start(struct pool *pool, struct queue *q,
                                const struct cfg *cfg, char *err, size_t errlen)
{
    struct delivery *d = calloc(1, sizeof *d);
    if (d == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    d->pool = pool;
    d->q = q;
    d->cfg = cfg;
    d->st.recovered = queue_recovered(q);
    pthread_mutex_init(&d->mu, NULL);
    if (pool_cond_init(&d->cv) != 0 ||
        pool_thread_start(&d->thread, delivery_main, d) != 0) {
        snprintf(err, errlen, "cannot start the queue's delivery thread");
        pthread_mutex_destroy(&d->mu);
        free(d);
        return NULL;
    }
    queue_set_wake(q, delivery_wake, d);
    return d;
}

void delivery_kick(struct delivery *d)
{
    if (d == NULL)
        return;
    pthread_mutex_lock(&d->mu);
    d->kicked = 1;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

void delivery_stop(struct delivery *d)
{
    if (d == NULL)
        return;
    pthread_mutex_lock(&d->mu);
    if (d->stopping) {
        pthread_mutex_unlock(&d->mu);
        return;
    }
    d->stopping = 1;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
    queue_set_wake(d->q, NULL, NULL);
    pthread_join(d->thread, NULL);
}

void delivery_free(struct delivery *d)
{
    if (d == NULL)
        return;
    delivery_stop(d);
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

void delivery_stats(struct delivery *d, struct delivery_stats *out)
{
    memset(out, 0, sizeof *out);
    if (d == NULL)
        return;
    pthread_mutex_lock(&d->mu);
    *out = d->st;
    pthread_mutex_unlock(&d->mu);
    out->recovered += queue_expired(d->q); /* leases reaped since */
}
