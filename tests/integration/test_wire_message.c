/*
 * test_wire_message.c - what a message and its envelope may carry, proven
 * on the bytes the relay received, through the three doors a user meets:
 * the library (smtp_send_mail, smtp_verify), `mailpool serve` over HTTP,
 * and the `mailpool send` / `verify` / `help` command line.
 *
 *  - A Bcc field is never transmitted (RFC 5322 3.6.3), in any case,
 *    folded or not: dropped from `headers` / `--header`, and with all its
 *    lines from a raw message's header section; its addresses are not
 *    added to the envelope.
 *  - Folding never leaves a line of only white space (RFC 5322 3.2.2).
 *  - No ESMTP parameter rides in an address: '<' '>' inside quotes, CR/LF,
 *    NUL, spaces and parameters after the address are refused before a
 *    MAIL is written (HTTP 422 naming the member; CLI exit 1 with kind
 *    "local"); DSN values are xtext.
 *  - A field RFC 5322 3.6 allows once, given twice under any case, is
 *    refused naming both; DEL and C1 controls in a value are refused; a
 *    non-ASCII VRFY/EXPN argument goes only with SMTPUTF8, a non-ASCII
 *    HELP topic never.
 *
 * The relay is tests/fakes/fake_smtp.py (it keeps every byte).  Each test
 * starts its own fake and, when it needs one, its own service; the
 * teardown stops both, and fails when the service does not exit 0.
 */
#include <jansson.h>
#include <strings.h>

#include "tests/integration/smtp_fx.h"
#include "tests/support/http.h"
#include "tests/support/mpserve.h"

#define STOP_MS 15000
#define UTF8_EXT \
    "'extensions': ['PIPELINING', '8BITMIME', 'SMTPUTF8', " \
    "'DSN', 'ENHANCEDSTATUSCODES']"

/* smtp_fx's fixture plus the service. */
struct wx {
    struct fx f;
    struct mpserve *svc;
};

static int wsetup(void **state)
{
    void *inner = NULL;
    struct wx *w = calloc(1, sizeof *w);
    if (w == NULL || setup(&inner) < 0) {
        free(w);
        return -1;
    }
    w->f = *(struct fx *)inner;
    free(inner);
    *state = w;
    return 0;
}

/* Stops the service (it must exit 0), then smtp_fx's teardown. */
static int wteardown(void **state)
{
    struct wx *w = *state;
    int rc = 0;
    if (w->svc != NULL && mpserve_stop_clean(w->svc, STOP_MS) < 0)
        rc = -1;
    mpserve_free(w->svc);
    struct fx *f = malloc(sizeof *f);
    if (f == NULL)
        return -1;
    *f = w->f;
    free(w);
    void *inner = f;
    teardown(&inner);
    return rc;
}

/* ---- What crossed the wire ---- */

/* Every byte the relay received so far, connections in order; owned by f. */
static const char *all_bytes(struct fx *f)
{
    int n = peer_conn_count(f->p);
    size_t total = 0;
    char *acc = calloc(1, 1);
    assert_non_null(acc);
    for (int c = 1; c <= n; c++) {
        size_t len = 0;
        char *b = peer_conn_bytes(f->p, c, &len);
        if (b == NULL)
            continue;
        char *grown = realloc(acc, total + len + 1);
        assert_non_null(grown);
        acc = grown;
        memcpy(acc + total, b, len);
        total += len;
        acc[total] = '\0';
        free(b);
    }
    return keep(f, acc);
}

/* No MAIL, RCPT or DATA ever reached the relay. */
static void assert_no_transaction(struct fx *f)
{
    const char *b = all_bytes(f);
    if (strstr(b, "MAIL") || strstr(b, "RCPT") || strstr(b, "DATA"))
        fail_msg("a transaction reached the relay: %s", b);
    assert_int_equal(msgs(f, f->p, 0), 0);
}

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

/* ---- The service and the command line ---- */

static void svc(struct wx *w)
{
    w->svc = mpserve_start(peer_port(w->f.p), NULL);
    assert_non_null(w->svc);
}

/* POSTs json to path; the parsed answer (owned by the caller) after
   checking the status. */
static json_t *post(struct wx *w, const char *path, const char *json, long want)
{
    static const char *const ct[] = { "Content-Type: application/json", NULL };
    char url[256];
    struct http_resp r;
    snprintf(url, sizeof url, "%s%s", mpserve_url(w->svc), path);
    if (http_request("POST", url, ct, json, 0, &r) < 0)
        fail_msg("POST %s: %s", path, r.err);
    if (r.status != want)
        fail_msg("POST %s: status %ld, want %ld: %s", path, r.status, want,
                 r.body);
    json_t *j = json_loads(r.body, 0, NULL);
    if (j == NULL)
        fail_msg("not JSON: %s", r.body);
    http_resp_free(&r);
    return j;
}

/* 1 when the problem document's errors name field, with message holding
   part (part may be NULL). */
