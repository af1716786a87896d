/*
 * test_faults.c - the fault table: one relay fault per case, through the
 * whole service (HTTP in, SMTP out), each case accounted for message by
 * message.
 *
 * Every case starts a relay (Postfix smtp-sink with its own fault flags, or
 * tests/fakes/fake_smtp.py with a rule script) and `mailpool serve` in front
 * of it, posts one batch of messages to /v1/messages/batch, and checks:
 *
 *   - the answer is a 200 with one result per message, and
 *     requested = delivered (sent, partial) + failed (failed, rejected)
 *               + unknown;
 *   - the counts of each status, the attempts and the error kind the case
 *     expects, and that status and code agree (sent below 400, any other
 *     status 400 or more);
 *   - what the relay holds, message by message (each message carries its own
 *     Message-ID): a delivered message is there exactly once, a failed one
 *     is not there, an unknown one at most once.  smtp-sink writes its dump
 *     before it answers the final dot, so for the sink's faults at the dot
 *     (-q . -Q . -r . -f .) the dump holds every copy the relay *received*,
 *     refused or not; there the case says how many copies the relay must
 *     have received in all (one per attempt that reached the dot), which
 *     proves nothing was resent beyond what the relay refused;
 *   - the service still answers /healthz and exits 0 on SIGTERM (teardown).
 *
 * Then the relay down entirely and back on the same port: the service
 * recovers without a restart.
 *
 * docs/HARDENING.md lists the cases and what each proves.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/http.h"
#include "tests/support/mpserve.h"
#include "tests/support/peer.h"
#include "tests/support/tsupport.h"

#define STOP_MS 15000 /* bound on a SIGTERM stop */
#define MAXARGS 16
#define MAXMSG 16

/* ---- The table ---- */

enum st { ST_SENT, ST_PARTIAL, ST_REJECTED, ST_FAILED, ST_UNKNOWN, NST };
static const char *const ST_NAME[NST] = { "sent", "partial", "rejected",
                                          "failed", "unknown" };

/* How to read the relay's copies. */
enum view {
    ACCEPTED, /* the relay holds only what it acknowledged with 2xx */
    RECEIVED  /* smtp-sink dot faults: every copy that reached the dot */
};

struct fcase {
    const char *name;
    const char *sink[MAXARGS]; /* smtp-sink fault flags; sink[0] NULL: fake */
    const char *fake;          /* the fake's script when not the sink */
    const char *svc[MAXARGS];  /* extra `mailpool serve` flags */
    int n;                     /* messages in the batch */
    const char *to[4];         /* recipients of each (default: one) */
    size_t body_kib;           /* body size; 0: one short line */
    int want[NST];             /* how many of each status */
    int attempts;              /* attempts of every message; 0: unchecked */
    const char *kind;          /* kind of every non-delivered; NULL: any */
    enum view view;
    int copies;          /* RECEIVED: copies at the relay in all */
    int no_mail_on_wire; /* fake: no MAIL FROM ever reached it */
    int dot_unseen;      /* fake: its cut_data saw no final dot */
};

/* Fast retries, short timeouts, one worker on one connection (so rules on
   connection k are deterministic), unless a case adds its own flags (later
   flags win). */
static const char *const BASE_SVC[] = { "--pool-workers",
                                        "1",
                                        "--pool-connections",
                                        "1",
                                        "--pool-retries",
                                        "2",
                                        "--pool-retry-backoff-ms",
                                        "10",
                                        "--relay-connect-timeout",
                                        "2",
                                        "--relay-command-timeout",
                                        "2",
                                        "--relay-data-timeout",
                                        "2",
                                        NULL };

#define SINK(...) .sink = { __VA_ARGS__, NULL }
#define SVC(...) .svc = { __VA_ARGS__, NULL }
#define WANT(s, p, r, f, u) .want = { s, p, r, f, u }

