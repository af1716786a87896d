/*
 * api/request.c - one HTTP request's life through libmicrohttpd, from the
 * target MHD has read (api_on_uri) to the request-completed callback:
 * the per-request state and its id, the first call's checks (head.c),
 * reading the body under http.max_body, http.min_body_rate and the
 * http.max_inflight budget, dispatch to the route's handler (route.c's
 * table), the work a handler sends out, suspend and resume, the request
 * log line and the metrics, and freeing.
 *
 * Public (internal.h): api_on_access, api_on_completed, api_on_connection,
 * api_waiting_add, api_waiting_remove, api_now; (request.h)
 * api_req_body, api_req_body_drop, api_req_work_begin, api_req_work_add,
 * api_req_work_cancel, api_req_wait, api_req_pending_done, api_req_unref;
 * (http.h) api_on_uri, api_req_charge.
 *
 * MHD's context of a request (*con_cls) is a struct api_slot, made by the
 * URI log callback from the request target as it came (before MHD splits
 * off the query and decodes it) and freed by the request-completed
 * callback; it holds our request once the access handler has seen the
 * headers.  Errors that come before the body are answered on that first
 * call (head.c); a chunked body that grows past http.max_body is dropped
 * as it comes and answered 413 at its end.
 *
 * A request's state is reference-counted: MHD's reference is dropped by
 * the request-completed callback, each piece of work's by its callback
 * (api_req_pending_done), so a client hanging up mid-flight frees nothing
 * early.  Suspend/resume: req->pending counts the work out plus one token
 * held by the handler while it sends it.  The handler drops its token
 * under req->mu and, if work remains, suspends the connection before
 * unlocking; the callback that brings pending to 0 (also under req->mu)
 * then finds the connection suspended and resumes it after unlocking.  So
 * work that finishes before the handler suspends cannot resume too early,
 * and no lock is held across pool_submit or MHD_resume_connection.
 *
 * Errors: a request that cannot be answered for want of memory is dropped
 * (the connection closes).  Threads: MHD's pool threads; work callbacks on
 * pool workers and the queue's writer; the waiting list and counters are
 * locked as internal.h says.
 */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "api/codec.h"
#include "api/http.h"
#include "api/internal.h"
#include "api/route.h"
#include "util/log.h"
#include "util/clock.h"

#define TRIM_AFTER (1u << 20) /* body bytes after which malloc_trim */

double api_now(void)
{
    return util_mono_now();
}

/* ---- Per-request state ---- */

#define API_RAND_BUF 1024 /* random bytes a thread draws at once: 64 ids */

/* Per thread: random bytes drawn by one getrandom and how many are used. */
static _Thread_local unsigned char rand_buf[API_RAND_BUF];
static _Thread_local size_t rand_used = API_RAND_BUF;

/* n (<= 16) random bytes into r from this thread's buffer, refilled with
   one getrandom when empty; -1 when the system has none to give. */
static int rand_take(unsigned char *r, size_t n)
{
    if (rand_used + n > sizeof rand_buf) {
        if (getrandom(rand_buf, sizeof rand_buf, GRND_NONBLOCK) !=
            (ssize_t)sizeof rand_buf)
            return -1;
        rand_used = 0;
    }
    memcpy(r, rand_buf + rand_used, n);
    rand_used += n;
    return 0;
}

/* 32 random hex digits (a counter and the clock if getrandom fails). */
static void make_request_id(struct api *api, char out[33])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char r[16];
    if (rand_take(r, sizeof r) != 0) {
        unsigned long long seq = atomic_fetch_add(&api->idseq, 1);
        double t = api_now();
        memcpy(r, &seq, sizeof seq);
        memcpy(r + 8, &t, sizeof t);
    }
    for (size_t i = 0; i < sizeof r; i++) {
        out[2 * i] = hex[r[i] >> 4];
        out[2 * i + 1] = hex[r[i] & 15];
    }
    out[32] = '\0';
}

