/*
 * webhook/webhook.c - the webhook's configuration and its delivery
 * threads (see webhook/webhook.h for what is sent and the rules).
 *
 * Public: webhook_new, webhook_event_states, webhook_config_text,
 * webhook_start, webhook_stop, webhook_free, webhook_stats,
 * webhook_result_name.
 *
 * Each of WEBHOOK_THREADS threads claims one due event at a time with a
 * lease of webhook.timeout + WEBHOOK_LEASE_EXTRA_S seconds (another
 * thread, or replica, skips it meanwhile; a process killed during the
 * POST leaves it to be tried again once the lease ends), POSTs it and
 * records the try (queue_event_result); with nothing due it waits
 * WEBHOOK_POLL_MS.  So a slow receiver holds at most these threads, never
 * the sending of mail, which does not wait for events.
 *
 * Errors: webhook_new names the key or file; a try that failed is
 * recorded with the event (GET /v1/messages/{id}) and logged.
 * Threads: w->mu guards stop; the counters are atomic; the rest is fixed
 * once webhook_start returns.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <curl/curl.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "util/log.h"
#include "webhook/internal.h"

#define WEBHOOK_THREADS 4
#define WEBHOOK_POLL_MS 500
#define WEBHOOK_LEASE_EXTRA_S 30.0
#define WEBHOOK_SCHED_MAX 32
#define WEBHOOK_JITTER 0.1 /* up to 10% added to each wait */

struct webhook {
    const struct cfg *cfg; /* borrowed */
    unsigned char *key;    /* the HMAC key, wiped at free */
    size_t keylen;
    unsigned states;                 /* bits of the types sent */
    char *config;                    /* "URL states": queue_opts */
    double sched[WEBHOOK_SCHED_MAX]; /* seconds before retry i+1 */
    size_t nsched;
    struct queue *q; /* set by webhook_start */
    pthread_t th[WEBHOOK_THREADS];
    int nth;
    int curl_on; /* curl_global_init was called */
    pthread_mutex_t mu;
    pthread_cond_t cv;   /* stop was set */
    int stop;            /* guarded by mu */
    atomic_int stopping; /* the same, for curl's callback */
    atomic_ullong counts[WEBHOOK_RESULT__COUNT];
};

static const char *const result_names[WEBHOOK_RESULT__COUNT] = {
    "delivered",
    "http_error",
    "network_error",
    "gone",
};

const char *webhook_result_name(enum webhook_result r)
{
    return (int)r >= 0 && r < WEBHOOK_RESULT__COUNT ? result_names[r] : "?";
}

/* ---- configuration ---- */

/* The message state whose event type is the n bytes at name, or -1. */
static int type_state(const char *name, size_t n)
{
    for (int s = 0; s < QUEUE_STATE__COUNT; s++) {
        const char *t = queue_event_type((enum queue_state)s);
        if (t != NULL && strlen(t) == n && strncmp(t, name, n) == 0)
            return s;
    }
    return -1;
}

/* webhook.events into w->states (unset: every type): 0 or -1 with err. */
static int parse_events(struct webhook *w, const char *list, char *err,
                        size_t errlen)
{
    w->states = 0;
    for (int s = 0; list == NULL && s < QUEUE_STATE__COUNT; s++)
        if (queue_event_type((enum queue_state)s) != NULL)
            w->states |= 1u << s;
    for (const char *p = list; p != NULL && *p != '\0';) {
        p += strspn(p, " \t");
        size_t n = strcspn(p, ",");
        size_t k = n;
        while (k > 0 && (p[k - 1] == ' ' || p[k - 1] == '\t'))
            k--;
        int s = type_state(p, k);
        if (s < 0) {
            snprintf(err, errlen,
                     "webhook.events: unknown event type "
                     "\"%.*s\" (message.sent, message.partial, "
                     "message.deferred, message.rejected, message.failed, "
                     "message.unknown, message.cancelled)",
                     (int)k, p);
            return -1;
        }
        w->states |= 1u << s;
        p += n;
        p += *p == ',';
    }
    if (w->states != 0)
        return 0;
    snprintf(err, errlen, "webhook.events: names no event type");
    return -1;
}

/* One wait ("500ms", "5s", "5m", "2h"; no unit: seconds): 0 or -1. */
static int parse_wait(const char *p, size_t n, double *out)
{
    char buf[32], *end;
    if (n == 0 || n >= sizeof buf)
        return -1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    double v = strtod(buf, &end);
    double unit = strcmp(end, "ms") == 0                  ? 0.001
                  : strcmp(end, "s") == 0 || *end == '\0' ? 1
                  : strcmp(end, "m") == 0                 ? 60
                  : strcmp(end, "h") == 0                 ? 3600
                                                          : -1;
    if (end == buf || unit < 0 || !(v >= 0) || v * unit > 30 * 86400.0)
        return -1;
    *out = v * unit;
    return 0;
}

