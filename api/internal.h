/*
 * api/internal.h - what the files of api/ share: struct api, the per-request
 * state, the routes, metrics, problem documents and the OpenAPI text.
 *
 * Lock order: api->mu, then req->mu, then api->metrics.mu.  No lock is held
 * while calling pool_submit, and MHD_resume_connection is called with none.
 */
#ifndef MAILPOOL_API_INTERNAL_H
#define MAILPOOL_API_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <microhttpd.h>
#include <jansson.h>

#include "api/api.h"
#include "api/request.h"
#include "queue/queue.h"
#include "server/job.h"
#include "server/pool.h"

struct delivery;
struct api_logslot;

#ifndef MAILPOOL_VERSION
#define MAILPOOL_VERSION "0.1.0"
#endif

/* Routes; their names are the metric and log labels.  What each one is
   (path, methods, handlers, job kind) is route.c's table. */
enum api_route {
    API_ROUTE_MESSAGES,
    API_ROUTE_BATCH,
    API_ROUTE_VERIFY,
    API_ROUTE_EXPAND,
    API_ROUTE_HELP,
    API_ROUTE_HEALTHZ,
    API_ROUTE_READYZ,
    API_ROUTE_METRICS,
    API_ROUTE_OPENAPI,
    API_ROUTE_PREVIEW,   /* POST /v1/messages/preview */
    API_ROUTE_MESSAGE,   /* GET /v1/messages/{id} */
    API_ROUTE_CANCEL,    /* POST /v1/messages/{id}/cancel */
    API_ROUTE_UI,        /* GET /ui, /ui/ and its files (ui.c) */
    API_ROUTE_UNMATCHED, /* a 404: never the raw path in a label */
    API_ROUTE__COUNT
};

/* The route's path ("/v1/messages"), or "unmatched". */
const char *api_route_name(enum api_route route);

/* ---- Metrics (metrics.c) ---- */

#define API_HIST_BUCKETS 18

struct api_hist {
    const double *bounds; /* nbounds upper bounds, ascending */
    size_t nbounds;
    unsigned long long counts[API_HIST_BUCKETS]; /* per bucket, not cumul. */
    unsigned long long count;
    double sum;
};

#define API_STATUS_SLOTS 16  /* the statuses we answer, then "other" */
#define API_REPLY_CLASSES 5  /* 2xx 3xx 4xx 5xx none */
#define API_DELIVERY_SLOTS 6 /* enum smtp_delivery */

struct api_metrics {
    pthread_mutex_t mu;
    unsigned long long requests[API_ROUTE__COUNT][API_STATUS_SLOTS];
    unsigned long long messages[API_DELIVERY_SLOTS];
    unsigned long long replies[API_REPLY_CLASSES];
    struct api_hist http[API_ROUTE__COUNT]; /* request duration by route,
                                               seconds */
    struct api_hist wait;             /* job waiting for a worker, seconds */
    struct api_hist smtp;             /* job on a worker (SMTP), seconds */
    unsigned long long refused[2];    /* messages refused: queue_full,
                                       draining */
    unsigned long long heads_refused; /* answered by MHD itself */
};                                    /* every counter guarded by mu */

int api_metrics_init(struct api_metrics *m);
void api_metrics_destroy(struct api_metrics *m);
/* One answered HTTP request. */
void api_metrics_request(struct api_metrics *m, enum api_route route,
                         int status, double seconds);
/* n messages refused before anything went out: the job queue was full
   (draining 0) or the service is draining (1). */
void api_metrics_refused(struct api_metrics *m, int draining, size_t n);
/* A request whose head libmicrohttpd refused itself (larger than
   API_HTTP_POOL, or malformed), before any handler saw it. */
void api_metrics_head_refused(struct api_metrics *m);
/* One finished job: its delivery status, reply class, time waiting for a
   worker and time on the worker. */
