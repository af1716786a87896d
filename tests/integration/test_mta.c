/*
 * test_mta.c - mailpool against real mail servers (tests/support/mta.h): a
 * private Postfix, a private Exim 4 and nodemailer's smtp-server, each
 * started once per group on 127.0.0.1 and stopped by its own pid.  What
 * arrived is read back from the server's mailbox (Maildir for Postfix and
 * Exim, the capture files of smtp-server) and compared with what was given.
 *
 * For each server:
 *   - `mailpool send` and `mailpool serve` (over HTTP) deliver a message
 *     with every TLS mode the server offers (none, opportunistic, required,
 *     implicit) and with AUTH where it is offered: the stored copy has the
 *     body bytes and the header fields given;
 *   - a 500-message batch through the service whose bodies hold lines
 *     starting with ".", lines of exactly 998 octets (one of them starting
 *     with ".") and UTF-8 text: each Message-ID arrives exactly once with
 *     its body bytes intact;
 *   - Postfix with smtpd_recipient_limit = 2: a message to three recipients
 *     (452 to the third RCPT) reaches each of them once, through the service
 *     and the CLI;
 *   - Exim after twelve transactions whose recipients were all refused (its
 *     554 to the next RSET, smtp_accept_max_nonmail): the next message is
 *     still delivered, on a fresh connection;
 *   - Python's email package (policy default; Postfix, Exim) or mailparser
 *     (smtp-server) reads the subject and text back.
 * Recipients are unique per test (the servers take any local part at
 * example.test), so the tests of a group share one server.
 *
 * The servers' modes, reading their mailboxes and running the CLI and the
 * service against them: tests/support/mta_fx.h.
 *
 * Needs root (Postfix, and Exim's private mount namespace) and the packages
 * of `scripts/deps.sh test`, `tools` and `exim`.  MTA_KEEP=1 keeps the
 * servers' directories, PEER_VERBOSE=1 prints their logs, MPSERVE_KEEP=1
 * the service's; MTA_GROUPS=exim (or harness, postfix, smtp-server, a comma
 * list) runs only those groups.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "tests/support/mta_fx.h"

#define BATCH 500

static const struct mode postfix_modes[] = {
    { "plain", "none", 0 },      { "plain", "opportunistic", 0 },
    { "plain", "required", 0 },  { "encrypt", "required", 0 },
    { "submit", "required", 1 }, { "smtps", "implicit", 1 },
};
static const struct mode exim_modes[] = {
    { "plain", "none", 0 },      { "plain", "opportunistic", 0 },
    { "plain", "required", 0 },  { "plain", "required", 1 },
    { "submit", "required", 1 }, { "smtps", "implicit", 1 },
};
static const struct mode node_modes[] = {
    { "plain", "none", 0 },     { "plain", "opportunistic", 0 },
    { "plain", "required", 0 }, { "submit", "required", 1 },
    { "smtps", "implicit", 1 },
};

/* ---- Group fixtures ---- */

/* Group setup: one Postfix instance for the group. */
static int postfix_up(void **state)
{
    static struct server s = { "postfix",
                               NULL,
                               { NULL },
                               postfix_modes,
                               sizeof postfix_modes / sizeof postfix_modes[0],
                               1 };
    s.mta = mta_start_postfix();
    *state = &s;
    return s.mta ? 0 : -1;
}

/* Group setup: one Exim daemon for the group. */
static int exim_up(void **state)
{
    static struct server s = { "exim",
                               NULL,
                               { NULL },
                               exim_modes,
                               sizeof exim_modes / sizeof exim_modes[0],
                               1 };
    s.mta = mta_start_exim();
    *state = &s;
    return s.mta ? 0 : -1;
}

/* Group setup: three smtp-server processes (STARTTLS; STARTTLS + AUTH
 * required; implicit TLS + AUTH). */
static int node_up(void **state)
{
    static struct server s = { "smtp-server",
                               NULL,
                               { NULL },
                               node_modes,
                               sizeof node_modes / sizeof node_modes[0],
                               0 };
    static const char *const submit[] = { "--require-tls", NULL };
    static const char *const smtps[] = { "--secure", NULL };
    s.node[0] = mta_start_node(MTA_NODE_TLS, NULL);
    s.node[1] = mta_start_node(MTA_NODE_TLS | MTA_NODE_AUTH, submit);
    s.node[2] = mta_start_node(MTA_NODE_TLS | MTA_NODE_AUTH, smtps);
    *state = &s;
    return s.node[0] && s.node[1] && s.node[2] ? 0 : -1;
}

