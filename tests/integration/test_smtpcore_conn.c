/*
 * test_smtpcore_conn.c - smtpcore against real peers, the connection:
 * smtp-sink batches with and without pipelining, aiosmtpd, host parsing
 * (an IPv6 literal served by the test), the trace and the connection
 * state, TCP_NODELAY.  The session is test_smtpcore_session.c's, the
 * message test_smtpcore.c's.  Every test starts its own peer(s); teardown
 * stops them.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "tests/support/smtp_fx.h"
#include "tests/support/smuggle.h"
#include "smtpcore/src/internal.h" /* the socket, for TCP_NODELAY */

/* ---- smtp-sink and aiosmtpd ------------------------------------------- */

#define BATCH 200

/* BATCH messages over one connection to p; returns the elapsed ms. */
static long long sink_batch(struct fx *f, struct peer *p, int want_pipelining)
{
    char *host = keep(f, peer_hostport(p)), id[64];
    struct smtp_conn *c = smtp_connect(host, 0, &f->opts, &f->res);
    assert_non_null(c);
    assert_int_equal(smtp_conn_hello(c, &f->res), SMTP_OK);
    assert_int_equal(smtp_conn_has_ext(c, "PIPELINING"), want_pipelining);
    const char *to[] = { "b@y", "c@y" };
    struct smtp_body b = { .text = "line one\n.dot line\nend\n", .len = 23 };
    long long t0 = now_ms();
    for (int i = 0; i < BATCH; i++) {
        snprintf(id, sizeof id, "<batch-%d@x>", i);
        const struct smtp_header h[] = { { "Date",
                                           "Mon, 1 Jan 2024 00:00:00 +0000" },
                                         { "Message-ID", id },
                                         { "From", "a@x" } };
        if (smtp_conn_send_mail(c, "a@x", to, 2, h, 3, &b, NULL, &f->res) !=
            SMTP_OK)
            fail_msg("message %d: %s", i, f->res.message);
    }
    long long dt = now_ms() - t0;
    smtp_conn_quit(c);
    assert_int_equal(peer_wait_messages(p, BATCH, 10000), BATCH);
    return dt;
}

static void test_sink_200_messages_with_and_without_pipelining(void **state)
{
    struct fx *f = *state;
    static const char *const nopipe[] = { "-p", NULL };
    f->p = peer_start_sink(NULL);
    f->p2 = peer_start_sink(nopipe);
    assert_non_null(f->p);
    assert_non_null(f->p2);
    long long t1 = sink_batch(f, f->p, 1), t2 = sink_batch(f, f->p2, 0);
    print_message("    200 msgs: %lld ms pipelined, %lld ms one by one\n", t1,
                  t2);
    assert_true(t1 < 4000 && t2 < 4000); /* no 40 ms stall per message */
    struct peer_msg *m2;
    size_t n2;
    assert_int_equal(msgs(f, f->p, BATCH), BATCH);
    assert_int_equal(peer_messages(f->p2, &m2, &n2), 0);
    assert_int_equal(n2, BATCH);
    for (size_t i = 0; i < BATCH; i++) {
        char want[200];
        snprintf(want, sizeof want,
                 "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
                 "Message-ID: <batch-%zu@x>\r\nFrom: a@x\r\n\r\n"
                 "line one\r\n.dot line\r\nend\r\n",
                 i);
        assert_string_equal((const char *)f->m[i].data, want);
        assert_int_equal(f->m[i].len, m2[i].len);
        assert_memory_equal(f->m[i].data, m2[i].data, m2[i].len);
        assert_int_equal(m2[i].nrcpt, 2);
    }
    peer_msgs_free(m2, n2);
}

static void test_aiosmtpd_receives_message_intact(void **state)
{
    struct fx *f = *state;
    f->p = peer_start_aiosmtpd(NULL);
    assert_non_null(f->p);
    f->host = peer_hostport(f->p);
    struct smtp_body b = { .text = smuggle_text, .len = strlen(smuggle_text) };
    const char *to[] = { "b@y", "c@z" };
    assert_int_equal(smtp_send_mail("a@x", to, 2, SUBJ, 1, &b, f->host,
                                    &f->opts, NULL, &f->res),
                     SMTP_OK);
    assert_int_equal(f->res.code, 250);
    assert_int_equal(msgs(f, f->p, 1), 1);
    assert_string_equal(f->m[0].mail_from, "a@x");
    assert_int_equal(f->m[0].nrcpt, 2);
    assert_string_equal(f->m[0].rcpt_to[1], "c@z");
    /* aiosmtpd removed the stuffing: each stuffed line lost one dot. */
    assert_string_equal(
        body_of(&f->m[0]),
        ".starts with a dot\r\na\r\n.\r\nMAIL FROM:<evil@x>\r\nb\r\n.\r\n"
        "RCPT TO:<victim@y>\r\nc\r\n.\r\nDATA\r\nd\r\n.\r\nQUIT\r\n.hidden\r\n"
        "..two\r\nend\r\n");
    char want[300];
    snprintf(want, sizeof want, "Message-ID: %s\r\n", f->res.message_id);
    assert_non_null(strstr((const char *)f->m[0].data, want));
}

