/*
 * bench_claims.c - claims per second on the PostgreSQL queue (queue/queue.h)
 * with W worker threads in one process: N messages of 1 KiB are enqueued
 * (in transactions of 500), then each thread loops claim one, mark it
 * started, record it sent, until nothing is left.  This is the queue's
 * cost per message without SMTP: three statements, on the replica's pool
 * of connections.  Usage:
 *   bench_claims URL PASSWORD_FILE N W
 * Prints one JSON object: {"workers", "messages", "seconds", "per_s"}.
 * Used by bench/run.py (make bench); exits 1 on any queue error.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench_clock.h"
#include "queue/queue.h"

#define BENCH_GROUP 500

/* queue_enqueue's callback: keeps the result code. */
static void bench_done(void *ctx, int rc, const struct queue_idem_hit *hit)
{
    (void)hit;
    *(int *)ctx = rc;
}

/* Enqueues n messages of 1 KiB; exits on error. */
static void bench_fill(struct queue *q, size_t n)
{
    static char blob[1024];
    struct queue_new *m = calloc(BENCH_GROUP, sizeof *m);
    memset(blob, 'x', sizeof blob);
    if (m == NULL)
        exit(1);
    for (size_t done = 0; done < n;) {
        size_t k = n - done < BENCH_GROUP ? n - done : BENCH_GROUP;
        int rc = -1;
        for (size_t i = 0; i < k; i++) {
            queue_new_id(m[i].id);
            m[i].blob = blob;
            m[i].blob_len = sizeof blob;
        }
        if (queue_enqueue(q, m, k, NULL, bench_done, &rc) != QUEUE_OK ||
            rc != QUEUE_OK) {
            fprintf(stderr, "bench_claims: enqueue failed\n");
            exit(1);
        }
        done += k;
    }
    free(m);
}

/* A worker: claim, start, record sent, until the queue is empty. */
static void *bench_worker(void *arg)
{
    struct queue *q = arg;
    struct queue_attempt a = { .status = "sent", .code = 250 };
    for (;;) {
        struct queue_claimed *c = NULL;
        size_t n = 0;
        if (queue_claim(q, bench_wall(), 1, 60, &c, &n) != QUEUE_OK) {
            fprintf(stderr, "bench_claims: claim failed\n");
            exit(1);
        }
        if (n == 0)
            break;
        a.at = bench_wall();
        if (queue_start(q, c[0].id) != QUEUE_OK ||
            queue_record(q, c[0].id, &a, QUEUE_SENT, 0) != QUEUE_OK) {
            fprintf(stderr, "bench_claims: start or record failed\n");
            exit(1);
        }
        queue_claimed_free(c, n);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    struct queue_opts o = { .backend = "postgres", .lease_s = 60 };
    struct queue *q;
    char err[512];
    pthread_t t[64];
    if (argc != 5) {
        fprintf(stderr, "usage: bench_claims URL PASSWORD_FILE N W\n");
        return 2;
    }
    o.url = argv[1];
    o.password_file = argv[2];
    size_t n = strtoul(argv[3], NULL, 10);
    int w = (int)strtol(argv[4], NULL, 10);
    if (w < 1 || w > 64 || queue_open(&o, &q, err, sizeof err) < 0) {
        fprintf(stderr, "bench_claims: %s\n",
                w < 1 || w > 64 ? "W: 1..64" : err);
        return 1;
    }
    bench_fill(q, n);
    double t0 = bench_now();
    for (int i = 0; i < w; i++)
        if (pthread_create(&t[i], NULL, bench_worker, q) != 0)
            return 1;
    for (int i = 0; i < w; i++)
        pthread_join(t[i], NULL);
    double secs = bench_now() - t0;
    printf("{\"workers\": %d, \"messages\": %zu, \"seconds\": %.3f,"
           " \"per_s\": %.1f}\n",
           w, n, secs, (double)n / secs);
    queue_close(q);
    return 0;
}
