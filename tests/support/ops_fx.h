/*
 * tests/support/ops_fx.h - what the operations tests
 * (tests/integration/test_ops.c and test_ops_tls.c) share on top of
 * service_fx.h (the peer and service of a test, the JSON body, one
 * /metrics sample): GET or POST with extra headers, a JSON status check,
 * the operations tests' message and its relaying, the peer's subjects,
 * the service's log lines of one event, a free port's process started by
 * hand.  Header-only (static inline).
 */
#ifndef TESTS_SUPPORT_OPS_FX_H
#define TESTS_SUPPORT_OPS_FX_H

#include <fcntl.h>
#include <limits.h>
#include <sys/wait.h>

#include "tests/support/service_fx.h"

/* GET or POST (json non-NULL) path; asserts an HTTP answer came. */
static inline void req(const struct fx *fx, const char *path, const char *json,
                       const char *const *headers, struct http_resp *r)
{
    char url[256];
    const char *hdrs[8] = { "Content-Type: application/json" };
    size_t n = 1;
    for (; headers != NULL && *headers != NULL && n < 7; headers++)
        hdrs[n++] = *headers;
    hdrs[n] = NULL;
    snprintf(url, sizeof url, "%s%s", mpserve_url(fx->svc), path);
    if (http_request(json ? "POST" : "GET", url, hdrs, json, 0, r) < 0)
        fail_msg("%s %s: %s", json ? "POST" : "GET", path, r->err);
}

/* Asserts HTTP status and the string member key of the JSON body. */
static inline void expect_json_str(const struct http_resp *r, long status,
                                   const char *key, const char *want)
{
    if (r->status != status)
        fail_msg("expected HTTP %ld, got %ld: %.500s", status, r->status,
                 r->body != NULL ? r->body : "");
    json_t *j = resp_json(r);
    const char *got = json_string_value(json_object_get(j, key));
    if (got == NULL || strcmp(got, want) != 0)
        fail_msg("\"%s\": want \"%s\", got %.300s", key, want, r->body);
    json_decref(j);
}

/* A one-recipient message whose Subject is subject; caller frees. */
static inline char *ops_message_json(const char *subject)
{
    json_t *m = json_pack("{s:s, s:[s], s:{s:s}, s:s}", "from",
                          "ops@example.org", "to", "rcpt@example.org",
                          "headers", "Subject", subject, "body",
                          "A message for the operations tests.\n");
    char *s = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    assert_non_null(s);
    return s;
}

/* POSTs ops_message_json(subject) and asserts 200 with code 250. */
static inline void send_ok(const struct fx *fx, const char *subject)
{
    struct http_resp r;
    char *m = ops_message_json(subject);
    req(fx, "/v1/messages", m, NULL, &r);
    free(m);
    if (r.status != 200)
        fail_msg("POST %s: HTTP %ld %.300s", subject, r.status, r.body);
    json_t *j = resp_json(&r);
    assert_int_equal(json_integer_value(json_object_get(j, "code")), 250);
    json_decref(j);
    http_resp_free(&r);
}

/* 1 when a message the peer took has "Subject: subject". */
static inline int peer_has_subject(struct peer *p, const char *subject)
{
    struct peer_msg *msgs = NULL;
    size_t n = 0;
    char line[256];
    int found = 0;
    snprintf(line, sizeof line, "Subject: %s\r\n", subject);
    if (peer_messages(p, &msgs, &n) < 0)
        return 0;
    for (size_t i = 0; i < n && !found; i++)
        found = strstr((const char *)msgs[i].data, line) != NULL;
    peer_msgs_free(msgs, n);
    return found;
}

/* Lines of the service's log whose "event" is event, as a JSON array
   (new reference). */
static inline json_t *log_events(const struct fx *fx, const char *event)
{
    size_t len = 0;
    char *log = mpserve_log(fx->svc, &len);
    json_t *out = json_array();
    assert_non_null(log);
    for (char *line = log, *nl; *line != '\0'; line = nl + 1) {
        nl = strchr(line, '\n');
        if (nl == NULL)
            break;
        *nl = '\0';
        json_t *o = json_loads(line, 0, NULL);
        const char *ev = json_string_value(json_object_get(o, "event"));
        if (ev != NULL && strcmp(ev, event) == 0)
            json_array_append(out, o);
        json_decref(o);
    }
    free(log);
    return out;
}

/* `mailpool serve` started by hand with these arguments after "serve"
   (NULL-ended, at most 15), its stderr to /dev/null; its process id. */
static inline pid_t ops_spawn_serve(const char *const *args)
{
    char bin[4096], *argv[18] = { NULL };
    size_t n = 0;
    assert_non_null(mpserve_binary(bin, sizeof bin));
    argv[n++] = strdup(bin);
    argv[n++] = strdup("serve");
    for (; args[n - 2] != NULL && n < 17; n++)
        argv[n] = strdup(args[n - 2]);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 2);
        execv(bin, argv);
        _exit(127);
    }
    for (size_t i = 0; i < n; i++)
        free(argv[i]);
    return pid;
}

/* Stops a process of ops_spawn_serve by its id; its wait status. */
static inline int ops_stop(pid_t pid)
{
    int st = 0;
    kill(pid, SIGTERM);
    waitpid(pid, &st, 0);
    return st;
}

/* Runs a file's n tests, each with the fixture's setup and teardown,
   with libcurl set up; cmocka's exit status. */
static inline int ops_run(const struct CMUnitTest *tests, size_t n)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = _cmocka_run_group_tests("tests", tests, n, NULL, NULL);
    curl_global_cleanup();
    return rc;
}

#endif /* TESTS_SUPPORT_OPS_FX_H */
