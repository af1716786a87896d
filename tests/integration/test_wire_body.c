/*
 * test_wire_body.c - what the service and the command line send is what the
 * library sends: the body goes to smtpcore as text of known length, so the
 * checks before MAIL, SIZE=, BODY=8BITMIME, SMTPUTF8 and the 452 follow-up
 * hold on every path.  Each case runs three times against the fake relay:
 * through smtp_send_mail, through `mailpool serve` over HTTP, and through
 * `mailpool send --body-file`; every run is judged by the same check on the
 * JSON result (result_json for the library) and on the bytes the relay
 * received.  One difference is intended: the service sends a non-ASCII
 * Subject as RFC 2047 encoded-words (issue 12), where the library and the
 * command line send raw UTF-8 with SMTPUTF8 or refuse it.
 */
#include <jansson.h>
#include <signal.h>

#include "api/api.h"
#include "result/result_json.h"
#include "tests/support/smtp_fx.h"
#include "tests/support/http.h"
#include "tests/support/mpserve.h"
#include "tests/support/tsupport.h"

enum path { PATH_LIB, PATH_HTTP, PATH_CLI };
static const char *const path_name[] = { "library", "http", "cli" };

/* One run's evidence: the result, everything the relay received on every
   connection, and the messages it took. */
struct run {
    enum path path;
    json_t *res;
    char *wire; /* all connections, in order */
    struct peer_msg *m;
    size_t nm;
};

/* A case: the relay's script, the message, and the check of a run. */
struct wcase {
    const char *name;
    const char *script; /* fake_smtp.py JSON, ' for " */
    const char *from;
    const char *to[4];
    const char *subject;
    const char *body; /* built by body_fn when NULL */
    char *(*body_fn)(void);
    void (*check)(const struct run *r);
};

/* ---- helpers ---------------------------------------------------------- */


/* The string member key of o, or "". */
static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s != NULL ? s : "";
}

/* The number of elements of the array member key of o. */
static size_t jlen(const json_t *o, const char *key)
{
    return json_array_size(json_object_get(o, key));
}

/* Fails unless the run's status is want, saying which path. */
static void expect_status(const struct run *r, const char *want)
{
    if (strcmp(jstr(r->res, "status"), want) != 0) {
        char *s = json_dumps(r->res, JSON_COMPACT);
        fail_msg("%s: status %s, want %s: %s", path_name[r->path],
                 jstr(r->res, "status"), want, s ? s : "?");
    }
}

/* The MAIL FROM lines the relay received, joined by '\n'; static-free:
   caller frees. */
static char *mail_lines(const char *wire)
{
    size_t cap = strlen(wire) + 1, n = 0;
    char *out = calloc(1, cap);
    assert_non_null(out);
    for (const char *p = wire; (p = strstr(p, "MAIL FROM:")) != NULL; p++) {
        const char *e = strstr(p, "\r\n");
        size_t k = e ? (size_t)(e - p) : strlen(p);
        memcpy(out + n, p, k);
        n += k;
        out[n++] = '\n';
    }
    return out;
}

/* Waits for the fake to log the close of every connection it saw. */
static void wait_closed(struct peer *p)
{
    for (long long end = now_ms() + 4000; now_ms() < end; sleep_ms(20)) {
        int n = peer_conn_count(p), all = 1;
        for (int c = 1; c <= n && all; c++)
            all = conn_closed(p, c);
        if (all)
            return;
    }
}

/* Fills r->wire, r->m from the fake after the run. */
static void collect(struct run *r, struct peer *p, size_t want_msgs)
{
    size_t total = 0;
    if (want_msgs > 0)
        peer_wait_messages(p, want_msgs, 5000);
    wait_closed(p);
    int n = peer_conn_count(p);
    r->wire = calloc(1, 1);
    assert_non_null(r->wire);
    for (int c = 1; c <= n; c++) {
        size_t len = 0;
        char *w = peer_conn_bytes(p, c, &len);
        if (w == NULL)
            continue;
        char *all = realloc(r->wire, total + len + 1);
        assert_non_null(all);
        memcpy(all + total, w, len);
        total += len;
        all[total] = '\0';
        r->wire = all;
        free(w);
    }
    assert_int_equal(peer_messages(p, &r->m, &r->nm), 0);
}

