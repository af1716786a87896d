/*
 * test_wire_session.c - session-level faults of the SMTP client, each
 * proven three ways against tests/fakes/fake_smtp.py: through the library
 * (smtp_send_mail, smtp_verify ...), through `mailpool serve` over HTTP
 * (the service pointed at the fake as its relay) and through
 * `mailpool send` / `mailpool verify` (the JSON they print).  Every case
 * asserts on the result's fields and on the bytes the fake received.
 *
 *   - every AUTH line of the EHLO reply counts ("AUTH=LOGIN" then
 *     "AUTH PLAIN LOGIN": PLAIN is offered);
 *   - a refused session (4xx/5xx greeting, EHLO and HELO refused) still
 *     ends with QUIT, and a QUIT that is never answered does not hang;
 *   - a reply whose code changes mid-reply ("220-..." then "521 ...
 *     blocked") keeps the server's words and code: a refused greeting;
 *   - reply injection: when PIPELINING is not in effect (and always after
 *     STARTTLS), bytes beyond the one reply awaited are a protocol error,
 *     for every command, never the reply to a later one;
 *   - AUTH PLAIN with an initial response answered 334 is cancelled with
 *     "*" and the server's own reply to that is the outcome;
 *   - status and code never disagree: a success has its code below 400,
 *     anything else 400 or more, synthesized when no server reply decided.
 */
#include <jansson.h>
#include <signal.h>
#include <sys/stat.h>

#include "tests/integration/smtp_fx.h"
#include "tests/support/http.h"
#include "tests/support/mpserve.h"

#define STOP_MS 15000
#define NOPIPE_AUTH \
    "'extensions': ['8BITMIME', 'ENHANCEDSTATUSCODES', " \
    "'AUTH PLAIN LOGIN']"
#define FROM "a@example.com"
#define TO "b@example.net"
#define PLAIN_IR "AUTH PLAIN AHUAcA==\r\n" /* "\0u\0p" */

/* The three ways a user meets the client. */
enum way { LIB, HTTP, CLI, NWAYS };
static const char *const WAY_NAME[NWAYS] = { "library", "mailpool serve",
                                             "mailpool send" };

/* What to ask for: a send (verb NULL) or a query, and the options. */
struct job {
    const char *verb;      /* NULL: send; "verify", "expand", "help" */
    const char *arg;       /* the query's argument */
    const char *to;        /* the one recipient; NULL: TO */
    const char *body;      /* NULL: "hello" */
    int tls_opportunistic; /* STARTTLS when offered, any certificate */
    int tls_required;
    int auth;         /* user "u", password "p", in plaintext */
    const char *mech; /* configured mechanism, or NULL */
};

/* A result as the user sees it, from a struct smtp_result or the JSON. */
struct outcome {
    int code, local_code, http;
    char kind[16], status[16], enhanced[16];
    char text[8][300];
    size_t ntext;
    char error[300];
};

/* ---- running a job three ways ---- */

/* Writes content to name in the fake's directory; the path, owned by f. */
static const char *peer_file(struct fx *f, const char *name,
                             const char *content)
{
    char *path = keep(f, peer_path(f->p != NULL ? f->p : f->p2, name));
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(content, fp);
    fclose(fp);
    return path;
}

static void copy(char *dst, size_t n, const char *s)
{
    snprintf(dst, n, "%s", s != NULL ? s : "");
}

static void from_result(const struct smtp_result *r, struct outcome *o)
{
    memset(o, 0, sizeof *o);
    o->code = r->code;
    o->local_code = r->code_local;
    copy(o->kind, sizeof o->kind, smtp_kind_name(r->kind));
    copy(o->status, sizeof o->status, smtp_delivery_name(r->status));
    copy(o->enhanced, sizeof o->enhanced,
         r->enhanced[0] ? r->enhanced : r->reply.enhanced);
    for (size_t i = 0; i < r->reply.nlines && i < 8; i++)
        copy(o->text[o->ntext++], sizeof o->text[0], r->reply.lines[i]);
    copy(o->error, sizeof o->error, r->message);
}