static const struct fcase CASES[] = {
    /* ---- smtp-sink's own fault flags ---- */
    { "sink -q . : dropped after the final dot, no reply", SINK("-q", "."),
      .n = 3, WANT(0, 0, 0, 0, 3), .attempts = 1, .kind = "connection",
      .view = RECEIVED, .copies = 3 },
    { "sink -Q . : 421 in reply to the final dot", SINK("-Q", "."), .n = 2,
      WANT(0, 0, 0, 2, 0), .attempts = 3, .kind = "reply", .view = RECEIVED,
      .copies = 6 },
    { "sink -r . : 4xx in reply to the final dot", SINK("-r", "."), .n = 2,
      WANT(0, 0, 0, 2, 0), .attempts = 3, .kind = "reply", .view = RECEIVED,
      .copies = 6 },
    { "sink -f . : 5xx in reply to the final dot", SINK("-f", "."), .n = 2,
      WANT(0, 0, 0, 2, 0), .attempts = 1, .kind = "reply", .view = RECEIVED,
      .copies = 2 },
    { "sink -f RCPT : 5xx for every recipient", SINK("-f", "RCPT"), .n = 2,
      WANT(0, 0, 2, 0, 0), .attempts = 1, .kind = "rejected" },
    { "sink -r RCPT : 4xx for every recipient", SINK("-r", "RCPT"), .n = 2,
      WANT(0, 0, 2, 0, 0), .attempts = 1, .kind = "rejected" },
    { "sink -Q CONNECT : 421 greeting", SINK("-Q", "CONNECT"), .n = 2,
      WANT(0, 0, 0, 2, 0), .attempts = 3, .kind = "reply" },
    { "sink -Q EHLO : 421 after EHLO", SINK("-Q", "EHLO"), .n = 2,
      WANT(0, 0, 0, 2, 0), .attempts = 3, .kind = "reply" },
    { "sink -q MAIL : dropped at MAIL", SINK("-q", "MAIL"), .n = 2,
      WANT(0, 0, 0, 2, 0), .attempts = 3, .kind = "connection" },
    { "sink -Q MAIL : 421 at MAIL", SINK("-Q", "MAIL"), .n = 2,
      WANT(0, 0, 0, 2, 0), .attempts = 3, .kind = "reply" },
    { "sink -Q RCPT : 421 at RCPT", SINK("-Q", "RCPT"), .n = 2,
      WANT(0, 0, 0, 2, 0), .attempts = 3 },
    { "sink -q DATA : dropped at DATA, before any message byte",
      SINK("-q", "DATA"), .n = 2, WANT(0, 0, 0, 2, 0), .attempts = 3,
      .kind = "connection" },
    { "sink -Q DATA : 421 at DATA", SINK("-Q", "DATA"), .n = 2,
      WANT(0, 0, 0, 2, 0), .attempts = 3, .kind = "reply" },
    { "sink -A 0 : 550 and hang-up in the middle of DATA", SINK("-A", "0"),
      .n = 2, WANT(0, 0, 0, 2, 0), .attempts = 1, .kind = "reply" },
    { "sink -W MAIL:3 : tarpit past the command timeout", SINK("-W", "MAIL:3"),
      SVC("--relay-command-timeout", "1", "--pool-retries", "1"), .n = 1,
      WANT(0, 0, 0, 1, 0), .attempts = 2, .kind = "timeout" },
    { "sink -W .:3 : tarpit past the data timeout", SINK("-W", ".:3"),
      SVC("--relay-data-timeout", "1"), .n = 1, WANT(0, 0, 0, 0, 1),
      .attempts = 1, .kind = "timeout", .view = RECEIVED, .copies = 1 },

    /* ---- the fake relay for the rest ---- */
    { "fake: reset (RST) during DATA before the final dot",
      .fake = "{\"rules\":[{\"match\":\"^DATA$\",\"conn\":1,"
              "\"action\":\"reset_in_data\",\"in_data_bytes\":65536}]}",
      .n = 1, .body_kib = 8192, WANT(1, 0, 0, 0, 0), .attempts = 2,
      .dot_unseen = 1 },
    { "fake: closed (FIN) during DATA before the final dot",
      .fake = "{\"rules\":[{\"match\":\"^DATA$\",\"conn\":1,"
              "\"action\":\"drop_in_data\",\"in_data_bytes\":65536}]}",
      .n = 1, .body_kib = 8192, WANT(1, 0, 0, 0, 0), .attempts = 2,
      .dot_unseen = 1 },
    { "fake: reset right after the final dot",
      .fake = "{\"rules\":[{\"match\":\"^DOT$\",\"conn\":1,"
              "\"action\":\"reset\"}]}",
      .n = 2, WANT(1, 0, 0, 0, 1), .kind = "connection" },
    { "fake: 4xx and 5xx for some recipients",
      .fake = "{\"rules\":["
              "{\"match\":\"^RCPT TO:<soft\",\"reply\":\"450 4.2.1 busy\"},"
              "{\"match\":\"^RCPT TO:<hard\",\"reply\":\"550 5.1.1 unknown\"}]}",
      .n = 2,
      .to = { "ok@example.org", "soft@example.org", "hard@example.org" },
      WANT(0, 2, 0, 0, 0), .attempts = 1 },
    { "fake: relay that never greets",
      .fake = "{\"rules\":[{\"match\":\"^GREETING$\",\"action\":\"hang\"}]}",
      SVC("--relay-command-timeout", "1", "--pool-retries", "1"), .n = 1,
      WANT(0, 0, 0, 1, 0), .attempts = 2, .kind = "timeout",
      .no_mail_on_wire = 1 },
    { "fake: tarpit at RCPT past the command timeout",
      .fake = "{\"rules\":[{\"match\":\"^RCPT\",\"action\":\"delay:3\"}]}",
      SVC("--relay-command-timeout", "1", "--pool-retries", "1"), .n = 1,
      WANT(0, 0, 0, 1, 0), .attempts = 2, .kind = "timeout" },
    { "fake: a 100 KiB reply line to MAIL",
      .fake = "{\"rules\":[{\"match\":\"^MAIL\",\"raw\":\"x\","
              "\"repeat\":102400,\"prefix\":\"250 \",\"suffix\":\"\\r\\n\"}]}",
      .n = 2, WANT(0, 0, 0, 2, 0), .attempts = 3, .kind = "protocol" },
    { "fake: a multiline EHLO reply that never ends",
      .fake = "{\"rules\":[{\"match\":\"^EHLO\",\"flood\":\"250-x\"}]}", .n = 1,
      WANT(0, 0, 0, 1, 0), .attempts = 3, .kind = "protocol",
      .no_mail_on_wire = 1 },
    { "fake: non-SMTP garbage for a greeting",
      .fake = "{\"rules\":[{\"match\":\"^GREETING$\","
              "\"raw\":\"HTTP/1.1 400 Bad Request\\r\\n\\r\\n\"}]}",
      .n = 1, WANT(0, 0, 0, 1, 0), .attempts = 3, .kind = "protocol",
      .no_mail_on_wire = 1 },
    { "fake: TLS required, the handshake fails",
      .fake = "{\"tls\":{},\"rules\":[{\"match\":\"^STARTTLS\","
              "\"action\":\"tls_fail\",\"fail_handshake\":\"garbage\"}]}",
      SVC("--relay-tls", "required"), .n = 1, WANT(0, 0, 0, 1, 0),
      .attempts = 3, .kind = "tls", .no_mail_on_wire = 1 },
    { "fake: mixed faults over two connections",
      .fake = "{\"rules\":["
              "{\"match\":\"^DOT$\",\"after_n\":4,\"times\":1,"
              "\"action\":\"drop\"},"
              "{\"match\":\"^MAIL\",\"conn\":2,\"times\":1,"
              "\"reply\":\"421 4.3.2 going down\",\"action\":\"close\"},"
              "{\"match\":\"^RCPT\",\"after_n\":6,\"times\":1,"
              "\"reply\":\"550 5.1.1 gone\"}]}",
      SVC("--pool-workers", "2", "--pool-connections", "2"), .n = 10,
      WANT(8, 0, 1, 0, 1) },
};
#define NCASES (sizeof CASES / sizeof CASES[0])