static void run_free(struct run *r)
{
    json_decref(r->res);
    free(r->wire);
    peer_msgs_free(r->m, r->nm);
}

/* The case's body, owned by the caller. */
static char *case_body(const struct wcase *c)
{
    char *b = c->body != NULL ? strdup(c->body) : c->body_fn();
    assert_non_null(b);
    return b;
}

static size_t nto(const struct wcase *c)
{
    size_t n = 0;
    while (n < 4 && c->to[n] != NULL)
        n++;
    return n;
}

/* ---- the three paths -------------------------------------------------- */

static void via_library(const struct wcase *c, struct peer *p, struct run *r)
{
    struct smtp_opts o = { .command_timeout_ms = 5000,
                           .data_term_timeout_ms = 5000,
                           .helo_name = "mailpool.test" };
    struct smtp_header h[1] = { { "Subject", c->subject } };
    char *body = case_body(c);
    struct smtp_body b = { .text = body, .len = strlen(body) };
    struct smtp_result res;
    char *host = peer_hostport(p);

    smtp_result_init(&res);
    smtp_send_mail(c->from, c->to, nto(c), h, 1, &b, host, &o, NULL, &res);
    r->res = result_json(&res);
    smtp_result_clear(&res);
    free(host);
    free(body);
}

/* The message as the HTTP API takes it; caller frees. */
static char *message_json(const struct wcase *c)
{
    char *body = case_body(c);
    json_t *to = json_array();
    for (size_t i = 0; i < nto(c); i++)
        json_array_append_new(to, json_string(c->to[i]));
    json_t *o = json_pack("{s:s, s:o, s:{s:s}, s:s}", "from", c->from, "to", to,
                          "headers", "Subject", c->subject, "body", body);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    free(body);
    assert_non_null(s);
    return s;
}

/* POSTs json to svc's path; the parsed answer (status 200 required). */
static json_t *post_json(struct mpserve *svc, const char *path,
                         const char *json)
{
    char url[128];
    struct http_resp resp;
    json_error_t err;

    snprintf(url, sizeof url, "%s%s", mpserve_url(svc), path);
    static const char *const hdrs[] = { "Content-Type: application/json",
                                        NULL };
    assert_int_equal(http_request("POST", url, hdrs, json, 0, &resp), 0);
    if (resp.status != 200)
        fail_msg("POST %s: %ld %s", path, resp.status, resp.body);
    json_t *j = json_loads(resp.body, 0, &err);
    http_resp_free(&resp);
    assert_non_null(j);
    return j;
}

static void via_http(const struct wcase *c, struct peer *p, struct run *r)
{
    static const char *const extra[] = { "--relay-helo-name", "mailpool.test",
                                         "--pool-retries", "0", NULL };
    struct mpserve *svc = mpserve_start(peer_port(p), extra);
    assert_non_null(svc);
    char *json = message_json(c);
    r->res = post_json(svc, "/v1/messages", json);
    free(json);
    assert_int_equal(mpserve_stop_clean(svc, 10000), 0); /* QUIT sent */
    mpserve_free(svc);
}

static void via_cli(const struct wcase *c, struct peer *p, struct run *r)
{
    char file[] = "/tmp/mailpool-wire-XXXXXX", server[64], subj[256];
    char *body = case_body(c), *out = NULL;
    int fd = mkstemp(file);
    size_t n = strlen(body);
    const char *argv[24] = {
        "send",   "--server",      server,   "--tls", "none",
        "--helo", "mailpool.test", "--from", c->from, "--header",
        subj,     "--body-file",   file
    };
    size_t k = 13;
    json_error_t err;

    assert_true(fd >= 0);
    assert_int_equal(write(fd, body, n), (ssize_t)n);
    close(fd);
    snprintf(server, sizeof server, "127.0.0.1:%d", peer_port(p));
    snprintf(subj, sizeof subj, "Subject: %s", c->subject);
    for (size_t i = 0; i < nto(c); i++) {
        argv[k++] = "--to";
        argv[k++] = c->to[i];
    }
    argv[k] = NULL;
    int rc = mpserve_run(argv, 20000, &out);
    unlink(file);
    free(body);
    assert_true(rc == 0 || rc == 1);
    assert_non_null(out);
    /* stdout and stderr share *out; the JSON result is the line with "{" */
    char *brace = strchr(out, '{');
    assert_non_null(brace);
    r->res = json_loads(brace, JSON_DISABLE_EOF_CHECK, &err);
    if (r->res == NULL)
        fail_msg("cli printed no JSON result: %s", out);
    free(out);
}

