/*
 * test_dkim.c - DKIM signing where the user meets it: messages posted to
 * `mailpool serve` (synchronously and with Prefer: respond-async, in the
 * envelope and the raw form) and sent with `mailpool send`, into aiosmtpd
 * and a private Postfix; each message that arrived is verified by dkimpy
 * (tests/peers/dkim_verify.py) with the test's keys served by its DNS
 * function.  The same bytes with one byte changed must fail; with signing
 * off nothing verifies; List-Unsubscribe and List-Unsubscribe-Post are in
 * h=; a key that does not load stops `mailpool serve` with exit 2 naming
 * the file.  The keys are published (to dkimpy) with the records `mailpool
 * dkim-keygen` prints, checked against certtool's reading of the key.
 * The composed form (UTF-8 subject and display name, text + HTML, a long
 * one-click unsubscribe URL) is signed over HTTP, by `mailpool send --json`
 * and in what its --dry-run prints.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <jansson.h>

#include "tests/support/http.h"
#include "tests/support/mpserve.h"
#include "tests/support/mta.h"
#include "tests/support/peer.h"
#include "tests/support/tsupport.h"

#define DOMAIN "example.test"

/* The test's keys: files and the TXT records to serve. */
struct keys {
    char dir[64];
    char rsa[128], ed[128];
    char *rsa_txt, *ed_txt;
};

static struct keys K;

/* The TXT record `mailpool dkim-keygen` prints for the key file, its
   strings joined (caller frees); the zone line's name in name. */
static char *keygen_record(const char *path, char *name, size_t namelen)
{
    const char *argv[] = { "dkim-keygen", "--selector", "sel", "--domain",
                           DOMAIN,        "--key-file", path,  NULL };
    char *out = NULL, *txt, *w;

    assert_int_equal(mpserve_run(argv, 10000, &out), 0);
    assert_non_null(out);
    snprintf(name, namelen, "%.*s", (int)strcspn(out, " "), out);
    txt = calloc(1, strlen(out) + 1);
    w = txt;
    for (const char *p = strchr(out, '"'); p != NULL;) {
        const char *e = strchr(p + 1, '"');
        assert_non_null(e);
        assert_true(e - p - 1 <= 255);
        memcpy(w, p + 1, (size_t)(e - p - 1));
        w += e - p - 1;
        p = strchr(e + 1, '"');
    }
    free(out);
    return txt;
}

/* Writes a new private key of the algorithm as PEM to path; its TXT
   record as `mailpool dkim-keygen` prints it (caller frees). */
static char *write_key(const char *path, gnutls_pk_algorithm_t alg,
                       unsigned bits)
{
    gnutls_x509_privkey_t k;
    gnutls_datum_t d;
    char name[128], *txt;
    FILE *f;

    assert_int_equal(gnutls_x509_privkey_init(&k), 0);
    assert_int_equal(gnutls_x509_privkey_generate(k, alg, bits, 0), 0);
    assert_int_equal(gnutls_x509_privkey_export2_pkcs8(
                         k, GNUTLS_X509_FMT_PEM, NULL, GNUTLS_PKCS_PLAIN, &d),
                     0);
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(d.data, 1, d.size, f), d.size);
    fclose(f);
    assert_int_equal(chmod(path, 0600), 0); /* a secret: owner only */
    txt = keygen_record(path, name, sizeof name);
    assert_string_equal(name, "sel._domainkey." DOMAIN ".");
    gnutls_free(d.data);
    gnutls_x509_privkey_deinit(k);
    return txt;
}

static int setup(void **st)
{
    (void)st;
    snprintf(K.dir, sizeof K.dir, "/tmp/mp-dkim-XXXXXX");
    if (mkdtemp(K.dir) == NULL)
        return -1;
    snprintf(K.rsa, sizeof K.rsa, "%s/rsa.pem", K.dir);
    snprintf(K.ed, sizeof K.ed, "%s/ed.pem", K.dir);
    K.rsa_txt = write_key(K.rsa, GNUTLS_PK_RSA, 2048);
    K.ed_txt = write_key(K.ed, GNUTLS_PK_EDDSA_ED25519,
                         GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_ED25519));
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    free(K.rsa_txt);
    free(K.ed_txt);
    ts_rmtree(K.dir);
    return 0;
}

/* What dkimpy said of a message. */
struct verdict {
    int exit;  /* 0: every signature verified */
    json_t *j; /* its JSON line (or NULL) */
};

/* Verifies data[0..len) with dkimpy, the test's keys in DNS. */
static struct verdict verify(const void *data, size_t len)
{
    char path[160], cmd[2048], out[8192];
    struct verdict v = { -1, NULL };
    size_t n;
    FILE *f, *p;

