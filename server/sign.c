/*
 * server/sign.c - DKIM signing of the message a job carries (server/sign.h).
 *
 * Public: sign_set_new, sign_set_count, sign_set_free, sign_message.
 *
 * Which domain: the one whose dkim.sign is auto and that the From domain
 * is, or is below (the longest such wins); else the first whose sign is
 * always ([dkim] first, then the sections in file order); else none.
 *
 * Envelope form (header fields + body): Date, Message-ID and From are
 * added first when missing (smtpcore would add them at write time,
 * outside the signature), then each DKIM-Signature goes first.  The body
 * hash reads the body as smtpcore's normaliser writes it (lone CR or LF
 * as CRLF), before dot-stuffing.  Raw form (a whole message): the fields
 * are read from its header section and the folded DKIM-Signature fields
 * are put in front of it.  A signature whose d= and s= the message
 * already carries is not added again.
 *
 * When: the pool signs a job once, when a worker takes it to be
 * attempted (server/pool_run.c), so t= is the time of its first attempt; the
 * pool's retries of that job send the same signed message again.  A
 * message of the durable queue becomes a new job for each delivery
 * attempt (decoded afresh from the queue), so each such attempt is
 * signed anew with its own t= (and x=).
 *
 * Errors: sign_set_new NULL with a sentence naming the key file;
 * sign_message -1 with why (out of memory, a signing failure).
 * Threads: a loaded set is read-only; sign_message touches only the
 * message it is given.
 */
#include "server/sign.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <unistd.h>

#include "dkim/dkim.h"

enum sign_policy { SIGN_AUTO, SIGN_ALWAYS, SIGN_NEVER };

/* One signing domain: an rsa-sha256 key and perhaps an Ed25519 one. */
struct sign_domain {
    const char *domain; /* borrowed from the cfg */
    const char *selector, *ed_selector;
    struct dkim_key *rsa, *ed; /* owned; ed may be NULL */
    enum sign_policy policy;
    int expire;
};

struct sign_set {
    struct sign_domain *d;
    size_t n;
};

/* The policy named s. */
static enum sign_policy sign_policy_of(const char *s)
{
    if (s != NULL && strcasecmp(s, "always") == 0)
        return SIGN_ALWAYS;
    if (s != NULL && strcasecmp(s, "never") == 0)
        return SIGN_NEVER;
    return SIGN_AUTO;
}

/* 0 when a key file that exists may be read (cfg_secret_file_check);
   one that does not exist is left to the loader to name. */
static int sign_key_mode_ok(const char *domain, const char *key,
                            const char *path, char *err, size_t errlen)
{
    char what[320];
    if (path == NULL || access(path, F_OK) != 0)
        return 0;
    snprintf(what, sizeof what, "dkim %s of %s", key, domain);
    return cfg_secret_file_check(what, path, err, errlen);
}

/* Loads one domain's keys into the set (nothing for sign = never). */
static int sign_add(struct sign_set *set, const struct cfg_dkim_domain *c,
                    char *err, size_t errlen)
{
    struct sign_domain d = { c->domain, c->selector, c->ed25519_selector,
                             NULL,      NULL,        sign_policy_of(c->sign),
                             c->expire };

    if (d.policy == SIGN_NEVER)
        return 0;
    if (sign_key_mode_ok(c->domain, "key_file", c->key_file, err, errlen) ||
        sign_key_mode_ok(c->domain, "ed25519_key_file", c->ed25519_key_file,
                         err, errlen))
        return -1;
    if (dkim_key_load_file(c->key_file, &d.rsa, err, errlen) < 0)
        return -1;
    if (dkim_key_alg(d.rsa) != DKIM_RSA_SHA256) {
        snprintf(err, errlen,
                 "dkim key file %s: the key of selector %s must "
                 "be RSA (Ed25519 only as ed25519_key_file)",
                 c->key_file, c->selector);
        dkim_key_free(d.rsa);
        return -1;
    }
    if (c->ed25519_key_file != NULL &&
        (dkim_key_load_file(c->ed25519_key_file, &d.ed, err, errlen) < 0 ||
         dkim_key_alg(d.ed) != DKIM_ED25519_SHA256)) {
        if (d.ed != NULL)
            snprintf(err, errlen, "dkim key file %s: not an Ed25519 key",
                     c->ed25519_key_file);
        dkim_key_free(d.rsa);
        dkim_key_free(d.ed);
        return -1;
    }
    set->d[set->n++] = d;
    return 0;
}

