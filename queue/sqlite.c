/*
 * queue/sqlite.c - the queue (queue/queue.h) on one SQLite file.
 *
 * Public: queue_sqlite_ops (queue/queue_impl.h), behind queue.h.
 *
 * The file: WAL journal, synchronous FULL (or NORMAL when asked), a busy
 * timeout, foreign keys off (the attempts table is keyed by message id).
 * The schema carries its version in PRAGMA user_version; queue_open
 * applies the migrations from the file's version up, in one transaction.
 *
 * Writes: every write is an op put on a list; the writer thread takes the
 * whole list, runs it in one BEGIN IMMEDIATE ... COMMIT (each op inside a
 * SAVEPOINT, so one failing op leaves the others), then tells each op's
 * caller: a callback (enqueue, log_sync), a wake-up (claim, cancel), or
 * nothing (record, release, idem_finish).  So concurrent requests share
 * one fsync (group commit).  Once an hour at most the writer also purges
 * finished messages past the retention and idempotency keys past their
 * time.
 *
 * The outbox (schema 3): a trigger on messages writes an event row for
 * each change to a state whose bit is in outbox.states (set at open from
 * queue_opts), inside the statement, so inside its transaction; the event
 * ops (claim with a lease, a try's result) are writer ops like the others.
 *
 * Reads (queue_get, queue_counts, queue_next_due, queue_list, the events
 * of a message) use a second connection
 * under q->rd_mu; WAL lets them run beside the writer.
 *
 * Errors: QUEUE_E* codes; SQLite's words go to the caller of queue_open
 * only (nothing here logs).  Threads: q->mu guards the op list and the
 * closing flag; the writer's connection is the writer thread's alone.
 */
#include "queue/queue_impl.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define QUEUE_SCHEMA_VERSION 4
#define QUEUE_PURGE_EVERY_S 3600.0
#define SQ_CACHE 16             /* the writer's statements kept prepared */

enum op_kind { OP_ENQUEUE, OP_CLAIM, OP_RECORD, OP_RELEASE, OP_CANCEL,
               OP_IDEM_FINISH, OP_RENEW, OP_REAP, OP_LOG_SYNC,
               OP_EV_CLAIM, OP_EV_RESULT, OP_START };

/* One write waiting for the writer. */
struct op {
    enum op_kind kind;
    struct op *next;
    int rc;
    int waited;                 /* a caller waits on done (guarded by mu) */
    int done;                   /* guarded by q->mu */

    /* OP_ENQUEUE (borrowed until cb) */
    const struct queue_new *msgs;
    size_t n;
    const struct queue_idem *idem;
    queue_done_fn cb;
    void *ctx;
    struct queue_idem_hit hit;

    /* OP_LOG_SYNC (borrowed until logged) */
    const struct queue_sync_msg *sync;
    queue_logged_fn logged;

    /* OP_CLAIM */
    double now, lease;
    size_t max;
    struct queue_claimed *claimed;
    size_t nclaimed;

    /* OP_RECORD, OP_RELEASE, OP_CANCEL, OP_IDEM_FINISH (owned copies) */
    char id[QUEUE_ID_LEN];
    char *s[7];                 /* record: status, enhanced, text,
                                   accepted, rejected, error; idem: key,
                                   response */
    double at, next_at;
    int code;
    enum queue_state state;
    void *blob;                 /* record: the retry's message, or NULL */
    size_t blob_len;

    /* OP_EV_CLAIM (now, lease, max above), OP_EV_RESULT (s[0] the event
       id, s[1] the error, code the HTTP status, at, next_at) */
    struct queue_event *events;
    size_t nevents;
    enum queue_event_state ev_state;
};

struct sq {
    struct queue base;          /* first: a struct queue * is a sq * */
    sqlite3 *wr;                /* the writer thread's */
    sqlite3 *rd;                /* guarded by rd_mu */
    pthread_mutex_t rd_mu;
    pthread_mutex_t mu;
    pthread_cond_t work_cv;     /* an op was added, or closing */
    pthread_cond_t done_cv;     /* an op a caller waits for is done */
    struct op *head, *tail;     /* guarded by mu */
    int closing;                /* guarded by mu */
    pthread_t writer;
    double retention_s, idem_ttl_s, last_purge;
    unsigned long recovered;
    unsigned ev_states;         /* queue_opts.event_states */
    const char *ev_config;      /* queue_opts.event_config, during open */
    struct sq_stmt {
        const char *sql;        /* a literal: known by its address */
        sqlite3_stmt *st;
    } cache[SQ_CACHE];          /* the writer's hot statements, prepared
                                   once (writer thread only) */
    size_t ncache;
};


/* ---- schema ---- */

static const char *const migrations[QUEUE_SCHEMA_VERSION] = {
    /* 0 -> 1 */
    "CREATE TABLE messages ("
    " id TEXT PRIMARY KEY, state INTEGER NOT NULL,"
    " created_at REAL NOT NULL, due_at REAL NOT NULL, lease_until REAL,"
    " finished_at REAL, attempts INTEGER NOT NULL DEFAULT 0,"
    " message_id TEXT, metadata TEXT, blob BLOB NOT NULL);"
    "CREATE INDEX messages_due ON messages(state, due_at);"
    "CREATE INDEX messages_finished ON messages(finished_at)"
    " WHERE finished_at IS NOT NULL;"
    "CREATE TABLE attempts ("
    " message TEXT NOT NULL, n INTEGER NOT NULL, at REAL NOT NULL,"
    " status TEXT, code INTEGER, enhanced TEXT, text TEXT, accepted TEXT,"
    " rejected TEXT, error TEXT, PRIMARY KEY (message, n));"
    "CREATE TABLE idempotency ("
    " key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL,"
    " created_at REAL NOT NULL, state INTEGER NOT NULL,"
    " http_status INTEGER, response TEXT);",
    /* 1 -> 2: what the message log lists and filters on (queue_list);
       message_rcpts, one row per recipient, follows messages by trigger */
    "ALTER TABLE messages ADD COLUMN recipients TEXT;"
    "ALTER TABLE messages ADD COLUMN subject TEXT;"
    "CREATE INDEX messages_created ON messages(created_at, id);"
    "CREATE INDEX messages_state_created ON messages(state, created_at, id);"
    "CREATE INDEX messages_message_id ON messages(message_id);"
    "CREATE TABLE message_rcpts ("
    " addr TEXT NOT NULL COLLATE NOCASE, message TEXT NOT NULL,"
    " PRIMARY KEY (addr, message)) WITHOUT ROWID;"
    "CREATE INDEX message_rcpts_message ON message_rcpts(message);"
    "CREATE TRIGGER messages_rcpts_add AFTER INSERT ON messages"
    " WHEN json_valid(new.recipients) BEGIN"
    " INSERT OR IGNORE INTO message_rcpts SELECT value, new.id"
    " FROM json_each(new.recipients) WHERE type = 'text'; END;"
    "CREATE TRIGGER messages_rcpts_drop AFTER DELETE ON messages BEGIN"
    " DELETE FROM message_rcpts WHERE message = old.id; END;",
    /* 2 -> 3: the outbox of delivery events (webhooks).  One row of
       settings: which states write events (bits), which were stopped by
       a 410 (bits), and the configuration that stopped them.  The
       trigger writes an event in the transaction of the change; events
       go with their message. */
    "CREATE TABLE outbox (k INTEGER PRIMARY KEY CHECK (k = 1),"
    " states INTEGER NOT NULL DEFAULT 0, stopped INTEGER NOT NULL"
    " DEFAULT 0, config TEXT);"
    "INSERT INTO outbox (k) VALUES (1);"
    "CREATE TABLE events ("
    " id TEXT PRIMARY KEY, message TEXT NOT NULL, mstate INTEGER NOT NULL,"
    " attempt INTEGER NOT NULL, created_at REAL NOT NULL,"
    " state INTEGER NOT NULL, due_at REAL NOT NULL, lease_until REAL,"
    " delivered_at REAL);"
    "CREATE INDEX events_due ON events(state, due_at);"
    "CREATE INDEX events_message ON events(message);"
    "CREATE TABLE event_tries ("
    " event TEXT NOT NULL, n INTEGER NOT NULL, at REAL NOT NULL,"
    " http_status INTEGER, error TEXT, PRIMARY KEY (event, n));"
    "CREATE TRIGGER messages_outbox AFTER UPDATE OF state ON messages"
    " WHEN new.state <> old.state"
    " AND ((SELECT states FROM outbox) >> new.state) & 1 BEGIN"
    " INSERT INTO events (id, message, mstate, attempt, created_at, state,"
    " due_at) SELECT 'evt_' || lower(hex(randomblob(16))), new.id,"
    " new.state, new.attempts, (julianday('now') - 2440587.5) * 86400.0,"
    " CASE WHEN (stopped >> new.state) & 1 THEN 3 ELSE 0 END,"
    " (julianday('now') - 2440587.5) * 86400.0 FROM outbox; END;"
    "CREATE TRIGGER messages_events_drop AFTER DELETE ON messages BEGIN"
    " DELETE FROM event_tries WHERE event IN (SELECT id FROM events"
    " WHERE message = old.id);"
    " DELETE FROM events WHERE message = old.id; END;",
    /* 3 -> 4: started, set by queue_start as a claimed message's SMTP
       transaction begins (messages sending before it count as started) */
    "ALTER TABLE messages ADD COLUMN started INTEGER NOT NULL DEFAULT 1;",
};

