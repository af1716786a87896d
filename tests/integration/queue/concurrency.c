/*
 * concurrency.c - requests racing each other on each backend: 50
 * concurrent POSTs with one Idempotency-Key send once, an async repeat
 * with the key answers the same id (another body: 422), and a cancel
 * racing the claim either wins or loses, never both.
 */
#include <pthread.h>

#include "tests/integration/queue/cases.h"
#include "tests/integration/queue/qfx.h"

struct idem_call {
    struct mpserve *s;
    pthread_t t;
    long status;
    int replayed;
    char err[256]; /* why no answer came */
};

/* One client: POSTs the same message with Idempotency-Key order-7 and
   notes the status and whether the answer was a replay. */
static void *idem_main(void *arg)
{
    struct idem_call *c = arg;
    static const char *const h[] = { "Content-Type: application/json",
                                     "Idempotency-Key: order-7", NULL };
    char url[256];
    struct http_resp r;
    snprintf(url, sizeof url, "%s/v1/messages", mpserve_url(c->s));
    if (http_request("POST", url, h,
                     "{\"from\":\"s@example.org\",\"to\":[\"r@example.org\"],"
                     "\"headers\":{\"Subject\":\"once\"},\"body\":\"x\"}",
                     0, &r) == 0) {
        char *v = http_resp_header(&r, "Idempotent-Replayed");
        c->status = r.status;
        c->replayed = v != NULL;
        free(v);
        http_resp_free(&r);
    } else {
        snprintf(c->err, sizeof c->err, "%s", r.err);
    }
    return NULL;
}

/* 50 concurrent POSTs with one Idempotency-Key: one is sent, the others
   are replays or 409, none fails, and the relay takes one message. */
void test_50_concurrent_posts_with_one_key_send_once(void **state)
{
    (void)state;
    struct peer *p = relay("{'rules': [{'match': '^DATA', "
                           "'action': 'delay:0.3'}]}");
    struct mpserve *s = svc(p, NULL, NULL);
    struct idem_call c[50];
    int ok = 0, replays = 0, busy = 0;
    for (int i = 0; i < 50; i++) {
        c[i] = (struct idem_call){ .s = s };
        assert_int_equal(pthread_create(&c[i].t, NULL, idem_main, &c[i]), 0);
    }
    for (int i = 0; i < 50; i++) {
        pthread_join(c[i].t, NULL);
        if (c[i].status >= 500 || c[i].status == 0)
            fail_msg("call %d answered %ld %s", i, c[i].status, c[i].err);
        ok += c[i].status == 200 && !c[i].replayed;
        replays += c[i].status == 200 && c[i].replayed;
        busy += c[i].status == 409;
    }
    assert_int_equal(ok, 1);
    assert_int_equal(ok + replays + busy, 50);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    assert_int_equal(msgs_total(p), 1);
    peer_stop(p);
}

/* An async POST repeated with its key answers the same id (replayed, with
   the first answer's Preference-Applied and Location);
   the key with another body is 422; the relay takes one message. */
