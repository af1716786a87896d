/*
 * test_hostile_clients.c - hostile clients against a running `mailpool
 * serve`: SMTP smuggling sequences in bodies ("\n.\n", "\r\n.\r\n",
 * "\n.\r\n", "\r.\r", a "." line, a raw message) delivered once,
 * dot-stuffed, no forged second message; slow-loris clients (headers at
 * one byte per 100 ms) while normal requests keep being served; clients
 * that hang up mid-body, before reading the response (while the job is
 * still out) and mid-response.  The relay and the two services are
 * tests/support/hostile_fx.h's; the last test checks requested =
 * delivered and exit 0 on SIGTERM.
 *
 * Threads: the slow-loris clients run on threads of their own that only
 * record what happened; every assertion is made on the main thread.
 */
#include "tests/support/hostile_fx.h"

/* ---- SMTP smuggling in bodies ---- */

/* Smuggling attempts: each must arrive as one message, dot-stuffed. */
static const struct {
    const char *subject, *members;
} SMUGGLE[] = {
    { "smuggle-lf-dot-lf", "\"body\":\"one\\n.\\nMAIL FROM:<" FORGED
                           ">\\nRCPT TO:<victim@example.org>"
                           "\\nDATA\\nSubject: forged\\n\\nforged\\n.\\n\"" },
    { "smuggle-crlf-dot-crlf",
      "\"body\":\"one\\r\\n.\\r\\nMAIL FROM:<" FORGED ">\\r\\nRCPT TO:"
      "<victim@example.org>\\r\\nDATA\\r\\nSubject: forged\\r\\n\\r\\nforged"
      "\\r\\n.\\r\\n\"" },
    { "smuggle-lf-dot-crlf",
      "\"body\":\"one\\n.\\r\\nMAIL FROM:<" FORGED ">\\r\\nRCPT TO:"
      "<victim@example.org>\\r\\nDATA\\r\\n\\r\\nforged\\n.\\r\\n\"" },
    { "smuggle-cr-dot-cr",
      "\"body\":\"one\\r.\\rMAIL FROM:<" FORGED ">\\rRCPT TO:"
      "<victim@example.org>\\rDATA\\r\\rforged\\r.\\r\"" },
    { "smuggle-crlf-dot-lf",
      "\"body\":\"one\\r\\n.\\nMAIL FROM:<" FORGED ">\\r\\n\"" },
    { "smuggle-lines",
      "\"body\":[\"one\",\".\",\"MAIL FROM:<" FORGED ">\","
      "\"RCPT TO:<victim@example.org>\",\"DATA\",\"\",\"forged\",\".\",\"\"]" },
    { "smuggle-leading-dot", "\"body\":\".\\r\\n..\\r\\n.x\\r\\n.\"" },
    { "smuggle-only-a-dot", "\"body\":\".\"" },
};


/* POSTs each SMUGGLE case, then a whole raw message with the same
   sequences, to service A; each must be answered "sent". */
static void post_smuggling_cases(struct fx *fx)
{
    const char *ct[] = { "Content-Type: application/json", NULL };
    size_t n = sizeof SMUGGLE / sizeof SMUGGLE[0];
    for (size_t i = 0; i < n; i++) {
        char body[1024];
        struct http_resp r;
        snprintf(body, sizeof body,
                 "{\"from\":\"sender@example.com\",\"to\":"
                 "[\"rcpt@example.net\"],\"headers\":{\"Subject\":\"%s\"},%s}",
                 SMUGGLE[i].subject, SMUGGLE[i].members);
        http(fx, A, "POST", "/v1/messages", ct, body, &r);
        if (r.status != 200 || strstr(r.body, "\"status\":\"sent\"") == NULL)
            fail_msg("%s: HTTP %ld %s", SMUGGLE[i].subject, r.status, r.body);
        http_resp_free(&r);
        fx->requested++;
    }
    /* A whole raw message with the same sequences. */
    struct http_resp r;
    http(
        fx, A, "POST", "/v1/messages", ct,
        "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\"],"
        "\"raw\":\"Subject: smuggle-raw\\r\\nFrom: sender@example.com\\r\\n"
        "\\r\\none\\r\\n.\\r\\nMAIL FROM:<" FORGED ">\\r\\nRCPT TO:"
        "<victim@example.org>\\r\\nDATA\\r\\n\\r\\nforged\\n.\\n\\r\\n.\\r\\n\"}",
        &r);
    if (r.status != 200 || strstr(r.body, "\"status\":\"sent\"") == NULL)
        fail_msg("smuggle-raw: HTTP %ld %s", r.status, r.body);
    http_resp_free(&r);
    fx->requested++;
}

