/*
 * server/connpool.c - pooled SMTP connections to the relay
 * (server/connpool.h).
 *
 * Public (to server/): pool_conns_new, pool_conns_acquire, pool_conn_smtp,
 * pool_conn_budget, pool_conns_release, pool_conns_stats, pool_conns_ready, pool_conns_stop,
 * pool_conns_close_all, pool_conns_free.
 *
 * Slots: cp->nslots counts every connection that exists or is being opened;
 * it never exceeds cp->max.  A slot is taken (under cp->mu) before
 * smtp_connect and given back only after the connection was closed, so a
 * connection being QUIT still counts.  Idle connections sit on a LIFO list:
 * the most recently used goes out first, so a quiet pool lets the others
 * age out through the reaper.
 *
 * Errors: opening failures are returned in the caller's smtp_result
 * (kinds of smtpcore; SMTP_ERR_LOCAL when out of memory).
 * Threads: cp->mu guards the list and the counters; SMTP I/O (connect, EHLO,
 * the liveness check, QUIT) always runs without it.  A pool_conn is owned by
 * the list while idle and by one worker while acquired.  Lock order:
 * pool->mu before cp->mu; cp->mu is never held while taking another lock.
 */
#include "server/connpool.h"
#include "server/fqdn.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"
#include "server/pool_sys.h"

#define POOL_PROBE_INTERVAL 1.0    /* seconds between readiness probes */
#define POOL_REAP_INTERVAL 1.0     /* the reaper looks at least this often */
#define POOL_PROBE_TIMEOUT_MS 5000 /* cap of each phase of a probe */

struct pool_conn {
    struct smtp_conn *smtp;
    unsigned long id;       /* for the logs */
    double idle_since;      /* monotonic seconds; while idle */
    struct pool_conn *next; /* idle list link */
};

struct pool_conns {
    struct smtp_opts opts;       /* strings borrowed from the cfg */
    struct smtp_opts probe_opts; /* opts with short timeouts */
    char hostport[SMTP_MAX_DOMAIN + 16];
    char fqdn[256];         /* EHLO name when relay.helo_name is
                                       unset (server/fqdn.h) */
    size_t max;             /* cfg->pool.connections */
    unsigned long max_msgs; /* cfg->pool.messages_per_conn; 0: none */
    double idle_timeout;    /* seconds */
    pthread_t reaper;
    int reaper_running; /* owner thread only */

    pthread_mutex_t mu;
    pthread_cond_t avail_cv;   /* idle conn or free slot, or stopping */
    pthread_cond_t reaper_cv;  /* stopping, or a probe wanted */
    struct pool_conn *idle;    /* guarded by cp->mu */
    size_t nidle;              /* guarded by cp->mu */
    size_t nslots;             /* guarded by cp->mu: open + opening */
    size_t nopening;           /* guarded by cp->mu */
    int stopping;              /* guarded by cp->mu */
    unsigned long next_id;     /* guarded by cp->mu */
    unsigned long long opened; /* guarded by cp->mu */
    unsigned long long failed; /* guarded by cp->mu */
    double probe_at;           /* guarded by cp->mu */
    int probe_ok;              /* guarded by cp->mu */
    int probing;               /* guarded by cp->mu */
    int probe_wanted;          /* guarded by cp->mu: for the reaper */
};

/* Seconds to milliseconds for a timeout; 0 (library default) when <= 0. */
static int pool_ms(int seconds)
{
    if (seconds <= 0)
        return 0;
    if (seconds > INT_MAX / 1000)
        return INT_MAX;
    return seconds * 1000;
}

/* Caps a probe timeout (0 is the library's long default) to 5 s. */
static void pool_cap_ms(int *ms)
{
    if (*ms <= 0 || *ms > POOL_PROBE_TIMEOUT_MS)
        *ms = POOL_PROBE_TIMEOUT_MS;
}

