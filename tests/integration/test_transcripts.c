/*
 * test_transcripts.c - the transcript tests: every case file in
 * tests/transcripts/ (sorted by name) is run once per path it names, each
 * run against its own fake_smtp.py started with the case's script:
 *   library  smtp_send_mail with the case's message (body as text),
 *   serve    `mailpool serve` in front of the fake, the message POSTed to
 *            /v1/messages, then the service stopped (SIGTERM: it quits its
 *            pooled connections) before the bytes are read,
 *   cli      `mailpool send` with --from, --to, --header and --body-file.
 * Each run compares the bytes the fake received on every connection with
 * the case's expected bytes exactly (a readable diff on a mismatch) and the
 * outcome (status, code, accepted, rejected; the HTTP status for serve).
 *
 * A path listed in the case's xfail line is known to send other bytes
 * today: its mismatch is reported and passes, and its match fails the test
 * ("unexpected pass: remove the xfail").
 *
 * TRANSCRIPT_UPDATE=1 writes CASE.case.new from the library run (or the
 * first path the case names) for a person to review and rename.
 * TRANSCRIPTS_DIR overrides where the cases are looked for (else
 * tests/transcripts under ".", "..", "../.." or two levels above this
 * binary).  The format: tests/README.md and tests/support/transcript.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <smtpcore/smtp.h>

#include "tests/support/http.h"
#include "tests/support/mpserve.h"
#include "tests/support/peer.h"
#include "tests/support/transcript.h"
#include "tests/support/tsupport.h"

extern char **environ;

#define TIMEOUT_S 5   /* per SMTP command, every path */
#define CLOSE_MS 5000 /* bound on the fake seeing every close */
#define STOP_MS 15000 /* bound on the service's SIGTERM drain */
#define CLI_MS 30000  /* bound on one `mailpool send` */
#define MAX_RCPT 32
#define MAX_HDRS 32

/* One test: a case on one path, and what the run holds (freed by
   teardown even when an assertion fails). */
struct run {
    struct tr_case *c;
    enum tr_path path;
    char *load_error; /* the case did not load: the test says so */
    char name[300];
    struct peer *peer;
    struct mpserve *svc;
    json_t *msg;
    struct tr_outcome got;
};

/* ---- The message, from the JSON of POST /v1/messages ---- */

/* The message as the library and the command line take it; borrowed from
   the parsed JSON, except body (owned). */
struct msg {
    const char *from;
    const char *to[MAX_RCPT];
    size_t nto;
    struct smtp_header headers[MAX_HDRS];
    size_t nheaders;
    char *body; /* body or raw, as the API joins it */
    size_t len;
    int raw;
};

/* Adds one header; fails the test past MAX_HDRS or on a non-string. */
static void msg_header(struct msg *m, const char *name, json_t *value)
{
    if (m->nheaders >= MAX_HDRS || !json_is_string(value))
        fail_msg("message: more than %d headers, or a value not a string",
                 MAX_HDRS);
    m->headers[m->nheaders].name = name;
    m->headers[m->nheaders].value = json_string_value(value);
    m->nheaders++;
}

/* "body" (string or lines joined with CRLF, as the API does) or "raw". */
static void msg_body(struct msg *m, json_t *j)
{
    json_t *raw = json_object_get(j, "raw"), *body = json_object_get(j, "body");
    json_t *item;
    size_t i;
    m->raw = json_is_string(raw);
    if (m->raw || json_is_string(body)) {
        json_t *s = m->raw ? raw : body;
        m->len = json_string_length(s);
        m->body = malloc(m->len + 1);
        assert_non_null(m->body);
        memcpy(m->body, json_string_value(s), m->len + 1);
        return;
    }
    char *b = calloc(1, 1);
    size_t len = 0;
    json_array_foreach(body, i, item)
    {
        size_t n = json_string_length(item);
        b = realloc(b, len + n + 3);
        assert_non_null(b);
        if (i > 0) {
            memcpy(b + len, "\r\n", 2);
            len += 2;
        }
        memcpy(b + len, json_string_value(item), n);
        len += n;
        b[len] = '\0';
    }
    m->body = b;
    m->len = len;
}

