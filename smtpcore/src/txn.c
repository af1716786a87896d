/*
 * txn.c - transactions as values (one constructor per SMTP command) and
 * the seed's runner, smtp_transactions / smtp_transactions_no_close.
 *
 * Runner rules, per transaction in order: a 221 or 421 reply (the server
 * closed) stops the run with that code and text; any 4xx/5xx stops it with
 * that code and text; the last one's reply is the result; other replies are
 * dropped.  smtp_transactions then closes the connection (QUIT unless it is
 * closed already).  Arguments are checked when the transaction runs: a bad
 * one is SMTP_ERR_LOCAL and nothing of it is sent.
 * Also the queries on their own connection (smtp_expand, smtp_verify,
 * smtp_get_help: EHLO, the command, QUIT) and smtp__open_session.
 * Transactions are immutable once built and may be shared between threads;
 * the connection they run on may not.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

enum txn_type {
    T_HELO,
    T_EHLO,
    T_MAIL,
    T_RCPT,
    T_DATA,
    T_SEND,
    T_SOML,
    T_SAML,
    T_VRFY,
    T_EXPN,
    T_HELP,
    T_RSET,
    T_NOOP,
    T_TURN,
    T_QUIT
};

/* Command text and whether the argument is a mailbox, by type. */
static const struct {
    const char *prefix; /* "MAIL FROM:<" ... */
    const char *suffix; /* ">" for paths */
    int path;           /* 1: checked as a mailbox; 2: may be empty */
} txn_kinds[] = {
    [T_HELO] = { "HELO ", "", 0 },        [T_EHLO] = { "EHLO ", "", 0 },
    [T_MAIL] = { "MAIL FROM:<", ">", 2 }, [T_RCPT] = { "RCPT TO:<", ">", 1 },
    [T_DATA] = { "DATA", "", 0 },         [T_SEND] = { "SEND FROM:<", ">", 2 },
    [T_SOML] = { "SOML FROM:<", ">", 2 }, [T_SAML] = { "SAML FROM:<", ">", 2 },
    [T_VRFY] = { "VRFY ", "", 0 },        [T_EXPN] = { "EXPN ", "", 0 },
    [T_HELP] = { "HELP", "", 0 },         [T_RSET] = { "RSET", "", 0 },
    [T_NOOP] = { "NOOP", "", 0 },         [T_TURN] = { "TURN", "", 0 },
    [T_QUIT] = { "QUIT", "", 0 },
};

struct smtp_txn {
    enum txn_type type;
    char *arg;                         /* owned; NULL when none */
    const struct smtp_header *headers; /* T_DATA, borrowed */
    size_t nheaders;
    const struct smtp_body *body; /* T_DATA, borrowed */
};

/* Allocates a transaction with a copy of arg. */
static struct smtp_txn *txn_new(enum txn_type type, const char *arg)
{
    struct smtp_txn *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->type = type;
    if (arg != NULL && (t->arg = strdup(arg)) == NULL) {
        free(t);
        return NULL;
    }
    return t;
}

struct smtp_txn *smtp_helo(const char *host)
{
    return txn_new(T_HELO, host ? host : "localhost");
}
struct smtp_txn *smtp_ehlo(const char *host)
{
    return txn_new(T_EHLO, host ? host : "localhost");
}
struct smtp_txn *smtp_mail(const char *addr)
{
    return txn_new(T_MAIL, addr ? addr : "");
}
struct smtp_txn *smtp_rcpt(const char *addr)
{
    return txn_new(T_RCPT, addr ? addr : "");
}
struct smtp_txn *smtp_send(const char *addr)
{
    return txn_new(T_SEND, addr ? addr : "");
}
struct smtp_txn *smtp_soml(const char *addr)
{
    return txn_new(T_SOML, addr ? addr : "");
}
struct smtp_txn *smtp_saml(const char *addr)
{
    return txn_new(T_SAML, addr ? addr : "");
}
struct smtp_txn *smtp_vrfy(const char *user)
{
    return txn_new(T_VRFY, user ? user : "");
}
struct smtp_txn *smtp_expn(const char *list)
{
    return txn_new(T_EXPN, list ? list : "");
}
struct smtp_txn *smtp_help(const char *details)
{
    return txn_new(T_HELP, details);
}
struct smtp_txn *smtp_rset(void)
{
    return txn_new(T_RSET, NULL);
}
struct smtp_txn *smtp_noop(void)
{
    return txn_new(T_NOOP, NULL);
}
struct smtp_txn *smtp_turn(void)
{
    return txn_new(T_TURN, NULL);
}
struct smtp_txn *smtp_quit(void)
{
    return txn_new(T_QUIT, NULL);
}

