/*
 * tests/support/errors_fx.h - what the tests of the requests the service
 * must refuse share (tests/integration/test_service_errors.c: the
 * problem+json table, bearer keys, /openapi.json, a bad configuration;
 * test_service_limits.c: the body and in-flight limits), on top of
 * service_fx.h's fixture: a correct fake relay and the service started
 * together, requests that fail the test when no HTTP answer came, status
 * and RFC 9457 problem checks naming the case, and the check that nothing
 * reached the relay.  Header-only (static inline).
 */
#ifndef TESTS_SUPPORT_ERRORS_FX_H
#define TESTS_SUPPORT_ERRORS_FX_H

#include "tests/support/service_fx.h"

static const char *const JSON_CT[] = { "Content-Type: application/json", NULL };

/* A correct fake relay and the service in front of it; extra flags. */
static inline void start_both(struct fx *fx, const char *const *extra)
{
    fx->peer = peer_start_fake("{}");
    assert_non_null(fx->peer);
    fx->svc = mpserve_start(peer_port(fx->peer), extra);
    assert_non_null(fx->svc);
}

#define START(fx, ...) \
    start_both((fx), (const char *const[]){ __VA_ARGS__, NULL })

/* One request (chunked: the body sent chunked); fails the test when no
   HTTP answer came. */
static inline void http_call(const char *method, const char *url,
                             const char *const *headers, const char *body,
                             int chunked, struct http_resp *r)
{
    if (http_request(method, url, headers, body, chunked, r) < 0)
        fail_msg("%s %s: %s", method, url, r->err);
}

/* One request to the service's path. */
static inline void call(const struct fx *fx, const char *method,
                        const char *path, const char *const *headers,
                        const char *body, struct http_resp *r)
{
    char url[256];
    snprintf(url, sizeof url, "%s%s", mpserve_url(fx->svc), path);
    http_call(method, url, headers, body, 0, r);
}

/* Asserts the HTTP status; the message names what was asked. */
static inline void check_status(const struct http_resp *r, long status,
                                const char *what)
{
    if (r->status != status)
        fail_msg("%s: expected HTTP %ld, got %ld: %.500s", what, status,
                 r->status, r->body != NULL ? r->body : "");
}

/* An RFC 9457 problem of this status, as application/problem+json with
   type, title, status, detail and errors; returns the document. */
static inline json_t *check_problem(const struct http_resp *r, long status,
                                    const char *what)
{
    check_status(r, status, what);
    char *ct = http_resp_header(r, "Content-Type");
    if (ct == NULL || strcmp(ct, "application/problem+json") != 0)
        fail_msg("%s: Content-Type %s", what, ct != NULL ? ct : "(none)");
    free(ct);
    json_t *p = resp_json(r);
    assert_true(json_is_string(json_object_get(p, "type")));
    assert_true(json_is_string(json_object_get(p, "title")));
    assert_true(json_is_string(json_object_get(p, "detail")));
    assert_int_equal(json_integer_value(json_object_get(p, "status")), status);
    assert_true(json_is_array(json_object_get(p, "errors")));
    return p;
}

/* Asserts that no transaction reached the relay. */
static inline void expect_nothing_sent(struct peer *p)
{
    int n = peer_conn_count(p);
    for (int i = 1; i <= n; i++) {
        size_t len = 0;
        char *b = peer_conn_bytes(p, i, &len);
        if (b != NULL &&
            (strstr(b, "MAIL FROM:") != NULL || strstr(b, "VRFY") != NULL))
            fail_msg("the relay got a transaction on connection %d:\n%s", i, b);
        free(b);
    }
    assert_int_equal(peer_wait_messages(p, 1, 200), 0);
}

/* The cmocka run of a refusal test file: SIGPIPE ignored, libcurl set up
   around it. */
static inline int run_refusal_tests(const struct CMUnitTest *tests, size_t n)
{
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    int rc = _cmocka_run_group_tests("tests", tests, n, NULL, NULL);
    curl_global_cleanup();
    return rc;
}

#endif /* TESTS_SUPPORT_ERRORS_FX_H */
