/*
 * test_webhooks.c - delivery events through `mailpool serve`: each state
 * change of a queued message writes an event in the transaction of the
 * change (the outbox), and the webhook threads POST it, signed as Standard
 * Webhooks do, to a receiver on 127.0.0.1 (tests/peers/webhook_receiver.py,
 * which checks every signature with the README's code and logs each POST).
 *
 * Proven on what the receiver got (ids, types, payload fields, whether the
 * signature verified) and on GET /v1/messages/{id} (events, their tries):
 * every message's final event arrives; a receiver down, then back, gets
 * every event; 500 then 200 is two tries, both recorded; a wrong secret
 * fails verification; a slow receiver does not slow sending; events
 * survive a SIGKILL between commit and delivery; 410 stops the type, also
 * across a restart, until the configuration changes; a secret file
 * readable by others stops the start.  The relay is the fake
 * (tests/fakes/fake_smtp.py).  SQLite queue (the PostgreSQL outbox is
 * proven by the shared queue suite, test_queue_pg).
 */
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <curl/curl.h>

#include "tests/integration/smtp_fx.h"
#include "tests/support/http.h"
#include "tests/support/mpserve.h"
#include "tests/support/tsupport.h"
#include "webhook/internal.h"

#define SECRET "whsec_bWFpbHBvb2wtd2ViaG9vay10ZXN0LXNlY3JldC0zMmI="
#define WRONG "whsec_YW5vdGhlci1zZWNyZXQtZW50aXJlbHktd3JvbmctMzI="

/* ---- the receiver ----------------------------------------------------- */

struct rx {
    pid_t pid;
    int port;
    char dir[128]; /* the test's directory */
    char log[192]; /* one JSON line per POST received */
    int tls;       /* HTTPS with dir's cert.pem, key.pem */
};

/* A file of the test's directory. */
static void in_dir(char *buf, size_t len, const char *dir, const char *name)
{
    snprintf(buf, len, "%s/%s", dir, name);
}

/* Writes text into dir/name with mode; the path into path. */
static void put_file(const char *dir, const char *name, const char *text,
                     mode_t mode, char *path, size_t len)
{
    in_dir(path, len, dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "%s\n", text);
    fclose(f);
    assert_int_equal(chmod(path, mode), 0);
}

/* rel under the sources' root ($MAILPOOL_ROOT, else the current
   directory) into buf; buf. */
static const char *root_path(char *buf, size_t len, const char *rel)
{
    const char *root = getenv("MAILPOOL_ROOT");
    snprintf(buf, len, "%s%s%s", root ? root : "", root ? "/" : "", rel);
    return buf;
}

/* Runs argv (NULL-ended) to its end, its output into dir/name: its exit
   code, or -1 when it did not exit. */
