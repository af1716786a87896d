/*
 * cmd/mailpool/serve.c - mailpool serve: the service's start, its signals
 * and its drain; the one place that wires api/ to server/, queue/ and
 * webhook/.
 *
 *   mailpool serve [--config FILE] [--<section>-<key> VALUE ...] [--print-config]
 *
 * Exits 0 after a SIGTERM/SIGINT drain, 2 on a bad configuration, 1 when
 * it cannot start.  Signals are taken with sigwait in the main thread: no
 * handler, no global flag; SIGHUP is logged (warn) and ignored.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "api/api.h"
#include "cmd/mailpool/cmd.h"
#include "compose/compose.h"
#include "config/config.h"
#include "queue/queue.h"
#include "server/delivery.h"
#include "util/log.h"
#include "server/pool.h"
#include "server/sign.h"
#include "webhook/webhook.h"

/* SIGHUP (log rotation, a terminal gone) is logged and otherwise
   ignored: the log is standard error, which needs no reopening. */
static void log_sighup(void)
{
    log_event(LOG_WARN, "signal", "signal", "HUP", "action",
              "ignored: SIGTERM or SIGINT stops the service",
              (const char *)NULL);
}

/* Waits for SIGTERM or SIGINT, logging and ignoring each SIGHUP. */
static int wait_ending_signal(const sigset_t *sigs)
{
    int sig = 0;
    for (;;) {
        if (sigwait(sigs, &sig) != 0)
            continue;
        if (sig != SIGHUP)
            return sig;
        log_sighup();
    }
}

/* http.shutdown_delay: /readyz says 503 while work is still taken for
   seconds, or until a second signal (*sig is then that one). */
static void shutdown_delay(struct api *api, const sigset_t *sigs, int seconds,
                           int *sig)
{
    struct log_field f[] = {
        LOG_STR("signal", *sig == SIGTERM ? "TERM" : "INT"),
        LOG_NUM("shutdown_delay", seconds),
    };
    log_event_num(LOG_INFO, "stopping", f, sizeof f / sizeof f[0]);
    api_set_stopping(api);
    struct timespec end, now;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += seconds;
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long long ms = (long long)(end.tv_sec - now.tv_sec) * 1000 +
                       (end.tv_nsec - now.tv_nsec) / 1000000;
        if (ms <= 0)
            return;
        struct timespec wait = { (time_t)(ms / 1000),
                                 (long)(ms % 1000) * 1000000 };
        int s = sigtimedwait(sigs, NULL, &wait);
        if (s == SIGHUP) {
            log_sighup();
        } else if (s > 0) {
            *sig = s;
            return;
        }
    }
}

/* What serve starts, in the order it starts them. */
struct service {
    struct cfg cfg;
    struct sign_set *signer;
    struct webhook *hook;
    struct queue *queue;
    struct pool *pool;
    struct delivery *delivery;
    struct api *api;
};

/* Loads the configuration; 0 to go on, else the exit code + 1 (a bad
   configuration or option: 2; --print-config: 0, the file printed). */
static int serve_config(struct cfg *cfg, int argc, char **argv)
{
    char err[512];
    int rest[64], nrest = 64, print = 0;

    if (cfg_load(cfg, argc, argv, NULL, rest, &nrest, err, sizeof err) < 0) {
        fprintf(stderr, "mailpool: %s\n", err);
        return 3;
    }
    for (int i = 0; i < nrest; i++) {
        if (strcmp(argv[rest[i]], "--print-config") == 0) {
            print = 1;
        } else {
            fprintf(stderr, "mailpool serve: unknown option %s\n",
                    argv[rest[i]]);
            cmd_usage(stderr);
            return 3;
        }
    }
    if (print) {
        cfg_print(cfg, stdout);
        return 1;
    }
    return 0;
}

/* The log level, and a warning for the MAILPOOL_* variables ignored. */
static void serve_log_start(const struct cfg *cfg)
{
    log_set_level(cfg->log.level);
    if (cfg->env_ignored > 0) {
        struct log_field f[] = {
            LOG_STR("message", "ignored MAILPOOL_* variables shaped like "
                               "Kubernetes service links"),
            LOG_NUM("count", cfg->env_ignored),
            LOG_STR("names", cfg->warning),
        };
        log_event_num(LOG_WARN, "config", f, sizeof f / sizeof f[0]);
    }
}

