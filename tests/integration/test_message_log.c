/*
 * test_message_log.c - the message log through `mailpool serve`: GET
 * /v1/messages (filters by status, recipient, Message-ID and time; pages
 * by cursor; the bearer key; a 400 naming each bad parameter; 10,000
 * messages answered under 100 ms) and the page GET /ui/ (its headers on
 * the wire, then the page itself in Debian's Chromium, driven by
 * tests/integration/ui_page.js through playwright-core).  The relay is the
 * fake (tests/fakes/fake_smtp.py), which rejects one recipient with its
 * own 550 text; every message is sent with Prefer: respond-async but
 * one of the browser test's, sent synchronously (listed all the same).
 *
 * The API key goes to the service and to the browser script through the
 * environment (MAILPOOL_HTTP_API_KEYS, UI_TEST_KEY), never a command line.
 * The browser test keeps a screenshot of the page as an artefact next to
 * the test binary (message-log.png).
 */
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>

#include "tests/support/smtp_fx.h"
#include "tests/support/http.h"
#include "tests/support/mpserve.h"
#include "tests/support/tsupport.h"

#define LOG_KEY "log-key-5d1e0c2a"
#define AUTH "Authorization: Bearer " LOG_KEY
#define BAD_RCPT "bad@example.net"
#define RELAY_550 \
    "5.1.1 <bad@example.net>: Recipient address rejected: " \
    "no such user here"
#define HOSTILE \
    "<script>window.__pwned=1</script>" \
    "<img src=x onerror=\"window.__pwned=2\">"

/* The relay and the service of one test. */
struct logfx {
    struct peer *relay;
    struct mpserve *svc;
};

/* A fake relay that refuses BAD_RCPT, and the service in front of it with
   the key LOG_KEY (from the environment); extra flags NULL-ended. */
static void start(struct logfx *f, const char *const *extra)
{
    char *script = ts_dq("{'rules': [{'match': '^RCPT TO:<bad@',"
                         " 'reply': '550 " RELAY_550 "'}]}");
    f->relay = peer_start_fake(script);
    free(script);
    assert_non_null(f->relay);
    setenv("MAILPOOL_HTTP_API_KEYS", LOG_KEY, 1);
    f->svc = mpserve_start(peer_port(f->relay), extra);
    unsetenv("MAILPOOL_HTTP_API_KEYS");
    assert_non_null(f->svc);
}

static void stop(struct logfx *f)
{
    assert_int_equal(mpserve_stop_clean(f->svc, 10000), 0);
    mpserve_free(f->svc);
    peer_stop(f->relay);
}

#define SYNC 2 /* req's auth: with the key, no respond-async */

/* A request to the service with the key (auth 0: without; SYNC: with it,
   answered synchronously); its JSON body (NULL when not JSON), the status
   in *status. */
static json_t *req(struct logfx *f, const char *method, const char *path,
                   const char *body, int auth, long *status)
{
    const char *h[] = { "Content-Type: application/json",
                        auth == SYNC ? AUTH : "Prefer: respond-async",
                        auth == 1 ? AUTH : NULL, NULL };
    char url[2048];
    struct http_resp r;
    json_error_t e;
    snprintf(url, sizeof url, "%s%s", mpserve_url(f->svc), path);
    if (http_request(method, url, h, body, 0, &r) < 0)
        fail_msg("%s %s: no answer: %s", method, path, r.err);
    *status = r.status;
    json_t *j = r.body != NULL ? json_loads(r.body, 0, &e) : NULL;
    http_resp_free(&r);
    return j;
}

/* GET path with the key; must answer 200; the document. */
static json_t *get_ok(struct logfx *f, const char *path)
{
    long st;
    json_t *j = req(f, "GET", path, NULL, 1, &st);
    if (st != 200)
        fail_msg("GET %s answered %ld", path, st);
    return j;
}

