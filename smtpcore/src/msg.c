/*
 * msg.c - what goes inside a transaction: envelope addresses, header
 * fields and the body, checked and encoded for the wire.
 *
 * Public: smtp_addr_check, smtp_header_check, smtp_header_unique.
 * Private: the header writer (folding, Date, Message-ID, From when
 * missing, Bcc dropped), the streaming body normalizer and dot-stuffer
 * (which drops Bcc from a whole message's header section), the query
 * line (VRFY, EXPN, HELP), xtext.
 *
 * Rules (SMTP-NOTES 3, 4): no CR, LF, NUL or other control in an address,
 * brackets written by the library only, none inside quotes either; header
 * names printable ASCII without ':'; a value never carries CR, LF or
 * another control but HTAB, and folds without a line of only white space;
 * a field RFC 5322 3.6 allows once is given once; Bcc and Resent-Bcc
 * never leave (RFC 5322 3.6.3); the body leaves here with
 * every lone CR or LF turned into CRLF, every line that starts with '.'
 * doubled, no line over 998 octets, ending in CRLF '.' CRLF.
 * No shared state but each thread's random bytes for the Message-ID,
 * drawn from getrandom(2) a block at a time (a forked child draws its
 * own).
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "internal.h"

#define WHY(...) (snprintf(why, whylen, __VA_ARGS__), -1)

static int is_atext(unsigned char c)
{
    if (c >= 0x80)
        return 1; /* UTF-8 (RFC 6531); needs SMTPUTF8 on the wire */
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        (c >= '0' && c <= '9'))
        return 1;
    return strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL && c != '\0';
}

/* Local part: dot-atom or quoted string; returns its length or -1. */
static long local_part(const char *a, char *why, size_t whylen)
{
    size_t i = 0;
    if (a[0] == '"') {
        for (i = 1; a[i] != '"'; i++) {
            unsigned char c = (unsigned char)a[i];
            if (c == '\\') {
                c = (unsigned char)a[++i];
                if (c < 32 || c == 127)
                    return WHY("bad quoted character in local part");
            } else if (c < 32 || c == 127) {
                return c == 0 ? WHY("unterminated quoted local part")
                              : WHY("control character in address");
            }
            if (c == '<' || c == '>')
                return WHY("'<' or '>' inside a quoted local part (a lax "
                           "server would end the path there)");
        }
        return (long)i + 1;
    }
    for (;; i++) {
        unsigned char c = (unsigned char)a[i];
        if (c == '.') {
            if (i == 0 || a[i - 1] == '.')
                return WHY("misplaced '.' in local part");
            continue;
        }
        if (is_atext(c))
            continue;
        break;
    }
    if (i == 0)
        return WHY("empty local part");
    if (a[i - 1] == '.')
        return WHY("local part ends with '.'");
    return (long)i;
}