/* ---- host parsing ------------------------------------------------------ */

/* A one-connection SMTP responder on [::1]: 250 to all, 221 to QUIT. */
struct v6 {
    int lfd, port;
    char got[512];
    pthread_t th;
};

static void *v6_serve(void *arg)
{
    struct v6 *s = arg;
    struct pollfd pfd = { .fd = s->lfd, .events = POLLIN };
    if (poll(&pfd, 1, 5000) != 1)
        return NULL;
    int fd = accept(s->lfd, NULL, NULL);
    if (fd < 0)
        return NULL;
    size_t n = 0, done = 0;
    int quit = 0;
    send(fd, "220 v6.test ESMTP\r\n", 19, MSG_NOSIGNAL);
    while (!quit &&
           poll(&(struct pollfd){ .fd = fd, .events = POLLIN }, 1, 5000) == 1) {
        ssize_t r = recv(fd, s->got + n, sizeof s->got - 1 - n, 0);
        if (r <= 0)
            break;
        n += (size_t)r;
        s->got[n] = '\0';
        for (char *eol;
             !quit && (eol = strstr(s->got + done, "\r\n")) != NULL;) {
            quit = strncmp(s->got + done, "QUIT", 4) == 0;
            send(fd, quit ? "221 bye\r\n" : "250 ok\r\n", quit ? 9 : 8,
                 MSG_NOSIGNAL);
            done = (size_t)(eol + 2 - s->got);
        }
    }
    close(fd);
    return NULL;
}

