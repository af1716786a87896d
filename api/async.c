/*
 * api/async.c - the durable queue over HTTP: asynchronous sends
 * (Prefer: respond-async, RFC 7240), a message's status, cancel, send_at,
 * metadata, and Idempotency-Key on every POST.
 *
 * Public (internal.h): api_async_extract, api_async_post, api_async_answer,
 * api_idem_begin, api_idem_finish, api_message_get, api_message_cancel,
 * api_async_req_free, api_time_json, api_time_parse, api_wall_now,
 * api_listing_of, api_async_metadata.  A message's status and cancel are
 * message.c's, the queue's lines of /metrics queue_metrics.c's.
 *
 * Asynchronous POST: the body is validated exactly as a synchronous one;
 * then each message gets a queue id and, unless it has one, a Message-ID
 * (so it is the same on every attempt), is encoded (job_message_encode)
 * and handed to the queue's writer with the 202 document already built;
 * the connection is suspended until the writer's callback says the rows
 * (and the idempotency key, in the same transaction) are committed.  A
 * 202 therefore means on disk.  A database that cannot be written, or
 * more than queue.high_water messages waiting, is 503 with Retry-After.
 *
 * Idempotency-Key (at most 255 visible ASCII characters), scoped by the
 * API key used: a repeat with the same request (SHA-256 of route, Prefer
 * and body) gets the first answer with Idempotent-Replayed: true; with
 * another request, 422; while the first is still being answered, 409 with
 * Retry-After.  A synchronous send stores its key as pending before it is
 * submitted and its answer once done, unknown outcomes included; a key
 * left pending by a crash answers as unknown.
 *
 * Threads: MHD's threads; the enqueue callback runs on the queue's writer
 * thread and only resumes the connection.
 */
#include <gnutls/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "api/codec.h"
#include "api/internal.h"
#include "server/delivery.h"

/* The extras of one message of an asynchronous request. */
struct api_async_item {
    double send_at; /* Unix seconds, 0: now */
    char *metadata; /* JSON text, or NULL */
};

/* Everything an asynchronous or idempotent request keeps until the
   writer's callback (owned by the request). */
struct api_async {
    struct api_async_item *items; /* one per message, input order */
    size_t nitems;
    struct queue_new *qn;
    void **blobs;
    char **msgids;
    char **rcpts;    /* each message's recipients, JSON text */
    char **subjects; /* each message's Subject for the log */
    size_t n;
    char *doc;                    /* the 202 (or stored) answer's text */
    char key[QUEUE_KEY_MAX + 16]; /* scoped key, "" when none */
    char fingerprint[65];
    struct queue_idem idem;
    int rc; /* the writer's answer */
    struct queue_idem_hit hit;
    pthread_mutex_t mu; /* for the blocking idem lookup */
    pthread_cond_t cv;
    int told;
};

/* ---- time ---- */

double api_wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* RFC 3339 UTC with milliseconds. */
static json_t *rfc3339(double t)
{
    char buf[40], frac[8];
    time_t s = (time_t)t;
    struct tm tm;
    if (t <= 0)
        return json_null();
    gmtime_r(&s, &tm);
    strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(frac, sizeof frac, ".%03dZ", (int)((t - (double)s) * 1000));
    strncat(buf, frac, sizeof buf - strlen(buf) - 1);
    return json_string(buf);
}

/* Parses an RFC 3339 date-time ("2026-12-01T09:30:00Z", offsets and a
   fraction allowed) into Unix seconds; -1 when it is not one. */
