/*
 * peer.h - start, inspect and stop the SMTP test peers (tests only).
 *
 * Three peers, each a child process listening on 127.0.0.1 only, each with a
 * private temp directory (peer_dir) that peer_stop removes:
 *   peer_start_fake      tests/fakes/fake_smtp.py driven by a JSON script
 *                        (format: tests/README.md); captures every byte
 *   peer_start_aiosmtpd  tests/peers/aiosmtpd_peer.py, a real aiosmtpd
 *                        (STARTTLS, AUTH, SMTPUTF8 by flags); captures bytes
 *   peer_start_sink      Postfix smtp-sink with fault flags passed through;
 *                        captures messages (its -D dump), not bytes
 *
 * Directory layout: script.json, ready, peer.log (the child's stdout and
 * stderr), capture/ (conn-N.bin, conn-N.out, messages.jsonl, ...), cert.pem
 * and key.pem when a peer made a self-signed certificate, sink/dump.
 *
 * Errors: start functions return NULL and say why on stderr (with the tail of
 * peer.log); other functions return -1 / NULL.  PEER_VERBOSE=1 in the
 * environment copies peer.log to stderr at peer_stop.
 *
 * Threads: a struct peer is used by one thread at a time; distinct peers are
 * independent.  Nothing global is mutable.
 */
#ifndef MAILPOOL_TESTS_PEER_H
#define MAILPOOL_TESTS_PEER_H

#include <stddef.h>

struct peer;

/* One message the peer took.  Strings are NUL-terminated and owned by the
 * array that peer_messages returns. */
struct peer_msg {
    int conn;          /* connection number from 1; 0 when unknown (sink) */
    char *mail_from;   /* reverse-path without <> ("" for the null sender) */
    char *mail_params; /* MAIL parameters, space-separated ("" if none) */
    char **rcpt_to;    /* forward-paths without <>, nrcpt of them */
    size_t nrcpt;
    unsigned char *data; /* the message bytes (see below), NUL after len */
    size_t len;
    int tls;  /* 1 / 0 session was TLS; -1 unknown (sink) */
    int auth; /* 1 / 0 session authenticated; -1 unknown */
};
/* What data holds, per peer:
 *   fake      the exact DATA bytes, still dot-stuffed, up to and including
 *             the CRLF before the final ".CRLF" (empty message: len 0)
 *   aiosmtpd  the same with the dot-stuffing removed (aiosmtpd's view)
 *   sink      smtp-sink's dump: un-stuffed, every CR dropped by the sink and
 *             each LF turned back into CRLF here; bare CR / LF are lost */

/* Start fake_smtp.py with this JSON script ("{}" or NULL = a correct
 * server).  Caller owns the result: peer_stop. */
struct peer *peer_start_fake(const char *script_json);

/* Start smtp-sink on a free port; extra_args (NULL-terminated, may be NULL)
 * go before the address, e.g. {"-r", "RCPT", NULL}.  Do not pass -d/-D/-S:
 * the harness uses -D and -S itself. */
struct peer *peer_start_sink(const char *const *extra_args);

/* The same on this port (a relay that comes back where it was); NULL when
 * the port is taken. */
struct peer *peer_start_sink_on(int port, const char *const *extra_args);

/* Start aiosmtpd_peer.py; extra_args as its flags, e.g.
 * {"--tls", "--auth-user", "u", "--auth-pass", "p", NULL}. */
struct peer *peer_start_aiosmtpd(const char *const *extra_args);

/* SIGTERM, bounded wait, SIGKILL; remove the directory; free.  NULL is a
 * no-op. */
void peer_stop(struct peer *p);

/* The TCP port on 127.0.0.1. */
int peer_port(const struct peer *p);

/* The peer's private directory (borrowed, valid until peer_stop). */
const char *peer_dir(const struct peer *p);

/* "127.0.0.1:PORT"; caller frees.  NULL on no memory. */
char *peer_hostport(const struct peer *p);

/* peer_dir(p) + "/" + name, e.g. "cert.pem"; caller frees. */
char *peer_path(const struct peer *p, const char *name);

/* All messages accepted so far.  *out is caller-owned (peer_msgs_free); on
 * success returns 0 (with *n possibly 0), on error -1. */
int peer_messages(struct peer *p, struct peer_msg **out, size_t *n);

/* Free what peer_messages returned; NULL is a no-op. */
void peer_msgs_free(struct peer_msg *msgs, size_t n);

/* Wait until at least n messages are there or timeout_ms passed; returns the
 * count last seen, -1 on error. */
int peer_wait_messages(struct peer *p, size_t n, int timeout_ms);

/* Exact bytes the peer received on connection conn (from 1): plaintext, and
 * after STARTTLS the decrypted stream.  Caller frees; NUL after *len.  NULL
 * if there is no such connection or the peer does not capture (sink). */
char *peer_conn_bytes(struct peer *p, int conn, size_t *len);

/* The same for the bytes the peer sent on connection conn. */
char *peer_conn_sent(struct peer *p, int conn, size_t *len);

/* Connections accepted so far; -1 when the peer does not count (sink). */
int peer_conn_count(struct peer *p);

/* Raw-socket helpers for tests that talk SMTP by hand. */

/* A blocking TCP socket connected to the peer, 5 s send/receive timeouts;
 * -1 on error.  Caller closes. */
int peer_connect(const struct peer *p);

/* Write all of s; 0 or -1. */
int peer_send(int fd, const char *s);

/* Read exactly one complete reply (every line up to "NNN " or "NNN" CRLF)
 * into buf as received, NUL-terminated; returns its code, -1 on EOF, timeout,
 * overflow or a line that is not a reply line. */
int peer_read_reply(int fd, char *buf, size_t size);

#endif
