/*
 * test_frontdoor_limits.c - the limits at the front door of `mailpool
 * serve`, each tried as an attacker or a careless operator would:
 *   - a deadline for synchronous sends: what no worker took by
 *     http.send_deadline is a 503 with Retry-After and never sent (a
 *     batch's Idempotency-Key stays free);
 *   - JSON memory: 10 MiB bodies of the costliest shapes are refused
 *     under a measured RSS bound;
 *   - secrets: never from command-line flags, never from files others can
 *     read, for `serve` and `send` alike.
 * The fixture is tests/support/frontdoor_fx.h.
 *
 * Each test starts its own fake relay (tests/fakes/fake_smtp.py) and
 * service on free ports of 127.0.0.1, and asserts on what crossed the
 * wire: the HTTP answers, the messages the relay received, the output.
 *
 * Errors: cmocka assertions.  Threads: client threads only record what
 * they saw; every assertion is made on the main thread.
 */
#include "tests/support/frontdoor_fx.h"

/* ---- 7. A deadline for synchronous sends ---- */

/* The relay answers MAIL after 8 s; one worker, one connection: the
   first message is on the wire past the 2 s deadline and keeps its
   outcome; the two behind it are not taken by then: 503 with
   Retry-After at their deadline (well before the worker frees up), and
   the relay never sees them. */
static void test_send_not_started_by_deadline_is_503_and_never_sent(void **state)
{
    struct fx *fx = *state;
    enum { N = 3 };
    struct sender s[N];
    static const char slow[] =
        "{\"rules\":[{\"match\":\"^MAIL FROM\",\"action\":\"delay:8\"}]}";
    const char *extra[] = { "--pool-workers",
                            "1",
                            "--pool-connections",
                            "1",
                            "--http-send-deadline",
                            "2",
                            NULL };
    memset(s, 0, sizeof s);
    fx->peer = peer_start_fake(slow);
    assert_non_null(fx->peer);
    fx->svc = mpserve_start(peer_port(fx->peer), extra);
    assert_non_null(fx->svc);
    for (int i = 0; i < N; i++) {
        s[i].fx = fx;
        snprintf(s[i].subject, sizeof s[i].subject, "deadline-%d", i);
        assert_int_equal(pthread_create(&s[i].tid, NULL, sender_run, &s[i]), 0);
        sleep_ms(200); /* in this order into the queue */
    }
    for (int i = 0; i < N; i++)
        pthread_join(s[i].tid, NULL);
    if (s[0].status != 200 || !s[0].sent)
        fail_msg("the first (on the wire): HTTP %ld %s", s[0].status, s[0].err);
    for (int i = 1; i < N; i++) {
        if (s[i].status != 503)
            fail_msg("%s: HTTP %ld, not 503", s[i].subject, s[i].status);
        assert_string_equal(s[i].retry_after, "1");
        assert_non_null(strstr(s[i].err, "send_deadline"));
        if (s[i].ms >= 6000) /* the deadline is 2 s, the relay 8 s */
            fail_msg("%s: answered after %lld ms", s[i].subject, s[i].ms);
    }
    sleep_ms(1500); /* nothing goes out late either */
    assert_int_equal(peer_wait_messages(fx->peer, 1, 5000), 1);
    assert_int_equal(relay_has(fx->peer, "deadline-0"), 1);
    assert_int_equal(relay_has(fx->peer, "deadline-1"), 0);
    assert_int_equal(relay_has(fx->peer, "deadline-2"), 0);
    assert_int_equal(mpserve_stop_clean(fx->svc, STOP_MS), 0);
    struct peer_msg *m;
    size_t n;
    assert_int_equal(peer_messages(fx->peer, &m, &n), 0);
    assert_int_equal(n, 1);
    peer_msgs_free(m, n);
}

/* A batch none of whose messages a worker took within http.send_deadline
   (one worker, busy 3 s on the message before it) is a 503 with
   Retry-After, not a 200 of "failed" results, and its Idempotency-Key is
   not kept: the same request again, with the worker free, sends both. */
