/*
 * test_webhooks_config.c - what the webhook configuration of `mailpool
 * serve` decides, proven on what the receiver
 * (tests/peers/webhook_receiver.py) got and on what the service said:
 * HTTPS is verified unless webhook tls_verify is false; a redirect is not
 * followed; 410 stops the type, also across a restart, until the
 * configuration changes; mistakes (a secret file readable by others among
 * them) stop the start naming them; the README's example is mailpool's
 * and its code verifies what mailpool signs.  The relay is the fake
 * (tests/fakes/fake_smtp.py), the queue SQLite; the fixture is
 * tests/support/webhook_fx.h.
 */
#include "tests/support/webhook_fx.h"

/* Restarts w's service with more flags (NULL-ended, may be NULL). */
static void restart(struct wh *w, const char *const *more)
{
    assert_int_equal(mpserve_stop_clean(w->s, 10000), 0);
    mpserve_free(w->s);
    w->s = svc(w->p, w->dir, w->port, more);
}

/* An https receiver with a self-signed certificate: by default its
   certificate is refused (no POST arrives, the try records why); with
   webhook.tls_verify = false the same event is delivered. */
static void test_https_is_verified_unless_tls_verify_is_false(void **st)
{
    (void)st;
    char url[64], cmd[512], script[256];
    struct wh w;
    wh_up(&w, NULL, SECRET, "{}", NULL);
    snprintf(url, sizeof url, "https://127.0.0.1:%d/hook", w.port);
    const char *https[] = { "--webhook-url", url, NULL };
    const char *trusting[] = { "--webhook-url", url, "--webhook-tls-verify",
                               "false", NULL };
    snprintf(cmd, sizeof cmd, "%s %s >/dev/null 2>&1",
             root_path(script, sizeof script, "tests/peers/make-cert.sh"),
             w.dir);
    assert_int_equal(system(cmd), 0);
    w.r.tls = 1;
    rx_start(&w.r, w.dir, w.port, SECRET, "ok");
    restart(&w, https);
    char *id = post_async(w.s, "r@example.org");
    json_t *e = NULL;
    for (long long end = ts_now_ms() + 10000;
         e == NULL || json_array_size(json_object_get(e, "attempts")) == 0;
         ts_sleep_ms(50)) {
        json_decref(e);
        e = wait_event(w.s, id, "message.sent", "pending", 1000);
        if (ts_now_ms() > end)
            fail_msg("no try recorded");
    }
    json_t *t0 = json_array_get(json_object_get(e, "attempts"), 0);
    assert_true(json_is_null(json_object_get(t0, "http_status")));
    assert_non_null(strstr(jstr(t0, "error"), "certificate"));
    json_decref(e);
    json_t *posts = rx_posts(&w.r);
    assert_int_equal(json_array_size(posts), 0);
    json_decref(posts);
    restart(&w, trusting);
    json_decref(wait_event(w.s, id, "message.sent", "delivered", 15000));
    posts = rx_posts(&w.r);
    size_t valid;
    assert_int_equal(posts_for(posts, id, &valid, NULL), 1);
    assert_int_equal(valid, 1);
    json_decref(posts);
    free(id);
    wh_down(&w);
}

/* A receiver that redirects: the redirect is an answer like any other
   (307 recorded, retried later), never followed. */
static void test_a_redirect_is_not_followed(void **st)
{
    (void)st;
    struct wh w;
    wh_up(&w, "redirect", SECRET, "{}", NULL);
    char *id = post_async(w.s, "r@example.org");
    json_t *e = wait_event(w.s, id, "message.sent", "pending", 15000);
    for (long long end = ts_now_ms() + 10000;
         json_array_size(json_object_get(e, "attempts")) == 0;
         ts_sleep_ms(50)) {
        json_decref(e);
        e = wait_event(w.s, id, "message.sent", "pending", 1000);
        if (ts_now_ms() > end)
            fail_msg("no try recorded");
    }
    assert_int_equal(
        json_integer_value(json_object_get(
            json_array_get(json_object_get(e, "attempts"), 0), "http_status")),
        307);
    ts_sleep_ms(300);
    json_t *posts = rx_posts(&w.r), *one;
    size_t i;
    json_array_foreach(posts, i, one)
        assert_string_equal(jstr(one, "path"), "/hook");
    json_decref(posts);
    json_decref(e);
    free(id);
    wh_down(&w);
}

/* 410 stops message.sent: the next message's event is stopped without a
   POST, also after a restart with the same configuration; a changed
   webhook.events starts the type again. */
static void test_410_stops_the_type_until_the_configuration_changes(void **st)
{
    (void)st;
    static const char *const other[] = { "--webhook-events",
                                         "message.sent, message.failed", NULL };
    struct wh w;
    wh_up(&w, "gone", SECRET, "{}", NULL);
    char *id = post_async(w.s, "r@example.org");
    json_decref(wait_event(w.s, id, "message.sent", "stopped", 15000));
    free(id);
    for (int run = 0; run < 2; run++) { /* as is, then restarted */
        id = post_async(w.s, "r@example.org");
        json_t *e = wait_event(w.s, id, "message.sent", "stopped", 15000);
        assert_int_equal(json_array_size(json_object_get(e, "attempts")), 0);
        json_decref(e);
        free(id);
        if (run == 0)
            restart(&w, NULL);
    }
    ts_sleep_ms(1500);
    json_t *posts = rx_posts(&w.r);
    assert_int_equal(json_array_size(posts), 1); /* the 410 only */
    json_decref(posts);
    rx_stop(&w.r);
    rx_start(&w.r, w.dir, w.port, SECRET, "ok");
    restart(&w, other);
    id = post_async(w.s, "r@example.org");
    json_decref(wait_event(w.s, id, "message.sent", "delivered", 15000));
    free(id);
    wh_down(&w);
}