/* ---- Fixture ---- */

struct fx {
    const struct fcase *c; /* NULL for the tests outside the table */
    struct peer *peer;
    struct mpserve *svc;
};

static int teardown(void **state)
{
    struct fx *fx = *state;
    int rc = 0;
    if (fx->svc != NULL && mpserve_stop_clean(fx->svc, STOP_MS) < 0)
        rc = -1;
    mpserve_free(fx->svc);
    peer_stop(fx->peer);
    free(fx);
    return rc;
}

/* BASE_SVC, then extra (may be NULL), in argv form; n slots in out. */
static void svc_args(const char *const *extra, const char **out, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; BASE_SVC[i] != NULL && k + 1 < n; i++)
        out[k++] = BASE_SVC[i];
    for (size_t i = 0; extra != NULL && extra[i] != NULL && k + 1 < n; i++)
        out[k++] = extra[i];
    out[k] = NULL;
}

/* ---- Messages and the relay's copies ---- */

/* "<fault-CASE-I@mailpool.test>" */
static void msgid(char *buf, size_t size, int c, int i)
{
    snprintf(buf, size, "<fault-%d-%d@mailpool.test>", c, i);
}

/* One batch of n messages; message i carries Message-ID msgid(c, i). */
static char *batch_json(const struct fcase *fc, int c)
{
    json_t *msgs = json_array();
    char *body = NULL;

    if (fc->body_kib > 0) {
        /* 64-octet lines: far below 998, and a body large enough that the
           relay can cut the connection before the final dot is written. */
        size_t len = fc->body_kib * 1024;
        body = malloc(len + 1);
        assert_non_null(body);
        for (size_t i = 0; i < len; i++)
            body[i] = (i % 64 == 63) ? '\n' : (char)('a' + i % 26);
        body[len] = '\0';
    }
    for (int i = 0; i < fc->n; i++) {
        char id[64], subj[64];
        json_t *to = json_array();
        msgid(id, sizeof id, c, i);
        snprintf(subj, sizeof subj, "fault case %d message %d", c, i);
        if (fc->to[0] == NULL)
            json_array_append_new(to, json_string("rcpt@example.org"));
        for (size_t k = 0; k < 4 && fc->to[k] != NULL; k++)
            json_array_append_new(to, json_string(fc->to[k]));
        json_array_append_new(
            msgs,
            json_pack("{s:s, s:o, s:[[s,s],[s,s],[s,s]], s:s}", "from",
                      "sender@example.org", "to", to, "headers", "From",
                      "sender@example.org", "Subject", subj, "Message-ID", id,
                      "body", body != NULL ? body : "one short line"));
    }
    json_t *doc = json_pack("{s:o}", "messages", msgs);
    char *s = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    free(body);
    assert_non_null(s);
    return s;
}

