/*
 * queue/postgres_conn.c - the PostgreSQL queue's connections and schema:
 * the pool of connections (PGQ_POOL), non-blocking connects, resets and
 * statements, each wait a poll with a deadline; the migrations, applied
 * under pg_advisory_lock(PGQ_LOCK_KEY).
 *
 * Public: the functions under "queue/postgres_conn.c" in
 * queue/postgres_impl.h.
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
        if (pgq_poll(c, st == PGRES_POLLING_READING ? POLLIN : POLLOUT, end) <
            0)
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
PGconn *pgq_connect(const struct pgq *q)
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
int pgq_reconnect(PGconn *c)
{
    return PQresetStart(c) != 0 && pgq_connect_wait(c, PQresetPoll) == 0;
}

/* Waits for the results of what was just sent on c (PQsendQuery*) with
   PQsocket + poll, at most ms in all, rather than blocking in libpq: the
   last result, or NULL when sending or reading failed or the time ran out
   (the connection, left busy, is reset on its next use). */
PGresult *pgq_wait(PGconn *c, long long ms)
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
PGresult *pgq_params(PGconn *c, const char *sql, int n, const char *const *vals,
                     const int *lens, const int *fmts)
{
    if (PQsendQueryParams(c, sql, n, NULL, vals, lens, fmts, 0) == 0)
        return NULL;
    return pgq_wait(c, PGQ_STATEMENT_MS);
}

/* Takes a free connection (waiting for one), reset when broken: its slot,
   or -1 when the database cannot be reached. */
int pgq_get(struct pgq *q)
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
void pgq_put(struct pgq *q, int slot)
{
    pthread_mutex_lock(&q->mu);
    q->busy[slot] = 0;
    pthread_cond_signal(&q->free_cv);
    pthread_mutex_unlock(&q->mu);
}

/* Runs sql with text parameters (NULL: SQL NULL); the result when it is
   status ok, else NULL (the result cleared). */
PGresult *pgq_run(PGconn *c, const char *sql, int n, const char *const *vals,
                  ExecStatusType ok)
{
    PGresult *r = pgq_params(c, sql, n, vals, NULL, NULL);
    if (r != NULL && PQresultStatus(r) == ok)
        return r;
    PQclear(r);
    return NULL;
}

/* Runs statements without parameters or rows (several, ';'-separated,
   allowed): 0 or -1. */
int pgq_cmd(PGconn *c, const char *sql)
{
    PGresult *r = PQsendQuery(c, sql) != 0 ? pgq_wait(c, PGQ_STATEMENT_MS)
                                           : NULL;
    int ok = r != NULL && PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok ? 0 : -1;
}

/* After a failed statement: 1 when the connection had died (the server
   restarted: the statement never reached it) and is connected again. */
int pgq_revived(PGconn *c)
{
    if (PQstatus(c) != CONNECTION_BAD)
        return 0;
    return pgq_reconnect(c);
}

/* A double as text for a parameter. */
void pgq_num(char *buf, size_t len, double v)
{
    snprintf(buf, len, "%.6f", v);
}

/* A copy of a text field, NULL for NULL. */
char *pgq_dup(const PGresult *r, int row, int col)
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
        if (pgq_cmd(c, "BEGIN") < 0 || pgq_cmd(c, pgq_migrations[v]) < 0 ||
            (r = pgq_run(c,
                         "INSERT INTO mailpool_migrations (version,"
                         " applied_by) VALUES ($1::int, $2)",
                         2, vals, PGRES_COMMAND_OK)) == NULL ||
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
int pgq_migrate(struct pgq *q, PGconn *c, char *err, size_t errlen)
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
    } else if ((r = pgq_run(c,
                            "SELECT coalesce(max(version), 0) FROM"
                            " mailpool_migrations",
                            0, NULL, PGRES_TUPLES_OK)) == NULL) {
        snprintf(err, errlen, "schema: %s", PQerrorMessage(c));
    } else {
        version = (int)strtol(PQgetvalue(r, 0, 0), NULL, 10);
        PQclear(r);
        if (version > PGQ_SCHEMA_VERSION)
            snprintf(err, errlen,
                     "the database has schema version %d;"
                     " this mailpool knows up to %d",
                     version, PGQ_SCHEMA_VERSION);
        else
            rc = pgq_apply(q, c, version, err, errlen);
    }
    r = pgq_run(c, "SELECT pg_advisory_unlock(" PGQ_LOCK_KEY ")", 0, NULL,
                PGRES_TUPLES_OK);
    PQclear(r);
    return rc;
}
