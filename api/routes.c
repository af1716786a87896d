/*
 * api/routes.c - the handlers of the service's own GET routes (/healthz,
 * /readyz, /metrics, /openapi.json), answered at once, and of the POST
 * routes that decode their body into jobs, hand them to the pool, suspend
 * the connection and answer when the last job is done (route.c's table
 * says which route is which).
 *
 * Public (internal.h): api_get_healthz, api_get_readyz, api_get_metrics,
 * api_get_openapi, api_post_jobs.
 *
 * Each submitted job holds a reference on the request and a pending count
 * (request.h: api_req_work_add); its done callback gives both back
 * (api_req_pending_done), so a client that hangs up mid-flight leaves the
 * request alive until every job is back.
 *
 * Batches: every message is validated before any is submitted (one invalid
 * message: 422 for the whole batch, nothing sent).  If the queue fills
 * midway, the rest are not submitted and get a "not sent" result; a batch
 * of which nothing could be submitted is a 503.
 *
 * Threads: handlers on MHD's threads, on_job_done on pool workers.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/codec.h"
#include "api/internal.h"
#include "api/route.h"
#include "util/log.h"

/* ---- GET ---- */

/* {"status": s} with the given HTTP status. */
static enum MHD_Result status_doc(struct api_req *req, struct MHD_Connection *c,
                                  unsigned int http, const char *s)
{
    return api_reply_json(req, c, http, json_pack("{s:s}", "status", s));
}

enum MHD_Result api_get_healthz(struct api_req *req, struct MHD_Connection *c)
{
    return status_doc(req, c, 200, "ok");
}

/* /readyz: not draining or stopping, the queue's database answering
   (queue_ping), and (http.ready_requires_relay) a relay connection open
   or a probe passing. */
enum MHD_Result api_get_readyz(struct api_req *req, struct MHD_Connection *c)
{
    struct api *api = req->api;
    if (atomic_load(&api->draining))
        return status_doc(req, c, 503, "draining");
    if (atomic_load(&api->stopping))
        return status_doc(req, c, 503, "stopping");
    if (api->pool == NULL)
        return status_doc(req, c, 503, "relay unreachable");
    if (api->queue != NULL && queue_ping(api->queue) != QUEUE_OK)
        return status_doc(req, c, 503, "queue unreachable");
    if (api->cfg->http.ready_requires_relay && !pool_ready(api->pool))
        return status_doc(req, c, 503, "relay unreachable");
    return status_doc(req, c, 200, "ready");
}

/* /metrics: the Prometheus text. */
enum MHD_Result api_get_metrics(struct api_req *req, struct MHD_Connection *c)
{
    struct pool_stats ps;
    unsigned long long queued[API_DELIVERY_SLOTS];
    size_t len = 0;
    char *text;
    if (req->api->pool != NULL)
        pool_stats(req->api->pool, &ps);
    api_queue_finished(req->api, queued);
    text = api_metrics_render(
        &req->api->metrics, req->api->pool != NULL ? &ps : NULL, queued, &len);
    size_t qlen = 0;
    char *q = api_queue_metrics(req->api, &qlen), *all;
    if (text == NULL || q == NULL ||
        (all = realloc(text, len + qlen + 1)) == NULL) {
        free(text);
        free(q);
        return MHD_NO;
    }
    text = all;
    memcpy(text + len, q, qlen + 1);
    len += qlen;
    free(q);
    enum MHD_Result r = api_reply_text(req, c, 200,
                                       "text/plain; version=0.0.4; "
                                       "charset=utf-8",
                                       text, len);
    free(text);
    return r;
}

enum MHD_Result api_get_openapi(struct api_req *req, struct MHD_Connection *c)
{
    return api_reply_text(req, c, 200, "application/json", api_openapi_json(),
                          api_openapi_len());
}

/* ---- Jobs ---- */

/* Worker thread: the job is back.  Resumes the connection after the last
   one, then drops the job's reference. */
static void on_job_done(struct job *job, void *ctx)
{
    struct api_req *req = ctx;
    api_metrics_job(&req->api->metrics, job);
    api_req_pending_done(req);
}

