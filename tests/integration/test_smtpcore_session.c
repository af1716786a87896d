/*
 * test_smtpcore_session.c - smtpcore against real peers, the session:
 * multiline query replies, 421 at every step, stalls, garbage replies,
 * HELO fallback, transactions, connection reuse and liveness.  The
 * message itself is test_smtpcore.c's; smtp-sink, aiosmtpd, host parsing,
 * the state, the trace and TCP_NODELAY are test_smtpcore_conn.c's.  Every
 * test starts its own peer(s); teardown stops them.
 */
#include "tests/support/smtp_fx.h"

/* ---- queries: multiline replies line by line --------------------------- */

static void test_vrfy_expn_help_keep_multiline_replies(void **state)
{
    struct fx *f = *state;
    fake(
        f,
        "{'rules': [{'match': '^VRFY', 'reply': '250 first\\n250 second\\n250 third'},"
        " {'match': '^EXPN', 'reply': '550-5.1.1 no\\n550 5.1.1 such list'},"
        " {'match': '^HELP$', 'reply': '214-2.0.0 a\\n214-b\\n214'}]}");
    assert_int_equal(smtp_verify("bob", f->host, &f->opts, &f->res), SMTP_OK);
    assert_int_equal(f->res.code, 250);
    assert_int_equal(f->res.reply.nlines, 3);
    assert_string_equal(f->res.reply.lines[0], "first");
    assert_string_equal(f->res.reply.lines[2], "third");

    assert_int_equal(smtp_expand("staff", f->host, &f->opts, &f->res),
                     SMTP_ERR_REPLY);
    assert_int_equal(f->res.code, 550);
    assert_int_equal(f->res.reply.nlines, 2);
    assert_string_equal(f->res.reply.lines[0], "5.1.1 no");
    assert_string_equal(f->res.reply.lines[1], "5.1.1 such list");
    assert_string_equal(f->res.reply.enhanced, "5.1.1");

    assert_int_equal(smtp_get_help(f->host, NULL, &f->opts, &f->res), SMTP_OK);
    assert_int_equal(f->res.code, 214);
    assert_int_equal(f->res.reply.nlines, 3);
    assert_string_equal(f->res.reply.lines[1], "b");
    assert_string_equal(f->res.reply.lines[2], ""); /* bare "214" */
    assert_int_equal(smtp_get_help(f->host, "MAIL", &f->opts, &f->res),
                     SMTP_OK);
    assert_int_equal(f->res.reply.nlines, 2); /* fake's default */

    assert_string_equal(wire(f, f->p, 1),
                        "EHLO [127.0.0.1]\r\nVRFY bob\r\nQUIT\r\n");
    assert_string_equal(wire(f, f->p, 2),
                        "EHLO [127.0.0.1]\r\nEXPN staff\r\nQUIT\r\n");
    assert_string_equal(wire(f, f->p, 3),
                        "EHLO [127.0.0.1]\r\nHELP\r\nQUIT\r\n");
    assert_string_equal(wire(f, f->p, 4),
                        "EHLO [127.0.0.1]\r\nHELP MAIL\r\nQUIT\r\n");
    assert_int_equal(smtp_verify("bob\r\nRSET", f->host, &f->opts, &f->res),
                     SMTP_ERR_LOCAL);
    assert_int_equal(peer_conn_count(f->p), 4);
}

/* ---- 421 at every step ------------------------------------------------- */

