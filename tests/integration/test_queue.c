/*
 * test_queue.c - the durable queue through `mailpool serve` over HTTP:
 * Prefer: respond-async (202 means on disk), the status document, cancel,
 * send_at, retries with backoff, Idempotency-Key (50 concurrent requests,
 * one message), SIGKILL while sending (unknown, never resent), a crash
 * matrix of 20 kills at random moments (every 202 reaches a final state,
 * none is lost, none reaches the relay twice), and a full disk (503,
 * nothing already queued lost).  Synchronous sends are in the message log
 * too (their answer's id, their one attempt with the relay's reply lines;
 * none with queue.log_sync = false).  The relay is the fake
 * (tests/fakes/fake_smtp.py), which records every message it took.
 *
 * One suite, two backends: this file is the SQLite binary (test_queue);
 * the cases are in tests/integration/queue/ (qfx.h the fixture, cases.h
 * the cases, suite.c the runner), which the Makefile compiles once for
 * this binary and once with QUEUE_TEST_PG for test_queue_pg, so the same
 * tests run against a PostgreSQL 15 that the binary starts for itself
 * (tests/peers/postgres-peer.sh: initdb into a temporary directory,
 * 127.0.0.1 on a free port, stopped by its pid at the end).  There each
 * queue file name stands for a database of its own, the lease is short,
 * and the tests of several replicas on one database run besides.
 */
#include "tests/integration/queue/cases.h"

/* The suite on SQLite. */
int main(void)
{
    return queue_suite_run();
}
