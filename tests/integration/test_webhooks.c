/*
 * test_webhooks.c - delivery events through `mailpool serve`: each state
 * change of a queued message writes an event in the transaction of the
 * change (the outbox), and the webhook threads POST it, signed as Standard
 * Webhooks do, to a receiver on 127.0.0.1 (tests/peers/webhook_receiver.py,
 * which checks every signature with the README's code and logs each POST).
 *
 * Proven on what the receiver got (ids, types, payload fields, whether the
 * signature verified) and on GET /v1/messages/{id} (events, their tries):
 * every message's final event arrives; a receiver down, then back, gets
 * every event; 500 then 200 is two tries, both recorded; a wrong secret
 * fails verification; a slow receiver does not slow sending; events
 * survive a SIGKILL between commit and delivery; an event past its
 * schedule is failed and stays visible.  test_webhooks_config.c has what
 * the configuration decides (HTTPS, redirects, 410, mistakes at start,
 * the README's example); the fixture is tests/support/webhook_fx.h.
 * The relay is the fake
 * (tests/fakes/fake_smtp.py).  SQLite queue (the PostgreSQL outbox is
 * proven by the shared queue suite, test_queue_pg).
 */
#include "tests/support/webhook_fx.h"

/* ---- tests ------------------------------------------------------------ */

/* Five messages sent: five message.sent events reach the receiver, each
   signed (verified with the README's code), with the message's fields;
   GET shows each delivered with its one try (200); /metrics counts 5. */
static void test_every_sent_message_posts_one_signed_sent_event(void **st)
{
    (void)st;
    struct wh w;
    char *ids[5];
    wh_up(&w, "ok", SECRET, "{}", NULL);
    post_some(&w, ids, 5);
    json_t *posts = rx_wait(&w.r, ids, 5, "message.sent", 15000);
    for (int i = 0; i < 5; i++) {
        size_t valid;
        json_t *b = NULL;
        assert_int_equal(posts_for(posts, ids[i], &valid, &b), 1);
        assert_int_equal(valid, 1);
        json_t *d = json_object_get(b, "data"), *m = status_of(w.s, ids[i]);
        assert_int_equal(strncmp(jstr(b, "id"), "evt_", 4), 0);
        assert_int_equal(strlen(jstr(b, "id")), 36);
        assert_string_equal(jstr(d, "status"), "sent");
        assert_int_equal(json_integer_value(json_object_get(d, "code")), 250);
        assert_int_equal(json_integer_value(json_object_get(d, "attempt")), 1);
        assert_string_equal(item(d, "accepted", 0), "r@example.org");
        assert_string_equal(jstr(d, "message_id"), jstr(m, "message_id"));
        assert_string_equal(jstr(json_object_get(d, "metadata"), "order"),
                            "o-17");
        json_t *e = wait_event(w.s, ids[i], "message.sent", "delivered", 5000);
        assert_string_equal(jstr(e, "id"), jstr(b, "id"));
        assert_true(json_is_string(json_object_get(e, "delivered_at")));
        json_t *tries = json_object_get(e, "attempts");
        assert_int_equal(json_array_size(tries), 1);
        assert_int_equal(json_integer_value(json_object_get(
                             json_array_get(tries, 0), "http_status")),
                         200);
        json_decref(e);
        json_decref(m);
        free(ids[i]);
    }
    json_decref(posts);
    assert_int_equal(metric(w.s, "mailpool_webhook_deliveries_total{result="
                                 "\"delivered\"}"),
                     5);
    wh_down(&w);
}

/* A relay that answers 451 once: message.deferred (code 451 and its
   words) then message.sent, both delivered. */
static void test_a_retry_posts_deferred_then_sent(void **st)
{
    (void)st;
    struct wh w;
    wh_up(&w, "ok", SECRET,
          "{'rules': [{'match': '^MAIL', 'times': 1, "
          "'reply': '451 4.3.0 try again later'}]}",
          NULL);
    char *id = post_async(w.s, "r@example.org");
    json_decref(rx_wait(&w.r, &id, 1, "message.sent", 15000));
    json_t *posts = rx_wait(&w.r, &id, 1, "message.deferred", 1000), *b;
    size_t i;
    int seen = 0;
    json_array_foreach(posts, i, b)
    {
        json_t *body = json_object_get(b, "body");
        json_t *d = json_object_get(body, "data");
        if (strcmp(jstr(body, "type"), "message.deferred") != 0)
            continue;
        seen++;
        assert_true(json_is_true(json_object_get(b, "valid")));
        assert_string_equal(jstr(d, "status"), "retry");
        assert_int_equal(json_integer_value(json_object_get(d, "code")), 451);
        assert_string_equal(jstr(d, "enhanced"), "4.3.0");
        assert_non_null(strstr(item(d, "text", 0), "try again later"));
    }
    assert_int_equal(seen, 1);
    json_decref(posts);
    free(id);
    wh_down(&w);
}

/* A relay reply with a byte that is not UTF-8 (a Latin-1 e-acute) beside
   a UTF-8 one: the deferred event still goes, the stray byte as U+FFFD,
   the UTF-8 e-acute kept. */
