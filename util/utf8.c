/*
 * util/utf8.c - UTF-8 validation and repair, for the JSON the API answers
 * and the JSON log lines.
 *
 * Public: util_utf8_len, util_utf8_repair.
 * Errors: util_utf8_repair returns NULL when out of memory.
 * Threads: stateless, thread-safe.
 */
#include "util/utf8.h"

#include <stdlib.h>
#include <string.h>

/* The byte count a lead byte c announces; 0 when c cannot start one. */
static size_t utf8_lead(unsigned char c)
{
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return 2;
    if (c >= 0xE0 && c <= 0xEF)
        return 3;
    if (c >= 0xF0 && c <= 0xF4)
        return 4;
    return 0;
}

/* Length of the valid UTF-8 sequence at s (RFC 3629 table 3-7), or 0. */
size_t util_utf8_len(const unsigned char *s, size_t n)
{
    size_t k = n > 0 ? utf8_lead(s[0]) : 0;
    unsigned char lo = 0x80, hi = 0xBF;

    if (k <= 1 || k > n)
        return k > n ? 0 : k;
    if (s[0] == 0xE0)
        lo = 0xA0; /* no overlong 3-byte forms */
    else if (s[0] == 0xED)
        hi = 0x9F; /* no surrogates */
    else if (s[0] == 0xF0)
        lo = 0x90; /* no overlong 4-byte forms */
    else if (s[0] == 0xF4)
        hi = 0x8F; /* nothing above U+10FFFF */
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < k; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return k;
}

/* A copy of s with every invalid byte replaced by U+FFFD. */
char *util_utf8_repair(const char *s, size_t n, size_t *outlen)
{
    const unsigned char *p = (const unsigned char *)s;
    char *out = n <= (((size_t)-1) - 1) / 3 ? malloc(n * 3 + 1) : NULL;
    size_t o = 0, i = 0;

    if (out == NULL)
        return NULL;
    while (i < n) {
        size_t k = util_utf8_len(p + i, n - i);
        if (k == 0) {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        } else {
            memcpy(out + o, p + i, k);
            o += k;
            i += k;
        }
    }
    out[o] = '\0';
    if (outlen != NULL)
        *outlen = o;
    return out;
}
