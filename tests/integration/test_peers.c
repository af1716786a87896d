/*
 * test_peers.c - the test harness itself: each peer starts, takes a session
 * typed by hand over a raw socket, and its capture shows exactly what crossed
 * the wire; a few fake_smtp.py rules (reject, per-connection greeting, drop,
 * hang, flood) and STARTTLS prove the script format does what it says.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <gnutls/gnutls.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/support/peer.h"

/* One plain session, every command alone: what we send, the code we expect. */
static const struct step {
    const char *send;
    int code;
} SESSION[] = {
    { NULL, 220 },
    { "EHLO client.test\r\n", 250 },
    { "MAIL FROM:<alice@example.org>\r\n", 250 },
    { "RCPT TO:<bob@example.net>\r\n", 250 },
    { "RCPT TO:<carol@example.net>\r\n", 250 },
    { "DATA\r\n", 354 },
    { "Subject: hi\r\n\r\n..leading dot\r\nbody\r\n.\r\n", 250 },
    { "QUIT\r\n", 221 },
};
#define BODY_STUFFED "Subject: hi\r\n\r\n..leading dot\r\nbody\r\n"
#define BODY_UNSTUFFED "Subject: hi\r\n\r\n.leading dot\r\nbody\r\n"

/* Run SESSION against p; fail the test on any unexpected reply. */
static void run_session(const struct peer *p)
{
    char reply[8192];
    int fd = peer_connect(p);
    assert_true(fd >= 0);
    for (size_t i = 0; i < sizeof SESSION / sizeof SESSION[0]; i++) {
        if (SESSION[i].send)
            assert_int_equal(peer_send(fd, SESSION[i].send), 0);
        int code = peer_read_reply(fd, reply, sizeof reply);
        if (code != SESSION[i].code)
            fail_msg("step %zu: expected %d, got %d: %s", i, SESSION[i].code,
                     code, reply);
    }
    close(fd);
}

/* Everything SESSION sends, concatenated. */
static char *session_bytes(void)
{
    size_t cap = 1024;
    char *s = calloc(1, cap);
    assert_non_null(s);
    for (size_t i = 0; i < sizeof SESSION / sizeof SESSION[0]; i++)
        if (SESSION[i].send)
            strncat(s, SESSION[i].send, cap - strlen(s) - 1);
    return s;
}

