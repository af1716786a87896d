/*
 * test_service_process.c - the whole service over real HTTP: `build/mailpool serve`
 * runs as a child process (tests/support/mpserve.h) in front of a real SMTP
 * peer (tests/support/peer.h: the scriptable fake, aiosmtpd, smtp-sink),
 * libcurl sends the requests, and every test checks both ends of the wire:
 * the HTTP status, headers and JSON body the client got, and what the SMTP
 * peer received (messages, MAIL/RCPT/DATA commands, connections).
 *
 * This file covers the queries (VRFY/EXPN/HELP) and the process: /readyz,
 * the SIGTERM drain, /metrics and the request log.  test_service.c covers
 * delivery and the pool; test_service_errors.c the request errors
 * (problem+json, 413, bearer keys), /openapi.json and bad configuration.
 * The fixture is tests/support/service_fx.h.
 *
 * Each test starts its own peer and service; the teardown stops both even
 * when an assertion failed, and fails the test unless the service exits 0
 * on SIGTERM.  Run from anywhere: the helpers find the binary and the
 * peers.  MPSERVE_KEEP=1 keeps the service's log directory, PEER_VERBOSE=1
 * prints the peer's.  $TMPDIR must be traversable by "nobody" when run as
 * root (smtp-sink drops to that user).
 */