static void from_json(json_t *j, struct outcome *o)
{
    json_t *text = json_object_get(j, "text");
    if (!json_is_object(j) || !json_is_integer(json_object_get(j, "code")) ||
        !json_is_array(text) ||
        !json_is_boolean(json_object_get(j, "local_code")))
        fail_msg("not a result object: %s", json_dumps(j, JSON_COMPACT));
    o->code = (int)json_integer_value(json_object_get(j, "code"));
    o->local_code = json_is_true(json_object_get(j, "local_code"));
    copy(o->kind, sizeof o->kind,
         json_string_value(json_object_get(j, "kind")));
    copy(o->status, sizeof o->status,
         json_is_string(json_object_get(j, "status"))
             ? json_string_value(json_object_get(j, "status"))
             : "none");
    copy(o->enhanced, sizeof o->enhanced,
         json_string_value(json_object_get(j, "enhanced")));
    for (size_t i = 0; i < json_array_size(text) && i < 8; i++)
        copy(o->text[o->ntext++], sizeof o->text[0],
             json_string_value(json_array_get(text, i)));
    copy(o->error, sizeof o->error,
         json_string_value(json_object_get(j, "error")));
}

static void run_lib(struct fx *f, const struct job *j, struct outcome *o)
{
    struct smtp_opts opts = f->opts;
    struct smtp_body body = { .text = j->body ? j->body : "hello\r\n" };
    const char *to = j->to ? j->to : TO;
    body.len = strlen(body.text);
    if (j->tls_opportunistic || j->tls_required) {
        opts.tls = j->tls_required ? SMTP_TLS_REQUIRED : SMTP_TLS_OPPORTUNISTIC;
        opts.insecure_skip_verify = 1;
    }
    if (j->auth) {
        opts.auth_user = "u";
        opts.auth_pass = "p";
        opts.auth_mech = j->mech;
        opts.auth_allow_plaintext = 1;
    }
    smtp_result_clear(&f->res);
    if (j->verb == NULL)
        smtp_send_mail(FROM, &to, 1, SUBJ, 1, &body, f->host, &opts, NULL,
                       &f->res);
    else if (strcmp(j->verb, "verify") == 0)
        smtp_verify(j->arg, f->host, &opts, &f->res);
    else if (strcmp(j->verb, "expand") == 0)
        smtp_expand(j->arg, f->host, &opts, &f->res);
    else
        smtp_get_help(f->host, j->arg, &opts, &f->res);
    from_result(&f->res, o);
}

/* The client options of a job as command-line flags (prefix "--relay-" for
   serve, "--" for send) into argv from *n. */
static void client_flags(struct fx *f, const struct job *j, int serve,
                         const char **argv, size_t *n)
{
    static const char *const relay[] = { "--relay-tls",
                                         "--relay-insecure-skip-verify",
                                         "--relay-auth-user",
                                         "--relay-auth-pass-file",
                                         "--relay-auth-allow-plaintext",
                                         "--relay-auth-mech" };
    static const char *const cli[] = { "--tls",
                                       "--insecure-skip-verify",
                                       "--auth-user",
                                       "--auth-pass-file",
                                       "--auth-allow-plaintext",
                                       "--auth-mech" };
    const char *const *k = serve ? relay : cli;
    if (j->tls_opportunistic || j->tls_required) {
        argv[(*n)++] = k[0];
        argv[(*n)++] = j->tls_required ? "required" : "opportunistic";
        argv[(*n)++] = k[1];
        if (serve)
            argv[(*n)++] = "true";
    } else if (serve) {
        argv[(*n)++] = k[0];
        argv[(*n)++] = "none";
    }
    if (j->auth) {
        argv[(*n)++] = k[2];
        argv[(*n)++] = "u";
        argv[(*n)++] = k[3];
        argv[(*n)++] = peer_file(f, "pass.txt", "p\n");
        assert_int_equal(chmod(argv[*n - 1], 0600), 0); /* a secret */
        argv[(*n)++] = k[4];
        if (serve)
            argv[(*n)++] = "true";
        if (j->mech != NULL) {
            argv[(*n)++] = k[5];
            argv[(*n)++] = j->mech;
        }
    }
}

