/*
 * tests/support/hostile_fx.h - what the hostile-input tests
 * (tests/integration/test_hostile.c, test_hostile_raw.c and
 * test_hostile_clients.c) share: one fake relay (RCPT for slow@ delayed a
 * second) and two services in front of it for a file's whole group
 *   A  --http-max-body 65536: 10 MB bodies are refused quickly;
 *   B  default limits (max_body 10 MiB) and a bearer key;
 * both with --http-connection-timeout 3; HTTP through libcurl, generated
 * bodies, a raw HTTP client, the relay's checks (dot-stuffed, CRLF-clean,
 * Subject), and the last test of each file: the services alive, a normal
 * delivery, nothing stuck, requested = delivered at the relay and in
 * /metrics, both exit 0 on SIGTERM.  Header-only (static inline): each
 * file's group has its own relay, services and count of messages.
 */
#ifndef TESTS_SUPPORT_HOSTILE_FX_H
#define TESTS_SUPPORT_HOSTILE_FX_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/http.h"
#include "tests/support/mpserve.h"
#include "tests/support/peer.h"

#define KEY "hostile-key-0a1b"
#define CONN_TIMEOUT_S 3 /* --http-connection-timeout of A, B */
#define FORGED "forged@evil.example"

/* The relay: correct, but RCPT for slow@ takes a second. */
static const char RELAY_SCRIPT[] =
    "{\"rules\":[{\"match\":\"^RCPT TO:<slow@\",\"action\":\"delay:1\"}]}";

enum svc { A, B };

/* ---- Fixture: one relay, two services, for the whole group ---- */

struct fx {
    struct peer *peer;
    struct mpserve *svc[2];
    int requested; /* messages answered "sent" so far */
};

static inline int group_setup(void **state)
{
    struct fx *fx = calloc(1, sizeof *fx);
    if (fx == NULL)
        return -1;
    *state = fx;
    fx->peer = peer_start_fake(RELAY_SCRIPT);
    if (fx->peer == NULL)
        return -1;
    const char *a[] = { "--http-max-body", "65536", "--http-connection-timeout",
                        "3", NULL };
    const char *b[] = { "--http-connection-timeout", "3", NULL };
    fx->svc[A] = mpserve_start(peer_port(fx->peer), a);
    if (setenv("MAILPOOL_HTTP_API_KEYS", KEY, 1) != 0) /* B's key: no */
        return -1; /* flag (it would show in ps) */
    fx->svc[B] = mpserve_start(peer_port(fx->peer), b);
    unsetenv("MAILPOOL_HTTP_API_KEYS");
    return fx->svc[A] != NULL && fx->svc[B] != NULL ? 0 : -1;
}

/* The last test stops the services and checks how they ended; this only
   cleans up (SIGKILL for a service still running after a failure). */
static inline int group_teardown(void **state)
{
    struct fx *fx = *state;
    if (fx == NULL)
        return 0;
    mpserve_free(fx->svc[A]);
    mpserve_free(fx->svc[B]);
    peer_stop(fx->peer);
    free(fx);
    return 0;
}

/* Milliseconds on the monotonic clock. */
static inline long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleeps ms milliseconds. */
static inline void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* ---- HTTP through libcurl ---- */

/* One request to service svc: path as is (no dot-segment folding), extra
   headers NULL-ended, body of blen bytes (NULL: none).  0, or -1 with
   r->err set when no HTTP answer came. */
static inline int http_try(const struct fx *fx, enum svc svc,
                           const char *method, const char *path,
                           const char *const *headers, const char *body,
                           size_t blen, struct http_resp *r)
{
    char url[8192];
    snprintf(url, sizeof url, "%s%s", mpserve_url(fx->svc[svc]), path);
    return http_request_len(method, url, headers, body, blen, 0, r);
}

/* http_try that fails the test when no answer came. */
static inline void http(const struct fx *fx, enum svc svc, const char *method,
                        const char *path, const char *const *headers,
                        const char *body, struct http_resp *r)
{
    if (http_try(fx, svc, method, path, headers, body,
                 body != NULL ? strlen(body) : 0, r) < 0)
        fail_msg("%s %s: %s", method, path, r->err);
}

