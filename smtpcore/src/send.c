/*
 * send.c - one message over a connection (smtp_conn_send_mail), a chain of
 * messages whose envelopes ride behind the previous final dot
 * (smtp_conn_send_mails) and the whole-session form (smtp_send_mail).
 *
 * A send is: the checks (addresses, DSN options, headers, body lines, SIZE,
 * SMTPUTF8, 8BITMIME) before the first byte, the envelope (envelope.c), the
 * header block and the body (body.c), the final reply; the recipients
 * deferred with 452 go again in further transactions of the same message.
 * A transport failure once the final dot has been written is reported as
 * SMTP_DELIVERY_UNKNOWN: the message may have been delivered.
 * Threads: as the connection (one thread at a time).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

/* Checks the DSN options (RFC 3461): nothing free-form reaches the wire. */
static int dsn_check(const struct smtp_send_opts *so, char *why, size_t whylen)
{
    if (so == NULL)
        return 0;
    if (so->dsn_notify != NULL) {
        const char *p = so->dsn_notify;
        if (strcasecmp(p, "NEVER") != 0) {
            while (*p != '\0') {
                size_t k = strcspn(p, ",");
                if (!((k == 7 && strncasecmp(p, "SUCCESS", 7) == 0) ||
                      (k == 7 && strncasecmp(p, "FAILURE", 7) == 0) ||
                      (k == 5 && strncasecmp(p, "DELAY", 5) == 0))) {
                    snprintf(why, whylen,
                             "DSN NOTIFY must be NEVER or a list "
                             "of SUCCESS, FAILURE, DELAY");
                    return -1;
                }
                p += k + (p[k] == ',');
            }
        }
    }
    if (so->dsn_ret != NULL && strcasecmp(so->dsn_ret, "FULL") != 0 &&
        strcasecmp(so->dsn_ret, "HDRS") != 0) {
        snprintf(why, whylen, "DSN RET must be FULL or HDRS");
        return -1;
    }
    if (so->dsn_envid != NULL) {
        size_t n = strlen(so->dsn_envid), i = 0;
        while (i < n && (unsigned char)so->dsn_envid[i] >= 32 &&
               (unsigned char)so->dsn_envid[i] <= 126)
            i++;
        if (i < n || n > 100) {
            snprintf(why, whylen,
                     "DSN ENVID must be at most 100 printable "
                     "ASCII characters");
            return -1;
        }
    }
    return 0;
}

/* Checks the envelope addresses; 1 in *utf8 when one needs SMTPUTF8. */
static int envelope_check(const char *from, const char *const *to, size_t nto,
                          int *utf8, struct smtp_result *res)
{
    char why[160];
    if (smtp_addr_check(from, 1, why, sizeof why) < 0)
        return smtp__fail(res, SMTP_ERR_LOCAL, "MAIL", "sender: %s", why);
    if (nto == 0 || to == NULL)
        return smtp__fail(res, SMTP_ERR_LOCAL, "RCPT", "no recipients");
    *utf8 = smtp__addr_has_utf8(from);
    for (size_t i = 0; i < nto; i++) {
        if (smtp_addr_check(to[i], 0, why, sizeof why) < 0)
            return smtp__fail(res, SMTP_ERR_LOCAL, "RCPT", "recipient %zu: %s",
                              i + 1, why);
        *utf8 |= smtp__addr_has_utf8(to[i]);
    }
    return SMTP_OK;
}

/* The header section of a raw body held in memory: 1 when a field holds
   8-bit bytes, its name in name.  A streamed body is not looked at. */
static int raw_header_8bit(const struct smtp_body *b, char *name,
                           size_t namelen)
{
    char cur[80] = "";
    if (b == NULL || b->read != NULL)
        return 0;
    if (b->text != NULL)
        return smtp__header_8bit_field(b->text, b->len, name, namelen);
    for (size_t i = 0; i < b->nlines && b->lines[i][0] != '\0'; i++) {
        const char *l = b->lines[i];
        size_t k = strcspn(l, ":");
        if (l[0] != ' ' && l[0] != '\t')
            snprintf(cur, sizeof cur, "%.*s", (int)(k < 64 ? k : 64), l);
        if (smtp__has_8bit(l, strlen(l))) {
            snprintf(name, namelen, "%s", cur);
            return 1;
        }
    }
    return 0;
}

