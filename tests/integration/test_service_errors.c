/*
 * test_service_errors.c - the service's answers to requests it must not
 * carry out, over real HTTP: every problem+json case (400 with line and
 * column, 422 naming the field, 415, 405 with Allow, 404), bearer keys,
 * /openapi.json against what the routes really answer, and a bad
 * configuration refused with exit code 2 before any port is bound.  The
 * body and in-flight limits (413, 503) are in test_service_limits.c.
 *
 * Like test_service.c (delivery, pool, drain, metrics, logs), each test
 * starts its own SMTP peer (tests/support/peer.h) and `mailpool serve`
 * (tests/support/mpserve.h), and checks what crossed the wire at both ends:
 * here mostly that nothing reached the relay.  HTTP goes through
 * tests/support/http.h (libcurl); the fixture is tests/support/errors_fx.h.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "tests/support/errors_fx.h"

/* 1 when problem p lists an error for exactly this field. */
static int has_field(json_t *p, const char *field)
{
    json_t *e;
    size_t i;
    json_array_foreach(json_object_get(p, "errors"), i, e)
    {
        const char *f = json_string_value(json_object_get(e, "field"));
        if (f != NULL && strcmp(f, field) == 0 &&
            json_is_string(json_object_get(e, "message")))
            return 1;
    }
    return 0;
}

/* ---- The problem+json table ---- */

#define MAXF 3
#define X10 "xxxxxxxxxx"
#define X100 X10 X10 X10 X10 X10 X10 X10 X10 X10 X10
#define X1000 X100 X100 X100 X100 X100 X100 X100 X100 X100 X100

struct pcase {
    const char *name;
    const char *method, *path;
    const char *ctype; /* NULL: no Content-Type */
    const char *body;
    long status;
    const char *fields[MAXF];    /* errors[].field that must be listed */
    const char *header, *hvalue; /* a header it must carry */
    int line;                    /* 400: the line the parser stopped at */
};

