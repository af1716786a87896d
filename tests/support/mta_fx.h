/*
 * tests/support/mta_fx.h - what tests/integration/test_mta.c's groups
 * share around the real mail servers of tests/support/mta.h: a server and
 * its ways of being reached (listener, TLS mode, AUTH), reading the
 * copies that arrived in its mailbox and checking their bytes, and
 * running `mailpool send` and `mailpool serve` against it.  Header-only
 * (static inline).
 */
#ifndef TESTS_SUPPORT_MTA_FX_H
#define TESTS_SUPPORT_MTA_FX_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tests/support/http.h"
#include "tests/support/mpserve.h"
#include "tests/support/mta.h"
#include "tests/support/tsupport.h"

#define STOP_MS 15000   /* bound on the service's SIGTERM stop */
#define ARRIVE_MS 20000 /* bound on a copy reaching the mailbox */
#define SENDER "sender@mailpool.test"

/* One way of reaching a server: a listener, a TLS mode, AUTH or not. */
struct mode {
    const char *listener; /* mta_port name; node: which instance */
    const char *tls;      /* none | opportunistic | required | implicit */
    int auth;
};

/* The server of a group: Postfix or Exim (one process, several listeners)
 * or smtp-server (one process per listener). */
struct server {
    const char *label;
    struct mta *mta;     /* postfix, exim */
    struct mta *node[3]; /* node: plain, submit, smtps */
    const struct mode *modes;
    size_t nmodes;
    int python_reads; /* stored as a file Python can parse */
};

/* ---- The servers ---- */

/* The mta serving a mode. */
static inline struct mta *mode_mta(const struct server *s,
                                   const struct mode *md)
{
    if (s->mta)
        return s->mta;
    if (strcmp(md->listener, "submit") == 0)
        return s->node[1];
    return strcmp(md->listener, "smtps") == 0 ? s->node[2] : s->node[0];
}

/* The port of a mode. */
static inline int mode_port(const struct server *s, const struct mode *md)
{
    return mta_port(mode_mta(s, md), s->mta ? md->listener : NULL);
}

/* ---- Reading the mailbox ---- */

/* How many of msgs are copies for rcpt (case-insensitive); the index of
 * the first in *first when first is not NULL. */
static inline size_t copies_for(const struct mta_msg *msgs, size_t n,
                                const char *rcpt, size_t *first)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(msgs[i].rcpt, rcpt) == 0) {
            if (k == 0 && first)
                *first = i;
            k++;
        }
    return k;
}

/* Waits until rcpt has at least want copies (then a little longer, so a
 * duplicate would show); returns the messages (caller frees) and the
 * number of copies for rcpt in *got. */
static inline struct mta_msg *wait_copies(struct mta *m, const char *rcpt,
                                          size_t want, size_t *n, size_t *got)
{
    struct mta_msg *msgs = NULL;
    long long end = ts_now_ms() + ARRIVE_MS;
    for (;;) {
        assert_int_equal(mta_messages(m, &msgs, n), 0);
        *got = copies_for(msgs, *n, rcpt, NULL);
        if (*got >= want || ts_now_ms() > end)
            break;
        mta_msgs_free(msgs, *n);
        ts_sleep_ms(50);
    }
    mta_msgs_free(msgs, *n);
    ts_sleep_ms(300);
    assert_int_equal(mta_messages(m, &msgs, n), 0);
    *got = copies_for(msgs, *n, rcpt, NULL);
    return msgs;
}

/* The one copy for rcpt (asserts exactly one arrived); *all to free. */
static inline const struct mta_msg *one_copy(struct mta *m, const char *rcpt,
                                             struct mta_msg **all, size_t *n)
{
    size_t got, first = 0;
    *all = wait_copies(m, rcpt, 1, n, &got);
    if (got != 1) {
        mta_show_logs(m);
        fail_msg("%zu copies for %s, want 1", got, rcpt);
    }
    copies_for(*all, *n, rcpt, &first);
    return &(*all)[first];
}

/* Asserts the stored body is exactly body (CRLF text). */
static inline void expect_body(const struct mta_msg *msg, const char *body)
{
    size_t have = msg->len - (size_t)(msg->body - (const char *)msg->data);
    if (have != strlen(body) || memcmp(msg->body, body, have) != 0)
        fail_msg("body of %s differs:\n--- got (%zu)\n%.*s--- want (%zu)\n%s",
                 msg->file, have, (int)have, msg->body, strlen(body), body);
}