static int parse_rfc3339(const char *s, double *out)
{
    struct tm tm;
    int y, mo, d, h, mi, sec, n = 0, oh = 0, om = 0;
    double frac = 0;
    memset(&tm, 0, sizeof tm);
    if (sscanf(s, "%4d-%2d-%2d%*1[Tt]%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec,
               &n) != 6 ||
        n != 19)
        return -1;
    s += n;
    if (*s == '.') {
        double scale = 0.1;
        for (s++; *s >= '0' && *s <= '9'; s++, scale /= 10)
            frac += (*s - '0') * scale;
    }
    if (*s == 'Z' || *s == 'z') {
        s++;
    } else if ((*s == '+' || *s == '-') &&
               sscanf(s + 1, "%2d:%2d%n", &oh, &om, &n) == 2 && n == 5) {
        int sign = *s == '-' ? -1 : 1;
        oh *= sign;
        om *= sign;
        s += 6;
    } else {
        return -1;
    }
    if (*s != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 ||
        mi > 59 || sec > 60)
        return -1;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    *out = (double)timegm(&tm) + frac - oh * 3600.0 - om * 60.0;
    return 0;
}

/* ---- the request's state ---- */

static struct api_async *async_of(struct api_req *req)
{
    if (req->async_state == NULL) {
        struct api_async *a = calloc(1, sizeof *a);
        if (a == NULL)
            return NULL;
        pthread_mutex_init(&a->mu, NULL);
        pthread_cond_init(&a->cv, NULL);
        req->async_state = a;
    }
    return req->async_state;
}

void api_async_req_free(struct api_req *req)
{
    struct api_async *a = req->async_state;
    if (a == NULL)
        return;
    for (size_t i = 0; i < a->nitems; i++)
        free(a->items[i].metadata);
    free(a->items);
    for (size_t i = 0; i < a->n; i++) {
        free(a->blobs[i]);
        free(a->msgids[i]);
        free(a->rcpts != NULL ? a->rcpts[i] : NULL);
        free(a->subjects != NULL ? a->subjects[i] : NULL);
    }
    free(a->blobs);
    free(a->msgids);
    free(a->rcpts);
    free(a->subjects);
    free(a->qn);
    free(a->doc);
    queue_idem_hit_clear(&a->hit);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    free(a);
    req->async_state = NULL;
}

/* ---- the request's head: Prefer and Idempotency-Key ---- */

/* Reads Prefer and Idempotency-Key (first call of a POST); 0, or -1 with
   the problem queued in *ret. */
int api_async_head(struct api_req *req, struct MHD_Connection *c,
                   enum MHD_Result *ret)
{
    const char *p = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Prefer");
    const char *k = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                "Idempotency-Key");
    req->async = p != NULL && strcasestr(p, "respond-async") != NULL &&
                 (req->route == API_ROUTE_MESSAGES ||
                  req->route == API_ROUTE_BATCH);
    if (k == NULL)
        return 0;
    size_t n = strlen(k);
    int ok = n > 0 && n <= QUEUE_KEY_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = k[i] > 32 && k[i] < 127;
    if (!ok) {
        json_t *errors = json_array();
        api_error_add(errors, "Idempotency-Key",
                      "must be 1 to 255 visible "
                      "ASCII characters");
        *ret = api_reply_problem(req, c, 400,
                                 "the Idempotency-Key header "
                                 "is not valid",
                                 errors, NULL, NULL);
        return -1;
    }
    struct api_async *a = async_of(req);
    if (a == NULL) {
        *ret = MHD_NO;
        return -1;
    }
    snprintf(a->key, sizeof a->key, "k%d:%s", req->key_index, k);
    return 0;
}

/* SHA-256 of the route, the Prefer choice and the body, in hex. */
void api_async_fingerprint(struct api_req *req)
{
    struct api_async *a = req->async_state;
    unsigned char d[32];
    gnutls_hash_hd_t h;
    if (a == NULL || a->key[0] == '\0' ||
        gnutls_hash_init(&h, GNUTLS_DIG_SHA256) < 0)
        return;
    gnutls_hash(h, api_route_name(req->route),
                strlen(api_route_name(req->route)) + 1);
    const char *mode = req->async ? "async" : "sync";
    gnutls_hash(h, mode, strlen(mode) + 1);
    size_t len;
    const char *body = api_req_body(req, &len);
    if (len > 0)
        gnutls_hash(h, body, len);
    gnutls_hash_deinit(h, d);
    for (size_t i = 0; i < sizeof d; i++)
        snprintf(a->fingerprint + 2 * i, 3, "%02x", d[i]);
}