static int run_logged(const char *const *argv, const char *dir,
                      const char *name)
{
    char logpath[192];
    pid_t pid;
    int status = 0;
    char *const *av;
    memcpy(&av, &argv, sizeof av);
    in_dir(logpath, sizeof logpath, dir, name);
    assert_int_equal(ts_spawn_logged(&pid, av, logpath), 0);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Starts the receiver on port (0: a free one) checking with secret, and
   with SECRET too when secret is another (valid_other). */
static void rx_start(struct rx *r, const char *dir, int port,
                     const char *secret, const char *mode)
{
    char script[512], sfile[192], ofile[192], pfile[192], portarg[16],
        logpath[192];
    root_path(script, sizeof script, "tests/peers/webhook_receiver.py");
    snprintf(r->dir, sizeof r->dir, "%s", dir);
    in_dir(r->log, sizeof r->log, dir, "received.jsonl");
    put_file(dir, "rx-secret", secret, 0600, sfile, sizeof sfile);
    put_file(dir, "rx-other", SECRET, 0600, ofile, sizeof ofile);
    in_dir(pfile, sizeof pfile, dir, "rx-port");
    in_dir(logpath, sizeof logpath, dir, "rx.log");
    unlink(pfile);
    snprintf(portarg, sizeof portarg, "%d", port);
    const char *argv[18] = {
        "/usr/bin/python3", script, "--port", portarg, "--port-file", pfile,
        "--secret-file",    sfile,  "--log",  r->log,  "--mode",      mode
    };
    size_t n = 12;
    if (r->tls) {
        argv[n++] = "--tls-dir";
        argv[n++] = dir;
    }
    if (strcmp(secret, SECRET) != 0) {
        argv[n++] = "--other-secret-file";
        argv[n++] = ofile;
    }
    argv[n] = NULL;
    char *const *av;
    const char **cav = argv;
    memcpy(&av, &cav, sizeof av);
    assert_int_equal(ts_spawn_logged(&r->pid, av, logpath), 0);
    for (long long end = now_ms() + 10000; now_ms() < end; sleep_ms(20)) {
        char *p = ts_slurp(pfile, NULL);
        if (p != NULL) {
            r->port = (int)strtol(p, NULL, 10);
            free(p);
            return;
        }
    }
    fail_msg("the webhook receiver did not start");
}

/* Stops the receiver by its pid. */
static void rx_stop(struct rx *r)
{
    if (r->pid > 0) {
        kill(r->pid, SIGTERM);
        waitpid(r->pid, NULL, 0);
    }
    r->pid = 0;
}

/* Every POST the receiver logged so far, as an array of objects. */
static json_t *rx_posts(const struct rx *r)
{
    json_t *arr = json_array();
    char *text = ts_slurp(r->log, NULL);
    for (char *line = text, *nl; line != NULL && *line != '\0'; line = nl + 1) {
        json_error_t e;
        nl = strchr(line, '\n');
        if (nl == NULL)
            break;
        *nl = '\0';
        json_t *o = json_loads(line, 0, &e);
        if (o != NULL)
            json_array_append_new(arr, o);
    }
    free(text);
    return arr;
}

/* How many POSTs carried an event of message id, and of those how many
   verified; the last one's body in *last (borrowed from posts). */
static size_t posts_for(json_t *posts, const char *id, size_t *valid,
                        json_t **last)
{
    size_t i, n = 0;
    json_t *p;
    if (valid != NULL)
        *valid = 0;
    json_array_foreach(posts, i, p)
    {
        json_t *body = json_object_get(p, "body");
        const char *mid = json_string_value(
            json_object_get(json_object_get(body, "data"), "id"));
        if (mid == NULL || strcmp(mid, id) != 0)
            continue;
        n++;
        if (valid != NULL && json_is_true(json_object_get(p, "valid")))
            (*valid)++;
        if (last != NULL)
            *last = body;
    }
    return n;
}

/* Waits (at most ms) until each of ids[0..n) has a POST of an event of
   type; the posts then (caller decrefs). */
static json_t *rx_wait(const struct rx *r, char **ids, size_t n,
                       const char *type, int ms)
{
    for (long long end = now_ms() + ms;; sleep_ms(50)) {
        json_t *posts = rx_posts(r);
        size_t have = 0, i;
        for (size_t k = 0; k < n; k++) {
            json_t *p;
            json_array_foreach(posts, i, p)
            {
                json_t *b = json_object_get(p, "body");
                const char *mid = json_string_value(
                    json_object_get(json_object_get(b, "data"), "id"));
                const char *t = json_string_value(json_object_get(b, "type"));
                if (mid && t && strcmp(mid, ids[k]) == 0 &&
                    strcmp(t, type) == 0) {
                    have++;
                    break;
                }
            }
        }
        if (have == n)
            return posts;
        json_decref(posts);
        if (now_ms() > end)
            fail_msg("%zu of %zu %s events arrived in %d ms", have, n, type,
                     ms);
    }
}

/* ---- the service ------------------------------------------------------ */

/* A temporary directory for one test (caller: ts_rmtree, free). */
static char *temp_dir(void)
{
    char *d = strdup("/tmp/mailpool-webhook-XXXXXX");
    assert_non_null(d);
    assert_non_null(mkdtemp(d));
    return d;
}

/* Starts the service on dir's queue, its webhook the receiver's port,
   secret SECRET, a schedule of 1 s waits; more flags (NULL-ended). */
static struct mpserve *svc(struct peer *p, const char *dir, int port,
                           const char *const *more)
{
    static char url[64], q[192], sfile[192];
    const char *argv[40] = { "--queue-path",
                             q,
                             "--webhook-url",
                             url,
                             "--webhook-secret-file",
                             sfile,
                             "--webhook-retry-schedule",
                             "1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s",
                             "--webhook-timeout",
                             "10",
                             "--queue-retry-base",
                             "0.2",
                             "--pool-retries",
                             "0" };
    size_t n = 14;
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hook", port);
    in_dir(q, sizeof q, dir, "queue.db");
    put_file(dir, "secret", SECRET, 0600, sfile, sizeof sfile);
    for (size_t i = 0; more != NULL && more[i] != NULL && n < 38; i++)
        argv[n++] = more[i];
    argv[n] = NULL;
    struct mpserve *s = mpserve_start(peer_port(p), argv);
    assert_non_null(s);
    return s;
}

/* One request; the parsed JSON body (NULL when none) and the status. */
static json_t *call(struct mpserve *s, const char *method, const char *path,
                    const char *body, long *status)
{
    static const char *const hdrs[] = { "Content-Type: application/json",
                                        "Prefer: respond-async", NULL };
    char url[256];
    struct http_resp r;
    json_error_t e;
    snprintf(url, sizeof url, "%s%s", mpserve_url(s), path);
    assert_int_equal(http_request(method, url, body ? hdrs : NULL, body, 0, &r),
                     0);
    *status = r.status;
    json_t *j = r.body != NULL ? json_loads(r.body, 0, &e) : NULL;
    http_resp_free(&r);
    return j;
}

static const char *jstr(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s != NULL ? s : "";
}

/* The string at index i of o's array k; "" when there is none. */
static const char *item(const json_t *o, const char *k, size_t i)
{
    const char *s = json_string_value(json_array_get(json_object_get(o, k), i));
    return s != NULL ? s : "";
}

/* POSTs one message asynchronously to `to`; its queue id (caller frees). */
static char *post_async(struct mpserve *s, const char *to)
{
    char body[512];
    long st;
    snprintf(body, sizeof body,
             "{\"from\":\"s@example.org\",\"to\":[\"%s\"],"
             "\"headers\":{\"Subject\":\"w\"},\"body\":\"hello\","
             "\"metadata\":{\"order\":\"o-17\"}}",
             to);
    json_t *j = call(s, "POST", "/v1/messages", body, &st);
    if (st != 202)
        fail_msg("async POST answered %ld", st);
    char *id = strdup(jstr(j, "id"));
    json_decref(j);
    return id;
}

/* GET /v1/messages/id (caller decrefs). */
static json_t *status_of(struct mpserve *s, const char *id)
{
    char path[128];
    long st;
    snprintf(path, sizeof path, "/v1/messages/%s", id);
    json_t *j = call(s, "GET", path, NULL, &st);
    assert_int_equal(st, 200);
    return j;
}

/* Waits (at most ms) until message id's event of type is in state; the
   event (a new reference). */
static json_t *wait_event(struct mpserve *s, const char *id, const char *type,
                          const char *state, int ms)
{
    for (long long end = now_ms() + ms;; sleep_ms(50)) {
        json_t *d = status_of(s, id), *e;
        size_t i;
        json_array_foreach(json_object_get(d, "events"), i,
                           e) if (strcmp(jstr(e, "type"), type) == 0 &&
                                  strcmp(jstr(e, "state"), state) == 0)
        {
            json_incref(e);
            json_decref(d);
            return e;
        }
        if (now_ms() > end) {
            char *t = json_dumps(d, 0);
            fail_msg("no %s event %s for %s in %d ms: %s", type, state, id, ms,
                     t ? t : "?");
        }
        json_decref(d);
    }
}

/* The value of a /metrics line starting with name (-1: none). */
static long metric(struct mpserve *s, const char *name)
{
    char url[256];
    struct http_resp r;
    long v = -1;
    snprintf(url, sizeof url, "%s/metrics", mpserve_url(s));
    assert_int_equal(http_request("GET", url, NULL, NULL, 0, &r), 0);
    for (const char *p = r.body; p != NULL && (p = strstr(p, name)) != NULL;
         p++)
        if ((p == r.body || p[-1] == '\n') && p[strlen(name)] == ' ') {
            v = strtol(p + strlen(name) + 1, NULL, 10);
            break;
        }
    http_resp_free(&r);
    return v;
}

/* A port that was free a moment ago, where a receiver will come later. */
static int later_port(void)
{
    int port = mpserve_free_port();
    assert_true(port > 0);
    return port;
}

/* ---- one test's world ------------------------------------------------ */

/* A test's directory, receiver, relay and service. */
struct wh {
    char *dir;
    struct rx r;
    int port; /* the receiver's, even while it is down */
    struct peer *p;
    struct mpserve *s;
};

/* Sets w up: the receiver in mode under secret (mode NULL: none yet, its
   port kept for later), the relay on script, the service with more flags
   (NULL-ended, may be NULL). */
static void wh_up(struct wh *w, const char *mode, const char *secret,
                  const char *script, const char *const *more)
{
    memset(w, 0, sizeof *w);
    w->dir = temp_dir();
    if (mode != NULL) {
        rx_start(&w->r, w->dir, 0, secret, mode);
        w->port = w->r.port;
    } else {
        w->port = later_port();
    }
    char *sc = ts_dq(script); /* the fake relay's script */
    w->p = peer_start_fake(sc);
    free(sc);
    assert_non_null(w->p);
    w->s = svc(w->p, w->dir, w->port, more);
}

/* Stops the service (cleanly), the relay and the receiver; removes the
   directory. */
static void wh_down(struct wh *w)
{
    if (w->s != NULL)
        assert_int_equal(mpserve_stop_clean(w->s, 10000), 0);
    mpserve_free(w->s);
    peer_stop(w->p);
    rx_stop(&w->r);
    ts_rmtree(w->dir);
    free(w->dir);
}

/* Posts n messages asynchronously; their ids into ids (caller frees). */
static void post_some(struct wh *w, char **ids, int n)
{
    for (int i = 0; i < n; i++)
        ids[i] = post_async(w->s, "r@example.org");
}

/* ---- tests ------------------------------------------------------------ */

/* Five messages sent: five message.sent events reach the receiver, each
   signed (verified with the README's code), with the message's fields;
   GET shows each delivered with its one try (200); /metrics counts 5. */
static void test_every_sent_message_posts_one_signed_sent_event(void **st)
{
    (void)st;
    struct wh w;
    char *ids[5];
    wh_up(&w, "ok", SECRET, "{}", NULL);
    post_some(&w, ids, 5);
    json_t *posts = rx_wait(&w.r, ids, 5, "message.sent", 15000);
    for (int i = 0; i < 5; i++) {
        size_t valid;
        json_t *b = NULL;
        assert_int_equal(posts_for(posts, ids[i], &valid, &b), 1);
        assert_int_equal(valid, 1);
        json_t *d = json_object_get(b, "data"), *m = status_of(w.s, ids[i]);
        assert_int_equal(strncmp(jstr(b, "id"), "evt_", 4), 0);
        assert_int_equal(strlen(jstr(b, "id")), 36);
        assert_string_equal(jstr(d, "status"), "sent");
        assert_int_equal(json_integer_value(json_object_get(d, "code")), 250);
        assert_int_equal(json_integer_value(json_object_get(d, "attempt")), 1);
        assert_string_equal(item(d, "accepted", 0), "r@example.org");
        assert_string_equal(jstr(d, "message_id"), jstr(m, "message_id"));
        assert_string_equal(jstr(json_object_get(d, "metadata"), "order"),
                            "o-17");
        json_t *e = wait_event(w.s, ids[i], "message.sent", "delivered", 5000);
        assert_string_equal(jstr(e, "id"), jstr(b, "id"));
        assert_true(json_is_string(json_object_get(e, "delivered_at")));
        json_t *tries = json_object_get(e, "attempts");
        assert_int_equal(json_array_size(tries), 1);
        assert_int_equal(json_integer_value(json_object_get(
                             json_array_get(tries, 0), "http_status")),
                         200);
        json_decref(e);
        json_decref(m);
        free(ids[i]);
    }
    json_decref(posts);
    assert_int_equal(metric(w.s, "mailpool_webhook_deliveries_total{result="
                                 "\"delivered\"}"),
                     5);
    wh_down(&w);
}

/* A relay that answers 451 once: message.deferred (code 451 and its
   words) then message.sent, both delivered. */
static void test_a_retry_posts_deferred_then_sent(void **st)
{
    (void)st;
    struct wh w;
    wh_up(&w, "ok", SECRET,
          "{'rules': [{'match': '^MAIL', 'times': 1, "
          "'reply': '451 4.3.0 try again later'}]}",
          NULL);
    char *id = post_async(w.s, "r@example.org");
    json_decref(rx_wait(&w.r, &id, 1, "message.sent", 15000));
    json_t *posts = rx_wait(&w.r, &id, 1, "message.deferred", 1000), *b;
    size_t i;
    int seen = 0;
    json_array_foreach(posts, i, b)
    {
        json_t *body = json_object_get(b, "body");
        json_t *d = json_object_get(body, "data");
        if (strcmp(jstr(body, "type"), "message.deferred") != 0)
            continue;
        seen++;
        assert_true(json_is_true(json_object_get(b, "valid")));
        assert_string_equal(jstr(d, "status"), "retry");
        assert_int_equal(json_integer_value(json_object_get(d, "code")), 451);
        assert_string_equal(jstr(d, "enhanced"), "4.3.0");
        assert_non_null(strstr(item(d, "text", 0), "try again later"));
    }
    assert_int_equal(seen, 1);
    json_decref(posts);
    free(id);
    wh_down(&w);
}

/* A relay reply with a byte that is not UTF-8 (a Latin-1 e-acute) beside
   a UTF-8 one: the deferred event still goes, the stray byte as U+FFFD,
   the UTF-8 e-acute kept. */
static void test_a_reply_that_is_not_utf8_still_posts_its_event(void **st)
{
    (void)st;
    struct wh w;
    wh_up(&w, "ok", SECRET,
          "{'rules': [{'match': '^MAIL', 'times': 1, "
          "'raw_b64': 'NDUxIDQuMy4wIGNhZsOpIOkgYnVzeQ0K'}]}",
          NULL);
    char *id = post_async(w.s, "r@example.org");
    json_t *posts = rx_wait(&w.r, &id, 1, "message.deferred", 15000), *b;
    size_t i;
    int seen = 0;
    json_array_foreach(posts, i, b)
    {
        json_t *body = json_object_get(b, "body");
        if (strcmp(jstr(body, "type"), "message.deferred") != 0)
            continue;
        seen++;
        assert_string_equal(item(json_object_get(body, "data"), "text", 0),
                            "4.3.0 caf\xc3\xa9 \xef\xbf\xbd busy");
    }
    assert_int_equal(seen, 1);
    json_decref(posts);
    free(id);
    wh_down(&w);
}

/* A webhook.url may carry a token: the queue's database (SQLite's file
   and its WAL), which records what the events go to, holds only the
   URL's digest, never the URL. */
static void test_the_queue_database_never_holds_the_webhook_url(void **st)
{
    (void)st;
    char *dir = temp_dir(), path[256];
    struct peer *p = peer_start_fake("{}");
    assert_non_null(p);
    const char *more[] = { "--webhook-url",
                           "http://127.0.0.1:9/hook?token=tok-in-url-7f3a",
                           NULL };
    struct mpserve *s = svc(p, dir, 9, more);
    char *id = post_async(s, "r@example.org");
    json_decref(wait_event(s, id, "message.sent", "pending", 15000));
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    static const char *const files[] = { "queue.db", "queue.db-wal" };
    int read = 0;
    for (size_t i = 0; i < 2; i++) {
        size_t len = 0;
        in_dir(path, sizeof path, dir, files[i]);
        char *bytes = ts_slurp(path, &len);
        if (bytes == NULL)
            continue;
        read++;
        assert_null(memmem(bytes, len, "tok-in-url-7f3a", 15));
        assert_null(memmem(bytes, len, "127.0.0.1:9/hook", 16));
        free(bytes);
    }
    assert_true(read >= 1);
    free(id);
    peer_stop(p);
    ts_rmtree(dir);
    free(dir);
}

/* The receiver is down while three messages are sent (their tries fail,
   counted as network errors; test_queue shows each recorded with its
   error); once it listens, every event arrives. */
static void test_receiver_down_then_back_gets_every_event(void **st)
{
    (void)st;
    struct wh w;
    char *ids[3];
    wh_up(&w, NULL, SECRET, "{}", NULL);
    post_some(&w, ids, 3);
    sleep_ms(2500);
    json_decref(wait_event(w.s, ids[0], "message.sent", "pending", 1));
    assert_true(metric(w.s, "mailpool_webhook_deliveries_total{result="
                            "\"network_error\"}") >= 3);
    assert_true(metric(w.s, "mailpool_webhook_oldest_undelivered_seconds") >=
                1);
    rx_start(&w.r, w.dir, w.port, SECRET, "ok");
    json_t *posts = rx_wait(&w.r, ids, 3, "message.sent", 15000);
    for (int i = 0; i < 3; i++) {
        size_t valid;
        assert_int_equal(posts_for(posts, ids[i], &valid, NULL), 1);
        assert_int_equal(valid, 1);
        json_decref(wait_event(w.s, ids[i], "message.sent", "delivered", 5000));
        free(ids[i]);
    }
    json_decref(posts);
    assert_int_equal(metric(w.s, "mailpool_webhook_oldest_undelivered_"
                                 "seconds"),
                     0);
    wh_down(&w);
}

/* 500 then 200: the event is POSTed exactly twice, the same id both
   times, delivered, and GET lists both tries (500, 200). */
static void test_500_then_200_is_delivered_with_both_tries_recorded(void **st)
{
    (void)st;
    struct wh w;
    wh_up(&w, "fail:1", SECRET, "{}", NULL);
    char *id = post_async(w.s, "r@example.org");
    json_t *e = wait_event(w.s, id, "message.sent", "delivered", 15000);
    json_t *tries = json_object_get(e, "attempts");
    assert_int_equal(json_array_size(tries), 2);
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(tries, 0), "http_status")),
                     500);
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(tries, 1), "http_status")),
                     200);
    json_t *posts = rx_posts(&w.r), *one;
    size_t valid, i;
    assert_int_equal(posts_for(posts, id, &valid, NULL), 2);
    assert_int_equal(valid, 2);
    json_array_foreach(posts, i, one)
        assert_string_equal(jstr(one, "id"), jstr(e, "id"));
    json_decref(posts);
    json_decref(e);
    free(id);
    wh_down(&w);
}

