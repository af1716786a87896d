/*
 * body.c - a message's body: the checks made before the first byte
 * (smtp_body_check, smtp__scan_body: NUL, line length, the SIZE it will
 * take, 8-bit bytes) and its streaming after a 354 (smtp__write_message:
 * normalised line ends, dot-stuffing, the final dot, in writes of CHUNK
 * bytes).
 * Errors: SMTP_ERR_LOCAL for a body that cannot be sent (the connection is
 * closed before a final dot, so nothing is delivered), else the transport's.
 * Threads: as the connection (one thread at a time).
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define CHUNK ((size_t)64 * 1024) /* body bytes per write */

/* Checks a body held in memory: NUL, line length; counts the octets it
   will take on the wire (lone CR or LF become CRLF, leading dots double)
   and whether it has 8-bit bytes.  *col carries the line across calls. */
static int scan_bytes(const char *p, size_t n, size_t *col,
                      struct smtp__scan *sc, char *why, size_t whylen)
{
    size_t i = 0;
    while (i < n) {
        if (p[i] == '\n' || p[i] == '\r') {
            if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
                i++;
            sc->size += 2;
            sc->line++;
            *col = 0;
            i++;
            continue;
        }
        if (p[i] == '\0') {
            snprintf(why, whylen, "NUL byte in body line %zu", sc->line + 1);
            return -1;
        }
        if (p[i] == '.' && *col == 0)
            sc->size++;
        size_t end = smtp__run_end(p, i, n);
        *col += end - i;
        sc->size += end - i;
        if (*col > SMTP_MAX_LINE) {
            snprintf(why, whylen,
                     "body line %zu is longer than %d octets "
                     "(RFC 5321 4.5.3.1.6)",
                     sc->line + 1, SMTP_MAX_LINE);
            return -1;
        }
        i = end;
    }
    sc->eightbit |= smtp__has_8bit(p, n);
    return 0;
}

/* Checks a body held in memory as smtp__scan_body would (see smtp.h). */
int smtp_body_check(const char *text, size_t len, char *why, size_t whylen)
{
    struct smtp__scan sc;
    size_t col = 0;
    char dummy[8];
    memset(&sc, 0, sizeof sc);
    if (why == NULL || whylen == 0) {
        why = dummy;
        whylen = sizeof dummy;
    }
    why[0] = '\0';
    return text == NULL && len > 0
               ? -1
               : scan_bytes(text, len, &col, &sc, why, whylen);
}

/* Scans text or lines bodies (a reader is checked as it streams). */
int smtp__scan_body(const struct smtp_body *b, struct smtp__scan *sc, char *why,
                    size_t whylen)
{
    size_t col = 0;
    memset(sc, 0, sizeof *sc);
    if (b == NULL)
        return 0;
    if (b->text != NULL) {
        if (scan_bytes(b->text, b->len, &col, sc, why, whylen) < 0)
            return -1;
        if (col > 0)
            sc->size += 2; /* the CRLF that ends the last line */
        return 0;
    }
    if (b->read != NULL) {
        sc->streamed = 1;
        return 0;
    }
    for (size_t i = 0; i < b->nlines; i++) {
        col = 0;
        if (b->lines[i] == NULL) {
            snprintf(why, whylen, "body line %zu is missing", i + 1);
            return -1;
        }
        if (scan_bytes(b->lines[i], strlen(b->lines[i]), &col, sc, why,
                       whylen) < 0)
            return -1;
        if (col > 0 || b->lines[i][0] == '\0') {
            sc->size += 2; /* the line's own CRLF */
            sc->line++;
        }
    }
    return 0;
}

/* Sends out's bytes once it holds a chunk (or always when force). */
static int flush(struct smtp_conn *c, struct smtp__buf *out, int force,
                 struct smtp_result *res)
{
    if (out->len == 0 || (!force && out->len < CHUNK))
        return SMTP_OK;
    int r = smtp__send_raw(c, out->data, out->len,
                           smtp__timeout(c, SMTP__T_DATA_BLOCK), "DATA", res);
    out->len = 0;
    return r;
}

/* Feeds one piece of body through the stuffer, flushing as it fills. */
static int feed(struct smtp_conn *c, struct smtp__stuffer *st,
                struct smtp__buf *out, const char *p, size_t n,
                struct smtp_result *res)
{
    char why[128];
    while (n > 0) {
        size_t k = n > CHUNK / 4 ? CHUNK / 4 : n;
        if (smtp__stuff(st, p, k, out, why, sizeof why) < 0) {
            smtp__conn_close(c); /* no final dot: nothing is delivered */
            return smtp__fail(res, SMTP_ERR_LOCAL, "DATA", "%s", why);
        }
        int r = flush(c, out, 0, res);
        if (r != SMTP_OK)
            return r;
        p += k;
        n -= k;
    }
    return SMTP_OK;
}