void api_metrics_job(struct api_metrics *m, const struct job *job);
/* The Prometheus text exposition (0.0.4); malloc'd, NULL when out of
   memory.  ps may be NULL (no pool gauges); queued[s] (enum
   smtp_delivery), messages the queue's delivery finished, are added to
   mailpool_messages_total (NULL: none). */
char *api_metrics_render(struct api_metrics *m, const struct pool_stats *ps,
                         const unsigned long long *queued, size_t *len);
/* queued[s]: messages the delivery loop finished in this process, by
   enum smtp_delivery (mailpool_messages_total's statuses); zeros
   without a queue.  queue_metrics.c. */
void api_queue_finished(struct api *api,
                        unsigned long long queued[API_DELIVERY_SLOTS]);

/* ---- Problem documents (problem.c) ---- */

/* The title of an HTTP status ("Unprocessable Content"). */
const char *api_status_title(int status);
/* {"type": "about:blank", "title", "status", "detail", "errors": errors}
   (errors stolen; NULL means []).  New reference or NULL. */
json_t *api_problem_new(int status, const char *detail, json_t *errors);

/* ---- OpenAPI (openapi.c) ---- */

/* The OpenAPI 3.1 document of this API, as JSON text. */
const char *api_openapi_json(void);
size_t api_openapi_len(void);

/* ---- The daemon and its requests (daemon.c, request.c, head.c,
   reply.c) ---- */

struct api_req;

struct api {
    const struct cfg *cfg; /* borrowed, read-only */
    struct pool *pool;     /* borrowed */
    struct MHD_Daemon *daemon;
    int port;
    atomic_int draining;
    atomic_int stopping; /* http.shutdown_delay: not ready, but
                                       work is still taken */
    char *tls_cert;      /* http.tls_cert_file's PEM, or NULL */
    char *tls_key;       /* http.tls_key_file's PEM (wiped) */
    char **keys;         /* bearer keys, read-only after start */
    size_t *keylens;
    size_t nkeys;
    atomic_ullong idseq;      /* request-id fallback counter */
    atomic_size_t nsuspended; /* connections suspended and not yet
                                       resumed: MHD_stop_daemon needs 0 */
    atomic_size_t nlive;      /* requests MHD has not completed */
    atomic_size_t held;       /* body bytes charged by live requests */
    size_t max_held;          /* http.max_inflight, at least max_body */
    atomic_int starting;      /* 1 inside MHD_start_daemon */
    char start_msg[160];      /* MHD's last word then; guarded by mu */
    pthread_mutex_t mu;
    pthread_cond_t cond;     /* signalled when nreqs drops */
    size_t nreqs;            /* live struct api_req; guarded by mu */
    struct api_req *waiting; /* requests with jobs out; guarded by mu */
    struct api_metrics metrics;
    struct queue *queue;               /* borrowed; NULL: no async routes */
    struct delivery *delivery;         /* borrowed; may be NULL */
    atomic_ullong idem_replays;        /* answers replayed for a key */
    double waiting_at;                 /* guarded by mu: when counted */
    unsigned long waiting_msgs;        /* guarded by mu: queue messages not
                                       final, as last counted */
    atomic_size_t nlogging;            /* synchronous sends' records handed
                                       out, not yet written (synclog.c) */
    atomic_ullong log_failed;          /* of those, writes that failed */
    _Atomic(struct webhook *) webhook; /* borrowed; NULL: no webhook
                                           (api_set_webhook) */
};

enum api_req_phase {
    API_REQ_READING, /* headers seen, body being read */
    API_REQ_WAITING, /* jobs submitted, connection suspended */
    API_REQ_ANSWERED /* a response was queued */
};

/*
 * One HTTP request.  Reference-counted: one reference for MHD (dropped by
 * the request-completed callback) and one per submitted job (dropped by its
 * done callback); freed at zero with every job it holds.  The fields from
 * refs, t0, status and phase to the body's, the lock and what it guards,
 * answer and the waiting list's are request.c's (with head.c, reply.c and
 * daemon.c): the route handlers use request.h's functions for them.
 */