/* The request of a job over HTTP: its path and JSON; json owned by f. */
static const char *http_request_of(struct fx *f, const struct job *j,
                                   const char **path)
{
    json_t *m;
    if (j->verb == NULL) {
        *path = "/v1/messages";
        m = json_pack("{s:s, s:[s], s:{s:s}, s:s}", "from", FROM, "to",
                      j->to ? j->to : TO, "headers", "Subject", "hi", "body",
                      j->body ? j->body : "hello");
    } else {
        char *p = keep(f, malloc(32));
        snprintf(p, 32, "/v1/%s", j->verb);
        *path = p;
        m = strcmp(j->verb, "help") == 0
                ? json_pack("{s:s}", "topic", j->arg)
                : json_pack("{s:s}",
                            strcmp(j->verb, "verify") == 0 ? "address" : "list",
                            j->arg);
    }
    assert_non_null(m);
    char *s = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    return keep(f, s);
}

static void run_http(struct fx *f, const struct job *j, struct outcome *o)
{
    const char *argv[40] = {
        "--pool-workers",          "1", "--pool-connections",      "1",
        "--pool-retries",          "0", "--relay-connect-timeout", "3",
        "--relay-command-timeout", "5", "--relay-data-timeout",    "5"
    };
    size_t n = 12;
    client_flags(f, j, 1, argv, &n);
    argv[n] = NULL;
    struct mpserve *svc = mpserve_start(peer_port(f->p), argv);
    assert_non_null(svc);
    const char *path, *body = http_request_of(f, j, &path);
    char url[256];
    static const char *const ct[] = { "Content-Type: application/json", NULL };
    struct http_resp r;
    snprintf(url, sizeof url, "%s%s", mpserve_url(svc), path);
    if (http_request("POST", url, ct, body, 0, &r) < 0)
        fail_msg("POST %s: %s", path, r.err);
    memset(o, 0, sizeof *o);
    o->http = (int)r.status;
    json_t *doc = json_loadb(r.body ? r.body : "", r.len, 0, NULL);
    if (r.status == 200)
        from_json(doc, o);
    else /* 502: the relay session could not be opened; the cause */
        copy(o->error, sizeof o->error,
             json_string_value(json_object_get(doc, "detail")));
    json_decref(doc);
    http_resp_free(&r);
    int stopped = mpserve_stop_clean(svc, STOP_MS); /* QUITs its pool */
    mpserve_free(svc);
    assert_int_equal(stopped, 0);
}

