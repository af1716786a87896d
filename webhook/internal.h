/*
 * webhook/internal.h - what the files of webhook/ share: the payload
 * (payload.c), the secret and the signature (sign.c), one POST (post.c).
 * Internal to webhook/.
 */
#ifndef MAILPOOL_WEBHOOK_INTERNAL_H
#define MAILPOOL_WEBHOOK_INTERNAL_H

#include <curl/curl.h>

#include "webhook/webhook.h"

/* The JSON body of ev (caller frees); NULL when out of memory. */
char *webhook_payload_(const struct queue_event *ev);
/* The secret of the file at path as the HMAC key: whsec_<base64>
   decoded, else the line's bytes as they are; 0 with *key (caller frees
   after wiping) and *keylen, or -1 with err. */
int webhook_secret_load_(const char *path, unsigned char **key, size_t *keylen,
                         char *err, size_t errlen);
/* "v1,<base64 HMAC-SHA256 of id.timestamp.body>" into out; 0 or -1. */
int webhook_sign_(const unsigned char *key, size_t keylen, const char *id,
                  long long ts, const char *body, char *out, size_t outlen);

/* One POST of an event; borrowed. */
struct webhook_post {
    const char *url;
    const char *id;  /* webhook-id: the event's id */
    long long ts;    /* webhook-timestamp: Unix seconds */
    const char *sig; /* webhook-signature */
    const char *body;
    int timeout_s;
    int tls_verify;
    /* Called during the POST; nonzero aborts it (the service stops). */
    int (*progress)(void *ctx, curl_off_t, curl_off_t, curl_off_t, curl_off_t);
    void *progress_ctx;
};
/* POSTs p: the HTTP status, or 0 with err set when no answer came. */
int webhook_post_(const struct webhook_post *p, char *err, size_t errlen);

#endif /* MAILPOOL_WEBHOOK_INTERNAL_H */