/* Runs case c through every path, each on a fresh fake relay. */
static void run_case(const struct wcase *c, size_t want_msgs)
{
    static void (*const via[])(const struct wcase *, struct peer *,
                               struct run *) = { via_library, via_http,
                                                 via_cli };
    for (int k = PATH_LIB; k <= PATH_CLI; k++) {
        char *script = ts_dq(c->script);
        struct peer *p = peer_start_fake(script);
        struct run r = { .path = (enum path)k };
        free(script);
        assert_non_null(p);
        via[k](c, p, &r);
        collect(&r, p, want_msgs);
        c->check(&r);
        run_free(&r);
        peer_stop(p);
    }
}

/* ---- bodies ----------------------------------------------------------- */

/* A line of exactly 998 octets that starts with '.'. */
static char *body_dot998(void)
{
    char *b = malloc(998 + 32);
    assert_non_null(b);
    b[0] = '.';
    memset(b + 1, 'y', 997);
    strcpy(b + 998, "\r\nend\r\n");
    return b;
}

static char *body_5k(void)
{
    char *b = malloc(5000 + 1);
    assert_non_null(b);
    for (size_t i = 0; i < 5000; i++)
        b[i] = i % 50 == 49 ? '\n' : 'a' + (char)(i % 26);
    b[5000] = '\0';
    return b;
}

/* ---- checks ----------------------------------------------------------- */

/* Item 1: delivered, the line stuffed to 999 octets on the wire. */
static void check_dot998(const struct run *r)
{
    char want[1100];
    expect_status(r, "sent");
    assert_int_equal(r->nm, 1);
    want[0] = want[1] = '.';
    memset(want + 2, 'y', 997);
    strcpy(want + 999, "\r\nend\r\n");
    assert_non_null(strstr((const char *)r->m[0].data, want));
}

/* Item 2: the third recipient goes in a second transaction of the same
   message; each recipient once; the result says sent. */
static void check_452(const struct run *r)
{
    expect_status(r, "sent");
    assert_int_equal(jlen(r->res, "accepted"), 3);
    assert_int_equal(jlen(r->res, "rejected"), 0);
    assert_int_equal(r->nm, 2);
    assert_int_equal(r->m[0].nrcpt + r->m[1].nrcpt, 3);
    assert_int_equal(count(r->wire, "RCPT TO:<c@example.org>"), 2);
    assert_int_equal(count(r->wire, "RCPT TO:<a@example.org>"), 1);
    assert_int_equal(count(r->wire, "RCPT TO:<b@example.org>"), 1);
    assert_int_equal(count(r->wire, "\r\n.\r\n"), 2);
}

/* Item 3: SIZE= declared, and a message over the limit refused before
   MAIL with the limit named. */
static void check_size_declared(const struct run *r)
{
    char *mail = mail_lines(r->wire);
    expect_status(r, "sent");
    assert_non_null(strstr(mail, " SIZE="));
    free(mail);
}

static void check_size_refused(const struct run *r)
{
    expect_status(r, "failed");
    assert_int_equal(count(r->wire, "MAIL FROM"), 0);
    assert_int_equal(r->nm, 0);
    assert_non_null(strstr(jstr(r->res, "error"), "1000"));
}

/* Item 4: BODY=8BITMIME only for an 8-bit body; an 8-bit body to a relay
   without 8BITMIME is refused before MAIL. */
static void check_ascii_no_8bitmime(const struct run *r)
{
    char *mail = mail_lines(r->wire);
    expect_status(r, "sent");
    assert_int_equal(count(mail, "MAIL FROM"), 1);
    assert_null(strstr(mail, "BODY=8BITMIME"));
    free(mail);
}

static void check_8bit_8bitmime(const struct run *r)
{
    char *mail = mail_lines(r->wire);
    expect_status(r, "sent");
    assert_non_null(strstr(mail, "BODY=8BITMIME"));
    free(mail);
}