/* Stops every process of the group; fails if one had to be killed. */
static int server_down(void **state)
{
    struct server *s = *state;
    int rc = mta_stop(s->mta);
    for (size_t i = 0; i < 3; i++)
        rc |= mta_stop(s->node[i]);
    s->mta = NULL;
    memset(s->node, 0, sizeof s->node);
    return rc;
}

/* ---- Every TLS mode, through the CLI and through the service ---- */

/* The body every single-message test sends, with its stored form. */
#define ONE_BODY_LF \
    "Hello from mailpool.\n.a line with a leading dot\n" \
    "..and two\n.\nGr\xc3\xbc\xc3\x9f" \
    "e aus K\xc3\xb6ln\n"
#define ONE_BODY_CRLF \
    "Hello from mailpool.\r\n.a line with a leading dot\r\n" \
    "..and two\r\n.\r\nGr\xc3\xbc\xc3\x9f" \
    "e aus K\xc3\xb6ln\r\n"

/* One delivery of a test message to rcpt through the CLI in mode md. */
static void cli_deliver(struct server *s, const struct mode *md,
                        const char *rcpt, const char *subject)
{
    struct mta *m = mode_mta(s, md);
    char host[64], hsubj[256], htag[256];
    char *ca = mta_path(m, "cert.pem"), *pass = mta_path(m, "authpass");
    char *bodyf = write_file(m, "cli-body.txt", ONE_BODY_LF);
    const char *argv[40] = { "send", "--server",
                             mta_hostport(m, s->mta ? md->listener : NULL, host,
                                          sizeof host) };
    size_t n = 3;
    snprintf(hsubj, sizeof hsubj, "Subject: %s", subject);
    snprintf(htag, sizeof htag, "X-Mailpool-Test: %s", rcpt);
    add_mode_args(argv, &n, md, 0, ca, pass);
    const char *rest[] = { "--from",      SENDER, "--to",     rcpt,
                           "--header",    hsubj,  "--header", htag,
                           "--body-file", bodyf,  NULL };
    for (size_t i = 0; rest[i]; i++)
        argv[n++] = rest[i];
    argv[n] = NULL;
    int status;
    json_t *j = cli_send(argv, &status);
    if (status != 0 || strcmp(jstr(j, "status"), "sent") != 0)
        fail_msg("%s %s/%s%s: exit %d, %s", s->label, md->listener, md->tls,
                 md->auth ? "+auth" : "", status, json_dumps(j, 0));
    json_decref(j);
    free(ca);
    free(pass);
    free(bodyf);
}

/* Checks the one copy for rcpt: body bytes and the two fields given. */
static void expect_delivered(struct mta *m, const char *rcpt,
                             const char *subject)
{
    struct mta_msg *all;
    size_t n;
    const struct mta_msg *msg = one_copy(m, rcpt, &all, &n);
    expect_body(msg, ONE_BODY_CRLF);
    expect_field(msg, "Subject", subject);
    expect_field(msg, "X-Mailpool-Test", rcpt);
    mta_msgs_free(all, n);
}

static void test_cli_send_delivers_in_every_tls_mode(void **state)
{
    struct server *s = *state;
    for (size_t i = 0; i < s->nmodes; i++) {
        const struct mode *md = &s->modes[i];
        char rcpt[128], subject[128];
        snprintf(rcpt, sizeof rcpt, "cli-%zu-%s-%s@example.test", i,
                 md->listener, md->tls);
        snprintf(subject, sizeof subject, "CLI to %s %s %s%s", s->label,
                 md->listener, md->tls, md->auth ? " with AUTH" : "");
        cli_deliver(s, md, rcpt, subject);
        expect_delivered(mode_mta(s, md), rcpt, subject);
    }
}