/* Each of the n SMUGGLE subjects and "smuggle-raw" arrived once among the
   got messages m, dot-stuffed and CRLF-clean, with a stuffed dot line. */
static void expect_each_once_stuffed(const struct peer_msg *m, size_t got,
                                     size_t n)
{
    for (size_t k = 0; k <= n; k++) {
        const char *want = k < n ? SMUGGLE[k].subject : "smuggle-raw";
        int seen = 0;
        for (size_t i = 0; i < got; i++) {
            char *s = subject_of(&m[i]);
            if (s != NULL && strcmp(s, want) == 0) {
                char why[64];
                seen++;
                if (!stuffed_and_clean(m[i].data, m[i].len, why, sizeof why))
                    fail_msg("%s: %s in:\n%s", want, why, m[i].data);
                if (strstr((const char *)m[i].data, "\r\n..\r\n") == NULL &&
                    strncmp((const char *)m[i].data, "..", 2) != 0 &&
                    strstr((const char *)m[i].data, "\r\n\r\n..") == NULL)
                    fail_msg("%s: no stuffed dot line in:\n%s", want,
                             m[i].data);
            }
            free(s);
        }
        if (seen != 1)
            fail_msg("%s arrived %d times", want, seen);
    }
}

static void test_smuggling_sequences_in_bodies_deliver_once_dot_stuffed(
    void **state)
{
    struct fx *fx = *state;
    size_t n = sizeof SMUGGLE / sizeof SMUGGLE[0];
    int before = peer_wait_messages(fx->peer, (size_t)fx->requested, 10000);
    assert_int_equal(before, fx->requested);
    post_smuggling_cases(fx);
    assert_int_equal(peer_wait_messages(fx->peer, (size_t)fx->requested, 10000),
                     fx->requested);
    sleep_ms(300); /* a forged extra would show by now */
    struct peer_msg *m;
    size_t got;
    assert_int_equal(peer_messages(fx->peer, &m, &got), 0);
    assert_int_equal(got, (size_t)fx->requested);
    expect_each_once_stuffed(m, got, n);
    for (size_t i = 0; i < got; i++) {
        if (strcmp(m[i].mail_from, FORGED) == 0)
            fail_msg("a forged message from %s reached the relay", FORGED);
        for (size_t k = 0; k < m[i].nrcpt; k++)
            if (strcmp(m[i].rcpt_to[k], "victim@example.org") == 0)
                fail_msg("a forged recipient reached the relay");
    }
    peer_msgs_free(m, got);
}

/* ---- Slow clients ---- */

/* A client that writes req one byte every gap_ms (stopping after stop
   bytes when stop > 0 and waiting for the server to give up), then reads
   the answer. */
struct loris {
    int port;
    const char *req;
    size_t stop;
    int gap_ms;
    struct raw_out out;
    pthread_t tid;
};

/* Thread: one slow client (see struct loris). */
static void *loris_run(void *arg)
{
    struct loris *l = arg;
    size_t len = strlen(l->req), n = l->stop > 0 ? l->stop : len;
    long long t0 = now_ms();
    int fd = raw_connect(l->port, 0);
    if (fd < 0) {
        l->out.hung = 1;
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (send(fd, l->req + i, 1, MSG_NOSIGNAL) != 1) {
            l->out.closed = 1; /* the server gave up on us */
            break;
        }
        sleep_ms(l->gap_ms);
    }
    char buf[4096];
    size_t got = 0;
    for (long long end = now_ms() + (CONN_TIMEOUT_S + 4) * 1000;
         now_ms() < end && got < sizeof buf - 1;) {
        struct pollfd p = { fd, POLLIN, 0 };
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t r = recv(fd, buf + got, sizeof buf - 1 - got, 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
            l->out.closed = 1;
            break;
        }
        if (r > 0) {
            got += (size_t)r;
            parse_responses(buf, got, &l->out);
        }
    }
    l->out.hung = l->out.nresp == 0 && !l->out.closed;
    l->out.ms = now_ms() - t0;
    close(fd);
    return NULL;
}

/* For 4 s, health checks and (the first three) messages to service A,
   each answered as it should; the slowest answer's milliseconds. */
static long long serve_others_meanwhile(struct fx *fx)
{
    const char *ct[] = { "Content-Type: application/json", NULL };
    long long worst = 0;
    int sends = 0;
    for (long long end = now_ms() + 4000; now_ms() < end; sleep_ms(150)) {
        struct http_resp r;
        long long s = now_ms();
        if (sends < 3) {
            char body[256];
            snprintf(body, sizeof body,
                     "{\"from\":\"sender@example.com\",\"to\":"
                     "[\"rcpt@example.net\"],\"headers\":{\"Subject\":"
                     "\"hostile: during slow loris %d\"}}",
                     sends);
            http(fx, A, "POST", "/v1/messages", ct, body, &r);
            if (r.status != 200 ||
                strstr(r.body, "\"status\":\"sent\"") == NULL)
                fail_msg("a send during slow loris: %ld %s", r.status, r.body);
            sends++;
            fx->requested++;
        } else {
            http(fx, A, "GET", "/healthz", NULL, NULL, &r);
            assert_int_equal(r.status, 200);
        }
        http_resp_free(&r);
        if (now_ms() - s > worst)
            worst = now_ms() - s;
    }
    return worst;
}

