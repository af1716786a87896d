/*
 * queue/postgres.c - the queue (queue/queue.h) in a PostgreSQL database
 * that many mailpool replicas share.
 *
 * Public: queue_postgres_ops (queue/queue_impl.h), behind queue.h.
 *
 * Connections: queue.url is a libpq connection string; the password comes
 * from queue.password_file (its first line, given to libpq as a separate
 * parameter, never written anywhere) or from libpq's own PGPASSFILE.  A
 * small pool of connections (PGQ_POOL) serves every call; a connection
 * found broken is reset on its next use, so once the database is back the
 * calls work again.  One more connection LISTENs on the channel
 * mailpool_queue: an enqueue NOTIFYs it in its transaction, so idle
 * replicas wake at the commit (the delivery loop polls besides).
 *
 * Schema: tables named mailpool_*; mailpool_migrations holds one row per
 * version applied.  pgq_open takes pg_advisory_lock(PGQ_LOCK_KEY), reads
 * the version, applies the missing migrations each in a transaction and
 * unlocks: replicas starting together migrate once.  The outbox (version
 * 3): a trigger on mailpool_messages writes an event row for each change
 * to a state of mailpool_outbox.states, in the transaction of the change;
 * event claims use FOR UPDATE SKIP LOCKED and a lease, like messages.
 *
 * Claims: one statement, UPDATE ... WHERE id IN (SELECT ... FOR UPDATE
 * SKIP LOCKED) RETURNING, sets the owner (this replica's name) and the
 * lease, and logs each claim in mailpool_claims.  A worker marks the
 * message started (queue_start) before its SMTP transaction begins; the
 * reaper makes an expired started message unknown and sends an expired
 * unstarted one back to queued.  Recording an outcome or
 * releasing a message applies only while it is still this replica's and
 * sending, so a reaped message stays unknown.  Cancel is one conditional
 * UPDATE: a claim and a cancel racing cannot both win.
 *
 * Every call but enqueue's callback runs on the caller's thread and waits
 * for the database; queue_enqueue and queue_log_sync call their done
 * callback before they return.  The waits use libpq's non-blocking API:
 * connections are made with PQconnectStartParams/PQconnectPoll (made
 * again with PQresetStart/PQresetPoll), statements sent with
 * PQsendQuery*, and every wait is a poll on PQsocket with a deadline
 * (PGQ_CONNECT_MS, PGQ_STATEMENT_MS, PGQ_PING_MS for /readyz), so a
 * database that stops answering cannot hold a thread for ever; the
 * listener waits for NOTIFYs the same way.  What still blocks: a host
 * name in queue.url is resolved by libpq synchronously, and the caller's
 * thread waits (up to the deadline) for the answer it needs.
 * Files: this one, queue/postgres_conn.c and queue/postgres_write.c,
 * sharing queue/postgres_impl.h.
 * Errors: QUEUE_E* codes; libpq's words go to the caller of queue_open
 * only.  Threads: q->mu guards the pool's free list; each connection is
 * used by one thread at a time; the listener's connection is the listener
 * thread's alone; queue_ping's under q->ping_mu.
 */
#include "queue/postgres_impl.h"

#include <errno.h>
#include <limits.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- reads ---- */

/* Reads the attempts of doc->id into doc. */
static int pgq_attempts(struct pgq *q, struct queue_doc *doc)
{
    const char *vals[] = { doc->id };
    PGresult *r = pgq_exec(q,
                           "SELECT at, status, code, enhanced, text,"
                           " accepted, rejected, error FROM"
                           " mailpool_attempts WHERE message = $1 ORDER BY"
                           " n",
                           1, vals, PGRES_TUPLES_OK);
    if (r == NULL)
        return QUEUE_EIO;
    size_t k = (size_t)PQntuples(r);
    doc->attempts = calloc(k + 1, sizeof *doc->attempts);
    if (doc->attempts == NULL) {
        PQclear(r);
        return QUEUE_ENOMEM;
    }
    for (size_t i = 0; i < k; i++) {
        struct queue_attempt_rec *a = &doc->attempts[i];
        int row = (int)i;
        a->at = strtod(PQgetvalue(r, row, 0), NULL);
        a->status = pgq_dup(r, row, 1);
        a->code = (int)strtol(PQgetvalue(r, row, 2), NULL, 10);
        a->enhanced = pgq_dup(r, row, 3);
        a->text = pgq_dup(r, row, 4);
        a->accepted = pgq_dup(r, row, 5);
        a->rejected = pgq_dup(r, row, 6);
        a->error = pgq_dup(r, row, 7);
        doc->nattempts++;
    }
    PQclear(r);
    return QUEUE_OK;
}

