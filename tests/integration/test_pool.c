/*
 * tests/integration/test_pool.c - the worker pool and its SMTP connection
 * pool against the scriptable fake server (tests/fakes/fake_smtp.py):
 * delivery over pooled connections, connections the relay closes or
 * kills, and the outcome of each reply (421, no reply after the dot, 5xx,
 * a rejected recipient, 4xx retries).  Readiness, the queue's bound,
 * drain, queries, rotation, idle timeout, rate, the log line and bad
 * settings are test_pool_limits.c's; the fixture is tests/support/pool_fx.h.
 *
 * Every test starts its own fake with a JSON script, runs jobs through
 * pool_new/pool_submit/pool_drain, and checks what crossed the wire from the
 * fake's capture directory: messages.jsonl (one line per accepted message;
 * each test message has its own recipient "rcpt-N@example.org", so "exactly
 * once" is counted per N), conn-N.bin (the bytes of each connection: how
 * many connections, how many MAIL commands, whether QUIT was sent).
 */
#include "tests/support/pool_fx.h"

/* ---- tests ---- */

static void test_batch_delivered_exactly_once_over_pooled_connections(
    void **state)
{
    enum { N = 40 };
    struct fake f;
    struct cfg c;
    struct pool *pool;
    struct pool_stats st;
    int counts[N];

    (void)state;
    fake_start(&f, "{}");
    cfg_for(&c, f.port);
    pool = pool_start(&c);
    for (size_t i = 0; i < N; i++)
        submit_ok(pool, send_job(i));
    wait_done(N);
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(T.out[i].done_calls, 1);
        assert_int_equal(T.out[i].kind, SMTP_OK);
        assert_int_equal(T.out[i].code, 250);
        assert_int_equal(T.out[i].status, SMTP_DELIVERY_SENT);
        assert_int_equal(T.out[i].attempts, 1);
        assert_true(T.out[i].duration_ms > 0);
    }
    pool_stats(pool, &st);
    assert_true(st.conns_opened <= 2);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.workers, 4);
    assert_int_equal(st.conns_failed, 0);
    pool_end(pool);
    fake_deliveries(&f, counts, N);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(counts[i], 1);
    assert_int_equal(fake_lines(&f, "messages.jsonl"), N);
    assert_true(fake_conns(&f) <= 2); /* reuse */
    assert_int_equal(fake_count(&f, 0, "MAIL FROM:"), N);
    assert_int_equal(fake_count(&f, 0, "QUIT"), fake_conns(&f));
    fake_stop(&f);
}

static void test_unsolicited_421_on_idle_connection_is_replaced(void **state)
{
    struct fake f;
    struct cfg c;
    struct pool *pool;
    int counts[2];

    (void)state;
    /* After the first message the server pushes a 421 nobody asked for:
       it sits unread in the pooled connection and must not be taken as the
       answer to the next command. */
    fake_start(&f, "{\"rules\":[{\"match\":\"DOT\",\"conn\":1,\"times\":1,"
                   "\"inject\":\"421 4.4.2 fake.test idle timeout\\r\\n\"}]}");
    cfg_for(&c, f.port);
    c.pool.workers = 1;
    c.pool.connections = 1;
    pool = pool_start(&c);
    send_one(pool, 0);
    sleep_ms(100);
    send_one(pool, 1);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(T.out[i].status, SMTP_DELIVERY_SENT);
        assert_int_equal(T.out[i].attempts, 1);
    }
    pool_end(pool);
    fake_deliveries(&f, counts, 2);
    assert_int_equal(counts[0], 1);
    assert_int_equal(counts[1], 1);
    assert_int_equal(fake_conns(&f), 2);
    assert_int_equal(fake_count(&f, 1, "MAIL FROM:"), 1);
    assert_int_equal(fake_count(&f, 2, "MAIL FROM:"), 1);
    fake_stop(&f);
}

