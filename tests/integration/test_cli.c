/*
 * test_cli.c - the mailpool command line (send, verify, expand, help) run as
 * a subprocess against the peers: one JSON object on stdout in the API's
 * shape, exit 0 when code < 400, 1 otherwise, 2 on a usage error (with the
 * usage on stderr and nothing on stdout).  The binary is looked up beside
 * the test: <build>/tests/test_cli -> <build>/mailpool (run `make` first).
 */
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "tests/support/smtp_fx.h"

extern char **environ;

/* <dir of this binary>/../mailpool */
static const char *mailpool_bin(void)
{
    static char path[PATH_MAX]; /* test-only: written once, then read */
    char exe[PATH_MAX - 16];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    assert_true(n > 0);
    exe[n] = '\0';
    for (int up = 0; up < 2; up++)
        *strrchr(exe, '/') = '\0';
    snprintf(path, sizeof path, "%s/mailpool", exe);
    if (access(path, X_OK) != 0)
        fail_msg("%s is missing: run `make` first", path);
    return path;
}

/* What one run printed and how it ended. */
struct out {
    int status;      /* exit code, or -1 when killed */
    char *out, *err; /* owned by the fixture */
    json_t *json;    /* stdout parsed, or NULL */
};

/* Drains fds[0..1] into bufs until both reach EOF (10 s at most). */
static void drain(struct fx *f, int fds[2], char *bufs[2])
{
    size_t len[2] = { 0, 0 }, cap[2] = { 4096, 4096 };
    for (int k = 0; k < 2; k++)
        bufs[k] = keep(f, calloc(1, cap[k]));
    long long end = now_ms() + 10000;
    while ((fds[0] >= 0 || fds[1] >= 0) && now_ms() < end) {
        struct pollfd p[2] = { { .fd = fds[0], .events = POLLIN },
                               { .fd = fds[1], .events = POLLIN } };
        if (poll(p, 2, 200) <= 0)
            continue;
        for (int k = 0; k < 2; k++) {
            if (fds[k] < 0 || !(p[k].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            if (len[k] + 1 >= cap[k]) {
                char *nb = realloc(bufs[k], cap[k] *= 2);
                assert_non_null(nb);
                for (size_t g = 0; g < f->ngc; g++)
                    if (f->gc[g] == bufs[k])
                        f->gc[g] = nb;
                bufs[k] = nb;
            }
            ssize_t r = read(fds[k], bufs[k] + len[k], cap[k] - len[k] - 1);
            if (r <= 0) {
                close(fds[k]);
                fds[k] = -1;
                continue;
            }
            len[k] += (size_t)r;
            bufs[k][len[k]] = '\0';
        }
    }
}

/* Runs mailpool with argv (NULL-terminated, without argv[0]) and stdin. */
static struct out run(struct fx *f, const char *in, const char *const *args)
{
    const char *argv[40] = { mailpool_bin() };
    size_t n = 1;
    while (args[n - 1] != NULL && n < 39) {
        argv[n] = args[n - 1];
        n++;
    }
    argv[n] = NULL;
    int pin[2], pout[2], perr[2];
    assert_int_equal(pipe2(pin, O_CLOEXEC), 0);
    assert_int_equal(pipe2(pout, O_CLOEXEC), 0);
    assert_int_equal(pipe2(perr, O_CLOEXEC), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pin[0], 0);
    posix_spawn_file_actions_adddup2(&fa, pout[1], 1);
    posix_spawn_file_actions_adddup2(&fa, perr[1], 2);
    posix_spawnattr_t at; /* the child gets SIGPIPE back */
    sigset_t dfl;
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    posix_spawnattr_init(&at);
    posix_spawnattr_setsigdefault(&at, &dfl);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGDEF);
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], &fa, &at,
                         (char *const *)(uintptr_t)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    assert_int_equal(rc, 0);
    /* The child may exit without reading stdin (a refused send): EPIPE. */
    if (in != NULL && write(pin[1], in, strlen(in)) != (ssize_t)strlen(in) &&
        errno != EPIPE)
        fail_msg("cannot write stdin: %s", strerror(errno));
    close(pin[1]);
    struct out o = { .status = -1 };
    int fds[2] = { pout[0], perr[0] };
    char *bufs[2];
    drain(f, fds, bufs);
    o.out = bufs[0];
    o.err = bufs[1];
    int st;
    for (long long end = now_ms() + 10000; waitpid(pid, &st, WNOHANG) == 0;
         sleep_ms(10))
        if (now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            fail_msg("mailpool did not exit: %s", o.err);
        }
    o.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    o.json = json_loads(o.out, 0, NULL);
    return o;
}