/* The body as JSON, or NULL (with the reason in why). */
static inline json_t *body_json(const char *body, size_t len, char *why,
                                size_t whylen)
{
    json_error_t e;
    json_t *j = json_loadb(body != NULL ? body : "", len, 0, &e);
    if (j == NULL)
        snprintf(why, whylen, "not JSON (%.100s)", e.text);
    return j;
}

/* The RFC 9110 phrase a problem of this status must have as its title;
   NULL for a status the API does not answer. */
static const char *status_title(long status)
{
    static const struct {
        long status;
        const char *title;
    } titles[] = {
        { 400, "Bad Request" },
        { 401, "Unauthorized" },
        { 404, "Not Found" },
        { 405, "Method Not Allowed" },
        { 413, "Content Too Large" },
        { 414, "URI Too Long" },
        { 415, "Unsupported Media Type" },
        { 422, "Unprocessable Content" },
        { 431, "Request Header Fields Too Large" },
        { 500, "Internal Server Error" },
        { 501, "Not Implemented" },
        { 502, "Bad Gateway" },
        { 503, "Service Unavailable" },
    };
    for (size_t i = 0; i < sizeof titles / sizeof titles[0]; i++)
        if (titles[i].status == status)
            return titles[i].title;
    return NULL;
}

/*
 * Checks a problem document: Content-Type application/problem+json, and a
 * JSON object with type, title (the status's phrase), detail (strings),
 * status (= the HTTP status), errors (an array of at most 100) and
 * request_id (= the X-Request-Id header).  0, or -1 with the reason in why.
 */
static inline int check_problem(long status, const char *hdrs, const char *body,
                                size_t len, json_t **out, char *why,
                                size_t whylen)
{
    char *ct = http_header_value(hdrs, "Content-Type");
    char *rid = http_header_value(hdrs, "X-Request-Id");
    json_t *p = NULL, *errors;
    int rc = -1;
    if (ct == NULL || strcmp(ct, "application/problem+json") != 0) {
        snprintf(why, whylen, "Content-Type is %s", ct != NULL ? ct : "(none)");
        goto out;
    }
    if ((p = body_json(body, len, why, whylen)) == NULL)
        goto out;
    errors = json_object_get(p, "errors");
    if (!json_is_string(json_object_get(p, "type")) ||
        !json_is_string(json_object_get(p, "title")) ||
        !json_is_string(json_object_get(p, "detail")) ||
        json_integer_value(json_object_get(p, "status")) != status) {
        snprintf(why, whylen, "type/title/detail/status wrong");
        goto out;
    }
    const char *title = json_string_value(json_object_get(p, "title"));
    if (status_title(status) == NULL ||
        strcmp(title, status_title(status)) != 0) {
        snprintf(why, whylen, "title \"%s\" for status %ld", title, status);
        goto out;
    }
    if (!json_is_array(errors) || json_array_size(errors) > 100) {
        snprintf(why, whylen, "errors is not an array of at most 100");
        goto out;
    }
    const char *prid = json_string_value(json_object_get(p, "request_id"));
    if (rid == NULL || prid == NULL || strcmp(rid, prid) != 0) {
        snprintf(why, whylen, "request_id does not match X-Request-Id");
        goto out;
    }
    rc = 0;
out:
    free(ct);
    free(rid);
    if (rc == 0 && out != NULL)
        *out = p;
    else
        json_decref(p);
    return rc;
}

/* 1 when problem p lists an error for exactly this field. */
static inline int has_field(json_t *p, const char *field)
{
    json_t *e;
    size_t i;
    json_array_foreach(json_object_get(p, "errors"), i, e)
    {
        const char *f = json_string_value(json_object_get(e, "field"));
        if (f != NULL && strcmp(f, field) == 0 &&
            json_is_string(json_object_get(e, "message")))
            return 1;
    }
    return 0;
}

/* ---- Generated bodies ---- */

/* A buffer of n bytes plus a NUL; fails the test when out of memory. */
static inline char *xmalloc(size_t n)
{
    char *p = malloc(n + 1);
    assert_non_null(p);
    p[n] = '\0';
    return p;
}

