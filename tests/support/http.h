/*
 * http.h - a small HTTP client over libcurl for the integration tests.
 *
 * No assertions inside, so it may be called from any thread.  A response
 * owns its buffers: http_resp_free.
 */
#ifndef MAILPOOL_TESTS_HTTP_H
#define MAILPOOL_TESTS_HTTP_H

#include <stddef.h>
#include <curl/curl.h>

struct http_resp {
    long status;
    char *body; /* NUL-terminated, len bytes */
    size_t len;
    char *hdrs; /* the raw header block(s) */
    size_t hlen;
    char err[CURL_ERROR_SIZE]; /* why no answer came */
};

/* One request: extra headers NULL-ended (may be NULL), body NULL for none;
   chunked sends the body as Transfer-Encoding: chunked in 500-byte pieces.
   The path goes as is (no dot-segment folding).  0, or -1 with r->err set
   when no HTTP answer came. */
int http_request(const char *method, const char *url,
                 const char *const *headers, const char *body, int chunked,
                 struct http_resp *r);
/* The same with a body of blen bytes, which may hold NUL bytes. */
int http_request_len(const char *method, const char *url,
                     const char *const *headers, const char *body, size_t blen,
                     int chunked, struct http_resp *r);
/* The value of the last header of this name, copied; NULL if absent. */
char *http_resp_header(const struct http_resp *r, const char *name);
/* The same over a raw header block ("Name: value\r\n..."). */
char *http_header_value(const char *hdrs, const char *name);
void http_resp_free(struct http_resp *r);

/* The response log: when MAILPOOL_RESPONSE_LOG names a file (make test
   sets it), every answer the tests receive is appended to it as one JSON
   line {"method", "target", "status", "content_type", "request_id" (the
   answer had an X-Request-Id: the API's, not libmicrohttpd's own),
   "body"} (from hdrs, the header block; the body only when it is at most
   1 MiB of UTF-8; else "body_omitted": "too large" or "not UTF-8"), for
   tests/openapi_responses.py to check against api/openapi.json.  One
   write(2) a line on an O_APPEND file, so threads and processes may log
   at once.  http_request does it itself; http_log_raw is for answers read
   from a raw socket: req is the request as sent (its request line gives
   the method and target), hdrs the response's header block. */
void http_log_response(const char *method, const char *target, long status,
                       const char *hdrs, const char *body, size_t blen);
void http_log_raw(const char *req, size_t rlen, long status, const char *hdrs,
                  const char *body, size_t blen);

#endif
