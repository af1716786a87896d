/*
 * lifecycle.c - a message's life through the queue, on each backend: a
 * 202 means stored (Location, Preference-Applied), then sent once with
 * its Message-ID; an async batch is validated whole; unknown ids are 404
 * and send_at in a synchronous send 422; send_at waits and cancel stops
 * it; temporary failures retry with backoff; a partial send retries only
 * the deferred recipients; a permanent failure is final at once.
 */
#include "tests/integration/queue/cases.h"
#include "tests/integration/queue/qfx.h"

/* An async POST is a 202 with its id, Location and Preference-Applied;
   the message is then sent once, with its Message-ID and metadata, and
   counted in mailpool_messages_total. */
void test_async_202_means_stored_then_sent_once_with_its_message_id(void **state)
{
    (void)state;
    struct peer *p = relay("{}");
    struct mpserve *s = svc(p, NULL, NULL);
    struct http_resp r;
    long st;
    json_t *j = call(s, "POST", "/v1/messages", ASYNC,
                     "{\"from\":\"s@example.org\",\"to\":[\"r@example.org\"],"
                     "\"headers\":{\"Subject\":\"q\"},\"body\":\"hello\","
                     "\"metadata\":{\"user\":\"42\"}}",
                     &st, &r);
    assert_int_equal(st, 202);
    const char *id = jstr(j, "id");
    assert_int_equal(strlen(id), 22);
    assert_int_equal(strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
                                "qrstuvwxyz0123456789-_"),
                     22);
    assert_string_equal(jstr(j, "status"), "queued");
    char *loc = http_resp_header(&r, "Location");
    char *pa = http_resp_header(&r, "Preference-Applied");
    char want[64];
    snprintf(want, sizeof want, "/v1/messages/%s", id);
    assert_non_null(loc);
    assert_string_equal(loc, want);
    assert_non_null(pa);
    assert_string_equal(pa, "respond-async");
    free(loc);
    free(pa);
    http_resp_free(&r);
    json_t *d = wait_final(s, id, 5000);
    assert_string_equal(jstr(d, "status"), "sent");
    assert_string_equal(jstr(d, "message_id"), jstr(j, "message_id"));
    json_t *a = json_object_get(d, "attempts");
    assert_int_equal(json_array_size(a), 1);
    assert_int_equal(
        json_integer_value(json_object_get(json_array_get(a, 0), "code")), 250);
    assert_string_equal(jstr(json_object_get(d, "metadata"), "user"), "42");
    assert_int_equal(copies(p, jstr(j, "message_id")), 1);
    /* counted where every finished message is */
    assert_int_equal(
        metric_of(s, "\nmailpool_messages_total{status=\"sent\"} "), 1);
    json_decref(d);
    json_decref(j);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    peer_stop(p);
}

/* An async batch with one bad message is a 422 naming its fields and
   queues nothing; a good batch is a 202 and both are sent. */
void test_async_batch_is_validated_whole_and_nothing_is_queued(void **state)
{
    (void)state;
    struct peer *p = relay("{}");
    struct mpserve *s = svc(p, NULL, NULL);
    long st;
    json_t *j = call(s, "POST", "/v1/messages/batch", ASYNC,
                     "{\"messages\":[{\"from\":\"a@example.org\",\"to\":"
                     "[\"b@example.org\"],\"body\":\"x\"},{\"from\":\"bad\","
                     "\"to\":[\"c@example.org\"],\"body\":\"y\",\"send_at\":"
                     "\"tomorrow\"}]}",
                     &st, NULL);
    assert_int_equal(st, 422);
    char *d = json_dumps(j, 0);
    assert_non_null(strstr(d, "messages[1].from"));
    assert_non_null(strstr(d, "messages[1].send_at"));
    free(d);
    json_decref(j);
    j = call(s, "POST", "/v1/messages/batch", ASYNC,
             "{\"messages\":[{\"from\":\"a@example.org\",\"to\":"
             "[\"b@example.org\"],\"body\":\"x\"},{\"from\":\"a@example.org\","
             "\"to\":[\"c@example.org\"],\"body\":\"y\"}]}",
             &st, NULL);
    assert_int_equal(st, 202);
    json_t *res = json_object_get(j, "results");
    assert_int_equal(json_array_size(res), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *f = wait_final(s, jstr(json_array_get(res, i), "id"), 5000);
        assert_string_equal(jstr(f, "status"), "sent");
        json_decref(f);
    }
    json_decref(j);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    assert_int_equal(peer_conn_count(p) > 0, 1);
    assert_int_equal(msgs_total(p), 2); /* the 422 batch sent nothing */
    peer_stop(p);
}