/* Stores which states write events and what they go to; a changed
   configuration starts the types stopped by a 410 again.  SQLITE_DONE
   on success. */
static int outbox_set(struct sq *q)
{
    sqlite3_stmt *st;
    int rc;
    if (sqlite3_prepare_v2(q->wr, "UPDATE outbox SET states = ?1, stopped ="
                           " CASE WHEN config IS ?2 THEN stopped ELSE 0"
                           " END, config = ?2 WHERE k = 1", -1, &st,
                           NULL) != SQLITE_OK)
        return SQLITE_ERROR;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)q->ev_states);
    sqlite3_bind_text(st, 2, q->ev_config, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc;
}

/* Opens path with the pragmas every connection needs. */
/* Why path (or, when it does not exist, its directory) cannot be
   written, as a sentence ending in "; ", or "" when it can. */
static const char *unwritable(const char *path, char *buf, size_t len)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    buf[0] = '\0';
    if (access(path, W_OK) == 0)
        return buf;
    if (errno == ENOENT) {
        snprintf(dir, sizeof dir, "%.*s", slash != NULL ?
                 (int)(slash - path) + 1 : 1, slash != NULL ? path : ".");
        if (access(dir, W_OK) == 0)
            return buf;
    }
    snprintf(buf, len, "it cannot be written (%s); ", strerror(errno));
    return buf;
}

static int open_db(const char *path, int sync_normal, sqlite3 **db,
                   char *err, size_t errlen)
{
    char sql[160], why[96];
    int rc = sqlite3_open_v2(path, db, SQLITE_OPEN_READWRITE |
                             SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s: %s%s", path,
                 unwritable(path, why, sizeof why),
                 *db ? sqlite3_errmsg(*db) : sqlite3_errstr(rc));
        return -1;
    }
    sqlite3_busy_timeout(*db, 5000);
    snprintf(sql, sizeof sql, "PRAGMA journal_mode=WAL;"
             "PRAGMA synchronous=%s;", sync_normal ? "NORMAL" : "FULL");
    if (sqlite3_exec(*db, sql, NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s%s", path,
                 unwritable(path, why, sizeof why), sqlite3_errmsg(*db));
        return -1;
    }
    return 0;
}

/* Brings the schema up to QUEUE_SCHEMA_VERSION in one transaction, then
   recovers what was left sending: queued again when never started,
   unknown when started. */