/* The problem for a submission refused before anything went out: 503 with
   Retry-After while the queue is full or the service drains; 413 for a
   batch that could never fit the job queue (retrying cannot help). */
static enum MHD_Result refused(struct api_req *req, struct MHD_Connection *c)
{
    struct api *api = req->api;
    size_t cap = api->pool != NULL ? pool_capacity(api->pool) : 0;
    const char *reason = req->submit_err == POOL_DRAINING ? "draining"
                                                          : "queue_full";
    char detail[256];

    api_idem_finish(req, -1, NULL); /* nothing was sent: forget it */
    api_metrics_refused(&api->metrics, req->submit_err == POOL_DRAINING,
                        req->njobs);
    struct log_field f[] = {
        LOG_STR("request_id", req->id),
        LOG_STR("reason", reason),
        LOG_STR("route", api_route_name(req->route)),
        LOG_NUM("messages", req->njobs),
    };
    log_event_num(LOG_WARN, "refused", f, sizeof f / sizeof f[0]);
    if (req->submit_err != POOL_DRAINING && api->pool != NULL &&
        req->njobs > cap) {
        snprintf(detail, sizeof detail,
                 "the batch holds %zu messages, more "
                 "than the job queue can ever hold (pool.queue = %zu): split "
                 "it, or send it with Prefer: respond-async",
                 req->njobs, cap);
        return api_reply_problem(req, c, 413, detail, NULL, NULL, NULL);
    }
    return api_reply_problem(req, c, 503,
                             req->submit_err == POOL_DRAINING
                                 ? "the service is draining"
                                 : "the job queue is full: no message of "
                                   "the request was sent",
                             NULL, "Retry-After", "1");
}

/* r (stolen) with the message log's "id" of job i when it is logged
   (synclog.c); NULL when r is NULL or out of memory. */
static json_t *with_log_id(const struct api_req *req, size_t i, json_t *r)
{
    const char *id = api_synclog_id(req, i);
    if (r != NULL && id != NULL &&
        json_object_set_new(r, "id", json_string(id)) < 0) {
        json_decref(r);
        return NULL;
    }
    return r;
}

/* 503 with Retry-After for a request none of whose messages a worker took
   within http.send_deadline: nothing was sent, so the idempotency key is
   forgotten and a retry sends. */
static enum MHD_Result answer_expired(struct api_req *req,
                                      struct MHD_Connection *c)
{
    api_idem_finish(req, -1, NULL);
    return api_reply_problem(req, c, 503,
                             req->njobs > 1
                                 ? "no worker took any message of the batch "
                                   "within http.send_deadline: none was sent"
                                 : "no worker took the message within "
                                   "http.send_deadline: it was not sent",
                             NULL, "Retry-After", "1");
}

/* 1 when no job of req was taken by a worker before its deadline. */
static int all_expired(const struct api_req *req)
{
    for (size_t i = 0; i < req->njobs; i++)
        if (!req->jobs[i]->expired)
            return 0;
    return req->njobs > 0;
}

/* 1 when no message of req reached the relay: each was not taken before
   its deadline or found the relay unreachable (nothing of it was sent). */
static int none_sent(const struct api_req *req)
{
    for (size_t i = 0; i < req->njobs; i++)
        if (!req->jobs[i]->expired && !req->jobs[i]->unreachable)
            return 0;
    return 1;
}

/* 200 {"results": [...]} in input order (a message not taken within
   http.send_deadline is a 451 "not sent" result among them), or 503 when
   none was taken.  A batch none of whose messages was sent does not keep
   its idempotency key: the same request again sends them. */
static enum MHD_Result answer_batch(struct api_req *req,
                                    struct MHD_Connection *c)
{
    json_t *results, *doc;
    if (all_expired(req))
        return answer_expired(req, c);
    results = json_array();
    for (size_t i = 0; results != NULL && i < req->njobs; i++) {
        /* (a result slot per message, input order) */
        json_t *r = with_log_id(req, i, api_job_result_json(req->jobs[i]));
        if (json_array_append_new(results, r) < 0) {
            json_decref(results);
            results = NULL;
        }
    }
    doc = json_pack("{s:o?, s:s}", "results", results, "request_id", req->id);
    if (doc == NULL || results == NULL) {
        json_decref(doc);
        return MHD_NO;
    }
    if (none_sent(req))
        api_idem_finish(req, -1, NULL);
    else
        api_idem_finish(req, 200, doc);
    return api_reply_json(req, c, 200, doc);
}

