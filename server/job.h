/*
 * server/job.h - the job interface between the HTTP layer and the workers.
 *
 * A job is one unit of SMTP work: send a message, or a VRFY/EXPN/HELP query.
 * The submitter fills it (job_new + the fields), hands it to pool_submit;
 * from then on it belongs to the pool until the pool calls job->done exactly
 * once, with no pool lock held, which hands it back: the done callback owns
 * the job and must job_free it (now or later).  done runs on a worker
 * thread, except for jobs still queued when pool_drain's deadline passes:
 * those are finished (never attempted) on the thread calling pool_drain.
 * A worker's step cannot fail: whatever goes wrong is written into
 * job->result.
 *
 * Threads: a job is touched by one thread at a time (submitter, then one
 * worker, then the done callback).  pool_submit is thread-safe.
 */
#ifndef MAILPOOL_JOB_H
#define MAILPOOL_JOB_H

#include <stddef.h>
#include <smtpcore/smtp.h>

enum job_kind { JOB_SEND, JOB_VERIFY, JOB_EXPAND, JOB_HELP };

/* A message to send; every pointer is owned by the job (freed by job_free),
   the header fields' names and values included.  The body is held whole in
   memory and lent to smtpcore as text (struct smtp_body .text/.len), so the
   library sees its size and content before the first command: SIZE=, the
   8-bit and line checks before MAIL, and the 452 follow-up transactions
   (RFC 5321 4.5.3.1.10) all apply. */
struct job_message {
    char *from; /* the reverse-path */
    char **to;  /* the forward-paths */
    size_t nto;
    struct smtp_header *headers; /* in order; name and value owned */
    size_t nheaders;
    char *body; /* body text (or the whole message if raw) */
    size_t body_len;
    int raw; /* body is a complete RFC 5322 message */

    /* Private: the view job_message() returns, pointing into the above. */
    struct smtp_message mail_;
    struct smtp_body text_;
    struct smtp_send_opts so_;
};

struct job;
typedef void (*job_done_fn)(struct job *job, void *ctx);

struct job {
    enum job_kind kind;
    struct job_message msg; /* JOB_SEND */
    char *arg;              /* VERIFY address, EXPAND list, HELP topic
                                   (NULL for no topic); owned */
    char request_id[65];    /* for the logs (X-Request-Id, <= 64) */

    /* Written by the worker before done is called. */
    struct smtp_result result;
    int attempts;       /* SMTP attempts made (retries + 1) */
    double duration_ms; /* from submit to done */
    double wait_ms;     /* of which waiting for a worker */
    int unreachable;    /* relay could not be reached at all */

    double deadline; /* pool_mono_now() seconds by which a
                                   worker must take it; 0: none.  Past it
                                   the pool sends nothing, sets expired and
                                   fails it locally (http.send_deadline) */
    int expired;     /* written by the worker with result */

    int no_retry; /* the pool attempts it once (a stale
                                   pooled connection aside): the durable
                                   queue schedules its own retries */

    job_done_fn done; /* called once (see above); required */
    void *done_ctx;

    /* Optional: called by the worker that takes a send, before its first
       SMTP transaction begins (the durable queue marks its message
       started); nonzero: it must not be sent, and it is finished never
       attempted. */
    int (*started)(struct job *job, void *ctx);
    void *started_ctx;
    /* Optional, beside started: the sends a chain takes, marked at once
       (rcs[i] as started would return for jobs[i]); the pool calls it in
       place of each one's started when all of them share it. */
    void (*started_all)(struct job *const *jobs, size_t n, int *rcs);

    /* Private to the pool. */
    struct job *next_;
    double submitted_;
};

/* A zeroed job of the given kind, or NULL when out of memory. */
struct job *job_new(enum job_kind kind);
/* job->msg as smtpcore's message value (RFC 5321 envelope, header fields,
   body as text), borrowing every pointer from the job: valid while the job
   lives and its fields are unchanged.  No allocation; cannot fail. */
const struct smtp_message *job_message(struct job *job);
/* Sets header field i of job->msg to copies of name and value (i below
   nheaders, the array allocated by the caller); -1 when out of memory. */
int job_set_header(struct job *job, size_t i, const char *name,
                   const char *value);
/* job->msg as one opaque blob for the durable queue (queue/queue.h):
   *out (caller frees) of *len bytes.  -1 when out of memory. */
int job_message_encode(const struct job *job, void **out, size_t *len);
/* Fills job->msg (empty before) from a blob of job_message_encode; -1 when
   the blob is not one (then job->msg holds what was read: job_free frees
   it). */
int job_message_decode(struct job *job, const void *blob, size_t len);
/* Frees the job and all it owns; NULL is a no-op. */
void job_free(struct job *job);

#endif /* MAILPOOL_JOB_H */
