/*
 * test_queue.c - the durable queue through `mailpool serve` over HTTP:
 * Prefer: respond-async (202 means on disk), the status document, cancel,
 * send_at, retries with backoff, Idempotency-Key (50 concurrent requests,
 * one message), SIGKILL while sending (unknown, never resent), a crash
 * matrix of 20 kills at random moments (every 202 reaches a final state,
 * none is lost, none reaches the relay twice), and a full disk (503,
 * nothing already queued lost).  Synchronous sends are in the message log
 * too (their answer's id, their one attempt with the relay's reply lines;
 * none with queue.log_sync = false).  The relay is the fake
 * (tests/fakes/fake_smtp.py), which records every message it took.
 *
 * One suite, two backends: this file is the SQLite binary (test_queue);
 * test_queue_pg.c defines QUEUE_TEST_PG and includes it, so the same tests
 * run against a PostgreSQL 15 that the binary starts for itself
 * (tests/peers/postgres-peer.sh: initdb into a temporary directory,
 * 127.0.0.1 on a free port, stopped by its pid at the end).  There each
 * queue file name stands for a database of its own, the lease is short,
 * and the tests of several replicas on one database run besides.
 */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <curl/curl.h>

#include "queue/queue.h"
#include "queue/queue_impl.h"
#include "tests/integration/smtp_fx.h"
#include "tests/support/http.h"
#include "tests/support/mpserve.h"
#include "tests/support/tsupport.h"

/* ---- helpers ---------------------------------------------------------- */

#ifdef QUEUE_TEST_PG
#define PG_LEASE "2" /* seconds: the reaper acts within 2 */

/* The PostgreSQL of this run, and the databases made for queue names. */
static struct {
    char dir[256];
    char url[300];
    char pwfile[300];
    int port;
    int ndb;
    char names[64][128]; /* queue name -> database "q<index>" */
} pg;

/* The peer script's path (MAILPOOL_ROOT, else the current directory). */
static const char *pg_script(char *buf, size_t len)
{
    const char *root = getenv("MAILPOOL_ROOT");
    snprintf(buf, len, "%s%stests/peers/postgres-peer.sh",
             root != NULL ? root : "", root != NULL ? "/" : "");
    return buf;
}

/* Runs the peer script with args; its standard output (caller frees). */
static char *pg_run(const char *args)
{
    char cmd[4096], script[512], *out = NULL;
    size_t len = 0;
    snprintf(cmd, sizeof cmd, "%s %s", pg_script(script, sizeof script), args);
    FILE *f = popen(cmd, "r");
    if (f == NULL)
        return NULL;
    FILE *m = open_memstream(&out, &len);
    int ch;
    while ((ch = fgetc(f)) != EOF)
        fputc(ch, m);
    fclose(m);
    if (pclose(f) != 0) {
        free(out);
        return NULL;
    }
    return out;
}

/* Starts this run's PostgreSQL: 0 or -1. */
static int pg_up(void)
{
    char *out = pg_run("start");
    int pid = 0;
    if (out == NULL ||
        sscanf(out, "%255s %d %d", pg.dir, &pg.port, &pid) != 3) {
        fprintf(stderr, "cannot start PostgreSQL: %s\n", out ? out : "");
        free(out);
        return -1;
    }
    free(out);
    snprintf(pg.pwfile, sizeof pg.pwfile, "%s/password", pg.dir);
    return 0;
}

/* Stops it by its pid and removes its directory. */
static void pg_down(void)
{
    char args[300];
    snprintf(args, sizeof args, "stop %s", pg.dir);
    free(pg_run(args));
}

/* Runs sql in database db; the rows as text (caller frees). */
static char *pg_sql(const char *db, const char *sql)
{
    char args[2048];
    snprintf(args, sizeof args, "sql %s %s \"%s\"", pg.dir, db, sql);
    char *out = pg_run(args);
    if (out == NULL)
        fail_msg("psql failed: %s", sql);
    return out;
}

/* The database standing for queue name qpath (NULL: a new one), created
   on first use. */
static const char *pg_db(const char *qpath)
{
    static _Thread_local char fresh[32];
    char args[400];
    for (int i = 0; qpath != NULL && i < pg.ndb; i++)
        if (strcmp(pg.names[i], qpath) == 0) {
            snprintf(fresh, sizeof fresh, "q%d", i);
            return fresh;
        }
    assert_true(pg.ndb < 64);
    snprintf(pg.names[pg.ndb], sizeof pg.names[0], "%s",
             qpath != NULL ? qpath : "");
    snprintf(fresh, sizeof fresh, "q%d", pg.ndb++);
    snprintf(args, sizeof args, "createdb %s %s", pg.dir, fresh);
    free(pg_run(args));
    return fresh;
}
#endif


static struct peer *relay(const char *script)
{
    char *s = ts_dq(script);
    struct peer *p = peer_start_fake(s);
    free(s);
    assert_non_null(p);
    return p;
}

/* Starts the service on queue file qpath (NULL: its own) with extra flags
   (NULL-ended, may be NULL). */
/* Appends the flags choosing the queue of name qpath (NULL: a new one)
   to argv at *n; url (of urllen bytes) holds the PostgreSQL URL. */
static void queue_flags(const char **argv, size_t *n, const char *qpath,
                        char *url, size_t urllen)
{
#ifdef QUEUE_TEST_PG
    snprintf(url, urllen,
             "host=127.0.0.1 port=%d user=postgres "
             "dbname=%s",
             pg.port, pg_db(qpath));
    argv[(*n)++] = "--queue-backend";
    argv[(*n)++] = "postgres";
    argv[(*n)++] = "--queue-url";
    argv[(*n)++] = url;
    argv[(*n)++] = "--queue-password-file";
    argv[(*n)++] = pg.pwfile;
    argv[(*n)++] = "--queue-lease";
    argv[(*n)++] = PG_LEASE;
#else
    (void)url;
    (void)urllen;
    if (qpath != NULL) {
        argv[(*n)++] = "--queue-path";
        argv[(*n)++] = qpath;
    }
#endif
}

/* Starts the service on queue file qpath (NULL: its own) with extra flags
   (NULL-ended, may be NULL). */
static struct mpserve *svc(struct peer *p, const char *qpath,
                           const char *const *more)
{
    const char *argv[48];
    char url[300];
    size_t n = 0;
    queue_flags(argv, &n, qpath, url, sizeof url);
    argv[n++] = "--queue-retry-base";
    argv[n++] = "0.2";
    argv[n++] = "--pool-retries";
    argv[n++] = "0";
    for (size_t i = 0; more != NULL && more[i] != NULL && n < 46; i++)
        argv[n++] = more[i];
    argv[n] = NULL;
    struct mpserve *s = mpserve_start(peer_port(p), argv);
    assert_non_null(s);
    return s;
}

/* Runs `mailpool serve` on queue qpath, expecting it not to start: its
   exit code (-1 when it was still running after 10 s); *log gets what it
   printed (caller frees). */
static int serve_fails(const char *qpath, char **log)
{
    char bin[512], url[300], logpath[] = "/tmp/mailpool-start-XXXXXX";
    const char *argv[24] = { bin,           "serve",        "--http-listen",
                             "127.0.0.1:0", "--relay-host", "127.0.0.1",
                             "--relay-tls", "none" };
    size_t n = 8;
    int fd = mkstemp(logpath), status = 0, code = -1;
    pid_t pid;
    assert_true(fd >= 0);
    close(fd);
    assert_non_null(mpserve_binary(bin, sizeof bin));
    queue_flags(argv, &n, qpath, url, sizeof url);
    argv[n] = NULL;
    char *const *av; /* exec's argv type, same pointers */
    const char **cav = argv;
    memcpy(&av, &cav, sizeof av);
    assert_int_equal(ts_spawn_logged(&pid, av, logpath), 0);
    for (long long end = now_ms() + 10000; now_ms() < end; sleep_ms(20))
        if (waitpid(pid, &status, WNOHANG) == pid) {
            code = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
            break;
        }
    if (code < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    *log = ts_slurp(logpath, NULL);
    unlink(logpath);
    return code;
}

/* One request; the parsed JSON body (NULL when none) and the status. */
static json_t *call(struct mpserve *s, const char *method, const char *path,
                    const char *const *hdrs, const char *body, long *status,
                    struct http_resp *keep)
{
    char url[256];
    struct http_resp r;
    json_error_t e;
    snprintf(url, sizeof url, "%s%s", mpserve_url(s), path);
    assert_int_equal(http_request(method, url, hdrs, body, 0, &r), 0);
    *status = r.status;
    json_t *j = r.body != NULL ? json_loads(r.body, 0, &e) : NULL;
    if (keep != NULL)
        *keep = r;
    else
        http_resp_free(&r);
    return j;
}

static const char *const ASYNC[] = { "Content-Type: application/json",
                                     "Prefer: respond-async", NULL };
static const char *const JSONH[] = { "Content-Type: application/json", NULL };

static const char *jstr(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s != NULL ? s : "";
}

/* POSTs one message asynchronously; its queue id (caller frees). */
static char *post_async(struct mpserve *s, const char *to, const char *extra)
{
    char body[512];
    long st;
    snprintf(body, sizeof body,
             "{\"from\":\"s@example.org\",\"to\":[\"%s\"],"
             "\"headers\":{\"Subject\":\"q\"},\"body\":\"hello\"%s}",
             to, extra != NULL ? extra : "");
    json_t *j = call(s, "POST", "/v1/messages", ASYNC, body, &st, NULL);
    if (st != 202)
        fail_msg("async POST answered %ld", st);
    char *id = strdup(jstr(j, "id"));
    json_decref(j);
    return id;
}

/* GET /v1/messages/id; the document (caller decrefs). */
static json_t *status_of(struct mpserve *s, const char *id, long *st)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/messages/%s", id);
    return call(s, "GET", path, NULL, NULL, st, NULL);
}

/* Waits (at most ms) until message id's status is final; the document. */
static json_t *wait_final(struct mpserve *s, const char *id, int ms)
{
    static const char *const fin[] = { "sent",   "partial", "rejected",
                                       "failed", "unknown", "cancelled" };
    for (long long end = now_ms() + ms;; sleep_ms(20)) {
        long st;
        json_t *j = status_of(s, id, &st);
        for (size_t i = 0; st == 200 && i < 6; i++)
            if (strcmp(jstr(j, "status"), fin[i]) == 0)
                return j;
        if (now_ms() > end) {
            char *d = j ? json_dumps(j, 0) : NULL;
            fail_msg("message %s not final in %d ms: %s", id, ms, d ? d : "?");
        }
        json_decref(j);
    }
}

/* Copies of the message whose Message-ID is mid that reached the relay,
   answered or not: its Message-ID field counted in every byte received. */
static size_t copies(struct peer *p, const char *mid)
{
    char field[300];
    size_t k = 0;
    snprintf(field, sizeof field, "Message-ID: %s\r\n", mid);
    for (int c = 1; c <= peer_conn_count(p); c++) {
        size_t len = 0;
        char *w = peer_conn_bytes(p, c, &len);
        if (w != NULL)
            k += count(w, field);
        free(w);
    }
    return k;
}

/* Messages the relay took. */
static size_t msgs_total(struct peer *p)
{
    struct peer_msg *m = NULL;
    size_t n = 0;
    assert_int_equal(peer_messages(p, &m, &n), 0);
    peer_msgs_free(m, n);
    return n;
}

