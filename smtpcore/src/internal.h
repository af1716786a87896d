/*
 * internal.h - smtpcore's private declarations, shared by its .c files.
 * Prefix smtp__ for functions that are not part of the public API.
 */
#ifndef SMTPCORE_INTERNAL_H
#define SMTPCORE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <gnutls/gnutls.h>
#include "smtpcore/smtp.h"

/* ---- Replies (reply.c) ---- */

/* Parsed form of one reply line: "250-text" or "250 text" or "250". */
struct smtp__line {
    int code;
    int more;         /* 1 for '-' continuation */
    const char *text; /* points into the line */
    size_t textlen;
};

/* 0, or -1 when the line is not an SMTP reply line. */
int smtp__reply_line_parse(const char *line, size_t len,
                           struct smtp__line *out);
/* Appends a parsed line to reply; enforces the line and byte caps.
   -1 with why set on a violation (too many lines, ...); 1 with why set
   when the line's code differs from the earlier lines' (the line is kept
   and the reply takes its code); else 0. */
int smtp__reply_add(struct smtp_reply *reply, const struct smtp__line *ln,
                    size_t *bytes, char *why, size_t whylen);
/* Copies the enhanced code "x.y.z" at the start of text when it matches the
   reply class; "" otherwise. */
void smtp__enhanced_parse(int code, const char *text, size_t len, char out[16]);
/* Deep copy of src into dst (dst cleared first); -1 on no memory. */
int smtp__reply_copy(struct smtp_reply *dst, const struct smtp_reply *src);

/* ---- Growable byte buffer with a hard cap (buf.c) ---- */

struct smtp__buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max; /* hard cap; appends beyond it fail */
};

