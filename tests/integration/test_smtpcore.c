/*
 * test_smtpcore.c - smtpcore against real peers, the message: what the
 * library puts on the wire and what it reports for delivery, smuggling,
 * envelope and header injection and rejections.  The session (queries,
 * 421, stalls, garbage, HELO fallback, transactions, reuse, peers, hosts,
 * trace) is test_smtpcore_session.c's.  Every test starts its own
 * peer(s); teardown stops them.
 */
#include "tests/support/smtp_fx.h"
#include "tests/support/smuggle.h"

/* ---- delivery ---------------------------------------------------------- */

static void test_send_mail_puts_exact_envelope_and_adds_date_msgid_from(
    void **state)
{
    struct fx *f = *state;
    fake(f, "{" NOPIPE "}");
    f->opts.helo_name = "client.test";
    assert_int_equal(send1(f, "a@x", "b@y", SUBJ, 1, &HELLO), SMTP_OK);
    assert_int_equal(f->res.code, 250);
    assert_int_equal(f->res.status, SMTP_DELIVERY_SENT);
    assert_int_equal(f->res.naccepted, 1);
    assert_string_equal(f->res.accepted[0], "b@y");
    assert_int_equal(f->res.nrejected, 0);
    assert_string_equal(f->res.reply.enhanced, "2.0.0");
    assert_string_equal(f->res.message, "");

    const char *w = wire(f, f->p, 1);
    assert_true(starts_with(w, "EHLO client.test\r\nMAIL FROM:<a@x>\r\n"
                               "RCPT TO:<b@y>\r\nDATA\r\n"));
    assert_true(ends_with(w, "\r\n.\r\nQUIT\r\n"));
    assert_int_equal(msgs(f, f->p, 1), 1);
    const char *d = (const char *)f->m[0].data;
    assert_string_equal(f->m[0].mail_from, "a@x");
    assert_string_equal(f->m[0].mail_params, "");
    assert_non_null(strstr(d, "Date: "));
    assert_non_null(strstr(d, "\r\nFrom: <a@x>\r\n"));
    assert_non_null(strstr(d, "\r\nSubject: hi\r\n"));
    assert_string_equal(body_of(&f->m[0]), "hello\r\n");
    char want[300];
    snprintf(want, sizeof want, "Message-ID: %s\r\n", f->res.message_id);
    assert_true(f->res.message_id[0] == '<' &&
                ends_with(f->res.message_id, ">"));
    assert_non_null(strstr(d, want));
    assert_int_equal(count(d, "Message-ID:"), 1);
}

static void test_caller_message_id_and_date_are_kept_not_duplicated(void **state)
{
    struct fx *f = *state;
    fake(f, NULL);
    const struct smtp_header h[] = { { "Message-ID", "<mine@x>" },
                                     { "Date",
                                       "Mon, 1 Jan 2024 00:00:00 +0000" },
                                     { "From", "A <a@x>" } };
    assert_int_equal(send1(f, "a@x", "b@y", h, 3, &HELLO), SMTP_OK);
    assert_string_equal(f->res.message_id, "<mine@x>");
    assert_int_equal(msgs(f, f->p, 1), 1);
    assert_string_equal(
        (const char *)f->m[0].data,
        "Message-ID: <mine@x>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
        "From: A <a@x>\r\n\r\nhello\r\n");
}

/* ---- transparency and smuggling --------------------------------------- */

/* One message only, to b@y, CRLF-clean, stuffed exactly as smuggle_wire. */
static void assert_smuggle_delivered_once(struct fx *f)
{
    assert_int_equal(f->res.kind, SMTP_OK);
    assert_int_equal(f->res.status, SMTP_DELIVERY_SENT);
    assert_int_equal(msgs(f, f->p, 1), 1);
    assert_int_equal(f->m[0].nrcpt, 1);
    assert_string_equal(f->m[0].rcpt_to[0], "b@y");
    assert_no_bare_cr_lf(f->m[0].data, f->m[0].len);
    assert_string_equal(body_of(&f->m[0]), smuggle_wire);
    const char *w = wire(f, f->p, 1);
    assert_int_equal(count(w, "\r\n.\r\n"), 1);       /* one end of data */
    assert_int_equal(count(w, "MAIL FROM:<a@x>"), 1); /* one transaction */
    assert_true(starts_with(w, "EHLO [127.0.0.1]\r\nMAIL FROM:<a@x>"));
    assert_int_equal(peer_conn_count(f->p), 1);
}

