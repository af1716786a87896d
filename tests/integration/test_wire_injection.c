/*
 * test_wire_injection.c - reply injection, proven three ways against
 * tests/fakes/fake_smtp.py (the library, `mailpool serve` over HTTP,
 * `mailpool send` / `verify` / `expand` / `help`; tests/support/wire_fx.h):
 * when PIPELINING is not in effect (and always after STARTTLS), bytes
 * beyond the one reply awaited are a protocol error, for every command,
 * never the reply to a later one; with PIPELINING in effect the replies of
 * a group in one write are read in order as ever.  Every case asserts on
 * the result's fields and on the bytes the fake received.
 */
#include <signal.h>

#include "tests/support/wire_fx.h"

#define NOPIPE_AUTH \
    "'extensions': ['8BITMIME', 'ENHANCEDSTATUSCODES', " \
    "'AUTH PLAIN LOGIN']"

/* ---- 15: reply injection ---- */

/* One command answered with its reply plus more, in one write. */
struct inject {
    const char *name;
    const char *script;
    struct job job;
    const char *last; /* the last line received starts so */
    int lib_only;     /* needs two messages on one connection */
    int at_open;      /* fails opening the session: over HTTP a
                                    502 naming the cause */
};

/* Without PIPELINING for the envelope; the single commands (EHLO,
   STARTTLS, AUTH, VRFY, EXPN, HELP) await one reply whatever the relay
   offers, so some of those cases offer PIPELINING. */

#define QUEUE_ALL \
    "250 2.1.0 ok\\r\\n250 2.1.5 ok\\r\\n354 go\\r\\n" \
    "250 2.0.0 queued\\r\\n"
static const struct inject INJECT[] = {
    { "EHLO",
      "{'extensions': [], 'rules': [{'match': '^EHLO', 'raw': "
      "'250-fake.test\\r\\n250 8BITMIME\\r\\n" QUEUE_ALL "'}]}",
      { 0 },
      "EHLO [127.0.0.1]",
      0,
      1 },
    { "STARTTLS (454 + 235 250 250 354 250, opportunistic TLS and AUTH)",
      "{'tls': {}, " NOPIPE_AUTH ", 'rules': [{'match': '^STARTTLS', 'raw': "
      "'454 4.7.0 TLS not available\\r\\n235 2.7.0 ok\\r\\n" QUEUE_ALL "'},"
      " {'match': '^AUTH', 'reply': '535 5.7.8 bad credentials'}]}",
      { .tls_opportunistic = 1, .auth = 1 },
      "STARTTLS",
      0,
      1 },
    { "STARTTLS 220",
      "{'tls': {}, 'rules': [{'match': '^STARTTLS', 'raw': "
      "'220 2.0.0 go ahead\\r\\n" QUEUE_ALL "'}]}",
      { .tls_opportunistic = 1 },
      "STARTTLS",
      0,
      1 },
    { "AUTH",
      "{" NOPIPE_AUTH ", 'rules': [{'match': '^AUTH', 'raw': "
      "'235 2.7.0 ok\\r\\n" QUEUE_ALL "'}]}",
      { .auth = 1 },
      "AUTH PLAIN ",
      0,
      1 },
    { "MAIL",
      "{" NOPIPE ", 'rules': [{'match': '^MAIL', 'raw': '" QUEUE_ALL "'}]}",
      { 0 },
      "MAIL FROM:<" FROM ">",
      0,
      0 },
    { "RCPT",
      "{" NOPIPE ", 'rules': [{'match': '^RCPT', 'raw': "
      "'250 2.1.5 ok\\r\\n354 go\\r\\n250 2.0.0 queued\\r\\n'}]}",
      { 0 },
      "RCPT TO:<" TO ">",
      0,
      0 },
    { "DATA",
      "{" NOPIPE ", 'rules': [{'match': '^DATA', 'raw': "
      "'354 go\\r\\n250 2.0.0 queued\\r\\n'}]}",
      { 0 },
      "DATA",
      0,
      0 },
    { "the final dot",
      "{" NOPIPE ", 'rules': [{'match': '^DOT$', 'raw': "
      "'250 2.0.0 queued\\r\\n250 2.0.0 queued again\\r\\n'}]}",
      { 0 },
      ".",
      0,
      0 },
    { "RSET",
      "{" NOPIPE ", 'rules': [{'match': '^RSET', 'conn': 1, 'raw': "
      "'250 2.0.0 ok\\r\\n" QUEUE_ALL "'}]}",
      { 0 },
      "RSET",
      1,
      0 },
    { "VRFY",
      "{'rules': [{'match': '^VRFY', 'raw': "
      "'252 2.0.0 maybe\\r\\n221 2.0.0 bye\\r\\n'}]}",
      { .verb = "verify", .arg = "bob" },
      "VRFY bob",
      0,
      0 },
    { "EXPN",
      "{'rules': [{'match': '^EXPN', 'raw': "
      "'250 2.0.0 <a@example.org>\\r\\n250 2.0.0 more\\r\\n'}]}",
      { .verb = "expand", .arg = "staff" },
      "EXPN staff",
      0,
      0 },
    { "HELP",
      "{'rules': [{'match': '^HELP', 'raw': "
      "'214 2.0.0 see RFC 5321\\r\\n214 2.0.0 again\\r\\n'}]}",
      { .verb = "help", .arg = "MAIL" },
      "HELP MAIL",
      0,
      0 },
};