/* Refuses what cannot go on the wire, before the first byte, and builds the
   header block (hdr) so that SIZE counts the whole message.  Raw 8-bit
   text in a header field makes it an SMTPUTF8 message (RFC 6532 3.2,
   RFC 6531 3.4): declared when offered, else refused naming the field. */
static int precheck(struct smtp_conn *c, const char *from,
                    const char *const *to, size_t nto,
                    const struct smtp_header *h, size_t nh,
                    const struct smtp_body *body,
                    const struct smtp_send_opts *so, struct smtp__scan *sc,
                    struct smtp__buf *hdr, struct smtp_result *res)
{
    char why[200], field[80];
    int utf8 = 0, hdr8 = 0;
    if (envelope_check(from, to, nto, &utf8, res) != SMTP_OK)
        return res->kind;
    if (dsn_check(so, why, sizeof why) < 0)
        return smtp__fail(res, SMTP_ERR_LOCAL, "MAIL", "%s", why);
    if (smtp__scan_body(body, sc, why, sizeof why) < 0)
        return smtp__fail(res, SMTP_ERR_LOCAL, "DATA", "%s", why);
    if (so == NULL || !so->raw) {
        const char *helo = c->opts.helo_name ? c->opts.helo_name : "localhost";
        if (smtp__headers_write(h, nh, from, helo, hdr, res->message_id, why,
                                sizeof why) < 0)
            return smtp__fail(res, SMTP_ERR_LOCAL, "DATA", "%s", why);
        sc->size += hdr->len;
        sc->eightbit |= smtp__has_8bit(hdr->data, hdr->len);
        hdr8 = smtp__header_8bit_field(hdr->data, hdr->len, field,
                                       sizeof field);
    } else {
        hdr8 = raw_header_8bit(body, field, sizeof field);
    }
    if (utf8 && !smtp__has_cap(c, SMTP__CAP_SMTPUTF8))
        return smtp__fail(
            res, SMTP_ERR_LOCAL, "MAIL",
            "UTF-8 address but the server does not offer SMTPUTF8");
    if (hdr8 && !smtp__has_cap(c, SMTP__CAP_SMTPUTF8))
        return smtp__fail(res, SMTP_ERR_LOCAL, "MAIL",
                          "header field %s holds 8-bit text, which needs "
                          "SMTPUTF8 (RFC 6532), and the server does not "
                          "offer it",
                          field);
    sc->utf8 = utf8 || hdr8;
    if (sc->eightbit && !smtp__has_cap(c, SMTP__CAP_8BITMIME))
        return smtp__fail(
            res, SMTP_ERR_LOCAL, "MAIL",
            "8-bit message but the server does not offer 8BITMIME");
    const char *max = smtp_conn_ext_param(c, "SIZE");
    unsigned long long limit = max ? strtoull(max, NULL, 10) : 0;
    if (limit > 0 && !sc->streamed && sc->size > limit)
        return smtp__fail(res, SMTP_ERR_LOCAL, "MAIL",
                          "message of %llu bytes exceeds the server's SIZE "
                          "limit of %llu",
                          sc->size, limit);
    return SMTP_OK;
}

/* 1 when a recipient was deferred with 452 (send_rest has work). */
static int has_452(const struct smtp_result *res)
{
    for (size_t i = 0; i < res->nrejected; i++)
        if (res->rejected[i].reply.code == 452)
            return 1;
    return 0;
}

/* Puts next's whole envelope into after, to go out in the write of t's
   final dot (RFC 2920 3.1: message content may start a group): only when
   both are pipelined, next's envelope is one group, and no 452 follow-up
   of t must come first.  1 when after holds it. */