/* One JSON object on stdout, and the exit code wanted. */
static json_t *json_result(const struct out *o, int want_exit)
{
    if (o->status != want_exit)
        fail_msg("exit %d, want %d; stdout: %s stderr: %s", o->status,
                 want_exit, o->out, o->err);
    if (!json_is_object(o->json))
        fail_msg("stdout is not one JSON object: %s", o->out);
    assert_int_equal(count(o->out, "\n"), 1); /* one line */
    return o->json;
}

static const char *jstr(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (s == NULL)
        fail_msg("no string member \"%s\"", key);
    return s;
}

static long long jint(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        fail_msg("no integer member \"%s\"", key);
    return json_integer_value(v);
}

/* A file in the peer's directory with this content; owned by f. */
static const char *file_in(struct fx *f, const char *name, const char *content)
{
    char *path = keep(f, peer_path(f->p, name));
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(content, fp);
    fclose(fp);
    assert_int_equal(chmod(path, 0600), 0); /* secrets must be */
    return path;
}

static void test_cli_send_prints_sent_json_and_exits_0(void **state)
{
    struct fx *f = *state;
    fake(f, NULL);
    const char *body = file_in(f, "body.txt", "Hello\n.dot line\n");
    const char *args[] = { "send",        "--server", f->host,
                           "--from",      "a@x",      "--to",
                           "b@y",         "--header", "Subject: cli test",
                           "--body-file", body,       "--timeout",
                           "5",           NULL };
    struct out o = run(f, NULL, args);
    json_t *j = json_result(&o, 0);
    assert_int_equal(jint(j, "code"), 250);
    assert_string_equal(jstr(j, "status"), "sent");
    assert_string_equal(jstr(j, "kind"), "ok");
    assert_string_equal(jstr(j, "enhanced"), "2.0.0");
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(j, "text"), 0)),
        "2.0.0 Ok: queued as 1");
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(j, "accepted"), 0)),
        "b@y");
    assert_int_equal(json_array_size(json_object_get(j, "rejected")), 0);
    assert_null(json_object_get(j, "error"));
    assert_string_equal(o.err, "");
    assert_int_equal(msgs(f, f->p, 1), 1);
    char want[300];
    snprintf(want, sizeof want, "\r\nMessage-ID: %s\r\n",
             jstr(j, "message_id"));
    assert_non_null(strstr((const char *)f->m[0].data, want));
    assert_non_null(
        strstr((const char *)f->m[0].data, "Subject: cli test\r\n"));
    assert_string_equal(body_of(&f->m[0]), "Hello\r\n..dot line\r\n");
    assert_true(
        starts_with(wire(f, f->p, 1), "EHLO [127.0.0.1]\r\nMAIL FROM:<a@x>"));
    json_decref(j);
}

static void test_cli_send_reads_body_from_stdin(void **state)
{
    struct fx *f = *state;
    fake(f, NULL);
    const char *args[] = { "send", "--server", f->host, "--from",
                           "a@x",  "--to",     "b@y",   "--no-pipelining",
                           NULL };
    struct out o = run(f, "from stdin\r\n.\nlast", args);
    json_decref(json_result(&o, 0));
    assert_int_equal(msgs(f, f->p, 1), 1);
    assert_string_equal(body_of(&f->m[0]), "from stdin\r\n..\r\nlast\r\n");
}