/* Reads the case's message JSON into m (borrowing from r->msg). */
static void msg_decode(struct run *r, struct msg *m)
{
    json_error_t e;
    memset(m, 0, sizeof *m);
    r->msg = json_loads(r->c->message, 0, &e);
    if (r->msg == NULL)
        fail_msg("%s: message JSON, line %d: %s", r->c->file, e.line, e.text);
    json_t *to = json_object_get(r->msg, "to"),
           *h = json_object_get(r->msg, "headers");
    json_t *v;
    const char *key;
    size_t i;
    m->from = json_string_value(json_object_get(r->msg, "from"));
    assert_non_null(m->from);
    json_array_foreach(to, i, v)
    {
        assert_true(json_is_string(v) && m->nto < MAX_RCPT);
        m->to[m->nto++] = json_string_value(v);
    }
    if (json_is_object(h))
        json_object_foreach(h, key, v) msg_header(m, key, v);
    json_array_foreach(h, i, v) msg_header(
        m, json_string_value(json_array_get(v, 0)), json_array_get(v, 1));
    msg_body(m, r->msg);
}

/* ---- The three paths ---- */

/* The outcome of a JSON result object (HTTP API and command line). */
static void outcome_of_json(json_t *j, struct tr_outcome *o)
{
    json_t *v;
    size_t i;
    const char *status = json_string_value(json_object_get(j, "status"));
    snprintf(o->status, sizeof o->status, "%s", status ? status : "(none)");
    o->code = (int)json_integer_value(json_object_get(j, "code"));
    json_array_foreach(json_object_get(j, "accepted"), i, v)
        assert_int_equal(tr_outcome_accept(o, json_string_value(v)), 0);
    json_array_foreach(json_object_get(j, "rejected"), i, v) assert_int_equal(
        tr_outcome_reject(o, json_string_value(json_object_get(v, "recipient")),
                          (int)json_integer_value(json_object_get(v, "code"))),
        0);
}

/* smtp_send_mail with the case's message, EHLO name and pipelining. */
static void run_library(struct run *r)
{
    struct msg m;
    msg_decode(r, &m);
    struct smtp_opts opts = {
        .helo_name = r->c->helo,
        .tls = SMTP_TLS_NONE,
        .no_pipelining = !r->c->pipelining,
        .connect_timeout_ms = TIMEOUT_S * 1000,
        .greeting_timeout_ms = TIMEOUT_S * 1000,
        .command_timeout_ms = TIMEOUT_S * 1000,
        .data_init_timeout_ms = TIMEOUT_S * 1000,
        .data_block_timeout_ms = TIMEOUT_S * 1000,
        .data_term_timeout_ms = TIMEOUT_S * 1000,
    };
    struct smtp_send_opts sopts = { .raw = m.raw };
    struct smtp_body body = { .text = m.body, .len = m.len };
    struct smtp_result res;
    char *host = peer_hostport(r->peer);
    assert_non_null(host);
    smtp_result_init(&res);
    smtp_send_mail(m.from, m.to, m.nto, m.headers, m.nheaders, &body, host,
                   &opts, &sopts, &res);
    free(host);
    free(m.body);
    snprintf(r->got.status, sizeof r->got.status, "%s",
             smtp_delivery_name(res.status));
    r->got.code = res.code;
    r->got.http = r->c->want.http;
    for (size_t i = 0; i < res.naccepted; i++)
        assert_int_equal(tr_outcome_accept(&r->got, res.accepted[i]), 0);
    for (size_t i = 0; i < res.nrejected; i++)
        assert_int_equal(tr_outcome_reject(&r->got, res.rejected[i].recipient,
                                           res.rejected[i].reply.code),
                         0);
    smtp_result_clear(&res);
}

/* `mailpool serve` in front of the fake; POST the message; stop it. */
static void run_serve(struct run *r)
{
    const char *extra[] = { "--relay-helo-name", r->c->helo,
                            "--relay-pipelining",
                            r->c->pipelining ? "true" : "false", NULL };
    static const char *const ct[] = { "Content-Type: application/json", NULL };
    r->svc = mpserve_start(peer_port(r->peer), extra);
    assert_non_null(r->svc);
    char url[128];
    snprintf(url, sizeof url, "%s/v1/messages", mpserve_url(r->svc));
    struct http_resp resp;
    if (http_request("POST", url, ct, r->c->message, 0, &resp) < 0)
        fail_msg("POST /v1/messages: %s", resp.err);
    json_t *j = json_loadb(resp.body != NULL ? resp.body : "", resp.len, 0,
                           NULL);
    r->got.http = (int)resp.status;
    if (j == NULL)
        fail_msg("HTTP %ld, not JSON: %.300s", resp.status, resp.body);
    outcome_of_json(j, &r->got);
    json_decref(j);
    http_resp_free(&resp);
    assert_int_equal(mpserve_stop_clean(r->svc, STOP_MS), 0);
}

