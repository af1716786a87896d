/*
 * transcript.c - transcript case files: reading, the escaped line form,
 * diffs, writing FILE.new (see transcript.h; the format is in
 * tests/README.md).
 *
 * Public: tr_case_load, tr_case_free, tr_case_conn, tr_case_nconns,
 * tr_path_name, tr_outcome_clear, tr_outcome_accept, tr_outcome_reject,
 * tr_decode_line, tr_escape, tr_diff, tr_outcome_diff, tr_write_new.
 *
 * Errors: -1 / NULL, with the reason (file and line) in the caller's
 * buffer.  libc only; nothing global is mutable.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/transcript.h"
#include "tests/support/tsupport.h"

#define RUN_MIN 16         /* a run of one byte this long is written \{N*c} */
#define REPEAT_MAX 1000000 /* largest N in \{N*TEXT} */
#define DIFF_LINES 3       /* lines of each side shown after a difference */

/* A growable byte buffer; ok turns 0 on the first failed allocation. */
struct tb {
    char *p;
    size_t len, cap;
    int ok;
};

/* Appends n bytes (keeping a NUL after them). */
static void tb_add(struct tb *b, const void *s, size_t n)
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
__attribute__((format(printf, 2, 3))) static void tb_printf(struct tb *b,
                                                            const char *fmt,
                                                            ...)
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
        tb_add(b, small, (size_t)n);
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
    tb_add(b, big, (size_t)n);
    free(big);
}

/* The buffer's bytes (caller frees), or NULL after a failed allocation. */
static char *tb_take(struct tb *b)
{
    if (!b->ok) {
        free(b->p);
        return NULL;
    }
    if (b->p == NULL)
        tb_add(b, "", 0);
    return b->ok ? b->p : NULL;
}

/* Writes a reason into why. */
__attribute__((format(printf, 3, 4))) static int fail_why(char *why,
                                                          size_t whylen,
                                                          const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    return -1;
}

const char *tr_path_name(enum tr_path p)
{
    static const char *const names[TR_NPATHS] = { "library", "serve", "cli" };
    return (unsigned)p < TR_NPATHS ? names[p] : "?";
}

/* The path of this name, or -1. */
static int path_of(const char *s, size_t len)
{
    for (int p = 0; p < TR_NPATHS; p++)
        if (strlen(tr_path_name((enum tr_path)p)) == len &&
            memcmp(tr_path_name((enum tr_path)p), s, len) == 0)
            return p;
    return -1;
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
        return fail_why(why, whylen, "\\{N*TEXT} wants 1 <= N <= %d and a '*'",
                        REPEAT_MAX);
    i++;
    struct tb unit = { .ok = 1 };
    if (decode_span(s, len, &i, '}', &unit, why, whylen) < 0) {
        free(unit.p);
        return -1;
    }
    for (unsigned long k = 0; k < n; k++)
        tb_add(out, unit.p != NULL ? unit.p : "", unit.len);
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
        return fail_why(why, whylen,
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
            return fail_why(why, whylen, "\\x wants two hex digits");
        byte = (char)(hi * 16 + lo);
        i += 2;
        break;
    }
    case '{': *pos = i; return decode_repeat(s, len, pos, out, why, whylen);
    default: return fail_why(why, whylen, "unknown escape \\%c", ch);
    }
    tb_add(out, &byte, 1);
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
            tb_add(out, &s[i++], 1);
            continue;
        }
        i++;
        if (decode_escape(s, len, &i, out, why, whylen) < 0)
            return -1;
    }
    if (stop >= 0)
        return fail_why(why, whylen, "\\{ without its closing '%c'", stop);
    *pos = i;
    return 0;
}

