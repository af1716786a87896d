/*
 * api/head.c - a request's head, judged on the access handler's first
 * call before any body is read: the request target as it came (a NUL,
 * control, space or non-ASCII byte: 400; longer than API_HTTP_MAX_TARGET:
 * 414), the head's size and fields (431), ambiguous framing (400 with
 * Connection: close), transfer codings (501), the route (404) and method
 * (405 with Allow, from the route table), a body on GET or HEAD (400),
 * the bearer key (401), and for a POST draining (503), Prefer and
 * Idempotency-Key (async.c), Content-Type (415) and Content-Length (413,
 * or 503 past http.max_inflight).  Also the percent-decoding MHD is
 * given (only unreserved escapes).
 *
 * Public (http.h): api_head_first, api_unescape.
 *
 * Errors: each refusal is queued as a problem document; MHD then closes
 * the connection, so nothing after it is read as a second request.
 * Threads: MHD's threads.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "api/http.h"
#include "api/internal.h"
#include "api/route.h"

#define MAX_TOKEN 4096 /* bytes of a bearer key we look at */


/* 1 for a character RFC 3986 calls unreserved. */
static int is_unreserved(int ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
           (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' ||
           ch == '~';
}

/* The value of a hex digit, or -1. */
static int hex_value(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

size_t api_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    char *w = s;
    (void)cls;
    (void)c;
    for (const char *r = s; *r != '\0'; r++) {
        int hi = r[0] == '%' ? hex_value(r[1]) : -1;
        int lo = hi >= 0 ? hex_value(r[2]) : -1;
        if (lo >= 0 && is_unreserved(hi * 16 + lo)) {
            *w++ = (char)(hi * 16 + lo);
            r += 2;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

/* 1 when a NUL byte cut the target short.  MHD 0.9 splits the request
   line in place: the version starts one byte after the whole target, and
   url is where the URI log callback saw the target begin.  A version
   further on than the C string that callback measured means a NUL inside.
   Judged only when url is that same place and the distance fits in the
   head (any other layout: 0). */
static int target_cut(const struct api_slot *s, const char *url,
                      const char *version, size_t head)
{
    uintptr_t u = (uintptr_t)s->uri, v = (uintptr_t)version;
    if (url != s->uri || version == NULL || v <= u || v - u > head)
        return 0;
    return v - u > s->urilen + 1;
}

/* ---- Checks made on the first call, before any body is read ---- */

/* Constant-time equality for a key of length alen (leaks only alen). */
static int key_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    volatile unsigned char d = (unsigned char)(alen != blen);
    for (size_t i = 0; i < alen; i++)
        d |= (unsigned char)(a[i] ^ (blen > 0 ? b[i % blen] : 0));
    return d == 0;
}

/* 0 when no keys are configured or the bearer key matches one; else
   queues a 401 and returns -1 (MHD_NO in *ret when that failed too). */
static int check_auth(struct api_req *req, struct MHD_Connection *c,
                      enum MHD_Result *ret)
{
    struct api *api = req->api;
    const char *h, *tok;
    int ok = 0;
    if (api->nkeys == 0)
        return 0;
    h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0) {
        *ret = api_reply_problem(req, c, 401,
                                 "a bearer key is required "
                                 "(Authorization: Bearer KEY)",
                                 NULL, "WWW-Authenticate",
                                 "Bearer realm=\"mailpool\"");
        return -1;
    }
    for (tok = h + 7; *tok == ' ' || *tok == '\t'; tok++)
        ;
    size_t tlen = strnlen(tok, MAX_TOKEN + 1);
    while (tlen > 0 && (tok[tlen - 1] == ' ' || tok[tlen - 1] == '\t'))
        tlen--;
    for (size_t i = 0; i < api->nkeys; i++) { /* no early exit */
        int eq = key_equal(api->keys[i], api->keylens[i], tok, tlen);
        ok |= eq;
        req->key_index |= eq ? (int)i + 1 : 0;
    }
    if (ok)
        return 0;
    *ret = api_reply_problem(req, c, 401, "the bearer key is not valid", NULL,
                             "WWW-Authenticate",
                             "Bearer realm=\"mailpool\", "
                             "error=\"invalid_token\"");
    return -1;
}

/* 1 for "application/json" with at most a "charset=utf-8" parameter
   (other parameters are ignored). */
static int is_json_type(const char *ct)
{
    static const char type[] = "application/json";
    if (ct == NULL)
        return 0;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    if (strncasecmp(ct, type, sizeof type - 1) != 0)
        return 0;
    ct += sizeof type - 1;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    while (*ct == ';') {
        const char *p = ct + 1, *end;
        while (*p == ' ' || *p == '\t')
            p++;
        end = strchr(p, ';');
        size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
        while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        if (n >= 8 && strncasecmp(p, "charset=", 8) == 0) {
            const char *v = p + 8;
            size_t vn = n - 8;
            if (vn >= 2 && v[0] == '"' && v[vn - 1] == '"') {
                v++;
                vn -= 2;
            }
            if (!(vn == 5 && strncasecmp(v, "utf-8", 5) == 0))
                return 0;
        }
        ct = p + n;
        while (*ct == ' ' || *ct == '\t')
            ct++;
    }
    return *ct == '\0';
}

/* Checks a POST before its body: auth, draining, media type, length. */
static enum MHD_Result first_post(struct api_req *req, struct MHD_Connection *c)
{
    struct api *api = req->api;
    enum MHD_Result ret = MHD_YES;
    const char *cl;
    if (check_auth(req, c, &ret) < 0)
        return ret;
    if (atomic_load(&api->draining))
        return api_reply_problem(req, c, 503, "the service is draining", NULL,
                                 "Retry-After", "1");
    if (api_async_head(req, c, &ret) < 0)
        return ret;
    if (req->route != API_ROUTE_CANCEL &&
        !is_json_type(
            MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type")))
        return api_reply_problem(req, c, 415,
                                 "the body must be application/json "
                                 "(charset utf-8)",
                                 NULL, NULL, NULL);
    cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
    if (cl != NULL) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno == ERANGE || n > (unsigned long long)api->cfg->http.max_body)
            return api_reply_problem(req, c, 413,
                                     "the body is larger than http.max_body",
                                     NULL, NULL, NULL);
        /* Only the first buffer is charged now: a declared length is no
           reservation, the budget counts bytes as they are held. */
        if (api_req_charge(req, n < API_HTTP_FIRST_BODY
                                    ? (size_t)n
                                    : API_HTTP_FIRST_BODY) < 0)
            return api_reply_problem(req, c, 503, API_HTTP_OVER_BUDGET, NULL,
                                     "Retry-After", "1");
        if (end != cl && n > 0) {
            req->cap = n < API_HTTP_FIRST_BODY ? (size_t)n
                                               : API_HTTP_FIRST_BODY;
            req->expect = (size_t)n;
        }
    }
    return MHD_YES;
}

/* The header fields of a request, and its framing fields; lo..hi is the
   head in MHD's read buffer (for the bare LF check). */
struct framing {
    unsigned fields, content_length, transfer_encoding, not_chunked, bad_name,
        bare_lf, body_declared, folded;
    const char *lo, *hi;
};

/* 1 when the line holding s (in MHD's read buffer, lo..hi) ended with a
   bare LF.  MHD 0.9 splits the head in place: a CRLF becomes two NULs, a
   lone LF one NUL directly followed by the next line. */
static int ends_bare_lf(const struct framing *f, const char *s)
{
    size_t n;
    if (s == NULL || s < f->lo || s >= f->hi)
        return 0;
    n = strnlen(s, (size_t)(f->hi - s));
    return s + n + 1 < f->hi && s[n + 1] != '\0';
}

/* MHD_get_connection_values callback: counts the fields. */
static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind,
                                     const char *key, const char *value)
{
    struct framing *f = cls;
    (void)kind;
    f->fields++;
    if (strpbrk(key, " \t") != NULL) { /* "Name : v" (RFC 9112 5.1) */
        f->bad_name++;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        f->content_length++;
        f->body_declared += value != NULL && strcmp(value, "0") != 0;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        f->transfer_encoding++;
        f->body_declared++;
        f->not_chunked += value == NULL || strcasecmp(value, "chunked") != 0;
    }
    f->bare_lf += ends_bare_lf(f, value);
    f->folded += key < f->lo || key >= f->hi; /* MHD moved it: obs-fold */
    return MHD_YES;
}

/* The request target and head against what the API reads (RFC 9112
   3.2: a target is visible ASCII; http.h: the limits).  0, or -1 with
   the answer queued and its result in *ret. */
static int check_head(struct api_req *req, struct MHD_Connection *c,
                      const struct api_slot *s, const char *url,
                      const char *version, unsigned fields,
                      enum MHD_Result *ret)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
        c, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    size_t head = ci != NULL ? ci->header_size : 0;
    char detail[160];
    if (s->bad_byte || target_cut(s, url, version, head)) {
        *ret = api_reply_problem(req, c, 400,
                                 "the request target holds a NUL, a "
                                 "control character, a space or a "
                                 "non-ASCII byte",
                                 NULL, NULL, NULL);
        return -1;
    }
    if (s->urilen > API_HTTP_MAX_TARGET) {
        snprintf(detail, sizeof detail,
                 "the request target is longer "
                 "than %d bytes",
                 API_HTTP_MAX_TARGET);
        *ret = api_reply_problem(req, c, 414, detail, NULL, NULL, NULL);
        return -1;
    }
    if (head > API_HTTP_MAX_HEAD || fields > API_HTTP_MAX_FIELDS) {
        snprintf(detail, sizeof detail,
                 "the request head is larger than "
                 "%d bytes or has more than %d header fields",
                 API_HTTP_MAX_HEAD, API_HTTP_MAX_FIELDS);
        *ret = api_reply_problem(req, c, 431, detail, NULL, NULL, NULL);
        return -1;
    }
    return 0;
}

