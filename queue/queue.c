/*
 * queue/queue.c - the queue interface (queue/queue.h) dispatched to its
 * backend (queue/queue_impl.h: queue_sqlite_ops, queue_postgres_ops), the
 * helpers every backend shares, and the keeper thread.
 *
 * Public: everything in queue.h (the outbox's event names and the
 * grouping of event rows shared by the backends too: queue_impl.h).  queue_claim notes the ids it returns as
 * on the wire here until queue_record or queue_release; the keeper renews
 * those leases (and only those) every lease/3 seconds and reaps the
 * expired ones of any process sharing the database: a message marked
 * started (queue_start) -> unknown, one never started -> queued.  A
 * message this process claims again while it still holds it (its lease
 * lapsed and a reaper queued it) is dropped from the new claim, so one
 * process never has two jobs for one message.
 *
 * Errors: those of the backend.  Threads: q->mu guards the closing flag,
 * the wake function, the expiry counter and the ids on the wire; the
 * keeper holds no lock while it calls the backend.
 */
#include "queue/queue_impl.h"

#include <assert.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define QUEUE_DEFAULT_LEASE_S 60.0

static const char *const state_names[QUEUE_STATE__COUNT] = {
    "queued",  "scheduled", "sending", "retry",   "sent",
    "partial", "rejected",  "failed",  "unknown", "cancelled",
};

const char *queue_state_name(enum queue_state s)
{
    return (int)s >= 0 && s < QUEUE_STATE__COUNT ? state_names[s] : "?";
}

int queue_state_is_final(enum queue_state s)
{
    return s >= QUEUE_SENT && s < QUEUE_STATE__COUNT;
}

double queue_wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define QUEUE_RAND_BUF 1024 /* random bytes a thread draws at once: 64 ids */

/* Per thread: random bytes of one getrandom and how many are used. */
static _Thread_local unsigned char id_rand[QUEUE_RAND_BUF];
static _Thread_local size_t id_rand_used = QUEUE_RAND_BUF;
static pthread_once_t id_rand_once = PTHREAD_ONCE_INIT;

/* In a forked child: its thread's bytes are its parent's, draw anew. */
static void id_rand_forked(void)
{
    id_rand_used = QUEUE_RAND_BUF;
}

/* Registers id_rand_forked once a process. */
static void id_rand_init(void)
{
    pthread_atfork(NULL, NULL, id_rand_forked);
}

/* 16 random bytes into r from this thread's buffer, refilled with one
   getrandom when used up (waiting, as getrandom does, until the kernel
   has entropy). */
static void id_rand_take(unsigned char r[16])
{
    pthread_once(&id_rand_once, id_rand_init);
    if (id_rand_used + 16 > sizeof id_rand) {
        size_t got = 0;
        while (got < sizeof id_rand) {
            ssize_t k = getrandom(id_rand + got, sizeof id_rand - got, 0);
            if (k > 0) /* else again: an id comes from nothing else */
                got += (size_t)k;
        }
        id_rand_used = 0;
    }
    memcpy(r, id_rand + id_rand_used, 16);
    id_rand_used += 16;
}