/* How many copies of each message of case c the relay holds (n slots). */
static void relay_copies(struct peer *p, int c, int *copies, int n)
{
    struct peer_msg *m = NULL;
    size_t nm = 0;
    char prefix[48];

    memset(copies, 0, sizeof(int) * (size_t)n);
    assert_int_equal(peer_messages(p, &m, &nm), 0);
    snprintf(prefix, sizeof prefix, "<fault-%d-", c);
    for (size_t k = 0; k < nm; k++) {
        const char *at = m[k].data != NULL
                             ? strstr((const char *)m[k].data, prefix)
                             : NULL;
        if (at == NULL)
            fail_msg("the relay holds a message that is not case %d's", c);
        int i = atoi(at + strlen(prefix));
        assert_true(i >= 0 && i < n);
        copies[i]++;
    }
    peer_msgs_free(m, nm);
}

static enum st status_of(const char *s)
{
    for (int k = 0; k < NST; k++)
        if (s != NULL && strcmp(s, ST_NAME[k]) == 0)
            return (enum st)k;
    fail_msg("unexpected status %s", s != NULL ? s : "(none)");
    return NST;
}

/* 1 when any connection of the fake carried a MAIL command. */
static int fake_saw_mail(struct peer *p)
{
    int n = peer_conn_count(p), saw = 0;
    for (int i = 1; i <= n && !saw; i++) {
        size_t len = 0;
        char *b = peer_conn_bytes(p, i, &len);
        saw = b != NULL && strstr(b, "MAIL FROM:") != NULL;
        free(b);
    }
    return saw;
}

/* The fake's cut_data events: how many, and whether any saw the dot. */
static int fake_cuts(struct peer *p, int *dot_seen)
{
    char *path = peer_path(p, "capture/events.jsonl");
    char *ev = path != NULL ? ts_slurp(path, NULL) : NULL;
    int cuts = 0;
    *dot_seen = 0;
    for (char *line = ev != NULL ? strtok(ev, "\n") : NULL; line != NULL;
         line = strtok(NULL, "\n")) {
        if (strstr(line, "\"cut_data\"") == NULL)
            continue;
        cuts++;
        if (strstr(line, "\"final_dot_seen\": true") != NULL ||
            strstr(line, "\"final_dot_seen\":true") != NULL)
            *dot_seen = 1;
    }
    free(ev);
    free(path);
    return cuts;
}

