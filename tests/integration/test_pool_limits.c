/*
 * tests/integration/test_pool_limits.c - the worker pool's limits and
 * life against the scriptable fake server: an unreachable relay and
 * readiness, the full queue, drain (in flight finished, the deadline),
 * queries on a pooled connection, messages per connection, the idle
 * timeout, the rate limit, the log line, and settings refused.  Delivery
 * and the replies' outcomes are test_pool.c's; the fixture is
 * tests/support/pool_fx.h.  What crossed the wire is read from the fake's
 * capture directory (messages.jsonl, conn-N.bin).
 */
#include "tests/support/pool_fx.h"

static int closed_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static void test_unreachable_relay_is_flagged(void **state)
{
    struct cfg c;
    struct pool *pool;
    struct pool_stats st;

    (void)state;
    cfg_for(&c, closed_port());
    c.pool.retries = 2;
    pool = pool_start(&c);
    assert_int_equal(pool_ready(pool), 0);
    send_one(pool, 0);
    assert_int_equal(T.out[0].kind, SMTP_ERR_CONN);
    assert_int_equal(T.out[0].status, SMTP_DELIVERY_FAILED);
    assert_int_equal(T.out[0].attempts, 3);
    assert_int_equal(T.out[0].unreachable, 1);
    pool_stats(pool, &st);
    assert_int_equal(st.conns_failed, 3);
    assert_int_equal(st.conns_open, 0);
    pool_end(pool);
}

static void test_ready_when_relay_answers(void **state)
{
    struct fake f;
    struct cfg c;
    struct pool *pool;

    (void)state;
    fake_start(&f, "{}");
    cfg_for(&c, f.port);
    pool = pool_start(&c);
    assert_int_equal(pool_ready(pool), 1); /* by a probe */
    assert_int_equal(fake_conns(&f), 1);
    assert_int_equal(pool_ready(pool), 1); /* cached: no probe */
    assert_int_equal(fake_conns(&f), 1);
    assert_int_equal(fake_count(&f, 1, "QUIT"), 1);
    send_one(pool, 0);
    assert_int_equal(pool_ready(pool), 1); /* an open conn */
    pool_end(pool);
    fake_stop(&f);
}

/* Waits until the pool reports n busy workers. */
static void wait_busy(struct pool *pool, size_t n)
{
    double deadline = now_s() + 10;
    struct pool_stats st;

    do {
        pool_stats(pool, &st);
        if (st.busy_workers >= n)
            return;
        sleep_ms(5);
    } while (now_s() < deadline);
    fail_msg("workers never got busy");
}

static void test_full_queue_answers_at_once(void **state)
{
    struct fake f;
    struct cfg c;
    struct pool *pool;
    struct pool_stats st;
    struct job *extra;
    double t0;
    int counts[3];

    (void)state;
    fake_start(&f, "{\"rules\":[{\"match\":\"DOT\","
                   "\"action\":\"delay:0.5\"}]}");
    cfg_for(&c, f.port);
    c.pool.workers = 1;
    c.pool.queue = 2;
    pool = pool_start(&c);
    submit_ok(pool, send_job(0));
    wait_busy(pool, 1);
    submit_ok(pool, send_job(1));
    submit_ok(pool, send_job(2));
    extra = send_job(3);
    t0 = now_s();
    assert_int_equal(pool_submit(pool, extra), POOL_FULL);
    assert_true(now_s() - t0 < 0.05); /* never blocks */
    pool_stats(pool, &st);
    assert_int_equal(st.queued, 2);
    assert_int_equal(st.busy_workers, 1);
    job_free(extra); /* still ours */
    wait_done(3);
    pool_end(pool);
    fake_deliveries(&f, counts, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(counts[i], 1);
    fake_stop(&f);
}

static void test_drain_finishes_in_flight_and_quits(void **state)
{
    enum { N = 6 };
    struct fake f;
    struct cfg c;
    struct pool *pool;
    struct pool_stats st;
    struct job *late;
    int counts[N];

    (void)state;
    fake_start(&f, "{\"rules\":[{\"match\":\"DOT\","
                   "\"action\":\"delay:0.2\"}]}");
    cfg_for(&c, f.port);
    c.pool.workers = 2;
    pool = pool_start(&c);
    for (size_t i = 0; i < N; i++)
        submit_ok(pool, send_job(i));
    wait_busy(pool, 1);
    pool_drain(pool, 10);
    assert_int_equal(T.done, N); /* all answered */
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(T.out[i].done_calls, 1);
        assert_int_equal(T.out[i].status, SMTP_DELIVERY_SENT);
    }
    late = send_job(N);
    assert_int_equal(pool_submit(pool, late), POOL_DRAINING);
    job_free(late);
    pool_stats(pool, &st);
    assert_int_equal(st.draining, 1);
    assert_int_equal(st.conns_open, 0);
    pool_drain(pool, 10); /* twice is harmless */
    pool_free(pool);
    fake_deliveries(&f, counts, N);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(counts[i], 1);
    assert_int_equal(fake_count(&f, 0, "QUIT"), fake_conns(&f));
    fake_stop(&f);
}

