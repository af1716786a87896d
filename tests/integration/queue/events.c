/*
 * events.c - the outbox on each backend: with a webhook configured, each
 * state change writes its event in the transaction of the change.
 */
#include <sys/stat.h>

#include "tests/integration/queue/cases.h"
#include "tests/integration/queue/qfx.h"

/* The types of the events GET lists for a message, comma-joined into
   buf. */
static const char *event_types(const json_t *doc, char *buf, size_t len)
{
    json_t *e;
    size_t i, used = 0;
    buf[0] = '\0';
    json_array_foreach(json_object_get(doc, "events"), i, e)
        used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? "," : "",
                                 jstr(e, "type"));
    return buf;
}

/* Writes the webhook's signing secret into the file sfile (mode 0600). */
static void write_secret(const char *sfile)
{
    FILE *f = fopen(sfile, "w");
    assert_non_null(f);
    fputs("whsec_bWFpbHBvb2wtd2ViaG9vay10ZXN0LXNlY3JldC0zMmI=\n", f);
    fclose(f);
    assert_int_equal(chmod(sfile, 0600), 0);
}

/* Follows message id until it is sent, a 451 first: every GET that shows
   a state already lists that state's events (retry: message.deferred;
   sent: message.deferred,message.sent). */
static void events_follow_states(struct mpserve *s, const char *id)
{
    char types[256];
    long st;
    const char *want = NULL;
    int deferred = 0; /* once written, the retry's event stays listed */
    for (long long end = now_ms() + 8000;
         want == NULL || strcmp(want, "message.deferred,message.sent") != 0;
         sleep_ms(5)) {
        json_t *d = status_of(s, id, &st);
        const char *status = jstr(d, "status"), *got;
        got = event_types(d, types, sizeof types);
        if (strcmp(got, "message.deferred") == 0)
            deferred = 1;
        /* queued or sending: before the 451 nothing, after it (sending
           again) the deferred event */
        want = strcmp(status, "retry") == 0  ? "message.deferred"
               : strcmp(status, "sent") == 0 ? "message.deferred,message.sent"
               : deferred                    ? "message.deferred"
                                             : "";
        assert_string_equal(got, want);
        json_decref(d);
        if (now_ms() > end)
            fail_msg("message %s not sent in 8 s", id);
    }
}

/* The outbox on this backend: with a webhook configured, each state change
   writes its event in the transaction of the change, so every GET that
   shows a state already lists its event (retry: message.deferred, then
   sent: message.sent; a cancel: message.cancelled); the receiver is down,
   so they stay pending, each try recorded with its error. */
void test_each_state_change_writes_its_event_with_it(void **state)
{
    (void)state;
    char *dir, *q = temp_queue(&dir), sfile[300], url[64], types[256];
    snprintf(sfile, sizeof sfile, "%s/secret", dir);
    write_secret(sfile);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/hook", mpserve_free_port());
    const char *more[] = { "--webhook-url",
                           url,
                           "--webhook-secret-file",
                           sfile,
                           "--webhook-retry-schedule",
                           "1h",
                           NULL };
    struct peer *p = relay("{'rules': [{'match': '^MAIL', 'times': 1, "
                           "'reply': '451 4.3.0 try again later'}]}");
    struct mpserve *s = svc(p, NULL, more);
    char *id = post_async(s, "r@example.org", NULL);
    char when[96];
    time_t t = time(NULL) + 3600;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(when, sizeof when, ",\"send_at\":\"%Y-%m-%dT%H:%M:%SZ\"", &tm);
    char *later = post_async(s, "later@example.org", when);
    long st;
    events_follow_states(s, id);
    char path[128];
    snprintf(path, sizeof path, "/v1/messages/%s/cancel", later);
    json_decref(call(s, "POST", path, NULL, NULL, &st, NULL));
    assert_int_equal(st, 200);
    json_t *d = status_of(s, later, &st);
    assert_string_equal(event_types(d, types, sizeof types),
                        "message.cancelled");
    json_decref(d);
    sleep_ms(1500);
    d = status_of(s, id, &st);
    json_t *e = json_array_get(json_object_get(d, "events"), 1);
    assert_string_equal(jstr(e, "state"), "pending");
    json_t *t0 = json_array_get(json_object_get(e, "attempts"), 0);
    assert_non_null(t0);
    assert_true(json_is_null(json_object_get(t0, "http_status")));
    assert_true(strlen(jstr(t0, "error")) > 0);
    json_decref(d);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    peer_stop(p);
    free(id);
    free(later);
    unlink(sfile);
    free(q);
    ts_rmtree(dir);
    free(dir);
}