static void test_slow_loris_clients_do_not_stop_others_being_served(void **state)
{
    struct fx *fx = *state;
    enum { NSLOW = 6 };
    static const char slow_req[] =
        "GET /healthz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    struct loris l[NSLOW + 1];
    long long t0 = now_ms(), worst = 0;
    /* More slow clients than MHD threads (2), plus one that stops halfway
       through its headers and must be dropped after the idle timeout. */
    memset(l, 0, sizeof l);
    for (int i = 0; i <= NSLOW; i++) {
        l[i].port = mpserve_port(fx->svc[A]);
        l[i].req = slow_req;
        l[i].gap_ms = 100;
        l[i].stop = i == NSLOW ? 20 : 0;
        assert_int_equal(pthread_create(&l[i].tid, NULL, loris_run, &l[i]), 0);
    }
    /* Meanwhile: health checks and messages, each answered promptly. */
    worst = serve_others_meanwhile(fx);
    for (int i = 0; i <= NSLOW; i++)
        pthread_join(l[i].tid, NULL);
    print_message("  slowest normal request during slow loris: %lld ms; "
                  "loris clients done after %lld ms\n",
                  worst, now_ms() - t0);
    assert_true(worst < 2000);
    for (int i = 0; i < NSLOW; i++) {
        if (l[i].out.status != 200)
            fail_msg("slow client %d: status %d (closed %d) after %lld ms", i,
                     l[i].out.status, l[i].out.closed, l[i].out.ms);
        raw_out_free(&l[i].out);
    }
    /* The stalled one: dropped by the server, within the idle timeout
       (plus slack), without an answer or with a 408/400. */
    if (!l[NSLOW].out.closed)
        fail_msg("the stalled client was not dropped (after %lld ms)",
                 l[NSLOW].out.ms);
    assert_true(l[NSLOW].out.ms < (CONN_TIMEOUT_S + 4) * 1000);
    raw_out_free(&l[NSLOW].out);
    expect_healthy(fx, A, "slow loris");
}

/* ---- Clients that hang up ---- */

/* Writes all of s to a blocking socket; 0 or -1. */
static int write_all(int fd, const char *s, size_t len)
{
    for (size_t off = 0; off < len;) {
        ssize_t w = send(fd, s + off, len - off, MSG_NOSIGNAL);
        if (w < 0 && (errno == EINTR || errno == EAGAIN)) {
            sleep_ms(1);
            continue;
        }
        if (w <= 0)
            return -1;
        off += (size_t)w;
    }
    return 0;
}

/* Closes fd with a reset (SO_LINGER 0), the rudest hang-up. */
static void rst_close(int fd)
{
    struct linger lg = { 1, 0 };
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

/* A POST /v1/messages head for a body of len bytes. */
static int post_head(char *buf, size_t size, enum svc svc, size_t len)
{
    return snprintf(buf, size,
                    "POST /v1/messages HTTP/1.1\r\n" HOST JSONCT
                    "%sContent-Length: %zu\r\n\r\n",
                    svc == B ? AUTHB : "", len);
}

/* fd made blocking again (raw_connect gives it non-blocking). */
static void blocking(int fd)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
}

/* Closes fd, with a reset when rst. */
static void hang_up(int fd, int rst)
{
    if (rst)
        rst_close(fd);
    else
        close(fd);
}

/* 1. Mid-body, with Content-Length: closed, and closed with a reset. */
static void hang_up_mid_body(int port)
{
    char head[512];
    static const char body[] =
        "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\"],"
        "\"headers\":{\"Subject\":\"hostile: never complete\"},"
        "\"body\":\"this request is never finished\"}";
    for (int i = 0; i < 10; i++) {
        int fd = raw_connect(port, 0);
        assert_true(fd >= 0);
        int hl = post_head(head, sizeof head, A, sizeof body - 1);
        blocking(fd);
        assert_int_equal(write_all(fd, head, (size_t)hl), 0);
        assert_int_equal(write_all(fd, body, 40 + (size_t)i), 0);
        sleep_ms(20);
        hang_up(fd, i % 2);
    }
}