int tr_decode_line(const char *line, size_t len, char **out, size_t *outlen,
                   char *why, size_t whylen)
{
    if (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t'))
        return fail_why(why, whylen,
                        "a blank at the end of the line: write "
                        "\\s for a space, \\t for a tab");
    for (size_t i = 0; i < len; i++)
        if (line[i] == '\r')
            return fail_why(why, whylen,
                            "a raw CR in the case file: write \\r");
    struct tb b = { .p = *out, .len = *outlen, .cap = *outlen, .ok = 1 };
    size_t pos = 0;
    if (decode_span(line, len, &pos, -1, &b, why, whylen) < 0) {
        *out = b.p;
        *outlen = b.len;
        return -1;
    }
    if (pos == len)
        tb_add(&b, "\r\n", 2);
    *out = b.p;
    *outlen = b.len;
    return b.ok ? 0 : fail_why(why, whylen, "out of memory");
}

/* The escape of one byte (c), as it appears in the line form. */
static void escape_byte(struct tb *b, unsigned char c, int in_braces)
{
    switch (c) {
    case '\\': tb_add(b, "\\\\", 2); return;
    case '\r': tb_add(b, "\\r", 2); return;
    case '\n': tb_add(b, "\\n", 2); return;
    case '\t': tb_add(b, "\\t", 2); return;
    default: break;
    }
    if (c < 0x20 || c >= 0x7f || (in_braces && c == '}'))
        tb_printf(b, "\\x%02x", c);
    else
        tb_add(b, &c, 1);
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
            tb_printf(b, "\\{%zu*", run);
            escape_byte(b, (unsigned char)s[i], 1);
            tb_add(b, "}", 1);
            i += run;
            continue;
        }
        if (i == 0 && len >= 3 && memcmp(s, "---", 3) == 0)
            tb_add(b, "\\x2d", 4); /* never read as a section */
        else
            escape_byte(b, (unsigned char)s[i], 0);
        i++;
    }
    if (len - end >= RUN_MIN)
        tb_printf(b, "\\{%zu*\\s}", len - end);
    else
        for (size_t i = end; i < len; i++)
            tb_add(b, "\\s", 2);
    if (!crlf)
        tb_add(b, "\\c", 2);
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

char *tr_escape(const char *bytes, size_t len)
{
    struct tb b = { .ok = 1 };
    size_t pos = 0;
    while (pos < len) {
        int crlf;
        size_t n = line_at(bytes + pos, len - pos, &crlf);
        escape_line(&b, bytes + pos, n, crlf);
        tb_add(&b, "\n", 1);
        pos += n + (crlf ? 2 : 0);
    }
    return tb_take(&b);
}

/* ---- Diffs ---- */

/* Appends "  label line K: <escaped>" for the line at s[*pos], or the end. */
static void show_line(struct tb *b, const char *label, size_t k, const char *s,
                      size_t len, size_t *pos)
{
    tb_printf(b, "    %-9s line %zu: ", label, k);
    if (*pos >= len) {
        tb_printf(b, "(no more bytes)\n");
        return;
    }
    int crlf;
    size_t n = line_at(s + *pos, len - *pos, &crlf);
    escape_line(b, s + *pos, n, crlf);
    tb_add(b, "\n", 1);
    *pos += n + (crlf ? 2 : 0);
}

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
    tb_printf(&b,
              "  first difference at line %zu (byte %zu); expected %zu "
              "bytes, got %zu\n",
              k, wp, wlen, glen);
    if (have_prev)
        show_line(&b, "same", k - 1, want, wlen, &prev);
    for (size_t i = 0; i < DIFF_LINES && (wp < wlen || i == 0); i++)
        show_line(&b, "expected", k + i, want, wlen, &wp);
    for (size_t i = 0; i < DIFF_LINES && (gp < glen || i == 0); i++)
        show_line(&b, "got", k + i, got, glen, &gp);
    return tb_take(&b);
}