static void test_a_reply_that_is_not_utf8_still_posts_its_event(void **st)
{
    (void)st;
    struct wh w;
    wh_up(&w, "ok", SECRET,
          "{'rules': [{'match': '^MAIL', 'times': 1, "
          "'raw_b64': 'NDUxIDQuMy4wIGNhZsOpIOkgYnVzeQ0K'}]}",
          NULL);
    char *id = post_async(w.s, "r@example.org");
    json_t *posts = rx_wait(&w.r, &id, 1, "message.deferred", 15000), *b;
    size_t i;
    int seen = 0;
    json_array_foreach(posts, i, b)
    {
        json_t *body = json_object_get(b, "body");
        if (strcmp(jstr(body, "type"), "message.deferred") != 0)
            continue;
        seen++;
        assert_string_equal(item(json_object_get(body, "data"), "text", 0),
                            "4.3.0 caf\xc3\xa9 \xef\xbf\xbd busy");
    }
    assert_int_equal(seen, 1);
    json_decref(posts);
    free(id);
    wh_down(&w);
}

/* A webhook.url may carry a token: the queue's database (SQLite's file
   and its WAL), which records what the events go to, holds only the
   URL's digest, never the URL. */
static void test_the_queue_database_never_holds_the_webhook_url(void **st)
{
    (void)st;
    char *dir = temp_dir(), path[256];
    struct peer *p = peer_start_fake("{}");
    assert_non_null(p);
    const char *more[] = { "--webhook-url",
                           "http://127.0.0.1:9/hook?token=tok-in-url-7f3a",
                           NULL };
    struct mpserve *s = svc(p, dir, 9, more);
    char *id = post_async(s, "r@example.org");
    json_decref(wait_event(s, id, "message.sent", "pending", 15000));
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    static const char *const files[] = { "queue.db", "queue.db-wal" };
    int read = 0;
    for (size_t i = 0; i < 2; i++) {
        size_t len = 0;
        in_dir(path, sizeof path, dir, files[i]);
        char *bytes = ts_slurp(path, &len);
        if (bytes == NULL)
            continue;
        read++;
        assert_null(memmem(bytes, len, "tok-in-url-7f3a", 15));
        assert_null(memmem(bytes, len, "127.0.0.1:9/hook", 16));
        free(bytes);
    }
    assert_true(read >= 1);
    free(id);
    peer_stop(p);
    ts_rmtree(dir);
    free(dir);
}

/* The receiver is down while three messages are sent (their tries fail,
   counted as network errors; test_queue shows each recorded with its
   error); once it listens, every event arrives. */
static void test_receiver_down_then_back_gets_every_event(void **st)
{
    (void)st;
    struct wh w;
    char *ids[3];
    wh_up(&w, NULL, SECRET, "{}", NULL);
    post_some(&w, ids, 3);
    ts_sleep_ms(2500);
    json_decref(wait_event(w.s, ids[0], "message.sent", "pending", 1));
    assert_true(metric(w.s, "mailpool_webhook_deliveries_total{result="
                            "\"network_error\"}") >= 3);
    assert_true(metric(w.s, "mailpool_webhook_oldest_undelivered_seconds") >=
                1);
    rx_start(&w.r, w.dir, w.port, SECRET, "ok");
    json_t *posts = rx_wait(&w.r, ids, 3, "message.sent", 15000);
    for (int i = 0; i < 3; i++) {
        size_t valid;
        assert_int_equal(posts_for(posts, ids[i], &valid, NULL), 1);
        assert_int_equal(valid, 1);
        json_decref(wait_event(w.s, ids[i], "message.sent", "delivered", 5000));
        free(ids[i]);
    }
    json_decref(posts);
    assert_int_equal(metric(w.s, "mailpool_webhook_oldest_undelivered_"
                                 "seconds"),
                     0);
    wh_down(&w);
}

/* 500 then 200: the event is POSTed exactly twice, the same id both
   times, delivered, and GET lists both tries (500, 200). */
static void test_500_then_200_is_delivered_with_both_tries_recorded(void **st)
{
    (void)st;
    struct wh w;
    wh_up(&w, "fail:1", SECRET, "{}", NULL);
    char *id = post_async(w.s, "r@example.org");
    json_t *e = wait_event(w.s, id, "message.sent", "delivered", 15000);
    json_t *tries = json_object_get(e, "attempts");
    assert_int_equal(json_array_size(tries), 2);
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(tries, 0), "http_status")),
                     500);
    assert_int_equal(json_integer_value(json_object_get(
                         json_array_get(tries, 1), "http_status")),
                     200);
    json_t *posts = rx_posts(&w.r), *one;
    size_t valid, i;
    assert_int_equal(posts_for(posts, id, &valid, NULL), 2);
    assert_int_equal(valid, 2);
    json_array_foreach(posts, i, one)
        assert_string_equal(jstr(one, "id"), jstr(e, "id"));
    json_decref(posts);
    json_decref(e);
    free(id);
    wh_down(&w);
}

/* A receiver holding another secret: the POST arrives, its signature does
   not verify, while the same POST verifies under the service's secret. */