static json_t *post_batch(const struct mpserve *svc, const char *json,
                          long want_status)
{
    static const char *const ct[] = { "Content-Type: application/json", NULL };
    char url[128];
    struct http_resp r;
    json_error_t e;

    snprintf(url, sizeof url, "%s/v1/messages/batch", mpserve_url(svc));
    if (http_request("POST", url, ct, json, 0, &r) < 0)
        fail_msg("POST %s: %s", url, r.err);
    if (r.status != want_status)
        fail_msg("POST batch: HTTP %ld (wanted %ld): %.800s", r.status,
                 want_status, r.body != NULL ? r.body : "");
    json_t *doc = json_loadb(r.body, r.len, 0, &e);
    http_resp_free(&r);
    if (doc == NULL)
        fail_msg("the answer is not JSON: %s", e.text);
    return doc;
}

static long get_status(const struct mpserve *svc, const char *path)
{
    char url[128];
    struct http_resp r;
    snprintf(url, sizeof url, "%s%s", mpserve_url(svc), path);
    if (http_request("GET", url, NULL, NULL, 0, &r) < 0)
        fail_msg("GET %s: %s", url, r.err);
    long st = r.status;
    http_resp_free(&r);
    return st;
}

/* ---- One case of the table ---- */

/* Reads each message's result: its status into st, attempts into
   attempts, counted in got; checks the attempts, the kind of a failure
   and that status and code agree. */
static void read_results(const struct fcase *fc, json_t *results, enum st *st,
                         long *attempts, int *got)
{
    for (int i = 0; i < fc->n; i++) {
        json_t *res = json_array_get(results, (size_t)i);
        const char *kind = json_string_value(json_object_get(res, "kind"));
        st[i] = status_of(json_string_value(json_object_get(res, "status")));
        attempts[i] = (long)json_integer_value(
            json_object_get(res, "attempts"));
        got[st[i]]++;
        if (fc->attempts > 0 && attempts[i] != fc->attempts)
            fail_msg("%s: message %d made %ld attempts, wanted %d", fc->name, i,
                     attempts[i], fc->attempts);
        if (fc->kind != NULL && st[i] != ST_SENT && st[i] != ST_PARTIAL &&
            (kind == NULL || strcmp(kind, fc->kind) != 0))
            fail_msg("%s: message %d failed as %s, wanted %s", fc->name, i,
                     kind != NULL ? kind : "(none)", fc->kind);
        /* status and code never disagree: sent below 400, else 400+ */
        long code = (long)json_integer_value(json_object_get(res, "code"));
        if (st[i] == ST_SENT ? !(code > 0 && code < 400) : code < 400)
            fail_msg("%s: message %d is %s with code %ld", fc->name, i,
                     ST_NAME[st[i]], code);
    }
}

/* Checks the relay's copies of case c's messages against their status
   (ACCEPTED) or their attempts (RECEIVED); the copies in all. */
static int check_copies(struct peer *peer, const struct fcase *fc, int c,
                        const enum st *st, const long *attempts, const int *got)
{
    int copies[MAXMSG];
    /* The relay may log a message just after its reply went out: wait for
       the copies it must hold, then count them message by message. */
    int expect = fc->view == RECEIVED ? fc->copies
                                      : got[ST_SENT] + got[ST_PARTIAL];
    peer_wait_messages(peer, (size_t)expect, 5000);
    relay_copies(peer, c, copies, fc->n);
    int received = 0;
    for (int i = 0; i < fc->n; i++) {
        received += copies[i];
        if (fc->view == ACCEPTED) {
            /* Delivered: exactly once.  Failed: never.  Unknown: once at
               most (the relay may or may not have kept it). */
            int ok = (st[i] == ST_SENT || st[i] == ST_PARTIAL) ? copies[i] == 1
                     : st[i] == ST_UNKNOWN                     ? copies[i] <= 1
                                                               : copies[i] == 0;
            if (!ok)
                fail_msg("%s: message %d is %s but the relay holds %d "
                         "copies",
                         fc->name, i, ST_NAME[st[i]], copies[i]);
        } else if (copies[i] > attempts[i]) {
            fail_msg("%s: message %d reached the relay %d times in %ld "
                     "attempts",
                     fc->name, i, copies[i], attempts[i]);
        }
    }
    return received;
}

