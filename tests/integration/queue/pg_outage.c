/*
 * pg_outage.c - PostgreSQL going away under a running replica (stopped
 * and started again, or frozen): 503 and unready while it is gone, no
 * 202 lost, synchronous sends still answered.  Empty in the SQLite build.
 */
#include "tests/integration/queue/cases.h"
#include "tests/integration/queue/qfx.h"

#ifdef QUEUE_TEST_PG
/* Waits (at most 10 s) until GET /readyz answers http with the status
   want. */
static void readyz_becomes(struct mpserve *s, long http, const char *want)
{
    for (long long end = now_ms() + 10000;; sleep_ms(50)) {
        long st;
        json_t *j = call(s, "GET", "/readyz", NULL, NULL, &st, NULL);
        int ok = st == http && strcmp(jstr(j, "status"), want) == 0;
        char *txt = j != NULL ? json_dumps(j, 0) : NULL;
        json_decref(j);
        if (ok) {
            free(txt);
            return;
        }
        if (now_ms() > end)
            fail_msg("/readyz answered %ld %s, not %ld %s", st,
                     txt != NULL ? txt : "", http, want);
        free(txt);
    }
}

/* Runs the peer script's verb on this run's server (tail: more words,
   may be ""); 0 when it succeeded. */
static int pg_verb(const char *verb, const char *tail)
{
    char args[400];
    snprintf(args, sizeof args, "%s %s %s", verb, pg.dir, tail);
    char *out = pg_run(args);
    free(out);
    return out != NULL ? 0 : -1;
}

/* A replica on database name with one message sent through it
   (*first, caller frees) and /readyz 200. */
static struct mpserve *ready_replica(struct peer *p, const char *name,
                                     char **first)
{
    struct mpserve *s = svc(p, name, NULL);
    *first = post_async(s, "r@example.org", NULL);
    json_t *d = wait_final(s, *first, 10000);
    json_decref(d);
    readyz_becomes(s, 200, "ready");
    return s;
}

/* A synchronous send without a key through s, body text: answered 200
   "sent". */
static void sync_send_is_sent(struct mpserve *s, const char *text)
{
    char body[256];
    long st;
    snprintf(body, sizeof body,
             "{\"from\":\"s@example.org\",\"to\":"
             "[\"r@example.org\"],\"body\":\"%s\"}",
             text);
    json_t *sync = call(s, "POST", "/v1/messages", JSONH, body, &st, NULL);
    assert_int_equal(st, 200);
    assert_string_equal(jstr(sync, "status"), "sent");
    json_decref(sync);
}

/* PostgreSQL stopped and started again under a running replica: POSTs
   get 503 with Retry-After and /readyz is 503 "queue unreachable" while
   it is down, 200 "ready" once it is back; every 202, before and after,
   is delivered once.  A synchronous send without an idempotency key
   meanwhile is answered and sent as ever: only its record in the message
   log is lost, counted and logged at warn. */
void test_postgres_restart_is_503_and_unready_while_down_no_202_lost(
    void **state)
{
    (void)state;
    struct peer *p = relay("{}");
    char *before;
    struct mpserve *s = ready_replica(p, "restart", &before);
    assert_int_equal(pg_verb("stop-only", ""), 0);
    readyz_becomes(s, 503, "queue unreachable");
    async_post_is_503(s);
    sync_send_is_sent(s, "while down");
    for (long long end = now_ms() + 10000;
         metric_of(s, "\nmailpool_queue_log_sync_failures_total ") != 1;
         sleep_ms(50))
        if (now_ms() > end)
            fail_msg("the failed record was not counted");
    char *log = mpserve_log(s, NULL);
    assert_non_null(log);
    assert_non_null(strstr(log, "\"message_log_failed\""));
    free(log);
    assert_int_equal(pg_verb("start-again", ""), 0);
    readyz_becomes(s, 200, "ready");
    char *ids[5];
    for (int i = 0; i < 5; i++)
        ids[i] = post_async(s, "r@example.org", NULL);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(sent_once_or_unknown(s, p, ids[i]), 0);
        free(ids[i]);
    }
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    assert_int_equal(msgs_total(p), 7);
    free(before);
    peer_stop(p);
}

/* PostgreSQL frozen (SIGSTOP: its connections open, nothing answering)
   under a replica: /readyz answers 503 "queue unreachable" within
   seconds, never held by the silent database, and a synchronous send
   without a key is answered and sent; thawed, /readyz is 200 again and a
   202 is delivered once. */
void test_silent_postgres_is_unready_within_seconds_then_ready(void **state)
{
    (void)state;
    struct peer *p = relay("{}");
    char *before;
    struct mpserve *s = ready_replica(p, "frozen", &before);
    assert_int_equal(pg_verb("freeze", "15"), 0); /* thawed after 15 s */
    long st;
    long long t0 = now_ms();
    json_t *j = call(s, "GET", "/readyz", NULL, NULL, &st, NULL);
    long long took = now_ms() - t0;
    assert_int_equal(st, 503);
    assert_string_equal(jstr(j, "status"), "queue unreachable");
    json_decref(j);
    if (took > 4000)
        fail_msg("/readyz took %lld ms on a silent database", took);
    sync_send_is_sent(s, "frozen");
    assert_int_equal(pg_verb("thaw", ""), 0);
    readyz_becomes(s, 200, "ready");
    char *after = post_async(s, "r@example.org", NULL);
    assert_int_equal(sent_once_or_unknown(s, p, after), 0);
    assert_int_equal(mpserve_stop_clean(s, 40000), 0);
    mpserve_free(s);
    assert_int_equal(msgs_total(p), 3);
    free(before);
    free(after);
    peer_stop(p);
}
#endif
