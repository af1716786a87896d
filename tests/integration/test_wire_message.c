/*
 * test_wire_message.c - what a message may carry, proven on the bytes the
 * relay received, through the three doors a user meets: the library
 * (smtp_send_mail), `mailpool serve` over HTTP, and the `mailpool send`
 * command line.
 *
 *  - A Bcc field is never transmitted (RFC 5322 3.6.3), in any case,
 *    folded or not: dropped from `headers` / `--header`, and with all its
 *    lines from a raw message's header section; its addresses are not
 *    added to the envelope.
 *  - Folding never leaves a line of only white space (RFC 5322 3.2.2).
 *
 * The envelope's parameters are test_wire_envelope.c; repeated fields,
 * controls and query arguments test_wire_fields.c.
 *
 * The relay is tests/fakes/fake_smtp.py (it keeps every byte); the
 * fixture is tests/support/wire_msg_fx.h.  Each test starts its own fake
 * and, when it needs one, its own service; the teardown stops both, and
 * fails when the service does not exit 0.
 */
#include <strings.h>

#include "tests/support/wire_msg_fx.h"

/* ---- What crossed the wire ---- */

/* 1 when text holds a line (CRLF-ended) starting with name and a colon,
   in any case, up to the end of the header section. */
static int has_field(const char *data, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = data; *p != '\0';) {
        if (p[0] == '\r' && p[1] == '\n')
            return 0; /* the empty line: body next */
        if (strncasecmp(p, name, n) == 0 && p[n] == ':')
            return 1;
        const char *e = strstr(p, "\r\n");
        if (e == NULL)
            return 0;
        p = e + 2;
    }
    return 0;
}

/* The header section: CRLF lines, none only white space, none over 998,
   then the empty line. */
static void assert_clean_header(const char *data)
{
    const char *p = data;
    for (;;) {
        const char *e = strstr(p, "\r\n");
        assert_non_null(e);
        size_t n = (size_t)(e - p);
        if (n == 0)
            return;
        if (strspn(p, " \t") >= n)
            fail_msg("a header line of only white space at offset %zu",
                     (size_t)(p - data));
        assert_true(n <= 998);
        p = e + 2;
    }
}

/* ---- Item 6: Bcc ---- */

#define RAW_BCC \
    "From: a@example.org\r\n" \
    "bcC: hidden1@example.org,\r\n" \
    "  hidden2@example.org\r\n" \
    "\thidden3@example.org\r\n" \
    "To: b@example.org\r\n" \
    "RESENT-BCC: hidden4@example.org\r\n" \
    "Subject: raw\r\n" \
    "BCC  : hidden5@example.org\r\n" \
    "\r\n" \
    "Bcc: this line is body text\r\n"
#define RAW_SENT \
    "From: a@example.org\r\n" \
    "To: b@example.org\r\n" \
    "Subject: raw\r\n" \
    "\r\n" \
    "Bcc: this line is body text\r\n"