static void test_service_delivers_in_every_tls_mode(void **state)
{
    struct server *s = *state;
    for (size_t i = 0; i < s->nmodes; i++) {
        const struct mode *md = &s->modes[i];
        struct mta *m = mode_mta(s, md);
        char rcpt[128], subject[128];
        char *ca = mta_path(m, "cert.pem"), *pass = mta_path(m, "authpass");
        snprintf(rcpt, sizeof rcpt, "http-%zu-%s-%s@example.test", i,
                 md->listener, md->tls);
        snprintf(subject, sizeof subject, "HTTP to %s %s %s%s", s->label,
                 md->listener, md->tls, md->auth ? " with AUTH" : "");
        struct mpserve *svc = svc_for(s, md, ca, pass, NULL);
        const char *to[] = { rcpt };
        char *req = message_json(to, 1,
                                 json_pack("[[s,s],[s,s]]", "Subject", subject,
                                           "X-Mailpool-Test", rcpt),
                                 ONE_BODY_CRLF);
        json_t *j = post_ok(svc, "/v1/messages", req);
        if (strcmp(jstr(j, "status"), "sent") != 0)
            fail_msg("%s %s/%s: %s", s->label, md->listener, md->tls,
                     json_dumps(j, 0));
        json_decref(j);
        free(req);
        svc_done(svc);
        expect_delivered(m, rcpt, subject);
        free(ca);
        free(pass);
    }
}

/* ---- A 500-message batch ---- */

/* The body of batch message i (CRLF lines): dot lines, a 998-octet line,
 * the same starting with a dot, UTF-8; caller frees. */
static char *batch_body(int i)
{
    char line998[999];
    memset(line998, 'y', 998);
    line998[998] = '\0';
    memcpy(line998, "L", 1);
    char num[8];
    snprintf(num, sizeof num, "%04d", i);
    memcpy(line998 + 1, num, 4);
    char dot998[999]; /* 999 octets once dot-stuffed */
    memcpy(dot998, line998, sizeof dot998);
    dot998[0] = '.';
    char *b = NULL;
    if (asprintf(&b,
                 "batch message %d\r\n.starts with a dot\r\n..two dots\r\n.\r\n"
                 "%s\r\n%s\r\n. a dot and a space\r\nGr\xc3\xbc\xc3\x9f"
                 "e aus "
                 "K\xc3\xb6ln \xe2\x9c\x93 %d\r\n...\r\nend\r\n",
                 i, line998, dot998, i) < 0)
        return NULL;
    return b;
}

/* The batch request: BATCH messages to rcpt, Message-IDs <b-N.label@...>. */
static char *batch_json(const char *label, const char *rcpt)
{
    json_t *msgs = json_array();
    for (int i = 0; i < BATCH; i++) {
        char mid[128], subj[64];
        snprintf(mid, sizeof mid, "<b-%d.%s@mailpool.test>", i, label);
        snprintf(subj, sizeof subj, "batch %d", i);
        char *body = batch_body(i);
        assert_non_null(body);
        json_array_append_new(
            msgs, json_pack("{s:s, s:[s], s:[[s,s],[s,s]], s:s}", "from",
                            SENDER, "to", rcpt, "headers", "Message-ID", mid,
                            "Subject", subj, "body", body));
        free(body);
    }
    json_t *req = json_pack("{s:o}", "messages", msgs);
    char *txt = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    assert_non_null(txt);
    return txt;
}

/* Asserts each batch Message-ID arrived once for rcpt with its body. */
static void expect_batch(struct mta *m, const char *label, const char *rcpt)
{
    size_t n, got;
    struct mta_msg *all = wait_copies(m, rcpt, BATCH, &n, &got);
    int seen[BATCH] = { 0 };
    for (size_t k = 0; k < n; k++) {
        if (strcasecmp(all[k].rcpt, rcpt) != 0)
            continue;
        char *mid = mta_msg_header(&all[k], "Message-ID");
        int i = -1;
        char tail[96];
        if (!mid || sscanf(mid, "<b-%d.%95[^>]>", &i, tail) != 2 || i < 0 ||
            i >= BATCH || strncmp(tail, label, strlen(label)) != 0)
            fail_msg("unexpected Message-ID %s in %s", mid ? mid : "(none)",
                     all[k].file);
        free(mid);
        seen[i]++;
        char *body = batch_body(i);
        expect_body(&all[k], body);
        free(body);
    }
    for (int i = 0; i < BATCH; i++)
        if (seen[i] != 1) {
            mta_show_logs(m);
            fail_msg("batch message %d arrived %d times (%zu copies in all)", i,
                     seen[i], got);
        }
    mta_msgs_free(all, n);
}

