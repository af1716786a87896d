/*
 * direct.c - the queue's interface called directly, without the service:
 * the reaper after lapsed leases, and (PostgreSQL) a replica never
 * holding two claims of one message.
 */
#include <stdatomic.h>

#include "queue/queue_impl.h"

#include "tests/integration/queue/cases.h"
#include "tests/integration/queue/qfx.h"

/* Opens a queue of this backend (a new database, or a file in *dir, a
   new directory the caller removes) with lease_s. */
static struct queue *open_direct(double lease_s, char **dir)
{
    static char where[300];
    char err[512];
    struct queue_opts o = { .lease_s = lease_s,
                            .retention_s = 86400,
                            .idem_ttl_s = 86400 };
    struct queue *q;
    free(temp_queue(dir));
#ifdef QUEUE_TEST_PG
    snprintf(where, sizeof where,
             "host=127.0.0.1 port=%d user=postgres "
             "dbname=%s",
             pg.port, pg_db(NULL));
    o.backend = "postgres";
    o.url = where;
    o.password_file = pg.pwfile;
#else
    snprintf(where, sizeof where, "%s/queue.db", *dir);
    o.path = where;
#endif
    if (queue_open(&o, &q, err, sizeof err) < 0)
        fail_msg("queue_open: %s", err);
    return q;
}

/* Stores one message in q, waits until it is, and gives its id in m. */
static void enqueue_one(struct queue *q, char m[QUEUE_ID_LEN])
{
    struct queue_new msg = { .blob = "x", .blob_len = 1 };
    atomic_int done = 0;
    queue_new_id(msg.id);
    memcpy(m, msg.id, QUEUE_ID_LEN);
    assert_int_equal(queue_enqueue(q, &msg, 1, NULL, enqueued, &done),
                     QUEUE_OK);
    for (long long end = now_ms() + 5000; done == 0; sleep_ms(5))
        if (now_ms() > end)
            fail_msg("the enqueue did not finish");
    assert_int_equal(done, 1);
}

/* The state q holds for message id. */
static enum queue_state state_of(struct queue *q, const char *id)
{
    struct queue_doc doc;
    assert_int_equal(queue_get(q, id, &doc), QUEUE_OK);
    enum queue_state st = doc.state;
    queue_doc_clear(&doc);
    return st;
}

/* The reaper, once the leases of two claimed messages lapsed: the one
   never started goes back to queued (nothing of it went out); the
   started one ends unknown, never resent. */
void test_reaper_queues_the_unstarted_and_ends_the_started_unknown(void **state)
{
    (void)state;
    char *dir, m[QUEUE_ID_LEN], s[QUEUE_ID_LEN];
    struct queue *q = open_direct(60, &dir);
    struct queue_claimed *c;
    size_t n;
    unsigned long reaped = 0;
    enqueue_one(q, m);
    enqueue_one(q, s);
    assert_int_equal(queue_claim(q, (double)time(NULL) + 1, 10, 60, &c, &n),
                     QUEUE_OK);
    assert_int_equal(n, 2);
    queue_claimed_free(c, n);
    assert_int_equal(queue_start(q, s), QUEUE_OK);
    /* an hour on: both leases lapsed */
    assert_int_equal(q->ops->reap(q, (double)time(NULL) + 3600, &reaped),
                     QUEUE_OK);
    assert_int_equal(state_of(q, m), QUEUE_QUEUED);
    assert_int_equal(state_of(q, s), QUEUE_UNKNOWN);
    queue_close(q);
    ts_rmtree(dir);
    free(dir);
}

#ifdef QUEUE_TEST_PG
/* Opens replicas A (lease 60 s) and B (lease 1 s: its reaper acts
   within seconds) on database db. */
static void open_replicas(const char *db, struct queue **a, struct queue **b)
{
    char err[512], url[300];
    snprintf(url, sizeof url,
             "host=127.0.0.1 port=%d user=postgres "
             "dbname=%s",
             pg.port, db);
    struct queue_opts oa = { .backend = "postgres",
                             .url = url,
                             .password_file = pg.pwfile,
                             .lease_s = 60,
                             .retention_s = 86400,
                             .idem_ttl_s = 86400 };
    struct queue_opts ob = oa;
    ob.lease_s = 1;
    if (queue_open(&oa, a, err, sizeof err) < 0)
        fail_msg("open A: %s", err);
    if (queue_open(&ob, b, err, sizeof err) < 0)
        fail_msg("open B: %s", err);
}

/* Records message id's one attempt in q: sent, 250. */
static void record_sent(struct queue *q, const char *id)
{
    struct queue_attempt at = { .at = (double)time(NULL),
                                .code = 250,
                                .status = "sent",
                                .enhanced = "2.0.0",
                                .text = "ok",
                                .accepted = "r@example.org",
                                .rejected = "",
                                .error = "" };
    assert_int_equal(queue_record(q, id, &at, QUEUE_SENT, 0), QUEUE_OK);
}

/* Replica A holds a claimed, unstarted message whose lease lapsed (its
   renewals did not reach the database); replica B's reaper queues it
   again and A's next claim finds it: A must not get it a second time
   (two jobs would both start and send it), and the job A already holds
   starts it, once. */
void test_a_replica_never_holds_two_claims_of_one_message(void **state)
{
    (void)state;
    char sql[256], id[QUEUE_ID_LEN];
    const char *db = pg_db(NULL);
    struct queue *a, *b;
    open_replicas(db, &a, &b);
    enqueue_one(a, id);
    struct queue_claimed *c;
    size_t n;
    assert_int_equal(queue_claim(a, (double)time(NULL) + 1, 10, 60, &c, &n),
                     QUEUE_OK);
    assert_int_equal(n, 1);
    queue_claimed_free(c, n);
    snprintf(sql, sizeof sql,
             "UPDATE mailpool_messages SET lease_until ="
             " 1 WHERE id = '%s'",
             id);
    free(pg_sql(db, sql)); /* A's renewals failed meanwhile */
    for (long long end = now_ms() + 8000;
         pg_count(db, "SELECT count(*) FROM mailpool_messages WHERE"
                      " state = 0") != 1;
         sleep_ms(100))
        if (now_ms() > end)
            fail_msg("B's reaper did not queue the lapsed claim again");
    assert_int_equal(queue_claim(a, (double)time(NULL) + 1, 10, 60, &c, &n),
                     QUEUE_OK);
    assert_int_equal(n, 0); /* held here already */
    queue_claimed_free(c, n);
    assert_int_equal(queue_start(a, id), QUEUE_OK);
    record_sent(a, id);
    assert_int_equal(queue_claim(b, (double)time(NULL) + 1, 10, 1, &c, &n),
                     QUEUE_OK);
    assert_int_equal(n, 0);
    queue_claimed_free(c, n);
    queue_close(b);
    queue_close(a);
}
#endif