static int chain_lines(const struct smtp__tx *t, struct smtp__tx *next,
                       struct smtp__buf *after)
{
    if (next == NULL || !t->pipelined || !next->pipelined ||
        (!t->sc->streamed && has_452(t->res)))
        return 0;
    smtp__tx_begin(next);
    if (next->ncmds > SMTP__PIPE_GROUP ||
        smtp__tx_lines(next, 0, next->ncmds, after) < 0) {
        after->len = 0;
        return 0;
    }
    return 1;
}

/* The final dot's reply (or the failure r that came before it) into res:
   sent, refused, or unknown once the dot was written (dot). */
static int final_reply(struct smtp_conn *conn, struct smtp_result *res, int r,
                       int dot)
{
    struct smtp_reply fin = { 0 };
    if (r == SMTP_OK)
        r = smtp__read_reply(conn, smtp__timeout(conn, SMTP__T_DATA_TERM),
                             "DATA", &fin, res);
    if (r != SMTP_OK) {
        res->status = dot ? SMTP_DELIVERY_UNKNOWN : SMTP_DELIVERY_FAILED;
        if (dot)
            snprintf(res->message, sizeof res->message,
                     "no reply after the end of data: the message may "
                     "have been delivered; not resent");
        return r;
    }
    smtp__result_take_reply(res, &fin);
    snprintf(res->command, sizeof res->command, "DATA");
    if (res->code >= 400) {
        res->status = SMTP_DELIVERY_FAILED;
        return smtp__fail(res, SMTP_ERR_REPLY, "DATA",
                          "server refused the message");
    }
    res->status = SMTP_DELIVERY_SENT;
    res->kind = SMTP_OK;
    res->command[0] = '\0';
    return SMTP_OK;
}

/* One transaction: envelope, then header block and body; next (may be
   NULL) is the transaction to follow, whose envelope then rides behind the
   final dot when chain_lines allows (next->written says it did). */
static int send_once(struct smtp__tx *t, const struct smtp__buf *hdr,
                     const struct smtp_body *body, struct smtp__tx *next)
{
    struct smtp_conn *conn = t->c;
    int r = smtp__tx_envelope(t);
    if (r == SMTP__GO_ON) {
        int dot = 0, chained = 0;
        struct smtp__buf after;
        smtp__buf_init(&after, (size_t)1 << 20);
        int with = chain_lines(t, next, &after);
        r = smtp__write_message(conn, hdr, body,
                                smtp__has_cap(conn, SMTP__CAP_8BITMIME),
                                with ? &after : NULL, t->res, &dot, &chained);
        smtp__buf_free(&after);
        if (chained)
            next->written = 1;
        r = final_reply(conn, t->res, r, dot);
    }
    smtp_reply_clear(&t->mail_reply);
    smtp_reply_clear(&t->data_reply);
    smtp_reply_clear(&t->bad_reply);
    return r;
}

/* Moves the recipients refused with 452 (too many recipients, RFC 5321
   4.5.3.1.10) out of res->rejected into *out; returns their count. */
static size_t take_452(struct smtp_result *res, char ***out)
{
    size_t n = 0, keep = 0;
    for (size_t i = 0; i < res->nrejected; i++)
        n += res->rejected[i].reply.code == 452;
    if (n == 0 || (*out = calloc(n, sizeof **out)) == NULL)
        return 0;
    n = 0;
    for (size_t i = 0; i < res->nrejected; i++) {
        if (res->rejected[i].reply.code == 452) {
            (*out)[n++] = res->rejected[i].recipient;
            smtp_reply_clear(&res->rejected[i].reply);
        } else {
            res->rejected[keep++] = res->rejected[i];
        }
    }
    res->nrejected = keep;
    return n;
}

