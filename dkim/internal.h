/*
 * dkim/internal.h - private to dkim/: what its files share.
 */
#ifndef MAILPOOL_DKIM_INTERNAL_H
#define MAILPOOL_DKIM_INTERNAL_H

#include <stddef.h>

#include "dkim/dkim.h"

/* Base64 (RFC 4648 4, padded) of p[0..n) into out (cap bytes, NUL
   included); returns the length written, or 0 when it does not fit. */
size_t dkim__base64(const unsigned char *p, size_t n, char *out, size_t cap);

/* Signs data[0..n) with the key as the algorithm says (rsa-sha256: PKCS#1
   v1.5 over its SHA-256; ed25519-sha256: Ed25519 over its SHA-256, RFC
   8463 3); *sig (caller frees) of *siglen bytes.  -1 with why. */
int dkim__key_sign(const struct dkim_key *key, const char *data, size_t n,
                   unsigned char **sig, size_t *siglen, char *why,
                   size_t whylen);

#endif /* MAILPOOL_DKIM_INTERNAL_H */