/* webhook.retry_schedule into w->sched: 0 or -1 with err. */
static int parse_schedule(struct webhook *w, const char *list, char *err,
                          size_t errlen)
{
    w->nsched = 0;
    for (const char *p = list; *p != '\0';) {
        p += strspn(p, " ");
        size_t n = strcspn(p, ", ");
        if (w->nsched == WEBHOOK_SCHED_MAX ||
            parse_wait(p, n, &w->sched[w->nsched]) < 0) {
            snprintf(err, errlen,
                     "webhook.retry_schedule: \"%.*s\" is not "
                     "a wait (5s, 5m, 2h, 500ms; %d at most)",
                     (int)n, p, WEBHOOK_SCHED_MAX);
            return -1;
        }
        w->nsched++;
        p += n;
        p += strspn(p, " ");
        p += *p == ',';
    }
    return 0;
}

/* Checks webhook.url and builds w->config, "<SHA-256 of the URL in hex>
   <states>": the queue stores it, and a URL may carry a token, so the
   database holds only its digest.  0 or -1 with err. */
static int parse_url(struct webhook *w, const char *url, char *err,
                     size_t errlen)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[32];
    char digest[2 * sizeof md + 1];
    if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0) {
        snprintf(err, errlen,
                 "webhook.url: must be an http:// or https:// "
                 "URL");
        return -1;
    }
    size_t len = sizeof digest + 16;
    w->config = malloc(len);
    if (w->config == NULL ||
        gnutls_hash_fast(GNUTLS_DIG_SHA256, url, strlen(url), md) < 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < sizeof md; i++) {
        digest[2 * i] = hex[md[i] >> 4];
        digest[2 * i + 1] = hex[md[i] & 15];
    }
    digest[2 * sizeof md] = '\0';
    snprintf(w->config, len, "%s %u", digest, w->states);
    return 0;
}

struct webhook *webhook_new(const struct cfg *cfg, char *err, size_t errlen)
{
    struct webhook *w = calloc(1, sizeof *w);
    if (w == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->cfg = cfg;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    if (cfg->webhook.secret_file == NULL) {
        snprintf(err, errlen,
                 "webhook.secret_file: must be set with "
                 "webhook.url");
    } else if (parse_events(w, cfg->webhook.events, err, errlen) == 0 &&
               parse_schedule(w, cfg->webhook.retry_schedule, err, errlen) ==
                   0 &&
               parse_url(w, cfg->webhook.url, err, errlen) == 0 &&
               webhook_secret_load_(cfg->webhook.secret_file, &w->key,
                                    &w->keylen, err, errlen) == 0) {
        return w;
    }
    webhook_free(w);
    return NULL;
}

unsigned webhook_event_states(const struct webhook *w)
{
    return w->states;
}

const char *webhook_config_text(const struct webhook *w)
{
    return w->config;
}

/* ---- delivery ---- */

/* Wall-clock Unix seconds. */
static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A random factor in [1, 1 + WEBHOOK_JITTER). */
static double jitter(void)
{
    unsigned r = 0;
    if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
        r = 0;
    return 1 + WEBHOOK_JITTER * ((double)r / 4294967296.0);
}

/* Waits ms milliseconds or until stop; 1 when stopping. */
static int nap(struct webhook *w, int ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->mu);
    while (!w->stop && pthread_cond_timedwait(&w->cv, &w->mu, &ts) == 0)
        ;
    int stop = w->stop;
    pthread_mutex_unlock(&w->mu);
    return stop;
}

/* Logs a try that did not deliver. */
static void log_try(const struct queue_event *ev, int status, const char *err,
                    enum queue_event_state st)
{
    struct log_field f[] = {
        LOG_STR("event", ev->id),
        LOG_STR("type", queue_event_type(ev->state)),
        LOG_STR("message", ev->message),
        LOG_NUM("try", ev->tries + 1),
        status > 0 ? LOG_NUM("http_status", status) : LOG_STR("error", err),
        LOG_STR("now", queue_event_state_name(st)),
    };
    log_event_num(st == QUEUE_EV_PENDING ? LOG_INFO : LOG_WARN,
                  "webhook_not_delivered", f, sizeof f / sizeof f[0]);
}

