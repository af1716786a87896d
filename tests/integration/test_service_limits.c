/*
 * test_service_limits.c - the service's limits on what a request may hold,
 * over real HTTP: 413 decided from Content-Length before the body is read
 * and enforced on chunked bodies, a body of exactly http.max_body taken and
 * one byte more refused, and http.max_inflight (the request bytes held at
 * once) answered 503 with Retry-After and given back when a request ends.
 * The other refusals are in test_service_errors.c.
 *
 * Each test starts its own SMTP peer and `mailpool serve` and checks what
 * crossed the wire at both ends; the fixture is tests/support/errors_fx.h.
 */
#include "tests/support/errors_fx.h"

/* ---- Body limits ---- */

static void test_content_length_over_max_body_is_413_before_body_is_read(
    void **state)
{
    struct fx *fx = *state;
    char *resp = NULL;
    /* Headers only: the 2000 announced bytes are never sent.  A server that
       waited for them would answer nothing within the 3 s. */
    static const char req[] = "POST /v1/messages HTTP/1.1\r\n"
                              "Host: 127.0.0.1\r\n"
                              "Content-Type: application/json\r\n"
                              "Content-Length: 2000\r\n"
                              "\r\n";
    START(fx, "--http-max-body", "1k");
    int code = mpserve_raw_http(mpserve_port(fx->svc), req, sizeof req - 1,
                                3000, &resp);
    assert_non_null(resp);
    if (code != 413)
        fail_msg("expected 413 before the body, got %d:\n%s", code, resp);
    assert_non_null(strcasestr(resp, "\r\nContent-Type: application/"
                                     "problem+json\r\n"));
    const char *body = strstr(resp, "\r\n\r\n");
    assert_non_null(body);
    json_t *p = json_loads(body + 4, JSON_DISABLE_EOF_CHECK, NULL);
    assert_non_null(p);
    assert_int_equal(json_integer_value(json_object_get(p, "status")), 413);
    json_decref(p);
    free(resp);
    /* An absurd Content-Length is the same 413, not a crash. */
    static const char huge[] = "POST /v1/messages HTTP/1.1\r\n"
                               "Host: 127.0.0.1\r\n"
                               "Content-Type: application/json\r\n"
                               "Content-Length: 99999999999999999999999\r\n"
                               "\r\n";
    code = mpserve_raw_http(mpserve_port(fx->svc), huge, sizeof huge - 1, 3000,
                            &resp);
    assert_true(code == 413 || code == 400);
    free(resp);
    expect_nothing_sent(fx->peer);
}

/* A message request of exactly size bytes (size >= 100). */
static char *message_of_size(size_t size, const char *subject)
{
    char head[160];
    int n = snprintf(head, sizeof head,
                     "{\"from\":\"sender@example.com\",\"to\":"
                     "[\"rcpt@example.net\"],\"headers\":{\"Subject\":\"%s\"},"
                     "\"body\":\"",
                     subject);
    assert_true(n > 0 && (size_t)n + 2 < size);
    char *s = malloc(size + 1);
    assert_non_null(s);
    memcpy(s, head, (size_t)n);
    memset(s + n, 'x', size - (size_t)n - 2);
    memcpy(s + size - 2, "\"}", 3);
    return s;
}

static void test_chunked_body_over_max_body_is_413(void **state)
{
    struct fx *fx = *state;
    struct http_resp r;
    char url[256];
    START(fx, "--http-max-body", "1k");
    snprintf(url, sizeof url, "%s/v1/messages", mpserve_url(fx->svc));
    char *big = message_of_size(3000, "chunked-too-big");
    http_call("POST", url, JSON_CT, big, 1, &r);
    free(big);
    json_t *p = check_problem(&r, 413, "chunked 3000 > 1k");
    json_decref(p);
    http_resp_free(&r);
    /* Chunked under the limit is read and sent. */
    char *small = message_of_size(900, "chunked-fits");
    http_call("POST", url, JSON_CT, small, 1, &r);
    free(small);
    check_status(&r, 200, "chunked 900 <= 1k");
    http_resp_free(&r);
    assert_int_equal(peer_wait_messages(fx->peer, 1, 5000), 1);
    sleep_ms(200);
    struct peer_msg *m;
    size_t n;
    assert_int_equal(peer_messages(fx->peer, &m, &n), 0);
    assert_int_equal(n, 1);
    assert_non_null(strstr((const char *)m[0].data, "Subject: chunked-fits"));
    peer_msgs_free(m, n);
}

static void test_body_of_exactly_max_body_is_accepted_one_more_is_413(
    void **state)
{
    struct fx *fx = *state;
    struct http_resp r;
    START(fx, "--http-max-body", "1k");
    char *at = message_of_size(1024, "at-the-limit");
    call(fx, "POST", "/v1/messages", JSON_CT, at, &r);
    free(at);
    check_status(&r, 200, "1024 bytes with max_body 1k");
    http_resp_free(&r);
    char *over = message_of_size(1025, "over-the-limit");
    call(fx, "POST", "/v1/messages", JSON_CT, over, &r);
    free(over);
    json_decref(check_problem(&r, 413, "1025 bytes with max_body 1k"));
    http_resp_free(&r);
    assert_int_equal(peer_wait_messages(fx->peer, 1, 5000), 1);
    sleep_ms(200);
    assert_int_equal(peer_wait_messages(fx->peer, 2, 0), 1);
}