static int migrate(struct sq *q, const char *path, char *err,
                   size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int version = 0, ok;
    char *msg = NULL, sql[64];
    if (sqlite3_exec(q->wr, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK)
        goto fail;
    if (sqlite3_prepare_v2(q->wr, "PRAGMA user_version", -1, &st, NULL) ==
            SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (version > QUEUE_SCHEMA_VERSION) {
        sqlite3_exec(q->wr, "ROLLBACK", NULL, NULL, NULL);
        snprintf(err, errlen, "%s has schema version %d; this mailpool "
                 "knows up to %d", path, version, QUEUE_SCHEMA_VERSION);
        return -1;
    }
    for (int v = version; v < QUEUE_SCHEMA_VERSION; v++)
        if (sqlite3_exec(q->wr, migrations[v], NULL, NULL, &msg) != SQLITE_OK)
            goto fail;
    snprintf(sql, sizeof sql, "PRAGMA user_version=%d", QUEUE_SCHEMA_VERSION);
    ok = sqlite3_exec(q->wr, sql, NULL, NULL, &msg) == SQLITE_OK;
    ok = ok && outbox_set(q) == SQLITE_DONE;    /* before the recovery */
    /* Claimed but never started: nothing went out, queued again. */
    ok = ok && sqlite3_exec(q->wr, "UPDATE messages SET state = 0,"
                            " lease_until = NULL, attempts = attempts - 1"
                            " WHERE state = 2 AND started = 0", NULL, NULL,
                            &msg) == SQLITE_OK;
    ok = ok && sqlite3_exec(q->wr,
        "INSERT INTO attempts (message, n, at, status, code, enhanced, error)"
        " SELECT id, attempts, strftime('%s','now'), 'unknown', 421, '4.4.2',"
        " 'the service stopped while the message was being sent: it may"
        " have been delivered; not resent' FROM messages WHERE state = 2;"
        "UPDATE idempotency SET state = 2 WHERE state = 1;",
        NULL, NULL, &msg) == SQLITE_OK;
    if (!ok)
        goto fail;
    if (sqlite3_exec(q->wr, "UPDATE messages SET state = 8, lease_until ="
                     " NULL, finished_at = strftime('%s','now')"
                     " WHERE state = 2", NULL, NULL, &msg) != SQLITE_OK)
        goto fail;
    q->recovered = (unsigned long)sqlite3_changes(q->wr);
    if (sqlite3_exec(q->wr, "COMMIT", NULL, NULL, &msg) != SQLITE_OK)
        goto fail;
    return 0;
fail:
    snprintf(err, errlen, "%s: schema: %s", path,
             msg ? msg : sqlite3_errmsg(q->wr));
    sqlite3_free(msg);
    sqlite3_exec(q->wr, "ROLLBACK", NULL, NULL, NULL);
    return -1;
}

/* ---- the writer's ops ---- */

/* Runs sql with a few bound values; SQLITE_DONE/ROW on success. */
static int exec1(sqlite3 *db, const char *sql, sqlite3_stmt **keep)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return SQLITE_ERROR;
    *keep = st;
    return SQLITE_OK;
}

/* The writer's statement for sql, a string literal (kept prepared, known
   by its address, while the cache has room); give it back with wr_done.
   SQLITE_OK or SQLITE_ERROR. */
static int wr1(struct sq *q, const char *sql, sqlite3_stmt **st)
{
    for (size_t i = 0; i < q->ncache; i++)
        if (q->cache[i].sql == sql) {
            *st = q->cache[i].st;
            sqlite3_reset(*st);         /* after an early return too */
            return SQLITE_OK;
        }
    if (sqlite3_prepare_v3(q->wr, sql, -1, SQLITE_PREPARE_PERSISTENT, st,
                           NULL) != SQLITE_OK)
        return SQLITE_ERROR;
    if (q->ncache < SQ_CACHE)
        q->cache[q->ncache++] = (struct sq_stmt){ sql, *st };
    return SQLITE_OK;
}

/* Gives back a statement of wr1: reset and unbound when kept, else
   finalized. */
static void wr_done(struct sq *q, sqlite3_stmt *st)
{
    for (size_t i = 0; i < q->ncache; i++)
        if (q->cache[i].st == st) {
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            return;
        }
    sqlite3_finalize(st);
}

/* Runs the one-statement sql (a literal) with the writer's cache. */
static int wr_exec(struct sq *q, const char *sql)
{
    sqlite3_stmt *st;
    int rc;
    if (wr1(q, sql, &st) != SQLITE_OK)
        return SQLITE_ERROR;
    rc = sqlite3_step(st);
    wr_done(q, st);
    return rc == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
}

/* Looks the op's key up: 1 (hit filled) when it was seen, 0, or -1. */
static int idem_lookup(sqlite3 *db, const struct queue_idem *idem,
                       struct queue_idem_hit *hit)
{
    sqlite3_stmt *st;
    int rc, found = 0;
    if (exec1(db, "SELECT fingerprint, state, http_status, response FROM"
              " idempotency WHERE key = ?1", &st) != SQLITE_OK)
        return -1;
    sqlite3_bind_text(st, 1, idem->key, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *fp = (const char *)sqlite3_column_text(st, 0);
        const char *resp = (const char *)sqlite3_column_text(st, 3);
        int state = sqlite3_column_int(st, 1);
        found = 1;
        hit->same = fp != NULL && strcmp(fp, idem->fingerprint) == 0;
        hit->pending = state == 1;
        hit->lost = state == 2;
        hit->http_status = sqlite3_column_int(st, 2);
        hit->response = resp != NULL ? strdup(resp) : NULL;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? found : -1;
}

static int do_enqueue(struct sq *q, struct op *op)
{
    sqlite3_stmt *st;
    double now = queue_wall_now();
    int rc = SQLITE_DONE;
    if (op->idem != NULL) {
        int seen = idem_lookup(q->wr, op->idem, &op->hit);
        if (seen != 0)
            return seen > 0 ? QUEUE_EIDEM : QUEUE_EIO;
        if (wr1(q, "INSERT INTO idempotency (key, fingerprint,"
                  " created_at, state, http_status, response)"
                  " VALUES (?1, ?2, ?3, ?4, ?5, ?6)", &st) != SQLITE_OK)
            return QUEUE_EIO;
        sqlite3_bind_text(st, 1, op->idem->key, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, op->idem->fingerprint, -1, SQLITE_STATIC);
        sqlite3_bind_double(st, 3, now);
        sqlite3_bind_int(st, 4, op->idem->pending ? 1 : 0);
        sqlite3_bind_int(st, 5, op->idem->http_status);
        sqlite3_bind_text(st, 6, op->idem->response, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        wr_done(q, st);
        if (rc != SQLITE_DONE)
            return QUEUE_EIO;
    }
    if (op->n == 0)
        return QUEUE_OK;
    if (wr1(q, "INSERT INTO messages (id, state, created_at, due_at,"
              " message_id, metadata, blob, recipients, subject) VALUES (?1,"
              " ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)", &st) != SQLITE_OK)
        return QUEUE_EIO;
    for (size_t i = 0; i < op->n && rc == SQLITE_DONE; i++) {
        const struct queue_new *m = &op->msgs[i];
        int later = m->send_at > now;
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, m->id, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, later ? QUEUE_SCHEDULED : QUEUE_QUEUED);
        sqlite3_bind_double(st, 3, now);
        sqlite3_bind_double(st, 4, later ? m->send_at : now);
        sqlite3_bind_text(st, 5, m->message_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 6, m->metadata, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 7, m->blob, (int)m->blob_len, SQLITE_STATIC);
        sqlite3_bind_text(st, 8, m->recipients, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 9, m->subject, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    wr_done(q, st);
    return rc == SQLITE_DONE ? QUEUE_OK : QUEUE_EIO;
}

static int do_claim(struct sq *q, struct op *op)
{
    sqlite3_stmt *st;
    size_t cap = op->max;
    int rc;
    if (cap == 0)
        return QUEUE_OK;
    op->claimed = calloc(cap, sizeof *op->claimed);
    if (op->claimed == NULL)
        return QUEUE_ENOMEM;
    if (wr1(q, "UPDATE messages SET state = 2, lease_until = ?1 + ?3,"
              " started = 0, attempts = attempts + 1 WHERE id IN (SELECT id FROM messages"
              " WHERE state IN (0, 1, 3) AND due_at <= ?1 ORDER BY due_at"
              " LIMIT ?2) RETURNING id, blob, attempts, created_at",
              &st) != SQLITE_OK)
        return QUEUE_EIO;
    sqlite3_bind_double(st, 1, op->now);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)cap);
    sqlite3_bind_double(st, 3, op->lease);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && op->nclaimed < cap) {
        struct queue_claimed *c = &op->claimed[op->nclaimed];
        const void *b = sqlite3_column_blob(st, 1);
        int len = sqlite3_column_bytes(st, 1);
        snprintf(c->id, sizeof c->id, "%s", sqlite3_column_text(st, 0));
        c->blob = malloc(len > 0 ? (size_t)len : 1);
        if (c->blob == NULL) {
            rc = SQLITE_NOMEM;
            break;
        }
        if (len > 0)
            memcpy(c->blob, b, (size_t)len);
        c->blob_len = (size_t)len;
        c->attempts = sqlite3_column_int(st, 2);
        c->created_at = sqlite3_column_double(st, 3);
        op->nclaimed++;
    }
    wr_done(q, st);
    return rc == SQLITE_DONE ? QUEUE_OK : QUEUE_EIO;
}

/* Writes attempt number `attempts` of message id (as its row says): s
   holds status, enhanced, text, accepted, rejected, error (NULL: "").
   SQLITE_DONE on success. */
static int put_attempt(struct sq *q, const char *id, double at, int code,
                       const char *const s[6])
{
    sqlite3_stmt *st;
    int rc;
    if (wr1(q, "INSERT OR REPLACE INTO attempts (message, n, at,"
              " status, code, enhanced, text, accepted, rejected, error)"
              " SELECT id, attempts, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9 FROM"
              " messages WHERE id = ?1", &st) != SQLITE_OK)
        return SQLITE_ERROR;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 2, at);
    for (int i = 0; i < 6; i++)
        sqlite3_bind_text(st, i == 0 ? 3 : i + 4, s[i] != NULL ? s[i] : "",
                          -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, code);
    rc = sqlite3_step(st);
    wr_done(q, st);
    return rc;
}

static int do_record(struct sq *q, struct op *op)
{
    sqlite3_stmt *st;
    const char *const s[6] = { op->s[0], op->s[1], op->s[2], op->s[3],
                               op->s[4], op->s[5] };
    int rc = put_attempt(q, op->id, op->at, op->code, s),
        fin = queue_state_is_final(op->state);
    if (rc != SQLITE_DONE || wr1(q, "UPDATE messages SET state = ?2,"
                                   " lease_until = NULL, due_at = ?3,"
                                   " finished_at = ?4 WHERE id = ?1",
                                   &st) != SQLITE_OK)
        return QUEUE_EIO;
    sqlite3_bind_text(st, 1, op->id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, (int)op->state);
    sqlite3_bind_double(st, 3, op->next_at);
    if (fin)
        sqlite3_bind_double(st, 4, op->at);
    else
        sqlite3_bind_null(st, 4);
    rc = sqlite3_step(st);
    wr_done(q, st);
    if (rc != SQLITE_DONE || op->blob == NULL)
        return rc == SQLITE_DONE ? QUEUE_OK : QUEUE_EIO;
    if (wr1(q, "UPDATE messages SET blob = ?2 WHERE id = ?1", &st) !=
        SQLITE_OK)
        return QUEUE_EIO;
    sqlite3_bind_text(st, 1, op->id, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 2, op->blob, (int)op->blob_len, SQLITE_STATIC);
    rc = sqlite3_step(st);
    wr_done(q, st);
    return rc == SQLITE_DONE ? QUEUE_OK : QUEUE_EIO;
}