/* Records the try of ev that got status (0: none, err says why). */
static void record(struct webhook *w, const struct queue_event *ev, int status,
                   const char *err)
{
    enum webhook_result r = WEBHOOK_DELIVERED;
    enum queue_event_state st = QUEUE_EV_DELIVERED;
    double now = wall_now(), next = now;
    if (status == 410) {
        r = WEBHOOK_GONE;
        st = QUEUE_EV_STOPPED;
    } else if (status < 200 || status > 299) {
        size_t tried = (size_t)ev->tries + 1;
        r = status > 0 ? WEBHOOK_HTTP_ERROR : WEBHOOK_NETWORK_ERROR;
        st = tried > w->nsched ? QUEUE_EV_FAILED : QUEUE_EV_PENDING;
        if (st == QUEUE_EV_PENDING)
            next = now + w->sched[tried - 1] * jitter();
    }
    atomic_fetch_add(&w->counts[r], 1);
    if (r != WEBHOOK_DELIVERED)
        log_try(ev, status, err, st);
    if (queue_event_result(w->q, ev->id, now, status, status > 0 ? "" : err, st,
                           next) != QUEUE_OK)
        log_event(LOG_WARN, "webhook_record_failed", "event", ev->id,
                  (const char *)NULL);
}

/* Aborts a POST under way when the service stops. */
static int post_progress(void *ctx, curl_off_t a, curl_off_t b, curl_off_t c,
                         curl_off_t d)
{
    struct webhook *w = ctx;
    (void)a;
    (void)b;
    (void)c;
    (void)d;
    return atomic_load(&w->stopping);
}

/* Signs and POSTs ev, then records the try (not when stopped meanwhile:
   the event stays leased, tried again after the lease). */
static void deliver(struct webhook *w, const struct queue_event *ev)
{
    char sig[128], err[CURL_ERROR_SIZE + 64] = "";
    long long ts = (long long)time(NULL);
    char *body = webhook_payload_(ev);
    int status = 0;
    if (body == NULL) {
        snprintf(err, sizeof err, "the event's body could not be built");
    } else if (webhook_sign_(w->key, w->keylen, ev->id, ts, body, sig,
                             sizeof sig) < 0) {
        snprintf(err, sizeof err, "the event could not be signed");
    } else {
        struct webhook_post p = {
            .url = w->cfg->webhook.url,
            .id = ev->id,
            .ts = ts,
            .sig = sig,
            .body = body,
            .timeout_s = w->cfg->webhook.timeout,
            .tls_verify = w->cfg->webhook.tls_verify,
            .progress = post_progress,
            .progress_ctx = w,
        };
        status = webhook_post_(&p, err, sizeof err);
    }
    free(body);
    if (status == 0 && atomic_load(&w->stopping))
        return;
    record(w, ev, status, err);
}

/* A delivery thread: claims one due event at a time until stopped. */
static void *deliver_main(void *arg)
{
    struct webhook *w = arg;
    double lease = w->cfg->webhook.timeout + WEBHOOK_LEASE_EXTRA_S;
    while (!atomic_load(&w->stopping)) {
        struct queue_event *ev = NULL;
        size_t n = 0;
        int rc = queue_event_claim(w->q, wall_now(), 1, lease, &ev, &n);
        if (rc == QUEUE_OK && n == 1)
            deliver(w, ev);
        queue_events_free(ev, n);
        if ((rc != QUEUE_OK || n == 0) && nap(w, WEBHOOK_POLL_MS))
            break;
    }
    return NULL;
}

int webhook_start(struct webhook *w, struct queue *q, char *err, size_t errlen)
{
    w->q = q;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "webhook: libcurl cannot start");
        return -1;
    }
    w->curl_on = 1;
    for (; w->nth < WEBHOOK_THREADS; w->nth++)
        if (pthread_create(&w->th[w->nth], NULL, deliver_main, w) != 0) {
            snprintf(err, errlen, "webhook: cannot start its threads");
            webhook_stop(w);
            return -1;
        }
    return 0;
}

void webhook_stop(struct webhook *w)
{
    if (w == NULL)
        return;
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    atomic_store(&w->stopping, 1);
    pthread_cond_broadcast(&w->cv);
    pthread_mutex_unlock(&w->mu);
    for (int i = 0; i < w->nth; i++)
        pthread_join(w->th[i], NULL);
    w->nth = 0;
}

void webhook_free(struct webhook *w)
{
    if (w == NULL)
        return;
    webhook_stop(w);
    if (w->key != NULL)
        gnutls_memset(w->key, 0, w->keylen);
    free(w->key);
    free(w->config);
    if (w->curl_on)
        curl_global_cleanup();
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cv);
    free(w);
}

void webhook_stats(struct webhook *w,
                   unsigned long long out[WEBHOOK_RESULT__COUNT])
{
    for (int i = 0; i < WEBHOOK_RESULT__COUNT; i++)
        out[i] = w != NULL ? atomic_load(&w->counts[i]) : 0;
}