static void test_idle_connection_closed_by_server_is_replaced(void **state)
{
    struct fake f1, f2;
    struct cfg c;
    struct pool *pool;
    struct pool_stats st;
    int counts1[2], counts2[2];

    (void)state;
    fake_start(&f1, "{}");
    cfg_for(&c, f1.port);
    c.pool.workers = 1;
    c.pool.connections = 1;
    c.pool.retries = 0;
    pool = pool_start(&c);
    send_one(pool, 0);
    pool_stats(pool, &st);
    assert_int_equal(st.conns_idle, 1);
    /* The relay goes away (closing the idle pooled connection) and a new
       one comes up on the same port.  The fake logs a message just after
       its 250 went out: wait for that line before counting. */
    for (int i = 0; i < 300; i++) {
        fake_deliveries(&f1, counts1, 2);
        if (counts1[0] > 0)
            break;
        sleep_ms(10);
    }
    fake_stop(&f1);
    fake_start_on(&f2, "{}", c.relay.port);
    send_one(pool, 1);
    assert_int_equal(T.out[1].status, SMTP_DELIVERY_SENT);
    assert_int_equal(T.out[1].attempts, 1);
    pool_end(pool);
    fake_deliveries(&f2, counts2, 2);
    assert_int_equal(counts1[0] + counts2[0], 1);
    assert_int_equal(counts1[1] + counts2[1], 1);
    assert_int_equal(fake_conns(&f2), 1);
    assert_int_equal(fake_count(&f2, 0, "MAIL FROM:"), 1);
    fake_stop(&f2);
}

static void test_reused_connection_dead_at_rset_is_replaced_uncounted(
    void **state)
{
    struct fake f;
    struct cfg c;
    struct pool *pool;
    struct pool_stats st;
    int counts[2];

    (void)state;
    /* The stale connection passes the idle check but dies at RSET. */
    fake_start(&f, "{\"rules\":[{\"match\":\"^RSET\",\"conn\":1,"
                   "\"action\":\"drop\"}]}");
    cfg_for(&c, f.port);
    c.pool.workers = 1;
    c.pool.connections = 1;
    c.pool.retries = 0; /* a replacement is not a retry */
    pool = pool_start(&c);
    send_one(pool, 0);
    send_one(pool, 1);
    assert_int_equal(T.out[1].status, SMTP_DELIVERY_SENT);
    assert_int_equal(T.out[1].attempts, 1);
    pool_stats(pool, &st);
    assert_int_equal(st.retries, 1);
    pool_end(pool);
    fake_deliveries(&f, counts, 2);
    assert_int_equal(counts[0], 1);
    assert_int_equal(counts[1], 1);
    assert_int_equal(fake_conns(&f), 2);
    fake_stop(&f);
}

static void test_421_at_mail_retried_on_fresh_connection(void **state)
{
    struct fake f;
    struct cfg c;
    struct pool *pool;
    int counts[1];

    (void)state;
    fake_start(&f, "{\"rules\":[{\"match\":\"^MAIL\",\"conn\":1,"
                   "\"reply\":\"421 4.7.0 too busy\",\"action\":\"close\"}]}");
    cfg_for(&c, f.port);
    c.pool.connections = 1;
    pool = pool_start(&c);
    send_one(pool, 0);
    assert_int_equal(T.out[0].status, SMTP_DELIVERY_SENT);
    assert_int_equal(T.out[0].attempts, 2);
    pool_end(pool);
    fake_deliveries(&f, counts, 1);
    assert_int_equal(counts[0], 1);
    assert_int_equal(fake_conns(&f), 2);
    fake_stop(&f);
}

static void test_no_reply_after_dot_is_unknown_and_never_resent(void **state)
{
    struct fake f;
    struct cfg c;
    struct pool *pool;

    (void)state;
    fake_start(&f, "{\"rules\":[{\"match\":\"DOT\",\"action\":\"drop\"}]}");
    cfg_for(&c, f.port);
    c.pool.retries = 3;
    pool = pool_start(&c);
    send_one(pool, 0);
    assert_int_equal(T.out[0].status, SMTP_DELIVERY_UNKNOWN);
    assert_int_equal(T.out[0].attempts, 1);
    assert_int_equal(T.out[0].unreachable, 0);
    pool_end(pool);
    assert_int_equal(fake_count(&f, 0, "MAIL FROM:"), 1);
    assert_int_equal(fake_conns(&f), 1);
    assert_int_equal(fake_lines(&f, "messages.jsonl"), 0);
    assert_int_equal(fake_lines(&f, "rejected.jsonl"), 1);
    fake_stop(&f);
}