/* head + n copies of item separated by sep + tail. */
static inline char *repeat(const char *head, const char *item, const char *sep,
                           size_t n, const char *tail, size_t *len)
{
    size_t hl = strlen(head), il = strlen(item), sl = strlen(sep),
           tl = strlen(tail);
    size_t total = hl + n * il + (n > 0 ? (n - 1) * sl : 0) + tl, o = 0;
    char *s = xmalloc(total);
    memcpy(s, head, hl);
    o = hl;
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            memcpy(s + o, sep, sl);
            o += sl;
        }
        memcpy(s + o, item, il);
        o += il;
    }
    memcpy(s + o, tail, tl);
    *len = total;
    return s;
}

/* open n times, mid, close n times. */
static inline char *nest(const char *head, const char *open, size_t n,
                         const char *mid, const char *close, const char *tail,
                         size_t *len)
{
    size_t hl = strlen(head), ol = strlen(open), ml = strlen(mid),
           cl = strlen(close), tl = strlen(tail);
    size_t total = hl + n * (ol + cl) + ml + tl, o = hl;
    char *s = xmalloc(total);
    memcpy(s, head, hl);
    for (size_t i = 0; i < n; i++, o += ol)
        memcpy(s + o, open, ol);
    memcpy(s + o, mid, ml);
    o += ml;
    for (size_t i = 0; i < n; i++, o += cl)
        memcpy(s + o, close, cl);
    memcpy(s + o, tail, tl);
    *len = total;
    return s;
}

#define MSG_HEAD \
    "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\"]"

/* Generated bodies of the JSON table (each caller-freed). */
static inline char *gen_deep_arrays(size_t *len)
{
    return nest("", "[", 10000, "", "]", "", len);
}

static inline char *gen_deep_unclosed(size_t *len)
{
    return nest("", "[", 10000, "", "", "", len);
}

static inline char *gen_deep_objects(size_t *len)
{
    return nest("", "{\"a\":", 10000, "1", "}", "", len);
}

static inline char *gen_deep_in_to(size_t *len)
{
    return nest("{\"from\":\"sender@example.com\",\"to\":", "[", 10000,
                "\"rcpt@example.net\"", "]", "}", len);
}

static inline char *gen_deep_batch(size_t *len)
{
    return nest("{\"messages\":", "[", 10000, "", "]", "}", len);
}

static inline char *gen_deep_verify(size_t *len)
{
    return nest("{\"address\":", "{\"a\":", 10000, "1", "}", "}", len);
}

/* 1,000 deep: under the parser's limit, so it is the decoder's 422. */
static inline char *gen_nest_1000_body(size_t *len)
{
    return nest(MSG_HEAD ",\"body\":", "[", 1000, "\"x\"", "]", "}", len);
}

static inline char *gen_101_rcpt(size_t *len)
{
    return repeat("{\"from\":\"sender@example.com\",\"to\":[",
                  "\"rcpt@example.net\"", ",", 101, "]}", len);
}

static inline char *gen_10000_rcpt(size_t *len)
{
    return repeat("{\"from\":\"sender@example.com\",\"to\":[",
                  "\"rcpt@example.net\"", ",", 10000, "]}", len);
}

/* An element of 8 bytes: 100,001 of them stay under the bound of one
   JSON value per 8 bytes of body (api_json_too_many_values). */
#define ITEM8 "12345678"

/* 100,001 empty strings (3 bytes each with the comma) as body lines. */
static inline char *gen_100001_empty_lines(size_t *len)
{
    return repeat(MSG_HEAD ",\"body\":[", "\"\"", ",", 100001, "]}", len);
}

/* 100,001 empty arrays (3 bytes each) as header fields. */
static inline char *gen_100001_empty_pairs(size_t *len)
{
    return repeat(MSG_HEAD ",\"headers\":[", "[]", ",", 100001, "]}", len);
}

static inline char *gen_100001_to(size_t *len)
{
    return repeat("{\"from\":\"sender@example.com\",\"to\":[", ITEM8, ",",
                  100001, "]}", len);
}

static inline char *gen_100001_headers(size_t *len)
{
    return repeat(MSG_HEAD ",\"headers\":[", ITEM8, ",", 100001, "]}", len);
}

