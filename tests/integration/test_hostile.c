/*
 * test_hostile.c - hostile and malformed HTTP input against a running
 * `mailpool serve`: every request is answered with the right status and an
 * application/problem+json document (type, title, status), or the
 * connection is closed cleanly; nothing crashes, nothing hangs, no worker
 * is left stuck, and the relay receives exactly the messages the valid
 * requests asked for (requested = delivered), each once, dot-stuffed.
 *
 * One fake relay (tests/fakes/fake_smtp.py, which captures the exact DATA
 * bytes, still dot-stuffed) and two services in front of it are started
 * once for the whole group:
 *   A  --http-max-body 65536: 10 MB bodies are refused quickly;
 *   B  default limits (max_body 10 MiB) and a bearer key: room for the
 *      100,001-element arrays, and the 401 cases.
 * Both run with --http-connection-timeout 3 so that a client that stops
 * sending is dropped within seconds.  The relay delays RCPT for
 * slow@example.net by one second, which keeps a job out long enough for a
 * client to hang up while its connection is suspended.
 *
 * The tests, in order (they share the services and the count of messages
 * requested, so cmocka runs them as one group):
 *   1. the JSON table: broken JSON, wrong types for every member of every
 *      route, huge arrays, 10,000-deep nesting, NUL and invalid UTF-8,
 *      CR/LF in addresses and headers, duplicate keys, methods, paths,
 *      media types and bearer keys, over libcurl;
 *   2. the raw table: framing that libcurl would not send (Content-Length
 *      with Transfer-Encoding, two Content-Lengths, bad chunks, bad request
 *      lines, oversized heads, 10 MB bodies with and without
 *      Content-Length), each case on its own connection, all at once;
 *   3. SMTP smuggling sequences in bodies ("\n.\n", "\r\n.\r\n", "\n.\r\n",
 *      "\r.\r", a "." line, a raw message): delivered once, dot-stuffed,
 *      no forged second message;
 *   4. slow-loris clients (headers at one byte per 100 ms) while normal
 *      requests keep being served;
 *   5. clients that hang up mid-body, before reading the response (while
 *      the job is still out) and mid-response;
 *   6. afterwards: /healthz, a normal delivery, no job queued or worker
 *      busy, requested = delivered at the relay and in /metrics, and both
 *      services exit 0 on SIGTERM.
 *
 * Errors: cmocka assertions; a raw case that fails names itself and shows
 * what came back.  Threads: the raw table and the slow-loris clients run on
 * threads of their own that only record what happened; every assertion is
 * made on the main thread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/http.h"
#include "tests/support/mpserve.h"
#include "tests/support/peer.h"

#define KEY "hostile-key-0a1b"
#define CONN_TIMEOUT_S 3            /* --http-connection-timeout of A, B */
#define FORGED "forged@evil.example"

/* The relay: correct, but RCPT for slow@ takes a second. */
static const char RELAY_SCRIPT[] =
    "{\"rules\":[{\"match\":\"^RCPT TO:<slow@\",\"action\":\"delay:1\"}]}";

enum svc { A, B };

/* ---- Fixture: one relay, two services, for the whole group ---- */

struct fx {
    struct peer *peer;
    struct mpserve *svc[2];
    int requested;                  /* messages answered "sent" so far */
};

static int group_setup(void **state)
{
    struct fx *fx = calloc(1, sizeof *fx);
    if (fx == NULL)
        return -1;
    *state = fx;
    fx->peer = peer_start_fake(RELAY_SCRIPT);
    if (fx->peer == NULL)
        return -1;
    const char *a[] = { "--http-max-body", "65536",
                        "--http-connection-timeout", "3", NULL };
    const char *b[] = { "--http-connection-timeout", "3", NULL };
    fx->svc[A] = mpserve_start(peer_port(fx->peer), a);
    if (setenv("MAILPOOL_HTTP_API_KEYS", KEY, 1) != 0)  /* B's key: no */
        return -1;                  /* flag (it would show in ps) */
    fx->svc[B] = mpserve_start(peer_port(fx->peer), b);
    unsetenv("MAILPOOL_HTTP_API_KEYS");
    return fx->svc[A] != NULL && fx->svc[B] != NULL ? 0 : -1;
}

/* The last test stops the services and checks how they ended; this only
   cleans up (SIGKILL for a service still running after a failure). */
static int group_teardown(void **state)
{
    struct fx *fx = *state;
    if (fx == NULL)
        return 0;
    mpserve_free(fx->svc[A]);
    mpserve_free(fx->svc[B]);
    peer_stop(fx->peer);
    free(fx);
    return 0;
}

/* Milliseconds on the monotonic clock. */
static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleeps ms milliseconds. */
static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* ---- HTTP through libcurl ---- */

/* One request to service svc: path as is (no dot-segment folding), extra
   headers NULL-ended, body of blen bytes (NULL: none).  0, or -1 with
   r->err set when no HTTP answer came. */
static int http_try(const struct fx *fx, enum svc svc, const char *method,
                    const char *path, const char *const *headers,
                    const char *body, size_t blen, struct http_resp *r)
{
    char url[8192];
    snprintf(url, sizeof url, "%s%s", mpserve_url(fx->svc[svc]), path);
    return http_request_len(method, url, headers, body, blen, 0, r);
}

/* http_try that fails the test when no answer came. */
static void http(const struct fx *fx, enum svc svc, const char *method,
                 const char *path, const char *const *headers,
                 const char *body, struct http_resp *r)
{
    if (http_try(fx, svc, method, path, headers, body,
                 body != NULL ? strlen(body) : 0, r) < 0)
        fail_msg("%s %s: %s", method, path, r->err);
}

/* The body as JSON, or NULL (with the reason in why). */
static json_t *body_json(const char *body, size_t len, char *why,
                         size_t whylen)
{
    json_error_t e;
    json_t *j = json_loadb(body != NULL ? body : "", len, 0, &e);
    if (j == NULL)
        snprintf(why, whylen, "not JSON (%.100s)", e.text);
    return j;
}

/* The RFC 9110 phrase a problem of this status must have as its title;
   NULL for a status the API does not answer. */
static const char *status_title(long status)
{
    static const struct { long status; const char *title; } titles[] = {
        { 400, "Bad Request" }, { 401, "Unauthorized" },
        { 404, "Not Found" }, { 405, "Method Not Allowed" },
        { 413, "Content Too Large" }, { 414, "URI Too Long" },
        { 415, "Unsupported Media Type" }, { 422, "Unprocessable Content" },
        { 431, "Request Header Fields Too Large" },
        { 500, "Internal Server Error" }, { 501, "Not Implemented" },
        { 502, "Bad Gateway" }, { 503, "Service Unavailable" },
    };
    for (size_t i = 0; i < sizeof titles / sizeof titles[0]; i++)
        if (titles[i].status == status)
            return titles[i].title;
    return NULL;
}

/*
 * Checks a problem document: Content-Type application/problem+json, and a
 * JSON object with type, title (the status's phrase), detail (strings),
 * status (= the HTTP status), errors (an array of at most 100) and
 * request_id (= the X-Request-Id header).  0, or -1 with the reason in why.
 */
static int check_problem(long status, const char *hdrs, const char *body,
                         size_t len, json_t **out, char *why, size_t whylen)
{
    char *ct = http_header_value(hdrs, "Content-Type");
    char *rid = http_header_value(hdrs, "X-Request-Id");
    json_t *p = NULL, *errors;
    int rc = -1;
    if (ct == NULL || strcmp(ct, "application/problem+json") != 0) {
        snprintf(why, whylen, "Content-Type is %s",
                 ct != NULL ? ct : "(none)");
        goto out;
    }
    if ((p = body_json(body, len, why, whylen)) == NULL)
        goto out;
    errors = json_object_get(p, "errors");
    if (!json_is_string(json_object_get(p, "type")) ||
        !json_is_string(json_object_get(p, "title")) ||
        !json_is_string(json_object_get(p, "detail")) ||
        json_integer_value(json_object_get(p, "status")) != status) {
        snprintf(why, whylen, "type/title/detail/status wrong");
        goto out;
    }
    const char *title = json_string_value(json_object_get(p, "title"));
    if (status_title(status) == NULL ||
        strcmp(title, status_title(status)) != 0) {
        snprintf(why, whylen, "title \"%s\" for status %ld", title, status);
        goto out;
    }
    if (!json_is_array(errors) || json_array_size(errors) > 100) {
        snprintf(why, whylen, "errors is not an array of at most 100");
        goto out;
    }
    const char *prid = json_string_value(json_object_get(p, "request_id"));
    if (rid == NULL || prid == NULL || strcmp(rid, prid) != 0) {
        snprintf(why, whylen, "request_id does not match X-Request-Id");
        goto out;
    }
    rc = 0;
out:
    free(ct);
    free(rid);
    if (rc == 0 && out != NULL)
        *out = p;
    else
        json_decref(p);
    return rc;
}

/* 1 when problem p lists an error for exactly this field. */
static int has_field(json_t *p, const char *field)
{
    json_t *e;
    size_t i;
    json_array_foreach(json_object_get(p, "errors"), i, e) {
        const char *f = json_string_value(json_object_get(e, "field"));
        if (f != NULL && strcmp(f, field) == 0 &&
            json_is_string(json_object_get(e, "message")))
            return 1;
    }
    return 0;
}

/* ---- Generated bodies ---- */

/* A buffer of n bytes plus a NUL; fails the test when out of memory. */
static char *xmalloc(size_t n)
{
    char *p = malloc(n + 1);
    assert_non_null(p);
    p[n] = '\0';
    return p;
}

/* head + n copies of item separated by sep + tail. */
static char *repeat(const char *head, const char *item, const char *sep,
                    size_t n, const char *tail, size_t *len)
{
    size_t hl = strlen(head), il = strlen(item), sl = strlen(sep),
           tl = strlen(tail);
    size_t total = hl + n * il + (n > 0 ? (n - 1) * sl : 0) + tl, o = 0;
    char *s = xmalloc(total);
    memcpy(s, head, hl);
    o = hl;
    for (size_t i = 0; i < n; i++) {
        if (i > 0) {
            memcpy(s + o, sep, sl);
            o += sl;
        }
        memcpy(s + o, item, il);
        o += il;
    }
    memcpy(s + o, tail, tl);
    *len = total;
    return s;
}

/* open n times, mid, close n times. */
static char *nest(const char *head, const char *open, size_t n,
                  const char *mid, const char *close, const char *tail,
                  size_t *len)
{
    size_t hl = strlen(head), ol = strlen(open), ml = strlen(mid),
           cl = strlen(close), tl = strlen(tail);
    size_t total = hl + n * (ol + cl) + ml + tl, o = hl;
    char *s = xmalloc(total);
    memcpy(s, head, hl);
    for (size_t i = 0; i < n; i++, o += ol)
        memcpy(s + o, open, ol);
    memcpy(s + o, mid, ml);
    o += ml;
    for (size_t i = 0; i < n; i++, o += cl)
        memcpy(s + o, close, cl);
    memcpy(s + o, tail, tl);
    *len = total;
    return s;
}

#define MSG_HEAD "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\"]"

/* Generated bodies of the JSON table (each caller-freed). */
static char *gen_deep_arrays(size_t *len)
{
    return nest("", "[", 10000, "", "]", "", len);
}

static char *gen_deep_unclosed(size_t *len)
{
    return nest("", "[", 10000, "", "", "", len);
}

static char *gen_deep_objects(size_t *len)
{
    return nest("", "{\"a\":", 10000, "1", "}", "", len);
}

static char *gen_deep_in_to(size_t *len)
{
    return nest("{\"from\":\"sender@example.com\",\"to\":", "[", 10000,
                "\"rcpt@example.net\"", "]", "}", len);
}

static char *gen_deep_batch(size_t *len)
{
    return nest("{\"messages\":", "[", 10000, "", "]", "}", len);
}

static char *gen_deep_verify(size_t *len)
{
    return nest("{\"address\":", "{\"a\":", 10000, "1", "}", "}", len);
}

/* 1,000 deep: under the parser's limit, so it is the decoder's 422. */
static char *gen_nest_1000_body(size_t *len)
{
    return nest(MSG_HEAD ",\"body\":", "[", 1000, "\"x\"", "]", "}", len);
}

static char *gen_101_rcpt(size_t *len)
{
    return repeat("{\"from\":\"sender@example.com\",\"to\":[",
                  "\"rcpt@example.net\"", ",", 101, "]}", len);
}

static char *gen_10000_rcpt(size_t *len)
{
    return repeat("{\"from\":\"sender@example.com\",\"to\":[",
                  "\"rcpt@example.net\"", ",", 10000, "]}", len);
}

/* An element of 8 bytes: 100,001 of them stay under the bound of one
   JSON value per 8 bytes of body (api_json_too_many_values). */
#define ITEM8 "12345678"

/* 100,001 empty strings (3 bytes each with the comma) as body lines. */
static char *gen_100001_empty_lines(size_t *len)
{
    return repeat(MSG_HEAD ",\"body\":[", "\"\"", ",", 100001, "]}", len);
}

/* 100,001 empty arrays (3 bytes each) as header fields. */
static char *gen_100001_empty_pairs(size_t *len)
{
    return repeat(MSG_HEAD ",\"headers\":[", "[]", ",", 100001, "]}", len);
}

