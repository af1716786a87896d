/*
 * tests/support/wire_msg_fx.h - the fixture of the wire tests of what a
 * message and its envelope may carry (test_wire_message.c,
 * test_wire_envelope.c, test_wire_fields.c): smtp_fx's struct fx plus a
 * `mailpool serve` the teardown stops (it must exit 0), reading every
 * byte the relay received, POSTing JSON and reading the problem
 * document's errors, running `mailpool ARGS...` and reading the JSON line
 * it printed.  Header-only (static inline).
 */
#ifndef TESTS_SUPPORT_WIRE_MSG_FX_H
#define TESTS_SUPPORT_WIRE_MSG_FX_H

#include <jansson.h>
#include <strings.h>

#include "tests/support/smtp_fx.h"
#include "tests/support/http.h"
#include "tests/support/mpserve.h"

#define STOP_MS 15000
#define UTF8_EXT \
    "'extensions': ['PIPELINING', '8BITMIME', 'SMTPUTF8', " \
    "'DSN', 'ENHANCEDSTATUSCODES']"

/* smtp_fx's fixture plus the service. */
struct wx {
    struct fx f;
    struct mpserve *svc;
};

/* smtp_fx's setup, inside a struct wx with no service yet. */
static inline int wsetup(void **state)
{
    void *inner = NULL;
    struct wx *w = calloc(1, sizeof *w);
    if (w == NULL || setup(&inner) < 0) {
        free(w);
        return -1;
    }
    w->f = *(struct fx *)inner;
    free(inner);
    *state = w;
    return 0;
}

/* Stops the service (it must exit 0), then smtp_fx's teardown. */
static inline int wteardown(void **state)
{
    struct wx *w = *state;
    int rc = 0;
    if (w->svc != NULL && mpserve_stop_clean(w->svc, STOP_MS) < 0)
        rc = -1;
    mpserve_free(w->svc);
    struct fx *f = malloc(sizeof *f);
    if (f == NULL)
        return -1;
    *f = w->f;
    free(w);
    void *inner = f;
    teardown(&inner);
    return rc;
}

/* ---- What crossed the wire ---- */

/* Every byte the relay received so far, connections in order; owned by f. */
static inline const char *all_bytes(struct fx *f)
{
    int n = peer_conn_count(f->p);
    size_t total = 0;
    char *acc = calloc(1, 1);
    assert_non_null(acc);
    for (int c = 1; c <= n; c++) {
        size_t len = 0;
        char *b = peer_conn_bytes(f->p, c, &len);
        if (b == NULL)
            continue;
        char *grown = realloc(acc, total + len + 1);
        assert_non_null(grown);
        acc = grown;
        memcpy(acc + total, b, len);
        total += len;
        acc[total] = '\0';
        free(b);
    }
    return keep(f, acc);
}

/* No MAIL, RCPT or DATA ever reached the relay. */
static inline void assert_no_transaction(struct fx *f)
{
    const char *b = all_bytes(f);
    if (strstr(b, "MAIL") || strstr(b, "RCPT") || strstr(b, "DATA"))
        fail_msg("a transaction reached the relay: %s", b);
    assert_int_equal(msgs(f, f->p, 0), 0);
}

/* ---- The service and the command line ---- */

/* Starts `mailpool serve` relaying to the fake (defaults otherwise). */
static inline void svc(struct wx *w)
{
    w->svc = mpserve_start(peer_port(w->f.p), NULL);
    assert_non_null(w->svc);
}

/* POSTs json to path; the parsed answer (owned by the caller) after
   checking the status. */
static inline json_t *post(struct wx *w, const char *path, const char *json,
                           long want)
{
    static const char *const ct[] = { "Content-Type: application/json", NULL };
    char url[256];
    struct http_resp r;
    snprintf(url, sizeof url, "%s%s", mpserve_url(w->svc), path);
    if (http_request("POST", url, ct, json, 0, &r) < 0)
        fail_msg("POST %s: %s", path, r.err);
    if (r.status != want)
        fail_msg("POST %s: status %ld, want %ld: %s", path, r.status, want,
                 r.body);
    json_t *j = json_loads(r.body, 0, NULL);
    if (j == NULL)
        fail_msg("not JSON: %s", r.body);
    http_resp_free(&r);
    return j;
}

/* 1 when the problem document's errors name field, with message holding
   part (part may be NULL). */
static inline int names(json_t *problem, const char *field, const char *part)
{
    json_t *e;
    size_t i;
    json_array_foreach(json_object_get(problem, "errors"), i, e)
    {
        const char *fl = json_string_value(json_object_get(e, "field"));
        const char *m = json_string_value(json_object_get(e, "message"));
        if (fl != NULL && strcmp(fl, field) == 0 &&
            (part == NULL || (m != NULL && strstr(m, part) != NULL)))
            return 1;
    }
    return 0;
}

/* Fails unless the problem document p names field (message holding part). */
static inline void assert_422_names(json_t *p, const char *field,
                                    const char *part)
{
    if (!names(p, field, part)) {
        char *d = json_dumps(p, JSON_COMPACT);
        fail_msg("no error at %s (%s): %s", field, part ? part : "", d);
    }
}

/* The string member key of o; fails when there is none. */
static inline const char *jstr(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (s == NULL)
        fail_msg("no string member \"%s\"", key);
    return s;
}

/* Runs `mailpool ARGS...`; the exit code, and the JSON line it printed
   (NULL when none; the caller decrefs) in *json. */
static inline int cli(struct fx *f, const char *const *args, json_t **json)
{
    char *out = NULL;
    int rc = mpserve_run(args, 20000, &out);
    assert_non_null(out);
    keep(f, out);
    *json = NULL;
    for (const char *p = out; p != NULL && *p != '\0'; p = strchr(p, '\n')) {
        if (*p == '\n')
            p++;
        if (*p == '{') {
            *json = json_loads(p, JSON_DISABLE_EOF_CHECK, NULL);
            break;
        }
    }
    return rc;
}

/* The arguments of `mailpool send` to the fake from a@example.org to
   b@example.org, then more (NULL-ended); owned by f. */
static inline const char *const *send_args(struct fx *f,
                                           const char *const *more)
{
    static const char *const head[] = { "send",         "--server",      NULL,
                                        "--from",       "a@example.org", "--to",
                                        "b@example.org" };
    size_t nhead = sizeof head / sizeof head[0], nmore = 0, n = 0;
    while (more[nmore] != NULL)
        nmore++;
    const char **a = keep(f, calloc(nhead + nmore + 1, sizeof *a));
    for (; n < nhead; n++)
        a[n] = head[n];
    a[2] = f->host;
    for (size_t i = 0; i < nmore; i++)
        a[n++] = more[i];
    return a;
}

/* A file in the peer's directory; owned by f. */
static inline const char *file_in(struct fx *f, const char *name,
                                  const char *text)
{
    char *path = keep(f, peer_path(f->p, name));
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
    return path;
}

#endif