static void test_drain_deadline_fails_queued_without_sending(void **state)
{
    struct fake f;
    struct cfg c;
    struct pool *pool;
    int counts[3];

    (void)state;
    fake_start(&f, "{\"rules\":[{\"match\":\"DOT\","
                   "\"action\":\"delay:0.8\"}]}");
    cfg_for(&c, f.port);
    c.pool.workers = 1;
    c.pool.connections = 1;
    pool = pool_start(&c);
    for (size_t i = 0; i < 3; i++)
        submit_ok(pool, send_job(i));
    wait_busy(pool, 1);
    pool_drain(pool, 0);
    assert_int_equal(T.done, 3);
    assert_int_equal(T.out[0].status, SMTP_DELIVERY_SENT); /* in flight */
    for (size_t i = 1; i < 3; i++) {
        assert_int_equal(T.out[i].done_calls, 1);
        assert_int_equal(T.out[i].kind, SMTP_ERR_LOCAL);
        assert_int_equal(T.out[i].status, SMTP_DELIVERY_FAILED);
        assert_int_equal(T.out[i].attempts, 0);
        assert_string_equal(T.out[i].message,
                            "mailpool is shutting down; not sent");
    }
    pool_free(pool);
    fake_deliveries(&f, counts, 3);
    assert_int_equal(counts[0], 1);
    assert_int_equal(counts[1], 0);
    assert_int_equal(fake_count(&f, 0, "MAIL FROM:"), 1);
    fake_stop(&f);
}

static void test_queries_run_on_a_pooled_connection(void **state)
{
    struct fake f;
    struct cfg c;
    struct pool *pool;
    struct pool_stats st;

    (void)state;
    fake_start(&f, "{}");
    cfg_for(&c, f.port);
    c.pool.workers = 1;
    pool = pool_start(&c);
    submit_ok(pool, query_job(JOB_VERIFY, "postmaster", 0));
    wait_done(1);
    submit_ok(pool, query_job(JOB_HELP, NULL, 1));
    wait_done(2);
    submit_ok(pool, query_job(JOB_EXPAND, "staff", 2));
    wait_done(3);
    send_one(pool, 3);
    assert_int_equal(T.out[0].kind, SMTP_OK);
    assert_int_equal(T.out[0].code, 252);
    assert_int_equal(T.out[1].code, 214);
    assert_int_equal(T.out[2].kind, SMTP_ERR_REPLY);
    assert_int_equal(T.out[2].code, 502);
    assert_int_equal(T.out[2].attempts, 1);
    assert_int_equal(T.out[3].status, SMTP_DELIVERY_SENT);
    pool_stats(pool, &st);
    assert_int_equal(st.conns_opened, 1);
    pool_end(pool);
    assert_int_equal(fake_count(&f, 1, "VRFY postmaster"), 1);
    fake_stop(&f);
}

static void test_messages_per_conn_rotates_connections(void **state)
{
    struct fake f;
    struct cfg c;
    struct pool *pool;

    (void)state;
    fake_start(&f, "{}");
    cfg_for(&c, f.port);
    c.pool.workers = 1;
    c.pool.messages_per_conn = 2;
    pool = pool_start(&c);
    for (size_t i = 0; i < 5; i++)
        send_one(pool, i);
    pool_end(pool);
    assert_int_equal(fake_conns(&f), 3);
    assert_int_equal(fake_count(&f, 1, "MAIL FROM:"), 2);
    assert_int_equal(fake_count(&f, 1, "QUIT"), 1);
    assert_int_equal(fake_count(&f, 3, "MAIL FROM:"), 1);
    fake_stop(&f);
}

