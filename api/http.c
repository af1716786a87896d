/*
 * api/http.c - one HTTP request through libmicrohttpd: the access handler's
 * checks (route, method, bearer key, draining, media type, body limit),
 * reading the body, the per-request state, responses and the request log.
 *
 * Public (internal.h): api_on_access, api_on_completed, api_req_unref,
 * api_reply_json, api_reply_problem, api_reply_problem_doc, api_reply_text,
 * api_waiting_add, api_waiting_remove, api_now; (http.h) api_on_uri,
 * api_unescape.  The daemon is started and stopped in daemon.c; the routes
 * themselves are in routes.c.
 *
 * MHD's context of a request (*con_cls) is a struct slot, made by the URI
 * log callback from the request target as it came (before MHD splits off
 * the query and decodes it) and freed by the request-completed callback;
 * it holds our request once the access handler has seen the headers.
 *
 * A request's state is reference-counted: MHD's reference is dropped by
 * the request-completed callback, each job's by its done callback
 * (routes.c), so a client hanging up mid-flight frees nothing early.
 * Errors that come before the body (400 for a request target with a NUL,
 * control, space or non-ASCII byte, 414, 431, 400 for ambiguous framing
 * (also Transfer-Encoding on HTTP/1.0 or on two lines, a bare LF ending a
 * head line, an obs-folded field: each with Connection: close), 400 for a
 * body declared on GET or HEAD,
 * 501 for a transfer coding other than chunked, 404, 405, 401, 503
 * draining, 415, 413 from Content-Length) are answered on the first call,
 * without reading the body; MHD then closes the connection.  A chunked body
 * that grows past http.max_body is dropped as it comes and answered 413 at
 * its end.  What MHD refuses before the access handler runs (a malformed
 * request line or Content-Length, bad chunks, a head larger than its
 * memory pool) it answers itself, with its own HTML page (http.h).
 *
 * Errors: a request that cannot be answered for want of memory is dropped
 * (the connection closes).  Threads: MHD's pool threads; the waiting list
 * and counters are locked as internal.h says.
 */
#include <errno.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "api/codec.h"
#include "api/http.h"
#include "api/internal.h"
#include "server/log.h"
#include "util/clock.h"

/* Who may call what. */
enum { M_GET = 1, M_POST = 2 };

/* The methods of each route; paths are api_route_name (metrics.c). */
static const int route_methods[API_ROUTE__COUNT] = {
    [API_ROUTE_MESSAGES] = M_POST | M_GET,
    [API_ROUTE_BATCH] = M_POST,
    [API_ROUTE_VERIFY] = M_POST,
    [API_ROUTE_EXPAND] = M_POST,
    [API_ROUTE_HELP] = M_POST,
    [API_ROUTE_HEALTHZ] = M_GET,
    [API_ROUTE_READYZ] = M_GET,
    [API_ROUTE_METRICS] = M_GET,
    [API_ROUTE_OPENAPI] = M_GET,
    [API_ROUTE_PREVIEW] = M_POST,
    [API_ROUTE_MESSAGE] = M_GET,
    [API_ROUTE_CANCEL] = M_POST,
    [API_ROUTE_UI] = M_GET,
    [API_ROUTE_UNMATCHED] = 0,
};

#define MAX_TOKEN 4096        /* bytes of a bearer key we look at */
#define INITIAL_BODY 16384    /* first allocation for a body */
#define TRIM_AFTER (1u << 20) /* body bytes after which malloc_trim */
#define OVER_BUDGET \
    "too many request bytes are held (http.max_inflight); " \
    "retry later"

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

/* /ui, /ui/ and /ui/{file}, the file (a short name of letters and dots,
   "" for the page itself) copied into id; else API_ROUTE_UNMATCHED. */
static enum api_route ui_route_of(const char *url, char id[QUEUE_ID_LEN])
{
    size_t n;
    if (strcmp(url, "/ui") == 0) {
        id[0] = '\0';
        return API_ROUTE_UI;
    }
    if (strncmp(url, "/ui/", 4) != 0)
        return API_ROUTE_UNMATCHED;
    n = strspn(url + 4, "abcdefghijklmnopqrstuvwxyz.");
    if (url[4 + n] != '\0' || n >= QUEUE_ID_LEN)
        return API_ROUTE_UNMATCHED;
    memcpy(id, url + 4, n + 1);
    return API_ROUTE_UI;
}

