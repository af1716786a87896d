/*
 * queue/sqlite_schema.c - the SQLite queue's file: opening it (WAL,
 * synchronous FULL or NORMAL, a busy timeout), the schema's migrations
 * (PRAGMA user_version, applied in one transaction under the writer's
 * lock), the recovery of what was left sending, and the outbox's states.
 *
 * Public (queue/sqlite_impl.h): sq_open_db, sq_migrate.
 */
#include "queue/sqlite_impl.h"

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
    /* 4 -> 5: the claim's index holds only the claimable (queued 0,
       scheduled 1, retry 3), by due time: a claim reads its next messages
       in order without sorting every due one, and the writes of a
       sending, final or logged message no longer touch it (the sending
       ones are found by messages_state_created).  Written as two
       comparisons: an IN list here would build a temporary table at
       each row written. */
    "DROP INDEX messages_due;"
    "CREATE INDEX messages_due ON messages(due_at)"
    " WHERE state < 4 AND state <> 2;",
};

/* Stores which states write events and what they go to; a changed
   configuration starts the types stopped by a 410 again.  SQLITE_DONE
   on success. */
static int outbox_set(struct sq *q)
{
    sqlite3_stmt *st;
    int rc;
    if (sqlite3_prepare_v2(q->wr,
                           "UPDATE outbox SET states = ?1, stopped ="
                           " CASE WHEN config IS ?2 THEN stopped ELSE 0"
                           " END, config = ?2 WHERE k = 1",
                           -1, &st, NULL) != SQLITE_OK)
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
        snprintf(dir, sizeof dir, "%.*s",
                 slash != NULL ? (int)(slash - path) + 1 : 1,
                 slash != NULL ? path : ".");
        if (access(dir, W_OK) == 0)
            return buf;
    }
    snprintf(buf, len, "it cannot be written (%s); ", strerror(errno));
    return buf;
}

/* Opens the file at path with the queue's pragmas (WAL, synchronous,
   busy timeout; the writer's statement journals in memory); 0, or -1
   with err. */
int sq_open_db(const char *path, int sync_normal, int writer, sqlite3 **db,
               char *err, size_t errlen)
{
    char sql[192], why[96];
    int rc = sqlite3_open_v2(
        path, db,
        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s: %s%s", path,
                 unwritable(path, why, sizeof why),
                 *db ? sqlite3_errmsg(*db) : sqlite3_errstr(rc));
        return -1;
    }
    sqlite3_busy_timeout(*db, 5000);
    /* temp_store=MEMORY: the journals of each statement and savepoint of
       a write transaction (the pages it may have to undo) stay in memory;
       past 64 KiB SQLite spilled them to a temporary file, about 18 page
       writes a message enqueued, for pages no crash ever needs */
    snprintf(sql, sizeof sql,
             "PRAGMA journal_mode=WAL;"
             "PRAGMA synchronous=%s;%s",
             sync_normal ? "NORMAL" : "FULL",
             writer ? "PRAGMA temp_store=MEMORY;" : "");
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
int sq_migrate(struct sq *q, const char *path, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    int version = 0, ok;
    char *msg = NULL, sql[64];
    if (sqlite3_exec(q->wr, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK)
        goto fail;
    if (sqlite3_prepare_v2(q->wr, "PRAGMA user_version", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (version > QUEUE_SCHEMA_VERSION) {
        sqlite3_exec(q->wr, "ROLLBACK", NULL, NULL, NULL);
        snprintf(err, errlen,
                 "%s has schema version %d; this mailpool "
                 "knows up to %d",
                 path, version, QUEUE_SCHEMA_VERSION);
        return -1;
    }
    for (int v = version; v < QUEUE_SCHEMA_VERSION; v++)
        if (sqlite3_exec(q->wr, migrations[v], NULL, NULL, &msg) != SQLITE_OK)
            goto fail;
    snprintf(sql, sizeof sql, "PRAGMA user_version=%d", QUEUE_SCHEMA_VERSION);
    ok = sqlite3_exec(q->wr, sql, NULL, NULL, &msg) == SQLITE_OK;
    ok = ok && outbox_set(q) == SQLITE_DONE; /* before the recovery */
    /* Claimed but never started: nothing went out, queued again. */
    ok = ok && sqlite3_exec(q->wr,
                            "UPDATE messages SET state = 0,"
                            " lease_until = NULL, attempts = attempts - 1"
                            " WHERE state = 2 AND started = 0",
                            NULL, NULL, &msg) == SQLITE_OK;
    ok =
        ok &&
        sqlite3_exec(
            q->wr,
            "INSERT INTO attempts (message, n, at, status, code, enhanced, error)"
            " SELECT id, attempts, strftime('%s','now'), 'unknown', 421, '4.4.2',"
            " 'the service stopped while the message was being sent: it may"
            " have been delivered; not resent' FROM messages WHERE state = 2;"
            "UPDATE idempotency SET state = 2 WHERE state = 1;",
            NULL, NULL, &msg) == SQLITE_OK;
    if (!ok)
        goto fail;
    if (sqlite3_exec(q->wr,
                     "UPDATE messages SET state = 8, lease_until ="
                     " NULL, finished_at = strftime('%s','now')"
                     " WHERE state = 2",
                     NULL, NULL, &msg) != SQLITE_OK)
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