static void run_cli(struct fx *f, const struct job *j, struct outcome *o)
{
    const char *argv[40];
    size_t n = 0;
    if (j->verb == NULL) {
        const char *a[] = { "send",
                            "--server",
                            f->host,
                            "--from",
                            FROM,
                            "--to",
                            j->to ? j->to : TO,
                            "--header",
                            "Subject: hi",
                            "--body-file",
                            peer_file(f, "body.txt",
                                      j->body ? j->body : "hello\n"),
                            "--timeout",
                            "5" };
        for (size_t i = 0; i < sizeof a / sizeof a[0]; i++)
            argv[n++] = a[i];
    } else {
        argv[n++] = j->verb;
        if (j->arg != NULL)
            argv[n++] = j->arg;
        argv[n++] = "--server";
        argv[n++] = f->host;
        argv[n++] = "--timeout";
        argv[n++] = "5";
    }
    client_flags(f, j, 0, argv, &n);
    argv[n] = NULL;
    char *out = NULL;
    int rc = mpserve_run(argv, 20000, &out);
    const char *line = out;
    while (line != NULL && *line != '\0' && *line != '{') {
        line = strchr(line, '\n');
        line = line ? line + 1 : NULL;
    }
    if (line == NULL || *line != '{')
        fail_msg("mailpool %s printed no JSON (exit %d): %s", argv[0], rc,
                 out ? out : "");
    json_t *doc = json_loads(line, JSON_DISABLE_EOF_CHECK, NULL);
    if (doc == NULL)
        fail_msg("mailpool %s printed bad JSON: %s", argv[0], out);
    memset(o, 0, sizeof *o);
    from_json(doc, o);
    json_decref(doc);
    free(out);
    /* exit 0 exactly when the code says success */
    assert_int_equal(
        rc, o->code > 0 && o->code < 400 && strcmp(o->kind, "ok") == 0 ? 0 : 1);
}

/* Runs the job one way against the running fake. */
static void run_way(struct fx *f, enum way w, const struct job *j,
                    struct outcome *o)
{
    if (w == LIB)
        run_lib(f, j, o);
    else if (w == HTTP)
        run_http(f, j, o);
    else
        run_cli(f, j, o);
}

/* Every byte the fake received, all connections in order; owned by f. */
static const char *wire_all(struct fx *f)
{
    size_t len = 0, n = (size_t)peer_conn_count(f->p);
    for (size_t k = 1; k <= n; k++)
        len += strlen(wire(f, f->p, (int)k));
    char *all = keep(f, calloc(1, len + 1));
    for (size_t k = 1; k <= n; k++)
        strcat(all, wire(f, f->p, (int)k));
    return all;
}

/* The last CRLF-ended line of bytes (without its CRLF); owned by f. */
static const char *last_line(struct fx *f, const char *bytes)
{
    size_t n = strlen(bytes);
    if (n < 2)
        return "";
    size_t end = n - 2, start = end;
    while (start > 0 && !(bytes[start - 1] == '\n'))
        start--;
    char *l = keep(f, strndup(bytes + start, end - start));
    return l;
}

/* status and code agree: success below 400, anything else 400 or more;
   a synthesized code says so. */
static void assert_code_agrees(const struct outcome *o, const char *what)
{
    int ok = strcmp(o->kind, "ok") == 0;
    int success = ok && (strcmp(o->status, "sent") == 0 ||
                         strcmp(o->status, "none") == 0);
    if (success ? !(o->code > 0 && o->code < 400) : o->code < 400)
        fail_msg("%s: status %s kind %s with code %d", what, o->status, o->kind,
                 o->code);
    if (!success && o->code != 700 &&
        o->enhanced[0] != (char)('0' + o->code / 100))
        fail_msg("%s: code %d with enhanced '%s'", what, o->code, o->enhanced);
}

/* Frees what the fixture kept so far (between the cases of a table). */
static void gc_flush(struct fx *f)
{
    for (size_t i = 0; i < f->ngc; i++)
        free(f->gc[i]);
    f->ngc = 0;
}

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

/* The RSET case: two messages on one connection (the second starts with
   RSET); the library directly, or the service's pool reusing it. */