/* A receiver holding another secret: the POST arrives, its signature does
   not verify, while the same POST verifies under the service's secret. */
static void test_wrong_secret_fails_verification(void **st)
{
    (void)st;
    struct wh w;
    wh_up(&w, "ok", WRONG, "{}", NULL);
    char *id = post_async(w.s, "r@example.org");
    json_t *posts = rx_wait(&w.r, &id, 1, "message.sent", 15000);
    size_t valid;
    assert_int_equal(posts_for(posts, id, &valid, NULL), 1);
    assert_int_equal(valid, 0);
    assert_true(
        json_is_true(json_object_get(json_array_get(posts, 0), "valid_other")));
    json_decref(posts);
    free(id);
    wh_down(&w);
}

/* A receiver that takes 5 s per POST: ten messages are still all sent
   within 3 s, and their events arrive meanwhile; the service stops
   promptly with POSTs under way. */
static void test_slow_receiver_does_not_slow_sending(void **st)
{
    (void)st;
    struct wh w;
    char *ids[10];
    wh_up(&w, "slow:5", SECRET, "{}", NULL);
    long long t0 = now_ms();
    post_some(&w, ids, 10);
    assert_int_equal(peer_wait_messages(w.p, 10, 3000), 10);
    long long sent_ms = now_ms() - t0;
    if (sent_ms > 3000)
        fail_msg("ten messages took %lld ms to send", sent_ms);
    json_t *posts = NULL;
    for (long long end = now_ms() + 15000; now_ms() < end; sleep_ms(100)) {
        json_decref(posts);
        posts = rx_posts(&w.r);
        if (json_array_size(posts) >= 4)
            break;
    }
    assert_true(json_array_size(posts) >= 4);
    json_decref(posts);
    long long stop0 = now_ms();
    assert_int_equal(mpserve_stop_clean(w.s, 10000), 0);
    assert_true(now_ms() - stop0 < 4000);
    for (int i = 0; i < 10; i++)
        free(ids[i]);
    wh_down(&w);
}