void queue_new_id(char id[QUEUE_ID_LEN])
{
    static const char b64[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char r[16];
    struct timespec ts;
    id_rand_take(r);
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    for (int k = 0; k < 6; k++) /* the first 48 bits: the time, big-endian */
        r[k] = (unsigned char)(ms >> (40 - 8 * k));
    for (size_t i = 0; i < QUEUE_ID_LEN - 1; i++) {
        size_t bit = i * 6, byte = bit / 8, off = bit % 8;
        unsigned v = (unsigned)r[byte] << 8;
        if (byte + 1 < sizeof r)
            v |= r[byte + 1];
        id[i] = b64[(v >> (10 - off)) & 63];
    }
    id[QUEUE_ID_LEN - 1] = '\0';
}

void queue_idem_hit_clear(struct queue_idem_hit *hit)
{
    if (hit == NULL)
        return;
    free(hit->response);
    memset(hit, 0, sizeof *hit);
}

void queue_claimed_free(struct queue_claimed *c, size_t n)
{
    for (size_t i = 0; c != NULL && i < n; i++)
        free(c[i].blob);
    free(c);
}

void queue_doc_clear(struct queue_doc *doc)
{
    if (doc == NULL)
        return;
    for (size_t i = 0; i < doc->nattempts; i++) {
        struct queue_attempt_rec *a = &doc->attempts[i];
        free(a->status);
        free(a->enhanced);
        free(a->text);
        free(a->accepted);
        free(a->rejected);
        free(a->error);
    }
    free(doc->attempts);
    free(doc->message_id);
    free(doc->metadata);
    memset(doc, 0, sizeof *doc);
}

/* ---- the ids on the wire here ---- */

/* 1 when id is on the wire here; q->mu held. */
static int wire_has_locked(const struct queue *q, const char *id)
{
    for (size_t i = 0; i < q->nwire; i++)
        if (strcmp(q->wire[i], id) == 0)
            return 1;
    return 0;
}

/* Drops from c[0..*n) the messages already on the wire here: claimed
   again by this process after the reaper put a claim it still holds
   back to queued (its lease lapsed while the database did not answer),
   they must not become a second job sending the same message.  The
   claim that is already here goes on (the new claim's lease is its
   own: same owner). */
static void wire_drop_held(struct queue *q, struct queue_claimed *c, size_t *n)
{
    size_t kept = 0;
    pthread_mutex_lock(&q->mu);
    for (size_t i = 0; i < *n; i++) {
        if (wire_has_locked(q, c[i].id)) {
            free(c[i].blob);
            continue;
        }
        c[kept++] = c[i];
    }
    pthread_mutex_unlock(&q->mu);
    *n = kept;
}

/* Notes ids[0..n) as claimed here (their leases renewed); 0 or -1. */
static int wire_add(struct queue *q, const struct queue_claimed *c, size_t n)
{
    int rc = 0;
    pthread_mutex_lock(&q->mu);
    if (q->nwire + n > q->capwire) {
        size_t cap = q->capwire ? q->capwire : 64;
        while (cap < q->nwire + n)
            cap *= 2;
        char(*w)[QUEUE_ID_LEN] = realloc(q->wire, cap * sizeof *w);
        if (w == NULL) {
            rc = -1;
        } else {
            q->wire = w;
            q->capwire = cap;
        }
    }
    for (size_t i = 0; rc == 0 && i < n; i++)
        memcpy(q->wire[q->nwire++], c[i].id, QUEUE_ID_LEN);
    pthread_mutex_unlock(&q->mu);
    return rc;
}

/* Forgets id (its outcome is being recorded, or it went back). */
static void wire_del(struct queue *q, const char *id)
{
    pthread_mutex_lock(&q->mu);
    for (size_t i = 0; i < q->nwire; i++)
        if (strcmp(q->wire[i], id) == 0) {
            memcpy(q->wire[i], q->wire[--q->nwire], QUEUE_ID_LEN);
            break;
        }
    pthread_mutex_unlock(&q->mu);
}

/* The ids on the wire as a JSON array (ids are base64url: no escaping);
   caller frees; NULL when out of memory. */
static char *wire_json(struct queue *q)
{
    pthread_mutex_lock(&q->mu);
    size_t len = 3 + q->nwire * (QUEUE_ID_LEN + 3), used = 1;
    char *out = malloc(len);
    if (out != NULL) {
        out[0] = '[';
        for (size_t i = 0; i < q->nwire; i++)
            used += (size_t)snprintf(out + used, len - used, "%s\"%s\"",
                                     i ? "," : "", q->wire[i]);
        snprintf(out + used, len - used, "]");
    }
    pthread_mutex_unlock(&q->mu);
    return out;
}

/* ---- the keeper: heartbeat and reaper ---- */

/* Renews and reaps every lease/3 seconds until the queue closes. */
static void *keeper_main(void *arg)
{
    struct queue *q = arg;
    double every = q->lease_s / 3;
    pthread_mutex_lock(&q->mu);
    while (!q->closing) {
        struct timespec ts;
        double until = queue_wall_now() + every;
        ts.tv_sec = (time_t)until;
        ts.tv_nsec = (long)((until - (double)ts.tv_sec) * 1e9);
        pthread_cond_timedwait(&q->cv, &q->mu, &ts);
        if (q->closing)
            break;
        pthread_mutex_unlock(&q->mu);
        unsigned long n = 0;
        double now = queue_wall_now();
        char *ids = wire_json(q);
        /* Only what is on the wire: a message whose outcome could not be
           recorded lets its lease run out (unknown, never resent). */
        if (ids != NULL)
            q->ops->renew(q, now, q->lease_s, ids);
        free(ids);
        q->ops->reap(q, now, &n);
        pthread_mutex_lock(&q->mu);
        q->expired += n;
    }
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

/* The backend named by opts, or NULL. */
static const struct queue_ops *backend_of(const struct queue_opts *opts)
{
    if (opts->backend == NULL || strcmp(opts->backend, "sqlite") == 0)
        return &queue_sqlite_ops;
    if (strcmp(opts->backend, "postgres") == 0)
        return &queue_postgres_ops;
    return NULL;
}

int queue_open(const struct queue_opts *opts, struct queue **out, char *err,
               size_t errlen)
{
    const struct queue_ops *ops = backend_of(opts);
    struct queue *q = NULL;
    *out = NULL;
    if (ops == NULL) {
        snprintf(err, errlen, "no queue backend named %s", opts->backend);
        return -1;
    }
    if (ops->open(opts, &q, err, errlen) < 0)
        return -1;
    q->ops = ops;
    q->lease_s = opts->lease_s > 0 ? opts->lease_s : QUEUE_DEFAULT_LEASE_S;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
    if (pthread_create(&q->keeper, NULL, keeper_main, q) != 0) {
        snprintf(err, errlen, "cannot start the queue's lease keeper");
        ops->close(q);
        return -1;
    }
    q->keeper_on = 1;
    *out = q;
    return 0;
}

void queue_close(struct queue *q)
{
    if (q == NULL)
        return;
    pthread_mutex_lock(&q->mu);
    q->closing = 1;
    q->wake = NULL;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
    if (q->keeper_on)
        pthread_join(q->keeper, NULL);
    q->ops->close(q); /* calls queue_base_fini_ */
}

void queue_base_fini_(struct queue *q)
{
    free(q->wire);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
}

unsigned long queue_recovered(const struct queue *q)
{
    return q->ops->recovered(q);
}

const char *queue_backend(const struct queue *q)
{
    return q->ops->name;
}

double queue_lease_s(const struct queue *q)
{
    return q->lease_s;
}

unsigned long queue_expired(struct queue *q)
{
    pthread_mutex_lock(&q->mu);
    unsigned long n = q->expired;
    pthread_mutex_unlock(&q->mu);
    return n;
}

void queue_set_wake(struct queue *q, queue_wake_fn fn, void *ctx)
{
    pthread_mutex_lock(&q->mu);
    q->wake = fn;
    q->wake_ctx = ctx;
    pthread_mutex_unlock(&q->mu);
}

void queue_wake_(struct queue *q)
{
    pthread_mutex_lock(&q->mu);
    if (q->wake != NULL)
        q->wake(q->wake_ctx);
    pthread_mutex_unlock(&q->mu);
}

int queue_enqueue(struct queue *q, const struct queue_new *msgs, size_t n,
                  const struct queue_idem *idem, queue_done_fn done, void *ctx)
{
    return q->ops->enqueue(q, msgs, n, idem, done, ctx);
}

int queue_idem_finish(struct queue *q, const char *key, int http_status,
                      const char *response)
{
    return q->ops->idem_finish(q, key, http_status, response);
}

int queue_claim(struct queue *q, double now, size_t max, double lease_s,
                struct queue_claimed **out, size_t *n)
{
    int rc = q->ops->claim(q, now, max, lease_s, out, n);
    if (rc == QUEUE_OK)
        wire_drop_held(q, *out, n);
    if (rc == QUEUE_OK && wire_add(q, *out, *n) < 0)
        rc = QUEUE_ENOMEM; /* what was claimed goes back to queued
                                   once its lease lapses (never started) */
    if (rc != QUEUE_OK && *out != NULL) {
        queue_claimed_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

int queue_record(struct queue *q, const char *id, const struct queue_attempt *a,
                 enum queue_state state, double next_at)
{
    wire_del(q, id);
    return q->ops->record(q, id, a, state, next_at);
}

int queue_release(struct queue *q, const char *id)
{
    wire_del(q, id);
    return q->ops->release(q, id);
}

int queue_start(struct queue *q, const char *id)
{
    return q->ops->start(q, id);
}

int queue_start_all(struct queue *q, const char *const *ids, size_t n, int *rcs)
{
    int rc = QUEUE_OK;
    if (q->ops->start_all != NULL && n > 1)
        return q->ops->start_all(q, ids, n, rcs);
    for (size_t i = 0; i < n; i++) {
        rcs[i] = q->ops->start(q, ids[i]);
        if (rc == QUEUE_OK && rcs[i] != QUEUE_OK && rcs[i] != QUEUE_ECONFLICT)
            rc = rcs[i];
    }
    return rc;
}

int queue_ping(struct queue *q)
{
    return q->ops->ping(q);
}

int queue_cancel(struct queue *q, const char *id, enum queue_state *state)
{
    return q->ops->cancel(q, id, state);
}

int queue_get(struct queue *q, const char *id, struct queue_doc *doc)
{
    return q->ops->get(q, id, doc);
}

int queue_counts(struct queue *q, double now,
                 unsigned long counts[QUEUE_STATE__COUNT],
                 double *oldest_due_age)
{
    return q->ops->counts(q, now, counts, oldest_due_age);
}

int queue_next_due(struct queue *q, double *when)
{
    return q->ops->next_due(q, when);
}

int queue_list(struct queue *q, const struct queue_list_query *qry,
               struct queue_item **out, size_t *n)
{
    return q->ops->list(q, qry, out, n);
}

void queue_list_free(struct queue_item *items, size_t n)
{
    for (size_t i = 0; items != NULL && i < n; i++) {
        free(items[i].recipients);
        free(items[i].subject);
        free(items[i].message_id);
    }
    free(items);
}

int queue_log_sync(struct queue *q, const struct queue_sync_msg *m,
                   queue_logged_fn done, void *ctx)
{
    assert(queue_state_is_final(m->state)); /* never claimed */
    return q->ops->log_sync(q, m, done, ctx);
}

/* ---- the outbox: delivery events ---- */

static const char *const event_state_names[QUEUE_EV__COUNT] = {
    "pending",
    "delivered",
    "failed",
    "stopped",
};

const char *queue_event_state_name(enum queue_event_state s)
{
    return (int)s >= 0 && s < QUEUE_EV__COUNT ? event_state_names[s] : "?";
}

const char *queue_event_type(enum queue_state s)
{
    static const char *const types[QUEUE_STATE__COUNT] = {
        [QUEUE_RETRY] = "message.deferred",
        [QUEUE_SENT] = "message.sent",
        [QUEUE_PARTIAL] = "message.partial",
        [QUEUE_REJECTED] = "message.rejected",
        [QUEUE_FAILED] = "message.failed",
        [QUEUE_UNKNOWN] = "message.unknown",
        [QUEUE_CANCELLED] = "message.cancelled",
    };
    return (int)s >= 0 && s < QUEUE_STATE__COUNT ? types[s] : NULL;
}

void queue_events_free(struct queue_event *ev, size_t n)
{
    for (size_t i = 0; ev != NULL && i < n; i++) {
        free(ev[i].message_id);
        free(ev[i].metadata);
        free(ev[i].status);
        free(ev[i].enhanced);
        free(ev[i].text);
        free(ev[i].accepted);
        free(ev[i].rejected);
    }
    free(ev);
}

void queue_event_recs_free(struct queue_event_rec *ev, size_t n)
{
    for (size_t i = 0; ev != NULL && i < n; i++) {
        for (size_t k = 0; k < ev[i].ntries; k++)
            free(ev[i].tries[k].error);
        free(ev[i].tries);
    }
    free(ev);
}

/* Appends a try to e; 0 or -1. */
static int event_try_add(struct queue_event_rec *e,
                         const struct queue_event_row *row)
{
    struct queue_event_try *t = realloc(e->tries, (e->ntries + 1) * sizeof *t);
    if (t == NULL)
        return -1;
    e->tries = t;
    t = &t[e->ntries];
    t->at = row->at;
    t->http_status = row->http_status;
    t->error = row->error != NULL && row->error[0] != '\0' ? strdup(row->error)
                                                           : NULL;
    if (t->error == NULL && row->error != NULL && row->error[0] != '\0')
        return -1;
    e->ntries++;
    return 0;
}

int queue_event_row_add_(struct queue_event_rec **out, size_t *n, size_t *cap,
                         const struct queue_event_row *row)
{
    if (*n == 0 || strcmp((*out)[*n - 1].id, row->id) != 0) {
        if (*n == *cap) {
            size_t ncap = *cap ? 2 * *cap : 4;
            struct queue_event_rec *e = realloc(*out, ncap * sizeof *e);
            if (e == NULL)
                return -1;
            *out = e;
            *cap = ncap;
        }
        struct queue_event_rec *e = &(*out)[(*n)++];
        memset(e, 0, sizeof *e);
        snprintf(e->id, sizeof e->id, "%s", row->id);
        e->mstate = (enum queue_state)row->mstate;
        e->state = (enum queue_event_state)row->state;
        e->created_at = row->created_at;
        e->delivered_at = row->delivered_at;
    }
    return row->has_try ? event_try_add(&(*out)[*n - 1], row) : 0;
}

int queue_event_claim(struct queue *q, double now, size_t max, double lease_s,
                      struct queue_event **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    return q->ops->event_claim(q, now, max, lease_s, out, n);
}

int queue_event_result(struct queue *q, const char *id, double at,
                       int http_status, const char *error,
                       enum queue_event_state state, double next_at)
{
    return q->ops->event_result(q, id, at, http_status, error, state, next_at);
}

int queue_events_of(struct queue *q, const char *id,
                    struct queue_event_rec **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    return q->ops->events_of(q, id, out, n);
}

int queue_events_oldest(struct queue *q, double now, double *age)
{
    *age = 0;
    return q->ops->events_oldest(q, now, age);
}
