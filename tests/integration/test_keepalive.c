/*
 * test_keepalive.c - many kept-alive HTTP connections through `mailpool
 * serve` (issue 19): 3,000 clients each finish a request, all stay open,
 * then each sends its next request on the same socket and is answered;
 * the memory the service keeps per such connection is bounded by its
 * libmicrohttpd pool (api/http.h: API_HTTP_POOL, 24 KiB).
 *
 * The test starts a fake relay (tests/fakes/fake_smtp.py) and the service
 * on free ports of 127.0.0.1 and asserts on what crossed the wire: each
 * answer's status line and body, the messages the relay received, and the
 * service's resident memory (/proc/PID/status) before and with the
 * connections held.  No timing is asserted.
 *
 * Errors: cmocka assertions.  Threads: one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "tests/support/mpserve.h"
#include "tests/support/peer.h"
#include "tests/support/tsupport.h"

#define CONNS 3000      /* kept-alive connections held at once */
#define POSTS 20        /* of them, how many send a message second */
#define PER_CONN_KIB 28 /* bound on the RSS each one keeps (KiB) */

struct fx {
    struct peer *peer;
    struct mpserve *svc;
    int fds[CONNS];
};

static int setup(void **state)
{
    struct fx *fx = calloc(1, sizeof *fx);
    if (fx == NULL)
        return -1;
    for (int i = 0; i < CONNS; i++)
        fx->fds[i] = -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fx *fx = *state;
    for (int i = 0; i < CONNS; i++)
        if (fx->fds[i] >= 0)
            close(fx->fds[i]);
    mpserve_free(fx->svc);
    peer_stop(fx->peer);
    free(fx);
    return 0;
}

/* Raises the soft RLIMIT_NOFILE to the hard one; 1 when want fit. */
static int nofile_at_least(rlim_t want)
{
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rl.rlim_cur = rl.rlim_max;
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
    return rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want;
}

/* A blocking connection to 127.0.0.1:port with a 60 s receive timeout
   (half the service's connection timeout: an answer that has not come by
   then is lost, not slow). */
static int connect_local(int port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port) };
    struct timeval tv = { 60, 0 };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* Writes all of s to fd; 0 or -1. */
static int send_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, s, n, MSG_NOSIGNAL);
        if (k <= 0)
            return -1;
        s += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Reads one whole answer (its head and Content-Length bytes of body) from
   fd into buf (NUL-ended); its length, or -1 when the connection closed or
   timed out first (why says which, with what had arrived). */
static long read_answer(int fd, char *buf, size_t size, char *why,
                        size_t whylen)
{
    size_t have = 0;
    buf[0] = '\0';
    for (;;) {
        const char *end = strstr(buf, "\r\n\r\n");
        if (have > 0 && end != NULL) {
            const char *cl = strstr(buf, "Content-Length: ");
            long body = cl != NULL && cl < end ? strtol(cl + 16, NULL, 10) : 0;
            if ((long)have >= (end + 4 - buf) + body)
                return (long)have;
        }
        if (have + 1 >= size) {
            snprintf(why, whylen, "answer over %zu bytes", size);
            return -1;
        }
        ssize_t k = recv(fd, buf + have, size - 1 - have, 0);
        if (k <= 0) {
            snprintf(why, whylen, "%s after %zu bytes: %.60s",
                     k == 0 ? "closed" : strerror(errno), have, buf);
            return -1;
        }
        have += (size_t)k;
        buf[have] = '\0';
    }
}

/* Reads connection i's answer to its round-th request into buf, or fails
   saying why, how long it waited, and what the service logged last. */
static void expect_answer(const struct fx *fx, int i, const char *round,
                          char *buf, size_t size)
{
    char why[160];
    long long t0 = ts_now_ms();
    if (read_answer(fx->fds[i], buf, size, why, sizeof why) >= 0)
        return;
    size_t len;
    char *log = mpserve_log(fx->svc, &len);
    print_error("service log (last 3000 bytes):\n%s\n",
                log == NULL ? "(none)" : log + (len > 3000 ? len - 3000 : 0));
    free(log);
    fail_msg("connection %d: no whole answer to its %s request (%s; waited "
             "%lld ms)",
             i, round, why, ts_now_ms() - t0);
}