/* Loads the keys of [dkim] and of each [dkim.DOMAIN]. */
struct sign_set *sign_set_new(const struct cfg *cfg, char *err, size_t errlen)
{
    struct sign_set *set = calloc(1, sizeof *set);
    struct cfg_dkim_domain top = {
        cfg->dkim.domain,           cfg->dkim.selector,
        cfg->dkim.key_file,         cfg->dkim.ed25519_selector,
        cfg->dkim.ed25519_key_file, cfg->dkim.sign,
        cfg->dkim.expire,
    };

    if (set != NULL)
        set->d = calloc(cfg->ndkim_domains + 1, sizeof *set->d);
    if (set == NULL || set->d == NULL) {
        free(set);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (top.domain != NULL && sign_add(set, &top, err, errlen) < 0)
        goto fail;
    for (size_t i = 0; i < cfg->ndkim_domains; i++) {
        struct cfg_dkim_domain c = cfg->dkim_domains[i];

        if (c.sign == NULL)
            c.sign = cfg->dkim.sign;
        if (c.expire < 0)
            c.expire = cfg->dkim.expire;
        if (sign_add(set, &c, err, errlen) < 0)
            goto fail;
    }
    return set;
fail:
    sign_set_free(set);
    return NULL;
}

/* How many domains sign. */
size_t sign_set_count(const struct sign_set *set)
{
    return set != NULL ? set->n : 0;
}

/* Frees the set. */
void sign_set_free(struct sign_set *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < set->n; i++) {
        dkim_key_free(set->d[i].rsa);
        dkim_key_free(set->d[i].ed);
    }
    free(set->d);
    free(set);
}

/* The domain that signs mail from the address from (a From value or a
   mailbox), or NULL. */
static const struct sign_domain *sign_choose(const struct sign_set *set,
                                             const char *from)
{
    const struct sign_domain *best = NULL, *always = NULL;

    for (size_t i = 0; i < set->n; i++) {
        const struct sign_domain *d = &set->d[i];

        if (from != NULL && dkim_domain_matches(from, d->domain) &&
            (best == NULL || strlen(d->domain) > strlen(best->domain)))
            best = d;
        if (d->policy == SIGN_ALWAYS && always == NULL)
            always = d;
    }
    return best != NULL ? best : always;
}

/* The value of the first header field called name, or NULL. */
static const char *sign_header(const struct job_message *m, const char *name)
{
    for (size_t i = 0; i < m->nheaders; i++)
        if (strcasecmp(m->headers[i].name, name) == 0)
            return m->headers[i].value;
    return NULL;
}

/* Puts name: value (copied) first among the message's header fields. */
static int sign_prepend(struct job_message *m, const char *name,
                        const char *value)
{
    struct smtp_header *h = malloc((m->nheaders + 1) * sizeof *h);
    char *n = strdup(name), *v = strdup(value);

    if (h == NULL || n == NULL || v == NULL) {
        free(h);
        free(n);
        free(v);
        return -1;
    }
    h[0] = (struct smtp_header){ n, v };
    if (m->nheaders > 0)
        memcpy(h + 1, m->headers, m->nheaders * sizeof *h);
    free(m->headers);
    m->headers = h;
    m->nheaders++;
    /* cppcheck-suppress memleak ; n and v are owned by h[0], h by m */
    return 0;
}

