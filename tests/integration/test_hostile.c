/*
 * test_hostile.c - hostile and malformed JSON over HTTP against a running
 * `mailpool serve`: broken JSON, wrong types for every member of every
 * route, huge arrays, 10,000-deep nesting, NUL and invalid UTF-8, CR/LF in
 * addresses and headers, duplicate keys, methods, paths, media types and
 * bearer keys, over libcurl.  Every request is answered with the right
 * status and an application/problem+json document (type, title, status);
 * nothing crashes, nothing hangs, no worker is left stuck, and the relay
 * receives exactly the messages the valid requests asked for (requested =
 * delivered), each once, dot-stuffed.
 *
 * The framing libcurl would not send is test_hostile_raw.c's; smuggling,
 * slow and hanging-up clients are test_hostile_clients.c's.  Each file
 * starts its own relay and two services for its group
 * (tests/support/hostile_fx.h) and ends with the same last test: both
 * services alive and delivering, requested = delivered, exit 0 on SIGTERM.
 */
#include "tests/support/hostile_fx.h"

/* ---- The JSON table ---- */

#define CT "Content-Type: application/json"
#define NOCT "Content-Type:" /* libcurl: send no Content-Type */

struct jcase {
    const char *name;
    enum svc svc;
    const char *method, *path;
    const char *ctype;         /* a whole header line */
    const char *hdr;           /* one more header line, or NULL */
    const char *body;          /* NULL: none (unless gen) */
    size_t blen;               /* bytes of body (may hold NULs) */
    char *(*gen)(size_t *len); /* a generated body */
    int gen_path;              /* gen makes the path, not the body */
    long status, alt;          /* the status (alt: also accepted) */
    const char *field;         /* an errors[].field that must be
                                       listed, or NULL */
    size_t nerrors;            /* errors[] must hold this many; 0: any */
    const char *detail;        /* a phrase the problem's detail must
                                       hold, or NULL */
};

#define BODY(s) .body = (s), .blen = sizeof(s) - 1
/* A POST to route r of service A with a JSON body. */
#define JPOST(n, r, s, st, f) \
    { \
        .name = (n), .svc = A, .method = "POST", .path = (r), .ctype = CT, \
        BODY(s), .status = (st), .field = (f) \
    }
#define MSG(n, s, st, f) JPOST(n, "/v1/messages", s, st, f)
#define BATCH(n, s, st, f) JPOST(n, "/v1/messages/batch", s, st, f)
#define VERIFY(n, s, st, f) JPOST(n, "/v1/verify", s, st, f)
#define EXPAND(n, s, st, f) JPOST(n, "/v1/expand", s, st, f)
#define HELP(n, s, st, f) JPOST(n, "/v1/help", s, st, f)
/* A POST with a generated body. */
#define GPOST(n, sv, r, g, st, f) \
    { \
        .name = (n), .svc = (sv), .method = "POST", .path = (r), .ctype = CT, \
        .gen = (g), .status = (st), .field = (f) \
    }
/* Another method or path, no body. */
#define REQ(n, m, p, st) \
    { \
        .name = (n), .svc = A, .method = (m), .path = (p), .ctype = NULL, \
        .status = (st) \
    }
/* A POST of a message with this Content-Type line. */
#define TYPED(n, ct, s, st) \
    { \
        .name = (n), .svc = A, .method = "POST", .path = "/v1/messages", \
        .ctype = (ct), BODY(s), .status = (st) \
    }
/* A POST to B with this Authorization line (NULL: none). */
#define AUTH(n, auth, s, st) \
    { \
        .name = (n), .svc = B, .method = "POST", .path = "/v1/messages", \
        .ctype = CT, .hdr = (auth), BODY(s), .status = (st) \
    }

