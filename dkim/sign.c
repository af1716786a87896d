/*
 * dkim/sign.c - the DKIM-Signature field (RFC 6376 3.5, 3.7, 5): which
 * fields h= names, the tags, the data signed, the b= tag, the folding.
 *
 * Public: dkim_sign, dkim_fold_field, dkim_has_signature,
 * dkim_domain_matches.
 * The value is written with white space where it may fold: between tags,
 * after a colon of h= every 60 or so octets, and inside b= every 72
 * octets; relaxed canonicalisation makes a fold there the same as the
 * space, so smtpcore's folding (a field given as a value) and
 * dkim_fold_field (a whole message) both keep the signature valid.
 * Errors: -1 with why (out of memory, a signing failure).
 * Threads: no state.
 */
#include "dkim/dkim.h"
#include "dkim/internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define WHY(...) (snprintf(why, whylen, __VA_ARGS__), -1)
#define DKIM_FOLD 78  /* octets a folded line holds at most */
#define DKIM_H_RUN 60 /* octets of h= before a space */
#define DKIM_B_RUN 72 /* octets of b= between spaces */

/* The fields h= covers, in this order; From is listed once more than it
   is present. */
static const char *const dkim_signed[] = {
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "reply-to",
    "list-unsubscribe",
    "list-unsubscribe-post",
};

/* A growable string. */
struct dkim_str {
    char *p;
    size_t len, cap;
    int oom;
};

/* Appends n bytes. */
static void str_add(struct dkim_str *s, const char *p, size_t n)
{
    if (s->oom)
        return;
    if (s->len + n + 1 > s->cap) {
        size_t nc = s->cap ? s->cap : 256;
        char *np;

        while (s->len + n + 1 > nc)
            nc *= 2;
        np = realloc(s->p, nc);
        if (np == NULL) {
            s->oom = 1;
            return;
        }
        s->p = np;
        s->cap = nc;
    }
    memcpy(s->p + s->len, p, n);
    s->len += n;
    s->p[s->len] = '\0';
}

