/*
 * fixture.c - the fixture of the queue suite (qfx.h): the fake relay
 * (tests/fakes/fake_smtp.py, which records every message it took),
 * `mailpool serve` on a queue of this backend (a file, or on PostgreSQL a
 * database per queue name with a short lease), the HTTP calls of the
 * message API and the counts of what reached the relay.
 */
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>

#include "tests/integration/queue/qfx.h"

/* The fake relay running script (single quotes allowed). */
struct peer *relay(const char *script)
{
    char *s = ts_dq(script);
    struct peer *p = peer_start_fake(s);
    free(s);
    assert_non_null(p);
    return p;
}

/* Appends the flags choosing the queue of name qpath (NULL: a new one)
   to argv at *n; url (of urllen bytes) holds the PostgreSQL URL. */
void queue_flags(const char **argv, size_t *n, const char *qpath, char *url,
                 size_t urllen)
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
struct mpserve *svc(struct peer *p, const char *qpath, const char *const *more)
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
int serve_fails(const char *qpath, char **log)
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
json_t *call(struct mpserve *s, const char *method, const char *path,
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

const char *const ASYNC[] = { "Content-Type: application/json",
                              "Prefer: respond-async", NULL };
const char *const JSONH[] = { "Content-Type: application/json", NULL };

/* Member k of object o as a string ("" when it is none). */
const char *jstr(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s != NULL ? s : "";
}

/* POSTs one message asynchronously; its queue id (caller frees). */
char *post_async(struct mpserve *s, const char *to, const char *extra)
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
json_t *status_of(struct mpserve *s, const char *id, long *st)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/messages/%s", id);
    return call(s, "GET", path, NULL, NULL, st, NULL);
}

/* Waits (at most ms) until message id's status is final; the document. */
json_t *wait_final(struct mpserve *s, const char *id, int ms)
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
size_t copies(struct peer *p, const char *mid)
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
size_t msgs_total(struct peer *p)
{
    struct peer_msg *m = NULL;
    size_t n = 0;
    assert_int_equal(peer_messages(p, &m, &n), 0);
    peer_msgs_free(m, n);
    return n;
}

long metric_of(struct mpserve *s, const char *name)
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

/* MAIL commands the relay received, over every connection. */
size_t count_mail_commands(struct peer *p)
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
int sent_once_or_unknown(struct mpserve *s, struct peer *p, const char *id)
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
char *temp_queue(char **dir)
{
    char tmpl[] = "/tmp/mailpool-q-XXXXXX", *path;
    assert_non_null(mkdtemp(tmpl));
    *dir = strdup(tmpl);
    assert_true(asprintf(&path, "%s/queue.db", tmpl) > 0);
    return path;
}

/* queue_done_fn: *ctx becomes 1 (stored) or -1. */
void enqueued(void *ctx, int rc, const struct queue_idem_hit *hit)
{
    (void)hit;
    atomic_store((atomic_int *)ctx, rc == QUEUE_OK ? 1 : -1);
}

/* An async POST through s is a 503 problem with Retry-After. */
void async_post_is_503(struct mpserve *s)
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