void test_async_repeat_with_key_returns_same_id_other_body_422(void **state)
{
    (void)state;
    struct peer *p = relay("{}");
    struct mpserve *s = svc(p, NULL, NULL);
    static const char *const h[] = { "Content-Type: application/json",
                                     "Prefer: respond-async",
                                     "Idempotency-Key: batch-1", NULL };
    const char *body = "{\"from\":\"s@example.org\",\"to\":[\"r@example.org\"]"
                       ",\"body\":\"x\"}";
    long st1, st2, st3;
    struct http_resp r;
    json_t *a = call(s, "POST", "/v1/messages", h, body, &st1, NULL);
    json_t *b = call(s, "POST", "/v1/messages", h, body, &st2, &r);
    json_t *c = call(s, "POST", "/v1/messages", h,
                     "{\"from\":\"s@example.org\",\"to\":[\"x@example.org\"],"
                     "\"body\":\"x\"}",
                     &st3, NULL);
    assert_int_equal(st1, 202);
    assert_int_equal(st2, 202);
    assert_string_equal(jstr(a, "id"), jstr(b, "id"));
    char *rep = http_resp_header(&r, "Idempotent-Replayed");
    char *pa = http_resp_header(&r, "Preference-Applied");
    char *loc = http_resp_header(&r, "Location");
    char want[96];
    snprintf(want, sizeof want, "/v1/messages/%s", jstr(a, "id"));
    assert_non_null(rep);
    /* the replay is the first answer: its headers too */
    assert_non_null(pa);
    assert_string_equal(pa, "respond-async");
    assert_non_null(loc);
    assert_string_equal(loc, want);
    free(rep);
    free(pa);
    free(loc);
    http_resp_free(&r);
    assert_int_equal(st3, 422);
    json_t *d = wait_final(s, jstr(a, "id"), 5000);
    json_decref(d);
    json_decref(a);
    json_decref(b);
    json_decref(c);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    assert_int_equal(msgs_total(p), 1);
    peer_stop(p);
}

struct canceller {
    struct mpserve *s;
    const char *id;
    long long at_ms; /* when to cancel (monotonic) */
    long status;     /* the cancel's answer */
};

/* Cancels one message at its moment. */
static void *cancel_at(void *arg)
{
    struct canceller *c = arg;
    char path[128];
    long long wait = c->at_ms - now_ms();
    if (wait > 0)
        sleep_ms((int)wait);
    snprintf(path, sizeof path, "/v1/messages/%s/cancel", c->id);
    json_decref(call(c->s, "POST", path, NULL, NULL, &c->status, NULL));
    return NULL;
}

/* Messages scheduled for one second, each cancelled around the moment
   the delivery claims them: every cancel is either 200 (the message ends
   cancelled and never reaches the relay) or 409 (it is sent, once); never
   both cancelled and sent. */
void test_cancel_racing_the_claim_one_wins_never_both(void **state)
{
    (void)state;
    enum { N = 40 };
    struct peer *p = relay("{}");
    struct mpserve *s = svc(p, NULL, NULL);
    char extra[96], when[40];
    time_t due = time(NULL) + 2;
    struct tm tm;
    struct canceller c[N];
    pthread_t t[N];
    char *ids[N];
    gmtime_r(&due, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(extra, sizeof extra, ",\"send_at\":\"%s\"", when);
    for (int i = 0; i < N; i++)
        ids[i] = post_async(s, "r@example.org", extra);
    /* The moment due comes, on the monotonic clock; cancels spread from
       40 ms before it to 40 ms after. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long due_ms = now_ms() + ((long long)due - ts.tv_sec) * 1000 -
                       ts.tv_nsec / 1000000;
    for (int i = 0; i < N; i++) {
        c[i] = (struct canceller){ s, ids[i], due_ms + (i - N / 2) * 2, 0 };
        assert_int_equal(pthread_create(&t[i], NULL, cancel_at, &c[i]), 0);
    }
    size_t won = 0, lost = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        json_t *d = wait_final(s, ids[i], 10000);
        const char *st = jstr(d, "status");
        size_t k = copies(p, jstr(d, "message_id"));
        if (c[i].status == 200 && (strcmp(st, "cancelled") != 0 || k != 0))
            fail_msg("%s: cancel 200 but %s, at the relay %zu times", ids[i],
                     st, k);
        if (c[i].status == 409 && (strcmp(st, "sent") != 0 || k != 1))
            fail_msg("%s: cancel 409 but %s, at the relay %zu times", ids[i],
                     st, k);
        if (c[i].status != 200 && c[i].status != 409)
            fail_msg("%s: cancel answered %ld", ids[i], c[i].status);
        won += c[i].status == 200;
        lost += c[i].status == 409;
        json_decref(d);
        free(ids[i]);
    }
    printf("cancel race: %zu cancelled, %zu sent\n", won, lost);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    assert_int_equal(msgs_total(p), lost);
    peer_stop(p);
}