/* Domain: dot-separated labels, or an address literal. */
static int domain_ok(const char *d, char *why, size_t whylen)
{
    size_t n = strlen(d);
    if (n == 0)
        return WHY("empty domain");
    if (n > SMTP_MAX_DOMAIN)
        return WHY("domain longer than %d octets", SMTP_MAX_DOMAIN);
    if (d[0] == '[') {
        if (d[n - 1] != ']' || n < 3)
            return WHY("bad address literal");
        for (size_t i = 1; i < n - 1; i++)
            if (!strchr("0123456789abcdefABCDEF:.IPv", d[i]))
                return WHY("bad character in address literal");
        return 0;
    }
    size_t label = 0;
    for (size_t i = 0; i <= n; i++) {
        unsigned char c = (unsigned char)d[i];
        if (c == '.' || c == '\0') {
            if (label == 0)
                return WHY("empty label in domain");
            if (d[i - 1] == '-')
                return WHY("domain label ends with '-'");
            label = 0;
            continue;
        }
        if (!(c >= 0x80 || c == '-' || (c >= 'a' && c <= 'z') ||
              (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')))
            return c < 32 || c == 127 ? WHY("control character in address")
                                      : WHY("bad character '%c' in domain", c);
        if (label == 0 && c == '-')
            return WHY("domain label starts with '-'");
        if (++label > 63)
            return WHY("domain label longer than 63 octets");
    }
    return 0;
}

/* Checks a mailbox for MAIL FROM / RCPT TO (without brackets). */
int smtp_addr_check(const char *addr, int allow_empty, char *why, size_t whylen)
{
    if (addr == NULL)
        return WHY("missing address");
    if (addr[0] == '\0')
        return allow_empty ? 0 : WHY("empty address");
    size_t n = strlen(addr);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)addr[i];
        if (c == '\r' || c == '\n')
            return WHY("CR or LF in address");
        if (c < 32 || c == 127)
            return WHY("control character in address");
    }
    if (n > SMTP_MAX_PATH - 2)
        return WHY("address longer than %d octets", SMTP_MAX_PATH - 2);
    if (strcasecmp(addr, "postmaster") == 0)
        return 0;
    long lp = local_part(addr, why, whylen);
    if (lp < 0)
        return -1;
    if (lp > SMTP_MAX_LOCAL_PART)
        return WHY("local part longer than %d octets", SMTP_MAX_LOCAL_PART);
    if (addr[lp] != '@') {
        unsigned char c = (unsigned char)addr[lp];
        if (c == '\0')
            return WHY("missing '@domain'");
        if (c == '<' || c == '>')
            return WHY("angle brackets are not allowed (they are added)");
        if (c == ' ')
            return WHY("space in address outside quotes");
        return WHY("bad character '%c' in local part", c);
    }
    return domain_ok(addr + lp + 1, why, whylen);
}

/* Appends "Name: value" folded at white space into lines of about 78
   octets (RFC 5322 2.2.3), or only checks that it can be when out is NULL.
   A fold goes before a run of white space that a non-white character
   follows, never elsewhere: no line is only white space (3.2.2), and white
   space that ends the value stays on the last line.  -1 when a piece
   cannot be brought under 998 octets. */
static int header_fold(struct smtp__buf *out, const char *name,
                       const char *value, char *why, size_t whylen)
{
    size_t start = strlen(name) + 2, col = start;
    if (out != NULL && (smtp__buf_append(out, name, start - 2) < 0 ||
                        smtp__buf_append(out, ": ", 2) < 0))
        return WHY("out of memory");
    const char *p = value;
    while (*p != '\0') {
        size_t ws = strspn(p, " \t");
        size_t w = ws + strcspn(p + ws, " \t"); /* white run + word */
        if (ws > 0 && p[ws] != '\0' && col > start && col + w > 78) {
            if (out != NULL && smtp__buf_append(out, "\r\n", 2) < 0)
                return WHY("out of memory");
            col = 0;
        }
        if (col + w > SMTP_MAX_LINE)
            return WHY("header %s has a word longer than %d octets (it "
                       "cannot be folded)",
                       name, SMTP_MAX_LINE);
        if (out != NULL && smtp__buf_append(out, p, w) < 0)
            return WHY("out of memory");
        col += w;
        p += w;
    }
    if (out != NULL && smtp__buf_append(out, "\r\n", 2) < 0)
        return WHY("out of memory");
    return 0;
}

/* Checks one header field: the name, no control but HTAB in the value (C0,
   DEL, and C1 as UTF-8: U+0080..U+009F, NEL among them), and a value that
   folds into lines of at most 998 octets. */
int smtp_header_check(const char *name, const char *value, char *why,
                      size_t whylen)
{
    if (name == NULL || name[0] == '\0')
        return WHY("empty header name");
    size_t n = strlen(name);
    if (n > 76)
        return WHY("header name longer than 76 characters");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c <= 32 || c >= 127 || c == ':')
            return WHY(
                "header name must be printable ASCII without ':' or space");
    }
    if (value == NULL)
        return WHY("missing header value");
    for (const unsigned char *p = (const unsigned char *)value; *p != 0; p++) {
        if (*p == '\r' || *p == '\n')
            return WHY("CR or LF in header value");
        if ((*p < 32 && *p != '\t') || *p == 127 ||
            (*p == 0xC2 && p[1] >= 0x80 && p[1] <= 0x9F))
            return WHY("control character in header value");
    }
    return header_fold(NULL, name, value, why, whylen);
}

