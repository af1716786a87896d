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
 *     /healthz and POSTs from other clients are served.
 *
 * Each test starts its own fake relay (tests/fakes/fake_smtp.py) and
 * service on free ports of 127.0.0.1, and asserts on what crossed the
 * wire: the HTTP answers, the messages the relay received, the log lines.
 *
 * Errors: cmocka assertions.  Threads: client threads only record what
 * they saw; every assertion is made on the main thread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/http.h"
#include "tests/support/mpserve.h"
#include "tests/support/peer.h"

#define STOP_MS 20000

/* ---- Fixture: the relay and the service of one test ---- */

struct fx {
    struct peer *peer;
    struct mpserve *svc;
};

static int setup(void **state)
{
    *state = calloc(1, sizeof(struct fx));
    return *state != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    mpserve_free(fx->svc);
    peer_stop(fx->peer);
    free(fx);
    return 0;
}

/* Sleeps ms milliseconds. */
static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Counts the occurrences of needle in the service's log. */
static int log_count(const struct fx *fx, const char *needle)
{
    size_t len;
    char *log = mpserve_log(fx->svc, &len);
    int n = 0;
    for (const char *p = log; p != NULL && (p = strstr(p, needle)) != NULL; p++)
        n++;
    free(log);
    return n;
}

/* Milliseconds on the monotonic clock. */
static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

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

/* ---- A legitimate client ---- */

/* One synchronous send with this subject; what came back. */
struct sender {
    const struct fx *fx;
    char subject[64];
    const char *auth; /* an Authorization header, or NULL */
    const char *idem; /* an Idempotency-Key header, or NULL:
                                       then a batch of subject-a, -b */
    pthread_t tid;
    long status;
    int sent;             /* the answer said "status":"sent" */
    char retry_after[16]; /* its Retry-After, "" when none */
    long long ms;         /* from the POST to its answer */
    char err[256];
};

/* Thread body: POST /v1/messages with s->subject (with s->idem: a batch of
   s->subject-a and -b under that key), record the answer. */
static void *sender_run(void *arg)
{
    struct sender *s = arg;
    struct http_resp r;
    char url[128], body[512];
    const char *hdrs[] = { "Content-Type: application/json",
                           s->idem ? s->idem : s->auth,
                           s->idem ? s->auth : NULL, NULL };
    static const char one[] =
        "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\"],"
        "\"subject\":\"%s%s\",\"text\":\"hello\"}";
    char m1[200], m2[200];
    snprintf(url, sizeof url, "%s/v1/messages%s", mpserve_url(s->fx->svc),
             s->idem ? "/batch" : "");
    snprintf(m1, sizeof m1, one, s->subject, s->idem ? "-a" : "");
    snprintf(m2, sizeof m2, one, s->subject, "-b");
    if (s->idem)
        snprintf(body, sizeof body, "{\"messages\":[%s,%s]}", m1, m2);
    else
        snprintf(body, sizeof body, "%s", m1);
    long long t0 = now_ms();
    if (http_request("POST", url, hdrs, body, 0, &r) < 0) {
        snprintf(s->err, sizeof s->err, "%s", r.err);
        return NULL;
    }
    s->ms = now_ms() - t0;
    s->status = r.status;
    char *ra = http_resp_header(&r, "Retry-After");
    snprintf(s->retry_after, sizeof s->retry_after, "%s", ra ? ra : "");
    free(ra);
    s->sent = r.body != NULL && strstr(r.body, "\"status\":\"sent\"") != NULL;
    if (!s->sent)
        snprintf(s->err, sizeof s->err, "%.200s", r.body ? r.body : "");
    http_resp_free(&r);
    return NULL;
}

/* Number of messages at the relay whose data holds "Subject: subject". */
static int relay_has(struct peer *p, const char *subject)
{
    struct peer_msg *m;
    size_t n;
    char want[96];
    int found = 0;
    snprintf(want, sizeof want, "\r\nSubject: %s\r\n", subject);
    if (peer_messages(p, &m, &n) < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        found += strstr((const char *)m[i].data, want) != NULL;
    peer_msgs_free(m, n);
    return found;
}

/* One synchronous send that must be answered "sent" and reach the relay
   once (the relay holding `before` messages until then). */
static void send_one_ok(const struct fx *fx, const char *subject, size_t before)
{
    struct sender s;
    memset(&s, 0, sizeof s);
    s.fx = fx;
    snprintf(s.subject, sizeof s.subject, "%s", subject);
    sender_run(&s);
    if (s.status != 200 || !s.sent)
        fail_msg("%s: HTTP %ld %s", subject, s.status, s.err);
    assert_int_equal(peer_wait_messages(fx->peer, before + 1, 10000),
                     (int)before + 1);
    assert_int_equal(relay_has(fx->peer, subject), 1);
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

/* A relay that takes everything. */
static const char PLAIN_RELAY[] = "{\"rules\":[]}";

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

/* `mailpool serve` and `mailpool send` refuse a secret flag (naming the
   variable and the file key that replace it, never echoing the value) and
   a secret file others can read (naming the file); the relay is never
   contacted.  The same file made 0600 is read: the send goes out (the
   relay offers no AUTH, so none is tried without --auth-user). */
static void test_secrets_never_from_flags_or_files_others_can_read(void **state)
{
    struct fx *fx = *state;
    char port[16], listen[32], *out = NULL;
    fx->peer = peer_start_fake(PLAIN_RELAY);
    assert_non_null(fx->peer);
    snprintf(port, sizeof port, "%d", peer_port(fx->peer));
    snprintf(listen, sizeof listen, "127.0.0.1:%d", mpserve_free_port());
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

    char pass[64], arg[128], want[160];
    snprintf(pass, sizeof pass, "%s", secret_file("hunter2-9c1\n", 0644));
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
    /* The queue's password file and a DKIM key: the same check. */
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

    /* The CLI: --auth-pass-file open to others; then 0600 works. */
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
        cmocka_unit_test_setup_teardown(
            test_send_not_started_by_deadline_is_503_and_never_sent, setup,
            teardown),
        cmocka_unit_test_setup_teardown(
            test_batch_not_started_by_deadline_is_503_and_its_key_free, setup,
            teardown),
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
