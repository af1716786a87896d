/*
 * crash.c - the service killed or stopped while it sends, on each
 * backend: SIGKILL while sending makes the message unknown, never resent;
 * claimed but unstarted messages are sent once after the restart; the
 * crash matrix (QUEUE_CRASH_RUNS kills at random moments, 20 unless set:
 * every 202 final, none lost, none at the relay twice); SIGTERM leaves
 * the rest queued for the next start.
 */
#include <signal.h>

#include "tests/integration/queue/cases.h"
#include "tests/integration/queue/qfx.h"

/* The relay's script: the first message's final dot is never answered. */
#define HANG_FIRST_DOT \
    "{'rules': [{'match': '^DOT$', 'times': 1, 'action': 'hang'}]}"

/* One worker with one connection. */
static const char *const one[] = { "--pool-workers", "1", "--pool-connections",
                                   "1", NULL };

/* Kills the service s with SIGKILL, waits for it and frees it. */
static void kill_hard(struct mpserve *s)
{
    mpserve_signal(s, SIGKILL);
    mpserve_wait(s, 5000);
    mpserve_free(s);
}

/* SIGKILL with the message's final dot unanswered: after the restart it
   is unknown and never sent again (one MAIL at the relay). */
void test_sigkill_while_sending_makes_it_unknown_never_resent(void **state)
{
    (void)state;
    struct peer *p = relay(HANG_FIRST_DOT);
    char *dir, *q = temp_queue(&dir);
    struct mpserve *s = svc(p, q, NULL);
    char *id = post_async(s, "r@example.org", NULL);
    long st;
    for (long long end = now_ms() + 5000; now_ms() < end; sleep_ms(20)) {
        json_t *j = status_of(s, id, &st);
        int sending = strcmp(jstr(j, "status"), "sending") == 0;
        json_decref(j);
        if (sending)
            break;
    }
    sleep_ms(300); /* the dot is out, unanswered */
    kill_hard(s);
    s = svc(p, q, NULL);
    json_t *d = wait_final(s, id, 10000); /* PostgreSQL: after the lease */
    assert_string_equal(jstr(d, "status"), "unknown");
    json_decref(d);
    sleep_ms(500); /* nothing is sent again */
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    assert_int_equal(count_mail_commands(p), 1);
    free(id);
    free(q);
    ts_rmtree(dir);
    free(dir);
    peer_stop(p);
}

/* SIGKILL with one message on the wire (its final dot unanswered) and a
   second claimed but waiting for the one worker: after the restart (on
   PostgreSQL, once the lease ends) the first is unknown, never resent,
   and the second, never started, is sent once. */
void test_sigkill_leaves_the_unstarted_claim_queued_sent_once(void **state)
{
    (void)state;
    struct peer *p = relay(HANG_FIRST_DOT);
    char *dir, *q = temp_queue(&dir);
    struct mpserve *s = svc(p, q, one);
    char *first = post_async(s, "r1@example.org", NULL);
    for (long long end = now_ms() + 5000; count_mail_commands(p) < 1;
         sleep_ms(20))
        if (now_ms() > end)
            fail_msg("the first message never reached the relay");
    char *second = post_async(s, "r2@example.org", NULL);
    long st;
    for (long long end = now_ms() + 5000;; sleep_ms(20)) {
        json_t *j = status_of(s, second, &st);
        int sending = strcmp(jstr(j, "status"), "sending") == 0;
        json_decref(j);
        if (sending)
            break;
        if (now_ms() > end)
            fail_msg("the second message was never claimed");
    }
    sleep_ms(300); /* the dot is out, unanswered */
    kill_hard(s);
    s = svc(p, q, NULL);
    json_t *d = wait_final(s, first, 10000);
    assert_string_equal(jstr(d, "status"), "unknown");
    json_decref(d);
    d = wait_final(s, second, 10000);
    assert_string_equal(jstr(d, "status"), "sent");
    assert_int_equal(json_array_size(json_object_get(d, "attempts")), 1);
    assert_int_equal(copies(p, jstr(d, "message_id")), 1);
    json_decref(d);
    sleep_ms(500); /* nothing is sent again */
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    assert_int_equal(count_mail_commands(p), 2);
    assert_int_equal(msgs_total(p), 1);
    free(first);
    free(second);
    free(q);
    ts_rmtree(dir);
    free(dir);
    peer_stop(p);
}

#ifndef QUEUE_TEST_PG
/* How many of ids[0..n) GET /v1/messages/{id} calls `sending`. */
static size_t count_sending(struct mpserve *s, char *const *ids, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        long st;
        json_t *j = status_of(s, ids[i], &st);
        k += st == 200 && strcmp(jstr(j, "status"), "sending") == 0;
        json_decref(j);
    }
    return k;
}