/* The route of a path: an exact match, /ui/{file}, or /v1/messages/{id}
   and /v1/messages/{id}/cancel with a queue id's shape (base64url, at most
   QUEUE_ID_LEN - 1 characters) copied into id. */
static enum api_route route_of(const char *url, char id[QUEUE_ID_LEN])
{
    static const char prefix[] = "/v1/messages/";
    size_t n;
    for (int r = 0; r < API_ROUTE_MESSAGE; r++)
        if (strcmp(url, api_route_name((enum api_route)r)) == 0)
            return (enum api_route)r;
    if (strncmp(url, "/ui", 3) == 0)
        return ui_route_of(url, id);
    if (strncmp(url, prefix, sizeof prefix - 1) != 0)
        return API_ROUTE_UNMATCHED;
    url += sizeof prefix - 1;
    n = strspn(url, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                    "0123456789-_");
    if (n == 0 || n >= QUEUE_ID_LEN)
        return API_ROUTE_UNMATCHED;
    memcpy(id, url, n);
    id[n] = '\0';
    if (url[n] == '\0')
        return API_ROUTE_MESSAGE;
    return strcmp(url + n, "/cancel") == 0 ? API_ROUTE_CANCEL
                                           : API_ROUTE_UNMATCHED;
}

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
    req->route = route_of(url, req->msg_id);
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

/* ---- The request target, before MHD decodes it ---- */

/* MHD's context of one request (*con_cls). */
struct slot {
    struct api_req *req; /* NULL until the access handler's first
                                       call */
    const char *uri;     /* the target as it came, in MHD's read
                                       buffer (then decoded there) */
    size_t urilen;       /* its bytes up to the first NUL */
    int bad_byte;        /* a control, space, DEL or 8-bit byte */
};

void *api_on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
    struct slot *s = calloc(1, sizeof *s);
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

