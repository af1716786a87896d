/*
 * msglog.c - the message log (GET /v1/messages) on each backend: its
 * filters and cursor pages, synchronous sends recorded with the relay's
 * own reply lines, and none recorded with queue.log_sync = false.
 */
#include <curl/curl.h>

#include "tests/integration/queue/cases.h"
#include "tests/integration/queue/qfx.h"

/* The log in pages of 2, newest first: ids 4 3 | 2 1 | 0, each page's
   next cursor leading to the following one, none after the last. */
static void assert_pages_of_two(struct mpserve *s, char *const ids[5])
{
    char path[256] = "/v1/messages?limit=2";
    int seen = 0;
    long st;
    for (int page = 0; page < 3; page++) {
        json_t *j = call(s, "GET", path, NULL, NULL, &st, NULL);
        assert_int_equal(st, 200);
        json_t *m = json_object_get(j, "messages");
        for (size_t i = 0; i < json_array_size(m); i++, seen++)
            assert_string_equal(jstr(json_array_get(m, i), "id"),
                                ids[4 - seen]);
        const char *next = json_string_value(json_object_get(j, "next"));
        if (page < 2) {
            assert_non_null(next);
            char *enc = curl_easy_escape(NULL, next, 0);
            snprintf(path, sizeof path, "/v1/messages?limit=2&before=%s", enc);
            curl_free(enc);
        } else {
            assert_null(next);
        }
        json_decref(j);
    }
    assert_int_equal(seen, 5);
}

/* The message log (GET /v1/messages) reads the same store on every
   backend: the recipient filter in any case, the Subject, the status of a
   rejected message with its last code, and cursor pages that neither skip
   nor repeat. */
void test_message_log_filters_and_pages_on_this_backend(void **state)
{
    (void)state;
    struct peer *p = relay("{\"rules\":[{\"match\":\"^RCPT TO:<no@\","
                           "\"reply\":\"550 5.1.1 no such user\"}]}");
    struct mpserve *s = svc(p, NULL, NULL);
    char *ids[5], to[64];
    long st;
    for (int i = 0; i < 4; i++) {
        snprintf(to, sizeof to, "r%d@example.org", i);
        ids[i] = post_async(s, to, NULL);
        sleep_ms(5); /* created_at strictly increasing */
    }
    ids[4] = post_async(s, "no@example.org", NULL);
    for (int i = 0; i < 5; i++)
        json_decref(wait_final(s, ids[i], 5000));

    json_t *j = call(s, "GET", "/v1/messages?recipient=R2%40EXAMPLE.ORG", NULL,
                     NULL, &st, NULL);
    assert_int_equal(st, 200);
    json_t *m = json_object_get(j, "messages");
    assert_int_equal(json_array_size(m), 1);
    assert_string_equal(jstr(json_array_get(m, 0), "id"), ids[2]);
    assert_string_equal(jstr(json_array_get(m, 0), "subject"), "q");
    assert_string_equal(jstr(json_array_get(m, 0), "status"), "sent");
    json_decref(j);

    j = call(s, "GET", "/v1/messages?status=rejected", NULL, NULL, &st, NULL);
    assert_int_equal(st, 200);
    m = json_object_get(j, "messages");
    assert_int_equal(json_array_size(m), 1);
    assert_string_equal(jstr(json_array_get(m, 0), "id"), ids[4]);
    assert_int_equal(
        json_integer_value(json_object_get(json_array_get(m, 0), "last_code")),
        700);
    json_decref(j);

    assert_pages_of_two(s, ids);
    for (int i = 0; i < 5; i++)
        free(ids[i]);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    peer_stop(p);
}

/* The message of the log's page `msgs` whose id is id, or NULL. */
static json_t *listed(json_t *msgs, const char *id)
{
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) if (strcmp(jstr(m, "id"), id) == 0) return m;
    return NULL;
}

/* GET path until its page holds at least n messages (the log's write
   follows the answer), at most ms; the page (caller decrefs). */
static json_t *wait_listed(struct mpserve *s, const char *path, size_t n,
                           int ms)
{
    for (long long end = now_ms() + ms;; sleep_ms(20)) {
        long st;
        json_t *j = call(s, "GET", path, NULL, NULL, &st, NULL);
        assert_int_equal(st, 200);
        if (json_array_size(json_object_get(j, "messages")) >= n ||
            now_ms() > end)
            return j;
        json_decref(j);
    }
}