static inline char *gen_100001_lines(size_t *len)
{
    return repeat(MSG_HEAD ",\"body\":[", ITEM8, ",", 100001, "]}", len);
}

static inline char *gen_100001_messages(size_t *len)
{
    return repeat("{\"messages\":[", ITEM8, ",", 100001, "]}", len);
}

static inline char *gen_100001_root(size_t *len)
{
    return repeat("[", ITEM8, ",", 100001, "]", len);
}

static inline char *gen_1001_batch(size_t *len)
{
    return repeat("{\"messages\":[", "{\"from\":\"\",\"to\":[\"a@b.example\"]}",
                  ",", 1001, "]}", len);
}

static inline char *gen_long_address(size_t *len)
{
    return nest("{\"address\":\"", "v", 257, "", "", "\"}", len);
}

static inline char *gen_long_list(size_t *len)
{
    return nest("{\"list\":\"", "l", 300, "", "", "\"}", len);
}

static inline char *gen_long_topic(size_t *len)
{
    return nest("{\"topic\":\"", "t", 257, "", "", "\"}", len);
}

static inline char *gen_long_local_part(size_t *len)
{
    return nest("{\"from\":\"sender@example.com\",\"to\":[\"", "l", 300,
                "@example.net", "", "\"]}", len);
}

/* A path of 4,000 bytes (the generator's "body" is the path). */
static inline char *gen_long_path(size_t *len)
{
    return nest("/v1/", "a", 4000, "", "", "", len);
}

/* ---- A raw HTTP client ---- */

/* What came back on one raw connection. */
struct raw_out {
    int status;   /* first final status; 0: none */
    int nresp;    /* final responses seen */
    int closed;   /* the server closed (EOF or reset) */
    int hung;     /* neither answer nor close in time */
    int from_api; /* the answer had an X-Request-Id */
    long long ms; /* connect to the end */
    char *hdrs;   /* headers of the first final response */
    char *body;   /* its body */
    size_t blen;
};

/* Frees what a raw outcome holds. */
static inline void raw_out_free(struct raw_out *o)
{
    free(o->hdrs);
    free(o->body);
    memset(o, 0, sizeof *o);
}

/* A non-blocking TCP socket connected to 127.0.0.1:port; -1 on error. */
static inline int raw_connect(int port, int rcvbuf)
{
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port) };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* Parses the responses in buf[0..n): the first final one into o, and the
   count of final responses.  Returns the bytes of complete responses. */
static inline size_t parse_responses(const char *buf, size_t n,
                                     struct raw_out *o)
{
    size_t off = 0;
    o->nresp = 0;
    while (off < n) {
        const char *end = memmem(buf + off, n - off, "\r\n\r\n", 4);
        if (end == NULL || n - off < 12 || strncmp(buf + off, "HTTP/1.", 7))
            break;
        size_t hlen = (size_t)(end - (buf + off)) + 4;
        int code = (int)strtol(buf + off + 9, NULL, 10);
        char *h = strndup(buf + off, hlen);
        char *cl = http_header_value(h, "Content-Length");
        size_t blen = cl != NULL ? strtoul(cl, NULL, 10) : 0;
        free(cl);
        if (code >= 200 && off + hlen + blen > n) {
            free(h);
            break; /* the body is still coming */
        }
        if (code >= 200 && o->nresp++ == 0) {
            o->status = code;
            free(o->hdrs);
            free(o->body);
            o->hdrs = h;
            h = NULL;
            o->body = strndup(buf + off + hlen, blen);
            o->blen = blen;
            char *rid = http_header_value(o->hdrs, "X-Request-Id");
            o->from_api = rid != NULL;
            free(rid);
        }
        free(h);
        off += hlen + (code >= 200 ? blen : 0);
    }
    return off;
}

/*
 * One exchange: connect to port, send req[0..len) as fast as the server
 * takes it (stopping once an answer begins: a server may answer early and
 * stop reading), optionally shut the write side, then read.  Stops at the
 * server's close or at deadline_ms; after a first answer waits linger_ms
 * more (to see a close, or a smuggled second answer).
 */