static void test_service_batch_of_500_each_delivered_once_intact(void **state)
{
    struct server *s = *state;
    const struct mode *md = &s->modes[1]; /* plain, opportunistic */
    struct mta *m = mode_mta(s, md);
    char *ca = mta_path(m, "cert.pem"), *pass = mta_path(m, "authpass");
    const char *rcpt = "batch@example.test";
    struct mpserve *svc = svc_for(s, md, ca, pass, NULL);
    char *req = batch_json(s->label, rcpt);
    json_t *j = post_ok(svc, "/v1/messages/batch", req);
    json_t *results = json_object_get(j, "results");
    assert_int_equal(json_array_size(results), BATCH);
    for (size_t i = 0; i < BATCH; i++) {
        json_t *r = json_array_get(results, i);
        if (strcmp(jstr(r, "status"), "sent") != 0)
            fail_msg("batch message %zu: %s", i, json_dumps(r, 0));
    }
    json_decref(j);
    free(req);
    svc_done(svc);
    expect_batch(m, s->label, rcpt);
    free(ca);
    free(pass);
}

/* ---- A parser reads what arrived ---- */

#define UTF8_SUBJECT \
    "Gr\xc3\xbc\xc3\x9f" \
    "e aus K\xc3\xb6ln"
#define UTF8_TEXT "Hallo J\xc3\xb6rg,\n.eine Zeile mit Punkt\nbis bald.\n"

/* Python's email package (policy default) on a stored file: subject and
 * text/plain content as JSON; caller decrefs. */
static json_t *python_reads(const char *file)
{
    char cmd[PATH_MAX + 512];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c 'import email, email.policy, json, sys\n"
             "m = email.message_from_binary_file(open(sys.argv[1], \"rb\"), "
             "policy=email.policy.default)\n"
             "print(json.dumps({\"subject\": str(m[\"subject\"]), "
             "\"text\": m.get_body((\"plain\",)).get_content()}))' '%s'",
             file);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char buf[4096];
    size_t len = fread(buf, 1, sizeof buf - 1, p);
    buf[len] = '\0';
    assert_int_equal(pclose(p), 0);
    json_t *j = json_loads(buf, 0, NULL);
    if (!j)
        fail_msg("python printed: %s", buf);
    return j;
}

static void test_parser_reads_subject_and_text_that_arrived(void **state)
{
    struct server *s = *state;
    const struct mode *md = &s->modes[1];
    struct mta *m = mode_mta(s, md);
    char *ca = mta_path(m, "cert.pem"), *pass = mta_path(m, "authpass");
    const char *rcpt = "parse@example.test";
    struct mpserve *svc = svc_for(s, md, ca, pass, NULL);
    const char *to[] = { rcpt };
    char *req = message_json(
        to, 1,
        json_pack("[[s,s],[s,s],[s,s],[s,s],[s,s]]", "From",
                  "Mailpool <" SENDER ">", "Subject",
                  "=?UTF-8?Q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln?=", "MIME-Version",
                  "1.0", "Content-Type", "text/plain; charset=utf-8",
                  "Content-Transfer-Encoding", "8bit"),
        "Hallo J\xc3\xb6rg,\r\n.eine Zeile mit Punkt\r\nbis bald.\r\n");
    json_t *j = post_ok(svc, "/v1/messages", req);
    assert_string_equal(jstr(j, "status"), "sent");
    json_decref(j);
    free(req);
    svc_done(svc);
    struct mta_msg *all;
    size_t n;
    const struct mta_msg *msg = one_copy(m, rcpt, &all, &n);
    json_t *p = s->python_reads ? python_reads(msg->file)
                                : json_loads(msg->parsed, 0, NULL);
    assert_non_null(p);
    assert_string_equal(jstr(p, "subject"), UTF8_SUBJECT);
    assert_string_equal(jstr(p, "text"), UTF8_TEXT);
    json_decref(p);
    mta_msgs_free(all, n);
    free(ca);
    free(pass);
}