static void test_421_at_each_step_ends_session_and_sends_nothing_more(
    void **state)
{
    struct fx *f = *state;
    static const struct {
        const char *match, *pipe, *tail;
    } cases[] = {
        { "^GREETING$", NOPIPE, "" },
        { "^EHLO", NOPIPE, "EHLO [127.0.0.1]\r\n" },
        { "^MAIL", NOPIPE, "EHLO [127.0.0.1]\r\nMAIL FROM:<a@x>\r\n" },
        { "^RCPT", NOPIPE, "MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n" },
        { "^DATA", NOPIPE, "RCPT TO:<b@y>\r\nDATA\r\n" },
        { "^DOT$", NOPIPE, "\r\nhello\r\n.\r\n" },
        { "^MAIL", "'extensions': ['PIPELINING']",
          "RCPT TO:<b@y>\r\nDATA\r\n" },
        { "^DATA", "'extensions': ['PIPELINING']",
          "RCPT TO:<b@y>\r\nDATA\r\n" },
    };
    char bad[1024] = "";
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char script[300], *e = bad + strlen(bad);
        size_t room = sizeof bad - strlen(bad);
        snprintf(script, sizeof script,
                 "{%s, 'rules': [{'match': '%s', "
                 "'reply': '421 4.3.2 shutting down'}]}",
                 cases[i].pipe, cases[i].match);
        fake(f, script);
        int rc = send1(f, "a@x", "b@y", SUBJ, 1, &HELLO);
        const char *w = wire(f, f->p, 1); /* the client hung up */
        if (rc != SMTP_ERR_REPLY || f->res.code != 421 ||
            f->res.status != SMTP_DELIVERY_FAILED || f->res.reply.nlines != 1 ||
            strcmp(f->res.reply.lines[0], "4.3.2 shutting down") != 0 ||
            strcmp(f->res.reply.enhanced, "4.3.2") != 0)
            snprintf(e, room, "[%zu %s: kind %s code %d status %s: %s] ", i,
                     cases[i].match, smtp_kind_name(f->res.kind), f->res.code,
                     smtp_delivery_name(f->res.status), f->res.message);
        else if (!ends_with(w, cases[i].tail))
            snprintf(e, room, "[%zu %s: more was sent after the 421] ", i,
                     cases[i].match);
    }
    /* A drop after the final dot: the outcome is unknown, never "failed". */
    fake(f, "{'rules': [{'match': '^DOT$', 'action': 'drop'}]}");
    assert_int_equal(send1(f, "a@x", "b@y", SUBJ, 1, &HELLO), SMTP_ERR_CONN);
    assert_int_equal(f->res.status, SMTP_DELIVERY_UNKNOWN);
    assert_int_equal(f->res.code, 421); /* synthesized: 4.4.2 */
    assert_string_equal(f->res.enhanced, "4.4.2");
    assert_int_equal(f->res.reply.nlines, 0);
    assert_true(ends_with(wire(f, f->p, 1), "\r\n.\r\n"));
    if (bad[0])
        fail_msg("%s", bad);
}

/* ---- stalls ------------------------------------------------------------ */

static void test_stalls_time_out_naming_the_command(void **state)
{
    struct fx *f = *state;
    f->opts.greeting_timeout_ms = f->opts.command_timeout_ms = 1000;
    f->opts.data_term_timeout_ms = 1000;

    fake(f, "{'rules': [{'match': '^GREETING$', 'action': 'hang'}]}");
    long long t0 = now_ms();
    assert_int_equal(send1(f, "a@x", "b@y", SUBJ, 1, &HELLO), SMTP_ERR_TIMEOUT);
    assert_in_range(now_ms() - t0, 900, 3000);
    assert_string_equal(f->res.command, "greeting");
    assert_string_equal(wire(f, f->p, 1), "");

    fake(f, "{'rules': [{'match': '^MAIL', 'action': 'hang'}]}");
    assert_int_equal(send1(f, "a@x", "b@y", SUBJ, 1, &HELLO), SMTP_ERR_TIMEOUT);
    assert_string_equal(f->res.command, "MAIL");
    assert_int_equal(f->res.status, SMTP_DELIVERY_FAILED);

    /* Half a reply, then silence: a stall mid-reply. */
    fake(f, "{'rules': [{'match': '^EHLO', 'raw': '250-fake.test\\r\\n'}]}");
    assert_int_equal(send1(f, "a@x", "b@y", SUBJ, 1, &HELLO), SMTP_ERR_TIMEOUT);
    assert_string_equal(f->res.command, "EHLO");

    fake(f, "{'rules': [{'match': '^DOT$', 'action': 'delay:3'}]}");
    t0 = now_ms();
    assert_int_equal(send1(f, "a@x", "b@y", SUBJ, 1, &HELLO), SMTP_ERR_TIMEOUT);
    assert_in_range(now_ms() - t0, 900, 2900);
    assert_int_equal(f->res.status, SMTP_DELIVERY_UNKNOWN);
    assert_int_equal(f->res.code, 421); /* synthesized: 4.4.2 */
    assert_int_equal(f->res.code_local, 1);
    assert_true(ends_with(wire(f, f->p, 1), "\r\n.\r\n"));
}