/* 200 with the result of jobs[0], 502 when the relay was unreachable, or
   503 (Retry-After) when it was not started within http.send_deadline. */
static enum MHD_Result answer_one(struct api_req *req, struct MHD_Connection *c)
{
    const struct job *job = req->jobs[0];
    json_t *doc;
    req->smtp_code = job->result.code;
    if (job->expired) /* nothing was sent: may be retried */
        return answer_expired(req, c);
    if (job->unreachable) {
        json_t *p = api_problem_new(502,
                                    job->result.message[0] != '\0'
                                        ? job->result.message
                                        : "the relay could not be "
                                          "reached",
                                    NULL);
        if (p != NULL &&
            json_object_set_new(p, "attempts", json_integer(job->attempts)))
            json_decref(p), p = NULL;
        p = with_log_id(req, 0, p);
        /* nothing was sent: the key is forgotten, so that the same
           request once the relay is back sends (a kept 502 would be
           replayed for queue.idempotency_ttl and the message never sent) */
        api_idem_finish(req, -1, NULL);
        return api_reply_problem_doc(req, c, 502, p, NULL, NULL);
    }
    doc = with_log_id(req, 0, api_job_result_json(job));
    if (doc == NULL ||
        json_object_set_new(doc, "request_id", json_string(req->id)) < 0) {
        json_decref(doc);
        return MHD_NO;
    }
    api_idem_finish(req, 200, doc);
    return api_reply_json(req, c, 200, doc);
}

/* The answer once no job is out any more. */
static enum MHD_Result answer(struct api_req *req, struct MHD_Connection *c)
{
    if (req->nsubmitted == 0)
        return refused(req, c);
    if (req->route == API_ROUTE_BATCH)
        return answer_batch(req, c);
    return answer_one(req, c);
}

/* Hands all of req->jobs to the pool, or none of them (pool_submit_all);
   suspends the connection while any is out. */
static enum MHD_Result submit_all(struct api_req *req, struct MHD_Connection *c)
{
    struct api *api = req->api;
    int rc;
    api_req_work_begin(req);
    for (size_t i = 0; i < req->njobs; i++) {
        struct job *job = req->jobs[i];
        snprintf(job->request_id, sizeof job->request_id, "%s", req->id);
        if (!req->async && api->cfg->http.send_deadline > 0)
            job->deadline = api_now() + api->cfg->http.send_deadline;
        job->done = on_job_done;
        job->done_ctx = req;
    }
    api_synclog_prepare(req); /* sends: the message log's record */
    /* One reference and one pending count per job, taken before any job
       can finish (the handler's token keeps the answer back meanwhile). */
    api_req_work_add(req, req->njobs);
    rc = api->pool != NULL ? pool_submit_all(api->pool, req->jobs, req->njobs)
                           : POOL_FULL;
    if (rc == POOL_OK) {
        req->nsubmitted = req->njobs; /* the jobs belong to the pool */
        return api_req_wait(req, c, answer);
    }
    api_req_work_cancel(req, req->njobs); /* still ours: none went */
    req->submit_err = rc == POOL_DRAINING ? POOL_DRAINING : POOL_FULL;
    return api_req_wait(req, c, answer);
}

/* ---- POST ---- */

