/*
 * send.c - one message over a connection (smtp_conn_send_mail), the
 * whole-session form (smtp_send_mail) and the queries on their own
 * connection (smtp_expand, smtp_verify, smtp_get_help).
 *
 * A send is: [RSET] MAIL, one RCPT each, DATA, body, final dot.  With
 * PIPELINING (RFC 2920) the commands go in one write per group of at most
 * PIPE_GROUP commands and the replies are matched in order; without it,
 * one at a time.  Nobody accepted: no DATA (RSET instead, or, when DATA was
 * already pipelined and got 354, a lone dot).  Everything is checked before
 * the first byte: addresses, headers, body lines, SIZE, SMTPUTF8, 8BITMIME.
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

#define PIPE_GROUP 100          /* commands per pipelined write */
#define CHUNK (64 * 1024)       /* body bytes per write */
#define GO_ON 1                 /* envelope accepted: send the body */

/* What a body scan learns before anything is sent. */
struct scan {
    unsigned long long size;
    size_t line;        /* lines ended so far (for the reason) */
    int eightbit;
    int streamed;       /* a reader: size and 8-bit unknown in advance */
    int utf8;           /* needs SMTPUTF8: a UTF-8 address, or raw 8-bit
                           text in a header field (RFC 6531 3.4, 6532) */
};

/* Checks a body held in memory: NUL, line length; counts the octets it
   will take on the wire (lone CR or LF become CRLF, leading dots double)
   and whether it has 8-bit bytes.  *col carries the line across calls. */
static int scan_bytes(const char *p, size_t n, size_t *col, struct scan *sc,
                      char *why, size_t whylen)
{
    size_t i = 0;
    while (i < n) {
        if (p[i] == '\n' || p[i] == '\r') {
            if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
                i++;
            sc->size += 2;
            sc->line++;
            *col = 0;
            i++;
            continue;
        }
        if (p[i] == '\0') {
            snprintf(why, whylen, "NUL byte in body line %zu", sc->line + 1);
            return -1;
        }
        if (p[i] == '.' && *col == 0)
            sc->size++;
        size_t end = smtp__run_end(p, i, n);
        *col += end - i;
        sc->size += end - i;
        if (*col > SMTP_MAX_LINE) {
            snprintf(why, whylen, "body line %zu is longer than %d octets "
                     "(RFC 5321 4.5.3.1.6)", sc->line + 1, SMTP_MAX_LINE);
            return -1;
        }
        i = end;
    }
    sc->eightbit |= smtp__has_8bit(p, n);
    return 0;
}

int smtp_body_check(const char *text, size_t len, char *why, size_t whylen)
{
    struct scan sc;
    size_t col = 0;
    char dummy[8];
    memset(&sc, 0, sizeof sc);
    if (why == NULL || whylen == 0) {
        why = dummy;
        whylen = sizeof dummy;
    }
    why[0] = '\0';
    return text == NULL && len > 0 ? -1
         : scan_bytes(text, len, &col, &sc, why, whylen);
}

/* Scans text or lines bodies (a reader is checked as it streams). */
static int scan_body(const struct smtp_body *b, struct scan *sc, char *why,
                     size_t whylen)
{
    size_t col = 0;
    memset(sc, 0, sizeof *sc);
    if (b == NULL)
        return 0;
    if (b->text != NULL) {
        if (scan_bytes(b->text, b->len, &col, sc, why, whylen) < 0)
            return -1;
        if (col > 0)
            sc->size += 2;          /* the CRLF that ends the last line */
        return 0;
    }
    if (b->read != NULL) {
        sc->streamed = 1;
        return 0;
    }
    for (size_t i = 0; i < b->nlines; i++) {
        col = 0;
        if (b->lines[i] == NULL) {
            snprintf(why, whylen, "body line %zu is missing", i + 1);
            return -1;
        }
        if (scan_bytes(b->lines[i], strlen(b->lines[i]), &col, sc, why,
                       whylen) < 0)
            return -1;
        if (col > 0 || b->lines[i][0] == '\0') {
            sc->size += 2;          /* the line's own CRLF */
            sc->line++;
        }
    }
    return 0;
}