/* An unknown id is 404 (status and cancel); send_at without
   respond-async is 422. */
void test_unknown_id_is_404_and_send_at_in_sync_is_422(void **state)
{
    (void)state;
    struct peer *p = relay("{}");
    struct mpserve *s = svc(p, NULL, NULL);
    long st;
    json_t *j = status_of(s, "AAAAAAAAAAAAAAAAAAAAAA", &st);
    assert_int_equal(st, 404);
    json_decref(j);
    j = call(s, "POST", "/v1/messages/AAAAAAAAAAAAAAAAAAAAAA/cancel", NULL,
             NULL, &st, NULL);
    assert_int_equal(st, 404);
    json_decref(j);
    j = call(s, "POST", "/v1/messages", JSONH,
             "{\"from\":\"a@example.org\",\"to\":[\"b@example.org\"],"
             "\"body\":\"x\",\"send_at\":\"2030-01-01T00:00:00Z\"}",
             &st, NULL);
    assert_int_equal(st, 422);
    char *d = json_dumps(j, 0);
    assert_non_null(strstr(d, "respond-async"));
    free(d);
    json_decref(j);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    peer_stop(p);
}

/* A message with send_at is scheduled and sent no earlier; a cancelled
   one is final (a second cancel 409) and never reaches the relay. */
void test_scheduled_waits_for_send_at_and_cancel_stops_it(void **state)
{
    (void)state;
    struct peer *p = relay("{}");
    struct mpserve *s = svc(p, NULL, NULL);
    char when[64], extra[96], far[96];
    time_t t = time(NULL) + 2;
    struct tm tm;
    long st;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(extra, sizeof extra, ",\"send_at\":\"%s\"", when);
    t += 3600;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    snprintf(far, sizeof far, ",\"send_at\":\"%s\"", when);
    long long t0 = now_ms();
    char *soon = post_async(s, "soon@example.org", extra);
    char *later = post_async(s, "later@example.org", far);
    json_t *j = status_of(s, soon, &st);
    assert_string_equal(jstr(j, "status"), "scheduled");
    assert_true(json_is_string(json_object_get(j, "next_attempt_at")));
    json_decref(j);
    char path[128];
    snprintf(path, sizeof path, "/v1/messages/%s/cancel", later);
    j = call(s, "POST", path, NULL, NULL, &st, NULL);
    assert_int_equal(st, 200);
    assert_string_equal(jstr(j, "status"), "cancelled");
    json_decref(j);
    j = call(s, "POST", path, NULL, NULL, &st, NULL);
    assert_int_equal(st, 409); /* final now */
    json_decref(j);
    j = wait_final(s, soon, 6000);
    assert_string_equal(jstr(j, "status"), "sent");
    assert_true(now_ms() - t0 >= 1000); /* not before send_at */
    json_decref(j);
    j = status_of(s, later, &st);
    assert_string_equal(jstr(j, "status"), "cancelled");
    json_decref(j);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    assert_int_equal(msgs_total(p), 1); /* never the cancelled one */
    free(soon);
    free(later);
    peer_stop(p);
}

