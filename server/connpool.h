/*
 * server/connpool.h - pooled SMTP connections to the relay (internal to
 * server/; the pool's pool_run.c, pool_chain.c and pool.c are its only
 * users).
 *
 * At most cfg->pool.connections connections exist at once (idle, busy or
 * being opened).  pool_conns_acquire hands out an idle one (most recently
 * used first, after smtp_conn_check_idle says it is still alive), or opens
 * one (smtp_connect + smtp_conn_hello) while under the limit, or waits for
 * one to come back.  pool_conns_release takes it back: kept for reuse, or
 * closed (QUIT after cfg->pool.messages_per_conn messages; dropped without
 * QUIT after a transport error or an unknown outcome).  A reaper thread
 * QUITs connections idle for cfg->pool.idle_timeout seconds.
 *
 * Threads: all functions are thread-safe; a struct pool_conn belongs to the
 * thread that acquired it until it is released.  Lock: cp->mu, a leaf lock
 * (held only for list and counter updates, never across SMTP I/O).  When
 * both are taken, pool->mu comes first (pool_stats).
 */
#ifndef MAILPOOL_CONNPOOL_H
#define MAILPOOL_CONNPOOL_H

#include <stddef.h>
#include <smtpcore/smtp.h>
#include "config/config.h"
#include "server/pool.h"
#include "server/retry.h"

struct pool_conns;
struct pool_conn;

enum pool_acquire {
    POOL_ACQ_OK = 0,
    POOL_ACQ_FAILED = -1, /* opening failed: res holds why */
    POOL_ACQ_STOPPED = -2 /* pool_conns_stop was called */
};

/* Builds the SMTP options from cfg and starts the reaper; NULL with err
   set on bad settings or when out of resources.  cfg is borrowed. */
struct pool_conns *pool_conns_new(const struct cfg *cfg, char *err,
                                  size_t errlen);
/*
 * Gets a live connection into *out (*reused: 1 when it came from the idle
 * list).  On POOL_ACQ_FAILED res is replaced by the outcome of the failed
 * smtp_connect/smtp_conn_hello; otherwise res is untouched.
 */
int pool_conns_acquire(struct pool_conns *cp, struct pool_conn **out,
                       int *reused, struct smtp_result *res);
/* The SMTP handle of an acquired connection (borrowed). */
struct smtp_conn *pool_conn_smtp(struct pool_conn *pc);
/* Messages pc may still carry before messages_per_conn renews it (at
   least 1; ULONG_MAX when there is no limit). */
unsigned long pool_conn_budget(const struct pool_conns *cp,
                               const struct pool_conn *pc);
/* Gives pc back: KEEP (if still open and under messages_per_conn), QUIT or
   DROP.  pc is invalid afterwards. */
void pool_conns_release(struct pool_conns *cp, struct pool_conn *pc,
                        enum pool_conn_fate fate);
/* Fills the conns_* fields of out (takes cp->mu). */
void pool_conns_stats(struct pool_conns *cp, struct pool_stats *out);
/* 1 if a connection is open, else the answer of the last probe (connect,
   EHLO, QUIT; at most once per second).  Only the first call probes on the
   caller's thread; after that a stale answer is renewed by the reaper
   thread while the caller gets the last one at once. */
int pool_conns_ready(struct pool_conns *cp);
/* From now on acquire returns POOL_ACQ_STOPPED; wakes its waiters. */
void pool_conns_stop(struct pool_conns *cp);
/* Joins the reaper and QUITs every idle connection.  Call after
   pool_conns_stop, once no connection is acquired any more. */
void pool_conns_close_all(struct pool_conns *cp);
/* Frees everything (closes what is left without QUIT); NULL is a no-op. */
void pool_conns_free(struct pool_conns *cp);

#endif /* MAILPOOL_CONNPOOL_H */
