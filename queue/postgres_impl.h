/*
 * queue/postgres_impl.h - what the PostgreSQL backend's files share: the
 * handle and the functions one file gives the others.
 *
 * queue/postgres.c: the ops table, open and close, the reads, the outbox,
 * the listener and the message log; queue/postgres_conn.c: connections
 * (non-blocking waits with deadlines) and the schema's migrations;
 * queue/postgres_write.c: enqueue, claims, outcomes, cancel, leases.
 * Internal to queue/.
 */
#ifndef MAILPOOL_QUEUE_POSTGRES_IMPL_H
#define MAILPOOL_QUEUE_POSTGRES_IMPL_H

#include <libpq-fe.h>
#include <pthread.h>

#include "queue/queue_impl.h"

#define PGQ_POOL 4
#define PGQ_LOCK_KEY "7210417016" /* pg_advisory_lock: migrations */
#define PGQ_SCHEMA_VERSION 4
#define PGQ_PURGE_EVERY_S 3600.0
#define PGQ_LISTEN_POLL_MS 250
#define PGQ_STATEMENT_MS 30000 /* a statement's answer, at most */
#define PGQ_CONNECT_MS 5000    /* a connection's setup, at most */
#define PGQ_PING_MS 2000       /* queue_ping's answer, at most */

struct pgq {
    struct queue base; /* first: a struct queue * is a pgq * */
    char *url;
    char *password;          /* NULL: libpq's own */
    char owner[96];          /* this replica: host:pid:random */
    PGconn *conns[PGQ_POOL]; /* guarded by mu while free */
    int busy[PGQ_POOL];      /* guarded by mu */
    pthread_mutex_t mu;
    pthread_cond_t free_cv; /* a connection was given back */
    pthread_t listener;
    int listening;
    int stop;                /* guarded by mu */
    pthread_mutex_t ping_mu; /* guards ping */
    PGconn *ping;            /* queue_ping's own connection */
    double retention_s, idem_ttl_s, last_purge;
    unsigned ev_states;    /* queue_opts.event_states */
    const char *ev_config; /* queue_opts.event_config, during open */
};

/* ---- queue/postgres_conn.c ---- */

/* A new connection to q's database (check PQstatus), made without
   blocking in libpq (host names are still resolved blocking). */
PGconn *pgq_connect(const struct pgq *q);

/* Connects c again: 1 when connected. */
int pgq_reconnect(PGconn *c);

/* Waits for the results of what was just sent on c (PQsendQuery*) with
   PQsocket + poll, at most ms in all, rather than blocking in libpq: the
   last result, or NULL when sending or reading failed or the time ran out
   (the connection, left busy, is reset on its next use). */
PGresult *pgq_wait(PGconn *c, long long ms);

/* PQexecParams through pgq_wait (lens and fmts may be NULL: text). */
PGresult *pgq_params(PGconn *c, const char *sql, int n, const char *const *vals,
                     const int *lens, const int *fmts);

/* Takes a free connection (waiting for one), reset when broken: its slot,
   or -1 when the database cannot be reached. */
int pgq_get(struct pgq *q);

/* Gives the connection of slot back. */
void pgq_put(struct pgq *q, int slot);

/* Runs sql with text parameters (NULL: SQL NULL); the result when it is
   status ok, else NULL (the result cleared). */
PGresult *pgq_run(PGconn *c, const char *sql, int n, const char *const *vals,
                  ExecStatusType ok);

/* Runs statements without parameters or rows (several, ';'-separated,
   allowed): 0 or -1. */
int pgq_cmd(PGconn *c, const char *sql);

/* After a failed statement: 1 when the connection had died (the server
   restarted: the statement never reached it) and is connected again. */
int pgq_revived(PGconn *c);

/* A double as text for a parameter. */
void pgq_num(char *buf, size_t len, double v);

/* A copy of a text field, NULL for NULL. */
char *pgq_dup(const PGresult *r, int row, int col);

/* Brings the schema up to PGQ_SCHEMA_VERSION under the advisory lock. */
int pgq_migrate(struct pgq *q, PGconn *c, char *err, size_t errlen);

/* ---- queue/postgres_write.c ---- */

int pgq_enqueue(struct queue *qb, const struct queue_new *msgs, size_t n,
                const struct queue_idem *idem, queue_done_fn done, void *ctx);

/* Runs one statement on a pooled connection, once more on a revived
   connection: its result (status ok) or NULL. */
PGresult *pgq_exec(struct pgq *q, const char *sql, int n,
                   const char *const *vals, ExecStatusType ok);

/* Runs a statement that returns no rows: QUEUE_OK or QUEUE_EIO. */
int pgq_exec_cmd(struct pgq *q, const char *sql, int n,
                 const char *const *vals);

int pgq_idem_finish(struct queue *qb, const char *key, int http_status,
                    const char *response);

int pgq_claim(struct queue *qb, double now, size_t max, double lease_s,
              struct queue_claimed **out, size_t *n);

int pgq_record(struct queue *qb, const char *id, const struct queue_attempt *a,
               enum queue_state state, double next_at);

/* A synchronous send in one statement: the message, final with an empty
   blob, its one attempt and its rcpts rows. */
int pgq_log_sync(struct queue *qb, const struct queue_sync_msg *m,
                 queue_logged_fn done, void *ctx);

int pgq_release(struct queue *qb, const char *id);

/* Marks the claimed message started, while it is still this replica's
   and sending (idempotent: a retried statement finds it marked). */
int pgq_start(struct queue *qb, const char *id);

int pgq_cancel(struct queue *qb, const char *id, enum queue_state *state);

int pgq_renew(struct queue *qb, double now, double lease_s, const char *ids);

int pgq_reap(struct queue *qb, double now, unsigned long *n);

#endif /* MAILPOOL_QUEUE_POSTGRES_IMPL_H */