/* Appends more's accepted and rejected lists to res (more is emptied). */
static int merge_lists(struct smtp_result *res, struct smtp_result *more)
{
    char **a = realloc(res->accepted,
                       (res->naccepted + more->naccepted + 1) * sizeof *a);
    if (a == NULL)
        return -1;
    res->accepted = a;
    if (more->naccepted > 0)
        memcpy(a + res->naccepted, more->accepted, more->naccepted * sizeof *a);
    res->naccepted += more->naccepted;
    more->naccepted = 0;
    struct smtp_rcpt_failure *f = realloc(
        res->rejected, (res->nrejected + more->nrejected + 1) * sizeof *f);
    if (f == NULL)
        return -1;
    res->rejected = f;
    if (more->nrejected > 0)
        memcpy(f + res->nrejected, more->rejected, more->nrejected * sizeof *f);
    res->nrejected += more->nrejected;
    more->nrejected = 0;
    return 0;
}

/* The recipients the server deferred with 452 go in further transactions
   of the same message (same header block, same Message-ID).  Only for
   bodies that can be read again (text or lines). */
static void send_rest(struct smtp_conn *conn, const char *from,
                      const struct smtp__buf *hdr, const struct smtp_body *body,
                      const struct smtp_send_opts *sopts,
                      const struct smtp__scan *sc, struct smtp_result *res)
{
    for (int round = 0; round < 100 && !sc->streamed && smtp__is_open(conn) &&
                        res->status == SMTP_DELIVERY_SENT;
         round++) {
        char **rest = NULL;
        size_t n = take_452(res, &rest);
        if (n == 0)
            return;
        struct smtp_result more;
        struct smtp__tx t;
        smtp_result_init(&more);
        smtp__tx_init(&t, conn, from, (const char *const *)rest, n, sopts, sc,
                      &more);
        send_once(&t, hdr, body, NULL);
        if (more.status == SMTP_DELIVERY_UNKNOWN) {
            /* its final dot went unanswered: those recipients may have the
               message, so they are not "rejected" (a caller would resend
               to them) and the whole message is unknown: never resent */
            res->status = SMTP_DELIVERY_UNKNOWN;
            smtp_reply_clear(&res->reply);
            res->code = 0;
            res->sys_errno = more.sys_errno;
            smtp__fail(res, more.kind, "DATA",
                       "no reply after the end of data for the %zu "
                       "recipients deferred with 452: they may have "
                       "received it; not resent",
                       n);
        } else if (more.status != SMTP_DELIVERY_SENT) {
            /* that transaction delivered nothing: all of them failed, with
               the reply that ended it */
            for (size_t i = 0; i < n; i++) {
                struct smtp_reply why = { 0 };
                smtp__reply_copy(&why, &more.reply);
                if (why.code >= 200 && why.code < 300)
                    why.code = 0; /* never list a failure as 2xx */
                smtp__record_rcpt(res, rest[i], &why);
                smtp_reply_clear(&why);
            }
        } else {
            merge_lists(res, &more);
        }
        for (size_t i = 0; i < n; i++)
            free(rest[i]);
        free(rest);
        int done = more.status != SMTP_DELIVERY_SENT;
        smtp_result_clear(&more);
        if (done)
            return;
    }
}

/* A message on its way: what precheck built, and its transaction. */
struct prep {
    struct smtp__scan sc;
    struct smtp__buf hdr;
    char msgid[sizeof((struct smtp_result *)0)->message_id];
    const char **to; /* the distinct recipients, when the
                                   message named one twice; else NULL */
    struct smtp__tx t;
};

/* 1 when mailboxes a and b are the same: local parts compared exactly
   (RFC 5321 2.4), domains without case. */
static int same_mailbox(const char *a, const char *b)
{
    const char *da = strrchr(a, '@'), *db = strrchr(b, '@');
    size_t la = da ? (size_t)(da - a) : strlen(a);
    size_t lb = db ? (size_t)(db - b) : strlen(b);
    if (la != lb || memcmp(a, b, la) != 0 || (da == NULL) != (db == NULL))
        return 0;
    return da == NULL || strcasecmp(da, db) == 0;
}

/* One RCPT per distinct mailbox: when to[0..*nto) names one twice, *out
   gets a new array of the first of each (borrowed strings) and *nto its
   length; else *out is NULL.  -1 when out of memory. */
