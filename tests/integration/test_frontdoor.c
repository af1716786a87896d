/*
 * test_frontdoor.c - attacks on the front door of `mailpool serve` that
 * take it out of service without an API key (issue 15), each tried as an
 * attacker would while a legitimate client keeps sending:
 *   - SIGHUP (log rotation, a lost terminal) while messages are being sent:
 *     the service logs it and goes on, nothing is lost;
 *   - a slow-body attack (connections declaring 10 MiB and dribbling):
 *     the in-flight budget is charged by bytes held, slow bodies are cut
 *     by the minimum receive rate, the legitimate POSTs succeed;
 *   - many idle connections: the per-address limit refuses the excess,
 *     /healthz and POSTs from other clients are served;
 *   - a relay without STARTTLS under relay.tls = opportunistic: the
 *     downgrade is logged once per connection.
 * test_frontdoor_limits.c has the send deadline, the JSON memory bound and
 * the secrets; the fixture is tests/support/frontdoor_fx.h.
 *
 * Each test starts its own fake relay (tests/fakes/fake_smtp.py) and
 * service on free ports of 127.0.0.1, and asserts on what crossed the
 * wire: the HTTP answers, the messages the relay received, the log lines.
 *
 * Errors: cmocka assertions.  Threads: client threads only record what
 * they saw; every assertion is made on the main thread.
 */
#include "tests/support/frontdoor_fx.h"

/* ---- Raw sockets ---- */

/* A TCP socket from src (an address of 127/8, NULL: any) to
   127.0.0.1:port, non-blocking once connected; -1 on error. */
static int raw_connect_from(const char *src, int port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port) };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (src != NULL) {
        struct sockaddr_in me = { .sin_family = AF_INET };
        inet_pton(AF_INET, src, &me.sin_addr);
        if (bind(fd, (struct sockaddr *)&me, sizeof me) < 0) {
            close(fd);
            return -1;
        }
    }
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* 1 when the server closed fd (EOF or reset), 0 when it is open and
   silent, 2 when it sent bytes; waits up to ms for something to come. */
static int raw_state(int fd, int ms)
{
    struct pollfd p = { fd, POLLIN, 0 };
    char b[256];
    if (poll(&p, 1, ms) <= 0)
        return 0;
    ssize_t r = recv(fd, b, sizeof b, MSG_PEEK);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
        return 1;
    return r > 0 ? 2 : 0;
}

/* Sends req from src and reads until the server closes or ms pass: the
   status of the answer, 0 when the server closed without one, -1 when
   nothing came or no connection could be made. */
static int raw_request_from(const char *src, int port, const char *req, int ms)
{
    char buf[4096];
    size_t n = 0;
    long long end = now_ms() + ms;
    int fd = raw_connect_from(src, port), st = -1;
    if (fd < 0)
        return -1;
    (void)send(fd, req, strlen(req), MSG_NOSIGNAL);
    while (now_ms() < end && n < sizeof buf - 1) {
        struct pollfd p = { fd, POLLIN, 0 };
        if (poll(&p, 1, (int)(end - now_ms())) <= 0)
            continue;
        ssize_t r = recv(fd, buf + n, sizeof buf - 1 - n, 0);
        if (r <= 0) {
            st = 0;
            break;
        }
        n += (size_t)r;
        buf[n] = '\0';
        if (strstr(buf, "\r\n\r\n") != NULL)
            break;
    }
    close(fd);
    buf[n] = '\0';
    if (n >= 12 && strncmp(buf, "HTTP/1.", 7) == 0)
        st = (int)strtol(buf + 9, NULL, 10);
    return st;
}