static void test_smuggling_text_body_is_normalized_and_stuffed(void **state)
{
    struct fx *f = *state;
    fake(f, NULL);
    struct smtp_body b = { .text = smuggle_text, .len = strlen(smuggle_text) };
    send1(f, "a@x", "b@y", SUBJ, 1, &b);
    assert_smuggle_delivered_once(f);
}

static void test_smuggling_lines_body_is_normalized_and_stuffed(void **state)
{
    struct fx *f = *state;
    fake(f, NULL);
    struct smtp_body b = { .lines = smuggle_lines, .nlines = 8 };
    send1(f, "a@x", "b@y", SUBJ, 1, &b);
    assert_smuggle_delivered_once(f);
}

static void test_smuggling_reader_body_one_byte_at_a_time(void **state)
{
    struct fx *f = *state;
    fake(f, NULL);
    struct rd r = { .s = smuggle_text, .len = strlen(smuggle_text), .step = 1 };
    struct smtp_body b = { .read = rd_read, .ctx = &r };
    send1(f, "a@x", "b@y", SUBJ, 1, &b);
    assert_int_equal(r.pos, r.len);
    assert_smuggle_delivered_once(f);
}

static void test_raw_body_starting_with_dot_is_stuffed(void **state)
{
    struct fx *f = *state;
    fake(f, NULL);
    struct smtp_send_opts so = { .raw = 1 };
    struct smtp_body b = { .text = ".x\r\nSubject: s\r\n\r\n.\n", .len = 20 };
    const char *to[] = { "b@y" };
    assert_int_equal(smtp_send_mail("a@x", to, 1, NULL, 0, &b, f->host,
                                    &f->opts, &so, &f->res),
                     SMTP_OK);
    assert_string_equal(f->res.message_id, "");
    assert_int_equal(msgs(f, f->p, 1), 1);
    assert_string_equal((const char *)f->m[0].data,
                        "..x\r\nSubject: s\r\n\r\n..\r\n");
}

/* A body refused before MAIL: LOCAL, no MAIL on the wire, no message. */
static void assert_refused_before_mail(struct fx *f, int conn, const char *what)
{
    if (f->res.kind != SMTP_ERR_LOCAL)
        fail_msg("%s: kind %s (%s), want local", what,
                 smtp_kind_name(f->res.kind), f->res.message);
    assert_int_equal(f->res.code, 554); /* synthesized: 5.6.0 */
    assert_int_equal(f->res.code_local, 1);
    assert_int_equal(f->res.reply.nlines, 0);
    assert_int_equal(f->res.status, SMTP_DELIVERY_FAILED);
    const char *w = wire(f, f->p, conn);
    if (strstr(w, "MAIL") || strstr(w, "RCPT") || strstr(w, "DATA"))
        fail_msg("%s: the server saw a transaction: %s", what, w);
    assert_int_equal(msgs(f, f->p, 0), 0);
}

static void test_line_over_998_and_nul_refused_before_mail(void **state)
{
    struct fx *f = *state;
    fake(f, NULL);
    char line[1003];
    memset(line, 'x', 999);
    line[999] = '\0';
    const char *lines[] = { "ok", line };
    struct smtp_body lb = { .lines = lines, .nlines = 2 };
    send1(f, "a@x", "b@y", SUBJ, 1, &lb);
    assert_refused_before_mail(f, 1, "lines, 999 octets");
    assert_non_null(strstr(f->res.message, "998"));

    memcpy(line + 999, "\r\n", 3);
    struct smtp_body tb = { .text = line, .len = 1001 };
    send1(f, "a@x", "b@y", SUBJ, 1, &tb);
    assert_refused_before_mail(f, 2, "text, 999 octets");

    struct smtp_body nb = { .text = "a\r\nb\0c\r\n", .len = 8 };
    send1(f, "a@x", "b@y", SUBJ, 1, &nb);
    assert_refused_before_mail(f, 3, "text with NUL");
    assert_non_null(strstr(f->res.message, "NUL"));

    line[998] = '\0'; /* 998 octets: the limit, fine */
    lines[1] = line;
    assert_int_equal(send1(f, "a@x", "b@y", SUBJ, 1, &lb), SMTP_OK);
    assert_int_equal(msgs(f, f->p, 1), 1);
    assert_int_equal(strlen(body_of(&f->m[0])), 2 + 2 + 998 + 2);
}