static void test_batch_not_started_by_deadline_is_503_and_its_key_free(
    void **state)
{
    struct fx *fx = *state;
    struct sender s[3];
    static const char slow[] =
        "{\"rules\":[{\"match\":\"^MAIL FROM\",\"times\":1,"
        "\"action\":\"delay:3\"}]}";
    const char *extra[] = { "--pool-workers",
                            "1",
                            "--pool-connections",
                            "1",
                            "--http-send-deadline",
                            "2",
                            NULL };
    memset(s, 0, sizeof s);
    fx->peer = peer_start_fake(slow);
    assert_non_null(fx->peer);
    fx->svc = mpserve_start(peer_port(fx->peer), extra);
    assert_non_null(fx->svc);
    for (int i = 0; i < 3; i++) {
        s[i].fx = fx;
        snprintf(s[i].subject, sizeof s[i].subject, i ? "late" : "first");
        s[i].idem = i ? "Idempotency-Key: deadline-batch-1" : NULL;
    }
    assert_int_equal(pthread_create(&s[0].tid, NULL, sender_run, &s[0]), 0);
    sleep_ms(200); /* the first is on the wire */
    sender_run(&s[1]);
    pthread_join(s[0].tid, NULL);
    if (s[1].status != 503)
        fail_msg("the late batch: HTTP %ld, not 503 (%s)", s[1].status,
                 s[1].err);
    assert_string_equal(s[1].retry_after, "1");
    assert_non_null(strstr(s[1].err, "send_deadline"));
    assert_int_equal(relay_has(fx->peer, "late-a"), 0);
    sender_run(&s[2]); /* the same key again: sent this time */
    assert_int_equal(s[2].status, 200);
    assert_int_equal(peer_wait_messages(fx->peer, 3, 5000), 3);
    assert_int_equal(relay_has(fx->peer, "late-a"), 1);
    assert_int_equal(relay_has(fx->peer, "late-b"), 1);
    assert_int_equal(mpserve_stop_clean(fx->svc, STOP_MS), 0);
}

/* POST path with body under Idempotency-Key key: the status, and whether
   the answer said it was a replay. */
static long post_keyed(const struct fx *fx, const char *path, const char *key,
                       const char *body, int *replayed)
{
    struct http_resp r;
    char url[128], idem[96];
    snprintf(url, sizeof url, "%s%s", mpserve_url(fx->svc), path);
    snprintf(idem, sizeof idem, "Idempotency-Key: %s", key);
    const char *hdrs[] = { "Content-Type: application/json", idem, NULL };
    assert_int_equal(http_request("POST", url, hdrs, body, 0, &r), 0);
    char *rp = http_resp_header(&r, "Idempotent-Replayed");
    *replayed = rp != NULL;
    free(rp);
    long status = r.status;
    http_resp_free(&r);
    return status;
}

/* A send that found the relay unreachable sent nothing, so it does not
   keep its Idempotency-Key (a kept 502 would be replayed for a day and
   the message never sent): with the relay back on its port, the same
   single message and the same batch under their keys are sent, not
   replayed. */
static void test_unreachable_relay_leaves_the_key_free(void **state)
{
    struct fx *fx = *state;
    static const char one[] =
        "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\"],"
        "\"subject\":\"down-one\",\"text\":\"hello\"}";
    static const char two[] =
        "{\"messages\":[{\"from\":\"sender@example.com\",\"to\":"
        "[\"rcpt@example.net\"],\"subject\":\"down-a\",\"text\":\"a\"},"
        "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\"],"
        "\"subject\":\"down-b\",\"text\":\"b\"}]}";
    const char *extra[] = { "--pool-retries", "0", NULL };
    int port = mpserve_free_port(), replayed;
    fx->svc = mpserve_start(port, extra);
    assert_non_null(fx->svc);
    assert_int_equal(post_keyed(fx, "/v1/messages", "down-1", one, &replayed),
                     502);
    assert_int_equal(
        post_keyed(fx, "/v1/messages/batch", "down-2", two, &replayed),
        200); /* each result "failed" */
    fx->peer = peer_start_sink_on(port, NULL);
    assert_non_null(fx->peer);
    assert_int_equal(post_keyed(fx, "/v1/messages", "down-1", one, &replayed),
                     200);
    assert_false(replayed);
    assert_int_equal(
        post_keyed(fx, "/v1/messages/batch", "down-2", two, &replayed), 200);
    assert_false(replayed);
    assert_int_equal(peer_wait_messages(fx->peer, 3, 5000), 3);
    assert_int_equal(relay_has(fx->peer, "down-one"), 1);
    assert_int_equal(relay_has(fx->peer, "down-a"), 1);
    assert_int_equal(relay_has(fx->peer, "down-b"), 1);
    /* now sent: the key is kept, and a repeat is a replay, not a send */
    assert_int_equal(post_keyed(fx, "/v1/messages", "down-1", one, &replayed),
                     200);
    assert_true(replayed);
    assert_int_equal(mpserve_stop_clean(fx->svc, STOP_MS), 0);
    assert_int_equal(relay_has(fx->peer, "down-one"), 1);
}