static char *gen_100001_to(size_t *len)
{
    return repeat("{\"from\":\"sender@example.com\",\"to\":[", ITEM8, ",",
                  100001, "]}", len);
}

static char *gen_100001_headers(size_t *len)
{
    return repeat(MSG_HEAD ",\"headers\":[", ITEM8, ",", 100001, "]}", len);
}

static char *gen_100001_lines(size_t *len)
{
    return repeat(MSG_HEAD ",\"body\":[", ITEM8, ",", 100001, "]}", len);
}

static char *gen_100001_messages(size_t *len)
{
    return repeat("{\"messages\":[", ITEM8, ",", 100001, "]}", len);
}

static char *gen_100001_root(size_t *len)
{
    return repeat("[", ITEM8, ",", 100001, "]", len);
}

static char *gen_1001_batch(size_t *len)
{
    return repeat("{\"messages\":[", "{\"from\":\"\",\"to\":[\"a@b.example\"]}",
                  ",", 1001, "]}", len);
}

static char *gen_long_address(size_t *len)
{
    return nest("{\"address\":\"", "v", 257, "", "", "\"}", len);
}

static char *gen_long_list(size_t *len)
{
    return nest("{\"list\":\"", "l", 300, "", "", "\"}", len);
}

static char *gen_long_topic(size_t *len)
{
    return nest("{\"topic\":\"", "t", 257, "", "", "\"}", len);
}

static char *gen_long_local_part(size_t *len)
{
    return nest("{\"from\":\"sender@example.com\",\"to\":[\"", "l", 300,
                "@example.net", "", "\"]}", len);
}

/* A path of 4,000 bytes (the generator's "body" is the path). */
static char *gen_long_path(size_t *len)
{
    return nest("/v1/", "a", 4000, "", "", "", len);
}

/* ---- The JSON table ---- */

#define CT "Content-Type: application/json"
#define NOCT "Content-Type:"            /* libcurl: send no Content-Type */

struct jcase {
    const char *name;
    enum svc svc;
    const char *method, *path;
    const char *ctype;              /* a whole header line */
    const char *hdr;                /* one more header line, or NULL */
    const char *body;               /* NULL: none (unless gen) */
    size_t blen;                    /* bytes of body (may hold NULs) */
    char *(*gen)(size_t *len);      /* a generated body */
    int gen_path;                   /* gen makes the path, not the body */
    long status, alt;               /* the status (alt: also accepted) */
    const char *field;              /* an errors[].field that must be
                                       listed, or NULL */
    size_t nerrors;                 /* errors[] must hold this many; 0: any */
    const char *detail;             /* a phrase the problem's detail must
                                       hold, or NULL */
};

#define BODY(s) .body = (s), .blen = sizeof(s) - 1
/* A POST to route r of service A with a JSON body. */
#define JPOST(n, r, s, st, f) \
    { .name = (n), .svc = A, .method = "POST", .path = (r), .ctype = CT, \
      BODY(s), .status = (st), .field = (f) }
#define MSG(n, s, st, f) JPOST(n, "/v1/messages", s, st, f)
#define BATCH(n, s, st, f) JPOST(n, "/v1/messages/batch", s, st, f)
#define VERIFY(n, s, st, f) JPOST(n, "/v1/verify", s, st, f)
#define EXPAND(n, s, st, f) JPOST(n, "/v1/expand", s, st, f)
#define HELP(n, s, st, f) JPOST(n, "/v1/help", s, st, f)
/* A POST with a generated body. */
#define GPOST(n, sv, r, g, st, f) \
    { .name = (n), .svc = (sv), .method = "POST", .path = (r), .ctype = CT, \
      .gen = (g), .status = (st), .field = (f) }
/* Another method or path, no body. */
#define REQ(n, m, p, st) \
    { .name = (n), .svc = A, .method = (m), .path = (p), .ctype = NULL, \
      .status = (st) }
/* A POST of a message with this Content-Type line. */
#define TYPED(n, ct, s, st) \
    { .name = (n), .svc = A, .method = "POST", .path = "/v1/messages", \
      .ctype = (ct), BODY(s), .status = (st) }
/* A POST to B with this Authorization line (NULL: none). */
#define AUTH(n, auth, s, st) \
    { .name = (n), .svc = B, .method = "POST", .path = "/v1/messages", \
      .ctype = CT, .hdr = (auth), BODY(s), .status = (st) }

#define M MSG_HEAD                      /* for brevity in the table */