/* Writes the last of out, which ends with the final dot line and then
   carries after (may be NULL) in the same write.  *dot_sent once every byte
   of the dot line is written, *after_sent once all of after is. */
static int flush_last(struct smtp_conn *c, struct smtp__buf *out,
                      const struct smtp__buf *after, struct smtp_result *res,
                      int *dot_sent, int *after_sent)
{
    size_t dot_end = out->len, done = 0;
    int with = after != NULL && after->len > 0 &&
               smtp__buf_append(out, after->data, after->len) == 0;
    int r = smtp__send_raw_n(c, out->data, out->len,
                             smtp__timeout(c, SMTP__T_DATA_BLOCK), "DATA", res,
                             &done);
    *dot_sent = r == SMTP_OK || done >= dot_end;
    if (after_sent != NULL)
        *after_sent = r == SMTP_OK && with;
    out->len = 0;
    return r;
}

/* Feeds the whole body b (text, a reader or lines) through the stuffer. */
static int feed_body(struct smtp_conn *c, struct smtp__stuffer *st,
                     struct smtp__buf *out, const struct smtp_body *b,
                     struct smtp_result *res)
{
    char piece[CHUNK / 4];
    int r = SMTP_OK;

    if (b->text != NULL)
        return feed(c, st, out, b->text, b->len, res);
    if (b->read == NULL) {
        for (size_t i = 0; i < b->nlines && r == SMTP_OK; i++) {
            r = feed(c, st, out, b->lines[i], strlen(b->lines[i]), res);
            if (r == SMTP_OK)
                r = feed(c, st, out, "\n", 1, res);
        }
        return r;
    }
    for (;;) {
        ssize_t n = b->read(b->ctx, piece, sizeof piece);
        if (n == 0)
            return SMTP_OK;
        if (n < 0) {
            smtp__conn_close(c);
            return smtp__fail(res, SMTP_ERR_LOCAL, "DATA",
                              "body reader failed; message not sent");
        }
        if ((r = feed(c, st, out, piece, (size_t)n, res)) != SMTP_OK)
            return r;
    }
}

/* Streams the header block hdr (may be NULL), the body and the final dot
   after a 354, then after (may be NULL) in the dot's write.  allow8bit 0
   refuses 8-bit body bytes (no 8BITMIME).  *dot_sent is set once every
   byte of the final dot line is written, *after_sent (may be NULL) once
   all of after is. */
int smtp__write_message(struct smtp_conn *c, const struct smtp__buf *hdr,
                        const struct smtp_body *body, int allow8bit,
                        const struct smtp__buf *after, struct smtp_result *res,
                        int *dot_sent, int *after_sent)
{
    struct smtp__buf out;
    struct smtp__stuffer st;
    int r = SMTP_OK;
    enum smtp_conn_state before = c->state;

    *dot_sent = 0;
    if (after_sent != NULL)
        *after_sent = 0;
    smtp__set_state(c, SMTP_CONN_DATA);
    smtp__buf_init(&out, 4 * CHUNK);
    smtp__stuffer_init(&st);
    st.refuse_8bit = !allow8bit;
    st.in_header = hdr == NULL || hdr->len == 0; /* a whole message */
    if (hdr != NULL && hdr->len > 0 &&
        smtp__buf_append(&out, hdr->data, hdr->len) < 0) {
        smtp__buf_free(&out);
        smtp__conn_close(c);
        return smtp__fail(res, SMTP_ERR_LOCAL, "DATA", "out of memory");
    }
    if (body != NULL)
        r = feed_body(c, &st, &out, body, res);
    if (r == SMTP_OK && smtp__stuff_end(&st, &out) < 0)
        r = smtp__fail(res, SMTP_ERR_LOCAL, "DATA", "out of memory");
    if (r == SMTP_OK)
        r = flush_last(c, &out, after, res, dot_sent, after_sent);
    smtp__buf_free(&out);
    smtp__set_state(c, before);
    if (*dot_sent)
        smtp__trace_sent(c, ".\r\n", 3);
    if (after_sent != NULL && *after_sent)
        smtp__trace_sent(c, after->data, after->len);
    return r;
}