/* The size of the request head MHD read; 0 if unknown. */
static size_t head_size(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(
        c, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    return ci != NULL ? ci->header_size : 0;
}

/* Why a head's framing could be read two ways (request smuggling), or
   NULL: whitespace before a colon (RFC 9112 5.1), Content-Length with
   Transfer-Encoding or twice (6.3), Transfer-Encoding on HTTP/1.0 (6.1),
   on two lines, a line ended by a bare LF (2.2), or a field folded onto
   the next line (5.2).  MHD 0.9.75 appends a continuation line to the
   field's name, in a copy outside the head: a name found there was
   folded. */
static const char *smuggling(const struct framing *f, const char *version)
{
    if (f->bad_name > 0)
        return "whitespace in a header field name";
    if (f->content_length > 1 ||
        (f->content_length > 0 && f->transfer_encoding > 0))
        return "ambiguous message framing: Content-Length with "
               "Transfer-Encoding, or more than one Content-Length";
    if (f->transfer_encoding > 0 && version != NULL &&
        strcmp(version, MHD_HTTP_VERSION_1_0) == 0)
        return "Transfer-Encoding on an HTTP/1.0 request";
    if (f->transfer_encoding > 1)
        return "more than one Transfer-Encoding field";
    if (f->bare_lf > 0)
        return "a line of the request head ends in a bare LF";
    if (f->folded > 0)
        return "a header field continued on the next line (obs-fold)";
    return NULL;
}

/* The first call of a request: the target and head, framing, route,
   method, then the POST checks.  Ambiguous framing (RFC 9112 6.3:
   Content-Length beside Transfer-Encoding, or two Content-Lengths; 5.1:
   whitespace between a field name and its colon) is a 400 before anything
   else; a transfer coding other than chunked, which MHD would neither
   refuse nor read, a 501 (6.1).  Answered on the first call, the
   connection is then closed, so nothing after it can be read as a second
   request. */
enum MHD_Result api_head_first(struct api_req *req, struct MHD_Connection *c,
                               const struct api_slot *s, const char *url,
                               const char *version)
{
    int m;
    char allow[32];
    enum MHD_Result ret = MHD_YES;
    const char *why;
    struct framing f = { 0 };
    f.lo = s->uri;
    f.hi = s->uri + head_size(c);
    f.bare_lf = ends_bare_lf(&f, version);
    MHD_get_connection_values(c, MHD_HEADER_KIND, count_framing, &f);
    if (check_head(req, c, s, url, version, f.fields, &ret) < 0)
        return ret;
    why = smuggling(&f, version);
    if (why != NULL)
        return api_reply_problem(req, c, 400, why, NULL, "Connection", "close");
    if (f.not_chunked > 0)
        return api_reply_problem(req, c, 501,
                                 "Transfer-Encoding other than chunked is "
                                 "not supported",
                                 NULL, NULL, NULL);
    if (req->route == API_ROUTE_UNMATCHED)
        return api_reply_problem(
            req, c, 404,
            strstr(url, "%00") != NULL
                ? "no such route (no route holds an encoded "
                  "NUL, %00)"
                : "no such route",
            NULL, NULL, NULL);
    m = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0
            ? API_M_GET
        : strcmp(req->method, "POST") == 0 ? API_M_POST
                                           : 0;
    if ((api_route_methods(req->route) & m) == 0) {
        api_route_allow(req->route, allow, sizeof allow);
        return api_reply_problem(req, c, 405,
                                 "method not allowed on this route", NULL,
                                 "Allow", allow);
    }
    if (m == API_M_GET && f.body_declared > 0)
        return api_reply_problem(req, c, 400,
                                 "a GET or HEAD request "
                                 "carries no body",
                                 NULL, "Connection", "close");
    if (m == API_M_GET &&
        (req->route == API_ROUTE_MESSAGES || req->route == API_ROUTE_MESSAGE) &&
        check_auth(req, c, &ret) < 0)
        return ret;     /* the queue's messages: keys only */
    if (m == API_M_GET) /* answered on the next call: MHD */
        return MHD_YES; /* closes after a first-call answer */
    return first_post(req, c);
}
