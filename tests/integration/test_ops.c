/*
 * test_ops.c - the service as an operator or an orchestrator meets it, over
 * real HTTP against `build/mailpool serve` (tests/support/mpserve.h) in
 * front of the scriptable fake relay (tests/support/peer.h):
 *   - the variables Kubernetes injects for Services named mailpool and
 *     mailpool-* are ignored with one warning line (a near miss of a real
 *     key still stops the service with exit 2);
 *   - http.shutdown_delay: after SIGTERM /readyz is 503 "stopping" at once
 *     while messages are still taken and relayed, then the drain;
 *   - http.ready_requires_relay=false: ready without a relay;
 *   - /metrics has the standard process_* series with true values, 414 and
 *     431 counted with their codes, the HTTP histogram by route, and
 *     passes `promtool check metrics`;
 *   - log fields that are numbers or booleans are JSON numbers/booleans;
 *   - a caller's X-Request-Id (visible ASCII, at most 64) is kept in the
 *     response, the request log line and the message's log line;
 *   - http.listen ":PORT" (docs/API.md) serves, and healthcheck finds it;
 *   - a synchronous batch that does not fit the job queue is a 503 (413
 *     when larger than the whole queue) and none of it is sent; the
 *     refusal is counted (reason="queue_full") and logged;
 *   - without relay.helo_name, EHLO names this machine's fully qualified
 *     name, or the address literal when it has none; never "localhost".
 * HTTPS is in test_ops_tls.c; the fixture in tests/support/ops_fx.h.
 * Each test starts its own peer and service and stops both by their ids.
 */
#include "tests/support/ops_fx.h"

/* Runs promtool check metrics on text; its exit status, its output in
   out (room size). */