/* http.max_inflight bounds the request bytes held at once (bodies being
   read, and messages waiting for the relay): past it a POST is a 503 with
   Retry-After, decided from Content-Length before the body is read, or
   while a chunked body comes; the budget comes back when a request ends. */
/* A message request of about size bytes whose body is 62-octet lines. */
static char *message_of_lines(size_t size, const char *subject)
{
    char *s = message_of_size(size, subject);
    char *b = strstr(s, "\"body\":\"") + 8;
    for (char *q = b + 62; q + 2 < s + size - 2; q += 64)
        memcpy(q, "\\n", 2);
    return s;
}

struct held_post {
    char url[256];
    char *body;
    struct http_resp r;
    int rc;
};

/* The held request's thread: one POST, its answer in h->r. */
static void *held_post_main(void *arg)
{
    struct held_post *h = arg;
    h->rc = http_request("POST", h->url, JSON_CT, h->body, 0, &h->r);
    return NULL;
}

/* The relay holds the first message 2 s at its final dot; the service in
   front of it has one worker, one connection and a 100k budget. */
static void start_held_relay(struct fx *fx)
{
    fx->peer = peer_start_fake("{\"rules\":[{\"match\":\"^DOT$\","
                               "\"conn\":1,\"times\":1,"
                               "\"action\":\"delay:2\"}]}");
    assert_non_null(fx->peer);
    fx->svc = mpserve_start(
        peer_port(fx->peer),
        (const char *const[]){ "--http-max-body", "64k", "--http-max-inflight",
                               "100k", "--pool-workers", "1",
                               "--pool-connections", "1", NULL });
    assert_non_null(fx->svc);
}

/* Asserts over, past the budget, is refused 503: by Content-Length (with
   Retry-After: 1), and chunked as the bytes come. */
static void expect_over_budget_refused(const struct fx *fx, const char *over)
{
    struct http_resp r;
    call(fx, "POST", "/v1/messages", JSON_CT, over, &r);
    json_decref(check_problem(&r, 503, "60000 more bytes with 60000 held"));
    char *ra = http_resp_header(&r, "Retry-After");
    assert_non_null(ra);
    assert_string_equal(ra, "1");
    free(ra);
    http_resp_free(&r);
    char url[256];
    snprintf(url, sizeof url, "%s/v1/messages", mpserve_url(fx->svc));
    http_call("POST", url, JSON_CT, over, 1, &r);
    json_decref(check_problem(&r, 503, "chunked past the budget"));
    http_resp_free(&r);
}

/* POSTs body; a 503 for the budget is tried again for a moment (the
   refused requests' bytes are given back when libmicrohttpd closes them,
   which can come just after their answers). */
static void post_within_budget(const struct fx *fx, const char *body,
                               struct http_resp *r)
{
    call(fx, "POST", "/v1/messages", JSON_CT, body, r);
    for (int i = 0; i < 20 && r->status == 503 && r->body != NULL &&
                    strstr(r->body, "http.max_inflight") != NULL;
         i++) {
        http_resp_free(r);
        sleep_ms(100);
        call(fx, "POST", "/v1/messages", JSON_CT, body, r);
    }
}

/* Asserts the relay got exactly n messages, none with the text absent. */
static void expect_messages_without(struct peer *peer, size_t n,
                                    const char *absent)
{
    assert_int_equal(peer_wait_messages(peer, n, 5000), n);
    sleep_ms(200);
    struct peer_msg *m;
    size_t got;
    assert_int_equal(peer_messages(peer, &m, &got), 0);
    assert_int_equal(got, n);
    for (size_t i = 0; i < got; i++)
        assert_null(strstr((const char *)m[i].data, absent));
    peer_msgs_free(m, got);
}

static void test_request_bytes_over_max_inflight_are_503_and_come_back(
    void **state)
{
    struct fx *fx = *state;
    struct http_resp r;
    struct held_post held;
    pthread_t th;
    start_held_relay(fx);
    snprintf(held.url, sizeof held.url, "%s/v1/messages", mpserve_url(fx->svc));
    held.body = message_of_lines(60000, "held");
    assert_int_equal(pthread_create(&th, NULL, held_post_main, &held), 0);
    sleep_ms(700);
    /* 60,000 held + 60,000 more > 100k: refused. */
    char *over = message_of_lines(60000, "over-budget");
    expect_over_budget_refused(fx, over);
    free(over);
    /* What still fits is taken (it waits behind the held one). */
    char *fits = message_of_lines(20000, "fits");
    post_within_budget(fx, fits, &r);
    free(fits);
    check_status(&r, 200, "20000 more bytes with 60000 held");
    http_resp_free(&r);

    assert_int_equal(pthread_join(th, NULL), 0);
    if (held.rc < 0)
        fail_msg("the held request got no answer: %s", held.r.err);
    check_status(&held.r, 200, "the held request");
    http_resp_free(&held.r);
    free(held.body);
    /* Everything was given back: 60,000 fits again. */
    char *after = message_of_lines(60000, "after");
    call(fx, "POST", "/v1/messages", JSON_CT, after, &r);
    free(after);
    check_status(&r, 200, "60000 bytes once the budget came back");
    http_resp_free(&r);
    expect_messages_without(fx->peer, 3, "over-budget");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_content_length_over_max_body_is_413_before_body_is_read),
        T(test_chunked_body_over_max_body_is_413),
        T(test_body_of_exactly_max_body_is_accepted_one_more_is_413),
        T(test_request_bytes_over_max_inflight_are_503_and_come_back),
    };
    return run_refusal_tests(tests, sizeof tests / sizeof tests[0]);
}
