/*
 * smtpcore/smtp.h - SMTP client library (the API of scsh's SMTP library, in C).
 *
 * The seed's procedures keep their names with '-' turned into '_':
 *   smtp_send_mail, smtp_expand, smtp_verify, smtp_get_help, smtp_connect,
 *   smtp_transactions, smtp_transactions_no_close, and one constructor per
 *   SMTP command (smtp_helo, smtp_ehlo, smtp_mail, smtp_rcpt, smtp_data, ...).
 *
 * Outcomes: every call that talks to a server fills a caller-owned
 * struct smtp_result and returns its kind (SMTP_OK or a negative
 * enum smtp_kind).  result->code keeps the seed's meaning: the deciding reply
 * code, success when below 400, 700 when recipients were rejected.  Every
 * outcome that is not a success (kind != SMTP_OK) carries a code of 400 or
 * more: the server's own 4xx/5xx when one decided it, else a code smtpcore
 * synthesizes, as Postfix does for its own failures, with an RFC 3463
 * status in result->enhanced and result->code_local set:
 *   421 4.4.1  connection: cannot resolve or connect (or timed out doing so)
 *   421 4.4.2  connection lost, or a timeout, after the greeting began
 *              (also a final dot that went unanswered: status "unknown")
 *   451 4.5.0  protocol: the server's bytes are not SMTP, or arrived
 *              unasked (reply injection)
 *   454 4.7.4  tls: TLS required but STARTTLS not offered
 *   454 4.7.5  tls: handshake or certificate verification failed
 *   554 5.7.0  auth: refused locally (not offered, no usable mechanism)
 *   554 5.7.11 auth: credentials would go over a connection without TLS
 *   554 5.6.0  local: the message cannot be sent as given (body, headers)
 *   554 5.5.0  local: bad argument, address or option; and reply: the
 *              server answered with a success code where a failure was
 *              decided (a DATA answered 250, a refused RSET, a greeting
 *              other than 220)
 * result->reply always holds only what the server said (empty when it said
 * nothing); smtp_result_settle is the one place the rule lives.
 *
 * Threads: nothing global is mutable.  A struct smtp_conn belongs to one
 * thread at a time; distinct connections may be used from distinct threads.
 *
 * Ownership: _new/_free pairs; every _free and _clear accepts NULL.  Strings
 * passed in are copied unless a comment says "borrowed".
 */
#ifndef SMTPCORE_SMTP_H
#define SMTPCORE_SMTP_H

#include <stddef.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Limits (RFC 5321 4.5.3.1, and the bounds of the reply reader). */
#define SMTP_MAX_LOCAL_PART 64
#define SMTP_MAX_DOMAIN 255
#define SMTP_MAX_PATH 256
#define SMTP_MAX_LINE 998          /* text line, without CRLF */
#define SMTP_MAX_REPLY_LINE 4096   /* one reply line we accept */
#define SMTP_MAX_REPLY_LINES 100   /* lines in one reply */
#define SMTP_MAX_REPLY_BYTES 65536 /* bytes in one reply */
#define SMTP_DEFAULT_PORT 25

/* The kind of an outcome: 0 or negative. */
enum smtp_kind {
    SMTP_OK = 0,
    SMTP_ERR_REPLY = -1, /* the server answered 4xx/5xx (or a bad greeting) */
    SMTP_ERR_REJECTED = -2, /* some or all recipients rejected: code 700 */
    SMTP_ERR_CONN = -3,     /* resolve/connect/read/write failed, or EOF */
    SMTP_ERR_TIMEOUT = -4,  /* a deadline passed; result->command names it */
    SMTP_ERR_PROTO = -5,    /* the server spoke something that is not SMTP */
    SMTP_ERR_LOCAL = -6,    /* refused before sending: bad input, no memory */
    SMTP_ERR_TLS = -7, /* TLS unavailable, handshake or verification failed */
    SMTP_ERR_AUTH = -8 /* authentication refused or impossible */
};