/* ---- garbage ----------------------------------------------------------- */

static void test_garbage_replies_are_protocol_errors(void **state)
{
    struct fx *f = *state;
    static const struct {
        const char *rule, *cmd, *why;
    } cases[] = {
        { "'match': '^GREETING$', 'raw': 'HTTP/1.1 400 Bad Request\\r\\n\\r\\n'",
          "greeting", "malformed" },
        { "'match': '^EHLO', 'raw': 'x', 'repeat': 102400, 'prefix': '250 ', "
          "'suffix': '\\r\\n'",
          "EHLO", "line too long" }, /* 100 KiB line */
        { "'match': '^EHLO', 'flood': '250-more', 'max_bytes': 1048576", "EHLO",
          "more than 100 lines" }, /* never ends */
        { "'match': '^EHLO', 'raw': '250-x\\r\\n', 'repeat': 100, "
          "'suffix': '250 y\\r\\n'",
          "EHLO", "more than 100 lines" },
        { NULL, "EHLO", "longer than 65536" }, /* 20 lines of 4 KB */
        { "'match': '^EHLO', 'reply': '250 ok', 'bare_lf': true", "EHLO",
          "bare LF" },
        { "'match': '^EHLO', 'raw': '600 what\\r\\n'", "EHLO", "malformed" },
        { "'match': '^EHLO', 'raw': '199 early\\r\\n'", "EHLO", "malformed" },
        { "'match': '^EHLO', 'raw': '250-a\\r\\n251 b\\r\\n'", "EHLO",
          "code changed" },
        { "'match': '^EHLO', 'raw': '250x\\r\\n'", "EHLO", "malformed" },
        { "'match': '^EHLO', 'raw': '250 a\\u0000b\\r\\n'", "EHLO", "NUL" },
        { "'match': '^EHLO', 'raw': '250 a\\rb\\r\\n'", "EHLO", "bare CR" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *script = keep(f, malloc(4400));
        if (cases[i].rule != NULL) {
            snprintf(script, 4400, "{'rules': [{%s}]}", cases[i].rule);
        } else {
            char big[4001];
            memset(big, 'y', 4000);
            big[4000] = '\0';
            snprintf(script, 4400,
                     "{'rules': [{'match': '^EHLO', 'raw': '250-%s\\r\\n', "
                     "'repeat': 20, 'suffix': '250 y\\r\\n'}]}",
                     big);
        }
        fake(f, script);
        long long t0 = now_ms();
        int rc = send1(f, "a@x", "b@y", SUBJ, 1, &HELLO);
        if (rc != SMTP_ERR_PROTO || strcmp(f->res.command, cases[i].cmd) != 0 ||
            !strstr(f->res.message, cases[i].why))
            fail_msg("case %zu: kind %s command '%s' (%s)", i,
                     smtp_kind_name(f->res.kind), f->res.command,
                     f->res.message);
        assert_true(now_ms() - t0 < 3000);
        assert_int_equal(f->res.status, SMTP_DELIVERY_FAILED);
        assert_null(strstr(wire(f, f->p, 1), "MAIL"));
    }
    /* The whole greeting in bare LFs, and a 100-line reply is still fine. */
    fake(f, "{'line_ending': '\\n'}");
    assert_int_equal(send1(f, "a@x", "b@y", SUBJ, 1, &HELLO), SMTP_ERR_PROTO);
    assert_string_equal(f->res.command, "greeting");
    fake(f, "{'rules': [{'match': '^EHLO', 'raw': '250-x\\r\\n', 'repeat': 99, "
            "'suffix': '250 y\\r\\n'}]}");
    assert_int_equal(send1(f, "a@x", "b@y", SUBJ, 1, &HELLO), SMTP_OK);
}

/* ---- HELO fallback ----------------------------------------------------- */

static void test_ehlo_500_or_502_falls_back_to_helo(void **state)
{
    struct fx *f = *state;
    static const char *const codes[] = { "500 5.5.1 unrecognized",
                                         "502 5.5.1 no" };
    for (int i = 0; i < 2; i++) {
        char script[200];
        snprintf(script, sizeof script,
                 "{'rules': [{'match': '^EHLO', 'reply': '%s'}]}", codes[i]);
        fake(f, script);
        assert_int_equal(send1(f, "a@x", "b@y", SUBJ, 1, &HELLO), SMTP_OK);
        const char *w = wire(f, f->p, 1);
        assert_true(starts_with(
            w, "EHLO [127.0.0.1]\r\nHELO [127.0.0.1]\r\nMAIL FROM:<a@x>\r\n"
               "RCPT TO:<b@y>\r\nDATA\r\n"));
        assert_int_equal(msgs(f, f->p, 1), 1);
    }
    fake(f, "{'rules': [{'match': '^EHLO', 'reply': '554 5.7.1 go away'}]}");
    assert_int_equal(send1(f, "a@x", "b@y", SUBJ, 1, &HELLO), SMTP_ERR_REPLY);
    assert_int_equal(f->res.code, 554);
    assert_null(strstr(wire(f, f->p, 1), "HELO"));
}

/* ---- transactions ------------------------------------------------------ */

struct txns {
    struct smtp_txn *t[8];
    size_t n;
};

static void txfree(struct txns *v)
{
    for (size_t i = 0; i < v->n; i++)
        smtp_txn_free(v->t[i]);
    v->n = 0;
}

/* Connection 1 of the seed rules: stops at the 550, then QUIT and
   closed. */
static void txn_stop_at_a_550(struct fx *f, struct txns *v)
{
    struct smtp_conn *c = conn_open(f);
    v->t[0] = smtp_ehlo("client.test"), v->t[1] = smtp_mail("a@x");
    v->t[2] = smtp_rcpt("bad@y"), v->t[3] = smtp_rcpt("good@y"), v->n = 4;
    assert_int_equal(
        smtp_transactions(c, &f->res, v->t[0], v->t[1], v->t[2], v->t[3], NULL),
        SMTP_ERR_REPLY);
    assert_int_equal(f->res.code, 550);
    assert_string_equal(f->res.reply.lines[0], "5.1.1 no such user");
    assert_int_equal(smtp_conn_is_open(c), 0);
    smtp_conn_free(c);
    txfree(v);
    assert_string_equal(wire(f, f->p, 1),
                        "EHLO client.test\r\nMAIL FROM:<a@x>\r\n"
                        "RCPT TO:<bad@y>\r\nQUIT\r\n");
}

/* Connection 2: _no_close leaves it open; SAML/SOML/SEND; last reply
   wins; quit. */
static void txn_no_close_leaves_it_open(struct fx *f, struct txns *v)
{
    struct smtp_conn *c = conn_open(f);
    v->t[0] = smtp_ehlo(NULL), v->t[1] = smtp_saml("a@x"),
    v->t[2] = smtp_soml("a@x");
    v->t[3] = smtp_send("a@x"), v->t[4] = smtp_rset(),
    v->t[5] = smtp_vrfy("bob"), v->n = 6;
    assert_int_equal(smtp_transactions_no_close(c, &f->res, v->t[0], v->t[1],
                                                v->t[2], v->t[3], v->t[4],
                                                v->t[5], NULL),
                     SMTP_OK);
    assert_int_equal(f->res.code, 252);
    assert_string_equal(f->res.reply.lines[0],
                        "2.0.0 Cannot VRFY user, but will accept message");
    assert_int_equal(smtp_conn_is_open(c), 1);
    txfree(v);
    v->t[0] = smtp_noop(), v->t[1] = smtp_quit(), v->n = 2;
    assert_int_equal(smtp_transactions_no_close(c, &f->res, v->t[0], NULL),
                     SMTP_OK);
    assert_int_equal(f->res.code, 250);
    assert_int_equal(smtp_transactions_no_close(c, &f->res, v->t[1], NULL),
                     SMTP_OK);
    assert_int_equal(f->res.code, 221);
    assert_int_equal(smtp_conn_is_open(c), 0);
    smtp_conn_free(c);
    txfree(v);
    assert_string_equal(
        wire(f, f->p, 2),
        "EHLO localhost\r\nSAML FROM:<a@x>\r\n"
        "SOML FROM:<a@x>\r\nSEND FROM:<a@x>\r\nRSET\r\nVRFY bob\r\n"
        "NOOP\r\nQUIT\r\n");
}

/* Connection 3: smtp_data sends headers and a stuffed body. */
static void txn_data_sends_a_stuffed_body(struct fx *f, struct txns *v)
{
    struct smtp_conn *c = conn_open(f);
    struct smtp_body b = { .text = ".x\n.\nend", .len = 8 };
    v->t[0] = smtp_ehlo(NULL), v->t[1] = smtp_mail("a@x"),
    v->t[2] = smtp_rcpt("b@y");
    v->t[3] = smtp_data(SUBJ, 1, &b), v->n = 4;
    assert_int_equal(
        smtp_transactions(c, &f->res, v->t[0], v->t[1], v->t[2], v->t[3], NULL),
        SMTP_OK);
    assert_int_equal(f->res.code, 250);
    smtp_conn_free(c);
    txfree(v);
    assert_int_equal(msgs(f, f->p, 1), 1);
    assert_non_null(strstr((const char *)f->m[0].data, "Subject: hi\r\n"));
    assert_string_equal(body_of(&f->m[0]), "..x\r\n..\r\nend\r\n");
    assert_true(ends_with(wire(f, f->p, 3), "end\r\n.\r\nQUIT\r\n"));
}

/* Connections 4 and 5: a 421 mid-sequence stops (no QUIT on a closed
   socket), a 221 too. */
static void txn_421_or_221_mid_sequence_stops(struct fx *f, struct txns *v)
{
    struct smtp_conn *c = conn_open(f);
    v->t[0] = smtp_ehlo(NULL), v->t[1] = smtp_noop(), v->t[2] = smtp_rset(),
    v->n = 3;
    assert_int_equal(
        smtp_transactions(c, &f->res, v->t[0], v->t[1], v->t[2], NULL),
        SMTP_ERR_REPLY);
    assert_int_equal(f->res.code, 421);
    smtp_conn_free(c);
    assert_string_equal(wire(f, f->p, 4), "EHLO localhost\r\nNOOP\r\n");
    /* 5: a 221 mid-sequence stops too, with its code. */
    c = conn_open(f);
    assert_int_equal(
        smtp_transactions(c, &f->res, v->t[0], v->t[2], v->t[1], NULL),
        SMTP_OK);
    assert_int_equal(f->res.code, 221);
    assert_int_equal(smtp_conn_is_open(c), 0);
    smtp_conn_free(c);
    txfree(v);
    assert_string_equal(wire(f, f->p, 5), "EHLO localhost\r\nRSET\r\n");
}

/* Connection 6: a bad argument is refused locally; nothing of it is
   sent. */
static void txn_bad_argument_refused_locally(struct fx *f, struct txns *v)
{
    struct smtp_conn *c = conn_open(f);
    v->t[0] = smtp_ehlo(NULL), v->t[1] = smtp_mail("a@x>\r\nRCPT TO:<evil@z"),
    v->n = 2;
    assert_int_equal(smtp_transactions(c, &f->res, v->t[0], v->t[1], NULL),
                     SMTP_ERR_LOCAL);
    smtp_conn_free(c);
    txfree(v);
    assert_string_equal(wire(f, f->p, 6), "EHLO localhost\r\nQUIT\r\n");
}

static void test_transactions_follow_the_seed_rules(void **state)
{
    struct fx *f = *state;
    fake(
        f,
        "{'rules': [{'match': '^RCPT TO:<bad', 'reply': '550 5.1.1 no such user'},"
        " {'match': '^(SAML|SOML|SEND) FROM:', 'reply': '250 2.1.0 Ok'},"
        " {'match': '^NOOP', 'conn': 4, 'reply': '421 4.3.2 bye'},"
        " {'match': '^RSET', 'conn': 5, 'reply': '221 2.0.0 bye'}]}");
    struct txns v = { 0 };
    txn_stop_at_a_550(f, &v);
    txn_no_close_leaves_it_open(f, &v);
    txn_data_sends_a_stuffed_body(f, &v);
    txn_421_or_221_mid_sequence_stops(f, &v);
    txn_bad_argument_refused_locally(f, &v);
}

/* ---- connection reuse and liveness ------------------------------------ */

static void test_reused_connection_sends_rset_between_messages(void **state)
{
    struct fx *f = *state;
    fake(f, NULL);
    struct smtp_conn *c = conn_open(f);
    assert_int_equal(smtp_conn_hello(c, &f->res), SMTP_OK);
    assert_true(smtp_conn_has_ext(c, "PIPELINING"));
    assert_string_equal(smtp_conn_ext_param(c, "SIZE"), "10485760");
    const char *to[] = { "b@y" };
    for (int i = 0; i < 3; i++) {
        int rc = smtp_conn_send_mail(c, "a@x", to, 1, SUBJ, 1, &HELLO, NULL,
                                     &f->res);
        assert_int_equal(rc, SMTP_OK);
        assert_int_equal(f->res.status, SMTP_DELIVERY_SENT);
    }
    assert_int_equal(smtp_conn_messages(c), 3);
    smtp_conn_quit(c);
    const char *w = wire(f, f->p, 1);
    assert_int_equal(count(w, "MAIL FROM:<a@x>"), 3);
    assert_int_equal(count(w, "RSET\r\n"), 2);
    assert_int_equal(count(w, "\r\nRSET\r\nMAIL FROM:<a@x>"), 2);
    assert_true(strstr(w, "RSET") > strstr(w, "MAIL FROM"));
    assert_true(ends_with(w, "QUIT\r\n"));
    assert_int_equal(msgs(f, f->p, 3), 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(f->m[i].conn, 1);
    assert_int_equal(peer_conn_count(f->p), 1);
}

/* smtp_conn_send_mails: each final dot carries the next envelope.  The
   relay drops the connection on the first dot without a reply: that
   message is unknown; the next one's envelope was already on the wire
   (proof of the chain) but none of its data, so it failed and may be
   retried; nothing after it was sent. */
static void test_chain_dot_unanswered_next_envelope_sent_but_no_data(
    void **state)
{
    struct fx *f = *state;
    fake(f, "{'rules': [{'match': '^DOT$', 'times': 1, 'action': 'drop'}]}");
    struct smtp_conn *c = conn_open(f);
    assert_int_equal(smtp_conn_hello(c, &f->res), SMTP_OK);
    const char *to[] = { "b@y" };
    static const struct smtp_body body[3] = {
        { .text = "first-body\r\n", .len = 12 },
        { .text = "second-body\r\n", .len = 13 },
        { .text = "third-body\r\n", .len = 12 },
    };
    struct smtp_message mails[3];
    struct smtp_result r[3];
    struct smtp_result *rp[3] = { &r[0], &r[1], &r[2] };
    for (int i = 0; i < 3; i++) {
        mails[i] = (struct smtp_message){
            "a@x", to, 1, SUBJ, 1, &body[i], NULL
        };
        smtp_result_init(&r[i]);
    }
    size_t n = smtp_conn_send_mails(c, mails, 3, rp, NULL, NULL);
    assert_true(n >= 2);
    assert_int_equal(r[0].status, SMTP_DELIVERY_UNKNOWN);
    assert_int_equal(r[1].status, SMTP_DELIVERY_FAILED);
    assert_int_equal(r[1].naccepted, 0);
    if (n == 3 && r[2].status != SMTP_DELIVERY_FAILED)
        fail_msg("third: status %d kind %s code %d command %s: %s", r[2].status,
                 smtp_kind_name(r[2].kind), r[2].code, r[2].command,
                 r[2].message);
    smtp_conn_quit(c);
    const char *w = wire(f, f->p, 1);
    assert_non_null(strstr(w, "first-body\r\n.\r\nRSET\r\nMAIL FROM:<a@x>"));
    assert_null(strstr(w, "second-body"));
    assert_null(strstr(w, "third-body"));
    assert_int_equal(msgs(f, f->p, 1), 0);
    for (int i = 0; i < 3; i++)
        smtp_result_clear(&r[i]);
}

/* A chain of five on a correct relay: each delivered once, in order, on one
   connection, with one RSET between each two. */
static void test_chain_of_five_each_delivered_once_in_order(void **state)
{
    struct fx *f = *state;
    fake(f, NULL);
    struct smtp_conn *c = conn_open(f);
    assert_int_equal(smtp_conn_hello(c, &f->res), SMTP_OK);
    const char *to[] = { "b@y" };
    char text[5][32];
    struct smtp_body body[5];
    struct smtp_message mails[5];
    struct smtp_result r[5], *rp[5];
    for (int i = 0; i < 5; i++) {
        int len = snprintf(text[i], sizeof text[i], "body-%d\r\n", i);
        body[i] = (struct smtp_body){ .text = text[i], .len = (size_t)len };
        mails[i] = (struct smtp_message){
            "a@x", to, 1, SUBJ, 1, &body[i], NULL
        };
        smtp_result_init(&r[i]);
        rp[i] = &r[i];
    }
    assert_int_equal(smtp_conn_send_mails(c, mails, 5, rp, NULL, NULL), 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(r[i].status, SMTP_DELIVERY_SENT);
    smtp_conn_quit(c);
    assert_int_equal(msgs(f, f->p, 5), 5);
    for (int i = 0; i < 5; i++) {
        char want[32];
        snprintf(want, sizeof want, "body-%d\r\n", i);
        assert_non_null(strstr((const char *)f->m[i].data, want));
        assert_int_equal(f->m[i].conn, 1);
    }
    assert_int_equal(count(wire(f, f->p, 1), "RSET\r\n"), 4);
    for (int i = 0; i < 5; i++)
        smtp_result_clear(&r[i]);
}

static void test_check_idle_sees_unasked_421(void **state)
{
    struct fx *f = *state;
    fake(f, "{'rules': [{'match': '^DOT$', 'conn': 2, "
            "'inject': '421 4.4.2 idle timeout\\r\\n'}]}");
    const char *to[] = { "b@y" };
    for (int conn = 1; conn <= 2; conn++) {
        struct smtp_conn *c = conn_open(f);
        assert_int_equal(smtp_conn_hello(c, &f->res), SMTP_OK);
        assert_int_equal(smtp_conn_send_mail(c, "a@x", to, 1, SUBJ, 1, &HELLO,
                                             NULL, &f->res),
                         SMTP_OK);
        int r = 0;
        for (long long end = now_ms() + (conn == 1 ? 300 : 2000);
             r == 0 && now_ms() < end; sleep_ms(20))
            r = smtp_conn_check_idle(c);
        assert_int_equal(r, conn == 1 ? 0 : -1);
        assert_int_equal(smtp_conn_is_open(c), conn == 1);
        smtp_conn_quit(c);
    }
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_vrfy_expn_help_keep_multiline_replies),
        T(test_421_at_each_step_ends_session_and_sends_nothing_more),
        T(test_stalls_time_out_naming_the_command),
        T(test_garbage_replies_are_protocol_errors),
        T(test_ehlo_500_or_502_falls_back_to_helo),
        T(test_transactions_follow_the_seed_rules),
        T(test_reused_connection_sends_rset_between_messages),
        T(test_chain_dot_unanswered_next_envelope_sent_but_no_data),
        T(test_chain_of_five_each_delivered_once_in_order),
        T(test_check_idle_sees_unasked_421),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