static const struct pcase PROBLEMS[] = {
    { "malformed JSON",
      "POST",
      "/v1/messages",
      "application/json",
      "{\"from\": \"sender@example.com\",\n \"to\": [,]}",
      400,
      { "$" },
      NULL,
      NULL,
      2 },
    { "duplicate member",
      "POST",
      "/v1/messages",
      "application/json",
      "{\"from\":\"sender@example.com\",\n\"to\":[\"rcpt@example.net\"],"
      "\n\"from\":\"other@example.com\"}",
      400,
      { "$" },
      NULL,
      NULL,
      3 },
    { "trailing garbage",
      "POST",
      "/v1/messages",
      "application/json",
      "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\"]}\n"
      "{}",
      400,
      { "$" },
      NULL,
      NULL,
      2 },
    { "NUL in a string",
      "POST",
      "/v1/messages",
      "application/json",
      "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\"],"
      "\"body\":\"a\\u0000b\"}",
      400,
      { "$" },
      NULL,
      NULL,
      1 },
    { "empty body",
      "POST",
      "/v1/messages",
      "application/json",
      "",
      400,
      { "$" },
      NULL,
      NULL,
      1 },
    { "not an object",
      "POST",
      "/v1/messages",
      "application/json",
      "[]",
      422,
      { "$" },
      NULL,
      NULL,
      0 },
    { "wrong types",
      "POST",
      "/v1/messages",
      "application/json",
      "{\"from\":5,\"to\":\"rcpt@example.net\",\"body\":7}",
      422,
      { "from", "to", "body" },
      NULL,
      NULL,
      0 },
    { "missing from",
      "POST",
      "/v1/messages",
      "application/json",
      "{\"to\":[\"rcpt@example.net\"]}",
      422,
      { "from" },
      NULL,
      NULL,
      0 },
    { "empty to",
      "POST",
      "/v1/messages",
      "application/json",
      "{\"from\":\"sender@example.com\",\"to\":[]}",
      422,
      { "to" },
      NULL,
      NULL,
      0 },
    { "bad address",
      "POST",
      "/v1/messages",
      "application/json",
      "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\","
      "\"no domain\"]}",
      422,
      { "to[1]" },
      NULL,
      NULL,
      0 },
    { "CR/LF in a header value",
      "POST",
      "/v1/messages",
      "application/json",
      "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\"],"
      "\"headers\":{\"Subject\":\"hi\\r\\nBcc: spy@example.org\"}}",
      422,
      { "headers.Subject" },
      NULL,
      NULL,
      0 },
    { "CR/LF in a header pair",
      "POST",
      "/v1/messages",
      "application/json",
      "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\"],"
      "\"headers\":[[\"X-A\",\"1\"],[\"X-B\",\"2\\nX-C: 3\"]]}",
      422,
      { "headers[1][1]" },
      NULL,
      NULL,
      0 },
    { "CR/LF in an address",
      "POST",
      "/v1/messages",
      "application/json",
      "{\"from\":\"sender@example.com\\r\\nRCPT TO:<spy@example.org>\","
      "\"to\":[\"rcpt@example.net\\r\\nDATA\"]}",
      422,
      { "from", "to[0]" },
      NULL,
      NULL,
      0 },
    { "unknown member",
      "POST",
      "/v1/messages",
      "application/json",
      "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\"],"
      "\"priority\":\"high\"}",
      422,
      { "priority" },
      NULL,
      NULL,
      0 },
    { "relay chosen by the request",
      "POST",
      "/v1/messages",
      "application/json",
      "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\"],"
      "\"host\":\"smtp.example.org\",\"port\":25}",
      422,
      { "host", "port" },
      NULL,
      NULL,
      0 },
    { "too many recipients",
      "POST",
      "/v1/messages",
      "application/json",
      "{\"from\":\"sender@example.com\",\"to\":[\"a@example.net\","
      "\"b@example.net\",\"c@example.net\"]}",
      422,
      { "to" },
      NULL,
      NULL,
      0 },
    { "raw beside body",
      "POST",
      "/v1/messages",
      "application/json",
      "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\"],"
      "\"raw\":\"Subject: x\\r\\n\\r\\nx\\r\\n\",\"body\":\"y\"}",
      422,
      { "raw" },
      NULL,
      NULL,
      0 },
    { "one bad message in a batch",
      "POST",
      "/v1/messages/batch",
      "application/json",
      "{\"messages\":[{\"from\":\"sender@example.com\",\"to\":"
      "[\"rcpt@example.net\"]},{\"from\":\"sender@example.com\","
      "\"to\":[]}]}",
      422,
      { "messages[1].to" },
      NULL,
      NULL,
      0 },
    { "empty batch",
      "POST",
      "/v1/messages/batch",
      "application/json",
      "{\"messages\":[]}",
      422,
      { "messages" },
      NULL,
      NULL,
      0 },
    { "verify without address",
      "POST",
      "/v1/verify",
      "application/json",
      "{}",
      422,
      { "address" },
      NULL,
      NULL,
      0 },
    { "expand with CR/LF",
      "POST",
      "/v1/expand",
      "application/json",
      "{\"list\":\"staff\\r\\nQUIT\"}",
      422,
      { "list" },
      NULL,
      NULL,
      0 },
    { "text/plain",
      "POST",
      "/v1/messages",
      "text/plain",
      "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\"]}",
      415,
      { NULL },
      NULL,
      NULL,
      0 },
    /* A line SMTP cannot carry: refused here, not by the relay later. */
    { "body line over 998 octets",
      "POST",
      "/v1/messages",
      "application/json",
      "{\"from\":\"a@example.com\",\"to\":[\"b@example.com\"],"
      "\"body\":\"ok\\n" X1000 "\"}",
      422,
      { "body" },
      NULL,
      NULL,
      0 },
    { "raw line over 998 octets",
      "POST",
      "/v1/messages",
      "application/json",
      "{\"from\":\"a@example.com\",\"to\":[\"b@example.com\"],"
      "\"raw\":\"Subject: " X1000 "\\r\\n\\r\\nhi\"}",
      422,
      { "raw" },
      NULL,
      NULL,
      0 },
    { "another charset",
      "POST",
      "/v1/messages",
      "application/json; charset=iso-8859-1",
      "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\"]}",
      415,
      { NULL },
      NULL,
      NULL,
      0 },
    { "no Content-Type",
      "POST",
      "/v1/messages",
      NULL,
      "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\"]}",
      415,
      { NULL },
      NULL,
      NULL,
      0 },
    { "GET on a POST route",
      "GET",
      "/v1/messages/batch",
      NULL,
      NULL,
      405,
      { NULL },
      "Allow",
      "POST",
      0 },
    { "DELETE on the message log",
      "DELETE",
      "/v1/messages",
      NULL,
      NULL,
      405,
      { NULL },
      "Allow",
      "GET, HEAD, POST",
      0 },
    { "DELETE on a POST route",
      "DELETE",
      "/v1/verify",
      NULL,
      NULL,
      405,
      { NULL },
      "Allow",
      "POST",
      0 },
    { "POST on a GET route",
      "POST",
      "/healthz",
      "application/json",
      "{}",
      405,
      { NULL },
      "Allow",
      "GET",
      0 },
    { "unknown path",
      "GET",
      "/v2/messages",
      NULL,
      NULL,
      404,
      { NULL },
      NULL,
      NULL,
      0 },
    { "trailing slash",
      "POST",
      "/v1/messages/",
      "application/json",
      "{}",
      404,
      { NULL },
      NULL,
      NULL,
      0 },
    /* A valid message: were the path cut at the NUL, it would be sent. */
    { "%00 in the path",
      "POST",
      "/v1/messages%00/x",
      "application/json",
      "{\"from\":\"a@example.com\",\"to\":[\"b@example.com\"]}",
      404,
      { NULL },
      NULL,
      NULL,
      0 },
    { "%00 at the end of the path",
      "POST",
      "/v1/messages%00",
      "application/json",
      "{\"from\":\"a@example.com\",\"to\":[\"b@example.com\"]}",
      404,
      { NULL },
      NULL,
      NULL,
      0 },
};

