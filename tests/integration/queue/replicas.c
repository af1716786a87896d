/*
 * replicas.c - several replicas sharing one PostgreSQL database: batches
 * delivered exactly once, a killed replica's claims, 10,000 messages over
 * two and four replicas, retention of the claim log, ten replicas
 * migrating at once.  Empty in the SQLite build.
 */
#include <pthread.h>
#include <signal.h>

#include "tests/integration/queue/cases.h"
#include "tests/integration/queue/qfx.h"

#ifdef QUEUE_TEST_PG
/* POSTs n messages (to <tag>0..<tag><n-1> at example.org) as one async
   batch through s; their ids (caller frees each and the array). */
static char **post_batch_to(struct mpserve *s, const char *tag, size_t n)
{
    size_t cap = 200 + n * (120 + strlen(tag)), len = 0;
    char *body = malloc(cap), **ids = calloc(n, sizeof *ids);
    long st;
    assert_non_null(body);
    assert_non_null(ids);
    len += (size_t)snprintf(body, cap, "{\"messages\":[");
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(body + len, cap - len,
                                "%s{\"from\":\"s@example.org\",\"to\":"
                                "[\"%s%zu@example.org\"],\"body\":\"m%zu\"}",
                                i ? "," : "", tag, i, i);
    snprintf(body + len, cap - len, "]}");
    json_t *j = call(s, "POST", "/v1/messages/batch", ASYNC, body, &st, NULL);
    free(body);
    assert_int_equal(st, 202);
    json_t *res = json_object_get(j, "results");
    assert_int_equal(json_array_size(res), n);
    for (size_t i = 0; i < n; i++)
        ids[i] = strdup(jstr(json_array_get(res, i), "id"));
    json_decref(j);
    return ids;
}

/* POSTs n messages (to r0..r<n-1>) as one async batch through s; their
   ids (caller frees each and the array). */
static char **post_batch(struct mpserve *s, size_t n)
{
    return post_batch_to(s, "r", n);
}

/* Three replicas on one database, 300 messages posted through one: each
   reaches the relay exactly once, whichever replica sent it; the claim
   log holds one claim per message, by more than one replica. */
void test_three_replicas_deliver_a_batch_exactly_once(void **state)
{
    (void)state;
    enum { N = 300, R = 3 };
    struct peer *p = relay("{'rules': [{'match': '^DOT$', "
                           "'action': 'delay:0.01'}]}");
    static const char *const two[] = { "--pool-workers", "2",
                                       "--pool-connections", "2", NULL };
    struct mpserve *s[R];
    for (int r = 0; r < R; r++)
        s[r] = svc(p, "replicas-batch", two);
    char **ids = post_batch(s[0], N);
    for (size_t i = 0; i < N; i++) {
        json_t *d = wait_final(s[i % R], ids[i], 60000);
        assert_string_equal(jstr(d, "status"), "sent");
        if (copies(p, jstr(d, "message_id")) != 1)
            fail_msg("%s reached the relay %zu times", ids[i],
                     copies(p, jstr(d, "message_id")));
        json_decref(d);
        free(ids[i]);
    }
    free(ids);
    for (int r = 0; r < R; r++) {
        assert_int_equal(mpserve_stop_clean(s[r], 10000), 0);
        mpserve_free(s[r]);
    }
    const char *db = pg_db("replicas-batch");
    assert_int_equal(msgs_total(p), N);
    assert_int_equal(pg_count(db, "SELECT count(*) FROM mailpool_claims"), N);
    assert_int_equal(pg_count(db, "SELECT count(*) FROM (SELECT message"
                                  " FROM mailpool_claims GROUP BY message"
                                  " HAVING count(*) > 1) d"),
                     0);
    assert_true(pg_count(db, "SELECT count(DISTINCT owner) FROM"
                             " mailpool_claims") >= 2);
    peer_stop(p);
}

/* Waits (at most 10 s) until the relay has two connections and four
   messages of database db are claimed. */