/* POSTs the JSON text body (auth as req); its log id (caller frees). */
static char *post_id(struct logfx *f, const char *body, int auth)
{
    long st;
    json_t *j = req(f, "POST", "/v1/messages", body, auth, &st);
    assert_int_equal(st, auth == SYNC ? 200 : 202);
    const char *id = json_string_value(json_object_get(j, "id"));
    assert_non_null(id);
    char *copy = strdup(id);
    json_decref(j);
    return copy;
}

/* Sends one message to the JSON array text `to` with this Subject, queued
   (auth 1) or synchronously (SYNC); its id in the log (caller frees). */
static char *send_as(struct logfx *f, const char *to, const char *subject,
                     int auth)
{
    json_t *body = json_pack("{s:s, s:o, s:{s:s}, s:s}", "from",
                             "sender@example.org", "to",
                             json_loads(to, 0, NULL), "headers", "Subject",
                             subject, "body", "the body is never listed");
    char *text = json_dumps(body, JSON_COMPACT);
    char *id = post_id(f, text, auth);
    json_decref(body);
    free(text);
    return id;
}

/* Queues one message (Prefer: respond-async); its queue id. */
static char *send_one(struct logfx *f, const char *to, const char *subject)
{
    return send_as(f, to, subject, 1);
}

/* Waits until every message of the log is final (at most 10 s). */
static void wait_all_final(struct logfx *f, size_t n)
{
    for (long long end = ts_now_ms() + 10000;; ts_sleep_ms(50)) {
        json_t *j = get_ok(f, "/v1/messages?status=sent,partial,rejected,"
                              "failed,unknown");
        size_t got = json_array_size(json_object_get(j, "messages"));
        json_decref(j);
        if (got == n)
            return;
        if (ts_now_ms() > end)
            fail_msg("%zu of %zu messages final after 10 s", got, n);
    }
}

/* The "messages" array of doc (borrowed) and its field k of item i. */
static const char *item_str(json_t *doc, size_t i, const char *k)
{
    json_t *it = json_array_get(json_object_get(doc, "messages"), i);
    const char *s = json_string_value(json_object_get(it, k));
    return s != NULL ? s : "";
}

static size_t nmsgs(json_t *doc)
{
    return json_array_size(json_object_get(doc, "messages"));
}

/* ---- GET /v1/messages ------------------------------------------------- */

/* Each filter of GET /v1/messages over the three messages a, b, c (all:
   the whole list): how many messages, and the first one's id. */
static void expect_filters(struct logfx *f, json_t *all, const char *a,
                           const char *b, const char *c)
{
    char mid[128], by_mid[256];
    snprintf(mid, sizeof mid, "%s", item_str(all, 2, "message_id") + 1);
    mid[strlen(mid) - 1] = '\0'; /* without brackets */
    snprintf(by_mid, sizeof by_mid, "/v1/messages?message_id=%s", mid);
    const struct {
        const char *path;
        size_t n;
        const char *first;
    } q[] = {
        { "/v1/messages?recipient=carol%40EXAMPLE.org", 1, b },
        { "/v1/messages?recipient=carol", 0, NULL },
        { "/v1/messages?status=partial", 1, b },
        { "/v1/messages?status=sent,failed", 2, c },
        { by_mid, 1, a },
        { "/v1/messages?after=2999-01-01T00:00:00Z", 0, NULL },
        { "/v1/messages?before=2999-01-01T00:00:00Z"
          "&after=2000-01-01T00:00:00%2B01:00",
          3, c },
    };
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        json_t *j = get_ok(f, q[i].path);
        if (nmsgs(j) != q[i].n ||
            (q[i].first && strcmp(item_str(j, 0, "id"), q[i].first) != 0))
            fail_msg("GET %s: %zu messages, first %s", q[i].path, nmsgs(j),
                     item_str(j, 0, "id"));
        json_decref(j);
    }
}