static void test_library_never_transmits_bcc(void **state)
{
    struct wx *w = *state;
    struct fx *f = &w->f;
    fake(f, NULL);
    const char *to[] = { "b@example.org" };
    struct smtp_send_opts raw = { .raw = 1 };
    /* 1: structured headers, 2: raw text, 3: raw streamed 3 bytes a read,
       4: raw as lines */
    struct smtp_header h[] = { { "Subject", "s" },
                               { "BCC", "hidden@example.org" },
                               { "Resent-Bcc", "r@example.org" } };
    assert_int_equal(smtp_send_mail("a@example.org", to, 1, h, 3, &HELLO,
                                    f->host, &f->opts, NULL, &f->res),
                     SMTP_OK);
    struct smtp_body text = { .text = RAW_BCC, .len = strlen(RAW_BCC) };
    assert_int_equal(smtp_send_mail("a@example.org", to, 1, NULL, 0, &text,
                                    f->host, &f->opts, &raw, &f->res),
                     SMTP_OK);
    struct rd r = { .s = RAW_BCC, .len = strlen(RAW_BCC), .step = 3 };
    struct smtp_body streamed = { .read = rd_read, .ctx = &r };
    assert_int_equal(smtp_send_mail("a@example.org", to, 1, NULL, 0, &streamed,
                                    f->host, &f->opts, &raw, &f->res),
                     SMTP_OK);
    static const char *const lines[] = { "From: a@example.org",
                                         "Bcc: h@example.org",
                                         " folded@example.org",
                                         "Subject: lines",
                                         "",
                                         "body" };
    struct smtp_body lb = { .lines = lines, .nlines = 6 };
    assert_int_equal(smtp_send_mail("a@example.org", to, 1, NULL, 0, &lb,
                                    f->host, &f->opts, &raw, &f->res),
                     SMTP_OK);
    assert_int_equal(msgs(f, f->p, 4), 4);
    for (size_t i = 0; i < 4; i++) {
        const char *d = (const char *)f->m[i].data;
        assert_false(has_field(d, "Bcc"));
        assert_false(has_field(d, "Resent-Bcc"));
        assert_null(strcasestr(d, "hidden"));
        assert_null(strstr(d, "folded@"));
        assert_int_equal(f->m[i].nrcpt, 1); /* no one added */
        assert_string_equal(f->m[i].rcpt_to[0], "b@example.org");
        assert_clean_header(d);
    }
    assert_true(has_field((const char *)f->m[0].data, "Subject"));
    assert_string_equal((const char *)f->m[1].data, RAW_SENT);
    assert_string_equal((const char *)f->m[2].data, RAW_SENT);
    assert_string_equal(
        (const char *)f->m[3].data,
        "From: a@example.org\r\nSubject: lines\r\n\r\nbody\r\n");
    /* Nothing of them anywhere on the wire, envelope included. */
    assert_null(strcasestr(all_bytes(f), "hidden"));
}

static void test_service_never_transmits_bcc(void **state)
{
    struct wx *w = *state;
    struct fx *f = &w->f;
    fake(f, NULL);
    svc(w);
    static const char *const reqs[] = {
        "{\"from\":\"a@example.org\",\"to\":[\"b@example.org\"],"
        "\"headers\":{\"Subject\":\"object\",\"Bcc\":\"hidden@example.org\"},"
        "\"body\":\"hi\"}",
        "{\"from\":\"a@example.org\",\"to\":[\"b@example.org\"],"
        "\"headers\":[[\"bcc\",\"hidden@example.org\"],[\"Subject\",\"pairs\"],"
        "[\"resent-bcc\",\"hidden2@example.org\"]],\"body\":\"hi\"}",
        "{\"from\":\"a@example.org\",\"to\":[\"b@example.org\"],\"raw\":"
        "\"From: a@example.org\\r\\nbcC: hidden1@example.org,\\r\\n"
        "  hidden2@example.org\\r\\n\\thidden3@example.org\\r\\nTo: b@example.org"
        "\\r\\nRESENT-BCC: hidden4@example.org\\r\\nSubject: raw\\r\\nBCC  : "
        "hidden5@example.org\\r\\n\\r\\nBcc: this line is body text\\r\\n\"}",
        "{\"from\":\"a@example.org\",\"to\":[\"b@example.org\"],\"raw\":"
        "\"Bcc: hidden@example.org\\nSubject: lf\\n\\nbody\\n\"}",
    };
    for (size_t i = 0; i < 4; i++) {
        json_t *j = post(w, "/v1/messages", reqs[i], 200);
        assert_string_equal(jstr(j, "status"), "sent");
        assert_int_equal(json_array_size(json_object_get(j, "accepted")), 1);
        json_decref(j);
    }
    assert_int_equal(msgs(f, f->p, 4), 4);
    for (size_t i = 0; i < 4; i++) {
        const char *d = (const char *)f->m[i].data;
        assert_false(has_field(d, "Bcc"));
        assert_false(has_field(d, "Resent-Bcc"));
        assert_null(strcasestr(d, "hidden"));
        assert_int_equal(f->m[i].nrcpt, 1);
        assert_string_equal(f->m[i].rcpt_to[0], "b@example.org");
        assert_clean_header(d);
    }
    assert_non_null(
        strstr((const char *)f->m[0].data, "\r\nSubject: object\r\n"));
    assert_non_null(
        strstr((const char *)f->m[1].data, "\r\nSubject: pairs\r\n"));
    assert_string_equal((const char *)f->m[2].data, RAW_SENT);
    assert_string_equal((const char *)f->m[3].data,
                        "Subject: lf\r\n\r\nbody\r\n");
    assert_null(strcasestr(all_bytes(f), "hidden"));
}