static int distinct_rcpts(const char *const *to, size_t *nto, const char ***out)
{
    size_t n = 0;
    *out = NULL;
    for (size_t i = 1; i < *nto && *out == NULL; i++)
        for (size_t j = 0; j < i && *out == NULL; j++)
            if (same_mailbox(to[i], to[j]) &&
                (*out = calloc(*nto, sizeof **out)) == NULL)
                return -1;
    if (*out == NULL)
        return 0;
    for (size_t i = 0; i < *nto; i++) {
        size_t j = 0;
        while (j < n && !same_mailbox(to[i], (*out)[j]))
            j++;
        if (j == n)
            (*out)[n++] = to[i];
    }
    *nto = n;
    return 0;
}

/* A message that failed reached nobody: its accepted list goes (the
   RCPT replies said only that the server would take it). */
static void drop_accepted(struct smtp_result *res)
{
    for (size_t i = 0; i < res->naccepted; i++)
        free(res->accepted[i]);
    free(res->accepted);
    res->accepted = NULL;
    res->naccepted = 0;
}

/* Frees what prepare built. */
static void prep_free(struct prep *p)
{
    smtp__buf_free(&p->hdr);
    free(p->to);
    p->to = NULL;
}

/* Clears res, checks m and builds its header block (nothing is sent):
   SMTP_OK with p ready for send_once, else the failure, final, in res. */
static int prepare(struct smtp_conn *conn, const struct smtp_message *m,
                   struct prep *p, struct smtp_result *res)
{
    smtp_result_clear(res);
    if (!smtp__is_open(conn)) {
        res->status = SMTP_DELIVERY_FAILED; /* nothing of it was sent */
        return smtp__fail(res, SMTP_ERR_CONN, "MAIL", "connection is closed");
    }
    if (conn->state != SMTP_CONN_READY &&
        smtp_conn_hello(conn, res) != SMTP_OK) {
        res->status = SMTP_DELIVERY_FAILED;
        return res->kind;
    }
    smtp_result_clear(res);
    smtp__buf_init(&p->hdr, (size_t)1 << 20);
    p->to = NULL;
    size_t nto = m->nto;
    int r = precheck(conn, m->from, m->to, m->nto, m->headers, m->nheaders,
                     m->body, m->sopts, &p->sc, &p->hdr, res);
    if (r == SMTP_OK && distinct_rcpts(m->to, &nto, &p->to) < 0)
        r = smtp__fail(res, SMTP_ERR_LOCAL, "RCPT", "out of memory");
    if (r != SMTP_OK) {
        prep_free(p);
        res->message_id[0] = '\0';
        res->status = SMTP_DELIVERY_FAILED;
        return r;
    }
    memcpy(p->msgid, res->message_id, sizeof p->msgid);
    smtp__tx_init(&p->t, conn, m->from, p->to != NULL ? p->to : m->to, nto,
                  m->sopts, &p->sc, res);
    return SMTP_OK;
}

/* After send_once: the 452 follow-ups, then the outcome's last touches;
   frees what prepare built.  Returns the outcome's kind. */
static int finish(struct smtp_conn *conn, const struct smtp_message *m,
                  struct prep *p, struct smtp_result *res, int r)
{
    send_rest(conn, m->from, &p->hdr, m->body, m->sopts, &p->sc, res);
    prep_free(p);
    memcpy(res->message_id, p->msgid, sizeof p->msgid);
    if (res->status == SMTP_DELIVERY_FAILED)
        drop_accepted(res); /* the message reached nobody */
    if (res->status == SMTP_DELIVERY_SENT && res->nrejected > 0) {
        res->code = 700;
        res->status = SMTP_DELIVERY_PARTIAL;
        r = smtp__fail(res, SMTP_ERR_REJECTED, "RCPT",
                       "some recipients were rejected");
    }
    if (res->status != SMTP_DELIVERY_SENT &&
        res->status != SMTP_DELIVERY_PARTIAL &&
        res->status != SMTP_DELIVERY_UNKNOWN)
        res->message_id[0] = '\0';
    return smtp__settled(res, r);
}