/* RFC 5322 date of t in UTC, independent of the locale. */
static void sign_date(time_t t, char *out, size_t len)
{
    static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed",
                                     "Thu", "Fri", "Sat" };
    static const char mons[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    struct tm tm;

    gmtime_r(&t, &tm);
    snprintf(out, len, "%s, %02d %s %04d %02d:%02d:%02d +0000",
             days[tm.tm_wday % 7], tm.tm_mday, mons[tm.tm_mon % 12],
             tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* "<time.random@domain>", domain taken from the address from. */
static void sign_msgid(time_t t, const char *from, char *out, size_t len)
{
    unsigned char r[12] = { 0 };
    char hex[25];
    const char *at = from != NULL ? strrchr(from, '@') : NULL;
    size_t dl = at != NULL ? strcspn(at + 1, "> \t") : 0;

    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        for (size_t i = 0; i < sizeof r; i++)
            r[i] = (unsigned char)((uintptr_t)out >> (i % 8) ^ (unsigned)t);
    for (size_t i = 0; i < sizeof r; i++)
        snprintf(hex + 2 * i, 3, "%02x", r[i]);
    if (dl == 0 || at[1] == '[')
        snprintf(out, len, "<%llx.%s@localhost>", (unsigned long long)t, hex);
    else
        snprintf(out, len, "<%llx.%s@%.*s>", (unsigned long long)t, hex,
                 (int)dl, at + 1);
}

/* Adds Date, Message-ID and From when missing, as smtpcore would (so
   that they are signed). */
static int sign_complete(struct job_message *m, time_t now)
{
    char buf[300];
    const char *from = sign_header(m, "From");

    if (from == NULL && m->from != NULL && m->from[0] != '\0') {
        snprintf(buf, sizeof buf, "<%s>", m->from);
        if (sign_prepend(m, "From", buf) < 0)
            return -1;
    }
    from = sign_header(m, "From");
    if (sign_header(m, "Message-ID") == NULL) {
        sign_msgid(now, from != NULL ? from : m->from, buf, sizeof buf);
        if (sign_prepend(m, "Message-ID", buf) < 0)
            return -1;
    }
    if (sign_header(m, "Date") == NULL) {
        sign_date(now, buf, sizeof buf);
        if (sign_prepend(m, "Date", buf) < 0)
            return -1;
    }
    return 0;
}

/* The body hash of p[0..n). */
static int sign_body_hash(const char *p, size_t n, char bh[DKIM_BH_LEN + 1])
{
    struct dkim_body *b = dkim_body_new();

    if (b == NULL)
        return -1;
    dkim_body_update(b, p, n);
    dkim_body_final(b, bh);
    dkim_body_free(b);
    return 0;
}

/* The signatures d owes the fields (rsa, then ed25519), each value in
   v[] (caller frees); *nv of them.  -1 with why. */
static int sign_values(const struct sign_domain *d, const struct dkim_field *f,
                       size_t nf, const char *bh, time_t now, char *v[2],
                       size_t *nv, char *why, size_t whylen)
{
    const char *sel[2] = { d->selector, d->ed_selector };
    const struct dkim_key *key[2] = { d->rsa, d->ed };

    *nv = 0;
    for (int i = 0; i < 2; i++) {
        struct dkim_sign_opts o = {
            d->domain, sel[i], key[i], now, d->expire > 0 ? now + d->expire : 0,
            NULL,      NULL,   0
        };

        if (key[i] == NULL || dkim_has_signature(f, nf, d->domain, sel[i]))
            continue;
        if (dkim_sign(&o, f, nf, bh, &v[*nv], why, whylen) < 0) {
            while (*nv > 0)
                free(v[--*nv]);
            return -1;
        }
        (*nv)++;
    }
    return 0;
}

/* Envelope form: the job's header fields are the fields. */
static int sign_envelope(const struct sign_domain *d, struct job_message *m,
                         time_t now, char *why, size_t whylen)
{
    struct dkim_field *f;
    char bh[DKIM_BH_LEN + 1], *v[2];
    size_t nv = 0;
    int rc = 0;

    if (sign_complete(m, now) < 0 ||
        (f = calloc(m->nheaders + 1, sizeof *f)) == NULL)
        return (snprintf(why, whylen, "out of memory"), -1);
    for (size_t i = 0; i < m->nheaders; i++)
        f[i] = (struct dkim_field){ m->headers[i].name,
                                    strlen(m->headers[i].name),
                                    m->headers[i].value,
                                    strlen(m->headers[i].value) };
    if (sign_body_hash(m->body != NULL ? m->body : "",
                       m->body != NULL ? m->body_len : 0, bh) < 0)
        rc = (snprintf(why, whylen, "out of memory"), -1);
    else
        rc = sign_values(d, f, m->nheaders, bh, now, v, &nv, why, whylen);
    free(f);
    for (size_t i = nv; i-- > 0;)
        if (rc == 0 && sign_prepend(m, "DKIM-Signature", v[i]) < 0)
            rc = (snprintf(why, whylen, "out of memory"), -1);
    for (size_t i = 0; i < nv; i++)
        free(v[i]);
    return rc;
}

/* Puts the folded fields of v[0..nv) in front of the whole message. */
static int sign_raw_prepend(struct job_message *m, char *const *v, size_t nv)
{
    char *fold[2] = { NULL, NULL }, *body;
    size_t len = m->body_len, off = 0;
    int rc = 0;

    for (size_t i = 0; i < nv && rc == 0; i++)
        if ((rc = dkim_fold_field(v[i], &fold[i])) == 0)
            len += strlen(fold[i]);
    body = rc == 0 ? malloc(len + 1) : NULL;
    if (body != NULL) {
        for (size_t i = 0; i < nv; i++) {
            memcpy(body + off, fold[i], strlen(fold[i]));
            off += strlen(fold[i]);
        }
        if (m->body_len > 0)
            memcpy(body + off, m->body, m->body_len);
        body[len] = '\0';
        free(m->body);
        m->body = body;
        m->body_len = len;
    }
    free(fold[0]);
    free(fold[1]);
    return body != NULL ? 0 : -1;
}

/* Raw form: the fields are read from the message's header section. */
static int sign_raw(const struct sign_domain *d, struct job_message *m,
                    time_t now, char *why, size_t whylen)
{
    struct dkim_field *f = NULL;
    size_t nf = 0, off = 0, nv = 0;
    char bh[DKIM_BH_LEN + 1], *v[2];
    int rc;

    if (dkim_parse_header(m->body, m->body_len, &f, &nf, &off) < 0 ||
        sign_body_hash(m->body + off, m->body_len - off, bh) < 0) {
        free(f);
        return (snprintf(why, whylen, "out of memory"), -1);
    }
    rc = sign_values(d, f, nf, bh, now, v, &nv, why, whylen);
    free(f);
    if (rc == 0 && nv > 0 && sign_raw_prepend(m, v, nv) < 0)
        rc = (snprintf(why, whylen, "out of memory"), -1);
    for (size_t i = 0; i < nv; i++)
        free(v[i]);
    return rc;
}

/* The From of a whole message (a copy), or NULL. */
static char *sign_raw_from(const struct job_message *m)
{
    struct dkim_field *f = NULL;
    size_t nf = 0, off = 0;
    char *from = NULL;

    if (dkim_parse_header(m->body, m->body_len, &f, &nf, &off) < 0)
        return NULL;
    for (size_t i = 0; i < nf && from == NULL; i++)
        if (f[i].name_len == 4 && strncasecmp(f[i].name, "From", 4) == 0)
            from = strndup(f[i].value, f[i].value_len);
    free(f);
    return from;
}

/* Signs the message with the domain its From chooses. */
int sign_message(const struct sign_set *set, struct job_message *m, time_t now,
                 char *why, size_t whylen)
{
    const struct sign_domain *d;
    char *raw_from = NULL;

    if (set == NULL || set->n == 0)
        return 0;
    if (m->raw) {
        if (m->body == NULL)
            return 0;
        raw_from = sign_raw_from(m);
        d = sign_choose(set, raw_from);
        free(raw_from);
        return d == NULL ? 0 : sign_raw(d, m, now, why, whylen);
    }
    d = sign_choose(set, sign_header(m, "From") != NULL ? sign_header(m, "From")
                                                        : m->from);
    return d == NULL ? 0 : sign_envelope(d, m, now, why, whylen);
}
