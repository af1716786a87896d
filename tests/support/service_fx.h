/*
 * tests/support/service_fx.h - what the service tests over real HTTP
 * (tests/integration/test_service.c and test_service_process.c) share: a
 * peer and a `mailpool serve` per test, stopped by the teardown; requests
 * through libcurl; the JSON bodies; what the peer received; concurrent
 * calls; one sample of /metrics (tests/support/metrics_fx.h).
 * Header-only (static inline).
 */
#ifndef TESTS_SUPPORT_SERVICE_FX_H
#define TESTS_SUPPORT_SERVICE_FX_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <regex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/http.h"
#include "tests/support/metrics_fx.h"
#include "tests/support/mpserve.h"
#include "tests/support/peer.h"

#define STOP_MS 15000 /* bound on a SIGTERM stop */

/* ---- Fixture: the peer and the service of one test ---- */

struct fx {
    struct peer *peer;
    struct mpserve *svc;
};

static inline int setup(void **state)
{
    *state = calloc(1, sizeof(struct fx));
    return *state != NULL ? 0 : -1;
}

/* Stops both; every test also proves that the service, stopped with
   SIGTERM, exits 0 in time (under ASan: without a leak either). */
static inline int teardown(void **state)
{
    struct fx *fx = *state;
    int rc = 0;
    if (fx->svc != NULL && mpserve_stop_clean(fx->svc, STOP_MS) < 0)
        rc = -1;
    mpserve_free(fx->svc);
    peer_stop(fx->peer);
    free(fx);
    return rc;
}

static inline struct peer *start_fake(struct fx *fx, const char *script)
{
    fx->peer = peer_start_fake(script);
    assert_non_null(fx->peer);
    return fx->peer;
}

/* The service in front of relay_port; extra flags NULL-ended. */
static inline struct mpserve *start_svc_at(struct fx *fx, int relay_port,
                                           const char *const *extra)
{
    fx->svc = mpserve_start(relay_port, extra);
    assert_non_null(fx->svc);
    return fx->svc;
}

#define START_SVC(fx, ...) \
    start_svc_at((fx), peer_port((fx)->peer), \
                 (const char *const[]){ __VA_ARGS__, NULL })

static inline void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- HTTP through libcurl (thread-safe: no assertions inside) ---- */

/* One request; 0, or -1 with r->err set when no HTTP answer came. */
static inline int http_req(const char *method, const char *url,
                           const char *const *headers, const char *body,
                           struct http_resp *r)
{
    return http_request(method, url, headers, body, 0, r);
}

static inline void url_of(const struct fx *fx, const char *path, char *buf,
                          size_t size)
{
    snprintf(buf, size, "%s%s", mpserve_url(fx->svc), path);
}

/* POST a JSON text to path; asserts an HTTP answer came. */
static inline void post(const struct fx *fx, const char *path, const char *json,
                        struct http_resp *r)
{
    char url[256];
    static const char *const ct[] = { "Content-Type: application/json", NULL };
    url_of(fx, path, url, sizeof url);
    if (http_req("POST", url, ct, json, r) < 0)
        fail_msg("POST %s: %s", path, r->err);
}

static inline void get(const struct fx *fx, const char *path,
                       struct http_resp *r)
{
    char url[256];
    url_of(fx, path, url, sizeof url);
    if (http_req("GET", url, NULL, NULL, r) < 0)
        fail_msg("GET %s: %s", path, r->err);
}

/* The body as JSON (new reference); fails the test if it does not parse. */
static inline json_t *resp_json(const struct http_resp *r)
{
    json_error_t e;
    json_t *j = json_loadb(r->body != NULL ? r->body : "", r->len, 0, &e);
    if (j == NULL)
        fail_msg("HTTP %ld body is not JSON (%s): %.300s", r->status, e.text,
                 r->body != NULL ? r->body : "");
    return j;
}

/* Asserts the HTTP status, printing the body when it differs. */
static inline void expect_status(const struct http_resp *r, long status)
{
    if (r->status != status)
        fail_msg("expected HTTP %ld, got %ld: %.500s", status, r->status,
                 r->body != NULL ? r->body : "");
}

/* Asserts an RFC 9457 problem of this status; returns the document. */
static inline json_t *expect_problem(const struct http_resp *r, long status)
{
    expect_status(r, status);
    char *ct = http_resp_header(r, "Content-Type");
    assert_non_null(ct);
    assert_string_equal(ct, "application/problem+json");
    free(ct);
    json_t *p = resp_json(r);
    assert_true(json_is_string(json_object_get(p, "type")));
    assert_true(json_is_string(json_object_get(p, "title")));
    assert_int_equal(json_integer_value(json_object_get(p, "status")), status);
    assert_true(json_is_array(json_object_get(p, "errors")));
    return p;
}

static inline const char *jstr(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (s == NULL)
        fail_msg("member \"%s\" is not a string", key);
    return s;
}

static inline long long jint(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        fail_msg("member \"%s\" is not an integer", key);
    return json_integer_value(v);
}

/* A message request: one sender, recipients (NULL-ended), a Subject and a
   text body.  Caller frees. */
