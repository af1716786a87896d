/*
 * tests/support/dkim_fx.h - what the DKIM tests
 * (tests/integration/test_dkim_mail.c and test_dkim_composed.c) share:
 * the group's keys (made with GnuTLS in the group setup, published with
 * the records `mailpool dkim-keygen` prints), dkimpy's verdict on a
 * message (tests/peers/dkim_verify.py) and on the same bytes with one byte
 * changed, `mailpool serve` signing for the test domain and posting to
 * it, the signing flags and a message.  Header-only (static inline; the
 * keys are one static struct per test binary).
 */
#ifndef TESTS_SUPPORT_DKIM_FX_H
#define TESTS_SUPPORT_DKIM_FX_H

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
static inline char *keygen_record(const char *path, char *name, size_t namelen)
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
static inline char *write_key(const char *path, gnutls_pk_algorithm_t alg,
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

static inline int setup(void **st)
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

static inline int teardown(void **st)
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
static inline struct verdict verify(const void *data, size_t len)
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
static inline void verdict_counts(const struct verdict *v, size_t *sigs,
                                  size_t *good)
{
    json_t *r = json_object_get(v->j, "results");
    size_t i;
    json_t *x;

    *sigs = (size_t)json_integer_value(json_object_get(v->j, "signatures"));
    *good = 0;
    json_array_foreach(r, i, x) *good += json_is_true(x);
}

/* 1 when signature i's h= names name count times. */
static inline int h_count(const struct verdict *v, size_t i, const char *name)
{
    json_t *h = json_array_get(json_object_get(v->j, "h"), i);
    size_t k, c = 0;
    json_t *x;

    json_array_foreach(h, k, x) c += strcmp(json_string_value(x), name) == 0;
    return (int)c;
}

/* The a= of signature i. */
static inline const char *alg_of(const struct verdict *v, size_t i)
{
    return json_string_value(json_array_get(json_object_get(v->j, "a"), i));
}

/* Asserts that data verifies with nsig signatures, and that the same
   bytes with the first byte of the last occurrence of what changed fail
   every signature. */
static inline struct verdict verify_and_tamper(unsigned char *data, size_t len,
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
static inline struct mpserve *serve(int relay, const char *const *extra)
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
static inline long post(struct mpserve *s, const char *json, int async)
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
static inline const char **both_flags(const char **a)
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
static inline char *envelope_json(const char *rcpt)
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

#endif /* TESTS_SUPPORT_DKIM_FX_H */
