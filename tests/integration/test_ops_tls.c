/*
 * test_ops_tls.c - the service's HTTPS listener as an operator meets it,
 * over real HTTPS against `build/mailpool serve` in front of the
 * scriptable fake relay (tests/support/peer.h): with
 * http.tls_cert_file/tls_key_file (a certificate made by
 * tests/peers/make-cert.sh, trusted by libcurl as its CA) a message over
 * HTTPS, a plaintext request to the HTTPS port refused cleanly,
 * `mailpool healthcheck` over TLS, the key pair checked at load.  The
 * fixture is tests/support/ops_fx.h; each test starts its own peer and
 * service and stops both by their ids.
 */
#include "tests/support/ops_fx.h"

/* libcurl's body sink: appends to a NUL-terminated buffer of 4 KiB. */
static size_t tls_sink(char *p, size_t size, size_t n, void *ud)
{
    char *buf = ud;
    size_t have = strlen(buf), add = size * n;
    if (have + add >= 4096)
        add = 4095 - have;
    memcpy(buf + have, p, add);
    buf[have + add] = '\0';
    return size * n;
}

/* One HTTPS request trusting ca; the status (0: no answer), body in out
   (4 KiB). */
static long https_req(const char *url, const char *ca, const char *json,
                      char *out)
{
    CURL *h = curl_easy_init();
    struct curl_slist *hdr = curl_slist_append(
        NULL, "Content-Type: application/json");
    long status = 0;
    out[0] = '\0';
    assert_non_null(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CAINFO, ca);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, tls_sink);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    if (json != NULL) {
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, json);
    }
    if (curl_easy_perform(h) == CURLE_OK)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(h);
    return status;
}

/* dir/cert.pem and dir/key.pem from tests/peers/make-cert.sh. */
static void make_cert(const char *dir)
{
    char found[4096], bin[PATH_MAX], cmd[8192];
    assert_non_null(mpserve_binary(found, sizeof found));
    assert_non_null(realpath(found, bin));
    /* BUILD/mailpool -> the checkout */
    *strrchr(bin, '/') = '\0';
    *strrchr(bin, '/') = '\0';
    snprintf(cmd, sizeof cmd, "sh '%s/tests/peers/make-cert.sh' '%s'", bin,
             dir);
    assert_int_equal(system(cmd), 0);
}

static void test_https_listener_serves_tls_and_refuses_plaintext(void **state)
{
    struct fx *fx = *state;
    char dir[] = "/tmp/mailpool-tls-XXXXXX", cert[64], key[64];
    char listen[32], url[96], out[4096], relay[16];
    assert_non_null(mkdtemp(dir));
    make_cert(dir);
    snprintf(cert, sizeof cert, "%s/cert.pem", dir);
    snprintf(key, sizeof key, "%s/key.pem", dir);
    fx->peer = peer_start_fake(NULL);
    assert_non_null(fx->peer);
    snprintf(relay, sizeof relay, "%d", peer_port(fx->peer));
    int port = mpserve_free_port();
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    pid_t pid = ops_spawn_serve((const char *const[]){
        "--http-listen", listen, "--relay-host", "127.0.0.1", "--relay-port",
        relay, "--relay-tls", "none", "--http-tls-cert-file", cert,
        "--http-tls-key-file", key, NULL });
    snprintf(url, sizeof url, "https://127.0.0.1:%d/healthz", port);
    long st = 0;
    for (int i = 0; i < 100 && st != 200; i++) {
        st = https_req(url, cert, NULL, out);
        if (st != 200)
            sleep_ms(100);
    }
    /* A plaintext request to the HTTPS port: no HTTP answer, no crash. */
    char *raw = NULL;
    const char plain[] = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    int raw_rc = mpserve_raw_http(port, plain, sizeof plain - 1, 3000, &raw);
    free(raw);
    char *m = ops_message_json("over https");
    snprintf(url, sizeof url, "https://127.0.0.1:%d/v1/messages", port);
    long sent = https_req(url, cert, m, out);
    free(m);
    int got = peer_wait_messages(fx->peer, 1, 5000) == 1 &&
              peer_has_subject(fx->peer, "over https");
    const char *hc[] = { "healthcheck", "--http-listen",
                         listen,        "--http-tls-cert-file",
                         cert,          "--http-tls-key-file",
                         key,           NULL };
    const char *hc_plain[] = { "healthcheck", "--http-listen", listen, NULL };
    int hc_tls_rc = mpserve_run(hc, 10000, NULL);
    int hc_plain_rc = mpserve_run(hc_plain, 10000, NULL);
    int wst = ops_stop(pid);
    snprintf(url, sizeof url, "rm -rf '%s'", dir);
    assert_int_equal(system(url), 0);

    assert_int_equal(st, 200);
    assert_true(raw_rc < 0);
    assert_int_equal(sent, 200);
    assert_non_null(strstr(out, "\"code\":250"));
    assert_true(got);
    assert_int_equal(hc_tls_rc, 0);
    assert_int_equal(hc_plain_rc, 1);
    assert_true(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
}

static void test_https_key_pair_checked_at_start(void **state)
{
    (void)state;
    char *out = NULL;
    const char *half[] = { "serve",
                           "--http-listen",
                           "127.0.0.1:0",
                           "--http-tls-cert-file",
                           "/nonexistent/cert.pem",
                           NULL };
    assert_int_equal(mpserve_run(half, 10000, &out), 2);
    assert_non_null(strstr(out,
                           "http.tls_cert_file (from --http-tls-cert-file): "
                           "needs http.tls_key_file as well"));
    free(out);
    const char *missing[] = { "serve",
                              "--http-listen",
                              "127.0.0.1:0",
                              "--http-tls-cert-file",
                              "/nonexistent/cert.pem",
                              "--http-tls-key-file",
                              "/nonexistent/key.pem",
                              NULL };
    assert_int_equal(mpserve_run(missing, 10000, &out), 1);
    assert_non_null(strstr(out, "http.tls_cert_file: cannot read "
                                "'/nonexistent/cert.pem'"));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_https_listener_serves_tls_and_refuses_plaintext),
        T(test_https_key_pair_checked_at_start),
#undef T
    };
    return ops_run(tests, sizeof tests / sizeof tests[0]);
}
