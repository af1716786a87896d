/*
 * test_service.c - the whole service over real HTTP: `build/mailpool serve`
 * runs as a child process (tests/support/mpserve.h) in front of a real SMTP
 * peer (tests/support/peer.h: the scriptable fake, aiosmtpd, smtp-sink),
 * libcurl sends the requests, and every test checks both ends of the wire:
 * the HTTP status, headers and JSON body the client got, and what the SMTP
 * peer received (messages, MAIL/RCPT/DATA commands, connections).
 *
 * This file covers delivery and the pool (one message, headers and body
 * forms, raw, batch, partial and total rejection, 421 at MAIL and at the
 * dot, a pooled connection closed while idle, a drop after the final dot,
 * 5xx, an unreachable relay, a full queue, a client hanging up mid-flight),
 * /readyz, VRFY/EXPN/HELP, the SIGTERM drain, /metrics and the request log.
 * test_service_errors.c covers the request errors (problem+json, 413,
 * bearer keys), /openapi.json and bad configuration.
 *
 * Each test starts its own peer and service; the teardown stops both even
 * when an assertion failed, and fails the test unless the service exits 0
 * on SIGTERM.  Run from anywhere: the helpers find the binary and the
 * peers.  MPSERVE_KEEP=1 keeps the service's log directory, PEER_VERBOSE=1
 * prints the peer's.  $TMPDIR must be traversable by "nobody" when run as
 * root (smtp-sink drops to that user).
 */
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
#include "tests/support/mpserve.h"
#include "tests/support/peer.h"

#define STOP_MS 15000           /* bound on a SIGTERM stop */

/* ---- Fixture: the peer and the service of one test ---- */

struct fx {
    struct peer *peer;
    struct mpserve *svc;
};

static int setup(void **state)
{
    *state = calloc(1, sizeof(struct fx));
    return *state != NULL ? 0 : -1;
}

/* Stops both; every test also proves that the service, stopped with
   SIGTERM, exits 0 in time (under ASan: without a leak either). */
static int teardown(void **state)
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

static struct peer *start_fake(struct fx *fx, const char *script)
{
    fx->peer = peer_start_fake(script);
    assert_non_null(fx->peer);
    return fx->peer;
}

/* The service in front of relay_port; extra flags NULL-ended. */
static struct mpserve *start_svc_at(struct fx *fx, int relay_port,
                                    const char *const *extra)
{
    fx->svc = mpserve_start(relay_port, extra);
    assert_non_null(fx->svc);
    return fx->svc;
}

#define START_SVC(fx, ...) \
    start_svc_at((fx), peer_port((fx)->peer), \
                 (const char *const[]){ __VA_ARGS__, NULL })

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- HTTP through libcurl (thread-safe: no assertions inside) ---- */

/* One request; 0, or -1 with r->err set when no HTTP answer came. */
static int http_req(const char *method, const char *url,
                    const char *const *headers, const char *body,
                    struct http_resp *r)
{
    return http_request(method, url, headers, body, 0, r);
}

static void url_of(const struct fx *fx, const char *path, char *buf,
                   size_t size)
{
    snprintf(buf, size, "%s%s", mpserve_url(fx->svc), path);
}

/* POST a JSON text to path; asserts an HTTP answer came. */
static void post(const struct fx *fx, const char *path, const char *json,
                 struct http_resp *r)
{
    char url[256];
    static const char *const ct[] = { "Content-Type: application/json", NULL };
    url_of(fx, path, url, sizeof url);
    if (http_req("POST", url, ct, json, r) < 0)
        fail_msg("POST %s: %s", path, r->err);
}

static void get(const struct fx *fx, const char *path, struct http_resp *r)
{
    char url[256];
    url_of(fx, path, url, sizeof url);
    if (http_req("GET", url, NULL, NULL, r) < 0)
        fail_msg("GET %s: %s", path, r->err);
}

/* The body as JSON (new reference); fails the test if it does not parse. */
static json_t *resp_json(const struct http_resp *r)
{
    json_error_t e;
    json_t *j = json_loadb(r->body != NULL ? r->body : "", r->len, 0, &e);
    if (j == NULL)
        fail_msg("HTTP %ld body is not JSON (%s): %.300s", r->status, e.text,
                 r->body != NULL ? r->body : "");
    return j;
}

/* Asserts the HTTP status, printing the body when it differs. */
static void expect_status(const struct http_resp *r, long status)
{
    if (r->status != status)
        fail_msg("expected HTTP %ld, got %ld: %.500s", status, r->status,
                 r->body != NULL ? r->body : "");
}

/* Asserts an RFC 9457 problem of this status; returns the document. */
static json_t *expect_problem(const struct http_resp *r, long status)
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

static const char *jstr(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (s == NULL)
        fail_msg("member \"%s\" is not a string", key);
    return s;
}

static long long jint(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        fail_msg("member \"%s\" is not an integer", key);
    return json_integer_value(v);
}

/* A message request: one sender, recipients (NULL-ended), a Subject and a
   text body.  Caller frees. */
static char *message_json(const char *from, const char *const *to,
                          const char *subject, const char *body)
{
    json_t *rcpts = json_array();
    for (size_t i = 0; to[i] != NULL; i++)
        json_array_append_new(rcpts, json_string(to[i]));
    json_t *m = json_pack("{s:s, s:o, s:{s:s}, s:s}", "from", from, "to",
                          rcpts, "headers", "Subject", subject, "body", body);
    assert_non_null(m);
    char *s = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    assert_non_null(s);
    return s;
}

/* The usual single-recipient message with this subject. */
static char *simple_json(const char *subject)
{
    static const char *const to[] = { "rcpt@example.net", NULL };
    return message_json("sender@example.com", to, subject, "hello");
}

/* POST /v1/messages with simple_json(subject); the 200 result object. */
static json_t *send_simple(const struct fx *fx, const char *subject)
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
static int has_subject(const struct peer_msg *m, const char *subject)
{
    char want[256];
    snprintf(want, sizeof want, "\r\nSubject: %s\r\n", subject);
    const char *end = strstr((const char *)m->data, "\r\n\r\n");
    const char *hit = strstr((const char *)m->data, want);
    if (hit == NULL && strncmp((const char *)m->data, want + 2,
                               strlen(want) - 2) == 0)
        hit = (const char *)m->data;
    return hit != NULL && (end == NULL || hit <= end);
}

/* How many messages the peer took with this subject. */
static int count_subject(const struct peer_msg *m, size_t n,
                         const char *subject)
{
    int c = 0;
    for (size_t i = 0; i < n; i++)
        c += has_subject(&m[i], subject);
    return c;
}

