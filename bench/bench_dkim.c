/*
 * bench_dkim.c - microseconds to sign one message with DKIM (dkim/dkim.h):
 * the header split, the relaxed body hash and the signature, for a 1 KB
 * and a 100 KB message, with RSA-2048 and with Ed25519 (keys made here).
 * Prints one JSON object per case: {"alg", "bytes", "us"} (the median of
 * five rounds of N signatures each).  Used by bench/run.py (make bench).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#include "dkim/dkim.h"

/* A new key of the algorithm, or exits. */
static struct dkim_key *bench_key(gnutls_pk_algorithm_t alg, unsigned bits)
{
    gnutls_x509_privkey_t k;
    gnutls_datum_t d;
    struct dkim_key *key = NULL;
    char why[256];

    if (gnutls_x509_privkey_init(&k) < 0 ||
        gnutls_x509_privkey_generate(k, alg, bits, 0) < 0 ||
        gnutls_x509_privkey_export2_pkcs8(k, GNUTLS_X509_FMT_PEM, NULL,
                                          GNUTLS_PKCS_PLAIN, &d) < 0 ||
        dkim_key_from_pem((const char *)d.data, d.size, &key, why, sizeof why) <
            0) {
        fprintf(stderr, "bench_dkim: no key\n");
        exit(1);
    }
    gnutls_free(d.data);
    gnutls_x509_privkey_deinit(k);
    return key;
}

/* A message of about size bytes: the usual fields, lines of 64. */
static char *bench_message(size_t size, size_t *len)
{
    static const char head[] =
        "From: Bench <bench@example.org>\r\nTo: r@example.net\r\n"
        "Subject: bench\r\nDate: Mon, 30 Nov 2026 03:00:00 +0000\r\n"
        "Message-ID: <b1@example.org>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n";
    char *m = malloc(size + 128);
    size_t n = strlen(head);

    memcpy(m, head, n);
    while (n + 64 <= size) {
        memset(m + n, 'x', 62);
        memcpy(m + n + 62, "\r\n", 2);
        n += 64;
    }
    m[n] = '\0';
    *len = n;
    return m;
}

/* Signs the message once, as the service does. */
static void bench_sign_once(const struct dkim_key *key, const char *m,
                            size_t len)
{
    struct dkim_field *f = NULL;
    struct dkim_body *b = dkim_body_new();
    size_t nf = 0, off = 0;
    char bh[DKIM_BH_LEN + 1], why[256], *v = NULL;
    struct dkim_sign_opts o = { "example.org", "s1", key, time(NULL), 0,
                                NULL,          NULL, 0 };

    if (b == NULL || dkim_parse_header(m, len, &f, &nf, &off) < 0)
        exit(1);
    dkim_body_update(b, m + off, len - off);
    dkim_body_final(b, bh);
    if (dkim_sign(&o, f, nf, bh, &v, why, sizeof why) < 0) {
        fprintf(stderr, "bench_dkim: %s\n", why);
        exit(1);
    }
    free(v);
    free(f);
    dkim_body_free(b);
}

/* Seconds now (monotonic). */
static double bench_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Orders doubles. */
static int bench_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

int main(void)
{
    struct dkim_key *rsa = bench_key(GNUTLS_PK_RSA, 2048);
    struct dkim_key *ed = bench_key(
        GNUTLS_PK_EDDSA_ED25519,
        GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_ED25519));
    const struct {
        const char *name;
        struct dkim_key *key;
    } algs[] = {
        { "rsa-sha256", rsa },
        { "ed25519-sha256", ed },
    };
    const size_t sizes[] = { 1024, 100 * 1024 };

    for (size_t a = 0; a < 2; a++)
        for (size_t s = 0; s < 2; s++) {
            size_t len, n = 200;
            char *m = bench_message(sizes[s], &len);
            double r[5];

            for (int k = 0; k < 5; k++) {
                double t0 = bench_now();
                for (size_t i = 0; i < n; i++)
                    bench_sign_once(algs[a].key, m, len);
                r[k] = (bench_now() - t0) / (double)n * 1e6;
            }
            qsort(r, 5, sizeof r[0], bench_cmp);
            printf("{\"alg\": \"%s\", \"bytes\": %zu, \"us\": %.1f}\n",
                   algs[a].name, sizes[s], r[2]);
            free(m);
        }
    dkim_key_free(rsa);
    dkim_key_free(ed);
    return 0;
}
