/*
 * queue/postgres_write.c - the PostgreSQL queue's writes: enqueue (with
 * its idempotency key and NOTIFY, in one transaction), claims (FOR UPDATE
 * SKIP LOCKED, with a lease and the claim log), started marks, outcomes,
 * releases, cancel, and the leases (renewal, purge, reaper).
 *
 * Public: the functions under "queue/postgres_write.c" in
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

/* ---- writes ---- */

/* Looks idem's key up after a refused insert: fills hit; 0 or -1. */
static int pgq_idem_hit(PGconn *c, const struct queue_idem *idem,
                        struct queue_idem_hit *hit)
{
    const char *vals[] = { idem->key };
    PGresult *r = pgq_run(c,
                          "SELECT fingerprint, state, http_status,"
                          " response FROM mailpool_idempotency WHERE key ="
                          " $1",
                          1, vals, PGRES_TUPLES_OK);
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
    const char *vals[] = { idem->key, idem->fingerprint,
                           at,        idem->pending ? "1" : "0",
                           status,    idem->response,
                           q->owner,  until };
    pgq_num(at, sizeof at, now);
    pgq_num(until, sizeof until, now + q->base.lease_s);
    snprintf(status, sizeof status, "%d", idem->http_status);
    PGresult *r = pgq_run(c,
                          "INSERT INTO mailpool_idempotency (key,"
                          " fingerprint, created_at, state, http_status,"
                          " response, owner, lease_until) VALUES ($1, $2,"
                          " $3::float8, $4::int, $5::int, $6, $7,"
                          " $8::float8) ON CONFLICT (key) DO NOTHING",
                          8, vals, PGRES_COMMAND_OK);
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
        const char *vals[] = { m->id,   later ? "1" : "0", at,
                               due,     m->message_id,     m->metadata,
                               m->blob, m->recipients,     m->subject };
        int lens[] = { 0, 0, 0, 0, 0, 0, (int)m->blob_len, 0, 0 };
        int fmts[] = { 0, 0, 0, 0, 0, 0, 1, 0, 0 };
        pgq_num(at, sizeof at, now);
        pgq_num(due, sizeof due, later ? m->send_at : now);
        /* The message, then one mailpool_rcpts row per address of its
           recipients (a JSON array of strings), lower-cased as the
           list's filter is. */
        PGresult *r = pgq_params(c,
                                 "WITH ins AS (INSERT INTO"
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
                                 " $8::json END) AS a",
                                 9, vals, lens, fmts);
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
    if (pgq_cmd(c, "BEGIN") < 0 && (!pgq_revived(c) || pgq_cmd(c, "BEGIN") < 0))
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

int pgq_enqueue(struct queue *qb, const struct queue_new *msgs, size_t n,
                const struct queue_idem *idem, queue_done_fn done, void *ctx)
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
PGresult *pgq_exec(struct pgq *q, const char *sql, int n,
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
int pgq_exec_cmd(struct pgq *q, const char *sql, int n, const char *const *vals)
{
    PGresult *r = pgq_exec(q, sql, n, vals, PGRES_COMMAND_OK);
    PQclear(r);
    return r != NULL ? QUEUE_OK : QUEUE_EIO;
}

int pgq_idem_finish(struct queue *qb, const char *key, int http_status,
                    const char *response)
{
    struct pgq *q = (struct pgq *)qb;
    char status[16];
    const char *vals[] = { key, status, response != NULL ? response : "" };
    if (http_status < 0)
        return pgq_exec_cmd(q,
                            "DELETE FROM mailpool_idempotency WHERE key"
                            " = $1 AND state = 1",
                            1, vals);
    snprintf(status, sizeof status, "%d", http_status);
    return pgq_exec_cmd(q,
                        "UPDATE mailpool_idempotency SET state = 0,"
                        " http_status = $2::int, response = $3,"
                        " lease_until = NULL WHERE key = $1",
                        3, vals);
}

/* Copies the claimed rows of r into out[0..*n). */
static int pgq_claimed(const PGresult *r, struct queue_claimed *out, size_t *n)
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

int pgq_claim(struct queue *qb, double now, size_t max, double lease_s,
              struct queue_claimed **out, size_t *n)
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
    PGresult *r = pgq_exec(
        q,
        "WITH c AS (UPDATE mailpool_messages SET state = 2, lease_until ="
        " $1::float8 + $3::float8, owner = $4, started = false,"
        " attempts = attempts + 1"
        " WHERE id IN (SELECT id FROM mailpool_messages WHERE state IN"
        " (0, 1, 3) AND due_at <= $1::float8 ORDER BY due_at LIMIT $2::int"
        " FOR UPDATE SKIP LOCKED) AND state IN (0, 1, 3)"
        " RETURNING id, blob, attempts, created_at),"
        " l AS (INSERT INTO mailpool_claims (message, owner, attempt, at)"
        " SELECT id, $4, attempts, $1::float8 FROM c)"
        " SELECT id, blob, attempts, created_at FROM c",
        4, vals, PGRES_TUPLES_OK);
    if (r == NULL)
        return QUEUE_EIO;
    *out = calloc((size_t)PQntuples(r) + 1, sizeof **out);
    int rc = *out != NULL ? pgq_claimed(r, *out, n) : QUEUE_ENOMEM;
    PQclear(r);
    /* Rows claimed but not copied stay sending, never started: queued
       again by a reaper once the lease lapses, never sent twice. */
    return rc;
}

int pgq_record(struct queue *qb, const char *id, const struct queue_attempt *a,
               enum queue_state state, double next_at)
{
    struct pgq *q = (struct pgq *)qb;
    char st[8], due[40], fin[40], at[40], code[16];
    const char *vals[] = {
        id,          st,
        due,         queue_state_is_final(state) ? fin : NULL,
        q->owner,    at,
        a->status,   code,
        a->enhanced, a->text,
        a->accepted, a->rejected,
        a->error
    };
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
        PGresult *r = pgq_params(q->conns[slot],
                                 "UPDATE mailpool_messages"
                                 " SET blob = $3::bytea WHERE id = $1 AND"
                                 " state = 2 AND owner = $2",
                                 3, bv, lens, fmts);
        int ok = r != NULL && PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        pgq_put(q, slot);
        if (!ok)
            return QUEUE_EIO;
    }
    return pgq_exec_cmd(
        q,
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
        " error = EXCLUDED.error",
        13, vals);
}

