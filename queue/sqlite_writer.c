/*
 * queue/sqlite_writer.c - the SQLite queue's writer thread and its ops.
 *
 * Public (queue/sqlite_impl.h): sq_exec1, sq_op_free, sq_writer_main,
 * sq_submit, sq_submit_wait, sq_submit_wait_all.
 *
 * Every write is an op put on a list; the writer takes the whole list and
 * runs it in one BEGIN IMMEDIATE ... COMMIT, each op inside a SAVEPOINT
 * (group commit); it keeps its hot statements prepared (wr1, wr_done).
 * Threads: the writer's connection is the writer thread's alone; q->mu
 * guards the list and each op's done flag.
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

/* ---- the writer's ops ---- */

/* Runs sql with a few bound values; SQLITE_DONE/ROW on success. */
int sq_exec1(sqlite3 *db, const char *sql, sqlite3_stmt **keep)
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
            sqlite3_reset(*st); /* after an early return too */
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
    if (sq_exec1(db,
                 "SELECT fingerprint, state, http_status, response FROM"
                 " idempotency WHERE key = ?1",
                 &st) != SQLITE_OK)
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
        if (wr1(q,
                "INSERT INTO idempotency (key, fingerprint,"
                " created_at, state, http_status, response)"
                " VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                &st) != SQLITE_OK)
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
    if (wr1(q,
            "INSERT INTO messages (id, state, created_at, due_at,"
            " message_id, metadata, blob, recipients, subject) VALUES (?1,"
            " ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            &st) != SQLITE_OK)
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
    if (wr1(q,
            "UPDATE messages SET state = 2, lease_until = ?1 + ?3,"
            " started = 0, attempts = attempts + 1 WHERE id IN (SELECT id"
            " FROM messages INDEXED BY messages_due WHERE state < 4 AND"
            " state <> 2 AND due_at <= ?1 ORDER BY due_at LIMIT ?2)"
            " RETURNING id, blob, attempts, created_at",
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

/* Writes attempt number n of message id (n 0: `attempts`, as its row
   says; a known n writes without reading the row): s holds status,
   enhanced, text, accepted, rejected, error (NULL: "").  SQLITE_DONE on
   success. */
static int put_attempt(struct sq *q, const char *id, int n, double at, int code,
                       const char *const s[6])
{
    sqlite3_stmt *st;
    int rc;
    if (wr1(q,
            n > 0 ? "INSERT OR REPLACE INTO attempts (message, n, at,"
                    " status, code, enhanced, text, accepted, rejected, error)"
                    " VALUES (?1, ?10, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                  : "INSERT OR REPLACE INTO attempts (message, n, at,"
                    " status, code, enhanced, text, accepted, rejected, error)"
                    " SELECT id, attempts, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9 FROM"
                    " messages WHERE id = ?1",
            &st) != SQLITE_OK)
        return SQLITE_ERROR;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    if (n > 0)
        sqlite3_bind_int(st, 10, n);
    sqlite3_bind_double(st, 2, at);
    for (int i = 0; i < 6; i++)
        sqlite3_bind_text(st, i == 0 ? 3 : i + 4, s[i] != NULL ? s[i] : "", -1,
                          SQLITE_STATIC);
    sqlite3_bind_int(st, 4, code);
    rc = sqlite3_step(st);
    wr_done(q, st);
    return rc;
}

static int do_record(struct sq *q, struct op *op)
{
    sqlite3_stmt *st;
    const char *const s[6] = { op->s[0], op->s[1], op->s[2],
                               op->s[3], op->s[4], op->s[5] };
    int rc = put_attempt(q, op->id, 0, op->at, op->code, s),
        fin = queue_state_is_final(op->state);
    if (rc != SQLITE_DONE || wr1(q,
                                 "UPDATE messages SET state = ?2,"
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
    if (wr1(q, "UPDATE messages SET blob = ?2 WHERE id = ?1", &st) != SQLITE_OK)
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
    if (wr1(q,
            "UPDATE messages SET state = 0, lease_until = NULL,"
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
    if (sq_exec1(q->wr, "SELECT state FROM messages WHERE id = ?1", &st) !=
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
    if (sq_exec1(q->wr,
                 "UPDATE messages SET state = 9, finished_at = ?2"
                 " WHERE id = ?1",
                 &st) != SQLITE_OK)
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
    if (op->code < 0 && sq_exec1(q->wr,
                                 "DELETE FROM idempotency WHERE key ="
                                 " ?1 AND state = 1",
                                 &st) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, op->s[0], -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        return rc == SQLITE_DONE ? QUEUE_OK : QUEUE_EIO;
    }
    if (sq_exec1(q->wr,
                 "UPDATE idempotency SET state = 0, http_status = ?2,"
                 " response = ?3 WHERE key = ?1",
                 &st) != SQLITE_OK)
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
    if (sq_exec1(q->wr,
                 "UPDATE messages SET lease_until = ?1 + ?2"
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

/* Sending messages whose lease ended: those never started queued again
   (nothing of them went out), the started ones unknown, with an attempt
   saying so. */
static int do_reap(struct sq *q, struct op *op)
{
    sqlite3_stmt *st;
    int rc;
    if (sq_exec1(q->wr,
                 "UPDATE messages SET state = 0, lease_until = NULL,"
                 " attempts = attempts - 1 WHERE state = 2 AND started = 0"
                 " AND lease_until < ?1",
                 &st) != SQLITE_OK)
        return QUEUE_EIO;
    sqlite3_bind_double(st, 1, op->now);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return QUEUE_EIO;
    if (sq_exec1(q->wr,
                 "INSERT OR REPLACE INTO attempts (message, n, at,"
                 " status, code, enhanced, error) SELECT id, attempts, ?1,"
                 " 'unknown', 421, '4.4.2', 'the lease of the message being"
                 " sent expired: it may have been delivered; not resent'"
                 " FROM messages WHERE state = 2 AND lease_until < ?1",
                 &st) != SQLITE_OK)
        return QUEUE_EIO;
    sqlite3_bind_double(st, 1, op->now);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE || sq_exec1(q->wr,
                                      "UPDATE messages SET state = 8,"
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
    const char *const s[6] = { a->status,   a->enhanced, a->text,
                               a->accepted, a->rejected, a->error };
    sqlite3_stmt *st;
    int rc;
    if (wr1(q,
            "INSERT INTO messages (id, state, created_at, due_at,"
            " finished_at, attempts, message_id, metadata, blob,"
            " recipients, subject) VALUES (?1, ?2, ?3, ?3, ?4, 1, ?5, ?6,"
            " X'', ?7, ?8)",
            &st) != SQLITE_OK)
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
    wr_done(q, st);
    if (rc == SQLITE_DONE) /* attempt 1, as the row says */
        rc = put_attempt(q, m->id, 1, a->at, a->code, s);
    return rc == SQLITE_DONE ? QUEUE_OK : QUEUE_EIO;
}

/* ---- the outbox's writes ---- */

/* Fills ev from a row of do_ev_claim's SELECT; -1 when out of memory. */
static int ev_row(sqlite3_stmt *st, struct queue_event *ev)
{
    snprintf(ev->id, sizeof ev->id, "%s", sqlite3_column_text(st, 0));
    snprintf(ev->message, sizeof ev->message, "%s", sqlite3_column_text(st, 1));
    ev->state = (enum queue_state)sqlite3_column_int(st, 2);
    ev->attempt = sqlite3_column_int(st, 3);
    ev->created_at = sqlite3_column_double(st, 4);
    ev->tries = sqlite3_column_int(st, 5);
    ev->code = sqlite3_column_int(st, 9);
    char **dst[] = { &ev->message_id, &ev->metadata,
                     &ev->status,     NULL,
                     &ev->enhanced,   &ev->text,
                     &ev->accepted,   &ev->rejected };
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
    if (sq_exec1(q->wr,
                 "SELECT e.id, e.message, e.mstate, e.attempt,"
                 " e.created_at, (SELECT count(*) FROM event_tries t WHERE"
                 " t.event = e.id), m.message_id, m.metadata, a.status, a.code,"
                 " a.enhanced, a.text, a.accepted, a.rejected FROM events e"
                 " LEFT JOIN messages m ON m.id = e.message LEFT JOIN attempts"
                 " a ON a.message = e.message AND a.n = e.attempt WHERE"
                 " e.state = 0 AND e.due_at <= ?1 AND (e.lease_until IS NULL OR"
                 " e.lease_until < ?1) ORDER BY e.due_at LIMIT ?2",
                 &st) != SQLITE_OK)
        return QUEUE_EIO;
    if (sq_exec1(q->wr, "UPDATE events SET lease_until = ?2 WHERE id = ?1",
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
    if (sq_exec1(q->wr, sql, &st) != SQLITE_OK)
        return SQLITE_ERROR;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc;
}

/* A 410: the event's type is stopped, its pending events too. */
static int ev_stop_type(struct sq *q, const char *id)
{
    int rc = exec_id(q,
                     "UPDATE outbox SET stopped = stopped | (1 << (SELECT"
                     " mstate FROM events WHERE id = ?1)) WHERE k = 1",
                     id);
    if (rc != SQLITE_DONE)
        return rc;
    return exec_id(q,
                   "UPDATE events SET state = 3, lease_until = NULL WHERE"
                   " state = 0 AND mstate = (SELECT mstate FROM events WHERE"
                   " id = ?1)",
                   id);
}

/* Records a try of an event and its new state. */
static int do_ev_result(struct sq *q, struct op *op)
{
    sqlite3_stmt *st;
    int rc;
    if (sq_exec1(q->wr,
                 "INSERT INTO event_tries (event, n, at, http_status,"
                 " error) SELECT ?1, coalesce(max(n), 0) + 1, ?2, ?3, ?4 FROM"
                 " event_tries WHERE event = ?1",
                 &st) != SQLITE_OK)
        return QUEUE_EIO;
    sqlite3_bind_text(st, 1, op->s[0], -1, SQLITE_STATIC);
    sqlite3_bind_double(st, 2, op->at);
    if (op->code > 0)
        sqlite3_bind_int(st, 3, op->code);
    if (op->s[1][0] != '\0')
        sqlite3_bind_text(st, 4, op->s[1], -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE || sq_exec1(q->wr,
                                      "UPDATE events SET state = ?2,"
                                      " lease_until = NULL, due_at = ?3,"
                                      " delivered_at = CASE WHEN ?2 = 1 THEN ?4"
                                      " END WHERE id = ?1",
                                      &st) != SQLITE_OK)
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
    if (wr1(q,
            "UPDATE messages SET started = 1 WHERE id = ?1 AND"
            " state = 2",
            &st) != SQLITE_OK)
        return QUEUE_EIO;
    sqlite3_bind_text(st, 1, op->id, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    wr_done(q, st);
    if (rc != SQLITE_DONE)
        return QUEUE_EIO;
    return sqlite3_changes(q->wr) == 1 ? QUEUE_OK : QUEUE_ECONFLICT;
}

/* Runs one op inside a savepoint of the open transaction; a started
   mark (one UPDATE of one row, undone whole by SQLite when it fails) runs
   without one. */
static void run_op(struct sq *q, struct op *op)
{
    if (op->kind == OP_START) {
        op->rc = do_start(q, op);
        return;
    }
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
    if (sq_exec1(q->wr,
                 "DELETE FROM attempts WHERE message IN (SELECT id FROM"
                 " messages WHERE finished_at < ?1)",
                 &st) == SQLITE_OK) {
        sqlite3_bind_double(st, 1, now - q->retention_s);
        sqlite3_step(st);
        sqlite3_finalize(st);
    }
    if (sq_exec1(q->wr, "DELETE FROM messages WHERE finished_at < ?1", &st) ==
        SQLITE_OK) {
        sqlite3_bind_double(st, 1, now - q->retention_s);
        sqlite3_step(st);
        sqlite3_finalize(st);
    }
    if (sq_exec1(q->wr,
                 "DELETE FROM idempotency WHERE created_at < ?1"
                 " AND state <> 1",
                 &st) == SQLITE_OK) {
        sqlite3_bind_double(st, 1, now - q->idem_ttl_s);
        sqlite3_step(st);
        sqlite3_finalize(st);
    }
}

/* Frees an op that nobody waits for. */
void sq_op_free(struct op *op)
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
            sq_op_free(op);
        }
    }
}

/* The writer thread: one transaction per batch of ops. */
void *sq_writer_main(void *arg)
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
            return NULL; /* closing, nothing left */
        }
        pthread_mutex_unlock(&q->mu);
        int began = sqlite3_exec(q->wr, "BEGIN IMMEDIATE", NULL, NULL, NULL) ==
                    SQLITE_OK;
        for (struct op *op = list; op != NULL; op = op->next) {
            if (began)
                run_op(q, op);
            else
                op->rc = QUEUE_EIO;
        }
        if (began) {
            purge(q, queue_wall_now());
            if (sqlite3_exec(q->wr, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
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
int sq_submit(struct sq *q, struct op *op)
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
int sq_submit_wait(struct sq *q, struct op *op)
{
    op->waited = 1;
    int rc = sq_submit(q, op);
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
int sq_submit_wait_all(struct sq *q, struct op *ops, size_t n)
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