/* ---- Postfix: smtpd_recipient_limit = 2 (452 to the third RCPT) ---- */

static const struct mode rcptlimit_mode = { "rcptlimit", "none", 0 };

/* Asserts each of to[0..n) got exactly one copy with the body given. */
static void expect_one_copy_each(struct mta *m, const char *const *to, size_t n,
                                 const char *body)
{
    for (size_t i = 0; i < n; i++) {
        struct mta_msg *all;
        size_t count;
        const struct mta_msg *msg = one_copy(m, to[i], &all, &count);
        expect_body(msg, body);
        mta_msgs_free(all, count);
    }
}

/* Asserts the result lists every recipient of to[0..n) as accepted, once. */
static void expect_all_accepted(json_t *j, const char *const *to, size_t n)
{
    json_t *acc = json_object_get(j, "accepted");
    if (strcmp(jstr(j, "status"), "sent") != 0 || json_array_size(acc) != n ||
        json_array_size(json_object_get(j, "rejected")) != 0)
        fail_msg("want sent to %zu recipients: %s", n, json_dumps(j, 0));
    for (size_t i = 0; i < n; i++) {
        size_t hits = 0;
        for (size_t k = 0; k < json_array_size(acc); k++)
            hits += strcmp(json_string_value(json_array_get(acc, k)), to[i]) ==
                    0;
        if (hits != 1)
            fail_msg("%s accepted %zu times: %s", to[i], hits,
                     json_dumps(j, 0));
    }
}

static void
test_postfix_recipient_limit_2_three_recipients_each_get_one_copy_over_http(
    void **state)
{
    struct server *s = *state;
    static const char *const to[] = { "limit-http-1@example.test",
                                      "limit-http-2@example.test",
                                      "limit-http-3@example.test" };
    struct mpserve *svc = svc_for(s, &rcptlimit_mode, NULL, NULL, NULL);
    char *req = message_json(
        to, 3, json_pack("[[s,s]]", "Subject", "three of them"), ONE_BODY_CRLF);
    json_t *j = post_ok(svc, "/v1/messages", req);
    expect_all_accepted(j, to, 3);
    json_decref(j);
    free(req);
    svc_done(svc);
    expect_one_copy_each(s->mta, to, 3, ONE_BODY_CRLF);
}

static void test_postfix_recipient_limit_2_three_recipients_each_get_one_copy_by_cli(
    void **state)
{
    struct server *s = *state;
    static const char *const to[] = { "limit-cli-1@example.test",
                                      "limit-cli-2@example.test",
                                      "limit-cli-3@example.test" };
    char host[64];
    char *bodyf = write_file(s->mta, "limit-body.txt", ONE_BODY_LF);
    const char *argv[] = { "send",
                           "--server",
                           mta_hostport(s->mta, "rcptlimit", host, sizeof host),
                           "--tls",
                           "none",
                           "--from",
                           SENDER,
                           "--to",
                           to[0],
                           "--to",
                           to[1],
                           "--to",
                           to[2],
                           "--header",
                           "Subject: three of them",
                           "--body-file",
                           bodyf,
                           NULL };
    int status;
    json_t *j = cli_send(argv, &status);
    if (status != 0)
        fail_msg("exit %d: %s", status, json_dumps(j, 0));
    expect_all_accepted(j, to, 3);
    json_decref(j);
    free(bodyf);
    expect_one_copy_each(s->mta, to, 3, ONE_BODY_CRLF);
}

/* ---- Exim: smtp_accept_max_nonmail (554 to an RSET) ---- */

/* Twelve transactions whose only recipient is refused leave Exim's count
 * of non-mail commands (EHLO, the RSETs) at its limit of 10: it answers the
 * next RSET on that connection with 554 and closes.  The service (one
 * connection, reused) must send the next, deliverable message on a fresh
 * connection, not report it failed. */