static int pgq_getdoc(struct queue *qb, const char *id, struct queue_doc *doc)
{
    struct pgq *q = (struct pgq *)qb;
    const char *vals[] = { id };
    int rc;
    memset(doc, 0, sizeof *doc);
    snprintf(doc->id, sizeof doc->id, "%s", id);
    PGresult *r = pgq_exec(q,
                           "SELECT state, created_at, due_at,"
                           " message_id, metadata FROM mailpool_messages"
                           " WHERE id = $1",
                           1, vals, PGRES_TUPLES_OK);
    if (r == NULL)
        return QUEUE_EIO;
    if (PQntuples(r) == 1) {
        doc->state = (enum queue_state)strtol(PQgetvalue(r, 0, 0), NULL, 10);
        doc->created_at = strtod(PQgetvalue(r, 0, 1), NULL);
        if (doc->state == QUEUE_QUEUED || doc->state == QUEUE_SCHEDULED ||
            doc->state == QUEUE_RETRY)
            doc->next_attempt_at = strtod(PQgetvalue(r, 0, 2), NULL);
        doc->message_id = pgq_dup(r, 0, 3);
        doc->metadata = pgq_dup(r, 0, 4);
        rc = pgq_attempts(q, doc);
    } else {
        rc = QUEUE_ENOTFOUND;
    }
    PQclear(r);
    if (rc != QUEUE_OK)
        queue_doc_clear(doc);
    return rc;
}

static int pgq_counts(struct queue *qb, double now,
                      unsigned long counts[QUEUE_STATE__COUNT],
                      double *oldest_due_age)
{
    struct pgq *q = (struct pgq *)qb;
    char at[40];
    const char *vals[] = { at };
    memset(counts, 0, QUEUE_STATE__COUNT * sizeof counts[0]);
    *oldest_due_age = 0;
    pgq_num(at, sizeof at, now);
    PGresult *r = pgq_exec(q,
                           "SELECT state, count(*), NULL FROM"
                           " mailpool_messages GROUP BY state UNION ALL"
                           " SELECT -1, 0, min(due_at) FROM"
                           " mailpool_messages WHERE state IN (0, 1, 3) AND"
                           " due_at <= $1::float8",
                           1, vals, PGRES_TUPLES_OK);
    if (r == NULL)
        return QUEUE_EIO;
    for (int i = 0; i < PQntuples(r); i++) {
        long s = strtol(PQgetvalue(r, i, 0), NULL, 10);
        if (s >= 0 && s < QUEUE_STATE__COUNT)
            counts[s] = strtoul(PQgetvalue(r, i, 1), NULL, 10);
        else if (s == -1 && !PQgetisnull(r, i, 2))
            *oldest_due_age = now - strtod(PQgetvalue(r, i, 2), NULL);
    }
    PQclear(r);
    return QUEUE_OK;
}

static int pgq_next_due(struct queue *qb, double *when)
{
    struct pgq *q = (struct pgq *)qb;
    PGresult *r = pgq_exec(q,
                           "SELECT min(due_at) FROM mailpool_messages"
                           " WHERE state IN (0, 1, 3)",
                           0, NULL, PGRES_TUPLES_OK);
    if (r == NULL)
        return QUEUE_EIO;
    int found = !PQgetisnull(r, 0, 0);
    if (found)
        *when = strtod(PQgetvalue(r, 0, 0), NULL);
    PQclear(r);
    return found;
}

/* ---- the outbox: delivery events ---- */