/* requested = delivered + failed + unknown, and the case's split; the
   copies received and what the fake saw on the wire. */
static void check_split(struct peer *peer, const struct fcase *fc,
                        const int *got, int received)
{
    int total = 0;
    for (int k = 0; k < NST; k++) {
        total += got[k];
        if (got[k] != fc->want[k])
            fail_msg("%s: %d %s, wanted %d", fc->name, got[k], ST_NAME[k],
                     fc->want[k]);
    }
    assert_int_equal(total, fc->n);
    if (fc->view == RECEIVED && received != fc->copies)
        fail_msg("%s: the relay received %d copies, wanted %d", fc->name,
                 received, fc->copies);
    if (fc->no_mail_on_wire)
        assert_false(fake_saw_mail(peer));
    if (fc->dot_unseen) {
        int dot_seen = 0;
        assert_int_equal(fake_cuts(peer, &dot_seen), 1);
        assert_false(dot_seen);
    }
}

static void run_case(void **state)
{
    struct fx *fx = *state;
    const struct fcase *fc = fx->c;
    int c = (int)(fc - CASES);
    const char *args[2 * MAXARGS + 1];
    int got[NST] = { 0 };

    assert_true(fc->n > 0 && fc->n <= MAXMSG);
    fx->peer = fc->sink[0] != NULL ? peer_start_sink(fc->sink)
                                   : peer_start_fake(fc->fake);
    assert_non_null(fx->peer);
    svc_args(fc->svc, args, sizeof args / sizeof args[0]);
    fx->svc = mpserve_start(peer_port(fx->peer), args);
    assert_non_null(fx->svc);

    char *json = batch_json(fc, c);
    json_t *doc = post_batch(fx->svc, json, 200);
    free(json);
    json_t *results = json_object_get(doc, "results");
    assert_int_equal(json_array_size(results), (size_t)fc->n);

    enum st st[MAXMSG];
    long attempts[MAXMSG];
    read_results(fc, results, st, attempts, got);
    int received = check_copies(fx->peer, fc, c, st, attempts, got);
    json_decref(doc);

    /* requested = delivered + failed + unknown, and the case's split. */
    check_split(fx->peer, fc, got, received);
    printf("[ fault    ] %s: sent %d, partial %d, rejected %d, failed %d, "
           "unknown %d; relay copies %d\n",
           fc->name, got[ST_SENT], got[ST_PARTIAL], got[ST_REJECTED],
           got[ST_FAILED], got[ST_UNKNOWN], received);
    /* The service is still alive and well. */
    assert_int_equal(get_status(fx->svc, "/healthz"), 200);
}

/* ---- The relay down entirely, then back ---- */

static int count_status(json_t *doc, const char *status)
{
    json_t *res;
    size_t i;
    int n = 0;
    json_array_foreach(json_object_get(doc, "results"), i, res)
        n += strcmp(json_string_value(json_object_get(res, "status")),
                    status) == 0;
    return n;
}