/* The service's resident memory in KiB (VmRSS). */
static long service_rss_kib(const struct fx *fx)
{
    char path[64];
    size_t len;
    snprintf(path, sizeof path, "/proc/%ld/status", (long)mpserve_pid(fx->svc));
    char *text = ts_slurp(path, &len);
    assert_non_null(text);
    const char *v = strstr(text, "\nVmRSS:");
    long kib = v != NULL ? strtol(v + 7, NULL, 10) : -1;
    free(text);
    return kib;
}

/* The request connection i sends in round 2: a POST of a message whose
   subject names i for the first POSTS, else GET /healthz. */
static size_t second_request(int i, char *out, size_t size)
{
    char body[256];
    if (i >= POSTS)
        return (size_t)snprintf(out, size,
                                "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    int n = snprintf(body, sizeof body,
                     "{\"from\":\"sender@example.com\",\"to\":"
                     "[\"rcpt@example.net\"],\"subject\":\"kept-alive-%d\","
                     "\"text\":\"hello\"}",
                     i);
    return (size_t)snprintf(out, size,
                            "POST /v1/messages HTTP/1.1\r\nHost: x\r\n"
                            "Content-Type: application/json\r\n"
                            "Content-Length: %d\r\n\r\n%s",
                            n, body);
}

/* How many relayed messages carry "Subject: kept-alive-I" for I < POSTS,
   each counted once. */
static int relay_subjects(struct peer *p)
{
    struct peer_msg *m;
    size_t n;
    int found = 0;
    assert_int_equal(peer_messages(p, &m, &n), 0);
    for (int i = 0; i < POSTS; i++) {
        char want[64];
        snprintf(want, sizeof want, "\r\nSubject: kept-alive-%d\r\n", i);
        for (size_t k = 0; k < n; k++)
            if (strstr((const char *)m[k].data, want) != NULL) {
                found++;
                break;
            }
    }
    peer_msgs_free(m, n);
    return found;
}

/* 3,000 connections each answered GET /healthz and kept alive, all held
   at once: the service keeps at most 28 KiB a connection (its 24 KiB
   pool, zeroed by libmicrohttpd for the next request; 32.5 KiB with the
   former 32 KiB pool), and every one is answered again on the same socket
   (20 of them POST a message, which the relay receives). */
static void test_3000_kept_alive_connections_held_and_each_served_again(
    void **state)
{
    struct fx *fx = *state;
    static const char get[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    const char *extra[] = { "--http-max-connections", "3500",
                            "--http-connection-timeout", "120", NULL };
    char buf[4096], req[512];
    if (!nofile_at_least(CONNS + 200))
        skip();
    fx->peer = peer_start_fake("{\"rules\":[]}");
    assert_non_null(fx->peer);
    fx->svc = mpserve_start(peer_port(fx->peer), extra);
    assert_non_null(fx->svc);
    long before = service_rss_kib(fx);
    for (int i = 0; i < CONNS; i++) {
        fx->fds[i] = connect_local(mpserve_port(fx->svc));
        assert_true(fx->fds[i] >= 0);
        assert_int_equal(send_all(fx->fds[i], get, sizeof get - 1), 0);
    }
    for (int i = 0; i < CONNS; i++) {
        expect_answer(fx, i, "first", buf, sizeof buf);
        assert_true(strncmp(buf, "HTTP/1.1 200 ", 13) == 0);
        assert_null(strstr(buf, "Connection: close"));
    }
    long held = service_rss_kib(fx);
    long per = (held - before) / CONNS;
    print_message("RSS %ld KiB before, %ld KiB with %d kept-alive "
                  "connections: %ld KiB each\n",
                  before, held, CONNS, per);
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    assert_true(per <= PER_CONN_KIB); /* (sanitizers: shadow memory) */
#endif
    for (int i = 0; i < CONNS; i++) {
        size_t n = second_request(i, req, sizeof req);
        assert_int_equal(send_all(fx->fds[i], req, n), 0);
    }
    for (int i = 0; i < CONNS; i++) {
        expect_answer(fx, i, "second", buf, sizeof buf);
        if (strncmp(buf, "HTTP/1.1 200 ", 13) != 0)
            fail_msg("connection %d, second request: %.80s", i, buf);
        if (i < POSTS)
            assert_non_null(strstr(buf, "\"status\":\"sent\""));
    }
    assert_int_equal(peer_wait_messages(fx->peer, POSTS, 20000), POSTS);
    assert_int_equal(relay_subjects(fx->peer), POSTS);
    assert_int_equal(mpserve_stop_clean(fx->svc, 20000), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_3000_kept_alive_connections_held_and_each_served_again, setup,
            teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