/* The RSET case through the library: the second message on the
   connection is a protocol error (451), the first went. */
static void inject_rset_lib(struct fx *f)
{
    struct outcome o[2];
    struct smtp_conn *conn = conn_open(f);
    const char *to[] = { TO };
    assert_int_equal(smtp_conn_hello(conn, &f->res), SMTP_OK);
    for (int i = 0; i < 2; i++) {
        smtp_conn_send_mail(conn, FROM, to, 1, SUBJ, 1, &HELLO, NULL, &f->res);
        from_result(&f->res, &o[i]);
    }
    smtp_conn_quit(conn);
    assert_string_equal(o[0].status, "sent");
    if (strcmp(o[1].status, "sent") == 0 || strcmp(o[1].kind, "protocol") != 0)
        fail_msg("RSET, library: %s %s %d", o[1].status, o[1].kind, o[1].code);
    assert_int_equal(o[1].code, 451);
    assert_int_equal(msgs(f, f->p, 1), 1);
}

/* POSTs message i (Subject "m<i>") to the service; its result into *o. */
static void post_message(struct mpserve *svc, int i, struct outcome *o)
{
    static const char *const ct[] = { "Content-Type: application/json", NULL };
    char url[256];
    struct http_resp r;
    char body[200];
    snprintf(url, sizeof url, "%s/v1/messages", mpserve_url(svc));
    snprintf(body, sizeof body,
             "{\"from\":\"%s\",\"to\":[\"%s\"],"
             "\"headers\":{\"Subject\":\"m%d\"},\"body\":\"hello\"}",
             FROM, TO, i);
    if (http_request("POST", url, ct, body, 0, &r) < 0)
        fail_msg("POST: %s", r.err);
    assert_int_equal(r.status, 200);
    json_t *doc = json_loadb(r.body, r.len, 0, NULL);
    from_json(doc, o);
    json_decref(doc);
    http_resp_free(&r);
}

/* The RSET case through the service: its pool reuses the connection, finds
   the injection and replaces the connection; the message goes once, on a
   fresh one, nothing taken from the injected bytes. */
static void inject_rset_service(struct fx *f)
{
    struct outcome o[2];
    const char *argv[] = { "--pool-workers",
                           "1",
                           "--pool-connections",
                           "1",
                           "--pool-retries",
                           "0",
                           "--relay-tls",
                           "none",
                           NULL };
    struct mpserve *svc = mpserve_start(peer_port(f->p), argv);
    assert_non_null(svc);
    for (int i = 0; i < 2; i++)
        post_message(svc, i, &o[i]);
    assert_int_equal(mpserve_stop_clean(svc, STOP_MS), 0);
    mpserve_free(svc);
    assert_string_equal(o[0].status, "sent");
    assert_string_equal(o[1].status, "sent");
    assert_int_equal(msgs(f, f->p, 2), 2);
    assert_int_equal(f->m[0].conn, 1);
    assert_int_equal(f->m[1].conn, 2); /* not on the first */
}