/* 1 when RFC 5322 3.6 allows the field at most once in a message. */
int smtp_header_unique(const char *name)
{
    static const char *const once[] = {
        "Date", "From",       "Sender",      "Reply-To",   "To",     "Cc",
        "Bcc",  "Message-ID", "In-Reply-To", "References", "Subject"
    };
    for (size_t i = 0; name != NULL && i < sizeof once / sizeof once[0]; i++)
        if (strcasecmp(name, once[i]) == 0)
            return 1;
    return 0;
}

/* 1 for a field that is never transmitted (RFC 5322 3.6.3 Bcc, and
   3.6.6 Resent-Bcc): the writer drops it. */
static int header_hidden(const char *name)
{
    return strcasecmp(name, "Bcc") == 0 || strcasecmp(name, "Resent-Bcc") == 0;
}

/* 1 when an address needs SMTPUTF8. */
int smtp__addr_has_utf8(const char *addr)
{
    for (; *addr != '\0'; addr++)
        if ((unsigned char)*addr >= 0x80)
            return 1;
    return 0;
}

/* The line of a query: "VRFY arg", "EXPN arg", "HELP [arg]" (arg may be
   NULL or "").  The argument: at most 500 octets, no control.  Non-ASCII
   only for VRFY and EXPN, and only when the server offers SMTPUTF8
   (utf8_ok): then with the SMTPUTF8 parameter (RFC 6531 3.7.4).  HELP has
   no such parameter, so a non-ASCII topic is refused. */
int smtp__query_line(const char *verb, const char *arg, int utf8_ok, char *cmd,
                     size_t len, char *why, size_t whylen)
{
    int utf8 = 0;
    if (arg == NULL || arg[0] == '\0')
        return snprintf(cmd, len, "%s", verb) < (int)len
                   ? 0
                   : WHY("command too long");
    if (strlen(arg) > 500)
        return WHY("argument too long");
    for (const char *p = arg; *p != '\0'; p++) {
        if ((unsigned char)*p < 32 || *p == 127)
            return WHY("control character in the argument");
        utf8 |= (unsigned char)*p >= 0x80;
    }
    if (utf8 && strcmp(verb, "HELP") == 0)
        return WHY("non-ASCII HELP topic (no SMTPUTF8 form exists for HELP)");
    if (utf8 && !utf8_ok)
        return WHY("non-ASCII %s argument but the server does not offer "
                   "SMTPUTF8",
                   verb);
    return snprintf(cmd, len, "%s %s%s", verb, arg, utf8 ? " SMTPUTF8" : "") <
                   (int)len
               ? 0
               : WHY("command too long");
}

/* RFC 3461 4 xtext: '+', '=', and bytes outside 33..126 as +XX. */
int smtp__xtext(struct smtp__buf *out, const char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        int r = (c < 33 || c > 126 || c == '+' || c == '=')
                    ? smtp__buf_appendf(out, "+%02X", c)
                    : smtp__buf_append(out, s, 1);
        if (r < 0)
            return -1;
    }
    return 0;
}