/* What became of a message (the "status" of the JSON result). */
enum smtp_delivery {
    SMTP_DELIVERY_NONE = 0, /* not a send (queries, transactions) */
    SMTP_DELIVERY_SENT,     /* every recipient accepted, DATA accepted */
    SMTP_DELIVERY_PARTIAL,  /* some recipients rejected, the rest got it */
    SMTP_DELIVERY_REJECTED, /* every recipient rejected; no message data was
                                sent (a pipelined DATA gets a lone dot) */
    SMTP_DELIVERY_FAILED,   /* not delivered (error before the final dot, or
                                DATA refused) */
    SMTP_DELIVERY_UNKNOWN   /* the final dot was sent but no reply came:
                                it may have been delivered; never resend */
};

/* One server reply, validated and bounded. */
struct smtp_reply {
    int code;          /* 200..599; 0 when none */
    char enhanced[16]; /* RFC 3463 "x.y.z" of the last line, or "" */
    size_t nlines;
    char **lines; /* each line without "NNN-"/"NNN " and CRLF; owned */
};

/* A recipient the server refused. */
struct smtp_rcpt_failure {
    char *recipient;         /* owned */
    struct smtp_reply reply; /* owned */
};

/* The outcome of any call that talks to a server; caller-owned. */
struct smtp_result {
    enum smtp_kind kind;
    int code;                /* the seed's code: see the file comment */
    struct smtp_reply reply; /* the deciding reply (empty when none) */
    enum smtp_delivery status;
    size_t naccepted;
    char **accepted; /* recipients the server took; owned */
    size_t nrejected;
    struct smtp_rcpt_failure *rejected; /* owned */
    int sys_errno;        /* errno of a connection failure, else 0 */
    char command[16];     /* command in progress when it failed */
    char message[256];    /* a sentence for people; "" on success */
    char message_id[256]; /* Message-ID sent (with brackets), or "" */
    char enhanced[16];    /* RFC 3463 status going with code: the
                                    server's (reply.enhanced) or the
                                    synthesized one; "" when none */
    int code_local;       /* 1 when code was synthesized by smtpcore
                                    (no server reply decided the outcome) */
};

void smtp_result_init(struct smtp_result *res);
/* Frees what res owns and re-initialises it. */
void smtp_result_clear(struct smtp_result *res);
void smtp_reply_clear(struct smtp_reply *reply);
/*
 * Applies the code rule of the file comment to a finished result: a
 * success keeps its code; a failure whose code is a server's 4xx/5xx (or
 * 700) keeps it, with the reply's enhanced status; any other failure gets
 * the synthesized code and status for its kind (a status already put in
 * res->enhanced by the code that failed chooses the code instead) and
 * code_local = 1.  res->reply is never touched.  Idempotent; smtpcore calls
 * it on every result it returns; callers that fill a result themselves
 * call it too.
 */
void smtp_result_settle(struct smtp_result *res);
/* Names for logs and JSON: "ok", "reply", ...; "sent", "partial", ... */
const char *smtp_kind_name(enum smtp_kind kind);
const char *smtp_delivery_name(enum smtp_delivery status);

/* TLS modes (RFC 3207 STARTTLS, RFC 8314 implicit TLS). */
enum smtp_tls_mode {
    SMTP_TLS_NONE = 0,
    SMTP_TLS_OPPORTUNISTIC, /* STARTTLS when offered, plain otherwise */
    SMTP_TLS_REQUIRED,      /* STARTTLS or fail; never plain */
    SMTP_TLS_IMPLICIT       /* TLS from the first byte (port 465) */
};

/*
 * The state of a connection.  The library changes it in one place (a
 * setter that also tells the trace hook); callers read it with
 * smtp_conn_state.  A closed connection stays closed.
 */
