/*
 * api/request.h - what a route's handler may do with its request besides
 * answering it (internal.h's api_reply_*): read the body, send work out,
 * wait for it.  The request's MHD-facing state (connection, lock,
 * pending count, suspension, body buffer, budget) is request.c's; the
 * handlers (routes.c, async.c, list.c, ui.c, message.c) use these
 * functions instead, which scripts/check-deps.sh holds them to.
 *
 * Work: a handler that hands work out (jobs to the pool, rows to the
 * queue's writer) calls api_req_work_begin, then api_req_work_add for the
 * pieces before any can finish, api_req_work_cancel for those that did
 * not go out after all, and ends with api_req_wait.  Each piece's
 * callback calls api_req_pending_done once; the last one resumes the
 * connection and the request answers with the function given to
 * api_req_wait.
 */
#ifndef MAILPOOL_API_REQUEST_H
#define MAILPOOL_API_REQUEST_H

#include <stddef.h>
#include <microhttpd.h>

struct api_req;

/* A route's handler, or a request's answer once its work is back:
   answers (or suspends) the request on c. */
typedef enum MHD_Result (*api_handler)(struct api_req *req,
                                       struct MHD_Connection *c);

/* The body read so far ("" when there is none); *len its bytes. */
const char *api_req_body(const struct api_req *req, size_t *len);
/* Frees the body (what was made of it holds copies). */
void api_req_body_drop(struct api_req *req);

/* Work is going out: the handler holds a token and req joins the list of
   requests api_stop may have to answer. */
void api_req_work_begin(struct api_req *req);
/* n pieces of work go out: a reference and a pending count each, taken
   before any of them can finish. */
void api_req_work_add(struct api_req *req, size_t n);
/* n of those did not go out after all: their counts and references go. */
void api_req_work_cancel(struct api_req *req, size_t n);
/* Drops the handler's token: while work is out the connection is
   suspended and answer runs once the last piece is back; else answer
   runs now. */
enum MHD_Result api_req_wait(struct api_req *req, struct MHD_Connection *c,
                             api_handler answer);
/* A piece of work is back (any thread): drops its pending count, resumes
   the connection after the last, drops its reference. */
void api_req_pending_done(struct api_req *req);
/* Takes one more reference (any thread), for work that outlives the
   answer; api_req_unref gives it back. */
void api_req_ref(struct api_req *req);
/* Drops one reference; frees the request (and its jobs) at zero. */
void api_req_unref(struct api_req *req);

#endif /* MAILPOOL_API_REQUEST_H */
