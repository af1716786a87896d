/*
 * util/hostport.h - the one host:port grammar of mailpool.
 *
 *   hostport = host ":" port / "[" IPv6-address "]" ":" port
 *   host     = 1*255 bytes without ':', '[', ']', blanks or controls
 *   port     = 1*5DIGIT, 1..65535 (0 too with UTIL_HP_PORT_ZERO)
 *
 * An IPv6 address is written in brackets, always.  A listener's ":PORT"
 * and "*:PORT" (every IPv4 interface) are config/'s spelling, written
 * "0.0.0.0:PORT" before they come here.
 */
#ifndef UTIL_HOSTPORT_H
#define UTIL_HOSTPORT_H

#include <stddef.h>

#define UTIL_HP_PORT_ZERO 1u /* port 0: a listener's "any free port" */

struct util_hostport {
    char host[256]; /* without the brackets, NUL-terminated */
    int port;
    int v6; /* the host was an [IPv6 address] */
};

/* Parses s into *out by the grammar above; 0, or -1 with a message saying
   what is wrong (never echoing s) in why. */
int util_hostport_parse(const char *s, unsigned flags,
                        struct util_hostport *out, char *why, size_t whylen);

#endif
