/*
 * test_wire_envelope.c - no ESMTP parameter rides in an address, proven on
 * the bytes the relay received, through the three doors a user meets: the
 * library (smtp_send_mail, smtp_conn_send_mail), `mailpool serve` over
 * HTTP, and the `mailpool send` command line.  '<' '>' inside quotes,
 * CR/LF, NUL, spaces and parameters after the address are refused before
 * a MAIL is written (HTTP 422 naming the member; CLI exit 1 with kind
 * "local"); DSN values are xtext.
 *
 * The relay is tests/fakes/fake_smtp.py (it keeps every byte); the
 * fixture is tests/support/wire_msg_fx.h.  Each test starts its own fake
 * and, when it needs one, its own service; the teardown stops both, and
 * fails when the service does not exit 0.
 */
#include "tests/support/wire_msg_fx.h"

/* ---- Item 13: envelope parameter smuggling ---- */

/* Addresses that would carry text past the path or a parameter. */
static const char *const SMUGGLED[] = {
    "\"a> SIZE=1 RET=FULL\"@b.example",
    "\"a>\"@b.example",
    "\"<a\"@b.example",
    "\"a\\> NOTIFY=NEVER\"@b.example",
    "\"a\\\"> SIZE=1\"@b.example",
    "a@b.example> SIZE=1",
    "a@b.example SIZE=1",
    "a SIZE=1@b.example",
    "<a@b.example>",
    "a@b.example\r\nRSET",
    "\"a\r\nRSET\"@b.example",
    "a@b.example\tSIZE=1",
};
#define NSMUGGLED (sizeof SMUGGLED / sizeof SMUGGLED[0])

static void test_library_refuses_parameter_smuggling(void **state)
{
    struct wx *w = *state;
    struct fx *f = &w->f;
    fake(f, "{" UTF8_EXT "}");
    for (size_t i = 0; i < NSMUGGLED; i++) {
        const char *to[] = { "ok@example.org", SMUGGLED[i] };
        assert_int_equal(smtp_send_mail("a@example.org", to, 2, SUBJ, 1, &HELLO,
                                        f->host, &f->opts, NULL, &f->res),
                         SMTP_ERR_LOCAL);
        assert_int_equal(f->res.status, SMTP_DELIVERY_FAILED);
        assert_int_equal(smtp_send_mail(SMUGGLED[i], to, 1, SUBJ, 1, &HELLO,
                                        f->host, &f->opts, NULL, &f->res),
                         SMTP_ERR_LOCAL);
    }
    assert_int_equal(peer_conn_count(f->p), 0); /* refused before connecting */
    /* On an open connection: refused before MAIL. */
    struct smtp_conn *c = conn_open(f);
    assert_int_equal(smtp_conn_hello(c, &f->res), SMTP_OK);
    const char *to[] = { SMUGGLED[0] };
    assert_int_equal(smtp_conn_send_mail(c, "a@example.org", to, 1, SUBJ, 1,
                                         &HELLO, NULL, &f->res),
                     SMTP_ERR_LOCAL);
    assert_non_null(strstr(f->res.message, "quoted local part"));
    /* DSN values: free text is xtext, keywords are keywords. */
    struct smtp_send_opts bad[] = { { .dsn_notify = "NEVER SIZE=1" },
                                    { .dsn_ret = "FULL SIZE=1" },
                                    { .dsn_envid = "id\r\nRSET" } };
    const char *ok[] = { "ok@example.org" };
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(smtp_conn_send_mail(c, "a@example.org", ok, 1, SUBJ, 1,
                                             &HELLO, &bad[i], &f->res),
                         SMTP_ERR_LOCAL);
    /* What may go: a quoted space stays inside the brackets, ENVID and
       ORCPT are xtext. */
    struct smtp_send_opts dsn = { .dsn_notify = "FAILURE",
                                  .dsn_ret = "HDRS",
                                  .dsn_envid = "id SIZE=1 <x>" };
    const char *q[] = { "\"a b NOTIFY=NEVER\"@b.example" };
    assert_int_equal(smtp_conn_send_mail(c, "a@example.org", q, 1, SUBJ, 1,
                                         &HELLO, &dsn, &f->res),
                     SMTP_OK);
    smtp_conn_quit(c);
    const char *b = wire(f, f->p, 1);
    assert_int_equal(count(b, "MAIL FROM:"), 1);
    assert_non_null(strstr(b, "\r\nMAIL FROM:<a@example.org> RET=HDRS "
                              "ENVID=id+20SIZE+3D1+20<x>\r\n"));
    assert_non_null(strstr(b, "\r\nRCPT TO:<\"a b NOTIFY=NEVER\"@b.example> "
                              "NOTIFY=FAILURE ORCPT=rfc822;\"a+20b+20NOTIFY+3D"
                              "NEVER\"@b.example\r\n"));
    assert_int_equal(count(b, "RCPT TO:"), 1);
    assert_null(strstr(b, "RSET"));
}

