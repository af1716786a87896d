/*
 * tests/support/mta_internal.h - what mta.c (starting and stopping the
 * servers) and mta_msg.c (reading back what arrived) share; tests use
 * mta.h only.
 */
#ifndef TESTS_SUPPORT_MTA_INTERNAL_H
#define TESTS_SUPPORT_MTA_INTERNAL_H

#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

#define MAX_PORTS 8

enum mta_kind { MTA_POSTFIX, MTA_EXIM, MTA_NODE };

struct mta_port {
    char name[16];
    int port;
};

struct mta {
    enum mta_kind kind;
    pid_t pid;    /* our child; 0 once reaped */
    pid_t master; /* postfix: the master's pid; else 0 */
    struct mta_port ports[MAX_PORTS];
    size_t nports;
    char root[PATH_MAX]; /* the source tree */
    char dir[PATH_MAX];
};

/* snprintf into buf, 0 or -1 when it did not fit. */
__attribute__((format(printf, 3, 4))) int mta_fmt(char *buf, size_t size,
                                                  const char *f, ...);

#endif