/* Sends out's bytes once it holds a chunk (or always when force). */
static int flush(struct smtp_conn *c, struct smtp__buf *out, int force,
                 struct smtp_result *res)
{
    if (out->len == 0 || (!force && out->len < CHUNK))
        return SMTP_OK;
    int r = smtp__send_raw(c, out->data, out->len,
                           smtp__timeout(c, SMTP__T_DATA_BLOCK), "DATA", res);
    out->len = 0;
    return r;
}

/* Feeds one piece of body through the stuffer, flushing as it fills. */
static int feed(struct smtp_conn *c, struct smtp__stuffer *st,
                struct smtp__buf *out, const char *p, size_t n,
                struct smtp_result *res)
{
    char why[128];
    while (n > 0) {
        size_t k = n > CHUNK / 4 ? CHUNK / 4 : n;
        if (smtp__stuff(st, p, k, out, why, sizeof why) < 0) {
            smtp__conn_close(c);   /* no final dot: nothing is delivered */
            return smtp__fail(res, SMTP_ERR_LOCAL, "DATA", "%s", why);
        }
        int r = flush(c, out, 0, res);
        if (r != SMTP_OK)
            return r;
        p += k;
        n -= k;
    }
    return SMTP_OK;
}

/* Writes the last of out, which ends with the final dot line and then
   carries after (may be NULL) in the same write.  *dot_sent once every byte
   of the dot line is written, *after_sent once all of after is. */
static int flush_last(struct smtp_conn *c, struct smtp__buf *out,
                      const struct smtp__buf *after, struct smtp_result *res,
                      int *dot_sent, int *after_sent)
{
    size_t dot_end = out->len, done = 0;
    int with = after != NULL && after->len > 0 &&
               smtp__buf_append(out, after->data, after->len) == 0;
    int r = smtp__send_raw_n(c, out->data, out->len,
                             smtp__timeout(c, SMTP__T_DATA_BLOCK), "DATA",
                             res, &done);
    *dot_sent = r == SMTP_OK || done >= dot_end;
    if (after_sent != NULL)
        *after_sent = r == SMTP_OK && with;
    out->len = 0;
    return r;
}

/* Streams the header block hdr (may be NULL), the body and the final dot
   after a 354, then after (may be NULL) in the dot's write.  allow8bit 0
   refuses 8-bit body bytes (no 8BITMIME).  *dot_sent is set once every
   byte of the final dot line is written, *after_sent (may be NULL) once
   all of after is. */
int smtp__write_message(struct smtp_conn *c, const struct smtp__buf *hdr,
                        const struct smtp_body *body, int allow8bit,
                        const struct smtp__buf *after,
                        struct smtp_result *res, int *dot_sent,
                        int *after_sent)
{
    struct smtp__buf out;
    struct smtp__stuffer st;
    int r = SMTP_OK;
    *dot_sent = 0;
    if (after_sent != NULL)
        *after_sent = 0;
    smtp__buf_init(&out, 4 * CHUNK);
    smtp__stuffer_init(&st);
    st.refuse_8bit = !allow8bit;
    st.in_header = hdr == NULL || hdr->len == 0;    /* a whole message */
    if (hdr != NULL && hdr->len > 0 &&
        smtp__buf_append(&out, hdr->data, hdr->len) < 0) {
        smtp__buf_free(&out);
        smtp__conn_close(c);
        return smtp__fail(res, SMTP_ERR_LOCAL, "DATA", "out of memory");
    }
    if (body != NULL && body->text != NULL) {
        r = feed(c, &st, &out, body->text, body->len, res);
    } else if (body != NULL && body->read != NULL) {
        char piece[CHUNK / 4];
        for (;;) {
            ssize_t n = body->read(body->ctx, piece, sizeof piece);
            if (n == 0)
                break;
            if (n < 0) {
                smtp__conn_close(c);
                r = smtp__fail(res, SMTP_ERR_LOCAL, "DATA",
                               "body reader failed; message not sent");
                break;
            }
            if ((r = feed(c, &st, &out, piece, (size_t)n, res)) != SMTP_OK)
                break;
        }
    } else if (body != NULL) {
        for (size_t i = 0; i < body->nlines && r == SMTP_OK; i++) {
            r = feed(c, &st, &out, body->lines[i], strlen(body->lines[i]), res);
            if (r == SMTP_OK)
                r = feed(c, &st, &out, "\n", 1, res);
        }
    }
    if (r == SMTP_OK && smtp__stuff_end(&st, &out) < 0)
        r = smtp__fail(res, SMTP_ERR_LOCAL, "DATA", "out of memory");
    if (r == SMTP_OK)
        r = flush_last(c, &out, after, res, dot_sent, after_sent);
    smtp__buf_free(&out);
    return r;
}

