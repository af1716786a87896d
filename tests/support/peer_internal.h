/*
 * tests/support/peer_internal.h - what peer.c (processes, ports) and
 * peer_msg.c (the captured messages) share; tests use peer.h only.
 */
#ifndef TESTS_SUPPORT_PEER_INTERNAL_H
#define TESTS_SUPPORT_PEER_INTERNAL_H

#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

#define POLL_MS 20
#define SINK_MARK "\001peer-sink-message\n" /* what smtp-sink -S unescapes to */

enum peer_kind { PEER_FAKE, PEER_SINK, PEER_AIOSMTPD };

struct peer {
    enum peer_kind kind;
    pid_t pid; /* 0 once reaped */
    int port;
    char dir[PATH_MAX];
};


/* Print "peer: ..." and a newline on stderr. */
__attribute__((format(printf, 1, 2))) void peer_say(const char *f, ...);
/* snprintf into buf, 0 or -1 when it did not fit. */
__attribute__((format(printf, 3, 4))) int peer_fmt(char *buf, size_t size,
                                                   const char *f, ...);

#endif
