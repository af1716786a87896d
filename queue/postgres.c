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
 * Errors: QUEUE_E* codes; libpq's words go to the caller of queue_open
 * only.  Threads: q->mu guards the pool's free list; each connection is
 * used by one thread at a time; the listener's connection is the listener
 * thread's alone; queue_ping's under q->ping_mu.
 */
#include "queue/queue_impl.h"

#include <errno.h>
#include <limits.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PGQ_POOL 4
#define PGQ_LOCK_KEY "7210417016"       /* pg_advisory_lock: migrations */
#define PGQ_SCHEMA_VERSION 4
#define PGQ_PURGE_EVERY_S 3600.0
#define PGQ_LISTEN_POLL_MS 250
#define PGQ_STATEMENT_MS 30000          /* a statement's answer, at most */
#define PGQ_CONNECT_MS 5000             /* a connection's setup, at most */
#define PGQ_PING_MS 2000                /* queue_ping's answer, at most */

struct pgq {
    struct queue base;          /* first: a struct queue * is a pgq * */
    char *url;
    char *password;             /* NULL: libpq's own */
    char owner[96];             /* this replica: host:pid:random */
    PGconn *conns[PGQ_POOL];    /* guarded by mu while free */
    int busy[PGQ_POOL];         /* guarded by mu */
    pthread_mutex_t mu;
    pthread_cond_t free_cv;     /* a connection was given back */
    pthread_t listener;
    int listening;
    int stop;                   /* guarded by mu */
    pthread_mutex_t ping_mu;    /* guards ping */
    PGconn *ping;               /* queue_ping's own connection */
    double retention_s, idem_ttl_s, last_purge;
    unsigned ev_states;         /* queue_opts.event_states */
    const char *ev_config;      /* queue_opts.event_config, during open */
};

/* ---- connections ---- */

/* Drops the server's notices (they would go to standard error). */
static void pgq_notice(void *arg, const char *msg)
{
    (void)arg;
    (void)msg;
}

/* Milliseconds of the monotonic clock. */
static long long pgq_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until c's socket is ready for events or until end (pgq_ms):
   0 when ready or interrupted, -1 when the time ran out or poll failed. */
static int pgq_poll(PGconn *c, short events, long long end)
{
    long long left = end - pgq_ms();
    struct pollfd pfd = { .fd = PQsocket(c), .events = events };
    if (left <= 0 || pfd.fd < 0)
        return -1;
    int n = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
    return n > 0 || (n < 0 && errno == EINTR) ? 0 : -1;
}

/* Drives a connection being made (PQconnectStartParams, with
   PQconnectPoll) or made again (PQresetStart, with PQresetPoll) to its
   end, waiting on its socket with poll, at most PGQ_CONNECT_MS: 0 when
   connected (queries then non-blocking, see pgq_wait), else -1. */
static int pgq_connect_wait(PGconn *c,
                            PostgresPollingStatusType (*step)(PGconn *))
{
    long long end = pgq_ms() + PGQ_CONNECT_MS;
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    if (c == NULL || PQstatus(c) == CONNECTION_BAD)
        return -1;
    while (st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
        if (pgq_poll(c, st == PGRES_POLLING_READING ? POLLIN : POLLOUT,
                     end) < 0)
            return -1;
        st = step(c);
    }
    if (st != PGRES_POLLING_OK)
        return -1;
    PQsetnonblocking(c, 1);
    return 0;
}

/* A new connection to q's database (check PQstatus), made without
   blocking in libpq (host names are still resolved blocking). */
static PGconn *pgq_connect(const struct pgq *q)
{
    const char *keys[] = { "dbname", "password", NULL };
    const char *vals[] = { q->url, q->password, NULL };
    if (q->password == NULL)
        keys[1] = NULL;
    PGconn *c = PQconnectStartParams(keys, vals, 1);
    if (c != NULL) {
        PQsetNoticeProcessor(c, pgq_notice, NULL);
        pgq_connect_wait(c, PQconnectPoll);
    }
    return c;
}

/* Connects c again: 1 when connected. */
static int pgq_reconnect(PGconn *c)
{
    return PQresetStart(c) != 0 && pgq_connect_wait(c, PQresetPoll) == 0;
}

/* Waits for the results of what was just sent on c (PQsendQuery*) with
   PQsocket + poll, at most ms in all, rather than blocking in libpq: the
   last result, or NULL when sending or reading failed or the time ran out
   (the connection, left busy, is reset on its next use). */
static PGresult *pgq_wait(PGconn *c, long long ms)
{
    long long end = pgq_ms() + ms;
    PGresult *last = NULL, *r;
    for (;;) {
        int flush = PQflush(c);
        if (flush < 0)
            break;
        if (flush == 0 && !PQisBusy(c)) {
            if ((r = PQgetResult(c)) == NULL)
                return last;
            PQclear(last);
            last = r;
            continue;
        }
        if (pgq_poll(c, flush ? POLLIN | POLLOUT : POLLIN, end) < 0 ||
            PQconsumeInput(c) == 0)
            break;
    }
    PQclear(last);
    return NULL;
}

/* PQexecParams through pgq_wait (lens and fmts may be NULL: text). */
static PGresult *pgq_params(PGconn *c, const char *sql, int n,
                            const char *const *vals, const int *lens,
                            const int *fmts)
{
    if (PQsendQueryParams(c, sql, n, NULL, vals, lens, fmts, 0) == 0)
        return NULL;
    return pgq_wait(c, PGQ_STATEMENT_MS);
}

/* Takes a free connection (waiting for one), reset when broken: its slot,
   or -1 when the database cannot be reached. */