/* Copies the caller's X-Request-Id into out when it is 1..64 visible ASCII
   characters (0x21..0x7e); 0, or -1 (absent or not so) to make one. */
static int caller_request_id(struct MHD_Connection *c, char out[65])
{
    const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                "X-Request-Id");
    size_t n = 0;
    if (v == NULL)
        return -1;
    for (; v[n] != '\0'; n++)
        if (n >= 64 || (unsigned char)v[n] < 0x21 || (unsigned char)v[n] > 0x7e)
            return -1;
    if (n == 0)
        return -1;
    memcpy(out, v, n + 1);
    return 0;
}

/* The method as a label: a known token or "OTHER". */
static void method_label(const char *method, char out[8])
{
    static const char *const known[] = { "GET",    "HEAD",  "POST",    "PUT",
                                         "DELETE", "PATCH", "OPTIONS", NULL };
    for (size_t i = 0; known[i] != NULL; i++)
        if (strcmp(method, known[i]) == 0) {
            snprintf(out, 8, "%s", known[i]);
            return;
        }
    snprintf(out, 8, "OTHER");
}

/* A new request, holding MHD's reference; NULL when out of memory. */
static struct api_req *req_new(struct api *api, struct MHD_Connection *c,
                               const char *url, const char *method)
{
    struct api_req *req = calloc(1, sizeof *req);
    if (req == NULL)
        return NULL;
    if (pthread_mutex_init(&req->mu, NULL) != 0) {
        free(req);
        return NULL;
    }
    req->api = api;
    atomic_init(&req->refs, 1); /* MHD's, dropped in on_completed */
    req->t0 = api_now();
    req->route = api_route_match(url, req->msg_id);
    req->conn = c;
    req->phase = API_REQ_READING;
    method_label(method, req->method);
    if (caller_request_id(c, req->id) < 0)
        make_request_id(api, req->id);
    pthread_mutex_lock(&api->mu);
    api->nreqs++;
    pthread_mutex_unlock(&api->mu);
    atomic_fetch_add(&api->nlive, 1);
    return req;
}


void *api_on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    struct api_slot *s = calloc(1, sizeof *s);
    (void)cls;
    (void)c;
    if (s == NULL)
        return NULL;
    s->uri = uri != NULL ? uri : "";
    s->urilen = strlen(s->uri);
    for (size_t i = 0; i < s->urilen; i++) {
        unsigned char b = (unsigned char)s->uri[i];
        s->bad_byte |= b <= 0x20 || b >= 0x7f;
    }
    return s;
}

#define TRIM_EVERY_MS 1000 /* at most this often a periodic malloc_trim */

/* Process-wide: when the last periodic malloc_trim ran (monotonic ms). */
static atomic_llong trim_last_ms;

/* 1 for the one caller that finds TRIM_EVERY_MS gone since the last
   periodic trim: freed pages of every malloc arena (the pool's workers,
   MHD's threads) go back to the system, so RSS stays flat under load. */
static int trim_due(void)
{
    long long now = (long long)(api_now() * 1000.0);
    long long last = atomic_load(&trim_last_ms);
    return now - last >= TRIM_EVERY_MS &&
           atomic_compare_exchange_strong(&trim_last_ms, &last, now);
}

/* Raises what req holds of the http.max_inflight budget to need bytes in
   all; 0, or -1 when that does not fit.  What a request charged is given back when it
   is freed, after its jobs are done: the budget bounds the bodies being
   read and the messages they became. */
int api_req_charge(struct api_req *req, size_t need)
{
    struct api *api = req->api;
    if (need <= req->charged)
        return 0;
    size_t more = need - req->charged;
    size_t cur = atomic_load(&api->held);
    do {
        if (more > api->max_held || cur > api->max_held - more)
            return -1;
    } while (!atomic_compare_exchange_weak(&api->held, &cur, cur + more));
    req->charged = need;
    return 0;
}

void api_req_ref(struct api_req *req)
{
    atomic_fetch_add(&req->refs, 1);
}

