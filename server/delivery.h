/*
 * server/delivery.h - delivery from the durable queue (queue/queue.h)
 * through the worker pool.
 *
 * One thread claims due messages in small groups (at most what the pool
 * can take at that moment), marking them sending with a lease before the
 * first byte goes to the relay, and submits each as a job the pool
 * attempts once (job->no_retry).  Each outcome is recorded as an attempt
 * and moves the message on (server/delivery.c has the rules): final for
 * sent, partial, rejected, unknown (never resent) and permanent failures;
 * retry, due again after an exponential backoff with jitter, for a
 * temporary failure before the final dot, until queue.max_attempts or
 * queue.max_age; back to queued, uncounted, when the pool stopped before
 * attempting it.
 *
 * Errors: delivery_start fails (NULL, err set) when its thread cannot
 * start.  Threads: delivery_kick is thread-safe; start and stop belong to
 * the thread that wires the service.  Stop before pool_drain: no message
 * is claimed after delivery_stop returns.
 */
#ifndef MAILPOOL_DELIVERY_H
#define MAILPOOL_DELIVERY_H

#include <stddef.h>

#include "config/config.h"
#include "queue/queue.h"
#include "server/pool.h"

struct delivery;
struct job;

/* Counters for /metrics. */
struct delivery_stats {
    unsigned long long claims;  /* messages claimed */
    unsigned long long retries; /* attempts that ended in retry */
    unsigned long recovered;    /* found sending at start: unknown */
    /* attempts of this process that ended the message, by final state
       (queue_state_is_final; cancels are not counted: no attempt ends in
       one), counted as their record is handed to the queue */
    unsigned long long finished[QUEUE_STATE__COUNT];
    size_t in_flight; /* claimed, outcome not recorded yet */
};

/* Starts claiming from q into pool (both borrowed, outliving it). */
struct delivery *delivery_start(struct pool *pool, struct queue *q,
                                const struct cfg *cfg, char *err,
                                size_t errlen);
/* New messages were committed: look now rather than at the next poll. */
void delivery_kick(struct delivery *d);
/* Stops claiming and joins the thread; jobs already submitted finish
   through the pool.  Then delivery_free after pool_drain.  NULL: no-op. */
void delivery_stop(struct delivery *d);
void delivery_free(struct delivery *d);
void delivery_stats(struct delivery *d, struct delivery_stats *out);

/* One attempt of a finished send job as the queue records it (struct
   queue_attempt), for the delivery loop and the record of a synchronous
   send alike; every string is owned (delivery_attempt_clear). */
struct delivery_attempt {
    struct queue_attempt a; /* points into the strings below */
    char *enhanced, *text, *accepted, *rejected, *error;
};
/* Fills da from job's result at Unix time at; -1 when out of memory (da
   cleared). */
int delivery_attempt_of(const struct job *job, double at,
                        struct delivery_attempt *da);
void delivery_attempt_clear(struct delivery_attempt *da);

/* The backoff in seconds before attempt number attempt+1 (attempt >= 1):
   base doubled per attempt made, capped at max, then scaled by jitter in
   [0.5, 1] (a pure function, for tests). */
double delivery_backoff_s(double base, double max, int attempt, double jitter);

#endif /* MAILPOOL_DELIVERY_H */
