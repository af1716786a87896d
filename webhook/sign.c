/*
 * webhook/sign.c - the webhook's secret and its signature (Standard
 * Webhooks): the key is read from webhook.secret_file, the signature is
 * "v1," and the base64 HMAC-SHA256 (GnuTLS's gnutls_hmac_fast) of
 * "id.timestamp.body".
 *
 * Public (webhook/internal.h): webhook_secret_load_,
 * webhook_sign_.  The secret file: its first line; "whsec_<base64>" (the
 * form Standard Webhooks libraries make) is decoded and its bytes are the
 * key; any other line is the key as it is.  At least 16 bytes of key; the
 * file passes cfg_secret_file_check (owner only, or root's and readable by
 * its group), else it is refused, by name.
 *
 * Errors: -1 with a sentence; the secret never appears in one.
 * Threads: no state; safe.
 */
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "config/config.h"
#include "webhook/internal.h"

#define WEBHOOK_KEY_MIN 16

/* Reads the first line of path into line (no newline), once its mode
   passes the check every secret file passes: 0 or -1 with err. */
static int secret_line(const char *path, char *line, size_t len, char *err,
                       size_t errlen)
{
    if (cfg_secret_file_check("webhook.secret_file", path, err, errlen) < 0)
        return -1;
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "webhook.secret_file: cannot read %s", path);
        return -1;
    }
    if (fgets(line, (int)len, f) == NULL)
        line[0] = '\0';
    fclose(f);
    line[strcspn(line, "\r\n")] = '\0';
    return 0;
}

/* The key of a whsec_ secret (its base64 decoded): 0 or -1. */
static int secret_decode(const char *b64, unsigned char **key, size_t *keylen)
{
    gnutls_datum_t in = { (unsigned char *)(uintptr_t)b64,
                          (unsigned)strlen(b64) },
                   out = { NULL, 0 };
    if (gnutls_base64_decode2(&in, &out) < 0)
        return -1;
    *key = malloc(out.size ? out.size : 1);
    if (*key != NULL)
        memcpy(*key, out.data, out.size);
    *keylen = out.size;
    gnutls_memset(out.data, 0, out.size);
    gnutls_free(out.data);
    return *key != NULL ? 0 : -1;
}

int webhook_secret_load_(const char *path, unsigned char **key, size_t *keylen,
                         char *err, size_t errlen)
{
    char line[1024];
    int rc;
    *key = NULL;
    *keylen = 0;
    if (secret_line(path, line, sizeof line, err, errlen) < 0)
        return -1;
    if (strncmp(line, "whsec_", 6) == 0) {
        rc = secret_decode(line + 6, key, keylen);
    } else {
        *keylen = strlen(line);
        *key = malloc(*keylen + 1);
        rc = *key != NULL ? 0 : -1;
        if (rc == 0)
            memcpy(*key, line, *keylen + 1);
    }
    gnutls_memset(line, 0, sizeof line);
    if (rc == 0 && *keylen >= WEBHOOK_KEY_MIN)
        return 0;
    snprintf(err, errlen,
             "webhook.secret_file: %s does not hold a secret "
             "of %d bytes or more (whsec_<base64>, or the bytes of its "
             "first line)",
             path, WEBHOOK_KEY_MIN);
    if (*key != NULL)
        gnutls_memset(*key, 0, *keylen);
    free(*key);
    *key = NULL;
    return -1;
}

int webhook_sign_(const unsigned char *key, size_t keylen, const char *id,
                  long long ts, const char *body, char *out, size_t outlen)
{
    unsigned char mac[32];
    char head[96];
    int hl = snprintf(head, sizeof head, "%s.%lld.", id, ts);
    size_t bl = strlen(body);
    char *msg = malloc((size_t)hl + bl + 1);
    if (hl < 0 || (size_t)hl >= sizeof head || msg == NULL) {
        free(msg);
        return -1;
    }
    memcpy(msg, head, (size_t)hl);
    memcpy(msg + hl, body, bl + 1);
    int rc = gnutls_hmac_fast(GNUTLS_MAC_SHA256, key, keylen, msg,
                              (size_t)hl + bl, mac);
    free(msg);
    gnutls_datum_t in = { mac, sizeof mac }, b64 = { NULL, 0 };
    if (rc < 0 || gnutls_base64_encode2(&in, &b64) < 0)
        return -1;
    rc = snprintf(out, outlen, "v1,%.*s", (int)b64.size, b64.data);
    gnutls_free(b64.data);
    return rc > 0 && (size_t)rc < outlen ? 0 : -1;
}