static int do_release(struct sq *q, struct op *op)
{
    sqlite3_stmt *st;
    int rc;
    if (wr1(q, "UPDATE messages SET state = 0, lease_until = NULL,"
              " attempts = attempts - 1 WHERE id = ?1 AND state = 2",
              &st) != SQLITE_OK)
        return QUEUE_EIO;
    sqlite3_bind_text(st, 1, op->id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    wr_done(q, st);
    return rc == SQLITE_DONE ? QUEUE_OK : QUEUE_EIO;
}

static int do_cancel(struct sq *q, struct op *op)
{
    sqlite3_stmt *st;
    int rc;
    if (exec1(q->wr, "SELECT state FROM messages WHERE id = ?1", &st) !=
        SQLITE_OK)
        return QUEUE_EIO;
    sqlite3_bind_text(st, 1, op->id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        op->state = (enum queue_state)sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (rc == SQLITE_DONE)
        return QUEUE_ENOTFOUND;
    if (rc != SQLITE_ROW)
        return QUEUE_EIO;
    if (op->state != QUEUE_QUEUED && op->state != QUEUE_SCHEDULED &&
        op->state != QUEUE_RETRY)
        return QUEUE_ECONFLICT;
    if (exec1(q->wr, "UPDATE messages SET state = 9, finished_at = ?2"
              " WHERE id = ?1", &st) != SQLITE_OK)
        return QUEUE_EIO;
    sqlite3_bind_text(st, 1, op->id, -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 2, queue_wall_now());
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    op->state = QUEUE_CANCELLED;
    return rc == SQLITE_DONE ? QUEUE_OK : QUEUE_EIO;
}

static int do_idem_finish(struct sq *q, struct op *op)
{
    sqlite3_stmt *st;
    int rc;
    if (op->code < 0 && exec1(q->wr, "DELETE FROM idempotency WHERE key ="
                              " ?1 AND state = 1", &st) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, op->s[0], -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        return rc == SQLITE_DONE ? QUEUE_OK : QUEUE_EIO;
    }
    if (exec1(q->wr, "UPDATE idempotency SET state = 0, http_status = ?2,"
              " response = ?3 WHERE key = ?1", &st) != SQLITE_OK)
        return QUEUE_EIO;
    sqlite3_bind_text(st, 1, op->s[0], -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, op->code);
    sqlite3_bind_text(st, 3, op->s[1], -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? QUEUE_OK : QUEUE_EIO;
}

/* Extends the leases of the sending messages on the wire (op->s[0], a
   JSON array of ids). */
static int do_renew(struct sq *q, struct op *op)
{
    sqlite3_stmt *st;
    int rc;
    if (exec1(q->wr, "UPDATE messages SET lease_until = ?1 + ?2"
              " WHERE state = 2 AND id IN (SELECT value FROM json_each(?3))",
              &st) != SQLITE_OK)
        return QUEUE_EIO;
    sqlite3_bind_double(st, 1, op->now);
    sqlite3_bind_double(st, 2, op->lease);
    sqlite3_bind_text(st, 3, op->s[0], -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? QUEUE_OK : QUEUE_EIO;
}

/* Sending messages whose lease ended: unknown, with an attempt saying so. */
static int do_reap(struct sq *q, struct op *op)
{
    sqlite3_stmt *st;
    int rc;
    if (exec1(q->wr, "INSERT OR REPLACE INTO attempts (message, n, at,"
              " status, code, enhanced, error) SELECT id, attempts, ?1,"
              " 'unknown', 421, '4.4.2', 'the lease of the message being"
              " sent expired: it may have been delivered; not resent'"
              " FROM messages WHERE state = 2 AND lease_until < ?1",
              &st) != SQLITE_OK)
        return QUEUE_EIO;
    sqlite3_bind_double(st, 1, op->now);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE || exec1(q->wr, "UPDATE messages SET state = 8,"
                                   " lease_until = NULL, finished_at = ?1"
                                   " WHERE state = 2 AND lease_until < ?1",
                                   &st) != SQLITE_OK)
        return QUEUE_EIO;
    sqlite3_bind_double(st, 1, op->now);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    op->nclaimed = (size_t)sqlite3_changes(q->wr);
    return rc == SQLITE_DONE ? QUEUE_OK : QUEUE_EIO;
}

/* A synchronous send: the message, final with an empty blob, and its one
   attempt (the recipients trigger fills message_rcpts). */
static int do_log_sync(struct sq *q, struct op *op)
{
    const struct queue_sync_msg *m = op->sync;
    const struct queue_attempt *a = &m->attempt;
    const char *const s[6] = { a->status, a->enhanced, a->text,
                               a->accepted, a->rejected, a->error };
    sqlite3_stmt *st;
    int rc;
    if (exec1(q->wr, "INSERT INTO messages (id, state, created_at, due_at,"
              " finished_at, attempts, message_id, metadata, blob,"
              " recipients, subject) VALUES (?1, ?2, ?3, ?3, ?4, 1, ?5, ?6,"
              " X'', ?7, ?8)", &st) != SQLITE_OK)
        return QUEUE_EIO;
    sqlite3_bind_text(st, 1, m->id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, (int)m->state);
    sqlite3_bind_double(st, 3, m->created_at);
    sqlite3_bind_double(st, 4, a->at);
    sqlite3_bind_text(st, 5, m->message_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, m->metadata, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 7, m->recipients, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 8, m->subject, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc == SQLITE_DONE)      /* attempt 1: the row says attempts = 1 */
        rc = put_attempt(q, m->id, a->at, a->code, s);
    return rc == SQLITE_DONE ? QUEUE_OK : QUEUE_EIO;
}

/* ---- the outbox's writes ---- */

/* Fills ev from a row of do_ev_claim's SELECT; -1 when out of memory. */
static int ev_row(sqlite3_stmt *st, struct queue_event *ev)
{
    snprintf(ev->id, sizeof ev->id, "%s", sqlite3_column_text(st, 0));
    snprintf(ev->message, sizeof ev->message, "%s",
             sqlite3_column_text(st, 1));
    ev->state = (enum queue_state)sqlite3_column_int(st, 2);
    ev->attempt = sqlite3_column_int(st, 3);
    ev->created_at = sqlite3_column_double(st, 4);
    ev->tries = sqlite3_column_int(st, 5);
    ev->code = sqlite3_column_int(st, 9);
    char **dst[] = { &ev->message_id, &ev->metadata, &ev->status, NULL,
                     &ev->enhanced, &ev->text, &ev->accepted,
                     &ev->rejected };
    for (int i = 0; i < 8; i++) {
        if (dst[i] == NULL || sqlite3_column_type(st, 6 + i) == SQLITE_NULL)
            continue;
        *dst[i] = strdup((const char *)sqlite3_column_text(st, 6 + i));
        if (*dst[i] == NULL)
            return -1;
    }
    return 0;
}

/* Leases the due pending events and reads their payload. */
static int do_ev_claim(struct sq *q, struct op *op)
{
    sqlite3_stmt *st, *up;
    int rc;
    op->events = calloc(op->max ? op->max : 1, sizeof *op->events);
    if (op->events == NULL)
        return QUEUE_ENOMEM;
    if (exec1(q->wr, "SELECT e.id, e.message, e.mstate, e.attempt,"
              " e.created_at, (SELECT count(*) FROM event_tries t WHERE"
              " t.event = e.id), m.message_id, m.metadata, a.status, a.code,"
              " a.enhanced, a.text, a.accepted, a.rejected FROM events e"
              " LEFT JOIN messages m ON m.id = e.message LEFT JOIN attempts"
              " a ON a.message = e.message AND a.n = e.attempt WHERE"
              " e.state = 0 AND e.due_at <= ?1 AND (e.lease_until IS NULL OR"
              " e.lease_until < ?1) ORDER BY e.due_at LIMIT ?2", &st) !=
        SQLITE_OK)
        return QUEUE_EIO;
    if (exec1(q->wr, "UPDATE events SET lease_until = ?2 WHERE id = ?1",
              &up) != SQLITE_OK) {
        sqlite3_finalize(st);
        return QUEUE_EIO;
    }
    sqlite3_bind_double(st, 1, op->now);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)op->max);
    sqlite3_bind_double(up, 2, op->now + op->lease);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && op->nevents < op->max) {
        struct queue_event *ev = &op->events[op->nevents++];
        if (ev_row(st, ev) < 0) {
            rc = SQLITE_NOMEM;
            break;
        }
        sqlite3_reset(up);
        sqlite3_bind_text(up, 1, ev->id, -1, SQLITE_STATIC);
        if (sqlite3_step(up) != SQLITE_DONE) {
            rc = SQLITE_ERROR;
            break;
        }
    }
    sqlite3_finalize(st);
    sqlite3_finalize(up);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? QUEUE_OK : QUEUE_EIO;
}

/* Runs sql with ?1 bound to id; SQLITE_DONE on success. */
static int exec_id(struct sq *q, const char *sql, const char *id)
{
    sqlite3_stmt *st;
    int rc;
    if (exec1(q->wr, sql, &st) != SQLITE_OK)
        return SQLITE_ERROR;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc;
}

/* A 410: the event's type is stopped, its pending events too. */
static int ev_stop_type(struct sq *q, const char *id)
{
    int rc = exec_id(q, "UPDATE outbox SET stopped = stopped | (1 << (SELECT"
                     " mstate FROM events WHERE id = ?1)) WHERE k = 1", id);
    if (rc != SQLITE_DONE)
        return rc;
    return exec_id(q, "UPDATE events SET state = 3, lease_until = NULL WHERE"
                   " state = 0 AND mstate = (SELECT mstate FROM events WHERE"
                   " id = ?1)", id);
}