/* ---- The transaction of one message ---- */

enum step { STEP_RSET, STEP_MAIL, STEP_RCPT, STEP_DATA };
static const char *const step_verb[] = { "RSET", "MAIL", "RCPT", "DATA" };

struct tx {
    struct smtp_conn *c;
    struct smtp_result *res;
    const char *from;
    const char *const *to;
    size_t nto;
    const struct smtp_send_opts *so;
    const struct scan *sc;
    int rset;                    /* RSET goes first */
    int pipelined;
    size_t ncmds;                /* RSET? + MAIL + nto + DATA */
    int begun;                   /* tx_begin done: rset and ncmds known */
    int written;                 /* the envelope rode behind the previous
                                    message's final dot: read its replies */
    int mail_ok;
    int stop;                    /* transport error or 421: nothing more */
    struct smtp_reply mail_reply, data_reply, bad_reply;
    const char *bad_verb;        /* the step bad_reply answered */
};

/* Which step command k is, and for RCPT the recipient index. */
static enum step step_of(const struct tx *t, size_t k, size_t *rcpt)
{
    if (t->rset) {
        if (k == 0)
            return STEP_RSET;
        k--;
    }
    if (k == 0)
        return STEP_MAIL;
    if (k <= t->nto) {
        *rcpt = k - 1;
        return STEP_RCPT;
    }
    return STEP_DATA;
}

/* Appends the command line of step k to out. */
static int cmd_line(const struct tx *t, size_t k, struct smtp__buf *out)
{
    size_t i = 0;
    const struct smtp_conn *c = t->c;
    const struct smtp_send_opts *so = t->so;
    int dsn = smtp__has_cap(c, SMTP__CAP_DSN);
    int r = 0;
    switch (step_of(t, k, &i)) {
    case STEP_RSET:
        return smtp__buf_append(out, "RSET\r\n", 6);
    case STEP_MAIL:
        r |= smtp__buf_append(out, "MAIL FROM:<", 11);
        r |= smtp__buf_append(out, t->from, strlen(t->from));
        r |= smtp__buf_append(out, ">", 1);
        if (smtp__has_cap(c, SMTP__CAP_SIZE) && !t->sc->streamed)
            r |= smtp__buf_appendf(out, " SIZE=%llu", t->sc->size);
        if ((t->sc->eightbit || t->sc->streamed) &&
            smtp__has_cap(c, SMTP__CAP_8BITMIME))
            r |= smtp__buf_append(out, " BODY=8BITMIME", 14);
        if (t->sc->utf8 && smtp__has_cap(c, SMTP__CAP_SMTPUTF8))
            r |= smtp__buf_append(out, " SMTPUTF8", 9);
        if (dsn && so != NULL && so->dsn_ret != NULL)
            r |= smtp__buf_appendf(out, " RET=%s", so->dsn_ret);
        if (dsn && so != NULL && so->dsn_envid != NULL) {
            r |= smtp__buf_appendf(out, " ENVID=");
            r |= smtp__xtext(out, so->dsn_envid);
        }
        break;
    case STEP_RCPT:
        r |= smtp__buf_append(out, "RCPT TO:<", 9);
        r |= smtp__buf_append(out, t->to[i], strlen(t->to[i]));
        r |= smtp__buf_append(out, ">", 1);
        if (dsn && so != NULL && so->dsn_notify != NULL) {
            r |= smtp__buf_appendf(out, " NOTIFY=%s ORCPT=rfc822;", so->dsn_notify);
            r |= smtp__xtext(out, t->to[i]);
        }
        break;
    case STEP_DATA:
        return smtp__buf_append(out, "DATA\r\n", 6);
    }
    return r | smtp__buf_append(out, "\r\n", 2);
}