enum smtp_conn_state {
    SMTP_CONN_CLOSED = 0, /* no socket: never opened, or closed (QUIT,
                                    421, a transport or protocol failure) */
    SMTP_CONN_GREETING,   /* connected; the 220 greeting awaited */
    SMTP_CONN_CONNECTED,  /* greeted; EHLO/HELO, STARTTLS, AUTH not
                                    done yet (or under way) */
    SMTP_CONN_AUTH,       /* an AUTH exchange: the lines sent carry
                                    credentials and are never traced */
    SMTP_CONN_READY,      /* EHLO and what opts ask done: commands go */
    SMTP_CONN_DATA        /* after a 354: the message content goes */
};

/* What a trace line is. */
enum smtp_trace_kind {
    SMTP_TRACE_SENT,     /* a command line the client wrote */
    SMTP_TRACE_RECEIVED, /* a reply line the server sent */
    SMTP_TRACE_STATE     /* a state change, "CONNECTED -> READY" */
};

/*
 * The trace hook (curl's CURLOPT_DEBUGFUNCTION, OpenSMTPD's transcript):
 * called for each command line sent and each reply line received, without
 * the CRLF, and for each state change.  line is NUL-terminated, len bytes,
 * borrowed for the call only; a line longer than SMTP_MAX_REPLY_LINE bytes
 * is cut there.  Never traced: the message content (state DATA: its bytes,
 * the final dot is traced as "."), and credentials: while in state AUTH a
 * sent line is "AUTH <mechanism> <redacted>" for the command and
 * "<redacted>" for each response.  Called synchronously on the thread that
 * uses the connection; it must not call back into the connection.  ctx is
 * the caller's, passed as is.
 */
typedef void (*smtp_trace_fn)(void *ctx, enum smtp_trace_kind kind,
                              const char *line, size_t len);

/* Connection options; smtp_connect copies them.  Zero means the default. */
struct smtp_opts {
    const char *helo_name;     /* EHLO/HELO argument, a fully qualified
                                    domain name; default the address
                                    literal of the connection's own
                                    address, "[192.0.2.1]" (RFC 5321
                                    4.1.4) */
    int connect_timeout_ms;    /* default 30 s */
    int greeting_timeout_ms;   /* default 5 min (RFC 5321 4.5.3.2) */
    int command_timeout_ms;    /* EHLO, MAIL, RCPT, RSET, ...: default 5 min */
    int data_init_timeout_ms;  /* DATA to 354: default 2 min */
    int data_block_timeout_ms; /* each write of the body: default 3 min */
    int data_term_timeout_ms;  /* final dot to reply: default 10 min */
    int no_pipelining;         /* never pipeline, even when offered */
    enum smtp_tls_mode tls;
    const char *ca_file;   /* NULL: the system trust store */
    const char *cert_file; /* client certificate (PEM), optional */
    const char *key_file;
    int insecure_skip_verify;    /* tests only: accept any certificate */
    const char *tls_server_name; /* name to verify; default: the host */
    const char *auth_user;       /* AUTH when set */
    const char *auth_pass;       /* a secret: never logged */
    const char *auth_mech;       /* "PLAIN", "LOGIN", "XOAUTH2"; NULL: best */
    int auth_allow_plaintext;    /* allow credentials without TLS */
    smtp_trace_fn trace;         /* NULL: no trace (see smtp_trace_fn) */
    void *trace_ctx;             /* borrowed; handed to trace */
};

/* Per-message options of smtp_send_mail and smtp_conn_send_mail. */
struct smtp_send_opts {
    int raw;                /* body is a whole RFC 5322 message */
    const char *dsn_notify; /* "SUCCESS,FAILURE", "NEVER", ... or NULL */
    const char *dsn_ret;    /* "FULL" or "HDRS" or NULL */
    const char *dsn_envid;  /* xtext-encoded by the library */
};

/* An ordered header field (the seed's alist entry).  Borrowed. */
struct smtp_header {
    const char *name;
    const char *value;
};

/*
 * Reader: fill buf with up to cap bytes of the body; return the count,
 * 0 at the end, -1 on error (errno set).  Lone CR and LF become CRLF.
 */
