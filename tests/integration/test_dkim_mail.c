/*
 * test_dkim_mail.c - DKIM signing where the user meets it: messages posted to
 * `mailpool serve` (synchronously and with Prefer: respond-async, in the
 * envelope and the raw form) and sent with `mailpool send`, into aiosmtpd
 * and a private Postfix; each message that arrived is verified by dkimpy
 * (tests/peers/dkim_verify.py) with the test's keys served by its DNS
 * function.  The same bytes with one byte changed must fail; with signing
 * off nothing verifies; List-Unsubscribe and List-Unsubscribe-Post are in
 * h=; a key that does not load stops `mailpool serve` with exit 2 naming
 * the file.  The keys are published (to dkimpy) with the records `mailpool
 * dkim-keygen` prints, checked against certtool's reading of the key.
 * A retry resends the pool's signature and the queue signs each attempt
 * anew.  The composed form is in test_dkim_composed.c; the fixture is
 * tests/support/dkim_fx.h.
 */
#include "tests/support/dkim_fx.h"

static void test_http_sync_envelope_rsa_verifies_and_covers_unsubscribe(
    void **st)
{
    struct peer *p = peer_start_aiosmtpd(NULL);
    struct peer_msg *m = NULL;
    size_t n = 0;
    char *json = envelope_json("rcpt@example.net");
    (void)st;

    assert_non_null(p);
    struct mpserve *s = serve(peer_port(p), RSA_ONLY);
    assert_int_equal(post(s, json, 0), 200);
    assert_int_equal(peer_messages(p, &m, &n), 0);
    assert_int_equal(n, 1);
    assert_memory_equal(m[0].data, "DKIM-Signature: ", 16);
    struct verdict v = verify_and_tamper(m[0].data, m[0].len, "bye", 1);
    assert_string_equal(alg_of(&v, 0), "rsa-sha256");
    assert_int_equal(h_count(&v, 0, "from"), 2);
    assert_int_equal(h_count(&v, 0, "list-unsubscribe"), 1);
    assert_int_equal(h_count(&v, 0, "list-unsubscribe-post"), 1);
    assert_int_equal(h_count(&v, 0, "date"), 1);
    assert_int_equal(h_count(&v, 0, "message-id"), 1);
    /* a signed field changed fails too */
    struct verdict t = verify_and_tamper(m[0].data, m[0].len, "One-Click", 1);
    json_decref(t.j);
    json_decref(v.j);
    for (char *l = (char *)m[0].data; *l != '\0' && strncmp(l, "\r\n", 2);) {
        char *e = strstr(l, "\r\n");
        if (strncmp(l, "DKIM", 4) == 0 || l[0] == ' ')
            assert_true(e - l <= 78);
        l = e + 2;
    }
    peer_msgs_free(m, n);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    peer_stop(p);
    free(json);
}

static void test_http_async_raw_rsa_and_ed25519_both_verify(void **st)
{
    static const char json[] =
        "{\"from\":\"app@" DOMAIN "\",\"to\":[\"rcpt@example.net\"],"
        "\"raw\":\"From: News <news@mail." DOMAIN ">\\r\\n"
        "To: rcpt@example.net\\r\\nSubject: raw one\\r\\n"
        "Date: Mon, 30 Nov 2026 03:00:00 +0000\\r\\n"
        "Message-ID: <raw1@mail." DOMAIN ">\\r\\n"
        "List-Unsubscribe: <https://" DOMAIN "/u/2>\\r\\n"
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\\r\\n"
        "\\r\\n..starts with two dots\\r\\nbody end\\r\\n\"}";
    const char *flags[16];
    struct peer *p = peer_start_aiosmtpd(NULL);
    struct peer_msg *m = NULL;
    size_t n = 0;
    (void)st;

    assert_non_null(p);
    struct mpserve *s = serve(peer_port(p), both_flags(flags));
    assert_int_equal(post(s, json, 1), 202);
    assert_int_equal(peer_wait_messages(p, 1, 15000), 1);
    assert_int_equal(peer_messages(p, &m, &n), 0);
    assert_int_equal(n, 1);
    struct verdict v = verify_and_tamper(m[0].data, m[0].len, "body end", 2);
    assert_string_equal(alg_of(&v, 0), "rsa-sha256");
    assert_string_equal(alg_of(&v, 1), "ed25519-sha256");
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(h_count(&v, i, "list-unsubscribe"), 1);
        assert_int_equal(h_count(&v, i, "list-unsubscribe-post"), 1);
        assert_int_equal(h_count(&v, i, "from"), 2);
    }
    json_decref(v.j);
    peer_msgs_free(m, n);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    peer_stop(p);
}