/* Fills cp->opts and cp->hostport from cfg->relay; -1 with err set. */
static int pool_conns_config(struct pool_conns *cp, const struct cfg *cfg,
                             char *err, size_t errlen)
{
    const char *host = cfg->relay.host != NULL ? cfg->relay.host : "localhost";
    int port = cfg->relay.port > 0 ? cfg->relay.port : SMTP_DEFAULT_PORT;
    int v6 = strchr(host, ':') != NULL && host[0] != '[';
    int n;

    if (cfg->relay.tls == NULL) { /* a struct cfg config/ never filled */
        snprintf(err, errlen, "relay.tls: unset");
        return -1;
    }
    cp->opts.tls = pool_smtp_tls(cfg->relay.tls_mode);
    n = snprintf(cp->hostport, sizeof cp->hostport, v6 ? "[%s]:%d" : "%s:%d",
                 host, port);
    if (n < 0 || (size_t)n >= sizeof cp->hostport || host[0] == '\0') {
        snprintf(err, errlen, "relay.host: empty or too long");
        return -1;
    }
    cp->opts.helo_name = cfg->relay.helo_name;
    if (cp->opts.helo_name == NULL && fqdn_lookup(cp->fqdn, sizeof cp->fqdn))
        cp->opts.helo_name = cp->fqdn; /* else smtpcore's address literal */
    cp->opts.connect_timeout_ms = pool_ms(cfg->relay.connect_timeout);
    cp->opts.greeting_timeout_ms = pool_ms(cfg->relay.command_timeout);
    cp->opts.command_timeout_ms = pool_ms(cfg->relay.command_timeout);
    cp->opts.data_init_timeout_ms = pool_ms(cfg->relay.command_timeout);
    cp->opts.data_block_timeout_ms = pool_ms(cfg->relay.command_timeout);
    cp->opts.data_term_timeout_ms = pool_ms(cfg->relay.data_timeout);
    cp->opts.no_pipelining = !cfg->relay.pipelining;
    cp->opts.ca_file = cfg->relay.ca_file;
    cp->opts.cert_file = cfg->relay.cert_file;
    cp->opts.key_file = cfg->relay.key_file;
    cp->opts.insecure_skip_verify = cfg->relay.insecure_skip_verify;
    cp->opts.auth_user = cfg->relay.auth_user;
    cp->opts.auth_pass = cfg->relay.auth_pass;
    cp->opts.auth_mech = cfg->relay.auth_mech;
    cp->opts.auth_allow_plaintext = cfg->relay.auth_allow_plaintext;
    cp->probe_opts = cp->opts;
    pool_cap_ms(&cp->probe_opts.connect_timeout_ms);
    pool_cap_ms(&cp->probe_opts.greeting_timeout_ms);
    pool_cap_ms(&cp->probe_opts.command_timeout_ms);
    return 0;
}

/* Logs one connection event at debug level. */
static void pool_conns_log(const char *action, const struct pool_conn *pc,
                           const char *reason)
{
    struct log_field f[] = {
        LOG_STR("action", action),
        LOG_NUM("conn", pc->id),
        LOG_STR("reason", reason),
        LOG_NUM("messages",
                pc->smtp != NULL ? smtp_conn_messages(pc->smtp) : 0),
    };

    if (log_enabled(LOG_DEBUG))
        log_event_num(LOG_DEBUG, "smtp_conn", f, sizeof f / sizeof f[0]);
}

/* Closes pc (QUIT or not) and gives its slot back. */
static void pool_conns_discard(struct pool_conns *cp, struct pool_conn *pc,
                               enum pool_conn_fate fate, const char *reason)
{
    pool_conns_log("close", pc, reason);
    if (fate == POOL_CONN_QUIT)
        smtp_conn_quit(pc->smtp);
    else
        smtp_conn_free(pc->smtp);
    free(pc);
    pthread_mutex_lock(&cp->mu);
    cp->nslots--;
    pthread_cond_broadcast(&cp->avail_cv);
    pthread_mutex_unlock(&cp->mu);
}

/* Removes from the idle list every connection idle past the timeout and
   returns them as a list; sets *next to the next time to look.
   Precondition: cp->mu held. */
static struct pool_conn *pool_conns_expired(struct pool_conns *cp, double now,
                                            double *next)
{
    struct pool_conn *out = NULL, **pp = &cp->idle;

    *next = now + POOL_REAP_INTERVAL;
    while (*pp != NULL) {
        struct pool_conn *pc = *pp;
        double due = pc->idle_since + cp->idle_timeout;

        if (due <= now) {
            *pp = pc->next;
            cp->nidle--;
            pc->next = out;
            out = pc;
        } else {
            if (due < *next)
                *next = due;
            pp = &pc->next;
        }
    }
    return out;
}