/* A reader that turns bad after 100 KiB: no final dot, nothing delivered. */
static void test_reader_bad_byte_mid_stream_drops_without_final_dot(void **state)
{
    struct fx *f = *state;
    fake(f, NULL);
    static const char *const tails[] = { "\0tail\n", NULL, "" };
    size_t good = 100 * 1024;
    char *buf = keep(f, malloc(good + 2048));
    for (int c = 0; c < 3; c++) {
        for (size_t i = 0; i < good; i++)
            buf[i] = i % 64 == 63 ? '\n' : 'a' + (char)(i % 26);
        size_t len = good;
        if (c == 0) {
            memcpy(buf + len, tails[0], 6);
            len += 6;
        } else if (c == 1) {
            memset(buf + len, 'z', 1500); /* a line of 1500 octets */
            len += 1500;
        }
        struct rd r = {
            .s = buf, .len = len, .step = 4096, .fail_at = c == 2 ? good : 0
        };
        struct smtp_body b = { .read = rd_read, .ctx = &r };
        assert_int_equal(send1(f, "a@x", "b@y", SUBJ, 1, &b), SMTP_ERR_LOCAL);
        assert_int_equal(f->res.status, SMTP_DELIVERY_FAILED);
        assert_string_equal(f->res.command, "DATA");
        const char *w = wire(f, f->p, c + 1);
        const char *data = strstr(w, "DATA\r\n");
        assert_non_null(data);
        assert_null(strstr(data, "\r\n.\r\n")); /* never ended */
        assert_null(strstr(data, "QUIT"));
        assert_true(strlen(data) > 6); /* body was streaming */
    }
    assert_int_equal(msgs(f, f->p, 0), 0);
}

/* ---- envelope and header injection ------------------------------------ */

static const char *const BAD_ADDRS[] = {
    "a@x\r\nRCPT TO:<evil@z>",
    "a@x\nDATA",
    "a@x\rRSET",
    "a\t@x",
    "a@x\x7f",
    "<a@x>",
    "a@x>",
    "a<b@x",
    "a b@x",
    "a@x SIZE=1",
    "a@x NOTIFY=NEVER",
    "",
    "ab",
    "@x",
    "a@",
    "a@@x",
    /* 65-octet local part */
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@x",
};

/* A path of 60 + 1 + 250 octets: labels are fine, the whole is too long. */
static char *long_path(void)
{
    char *s = malloc(400), *p = s;
    memset(p, 'l', 60);
    p += 60;
    *p++ = '@';
    for (int k = 0; k < 5; k++) {
        memset(p, 'd', 49);
        p += 49;
        *p++ = k < 4 ? '.' : '\0';
    }
    return s;
}

static void test_envelope_injection_refused_before_any_byte(void **state)
{
    struct fx *f = *state;
    fake(f, NULL);
    size_t nbad = sizeof BAD_ADDRS / sizeof BAD_ADDRS[0];
    const char *lp = keep(f, long_path());
    for (size_t i = 0; i <= nbad; i++) {
        const char *bad = i < nbad ? BAD_ADDRS[i] : lp;
        if (bad[0] == '\0')
            continue; /* "" is the null sender */
        if (send1(f, bad, "b@y", SUBJ, 1, &HELLO) != SMTP_ERR_LOCAL)
            fail_msg("sender '%s' not refused: %s", bad,
                     smtp_kind_name(f->res.kind));
        assert_string_equal(f->res.command, "MAIL");
    }
    assert_int_equal(peer_conn_count(f->p), 0); /* not even a connection */

    int conn = 0;
    for (size_t i = 0; i <= nbad; i++) {
        const char *bad = i < nbad ? BAD_ADDRS[i] : lp;
        if (send1(f, "a@x", bad, SUBJ, 1, &HELLO) != SMTP_ERR_LOCAL)
            fail_msg("recipient '%s' not refused: %s", bad,
                     smtp_kind_name(f->res.kind));
        assert_string_equal(f->res.command, "RCPT");
        conn = peer_conn_count(f->p);
        if (conn > 0)
            assert_refused_before_mail(f, conn, bad);
    }
    /* Positive controls: 64-octet local part, quoted space, null sender. */
    const char *ok64 =
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@x";
    assert_int_equal(send1(f, "", ok64, SUBJ, 1, &HELLO), SMTP_OK);
    assert_int_equal(send1(f, "a@x", "\"b c\"@y", SUBJ, 1, &HELLO), SMTP_OK);
    assert_int_equal(msgs(f, f->p, 2), 2);
    assert_string_equal(f->m[0].mail_from, "");
    assert_string_equal(f->m[0].rcpt_to[0], ok64);
    assert_string_equal(f->m[1].rcpt_to[0], "\"b c\"@y");
}

