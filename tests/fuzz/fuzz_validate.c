/*
 * fuzz_validate.c - libFuzzer target: the address and header validators.
 * Property: nothing they accept can carry CR, LF, NUL, a control, or (for
 * addresses) an angle bracket or an unquoted space onto the wire.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "smtpcore/smtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char s[600], why[160];
    if (size >= sizeof s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    if (smtp_addr_check(s, 1, why, sizeof why) == 0) {
        int quoted = s[0] == '"';
        for (const char *p = s; *p; p++) {
            unsigned char c = (unsigned char)*p;
            if (c < 32 || c == 127)
                abort();
            if (!quoted && (c == '<' || c == '>'))
                abort();
        }
        if (strlen(s) > SMTP_MAX_PATH - 2)
            abort();
    }
    char *colon = memchr(s, ':', strlen(s));
    if (colon != NULL) {
        *colon = '\0';
        if (smtp_header_check(s, colon + 1, why, sizeof why) == 0) {
            for (const char *p = colon + 1; *p; p++)
                if (*p == '\r' || *p == '\n')
                    abort();
            for (const char *p = s; *p; p++)
                if ((unsigned char)*p <= 32 || (unsigned char)*p >= 127)
                    abort();
        }
    }
    return 0;
}