/* Adds a recipient to the accepted or the rejected list. */
static int record_rcpt(struct smtp_result *res, const char *rcpt,
                       struct smtp_reply *reply)
{
    char *copy = strdup(rcpt);
    if (copy == NULL)
        return -1;
    if (reply->code >= 200 && reply->code < 300) {
        char **a = realloc(res->accepted, (res->naccepted + 1) * sizeof *a);
        if (a == NULL) {
            free(copy);
            return -1;
        }
        res->accepted = a;
        a[res->naccepted++] = copy;
        return 0;
    }
    struct smtp_rcpt_failure *f =
        realloc(res->rejected, (res->nrejected + 1) * sizeof *f);
    if (f == NULL) {
        free(copy);
        return -1;
    }
    res->rejected = f;
    f[res->nrejected].recipient = copy;
    f[res->nrejected].reply = *reply;
    memset(reply, 0, sizeof *reply);
    res->nrejected++;
    return 0;
}

/* Files the reply of step k. */
static void on_reply(struct tx *t, size_t k, struct smtp_reply *reply)
{
    size_t i = 0;
    enum step s = step_of(t, k, &i);
    if (reply->code == 421 || (s == STEP_RSET && reply->code >= 300)) {
        t->stop = 1;
        t->bad_verb = step_verb[s];
        smtp_reply_clear(&t->bad_reply);
        t->bad_reply = *reply;
        memset(reply, 0, sizeof *reply);
        return;
    }
    if (s == STEP_MAIL) {
        t->mail_ok = reply->code >= 200 && reply->code < 300;
        t->mail_reply = *reply;                 /* moved */
        memset(reply, 0, sizeof *reply);
    } else if (s == STEP_DATA) {
        t->data_reply = *reply;                 /* moved */
        memset(reply, 0, sizeof *reply);
    } else if (s == STEP_RCPT && record_rcpt(t->res, t->to[i], reply) < 0) {
        t->stop = 1;
    }
    smtp_reply_clear(reply);    /* what was not moved (RSET, accepted RCPT) */
}

/* Timeout of step k's reply. */
static int step_timeout(const struct tx *t, size_t k)
{
    size_t i;
    return step_of(t, k, &i) == STEP_DATA
        ? smtp__timeout(t->c, SMTP__T_DATA_INIT)
        : smtp__timeout(t->c, SMTP__T_COMMAND);
}

/* Appends the command lines [from, to) to out; -1 when out of memory. */
static int group_lines(const struct tx *t, size_t from, size_t to,
                       struct smtp__buf *out)
{
    for (size_t k = from; k < to; k++)
        if (cmd_line(t, k, out) < 0)
            return -1;
    return 0;
}

/* Reads the replies of commands [from, to), already written. */
static int group_read(struct tx *t, size_t from, size_t to)
{
    int r = SMTP_OK;
    for (size_t k = from; r == SMTP_OK && k < to && !t->stop; k++) {
        struct smtp_reply reply = { 0 };
        size_t i;
        const char *verb = step_verb[step_of(t, k, &i)];
        r = smtp__read_reply(t->c, step_timeout(t, k), verb, &reply, t->res);
        if (r == SMTP_OK)
            on_reply(t, k, &reply);
    }
    if (r != SMTP_OK)
        t->stop = 1;
    return r;
}

/* Writes commands [from, to) in one write, then reads their replies. */
static int run_group(struct tx *t, size_t from, size_t to)
{
    struct smtp__buf out;
    smtp__buf_init(&out, (size_t)1 << 20);
    if (group_lines(t, from, to, &out) < 0) {
        smtp__buf_free(&out);
        t->stop = 1;
        return smtp__fail(t->res, SMTP_ERR_LOCAL, "MAIL", "out of memory");
    }
    size_t i;
    const char *verb = step_verb[step_of(t, from, &i)];
    int r = smtp__send_raw(t->c, out.data, out.len,
                           smtp__timeout(t->c, SMTP__T_COMMAND), verb, t->res);
    smtp__buf_free(&out);
    if (r != SMTP_OK) {
        t->stop = 1;
        return r;
    }
    return group_read(t, from, to);
}