static void inject_rset(struct fx *f, const struct inject *c, enum way w)
{
    struct outcome o[2];
    fake(f, c->script);
    if (w == LIB) {
        struct smtp_conn *conn = conn_open(f);
        const char *to[] = { TO };
        assert_int_equal(smtp_conn_hello(conn, &f->res), SMTP_OK);
        for (int i = 0; i < 2; i++) {
            smtp_conn_send_mail(conn, FROM, to, 1, SUBJ, 1, &HELLO, NULL,
                                &f->res);
            from_result(&f->res, &o[i]);
        }
        smtp_conn_quit(conn);
        assert_string_equal(o[0].status, "sent");
        if (strcmp(o[1].status, "sent") == 0 ||
            strcmp(o[1].kind, "protocol") != 0)
            fail_msg("RSET, library: %s %s %d", o[1].status, o[1].kind,
                     o[1].code);
        assert_int_equal(o[1].code, 451);
        assert_int_equal(msgs(f, f->p, 1), 1);
    } else {
        /* The service: its pool reuses the connection, finds the injection
           and replaces the connection; the message goes once, on a fresh
           one, nothing taken from the injected bytes. */
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
        static const char *const ct[] = { "Content-Type: application/json",
                                          NULL };
        char url[256];
        snprintf(url, sizeof url, "%s/v1/messages", mpserve_url(svc));
        for (int i = 0; i < 2; i++) {
            struct http_resp r;
            char body[200];
            snprintf(body, sizeof body,
                     "{\"from\":\"%s\",\"to\":[\"%s\"],"
                     "\"headers\":{\"Subject\":\"m%d\"},\"body\":\"hello\"}",
                     FROM, TO, i);
            if (http_request("POST", url, ct, body, 0, &r) < 0)
                fail_msg("POST: %s", r.err);
            assert_int_equal(r.status, 200);
            json_t *doc = json_loadb(r.body, r.len, 0, NULL);
            from_json(doc, &o[i]);
            json_decref(doc);
            http_resp_free(&r);
        }
        assert_int_equal(mpserve_stop_clean(svc, STOP_MS), 0);
        mpserve_free(svc);
        assert_string_equal(o[0].status, "sent");
        assert_string_equal(o[1].status, "sent");
        assert_int_equal(msgs(f, f->p, 2), 2);
        assert_int_equal(f->m[0].conn, 1);
        assert_int_equal(f->m[1].conn, 2); /* not on the first */
    }
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

/* ---- 18: status and code never disagree ---- */

struct fault {
    const char *name;
    const char *script; /* NULL: nobody listens */
    struct job job;
    int code; /* the code wanted (all ways) */
    const char *enhanced;
    int local_code;
    int text_lines; /* lines of the server's reply kept */
    const char *status;
    int at_open; /* over HTTP: a 502 naming the cause */
};

static const struct fault FAULTS[] = {
    { "sent", "{}", { 0 }, 250, "2.0.0", 0, 1, "sent", 0 },
    { "nobody listens", NULL, { 0 }, 421, "4.4.1", 1, 0, "failed", 0 },
    { "no greeting (timeout)",
      "{'rules': [{'match': '^GREETING$', 'action': "
      "'hang'}]}",
      { 0 },
      421,
      "4.4.2",
      1,
      0,
      "failed",
      1 },
    { "dropped at MAIL",
      "{'rules': [{'match': '^MAIL', 'action': 'drop'}]}",
      { 0 },
      421,
      "4.4.2",
      1,
      0,
      "failed",
      0 },
    { "dropped after the final dot",
      "{'rules': [{'match': '^DOT$', "
      "'action': 'drop'}]}",
      { 0 },
      421,
      "4.4.2",
      1,
      0,
      "unknown",
      0 },
    { "garbage greeting",
      "{'rules': [{'match': '^GREETING$', 'raw': "
      "'HTTP/1.1 400 Bad Request\\r\\n\\r\\n'}]}",
      { 0 },
      451,
      "4.5.0",
      1,
      0,
      "failed",
      1 },
    { "DATA answered 250",
      "{" NOPIPE ", 'rules': [{'match': '^DATA', "
      "'reply': '250 2.0.0 sure'}]}",
      { 0 },
      554,
      "5.5.0",
      1,
      1,
      "failed",
      0 },
    { "TLS required, not offered",
      "{}",
      { .tls_required = 1 },
      454,
      "4.7.4",
      1,
      0,
      "failed",
      1 },
    { "AUTH not offered", "{}", { .auth = 1 }, 554, "5.7.0", 1, 0, "failed", 0 },
    { "body line over 998 octets (local)",
      "{}",
      { .body = "x" },
      554,
      "5.6.0",
      1,
      0,
      "failed",
      0 },
    { "550 to MAIL",
      "{'rules': [{'match': '^MAIL', 'reply': '550 5.7.1 no'}]}",
      { 0 },
      550,
      "5.7.1",
      0,
      1,
      "failed",
      0 },
    { "every recipient refused",
      "{'rules': [{'match': '^RCPT', 'reply': "
      "'550 5.1.1 unknown'}]}",
      { 0 },
      700,
      NULL,
      0,
      -1,
      "rejected",
      0 },
    { "VRFY refused",
      "{'rules': [{'match': '^VRFY', 'reply': '550 5.1.1 who'}]}",
      { .verb = "verify", .arg = "x" },
      550,
      "5.1.1",
      0,
      1,
      "none",
      0 },
};

static void test_status_and_code_never_disagree(void **state)
{
    struct fx *f = *state;
    char longline[1000];
    memset(longline, 'x', 999);
    longline[999] = '\0';
    f->opts.greeting_timeout_ms = f->opts.command_timeout_ms = 1500;
    char bad[4096] = "";
    for (size_t i = 0; i < sizeof FAULTS / sizeof FAULTS[0]; i++) {
        const struct fault *c = &FAULTS[i];
        struct job j = c->job;
        if (j.body != NULL)
            j.body = longline;
        for (int w = LIB; w < NWAYS; w++) {
            /* the service refuses a bad body itself (422): library and CLI */
            if (j.body != NULL && w == HTTP)
                continue;
            gc_flush(f);
            if (c->script == NULL) {
                if (f->p2 == NULL) /* holds the CLI's files */
                    f->p2 = peer_start_fake(NULL);
                assert_non_null(f->p2);
                fake(f, NULL);
                int port = peer_port(f->p);
                peer_stop(f->p);
                f->p = NULL;
                free(f->host);
                f->host = malloc(32);
                snprintf(f->host, 32, "127.0.0.1:%d", port);
                if (w == HTTP) /* an unreachable relay is a 502 */
                    continue;
            } else {
                fake(f, c->script);
            }
            struct outcome o;
            if (w == HTTP && strcmp(c->name, "no greeting (timeout)") == 0)
                continue; /* covered by the library and CLI */
            run_way(f, (enum way)w, &j, &o);
            size_t room = sizeof bad - strlen(bad);
            if (w == HTTP && (o.http != (c->at_open ? 502 : 200) ||
                              (c->at_open && o.error[0] == '\0'))) {
                snprintf(bad + strlen(bad), room, "[%s, %s: HTTP %d] ", c->name,
                         WAY_NAME[w], o.http);
                continue;
            }
            if (w == HTTP && c->at_open)
                continue; /* a problem document, no result */
            if (o.code != c->code || strcmp(o.status, c->status) != 0 ||
                o.local_code != c->local_code ||
                (c->enhanced && strcmp(o.enhanced, c->enhanced) != 0) ||
                (c->text_lines >= 0 && (int)o.ntext != c->text_lines))
                snprintf(bad + strlen(bad), room,
                         "[%s, %s: %s %s %d %s local "
                         "%d, %zu lines: %s] ",
                         c->name, WAY_NAME[w], o.status, o.kind, o.code,
                         o.enhanced, o.local_code, o.ntext, o.error);
            else
                assert_code_agrees(&o, c->name);
        }
    }
    if (bad[0])
        fail_msg("%s", bad);
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
        T(test_bytes_beyond_the_awaited_reply_are_a_protocol_error),
        T(test_pipelined_replies_in_one_write_are_still_fine),
        T(test_unexpected_334_to_auth_plain_is_cancelled_with_star),
        T(test_status_and_code_never_disagree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