typedef ssize_t (*smtp_reader_fn)(void *ctx, char *buf, size_t cap);

/*
 * A body, borrowed, in one of three forms (the first non-empty one wins):
 * text (bytes in memory: checked in full before anything is sent), a reader
 * (streamed; a bad byte found mid-stream aborts the connection without the
 * final dot, so nothing is delivered), or lines (the seed's list of strings,
 * each without its terminator; checked in full first).  Prefer text or
 * lines whenever the body is in memory or its size is known: only they
 * allow SIZE=, the checks before MAIL and the 452 follow-up transactions.
 * A line's length is counted before dot-stuffing (RFC 5321 4.5.3.1.6,
 * 4.5.2): a 998-octet line starting with '.' goes out as 999 octets.
 */
struct smtp_body {
    const char *text;
    size_t len;
    smtp_reader_fn read;
    void *ctx;
    const char *const *lines;
    size_t nlines;
};

/* ---- Whole messages and queries (each on its own connection). ---- */

/*
 * Sends one message from `from` to `to[0..nto)` through `host` ("name",
 * "name:port", "[v6]:port"; NULL means localhost:25): EHLO (HELO fallback),
 * MAIL, RCPT each, DATA, body, QUIT.  One RCPT per distinct mailbox (local
 * parts compared exactly, domains without case; RFC 5321 2.4), and each is
 * listed once in the result.  A body given as text or lines is checked
 * whole before MAIL: its size is declared with SIZE= and refused over the
 * server's limit, BODY=8BITMIME is declared only for 8-bit content (a
 * streamed body, whose content is unknown, declares it whenever offered),
 * and raw 8-bit text in a header field makes the transaction SMTPUTF8
 * (RFC 6531 3.4, RFC 6532), refused before MAIL naming the field when the
 * server does not offer it.  A message whose status is failed has no
 * accepted recipients (accepted means the message reached them).  When every recipient is refused no
 * message data is sent (RSET instead of DATA; with PIPELINING, DATA rode in
 * the group and a 354 gets a lone dot).  Recipients deferred with 452 go in
 * further transactions of the same message: when one of those is refused its
 * recipients are listed as rejected with that reply; when its final dot goes
 * unanswered the whole result is SMTP_DELIVERY_UNKNOWN (those recipients
 * may have it; the ones already accepted stay listed).  Date, Message-ID and From are
 * added when missing (not for raw bodies).
 */
int smtp_send_mail(const char *from, const char *const *to, size_t nto,
                   const struct smtp_header *headers, size_t nheaders,
                   const struct smtp_body *body, const char *host,
                   const struct smtp_opts *opts,
                   const struct smtp_send_opts *sopts, struct smtp_result *res);

/* EXPN name: the members of a list, one reply line each. */
int smtp_expand(const char *name, const char *host,
                const struct smtp_opts *opts, struct smtp_result *res);
/* VRFY name. */
int smtp_verify(const char *name, const char *host,
                const struct smtp_opts *opts, struct smtp_result *res);
/* HELP [details]; details may be NULL. */
int smtp_get_help(const char *host, const char *details,
                  const struct smtp_opts *opts, struct smtp_result *res);

/* ---- Connections. ---- */

struct smtp_conn;

/*
 * Opens a connection to host (see smtp_send_mail; port 0 means the one in
 * host, else 25) and reads the greeting.  Returns NULL with res filled on
 * failure (a 4xx/5xx greeting is SMTP_ERR_REPLY, with the server's lines
 * and code even when the code changed mid-reply: "220-..." then "521 ...";
 * that session is ended with QUIT, RFC 5321 3.1).  On success res holds the
 * greeting.  No EHLO is sent: run smtp_ehlo, or use smtp_conn_hello.
 */
struct smtp_conn *smtp_connect(const char *host, int port,
                               const struct smtp_opts *opts,
                               struct smtp_result *res);
