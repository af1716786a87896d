/*
 * fuzz_reply.c - libFuzzer target: the reply reader (line framing, grammar,
 * caps) fed arbitrary server bytes through a real socket.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "smtpcore/src/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int sv[2];
    if (size > 60000 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        return 0;
    int big = 1 << 20;
    setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    if (write(sv[0], data, size) != (ssize_t)size) {
        close(sv[0]);
        close(sv[1]);
        return 0;
    }
    close(sv[0]);
    struct smtp_conn c;
    memset(&c, 0, sizeof c);
    c.io.fd = sv[1];
    c.open = 1;
    struct smtp_result res;
    smtp_result_init(&res);
    for (int i = 0; i < 1000 && c.open; i++) {
        struct smtp_reply r = { 0 };
        if (smtp__read_reply(&c, 1000, "FUZZ", &r, &res) != SMTP_OK)
            break;
        if (r.code < 200 || r.code > 559 || r.nlines == 0 ||
            r.nlines > SMTP_MAX_REPLY_LINES)
            abort();
        for (size_t k = 0; k < r.nlines; k++)
            if (strchr(r.lines[k], '\r') || strchr(r.lines[k], '\n'))
                abort();
        smtp_reply_clear(&r);
    }
    smtp__conn_close(&c);
    smtp_result_clear(&res);
    return 0;
}