/* ---- send_at and metadata ---- */

/* Takes send_at and metadata out of message object o (item i), checking
   them; errors named with prefix. */
static void extract_one(struct api_req *req, json_t *o, size_t i,
                        const char *prefix, json_t *errors)
{
    struct api_async_item *it =
        &((struct api_async *)req->async_state)->items[i];
    json_t *v;
    char field[96];
    if (!json_is_object(o))
        return;
    if ((v = json_object_get(o, "send_at")) != NULL) {
        double t = 0, now = api_wall_now();
        snprintf(field, sizeof field, "%ssend_at", prefix);
        if (!req->async)
            api_error_add(errors, field, "needs Prefer: respond-async");
        else if (!json_is_string(v) ||
                 parse_rfc3339(json_string_value(v), &t) < 0)
            api_error_add(errors, field,
                          "must be an RFC 3339 date-time "
                          "such as 2026-12-01T09:30:00Z");
        else if (t - now > req->api->cfg->queue.max_schedule)
            api_error_add(errors, field,
                          "is further ahead than "
                          "queue.max_schedule");
        else
            it->send_at = t;
        json_object_del(o, "send_at");
    }
    if ((v = json_object_get(o, "metadata")) != NULL) {
        const char *key;
        json_t *val;
        int ok = json_is_object(v) && json_object_size(v) <= 32;
        snprintf(field, sizeof field, "%smetadata", prefix);
        json_object_foreach(v, key, val) ok = ok && strlen(key) <= 64 &&
                                              json_is_string(val) &&
                                              json_string_length(val) <= 256;
        if (!ok)
            api_error_add(errors, field,
                          "must be an object of at most 32 "
                          "string members, keys up to 64 and values up to "
                          "256 bytes");
        else
            it->metadata = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
        json_object_del(o, "metadata");
    }
}

int api_async_extract(struct api_req *req, json_t *root, json_t *errors)
{
    struct api_async *a;
    json_t *msgs = req->route == API_ROUTE_BATCH
                       ? json_object_get(root, "messages")
                       : NULL;
    size_t n = msgs != NULL ? json_array_size(msgs) : 1;
    if (req->route != API_ROUTE_MESSAGES && req->route != API_ROUTE_BATCH)
        return API_DECODE_OK;
    if (n == 0 || !json_is_object(root))
        return API_DECODE_OK; /* the decoder says what is wrong */
    if ((a = async_of(req)) == NULL ||
        (a->items = calloc(n, sizeof *a->items)) == NULL)
        return API_DECODE_NOMEM;
    a->nitems = n;
    if (msgs == NULL) {
        extract_one(req, root, 0, "", errors);
    } else {
        for (size_t i = 0; i < n; i++) {
            char prefix[40];
            snprintf(prefix, sizeof prefix, "messages[%zu].", i);
            extract_one(req, json_array_get(msgs, i), i, prefix, errors);
        }
    }
    return json_array_size(errors) > 0 ? API_DECODE_INVALID : API_DECODE_OK;
}

/* ---- asynchronous POST ---- */

/* The Message-ID job will carry: its own header's value, or a new one
   added to it, "<queue-id@from-domain>".  NULL when out of memory; for a
   raw message the one its header section holds, or "". */
static char *pin_message_id(struct job *job, const char *qid)
{
    struct job_message *m = &job->msg;
    const char *at, *domain;
    char buf[300];
    if (m->raw)
        return api_raw_message_id(m);
    for (size_t i = 0; i < m->nheaders; i++)
        if (strcasecmp(m->headers[i].name, "Message-ID") == 0)
            return strdup(m->headers[i].value);
    at = strrchr(m->from, '@');
    domain = at != NULL && at[1] != '\0' ? at + 1 : "mailpool.invalid";
    snprintf(buf, sizeof buf, "<%s@%s>", qid, domain);
    struct smtp_header *h = realloc(m->headers, (m->nheaders + 1) * sizeof *h);
    if (h == NULL)
        return NULL;
    m->headers = h;
    h[m->nheaders] = (struct smtp_header){ NULL, NULL };
    if (job_set_header(job, m->nheaders, "Message-ID", buf) < 0)
        return NULL;
    m->nheaders++;
    return strdup(buf);
}

