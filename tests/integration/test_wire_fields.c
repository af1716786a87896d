/*
 * test_wire_fields.c - repeated fields, controls and query arguments,
 * proven on the bytes the relay received, through the three doors a user
 * meets: the library (smtp_send_mail), `mailpool serve` over HTTP, and the
 * `mailpool send` / `verify` / `help` command line.  A field RFC 5322 3.6
 * allows once, given twice under any case, is refused naming both; DEL
 * and C1 controls in a value are refused; a non-ASCII VRFY/EXPN argument
 * goes only with SMTPUTF8, a non-ASCII HELP topic never.
 *
 * The relay is tests/fakes/fake_smtp.py (it keeps every byte); the
 * fixture is tests/support/wire_msg_fx.h.  Each test starts its own fake
 * and, when it needs one, its own service; the teardown stops both, and
 * fails when the service does not exit 0.
 */
#include "tests/support/wire_msg_fx.h"

/* ---- Item 14: repeated fields, controls, query arguments ---- */

static void test_library_refuses_repeated_fields_and_controls(void **state)
{
    struct wx *w = *state;
    struct fx *f = &w->f;
    fake(f, NULL);
    struct smtp_header twice[] = { { "From", "a@example.org" },
                                   { "Subject", "s" },
                                   { "from", "e@evil.example" } };
    assert_int_equal(
        send1(f, "a@example.org", "b@example.org", twice, 3, &HELLO),
        SMTP_ERR_LOCAL);
    assert_non_null(strstr(f->res.message, "headers 1 (From) and 3 (from)"));
    struct smtp_header del[] = { { "Subject", "a\x7f"
                                              "b" } };
    assert_int_equal(send1(f, "a@example.org", "b@example.org", del, 1, &HELLO),
                     SMTP_ERR_LOCAL);
    assert_non_null(strstr(f->res.message, "control character"));
    struct smtp_header nel[] = { { "Subject", "a\xc2\x85"
                                              "Bcc: e@evil.example" } };
    assert_int_equal(send1(f, "a@example.org", "b@example.org", nel, 1, &HELLO),
                     SMTP_ERR_LOCAL);
    assert_no_transaction(f);
}

static void test_service_refuses_repeated_fields_and_controls(void **state)
{
    struct wx *w = *state;
    struct fx *f = &w->f;
    fake(f, NULL);
    svc(w);
    json_t *p = post(
        w, "/v1/messages",
        "{\"from\":\"a@example.org\",\"to\":[\"b@example.org\"],"
        "\"headers\":{\"From\":\"a@example.org\",\"Subject\":\"s\","
        "\"from\":\"e@evil.example\"},\"body\":\"hi\"}",
        422);
    assert_422_names(p, "headers.from", "repeats headers.From");
    json_decref(p);
    p = post(
        w, "/v1/messages",
        "{\"from\":\"a@example.org\",\"to\":[\"b@example.org\"],"
        "\"headers\":[[\"Subject\",\"one\"],[\"X-A\",\"b\"],[\"SUBJECT\",\"two\"],"
        "[\"Message-Id\",\"<a@b>\"],[\"MESSAGE-ID\",\"<c@d>\"]],\"body\":\"hi\"}",
        422);
    assert_422_names(p, "headers[2][0]", "repeats headers[0][0]");
    assert_422_names(p, "headers[4][0]", "repeats headers[3][0]");
    json_decref(p);
    p = post(w, "/v1/messages",
             "{\"from\":\"a@example.org\",\"to\":[\"b@example.org\"],"
             "\"headers\":{\"Subject\":\"a\\u007fb\",\"X-C1\":\"\\u0085x\"}}",
             422);
    assert_422_names(p, "headers.Subject", "control character");
    assert_422_names(p, "headers.X-C1", "control character");
    json_decref(p);
    p = post(w, "/v1/help", "{\"topic\":\"Gr\\u00fc\\u00dfe\"}", 422);
    assert_422_names(p, "topic", "ASCII");
    json_decref(p);
    assert_no_transaction(f);
}

/* A non-ASCII VRFY argument without SMTPUTF8: refused before the command
   (no VRFY on the wire). */
static void test_service_utf8_vrfy_needs_smtputf8(void **state)
{
    struct wx *w = *state;
    struct fx *f = &w->f;
    fake(f, NULL);
    svc(w);
    json_t *j = post(w, "/v1/verify",
                     "{\"address\":\"j\\u00f6rg@example.org\"}", 200);
    assert_string_equal(jstr(j, "kind"), "local");
    assert_non_null(strstr(jstr(j, "error"), "SMTPUTF8"));
    json_decref(j);
    j = post(w, "/v1/expand", "{\"list\":\"\\u00e9quipe\"}", 200);
    assert_string_equal(jstr(j, "kind"), "local");
    json_decref(j);
    const char *b = all_bytes(f);
    assert_null(strstr(b, "VRFY"));
    assert_null(strstr(b, "EXPN"));
}

