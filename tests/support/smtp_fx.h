/*
 * smtp_fx.h - the fixture and helpers shared by the smtpcore integration
 * tests (test_smtpcore.c, test_esmtp.c, test_cli.c): a per-test struct fx
 * holding the peers, the options, the result and everything to free, and
 * readers of what crossed the wire.  Header-only (static inline) because
 * the Makefile links each tests/integration/test_*.c on its own.
 */
#ifndef MAILPOOL_TESTS_SMTP_FX_H
#define MAILPOOL_TESTS_SMTP_FX_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <smtpcore/smtp.h>
#include "tests/support/peer.h"

/* ---- fixture and helpers ---------------------------------------------- */

#define NGC 64
#define NOPIPE "'extensions': ['8BITMIME', 'ENHANCEDSTATUSCODES']"

struct fx {
    struct peer *p, *p2;
    char *host;            /* "127.0.0.1:PORT" of p */
    struct smtp_opts opts; /* short timeouts */
    struct smtp_result res;
    struct peer_msg *m;
    size_t nm;
    void *gc[NGC]; /* freed by teardown */
    size_t ngc;
};

static inline int setup(void **state)
{
    struct fx *f = calloc(1, sizeof *f);
    if (f == NULL)
        return -1;
    smtp_result_init(&f->res);
    f->opts.connect_timeout_ms = 3000;
    f->opts.greeting_timeout_ms = f->opts.command_timeout_ms = 5000;
    f->opts.data_init_timeout_ms = f->opts.data_block_timeout_ms = 5000;
    f->opts.data_term_timeout_ms = 5000;
    *state = f;
    return 0;
}

static inline int teardown(void **state)
{
    struct fx *f = *state;
    peer_stop(f->p);
    peer_stop(f->p2);
    free(f->host);
    smtp_result_clear(&f->res);
    peer_msgs_free(f->m, f->nm);
    for (size_t i = 0; i < f->ngc; i++)
        free(f->gc[i]);
    free(f);
    return 0;
}

static inline void *keep(struct fx *f, void *p)
{
    assert_non_null(p);
    assert_true(f->ngc < NGC);
    f->gc[f->ngc++] = p;
    return p;
}

/* A script written with ' for " (readability); owned by f. */
static inline const char *js(struct fx *f, const char *s)
{
    char *d = keep(f, strdup(s));
    for (char *c = d; *c; c++)
        if (*c == '\'')
            *c = '"';
    return d;
}

/* (Re)start the fake with a script; f->host follows it. */
static inline struct peer *fake(struct fx *f, const char *script)
{
    peer_stop(f->p);
    free(f->host);
    f->p = peer_start_fake(script ? js(f, script) : NULL);
    assert_non_null(f->p);
    f->host = peer_hostport(f->p);
    assert_non_null(f->host);
    return f->p;
}

static inline void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static inline long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* 1 once the fake logged the end of connection conn (events.jsonl). */
static inline int conn_closed(struct peer *p, int conn)
{
    char *path = peer_path(p, "capture/events.jsonl"), pat[32], *line = NULL;
    size_t cap = 0;
    int found = 0;
    FILE *fp = path ? fopen(path, "r") : NULL;
    snprintf(pat, sizeof pat, "\"conn\": %d,", conn);
    while (fp && !found && getline(&line, &cap, fp) > 0)
        found = strstr(line, pat) && strstr(line, "\"event\": \"close\"");
    if (fp)
        fclose(fp);
    free(line);
    free(path);
    return found;
}

/* Bytes the peer received on conn, once the connection is over (fake) or
 * the capture stopped growing (aiosmtpd); owned by f. */
static inline const char *wire(struct fx *f, struct peer *p, int conn)
{
    char *ev = peer_path(p, "capture/events.jsonl");
    int fake_peer = ev && access(ev, F_OK) == 0;
    size_t len = 0, last = (size_t)-1;
    free(ev);
    for (long long end = now_ms() + 4000; now_ms() < end; sleep_ms(25)) {
        if (fake_peer) {
            if (conn_closed(p, conn))
                break;
            continue;
        }
        free(peer_conn_bytes(p, conn, &len));
        if (len == last)
            break;
        last = len;
        sleep_ms(100);
    }
    char *w = peer_conn_bytes(p, conn, &len);
    if (w == NULL)
        fail_msg("no capture for connection %d", conn);
    return keep(f, w);
}

/* Messages the peer took (waits for at least n); in f->m / f->nm. */
static inline size_t msgs(struct fx *f, struct peer *p, size_t n)
{
    peer_msgs_free(f->m, f->nm);
    f->m = NULL;
    f->nm = 0;
    if (n > 0)
        peer_wait_messages(p, n, 5000);
    assert_int_equal(peer_messages(p, &f->m, &f->nm), 0);
    return f->nm;
}

static inline size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *s = hay; (s = strstr(s, needle)) != NULL; s++)
        n++;
    return n;
}

static inline int starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static inline int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Every CR is followed by LF and every LF preceded by CR. */
static inline void assert_no_bare_cr_lf(const unsigned char *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (d[i] == '\r' && (i + 1 == n || d[i + 1] != '\n'))
            fail_msg("bare CR at offset %zu", i);
        if (d[i] == '\n' && (i == 0 || d[i - 1] != '\r'))
            fail_msg("bare LF at offset %zu", i);
    }
}

/* The body of a message's data: what follows the first empty line. */
static inline const char *body_of(const struct peer_msg *m)
{
    const char *b = strstr((const char *)m->data, "\r\n\r\n");
    assert_non_null(b);
    return b + 4;
}

static inline int send1(struct fx *f, const char *from, const char *to,
                        const struct smtp_header *h, size_t nh,
                        const struct smtp_body *b)
{
    const char *tos[1] = { to };
    return smtp_send_mail(from, tos, 1, h, nh, b, f->host, &f->opts, NULL,
                          &f->res);
}

static const struct smtp_header SUBJ[] = { { "Subject", "hi" } };
static const struct smtp_body HELLO = { .text = "hello\r\n", .len = 7 };

/* A reader over a string, step bytes per call, -1 at fail_at if set. */
struct rd {
    const char *s;
    size_t len, pos, step, fail_at;
};

static inline ssize_t rd_read(void *ctx, char *buf, size_t cap)
{
    struct rd *r = ctx;
    if (r->fail_at && r->pos >= r->fail_at)
        return -1;
    size_t n = r->len - r->pos;
    if (n > r->step)
        n = r->step;
    if (n > cap)
        n = cap;
    memcpy(buf, r->s + r->pos, n);
    r->pos += n;
    return (ssize_t)n;
}

/* smtp_connect to f->host, greeting checked. */
static inline struct smtp_conn *conn_open(struct fx *f)
{
    struct smtp_conn *c = smtp_connect(f->host, 0, &f->opts, &f->res);
    assert_non_null(c);
    assert_int_equal(f->res.code, 220);
    return c;
}

#endif