/* The RSET case: two messages on one connection (the second starts with
   RSET); the library directly, or the service's pool reusing it. */
static void inject_rset(struct fx *f, const struct inject *c, enum way w)
{
    fake(f, c->script);
    if (w == LIB)
        inject_rset_lib(f);
    else
        inject_rset_service(f);
    const char *w1 = wire(f, f->p, 1);
    const char *rset = strstr(w1, "RSET\r\n");
    assert_non_null(rset);
    if (strstr(rset, "MAIL") != NULL)
        fail_msg("RSET, %s: MAIL followed the injected reply: %s", WAY_NAME[w],
                 w1);
}

static void test_bytes_beyond_the_awaited_reply_are_a_protocol_error(
    void **state)
{
    struct fx *f = *state;
    char bad[4096] = "";
    for (size_t i = 0; i < sizeof INJECT / sizeof INJECT[0]; i++) {
        const struct inject *c = &INJECT[i];
        for (int w = LIB; w < NWAYS; w++) {
            gc_flush(f);
            if (c->lib_only) {
                if (w != CLI) /* the CLI sends one message */
                    inject_rset(f, c, (enum way)w);
                continue;
            }
            fake(f, c->script);
            struct outcome o;
            run_way(f, (enum way)w, &c->job, &o);
            const char *all = wire_all(f);
            size_t room = sizeof bad - strlen(bad);
            if (w == HTTP && c->at_open) {
                if (o.http != 502 || !strstr(o.error, "reply injection"))
                    snprintf(bad + strlen(bad), room, "[%s, %s: HTTP %d: %s] ",
                             c->name, WAY_NAME[w], o.http, o.error);
                else if (!starts_with(last_line(f, all), c->last))
                    snprintf(bad + strlen(bad), room,
                             "[%s, %s: the server "
                             "received '%s'] ",
                             c->name, WAY_NAME[w], all);
                continue;
            }
            if (strcmp(o.status, "sent") == 0 ||
                strcmp(o.kind, "protocol") != 0 || o.code != 451 ||
                !o.local_code)
                snprintf(bad + strlen(bad), room, "[%s, %s: %s %s %d: %s] ",
                         c->name, WAY_NAME[w], o.status, o.kind, o.code,
                         o.error);
            else if (!starts_with(last_line(f, all), c->last))
                snprintf(bad + strlen(bad), room,
                         "[%s, %s: the server "
                         "received '%s'] ",
                         c->name, WAY_NAME[w], all);
            else
                assert_code_agrees(&o, c->name);
            /* the final dot went out: the outcome is unknown, never resent */
            if (strcmp(c->last, ".") == 0 && strcmp(o.status, "unknown") != 0)
                snprintf(bad + strlen(bad), sizeof bad - strlen(bad),
                         "[%s, %s: status %s, want unknown] ", c->name,
                         WAY_NAME[w], o.status);
        }
    }
    if (bad[0])
        fail_msg("%s", bad);
}

/* With PIPELINING in effect the replies of a group are read in order as
   ever (the injection rule does not break pipelining). */
static void test_pipelined_replies_in_one_write_are_still_fine(void **state)
{
    struct fx *f = *state;
    fake(f, NULL);
    struct job j = { 0 };
    struct outcome o;
    run_lib(f, &j, &o);
    assert_string_equal(o.status, "sent");
    const char *all = wire_all(f);
    const char *mail = strstr(all, "MAIL FROM:<" FROM ">");
    assert_non_null(mail);
    assert_non_null(strstr(mail, "\r\nRCPT TO:<" TO ">\r\nDATA\r\n"));
}

/* ---- fixture ---- */

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_bytes_beyond_the_awaited_reply_are_a_protocol_error),
        T(test_pipelined_replies_in_one_write_are_still_fine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