static void test_service_utf8_vrfy_goes_with_smtputf8(void **state)
{
    struct wx *w = *state;
    struct fx *f = &w->f;
    fake(f, "{" UTF8_EXT "}");
    svc(w);
    json_t *j = post(w, "/v1/verify",
                     "{\"address\":\"j\\u00f6rg@example.org\"}", 200);
    assert_string_equal(jstr(j, "kind"), "ok");
    json_decref(j);
    j = post(w, "/v1/verify", "{\"address\":\"bob\"}", 200);
    json_decref(j);
    const char *b = all_bytes(f);
    assert_non_null(strstr(b, "\r\nVRFY j\xc3\xb6rg@example.org SMTPUTF8\r\n"));
    assert_non_null(strstr(b, "\r\nVRFY bob\r\n"));
}

/* `mailpool send` with From twice (another case) and with DEL in a value:
   exit 1, kind "local", the first naming both fields. */
static void cli_refuses_repeated_from_and_del(struct fx *f, const char *body)
{
    const char *const dup_more[] = { "--header",    "From: a@example.org",
                                     "--header",    "FROM: e@evil.example",
                                     "--body-file", body,
                                     NULL };
    const char *const *dup = send_args(f, dup_more);
    json_t *j;
    assert_int_equal(cli(f, dup, &j), 1);
    assert_non_null(j);
    assert_string_equal(jstr(j, "kind"), "local");
    assert_non_null(strstr(jstr(j, "error"), "headers 1 (From) and 2 (FROM)"));
    json_decref(j);
    const char *const del_more[] = { "--header", "Subject: a\x7f",
                                     "--body-file", body, NULL };
    const char *const *del = send_args(f, del_more);
    assert_int_equal(cli(f, del, &j), 1);
    assert_string_equal(jstr(j, "kind"), "local");
    json_decref(j);
}

/* `mailpool verify` of a non-ASCII address without SMTPUTF8 and `mailpool
   help` of a non-ASCII topic: exit 1, kind "local". */
static void cli_refuses_non_ascii_queries(struct fx *f)
{
    json_t *j;
    const char *vrfy[] = { "verify", "j\xc3\xb6rg@example.org", "--server",
                           f->host, NULL };
    assert_int_equal(cli(f, vrfy, &j), 1);
    assert_string_equal(jstr(j, "kind"), "local");
    assert_non_null(strstr(jstr(j, "error"), "SMTPUTF8"));
    json_decref(j);
    const char *help[] = { "help",
                           "Gr\xc3\xbc\xc3\x9f"
                           "e",
                           "--server", f->host, NULL };
    assert_int_equal(cli(f, help, &j), 1);
    assert_string_equal(jstr(j, "kind"), "local");
    json_decref(j);
}

static void test_cli_refuses_repeated_fields_and_non_ascii_queries(void **state)
{
    struct wx *w = *state;
    struct fx *f = &w->f;
    fake(f, NULL);
    const char *body = file_in(f, "body.txt", "hi\n");
    cli_refuses_repeated_from_and_del(f, body);
    cli_refuses_non_ascii_queries(f);
    assert_no_transaction(f);
    const char *b = all_bytes(f);
    assert_null(strstr(b, "VRFY"));
    assert_null(strstr(b, "HELP"));
    /* With SMTPUTF8 offered the argument goes, with the parameter. */
    fake(f, "{" UTF8_EXT "}");
    const char *vrfy2[] = { "verify", "j\xc3\xb6rg@example.org", "--server",
                            f->host, NULL };
    json_t *j;
    assert_int_equal(cli(f, vrfy2, &j), 0);
    json_decref(j);
    assert_string_equal(
        wire(f, f->p, 1),
        "EHLO [127.0.0.1]\r\nVRFY j\xc3\xb6rg@example.org SMTPUTF8\r\n"
        "QUIT\r\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, wsetup, wteardown)
        T(test_library_refuses_repeated_fields_and_controls),
        T(test_service_refuses_repeated_fields_and_controls),
        T(test_service_utf8_vrfy_needs_smtputf8),
        T(test_service_utf8_vrfy_goes_with_smtputf8),
        T(test_cli_refuses_repeated_fields_and_non_ascii_queries),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