#define M MSG_HEAD /* for brevity in the table */

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
        "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\",]}", 400,
        "$"),
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
        "evil@example.org\"]}",
        400, "$"),
    MSG("\\u0000 in a header value",
        M ",\"headers\":{\"Subject\":\"a\\u0000b\"}}", 400, "$"),
    MSG("\\u0000 in a header name", M ",\"headers\":{\"X-A\\u0000B\":\"v\"}}",
        400, "$"),
    MSG("\\u0000 in a body line", M ",\"body\":[\"a\",\"\\u0000\"]}", 400, "$"),
    MSG("a raw NUL byte in a string", M ",\"body\":\"a\0b\"}", 400, "$"),
    MSG("a raw NUL byte between tokens", M "\0}", 400, "$"),
    MSG("byte 0xFF in the body",
        M ",\"body\":\"a\xFF"
          "b\"}",
        400, "$"),
    MSG("an overlong '/' (C0 AF)", M ",\"body\":\"\xC0\xAF\"}", 400, "$"),
    MSG("a UTF-8 encoded surrogate (ED A0 80)", M ",\"body\":\"\xED\xA0\x80\"}",
        400, "$"),
    MSG("a truncated UTF-8 sequence", M ",\"body\":\"\xE2\x82\"}", 400, "$"),
    MSG("byte 0xFE in from",
        "{\"from\":\"s\xFE@example.com\",\"to\":[\"rcpt@example.net\"]}", 400,
        "$"),
    MSG("invalid UTF-8 in a header name", M ",\"headers\":{\"X-\xFF\":\"v\"}}",
        400, "$"),
    MSG("a raw control byte in a string",
        M ",\"body\":\"a\x01"
          "b\"}",
        400, "$"),
    MSG("a raw line feed in a string", M ",\"body\":\"a\nb\"}", 400, "$"),
    MSG("a raw tab in a string", M ",\"body\":\"a\tb\"}", 400, "$"),
    MSG("duplicate from",
        "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\"],"
        "\"from\":\"forged@evil.example\"}",
        400, "$"),
    MSG("duplicate to",
        "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\"],"
        "\"to\":[\"victim@example.org\"]}",
        400, "$"),
    MSG("duplicate header names in the object form",
        M ",\"headers\":{\"Subject\":\"a\",\"Subject\":\"b\"}}", 400, "$"),
    BATCH("duplicate messages", "{\"messages\":[" M "}],\"messages\":[" M "}]}",
          400, "$"),
    VERIFY("duplicate address", "{\"address\":\"a\",\"address\":\"b\"}", 400,
           "$"),
    GPOST("10,000-deep arrays", A, "/v1/messages", gen_deep_arrays, 400, "$"),
    GPOST("10,000-deep arrays, never closed", A, "/v1/messages",
          gen_deep_unclosed, 400, "$"),
    GPOST("10,000-deep objects", A, "/v1/messages", gen_deep_objects, 400, "$"),
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
    MSG("to: null", "{\"from\":\"sender@example.com\",\"to\":null}", 422, "to"),
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
        "\"b@example.net\",5]}",
        422, "to[2]"),
    MSG("to: an empty address",
        "{\"from\":\"sender@example.com\",\"to\":[\"\"]}", 422, "to[0]"),
    GPOST("to: 101 recipients", A, "/v1/messages", gen_101_rcpt, 422, "to"),
    MSG("headers: a string", M ",\"headers\":\"Subject: x\"}", 422, "headers"),
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
    MSG("headers: a string instead of a pair", M ",\"headers\":[\"X-A: 1\"]}",
        422, "headers[0]"),
    MSG("headers: a number value", M ",\"headers\":{\"X-A\":1}}", 422,
        "headers.X-A"),
    MSG("headers: a null value", M ",\"headers\":{\"X-A\":null}}", 422,
        "headers.X-A"),
    MSG("headers: an array value", M ",\"headers\":{\"X-A\":[\"v\"]}}", 422,
        "headers.X-A"),
    MSG("headers: an empty name", M ",\"headers\":{\"\":\"v\"}}", 422,
        "headers."),
    MSG("headers: a space in the name", M ",\"headers\":{\"Bad Name\":\"v\"}}",
        422, "headers.Bad Name"),
    MSG("headers: a colon in the name", M ",\"headers\":{\"X:Y\":\"v\"}}", 422,
        "headers.X:Y"),
    MSG("headers: a non-ASCII name", M ",\"headers\":{\"X-\\u00e9\":\"v\"}}",
        422, "headers.X-\xC3\xA9"),
    MSG("body: a number", M ",\"body\":7}", 422, "body"),
    MSG("body: true", M ",\"body\":true}", 422, "body"),
    MSG("body: an object", M ",\"body\":{\"text\":\"x\"}}", 422, "body"),
    MSG("body: [1]", M ",\"body\":[\"a\",1]}", 422, "body[1]"),
    MSG("body: [null]", M ",\"body\":[null]}", 422, "body[0]"),
    MSG("body: a nested array", M ",\"body\":[[\"x\"]]}", 422, "body[0]"),
    GPOST("body: 1,000-deep arrays", A, "/v1/messages", gen_nest_1000_body, 422,
          "body[0]"),
    MSG("raw: a number", M ",\"raw\":5}", 422, "raw"),
    MSG("raw: empty", M ",\"raw\":\"\"}", 422, "raw"),
    MSG("raw: an array", M ",\"raw\":[\"Subject: x\"]}", 422, "raw"),
    MSG("raw beside headers",
        M ",\"raw\":\"Subject: x\\r\\n\\r\\nx\",\"headers\":{\"X-A\":\"1\"}}",
        422, "raw"),
    MSG("bcc beside the envelope form's body (two forms mixed)",
        M ",\"bcc\":[\"spy@example.org\"],\"body\":\"x\"}", 422, "body"),
    MSG("unknown member __proto__", M ",\"__proto__\":{\"from\":\"x\"}}", 422,
        "__proto__"),
    MSG("unknown member with an empty name", M ",\"\":1}", 422, NULL),
    MSG("root: an empty array", "[]", 422, "$"),
    MSG("root: an array of a message", "[" M "}]", 422, "$"),

    /* CR/LF and other bytes that must not reach the SMTP dialogue. */
    MSG("CRLF + RCPT in from",
        "{\"from\":\"sender@example.com\\r\\nRCPT TO:<victim@example.org>\","
        "\"to\":[\"rcpt@example.net\"]}",
        422, "from"),
    MSG("LF + DATA in to",
        "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\\nDATA\"]}",
        422, "to[0]"),
    MSG("a bare CR in to",
        "{\"from\":\"sender@example.com\",\"to\":[\"rcpt@example.net\\rx\"]}",
        422, "to[0]"),
    MSG("CRLF.CRLF + MAIL in from",
        "{\"from\":\"s@example.com>\\r\\n.\\r\\nMAIL FROM:<" FORGED "\","
        "\"to\":[\"rcpt@example.net\"]}",
        422, "from"),
    MSG("angle brackets in from",
        "{\"from\":\"<sender@example.com>\",\"to\":[\"rcpt@example.net\"]}",
        422, "from"),
    MSG("a space in an address",
        "{\"from\":\"sender@example.com\",\"to\":[\"rcpt @example.net\"]}", 422,
        "to[0]"),
    GPOST("a 300-byte local part", A, "/v1/messages", gen_long_local_part, 422,
          "to[0]"),
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
        M ",\"headers\":{\"Subject\":\"a\\r\\n.\\r\\nMAIL FROM:<" FORGED
          ">\"}}",
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
          "\"to\":[\"a@example.net\",1]}]}",
          422, "messages[2].to[1]"),
    BATCH("CRLF in the from of a batched message",
          "{\"messages\":[{\"from\":\"a@example.com\\r\\nRSET\","
          "\"to\":[\"rcpt@example.net\"]}]}",
          422, "messages[0].from"),
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
    VERIFY("address: a control character", "{\"address\":\"fr\\u0001ed\"}", 422,
           "address"),
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
    GPOST("100,001 recipients (numbers)", B, "/v1/messages", gen_100001_to, 422,
          "to"),
    { .name = "100,001 headers: errors stop at 100",
      .svc = B,
      .method = "POST",
      .path = "/v1/messages",
      .ctype = CT,
      .gen = gen_100001_headers,
      .status = 422,
      .field = "headers[99]",
      .nerrors = 100 },
    { .name = "100,001 body lines: errors stop at 100",
      .svc = B,
      .method = "POST",
      .path = "/v1/messages",
      .ctype = CT,
      .gen = gen_100001_lines,
      .status = 422,
      .field = "body[0]",
      .nerrors = 100 },
    GPOST("100,001 messages", B, "/v1/messages/batch", gen_100001_messages, 422,
          "messages"),
    GPOST("100,001-element root to verify", B, "/v1/verify", gen_100001_root,
          422, "$"),
    /* More JSON values than one per 8 bytes: refused before a tree is
       built (the decoded size stays a small multiple of the body's). */
    GPOST("100,001 empty body lines", B, "/v1/messages", gen_100001_empty_lines,
          413, NULL),
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
    { .name = "a 4,000-byte path",
      .svc = A,
      .method = "GET",
      .gen = gen_long_path,
      .gen_path = 1,
      .status = 404 },
    /* Percent-escapes: only unreserved characters (RFC 3986 2.3) are
       decoded before routing; every other escape stays as it is and
       matches no route.  Each body is a valid message: had the path been
       cut or decoded to a route, it would have been sent, and the relay's
       count in the last test would not match. */
    { .name = "an encoded NUL after the route",
      .svc = A,
      .method = "POST",
      .path = "/v1/messages%00/x",
      .ctype = CT,
      BODY(M ",\"headers\":{\"Subject\":\"hostile: nul\"}}"),
      .status = 404,
      .detail = "%00" },
    { .name = "an encoded NUL ending the route",
      .svc = A,
      .method = "POST",
      .path = "/v1/messages%00",
      .ctype = CT,
      BODY(M ",\"headers\":{\"Subject\":\"hostile: nul\"}}"),
      .status = 404,
      .detail = "%00" },
    { .name = "an encoded NUL on a GET route",
      .svc = A,
      .method = "GET",
      .path = "/healthz%00",
      .status = 404,
      .detail = "%00" },
    { .name = "an encoded NUL in the query only",
      .svc = A,
      .method = "POST",
      .path = "/v1/messages?x=%00",
      .ctype = CT,
      BODY(M ",\"headers\":{\"Subject\":\"hostile: query nul\"}}"),
      .status = 200 },
    { .name = "%2500 is decoded once at most",
      .svc = A,
      .method = "POST",
      .path = "/v1/messages%2500",
      .ctype = CT,
      BODY(M ",\"headers\":{\"Subject\":\"hostile: nul\"}}"),
      .status = 404,
      .detail = "no such route" },
    { .name = "an encoded slash is not a slash",
      .svc = A,
      .method = "POST",
      .path = "/v1%2Fmessages",
      .ctype = CT,
      BODY(M ",\"headers\":{\"Subject\":\"hostile: slash\"}}"),
      .status = 404,
      .detail = "no such route" },
    { .name = "an encoded slash before batch",
      .svc = A,
      .method = "POST",
      .path = "/v1/messages%2fbatch",
      .ctype = CT,
      BODY("{\"messages\":[" M "}]}"),
      .status = 404 },
    { .name = "an encoded space",
      .svc = A,
      .method = "GET",
      .path = "/healthz%20",
      .status = 404 },
    { .name = "an encoded question mark",
      .svc = A,
      .method = "POST",
      .path = "/v1/messages%3Fx=1",
      .ctype = CT,
      BODY(M "}"),
      .status = 404 },
    { .name = "a lone percent sign",
      .svc = A,
      .method = "GET",
      .path = "/healthz%",
      .status = 404 },
    { .name = "a percent sign and one hex digit",
      .svc = A,
      .method = "GET",
      .path = "/healthz%4",
      .status = 404 },
    { .name = "an encoded unreserved dot",
      .svc = A,
      .method = "GET",
      .path = "/openapi%2Ejson",
      .status = 200 },
    { .name = "a query string is ignored",
      .svc = A,
      .method = "POST",
      .path = "/v1/messages?relay=evil.example&x=1",
      .ctype = CT,
      BODY(M ",\"headers\":{\"Subject\":\"hostile: query\"}}"),
      .status = 200 },
    { .name = "a percent-encoded route",
      .svc = A,
      .method = "POST",
      .path = "/v1/%6Dessages",
      .ctype = CT,
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
    TYPED("junk after the type", "Content-Type: application/json junk", M "}",
          415),
    TYPED("415 comes before the body is parsed", "Content-Type: text/plain",
          "{{{{", 415),
    TYPED("the type in upper case", "Content-Type: APPLICATION/JSON", "{}",
          422),
    TYPED("a quoted charset",
          "Content-Type: application/json; "
          "charset=\"UTF-8\"",
          "{}", 422),
    TYPED("empty parameters", "Content-Type: application/json;;", "{}", 422),
    TYPED("another parameter",
          "Content-Type: application/json; "
          "boundary=x",
          "{}", 422),

    /* Bearer keys (service B). */
    AUTH("no Authorization", NULL, M "}", 401),
    AUTH("a wrong key", "Authorization: Bearer nope", M "}", 401),
    AUTH("Bearer and no key", "Authorization: Bearer", M "}", 401),
    AUTH("Basic", "Authorization: Basic aG9zdGlsZTprZXk=", M "}", 401),
    AUTH("the key and a second word", "Authorization: Bearer " KEY " x", M "}",
         401),
    AUTH("401 comes before the body is parsed", "Authorization: Bearer no",
         "{{{{", 401),
    { .name = "401 comes before 415",
      .svc = B,
      .method = "POST",
      .path = "/v1/messages",
      .ctype = "Content-Type: text/plain",
      .hdr = "Authorization: Bearer no",
      BODY("x"),
      .status = 401 },
    AUTH("the key in lower-case scheme", "Authorization: bearer " KEY, "{}",
         422),

    /* Valid requests among the hostile ones: delivered, and counted. */
    MSG("headers and body null", M ",\"headers\":null,\"body\":null}", 200,
        NULL),
    MSG("body as lines",
        M ",\"headers\":{\"Subject\":\"hostile: lines\"},"
          "\"body\":[\"one\",\"\",\"three\"]}",
        200, NULL),
    MSG("repeated header names in the pair form",
        M ",\"headers\":[[\"Subject\",\"hostile: pairs\"],[\"X-Dup\",\"1\"],"
          "[\"X-Dup\",\"2\"]]}",
        200, NULL),
    MSG("UTF-8 text",
        M ",\"headers\":{\"Subject\":\"hostile: utf-8\"},"
          "\"body\":\"\xC3\xA9t\xC3\xA9 \\ud83d\\udce7 \xE2\x82\xAC\"}",
        200, NULL),
    MSG("the null sender",
        "{\"from\":\"\",\"to\":[\"rcpt@example.net\"],\"headers\":"
        "{\"Subject\":\"hostile: null sender\"}}",
        200, NULL),
    BATCH("a valid batch of two",
          "{\"messages\":[" M ",\"headers\":{\"Subject\":\"hostile: b1\"}}," M
          ",\"headers\":{\"Subject\":\"hostile: b2\"}}]}",
          200, NULL),
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
    json_array_foreach(results, i, r)
    {
        const char *s = json_string_value(json_object_get(r, "status"));
        if (s == NULL || strcmp(s, "sent") != 0)
            fail_msg("%s: results[%zu] is %s", c->name, i, s ? s : "(none)");
        n++;
    }
    return n;
}

