/*
 * test_body.c - the body normalizer and dot-stuffer (SMTP smuggling, Bcc
 * fields of a whole message), the header writer (folding, Bcc, repeated
 * fields), the address and header validators, the query lines.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "smtpcore/src/internal.h"

/* Runs input through the stuffer in pieces of size step; returns the wire. */
static int stuff(const char *in, size_t n, size_t step, struct smtp__buf *out)
{
    struct smtp__stuffer st;
    char why[128];
    smtp__stuffer_init(&st);
    smtp__buf_init(out, 1 << 24);
    for (size_t i = 0; i < n; i += step) {
        size_t k = n - i < step ? n - i : step;
        if (smtp__stuff(&st, in + i, k, out, why, sizeof why) < 0)
            return -1;
    }
    return smtp__stuff_end(&st, out);
}

static void test_smuggling_sequences_become_crlf_and_stuffed(void **state)
{
    (void)state;
    static const struct {
        const char *in, *wire;
    } cases[] = {
        { "a\n.\nb", "a\r\n..\r\nb\r\n.\r\n" },
        { "a\n.\r\nb", "a\r\n..\r\nb\r\n.\r\n" },
        { "a\r.\rb", "a\r\n..\r\nb\r\n.\r\n" },
        { "a\r\n.\r\nb", "a\r\n..\r\nb\r\n.\r\n" },
        { ".starts", "..starts\r\n.\r\n" },
        { ".hidden\r\n..two\r\n", "..hidden\r\n...two\r\n.\r\n" },
        { "no newline at end", "no newline at end\r\n.\r\n" },
        { "", ".\r\n" },
        { "\r", "\r\n.\r\n" },
        { "\n\n", "\r\n\r\n.\r\n" },
        { "x\r\r\ny", "x\r\n\r\ny\r\n.\r\n" },
        { "mid.dot\n", "mid.dot\r\n.\r\n" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (size_t step = 1; step <= 8; step += 7) {
            struct smtp__buf out;
            assert_int_equal(
                stuff(cases[i].in, strlen(cases[i].in), step, &out), 0);
            assert_string_equal(out.data, cases[i].wire);
            /* No bare CR or LF anywhere on the wire. */
            for (size_t k = 0; k < out.len; k++) {
                if (out.data[k] == '\n')
                    assert_true(k > 0 && out.data[k - 1] == '\r');
                if (out.data[k] == '\r')
                    assert_true(k + 1 < out.len && out.data[k + 1] == '\n');
            }
            smtp__buf_free(&out);
        }
    }
}

static void test_nul_in_body_is_refused(void **state)
{
    (void)state;
    struct smtp__buf out;
    assert_int_equal(stuff("a\0b", 3, 3, &out), -1);
    smtp__buf_free(&out);
}

static void test_line_over_998_octets_is_refused(void **state)
{
    (void)state;
    static char big[2000];
    struct smtp__buf out;
    memset(big, 'x', 998);
    assert_int_equal(stuff(big, 998, 100, &out), 0);
    smtp__buf_free(&out);
    memset(big, 'x', 999);
    assert_int_equal(stuff(big, 999, 100, &out), -1);
    smtp__buf_free(&out);
}

static void test_address_validation_table(void **state)
{
    (void)state;
    static char longlocal[80], longaddr[300];
    memset(longlocal, 'a', 65);
    memcpy(longlocal + 65, "@x.org", 7);
    memset(longaddr, 'a', 60);
    longaddr[60] = '@';
    for (int i = 61; i < 290; i++)
        longaddr[i] = (i % 10 == 0) ? '.' : 'b';
    longaddr[290] = '\0';
    static const struct {
        const char *a;
        int empty_ok, ok;
    } cases[] = {
        { "user@example.org", 0, 1 },
        { "first.last+tag@sub.example.org", 0, 1 },
        { "\"quoted space\"@example.org", 0, 1 },
        { "user@[127.0.0.1]", 0, 1 },
        { "postmaster", 0, 1 },
        { "", 1, 1 },
        { "", 0, 0 },
        { "user@example.org\r\nRCPT TO:<evil@x.org>", 0, 0 },
        { "user@example.org\n", 0, 0 },
        { "us\ter@example.org", 0, 0 },
        { "<user@example.org>", 0, 0 },
        { "user@example.org>", 0, 0 },
        { "us er@example.org", 0, 0 },
        { "user", 0, 0 },
        { "user@", 0, 0 },
        { ".user@example.org", 0, 0 },
        { "us..er@example.org", 0, 0 },
        { "user@-bad.org", 0, 0 },
        { "user@bad-.org", 0, 0 },
        { "user@exa mple.org", 0, 0 },
        { "user@example..org", 0, 0 },
        { "\"unterminated@example.org", 0, 0 },
        { longlocal, 0, 0 },
        { longaddr, 0, 0 },
        /* '<' and '>' inside quotes: legal in RFC 5321, a path's end to a
           lax server, so ESMTP parameters could ride in after it */
        { "\"a> SIZE=1 RET=FULL\"@b.example", 0, 0 },
        { "\"a>\"@b.example", 0, 0 },
        { "\"<a\"@b.example", 1, 0 },
        { "\"a\\>b\"@b.example", 0, 0 },
        { "\"a\\<b\"@b.example", 0, 0 },
        { "\"a b NOTIFY=NEVER\"@b.example", 0, 1 }, /* stays inside <> */
        { "a@b.example> NOTIFY=NEVER", 0, 0 },
        { "a@b.example SIZE=1", 0, 0 },
        { "a@b.example\r\nRSET", 0, 0 },
        { "\"a\r\nRSET\"@b.example", 0, 0 },
        { "\"a\\\"> SIZE=1\"@b.example", 0, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char why[160] = "";
        int r = smtp_addr_check(cases[i].a, cases[i].empty_ok, why, sizeof why);
        if ((r == 0) != cases[i].ok)
            fail_msg("case %zu '%s': got %d (%s)", i, cases[i].a, r, why);
        if (r < 0)
            assert_true(why[0] != '\0');
    }
}

static void test_header_validation_table(void **state)
{
    (void)state;
    static const struct {
        const char *n, *v;
        int ok;
    } cases[] = {
        { "Subject", "hello", 1 },
        { "X-Custom-1", "tab\tok", 1 },
        { "Subject", "", 1 },
        { "Sub ject", "x", 0 },
        { "Subject:", "x", 0 },
        { "", "x", 0 },
        { "Subj\xc3\xa9", "x", 0 },
        { "Subject", "a\r\nBcc: evil@x.org", 0 },
        { "Subject", "a\nb", 0 },
        { "Subject", "a\rb", 0 },
        { "Subject", "bell\x07", 0 },
        { "Subject", "del\x7f", 0 },
        { "Subject",
          "esc\x1b"
          "[0m",
          0 },
        { "Subject",
          "nel\xc2\x85"
          "Bcc: e@x.org",
          0 }, /* U+0085, a C1 control */
        { "Subject", "csi\xc2\x9b", 0 },
        { "Subject", "nbsp\xc2\xa0 \xc3\xa9t\xc3\xa9", 1 },
        { "Subject", "tab\tat\tend\t", 1 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char why[160];
        int r = smtp_header_check(cases[i].n, cases[i].v, why, sizeof why);
        if ((r == 0) != cases[i].ok)
            fail_msg("case %zu '%s': got %d", i, cases[i].n, r);
    }
}

static void test_headers_get_date_message_id_and_from_when_missing(void **state)
{
    (void)state;
    struct smtp_header h[] = { { "Subject", "hi" } };
    struct smtp__buf out;
    char msgid[256], why[160];
    smtp__buf_init(&out, 1 << 20);
    assert_int_equal(smtp__headers_write(h, 1, "me@example.org", "client.test",
                                         &out, msgid, why, sizeof why),
                     0);
    assert_non_null(strstr(out.data, "Date: "));
    assert_non_null(strstr(out.data, "Message-ID: <"));
    assert_non_null(strstr(out.data, "@example.org>\r\n"));
    assert_non_null(strstr(out.data, "From: <me@example.org>\r\n"));
    assert_non_null(strstr(out.data, "Subject: hi\r\n\r\n"));
    assert_true(msgid[0] == '<');
    smtp__buf_free(&out);

    struct smtp_header h2[] = { { "date", "x" },
                                { "message-id", "<a@b>" },
                                { "from", "A <a@b>" } };
    smtp__buf_init(&out, 1 << 20);
    assert_int_equal(smtp__headers_write(h2, 3, "me@example.org", "c", &out,
                                         msgid, why, sizeof why),
                     0);
    assert_string_equal(
        out.data, "date: x\r\nmessage-id: <a@b>\r\nfrom: A <a@b>\r\n\r\n");
    assert_string_equal(msgid, "<a@b>");
    smtp__buf_free(&out);
}

static void test_long_header_values_are_folded(void **state)
{
    (void)state;
    char value[600];
    size_t n = 0;
    while (n < 500) {
        memcpy(value + n, "word ", 5);
        n += 5;
    }
    value[n - 1] = '\0';
    struct smtp_header h[] = { { "Date", "x" },
                               { "Message-ID", "<a@b>" },
                               { "Subject", value } };
    struct smtp__buf out;
    char msgid[256], why[160];
    smtp__buf_init(&out, 1 << 20);
    assert_int_equal(
        smtp__headers_write(h, 3, "", "c", &out, msgid, why, sizeof why), 0);
    const char *p = out.data;
    size_t longest = 0, folds = 0;
    while (*p) {
        const char *e = strstr(p, "\r\n");
        assert_non_null(e);
        if ((size_t)(e - p) > longest)
            longest = (size_t)(e - p);
        if (*p == ' ')
            folds++;
        p = e + 2;
    }
    assert_true(longest <= 78);
    assert_true(folds >= 6);
    smtp__buf_free(&out);
}

/* Repeats c n times into buf (NUL-terminated after). */
static char *rep(char *buf, const char *c, size_t n)
{
    size_t k = strlen(c);
    for (size_t i = 0; i < n; i++)
        memcpy(buf + i * k, c, k);
    buf[n * k] = '\0';
    return buf;
}

/* Writes one field alone (no Date, Message-ID, From); 0 or -1. */
static int write_one(const char *name, const char *value, struct smtp__buf *out)
{
    struct smtp_header h[] = { { name, value } };
    char msgid[256], why[160];
    smtp__buf_init(out, 1 << 20);
    return smtp__headers_write(h, 1, NULL, "c", out, msgid, why, sizeof why);
}

/* RFC 5322 3.2.2: folding never leaves a line of only white space, lines
   stay within 998 octets, and unfolding gives back the value. */
static void test_header_folding_never_leaves_a_white_line(void **state)
{
    (void)state;
    static char v[12][1400], w1[200], w2[200];
    const char *values[] = {
        strcat(rep(v[0], "x", 70), " "), /* issue 10, item 8 */
        strcat(rep(v[1], "x", 70), "\t"),
        strcat(rep(v[2], "x", 69), "   \t  "),
        strcat(rep(v[3], "word ", 40), "    "), /* words, then spaces */
        rep(v[4], " ", 120),                    /* all white */
        rep(v[5], "\t", 90),
        strcat(strcat(rep(v[6], "a", 60), "          "),
               "bbbbbbbbbbbbbbbbbbbbbbbbb"),
        strcat(strcat(rep(v[7], " ", 30), rep(w1, "y", 80)), " z "),
        rep(v[8], "word\t", 60),                        /* tabs between words */
        rep(v[9], "ab  ", 80),                          /* runs of two spaces */
        strcat(rep(v[10], "x", 900), rep(w2, " ", 89)), /* ends at 998 */
        "",
        " ",
        strcat(rep(v[11], "z ", 200), "\t \t"),
    };
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        struct smtp__buf out;
        char why[160];
        assert_int_equal(
            smtp_header_check("Subject", values[i], why, sizeof why), 0);
        if (write_one("Subject", values[i], &out) != 0)
            fail_msg("value %zu refused", i);
        /* the block: field lines, then the empty line */
        assert_true(out.len >= 4 &&
                    strcmp(out.data + out.len - 4, "\r\n\r\n") == 0);
        size_t ulen = 0;
        static char unfolded[4000];
        for (const char *p = out.data; p < out.data + out.len - 2;) {
            const char *e = strstr(p, "\r\n");
            size_t n = (size_t)(e - p);
            if (n > 998)
                fail_msg("value %zu: line of %zu octets", i, n);
            if (strspn(p, " \t") >= n)
                fail_msg("value %zu: a line of only white space: '%.*s'", i,
                         (int)n, p);
            if (p != out.data && *p != ' ' && *p != '\t')
                fail_msg("value %zu: continuation without white space", i);
            memcpy(unfolded + ulen, p, n);
            ulen += n;
            p = e + 2;
        }
        unfolded[ulen] = '\0';
        char want[1500];
        snprintf(want, sizeof want, "Subject: %s", values[i]);
        assert_string_equal(unfolded, want);
        smtp__buf_free(&out);
    }
    /* The issue's input goes out on one line, trailing space kept. */
    struct smtp__buf out;
    assert_int_equal(write_one("Subject", values[0], &out), 0);
    char want[120];
    snprintf(want, sizeof want, "Subject: %s\r\n\r\n", values[0]);
    assert_string_equal(out.data, want);
    smtp__buf_free(&out);
}

/* What cannot be folded under 998 octets: refused alike by the check and
   by the writer. */
static void test_unfoldable_values_refused_by_check_and_writer(void **state)
{
    (void)state;
    static char v[3][1400], w[200];
    const char *values[] = {
        rep(v[0], "x", 990),                           /* one word */
        strcat(rep(v[1], "x", 900), rep(w, " ", 100)), /* + trailing */
        rep(v[2], " ", 1000),                          /* all white */
    };
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        struct smtp__buf out;
        char why[160] = "";
        if (smtp_header_check("Subject", values[i], why, sizeof why) != -1)
            fail_msg("value %zu passed the check", i);
        assert_non_null(strstr(why, "cannot be folded"));
        assert_int_equal(write_one("Subject", values[i], &out), -1);
        smtp__buf_free(&out);
    }
}

/* RFC 5322 3.6.3: Bcc (and 3.6.6 Resent-Bcc) never reach the wire. */
static void test_header_writer_drops_bcc_in_any_case(void **state)
{
    (void)state;
    struct smtp_header h[] = {
        { "From", "a@x.org" },        { "bCC", "hidden@x.org" },
        { "To", "b@x.org" },          { "Resent-Bcc", "r1@x.org" },
        { "RESENT-BCC", "r2@x.org" }, { "Subject", "Bcc: not a field" },
        { "X-Bcc", "kept" },
    };
    struct smtp__buf out;
    char msgid[256], why[160];
    smtp__buf_init(&out, 1 << 20);
    assert_int_equal(
        smtp__headers_write(h, 7, NULL, "c", &out, msgid, why, sizeof why), 0);
    assert_string_equal(out.data,
                        "From: a@x.org\r\nTo: b@x.org\r\n"
                        "Subject: Bcc: not a field\r\nX-Bcc: kept\r\n\r\n");
    smtp__buf_free(&out);
}

/* RFC 5322 3.6: a field allowed once, twice under any case, is refused
   naming both; repeatable fields pass. */
static void test_header_writer_refuses_repeated_unique_fields(void **state)
{
    (void)state;
    static const char *const once[] = {
        "From",       "Sender",      "Reply-To",   "To",      "Cc",  "Bcc",
        "Message-ID", "In-Reply-To", "References", "Subject", "Date"
    };
    for (size_t i = 0; i < sizeof once / sizeof once[0]; i++) {
        char lower[32];
        size_t k = 0;
        for (; once[i][k] != '\0'; k++)
            lower[k] = (char)(once[i][k] | 0x20);
        lower[k] = '\0';
        struct smtp_header h[] = { { once[i], "a" },
                                   { "X-Other", "b" },
                                   { lower, "c" } };
        struct smtp__buf out;
        char msgid[256], why[200] = "", want[120];
        assert_int_equal(smtp_header_unique(lower), 1);
        smtp__buf_init(&out, 1 << 20);
        assert_int_equal(smtp__headers_write(h, 3, "me@x.org", "c", &out, msgid,
                                             why, sizeof why),
                         -1);
        snprintf(want, sizeof want, "headers 1 (%s) and 3 (%s)", once[i],
                 lower);
        if (strstr(why, want) == NULL)
            fail_msg("%s: '%s'", once[i], why);
        smtp__buf_free(&out);
    }
    static const char *const many[] = { "Received",   "Comments",   "Keywords",
                                        "Resent-To",  "Resent-Bcc", "X-Tag",
                                        "Return-Path" };
    for (size_t i = 0; i < sizeof many / sizeof many[0]; i++)
        assert_int_equal(smtp_header_unique(many[i]), 0);
}

/* The stuffer of a whole message (a raw body) drops every line of a Bcc
   or Resent-Bcc field from the header section, in any case, folded, with
   any line ending, cut anywhere between writes; the body is untouched. */
static void test_raw_header_section_loses_bcc_fields(void **state)
{
    (void)state;
    static const struct {
        const char *in, *wire;
    } cases[] = {
        { "From: a\r\nBcc: h@x\r\nSubject: s\r\n\r\nbody\r\n",
          "From: a\r\nSubject: s\r\n\r\nbody\r\n.\r\n" },
        { "bcc: h@x\nTo: b\n\nBcc: in the body\n",
          "To: b\r\n\r\nBcc: in the body\r\n.\r\n" },
        { "To: b\r\nBCC: h1@x,\r\n  h2@x,\r\n\th3@x\r\nX: y\r\n\r\nb",
          "To: b\r\nX: y\r\n\r\nb\r\n.\r\n" },
        { "To: b\rBcc: h@x\r  more\rX: y\r\rb",
          "To: b\r\nX: y\r\n\r\nb\r\n.\r\n" },
        { "Bcc \t: obsolete white space\r\nTo: b\r\n\r\n",
          "To: b\r\n\r\n.\r\n" },
        { "Resent-Bcc: r@x\r\nresent-bcc:\r\nTo: b\r\n\r\n",
          "To: b\r\n\r\n.\r\n" },
        { "To: b\r\nBcc: last, no end", "To: b\r\n.\r\n" },
        { "Bcc: only\r\n\r\nbody", "\r\nbody\r\n.\r\n" },
        { "Bccx: kept\r\nX-Bcc: kept\r\nBc: kept\r\nBcc-: kept\r\n\r\n",
          "Bccx: kept\r\nX-Bcc: kept\r\nBc: kept\r\nBcc-: kept\r\n\r\n.\r\n" },
        { "Bcc", "Bcc\r\n.\r\n" },
        { "Bcc  ", "Bcc  \r\n.\r\n" },
        { ".Bcc: x\r\n\r\n.dot", "..Bcc: x\r\n\r\n..dot\r\n.\r\n" },
        { " folded first\r\nBcc: x\r\n \r\nTo: b\r\n\r\n",
          " folded first\r\nTo: b\r\n\r\n.\r\n" },
        { "\r\nBcc: body only\r\n", "\r\nBcc: body only\r\n.\r\n" },
        /* a lone CR before a dropped field does not pair with the LF of
           the empty line after it (found by fuzz_stuff) */
        { "X\rbCc:\n\nbCc:", "X\r\n\r\nbCc:\r\n.\r\n" },
        { "X: 1\rBcc: h\r\n\nbody", "X: 1\r\n\r\nbody\r\n.\r\n" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = strlen(cases[i].in);
        for (size_t step = 1; step <= n; step = step < 9 ? step + 1 : n) {
            struct smtp__stuffer st;
            struct smtp__buf out;
            char why[128];
            smtp__stuffer_init(&st);
            st.in_header = 1;
            smtp__buf_init(&out, 1 << 20);
            for (size_t k = 0; k < n; k += step)
                assert_int_equal(smtp__stuff(&st, cases[i].in + k,
                                             n - k < step ? n - k : step, &out,
                                             why, sizeof why),
                                 0);
            assert_int_equal(smtp__stuff_end(&st, &out), 0);
            if (strcmp(out.data, cases[i].wire) != 0)
                fail_msg("case %zu step %zu: got '%s'", i, step, out.data);
            smtp__buf_free(&out);
            if (step == n)
                break;
        }
    }
}

/* VRFY, EXPN, HELP lines: a non-ASCII argument needs SMTPUTF8 and then
   carries the parameter (RFC 6531 3.7.4); HELP has no such form. */
static void test_query_lines(void **state)
{
    (void)state;
    static const struct {
        const char *verb, *arg;
        int utf8;
        const char *line;
    } cases[] = {
        { "VRFY", "bob", 0, "VRFY bob" },
        { "VRFY", "bob", 1, "VRFY bob" },
        { "EXPN", "staff", 0, "EXPN staff" },
        { "HELP", NULL, 0, "HELP" },
        { "HELP", "", 0, "HELP" },
        { "HELP", "MAIL", 0, "HELP MAIL" },
        { "VRFY", "j\xc3\xb6rg", 1, "VRFY j\xc3\xb6rg SMTPUTF8" },
        { "EXPN", "\xc3\xa9quipe", 1, "EXPN \xc3\xa9quipe SMTPUTF8" },
        { "VRFY", "j\xc3\xb6rg", 0, NULL },
        { "EXPN", "\xc3\xa9quipe", 0, NULL },
        { "HELP", "Gr\xc3\xbc\xc3\x9f", 1, NULL },
        { "VRFY", "bob\r\nRSET", 1, NULL },
        { "VRFY", "bob\x7f", 1, NULL },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char cmd[600] = "", why[160] = "";
        int r = smtp__query_line(cases[i].verb, cases[i].arg, cases[i].utf8,
                                 cmd, sizeof cmd, why, sizeof why);
        if (cases[i].line == NULL) {
            if (r != -1 || why[0] == '\0')
                fail_msg("case %zu: %d '%s'", i, r, cmd);
        } else {
            assert_int_equal(r, 0);
            assert_string_equal(cmd, cases[i].line);
        }
    }
}

static void test_xtext_encodes_plus_equals_and_controls(void **state)
{
    (void)state;
    struct smtp__buf out;
    smtp__buf_init(&out, 1024);
    assert_int_equal(smtp__xtext(&out, "a+b=c d"), 0);
    assert_string_equal(out.data, "a+2Bb+3Dc+20d");
    smtp__buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_smuggling_sequences_become_crlf_and_stuffed),
        cmocka_unit_test(test_nul_in_body_is_refused),
        cmocka_unit_test(test_line_over_998_octets_is_refused),
        cmocka_unit_test(test_address_validation_table),
        cmocka_unit_test(test_header_validation_table),
        cmocka_unit_test(
            test_headers_get_date_message_id_and_from_when_missing),
        cmocka_unit_test(test_long_header_values_are_folded),
        cmocka_unit_test(test_header_folding_never_leaves_a_white_line),
        cmocka_unit_test(test_unfoldable_values_refused_by_check_and_writer),
        cmocka_unit_test(test_header_writer_drops_bcc_in_any_case),
        cmocka_unit_test(test_header_writer_refuses_repeated_unique_fields),
        cmocka_unit_test(test_raw_header_section_loses_bcc_fields),
        cmocka_unit_test(test_query_lines),
        cmocka_unit_test(test_xtext_encodes_plus_equals_and_controls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
