/*
 * http.c - the integration tests' HTTP client (see http.h).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>

#include "tests/support/http.h"

/* A body that libcurl reads in pieces (Transfer-Encoding: chunked). */
struct upload {
    const char *data;
    size_t len, off;
};

static size_t grow(char **buf, size_t *len, const char *data, size_t n)
{
    char *p = realloc(*buf, *len + n + 1);
    if (p == NULL)
        return 0;
    memcpy(p + *len, data, n);
    *len += n;
    p[*len] = '\0';
    *buf = p;
    return n;
}

static size_t on_body(char *d, size_t size, size_t n, void *ud)
{
    struct http_resp *r = ud;
    return grow(&r->body, &r->len, d, size * n);
}

static size_t on_header(char *d, size_t size, size_t n, void *ud)
{
    struct http_resp *r = ud;
    return grow(&r->hdrs, &r->hlen, d, size * n);
}

/* At most 500 bytes per call, so that the chunks are many. */
static size_t on_read(char *buf, size_t size, size_t n, void *ud)
{
    struct upload *u = ud;
    size_t want = size * n < 500 ? size * n : 500;
    if (want > u->len - u->off)
        want = u->len - u->off;
    memcpy(buf, u->data + u->off, want);
    u->off += want;
    return want;
}

void http_resp_free(struct http_resp *r)
{
    free(r->body);
    free(r->hdrs);
    memset(r, 0, sizeof *r);
}

/* ---- the response log ---- */

#define LOG_BODY_MAX (1024 * 1024)

void http_log_response(const char *method, const char *target, long status,
                       const char *hdrs, const char *body, size_t blen)
{
    const char *path = getenv("MAILPOOL_RESPONSE_LOG");
    if (path == NULL || *path == '\0')
        return;
    char *ct = http_header_value(hdrs, "Content-Type");
    char *rid = http_header_value(hdrs, "X-Request-Id");
    json_t *line = json_pack(
        "{s:s, s:s%, s:I, s:s?, s:b}", "method", method, "target", target,
        strlen(target) > 512 ? (size_t)512 : strlen(target), "status",
        (json_int_t)status, "content_type", ct, "request_id", rid != NULL);
    free(ct);
    free(rid);
    if (line == NULL)
        return;
    json_t *b = blen <= LOG_BODY_MAX ? json_stringn(body != NULL ? body : "",
                                                    body != NULL ? blen : 0)
                                     : NULL;
    if (b != NULL)
        json_object_set_new(line, "body", b);
    else
        json_object_set_new(
            line, "body_omitted",
            json_string(blen > LOG_BODY_MAX ? "too large" : "not UTF-8"));
    char *text = json_dumps(line, JSON_COMPACT);
    json_decref(line);
    if (text == NULL)
        return;
    size_t n = strlen(text);
    text[n] = '\n'; /* json_dumps' NUL becomes the line's end */
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
        ssize_t w = write(fd, text, n + 1);
        (void)w;
        close(fd);
    }
    free(text);
}

/* The target of a URL: from the first '/' after "scheme://host". */
static const char *url_target(const char *url)
{
    const char *p = strstr(url, "://");
    p = strchr(p != NULL ? p + 3 : url, '/');
    return p != NULL ? p : "/";
}

static void log_curl_answer(const char *method, const char *url,
                            const struct http_resp *r)
{
    if (getenv("MAILPOOL_RESPONSE_LOG") == NULL)
        return;
    http_log_response(method, url_target(url), r->status, r->hdrs, r->body,
                      r->len);
}

void http_log_raw(const char *req, size_t rlen, long status, const char *hdrs,
                  const char *body, size_t blen)
{
    char method[32], target[513];
    while (rlen > 0 && (*req == '\r' || *req == '\n')) { /* RFC 9112 2.2 */
        req++;
        rlen--;
    }
    const char *sp = memchr(req, ' ', rlen);
    if (getenv("MAILPOOL_RESPONSE_LOG") == NULL || sp == NULL ||
        (size_t)(sp - req) >= sizeof method)
        return;
    const char *t = sp + 1, *end = req + rlen;
    size_t tn = 0;
    while (t + tn < end && t[tn] != ' ' && t[tn] != '\r' && t[tn] != '\n' &&
           tn < sizeof target - 1)
        tn++;
    memcpy(method, req, (size_t)(sp - req));
    method[sp - req] = '\0';
    memcpy(target, t, tn);
    target[tn] = '\0';
    http_log_response(method, target, status, hdrs, body, blen);
}

int http_request(const char *method, const char *url,
                 const char *const *headers, const char *body, int chunked,
                 struct http_resp *r)
{
    return http_request_len(method, url, headers, body,
                            body != NULL ? strlen(body) : 0, chunked, r);
}

int http_request_len(const char *method, const char *url,
                     const char *const *headers, const char *body, size_t blen,
                     int chunked, struct http_resp *r)
{
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    struct upload up = { body, blen, 0 };
    memset(r, 0, sizeof *r);
    if (c == NULL) {
        snprintf(r->err, sizeof r->err, "curl_easy_init failed");
        return -1;
    }
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
        h = curl_slist_append(h, headers[i]);
    h = curl_slist_append(h, "Expect:");
    if (chunked)
        h = curl_slist_append(h, "Transfer-Encoding: chunked");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->err);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    if (chunked) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, &up);
    } else if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    }
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    else if (r->err[0] == '\0')
        snprintf(r->err, sizeof r->err, "%s", curl_easy_strerror(rc));
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (rc == CURLE_OK)
        log_curl_answer(method, url, r);
    return rc == CURLE_OK ? 0 : -1;
}

char *http_resp_header(const struct http_resp *r, const char *name)
{
    return http_header_value(r->hdrs, name);
}

char *http_header_value(const char *hdrs, const char *name)
{
    size_t nlen = strlen(name);
    char *found = NULL;
    for (const char *p = hdrs; p != NULL && *p != '\0';) {
        const char *eol = strstr(p, "\r\n");
        size_t n = eol != NULL ? (size_t)(eol - p) : strlen(p);
        if (n > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
            const char *v = p + nlen + 1;
            while (*v == ' ')
                v++;
            free(found);
            found = strndup(v, (size_t)(p + n - v));
        }
        p = eol != NULL ? eol + 2 : p + n;
    }
    return found;
}