static int promtool_check(const char *text, char *out, size_t size)
{
    char path[] = "/tmp/mailpool-metrics-XXXXXX", cmd[128];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    snprintf(cmd, sizeof cmd, "promtool check metrics < %s 2>&1", path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t got = fread(out, 1, size - 1, p);
    out[got] = '\0';
    int st = pclose(p);
    unlink(path);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* ---- service links ---- */

static const char *const k8s_links[] = { "MAILPOOL_RELAY_SERVICE_HOST",
                                         "10.96.0.10",
                                         "MAILPOOL_RELAY_SERVICE_PORT",
                                         "25",
                                         "MAILPOOL_RELAY_PORT_25_TCP",
                                         "tcp://10.96.0.10:25",
                                         "MAILPOOL_RELAY_PORT_25_TCP_ADDR",
                                         "10.96.0.10",
                                         "MAILPOOL_SERVICE_HOST",
                                         "10.96.0.11",
                                         "MAILPOOL_PORT",
                                         "tcp://10.96.0.11:8025",
                                         "MAILPOOL_PORT_8025_TCP_PROTO",
                                         "tcp",
                                         NULL };

/* Sets (or, unset != 0, removes) the variables of k8s_links. */
static void set_links(int unset)
{
    for (size_t i = 0; k8s_links[i] != NULL; i += 2) {
        if (unset)
            unsetenv(k8s_links[i]);
        else
            assert_int_equal(setenv(k8s_links[i], k8s_links[i + 1], 1), 0);
    }
}

static void test_service_link_variables_are_ignored_with_one_warning(
    void **state)
{
    struct fx *fx = *state;
    fx->peer = peer_start_fake(NULL);
    assert_non_null(fx->peer);
    set_links(0);
    fx->svc = mpserve_start(peer_port(fx->peer), NULL);
    set_links(1);
    assert_non_null(fx->svc); /* before: exit 2 at start */

    send_ok(fx, "despite service links");
    assert_int_equal(peer_wait_messages(fx->peer, 1, 5000), 1);
    assert_true(peer_has_subject(fx->peer, "despite service links"));

    json_t *w = log_events(fx, "config");
    assert_int_equal(json_array_size(w), 1);
    json_t *o = json_array_get(w, 0);
    assert_string_equal(json_string_value(json_object_get(o, "level")), "warn");
    assert_int_equal(json_integer_value(json_object_get(o, "count")), 7);
    const char *names = json_string_value(json_object_get(o, "names"));
    assert_non_null(names);
    assert_non_null(strstr(names, "MAILPOOL_RELAY_SERVICE_HOST"));
    assert_non_null(strstr(names, "MAILPOOL_PORT_8025_TCP_PROTO"));
    assert_null(strstr(names, "10.96")); /* names, not values */
    json_decref(w);
}

static void test_near_miss_of_a_real_key_still_exits_2(void **state)
{
    (void)state;
    char *out = NULL;
    const char *argv[] = { "serve", "--http-listen", "127.0.0.1:0", NULL };
    assert_int_equal(setenv("MAILPOOL_RELAY_SERVICE_HOST", "10.96.0.10", 1), 0);
    assert_int_equal(setenv("MAILPOOL_RELAY_HSOT", "relay.example", 1), 0);
    int rc = mpserve_run(argv, 10000, &out);
    unsetenv("MAILPOOL_RELAY_HSOT");
    unsetenv("MAILPOOL_RELAY_SERVICE_HOST");
    assert_int_equal(rc, 2);
    assert_non_null(out);
    assert_non_null(
        strstr(out, "unknown environment variable MAILPOOL_RELAY_HSOT"));
    free(out);
}

/* ---- shutdown and readiness ---- */

static void test_shutdown_delay_turns_readyz_503_while_work_is_taken(
    void **state)
{
    struct fx *fx = *state;
    struct http_resp r;
    fx->peer = peer_start_fake(NULL);
    assert_non_null(fx->peer);
    fx->svc = mpserve_start(
        peer_port(fx->peer),
        (const char *const[]){ "--http-shutdown-delay", "2", NULL });
    assert_non_null(fx->svc);
    req(fx, "/readyz", NULL, NULL, &r);
    expect_json_str(&r, 200, "status", "ready");
    http_resp_free(&r);

    double t0 = now_s();
    assert_int_equal(mpserve_signal(fx->svc, SIGTERM), 0);
    sleep_ms(200);
    req(fx, "/readyz", NULL, NULL, &r);
    expect_json_str(&r, 503, "status", "stopping");
    http_resp_free(&r);
    /* Work is still taken and relayed during the delay. */
    send_ok(fx, "during the shutdown delay");
    assert_true(now_s() - t0 < 2.0);
    assert_int_equal(peer_wait_messages(fx->peer, 1, 5000), 1);
    assert_true(peer_has_subject(fx->peer, "during the shutdown delay"));

    int rc = mpserve_wait(fx->svc, 10000);
    double took = now_s() - t0;
    assert_int_equal(rc, 0);
    assert_true(took >= 1.9);
    json_t *s = log_events(fx, "stopping"), *d = log_events(fx, "draining");
    assert_int_equal(json_array_size(s), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(s, 0),
                                                        "shutdown_delay")),
                     2);
    assert_int_equal(json_array_size(d), 1);
    json_decref(s);
    json_decref(d);
}

static void test_second_signal_ends_the_shutdown_delay(void **state)
{
    struct fx *fx = *state;
    fx->peer = peer_start_fake(NULL);
    assert_non_null(fx->peer);
    fx->svc = mpserve_start(
        peer_port(fx->peer),
        (const char *const[]){ "--http-shutdown-delay", "60", NULL });
    assert_non_null(fx->svc);
    double t0 = now_s();
    assert_int_equal(mpserve_signal(fx->svc, SIGTERM), 0);
    sleep_ms(300);
    assert_int_equal(mpserve_signal(fx->svc, SIGTERM), 0);
    assert_int_equal(mpserve_wait(fx->svc, 10000), 0);
    assert_true(now_s() - t0 < 10.0);
}

static void test_readyz_without_relay_follows_ready_requires_relay(void **state)
{
    struct fx *fx = *state;
    struct http_resp r;
    int dead = mpserve_free_port(); /* nothing listens there */
    assert_true(dead > 0);

    fx->svc = mpserve_start(dead, NULL);
    assert_non_null(fx->svc);
    req(fx, "/readyz", NULL, NULL, &r);
    expect_json_str(&r, 503, "status", "relay unreachable");
    http_resp_free(&r);
    assert_int_equal(mpserve_stop_clean(fx->svc, STOP_MS), 0);
    mpserve_free(fx->svc);

    fx->svc = mpserve_start(
        dead,
        (const char *const[]){ "--http-ready-requires-relay", "false", NULL });
    assert_non_null(fx->svc);
    req(fx, "/readyz", NULL, NULL, &r);
    expect_json_str(&r, 200, "status", "ready");
    http_resp_free(&r);
}

