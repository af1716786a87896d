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
 * 5xx, an unreachable relay, a full queue, a client hanging up mid-flight).
 * test_service_process.c covers /readyz, VRFY/EXPN/HELP, the SIGTERM
 * drain, /metrics and the request log; test_service_errors.c the request
 * errors (problem+json, 413, bearer keys), /openapi.json and bad
 * configuration.  The fixture is tests/support/service_fx.h.
 *
 * Each test starts its own peer and service; the teardown stops both even
 * when an assertion failed, and fails the test unless the service exits 0
 * on SIGTERM.  Run from anywhere: the helpers find the binary and the
 * peers.  MPSERVE_KEEP=1 keeps the service's log directory, PEER_VERBOSE=1
 * prints the peer's.  $TMPDIR must be traversable by "nobody" when run as
 * root (smtp-sink drops to that user).
 */
#include "tests/support/service_fx.h"

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
    get(fx, "/readyz", &r); /* a live relay connection: ready */
    expect_status(&r, 200);
    http_resp_free(&r);
    assert_int_equal(mpserve_stop(fx->svc, STOP_MS), 0);
}

/* POSTs raw as a raw message: sent, and no Message-ID reported (none
   was added). */
static void post_raw_sent(struct fx *fx, const char *raw)
{
    struct http_resp r;
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
         "\"body\":[\"line one\",\".starts with a dot\",\"\",\"last\"]}",
         &r);
    expect_status(&r, 200);
    http_resp_free(&r);
    /* raw: a whole message, sent as it is (nothing added). */
    static const char raw[] = "From: Someone <sender@example.com>\r\n"
                              "To: rcpt@example.net\r\n"
                              "Subject: raw one\r\n"
                              "\r\n"
                              "raw body\r\n";
    post_raw_sent(fx, raw);

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
                                              "to", rcpt, "headers", "Subject",
                                              subject, "body", subject));
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
    sleep_ms(200); /* a 21st would show up here */
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
    assert_non_null(
        strstr(json_string_value(json_array_get(text, 0)), "User unknown"));
    assert_int_equal(jint(j, "attempts"), 1); /* final: not retried */
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
    char *body = message_json("sender@example.com", to, "nobody-wants-it", "x");
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

static void test_421_at_mail_is_retried_on_a_fresh_connection_once(void **state)
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
    sleep_ms(1800); /* the sink has closed the idle connection */
    j = send_simple(fx, "idle-2");
    assert_string_equal(jstr(j, "status"), "sent");
    assert_int_equal(jint(j, "code"), 250);
    json_decref(j);
    assert_int_equal(peer_wait_messages(fx->peer, 2, 5000), 2);
    sleep_ms(300); /* a resent copy would show up here */
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

static void test_drop_after_final_dot_is_unknown_and_never_resent(void **state)
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

static void test_421_reply_to_final_dot_is_a_refusal_and_is_retried(void **state)
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

static void test_unreachable_relay_is_502_problem_naming_the_cause(void **state)
{
    struct fx *fx = *state;
    struct http_resp r;
    int dead = mpserve_free_port(); /* nothing listens there */
    assert_true(dead > 0);
    start_svc_at(fx, dead,
                 (const char *const[]){ "--pool-retries", "1",
                                        "--pool-retry-backoff-ms", "20",
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
    assert_int_equal(jint(p, "attempts"), 2); /* 1 + --pool-retries 1 */
    json_decref(p);
    http_resp_free(&r);
    get(fx, "/readyz", &r); /* no relay: not ready, but alive */
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
    /* The relay may log a message just after its reply went out: wait for
       the copies of the ones answered 200 before reading them. */
    int answered = 0;
    for (int i = 0; i < N; i++)
        answered += calls[i].r.status == 200;
    peer_wait_messages(fx->peer, (size_t)answered, 5000);
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
    sleep_ms(300); /* nothing turns up late either */
    assert_int_equal(peer_wait_messages(fx->peer, (size_t)ok + 1, 100), ok);
}

static void test_client_hanging_up_mid_flight_breaks_nothing(void **state)
{
    struct fx *fx = *state;
    struct peer_msg *m;
    size_t n;
    char url[256];
    static const char *const ct[] = { "Content-Type: application/json", NULL };
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
    };
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