static void test_signing_off_or_other_domain_nothing_verifies(void **st)
{
    static const char *const never[] = {
        "--dkim-domain",
        DOMAIN,
        "--dkim-selector",
        "rsa1",
        "--dkim-key-file",
        K.rsa,
        "--dkim-sign",
        "never",
        NULL,
    };
    static const char other[] =
        "{\"from\":\"a@other.example\",\"to\":[\"r@example.net\"],"
        "\"headers\":{\"Subject\":\"x\"},\"body\":\"hi\"}";
    struct peer *p = peer_start_aiosmtpd(NULL);
    struct peer_msg *m = NULL;
    size_t n = 0, sigs, good;
    char *json = envelope_json("rcpt@example.net");
    (void)st;

    assert_non_null(p);
    struct mpserve *s = serve(peer_port(p), never);
    assert_int_equal(post(s, json, 0), 200);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    s = serve(peer_port(p), RSA_ONLY);
    assert_int_equal(post(s, other, 0), 200);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    assert_int_equal(peer_messages(p, &m, &n), 0);
    assert_int_equal(n, 2);
    for (size_t i = 0; i < n; i++) {
        struct verdict v = verify(m[i].data, m[i].len);
        verdict_counts(&v, &sigs, &good);
        assert_int_not_equal(v.exit, 0);
        assert_int_equal(sigs, 0);
        assert_null(strstr((char *)m[i].data, "DKIM-Signature"));
        json_decref(v.j);
    }
    peer_msgs_free(m, n);
    peer_stop(p);
    free(json);
}

/* Sends the envelope message through the service with rsa + ed25519 into
   a relay at port. */
static void post_both(int port)
{
    const char *flags[16];
    char *json = envelope_json("rcpt@" DOMAIN);
    struct mpserve *s = serve(port, both_flags(flags));

    assert_int_equal(post(s, json, 0), 200);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    free(json);
}

static void test_postfix_stores_a_message_that_verifies(void **st)
{
    struct mta *m = mta_start_postfix();
    struct mta_msg *msgs = NULL;
    size_t n = 0;
    (void)st;

    assert_non_null(m);
    post_both(mta_port(m, "plain"));
    assert_int_equal(mta_wait_messages(m, 1, 30000), 1);
    assert_int_equal(mta_messages(m, &msgs, &n), 0);
    assert_int_equal(n, 1);
    struct verdict v = verify_and_tamper(msgs[0].data, msgs[0].len, "bye", 2);
    assert_int_equal(h_count(&v, 1, "list-unsubscribe-post"), 1);
    json_decref(v.j);
    mta_msgs_free(msgs, n);
    assert_int_equal(mta_stop(m), 0);
}

static void test_smtp_sink_receives_a_message_that_verifies(void **st)
{
    struct peer *p = peer_start_sink(NULL);
    struct peer_msg *m = NULL;
    size_t n = 0;
    (void)st;

    assert_non_null(p);
    post_both(peer_port(p));
    assert_int_equal(peer_wait_messages(p, 1, 15000), 1);
    assert_int_equal(peer_messages(p, &m, &n), 0);
    struct verdict v = verify_and_tamper(m[0].data, m[0].len, "bye", 2);
    json_decref(v.j);
    peer_msgs_free(m, n);
    peer_stop(p);
}

