/*
 * fuzz_stuff.c - libFuzzer target: the body normalizer and dot-stuffer.
 * Property: what leaves has no bare CR or LF, every line starting with '.'
 * was doubled, it ends with CRLF.CRLF, and un-stuffing gives back the input
 * with line ends normalized.  When the first byte has bit 3 set the data
 * is a whole message (in_header): then also no line of the header section
 * on the wire is a Bcc or Resent-Bcc field.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtpcore/src/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* 1 when the line at w starts a Bcc or Resent-Bcc field. */
static int bcc_line(const char *w, size_t n)
{
    static const char *const names[] = { "bcc", "resent-bcc" };
    for (size_t k = 0; k < 2; k++) {
        size_t len = strlen(names[k]);
        if (n <= len || strncasecmp(w, names[k], len) != 0)
            continue;
        while (len < n && (w[len] == ' ' || w[len] == '\t'))
            len++;
        if (len < n && w[len] == ':')
            return 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct smtp__stuffer st;
    struct smtp__buf out;
    char why[128];
    smtp__stuffer_init(&st);
    st.in_header = size > 0 && (data[0] & 8) != 0;
    smtp__buf_init(&out, 1 << 24);
    size_t step = size > 0 ? (size_t)data[0] % 7 + 1 : 1;
    int bad = 0;
    for (size_t i = 0; i < size && !bad; i += step) {
        size_t k = size - i < step ? size - i : step;
        bad = smtp__stuff(&st, (const char *)data + i, k, &out, why,
                          sizeof why) < 0;
    }
    if (bad) {
        if (memchr(data, 0, size) == NULL && size < SMTP_MAX_LINE)
            abort(); /* refused without a NUL or a long line */
        smtp__buf_free(&out);
        return 0;
    }
    if (smtp__stuff_end(&st, &out) < 0)
        abort();
    const char *w = out.data;
    size_t n = out.len;
    if (n < 3 || memcmp(w + n - 3, ".\r\n", 3) != 0)
        abort();
    if (n > 3 && (n < 5 || memcmp(w + n - 5, "\r\n", 2) != 0))
        abort();
    int line_start = 1, header = size > 0 && (data[0] & 8) != 0;
    for (size_t i = 0; i + 3 < n; i++) {
        if (line_start && header && w[i] == '\r')
            header = 0; /* the empty line */
        if (line_start && header && bcc_line(w + i, n - 3 - i))
            abort(); /* a Bcc field left the header section */
        if (w[i] == '\n' && (i == 0 || w[i - 1] != '\r'))
            abort();
        if (w[i] == '\r' && w[i + 1] != '\n')
            abort();
        if (line_start && w[i] == '.' && w[i + 1] != '.')
            abort(); /* an unstuffed leading dot */
        if (line_start && w[i] == '.')
            i++;
        line_start = w[i] == '\n';
    }
    smtp__buf_free(&out);
    return 0;
}
