/*
 * tests/support/transcript_internal.h - what transcript.c (the escaped
 * form, diffs, outcomes) and transcript_case.c (reading and writing case
 * files) share: a growable byte buffer and the reason writer.  Tests use
 * transcript.h only.
 */
#ifndef TESTS_SUPPORT_TRANSCRIPT_INTERNAL_H
#define TESTS_SUPPORT_TRANSCRIPT_INTERNAL_H

#include <stddef.h>

/* A growable byte buffer; ok turns 0 on the first failed allocation. */
struct tb {
    char *p;
    size_t len, cap;
    int ok;
};

/* Appends n bytes (keeping a NUL after them). */
void tr_tb_add(struct tb *b, const void *s, size_t n);
/* Appends a formatted string. */
__attribute__((format(printf, 2, 3))) void tr_tb_printf(struct tb *b,
                                                        const char *fmt, ...);
/* The buffer's bytes (caller frees), or NULL after a failed allocation. */
char *tr_tb_take(struct tb *b);
/* Writes a reason into why; returns -1. */
__attribute__((format(printf, 3, 4))) int tr_fail_why(char *why, size_t whylen,
                                                      const char *fmt, ...);

#endif