/* RFC 5322 date in UTC, independent of the locale. */
static void rfc5322_date(char *out, size_t len)
{
    static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed",
                                     "Thu", "Fri", "Sat" };
    static const char mons[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    snprintf(out, len, "%s, %02d %s %04d %02d:%02d:%02d +0000",
             days[tm.tm_wday % 7], tm.tm_mday, mons[tm.tm_mon % 12],
             tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

#define MSG_RAND_BUF 1020 /* random bytes a thread draws at once: 85 ids */

/* Per thread: random bytes of one getrandom and how many are used. */
static _Thread_local unsigned char msg_rand[MSG_RAND_BUF];
static _Thread_local size_t msg_rand_used = MSG_RAND_BUF;
static pthread_once_t msg_rand_once = PTHREAD_ONCE_INIT;

/* In a forked child: its thread's bytes are its parent's, draw anew. */
static void msg_rand_forked(void)
{
    msg_rand_used = MSG_RAND_BUF;
}

/* Registers msg_rand_forked once a process. */
static void msg_rand_init(void)
{
    pthread_atfork(NULL, NULL, msg_rand_forked);
}

/* n (<= 16) random bytes into r from this thread's buffer, refilled with
   one getrandom when used up; -1 when the system has none to give. */
static int msg_rand_take(unsigned char *r, size_t n)
{
    pthread_once(&msg_rand_once, msg_rand_init);
    if (msg_rand_used + n > sizeof msg_rand) {
        size_t got = 0;
        while (got < sizeof msg_rand) {
            ssize_t k = getrandom(msg_rand + got, sizeof msg_rand - got, 0);
            if (k < 0 && errno != EINTR)
                return -1;
            got += k > 0 ? (size_t)k : 0;
        }
        msg_rand_used = 0;
    }
    memcpy(r, msg_rand + msg_rand_used, n);
    msg_rand_used += n;
    return 0;
}

/* "<time.random@domain>" where domain is the sender's or the HELO name. */
static void make_msgid(char *out, size_t len, const char *from,
                       const char *helo)
{
    unsigned char rnd[12];
    char hex[25];
    if (msg_rand_take(rnd, sizeof rnd) != 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        for (size_t i = 0; i < sizeof rnd; i++)
            rnd[i] = (unsigned char)((uintptr_t)out >> (i % 8) ^
                                     (unsigned long)ts.tv_nsec >> i);
    }
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof rnd; i++) {
        hex[2 * i] = digits[rnd[i] >> 4];
        hex[2 * i + 1] = digits[rnd[i] & 15];
    }
    hex[2 * sizeof rnd] = '\0';
    const char *at = from ? strrchr(from, '@') : NULL;
    const char *dom = at && at[1] && at[1] != '[' ? at + 1 : helo;
    snprintf(out, len, "<%llx.%s@%s>", (unsigned long long)time(NULL), hex,
             dom);
}

/* Case-insensitive search for a header name. */
static const char *header_find(const struct smtp_header *h, size_t n,
                               const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(h[i].name, name) == 0)
            return h[i].value;
    return NULL;
}

/* Writes the header block; adds Date, Message-ID and From when missing,
   drops Bcc and Resent-Bcc, refuses a field given twice that RFC 5322 3.6
   allows once. */
int smtp__headers_write(const struct smtp_header *h, size_t n, const char *from,
                        const char *helo, struct smtp__buf *out, char *msgid,
                        char *why, size_t whylen)
{
    char tmp[300];
    msgid[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        char w[160];
        if (smtp_header_check(h[i].name, h[i].value, w, sizeof w) < 0)
            return WHY("header %zu: %s", i + 1, w);
        for (size_t j = 0; j < i && smtp_header_unique(h[i].name); j++)
            if (strcasecmp(h[j].name, h[i].name) == 0)
                return WHY("headers %zu (%s) and %zu (%s): RFC 5322 3.6 "
                           "allows one %s field",
                           j + 1, h[j].name, i + 1, h[i].name, h[i].name);
    }
    if (from != NULL && header_find(h, n, "Date") == NULL) {
        rfc5322_date(tmp, sizeof tmp);
        if (smtp__buf_appendf(out, "Date: %s\r\n", tmp) < 0)
            return WHY("out of memory");
    }
    const char *id = header_find(h, n, "Message-ID");
    if (id == NULL && from != NULL) {
        make_msgid(msgid, 256, from, helo);
        if (smtp__buf_appendf(out, "Message-ID: %s\r\n", msgid) < 0)
            return WHY("out of memory");
    } else if (id != NULL) {
        snprintf(msgid, 256, "%s", id);
    }
    if (header_find(h, n, "From") == NULL && from != NULL && from[0] != '\0' &&
        smtp__buf_appendf(out, "From: <%s>\r\n", from) < 0)
        return WHY("out of memory");
    for (size_t i = 0; i < n; i++)
        if (!header_hidden(h[i].name) &&
            header_fold(out, h[i].name, h[i].value, why, whylen) < 0)
            return -1;
    return smtp__buf_append(out, "\r\n", 2) < 0 ? WHY("out of memory") : 0;
}

void smtp__stuffer_init(struct smtp__stuffer *s)
{
    memset(s, 0, sizeof *s);
    s->line_start = 1;
    s->h_start = 1;
}

/* Ends the current output line. */
static int stuff_eol(struct smtp__stuffer *s, struct smtp__buf *out)
{
    s->line_start = 1;
    s->line_len = 0;
    return smtp__buf_append(out, "\r\n", 2);
}