static int pgq_get(struct pgq *q)
{
    int slot = -1;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        for (int i = 0; i < PGQ_POOL && slot < 0; i++)
            if (!q->busy[i])
                slot = i;
        if (slot >= 0)
            break;
        pthread_cond_wait(&q->free_cv, &q->mu);
    }
    q->busy[slot] = 1;
    pthread_mutex_unlock(&q->mu);
    PGconn *c = q->conns[slot];
    if (c == NULL) {
        q->conns[slot] = pgq_connect(q);
    } else if (PQstatus(c) != CONNECTION_OK ||
               PQtransactionStatus(c) != PQTRANS_IDLE) {
        pgq_reconnect(c);
    }
    if (q->conns[slot] == NULL || PQstatus(q->conns[slot]) != CONNECTION_OK) {
        pthread_mutex_lock(&q->mu);
        q->busy[slot] = 0;
        pthread_cond_signal(&q->free_cv);
        pthread_mutex_unlock(&q->mu);
        return -1;
    }
    return slot;
}

/* Gives the connection of slot back. */
static void pgq_put(struct pgq *q, int slot)
{
    pthread_mutex_lock(&q->mu);
    q->busy[slot] = 0;
    pthread_cond_signal(&q->free_cv);
    pthread_mutex_unlock(&q->mu);
}

/* Runs sql with text parameters (NULL: SQL NULL); the result when it is
   status ok, else NULL (the result cleared). */
static PGresult *pgq_run(PGconn *c, const char *sql, int n,
                         const char *const *vals, ExecStatusType ok)
{
    PGresult *r = pgq_params(c, sql, n, vals, NULL, NULL);
    if (r != NULL && PQresultStatus(r) == ok)
        return r;
    PQclear(r);
    return NULL;
}

/* Runs statements without parameters or rows (several, ';'-separated,
   allowed): 0 or -1. */
static int pgq_cmd(PGconn *c, const char *sql)
{
    PGresult *r = PQsendQuery(c, sql) != 0 ? pgq_wait(c, PGQ_STATEMENT_MS)
                                           : NULL;
    int ok = r != NULL && PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok ? 0 : -1;
}

/* After a failed statement: 1 when the connection had died (the server
   restarted: the statement never reached it) and is connected again. */
static int pgq_revived(PGconn *c)
{
    if (PQstatus(c) != CONNECTION_BAD)
        return 0;
    return pgq_reconnect(c);
}

/* A double as text for a parameter. */
static void pgq_num(char *buf, size_t len, double v)
{
    snprintf(buf, len, "%.6f", v);
}

/* A copy of a text field, NULL for NULL. */
static char *pgq_dup(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : strdup(PQgetvalue(r, row, col));
}

/* ---- schema ---- */

static const char *const pgq_migrations[PGQ_SCHEMA_VERSION] = {
    /* 0 -> 1 */
    "CREATE TABLE mailpool_messages ("
    " id text PRIMARY KEY, state int NOT NULL,"
    " created_at float8 NOT NULL, due_at float8 NOT NULL,"
    " lease_until float8, owner text, finished_at float8,"
    " attempts int NOT NULL DEFAULT 0, message_id text, metadata text,"
    " blob bytea NOT NULL);"
    "CREATE INDEX mailpool_messages_due ON mailpool_messages (due_at)"
    " WHERE state IN (0, 1, 3);"
    "CREATE INDEX mailpool_messages_sending ON mailpool_messages"
    " (lease_until) WHERE state = 2;"
    "CREATE INDEX mailpool_messages_finished ON mailpool_messages"
    " (finished_at) WHERE finished_at IS NOT NULL;"
    "CREATE TABLE mailpool_attempts ("
    " message text NOT NULL, n int NOT NULL, at float8 NOT NULL,"
    " status text, code int, enhanced text, text text, accepted text,"
    " rejected text, error text, PRIMARY KEY (message, n));"
    "CREATE TABLE mailpool_idempotency ("
    " key text PRIMARY KEY, fingerprint text NOT NULL,"
    " created_at float8 NOT NULL, state int NOT NULL,"
    " http_status int, response text, owner text, lease_until float8);"
    "CREATE TABLE mailpool_claims ("
    " message text NOT NULL, owner text NOT NULL, attempt int NOT NULL,"
    " at float8 NOT NULL);",
    /* 1 -> 2: what the message log lists and filters on (queue_list);
       one row per recipient in mailpool_rcpts, removed with its message */
    "ALTER TABLE mailpool_messages ADD COLUMN recipients text,"
    " ADD COLUMN subject text;"
    "CREATE INDEX mailpool_messages_created ON mailpool_messages"
    " (created_at, id);"
    "CREATE INDEX mailpool_messages_message_id ON mailpool_messages"
    " (message_id);"
    "CREATE TABLE mailpool_rcpts ("
    " addr text NOT NULL, message text NOT NULL REFERENCES"
    " mailpool_messages (id) ON DELETE CASCADE, PRIMARY KEY (addr, message));"
    "CREATE INDEX mailpool_rcpts_message ON mailpool_rcpts (message);",
    /* 2 -> 3: the outbox of delivery events (webhooks), as in SQLite:
       one row of settings, the events (written by the trigger in the
       transaction of the change, removed with their message) and their
       tries.  Event ids: md5 of two random UUIDs (244 random bits), 128
       bits in hex; no extension needed. */
    "CREATE TABLE mailpool_outbox (k int PRIMARY KEY CHECK (k = 1),"
    " states int NOT NULL DEFAULT 0, stopped int NOT NULL DEFAULT 0,"
    " config text);"
    "INSERT INTO mailpool_outbox (k) VALUES (1);"
    "CREATE TABLE mailpool_events ("
    " id text PRIMARY KEY, message text NOT NULL REFERENCES"
    " mailpool_messages (id) ON DELETE CASCADE, mstate int NOT NULL,"
    " attempt int NOT NULL, created_at float8 NOT NULL, state int NOT NULL,"
    " due_at float8 NOT NULL, lease_until float8, delivered_at float8);"
    "CREATE INDEX mailpool_events_due ON mailpool_events (due_at)"
    " WHERE state = 0;"
    "CREATE INDEX mailpool_events_message ON mailpool_events (message);"
    "CREATE TABLE mailpool_event_tries ("
    " event text NOT NULL REFERENCES mailpool_events (id) ON DELETE"
    " CASCADE, n int NOT NULL, at float8 NOT NULL, http_status int,"
    " error text, PRIMARY KEY (event, n));"
    "CREATE FUNCTION mailpool_outbox_write() RETURNS trigger"
    " LANGUAGE plpgsql AS $f$ DECLARE o mailpool_outbox%ROWTYPE;"
    " t float8 := extract(epoch FROM clock_timestamp()); BEGIN"
    " SELECT * INTO o FROM mailpool_outbox WHERE k = 1;"
    " IF (o.states >> NEW.state) & 1 = 1 THEN"
    " INSERT INTO mailpool_events (id, message, mstate, attempt,"
    " created_at, state, due_at) VALUES ('evt_' ||"
    " md5(gen_random_uuid()::text || gen_random_uuid()::text), NEW.id,"
    " NEW.state, NEW.attempts, t, CASE WHEN (o.stopped >> NEW.state) & 1"
    " = 1 THEN 3 ELSE 0 END, t); END IF; RETURN NULL; END $f$;"
    "CREATE TRIGGER mailpool_messages_outbox AFTER UPDATE OF state ON"
    " mailpool_messages FOR EACH ROW WHEN (NEW.state IS DISTINCT FROM"
    " OLD.state) EXECUTE FUNCTION mailpool_outbox_write();",
    /* 3 -> 4: started, set by queue_start as a claimed message's SMTP
       transaction begins; the reaper queues a message never started
       again (messages sending before this version count as started) */
    "ALTER TABLE mailpool_messages ADD COLUMN started boolean NOT NULL"
    " DEFAULT true;",
};