/* MAIL commands the relay received, over every connection. */
static size_t count_mail_commands(struct peer *p)
{
    size_t k = 0;
    for (int c = 1; c <= peer_conn_count(p); c++) {
        size_t len = 0;
        char *w = peer_conn_bytes(p, c, &len);
        if (w != NULL)
            k += count(w, "MAIL FROM:");
        free(w);
    }
    return k;
}

/* Waits until message id is final: it must be sent (and at the relay
   once) or unknown (at the relay at most once).  1 when unknown. */
static int sent_once_or_unknown(struct mpserve *s, struct peer *p,
                                const char *id)
{
    json_t *d = wait_final(s, id, 20000);
    const char *st = jstr(d, "status");
    size_t k = copies(p, jstr(d, "message_id"));
    if (strcmp(st, "sent") == 0 && k != 1)
        fail_msg("%s sent but at the relay %zu times", id, k);
    if (strcmp(st, "unknown") == 0 && k > 1)
        fail_msg("%s unknown but at the relay %zu times", id, k);
    if (strcmp(st, "sent") != 0 && strcmp(st, "unknown") != 0)
        fail_msg("%s ended %s", id, st);
    int unknown = strcmp(st, "unknown") == 0;
    json_decref(d);
    return unknown;
}

/* A temp directory's queue file path; caller frees both. */
static char *temp_queue(char **dir)
{
    char tmpl[] = "/tmp/mailpool-q-XXXXXX", *path;
    assert_non_null(mkdtemp(tmpl));
    *dir = strdup(tmpl);
    assert_true(asprintf(&path, "%s/queue.db", tmpl) > 0);
    return path;
}

/* ---- tests ------------------------------------------------------------ */

static void test_async_202_means_stored_then_sent_once_with_its_message_id(
    void **state)
{
    (void)state;
    struct peer *p = relay("{}");
    struct mpserve *s = svc(p, NULL, NULL);
    struct http_resp r;
    long st;
    json_t *j = call(s, "POST", "/v1/messages", ASYNC,
                     "{\"from\":\"s@example.org\",\"to\":[\"r@example.org\"],"
                     "\"headers\":{\"Subject\":\"q\"},\"body\":\"hello\","
                     "\"metadata\":{\"user\":\"42\"}}",
                     &st, &r);
    assert_int_equal(st, 202);
    const char *id = jstr(j, "id");
    assert_int_equal(strlen(id), 22);
    assert_int_equal(strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
                                "qrstuvwxyz0123456789-_"),
                     22);
    assert_string_equal(jstr(j, "status"), "queued");
    char *loc = http_resp_header(&r, "Location");
    char *pa = http_resp_header(&r, "Preference-Applied");
    char want[64];
    snprintf(want, sizeof want, "/v1/messages/%s", id);
    assert_non_null(loc);
    assert_string_equal(loc, want);
    assert_non_null(pa);
    assert_string_equal(pa, "respond-async");
    free(loc);
    free(pa);
    http_resp_free(&r);
    json_t *d = wait_final(s, id, 5000);
    assert_string_equal(jstr(d, "status"), "sent");
    assert_string_equal(jstr(d, "message_id"), jstr(j, "message_id"));
    json_t *a = json_object_get(d, "attempts");
    assert_int_equal(json_array_size(a), 1);
    assert_int_equal(
        json_integer_value(json_object_get(json_array_get(a, 0), "code")), 250);
    assert_string_equal(jstr(json_object_get(d, "metadata"), "user"), "42");
    assert_int_equal(copies(p, jstr(j, "message_id")), 1);
    json_decref(d);
    json_decref(j);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    peer_stop(p);
}

/* The message log (GET /v1/messages) reads the same store on every
   backend: the recipient filter in any case, the Subject, the status of a
   rejected message with its last code, and cursor pages that neither skip
   nor repeat. */
static void test_message_log_filters_and_pages_on_this_backend(void **state)
{
    (void)state;
    struct peer *p = relay("{\"rules\":[{\"match\":\"^RCPT TO:<no@\","
                           "\"reply\":\"550 5.1.1 no such user\"}]}");
    struct mpserve *s = svc(p, NULL, NULL);
    char *ids[5], to[64];
    long st;
    for (int i = 0; i < 4; i++) {
        snprintf(to, sizeof to, "r%d@example.org", i);
        ids[i] = post_async(s, to, NULL);
        sleep_ms(5); /* created_at strictly increasing */
    }
    ids[4] = post_async(s, "no@example.org", NULL);
    for (int i = 0; i < 5; i++)
        json_decref(wait_final(s, ids[i], 5000));

    json_t *j = call(s, "GET", "/v1/messages?recipient=R2%40EXAMPLE.ORG", NULL,
                     NULL, &st, NULL);
    assert_int_equal(st, 200);
    json_t *m = json_object_get(j, "messages");
    assert_int_equal(json_array_size(m), 1);
    assert_string_equal(jstr(json_array_get(m, 0), "id"), ids[2]);
    assert_string_equal(jstr(json_array_get(m, 0), "subject"), "q");
    assert_string_equal(jstr(json_array_get(m, 0), "status"), "sent");
    json_decref(j);

    j = call(s, "GET", "/v1/messages?status=rejected", NULL, NULL, &st, NULL);
    assert_int_equal(st, 200);
    m = json_object_get(j, "messages");
    assert_int_equal(json_array_size(m), 1);
    assert_string_equal(jstr(json_array_get(m, 0), "id"), ids[4]);
    assert_int_equal(
        json_integer_value(json_object_get(json_array_get(m, 0), "last_code")),
        700);
    json_decref(j);

    /* Pages of 2, newest first: ids 4 3 | 2 1 | 0. */
    char path[256] = "/v1/messages?limit=2";
    int seen = 0;
    for (int page = 0; page < 3; page++) {
        j = call(s, "GET", path, NULL, NULL, &st, NULL);
        assert_int_equal(st, 200);
        m = json_object_get(j, "messages");
        for (size_t i = 0; i < json_array_size(m); i++, seen++)
            assert_string_equal(jstr(json_array_get(m, i), "id"),
                                ids[4 - seen]);
        const char *next = json_string_value(json_object_get(j, "next"));
        if (page < 2) {
            assert_non_null(next);
            char *enc = curl_easy_escape(NULL, next, 0);
            snprintf(path, sizeof path, "/v1/messages?limit=2&before=%s", enc);
            curl_free(enc);
        } else {
            assert_null(next);
        }
        json_decref(j);
    }
    assert_int_equal(seen, 5);
    for (int i = 0; i < 5; i++)
        free(ids[i]);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    peer_stop(p);
}

/* The message of the log's page `msgs` whose id is id, or NULL. */
static json_t *listed(json_t *msgs, const char *id)
{
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) if (strcmp(jstr(m, "id"), id) == 0) return m;
    return NULL;
}

/* GET path until its page holds at least n messages (the log's write
   follows the answer), at most ms; the page (caller decrefs). */
static json_t *wait_listed(struct mpserve *s, const char *path, size_t n,
                           int ms)
{
    for (long long end = now_ms() + ms;; sleep_ms(20)) {
        long st;
        json_t *j = call(s, "GET", path, NULL, NULL, &st, NULL);
        assert_int_equal(st, 200);
        if (json_array_size(json_object_get(j, "messages")) >= n ||
            now_ms() > end)
            return j;
        json_decref(j);
    }
}

/* The strings of a JSON array joined with '|' (caller frees). */
static char *joined(const json_t *arr)
{
    char *out = strdup("");
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        char *next = NULL;
        assert_true(asprintf(&next, "%s%s%s", out, i ? "|" : "",
                             json_string_value(v)) > 0);
        free(out);
        out = next;
    }
    return out;
}

/* Asserts that arr holds the strings of want, '|'-separated. */
static void assert_lines(const json_t *arr, const char *want)
{
    char *got = joined(arr);
    assert_string_equal(got, want);
    free(got);
}

/* Asserts a reply's code, enhanced status and lines ('|'-separated). */
static void assert_reply(const json_t *o, int code, const char *enhanced,
                         const char *lines)
{
    assert_int_equal(json_integer_value(json_object_get(o, "code")), code);
    assert_string_equal(jstr(o, "enhanced"), enhanced);
    assert_lines(json_object_get(o, "text"), lines);
}

#define SYNC_RELAY \
    "{\"rules\":[{\"match\":\"^RCPT TO:<no@\",\"reply\":\"550 5.1.1 " \
    "<no@example.org>: mailbox unavailable here\"},{\"match\":\"^DOT$\"," \
    "\"reply\":\"250-2.0.0 Ok: queued as SYNC1\\n250 2.0.0 relay line two" \
    "\"}]}"

/* POSTs "sync one" to a@example.org synchronously (extra: more members,
   each starting with a comma); the 200's document. */
static json_t *post_sync_one(struct mpserve *s, const char *extra)
{
    char body[512];
    long st;
    snprintf(body, sizeof body,
             "{\"from\":\"s@example.org\",\"to\":"
             "[\"a@example.org\"],\"headers\":{\"Subject\":\"sync one\"},"
             "\"body\":\"hello\"%s}",
             extra);
    json_t *j = call(s, "POST", "/v1/messages", JSONH, body, &st, NULL);
    assert_int_equal(st, 200);
    assert_string_equal(jstr(j, "status"), "sent");
    return j;
}

/* A synchronous send (POST /v1/messages without respond-async) and a
   synchronous batch with one recipient rejected are in the message log:
   each answer carries the log's id, the list shows them with status,
   recipients, Subject and the last code, and a message's document holds
   its one attempt with the relay's own reply lines and the rejected
   recipient's 550 text. */