/* Each mistake in the webhook.* keys stops the start (exit 2) before any
   port is bound, naming the key or the file and never the secret: a
   secret file group or others may read, a secret too short, an unknown
   event type, a URL that is not http(s), a wait that is not one. */
static void test_webhook_mistakes_stop_the_start_naming_them(void **st)
{
    (void)st;
    static const struct {
        const char *secret;
        mode_t mode;
        const char *key, *value, *said;
    } cases[] = {
        { SECRET, 0644, NULL, NULL, "is open to others (mode 0644)" },
        { "short-secret", 0600, NULL, NULL, "of 16 bytes or more" },
        { SECRET, 0600, "--webhook-events", "message.sent,message.sen",
          "webhook.events: unknown event type \"message.sen\"" },
        { SECRET, 0600, "--webhook-url", "ftp://127.0.0.1/hook",
          "webhook.url: must be an http:// or https:// URL" },
        { SECRET, 0600, "--webhook-retry-schedule", "5s,5x",
          "webhook.retry_schedule: \"5x\" is not a wait" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *dir = temp_dir(), sfile[192], q[192], *out = NULL;
        put_file(dir, "secret", cases[i].secret, cases[i].mode, sfile,
                 sizeof sfile);
        in_dir(q, sizeof q, dir, "queue.db");
        const char *argv[] = { "serve",
                               "--http-listen",
                               "127.0.0.1:0",
                               "--queue-path",
                               q,
                               "--webhook-url",
                               "http://127.0.0.1:9/hook",
                               "--webhook-secret-file",
                               sfile,
                               cases[i].key,
                               cases[i].value,
                               NULL };
        assert_int_equal(mpserve_run(argv, 10000, &out), 2);
        assert_non_null(strstr(out, cases[i].said));
        if (cases[i].key == NULL)
            assert_non_null(strstr(out, sfile));
        assert_null(strstr(out, "bWFpbHBvb2wt")); /* never the secret */
        assert_null(strstr(out, "short-secret"));
        assert_null(strstr(out, "listening"));
        free(out);
        ts_rmtree(dir);
        free(dir);
    }
}

/* The value after "name: " up to the end of its line in text (caller
   frees). */
static char *readme_field(const char *text, const char *name)
{
    const char *p = strstr(text, name);
    assert_non_null(p);
    p += strlen(name);
    return strndup(p, strcspn(p, "\n`"));
}

/* README.md's example request is what mailpool sends: its body is the
   payload mailpool builds for that message, its signature the one
   mailpool computes under the example secret; and the README's Python,
   the test receiver's own, verifies it. */
static void test_readme_example_is_mailpools_and_its_code_verifies_it(void **st)
{
    (void)st;
    char path[512], script[512], sfile[192], *dir = temp_dir();
    char *readme = ts_slurp(root_path(path, sizeof path, "README.md"), NULL);
    assert_non_null(readme);
    char *id = readme_field(readme, "webhook-id: ");
    char *ts = readme_field(readme, "webhook-timestamp: ");
    char *sig = readme_field(readme, "webhook-signature: ");
    char *body = readme_field(readme, "\n{\"type\":\"message.sent\"");
    char *secret = readme_field(readme, "example secret\n`");
    char mid[] = "<084rWjaF9Ap8ZS2gqqAqeg@example.org>",
         meta[] = "{\"order\":\"1234\"}", status[] = "sent", enh[] = "2.0.0",
         text[] = "2.0.0 Ok", acc[] = "you@example.org", rej[] = "";
    struct queue_event ev = {
        .state = QUEUE_SENT,
        .created_at = 1796002248.1085,
        .attempt = 1,
        .code = 250,
        .message_id = mid,
        .metadata = meta,
        .status = status,
        .enhanced = enh,
        .text = text,
        .accepted = acc,
        .rejected = rej,
    };
    snprintf(ev.id, sizeof ev.id, "%s", id);
    snprintf(ev.message, sizeof ev.message, "084rWjaF9Ap8ZS2gqqAqeg");
    char *made = webhook_payload_(&ev), err[256], mine[128];
    assert_non_null(made);
    assert_string_equal(made + strlen("{\"type\":\"message.sent\""), body);
    unsigned char *key;
    size_t keylen;
    put_file(dir, "secret", secret, 0600, sfile, sizeof sfile);
    assert_int_equal(
        webhook_secret_load_(sfile, &key, &keylen, err, sizeof err), 0);
    assert_int_equal(webhook_sign_(key, keylen, id, strtoll(ts, NULL, 10), made,
                                   mine, sizeof mine),
                     0);
    assert_string_equal(mine, sig);
    const char *argv[] = { "/usr/bin/python3",
                           root_path(script, sizeof script,
                                     "tests/peers/webhook_receiver.py"),
                           "--check-readme", path, NULL };
    assert_int_equal(run_logged(argv, dir, "check-readme.log"), 0);
    free(key);
    free(made);
    free(id);
    free(ts);
    free(sig);
    free(body);
    free(secret);
    free(readme);
    ts_rmtree(dir);
    free(dir);
}

#define T(fn) cmocka_unit_test(fn)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_410_stops_the_type_until_the_configuration_changes),
        T(test_a_redirect_is_not_followed),
        T(test_https_is_verified_unless_tls_verify_is_false),
        T(test_webhook_mistakes_stop_the_start_naming_them),
        T(test_readme_example_is_mailpools_and_its_code_verifies_it),
    };
    return wh_run(tests, sizeof tests / sizeof tests[0]);
}