static void test_mailpool_send_signs_rsa_and_ed25519(void **st)
{
    struct peer *p = peer_start_aiosmtpd(NULL);
    struct peer_msg *m = NULL;
    size_t n = 0;
    char server[64], body[200], *out = NULL;
    FILE *f;
    (void)st;

    assert_non_null(p);
    snprintf(server, sizeof server, "127.0.0.1:%d", peer_port(p));
    snprintf(body, sizeof body, "%s/body.txt", K.dir);
    f = fopen(body, "w");
    assert_non_null(f);
    fputs("Hello from the command line.\n.dot line\nbye\n", f);
    fclose(f);
    const char *argv[] = {
        "send",
        "--server",
        server,
        "--tls",
        "none",
        "--from",
        "app@" DOMAIN,
        "--to",
        "rcpt@example.net",
        "--header",
        "From: App <app@" DOMAIN ">",
        "--header",
        "Subject: cli",
        "--header",
        "List-Unsubscribe: <https://" DOMAIN "/u/3>",
        "--header",
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        "--body-file",
        body,
        "--dkim-domain",
        DOMAIN,
        "--dkim-selector",
        "rsa1",
        "--dkim-key-file",
        K.rsa,
        "--dkim-ed25519-selector",
        "ed1",
        "--dkim-ed25519-key-file",
        K.ed,
        NULL,
    };
    assert_int_equal(mpserve_run(argv, 30000, &out), 0);
    free(out);
    assert_int_equal(peer_messages(p, &m, &n), 0);
    assert_int_equal(n, 1);
    struct verdict v = verify_and_tamper(m[0].data, m[0].len, "bye", 2);
    assert_int_equal(h_count(&v, 0, "list-unsubscribe"), 1);
    assert_int_equal(h_count(&v, 1, "list-unsubscribe-post"), 1);
    json_decref(v.j);
    peer_msgs_free(m, n);
    peer_stop(p);
}

/* A config file with a second signing domain in a [dkim.DOMAIN] section;
   its path in buf. */
static void write_two_domain_ini(char *buf, size_t len)
{
    FILE *f;

    snprintf(buf, len, "%s/two.ini", K.dir);
    f = fopen(buf, "w");
    assert_non_null(f);
    fprintf(f,
            "[dkim]\ndomain = other.example\nselector = rsa1\n"
            "key_file = %s\nsign = always\n\n[dkim." DOMAIN "]\n"
            "selector = ed1x\nkey_file = %s\ned25519_selector = ed1\n"
            "ed25519_key_file = %s\n",
            K.rsa, K.rsa, K.ed);
    fclose(f);
}

static void test_section_domain_signs_its_own_and_existing_signature_kept(
    void **st)
{
    static const char presigned[] =
        "{\"from\":\"app@" DOMAIN "\",\"to\":[\"rcpt@example.net\"],"
        "\"raw\":\"DKIM-Signature: v=1; a=rsa-sha256; d=" DOMAIN "; s=ed1x;"
        " h=from; bh=AAAA; b=AAAA\\r\\nFrom: app@" DOMAIN "\\r\\n"
        "Subject: pre\\r\\n\\r\\nkept\\r\\n\"}";
    char ini[200], *json = envelope_json("rcpt@example.net");
    const char *extra[] = { "--config", ini, NULL };
    struct peer *p = peer_start_aiosmtpd(NULL);
    struct peer_msg *m = NULL;
    size_t n = 0;
    (void)st;

    assert_non_null(p);
    write_two_domain_ini(ini, sizeof ini);
    struct mpserve *s = serve(peer_port(p), extra);
    assert_int_equal(post(s, json, 0), 200);
    assert_int_equal(post(s, presigned, 0), 200);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    assert_int_equal(peer_messages(p, &m, &n), 0);
    assert_int_equal(n, 2);
    /* From example.test: the section's keys, s=ed1x (RSA) and s=ed1 */
    struct verdict v = verify(m[0].data, m[0].len);
    assert_int_equal(v.exit, 0);
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(v.j, "s"), 0)),
        "ed1x");
    assert_string_equal(
        json_string_value(json_array_get(json_object_get(v.j, "d"), 1)),
        DOMAIN);
    json_decref(v.j);
    /* the presigned one: d= and s= already there for RSA, so only the
       Ed25519 signature is added, first */
    const char *d = (const char *)m[1].data;
    assert_memory_equal(d, "DKIM-Signature: v=1; a=ed25519-sha256;", 38);
    const char *second = strstr(d + 1, "DKIM-Signature:");
    assert_non_null(second);
    assert_null(strstr(second + 1, "DKIM-Signature:"));
    assert_non_null(strstr(second, "s=ed1x; h=from; bh=AAAA; b=AAAA"));
    peer_msgs_free(m, n);
    peer_stop(p);
    free(json);
}