static void test_header_injection_refused_before_mail(void **state)
{
    struct fx *f = *state;
    fake(f, NULL);
    static const struct smtp_header bad[][1] = {
        { { "Subject", "hi\r\nBcc: evil@z" } },
        { { "Subject", "hi\nBcc: evil@z" } },
        { { "Subject", "hi\rBcc: evil@z" } },
        { { "Bad Name", "v" } },
        { { "X:Y", "v" } },
        { { "X-\x80", "v" } },
        { { "", "v" } },
        { { "Subject", "a\x01" } },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        send1(f, "a@x", "b@y", bad[i], 1, &HELLO);
        assert_refused_before_mail(f, (int)i + 1, bad[i][0].name);
    }
}

static void test_long_header_value_is_folded(void **state)
{
    struct fx *f = *state;
    fake(f, NULL);
    char value[3000] = "";
    for (int i = 0; strlen(value) < 2900; i++) {
        char w[16];
        snprintf(w, sizeof w, "%sword%03d", i ? " " : "", i);
        strcat(value, w);
    }
    const struct smtp_header h[] = { { "X-Long", value } };
    assert_int_equal(send1(f, "a@x", "b@y", h, 1, &HELLO), SMTP_OK);
    assert_int_equal(msgs(f, f->p, 1), 1);
    const char *d = (const char *)f->m[0].data;
    const char *start = strstr(d, "X-Long: ");
    assert_non_null(start);
    char *unfolded = keep(f, calloc(1, 4000));
    size_t nl = 0, n = 0;
    for (const char *p = start; nl == 0 || *p == ' ' || *p == '\t'; nl++) {
        const char *eol = strstr(p, "\r\n");
        assert_non_null(eol);
        assert_true(eol - p <= 998);
        assert_true(n + (size_t)(eol - p) < 4000);
        memcpy(unfolded + n, p, (size_t)(eol - p)); /* unfold: drop CRLF */
        n += (size_t)(eol - p);
        p = eol + 2;
    }
    assert_true(nl > 10);
    assert_string_equal(unfolded + 8, value);
}

static void test_header_word_over_998_refused_before_mail(void **state)
{
    struct fx *f = *state;
    fake(f, NULL);
    char *value = keep(f, malloc(1201));
    memset(value, 'v', 1200);
    value[1200] = '\0';
    const struct smtp_header h[] = { { "X-Token", value } };
    send1(f, "a@x", "b@y", h, 1, &HELLO);
    assert_refused_before_mail(f, 1, "unfoldable 1200-octet header word");
}

/* ---- rejections -------------------------------------------------------- */

static void check_partial(struct fx *f, const char *script)
{
    fake(f, script);
    const char *to[] = { "good@y", "bad@y" };
    assert_int_equal(smtp_send_mail("a@x", to, 2, SUBJ, 1, &HELLO, f->host,
                                    &f->opts, NULL, &f->res),
                     SMTP_ERR_REJECTED);
    struct smtp_result *r = &f->res;
    assert_int_equal(r->code, 700);
    assert_int_equal(r->status, SMTP_DELIVERY_PARTIAL);
    assert_int_equal(r->naccepted, 1);
    assert_string_equal(r->accepted[0], "good@y");
    assert_int_equal(r->nrejected, 1);
    assert_string_equal(r->rejected[0].recipient, "bad@y");
    assert_int_equal(r->rejected[0].reply.code, 550);
    assert_string_equal(r->rejected[0].reply.enhanced, "5.1.1");
    assert_int_equal(r->rejected[0].reply.nlines, 1);
    assert_string_equal(r->rejected[0].reply.lines[0], "5.1.1 no such user");
    assert_int_equal(r->reply.code, 250); /* DATA's final */
    assert_string_equal(r->reply.enhanced, "2.0.0");
    assert_string_equal(r->reply.lines[0], "2.0.0 Ok: queued as 1");
    assert_true(r->message_id[0] == '<');
    assert_int_equal(msgs(f, f->p, 1), 1);
    assert_int_equal(f->m[0].nrcpt, 1);
    assert_string_equal(f->m[0].rcpt_to[0], "good@y");
    assert_true(ends_with(wire(f, f->p, 1), "\r\n.\r\nQUIT\r\n"));
}