char *tr_outcome_diff(const struct tr_outcome *want,
                      const struct tr_outcome *got)
{
    struct tb b = { .ok = 1 };
    if (want->http != got->http)
        tb_printf(&b, "  http: expected %d, got %d\n", want->http, got->http);
    if (strcmp(want->status, got->status) != 0)
        tb_printf(&b, "  status: expected %s, got %s\n", want->status,
                  got->status);
    if (want->code != got->code)
        tb_printf(&b, "  code: expected %d, got %d\n", want->code, got->code);
    int same = want->naccepted == got->naccepted;
    for (size_t i = 0; same && i < want->naccepted; i++)
        same = strcmp(want->accepted[i], got->accepted[i]) == 0;
    if (!same) {
        tb_printf(&b, "  accepted: expected%s", want->naccepted ? "" : " none");
        for (size_t i = 0; i < want->naccepted; i++)
            tb_printf(&b, " %s", want->accepted[i]);
        tb_printf(&b, "; got%s", got->naccepted ? "" : " none");
        for (size_t i = 0; i < got->naccepted; i++)
            tb_printf(&b, " %s", got->accepted[i]);
        tb_printf(&b, "\n");
    }
    same = want->nrejected == got->nrejected;
    for (size_t i = 0; same && i < want->nrejected; i++)
        same = strcmp(want->rejected[i].rcpt, got->rejected[i].rcpt) == 0 &&
               want->rejected[i].code == got->rejected[i].code;
    if (!same) {
        tb_printf(&b, "  rejected: expected%s", want->nrejected ? "" : " none");
        for (size_t i = 0; i < want->nrejected; i++)
            tb_printf(&b, " %s %d", want->rejected[i].rcpt,
                      want->rejected[i].code);
        tb_printf(&b, "; got%s", got->nrejected ? "" : " none");
        for (size_t i = 0; i < got->nrejected; i++)
            tb_printf(&b, " %s %d", got->rejected[i].rcpt,
                      got->rejected[i].code);
        tb_printf(&b, "\n");
    }
    if (b.ok && b.len == 0)
        return NULL;
    return tb_take(&b);
}

/* ---- Outcomes ---- */

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

/* ---- Reading a case ---- */

/* Where the reader is: the header lines, or a section. */
enum sect { S_HEAD, S_SCRIPT, S_MESSAGE, S_OUTCOME, S_CONN };

/* The state of one load. */
struct rd {
    struct tr_case *c;
    enum sect sect;
    struct tb script, message;
    int seen_outcome;
    int have_keep; /* keep_len is set */
    char *why;
    size_t whylen;
};

