/*
 * config/cfg_value.c - the value parsers behind the config table: integers,
 * booleans, numbers, byte sizes, enums, and the checks for strings
 * (HOST:PORT listen addresses, host names, API key lists).
 *
 * Functions (declared in config/cfg_internal.h, private to config/):
 *   cfg_parse_int, cfg_parse_bool, cfg_parse_double, cfg_parse_size,
 *   cfg_parse_enum, cfg_size_text, cfg_check_listen, cfg_listen_parse,
 *   cfg_check_hostname,
 *   cfg_check_api_keys, cfg_check_line.
 *
 * Errors: the parsers return -1 and leave the wording to cfg_set, which knows
 * the key and where the value came from; the checks write a reason into why.
 * None of them echoes the value, so they are safe for secrets.
 * Threads: pure functions on their arguments; safe.
 */
#include "config/cfg_internal.h"
#include "util/hostport.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Parses a whole decimal integer (optional sign) within [min, max]. */
int cfg_parse_int(const char *s, long long min, long long max, int *out)
{
    const char *p = s;
    char *end;
    long long v;

    if (*p == '-' || *p == '+')
        p++;
    if (!isdigit((unsigned char)*p))
        return -1;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

/* Parses true/false, yes/no, on/off, 1/0 (any case) into 1 or 0. */
int cfg_parse_bool(const char *s, int *out)
{
    static const struct {
        const char *word;
        int value;
    } words[] = {
        { "true", 1 },  { "yes", 1 }, { "on", 1 },  { "1", 1 },
        { "false", 0 }, { "no", 0 },  { "off", 0 }, { "0", 0 },
    };
    size_t i;

    for (i = 0; i < sizeof words / sizeof words[0]; i++) {
        if (strcasecmp(s, words[i].word) == 0) {
            *out = words[i].value;
            return 0;
        }
    }
    return -1;
}

/* Parses a finite decimal number (no hex, inf or nan) within [min, max]. */
int cfg_parse_double(const char *s, double min, double max, double *out)
{
    char *end;
    double v;
    size_t i;

    if (*s == '\0')
        return -1;
    for (i = 0; s[i] != '\0'; i++) {
        if (!isdigit((unsigned char)s[i]) && strchr("+-.eE", s[i]) == NULL)
            return -1;
    }
    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !isfinite(v) || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* Parses bytes: digits with an optional k/K, m/M or g/G (powers of 1024). */
int cfg_parse_size(const char *s, long long min, long long max, long *out)
{
    unsigned long long v, mult = 1;
    char *end;

    if (!isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0)
        return -1;
    switch (*end) {
    case '\0': break;
    case 'k':
    case 'K':
        mult = 1ULL << 10;
        end++;
        break;
    case 'm':
    case 'M':
        mult = 1ULL << 20;
        end++;
        break;
    case 'g':
    case 'G':
        mult = 1ULL << 30;
        end++;
        break;
    default: return -1;
    }
    if (*end != '\0' || v > (unsigned long long)max / mult)
        return -1;
    v *= mult;
    if ((long long)v < min || (long long)v > max)
        return -1;
    *out = (long)v;
    return 0;
}

/* Matches s against choices ignoring case; *canonical gets the table's
   spelling. */
int cfg_parse_enum(const char *s, const char *const *choices,
                   const char **canonical)
{
    size_t i;

    for (i = 0; choices[i] != NULL; i++) {
        if (strcasecmp(s, choices[i]) == 0) {
            *canonical = choices[i];
            return 0;
        }
    }
    return -1;
}

/* Writes n as the shortest exact "<n>g", "<n>m", "<n>k" or "<n>". */
void cfg_size_text(long long n, char *buf, size_t len)
{
    static const struct {
        long long mult;
        char suffix;
    } units[] = {
        { 1LL << 30, 'g' },
        { 1LL << 20, 'm' },
        { 1LL << 10, 'k' },
    };
    size_t i;

    for (i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (n != 0 && n % units[i].mult == 0) {
            snprintf(buf, len, "%lld%c", n / units[i].mult, units[i].suffix);
            return;
        }
    }
    snprintf(buf, len, "%lld", n);
}

/* Checks HOST:PORT (util/hostport.h) with HOST an IPv4 literal,
   "localhost" or "[IPv6]", and a port from 0 (any free port) to 65535. */
int cfg_check_listen(const char *value, char *why, size_t whylen)
{
    /* ":PORT" and "*:PORT" (every IPv4 interface) are written as
       "0.0.0.0:PORT" by cfg_listen_canonical before this check. */
    struct util_hostport hp;
    unsigned char addr[sizeof(struct in6_addr)];
    char reason[96] = "";

    if (util_hostport_parse(value, UTIL_HP_PORT_ZERO, &hp, reason,
                            sizeof reason) == 0 &&
        ((!hp.v6 && strcmp(hp.host, "localhost") == 0) ||
         inet_pton(hp.v6 ? AF_INET6 : AF_INET, hp.host, addr) == 1))
        return 0;
    snprintf(why, whylen,
             "must be HOST:PORT with HOST an IPv4 address, "
             "localhost or [IPv6 address] and PORT from 0 to 65535%s%s%s",
             reason[0] ? " (" : "", reason, reason[0] ? ")" : "");
    return -1;
}

void cfg_listen_parse(const char *value, struct util_hostport *out)
{
    if (util_hostport_parse(value, UTIL_HP_PORT_ZERO, out, NULL, 0) < 0)
        memset(out, 0, sizeof *out); /* not reached: checked before */
}

/* ":PORT" or "*:PORT" as "0.0.0.0:PORT" in buf; any other value as is. */
const char *cfg_listen_canonical(const char *value, char *buf, size_t len)
{
    const char *port = value[0] == ':'                      ? value + 1
                       : value[0] == '*' && value[1] == ':' ? value + 2
                                                            : NULL;
    int n;

    if (port == NULL)
        return value;
    n = snprintf(buf, len, "0.0.0.0:%s", port);
    return n > 0 && (size_t)n < len ? buf : value;
}

/* Checks a host name or address: at most 255 bytes, no spaces. */
int cfg_check_hostname(const char *value, char *why, size_t whylen)
{
    size_t i;

    for (i = 0; value[i] != '\0'; i++) {
        if (isspace((unsigned char)value[i])) {
            snprintf(why, whylen, "must be a host name without spaces");
            return -1;
        }
    }
    if (i > 255) {
        snprintf(why, whylen, "must be a host name of at most 255 bytes");
        return -1;
    }
    return 0;
}

/* Checks "key1,key2" (blanks around the commas are allowed and ignored, as
   the API trims them): non-empty keys, no spaces or controls inside one. */
int cfg_check_api_keys(const char *value, char *why, size_t whylen)
{
    const char *p = value;
    for (;;) {
        size_t len = strcspn(p, ",");
        size_t lo = 0, hi = len;
        while (lo < hi && (p[lo] == ' ' || p[lo] == '\t'))
            lo++;
        while (hi > lo && (p[hi - 1] == ' ' || p[hi - 1] == '\t'))
            hi--;
        if (hi == lo) {
            snprintf(why, whylen,
                     "must be a comma-separated list of "
                     "non-empty keys");
            return -1;
        }
        for (size_t i = lo; i < hi; i++)
            if (isspace((unsigned char)p[i]) || iscntrl((unsigned char)p[i])) {
                snprintf(why, whylen,
                         "keys must not contain spaces or "
                         "control characters");
                return -1;
            }
        if (p[len] == '\0')
            return 0;
        p += len + 1;
    }
}

/* Checks that a string holds no control characters (line breaks above all:
   values end up in SMTP commands and log lines). */
int cfg_check_line(const char *value, char *why, size_t whylen)
{
    const char *p;

    for (p = value; *p != '\0'; p++) {
        if (iscntrl((unsigned char)*p)) {
            snprintf(why, whylen,
                     "must not contain control characters or "
                     "line breaks");
            return -1;
        }
    }
    return 0;
}

/* Checks that a libpq connection string carries no password (it would be
   printed by --print-config and seen in the process's environment). */
int cfg_check_pg_url(const char *value, char *why, size_t whylen)
{
    const char *at = strchr(value, '@'), *scheme = strstr(value, "://");
    if (cfg_check_line(value, why, whylen) < 0)
        return -1;
    if (strstr(value, "password") != NULL ||
        (scheme != NULL && at != NULL &&
         memchr(scheme + 3, ':', (size_t)(at - scheme - 3)) != NULL)) {
        snprintf(why, whylen,
                 "must not contain the password: put it in "
                 "queue.password_file (or PGPASSFILE)");
        return -1;
    }
    return 0;
}