static void check_problem_case(const struct fx *fx, const struct pcase *c)
{
    struct http_resp r;
    char ct[128];
    const char *hdrs[] = { NULL, NULL };
    if (c->ctype != NULL) {
        snprintf(ct, sizeof ct, "Content-Type: %s", c->ctype);
        hdrs[0] = ct;
    }
    call(fx, c->method, c->path, hdrs, c->body, &r);
    json_t *p = check_problem(&r, c->status, c->name);
    for (size_t i = 0; i < MAXF && c->fields[i] != NULL; i++)
        if (!has_field(p, c->fields[i]))
            fail_msg("%s: no error for field \"%s\" in %s", c->name,
                     c->fields[i], r.body);
    if (c->status == 400) { /* where the parser stopped */
        char want[32];
        snprintf(want, sizeof want, "line %d", c->line);
        if (json_integer_value(json_object_get(p, "line")) != c->line)
            fail_msg("%s: line is not %d: %s", c->name, c->line, r.body);
        assert_true(json_is_integer(json_object_get(p, "column")));
        assert_true(json_is_integer(json_object_get(p, "position")));
        const char *d = json_string_value(json_object_get(p, "detail"));
        if (strstr(d, want) == NULL || strstr(d, "column") == NULL)
            fail_msg("%s: detail does not say where: %s", c->name, d);
    }
    if (c->header != NULL) {
        char *v = http_resp_header(&r, c->header);
        if (v == NULL || strstr(v, c->hvalue) == NULL)
            fail_msg("%s: header %s is \"%s\", want it to name %s", c->name,
                     c->header, v != NULL ? v : "(none)", c->hvalue);
        free(v);
    }
    char *rid = http_resp_header(&r, "X-Request-Id");
    assert_non_null(rid);
    assert_int_equal(strlen(rid), 32);
    assert_string_equal(json_string_value(json_object_get(p, "request_id")),
                        rid);
    free(rid);
    json_decref(p);
    http_resp_free(&r);
}

