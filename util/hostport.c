/*
 * util/hostport.c - the host:port grammar (util/hostport.h) that the
 * configuration check, the HTTP listener and the health check share.
 *
 * Public: util_hostport_parse.
 * Errors: -1 with a message in the caller's buffer.
 * Threads: stateless, thread-safe.
 */
#include "util/hostport.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* Writes msg into why; returns -1. */
static int hp_fail(char *why, size_t whylen, const char *msg)
{
    if (why != NULL && whylen > 0)
        snprintf(why, whylen, "%s", msg);
    return -1;
}

/* The port in s (to its end); -1 unless 1*5DIGIT within the range. */
static int hp_port(const char *s, unsigned flags)
{
    size_t n = strlen(s);
    long v = 0;

    if (n == 0 || n > 5)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v > 65535 || (v == 0 && !(flags & UTIL_HP_PORT_ZERO)))
        return -1;
    return (int)v;
}

/* 1 when the n bytes of a host name hold only what a name may hold. */
static int hp_name_ok(const char *h, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)h[i];
        if (c <= ' ' || c == 0x7F || c == '[' || c == ']' || c == ':')
            return 0;
    }
    return 1;
}

/* Splits s into the host (h, *hn bytes) and the port text; *v6 when the
   host was bracketed.  0, or -1 with why. */
static int hp_split(const char *s, const char **h, size_t *hn,
                    const char **port, int *v6, char *why, size_t whylen)
{
    const char *colon;

    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL)
            return hp_fail(why, whylen, "an IPv6 address lacks its ']'");
        if (close[1] != ':')
            return hp_fail(why, whylen, "the port is missing");
        *h = s + 1;
        *hn = (size_t)(close - s - 1);
        *port = close + 2;
        *v6 = 1;
        return 0;
    }
    colon = strchr(s, ':');
    if (colon == NULL)
        return hp_fail(why, whylen, "the port is missing");
    if (strchr(colon + 1, ':') != NULL)
        return hp_fail(why, whylen, "an IPv6 address must be in brackets");
    *h = s;
    *hn = (size_t)(colon - s);
    *port = colon + 1;
    *v6 = 0;
    return 0;
}

/* Parses HOST:PORT or [IPv6]:PORT into *out. */
int util_hostport_parse(const char *s, unsigned flags,
                        struct util_hostport *out, char *why, size_t whylen)
{
    const char *h = NULL, *port = NULL; /* (set by hp_split; -O1's */
    size_t hn = 0;                      /* flow analysis cannot see */
    int v6 = 0;                         /* it) */
    unsigned char addr[sizeof(struct in6_addr)];

    memset(out, 0, sizeof *out);
    if (s == NULL || hp_split(s, &h, &hn, &port, &v6, why, whylen) < 0)
        return s == NULL ? hp_fail(why, whylen, "no address given") : -1;
    if ((out->port = hp_port(port, flags)) < 0)
        return hp_fail(why, whylen,
                       flags & UTIL_HP_PORT_ZERO
                           ? "the port must be a number from 0 to 65535"
                           : "the port must be a number from 1 to 65535");
    if (hn >= sizeof out->host)
        return hp_fail(why, whylen, "the host is longer than 255 bytes");
    memcpy(out->host, h, hn);
    out->host[hn] = '\0';
    out->v6 = v6;
    if (v6 && inet_pton(AF_INET6, out->host, addr) != 1)
        return hp_fail(why, whylen, "not an IPv6 address in the brackets");
    if (!v6 && (hn == 0 || (hn == 1 && h[0] == '*')))
        return hp_fail(why, whylen, "the host is missing");
    if (!v6 && !hp_name_ok(h, hn))
        return hp_fail(why, whylen,
                       "the host holds a blank, a control "
                       "character or a bracket");
    return 0;
}