/* The one message SESSION delivers, with this body. */
static void assert_session_message(struct peer *p, const char *body, int conn)
{
    struct peer_msg *m;
    size_t n;
    assert_int_equal(peer_wait_messages(p, 1, 5000), 1);
    assert_int_equal(peer_messages(p, &m, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(m[0].conn, conn);
    assert_string_equal(m[0].mail_from, "alice@example.org");
    assert_int_equal(m[0].nrcpt, 2);
    assert_string_equal(m[0].rcpt_to[0], "bob@example.net");
    assert_string_equal(m[0].rcpt_to[1], "carol@example.net");
    assert_int_equal(m[0].len, strlen(body));
    assert_memory_equal(m[0].data, body, m[0].len);
    peer_msgs_free(m, n);
}

/* The exact bytes the peer received on connection 1 are SESSION's. */
static void assert_wire_is_session(struct peer *p)
{
    size_t len;
    char *want = session_bytes();
    char *got = peer_conn_bytes(p, 1, &len);
    assert_non_null(got);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(got, want, len);
    free(got);
    free(want);
}

static void test_fake_default_session_is_captured_byte_for_byte(void **state)
{
    struct peer *p = *state = peer_start_fake("{}");
    assert_non_null(p);
    char *hp = peer_hostport(p);
    assert_non_null(hp);
    assert_int_equal(strncmp(hp, "127.0.0.1:", 10), 0);
    free(hp);
    run_session(p);
    assert_session_message(p, BODY_STUFFED, 1);
    assert_wire_is_session(p);
    assert_int_equal(peer_conn_count(p), 1);
}

static void test_fake_rule_rejects_rcpt_with_550_in_a_pipelined_group(
    void **state)
{
    struct peer *p = *state = peer_start_fake(
        "{\"rules\": [{\"match\": \"^RCPT TO:<bad\","
        "              \"reply\": \"550 5.1.1 no such user\\nreally\"}]}");
    assert_non_null(p);
    char r[4096];
    int fd = peer_connect(p);
    assert_true(fd >= 0);
    assert_int_equal(peer_read_reply(fd, r, sizeof r), 220);
    assert_int_equal(peer_send(fd, "EHLO c\r\n"), 0);
    assert_int_equal(peer_read_reply(fd, r, sizeof r), 250);
    assert_non_null(strstr(r, "250-PIPELINING\r\n"));
    assert_non_null(strstr(r, "250 SIZE 10485760\r\n"));
    assert_int_equal(peer_send(fd, "MAIL FROM:<a@x>\r\nRCPT TO:<bad@x>\r\n"
                                   "RCPT TO:<good@x>\r\nDATA\r\n"),
                     0);
    assert_int_equal(peer_read_reply(fd, r, sizeof r), 250);
    assert_int_equal(peer_read_reply(fd, r, sizeof r), 550);
    assert_string_equal(r, "550-5.1.1 no such user\r\n550 really\r\n");
    assert_int_equal(peer_read_reply(fd, r, sizeof r), 250);
    assert_int_equal(peer_read_reply(fd, r, sizeof r), 354);
    assert_int_equal(peer_send(fd, "x\r\n.\r\nQUIT\r\n"), 0);
    assert_int_equal(peer_read_reply(fd, r, sizeof r), 250);
    assert_string_equal(r, "250 2.0.0 Ok: queued as 1\r\n");
    assert_int_equal(peer_read_reply(fd, r, sizeof r), 221);
    close(fd);

    struct peer_msg *m;
    size_t n;
    assert_int_equal(peer_messages(p, &m, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(m[0].nrcpt, 1);
    assert_string_equal(m[0].rcpt_to[0], "good@x");
    assert_string_equal((const char *)m[0].data, "x\r\n");
    assert_int_equal(m[0].tls, 0);
    peer_msgs_free(m, n);
}

static void test_fake_greeting_rule_applies_to_first_connection_only(
    void **state)
{
    struct peer *p = *state = peer_start_fake(
        "{\"rules\": [{\"match\": \"^GREETING$\", \"conn\": 1,"
        "              \"reply\": \"421 4.3.2 busy\", \"action\": \"close\"}]}");
    assert_non_null(p);
    char r[512];
    int fd = peer_connect(p);
    assert_true(fd >= 0);
    assert_int_equal(peer_read_reply(fd, r, sizeof r), 421);
    assert_int_equal(recv(fd, r, sizeof r, 0), 0); /* closed */
    close(fd);
    fd = peer_connect(p);
    assert_true(fd >= 0);
    assert_int_equal(peer_read_reply(fd, r, sizeof r), 220);
    close(fd);
}

static void test_fake_drop_hang_and_flood(void **state)
{
    struct peer *p = *state = peer_start_fake(
        "{\"rules\": ["
        " {\"match\": \"^GREETING$\", \"conn\": 1, \"action\": \"drop\"},"
        " {\"match\": \"^GREETING$\", \"conn\": 2, \"action\": \"hang\"},"
        " {\"match\": \"^EHLO\", \"flood\": \"250-x\", \"max_bytes\": 200000}]}");
    assert_non_null(p);
    char r[65536];

    int fd = peer_connect(p); /* 1: closed, no greeting */
    assert_true(fd >= 0);
    assert_int_equal(recv(fd, r, sizeof r, 0), 0);
    close(fd);

    fd = peer_connect(p); /* 2: silent but open */
    assert_true(fd >= 0);
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    assert_int_equal(poll(&pfd, 1, 300), 0);
    close(fd);

    fd = peer_connect(p); /* 3: endless 250-x */
    assert_true(fd >= 0);
    assert_int_equal(peer_read_reply(fd, r, sizeof r), 220);
    assert_int_equal(peer_send(fd, "EHLO c\r\n"), 0);
    assert_int_equal(recv(fd, r, 7, MSG_WAITALL), 7);
    assert_memory_equal(r, "250-x\r\n", 7);
    size_t total = 7;
    ssize_t got;
    while ((got = recv(fd, r, sizeof r, 0)) > 0)
        total += (size_t)got;
    assert_true(total >= 200000);
    close(fd);
    assert_int_equal(peer_conn_count(p), 3);
}

/* TLS client over fd trusting cafile; returns the session or fails. */
static gnutls_session_t tls_client(int fd, const char *cafile,
                                   gnutls_certificate_credentials_t *cred)
{
    gnutls_session_t s;
    assert_int_equal(gnutls_certificate_allocate_credentials(cred), 0);
    assert_true(gnutls_certificate_set_x509_trust_file(
                    *cred, cafile, GNUTLS_X509_FMT_PEM) > 0);
    assert_int_equal(gnutls_init(&s, GNUTLS_CLIENT), 0);
    assert_int_equal(gnutls_set_default_priority(s), 0);
    assert_int_equal(gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, *cred),
                     0);
    assert_int_equal(gnutls_server_name_set(s, GNUTLS_NAME_DNS, "localhost", 9),
                     0);
    gnutls_session_set_verify_cert(s, "localhost", 0);
    gnutls_transport_set_int(s, fd);
    int rc;
    do
        rc = gnutls_handshake(s);
    while (rc < 0 && !gnutls_error_is_fatal(rc));
    if (rc < 0)
        fail_msg("handshake: %s", gnutls_strerror(rc));
    return s;
}

static void test_fake_starttls_with_self_signed_cert(void **state)
{
    struct peer *p = *state = peer_start_fake("{\"tls\": {}}");
    assert_non_null(p);
    char *ca = peer_path(p, "cert.pem");
    struct stat st;
    assert_int_equal(stat(ca, &st), 0);

    char r[4096];
    int fd = peer_connect(p);
    assert_true(fd >= 0);
    assert_int_equal(peer_read_reply(fd, r, sizeof r), 220);
    assert_int_equal(peer_send(fd, "EHLO c\r\n"), 0);
    assert_int_equal(peer_read_reply(fd, r, sizeof r), 250);
    assert_non_null(strstr(r, "250 STARTTLS\r\n"));
    assert_int_equal(peer_send(fd, "STARTTLS\r\n"), 0);
    assert_int_equal(peer_read_reply(fd, r, sizeof r), 220);

    gnutls_certificate_credentials_t cred;
    gnutls_session_t s = tls_client(fd, ca, &cred);
    const char cmds[] =
        "EHLO again\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n"
        "secret\r\n.\r\nQUIT\r\n";
    assert_int_equal(gnutls_record_send(s, cmds, sizeof cmds - 1),
                     (ssize_t)(sizeof cmds - 1));
    size_t total = 0;
    ssize_t got;
    /* TLS 1.3 session tickets make a blocking recv return GNUTLS_E_AGAIN */
    while ((got = gnutls_record_recv(s, r + total, sizeof r - 1 - total)) > 0 ||
           (got < 0 && !gnutls_error_is_fatal((int)got)))
        total += got > 0 ? (size_t)got : 0;
    r[total] = '\0';
    assert_non_null(strstr(r, "221 2.0.0 Bye\r\n"));
    assert_null(strstr(r, "STARTTLS")); /* not offered twice */
    gnutls_deinit(s);
    gnutls_certificate_free_credentials(cred);
    close(fd);

    size_t len;
    char *wire = peer_conn_bytes(p, 1, &len);
    assert_non_null(wire);
    assert_string_equal(
        wire, "EHLO c\r\nSTARTTLS\r\n"
              "EHLO again\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n"
              "secret\r\n.\r\nQUIT\r\n");
    free(wire);
    struct peer_msg *m;
    size_t n;
    assert_int_equal(peer_messages(p, &m, &n), 0);
    assert_int_equal(n, 1);
    assert_int_equal(m[0].tls, 1);
    peer_msgs_free(m, n);
    free(ca);
}

static void test_aiosmtpd_session_is_captured(void **state)
{
    struct peer *p = *state = peer_start_aiosmtpd(NULL);
    assert_non_null(p);
    run_session(p);
    assert_session_message(p, BODY_UNSTUFFED, 1);
    assert_wire_is_session(p);
}

static void test_aiosmtpd_auth_plain_is_required_and_recorded(void **state)
{
    static const char *const args[] = { "--auth-user",           "u",
                                        "--auth-pass",           "p",
                                        "--no-auth-require-tls", NULL };
    struct peer *p = *state = peer_start_aiosmtpd(args);
    assert_non_null(p);
    char r[4096];
    int fd = peer_connect(p);
    assert_true(fd >= 0);
    assert_int_equal(peer_read_reply(fd, r, sizeof r), 220);
    assert_int_equal(peer_send(fd, "EHLO c\r\n"), 0);
    assert_int_equal(peer_read_reply(fd, r, sizeof r), 250);
    assert_non_null(strstr(r, "AUTH LOGIN PLAIN"));
    assert_int_equal(peer_send(fd, "MAIL FROM:<a@x>\r\n"), 0);
    assert_int_equal(peer_read_reply(fd, r, sizeof r), 530);
    assert_int_equal(peer_send(fd, "AUTH PLAIN AHUAeA==\r\n"), 0); /* \0u\0x */
    assert_int_equal(peer_read_reply(fd, r, sizeof r), 535);
    assert_int_equal(peer_send(fd, "AUTH PLAIN AHUAcA==\r\n"), 0); /* \0u\0p */
    assert_int_equal(peer_read_reply(fd, r, sizeof r), 235);
    assert_int_equal(
        peer_send(fd,
                  "MAIL FROM:<a@x> BODY=8BITMIME\r\nRCPT TO:<b@x>\r\nDATA\r\n"),
        0);
    assert_int_equal(peer_read_reply(fd, r, sizeof r), 250);
    assert_int_equal(peer_read_reply(fd, r, sizeof r), 250);
    assert_int_equal(peer_read_reply(fd, r, sizeof r), 354);
    assert_int_equal(peer_send(fd, "hello\r\n.\r\nQUIT\r\n"), 0);
    assert_int_equal(peer_read_reply(fd, r, sizeof r), 250);
    assert_int_equal(peer_read_reply(fd, r, sizeof r), 221);
    close(fd);

    struct peer_msg *m;
    size_t n;
    assert_int_equal(peer_wait_messages(p, 1, 5000), 1);
    assert_int_equal(peer_messages(p, &m, &n), 0);
    assert_int_equal(m[0].auth, 1);
    assert_int_equal(m[0].tls, 0);
    assert_string_equal(m[0].mail_params, "BODY=8BITMIME");
    assert_string_equal((const char *)m[0].data, "hello\r\n");
    peer_msgs_free(m, n);
}

static void test_aiosmtpd_tls_offers_starttls(void **state)
{
    static const char *const args[] = { "--tls", "--smtputf8", NULL };
    struct peer *p = *state = peer_start_aiosmtpd(args);
    assert_non_null(p);
    char r[4096];
    int fd = peer_connect(p);
    assert_true(fd >= 0);
    assert_int_equal(peer_read_reply(fd, r, sizeof r), 220);
    assert_int_equal(peer_send(fd, "EHLO c\r\n"), 0);
    assert_int_equal(peer_read_reply(fd, r, sizeof r), 250);
    assert_non_null(strstr(r, "250-STARTTLS\r\n"));
    assert_non_null(strstr(r, "250-SMTPUTF8\r\n"));
    assert_null(strstr(r, "AUTH"));
    close(fd);
}

static void test_sink_dump_gives_the_message(void **state)
{
    struct peer *p = *state = peer_start_sink(NULL);
    assert_non_null(p);
    run_session(p);
    assert_session_message(p, BODY_UNSTUFFED, 0);
    assert_null(peer_conn_bytes(p, 1, NULL));
    assert_int_equal(peer_conn_count(p), -1);
}

static void test_sink_fault_flag_soft_rejects_rcpt(void **state)
{
    static const char *const args[] = { "-r", "RCPT", NULL };
    struct peer *p = *state = peer_start_sink(args);
    assert_non_null(p);
    char r[4096];
    int fd = peer_connect(p);
    assert_true(fd >= 0);
    assert_int_equal(peer_read_reply(fd, r, sizeof r), 220);
    assert_int_equal(peer_send(fd, "EHLO c\r\n"), 0);
    assert_int_equal(peer_read_reply(fd, r, sizeof r), 250);
    assert_null(strstr(r, "PIPELINING")); /* -r turns it off */
    assert_int_equal(peer_send(fd, "MAIL FROM:<a@x>\r\n"), 0);
    assert_int_equal(peer_read_reply(fd, r, sizeof r), 250);
    assert_int_equal(peer_send(fd, "RCPT TO:<b@x>\r\n"), 0);
    assert_int_equal(peer_read_reply(fd, r, sizeof r), 450);
    assert_int_equal(peer_send(fd, "QUIT\r\n"), 0);
    assert_int_equal(peer_read_reply(fd, r, sizeof r), 221);
    close(fd);
    struct peer_msg *m;
    size_t n;
    assert_int_equal(peer_messages(p, &m, &n), 0);
    assert_int_equal(n, 0);
    peer_msgs_free(m, n);
}

/* Teardown: stop the peer the test left in *state, even after a failure. */
static int stop_peer(void **state)
{
    peer_stop(*state);
    *state = NULL;
    return 0;
}

#define T(f) cmocka_unit_test_teardown(f, stop_peer)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_fake_default_session_is_captured_byte_for_byte),
        T(test_fake_rule_rejects_rcpt_with_550_in_a_pipelined_group),
        T(test_fake_greeting_rule_applies_to_first_connection_only),
        T(test_fake_drop_hang_and_flood),
        T(test_fake_starttls_with_self_signed_cert),
        T(test_aiosmtpd_session_is_captured),
        T(test_aiosmtpd_auth_plain_is_required_and_recorded),
        T(test_aiosmtpd_tls_offers_starttls),
        T(test_sink_dump_gives_the_message),
        T(test_sink_fault_flag_soft_rejects_rcpt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