/* Copies the claimed events of r into out[0..*n). */
static int pgq_events_copy(const PGresult *r, struct queue_event *out,
                           size_t *n)
{
    for (int i = 0; i < PQntuples(r); i++) {
        struct queue_event *ev = &out[(*n)++];
        snprintf(ev->id, sizeof ev->id, "%s", PQgetvalue(r, i, 0));
        snprintf(ev->message, sizeof ev->message, "%s", PQgetvalue(r, i, 1));
        ev->state = (enum queue_state)strtol(PQgetvalue(r, i, 2), NULL, 10);
        ev->attempt = (int)strtol(PQgetvalue(r, i, 3), NULL, 10);
        ev->created_at = strtod(PQgetvalue(r, i, 4), NULL);
        ev->tries = (int)strtol(PQgetvalue(r, i, 5), NULL, 10);
        ev->code = (int)strtol(PQgetvalue(r, i, 9), NULL, 10);
        char **dst[] = { &ev->message_id, &ev->metadata,
                         &ev->status,     NULL,
                         &ev->enhanced,   &ev->text,
                         &ev->accepted,   &ev->rejected };
        for (int k = 0; k < 8; k++)
            if (dst[k] != NULL && !PQgetisnull(r, i, 6 + k) &&
                (*dst[k] = pgq_dup(r, i, 6 + k)) == NULL)
                return QUEUE_ENOMEM;
    }
    return QUEUE_OK;
}