static inline char *message_json(const char *from, const char *const *to,
                                 const char *subject, const char *body)
{
    json_t *rcpts = json_array();
    for (size_t i = 0; to[i] != NULL; i++)
        json_array_append_new(rcpts, json_string(to[i]));
    json_t *m = json_pack("{s:s, s:o, s:{s:s}, s:s}", "from", from, "to", rcpts,
                          "headers", "Subject", subject, "body", body);
    assert_non_null(m);
    char *s = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    assert_non_null(s);
    return s;
}

/* The usual single-recipient message with this subject. */
static inline char *simple_json(const char *subject)
{
    static const char *const to[] = { "rcpt@example.net", NULL };
    return message_json("sender@example.com", to, subject, "hello");
}

/* POST /v1/messages with simple_json(subject); the 200 result object. */
static inline json_t *send_simple(const struct fx *fx, const char *subject)
{
    struct http_resp r;
    char *body = simple_json(subject);
    post(fx, "/v1/messages", body, &r);
    free(body);
    expect_status(&r, 200);
    json_t *j = resp_json(&r);
    http_resp_free(&r);
    return j;
}

/* ---- What the peer received ---- */

/* 1 when the message's header block has "Subject: subject". */
static inline int has_subject(const struct peer_msg *m, const char *subject)
{
    char want[256];
    snprintf(want, sizeof want, "\r\nSubject: %s\r\n", subject);
    const char *end = strstr((const char *)m->data, "\r\n\r\n");
    const char *hit = strstr((const char *)m->data, want);
    if (hit == NULL &&
        strncmp((const char *)m->data, want + 2, strlen(want) - 2) == 0)
        hit = (const char *)m->data;
    return hit != NULL && (end == NULL || hit <= end);
}

/* How many messages the peer took with this subject. */
static inline int count_subject(const struct peer_msg *m, size_t n,
                                const char *subject)
{
    int c = 0;
    for (size_t i = 0; i < n; i++)
        c += has_subject(&m[i], subject);
    return c;
}

/* Occurrences of cmd at the start of a line in connection conn's bytes. */
static inline int conn_count(struct peer *p, int conn, const char *cmd)
{
    size_t len = 0, clen = strlen(cmd);
    char *b = peer_conn_bytes(p, conn, &len);
    int c = 0;
    if (b == NULL)
        return 0;
    for (const char *q = b; q != NULL && q < b + len;) {
        if (strncmp(q, cmd, clen) == 0)
            c++;
        q = strstr(q, "\r\n");
        if (q != NULL)
            q += 2;
    }
    free(b);
    return c;
}

/* The same over every connection the peer accepted. */
static inline int wire_count(struct peer *p, const char *cmd)
{
    int n = peer_conn_count(p), c = 0;
    for (int i = 1; i <= n; i++)
        c += conn_count(p, i, cmd);
    return c;
}

/* Final dots ("\r\n.\r\n") received on every connection. */
static inline int wire_dots(struct peer *p)
{
    int n = peer_conn_count(p), c = 0;
    for (int i = 1; i <= n; i++) {
        size_t len = 0;
        char *b = peer_conn_bytes(p, i, &len);
        for (const char *q = b; q != NULL && (q = strstr(q, "\r\n.\r\n"));
             q += 5)
            c++;
        free(b);
    }
    return c;
}

/* 1 when needle occurs anywhere in the bytes of any connection. */
static inline int wire_has(struct peer *p, const char *needle)
{
    int n = peer_conn_count(p), found = 0;
    for (int i = 1; i <= n && !found; i++) {
        size_t len = 0;
        char *b = peer_conn_bytes(p, i, &len);
        found = b != NULL && strstr(b, needle) != NULL;
        free(b);
    }
    return found;
}

/* ---- Concurrent requests ---- */

struct call {
    const struct fx *fx;
    char *body;
    const char *path;
    struct http_resp r;
    int rc;
    pthread_t th;
};

static void *call_main(void *arg)
{
    struct call *c = arg;
    char url[256];
    static const char *const ct[] = { "Content-Type: application/json", NULL };
    url_of(c->fx, c->path, url, sizeof url);
    c->rc = http_req("POST", url, ct, c->body, &c->r);
    return NULL;
}

/* Starts n POSTs of simple_json("<prefix>-i") in threads. */
static inline void calls_start(struct call *calls, size_t n,
                               const struct fx *fx, const char *prefix)
{
    for (size_t i = 0; i < n; i++) {
        char subject[64];
        snprintf(subject, sizeof subject, "%s-%zu", prefix, i);
        calls[i].fx = fx;
        calls[i].path = "/v1/messages";
        calls[i].body = simple_json(subject);
        assert_int_equal(
            pthread_create(&calls[i].th, NULL, call_main, &calls[i]), 0);
    }
}

static inline void calls_join(struct call *calls, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        pthread_join(calls[i].th, NULL);
        free(calls[i].body);
        calls[i].body = NULL;
        if (calls[i].rc < 0)
            fail_msg("request %zu got no HTTP answer: %s", i, calls[i].r.err);
    }
}

/* The value of the sample whose "name{labels}" is exactly key; fails the
   test when text has none. */
static inline double sample(const char *text, const char *key)
{
    int found;
    double v = metrics_value(text, key, &found);
    if (!found)
        fail_msg("no sample %s in /metrics", key);
    return v;
}

#endif /* TESTS_SUPPORT_SERVICE_FX_H */
