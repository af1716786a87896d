/*
 * api/api.h - the HTTP JSON API over libmicrohttpd (the JSON shape of an
 * SMTP outcome, shared with the command line, is result/result_json.h).
 *
 * Threads: api_start/api_stop from the main thread; api_set_draining and
 * api_set_stopping from any thread.  The handlers run on MHD's internal thread pool and never
 * block on SMTP: they suspend the connection and a job's done callback
 * resumes it.
 */
#ifndef MAILPOOL_API_H
#define MAILPOOL_API_H

#include <jansson.h>
#include <smtpcore/smtp.h>
#include "config/config.h"
#include "server/pool.h"

struct api;

struct queue;
struct delivery;

/* Binds cfg->http.listen and starts serving; NULL with err set on failure.
   The asynchronous routes (Prefer: respond-async, message status, cancel,
   Idempotency-Key) use queue (NULL: they answer 503, and keys are not
   kept), and delivery (may be NULL) is kicked after each commit.  cfg,
   pool, queue and delivery are borrowed and must outlive the api. */
struct api *api_start(const struct cfg *cfg, struct pool *pool,
                      struct queue *queue, struct delivery *delivery, char *err,
                      size_t errlen);
/* The port actually bound (useful when listen asked for port 0). */
int api_port(const struct api *api);
/* While draining, /readyz answers 503 and new work gets 503 Retry-After. */
void api_set_draining(struct api *api, int draining);
/* From now on /readyz answers 503 "stopping" while work is still taken (the
   http.shutdown_delay before the drain). */
void api_set_stopping(struct api *api);
/* `mailpool healthcheck`: GET /healthz on cfg's http.listen (HTTPS with
   http.tls_cert_file); 0 when it answers 200, else -1 (api/healthcheck.c). */
int api_healthcheck(const struct cfg *cfg);
/* The webhook whose deliveries /metrics counts (borrowed, outliving the
   api; NULL: none).  Any thread (api/queue_metrics.c). */
struct webhook;
void api_set_webhook(struct api *api, struct webhook *w);
/* Stops the daemon (after in-flight requests were answered) and frees. */
void api_stop(struct api *api);

#endif /* MAILPOOL_API_H */