/* Closes the socket without QUIT and frees the handle. */
void smtp_conn_free(struct smtp_conn *conn);

/* EHLO (HELO on 500/502), then STARTTLS and AUTH as opts ask.  On failure
   the session is over: ended with QUIT when the connection is still usable
   (EHLO/HELO refused, TLS or AUTH refused) and closed. */
int smtp_conn_hello(struct smtp_conn *conn, struct smtp_result *res);
/*
 * Sends one message on an open, greeted connection.  Sends RSET first when
 * the connection has carried a transaction before.  Leaves it open.
 */
int smtp_conn_send_mail(struct smtp_conn *conn, const char *from,
                        const char *const *to, size_t nto,
                        const struct smtp_header *headers, size_t nheaders,
                        const struct smtp_body *body,
                        const struct smtp_send_opts *sopts,
                        struct smtp_result *res);

/* A message as smtpcore sends it: the envelope (reverse-path `from`,
   forward-paths `to`), the header fields and the body (RFC 5321 2.3.1),
   all borrowed; sopts may be NULL.  The argument of smtp_conn_send_mails.
   (Named smtp_message, not smtp_mail: smtp_mail() is the seed's MAIL
   constructor.) */
struct smtp_message {
    const char *from;
    const char *const *to;
    size_t nto;
    const struct smtp_header *headers;
    size_t nheaders;
    const struct smtp_body *body;
    const struct smtp_send_opts *sopts;
};

/* Told message i's outcome (res is results[i]) as soon as it is final;
   returns 0 to go on, or non-zero to start no further message. */
typedef int (*smtp_message_done_fn)(void *ctx, size_t i,
                                    struct smtp_result *res);

/*
 * Sends mails[0..n) on conn one after the other, each exactly as
 * smtp_conn_send_mail would (same commands, same checks, results[i] filled
 * the same way), except that with PIPELINING the next message's envelope
 * (RSET, MAIL, RCPT..., DATA) goes out in the same write as this message's
 * final dot (RFC 2920 3.1: message content may start a group): one round
 * trip a message instead of two.  It rides only behind a dot that ends its
 * message (no 452 follow-up due) and only when it fits one group.  When a
 * final dot goes unanswered that message is SMTP_DELIVERY_UNKNOWN as ever,
 * and the next fails at its first command with SMTP_ERR_CONN (none of its
 * data was sent).  done (may be NULL) is called once per message, in
 * order; after it returns, mails[i] and results[i] are no longer touched.
 * When done asks to stop, a message whose envelope already went out is
 * still finished (and told), and nothing of the later ones is sent (their
 * results may have been cleared).  Returns how many messages were handled
 * (each told to done): mails[0..returned).
 */
size_t smtp_conn_send_mails(struct smtp_conn *conn,
                            const struct smtp_message *mails, size_t n,
                            struct smtp_result *const *results,
                            smtp_message_done_fn done, void *ctx);
/* QUIT (when still open), then close and free. */
void smtp_conn_quit(struct smtp_conn *conn);

/* 1 while the socket is open and not known to be dead. */
int smtp_conn_is_open(const struct smtp_conn *conn);
/* The connection's state (SMTP_CONN_CLOSED for NULL). */
enum smtp_conn_state smtp_conn_state(const struct smtp_conn *conn);
/* The state's name, "READY"; static storage. */
const char *smtp_conn_state_name(enum smtp_conn_state state);
/*
 * Liveness before reuse without a round trip: 0 when the socket is idle and
 * open, -1 when the peer closed it or sent something unasked (a 421, say).
 */
int smtp_conn_check_idle(struct smtp_conn *conn);
/* Capability of the last EHLO: 1 if keyword (e.g. "PIPELINING") was offered. */
int smtp_conn_has_ext(const struct smtp_conn *conn, const char *keyword);
/* The parameter of an EHLO keyword ("SIZE 1000" -> "1000"), or NULL.
   Valid until the next command on conn. */