/* 1 when any byte has its high bit set; eight bytes at a time. */
int smtp__has_8bit(const char *p, size_t n)
{
    uint64_t acc = 0, w;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        memcpy(&w, p + i, 8);
        acc |= w;
    }
    for (; i < n; i++)
        acc |= (unsigned char)p[i];
    return (acc & UINT64_C(0x8080808080808080)) != 0;
}

/* Copies the field name of the header line field[0..flen) (up to its
   colon) into name. */
static void field_name(const char *field, size_t flen, char *name,
                       size_t namelen)
{
    const char *colon = memchr(field, ':', flen);
    size_t k = colon != NULL ? (size_t)(colon - field) : flen;

    snprintf(name, namelen, "%.*s", (int)(k < 64 ? k : 64), field);
}

/* The header section of p[0..n) (up to the first empty line; lone CR and
   LF end lines too): 1 when a field holds a byte >= 0x80, its name (as
   written, folded lines included) in name; 0 when none does. */
int smtp__header_8bit_field(const char *p, size_t n, char *name, size_t namelen)
{
    size_t i = 0, fstart = 0, flen = 0;
    while (i < n) {
        size_t end = i;
        while (end < n && p[end] != '\n' && p[end] != '\r')
            end++;
        if (end == i)
            return 0; /* the empty line ends the section */
        if (p[i] != ' ' && p[i] != '\t') {
            fstart = i; /* a field starts; else a continuation */
            flen = end - i;
        }
        if (smtp__has_8bit(p + i, end - i)) {
            field_name(p + fstart, flen, name, namelen);
            return 1;
        }
        i = end;
        if (i < n && p[i] == '\r')
            i++;
        if (i < n && p[i] == '\n')
            i++;
    }
    return 0;
}

/* First index in [i, n) holding CR, LF or NUL; n when none.  memchr is
   vectorised, so plain text costs a few instructions per 16 bytes. */
size_t smtp__run_end(const char *in, size_t i, size_t n)
{
    const char *p = in + i;
    size_t len = n - i;
    const char *nl = memchr(p, '\n', len);
    if (nl != NULL)
        len = (size_t)(nl - p);
    const char *cr = memchr(p, '\r', len);
    if (cr != NULL)
        len = (size_t)(cr - p);
    const char *nul = memchr(p, '\0', len);
    if (nul != NULL)
        len = (size_t)(nul - p);
    return i + len;
}

/* Encodes a chunk: lone CR/LF to CRLF, leading dots doubled. */
static int stuff_plain(struct smtp__stuffer *s, const char *in, size_t n,
                       struct smtp__buf *out, char *why, size_t whylen)
{
    size_t i = 0;
    while (i < n) {
        char c = in[i];
        if (s->prev_cr) {
            s->prev_cr = 0;
            if (stuff_eol(s, out) < 0)
                return WHY("out of memory");
            if (c == '\n') {
                i++;
                continue;
            }
        }
        if (c == '\n' || c == '\r') {
            if (c == '\r')
                s->prev_cr = 1;
            else if (stuff_eol(s, out) < 0)
                return WHY("out of memory");
            i++;
            continue;
        }
        if (c == '\0')
            return WHY("NUL byte in body");
        if (c == '.' && s->line_start) {
            if (smtp__buf_append(out, "..", 2) < 0)
                return WHY("out of memory");
            s->line_start = 0;
            s->line_len = 1; /* counted before stuffing (RFC 5321
                                   4.5.2, 4.5.3.1.6), as smtp_body_check */
            i++;
            continue;
        }
        size_t end = smtp__run_end(in, i, n);
        size_t len = end - i;
        if (s->line_len + len > SMTP_MAX_LINE)
            return WHY("body line longer than %d octets", SMTP_MAX_LINE);
        if (s->refuse_8bit && smtp__has_8bit(in + i, len))
            return WHY("8-bit body but the server does not offer 8BITMIME");
        if (smtp__buf_append(out, in + i, len) < 0)
            return WHY("out of memory");
        s->line_len += len;
        s->line_start = 0;
        i = end;
    }
    return 0;
}

/* What the bytes held at the start of a header line say: 1 the name of a
   field never transmitted and its colon (obsolete white space before the
   colon included, RFC 5322 4.5), 0 another line, 2 not known yet. */