/* A synchronous send in one statement: the message, final with an empty
   blob, its one attempt and its rcpts rows. */
int pgq_log_sync(struct queue *qb, const struct queue_sync_msg *m,
                 queue_logged_fn done, void *ctx)
{
    struct pgq *q = (struct pgq *)qb;
    const struct queue_attempt *a = &m->attempt;
    char st[8], made[40], at[40], code[16];
    const char *vals[] = {
        m->id,         st,          made,      at,   m->message_id, m->metadata,
        m->recipients, m->subject,  a->status, code, a->enhanced,   a->text,
        a->accepted,   a->rejected, a->error
    };
    snprintf(st, sizeof st, "%d", (int)m->state);
    snprintf(code, sizeof code, "%d", a->code);
    pgq_num(made, sizeof made, m->created_at);
    pgq_num(at, sizeof at, a->at);
    int rc = pgq_exec_cmd(
        q,
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
        " WHEN $7 IS NULL THEN '[]'::json ELSE $7::json END) AS r",
        15, vals);
    done(ctx, rc);
    return QUEUE_OK;
}

int pgq_release(struct queue *qb, const char *id)
{
    struct pgq *q = (struct pgq *)qb;
    const char *vals[] = { id, q->owner };
    return pgq_exec_cmd(q,
                        "UPDATE mailpool_messages SET state = 0,"
                        " lease_until = NULL, owner = NULL, attempts ="
                        " attempts - 1 WHERE id = $1 AND state = 2 AND"
                        " owner = $2",
                        2, vals);
}

/* Marks the claimed message started, while it is still this replica's
   and sending (idempotent: a retried statement finds it marked). */
int pgq_start(struct queue *qb, const char *id)
{
    struct pgq *q = (struct pgq *)qb;
    const char *vals[] = { id, q->owner };
    PGresult *r = pgq_exec(q,
                           "UPDATE mailpool_messages SET started = true"
                           " WHERE id = $1 AND state = 2 AND owner = $2",
                           2, vals, PGRES_COMMAND_OK);
    if (r == NULL)
        return QUEUE_EIO;
    int rc = strcmp(PQcmdTuples(r), "1") == 0 ? QUEUE_OK : QUEUE_ECONFLICT;
    PQclear(r);
    return rc;
}

