/*
 * server/fqdn.h - the name this machine gives itself in EHLO.
 *
 * RFC 5321 4.1.4: the EHLO argument is the client's fully qualified domain
 * name, or an address literal when it has none.  fqdn_lookup finds the
 * name; when it finds none the caller leaves smtp_opts.helo_name unset and
 * smtpcore sends the literal of the connection's own address.
 *
 * Threads: safe (gethostname, getaddrinfo).  May block for a name lookup:
 * call it once, at start.
 */
#ifndef MAILPOOL_FQDN_H
#define MAILPOOL_FQDN_H

#include <stddef.h>

/* Writes the machine's fully qualified name into buf: gethostname() when
   it holds a dot, else the canonical name getaddrinfo() gives for it, when
   that holds a dot; names under "localhost" never count.  1 when found,
   0 when the machine has no such name (buf then ""). */
int fqdn_lookup(char *buf, size_t len);

#endif /* MAILPOOL_FQDN_H */