void smtp__buf_init(struct smtp__buf *b, size_t max);
void smtp__buf_free(struct smtp__buf *b);
int smtp__buf_append(struct smtp__buf *b, const void *p, size_t n);
int smtp__buf_appendf(struct smtp__buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- Transport (io.c, tls.c) ---- */

#define SMTP__RBUF 16384

struct smtp__io {
    int fd;
    gnutls_session_t tls; /* NULL for plaintext */
    gnutls_certificate_credentials_t cred;
    char rbuf[SMTP__RBUF];
    size_t rpos, rlen; /* unread bytes: rbuf[rpos..rlen) */
};

/* Monotonic milliseconds. */
int64_t smtp__now_ms(void);
/* Writes all of p, waiting at most until deadline (monotonic ms).
   0, or a negative smtp_kind with *err set to errno (0 on timeout/EOF).
   *done (may be NULL) gets the bytes written, also on failure. */
int smtp__io_write(struct smtp__io *io, const void *p, size_t n,
                   int64_t deadline, int *err, size_t *done);
/* Reads one CRLF-terminated line of at most SMTP_MAX_REPLY_LINE bytes into
   line (without CRLF).  0, or a negative smtp_kind; *why names the cause. */
int smtp__io_read_line(struct smtp__io *io, char *line, size_t *len,
                       int64_t deadline, int *err, const char **why);
/* Waits until fd is readable (write 0) or writable (1): 1, 0 timeout, -1. */
int smtp__io_wait_fd(int fd, int write, int64_t deadline);
/* 1 when unread bytes sit in the buffer or the TLS layer. */
int smtp__io_pending(const struct smtp__io *io);
/* 1 when bytes nobody asked for wait: buffered, in TLS records, or in the
   socket now (an end of stream is not bytes).  Never blocks. */
int smtp__io_unasked(struct smtp__io *io);
void smtp__io_discard(struct smtp__io *io);
void smtp__io_close(struct smtp__io *io);

struct smtp__tls_opts {
    const char *server_name;
    const char *ca_file, *cert_file, *key_file;
    int insecure;
};
/* TLS handshake on io->fd; -1 with why filled (SMTP_ERR_TLS). */
int smtp__tls_start(struct smtp__io *io, const struct smtp__tls_opts *o,
                    int64_t deadline, char *why, size_t whylen);

/* ---- Connections (conn.c) ---- */

struct smtp_conn {
    struct smtp__io io;
    struct smtp_opts opts;      /* strings below are owned copies */
    char *host;                 /* as given, for TLS name checks */
    enum smtp_conn_state state; /* changed by smtp__set_state only */
    int esmtp;                  /* EHLO accepted */
    char **ext;                 /* EHLO keywords and params, "SIZE 100" */
    size_t next;
    unsigned caps;          /* SMTP__CAP_* bits of ext, for speed */
    unsigned long messages; /* MAIL commands sent */
    int dirty;              /* a transaction was started: RSET next */
};

/* 1 while the socket is usable. */
#define smtp__is_open(c) ((c)->state != SMTP_CONN_CLOSED)

/* ---- State and trace (trace.c) ---- */

/* The only way the state changes; tells the trace hook.  A closed
   connection only reopens to SMTP_CONN_GREETING. */
void smtp__set_state(struct smtp_conn *c, enum smtp_conn_state s);
/* Hands the hook each CRLF-ended line of p[0..n), sent (nothing in state
   DATA; credentials redacted in state AUTH). */
void smtp__trace_sent(const struct smtp_conn *c, const char *p, size_t n);
/* Hands the hook one reply line received. */
void smtp__trace_received(const struct smtp_conn *c, const char *line,
                          size_t len);

/* Extensions looked up on every message, cached as bits at EHLO time. */
enum {
    SMTP__CAP_PIPELINING = 1,
    SMTP__CAP_SIZE = 2,
    SMTP__CAP_8BITMIME = 4,
    SMTP__CAP_SMTPUTF8 = 8,
    SMTP__CAP_DSN = 16
};
#define smtp__has_cap(c, bit) (((c)->caps & (bit)) != 0)

/* Timeouts with defaults applied. */
int smtp__timeout(const struct smtp_conn *c, int which);
enum {
    SMTP__T_GREETING,
    SMTP__T_COMMAND,
    SMTP__T_DATA_INIT,
    SMTP__T_DATA_BLOCK,
    SMTP__T_DATA_TERM
};

/* Sends one command line (CRLF appended) and reads its reply into res,
   the one reply awaited: bytes before the command or beyond its reply are a
   protocol error.  Returns SMTP_OK whatever the code (caller judges), or a
   transport kind with res filled.  A 421 closes the connection. */
int smtp__command(struct smtp_conn *c, const char *cmd, int timeout,
                  struct smtp_result *res);
/* Writes bytes; on failure fills res (kind, errno, command) and closes. */
int smtp__send_raw(struct smtp_conn *c, const char *p, size_t n, int timeout,
                   const char *command, struct smtp_result *res);
/* smtp__send_raw that also counts into *done the bytes written, also when
   it fails (how far a write that ends in a final dot got). */
int smtp__send_raw_n(struct smtp_conn *c, const char *p, size_t n, int timeout,
                     const char *command, struct smtp_result *res,
                     size_t *done);
/* Reads one full reply into reply; on failure fills res and closes.
   When PIPELINING is not in effect, bytes beyond the reply are a protocol
   error (reply injection). */
int smtp__read_reply(struct smtp_conn *c, int timeout, const char *command,
                     struct smtp_reply *reply, struct smtp_result *res);
/* The same for a reply that is the only one awaited whatever PIPELINING
   says (AUTH steps): bytes beyond it are always a protocol error. */
int smtp__read_reply_one(struct smtp_conn *c, int timeout, const char *command,
                         struct smtp_reply *reply, struct smtp_result *res);
/* Marks the connection closed and closes the socket (no QUIT). */
void smtp__conn_close(struct smtp_conn *c);
/* Parses an EHLO reply into c->ext (replacing the old list). */
int smtp__conn_set_ext(struct smtp_conn *c, const struct smtp_reply *r);
void smtp__conn_forget_ext(struct smtp_conn *c);
/* EHLO with HELO fallback: the reply goes into res. */
int smtp__ehlo(struct smtp_conn *c, const char *name, struct smtp_result *res);

/* ---- Bodies (body.c) ---- */

/* What a body scan learns before anything is sent. */
struct smtp__scan {
    unsigned long long size;
    size_t line; /* lines ended so far (for the reason) */
    int eightbit;
    int streamed; /* a reader: size and 8-bit unknown in advance */
    int utf8;     /* needs SMTPUTF8: a UTF-8 address, or raw 8-bit
                           text in a header field (RFC 6531 3.4, 6532) */
};
/* Scans text or lines bodies into sc (a reader is checked as it streams:
   sc->streamed); -1 with why on a NUL, an over-long or a missing line. */
int smtp__scan_body(const struct smtp_body *b, struct smtp__scan *sc, char *why,
                    size_t whylen);
/* After a 354: the prebuilt header block hdr (may be NULL), the body, the
   final dot, and in the same write as the dot the bytes of after (may be
   NULL: the next message's pipelined envelope).  8-bit body bytes are
   refused unless allow8bit.  *dot_sent once the dot line is fully written,
   *after_sent (may be NULL) once all of after is. */
int smtp__write_message(struct smtp_conn *c, const struct smtp__buf *hdr,
                        const struct smtp_body *body, int allow8bit,
                        const struct smtp__buf *after, struct smtp_result *res,
                        int *dot_sent, int *after_sent);

/* ---- The envelope of one transaction (envelope.c) ---- */

#define SMTP__PIPE_GROUP 100 /* commands per pipelined write */
#define SMTP__GO_ON 1        /* envelope accepted: send the body */

struct smtp__tx {
    struct smtp_conn *c;
    struct smtp_result *res;
    const char *from;
    const char *const *to;
    size_t nto;
    const struct smtp_send_opts *so;
    const struct smtp__scan *sc;
    int rset; /* RSET goes first */
    int pipelined;
    size_t ncmds; /* RSET? + MAIL + nto + DATA */
    int begun;    /* smtp__tx_begin done: rset, ncmds known */
    int written;  /* the envelope rode behind the previous
                                    message's final dot: read its replies */
    int mail_ok;
    int stop; /* transport error or 421: nothing more */
    struct smtp_reply mail_reply, data_reply, bad_reply;
    const char *bad_verb; /* the step bad_reply answered */
};
/* Sets up the transaction of to[0..nto) on conn; nothing is sent yet.
   Borrows every pointer for the transaction's life. */
void smtp__tx_init(struct smtp__tx *t, struct smtp_conn *conn, const char *from,
                   const char *const *to, size_t nto,
                   const struct smtp_send_opts *sopts,
                   const struct smtp__scan *sc, struct smtp_result *res);
/* The transaction starts (once): RSET first when one ran before. */
void smtp__tx_begin(struct smtp__tx *t);
/* Appends the command lines [from, to) to out; -1 when out of memory. */
int smtp__tx_lines(const struct smtp__tx *t, size_t from, size_t to,
                   struct smtp__buf *out);
/* Begins t, runs its envelope and judges it: SMTP__GO_ON when the body
   goes next, else the outcome's kind with res->status set. */
int smtp__tx_envelope(struct smtp__tx *t);
/* Adds rcpt to res's accepted (2xx) or rejected list (reply moved). */
int smtp__record_rcpt(struct smtp_result *res, const char *rcpt,
                      struct smtp_reply *reply);

/* ---- Sessions (txn.c) ---- */

/* Connects and greets with EHLO (and STARTTLS/AUTH as opts say); NULL
   with res filled. */
struct smtp_conn *smtp__open_session(const char *host,
                                     const struct smtp_opts *opts,
                                     struct smtp_result *res);

/* ---- AUTH (auth.c) ---- */
int smtp__auth(struct smtp_conn *c, struct smtp_result *res);
size_t smtp__b64_encode(const unsigned char *in, size_t n, char *out,
                        size_t outlen);

/* ---- Results (result.c) ---- */

/* Sets kind, command and a formatted message; returns kind. */
int smtp__fail(struct smtp_result *res, int kind, const char *command,
               const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Puts the RFC 3463 status a failure synthesizes into res->enhanced
   (smtp_result_settle derives the code from it). */
void smtp__set_status(struct smtp_result *res, const char *status);
/* smtp_result_settle(res), then returns kind. */
int smtp__settled(struct smtp_result *res, int kind);
/* Moves reply into res->reply and sets res->code from it. */
void smtp__result_take_reply(struct smtp_result *res, struct smtp_reply *r);

/* ---- Messages (msg.c) ---- */

/* Streaming normalizer + dot-stuffer (RFC 5321 4.5.2, 2.3.8). */
struct smtp__stuffer {
    int line_start;  /* next byte starts a line */
    int prev_cr;     /* last byte was a CR not yet resolved */
    size_t line_len; /* octets of the current line before stuffing */
    int refuse_8bit; /* a byte >= 0x80 is an error (no 8BITMIME) */
    /* The data is a whole message (no header block written by us): its
       Bcc and Resent-Bcc fields are dropped (RFC 5322 3.6.3). */
    int in_header; /* set by the caller: 1 until the empty line */
    int h_start, h_cr, h_drop, holding;
    size_t nhold;
    char hold[SMTP_MAX_LINE + 1]; /* a line's first bytes, undecided */
};
/* A stuffer for a body that starts a line, in_header 0. */
void smtp__stuffer_init(struct smtp__stuffer *s);
/* 1 when a byte of p[0..n) has its high bit set. */
int smtp__has_8bit(const char *p, size_t n);
/* 1 when a field of the header section of p[0..n) (up to the first
   empty line) holds a byte >= 0x80, its name in name; else 0. */
int smtp__header_8bit_field(const char *p, size_t n, char *name,
                            size_t namelen);
/* First index in [i, n) holding CR, LF or NUL; n when none. */
size_t smtp__run_end(const char *in, size_t i, size_t n);
/* Encodes in[0..n) into out; -1 with why on NUL or an over-long line. */
int smtp__stuff(struct smtp__stuffer *s, const char *in, size_t n,
                struct smtp__buf *out, char *why, size_t whylen);
/* Ends the body: pending CR, a final CRLF when needed, then ".\r\n". */
int smtp__stuff_end(struct smtp__stuffer *s, struct smtp__buf *out);

/* Appends the header block ("Name: value" folded, CRLF, then the empty line)
   with Date, Message-ID and From added when missing, if from is not NULL.  msgid (256 bytes)
   receives the Message-ID in use ("" when none).  -1 with why. */
int smtp__headers_write(const struct smtp_header *h, size_t n, const char *from,
                        const char *helo, struct smtp__buf *out, char *msgid,
                        char *why, size_t whylen);
/* Writes "<addr>" plus nothing else; addr already checked. */
int smtp__addr_has_utf8(const char *addr);
/* "VERB arg[ SMTPUTF8]" for VRFY, EXPN, HELP into cmd; -1 with why when
   the argument cannot be sent (utf8_ok: the server offers SMTPUTF8). */
int smtp__query_line(const char *verb, const char *arg, int utf8_ok, char *cmd,
                     size_t len, char *why, size_t whylen);
/* RFC 3461 xtext. */
int smtp__xtext(struct smtp__buf *out, const char *s);

#endif /* SMTPCORE_INTERNAL_H */