static void test_cli_never_transmits_bcc(void **state)
{
    struct wx *w = *state;
    struct fx *f = &w->f;
    fake(f, NULL);
    /* The body is the body: a "Bcc:" line in it is text and stays. */
    const char *body = file_in(f, "body.txt", "Bcc: body text\nend\n");
    const char *const args_more[] = {
        "--header",    "Subject: cli",
        "--header",    "bCc: hidden@example.org",
        "--header",    "Resent-BCC: hidden2@example.org",
        "--body-file", body,
        "--timeout",   "5",
        NULL
    };
    const char *const *args = send_args(f, args_more);
    json_t *j;
    assert_int_equal(cli(f, args, &j), 0);
    assert_non_null(j);
    assert_string_equal(jstr(j, "status"), "sent");
    json_decref(j);
    assert_int_equal(msgs(f, f->p, 1), 1);
    const char *d = (const char *)f->m[0].data;
    assert_false(has_field(d, "Bcc"));
    assert_false(has_field(d, "Resent-Bcc"));
    assert_null(strstr(d, "hidden"));
    assert_non_null(strstr(d, "\r\nSubject: cli\r\n"));
    assert_string_equal(body_of(&f->m[0]), "Bcc: body text\r\nend\r\n");
    assert_int_equal(f->m[0].nrcpt, 1);
    assert_null(strstr(all_bytes(f), "hidden"));
}

/* ---- Item 8: folding ---- */

/* 70 x and a space (the issue's input), runs of spaces, tabs at the end. */
#define X70 \
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
#define SPACED \
    "alpha    beta    gamma    delta    epsilon    zeta    eta    " \
    "theta    iota    kappa    lambda\t\t  "

/* Both fields as the relay got them: on one line for X70, and no line of
   only white space anywhere. */
static void assert_folded_fields(const char *d)
{
    assert_clean_header(d);
    assert_non_null(strstr(d, "\r\nSubject: " X70 " \r\n"));
    assert_non_null(strstr(d, "\r\nX-Spaced: alpha    beta"));
    assert_non_null(strstr(d, "lambda\t\t  \r\n"));
}

static void test_folding_leaves_no_white_line_on_the_wire(void **state)
{
    struct wx *w = *state;
    struct fx *f = &w->f;
    fake(f, NULL);
    struct smtp_header h[] = { { "Subject", X70 " " }, { "X-Spaced", SPACED } };
    assert_int_equal(send1(f, "a@example.org", "b@example.org", h, 2, &HELLO),
                     SMTP_OK);
    svc(w);
    json_t *j = post(w, "/v1/messages",
                     "{\"from\":\"a@example.org\",\"to\":[\"b@example.org\"],"
                     "\"headers\":[[\"Subject\",\"" X70 " \"],[\"X-Spaced\","
                     "\"alpha    beta    gamma    delta    epsilon    zeta    "
                     "eta    theta    iota    kappa    lambda\\t\\t  \"]],"
                     "\"body\":\"hi\"}",
                     200);
    assert_string_equal(jstr(j, "status"), "sent");
    json_decref(j);
    const char *body = file_in(f, "body.txt", "hi\n");
    const char *const args_more[] = { "--header",    "Subject: " X70 " ",
                                      "--header",    "X-Spaced: " SPACED,
                                      "--body-file", body,
                                      NULL };
    const char *const *args = send_args(f, args_more);
    assert_int_equal(cli(f, args, &j), 0);
    json_decref(j);
    assert_int_equal(msgs(f, f->p, 3), 3);
    for (size_t i = 0; i < 3; i++)
        assert_folded_fields((const char *)f->m[i].data);
}


int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(name) cmocka_unit_test_setup_teardown(name, wsetup, wteardown)
        T(test_library_never_transmits_bcc),
        T(test_service_never_transmits_bcc),
        T(test_cli_never_transmits_bcc),
        T(test_folding_leaves_no_white_line_on_the_wire),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
