/*
 * queue/sqlite_impl.h - what the SQLite backend's files share: the handle,
 * the writer's ops, and the functions one file gives the others.
 *
 * queue/sqlite.c: the ops table, the public functions and the reads;
 * queue/sqlite_schema.c: the file, its pragmas and the migrations;
 * queue/sqlite_writer.c: the writer thread, its ops and its statements.
 * Internal to queue/.
 */
#ifndef MAILPOOL_QUEUE_SQLITE_IMPL_H
#define MAILPOOL_QUEUE_SQLITE_IMPL_H

#include <pthread.h>
#include <sqlite3.h>

#include "queue/queue_impl.h"

#define QUEUE_SCHEMA_VERSION 5
#define QUEUE_PURGE_EVERY_S 3600.0
#define SQ_CACHE 16 /* the writer's statements kept prepared */

enum op_kind {
    OP_ENQUEUE,
    OP_CLAIM,
    OP_RECORD,
    OP_RELEASE,
    OP_CANCEL,
    OP_IDEM_FINISH,
    OP_RENEW,
    OP_REAP,
    OP_LOG_SYNC,
    OP_EV_CLAIM,
    OP_EV_RESULT,
    OP_START
};

/* One write waiting for the writer. */
struct op {
    enum op_kind kind;
    struct op *next;
    int rc;
    int waited; /* a caller waits on done (guarded by mu) */
    int done;   /* guarded by q->mu */

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
    char *s[7]; /* record: status, enhanced, text,
                                   accepted, rejected, error; idem: key,
                                   response */
    double at, next_at;
    int code;
    enum queue_state state;
    void *blob; /* record: the retry's message, or NULL */
    size_t blob_len;

    /* OP_EV_CLAIM (now, lease, max above), OP_EV_RESULT (s[0] the event
       id, s[1] the error, code the HTTP status, at, next_at) */
    struct queue_event *events;
    size_t nevents;
    enum queue_event_state ev_state;
};

struct sq {
    struct queue base;    /* first: a struct queue * is a sq * */
    sqlite3 *wr;          /* the writer thread's */
    sqlite3 *rd;          /* guarded by rd_mu */
    sqlite3_stmt *rd_due; /* the first due time (sq_next_due), kept
                             prepared on rd; guarded by rd_mu */
    pthread_mutex_t rd_mu;
    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* an op was added, or closing */
    pthread_cond_t done_cv; /* an op a caller waits for is done */
    struct op *head, *tail; /* guarded by mu */
    int closing;            /* guarded by mu */
    pthread_t writer;
    double retention_s, idem_ttl_s, last_purge;
    unsigned long recovered;
    int lock_fd;           /* the queue file, flock(2)ed: one service a file */
    unsigned ev_states;    /* queue_opts.event_states */
    const char *ev_config; /* queue_opts.event_config, during open */
    struct sq_stmt {
        const char *sql; /* a literal: known by its address */
        sqlite3_stmt *st;
    } cache[SQ_CACHE]; /* the writer's hot statements, prepared
                                   once (writer thread only) */
    size_t ncache;
};

/* ---- queue/sqlite_schema.c ---- */

/* Opens the file at path with the queue's pragmas (WAL, synchronous,
   busy timeout; the writer's statement journals in memory); 0, or -1
   with err. */
int sq_open_db(const char *path, int sync_normal, int writer, sqlite3 **db,
               char *err, size_t errlen);

/* Brings the schema up to QUEUE_SCHEMA_VERSION in one transaction, then
   recovers what was left sending: queued again when never started,
   unknown when started. */
int sq_migrate(struct sq *q, const char *path, char *err, size_t errlen);

/* ---- queue/sqlite_writer.c ---- */

/* Runs sql with a few bound values; SQLITE_DONE/ROW on success. */
int sq_exec1(sqlite3 *db, const char *sql, sqlite3_stmt **keep);

/* Frees an op that nobody waits for. */
void sq_op_free(struct op *op);

/* The writer thread: one transaction per batch of ops. */
void *sq_writer_main(void *arg);

/* Submits ops[0..n) as one run of the list (so one commit takes them
   all) and waits until the writer has committed them; QUEUE_ECLOSED when
   closing (none submitted). */
int sq_submit_wait_all(struct sq *q, struct op *ops, size_t n);

/* Submits op and waits until the writer has committed it. */
int sq_submit_wait(struct sq *q, struct op *op);

/* Puts op on the list; QUEUE_ECLOSED when closing. */
int sq_submit(struct sq *q, struct op *op);

#endif /* MAILPOOL_QUEUE_SQLITE_IMPL_H */