/* Sends one message on an open connection. */
int smtp_conn_send_mail(struct smtp_conn *conn, const char *from,
                        const char *const *to, size_t nto,
                        const struct smtp_header *headers, size_t nheaders,
                        const struct smtp_body *body,
                        const struct smtp_send_opts *sopts,
                        struct smtp_result *res)
{
    const struct smtp_message m = { from,     to,   nto,  headers,
                                    nheaders, body, sopts };
    struct prep p;
    int r = prepare(conn, &m, &p, res);
    if (r != SMTP_OK)
        return smtp__settled(res, r);
    r = send_once(&p.t, &p.hdr, body, NULL);
    return finish(conn, &m, &p, res, r);
}

/* Tells done about message i; 1 when it asks to stop. */
static int told(smtp_message_done_fn done, void *ctx, size_t i,
                struct smtp_result *res)
{
    smtp_result_settle(res);
    return done != NULL && done(ctx, i, res) != 0;
}

/* Sends mails[0..n) in turn, each final dot carrying the next envelope
   when allowed (see smtp.h). */
size_t smtp_conn_send_mails(struct smtp_conn *conn,
                            const struct smtp_message *mails, size_t n,
                            struct smtp_result *const *results,
                            smtp_message_done_fn done, void *ctx)
{
    struct prep slot[2];
    int ready = 0; /* slot[i & 1] was prepared (as the next) */
    size_t i;
    for (i = 0; i < n; i++) {
        struct prep *cur = &slot[i & 1], *nx = &slot[(i + 1) & 1];
        int r = SMTP_OK, next_failed = 0, stop;
        if (!ready)
            r = prepare(conn, &mails[i], cur, results[i]);
        ready = 0;
        if (r == SMTP_OK) {
            /* The next one is checked now so that its envelope can ride
               behind this one's final dot. */
            if (i + 1 < n && smtp__is_open(conn))
                next_failed = prepare(conn, &mails[i + 1], nx,
                                      results[i + 1]) != SMTP_OK;
            ready = i + 1 < n && smtp__is_open(conn) && !next_failed;
            r = send_once(&cur->t, &cur->hdr, mails[i].body,
                          ready ? &nx->t : NULL);
            finish(conn, &mails[i], cur, results[i], r);
        }
        stop = told(done, ctx, i, results[i]); /* i is theirs now */
        if (next_failed) { /* refused before a byte was sent */
            i++;
            stop |= told(done, ctx, i, results[i]);
        }
        if (stop && ready && !nx->t.written) {
            prep_free(nx); /* prepared, nothing sent */
            ready = 0;
        }
        if (stop && !ready)
            return i + 1;
        if (stop) { /* its envelope is out: finish it */
            i++;
            r = send_once(&nx->t, &nx->hdr, mails[i].body, NULL);
            finish(conn, &mails[i], nx, results[i], r);
            told(done, ctx, i, results[i]);
            return i + 1;
        }
    }
    return i;
}


/* The seed's smtp-send-mail: a whole session for one message. */
int smtp_send_mail(const char *from, const char *const *to, size_t nto,
                   const struct smtp_header *headers, size_t nheaders,
                   const struct smtp_body *body, const char *host,
                   const struct smtp_opts *opts,
                   const struct smtp_send_opts *sopts, struct smtp_result *res)
{
    int utf8 = 0;
    smtp_result_clear(res);
    /* Refuse bad envelopes before connecting at all. */
    if (envelope_check(from, to, nto, &utf8, res) != SMTP_OK) {
        res->status = SMTP_DELIVERY_FAILED;
        return smtp__settled(res, res->kind);
    }
    struct smtp_conn *c = smtp__open_session(host, opts, res);
    if (c == NULL) {
        res->status = SMTP_DELIVERY_FAILED;
        return res->kind;
    }
    int r = smtp_conn_send_mail(c, from, to, nto, headers, nheaders, body,
                                sopts, res);
    smtp_conn_quit(c);
    return r;
}