static void test_problem_table_answers_400_422_415_405_404_sends_nothing(
    void **state)
{
    struct fx *fx = *state;
    START(fx, "--http-max-recipients", "2");
    for (size_t i = 0; i < sizeof PROBLEMS / sizeof PROBLEMS[0]; i++)
        check_problem_case(fx, &PROBLEMS[i]);
    expect_nothing_sent(fx->peer);
    /* The control: a valid message, "; charset=utf-8" allowed, goes out. */
    struct http_resp r;
    const char *hdrs[] = { "Content-Type: application/json; charset=utf-8",
                           NULL };
    call(fx, "POST", "/v1/messages", hdrs,
         "{\"from\":\"sender@example.com\",\"to\":[\"a@example.net\","
         "\"b@example.net\"]}",
         &r);
    check_status(&r, 200, "control");
    http_resp_free(&r);
    assert_int_equal(peer_wait_messages(fx->peer, 1, 5000), 1);
}

/* ---- Bearer keys ---- */

/* Asserts each request with a missing, foreign or wrong key is a 401
   with the WWW-Authenticate challenge that fits. */
static void expect_keys_refused(const struct fx *fx, const char *msg)
{
    static const char missing[] = "Bearer realm=\"mailpool\"";
    static const char invalid[] =
        "Bearer realm=\"mailpool\", error=\"invalid_token\"";
    static const struct {
        const char *auth, *why, *www;
    } refused[] = {
        { NULL, "no Authorization", missing },
        { "Authorization: Basic azEtZmlyc3QtNGMxZA==", "another scheme",
          missing },
        { "Authorization: Bearer nope", "a wrong key", invalid },
        { "Authorization: Bearer k1-first-4c1", "a prefix of a key", invalid },
        { "Authorization: Bearer k1-first-4c1dX", "a key and more", invalid },
        { "Authorization: Bearer k1-first-4c1d,k2-second-9e0f",
          "the whole list", invalid },
        { "Authorization: Bearer ", "an empty key", invalid },
    };
    struct http_resp r;
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        const char *hdrs[] = { JSON_CT[0], refused[i].auth, NULL };
        call(fx, "POST", "/v1/messages", hdrs, msg, &r);
        json_t *p = check_problem(&r, 401, refused[i].why);
        char *www = http_resp_header(&r, "WWW-Authenticate");
        if (www == NULL || strcmp(www, refused[i].www) != 0)
            fail_msg("%s: WWW-Authenticate is %s, want %s", refused[i].why,
                     www != NULL ? www : "(none)", refused[i].www);
        free(www);
        json_decref(p);
        http_resp_free(&r);
    }
}

/* Asserts the operations routes answer 200 without a key (the OpenAPI
   description says so). */
static void expect_open_routes(const struct fx *fx)
{
    static const char *const open_paths[] = { "/healthz", "/readyz", "/metrics",
                                              "/openapi.json" };
    struct http_resp r;
    for (size_t i = 0; i < 4; i++) {
        call(fx, "GET", open_paths[i], NULL, NULL, &r);
        check_status(&r, 200, open_paths[i]);
        http_resp_free(&r);
    }
}

