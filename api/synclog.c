/*
 * api/synclog.c - synchronous sends in the message log: each message of
 * POST /v1/messages and /v1/messages/batch answered synchronously is kept
 * in the durable queue as a finished message with its one attempt
 * (queue_log_sync), so GET /v1/messages, GET /v1/messages/{id} and /ui/
 * show it beside the asynchronous ones.
 *
 * Public (internal.h): api_synclog_prepare, api_synclog_id.
 *
 * Before its jobs go to the pool, a request gets one slot per message
 * with a new queue id (the answer's "id"); each send job's done callback
 * then points at its slot.  When the job is back, the answer is released
 * (the connection resumed) first; then the record (copies of everything:
 * the job and the request go with the answer) is built on the worker and
 * handed to the queue: SQLite's writer thread commits it with the other
 * writes waiting (no wait here); PostgreSQL writes it on this worker.  So
 * neither the record nor its write delays the answer.  A write that fails (or a record that cannot be built) is
 * logged at warn (message_log_failed) and counted
 * (mailpool_queue_log_sync_failures_total), never an error for the
 * caller.  The state is the outcome's: sent, partial, rejected, unknown,
 * else failed (the pool's retries are over; nothing retries it).
 *
 * Off with queue.log_sync = false, or without a queue.
 *
 * Threads: prepare on MHD's threads; the done callback on a pool worker;
 * the write's callback on the queue's writer (SQLite) or the worker
 * (PostgreSQL).  api->nlogging counts the records handed out and not yet
 * written: api_stop waits for it to reach 0 before it frees the api.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api/codec.h"
#include "api/internal.h"
#include "server/delivery.h"
#include "util/log.h"

/* One message of a request whose send is logged (req->logslots[i]). */
struct api_logslot {
    struct api_req *req;
    size_t i; /* its job: req->jobs[i] */
    char id[QUEUE_ID_LEN];
};

/* A record on its way to the queue; owns everything m points to. */
struct api_synclog {
    struct api *api;
    struct queue_sync_msg m;
    struct delivery_attempt da;
    char *rcpts, *subject, *message_id, *metadata;
    char request_id[65];
};

/* Wall-clock Unix seconds (the queue's clock). */
static double synclog_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The message log's state for a synchronous outcome. */
static enum queue_state synclog_state(const struct job *job)
{
    switch (job->result.status) {
    case SMTP_DELIVERY_SENT: return QUEUE_SENT;
    case SMTP_DELIVERY_PARTIAL: return QUEUE_PARTIAL;
    case SMTP_DELIVERY_REJECTED: return QUEUE_REJECTED;
    case SMTP_DELIVERY_UNKNOWN: return QUEUE_UNKNOWN;
    default: return QUEUE_FAILED;
    }
}

/* Frees a record and everything it owns; NULL is a no-op. */
static void synclog_free(struct api_synclog *sl)
{
    if (sl == NULL)
        return;
    delivery_attempt_clear(&sl->da);
    free(sl->rcpts);
    free(sl->subject);
    free(sl->message_id);
    free(sl->metadata);
    free(sl);
}

/* The Message-ID the answer shows for job (a new string), or NULL: none,
   or out of memory. */
static char *synclog_message_id(const struct job *job)
{
    char *id = NULL;
    if (job->result.message_id[0] != '\0')
        return strdup(job->result.message_id);
    if (job->msg.raw && (id = api_raw_message_id(&job->msg)) != NULL &&
        id[0] == '\0') {
        free(id);
        id = NULL;
    }
    return id;
}