int api_listing_of(const struct job *job, char **rcpts, char **subject)
{
    const struct job_message *m = &job->msg;
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < m->nto; i++)
        if (json_array_append_new(arr, json_string(m->to[i])) < 0)
            json_decref(arr), arr = NULL;
    *rcpts = arr != NULL ? json_dumps(arr, JSON_COMPACT) : NULL;
    json_decref(arr);
    *subject = api_message_subject(m);
    if (*subject != NULL && (*subject)[0] == '\0') {
        free(*subject); /* none: NULL in the log */
        *subject = NULL;
    } else if (*subject == NULL) {
        free(*rcpts);
        *rcpts = NULL;
    }
    return *rcpts != NULL ? 0 : -1;
}

const char *api_async_metadata(const struct api_req *req, size_t i)
{
    const struct api_async *a = req->async_state;
    return a != NULL && i < a->nitems ? a->items[i].metadata : NULL;
}

/* {"id", "status", "message_id"} of message i. */
static json_t *accepted_doc(const struct api_async *a, size_t i)
{
    const struct api_async_item *it = &a->items[i];
    int later = it->send_at > api_wall_now();
    return json_pack("{s:s, s:s, s:s?}", "id", a->qn[i].id, "status",
                     later ? "scheduled" : "queued", "message_id",
                     a->msgids[i][0] != '\0' ? a->msgids[i] : NULL);
}

/* Builds the rows and the 202 document. */
static int build_rows(struct api_req *req, struct api_async *a)
{
    json_t *doc;
    a->n = req->njobs;
    a->qn = calloc(a->n, sizeof *a->qn);
    a->blobs = calloc(a->n, sizeof *a->blobs);
    a->msgids = calloc(a->n, sizeof *a->msgids);
    a->rcpts = calloc(a->n, sizeof *a->rcpts);
    a->subjects = calloc(a->n, sizeof *a->subjects);
    if (a->qn == NULL || a->blobs == NULL || a->msgids == NULL ||
        a->rcpts == NULL || a->subjects == NULL)
        return -1;
    for (size_t i = 0; i < a->n; i++) {
        struct queue_new *q = &a->qn[i];
        queue_new_id(q->id);
        if ((a->msgids[i] = pin_message_id(req->jobs[i], q->id)) == NULL ||
            job_message_encode(req->jobs[i], &a->blobs[i], &q->blob_len) < 0 ||
            api_listing_of(req->jobs[i], &a->rcpts[i], &a->subjects[i]) < 0)
            return -1;
        q->recipients = a->rcpts[i];
        q->subject = a->subjects[i];
        q->blob = a->blobs[i];
        q->message_id = a->msgids[i][0] != '\0' ? a->msgids[i] : NULL;
        if (i < a->nitems) {
            q->metadata = a->items[i].metadata;
            q->send_at = a->items[i].send_at;
        }
    }
    if (req->route == API_ROUTE_MESSAGES)
        snprintf(req->msg_id, sizeof req->msg_id, "%s", a->qn[0].id);
    if (req->route == API_ROUTE_BATCH) {
        json_t *results = json_array();
        for (size_t i = 0; results != NULL && i < a->n; i++)
            json_array_append_new(results, accepted_doc(a, i));
        doc = json_pack("{s:o?, s:s}", "results", results, "request_id",
                        req->id);
    } else {
        doc = accepted_doc(a, 0);
        if (doc != NULL)
            json_object_set_new(doc, "request_id", json_string(req->id));
    }
    a->doc = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
    json_decref(doc);
    return a->doc != NULL ? 0 : -1;
}