/* Runs the envelope: pipelined groups (DATA included), or one command at
   a time up to the last RCPT.  An envelope already written (t->written, one
   group) only has its replies read. */
static int run_envelope(struct tx *t)
{
    if (t->written)
        return group_read(t, 0, t->ncmds);
    if (t->pipelined) {
        for (size_t k = 0; k < t->ncmds && !t->stop; k += PIPE_GROUP) {
            size_t end = k + PIPE_GROUP < t->ncmds ? k + PIPE_GROUP : t->ncmds;
            int r = run_group(t, k, end);
            if (r != SMTP_OK)
                return r;
        }
        return SMTP_OK;
    }
    for (size_t k = 0; k < t->ncmds && !t->stop; k++) {
        size_t i;
        enum step s = step_of(t, k, &i);
        if ((s == STEP_RCPT && !t->mail_ok) || s == STEP_DATA)
            break;                  /* DATA waits for judge_envelope */
        int r = run_group(t, k, k + 1);
        if (r != SMTP_OK)
            return r;
    }
    return SMTP_OK;
}

/* After a pipelined DATA got 354 that must not be used: a lone dot. */
static void lone_dot(struct tx *t)
{
    struct smtp_result tmp;
    struct smtp_reply reply = { 0 };
    smtp_result_init(&tmp);
    if (smtp__send_raw(t->c, ".\r\n", 3, smtp__timeout(t->c, SMTP__T_COMMAND),
                       "DATA", &tmp) == SMTP_OK)
        smtp__read_reply(t->c, smtp__timeout(t->c, SMTP__T_DATA_TERM), "DATA",
                         &reply, &tmp);
    smtp_reply_clear(&reply);
    smtp_result_clear(&tmp);
}

/* Judges the envelope; returns GO_ON when the message goes on to the body,
   else the outcome's kind. */
/* A 421 (any step) or a refused RSET ends the transaction. */
static int judge_bad(struct tx *t)
{
    struct smtp_result *res = t->res;
    if (t->bad_reply.code != 421)
        smtp__conn_close(t->c);     /* RSET refused: state unknown */
    smtp__result_take_reply(res, &t->bad_reply);
    res->status = SMTP_DELIVERY_FAILED;
    return smtp__fail(res, SMTP_ERR_REPLY, t->bad_verb,
                      "server ended or refused the transaction");
}