static void test_cli_partial_rejection_exits_1_with_700_and_losers(void **state)
{
    struct fx *f = *state;
    fake(
        f,
        "{'rules': [{'match': '^RCPT TO:<bad', 'reply': '550 5.1.1 no such user'}]}");
    const char *args[] = { "send", "--server", f->host, "--from", "a@x",
                           "--to", "good@y",   "--to",  "bad@y",  NULL };
    struct out o = run(f, "hi\n", args);
    json_t *j = json_result(&o, 1);
    assert_int_equal(jint(j, "code"), 700);
    assert_string_equal(jstr(j, "status"), "partial");
    json_t *r = json_array_get(json_object_get(j, "rejected"), 0);
    assert_string_equal(jstr(r, "recipient"), "bad@y");
    assert_int_equal(jint(r, "code"), 550);
    assert_string_equal(jstr(r, "enhanced"), "5.1.1");
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(r, "text"), 0)),
        "5.1.1 no such user");
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(j, "accepted"), 0)),
        "good@y");
    assert_int_equal(msgs(f, f->p, 1), 1);
    assert_string_equal(f->m[0].rcpt_to[0], "good@y");
    json_decref(j);
}

static void test_cli_verify_expand_help_print_reply_lines(void **state)
{
    struct fx *f = *state;
    fake(
        f,
        "{'rules': [{'match': '^VRFY', 'reply': '250-Bob <bob@x>\\n250 2.1.5 ok'}]}");
    const char *v[] = { "verify", "bob", "--server", f->host, NULL };
    struct out o = run(f, NULL, v);
    json_t *j = json_result(&o, 0);
    assert_int_equal(jint(j, "code"), 250);
    assert_int_equal(json_array_size(json_object_get(j, "text")), 2);
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(j, "text"), 0)),
        "Bob <bob@x>");
    assert_null(json_object_get(j, "status")); /* not a send */
    json_decref(j);

    const char *e[] = { "expand", "staff", "--server", f->host, NULL };
    o = run(f, NULL, e);
    j = json_result(&o, 1); /* the fake's 502 */
    assert_int_equal(jint(j, "code"), 502);
    json_decref(j);

    const char *h[] = { "help", "--server", f->host, NULL };
    const char *hm[] = { "help", "MAIL", "--server", f->host, NULL };
    o = run(f, NULL, h);
    j = json_result(&o, 0);
    assert_int_equal(jint(j, "code"), 214);
    json_decref(j);
    o = run(f, NULL, hm);
    json_decref(json_result(&o, 0));
    assert_string_equal(wire(f, f->p, 1),
                        "EHLO [127.0.0.1]\r\nVRFY bob\r\nQUIT\r\n");
    assert_string_equal(wire(f, f->p, 2),
                        "EHLO [127.0.0.1]\r\nEXPN staff\r\nQUIT\r\n");
    assert_string_equal(wire(f, f->p, 3),
                        "EHLO [127.0.0.1]\r\nHELP\r\nQUIT\r\n");
    assert_string_equal(wire(f, f->p, 4),
                        "EHLO [127.0.0.1]\r\nHELP MAIL\r\nQUIT\r\n");
}

