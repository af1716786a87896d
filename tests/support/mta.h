/*
 * mta.h - real mail servers as test peers (tests only): a private Postfix
 * instance, a private Exim 4, and nodemailer's smtp-server.
 *
 * Each is started on 127.0.0.1 with free ports in a private temp directory
 * (mta_dir) by the scripts in tests/peers/, and stopped by mta_stop by its
 * own process id:
 *   mta_start_postfix  tests/peers/postfix-peer.sh setup, then
 *                      `postfix -c DIR/etc start-fg` as our child; stopped
 *                      with `postfix -c DIR/etc stop`, and the master's pid
 *                      is checked gone (SIGKILL if not)
 *   mta_start_exim     tests/peers/exim-peer.sh setup, then `exim-peer.sh run`
 *                      (exec'd: our child is the daemon, `exim -bdf`);
 *                      SIGTERM.  Needs root and `scripts/deps.sh exim`.
 *   mta_start_node     node tests/peers/smtp_server_peer.js; SIGTERM.
 *
 * Listeners (mta_port by name):
 *   postfix  "plain" (STARTTLS may), "encrypt" (STARTTLS required),
 *            "submit" (STARTTLS + AUTH required), "smtps" (implicit TLS +
 *            AUTH), "rcptlimit" (smtpd_recipient_limit = 2); every listener
 *            has smtpd_forbid_bare_newline and smtpd_forbid_unauth_pipelining
 *   exim     "plain" (STARTTLS, AUTH under TLS), "submit" (STARTTLS + AUTH
 *            required), "smtps" (implicit TLS + AUTH); smtp_enforce_sync,
 *            smtp_accept_max_nonmail 10 (Exim's default)
 *   node     "smtp", the one listener, shaped by the flags below
 * Every server takes any local part at example.test, except local parts
 * starting with "unknown" (550 at RCPT).  AUTH: user MTA_AUTH_USER with the
 * password in mta_path(m, "authpass"); the certificate (its own CA) is
 * mta_path(m, "cert.pem").
 *
 * Reading back: one struct mta_msg per delivered copy (per recipient).
 * Postfix and Exim deliver each recipient's copy to one Maildir with a
 * Delivered-To / Envelope-to field naming it; they store lines with LF,
 * which the harness turns back into CRLF (so a bare CR or LF is lost), and
 * prepend their trace fields (Return-Path, Received, ...).  smtp-server's
 * copies are the bytes received (un-stuffed, CRLF kept), one entry per
 * recipient of the transaction, with the envelope and mailparser's parse.
 *
 * Errors: start functions print the reason (and the peer's log) on stderr
 * and return NULL; others return -1 / NULL.  MTA_KEEP=1 in the environment
 * keeps the directory (its path is printed); PEER_VERBOSE=1 prints the logs
 * at mta_stop.  Threads: one struct mta per thread at a time.
 */
#ifndef MAILPOOL_TESTS_MTA_H
#define MAILPOOL_TESTS_MTA_H

#include <stddef.h>
#include <sys/types.h>

#define MTA_AUTH_USER "alice@example.test"

struct mta;

/* mta_start_node flags. */
#define MTA_NODE_TLS 0x1 /* a certificate: STARTTLS offered */
#define MTA_NODE_AUTH \
    0x2 /* AUTH PLAIN/LOGIN required (under TLS with MTA_NODE_TLS) */

/* One delivered copy; strings NUL-terminated, owned by the array. */
struct mta_msg {
    char *rcpt;          /* the recipient of this copy */
    unsigned char *data; /* the stored message (see above), NUL after len */
    size_t len;
    const char *body; /* into data: after the first empty line (or data+len) */
    char *envelope;   /* node: N.json (envelope); else NULL */
    char *parsed;     /* node: N.parsed.json (mailparser); else NULL */
    char *file;       /* the file it was read from */
};

struct mta *mta_start_postfix(void);
struct mta *mta_start_exim(void);
/* flags: MTA_NODE_*; extra: more flags for smtp_server_peer.js (NULL-ended,
   may be NULL), e.g. {"--max-recipients", "2", NULL}. */
struct mta *mta_start_node(int flags, const char *const *extra);

/* Stop (see above), remove the directory, free; NULL is a no-op.  Returns 0
   when every process of the server is gone, -1 if one had to be killed. */
int mta_stop(struct mta *m);

/* The port of a listener (NULL: the first), -1 if there is none. */
int mta_port(const struct mta *m, const char *listener);
/* "127.0.0.1:PORT" of a listener into buf; buf, or NULL. */
const char *mta_hostport(const struct mta *m, const char *listener, char *buf,
                         size_t size);
/* The private directory (borrowed), and a path in it (caller frees). */
const char *mta_dir(const struct mta *m);
char *mta_path(const struct mta *m, const char *name);
/* The pid of our child (postfix: the start-fg script; exim, node: the
   server itself). */
pid_t mta_pid(const struct mta *m);
/* The server's main process: Postfix's master, else mta_pid. */
pid_t mta_server_pid(const struct mta *m);

/* Every copy delivered so far, sorted by file name; caller frees with
   mta_msgs_free.  0 or -1. */
int mta_messages(struct mta *m, struct mta_msg **out, size_t *n);
void mta_msgs_free(struct mta_msg *msgs, size_t n);
/* Waits until at least n copies are there, or timeout_ms passed; returns
   the count last seen (-1 on error). */
int mta_wait_messages(struct mta *m, size_t n, int timeout_ms);
/* Prints the server's logs on stderr (the tail of each): peer.log, and
   Postfix's maillog or Exim's mainlog, rejectlog and paniclog. */
void mta_show_logs(const struct mta *m);

/* The value of the first header field `name` (case-insensitive) of a copy,
   unfolded, copied; NULL if absent. */
char *mta_msg_header(const struct mta_msg *msg, const char *name);

#endif
