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
 * Files: this one (the ops table, the public functions, the reads),
 * queue/sqlite_schema.c (the file and its migrations) and
 * queue/sqlite_writer.c (the writer thread and its ops), sharing
 * queue/sqlite_impl.h.
 *
 * Errors: QUEUE_E* codes; SQLite's words go to the caller of queue_open
 * only (nothing here logs).  Threads: q->mu guards the op list and the
 * closing flag; the writer's connection is the writer thread's alone.
 */
#include "queue/sqlite_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* ---- public ---- */

/* Takes the queue file for this process (flock, held until sq_close):
   a second service on the same file would take the first one's messages
   on the wire for a crash's and mark them unknown, so it does not start.
   Several services share a queue through PostgreSQL.  0, or -1 with err. */
static int sq_lock_file(const char *path, int *fd, char *err, size_t errlen)
{
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd >= 0 && flock(*fd, LOCK_EX | LOCK_NB) == 0)
        return 0;
    if (*fd >= 0 && errno == EWOULDBLOCK)
        snprintf(err, errlen,
                 "%s is in use by another mailpool serve (one service a "
                 "SQLite file; several share a queue with queue.backend = "
                 "postgres)",
                 path);
    else
        snprintf(err, errlen, "cannot lock %s: %s", path, strerror(errno));
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
    return -1;
}

static int sq_open(const struct queue_opts *opts, struct queue **out, char *err,
                   size_t errlen)
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
    q->lock_fd = -1;
    if (sq_open_db(opts->path, opts->sync_normal, 1, &q->wr, err, errlen) < 0 ||
        sq_lock_file(opts->path, &q->lock_fd, err, errlen) < 0 ||
        sq_migrate(q, opts->path, err, errlen) < 0 ||
        sq_open_db(opts->path, opts->sync_normal, 0, &q->rd, err, errlen) < 0 ||
        pthread_create(&q->writer, NULL, sq_writer_main, q) != 0) {
        if (err[0] == '\0')
            snprintf(err, errlen, "cannot start the queue writer");
        sqlite3_close(q->wr);
        sqlite3_close(q->rd);
        if (q->lock_fd >= 0)
            close(q->lock_fd);
        free(q);
        return -1;
    }
    q->ev_config = NULL; /* borrowed for the open only */
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
    sqlite3_finalize(q->rd_due);
    sqlite3_close(q->wr);
    sqlite3_close(q->rd);
    close(q->lock_fd); /* another service may open the file now */
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
    int rc = sq_submit(q, op);
    if (rc != QUEUE_OK)
        free(op);
    return rc;
}

static int sq_enqueue(struct queue *qb, const struct queue_new *msgs, size_t n,
                      const struct queue_idem *idem, queue_done_fn done,
                      void *ctx)
{
    return submit_copy((struct sq *)qb, &(struct op){ .kind = OP_ENQUEUE,
                                                      .msgs = msgs,
                                                      .n = n,
                                                      .idem = idem,
                                                      .cb = done,
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
    int rc = op->s[0] && op->s[1] ? sq_submit(q, op) : QUEUE_ENOMEM;
    if (rc != QUEUE_OK)
        sq_op_free(op);
    return rc;
}

static int sq_next_due(struct queue *qb, double *when);

/* Claims through the writer, unless the reader sees nothing due (then
   no write transaction: a claim woken by the enqueue of a scheduled
   message found nothing at the cost of a commit). */
static int sq_claim(struct queue *qb, double now, size_t max, double lease_s,
                    struct queue_claimed **out, size_t *n)
{
    struct sq *q = (struct sq *)qb;
    struct op op;
    double when;
    int due = sq_next_due(qb, &when);
    if (due == 0 || (due == 1 && when > now)) {
        *out = NULL;
        *n = 0;
        return QUEUE_OK;
    }
    memset(&op, 0, sizeof op);
    op.kind = OP_CLAIM;
    op.now = now;
    op.max = max;
    op.lease = lease_s;
    int rc = sq_submit_wait(q, &op);
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
            sq_op_free(op);
            return QUEUE_ENOMEM;
        }
        memcpy(op->blob, a->retry_blob, a->retry_blob_len);
        op->blob_len = a->retry_blob_len;
    }
    for (int i = 0; i < 6; i++)
        if (op->s[i] == NULL) {
            sq_op_free(op);
            return QUEUE_ENOMEM;
        }
    int rc = sq_submit(q, op);
    if (rc != QUEUE_OK)
        sq_op_free(op);
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
    int rc = sq_submit(q, op);
    if (rc != QUEUE_OK)
        sq_op_free(op);
    return rc;
}

static int sq_cancel(struct queue *qb, const char *id, enum queue_state *state)
{
    struct sq *q = (struct sq *)qb;
    struct op op;
    memset(&op, 0, sizeof op);
    op.kind = OP_CANCEL;
    snprintf(op.id, sizeof op.id, "%s", id);
    int rc = sq_submit_wait(q, &op);
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
    int rc = sq_submit_wait((struct sq *)qb, &op);
    free(copy);
    return rc;
}

