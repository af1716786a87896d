/*
 * api/queue_metrics.c - the durable queue's lines of /metrics: messages by
 * status, the oldest due message's age, claims, retries, lease expiries,
 * idempotent replays, the message log's failed writes and, with a
 * webhook, its deliveries by result and its oldest undelivered event.
 *
 * Public (internal.h): api_queue_metrics, api_queue_finished (the
 * delivery loop's outcomes, which mailpool_messages_total adds),
 * api_set_webhook.
 *
 * Errors: api_queue_metrics returns NULL when out of memory.  Threads:
 * MHD's threads (api_set_webhook: any).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "server/delivery.h"
#include "webhook/webhook.h"

/* Appends k bytes of s to *buf of *len bytes; on failure frees *buf and
   sets it NULL (-1). */
static int cat_free(char **buf, size_t *len, const char *s, size_t k)
{
    char *nb = realloc(*buf, *len + k + 1);
    if (nb == NULL) {
        free(*buf);
        *buf = NULL;
        return -1;
    }
    memcpy(nb + *len, s, k);
    *len += k;
    nb[*len] = '\0';
    *buf = nb;
    return 0;
}

/* Appends printf-formatted text to *buf (NULL on failure stays NULL). */
__attribute__((format(printf, 3, 4))) static void mcat(char **buf, size_t *len,
                                                       const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (*buf == NULL || k < 0 || (size_t)k >= sizeof line ||
        cat_free(buf, len, line, (size_t)k) < 0)
        return;
}

void api_set_webhook(struct api *api, struct webhook *w)
{
    atomic_store(&api->webhook, w);
}

/* The webhook's lines of /metrics, when there is one. */
static void webhook_metrics(struct api *api, char **buf, size_t *len)
{
    struct webhook *w = atomic_load(&api->webhook);
    unsigned long long n[WEBHOOK_RESULT__COUNT];
    double age = 0;
    if (w == NULL)
        return;
    webhook_stats(w, n);
    if (queue_events_oldest(api->queue, api_wall_now(), &age) != QUEUE_OK)
        age = 0;
    mcat(buf, len,
         "# HELP mailpool_webhook_deliveries_total POSTs of "
         "delivery events, by result.\n# TYPE "
         "mailpool_webhook_deliveries_total counter\n");
    for (int i = 0; i < WEBHOOK_RESULT__COUNT; i++)
        mcat(buf, len,
             "mailpool_webhook_deliveries_total{result=\"%s\"} "
             "%llu\n",
             webhook_result_name((enum webhook_result)i), n[i]);
    mcat(buf, len,
         "# HELP mailpool_webhook_oldest_undelivered_seconds Age "
         "of the oldest delivery event still to be delivered.\n# TYPE "
         "mailpool_webhook_oldest_undelivered_seconds gauge\n"
         "mailpool_webhook_oldest_undelivered_seconds %.3f\n",
         age);
}

/* The delivery status a final queue state reports as (0: none; a
   cancelled message was never attempted). */
static const enum smtp_delivery status_of_state[QUEUE_STATE__COUNT] = {
    [QUEUE_SENT] = SMTP_DELIVERY_SENT,
    [QUEUE_PARTIAL] = SMTP_DELIVERY_PARTIAL,
    [QUEUE_REJECTED] = SMTP_DELIVERY_REJECTED,
    [QUEUE_FAILED] = SMTP_DELIVERY_FAILED,
    [QUEUE_UNKNOWN] = SMTP_DELIVERY_UNKNOWN,
};

/* queued[s]: the delivery loop's final outcomes by delivery status. */
void api_queue_finished(struct api *api,
                        unsigned long long queued[API_DELIVERY_SLOTS])
{
    struct delivery_stats ds;
    memset(queued, 0, API_DELIVERY_SLOTS * sizeof queued[0]);
    if (api->queue == NULL || api->delivery == NULL)
        return;
    delivery_stats(api->delivery, &ds);
    for (int q = 0; q < QUEUE_STATE__COUNT; q++)
        if (status_of_state[q] != SMTP_DELIVERY_NONE &&
            (unsigned)status_of_state[q] < API_DELIVERY_SLOTS)
            queued[status_of_state[q]] += ds.finished[q];
}

char *api_queue_metrics(struct api *api, size_t *len)
{
    unsigned long counts[QUEUE_STATE__COUNT];
    double age = 0;
    struct delivery_stats ds;
    char *buf = calloc(1, 1);
    *len = 0;
    if (api->queue == NULL || buf == NULL)
        return buf;
    if (queue_counts(api->queue, api_wall_now(), counts, &age) != QUEUE_OK)
        memset(counts, 0, sizeof counts);
    delivery_stats(api->delivery, &ds);
    mcat(&buf, len,
         "# HELP mailpool_queue_messages Messages in the durable "
         "queue, by status.\n# TYPE mailpool_queue_messages gauge\n");
    for (int i = 0; i < QUEUE_STATE__COUNT; i++)
        mcat(&buf, len, "mailpool_queue_messages{status=\"%s\"} %lu\n",
             queue_state_name((enum queue_state)i), counts[i]);
    mcat(&buf, len,
         "# HELP mailpool_queue_oldest_due_seconds Age of the "
         "oldest message due and waiting.\n# TYPE "
         "mailpool_queue_oldest_due_seconds gauge\n"
         "mailpool_queue_oldest_due_seconds %.3f\n",
         age);
    mcat(&buf, len,
         "# HELP mailpool_queue_claims_total Messages claimed for "
         "delivery.\n# TYPE mailpool_queue_claims_total counter\n"
         "mailpool_queue_claims_total %llu\n",
         ds.claims);
    mcat(&buf, len,
         "# HELP mailpool_queue_retries_total Attempts that ended "
         "in retry.\n# TYPE mailpool_queue_retries_total counter\n"
         "mailpool_queue_retries_total %llu\n",
         ds.retries);
    mcat(&buf, len,
         "# HELP mailpool_queue_lease_expiries_total Messages "
         "found sending at start (made unknown).\n# TYPE "
         "mailpool_queue_lease_expiries_total counter\n"
         "mailpool_queue_lease_expiries_total %lu\n",
         ds.recovered);
    mcat(&buf, len,
         "# HELP mailpool_idempotent_replays_total Answers "
         "replayed for a repeated Idempotency-Key.\n# TYPE "
         "mailpool_idempotent_replays_total counter\n"
         "mailpool_idempotent_replays_total %llu\n",
         (unsigned long long)atomic_load(&api->idem_replays));
    mcat(&buf, len,
         "# HELP mailpool_queue_log_sync_failures_total "
         "Synchronous sends whose record in the message log could not be "
         "written.\n# TYPE mailpool_queue_log_sync_failures_total counter\n"
         "mailpool_queue_log_sync_failures_total %llu\n",
         (unsigned long long)atomic_load(&api->log_failed));
    webhook_metrics(api, &buf, len);
    return buf;
}