static void test_host_forms_and_bad_ports(void **state)
{
    struct fx *f = *state;
    fake(f, NULL);
    char host[64];
    snprintf(host, sizeof host, "localhost:%d", peer_port(f->p));
    assert_int_equal(smtp_verify("bob", host, &f->opts, &f->res), SMTP_OK);
    static const char *const bad[] = {
        "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:abc",
        "127.0.0.1:",  "127.0.0.1:25x",   "[::1",
        "[::1]x",      "[::1]:",          "[]:25"
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (smtp_verify("bob", bad[i], &f->opts, &f->res) != SMTP_ERR_LOCAL)
            fail_msg("host '%s' not refused: %s", bad[i],
                     smtp_kind_name(f->res.kind));
    assert_int_equal(peer_conn_count(f->p), 1);

    struct v6 s = { .lfd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0) };
    struct sockaddr_in6 sa = { .sin6_family = AF_INET6,
                               .sin6_addr = IN6ADDR_LOOPBACK_INIT };
    socklen_t sl = sizeof sa;
    if (s.lfd < 0 || bind(s.lfd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        listen(s.lfd, 1) < 0 ||
        getsockname(s.lfd, (struct sockaddr *)&sa, &sl) < 0) {
        if (s.lfd >= 0)
            close(s.lfd);
        skip(); /* no IPv6 loopback here */
    }
    s.port = ntohs(sa.sin6_port);
    assert_int_equal(pthread_create(&s.th, NULL, v6_serve, &s), 0);
    snprintf(host, sizeof host, "[::1]:%d", s.port);
    int rc = smtp_verify("bob", host, &f->opts, &f->res);
    pthread_join(s.th, NULL);
    close(s.lfd);
    assert_int_equal(rc, SMTP_OK);
    assert_string_equal(s.got, "EHLO [IPv6:::1]\r\nVRFY bob\r\nQUIT\r\n");
}

/* ---- state and trace --------------------------------------------------- */

/* What a trace hook saw: "> " sent, "< " received, "= " state, one a line. */
struct seen {
    char text[16384];
    size_t len;
};

static void collect(void *ctx, enum smtp_trace_kind kind, const char *line,
                    size_t len)
{
    struct seen *s = ctx;
    static const char tag[] = { '>', '<', '=' };
    int n = snprintf(s->text + s->len, sizeof s->text - s->len, "%c %.*s\n",
                     tag[kind], (int)len, line);
    assert_true(n > 0 && (size_t)n < sizeof s->text - s->len);
    assert_int_equal(strlen(line), len);
    s->len += (size_t)n;
}

/* AUTH mech as user "u", password "s3cret", in clear, traced into s. */
static void traced_auth(struct fx *f, const char *mech, struct seen *s)
{
    f->opts.auth_user = "u";
    f->opts.auth_pass = "s3cret";
    f->opts.auth_mech = mech;
    f->opts.auth_allow_plaintext = 1;
    f->opts.trace = collect;
    f->opts.trace_ctx = s;
}

/* The sent lines of a trace, each ended with CRLF, as a string owned by f. */
static const char *sent_of(struct fx *f, const struct seen *s)
{
    char *out = keep(f, calloc(1, sizeof s->text * 2));
    for (const char *p = s->text; *p != '\0'; p = strchr(p, '\n') + 1)
        if (p[0] == '>')
            strncat(strncat(out, p + 2, (size_t)(strchr(p, '\n') - p - 2)),
                    "\r\n", 3);
    return out;
}

/* wire with its message content (after "DATA\r\n", through the final dot)
   cut to ".\r\n" and from..to (credentials) replaced; owned by f. */
static const char *wire_as_traced(struct fx *f, const char *wire,
                                  const char *from, const char *to)
{
    char *out = keep(f, calloc(1, strlen(wire) + strlen(to) + 8));
    const char *data = strstr(wire, "DATA\r\n"),
               *dot = strstr(wire, "\r\n.\r\n");
    const char *cred = strstr(wire, from);
    assert_non_null(data);
    assert_non_null(dot);
    assert_non_null(cred);
    assert_true(cred < data);
    strncat(out, wire, (size_t)(cred - wire));
    strcat(out, to);
    strncat(out, cred + strlen(from), (size_t)(data + 6 - cred - strlen(from)));
    strcat(out, ".\r\n");
    strcat(out, dot + 5);
    return out;
}

/* The trace holds every command line that crossed the wire, in order, with
   the AUTH PLAIN credentials redacted and the message content left out; the
   replies; and the state changes from connect to close. */
static void test_trace_is_the_wire_without_credentials_or_content(void **state)
{
    struct fx *f = *state;
    struct seen s = { .len = 0 };
    static const struct smtp_body body = { .text = "private words\r\n",
                                           .len = 15 };
    fake(f, "{'extensions': ['PIPELINING', '8BITMIME', 'AUTH PLAIN'], "
            "'rules': [{'match': '^AUTH PLAIN ', 'reply': '235 2.7.0 ok'}]}");
    f->opts.helo_name = "client.test";
    traced_auth(f, "PLAIN", &s);
    assert_int_equal(send1(f, "a@x", "b@y", SUBJ, 1, &body), SMTP_OK);
    const char *w = wire(f, f->p, 1);
    assert_non_null(strstr(w, "AUTH PLAIN AHUAczNjcmV0\r\n"));
    assert_non_null(strstr(w, "private words"));
    assert_string_equal(sent_of(f, &s),
                        wire_as_traced(f, w, "AUTH PLAIN AHUAczNjcmV0",
                                       "AUTH PLAIN <redacted>"));
    assert_null(strstr(s.text, "AHUAczNjcmV0"));
    assert_null(strstr(s.text, "s3cret"));
    assert_null(strstr(s.text, "private words"));
    assert_non_null(strstr(s.text, "\n< 235 2.7.0 ok\n"));
    assert_non_null(strstr(s.text, "\n< 221 "));
    const char *order[] = { "= CLOSED -> GREETING\n",
                            "< 220 ",
                            "= GREETING -> CONNECTED\n",
                            "> EHLO client.test\n",
                            "= CONNECTED -> AUTH\n",
                            "> AUTH PLAIN <redacted>\n",
                            "= AUTH -> CONNECTED\n",
                            "= CONNECTED -> READY\n",
                            "> MAIL FROM:<a@x>",
                            "> DATA\n",
                            "< 354 ",
                            "= READY -> DATA\n",
                            "= DATA -> READY\n",
                            "> .\n",
                            "< 250 ",
                            "> QUIT\n",
                            "= READY -> CLOSED\n" };
    const char *at = s.text;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        const char *hit = strstr(at, order[i]);
        if (hit == NULL)
            fail_msg("\"%s\" missing after offset %zu in:\n%s", order[i],
                     (size_t)(at - s.text), s.text);
        at = hit + strlen(order[i]);
    }
}