static void test_list_shows_each_message_newest_first_and_filters(void **state)
{
    struct logfx f;
    (void)state;
    start(&f, NULL);
    char *a = send_one(&f, "[\"ann@example.org\"]", "first");
    char *b = send_one(&f, "[\"Carol@Example.org\", \"" BAD_RCPT "\"]",
                       "second");
    char *c = send_one(&f, "[\"dave@example.org\"]", "third");
    wait_all_final(&f, 3);

    json_t *all = get_ok(&f, "/v1/messages");
    assert_int_equal(nmsgs(all), 3);
    assert_string_equal(item_str(all, 0, "id"), c); /* newest first */
    assert_string_equal(item_str(all, 1, "id"), b);
    assert_string_equal(item_str(all, 2, "id"), a);
    json_t *mb = json_array_get(json_object_get(all, "messages"), 1);
    assert_string_equal(item_str(all, 1, "status"), "partial");
    assert_string_equal(item_str(all, 1, "subject"), "second");
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(mb, "recipients"), 1)),
        BAD_RCPT);
    assert_int_equal(json_integer_value(json_object_get(mb, "attempts")), 1);
    assert_int_equal(json_integer_value(json_object_get(mb, "last_code")), 700);
    assert_int_equal(
        json_integer_value(json_object_get(
            json_array_get(json_object_get(all, "messages"), 0), "last_code")),
        250);
    assert_true(json_is_null(json_object_get(all, "next")));
    char *text = json_dumps(all, 0);
    assert_null(strstr(text, "never listed")); /* no body */
    free(text);

    /* each filter: how many messages, and the first one's id */
    expect_filters(&f, all, a, b, c);
    json_decref(all);
    free(a);
    free(b);
    free(c);
    stop(&f);
}

/* The Subject the log lists is what the sender wrote, in each form: a
   composed message (sent as RFC 2047 words), the envelope form with a
   non-ASCII Subject (encoded on the way), and a raw message whose Subject
   is folded and encoded; queued or sent synchronously alike. */
static void test_list_shows_each_form_s_subject_decoded(void **state)
{
    struct logfx f;
    (void)state;
    start(&f, NULL);
    static const char *const subj = "Grüße ☃ 日本語の件名";
    json_t *b = json_pack("{s:s, s:[s], s:s, s:s}", "from",
                          "Zoë <z@example.org>", "to", "r1@example.org",
                          "subject", subj, "text", "hello");
    char *t = json_dumps(b, JSON_COMPACT);
    char *ids[3];
    ids[0] = post_id(&f, t, SYNC);
    free(t);
    json_decref(b);
    b = json_pack("{s:s, s:[s], s:{s:s}, s:s}", "from", "s@example.org", "to",
                  "r2@example.org", "headers", "Subject", subj, "body",
                  "hello");
    t = json_dumps(b, JSON_COMPACT);
    ids[1] = post_id(&f, t, 1);
    free(t);
    json_decref(b);
    b = json_pack("{s:s, s:[s], s:s}", "from", "s@example.org", "to",
                  "r3@example.org", "raw",
                  "From: s@example.org\r\nTo: r3@example.org\r\n"
                  "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe_=E2=98=83?=\r\n"
                  " =?utf-8?b?IOaXpeacrOiqnuOBruS7tuWQjQ==?=\r\n"
                  "Message-ID: <raw.1@example.org>\r\n\r\nhello\r\n");
    t = json_dumps(b, JSON_COMPACT);
    ids[2] = post_id(&f, t, SYNC);
    free(t);
    json_decref(b);
    wait_all_final(&f, 3);
    for (int i = 0; i < 3; i++) {
        char path[128];
        snprintf(path, sizeof path, "/v1/messages?recipient=r%d%%40example.org",
                 i + 1);
        json_t *j = get_ok(&f, path);
        assert_int_equal(nmsgs(j), 1);
        assert_string_equal(item_str(j, 0, "id"), ids[i]);
        if (strcmp(item_str(j, 0, "subject"), subj) != 0)
            fail_msg("form %d: the log lists the subject \"%s\"", i,
                     item_str(j, 0, "subject"));
        json_decref(j);
        free(ids[i]);
    }
    stop(&f);
}

