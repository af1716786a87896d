/*
 * bench_smtp.c - smtpcore's throughput: M messages over N connections, each
 * connection reused by one thread, optionally without PIPELINING.
 *
 *   bench_smtp --server HOST:PORT [-n CONNS] [-m MESSAGES] [-l BYTES] [-p]
 *              [-c CHAIN]
 *
 * Prints one line: "conns=N messages=M ok=K seconds=S rate=R".  The body is
 * BYTES of text in 64-octet lines, one recipient per message, like
 * `smtp-source -l BYTES`.  -c CHAIN sends CHAIN messages per
 * smtp_conn_send_mails call (each final dot carries the next envelope).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <smtpcore/smtp.h>

struct worker {
    pthread_t tid;
    const char *server;
    int messages;
    int ok;
    const char *body;
    size_t len;
    int no_pipelining;
    int chain;
};

#define MAX_CHAIN 64

/* Sends w->messages in chains of w->chain over c; returns how many went. */
static int run_chains(struct worker *w, struct smtp_conn *c,
                      const struct smtp_message *mail)
{
    struct smtp_message mails[MAX_CHAIN];
    struct smtp_result r[MAX_CHAIN], *rp[MAX_CHAIN];
    int ok = 0;
    for (int i = 0; i < w->chain; i++) {
        mails[i] = *mail;
        smtp_result_init(&r[i]);
        rp[i] = &r[i];
    }
    for (int left = w->messages; left > 0; left -= w->chain) {
        size_t k = (size_t)(left < w->chain ? left : w->chain);
        smtp_conn_send_mails(c, mails, k, rp, NULL, NULL);
        for (size_t i = 0; i < k; i++)
            ok += r[i].kind == SMTP_OK;
    }
    for (int i = 0; i < w->chain; i++)
        smtp_result_clear(&r[i]);
    return ok;
}

static void *run(void *arg)
{
    struct worker *w = arg;
    struct smtp_opts o = { .no_pipelining = w->no_pipelining };
    struct smtp_result r;
    const char *to[] = { "bench@example.org" };
    struct smtp_header h[] = { { "Subject", "bench" } };
    struct smtp_body b = { .text = w->body, .len = w->len };
    smtp_result_init(&r);
    struct smtp_conn *c = smtp_connect(w->server, 0, &o, &r);
    if (c == NULL || smtp_conn_hello(c, &r) != SMTP_OK) {
        fprintf(stderr, "bench_smtp: %s\n", r.message);
        smtp_conn_free(c);
        smtp_result_clear(&r);
        return NULL;
    }
    if (w->chain > 1) {
        const struct smtp_message mail = {
            "sender@example.org", to, 1, h, 1, &b, NULL
        };
        w->ok = run_chains(w, c, &mail);
    }
    for (int i = 0; w->chain <= 1 && i < w->messages; i++)
        if (smtp_conn_send_mail(c, "sender@example.org", to, 1, h, 1, &b, NULL,
                                &r) == SMTP_OK)
            w->ok++;
    smtp_conn_quit(c);
    smtp_result_clear(&r);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *server = NULL;
    int n = 1, m = 10000, nopipe = 0, chain = 1;
    size_t len = 1024;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--server") == 0 && i + 1 < argc)
            server = argv[++i];
        else if (strcmp(argv[i], "-n") == 0 && i + 1 < argc)
            n = (int)strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "-m") == 0 && i + 1 < argc)
            m = (int)strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "-l") == 0 && i + 1 < argc)
            len = strtoul(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "-p") == 0)
            nopipe = 1;
        else if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
            chain = (int)strtol(argv[++i], NULL, 10);
        else {
            fprintf(
                stderr,
                "usage: bench_smtp --server HOST:PORT [-n CONNS] [-m MSGS] [-l BYTES] [-p] [-c CHAIN]\n");
            return 2;
        }
    }
    if (server == NULL || n < 1 || m < n || len < 2 || chain < 1 ||
        chain > MAX_CHAIN) {
        fprintf(stderr,
                "bench_smtp: --server, n >= 1, m >= n, l >= 2, "
                "1 <= c <= %d\n",
                MAX_CHAIN);
        return 2;
    }
    char *body = malloc(len);
    for (size_t i = 0; i < len; i++)
        body[i] = (i % 64 == 63 || i == len - 1) ? '\n' : (char)('a' + i % 26);
    struct worker *w = calloc((size_t)n, sizeof *w);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < n; i++) {
        w[i] = (struct worker){ .server = server,
                                .body = body,
                                .len = len,
                                .messages = m / n + (i < m % n),
                                .no_pipelining = nopipe,
                                .chain = chain };
        pthread_create(&w[i].tid, NULL, run, &w[i]);
    }
    int ok = 0;
    for (int i = 0; i < n; i++) {
        pthread_join(w[i].tid, NULL);
        ok += w[i].ok;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double s = (double)(b.tv_sec - a.tv_sec) +
               (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    printf("conns=%d messages=%d ok=%d seconds=%.3f rate=%.0f\n", n, m, ok, s,
           ok / s);
    free(w);
    free(body);
    return ok == m ? 0 : 1;
}
