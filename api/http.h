/*
 * api/http.h - what daemon.c, request.c and head.c share besides
 * internal.h: the size limits of a request head, MHD's context of a
 * request (struct api_slot), the two callbacks that see the request target
 * before libmicrohttpd decodes it, and the first call's checks.
 *
 * libmicrohttpd answers a head that does not fit in a connection's memory
 * pool itself, with its own HTML page.  The limits below are well inside
 * the pool, so that a head past them still reaches api_on_access and is
 * answered 414 or 431 as application/problem+json; only a head that does
 * not fit in API_HTTP_POOL at all gets libmicrohttpd's page (a request
 * line of more than about 24 KB, or more than about 336 fields).  The pool
 * is 24 KiB: it is zeroed when a kept-alive connection starts its next
 * request, so each connection keeps it resident (24.6 KiB of RSS each,
 * 240 MiB for 10,000; libmicrohttpd's default of 32 KiB kept 32.6 KiB
 * each) and each request pays for zeroing it (docs/BENCHMARKS.md).
 */
#ifndef MAILPOOL_API_HTTP_H
#define MAILPOOL_API_HTTP_H

#include <stddef.h>
#include <microhttpd.h>

#define API_HTTP_POOL (24 * 1024) /* MHD_OPTION_CONNECTION_MEMORY_LIMIT */
#define API_HTTP_MAX_TARGET 8192  /* request-target bytes; past it 414 */
#define API_HTTP_MAX_HEAD 16384   /* request line and header fields; 431 */
#define API_HTTP_MAX_FIELDS 100   /* header fields; past it 431 */

#define API_HTTP_FIRST_BODY 16384 /* first allocation for a body */
#define API_HTTP_OVER_BUDGET \
    "too many request bytes are held (http.max_inflight); " \
    "retry later"

struct api_req;

/* MHD's context of one request (*con_cls), made by api_on_uri. */
struct api_slot {
    struct api_req *req; /* NULL until the access handler's first call */
    const char *uri;     /* the target as it came, in MHD's read buffer
                            (then decoded there) */
    size_t urilen;       /* its bytes up to the first NUL */
    int bad_byte;        /* a control, space, DEL or 8-bit byte */
};

/* MHD_OPTION_URI_LOG_CALLBACK (cls: struct api *): notes the request
   target as it came, before it is split and decoded.  Returns the
   request's MHD context (*con_cls), freed by api_on_completed; NULL when
   out of memory (the request is then dropped). */
void *api_on_uri(void *cls, const char *uri, struct MHD_Connection *c);

/* MHD_OPTION_UNESCAPE_CALLBACK: decodes, in place, the percent-escapes of
   unreserved characters only (RFC 3986 2.3: ALPHA, DIGIT, "-", ".", "_",
   "~"), which name the same resource; every other escape ("%2F", "%00",
   "%3F", ...) stays as it is, so it matches no route.  Returns the new
   length. */
size_t api_unescape(void *cls, struct MHD_Connection *c, char *s);

/* head.c: the access handler's first call of a request: the target, the
   head, framing, route, method, key and (POST) the body's declared type
   and length; a refusal is queued here.  MHD_YES to go on reading. */
enum MHD_Result api_head_first(struct api_req *req, struct MHD_Connection *c,
                               const struct api_slot *s, const char *url,
                               const char *version);

/* request.c: charges req up to need body bytes against http.max_inflight;
   0, or -1 when that would pass the budget (nothing charged then). */
int api_req_charge(struct api_req *req, size_t need);

#endif /* MAILPOOL_API_HTTP_H */