/* SQLite: one worker keeps up to a chain's worth of messages claimed (16;
   claims of at least half of it), not two, so that its connection can
   carry them as one chain; SIGKILL with the first on the wire (its dot
   unanswered) and at least 8 more claimed but never started: after the
   restart the first is unknown, never resent, and every other message of
   the 20 reaches the relay exactly once. */
void test_one_worker_claims_sixteen_sigkill_sends_the_unstarted_once(
    void **state)
{
    (void)state;
    enum { N = 20 };
    struct peer *p = relay(HANG_FIRST_DOT);
    char *dir, *q = temp_queue(&dir);
    struct mpserve *s = svc(p, q, one);
    char *ids[N];
    for (size_t i = 0; i < N; i++) {
        char to[64];
        snprintf(to, sizeof to, "r%zu@example.org", i);
        ids[i] = post_async(s, to, NULL);
    }
    size_t sending = 0;
    for (long long end = now_ms() + 5000; sending < 9; sleep_ms(50)) {
        sending = count_sending(s, ids, N);
        if (now_ms() > end)
            fail_msg("%zu messages sending, want 9 or more", sending);
    }
    sleep_ms(300); /* the first dot is out, unanswered */
    assert_true(count_sending(s, ids, N) >= 9);
    assert_true(count_sending(s, ids, N) <= 16);
    assert_int_equal(count_mail_commands(p), 1);
    kill_hard(s);
    s = svc(p, q, one);
    size_t unknown = 0;
    for (size_t i = 0; i < N; i++) {
        unknown += (size_t)sent_once_or_unknown(s, p, ids[i]);
        free(ids[i]);
    }
    sleep_ms(300); /* nothing is sent again */
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    assert_int_equal(unknown, 1);
    assert_int_equal(msgs_total(p), N - 1);
    assert_int_equal(count_mail_commands(p), N);
    free(q);
    ts_rmtree(dir);
    free(dir);
    peer_stop(p);
}
#endif

/* The crash matrix: the service is killed with SIGKILL at a random moment
   while it sends, RUNS times, then restarted on the same queue; every
   message that got a 202 must end final, none may be lost, and none may
   reach the relay twice (unknown ones at most once). */
#define RUNS 20 /* QUEUE_CRASH_RUNS overrides (make soak) */
#define PER_RUN 10

void test_crash_matrix_every_202_final_none_lost_none_twice(void **state)
{
    (void)state;
    struct peer *p = relay("{'rules': [{'match': '^DOT$', "
                           "'action': 'delay:0.01'}]}");
    char *dir, *q = temp_queue(&dir);
    const char *env = getenv("QUEUE_CRASH_RUNS");
    int runs = env != NULL && atoi(env) > 0 ? atoi(env) : RUNS;
    char **ids = calloc((size_t)runs * PER_RUN, sizeof *ids);
    size_t n = 0;
    unsigned seed = (unsigned)time(NULL);
    assert_non_null(ids);
    printf("crash matrix seed %u, %d runs\n", seed, runs);
    for (int run = 0; run < runs; run++) {
        struct mpserve *s = svc(p, q, NULL);
        for (int i = 0; i < PER_RUN; i++)
            ids[n++] = post_async(s, "r@example.org", NULL);
        sleep_ms((int)(rand_r(&seed) % 120));
        kill_hard(s);
    }
    struct mpserve *s = svc(p, q, NULL);
    size_t unknown = 0;
    for (size_t i = 0; i < n; i++) {
        unknown += sent_once_or_unknown(s, p, ids[i]);
        free(ids[i]);
    }
    printf("crash matrix: %zu messages, %zu unknown\n", n, unknown);
    free(ids);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    free(q);
    ts_rmtree(dir);
    free(dir);
    peer_stop(p);
}

/* SIGTERM: the service stops claiming, finishes what is on the wire, and
   leaves the rest queued; the next start sends those: every message sent
   exactly once, none unknown. */
void test_sigterm_leaves_the_rest_queued_for_the_next_start(void **state)
{
    (void)state;
    struct peer *p = relay("{'rules': [{'match': '^DATA', "
                           "'action': 'delay:0.3'}]}");
    char *dir, *q = temp_queue(&dir), *ids[8];
    struct mpserve *s = svc(p, q, one);
    for (int i = 0; i < 8; i++)
        ids[i] = post_async(s, "r@example.org", NULL);
    sleep_ms(100);
    assert_int_equal(mpserve_stop_clean(s, 20000), 0);
    mpserve_free(s);
    size_t before = msgs_total(p);
    assert_true(before < 8); /* some were left for the next start */
    s = svc(p, q, NULL);
    for (int i = 0; i < 8; i++) {
        json_t *d = wait_final(s, ids[i], 10000);
        assert_string_equal(jstr(d, "status"), "sent");
        assert_int_equal(copies(p, jstr(d, "message_id")), 1);
        json_decref(d);
        free(ids[i]);
    }
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    free(q);
    ts_rmtree(dir);
    free(dir);
    peer_stop(p);
}