static void wait_four_claimed(struct peer *p, const char *db)
{
    for (long long end = now_ms() + 10000;; sleep_ms(20)) {
        if (peer_conn_count(p) >= 2 &&
            pg_count(db, "SELECT count(*) FROM mailpool_messages WHERE"
                         " state = 2") >= 4)
            break;
        if (now_ms() > end)
            fail_msg("the first replica never had four messages claimed");
    }
}

/* The two claimed but never started: claimed by the dead replica and by
   the other, one attempt each (the first claim uncounted), sent; no
   other message claimed twice. */
static void assert_unstarted_claimed_twice_sent_once(const char *db)
{
    assert_int_equal(pg_count(db, "SELECT count(*) FROM (SELECT message"
                                  " FROM mailpool_claims GROUP BY message"
                                  " HAVING count(DISTINCT owner) = 2 AND"
                                  " count(*) = 2) d"),
                     2);
    assert_int_equal(pg_count(db, "SELECT count(*) FROM (SELECT message"
                                  " FROM mailpool_claims GROUP BY message"
                                  " HAVING count(*) > 1) d"),
                     2);
    assert_int_equal(pg_count(db, "SELECT count(*) FROM mailpool_messages m"
                                  " WHERE state = 4 AND attempts = 1 AND id IN"
                                  " (SELECT message FROM mailpool_claims GROUP"
                                  " BY message HAVING count(*) = 2) AND (SELECT"
                                  " count(*) FROM mailpool_attempts WHERE"
                                  " message = m.id) = 1"),
                     2);
}

/* A replica killed (SIGKILL) with two messages on the wire (their final
   dot unanswered) and two more claimed but waiting for a worker (pool of
   two): once the lease ends, another replica's reaper makes the two on
   the wire unknown, never sent again, and queues the two never started
   again; the other replica sends those and every message the dead one
   never claimed, each exactly once.  The claim log shows the two
   unstarted ones claimed by both replicas, every other message once. */
void test_replica_killed_started_end_unknown_unstarted_sent_once(void **state)
{
    (void)state;
    enum { N = 8 };
    struct peer *p = relay("{'rules': [{'match': '^DOT$', 'times': 2, "
                           "'action': 'hang'}]}");
    static const char *const two[] = { "--pool-workers", "2",
                                       "--pool-connections", "2", NULL };
    struct mpserve *a = svc(p, "replicas-kill", two);
    char **ids = post_batch(a, N);
    const char *db = pg_db("replicas-kill");
    wait_four_claimed(p, db);
    sleep_ms(500); /* both dots are out, unanswered */
    long claimed = pg_count(db, "SELECT count(*) FROM mailpool_claims");
    assert_int_equal(claimed, 4); /* two on the wire, two waiting */
    mpserve_signal(a, SIGKILL);
    mpserve_wait(a, 5000);
    mpserve_free(a);
    struct mpserve *b = svc(p, "replicas-kill", NULL);
    size_t unknown = 0, sent = 0;
    for (size_t i = 0; i < N; i++) {
        int u = sent_once_or_unknown(b, p, ids[i]);
        unknown += u;
        sent += !u;
        free(ids[i]);
    }
    free(ids);
    sleep_ms(500); /* nothing more is sent */
    assert_int_equal(mpserve_stop_clean(b, 10000), 0);
    mpserve_free(b);
    /* The two on the wire ended unknown, with the reaper's attempt; the
       six others were sent, once each (the relay took six). */
    assert_int_equal(unknown, 2);
    assert_int_equal(sent, N - 2);
    assert_int_equal(msgs_total(p), N - 2);
    assert_int_equal(pg_count(db, "SELECT count(*) FROM mailpool_attempts"
                                  " WHERE status = 'unknown' AND code = 421"),
                     2);
    assert_unstarted_claimed_twice_sent_once(db);
    peer_stop(p);
}