static int pool_conns_probe(struct pool_conns *cp);

/* The reaper: QUITs connections idle longer than cfg->pool.idle_timeout,
   and runs the readiness probes pool_conns_ready asks for, so that no HTTP
   thread waits on the relay. */
static void *pool_conns_reaper(void *arg)
{
    struct pool_conns *cp = arg;

    pthread_mutex_lock(&cp->mu);
    while (!cp->stopping) {
        double next;
        if (cp->probe_wanted && !cp->probing) {
            cp->probe_wanted = 0;
            cp->probing = 1;
            pthread_mutex_unlock(&cp->mu);
            int ok = pool_conns_probe(cp);
            pthread_mutex_lock(&cp->mu);
            cp->probe_ok = ok;
            cp->probing = 0;
            cp->probe_at = pool_mono_now();
            continue;
        }
        struct pool_conn *dead = pool_conns_expired(cp, pool_mono_now(), &next);

        if (dead != NULL) {
            pthread_mutex_unlock(&cp->mu);
            while (dead != NULL) {
                struct pool_conn *pc = dead;
                dead = pc->next;
                pool_conns_discard(cp, pc, POOL_CONN_QUIT, "idle");
            }
            pthread_mutex_lock(&cp->mu);
            continue;
        }
        struct timespec ts = pool_abstime(next);
        pthread_cond_timedwait(&cp->reaper_cv, &cp->mu, &ts);
    }
    pthread_mutex_unlock(&cp->mu);
    return NULL;
}