static void
test_exim_message_after_twelve_refused_transactions_is_delivered_over_http(
    void **state)
{
    struct server *s = *state;
    static const char *const one[] = { "--pool-connections", "1",
                                       "--pool-workers", "1", NULL };
    struct mpserve *svc = svc_for(s, &s->modes[0], NULL, NULL, one);
    for (int i = 0; i < 12; i++) {
        char rcpt[64];
        snprintf(rcpt, sizeof rcpt, "unknown-%d@example.test", i);
        const char *to[] = { rcpt };
        char *req = message_json(to, 1,
                                 json_pack("[[s,s]]", "Subject", "refused"),
                                 "never stored\r\n");
        json_t *j = post_ok(svc, "/v1/messages", req);
        if (strcmp(jstr(j, "status"), "rejected") != 0)
            fail_msg("refused message %d: %s", i, json_dumps(j, 0));
        json_decref(j);
        free(req);
    }
    const char *to[] = { "after-nonmail@example.test" };
    char *req = message_json(
        to, 1, json_pack("[[s,s]]", "Subject", "deliverable"), ONE_BODY_CRLF);
    json_t *j = post_ok(svc, "/v1/messages", req);
    expect_all_accepted(j, to, 1);
    json_decref(j);
    free(req);
    svc_done(svc);
    expect_one_copy_each(s->mta, to, 1, ONE_BODY_CRLF);
}

#define T(f) cmocka_unit_test(f)

/* MTA_GROUPS (e.g. "exim,postfix") runs only those groups; unset: all. */
static int wanted(const char *group)
{
    const char *only = getenv("MTA_GROUPS");
    return !only || !*only || strstr(only, group) != NULL;
}

/* ---- The harness ---- */

/* 1 if pid names a process that is not a zombie. */
static int process_runs(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    char *st = ts_slurp(path, NULL);
    const char *paren = st ? strrchr(st, ')') : NULL;
    int runs = paren && paren[1] == ' ' && paren[2] != 'Z';
    free(st);
    return runs;
}

static void test_each_server_stops_by_its_pid_and_leaves_no_process(void **state)
{
    (void)state;
    static const char *const secure[] = { "--secure", NULL };
    for (int i = 0; i < 3; i++) {
        struct mta *m = i == 0   ? mta_start_postfix()
                        : i == 1 ? mta_start_exim()
                                 : mta_start_node(MTA_NODE_TLS | MTA_NODE_AUTH,
                                                  secure);
        assert_non_null(m);
        pid_t server = mta_server_pid(m);
        int port = mta_port(m, NULL), ran = server > 0 && process_runs(server);
        char *dir = strdup(mta_dir(m));
        int stopped = mta_stop(m); /* 0: nothing had to be killed */
        assert_true(ran);
        assert_true(port > 0);
        assert_int_equal(stopped, 0);
        assert_false(process_runs(server));
        assert_int_equal(access(dir, F_OK), -1); /* the directory is gone */
        free(dir);
    }
}

#define COMMON_TESTS \
    T(test_cli_send_delivers_in_every_tls_mode), \
        T(test_service_delivers_in_every_tls_mode), \
        T(test_service_batch_of_500_each_delivered_once_intact), \
        T(test_parser_reads_subject_and_text_that_arrived)

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest postfix[] = {
        COMMON_TESTS,
        T(test_postfix_recipient_limit_2_three_recipients_each_get_one_copy_over_http),
        T(test_postfix_recipient_limit_2_three_recipients_each_get_one_copy_by_cli),
    };
    const struct CMUnitTest exim[] = {
        COMMON_TESTS,
        T(test_exim_message_after_twelve_refused_transactions_is_delivered_over_http),
    };
    const struct CMUnitTest node[] = { COMMON_TESTS };
    const struct CMUnitTest harness[] = {
        T(test_each_server_stops_by_its_pid_and_leaves_no_process),
    };
    int rc = 0;
    if (wanted("harness"))
        rc |= cmocka_run_group_tests_name("harness", harness, NULL, NULL);
    if (wanted("postfix"))
        rc |= _cmocka_run_group_tests("postfix", postfix,
                                      sizeof postfix / sizeof postfix[0],
                                      postfix_up, server_down);
    if (wanted("exim"))
        rc |= _cmocka_run_group_tests(
            "exim", exim, sizeof exim / sizeof exim[0], exim_up, server_down);
    if (wanted("smtp-server"))
        rc |= _cmocka_run_group_tests("smtp-server", node,
                                      sizeof node / sizeof node[0], node_up,
                                      server_down);
    return rc != 0;
}
