/*
 * conn.c - SMTP connections: connect, greeting, commands and replies,
 * EHLO/HELO and the capability list, STARTTLS, liveness, QUIT.
 *
 * Public: smtp_connect, smtp_conn_hello, smtp_conn_free, smtp_conn_quit,
 * smtp_conn_is_open, smtp_conn_check_idle, smtp_conn_has_ext,
 * smtp_conn_ext_param, smtp_conn_is_tls, smtp_conn_messages.
 * Errors: filled into the caller's struct smtp_result (kind, code, reply,
 * errno, the command in progress and a sentence), settled with
 * smtp_result_settle.  A transport error or a 421 closes the socket: the
 * handle then reports !smtp_conn_is_open.  A refused session (4xx/5xx
 * greeting, EHLO and HELO refused) still ends with QUIT (RFC 5321 3.1,
 * 4.1.1.10), its 221 awaited for at most QUIT_MS.
 * Replies are read in lock-step whenever one reply is awaited (every
 * command when PIPELINING is not in effect, and always the greeting,
 * EHLO, STARTTLS, AUTH and the queries): bytes beyond that reply are a
 * protocol error, never taken as the answer to a later command (reply
 * injection, the kind of curl's CVE-2021-22947).
 * Threads: a connection belongs to one thread at a time.
 */
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

enum {
    DEF_CONNECT = 30000,
    DEF_GREETING = 300000,
    DEF_COMMAND = 300000,
    DEF_DATA_INIT = 120000,
    DEF_DATA_BLOCK = 180000,
    DEF_DATA_TERM = 600000
};
enum { QUIT_MS = 2000 }; /* the most a QUIT's 221 is waited for */

static int conn_read(struct smtp_conn *c, int timeout, const char *command,
                     struct smtp_reply *reply, struct smtp_result *res,
                     int strict);
static void conn_abandon(struct smtp_conn *c);

/* The timeout of a phase, in ms, with RFC 5321 4.5.3.2 defaults. */
int smtp__timeout(const struct smtp_conn *c, int which)
{
    const struct smtp_opts *o = &c->opts;
    switch (which) {
    case SMTP__T_GREETING:
        return o->greeting_timeout_ms > 0 ? o->greeting_timeout_ms
                                          : DEF_GREETING;
    case SMTP__T_DATA_INIT:
        return o->data_init_timeout_ms > 0 ? o->data_init_timeout_ms
                                           : DEF_DATA_INIT;
    case SMTP__T_DATA_BLOCK:
        return o->data_block_timeout_ms > 0 ? o->data_block_timeout_ms
                                            : DEF_DATA_BLOCK;
    case SMTP__T_DATA_TERM:
        return o->data_term_timeout_ms > 0 ? o->data_term_timeout_ms
                                           : DEF_DATA_TERM;
    default:
        return o->command_timeout_ms > 0 ? o->command_timeout_ms : DEF_COMMAND;
    }
}

/* Splits "name", "name:port", "[v6]:port" or a bare v6 literal. */
static int parse_host(const char *host, int port, char *name, size_t namelen,
                      int *port_out, struct smtp_result *res)
{
    const char *h = (host == NULL || host[0] == '\0') ? "localhost" : host;
    const char *portstr = NULL;
    size_t n;
    if (h[0] == '[') {
        const char *end = strchr(h, ']');
        if (end == NULL || (end[1] != '\0' && end[1] != ':'))
            return smtp__fail(res, SMTP_ERR_LOCAL, "connect",
                              "bad host '%s': expected [address]:port", h);
        n = (size_t)(end - h - 1);
        h++;
        portstr = end[1] == ':' ? end + 2 : NULL;
    } else {
        const char *colon = strchr(h, ':');
        if (colon != NULL && strchr(colon + 1, ':') == NULL) {
            n = (size_t)(colon - h);
            portstr = colon + 1;
        } else {
            n = strlen(h);
        }
    }
    if (n == 0 || n >= namelen)
        return smtp__fail(res, SMTP_ERR_LOCAL, "connect", "bad host name");
    memcpy(name, h, n);
    name[n] = '\0';
    *port_out = SMTP_DEFAULT_PORT;
    if (portstr != NULL) {
        char *end;
        errno = 0;
        long p = strtol(portstr, &end, 10);
        if (errno != 0 || end == portstr || *end != '\0' || p < 1 || p > 65535)
            return smtp__fail(res, SMTP_ERR_LOCAL, "connect",
                              "bad port in host '%s'", host);
        *port_out = (int)p;
    }
    if (port > 0)
        *port_out = port;
    if (port < 0 || port > 65535)
        return smtp__fail(res, SMTP_ERR_LOCAL, "connect", "bad port %d", port);
    return SMTP_OK;
}