static void test_list_pages_by_cursor_without_gaps_or_repeats(void **state)
{
    struct logfx f;
    char *ids[7], path[256];
    (void)state;
    start(&f, NULL);
    for (int i = 0; i < 7; i++)
        ids[i] = send_one(&f, "[\"page@example.org\"]", "paged");
    size_t seen = 0, pages = 0;
    snprintf(path, sizeof path, "/v1/messages?limit=3");
    for (;;) {
        json_t *j = get_ok(&f, path);
        pages++;
        for (size_t i = 0; i < nmsgs(j); i++, seen++)
            assert_string_equal(item_str(j, i, "id"), ids[6 - seen]);
        const char *next = json_string_value(json_object_get(j, "next"));
        if (next == NULL) {
            json_decref(j);
            break;
        }
        assert_int_equal(nmsgs(j), 3);
        snprintf(path, sizeof path, "/v1/messages?limit=3&before=%s", next);
        json_decref(j);
    }
    assert_int_equal(seen, 7);
    assert_int_equal(pages, 3);
    for (int i = 0; i < 7; i++)
        free(ids[i]);
    stop(&f);
}

static void test_list_and_status_need_the_bearer_key(void **state)
{
    struct logfx f;
    long st;
    (void)state;
    start(&f, NULL);
    char *id = send_one(&f, "[\"key@example.org\"]", "keyed");
    json_t *j = req(&f, "GET", "/v1/messages", NULL, 0, &st);
    assert_int_equal(st, 401);
    assert_null(json_object_get(j, "messages"));
    json_decref(j);
    char path[96];
    snprintf(path, sizeof path, "/v1/messages/%s", id);
    j = req(&f, "GET", path, NULL, 0, &st);
    assert_int_equal(st, 401);
    json_decref(j);
    j = get_ok(&f, "/v1/messages");
    assert_int_equal(nmsgs(j), 1);
    assert_string_equal(item_str(j, 0, "id"), id);
    json_decref(j);
    free(id);
    stop(&f);
}

static void test_bad_parameters_are_400_naming_the_parameter(void **state)
{
    static const struct {
        const char *query, *field;
    } bad[] = {
        { "status=delivered", "status" },
        { "status=sent,", "status" },
        { "limit=0", "limit" },
        { "limit=101", "limit" },
        { "limit=ten", "limit" },
        { "after=yesterday", "after" },
        { "before=2026-13-01T00:00:00Z", "before" },
        { "before=12~", "before" },
        { "recipient=", "recipient" },
        { "message_id=a%ZZ", "message_id" },
        { "recipient=a%40b&recipient=c%40d", "recipient" },
        { "sort=asc", "sort" },
    };
    struct logfx f;
    (void)state;
    start(&f, NULL);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[256];
        long st;
        snprintf(path, sizeof path, "/v1/messages?%s", bad[i].query);
        json_t *j = req(&f, "GET", path, NULL, 1, &st);
        json_t *e0 = json_array_get(json_object_get(j, "errors"), 0);
        if (st != 400 || json_array_size(json_object_get(j, "errors")) != 1 ||
            strcmp(json_string_value(json_object_get(e0, "field")),
                   bad[i].field) != 0)
            fail_msg("?%s: %ld, errors %s", bad[i].query, st,
                     j ? json_dumps(json_object_get(j, "errors"), 0) : "-");
        json_decref(j);
    }
    stop(&f);
}

/* Milliseconds of the fastest of three GETs of path (each must be 200
   with `want` messages, or any number when want < 0). */
static long long fastest_get(struct logfx *f, const char *path, int want)
{
    long long best = -1;
    for (int i = 0; i < 3; i++) {
        long long t0 = ts_now_ms();
        json_t *j = get_ok(f, path);
        long long ms = ts_now_ms() - t0;
        if (want >= 0 && nmsgs(j) != (size_t)want)
            fail_msg("GET %s: %zu messages, not %d", path, nmsgs(j), want);
        json_decref(j);
        best = best < 0 || ms < best ? ms : best;
    }
    return best;
}