/* Messages sent (their events committed) while the receiver is down, the
   service SIGKILLed, started again on the same queue with the receiver
   up: every event arrives. */
static void test_events_survive_sigkill_between_commit_and_delivery(void **st)
{
    (void)st;
    struct wh w;
    char *ids[3];
    wh_up(&w, NULL, SECRET, "{}", NULL);
    post_some(&w, ids, 3);
    for (int i = 0; i < 3; i++)
        json_decref(wait_event(w.s, ids[i], "message.sent", "pending", 5000));
    assert_int_equal(mpserve_signal(w.s, SIGKILL), 0);
    assert_int_equal(mpserve_wait(w.s, 5000), 128 + SIGKILL);
    mpserve_free(w.s);
    rx_start(&w.r, w.dir, w.port, SECRET, "ok");
    w.s = svc(w.p, w.dir, w.port, NULL);
    json_t *posts = rx_wait(&w.r, ids, 3, "message.sent", 15000);
    for (int i = 0; i < 3; i++) {
        size_t valid;
        assert_int_equal(posts_for(posts, ids[i], &valid, NULL), 1);
        assert_int_equal(valid, 1);
        free(ids[i]);
    }
    json_decref(posts);
    wh_down(&w);
}

/* A receiver that answers 500 to every POST, a schedule of two short
   waits: three POSTs, then the event is failed and stays in GET with its
   three tries. */
