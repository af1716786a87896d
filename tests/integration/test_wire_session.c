/*
 * test_wire_session.c - session-level faults of the SMTP client, each
 * proven three ways against tests/fakes/fake_smtp.py: through the library
 * (smtp_send_mail, smtp_verify ...), through `mailpool serve` over HTTP
 * (the service pointed at the fake as its relay) and through
 * `mailpool send` / `mailpool verify` (the JSON they print); the three
 * ways are tests/support/wire_fx.h.  Every case asserts on the result's
 * fields and on the bytes the fake received.
 *
 *   - every AUTH line of the EHLO reply counts ("AUTH=LOGIN" then
 *     "AUTH PLAIN LOGIN": PLAIN is offered);
 *   - a refused session (4xx/5xx greeting, EHLO and HELO refused) still
 *     ends with QUIT, and a QUIT that is never answered does not hang;
 *   - a reply whose code changes mid-reply ("220-..." then "521 ...
 *     blocked") keeps the server's words and code: a refused greeting;
 *   - AUTH PLAIN with an initial response answered 334 is cancelled with
 *     "*" and the server's own reply to that is the outcome.
 *
 * Reply injection is test_wire_injection.c; status and code agreeing,
 * test_wire_status.c.
 */
#include <signal.h>

#include "tests/support/wire_fx.h"

#define PLAIN_IR "AUTH PLAIN AHUAcA==\r\n" /* "\0u\0p" */

/* ---- 10: every AUTH line counts ---- */

static void test_auth_mechanisms_are_the_union_of_every_auth_line(void **state)
{
    struct fx *f = *state;
    for (int w = LIB; w < NWAYS; w++) {
        fake(f,
             "{'extensions': ['PIPELINING', 'AUTH=LOGIN', 'AUTH PLAIN LOGIN'],"
             " 'rules': [{'match': '^AUTH PLAIN ', 'reply': '235 2.7.0 ok'}]}");
        struct job j = { .auth = 1, .mech = "PLAIN" };
        struct outcome o;
        run_way(f, (enum way)w, &j, &o);
        if (strcmp(o.status, "sent") != 0)
            fail_msg("%s: %s %d %s", WAY_NAME[w], o.status, o.code, o.error);
        assert_int_equal(o.code, 250);
        const char *all = wire_all(f);
        assert_non_null(
            strstr(all, "EHLO [127.0.0.1]\r\n" PLAIN_IR "MAIL FROM:<"));
        assert_int_equal(msgs(f, f->p, 1), 1);
    }
    /* Unconfigured: the library's choice over the union is PLAIN too. */
    fake(f, "{'extensions': ['AUTH=LOGIN', 'AUTH PLAIN'], 'rules': "
            "[{'match': '^AUTH PLAIN ', 'reply': '235 2.7.0 ok'}]}");
    struct job j = { .auth = 1 };
    struct outcome o;
    run_lib(f, &j, &o);
    assert_string_equal(o.status, "sent");
    assert_non_null(strstr(wire_all(f), PLAIN_IR));
}

/* ---- 11: a refused session ends with QUIT ---- */

static void test_refused_session_still_ends_with_quit(void **state)
{
    struct fx *f = *state;
    static const struct {
        const char *script, *wire, *text;
        int code;
    } cases[] = {
        { "{'rules': [{'match': '^GREETING$', 'reply': '554 5.7.1 no service for you'}]}",
          "QUIT\r\n", "5.7.1 no service for you", 554 },
        { "{'rules': [{'match': '^GREETING$', 'reply': '450 4.3.2 try later'}]}",
          "QUIT\r\n", "4.3.2 try later", 450 },
        { "{'rules': [{'match': '^EHLO', 'reply': '554 5.7.1 go away'}]}",
          "EHLO [127.0.0.1]\r\nQUIT\r\n", "5.7.1 go away", 554 },
        { "{'rules': [{'match': '^EHLO', 'reply': '502 5.5.2 no EHLO'},"
          " {'match': '^HELO', 'reply': '550 5.7.1 not you either'}]}",
          "EHLO [127.0.0.1]\r\nHELO [127.0.0.1]\r\nQUIT\r\n",
          "5.7.1 not you either", 550 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int w = LIB; w < NWAYS; w++) {
            gc_flush(f);
            fake(f, cases[i].script);
            struct job j = { 0 };
            struct outcome o;
            run_way(f, (enum way)w, &j, &o);
            if (o.code != cases[i].code || strcmp(o.kind, "reply") != 0 ||
                o.ntext != 1 || strcmp(o.text[0], cases[i].text) != 0 ||
                o.local_code)
                fail_msg("case %zu, %s: code %d kind %s text '%s' (%s)", i,
                         WAY_NAME[w], o.code, o.kind, o.text[0], o.error);
            assert_string_equal(o.status, "failed");
            const char *all = wire_all(f);
            if (strcmp(all, cases[i].wire) != 0)
                fail_msg("case %zu, %s: the server received '%s', want '%s'", i,
                         WAY_NAME[w], all, cases[i].wire);
        }
    }
    /* A QUIT that is never answered: the client waits a short while only. */
    fake(f, "{'rules': [{'match': '^GREETING$', 'reply': '554 5.7.1 no'},"
            " {'match': '^QUIT', 'action': 'hang'}]}");
    long long t0 = now_ms();
    struct job j = { 0 };
    struct outcome o;
    run_lib(f, &j, &o);
    assert_int_equal(o.code, 554);
    assert_in_range(now_ms() - t0, 0, 3500);
    assert_string_equal(wire_all(f), "QUIT\r\n");
}