static void test_10000_messages_are_listed_under_100_ms(void **state)
{
    const char *const extra[] = { "--http-max-body", "4194304", NULL };
    struct logfx f;
    long st;
    (void)state;
    start(&f, extra);
    time_t later = time(NULL) + 3600; /* scheduled: never sent here */
    char send_at[32];
    strftime(send_at, sizeof send_at, "%Y-%m-%dT%H:%M:%SZ", gmtime(&later));
    for (int b = 0; b < 10; b++) {
        json_t *msgs = json_array();
        for (int i = 0; i < 1000; i++) {
            char to[64];
            snprintf(to, sizeof to, "r%d@example.org", b * 1000 + i);
            json_array_append_new(msgs,
                                  json_pack("{s:s, s:[s], s:{s:s}, s:s, s:s}",
                                            "from", "bulk@example.org", "to",
                                            to, "headers", "Subject", "bulk",
                                            "body", "x", "send_at", send_at));
        }
        json_t *body = json_pack("{s:o}", "messages", msgs);
        char *text = json_dumps(body, JSON_COMPACT);
        json_decref(req(&f, "POST", "/v1/messages/batch", text, 1, &st));
        assert_int_equal(st, 202);
        free(text);
        json_decref(body);
    }
    json_t *page = get_ok(&f, "/v1/messages?limit=100");
    char path[256];
    snprintf(path, sizeof path, "/v1/messages?limit=100&before=%s",
             json_string_value(json_object_get(page, "next")));
    json_decref(page);
    struct {
        const char *path;
        int want;
    } q[] = {
        { "/v1/messages?limit=100", 100 },
        { path, 100 },
        { "/v1/messages?recipient=r5000%40example.org", 1 },
        { "/v1/messages?status=scheduled&limit=100", 100 },
        { "/v1/messages?status=sent", 0 },
    };
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        long long ms = fastest_get(&f, q[i].path, q[i].want);
        printf("# GET %s: %lld ms of 10,000 messages\n", q[i].path, ms);
        if (ms >= 100)
            fail_msg("GET %s took %lld ms (10,000 messages)", q[i].path, ms);
    }
    stop(&f);
}

/* A queue file as the first schema left it: one sent message (no
   recipients or Subject columns yet), user_version 1. */
static void write_schema_1(const char *path)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *err = NULL;
    int rc = sqlite3_exec(
        db,
        "CREATE TABLE messages ("
        " id TEXT PRIMARY KEY, state INTEGER NOT NULL,"
        " created_at REAL NOT NULL, due_at REAL NOT NULL, lease_until REAL,"
        " finished_at REAL, attempts INTEGER NOT NULL DEFAULT 0,"
        " message_id TEXT, metadata TEXT, blob BLOB NOT NULL);"
        "CREATE INDEX messages_due ON messages(state, due_at);"
        "CREATE INDEX messages_finished ON messages(finished_at)"
        " WHERE finished_at IS NOT NULL;"
        "CREATE TABLE attempts ("
        " message TEXT NOT NULL, n INTEGER NOT NULL, at REAL NOT NULL,"
        " status TEXT, code INTEGER, enhanced TEXT, text TEXT, accepted TEXT,"
        " rejected TEXT, error TEXT, PRIMARY KEY (message, n));"
        "CREATE TABLE idempotency ("
        " key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL,"
        " created_at REAL NOT NULL, state INTEGER NOT NULL,"
        " http_status INTEGER, response TEXT);"
        "INSERT INTO messages (id, state, created_at, due_at, attempts,"
        " message_id, blob) VALUES ('schemaOneMessage000001', 4, 1700000000,"
        " 1700000000, 1, '<one@example.org>', x'00');"
        "INSERT INTO attempts (message, n, at, status, code, enhanced, text)"
        " VALUES ('schemaOneMessage000001', 1, 1700000001, 'sent', 250,"
        " '2.0.0', '2.0.0 Ok');"
        "PRAGMA user_version = 1;",
        NULL, NULL, &err);
    if (rc != SQLITE_OK)
        fail_msg("schema 1: %s", err);
    sqlite3_close(db);
}