static const struct jcase JCASES[] = {
    /* Broken JSON: 400, the whole body ("$") named. */
    MSG("truncated string", M ",\"body\":\"abc", 400, "$"),
    MSG("truncated after a colon", "{\"from\":", 400, "$"),
    MSG("a lone brace", "{", 400, "$"),
    MSG("trailing garbage", M "} x", 400, "$"),
    MSG("two documents", M "}{}", 400, "$"),
    MSG("single quotes",
        "{'from':'sender@example.com','to':['rcpt@example.net']}", 400, "$"),
    MSG("a block comment", "/* hi */" M "}", 400, "$"),
    MSG("a line comment", M ", // hi\n\"body\":\"x\"}", 400, "$"),
    MSG("NaN", M ",\"body\":NaN}", 400, "$"),
    MSG("Infinity", M ",\"body\":Infinity}", 400, "$"),
    MSG("-Infinity", M ",\"body\":-Infinity}", 400, "$"),
    MSG("a real that overflows", M ",\"body\":1e999999}", 400, "$"),
    MSG("a 30-digit integer", M ",\"body\":123456789012345678901234567890}",
        400, "$"),
    MSG("a leading zero", M ",\"body\":007}", 400, "$"),
    MSG("an unquoted key", "{from:\"sender@example.com\"}", 400, "$"),
    MSG("a trailing comma in an object", M ",}", 400, "$"),
    MSG("a trailing comma in an array",
        "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\",]}",
        400, "$"),
    MSG("top-level true", "true", 400, "$"),
    MSG("top-level null", "null", 400, "$"),
    MSG("top-level string", "\"sender@example.com\"", 400, "$"),
    MSG("top-level number", "42", 400, "$"),
    MSG("whitespace only", " \n\t \r\n", 400, "$"),
    MSG("a UTF-8 byte order mark", "\xEF\xBB\xBF" M "}", 400, "$"),
    MSG("an invalid escape", M ",\"body\":\"\\x41\"}", 400, "$"),
    MSG("a lone high surrogate", M ",\"body\":\"\\ud800\"}", 400, "$"),
    MSG("a lone low surrogate", M ",\"body\":\"\\udc00x\"}", 400, "$"),
    MSG("\\u0000 in from",
        "{\"from\":\"sender\\u0000@example.com\",\"to\":[\"rcpt@example.net\"]}",
        400, "$"),
    MSG("\\u0000 in to",
        "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\\u0000"
        "evil@example.org\"]}", 400, "$"),
    MSG("\\u0000 in a header value",
        M ",\"headers\":{\"Subject\":\"a\\u0000b\"}}", 400, "$"),
    MSG("\\u0000 in a header name",
        M ",\"headers\":{\"X-A\\u0000B\":\"v\"}}", 400, "$"),
    MSG("\\u0000 in a body line", M ",\"body\":[\"a\",\"\\u0000\"]}", 400,
        "$"),
    MSG("a raw NUL byte in a string", M ",\"body\":\"a\0b\"}", 400, "$"),
    MSG("a raw NUL byte between tokens", M "\0}", 400, "$"),
    MSG("byte 0xFF in the body", M ",\"body\":\"a\xFF" "b\"}", 400, "$"),
    MSG("an overlong '/' (C0 AF)", M ",\"body\":\"\xC0\xAF\"}", 400, "$"),
    MSG("a UTF-8 encoded surrogate (ED A0 80)",
        M ",\"body\":\"\xED\xA0\x80\"}", 400, "$"),
    MSG("a truncated UTF-8 sequence", M ",\"body\":\"\xE2\x82\"}", 400, "$"),
    MSG("byte 0xFE in from",
        "{\"from\":\"s\xFE@example.com\",\"to\":[\"rcpt@example.net\"]}", 400,
        "$"),
    MSG("invalid UTF-8 in a header name",
        M ",\"headers\":{\"X-\xFF\":\"v\"}}", 400, "$"),
    MSG("a raw control byte in a string", M ",\"body\":\"a\x01" "b\"}", 400,
        "$"),
    MSG("a raw line feed in a string", M ",\"body\":\"a\nb\"}", 400, "$"),
    MSG("a raw tab in a string", M ",\"body\":\"a\tb\"}", 400, "$"),
    MSG("duplicate from",
        "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\"],"
        "\"from\":\"forged@evil.example\"}", 400, "$"),
    MSG("duplicate to",
        "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\"],"
        "\"to\":[\"victim@example.org\"]}", 400, "$"),
    MSG("duplicate header names in the object form",
        M ",\"headers\":{\"Subject\":\"a\",\"Subject\":\"b\"}}", 400, "$"),
    BATCH("duplicate messages",
          "{\"messages\":[" M "}],\"messages\":[" M "}]}", 400, "$"),
    VERIFY("duplicate address", "{\"address\":\"a\",\"address\":\"b\"}",
           400, "$"),
    GPOST("10,000-deep arrays", A, "/v1/messages", gen_deep_arrays, 400, "$"),
    GPOST("10,000-deep arrays, never closed", A, "/v1/messages",
          gen_deep_unclosed, 400, "$"),
    GPOST("10,000-deep objects", A, "/v1/messages", gen_deep_objects, 400,
          "$"),
    GPOST("10,000-deep arrays in to", A, "/v1/messages", gen_deep_in_to, 400,
          "$"),
    GPOST("10,000-deep arrays in a batch", A, "/v1/messages/batch",
          gen_deep_batch, 400, "$"),
    GPOST("10,000-deep objects in verify", A, "/v1/verify", gen_deep_verify,
          400, "$"),

    /* Wrong types for every member of a message: 422 naming the field. */
    MSG("from: a number", "{\"from\":5,\"to\":[\"rcpt@example.net\"]}", 422,
        "from"),
    MSG("from: null", "{\"from\":null,\"to\":[\"rcpt@example.net\"]}", 422,
        "from"),
    MSG("from: true", "{\"from\":true,\"to\":[\"rcpt@example.net\"]}", 422,
        "from"),
    MSG("from: an array",
        "{\"from\":[\"sender@example.com\"],\"to\":[\"rcpt@example.net\"]}",
        422, "from"),
    MSG("from: an object without email (the composed form's mailbox)",
        "{\"from\":{},\"to\":[\"rcpt@example.net\"]}", 422, "from.email"),
    MSG("to: a string",
        "{\"from\":\"sender@example.com\",\"to\":\"rcpt@example.net\"}", 422,
        "to"),
    MSG("to: a number", "{\"from\":\"sender@example.com\",\"to\":1}", 422,
        "to"),
    MSG("to: an object",
        "{\"from\":\"sender@example.com\",\"to\":{\"a\":\"rcpt@example.net\"}}",
        422, "to"),
    MSG("to: null", "{\"from\":\"sender@example.com\",\"to\":null}", 422,
        "to"),
    MSG("to: [1]", "{\"from\":\"sender@example.com\",\"to\":[1]}", 422,
        "to[0]"),
    MSG("to: [null]", "{\"from\":\"sender@example.com\",\"to\":[null]}", 422,
        "to[0]"),
    MSG("to: a nested array",
        "{\"from\":\"sender@example.com\",\"to\":[[\"rcpt@example.net\"]]}",
        422, "to[0]"),
    MSG("to: [{}] (the composed form's mailbox, without email)",
        "{\"from\":\"sender@example.com\",\"to\":[{}]}", 422, "to[0].email"),
    MSG("to: a bad third item",
        "{\"from\":\"sender@example.com\",\"to\":[\"a@example.net\","
        "\"b@example.net\",5]}", 422, "to[2]"),
    MSG("to: an empty address",
        "{\"from\":\"sender@example.com\",\"to\":[\"\"]}", 422, "to[0]"),
    GPOST("to: 101 recipients", A, "/v1/messages", gen_101_rcpt, 422, "to"),
    MSG("headers: a string", M ",\"headers\":\"Subject: x\"}", 422,
        "headers"),
    MSG("headers: a number", M ",\"headers\":1}", 422, "headers"),
    MSG("headers: true", M ",\"headers\":true}", 422, "headers"),
    MSG("headers: a pair of one", M ",\"headers\":[[\"X-A\"]]}", 422,
        "headers[0]"),
    MSG("headers: a pair of three", M ",\"headers\":[[\"X-A\",\"1\",\"2\"]]}",
        422, "headers[0]"),
    MSG("headers: a number as a name", M ",\"headers\":[[1,\"v\"]]}", 422,
        "headers[0][0]"),
    MSG("headers: a number as a value", M ",\"headers\":[[\"X-A\",1]]}", 422,
        "headers[0][1]"),
    MSG("headers: a string instead of a pair",
        M ",\"headers\":[\"X-A: 1\"]}", 422, "headers[0]"),
    MSG("headers: a number value", M ",\"headers\":{\"X-A\":1}}", 422,
        "headers.X-A"),
    MSG("headers: a null value", M ",\"headers\":{\"X-A\":null}}", 422,
        "headers.X-A"),
    MSG("headers: an array value", M ",\"headers\":{\"X-A\":[\"v\"]}}", 422,
        "headers.X-A"),
    MSG("headers: an empty name", M ",\"headers\":{\"\":\"v\"}}", 422,
        "headers."),
    MSG("headers: a space in the name",
        M ",\"headers\":{\"Bad Name\":\"v\"}}", 422, "headers.Bad Name"),
    MSG("headers: a colon in the name", M ",\"headers\":{\"X:Y\":\"v\"}}",
        422, "headers.X:Y"),
    MSG("headers: a non-ASCII name",
        M ",\"headers\":{\"X-\\u00e9\":\"v\"}}", 422, "headers.X-\xC3\xA9"),
    MSG("body: a number", M ",\"body\":7}", 422, "body"),
    MSG("body: true", M ",\"body\":true}", 422, "body"),
    MSG("body: an object", M ",\"body\":{\"text\":\"x\"}}", 422, "body"),
    MSG("body: [1]", M ",\"body\":[\"a\",1]}", 422, "body[1]"),
    MSG("body: [null]", M ",\"body\":[null]}", 422, "body[0]"),
    MSG("body: a nested array", M ",\"body\":[[\"x\"]]}", 422, "body[0]"),
    GPOST("body: 1,000-deep arrays", A, "/v1/messages", gen_nest_1000_body,
          422, "body[0]"),
    MSG("raw: a number", M ",\"raw\":5}", 422, "raw"),
    MSG("raw: empty", M ",\"raw\":\"\"}", 422, "raw"),
    MSG("raw: an array", M ",\"raw\":[\"Subject: x\"]}", 422, "raw"),
    MSG("raw beside headers",
        M ",\"raw\":\"Subject: x\\r\\n\\r\\nx\",\"headers\":{\"X-A\":\"1\"}}",
        422, "raw"),
    MSG("bcc beside the envelope form's body (two forms mixed)",
        M ",\"bcc\":[\"spy@example.org\"],\"body\":\"x\"}", 422, "body"),
    MSG("unknown member __proto__", M ",\"__proto__\":{\"from\":\"x\"}}",
        422, "__proto__"),
    MSG("unknown member with an empty name", M ",\"\":1}", 422, NULL),
    MSG("root: an empty array", "[]", 422, "$"),
    MSG("root: an array of a message", "[" M "}]", 422, "$"),

    /* CR/LF and other bytes that must not reach the SMTP dialogue. */
    MSG("CRLF + RCPT in from",
        "{\"from\":\"sender@example.com\\r\\nRCPT TO:<victim@example.org>\","
        "\"to\":[\"rcpt@example.net\"]}", 422, "from"),
    MSG("LF + DATA in to",
        "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\\nDATA\"]}",
        422, "to[0]"),
    MSG("a bare CR in to",
        "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\\rx\"]}",
        422, "to[0]"),
    MSG("CRLF.CRLF + MAIL in from",
        "{\"from\":\"s@example.com>\\r\\n.\\r\\nMAIL FROM:<" FORGED "\","
        "\"to\":[\"rcpt@example.net\"]}", 422, "from"),
    MSG("angle brackets in from",
        "{\"from\":\"<sender@example.com>\",\"to\":[\"rcpt@example.net\"]}",
        422, "from"),
    MSG("a space in an address",
        "{\"from\":\"sender@example.com\",\"to\":[\"rcpt @example.net\"]}",
        422, "to[0]"),
    GPOST("a 300-byte local part", A, "/v1/messages", gen_long_local_part,
          422, "to[0]"),
    MSG("a control character in an address",
        "{\"from\":\"sender@example.com\",\"to\":[\"rc\\u0001pt@example.net\"]}",
        422, "to[0]"),
    MSG("DEL in an address",
        "{\"from\":\"sender@example.com\",\"to\":[\"rc\\u007fpt@example.net\"]}",
        422, "to[0]"),
    MSG("CRLF + Bcc in a header value",
        M ",\"headers\":{\"Subject\":\"hi\\r\\nBcc: spy@example.org\"}}", 422,
        "headers.Subject"),
    MSG("a bare LF in a header value",
        M ",\"headers\":{\"Subject\":\"hi\\nX-B: 1\"}}", 422,
        "headers.Subject"),
    MSG("a bare CR in a header value",
        M ",\"headers\":{\"Subject\":\"hi\\rX-B: 1\"}}", 422,
        "headers.Subject"),
    MSG("a folded header value", M ",\"headers\":{\"Subject\":\"a\\r\\n b\"}}",
        422, "headers.Subject"),
    MSG("CRLF.CRLF in a header value",
        M ",\"headers\":{\"Subject\":\"a\\r\\n.\\r\\nMAIL FROM:<" FORGED ">\"}}",
        422, "headers.Subject"),
    MSG("CRLF in a header name",
        M ",\"headers\":{\"X-A\\r\\nBcc\":\"spy@example.org\"}}", 422,
        "headers.X-A\r\nBcc"),
    MSG("LF in a header name, pair form",
        M ",\"headers\":[[\"X-A\\nBcc\",\"spy@example.org\"]]}", 422,
        "headers[0][0]"),

    /* /v1/messages/batch. */
    BATCH("batch root: an array", "[" M "}]", 422, "$"),
    BATCH("messages: an object", "{\"messages\":" M "}}", 422, "messages"),
    BATCH("messages: a string", "{\"messages\":\"x\"}", 422, "messages"),
    BATCH("messages: null", "{\"messages\":null}", 422, "messages"),
    BATCH("messages: missing", "{}", 422, "messages"),
    BATCH("messages: empty", "{\"messages\":[]}", 422, "messages"),
    BATCH("messages: [1]", "{\"messages\":[1]}", 422, "messages[0]"),
    BATCH("messages: [null]", "{\"messages\":[null]}", 422, "messages[0]"),
    BATCH("messages: [[]]", "{\"messages\":[[]]}", 422, "messages[0]"),
    BATCH("one bad message among good ones",
          "{\"messages\":[" M "}," M "},{\"from\":\"sender@example.com\","
          "\"to\":[\"a@example.net\",1]}]}", 422, "messages[2].to[1]"),
    BATCH("CRLF in the from of a batched message",
          "{\"messages\":[{\"from\":\"a@example.com\\r\\nRSET\","
          "\"to\":[\"rcpt@example.net\"]}]}", 422, "messages[0].from"),
    BATCH("an unknown member beside messages",
          "{\"messages\":[" M "}],\"relay\":\"evil.example\"}", 422, "relay"),
    GPOST("1,001 messages", A, "/v1/messages/batch", gen_1001_batch, 422,
          "messages"),

    /* /v1/verify, /v1/expand, /v1/help. */
    VERIFY("address: a number", "{\"address\":5}", 422, "address"),
    VERIFY("address: null", "{\"address\":null}", 422, "address"),
    VERIFY("address: empty", "{\"address\":\"\"}", 422, "address"),
    VERIFY("address: an array", "{\"address\":[\"fred\"]}", 422, "address"),
    GPOST("address: 257 bytes", A, "/v1/verify", gen_long_address, 422,
          "address"),
    VERIFY("address: CRLF + DATA", "{\"address\":\"fred\\r\\nDATA\"}", 422,
           "address"),
    VERIFY("address: a control character", "{\"address\":\"fr\\u0001ed\"}",
           422, "address"),
    VERIFY("address: DEL", "{\"address\":\"fr\\u007fed\"}", 422, "address"),
    VERIFY("verify: an unknown member",
           "{\"address\":\"fred\",\"list\":\"staff\"}", 422, "list"),
    VERIFY("verify root: an array", "[\"fred\"]", 422, "$"),
    VERIFY("verify root: missing address", "{}", 422, "address"),
    EXPAND("list: a number", "{\"list\":1}", 422, "list"),
    EXPAND("list: missing", "{}", 422, "list"),
    EXPAND("list: LF + QUIT", "{\"list\":\"staff\\nQUIT\"}", 422, "list"),
    EXPAND("list: an object", "{\"list\":{}}", 422, "list"),
    GPOST("list: 300 bytes", A, "/v1/expand", gen_long_list, 422, "list"),
    HELP("topic: a number", "{\"topic\":1}", 422, "topic"),
    HELP("topic: LF", "{\"topic\":\"DATA\\nQUIT\"}", 422, "topic"),
    HELP("topic: an array", "{\"topic\":[]}", 422, "topic"),
    GPOST("topic: 257 bytes", A, "/v1/help", gen_long_topic, 422, "topic"),
    HELP("help: an unknown member", "{\"address\":\"fred\"}", 422, "address"),
    HELP("help root: a string", "\"HELP\"", 400, "$"),

    /* Huge arrays (on B, which has room for them). */
    GPOST("10,000 recipients", B, "/v1/messages", gen_10000_rcpt, 422, "to"),
    GPOST("100,001 recipients (numbers)", B, "/v1/messages", gen_100001_to,
          422, "to"),
    { .name = "100,001 headers: errors stop at 100", .svc = B,
      .method = "POST", .path = "/v1/messages", .ctype = CT,
      .gen = gen_100001_headers, .status = 422, .field = "headers[99]",
      .nerrors = 100 },
    { .name = "100,001 body lines: errors stop at 100", .svc = B,
      .method = "POST", .path = "/v1/messages", .ctype = CT,
      .gen = gen_100001_lines, .status = 422, .field = "body[0]",
      .nerrors = 100 },
    GPOST("100,001 messages", B, "/v1/messages/batch", gen_100001_messages,
          422, "messages"),
    GPOST("100,001-element root to verify", B, "/v1/verify", gen_100001_root,
          422, "$"),
    /* More JSON values than one per 8 bytes: refused before a tree is
       built (the decoded size stays a small multiple of the body's). */
    GPOST("100,001 empty body lines", B, "/v1/messages",
          gen_100001_empty_lines, 413, NULL),
    GPOST("100,001 empty header pairs", B, "/v1/messages",
          gen_100001_empty_pairs, 413, NULL),

    /* Methods. */
    REQ("GET on /v1/messages/batch", "GET", "/v1/messages/batch", 405),
    REQ("PUT on /v1/messages", "PUT", "/v1/messages", 405),
    REQ("DELETE on /v1/messages/batch", "DELETE", "/v1/messages/batch", 405),
    REQ("PATCH on /v1/verify", "PATCH", "/v1/verify", 405),
    REQ("OPTIONS on /v1/expand", "OPTIONS", "/v1/expand", 405),
    REQ("TRACE on /v1/help", "TRACE", "/v1/help", 405),
    REQ("an invented method", "FROB", "/v1/messages", 405),
    REQ("a lower-case post", "post", "/v1/messages", 405),
    REQ("POST on /healthz", "POST", "/healthz", 405),
    REQ("POST on /metrics", "POST", "/metrics", 405),
    REQ("PUT on /openapi.json", "PUT", "/openapi.json", 405),
    REQ("DELETE on /readyz", "DELETE", "/readyz", 405),

    /* Paths. */
    REQ("a trailing slash", "POST", "/v1/messages/", 404),
    REQ("a double slash", "POST", "//v1/messages", 404),
    REQ("upper case", "POST", "/V1/MESSAGES", 404),
    REQ("a dot segment", "POST", "/v1/messages/../messages", 404),
    REQ("a matrix parameter", "POST", "/v1/messages;x=1", 404),
    REQ("an encoded slash", "POST", "/v1%2Fmessages%2F", 404),
    REQ("encoded dot segments", "GET", "/%2e%2e/%2e%2e/etc/passwd", 404),
    REQ("the root", "GET", "/", 404),
    REQ("batch with a trailing slash", "POST", "/v1/messages/batch/", 404),
    REQ("an unknown version", "POST", "/v2/messages", 404),
    { .name = "a 4,000-byte path", .svc = A, .method = "GET",
      .gen = gen_long_path, .gen_path = 1, .status = 404 },
    /* Percent-escapes: only unreserved characters (RFC 3986 2.3) are
       decoded before routing; every other escape stays as it is and
       matches no route.  Each body is a valid message: had the path been
       cut or decoded to a route, it would have been sent, and the relay's
       count in the last test would not match. */
    { .name = "an encoded NUL after the route", .svc = A, .method = "POST",
      .path = "/v1/messages%00/x", .ctype = CT,
      BODY(M ",\"headers\":{\"Subject\":\"hostile: nul\"}}"),
      .status = 404, .detail = "%00" },
    { .name = "an encoded NUL ending the route", .svc = A, .method = "POST",
      .path = "/v1/messages%00", .ctype = CT,
      BODY(M ",\"headers\":{\"Subject\":\"hostile: nul\"}}"),
      .status = 404, .detail = "%00" },
    { .name = "an encoded NUL on a GET route", .svc = A,
      .method = "GET", .path = "/healthz%00", .status = 404,
      .detail = "%00" },
    { .name = "an encoded NUL in the query only", .svc = A, .method = "POST",
      .path = "/v1/messages?x=%00", .ctype = CT,
      BODY(M ",\"headers\":{\"Subject\":\"hostile: query nul\"}}"),
      .status = 200 },
    { .name = "%2500 is decoded once at most", .svc = A, .method = "POST",
      .path = "/v1/messages%2500", .ctype = CT,
      BODY(M ",\"headers\":{\"Subject\":\"hostile: nul\"}}"),
      .status = 404, .detail = "no such route" },
    { .name = "an encoded slash is not a slash", .svc = A, .method = "POST",
      .path = "/v1%2Fmessages", .ctype = CT,
      BODY(M ",\"headers\":{\"Subject\":\"hostile: slash\"}}"),
      .status = 404, .detail = "no such route" },
    { .name = "an encoded slash before batch", .svc = A, .method = "POST",
      .path = "/v1/messages%2fbatch", .ctype = CT,
      BODY("{\"messages\":[" M "}]}"), .status = 404 },
    { .name = "an encoded space", .svc = A, .method = "GET",
      .path = "/healthz%20", .status = 404 },
    { .name = "an encoded question mark", .svc = A, .method = "POST",
      .path = "/v1/messages%3Fx=1", .ctype = CT, BODY(M "}"), .status = 404 },
    { .name = "a lone percent sign", .svc = A, .method = "GET",
      .path = "/healthz%", .status = 404 },
    { .name = "a percent sign and one hex digit", .svc = A, .method = "GET",
      .path = "/healthz%4", .status = 404 },
    { .name = "an encoded unreserved dot", .svc = A, .method = "GET",
      .path = "/openapi%2Ejson", .status = 200 },
    { .name = "a query string is ignored", .svc = A, .method = "POST",
      .path = "/v1/messages?relay=evil.example&x=1", .ctype = CT,
      BODY(M ",\"headers\":{\"Subject\":\"hostile: query\"}}"),
      .status = 200 },
    { .name = "a percent-encoded route", .svc = A, .method = "POST",
      .path = "/v1/%6Dessages", .ctype = CT,
      BODY(M ",\"headers\":{\"Subject\":\"hostile: percent\"}}"),
      .status = 200 },

    /* Media types. */
    TYPED("no Content-Type", NOCT, M "}", 415),
    TYPED("an empty Content-Type", "Content-Type;", M "}", 415),
    TYPED("text/plain", "Content-Type: text/plain", M "}", 415),
    TYPED("application/json-patch+json",
          "Content-Type: application/json-patch+json", M "}", 415),
    TYPED("application/jsonx", "Content-Type: application/jsonx", M "}", 415),
    TYPED("a form", "Content-Type: application/x-www-form-urlencoded",
          "from=sender%40example.com", 415),
    TYPED("multipart", "Content-Type: multipart/form-data; boundary=x",
          "--x\r\n\r\n{}\r\n--x--\r\n", 415),
    TYPED("charset latin1", "Content-Type: application/json; charset=latin1",
          M "}", 415),
    TYPED("junk after the type", "Content-Type: application/json junk",
          M "}", 415),
    TYPED("415 comes before the body is parsed", "Content-Type: text/plain",
          "{{{{", 415),
    TYPED("the type in upper case", "Content-Type: APPLICATION/JSON", "{}",
          422),
    TYPED("a quoted charset", "Content-Type: application/json; "
          "charset=\"UTF-8\"", "{}", 422),
    TYPED("empty parameters", "Content-Type: application/json;;", "{}", 422),
    TYPED("another parameter", "Content-Type: application/json; "
          "boundary=x", "{}", 422),

    /* Bearer keys (service B). */
    AUTH("no Authorization", NULL, M "}", 401),
    AUTH("a wrong key", "Authorization: Bearer nope", M "}", 401),
    AUTH("Bearer and no key", "Authorization: Bearer", M "}", 401),
    AUTH("Basic", "Authorization: Basic aG9zdGlsZTprZXk=", M "}", 401),
    AUTH("the key and a second word", "Authorization: Bearer " KEY " x",
         M "}", 401),
    AUTH("401 comes before the body is parsed", "Authorization: Bearer no",
         "{{{{", 401),
    { .name = "401 comes before 415", .svc = B, .method = "POST",
      .path = "/v1/messages", .ctype = "Content-Type: text/plain",
      .hdr = "Authorization: Bearer no", BODY("x"), .status = 401 },
    AUTH("the key in lower-case scheme", "Authorization: bearer " KEY, "{}",
         422),

    /* Valid requests among the hostile ones: delivered, and counted. */
    MSG("headers and body null", M ",\"headers\":null,\"body\":null}", 200,
        NULL),
    MSG("body as lines",
        M ",\"headers\":{\"Subject\":\"hostile: lines\"},"
        "\"body\":[\"one\",\"\",\"three\"]}", 200, NULL),
    MSG("repeated header names in the pair form",
        M ",\"headers\":[[\"Subject\",\"hostile: pairs\"],[\"X-Dup\",\"1\"],"
        "[\"X-Dup\",\"2\"]]}", 200, NULL),
    MSG("UTF-8 text",
        M ",\"headers\":{\"Subject\":\"hostile: utf-8\"},"
        "\"body\":\"\xC3\xA9t\xC3\xA9 \\ud83d\\udce7 \xE2\x82\xAC\"}", 200,
        NULL),
    MSG("the null sender",
        "{\"from\":\"\",\"to\":[\"rcpt@example.net\"],\"headers\":"
        "{\"Subject\":\"hostile: null sender\"}}", 200, NULL),
    BATCH("a valid batch of two",
          "{\"messages\":[" M ",\"headers\":{\"Subject\":\"hostile: b1\"}},"
          M ",\"headers\":{\"Subject\":\"hostile: b2\"}}]}", 200, NULL),
    AUTH("the key, on B", "Authorization: Bearer " KEY,
         M ",\"headers\":{\"Subject\":\"hostile: keyed\"}}", 200),
    VERIFY("a valid verify", "{\"address\":\"fred\"}", 200, NULL),
    EXPAND("a valid expand", "{\"list\":\"staff\"}", 200, NULL),
    HELP("help with nothing", "{}", 200, NULL),
    HELP("help with a null topic", "{\"topic\":null}", 200, NULL),
};