/* Non-blocking connect to one address before deadline: fd or -1/errno. */
static int connect_one(const struct addrinfo *ai, int64_t deadline, int *err)
{
    int fd = socket(ai->ai_family,
                    ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
    if (fd < 0) {
        *err = errno;
        return -1;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
        *err = errno;
        close(fd);
        return -1;
    }
    int w = smtp__io_wait_fd(fd, 1, deadline);
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (w <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0 ||
        soerr != 0) {
        *err = w == 0 ? ETIMEDOUT : (soerr != 0 ? soerr : errno);
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* Resolves and connects, trying each address in turn. */
static int tcp_connect(const char *name, int port, int timeout_ms,
                       struct smtp_result *res)
{
    struct addrinfo hints, *list = NULL;
    char portstr[16];
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(portstr, sizeof portstr, "%d", port);
    int r = getaddrinfo(name, portstr, &hints, &list);
    if (r != 0) {
        smtp__fail(res, SMTP_ERR_CONN, "connect", "cannot resolve %s: %s", name,
                   gai_strerror(r));
        return -1;
    }
    int64_t deadline = smtp__now_ms() + timeout_ms;
    int fd = -1, err = 0;
    for (struct addrinfo *ai = list; ai != NULL && fd < 0; ai = ai->ai_next)
        fd = connect_one(ai, deadline, &err);
    freeaddrinfo(list);
    if (fd < 0) {
        res->sys_errno = err;
        smtp__fail(res, err == ETIMEDOUT ? SMTP_ERR_TIMEOUT : SMTP_ERR_CONN,
                   "connect", "cannot connect to %s port %d: %s", name, port,
                   strerror(err));
    }
    return fd;
}

/* Copies the caller's options, duplicating every string. */
static int opts_copy(struct smtp_opts *dst, const struct smtp_opts *src)
{
    static const struct smtp_opts zero;
    *dst = src != NULL ? *src : zero;
    const char **s[] = { &dst->helo_name,       &dst->ca_file,
                         &dst->cert_file,       &dst->key_file,
                         &dst->tls_server_name, &dst->auth_user,
                         &dst->auth_pass,       &dst->auth_mech };
    int bad = 0;
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++) {
        if (*s[i] == NULL)
            continue;
        *s[i] = strdup(*s[i]);
        bad |= *s[i] == NULL;
    }
    return bad ? -1 : 0;
}

/* Frees the option strings (cast: they are our own copies). */
static void opts_free(struct smtp_opts *o)
{
    const char *s[] = { o->helo_name, o->ca_file,         o->cert_file,
                        o->key_file,  o->tls_server_name, o->auth_user,
                        o->auth_mech };
    for (size_t i = 0; i < sizeof s / sizeof s[0]; i++)
        free((void *)(uintptr_t)s[i]);
    if (o->auth_pass != NULL) {
        char *p = (char *)(uintptr_t)o->auth_pass;
        explicit_bzero(p, strlen(p));
        free(p);
    }
}

/* TLS options of this connection (verify the given host unless told). */
static void tls_opts(const struct smtp_conn *c, struct smtp__tls_opts *t)
{
    t->server_name = c->opts.tls_server_name ? c->opts.tls_server_name
                                             : c->host;
    t->ca_file = c->opts.ca_file;
    t->cert_file = c->opts.cert_file;
    t->key_file = c->opts.key_file;
    t->insecure = c->opts.insecure_skip_verify;
}

/* Opens a connection and reads the greeting; NULL with res filled. */
static struct smtp_conn *conn_open(const char *host, int port,
                                   const struct smtp_opts *opts,
                                   struct smtp_result *res)
{
    char name[SMTP_MAX_DOMAIN + 1];
    int realport = SMTP_DEFAULT_PORT;
    smtp_result_clear(res);
    if (parse_host(host, port, name, sizeof name, &realport, res) != SMTP_OK)
        return NULL;
    struct smtp_conn *c = calloc(1, sizeof *c);
    if (c == NULL || opts_copy(&c->opts, opts) < 0 ||
        (c->host = strdup(name)) == NULL) {
        smtp__fail(res, SMTP_ERR_LOCAL, "connect", "out of memory");
        smtp_conn_free(c);
        return NULL;
    }
    int ctimeout = c->opts.connect_timeout_ms > 0 ? c->opts.connect_timeout_ms
                                                  : DEF_CONNECT;
    c->io.fd = tcp_connect(name, realport, ctimeout, res);
    if (c->io.fd < 0) {
        smtp_conn_free(c);
        return NULL;
    }
    smtp__set_state(c, SMTP_CONN_GREETING);
    if (c->opts.tls == SMTP_TLS_IMPLICIT) {
        char why[200];
        struct smtp__tls_opts t;
        tls_opts(c, &t);
        if (smtp__tls_start(&c->io, &t, smtp__now_ms() + ctimeout, why,
                            sizeof why) < 0) {
            smtp__fail(res, SMTP_ERR_TLS, "connect", "%s", why);
            smtp_conn_free(c);
            return NULL;
        }
    }
    struct smtp_reply greet = { 0 };
    if (conn_read(c, smtp__timeout(c, SMTP__T_GREETING), "greeting", &greet,
                  res, 1) != SMTP_OK) {
        smtp_conn_free(c);
        return NULL;
    }
    smtp__result_take_reply(res, &greet);
    if (res->code != 220) {
        smtp__fail(res, SMTP_ERR_REPLY, "greeting",
                   "server refused the session");
        conn_abandon(c); /* QUIT, unless it closed (421) */
        smtp_conn_free(c);
        return NULL;
    }
    smtp__set_state(c, SMTP_CONN_CONNECTED);
    return c;
}

/* Opens a connection and reads the greeting. */
struct smtp_conn *smtp_connect(const char *host, int port,
                               const struct smtp_opts *opts,
                               struct smtp_result *res)
{
    struct smtp_conn *c = conn_open(host, port, opts, res);
    smtp_result_settle(res);
    return c;
}

/* Closes the socket; the handle stays until smtp_conn_free. */
void smtp__conn_close(struct smtp_conn *c)
{
    smtp__io_close(&c->io);
    smtp__set_state(c, SMTP_CONN_CLOSED);
}

/* Frees the capability list. */
void smtp__conn_forget_ext(struct smtp_conn *c)
{
    for (size_t i = 0; i < c->next; i++)
        free(c->ext[i]);
    free(c->ext);
    c->ext = NULL;
    c->next = 0;
    c->caps = 0;
    c->esmtp = 0;
}

/* Frees a connection without QUIT. */
void smtp_conn_free(struct smtp_conn *conn)
{
    if (conn == NULL)
        return;
    if (smtp__is_open(conn) || conn->io.tls != NULL || conn->io.cred != NULL)
        smtp__conn_close(conn);
    smtp__conn_forget_ext(conn);
    opts_free(&conn->opts);
    free(conn->host);
    free(conn);
}

/* 1 when PIPELINING is not in effect: every reply read is the only one
   awaited. */
static int conn_lockstep(const struct smtp_conn *c)
{
    return c->opts.no_pipelining || !smtp__has_cap(c, SMTP__CAP_PIPELINING);
}

/* Reads a complete reply; in lock-step when PIPELINING is not in effect. */
int smtp__read_reply(struct smtp_conn *c, int timeout, const char *command,
                     struct smtp_reply *reply, struct smtp_result *res)
{
    return conn_read(c, timeout, command, reply, res, conn_lockstep(c));
}

/* Reads the one reply awaited: bytes beyond it are a protocol error. */
int smtp__read_reply_one(struct smtp_conn *c, int timeout, const char *command,
                         struct smtp_reply *reply, struct smtp_result *res)
{
    return conn_read(c, timeout, command, reply, res, 1);
}

/* After a complete reply: a reply whose code changed mid-reply is a
   protocol error unless its last code refuses (then the server's words
   stand, RFC 5321 4.2: the last line decides); with strict, bytes beyond
   the reply are one too.  SMTP_OK, or the error with c closed. */
static int conn_read_end(struct smtp_conn *c, const char *command,
                         struct smtp_reply *reply, struct smtp_result *res,
                         int strict, const char *mixed)
{
    if (mixed != NULL && reply->code < 400) {
        smtp__conn_close(c);
        smtp__result_take_reply(res, reply); /* the server's words */
        return smtp__fail(res, SMTP_ERR_PROTO, command, "%s (%s)", mixed,
                          command);
    }
    if (strict && reply->code != 221 && reply->code != 421 &&
        smtp__io_unasked(&c->io)) {
        int code = reply->code;
        smtp_reply_clear(reply);
        smtp__conn_close(c);
        return smtp__fail(res, SMTP_ERR_PROTO, command,
                          "unexpected bytes after the %d reply to %s: more "
                          "than the one reply awaited (reply injection?)",
                          code, command);
    }
    return SMTP_OK;
}

/* Reads a complete reply, line by line, into reply (see conn_read_end). */
static int conn_read(struct smtp_conn *c, int timeout, const char *command,
                     struct smtp_reply *reply, struct smtp_result *res,
                     int strict)
{
    char line[SMTP_MAX_REPLY_LINE + 1];
    int64_t deadline = smtp__now_ms() + timeout;
    size_t bytes = 0;
    char why[160], mixed[160];
    int changed = 0;
    smtp_reply_clear(reply);
    if (!smtp__is_open(c))
        return smtp__fail(res, SMTP_ERR_CONN, command, "connection is closed");
    for (;;) {
        size_t len = 0;
        int err = 0;
        const char *whyio = NULL;
        int r = smtp__io_read_line(&c->io, line, &len, deadline, &err, &whyio);
        if (r == SMTP_OK)
            smtp__trace_received(c, line, len);
        if (r != SMTP_OK) {
            smtp_reply_clear(reply);
            res->sys_errno = err;
            smtp__conn_close(c);
            return smtp__fail(res, r, command, "%s (%s)", whyio, command);
        }
        struct smtp__line ln;
        if (smtp__reply_line_parse(line, len, &ln) < 0) {
            smtp_reply_clear(reply);
            smtp__conn_close(c);
            return smtp__fail(res, SMTP_ERR_PROTO, command,
                              "malformed reply line (%s)", command);
        }
        int a = smtp__reply_add(reply, &ln, &bytes, why, sizeof why);
        if (a < 0) {
            smtp_reply_clear(reply);
            smtp__conn_close(c);
            return smtp__fail(res, SMTP_ERR_PROTO, command, "%s (%s)", why,
                              command);
        }
        if (a > 0 && !changed) {
            changed = 1;
            memcpy(mixed, why, sizeof mixed);
        }
        if (!ln.more)
            break;
    }
    int r = conn_read_end(c, command, reply, res, strict,
                          changed ? mixed : NULL);
    if (r == SMTP_OK && (reply->code == 421 || reply->code == 221))
        smtp__conn_close(c);
    return r;
}

/* Writes bytes, closing the connection on failure. */
int smtp__send_raw(struct smtp_conn *c, const char *p, size_t n, int timeout,
                   const char *command, struct smtp_result *res)
{
    return smtp__send_raw_n(c, p, n, timeout, command, res, NULL);
}

/* Writes bytes, counting them into *done (may be NULL); closes the
   connection on failure. */
int smtp__send_raw_n(struct smtp_conn *c, const char *p, size_t n, int timeout,
                     const char *command, struct smtp_result *res, size_t *done)
{
    int err = 0;
    if (done != NULL)
        *done = 0;
    if (!smtp__is_open(c))
        return smtp__fail(res, SMTP_ERR_CONN, command, "connection is closed");
    smtp__trace_sent(c, p, n);
    int r = smtp__io_write(&c->io, p, n, smtp__now_ms() + timeout, &err, done);
    if (r != SMTP_OK) {
        res->sys_errno = err;
        smtp__conn_close(c);
        return smtp__fail(
            res, r, command, "%s while sending %s",
            r == SMTP_ERR_TIMEOUT ? "timed out" : "connection lost", command);
    }
    return SMTP_OK;
}

/* The command's verb, for result->command ("MAIL", "RCPT", ...). */
static void verb_of(const char *cmd, char out[16])
{
    size_t i = 0;
    /* cppcheck-suppress arrayIndexOutOfBoundsCond ; cmd ends at its NUL */
    while (i < 15 && cmd[i] != '\0' && cmd[i] != ' ') {
        /* cppcheck-suppress arrayIndexOutOfBoundsCond */
        out[i] = cmd[i];
        i++;
    }
    out[i] = '\0';
}

/* Sends one command and reads its reply into res->reply. */
int smtp__command(struct smtp_conn *c, const char *cmd, int timeout,
                  struct smtp_result *res)
{
    char verb[16];
    char line[SMTP_MAX_PATH * 2 + 600];
    verb_of(cmd, verb);
    int n = snprintf(line, sizeof line, "%s\r\n", cmd);
    if (n < 0 || (size_t)n >= sizeof line)
        return smtp__fail(res, SMTP_ERR_LOCAL, verb, "command line too long");
    if (smtp__is_open(c) && smtp__io_unasked(&c->io)) {
        smtp__conn_close(c);
        return smtp__fail(res, SMTP_ERR_PROTO, verb,
                          "unexpected bytes "
                          "from the server before %s (reply injection?)",
                          verb);
    }
    int r = smtp__send_raw(c, line, (size_t)n, timeout, verb, res);
    if (r != SMTP_OK)
        return r;
    struct smtp_reply reply = { 0 };
    r = conn_read(c, timeout, verb, &reply, res, 1);
    if (r != SMTP_OK)
        return r;
    smtp__result_take_reply(res, &reply);
    snprintf(res->command, sizeof res->command, "%s", verb);
    return SMTP_OK;
}

/* Stores the EHLO keywords (every line after the first). */
int smtp__conn_set_ext(struct smtp_conn *c, const struct smtp_reply *r)
{
    smtp__conn_forget_ext(c);
    c->esmtp = 1;
    if (r->nlines < 2)
        return 0;
    c->ext = calloc(r->nlines - 1, sizeof *c->ext);
    if (c->ext == NULL)
        return -1;
    for (size_t i = 1; i < r->nlines; i++) {
        c->ext[c->next] = strdup(r->lines[i]);
        if (c->ext[c->next] == NULL)
            return -1;
        c->next++;
    }
    static const struct {
        const char *kw;
        unsigned bit;
    } known[] = {
        { "PIPELINING", SMTP__CAP_PIPELINING },
        { "SIZE", SMTP__CAP_SIZE },
        { "8BITMIME", SMTP__CAP_8BITMIME },
        { "SMTPUTF8", SMTP__CAP_SMTPUTF8 },
        { "DSN", SMTP__CAP_DSN },
    };
    for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
        if (smtp_conn_has_ext(c, known[k].kw))
            c->caps |= known[k].bit;
    return 0;
}

/* EHLO; on 500/502 (command unknown) HELO instead.  Reply in res. */
int smtp__ehlo(struct smtp_conn *c, const char *name, struct smtp_result *res)
{
    char cmd[SMTP_MAX_DOMAIN + 8];
    snprintf(cmd, sizeof cmd, "EHLO %s", name);
    int r = smtp__command(c, cmd, smtp__timeout(c, SMTP__T_COMMAND), res);
    if (r != SMTP_OK)
        return r;
    if (res->code == 250)
        return smtp__conn_set_ext(c, &res->reply) < 0
                   ? smtp__fail(res, SMTP_ERR_LOCAL, "EHLO", "out of memory")
                   : SMTP_OK;
    smtp__conn_forget_ext(c);
    if (res->code != 500 && res->code != 502)
        return SMTP_OK;
    snprintf(cmd, sizeof cmd, "HELO %s", name);
    return smtp__command(c, cmd, smtp__timeout(c, SMTP__T_COMMAND), res);
}

/* STARTTLS, handshake, and EHLO again on the protected channel. */
static int conn_starttls(struct smtp_conn *c, const char *name,
                         struct smtp_result *res)
{
    int r = smtp__command(c, "STARTTLS", smtp__timeout(c, SMTP__T_COMMAND),
                          res);
    if (r != SMTP_OK)
        return r;
    if (res->code != 220) {
        if (c->opts.tls != SMTP_TLS_REQUIRED)
            return SMTP_OK; /* opportunistic: stay plain, said in the log */
        smtp__set_status(res, "4.7.4");
        return smtp__fail(res, SMTP_ERR_TLS, "STARTTLS",
                          "server refused STARTTLS and TLS is required");
    }
    /* RFC 3207 4.2: nothing received before the handshake may be used. */
    smtp__io_discard(&c->io);
    smtp__conn_forget_ext(c);
    char why[200];
    struct smtp__tls_opts t;
    tls_opts(c, &t);
    if (smtp__tls_start(&c->io, &t,
                        smtp__now_ms() + smtp__timeout(c, SMTP__T_COMMAND), why,
                        sizeof why) < 0) {
        smtp__conn_close(c);
        return smtp__fail(res, SMTP_ERR_TLS, "STARTTLS", "%s", why);
    }
    r = smtp__ehlo(c, name, res);
    if (r == SMTP_OK && res->code >= 400)
        return smtp__fail(res, SMTP_ERR_REPLY, "EHLO",
                          "server refused EHLO after STARTTLS");
    return r;
}

/* Ends the session politely: QUIT (when still open), its 221 awaited for
   at most QUIT_MS, then close. */
static void conn_abandon(struct smtp_conn *c)
{
    struct smtp_result tmp;
    int t = smtp__timeout(c, SMTP__T_COMMAND);
    smtp_result_init(&tmp);
    if (smtp__is_open(c))
        smtp__command(c, "QUIT", t < QUIT_MS ? t : QUIT_MS, &tmp);
    smtp_result_clear(&tmp);
    smtp__conn_close(c);
}

/* A session that cannot go on ends with QUIT; a local refusal (TLS or AUTH)
   must not leave a success reply behind: the reply that was current (250
   to EHLO, 220 to STARTTLS) is not the outcome. */
static int hello_failed(struct smtp_conn *c, int r, struct smtp_result *res)
{
    conn_abandon(c);
    if (res->code < 400) {
        smtp_reply_clear(&res->reply);
        res->code = 0;
    }
    return smtp__settled(res, r);
}

/* The address literal of the connection's own address, "[192.0.2.1]" or
   "[IPv6:2001:db8::1]" (RFC 5321 4.1.3), which RFC 5321 4.1.4 asks a
   client without a fully qualified name to send; "localhost" when the
   socket has no IP address. */
static const char *conn_address_literal(const struct smtp_conn *c, char *buf,
                                        size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[INET6_ADDRSTRLEN];
    const void *a = NULL;

    if (getsockname(c->io.fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            a = &((const struct sockaddr_in *)&ss)->sin_addr;
        else if (ss.ss_family == AF_INET6)
            a = &((const struct sockaddr_in6 *)&ss)->sin6_addr;
    }
    if (a == NULL || inet_ntop(ss.ss_family, a, host, sizeof host) == NULL)
        return "localhost";
    snprintf(buf, len, ss.ss_family == AF_INET6 ? "[IPv6:%s]" : "[%s]", host);
    return buf;
}

/* EHLO/HELO, then STARTTLS and AUTH as the options ask. */
int smtp_conn_hello(struct smtp_conn *conn, struct smtp_result *res)
{
    char literal[INET6_ADDRSTRLEN + 8];
    const char *name = conn->opts.helo_name != NULL
                           ? conn->opts.helo_name
                           : conn_address_literal(conn, literal,
                                                  sizeof literal);
    smtp_result_clear(res);
    int r = smtp__ehlo(conn, name, res);
    if (r != SMTP_OK)
        return smtp__settled(res, r);
    if (res->code >= 400)
        return hello_failed(conn,
                            smtp__fail(res, SMTP_ERR_REPLY, res->command,
                                       "server refused the greeting"),
                            res);
    enum smtp_tls_mode tls = conn->opts.tls;
    if ((tls == SMTP_TLS_REQUIRED || tls == SMTP_TLS_OPPORTUNISTIC) &&
        conn->io.tls == NULL) {
        if (smtp_conn_has_ext(conn, "STARTTLS"))
            r = conn_starttls(conn, name, res);
        else if (tls == SMTP_TLS_REQUIRED) {
            smtp__set_status(res, "4.7.4");
            r = smtp__fail(
                res, SMTP_ERR_TLS, "STARTTLS",
                "server does not offer STARTTLS and TLS is required");
        }
        if (r != SMTP_OK)
            return hello_failed(conn, r, res);
    }
    if (conn->opts.auth_user != NULL && conn->opts.auth_user[0] != '\0') {
        smtp__set_state(conn, SMTP_CONN_AUTH);
        r = smtp__auth(conn, res);
        smtp__set_state(conn, SMTP_CONN_CONNECTED);
        if (r != SMTP_OK)
            return hello_failed(conn, r, res);
    }
    smtp__set_state(conn, SMTP_CONN_READY);
    return smtp__settled(res, SMTP_OK);
}

/* QUIT when open, then close and free. */
void smtp_conn_quit(struct smtp_conn *conn)
{
    if (conn == NULL)
        return;
    conn_abandon(conn);
    smtp_conn_free(conn);
}

int smtp_conn_is_open(const struct smtp_conn *conn)
{
    return conn != NULL && smtp__is_open(conn);
}

/* Non-blocking liveness check of an idle connection. */
int smtp_conn_check_idle(struct smtp_conn *conn)
{
    if (!smtp__is_open(conn))
        return -1;
    if (smtp__io_pending(&conn->io))
        goto dead; /* unasked bytes: a 421, say */
    struct pollfd p = { .fd = conn->io.fd, .events = POLLIN, .revents = 0 };
    if (poll(&p, 1, 0) == 0)
        return 0;
    if (conn->io.tls != NULL) {
        /* TLS 1.3 session tickets arrive unasked; they carry no data. */
        char b[1];
        ssize_t n = gnutls_record_recv(conn->io.tls, b, sizeof b);
        if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
            return 0;
    }
dead:
    smtp__conn_close(conn);
    return -1;
}

/* Finds an EHLO keyword; returns its line or NULL. */
static const char *ext_find(const struct smtp_conn *conn, const char *kw)
{
    size_t k = strlen(kw);
    for (size_t i = 0; i < conn->next; i++) {
        const char *e = conn->ext[i];
        if (strncasecmp(e, kw, k) == 0 &&
            (e[k] == '\0' || e[k] == ' ' || e[k] == '='))
            return e;
    }
    return NULL;
}

int smtp_conn_has_ext(const struct smtp_conn *conn, const char *keyword)
{
    return ext_find(conn, keyword) != NULL;
}

const char *smtp_conn_ext_param(const struct smtp_conn *conn,
                                const char *keyword)
{
    const char *e = ext_find(conn, keyword);
    if (e == NULL || e[strlen(keyword)] == '\0')
        return NULL;
    return e + strlen(keyword) + 1;
}

int smtp_conn_is_tls(const struct smtp_conn *conn)
{
    return conn->io.tls != NULL;
}

unsigned long smtp_conn_messages(const struct smtp_conn *conn)
{
    return conn->messages;
}