static void check_8bit_refused(const struct run *r)
{
    expect_status(r, "failed");
    assert_int_equal(count(r->wire, "MAIL FROM"), 0);
    assert_non_null(strstr(jstr(r->res, "error"), "8BITMIME"));
}

/* Item 5: one RCPT per distinct mailbox, each listed once. */
static void check_distinct(const struct run *r)
{
    expect_status(r, "sent");
    assert_int_equal(count(r->wire, "RCPT TO:"), 2);
    assert_int_equal(jlen(r->res, "accepted"), 2);
    assert_int_equal(r->nm, 1);
    assert_int_equal(r->m[0].nrcpt, 2);
}

/* Through the service (issue 12) a non-ASCII Subject goes as RFC 2047
   encoded-words, with no SMTPUTF8, whatever the relay offers. */
static void check_utf8_service_encodes(const struct run *r)
{
    char *mail = mail_lines(r->wire);
    expect_status(r, "sent");
    assert_null(strstr(mail, "SMTPUTF8"));
    assert_non_null(strstr(r->wire, "\r\nSubject: =?UTF-8?"));
    free(mail);
}

/* Item 7: raw UTF-8 in a header field declares SMTPUTF8, or is refused
   before MAIL naming the field (the library and the command line). */
static void check_utf8_declared(const struct run *r)
{
    if (r->path == PATH_HTTP) {
        check_utf8_service_encodes(r);
        return;
    }
    char *mail = mail_lines(r->wire);
    expect_status(r, "sent");
    assert_non_null(strstr(mail, " SMTPUTF8"));
    assert_non_null(strstr(mail, "BODY=8BITMIME"));
    free(mail);
}

static void check_utf8_refused(const struct run *r)
{
    if (r->path == PATH_HTTP) {
        check_utf8_service_encodes(r);
        return;
    }
    expect_status(r, "failed");
    assert_int_equal(count(r->wire, "MAIL FROM"), 0);
    assert_non_null(strstr(jstr(r->res, "error"), "Subject"));
    assert_non_null(strstr(jstr(r->res, "error"), "SMTPUTF8"));
}

/* Item 16: a failed message lists nobody as accepted. */
static void check_failed_none_accepted(const struct run *r)
{
    expect_status(r, "failed");
    assert_int_equal(jlen(r->res, "accepted"), 0);
    assert_int_equal(r->nm, 0);
}

/* ---- the table -------------------------------------------------------- */

#define EXT(...) "{'extensions': [" __VA_ARGS__ "]}"
#define ASCII "Hello.\r\nSecond line.\r\n"
#define EIGHT \
    "Gr\xc3\xbc\xc3\x9f" \
    "e aus K\xc3\xb6ln\r\n"

static const struct wcase cases[] = {
    { "dot_line_of_998_is_sent_stuffed",
      "{}",
      "s@example.org",
      { "r@example.org" },
      "dots",
      NULL,
      body_dot998,
      check_dot998 },
    { "452_follow_up_sends_the_rest",
      "{'max_rcpt': 2}",
      "s@example.org",
      { "a@example.org", "b@example.org", "c@example.org" },
      "many",
      ASCII,
      NULL,
      check_452 },
    { "size_declared",
      EXT("'PIPELINING', 'SIZE 100000'"),
      "s@example.org",
      { "r@example.org" },
      "size",
      NULL,
      body_5k,
      check_size_declared },
    { "size_over_limit_refused_before_mail",
      EXT("'PIPELINING', '8BITMIME', 'SIZE 1000'"),
      "s@example.org",
      { "r@example.org" },
      "size",
      NULL,
      body_5k,
      check_size_refused },
    { "ascii_body_has_no_body_8bitmime",
      "{}",
      "s@example.org",
      { "r@example.org" },
      "ascii",
      ASCII,
      NULL,
      check_ascii_no_8bitmime },
    { "8bit_body_declares_8bitmime",
      "{}",
      "s@example.org",
      { "r@example.org" },
      "eight",
      EIGHT,
      NULL,
      check_8bit_8bitmime },
    { "8bit_body_without_8bitmime_refused_before_mail",
      EXT("'PIPELINING', 'SIZE 100000'"),
      "s@example.org",
      { "r@example.org" },
      "eight",
      EIGHT,
      NULL,
      check_8bit_refused },
    { "one_rcpt_per_distinct_mailbox",
      "{}",
      "s@example.org",
      { "bob@example.org", "alice@example.org", "bob@EXAMPLE.org" },
      "twice",
      ASCII,
      NULL,
      check_distinct },
    { "utf8_subject_declares_smtputf8",
      EXT("'PIPELINING', '8BITMIME', 'SMTPUTF8'"),
      "s@example.org",
      { "r@example.org" },
      "Gr\xc3\xbc\xc3\x9f"
      "e aus K\xc3\xb6ln",
      ASCII,
      NULL,
      check_utf8_declared },
    { "utf8_subject_without_smtputf8_refused_naming_the_field",
      "{}",
      "s@example.org",
      { "r@example.org" },
      "Gr\xc3\xbc\xc3\x9f"
      "e aus K\xc3\xb6ln",
      ASCII,
      NULL,
      check_utf8_refused },
    { "data_refused_lists_nobody_accepted",
      "{'rules': [{'match': '^DATA', 'reply': '554 5.3.0 no data today'}]}",
      "s@example.org",
      { "r@example.org", "q@example.org" },
      "refused",
      ASCII,
      NULL,
      check_failed_none_accepted },
};