#undef M

/* Messages a 200 answer to this case stands for (0 for queries). */
static int count_sent(const struct jcase *c, json_t *doc)
{
    if (strncmp(c->path, "/v1/messages", 12) != 0 &&
        strncmp(c->path, "/v1/%6D", 7) != 0)
        return 0;
    json_t *results = json_object_get(doc, "results"), *r;
    size_t i;
    int n = 0;
    if (results == NULL) {
        const char *s = json_string_value(json_object_get(doc, "status"));
        if (s == NULL || strcmp(s, "sent") != 0)
            fail_msg("%s: status is %s, not sent", c->name, s ? s : "(none)");
        return 1;
    }
    json_array_foreach(results, i, r) {
        const char *s = json_string_value(json_object_get(r, "status"));
        if (s == NULL || strcmp(s, "sent") != 0)
            fail_msg("%s: results[%zu] is %s", c->name, i, s ? s : "(none)");
        n++;
    }
    return n;
}

/* Sends one case and checks its answer; returns the messages it sent. */
static int run_jcase(const struct fx *fx, const struct jcase *c)
{
    const char *hdrs[4] = { NULL };
    size_t nh = 0, blen = c->blen;
    char *gen = NULL, why[160];
    const char *body = c->body, *path = c->path;
    struct http_resp r;
    if (c->ctype != NULL)
        hdrs[nh++] = c->ctype;
    if (c->hdr != NULL)
        hdrs[nh++] = c->hdr;
    else if (c->svc == B && c->status != 401)
        hdrs[nh++] = "Authorization: Bearer " KEY;
    if (c->gen != NULL) {
        gen = c->gen(&blen);
        if (c->gen_path)
            path = gen;
        else
            body = gen;
    }
    if (http_try(fx, c->svc, c->method, path, hdrs, body, blen, &r) < 0)
        fail_msg("%s: no answer: %s", c->name, r.err);
    free(gen);
    if (r.status != c->status && (c->alt == 0 || r.status != c->alt))
        fail_msg("%s: expected HTTP %ld, got %ld: %.400s", c->name,
                 c->status, r.status, r.body != NULL ? r.body : "");
    int sent = 0;
    if (r.status >= 400) {
        json_t *p = NULL;
        if (check_problem(r.status, r.hdrs, r.body, r.len, &p, why,
                          sizeof why) < 0)
            fail_msg("%s: HTTP %ld is not a proper problem: %s: %.300s",
                     c->name, r.status, why, r.body ? r.body : "");
        if (c->field != NULL && r.status == c->status &&
            !has_field(p, c->field))
            fail_msg("%s: no error for field \"%s\" in %.600s", c->name,
                     c->field, r.body);
        const char *d = json_string_value(json_object_get(p, "detail"));
        if (c->detail != NULL && strstr(d, c->detail) == NULL)
            fail_msg("%s: the detail does not say \"%s\": %s", c->name,
                     c->detail, d);
        if (c->nerrors > 0 &&
            json_array_size(json_object_get(p, "errors")) != c->nerrors)
            fail_msg("%s: %zu errors listed, want %zu", c->name,
                     json_array_size(json_object_get(p, "errors")),
                     c->nerrors);
        json_decref(p);
        char *h = NULL;
        if (r.status == 405 && (h = http_header_value(r.hdrs, "Allow")) == NULL)
            fail_msg("%s: 405 without Allow", c->name);
        if (r.status == 401 &&
            (h = http_header_value(r.hdrs, "WWW-Authenticate")) == NULL)
            fail_msg("%s: 401 without WWW-Authenticate", c->name);
        free(h);
    } else {
        json_t *doc = body_json(r.body, r.len, why, sizeof why);
        if (doc == NULL)
            fail_msg("%s: HTTP %ld: %s", c->name, r.status, why);
        sent = count_sent(c, doc);
        json_decref(doc);
    }
    http_resp_free(&r);
    return sent;
}

static void test_json_table_answers_each_case_with_its_status_and_problem(
    void **state)
{
    struct fx *fx = *state;
    size_t n = sizeof JCASES / sizeof JCASES[0];
    long long t0 = now_ms();
    assert_true(n >= 100);
    for (size_t i = 0; i < n; i++)
        fx->requested += run_jcase(fx, &JCASES[i]);
    print_message("  %zu JSON cases in %lld ms, %d messages sent\n", n,
                  now_ms() - t0, fx->requested);
}

/* ---- A raw HTTP client ---- */

/* What came back on one raw connection. */
struct raw_out {
    int status;                     /* first final status; 0: none */
    int nresp;                      /* final responses seen */
    int closed;                     /* the server closed (EOF or reset) */
    int hung;                       /* neither answer nor close in time */
    int from_api;                   /* the answer had an X-Request-Id */
    long long ms;                   /* connect to the end */
    char *hdrs;                     /* headers of the first final response */
    char *body;                     /* its body */
    size_t blen;
};

/* Frees what a raw outcome holds. */
static void raw_out_free(struct raw_out *o)
{
    free(o->hdrs);
    free(o->body);
    memset(o, 0, sizeof *o);
}

/* A non-blocking TCP socket connected to 127.0.0.1:port; -1 on error. */
static int raw_connect(int port, int rcvbuf)
{
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port) };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* Parses the responses in buf[0..n): the first final one into o, and the
   count of final responses.  Returns the bytes of complete responses. */
static size_t parse_responses(const char *buf, size_t n, struct raw_out *o)
{
    size_t off = 0;
    o->nresp = 0;
    while (off < n) {
        const char *end = memmem(buf + off, n - off, "\r\n\r\n", 4);
        if (end == NULL || n - off < 12 || strncmp(buf + off, "HTTP/1.", 7))
            break;
        size_t hlen = (size_t)(end - (buf + off)) + 4;
        int code = (int)strtol(buf + off + 9, NULL, 10);
        char *h = strndup(buf + off, hlen);
        char *cl = http_header_value(h, "Content-Length");
        size_t blen = cl != NULL ? strtoul(cl, NULL, 10) : 0;
        free(cl);
        if (code >= 200 && off + hlen + blen > n) {
            free(h);
            break;                  /* the body is still coming */
        }
        if (code >= 200 && o->nresp++ == 0) {
            o->status = code;
            free(o->hdrs);
            free(o->body);
            o->hdrs = h;
            h = NULL;
            o->body = strndup(buf + off + hlen, blen);
            o->blen = blen;
            char *rid = http_header_value(o->hdrs, "X-Request-Id");
            o->from_api = rid != NULL;
            free(rid);
        }
        free(h);
        off += hlen + (code >= 200 ? blen : 0);
    }
    return off;
}

/*
 * One exchange: connect to port, send req[0..len) as fast as the server
 * takes it (stopping once an answer begins: a server may answer early and
 * stop reading), optionally shut the write side, then read.  Stops at the
 * server's close or at deadline_ms; after a first answer waits linger_ms
 * more (to see a close, or a smuggled second answer).
 */