static int judge_envelope(struct tx *t)
{
    struct smtp_result *res = t->res;
    if (t->bad_reply.code != 0)
        return judge_bad(t);
    if (t->stop && res->kind != SMTP_OK) {
        res->status = SMTP_DELIVERY_FAILED;
        return res->kind;
    }
    if (!t->mail_ok) {
        if (t->data_reply.code == 354)
            lone_dot(t);
        smtp__result_take_reply(res, &t->mail_reply);
        res->status = SMTP_DELIVERY_FAILED;
        return smtp__fail(res, SMTP_ERR_REPLY, "MAIL",
                          "server refused the sender");
    }
    if (res->naccepted == 0) {
        if (t->data_reply.code == 354) {
            lone_dot(t);
        } else if (!t->pipelined) {
            struct smtp_result tmp;          /* no DATA: RSET instead */
            smtp_result_init(&tmp);
            smtp__command(t->c, "RSET", smtp__timeout(t->c, SMTP__T_COMMAND),
                          &tmp);
            smtp_result_clear(&tmp);
        }
        res->code = 700;
        res->status = SMTP_DELIVERY_REJECTED;
        return smtp__fail(res, SMTP_ERR_REJECTED, "RCPT",
                          "every recipient was rejected");
    }
    if (!t->pipelined) {
        int r = run_group(t, t->ncmds - 1, t->ncmds);
        if (t->bad_reply.code != 0)
            return judge_bad(t);
        if (r != SMTP_OK) {
            res->status = SMTP_DELIVERY_FAILED;
            return r;
        }
    }
    if (t->data_reply.code != 354) {
        smtp__result_take_reply(res, &t->data_reply);
        res->status = SMTP_DELIVERY_FAILED;
        return smtp__fail(res, SMTP_ERR_REPLY, "DATA",
                          "server refused DATA");
    }
    return GO_ON;
}

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
                    snprintf(why, whylen, "DSN NOTIFY must be NEVER or a list "
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
            snprintf(why, whylen, "DSN ENVID must be at most 100 printable "
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
                    const struct smtp_send_opts *so, struct scan *sc,
                    struct smtp__buf *hdr, struct smtp_result *res)
{
    char why[200], field[80];
    int utf8 = 0, hdr8 = 0;
    if (envelope_check(from, to, nto, &utf8, res) != SMTP_OK)
        return res->kind;
    if (dsn_check(so, why, sizeof why) < 0)
        return smtp__fail(res, SMTP_ERR_LOCAL, "MAIL", "%s", why);
    if (scan_body(body, sc, why, sizeof why) < 0)
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
        return smtp__fail(res, SMTP_ERR_LOCAL, "MAIL",
                          "UTF-8 address but the server does not offer SMTPUTF8");
    if (hdr8 && !smtp__has_cap(c, SMTP__CAP_SMTPUTF8))
        return smtp__fail(res, SMTP_ERR_LOCAL, "MAIL",
                          "header field %s holds 8-bit text, which needs "
                          "SMTPUTF8 (RFC 6532), and the server does not "
                          "offer it", field);
    sc->utf8 = utf8 || hdr8;
    if (sc->eightbit && !smtp__has_cap(c, SMTP__CAP_8BITMIME))
        return smtp__fail(res, SMTP_ERR_LOCAL, "MAIL",
                          "8-bit message but the server does not offer 8BITMIME");
    const char *max = smtp_conn_ext_param(c, "SIZE");
    unsigned long long limit = max ? strtoull(max, NULL, 10) : 0;
    if (limit > 0 && !sc->streamed && sc->size > limit)
        return smtp__fail(res, SMTP_ERR_LOCAL, "MAIL",
                          "message of %llu bytes exceeds the server's SIZE "
                          "limit of %llu", sc->size, limit);
    return SMTP_OK;
}

/* Sets up the transaction of to[0..nto) on conn; nothing is sent yet. */
static void tx_init(struct tx *t, struct smtp_conn *conn, const char *from,
                    const char *const *to, size_t nto,
                    const struct smtp_send_opts *sopts, const struct scan *sc,
                    struct smtp_result *res)
{
    memset(t, 0, sizeof *t);
    t->c = conn;
    t->res = res;
    t->from = from;
    t->to = to;
    t->nto = nto;
    t->so = sopts;
    t->sc = sc;
    t->pipelined = !conn->opts.no_pipelining &&
                   smtp__has_cap(conn, SMTP__CAP_PIPELINING);
}

/* The transaction starts (once): RSET first when one ran on the
   connection before. */
static void tx_begin(struct tx *t)
{
    if (t->begun)
        return;
    t->begun = 1;
    t->rset = t->c->dirty;
    t->ncmds = (t->rset ? 1u : 0u) + 2 + t->nto;
    t->c->dirty = 1;
    t->c->messages++;
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
static int chain_lines(const struct tx *t, struct tx *next,
                       struct smtp__buf *after)
{
    if (next == NULL || !t->pipelined || !next->pipelined ||
        (!t->sc->streamed && has_452(t->res)))
        return 0;
    tx_begin(next);
    if (next->ncmds > PIPE_GROUP || group_lines(next, 0, next->ncmds,
                                                after) < 0) {
        after->len = 0;
        return 0;
    }
    return 1;
}

/* One transaction: envelope, then header block and body; next (may be
   NULL) is the transaction to follow, whose envelope then rides behind the
   final dot when chain_lines allows (next->written says it did). */
static int send_once(struct tx *t, const struct smtp__buf *hdr,
                     const struct smtp_body *body, struct tx *next)
{
    struct smtp_conn *conn = t->c;
    struct smtp_result *res = t->res;
    tx_begin(t);
    int r = run_envelope(t);
    if (r == SMTP_OK || t->bad_reply.code != 0)
        r = judge_envelope(t);
    else
        res->status = SMTP_DELIVERY_FAILED;
    if (r == GO_ON) {
        int dot = 0, chained = 0;
        struct smtp__buf after;
        smtp__buf_init(&after, (size_t)1 << 20);
        int with = chain_lines(t, next, &after);
        r = smtp__write_message(conn, hdr, body,
                                smtp__has_cap(conn, SMTP__CAP_8BITMIME),
                                with ? &after : NULL, res, &dot, &chained);
        smtp__buf_free(&after);
        if (chained)
            next->written = 1;
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
        } else {
            smtp__result_take_reply(res, &fin);
            snprintf(res->command, sizeof res->command, "DATA");
            if (res->code >= 400) {
                res->status = SMTP_DELIVERY_FAILED;
                r = smtp__fail(res, SMTP_ERR_REPLY, "DATA",
                               "server refused the message");
            } else {
                res->status = SMTP_DELIVERY_SENT;
                res->kind = SMTP_OK;
                res->command[0] = '\0';
            }
        }
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
                      const struct smtp__buf *hdr,
                      const struct smtp_body *body,
                      const struct smtp_send_opts *sopts,
                      const struct scan *sc, struct smtp_result *res)
{
    for (int round = 0; round < 100 && !sc->streamed && conn->open &&
                        res->status == SMTP_DELIVERY_SENT; round++) {
        char **rest = NULL;
        size_t n = take_452(res, &rest);
        if (n == 0)
            return;
        struct smtp_result more;
        struct tx t;
        smtp_result_init(&more);
        tx_init(&t, conn, from, (const char *const *)rest, n, sopts, sc,
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
                       "received it; not resent", n);
        } else if (more.status != SMTP_DELIVERY_SENT) {
            /* that transaction delivered nothing: all of them failed, with
               the reply that ended it */
            for (size_t i = 0; i < n; i++) {
                struct smtp_reply why = { 0 };
                smtp__reply_copy(&why, &more.reply);
                if (why.code >= 200 && why.code < 300)
                    why.code = 0;          /* never list a failure as 2xx */
                record_rcpt(res, rest[i], &why);
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
    struct scan sc;
    struct smtp__buf hdr;
    char msgid[sizeof ((struct smtp_result *)0)->message_id];
    const char **to;            /* the distinct recipients, when the
                                   message named one twice; else NULL */
    struct tx t;
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
static int distinct_rcpts(const char *const *to, size_t *nto,
                          const char ***out)
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
    if (!conn->open) {
        res->status = SMTP_DELIVERY_FAILED;     /* nothing of it was sent */
        return smtp__fail(res, SMTP_ERR_CONN, "MAIL", "connection is closed");
    }
    if (!conn->greeted && smtp_conn_hello(conn, res) != SMTP_OK) {
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
    tx_init(&p->t, conn, m->from, p->to != NULL ? p->to : m->to, nto,
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
        drop_accepted(res);    /* the message reached nobody */
    if (res->status == SMTP_DELIVERY_SENT && res->nrejected > 0) {
        res->code = 700;
        res->status = SMTP_DELIVERY_PARTIAL;
        r = smtp__fail(res, SMTP_ERR_REJECTED, "RCPT",
                       "some recipients were rejected");
    }
    if (res->status != SMTP_DELIVERY_SENT && res->status != SMTP_DELIVERY_PARTIAL &&
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
    const struct smtp_message m = { from, to, nto, headers, nheaders, body,
                                 sopts };
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
    int ready = 0;              /* slot[i & 1] was prepared (as the next) */
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
            if (i + 1 < n && conn->open)
                next_failed = prepare(conn, &mails[i + 1], nx,
                                      results[i + 1]) != SMTP_OK;
            ready = i + 1 < n && conn->open && !next_failed;
            r = send_once(&cur->t, &cur->hdr, mails[i].body,
                          ready ? &nx->t : NULL);
            finish(conn, &mails[i], cur, results[i], r);
        }
        stop = told(done, ctx, i, results[i]);  /* i is theirs now */
        if (next_failed) {              /* refused before a byte was sent */
            i++;
            stop |= told(done, ctx, i, results[i]);
        }
        if (stop && ready && !nx->t.written) {
            prep_free(nx);              /* prepared, nothing sent */
            ready = 0;
        }
        if (stop && !ready)
            return i + 1;
        if (stop) {                     /* its envelope is out: finish it */
            i++;
            r = send_once(&nx->t, &nx->hdr, mails[i].body, NULL);
            finish(conn, &mails[i], nx, results[i], r);
            told(done, ctx, i, results[i]);
            return i + 1;
        }
    }
    return i;
}

/* Connects and greets with EHLO (and STARTTLS/AUTH as opts say). */
static struct smtp_conn *open_session(const char *host,
                                      const struct smtp_opts *opts,
                                      struct smtp_result *res)
{
    struct smtp_conn *c = smtp_connect(host, 0, opts, res);
    if (c == NULL)
        return NULL;
    if (smtp_conn_hello(c, res) != SMTP_OK) {
        smtp_conn_free(c);
        return NULL;
    }
    return c;
}

/* The seed's smtp-send-mail: a whole session for one message. */
int smtp_send_mail(const char *from, const char *const *to, size_t nto,
                   const struct smtp_header *headers, size_t nheaders,
                   const struct smtp_body *body, const char *host,
                   const struct smtp_opts *opts,
                   const struct smtp_send_opts *sopts,
                   struct smtp_result *res)
{
    int utf8 = 0;
    smtp_result_clear(res);
    /* Refuse bad envelopes before connecting at all. */
    if (envelope_check(from, to, nto, &utf8, res) != SMTP_OK) {
        res->status = SMTP_DELIVERY_FAILED;
        return smtp__settled(res, res->kind);
    }
    struct smtp_conn *c = open_session(host, opts, res);
    if (c == NULL) {
        res->status = SMTP_DELIVERY_FAILED;
        return res->kind;
    }
    int r = smtp_conn_send_mail(c, from, to, nto, headers, nheaders, body,
                                sopts, res);
    smtp_conn_quit(c);
    return r;
}

/* A query on its own connection: EHLO, the command, QUIT. */
static int query(const char *verb, const char *arg, const char *host,
                 const struct smtp_opts *opts, struct smtp_result *res)
{
    char cmd[600], why[160];
    smtp_result_clear(res);
    if (smtp__query_line(verb, arg, 1, cmd, sizeof cmd, why, sizeof why) < 0)
        return smtp__fail(res, SMTP_ERR_LOCAL, verb, "%s", why);
    struct smtp_conn *c = open_session(host, opts, res);
    if (c == NULL)
        return res->kind;
    smtp_result_clear(res);
    if (smtp__query_line(verb, arg, smtp__has_cap(c, SMTP__CAP_SMTPUTF8), cmd,
                         sizeof cmd, why, sizeof why) < 0) {
        smtp_conn_quit(c);
        return smtp__fail(res, SMTP_ERR_LOCAL, verb, "%s", why);
    }
    int r = smtp__command(c, cmd, smtp__timeout(c, SMTP__T_COMMAND), res);
    smtp_conn_quit(c);
    if (r != SMTP_OK)
        return r;
    if (res->code >= 400)
        return smtp__fail(res, SMTP_ERR_REPLY, verb, "server refused %s", verb);
    res->command[0] = '\0';
    return SMTP_OK;
}

int smtp_expand(const char *name, const char *host,
                const struct smtp_opts *opts, struct smtp_result *res)
{
    return smtp__settled(res, query("EXPN", name, host, opts, res));
}

int smtp_verify(const char *name, const char *host,
                const struct smtp_opts *opts, struct smtp_result *res)
{
    return smtp__settled(res, query("VRFY", name, host, opts, res));
}

int smtp_get_help(const char *host, const char *details,
                  const struct smtp_opts *opts, struct smtp_result *res)
{
    return smtp__settled(res, query("HELP", details, host, opts, res));
}