/* Sets this process's soft RLIMIT_NOFILE (the service inherits it). */
static void set_nofile(rlim_t soft)
{
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rl.rlim_cur = soft < rl.rlim_max ? soft : rl.rlim_max;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

/* Raises the soft RLIMIT_NOFILE to the hard one; skips the test when
   want descriptors do not fit. */
static int nofile_at_least(rlim_t want)
{
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    set_nofile(rl.rlim_max);
    return rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want;
}

/* ---- 3. SIGHUP ---- */

/* The relay answers MAIL after a second: sends are in flight when the
   signal comes. */
static const char SLOW_MAIL[] =
    "{\"rules\":[{\"match\":\"^MAIL FROM\",\"action\":\"delay:1\"}]}";

static void test_sighup_while_sending_is_logged_and_nothing_is_lost(void **state)
{
    struct fx *fx = *state;
    enum { N = 4 };
    struct sender s[N + 1];
    const char *extra[] = { "--pool-workers", "2", NULL };
    memset(s, 0, sizeof s);
    fx->peer = peer_start_fake(SLOW_MAIL);
    assert_non_null(fx->peer);
    fx->svc = mpserve_start(peer_port(fx->peer), extra);
    assert_non_null(fx->svc);
    for (int i = 0; i < N; i++) {
        s[i].fx = fx;
        snprintf(s[i].subject, sizeof s[i].subject, "hup-%d", i);
        assert_int_equal(pthread_create(&s[i].tid, NULL, sender_run, &s[i]), 0);
    }
    sleep_ms(400); /* the first sends wait on MAIL */
    assert_int_equal(mpserve_signal(fx->svc, SIGHUP), 0);
    sleep_ms(200);
    assert_int_equal(mpserve_signal(fx->svc, SIGHUP), 0);
    for (int i = 0; i < N; i++)
        pthread_join(s[i].tid, NULL);
    /* Alive, and still taking work after the signals. */
    assert_int_equal(mpserve_wait(fx->svc, 300), MPSERVE_TIMEOUT);
    s[N].fx = fx;
    snprintf(s[N].subject, sizeof s[N].subject, "hup-after");
    sender_run(&s[N]);
    for (int i = 0; i <= N; i++) {
        if (s[i].status != 200 || !s[i].sent)
            fail_msg("%s: HTTP %ld %s", s[i].subject, s[i].status, s[i].err);
    }
    /* Each message reached the relay once. */
    assert_int_equal(peer_wait_messages(fx->peer, N + 1, 10000), N + 1);
    for (int i = 0; i <= N; i++)
        assert_int_equal(relay_has(fx->peer, s[i].subject), 1);
    assert_int_equal(log_count(fx, "\"signal\":\"HUP\""), 2);
    assert_int_equal(mpserve_stop_clean(fx->svc, STOP_MS), 0);
    assert_int_equal(log_count(fx, "SIGTERM received"), 1);
}

/* ---- 1. The in-flight budget and slow bodies ---- */

#define ATTACKERS 8
#define TEN_MIB "10485760"

/* Connections that each declared 10 MiB and send one byte every 500 ms,
   on a thread of their own; when each was closed by the server. */
struct dribble {
    int port;
    int fds[ATTACKERS];
    long long t0;
    _Atomic long long closed_ms[ATTACKERS]; /* 0: still open */
    atomic_int stop;
    pthread_t tid;
};

/* Thread body: one byte on every open connection each 500 ms. */
static void *dribble_run(void *arg)
{
    struct dribble *d = arg;
    while (!d->stop) {
        for (int i = 0; i < ATTACKERS; i++) {
            if (d->fds[i] < 0 || d->closed_ms[i] != 0)
                continue;
            if (raw_state(d->fds[i], 0) == 1 ||
                send(d->fds[i], "x", 1, MSG_NOSIGNAL) < 0)
                d->closed_ms[i] = now_ms() - d->t0;
        }
        sleep_ms(500);
    }
    return NULL;
}

/* Opens the attackers (each: a POST head declaring 10 MiB, then "{")
   and starts dribbling. */
static void dribble_start(struct dribble *d, int port)
{
    static const char head[] =
        "POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/json\r\nContent-Length: " TEN_MIB
        "\r\n\r\n{";
    memset(d, 0, sizeof *d);
    d->port = port;
    d->t0 = now_ms();
    for (int i = 0; i < ATTACKERS; i++) {
        d->fds[i] = raw_connect_from(NULL, port);
        assert_true(d->fds[i] >= 0);
        assert_int_equal(send(d->fds[i], head, sizeof head - 1, MSG_NOSIGNAL),
                         (ssize_t)(sizeof head - 1));
    }
    assert_int_equal(pthread_create(&d->tid, NULL, dribble_run, d), 0);
}

/* Stops dribbling and closes the attackers. */
static void dribble_stop(struct dribble *d)
{
    d->stop = 1;
    pthread_join(d->tid, NULL);
    for (int i = 0; i < ATTACKERS; i++)
        if (d->fds[i] >= 0)
            close(d->fds[i]);
}

static void test_slow_body_attack_leaves_room_for_legitimate_posts(void **state)
{
    struct fx *fx = *state;
    struct dribble d;
    enum { N = 5 };
    struct sender s[N];
    /* 20 MiB of budget: two declared 10 MiB bodies would fill it. */
    const char *extra[] = { "--http-max-inflight", "20m", NULL };
    memset(s, 0, sizeof s);
    fx->peer = peer_start_fake(PLAIN_RELAY);
    assert_non_null(fx->peer);
    fx->svc = mpserve_start(peer_port(fx->peer), extra);
    assert_non_null(fx->svc);
    dribble_start(&d, mpserve_port(fx->svc));
    sleep_ms(500);
    for (int i = 0; i < N; i++) {
        s[i].fx = fx;
        snprintf(s[i].subject, sizeof s[i].subject, "legit-%d", i);
        sender_run(&s[i]);
    }
    /* The attack was on all along: every attacker still connected. */
    int open = 0;
    for (int i = 0; i < ATTACKERS; i++)
        open += d.closed_ms[i] == 0 && raw_state(d.fds[i], 0) == 0;
    dribble_stop(&d);
    for (int i = 0; i < N; i++)
        if (s[i].status != 200 || !s[i].sent)
            fail_msg("%s during the attack: HTTP %ld %s", s[i].subject,
                     s[i].status, s[i].err);
    assert_int_equal(open, ATTACKERS);
    assert_int_equal(peer_wait_messages(fx->peer, N, 10000), N);
    for (int i = 0; i < N; i++)
        assert_int_equal(relay_has(fx->peer, s[i].subject), 1);
    assert_int_equal(mpserve_stop_clean(fx->svc, STOP_MS), 0);
}

static void test_slow_bodies_are_cut_by_the_minimum_rate(void **state)
{
    struct fx *fx = *state;
    struct dribble d;
    const char *extra[] = { "--http-body-timeout",
                            "2",
                            "--http-min-body-rate",
                            "1000",
                            "--http-connection-timeout",
                            "30",
                            NULL };
    fx->peer = peer_start_fake(PLAIN_RELAY);
    assert_non_null(fx->peer);
    fx->svc = mpserve_start(peer_port(fx->peer), extra);
    assert_non_null(fx->svc);
    dribble_start(&d, mpserve_port(fx->svc));
    long long t0 = now_ms();
    int closed = 0;
    while (closed < ATTACKERS && now_ms() - t0 < 10000) {
        sleep_ms(200);
        closed = 0;
        for (int i = 0; i < ATTACKERS; i++)
            closed += d.closed_ms[i] != 0;
    }
    dribble_stop(&d);
    /* Each was closed after body_timeout (2 s) and well before the idle
       timeout (30 s), which the dribbling kept resetting. */
    for (int i = 0; i < ATTACKERS; i++) {
        if (d.closed_ms[i] == 0)
            fail_msg("attacker %d still connected after %lld ms", i,
                     now_ms() - t0);
        assert_true(d.closed_ms[i] >= 1900);
        assert_true(d.closed_ms[i] <= 6000);
    }
    assert_int_equal(log_count(fx, "\"event\":\"body_too_slow\""), ATTACKERS);
    send_one_ok(fx, "after-slow", 0);
    assert_int_equal(mpserve_stop_clean(fx->svc, STOP_MS), 0);
}

/* ---- 2. Connection limits ---- */

#define IDLE 1100

/* Opens n idle connections from src; how many the server left open after
   a moment (the others it closed at once).  fds[] gets them all. */
static int open_idle(const char *src, int port, int *fds, int n)
{
    int open = 0;
    for (int i = 0; i < n; i++) {
        fds[i] = raw_connect_from(src, port);
        assert_true(fds[i] >= 0);
    }
    sleep_ms(1000);
    for (int i = 0; i < n; i++)
        open += raw_state(fds[i], 0) == 0;
    return open;
}

/* Closes n sockets. */
static void close_all(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

/* The soft "Max open files" of the running service (/proc/PID/limits). */
static long service_nofile(const struct fx *fx)
{
    char path[64], line[256];
    long soft = -1;
    snprintf(path, sizeof path, "/proc/%ld/limits", (long)mpserve_pid(fx->svc));
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, "Max open files", 14) == 0)
            soft = strtol(line + 14, NULL, 10);
    fclose(f);
    return soft;
}