static void test_case(void **state)
{
    const struct wcase *c = *state;
    size_t want = 0;
    if (c->check == check_452)
        want = 2;
    else if (c->check != check_size_refused && c->check != check_8bit_refused &&
             c->check != check_utf8_refused &&
             c->check != check_failed_none_accepted)
        want = 1;
    run_case(c, want);
}

/* Item 9: a reply to a reused connection's RSET (Exim's 554 after ten
   non-mail commands) says nothing of the next message: it goes on a fresh
   connection, uncounted, and is delivered (service only: the pool reuses
   connections). */
static void test_refused_rset_on_reused_connection_sends_on_a_fresh_one(
    void **state)
{
    (void)state;
    char *script = ts_dq("{'rules': [{'match': '^RSET', "
                         "'reply': '554 5.7.0 Too many nonmail commands'}]}");
    struct peer *p = peer_start_fake(script);
    free(script);
    assert_non_null(p);
    static const char *const extra[] = { "--pool-connections",
                                         "1",
                                         "--pool-workers",
                                         "1",
                                         "--pool-retries",
                                         "0",
                                         NULL };
    struct mpserve *svc = mpserve_start(peer_port(p), extra);
    assert_non_null(svc);
    const char *msg = "{\"from\":\"s@example.org\",\"to\":[\"r@example.org\"],"
                      "\"headers\":{\"Subject\":\"n\"},\"body\":\"x\"}";
    json_t *first = post_json(svc, "/v1/messages", msg);
    json_t *second = post_json(svc, "/v1/messages", msg);
    assert_string_equal(jstr(first, "status"), "sent");
    assert_string_equal(jstr(second, "status"), "sent");
    assert_int_equal(json_integer_value(json_object_get(second, "attempts")),
                     1);
    assert_int_equal(mpserve_stop_clean(svc, 10000), 0);
    mpserve_free(svc);
    struct run r = { .path = PATH_HTTP };
    collect(&r, p, 2);
    assert_int_equal(r.nm, 2);
    assert_int_equal(count(r.wire, "RSET\r\n"), 1); /* then a new conn */
    assert_true(peer_conn_count(p) >= 2);
    assert_int_equal(r.m[1].conn, 2);
    run_free(&r);
    json_decref(first);
    json_decref(second);
    peer_stop(p);
}

int main(void)
{
    struct CMUnitTest t[sizeof cases / sizeof cases[0] + 1];
    size_t n = 0;
    for (; n < sizeof cases / sizeof cases[0]; n++)
        t[n] = (struct CMUnitTest){ cases[n].name, test_case, NULL, NULL,
                                    (void *)(uintptr_t)&cases[n] };
    t[n++] = (struct CMUnitTest)cmocka_unit_test(
        test_refused_rset_on_reused_connection_sends_on_a_fresh_one);
    signal(SIGPIPE, SIG_IGN);
    return _cmocka_run_group_tests("test_wire_body", t, n, NULL, NULL);
}
