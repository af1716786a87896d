/*
 * transcript.c - transcript case files: the escaped line form, diffs,
 * outcomes, and the growable buffer the case reader and writer share (see
 * transcript.h; the format is in tests/README.md).  Reading a case and
 * writing FILE.new are in transcript_case.c.
 *
 * Public: tr_path_name, tr_outcome_clear, tr_outcome_accept,
 * tr_outcome_reject, tr_decode_line, tr_escape, tr_diff, tr_outcome_diff.
 * Internal (transcript_internal.h): tr_tb_add, tr_tb_printf, tr_tb_take,
 * tr_fail_why.
 *
 * Errors: -1 / NULL, with the reason in the caller's buffer.  libc only;
 * nothing global is mutable.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/transcript.h"
#include "tests/support/transcript_internal.h"

#define RUN_MIN 16         /* a run of one byte this long is written \{N*c} */
#define REPEAT_MAX 1000000 /* largest N in \{N*TEXT} */
#define DIFF_LINES 3       /* lines of each side shown after a difference */

/* Appends n bytes (keeping a NUL after them). */
void tr_tb_add(struct tb *b, const void *s, size_t n)
{
    if (!b->ok)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (np == NULL) {
            b->ok = 0;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* Appends a formatted string. */
__attribute__((format(printf, 2, 3))) void tr_tb_printf(struct tb *b,
                                                        const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->ok = 0;
        return;
    }
    if ((size_t)n < sizeof small) {
        tr_tb_add(b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (big == NULL) {
        b->ok = 0;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    tr_tb_add(b, big, (size_t)n);
    free(big);
}

/* The buffer's bytes (caller frees), or NULL after a failed allocation. */
char *tr_tb_take(struct tb *b)
{
    if (!b->ok) {
        free(b->p);
        return NULL;
    }
    if (b->p == NULL)
        tr_tb_add(b, "", 0);
    return b->ok ? b->p : NULL;
}

/* Writes a reason into why. */
__attribute__((format(printf, 3, 4))) int tr_fail_why(char *why, size_t whylen,
                                                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    return -1;
}

/* The name of path p as the case files write it. */
const char *tr_path_name(enum tr_path p)
{
    static const char *const names[TR_NPATHS] = { "library", "serve", "cli" };
    return (unsigned)p < TR_NPATHS ? names[p] : "?";
}

/* ---- The escaped line form ---- */

/* Value of a hex digit, or -1. */
static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

static int decode_span(const char *s, size_t len, size_t *pos, int stop,
                       struct tb *out, char *why, size_t whylen);

/* \{N*TEXT} after the "\{": TEXT decoded, appended N times. */
static int decode_repeat(const char *s, size_t len, size_t *pos, struct tb *out,
                         char *why, size_t whylen)
{
    unsigned long n = 0;
    size_t i = *pos, digits = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9' && n <= REPEAT_MAX) {
        n = n * 10 + (unsigned long)(s[i++] - '0');
        digits++;
    }
    if (digits == 0 || n == 0 || n > REPEAT_MAX || i >= len || s[i] != '*')
        return tr_fail_why(
            why, whylen, "\\{N*TEXT} wants 1 <= N <= %d and a '*'", REPEAT_MAX);
    i++;
    struct tb unit = { .ok = 1 };
    if (decode_span(s, len, &i, '}', &unit, why, whylen) < 0) {
        free(unit.p);
        return -1;
    }
    for (unsigned long k = 0; k < n; k++)
        tr_tb_add(out, unit.p != NULL ? unit.p : "", unit.len);
    free(unit.p);
    *pos = i;
    return 0;
}

/* One escape after the backslash at *pos (already skipped). */
static int decode_escape(const char *s, size_t len, size_t *pos, struct tb *out,
                         char *why, size_t whylen)
{
    size_t i = *pos;
    if (i >= len)
        return tr_fail_why(why, whylen,
                           "a lone backslash ends the line "
                           "(write \\\\ for one)");
    char ch = s[i++], byte;
    switch (ch) {
    case '\\': byte = '\\'; break;
    case 'r': byte = '\r'; break;
    case 'n': byte = '\n'; break;
    case 't': byte = '\t'; break;
    case 's': byte = ' '; break;
    case 'x': {
        int hi = i < len ? hexval(s[i]) : -1;
        int lo = i + 1 < len ? hexval(s[i + 1]) : -1;
        if (hi < 0 || lo < 0)
            return tr_fail_why(why, whylen, "\\x wants two hex digits");
        byte = (char)(hi * 16 + lo);
        i += 2;
        break;
    }
    case '{': *pos = i; return decode_repeat(s, len, pos, out, why, whylen);
    default: return tr_fail_why(why, whylen, "unknown escape \\%c", ch);
    }
    tr_tb_add(out, &byte, 1);
    *pos = i;
    return 0;
}

/* Decodes s[*pos..len) into out up to the character stop (consumed; -1:
   to the end).  \c is left to the caller. */
static int decode_span(const char *s, size_t len, size_t *pos, int stop,
                       struct tb *out, char *why, size_t whylen)
{
    size_t i = *pos;
    while (i < len) {
        if (stop >= 0 && s[i] == stop) {
            *pos = i + 1;
            return 0;
        }
        if (s[i] == '\\' && i + 1 < len && s[i + 1] == 'c' && stop < 0 &&
            i + 2 == len)
            break;
        if (s[i] != '\\') {
            tr_tb_add(out, &s[i++], 1);
            continue;
        }
        i++;
        if (decode_escape(s, len, &i, out, why, whylen) < 0)
            return -1;
    }
    if (stop >= 0)
        return tr_fail_why(why, whylen, "\\{ without its closing '%c'", stop);
    *pos = i;
    return 0;
}

/* Decodes one escaped line and appends its bytes to *out. */
int tr_decode_line(const char *line, size_t len, char **out, size_t *outlen,
                   char *why, size_t whylen)
{
    if (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t'))
        return tr_fail_why(why, whylen,
                           "a blank at the end of the line: write "
                           "\\s for a space, \\t for a tab");
    for (size_t i = 0; i < len; i++)
        if (line[i] == '\r')
            return tr_fail_why(why, whylen,
                               "a raw CR in the case file: write \\r");
    struct tb b = { .p = *out, .len = *outlen, .cap = *outlen, .ok = 1 };
    size_t pos = 0;
    if (decode_span(line, len, &pos, -1, &b, why, whylen) < 0) {
        *out = b.p;
        *outlen = b.len;
        return -1;
    }
    if (pos == len)
        tr_tb_add(&b, "\r\n", 2);
    *out = b.p;
    *outlen = b.len;
    return b.ok ? 0 : tr_fail_why(why, whylen, "out of memory");
}

/* The escape of one byte (c), as it appears in the line form. */
static void escape_byte(struct tb *b, unsigned char c, int in_braces)
{
    switch (c) {
    case '\\': tr_tb_add(b, "\\\\", 2); return;
    case '\r': tr_tb_add(b, "\\r", 2); return;
    case '\n': tr_tb_add(b, "\\n", 2); return;
    case '\t': tr_tb_add(b, "\\t", 2); return;
    default: break;
    }
    if (c < 0x20 || c >= 0x7f || (in_braces && c == '}'))
        tr_tb_printf(b, "\\x%02x", c);
    else
        tr_tb_add(b, &c, 1);
}

/* One line (len bytes, without its CRLF) in the line form, without the
   newline; \c appended when it had no CRLF. */
static void escape_line(struct tb *b, const char *s, size_t len, int crlf)
{
    size_t end = len; /* trailing spaces become \s */
    while (end > 0 && s[end - 1] == ' ')
        end--;
    for (size_t i = 0; i < end;) {
        size_t run = 1;
        while (i + run < end && s[i + run] == s[i])
            run++;
        if (run >= RUN_MIN) {
            tr_tb_printf(b, "\\{%zu*", run);
            escape_byte(b, (unsigned char)s[i], 1);
            tr_tb_add(b, "}", 1);
            i += run;
            continue;
        }
        if (i == 0 && len >= 3 && memcmp(s, "---", 3) == 0)
            tr_tb_add(b, "\\x2d", 4); /* never read as a section */
        else
            escape_byte(b, (unsigned char)s[i], 0);
        i++;
    }
    if (len - end >= RUN_MIN)
        tr_tb_printf(b, "\\{%zu*\\s}", len - end);
    else
        for (size_t i = end; i < len; i++)
            tr_tb_add(b, "\\s", 2);
    if (!crlf)
        tr_tb_add(b, "\\c", 2);
}

/* Length of the line at s (up to, not including, its CRLF) and whether it
   had one. */
static size_t line_at(const char *s, size_t len, int *crlf)
{
    for (size_t i = 0; i + 1 < len; i++)
        if (s[i] == '\r' && s[i + 1] == '\n') {
            *crlf = 1;
            return i;
        }
    *crlf = 0;
    return len;
}

/* The escaped line form of bytes; caller frees. */
char *tr_escape(const char *bytes, size_t len)
{
    struct tb b = { .ok = 1 };
    size_t pos = 0;
    while (pos < len) {
        int crlf;
        size_t n = line_at(bytes + pos, len - pos, &crlf);
        escape_line(&b, bytes + pos, n, crlf);
        tr_tb_add(&b, "\n", 1);
        pos += n + (crlf ? 2 : 0);
    }
    return tr_tb_take(&b);
}

/* ---- Diffs ---- */

/* Appends "  label line K: <escaped>" for the line at s[*pos], or the end. */
static void show_line(struct tb *b, const char *label, size_t k, const char *s,
                      size_t len, size_t *pos)
{
    tr_tb_printf(b, "    %-9s line %zu: ", label, k);
    if (*pos >= len) {
        tr_tb_printf(b, "(no more bytes)\n");
        return;
    }
    int crlf;
    size_t n = line_at(s + *pos, len - *pos, &crlf);
    escape_line(b, s + *pos, n, crlf);
    tr_tb_add(b, "\n", 1);
    *pos += n + (crlf ? 2 : 0);
}

/* NULL when want and got are equal; else a readable report. */
char *tr_diff(const char *want, size_t wlen, const char *got, size_t glen)
{
    if (wlen == glen && memcmp(want, got, wlen) == 0)
        return NULL;
    size_t wp = 0, gp = 0, prev = 0, k = 1;
    int have_prev = 0;
    for (;;) { /* skip the equal lines */
        int wc, gc;
        size_t wn = line_at(want + wp, wlen - wp, &wc);
        size_t gn = line_at(got + gp, glen - gp, &gc);
        if (wp >= wlen || gp >= glen || wn != gn || wc != gc ||
            memcmp(want + wp, got + gp, wn) != 0)
            break;
        prev = wp;
        have_prev = 1;
        wp += wn + (wc ? 2 : 0);
        gp += gn + (gc ? 2 : 0);
        k++;
    }
    struct tb b = { .ok = 1 };
    tr_tb_printf(&b,
                 "  first difference at line %zu (byte %zu); expected %zu "
                 "bytes, got %zu\n",
                 k, wp, wlen, glen);
    if (have_prev)
        show_line(&b, "same", k - 1, want, wlen, &prev);
    for (size_t i = 0; i < DIFF_LINES && (wp < wlen || i == 0); i++)
        show_line(&b, "expected", k + i, want, wlen, &wp);
    for (size_t i = 0; i < DIFF_LINES && (gp < glen || i == 0); i++)
        show_line(&b, "got", k + i, got, glen, &gp);
    return tr_tb_take(&b);
}

/* NULL when the outcomes agree; else a report. */
char *tr_outcome_diff(const struct tr_outcome *want,
                      const struct tr_outcome *got)
{
    struct tb b = { .ok = 1 };
    if (want->http != got->http)
        tr_tb_printf(&b, "  http: expected %d, got %d\n", want->http,
                     got->http);
    if (strcmp(want->status, got->status) != 0)
        tr_tb_printf(&b, "  status: expected %s, got %s\n", want->status,
                     got->status);
    if (want->code != got->code)
        tr_tb_printf(&b, "  code: expected %d, got %d\n", want->code,
                     got->code);
    int same = want->naccepted == got->naccepted;
    for (size_t i = 0; same && i < want->naccepted; i++)
        same = strcmp(want->accepted[i], got->accepted[i]) == 0;
    if (!same) {
        tr_tb_printf(&b, "  accepted: expected%s",
                     want->naccepted ? "" : " none");
        for (size_t i = 0; i < want->naccepted; i++)
            tr_tb_printf(&b, " %s", want->accepted[i]);
        tr_tb_printf(&b, "; got%s", got->naccepted ? "" : " none");
        for (size_t i = 0; i < got->naccepted; i++)
            tr_tb_printf(&b, " %s", got->accepted[i]);
        tr_tb_printf(&b, "\n");
    }
    same = want->nrejected == got->nrejected;
    for (size_t i = 0; same && i < want->nrejected; i++)
        same = strcmp(want->rejected[i].rcpt, got->rejected[i].rcpt) == 0 &&
               want->rejected[i].code == got->rejected[i].code;
    if (!same) {
        tr_tb_printf(&b, "  rejected: expected%s",
                     want->nrejected ? "" : " none");
        for (size_t i = 0; i < want->nrejected; i++)
            tr_tb_printf(&b, " %s %d", want->rejected[i].rcpt,
                         want->rejected[i].code);
        tr_tb_printf(&b, "; got%s", got->nrejected ? "" : " none");
        for (size_t i = 0; i < got->nrejected; i++)
            tr_tb_printf(&b, " %s %d", got->rejected[i].rcpt,
                         got->rejected[i].code);
        tr_tb_printf(&b, "\n");
    }
    if (b.ok && b.len == 0)
        return NULL;
    return tr_tb_take(&b);
}

/* ---- Outcomes ---- */

/* Frees what an outcome owns and zeroes it. */
void tr_outcome_clear(struct tr_outcome *o)
{
    for (size_t i = 0; i < o->naccepted; i++)
        free(o->accepted[i]);
    free(o->accepted);
    for (size_t i = 0; i < o->nrejected; i++)
        free(o->rejected[i].rcpt);
    free(o->rejected);
    memset(o, 0, sizeof *o);
}

/* Appends rcpt to the accepted list; 0 or -1. */
int tr_outcome_accept(struct tr_outcome *o, const char *rcpt)
{
    char **na = realloc(o->accepted, (o->naccepted + 1) * sizeof *na);
    if (na == NULL)
        return -1;
    o->accepted = na;
    if ((na[o->naccepted] = strdup(rcpt)) == NULL)
        return -1;
    o->naccepted++;
    return 0;
}

/* Appends rcpt and its code to the rejected list; 0 or -1. */
int tr_outcome_reject(struct tr_outcome *o, const char *rcpt, int code)
{
    struct tr_rejected *nr = realloc(o->rejected,
                                     (o->nrejected + 1) * sizeof *nr);
    if (nr == NULL)
        return -1;
    o->rejected = nr;
    if ((nr[o->nrejected].rcpt = strdup(rcpt)) == NULL)
        return -1;
    nr[o->nrejected].code = code;
    o->nrejected++;
    return 0;
}