/* Asserts the header block holds the field line "name: value" as given. */
static inline void expect_field(const struct mta_msg *msg, const char *name,
                                const char *value)
{
    char line[1024];
    snprintf(line, sizeof line, "%s: %s\r\n", name, value);
    const char *d = (const char *)msg->data;
    size_t hlen = (size_t)(msg->body - d), l = strlen(line);
    for (size_t i = 0; i + l <= hlen; i++)
        if ((i == 0 || d[i - 1] == '\n') && memcmp(d + i, line, l) == 0)
            return;
    fail_msg("no field line \"%s: %s\" in %s:\n%.*s", name, value, msg->file,
             (int)hlen, d);
}

/* ---- Running the command line and the service ---- */

/* A file in the server's directory holding text; its path (caller frees). */
static inline char *write_file(struct mta *m, const char *name,
                               const char *text)
{
    char *path = mta_path(m, name);
    assert_non_null(path);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    return path;
}

/* The JSON object mailpool printed (the last line starting with '{'). */
static inline json_t *cli_json(const char *out)
{
    const char *last = NULL;
    for (const char *p = out; p && *p;) {
        if (*p == '{')
            last = p;
        p = strchr(p, '\n');
        p = p ? p + 1 : NULL;
    }
    json_t *j = last ? json_loads(last, JSON_DISABLE_EOF_CHECK, NULL) : NULL;
    if (!json_is_object(j))
        fail_msg("no JSON result in: %s", out ? out : "(nothing)");
    return j;
}

/* A string member of o; fails the test when it is not one. */
static inline const char *jstr(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (s == NULL)
        fail_msg("member \"%s\" is not a string", key);
    return s;
}

/* Adds the client TLS/AUTH options of md to argv at *n ("--tls" style for
 * the CLI, "--relay-tls" style for the service). */
static inline void add_mode_args(const char **argv, size_t *n,
                                 const struct mode *md, int relay, char *ca,
                                 char *pass)
{
    argv[(*n)++] = relay ? "--relay-tls" : "--tls";
    argv[(*n)++] = md->tls;
    if (strcmp(md->tls, "none") != 0) {
        argv[(*n)++] = relay ? "--relay-ca-file" : "--ca-file";
        argv[(*n)++] = ca;
    }
    if (md->auth) {
        argv[(*n)++] = relay ? "--relay-auth-user" : "--auth-user";
        argv[(*n)++] = MTA_AUTH_USER;
        argv[(*n)++] = relay ? "--relay-auth-pass-file" : "--auth-pass-file";
        argv[(*n)++] = pass;
    }
}

/* Runs `mailpool send` (argv as given); returns its JSON result and the
 * exit code in *status. */
static inline json_t *cli_send(const char *const *argv, int *status)
{
    char *out = NULL;
    *status = mpserve_run(argv, 30000, &out);
    json_t *j = cli_json(out);
    free(out);
    return j;
}

/* The service in front of a mode of the server; extra flags NULL-ended. */
static inline struct mpserve *svc_for(const struct server *s,
                                      const struct mode *md, char *ca,
                                      char *pass, const char *const *extra)
{
    const char *argv[32];
    size_t n = 0;
    add_mode_args(argv, &n, md, 1, ca, pass);
    for (size_t i = 0; extra && extra[i] && n < 30; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    struct mpserve *svc = mpserve_start(mode_port(s, md), argv);
    assert_non_null(svc);
    return svc;
}

/* POST json to path; asserts HTTP 200 and returns the body's JSON. */
static inline json_t *post_ok(struct mpserve *svc, const char *path,
                              const char *json)
{
    char url[256];
    static const char *const ct[] = { "Content-Type: application/json", NULL };
    struct http_resp r;
    snprintf(url, sizeof url, "%s%s", mpserve_url(svc), path);
    if (http_request("POST", url, ct, json, 0, &r) < 0)
        fail_msg("POST %s: %s", path, r.err);
    if (r.status != 200)
        fail_msg("POST %s: HTTP %ld: %.600s", path, r.status,
                 r.body ? r.body : "");
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    http_resp_free(&r);
    assert_non_null(j);
    return j;
}

/* Stops the service; it must exit 0 on SIGTERM. */
static inline void svc_done(struct mpserve *svc)
{
    int rc = mpserve_stop_clean(svc, STOP_MS);
    mpserve_free(svc);
    assert_int_equal(rc, 0);
}

/* A POST /v1/messages body; caller frees. */
static inline char *message_json(const char *const *to, size_t nto,
                                 json_t *headers, const char *body)
{
    json_t *rcpts = json_array();
    for (size_t i = 0; i < nto; i++)
        json_array_append_new(rcpts, json_string(to[i]));
    json_t *msg = json_pack("{s:s, s:o, s:o, s:s}", "from", SENDER, "to", rcpts,
                            "headers", headers, "body", body);
    assert_non_null(msg);
    char *txt = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    assert_non_null(txt);
    return txt;
}

#endif /* TESTS_SUPPORT_MTA_FX_H */