static void test_dkim_keygen_record_holds_the_public_key_certtool_reads(
    void **st)
{
    char cmd[300], der[1024];
    FILE *p;
    size_t n;
    (void)st;

    snprintf(cmd, sizeof cmd,
             "certtool --load-privkey '%s' --pubkey-info "
             "--outder 2>/dev/null | base64 -w0",
             K.rsa);
    p = popen(cmd, "r");
    assert_non_null(p);
    n = fread(der, 1, sizeof der - 1, p);
    der[n] = '\0';
    pclose(p);
    assert_true(n > 300);
    assert_memory_equal(K.rsa_txt, "v=DKIM1; k=rsa; p=", 18);
    assert_string_equal(K.rsa_txt + 18, der);
    assert_memory_equal(K.ed_txt, "v=DKIM1; k=ed25519; p=", 22);
    assert_int_equal(strlen(K.ed_txt + 22), 44);
}

/* The DKIM-Signature fields in s (each up to the next field's start),
   appended to out as one string per field, NUL-separated; their count. */
static size_t sig_fields(const char *s, size_t len, char *out, size_t cap)
{
    size_t n = 0, used = 0;

    for (const char *p = memmem(s, len, "DKIM-Signature:", 15); p != NULL;
         p = memmem(p + 1, len - (size_t)(p + 1 - s), "DKIM-Signature:", 15)) {
        const char *e = p;
        while ((e = strstr(e, "\r\n")) != NULL && (e[2] == ' ' || e[2] == '\t'))
            e += 2;
        size_t k = e != NULL ? (size_t)(e - p) : strlen(p);
        assert_true(used + k + 1 < cap);
        memcpy(out + used, p, k);
        out[used + k] = '\0';
        used += k + 1;
        n++;
    }
    return n;
}

/* sig_fields over every byte the peer received, all connections. */
static size_t peer_sig_fields(struct peer *p, char *out, size_t cap)
{
    char *all = calloc(1, 1);
    size_t alen = 0, n;

    for (int c = 1; c <= peer_conn_count(p); c++) {
        size_t len = 0;
        char *b = peer_conn_bytes(p, c, &len);
        all = realloc(all, alen + len + 1);
        memcpy(all + alen, b, len);
        all[alen += len] = '\0';
        free(b);
    }
    n = sig_fields(all, alen, out, cap);
    free(all);
    return n;
}

/* Undoes the dot-stuffing of a message the fake received, in place. */
static void unstuff(struct peer_msg *m)
{
    size_t o = 0;

    for (size_t i = 0; i < m->len; i++) {
        if (m->data[i] == '.' && i + 1 < m->len && m->data[i + 1] == '.' &&
            (i == 0 || m->data[i - 1] == '\n'))
            continue;
        m->data[o++] = m->data[i];
    }
    m->data[o] = '\0';
    m->len = o;
}

static void test_pool_retry_resends_the_signature_of_the_first_attempt(void **st)
{
    static const char *const retries[] = {
        "--dkim-domain",
        DOMAIN,
        "--dkim-selector",
        "rsa1",
        "--dkim-key-file",
        K.rsa,
        "--pool-retry-backoff-ms",
        "1100",
        NULL,
    };
    struct peer *p = peer_start_fake("{\"rules\": [{\"match\": \"^DOT$\", "
                                     "\"times\": 1, \"reply\": "
                                     "\"451 4.3.0 try again\"}]}");
    struct peer_msg *m = NULL;
    size_t n = 0, total = 0;
    char *json = envelope_json("rcpt@example.net"), fields[8192];
    (void)st;

    assert_non_null(p);
    struct mpserve *s = serve(peer_port(p), retries);
    assert_int_equal(post(s, json, 0), 200);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    total = peer_sig_fields(p, fields, sizeof fields);
    /* two transmissions a second apart, one signature each, the same */
    assert_int_equal(total, 2);
    assert_string_equal(fields, fields + strlen(fields) + 1);
    assert_int_equal(peer_messages(p, &m, &n), 0);
    assert_int_equal(n, 1);
    unstuff(&m[0]);
    struct verdict v = verify_and_tamper(m[0].data, m[0].len, "bye", 1);
    json_decref(v.j);
    peer_msgs_free(m, n);
    peer_stop(p);
    free(json);
}