/* Two 451s, then sent: three attempts recorded with their codes. */
void test_temporary_failures_retry_with_backoff_then_sent(void **state)
{
    (void)state;
    struct peer *p = relay("{'rules': [{'match': '^MAIL', 'times': 2, "
                           "'reply': '451 4.3.0 try again later'}]}");
    struct mpserve *s = svc(p, NULL, NULL);
    char *id = post_async(s, "r@example.org", NULL);
    json_t *d = wait_final(s, id, 8000);
    assert_string_equal(jstr(d, "status"), "sent");
    json_t *a = json_object_get(d, "attempts");
    assert_int_equal(json_array_size(a), 3);
    assert_int_equal(
        json_integer_value(json_object_get(json_array_get(a, 0), "code")), 451);
    assert_string_equal(jstr(json_array_get(a, 0), "status"), "failed");
    assert_int_equal(
        json_integer_value(json_object_get(json_array_get(a, 2), "code")), 250);
    json_decref(d);
    free(id);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    peer_stop(p);
}

/* Partial: the recipients refused for good stay refused, those deferred
   with 4xx are retried alone (the accepted one never gets a second copy),
   and the message ends partial with both attempts recorded. */
void test_partial_retries_only_the_deferred_recipients(void **state)
{
    (void)state;
    struct peer *p = relay("{'rules': ["
                           "{'match': '^RCPT TO:<later@', 'times': 1,"
                           " 'reply': '451 4.2.1 mailbox busy, try later'},"
                           "{'match': '^RCPT TO:<never@',"
                           " 'reply': '550 5.1.1 no such user'}]}");
    struct mpserve *s = svc(p, NULL, NULL);
    long st;
    json_t *j = call(s, "POST", "/v1/messages", ASYNC,
                     "{\"from\":\"s@example.org\",\"to\":[\"now@example.org\","
                     "\"later@example.org\",\"never@example.org\"],"
                     "\"headers\":{\"Subject\":\"q\"},\"body\":\"hello\"}",
                     &st, NULL);
    assert_int_equal(st, 202);
    char *id = strdup(jstr(j, "id"));
    json_decref(j);
    json_t *d = wait_final(s, id, 10000);
    assert_string_equal(jstr(d, "status"), "partial");
    json_t *a = json_object_get(d, "attempts");
    assert_int_equal(json_array_size(a), 2);
    char *dump = json_dumps(d, 0);
    assert_non_null(strstr(dump, "mailbox busy"));
    assert_non_null(strstr(dump, "no such user"));
    free(dump);
    json_decref(d);

    struct peer_msg *m = NULL;
    size_t n = 0;
    assert_int_equal(peer_messages(p, &m, &n), 0);
    assert_int_equal(n, 2);
    assert_int_equal(m[0].nrcpt, 1);
    assert_string_equal(m[0].rcpt_to[0], "now@example.org");
    assert_int_equal(m[1].nrcpt, 1); /* later@, alone */
    assert_string_equal(m[1].rcpt_to[0], "later@example.org");
    peer_msgs_free(m, n);
    free(id);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    peer_stop(p);
}

/* A 550 is final at once: failed, one attempt, the relay's words,
   counted as failed in mailpool_messages_total. */
void test_permanent_failure_is_final_after_one_attempt(void **state)
{
    (void)state;
    struct peer *p = relay("{'rules': [{'match': '^MAIL', "
                           "'reply': '550 5.7.1 no thanks'}]}");
    struct mpserve *s = svc(p, NULL, NULL);
    char *id = post_async(s, "r@example.org", NULL);
    json_t *d = wait_final(s, id, 5000);
    assert_string_equal(jstr(d, "status"), "failed");
    json_t *a = json_object_get(d, "attempts");
    assert_int_equal(json_array_size(a), 1);
    assert_int_equal(
        json_integer_value(json_object_get(json_array_get(a, 0), "code")), 550);
    char *dump = json_dumps(d, 0);
    assert_non_null(strstr(dump, "no thanks")); /* the relay's words */
    free(dump);
    assert_int_equal(
        metric_of(s, "\nmailpool_messages_total{status=\"failed\"} "), 1);
    assert_int_equal(
        metric_of(s, "\nmailpool_messages_total{status=\"sent\"} "), 0);
    json_decref(d);
    free(id);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    peer_stop(p);
}
