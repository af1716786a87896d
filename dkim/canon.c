/*
 * dkim/canon.c - RFC 6376 relaxed canonicalisation: the body hash, fed
 * while the body streams, and one header field at a time; the split of a
 * whole message's header section into fields.
 *
 * Public: dkim_body_new, dkim_body_update, dkim_body_final,
 * dkim_body_free, dkim_canon_header, dkim_parse_header.
 * The body is read as smtpcore's normaliser writes it to the wire: a lone
 * CR, a lone LF and CRLF each end one line; a last line without its end
 * gets one.  Relaxed (3.4.4): white space at the end of a line dropped,
 * each run of white space inside a line one SP, empty lines at the end
 * dropped.  The hash is SHA-256 through GnuTLS.
 * Errors: dkim_body_new NULL and dkim_parse_header -1 when out of memory.
 * Threads: a body hash belongs to one thread; nothing else has state.
 */
#include "dkim/dkim.h"
#include "dkim/internal.h"

#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>

#define DKIM_BODY_BUF 4096

struct dkim_body {
    gnutls_hash_hd_t sha;
    size_t empty; /* empty lines held (dropped if nothing follows) */
    int ws;       /* white space held inside the current line */
    int content;  /* the current line has a non-white byte */
    int cr;       /* the last byte was a CR */
    size_t nbuf;
    char buf[DKIM_BODY_BUF]; /* canonical bytes not yet hashed */
};

/* A new body hash. */
struct dkim_body *dkim_body_new(void)
{
    struct dkim_body *b = calloc(1, sizeof *b);

    if (b != NULL && gnutls_hash_init(&b->sha, GNUTLS_DIG_SHA256) < 0) {
        free(b);
        return NULL;
    }
    return b;
}

/* Hashes what the buffer holds. */
static void body_flush(struct dkim_body *b)
{
    if (b->nbuf > 0)
        gnutls_hash(b->sha, b->buf, b->nbuf);
    b->nbuf = 0;
}

/* Appends canonical bytes. */
static void body_put(struct dkim_body *b, const char *p, size_t n)
{
    if (b->nbuf + n > sizeof b->buf)
        body_flush(b);
    if (n > sizeof b->buf) {
        gnutls_hash(b->sha, p, n);
        return;
    }
    memcpy(b->buf + b->nbuf, p, n);
    b->nbuf += n;
}

/* The end of a line: an empty one is held, another is written. */
static void body_eol(struct dkim_body *b)
{
    if (b->content)
        body_put(b, "\r\n", 2);
    else
        b->empty++;
    b->content = 0;
    b->ws = 0;
}

/* A non-white run of a line: the empty lines and white space held before
   it go out first. */
static void body_text(struct dkim_body *b, const char *p, size_t n)
{
    if (!b->content)
        for (; b->empty > 0; b->empty--)
            body_put(b, "\r\n", 2);
    if (b->ws)
        body_put(b, " ", 1);
    b->ws = 0;
    b->content = 1;
    body_put(b, p, n);
}

/* Length of the run at p[0..n) free of CR, LF, SP and HTAB. */
static size_t body_run(const char *p, size_t n)
{
    size_t i = 0;

    while (i < n && p[i] != '\r' && p[i] != '\n' && p[i] != ' ' && p[i] != '\t')
        i++;
    return i;
}

/* Feeds body bytes. */
void dkim_body_update(struct dkim_body *b, const char *p, size_t n)
{
    size_t i = 0;

    while (i < n) {
        char c = p[i];

        if (b->cr) {
            b->cr = 0;
            body_eol(b);
            if (c == '\n') {
                i++;
                continue;
            }
        }
        if (c == '\r' || c == '\n') {
            if (c == '\r')
                b->cr = 1;
            else
                body_eol(b);
            i++;
        } else if (c == ' ' || c == '\t') {
            b->ws = 1;
            i++;
        } else {
            size_t k = body_run(p + i, n - i);

            body_text(b, p + i, k);
            i += k;
        }
    }
}