/* Applies the migrations from version up, each in a transaction. */
static int pgq_apply(struct pgq *q, PGconn *c, int version, char *err,
                     size_t errlen)
{
    for (int v = version; v < PGQ_SCHEMA_VERSION; v++) {
        char nv[16];
        const char *vals[] = { nv, q->owner };
        snprintf(nv, sizeof nv, "%d", v + 1);
        PGresult *r = NULL;
        if (pgq_cmd(c, "BEGIN") < 0 ||
            pgq_cmd(c, pgq_migrations[v]) < 0 ||
            (r = pgq_run(c, "INSERT INTO mailpool_migrations (version,"
                         " applied_by) VALUES ($1::int, $2)", 2, vals,
                         PGRES_COMMAND_OK)) == NULL ||
            pgq_cmd(c, "COMMIT") < 0) {
            snprintf(err, errlen, "schema version %d: %s", v + 1,
                     PQerrorMessage(c));
            PQclear(r);
            pgq_cmd(c, "ROLLBACK");
            return -1;
        }
        PQclear(r);
    }
    return 0;
}

/* Brings the schema up to PGQ_SCHEMA_VERSION under the advisory lock. */
static int pgq_migrate(struct pgq *q, PGconn *c, char *err, size_t errlen)
{
    PGresult *r;
    int version = -1, rc = -1;
    r = pgq_run(c, "SELECT pg_advisory_lock(" PGQ_LOCK_KEY ")", 0, NULL,
                PGRES_TUPLES_OK);
    if (r == NULL) {
        snprintf(err, errlen, "advisory lock: %s", PQerrorMessage(c));
        return -1;
    }
    PQclear(r);
    if (pgq_cmd(c, "CREATE TABLE IF NOT EXISTS mailpool_migrations ("
                " version int PRIMARY KEY, applied_at timestamptz NOT NULL"
                " DEFAULT now(), applied_by text NOT NULL)") < 0) {
        snprintf(err, errlen, "schema: %s", PQerrorMessage(c));
    } else if ((r = pgq_run(c, "SELECT coalesce(max(version), 0) FROM"
                            " mailpool_migrations", 0, NULL,
                            PGRES_TUPLES_OK)) == NULL) {
        snprintf(err, errlen, "schema: %s", PQerrorMessage(c));
    } else {
        version = (int)strtol(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        if (version > PGQ_SCHEMA_VERSION)
            snprintf(err, errlen, "the database has schema version %d;"
                     " this mailpool knows up to %d", version,
                     PGQ_SCHEMA_VERSION);
        else
            rc = pgq_apply(q, c, version, err, errlen);
    }
    r = pgq_run(c, "SELECT pg_advisory_unlock(" PGQ_LOCK_KEY ")", 0, NULL,
                PGRES_TUPLES_OK);
    PQclear(r);
    return rc;
}

/* ---- writes ---- */

/* Looks idem's key up after a refused insert: fills hit; 0 or -1. */
static int pgq_idem_hit(PGconn *c, const struct queue_idem *idem,
                        struct queue_idem_hit *hit)
{
    const char *vals[] = { idem->key };
    PGresult *r = pgq_run(c, "SELECT fingerprint, state, http_status,"
                          " response FROM mailpool_idempotency WHERE key ="
                          " $1", 1, vals, PGRES_TUPLES_OK);
    if (r == NULL || PQntuples(r) != 1) {
        PQclear(r);
        return -1;
    }
    int state = (int)strtol(PQgetvalue(r, 0, 1), NULL, 10);
    hit->same = strcmp(PQgetvalue(r, 0, 0), idem->fingerprint) == 0;
    hit->pending = state == 1;
    hit->lost = state == 2;
    hit->http_status = (int)strtol(PQgetvalue(r, 0, 2), NULL, 10);
    hit->response = pgq_dup(r, 0, 3);
    PQclear(r);
    return 0;
}

/* Stores idem's key: 1 stored, 0 seen before (hit filled), -1 error. */
static int pgq_idem_store(struct pgq *q, PGconn *c,
                          const struct queue_idem *idem, double now,
                          struct queue_idem_hit *hit)
{
    char at[40], until[40], status[16];
    const char *vals[] = { idem->key, idem->fingerprint, at,
                           idem->pending ? "1" : "0", status,
                           idem->response, q->owner, until };
    pgq_num(at, sizeof at, now);
    pgq_num(until, sizeof until, now + q->base.lease_s);
    snprintf(status, sizeof status, "%d", idem->http_status);
    PGresult *r = pgq_run(c, "INSERT INTO mailpool_idempotency (key,"
                          " fingerprint, created_at, state, http_status,"
                          " response, owner, lease_until) VALUES ($1, $2,"
                          " $3::float8, $4::int, $5::int, $6, $7,"
                          " $8::float8) ON CONFLICT (key) DO NOTHING", 8,
                          vals, PGRES_COMMAND_OK);
    if (r == NULL)
        return -1;
    int stored = strcmp(PQcmdTuples(r), "1") == 0;
    PQclear(r);
    if (stored)
        return 1;
    return pgq_idem_hit(c, idem, hit) == 0 ? 0 : -1;
}

/* Inserts msgs[0..n): 0 or -1. */
static int pgq_insert(PGconn *c, const struct queue_new *msgs, size_t n,
                      double now)
{
    for (size_t i = 0; i < n; i++) {
        const struct queue_new *m = &msgs[i];
        int later = m->send_at > now;
        char at[40], due[40];
        const char *vals[] = { m->id, later ? "1" : "0", at, due,
                               m->message_id, m->metadata, m->blob,
                               m->recipients, m->subject };
        int lens[] = { 0, 0, 0, 0, 0, 0, (int)m->blob_len, 0, 0 };
        int fmts[] = { 0, 0, 0, 0, 0, 0, 1, 0, 0 };
        pgq_num(at, sizeof at, now);
        pgq_num(due, sizeof due, later ? m->send_at : now);
        /* The message, then one mailpool_rcpts row per address of its
           recipients (a JSON array of strings), lower-cased as the
           list's filter is. */
        PGresult *r = pgq_params(c, "WITH ins AS (INSERT INTO"
                                 " mailpool_messages (id, state,"
                                 " created_at, due_at, message_id,"
                                 " metadata, blob, recipients, subject)"
                                 " VALUES ($1, $2::int, $3::float8,"
                                 " $4::float8, $5, $6, $7::bytea, $8, $9)"
                                 " RETURNING id) INSERT INTO"
                                 " mailpool_rcpts (addr, message) SELECT"
                                 " DISTINCT lower(a), (SELECT id FROM ins)"
                                 " FROM json_array_elements_text(CASE WHEN"
                                 " $8 IS NULL THEN '[]'::json ELSE"
                                 " $8::json END) AS a", 9, vals,
                                 lens, fmts);
        int ok = r != NULL && PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        if (!ok)
            return -1;
    }
    return 0;
}

/* The enqueue's transaction: QUEUE_OK, QUEUE_EIDEM (hit) or QUEUE_EIO. */
static int pgq_enqueue_tx(struct pgq *q, PGconn *c,
                          const struct queue_new *msgs, size_t n,
                          const struct queue_idem *idem,
                          struct queue_idem_hit *hit)
{
    double now = queue_wall_now();
    if (pgq_cmd(c, "BEGIN") < 0 && (!pgq_revived(c) ||
                                    pgq_cmd(c, "BEGIN") < 0))
        return QUEUE_EIO;
    if (idem != NULL) {
        int stored = pgq_idem_store(q, c, idem, now, hit);
        if (stored <= 0) {
            pgq_cmd(c, "ROLLBACK");
            return stored == 0 ? QUEUE_EIDEM : QUEUE_EIO;
        }
    }
    if (pgq_insert(c, msgs, n, now) < 0 ||
        (n > 0 && pgq_cmd(c, "NOTIFY mailpool_queue") < 0) ||
        pgq_cmd(c, "COMMIT") < 0) {
        pgq_cmd(c, "ROLLBACK");
        return QUEUE_EIO;
    }
    return QUEUE_OK;
}

static int pgq_enqueue(struct queue *qb, const struct queue_new *msgs,
                       size_t n, const struct queue_idem *idem,
                       queue_done_fn done, void *ctx)
{
    struct pgq *q = (struct pgq *)qb;
    struct queue_idem_hit hit;
    int slot = pgq_get(q), rc;
    if (slot < 0)
        return QUEUE_EIO;
    memset(&hit, 0, sizeof hit);
    rc = pgq_enqueue_tx(q, q->conns[slot], msgs, n, idem, &hit);
    pgq_put(q, slot);
    done(ctx, rc, rc == QUEUE_EIDEM ? &hit : NULL);
    queue_idem_hit_clear(&hit);
    return QUEUE_OK;
}

/* Runs one statement on a pooled connection, once more on a revived
   connection: its result (status ok) or NULL. */
static PGresult *pgq_exec(struct pgq *q, const char *sql, int n,
                          const char *const *vals, ExecStatusType ok)
{
    int slot = pgq_get(q);
    if (slot < 0)
        return NULL;
    PGconn *c = q->conns[slot];
    PGresult *r = pgq_run(c, sql, n, vals, ok);
    if (r == NULL && pgq_revived(c))
        r = pgq_run(c, sql, n, vals, ok);
    pgq_put(q, slot);
    return r;
}

/* Runs a statement that returns no rows: QUEUE_OK or QUEUE_EIO. */
static int pgq_exec_cmd(struct pgq *q, const char *sql, int n,
                        const char *const *vals)
{
    PGresult *r = pgq_exec(q, sql, n, vals, PGRES_COMMAND_OK);
    PQclear(r);
    return r != NULL ? QUEUE_OK : QUEUE_EIO;
}

static int pgq_idem_finish(struct queue *qb, const char *key,
                           int http_status, const char *response)
{
    struct pgq *q = (struct pgq *)qb;
    char status[16];
    const char *vals[] = { key, status, response != NULL ? response : "" };
    if (http_status < 0)
        return pgq_exec_cmd(q, "DELETE FROM mailpool_idempotency WHERE key"
                            " = $1 AND state = 1", 1, vals);
    snprintf(status, sizeof status, "%d", http_status);
    return pgq_exec_cmd(q, "UPDATE mailpool_idempotency SET state = 0,"
                        " http_status = $2::int, response = $3,"
                        " lease_until = NULL WHERE key = $1", 3, vals);
}

/* Copies the claimed rows of r into out[0..*n). */
static int pgq_claimed(const PGresult *r, struct queue_claimed *out,
                       size_t *n)
{
    for (int i = 0; i < PQntuples(r); i++) {
        struct queue_claimed *c = &out[*n];
        size_t len = 0;
        unsigned char *b = PQunescapeBytea(
            (const unsigned char *)PQgetvalue(r, i, 1), &len);
        if (b == NULL)
            return QUEUE_ENOMEM;
        c->blob = malloc(len > 0 ? len : 1);
        if (c->blob == NULL) {
            PQfreemem(b);
            return QUEUE_ENOMEM;
        }
        memcpy(c->blob, b, len);
        PQfreemem(b);
        c->blob_len = len;
        snprintf(c->id, sizeof c->id, "%s", PQgetvalue(r, i, 0));
        c->attempts = (int)strtol(PQgetvalue(r, i, 2), NULL, 10);
        c->created_at = strtod(PQgetvalue(r, i, 3), NULL);
        (*n)++;
    }
    return QUEUE_OK;
}

static int pgq_claim(struct queue *qb, double now, size_t max,
                     double lease_s, struct queue_claimed **out, size_t *n)
{
    struct pgq *q = (struct pgq *)qb;
    char at[40], lim[24], lease[40];
    const char *vals[] = { at, lim, lease, q->owner };
    *out = NULL;
    *n = 0;
    if (max == 0)
        return QUEUE_OK;
    pgq_num(at, sizeof at, now);
    pgq_num(lease, sizeof lease, lease_s);
    snprintf(lim, sizeof lim, "%zu", max);
    PGresult *r = pgq_exec(q,
        "WITH c AS (UPDATE mailpool_messages SET state = 2, lease_until ="
        " $1::float8 + $3::float8, owner = $4, started = false,"
        " attempts = attempts + 1"
        " WHERE id IN (SELECT id FROM mailpool_messages WHERE state IN"
        " (0, 1, 3) AND due_at <= $1::float8 ORDER BY due_at LIMIT $2::int"
        " FOR UPDATE SKIP LOCKED) AND state IN (0, 1, 3)"
        " RETURNING id, blob, attempts, created_at),"
        " l AS (INSERT INTO mailpool_claims (message, owner, attempt, at)"
        " SELECT id, $4, attempts, $1::float8 FROM c)"
        " SELECT id, blob, attempts, created_at FROM c", 4, vals,
        PGRES_TUPLES_OK);
    if (r == NULL)
        return QUEUE_EIO;
    *out = calloc((size_t)PQntuples(r) + 1, sizeof **out);
    int rc = *out != NULL ? pgq_claimed(r, *out, n) : QUEUE_ENOMEM;
    PQclear(r);
    /* Rows claimed but not copied stay sending: unknown after the lease,
       never sent twice. */
    return rc;
}

static int pgq_record(struct queue *qb, const char *id,
                      const struct queue_attempt *a, enum queue_state state,
                      double next_at)
{
    struct pgq *q = (struct pgq *)qb;
    char st[8], due[40], fin[40], at[40], code[16];
    const char *vals[] = { id, st, due,
                           queue_state_is_final(state) ? fin : NULL,
                           q->owner, at, a->status, code, a->enhanced,
                           a->text, a->accepted, a->rejected, a->error };
    snprintf(st, sizeof st, "%d", (int)state);
    snprintf(code, sizeof code, "%d", a->code);
    pgq_num(due, sizeof due, next_at);
    pgq_num(fin, sizeof fin, a->at);
    pgq_num(at, sizeof at, a->at);
    if (state == QUEUE_RETRY && a->retry_blob != NULL) {
        /* The narrowed message first: while the message is still this
           replica's and sending, so the retry can only send it. */
        const char *bv[] = { id, q->owner, a->retry_blob };
        int lens[] = { 0, 0, (int)a->retry_blob_len };
        int fmts[] = { 0, 0, 1 };
        int slot = pgq_get(q);
        if (slot < 0)
            return QUEUE_EIO;
        PGresult *r = pgq_params(q->conns[slot], "UPDATE mailpool_messages"
                                 " SET blob = $3::bytea WHERE id = $1 AND"
                                 " state = 2 AND owner = $2", 3, bv, lens,
                                 fmts);
        int ok = r != NULL && PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        pgq_put(q, slot);
        if (!ok)
            return QUEUE_EIO;
    }
    return pgq_exec_cmd(q,
        "WITH m AS (UPDATE mailpool_messages SET state = $2::int,"
        " lease_until = NULL, owner = NULL, due_at = $3::float8,"
        " finished_at = $4::float8 WHERE id = $1 AND state = 2 AND owner ="
        " $5 RETURNING id, attempts)"
        " INSERT INTO mailpool_attempts (message, n, at, status, code,"
        " enhanced, text, accepted, rejected, error) SELECT id, attempts,"
        " $6::float8, $7, $8::int, coalesce($9, ''), coalesce($10, ''),"
        " coalesce($11, ''), coalesce($12, ''), coalesce($13, '') FROM m"
        " ON CONFLICT (message, n) DO UPDATE SET at = EXCLUDED.at,"
        " status = EXCLUDED.status, code = EXCLUDED.code,"
        " enhanced = EXCLUDED.enhanced, text = EXCLUDED.text,"
        " accepted = EXCLUDED.accepted, rejected = EXCLUDED.rejected,"
        " error = EXCLUDED.error", 13, vals);
}

/* A synchronous send in one statement: the message, final with an empty
   blob, its one attempt and its rcpts rows. */
static int pgq_log_sync(struct queue *qb, const struct queue_sync_msg *m,
                        queue_logged_fn done, void *ctx)
{
    struct pgq *q = (struct pgq *)qb;
    const struct queue_attempt *a = &m->attempt;
    char st[8], made[40], at[40], code[16];
    const char *vals[] = { m->id, st, made, at, m->message_id, m->metadata,
                           m->recipients, m->subject, a->status, code,
                           a->enhanced, a->text, a->accepted, a->rejected,
                           a->error };
    snprintf(st, sizeof st, "%d", (int)m->state);
    snprintf(code, sizeof code, "%d", a->code);
    pgq_num(made, sizeof made, m->created_at);
    pgq_num(at, sizeof at, a->at);
    int rc = pgq_exec_cmd(q,
        "WITH m AS (INSERT INTO mailpool_messages (id, state, created_at,"
        " due_at, finished_at, attempts, message_id, metadata, blob,"
        " recipients, subject) VALUES ($1, $2::int, $3::float8, $3::float8,"
        " $4::float8, 1, $5, $6, ''::bytea, $7, $8) RETURNING id),"
        " a AS (INSERT INTO mailpool_attempts (message, n, at, status, code,"
        " enhanced, text, accepted, rejected, error) SELECT id, 1,"
        " $4::float8, $9, $10::int, coalesce($11, ''), coalesce($12, ''),"
        " coalesce($13, ''), coalesce($14, ''), coalesce($15, '') FROM m)"
        " INSERT INTO mailpool_rcpts (addr, message) SELECT DISTINCT"
        " lower(r), (SELECT id FROM m) FROM json_array_elements_text(CASE"
        " WHEN $7 IS NULL THEN '[]'::json ELSE $7::json END) AS r", 15,
        vals);
    done(ctx, rc);
    return QUEUE_OK;
}

static int pgq_release(struct queue *qb, const char *id)
{
    struct pgq *q = (struct pgq *)qb;
    const char *vals[] = { id, q->owner };
    return pgq_exec_cmd(q, "UPDATE mailpool_messages SET state = 0,"
                        " lease_until = NULL, owner = NULL, attempts ="
                        " attempts - 1 WHERE id = $1 AND state = 2 AND"
                        " owner = $2", 2, vals);
}

/* Marks the claimed message started, while it is still this replica's
   and sending (idempotent: a retried statement finds it marked). */
static int pgq_start(struct queue *qb, const char *id)
{
    struct pgq *q = (struct pgq *)qb;
    const char *vals[] = { id, q->owner };
    PGresult *r = pgq_exec(q, "UPDATE mailpool_messages SET started = true"
                           " WHERE id = $1 AND state = 2 AND owner = $2", 2,
                           vals, PGRES_COMMAND_OK);
    if (r == NULL)
        return QUEUE_EIO;
    int rc = strcmp(PQcmdTuples(r), "1") == 0 ? QUEUE_OK : QUEUE_ECONFLICT;
    PQclear(r);
    return rc;
}

static int pgq_cancel(struct queue *qb, const char *id,
                      enum queue_state *state)
{
    struct pgq *q = (struct pgq *)qb;
    char fin[40];
    const char *vals[] = { id, fin };
    enum queue_state s = QUEUE_CANCELLED;
    int rc;
    pgq_num(fin, sizeof fin, queue_wall_now());
    /* One statement: the cancel happens only if the state allows it at
       the moment the row is locked; else the state found is returned. */
    PGresult *r = pgq_exec(q,
        "WITH u AS (UPDATE mailpool_messages SET state = 9, finished_at ="
        " $2::float8 WHERE id = $1 AND state IN (0, 1, 3) RETURNING state)"
        " SELECT state, 1 FROM u UNION ALL SELECT state, 0 FROM"
        " mailpool_messages WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM u)",
        2, vals, PGRES_TUPLES_OK);
    if (r == NULL) {
        rc = QUEUE_EIO;
    } else if (PQntuples(r) == 0) {
        rc = QUEUE_ENOTFOUND;
    } else {
        s = (enum queue_state)strtol(PQgetvalue(r, 0, 0), NULL, 10);
        rc = strcmp(PQgetvalue(r, 0, 1), "1") == 0 ? QUEUE_OK
                                                   : QUEUE_ECONFLICT;
    }
    PQclear(r);
    if (state != NULL)
        *state = s;
    return rc;
}

/* ---- reads ---- */

/* Reads the attempts of doc->id into doc. */
static int pgq_attempts(struct pgq *q, struct queue_doc *doc)
{
    const char *vals[] = { doc->id };
    PGresult *r = pgq_exec(q, "SELECT at, status, code, enhanced, text,"
                           " accepted, rejected, error FROM"
                           " mailpool_attempts WHERE message = $1 ORDER BY"
                           " n", 1, vals, PGRES_TUPLES_OK);
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

static int pgq_getdoc(struct queue *qb, const char *id,
                      struct queue_doc *doc)
{
    struct pgq *q = (struct pgq *)qb;
    const char *vals[] = { id };
    int rc;
    memset(doc, 0, sizeof *doc);
    snprintf(doc->id, sizeof doc->id, "%s", id);
    PGresult *r = pgq_exec(q, "SELECT state, created_at, due_at,"
                           " message_id, metadata FROM mailpool_messages"
                           " WHERE id = $1", 1, vals, PGRES_TUPLES_OK);
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
    PGresult *r = pgq_exec(q, "SELECT state, count(*), NULL FROM"
                           " mailpool_messages GROUP BY state UNION ALL"
                           " SELECT -1, 0, min(due_at) FROM"
                           " mailpool_messages WHERE state IN (0, 1, 3) AND"
                           " due_at <= $1::float8", 1, vals,
                           PGRES_TUPLES_OK);
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
    PGresult *r = pgq_exec(q, "SELECT min(due_at) FROM mailpool_messages"
                           " WHERE state IN (0, 1, 3)", 0, NULL,
                           PGRES_TUPLES_OK);
    if (r == NULL)
        return QUEUE_EIO;
    int found = !PQgetisnull(r, 0, 0);
    if (found)
        *when = strtod(PQgetvalue(r, 0, 0), NULL);
    PQclear(r);
    return found;
}

/* ---- leases ---- */

static int pgq_renew(struct queue *qb, double now, double lease_s,
                     const char *ids)
{
    struct pgq *q = (struct pgq *)qb;
    char until[40];
    const char *vals[] = { until, q->owner, ids };
    pgq_num(until, sizeof until, now + lease_s);
    int rc = pgq_exec_cmd(q, "UPDATE mailpool_messages SET lease_until ="
                          " $1::float8 WHERE state = 2 AND owner = $2 AND"
                          " id IN (SELECT json_array_elements_text($3::json))",
                          3, vals);
    if (rc == QUEUE_OK)
        rc = pgq_exec_cmd(q, "UPDATE mailpool_idempotency SET lease_until"
                          " = $1::float8 WHERE state = 1 AND owner = $2", 2,
                          vals);
    return rc;
}

/* Deletes finished messages and claim log rows past the retention and
   old keys, hourly. */
static void pgq_purge(struct pgq *q, double now)
{
    char keep[40], ttl[40];
    const char *vals[] = { keep, ttl };
    if (now - q->last_purge < PGQ_PURGE_EVERY_S)
        return;
    q->last_purge = now;
    pgq_num(keep, sizeof keep, now - q->retention_s);
    pgq_num(ttl, sizeof ttl, now - q->idem_ttl_s);
    pgq_exec_cmd(q, "WITH d AS (DELETE FROM mailpool_messages WHERE"
                 " finished_at < $1::float8 RETURNING id) DELETE FROM"
                 " mailpool_attempts WHERE message IN (SELECT id FROM d)",
                 1, vals);
    pgq_exec_cmd(q, "DELETE FROM mailpool_idempotency WHERE created_at <"
                 " $2::float8 AND state <> 1", 2, vals);
    pgq_exec_cmd(q, "DELETE FROM mailpool_claims WHERE at < $1::float8", 1,
                 vals);         /* the claim log, kept as the messages */
}

/* Claimed messages never started whose lease ended (their replica died
   before sending them) go back to queued, their claim's attempt
   uncounted, and the replicas are woken. */
static void pgq_requeue(struct pgq *q, const char *const *vals)
{
    PGresult *r = pgq_exec(q, "WITH u AS (UPDATE mailpool_messages SET"
                           " state = 0, lease_until = NULL, owner = NULL,"
                           " attempts = attempts - 1 WHERE state = 2 AND NOT"
                           " started AND lease_until < $1::float8 RETURNING"
                           " id) SELECT count(*), pg_notify('mailpool_queue',"
                           " '') FROM u HAVING count(*) > 0", 1, vals,
                           PGRES_TUPLES_OK);
    PQclear(r);
}

static int pgq_reap(struct queue *qb, double now, unsigned long *n)
{
    struct pgq *q = (struct pgq *)qb;
    char at[40];
    const char *vals[] = { at };
    *n = 0;
    pgq_num(at, sizeof at, now);
    pgq_requeue(q, vals);
    PGresult *r = pgq_exec(q,
        "WITH r AS (UPDATE mailpool_messages SET state = 8, lease_until ="
        " NULL, finished_at = $1::float8 WHERE state = 2 AND started AND"
        " lease_until < $1::float8 RETURNING id, attempts)"
        " INSERT INTO mailpool_attempts (message, n, at, status, code,"
        " enhanced, error) SELECT id, attempts, $1::float8, 'unknown', 421,"
        " '4.4.2', 'the replica sending the message stopped renewing its"
        " lease: it may have been delivered; not resent' FROM r"
        " ON CONFLICT (message, n) DO NOTHING RETURNING message", 1, vals,
        PGRES_TUPLES_OK);
    if (r == NULL)
        return QUEUE_EIO;
    *n = (unsigned long)PQntuples(r);
    PQclear(r);
    pgq_exec_cmd(q, "UPDATE mailpool_idempotency SET state = 2 WHERE"
                 " state = 1 AND lease_until < $1::float8", 1, vals);
    pgq_purge(q, now);
    return QUEUE_OK;
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
        char **dst[] = { &ev->message_id, &ev->metadata, &ev->status, NULL,
                         &ev->enhanced, &ev->text, &ev->accepted,
                         &ev->rejected };
        for (int k = 0; k < 8; k++)
            if (dst[k] != NULL && !PQgetisnull(r, i, 6 + k) &&
                (*dst[k] = pgq_dup(r, i, 6 + k)) == NULL)
                return QUEUE_ENOMEM;
    }
    return QUEUE_OK;
}

static int pgq_event_claim(struct queue *qb, double now, size_t max,
                           double lease_s, struct queue_event **out,
                           size_t *n)
{
    struct pgq *q = (struct pgq *)qb;
    char at[40], lim[24], until[40];
    const char *vals[] = { at, lim, until };
    if (max == 0)
        return QUEUE_OK;
    pgq_num(at, sizeof at, now);
    pgq_num(until, sizeof until, now + lease_s);
    snprintf(lim, sizeof lim, "%zu", max);
    PGresult *r = pgq_exec(q,
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
        " = c.message AND a.n = c.attempt", 3, vals, PGRES_TUPLES_OK);
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
    const char *vals[] = { id, when, http_status > 0 ? http : NULL,
                           error != NULL && error[0] ? error : NULL, st,
                           due };
    pgq_num(when, sizeof when, at);
    pgq_num(due, sizeof due, next_at);
    snprintf(http, sizeof http, "%d", http_status);
    snprintf(st, sizeof st, "%d", (int)state);
    int rc = pgq_exec_cmd(q,
        "WITH t AS (INSERT INTO mailpool_event_tries (event, n, at,"
        " http_status, error) SELECT $1, coalesce(max(n), 0) + 1,"
        " $2::float8, $3::int, $4 FROM mailpool_event_tries WHERE event ="
        " $1) UPDATE mailpool_events SET state = $5::int, lease_until ="
        " NULL, due_at = $6::float8, delivered_at = CASE WHEN $5::int = 1"
        " THEN $2::float8 END WHERE id = $1", 6, vals);
    if (rc != QUEUE_OK || state != QUEUE_EV_STOPPED)
        return rc;
    /* A 410: the type stays stopped until the configuration changes. */
    return pgq_exec_cmd(q,
        "WITH e AS (SELECT mstate FROM mailpool_events WHERE id = $1),"
        " o AS (UPDATE mailpool_outbox SET stopped = stopped | (1 << (SELECT"
        " mstate FROM e)) WHERE k = 1) UPDATE mailpool_events SET state = 3,"
        " lease_until = NULL WHERE state = 0 AND mstate = (SELECT mstate"
        " FROM e)", 1, vals);
}

static int pgq_events_of(struct queue *qb, const char *id,
                         struct queue_event_rec **out, size_t *n)
{
    struct pgq *q = (struct pgq *)qb;
    const char *vals[] = { id };
    size_t cap = 0;
    int rc = QUEUE_OK;
    PGresult *r = pgq_exec(q,
        "SELECT e.id, e.mstate, e.state, e.created_at, e.delivered_at, t.n,"
        " t.at, t.http_status, t.error FROM mailpool_events e LEFT JOIN"
        " mailpool_event_tries t ON t.event = e.id WHERE e.message = $1"
        " ORDER BY e.created_at, e.id, t.n", 1, vals, PGRES_TUPLES_OK);
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
    PGresult *r = pgq_exec(q, "SELECT min(created_at) FROM mailpool_events"
                           " WHERE state = 0", 0, NULL, PGRES_TUPLES_OK);
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
            queue_wake_(&q->base);      /* what came meanwhile */
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

/* This replica's name: host, pid and 32 random bits. */
static void pgq_name(char *buf, size_t len)
{
    char host[64], id[QUEUE_ID_LEN];
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "?");
    host[sizeof host - 1] = '\0';
    queue_new_id(id);
    snprintf(buf, len, "%s:%ld:%.6s", host, (long)getpid(), id);
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
static int pgq_outbox_set(struct pgq *q, PGconn *c, char *err,
                          size_t errlen)
{
    char states[16];
    const char *vals[] = { states, q->ev_config };
    snprintf(states, sizeof states, "%u", q->ev_states);
    PGresult *r = pgq_run(c, "UPDATE mailpool_outbox SET states = $1::int,"
                          " stopped = CASE WHEN config IS NOT DISTINCT FROM"
                          " $2 THEN stopped ELSE 0 END, config = $2 WHERE"
                          " k = 1", 2, vals, PGRES_COMMAND_OK);
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
        snprintf(err, errlen, "cannot connect to the queue.url database:"
                 " %s", c == NULL ? "out of memory" :
                 PQerrorMessage(c)[0] != '\0' ? PQerrorMessage(c) :
                 "no answer within 5 s");
        err[strcspn(err, "\n")] = '\0';
        return -1;
    }
    if (pgq_migrate(q, c, err, errlen) < 0 || pgq_outbox_set(q, c, err,
                                                             errlen) < 0) {
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
    q->ev_config = opts->event_config;      /* borrowed: pgq_first only */
    pgq_name(q->owner, sizeof q->owner);
    q->url = strdup(opts->url != NULL ? opts->url : "");
    if (q->url == NULL) {
        snprintf(err, errlen, "out of memory");
        pgq_free(q);
        return -1;
    }
    if ((opts->password_file != NULL &&
         (q->password = pgq_read_password(opts->password_file, err,
                                          errlen)) == NULL) ||
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
    return 0;                   /* the reaper does it, after the lease */
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
                  " addr = lower($%d))", k);
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
                      " $%d::float8 AND id < $%d))", k - 1, k - 1, k);
        } else {
            PGQ_WHERE(" AND created_at < $%d::float8", k);
        }
    }
#undef PGQ_WHERE
    snprintf(bufs[3], 40, "%zu", qry->limit);
    vals[k++] = bufs[3];
    snprintf(sql, len, "SELECT id, state, created_at, attempts, (SELECT code"
             " FROM mailpool_attempts WHERE message = m.id ORDER BY n DESC"
             " LIMIT 1), recipients, subject, message_id FROM"
             " mailpool_messages m WHERE true%s ORDER BY created_at DESC,"
             " id DESC LIMIT $%d::int", where, k);
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
                            ? 0 : (int)strtol(PQgetvalue(r, i, 4), NULL, 10);
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
