/*
 * dkim/key.c - DKIM private keys: loading (PEM through GnuTLS, or an
 * Ed25519 seed), the checks (RSA of at least 2048 bits, RFC 8301 3.2;
 * Ed25519, RFC 8463), signing, and the DNS TXT record of the public half.
 *
 * Public: dkim_key_load_file, dkim_key_from_pem, dkim_key_from_ed25519_seed,
 * dkim_key_alg, dkim_alg_name, dkim_key_txt_record, dkim_key_free.
 * Private: dkim__key_sign, dkim__base64.
 * Errors: -1 with a sentence naming the file and what is wrong with it;
 * the key's bytes are never echoed, and the buffer that held a file's
 * content is wiped before it is freed.
 * Threads: a loaded key is only read (GnuTLS's signing with a private key
 * is safe from several threads).
 */
#include "dkim/dkim.h"
#include "dkim/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <nettle/eddsa.h>

#define DKIM_KEY_FILE_MAX 65536

struct dkim_key {
    gnutls_privkey_t pk;
    enum dkim_alg alg;
};

#define WHY(...) (snprintf(why, whylen, __VA_ARGS__), -1)

/* Base64 of p[0..n). */
size_t dkim__base64(const unsigned char *p, size_t n, char *out, size_t cap)
{
    static const char t[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t need = (n + 2) / 3 * 4, o = 0;

    if (need + 1 > cap)
        return 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16;

        if (i + 1 < n)
            v |= (unsigned)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        out[o++] = t[(v >> 18) & 63];
        out[o++] = t[(v >> 12) & 63];
        out[o++] = i + 1 < n ? t[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? t[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

/* Checks the algorithm and size of an imported key. */
static int key_check(struct dkim_key *k, const char *what, char *why,
                     size_t whylen)
{
    unsigned bits = 0;
    int alg = gnutls_privkey_get_pk_algorithm(k->pk, &bits);

    if (alg == GNUTLS_PK_RSA) {
        if (bits < DKIM_RSA_MIN_BITS)
            return WHY("%s: an RSA key of %u bits; DKIM needs %d or more "
                       "(RFC 8301 3.2)",
                       what, bits, DKIM_RSA_MIN_BITS);
        k->alg = DKIM_RSA_SHA256;
        return 0;
    }
    if (alg == GNUTLS_PK_EDDSA_ED25519) {
        k->alg = DKIM_ED25519_SHA256;
        return 0;
    }
    return WHY("%s: not an RSA or Ed25519 private key", what);
}

/* Imports PEM text; what names its origin in errors. */
static int key_import(const char *pem, size_t len, const char *what,
                      struct dkim_key **out, char *why, size_t whylen)
{
    struct dkim_key *k = calloc(1, sizeof *k);
    gnutls_datum_t d = { (unsigned char *)(uintptr_t)pem, (unsigned)len };
    int rc;

    if (k == NULL || gnutls_privkey_init(&k->pk) < 0) {
        free(k);
        return WHY("%s: out of memory", what);
    }
    rc = gnutls_privkey_import_x509_raw(k->pk, &d, GNUTLS_X509_FMT_PEM, NULL,
                                        0);
    if (rc < 0) {
        dkim_key_free(k);
        return WHY("%s: not a PEM private key (%s)", what, gnutls_strerror(rc));
    }
    if (key_check(k, what, why, whylen) < 0) {
        dkim_key_free(k);
        return -1;
    }
    *out = k;
    return 0;
}

/* Loads PEM text. */
int dkim_key_from_pem(const char *pem, size_t len, struct dkim_key **out,
                      char *why, size_t whylen)
{
    return key_import(pem, len, "key", out, why, whylen);
}

/* Reads the file whole into *buf (at most DKIM_KEY_FILE_MAX bytes). */
static int key_read(const char *path, char **buf, size_t *len, char *why,
                    size_t whylen)
{
    FILE *f = fopen(path, "rb");
    size_t n;

    if (f == NULL)
        return WHY("dkim key file %s: cannot open: %s", path, strerror(errno));
    *buf = malloc(DKIM_KEY_FILE_MAX + 1);
    if (*buf == NULL) {
        fclose(f);
        return WHY("dkim key file %s: out of memory", path);
    }
    n = fread(*buf, 1, DKIM_KEY_FILE_MAX + 1, f);
    if (ferror(f) || n > DKIM_KEY_FILE_MAX) {
        fclose(f);
        gnutls_memset(*buf, 0, DKIM_KEY_FILE_MAX + 1);
        free(*buf);
        return WHY("dkim key file %s: %s", path,
                   n > DKIM_KEY_FILE_MAX ? "larger than 64 KiB" : "read error");
    }
    fclose(f);
    *len = n;
    return 0;
}

/* Loads a PEM file. */
int dkim_key_load_file(const char *path, struct dkim_key **out, char *why,
                       size_t whylen)
{
    char *buf, what[300];
    size_t len;
    int rc;

    if (key_read(path, &buf, &len, why, whylen) < 0)
        return -1;
    snprintf(what, sizeof what, "dkim key file %s", path);
    rc = key_import(buf, len, what, out, why, whylen);
    gnutls_memset(buf, 0, DKIM_KEY_FILE_MAX + 1);
    free(buf);
    return rc;
}

/* An Ed25519 key from its seed; the public half derived by nettle. */
int dkim_key_from_ed25519_seed(const unsigned char seed[32],
                               struct dkim_key **out, char *why, size_t whylen)
{
    struct dkim_key *k = calloc(1, sizeof *k);
    unsigned char pub[ED25519_KEY_SIZE];
    gnutls_datum_t x = { pub, sizeof pub };
    gnutls_datum_t s = { (unsigned char *)(uintptr_t)seed, 32 };

    if (k == NULL || gnutls_privkey_init(&k->pk) < 0) {
        free(k);
        return WHY("out of memory");
    }
    ed25519_sha512_public_key(pub, seed);
    if (gnutls_privkey_import_ecc_raw(k->pk, GNUTLS_ECC_CURVE_ED25519, &x, NULL,
                                      &s) < 0) {
        dkim_key_free(k);
        return WHY("the Ed25519 seed does not import");
    }
    k->alg = DKIM_ED25519_SHA256;
    *out = k;
    return 0;
}

/* The key's algorithm. */
enum dkim_alg dkim_key_alg(const struct dkim_key *key)
{
    return key->alg;
}

/* The a= name of an algorithm. */
const char *dkim_alg_name(enum dkim_alg alg)
{
    return alg == DKIM_ED25519_SHA256 ? "ed25519-sha256" : "rsa-sha256";
}

/* Signs data; Ed25519 signs the SHA-256 of the data (RFC 8463 3). */
int dkim__key_sign(const struct dkim_key *key, const char *data, size_t n,
                   unsigned char **sig, size_t *siglen, char *why,
                   size_t whylen)
{
    unsigned char digest[32];
    gnutls_datum_t in = { (unsigned char *)(uintptr_t)data, (unsigned)n };
    gnutls_datum_t out = { NULL, 0 };
    gnutls_sign_algorithm_t alg = GNUTLS_SIGN_RSA_SHA256;
    int rc;

    if (key->alg == DKIM_ED25519_SHA256) {
        if (gnutls_hash_fast(GNUTLS_DIG_SHA256, data, n, digest) < 0)
            return WHY("SHA-256 failed");
        in = (gnutls_datum_t){ digest, sizeof digest };
        alg = GNUTLS_SIGN_EDDSA_ED25519;
    }
    rc = gnutls_privkey_sign_data2(key->pk, alg, 0, &in, &out);
    if (rc < 0)
        return WHY("signing failed: %s", gnutls_strerror(rc));
    *sig = malloc(out.size);
    if (*sig == NULL) {
        gnutls_free(out.data);
        return WHY("out of memory");
    }
    memcpy(*sig, out.data, out.size);
    *siglen = out.size;
    gnutls_free(out.data);
    return 0;
}

/* The public half as DER (RSA: SubjectPublicKeyInfo, RFC 6376 3.6.1) or
   raw (Ed25519: the 32 bytes, RFC 8463 4.2), in a GnuTLS datum. */
static int key_public(const struct dkim_key *key, gnutls_datum_t *out)
{
    gnutls_pubkey_t pub;
    int rc;

    if (gnutls_pubkey_init(&pub) < 0)
        return -1;
    rc = gnutls_pubkey_import_privkey(pub, key->pk, 0, 0);
    if (rc >= 0 && key->alg == DKIM_ED25519_SHA256)
        rc = gnutls_pubkey_export_ecc_raw(pub, NULL, out, NULL);
    else if (rc >= 0)
        rc = gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, out);
    gnutls_pubkey_deinit(pub);
    return rc < 0 ? -1 : 0;
}

/* "v=DKIM1; k=...; p=..." for the key. */
int dkim_key_txt_record(const struct dkim_key *key, char **out, char *why,
                        size_t whylen)
{
    gnutls_datum_t d = { NULL, 0 };
    size_t cap;

    if (key_public(key, &d) < 0)
        return WHY("cannot export the public key");
    cap = (d.size + 2) / 3 * 4 + 40;
    *out = malloc(cap);
    if (*out == NULL) {
        gnutls_free(d.data);
        return WHY("out of memory");
    }
    int k = snprintf(*out, cap, "v=DKIM1; k=%s; p=",
                     key->alg == DKIM_ED25519_SHA256 ? "ed25519" : "rsa");
    dkim__base64(d.data, d.size, *out + k, cap - (size_t)k);
    gnutls_free(d.data);
    return 0;
}

/* Frees the key. */
void dkim_key_free(struct dkim_key *key)
{
    if (key == NULL)
        return;
    if (key->pk != NULL)
        gnutls_privkey_deinit(key->pk);
    free(key);
}
