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
#include "config/config.h"
#include "queue/queue.h"
#include "server/delivery.h"
#include "server/log.h"
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

/* serve: config, pool, HTTP; waits for SIGTERM/SIGINT, then drains. */
int cmd_serve(int argc, char **argv)
{
    struct cfg cfg;
    char err[512];
    int rest[64], nrest = 64, print = 0;
    memset(&cfg, 0, sizeof cfg);
    if (cfg_load(&cfg, argc, argv, NULL, rest, &nrest, err, sizeof err) < 0) {
        fprintf(stderr, "mailpool: %s\n", err);
        cfg_free(&cfg);
        return 2;
    }
    for (int i = 0; i < nrest; i++) {
        if (strcmp(argv[rest[i]], "--print-config") == 0) {
            print = 1;
        } else {
            fprintf(stderr, "mailpool serve: unknown option %s\n",
                    argv[rest[i]]);
            cmd_usage(stderr);
            cfg_free(&cfg);
            return 2;
        }
    }
    if (print) {
        cfg_print(&cfg, stdout);
        cfg_free(&cfg);
        return 0;
    }
    log_set_level(cfg.log.level);
    if (cfg.env_ignored > 0) {
        struct log_field f[] = {
            LOG_STR("message", "ignored MAILPOOL_* variables shaped like "
                               "Kubernetes service links"),
            LOG_NUM("count", cfg.env_ignored),
            LOG_STR("names", cfg.warning),
        };
        log_event_num(LOG_WARN, "config", f, sizeof f / sizeof f[0]);
    }

    /* DKIM keys: a key that does not load stops the start (exit 2). */
    struct sign_set *signer = sign_set_new(&cfg, err, sizeof err);
    if (signer == NULL) {
        fprintf(stderr, "mailpool: %s\n", err);
        cfg_free(&cfg);
        return 2;
    }

    /* Every thread inherits this mask; only sigwait below takes them. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP); /* never ends the service */
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* The webhook: its keys and secret before the queue, whose outbox
       writes events only for the types it sends (none without it). */
    struct webhook *hook = NULL;
    if (cfg.webhook.url != NULL &&
        (hook = webhook_new(&cfg, err, sizeof err)) == NULL) {
        fprintf(stderr, "mailpool: %s\n", err);
        sign_set_free(signer);
        cfg_free(&cfg);
        return 2;
    }
    struct queue_opts qo = {
        .backend = cfg.queue.backend,
        .url = cfg.queue.url,
        .password_file = cfg.queue.password_file,
        .lease_s = cfg.queue.lease,
        .path = cfg.queue.path,
        .sync_normal = strcmp(cfg.queue.synchronous, "normal") == 0,
        .retention_s = cfg.queue.retention,
        .idem_ttl_s = cfg.queue.idempotency_ttl,
        .event_states = hook != NULL ? webhook_event_states(hook) : 0,
        .event_config = hook != NULL ? webhook_config_text(hook) : NULL,
    };
    struct queue *queue = NULL;
    if (queue_open(&qo, &queue, err, sizeof err) < 0) {
        fprintf(stderr, "mailpool: %s: %s\n",
                strcmp(cfg.queue.backend, "postgres") == 0 ? "queue.url"
                                                           : "queue.path",
                err);
        webhook_free(hook);
        sign_set_free(signer);
        cfg_free(&cfg);
        return 2; /* the operator must fix it */
    }
    if (queue_recovered(queue) > 0) {
        char n[24];
        snprintf(n, sizeof n, "%lu", queue_recovered(queue));
        log_event(LOG_WARN, "queue_recovered", "unknown", n, "reason",
                  "found sending at start: may have been delivered; not "
                  "resent",
                  (const char *)NULL);
    }
    struct pool *pool = pool_new(&cfg, err, sizeof err);
    if (pool == NULL ||
        (hook != NULL && webhook_start(hook, queue, err, sizeof err) < 0)) {
        fprintf(stderr, "mailpool: %s\n", err);
        pool_free(pool);
        webhook_free(hook);
        queue_close(queue);
        sign_set_free(signer);
        cfg_free(&cfg);
        return 1;
    }
    pool_set_signer(pool, signer);
    struct delivery *delivery = delivery_start(pool, queue, &cfg, err,
                                               sizeof err);
    struct api *api = delivery != NULL ? api_start(&cfg, pool, queue, delivery,
                                                   err, sizeof err)
                                       : NULL;
    if (api == NULL) {
        fprintf(stderr, "mailpool: %s\n", err);
        delivery_stop(delivery);
        pool_drain(pool, 0);
        pool_free(pool);
        delivery_free(delivery);
        webhook_free(hook);
        queue_close(queue);
        sign_set_free(signer);
        cfg_free(&cfg);
        return 1;
    }
    api_set_webhook(api, hook);
    log_event_num(LOG_INFO, "listening",
                  (struct log_field[]){ LOG_STR("listen", cfg.http.listen),
                                        LOG_NUM("port", api_port(api)),
                                        LOG_STR("relay", cfg.relay.host) },
                  3);
    int sig = wait_ending_signal(&sigs);
    if (cfg.http.shutdown_delay > 0)
        shutdown_delay(api, &sigs, cfg.http.shutdown_delay, &sig);
    log_event(LOG_INFO, "draining", "signal", sig == SIGTERM ? "TERM" : "INT",
              "reason",
              sig == SIGTERM ? "SIGTERM received: stopping"
                             : "SIGINT received: stopping",
              (const char *)NULL);
    api_set_draining(api, 1);
    delivery_stop(delivery); /* no new claims; the rest stay queued */
    pool_drain(pool, cfg.pool.drain_timeout);
    api_stop(api);
    pool_free(pool);
    delivery_free(delivery);
    webhook_free(hook); /* a POST under way is abandoned */
    queue_close(queue);
    sign_set_free(signer);
    log_event(LOG_INFO, "stopped", (const char *)NULL);
    cfg_free(&cfg);
    return 0;
}