/* The writer committed (or refused) an enqueue: keep its answer, resume. */
static void on_enqueued(void *ctx, int rc, const struct queue_idem_hit *hit)
{
    struct api_req *req = ctx;
    struct api_async *a = req->async_state;
    a->rc = rc;
    if (hit != NULL) {
        a->hit = *hit;
        a->hit.response = hit->response ? strdup(hit->response) : NULL;
    }
    if (rc == QUEUE_OK)
        delivery_kick(req->api->delivery);
    api_req_pending_done(req);
}

/* 1 when the queue holds queue.high_water messages waiting or more
   (counted at most once a second). */
static int over_high_water(struct api *api)
{
    unsigned long counts[QUEUE_STATE__COUNT];
    double now = api_wall_now(), age;
    int over;
    pthread_mutex_lock(&api->mu);
    if (now - api->waiting_at >= 1.0) {
        api->waiting_at = now;
        pthread_mutex_unlock(&api->mu);
        if (queue_counts(api->queue, now, counts, &age) != QUEUE_OK)
            return 1;
        pthread_mutex_lock(&api->mu);
        api->waiting_msgs = counts[QUEUE_QUEUED] + counts[QUEUE_SCHEDULED] +
                            counts[QUEUE_RETRY] + counts[QUEUE_SENDING];
    }
    over = api->waiting_msgs >= (unsigned long)api->cfg->queue.high_water;
    pthread_mutex_unlock(&api->mu);
    return over;
}

enum MHD_Result api_async_post(struct api_req *req, struct MHD_Connection *c)
{
    struct api *api = req->api;
    struct api_async *a = async_of(req);
    if (api->queue == NULL)
        return api_reply_problem(req, c, 503,
                                 "the durable queue is not "
                                 "open",
                                 NULL, "Retry-After", "5");
    if (over_high_water(api))
        return api_reply_problem(req, c, 503,
                                 "the queue is over "
                                 "queue.high_water (or cannot be read); "
                                 "retry later",
                                 NULL, "Retry-After", "5");
    if (a == NULL || build_rows(req, a) < 0)
        return api_reply_problem(req, c, 500, "out of memory", NULL, NULL,
                                 NULL);
    if (a->key[0] != '\0')
        a->idem = (struct queue_idem){ a->key, a->fingerprint, 0, 202, a->doc };
    api_req_work_begin(req);
    api_req_work_add(req, 1);
    if (queue_enqueue(api->queue, a->qn, a->n,
                      a->key[0] != '\0' ? &a->idem : NULL, on_enqueued,
                      req) != QUEUE_OK) {
        api_req_work_cancel(req, 1);
        a->rc = QUEUE_EIO;
    }
    return api_req_wait(req, c, api_async_answer);
}

/* A replayed answer (Idempotent-Replayed: true): the first answer's status
   and body, and for a 202 its Preference-Applied and Location. */
static enum MHD_Result replay(struct api_req *req, struct MHD_Connection *c,
                              const struct queue_idem_hit *hit)
{
    json_error_t e;
    json_t *doc;
    atomic_fetch_add(&req->api->idem_replays, 1);
    if (hit->lost)
        doc = json_pack("{s:i, s:[], s:s, s:s, s:b, s:s, s:[], s:[], s:n,"
                        " s:s}",
                        "code", 421, "text", "enhanced", "4.4.2", "kind",
                        "conn", "local_code", 1, "status", "unknown",
                        "accepted", "rejected", "message_id", "error",
                        "the service stopped while this request was being "
                        "answered: the message may have been delivered; "
                        "not resent");
    else
        doc = json_loads(hit->response ? hit->response : "{}", 0, &e);
    req->replayed = 1;
    if (!hit->lost && hit->http_status == 202) {
        /* the first answer's Preference-Applied and Location too */
        const char *id = json_string_value(json_object_get(doc, "id"));
        req->accepted_async = 1;
        if (req->route == API_ROUTE_MESSAGES && id != NULL &&
            strlen(id) < sizeof req->msg_id)
            snprintf(req->msg_id, sizeof req->msg_id, "%s", id);
    }
    return api_reply_json(req, c, hit->lost ? 200 : (unsigned)hit->http_status,
                          doc);
}