static void test_an_event_past_its_schedule_is_failed_and_stays_visible(
    void **st)
{
    (void)st;
    static const char *const shortly[] = { "--webhook-retry-schedule",
                                           "200ms,200ms", NULL };
    struct wh w;
    wh_up(&w, "fail:99", SECRET, "{}", shortly);
    char *id = post_async(w.s, "r@example.org");
    json_t *e = wait_event(w.s, id, "message.sent", "failed", 15000);
    json_t *tries = json_object_get(e, "attempts"), *t;
    size_t i;
    assert_int_equal(json_array_size(tries), 3);
    json_array_foreach(tries, i, t) assert_int_equal(
        json_integer_value(json_object_get(t, "http_status")), 500);
    assert_true(json_is_null(json_object_get(e, "delivered_at")));
    json_t *posts = rx_posts(&w.r);
    assert_int_equal(posts_for(posts, id, NULL, NULL), 3);
    json_decref(posts);
    json_decref(e);
    free(id);
    wh_down(&w);
}

/* Restarts w's service with more flags (NULL-ended, may be NULL). */
static void restart(struct wh *w, const char *const *more)
{
    assert_int_equal(mpserve_stop_clean(w->s, 10000), 0);
    mpserve_free(w->s);
    w->s = svc(w->p, w->dir, w->port, more);
}