static int names(json_t *problem, const char *field, const char *part)
{
    json_t *e;
    size_t i;
    json_array_foreach(json_object_get(problem, "errors"), i, e)
    {
        const char *fl = json_string_value(json_object_get(e, "field"));
        const char *m = json_string_value(json_object_get(e, "message"));
        if (fl != NULL && strcmp(fl, field) == 0 &&
            (part == NULL || (m != NULL && strstr(m, part) != NULL)))
            return 1;
    }
    return 0;
}

static void assert_422_names(json_t *p, const char *field, const char *part)
{
    if (!names(p, field, part)) {
        char *d = json_dumps(p, JSON_COMPACT);
        fail_msg("no error at %s (%s): %s", field, part ? part : "", d);
    }
}

static const char *jstr(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (s == NULL)
        fail_msg("no string member \"%s\"", key);
    return s;
}

/* Runs `mailpool ARGS...`; the exit code, and the JSON line it printed
   (NULL when none; the caller decrefs) in *json. */
static int cli(struct fx *f, const char *const *args, json_t **json)
{
    char *out = NULL;
    int rc = mpserve_run(args, 20000, &out);
    assert_non_null(out);
    keep(f, out);
    *json = NULL;
    for (const char *p = out; p != NULL && *p != '\0'; p = strchr(p, '\n')) {
        if (*p == '\n')
            p++;
        if (*p == '{') {
            *json = json_loads(p, JSON_DISABLE_EOF_CHECK, NULL);
            break;
        }
    }
    return rc;
}

/* A file in the peer's directory; owned by f. */
static const char *file_in(struct fx *f, const char *name, const char *text)
{
    char *path = keep(f, peer_path(f->p, name));
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    return path;
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
    const char *args[] = { "send",
                           "--server",
                           f->host,
                           "--from",
                           "a@example.org",
                           "--to",
                           "b@example.org",
                           "--header",
                           "Subject: cli",
                           "--header",
                           "bCc: hidden@example.org",
                           "--header",
                           "Resent-BCC: hidden2@example.org",
                           "--body-file",
                           body,
                           "--timeout",
                           "5",
                           NULL };
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
    const char *args[] = { "send",
                           "--server",
                           f->host,
                           "--from",
                           "a@example.org",
                           "--to",
                           "b@example.org",
                           "--header",
                           "Subject: " X70 " ",
                           "--header",
                           "X-Spaced: " SPACED,
                           "--body-file",
                           body,
                           NULL };
    assert_int_equal(cli(f, args, &j), 0);
    json_decref(j);
    assert_int_equal(msgs(f, f->p, 3), 3);
    for (size_t i = 0; i < 3; i++)
        assert_folded_fields((const char *)f->m[i].data);
}

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

static void test_cli_refuses_repeated_fields_and_non_ascii_queries(void **state)
{
    struct wx *w = *state;
    struct fx *f = &w->f;
    fake(f, NULL);
    const char *body = file_in(f, "body.txt", "hi\n");
    const char *dup[] = { "send",
                          "--server",
                          f->host,
                          "--from",
                          "a@example.org",
                          "--to",
                          "b@example.org",
                          "--header",
                          "From: a@example.org",
                          "--header",
                          "FROM: e@evil.example",
                          "--body-file",
                          body,
                          NULL };
    json_t *j;
    assert_int_equal(cli(f, dup, &j), 1);
    assert_non_null(j);
    assert_string_equal(jstr(j, "kind"), "local");
    assert_non_null(strstr(jstr(j, "error"), "headers 1 (From) and 2 (FROM)"));
    json_decref(j);
    const char *del[] = { "send",
                          "--server",
                          f->host,
                          "--from",
                          "a@example.org",
                          "--to",
                          "b@example.org",
                          "--header",
                          "Subject: a\x7f",
                          "--body-file",
                          body,
                          NULL };
    assert_int_equal(cli(f, del, &j), 1);
    assert_string_equal(jstr(j, "kind"), "local");
    json_decref(j);
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
    assert_no_transaction(f);
    const char *b = all_bytes(f);
    assert_null(strstr(b, "VRFY"));
    assert_null(strstr(b, "HELP"));
    /* With SMTPUTF8 offered the argument goes, with the parameter. */
    fake(f, "{" UTF8_EXT "}");
    const char *vrfy2[] = { "verify", "j\xc3\xb6rg@example.org", "--server",
                            f->host, NULL };
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
        T(test_library_never_transmits_bcc),
        T(test_service_never_transmits_bcc),
        T(test_cli_never_transmits_bcc),
        T(test_folding_leaves_no_white_line_on_the_wire),
        T(test_library_refuses_parameter_smuggling),
        T(test_service_refuses_parameter_smuggling_with_422),
        T(test_cli_refuses_parameter_smuggling),
        T(test_library_refuses_repeated_fields_and_controls),
        T(test_service_refuses_repeated_fields_and_controls),
        T(test_service_utf8_vrfy_needs_smtputf8),
        T(test_service_utf8_vrfy_goes_with_smtputf8),
        T(test_cli_refuses_repeated_fields_and_non_ascii_queries),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