/* Appends formatted text. */
__attribute__((format(printf, 2, 3))) static void str_addf(struct dkim_str *s,
                                                           const char *fmt, ...)
{
    char t[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(t, sizeof t, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof t)
        s->oom = 1;
    else
        str_add(s, t, (size_t)n);
}

/* 1 when the field's name (white space before the colon ignored) is
   name, without case. */
static int field_is(const struct dkim_field *f, const char *name)
{
    size_t n = f->name_len, k = strlen(name);

    while (n > 0 && (f->name[n - 1] == ' ' || f->name[n - 1] == '\t'))
        n--;
    return n == k && strncasecmp(f->name, name, k) == 0;
}

/* How many of the fields are named name. */
static size_t field_count(const struct dkim_field *f, size_t nf,
                          const char *name)
{
    size_t c = 0;

    for (size_t i = 0; i < nf; i++)
        c += field_is(&f[i], name);
    return c;
}

/* The default h= list for these fields: names (static strings) into h,
   *nh set; h holds room for every field and one more. */
static void sign_names(const struct dkim_field *f, size_t nf, const char **h,
                       size_t *nh)
{
    *nh = 0;
    for (size_t i = 0; i < sizeof dkim_signed / sizeof dkim_signed[0]; i++) {
        size_t c = field_count(f, nf, dkim_signed[i]) + (i == 0);

        while (c-- > 0)
            h[(*nh)++] = dkim_signed[i];
    }
}

/* Writes "h=a:b:..." with a space after a colon every DKIM_H_RUN octets. */
static void sign_h_tag(struct dkim_str *s, const char *const *h, size_t nh)
{
    size_t run = 2;

    str_add(s, "h=", 2);
    for (size_t i = 0; i < nh; i++) {
        size_t k = strlen(h[i]);

        if (i > 0) {
            str_add(s, ":", 1);
            run++;
            if (run + k > DKIM_H_RUN) {
                str_add(s, " ", 1);
                run = 0;
            }
        }
        str_add(s, h[i], k);
        run += k;
    }
    str_add(s, "; ", 2);
}

/* Appends the relaxed form of f to s. */
static void sign_canon(struct dkim_str *s, const struct dkim_field *f)
{
    char small[1024];
    size_t n = dkim_canon_header(f, small, sizeof small);

    if (n <= sizeof small) {
        str_add(s, small, n);
        return;
    }
    char *big = malloc(n);
    if (big == NULL) {
        s->oom = 1;
        return;
    }
    dkim_canon_header(f, big, n);
    str_add(s, big, n);
    free(big);
}

/* The data signed (5.4): each name of h taken from the bottom up, a
   field used once, then the signature's own field without b= data and
   without its CRLF. */
static void sign_data(struct dkim_str *s, const struct dkim_field *f, size_t nf,
                      const char *const *h, size_t nh, const char *tags)
{
    unsigned char *used = calloc(nf + 1, 1);
    struct dkim_field self = { "DKIM-Signature", 14, tags, strlen(tags) };

    if (used == NULL) {
        s->oom = 1;
        return;
    }
    for (size_t i = 0; i < nh; i++)
        for (size_t j = nf; j-- > 0;)
            if (!used[j] && field_is(&f[j], h[i])) {
                used[j] = 1;
                sign_canon(s, &f[j]);
                break;
            }
    free(used);
    sign_canon(s, &self);
    if (!s->oom)
        s->len -= 2; /* no CRLF after the signature's field */
}

/* The tags up to "b=" as this signer writes them. */
static void sign_tags(struct dkim_str *s, const struct dkim_sign_opts *o,
                      const char *const *h, size_t nh, const char *bh)
{
    str_addf(s, "v=1; a=%s; c=relaxed/relaxed; d=%s; s=%s; t=%lld; ",
             dkim_alg_name(dkim_key_alg(o->key)), o->domain, o->selector,
             (long long)o->t);
    if (o->x > 0)
        str_addf(s, "x=%lld; ", (long long)o->x);
    sign_h_tag(s, h, nh);
    str_addf(s, "bh=%s; b=", bh);
}

/* Appends the signature in base64 with a space every DKIM_B_RUN octets. */
static void sign_b_tag(struct dkim_str *s, const unsigned char *sig, size_t n)
{
    size_t cap = (n + 2) / 3 * 4 + 1, len, first = DKIM_B_RUN - 4;
    char *b64 = malloc(cap);

    if (b64 == NULL) {
        s->oom = 1;
        return;
    }
    len = dkim__base64(sig, n, b64, cap);
    for (size_t i = 0; i < len;) {
        size_t k = i == 0 ? first : DKIM_B_RUN;

        if (k > len - i)
            k = len - i;
        if (i > 0)
            str_add(s, " ", 1);
        str_add(s, b64 + i, k);
        i += k;
    }
    free(b64);
}

/* Signs the fields. */
int dkim_sign(const struct dkim_sign_opts *o, const struct dkim_field *f,
              size_t nf, const char *bh, char **value, char *why, size_t whylen)
{
    const char **h = NULL;
    size_t nh = o->nh, siglen = 0;
    struct dkim_str tags = { 0 }, data = { 0 };
    unsigned char *sig = NULL;
    int rc = -1;

    if (o->tags == NULL) {
        h = malloc((nf + sizeof dkim_signed / sizeof dkim_signed[0] + 1) *
                   sizeof *h);
        if (h == NULL)
            return WHY("out of memory");
        sign_names(f, nf, h, &nh);
        sign_tags(&tags, o, h, nh, bh);
    } else {
        str_add(&tags, o->tags, strlen(o->tags));
    }
    if (!tags.oom)
        sign_data(&data, f, nf, o->tags ? o->h : h, nh, tags.p);
    if (tags.oom || data.oom)
        (void)WHY("out of memory");
    else if (dkim__key_sign(o->key, data.p, data.len, &sig, &siglen, why,
                            whylen) == 0)
        rc = 0;
    if (rc == 0)
        sign_b_tag(&tags, sig, siglen);
    if (rc == 0 && tags.oom)
        rc = WHY("out of memory");
    free(sig);
    free(data.p);
    free(h);
    if (rc < 0)
        free(tags.p);
    else
        *value = tags.p;
    return rc;
}

/* Folds "DKIM-Signature: value" before white space, as smtpcore does. */
int dkim_fold_field(const char *value, char **out)
{
    struct dkim_str s = { 0 };
    size_t start = strlen("DKIM-Signature: "), col = start;
    const char *p = value;

    str_add(&s, "DKIM-Signature: ", start);
    while (*p != '\0') {
        size_t ws = strspn(p, " \t");
        size_t w = ws + strcspn(p + ws, " \t");

        if (ws > 0 && p[ws] != '\0' && col > start && col + w > DKIM_FOLD) {
            str_add(&s, "\r\n", 2);
            col = 0;
        }
        str_add(&s, p, w);
        col += w;
        p += w;
    }
    str_add(&s, "\r\n", 2);
    if (s.oom) {
        free(s.p);
        return -1;
    }
    *out = s.p;
    return 0;
}

/* The value of tag t in a tag list (3.2), white space and folds dropped,
   into out; 0 when found. */
static int tag_value(const char *v, size_t n, const char *t, char *out,
                     size_t cap)
{
    size_t i = 0, tl = strlen(t);

    while (i < n) {
        size_t e = i, k = 0;

        while (e < n && v[e] != ';')
            e++;
        while (i < e && strchr(" \t\r\n", v[i]) != NULL)
            i++;
        if (e - i > tl && strncmp(v + i, t, tl) == 0) {
            size_t j = i + tl;

            while (j < e && strchr(" \t\r\n", v[j]) != NULL)
                j++;
            if (j < e && v[j] == '=') {
                for (j++; j < e && k + 1 < cap; j++)
                    if (strchr(" \t\r\n", v[j]) == NULL)
                        out[k++] = v[j];
                out[k] = '\0';
                return 0;
            }
        }
        i = e + 1;
    }
    return -1;
}

/* 1 when a DKIM-Signature by domain and selector is among the fields. */
int dkim_has_signature(const struct dkim_field *f, size_t nf,
                       const char *domain, const char *selector)
{
    char d[256], s[256];

    for (size_t i = 0; i < nf; i++)
        if (field_is(&f[i], "DKIM-Signature") &&
            tag_value(f[i].value, f[i].value_len, "d", d, sizeof d) == 0 &&
            tag_value(f[i].value, f[i].value_len, "s", s, sizeof s) == 0 &&
            strcasecmp(d, domain) == 0 && strcasecmp(s, selector) == 0)
            return 1;
    return 0;
}

/* 1 when the address's domain is domain or below it. */
int dkim_domain_matches(const char *addr, const char *domain)
{
    const char *lt = strrchr(addr, '<'), *at, *end;
    size_t n, dl = strlen(domain);

    if (lt != NULL)
        addr = lt + 1;
    end = addr + strcspn(addr, ">");
    at = NULL;
    for (const char *p = addr; p < end; p++)
        if (*p == '@')
            at = p;
    if (at == NULL || dl == 0)
        return 0;
    at++;
    while (end > at && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    n = (size_t)(end - at);
    if (n == dl)
        return strncasecmp(at, domain, dl) == 0;
    return n > dl && at[n - dl - 1] == '.' &&
           strncasecmp(at + n - dl, domain, dl) == 0;
}