/* An https receiver with a self-signed certificate: by default its
   certificate is refused (no POST arrives, the try records why); with
   webhook.tls_verify = false the same event is delivered. */
static void test_https_is_verified_unless_tls_verify_is_false(void **st)
{
    (void)st;
    char url[64], cmd[512], script[256];
    struct wh w;
    wh_up(&w, NULL, SECRET, "{}", NULL);
    snprintf(url, sizeof url, "https://127.0.0.1:%d/hook", w.port);
    const char *https[] = { "--webhook-url", url, NULL };
    const char *trusting[] = { "--webhook-url", url, "--webhook-tls-verify",
                               "false", NULL };
    snprintf(cmd, sizeof cmd, "%s %s >/dev/null 2>&1",
             root_path(script, sizeof script, "tests/peers/make-cert.sh"),
             w.dir);
    assert_int_equal(system(cmd), 0);
    w.r.tls = 1;
    rx_start(&w.r, w.dir, w.port, SECRET, "ok");
    restart(&w, https);
    char *id = post_async(w.s, "r@example.org");
    json_t *e = NULL;
    for (long long end = now_ms() + 10000;
         e == NULL || json_array_size(json_object_get(e, "attempts")) == 0;
         sleep_ms(50)) {
        json_decref(e);
        e = wait_event(w.s, id, "message.sent", "pending", 1000);
        if (now_ms() > end)
            fail_msg("no try recorded");
    }
    json_t *t0 = json_array_get(json_object_get(e, "attempts"), 0);
    assert_true(json_is_null(json_object_get(t0, "http_status")));
    assert_non_null(strstr(jstr(t0, "error"), "certificate"));
    json_decref(e);
    json_t *posts = rx_posts(&w.r);
    assert_int_equal(json_array_size(posts), 0);
    json_decref(posts);
    restart(&w, trusting);
    json_decref(wait_event(w.s, id, "message.sent", "delivered", 15000));
    posts = rx_posts(&w.r);
    size_t valid;
    assert_int_equal(posts_for(posts, id, &valid, NULL), 1);
    assert_int_equal(valid, 1);
    json_decref(posts);
    free(id);
    wh_down(&w);
}