static int pgq_event_claim(struct queue *qb, double now, size_t max,
                           double lease_s, struct queue_event **out, size_t *n)
{
    struct pgq *q = (struct pgq *)qb;
    char at[40], lim[24], until[40];
    const char *vals[] = { at, lim, until };
    if (max == 0)
        return QUEUE_OK;
    pgq_num(at, sizeof at, now);
    pgq_num(until, sizeof until, now + lease_s);
    snprintf(lim, sizeof lim, "%zu", max);
    PGresult *r = pgq_exec(
        q,
        "WITH c AS (UPDATE mailpool_events SET lease_until = $3::float8"
        " WHERE id IN (SELECT id FROM mailpool_events WHERE state = 0 AND"
        " due_at <= $1::float8 AND (lease_until IS NULL OR lease_until <"
        " $1::float8) ORDER BY due_at LIMIT $2::int FOR UPDATE SKIP LOCKED)"
        " RETURNING id, message, mstate, attempt, created_at)"
        " SELECT c.id, c.message, c.mstate, c.attempt, c.created_at,"
        " (SELECT count(*) FROM mailpool_event_tries t WHERE t.event ="
        " c.id), m.message_id, m.metadata, a.status, a.code, a.enhanced,"
        " a.text, a.accepted, a.rejected FROM c LEFT JOIN mailpool_messages"
        " m ON m.id = c.message LEFT JOIN mailpool_attempts a ON a.message"
        " = c.message AND a.n = c.attempt",
        3, vals, PGRES_TUPLES_OK);
    if (r == NULL)
        return QUEUE_EIO;
    *out = calloc((size_t)PQntuples(r) + 1, sizeof **out);
    int rc = *out != NULL ? pgq_events_copy(r, *out, n) : QUEUE_ENOMEM;
    PQclear(r);
    if (rc != QUEUE_OK) {
        queue_events_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

static int pgq_event_result(struct queue *qb, const char *id, double at,
                            int http_status, const char *error,
                            enum queue_event_state state, double next_at)
{
    struct pgq *q = (struct pgq *)qb;
    char when[40], http[16], st[8], due[40];
    const char *vals[] = { id,
                           when,
                           http_status > 0 ? http : NULL,
                           error != NULL && error[0] ? error : NULL,
                           st,
                           due };
    pgq_num(when, sizeof when, at);
    pgq_num(due, sizeof due, next_at);
    snprintf(http, sizeof http, "%d", http_status);
    snprintf(st, sizeof st, "%d", (int)state);
    int rc = pgq_exec_cmd(
        q,
        "WITH t AS (INSERT INTO mailpool_event_tries (event, n, at,"
        " http_status, error) SELECT $1, coalesce(max(n), 0) + 1,"
        " $2::float8, $3::int, $4 FROM mailpool_event_tries WHERE event ="
        " $1) UPDATE mailpool_events SET state = $5::int, lease_until ="
        " NULL, due_at = $6::float8, delivered_at = CASE WHEN $5::int = 1"
        " THEN $2::float8 END WHERE id = $1",
        6, vals);
    if (rc != QUEUE_OK || state != QUEUE_EV_STOPPED)
        return rc;
    /* A 410: the type stays stopped until the configuration changes. */
    return pgq_exec_cmd(
        q,
        "WITH e AS (SELECT mstate FROM mailpool_events WHERE id = $1),"
        " o AS (UPDATE mailpool_outbox SET stopped = stopped | (1 << (SELECT"
        " mstate FROM e)) WHERE k = 1) UPDATE mailpool_events SET state = 3,"
        " lease_until = NULL WHERE state = 0 AND mstate = (SELECT mstate"
        " FROM e)",
        1, vals);
}

static int pgq_events_of(struct queue *qb, const char *id,
                         struct queue_event_rec **out, size_t *n)
{
    struct pgq *q = (struct pgq *)qb;
    const char *vals[] = { id };
    size_t cap = 0;
    int rc = QUEUE_OK;
    PGresult *r = pgq_exec(
        q,
        "SELECT e.id, e.mstate, e.state, e.created_at, e.delivered_at, t.n,"
        " t.at, t.http_status, t.error FROM mailpool_events e LEFT JOIN"
        " mailpool_event_tries t ON t.event = e.id WHERE e.message = $1"
        " ORDER BY e.created_at, e.id, t.n",
        1, vals, PGRES_TUPLES_OK);
    if (r == NULL)
        return QUEUE_EIO;
    for (int i = 0; i < PQntuples(r) && rc == QUEUE_OK; i++) {
        struct queue_event_row row = {
            .id = PQgetvalue(r, i, 0),
            .mstate = (int)strtol(PQgetvalue(r, i, 1), NULL, 10),
            .state = (int)strtol(PQgetvalue(r, i, 2), NULL, 10),
            .created_at = strtod(PQgetvalue(r, i, 3), NULL),
            .delivered_at = strtod(PQgetvalue(r, i, 4), NULL),
            .has_try = !PQgetisnull(r, i, 5),
            .at = strtod(PQgetvalue(r, i, 6), NULL),
            .http_status = (int)strtol(PQgetvalue(r, i, 7), NULL, 10),
            .error = PQgetisnull(r, i, 8) ? NULL : PQgetvalue(r, i, 8),
        };
        if (queue_event_row_add_(out, n, &cap, &row) < 0)
            rc = QUEUE_ENOMEM;
    }
    PQclear(r);
    if (rc != QUEUE_OK) {
        queue_event_recs_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

static int pgq_events_oldest(struct queue *qb, double now, double *age)
{
    struct pgq *q = (struct pgq *)qb;
    PGresult *r = pgq_exec(q,
                           "SELECT min(created_at) FROM mailpool_events"
                           " WHERE state = 0",
                           0, NULL, PGRES_TUPLES_OK);
    if (r == NULL)
        return QUEUE_EIO;
    if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
        *age = now - strtod(PQgetvalue(r, 0, 0), NULL);
    PQclear(r);
    return QUEUE_OK;
}

/* SELECT 1 on a connection of its own (never waiting for the pool's),
   answered within PGQ_PING_MS, or made again (PGQ_CONNECT_MS). */
static int pgq_ping(struct queue *qb)
{
    struct pgq *q = (struct pgq *)qb;
    PGresult *r = NULL;
    pthread_mutex_lock(&q->ping_mu);
    PGconn *c = q->ping;
    if (c == NULL)
        c = q->ping = pgq_connect(q);
    else if (PQstatus(c) != CONNECTION_OK ||
             PQtransactionStatus(c) != PQTRANS_IDLE)
        pgq_reconnect(c);
    if (c != NULL && PQstatus(c) == CONNECTION_OK &&
        PQsendQuery(c, "SELECT 1") != 0)
        r = pgq_wait(c, PGQ_PING_MS);
    int ok = r != NULL && PQresultStatus(r) == PGRES_TUPLES_OK;
    PQclear(r);
    pthread_mutex_unlock(&q->ping_mu);
    return ok ? QUEUE_OK : QUEUE_EIO;
}

/* ---- the listener ---- */

/* 1 once pgq_close began. */
static int pgq_stopping(struct pgq *q)
{
    pthread_mutex_lock(&q->mu);
    int stop = q->stop;
    pthread_mutex_unlock(&q->mu);
    return stop;
}

/* A connection that LISTENs on mailpool_queue, or NULL. */
static PGconn *pgq_listen_conn(struct pgq *q)
{
    PGconn *c = pgq_connect(q);
    if (c != NULL && PQstatus(c) == CONNECTION_OK &&
        pgq_cmd(c, "LISTEN mailpool_queue") == 0)
        return c;
    PQfinish(c);
    return NULL;
}

/* Waits for NOTIFYs and wakes the delivery loop; reconnects when the
   connection breaks (the delivery loop's poll covers the gap). */
static void *pgq_listen_main(void *arg)
{
    struct pgq *q = arg;
    PGconn *c = NULL;
    while (!pgq_stopping(q)) {
        if (c == NULL && (c = pgq_listen_conn(q)) == NULL) {
            usleep(PGQ_LISTEN_POLL_MS * 1000);
            continue;
        }
        struct pollfd pfd = { .fd = PQsocket(c), .events = POLLIN };
        if (poll(&pfd, 1, PGQ_LISTEN_POLL_MS) < 0 && errno != EINTR)
            break;
        if (PQconsumeInput(c) == 0) {
            PQfinish(c);
            c = NULL;
            queue_wake_(&q->base); /* what came meanwhile */
            continue;
        }
        PGnotify *nf;
        int woke = 0;
        while ((nf = PQnotifies(c)) != NULL) {
            woke = 1;
            PQfreemem(nf);
        }
        if (woke)
            queue_wake_(&q->base);
    }
    PQfinish(c);
    return NULL;
}

/* ---- open, close ---- */

/* Reads the first line of path into a new string; NULL with err. */
static char *pgq_read_password(const char *path, char *err, size_t errlen)
{
    char buf[1024];
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "queue.password_file %s: %s", path,
                 strerror(errno));
        return NULL;
    }
    if (fgets(buf, sizeof buf, f) == NULL)
        buf[0] = '\0';
    fclose(f);
    buf[strcspn(buf, "\r\n")] = '\0';
    char *pw = strdup(buf);
    explicit_bzero(buf, sizeof buf);
    if (pw == NULL)
        snprintf(err, errlen, "out of memory");
    return pw;
}

/* This replica's name: host, pid and 72 random bits (the twelve
   characters of a new id after its first eight, which are the time: two
   replicas of one host name and pid, as containers' pid 1 are, may start
   in one millisecond). */
static void pgq_name(char *buf, size_t len)
{
    char host[64], id[QUEUE_ID_LEN];
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "?");
    host[sizeof host - 1] = '\0';
    queue_new_id(id);
    snprintf(buf, len, "%s:%ld:%.12s", host, (long)getpid(), id + 8);
}

/* Frees q and everything it holds (no thread running). */
static void pgq_free(struct pgq *q)
{
    for (int i = 0; i < PGQ_POOL; i++)
        PQfinish(q->conns[i]);
    if (q->password != NULL) {
        explicit_bzero(q->password, strlen(q->password));
        free(q->password);
    }
    free(q->url);
    PQfinish(q->ping);
    pthread_mutex_destroy(&q->ping_mu);
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->free_cv);
    free(q);
}