int pgq_cancel(struct queue *qb, const char *id, enum queue_state *state)
{
    struct pgq *q = (struct pgq *)qb;
    char fin[40];
    const char *vals[] = { id, fin };
    enum queue_state s = QUEUE_CANCELLED;
    int rc;
    pgq_num(fin, sizeof fin, queue_wall_now());
    /* One statement: the cancel happens only if the state allows it at
       the moment the row is locked; else the state found is returned. */
    PGresult *r = pgq_exec(
        q,
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
        rc = strcmp(PQgetvalue(r, 0, 1), "1") == 0 ? QUEUE_OK : QUEUE_ECONFLICT;
    }
    PQclear(r);
    if (state != NULL)
        *state = s;
    return rc;
}

/* ---- leases ---- */

int pgq_renew(struct queue *qb, double now, double lease_s, const char *ids)
{
    struct pgq *q = (struct pgq *)qb;
    char until[40];
    const char *vals[] = { until, q->owner, ids };
    pgq_num(until, sizeof until, now + lease_s);
    int rc = pgq_exec_cmd(q,
                          "UPDATE mailpool_messages SET lease_until ="
                          " $1::float8 WHERE state = 2 AND owner = $2 AND"
                          " id IN (SELECT json_array_elements_text($3::json))",
                          3, vals);
    if (rc == QUEUE_OK)
        rc = pgq_exec_cmd(q,
                          "UPDATE mailpool_idempotency SET lease_until"
                          " = $1::float8 WHERE state = 1 AND owner = $2",
                          2, vals);
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
    pgq_exec_cmd(q,
                 "WITH d AS (DELETE FROM mailpool_messages WHERE"
                 " finished_at < $1::float8 RETURNING id) DELETE FROM"
                 " mailpool_attempts WHERE message IN (SELECT id FROM d)",
                 1, vals);
    pgq_exec_cmd(q,
                 "DELETE FROM mailpool_idempotency WHERE created_at <"
                 " $2::float8 AND state <> 1",
                 2, vals);
    pgq_exec_cmd(q, "DELETE FROM mailpool_claims WHERE at < $1::float8", 1,
                 vals); /* the claim log, kept as the messages */
}

/* Claimed messages never started whose lease ended (their replica died
   before sending them) go back to queued, their claim's attempt
   uncounted, and the replicas are woken. */
static void pgq_requeue(struct pgq *q, const char *const *vals)
{
    PGresult *r = pgq_exec(q,
                           "WITH u AS (UPDATE mailpool_messages SET"
                           " state = 0, lease_until = NULL, owner = NULL,"
                           " attempts = attempts - 1 WHERE state = 2 AND NOT"
                           " started AND lease_until < $1::float8 RETURNING"
                           " id) SELECT count(*), pg_notify('mailpool_queue',"
                           " '') FROM u HAVING count(*) > 0",
                           1, vals, PGRES_TUPLES_OK);
    PQclear(r);
}

int pgq_reap(struct queue *qb, double now, unsigned long *n)
{
    struct pgq *q = (struct pgq *)qb;
    char at[40];
    const char *vals[] = { at };
    *n = 0;
    pgq_num(at, sizeof at, now);
    pgq_requeue(q, vals);
    PGresult *r = pgq_exec(
        q,
        "WITH r AS (UPDATE mailpool_messages SET state = 8, lease_until ="
        " NULL, finished_at = $1::float8 WHERE state = 2 AND started AND"
        " lease_until < $1::float8 RETURNING id, attempts)"
        " INSERT INTO mailpool_attempts (message, n, at, status, code,"
        " enhanced, error) SELECT id, attempts, $1::float8, 'unknown', 421,"
        " '4.4.2', 'the replica sending the message stopped renewing its"
        " lease: it may have been delivered; not resent' FROM r"
        " ON CONFLICT (message, n) DO NOTHING RETURNING message",
        1, vals, PGRES_TUPLES_OK);
    if (r == NULL)
        return QUEUE_EIO;
    *n = (unsigned long)PQntuples(r);
    PQclear(r);
    pgq_exec_cmd(q,
                 "UPDATE mailpool_idempotency SET state = 2 WHERE"
                 " state = 1 AND lease_until < $1::float8",
                 1, vals);
    pgq_purge(q, now);
    return QUEUE_OK;
}