/* The strings of a JSON array joined with '|' (caller frees). */
static char *joined(const json_t *arr)
{
    char *out = strdup("");
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        char *next = NULL;
        assert_true(asprintf(&next, "%s%s%s", out, i ? "|" : "",
                             json_string_value(v)) > 0);
        free(out);
        out = next;
    }
    return out;
}

/* Asserts that arr holds the strings of want, '|'-separated. */
static void assert_lines(const json_t *arr, const char *want)
{
    char *got = joined(arr);
    assert_string_equal(got, want);
    free(got);
}

/* Asserts a reply's code, enhanced status and lines ('|'-separated). */
static void assert_reply(const json_t *o, int code, const char *enhanced,
                         const char *lines)
{
    assert_int_equal(json_integer_value(json_object_get(o, "code")), code);
    assert_string_equal(jstr(o, "enhanced"), enhanced);
    assert_lines(json_object_get(o, "text"), lines);
}

#define SYNC_RELAY \
    "{\"rules\":[{\"match\":\"^RCPT TO:<no@\",\"reply\":\"550 5.1.1 " \
    "<no@example.org>: mailbox unavailable here\"},{\"match\":\"^DOT$\"," \
    "\"reply\":\"250-2.0.0 Ok: queued as SYNC1\\n250 2.0.0 relay line two" \
    "\"}]}"

/* POSTs "sync one" to a@example.org synchronously (extra: more members,
   each starting with a comma); the 200's document. */
static json_t *post_sync_one(struct mpserve *s, const char *extra)
{
    char body[512];
    long st;
    snprintf(body, sizeof body,
             "{\"from\":\"s@example.org\",\"to\":"
             "[\"a@example.org\"],\"headers\":{\"Subject\":\"sync one\"},"
             "\"body\":\"hello\"%s}",
             extra);
    json_t *j = call(s, "POST", "/v1/messages", JSONH, body, &st, NULL);
    assert_int_equal(st, 200);
    assert_string_equal(jstr(j, "status"), "sent");
    return j;
}

/* The log lists the three synchronous sends (one, and the batch's
   answers r2 and r3) with status, Subject, recipients, the last code of
   their one attempt and their Message-ID, and finds r2 by its rejected
   recipient. */
static void assert_sync_sends_listed(struct mpserve *s, json_t *one, json_t *r2,
                                     json_t *r3)
{
    const char *id1 = jstr(one, "id"), *id2 = jstr(r2, "id");
    const char *id3 = jstr(r3, "id");
    json_t *page = wait_listed(s, "/v1/messages", 3, 5000);
    json_t *msgs = json_object_get(page, "messages");
    assert_int_equal(json_array_size(msgs), 3);
    struct {
        const char *id, *status, *subject, *rcpts;
        int code;
        json_t *answer;
    } want[] = {
        /* 700: some recipients rejected (smtp.h) */
        { id1, "sent", "sync one", "a@example.org", 250, one },
        { id2, "partial", "sync two", "b1@example.org|no@example.org", 700,
          r2 },
        { id3, "sent", "sync three", "b2@example.org", 250, r3 },
    };
    for (size_t i = 0; i < 3; i++) {
        json_t *m = listed(msgs, want[i].id);
        assert_non_null(m);
        assert_string_equal(jstr(m, "status"), want[i].status);
        assert_string_equal(jstr(m, "subject"), want[i].subject);
        assert_lines(json_object_get(m, "recipients"), want[i].rcpts);
        assert_int_equal(json_integer_value(json_object_get(m, "last_code")),
                         want[i].code);
        assert_int_equal(
            json_integer_value(json_object_get(want[i].answer, "code")),
            want[i].code);
        assert_int_equal(json_integer_value(json_object_get(m, "attempts")), 1);
        assert_string_equal(jstr(m, "message_id"),
                            jstr(want[i].answer, "message_id"));
    }
    json_decref(page);
    page = wait_listed(s, "/v1/messages?recipient=no%40example.org", 1, 0);
    msgs = json_object_get(page, "messages");
    assert_int_equal(json_array_size(msgs), 1);
    assert_string_equal(jstr(json_array_get(msgs, 0), "id"), id2);
    json_decref(page);
}

/* The document of r2's message: partial, its one attempt with the
   relay's own reply lines and the rejected recipient's 550 text. */