static inline void raw_exchange(int port, const char *req, size_t len, int half,
                                int deadline_ms, int linger_ms,
                                struct raw_out *o)
{
    long long t0 = now_ms(), end = t0 + deadline_ms, answered = 0;
    size_t off = 0, n = 0, cap = 65536;
    char *buf = xmalloc(cap);
    int fd = raw_connect(port, 0), shut = 0;
    memset(o, 0, sizeof *o);
    if (fd < 0) {
        o->hung = 1;
        free(buf);
        return;
    }
    for (;;) {
        long long now = now_ms(), stop = answered ? answered + linger_ms : end;
        if (now >= stop || now >= end)
            break;
        if (off == len && half && !shut) {
            shutdown(fd, SHUT_WR);
            shut = 1;
        }
        struct pollfd p = { fd, POLLIN | (off < len && n == 0 ? POLLOUT : 0),
                            0 };
        if (poll(&p, 1, (int)(stop - now)) <= 0)
            continue;
        if (p.revents & POLLOUT) {
            ssize_t w = send(fd, req + off, len - off, MSG_NOSIGNAL);
            if (w > 0)
                off += (size_t)w;
            else if (w < 0 && errno != EAGAIN && errno != EINTR)
                off = len; /* the server stopped reading */
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            if (cap - n < 4096) {
                char *q = realloc(buf, (cap *= 2) + 1);
                assert_non_null(q);
                buf = q;
            }
            ssize_t r = recv(fd, buf + n, cap - n, 0);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                o->closed = 1;
                break;
            }
            if (r > 0) {
                n += (size_t)r;
                parse_responses(buf, n, o);
                if (o->nresp > 0 && !answered)
                    answered = now_ms();
            }
        }
    }
    parse_responses(buf, n, o);
    o->hung = o->nresp == 0 && !o->closed;
    o->ms = now_ms() - t0;
    close(fd);
    free(buf);
    if (o->nresp > 0 && o->from_api)
        http_log_raw(req, len, o->status, o->hdrs, o->body, o->blen);
}

#define HOST "Host: 127.0.0.1\r\n"
#define JSONCT "Content-Type: application/json\r\n"
#define POSTM "POST /v1/messages HTTP/1.1\r\n" HOST JSONCT
#define AUTHB "Authorization: Bearer " KEY "\r\n"

/* GET /healthz on svc answers 200. */
static inline void expect_healthy(const struct fx *fx, enum svc svc,
                                  const char *after)
{
    struct http_resp r;
    if (http_try(fx, svc, "GET", "/healthz", NULL, NULL, 0, &r) < 0 ||
        r.status != 200)
        fail_msg("service %c not healthy after %s: %ld %s", "AB"[svc], after,
                 r.status, r.err);
    http_resp_free(&r);
}

/* 1 when data is CRLF-clean and every line starting with '.' is stuffed. */
static inline int stuffed_and_clean(const unsigned char *d, size_t len,
                                    char *why, size_t whylen)
{
    for (size_t i = 0; i < len; i++) {
        if (d[i] == '\r' && (i + 1 == len || d[i + 1] != '\n')) {
            snprintf(why, whylen, "a bare CR at %zu", i);
            return 0;
        }
        if (d[i] == '\n' && (i == 0 || d[i - 1] != '\r')) {
            snprintf(why, whylen, "a bare LF at %zu", i);
            return 0;
        }
        int bol = i == 0 || d[i - 1] == '\n';
        if (bol && d[i] == '.' && (i + 1 == len || d[i + 1] != '.')) {
            snprintf(why, whylen, "an unstuffed dot at %zu", i);
            return 0;
        }
    }
    return 1;
}

/* The value of the Subject header in a message, or NULL; caller frees. */
static inline char *subject_of(const struct peer_msg *m)
{
    const char *d = (const char *)m->data;
    const char *end = strstr(d, "\r\n\r\n");
    for (const char *p = d; p != NULL && (end == NULL || p < end);) {
        if (strncasecmp(p, "Subject: ", 9) == 0) {
            const char *eol = strstr(p, "\r\n");
            return strndup(p + 9,
                           eol != NULL ? (size_t)(eol - p - 9) : strlen(p + 9));
        }
        p = strstr(p, "\r\n");
        if (p != NULL)
            p += 2;
    }
    return NULL;
}

/* ---- Afterwards ---- */