/* Stores which states write events and what they go to (every replica
   of a database must have the same webhook settings); a changed
   configuration starts the types stopped by a 410 again.  0 or -1. */
static int pgq_outbox_set(struct pgq *q, PGconn *c, char *err, size_t errlen)
{
    char states[16];
    const char *vals[] = { states, q->ev_config };
    snprintf(states, sizeof states, "%u", q->ev_states);
    PGresult *r = pgq_run(c,
                          "UPDATE mailpool_outbox SET states = $1::int,"
                          " stopped = CASE WHEN config IS NOT DISTINCT FROM"
                          " $2 THEN stopped ELSE 0 END, config = $2 WHERE"
                          " k = 1",
                          2, vals, PGRES_COMMAND_OK);
    if (r == NULL) {
        snprintf(err, errlen, "outbox: %s", PQerrorMessage(c));
        return -1;
    }
    PQclear(r);
    return 0;
}

/* Connects the first pooled connection and migrates: 0 or -1 with err. */
static int pgq_first(struct pgq *q, char *err, size_t errlen)
{
    PGconn *c = q->conns[0] = pgq_connect(q);
    if (c == NULL || PQstatus(c) != CONNECTION_OK) {
        snprintf(err, errlen,
                 "cannot connect to the queue.url database:"
                 " %s",
                 c == NULL                      ? "out of memory"
                 : PQerrorMessage(c)[0] != '\0' ? PQerrorMessage(c)
                                                : "no answer within 5 s");
        err[strcspn(err, "\n")] = '\0';
        return -1;
    }
    if (pgq_migrate(q, c, err, errlen) < 0 ||
        pgq_outbox_set(q, c, err, errlen) < 0) {
        err[strcspn(err, "\n")] = '\0';
        return -1;
    }
    return 0;
}