/* Every thread inherits this mask; only sigwait takes them. */
static void serve_block_signals(sigset_t *sigs)
{
    sigemptyset(sigs);
    sigaddset(sigs, SIGTERM);
    sigaddset(sigs, SIGINT);
    sigaddset(sigs, SIGHUP); /* never ends the service */
    pthread_sigmask(SIG_BLOCK, sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* Opens the queue (its outbox told the webhook's event types); a warning
   for messages found sending.  0, or -1 with err set. */
static int serve_queue(struct service *s, char *err, size_t errlen)
{
    const struct cfg *cfg = &s->cfg;
    struct queue_opts qo = {
        .backend = cfg->queue.backend,
        .url = cfg->queue.url,
        .password_file = cfg->queue.password_file,
        .lease_s = cfg->queue.lease,
        .path = cfg->queue.path,
        .sync_normal = strcmp(cfg->queue.synchronous, "normal") == 0,
        .retention_s = cfg->queue.retention,
        .idem_ttl_s = cfg->queue.idempotency_ttl,
        .event_states = s->hook != NULL ? webhook_event_states(s->hook) : 0,
        .event_config = s->hook != NULL ? webhook_config_text(s->hook) : NULL,
    };
    if (queue_open(&qo, &s->queue, err, errlen) < 0)
        return -1;
    if (queue_recovered(s->queue) > 0) {
        char n[24];
        snprintf(n, sizeof n, "%lu", queue_recovered(s->queue));
        log_event(LOG_WARN, "queue_recovered", "unknown", n, "reason",
                  "found sending at start: may have been delivered; not "
                  "resent",
                  (const char *)NULL);
    }
    return 0;
}

/* The DKIM keys: a key that does not load stops the start.  0, or 2
   (said). */
static int serve_signer(struct service *s)
{
    char err[512];

    if ((s->signer = sign_set_new(&s->cfg, err, sizeof err)) == NULL) {
        fprintf(stderr, "mailpool: %s\n", err);
        return 2;
    }
    return 0;
}

/* The webhook's keys and secret (before the queue, whose outbox writes
   events only for the types it sends), then the queue.  0, or 2 (said:
   the operator must fix it). */
static int serve_open(struct service *s)
{
    char err[512];

    if (s->cfg.webhook.url != NULL &&
        (s->hook = webhook_new(&s->cfg, err, sizeof err)) == NULL) {
        fprintf(stderr, "mailpool: %s\n", err);
        return 2;
    }
    if (serve_queue(s, err, sizeof err) < 0) {
        fprintf(stderr, "mailpool: %s: %s\n",
                strcmp(s->cfg.queue.backend, "postgres") == 0 ? "queue.url"
                                                              : "queue.path",
                err);
        return 2;
    }
    return 0;
}

/* The pool, the webhook's thread, the delivery loop and the HTTP API.
   0, or 1 (said); *started when the delivery loop was tried. */
static int serve_start(struct service *s, int *started)
{
    char err[512];

    compose_prepare(); /* GMime's classes, before any thread */
    s->pool = pool_new(&s->cfg, err, sizeof err);
    if (s->pool == NULL ||
        (s->hook != NULL &&
         webhook_start(s->hook, s->queue, err, sizeof err) < 0)) {
        fprintf(stderr, "mailpool: %s\n", err);
        return 1;
    }
    pool_set_signer(s->pool, s->signer);
    *started = 1;
    s->delivery = delivery_start(s->pool, s->queue, &s->cfg, err, sizeof err);
    if (s->delivery != NULL)
        s->api = api_start(&s->cfg, s->pool, s->queue, s->delivery, err,
                           sizeof err);
    if (s->api == NULL) {
        fprintf(stderr, "mailpool: %s\n", err);
        return 1;
    }
    api_set_webhook(s->api, s->hook);
    return 0;
}

/* Stops and frees what was started, last started first; drain: the
   delivery loop stops claiming and the pool drains for drain_s seconds. */
static void serve_close(struct service *s, int drain, int drain_s)
{
    if (drain) {
        delivery_stop(s->delivery); /* no new claims; the rest stay queued */
        pool_drain(s->pool, drain_s);
    }
    api_stop(s->api);
    pool_free(s->pool);
    delivery_free(s->delivery);
    webhook_free(s->hook); /* a POST under way is abandoned */
    queue_close(s->queue);
    sign_set_free(s->signer);
}

/* Serving: waits for SIGTERM or SIGINT (after http.shutdown_delay's
   wait), then stops taking work and drains. */
static void serve_until_signal(struct service *s, const sigset_t *sigs)
{
    log_event_num(LOG_INFO, "listening",
                  (struct log_field[]){ LOG_STR("listen", s->cfg.http.listen),
                                        LOG_NUM("port", api_port(s->api)),
                                        LOG_STR("relay", s->cfg.relay.host) },
                  3);
    int sig = wait_ending_signal(sigs);
    if (s->cfg.http.shutdown_delay > 0)
        shutdown_delay(s->api, sigs, s->cfg.http.shutdown_delay, &sig);
    log_event(LOG_INFO, "draining", "signal", sig == SIGTERM ? "TERM" : "INT",
              "reason",
              sig == SIGTERM ? "SIGTERM received: stopping"
                             : "SIGINT received: stopping",
              (const char *)NULL);
    api_set_draining(s->api, 1);
}

/* serve: config, pool, HTTP; waits for SIGTERM/SIGINT, then drains. */
int cmd_serve(int argc, char **argv)
{
    struct service s;
    sigset_t sigs;
    int rc, started = 0;

    memset(&s, 0, sizeof s);
    if ((rc = serve_config(&s.cfg, argc, argv)) != 0) {
        cfg_free(&s.cfg);
        return rc - 1;
    }
    serve_log_start(&s.cfg);
    if ((rc = serve_signer(&s)) == 0) {
        serve_block_signals(&sigs);
        rc = serve_open(&s);
    }
    if (rc != 0) {
        serve_close(&s, 0, 0);
        cfg_free(&s.cfg);
        return rc;
    }
    if ((rc = serve_start(&s, &started)) != 0) {
        serve_close(&s, started, 0);
        cfg_free(&s.cfg);
        return rc;
    }
    serve_until_signal(&s, &sigs);
    serve_close(&s, 1, s.cfg.pool.drain_timeout);
    log_event(LOG_INFO, "stopped", (const char *)NULL);
    cfg_free(&s.cfg);
    return 0;
}