static void test_queue_file_of_schema_1_is_migrated_and_listed(void **state)
{
    char dir[] = "/tmp/mailpool-log-XXXXXX", path[64];
    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/queue.db", dir);
    write_schema_1(path);
    const char *const extra[] = { "--queue-path", path, NULL };
    struct logfx f;
    start(&f, extra);
    json_t *j = get_ok(&f, "/v1/messages");
    assert_int_equal(nmsgs(j), 1);
    json_t *old = json_array_get(json_object_get(j, "messages"), 0);
    assert_string_equal(item_str(j, 0, "id"), "schemaOneMessage000001");
    assert_string_equal(item_str(j, 0, "created_at"),
                        "2023-11-14T22:13:20.000Z");
    assert_int_equal(json_array_size(json_object_get(old, "recipients")), 0);
    assert_null(json_object_get(old, "subject"));
    assert_int_equal(json_integer_value(json_object_get(old, "last_code")),
                     250);
    json_decref(j);
    char *id = send_one(&f, "[\"new@example.org\"]", "after the upgrade");
    j = get_ok(&f, "/v1/messages?recipient=new%40example.org");
    assert_int_equal(nmsgs(j), 1);
    assert_string_equal(item_str(j, 0, "id"), id);
    assert_string_equal(item_str(j, 0, "subject"), "after the upgrade");
    json_decref(j);
    free(id);
    stop(&f);
    ts_rmtree(dir);
}

/* ---- GET /ui/ --------------------------------------------------------- */

/* GET path without a key: the response (caller frees). */
static void get_raw(struct logfx *f, const char *path, struct http_resp *r)
{
    char url[256];
    snprintf(url, sizeof url, "%s%s", mpserve_url(f->svc), path);
    if (http_request("GET", url, NULL, NULL, 0, r) < 0)
        fail_msg("GET %s: no answer: %s", path, r->err);
}

/* Asserts that header name of r holds want. */
static void header_has(const struct http_resp *r, const char *name,
                       const char *want)
{
    char *v = http_resp_header(r, name);
    if (v == NULL || strstr(v, want) == NULL)
        fail_msg("%s: \"%s\", wanted \"%s\" in it", name, v ? v : "(none)",
                 want);
    free(v);
}

/* 1 when html has an event handler attribute (" onclick=", ...). */
static int has_handler_attribute(const char *html)
{
    for (const char *p = strstr(html, " on"); p != NULL;
         p = strstr(p + 1, " on")) {
        size_t n = strspn(p + 3, "abcdefghijklmnopqrstuvwxyz");
        if (n > 0 && p[3 + n] == '=')
            return 1;
    }
    return 0;
}

static void test_page_and_files_carry_a_strict_csp_and_nosniff(void **state)
{
    static const char *const files[][2] = {
        { "/ui/", "text/html" },
        { "/ui/app.js", "text/javascript" },
        { "/ui/app.css", "text/css" },
        { "/ui/icon.svg", "image/svg+xml" },
    };
    struct logfx f;
    struct http_resp r;
    (void)state;
    start(&f, NULL);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        get_raw(&f, files[i][0], &r);
        if (r.status != 200)
            fail_msg("GET %s answered %ld", files[i][0], r.status);
        header_has(&r, "Content-Type", files[i][1]);
        header_has(&r, "Content-Security-Policy", "default-src 'none'");
        header_has(&r, "Content-Security-Policy", "script-src 'self';");
        header_has(&r, "Content-Security-Policy", "style-src 'self';");
        header_has(&r, "Content-Security-Policy", "frame-ancestors 'none'");
        header_has(&r, "X-Content-Type-Options", "nosniff");
        char *csp = http_resp_header(&r, "Content-Security-Policy");
        assert_null(strstr(csp, "unsafe"));
        free(csp);
        if (i == 0) { /* no inline script or style in the page */
            assert_non_null(strstr(r.body, "<script src=\"/ui/app.js\""));
            assert_null(strstr(r.body, "<script>"));
            assert_null(strstr(r.body, "<style"));
            assert_null(strstr(r.body, " style="));
            assert_false(has_handler_attribute(r.body));
        }
        http_resp_free(&r);
    }
    get_raw(&f, "/ui", &r); /* the page, without the slash */
    assert_int_equal(r.status, 200);
    header_has(&r, "Content-Security-Policy", "script-src 'self';");
    assert_non_null(strstr(r.body, "<script src=\"/ui/app.js\""));
    http_resp_free(&r);
    get_raw(&f, "/ui/secret.txt", &r);
    assert_int_equal(r.status, 404);
    http_resp_free(&r);
    stop(&f);
}

