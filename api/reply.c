/*
 * api/reply.c - the answers: a response gets the common headers
 * (X-Request-Id, Cache-Control: no-store, and Idempotent-Replayed,
 * Preference-Applied and Location when they apply) and is queued on the
 * connection, its status kept for the metrics and the request log.
 *
 * Public (internal.h): api_reply_json, api_reply_problem,
 * api_reply_problem_doc, api_reply_text, api_reply_response.
 *
 * A JSON answer is encoded once into a guess of its size (this thread's
 * last answer and a quarter), again only when it was too small.
 *
 * Errors: MHD_NO when the answer cannot be made (out of memory); the
 * connection is then closed.  Threads: MHD's threads, on the request's
 * own connection.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"

/* Adds the common headers, queues r and remembers the status. */
static enum MHD_Result queue(struct api_req *req, struct MHD_Connection *c,
                             unsigned int status, struct MHD_Response *r)
{
    if (r == NULL)
        return MHD_NO;
    char loc[64];
    snprintf(loc, sizeof loc, "/v1/messages/%s", req->msg_id);
    if (MHD_add_response_header(r, "X-Request-Id", req->id) != MHD_YES ||
        MHD_add_response_header(r, "Cache-Control", "no-store") != MHD_YES ||
        (req->replayed && MHD_add_response_header(r, "Idempotent-Replayed",
                                                  "true") != MHD_YES) ||
        (req->accepted_async &&
         MHD_add_response_header(r, "Preference-Applied", "respond-async") !=
             MHD_YES) ||
        (req->accepted_async && req->msg_id[0] != '\0' &&
         MHD_add_response_header(r, "Location", loc) != MHD_YES)) {
        MHD_destroy_response(r);
        return MHD_NO;
    }
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    if (ok == MHD_YES) {
        req->status = (int)status;
        req->phase = API_REQ_ANSWERED;
    }
    return ok;
}

enum MHD_Result api_reply_response(struct api_req *req,
                                   struct MHD_Connection *c,
                                   unsigned int status, struct MHD_Response *r)
{
    return queue(req, c, status, r);
}

#define API_JSON_GUESS 1024          /* least first try at an answer's size */
#define API_JSON_GUESS_MAX (1 << 20) /* most: larger answers size twice */

/* Per thread: the size of the last answer this thread encoded. */
static _Thread_local size_t json_last = API_JSON_GUESS;

/* body's JSON text and a final newline in a malloc'd buffer, *len its
   length: encoded once into a guess (1 KiB, or this thread's last answer
   and a quarter, so that batches of one size encode once), again only when
   it was too small. */
static char *json_text(json_t *body, size_t *len)
{
    const size_t flags = JSON_COMPACT | JSON_REAL_PRECISION(12);
    size_t cap = json_last + json_last / 4;
    char *buf;
    if (cap < API_JSON_GUESS)
        cap = API_JSON_GUESS;
    buf = malloc(cap);
    size_t n = buf != NULL ? json_dumpb(body, buf, cap - 1, flags) : 0;
    if (n >= cap) { /* too small: n is the size needed */
        char *big = realloc(buf, n + 1);
        if (big == NULL || json_dumpb(body, big, n, flags) != n) {
            free(big != NULL ? big : buf);
            return NULL;
        }
        buf = big;
    }
    if (n == 0) {
        free(buf);
        return NULL;
    }
    buf[n] = '\n';
    *len = n + 1;
    json_last = n < API_JSON_GUESS_MAX ? n : API_JSON_GUESS_MAX;
    return buf;
}

/* A response holding the JSON text of body and a final newline. */
static struct MHD_Response *json_response(json_t *body, const char *ctype)
{
    size_t n = 0;
    char *buf = json_text(body, &n);
    struct MHD_Response *r;
    if (buf == NULL)
        return NULL;
    r = MHD_create_response_from_buffer(n, buf, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(buf);
        return NULL;
    }
    if (MHD_add_response_header(r, "Content-Type", ctype) != MHD_YES) {
        MHD_destroy_response(r);
        return NULL;
    }
    return r;
}

enum MHD_Result api_reply_json(struct api_req *req, struct MHD_Connection *c,
                               unsigned int status, json_t *body)
{
    struct MHD_Response *r = body != NULL
                                 ? json_response(body, "application/json")
                                 : NULL;
    json_decref(body);
    return queue(req, c, status, r);
}

enum MHD_Result api_reply_problem_doc(struct api_req *req,
                                      struct MHD_Connection *c,
                                      unsigned int status, json_t *p,
                                      const char *hname, const char *hvalue)
{
    struct MHD_Response *r;
    if (p == NULL ||
        json_object_set_new(p, "request_id", json_string(req->id)) < 0) {
        json_decref(p);
        return MHD_NO;
    }
    r = json_response(p, "application/problem+json");
    json_decref(p);
    if (r != NULL && hname != NULL &&
        MHD_add_response_header(r, hname, hvalue) != MHD_YES) {
        MHD_destroy_response(r);
        r = NULL;
    }
    return queue(req, c, status, r);
}

enum MHD_Result api_reply_problem(struct api_req *req, struct MHD_Connection *c,
                                  unsigned int status, const char *detail,
                                  json_t *errors, const char *hname,
                                  const char *hvalue)
{
    return api_reply_problem_doc(req, c, status,
                                 api_problem_new((int)status, detail, errors),
                                 hname, hvalue);
}

enum MHD_Result api_reply_text(struct api_req *req, struct MHD_Connection *c,
                               unsigned int status, const char *ctype,
                               const char *buf, size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, (void *)(uintptr_t)buf, MHD_RESPMEM_MUST_COPY);
    if (r != NULL &&
        MHD_add_response_header(r, "Content-Type", ctype) != MHD_YES) {
        MHD_destroy_response(r);
        r = NULL;
    }
    return queue(req, c, status, r);
}
