/*
 * test_hostile_raw.c - framing that libcurl would not send, against a
 * running `mailpool serve` (Content-Length with Transfer-Encoding, two
 * Content-Lengths, bad chunks, bad request lines, oversized heads, 10 MB
 * bodies with and without Content-Length), each case on its own
 * connection, all at once: each is answered 400 (or its status) with a
 * problem document, or the connection is closed cleanly; nothing crashes.
 * The relay and the two services are tests/support/hostile_fx.h's; the
 * last test checks requested = delivered and exit 0 on SIGTERM.
 *
 * Threads: the raw table runs on threads of its own that only record what
 * happened; every assertion is made on the main thread.
 */
#include "tests/support/hostile_fx.h"

/* ---- The raw table ---- */

/* What a raw case may get back. */
enum {
    W200 = 1 << 0,
    W400 = 1 << 1,
    W401 = 1 << 2,
    W404 = 1 << 3,
    W405 = 1 << 4,
    W413 = 1 << 5,
    W414 = 1 << 6,
    W415 = 1 << 7,
    W417 = 1 << 8,
    W422 = 1 << 9,
    W431 = 1 << 10,
    W501 = 1 << 11,
    W505 = 1 << 12,
    WCLOSE = 1 << 13 /* closed without an answer */
};

/* The W* bit of an HTTP status; 0 for one the table never allows. */
static unsigned want_bit(int status)
{
    static const int codes[] = { 200, 400, 401, 404, 405, 413, 414,
                                 415, 417, 422, 431, 501, 505 };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (codes[i] == status)
            return 1u << i;
    return 0;
}

struct rcase {
    const char *name;
    enum svc svc;
    const char *req; /* the bytes, or NULL: gen */
    size_t len;
    char *(*gen)(size_t *len);
    unsigned want;      /* W* bits that are acceptable */
    int mhd;            /* errors may be MHD's own (HTML) page */
    int must_close;     /* the connection must be closed after
                                       the answer (request smuggling) */
    int half;           /* shutdown(SHUT_WR) after sending */
    const char *detail; /* a phrase the problem's detail must
                                       hold, or NULL */
};

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
             "Content-Length: %u\r\n\r\n",
             11000000u);
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
                        "Transfer-Encoding: chunked\r\n\r\n",
                        len);
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
    return nest("GET /", "a", 40000, " HTTP/1.1\r\n" HOST "\r\n", "", "", len);
}

/* A GET of a target of n bytes ("/" and n - 1 'a'). */
static char *gen_target(size_t n, size_t *len)
{
    return nest("GET /", "a", n - 1, " HTTP/1.1\r\n" HOST "\r\n", "", "", len);
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
                "Authorization: Bearer ",
                "k", 12000, "\r\nContent-Length: 2\r\n\r\n{}", "", "", len);
}