static int hidden_verdict(const char *h, size_t n)
{
    static const char *const names[] = { "Bcc", "Resent-Bcc" };
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        size_t len = strlen(names[k]), j = len;
        if (strncasecmp(h, names[k], n < len ? n : len) != 0)
            continue;
        if (n <= len)
            return 2;
        while (j < n && (h[j] == ' ' || h[j] == '\t'))
            j++;
        return j == n ? 2 : h[j] == ':';
    }
    return 0;
}

/* Passes header bytes on, unless they belong to a dropped field. */
static int hdr_emit(struct smtp__stuffer *s, const char *p, size_t n,
                    struct smtp__buf *out, char *why, size_t whylen)
{
    return s->h_drop || n == 0 ? 0 : stuff_plain(s, p, n, out, why, whylen);
}

/* The header section of a message given whole: every line goes on except
   the lines of a Bcc or Resent-Bcc field (its folded lines too).  A line's
   first bytes are held until they tell a dropped name from another.  Stops
   at the empty line that ends the section; *used gets the bytes taken. */
static int stuff_header(struct smtp__stuffer *s, const char *in, size_t n,
                        size_t *used, struct smtp__buf *out, char *why,
                        size_t whylen)
{
    size_t i = 0;
    while (i < n) {
        char c = in[i];
        if (s->h_cr) { /* the LF of a CRLF ends that line */
            s->h_cr = 0;
            if (c == '\n') {
                if (hdr_emit(s, in + i++, 1, out, why, whylen) < 0)
                    return -1;
                continue;
            }
        }
        if (s->h_start) {
            if (c == '\r' || c == '\n') { /* the empty line: body next */
                s->in_header = s->h_drop = 0;
                break;
            }
            s->h_start = 0;
            if (c != ' ' && c != '\t') { /* a new field, else folded */
                s->h_drop = 0;
                s->holding = 1;
                s->nhold = 0;
            }
        }
        if (s->holding) {
            s->hold[s->nhold++] = c;
            int v = c == '\r' || c == '\n' ? 0
                                           : hidden_verdict(s->hold, s->nhold);
            if (v == 2 && s->nhold < sizeof s->hold) {
                i++;
                continue;
            }
            s->holding = 0;
            if (v == 1) {           /* end the kept line before it now: */
                if (s->prev_cr) {   /* its lone CR must not pair with an */
                    s->prev_cr = 0; /* LF that follows the dropped ones */
                    if (stuff_eol(s, out) < 0)
                        return WHY("out of memory");
                }
                s->h_drop = 1;
                i++;
                continue;
            }
            if (stuff_plain(s, s->hold, s->nhold - 1, out, why, whylen) < 0)
                return -1; /* c itself goes on below */
        }
        size_t end = i;
        while (end < n && in[end] != '\r' && in[end] != '\n')
            end++;
        if (end == i) { /* CR or LF: the line ends */
            s->h_start = 1;
            s->h_cr = c == '\r';
            end++;
        }
        if (hdr_emit(s, in + i, end - i, out, why, whylen) < 0)
            return -1;
        i = end;
    }
    *used = i;
    return 0;
}

/* Encodes a chunk: the header filter first while it is on, then lone
   CR/LF to CRLF and leading dots doubled. */
int smtp__stuff(struct smtp__stuffer *s, const char *in, size_t n,
                struct smtp__buf *out, char *why, size_t whylen)
{
    size_t used = 0;
    if (s->in_header && stuff_header(s, in, n, &used, out, why, whylen) < 0)
        return -1;
    return used < n ? stuff_plain(s, in + used, n - used, out, why, whylen) : 0;
}

/* Ends the body and appends the terminating dot line. */
int smtp__stuff_end(struct smtp__stuffer *s, struct smtp__buf *out)
{
    char why[8];
    if (s->holding) { /* the data ended inside a name */
        s->holding = 0;
        if (stuff_plain(s, s->hold, s->nhold, out, why, sizeof why) < 0)
            return -1;
    }
    if ((s->prev_cr || !s->line_start) && stuff_eol(s, out) < 0)
        return -1;
    s->prev_cr = 0;
    return smtp__buf_append(out, ".\r\n", 3);
}