/* 1 for a character RFC 3986 calls unreserved. */
static int is_unreserved(int ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
           (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' ||
           ch == '~';
}

/* The value of a hex digit, or -1. */
static int hex_value(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

size_t api_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    char *w = s;
    (void)cls;
    (void)c;
    for (const char *r = s; *r != '\0'; r++) {
        int hi = r[0] == '%' ? hex_value(r[1]) : -1;
        int lo = hi >= 0 ? hex_value(r[2]) : -1;
        if (lo >= 0 && is_unreserved(hi * 16 + lo)) {
            *w++ = (char)(hi * 16 + lo);
            r += 2;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

/* 1 when a NUL byte cut the target short.  MHD 0.9 splits the request
   line in place: the version starts one byte after the whole target, and
   url is where the URI log callback saw the target begin.  A version
   further on than the C string that callback measured means a NUL inside.
   Judged only when url is that same place and the distance fits in the
   head (any other layout: 0). */
static int target_cut(const struct slot *s, const char *url,
                      const char *version, size_t head)
{
    uintptr_t u = (uintptr_t)s->uri, v = (uintptr_t)version;
    if (url != s->uri || version == NULL || v <= u || v - u > head)
        return 0;
    return v - u > s->urilen + 1;
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

/* Charges the request up to `need` body bytes against http.max_inflight;
   0, or -1 when that would pass the budget (nothing charged then).  What a
   request charged is given back when it is freed, after its jobs are done:
   the budget bounds the bodies being read and the messages they became. */
static int charge(struct api_req *req, size_t need)
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

/* ---- Responses ---- */

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

/* ---- Checks made on the first call, before any body is read ---- */

/* Constant-time equality for a key of length alen (leaks only alen). */
static int key_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    volatile unsigned char d = (unsigned char)(alen != blen);
    for (size_t i = 0; i < alen; i++)
        d |= (unsigned char)(a[i] ^ (blen > 0 ? b[i % blen] : 0));
    return d == 0;
}

/* 0 when no keys are configured or the bearer key matches one; else
   queues a 401 and returns -1 (MHD_NO in *ret when that failed too). */
static int check_auth(struct api_req *req, struct MHD_Connection *c,
                      enum MHD_Result *ret)
{
    struct api *api = req->api;
    const char *h, *tok;
    int ok = 0;
    if (api->nkeys == 0)
        return 0;
    h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0) {
        *ret = api_reply_problem(req, c, 401,
                                 "a bearer key is required "
                                 "(Authorization: Bearer KEY)",
                                 NULL, "WWW-Authenticate",
                                 "Bearer realm=\"mailpool\"");
        return -1;
    }
    for (tok = h + 7; *tok == ' ' || *tok == '\t'; tok++)
        ;
    size_t tlen = strnlen(tok, MAX_TOKEN + 1);
    while (tlen > 0 && (tok[tlen - 1] == ' ' || tok[tlen - 1] == '\t'))
        tlen--;
    for (size_t i = 0; i < api->nkeys; i++) { /* no early exit */
        int eq = key_equal(api->keys[i], api->keylens[i], tok, tlen);
        ok |= eq;
        req->key_index |= eq ? (int)i + 1 : 0;
    }
    if (ok)
        return 0;
    *ret = api_reply_problem(req, c, 401, "the bearer key is not valid", NULL,
                             "WWW-Authenticate",
                             "Bearer realm=\"mailpool\", "
                             "error=\"invalid_token\"");
    return -1;
}

/* 1 for "application/json" with at most a "charset=utf-8" parameter
   (other parameters are ignored). */
static int is_json_type(const char *ct)
{
    static const char type[] = "application/json";
    if (ct == NULL)
        return 0;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    if (strncasecmp(ct, type, sizeof type - 1) != 0)
        return 0;
    ct += sizeof type - 1;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    while (*ct == ';') {
        const char *p = ct + 1, *end;
        while (*p == ' ' || *p == '\t')
            p++;
        end = strchr(p, ';');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n >= 8 && strncasecmp(p, "charset=", 8) == 0) {
            const char *v = p + 8;
            size_t vn = n - 8;
            if (vn >= 2 && v[0] == '"' && v[vn - 1] == '"') {
                v++;
                vn -= 2;
            }
            if (!(vn == 5 && strncasecmp(v, "utf-8", 5) == 0))
                return 0;
        }
        ct = p + n;
        while (*ct == ' ' || *ct == '\t')
            ct++;
    }
    return *ct == '\0';
}

/* Checks a POST before its body: auth, draining, media type, length. */
static enum MHD_Result first_post(struct api_req *req, struct MHD_Connection *c)
{
    struct api *api = req->api;
    enum MHD_Result ret = MHD_YES;
    const char *cl;
    if (check_auth(req, c, &ret) < 0)
        return ret;
    if (atomic_load(&api->draining))
        return api_reply_problem(req, c, 503, "the service is draining", NULL,
                                 "Retry-After", "1");
    if (api_async_head(req, c, &ret) < 0)
        return ret;
    if (req->route != API_ROUTE_CANCEL &&
        !is_json_type(
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type")))
        return api_reply_problem(req, c, 415,
                                 "the body must be application/json "
                                 "(charset utf-8)",
                                 NULL, NULL, NULL);
    cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    if (cl != NULL) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno == ERANGE || n > (unsigned long long)api->cfg->http.max_body)
            return api_reply_problem(req, c, 413,
                                     "the body is larger than http.max_body",
                                     NULL, NULL, NULL);
        /* Only the first buffer is charged now: a declared length is no
           reservation, the budget counts bytes as they are held. */
        if (charge(req, n < INITIAL_BODY ? (size_t)n : INITIAL_BODY) < 0)
            return api_reply_problem(req, c, 503, OVER_BUDGET, NULL,
                                     "Retry-After", "1");
        if (end != cl && n > 0) {
            req->cap = n < INITIAL_BODY ? (size_t)n : INITIAL_BODY;
            req->expect = (size_t)n;
        }
    }
    return MHD_YES;
}

/* The header fields of a request, and its framing fields; lo..hi is the
   head in MHD's read buffer (for the bare LF check). */
struct framing {
    unsigned fields, content_length, transfer_encoding, not_chunked, bad_name,
        bare_lf, body_declared, folded;
    const char *lo, *hi;
};

/* 1 when the line holding s (in MHD's read buffer, lo..hi) ended with a
   bare LF.  MHD 0.9 splits the head in place: a CRLF becomes two NULs, a
   lone LF one NUL directly followed by the next line. */
static int ends_bare_lf(const struct framing *f, const char *s)
{
    size_t n;
    if (s == NULL || s < f->lo || s >= f->hi)
        return 0;
    n = strnlen(s, (size_t)(f->hi - s));
    return s + n + 1 < f->hi && s[n + 1] != '\0';
}

/* MHD_get_connection_values callback: counts the fields. */
static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind,
                                     const char *key, const char *value)
{
    struct framing *f = cls;
    (void)kind;
    f->fields++;
    if (strpbrk(key, " \t") != NULL) { /* "Name : v" (RFC 9112 5.1) */
        f->bad_name++;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        f->content_length++;
        f->body_declared += value != NULL && strcmp(value, "0") != 0;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        f->transfer_encoding++;
        f->body_declared++;
        f->not_chunked += value == NULL || strcasecmp(value, "chunked") != 0;
    }
    f->bare_lf += ends_bare_lf(f, value);
    f->folded += key < f->lo || key >= f->hi; /* MHD moved it: obs-fold */
    return MHD_YES;
}

/* The request target and head against what the API reads (RFC 9112
   3.2: a target is visible ASCII; http.h: the limits).  0, or -1 with
   the answer queued and its result in *ret. */
static int check_head(struct api_req *req, struct MHD_Connection *c,
                      const struct slot *s, const char *url,
                      const char *version, unsigned fields,
                      enum MHD_Result *ret)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
        c, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    size_t head = ci != NULL ? ci->header_size : 0;
    char detail[160];
    if (s->bad_byte || target_cut(s, url, version, head)) {
        *ret = api_reply_problem(req, c, 400,
                                 "the request target holds a NUL, a "
                                 "control character, a space or a "
                                 "non-ASCII byte",
                                 NULL, NULL, NULL);
        return -1;
    }
    if (s->urilen > API_HTTP_MAX_TARGET) {
        snprintf(detail, sizeof detail,
                 "the request target is longer "
                 "than %d bytes",
                 API_HTTP_MAX_TARGET);
        *ret = api_reply_problem(req, c, 414, detail, NULL, NULL, NULL);
        return -1;
    }
    if (head > API_HTTP_MAX_HEAD || fields > API_HTTP_MAX_FIELDS) {
        snprintf(detail, sizeof detail,
                 "the request head is larger than "
                 "%d bytes or has more than %d header fields",
                 API_HTTP_MAX_HEAD, API_HTTP_MAX_FIELDS);
        *ret = api_reply_problem(req, c, 431, detail, NULL, NULL, NULL);
        return -1;
    }
    return 0;
}