static void assert_partial_document(struct mpserve *s, json_t *r2)
{
    long st;
    const char *id2 = jstr(r2, "id");
    json_t *d = status_of(s, id2, &st);
    assert_int_equal(st, 200);
    assert_string_equal(jstr(d, "status"), "partial");
    assert_string_equal(jstr(d, "message_id"), jstr(r2, "message_id"));
    assert_true(json_is_null(json_object_get(d, "next_attempt_at")));
    json_t *a = json_object_get(d, "attempts");
    assert_int_equal(json_array_size(a), 1);
    json_t *a0 = json_array_get(a, 0);
    assert_string_equal(jstr(a0, "status"), "partial");
    assert_reply(a0, 700, "2.0.0",
                 "2.0.0 Ok: queued as SYNC1|2.0.0 relay line two");
    assert_lines(json_object_get(a0, "accepted"), "b1@example.org");
    json_t *rej = json_object_get(a0, "rejected");
    assert_int_equal(json_array_size(rej), 1);
    json_t *rj = json_array_get(rej, 0);
    assert_string_equal(jstr(rj, "recipient"), "no@example.org");
    assert_reply(rj, 550, "5.1.1",
                 "5.1.1 <no@example.org>: mailbox unavailable here");
    json_decref(d);
}

/* A synchronous send (POST /v1/messages without respond-async) and a
   synchronous batch with one recipient rejected are in the message log:
   each answer carries the log's id, the list shows them with status,
   recipients, Subject and the last code, and a message's document holds
   its one attempt with the relay's own reply lines and the rejected
   recipient's 550 text. */
void test_sync_sends_are_in_the_message_log_with_the_relay_words(void **state)
{
    (void)state;
    struct peer *p = relay(SYNC_RELAY);
    struct mpserve *s = svc(p, NULL, NULL);
    long st;
    json_t *one = post_sync_one(s, ",\"metadata\":{\"user\":\"7\"}");
    const char *id1 = jstr(one, "id");
    assert_int_equal(strlen(id1), 22);
    json_t *batch = call(s, "POST", "/v1/messages/batch", JSONH,
                         "{\"messages\":[{\"from\":\"s@example.org\",\"to\":"
                         "[\"b1@example.org\",\"no@example.org\"],\"headers\":"
                         "{\"Subject\":\"sync two\"},\"body\":\"x\"},"
                         "{\"from\":\"s@example.org\",\"to\":"
                         "[\"b2@example.org\"],\"headers\":{\"Subject\":"
                         "\"sync three\"},\"body\":\"y\"}]}",
                         &st, NULL);
    assert_int_equal(st, 200);
    json_t *res = json_object_get(batch, "results");
    assert_int_equal(json_array_size(res), 2);
    json_t *r2 = json_array_get(res, 0), *r3 = json_array_get(res, 1);
    assert_string_equal(jstr(r2, "status"), "partial");
    assert_string_equal(jstr(r3, "status"), "sent");
    const char *id2 = jstr(r2, "id"), *id3 = jstr(r3, "id");
    assert_int_equal(strlen(id2), 22);
    assert_int_equal(strlen(id3), 22);
    assert_string_not_equal(id2, id3);
    assert_string_not_equal(id1, id2);
    assert_int_equal(peer_wait_messages(p, 3, 5000), 3);

    assert_sync_sends_listed(s, one, r2, r3);
    assert_partial_document(s, r2);
    json_t *d = status_of(s, id1, &st);
    assert_int_equal(st, 200);
    assert_string_equal(jstr(d, "status"), "sent");
    assert_string_equal(jstr(json_object_get(d, "metadata"), "user"), "7");
    json_decref(d);

    /* Final: never claimed, never sent again. */
    sleep_ms(1500);
    assert_int_equal(msgs_total(p), 3);
    json_decref(one);
    json_decref(batch);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    peer_stop(p);
}

/* queue.log_sync = false (load tests): a synchronous send is answered as
   before, without a log id, and the message log stays empty. */
void test_log_sync_false_keeps_sync_sends_out_of_the_log(void **state)
{
    (void)state;
    static const char *const off[] = { "--queue-log-sync", "false", NULL };
    struct peer *p = relay(SYNC_RELAY);
    struct mpserve *s = svc(p, NULL, off);
    json_t *one = post_sync_one(s, "");
    assert_null(json_object_get(one, "id"));
    json_decref(one);
    assert_int_equal(peer_wait_messages(p, 1, 5000), 1);
    sleep_ms(500); /* what a write would have needed */
    json_t *page = wait_listed(s, "/v1/messages", 1, 0);
    assert_int_equal(json_array_size(json_object_get(page, "messages")), 0);
    json_decref(page);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    peer_stop(p);
}