static int sq_reap(struct queue *qb, double now, unsigned long *n)
{
    struct op op;
    memset(&op, 0, sizeof op);
    op.kind = OP_REAP;
    op.now = now;
    int rc = sq_submit_wait((struct sq *)qb, &op);
    *n = rc == QUEUE_OK ? (unsigned long)op.nclaimed : 0;
    return rc;
}

static int sq_log_sync(struct queue *qb, const struct queue_sync_msg *m,
                       queue_logged_fn done, void *ctx)
{
    return submit_copy((struct sq *)qb, &(struct op){ .kind = OP_LOG_SYNC,
                                                      .sync = m,
                                                      .logged = done,
                                                      .ctx = ctx });
}

/* 1 when an event may be due at now (read side, no writer op), 0 when
   none is, -1 on error. */
static int ev_any_due(struct sq *q, double now)
{
    sqlite3_stmt *st;
    int rc;
    pthread_mutex_lock(&q->rd_mu);
    if (sq_exec1(q->rd,
                 "SELECT 1 FROM events WHERE state = 0 AND due_at <= ?1"
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
                          double lease_s, struct queue_event **out, size_t *n)
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
    int rc = sq_submit_wait((struct sq *)qb, &op);
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
    int rc = op->s[0] && op->s[1] ? sq_submit((struct sq *)qb, op)
                                  : QUEUE_ENOMEM;
    if (rc != QUEUE_OK)
        sq_op_free(op);
    return rc;
}

static int sq_start(struct queue *qb, const char *id)
{
    struct op op;
    memset(&op, 0, sizeof op);
    op.kind = OP_START;
    snprintf(op.id, sizeof op.id, "%s", id);
    return sq_submit_wait((struct sq *)qb, &op);
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
    int sub = sq_submit_wait_all((struct sq *)qb, ops, n);
    rc = sub;
    for (size_t i = 0; i < n; i++) {
        rcs[i] = sub == QUEUE_OK ? ops[i].rc : sub;
        if (rc == QUEUE_OK && rcs[i] != QUEUE_OK && rcs[i] != QUEUE_ECONFLICT)
            rc = rcs[i];
    }
    free(ops);
    return rc;
}

static int sq_ping(struct queue *qb)
{
    (void)qb;
    return QUEUE_OK; /* a local file: a failing write says so */
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
    if (sq_exec1(q->rd,
                 "SELECT at, status, code, enhanced, text, accepted,"
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
    if (sq_exec1(q->rd,
                 "SELECT state, created_at, due_at, message_id,"
                 " metadata FROM messages WHERE id = ?1",
                 &st) != SQLITE_OK) {
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
    if (sq_exec1(q->rd, "SELECT state, count(*) FROM messages GROUP BY state",
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
        sq_exec1(q->rd,
                 "SELECT min(due_at) FROM messages INDEXED BY messages_due"
                 " WHERE state < 4 AND state <> 2 AND due_at <= ?1",
                 &st) == SQLITE_OK) {
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
    if (q->rd_due == NULL &&
        sqlite3_prepare_v3(q->rd,
                           "SELECT min(due_at) FROM messages INDEXED BY"
                           " messages_due WHERE state < 4 AND state <> 2",
                           -1, SQLITE_PREPARE_PERSISTENT, &q->rd_due,
                           NULL) != SQLITE_OK) {
        pthread_mutex_unlock(&q->rd_mu);
        return QUEUE_EIO;
    }
    st = q->rd_due;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
        *when = sqlite3_column_double(st, 0);
        found = 1;
    }
    sqlite3_reset(st);
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
    if (sq_exec1(
            q->rd,
            "SELECT e.id, e.mstate, e.state, e.created_at,"
            " e.delivered_at, t.n, t.at, t.http_status, t.error FROM events"
            " e LEFT JOIN event_tries t ON t.event = e.id WHERE e.message ="
            " ?1 ORDER BY e.created_at, e.id, t.n",
            &st) != SQLITE_OK) {
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
    if (sq_exec1(q->rd, "SELECT min(created_at) FROM events WHERE state = 0",
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
static void list_sql(const struct queue_list_query *qry, char *sql, size_t len)
{
    snprintf(sql, len,
             "SELECT id, state, created_at, attempts, (SELECT code"
             " FROM attempts WHERE message = m.id ORDER BY n DESC LIMIT 1),"
             " recipients, subject, message_id FROM messages m WHERE 1%s%s%s"
             "%s%s ORDER BY created_at DESC, id DESC LIMIT ?",
             qry->states != 0 ? " AND ((1 << state) & ?) <> 0" : "",
             qry->recipient != NULL
                 ? " AND id IN (SELECT message FROM message_rcpts WHERE"
                   " addr = ?)"
                 : "",
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
    return (it->recipients == NULL &&
            sqlite3_column_type(st, 5) != SQLITE_NULL) ||
                   (it->subject == NULL &&
                    sqlite3_column_type(st, 6) != SQLITE_NULL) ||
                   (it->message_id == NULL &&
                    sqlite3_column_type(st, 7) != SQLITE_NULL)
               ? -1
               : 0;
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
    if (sq_exec1(q->rd, sql, &st) != SQLITE_OK) {
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