static void test_sync_sends_are_in_the_message_log_with_the_relay_words(
    void **state)
{
    (void)state;
    struct peer *p = relay(SYNC_RELAY);
    struct mpserve *s = svc(p, NULL, NULL);
    long st;
    json_t *one = post_sync_one(s, ",\"metadata\":{\"user\":\"7\"}");
    const char *id1 = jstr(one, "id");
    assert_int_equal(strlen(id1), 22);
    json_t *batch = call(s, "POST", "/v1/messages/batch", JSONH,
                         "{\"messages\":[{\"from\":\"s@example.org\",\"to\":"
                         "[\"b1@example.org\",\"no@example.org\"],\"headers\":"
                         "{\"Subject\":\"sync two\"},\"body\":\"x\"},"
                         "{\"from\":\"s@example.org\",\"to\":"
                         "[\"b2@example.org\"],\"headers\":{\"Subject\":"
                         "\"sync three\"},\"body\":\"y\"}]}",
                         &st, NULL);
    assert_int_equal(st, 200);
    json_t *res = json_object_get(batch, "results");
    assert_int_equal(json_array_size(res), 2);
    json_t *r2 = json_array_get(res, 0), *r3 = json_array_get(res, 1);
    assert_string_equal(jstr(r2, "status"), "partial");
    assert_string_equal(jstr(r3, "status"), "sent");
    const char *id2 = jstr(r2, "id"), *id3 = jstr(r3, "id");
    assert_int_equal(strlen(id2), 22);
    assert_int_equal(strlen(id3), 22);
    assert_string_not_equal(id2, id3);
    assert_string_not_equal(id1, id2);
    assert_int_equal(peer_wait_messages(p, 3, 5000), 3);

    json_t *page = wait_listed(s, "/v1/messages", 3, 5000);
    json_t *msgs = json_object_get(page, "messages");
    assert_int_equal(json_array_size(msgs), 3);
    struct {
        const char *id, *status, *subject, *rcpts;
        int code;
        json_t *answer;
    } want[] = {
        /* 700: some recipients rejected (smtp.h) */
        { id1, "sent", "sync one", "a@example.org", 250, one },
        { id2, "partial", "sync two", "b1@example.org|no@example.org", 700,
          r2 },
        { id3, "sent", "sync three", "b2@example.org", 250, r3 },
    };
    for (size_t i = 0; i < 3; i++) {
        json_t *m = listed(msgs, want[i].id);
        assert_non_null(m);
        assert_string_equal(jstr(m, "status"), want[i].status);
        assert_string_equal(jstr(m, "subject"), want[i].subject);
        assert_lines(json_object_get(m, "recipients"), want[i].rcpts);
        assert_int_equal(json_integer_value(json_object_get(m, "last_code")),
                         want[i].code);
        assert_int_equal(
            json_integer_value(json_object_get(want[i].answer, "code")),
            want[i].code);
        assert_int_equal(json_integer_value(json_object_get(m, "attempts")), 1);
        assert_string_equal(jstr(m, "message_id"),
                            jstr(want[i].answer, "message_id"));
    }
    json_decref(page);
    page = wait_listed(s, "/v1/messages?recipient=no%40example.org", 1, 0);
    msgs = json_object_get(page, "messages");
    assert_int_equal(json_array_size(msgs), 1);
    assert_string_equal(jstr(json_array_get(msgs, 0), "id"), id2);
    json_decref(page);

    json_t *d = status_of(s, id2, &st);
    assert_int_equal(st, 200);
    assert_string_equal(jstr(d, "status"), "partial");
    assert_string_equal(jstr(d, "message_id"), jstr(r2, "message_id"));
    assert_true(json_is_null(json_object_get(d, "next_attempt_at")));
    json_t *a = json_object_get(d, "attempts");
    assert_int_equal(json_array_size(a), 1);
    json_t *a0 = json_array_get(a, 0);
    assert_string_equal(jstr(a0, "status"), "partial");
    assert_reply(a0, 700, "2.0.0",
                 "2.0.0 Ok: queued as SYNC1|2.0.0 relay line two");
    assert_lines(json_object_get(a0, "accepted"), "b1@example.org");
    json_t *rej = json_object_get(a0, "rejected");
    assert_int_equal(json_array_size(rej), 1);
    json_t *rj = json_array_get(rej, 0);
    assert_string_equal(jstr(rj, "recipient"), "no@example.org");
    assert_reply(rj, 550, "5.1.1",
                 "5.1.1 <no@example.org>: mailbox unavailable here");
    json_decref(d);
    d = status_of(s, id1, &st);
    assert_int_equal(st, 200);
    assert_string_equal(jstr(d, "status"), "sent");
    assert_string_equal(jstr(json_object_get(d, "metadata"), "user"), "7");
    json_decref(d);

    /* Final: never claimed, never sent again. */
    sleep_ms(1500);
    assert_int_equal(msgs_total(p), 3);
    json_decref(one);
    json_decref(batch);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    peer_stop(p);
}

/* queue.log_sync = false (load tests): a synchronous send is answered as
   before, without a log id, and the message log stays empty. */
static void test_log_sync_false_keeps_sync_sends_out_of_the_log(void **state)
{
    (void)state;
    static const char *const off[] = { "--queue-log-sync", "false", NULL };
    struct peer *p = relay(SYNC_RELAY);
    struct mpserve *s = svc(p, NULL, off);
    json_t *one = post_sync_one(s, "");
    assert_null(json_object_get(one, "id"));
    json_decref(one);
    assert_int_equal(peer_wait_messages(p, 1, 5000), 1);
    sleep_ms(500); /* what a write would have needed */
    json_t *page = wait_listed(s, "/v1/messages", 1, 0);
    assert_int_equal(json_array_size(json_object_get(page, "messages")), 0);
    json_decref(page);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    peer_stop(p);
}

static void test_async_batch_is_validated_whole_and_nothing_is_queued(
    void **state)
{
    (void)state;
    struct peer *p = relay("{}");
    struct mpserve *s = svc(p, NULL, NULL);
    long st;
    json_t *j = call(s, "POST", "/v1/messages/batch", ASYNC,
                     "{\"messages\":[{\"from\":\"a@example.org\",\"to\":"
                     "[\"b@example.org\"],\"body\":\"x\"},{\"from\":\"bad\","
                     "\"to\":[\"c@example.org\"],\"body\":\"y\",\"send_at\":"
                     "\"tomorrow\"}]}",
                     &st, NULL);
    assert_int_equal(st, 422);
    char *d = json_dumps(j, 0);
    assert_non_null(strstr(d, "messages[1].from"));
    assert_non_null(strstr(d, "messages[1].send_at"));
    free(d);
    json_decref(j);
    j = call(s, "POST", "/v1/messages/batch", ASYNC,
             "{\"messages\":[{\"from\":\"a@example.org\",\"to\":"
             "[\"b@example.org\"],\"body\":\"x\"},{\"from\":\"a@example.org\","
             "\"to\":[\"c@example.org\"],\"body\":\"y\"}]}",
             &st, NULL);
    assert_int_equal(st, 202);
    json_t *res = json_object_get(j, "results");
    assert_int_equal(json_array_size(res), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *f = wait_final(s, jstr(json_array_get(res, i), "id"), 5000);
        assert_string_equal(jstr(f, "status"), "sent");
        json_decref(f);
    }
    json_decref(j);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    assert_int_equal(peer_conn_count(p) > 0, 1);
    assert_int_equal(msgs_total(p), 2); /* the 422 batch sent nothing */
    peer_stop(p);
}

static void test_unknown_id_is_404_and_send_at_in_sync_is_422(void **state)
{
    (void)state;
    struct peer *p = relay("{}");
    struct mpserve *s = svc(p, NULL, NULL);
    long st;
    json_t *j = status_of(s, "AAAAAAAAAAAAAAAAAAAAAA", &st);
    assert_int_equal(st, 404);
    json_decref(j);
    j = call(s, "POST", "/v1/messages/AAAAAAAAAAAAAAAAAAAAAA/cancel", NULL,
             NULL, &st, NULL);
    assert_int_equal(st, 404);
    json_decref(j);
    j = call(s, "POST", "/v1/messages", JSONH,
             "{\"from\":\"a@example.org\",\"to\":[\"b@example.org\"],"
             "\"body\":\"x\",\"send_at\":\"2030-01-01T00:00:00Z\"}",
             &st, NULL);
    assert_int_equal(st, 422);
    char *d = json_dumps(j, 0);
    assert_non_null(strstr(d, "respond-async"));
    free(d);
    json_decref(j);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    peer_stop(p);
}

static void test_scheduled_waits_for_send_at_and_cancel_stops_it(void **state)
{
    (void)state;
    struct peer *p = relay("{}");
    struct mpserve *s = svc(p, NULL, NULL);
    char when[64], extra[96], far[96];
    time_t t = time(NULL) + 2;
    struct tm tm;
    long st;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(extra, sizeof extra, ",\"send_at\":\"%s\"", when);
    t += 3600;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(far, sizeof far, ",\"send_at\":\"%s\"", when);
    long long t0 = now_ms();
    char *soon = post_async(s, "soon@example.org", extra);
    char *later = post_async(s, "later@example.org", far);
    json_t *j = status_of(s, soon, &st);
    assert_string_equal(jstr(j, "status"), "scheduled");
    assert_true(json_is_string(json_object_get(j, "next_attempt_at")));
    json_decref(j);
    char path[128];
    snprintf(path, sizeof path, "/v1/messages/%s/cancel", later);
    j = call(s, "POST", path, NULL, NULL, &st, NULL);
    assert_int_equal(st, 200);
    assert_string_equal(jstr(j, "status"), "cancelled");
    json_decref(j);
    j = call(s, "POST", path, NULL, NULL, &st, NULL);
    assert_int_equal(st, 409); /* final now */
    json_decref(j);
    j = wait_final(s, soon, 6000);
    assert_string_equal(jstr(j, "status"), "sent");
    assert_true(now_ms() - t0 >= 1000); /* not before send_at */
    json_decref(j);
    j = status_of(s, later, &st);
    assert_string_equal(jstr(j, "status"), "cancelled");
    json_decref(j);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    assert_int_equal(msgs_total(p), 1); /* never the cancelled one */
    free(soon);
    free(later);
    peer_stop(p);
}

static void test_temporary_failures_retry_with_backoff_then_sent(void **state)
{
    (void)state;
    struct peer *p = relay("{'rules': [{'match': '^MAIL', 'times': 2, "
                           "'reply': '451 4.3.0 try again later'}]}");
    struct mpserve *s = svc(p, NULL, NULL);
    char *id = post_async(s, "r@example.org", NULL);
    json_t *d = wait_final(s, id, 8000);
    assert_string_equal(jstr(d, "status"), "sent");
    json_t *a = json_object_get(d, "attempts");
    assert_int_equal(json_array_size(a), 3);
    assert_int_equal(
        json_integer_value(json_object_get(json_array_get(a, 0), "code")), 451);
    assert_string_equal(jstr(json_array_get(a, 0), "status"), "failed");
    assert_int_equal(
        json_integer_value(json_object_get(json_array_get(a, 2), "code")), 250);
    json_decref(d);
    free(id);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    peer_stop(p);
}

/* The types of the events GET lists for a message, comma-joined into
   buf. */
static const char *event_types(const json_t *doc, char *buf, size_t len)
{
    json_t *e;
    size_t i, used = 0;
    buf[0] = '\0';
    json_array_foreach(json_object_get(doc, "events"), i, e)
        used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? "," : "",
                                 jstr(e, "type"));
    return buf;
}

/* The outbox on this backend: with a webhook configured, each state change
   writes its event in the transaction of the change, so every GET that
   shows a state already lists its event (retry: message.deferred, then
   sent: message.sent; a cancel: message.cancelled); the receiver is down,
   so they stay pending, each try recorded with its error. */