static void test_queue_retry_signs_each_delivery_attempt_anew(void **st)
{
    static const char *const retries[] = {
        "--dkim-domain",
        DOMAIN,
        "--dkim-selector",
        "rsa1",
        "--dkim-key-file",
        K.rsa,
        "--queue-retry-base",
        "2.2",
        NULL,
    };
    struct peer *p = peer_start_fake("{\"rules\": [{\"match\": \"^DOT$\", "
                                     "\"times\": 1, \"reply\": "
                                     "\"451 4.3.0 try again\"}]}");
    struct peer_msg *m = NULL;
    size_t n = 0;
    char *json = envelope_json("rcpt@example.net"), fields[8192];
    (void)st;

    assert_non_null(p);
    struct mpserve *s = serve(peer_port(p), retries);
    assert_int_equal(post(s, json, 1), 202);
    assert_int_equal(peer_wait_messages(p, 1, 20000), 1);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
    /* two attempts over a second apart: one signature each, t= differs */
    assert_int_equal(peer_sig_fields(p, fields, sizeof fields), 2);
    const char *second = fields + strlen(fields) + 1;
    assert_string_not_equal(strstr(fields, " t="), strstr(second, " t="));
    assert_int_equal(peer_messages(p, &m, &n), 0);
    assert_int_equal(n, 1);
    unstuff(&m[0]);
    struct verdict v = verify_and_tamper(m[0].data, m[0].len, "bye", 1);
    json_decref(v.j);
    peer_msgs_free(m, n);
    peer_stop(p);
    free(json);
}

static void test_key_that_does_not_load_stops_serve_with_exit_2(void **st)
{
    char bad[200], *out = NULL;
    const char *argv[] = { "serve",       "--http-listen",
                           "127.0.0.1:0", "--dkim-domain",
                           DOMAIN,        "--dkim-selector",
                           "s",           "--dkim-key-file",
                           bad,           NULL };
    FILE *f;
    (void)st;

    snprintf(bad, sizeof bad, "%s/broken.pem", K.dir);
    f = fopen(bad, "w");
    assert_non_null(f);
    fputs("-----BEGIN PRIVATE KEY-----\nS3CR3TMATERIAL\n"
          "-----END PRIVATE KEY-----\n",
          f);
    fclose(f);
    assert_int_equal(mpserve_run(argv, 10000, &out), 2);
    assert_non_null(out);
    assert_non_null(strstr(out, bad));
    assert_null(strstr(out, "S3CR3T"));
    free(out);
    unlink(bad);
    assert_int_equal(mpserve_run(argv, 10000, &out), 2);
    assert_non_null(strstr(out, bad));
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_http_sync_envelope_rsa_verifies_and_covers_unsubscribe),
        cmocka_unit_test(test_http_async_raw_rsa_and_ed25519_both_verify),
        cmocka_unit_test(test_signing_off_or_other_domain_nothing_verifies),
        cmocka_unit_test(test_mailpool_send_signs_rsa_and_ed25519),
        cmocka_unit_test(
            test_section_domain_signs_its_own_and_existing_signature_kept),
        cmocka_unit_test(test_smtp_sink_receives_a_message_that_verifies),
        cmocka_unit_test(test_postfix_stores_a_message_that_verifies),
        cmocka_unit_test(
            test_pool_retry_resends_the_signature_of_the_first_attempt),
        cmocka_unit_test(test_queue_retry_signs_each_delivery_attempt_anew),
        cmocka_unit_test(
            test_dkim_keygen_record_holds_the_public_key_certtool_reads),
        cmocka_unit_test(test_key_that_does_not_load_stops_serve_with_exit_2),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