/* 2. Mid-chunk. */
static void hang_up_mid_chunk(int port)
{
    for (int i = 0; i < 4; i++) {
        static const char chunked[] = POSTM
            "Transfer-Encoding: chunked\r\n\r\n40\r\n{\"from\":\"s";
        int fd = raw_connect(port, 0);
        assert_true(fd >= 0);
        blocking(fd);
        assert_int_equal(write_all(fd, chunked, sizeof chunked - 1), 0);
        sleep_ms(20);
        hang_up(fd, i % 2);
    }
}

/* 3. The whole request, then gone before the answer, while the job is
   out (the relay takes a second over RCPT for slow@): each message is
   still delivered, once. */
static void hang_up_before_the_answer(struct fx *fx)
{
    char head[512];
    for (int i = 0; i < 4; i++) {
        char msg[256];
        int ml = snprintf(msg, sizeof msg,
                          "{\"from\":\"sender@example.com\",\"to\":"
                          "[\"slow@example.net\"],\"headers\":{\"Subject\":"
                          "\"hostile: hung up %d\"}}",
                          i);
        enum svc svc = i < 2 ? A : B;
        int hl = post_head(head, sizeof head, svc, (size_t)ml);
        int fd = raw_connect(mpserve_port(fx->svc[svc]), 0);
        assert_true(fd >= 0);
        blocking(fd);
        assert_int_equal(write_all(fd, head, (size_t)hl), 0);
        assert_int_equal(write_all(fd, msg, (size_t)ml), 0);
        sleep_ms(300);
        hang_up(fd, i % 2);
        fx->requested++;
    }
}

/* 4. A batch, gone before the answer. */
static void hang_up_a_batch(struct fx *fx, int port)
{
    char head[512];
    static const char batch[] =
        "{\"messages\":[{\"from\":\"sender@example.com\",\"to\":"
        "[\"slow@example.net\"],\"headers\":{\"Subject\":\"hostile: "
        "batch hung up 1\"}},{\"from\":\"sender@example.com\",\"to\":"
        "[\"slow@example.net\"],\"headers\":{\"Subject\":\"hostile: "
        "batch hung up 2\"}}]}";
    int hl = snprintf(head, sizeof head,
                      "POST /v1/messages/batch HTTP/1.1\r\n" HOST JSONCT
                      "Content-Length: %zu\r\n\r\n",
                      sizeof batch - 1);
    int fd = raw_connect(port, 0);
    assert_true(fd >= 0);
    blocking(fd);
    assert_int_equal(write_all(fd, head, (size_t)hl), 0);
    assert_int_equal(write_all(fd, batch, sizeof batch - 1), 0);
    sleep_ms(200);
    rst_close(fd);
    fx->requested += 2;
}

/* 5. Mid-response: a small receive buffer, the OpenAPI document (tens of
   KiB) asked for, a few bytes read, then a reset. */
static void hang_up_mid_response(int port)
{
    for (int i = 0; i < 4; i++) {
        static const char get[] = "GET /openapi.json HTTP/1.1\r\n" HOST "\r\n";
        char few[16];
        int fd = raw_connect(port, 2048);
        assert_true(fd >= 0);
        blocking(fd);
        assert_int_equal(write_all(fd, get, sizeof get - 1), 0);
        sleep_ms(100);
        if (i % 2 == 0)
            (void)!recv(fd, few, sizeof few, 0);
        rst_close(fd);
    }
}

static void test_clients_hanging_up_mid_body_or_response_lose_nothing(
    void **state)
{
    struct fx *fx = *state;
    int port = mpserve_port(fx->svc[A]);
    int before = peer_wait_messages(fx->peer, (size_t)fx->requested, 10000);
    assert_int_equal(before, fx->requested);
    hang_up_mid_body(port);
    hang_up_mid_chunk(port);
    hang_up_before_the_answer(fx);
    hang_up_a_batch(fx, port);
    hang_up_mid_response(port);
    expect_healthy(fx, A, "clients hanging up");
    expect_healthy(fx, B, "clients hanging up");
    /* Every hung-up message arrives, once; nothing from the unfinished
       bodies. */
    int got = peer_wait_messages(fx->peer, (size_t)fx->requested, 15000);
    assert_int_equal(got, fx->requested);
    sleep_ms(1500);
    assert_int_equal(peer_wait_messages(fx->peer, (size_t)fx->requested + 1, 0),
                     fx->requested);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_smuggling_sequences_in_bodies_deliver_once_dot_stuffed),
        cmocka_unit_test(
            test_slow_loris_clients_do_not_stop_others_being_served),
        cmocka_unit_test(
            test_clients_hanging_up_mid_body_or_response_lose_nothing),
        cmocka_unit_test(test_afterwards_alive_delivering_counted_and_exits_0),
    };
    return hostile_run(tests, sizeof tests / sizeof tests[0]);
}