static void test_rcpt_partial_rejection_reports_700_and_data_reply(void **state)
{
    struct fx *f = *state;
    check_partial(f, "{'rules': [{'match': '^RCPT TO:<bad', "
                     "'reply': '550 5.1.1 no such user'}]}");
    check_partial(f, "{" NOPIPE ", 'rules': [{'match': '^RCPT TO:<bad', "
                     "'reply': '550 5.1.1 no such user'}]}");
}

static void check_all_rejected(struct fx *f, const char *script,
                               const char *tail)
{
    fake(f, script);
    const char *to[] = { "bad1@y", "bad2@y" };
    assert_int_equal(smtp_send_mail("a@x", to, 2, SUBJ, 1, &HELLO, f->host,
                                    &f->opts, NULL, &f->res),
                     SMTP_ERR_REJECTED);
    assert_int_equal(f->res.code, 700);
    assert_int_equal(f->res.status, SMTP_DELIVERY_REJECTED);
    assert_int_equal(f->res.naccepted, 0);
    assert_int_equal(f->res.nrejected, 2);
    assert_string_equal(f->res.rejected[1].recipient, "bad2@y");
    assert_string_equal(f->res.rejected[1].reply.enhanced, "5.1.1");
    const char *w = wire(f, f->p, 1);
    if (!ends_with(w, tail))
        fail_msg("wire does not end with %s:\n%s", tail, w);
    assert_null(strstr(w, "Subject:"));
    assert_null(strstr(w, "Message-ID:"));
}

static void test_all_rejected_without_pipelining_sends_rset_not_data(
    void **state)
{
    struct fx *f = *state;
    check_all_rejected(f,
                       "{" NOPIPE ", 'rules': [{'match': '^RCPT', "
                       "'reply': '550 5.1.1 no such user'}]}",
                       "RCPT TO:<bad2@y>\r\nRSET\r\nQUIT\r\n");
    assert_null(strstr(wire(f, f->p, 1), "DATA"));
}

static void test_all_rejected_pipelined_354_gets_lone_dot(void **state)
{
    struct fx *f = *state;
    check_all_rejected(
        f,
        "{'rules': [{'match': '^RCPT', 'reply': '550 5.1.1 no such user'},"
        " {'match': '^DATA', 'reply': '354 go ahead'}]}",
        "RCPT TO:<bad2@y>\r\nDATA\r\n.\r\nQUIT\r\n");
    assert_int_equal(msgs(f, f->p, 1), 1);
    assert_int_equal(f->m[0].len, 0); /* nothing but the dot */
    /* DATA refused (the fake's 554): no dot at all. */
    check_all_rejected(
        f, "{'rules': [{'match': '^RCPT', 'reply': '550 5.1.1 no such user'}]}",
        "RCPT TO:<bad2@y>\r\nDATA\r\nQUIT\r\n");
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_send_mail_puts_exact_envelope_and_adds_date_msgid_from),
        T(test_caller_message_id_and_date_are_kept_not_duplicated),
        T(test_smuggling_text_body_is_normalized_and_stuffed),
        T(test_smuggling_lines_body_is_normalized_and_stuffed),
        T(test_smuggling_reader_body_one_byte_at_a_time),
        T(test_raw_body_starting_with_dot_is_stuffed),
        T(test_line_over_998_and_nul_refused_before_mail),
        T(test_reader_bad_byte_mid_stream_drops_without_final_dot),
        T(test_envelope_injection_refused_before_any_byte),
        T(test_header_injection_refused_before_mail),
        T(test_long_header_value_is_folded),
        T(test_header_word_over_998_refused_before_mail),
        T(test_rcpt_partial_rejection_reports_700_and_data_reply),
        T(test_all_rejected_without_pipelining_sends_rset_not_data),
        T(test_all_rejected_pipelined_354_gets_lone_dot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