static void test_each_state_change_writes_its_event_with_it(void **state)
{
    (void)state;
    char *dir, *q = temp_queue(&dir), sfile[300], url[64], types[256];
    snprintf(sfile, sizeof sfile, "%s/secret", dir);
    FILE *f = fopen(sfile, "w");
    assert_non_null(f);
    fputs("whsec_bWFpbHBvb2wtd2ViaG9vay10ZXN0LXNlY3JldC0zMmI=\n", f);
    fclose(f);
    assert_int_equal(chmod(sfile, 0600), 0);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hook", mpserve_free_port());
    const char *more[] = { "--webhook-url",
                           url,
                           "--webhook-secret-file",
                           sfile,
                           "--webhook-retry-schedule",
                           "1h",
                           NULL };
    struct peer *p = relay("{'rules': [{'match': '^MAIL', 'times': 1, "
                           "'reply': '451 4.3.0 try again later'}]}");
    struct mpserve *s = svc(p, NULL, more);
    char *id = post_async(s, "r@example.org", NULL);
    char when[96];
    time_t t = time(NULL) + 3600;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, ",\"send_at\":\"%Y-%m-%dT%H:%M:%SZ\"", &tm);
    char *later = post_async(s, "later@example.org", when);
    long st;
    const char *want = NULL;
    int deferred = 0; /* once written, the retry's event stays listed */
    for (long long end = now_ms() + 8000;
         want == NULL || strcmp(want, "message.deferred,message.sent") != 0;
         sleep_ms(5)) {
        json_t *d = status_of(s, id, &st);
        const char *status = jstr(d, "status"), *got;
        got = event_types(d, types, sizeof types);
        if (strcmp(got, "message.deferred") == 0)
            deferred = 1;
        /* queued or sending: before the 451 nothing, after it (sending
           again) the deferred event */
        want = strcmp(status, "retry") == 0  ? "message.deferred"
               : strcmp(status, "sent") == 0 ? "message.deferred,message.sent"
               : deferred                    ? "message.deferred"
                                             : "";
        assert_string_equal(got, want);
        json_decref(d);
        if (now_ms() > end)
            fail_msg("message %s not sent in 8 s", id);
    }
    char path[128];
    snprintf(path, sizeof path, "/v1/messages/%s/cancel", later);
    json_decref(call(s, "POST", path, NULL, NULL, &st, NULL));
    assert_int_equal(st, 200);
    json_t *d = status_of(s, later, &st);
    assert_string_equal(event_types(d, types, sizeof types),
                        "message.cancelled");
    json_decref(d);
    sleep_ms(1500);
    d = status_of(s, id, &st);
    json_t *e = json_array_get(json_object_get(d, "events"), 1);
    assert_string_equal(jstr(e, "state"), "pending");
    json_t *t0 = json_array_get(json_object_get(e, "attempts"), 0);
    assert_non_null(t0);
    assert_true(json_is_null(json_object_get(t0, "http_status")));
    assert_true(strlen(jstr(t0, "error")) > 0);
    json_decref(d);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    peer_stop(p);
    free(id);
    free(later);
    unlink(sfile);
    free(q);
    ts_rmtree(dir);
    free(dir);
}

/* Partial: the recipients refused for good stay refused, those deferred
   with 4xx are retried alone (the accepted one never gets a second copy),
   and the message ends partial with both attempts recorded. */