/* The record of slot's job, all copied; NULL when out of memory. */
static struct api_synclog *synclog_new(const struct api_logslot *slot,
                                       const struct job *job)
{
    const struct api_req *req = slot->req;
    const char *meta = api_async_metadata(req, slot->i);
    struct api_synclog *sl = calloc(1, sizeof *sl);
    double now = synclog_now();
    if (sl == NULL)
        return NULL;
    sl->api = req->api;
    snprintf(sl->request_id, sizeof sl->request_id, "%s", req->id);
    if (delivery_attempt_of(job, now, &sl->da) < 0 ||
        api_listing_of(job, &sl->rcpts, &sl->subject) < 0 ||
        (meta != NULL && (sl->metadata = strdup(meta)) == NULL)) {
        synclog_free(sl);
        return NULL;
    }
    sl->message_id = synclog_message_id(job);
    memcpy(sl->m.id, slot->id, QUEUE_ID_LEN);
    sl->m.message_id = sl->message_id;
    sl->m.metadata = sl->metadata;
    sl->m.recipients = sl->rcpts;
    sl->m.subject = sl->subject;
    sl->m.created_at = now - job->duration_ms / 1000.0;
    sl->m.state = synclog_state(job);
    sl->m.attempt = sl->da.a;
    return sl;
}

/* A record that could not be written: a warning and the counter. */
static void synclog_failed(struct api *api, const char *id,
                           const char *request_id, int rc)
{
    struct log_field f[] = {
        LOG_STR("queue_id", id),
        LOG_STR("request_id", request_id),
        LOG_STR("reason", rc == QUEUE_ENOMEM    ? "out of memory"
                          : rc == QUEUE_ECLOSED ? "the queue is closing"
                                                : "the queue cannot be "
                                                  "written"),
    };
    atomic_fetch_add(&api->log_failed, 1);
    log_event_num(LOG_WARN, "message_log_failed", f, sizeof f / sizeof f[0]);
}

/* The queue's word on a record (writer thread, or the worker). */
static void on_logged(void *ctx, int rc)
{
    struct api_synclog *sl = ctx;
    struct api *api = sl->api;
    if (rc != QUEUE_OK)
        synclog_failed(api, sl->m.id, sl->request_id, rc);
    synclog_free(sl);
    atomic_fetch_sub(&api->nlogging, 1); /* api may go from here on */
}

/* Pool worker: a logged send is back.  Releases the answer first, then
   builds its record (a reference of its own keeps the request and the job
   meanwhile; both threads only read the job) and hands it to the queue. */
static void on_sync_done(struct job *job, void *ctx)
{
    struct api_logslot *slot = ctx;
    struct api_req *req = slot->req;
    struct api *api = req->api;
    api_metrics_job(&api->metrics, job);
    if (job->expired) { /* never attempted: nothing to log */
        slot->id[0] = '\0';
        api_req_pending_done(req);
        return;
    }
    atomic_fetch_add(&api->nlogging, 1);
    api_req_ref(req);
    api_req_pending_done(req); /* the answer goes now */
    struct api_synclog *sl = synclog_new(slot, job);
    if (sl == NULL)
        synclog_failed(api, slot->id, req->id, QUEUE_ENOMEM);
    api_req_unref(req); /* req, job and slot may go now */
    if (sl == NULL) {
        atomic_fetch_sub(&api->nlogging, 1);
        return;
    }
    int rc = queue_log_sync(api->queue, &sl->m, on_logged, sl);
    if (rc != QUEUE_OK)
        on_logged(sl, rc);
}

void api_synclog_prepare(struct api_req *req)
{
    struct api *api = req->api;
    if (api->queue == NULL || !api->cfg->queue.log_sync ||
        (req->route != API_ROUTE_MESSAGES && req->route != API_ROUTE_BATCH) ||
        req->njobs == 0)
        return;
    req->logslots = calloc(req->njobs, sizeof *req->logslots);
    if (req->logslots == NULL) {
        synclog_failed(api, "", req->id, QUEUE_ENOMEM);
        return;
    }
    for (size_t i = 0; i < req->njobs; i++) {
        struct api_logslot *slot = &req->logslots[i];
        struct job *job = req->jobs[i];
        if (job->kind != JOB_SEND)
            continue;
        slot->req = req;
        slot->i = i;
        queue_new_id(slot->id);
        job->done = on_sync_done;
        job->done_ctx = slot;
    }
}

const char *api_synclog_id(const struct api_req *req, size_t i)
{
    if (req->logslots == NULL || i >= req->njobs ||
        req->logslots[i].id[0] == '\0')
        return NULL;
    return req->logslots[i].id;
}