/* 1 when the relay took, over all its connections, each of the n
   recipients <tag><i>@example.org of every batch (tags b0.., nb of them,
   per of each) exactly once, and nothing else. */
static int relay_took_each_once(struct peer *p, size_t nb, size_t per)
{
    struct peer_msg *m = NULL;
    size_t n = 0, bad = 0;
    unsigned char *seen = calloc(nb * per, 1);
    assert_non_null(seen);
    assert_int_equal(peer_messages(p, &m, &n), 0);
    for (size_t i = 0; i < n; i++) {
        size_t b, k;
        char at[32];
        if (m[i].nrcpt != 1 ||
            sscanf(m[i].rcpt_to[0], "b%zu-%zu@%31s", &b, &k, at) != 3 ||
            b >= nb || k >= per || seen[b * per + k]++ != 0)
            bad++;
    }
    for (size_t i = 0; i < nb * per; i++)
        bad += seen[i] != 1;
    if (bad != 0 || n != nb * per)
        fprintf(stderr, "relay took %zu messages for %zu, %zu wrong\n", n,
                nb * per, bad);
    peer_msgs_free(m, n);
    free(seen);
    return bad == 0 && n == nb * per;
}

/* R replicas on database name (4 workers, 4 connections each), NB async
   batches of PER messages posted round-robin across them: every message
   ends sent, the counting relay took each exactly once, and the claim
   log holds one claim per message, spread over every replica. */
static void scale_run(const char *name, int R, size_t NB, size_t PER)
{
    static const char *const four[] = { "--pool-workers", "4",
                                        "--pool-connections", "4", NULL };
    struct peer *p = relay("{}");
    struct mpserve *s[4];
    long long t0;
    size_t N = NB * PER;
    char tag[32], sql[128];
    assert_true(R <= 4);
    for (int r = 0; r < R; r++)
        s[r] = svc(p, name, four);
    const char *db = pg_db(name);
    t0 = now_ms();
    for (size_t b = 0; b < NB; b++) {
        snprintf(tag, sizeof tag, "b%zu-", b);
        char **ids = post_batch_to(s[b % (size_t)R], tag, PER);
        for (size_t i = 0; i < PER; i++)
            free(ids[i]);
        free(ids);
    }
    long long posted = now_ms();
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM mailpool_messages"
             " WHERE state = 4");
    for (long long end = now_ms() + 240000; pg_count(db, sql) < (long)N;
         sleep_ms(250))
        if (now_ms() > end)
            fail_msg("%ld of %zu sent in 240 s", pg_count(db, sql), N);
    fprintf(stderr,
            "%d replicas: %zu messages posted in %lld ms, all sent"
            " after %lld ms\n",
            R, N, posted - t0, now_ms() - t0);
    for (int r = 0; r < R; r++) {
        assert_int_equal(mpserve_stop_clean(s[r], 20000), 0);
        mpserve_free(s[r]);
    }
    assert_true(relay_took_each_once(p, NB, PER));
    assert_int_equal(pg_count(db, "SELECT count(*) FROM mailpool_messages"),
                     (long)N);
    assert_int_equal(pg_count(db, "SELECT count(*) FROM mailpool_claims"),
                     (long)N);
    assert_int_equal(pg_count(db, "SELECT count(*) FROM (SELECT message"
                                  " FROM mailpool_claims GROUP BY message"
                                  " HAVING count(*) > 1) d"),
                     0);
    assert_int_equal(pg_count(db, "SELECT count(DISTINCT owner) FROM"
                                  " mailpool_claims"),
                     R);
    peer_stop(p);
}

/* Two replicas on one database, 10,000 messages posted across both:
   each delivered exactly once, each claimed once. */
void test_two_replicas_deliver_10000_messages_exactly_once(void **state)
{
    (void)state;
    scale_run("scale-two", 2, 20, 500);
}

/* Four replicas on one database, 10,000 messages posted across them:
   each delivered exactly once, each claimed once, by all four. */
