/*
 * tests/support/webhook_fx.h - what the webhook tests
 * (tests/integration/test_webhooks.c and test_webhooks_config.c) share:
 * the receiver (tests/peers/webhook_receiver.py, started on 127.0.0.1 and
 * stopped by its process id) and what it logged, `mailpool serve` with a
 * webhook configured and its API, one test's world (directory, receiver,
 * relay, service) set up and torn down.  Header-only (static inline).
 */
#ifndef TESTS_SUPPORT_WEBHOOK_FX_H
#define TESTS_SUPPORT_WEBHOOK_FX_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <curl/curl.h>

#include "tests/support/peer.h"
#include "tests/support/http.h"
#include "tests/support/metrics_fx.h"
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
static inline void in_dir(char *buf, size_t len, const char *dir,
                          const char *name)
{
    snprintf(buf, len, "%s/%s", dir, name);
}

/* Writes text into dir/name with mode; the path into path. */
static inline void put_file(const char *dir, const char *name, const char *text,
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
static inline const char *root_path(char *buf, size_t len, const char *rel)
{
    const char *root = getenv("MAILPOOL_ROOT");
    snprintf(buf, len, "%s%s%s", root ? root : "", root ? "/" : "", rel);
    return buf;
}

/* Runs argv (NULL-ended) to its end, its output into dir/name: its exit
   code, or -1 when it did not exit. */
static inline int run_logged(const char *const *argv, const char *dir,
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
static inline void rx_start(struct rx *r, const char *dir, int port,
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
    for (long long end = ts_now_ms() + 10000; ts_now_ms() < end;
         ts_sleep_ms(20)) {
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
static inline void rx_stop(struct rx *r)
{
    if (r->pid > 0) {
        kill(r->pid, SIGTERM);
        waitpid(r->pid, NULL, 0);
    }
    r->pid = 0;
}

/* Every POST the receiver logged so far, as an array of objects. */
static inline json_t *rx_posts(const struct rx *r)
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
static inline size_t posts_for(json_t *posts, const char *id, size_t *valid,
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
static inline json_t *rx_wait(const struct rx *r, char **ids, size_t n,
                              const char *type, int ms)
{
    for (long long end = ts_now_ms() + ms;; ts_sleep_ms(50)) {
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
        if (ts_now_ms() > end)
            fail_msg("%zu of %zu %s events arrived in %d ms", have, n, type,
                     ms);
    }
}

/* ---- the service ------------------------------------------------------ */

/* A temporary directory for one test (caller: ts_rmtree, free). */
static inline char *temp_dir(void)
{
    char *d = strdup("/tmp/mailpool-webhook-XXXXXX");
    assert_non_null(d);
    assert_non_null(mkdtemp(d));
    return d;
}

/* Starts the service on dir's queue, its webhook the receiver's port,
   secret SECRET, a schedule of 1 s waits; more flags (NULL-ended). */
static inline struct mpserve *svc(struct peer *p, const char *dir, int port,
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
static inline json_t *call(struct mpserve *s, const char *method,
                           const char *path, const char *body, long *status)
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

static inline const char *jstr(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s != NULL ? s : "";
}

/* The string at index i of o's array k; "" when there is none. */
static inline const char *item(const json_t *o, const char *k, size_t i)
{
    const char *s = json_string_value(json_array_get(json_object_get(o, k), i));
    return s != NULL ? s : "";
}

/* POSTs one message asynchronously to `to`; its queue id (caller frees). */
static inline char *post_async(struct mpserve *s, const char *to)
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
static inline json_t *status_of(struct mpserve *s, const char *id)
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
static inline json_t *wait_event(struct mpserve *s, const char *id,
                                 const char *type, const char *state, int ms)
{
    for (long long end = ts_now_ms() + ms;; ts_sleep_ms(50)) {
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
        if (ts_now_ms() > end) {
            char *t = json_dumps(d, 0);
            fail_msg("no %s event %s for %s in %d ms: %s", type, state, id, ms,
                     t ? t : "?");
        }
        json_decref(d);
    }
}

/* The value of the /metrics sample name (-1: none). */
static inline long metric(struct mpserve *s, const char *name)
{
    char url[256];
    struct http_resp r;
    int found;
    snprintf(url, sizeof url, "%s/metrics", mpserve_url(s));
    assert_int_equal(http_request("GET", url, NULL, NULL, 0, &r), 0);
    long v = (long)metrics_value(r.body != NULL ? r.body : "", name, &found);
    http_resp_free(&r);
    return found ? v : -1;
}

/* A port that was free a moment ago, where a receiver will come later. */
static inline int later_port(void)
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
static inline void wh_up(struct wh *w, const char *mode, const char *secret,
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
static inline void wh_down(struct wh *w)
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
static inline void post_some(struct wh *w, char **ids, int n)
{
    for (int i = 0; i < n; i++)
        ids[i] = post_async(w->s, "r@example.org");
}

/* Runs a file's n tests (WEBHOOK_TEST_FILTER picks some by name) with
   SIGPIPE ignored and libcurl set up; cmocka's exit status. */
static inline int wh_run(const struct CMUnitTest *tests, size_t n)
{
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    if (getenv("WEBHOOK_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("WEBHOOK_TEST_FILTER"));
    int rc = _cmocka_run_group_tests("tests", tests, n, NULL, NULL);
    curl_global_cleanup();
    return rc;
}

#endif /* TESTS_SUPPORT_WEBHOOK_FX_H */