static void test_partial_retries_only_the_deferred_recipients(void **state)
{
    (void)state;
    struct peer *p = relay("{'rules': ["
                           "{'match': '^RCPT TO:<later@', 'times': 1,"
                           " 'reply': '451 4.2.1 mailbox busy, try later'},"
                           "{'match': '^RCPT TO:<never@',"
                           " 'reply': '550 5.1.1 no such user'}]}");
    struct mpserve *s = svc(p, NULL, NULL);
    long st;
    json_t *j = call(s, "POST", "/v1/messages", ASYNC,
                     "{\"from\":\"s@example.org\",\"to\":[\"now@example.org\","
                     "\"later@example.org\",\"never@example.org\"],"
                     "\"headers\":{\"Subject\":\"q\"},\"body\":\"hello\"}",
                     &st, NULL);
    assert_int_equal(st, 202);
    char *id = strdup(jstr(j, "id"));
    json_decref(j);
    json_t *d = wait_final(s, id, 10000);
    assert_string_equal(jstr(d, "status"), "partial");
    json_t *a = json_object_get(d, "attempts");
    assert_int_equal(json_array_size(a), 2);
    char *dump = json_dumps(d, 0);
    assert_non_null(strstr(dump, "mailbox busy"));
    assert_non_null(strstr(dump, "no such user"));
    free(dump);
    json_decref(d);

    struct peer_msg *m = NULL;
    size_t n = 0;
    assert_int_equal(peer_messages(p, &m, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(m[0].nrcpt, 1);
    assert_string_equal(m[0].rcpt_to[0], "now@example.org");
    assert_int_equal(m[1].nrcpt, 1); /* later@, alone */
    assert_string_equal(m[1].rcpt_to[0], "later@example.org");
    peer_msgs_free(m, n);
    free(id);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    peer_stop(p);
}

static void test_permanent_failure_is_final_after_one_attempt(void **state)
{
    (void)state;
    struct peer *p = relay("{'rules': [{'match': '^MAIL', "
                           "'reply': '550 5.7.1 no thanks'}]}");
    struct mpserve *s = svc(p, NULL, NULL);
    char *id = post_async(s, "r@example.org", NULL);
    json_t *d = wait_final(s, id, 5000);
    assert_string_equal(jstr(d, "status"), "failed");
    json_t *a = json_object_get(d, "attempts");
    assert_int_equal(json_array_size(a), 1);
    assert_int_equal(
        json_integer_value(json_object_get(json_array_get(a, 0), "code")), 550);
    char *dump = json_dumps(d, 0);
    assert_non_null(strstr(dump, "no thanks")); /* the relay's words */
    free(dump);
    json_decref(d);
    free(id);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    peer_stop(p);
}

/* ---- idempotency ---- */

struct idem_call {
    struct mpserve *s;
    pthread_t t;
    long status;
    int replayed;
    char err[256]; /* why no answer came */
};

static void *idem_main(void *arg)
{
    struct idem_call *c = arg;
    static const char *const h[] = { "Content-Type: application/json",
                                     "Idempotency-Key: order-7", NULL };
    char url[256];
    struct http_resp r;
    snprintf(url, sizeof url, "%s/v1/messages", mpserve_url(c->s));
    if (http_request("POST", url, h,
                     "{\"from\":\"s@example.org\",\"to\":[\"r@example.org\"],"
                     "\"headers\":{\"Subject\":\"once\"},\"body\":\"x\"}",
                     0, &r) == 0) {
        char *v = http_resp_header(&r, "Idempotent-Replayed");
        c->status = r.status;
        c->replayed = v != NULL;
        free(v);
        http_resp_free(&r);
    } else {
        snprintf(c->err, sizeof c->err, "%s", r.err);
    }
    return NULL;
}

static void test_50_concurrent_posts_with_one_key_send_once(void **state)
{
    (void)state;
    struct peer *p = relay("{'rules': [{'match': '^DATA', "
                           "'action': 'delay:0.3'}]}");
    struct mpserve *s = svc(p, NULL, NULL);
    struct idem_call c[50];
    int ok = 0, replays = 0, busy = 0;
    for (int i = 0; i < 50; i++) {
        c[i] = (struct idem_call){ .s = s };
        assert_int_equal(pthread_create(&c[i].t, NULL, idem_main, &c[i]), 0);
    }
    for (int i = 0; i < 50; i++) {
        pthread_join(c[i].t, NULL);
        if (c[i].status >= 500 || c[i].status == 0)
            fail_msg("call %d answered %ld %s", i, c[i].status, c[i].err);
        ok += c[i].status == 200 && !c[i].replayed;
        replays += c[i].status == 200 && c[i].replayed;
        busy += c[i].status == 409;
    }
    assert_int_equal(ok, 1);
    assert_int_equal(ok + replays + busy, 50);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    assert_int_equal(msgs_total(p), 1);
    peer_stop(p);
}

static void test_async_repeat_with_key_returns_same_id_other_body_422(
    void **state)
{
    (void)state;
    struct peer *p = relay("{}");
    struct mpserve *s = svc(p, NULL, NULL);
    static const char *const h[] = { "Content-Type: application/json",
                                     "Prefer: respond-async",
                                     "Idempotency-Key: batch-1", NULL };
    const char *body = "{\"from\":\"s@example.org\",\"to\":[\"r@example.org\"]"
                       ",\"body\":\"x\"}";
    long st1, st2, st3;
    struct http_resp r;
    json_t *a = call(s, "POST", "/v1/messages", h, body, &st1, NULL);
    json_t *b = call(s, "POST", "/v1/messages", h, body, &st2, &r);
    json_t *c = call(s, "POST", "/v1/messages", h,
                     "{\"from\":\"s@example.org\",\"to\":[\"x@example.org\"],"
                     "\"body\":\"x\"}",
                     &st3, NULL);
    assert_int_equal(st1, 202);
    assert_int_equal(st2, 202);
    assert_string_equal(jstr(a, "id"), jstr(b, "id"));
    char *rep = http_resp_header(&r, "Idempotent-Replayed");
    assert_non_null(rep);
    free(rep);
    http_resp_free(&r);
    assert_int_equal(st3, 422);
    json_t *d = wait_final(s, jstr(a, "id"), 5000);
    json_decref(d);
    json_decref(a);
    json_decref(b);
    json_decref(c);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    assert_int_equal(msgs_total(p), 1);
    peer_stop(p);
}

/* ---- crashes ---- */

static void test_sigkill_while_sending_makes_it_unknown_never_resent(
    void **state)
{
    (void)state;
    struct peer *p = relay("{'rules': [{'match': '^DOT$', 'times': 1, "
                           "'action': 'hang'}]}");
    char *dir, *q = temp_queue(&dir);
    struct mpserve *s = svc(p, q, NULL);
    char *id = post_async(s, "r@example.org", NULL);
    long st;
    for (long long end = now_ms() + 5000; now_ms() < end; sleep_ms(20)) {
        json_t *j = status_of(s, id, &st);
        int sending = strcmp(jstr(j, "status"), "sending") == 0;
        json_decref(j);
        if (sending)
            break;
    }
    sleep_ms(300); /* the dot is out, unanswered */
    mpserve_signal(s, SIGKILL);
    mpserve_wait(s, 5000);
    mpserve_free(s);
    s = svc(p, q, NULL);
    json_t *d = wait_final(s, id, 10000); /* PostgreSQL: after the lease */
    assert_string_equal(jstr(d, "status"), "unknown");
    json_decref(d);
    sleep_ms(500); /* nothing is sent again */
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    assert_int_equal(count_mail_commands(p), 1);
    free(id);
    free(q);
    ts_rmtree(dir);
    free(dir);
    peer_stop(p);
}

/* SIGKILL with one message on the wire (its final dot unanswered) and a
   second claimed but waiting for the one worker: after the restart (on
   PostgreSQL, once the lease ends) the first is unknown, never resent,
   and the second, never started, is sent once. */
static void test_sigkill_leaves_the_unstarted_claim_queued_sent_once(
    void **state)
{
    (void)state;
    struct peer *p = relay("{'rules': [{'match': '^DOT$', 'times': 1, "
                           "'action': 'hang'}]}");
    static const char *const one[] = { "--pool-workers", "1",
                                       "--pool-connections", "1", NULL };
    char *dir, *q = temp_queue(&dir);
    struct mpserve *s = svc(p, q, one);
    char *first = post_async(s, "r1@example.org", NULL);
    for (long long end = now_ms() + 5000; count_mail_commands(p) < 1;
         sleep_ms(20))
        if (now_ms() > end)
            fail_msg("the first message never reached the relay");
    char *second = post_async(s, "r2@example.org", NULL);
    long st;
    for (long long end = now_ms() + 5000;; sleep_ms(20)) {
        json_t *j = status_of(s, second, &st);
        int sending = strcmp(jstr(j, "status"), "sending") == 0;
        json_decref(j);
        if (sending)
            break;
        if (now_ms() > end)
            fail_msg("the second message was never claimed");
    }
    sleep_ms(300); /* the dot is out, unanswered */
    mpserve_signal(s, SIGKILL);
    mpserve_wait(s, 5000);
    mpserve_free(s);
    s = svc(p, q, NULL);
    json_t *d = wait_final(s, first, 10000);
    assert_string_equal(jstr(d, "status"), "unknown");
    json_decref(d);
    d = wait_final(s, second, 10000);
    assert_string_equal(jstr(d, "status"), "sent");
    assert_int_equal(json_array_size(json_object_get(d, "attempts")), 1);
    assert_int_equal(copies(p, jstr(d, "message_id")), 1);
    json_decref(d);
    sleep_ms(500); /* nothing is sent again */
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    assert_int_equal(count_mail_commands(p), 2);
    assert_int_equal(msgs_total(p), 1);
    free(first);
    free(second);
    free(q);
    ts_rmtree(dir);
    free(dir);
    peer_stop(p);
}

#ifndef QUEUE_TEST_PG
/* How many of ids[0..n) GET /v1/messages/{id} calls `sending`. */
static size_t count_sending(struct mpserve *s, char *const *ids, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        long st;
        json_t *j = status_of(s, ids[i], &st);
        k += st == 200 && strcmp(jstr(j, "status"), "sending") == 0;
        json_decref(j);
    }
    return k;
}

/* SQLite: one worker keeps up to a chain's worth of messages claimed (16;
   claims of at least half of it), not two, so that its connection can
   carry them as one chain; SIGKILL with the first on the wire (its dot
   unanswered) and at least 8 more claimed but never started: after the
   restart the first is unknown, never resent, and every other message of
   the 20 reaches the relay exactly once. */
static void test_one_worker_claims_sixteen_sigkill_sends_the_unstarted_once(
    void **state)
{
    (void)state;
    enum { N = 20 };
    struct peer *p = relay("{'rules': [{'match': '^DOT$', 'times': 1, "
                           "'action': 'hang'}]}");
    static const char *const one[] = { "--pool-workers", "1",
                                       "--pool-connections", "1", NULL };
    char *dir, *q = temp_queue(&dir);
    struct mpserve *s = svc(p, q, one);
    char *ids[N];
    for (size_t i = 0; i < N; i++) {
        char to[64];
        snprintf(to, sizeof to, "r%zu@example.org", i);
        ids[i] = post_async(s, to, NULL);
    }
    size_t sending = 0;
    for (long long end = now_ms() + 5000; sending < 9; sleep_ms(50)) {
        sending = count_sending(s, ids, N);
        if (now_ms() > end)
            fail_msg("%zu messages sending, want 9 or more", sending);
    }
    sleep_ms(300); /* the first dot is out, unanswered */
    assert_true(count_sending(s, ids, N) >= 9);
    assert_true(count_sending(s, ids, N) <= 16);
    assert_int_equal(count_mail_commands(p), 1);
    mpserve_signal(s, SIGKILL);
    mpserve_wait(s, 5000);
    mpserve_free(s);
    s = svc(p, q, one);
    size_t unknown = 0;
    for (size_t i = 0; i < N; i++) {
        unknown += (size_t)sent_once_or_unknown(s, p, ids[i]);
        free(ids[i]);
    }
    sleep_ms(300); /* nothing is sent again */
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    assert_int_equal(unknown, 1);
    assert_int_equal(msgs_total(p), N - 1);
    assert_int_equal(count_mail_commands(p), N);
    free(q);
    ts_rmtree(dir);
    free(dir);
    peer_stop(p);
}
#endif

/* The crash matrix: the service is killed with SIGKILL at a random moment
   while it sends, RUNS times, then restarted on the same queue; every
   message that got a 202 must end final, none may be lost, and none may
   reach the relay twice (unknown ones at most once). */
#define RUNS 20 /* QUEUE_CRASH_RUNS overrides (make soak) */
#define PER_RUN 10

static void test_crash_matrix_every_202_final_none_lost_none_twice(void **state)
{
    (void)state;
    struct peer *p = relay("{'rules': [{'match': '^DOT$', "
                           "'action': 'delay:0.01'}]}");
    char *dir, *q = temp_queue(&dir);
    const char *env = getenv("QUEUE_CRASH_RUNS");
    int runs = env != NULL && atoi(env) > 0 ? atoi(env) : RUNS;
    char **ids = calloc((size_t)runs * PER_RUN, sizeof *ids);
    size_t n = 0;
    unsigned seed = (unsigned)time(NULL);
    assert_non_null(ids);
    printf("crash matrix seed %u, %d runs\n", seed, runs);
    for (int run = 0; run < runs; run++) {
        struct mpserve *s = svc(p, q, NULL);
        for (int i = 0; i < PER_RUN; i++)
            ids[n++] = post_async(s, "r@example.org", NULL);
        sleep_ms((int)(rand_r(&seed) % 120));
        mpserve_signal(s, SIGKILL);
        mpserve_wait(s, 5000);
        mpserve_free(s);
    }
    struct mpserve *s = svc(p, q, NULL);
    size_t unknown = 0;
    for (size_t i = 0; i < n; i++) {
        unknown += sent_once_or_unknown(s, p, ids[i]);
        free(ids[i]);
    }
    printf("crash matrix: %zu messages, %zu unknown\n", n, unknown);
    free(ids);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    free(q);
    ts_rmtree(dir);
    free(dir);
    peer_stop(p);
}

#ifndef QUEUE_TEST_PG
/* Mounts a tmpfs (mount options opts) on the new directory tmpl (a
   mkdtemp template) and writes its queue file's path into q. */
static void tmpfs_queue(char *tmpl, const char *opts, char *q, size_t qlen)
{
    assert_non_null(mkdtemp(tmpl));
    if (mount("tmpfs", tmpl, "tmpfs", 0, opts) != 0) {
        rmdir(tmpl);
        fail_msg("cannot mount a tmpfs (needs root): %s", strerror(errno));
    }
    snprintf(q, qlen, "%s/queue.db", tmpl);
}

/* A queue on a 1 MiB tmpfs: once it is full, 503 with Retry-After and no
   202; every message that got a 202 is still there after a restart with
   room again, and is delivered. */
static void test_full_or_read_only_disk_is_503_and_loses_nothing(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/mailpool-full-XXXXXX", q[64];
    tmpfs_queue(tmpl, "size=1m", q, sizeof q);
    struct peer *p = relay("{}");
    struct mpserve *s = svc(p, q, NULL);
    char *big = malloc(64 * 1024 + 256), *ids[64], when[40];
    size_t n = 0;
    long st = 0;
    int saw503 = 0;
    time_t t = time(NULL) + 4; /* none is claimed while the disk fills */
    struct tm tm;
    assert_non_null(big);
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int k = snprintf(big, 256,
                     "{\"from\":\"s@example.org\",\"to\":"
                     "[\"r@example.org\"],\"send_at\":\"%s\","
                     "\"body\":\"",
                     when);
    for (int i = 0; i < 60 * 1024; i++) /* lines of 78, "\n" escaped */
        big[k + i] = i % 80 == 78 ? '\\' : i % 80 == 79 ? 'n' : 'x';
    strcpy(big + k + 60 * 1024, "\"}");
    for (int i = 0; i < 64 && !saw503; i++) {
        struct http_resp r;
        json_t *j = call(s, "POST", "/v1/messages", ASYNC, big, &st, &r);
        if (st == 202) {
            ids[n++] = strdup(jstr(j, "id"));
        } else {
            char *ra = http_resp_header(&r, "Retry-After");
            assert_int_equal(st, 503);
            assert_non_null(ra);
            free(ra);
            saw503 = 1;
        }
        http_resp_free(&r);
        json_decref(j);
    }
    free(big);
    assert_true(saw503);
    assert_true(n > 0);
    assert_int_equal(mpserve_stop(s, 10000), 0);
    mpserve_free(s);
    /* Room again: every 202 is delivered, once its send_at comes. */
    assert_int_equal(mount("tmpfs", tmpl, "tmpfs", MS_REMOUNT, "size=16m"), 0);
    assert_int_equal(msgs_total(p), 0);
    s = svc(p, q, NULL);
    for (size_t i = 0; i < n; i++) {
        json_t *d = wait_final(s, ids[i], 20000);
        assert_string_equal(jstr(d, "status"), "sent");
        json_decref(d);
        free(ids[i]);
    }
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    assert_int_equal(msgs_total(p), n);
    peer_stop(p);
    umount(tmpl);
    rmdir(tmpl);
}
#endif

/* SIGTERM: the service stops claiming, finishes what is on the wire, and
   leaves the rest queued; the next start sends those: every message sent
   exactly once, none unknown. */
static void test_sigterm_leaves_the_rest_queued_for_the_next_start(void **state)
{
    (void)state;
    struct peer *p = relay("{'rules': [{'match': '^DATA', "
                           "'action': 'delay:0.3'}]}");
    char *dir, *q = temp_queue(&dir), *ids[8];
    static const char *const one[] = { "--pool-workers", "1",
                                       "--pool-connections", "1", NULL };
    struct mpserve *s = svc(p, q, one);
    for (int i = 0; i < 8; i++)
        ids[i] = post_async(s, "r@example.org", NULL);
    sleep_ms(100);
    assert_int_equal(mpserve_stop_clean(s, 20000), 0);
    mpserve_free(s);
    size_t before = msgs_total(p);
    assert_true(before < 8); /* some were left for the next start */
    s = svc(p, q, NULL);
    for (int i = 0; i < 8; i++) {
        json_t *d = wait_final(s, ids[i], 10000);
        assert_string_equal(jstr(d, "status"), "sent");
        assert_int_equal(copies(p, jstr(d, "message_id")), 1);
        json_decref(d);
        free(ids[i]);
    }
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    free(q);
    ts_rmtree(dir);
    free(dir);
    peer_stop(p);
}

/* ---- cancel racing the claim; a read-only database ---- */

struct canceller {
    struct mpserve *s;
    const char *id;
    long long at_ms; /* when to cancel (monotonic) */
    long status;     /* the cancel's answer */
};

/* Cancels one message at its moment. */
static void *cancel_at(void *arg)
{
    struct canceller *c = arg;
    char path[128];
    long long wait = c->at_ms - now_ms();
    if (wait > 0)
        sleep_ms((int)wait);
    snprintf(path, sizeof path, "/v1/messages/%s/cancel", c->id);
    json_decref(call(c->s, "POST", path, NULL, NULL, &c->status, NULL));
    return NULL;
}

/* Messages scheduled for one second, each cancelled around the moment
   the delivery claims them: every cancel is either 200 (the message ends
   cancelled and never reaches the relay) or 409 (it is sent, once); never
   both cancelled and sent. */
static void test_cancel_racing_the_claim_one_wins_never_both(void **state)
{
    (void)state;
    enum { N = 40 };
    struct peer *p = relay("{}");
    struct mpserve *s = svc(p, NULL, NULL);
    char extra[96], when[40];
    time_t due = time(NULL) + 2;
    struct tm tm;
    struct canceller c[N];
    pthread_t t[N];
    char *ids[N];
    gmtime_r(&due, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(extra, sizeof extra, ",\"send_at\":\"%s\"", when);
    for (int i = 0; i < N; i++)
        ids[i] = post_async(s, "r@example.org", extra);
    /* The moment due comes, on the monotonic clock; cancels spread from
       40 ms before it to 40 ms after. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long due_ms = now_ms() + ((long long)due - ts.tv_sec) * 1000 -
                       ts.tv_nsec / 1000000;
    for (int i = 0; i < N; i++) {
        c[i] = (struct canceller){ s, ids[i], due_ms + (i - N / 2) * 2, 0 };
        assert_int_equal(pthread_create(&t[i], NULL, cancel_at, &c[i]), 0);
    }
    size_t won = 0, lost = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        json_t *d = wait_final(s, ids[i], 10000);
        const char *st = jstr(d, "status");
        size_t k = copies(p, jstr(d, "message_id"));
        if (c[i].status == 200 && (strcmp(st, "cancelled") != 0 || k != 0))
            fail_msg("%s: cancel 200 but %s, at the relay %zu times", ids[i],
                     st, k);
        if (c[i].status == 409 && (strcmp(st, "sent") != 0 || k != 1))
            fail_msg("%s: cancel 409 but %s, at the relay %zu times", ids[i],
                     st, k);
        if (c[i].status != 200 && c[i].status != 409)
            fail_msg("%s: cancel answered %ld", ids[i], c[i].status);
        won += c[i].status == 200;
        lost += c[i].status == 409;
        json_decref(d);
        free(ids[i]);
    }
    printf("cancel race: %zu cancelled, %zu sent\n", won, lost);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    assert_int_equal(msgs_total(p), lost);
    peer_stop(p);
}

#ifndef QUEUE_TEST_PG
/* A queue file on a read-only file system: `mailpool serve` does not
   start; it exits 2 and names queue.path and why. */
static void test_read_only_database_is_a_start_error_exit_2(void **state)
{
    (void)state;
    char tmpl[] = "/tmp/mailpool-ro-XXXXXX", q[64], *log = NULL;
    tmpfs_queue(tmpl, "size=4m", q, sizeof q);
    struct peer *p = relay("{}");
    struct mpserve *s = svc(p, q, NULL); /* the file exists */
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    assert_int_equal(
        mount("tmpfs", tmpl, "tmpfs", MS_REMOUNT | MS_RDONLY, NULL), 0);
    assert_int_equal(serve_fails(q, &log), 2);
    assert_non_null(log);
    assert_non_null(strstr(log, "queue.path"));
    assert_non_null(strstr(log, "Read-only file system"));
    free(log);
    peer_stop(p);
    umount(tmpl);
    rmdir(tmpl);
}
#else
/* An async POST through s is a 503 problem with Retry-After. */
static void async_post_is_503(struct mpserve *s)
{
    struct http_resp r;
    long st;
    json_t *j = call(s, "POST", "/v1/messages", ASYNC,
                     "{\"from\":\"s@example.org\",\"to\":[\"x@example.org\"],"
                     "\"body\":\"no\"}",
                     &st, &r);
    char *ra = http_resp_header(&r, "Retry-After");
    char *ct = http_resp_header(&r, "Content-Type");
    assert_int_equal(st, 503);
    assert_non_null(ra);
    assert_non_null(ct);
    assert_non_null(strstr(ct, "application/problem+json"));
    free(ra);
    free(ct);
    http_resp_free(&r);
    json_decref(j);
}

/* The cluster read-only (default_transaction_read_only): a POST that
   needs the queue is a 503 problem with Retry-After, never a 202; a
   replica starting then exits 2 naming queue.url; writable again, a POST
   is a 202 and every 202 is delivered once. */
static void test_read_only_database_is_503_and_a_start_error_exit_2(void **state)
{
    (void)state;
    struct peer *p = relay("{}");
    struct mpserve *s = svc(p, "read-only", NULL);
    char *before = post_async(s, "r@example.org", NULL), *log = NULL;
    const char *db = pg_db("read-only");
    json_t *d = wait_final(s, before, 10000);
    assert_string_equal(jstr(d, "status"), "sent");
    json_decref(d);
    free(pg_sql(db, "ALTER SYSTEM SET default_transaction_read_only = on"));
    free(pg_sql(db, "SELECT pg_reload_conf()"));
    sleep_ms(300);
    async_post_is_503(s);
    assert_int_equal(serve_fails("read-only", &log), 2);
    assert_non_null(log);
    assert_non_null(strstr(log, "queue.url"));
    assert_non_null(strstr(log, "read-only"));
    free(log);
    free(pg_sql(db, "ALTER SYSTEM RESET default_transaction_read_only"));
    free(pg_sql(db, "SELECT pg_reload_conf()"));
    sleep_ms(300);
    char *after = post_async(s, "r@example.org", NULL);
    d = wait_final(s, after, 10000);
    assert_string_equal(jstr(d, "status"), "sent");
    json_decref(d);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    assert_int_equal(msgs_total(p), 2);
    free(before);
    free(after);
    peer_stop(p);
}

/* The value of the metric line starting with name in /metrics. */
static long metric_of(struct mpserve *s, const char *name)
{
    char url[256];
    struct http_resp r;
    snprintf(url, sizeof url, "%s/metrics", mpserve_url(s));
    assert_int_equal(http_request("GET", url, NULL, NULL, 0, &r), 0);
    assert_int_equal(r.status, 200);
    const char *at = r.body != NULL ? strstr(r.body, name) : NULL;
    long v = at != NULL ? strtol(at + strlen(name), NULL, 10) : -1;
    http_resp_free(&r);
    return v;
}

/* Waits (at most 10 s) until GET /readyz answers http with the status
   want. */
static void readyz_becomes(struct mpserve *s, long http, const char *want)
{
    for (long long end = now_ms() + 10000;; sleep_ms(50)) {
        long st;
        json_t *j = call(s, "GET", "/readyz", NULL, NULL, &st, NULL);
        int ok = st == http && strcmp(jstr(j, "status"), want) == 0;
        char *txt = j != NULL ? json_dumps(j, 0) : NULL;
        json_decref(j);
        if (ok) {
            free(txt);
            return;
        }
        if (now_ms() > end)
            fail_msg("/readyz answered %ld %s, not %ld %s", st,
                     txt != NULL ? txt : "", http, want);
        free(txt);
    }
}

/* Runs the peer script's verb on this run's server (tail: more words,
   may be ""); 0 when it succeeded. */
static int pg_verb(const char *verb, const char *tail)
{
    char args[400];
    snprintf(args, sizeof args, "%s %s %s", verb, pg.dir, tail);
    char *out = pg_run(args);
    free(out);
    return out != NULL ? 0 : -1;
}

/* A replica on database name with one message sent through it
   (*first, caller frees) and /readyz 200. */
static struct mpserve *ready_replica(struct peer *p, const char *name,
                                     char **first)
{
    struct mpserve *s = svc(p, name, NULL);
    *first = post_async(s, "r@example.org", NULL);
    json_t *d = wait_final(s, *first, 10000);
    json_decref(d);
    readyz_becomes(s, 200, "ready");
    return s;
}

/* A synchronous send without a key through s, body text: answered 200
   "sent". */
static void sync_send_is_sent(struct mpserve *s, const char *text)
{
    char body[256];
    long st;
    snprintf(body, sizeof body,
             "{\"from\":\"s@example.org\",\"to\":"
             "[\"r@example.org\"],\"body\":\"%s\"}",
             text);
    json_t *sync = call(s, "POST", "/v1/messages", JSONH, body, &st, NULL);
    assert_int_equal(st, 200);
    assert_string_equal(jstr(sync, "status"), "sent");
    json_decref(sync);
}

/* PostgreSQL stopped and started again under a running replica: POSTs
   get 503 with Retry-After and /readyz is 503 "queue unreachable" while
   it is down, 200 "ready" once it is back; every 202, before and after,
   is delivered once.  A synchronous send without an idempotency key
   meanwhile is answered and sent as ever: only its record in the message
   log is lost, counted and logged at warn. */
static void test_postgres_restart_is_503_and_unready_while_down_no_202_lost(
    void **state)
{
    (void)state;
    struct peer *p = relay("{}");
    char *before;
    struct mpserve *s = ready_replica(p, "restart", &before);
    assert_int_equal(pg_verb("stop-only", ""), 0);
    readyz_becomes(s, 503, "queue unreachable");
    async_post_is_503(s);
    sync_send_is_sent(s, "while down");
    for (long long end = now_ms() + 10000;
         metric_of(s, "\nmailpool_queue_log_sync_failures_total ") != 1;
         sleep_ms(50))
        if (now_ms() > end)
            fail_msg("the failed record was not counted");
    char *log = mpserve_log(s, NULL);
    assert_non_null(log);
    assert_non_null(strstr(log, "\"message_log_failed\""));
    free(log);
    assert_int_equal(pg_verb("start-again", ""), 0);
    readyz_becomes(s, 200, "ready");
    char *ids[5];
    for (int i = 0; i < 5; i++)
        ids[i] = post_async(s, "r@example.org", NULL);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(sent_once_or_unknown(s, p, ids[i]), 0);
        free(ids[i]);
    }
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    assert_int_equal(msgs_total(p), 7);
    free(before);
    peer_stop(p);
}

/* PostgreSQL frozen (SIGSTOP: its connections open, nothing answering)
   under a replica: /readyz answers 503 "queue unreachable" within
   seconds, never held by the silent database, and a synchronous send
   without a key is answered and sent; thawed, /readyz is 200 again and a
   202 is delivered once. */
static void test_silent_postgres_is_unready_within_seconds_then_ready(
    void **state)
{
    (void)state;
    struct peer *p = relay("{}");
    char *before;
    struct mpserve *s = ready_replica(p, "frozen", &before);
    assert_int_equal(pg_verb("freeze", "15"), 0); /* thawed after 15 s */
    long st;
    long long t0 = now_ms();
    json_t *j = call(s, "GET", "/readyz", NULL, NULL, &st, NULL);
    long long took = now_ms() - t0;
    assert_int_equal(st, 503);
    assert_string_equal(jstr(j, "status"), "queue unreachable");
    json_decref(j);
    if (took > 4000)
        fail_msg("/readyz took %lld ms on a silent database", took);
    sync_send_is_sent(s, "frozen");
    assert_int_equal(pg_verb("thaw", ""), 0);
    readyz_becomes(s, 200, "ready");
    char *after = post_async(s, "r@example.org", NULL);
    assert_int_equal(sent_once_or_unknown(s, p, after), 0);
    assert_int_equal(mpserve_stop_clean(s, 40000), 0);
    mpserve_free(s);
    assert_int_equal(msgs_total(p), 3);
    free(before);
    free(after);
    peer_stop(p);
}
#endif

/* ---- the queue's interface, called directly ---- */

/* queue_done_fn: *ctx becomes 1 (stored) or -1. */
static void enqueued(void *ctx, int rc, const struct queue_idem_hit *hit)
{
    (void)hit;
    atomic_store((atomic_int *)ctx, rc == QUEUE_OK ? 1 : -1);
}

/* Opens a queue of this backend (a new database, or a file in *dir, a
   new directory the caller removes) with lease_s. */
static struct queue *open_direct(double lease_s, char **dir)
{
    static char where[300];
    char err[512];
    struct queue_opts o = { .lease_s = lease_s,
                            .retention_s = 86400,
                            .idem_ttl_s = 86400 };
    struct queue *q;
    free(temp_queue(dir));
#ifdef QUEUE_TEST_PG
    snprintf(where, sizeof where,
             "host=127.0.0.1 port=%d user=postgres "
             "dbname=%s",
             pg.port, pg_db(NULL));
    o.backend = "postgres";
    o.url = where;
    o.password_file = pg.pwfile;
#else
    snprintf(where, sizeof where, "%s/queue.db", *dir);
    o.path = where;
#endif
    if (queue_open(&o, &q, err, sizeof err) < 0)
        fail_msg("queue_open: %s", err);
    return q;
}

/* Stores one message in q, waits until it is, and gives its id in m. */
static void enqueue_one(struct queue *q, char m[QUEUE_ID_LEN])
{
    struct queue_new msg = { .blob = "x", .blob_len = 1 };
    atomic_int done = 0;
    queue_new_id(msg.id);
    memcpy(m, msg.id, QUEUE_ID_LEN);
    assert_int_equal(queue_enqueue(q, &msg, 1, NULL, enqueued, &done),
                     QUEUE_OK);
    for (long long end = now_ms() + 5000; done == 0; sleep_ms(5))
        if (now_ms() > end)
            fail_msg("the enqueue did not finish");
    assert_int_equal(done, 1);
}

/* The state q holds for message id. */
static enum queue_state state_of(struct queue *q, const char *id)
{
    struct queue_doc doc;
    assert_int_equal(queue_get(q, id, &doc), QUEUE_OK);
    enum queue_state st = doc.state;
    queue_doc_clear(&doc);
    return st;
}

/* The reaper, once the leases of two claimed messages lapsed: the one
   never started goes back to queued (nothing of it went out); the
   started one ends unknown, never resent. */
static void test_reaper_queues_the_unstarted_and_ends_the_started_unknown(
    void **state)
{
    (void)state;
    char *dir, m[QUEUE_ID_LEN], s[QUEUE_ID_LEN];
    struct queue *q = open_direct(60, &dir);
    struct queue_claimed *c;
    size_t n;
    unsigned long reaped = 0;
    enqueue_one(q, m);
    enqueue_one(q, s);
    assert_int_equal(queue_claim(q, (double)time(NULL) + 1, 10, 60, &c, &n),
                     QUEUE_OK);
    assert_int_equal(n, 2);
    queue_claimed_free(c, n);
    assert_int_equal(queue_start(q, s), QUEUE_OK);
    /* an hour on: both leases lapsed */
    assert_int_equal(q->ops->reap(q, (double)time(NULL) + 3600, &reaped),
                     QUEUE_OK);
    assert_int_equal(state_of(q, m), QUEUE_QUEUED);
    assert_int_equal(state_of(q, s), QUEUE_UNKNOWN);
    queue_close(q);
    ts_rmtree(dir);
    free(dir);
}

#ifdef QUEUE_TEST_PG
/* ---- replicas on one PostgreSQL database ---- */

static char **post_batch_to(struct mpserve *s, const char *tag, size_t n);

/* POSTs n messages (to r0..r<n-1>) as one async batch through s; their
   ids (caller frees each and the array). */
static char **post_batch(struct mpserve *s, size_t n)
{
    return post_batch_to(s, "r", n);
}

/* POSTs n messages (to <tag>0..<tag><n-1> at example.org) as one async
   batch through s; their ids (caller frees each and the array). */
static char **post_batch_to(struct mpserve *s, const char *tag, size_t n)
{
    size_t cap = 200 + n * (120 + strlen(tag)), len = 0;
    char *body = malloc(cap), **ids = calloc(n, sizeof *ids);
    long st;
    assert_non_null(body);
    assert_non_null(ids);
    len += (size_t)snprintf(body, cap, "{\"messages\":[");
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(body + len, cap - len,
                                "%s{\"from\":\"s@example.org\",\"to\":"
                                "[\"%s%zu@example.org\"],\"body\":\"m%zu\"}",
                                i ? "," : "", tag, i, i);
    snprintf(body + len, cap - len, "]}");
    json_t *j = call(s, "POST", "/v1/messages/batch", ASYNC, body, &st, NULL);
    free(body);
    assert_int_equal(st, 202);
    json_t *res = json_object_get(j, "results");
    assert_int_equal(json_array_size(res), n);
    for (size_t i = 0; i < n; i++)
        ids[i] = strdup(jstr(json_array_get(res, i), "id"));
    json_decref(j);
    return ids;
}

/* The one number psql printed for sql in db. */
static long pg_count(const char *db, const char *sql)
{
    char *out = pg_sql(db, sql);
    long v = strtol(out, NULL, 10);
    free(out);
    return v;
}

/* Replica A holds a claimed, unstarted message whose lease lapsed (its
   renewals did not reach the database); replica B's reaper queues it
   again and A's next claim finds it: A must not get it a second time
   (two jobs would both start and send it), and the job A already holds
   starts it, once. */
static void test_a_replica_never_holds_two_claims_of_one_message(void **state)
{
    (void)state;
    char err[512], url[300], sql[256];
    const char *db = pg_db(NULL);
    snprintf(url, sizeof url,
             "host=127.0.0.1 port=%d user=postgres "
             "dbname=%s",
             pg.port, db);
    struct queue_opts oa = { .backend = "postgres",
                             .url = url,
                             .password_file = pg.pwfile,
                             .lease_s = 60,
                             .retention_s = 86400,
                             .idem_ttl_s = 86400 };
    struct queue_opts ob = oa;
    ob.lease_s = 1;
    struct queue *a, *b;
    if (queue_open(&oa, &a, err, sizeof err) < 0)
        fail_msg("open A: %s", err);
    if (queue_open(&ob, &b, err, sizeof err) < 0)
        fail_msg("open B: %s", err);
    struct queue_new m = { .blob = "x", .blob_len = 1 };
    atomic_int done = 0;
    queue_new_id(m.id);
    assert_int_equal(queue_enqueue(a, &m, 1, NULL, enqueued, &done), QUEUE_OK);
    for (long long end = now_ms() + 5000; done == 0; sleep_ms(10))
        if (now_ms() > end)
            fail_msg("the enqueue did not finish");
    assert_int_equal(done, 1);
    struct queue_claimed *c;
    size_t n;
    assert_int_equal(queue_claim(a, (double)time(NULL) + 1, 10, 60, &c, &n),
                     QUEUE_OK);
    assert_int_equal(n, 1);
    queue_claimed_free(c, n);
    snprintf(sql, sizeof sql,
             "UPDATE mailpool_messages SET lease_until ="
             " 1 WHERE id = '%s'",
             m.id);
    free(pg_sql(db, sql)); /* A's renewals failed meanwhile */
    for (long long end = now_ms() + 8000;
         pg_count(db, "SELECT count(*) FROM mailpool_messages WHERE"
                      " state = 0") != 1;
         sleep_ms(100))
        if (now_ms() > end)
            fail_msg("B's reaper did not queue the lapsed claim again");
    assert_int_equal(queue_claim(a, (double)time(NULL) + 1, 10, 60, &c, &n),
                     QUEUE_OK);
    assert_int_equal(n, 0); /* held here already */
    queue_claimed_free(c, n);
    assert_int_equal(queue_start(a, m.id), QUEUE_OK);
    struct queue_attempt at = { .at = (double)time(NULL),
                                .code = 250,
                                .status = "sent",
                                .enhanced = "2.0.0",
                                .text = "ok",
                                .accepted = "r@example.org",
                                .rejected = "",
                                .error = "" };
    assert_int_equal(queue_record(a, m.id, &at, QUEUE_SENT, 0), QUEUE_OK);
    assert_int_equal(queue_claim(b, (double)time(NULL) + 1, 10, 1, &c, &n),
                     QUEUE_OK);
    assert_int_equal(n, 0);
    queue_claimed_free(c, n);
    queue_close(b);
    queue_close(a);
}

/* Three replicas on one database, 300 messages posted through one: each
   reaches the relay exactly once, whichever replica sent it; the claim
   log holds one claim per message, by more than one replica. */
static void test_three_replicas_deliver_a_batch_exactly_once(void **state)
{
    (void)state;
    enum { N = 300, R = 3 };
    struct peer *p = relay("{'rules': [{'match': '^DOT$', "
                           "'action': 'delay:0.01'}]}");
    static const char *const two[] = { "--pool-workers", "2",
                                       "--pool-connections", "2", NULL };
    struct mpserve *s[R];
    for (int r = 0; r < R; r++)
        s[r] = svc(p, "replicas-batch", two);
    char **ids = post_batch(s[0], N);
    for (size_t i = 0; i < N; i++) {
        json_t *d = wait_final(s[i % R], ids[i], 60000);
        assert_string_equal(jstr(d, "status"), "sent");
        if (copies(p, jstr(d, "message_id")) != 1)
            fail_msg("%s reached the relay %zu times", ids[i],
                     copies(p, jstr(d, "message_id")));
        json_decref(d);
        free(ids[i]);
    }
    free(ids);
    for (int r = 0; r < R; r++) {
        assert_int_equal(mpserve_stop_clean(s[r], 10000), 0);
        mpserve_free(s[r]);
    }
    const char *db = pg_db("replicas-batch");
    assert_int_equal(msgs_total(p), N);
    assert_int_equal(pg_count(db, "SELECT count(*) FROM mailpool_claims"), N);
    assert_int_equal(pg_count(db, "SELECT count(*) FROM (SELECT message"
                                  " FROM mailpool_claims GROUP BY message"
                                  " HAVING count(*) > 1) d"),
                     0);
    assert_true(pg_count(db, "SELECT count(DISTINCT owner) FROM"
                             " mailpool_claims") >= 2);
    peer_stop(p);
}

/* A replica killed (SIGKILL) with two messages on the wire (their final
   dot unanswered) and two more claimed but waiting for a worker (pool of
   two): once the lease ends, another replica's reaper makes the two on
   the wire unknown, never sent again, and queues the two never started
   again; the other replica sends those and every message the dead one
   never claimed, each exactly once.  The claim log shows the two
   unstarted ones claimed by both replicas, every other message once. */
static void test_replica_killed_started_end_unknown_unstarted_sent_once(
    void **state)
{
    (void)state;
    enum { N = 8 };
    struct peer *p = relay("{'rules': [{'match': '^DOT$', 'times': 2, "
                           "'action': 'hang'}]}");
    static const char *const two[] = { "--pool-workers", "2",
                                       "--pool-connections", "2", NULL };
    struct mpserve *a = svc(p, "replicas-kill", two);
    char **ids = post_batch(a, N);
    const char *db = pg_db("replicas-kill");
    for (long long end = now_ms() + 10000;; sleep_ms(20)) {
        if (peer_conn_count(p) >= 2 &&
            pg_count(db, "SELECT count(*) FROM mailpool_messages WHERE"
                         " state = 2") >= 4)
            break;
        if (now_ms() > end)
            fail_msg("the first replica never had four messages claimed");
    }
    sleep_ms(500); /* both dots are out, unanswered */
    long claimed = pg_count(db, "SELECT count(*) FROM mailpool_claims");
    assert_int_equal(claimed, 4); /* two on the wire, two waiting */
    mpserve_signal(a, SIGKILL);
    mpserve_wait(a, 5000);
    mpserve_free(a);
    struct mpserve *b = svc(p, "replicas-kill", NULL);
    size_t unknown = 0, sent = 0;
    for (size_t i = 0; i < N; i++) {
        int u = sent_once_or_unknown(b, p, ids[i]);
        unknown += u;
        sent += !u;
        free(ids[i]);
    }
    free(ids);
    sleep_ms(500); /* nothing more is sent */
    assert_int_equal(mpserve_stop_clean(b, 10000), 0);
    mpserve_free(b);
    /* The two on the wire ended unknown, with the reaper's attempt; the
       six others were sent, once each (the relay took six). */
    assert_int_equal(unknown, 2);
    assert_int_equal(sent, N - 2);
    assert_int_equal(msgs_total(p), N - 2);
    assert_int_equal(pg_count(db, "SELECT count(*) FROM mailpool_attempts"
                                  " WHERE status = 'unknown' AND code = 421"),
                     2);
    /* The two claimed but never started: claimed by the dead replica
       and by the other, one attempt each (the first claim uncounted),
       sent. */
    assert_int_equal(pg_count(db, "SELECT count(*) FROM (SELECT message"
                                  " FROM mailpool_claims GROUP BY message"
                                  " HAVING count(DISTINCT owner) = 2 AND"
                                  " count(*) = 2) d"),
                     2);
    assert_int_equal(pg_count(db, "SELECT count(*) FROM (SELECT message"
                                  " FROM mailpool_claims GROUP BY message"
                                  " HAVING count(*) > 1) d"),
                     2);
    assert_int_equal(pg_count(db, "SELECT count(*) FROM mailpool_messages m"
                                  " WHERE state = 4 AND attempts = 1 AND id IN"
                                  " (SELECT message FROM mailpool_claims GROUP"
                                  " BY message HAVING count(*) = 2) AND (SELECT"
                                  " count(*) FROM mailpool_attempts WHERE"
                                  " message = m.id) = 1"),
                     2);
    peer_stop(p);
}

/* 1 when the relay took, over all its connections, each of the n
   recipients <tag><i>@example.org of every batch (tags b0.., nb of them,
   per of each) exactly once, and nothing else. */
static int relay_took_each_once(struct peer *p, size_t nb, size_t per)
{
    struct peer_msg *m = NULL;
    size_t n = 0, bad = 0;
    unsigned char *seen = calloc(nb * per, 1);
    assert_non_null(seen);
    assert_int_equal(peer_messages(p, &m, &n), 0);
    for (size_t i = 0; i < n; i++) {
        size_t b, k;
        char at[32];
        if (m[i].nrcpt != 1 ||
            sscanf(m[i].rcpt_to[0], "b%zu-%zu@%31s", &b, &k, at) != 3 ||
            b >= nb || k >= per || seen[b * per + k]++ != 0)
            bad++;
    }
    for (size_t i = 0; i < nb * per; i++)
        bad += seen[i] != 1;
    if (bad != 0 || n != nb * per)
        fprintf(stderr, "relay took %zu messages for %zu, %zu wrong\n", n,
                nb * per, bad);
    peer_msgs_free(m, n);
    free(seen);
    return bad == 0 && n == nb * per;
}

/* R replicas on database name (4 workers, 4 connections each), NB async
   batches of PER messages posted round-robin across them: every message
   ends sent, the counting relay took each exactly once, and the claim
   log holds one claim per message, spread over every replica. */
static void scale_run(const char *name, int R, size_t NB, size_t PER)
{
    static const char *const four[] = { "--pool-workers", "4",
                                        "--pool-connections", "4", NULL };
    struct peer *p = relay("{}");
    struct mpserve *s[4];
    long long t0;
    size_t N = NB * PER;
    char tag[32], sql[128];
    assert_true(R <= 4);
    for (int r = 0; r < R; r++)
        s[r] = svc(p, name, four);
    const char *db = pg_db(name);
    t0 = now_ms();
    for (size_t b = 0; b < NB; b++) {
        snprintf(tag, sizeof tag, "b%zu-", b);
        char **ids = post_batch_to(s[b % (size_t)R], tag, PER);
        for (size_t i = 0; i < PER; i++)
            free(ids[i]);
        free(ids);
    }
    long long posted = now_ms();
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM mailpool_messages"
             " WHERE state = 4");
    for (long long end = now_ms() + 240000; pg_count(db, sql) < (long)N;
         sleep_ms(250))
        if (now_ms() > end)
            fail_msg("%ld of %zu sent in 240 s", pg_count(db, sql), N);
    fprintf(stderr,
            "%d replicas: %zu messages posted in %lld ms, all sent"
            " after %lld ms\n",
            R, N, posted - t0, now_ms() - t0);
    for (int r = 0; r < R; r++) {
        assert_int_equal(mpserve_stop_clean(s[r], 20000), 0);
        mpserve_free(s[r]);
    }
    assert_true(relay_took_each_once(p, NB, PER));
    assert_int_equal(pg_count(db, "SELECT count(*) FROM mailpool_messages"),
                     (long)N);
    assert_int_equal(pg_count(db, "SELECT count(*) FROM mailpool_claims"),
                     (long)N);
    assert_int_equal(pg_count(db, "SELECT count(*) FROM (SELECT message"
                                  " FROM mailpool_claims GROUP BY message"
                                  " HAVING count(*) > 1) d"),
                     0);
    assert_int_equal(pg_count(db, "SELECT count(DISTINCT owner) FROM"
                                  " mailpool_claims"),
                     R);
    peer_stop(p);
}

/* Two replicas on one database, 10,000 messages posted across both:
   each delivered exactly once, each claimed once. */
static void test_two_replicas_deliver_10000_messages_exactly_once(void **state)
{
    (void)state;
    scale_run("scale-two", 2, 20, 500);
}

/* Four replicas on one database, 10,000 messages posted across them:
   each delivered exactly once, each claimed once, by all four. */
static void test_four_replicas_deliver_10000_messages_exactly_once(void **state)
{
    (void)state;
    scale_run("scale-four", 4, 20, 500);
}

/* Finished messages past queue.retention are purged with their attempts
   and their rows in the claim log (which would otherwise grow for ever):
   a replica started after the retention purges at its first reap. */
static void test_retention_purges_messages_with_their_claim_log(void **state)
{
    (void)state;
    static const char *const keep1[] = { "--queue-retention", "1", NULL };
    struct peer *p = relay("{}");
    struct mpserve *s = svc(p, "retention", keep1);
    char **ids = post_batch(s, 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *d = wait_final(s, ids[i], 10000);
        assert_string_equal(jstr(d, "status"), "sent");
        json_decref(d);
        free(ids[i]);
    }
    free(ids);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    const char *db = pg_db("retention");
    assert_int_equal(pg_count(db, "SELECT count(*) FROM mailpool_claims"), 3);
    sleep_ms(1500); /* past the retention */
    s = svc(p, "retention", keep1);
    for (long long end = now_ms() + 10000;
         pg_count(db, "SELECT count(*)"
                      " FROM mailpool_messages") > 0;
         sleep_ms(100))
        if (now_ms() > end)
            fail_msg("finished messages were not purged");
    sleep_ms(300); /* the purge's last statements */
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    assert_int_equal(pg_count(db, "SELECT count(*) FROM mailpool_attempts"), 0);
    assert_int_equal(pg_count(db, "SELECT count(*) FROM mailpool_claims"), 0);
    assert_int_equal(msgs_total(p), 3);
    peer_stop(p);
}

struct starter {
    struct peer *p;
    struct mpserve *s;
};

/* Starts one replica on the database "replicas-ten" (made before): no
   cmocka assertion here, off the test's thread; NULL when it failed. */
static void *start_one(void *arg)
{
    struct starter *st = arg;
    const char *argv[16];
    char url[300];
    size_t n = 0;
    queue_flags(argv, &n, "replicas-ten", url, sizeof url);
    argv[n] = NULL;
    st->s = mpserve_start(peer_port(st->p), argv);
    return NULL;
}

/* Ten replicas starting at once on a new database: every one starts, and
   the schema was migrated once (one row per version). */
static void test_ten_replicas_starting_at_once_migrate_once(void **state)
{
    (void)state;
    enum { R = 10 };
    struct peer *p = relay("{}");
    struct starter st[R];
    pthread_t t[R];
    const char *db = pg_db("replicas-ten"); /* created, empty */
    for (int r = 0; r < R; r++) {
        st[r].p = p;
        st[r].s = NULL;
        assert_int_equal(pthread_create(&t[r], NULL, start_one, &st[r]), 0);
    }
    int up = 0;
    for (int r = 0; r < R; r++) {
        pthread_join(t[r], NULL);
        up += st[r].s != NULL;
    }
    if (up < R) {
        for (int r = 0; r < R; r++)
            mpserve_free(st[r].s);
        fail_msg("%d of %d replicas did not start", R - up, R);
    }
    char *id = post_async(st[R - 1].s, "r@example.org", NULL);
    json_t *d = wait_final(st[0].s, id, 10000);
    assert_string_equal(jstr(d, "status"), "sent");
    json_decref(d);
    free(id);
    for (int r = 0; r < R; r++) {
        assert_int_equal(mpserve_stop_clean(st[r].s, 10000), 0);
        mpserve_free(st[r].s);
    }
    /* Each schema version applied once (four today), all by one of
       the ten. */
    assert_int_equal(pg_count(db, "SELECT count(*) FROM"
                                  " mailpool_migrations"),
                     4);
    assert_int_equal(pg_count(db, "SELECT count(DISTINCT version) FROM"
                                  " mailpool_migrations"),
                     4);
    assert_int_equal(pg_count(db, "SELECT count(DISTINCT applied_by) FROM"
                                  " mailpool_migrations"),
                     1);
    peer_stop(p);
}
#endif

#define T(fn) cmocka_unit_test(fn)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_reaper_queues_the_unstarted_and_ends_the_started_unknown),
        T(test_async_202_means_stored_then_sent_once_with_its_message_id),
        T(test_message_log_filters_and_pages_on_this_backend),
        T(test_sync_sends_are_in_the_message_log_with_the_relay_words),
        T(test_log_sync_false_keeps_sync_sends_out_of_the_log),
        T(test_async_batch_is_validated_whole_and_nothing_is_queued),
        T(test_unknown_id_is_404_and_send_at_in_sync_is_422),
        T(test_scheduled_waits_for_send_at_and_cancel_stops_it),
        T(test_temporary_failures_retry_with_backoff_then_sent),
        T(test_permanent_failure_is_final_after_one_attempt),
        T(test_partial_retries_only_the_deferred_recipients),
        T(test_each_state_change_writes_its_event_with_it),
        T(test_50_concurrent_posts_with_one_key_send_once),
        T(test_async_repeat_with_key_returns_same_id_other_body_422),
        T(test_sigkill_while_sending_makes_it_unknown_never_resent),
        T(test_sigkill_leaves_the_unstarted_claim_queued_sent_once),
        T(test_crash_matrix_every_202_final_none_lost_none_twice),
        T(test_sigterm_leaves_the_rest_queued_for_the_next_start),
        T(test_cancel_racing_the_claim_one_wins_never_both),
#ifndef QUEUE_TEST_PG
        T(test_full_or_read_only_disk_is_503_and_loses_nothing),
        T(test_one_worker_claims_sixteen_sigkill_sends_the_unstarted_once),
        T(test_read_only_database_is_a_start_error_exit_2),
#else
        T(test_read_only_database_is_503_and_a_start_error_exit_2),
        T(test_postgres_restart_is_503_and_unready_while_down_no_202_lost),
        T(test_silent_postgres_is_unready_within_seconds_then_ready),
        T(test_three_replicas_deliver_a_batch_exactly_once),
        T(test_two_replicas_deliver_10000_messages_exactly_once),
        T(test_four_replicas_deliver_10000_messages_exactly_once),
        T(test_replica_killed_started_end_unknown_unstarted_sent_once),
        T(test_ten_replicas_starting_at_once_migrate_once),
        T(test_retention_purges_messages_with_their_claim_log),
        T(test_a_replica_never_holds_two_claims_of_one_message),
#endif
    };
    signal(SIGPIPE, SIG_IGN);
    /* libcurl's global state before any thread uses it (the concurrent
       idempotency test runs 50 clients at once). */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    if (getenv("QUEUE_TEST_FILTER") != NULL) /* one test by name */
        cmocka_set_test_filter(getenv("QUEUE_TEST_FILTER"));
#ifdef QUEUE_TEST_PG
    if (pg_up() < 0)
        return 1;
#endif
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
#ifdef QUEUE_TEST_PG
    pg_down();
#endif
    curl_global_cleanup();
    return rc;
}
