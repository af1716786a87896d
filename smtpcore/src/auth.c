/*
 * auth.c - SMTP AUTH (RFC 4954): PLAIN, LOGIN and XOAUTH2, and base64.
 *
 * Credentials never cross a cleartext channel unless the caller set
 * auth_allow_plaintext.  The mechanisms offered are the union of every
 * AUTH line of the EHLO reply ("AUTH=LOGIN" and "AUTH PLAIN LOGIN" alike);
 * the one used is the configured one, else PLAIN, else LOGIN (XOAUTH2 takes
 * a token and is used only when named).  Any 2xx is success (Postfix's
 * smtp-sink answers 250); 535 and the rest are SMTP_ERR_AUTH carrying the
 * server's reply.  A 334 the mechanism has no answer for (after PLAIN's
 * initial response, after LOGIN's password) is cancelled with "*" (RFC 4954
 * 4) and the server's reply to that is the outcome.  Each step is the one
 * reply awaited: bytes beyond it are a protocol error.  Secrets are wiped
 * from the buffers that held them and never copied into results.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

/* Standard base64 of in[0..n) into out; returns the length or 0 if short. */
size_t smtp__b64_encode(const unsigned char *in, size_t n, char *out,
                        size_t outlen)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t need = (n + 2) / 3 * 4;
    if (need + 1 > outlen)
        return 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)in[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        /* NOLINTNEXTLINE(bugprone-narrowing-conversions) */
        out[o++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        /* NOLINTNEXTLINE(bugprone-narrowing-conversions) */
        out[o++] = i + 2 < n ? tab[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

/* Sends prefix + base64(data) as one line, wipes it, reads the reply. */
static int auth_step(struct smtp_conn *c, const char *prefix,
                     const unsigned char *data, size_t n,
                     struct smtp_result *res)
{
    size_t plen = strlen(prefix);
    size_t cap = plen + (n + 2) / 3 * 4 + 3;
    char *line = malloc(cap);
    if (line == NULL)
        return smtp__fail(res, SMTP_ERR_LOCAL, "AUTH", "out of memory");
    /* NOLINTNEXTLINE(bugprone-not-null-terminated-result) */
    memcpy(line, prefix, plen);
    size_t b = smtp__b64_encode(data, n, line + plen, cap - plen);
    memcpy(line + plen + b, "\r\n", 3);
    int r = smtp__send_raw(c, line, plen + b + 2,
                           smtp__timeout(c, SMTP__T_COMMAND), "AUTH", res);
    explicit_bzero(line, cap);
    free(line);
    if (r != SMTP_OK)
        return r;
    struct smtp_reply reply = { 0 };
    r = smtp__read_reply_one(c, smtp__timeout(c, SMTP__T_COMMAND), "AUTH",
                             &reply, res);
    if (r != SMTP_OK)
        return r;
    smtp__result_take_reply(res, &reply);
    snprintf(res->command, sizeof res->command, "AUTH");
    return SMTP_OK;
}

/* Does the AUTH line offer mechanism m? */
static int offers(const char *mechs, const char *m)
{
    size_t k = strlen(m);
    for (const char *p = mechs; p != NULL && *p != '\0';) {
        while (*p == ' ')
            p++;
        if (strncasecmp(p, m, k) == 0 && (p[k] == ' ' || p[k] == '\0'))
            return 1;
        p = strchr(p, ' ');
    }
    return 0;
}

/* The mechanisms of every AUTH line of the EHLO reply, space-separated,
   into out (the "AUTH=" form of old servers included). */
static void auth_offered(const struct smtp_conn *c, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < c->next; i++) {
        const char *e = c->ext[i];
        if (strncasecmp(e, "AUTH", 4) != 0 || (e[4] != ' ' && e[4] != '='))
            continue;
        int k = snprintf(out + o, cap - o, "%s%s", o > 0 ? " " : "", e + 5);
        if (k < 0 || (size_t)k >= cap - o)
            break;
        o += (size_t)k;
    }
}

/* Cancels an exchange the server wants to go on with (a 334 we have no
   answer for): "*", and its reply is the outcome (RFC 4954 4). */
static int auth_cancel(struct smtp_conn *c, struct smtp_result *res)
{
    int r = smtp__send_raw(c, "*\r\n", 3, smtp__timeout(c, SMTP__T_COMMAND),
                           "AUTH", res);
    if (r != SMTP_OK)
        return r;
    struct smtp_reply reply = { 0 };
    r = smtp__read_reply_one(c, smtp__timeout(c, SMTP__T_COMMAND), "AUTH",
                             &reply, res);
    if (r != SMTP_OK)
        return r;
    smtp__result_take_reply(res, &reply);
    return SMTP_OK;
}

/* Final verdict on the last reply of an exchange. */
static int auth_verdict(struct smtp_result *res)
{
    if (res->code >= 200 && res->code < 300)
        return SMTP_OK;
    return smtp__fail(res, SMTP_ERR_AUTH, "AUTH", "authentication failed");
}

/* RFC 4616 PLAIN response "\0user\0pass" (empty authzid); its length,
   or 0 when it does not fit. */
static size_t plain_response(unsigned char *buf, size_t cap, const char *user,
                             const char *pass)
{
    size_t lu = strlen(user), lp = strlen(pass);
    if (lu + lp + 2 > cap)
        return 0;
    buf[0] = '\0';
    memcpy(buf + 1, user, lu);
    buf[1 + lu] = '\0';
    memcpy(buf + 2 + lu, pass, lp);
    return lu + lp + 2;
}

/* Runs the configured or best mechanism. */
int smtp__auth(struct smtp_conn *c, struct smtp_result *res)
{
    const char *user = c->opts.auth_user;
    const char *pass = c->opts.auth_pass ? c->opts.auth_pass : "";
    char mechs[1024];
    if (c->io.tls == NULL && !c->opts.auth_allow_plaintext) {
        smtp__set_status(res, "5.7.11");
        return smtp__fail(res, SMTP_ERR_AUTH, "AUTH",
                          "refusing to send credentials over a connection "
                          "without TLS");
    }
    auth_offered(c, mechs, sizeof mechs);
    if (mechs[0] == '\0')
        return smtp__fail(res, SMTP_ERR_AUTH, "AUTH",
                          "server does not offer AUTH");
    const char *m = c->opts.auth_mech;
    if (m == NULL)
        m = offers(mechs, "PLAIN")   ? "PLAIN"
            : offers(mechs, "LOGIN") ? "LOGIN"
                                     : NULL;
    if (m == NULL || !offers(mechs, m))
        return smtp__fail(res, SMTP_ERR_AUTH, "AUTH",
                          "no usable AUTH mechanism (server offers: %.120s)",
                          mechs);
    unsigned char buf[4096];
    size_t n;
    int r;
    if (strcasecmp(m, "PLAIN") == 0) {
        n = plain_response(buf, sizeof buf, user, pass);
        r = n ? auth_step(c, "AUTH PLAIN ", buf, n, res)
              : smtp__fail(res, SMTP_ERR_LOCAL, "AUTH", "credentials too long");
    } else if (strcasecmp(m, "XOAUTH2") == 0) {
        int k = snprintf((char *)buf, sizeof buf, "user=%s\001auth=Bearer ",
                         user);
        size_t lp = strlen(pass);
        if (k < 0 || (size_t)k + lp + 2 > sizeof buf)
            return smtp__fail(res, SMTP_ERR_LOCAL, "AUTH", "token too long");
        n = (size_t)k;
        /* NOLINTNEXTLINE(bugprone-not-null-terminated-result) */
        memcpy(buf + n, pass, lp);
        n += lp;
        buf[n++] = 1;
        buf[n++] = 1;
        r = auth_step(c, "AUTH XOAUTH2 ", buf, n, res);
        if (r == SMTP_OK && res->code == 334) /* error details: answer empty */
            r = auth_step(c, "", (const unsigned char *)"", 0, res);
    } else {
        r = smtp__command(c, "AUTH LOGIN", smtp__timeout(c, SMTP__T_COMMAND),
                          res);
        if (r == SMTP_OK && res->code == 334)
            r = auth_step(c, "", (const unsigned char *)user, strlen(user),
                          res);
        if (r == SMTP_OK && res->code == 334)
            r = auth_step(c, "", (const unsigned char *)pass, strlen(pass),
                          res);
    }
    explicit_bzero(buf, sizeof buf);
    if (r == SMTP_OK && res->code == 334)
        r = auth_cancel(c, res);
    return r != SMTP_OK ? r : auth_verdict(res);
}