static const char HEALTHZ[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n"
                              "Connection: close\r\n\r\n";

/* The service starts with a soft RLIMIT_NOFILE of 1024 (it raises it to
   the hard limit itself); 1,100 idle connections fit under
   http.max_connections, /healthz and a POST are served beside them, and
   the idle ones are closed after http.header_timeout, not after
   http.connection_timeout. */
static void test_1100_idle_sockets_healthz_and_post_served_idle_closed_soon(
    void **state)
{
    struct fx *fx = *state;
    int fds[IDLE];
    struct sender s;
    const char *extra[] = { "--http-max-connections",
                            "1500",
                            "--http-header-timeout",
                            "3",
                            "--http-connection-timeout",
                            "60",
                            NULL };
    memset(&s, 0, sizeof s);
    if (!nofile_at_least(IDLE + 200))
        skip();
    fx->peer = peer_start_fake(PLAIN_RELAY);
    assert_non_null(fx->peer);
    set_nofile(1024);
    fx->svc = mpserve_start(peer_port(fx->peer), extra);
    nofile_at_least(IDLE + 200);
    assert_non_null(fx->svc);
    assert_true(service_nofile(fx) >= IDLE + 200);
    long long t0 = now_ms();
    assert_int_equal(open_idle(NULL, mpserve_port(fx->svc), fds, IDLE), IDLE);
    /* Answered at once: not after idle ones were closed (3 s) made room. */
    assert_int_equal(
        raw_request_from(NULL, mpserve_port(fx->svc), HEALTHZ, 1000), 200);
    assert_true(now_ms() - t0 < 2500);
    s.fx = fx;
    snprintf(s.subject, sizeof s.subject, "beside-idle");
    sender_run(&s);
    if (s.status != 200 || !s.sent)
        fail_msg("POST beside 1,100 idle connections: HTTP %ld %s", s.status,
                 s.err);
    /* Idle before a first request: closed after 3 s, not 60. */
    int closed = 0;
    while (closed < IDLE && now_ms() - t0 < 10000) {
        closed = 0;
        for (int i = 0; i < IDLE; i++)
            closed += raw_state(fds[i], 0) == 1;
        if (closed < IDLE)
            sleep_ms(250);
    }
    long long took = now_ms() - t0;
    close_all(fds, IDLE);
    assert_int_equal(closed, IDLE);
    assert_true(took >= 2500);
    assert_int_equal(relay_has(fx->peer, "beside-idle"), 1);
    assert_int_equal(mpserve_stop_clean(fx->svc, STOP_MS), 0);
}

/* http.max_connections_per_ip 100: of 1,100 idle connections from
   127.0.0.1 the server keeps 100 and closes the rest at once, and
   127.0.0.1 gets nothing more; clients from other addresses (127.0.0.2,
   127.0.0.3) get /healthz and their POST answered. */
static void test_per_ip_limit_refuses_one_address_and_serves_others(void **state)
{
    struct fx *fx = *state;
    int fds[IDLE];
    char post[512];
    const char *extra[] = { "--http-max-connections",
                            "1500",
                            "--http-max-connections-per-ip",
                            "100",
                            "--http-header-timeout",
                            "30",
                            NULL };
    static const char body[] =
        "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\"],"
        "\"subject\":\"other-address\",\"text\":\"hello\"}";
    if (!nofile_at_least(IDLE + 200))
        skip();
    fx->peer = peer_start_fake(PLAIN_RELAY);
    assert_non_null(fx->peer);
    fx->svc = mpserve_start(peer_port(fx->peer), extra);
    assert_non_null(fx->svc);
    int port = mpserve_port(fx->svc);
    assert_int_equal(open_idle("127.0.0.1", port, fds, IDLE), 100);
    /* 127.0.0.1 is at its limit: a new connection is closed unanswered. */
    assert_int_equal(raw_request_from("127.0.0.1", port, HEALTHZ, 3000), 0);
    assert_int_equal(raw_request_from("127.0.0.2", port, HEALTHZ, 3000), 200);
    snprintf(post, sizeof post,
             "POST /v1/messages HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
             "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
             sizeof body - 1, body);
    assert_int_equal(raw_request_from("127.0.0.3", port, post, 10000), 200);
    close_all(fds, IDLE);
    assert_int_equal(peer_wait_messages(fx->peer, 1, 10000), 1);
    assert_int_equal(relay_has(fx->peer, "other-address"), 1);
    sleep_ms(300); /* the server sees the closes */
    assert_int_equal(raw_request_from("127.0.0.1", port, HEALTHZ, 3000), 200);
    assert_int_equal(mpserve_stop_clean(fx->svc, STOP_MS), 0);
}

/* ---- 8. relay.tls = opportunistic without STARTTLS ---- */

/* The fake relay offers no STARTTLS (as behind a proxy that strips it):
   with relay.tls = opportunistic both messages go in plaintext over one
   connection, and the log says so once, at warn, naming the relay. */
static void test_opportunistic_tls_downgrade_is_logged_once_per_connection(
    void **state)
{
    struct fx *fx = *state;
    struct sender s[2];
    char want[96];
    const char *extra[] = { "--relay-tls", "opportunistic",
                            "--pool-connections", "1", NULL };
    memset(s, 0, sizeof s);
    fx->peer = peer_start_fake(PLAIN_RELAY);
    assert_non_null(fx->peer);
    fx->svc = mpserve_start(peer_port(fx->peer), extra);
    assert_non_null(fx->svc);
    for (int i = 0; i < 2; i++) {
        s[i].fx = fx;
        snprintf(s[i].subject, sizeof s[i].subject, "plain-%d", i);
        sender_run(&s[i]);
        if (s[i].status != 200 || !s[i].sent)
            fail_msg("%s: HTTP %ld %s", s[i].subject, s[i].status, s[i].err);
    }
    assert_int_equal(peer_wait_messages(fx->peer, 2, 10000), 2);
    struct peer_msg *m;
    size_t n;
    assert_int_equal(peer_messages(fx->peer, &m, &n), 0);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(m[i].tls, 0);
    peer_msgs_free(m, n);
    assert_int_equal(peer_conn_count(fx->peer), 1);
    snprintf(want, sizeof want, "\"relay\":\"127.0.0.1:%d\"",
             peer_port(fx->peer));
    assert_int_equal(log_count(fx, "\"event\":\"relay_tls_downgrade\""), 1);
    assert_int_equal(log_count(fx, "\"level\":\"warn\",\"event\":"
                                   "\"relay_tls_downgrade\""),
                     1);
    assert_int_equal(log_count(fx, want), 1);
    assert_int_equal(mpserve_stop_clean(fx->svc, STOP_MS), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_sighup_while_sending_is_logged_and_nothing_is_lost, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_slow_body_attack_leaves_room_for_legitimate_posts, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_slow_bodies_are_cut_by_the_minimum_rate, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_1100_idle_sockets_healthz_and_post_served_idle_closed_soon,
            setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_per_ip_limit_refuses_one_address_and_serves_others, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_opportunistic_tls_downgrade_is_logged_once_per_connection,
            setup, teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
