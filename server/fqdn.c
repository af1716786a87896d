/*
 * server/fqdn.c - the machine's fully qualified domain name for EHLO
 * (RFC 5321 4.1.4); see fqdn.h.
 */
#include "server/fqdn.h"

#include <limits.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* A name with a dot, not "localhost" or under it, that fits len. */
static int fqdn_usable(const char *name, size_t len)
{
    return name != NULL && strchr(name, '.') != NULL &&
           strncasecmp(name, "localhost", 9) != 0 && strlen(name) < len &&
           name[strlen(name) - 1] != '.';
}

int fqdn_lookup(char *buf, size_t len)
{
    char host[HOST_NAME_MAX + 1];
    struct addrinfo hints = { .ai_flags = AI_CANONNAME }, *ai = NULL;
    int found = 0;

    if (len == 0)
        return 0;
    buf[0] = '\0';
    if (gethostname(host, sizeof host) != 0)
        return 0;
    host[sizeof host - 1] = '\0';
    if (fqdn_usable(host, len)) {
        snprintf(buf, len, "%s", host);
        return 1;
    }
    if (getaddrinfo(host, NULL, &hints, &ai) == 0 && ai != NULL &&
        fqdn_usable(ai->ai_canonname, len)) {
        snprintf(buf, len, "%s", ai->ai_canonname);
        found = 1;
    }
    if (ai != NULL)
        freeaddrinfo(ai);
    return found;
}
