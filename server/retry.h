/*
 * server/retry.h - the pool's retry rules as pure functions (internal to
 * server/; used by pool_run.c and pool_chain.c, unit-tested by
 * tests/unit/test_pool_retry.c).
 *
 * After each attempt the worker asks pool_retry_decide what the outcome in
 * res means: finish the job, retry it after a backoff (counted against
 * cfg->pool.retries), or replace a stale reused connection and retry at once
 * without counting; and what becomes of the connection.  The rules:
 *
 *   outcome (res)                               next     connection
 *   status unknown (final dot sent, no reply)   DONE     DROP   never resent
 *   status sent/partial/rejected, kind OK/700   DONE     KEEP
 *   kind LOCAL (bad input)                      DONE     KEEP*
 *   kind AUTH                                   DONE     DROP
 *   reply 421 (anywhere)                        RETRY    DROP
 *   reply 4xx                                   RETRY    KEEP*
 *   reply 5xx (not 421)                         DONE     KEEP*
 *   CONN/TIMEOUT/PROTO/TLS before the dot       RETRY    DROP
 *   the two rows above marked "stale" below     REPLACE  DROP
 *   any reply to the RSET before the message    REPLACE  DROP
 *
 * KEEP* means kept only while smtp_conn_is_open says so (the connection
 * pool checks).  "Stale": the connection came from the idle list and failed
 * with a transport error or a 421 at its first command (RSET or MAIL, or any
 * command of an idempotent query) with nothing accepted; status is not
 * unknown by the first row.  An RSET is sent only on a connection that
 * carried a transaction, and its refusal (Exim's 554 "too many nonmail
 * commands") says nothing of the message, whose data was not sent.  A failed open (phase OPEN: smtp_connect or
 * smtp_conn_hello) is DONE for 5xx, AUTH and LOCAL and RETRY otherwise.
 *
 * Threads: pure functions, no state.
 */
#ifndef MAILPOOL_RETRY_H
#define MAILPOOL_RETRY_H

#include <smtpcore/smtp.h>

enum pool_phase {
    POOL_PHASE_OPEN, /* smtp_connect or smtp_conn_hello failed */
    POOL_PHASE_RUN   /* the send or the query on an open connection */
};

enum pool_next {
    POOL_NEXT_DONE,   /* the result is final */
    POOL_NEXT_RETRY,  /* temporary: retry after backoff if allowed */
    POOL_NEXT_REPLACE /* stale pooled connection: retry now, uncounted */
};

enum pool_conn_fate {
    POOL_CONN_KEEP, /* back to the idle list (if still open) */
    POOL_CONN_QUIT, /* close politely with QUIT */
    POOL_CONN_DROP  /* close the socket, no QUIT */
};

struct pool_verdict {
    enum pool_next next;
    enum pool_conn_fate fate;
};

/* 1 for the kinds that mean the transport failed (CONN/TIMEOUT/PROTO/TLS). */
int pool_kind_is_transport(enum smtp_kind kind);

/* What to do after an attempt whose outcome is res (see the table). */
struct pool_verdict pool_retry_decide(const struct smtp_result *res,
                                      enum pool_phase phase, int reused,
                                      int idempotent);

/* Backoff before counted attempt number attempt+1: base_ms doubled per
   attempt already made (attempt >= 1), capped at 10 s, or 250 ms while
   draining; 0 when base_ms <= 0. */
long pool_backoff_ms(int base_ms, int attempt, int draining);

#endif /* MAILPOOL_RETRY_H */