/* A receiver that redirects: the redirect is an answer like any other
   (307 recorded, retried later), never followed. */
static void test_a_redirect_is_not_followed(void **st)
{
    (void)st;
    struct wh w;
    wh_up(&w, "redirect", SECRET, "{}", NULL);
    char *id = post_async(w.s, "r@example.org");
    json_t *e = wait_event(w.s, id, "message.sent", "pending", 15000);
    for (long long end = now_ms() + 10000;
         json_array_size(json_object_get(e, "attempts")) == 0; sleep_ms(50)) {
        json_decref(e);
        e = wait_event(w.s, id, "message.sent", "pending", 1000);
        if (now_ms() > end)
            fail_msg("no try recorded");
    }
    assert_int_equal(
        json_integer_value(json_object_get(
            json_array_get(json_object_get(e, "attempts"), 0), "http_status")),
        307);
    sleep_ms(300);
    json_t *posts = rx_posts(&w.r), *one;
    size_t i;
    json_array_foreach(posts, i, one)
        assert_string_equal(jstr(one, "path"), "/hook");
    json_decref(posts);
    json_decref(e);
    free(id);
    wh_down(&w);
}

/* 410 stops message.sent: the next message's event is stopped without a
   POST, also after a restart with the same configuration; a changed
   webhook.events starts the type again. */
static void test_410_stops_the_type_until_the_configuration_changes(void **st)
{
    (void)st;
    static const char *const other[] = { "--webhook-events",
                                         "message.sent, message.failed", NULL };
    struct wh w;
    wh_up(&w, "gone", SECRET, "{}", NULL);
    char *id = post_async(w.s, "r@example.org");
    json_decref(wait_event(w.s, id, "message.sent", "stopped", 15000));
    free(id);
    for (int run = 0; run < 2; run++) { /* as is, then restarted */
        id = post_async(w.s, "r@example.org");
        json_t *e = wait_event(w.s, id, "message.sent", "stopped", 15000);
        assert_int_equal(json_array_size(json_object_get(e, "attempts")), 0);
        json_decref(e);
        free(id);
        if (run == 0)
            restart(&w, NULL);
    }
    sleep_ms(1500);
    json_t *posts = rx_posts(&w.r);
    assert_int_equal(json_array_size(posts), 1); /* the 410 only */
    json_decref(posts);
    rx_stop(&w.r);
    rx_start(&w.r, w.dir, w.port, SECRET, "ok");
    restart(&w, other);
    id = post_async(w.s, "r@example.org");
    json_decref(wait_event(w.s, id, "message.sent", "delivered", 15000));
    free(id);
    wh_down(&w);
}

/* Each mistake in the webhook.* keys stops the start (exit 2) before any
   port is bound, naming the key or the file and never the secret: a
   secret file group or others may read, a secret too short, an unknown
   event type, a URL that is not http(s), a wait that is not one. */