static void test_idle_timeout_quits_connection(void **state)
{
    struct fake f;
    struct cfg c;
    struct pool *pool;
    struct pool_stats st;

    (void)state;
    fake_start(&f, "{}");
    cfg_for(&c, f.port);
    c.pool.idle_timeout = 1;
    pool = pool_start(&c);
    send_one(pool, 0);
    pool_stats(pool, &st);
    assert_int_equal(st.conns_open, 1);
    assert_int_equal(st.conns_idle, 1);
    sleep_ms(2300);
    pool_stats(pool, &st);
    assert_int_equal(st.conns_open, 0);
    assert_int_equal(fake_count(&f, 1, "QUIT"), 1);
    send_one(pool, 1); /* opens a new one */
    assert_int_equal(T.out[1].status, SMTP_DELIVERY_SENT);
    pool_end(pool);
    assert_int_equal(fake_conns(&f), 2);
    fake_stop(&f);
}

static void test_rate_limit_spaces_sends_across_workers(void **state)
{
    enum { N = 10 };
    struct fake f;
    struct cfg c;
    struct pool *pool;
    double t0;

    (void)state;
    fake_start(&f, "{}");
    cfg_for(&c, f.port);
    c.pool.workers = 4;
    c.pool.rate = 20; /* one per 50 ms */
    pool = pool_start(&c);
    t0 = now_s();
    for (size_t i = 0; i < N; i++)
        submit_ok(pool, send_job(i));
    wait_done(N);
    assert_true(now_s() - t0 >= (N - 1) * 0.05 - 0.01);
    pool_end(pool);
    assert_int_equal(fake_lines(&f, "messages.jsonl"), N);
    fake_stop(&f);
}

static void test_smtp_log_line_has_ids_but_no_addresses_or_body(void **state)
{
    struct fake f;
    struct cfg c;
    struct pool *pool;
    char path[256];
    int saved, fd;
    char *out;

    (void)state;
    fake_start(&f, "{}");
    cfg_for(&c, f.port);
    snprintf(path, sizeof path, "%s/stderr.log", f.dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
    log_set_level("debug");
    pool = pool_start(&c);
    send_one(pool, 0);
    pool_end(pool);
    log_set_level("error");
    dup2(saved, STDERR_FILENO);
    close(saved);
    out = read_file(path, NULL);
    assert_non_null(out);
    assert_non_null(strstr(out, "\"event\":\"smtp\""));
    assert_non_null(strstr(out, "\"request_id\":\"req-0\""));
    assert_non_null(strstr(out, "\"status\":\"sent\""));
    assert_non_null(strstr(out, "\"code\":250"));
    assert_non_null(strstr(out, "\"attempts\":1"));
    assert_non_null(strstr(out, "\"message_id\":\"<"));
    assert_null(strstr(out, "example.org\""));
    assert_null(strstr(out, "rcpt-0"));
    assert_null(strstr(out, "sender@"));
    assert_null(strstr(out, "secret body"));
    for (char *line = out, *nl; (nl = strchr(line, '\n')) != NULL;
         line = nl + 1) {
        json_error_t err;
        *nl = '\0';
        json_t *j = json_loads(line, 0, &err);
        if (j == NULL)
            fail_msg("log line not JSON: %s", line);
        json_decref(j);
    }
    free(out);
    fake_stop(&f);
}

static void test_bad_settings_refused(void **state)
{
    struct cfg c;
    char err[256] = "";

    (void)state;
    cfg_for(&c, 25);
    c.pool.workers = 0;
    assert_null(pool_new(&c, err, sizeof err));
    assert_non_null(strstr(err, "pool.workers"));
    cfg_for(&c, 25);
    c.relay.tls = NULL; /* never plaintext by default */
    assert_null(pool_new(&c, err, sizeof err));
    assert_non_null(strstr(err, "relay.tls"));
}

#define POOL_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    pthread_mutex_init(&T.mu, NULL);
    pthread_cond_init(&T.cv, NULL);
    const struct CMUnitTest tests[] = {
        POOL_TEST(test_unreachable_relay_is_flagged),
        POOL_TEST(test_ready_when_relay_answers),
        POOL_TEST(test_full_queue_answers_at_once),
        POOL_TEST(test_drain_finishes_in_flight_and_quits),
        POOL_TEST(test_drain_deadline_fails_queued_without_sending),
        POOL_TEST(test_queries_run_on_a_pooled_connection),
        POOL_TEST(test_messages_per_conn_rotates_connections),
        POOL_TEST(test_idle_timeout_quits_connection),
        POOL_TEST(test_rate_limit_spaces_sends_across_workers),
        POOL_TEST(test_smtp_log_line_has_ids_but_no_addresses_or_body),
        POOL_TEST(test_bad_settings_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