/* The size of the request head MHD read; 0 if unknown. */
static size_t head_size(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
        c, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    return ci != NULL ? ci->header_size : 0;
}

/* Why a head's framing could be read two ways (request smuggling), or
   NULL: whitespace before a colon (RFC 9112 5.1), Content-Length with
   Transfer-Encoding or twice (6.3), Transfer-Encoding on HTTP/1.0 (6.1),
   on two lines, a line ended by a bare LF (2.2), or a field folded onto
   the next line (5.2).  MHD 0.9.75 appends a continuation line to the
   field's name, in a copy outside the head: a name found there was
   folded. */
static const char *smuggling(const struct framing *f, const char *version)
{
    if (f->bad_name > 0)
        return "whitespace in a header field name";
    if (f->content_length > 1 ||
        (f->content_length > 0 && f->transfer_encoding > 0))
        return "ambiguous message framing: Content-Length with "
               "Transfer-Encoding, or more than one Content-Length";
    if (f->transfer_encoding > 0 && version != NULL &&
        strcmp(version, MHD_HTTP_VERSION_1_0) == 0)
        return "Transfer-Encoding on an HTTP/1.0 request";
    if (f->transfer_encoding > 1)
        return "more than one Transfer-Encoding field";
    if (f->bare_lf > 0)
        return "a line of the request head ends in a bare LF";
    if (f->folded > 0)
        return "a header field continued on the next line (obs-fold)";
    return NULL;
}