static void test_webhook_mistakes_stop_the_start_naming_them(void **st)
{
    (void)st;
    static const struct {
        const char *secret;
        mode_t mode;
        const char *key, *value, *said;
    } cases[] = {
        { SECRET, 0644, NULL, NULL, "is open to others (mode 0644)" },
        { "short-secret", 0600, NULL, NULL, "of 16 bytes or more" },
        { SECRET, 0600, "--webhook-events", "message.sent,message.sen",
          "webhook.events: unknown event type \"message.sen\"" },
        { SECRET, 0600, "--webhook-url", "ftp://127.0.0.1/hook",
          "webhook.url: must be an http:// or https:// URL" },
        { SECRET, 0600, "--webhook-retry-schedule", "5s,5x",
          "webhook.retry_schedule: \"5x\" is not a wait" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir = temp_dir(), sfile[192], q[192], *out = NULL;
        put_file(dir, "secret", cases[i].secret, cases[i].mode, sfile,
                 sizeof sfile);
        in_dir(q, sizeof q, dir, "queue.db");
        const char *argv[] = { "serve",
                               "--http-listen",
                               "127.0.0.1:0",
                               "--queue-path",
                               q,
                               "--webhook-url",
                               "http://127.0.0.1:9/hook",
                               "--webhook-secret-file",
                               sfile,
                               cases[i].key,
                               cases[i].value,
                               NULL };
        assert_int_equal(mpserve_run(argv, 10000, &out), 2);
        assert_non_null(strstr(out, cases[i].said));
        if (cases[i].key == NULL)
            assert_non_null(strstr(out, sfile));
        assert_null(strstr(out, "bWFpbHBvb2wt")); /* never the secret */
        assert_null(strstr(out, "short-secret"));
        assert_null(strstr(out, "listening"));
        free(out);
        ts_rmtree(dir);
        free(dir);
    }
}

/* The value after "name: " up to the end of its line in text (caller
   frees). */
static char *readme_field(const char *text, const char *name)
{
    const char *p = strstr(text, name);
    assert_non_null(p);
    p += strlen(name);
    return strndup(p, strcspn(p, "\n`"));
}

/* README.md's example request is what mailpool sends: its body is the
   payload mailpool builds for that message, its signature the one
   mailpool computes under the example secret; and the README's Python,
   the test receiver's own, verifies it. */
static void test_readme_example_is_mailpools_and_its_code_verifies_it(void **st)
{
    (void)st;
    char path[512], script[512], sfile[192], *dir = temp_dir();
    char *readme = ts_slurp(root_path(path, sizeof path, "README.md"), NULL);
    assert_non_null(readme);
    char *id = readme_field(readme, "webhook-id: ");
    char *ts = readme_field(readme, "webhook-timestamp: ");
    char *sig = readme_field(readme, "webhook-signature: ");
    char *body = readme_field(readme, "\n{\"type\":\"message.sent\"");
    char *secret = readme_field(readme, "example secret\n`");
    char mid[] = "<084rWjaF9Ap8ZS2gqqAqeg@example.org>",
         meta[] = "{\"order\":\"1234\"}", status[] = "sent", enh[] = "2.0.0",
         text[] = "2.0.0 Ok", acc[] = "you@example.org", rej[] = "";
    struct queue_event ev = {
        .state = QUEUE_SENT,
        .created_at = 1796002248.1085,
        .attempt = 1,
        .code = 250,
        .message_id = mid,
        .metadata = meta,
        .status = status,
        .enhanced = enh,
        .text = text,
        .accepted = acc,
        .rejected = rej,
    };
    snprintf(ev.id, sizeof ev.id, "%s", id);
    snprintf(ev.message, sizeof ev.message, "084rWjaF9Ap8ZS2gqqAqeg");
    char *made = webhook_payload_(&ev), err[256], mine[128];
    assert_non_null(made);
    assert_string_equal(made + strlen("{\"type\":\"message.sent\""), body);
    unsigned char *key;
    size_t keylen;
    put_file(dir, "secret", secret, 0600, sfile, sizeof sfile);
    assert_int_equal(
        webhook_secret_load_(sfile, &key, &keylen, err, sizeof err), 0);
    assert_int_equal(webhook_sign_(key, keylen, id, strtoll(ts, NULL, 10), made,
                                   mine, sizeof mine),
                     0);
    assert_string_equal(mine, sig);
    const char *argv[] = { "/usr/bin/python3",
                           root_path(script, sizeof script,
                                     "tests/peers/webhook_receiver.py"),
                           "--check-readme", path, NULL };
    assert_int_equal(run_logged(argv, dir, "check-readme.log"), 0);
    free(key);
    free(made);
    free(id);
    free(ts);
    free(sig);
    free(body);
    free(secret);
    free(readme);
    ts_rmtree(dir);
    free(dir);
}

#define T(fn) cmocka_unit_test(fn)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_every_sent_message_posts_one_signed_sent_event),
        T(test_a_retry_posts_deferred_then_sent),
        T(test_a_reply_that_is_not_utf8_still_posts_its_event),
        T(test_the_queue_database_never_holds_the_webhook_url),
        T(test_receiver_down_then_back_gets_every_event),
        T(test_500_then_200_is_delivered_with_both_tries_recorded),
        T(test_wrong_secret_fails_verification),
        T(test_slow_receiver_does_not_slow_sending),
        T(test_events_survive_sigkill_between_commit_and_delivery),
        T(test_410_stops_the_type_until_the_configuration_changes),
        T(test_an_event_past_its_schedule_is_failed_and_stays_visible),
        T(test_a_redirect_is_not_followed),
        T(test_https_is_verified_unless_tls_verify_is_false),
        T(test_webhook_mistakes_stop_the_start_naming_them),
        T(test_readme_example_is_mailpools_and_its_code_verifies_it),
    };
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    if (getenv("WEBHOOK_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("WEBHOOK_TEST_FILTER"));
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