/* Builds the options, the lock and the reaper; NULL with err set. */
struct pool_conns *pool_conns_new(const struct cfg *cfg, char *err,
                                  size_t errlen)
{
    struct pool_conns *cp = calloc(1, sizeof *cp);

    if (cp == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (pool_conns_config(cp, cfg, err, errlen) < 0) {
        free(cp);
        return NULL;
    }
    cp->max = cfg->pool.connections > 0 ? (size_t)cfg->pool.connections : 1;
    cp->max_msgs = cfg->pool.messages_per_conn > 0
                       ? (unsigned long)cfg->pool.messages_per_conn
                       : 0;
    cp->idle_timeout = cfg->pool.idle_timeout > 0 ? cfg->pool.idle_timeout : 0;
    cp->probe_at = -1e9;
    pthread_mutex_init(&cp->mu, NULL);
    if (pool_cond_init(&cp->avail_cv) != 0 ||
        pool_cond_init(&cp->reaper_cv) != 0 ||
        pool_thread_start(&cp->reaper, pool_conns_reaper, cp) != 0) {
        snprintf(err, errlen, "cannot start the connection reaper");
        pool_conns_free(cp);
        return NULL;
    }
    cp->reaper_running = 1;
    return cp;
}

/* relay.tls = opportunistic and the relay offered no STARTTLS (or a
   proxy stripped it): the connection is plaintext; warn, once per
   connection, with the relay's address. */
static void pool_conns_warn_plaintext(const struct pool_conns *cp,
                                      const struct pool_conn *pc)
{
    if (cp->opts.tls != SMTP_TLS_OPPORTUNISTIC || smtp_conn_is_tls(pc->smtp))
        return;
    struct log_field f[] = {
        LOG_STR("relay", cp->hostport),
        LOG_NUM("conn", pc->id),
        LOG_STR("message", "relay.tls is opportunistic and the relay "
                           "offered no STARTTLS: sending in plaintext"),
    };
    log_event_num(LOG_WARN, "relay_tls_downgrade", f, sizeof f / sizeof f[0]);
}

/* Opens and greets a new connection into the slot the caller took. */
static int pool_conns_open(struct pool_conns *cp, struct pool_conn **out,
                           struct smtp_result *res)
{
    struct pool_conn *pc = calloc(1, sizeof *pc);
    struct smtp_conn *c = NULL;
    struct smtp_result tmp;

    smtp_result_init(&tmp);
    if (pc == NULL)
        pool_result_local(&tmp, SMTP_DELIVERY_NONE, "out of memory");
    else
        c = smtp_connect(cp->hostport, 0, &cp->opts, &tmp);
    if (c != NULL) {
        smtp_result_clear(&tmp);
        if (smtp_conn_hello(c, &tmp) != SMTP_OK) {
            if (tmp.kind == SMTP_ERR_REPLY && smtp_conn_is_open(c))
                smtp_conn_quit(c);
            else
                smtp_conn_free(c);
            c = NULL;
        }
    }
    pthread_mutex_lock(&cp->mu);
    cp->nopening--;
    if (c == NULL) {
        cp->nslots--;
        cp->failed++;
        pthread_cond_broadcast(&cp->avail_cv);
    } else {
        cp->opened++;
        pc->id = ++cp->next_id;
    }
    pthread_mutex_unlock(&cp->mu);
    if (c == NULL) {
        free(pc);
        smtp_result_clear(res);
        *res = tmp; /* moved: res owns it now */
        return POOL_ACQ_FAILED;
    }
    smtp_result_clear(&tmp);
    pc->smtp = c;
    pool_conns_log("open", pc, NULL);
    pool_conns_warn_plaintext(cp, pc);
    *out = pc;
    return POOL_ACQ_OK;
}

/* Gets a live idle connection, a new one, or waits for either. */
int pool_conns_acquire(struct pool_conns *cp, struct pool_conn **out,
                       int *reused, struct smtp_result *res)
{
    for (;;) {
        struct pool_conn *pc = NULL;

        pthread_mutex_lock(&cp->mu);
        while (!cp->stopping && cp->idle == NULL && cp->nslots >= cp->max)
            pthread_cond_wait(&cp->avail_cv, &cp->mu);
        if (cp->stopping) {
            pthread_mutex_unlock(&cp->mu);
            return POOL_ACQ_STOPPED;
        }
        if (cp->idle != NULL) {
            pc = cp->idle;
            cp->idle = pc->next;
            cp->nidle--;
        } else {
            cp->nslots++;
            cp->nopening++;
        }
        pthread_mutex_unlock(&cp->mu);
        if (pc == NULL) {
            *reused = 0;
            return pool_conns_open(cp, out, res);
        }
        pc->next = NULL;
        if (smtp_conn_check_idle(pc->smtp) == 0) {
            *reused = 1;
            *out = pc;
            return POOL_ACQ_OK;
        }
        pool_conns_discard(cp, pc, POOL_CONN_DROP, "dead before reuse");
    }
}

/* The SMTP handle of an acquired connection. */
struct smtp_conn *pool_conn_smtp(struct pool_conn *pc)
{
    return pc->smtp;
}

/* Messages pc may still carry under messages_per_conn (at least 1).
   cp->max_msgs is set once by pool_conns_new: no lock needed. */
unsigned long pool_conn_budget(const struct pool_conns *cp,
                               const struct pool_conn *pc)
{
    unsigned long sent = smtp_conn_messages(pc->smtp);

    if (cp->max_msgs == 0)
        return ULONG_MAX;
    return sent < cp->max_msgs ? cp->max_msgs - sent : 1;
}

/* Takes pc back: onto the idle list, or closed. */
void pool_conns_release(struct pool_conns *cp, struct pool_conn *pc,
                        enum pool_conn_fate fate)
{
    const char *reason = fate == POOL_CONN_DROP ? "failed" : "closed";

    if (fate == POOL_CONN_KEEP && !smtp_conn_is_open(pc->smtp)) {
        fate = POOL_CONN_DROP;
        reason = "closed by the server";
    } else if (fate == POOL_CONN_KEEP && cp->max_msgs > 0 &&
               smtp_conn_messages(pc->smtp) >= cp->max_msgs) {
        fate = POOL_CONN_QUIT;
        reason = "messages_per_conn";
    }
    if (fate != POOL_CONN_KEEP) {
        pool_conns_discard(cp, pc, fate, reason);
        return;
    }
    pthread_mutex_lock(&cp->mu);
    pc->idle_since = pool_mono_now();
    pc->next = cp->idle;
    cp->idle = pc;
    cp->nidle++;
    pthread_cond_broadcast(&cp->avail_cv);
    pthread_mutex_unlock(&cp->mu);
}

/* Fills the connection gauges and counters of out. */
void pool_conns_stats(struct pool_conns *cp, struct pool_stats *out)
{
    pthread_mutex_lock(&cp->mu);
    out->conns_open = cp->nslots - cp->nopening;
    out->conns_idle = cp->nidle;
    out->conns_busy = out->conns_open - cp->nidle;
    out->conns_opened = cp->opened;
    out->conns_failed = cp->failed;
    pthread_mutex_unlock(&cp->mu);
}

/* Connects, greets and QUITs with timeouts capped at 5 s a phase: 1 when
   all of it worked. */
static int pool_conns_probe(struct pool_conns *cp)
{
    struct smtp_result res;
    struct smtp_conn *c;
    int ok = 0;

    smtp_result_init(&res);
    c = smtp_connect(cp->hostport, 0, &cp->probe_opts, &res);
    if (c != NULL) {
        smtp_result_clear(&res);
        ok = smtp_conn_hello(c, &res) == SMTP_OK;
        smtp_conn_quit(c);
    }
    smtp_result_clear(&res);
    return ok;
}

/* 1 if a connection is open, else the last probe's answer.  The first
   call probes itself (there is no answer yet); later ones leave a stale
   answer (older than POOL_PROBE_INTERVAL) to the reaper to renew, and
   answer at once with the last one. */
int pool_conns_ready(struct pool_conns *cp)
{
    double now = pool_mono_now();
    int ok;

    pthread_mutex_lock(&cp->mu);
    if (cp->nslots - cp->nopening > 0) {
        pthread_mutex_unlock(&cp->mu);
        return 1;
    }
    if (cp->probing || cp->probe_at >= 0) { /* probed before */
        if (!cp->probing && now - cp->probe_at >= POOL_PROBE_INTERVAL &&
            !cp->probe_wanted) {
            cp->probe_wanted = 1;
            pthread_cond_signal(&cp->reaper_cv);
        }
        ok = cp->probe_ok; /* the last probe's answer */
        pthread_mutex_unlock(&cp->mu);
        return ok;
    }
    cp->probing = 1;
    cp->probe_at = now;
    pthread_mutex_unlock(&cp->mu);
    ok = pool_conns_probe(cp);
    pthread_mutex_lock(&cp->mu);
    cp->probe_ok = ok;
    cp->probing = 0;
    cp->probe_at = pool_mono_now();
    pthread_mutex_unlock(&cp->mu);
    return ok;
}

/* Makes acquire return POOL_ACQ_STOPPED from now on; wakes everyone. */
void pool_conns_stop(struct pool_conns *cp)
{
    pthread_mutex_lock(&cp->mu);
    cp->stopping = 1;
    pthread_cond_broadcast(&cp->avail_cv);
    pthread_cond_broadcast(&cp->reaper_cv);
    pthread_mutex_unlock(&cp->mu);
}

/* Joins the reaper, then QUITs every idle connection. */
void pool_conns_close_all(struct pool_conns *cp)
{
    struct pool_conn *list;

    if (cp->reaper_running) {
        pool_conns_stop(cp);
        pthread_join(cp->reaper, NULL);
        cp->reaper_running = 0;
    }
    pthread_mutex_lock(&cp->mu);
    list = cp->idle;
    cp->idle = NULL;
    cp->nidle = 0;
    pthread_mutex_unlock(&cp->mu);
    while (list != NULL) {
        struct pool_conn *pc = list;
        list = pc->next;
        pool_conns_discard(cp, pc, POOL_CONN_QUIT, "shutdown");
    }
}

/* Frees the pool; idle connections left are closed without QUIT. */
void pool_conns_free(struct pool_conns *cp)
{
    if (cp == NULL)
        return;
    if (cp->reaper_running) {
        pool_conns_stop(cp);
        pthread_join(cp->reaper, NULL);
        cp->reaper_running = 0;
    }
    while (cp->idle != NULL) {
        struct pool_conn *pc = cp->idle;
        cp->idle = pc->next;
        smtp_conn_free(pc->smtp);
        free(pc);
    }
    pthread_cond_destroy(&cp->avail_cv);
    pthread_cond_destroy(&cp->reaper_cv);
    pthread_mutex_destroy(&cp->mu);
    free(cp);
}