static void test_bearer_keys_401_without_or_wrong_key_200_with_second(
    void **state)
{
    struct fx *fx = *state;
    struct http_resp r;
    static const char msg[] =
        "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\"],"
        "\"headers\":{\"Subject\":\"keyed\"},\"body\":\"x\"}";
    /* Keys come from the environment (no flag: it would show in ps). */
    assert_int_equal(
        setenv("MAILPOOL_HTTP_API_KEYS", "k1-first-4c1d,k2-second-9e0f", 1), 0);
    START(fx, "--http-threads", "2");
    unsetenv("MAILPOOL_HTTP_API_KEYS");
    expect_keys_refused(fx, msg);
    expect_nothing_sent(fx->peer);
    /* The second key of the list works, and so does the first. */
    const char *k2[] = { JSON_CT[0], "Authorization: Bearer k2-second-9e0f",
                         NULL };
    call(fx, "POST", "/v1/messages", k2, msg, &r);
    check_status(&r, 200, "k2");
    json_t *j = resp_json(&r);
    assert_string_equal(json_string_value(json_object_get(j, "status")),
                        "sent");
    json_decref(j);
    http_resp_free(&r);
    const char *k1[] = { "Content-Type: application/json",
                         "Authorization: bearer k1-first-4c1d", NULL };
    call(fx, "POST", "/v1/verify", k1, "{\"address\":\"fred\"}", &r);
    check_status(&r, 200, "k1, scheme in lower case");
    http_resp_free(&r);
    assert_int_equal(peer_wait_messages(fx->peer, 1, 5000), 1);
    expect_open_routes(fx);
}

/* ---- /openapi.json ---- */

/* A request body that reaches the route's handler. */
static const char *probe_body(const char *path)
{
    if (strcmp(path, "/v1/verify") == 0)
        return "{\"address\":\"fred\"}";
    if (strcmp(path, "/v1/expand") == 0)
        return "{\"list\":\"staff\"}";
    if (strcmp(path, "/v1/help") == 0)
        return "{}";
    return "{\"to\":[]}"; /* a 422 for the message routes */
}

/* GET /openapi.json: 200, JSON, OpenAPI 3.1.x; the document (decref). */
static json_t *get_openapi(const struct fx *fx)
{
    struct http_resp r;
    call(fx, "GET", "/openapi.json", NULL, NULL, &r);
    check_status(&r, 200, "/openapi.json");
    char *ct = http_resp_header(&r, "Content-Type");
    assert_non_null(ct);
    assert_int_equal(strncmp(ct, "application/json", 16), 0);
    free(ct);
    json_t *doc = resp_json(&r);
    http_resp_free(&r);
    const char *ver = json_string_value(json_object_get(doc, "openapi"));
    assert_non_null(ver);
    assert_int_equal(strncmp(ver, "3.1.", 4), 0);
    return doc;
}

/* Asserts what each GET and POST of path answers to a probe is one of its
   documented responses. */
static void expect_answers_documented(const struct fx *fx, const char *path,
                                      json_t *item)
{
    struct http_resp r;
    const char *method;
    json_t *op;
    json_object_foreach(item, method, op)
    {
        char status[8];
        int post = strcmp(method, "post") == 0;
        if (!post && strcmp(method, "get") != 0)
            continue;
        call(fx, post ? "POST" : "GET", path, post ? JSON_CT : NULL,
             post ? probe_body(path) : NULL, &r);
        snprintf(status, sizeof status, "%ld", r.status);
        if (json_object_get(json_object_get(op, "responses"), status) == NULL)
            fail_msg("%s %s answered %ld, which is not documented", method,
                     path, r.status);
        http_resp_free(&r);
    }
}

/* Asserts the statuses every POST route can answer are documented on it. */
static void expect_post_statuses(const char *path, json_t *item)
{
    json_t *post = json_object_get(item, "post");
    static const char *const must[] = { "200", "400", "401", "413",
                                        "415", "422", "503" };
    int bodyless = strcmp(path, "/v1/messages/{id}/cancel") == 0;
    for (size_t k = 0; post != NULL && k < 7; k++)
        if ((!bodyless ||
             (strcmp(must[k], "415") != 0 && strcmp(must[k], "422") != 0)) &&
            json_object_get(json_object_get(post, "responses"), must[k]) ==
                NULL)
            fail_msg("POST %s does not document %s", path, must[k]);
}