static void test_wrong_secret_fails_verification(void **st)
{
    (void)st;
    struct wh w;
    wh_up(&w, "ok", WRONG, "{}", NULL);
    char *id = post_async(w.s, "r@example.org");
    json_t *posts = rx_wait(&w.r, &id, 1, "message.sent", 15000);
    size_t valid;
    assert_int_equal(posts_for(posts, id, &valid, NULL), 1);
    assert_int_equal(valid, 0);
    assert_true(
        json_is_true(json_object_get(json_array_get(posts, 0), "valid_other")));
    json_decref(posts);
    free(id);
    wh_down(&w);
}

/* A receiver that takes 5 s per POST: ten messages are still all sent
   within 3 s, and their events arrive meanwhile; the service stops
   promptly with POSTs under way. */
static void test_slow_receiver_does_not_slow_sending(void **st)
{
    (void)st;
    struct wh w;
    char *ids[10];
    wh_up(&w, "slow:5", SECRET, "{}", NULL);
    long long t0 = ts_now_ms();
    post_some(&w, ids, 10);
    assert_int_equal(peer_wait_messages(w.p, 10, 3000), 10);
    long long sent_ms = ts_now_ms() - t0;
    if (sent_ms > 3000)
        fail_msg("ten messages took %lld ms to send", sent_ms);
    json_t *posts = NULL;
    for (long long end = ts_now_ms() + 15000; ts_now_ms() < end;
         ts_sleep_ms(100)) {
        json_decref(posts);
        posts = rx_posts(&w.r);
        if (json_array_size(posts) >= 4)
            break;
    }
    assert_true(json_array_size(posts) >= 4);
    json_decref(posts);
    long long stop0 = ts_now_ms();
    assert_int_equal(mpserve_stop_clean(w.s, 10000), 0);
    assert_true(ts_now_ms() - stop0 < 4000);
    for (int i = 0; i < 10; i++)
        free(ids[i]);
    wh_down(&w);
}

/* Messages sent (their events committed) while the receiver is down, the
   service SIGKILLed, started again on the same queue with the receiver
   up: every event arrives. */
static void test_events_survive_sigkill_between_commit_and_delivery(void **st)
{
    (void)st;
    struct wh w;
    char *ids[3];
    wh_up(&w, NULL, SECRET, "{}", NULL);
    post_some(&w, ids, 3);
    for (int i = 0; i < 3; i++)
        json_decref(wait_event(w.s, ids[i], "message.sent", "pending", 5000));
    assert_int_equal(mpserve_signal(w.s, SIGKILL), 0);
    assert_int_equal(mpserve_wait(w.s, 5000), 128 + SIGKILL);
    mpserve_free(w.s);
    rx_start(&w.r, w.dir, w.port, SECRET, "ok");
    w.s = svc(w.p, w.dir, w.port, NULL);
    json_t *posts = rx_wait(&w.r, ids, 3, "message.sent", 15000);
    for (int i = 0; i < 3; i++) {
        size_t valid;
        assert_int_equal(posts_for(posts, ids[i], &valid, NULL), 1);
        assert_int_equal(valid, 1);
        free(ids[i]);
    }
    json_decref(posts);
    wh_down(&w);
}

/* A receiver that answers 500 to every POST, a schedule of two short
   waits: three POSTs, then the event is failed and stays in GET with its
   three tries. */
static void test_an_event_past_its_schedule_is_failed_and_stays_visible(
    void **st)
{
    (void)st;
    static const char *const shortly[] = { "--webhook-retry-schedule",
                                           "200ms,200ms", NULL };
    struct wh w;
    wh_up(&w, "fail:99", SECRET, "{}", shortly);
    char *id = post_async(w.s, "r@example.org");
    json_t *e = wait_event(w.s, id, "message.sent", "failed", 15000);
    json_t *tries = json_object_get(e, "attempts"), *t;
    size_t i;
    assert_int_equal(json_array_size(tries), 3);
    json_array_foreach(tries, i, t) assert_int_equal(
        json_integer_value(json_object_get(t, "http_status")), 500);
    assert_true(json_is_null(json_object_get(e, "delivered_at")));
    json_t *posts = rx_posts(&w.r);
    assert_int_equal(posts_for(posts, id, NULL, NULL), 3);
    json_decref(posts);
    json_decref(e);
    free(id);
    wh_down(&w);
}

#define T(fn) cmocka_unit_test(fn)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_every_sent_message_posts_one_signed_sent_event),
        T(test_a_retry_posts_deferred_then_sent),
        T(test_a_reply_that_is_not_utf8_still_posts_its_event),
        T(test_the_queue_database_never_holds_the_webhook_url),
        T(test_receiver_down_then_back_gets_every_event),
        T(test_500_then_200_is_delivered_with_both_tries_recorded),
        T(test_wrong_secret_fails_verification),
        T(test_slow_receiver_does_not_slow_sending),
        T(test_events_survive_sigkill_between_commit_and_delivery),
        T(test_an_event_past_its_schedule_is_failed_and_stays_visible),
    };
    return wh_run(tests, sizeof tests / sizeof tests[0]);
}