/* AUTH LOGIN: the user name and the password, each a line of its own, are
   "<redacted>" in the trace; the server's prompts are there. */
static void test_trace_redacts_auth_login_responses(void **state)
{
    struct fx *f = *state;
    struct seen s = { .len = 0 };
    fake(f, "{'extensions': ['AUTH LOGIN'], 'rules': ["
            "{'match': '^AUTH LOGIN$', 'reply': '334 VXNlcm5hbWU6'},"
            "{'match': '^dQ==$', 'reply': '334 UGFzc3dvcmQ6'},"
            "{'match': '^czNjcmV0$', 'reply': '235 2.7.0 ok'}]}");
    traced_auth(f, "LOGIN", &s);
    assert_int_equal(send1(f, "a@x", "b@y", SUBJ, 1, &HELLO), SMTP_OK);
    assert_non_null(strstr(
        wire(f, f->p, 1), "AUTH LOGIN\r\ndQ==\r\nczNjcmV0\r\nMAIL FROM:<a@x>"));
    assert_non_null(strstr(s.text, "> AUTH LOGIN\n< 334 VXNlcm5hbWU6\n"
                                   "> <redacted>\n< 334 UGFzc3dvcmQ6\n"
                                   "> <redacted>\n< 235 2.7.0 ok\n"));
    assert_null(strstr(s.text, "czNjcmV0"));
    assert_null(strstr(s.text, "dQ=="));
}

/* smtp_conn_state follows the session: CONNECTED after the greeting,
   READY after hello and after a message, CLOSED once a 421 ended it. */
static void test_conn_state_follows_the_session(void **state)
{
    struct fx *f = *state;
    const char *to[] = { "b@y" };
    fake(f, "{'rules': [{'match': '^MAIL', 'after_n': 2, "
            "'reply': '421 4.3.2 bye', 'action': 'close'}]}");
    assert_int_equal(smtp_conn_state(NULL), SMTP_CONN_CLOSED);
    struct smtp_conn *c = smtp_connect(f->host, 0, &f->opts, &f->res);
    assert_non_null(c);
    assert_int_equal(smtp_conn_state(c), SMTP_CONN_CONNECTED);
    assert_int_equal(smtp_conn_hello(c, &f->res), SMTP_OK);
    assert_string_equal(smtp_conn_state_name(smtp_conn_state(c)), "READY");
    assert_int_equal(
        smtp_conn_send_mail(c, "a@x", to, 1, SUBJ, 1, &HELLO, NULL, &f->res),
        SMTP_OK);
    assert_int_equal(smtp_conn_state(c), SMTP_CONN_READY);
    assert_int_not_equal(
        smtp_conn_send_mail(c, "a@x", to, 1, SUBJ, 1, &HELLO, NULL, &f->res),
        SMTP_OK);
    assert_int_equal(f->res.code, 421);
    assert_int_equal(smtp_conn_state(c), SMTP_CONN_CLOSED);
    assert_int_equal(smtp_conn_is_open(c), 0);
    smtp_conn_free(c);
    const char *w = wire(f, f->p, 1);
    assert_int_equal(count(w, "MAIL FROM:<a@x>"), 2);
    assert_non_null(strstr(w, "\r\n.\r\nRSET\r\nMAIL FROM:<a@x> SIZE="));
    assert_true(ends_with(w, "\r\nRCPT TO:<b@y>\r\nDATA\r\n")); /* no QUIT */
}


/* Nagle would hold each pipelined burst for a delayed ACK (40 ms a message
   on a reused connection): the socket must have TCP_NODELAY. */
static void test_connection_sets_tcp_nodelay(void **state)
{
    struct fx *f = *state;
    struct smtp_result res;
    fake(f, NULL);
    smtp_result_init(&res);
    struct smtp_conn *c = smtp_connect(f->host, 0, &f->opts, &res);
    assert_non_null(c);
    int on = 0;
    socklen_t len = sizeof on;
    assert_int_equal(getsockopt(c->io.fd, IPPROTO_TCP, TCP_NODELAY, &on, &len),
                     0);
    assert_true(on != 0);
    smtp_conn_quit(c);
    smtp_result_clear(&res);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_connection_sets_tcp_nodelay),
        T(test_sink_200_messages_with_and_without_pipelining),
        T(test_aiosmtpd_receives_message_intact),
        T(test_host_forms_and_bad_ports),
        T(test_trace_is_the_wire_without_credentials_or_content),
        T(test_trace_redacts_auth_login_responses),
        T(test_conn_state_follows_the_session),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