/* A decimal int in [lo, hi] from s (len bytes); 0, or -1. */
static int parse_int(const char *s, size_t len, long lo, long hi, int *out)
{
    char buf[24];
    if (len == 0 || len >= sizeof buf)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    errno = 0;
    long v = strtol(buf, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

/* "key: value" into key and value (both trimmed); 0, or -1. */
static int split_kv(const char *line, size_t len, const char **key,
                    size_t *klen, const char **val, size_t *vlen)
{
    const char *colon = memchr(line, ':', len);
    if (colon == NULL)
        return -1;
    *key = line;
    *klen = (size_t)(colon - line);
    *val = colon + 1;
    *vlen = len - *klen - 1;
    while (*vlen > 0 && (**val == ' ' || **val == '\t')) {
        (*val)++;
        (*vlen)--;
    }
    while (*vlen > 0 && ((*val)[*vlen - 1] == ' ' || (*val)[*vlen - 1] == '\t'))
        (*vlen)--;
    return 0;
}

/* A set of path names separated by blanks into a bit set; 0, or -1. */
static int parse_paths(const char *s, size_t len, unsigned *set)
{
    *set = 0;
    size_t i = 0;
    while (i < len) {
        while (i < len && s[i] == ' ')
            i++;
        size_t j = i;
        while (j < len && s[j] != ' ')
            j++;
        if (j > i) {
            int p = path_of(s + i, j - i);
            if (p < 0)
                return -1;
            *set |= 1u << p;
        }
        i = j;
    }
    return *set != 0 ? 0 : -1;
}

/* "xfail: PATH... : reason". */
static int head_xfail(struct rd *r, const char *v, size_t vlen)
{
    const char *colon = memchr(v, ':', vlen);
    unsigned set;
    if (colon == NULL || parse_paths(v, (size_t)(colon - v), &set) < 0)
        return fail_why(r->why, r->whylen, "xfail wants 'PATH...: reason'");
    const char *why = colon + 1;
    while (*why == ' ')
        why++;
    size_t wlen = vlen - (size_t)(why - v);
    for (int p = 0; p < TR_NPATHS; p++) {
        if (!(set & (1u << p)))
            continue;
        free(r->c->xfail_why[p]);
        r->c->xfail_why[p] = strndup(why, wlen);
        if (r->c->xfail_why[p] == NULL)
            return fail_why(r->why, r->whylen, "out of memory");
    }
    r->c->xfail |= set;
    return 0;
}

/* One header line: title, paths, helo, tls, pipelining, xfail. */
static int head_line(struct rd *r, const char *line, size_t len)
{
    const char *k, *v;
    size_t kl, vl;
    if (split_kv(line, len, &k, &kl, &v, &vl) < 0)
        return fail_why(r->why, r->whylen, "want 'key: value'");
#define KEY(s) (kl == sizeof(s) - 1 && memcmp(k, s, kl) == 0)
    if (KEY("title") || KEY("helo")) {
        char **dst = KEY("title") ? &r->c->title : &r->c->helo;
        free(*dst);
        return (*dst = strndup(v, vl)) != NULL ? 0 : -1;
    }
    if (KEY("paths"))
        return parse_paths(v, vl, &r->c->paths) == 0
                   ? 0
                   : fail_why(r->why, r->whylen, "paths: library serve cli");
    if (KEY("tls"))
        return vl == 4 && memcmp(v, "none", 4) == 0
                   ? 0
                   : fail_why(r->why, r->whylen, "tls: only none is supported");
    if (KEY("pipelining")) {
        if (vl == 2 && memcmp(v, "on", 2) == 0)
            r->c->pipelining = 1;
        else if (vl == 3 && memcmp(v, "off", 3) == 0)
            r->c->pipelining = 0;
        else
            return fail_why(r->why, r->whylen, "pipelining: on or off");
        return 0;
    }
    if (KEY("xfail"))
        return head_xfail(r, v, vl);
#undef KEY
    return fail_why(r->why, r->whylen, "unknown key '%.*s'", (int)kl, k);
}

/* One outcome line: http, status, code, accepted, rejected. */
static int outcome_line(struct rd *r, const char *line, size_t len)
{
    struct tr_outcome *o = &r->c->want;
    const char *k, *v;
    size_t kl, vl;
    if (split_kv(line, len, &k, &kl, &v, &vl) < 0)
        return fail_why(r->why, r->whylen, "want 'key: value'");
#define KEY(s) (kl == sizeof(s) - 1 && memcmp(k, s, kl) == 0)
    if (KEY("http") || KEY("code"))
        return parse_int(v, vl, 0, 999, KEY("http") ? &o->http : &o->code) == 0
                   ? 0
                   : fail_why(r->why, r->whylen, "a number 0..999");
    if (KEY("status")) {
        if (vl == 0 || vl >= sizeof o->status)
            return fail_why(r->why, r->whylen, "status: sent, partial, ...");
        memcpy(o->status, v, vl);
        o->status[vl] = '\0';
        return 0;
    }
    char addr[600];
    if (KEY("accepted")) {
        if (vl == 0 || vl >= sizeof addr)
            return fail_why(r->why, r->whylen, "accepted: ADDRESS");
        memcpy(addr, v, vl);
        addr[vl] = '\0';
        return tr_outcome_accept(o, addr);
    }
    if (KEY("rejected")) {
        const char *sp = vl > 0 ? memrchr(v, ' ', vl) : NULL;
        int code;
        if (sp == NULL || (size_t)(sp - v) >= sizeof addr ||
            parse_int(sp + 1, vl - (size_t)(sp - v) - 1, 0, 999, &code) < 0)
            return fail_why(r->why, r->whylen, "rejected: ADDRESS CODE");
        memcpy(addr, v, (size_t)(sp - v));
        addr[sp - v] = '\0';
        return tr_outcome_reject(o, addr, code);
    }
#undef KEY
    return fail_why(r->why, r->whylen, "unknown key '%.*s'", (int)kl, k);
}

/* "--- NAME [ARGS]": switches section. */
static int section_line(struct rd *r, const char *line, size_t len)
{
    const char *s = line + 4;
    size_t n = len - 4;
    if (n == 6 && memcmp(s, "script", 6) == 0) {
        r->sect = S_SCRIPT;
    } else if (n == 7 && memcmp(s, "message", 7) == 0) {
        r->sect = S_MESSAGE;
    } else if (n == 7 && memcmp(s, "outcome", 7) == 0) {
        r->sect = S_OUTCOME;
        r->seen_outcome = 1;
    } else if (n > 5 && memcmp(s, "conn ", 5) == 0) {
        const char *num = s + 5, *sp = memchr(num, ' ', n - 5);
        size_t nl = sp != NULL ? (size_t)(sp - num) : n - 5;
        struct tr_conn cn = { .path = -1 };
        if (parse_int(num, nl, 1, 1000, &cn.n) < 0 ||
            (sp != NULL && (cn.path = path_of(sp + 1, n - 5 - nl - 1)) < 0))
            return fail_why(r->why, r->whylen, "want '--- conn N [PATH]'");
        for (size_t i = 0; i < r->c->nconns; i++)
            if (r->c->conns[i].n == cn.n && r->c->conns[i].path == cn.path)
                return fail_why(r->why, r->whylen, "connection %d twice", cn.n);
        struct tr_conn *nc = realloc(r->c->conns,
                                     (r->c->nconns + 1) * sizeof *nc);
        if (nc == NULL)
            return fail_why(r->why, r->whylen, "out of memory");
        r->c->conns = nc;
        nc[r->c->nconns++] = cn;
        r->sect = S_CONN;
    } else {
        return fail_why(r->why, r->whylen, "unknown section '%.*s'", (int)n, s);
    }
    if ((r->sect == S_OUTCOME || r->sect == S_CONN) && !r->have_keep) {
        r->c->keep_len = (size_t)(line - r->c->text);
        r->have_keep = 1;
    }
    return 0;
}

/* One line of the file (without its newline). */
static int one_line(struct rd *r, const char *line, size_t len)
{
    if (len >= 4 && memcmp(line, "--- ", 4) == 0)
        return section_line(r, line, len);
    switch (r->sect) {
    case S_HEAD:
        if (len == 0 || line[0] == '#')
            return 0;
        return head_line(r, line, len);
    case S_SCRIPT:
    case S_MESSAGE: {
        struct tb *b = r->sect == S_SCRIPT ? &r->script : &r->message;
        tb_add(b, line, len);
        tb_add(b, "\n", 1);
        return b->ok ? 0 : -1;
    }
    case S_OUTCOME: return len == 0 ? 0 : outcome_line(r, line, len);
    case S_CONN: {
        struct tr_conn *cn = &r->c->conns[r->c->nconns - 1];
        return tr_decode_line(line, len, &cn->bytes, &cn->len, r->why,
                              r->whylen);
    }
    }
    return -1;
}

/* Checks that the parts every case needs are there. */
static int check_case(struct rd *r)
{
    struct tr_case *c = r->c;
    if (c->title == NULL)
        return fail_why(r->why, r->whylen, "no title");
    if (r->script.len == 0 || r->message.len == 0)
        return fail_why(r->why, r->whylen, "no script or message section");
    if (!r->seen_outcome || c->want.status[0] == '\0')
        return fail_why(r->why, r->whylen, "no outcome section with a status");
    if (c->xfail & ~c->paths)
        return fail_why(r->why, r->whylen, "xfail names a path not run");
    c->script = tb_take(&r->script);
    c->message = tb_take(&r->message);
    r->script.p = r->message.p = NULL;
    if (c->helo == NULL)
        c->helo = strdup("localhost");
    for (size_t i = 0; i < c->nconns; i++)
        if (c->conns[i].bytes == NULL &&
            (c->conns[i].bytes = strdup("")) == NULL)
            return -1;
    return c->script && c->message && c->helo ? 0 : -1;
}

/* Base name of file without ".case"; caller frees. */
static char *case_name(const char *file)
{
    const char *base = strrchr(file, '/');
    base = base != NULL ? base + 1 : file;
    size_t n = strlen(base);
    if (n > 5 && strcmp(base + n - 5, ".case") == 0)
        n -= 5;
    return strndup(base, n);
}

int tr_case_load(const char *file, struct tr_case *c, char *why, size_t whylen)
{
    memset(c, 0, sizeof *c);
    c->pipelining = 1;
    c->want.http = 200;
    c->paths = (1u << TR_NPATHS) - 1;
    c->file = strdup(file);
    c->name = case_name(file);
    size_t len;
    c->text = ts_slurp(file, &len);
    if (c->text == NULL || c->file == NULL || c->name == NULL)
        return fail_why(why, whylen, "%s: %s", file, strerror(errno));
    char sub[384] = "";
    struct rd r = { .c = c,
                    .sect = S_HEAD,
                    .script = { .ok = 1 },
                    .message = { .ok = 1 },
                    .why = sub,
                    .whylen = sizeof sub };
    size_t pos = 0, lineno = 0;
    int rc = 0;
    while (pos < len && rc == 0) {
        const char *nl = memchr(c->text + pos, '\n', len - pos);
        size_t n = nl != NULL ? (size_t)(nl - (c->text + pos)) : len - pos;
        lineno++;
        rc = one_line(&r, c->text + pos, n);
        pos += n + 1;
    }
    if (rc == 0) {
        lineno = 0;
        rc = check_case(&r);
    }
    free(r.script.p);
    free(r.message.p);
    if (rc < 0) {
        if (lineno > 0)
            return fail_why(why, whylen, "%s:%zu: %s", file, lineno,
                            sub[0] ? sub : "out of memory");
        return fail_why(why, whylen, "%s: %s", file,
                        sub[0] ? sub : "out of memory");
    }
    if (!r.have_keep)
        c->keep_len = len;
    return 0;
}

void tr_case_free(struct tr_case *c)
{
    free(c->file);
    free(c->name);
    free(c->title);
    free(c->helo);
    for (int p = 0; p < TR_NPATHS; p++)
        free(c->xfail_why[p]);
    free(c->script);
    free(c->message);
    tr_outcome_clear(&c->want);
    for (size_t i = 0; i < c->nconns; i++)
        free(c->conns[i].bytes);
    free(c->conns);
    free(c->text);
    memset(c, 0, sizeof *c);
}

const struct tr_conn *tr_case_conn(const struct tr_case *c, int n,
                                   enum tr_path p)
{
    const struct tr_conn *common = NULL;
    for (size_t i = 0; i < c->nconns; i++) {
        if (c->conns[i].n != n)
            continue;
        if (c->conns[i].path == (int)p)
            return &c->conns[i];
        if (c->conns[i].path < 0)
            common = &c->conns[i];
    }
    return common;
}

int tr_case_nconns(const struct tr_case *c, enum tr_path p)
{
    int max = 0;
    for (size_t i = 0; i < c->nconns; i++)
        if ((c->conns[i].path < 0 || c->conns[i].path == (int)p) &&
            c->conns[i].n > max)
            max = c->conns[i].n;
    return max;
}

/* ---- Writing FILE.new ---- */

/* The outcome section as the reader takes it. */
static void write_outcome(struct tb *b, const struct tr_outcome *o)
{
    tb_printf(b, "--- outcome\n");
    if (o->http != 200)
        tb_printf(b, "http: %d\n", o->http);
    tb_printf(b, "status: %s\ncode: %d\n", o->status, o->code);
    for (size_t i = 0; i < o->naccepted; i++)
        tb_printf(b, "accepted: %s\n", o->accepted[i]);
    for (size_t i = 0; i < o->nrejected; i++)
        tb_printf(b, "rejected: %s %d\n", o->rejected[i].rcpt,
                  o->rejected[i].code);
}

int tr_write_new(const struct tr_case *c, const struct tr_outcome *got,
                 char *const *bytes, const size_t *lens, int nconns, char *why,
                 size_t whylen)
{
    struct tb b = { .ok = 1 };
    tb_add(&b, c->text, c->keep_len);
    if (c->keep_len > 0 && c->text[c->keep_len - 1] != '\n')
        tb_add(&b, "\n", 1);
    write_outcome(&b, got);
    for (int i = 0; i < nconns; i++) {
        char *esc = tr_escape(bytes[i] != NULL ? bytes[i] : "", lens[i]);
        tb_printf(&b, "--- conn %d\n", i + 1);
        if (esc == NULL)
            b.ok = 0;
        else
            tb_add(&b, esc, strlen(esc));
        free(esc);
    }
    char *text = tb_take(&b);
    if (text == NULL)
        return fail_why(why, whylen, "out of memory");
    char path[4096];
    snprintf(path, sizeof path, "%s.new", c->file);
    FILE *f = fopen(path, "w");
    int rc = f != NULL && fwrite(text, 1, strlen(text), f) == strlen(text) ? 0
                                                                           : -1;
    if (f != NULL && fclose(f) != 0)
        rc = -1;
    free(text);
    return rc == 0 ? 0 : fail_why(why, whylen, "%s: %s", path, strerror(errno));
}
