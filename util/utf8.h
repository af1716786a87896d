/*
 * util/utf8.h - UTF-8 validation and repair.
 */
#ifndef UTIL_UTF8_H
#define UTIL_UTF8_H

#include <stddef.h>

/* The length (1..4) of the valid UTF-8 sequence at s, of which at most n
   bytes may be read; 0 when the bytes there are not UTF-8 (RFC 3629:
   no overlong forms, no surrogates, nothing above U+10FFFF). */
size_t util_utf8_len(const unsigned char *s, size_t n);

/* A copy of the n bytes at s, NUL-terminated, in which each byte that does
   not start a valid sequence is replaced by U+FFFD; *outlen (when not NULL)
   receives its length.  Caller frees; NULL when out of memory. */
char *util_utf8_repair(const char *s, size_t n, size_t *outlen);

#endif