    snprintf(path, sizeof path, "%s/msg.eml", K.dir);
    f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 tests/peers/dkim_verify.py "
             "'%s' 'rsa1._domainkey." DOMAIN "=%s' "
             "'ed1._domainkey." DOMAIN "=%s' 'ed1x._domainkey." DOMAIN "=%s' "
             "'rsa1._domainkey.other.example=%s'",
             path, K.rsa_txt, K.ed_txt, K.rsa_txt, K.rsa_txt);
    p = popen(cmd, "r");
    assert_non_null(p);
    n = fread(out, 1, sizeof out - 1, p);
    out[n] = '\0';
    v.exit = pclose(p);
    v.exit = WIFEXITED(v.exit) ? WEXITSTATUS(v.exit) : -1;
    v.j = json_loads(out, 0, NULL);
    if (v.j == NULL)
        print_error("dkim_verify.py said: %s\n", out);
    return v;
}

/* The number of signatures dkimpy found and how many verified. */
static void verdict_counts(const struct verdict *v, size_t *sigs, size_t *good)
{
    json_t *r = json_object_get(v->j, "results");
    size_t i;
    json_t *x;

    *sigs = (size_t)json_integer_value(json_object_get(v->j, "signatures"));
    *good = 0;
    json_array_foreach(r, i, x) *good += json_is_true(x);
}

/* 1 when signature i's h= names name count times. */
static int h_count(const struct verdict *v, size_t i, const char *name)
{
    json_t *h = json_array_get(json_object_get(v->j, "h"), i);
    size_t k, c = 0;
    json_t *x;

    json_array_foreach(h, k, x) c += strcmp(json_string_value(x), name) == 0;
    return (int)c;
}

/* The a= of signature i. */
static const char *alg_of(const struct verdict *v, size_t i)
{
    return json_string_value(json_array_get(json_object_get(v->j, "a"), i));
}

/* Asserts that data verifies with nsig signatures, and that the same
   bytes with the first byte of the last occurrence of what changed fail
   every signature. */
static struct verdict verify_and_tamper(unsigned char *data, size_t len,
                                        const char *what, size_t nsig)
{
    struct verdict v = verify(data, len), t;
    size_t sigs, good;
    char *at = NULL;

    /* the last one: the body comes last, and the same letters may occur
       by chance in a b= or bh= tag above it */
    for (char *q = strstr((char *)data, what); q != NULL;
         q = strstr(q + 1, what))
        at = q;

    assert_non_null(v.j);
    verdict_counts(&v, &sigs, &good);
    if (v.exit != 0 || sigs != nsig || good != nsig)
        fail_msg("dkimpy: exit %d, %zu signatures, %zu verified; message:\n"
                 "%.*s",
                 v.exit, sigs, good, (int)len, (const char *)data);
    assert_non_null(at);
    at[0] = at[0] == 'x' ? 'y' : 'x';
    t = verify(data, len);
    at[0] = what[0];
    verdict_counts(&t, &sigs, &good);
    assert_int_not_equal(t.exit, 0);
    assert_int_equal(good, 0);
    json_decref(t.j);
    return v;
}

/* Starts the service in front of the relay with dkim flags (NULL-ended
   extra of at most 16). */
static struct mpserve *serve(int relay, const char *const *extra)
{
    const char *args[24];
    size_t n = 0;
    char dbpath[200];

    snprintf(dbpath, sizeof dbpath, "%s/q%d.db", K.dir, relay);
    unlink(dbpath);
    args[n++] = "--queue-path";
    args[n++] = strdup(dbpath);
    for (; extra != NULL && *extra != NULL && n < 22; extra++)
        args[n++] = *extra;
    args[n] = NULL;
    struct mpserve *s = mpserve_start(relay, args);
    free((char *)(uintptr_t)args[1]);
    assert_non_null(s);
    return s;
}

/* POSTs json to /v1/messages (async adds Prefer: respond-async); the
   status. */
static long post(struct mpserve *s, const char *json, int async)
{
    static const char *const sync_h[] = { "Content-Type: application/json",
                                          NULL };
    static const char *const async_h[] = { "Content-Type: application/json",
                                           "Prefer: respond-async", NULL };
    char url[200];
    struct http_resp r;
    long st;

    snprintf(url, sizeof url, "%s/v1/messages", mpserve_url(s));
    assert_int_equal(
        http_request("POST", url, async ? async_h : sync_h, json, 0, &r), 0);
    st = r.status;
    if (st != 200 && st != 202)
        print_error("POST answered %ld: %s\n", st, r.body ? r.body : "");
    http_resp_free(&r);
    return st;
}

static const char *const RSA_ONLY[] = {
    "--dkim-domain", DOMAIN, "--dkim-selector", "rsa1", "--dkim-key-file",
    K.rsa,           NULL,
};

