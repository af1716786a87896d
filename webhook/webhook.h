/*
 * webhook/webhook.h - delivery events POSTed to the configured webhook,
 * signed as Standard Webhooks do.
 *
 * The events come from the queue's outbox (queue/queue.h: every change of
 * a message to sent, partial, retry, rejected, failed, unknown or
 * cancelled writes one in the transaction of the change).  A few threads
 * claim the due ones with a lease, POST each to webhook.url (libcurl, no
 * redirects, HTTPS verified unless webhook.tls_verify is false) with the
 * headers webhook-id, webhook-timestamp and webhook-signature ("v1," and
 * the base64 HMAC-SHA256 of "id.timestamp.body" under the secret of
 * webhook.secret_file), and record the try: any 2xx is delivered; 410
 * stops the event's type (until the configuration changes); anything
 * else is tried again after the next wait of webhook.retry_schedule
 * (jitter added), and failed past its end.  At least once, in no
 * promised order: receivers deduplicate on webhook-id.
 *
 * Use: webhook_new (configuration and secret, before queue_open: the
 * queue needs webhook_event_states and webhook_config_text), then
 * webhook_start once the queue is open, webhook_stop, webhook_free.
 *
 * Errors: webhook_new and webhook_start return NULL / -1 with a sentence
 * naming the key or file.  Threads: webhook_stats may be called from any
 * thread; the rest from the thread that wires the service.
 */
#ifndef MAILPOOL_WEBHOOK_H
#define MAILPOOL_WEBHOOK_H

#include <stddef.h>

#include "config/config.h"
#include "queue/queue.h"

struct webhook;

/* The outcome of one POST, as /metrics counts them. */
enum webhook_result {
    WEBHOOK_DELIVERED = 0, /* 2xx */
    WEBHOOK_HTTP_ERROR,    /* another status (tried again) */
    WEBHOOK_NETWORK_ERROR, /* no answer: connect, TLS, timeout */
    WEBHOOK_GONE,          /* 410: the type is stopped */
    WEBHOOK_RESULT__COUNT
};
/* "delivered", "http_error", "network_error", "gone". */
const char *webhook_result_name(enum webhook_result r);

/* Reads cfg's webhook.* keys and the secret file: NULL with err set when
   one is wrong (a secret file readable by group or others is refused),
   else the caller's (webhook_free).  cfg must have webhook.url set and
   outlive the result. */
struct webhook *webhook_new(const struct cfg *cfg, char *err, size_t errlen);
/* The queue_opts.event_states of the configured types. */
unsigned webhook_event_states(const struct webhook *w);
/* The queue_opts.event_config: the URL and the types (borrowed). */
const char *webhook_config_text(const struct webhook *w);
/* Starts the delivery threads on q (borrowed, outliving the threads):
   0, or -1 with err. */
int webhook_start(struct webhook *w, struct queue *q, char *err, size_t errlen);
/* Stops and joins the threads (a POST under way finishes or times out;
   its event stays leased, and is tried again after the lease). */
void webhook_stop(struct webhook *w);
/* Frees w (stopped first).  NULL: no-op. */
void webhook_free(struct webhook *w);
/* POSTs so far by result. */
void webhook_stats(struct webhook *w,
                   unsigned long long out[WEBHOOK_RESULT__COUNT]);

#endif /* MAILPOOL_WEBHOOK_H */