/* ---- 5. JSON memory ---- */

/* VmRSS of the service in KiB (/proc/PID/status); -1 on error. */
static long service_rss_kib(pid_t pid)
{
    char path[64], line[256];
    long kib = -1;
    snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = strtol(line + 6, NULL, 10);
    fclose(f);
    return kib;
}

/* A sampler of the service's VmRSS every 10 ms, keeping the peak. */
struct rss_watch {
    pid_t pid;
    atomic_int stop;
    long peak_kib;
    pthread_t tid;
};

/* Thread body of the sampler. */
static void *rss_run(void *arg)
{
    struct rss_watch *w = arg;
    while (!w->stop) {
        long k = service_rss_kib(w->pid);
        if (k > w->peak_kib)
            w->peak_kib = k;
        sleep_ms(10);
    }
    return NULL;
}

#define BURST_BODY (10u * 1024 * 1024 - 4096)

/* A message whose member repeats item (with commas) up to ~10 MiB. */
static char *burst_body(const char *member, const char *item, size_t *len)
{
    static const char head[] =
        "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\"],";
    size_t il = strlen(item), n = 0;
    char *b = malloc(BURST_BODY + 256);
    assert_non_null(b);
    n += (size_t)snprintf(b, 256, "%s\"%s\":[%s", head, member, item);
    while (n + il + 3 < BURST_BODY) {
        b[n++] = ',';
        memcpy(b + n, item, il);
        n += il;
    }
    memcpy(b + n, "]}", 3);
    *len = n + 2;
    return b;
}

/* One 10 MiB POST on a thread: what came back. */
struct burst {
    const struct fx *fx;
    const char *body;
    size_t len;
    long status;
    char detail[160];
    pthread_t tid;
};

/* Thread body: posts b->body, keeps the status and the detail's start. */
static void *burst_run(void *arg)
{
    struct burst *b = arg;
    struct http_resp r;
    char url[128];
    const char *hdrs[] = { "Content-Type: application/json", NULL };
    snprintf(url, sizeof url, "%s/v1/messages", mpserve_url(b->fx->svc));
    if (http_request_len("POST", url, hdrs, b->body, b->len, 0, &r) < 0) {
        snprintf(b->detail, sizeof b->detail, "%.150s", r.err);
        return NULL;
    }
    b->status = r.status;
    const char *d = r.body != NULL ? strstr(r.body, "\"detail\"") : NULL;
    snprintf(b->detail, sizeof b->detail, "%.150s", d != NULL ? d : "");
    http_resp_free(&r);
    return NULL;
}

/* Eight 10 MiB requests at once, four of empty body lines and four of
   header pairs (the shapes that cost the most decoded): each is answered
   413 before a JSON tree is built, the service's RSS stays within 160 MiB
   of where it started, is back within 32 MiB a second later, and a
   normal send still goes through. */