/* Records a try of an event and its new state. */
static int do_ev_result(struct sq *q, struct op *op)
{
    sqlite3_stmt *st;
    int rc;
    if (exec1(q->wr, "INSERT INTO event_tries (event, n, at, http_status,"
              " error) SELECT ?1, coalesce(max(n), 0) + 1, ?2, ?3, ?4 FROM"
              " event_tries WHERE event = ?1", &st) != SQLITE_OK)
        return QUEUE_EIO;
    sqlite3_bind_text(st, 1, op->s[0], -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 2, op->at);
    if (op->code > 0)
        sqlite3_bind_int(st, 3, op->code);
    if (op->s[1][0] != '\0')
        sqlite3_bind_text(st, 4, op->s[1], -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE || exec1(q->wr, "UPDATE events SET state = ?2,"
                                   " lease_until = NULL, due_at = ?3,"
                                   " delivered_at = CASE WHEN ?2 = 1 THEN ?4"
                                   " END WHERE id = ?1", &st) != SQLITE_OK)
        return QUEUE_EIO;
    sqlite3_bind_text(st, 1, op->s[0], -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 2, (int)op->ev_state);
    sqlite3_bind_double(st, 3, op->next_at);
    sqlite3_bind_double(st, 4, op->at);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc == SQLITE_DONE && op->ev_state == QUEUE_EV_STOPPED)
        rc = ev_stop_type(q, op->s[0]);
    return rc == SQLITE_DONE ? QUEUE_OK : QUEUE_EIO;
}

/* Marks a claimed message started: QUEUE_ECONFLICT when it is no
   longer sending. */
