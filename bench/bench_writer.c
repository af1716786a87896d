/*
 * bench_writer.c - the SQLite queue's writer thread per message, without
 * HTTP or SMTP: what one message costs the one writer (queue/sqlite_writer.c)
 * in each of the three ways the service writes it.  Usage:
 *   bench_writer PATH MODE N [normal]
 * MODE log: N synchronous sends recorded for the message log
 * (queue_log_sync, all handed over at once, as the workers do); enqueue: N
 * single-message enqueues handed over at once (as 32 HTTP connections do);
 * drain: N messages enqueued in groups of 500, then claimed 16 at a time,
 * started together and recorded sent one by one (as server/delivery.c
 * does).  Prints one JSON object: {"mode", "messages", "seconds", "per_s"}.
 * Run it under `valgrind --tool=callgrind --toggle-collect=sq_writer_main`
 * with two N and take the difference to count the writer's instructions a
 * message (bench/run.py's queue section does not use it).
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench_clock.h"
#include "queue/queue.h"

#define BENCH_GROUP 500
#define BENCH_CHAIN 16

static atomic_size_t bench_left;
static atomic_int bench_failed;

/* Counts one finished write (either callback's shape). */
static void bench_one(int rc)
{
    if (rc != QUEUE_OK)
        atomic_store(&bench_failed, 1);
    atomic_fetch_sub(&bench_left, 1);
}

/* queue_enqueue's callback. */
static void bench_enqueued(void *ctx, int rc, const struct queue_idem_hit *hit)
{
    (void)ctx;
    (void)hit;
    bench_one(rc);
}

/* queue_log_sync's callback. */
static void bench_logged(void *ctx, int rc)
{
    (void)ctx;
    bench_one(rc);
}

/* Waits until every write handed over is done; exits on a failure. */
static void bench_wait(void)
{
    while (atomic_load(&bench_left) > 0)
        usleep(200);
    if (atomic_load(&bench_failed)) {
        fprintf(stderr, "bench_writer: a write failed\n");
        exit(1);
    }
}

static char bench_blob[1024];

/* A message as the API hands it to the queue. */
static void bench_msg(struct queue_new *m)
{
    queue_new_id(m->id);
    m->message_id = "<bench.1@mailpool.invalid>";
    m->recipients = "[\"rcpt@example.com\"]";
    m->subject = "bench";
    m->blob = bench_blob;
    m->blob_len = sizeof bench_blob;
}

/* N synchronous sends recorded, all handed over before any is done. */
static void bench_log(struct queue *q, size_t n)
{
    struct queue_sync_msg *m = calloc(n, sizeof *m);
    if (m == NULL)
        exit(1);
    atomic_store(&bench_left, n);
    for (size_t i = 0; i < n; i++) {
        queue_new_id(m[i].id);
        m[i].message_id = "<bench.1@mailpool.invalid>";
        m[i].recipients = "[\"rcpt@example.com\"]";
        m[i].subject = "bench";
        m[i].created_at = bench_wall();
        m[i].state = QUEUE_SENT;
        m[i].attempt = (struct queue_attempt){
            .at = bench_wall(),
            .status = "sent",
            .code = 250,
            .enhanced = "2.0.0",
            .text = "2.0.0 Ok: queued as 4Xyz",
            .accepted = "rcpt@example.com",
            .rejected = "",
            .error = "",
        };
        if (queue_log_sync(q, &m[i], bench_logged, NULL) != QUEUE_OK)
            exit(1);
    }
    bench_wait();
    free(m);
}

/* N single-message enqueues, all handed over before any is done. */
static void bench_enqueue(struct queue *q, size_t n)
{
    struct queue_new *m = calloc(n, sizeof *m);
    if (m == NULL)
        exit(1);
    atomic_store(&bench_left, n);
    for (size_t i = 0; i < n; i++) {
        bench_msg(&m[i]);
        if (queue_enqueue(q, &m[i], 1, NULL, bench_enqueued, NULL) != QUEUE_OK)
            exit(1);
    }
    bench_wait();
    free(m);
}

/* N messages enqueued in groups, then claimed, started, recorded sent. */
static void bench_drain(struct queue *q, size_t n)
{
    struct queue_new *m = calloc(BENCH_GROUP, sizeof *m);
    struct queue_attempt a = { .status = "sent",
                               .code = 250,
                               .enhanced = "2.0.0",
                               .text = "2.0.0 Ok",
                               .accepted = "rcpt@example.com",
                               .rejected = "",
                               .error = "" };
    if (m == NULL)
        exit(1);
    for (size_t done = 0; done < n;) {
        size_t k = n - done < BENCH_GROUP ? n - done : BENCH_GROUP;
        for (size_t i = 0; i < k; i++)
            bench_msg(&m[i]);
        atomic_store(&bench_left, 1);
        if (queue_enqueue(q, m, k, NULL, bench_enqueued, NULL) != QUEUE_OK)
            exit(1);
        bench_wait();
        done += k;
    }
    free(m);
    for (;;) {
        struct queue_claimed *c = NULL;
        const char *ids[BENCH_CHAIN];
        int rcs[BENCH_CHAIN];
        size_t k = 0;
        if (queue_claim(q, bench_wall(), BENCH_CHAIN, 60, &c, &k) != QUEUE_OK)
            exit(1);
        if (k == 0)
            break;
        for (size_t i = 0; i < k; i++)
            ids[i] = c[i].id;
        if (queue_start_all(q, ids, k, rcs) != QUEUE_OK)
            exit(1);
        for (size_t i = 0; i < k; i++) {
            a.at = bench_wall();
            if (queue_record(q, c[i].id, &a, QUEUE_SENT, 0) != QUEUE_OK)
                exit(1);
        }
        queue_claimed_free(c, k);
    }
}

int main(int argc, char **argv)
{
    struct queue_opts o = { .backend = "sqlite", .lease_s = 60 };
    struct queue *q;
    char err[512];
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: bench_writer PATH log|enqueue|drain N "
                        "[normal]\n");
        return 2;
    }
    o.path = argv[1];
    o.sync_normal = argc == 5 && strcmp(argv[4], "normal") == 0;
    size_t n = strtoul(argv[3], NULL, 10);
    memset(bench_blob, 'x', sizeof bench_blob);
    if (queue_open(&o, &q, err, sizeof err) < 0) {
        fprintf(stderr, "bench_writer: %s\n", err);
        return 1;
    }
    double t0 = bench_now();
    if (strcmp(argv[2], "log") == 0)
        bench_log(q, n);
    else if (strcmp(argv[2], "enqueue") == 0)
        bench_enqueue(q, n);
    else if (strcmp(argv[2], "drain") == 0)
        bench_drain(q, n);
    else
        return 2;
    double secs = bench_now() - t0;
    printf("{\"mode\": \"%s\", \"messages\": %zu, \"seconds\": %.3f,"
           " \"per_s\": %.1f}\n",
           argv[2], n, secs, (double)n / secs);
    queue_close(q);
    return 0;
}