static void test_5xx_is_final_and_keeps_the_connection(void **state)
{
    struct fake f;
    struct cfg c;
    struct pool *pool;
    struct pool_stats st;

    (void)state;
    fake_start(&f, "{\"rules\":[{\"match\":\"^MAIL\",\"times\":1,"
                   "\"reply\":\"550 5.7.1 sender refused\"}]}");
    cfg_for(&c, f.port);
    c.pool.workers = 1;
    pool = pool_start(&c);
    send_one(pool, 0);
    assert_int_equal(T.out[0].kind, SMTP_ERR_REPLY);
    assert_int_equal(T.out[0].code, 550);
    assert_int_equal(T.out[0].status, SMTP_DELIVERY_FAILED);
    assert_int_equal(T.out[0].attempts, 1);
    send_one(pool, 1);
    assert_int_equal(T.out[1].status, SMTP_DELIVERY_SENT);
    pool_stats(pool, &st);
    assert_int_equal(st.conns_opened, 1);
    assert_int_equal(st.retries, 0);
    pool_end(pool);
    assert_int_equal(fake_count(&f, 0, "MAIL FROM:"), 2);
    fake_stop(&f);
}

static void test_rejected_recipient_is_700_and_final(void **state)
{
    struct fake f;
    struct cfg c;
    struct pool *pool;

    (void)state;
    fake_start(&f, "{\"rules\":[{\"match\":\"^RCPT\","
                   "\"reply\":\"550 5.1.1 no such user\"}]}");
    cfg_for(&c, f.port);
    pool = pool_start(&c);
    send_one(pool, 0);
    assert_int_equal(T.out[0].kind, SMTP_ERR_REJECTED);
    assert_int_equal(T.out[0].code, 700);
    assert_int_equal(T.out[0].status, SMTP_DELIVERY_REJECTED);
    assert_int_equal(T.out[0].attempts, 1);
    pool_end(pool);
    assert_int_equal(fake_count(&f, 0, "MAIL FROM:"), 1);
    fake_stop(&f);
}

static void test_4xx_retried_until_the_limit(void **state)
{
    struct fake f;
    struct cfg c;
    struct pool *pool;
    struct pool_stats st;

    (void)state;
    fake_start(&f, "{\"rules\":[{\"match\":\"^MAIL\","
                   "\"reply\":\"451 4.3.0 try again later\"}]}");
    cfg_for(&c, f.port);
    c.pool.retries = 2;
    pool = pool_start(&c);
    send_one(pool, 0);
    assert_int_equal(T.out[0].kind, SMTP_ERR_REPLY);
    assert_int_equal(T.out[0].code, 451);
    assert_int_equal(T.out[0].status, SMTP_DELIVERY_FAILED);
    assert_int_equal(T.out[0].attempts, 3);
    /* backoff 10 + 20 ms at least */
    assert_true(T.out[0].duration_ms >= 30);
    pool_stats(pool, &st);
    assert_int_equal(st.retries, 2);
    assert_int_equal(st.conns_opened, 1); /* a 451 keeps it */
    pool_end(pool);
    assert_int_equal(fake_count(&f, 0, "MAIL FROM:"), 3);
    assert_int_equal(fake_lines(&f, "messages.jsonl"), 0);
    fake_stop(&f);
}

/* A TCP port on 127.0.0.1 that nothing listens on. */

#define POOL_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    pthread_mutex_init(&T.mu, NULL);
    pthread_cond_init(&T.cv, NULL);
    const struct CMUnitTest tests[] = {
        POOL_TEST(test_batch_delivered_exactly_once_over_pooled_connections),
        POOL_TEST(test_unsolicited_421_on_idle_connection_is_replaced),
        POOL_TEST(test_idle_connection_closed_by_server_is_replaced),
        POOL_TEST(test_reused_connection_dead_at_rset_is_replaced_uncounted),
        POOL_TEST(test_421_at_mail_retried_on_fresh_connection),
        POOL_TEST(test_no_reply_after_dot_is_unknown_and_never_resent),
        POOL_TEST(test_5xx_is_final_and_keeps_the_connection),
        POOL_TEST(test_rejected_recipient_is_700_and_final),
        POOL_TEST(test_4xx_retried_until_the_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