static int do_start(struct sq *q, struct op *op)
{
    sqlite3_stmt *st;
    int rc;
    if (wr1(q, "UPDATE messages SET started = 1 WHERE id = ?1 AND"
              " state = 2", &st) != SQLITE_OK)
        return QUEUE_EIO;
    sqlite3_bind_text(st, 1, op->id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    wr_done(q, st);
    if (rc != SQLITE_DONE)
        return QUEUE_EIO;
    return sqlite3_changes(q->wr) == 1 ? QUEUE_OK : QUEUE_ECONFLICT;
}

/* Runs one op inside a savepoint of the open transaction. */
static void run_op(struct sq *q, struct op *op)
{
    if (wr_exec(q, "SAVEPOINT op") != SQLITE_OK) {
        op->rc = QUEUE_EIO;
        return;
    }
    switch (op->kind) {
    case OP_ENQUEUE: op->rc = do_enqueue(q, op); break;
    case OP_CLAIM: op->rc = do_claim(q, op); break;
    case OP_RECORD: op->rc = do_record(q, op); break;
    case OP_RELEASE: op->rc = do_release(q, op); break;
    case OP_CANCEL: op->rc = do_cancel(q, op); break;
    case OP_IDEM_FINISH: op->rc = do_idem_finish(q, op); break;
    case OP_RENEW: op->rc = do_renew(q, op); break;
    case OP_REAP: op->rc = do_reap(q, op); break;
    case OP_LOG_SYNC: op->rc = do_log_sync(q, op); break;
    case OP_EV_CLAIM: op->rc = do_ev_claim(q, op); break;
    case OP_EV_RESULT: op->rc = do_ev_result(q, op); break;
    case OP_START: op->rc = do_start(q, op); break;
    }
    if (op->rc == QUEUE_OK || op->rc == QUEUE_EIDEM ||
        op->rc == QUEUE_ENOTFOUND || op->rc == QUEUE_ECONFLICT)
        wr_exec(q, "RELEASE op");
    else
        sqlite3_exec(q->wr, "ROLLBACK TO op; RELEASE op", NULL, NULL, NULL);
}

/* Deletes finished messages past the retention and old keys. */
static void purge(struct sq *q, double now)
{
    sqlite3_stmt *st;
    if (now - q->last_purge < QUEUE_PURGE_EVERY_S)
        return;
    q->last_purge = now;
    if (exec1(q->wr, "DELETE FROM attempts WHERE message IN (SELECT id FROM"
              " messages WHERE finished_at < ?1)", &st) == SQLITE_OK) {
        sqlite3_bind_double(st, 1, now - q->retention_s);
        sqlite3_step(st);
        sqlite3_finalize(st);
    }
    if (exec1(q->wr, "DELETE FROM messages WHERE finished_at < ?1", &st) ==
        SQLITE_OK) {
        sqlite3_bind_double(st, 1, now - q->retention_s);
        sqlite3_step(st);
        sqlite3_finalize(st);
    }
    if (exec1(q->wr, "DELETE FROM idempotency WHERE created_at < ?1"
              " AND state <> 1", &st) == SQLITE_OK) {
        sqlite3_bind_double(st, 1, now - q->idem_ttl_s);
        sqlite3_step(st);
        sqlite3_finalize(st);
    }
}

/* Frees an op that nobody waits for. */
static void op_free(struct op *op)
{
    for (size_t i = 0; i < sizeof op->s / sizeof op->s[0]; i++)
        free(op->s[i]);
    free(op->blob);
    free(op);
}

/* Tells each op of the batch its outcome (no lock held for callbacks). */
static void finish_ops(struct sq *q, struct op *list)
{
    while (list != NULL) {
        struct op *op = list;
        list = op->next;
        if (op->kind == OP_ENQUEUE) {
            op->cb(op->ctx, op->rc, op->rc == QUEUE_EIDEM ? &op->hit : NULL);
            queue_idem_hit_clear(&op->hit);
            free(op);
        } else if (op->kind == OP_LOG_SYNC) {
            op->logged(op->ctx, op->rc);
            free(op);
        } else if (op->waited) {
            pthread_mutex_lock(&q->mu);
            op->done = 1;
            pthread_cond_broadcast(&q->done_cv);
            pthread_mutex_unlock(&q->mu);
        } else {
            op_free(op);
        }
    }
}

/* The writer thread: one transaction per batch of ops. */
static void *writer_main(void *arg)
{
    struct sq *q = arg;
    for (;;) {
        struct op *list;
        pthread_mutex_lock(&q->mu);
        while (q->head == NULL && !q->closing)
            pthread_cond_wait(&q->work_cv, &q->mu);
        list = q->head;
        q->head = q->tail = NULL;
        if (list == NULL) {
            pthread_mutex_unlock(&q->mu);
            return NULL;            /* closing, nothing left */
        }
        pthread_mutex_unlock(&q->mu);
        int began = sqlite3_exec(q->wr, "BEGIN IMMEDIATE", NULL, NULL,
                                 NULL) == SQLITE_OK;
        for (struct op *op = list; op != NULL; op = op->next) {
            if (began)
                run_op(q, op);
            else
                op->rc = QUEUE_EIO;
        }
        if (began) {
            purge(q, queue_wall_now());
            if (sqlite3_exec(q->wr, "COMMIT", NULL, NULL, NULL) !=
                SQLITE_OK) {
                sqlite3_exec(q->wr, "ROLLBACK", NULL, NULL, NULL);
                for (struct op *op = list; op != NULL; op = op->next)
                    if (op->rc == QUEUE_OK || op->rc == QUEUE_EIDEM)
                        op->rc = QUEUE_EIO;
            }
        }
        finish_ops(q, list);
    }
}

/* Puts op on the list; QUEUE_ECLOSED when closing. */
static int submit(struct sq *q, struct op *op)
{
    pthread_mutex_lock(&q->mu);
    if (q->closing) {
        pthread_mutex_unlock(&q->mu);
        return QUEUE_ECLOSED;
    }
    if (q->tail != NULL)
        q->tail->next = op;
    else
        q->head = op;
    q->tail = op;
    pthread_cond_signal(&q->work_cv);
    pthread_mutex_unlock(&q->mu);
    return QUEUE_OK;
}

/* Submits op and waits until the writer has committed it. */
static int submit_wait(struct sq *q, struct op *op)
{
    op->waited = 1;
    int rc = submit(q, op);
    if (rc != QUEUE_OK)
        return rc;
    pthread_mutex_lock(&q->mu);
    while (!op->done)
        pthread_cond_wait(&q->done_cv, &q->mu);
    pthread_mutex_unlock(&q->mu);
    return op->rc;
}

/* Submits ops[0..n) as one run of the list (so one commit takes them
   all) and waits until the writer has committed them; QUEUE_ECLOSED when
   closing (none submitted). */
static int submit_wait_all(struct sq *q, struct op *ops, size_t n)
{
    pthread_mutex_lock(&q->mu);
    if (q->closing) {
        pthread_mutex_unlock(&q->mu);
        return QUEUE_ECLOSED;
    }
    for (size_t i = 0; i < n; i++) {
        ops[i].waited = 1;
        ops[i].next = i + 1 < n ? &ops[i + 1] : NULL;
    }
    if (q->tail != NULL)
        q->tail->next = &ops[0];
    else
        q->head = &ops[0];
    q->tail = &ops[n - 1];
    pthread_cond_signal(&q->work_cv);
    for (size_t i = 0; i < n; i++)
        while (!ops[i].done)
            pthread_cond_wait(&q->done_cv, &q->mu);
    pthread_mutex_unlock(&q->mu);
    return QUEUE_OK;
}

/* ---- public ---- */

static int sq_open(const struct queue_opts *opts, struct queue **out,
                   char *err, size_t errlen)
{
    struct sq *q = calloc(1, sizeof *q);
    *out = NULL;
    if (q == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    q->retention_s = opts->retention_s > 0 ? opts->retention_s : 7 * 86400.0;
    q->idem_ttl_s = opts->idem_ttl_s > 0 ? opts->idem_ttl_s : 86400.0;
    q->ev_states = opts->event_states;
    q->ev_config = opts->event_config;
    pthread_mutex_init(&q->mu, NULL);
    pthread_mutex_init(&q->rd_mu, NULL);
    pthread_cond_init(&q->work_cv, NULL);
    pthread_cond_init(&q->done_cv, NULL);
    if (open_db(opts->path, opts->sync_normal, &q->wr, err, errlen) < 0 ||
        migrate(q, opts->path, err, errlen) < 0 ||
        open_db(opts->path, opts->sync_normal, &q->rd, err, errlen) < 0 ||
        pthread_create(&q->writer, NULL, writer_main, q) != 0) {
        if (err[0] == '\0')
            snprintf(err, errlen, "cannot start the queue writer");
        sqlite3_close(q->wr);
        sqlite3_close(q->rd);
        free(q);
        return -1;
    }
    q->ev_config = NULL;            /* borrowed for the open only */
    *out = &q->base;
    return 0;
}

static void sq_close(struct queue *qb)
{
    struct sq *q = (struct sq *)qb;
    if (q == NULL)
        return;
    pthread_mutex_lock(&q->mu);
    q->closing = 1;
    pthread_cond_signal(&q->work_cv);
    pthread_mutex_unlock(&q->mu);
    pthread_join(q->writer, NULL);
    for (size_t i = 0; i < q->ncache; i++)
        sqlite3_finalize(q->cache[i].st);
    sqlite3_close(q->wr);
    sqlite3_close(q->rd);
    pthread_mutex_destroy(&q->mu);
    pthread_mutex_destroy(&q->rd_mu);
    pthread_cond_destroy(&q->work_cv);
    pthread_cond_destroy(&q->done_cv);
    queue_base_fini_(qb);
    free(q);
}

static unsigned long sq_recovered(const struct queue *qb)
{
    const struct sq *q = (const struct sq *)qb;
    return q->recovered;
}

/* Submits a copy of tmpl, an op whose callback tells its outcome (nobody
   waits for it); QUEUE_OK, or an error and nothing submitted. */
static int submit_copy(struct sq *q, const struct op *tmpl)
{
    struct op *op = malloc(sizeof *op);
    if (op == NULL)
        return QUEUE_ENOMEM;
    *op = *tmpl;
    int rc = submit(q, op);
    if (rc != QUEUE_OK)
        free(op);
    return rc;
}

static int sq_enqueue(struct queue *qb, const struct queue_new *msgs, size_t n,
                      const struct queue_idem *idem, queue_done_fn done,
                      void *ctx)
{
    return submit_copy((struct sq *)qb, &(struct op){
        .kind = OP_ENQUEUE, .msgs = msgs, .n = n, .idem = idem, .cb = done,
        .ctx = ctx });
}

/* A copy of s ("" for NULL); NULL only when out of memory. */
static char *dup0(const char *s)
{
    return strdup(s != NULL ? s : "");
}

static int sq_idem_finish(struct queue *qb, const char *key, int http_status,
                          const char *response)
{
    struct sq *q = (struct sq *)qb;
    struct op *op = calloc(1, sizeof *op);
    if (op == NULL)
        return QUEUE_ENOMEM;
    op->kind = OP_IDEM_FINISH;
    op->code = http_status;
    op->s[0] = dup0(key);
    op->s[1] = dup0(response);
    int rc = op->s[0] && op->s[1] ? submit(q, op) : QUEUE_ENOMEM;
    if (rc != QUEUE_OK)
        op_free(op);
    return rc;
}

static int sq_claim(struct queue *qb, double now, size_t max, double lease_s,
                    struct queue_claimed **out, size_t *n)
{
    struct sq *q = (struct sq *)qb;
    struct op op;
    memset(&op, 0, sizeof op);
    op.kind = OP_CLAIM;
    op.now = now;
    op.max = max;
    op.lease = lease_s;
    int rc = submit_wait(q, &op);
    *out = op.claimed;
    *n = op.nclaimed;
    if (rc != QUEUE_OK) {
        queue_claimed_free(op.claimed, op.nclaimed);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

static int sq_record(struct queue *qb, const char *id,
                     const struct queue_attempt *a, enum queue_state state,
                     double next_at)
{
    struct sq *q = (struct sq *)qb;
    struct op *op = calloc(1, sizeof *op);
    if (op == NULL)
        return QUEUE_ENOMEM;
    op->kind = OP_RECORD;
    snprintf(op->id, sizeof op->id, "%s", id);
    op->at = a->at;
    op->code = a->code;
    op->state = state;
    op->next_at = next_at;
    op->s[0] = dup0(a->status);
    op->s[1] = dup0(a->enhanced);
    op->s[2] = dup0(a->text);
    op->s[3] = dup0(a->accepted);
    op->s[4] = dup0(a->rejected);
    op->s[5] = dup0(a->error);
    if (state == QUEUE_RETRY && a->retry_blob != NULL) {
        op->blob = malloc(a->retry_blob_len ? a->retry_blob_len : 1);
        if (op->blob == NULL) {
            op_free(op);
            return QUEUE_ENOMEM;
        }
        memcpy(op->blob, a->retry_blob, a->retry_blob_len);
        op->blob_len = a->retry_blob_len;
    }
    for (int i = 0; i < 6; i++)
        if (op->s[i] == NULL) {
            op_free(op);
            return QUEUE_ENOMEM;
        }
    int rc = submit(q, op);
    if (rc != QUEUE_OK)
        op_free(op);
    return rc;
}

static int sq_release(struct queue *qb, const char *id)
{
    struct sq *q = (struct sq *)qb;
    struct op *op = calloc(1, sizeof *op);
    if (op == NULL)
        return QUEUE_ENOMEM;
    op->kind = OP_RELEASE;
    snprintf(op->id, sizeof op->id, "%s", id);
    int rc = submit(q, op);
    if (rc != QUEUE_OK)
        op_free(op);
    return rc;
}

static int sq_cancel(struct queue *qb, const char *id, enum queue_state *state)
{
    struct sq *q = (struct sq *)qb;
    struct op op;
    memset(&op, 0, sizeof op);
    op.kind = OP_CANCEL;
    snprintf(op.id, sizeof op.id, "%s", id);
    int rc = submit_wait(q, &op);
    if (state != NULL)
        *state = op.state;
    return rc;
}

static int sq_renew(struct queue *qb, double now, double lease_s,
                    const char *ids)
{
    struct op op;
    char *copy = strdup(ids);
    if (copy == NULL)
        return QUEUE_ENOMEM;
    memset(&op, 0, sizeof op);
    op.kind = OP_RENEW;
    op.now = now;
    op.lease = lease_s;
    op.s[0] = copy;
    int rc = submit_wait((struct sq *)qb, &op);
    free(copy);
    return rc;
}

static int sq_reap(struct queue *qb, double now, unsigned long *n)
{
    struct op op;
    memset(&op, 0, sizeof op);
    op.kind = OP_REAP;
    op.now = now;
    int rc = submit_wait((struct sq *)qb, &op);
    *n = rc == QUEUE_OK ? (unsigned long)op.nclaimed : 0;
    return rc;
}

static int sq_log_sync(struct queue *qb, const struct queue_sync_msg *m,
                       queue_logged_fn done, void *ctx)
{
    return submit_copy((struct sq *)qb, &(struct op){
        .kind = OP_LOG_SYNC, .sync = m, .logged = done, .ctx = ctx });
}

/* 1 when an event may be due at now (read side, no writer op), 0 when
   none is, -1 on error. */
static int ev_any_due(struct sq *q, double now)
{
    sqlite3_stmt *st;
    int rc;
    pthread_mutex_lock(&q->rd_mu);
    if (exec1(q->rd, "SELECT 1 FROM events WHERE state = 0 AND due_at <= ?1"
              " AND (lease_until IS NULL OR lease_until < ?1) LIMIT 1",
              &st) != SQLITE_OK) {
        pthread_mutex_unlock(&q->rd_mu);
        return -1;
    }
    sqlite3_bind_double(st, 1, now);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    pthread_mutex_unlock(&q->rd_mu);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

static int sq_event_claim(struct queue *qb, double now, size_t max,
                          double lease_s, struct queue_event **out,
                          size_t *n)
{
    struct op op;
    memset(&op, 0, sizeof op);
    op.kind = OP_EV_CLAIM;
    op.now = now;
    op.max = max;
    op.lease = lease_s;
    /* Idle pollers read; only a claim that may find work takes the
       writer (the claim itself checks again). */
    if (max == 0 || ev_any_due((struct sq *)qb, now) == 0)
        return QUEUE_OK;
    int rc = submit_wait((struct sq *)qb, &op);
    if (rc != QUEUE_OK) {
        queue_events_free(op.events, op.nevents);
        return rc;
    }
    *out = op.events;
    *n = op.nevents;
    return QUEUE_OK;
}

static int sq_event_result(struct queue *qb, const char *id, double at,
                           int http_status, const char *error,
                           enum queue_event_state state, double next_at)
{
    struct op *op = calloc(1, sizeof *op);
    if (op == NULL)
        return QUEUE_ENOMEM;
    op->kind = OP_EV_RESULT;
    op->at = at;
    op->code = http_status;
    op->ev_state = state;
    op->next_at = next_at;
    op->s[0] = dup0(id);
    op->s[1] = dup0(error);
    int rc = op->s[0] && op->s[1] ? submit((struct sq *)qb, op)
                                  : QUEUE_ENOMEM;
    if (rc != QUEUE_OK)
        op_free(op);
    return rc;
}

static int sq_start(struct queue *qb, const char *id)
{
    struct op op;
    memset(&op, 0, sizeof op);
    op.kind = OP_START;
    snprintf(op.id, sizeof op.id, "%s", id);
    return submit_wait((struct sq *)qb, &op);
}

static int sq_start_all(struct queue *qb, const char *const *ids, size_t n,
                        int *rcs)
{
    struct op *ops = calloc(n, sizeof *ops);
    int rc;
    if (ops == NULL)
        return QUEUE_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        ops[i].kind = OP_START;
        snprintf(ops[i].id, sizeof ops[i].id, "%s", ids[i]);
    }
    int sub = submit_wait_all((struct sq *)qb, ops, n);
    rc = sub;
    for (size_t i = 0; i < n; i++) {
        rcs[i] = sub == QUEUE_OK ? ops[i].rc : sub;
        if (rc == QUEUE_OK && rcs[i] != QUEUE_OK &&
            rcs[i] != QUEUE_ECONFLICT)
            rc = rcs[i];
    }
    free(ops);
    return rc;
}

static int sq_ping(struct queue *qb)
{
    (void)qb;
    return QUEUE_OK;            /* a local file: a failing write says so */
}

/* ---- reads ---- */

/* A copy of a text column, NULL for NULL. */
static char *col_dup(sqlite3_stmt *st, int i)
{
    const unsigned char *t = sqlite3_column_text(st, i);
    return t != NULL ? strdup((const char *)t) : NULL;
}

/* Reads the attempts of doc->id into doc. */
static int get_attempts(struct sq *q, struct queue_doc *doc)
{
    sqlite3_stmt *st;
    int rc;
    size_t cap = 0;
    if (exec1(q->rd, "SELECT at, status, code, enhanced, text, accepted,"
              " rejected, error FROM attempts WHERE message = ?1 ORDER BY n",
              &st) != SQLITE_OK)
        return QUEUE_EIO;
    sqlite3_bind_text(st, 1, doc->id, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (doc->nattempts == cap) {
            size_t ncap = cap ? 2 * cap : 4;
            struct queue_attempt_rec *a = realloc(doc->attempts,
                                                  ncap * sizeof *a);
            if (a == NULL) {
                rc = SQLITE_NOMEM;
                break;
            }
            doc->attempts = a;
            cap = ncap;
        }
        struct queue_attempt_rec *a = &doc->attempts[doc->nattempts++];
        a->at = sqlite3_column_double(st, 0);
        a->status = col_dup(st, 1);
        a->code = sqlite3_column_int(st, 2);
        a->enhanced = col_dup(st, 3);
        a->text = col_dup(st, 4);
        a->accepted = col_dup(st, 5);
        a->rejected = col_dup(st, 6);
        a->error = col_dup(st, 7);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? QUEUE_OK : QUEUE_EIO;
}

static int sq_get(struct queue *qb, const char *id, struct queue_doc *doc)
{
    struct sq *q = (struct sq *)qb;
    sqlite3_stmt *st;
    int rc;
    memset(doc, 0, sizeof *doc);
    snprintf(doc->id, sizeof doc->id, "%s", id);
    pthread_mutex_lock(&q->rd_mu);
    if (exec1(q->rd, "SELECT state, created_at, due_at, message_id,"
              " metadata FROM messages WHERE id = ?1", &st) != SQLITE_OK) {
        pthread_mutex_unlock(&q->rd_mu);
        return QUEUE_EIO;
    }
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        doc->state = (enum queue_state)sqlite3_column_int(st, 0);
        doc->created_at = sqlite3_column_double(st, 1);
        if (doc->state == QUEUE_QUEUED || doc->state == QUEUE_SCHEDULED ||
            doc->state == QUEUE_RETRY)
            doc->next_attempt_at = sqlite3_column_double(st, 2);
        doc->message_id = col_dup(st, 3);
        doc->metadata = col_dup(st, 4);
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW)
        rc = get_attempts(q, doc);
    else
        rc = rc == SQLITE_DONE ? QUEUE_ENOTFOUND : QUEUE_EIO;
    pthread_mutex_unlock(&q->rd_mu);
    if (rc != QUEUE_OK)
        queue_doc_clear(doc);
    return rc;
}

static int sq_counts(struct queue *qb, double now,
                     unsigned long counts[QUEUE_STATE__COUNT],
                     double *oldest_due_age)
{
    struct sq *q = (struct sq *)qb;
    sqlite3_stmt *st;
    int rc;
    memset(counts, 0, QUEUE_STATE__COUNT * sizeof counts[0]);
    *oldest_due_age = 0;
    pthread_mutex_lock(&q->rd_mu);
    if (exec1(q->rd, "SELECT state, count(*) FROM messages GROUP BY state",
              &st) != SQLITE_OK) {
        pthread_mutex_unlock(&q->rd_mu);
        return QUEUE_EIO;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int s = sqlite3_column_int(st, 0);
        if (s >= 0 && s < QUEUE_STATE__COUNT)
            counts[s] = (unsigned long)sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_DONE &&
        exec1(q->rd, "SELECT min(due_at) FROM messages WHERE state IN"
              " (0, 1, 3) AND due_at <= ?1", &st) == SQLITE_OK) {
        sqlite3_bind_double(st, 1, now);
        if (sqlite3_step(st) == SQLITE_ROW &&
            sqlite3_column_type(st, 0) != SQLITE_NULL)
            *oldest_due_age = now - sqlite3_column_double(st, 0);
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&q->rd_mu);
    return rc == SQLITE_DONE ? QUEUE_OK : QUEUE_EIO;
}

static int sq_next_due(struct queue *qb, double *when)
{
    struct sq *q = (struct sq *)qb;
    sqlite3_stmt *st;
    int rc, found = 0;
    pthread_mutex_lock(&q->rd_mu);
    if (exec1(q->rd, "SELECT min(due_at) FROM messages WHERE state IN"
              " (0, 1, 3)", &st) != SQLITE_OK) {
        pthread_mutex_unlock(&q->rd_mu);
        return QUEUE_EIO;
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
        *when = sqlite3_column_double(st, 0);
        found = 1;
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&q->rd_mu);
    return rc == SQLITE_ROW ? found : QUEUE_EIO;
}

static int sq_events_of(struct queue *qb, const char *id,
                        struct queue_event_rec **out, size_t *n)
{
    struct sq *q = (struct sq *)qb;
    sqlite3_stmt *st;
    size_t cap = 0;
    int rc;
    pthread_mutex_lock(&q->rd_mu);
    if (exec1(q->rd, "SELECT e.id, e.mstate, e.state, e.created_at,"
              " e.delivered_at, t.n, t.at, t.http_status, t.error FROM events"
              " e LEFT JOIN event_tries t ON t.event = e.id WHERE e.message ="
              " ?1 ORDER BY e.created_at, e.id, t.n", &st) != SQLITE_OK) {
        pthread_mutex_unlock(&q->rd_mu);
        return QUEUE_EIO;
    }
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct queue_event_row row = {
            .id = (const char *)sqlite3_column_text(st, 0),
            .mstate = sqlite3_column_int(st, 1),
            .state = sqlite3_column_int(st, 2),
            .created_at = sqlite3_column_double(st, 3),
            .delivered_at = sqlite3_column_double(st, 4),
            .has_try = sqlite3_column_type(st, 5) != SQLITE_NULL,
            .at = sqlite3_column_double(st, 6),
            .http_status = sqlite3_column_int(st, 7),
            .error = (const char *)sqlite3_column_text(st, 8),
        };
        if (queue_event_row_add_(out, n, &cap, &row) < 0) {
            rc = SQLITE_NOMEM;
            break;
        }
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&q->rd_mu);
    if (rc == SQLITE_DONE)
        return QUEUE_OK;
    queue_event_recs_free(*out, *n);
    *out = NULL;
    *n = 0;
    return rc == SQLITE_NOMEM ? QUEUE_ENOMEM : QUEUE_EIO;
}

static int sq_events_oldest(struct queue *qb, double now, double *age)
{
    struct sq *q = (struct sq *)qb;
    sqlite3_stmt *st;
    int rc;
    pthread_mutex_lock(&q->rd_mu);
    if (exec1(q->rd, "SELECT min(created_at) FROM events WHERE state = 0",
              &st) != SQLITE_OK) {
        pthread_mutex_unlock(&q->rd_mu);
        return QUEUE_EIO;
    }
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        *age = now - sqlite3_column_double(st, 0);
    sqlite3_finalize(st);
    pthread_mutex_unlock(&q->rd_mu);
    return rc == SQLITE_ROW ? QUEUE_OK : QUEUE_EIO;
}

/* ---- the message log (queue_list) ---- */

/* The SELECT of qry into sql: fixed fragments only, the values bound by
   list_bind in the same order. */
static void list_sql(const struct queue_list_query *qry, char *sql,
                     size_t len)
{
    snprintf(sql, len, "SELECT id, state, created_at, attempts, (SELECT code"
             " FROM attempts WHERE message = m.id ORDER BY n DESC LIMIT 1),"
             " recipients, subject, message_id FROM messages m WHERE 1%s%s%s"
             "%s%s ORDER BY created_at DESC, id DESC LIMIT ?",
             qry->states != 0 ? " AND ((1 << state) & ?) <> 0" : "",
             qry->recipient != NULL
                 ? " AND id IN (SELECT message FROM message_rcpts WHERE"
                   " addr = ?)" : "",
             qry->message_id != NULL ? " AND message_id = ?" : "",
             qry->after > 0 ? " AND created_at >= ?" : "",
             qry->before <= 0 ? ""
             : qry->before_id != NULL
                 ? " AND (created_at < ? OR (created_at = ? AND id < ?))"
                 : " AND created_at < ?");
}

/* Binds qry's values in list_sql's order. */
static void list_bind(const struct queue_list_query *qry, sqlite3_stmt *st)
{
    int i = 1;
    if (qry->states != 0)
        sqlite3_bind_int64(st, i++, (sqlite3_int64)qry->states);
    if (qry->recipient != NULL)
        sqlite3_bind_text(st, i++, qry->recipient, -1, SQLITE_STATIC);
    if (qry->message_id != NULL)
        sqlite3_bind_text(st, i++, qry->message_id, -1, SQLITE_STATIC);
    if (qry->after > 0)
        sqlite3_bind_double(st, i++, qry->after);
    if (qry->before > 0) {
        sqlite3_bind_double(st, i++, qry->before);
        if (qry->before_id != NULL) {
            sqlite3_bind_double(st, i++, qry->before);
            sqlite3_bind_text(st, i++, qry->before_id, -1, SQLITE_STATIC);
        }
    }
    sqlite3_bind_int64(st, i, (sqlite3_int64)qry->limit);
}

/* Fills it from the current row; -1 when out of memory. */
static int list_row(sqlite3_stmt *st, struct queue_item *it)
{
    snprintf(it->id, sizeof it->id, "%s", sqlite3_column_text(st, 0));
    it->state = (enum queue_state)sqlite3_column_int(st, 1);
    it->created_at = sqlite3_column_double(st, 2);
    it->attempts = sqlite3_column_int(st, 3);
    it->last_code = sqlite3_column_int(st, 4);
    it->recipients = col_dup(st, 5);
    it->subject = col_dup(st, 6);
    it->message_id = col_dup(st, 7);
    return (it->recipients == NULL && sqlite3_column_type(st, 5) !=
            SQLITE_NULL) || (it->subject == NULL && sqlite3_column_type(
            st, 6) != SQLITE_NULL) || (it->message_id == NULL &&
            sqlite3_column_type(st, 7) != SQLITE_NULL) ? -1 : 0;
}

static int sq_list(struct queue *qb, const struct queue_list_query *qry,
                   struct queue_item **out, size_t *n)
{
    struct sq *q = (struct sq *)qb;
    sqlite3_stmt *st;
    char sql[768];
    int rc;
    *out = calloc(qry->limit > 0 ? qry->limit : 1, sizeof **out);
    *n = 0;
    if (*out == NULL)
        return QUEUE_ENOMEM;
    list_sql(qry, sql, sizeof sql);
    pthread_mutex_lock(&q->rd_mu);
    if (exec1(q->rd, sql, &st) != SQLITE_OK) {
        pthread_mutex_unlock(&q->rd_mu);
        rc = SQLITE_ERROR;
    } else {
        list_bind(qry, st);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW && *n < qry->limit)
            if (list_row(st, &(*out)[(*n)++]) < 0) {
                rc = SQLITE_NOMEM;
                break;
            }
        sqlite3_finalize(st);
        pthread_mutex_unlock(&q->rd_mu);
    }
    if (rc == SQLITE_DONE || rc == SQLITE_ROW)
        return QUEUE_OK;
    queue_list_free(*out, *n);
    *out = NULL;
    *n = 0;
    return rc == SQLITE_NOMEM ? QUEUE_ENOMEM : QUEUE_EIO;
}

const struct queue_ops queue_sqlite_ops = {
    .name = "sqlite",
    .open = sq_open,
    .close = sq_close,
    .recovered = sq_recovered,
    .enqueue = sq_enqueue,
    .idem_finish = sq_idem_finish,
    .claim = sq_claim,
    .record = sq_record,
    .release = sq_release,
    .cancel = sq_cancel,
    .get = sq_get,
    .counts = sq_counts,
    .next_due = sq_next_due,
    .renew = sq_renew,
    .reap = sq_reap,
    .list = sq_list,
    .log_sync = sq_log_sync,
    .event_claim = sq_event_claim,
    .event_result = sq_event_result,
    .events_of = sq_events_of,
    .events_oldest = sq_events_oldest,
    .start = sq_start,
    .start_all = sq_start_all,
    .ping = sq_ping,
};