static void test_cli_usage_errors_exit_2_without_connecting(void **state)
{
    struct fx *f = *state;
    fake(f, NULL);
    const char *H = f->host;
    const char *const cases[][16] = {
        { NULL },
        { "frobnicate", NULL },
        { "send", "--from", "a@x", "--to", "b@y", NULL }, /* no --server */
        { "send", "--server", H, "--from", "a@x", NULL }, /* no --to */
        { "send", "--server", H, "--to", "b@y", NULL },   /* no --from */
        { "send", "--server", H, "--from", "a@x", "--to", "b@y", "--bogus", "1",
          NULL },
        { "send", "--server", H, "--from", "a@x", "--to", "b@y", "--tls",
          "always", NULL },
        { "send", "--server", H, "--from", "a@x", "--to", "b@y", "--timeout",
          "abc", NULL },
        { "send", "--server", H, "--from", "a@x", "--to", "b@y", "--header",
          "NoColon", NULL },
        { "send", "--server", H, "--from", "a@x", "--to", "b@y", "--body-file",
          "/nonexistent/body", NULL },
        { "send", "--server", H, "--from", "a@x", "--to", "b@y", "--auth-user",
          "u", "--auth-pass-file", "/nonexistent/pass", NULL },
        { "send", "--server", H, "--from", "a@x", "--to", NULL }, /* no value */
        { "verify", "--server", H, NULL }, /* no address */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct out o = run(f, "", cases[i]);
        if (o.status != 2 || o.out[0] != '\0' || !strstr(o.err, "usage"))
            fail_msg("case %zu (%s): exit %d, stdout '%s', stderr '%s'", i,
                     cases[i][0] ? cases[i][0] : "(none)", o.status, o.out,
                     o.err);
        json_decref(o.json);
    }
    assert_int_equal(peer_conn_count(f->p), 0);
    const char *help[] = { "--help", NULL };
    struct out o = run(f, NULL, help);
    assert_int_equal(o.status, 0);
    assert_non_null(strstr(o.out, "mailpool send --server"));
    /* a command's --help or -h is the usage too, not an unknown option */
    const char *const asks[][5] = { { "send", "--help", NULL },
                                    { "verify", "-h", NULL },
                                    { "send", "--from", "a@x", "--help",
                                      NULL } };
    for (size_t i = 0; i < sizeof asks / sizeof asks[0]; i++) {
        struct out h = run(f, NULL, asks[i]);
        if (h.status != 0 || strstr(h.out, "mailpool send --server") == NULL ||
            h.err[0] != '\0')
            fail_msg("%s %s: exit %d, stdout '%.60s', stderr '%s'", asks[i][0],
                     asks[i][1], h.status, h.out, h.err);
        json_decref(h.json);
    }
    assert_int_equal(peer_conn_count(f->p), 0);
}

/* The client's relay options are the relay.* keys: config/ checks each as
   it checks serve's --relay-* flag, so a value serve refuses is refused
   here too (exit 2, the key named, the same reason), before connecting. */
static void test_cli_relay_options_refused_by_the_relay_keys_rules(void **state)
{
    struct fx *f = *state;
    fake(f, NULL);
    static const char *const opt[][4] = {
        { "--auth-mech", "CRAM-MD5", "--relay-auth-mech", "relay.auth_mech" },
        { "--helo", "two words", "--relay-helo-name", "relay.helo_name" },
        { "--tls", "always", "--relay-tls", "relay.tls" },
        { "--timeout", "86401", "--relay-command-timeout",
          "relay.command_timeout" },
    };
    for (size_t i = 0; i < sizeof opt / sizeof opt[0]; i++) {
        const char *a[] = { "send", "--server", f->host,   "--from",  "a@x",
                            "--to", "b@y",      opt[i][0], opt[i][1], NULL };
        const char *sv[] = { "serve", opt[i][2], opt[i][1], "--print-config",
                             NULL };
        char said[256];
        struct out o = run(f, "hi\n", a), so = run(f, NULL, sv);
        assert_int_equal(o.status, 2);
        assert_int_equal(so.status, 2);
        assert_string_equal(o.out, "");
        snprintf(said, sizeof said, "%s (from %s): ", opt[i][3], opt[i][0]);
        const char *why = strstr(o.err, said), *nl;
        if (why == NULL)
            fail_msg("%s %s: stderr '%s'", opt[i][0], opt[i][1], o.err);
        why += strlen(said);
        nl = strchr(why, '\n');
        snprintf(said, sizeof said, "%.*s",
                 (int)(nl ? nl - why : (long)strlen(why)), why);
        if (strstr(so.err, said) == NULL) /* serve's reason, word for word */
            fail_msg("serve said '%s', send said '%s'", so.err, said);
        json_decref(o.json);
        json_decref(so.json);
    }
    assert_int_equal(peer_conn_count(f->p), 0);
}