static void test_openapi_json_is_3_1_and_documents_every_route_answer(
    void **state)
{
    struct fx *fx = *state;
    static const char *const paths[] = { "/v1/messages",
                                         "/v1/messages/batch",
                                         "/v1/verify",
                                         "/v1/expand",
                                         "/v1/help",
                                         "/healthz",
                                         "/readyz",
                                         "/metrics",
                                         "/openapi.json",
                                         "/v1/messages/preview",
                                         "/v1/messages/{id}",
                                         "/v1/messages/{id}/cancel",
                                         "/ui",
                                         "/ui/{file}" };
    START(fx, "--pool-workers", "1");
    json_t *doc = get_openapi(fx);
    json_t *dpaths = json_object_get(doc, "paths");
    assert_int_equal(json_object_size(dpaths), sizeof paths / sizeof paths[0]);
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        if (json_object_get(dpaths, paths[i]) == NULL)
            fail_msg("/openapi.json does not document %s", paths[i]);
    /* Every documented operation exists, and what it answers to a probe
       is one of its documented responses. */
    const char *path;
    json_t *item;
    json_object_foreach(dpaths, path, item)
    {
        expect_answers_documented(fx, path, item);
        expect_post_statuses(path, item);
    }
    json_t *send = json_object_get(json_object_get(dpaths, "/v1/messages"),
                                   "post");
    assert_non_null(json_object_get(json_object_get(send, "responses"), "502"));
    json_decref(doc);
}

/* ---- Configuration ---- */

/* A socket listening on 127.0.0.1 (port in *port); -1 on error. */
static int listen_any(int *port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    socklen_t len = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 ||
        listen(fd, 4) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

static void test_bad_config_exits_2_naming_the_key_before_binding(void **state)
{
    static const struct {
        const char *flag, *value, *key;
    } bad[] = {
        { "--relay-port", "0", "relay.port" },
        { "--relay-port", "70000", "relay.port" },
        { "--relay-tls", "sometimes", "relay.tls" },
        { "--pool-workers", "0", "pool.workers" },
        { "--pool-queue", "-1", "pool.queue" },
        { "--http-max-body", "lots", "http.max_body" },
        { "--http-listen", "127.0.0.1:99999", "http.listen" },
    };
    char listen[32];
    int port = 0, fd;
    (void)state;
    /* The HTTP port is taken: a service that bound before validating would
       fail on it (exit 1, naming http.listen), not on the bad key. */
    fd = listen_any(&port);
    assert_true(fd >= 0);
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int own_listen = strcmp(bad[i].flag, "--http-listen") == 0;
        const char *argv[] = {
            "serve",     "--http-listen", own_listen ? bad[i].value : listen,
            bad[i].flag, bad[i].value,    NULL
        };
        char *out = NULL;
        int rc = mpserve_run(argv, 10000, &out);
        if (rc != 2 || out == NULL || strstr(out, bad[i].key) == NULL)
            fail_msg("%s %s: exit %d, stderr: %s", bad[i].flag, bad[i].value,
                     rc, out != NULL ? out : "(none)");
        assert_null(strstr(out, "\"listening\""));
        if (!own_listen)
            assert_null(strstr(out, "http.listen"));
        free(out);
    }
    /* From the environment, the same. */
    setenv("MAILPOOL_RELAY_PORT", "0", 1);
    const char *argv[] = { "serve", "--http-listen", listen, NULL };
    char *out = NULL;
    int rc = mpserve_run(argv, 10000, &out);
    unsetenv("MAILPOOL_RELAY_PORT");
    assert_int_equal(rc, 2);
    assert_non_null(out);
    assert_non_null(strstr(out, "relay.port"));
    free(out);
    close(fd);
    /* And the port it was given stayed ours the whole time: still free. */
    assert_int_equal(
        mpserve_raw_http(port, "GET /healthz HTTP/1.0\r\n\r\n", 25, 300, &out),
        -1);
    free(out);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_problem_table_answers_400_422_415_405_404_sends_nothing),
        T(test_bearer_keys_401_without_or_wrong_key_200_with_second),
        T(test_openapi_json_is_3_1_and_documents_every_route_answer),
        T(test_bad_config_exits_2_naming_the_key_before_binding),
    };
    return run_refusal_tests(tests, sizeof tests / sizeof tests[0]);
}