#include "tests/support/service_fx.h"

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
        { "/v1/verify",
          "{\"address\":\"fred\"}",
          250,
          { "2.1.5 Fred Smith", "2.1.5 <fred@example.org>" } },
        { "/v1/expand",
          "{\"list\":\"staff\"}",
          250,
          { "Alice <alice@example.org>", "Bob <bob@example.org>",
            "Carol <carol@example.org>" } },
        { "/v1/help",
          "{\"topic\":\"MAIL\"}",
          214,
          { "MAIL FROM:<sender>", "End of HELP info" } },
        { "/v1/help",
          "{}",
          214,
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


/* Every line is a comment or a sample of the text format 0.0.4, and each
   sample follows a # TYPE of its family. */
static void check_exposition(const char *text)
{
    static const char name[] = "[a-zA-Z_:][a-zA-Z0-9_:]*";
    static const char label[] =
        "[a-zA-Z_][a-zA-Z0-9_]*=\"([^\"\\\\\n]|\\\\.)*\"";
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
        snprintf(key, sizeof key, "%s_sum{%.*s}", family, (int)llen - 1, label);
    assert_true(sample(text, key) >= 0);
}

static void test_metrics_parse_as_prometheus_text_and_count_sent(void **state)
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
    post(fx, "/v1/messages", body, &r); /* 700 rejected */
    free(body);
    expect_status(&r, 200);
    http_resp_free(&r);
    post(fx, "/v1/messages", "{\"to\":[]}", &r); /* 422 */
    expect_status(&r, 422);
    http_resp_free(&r);
    sleep_ms(100); /* request counters land at completion */

    get(fx, "/metrics", &r);
    expect_status(&r, 200);
    char *ct = http_resp_header(&r, "Content-Type");
    assert_non_null(ct);
    assert_int_equal(strncmp(ct, "text/plain", 10), 0);
    free(ct);
    const char *text = r.body;
    assert_non_null(text);
    check_exposition(text);
    assert_null(strchr(text, '@')); /* never an address */
    assert_true(sample(text, "mailpool_messages_total{status=\"sent\"}") == 3);
    assert_true(sample(text, "mailpool_messages_total{status=\"rejected\"}") ==
                1);
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

/* The API key the request log test sends. */
static const char *const LOG_HDRS[] = { "Content-Type: application/json",
                                        "Authorization: Bearer "
                                        "key-9f27c1e5a3d4",
                                        NULL };

/* A message sent (its request id returned, caller frees), a refused one
   (422 naming the bad address) and a GET, with the API key. */
static char *send_logged_requests(struct fx *fx)
{
    struct http_resp r;
    char url[256];
    static const char *const to[] = { "rcpt@example.net", NULL };
    char *body = message_json("sender@example.com", to, "logged subject",
                              "secret-body-5d1c0b");
    url_of(fx, "/v1/messages", url, sizeof url);
    assert_int_equal(http_req("POST", url, LOG_HDRS, body, &r), 0);
    free(body);
    expect_status(&r, 200);
    char *rid = http_resp_header(&r, "X-Request-Id");
    assert_non_null(rid);
    http_resp_free(&r);
    /* A refused one (422 naming the bad address) and a GET. */
    assert_int_equal(http_req("POST", url, LOG_HDRS,
                              "{\"from\":\"sender@example.com\",\"to\":"
                              "[\"rcpt@@example.net\"]}",
                              &r),
                     0);
    expect_status(&r, 422);
    http_resp_free(&r);
    get(fx, "/healthz", &r);
    expect_status(&r, 200);
    http_resp_free(&r);
    return rid;
}

/* The service's log once it holds 4 request lines (3 s at most); caller
   frees. */
static char *log_with_requests(struct fx *fx)
{
    char *log = NULL;
    for (double end = now_s() + 3; now_s() < end; sleep_ms(50)) {
        free(log);
        log = mpserve_log(fx->svc, NULL);
        assert_non_null(log);
        const char *q = log;
        int nreq = 0;
        while ((q = strstr(q, "\"event\":\"request\"")) != NULL) {
            nreq++;
            q++;
        }
        if (nreq >= 4) /* 3 + mpserve's /healthz probe(s) */
            break;
    }
    return log;
}

/* What the request log test counts in the log's lines. */
struct log_counts {
    int nreq, nposts, nsmtp, found;
};

/* Checks one log line o (text l): no '@' outside a Message-ID, request
   lines with their id and status, the transaction's line under rid. */
static void count_log_line(json_t *o, const char *l, const char *rid,
                           struct log_counts *c)
{
    json_t *v;
    const char *key;
    /* '@' only inside a Message-ID (RFC 5322 msg-id has one). */
    json_object_foreach(o, key, v)
    {
        if (json_is_string(v) && strcmp(key, "message_id") != 0 &&
            strchr(json_string_value(v), '@') != NULL)
            fail_msg("'@' in log field %s: %s", key, l);
    }
    const char *ev = json_string_value(json_object_get(o, "event"));
    if (ev != NULL && strcmp(ev, "request") == 0) {
        c->nreq++;
        c->nposts += strcmp(jstr(o, "route"), "/v1/messages") == 0;
        assert_non_null(json_string_value(json_object_get(o, "request_id")));
        assert_true(json_is_integer(json_object_get(o, "status")));
        if (strcmp(jstr(o, "request_id"), rid) == 0) {
            c->found++;
            assert_int_equal(jint(o, "status"), 200);
            assert_string_equal(jstr(o, "route"), "/v1/messages");
        }
    }
    if (ev != NULL && strcmp(ev, "smtp") == 0) { /* the transaction */
        assert_string_equal(jstr(o, "request_id"), rid);
        assert_string_equal(jstr(o, "status"), "sent");
        assert_int_equal(jint(o, "code"), 250);
        c->nsmtp++;
    }
}

static void test_request_log_one_line_per_request_no_body_key_or_address(
    void **state)
{
    struct fx *fx = *state;
    start_fake(fx, "{}");
    /* Keys come from the environment (no flag: it would show in ps). */
    assert_int_equal(setenv("MAILPOOL_HTTP_API_KEYS", "key-9f27c1e5a3d4", 1),
                     0);
    START_SVC(fx, "--pool-workers", "1");
    unsetenv("MAILPOOL_HTTP_API_KEYS");
    char *rid = send_logged_requests(fx);
    assert_int_equal(peer_wait_messages(fx->peer, 1, 5000), 1);

    char *log = log_with_requests(fx);
    assert_null(strstr(log, "secret-body"));
    assert_null(strstr(log, "key-9f27c1e5a3d4"));
    assert_null(strstr(log, "sender@"));
    assert_null(strstr(log, "rcpt@"));
    assert_null(strstr(log, "example.net"));
    assert_null(strstr(log, "logged subject"));
    char *save = NULL;
    struct log_counts c = { 0 };
    for (char *l = strtok_r(log, "\n", &save); l != NULL;
         l = strtok_r(NULL, "\n", &save)) {
        json_error_t e;
        json_t *o = json_loads(l, 0, &e);
        if (!json_is_object(o))
            fail_msg("log line is not a JSON object: %s", l);
        count_log_line(o, l, rid, &c);
        json_decref(o);
    }
    assert_int_equal(c.found, 1);
    assert_int_equal(c.nsmtp, 1);
    assert_int_equal(c.nposts, 2);
    /* The two POSTs, our GET and mpserve's readiness probe(s). */
    assert_true(c.nreq >= 4);
    free(log);
    free(rid);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
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