/* The flags of the rsa + ed25519 configuration. */
static const char **both_flags(const char **a)
{
    const char *v[] = { "--dkim-domain",
                        DOMAIN,
                        "--dkim-selector",
                        "rsa1",
                        "--dkim-key-file",
                        K.rsa,
                        "--dkim-ed25519-selector",
                        "ed1",
                        "--dkim-ed25519-key-file",
                        K.ed,
                        NULL };

    memcpy(a, v, sizeof v);
    return a;
}

/* An envelope-form message with the one-click unsubscribe fields; its
   body has a line starting with '.', white space to drop, bare LFs and
   a line of 998 octets. */
static char *envelope_json(const char *rcpt)
{
    char line[999], *j;

    memset(line, 'w', 998);
    line[998] = '\0';
    assert_true(
        asprintf(&j,
                 "{\"from\":\"app@" DOMAIN "\",\"to\":[\"%s\"],"
                 "\"headers\":{\"From\":\"App <app@" DOMAIN ">\","
                 "\"Subject\":\"Your   weekly news\","
                 "\"List-Unsubscribe\":\"<https://" DOMAIN "/u/1>, "
                 "<mailto:u@" DOMAIN "?subject=u1>\","
                 "\"List-Unsubscribe-Post\":\"List-Unsubscribe=One-Click\"},"
                 "\"body\":\"Hello,\\n.a line starting with a dot\\n"
                 "trailing white   \\t\\n%s\\nbye\\n\\n\\n\"}",
                 rcpt, line) > 0);
    return j;
}

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

/* The tail of the composed message's unsubscribe URL (the part changed to
   tamper with the signed field). */
#define UNSUB_TAIL "Zq7end"

/* A composed message with one-click unsubscribe (an https URL of over
   200 characters and a mailto), a UTF-8 subject and display name, and
   text (a line starting with ".", a 2,000-character line) + HTML.  New
   reference. */
static json_t *composed_unsub(void)
{
    char url[300], text[2200];
    size_t n = 0;
    json_t *j;

    n = (size_t)snprintf(url, sizeof url,
                         "https://" DOMAIN "/unsubscribe"
                         "?list=weekly&token=");
    for (; n < 230; n++)
        url[n] = "abcdefghijklmnopqrstuvwxyz0123456789"[n % 36];
    snprintf(url + n, sizeof url - n, "%s", UNSUB_TAIL);
    n = (size_t)snprintf(text, sizeof text,
                         "Hello,\n.a line starting with "
                         "a dot\n");
    for (size_t i = 0; i < 2000; i++)
        text[n++] = i % 10 == 9 ? ' ' : (char)('a' + i % 26);
    snprintf(text + n, sizeof text - n, "\nso long, composed\n");
    j = json_pack("{s:s, s:[s], s:s, s:s, s:s, s:{s:s, s:s, s:b}}", "from",
                  "Zo\xc3\xab \xc3\x84pfel <app@" DOMAIN ">", "to",
                  "rcpt@example.net", "subject",
                  "Gr\xc3\xbc\xc3\x9f"
                  "e \xe2\x98\x83 weekly",
                  "text", text, "html",
                  "<p>Hallo <b>J\xc3\xb6rg</b>, so long, html</p>",
                  "unsubscribe", "url", url, "mailto",
                  "mailto:unsub@example.org", "one_click", 1);
    assert_non_null(j);
    return j;
}

/* The unfolded value of the header field name in the message m (caller
   frees), or NULL. */
static char *field_value(const char *m, const char *name)
{
    size_t nl = strlen(name), o = 0;
    const char *p = m, *end = strstr(m, "\r\n\r\n");
    char *v;

    assert_non_null(end);
    while (p != NULL && p < end && (strncasecmp(p, name, nl) || p[nl] != ':'))
        if ((p = strstr(p, "\r\n")) != NULL)
            p += 2;
    if (p == NULL || p >= end)
        return NULL;
    p += nl + 1 + (p[nl + 1] == ' ');
    v = malloc((size_t)(end - p) + 1);
    for (; p < end && !(p[0] == '\r' && p[2] != ' ' && p[2] != '\t'); p++)
        if (*p != '\r' && *p != '\n')
            v[o++] = *p;
    v[o] = '\0';
    return v;
}

/* Asserts that the arrived composed message m (posted as req) verifies
   with nsig signatures (rsa-sha256, then ed25519-sha256), each covering
   both unsubscribe fields, which arrived as posted; a changed body byte
   and a changed URL byte fail. */