struct api_req {
    struct api *api;
    atomic_int refs;
    enum api_route route;
    char method[8];           /* "GET", "POST", ..., or "OTHER" */
    char id[65];              /* X-Request-Id: the caller's (visible
                                       ASCII, 1..64), else random hex */
    double t0;                /* monotonic seconds at the first call */
    int status;               /* HTTP status queued, 0 before */
    int smtp_code;            /* for the log line; 0 when none */
    enum api_req_phase phase; /* MHD thread only */

    char *body; /* MHD thread only */
    size_t len, cap;
    size_t dropped;  /* bytes thrown away past max_body */
    size_t expect;   /* Content-Length, 0 when none */
    size_t received; /* body bytes read so far */
    size_t charged;  /* bytes counted in api->held */
    int too_big;
    int over_budget; /* api->held was full: 503 at the end */

    struct job **jobs; /* slots, input order; owned */
    size_t njobs;
    size_t nsubmitted; /* jobs[0..nsubmitted) went to the pool */
    int submit_err;    /* POOL_FULL/POOL_DRAINING that stopped
                                       the submission, else 0 */

    pthread_mutex_t mu;
    size_t pending;              /* guarded by mu: jobs not done yet */
    int suspended;               /* guarded by mu */
    int abandoned;               /* guarded by mu: resumed by api_stop */
    struct MHD_Connection *conn; /* guarded by mu; NULL once completed */

    int async;                 /* Prefer: respond-async */
    int key_index;             /* the API key used (0: none) */
    char msg_id[QUEUE_ID_LEN]; /* of /v1/messages/{id}[/cancel]; for
                                       API_ROUTE_UI, the file of /ui/{file} */
    void *async_state;         /* api/async.c's; owned */
    int idem_pending;          /* a synchronous key awaits its answer */
    int replayed;              /* answer replayed for a key */
    int accepted_async;        /* a 202 for queued messages */

    struct api_logslot *logslots; /* one per job while synchronous sends
                                       are logged (synclog.c), else NULL;
                                       owned */

    struct api_req *wprev, *wnext; /* guarded by api->mu */
    int on_wlist;                  /* guarded by api->mu */
    api_handler answer;            /* api_req_wait's, for the resume */
};

/* Queue a JSON response (body stolen).  MHD_NO when out of memory. */
enum MHD_Result api_reply_json(struct api_req *req, struct MHD_Connection *c,
                               unsigned int status, json_t *body);
/* Queue a problem+json; errors stolen (NULL: []); hname/hvalue an optional
   extra header (NULL: none).  api_reply_problem_doc takes a document made
   by api_problem_new (stolen) to which members were added. */
enum MHD_Result api_reply_problem_doc(struct api_req *req,
                                      struct MHD_Connection *c,
                                      unsigned int status, json_t *problem,
                                      const char *hname, const char *hvalue);
enum MHD_Result api_reply_problem(struct api_req *req, struct MHD_Connection *c,
                                  unsigned int status, const char *detail,
                                  json_t *errors, const char *hname,
                                  const char *hvalue);
/* Queue a text response; buf is copied. */
enum MHD_Result api_reply_text(struct api_req *req, struct MHD_Connection *c,
                               unsigned int status, const char *ctype,
                               const char *buf, size_t len);

/* async.c: the durable queue over HTTP (see the file's comment). */
int api_async_head(struct api_req *req, struct MHD_Connection *c,
                   enum MHD_Result *ret);
void api_async_fingerprint(struct api_req *req);
int api_async_extract(struct api_req *req, json_t *root, json_t *errors);
enum MHD_Result api_async_post(struct api_req *req, struct MHD_Connection *c);
enum MHD_Result api_async_answer(struct api_req *req, struct MHD_Connection *c);
int api_idem_begin(struct api_req *req, struct MHD_Connection *c,
                   enum MHD_Result *ret);