void api_req_unref(struct api_req *req)
{
    struct api *api = req->api;
    if (atomic_fetch_sub(&req->refs, 1) != 1)
        return;
    size_t charged = req->charged;
    atomic_fetch_sub(&api->held, charged);
    api_async_req_free(req);
    api_jobs_free(req->jobs, req->njobs);
    free(req->logslots);
    free(req->body);
    pthread_mutex_destroy(&req->mu);
    free(req);
    pthread_mutex_lock(&api->mu);
    api->nreqs--;
    pthread_cond_broadcast(&api->cond);
    pthread_mutex_unlock(&api->mu);
    if (charged >= TRIM_AFTER || trim_due()) /* a big body went, or 1 s: */
        malloc_trim(0); /* give the pages back to the system */
}

void api_waiting_add(struct api *api, struct api_req *req)
{
    pthread_mutex_lock(&api->mu);
    req->wprev = NULL;
    req->wnext = api->waiting;
    if (api->waiting != NULL)
        api->waiting->wprev = req;
    api->waiting = req;
    req->on_wlist = 1;
    pthread_mutex_unlock(&api->mu);
}

void api_waiting_remove(struct api *api, struct api_req *req)
{
    pthread_mutex_lock(&api->mu);
    if (req->on_wlist) {
        if (req->wprev != NULL)
            req->wprev->wnext = req->wnext;
        else
            api->waiting = req->wnext;
        if (req->wnext != NULL)
            req->wnext->wprev = req->wprev;
        req->on_wlist = 0;
    }
    pthread_mutex_unlock(&api->mu);
}

/* ---- Work out, suspend and resume ---- */

void api_req_work_begin(struct api_req *req)
{
    req->pending = 1; /* the handler's token */
    api_waiting_add(req->api, req);
}

void api_req_work_add(struct api_req *req, size_t n)
{
    atomic_fetch_add(&req->refs, (int)n);
    pthread_mutex_lock(&req->mu);
    req->pending += n;
    pthread_mutex_unlock(&req->mu);
}

void api_req_work_cancel(struct api_req *req, size_t n)
{
    pthread_mutex_lock(&req->mu);
    req->pending -= n;
    pthread_mutex_unlock(&req->mu);
    for (size_t i = 0; i < n; i++)
        api_req_unref(req); /* never the last: MHD holds one */
}

void api_req_pending_done(struct api_req *req)
{
    struct api *api = req->api;
    struct MHD_Connection *c = NULL;
    int last;
    pthread_mutex_lock(&req->mu);
    last = --req->pending == 0;
    if (last && req->suspended && req->conn != NULL) {
        c = req->conn;
        req->suspended = 0;
    }
    pthread_mutex_unlock(&req->mu);
    if (c != NULL) {
        MHD_resume_connection(c); /* still suspended: c is valid */
        atomic_fetch_sub(&api->nsuspended, 1);
    }
    if (last)
        api_waiting_remove(api, req);
    api_req_unref(req);
}

enum MHD_Result api_req_wait(struct api_req *req, struct MHD_Connection *c,
                             api_handler answer)
{
    struct api *api = req->api;
    pthread_mutex_lock(&req->mu);
    req->answer = answer;
    if (--req->pending > 0) {
        MHD_suspend_connection(c);
        req->suspended = 1;
        atomic_fetch_add(&api->nsuspended, 1);
        req->phase = API_REQ_WAITING;
        pthread_mutex_unlock(&req->mu);
        return MHD_YES;
    }
    pthread_mutex_unlock(&req->mu);
    api_waiting_remove(api, req); /* everything is back already */
    return answer(req, c);
}

/* The access handler's call after the work resumed the connection: the
   answer api_req_wait was given, or a 503 when api_stop gave up. */