static const struct rcase RCASES[] = {
    /* Request smuggling: ambiguous framing is refused, and the connection
       is not reused (RFC 9112 section 6.3). */
    { "Content-Length and Transfer-Encoding: chunked", A,
      RAW(POSTM "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
                "2\r\n{}\r\n0\r\n\r\n"),
      NULL, W400 | WCLOSE, 1, 1, 0, NULL },
    { "Transfer-Encoding: chunked, then Content-Length", A,
      RAW(POSTM "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"
                "2\r\n{}\r\n0\r\n\r\n"),
      NULL, W400 | WCLOSE, 1, 1, 0, NULL },
    { "CL.TE with a smuggled second request", A,
      RAW("POST /v1/verify HTTP/1.1\r\n" HOST JSONCT
          "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
          "0\r\n\r\nGET /v1/smuggled HTTP/1.1\r\n" HOST "\r\n"),
      NULL, W400 | WCLOSE, 1, 1, 0, NULL },
    { "two different Content-Lengths", A,
      RAW(POSTM "Content-Length: 2\r\nContent-Length: 40\r\n\r\n{}"), NULL,
      W400 | WCLOSE, 1, 1, 0, NULL },
    { "two equal Content-Lengths", A,
      RAW(POSTM "Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}"), NULL,
      W400 | W422 | WCLOSE, 1, 0, 0, NULL },
    { "Content-Length: 2, 2", A, RAW(POSTM "Content-Length: 2, 2\r\n\r\n{}"),
      NULL, W400 | WCLOSE, 1, 1, 0, NULL },
    { "Content-Length: abc", A, RAW(POSTM "Content-Length: abc\r\n\r\n{}"),
      NULL, W400 | WCLOSE, 1, 1, 0, NULL },
    { "Content-Length: -1", A, RAW(POSTM "Content-Length: -1\r\n\r\n{}"), NULL,
      W400 | W413 | WCLOSE, 1, 1, 0, NULL },
    { "Content-Length: +2", A, RAW(POSTM "Content-Length: +2\r\n\r\n{}"), NULL,
      W400 | WCLOSE, 1, 1, 0, NULL },
    { "Content-Length: 0x2", A, RAW(POSTM "Content-Length: 0x2\r\n\r\n{}"),
      NULL, W400 | WCLOSE, 1, 1, 0, NULL },
    { "Content-Length of 23 digits", A,
      RAW(POSTM "Content-Length: 99999999999999999999999\r\n\r\n{}"), NULL,
      W400 | W413 | WCLOSE, 1, 1, 0, NULL },
    { "Content-Length with a space before the colon", A,
      RAW(POSTM "Content-Length : 2\r\n\r\n{}"), NULL, W400 | WCLOSE, 1, 0, 0,
      NULL },
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
                "2\r\n{}\r\n0\r\n\r\n"),
      NULL, W501, 0, 1, 0, "chunked" },
    { "Transfer-Encoding: identity", A,
      RAW(POSTM "Transfer-Encoding: identity\r\n\r\n{}"), NULL, W501, 0, 1, 0,
      "chunked" },
    { "Transfer-Encoding: gzip, chunked", A,
      RAW(POSTM "Transfer-Encoding: gzip, chunked\r\n\r\n"
                "2\r\n{}\r\n0\r\n\r\n"),
      NULL, W501, 0, 1, 0, "chunked" },
    { "Transfer-Encoding: Chunked (any case) is read", A,
      RAW(POSTM "Transfer-Encoding: Chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"), NULL,
      W422, 0, 0, 0, NULL },
    /* RFC 9112 6.1: Transfer-Encoding on HTTP/1.0 is faulty framing; the
       server answers and closes, keep-alive or not. */
    { "Transfer-Encoding on HTTP/1.0", A,
      RAW("POST /v1/messages HTTP/1.0\r\n" JSONCT
          "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"),
      NULL, W400, 0, 1, 0, "HTTP/1.0" },
    { "Transfer-Encoding on HTTP/1.0 keep-alive, then a second request", A,
      RAW("POST /v1/verify HTTP/1.0\r\n" JSONCT "Connection: keep-alive\r\n"
          "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
          "GET /healthz HTTP/1.1\r\n" HOST "\r\n"),
      NULL, W400, 0, 1, 0, "HTTP/1.0" },
    { "two Transfer-Encoding: chunked, then a second request", A,
      RAW(POSTM "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked"
                "\r\n\r\n2\r\n{}\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\n" HOST
                "\r\n"),
      NULL, W400, 0, 1, 0, "more than one Transfer-Encoding" },
    { "obs-folded Transfer-Encoding (identity, then chunked)", A,
      RAW(POSTM "Transfer-Encoding: identity\r\n chunked\r\n\r\n"
                "2\r\n{}\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\n" HOST "\r\n"),
      NULL, W400, 0, 1, 0, "obs-fold" },
    { "obs-folded Content-Length", A,
      RAW(POSTM
          "Content-Length: 2\r\n 0\r\n\r\n{}GET /healthz HTTP/1.1\r\n" HOST
          "\r\n"),
      NULL, W400, 0, 1, 0, "obs-fold" },
    { "an obs-folded field on GET /healthz", A,
      RAW("GET /healthz HTTP/1.1\r\n" HOST "X-A: a\r\n\tb\r\n\r\n"
          "GET /healthz HTTP/1.1\r\n" HOST "\r\n"),
      NULL, W400, 0, 1, 0, "obs-fold" },
    /* A bare LF ends a line for MHD but not for a proxy that splits at
       CRLF: the two would see different fields. */
    { "a bare LF between two header fields", A,
      RAW("GET /healthz HTTP/1.1\r\n" HOST "X-A: a\nX-B: b\r\n\r\n"
          "GET /healthz HTTP/1.1\r\n" HOST "\r\n"),
      NULL, W400, 0, 1, 0, "bare LF" },
    { "a bare LF before Transfer-Encoding", A,
      RAW(POSTM "X-A: a\nTransfer-Encoding: chunked\r\n\r\n"
                "2\r\n{}\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\n" HOST "\r\n"),
      NULL, W400, 0, 1, 0, "bare LF" },
    { "a head of bare LF lines", A,
      RAW("GET /healthz HTTP/1.1\nHost: x\nX-A: a\n\n"
          "GET /healthz HTTP/1.1\r\n" HOST "\r\n"),
      NULL, W400, 0, 1, 0, "bare LF" },
    /* A GET carries no body: one declared is refused, not buffered. */
    { "GET /healthz with a Content-Length body", A,
      RAW("GET /healthz HTTP/1.1\r\n" HOST "Content-Length: 2\r\n\r\n{}"
          "GET /healthz HTTP/1.1\r\n" HOST "\r\n"),
      NULL, W400, 0, 1, 0, "no body" },
    { "GET /healthz with a chunked body", A,
      RAW("GET /healthz HTTP/1.1\r\n" HOST "Transfer-Encoding: chunked\r\n"
          "\r\n2\r\n{}\r\n0\r\n\r\n"),
      NULL, W400, 0, 1, 0, "no body" },
    { "GET /healthz with a 10 MB Content-Length, no key (B)", B,
      RAW("GET /healthz HTTP/1.1\r\n" HOST "Content-Length: 10485760\r\n"
          "\r\nxx"),
      NULL, W400, 0, 1, 0, "no body" },

    /* Chunks. */
    { "a chunk size that is not hex", A,
      RAW(POSTM "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"),
      NULL, W400 | WCLOSE, 1, 1, 0, NULL },
    { "a chunk size of 20 hex digits", A,
      RAW(POSTM "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n"
                "{}\r\n0\r\n\r\n"),
      NULL, W400 | W413 | WCLOSE, 1, 1, 0, NULL },
    { "a negative chunk size", A,
      RAW(POSTM "Transfer-Encoding: chunked\r\n\r\n-2\r\n{}\r\n0\r\n\r\n"),
      NULL, W400 | WCLOSE, 1, 1, 0, NULL },
    { "a chunk without its CRLF", A,
      RAW(POSTM "Transfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n"), NULL,
      W400 | WCLOSE, 1, 1, 0, NULL },
    { "a chunk extension", A,
      RAW(POSTM "Transfer-Encoding: chunked\r\n\r\n2;x=y\r\n{}\r\n0\r\n\r\n"),
      NULL, W422, 0, 0, 0, NULL },
    { "a trailer after the last chunk", A,
      RAW(POSTM "Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n"
                "X-Trailer: 1\r\n\r\n"),
      NULL, W422, 0, 0, 0, NULL },

    /* Request lines and heads. */
    { "a garbage request line", A, RAW("GARBAGE\r\n\r\n"), NULL, W400 | WCLOSE,
      1, 0, 0, NULL },
    { "tabs between the request line's parts", A,
      RAW("GET\t/healthz\tHTTP/1.1\r\n" HOST "\r\n"), NULL, W400 | WCLOSE, 1, 0,
      0, NULL },
    { "HTTP/9.9", A, RAW("GET /healthz HTTP/9.9\r\n" HOST "\r\n"), NULL,
      W400 | W505 | WCLOSE, 1, 0, 0, NULL },
    { "HTTP/2.0 in an HTTP/1 request line", A,
      RAW("GET /healthz HTTP/2.0\r\n" HOST "\r\n"), NULL, W400 | W505 | WCLOSE,
      1, 0, 0, NULL },
    { "no HTTP version", A, RAW("GET /healthz\r\n\r\n"), NULL, W400 | WCLOSE, 1,
      0, 0, NULL },
    { "the HTTP/2 preface", A, RAW("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), NULL,
      W400 | W404 | W505 | WCLOSE, 1, 0, 0, NULL },
    { "a TLS ClientHello", A,
      RAW("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"
          "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0"),
      NULL, W400 | WCLOSE, 1, 0, 0, NULL },
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
          "\"body\":\"nul\"}"),
      NULL, W400, 0, 0, 0, "NUL" },
    { "a raw NUL ending a GET route", A,
      RAW("GET /healthz\0 HTTP/1.1\r\n" HOST "\r\n"), NULL, W400, 0, 0, 0,
      "NUL" },
    { "a raw NUL in the query", A,
      RAW("GET /healthz?a\0b HTTP/1.1\r\n" HOST "\r\n"), NULL, W400, 0, 0, 0,
      "NUL" },
    { "a space inside the request target", A,
      RAW("GET /healthz x HTTP/1.1\r\n" HOST "\r\n"), NULL, W400, 0, 0, 0,
      "space" },
    { "two spaces around the request target", A,
      RAW("GET  /healthz  HTTP/1.1\r\n" HOST "\r\n"), NULL, W400, 0, 0, 0,
      "space" },
    { "a raw non-ASCII byte in the target", A,
      RAW("GET /healthz\xC3\xA9 HTTP/1.1\r\n" HOST "\r\n"), NULL, W400, 0, 0, 0,
      "non-ASCII" },
    { "a raw DEL in the target", A,
      RAW("GET /healthz\x7F HTTP/1.1\r\n" HOST "\r\n"), NULL, W400, 0, 0, 0,
      "control" },
    { "an 8,192-byte target (the limit)", A, NULL, 0, gen_target_8192, W404, 0,
      0, 0, "no such route" },
    { "an 8,193-byte target", A, NULL, 0, gen_target_8193, W414, 0, 0, 0,
      "8192" },
    { "a 40,000-byte URL (past MHD's pool: its page)", A, NULL, 0, gen_long_url,
      W414, 1, 0, 0, NULL },
    { "a 100,000-byte URL (past MHD's pool: its page)", A, NULL, 0,
      gen_target_100000, W414, 1, 0, 0, NULL },
    /* The head: at most 16,384 bytes and 100 fields. */
    { "a 40,000-byte header (past MHD's pool: its page)", A, NULL, 0,
      gen_long_header, W431, 1, 0, 0, NULL },
    { "a 17,000-byte head", A, NULL, 0, gen_head_17000, W431, 0, 0, 0,
      "16384" },
    { "100 header fields (the limit)", A, NULL, 0, gen_100_fields, W200, 0, 0,
      0, NULL },
    { "101 header fields", A, NULL, 0, gen_101_fields, W431, 0, 0, 0,
      "100 header fields" },
    { "300 header fields", A, NULL, 0, gen_300_fields, W431, 0, 0, 0,
      "100 header fields" },
    { "3,000 headers (past MHD's pool: its page)", A, NULL, 0, gen_many_headers,
      W431, 1, 0, 0, NULL },
    { "a 12,000-byte bearer key", B, NULL, 0, gen_long_bearer, W401, 0, 0, 0,
      NULL },
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
      RAW("POST /v1/messages HTTP/1.1\r\n" HOST
          "Content-Type: text/plain\r\n" JSONCT "Content-Length: 2\r\n\r\n{}"),
      NULL, W400 | W415 | W422, 0, 0, 0, NULL },
    { "two requests pipelined", A,
      RAW("GET /healthz HTTP/1.1\r\n" HOST "\r\nGET /healthz HTTP/1.1\r\n" HOST
          "Connection: close\r\n\r\n"),
      NULL, W200, 0, 0, 0, NULL },
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
    { "10 MB with Content-Length (max_body 64 KiB)", A, NULL, 0, gen_10mb_cl_a,
      W413, 0, 0, 0, NULL },
    { "10 MB chunked (max_body 64 KiB)", A, NULL, 0, gen_10mb_chunked_a,
      W413 | WCLOSE, 0, 0, 0, NULL },
    { "10 MB on HTTP/1.0 without Content-Length", A, NULL, 0, gen_10mb_http10_a,
      W400 | W413 | WCLOSE, 1, 0, 0, NULL },
    { "64 KiB + 1 with Content-Length", A, NULL, 0, gen_64k_plus_1_a, W413, 0,
      0, 0, NULL },
    { "10,000 recipients past max_body", A, NULL, 0, gen_10000_rcpt_cl_a, W413,
      0, 0, 0, NULL },
    { "11 MB with Content-Length (default max_body)", B, NULL, 0, gen_11mb_cl_b,
      W413, 0, 0, 0, NULL },
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
                   : o->closed  ? (unsigned)WCLOSE
                                : 0;
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
        snprintf(why, whylen, "HTTP %d is not a proper problem: %s", o->status,
                 pwhy);
    else if (c->detail != NULL && o->nresp > 0 && o->from_api &&
             problem_detail_lacks(o, c->detail))
        snprintf(why, whylen, "the detail does not say \"%s\": %.200s",
                 c->detail, o->body);
    else if (c->must_close && o->nresp > 1)
        snprintf(why, whylen,
                 "%d answers on one connection: a request was "
                 "smuggled",
                 o->nresp);
    else if (c->must_close && o->nresp > 0 && !o->closed)
        snprintf(why, whylen,
                 "answered HTTP %d but kept the connection "
                 "open (ambiguous framing: RFC 9112 6.3 says close)",
                 o->status);
    else
        return 0;
    return -1;
}


static void test_raw_table_answers_400_or_closes_and_never_crashes(void **state)
{
    struct fx *fx = *state;
    size_t n = sizeof RCASES / sizeof RCASES[0];
    struct rjob *jobs = calloc(n, sizeof *jobs);
    long long t0 = now_ms();
    assert_non_null(jobs);
    for (size_t i = 0; i < n; i++) {
        jobs[i].c = &RCASES[i];
        jobs[i].port = mpserve_port(fx->svc[RCASES[i].svc]);
        assert_int_equal(pthread_create(&jobs[i].tid, NULL, rjob_run, &jobs[i]),
                         0);
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
        fail_msg("%d of %zu raw cases failed; the first: %s", failed, n, first);
    print_message("  %zu raw cases in %lld ms\n", n, now_ms() - t0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_raw_table_answers_400_or_closes_and_never_crashes),
        cmocka_unit_test(test_afterwards_alive_delivering_counted_and_exits_0),
    };
    return hostile_run(tests, sizeof tests / sizeof tests[0]);
}