/* ---- the listen address as docs/API.md writes it ---- */

static void test_listen_colon_port_serves_and_healthcheck_finds_it(void **state)
{
    (void)state;
    char listen[32], url[64];
    int port = mpserve_free_port();
    assert_true(port > 0);
    snprintf(listen, sizeof listen, ":%d", port);
    pid_t pid = ops_spawn_serve(
        (const char *const[]){ "--http-listen", listen, NULL });
    snprintf(url, sizeof url, "http://127.0.0.1:%d/healthz", port);
    struct http_resp r = { 0 };
    int up = 0;
    for (int i = 0; i < 100 && !up; i++) {
        up = http_request("GET", url, NULL, NULL, 0, &r) == 0 &&
             r.status == 200;
        http_resp_free(&r);
        memset(&r, 0, sizeof r);
        if (!up)
            sleep_ms(100);
    }
    char *out = NULL;
    const char *hc[] = { "healthcheck", "--http-listen", listen, NULL };
    int hc_rc = mpserve_run(hc, 10000, &out);
    free(out);
    int st = ops_stop(pid);
    assert_true(up); /* before: exit 2, bad http.listen */
    assert_int_equal(hc_rc, 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

/* ---- metrics ---- */

/* A target longer than 8 KiB (414) and a head larger than 16 KiB
   (431): answered, and counted with their own codes; a head larger than
   libmicrohttpd's 32 KiB buffer, which it refuses itself, is counted
   apart. */
static void send_long_target_and_heads(const struct fx *fx)
{
    struct http_resp r;
    char *url = malloc(10000), *big = malloc(40000);
    assert_non_null(url);
    assert_non_null(big);
    int n = snprintf(url, 10000, "%s/", mpserve_url(fx->svc));
    memset(url + n, 'a', 9000);
    url[n + 9000] = '\0';
    if (http_request("GET", url, NULL, NULL, 0, &r) < 0)
        fail_msg("GET a long target: %s", r.err);
    assert_int_equal(r.status, 414);
    http_resp_free(&r);
    memcpy(big, "X-Big: ", 7);
    memset(big + 7, 'b', 39990);
    big[39997] = '\0';
    req(fx, "/healthz", NULL, (const char *const[]){ big, NULL }, &r);
    assert_int_equal(r.status, 431); /* past MHD's 32 KiB: its own */
    http_resp_free(&r);
    big[20000] = '\0'; /* past our 16 KiB: ours */
    req(fx, "/healthz", NULL, (const char *const[]){ big, NULL }, &r);
    assert_int_equal(r.status, 431);
    http_resp_free(&r);
    free(url);
    free(big);
}

static void test_process_metrics_are_true_and_promtool_accepts_metrics(
    void **state)
{
    struct fx *fx = *state;
    struct http_resp r;
    fx->peer = peer_start_fake(NULL);
    assert_non_null(fx->peer);
    fx->svc = mpserve_start(peer_port(fx->peer), NULL);
    assert_non_null(fx->svc);
    send_ok(fx, "for the histograms");
    send_long_target_and_heads(fx);
    sleep_ms(100); /* request counters land at completion */
    req(fx, "/metrics", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_true(sample(r.body, "mailpool_http_requests_total"
                               "{route=\"unmatched\",status=\"414\"}") == 1);
    assert_true(sample(r.body, "mailpool_http_requests_total"
                               "{route=\"/healthz\",status=\"431\"}") == 1);
    assert_true(sample(r.body, "mailpool_http_heads_refused_total") == 1);
    assert_true(sample(r.body, "mailpool_http_request_duration_seconds_"
                               "count{route=\"/v1/messages\"}") == 1);

    double now = (double)time(NULL);
    double start = sample(r.body, "process_start_time_seconds");
    assert_true(start > now - 120 && start <= now + 1);
    assert_true(sample(r.body, "process_resident_memory_bytes") > 1e6);
    assert_true(sample(r.body, "process_virtual_memory_bytes") >
                sample(r.body, "process_resident_memory_bytes"));
    double fds = sample(r.body, "process_open_fds");
    assert_true(fds >= 4 && fds < 1000); /* std streams, listener, ... */
    assert_true(sample(r.body, "process_max_fds") >= fds);
    assert_true(sample(r.body, "process_cpu_seconds_total") >= 0);
    assert_non_null(
        strstr(r.body, "# TYPE process_cpu_seconds_total counter\n"));

    char out[4096];
    int rc = promtool_check(r.body, out, sizeof out);
    if (rc != 0)
        fail_msg("promtool check metrics: exit %d: %s", rc, out);
    http_resp_free(&r);
}

/* ---- logs ---- */

static void test_log_numbers_and_booleans_are_json_types(void **state)
{
    struct fx *fx = *state;
    struct http_resp r;
    int dead = mpserve_free_port();
    fx->svc = mpserve_start(
        dead, (const char *const[]){ "--pool-retries", "0", NULL });
    assert_non_null(fx->svc);
    char *m = ops_message_json("to nowhere");
    req(fx, "/v1/messages", m, NULL, &r);
    free(m);
    http_resp_free(&r);
    assert_int_equal(mpserve_stop_clean(fx->svc, STOP_MS), 0);

    json_t *l = log_events(fx, "listening");
    assert_int_equal(json_array_size(l), 1);
    json_t *port = json_object_get(json_array_get(l, 0), "port");
    assert_true(json_is_integer(port));
    assert_int_equal(json_integer_value(port), mpserve_port(fx->svc));
    json_decref(l);

    json_t *d = log_events(fx, "pool_drained");
    assert_int_equal(json_array_size(d), 1);
    assert_true(
        json_is_false(json_object_get(json_array_get(d, 0), "timed_out")));
    assert_true(json_is_integer(
        json_object_get(json_array_get(d, 0), "failed_queued")));
    json_decref(d);

    json_t *s = log_events(fx, "smtp");
    assert_int_equal(json_array_size(s), 1);
    json_t *o = json_array_get(s, 0);
    assert_true(json_is_true(json_object_get(o, "unreachable")));
    assert_true(json_is_integer(json_object_get(o, "attempts")));
    json_decref(s);
}

/* Sends a message with X-Request-Id: sent; returns the id the service used
   (caller frees) after checking the response header, the request log line
   and the message's log line all carry it. */
static char *request_id_roundtrip(struct fx *fx, const char *sent,
                                  const char *subject)
{
    struct http_resp r;
    char hdr[256];
    snprintf(hdr, sizeof hdr, "X-Request-Id: %s", sent);
    char *m = ops_message_json(subject);
    req(fx, "/v1/messages", m, (const char *const[]){ hdr, NULL }, &r);
    free(m);
    assert_int_equal(r.status, 200);
    char *got = http_resp_header(&r, "X-Request-Id");
    assert_non_null(got);
    http_resp_free(&r);
    sleep_ms(100); /* the request line is written after the answer */
    json_t *reqs = log_events(fx, "request"), *smtp = log_events(fx, "smtp");
    int in_req = 0, in_smtp = 0;
    for (size_t i = 0; i < json_array_size(reqs); i++)
        in_req += strcmp(json_string_value(json_object_get(
                             json_array_get(reqs, i), "request_id")),
                         got) == 0;
    for (size_t i = 0; i < json_array_size(smtp); i++)
        in_smtp += strcmp(json_string_value(json_object_get(
                              json_array_get(smtp, i), "request_id")),
                          got) == 0;
    json_decref(reqs);
    json_decref(smtp);
    assert_int_equal(in_req, 1);
    assert_int_equal(in_smtp, 1);
    return got;
}

/* 1 when s is 32 lowercase hex digits (an id the service made). */
static int is_own_id(const char *s)
{
    size_t n = strspn(s, "0123456789abcdef");
    return n == 32 && s[n] == '\0';
}

static void test_caller_request_id_is_kept_when_visible_ascii_up_to_64(
    void **state)
{
    struct fx *fx = *state;
    fx->peer = peer_start_fake(NULL);
    assert_non_null(fx->peer);
    fx->svc = mpserve_start(peer_port(fx->peer), NULL);
    assert_non_null(fx->svc);

    const char *keep = "trace-00f/ABC_xyz.1:2~!";
    char *got = request_id_roundtrip(fx, keep, "kept id");
    assert_string_equal(got, keep);
    free(got);

    char longest[65];
    memset(longest, 'k', 64);
    longest[64] = '\0';
    got = request_id_roundtrip(fx, longest, "64 characters");
    assert_string_equal(got, longest);
    free(got);

    char too_long[66];
    memset(too_long, 'k', 65);
    too_long[65] = '\0';
    const char *replaced[] = { too_long, "has space", "caf\xc3\xa9" };
    for (size_t i = 0; i < sizeof replaced / sizeof replaced[0]; i++) {
        got = request_id_roundtrip(fx, replaced[i], "replaced id");
        if (!is_own_id(got))
            fail_msg("X-Request-Id \"%s\" came back as \"%s\"", replaced[i],
                     got);
        free(got);
    }
}

/* ---- a synchronous batch that does not fit the job queue ---- */

/* A batch of n one-recipient messages with subjects "<tag> i". */
static char *batch_json(const char *tag, size_t n)
{
    json_t *msgs = json_array();
    char subject[64];
    for (size_t i = 0; i < n; i++) {
        snprintf(subject, sizeof subject, "%s %zu", tag, i);
        char *m = ops_message_json(subject);
        json_array_append_new(msgs, json_loads(m, 0, NULL));
        free(m);
    }
    json_t *doc = json_pack("{s:o}", "messages", msgs);
    char *s = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    assert_non_null(s);
    return s;
}

struct post_call {
    const struct fx *fx;
    const char *json;
    struct http_resp r;
    pthread_t th;
};

static void *post_batch_main(void *arg)
{
    struct post_call *c = arg;
    char url[256];
    const char *hdrs[] = { "Content-Type: application/json", NULL };
    snprintf(url, sizeof url, "%s/v1/messages/batch", mpserve_url(c->fx->svc));
    if (http_request("POST", url, hdrs, c->json, 0, &c->r) < 0)
        c->r.status = -1;
    return NULL;
}

/* Messages the peer took whose Subject starts with "<tag> ". */
static size_t peer_count_tag(struct peer *p, const char *tag)
{
    struct peer_msg *msgs = NULL;
    size_t n = 0, hits = 0;
    char line[80];
    snprintf(line, sizeof line, "Subject: %s ", tag);
    assert_int_equal(peer_messages(p, &msgs, &n), 0);
    for (size_t i = 0; i < n; i++)
        hits += strstr((const char *)msgs[i].data, line) != NULL;
    peer_msgs_free(msgs, n);
    return hits;
}

static void test_sync_batch_that_does_not_fit_is_refused_whole(void **state)
{
    struct fx *fx = *state;
    struct http_resp r;
    /* One worker, a job queue of 4, a relay that takes 0.4 s per message:
       a first batch of 4 keeps the queue nearly full for over a second. */
    fx->peer = peer_start_fake("{\"rules\": [{\"match\": \"^DOT$\", "
                               "\"action\": \"delay:0.4\"}]}");
    assert_non_null(fx->peer);
    fx->svc = mpserve_start(peer_port(fx->peer),
                            (const char *const[]){ "--pool-workers", "1",
                                                   "--pool-connections", "1",
                                                   "--pool-queue", "4", NULL });
    assert_non_null(fx->svc);

    char *big = batch_json("toobig", 5); /* more than pool.queue */
    req(fx, "/v1/messages/batch", big, NULL, &r);
    free(big);
    if (r.status != 413 || strstr(r.body, "pool.queue") == NULL)
        fail_msg("a batch larger than the queue: HTTP %ld %.300s", r.status,
                 r.body);
    http_resp_free(&r);

    char *first_json = batch_json("first", 4);
    struct post_call first = { .fx = fx, .json = first_json };
    assert_int_equal(pthread_create(&first.th, NULL, post_batch_main, &first),
                     0);
    sleep_ms(300); /* the worker holds one, three wait */
    char *second = batch_json("second", 3);
    req(fx, "/v1/messages/batch", second, NULL, &r);
    free(second);
    if (r.status != 503)
        fail_msg("a batch that does not fit: HTTP %ld %.300s", r.status,
                 r.body);
    char *retry = http_resp_header(&r, "Retry-After");
    assert_non_null(retry);
    free(retry);
    http_resp_free(&r);
    pthread_join(first.th, NULL);
    free(first_json);
    assert_int_equal(first.r.status, 200);
    http_resp_free(&first.r);

    assert_int_equal(peer_count_tag(fx->peer, "first"), 4);
    assert_int_equal(peer_count_tag(fx->peer, "second"), 0);
    assert_int_equal(peer_count_tag(fx->peer, "toobig"), 0);
    req(fx, "/metrics", NULL, NULL, &r);
    assert_int_equal(r.status, 200);
    assert_true(sample(r.body, "mailpool_messages_refused_total"
                               "{reason=\"queue_full\"}") == 8);
    http_resp_free(&r);
    json_t *l = log_events(fx, "refused");
    assert_int_equal(json_array_size(l), 2);
    json_t *o = json_array_get(l, 1);
    assert_string_equal(json_string_value(json_object_get(o, "reason")),
                        "queue_full");
    assert_int_equal(json_integer_value(json_object_get(o, "messages")), 3);
    json_decref(l);
}

/* ---- EHLO name ---- */

/* The EHLO argument a run without relay.helo_name should send: this
   machine's dotted name (`hostname -f` when it gives one, as Postfix's
   myhostname), else the literal of the loopback address the test uses
   (RFC 5321 4.1.4); never "localhost". */
static void expected_ehlo(char *buf, size_t len)
{
    FILE *f = popen("hostname -f 2>/dev/null", "r");
    char line[256] = "";
    if (f != NULL) {
        if (fgets(line, sizeof line, f) == NULL)
            line[0] = '\0';
        pclose(f);
    }
    line[strcspn(line, "\r\n")] = '\0';
    if (strchr(line, '.') != NULL && strncmp(line, "localhost", 9) != 0)
        snprintf(buf, len, "EHLO %s\r\n", line);
    else
        snprintf(buf, len, "EHLO [127.0.0.1]\r\n");
}

static void test_default_ehlo_name_is_the_fqdn_or_address_literal(void **state)
{
    struct fx *fx = *state;
    char want[300];
    expected_ehlo(want, sizeof want);
    fx->peer = peer_start_fake(NULL);
    assert_non_null(fx->peer);
    fx->svc = mpserve_start(peer_port(fx->peer), NULL);
    assert_non_null(fx->svc);
    send_ok(fx, "ehlo name");
    size_t len = 0;
    char *wire = peer_conn_bytes(fx->peer, 1, &len);
    assert_non_null(wire);
    if (strncmp(wire, want, strlen(want)) != 0)
        fail_msg("the service greeted with \"%.60s\", expected \"%s\"", wire,
                 want);
    free(wire);

    char *hp = peer_hostport(fx->peer), cmd[PATH_MAX + 256], bin[PATH_MAX];
    assert_non_null(mpserve_binary(bin, sizeof bin));
    snprintf(cmd, sizeof cmd,
             "%s verify bob --server %s --tls none "
             ">/dev/null 2>&1",
             bin, hp);
    free(hp);
    assert_int_not_equal(system(cmd), -1);
    wire = peer_conn_bytes(fx->peer, 2, &len);
    assert_non_null(wire);
    if (strncmp(wire, want, strlen(want)) != 0)
        fail_msg("mailpool verify greeted with \"%.60s\", expected \"%s\"",
                 wire, want);
    free(wire);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_service_link_variables_are_ignored_with_one_warning),
        T(test_near_miss_of_a_real_key_still_exits_2),
        T(test_shutdown_delay_turns_readyz_503_while_work_is_taken),
        T(test_second_signal_ends_the_shutdown_delay),
        T(test_readyz_without_relay_follows_ready_requires_relay),
        T(test_listen_colon_port_serves_and_healthcheck_finds_it),
        T(test_process_metrics_are_true_and_promtool_accepts_metrics),
        T(test_default_ehlo_name_is_the_fqdn_or_address_literal),
        T(test_sync_batch_that_does_not_fit_is_refused_whole),
        T(test_log_numbers_and_booleans_are_json_types),
        T(test_caller_request_id_is_kept_when_visible_ascii_up_to_64),
#undef T
    };
    return ops_run(tests, sizeof tests / sizeof tests[0]);
}