static void test_cli_failures_exit_1_with_json(void **state)
{
    struct fx *f = *state;
    fake(f, NULL);
    /* Refused locally: bad sender, header injection. */
    const char *a1[] = { "send", "--server", f->host, "--from",
                         "a@x>", "--to",     "b@y",   NULL };
    const char *a2[] = { "send",   "--server", f->host,
                         "--from", "a@x",      "--to",
                         "b@y",    "--header", "Subject: x\r\nBcc: evil@z",
                         NULL };
    const char *const *cases[] = { a1, a2 };
    for (int i = 0; i < 2; i++) {
        struct out o = run(f, "hi\n", cases[i]);
        json_t *j = json_result(&o, 1);
        assert_string_equal(jstr(j, "kind"), "local");
        assert_string_equal(jstr(j, "status"), "failed");
        assert_true(jint(j, "code") >= 500); /* refused for good */
        assert_true(json_is_true(json_object_get(j, "local_code")));
        assert_non_null(json_object_get(j, "error"));
        json_decref(j);
    }
    assert_true(peer_conn_count(f->p) == 0 ||
                !strstr(wire(f, f->p, 1), "MAIL"));
    /* Nobody listening. */
    int port = peer_port(f->p);
    peer_stop(f->p);
    f->p = NULL;
    char host[32];
    snprintf(host, sizeof host, "127.0.0.1:%d", port);
    const char *a3[] = { "send", "--server", host,  "--from",
                         "a@x",  "--to",     "b@y", NULL };
    struct out o = run(f, "hi\n", a3);
    json_t *j = json_result(&o, 1);
    assert_string_equal(jstr(j, "kind"), "connection");
    assert_int_equal(jint(j, "code"), 421); /* synthesized: 4.4.1 */
    assert_string_equal(jstr(j, "enhanced"), "4.4.1");
    assert_true(json_is_true(json_object_get(j, "local_code")));
    assert_int_equal(json_array_size(json_object_get(j, "text")), 0);
    assert_string_equal(jstr(j, "status"), "failed");
    json_decref(j);
}

static void test_cli_starttls_and_auth_in_one_command(void **state)
{
    struct fx *f = *state;
    static const char *const args[] = { "--tls",       "--auth-user", "u",
                                        "--auth-pass", "s3cret",      NULL };
    f->p = peer_start_aiosmtpd(args);
    assert_non_null(f->p);
    f->host = peer_hostport(f->p);
    const char *ca = keep(f, peer_path(f->p, "cert.pem"));
    const char *pass = file_in(f, "pass.txt", "s3cret\n");
    const char *a[] = {
        "send",      "--server", f->host,       "--tls", "required",
        "--ca-file", ca,         "--auth-user", "u",     "--auth-pass-file",
        pass,        "--from",   "a@x",         "--to",  "b@y",
        NULL
    };
    struct out o = run(f, "over TLS\n", a);
    json_t *j = json_result(&o, 0);
    assert_string_equal(jstr(j, "status"), "sent");
    json_decref(j);
    assert_null(strstr(o.out, "s3cret"));
    assert_null(strstr(o.err, "s3cret"));
    assert_int_equal(msgs(f, f->p, 1), 1);
    assert_int_equal(f->m[0].tls, 1);
    assert_int_equal(f->m[0].auth, 1);
    assert_string_equal(body_of(&f->m[0]), "over TLS\r\n");
    /* The wrong CA: a TLS error, exit 1, nothing delivered. */
    const char *b[] = { "send",   "--server", f->host, "--tls", "required",
                        "--from", "a@x",      "--to",  "b@y",   NULL };
    o = run(f, "x\n", b);
    j = json_result(&o, 1);
    assert_string_equal(jstr(j, "kind"), "tls");
    json_decref(j);
    assert_int_equal(msgs(f, f->p, 1), 1);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* see run(): a child may not read */
    const struct CMUnitTest tests[] = {
        T(test_cli_send_prints_sent_json_and_exits_0),
        T(test_cli_send_reads_body_from_stdin),
        T(test_cli_partial_rejection_exits_1_with_700_and_losers),
        T(test_cli_verify_expand_help_print_reply_lines),
        T(test_cli_usage_errors_exit_2_without_connecting),
        T(test_cli_relay_options_refused_by_the_relay_keys_rules),
        T(test_cli_failures_exit_1_with_json),
        T(test_cli_starttls_and_auth_in_one_command),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