static void test_json_bursts_are_refused_under_a_measured_rss_bound(void **state)
{
    struct fx *fx = *state;
    enum { N = 8 };
    struct burst b[N];
    struct rss_watch w;
    size_t llen, hlen;
    char *lines = burst_body("body", "\"\"", &llen);
    char *pairs = burst_body("headers", "[\"X-A\",\"b\"]", &hlen);
    memset(b, 0, sizeof b);
    fx->peer = peer_start_fake(PLAIN_RELAY);
    assert_non_null(fx->peer);
    fx->svc = mpserve_start(peer_port(fx->peer), NULL);
    assert_non_null(fx->svc);
    sleep_ms(300);
    long base = service_rss_kib(mpserve_pid(fx->svc));
    assert_true(base > 0);
    memset(&w, 0, sizeof w);
    w.pid = mpserve_pid(fx->svc);
    assert_int_equal(pthread_create(&w.tid, NULL, rss_run, &w), 0);
    for (int i = 0; i < N; i++) {
        b[i].fx = fx;
        b[i].body = i % 2 == 0 ? lines : pairs;
        b[i].len = i % 2 == 0 ? llen : hlen;
        assert_int_equal(pthread_create(&b[i].tid, NULL, burst_run, &b[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(b[i].tid, NULL);
    sleep_ms(1000);
    w.stop = 1;
    pthread_join(w.tid, NULL);
    long after = service_rss_kib(mpserve_pid(fx->svc));
    free(lines);
    free(pairs);
    print_message("  RSS: %ld KiB at start, peak %ld KiB, %ld KiB after\n",
                  base, w.peak_kib, after);
    for (int i = 0; i < N; i++) {
        if (b[i].status != 413 || strstr(b[i].detail, "JSON values") == NULL)
            fail_msg("burst %d: HTTP %ld %s", i, b[i].status, b[i].detail);
    }
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    /* (the sanitizers' shadow memory and quarantine make RSS no measure
       of what the service holds: there only the 413s are checked) */
    assert_true(w.peak_kib - base <= 160 * 1024);
    assert_true(after - base <= 32 * 1024);
#endif
    send_one_ok(fx, "after-burst", 0);
    assert_int_equal(mpserve_stop_clean(fx->svc, STOP_MS), 0);
}

/* ---- 6. Secrets ---- */

/* Writes text to a new file of this mode under /tmp; the path is static
   storage, valid until the next call. */
static const char *secret_file(const char *text, mode_t mode)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/frontdoor-secret-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_int_equal(chmod(path, mode), 0);
    return path;
}

/* `mailpool serve` refuses a secret flag, naming the variable and the
   file key that replace it, never echoing the value. */
static void expect_secret_flags_refused(const char *listen, const char *port)
{
    char *out = NULL;
    const char *flag_pass[] = { "serve",       "--http-listen",
                                listen,        "--relay-port",
                                port,          "--relay-auth-user",
                                "u",           "--relay-auth-pass",
                                "hunter2-9c1", NULL };
    assert_int_equal(mpserve_run(flag_pass, 10000, &out), 2);
    assert_non_null(strstr(out, "flag --relay-auth-pass would put a secret "
                                "on the command line (visible in ps): set "
                                "MAILPOOL_RELAY_AUTH_PASS or "
                                "relay.auth_pass_file instead"));
    assert_null(strstr(out, "hunter2-9c1"));
    free(out);
    const char *flag_keys[] = { "serve", "--http-listen",
                                listen,  "--relay-port",
                                port,    "--http-api-keys=key-5e2a",
                                NULL };
    assert_int_equal(mpserve_run(flag_keys, 10000, &out), 2);
    assert_non_null(strstr(out, "MAILPOOL_HTTP_API_KEYS or "
                                "http.api_keys_file instead"));
    assert_null(strstr(out, "key-5e2a"));
    free(out);
}

/* `mailpool serve` refuses the relay's password file pass (mode 0644),
   naming it. */
static void expect_open_pass_file_refused(const char *listen, const char *port,
                                          const char *pass)
{
    char arg[128], want[160], *out = NULL;
    snprintf(arg, sizeof arg, "--relay-auth-pass-file=%s", pass);
    const char *file_pass[] = { "serve", "--http-listen",
                                listen,  "--relay-port",
                                port,    "--relay-auth-user",
                                "u",     arg,
                                NULL };
    assert_int_equal(mpserve_run(file_pass, 10000, &out), 2);
    snprintf(want, sizeof want,
             "relay.auth_pass_file (from "
             "--relay-auth-pass-file): '%s' is open to others (mode 0644)",
             pass);
    assert_non_null(strstr(out, want));
    free(out);
}

/* The same for the API keys file and the queue's password file. */
static void expect_open_key_files_refused(const char *listen, const char *port)
{
    char arg[128], *out = NULL;
    const char *keys = secret_file("key-5e2a\n", 0604);
    snprintf(arg, sizeof arg, "--http-api-keys-file=%s", keys);
    const char *file_keys[] = {
        "serve", "--http-listen", listen, "--relay-port", port, arg, NULL
    };
    assert_int_equal(mpserve_run(file_keys, 10000, &out), 2);
    assert_non_null(strstr(out, keys));
    assert_non_null(strstr(out, "(mode 0604)"));
    free(out);
    unlink(keys);
    /* The queue's password file: the same check. */
    const char *qpass = secret_file("pw\n", 0640);
    snprintf(arg, sizeof arg, "--queue-password-file=%s", qpass);
    assert_int_equal(chown(qpass, 1, 1), 0); /* not root's: no group read */
    const char *file_q[] = {
        "serve", "--http-listen", listen, "--relay-port", port, arg, NULL
    };
    assert_int_equal(mpserve_run(file_q, 10000, &out), 2);
    assert_non_null(strstr(out, "queue.password_file (from "
                                "--queue-password-file): '"));
    assert_non_null(strstr(out, "(mode 0640)"));
    free(out);
    unlink(qpass);
}

/* The same for a DKIM key file. */
static void expect_open_dkim_key_refused(const char *listen, const char *port)
{
    char want[160], *out = NULL;
    const char *dkey = secret_file("-----BEGIN PRIVATE KEY-----\n", 0644);
    char dkarg[96];
    snprintf(dkarg, sizeof dkarg, "%s", dkey);
    const char *file_dkim[] = {
        "serve", "--http-listen",   listen,        "--relay-port",
        port,    "--dkim-domain",   "example.com", "--dkim-selector",
        "s1",    "--dkim-key-file", dkarg,         NULL
    };
    assert_int_equal(mpserve_run(file_dkim, 10000, &out), 2);
    snprintf(want, sizeof want,
             "dkim key_file of example.com: '%s' is open "
             "to others (mode 0644)",
             dkarg);
    assert_non_null(strstr(out, want));
    free(out);
    unlink(dkarg);
}

/* `mailpool send` refuses --auth-pass-file pass while others can read it
   (the relay never contacted), and sends once it is 0600. */
static void expect_cli_pass_file_checked(const struct fx *fx, const char *pass)
{
    char want[160], *out = NULL;
    char server[32];
    snprintf(server, sizeof server, "127.0.0.1:%d", peer_port(fx->peer));
    const char *send[] = { "send",
                           "--server",
                           server,
                           "--auth-pass-file",
                           pass,
                           "--from",
                           "a@example.com",
                           "--to",
                           "b@example.net",
                           "--header",
                           "Subject: cli-secret",
                           NULL };
    assert_true(mpserve_run(send, 10000, &out) != 0);
    snprintf(want, sizeof want,
             "--auth-pass-file: '%s' is open to others "
             "(mode 0644)",
             pass);
    assert_non_null(strstr(out, want));
    free(out);
    assert_int_equal(peer_conn_count(fx->peer), 0); /* nothing sent */
    assert_int_equal(chmod(pass, 0600), 0);
    assert_int_equal(mpserve_run(send, 10000, &out), 0);
    free(out);
    unlink(pass);
    assert_int_equal(peer_wait_messages(fx->peer, 1, 5000), 1);
    assert_int_equal(relay_has(fx->peer, "cli-secret"), 1);
}

/* `mailpool serve` and `mailpool send` refuse a secret flag (naming the
   variable and the file key that replace it, never echoing the value) and
   a secret file others can read (naming the file); the relay is never
   contacted.  The same file made 0600 is read: the send goes out (the
   relay offers no AUTH, so none is tried without --auth-user). */
static void test_secrets_never_from_flags_or_files_others_can_read(void **state)
{
    struct fx *fx = *state;
    char port[16], listen[32], pass[64];
    fx->peer = peer_start_fake(PLAIN_RELAY);
    assert_non_null(fx->peer);
    snprintf(port, sizeof port, "%d", peer_port(fx->peer));
    snprintf(listen, sizeof listen, "127.0.0.1:%d", mpserve_free_port());
    expect_secret_flags_refused(listen, port);
    snprintf(pass, sizeof pass, "%s", secret_file("hunter2-9c1\n", 0644));
    expect_open_pass_file_refused(listen, port, pass);
    expect_open_key_files_refused(listen, port);
    expect_open_dkim_key_refused(listen, port);
    /* The CLI: --auth-pass-file open to others; then 0600 works. */
    expect_cli_pass_file_checked(fx, pass);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_send_not_started_by_deadline_is_503_and_never_sent, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_batch_not_started_by_deadline_is_503_and_its_key_free, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_unreachable_relay_leaves_the_key_free, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_json_bursts_are_refused_under_a_measured_rss_bound, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_secrets_never_from_flags_or_files_others_can_read, setup,
            teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
