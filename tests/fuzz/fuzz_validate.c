/*
 * fuzz_validate.c - libFuzzer target: the address, header and body
 * validators.  Property: nothing they accept can carry CR, LF, NUL, a
 * control (DEL and UTF-8 C1 included; HTAB allowed in header values), or
 * (for addresses) an angle bracket, quoted or not, or an unquoted space
 * onto the wire; smtp_body_check accepts exactly the bodies without NUL whose
 * lines (ended by CRLF, lone CR or lone LF) are at most 998 octets.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtpcore/smtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The body rule, a byte at a time: 1 when smtp_body_check must accept. */
static int body_ok(const uint8_t *p, size_t n)
{
    size_t col = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\0')
            return 0;
        if (p[i] == '\r' || p[i] == '\n') {
            if (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n')
                i++;
            col = 0;
        } else if (++col > SMTP_MAX_LINE) {
            return 0;
        }
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char s[600], why[160];
    /* Bodies: long lines need more than 600 bytes, so test them first. */
    if ((smtp_body_check((const char *)data, size, why, sizeof why) == 0) !=
        body_ok(data, size))
        abort();
    if (size >= sizeof s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    if (smtp_addr_check(s, 1, why, sizeof why) == 0) {
        for (const char *p = s; *p; p++) {
            unsigned char c = (unsigned char)*p;
            if (c < 32 || c == 127)
                abort();
            if (c == '<' || c == '>')
                abort(); /* not even inside quotes */
        }
        if (strlen(s) > SMTP_MAX_PATH - 2)
            abort();
    }
    char *colon = memchr(s, ':', strlen(s));
    if (colon != NULL) {
        *colon = '\0';
        if (smtp_header_check(s, colon + 1, why, sizeof why) == 0) {
            for (const unsigned char *p = (const unsigned char *)colon + 1; *p;
                 p++)
                if ((*p < 32 && *p != '\t') || *p == 127 ||
                    (*p == 0xC2 && p[1] >= 0x80 && p[1] <= 0x9F))
                    abort(); /* a control other than HTAB (C1 too) */
            for (const char *p = s; *p; p++)
                if ((unsigned char)*p <= 32 || (unsigned char)*p >= 127)
                    abort();
        }
    }
    return 0;
}