void test_four_replicas_deliver_10000_messages_exactly_once(void **state)
{
    (void)state;
    scale_run("scale-four", 4, 20, 500);
}

/* Finished messages past queue.retention are purged with their attempts
   and their rows in the claim log (which would otherwise grow for ever):
   a replica started after the retention purges at its first reap. */
void test_retention_purges_messages_with_their_claim_log(void **state)
{
    (void)state;
    static const char *const keep1[] = { "--queue-retention", "1", NULL };
    struct peer *p = relay("{}");
    struct mpserve *s = svc(p, "retention", keep1);
    char **ids = post_batch(s, 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *d = wait_final(s, ids[i], 10000);
        assert_string_equal(jstr(d, "status"), "sent");
        json_decref(d);
        free(ids[i]);
    }
    free(ids);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    const char *db = pg_db("retention");
    assert_int_equal(pg_count(db, "SELECT count(*) FROM mailpool_claims"), 3);
    sleep_ms(1500); /* past the retention */
    s = svc(p, "retention", keep1);
    for (long long end = now_ms() + 10000;
         pg_count(db, "SELECT count(*)"
                      " FROM mailpool_messages") > 0;
         sleep_ms(100))
        if (now_ms() > end)
            fail_msg("finished messages were not purged");
    sleep_ms(300); /* the purge's last statements */
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    assert_int_equal(pg_count(db, "SELECT count(*) FROM mailpool_attempts"), 0);
    assert_int_equal(pg_count(db, "SELECT count(*) FROM mailpool_claims"), 0);
    assert_int_equal(msgs_total(p), 3);
    peer_stop(p);
}

struct starter {
    struct peer *p;
    struct mpserve *s;
};

/* Starts one replica on the database "replicas-ten" (made before): no
   cmocka assertion here, off the test's thread; NULL when it failed. */
static void *start_one(void *arg)
{
    struct starter *st = arg;
    const char *argv[16];
    char url[300];
    size_t n = 0;
    queue_flags(argv, &n, "replicas-ten", url, sizeof url);
    argv[n] = NULL;
    st->s = mpserve_start(peer_port(st->p), argv);
    return NULL;
}

/* Ten replicas starting at once on a new database: every one starts, and
   the schema was migrated once (one row per version). */
void test_ten_replicas_starting_at_once_migrate_once(void **state)
{
    (void)state;
    enum { R = 10 };
    struct peer *p = relay("{}");
    struct starter st[R];
    pthread_t t[R];
    const char *db = pg_db("replicas-ten"); /* created, empty */
    for (int r = 0; r < R; r++) {
        st[r].p = p;
        st[r].s = NULL;
        assert_int_equal(pthread_create(&t[r], NULL, start_one, &st[r]), 0);
    }
    int up = 0;
    for (int r = 0; r < R; r++) {
        pthread_join(t[r], NULL);
        up += st[r].s != NULL;
    }
    if (up < R) {
        for (int r = 0; r < R; r++)
            mpserve_free(st[r].s);
        fail_msg("%d of %d replicas did not start", R - up, R);
    }
    char *id = post_async(st[R - 1].s, "r@example.org", NULL);
    json_t *d = wait_final(st[0].s, id, 10000);
    assert_string_equal(jstr(d, "status"), "sent");
    json_decref(d);
    free(id);
    for (int r = 0; r < R; r++) {
        assert_int_equal(mpserve_stop_clean(st[r].s, 10000), 0);
        mpserve_free(st[r].s);
    }
    /* Each schema version applied once (four today), all by one of
       the ten. */
    assert_int_equal(pg_count(db, "SELECT count(*) FROM"
                                  " mailpool_migrations"),
                     4);
    assert_int_equal(pg_count(db, "SELECT count(DISTINCT version) FROM"
                                  " mailpool_migrations"),
                     4);
    assert_int_equal(pg_count(db, "SELECT count(DISTINCT applied_by) FROM"
                                  " mailpool_migrations"),
                     1);
    peer_stop(p);
}
#endif