/* DATA with borrowed headers and body. */
struct smtp_txn *smtp_data(const struct smtp_header *headers, size_t nheaders,
                           const struct smtp_body *body)
{
    struct smtp_txn *t = txn_new(T_DATA, NULL);
    if (t != NULL) {
        t->headers = headers;
        t->nheaders = nheaders;
        t->body = body;
    }
    return t;
}

void smtp_txn_free(struct smtp_txn *txn)
{
    if (txn == NULL)
        return;
    free(txn->arg);
    free(txn);
}

/* Checks a free-text argument (HELO name, VRFY user, ...). */
static int arg_ok(const char *arg, char *why, size_t whylen)
{
    size_t n = strlen(arg);
    if (n > 500) {
        snprintf(why, whylen, "argument longer than 500 octets");
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)arg[i] < 32 || arg[i] == 127) {
            snprintf(why, whylen,
                     "control character (CR, LF, ...) in argument");
            return -1;
        }
    return 0;
}

/* DATA: 354, then the message, then the final reply. */
static int run_data(struct smtp_conn *c, const struct smtp_txn *t,
                    struct smtp_result *res)
{
    int r = smtp__command(c, "DATA", smtp__timeout(c, SMTP__T_DATA_INIT), res);
    if (r != SMTP_OK || res->code != 354)
        return r;
    int dot = 0;
    char why[200];
    struct smtp__buf hdr;
    smtp__buf_init(&hdr, (size_t)1 << 20);
    if (t->nheaders > 0 &&
        smtp__headers_write(t->headers, t->nheaders, NULL, "localhost", &hdr,
                            res->message_id, why, sizeof why) < 0) {
        smtp__buf_free(&hdr);
        smtp__conn_close(c); /* after 354: no final dot, nothing sent */
        return smtp__fail(res, SMTP_ERR_LOCAL, "DATA", "%s", why);
    }
    r = smtp__write_message(c, &hdr, t->body, 1, NULL, res, &dot, NULL);
    smtp__buf_free(&hdr);
    struct smtp_reply fin = { 0 };
    if (r == SMTP_OK)
        r = smtp__read_reply(c, smtp__timeout(c, SMTP__T_DATA_TERM), "DATA",
                             &fin, res);
    if (r != SMTP_OK) {
        res->status = dot ? SMTP_DELIVERY_UNKNOWN : SMTP_DELIVERY_FAILED;
        return r;
    }
    smtp__result_take_reply(res, &fin);
    return SMTP_OK;
}

/* Runs one transaction; its reply lands in res->reply and res->code. */
static int run_one(struct smtp_conn *c, const struct smtp_txn *t,
                   struct smtp_result *res)
{
    char why[160];
    const char *verb_end = strpbrk(txn_kinds[t->type].prefix, " ");
    char verb[8];
    size_t vl = verb_end ? (size_t)(verb_end - txn_kinds[t->type].prefix)
                         : strlen(txn_kinds[t->type].prefix);
    snprintf(verb, sizeof verb, "%.*s", (int)vl, txn_kinds[t->type].prefix);
    smtp_result_clear(res);
    if (!smtp__is_open(c))
        return smtp__fail(res, SMTP_ERR_CONN, verb, "connection is closed");
    if (t->type == T_DATA)
        return run_data(c, t, res);
    if (t->arg != NULL) {
        int path = txn_kinds[t->type].path;
        if (path ? smtp_addr_check(t->arg, path == 2, why, sizeof why) < 0
                 : arg_ok(t->arg, why, sizeof why) < 0)
            return smtp__fail(res, SMTP_ERR_LOCAL, verb, "%s", why);
    }
    if (t->type == T_EHLO)
        return smtp__ehlo(c, t->arg, res);
    char cmd[SMTP_MAX_PATH + 600];
    if (t->type == T_VRFY || t->type == T_EXPN || t->type == T_HELP) {
        if (smtp__query_line(verb, t->arg, smtp__has_cap(c, SMTP__CAP_SMTPUTF8),
                             cmd, sizeof cmd, why, sizeof why) < 0)
            return smtp__fail(res, SMTP_ERR_LOCAL, verb, "%s", why);
    } else {
        snprintf(cmd, sizeof cmd, "%s%s%s", txn_kinds[t->type].prefix,
                 t->arg ? t->arg : "", txn_kinds[t->type].suffix);
    }
    int r = smtp__command(c, cmd, smtp__timeout(c, SMTP__T_COMMAND), res);
    if (r == SMTP_OK && t->type == T_HELO)
        smtp__conn_forget_ext(c);
    if (r == SMTP_OK && (t->type == T_HELO || t->type == T_EHLO))
        smtp__set_state(c, res->code < 400 ? SMTP_CONN_READY
                                           : SMTP_CONN_CONNECTED);
    if (r == SMTP_OK && t->type == T_MAIL) {
        c->messages++;
        c->dirty = 1;
    }
    if (t->type == T_QUIT)
        smtp__conn_close(c);
    return r;
}