/* ---- 12: a reply whose code changes mid-reply ---- */

static void test_greeting_code_change_keeps_the_servers_words(void **state)
{
    struct fx *f = *state;
    for (int w = LIB; w < NWAYS; w++) {
        fake(f,
             "{'rules': [{'match': '^GREETING$', 'raw': '220-mx.example.org "
             "ESMTP\\r\\n521 5.7.1 blocked: listed at rbl.example\\r\\n'}]}");
        struct job j = { 0 };
        struct outcome o;
        run_way(f, (enum way)w, &j, &o);
        if (o.code != 521 || strcmp(o.kind, "reply") != 0 || o.ntext != 2)
            fail_msg("%s: code %d kind %s lines %zu (%s)", WAY_NAME[w], o.code,
                     o.kind, o.ntext, o.error);
        assert_string_equal(o.text[0], "mx.example.org ESMTP");
        assert_string_equal(o.text[1], "5.7.1 blocked: listed at rbl.example");
        assert_string_equal(o.enhanced, "5.7.1");
        assert_int_equal(o.local_code, 0);
        assert_string_equal(o.status, "failed");
        assert_non_null(strstr(o.error, "refused"));
        assert_string_equal(wire_all(f), "QUIT\r\n"); /* no EHLO */
    }
    /* The other way round, a mixed reply ending in success is never taken
       as one: a protocol error that still shows the lines. */
    fake(
        f,
        "{'rules': [{'match': '^EHLO', 'raw': '554-no\\r\\n250 fake.test\\r\\n'}]}");
    struct job j = { 0 };
    struct outcome o;
    run_lib(f, &j, &o);
    assert_string_equal(o.kind, "protocol");
    assert_int_equal(o.code, 451);
    assert_int_equal(o.local_code, 1);
    assert_int_equal(o.ntext, 2);
    assert_string_equal(wire_all(f), "EHLO [127.0.0.1]\r\n");
}

/* ---- 17: AUTH PLAIN answered 334 ---- */

static void test_unexpected_334_to_auth_plain_is_cancelled_with_star(
    void **state)
{
    struct fx *f = *state;
    for (int w = LIB; w < NWAYS; w++) {
        fake(
            f,
            "{'extensions': ['PIPELINING', 'AUTH PLAIN LOGIN'], 'rules': ["
            "{'match': '^AUTH PLAIN', 'raw': '334 \\r\\n'},"
            "{'match': '^\\\\*$', 'reply': '501 5.7.0 authentication cancelled'}]}");
        struct job j = { .auth = 1, .mech = "PLAIN" };
        struct outcome o;
        run_way(f, (enum way)w, &j, &o);
        if (o.code != 501 || strcmp(o.kind, "auth") != 0 || o.ntext != 1 ||
            o.local_code)
            fail_msg("%s: code %d kind %s (%s)", WAY_NAME[w], o.code, o.kind,
                     o.error);
        assert_string_equal(o.text[0], "5.7.0 authentication cancelled");
        assert_string_equal(o.enhanced, "5.7.0");
        assert_string_equal(o.status, "failed");
        assert_string_equal(wire_all(f),
                            "EHLO [127.0.0.1]\r\n" PLAIN_IR "*\r\nQUIT\r\n");
    }
    /* LOGIN: a third 334 after the password is cancelled the same way. */
    fake(f, "{'extensions': ['AUTH LOGIN'], 'rules': ["
            "{'match': '^(AUTH LOGIN|dQ==|cA==)$', 'raw': '334 \\r\\n'},"
            "{'match': '^\\\\*$', 'reply': '501 5.7.0 cancelled'}]}");
    struct job j = { .auth = 1, .mech = "LOGIN" };
    struct outcome o;
    run_lib(f, &j, &o);
    assert_int_equal(o.code, 501);
    assert_string_equal(wire_all(f),
                        "EHLO [127.0.0.1]\r\nAUTH LOGIN\r\ndQ==\r\n"
                        "cA==\r\n*\r\nQUIT\r\n");
}

/* ---- fixture ---- */

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_auth_mechanisms_are_the_union_of_every_auth_line),
        T(test_refused_session_still_ends_with_quit),
        T(test_greeting_code_change_keeps_the_servers_words),
        T(test_unexpected_334_to_auth_plain_is_cancelled_with_star),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