/* Runs ui_page.js against the service (key in the environment); its JSON
   report (caller decrefs).  Fails the test when it exits non-zero. */
static json_t *drive_page(struct logfx *f, const char *recipient,
                          const char *shot)
{
    char logpath[] = "/tmp/mailpool-ui-XXXXXX";
    int fd = mkstemp(logpath);
    assert_true(fd >= 0);
    close(fd);
    char node[] = "/usr/bin/node", script[] = "tests/integration/ui_page.js";
    char url[64], rcpt[128], png[PATH_MAX];
    snprintf(url, sizeof url, "%s", mpserve_url(f->svc));
    snprintf(rcpt, sizeof rcpt, "%s", recipient);
    snprintf(png, sizeof png, "%s", shot);
    char *const argv[] = { node, script, url, rcpt, png, NULL };
    pid_t pid;
    int status = -1;
    setenv("UI_TEST_KEY", LOG_KEY, 1);
    assert_int_equal(ts_spawn_logged(&pid, argv, logpath), 0);
    unsetenv("UI_TEST_KEY");
    for (long long end = ts_now_ms() + 90000;; ts_sleep_ms(100)) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            break;
        if (ts_now_ms() > end) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
    }
    char *out = ts_slurp(logpath, NULL);
    unlink(logpath);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("the browser could not drive the page:\n%s",
                 out ? out : "(no output)");
    const char *line = out != NULL ? strrchr(out, '{') : NULL;
    while (line != NULL && line > out && line[-1] != '\n')
        line = memrchr(out, '{', (size_t)(line - out));
    json_t *j = line != NULL ? json_loads(line, 0, NULL) : NULL;
    if (j == NULL)
        fail_msg("no report from ui_page.js:\n%s", out ? out : "");
    free(out);
    return j;
}

/* 1 when the array of strings arr holds s (or, contains: one holds it). */
static int has_text(json_t *arr, const char *s, int contains)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        const char *t = json_string_value(v);
        if (t != NULL && (contains ? strstr(t, s) != NULL : strcmp(t, s) == 0))
            return 1;
    }
    return 0;
}

/* The page's list in its report rep: the three seeded messages c, b, a,
   newest first; the hostile subject is text, nothing ran. */
static void expect_page_rows(json_t *rep, const char *c, const char *b,
                             const char *a)
{
    assert_int_equal(json_integer_value(json_object_get(rep, "status")), 200);
    /* the list: the three seeded messages, newest first */
    json_t *rows = json_object_get(rep, "rows");
    assert_int_equal(json_array_size(rows), 3);
    const char *want[] = { c, b, a };
    for (size_t i = 0; i < 3; i++)
        assert_string_equal(
            json_string_value(json_object_get(json_array_get(rows, i), "id")),
            want[i]);
    /* the hostile subject is text: no element made of it, nothing ran */
    json_t *cells0 = json_object_get(json_array_get(rows, 0), "cells");
    assert_string_equal(json_string_value(json_array_get(cells0, 1)), "sent");
    assert_string_equal(json_string_value(json_array_get(cells0, 2)),
                        "dave@example.org");
    assert_string_equal(json_string_value(json_array_get(cells0, 3)), HOSTILE);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(rows, 0),
                                                        "subject_children")),
                     0);
    assert_true(json_is_null(json_object_get(rep, "pwned")));
    assert_int_equal(json_array_size(json_object_get(rep, "dialogs")), 0);
}

