/*
 * tests/support/frontdoor_fx.h - what the front-door tests
 * (tests/integration/test_frontdoor.c and test_frontdoor_limits.c) share:
 * the relay and the service of one test (the teardown frees them, each
 * test stops the service itself and checks its exit), the service's log,
 * the monotonic clock, a legitimate client's synchronous send on a thread
 * of its own (recording, never asserting), the relay's subjects.
 * Header-only (static inline).
 */
#ifndef TESTS_SUPPORT_FRONTDOOR_FX_H
#define TESTS_SUPPORT_FRONTDOOR_FX_H

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

static inline int setup(void **state)
{
    *state = calloc(1, sizeof(struct fx));
    return *state != NULL ? 0 : -1;
}

static inline int teardown(void **state)
{
    struct fx *fx = *state;
    mpserve_free(fx->svc);
    peer_stop(fx->peer);
    free(fx);
    return 0;
}

/* Sleeps ms milliseconds. */
static inline void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Counts the occurrences of needle in the service's log. */
static inline int log_count(const struct fx *fx, const char *needle)
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
static inline long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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
static inline void *sender_run(void *arg)
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
static inline int relay_has(struct peer *p, const char *subject)
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
static inline void send_one_ok(const struct fx *fx, const char *subject,
                               size_t before)
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

/* A relay that takes everything. */
static const char PLAIN_RELAY[] = "{\"rules\":[]}";

#endif /* TESTS_SUPPORT_FRONTDOOR_FX_H */