/* An error answer r to case c: a proper problem document with the
   case's field, detail and number of errors; Allow on a 405,
   WWW-Authenticate on a 401. */
static void check_problem_answer(const struct jcase *c,
                                 const struct http_resp *r)
{
    char why[160];
    json_t *p = NULL;
    if (check_problem(r->status, r->hdrs, r->body, r->len, &p, why,
                      sizeof why) < 0)
        fail_msg("%s: HTTP %ld is not a proper problem: %s: %.300s", c->name,
                 r->status, why, r->body ? r->body : "");
    if (c->field != NULL && r->status == c->status && !has_field(p, c->field))
        fail_msg("%s: no error for field \"%s\" in %.600s", c->name, c->field,
                 r->body);
    const char *d = json_string_value(json_object_get(p, "detail"));
    if (c->detail != NULL && strstr(d, c->detail) == NULL)
        fail_msg("%s: the detail does not say \"%s\": %s", c->name, c->detail,
                 d);
    if (c->nerrors > 0 &&
        json_array_size(json_object_get(p, "errors")) != c->nerrors)
        fail_msg("%s: %zu errors listed, want %zu", c->name,
                 json_array_size(json_object_get(p, "errors")), c->nerrors);
    json_decref(p);
    char *h = NULL;
    if (r->status == 405 && (h = http_header_value(r->hdrs, "Allow")) == NULL)
        fail_msg("%s: 405 without Allow", c->name);
    if (r->status == 401 &&
        (h = http_header_value(r->hdrs, "WWW-Authenticate")) == NULL)
        fail_msg("%s: 401 without WWW-Authenticate", c->name);
    free(h);
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
        fail_msg("%s: expected HTTP %ld, got %ld: %.400s", c->name, c->status,
                 r.status, r.body != NULL ? r.body : "");
    int sent = 0;
    if (r.status >= 400) {
        check_problem_answer(c, &r);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_json_table_answers_each_case_with_its_status_and_problem),
        cmocka_unit_test(test_afterwards_alive_delivering_counted_and_exits_0),
    };
    return hostile_run(tests, sizeof tests / sizeof tests[0]);
}
