/*
 * qfx.h - the fixture of the queue suite (tests/integration/queue/): the
 * relay, `mailpool serve` on a queue of this backend, HTTP calls and what
 * they answer, what reached the relay, and (QUEUE_TEST_PG) the private
 * PostgreSQL of the run.  Every file of the suite is compiled twice, for
 * test_queue (SQLite) and with QUEUE_TEST_PG for test_queue_pg; the
 * fixture is used from the test's thread only (cmocka assertions).
 */
#ifndef MAILPOOL_TESTS_QUEUE_QFX_H
#define MAILPOOL_TESTS_QUEUE_QFX_H

#include <jansson.h>

#include "queue/queue.h"
#include "tests/support/smtp_fx.h"
#include "tests/support/http.h"
#include "tests/support/mpserve.h"
#include "tests/support/tsupport.h"

/* Request headers: a JSON body sent asynchronously (Prefer:
   respond-async), and a JSON body alone. */
extern const char *const ASYNC[];
extern const char *const JSONH[];

/* The fake relay running script (single quotes allowed). */
struct peer *relay(const char *script);
/* Appends the flags choosing the queue of name qpath (NULL: a new one)
   to argv at *n; url (of urllen bytes) holds the PostgreSQL URL. */
void queue_flags(const char **argv, size_t *n, const char *qpath, char *url,
                 size_t urllen);
/* Starts the service on queue qpath (NULL: its own) with extra flags
   (NULL-ended, may be NULL). */
struct mpserve *svc(struct peer *p, const char *qpath, const char *const *more);
/* Runs `mailpool serve` on queue qpath, expecting it not to start: its
   exit code (-1 when still running after 10 s); *log what it printed. */
int serve_fails(const char *qpath, char **log);
/* One request; the parsed JSON body (NULL when none) and the status;
   keep (may be NULL) gets the response, which the caller frees. */
json_t *call(struct mpserve *s, const char *method, const char *path,
             const char *const *hdrs, const char *body, long *status,
             struct http_resp *keep);
/* Member k of object o as a string ("" when it is none). */
const char *jstr(const json_t *o, const char *k);
/* POSTs one message asynchronously; its queue id (caller frees). */
char *post_async(struct mpserve *s, const char *to, const char *extra);
/* GET /v1/messages/id; the document (caller decrefs). */
json_t *status_of(struct mpserve *s, const char *id, long *st);
/* Waits (at most ms) until message id's status is final; the document. */
json_t *wait_final(struct mpserve *s, const char *id, int ms);
/* Copies of the message whose Message-ID is mid that reached the relay. */
size_t copies(struct peer *p, const char *mid);
/* Messages the relay took. */
size_t msgs_total(struct peer *p);
/* The value of the /metrics line starting with name (include its leading
   newline and trailing space), or -1 when there is none. */
long metric_of(struct mpserve *s, const char *name);
/* MAIL commands the relay received, over every connection. */
size_t count_mail_commands(struct peer *p);
/* Waits until message id is final: sent (at the relay once) or unknown
   (at most once).  1 when unknown. */
int sent_once_or_unknown(struct mpserve *s, struct peer *p, const char *id);
/* A temp directory's queue file path; caller frees both. */
char *temp_queue(char **dir);
/* An async POST through s is a 503 problem with Retry-After. */
void async_post_is_503(struct mpserve *s);
/* queue_done_fn: *ctx (an atomic_int) becomes 1 (stored) or -1. */
void enqueued(void *ctx, int rc, const struct queue_idem_hit *hit);

#ifdef QUEUE_TEST_PG
#define PG_LEASE "2" /* seconds: the reaper acts within 2 */

/* The PostgreSQL of this run, and the databases made for queue names. */
struct pg_server {
    char dir[256];
    char url[300];
    char pwfile[300];
    int port;
    int ndb;
    char names[64][128]; /* queue name -> database "q<index>" */
};
extern struct pg_server pg;

/* Runs the peer script with args; its standard output (caller frees). */
char *pg_run(const char *args);
/* Starts this run's PostgreSQL: 0 or -1. */
int pg_up(void);
/* Stops it by its pid and removes its directory. */
void pg_down(void);
/* Runs sql in database db; the rows as text (caller frees). */
char *pg_sql(const char *db, const char *sql);
/* The database standing for queue name qpath (NULL: a new one). */
const char *pg_db(const char *qpath);
/* The one number psql printed for sql in db. */
long pg_count(const char *db, const char *sql);
#endif

#endif