/* The answer to a key seen before: replay, 422 or 409. */
static enum MHD_Result answer_hit(struct api_req *req, struct MHD_Connection *c,
                                  const struct queue_idem_hit *hit)
{
    if (!hit->same) {
        json_t *errors = json_array();
        api_error_add(errors, "Idempotency-Key",
                      "was used with another "
                      "request");
        return api_reply_problem(req, c, 422,
                                 "the Idempotency-Key was used "
                                 "with a different request",
                                 errors, NULL, NULL);
    }
    if (hit->pending)
        return api_reply_problem(req, c, 409,
                                 "the request with this "
                                 "Idempotency-Key is still being answered",
                                 NULL, "Retry-After", "1");
    return replay(req, c, hit);
}

enum MHD_Result api_async_answer(struct api_req *req, struct MHD_Connection *c)
{
    struct api_async *a = req->async_state;
    json_error_t e;
    if (a->rc == QUEUE_EIDEM)
        return answer_hit(req, c, &a->hit);
    if (a->rc != QUEUE_OK)
        return api_reply_problem(req, c, 503,
                                 "the queue cannot be written; "
                                 "nothing was queued",
                                 NULL, "Retry-After", "5");
    req->accepted_async = 1;
    return api_reply_json(req, c, 202, json_loads(a->doc, 0, &e));
}

/* ---- Idempotency-Key on a synchronous POST ---- */

/* The writer's answer to a blocking lookup. */
static void on_idem_stored(void *ctx, int rc, const struct queue_idem_hit *hit)
{
    struct api_async *a = ctx;
    pthread_mutex_lock(&a->mu);
    a->rc = rc;
    if (hit != NULL) {
        a->hit = *hit;
        a->hit.response = hit->response ? strdup(hit->response) : NULL;
    }
    a->told = 1;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

int api_idem_begin(struct api_req *req, struct MHD_Connection *c,
                   enum MHD_Result *ret)
{
    struct api_async *a = req->async_state;
    if (a == NULL || a->key[0] == '\0' || req->api->queue == NULL)
        return 0;
    a->idem = (struct queue_idem){ a->key, a->fingerprint, 1, 0, NULL };
    if (queue_enqueue(req->api->queue, NULL, 0, &a->idem, on_idem_stored, a) !=
        QUEUE_OK) {
        a->rc = QUEUE_EIO;
    } else {
        pthread_mutex_lock(&a->mu);
        while (!a->told)
            pthread_cond_wait(&a->cv, &a->mu);
        pthread_mutex_unlock(&a->mu);
    }
    if (a->rc == QUEUE_OK) {
        req->idem_pending = 1; /* api_idem_finish stores the answer */
        return 0;
    }
    *ret = a->rc == QUEUE_EIDEM
               ? answer_hit(req, c, &a->hit)
               : api_reply_problem(req, c, 503,
                                   "the queue cannot be "
                                   "written (Idempotency-Key); nothing was "
                                   "sent",
                                   NULL, "Retry-After", "5");
    return -1;
}

void api_idem_finish(struct api_req *req, int status, const json_t *doc)
{
    struct api_async *a = req->async_state;
    char *text;
    if (!req->idem_pending || a == NULL)
        return;
    req->idem_pending = 0;
    if (status < 0) {
        queue_idem_finish(req->api->queue, a->key, -1, NULL);
        return;
    }
    text = json_dumps(doc, JSON_COMPACT);
    if (text != NULL)
        queue_idem_finish(req->api->queue, a->key, status, text);
    free(text);
}

/* ---- times for the other files of api/ (internal.h) ---- */

json_t *api_time_json(double t)
{
    return rfc3339(t);
}

int api_time_parse(const char *s, double *out)
{
    return parse_rfc3339(s, out);
}