static enum MHD_Result resumed(struct api_req *req, struct MHD_Connection *c)
{
    int abandoned;
    pthread_mutex_lock(&req->mu);
    abandoned = req->abandoned && req->pending > 0;
    pthread_mutex_unlock(&req->mu);
    if (abandoned) /* api_stop gave up waiting: no
                                       Retry-After, it may have been sent */
        return api_reply_problem(req, c, 503,
                                 "the service stopped before the work "
                                 "finished; the outcome is unknown",
                                 NULL, NULL, NULL);
    return req->answer(req, c);
}

/* The route's handler once the request is read: GET (and HEAD) or POST,
   from the route table. */
static enum MHD_Result dispatch(struct api_req *req, struct MHD_Connection *c)
{
    const struct api_route_def *d = api_route_def(req->route);
    api_handler h = strcmp(req->method, "POST") == 0 ? d->post : d->get;
    if (h == NULL) /* head.c answered 405 or 404 already */
        return api_reply_problem(req, c, 500, "no handler", NULL, NULL, NULL);
    return h(req, c);
}

/* ---- The body, for the handlers ---- */

const char *api_req_body(const struct api_req *req, size_t *len)
{
    *len = req->len;
    return req->body != NULL ? req->body : "";
}

void api_req_body_drop(struct api_req *req)
{
    free(req->body);
    req->body = NULL;
    req->len = req->cap = 0;
}

/* ---- Bodies ---- */

/* 1 (logged) when a body, past http.body_timeout, averaged less than
   http.min_body_rate bytes a second: its connection is to be closed. */
static int too_slow(const struct api_req *req)
{
    const struct cfg *cfg = req->api->cfg;
    double took = api_now() - req->t0;
    if (cfg->http.min_body_rate <= 0 || took <= cfg->http.body_timeout ||
        (double)req->received >= took * cfg->http.min_body_rate)
        return 0;
    struct log_field f[] = {
        LOG_STR("request_id", req->id),
        LOG_STR("route", api_route_name(req->route)),
        LOG_NUM("received", (double)req->received),
        LOG_NUM("seconds", (double)(long long)(took * 10) / 10),
        LOG_NUM("min_body_rate", cfg->http.min_body_rate),
    };
    log_event_num(LOG_WARN, "body_too_slow", f, sizeof f / sizeof f[0]);
    return 1;
}

/* Appends upload data, up to http.max_body; past it, drops what comes so
   that a 413 can be answered at the end, but closes the connection (MHD_NO)
   once a client sent more than twice the limit and 64 KiB. */
static enum MHD_Result take_upload(struct api_req *req, const char *data,
                                   size_t *size)
{
    size_t n = *size, max = (size_t)req->api->cfg->http.max_body;
    *size = 0;
    req->received += n;
    if (too_slow(req))
        return MHD_NO;
    if (req->phase != API_REQ_READING)
        return MHD_YES; /* answered early: drop the rest */
    if (req->over_budget && !req->too_big && n <= max - req->len) {
        req->len += n; /* counted only, for the 413 check */
        return MHD_YES;
    }
    if (req->too_big || n > max - req->len) {
        req->too_big = 1;
        req->dropped += req->len + n;
        free(req->body);
        req->body = NULL;
        req->len = req->cap = 0;
        return req->dropped / 2 > max + 32768 ? MHD_NO : MHD_YES;
    }
    if (req->len + n > req->cap || req->body == NULL) {
        size_t cap = req->cap > 0 ? req->cap : API_HTTP_FIRST_BODY;
        while (cap < req->len + n)
            cap = cap > max / 2 ? max : cap * 2;
        if (req->expect >= req->len + n && cap > req->expect)
            cap = req->expect; /* no more than Content-Length said */
        if (api_req_charge(req, cap) < 0) {
            /* a chunked body past the budget: read on, keep nothing */
            req->over_budget = 1;
            free(req->body);
            req->body = NULL;
            req->len += n;
            req->cap = 0;
            return MHD_YES;
        }
        char *p = realloc(req->body, cap + 1);
        if (p == NULL)
            return MHD_NO;
        req->body = p;
        req->cap = cap;
    }
    memcpy(req->body + req->len, data, n);
    req->len += n;
    return MHD_YES;
}