/* The runner shared by both forms. */
static int run_all(struct smtp_conn *conn, struct smtp_txn *const *txns,
                   size_t n, int close_after, struct smtp_result *res)
{
    int r = SMTP_OK;
    smtp_result_clear(res);
    for (size_t i = 0; i < n; i++) {
        if (txns[i] == NULL) {
            r = smtp__fail(res, SMTP_ERR_LOCAL, "",
                           "transaction %zu is NULL "
                           "(out of memory when built)",
                           i + 1);
            break;
        }
        r = run_one(conn, txns[i], res);
        if (r != SMTP_OK)
            break;
        if (res->code == 221 || res->code == 421 || res->code >= 400) {
            if (res->code >= 400)
                r = smtp__fail(res, SMTP_ERR_REPLY, res->command,
                               "server answered %d", res->code);
            break;
        }
    }
    if (r == SMTP_OK)
        res->command[0] = '\0';
    if (close_after && smtp__is_open(conn)) {
        struct smtp_result tmp;
        smtp_result_init(&tmp);
        smtp__command(conn, "QUIT", 5000, &tmp);
        smtp_result_clear(&tmp);
        smtp__conn_close(conn);
    }
    return smtp__settled(res, r);
}

int smtp_transactionsv(struct smtp_conn *conn, struct smtp_txn *const *txns,
                       size_t ntxns, struct smtp_result *res)
{
    return run_all(conn, txns, ntxns, 1, res);
}

int smtp_transactionsv_no_close(struct smtp_conn *conn,
                                struct smtp_txn *const *txns, size_t ntxns,
                                struct smtp_result *res)
{
    return run_all(conn, txns, ntxns, 0, res);
}

/* Collects a NULL-terminated argument list; at most 256 transactions. */
static size_t collect(va_list ap, struct smtp_txn **out, size_t max)
{
    size_t n = 0;
    struct smtp_txn *t;
    while ((t = va_arg(ap, struct smtp_txn *)) != NULL && n < max)
        out[n++] = t;
    return n;
}

int smtp_transactions(struct smtp_conn *conn, struct smtp_result *res, ...)
{
    struct smtp_txn *v[256];
    va_list ap;
    va_start(ap, res);
    size_t n = collect(ap, v, 256);
    va_end(ap);
    return run_all(conn, v, n, 1, res);
}

int smtp_transactions_no_close(struct smtp_conn *conn, struct smtp_result *res,
                               ...)
{
    struct smtp_txn *v[256];
    va_list ap;
    va_start(ap, res);
    size_t n = collect(ap, v, 256);
    va_end(ap);
    return run_all(conn, v, n, 0, res);
}

/* ---- Sessions and the queries on their own connection ---- */

/* Connects and greets with EHLO (and STARTTLS/AUTH as opts say). */
struct smtp_conn *smtp__open_session(const char *host,
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

/* A query on its own connection: EHLO, the command, QUIT. */
static int query(const char *verb, const char *arg, const char *host,
                 const struct smtp_opts *opts, struct smtp_result *res)
{
    char cmd[600], why[160];
    smtp_result_clear(res);
    if (smtp__query_line(verb, arg, 1, cmd, sizeof cmd, why, sizeof why) < 0)
        return smtp__fail(res, SMTP_ERR_LOCAL, verb, "%s", why);
    struct smtp_conn *c = smtp__open_session(host, opts, res);
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

/* EXPN name on its own session. */
int smtp_expand(const char *name, const char *host,
                const struct smtp_opts *opts, struct smtp_result *res)
{
    return smtp__settled(res, query("EXPN", name, host, opts, res));
}

/* VRFY name on its own session. */
int smtp_verify(const char *name, const char *host,
                const struct smtp_opts *opts, struct smtp_result *res)
{
    return smtp__settled(res, query("VRFY", name, host, opts, res));
}

/* HELP [details] on its own session. */
int smtp_get_help(const char *host, const char *details,
                  const struct smtp_opts *opts, struct smtp_result *res)
{
    return smtp__settled(res, query("HELP", details, host, opts, res));
}