static void expect_composed_signed(unsigned char *m, size_t len, json_t *req,
                                   size_t nsig)
{
    json_t *u = json_object_get(req, "unsubscribe");
    char want[400], *lu = field_value((char *)m, "List-Unsubscribe");
    char *lup = field_value((char *)m, "List-Unsubscribe-Post");

    assert_memory_equal(m, "DKIM-Signature: ", 16);
    snprintf(want, sizeof want, "<%s>, <%s>",
             json_string_value(json_object_get(u, "url")),
             json_string_value(json_object_get(u, "mailto")));
    assert_non_null(lu);
    assert_string_equal(lu, want);
    assert_non_null(lup);
    assert_string_equal(lup, "List-Unsubscribe=One-Click");
    struct verdict v = verify_and_tamper(m, len, "so long", nsig);
    for (size_t i = 0; i < nsig; i++) {
        assert_string_equal(alg_of(&v, i),
                            i == 0 ? "rsa-sha256" : "ed25519-sha256");
        assert_int_equal(h_count(&v, i, "list-unsubscribe"), 1);
        assert_int_equal(h_count(&v, i, "list-unsubscribe-post"), 1);
        assert_int_equal(h_count(&v, i, "from"), 2);
        assert_int_equal(h_count(&v, i, "subject"), 1);
    }
    json_decref(v.j);
    v = verify_and_tamper(m, len, UNSUB_TAIL, nsig);
    json_decref(v.j);
    free(lu);
    free(lup);
}

/* Starts the service with the flags in front of the relay at port, posts
   json synchronously (200) and stops it. */
static void serve_post_once(int port, const char *const *flags,
                            const char *json)
{
    struct mpserve *s = serve(port, flags);

    assert_int_equal(post(s, json, 0), 200);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
}

static void test_http_composed_unsubscribe_signed_rsa_and_ed25519(void **st)
{
    const char *flags[16];
    json_t *req = composed_unsub();
    char *json = json_dumps(req, JSON_COMPACT);
    struct peer *p = peer_start_aiosmtpd(NULL);
    struct peer_msg *m = NULL;
    size_t n = 0, blen = 0;
    (void)st;

    assert_non_null(p);
    serve_post_once(peer_port(p), RSA_ONLY, json);
    serve_post_once(peer_port(p), both_flags(flags), json);
    assert_int_equal(peer_messages(p, &m, &n), 0);
    assert_int_equal(n, 2);
    expect_composed_signed(m[0].data, m[0].len, req, 1);
    expect_composed_signed(m[1].data, m[1].len, req, 2);
    /* the dot line went dot-stuffed; the signature is over it unstuffed */
    char *wire = peer_conn_bytes(p, 1, &blen);
    assert_non_null(memmem(wire, blen, "\r\n..a line starting", 19));
    free(wire);
    peer_msgs_free(m, n);
    peer_stop(p);
    free(json);
    json_decref(req);
}

static void test_send_json_composed_unsubscribe_signed_and_dry_run(void **st)
{
    const char *flags[16];
    json_t *req = composed_unsub();
    char file[200], server[64], *out = NULL;
    struct peer *p = peer_start_aiosmtpd(NULL);
    struct peer_msg *m = NULL;
    size_t n = 0, na = 0;
    const char *argv[24] = { "send", "--json", file };
    (void)st;

    assert_non_null(p);
    snprintf(file, sizeof file, "%s/composed.json", K.dir);
    assert_int_equal(json_dump_file(req, file, JSON_INDENT(2)), 0);
    snprintf(server, sizeof server, "127.0.0.1:%d", peer_port(p));
    for (const char **f = both_flags(flags); *f != NULL; f++)
        argv[3 + na++] = *f;
    argv[3 + na] = "--dry-run";
    /* --dry-run prints the signed bytes; RSA alone (the first 6 flags) */
    const char *rsa_dry[] = { argv[0], argv[1],     argv[2], argv[3],
                              argv[4], argv[5],     argv[6], argv[7],
                              argv[8], "--dry-run", NULL };
    assert_int_equal(mpserve_run(rsa_dry, 30000, &out), 0);
    expect_composed_signed((unsigned char *)out, strlen(out), req, 1);
    free(out);
    assert_int_equal(mpserve_run(argv, 30000, &out), 0);
    expect_composed_signed((unsigned char *)out, strlen(out), req, 2);
    free(out);
    argv[3 + na] = "--server";
    argv[4 + na] = server;
    argv[5 + na] = "--tls";
    argv[6 + na] = "none";
    assert_int_equal(mpserve_run(argv, 30000, &out), 0);
    assert_non_null(strstr(out, "\"status\":\"sent\""));
    free(out);
    assert_int_equal(peer_messages(p, &m, &n), 0);
    assert_int_equal(n, 1);
    expect_composed_signed(m[0].data, m[0].len, req, 2);
    peer_msgs_free(m, n);
    peer_stop(p);
    json_decref(req);
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
        cmocka_unit_test(test_http_composed_unsubscribe_signed_rsa_and_ed25519),
        cmocka_unit_test(
            test_send_json_composed_unsubscribe_signed_and_dry_run),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