/* The value of a sample in the Prometheus text, or -1. */
static inline double metric(const char *text, const char *sample)
{
    size_t n = strlen(sample);
    for (const char *p = text; p != NULL && *p != '\0';) {
        if (strncmp(p, sample, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return -1;
}

/* Queue empty and no worker busy on svc (waits up to 10 s); returns the
   messages counted as sent. */
static inline double settle(const struct fx *fx, enum svc svc)
{
    for (long long end = now_ms() + 10000;; sleep_ms(50)) {
        struct http_resp r;
        http(fx, svc, "GET", "/metrics", NULL, NULL, &r);
        assert_int_equal(r.status, 200);
        double q = metric(r.body, "mailpool_pool_queue_depth");
        double busy = metric(r.body, "mailpool_pool_workers_busy");
        double sent = metric(r.body,
                             "mailpool_messages_total{status=\"sent\"}");
        http_resp_free(&r);
        if (q == 0 && busy == 0)
            return sent;
        if (now_ms() >= end)
            fail_msg("service %c: %g queued, %g workers busy: stuck", "AB"[svc],
                     q, busy);
    }
}

static inline void test_afterwards_alive_delivering_counted_and_exits_0(
    void **state)
{
    struct fx *fx = *state;
    const char *ct[] = { "Content-Type: application/json", NULL };
    struct http_resp r;
    expect_healthy(fx, A, "everything");
    expect_healthy(fx, B, "everything");
    http(fx, A, "POST", "/v1/messages", ct,
         "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\"],"
         "\"headers\":{\"Subject\":\"hostile: the last one\"},"
         "\"body\":\"still here\"}",
         &r);
    if (r.status != 200 || strstr(r.body, "\"status\":\"sent\"") == NULL)
        fail_msg("the last message: %ld %s", r.status, r.body);
    http_resp_free(&r);
    fx->requested++;
    /* No worker stuck, nothing queued; the services say what the relay
       says. */
    double sent = settle(fx, A) + settle(fx, B);
    assert_int_equal(peer_wait_messages(fx->peer, (size_t)fx->requested, 10000),
                     fx->requested);
    sleep_ms(300);
    struct peer_msg *m;
    size_t got;
    assert_int_equal(peer_messages(fx->peer, &m, &got), 0);
    print_message("  requested %d, the relay received %zu, /metrics says "
                  "%g sent\n",
                  fx->requested, got, sent);
    assert_int_equal(got, (size_t)fx->requested);
    assert_int_equal((int)sent, fx->requested);
    /* Each message once (by Subject), every one dot-stuffed and CRLF-clean,
       none forged. */
    for (size_t i = 0; i < got; i++) {
        char why[64];
        if (!stuffed_and_clean(m[i].data, m[i].len, why, sizeof why))
            fail_msg("message %zu: %s", i, why);
        if (strcmp(m[i].mail_from, FORGED) == 0)
            fail_msg("message %zu is forged", i);
        char *s = subject_of(&m[i]);
        for (size_t k = i + 1; s != NULL && k < got; k++) {
            char *t = subject_of(&m[k]);
            if (t != NULL && strcmp(s, t) == 0)
                fail_msg("\"%s\" arrived twice", s);
            free(t);
        }
        free(s);
    }
    peer_msgs_free(m, got);
    /* SIGTERM: both exit 0 (under ASan: without a leak). */
    for (int i = A; i <= B; i++) {
        int st = mpserve_stop(fx->svc[i], 15000);
        if (st != 0) {
            char *log = mpserve_log(fx->svc[i], NULL);
            fail_msg("service %c ended with %d after SIGTERM; its stderr "
                     "ends:\n%s",
                     "AB"[i], st,
                     log != NULL && strlen(log) > 3000
                         ? log + strlen(log) - 3000
                         : log);
        }
    }
}

/* Runs a file's tests as one group (the relay and services of
   group_setup), libcurl set up around it; the exit code. */
static inline int hostile_run(const struct CMUnitTest *tests, size_t n)
{
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    int rc = _cmocka_run_group_tests("hostile", tests, n, group_setup,
                                     group_teardown);
    curl_global_cleanup();
    return rc;
}

#endif /* TESTS_SUPPORT_HOSTILE_FX_H */
