/*
 * webhook/post.c - one signed POST of an event body with libcurl.
 *
 * Public (webhook/internal.h): webhook_post_.  No redirect is followed
 * (a 3xx is an answer like any other non-2xx), only http and https,
 * the certificate of an https URL verified unless tls_verify is 0, the
 * whole exchange bounded by timeout_s.  The answer's body is read and
 * dropped.
 *
 * Errors: the HTTP status (100..599), or 0 with a sentence in err when no
 * answer came.  Threads: one easy handle per call; curl_global_init was
 * called by webhook_start before any thread.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

#include "webhook/internal.h"

/* Drops the answer's body. */
static size_t post_drop(char *p, size_t size, size_t n, void *ctx)
{
    (void)p;
    (void)ctx;
    return size * n;
}

/* The request's headers: JSON and the three of Standard Webhooks. */
static struct curl_slist *post_headers(const char *id, long long ts,
                                       const char *sig)
{
    char h[3][160];
    struct curl_slist *l = NULL, *t;
    snprintf(h[0], sizeof h[0], "webhook-id: %s", id);
    snprintf(h[1], sizeof h[1], "webhook-timestamp: %lld", ts);
    snprintf(h[2], sizeof h[2], "webhook-signature: %s", sig);
    const char *all[] = { "Content-Type: application/json",
                          "User-Agent: mailpool-webhook",
                          "Expect:",
                          h[0],
                          h[1],
                          h[2] };
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        t = curl_slist_append(l, all[i]);
        if (t == NULL) {
            curl_slist_free_all(l);
            return NULL;
        }
        l = t;
    }
    return l;
}

int webhook_post_(const struct webhook_post *p, char *err, size_t errlen)
{
    char ebuf[CURL_ERROR_SIZE] = "";
    long status = 0;
    CURL *c = curl_easy_init();
    struct curl_slist *h = post_headers(p->id, p->ts, p->sig);
    if (c == NULL || h == NULL) {
        snprintf(err, errlen, "out of memory");
        curl_slist_free_all(h);
        curl_easy_cleanup(c);
        return 0;
    }
    curl_easy_setopt(c, CURLOPT_URL, p->url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(p->timeout_s * 1000));
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, p->tls_verify ? 1L : 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, p->tls_verify ? 2L : 0L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, p->body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(p->body));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, post_drop);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ebuf);
    if (p->progress != NULL) {
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, p->progress);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, p->progress_ctx);
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    }
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    else
        snprintf(err, errlen, "%s", ebuf[0] ? ebuf : curl_easy_strerror(rc));
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return rc == CURLE_OK && status >= 100 && status <= 599 ? (int)status : 0;
}