static void test_relay_down_then_back_recovers_without_restart(void **state)
{
    struct fx *fx = *state;
    static const struct fcase two = { .name = "down-then-back", .n = 2 };
    const char *args[2 * MAXARGS + 1];
    int copies[MAXMSG], port;

    fx->peer = peer_start_sink(NULL);
    assert_non_null(fx->peer);
    port = peer_port(fx->peer);
    svc_args((const char *const[]){ "--pool-workers", "2", "--pool-connections",
                                    "2", NULL },
             args, sizeof args / sizeof args[0]);
    fx->svc = mpserve_start(port, args);
    assert_non_null(fx->svc);

    /* Up: both delivered, once. */
    char *json = batch_json(&two, 100);
    json_t *doc = post_batch(fx->svc, json, 200);
    free(json);
    assert_int_equal(count_status(doc, "sent"), 2);
    json_decref(doc);
    assert_int_equal(peer_wait_messages(fx->peer, 2, 3000), 2);
    relay_copies(fx->peer, 100, copies, 2);
    assert_int_equal(copies[0] + copies[1], 2);

    /* Down: the pooled connections die with it; each message fails after
       its attempts, nothing is lost silently, readiness says so. */
    peer_stop(fx->peer);
    fx->peer = NULL;
    json = batch_json(&two, 101);
    doc = post_batch(fx->svc, json, 200);
    free(json);
    assert_int_equal(count_status(doc, "failed"), 2);
    json_decref(doc);
    assert_int_equal(get_status(fx->svc, "/readyz"), 503);
    assert_int_equal(get_status(fx->svc, "/healthz"), 200);

    /* Back on the same port: the next batch goes through, no restart. */
    fx->peer = peer_start_sink_on(port, NULL);
    assert_non_null(fx->peer);
    json = batch_json(&two, 102);
    doc = post_batch(fx->svc, json, 200);
    free(json);
    assert_int_equal(count_status(doc, "sent"), 2);
    json_decref(doc);
    assert_int_equal(peer_wait_messages(fx->peer, 2, 3000), 2);
    relay_copies(fx->peer, 102, copies, 2);
    assert_int_equal(copies[0], 1);
    assert_int_equal(copies[1], 1);
    /* Nothing of the failed batch turned up later. */
    struct peer_msg *m = NULL;
    size_t nm = 0;
    assert_int_equal(peer_messages(fx->peer, &m, &nm), 0);
    assert_int_equal(nm, 2);
    peer_msgs_free(m, nm);
    long ready = 0;
    for (int i = 0; i < 50 && (ready = get_status(fx->svc, "/readyz")) != 200;
         i++)
        ts_sleep_ms(100);
    assert_int_equal(ready, 200);
}

/* ---- Readiness against a relay that never greets ---- */

/* Only the first /readyz probes on the HTTP thread; later ones answer at
   once with the last probe's verdict while the reaper thread probes. */
static void test_readyz_never_waits_on_a_silent_relay(void **state)
{
    struct fx *fx = *state;
    const char *args[2 * MAXARGS + 1];

    fx->peer = peer_start_fake("{\"rules\":[{\"match\":\"^GREETING$\","
                               "\"action\":\"hang\"}]}");
    assert_non_null(fx->peer);
    svc_args(NULL, args, sizeof args / sizeof args[0]);
    fx->svc = mpserve_start(peer_port(fx->peer), args);
    assert_non_null(fx->svc);
    long long t0 = ts_now_ms();
    assert_int_equal(get_status(fx->svc, "/readyz"), 503);
    long long first = ts_now_ms() - t0;
    /* The first probe waited out the greeting (2 s). */
    assert_true(first >= 1500);
    for (int i = 0; i < 3; i++) {
        ts_sleep_ms(1100); /* the answer is stale again */
        t0 = ts_now_ms();
        assert_int_equal(get_status(fx->svc, "/readyz"), 503);
        long long took = ts_now_ms() - t0;
        if (took > 1000)
            fail_msg("/readyz %d took %lld ms: it waited on the relay", i,
                     took);
    }
    /* The reaper did probe: the relay saw more than the first connection. */
    assert_true(peer_conn_count(fx->peer) >= 2);
}

/* ---- main: one cmocka test per row ---- */

static int setup_case(void **state)
{
    struct fx *fx = calloc(1, sizeof *fx);
    if (fx == NULL)
        return -1;
    uintptr_t row = (uintptr_t)*state; /* the prestate: row + 1, or 0 */
    fx->c = row > 0 ? &CASES[row - 1] : NULL;
    *state = fx;
    return 0;
}

int main(void)
{
    struct CMUnitTest tests[NCASES + 2];

    for (size_t i = 0; i < NCASES; i++)
        tests[i] = (struct CMUnitTest){ CASES[i].name, run_case, setup_case,
                                        teardown, (void *)(uintptr_t)(i + 1) };
    tests[NCASES] = (struct CMUnitTest){
        "relay down entirely, then back on the same port",
        test_relay_down_then_back_recovers_without_restart, setup_case,
        teardown, NULL
    };
    tests[NCASES + 1] = (struct CMUnitTest){
        "readyz never waits on a silent relay",
        test_readyz_never_waits_on_a_silent_relay, setup_case, teardown, NULL
    };
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    int rc = _cmocka_run_group_tests("test_faults", tests, NCASES + 2, NULL,
                                     NULL);
    curl_global_cleanup();
    return rc;
}