/* 400 with the parser's line and column. */
static enum MHD_Result malformed(struct api_req *req, struct MHD_Connection *c,
                                 const json_error_t *e)
{
    char detail[256];
    json_t *errors = json_array(), *p;
    snprintf(detail, sizeof detail, "malformed JSON at line %d, column %d: %s",
             e->line, e->column, e->text);
    if (errors != NULL && api_error_add(errors, "$", e->text) < 0) {
        json_decref(errors);
        errors = NULL;
    }
    p = api_problem_new(400, detail, errors);
    if (p != NULL &&
        (json_object_set_new(p, "line", json_integer(e->line)) ||
         json_object_set_new(p, "column", json_integer(e->column)) ||
         json_object_set_new(p, "position", json_integer(e->position))))
        json_decref(p), p = NULL;
    return api_reply_problem_doc(req, c, 400, p, NULL, NULL);
}

/* Decodes root into req->jobs; API_DECODE_* . */
static int decode(struct api_req *req, json_t *root, json_t *errors)
{
    const struct cfg *cfg = req->api->cfg;
    struct job *job;
    int rc;
    if (req->route == API_ROUTE_BATCH)
        return api_decode_batch(root, cfg, &req->jobs, &req->njobs, errors);
    if (req->route == API_ROUTE_PREVIEW) { /* kept with a message only */
        json_object_del(root, "metadata");
        json_object_del(root, "send_at");
    }
    job = job_new(api_route_def(req->route)->kind);
    if (job == NULL)
        return API_DECODE_NOMEM;
    rc = job->kind == JOB_SEND ? api_decode_message(root, cfg, job, errors, "")
                               : api_decode_query(root, job, errors);
    if (rc != API_DECODE_OK) {
        job_free(job);
        return rc;
    }
    req->jobs = calloc(1, sizeof *req->jobs);
    if (req->jobs == NULL) {
        job_free(job);
        return API_DECODE_NOMEM;
    }
    req->jobs[0] = job;
    req->njobs = 1;
    return API_DECODE_OK;
}

/* POST /v1/messages/preview: the exact bytes a composed (or raw) message
   would be sent as, message/rfc822; nothing goes to the relay. */
static enum MHD_Result preview(struct api_req *req, struct MHD_Connection *c)
{
    const struct job_message *m = &req->jobs[0]->msg;
    json_t *errors;
    if (m->raw)
        return api_reply_text(req, c, 200, "message/rfc822", m->body,
                              m->body_len);
    errors = json_array();
    if (errors != NULL &&
        api_error_add(errors, "$",
                      "preview shows the composed form (or "
                      "raw): the envelope form's header fields are "
                      "completed only when sent") < 0) {
        json_decref(errors);
        errors = NULL;
    }
    return api_reply_problem(req, c, 422, "the request has invalid fields",
                             errors, NULL, NULL);
}

enum MHD_Result api_post_jobs(struct api_req *req, struct MHD_Connection *c)
{
    json_error_t jerr;
    json_t *root, *errors;
    enum MHD_Result ret = MHD_NO;
    size_t len;
    const char *body = api_req_body(req, &len);
    int rc;
    api_async_fingerprint(req);
    if (api_json_too_many_values(body, len))
        return api_reply_problem(req, c, 413,
                                 "the body holds more JSON "
                                 "values than one per 8 bytes (with 4096 "
                                 "more): too many array elements or members "
                                 "for its size",
                                 NULL, NULL, NULL);
    root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    api_req_body_drop(req); /* the jobs hold copies from here on */
    if (root == NULL)
        return malformed(req, c, &jerr);
    errors = json_array();
    rc = errors != NULL ? api_async_extract(req, root, errors)
                        : API_DECODE_NOMEM;
    if (rc != API_DECODE_NOMEM) { /* every field's problem, together */
        int rc2 = decode(req, root, errors);
        rc = rc2 != API_DECODE_OK ? rc2 : rc;
    }
    json_decref(root);
    if (rc == API_DECODE_INVALID)
        return api_reply_problem(req, c, 422, "the request has invalid fields",
                                 errors, NULL, NULL);
    json_decref(errors);
    if (rc != API_DECODE_OK)
        return api_reply_problem(req, c, 500, "out of memory", NULL, NULL,
                                 NULL);
    if (req->route == API_ROUTE_PREVIEW)
        return preview(req, c);
    if (req->async)
        return api_async_post(req, c);
    if (api_idem_begin(req, c, &ret) < 0)
        return ret;
    return submit_all(req, c);
}
