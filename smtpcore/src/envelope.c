/*
 * envelope.c - the envelope of one transaction: [RSET] MAIL, one RCPT
 * each, DATA.  With PIPELINING (RFC 2920) the commands go in one write per
 * group of at most SMTP__PIPE_GROUP commands and the replies are matched in
 * order; without it, one at a time.  Nobody accepted: no DATA (RSET
 * instead, or, when DATA was already pipelined and got 354, a lone dot).
 * Public (to smtpcore): smtp__tx_init, smtp__tx_begin, smtp__tx_lines,
 * smtp__tx_envelope, smtp__record_rcpt.
 * Errors: the outcome's kind, with res filled; a 421 or a refused RSET ends
 * the transaction.
 * Threads: as the connection (one thread at a time).
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum step { STEP_RSET, STEP_MAIL, STEP_RCPT, STEP_DATA };
static const char *const step_verb[] = { "RSET", "MAIL", "RCPT", "DATA" };

/* Which step command k is, and for RCPT the recipient index. */
static enum step step_of(const struct smtp__tx *t, size_t k, size_t *rcpt)
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
static int cmd_line(const struct smtp__tx *t, size_t k, struct smtp__buf *out)
{
    size_t i = 0;
    const struct smtp_conn *c = t->c;
    const struct smtp_send_opts *so = t->so;
    int dsn = smtp__has_cap(c, SMTP__CAP_DSN);
    int r = 0;
    switch (step_of(t, k, &i)) {
    case STEP_RSET: return smtp__buf_append(out, "RSET\r\n", 6);
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
            r |= smtp__buf_appendf(out, " NOTIFY=%s ORCPT=rfc822;",
                                   so->dsn_notify);
            r |= smtp__xtext(out, t->to[i]);
        }
        break;
    case STEP_DATA: return smtp__buf_append(out, "DATA\r\n", 6);
    }
    return r | smtp__buf_append(out, "\r\n", 2);
}

/* Adds a recipient to the accepted or the rejected list. */
int smtp__record_rcpt(struct smtp_result *res, const char *rcpt,
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
    struct smtp_rcpt_failure *f = realloc(res->rejected,
                                          (res->nrejected + 1) * sizeof *f);
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
static void on_reply(struct smtp__tx *t, size_t k, struct smtp_reply *reply)
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
        t->mail_reply = *reply; /* moved */
        memset(reply, 0, sizeof *reply);
    } else if (s == STEP_DATA) {
        t->data_reply = *reply; /* moved */
        memset(reply, 0, sizeof *reply);
    } else if (s == STEP_RCPT &&
               smtp__record_rcpt(t->res, t->to[i], reply) < 0) {
        t->stop = 1;
    }
    smtp_reply_clear(reply); /* what was not moved (RSET, accepted RCPT) */
}

/* Timeout of step k's reply. */
static int step_timeout(const struct smtp__tx *t, size_t k)
{
    size_t i;
    return step_of(t, k, &i) == STEP_DATA
               ? smtp__timeout(t->c, SMTP__T_DATA_INIT)
               : smtp__timeout(t->c, SMTP__T_COMMAND);
}

/* Appends the command lines [from, to) to out; -1 when out of memory. */
int smtp__tx_lines(const struct smtp__tx *t, size_t from, size_t to,
                   struct smtp__buf *out)
{
    for (size_t k = from; k < to; k++)
        if (cmd_line(t, k, out) < 0)
            return -1;
    return 0;
}

/* Reads the replies of commands [from, to), already written. */
static int group_read(struct smtp__tx *t, size_t from, size_t to)
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
static int run_group(struct smtp__tx *t, size_t from, size_t to)
{
    struct smtp__buf out;
    smtp__buf_init(&out, (size_t)1 << 20);
    if (smtp__tx_lines(t, from, to, &out) < 0) {
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
static int run_envelope(struct smtp__tx *t)
{
    if (t->written)
        return group_read(t, 0, t->ncmds);
    if (t->pipelined) {
        for (size_t k = 0; k < t->ncmds && !t->stop; k += SMTP__PIPE_GROUP) {
            size_t end = k + SMTP__PIPE_GROUP < t->ncmds ? k + SMTP__PIPE_GROUP
                                                         : t->ncmds;
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
            break; /* DATA waits for judge_envelope */
        int r = run_group(t, k, k + 1);
        if (r != SMTP_OK)
            return r;
    }
    return SMTP_OK;
}

/* After a pipelined DATA got 354 that must not be used: a lone dot. */
static void lone_dot(struct smtp__tx *t)
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

/* A 421 (any step) or a refused RSET ends the transaction. */
static int judge_bad(struct smtp__tx *t)
{
    struct smtp_result *res = t->res;
    if (t->bad_reply.code != 421)
        smtp__conn_close(t->c); /* RSET refused: state unknown */
    smtp__result_take_reply(res, &t->bad_reply);
    res->status = SMTP_DELIVERY_FAILED;
    return smtp__fail(res, SMTP_ERR_REPLY, t->bad_verb,
                      "server ended or refused the transaction");
}

/* Judges the envelope; returns SMTP__GO_ON when the message goes on to
   the body, else the outcome's kind. */
static int judge_envelope(struct smtp__tx *t)
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
            struct smtp_result tmp; /* no DATA: RSET instead */
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
        return smtp__fail(res, SMTP_ERR_REPLY, "DATA", "server refused DATA");
    }
    return SMTP__GO_ON;
}

/* Sets up the transaction of to[0..nto) on conn; nothing is sent yet. */
void smtp__tx_init(struct smtp__tx *t, struct smtp_conn *conn, const char *from,
                   const char *const *to, size_t nto,
                   const struct smtp_send_opts *sopts,
                   const struct smtp__scan *sc, struct smtp_result *res)
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
void smtp__tx_begin(struct smtp__tx *t)
{
    if (t->begun)
        return;
    t->begun = 1;
    t->rset = t->c->dirty;
    t->ncmds = (t->rset ? 1u : 0u) + 2 + t->nto;
    t->c->dirty = 1;
    t->c->messages++;
}

/* Begins t, runs its envelope and judges it: SMTP__GO_ON, or the outcome's
   kind with res->status set. */
int smtp__tx_envelope(struct smtp__tx *t)
{
    smtp__tx_begin(t);
    int r = run_envelope(t);
    if (r == SMTP_OK || t->bad_reply.code != 0)
        return judge_envelope(t);
    t->res->status = SMTP_DELIVERY_FAILED;
    return r;
}