/* Occurrences of cmd at the start of a line in connection conn's bytes. */
static int conn_count(struct peer *p, int conn, const char *cmd)
{
    size_t len = 0, clen = strlen(cmd);
    char *b = peer_conn_bytes(p, conn, &len);
    int c = 0;
    if (b == NULL)
        return 0;
    for (const char *q = b; q != NULL && q < b + len; ) {
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
static int wire_count(struct peer *p, const char *cmd)
{
    int n = peer_conn_count(p), c = 0;
    for (int i = 1; i <= n; i++)
        c += conn_count(p, i, cmd);
    return c;
}

/* Final dots ("\r\n.\r\n") received on every connection. */
static int wire_dots(struct peer *p)
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
static int wire_has(struct peer *p, const char *needle)
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
static void calls_start(struct call *calls, size_t n, const struct fx *fx,
                        const char *prefix)
{
    for (size_t i = 0; i < n; i++) {
        char subject[64];
        snprintf(subject, sizeof subject, "%s-%zu", prefix, i);
        calls[i].fx = fx;
        calls[i].path = "/v1/messages";
        calls[i].body = simple_json(subject);
        assert_int_equal(pthread_create(&calls[i].th, NULL, call_main,
                                        &calls[i]), 0);
    }
}

static void calls_join(struct call *calls, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        pthread_join(calls[i].th, NULL);
        free(calls[i].body);
        calls[i].body = NULL;
        if (calls[i].rc < 0)
            fail_msg("request %zu got no HTTP answer: %s", i,
                     calls[i].r.err);
    }
}

static double sample(const char *text, const char *key);

/* ---- Tests: delivery ---- */

static void test_one_message_is_sent_and_reaches_the_relay_once(void **state)
{
    struct fx *fx = *state;
    struct http_resp r;
    struct peer_msg *m;
    size_t n;
    static const char *const to[] = { "rcpt@example.net", NULL };
    start_fake(fx, "{}");
    START_SVC(fx, "--pool-workers", "2");
    char *body = message_json("sender@example.com", to, "Hello there",
                              "First line\nSecond line");
    post(fx, "/v1/messages", body, &r);
    free(body);
    expect_status(&r, 200);
    char *ct = http_resp_header(&r, "Content-Type");
    char *rid = http_resp_header(&r, "X-Request-Id");
    assert_non_null(ct);
    assert_string_equal(ct, "application/json");
    assert_non_null(rid);
    assert_int_equal(strlen(rid), 32);
    json_t *j = resp_json(&r);
    assert_int_equal(jint(j, "code"), 250);
    assert_string_equal(jstr(j, "status"), "sent");
    assert_string_equal(jstr(j, "request_id"), rid);
    assert_int_equal(jint(j, "attempts"), 1);
    assert_true(json_is_number(json_object_get(j, "duration_ms")));
    json_t *acc = json_object_get(j, "accepted");
    assert_int_equal(json_array_size(acc), 1);
    assert_string_equal(json_string_value(json_array_get(acc, 0)),
                        "rcpt@example.net");
    assert_int_equal(json_array_size(json_object_get(j, "rejected")), 0);
    const char *mid = jstr(j, "message_id");
    assert_true(mid[0] == '<' && mid[strlen(mid) - 1] == '>');

    assert_int_equal(peer_wait_messages(fx->peer, 1, 5000), 1);
    assert_int_equal(peer_messages(fx->peer, &m, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(m[0].mail_from, "sender@example.com");
    assert_int_equal(m[0].nrcpt, 1);
    assert_string_equal(m[0].rcpt_to[0], "rcpt@example.net");
    assert_true(has_subject(&m[0], "Hello there"));
    /* The Message-ID the client was told is the one on the wire. */
    char want[300];
    snprintf(want, sizeof want, "\r\nMessage-ID: %s\r\n", mid);
    assert_non_null(strstr((const char *)m[0].data, want));
    /* A lone LF in the JSON body goes out as CRLF, and the body ends in
       CRLF before the final dot. */
    const char *bodystart = strstr((const char *)m[0].data, "\r\n\r\n");
    assert_non_null(bodystart);
    assert_string_equal(bodystart + 4, "First line\r\nSecond line\r\n");
    peer_msgs_free(m, n);
    assert_int_equal(wire_count(fx->peer, "MAIL FROM:"), 1);
    assert_int_equal(wire_count(fx->peer, "DATA"), 1);
    json_decref(j);
    free(ct);
    free(rid);
    http_resp_free(&r);
    get(fx, "/readyz", &r);         /* a live relay connection: ready */
    expect_status(&r, 200);
    http_resp_free(&r);
    assert_int_equal(mpserve_stop(fx->svc, STOP_MS), 0);
}

static void test_header_pairs_keep_order_lines_join_crlf_raw_is_verbatim(
    void **state)
{
    struct fx *fx = *state;
    struct http_resp r;
    struct peer_msg *m;
    size_t n;
    /* aiosmtpd: a real server, which also un-stuffs the leading dot. */
    fx->peer = peer_start_aiosmtpd(NULL);
    assert_non_null(fx->peer);
    START_SVC(fx, "--pool-workers", "1");
    post(fx, "/v1/messages",
         "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\"],"
         "\"headers\":[[\"X-Zulu\",\"1\"],[\"Subject\",\"pairs\"],"
         "[\"X-Alpha\",\"2\"],[\"X-Zulu\",\"3\"]],"
         "\"body\":[\"line one\",\".starts with a dot\",\"\",\"last\"]}", &r);
    expect_status(&r, 200);
    http_resp_free(&r);
    /* raw: a whole message, sent as it is (nothing added). */
    static const char raw[] =
        "From: Someone <sender@example.com>\r\n"
        "To: rcpt@example.net\r\n"
        "Subject: raw one\r\n"
        "\r\n"
        "raw body\r\n";
    json_t *req = json_pack("{s:s, s:[s], s:s}", "from", "sender@example.com",
                            "to", "rcpt@example.net", "raw", raw);
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    post(fx, "/v1/messages", body, &r);
    free(body);
    expect_status(&r, 200);
    json_t *j = resp_json(&r);
    assert_string_equal(jstr(j, "status"), "sent");
    /* No Message-ID was added to a raw message, so none is reported. */
    assert_true(json_is_null(json_object_get(j, "message_id")));
    json_decref(j);
    http_resp_free(&r);

    assert_int_equal(peer_wait_messages(fx->peer, 2, 5000), 2);
    assert_int_equal(peer_messages(fx->peer, &m, &n), 0);
    assert_int_equal(n, 2);
    const char *d = (const char *)m[0].data;
    const char *z1 = strstr(d, "\r\nX-Zulu: 1\r\n");
    const char *s = strstr(d, "\r\nSubject: pairs\r\n");
    const char *a = strstr(d, "\r\nX-Alpha: 2\r\n");
    const char *z3 = strstr(d, "\r\nX-Zulu: 3\r\n");
    assert_true(z1 != NULL && s != NULL && a != NULL && z3 != NULL);
    assert_true(z1 < s && s < a && a < z3);
    const char *b = strstr(d, "\r\n\r\n");
    assert_non_null(b);
    assert_true(z3 < b);
    assert_string_equal(b + 4,
                        "line one\r\n.starts with a dot\r\n\r\nlast\r\n");
    assert_int_equal(m[1].len, strlen(raw));
    assert_memory_equal(m[1].data, raw, m[1].len);
    peer_msgs_free(m, n);
    /* On the wire (before aiosmtpd un-stuffed it) the dot was doubled. */
    size_t len;
    char *wire = peer_conn_bytes(fx->peer, 1, &len);
    assert_non_null(wire);
    assert_non_null(strstr(wire, "\r\n..starts with a dot\r\n"));
    free(wire);
}

static void test_batch_of_20_answers_in_input_order_delivers_each_once(
    void **state)
{
    struct fx *fx = *state;
    struct http_resp r;
    struct peer_msg *m;
    size_t n;
    enum { N = 20 };
    /* smtp-sink: Postfix's test server, a third real implementation. */
    fx->peer = peer_start_sink(NULL);
    assert_non_null(fx->peer);
    START_SVC(fx, "--pool-workers", "4", "--pool-connections", "4");
    json_t *msgs = json_array();
    for (int i = 0; i < N; i++) {
        char subject[32], rcpt[64];
        snprintf(subject, sizeof subject, "batch-%02d", i);
        snprintf(rcpt, sizeof rcpt, "rcpt-%02d@example.net", i);
        json_array_append_new(msgs, json_pack("{s:s, s:[s], s:{s:s}, s:s}",
                                              "from", "sender@example.com",
                                              "to", rcpt, "headers",
                                              "Subject", subject, "body",
                                              subject));
    }
    json_t *req = json_pack("{s:o}", "messages", msgs);
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    post(fx, "/v1/messages/batch", body, &r);
    free(body);
    expect_status(&r, 200);
    json_t *j = resp_json(&r);
    json_t *results = json_object_get(j, "results");
    assert_int_equal(json_array_size(results), N);
    for (int i = 0; i < N; i++) {
        json_t *res = json_array_get(results, (size_t)i);
        char rcpt[64];
        snprintf(rcpt, sizeof rcpt, "rcpt-%02d@example.net", i);
        assert_int_equal(jint(res, "code"), 250);
        assert_string_equal(jstr(res, "status"), "sent");
        json_t *acc = json_object_get(res, "accepted");
        assert_int_equal(json_array_size(acc), 1);
        /* result i is message i: its only recipient is rcpt-i */
        assert_string_equal(json_string_value(json_array_get(acc, 0)), rcpt);
    }
    json_decref(j);
    http_resp_free(&r);
    assert_int_equal(peer_wait_messages(fx->peer, N, 10000), N);
    sleep_ms(200);              /* a 21st would show up here */
    assert_int_equal(peer_messages(fx->peer, &m, &n), 0);
    assert_int_equal(n, N);
    for (int i = 0; i < N; i++) {
        char subject[32], rcpt[64];
        snprintf(subject, sizeof subject, "batch-%02d", i);
        snprintf(rcpt, sizeof rcpt, "rcpt-%02d@example.net", i);
        assert_int_equal(count_subject(m, n, subject), 1);
        for (size_t k = 0; k < n; k++)
            if (has_subject(&m[k], subject)) {
                assert_int_equal(m[k].nrcpt, 1);
                assert_string_equal(m[k].rcpt_to[0], rcpt);
            }
    }
    peer_msgs_free(m, n);
}

static void test_partial_rejection_is_700_with_losers_and_delivers_winner(
    void **state)
{
    struct fx *fx = *state;
    struct http_resp r;
    struct peer_msg *m;
    size_t n;
    static const char *const to[] = { "good@example.net", "bad@example.net",
                                      NULL };
    start_fake(fx, "{\"rules\":[{\"match\":\"^RCPT TO:<bad\","
                   "\"reply\":\"550 5.1.1 <bad@example.net>: Recipient "
                   "address rejected: User unknown\"}]}");
    START_SVC(fx, "--pool-workers", "1");
    char *body = message_json("sender@example.com", to, "partial", "x");
    post(fx, "/v1/messages", body, &r);
    free(body);
    expect_status(&r, 200);
    json_t *j = resp_json(&r);
    assert_int_equal(jint(j, "code"), 700);
    assert_string_equal(jstr(j, "status"), "partial");
    json_t *acc = json_object_get(j, "accepted");
    assert_int_equal(json_array_size(acc), 1);
    assert_string_equal(json_string_value(json_array_get(acc, 0)),
                        "good@example.net");
    json_t *rej = json_object_get(j, "rejected");
    assert_int_equal(json_array_size(rej), 1);
    json_t *r0 = json_array_get(rej, 0);
    assert_string_equal(jstr(r0, "recipient"), "bad@example.net");
    assert_int_equal(jint(r0, "code"), 550);
    assert_string_equal(jstr(r0, "enhanced"), "5.1.1");
    json_t *text = json_object_get(r0, "text");
    assert_true(json_is_array(text));
    assert_non_null(strstr(json_string_value(json_array_get(text, 0)),
                           "User unknown"));
    assert_int_equal(jint(j, "attempts"), 1);   /* final: not retried */
    json_decref(j);
    http_resp_free(&r);
    assert_int_equal(peer_wait_messages(fx->peer, 1, 5000), 1);
    assert_int_equal(peer_messages(fx->peer, &m, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(m[0].nrcpt, 1);
    assert_string_equal(m[0].rcpt_to[0], "good@example.net");
    peer_msgs_free(m, n);
    assert_int_equal(wire_count(fx->peer, "MAIL FROM:"), 1);
}

/* POSTs a message to two recipients that the fake refuses; checks the
   700 "rejected" answer. */
static void send_all_rejected(struct fx *fx)
{
    struct http_resp r;
    static const char *const to[] = { "bad1@example.net", "bad2@example.net",
                                      NULL };
    char *body = message_json("sender@example.com", to, "nobody-wants-it",
                              "x");
    post(fx, "/v1/messages", body, &r);
    free(body);
    expect_status(&r, 200);
    json_t *j = resp_json(&r);
    assert_int_equal(jint(j, "code"), 700);
    assert_string_equal(jstr(j, "status"), "rejected");
    assert_int_equal(json_array_size(json_object_get(j, "accepted")), 0);
    json_t *rej = json_object_get(j, "rejected");
    assert_int_equal(json_array_size(rej), 2);
    assert_string_equal(jstr(json_array_get(rej, 0), "recipient"),
                        "bad1@example.net");
    assert_string_equal(jstr(json_array_get(rej, 1), "recipient"),
                        "bad2@example.net");
    assert_int_equal(jint(json_array_get(rej, 1), "code"), 550);
    assert_int_equal(jint(j, "attempts"), 1);
    json_decref(j);
    http_resp_free(&r);
    assert_int_equal(wire_count(fx->peer, "RCPT TO:"), 2);
    /* Not a byte of the message crossed the wire, nothing was taken. */
    assert_false(wire_has(fx->peer, "nobody-wants-it"));
    assert_int_equal(peer_wait_messages(fx->peer, 1, 300), 0);
}

static void test_all_rejected_is_700_rejected_and_sends_no_data(void **state)
{
    struct fx *fx = *state;
    /* Without PIPELINING the client waits for the RCPT replies: no DATA
       command at all, an RSET instead. */
    start_fake(fx, "{\"extensions\":[\"8BITMIME\",\"ENHANCEDSTATUSCODES\"],"
                   "\"rules\":[{\"match\":\"^RCPT TO:<bad\","
                   "\"reply\":\"550 5.1.1 User unknown\"}]}");
    START_SVC(fx, "--pool-workers", "1");
    send_all_rejected(fx);
    assert_int_equal(wire_count(fx->peer, "DATA"), 0);
    assert_int_equal(wire_count(fx->peer, "RSET"), 1);
}

static void test_all_rejected_pipelined_data_is_refused_and_no_body_sent(
    void **state)
{
    struct fx *fx = *state;
    /* With PIPELINING, DATA goes in the same write as the RCPTs (RFC 2920
       3.1); the server refuses it (554) and no body follows. */
    start_fake(fx, "{\"rules\":[{\"match\":\"^RCPT TO:<bad\","
                   "\"reply\":\"550 5.1.1 User unknown\"}]}");
    START_SVC(fx, "--pool-workers", "1");
    send_all_rejected(fx);
    assert_true(wire_count(fx->peer, "DATA") <= 1);
    size_t len = 0;
    char *out = peer_conn_sent(fx->peer, 1, &len);
    assert_non_null(out);
    assert_null(strstr(out, "\r\n354 "));
    free(out);
}

static void test_421_at_mail_is_retried_on_a_fresh_connection_once(
    void **state)
{
    struct fx *fx = *state;
    struct peer_msg *m;
    size_t n;
    /* The first connection answers MAIL with 421 and stays open: the
       service must drop it itself and go again on a new one. */
    start_fake(fx, "{\"rules\":[{\"match\":\"^MAIL\",\"conn\":1,"
                   "\"reply\":\"421 4.7.0 fake.test busy, try later\"}]}");
    START_SVC(fx, "--pool-workers", "1", "--pool-retry-backoff-ms", "50");
    json_t *j = send_simple(fx, "after-421");
    assert_int_equal(jint(j, "code"), 250);
    assert_string_equal(jstr(j, "status"), "sent");
    assert_true(jint(j, "attempts") >= 2);
    json_decref(j);
    assert_int_equal(peer_wait_messages(fx->peer, 1, 5000), 1);
    sleep_ms(200);
    assert_int_equal(peer_messages(fx->peer, &m, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(count_subject(m, n, "after-421"), 1);
    assert_true(m[0].conn >= 2);
    peer_msgs_free(m, n);
    /* Connection 1 carried no message bytes (DATA may have been pipelined
       behind MAIL; the fake refuses it without a MAIL). */
    size_t len = 0;
    char *c1 = peer_conn_bytes(fx->peer, 1, &len);
    assert_non_null(c1);
    assert_null(strstr(c1, "Subject: after-421"));
    free(c1);
    assert_int_equal(wire_count(fx->peer, "MAIL FROM:"), 2);
}

static void test_idle_pooled_connection_closed_by_server_loses_nothing(
    void **state)
{
    struct fx *fx = *state;
    struct peer_msg *m;
    size_t n;
    static const char *const sink_args[] = { "-t", "1", NULL };
    /* smtp-sink -t 1 hangs up on a client idle for a second: the relay's
       idle timeout closes the connection sitting in the pool. */
    fx->peer = peer_start_sink(sink_args);
    assert_non_null(fx->peer);
    START_SVC(fx, "--pool-workers", "1", "--pool-connections", "1",
              "--pool-idle-timeout", "60");
    json_t *j = send_simple(fx, "idle-1");
    assert_string_equal(jstr(j, "status"), "sent");
    json_decref(j);
    sleep_ms(1800);             /* the sink has closed the idle connection */
    j = send_simple(fx, "idle-2");
    assert_string_equal(jstr(j, "status"), "sent");
    assert_int_equal(jint(j, "code"), 250);
    json_decref(j);
    assert_int_equal(peer_wait_messages(fx->peer, 2, 5000), 2);
    sleep_ms(300);              /* a resent copy would show up here */
    assert_int_equal(peer_messages(fx->peer, &m, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(count_subject(m, n, "idle-1"), 1);
    assert_int_equal(count_subject(m, n, "idle-2"), 1);
    peer_msgs_free(m, n);
    /* The scenario happened: the first connection was replaced. */
    struct http_resp r;
    get(fx, "/metrics", &r);
    expect_status(&r, 200);
    assert_true(sample(r.body, "mailpool_pool_connections_opened_total") == 2);
    http_resp_free(&r);
}

static void test_drop_after_final_dot_is_unknown_and_never_resent(
    void **state)
{
    struct fx *fx = *state;
    struct peer_msg *m;
    size_t n;
    start_fake(fx, "{\"rules\":[{\"match\":\"DOT\",\"conn\":1,"
                   "\"action\":\"drop\"}]}");
    START_SVC(fx, "--pool-workers", "1", "--pool-retries", "3",
              "--pool-retry-backoff-ms", "20");
    json_t *j = send_simple(fx, "maybe-sent");
    assert_string_equal(jstr(j, "status"), "unknown");
    assert_int_equal(jint(j, "attempts"), 1);
    json_decref(j);
    /* The next message goes out on a new connection; the first is not
       resent along with it. */
    j = send_simple(fx, "surely-sent");
    assert_string_equal(jstr(j, "status"), "sent");
    json_decref(j);
    sleep_ms(300);
    assert_int_equal(peer_messages(fx->peer, &m, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(count_subject(m, n, "surely-sent"), 1);
    peer_msgs_free(m, n);
    assert_int_equal(conn_count(fx->peer, 1, "DATA"), 1);
    assert_int_equal(wire_count(fx->peer, "DATA"), 2);
    assert_int_equal(peer_conn_count(fx->peer), 2);
}

static void test_421_reply_to_final_dot_is_a_refusal_and_is_retried(
    void **state)
{
    struct fx *fx = *state;
    struct peer_msg *m;
    size_t n;
    /* Unlike silence after the dot, a 421 reply says the relay did not
       take the message: server/retry.h retries it (421 anywhere), so it
       arrives exactly once, on the second connection. */
    start_fake(fx, "{\"rules\":[{\"match\":\"DOT\",\"conn\":1,"
                   "\"reply\":\"421 4.3.0 fake.test shutting down\"}]}");
    START_SVC(fx, "--pool-workers", "1", "--pool-retry-backoff-ms", "20");
    json_t *j = send_simple(fx, "dot-421");
    assert_string_equal(jstr(j, "status"), "sent");
    assert_int_equal(jint(j, "attempts"), 2);
    json_decref(j);
    sleep_ms(200);
    assert_int_equal(peer_messages(fx->peer, &m, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(m[0].conn, 2);
    peer_msgs_free(m, n);
    assert_int_equal(peer_conn_count(fx->peer), 2);
}

static void test_5xx_at_mail_fails_at_once_without_retry(void **state)
{
    struct fx *fx = *state;
    start_fake(fx, "{\"rules\":[{\"match\":\"^MAIL\","
                   "\"reply\":\"553 5.7.1 sender refused\"}]}");
    START_SVC(fx, "--pool-workers", "1", "--pool-retries", "3",
              "--pool-retry-backoff-ms", "20");
    json_t *j = send_simple(fx, "refused");
    assert_int_equal(jint(j, "code"), 553);
    assert_string_equal(jstr(j, "status"), "failed");
    assert_string_equal(jstr(j, "enhanced"), "5.7.1");
    assert_int_equal(jint(j, "attempts"), 1);
    json_decref(j);
    sleep_ms(100);
    assert_int_equal(wire_count(fx->peer, "MAIL FROM:"), 1);
    assert_false(wire_has(fx->peer, "Subject: refused"));
    assert_int_equal(peer_wait_messages(fx->peer, 1, 100), 0);
}

static void test_unreachable_relay_is_502_problem_naming_the_cause(
    void **state)
{
    struct fx *fx = *state;
    struct http_resp r;
    int dead = mpserve_free_port();  /* nothing listens there */
    assert_true(dead > 0);
    start_svc_at(fx, dead, (const char *const[]){
                     "--pool-retries", "1", "--pool-retry-backoff-ms", "20",
                     NULL });
    char *body = simple_json("nowhere");
    post(fx, "/v1/messages", body, &r);
    free(body);
    json_t *p = expect_problem(&r, 502);
    const char *detail = jstr(p, "detail");
    if (strcasestr(detail, "refused") == NULL &&
        strcasestr(detail, "connect") == NULL)
        fail_msg("502 detail does not name the cause: %s", detail);
    assert_int_equal(jint(p, "status"), 502);
    assert_int_equal(jint(p, "attempts"), 2);   /* 1 + --pool-retries 1 */
    json_decref(p);
    http_resp_free(&r);
    get(fx, "/readyz", &r);         /* no relay: not ready, but alive */
    expect_status(&r, 503);
    http_resp_free(&r);
    get(fx, "/healthz", &r);
    expect_status(&r, 200);
    http_resp_free(&r);
}

static void test_full_queue_answers_503_retry_after_and_loses_nothing(
    void **state)
{
    struct fx *fx = *state;
    struct peer_msg *m;
    size_t n;
    enum { N = 6 };
    struct call calls[N];
    int ok = 0, full = 0;
    memset(calls, 0, sizeof calls);
    start_fake(fx, "{\"rules\":[{\"match\":\"DOT\",\"action\":\"delay:1\"}]}");
    START_SVC(fx, "--pool-workers", "1", "--pool-connections", "1",
              "--pool-queue", "1");
    calls_start(calls, N, fx, "queue");
    calls_join(calls, N);
    assert_int_equal(peer_messages(fx->peer, &m, &n), 0);
    for (int i = 0; i < N; i++) {
        char subject[32];
        struct http_resp *r = &calls[i].r;
        snprintf(subject, sizeof subject, "queue-%d", i);
        if (r->status == 200) {
            json_t *j = resp_json(r);
            assert_string_equal(jstr(j, "status"), "sent");
            json_decref(j);
            assert_int_equal(count_subject(m, n, subject), 1);
            ok++;
        } else {
            json_t *p = expect_problem(r, 503);
            char *ra = http_resp_header(r, "Retry-After");
            assert_non_null(ra);
            assert_string_equal(ra, "1");
            free(ra);
            json_decref(p);
            assert_int_equal(count_subject(m, n, subject), 0);
            full++;
        }
        http_resp_free(r);
    }
    assert_true(full >= 1);
    assert_true(ok >= 1);
    assert_int_equal((int)n, ok);
    peer_msgs_free(m, n);
    sleep_ms(300);              /* nothing turns up late either */
    assert_int_equal(peer_wait_messages(fx->peer, (size_t)ok + 1, 100), ok);
}

static void test_client_hanging_up_mid_flight_breaks_nothing(void **state)
{
    struct fx *fx = *state;
    struct peer_msg *m;
    size_t n;
    char url[256];
    static const char *const ct[] = { "Content-Type: application/json",
                                      NULL };
    start_fake(fx, "{\"rules\":[{\"match\":\"DOT\",\"conn\":1,"
                   "\"action\":\"delay:1\"}]}");
    START_SVC(fx, "--pool-workers", "2");
    /* The client gives up 300 ms in, while the relay sits on the dot. */
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, ct[0]);
    char *body = simple_json("abandoned");
    assert_non_null(c);
    url_of(fx, "/v1/messages", url, sizeof url);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 300L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    assert_int_equal(curl_easy_perform(c), CURLE_OPERATION_TIMEDOUT);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    free(body);
    /* The message still completes, once; the service carries on. */
    assert_int_equal(peer_wait_messages(fx->peer, 1, 5000), 1);
    json_t *j = send_simple(fx, "after-hang-up");
    assert_string_equal(jstr(j, "status"), "sent");
    json_decref(j);
    sleep_ms(200);
    assert_int_equal(peer_messages(fx->peer, &m, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(count_subject(m, n, "abandoned"), 1);
    assert_int_equal(count_subject(m, n, "after-hang-up"), 1);
    peer_msgs_free(m, n);
    assert_int_equal(mpserve_stop(fx->svc, STOP_MS), 0);
}

/* ---- Tests: queries ---- */

static void test_verify_expand_help_answer_code_and_reply_lines(void **state)
{
    struct fx *fx = *state;
    struct http_resp r;
    start_fake(fx, "{\"rules\":["
                   "{\"match\":\"^VRFY fred\",\"reply\":\"250-2.1.5 Fred "
                   "Smith\\n250 2.1.5 <fred@example.org>\"},"
                   "{\"match\":\"^EXPN staff\",\"reply\":\"250-Alice "
                   "<alice@example.org>\\n250-Bob <bob@example.org>\\n250 "
                   "Carol <carol@example.org>\"},"
                   "{\"match\":\"^HELP MAIL\",\"reply\":\"214-MAIL "
                   "FROM:<sender>\\n214 End of HELP info\"}]}");
    START_SVC(fx, "--pool-workers", "1");
    static const struct {
        const char *path, *body;
        long long code;
        const char *lines[4];
    } cases[] = {
        { "/v1/verify", "{\"address\":\"fred\"}", 250,
          { "2.1.5 Fred Smith", "2.1.5 <fred@example.org>" } },
        { "/v1/expand", "{\"list\":\"staff\"}", 250,
          { "Alice <alice@example.org>", "Bob <bob@example.org>",
            "Carol <carol@example.org>" } },
        { "/v1/help", "{\"topic\":\"MAIL\"}", 214,
          { "MAIL FROM:<sender>", "End of HELP info" } },
        { "/v1/help", "{}", 214,
          { "2.0.0 Commands:", "EHLO HELO MAIL RCPT DATA RSET NOOP VRFY "
                               "EXPN HELP QUIT STARTTLS" } },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        post(fx, cases[i].path, cases[i].body, &r);
        expect_status(&r, 200);
        json_t *j = resp_json(&r);
        assert_int_equal(jint(j, "code"), cases[i].code);
        json_t *text = json_object_get(j, "text");
        size_t nl = 0;
        while (nl < 4 && cases[i].lines[nl] != NULL)
            nl++;
        if (json_array_size(text) != nl)
            fail_msg("%s: %zu lines, want %zu: %s", cases[i].path,
                     json_array_size(text), nl, r.body);
        for (size_t k = 0; k < nl; k++)
            assert_string_equal(json_string_value(json_array_get(text, k)),
                                cases[i].lines[k]);
        json_decref(j);
        http_resp_free(&r);
    }
    assert_int_equal(wire_count(fx->peer, "VRFY fred\r\n"), 1);
    assert_int_equal(wire_count(fx->peer, "EXPN staff\r\n"), 1);
    assert_int_equal(wire_count(fx->peer, "HELP MAIL\r\n"), 1);
    assert_int_equal(wire_count(fx->peer, "HELP\r\n"), 1);
    assert_int_equal(wire_count(fx->peer, "MAIL FROM:"), 0);
}

/* ---- Tests: the process ---- */

static void test_sigterm_drains_in_flight_messages_and_exits_0(void **state)
{
    struct fx *fx = *state;
    struct http_resp r;
    struct peer_msg *m;
    size_t n;
    enum { N = 5 };
    struct call calls[N];
    memset(calls, 0, sizeof calls);
    start_fake(fx, "{\"rules\":[{\"match\":\"DOT\",\"action\":\"delay:1\"}]}");
    START_SVC(fx, "--pool-workers", "8", "--pool-connections", "8",
              "--pool-drain-timeout", "10");
    calls_start(calls, N, fx, "drain");
    /* In flight: all five final dots are at the relay, no reply yet. */
    double end = now_s() + 5;
    while (wire_dots(fx->peer) < N && now_s() < end)
        sleep_ms(10);
    assert_int_equal(wire_dots(fx->peer), N);
    assert_int_equal(peer_wait_messages(fx->peer, 1, 0), 0);
    double t0 = now_s();
    assert_int_equal(mpserve_signal(fx->svc, SIGTERM), 0);
    sleep_ms(100);
    /* While draining: not ready, and new work is refused with 503. */
    get(fx, "/readyz", &r);
    expect_status(&r, 503);
    json_t *j = resp_json(&r);
    assert_string_equal(jstr(j, "status"), "draining");
    json_decref(j);
    http_resp_free(&r);
    char *late = simple_json("too-late");
    post(fx, "/v1/messages", late, &r);
    free(late);
    json_t *p = expect_problem(&r, 503);
    char *ra = http_resp_header(&r, "Retry-After");
    assert_non_null(ra);
    free(ra);
    json_decref(p);
    http_resp_free(&r);

    calls_join(calls, N);
    for (int i = 0; i < N; i++) {
        expect_status(&calls[i].r, 200);
        j = resp_json(&calls[i].r);
        assert_string_equal(jstr(j, "status"), "sent");
        json_decref(j);
        http_resp_free(&calls[i].r);
    }
    int rc = mpserve_wait(fx->svc, 10000);
    assert_int_equal(rc, 0);
    assert_true(now_s() - t0 < 10);
    assert_int_equal(peer_messages(fx->peer, &m, &n), 0);
    assert_int_equal(n, N);
    for (int i = 0; i < N; i++) {
        char subject[32];
        snprintf(subject, sizeof subject, "drain-%d", i);
        assert_int_equal(count_subject(m, n, subject), 1);
    }
    assert_int_equal(count_subject(m, n, "too-late"), 0);
    peer_msgs_free(m, n);
    /* Every pooled connection was closed with QUIT. */
    assert_int_equal(wire_count(fx->peer, "QUIT"), peer_conn_count(fx->peer));
}

/* The value of the sample whose "name{labels}" is exactly key. */
static double sample(const char *text, const char *key)
{
    size_t klen = strlen(key);
    for (const char *l = text; l != NULL && *l != '\0';) {
        if (strncmp(l, key, klen) == 0 && l[klen] == ' ')
            return strtod(l + klen + 1, NULL);
        l = strchr(l, '\n');
        if (l != NULL)
            l++;
    }
    fail_msg("no sample %s in /metrics", key);
    return 0;
}

/* Every line is a comment or a sample of the text format 0.0.4, and each
   sample follows a # TYPE of its family. */
static void check_exposition(const char *text)
{
    static const char name[] = "[a-zA-Z_:][a-zA-Z0-9_:]*";
    static const char label[] = "[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\\n]|\\\\.)*\"";
    static const char value[] =
        "(-?[0-9]+(\\.[0-9]*)?([eE][-+]?[0-9]+)?|[-+]?Inf|NaN)";
    char pat[1024], typed[64][128];
    size_t ntyped = 0;
    regex_t sample_re, type_re, help_re;
    snprintf(pat, sizeof pat, "^(%s)(\\{(%s(,%s)*,?)?\\})? %s( -?[0-9]+)?$",
             name, label, label, value);
    assert_int_equal(regcomp(&sample_re, pat, REG_EXTENDED), 0);
    snprintf(pat, sizeof pat,
             "^# TYPE (%s) (counter|gauge|histogram|summary|untyped)$", name);
    assert_int_equal(regcomp(&type_re, pat, REG_EXTENDED), 0);
    snprintf(pat, sizeof pat, "^# HELP %s .*$", name);
    assert_int_equal(regcomp(&help_re, pat, REG_EXTENDED), 0);
    char *copy = strdup(text), *save = NULL;
    assert_non_null(copy);
    for (char *l = strtok_r(copy, "\n", &save); l != NULL;
         l = strtok_r(NULL, "\n", &save)) {
        regmatch_t mt[2];
        if (strncmp(l, "# TYPE ", 7) == 0) {
            if (regexec(&type_re, l, 2, mt, 0) != 0)
                fail_msg("bad TYPE line: %s", l);
            assert_true(ntyped < 64);
            snprintf(typed[ntyped++], sizeof typed[0], "%.*s",
                     (int)(mt[1].rm_eo - mt[1].rm_so), l + mt[1].rm_so);
        } else if (strncmp(l, "# HELP ", 7) == 0) {
            if (regexec(&help_re, l, 0, NULL, 0) != 0)
                fail_msg("bad HELP line: %s", l);
        } else if (l[0] != '#') {
            if (regexec(&sample_re, l, 2, mt, 0) != 0)
                fail_msg("not a Prometheus sample line: %s", l);
            char sname[128];
            int found = 0;
            snprintf(sname, sizeof sname, "%.*s",
                     (int)(mt[1].rm_eo - mt[1].rm_so), l + mt[1].rm_so);
            for (size_t i = 0; i < ntyped && !found; i++) {
                static const char *const sfx[] = { "", "_bucket", "_sum",
                                                   "_count" };
                for (size_t k = 0; k < 4 && !found; k++) {
                    char want[160];
                    snprintf(want, sizeof want, "%s%s", typed[i], sfx[k]);
                    found = strcmp(sname, want) == 0;
                }
            }
            if (!found)
                fail_msg("sample without a # TYPE before it: %s", l);
        }
    }
    free(copy);
    regfree(&sample_re);
    regfree(&type_re);
    regfree(&help_re);
}

/* A histogram's buckets are cumulative and +Inf equals _count. */
/* Checks one histogram series: buckets cumulative, +Inf == _count, a
   _sum.  label is "" or one label pair with its comma
   ("route=\"/v1/messages\","). */
static void check_histogram(const char *text, const char *family,
                            const char *label)
{
    char key[200], head[200];
    double prev = 0, inf, count;
    size_t hlen, llen = strlen(label);
    int buckets = 0;
    snprintf(head, sizeof head, "%s_bucket{%sle=\"", family, label);
    hlen = strlen(head);
    for (const char *l = text; l != NULL && *l != '\0';) {
        if (strncmp(l, head, hlen) == 0) {
            const char *sp = strchr(l, ' ');
            double v = strtod(sp + 1, NULL);
            assert_true(v >= prev);
            prev = v;
            buckets++;
        }
        l = strchr(l, '\n');
        if (l != NULL)
            l++;
    }
    assert_true(buckets >= 2);
    snprintf(key, sizeof key, "%s_bucket{%sle=\"+Inf\"}", family, label);
    inf = sample(text, key);
    if (llen == 0)
        snprintf(key, sizeof key, "%s_count", family);
    else
        snprintf(key, sizeof key, "%s_count{%.*s}", family, (int)llen - 1,
                 label);
    count = sample(text, key);
    assert_true(inf == count);
    if (llen == 0)
        snprintf(key, sizeof key, "%s_sum", family);
    else
        snprintf(key, sizeof key, "%s_sum{%.*s}", family, (int)llen - 1,
                 label);
    assert_true(sample(text, key) >= 0);
}

static void test_metrics_parse_as_prometheus_text_and_count_sent(
    void **state)
{
    struct fx *fx = *state;
    struct http_resp r;
    start_fake(fx, "{\"rules\":[{\"match\":\"^RCPT TO:<bad\","
                   "\"reply\":\"550 5.1.1 no\"}]}");
    START_SVC(fx, "--pool-workers", "2");
    for (int i = 0; i < 3; i++) {
        char subject[32];
        snprintf(subject, sizeof subject, "metric-%d", i);
        json_decref(send_simple(fx, subject));
    }
    static const char *const bad[] = { "bad@example.net", NULL };
    char *body = message_json("sender@example.com", bad, "x", "y");
    post(fx, "/v1/messages", body, &r);     /* 700 rejected */
    free(body);
    expect_status(&r, 200);
    http_resp_free(&r);
    post(fx, "/v1/messages", "{\"to\":[]}", &r);    /* 422 */
    expect_status(&r, 422);
    http_resp_free(&r);
    sleep_ms(100);              /* request counters land at completion */

    get(fx, "/metrics", &r);
    expect_status(&r, 200);
    char *ct = http_resp_header(&r, "Content-Type");
    assert_non_null(ct);
    assert_int_equal(strncmp(ct, "text/plain", 10), 0);
    free(ct);
    const char *text = r.body;
    assert_non_null(text);
    check_exposition(text);
    assert_null(strchr(text, '@'));         /* never an address */
    assert_true(sample(text, "mailpool_messages_total{status=\"sent\"}") == 3);
    assert_true(sample(text,
                       "mailpool_messages_total{status=\"rejected\"}") == 1);
    assert_true(sample(text, "mailpool_http_requests_total{route=\"/v1/"
                             "messages\",status=\"200\"}") == 4);
    assert_true(sample(text, "mailpool_http_requests_total{route=\"/v1/"
                             "messages\",status=\"422\"}") == 1);
    check_histogram(text, "mailpool_http_request_duration_seconds",
                    "route=\"/v1/messages\",");
    assert_true(sample(text, "mailpool_http_request_duration_seconds_count"
                             "{route=\"/v1/messages\"}") == 5);
    check_histogram(text, "mailpool_job_wait_seconds", "");
    check_histogram(text, "mailpool_smtp_transaction_duration_seconds", "");
    assert_true(sample(text, "mailpool_job_wait_seconds_count") == 4);
    assert_true(sample(text, "mailpool_smtp_transaction_duration_seconds_"
                             "count") == 4);
    http_resp_free(&r);
}

static void test_request_log_one_line_per_request_no_body_key_or_address(
    void **state)
{
    struct fx *fx = *state;
    struct http_resp r;
    char url[256];
    static const char *const hdrs[] = {
        "Content-Type: application/json",
        "Authorization: Bearer key-9f27c1e5a3d4", NULL
    };
    static const char *const to[] = { "rcpt@example.net", NULL };
    start_fake(fx, "{}");
    /* Keys come from the environment (no flag: it would show in ps). */
    assert_int_equal(setenv("MAILPOOL_HTTP_API_KEYS", "key-9f27c1e5a3d4", 1),
                     0);
    START_SVC(fx, "--pool-workers", "1");
    unsetenv("MAILPOOL_HTTP_API_KEYS");
    char *body = message_json("sender@example.com", to, "logged subject",
                              "secret-body-5d1c0b");
    url_of(fx, "/v1/messages", url, sizeof url);
    assert_int_equal(http_req("POST", url, hdrs, body, &r), 0);
    free(body);
    expect_status(&r, 200);
    char *rid = http_resp_header(&r, "X-Request-Id");
    assert_non_null(rid);
    http_resp_free(&r);
    /* A refused one (422 naming the bad address) and a GET. */
    assert_int_equal(http_req("POST", url, hdrs,
                              "{\"from\":\"sender@example.com\",\"to\":"
                              "[\"rcpt@@example.net\"]}", &r), 0);
    expect_status(&r, 422);
    http_resp_free(&r);
    get(fx, "/healthz", &r);
    expect_status(&r, 200);
    http_resp_free(&r);
    assert_int_equal(peer_wait_messages(fx->peer, 1, 5000), 1);

    char *log = NULL;
    int nreq = 0, nposts = 0, nsmtp = 0, found = 0;
    for (double end = now_s() + 3; now_s() < end; sleep_ms(50)) {
        free(log);
        log = mpserve_log(fx->svc, NULL);
        assert_non_null(log);
        const char *q = log;
        nreq = 0;
        while ((q = strstr(q, "\"event\":\"request\"")) != NULL) {
            nreq++;
            q++;
        }
        if (nreq >= 4)          /* 3 + mpserve's /healthz probe(s) */
            break;
    }
    assert_null(strstr(log, "secret-body"));
    assert_null(strstr(log, "key-9f27c1e5a3d4"));
    assert_null(strstr(log, "sender@"));
    assert_null(strstr(log, "rcpt@"));
    assert_null(strstr(log, "example.net"));
    assert_null(strstr(log, "logged subject"));
    char *save = NULL;
    nreq = 0;
    for (char *l = strtok_r(log, "\n", &save); l != NULL;
         l = strtok_r(NULL, "\n", &save)) {
        json_error_t e;
        json_t *o = json_loads(l, 0, &e), *v;
        const char *key;
        if (!json_is_object(o))
            fail_msg("log line is not a JSON object: %s", l);
        /* '@' only inside a Message-ID (RFC 5322 msg-id has one). */
        json_object_foreach(o, key, v) {
            if (json_is_string(v) && strcmp(key, "message_id") != 0 &&
                strchr(json_string_value(v), '@') != NULL)
                fail_msg("'@' in log field %s: %s", key, l);
        }
        const char *ev = json_string_value(json_object_get(o, "event"));
        if (ev != NULL && strcmp(ev, "request") == 0) {
            nreq++;
            nposts += strcmp(jstr(o, "route"), "/v1/messages") == 0;
            assert_non_null(json_string_value(json_object_get(o,
                                                              "request_id")));
            assert_true(json_is_integer(json_object_get(o, "status")));
            if (strcmp(jstr(o, "request_id"), rid) == 0) {
                found++;
                assert_int_equal(jint(o, "status"), 200);
                assert_string_equal(jstr(o, "route"), "/v1/messages");
            }
        }
        if (ev != NULL && strcmp(ev, "smtp") == 0) {  /* the transaction */
            assert_string_equal(jstr(o, "request_id"), rid);
            assert_string_equal(jstr(o, "status"), "sent");
            assert_int_equal(jint(o, "code"), 250);
            nsmtp++;
        }
        json_decref(o);
    }
    assert_int_equal(found, 1);
    assert_int_equal(nsmtp, 1);
    assert_int_equal(nposts, 2);
    /* The two POSTs, our GET and mpserve's readiness probe(s). */
    assert_true(nreq >= 4);
    free(log);
    free(rid);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_one_message_is_sent_and_reaches_the_relay_once),
        T(test_header_pairs_keep_order_lines_join_crlf_raw_is_verbatim),
        T(test_batch_of_20_answers_in_input_order_delivers_each_once),
        T(test_partial_rejection_is_700_with_losers_and_delivers_winner),
        T(test_all_rejected_is_700_rejected_and_sends_no_data),
        T(test_all_rejected_pipelined_data_is_refused_and_no_body_sent),
        T(test_421_at_mail_is_retried_on_a_fresh_connection_once),
        T(test_idle_pooled_connection_closed_by_server_loses_nothing),
        T(test_drop_after_final_dot_is_unknown_and_never_resent),
        T(test_421_reply_to_final_dot_is_a_refusal_and_is_retried),
        T(test_5xx_at_mail_fails_at_once_without_retry),
        T(test_unreachable_relay_is_502_problem_naming_the_cause),
        T(test_full_queue_answers_503_retry_after_and_loses_nothing),
        T(test_client_hanging_up_mid_flight_breaks_nothing),
        T(test_verify_expand_help_answer_code_and_reply_lines),
        T(test_sigterm_drains_in_flight_messages_and_exits_0),
        T(test_metrics_parse_as_prometheus_text_and_count_sent),
        T(test_request_log_one_line_per_request_no_body_key_or_address),
    };
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