/* The first call of a request: the target and head, framing, route,
   method, then the POST checks.  Ambiguous framing (RFC 9112 6.3:
   Content-Length beside Transfer-Encoding, or two Content-Lengths; 5.1:
   whitespace between a field name and its colon) is a 400 before anything
   else; a transfer coding other than chunked, which MHD would neither
   refuse nor read, a 501 (6.1).  Answered on the first call, the
   connection is then closed, so nothing after it can be read as a second
   request. */
static enum MHD_Result first_call(struct api_req *req, struct MHD_Connection *c,
                                  const struct slot *s, const char *url,
                                  const char *version)
{
    int m;
    char allow[32];
    enum MHD_Result ret = MHD_YES;
    const char *why;
    struct framing f = { 0 };
    f.lo = s->uri;
    f.hi = s->uri + head_size(c);
    f.bare_lf = ends_bare_lf(&f, version);
    MHD_get_connection_values(c, MHD_HEADER_KIND, count_framing, &f);
    if (check_head(req, c, s, url, version, f.fields, &ret) < 0)
        return ret;
    why = smuggling(&f, version);
    if (why != NULL)
        return api_reply_problem(req, c, 400, why, NULL, "Connection", "close");
    if (f.not_chunked > 0)
        return api_reply_problem(req, c, 501,
                                 "Transfer-Encoding other than chunked is "
                                 "not supported",
                                 NULL, NULL, NULL);
    if (req->route == API_ROUTE_UNMATCHED)
        return api_reply_problem(
            req, c, 404,
            strstr(url, "%00") != NULL
                ? "no such route (no route holds an encoded "
                  "NUL, %00)"
                : "no such route",
            NULL, NULL, NULL);
    m = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0
            ? M_GET
        : strcmp(req->method, "POST") == 0 ? M_POST
                                           : 0;
    if ((route_methods[req->route] & m) == 0) {
        snprintf(allow, sizeof allow, "%s%s%s",
                 route_methods[req->route] & M_GET ? "GET, HEAD" : "",
                 route_methods[req->route] == (M_GET | M_POST) ? ", " : "",
                 route_methods[req->route] & M_POST ? "POST" : "");
        return api_reply_problem(req, c, 405,
                                 "method not allowed on this route", NULL,
                                 "Allow", allow);
    }
    if (m == M_GET && f.body_declared > 0)
        return api_reply_problem(req, c, 400,
                                 "a GET or HEAD request "
                                 "carries no body",
                                 NULL, "Connection", "close");
    if (m == M_GET &&
        (req->route == API_ROUTE_MESSAGES || req->route == API_ROUTE_MESSAGE) &&
        check_auth(req, c, &ret) < 0)
        return ret;     /* the queue's messages: keys only */
    if (m == M_GET)     /* answered on the next call: MHD */
        return MHD_YES; /* closes after a first-call answer */
    return first_post(req, c);
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
        size_t cap = req->cap > 0 ? req->cap : INITIAL_BODY;
        while (cap < req->len + n)
            cap = cap > max / 2 ? max : cap * 2;
        if (req->expect >= req->len + n && cap > req->expect)
            cap = req->expect; /* no more than Content-Length said */
        if (charge(req, cap) < 0) {
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
    struct slot *s = *con_cls;
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
        return first_call(req, c, s, url, version);
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
            return api_reply_problem(req, c, 503, OVER_BUDGET, NULL,
                                     "Retry-After", "1");
        if (strcmp(req->method, "POST") != 0) /* GET or HEAD */
            return api_route_get(req, c);
        return api_route_post(req, c);
    case API_REQ_WAITING: return api_route_resumed(req, c);
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
    struct slot *s = *con_cls;
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