static int pgq_open(const struct queue_opts *opts, struct queue **out,
                    char *err, size_t errlen)
{
    struct pgq *q = calloc(1, sizeof *q);
    *out = NULL;
    if (q == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    pthread_mutex_init(&q->mu, NULL);
    pthread_mutex_init(&q->ping_mu, NULL);
    pthread_cond_init(&q->free_cv, NULL);
    q->base.lease_s = opts->lease_s > 0 ? opts->lease_s : 60.0;
    q->retention_s = opts->retention_s > 0 ? opts->retention_s : 7 * 86400.0;
    q->idem_ttl_s = opts->idem_ttl_s > 0 ? opts->idem_ttl_s : 86400.0;
    q->ev_states = opts->event_states;
    q->ev_config = opts->event_config; /* borrowed: pgq_first only */
    pgq_name(q->owner, sizeof q->owner);
    q->url = strdup(opts->url != NULL ? opts->url : "");
    if (q->url == NULL) {
        snprintf(err, errlen, "out of memory");
        pgq_free(q);
        return -1;
    }
    if ((opts->password_file != NULL &&
         (q->password = pgq_read_password(opts->password_file, err, errlen)) ==
             NULL) ||
        pgq_first(q, err, errlen) < 0) {
        pgq_free(q);
        return -1;
    }
    if (pthread_create(&q->listener, NULL, pgq_listen_main, q) != 0) {
        snprintf(err, errlen, "cannot start the queue's listener");
        pgq_free(q);
        return -1;
    }
    q->listening = 1;
    *out = &q->base;
    return 0;
}

static void pgq_close(struct queue *qb)
{
    struct pgq *q = (struct pgq *)qb;
    if (q == NULL)
        return;
    pthread_mutex_lock(&q->mu);
    q->stop = 1;
    pthread_mutex_unlock(&q->mu);
    if (q->listening)
        pthread_join(q->listener, NULL);
    queue_base_fini_(qb);
    pgq_free(q);
}

static unsigned long pgq_recovered(const struct queue *qb)
{
    (void)qb;
    return 0; /* the reaper does it, after the lease */
}

/* ---- the message log (queue_list) ---- */

/* The SELECT of qry into sql and its parameters into vals (text, in
   bufs); *n how many.  Fixed fragments only: values are parameters. */
static void pgq_list_sql(const struct queue_list_query *qry, char *sql,
                         size_t len, char bufs[4][40], const char *vals[7],
                         int *n)
{
    char where[512] = "";
    size_t w = 0;
    int k = 0;
#define PGQ_WHERE(...) \
    w += (size_t)snprintf(where + w, sizeof where - w, __VA_ARGS__)
    if (qry->states != 0) {
        snprintf(bufs[0], 40, "%u", qry->states);
        vals[k++] = bufs[0];
        PGQ_WHERE(" AND ((1 << state) & $%d::int) <> 0", k);
    }
    if (qry->recipient != NULL) {
        vals[k++] = qry->recipient;
        PGQ_WHERE(" AND id IN (SELECT message FROM mailpool_rcpts WHERE"
                  " addr = lower($%d))",
                  k);
    }
    if (qry->message_id != NULL) {
        vals[k++] = qry->message_id;
        PGQ_WHERE(" AND message_id = $%d", k);
    }
    if (qry->after > 0) {
        pgq_num(bufs[1], 40, qry->after);
        vals[k++] = bufs[1];
        PGQ_WHERE(" AND created_at >= $%d::float8", k);
    }
    if (qry->before > 0) {
        pgq_num(bufs[2], 40, qry->before);
        vals[k++] = bufs[2];
        if (qry->before_id != NULL) {
            vals[k++] = qry->before_id;
            PGQ_WHERE(" AND (created_at < $%d::float8 OR (created_at ="
                      " $%d::float8 AND id < $%d))",
                      k - 1, k - 1, k);
        } else {
            PGQ_WHERE(" AND created_at < $%d::float8", k);
        }
    }
#undef PGQ_WHERE
    snprintf(bufs[3], 40, "%zu", qry->limit);
    vals[k++] = bufs[3];
    snprintf(sql, len,
             "SELECT id, state, created_at, attempts, (SELECT code"
             " FROM mailpool_attempts WHERE message = m.id ORDER BY n DESC"
             " LIMIT 1), recipients, subject, message_id FROM"
             " mailpool_messages m WHERE true%s ORDER BY created_at DESC,"
             " id DESC LIMIT $%d::int",
             where, k);
    *n = k;
}

static int pgq_list(struct queue *qb, const struct queue_list_query *qry,
                    struct queue_item **out, size_t *n)
{
    struct pgq *q = (struct pgq *)qb;
    char sql[1024], bufs[4][40];
    const char *vals[7];
    int nv = 0, rows;
    *n = 0;
    *out = calloc(qry->limit > 0 ? qry->limit : 1, sizeof **out);
    if (*out == NULL)
        return QUEUE_ENOMEM;
    pgq_list_sql(qry, sql, sizeof sql, bufs, vals, &nv);
    PGresult *r = pgq_exec(q, sql, nv, vals, PGRES_TUPLES_OK);
    if (r == NULL) {
        free(*out);
        *out = NULL;
        return QUEUE_EIO;
    }
    rows = PQntuples(r);
    for (int i = 0; i < rows && *n < qry->limit; i++) {
        struct queue_item *it = &(*out)[(*n)++];
        snprintf(it->id, sizeof it->id, "%s", PQgetvalue(r, i, 0));
        it->state = (enum queue_state)strtol(PQgetvalue(r, i, 1), NULL, 10);
        it->created_at = strtod(PQgetvalue(r, i, 2), NULL);
        it->attempts = (int)strtol(PQgetvalue(r, i, 3), NULL, 10);
        it->last_code = PQgetisnull(r, i, 4)
                            ? 0
                            : (int)strtol(PQgetvalue(r, i, 4), NULL, 10);
        it->recipients = pgq_dup(r, i, 5);
        it->subject = pgq_dup(r, i, 6);
        it->message_id = pgq_dup(r, i, 7);
        if ((it->recipients == NULL && !PQgetisnull(r, i, 5)) ||
            (it->subject == NULL && !PQgetisnull(r, i, 6)) ||
            (it->message_id == NULL && !PQgetisnull(r, i, 7))) {
            PQclear(r);
            queue_list_free(*out, *n);
            *out = NULL;
            *n = 0;
            return QUEUE_ENOMEM;
        }
    }
    PQclear(r);
    return QUEUE_OK;
}

const struct queue_ops queue_postgres_ops = {
    .name = "postgres",
    .open = pgq_open,
    .close = pgq_close,
    .recovered = pgq_recovered,
    .enqueue = pgq_enqueue,
    .idem_finish = pgq_idem_finish,
    .claim = pgq_claim,
    .record = pgq_record,
    .release = pgq_release,
    .cancel = pgq_cancel,
    .get = pgq_getdoc,
    .counts = pgq_counts,
    .next_due = pgq_next_due,
    .renew = pgq_renew,
    .reap = pgq_reap,
    .list = pgq_list,
    .log_sync = pgq_log_sync,
    .event_claim = pgq_event_claim,
    .event_result = pgq_event_result,
    .events_of = pgq_events_of,
    .events_oldest = pgq_events_oldest,
    .start = pgq_start,
    .ping = pgq_ping,
};
