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
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
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
    for (const char *p = log; p != NULL && (p = strstr(p, needle)) != NULL;
         p++)
        n++;
    free(log);
    return n;
}

/* ---- A legitimate client ---- */

/* One synchronous send with this subject; what came back. */
struct sender {
    const struct fx *fx;
    char subject[64];
    const char *auth;               /* an Authorization header, or NULL */
    pthread_t tid;
    long status;
    int sent;                       /* the answer said "status":"sent" */
    char err[256];
};

/* Thread body: POST /v1/messages with s->subject, record the answer. */
static void *sender_run(void *arg)
{
    struct sender *s = arg;
    struct http_resp r;
    char url[128], body[512];
    const char *hdrs[] = { "Content-Type: application/json", s->auth, NULL };
    snprintf(url, sizeof url, "%s/v1/messages", mpserve_url(s->fx->svc));
    snprintf(body, sizeof body,
             "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\"],"
             "\"subject\":\"%s\",\"text\":\"hello\"}", s->subject);
    if (http_request("POST", url, hdrs, body, 0, &r) < 0) {
        snprintf(s->err, sizeof s->err, "%s", r.err);
        return NULL;
    }
    s->status = r.status;
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

/* ---- 3. SIGHUP ---- */

/* The relay answers MAIL after a second: sends are in flight when the
   signal comes. */
static const char SLOW_MAIL[] =
    "{\"rules\":[{\"match\":\"^MAIL FROM\",\"action\":\"delay:1\"}]}";

static void test_sighup_while_sending_is_logged_and_nothing_is_lost(
    void **state)
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
        assert_int_equal(pthread_create(&s[i].tid, NULL, sender_run, &s[i]),
                         0);
    }
    sleep_ms(400);                  /* the first sends wait on MAIL */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_sighup_while_sending_is_logged_and_nothing_is_lost, setup,
            teardown),
    };
    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