/* Ends the body and writes its hash in base64. */
void dkim_body_final(struct dkim_body *b, char out[DKIM_BH_LEN + 1])
{
    unsigned char d[32];

    if (b->cr || b->content)
        body_eol(b);
    b->cr = 0;
    body_flush(b);
    gnutls_hash_deinit(b->sha, d);
    b->sha = NULL;
    dkim__base64(d, sizeof d, out, DKIM_BH_LEN + 1);
}

/* Frees the hash. */
void dkim_body_free(struct dkim_body *b)
{
    if (b == NULL)
        return;
    if (b->sha != NULL)
        gnutls_hash_deinit(b->sha, NULL);
    free(b);
}

/* Writes c at out[n] when it fits; returns n + 1. */
static size_t canon_put(char *out, size_t cap, size_t n, char c)
{
    if (n < cap)
        out[n] = c;
    return n + 1;
}

/* Relaxed form of one field (3.4.2): name in lower case without the white
   space before the colon, the value unfolded, each white run one SP,
   none at its ends. */
size_t dkim_canon_header(const struct dkim_field *f, char *out, size_t cap)
{
    size_t n = 0, nl = f->name_len;
    int ws = 0, any = 0;

    while (nl > 0 && (f->name[nl - 1] == ' ' || f->name[nl - 1] == '\t'))
        nl--;
    for (size_t i = 0; i < nl; i++) {
        char c = f->name[i];

        n = canon_put(out, cap, n, c >= 'A' && c <= 'Z' ? (char)(c + 32) : c);
    }
    n = canon_put(out, cap, n, ':');
    for (size_t i = 0; i < f->value_len; i++) {
        char c = f->value[i];

        if (c == '\r' || c == '\n')
            continue;
        if (c == ' ' || c == '\t') {
            ws = 1;
            continue;
        }
        if (ws && any)
            n = canon_put(out, cap, n, ' ');
        ws = 0;
        any = 1;
        n = canon_put(out, cap, n, c);
    }
    n = canon_put(out, cap, n, '\r');
    return canon_put(out, cap, n, '\n');
}

/* The end of the line starting at i: the index of its CR or LF (or len);
   *next gets the start of the following line. */
static size_t line_end(const char *m, size_t len, size_t i, size_t *next)
{
    size_t e = i;

    while (e < len && m[e] != '\r' && m[e] != '\n')
        e++;
    *next = e;
    if (*next < len && m[*next] == '\r')
        (*next)++;
    if (*next < len && m[*next] == '\n' && (*next == e || m[e] == '\r'))
        (*next)++;
    return e;
}

/* Adds the field starting at s (its lines up to end) to the array. */
static int parse_add(struct dkim_field **v, size_t *n, size_t *cap,
                     const char *s, size_t end)
{
    const char *colon = memchr(s, ':', end);

    if (colon == NULL)
        return 0; /* not a field: left out */
    if (*n == *cap) {
        size_t nc = *cap ? 2 * *cap : 16;
        struct dkim_field *nv = realloc(*v, nc * sizeof *nv);

        if (nv == NULL)
            return -1;
        *v = nv;
        *cap = nc;
    }
    (*v)[(*n)++] = (struct dkim_field){ s, (size_t)(colon - s), colon + 1,
                                        end - (size_t)(colon - s) - 1 };
    return 0;
}

/* Splits the header section into fields (continuation lines joined). */
int dkim_parse_header(const char *msg, size_t len, struct dkim_field **fields,
                      size_t *nfields, size_t *body_off)
{
    size_t i = 0, cap = 0, start = 0, fend = 0, next;
    int open = 0;

    *fields = NULL;
    *nfields = 0;
    *body_off = len;
    while (i < len) {
        size_t e = line_end(msg, len, i, &next);

        if (e == i) { /* the empty line */
            *body_off = next;
            break;
        }
        if (msg[i] != ' ' && msg[i] != '\t') {
            if (open &&
                parse_add(fields, nfields, &cap, msg + start, fend - start) < 0)
                return -1;
            start = i;
            open = 1;
        }
        fend = e;
        i = next;
    }
    if (open && parse_add(fields, nfields, &cap, msg + start, fend - start) < 0)
        return -1;
    return 0;
}