static void raw_exchange(int port, const char *req, size_t len, int half,
                         int deadline_ms, int linger_ms, struct raw_out *o)
{
    long long t0 = now_ms(), end = t0 + deadline_ms, answered = 0;
    size_t off = 0, n = 0, cap = 65536;
    char *buf = xmalloc(cap);
    int fd = raw_connect(port, 0), shut = 0;
    memset(o, 0, sizeof *o);
    if (fd < 0) {
        o->hung = 1;
        free(buf);
        return;
    }
    for (;;) {
        long long now = now_ms(), stop = answered ? answered + linger_ms : end;
        if (now >= stop || now >= end)
            break;
        if (off == len && half && !shut) {
            shutdown(fd, SHUT_WR);
            shut = 1;
        }
        struct pollfd p = { fd, POLLIN | (off < len && n == 0 ? POLLOUT : 0),
                            0 };
        if (poll(&p, 1, (int)(stop - now)) <= 0)
            continue;
        if (p.revents & POLLOUT) {
            ssize_t w = send(fd, req + off, len - off, MSG_NOSIGNAL);
            if (w > 0)
                off += (size_t)w;
            else if (w < 0 && errno != EAGAIN && errno != EINTR)
                off = len;          /* the server stopped reading */
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            if (cap - n < 4096) {
                char *q = realloc(buf, (cap *= 2) + 1);
                assert_non_null(q);
                buf = q;
            }
            ssize_t r = recv(fd, buf + n, cap - n, 0);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                o->closed = 1;
                break;
            }
            if (r > 0) {
                n += (size_t)r;
                parse_responses(buf, n, o);
                if (o->nresp > 0 && !answered)
                    answered = now_ms();
            }
        }
    }
    parse_responses(buf, n, o);
    o->hung = o->nresp == 0 && !o->closed;
    o->ms = now_ms() - t0;
    close(fd);
    free(buf);
}

/* ---- The raw table ---- */

/* What a raw case may get back. */
enum {
    W200 = 1 << 0, W400 = 1 << 1, W401 = 1 << 2, W404 = 1 << 3,
    W405 = 1 << 4, W413 = 1 << 5, W414 = 1 << 6, W415 = 1 << 7,
    W417 = 1 << 8, W422 = 1 << 9, W431 = 1 << 10, W501 = 1 << 11,
    W505 = 1 << 12, WCLOSE = 1 << 13  /* closed without an answer */
};

/* The W* bit of an HTTP status; 0 for one the table never allows. */
static unsigned want_bit(int status)
{
    static const int codes[] = { 200, 400, 401, 404, 405, 413, 414, 415,
                                 417, 422, 431, 501, 505 };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (codes[i] == status)
            return 1u << i;
    return 0;
}

struct rcase {
    const char *name;
    enum svc svc;
    const char *req;                /* the bytes, or NULL: gen */
    size_t len;
    char *(*gen)(size_t *len);
    unsigned want;                  /* W* bits that are acceptable */
    int mhd;                        /* errors may be MHD's own (HTML) page */
    int must_close;                 /* the connection must be closed after
                                       the answer (request smuggling) */
    int half;                       /* shutdown(SHUT_WR) after sending */
    const char *detail;             /* a phrase the problem's detail must
                                       hold, or NULL */
};

#define HOST "Host: 127.0.0.1\r\n"
#define JSONCT "Content-Type: application/json\r\n"
#define POSTM "POST /v1/messages HTTP/1.1\r\n" HOST JSONCT
#define AUTHB "Authorization: Bearer " KEY "\r\n"
#define RAW(s) .req = (s), .len = sizeof(s) - 1

/* 10 MB and other big requests, made on the thread that sends them. */
#define TEN_MB 10000000u

/* A request head followed by n bytes of 'x'. */
static char *with_body(const char *head, size_t n, size_t *len)
{
    size_t hl = strlen(head);
    char *s = xmalloc(hl + n);
    memcpy(s, head, hl);
    memset(s + hl, 'x', n);
    *len = hl + n;
    return s;
}

/* Generated requests of the raw table (each caller-freed). */
static char *gen_10mb_cl_a(size_t *len)
{
    char head[256];
    snprintf(head, sizeof head, POSTM "Content-Length: %u\r\n\r\n", TEN_MB);
    return with_body(head, TEN_MB, len);
}

static char *gen_11mb_cl_b(size_t *len)
{
    char head[256];
    snprintf(head, sizeof head,
             "POST /v1/messages HTTP/1.1\r\n" HOST JSONCT AUTHB
             "Content-Length: %u\r\n\r\n", 11000000u);
    return with_body(head, 11000000u, len);
}

/* 10 MB in 64 KiB chunks after head, then the last chunk. */
static char *chunked_10mb(const char *head, size_t *len)
{
    const size_t chunk = 65536, nchunks = TEN_MB / chunk + 1;
    size_t hl = strlen(head), o = hl;
    char *s = xmalloc(hl + nchunks * (chunk + 16) + 8);
    memcpy(s, head, hl);
    for (size_t i = 0; i < nchunks; i++) {
        o += (size_t)sprintf(s + o, "%zx\r\n", chunk);
        memset(s + o, 'x', chunk);
        o += chunk;
        memcpy(s + o, "\r\n", 2);
        o += 2;
    }
    memcpy(s + o, "0\r\n\r\n", 5);
    *len = o + 5;
    return s;
}

static char *gen_10mb_chunked_a(size_t *len)
{
    return chunked_10mb(POSTM "Transfer-Encoding: chunked\r\n\r\n", len);
}

static char *gen_10mb_chunked_b(size_t *len)
{
    return chunked_10mb("POST /v1/messages HTTP/1.1\r\n" HOST JSONCT AUTHB
                        "Transfer-Encoding: chunked\r\n\r\n", len);
}

static char *gen_10mb_http10_a(size_t *len)
{
    return with_body("POST /v1/messages HTTP/1.0\r\n" JSONCT "\r\n", TEN_MB,
                     len);
}

static char *gen_64k_plus_1_a(size_t *len)
{
    return with_body(POSTM "Content-Length: 65537\r\n\r\n", 65537, len);
}

static char *gen_10000_rcpt_cl_a(size_t *len)
{
    size_t blen;
    char head[256], *body = gen_10000_rcpt(&blen);
    int hl = snprintf(head, sizeof head, POSTM "Content-Length: %zu\r\n\r\n",
                      blen);
    char *s = xmalloc((size_t)hl + blen);
    memcpy(s, head, (size_t)hl);
    memcpy(s + hl, body, blen);
    free(body);
    *len = (size_t)hl + blen;
    return s;
}

static char *gen_long_url(size_t *len)
{
    return nest("GET /", "a", 40000, " HTTP/1.1\r\n" HOST "\r\n", "", "",
                len);
}

/* A GET of a target of n bytes ("/" and n - 1 'a'). */
static char *gen_target(size_t n, size_t *len)
{
    return nest("GET /", "a", n - 1, " HTTP/1.1\r\n" HOST "\r\n", "", "",
                len);
}

static char *gen_target_8192(size_t *len)
{
    return gen_target(8192, len);
}

static char *gen_target_8193(size_t *len)
{
    return gen_target(8193, len);
}

/* Past the connection's memory pool: libmicrohttpd's own 414 page. */
static char *gen_target_100000(size_t *len)
{
    return gen_target(100000, len);
}

/* A head of 17,000 bytes in two fields. */
static char *gen_head_17000(size_t *len)
{
    return nest("GET /healthz HTTP/1.1\r\n" HOST "X-Big: ", "b", 16940,
                "\r\n\r\n", "", "", len);
}

/* n header fields in all (Host and n - 1 more). */
static char *gen_fields(size_t n, size_t *len)
{
    return repeat("GET /healthz HTTP/1.1\r\n" HOST, "X-H: v\r\n", "", n - 1,
                  "\r\n", len);
}

static char *gen_100_fields(size_t *len)
{
    return gen_fields(100, len);
}

static char *gen_101_fields(size_t *len)
{
    return gen_fields(101, len);
}

static char *gen_300_fields(size_t *len)
{
    return gen_fields(300, len);
}

static char *gen_long_header(size_t *len)
{
    return nest("GET /healthz HTTP/1.1\r\n" HOST "X-Big: ", "b", 40000,
                "\r\n\r\n", "", "", len);
}

static char *gen_many_headers(size_t *len)
{
    return repeat("GET /healthz HTTP/1.1\r\n" HOST, "X-H: v\r\n", "", 3000,
                  "\r\n", len);
}

static char *gen_long_bearer(size_t *len)
{
    return nest("POST /v1/messages HTTP/1.1\r\n" HOST JSONCT
                "Authorization: Bearer ", "k", 12000,
                "\r\nContent-Length: 2\r\n\r\n{}", "", "", len);
}