/* ---- MHD callbacks ---- */

/* The connection's idle timeout, in seconds. */
static void set_timeout(struct MHD_Connection *c, int seconds)
{
    (void)MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT,
                                    (unsigned int)(seconds > 0 ? seconds : 0));
}

void api_on_connection(void *cls, struct MHD_Connection *c, void **socket_ctx,
                       enum MHD_ConnectionNotificationCode code)
{
    struct api *api = cls;
    (void)socket_ctx;
    int head = api->cfg->http.header_timeout,
        idle = api->cfg->http.connection_timeout;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) /* until a first head */
        set_timeout(c, head < idle ? head : idle);
}

enum MHD_Result api_on_access(void *cls, struct MHD_Connection *c,
                              const char *url, const char *method,
                              const char *version, const char *data,
                              size_t *size, void **con_cls)
{
    struct api_slot *s = *con_cls;
    struct api_req *req;
    if (s == NULL) /* api_on_uri was out of memory */
        return MHD_NO;
    req = s->req;
    if (req == NULL) {
        req = req_new(cls, c, url, method);
        if (req == NULL)
            return MHD_NO;
        s->req = req;
        set_timeout(c, req->api->cfg->http.connection_timeout);
        return api_head_first(req, c, s, url, version);
    }
    if (*size > 0)
        return take_upload(req, data, size);
    switch (req->phase) {
    case API_REQ_READING:
        if (req->too_big)
            return api_reply_problem(req, c, 413,
                                     "the body is larger than http.max_body",
                                     NULL, NULL, NULL);
        if (req->over_budget)
            return api_reply_problem(req, c, 503, API_HTTP_OVER_BUDGET, NULL,
                                     "Retry-After", "1");
        return dispatch(req, c);
    case API_REQ_WAITING: return resumed(req, c);
    case API_REQ_ANSWERED: break;
    }
    return MHD_YES;
}

/* The request's log line: never a body, an address or a key. */
static void log_request(const struct api_req *req, double seconds,
                        enum MHD_RequestTerminationCode toe)
{
    static const char *const toes[] = { "completed",  "error",
                                        "timeout",    "shutdown",
                                        "read_error", "client_abort" };
    int ok = toe == MHD_REQUEST_TERMINATED_COMPLETED_OK;
    struct log_field f[] = {
        LOG_STR("request_id", req->id),
        LOG_STR("method", req->method),
        LOG_STR("route", api_route_name(req->route)),
        LOG_NUM("status", req->status),
        LOG_NUM("duration_ms", (double)(long long)(seconds * 1e6) / 1e3),
        req->smtp_code != 0 ? LOG_NUM("smtp_code", req->smtp_code)
                            : LOG_STR(NULL, NULL),
        LOG_STR("termination", ok ? NULL
                               : (unsigned)toe < sizeof toes / sizeof toes[0]
                                   ? toes[toe]
                                   : "other"),
    };
    log_event_num(ok ? LOG_INFO : LOG_WARN, "request", f,
                  sizeof f / sizeof f[0]);
}

void api_on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    struct api *api = cls;
    struct api_slot *s = *con_cls;
    struct api_req *req;
    (void)c;
    if (s == NULL)
        return;
    *con_cls = NULL;
    req = s->req;
    free(s);
    if (req == NULL) { /* MHD refused the head itself */
        if (toe == MHD_REQUEST_TERMINATED_WITH_ERROR)
            api_metrics_head_refused(&api->metrics);
        return;
    }
    pthread_mutex_lock(&req->mu);
    req->conn = NULL; /* the done callbacks must not resume */
    pthread_mutex_unlock(&req->mu);
    atomic_fetch_sub(&api->nlive, 1);
    double seconds = api_now() - req->t0;
    if (req->status != 0) /* counts answered requests only */
        api_metrics_request(&api->metrics, req->route, req->status, seconds);
    log_request(req, seconds, toe);
    api_req_unref(req);
}