void api_idem_finish(struct api_req *req, int status, const json_t *doc);
void api_async_req_free(struct api_req *req);
/* message.c: GET /v1/messages/{id} and POST /v1/messages/{id}/cancel. */
enum MHD_Result api_message_get(struct api_req *req, struct MHD_Connection *c);
enum MHD_Result api_message_cancel(struct api_req *req,
                                   struct MHD_Connection *c);
/* queue_metrics.c: the queue's Prometheus series (text, caller frees; ""
   without a queue); NULL when out of memory. */
char *api_queue_metrics(struct api *api, size_t *len);

/* async.c: what the message log lists of job: its recipients as JSON
   text (*rcpts) and its Subject decoded for people (*subject, NULL for
   none: api_message_subject), both the caller's to free.  -1 when out of
   memory (nothing to free). */
int api_listing_of(const struct job *job, char **rcpts, char **subject);
/* async.c: the metadata (JSON text) of message i of req, or NULL. */
const char *api_async_metadata(const struct api_req *req, size_t i);

/* synclog.c: gives each send job of req a message log id and a done
   callback that records its outcome (queue_log_sync) once the answer
   went; no-op without a queue or with queue.log_sync off.  Call after the
   jobs' done fields are set, before they go to the pool. */
void api_synclog_prepare(struct api_req *req);
/* synclog.c: the message log id of job i of req, or NULL when it is not
   logged. */
const char *api_synclog_id(const struct api_req *req, size_t i);

/* async.c: RFC 3339 UTC with milliseconds (null for 0); parses one into
   Unix seconds (0, or -1 when s is not one). */
json_t *api_time_json(double t);
int api_time_parse(const char *s, double *out);

/* list.c: GET /v1/messages, the message log (never a body). */
enum MHD_Result api_message_list(struct api_req *req, struct MHD_Connection *c);
/* ui.c: GET /ui/ and its files, embedded at build time. */
enum MHD_Result api_ui_get(struct api_req *req, struct MHD_Connection *c);
/* reply.c: queues r (destroyed here) with the common headers. */
enum MHD_Result api_reply_response(struct api_req *req,
                                   struct MHD_Connection *c,
                                   unsigned int status, struct MHD_Response *r);

/* routes.c: the handlers of GET /healthz, /readyz, /metrics and
   /openapi.json, and of the POST routes that decode their body into jobs
   (route.c's table names them). */
enum MHD_Result api_get_healthz(struct api_req *req, struct MHD_Connection *c);
enum MHD_Result api_get_readyz(struct api_req *req, struct MHD_Connection *c);
enum MHD_Result api_get_metrics(struct api_req *req, struct MHD_Connection *c);
enum MHD_Result api_get_openapi(struct api_req *req, struct MHD_Connection *c);
enum MHD_Result api_post_jobs(struct api_req *req, struct MHD_Connection *c);

/* request.c: MHD's access handler and request-completed callback. */
enum MHD_Result api_on_access(void *cls, struct MHD_Connection *c,
                              const char *url, const char *method,
                              const char *version, const char *data,
                              size_t *size, void **con_cls);
void api_on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe);
/* request.c: MHD's connection callback: a new connection gets
   http.header_timeout until its first request head is in. */
void api_on_connection(void *cls, struct MHD_Connection *c, void **socket_ctx,
                       enum MHD_ConnectionNotificationCode code);

/* request.c: the waiting list that api_stop can force-resume. */
void api_waiting_add(struct api *api, struct api_req *req);
void api_waiting_remove(struct api *api, struct api_req *req);

/* Seconds on the monotonic clock. */
double api_now(void);
/* async.c: wall-clock Unix seconds (the queue's clock). */
double api_wall_now(void);

#endif /* MAILPOOL_API_INTERNAL_H */