/* An address as a JSON string literal (quotes and controls escaped). */
static char *json_str(const char *s)
{
    json_t *j = json_string(s);
    assert_non_null(j);
    char *t = json_dumps(j, JSON_ENCODE_ANY);
    json_decref(j);
    assert_non_null(t);
    return t;
}

static void test_service_refuses_parameter_smuggling_with_422(void **state)
{
    struct wx *w = *state;
    struct fx *f = &w->f;
    fake(f, "{" UTF8_EXT "}");
    svc(w);
    for (size_t i = 0; i < NSMUGGLED; i++) {
        char *a = keep(f, json_str(SMUGGLED[i])), body[512];
        snprintf(body, sizeof body,
                 "{\"from\":%s,\"to\":[\"ok@example.org\",%s],"
                 "\"body\":\"hi\"}",
                 a, a);
        json_t *p = post(w, "/v1/messages", body, 422);
        assert_422_names(p, "from", NULL);
        assert_422_names(p, "to[1]", NULL);
        json_decref(p);
        snprintf(body, sizeof body,
                 "{\"messages\":[{\"from\":\"a@example.org\","
                 "\"to\":[\"ok@example.org\"]},{\"from\":\"a@example.org\","
                 "\"to\":[%s]}]}",
                 a);
        p = post(w, "/v1/messages/batch", body, 422);
        assert_422_names(p, "messages[1].to[0]", NULL);
        json_decref(p);
    }
    json_t *p = post(w, "/v1/messages",
                     "{\"from\":\"a@example.org\",\"to\":"
                     "[\"\\\"a> SIZE=1 RET=FULL\\\"@b.example\"]}",
                     422);
    assert_422_names(p, "to[0]", "inside a quoted local part");
    json_decref(p);
    /* NUL never reaches the decoder: the JSON is refused (400). */
    p = post(w, "/v1/messages",
             "{\"from\":\"a@example.org\",\"to\":"
             "[\"b@example.org\\u0000 SIZE=1\"]}",
             400);
    json_decref(p);
    assert_no_transaction(f);
    /* The quoted space goes, inside the brackets, without parameters. */
    p = post(w, "/v1/messages",
             "{\"from\":\"a@example.org\",\"to\":"
             "[\"\\\"a b SIZE=1\\\"@b.example\"],\"body\":\"hi\"}",
             200);
    assert_string_equal(jstr(p, "status"), "sent");
    json_decref(p);
    assert_int_equal(msgs(f, f->p, 1), 1);
    assert_string_equal(f->m[0].rcpt_to[0], "\"a b SIZE=1\"@b.example");
    const char *b = all_bytes(f);
    assert_non_null(strstr(b, "\r\nRCPT TO:<\"a b SIZE=1\"@b.example>\r\n"));
    assert_non_null(strstr(b, "\r\nMAIL FROM:<a@example.org>"));
    assert_int_equal(count(b, "SIZE=1"), 1); /* the quoted one */
    assert_int_equal(count(b, "RCPT TO:"), 1);
}

static void test_cli_refuses_parameter_smuggling(void **state)
{
    struct wx *w = *state;
    struct fx *f = &w->f;
    fake(f, "{" UTF8_EXT "}");
    const char *body = file_in(f, "body.txt", "hi\n");
    for (size_t i = 0; i < NSMUGGLED; i++) {
        for (int as_from = 0; as_from < 2; as_from++) {
            const char *args[] = { "send",
                                   "--server",
                                   f->host,
                                   "--from",
                                   as_from ? SMUGGLED[i] : "a@example.org",
                                   "--to",
                                   as_from ? "ok@example.org" : SMUGGLED[i],
                                   "--body-file",
                                   body,
                                   NULL };
            json_t *j;
            int rc = cli(f, args, &j);
            if (rc != 1 || j == NULL)
                fail_msg("%s as %s: exit %d", SMUGGLED[i],
                         as_from ? "from" : "to", rc);
            assert_string_equal(jstr(j, "kind"), "local");
            assert_string_equal(jstr(j, "status"), "failed");
            assert_non_null(
                strstr(jstr(j, "error"), as_from ? "sender" : "recipient"));
            json_decref(j);
        }
    }
    assert_int_equal(peer_conn_count(f->p), 0); /* nothing was sent */
}


int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, wsetup, wteardown)
        T(test_library_refuses_parameter_smuggling),
        T(test_service_refuses_parameter_smuggling_with_422),
        T(test_cli_refuses_parameter_smuggling),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