const char *smtp_conn_ext_param(const struct smtp_conn *conn,
                                const char *keyword);
/* 1 when the session runs over TLS. */
int smtp_conn_is_tls(const struct smtp_conn *conn);
/* Transactions (MAIL ... end of DATA) carried so far. */
unsigned long smtp_conn_messages(const struct smtp_conn *conn);

/* ---- Transactions: one constructor per command. ---- */

struct smtp_txn;

struct smtp_txn *smtp_helo(const char *host);
struct smtp_txn *smtp_ehlo(const char *host); /* HELO on 500/502 */
struct smtp_txn *smtp_mail(const char *addr);
struct smtp_txn *smtp_rcpt(const char *addr);
/* headers and body are borrowed: keep them alive while the txn lives. */
struct smtp_txn *smtp_data(const struct smtp_header *headers, size_t nheaders,
                           const struct smtp_body *body);
struct smtp_txn *smtp_send(const char *addr);
struct smtp_txn *smtp_soml(const char *addr);
struct smtp_txn *smtp_saml(const char *addr);
struct smtp_txn *smtp_vrfy(const char *user);
struct smtp_txn *smtp_expn(const char *list);
struct smtp_txn *smtp_help(const char *details); /* details may be NULL */
struct smtp_txn *smtp_rset(void);
struct smtp_txn *smtp_noop(void);
struct smtp_txn *smtp_turn(void);
struct smtp_txn *smtp_quit(void); /* also closes the socket */
/* Constructors return NULL only when out of memory. */
void smtp_txn_free(struct smtp_txn *txn);

/*
 * Runs txns in order with the seed's rules: stop at 221/421 (the server
 * closed) or at any 4xx/5xx and return that one's code and text; otherwise
 * the last one's.  smtp_transactions then closes the connection (QUIT unless
 * already closed); _no_close leaves it open.  Either way the handle stays
 * valid until smtp_conn_free.  The txns are
 * borrowed.  A NULL txn in the array is a local (out of memory) error.
 * The variadic forms take the txns as arguments ended by NULL.
 */
int smtp_transactionsv(struct smtp_conn *conn, struct smtp_txn *const *txns,
                       size_t ntxns, struct smtp_result *res);
int smtp_transactionsv_no_close(struct smtp_conn *conn,
                                struct smtp_txn *const *txns, size_t ntxns,
                                struct smtp_result *res);
int smtp_transactions(struct smtp_conn *conn, struct smtp_result *res, ...);
int smtp_transactions_no_close(struct smtp_conn *conn, struct smtp_result *res,
                               ...);

/* ---- Validation, usable on their own (0 ok, -1 with a reason). ---- */

/* A mailbox for MAIL/RCPT: no brackets; "" allowed only when allow_empty. */
int smtp_addr_check(const char *addr, int allow_empty, char *why,
                    size_t whylen);
/* A header field: name printable ASCII without ':', value without CR, LF
   or another control but HTAB (DEL and UTF-8 C1 controls included), and
   foldable into lines of at most SMTP_MAX_LINE octets. */
int smtp_header_check(const char *name, const char *value, char *why,
                      size_t whylen);
/* 1 when RFC 5322 3.6 allows the field at most once (From, Sender,
   Reply-To, To, Cc, Bcc, Message-ID, In-Reply-To, References, Subject,
   Date; any case).  The sends refuse such a field given twice.  A Bcc or
   Resent-Bcc field is never transmitted: the header writer drops it, and
   a raw message (or a body sent without header fields) loses it, with its
   folded lines, on the way to the wire. */
int smtp_header_unique(const char *name);
/* A body (or a raw message) of len bytes as smtp_send_mail would send it:
   no NUL, no line over SMTP_MAX_LINE octets (lone CR and LF count as line
   ends); the reason names the line. */
int smtp_body_check(const char *text, size_t len, char *why, size_t whylen);

#ifdef __cplusplus
}
#endif
#endif /* SMTPCORE_SMTP_H */