/* The rest of the report rep: the filter, the rejected recipient's
   detail, counters and chart, where the key is kept, no CSP violation or
   console error. */
static void expect_page_details(json_t *rep)
{
    /* the recipient filter narrowed it to the one message */
    json_t *filtered = json_object_get(rep, "filtered");
    assert_int_equal(json_array_size(filtered), 1);
    assert_true(has_text(filtered, BAD_RCPT, 1));
    /* its detail: the relay's own 550 words for the rejected recipient */
    json_t *rej = json_object_get(rep, "rejected_cells");
    assert_true(has_text(rej, BAD_RCPT, 0));
    assert_true(has_text(rej, "550", 0));
    assert_true(has_text(rej, RELAY_550, 0));
    assert_non_null(strstr(json_string_value(json_object_get(rep, "detail")),
                           "accepted: carol@example.org"));
    /* counters and chart */
    json_t *ctr = json_object_get(rep, "counters");
    assert_string_equal(json_string_value(json_object_get(ctr, "sent")), "3");
    assert_string_equal(json_string_value(json_object_get(ctr, "depth")), "0");
    assert_true(json_integer_value(json_object_get(rep, "chart_pixels")) > 0);
    /* the key in session storage only; no CSP violation, no error */
    json_t *kept = json_object_get(rep, "stored_key_in");
    assert_true(json_is_true(json_object_get(kept, "session")));
    assert_int_equal(json_integer_value(json_object_get(kept, "local")), 0);
    assert_int_equal(json_array_size(json_object_get(rep, "csp")), 0);
    assert_int_equal(json_array_size(json_object_get(rep, "console_errors")),
                     0);
}

static void test_page_in_chromium_lists_filters_and_shows_relay_words(
    void **state)
{
    struct logfx f;
    char shot[PATH_MAX], exe[PATH_MAX];
    (void)state;
    start(&f, NULL);
    /* the first one as the README's examples send: synchronously */
    char *a = send_as(&f, "[\"ann@example.org\"]", "Invoice 1", SYNC);
    char *b = send_one(&f, "[\"carol@example.org\", \"" BAD_RCPT "\"]",
                       "Welcome");
    char *c = send_one(&f, "[\"dave@example.org\"]", HOSTILE);
    wait_all_final(&f, 3);
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    assert_true(n > 0);
    exe[n] = '\0';
    snprintf(shot, sizeof shot, "%s/message-log.png", dirname(exe));

    json_t *rep = drive_page(&f, BAD_RCPT, shot);
    char *dump = json_dumps(rep, JSON_INDENT(1));
    printf("# page report: %s\n# screenshot: %s\n", dump, shot);
    free(dump);
    expect_page_rows(rep, c, b, a);
    expect_page_details(rep);
    assert_true(access(shot, R_OK) == 0);
    json_decref(rep);
    free(a);
    free(b);
    free(c);
    stop(&f);
}

#define T(fn) cmocka_unit_test(fn)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_list_shows_each_message_newest_first_and_filters),
        T(test_list_pages_by_cursor_without_gaps_or_repeats),
        T(test_list_shows_each_form_s_subject_decoded),
        T(test_list_and_status_need_the_bearer_key),
        T(test_bad_parameters_are_400_naming_the_parameter),
        T(test_10000_messages_are_listed_under_100_ms),
        T(test_queue_file_of_schema_1_is_migrated_and_listed),
        T(test_page_and_files_carry_a_strict_csp_and_nosniff),
        T(test_page_in_chromium_lists_filters_and_shows_relay_words),
    };
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
