/*
 * dkim/dkim.h - DKIM signing (RFC 6376, RFC 8463) on GnuTLS's primitives.
 *
 * Canonicalisation is relaxed/relaxed only.  Keys: rsa-sha256 (PEM, 2048
 * bits or more) and ed25519-sha256 (PEM, or the raw 32-byte seed of RFC
 * 8032).  The body hash is computed incrementally (dkim_body_*), over the
 * body as it goes on the wire before dot-stuffing: a lone CR, a lone LF and
 * CRLF each end one line, as smtpcore's normaliser writes them.
 *
 * Errors: -1 with a sentence in the caller's why buffer; a key file's
 * content is never echoed.  Nothing is printed, nothing exits.
 * Threads: a loaded key is read-only and may be shared by threads; a body
 * hash belongs to one thread.
 */
#ifndef MAILPOOL_DKIM_H
#define MAILPOOL_DKIM_H

#include <stddef.h>
#include <time.h>

enum dkim_alg { DKIM_RSA_SHA256, DKIM_ED25519_SHA256 };

#define DKIM_RSA_MIN_BITS 2048
#define DKIM_BH_LEN 44 /* base64 of a SHA-256 digest */

struct dkim_key;

/* Loads a private key from a PEM file (PKCS#1, PKCS#8): RSA of at least
   DKIM_RSA_MIN_BITS bits, or Ed25519.  *out is the caller's (dkim_key_free).
   -1 with why naming the file (never its content). */
int dkim_key_load_file(const char *path, struct dkim_key **out, char *why,
                       size_t whylen);
/* Loads a private key from PEM text in memory, as dkim_key_load_file. */
int dkim_key_from_pem(const char *pem, size_t len, struct dkim_key **out,
                      char *why, size_t whylen);
/* An Ed25519 key from its 32-byte seed (RFC 8032 5.1.5). */
int dkim_key_from_ed25519_seed(const unsigned char seed[32],
                               struct dkim_key **out, char *why, size_t whylen);
/* The key's algorithm. */
enum dkim_alg dkim_key_alg(const struct dkim_key *key);
/* "rsa-sha256" or "ed25519-sha256". */
const char *dkim_alg_name(enum dkim_alg alg);
/* The DNS TXT record that publishes the key's public half
   ("v=DKIM1; k=rsa; p=..."); *out is the caller's (free). */
int dkim_key_txt_record(const struct dkim_key *key, char **out, char *why,
                        size_t whylen);
/* Frees the key (its secret wiped by GnuTLS); NULL is a no-op. */
void dkim_key_free(struct dkim_key *key);

/* The relaxed body hash, fed while the body streams. */
struct dkim_body;

/* A new body hash, or NULL when out of memory. */
struct dkim_body *dkim_body_new(void);
/* Feeds n bytes of the body (before dot-stuffing). */
void dkim_body_update(struct dkim_body *b, const char *p, size_t n);
/* Ends the body: out gets the base64 SHA-256 of its relaxed form
   (DKIM_BH_LEN characters and a NUL).  The hash is spent afterwards. */
void dkim_body_final(struct dkim_body *b, char out[DKIM_BH_LEN + 1]);
/* Frees the hash; NULL is a no-op. */
void dkim_body_free(struct dkim_body *b);

/* One header field as it goes out: its name and its value (what follows
   the colon; it may hold folding CRLF or lone LF).  Borrowed. */
struct dkim_field {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

/* Appends the relaxed form of one field ("name:value\r\n", RFC 6376
   3.4.2) to out (cap bytes); returns its length, or the length it would
   need when that is over cap (nothing beyond cap written). */
size_t dkim_canon_header(const struct dkim_field *f, char *out, size_t cap);

/* Splits the header section of a whole message (up to its first empty
   line) into fields; *fields (caller frees) point into msg.  *body_off
   gets the offset of the body (after the empty line; len when none).
   -1 when out of memory. */
int dkim_parse_header(const char *msg, size_t len, struct dkim_field **fields,
                      size_t *nfields, size_t *body_off);

/* What a signature is made of.  h: the names to list in h=, in order
   (NULL: the default set of dkim_sign's doc); tags: when set, the whole
   field value up to and including "b=" written by the caller (for known
   answers); x: 0 for no expiry. */
struct dkim_sign_opts {
    const char *domain;   /* d= */
    const char *selector; /* s= */
    const struct dkim_key *key;
    time_t t;             /* t= */
    time_t x;             /* x=, 0: none */
    const char *tags;     /* see above; NULL normally */
    const char *const *h; /* with tags: the names h= lists */
    size_t nh;
};

/*
 * Signs the fields (the message's header section as it goes out, in
 * order) with the body hash bh: *value (caller frees) is the value of the
 * DKIM-Signature field to put first in the header section, with white
 * space where it may fold so that no line of "DKIM-Signature: value"
 * folded there exceeds 78 octets.  h= covers From once more than it is
 * present (oversigned), and To, Cc, Subject, Date, Message-ID,
 * MIME-Version, Content-Type, Reply-To, List-Unsubscribe and
 * List-Unsubscribe-Post as often as each is present.  -1 on error.
 */
int dkim_sign(const struct dkim_sign_opts *o, const struct dkim_field *f,
              size_t nf, const char *bh, char **value, char *why,
              size_t whylen);

/* "DKIM-Signature: value" folded at its white space into lines of at most
   78 octets, each ending in CRLF; *out (caller frees).  -1 when out of
   memory. */
int dkim_fold_field(const char *value, char **out);

/* 1 when one of the fields is a DKIM-Signature with d=domain and
   s=selector (domain without case). */
int dkim_has_signature(const struct dkim_field *f, size_t nf,
                       const char *domain, const char *selector);

/* 1 when the domain of the address (after its last '@', without angle
   brackets) is domain or a subdomain of it, without case. */
int dkim_domain_matches(const char *addr, const char *domain);

#endif /* MAILPOOL_DKIM_H */