static const struct rcase RCASES[] = {
    /* Request smuggling: ambiguous framing is refused, and the connection
       is not reused (RFC 9112 section 6.3). */
    { "Content-Length and Transfer-Encoding: chunked", A,
      RAW(POSTM "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
          "2\r\n{}\r\n0\r\n\r\n"), NULL, W400 | WCLOSE, 1, 1, 0, NULL },
    { "Transfer-Encoding: chunked, then Content-Length", A,
      RAW(POSTM "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
          "2\r\n{}\r\n0\r\n\r\n"), NULL, W400 | WCLOSE, 1, 1, 0, NULL },
    { "CL.TE with a smuggled second request", A,
      RAW("POST /v1/verify HTTP/1.1\r\n" HOST JSONCT
          "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
          "0\r\n\r\nGET /v1/smuggled HTTP/1.1\r\n" HOST "\r\n"), NULL,
      W400 | WCLOSE, 1, 1, 0, NULL },
    { "two different Content-Lengths", A,
      RAW(POSTM "Content-Length: 2\r\nContent-Length: 40\r\n\r\n{}"), NULL,
      W400 | WCLOSE, 1, 1, 0, NULL },
    { "two equal Content-Lengths", A,
      RAW(POSTM "Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}"), NULL,
      W400 | W422 | WCLOSE, 1, 0, 0, NULL },
    { "Content-Length: 2, 2", A,
      RAW(POSTM "Content-Length: 2, 2\r\n\r\n{}"), NULL, W400 | WCLOSE, 1,
      1, 0, NULL },
    { "Content-Length: abc", A, RAW(POSTM "Content-Length: abc\r\n\r\n{}"),
      NULL, W400 | WCLOSE, 1, 1, 0, NULL },
    { "Content-Length: -1", A, RAW(POSTM "Content-Length: -1\r\n\r\n{}"),
      NULL, W400 | W413 | WCLOSE, 1, 1, 0, NULL },
    { "Content-Length: +2", A, RAW(POSTM "Content-Length: +2\r\n\r\n{}"),
      NULL, W400 | WCLOSE, 1, 1, 0, NULL },
    { "Content-Length: 0x2", A, RAW(POSTM "Content-Length: 0x2\r\n\r\n{}"),
      NULL, W400 | WCLOSE, 1, 1, 0, NULL },
    { "Content-Length of 23 digits", A,
      RAW(POSTM "Content-Length: 99999999999999999999999\r\n\r\n{}"), NULL,
      W400 | W413 | WCLOSE, 1, 1, 0, NULL },
    { "Content-Length with a space before the colon", A,
      RAW(POSTM "Content-Length : 2\r\n\r\n{}"), NULL, W400 | WCLOSE, 1, 0,
      0, NULL },
    { "Transfer-Encoding with a space before the colon", A,
      RAW(POSTM "Transfer-Encoding : chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"),
      NULL, W400 | WCLOSE, 1, 0, 0, NULL },
    { "whitespace before a colon, on GET /healthz", A,
      RAW("GET /healthz HTTP/1.1\r\n" HOST "X-A : b\r\n\r\n"), NULL,
      W400 | WCLOSE, 1, 0, 0, NULL },
    { "a space inside a header name", A,
      RAW("GET /healthz HTTP/1.1\r\n" HOST "X A: b\r\n\r\n"), NULL,
      W400 | WCLOSE, 1, 0, 0, NULL },
    { "Transfer-Encoding: xchunked", A,
      RAW(POSTM "Transfer-Encoding: xchunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"),
      NULL, W501, 0, 1, 0, "chunked" },
    { "Transfer-Encoding: chunked, identity", A,
      RAW(POSTM "Transfer-Encoding: chunked, identity\r\n\r\n"
          "2\r\n{}\r\n0\r\n\r\n"), NULL, W501, 0, 1, 0, "chunked" },
    { "Transfer-Encoding: identity", A,
      RAW(POSTM "Transfer-Encoding: identity\r\n\r\n{}"), NULL,
      W501, 0, 1, 0, "chunked" },
    { "Transfer-Encoding: gzip, chunked", A,
      RAW(POSTM "Transfer-Encoding: gzip, chunked\r\n\r\n"
          "2\r\n{}\r\n0\r\n\r\n"), NULL, W501, 0, 1, 0, "chunked" },
    { "Transfer-Encoding: Chunked (any case) is read", A,
      RAW(POSTM "Transfer-Encoding: Chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"),
      NULL, W422, 0, 0, 0, NULL },
    /* RFC 9112 6.1: Transfer-Encoding on HTTP/1.0 is faulty framing; the
       server answers and closes, keep-alive or not. */
    { "Transfer-Encoding on HTTP/1.0", A,
      RAW("POST /v1/messages HTTP/1.0\r\n" JSONCT
          "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"), NULL,
      W400, 0, 1, 0, "HTTP/1.0" },
    { "Transfer-Encoding on HTTP/1.0 keep-alive, then a second request", A,
      RAW("POST /v1/verify HTTP/1.0\r\n" JSONCT "Connection: keep-alive\r\n"
          "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
          "GET /healthz HTTP/1.1\r\n" HOST "\r\n"), NULL, W400, 0, 1, 0,
      "HTTP/1.0" },
    { "two Transfer-Encoding: chunked, then a second request", A,
      RAW(POSTM "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked"
          "\r\n\r\n2\r\n{}\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\n" HOST
          "\r\n"), NULL, W400, 0, 1, 0, "more than one Transfer-Encoding" },
    { "obs-folded Transfer-Encoding (identity, then chunked)", A,
      RAW(POSTM "Transfer-Encoding: identity\r\n chunked\r\n\r\n"
          "2\r\n{}\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\n" HOST "\r\n"),
      NULL, W400, 0, 1, 0, "obs-fold" },
    { "obs-folded Content-Length", A,
      RAW(POSTM "Content-Length: 2\r\n 0\r\n\r\n{}GET /healthz HTTP/1.1\r\n"
          HOST "\r\n"), NULL, W400, 0, 1, 0, "obs-fold" },
    { "an obs-folded field on GET /healthz", A,
      RAW("GET /healthz HTTP/1.1\r\n" HOST "X-A: a\r\n\tb\r\n\r\n"
          "GET /healthz HTTP/1.1\r\n" HOST "\r\n"), NULL, W400, 0, 1, 0,
      "obs-fold" },
    /* A bare LF ends a line for MHD but not for a proxy that splits at
       CRLF: the two would see different fields. */
    { "a bare LF between two header fields", A,
      RAW("GET /healthz HTTP/1.1\r\n" HOST "X-A: a\nX-B: b\r\n\r\n"
          "GET /healthz HTTP/1.1\r\n" HOST "\r\n"), NULL, W400, 0, 1, 0,
      "bare LF" },
    { "a bare LF before Transfer-Encoding", A,
      RAW(POSTM "X-A: a\nTransfer-Encoding: chunked\r\n\r\n"
          "2\r\n{}\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\n" HOST "\r\n"),
      NULL, W400, 0, 1, 0, "bare LF" },
    { "a head of bare LF lines", A,
      RAW("GET /healthz HTTP/1.1\nHost: x\nX-A: a\n\n"
          "GET /healthz HTTP/1.1\r\n" HOST "\r\n"), NULL, W400, 0, 1, 0,
      "bare LF" },
    /* A GET carries no body: one declared is refused, not buffered. */
    { "GET /healthz with a Content-Length body", A,
      RAW("GET /healthz HTTP/1.1\r\n" HOST "Content-Length: 2\r\n\r\n{}"
          "GET /healthz HTTP/1.1\r\n" HOST "\r\n"), NULL, W400, 0, 1, 0,
      "no body" },
    { "GET /healthz with a chunked body", A,
      RAW("GET /healthz HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n"
          "\r\n2\r\n{}\r\n0\r\n\r\n"), NULL, W400, 0, 1, 0, "no body" },
    { "GET /healthz with a 10 MB Content-Length, no key (B)", B,
      RAW("GET /healthz HTTP/1.1\r\n" HOST "Content-Length: 10485760\r\n"
          "\r\nxx"), NULL, W400, 0, 1, 0, "no body" },

    /* Chunks. */
    { "a chunk size that is not hex", A,
      RAW(POSTM "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"),
      NULL, W400 | WCLOSE, 1, 1, 0, NULL },
    { "a chunk size of 20 hex digits", A,
      RAW(POSTM "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n"
          "{}\r\n0\r\n\r\n"), NULL, W400 | W413 | WCLOSE, 1, 1, 0, NULL },
    { "a negative chunk size", A,
      RAW(POSTM "Transfer-Encoding: chunked\r\n\r\n-2\r\n{}\r\n0\r\n\r\n"),
      NULL, W400 | WCLOSE, 1, 1, 0, NULL },
    { "a chunk without its CRLF", A,
      RAW(POSTM "Transfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n"),
      NULL, W400 | WCLOSE, 1, 1, 0, NULL },
    { "a chunk extension", A,
      RAW(POSTM "Transfer-Encoding: chunked\r\n\r\n2;x=y\r\n{}\r\n0\r\n\r\n"),
      NULL, W422, 0, 0, 0, NULL },
    { "a trailer after the last chunk", A,
      RAW(POSTM "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n"
          "X-Trailer: 1\r\n\r\n"), NULL, W422, 0, 0, 0, NULL },

    /* Request lines and heads. */
    { "a garbage request line", A, RAW("GARBAGE\r\n\r\n"), NULL,
      W400 | WCLOSE, 1, 0, 0, NULL },
    { "tabs between the request line's parts", A,
      RAW("GET\t/healthz\tHTTP/1.1\r\n" HOST "\r\n"), NULL, W400 | WCLOSE, 1,
      0, 0, NULL },
    { "HTTP/9.9", A, RAW("GET /healthz HTTP/9.9\r\n" HOST "\r\n"), NULL,
      W400 | W505 | WCLOSE, 1, 0, 0, NULL },
    { "HTTP/2.0 in an HTTP/1 request line", A,
      RAW("GET /healthz HTTP/2.0\r\n" HOST "\r\n"), NULL,
      W400 | W505 | WCLOSE, 1, 0, 0, NULL },
    { "no HTTP version", A, RAW("GET /healthz\r\n\r\n"), NULL,
      W400 | WCLOSE, 1, 0, 0, NULL },
    { "the HTTP/2 preface", A,
      RAW("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), NULL,
      W400 | W404 | W505 | WCLOSE, 1, 0, 0, NULL },
    { "a TLS ClientHello", A,
      RAW("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"
          "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"), NULL, W400 | WCLOSE,
      1, 0, 0, NULL },
    { "a bare CR in the request line", A,
      RAW("GET /healthz HTTP/1.1\rHost: 127.0.0.1\r\n\r\n"), NULL,
      W400 | WCLOSE, 1, 0, 0, NULL },
    { "a header without a colon", A,
      RAW("GET /healthz HTTP/1.1\r\n" HOST "NoColonHere\r\n\r\n"), NULL,
      W400 | WCLOSE, 1, 0, 0, NULL },
    { "a NUL in a header value", A,
      RAW("GET /healthz HTTP/1.1\r\n" HOST "X-A: b\0c\r\n\r\n"), NULL,
      W200 | W400 | WCLOSE, 1, 0, 0, NULL },
    { "HTTP/1.1 without Host", A, RAW("GET /healthz HTTP/1.1\r\n\r\n"), NULL,
      W200 | W400, 1, 0, 0, NULL },
    /* The request target: visible ASCII (RFC 9112 3.2), at most 8,192
       bytes.  A raw NUL used to cut the path to a route (the message of
       the first case would have been sent). */
    { "a raw NUL after the route", A,
      RAW("POST /v1/messages\0/x HTTP/1.1\r\n" HOST JSONCT
          "Content-Length: 68\r\n\r\n"
          "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\"],"
          "\"body\":\"nul\"}"), NULL, W400, 0, 0, 0, "NUL" },
    { "a raw NUL ending a GET route", A,
      RAW("GET /healthz\0 HTTP/1.1\r\n" HOST "\r\n"), NULL, W400, 0, 0, 0,
      "NUL" },
    { "a raw NUL in the query", A,
      RAW("GET /healthz?a\0b HTTP/1.1\r\n" HOST "\r\n"), NULL, W400, 0, 0,
      0, "NUL" },
    { "a space inside the request target", A,
      RAW("GET /healthz x HTTP/1.1\r\n" HOST "\r\n"), NULL, W400, 0, 0, 0,
      "space" },
    { "two spaces around the request target", A,
      RAW("GET  /healthz  HTTP/1.1\r\n" HOST "\r\n"), NULL, W400, 0, 0, 0,
      "space" },
    { "a raw non-ASCII byte in the target", A,
      RAW("GET /healthz\xC3\xA9 HTTP/1.1\r\n" HOST "\r\n"), NULL, W400, 0,
      0, 0, "non-ASCII" },
    { "a raw DEL in the target", A,
      RAW("GET /healthz\x7F HTTP/1.1\r\n" HOST "\r\n"), NULL, W400, 0, 0,
      0, "control" },
    { "an 8,192-byte target (the limit)", A, NULL, 0, gen_target_8192, W404,
      0, 0, 0, "no such route" },
    { "an 8,193-byte target", A, NULL, 0, gen_target_8193, W414, 0, 0, 0,
      "8192" },
    { "a 40,000-byte URL (past MHD's pool: its page)", A, NULL, 0,
      gen_long_url, W414, 1, 0, 0, NULL },
    { "a 100,000-byte URL (past MHD's pool: its page)", A, NULL, 0,
      gen_target_100000, W414, 1, 0, 0, NULL },
    /* The head: at most 16,384 bytes and 100 fields. */
    { "a 40,000-byte header (past MHD's pool: its page)", A, NULL, 0,
      gen_long_header, W431, 1, 0, 0, NULL },
    { "a 17,000-byte head", A, NULL, 0, gen_head_17000, W431, 0, 0, 0,
      "16384" },
    { "100 header fields (the limit)", A, NULL, 0, gen_100_fields, W200, 0,
      0, 0, NULL },
    { "101 header fields", A, NULL, 0, gen_101_fields, W431, 0, 0, 0,
      "100 header fields" },
    { "300 header fields", A, NULL, 0, gen_300_fields, W431, 0, 0, 0,
      "100 header fields" },
    { "3,000 headers (past MHD's pool: its page)", A, NULL, 0,
      gen_many_headers, W431, 1, 0, 0, NULL },
    { "a 12,000-byte bearer key", B, NULL, 0, gen_long_bearer, W401, 0, 0,
      0, NULL },
    { "an absolute URI for another host", A,
      RAW("GET http://evil.example/healthz HTTP/1.1\r\n" HOST "\r\n"), NULL,
      W404, 0, 0, 0, NULL },
    { "CONNECT to an SMTP port", A,
      RAW("CONNECT evil.example:25 HTTP/1.1\r\nHost: evil.example:25\r\n\r\n"),
      NULL, W404 | W405 | W400, 0, 0, 0, NULL },
    { "OPTIONS *", A, RAW("OPTIONS * HTTP/1.1\r\n" HOST "\r\n"), NULL,
      W404 | W405, 0, 0, 0, NULL },
    { "an obs-folded Content-Type", A,
      RAW("POST /v1/messages HTTP/1.1\r\n" HOST
          "Content-Type: application/\r\n json\r\nContent-Length: 2\r\n\r\n{}"),
      NULL, W400 | W415 | WCLOSE, 0, 0, 0, NULL },
    { "text/plain, then application/json", A,
      RAW("POST /v1/messages HTTP/1.1\r\n" HOST "Content-Type: text/plain\r\n"
          JSONCT "Content-Length: 2\r\n\r\n{}"), NULL, W400 | W415 | W422,
      0, 0, 0, NULL },
    { "two requests pipelined", A,
      RAW("GET /healthz HTTP/1.1\r\n" HOST "\r\nGET /healthz HTTP/1.1\r\n"
          HOST "Connection: close\r\n\r\n"), NULL, W200, 0, 0, 0, NULL },
    { "empty lines before the request line", A,
      RAW("\r\n\r\nGET /healthz HTTP/1.1\r\n" HOST "Connection: close\r\n\r\n"),
      NULL, W200 | W400 | WCLOSE, 1, 0, 0, NULL },
    { "Expect: 100-continue", A,
      RAW(POSTM "Content-Length: 2\r\nExpect: 100-continue\r\n\r\n{}"), NULL,
      W422, 0, 0, 0, NULL },
    { "Expect: 999-fail", A,
      RAW(POSTM "Content-Length: 2\r\nExpect: 999-fail\r\n\r\n{}"), NULL,
      W417 | W422, 1, 0, 0, NULL },
    { "Content-Length: 0 and a body", A,
      RAW(POSTM "Content-Length: 0\r\n\r\n{}"), NULL, W400, 0, 0, 0, NULL },
    { "HTTP/1.0 POST without Content-Length", A,
      RAW("POST /v1/messages HTTP/1.0\r\n" JSONCT "\r\n{}"), NULL,
      W400 | W422 | WCLOSE, 0, 0, 1, NULL },

    /* Big bodies. */
    { "10 MB with Content-Length (max_body 64 KiB)", A, NULL, 0,
      gen_10mb_cl_a, W413, 0, 0, 0, NULL },
    { "10 MB chunked (max_body 64 KiB)", A, NULL, 0, gen_10mb_chunked_a,
      W413 | WCLOSE, 0, 0, 0, NULL },
    { "10 MB on HTTP/1.0 without Content-Length", A, NULL, 0,
      gen_10mb_http10_a, W400 | W413 | WCLOSE, 1, 0, 0, NULL },
    { "64 KiB + 1 with Content-Length", A, NULL, 0, gen_64k_plus_1_a, W413,
      0, 0, 0, NULL },
    { "10,000 recipients past max_body", A, NULL, 0, gen_10000_rcpt_cl_a,
      W413, 0, 0, 0, NULL },
    { "11 MB with Content-Length (default max_body)", B, NULL, 0,
      gen_11mb_cl_b, W413, 0, 0, 0, NULL },
    { "10 MB chunked, not JSON (default max_body)", B, NULL, 0,
      gen_10mb_chunked_b, W400, 0, 0, 0, NULL },
};

/* One raw case on a thread of its own. */
struct rjob {
    const struct rcase *c;
    int port;
    struct raw_out out;
    pthread_t tid;
};

/* Thread: runs one raw case and records what came back. */
static void *rjob_run(void *arg)
{
    struct rjob *j = arg;
    size_t len = j->c->len;
    char *gen = j->c->gen != NULL ? j->c->gen(&len) : NULL;
    /* Long enough for the service to drop a stalled client
       (CONN_TIMEOUT_S) and for 10 MB; the linger shows a close. */
    raw_exchange(j->port, gen != NULL ? gen : j->c->req, len, j->c->half,
                 (CONN_TIMEOUT_S + 5) * 1000, j->c->must_close ? 2000 : 200,
                 &j->out);
    free(gen);
    return NULL;
}

/* 1 when the problem o carries lacks phrase in its detail. */
static int problem_detail_lacks(const struct raw_out *o, const char *phrase)
{
    json_t *p = json_loadb(o->body != NULL ? o->body : "", o->blen, 0, NULL);
    const char *d = json_string_value(json_object_get(p, "detail"));
    int lacks = d == NULL || strstr(d, phrase) == NULL;
    json_decref(p);
    return lacks;
}

/* Whether a raw outcome is one its case allows: 0, or -1 with the reason
   in why. */
static int rcase_verdict(const struct rcase *c, const struct raw_out *o,
                         char *why, size_t whylen)
{
    char pwhy[160];
    unsigned got = o->nresp > 0 ? want_bit(o->status)
                 : o->closed ? (unsigned)WCLOSE : 0;
    if (o->hung)
        snprintf(why, whylen, "neither an answer nor a close in %lld ms",
                 o->ms);
    else if ((got & c->want) == 0)
        snprintf(why, whylen, "got %s %d after %lld ms: %.200s",
                 o->nresp > 0 ? "HTTP" : "a close, status", o->status, o->ms,
                 o->body != NULL ? o->body : "");
    else if (o->nresp > 0 && o->status >= 400 && !o->from_api && !c->mhd)
        snprintf(why, whylen, "HTTP %d came from libmicrohttpd, not the API",
                 o->status);
    else if (o->nresp > 0 && o->status >= 400 && o->from_api &&
             check_problem(o->status, o->hdrs, o->body, o->blen, NULL, pwhy,
                           sizeof pwhy) < 0)
        snprintf(why, whylen, "HTTP %d is not a proper problem: %s",
                 o->status, pwhy);
    else if (c->detail != NULL && o->nresp > 0 && o->from_api &&
             problem_detail_lacks(o, c->detail))
        snprintf(why, whylen, "the detail does not say \"%s\": %.200s",
                 c->detail, o->body);
    else if (c->must_close && o->nresp > 1)
        snprintf(why, whylen, "%d answers on one connection: a request was "
                 "smuggled", o->nresp);
    else if (c->must_close && o->nresp > 0 && !o->closed)
        snprintf(why, whylen, "answered HTTP %d but kept the connection "
                 "open (ambiguous framing: RFC 9112 6.3 says close)",
                 o->status);
    else
        return 0;
    return -1;
}

/* GET /healthz on svc answers 200. */
static void expect_healthy(const struct fx *fx, enum svc svc,
                           const char *after)
{
    struct http_resp r;
    if (http_try(fx, svc, "GET", "/healthz", NULL, NULL, 0, &r) < 0 ||
        r.status != 200)
        fail_msg("service %c not healthy after %s: %ld %s", "AB"[svc], after,
                 r.status, r.err);
    http_resp_free(&r);
}

static void test_raw_table_answers_400_or_closes_and_never_crashes(
    void **state)
{
    struct fx *fx = *state;
    size_t n = sizeof RCASES / sizeof RCASES[0];
    struct rjob *jobs = calloc(n, sizeof *jobs);
    long long t0 = now_ms();
    assert_non_null(jobs);
    for (size_t i = 0; i < n; i++) {
        jobs[i].c = &RCASES[i];
        jobs[i].port = mpserve_port(fx->svc[RCASES[i].svc]);
        assert_int_equal(pthread_create(&jobs[i].tid, NULL, rjob_run,
                                        &jobs[i]), 0);
    }
    for (size_t i = 0; i < n; i++)
        pthread_join(jobs[i].tid, NULL);
    /* Every case is listed, and every failure, before the test fails. */
    int failed = 0;
    char first[400] = "";
    for (size_t i = 0; i < n; i++) {
        const struct raw_out *o = &jobs[i].out;
        char line[64], why[320];
        if (o->nresp > 0)
            snprintf(line, sizeof line, "HTTP %d%s%s%s", o->status,
                     o->from_api ? "" : " (libmicrohttpd)",
                     o->nresp > 1 ? ", and more answers" : "",
                     o->closed ? ", closed" : "");
        else
            snprintf(line, sizeof line, "%s", o->closed ? "closed" : "hung");
        print_message("  %-50s %s, %lld ms\n", RCASES[i].name, line, o->ms);
        if (rcase_verdict(&RCASES[i], o, why, sizeof why) < 0) {
            print_error("  FAILED: %s: %s\n", RCASES[i].name, why);
            if (failed++ == 0)
                snprintf(first, sizeof first, "%s: %s", RCASES[i].name, why);
        }
    }
    for (size_t i = 0; i < n; i++)
        raw_out_free(&jobs[i].out);
    free(jobs);
    expect_healthy(fx, A, "the raw table");
    expect_healthy(fx, B, "the raw table");
    if (failed > 0)
        fail_msg("%d of %zu raw cases failed; the first: %s", failed, n,
                 first);
    print_message("  %zu raw cases in %lld ms\n", n, now_ms() - t0);
}

/* ---- SMTP smuggling in bodies ---- */

/* Smuggling attempts: each must arrive as one message, dot-stuffed. */
static const struct {
    const char *subject, *members;
} SMUGGLE[] = {
    { "smuggle-lf-dot-lf",
      "\"body\":\"one\\n.\\nMAIL FROM:<" FORGED ">\\nRCPT TO:<victim@example.org>"
      "\\nDATA\\nSubject: forged\\n\\nforged\\n.\\n\"" },
    { "smuggle-crlf-dot-crlf",
      "\"body\":\"one\\r\\n.\\r\\nMAIL FROM:<" FORGED ">\\r\\nRCPT TO:"
      "<victim@example.org>\\r\\nDATA\\r\\nSubject: forged\\r\\n\\r\\nforged"
      "\\r\\n.\\r\\n\"" },
    { "smuggle-lf-dot-crlf",
      "\"body\":\"one\\n.\\r\\nMAIL FROM:<" FORGED ">\\r\\nRCPT TO:"
      "<victim@example.org>\\r\\nDATA\\r\\n\\r\\nforged\\n.\\r\\n\"" },
    { "smuggle-cr-dot-cr",
      "\"body\":\"one\\r.\\rMAIL FROM:<" FORGED ">\\rRCPT TO:"
      "<victim@example.org>\\rDATA\\r\\rforged\\r.\\r\"" },
    { "smuggle-crlf-dot-lf",
      "\"body\":\"one\\r\\n.\\nMAIL FROM:<" FORGED ">\\r\\n\"" },
    { "smuggle-lines",
      "\"body\":[\"one\",\".\",\"MAIL FROM:<" FORGED ">\","
      "\"RCPT TO:<victim@example.org>\",\"DATA\",\"\",\"forged\",\".\",\"\"]" },
    { "smuggle-leading-dot", "\"body\":\".\\r\\n..\\r\\n.x\\r\\n.\"" },
    { "smuggle-only-a-dot", "\"body\":\".\"" },
};

/* 1 when data is CRLF-clean and every line starting with '.' is stuffed. */
static int stuffed_and_clean(const unsigned char *d, size_t len, char *why,
                             size_t whylen)
{
    for (size_t i = 0; i < len; i++) {
        if (d[i] == '\r' && (i + 1 == len || d[i + 1] != '\n')) {
            snprintf(why, whylen, "a bare CR at %zu", i);
            return 0;
        }
        if (d[i] == '\n' && (i == 0 || d[i - 1] != '\r')) {
            snprintf(why, whylen, "a bare LF at %zu", i);
            return 0;
        }
        int bol = i == 0 || d[i - 1] == '\n';
        if (bol && d[i] == '.' && (i + 1 == len || d[i + 1] != '.')) {
            snprintf(why, whylen, "an unstuffed dot at %zu", i);
            return 0;
        }
    }
    return 1;
}

/* The value of the Subject header in a message, or NULL; caller frees. */
static char *subject_of(const struct peer_msg *m)
{
    const char *d = (const char *)m->data;
    const char *end = strstr(d, "\r\n\r\n");
    for (const char *p = d; p != NULL && (end == NULL || p < end);) {
        if (strncasecmp(p, "Subject: ", 9) == 0) {
            const char *eol = strstr(p, "\r\n");
            return strndup(p + 9, eol != NULL ? (size_t)(eol - p - 9)
                                              : strlen(p + 9));
        }
        p = strstr(p, "\r\n");
        if (p != NULL)
            p += 2;
    }
    return NULL;
}

static void test_smuggling_sequences_in_bodies_deliver_once_dot_stuffed(
    void **state)
{
    struct fx *fx = *state;
    const char *ct[] = { "Content-Type: application/json", NULL };
    size_t n = sizeof SMUGGLE / sizeof SMUGGLE[0];
    int before = peer_wait_messages(fx->peer, (size_t)fx->requested, 10000);
    assert_int_equal(before, fx->requested);
    for (size_t i = 0; i < n; i++) {
        char body[1024];
        struct http_resp r;
        snprintf(body, sizeof body,
                 "{\"from\":\"sender@example.com\",\"to\":"
                 "[\"rcpt@example.net\"],\"headers\":{\"Subject\":\"%s\"},%s}",
                 SMUGGLE[i].subject, SMUGGLE[i].members);
        http(fx, A, "POST", "/v1/messages", ct, body, &r);
        if (r.status != 200 || strstr(r.body, "\"status\":\"sent\"") == NULL)
            fail_msg("%s: HTTP %ld %s", SMUGGLE[i].subject, r.status, r.body);
        http_resp_free(&r);
        fx->requested++;
    }
    /* A whole raw message with the same sequences. */
    struct http_resp r;
    http(fx, A, "POST", "/v1/messages", ct,
         "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\"],"
         "\"raw\":\"Subject: smuggle-raw\\r\\nFrom: sender@example.com\\r\\n"
         "\\r\\none\\r\\n.\\r\\nMAIL FROM:<" FORGED ">\\r\\nRCPT TO:"
         "<victim@example.org>\\r\\nDATA\\r\\n\\r\\nforged\\n.\\n\\r\\n.\\r\\n\"}",
         &r);
    if (r.status != 200 || strstr(r.body, "\"status\":\"sent\"") == NULL)
        fail_msg("smuggle-raw: HTTP %ld %s", r.status, r.body);
    http_resp_free(&r);
    fx->requested++;
    assert_int_equal(peer_wait_messages(fx->peer, (size_t)fx->requested,
                                        10000), fx->requested);
    sleep_ms(300);                  /* a forged extra would show by now */
    struct peer_msg *m;
    size_t got;
    assert_int_equal(peer_messages(fx->peer, &m, &got), 0);
    assert_int_equal(got, (size_t)fx->requested);
    for (size_t k = 0; k <= n; k++) {
        const char *want = k < n ? SMUGGLE[k].subject : "smuggle-raw";
        int seen = 0;
        for (size_t i = 0; i < got; i++) {
            char *s = subject_of(&m[i]);
            if (s != NULL && strcmp(s, want) == 0) {
                char why[64];
                seen++;
                if (!stuffed_and_clean(m[i].data, m[i].len, why, sizeof why))
                    fail_msg("%s: %s in:\n%s", want, why, m[i].data);
                if (strstr((const char *)m[i].data, "\r\n..\r\n") == NULL &&
                    strncmp((const char *)m[i].data, "..", 2) != 0 &&
                    strstr((const char *)m[i].data, "\r\n\r\n..") == NULL)
                    fail_msg("%s: no stuffed dot line in:\n%s", want,
                             m[i].data);
            }
            free(s);
        }
        if (seen != 1)
            fail_msg("%s arrived %d times", want, seen);
    }
    for (size_t i = 0; i < got; i++) {
        if (strcmp(m[i].mail_from, FORGED) == 0)
            fail_msg("a forged message from %s reached the relay", FORGED);
        for (size_t k = 0; k < m[i].nrcpt; k++)
            if (strcmp(m[i].rcpt_to[k], "victim@example.org") == 0)
                fail_msg("a forged recipient reached the relay");
    }
    peer_msgs_free(m, got);
}

/* ---- Slow clients ---- */

/* A client that writes req one byte every gap_ms (stopping after stop
   bytes when stop > 0 and waiting for the server to give up), then reads
   the answer. */
struct loris {
    int port;
    const char *req;
    size_t stop;
    int gap_ms;
    struct raw_out out;
    pthread_t tid;
};

/* Thread: one slow client (see struct loris). */
static void *loris_run(void *arg)
{
    struct loris *l = arg;
    size_t len = strlen(l->req), n = l->stop > 0 ? l->stop : len;
    long long t0 = now_ms();
    int fd = raw_connect(l->port, 0);
    if (fd < 0) {
        l->out.hung = 1;
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (send(fd, l->req + i, 1, MSG_NOSIGNAL) != 1) {
            l->out.closed = 1;      /* the server gave up on us */
            break;
        }
        sleep_ms(l->gap_ms);
    }
    char buf[4096];
    size_t got = 0;
    for (long long end = now_ms() + (CONN_TIMEOUT_S + 4) * 1000;
         now_ms() < end && got < sizeof buf - 1;) {
        struct pollfd p = { fd, POLLIN, 0 };
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t r = recv(fd, buf + got, sizeof buf - 1 - got, 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
            l->out.closed = 1;
            break;
        }
        if (r > 0) {
            got += (size_t)r;
            parse_responses(buf, got, &l->out);
        }
    }
    l->out.hung = l->out.nresp == 0 && !l->out.closed;
    l->out.ms = now_ms() - t0;
    close(fd);
    return NULL;
}

static void test_slow_loris_clients_do_not_stop_others_being_served(
    void **state)
{
    struct fx *fx = *state;
    enum { NSLOW = 6 };
    static const char slow_req[] =
        "GET /healthz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    struct loris l[NSLOW + 1];
    const char *ct[] = { "Content-Type: application/json", NULL };
    long long t0 = now_ms(), worst = 0;
    /* More slow clients than MHD threads (2), plus one that stops halfway
       through its headers and must be dropped after the idle timeout. */
    memset(l, 0, sizeof l);
    for (int i = 0; i <= NSLOW; i++) {
        l[i].port = mpserve_port(fx->svc[A]);
        l[i].req = slow_req;
        l[i].gap_ms = 100;
        l[i].stop = i == NSLOW ? 20 : 0;
        assert_int_equal(pthread_create(&l[i].tid, NULL, loris_run, &l[i]),
                         0);
    }
    /* Meanwhile: health checks and messages, each answered promptly. */
    int sends = 0;
    for (long long end = now_ms() + 4000; now_ms() < end; sleep_ms(150)) {
        struct http_resp r;
        long long s = now_ms();
        if (sends < 3) {
            char body[256];
            snprintf(body, sizeof body,
                     "{\"from\":\"sender@example.com\",\"to\":"
                     "[\"rcpt@example.net\"],\"headers\":{\"Subject\":"
                     "\"hostile: during slow loris %d\"}}", sends);
            http(fx, A, "POST", "/v1/messages", ct, body, &r);
            if (r.status != 200 ||
                strstr(r.body, "\"status\":\"sent\"") == NULL)
                fail_msg("a send during slow loris: %ld %s", r.status,
                         r.body);
            sends++;
            fx->requested++;
        } else {
            http(fx, A, "GET", "/healthz", NULL, NULL, &r);
            assert_int_equal(r.status, 200);
        }
        http_resp_free(&r);
        if (now_ms() - s > worst)
            worst = now_ms() - s;
    }
    for (int i = 0; i <= NSLOW; i++)
        pthread_join(l[i].tid, NULL);
    print_message("  slowest normal request during slow loris: %lld ms; "
                  "loris clients done after %lld ms\n", worst,
                  now_ms() - t0);
    assert_true(worst < 2000);
    for (int i = 0; i < NSLOW; i++) {
        if (l[i].out.status != 200)
            fail_msg("slow client %d: status %d (closed %d) after %lld ms",
                     i, l[i].out.status, l[i].out.closed, l[i].out.ms);
        raw_out_free(&l[i].out);
    }
    /* The stalled one: dropped by the server, within the idle timeout
       (plus slack), without an answer or with a 408/400. */
    if (!l[NSLOW].out.closed)
        fail_msg("the stalled client was not dropped (after %lld ms)",
                 l[NSLOW].out.ms);
    assert_true(l[NSLOW].out.ms < (CONN_TIMEOUT_S + 4) * 1000);
    raw_out_free(&l[NSLOW].out);
    expect_healthy(fx, A, "slow loris");
}

/* ---- Clients that hang up ---- */

/* Writes all of s to a blocking socket; 0 or -1. */
static int write_all(int fd, const char *s, size_t len)
{
    for (size_t off = 0; off < len;) {
        ssize_t w = send(fd, s + off, len - off, MSG_NOSIGNAL);
        if (w < 0 && (errno == EINTR || errno == EAGAIN)) {
            sleep_ms(1);
            continue;
        }
        if (w <= 0)
            return -1;
        off += (size_t)w;
    }
    return 0;
}

/* Closes fd with a reset (SO_LINGER 0), the rudest hang-up. */
static void rst_close(int fd)
{
    struct linger lg = { 1, 0 };
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

/* A POST /v1/messages head for a body of len bytes. */
static int post_head(char *buf, size_t size, enum svc svc, size_t len)
{
    return snprintf(buf, size,
                    "POST /v1/messages HTTP/1.1\r\n" HOST JSONCT
                    "%sContent-Length: %zu\r\n\r\n",
                    svc == B ? AUTHB : "", len);
}

static void test_clients_hanging_up_mid_body_or_response_lose_nothing(
    void **state)
{
    struct fx *fx = *state;
    char head[512];
    static const char body[] =
        "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\"],"
        "\"headers\":{\"Subject\":\"hostile: never complete\"},"
        "\"body\":\"this request is never finished\"}";
    int port = mpserve_port(fx->svc[A]);
    int before = peer_wait_messages(fx->peer, (size_t)fx->requested, 10000);
    assert_int_equal(before, fx->requested);

    /* 1. Mid-body, with Content-Length: closed, and closed with a reset. */
    for (int i = 0; i < 10; i++) {
        int fd = raw_connect(port, 0);
        assert_true(fd >= 0);
        int hl = post_head(head, sizeof head, A, sizeof body - 1);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        assert_int_equal(write_all(fd, head, (size_t)hl), 0);
        assert_int_equal(write_all(fd, body, 40 + (size_t)i), 0);
        sleep_ms(20);
        if (i % 2)
            rst_close(fd);
        else
            close(fd);
    }
    /* 2. Mid-chunk. */
    for (int i = 0; i < 4; i++) {
        static const char chunked[] =
            POSTM "Transfer-Encoding: chunked\r\n\r\n40\r\n{\"from\":\"s";
        int fd = raw_connect(port, 0);
        assert_true(fd >= 0);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        assert_int_equal(write_all(fd, chunked, sizeof chunked - 1), 0);
        sleep_ms(20);
        if (i % 2)
            rst_close(fd);
        else
            close(fd);
    }
    /* 3. The whole request, then gone before the answer, while the job is
       out (the relay takes a second over RCPT for slow@): each message is
       still delivered, once. */
    for (int i = 0; i < 4; i++) {
        char msg[256];
        int ml = snprintf(msg, sizeof msg,
                          "{\"from\":\"sender@example.com\",\"to\":"
                          "[\"slow@example.net\"],\"headers\":{\"Subject\":"
                          "\"hostile: hung up %d\"}}", i);
        enum svc svc = i < 2 ? A : B;
        int hl = post_head(head, sizeof head, svc, (size_t)ml);
        int fd = raw_connect(mpserve_port(fx->svc[svc]), 0);
        assert_true(fd >= 0);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        assert_int_equal(write_all(fd, head, (size_t)hl), 0);
        assert_int_equal(write_all(fd, msg, (size_t)ml), 0);
        sleep_ms(300);
        if (i % 2)
            rst_close(fd);
        else
            close(fd);
        fx->requested++;
    }
    /* 4. A batch, gone before the answer. */
    {
        static const char batch[] =
            "{\"messages\":[{\"from\":\"sender@example.com\",\"to\":"
            "[\"slow@example.net\"],\"headers\":{\"Subject\":\"hostile: "
            "batch hung up 1\"}},{\"from\":\"sender@example.com\",\"to\":"
            "[\"slow@example.net\"],\"headers\":{\"Subject\":\"hostile: "
            "batch hung up 2\"}}]}";
        int hl = snprintf(head, sizeof head,
                          "POST /v1/messages/batch HTTP/1.1\r\n" HOST JSONCT
                          "Content-Length: %zu\r\n\r\n", sizeof batch - 1);
        int fd = raw_connect(port, 0);
        assert_true(fd >= 0);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        assert_int_equal(write_all(fd, head, (size_t)hl), 0);
        assert_int_equal(write_all(fd, batch, sizeof batch - 1), 0);
        sleep_ms(200);
        rst_close(fd);
        fx->requested += 2;
    }
    /* 5. Mid-response: a small receive buffer, the OpenAPI document (tens
       of KiB) asked for, a few bytes read, then a reset. */
    for (int i = 0; i < 4; i++) {
        static const char get[] =
            "GET /openapi.json HTTP/1.1\r\n" HOST "\r\n";
        char few[16];
        int fd = raw_connect(port, 2048);
        assert_true(fd >= 0);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
        assert_int_equal(write_all(fd, get, sizeof get - 1), 0);
        sleep_ms(100);
        if (i % 2 == 0)
            (void)!recv(fd, few, sizeof few, 0);
        rst_close(fd);
    }
    expect_healthy(fx, A, "clients hanging up");
    expect_healthy(fx, B, "clients hanging up");
    /* Every hung-up message arrives, once; nothing from the unfinished
       bodies. */
    int got = peer_wait_messages(fx->peer, (size_t)fx->requested, 15000);
    assert_int_equal(got, fx->requested);
    sleep_ms(1500);
    assert_int_equal(peer_wait_messages(fx->peer, (size_t)fx->requested + 1,
                                        0), fx->requested);
}

/* ---- Afterwards ---- */

/* The value of a sample in the Prometheus text, or -1. */
static double metric(const char *text, const char *sample)
{
    size_t n = strlen(sample);
    for (const char *p = text; p != NULL && *p != '\0';) {
        if (strncmp(p, sample, n) == 0 && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p = strchr(p, '\n');
        if (p != NULL)
            p++;
    }
    return -1;
}

/* Queue empty and no worker busy on svc (waits up to 10 s); returns the
   messages counted as sent. */
static double settle(const struct fx *fx, enum svc svc)
{
    for (long long end = now_ms() + 10000;; sleep_ms(50)) {
        struct http_resp r;
        http(fx, svc, "GET", "/metrics", NULL, NULL, &r);
        assert_int_equal(r.status, 200);
        double q = metric(r.body, "mailpool_pool_queue_depth");
        double busy = metric(r.body, "mailpool_pool_workers_busy");
        double sent = metric(r.body, "mailpool_messages_total{status=\"sent\"}");
        http_resp_free(&r);
        if (q == 0 && busy == 0)
            return sent;
        if (now_ms() >= end)
            fail_msg("service %c: %g queued, %g workers busy: stuck",
                     "AB"[svc], q, busy);
    }
}

static void test_afterwards_alive_delivering_counted_and_exits_0(
    void **state)
{
    struct fx *fx = *state;
    const char *ct[] = { "Content-Type: application/json", NULL };
    struct http_resp r;
    expect_healthy(fx, A, "everything");
    expect_healthy(fx, B, "everything");
    http(fx, A, "POST", "/v1/messages", ct,
         "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\"],"
         "\"headers\":{\"Subject\":\"hostile: the last one\"},"
         "\"body\":\"still here\"}", &r);
    if (r.status != 200 || strstr(r.body, "\"status\":\"sent\"") == NULL)
        fail_msg("the last message: %ld %s", r.status, r.body);
    http_resp_free(&r);
    fx->requested++;
    /* No worker stuck, nothing queued; the services say what the relay
       says. */
    double sent = settle(fx, A) + settle(fx, B);
    assert_int_equal(peer_wait_messages(fx->peer, (size_t)fx->requested,
                                        10000), fx->requested);
    sleep_ms(300);
    struct peer_msg *m;
    size_t got;
    assert_int_equal(peer_messages(fx->peer, &m, &got), 0);
    print_message("  requested %d, the relay received %zu, /metrics says "
                  "%g sent\n", fx->requested, got, sent);
    assert_int_equal(got, (size_t)fx->requested);
    assert_int_equal((int)sent, fx->requested);
    /* Each message once (by Subject), every one dot-stuffed and CRLF-clean,
       none forged. */
    for (size_t i = 0; i < got; i++) {
        char why[64];
        if (!stuffed_and_clean(m[i].data, m[i].len, why, sizeof why))
            fail_msg("message %zu: %s", i, why);
        if (strcmp(m[i].mail_from, FORGED) == 0)
            fail_msg("message %zu is forged", i);
        char *s = subject_of(&m[i]);
        for (size_t k = i + 1; s != NULL && k < got; k++) {
            char *t = subject_of(&m[k]);
            if (t != NULL && strcmp(s, t) == 0)
                fail_msg("\"%s\" arrived twice", s);
            free(t);
        }
        free(s);
    }
    peer_msgs_free(m, got);
    /* SIGTERM: both exit 0 (under ASan: without a leak). */
    for (int i = A; i <= B; i++) {
        int st = mpserve_stop(fx->svc[i], 15000);
        if (st != 0) {
            char *log = mpserve_log(fx->svc[i], NULL);
            fail_msg("service %c ended with %d after SIGTERM; its stderr "
                     "ends:\n%s", "AB"[i], st,
                     log != NULL && strlen(log) > 3000
                         ? log + strlen(log) - 3000 : log);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_json_table_answers_each_case_with_its_status_and_problem),
        cmocka_unit_test(
            test_raw_table_answers_400_or_closes_and_never_crashes),
        cmocka_unit_test(
            test_smuggling_sequences_in_bodies_deliver_once_dot_stuffed),
        cmocka_unit_test(
            test_slow_loris_clients_do_not_stop_others_being_served),
        cmocka_unit_test(
            test_clients_hanging_up_mid_body_or_response_lose_nothing),
        cmocka_unit_test(
            test_afterwards_alive_delivering_counted_and_exits_0),
    };
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    int rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
    curl_global_cleanup();
    return rc;
}
