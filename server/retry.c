/*
 * server/retry.c - the pool's retry rules (server/retry.h has the table).
 *
 * Public (to server/): pool_kind_is_transport, pool_retry_decide,
 * pool_backoff_ms.
 * Errors: none; every outcome maps to a verdict.
 * Threads: pure functions.
 */
#include "server/retry.h"

#include <strings.h>

#define POOL_BACKOFF_CAP_MS 10000L
#define POOL_BACKOFF_DRAIN_CAP_MS 250L

/* 1 for the kinds that mean the transport failed. */
int pool_kind_is_transport(enum smtp_kind kind)
{
    return kind == SMTP_ERR_CONN || kind == SMTP_ERR_TIMEOUT ||
           kind == SMTP_ERR_PROTO || kind == SMTP_ERR_TLS;
}

/* 1 when command names the first command of a send on a reused
   connection (RSET, or MAIL when no RSET was needed), or is unknown. */
static int pool_first_command(const char *command)
{
    return command[0] == '\0' || strncasecmp(command, "RSET", 4) == 0 ||
           strncasecmp(command, "MAIL", 4) == 0;
}

/* The verdict for a failed smtp_connect/smtp_conn_hello. */
static struct pool_verdict pool_decide_open(const struct smtp_result *res)
{
    struct pool_verdict v = { POOL_NEXT_DONE, POOL_CONN_DROP };

    if (res->kind == SMTP_ERR_REPLY)
        v.next = res->code >= 400 && res->code < 500 ? POOL_NEXT_RETRY
                                                     : POOL_NEXT_DONE;
    else if (pool_kind_is_transport(res->kind))
        v.next = POOL_NEXT_RETRY;
    return v; /* AUTH, LOCAL, anything else: final */
}

/* What to do after an attempt (see the table in server/retry.h). */
struct pool_verdict pool_retry_decide(const struct smtp_result *res,
                                      enum pool_phase phase, int reused,
                                      int idempotent)
{
    struct pool_verdict v = { POOL_NEXT_DONE, POOL_CONN_KEEP };
    int transport = pool_kind_is_transport(res->kind);
    int dead = transport || res->code == 421;

    if (phase == POOL_PHASE_OPEN)
        return pool_decide_open(res);
    if (res->status == SMTP_DELIVERY_UNKNOWN) {
        v.fate = POOL_CONN_DROP; /* state unknown; never resend */
        return v;
    }
    if (dead || res->kind == SMTP_ERR_AUTH)
        v.fate = POOL_CONN_DROP;
    /* Something was (or may be) delivered, or refused for good: final. */
    if (res->kind == SMTP_OK || res->kind == SMTP_ERR_REJECTED ||
        res->kind == SMTP_ERR_LOCAL || res->kind == SMTP_ERR_AUTH ||
        res->status == SMTP_DELIVERY_SENT ||
        res->status == SMTP_DELIVERY_PARTIAL ||
        res->status == SMTP_DELIVERY_REJECTED)
        return v;
    /* A refused RSET (Exim's 554 after too many non-mail commands) says
       nothing of the message: none of it was sent. */
    if (res->kind == SMTP_ERR_REPLY && res->naccepted == 0 &&
        strncasecmp(res->command, "RSET", 4) == 0) {
        v.next = POOL_NEXT_REPLACE;
        v.fate = POOL_CONN_DROP;
        return v;
    }
    if (dead && reused && res->naccepted == 0 &&
        (idempotent || pool_first_command(res->command))) {
        v.next = POOL_NEXT_REPLACE;
        return v;
    }
    if (transport ||
        (res->kind == SMTP_ERR_REPLY && res->code >= 400 && res->code < 500))
        v.next = POOL_NEXT_RETRY;
    return v; /* 5xx and the rest: final */
}

/* Backoff in ms after `attempt` counted attempts failed. */
long pool_backoff_ms(int base_ms, int attempt, int draining)
{
    long cap = draining ? POOL_BACKOFF_DRAIN_CAP_MS : POOL_BACKOFF_CAP_MS;
    long ms = base_ms;

    if (base_ms <= 0)
        return 0;
    for (int i = 1; i < attempt && ms < cap; i++)
        ms *= 2;
    return ms < cap ? ms : cap;
}
