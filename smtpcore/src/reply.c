/*
 * reply.c - the SMTP reply grammar (RFC 5321 4.2), validated and bounded.
 *
 * A reply is one or more lines "NNN-text" ending with "NNN text" or "NNN";
 * the code's first digit is 2..5, and every line should carry the same
 * code.  A reply whose code changes mid-reply (a greeting "220-..."
 * continued by "521 ... blocked") is kept whole, with the last line's code;
 * smtp__reply_add says so and the reader decides (conn.c).  A reply is capped at SMTP_MAX_REPLY_LINES lines and SMTP_MAX_REPLY_BYTES
 * bytes (the line length cap is the reader's, in io.c).  Enhanced status
 * codes (RFC 3463) are read from the last line.  No shared state.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Splits one reply line; -1 when it is not of the grammar. */
int smtp__reply_line_parse(const char *line, size_t len, struct smtp__line *out)
{
    if (len < 3 || !is_digit(line[0]) || !is_digit(line[1]) ||
        !is_digit(line[2]))
        return -1;
    if (line[0] < '2' || line[0] > '5' || line[1] > '5')
        return -1;
    out->code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    if (len == 3) {
        out->more = 0;
        out->text = line + 3;
        out->textlen = 0;
        return 0;
    }
    if (line[3] != ' ' && line[3] != '-')
        return -1;
    out->more = line[3] == '-';
    out->text = line + 4;
    out->textlen = len - 4;
    for (size_t i = 0; i < out->textlen; i++) {
        unsigned char c = (unsigned char)out->text[i];
        if (c == '\0' || c == '\r' || c == '\n')
            return -1;
    }
    return 0;
}

/* Reads "c.sss.ddd" at the start of text, class matching the code. */
void smtp__enhanced_parse(int code, const char *text, size_t len, char out[16])
{
    out[0] = '\0';
    size_t i = 0;
    if (len < 5 || text[0] != '0' + code / 100 || text[1] != '.')
        return;
    i = 2;
    for (int part = 0; part < 2; part++) {
        size_t start = i;
        while (i < len && is_digit(text[i]) && i - start < 3)
            i++;
        if (i == start)
            return;
        if (part == 0) {
            if (i >= len || text[i] != '.')
                return;
            i++;
        }
    }
    if (i < len && (is_digit(text[i]) || text[i] != ' '))
        return;
    memcpy(out, text, i);
    out[i] = '\0';
}

/* Appends one parsed line to the reply, enforcing the caps; 1 when the
   line's code differs from the lines before (the reply takes it). */
int smtp__reply_add(struct smtp_reply *reply, const struct smtp__line *ln,
                    size_t *bytes, char *why, size_t whylen)
{
    int changed = reply->nlines > 0 && ln->code != reply->code;
    if (changed)
        snprintf(why, whylen, "reply code changed from %d to %d mid-reply",
                 reply->code, ln->code);
    if (reply->nlines >= SMTP_MAX_REPLY_LINES) {
        snprintf(why, whylen, "reply has more than %d lines",
                 SMTP_MAX_REPLY_LINES);
        return -1;
    }
    *bytes += ln->textlen + 6;
    if (*bytes > SMTP_MAX_REPLY_BYTES) {
        snprintf(why, whylen, "reply longer than %d bytes",
                 SMTP_MAX_REPLY_BYTES);
        return -1;
    }
    char **lines = realloc(reply->lines, (reply->nlines + 1) * sizeof *lines);
    if (lines == NULL) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    reply->lines = lines;
    char *text = malloc(ln->textlen + 1);
    if (text == NULL) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    memcpy(text, ln->text, ln->textlen);
    text[ln->textlen] = '\0';
    reply->lines[reply->nlines++] = text;
    reply->code = ln->code;
    if (!ln->more)
        smtp__enhanced_parse(ln->code, ln->text, ln->textlen, reply->enhanced);
    return changed;
}
