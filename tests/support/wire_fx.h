/*
 * tests/support/wire_fx.h - running one job three ways against
 * tests/fakes/fake_smtp.py, as the session-level wire tests do
 * (test_wire_session.c, test_wire_injection.c, test_wire_status.c):
 * through the library (smtp_send_mail, smtp_verify ...), through
 * `mailpool serve` over HTTP (the service pointed at the fake as its
 * relay) and through `mailpool send` / `mailpool verify` (the JSON they
 * print); each way yields the same struct outcome, and readers of the
 * bytes the fake received.  On top of tests/support/smtp_fx.h's
 * fixture.  Header-only (static inline).
 */
#ifndef TESTS_SUPPORT_WIRE_FX_H
#define TESTS_SUPPORT_WIRE_FX_H

#include <jansson.h>
#include <sys/stat.h>

#include "tests/support/smtp_fx.h"
#include "tests/support/http.h"
#include "tests/support/mpserve.h"

#define STOP_MS 15000 /* bound on the service's SIGTERM stop */
#define FROM "a@example.com"
#define TO "b@example.net"

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
static inline const char *peer_file(struct fx *f, const char *name,
                                    const char *content)
{
    char *path = keep(f, peer_path(f->p != NULL ? f->p : f->p2, name));
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(content, fp);
    fclose(fp);
    return path;
}

/* s (NULL: empty) into dst of size n, cut to fit. */
static inline void copy(char *dst, size_t n, const char *s)
{
    snprintf(dst, n, "%s", s != NULL ? s : "");
}

/* The outcome of a library call, from its struct smtp_result. */
static inline void from_result(const struct smtp_result *r, struct outcome *o)
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

/* The outcome from the JSON result object the service or the CLI printed. */
static inline void from_json(json_t *j, struct outcome *o)
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

/* Runs the job through the library (one connection, then QUIT). */
static inline void run_lib(struct fx *f, const struct job *j, struct outcome *o)
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
static inline void client_flags(struct fx *f, const struct job *j, int serve,
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
static inline const char *http_request_of(struct fx *f, const struct job *j,
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

/* Runs the job through a `mailpool serve` relaying to the fake; stopped
   (cleanly, its pool QUITs) before returning. */
static inline void run_http(struct fx *f, const struct job *j,
                            struct outcome *o)
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

/* Runs the job as `mailpool send` (or the query verb) and reads the JSON
   line it printed; its exit code must say the same as the result. */
static inline void run_cli(struct fx *f, const struct job *j, struct outcome *o)
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
static inline void run_way(struct fx *f, enum way w, const struct job *j,
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
static inline const char *wire_all(struct fx *f)
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
static inline const char *last_line(struct fx *f, const char *bytes)
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
static inline void assert_code_agrees(const struct outcome *o, const char *what)
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
static inline void gc_flush(struct fx *f)
{
    for (size_t i = 0; i < f->ngc; i++)
        free(f->gc[i]);
    f->ngc = 0;
}

#endif