/* Writes len bytes to path; fails the test on error. */
static void write_file(const char *path, const char *bytes, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* Runs the mailpool binary with argv (NULL-ended, argv[0] the binary),
   standard output and error into files of the peer's directory; returns
   the exit code and the output (caller frees). */
static int spawn_cli(struct run *r, char **argv, char **out, char **err)
{
    char *opath = peer_path(r->peer, "cli.out"),
         *epath = peer_path(r->peer, "cli.err");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, opath,
                                     O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, epath,
                                     O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    assert_int_equal(rc, 0);
    int st = 0;
    long long end = ts_now_ms() + CLI_MS;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (ts_now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            fail_msg("mailpool send did not finish in %d ms", CLI_MS);
        }
        ts_sleep_ms(5);
    }
    *out = ts_slurp(opath, NULL);
    *err = ts_slurp(epath, NULL);
    free(opath);
    free(epath);
    assert_non_null(*out);
    assert_non_null(*err);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* `mailpool send` with the equivalent flags. */
static void run_cli(struct run *r)
{
    struct msg m;
    msg_decode(r, &m);
    if (m.raw)
        fail_msg("%s: mailpool send has no raw form: leave cli out of paths",
                 r->c->file);
    char bin[PATH_MAX], hdrs[MAX_HDRS][1024];
    char *host = peer_hostport(r->peer), *bodyf = peer_path(r->peer, "body");
    char *argv[16 + 2 * MAX_RCPT + 2 * MAX_HDRS];
    size_t n = 0;
    assert_non_null(mpserve_binary(bin, sizeof bin));
    write_file(bodyf, m.body, m.len);
#define ARG(s) (argv[n++] = (char *)(uintptr_t)(s))
    ARG(bin);
    ARG("send");
    ARG("--server");
    ARG(host);
    ARG("--from");
    ARG(m.from);
    for (size_t i = 0; i < m.nto; i++) {
        ARG("--to");
        ARG(m.to[i]);
    }
    for (size_t i = 0; i < m.nheaders; i++) {
        snprintf(hdrs[i], sizeof hdrs[i], "%s: %s", m.headers[i].name,
                 m.headers[i].value);
        ARG("--header");
        ARG(hdrs[i]);
    }
    ARG("--body-file");
    ARG(bodyf);
    ARG("--helo");
    ARG(r->c->helo);
    ARG("--tls");
    ARG("none");
    ARG("--timeout");
    ARG("5");
    if (!r->c->pipelining)
        ARG("--no-pipelining");
    argv[n] = NULL;
#undef ARG
    char *out, *err;
    int rc = spawn_cli(r, argv, &out, &err);
    free(host);
    free(bodyf);
    free(m.body);
    json_t *j = json_loads(out, 0, NULL);
    if (j == NULL)
        fail_msg("mailpool send exit %d, stdout not JSON: %s\nstderr: %s", rc,
                 out, err);
    outcome_of_json(j, &r->got);
    r->got.http = r->c->want.http;
    int want_rc = r->got.code > 0 && r->got.code < 400 ? 0 : 1;
    json_decref(j);
    if (rc != want_rc || err[0] != '\0')
        fail_msg("mailpool send exit %d (want %d for code %d), stderr: %s", rc,
                 want_rc, r->got.code, err);
    free(out);
    free(err);
}

/* ---- Comparing ---- */

/* Waits until the fake has seen every connection it accepted close. */
static void wait_closed(struct peer *p)
{
    char *path = peer_path(p, "capture/events.jsonl");
    long long end = ts_now_ms() + CLOSE_MS;
    for (;;) {
        char *ev = ts_slurp(path, NULL);
        int opened = 0, closed = 0;
        for (const char *s = ev; s != NULL && (s = strstr(s, "\"event\": \""));
             s++) {
            opened += strncmp(s + 10, "connect\"", 8) == 0;
            closed += strncmp(s + 10, "close\"", 6) == 0;
        }
        free(ev);
        if (opened == closed || ts_now_ms() > end)
            break;
        ts_sleep_ms(5);
    }
    free(path);
}

/* Appends s to the report *rep (both may be NULL). */
static void report_add(char **rep, const char *head, char *s)
{
    if (s == NULL)
        return;
    size_t old = *rep != NULL ? strlen(*rep) : 0;
    size_t add = strlen(head) + strlen(s) + 2;
    char *n = realloc(*rep, old + add + 1);
    assert_non_null(n);
    snprintf(n + old, add + 1, "%s\n%s", head, s);
    *rep = n;
    free(s);
}

/* The bytes of each connection against the case; a report or NULL. */
static char *compare_bytes(struct run *r, char ***bytes, size_t **lens,
                           int *ngot)
{
    char *rep = NULL, head[96];
    int want = tr_case_nconns(r->c, r->path);
    *ngot = peer_conn_count(r->peer);
    *bytes = calloc((size_t)*ngot + 1, sizeof **bytes);
    *lens = calloc((size_t)*ngot + 1, sizeof **lens);
    assert_true(*bytes != NULL && *lens != NULL);
    if (*ngot != want) {
        char *s = malloc(64);
        assert_non_null(s);
        snprintf(s, 64, "  expected %d, got %d\n", want, *ngot);
        report_add(&rep, "connections:", s);
    }
    for (int k = 1; k <= *ngot; k++) {
        (*bytes)[k - 1] = peer_conn_bytes(r->peer, k, &(*lens)[k - 1]);
        const struct tr_conn *e = tr_case_conn(r->c, k, r->path);
        if (e == NULL || (*bytes)[k - 1] == NULL)
            continue;
        snprintf(head, sizeof head, "connection %d (client bytes):", k);
        report_add(&rep, head,
                   tr_diff(e->bytes, e->len, (*bytes)[k - 1], (*lens)[k - 1]));
    }
    return rep;
}

/* Runs the case on its path and checks the wire and the outcome. */
static void test_case_path(void **state)
{
    struct run *r = *state;
    if (r->load_error != NULL)
        fail_msg("%s", r->load_error);
    r->peer = peer_start_fake(r->c->script);
    assert_non_null(r->peer);
    if (r->path == TR_LIBRARY)
        run_library(r);
    else if (r->path == TR_SERVE)
        run_serve(r);
    else
        run_cli(r);
    wait_closed(r->peer);
    char **bytes;
    size_t *lens;
    int ngot;
    char *rep = compare_bytes(r, &bytes, &lens, &ngot);
    report_add(&rep, "outcome:", tr_outcome_diff(&r->c->want, &r->got));
    const char *upd = getenv("TRANSCRIPT_UPDATE");
    int first = __builtin_ctz(r->c->paths);
    if (upd != NULL && upd[0] == '1' && (int)r->path == first) {
        char why[512];
        if (tr_write_new(r->c, &r->got, bytes, lens, ngot, why, sizeof why) < 0)
            print_error("%s\n", why);
        else
            print_message("wrote %s.new (from the %s path)\n", r->c->file,
                          tr_path_name(r->path));
    }
    for (int k = 0; k < ngot; k++)
        free(bytes[k]);
    free(bytes);
    free(lens);
    int xfail = (r->c->xfail >> r->path) & 1;
    if (rep != NULL && xfail) {
        print_message("%s: known failure (%s):\n%s", r->name,
                      r->c->xfail_why[r->path], rep);
        free(rep);
        return;
    }
    if (rep == NULL && xfail)
        fail_msg("%s: unexpected pass: remove the xfail of %s (%s)", r->name,
                 tr_path_name(r->path), r->c->xfail_why[r->path]);
    if (rep != NULL) {
        print_error("%s (%s): the %s path differs from %s\n%s", r->name,
                    r->c->title, tr_path_name(r->path), r->c->file, rep);
        free(rep);
        fail();
    }
}

/* Stops what a run started, even after a failed assertion. */
static int teardown_run(void **state)
{
    struct run *r = *state;
    mpserve_free(r->svc);
    r->svc = NULL;
    peer_stop(r->peer);
    r->peer = NULL;
    json_decref(r->msg);
    r->msg = NULL;
    tr_outcome_clear(&r->got);
    return 0;
}

/* ---- Finding the cases ---- */

/* The directory of the case files into dir; 0 or -1. */
static int cases_dir(char *dir, size_t size)
{
    static const char *const rel[] = { ".", "..", "../.." };
    const char *env = getenv("TRANSCRIPTS_DIR");
    char exe[PATH_MAX], probe[PATH_MAX + 32];
    if (env != NULL && env[0] != '\0') {
        snprintf(dir, size, "%s", env);
        return 0;
    }
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = '\0';
    for (int up = 0; up < 2 && strrchr(exe, '/') != NULL; up++)
        *strrchr(exe, '/') = '\0';
    for (size_t i = 0; i <= sizeof rel / sizeof rel[0]; i++) {
        const char *base = i < sizeof rel / sizeof rel[0] ? rel[i] : exe;
        snprintf(probe, sizeof probe, "%s%s/tests/transcripts", base,
                 i < sizeof rel / sizeof rel[0] ? "" : "/..");
        if (access(probe, R_OK | X_OK) == 0) {
            snprintf(dir, size, "%s", probe);
            return 0;
        }
    }
    return -1;
}

/* scandir filter: names ending in ".case". */
static int is_case(const struct dirent *d)
{
    size_t n = strlen(d->d_name);
    return n > 5 && strcmp(d->d_name + n - 5, ".case") == 0;
}

/* One test per (case, path); *ntests set.  Cases that do not load get one
   failing test that says why. */
static struct CMUnitTest *build_tests(const char *dir, size_t *ntests,
                                      struct run **runs_out, size_t *nruns)
{
    struct dirent **names;
    int n = scandir(dir, &names, is_case, alphasort);
    if (n < 0)
        return NULL;
    struct run *runs = calloc((size_t)n * TR_NPATHS + 1, sizeof *runs);
    struct CMUnitTest *t = calloc((size_t)n * TR_NPATHS + 1, sizeof *t);
    size_t k = 0;
    for (int i = 0; runs != NULL && t != NULL && i < n; i++) {
        char file[2 * PATH_MAX + 512], why[512];
        struct tr_case *c = calloc(1, sizeof *c);
        snprintf(file, sizeof file, "%s/%s", dir, names[i]->d_name);
        int bad = c == NULL || tr_case_load(file, c, why, sizeof why) < 0;
        for (int p = 0; p < TR_NPATHS; p++) {
            if (!bad && !(c->paths & (1u << p)))
                continue;
            struct run *r = &runs[k];
            r->c = c;
            r->path = (enum tr_path)p;
            r->load_error = bad ? strdup(c != NULL ? why : "no memory") : NULL;
            snprintf(r->name, sizeof r->name, "%.*s [%s]",
                     (int)(strlen(names[i]->d_name) - 5), names[i]->d_name,
                     bad ? "load" : tr_path_name((enum tr_path)p));
            t[k] = (struct CMUnitTest){ r->name, test_case_path, NULL,
                                        teardown_run, r };
            k++;
            if (bad)
                break;
        }
        free(names[i]);
    }
    free(names);
    *ntests = k;
    *runs_out = runs;
    *nruns = k;
    return t;
}

int main(void)
{
    char dir[PATH_MAX + 64];
    struct run *runs = NULL;
    size_t ntests = 0, nruns = 0;
    signal(SIGPIPE, SIG_IGN);
    if (cases_dir(dir, sizeof dir) < 0) {
        fprintf(stderr, "cannot find tests/transcripts; set TRANSCRIPTS_DIR\n");
        return 1;
    }
    struct CMUnitTest *tests = build_tests(dir, &ntests, &runs, &nruns);
    if (tests == NULL || ntests == 0) {
        fprintf(stderr, "no case files in %s\n", dir);
        return 1;
    }
    int rc = _cmocka_run_group_tests("transcripts", tests, ntests, NULL, NULL);
    struct tr_case *last = NULL;
    for (size_t i = 0; i < nruns; i++) {
        free(runs[i].load_error);
        if (runs[i].c != last) {
            last = runs[i].c;
            tr_case_free(last);
            free(last);
        }
    }
    free(runs);
    free(tests);
    return rc;
}
