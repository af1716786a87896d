/*
 * queue/queue_impl.h - what a queue backend provides (queue/queue.c
 * dispatches every public function of queue/queue.h through it).
 *
 * A backend defines its own handle whose first member is a struct queue
 * (so a struct queue * is also a pointer to the backend's handle) and one
 * const struct queue_ops naming its functions.  Adding an operation to
 * queue.h is one member here, one line in each backend's table and one
 * forwarding function in queue.c.  Internal to queue/.
 */
#ifndef MAILPOOL_QUEUE_IMPL_H
#define MAILPOOL_QUEUE_IMPL_H

#include <pthread.h>

#include "queue/queue.h"

struct queue_ops {
    const char *name; /* "sqlite", "postgres" */
    int (*open)(const struct queue_opts *opts, struct queue **out, char *err,
                size_t errlen);
    void (*close)(struct queue *q);
    unsigned long (*recovered)(const struct queue *q);
    int (*enqueue)(struct queue *q, const struct queue_new *msgs, size_t n,
                   const struct queue_idem *idem, queue_done_fn done,
                   void *ctx);
    int (*idem_finish)(struct queue *q, const char *key, int http_status,
                       const char *response);
    int (*claim)(struct queue *q, double now, size_t max, double lease_s,
                 struct queue_claimed **out, size_t *n);
    int (*record)(struct queue *q, const char *id,
                  const struct queue_attempt *a, enum queue_state state,
                  double next_at);
    int (*release)(struct queue *q, const char *id);
    int (*cancel)(struct queue *q, const char *id, enum queue_state *state);
    int (*get)(struct queue *q, const char *id, struct queue_doc *doc);
    int (*counts)(struct queue *q, double now,
                  unsigned long counts[QUEUE_STATE__COUNT],
                  double *oldest_due_age);
    int (*next_due)(struct queue *q, double *when);
    /* Renews until now + lease_s the leases of this process's sending
       messages whose ids are in ids (a JSON array of strings): those on
       the wire here; QUEUE_OK or QUEUE_EIO. */
    int (*renew)(struct queue *q, double now, double lease_s, const char *ids);
    /* Makes sending messages whose lease ended before now unknown (an
       attempt recorded, never resent) when they were started, queued
       again (the claim's attempt uncounted) when not; *n how many ended
       unknown. */
    int (*reap)(struct queue *q, double now, unsigned long *n);
    /* The message log: see queue_list. */
    int (*list)(struct queue *q, const struct queue_list_query *qry,
                struct queue_item **out, size_t *n);
    /* A synchronous send for the message log: see queue_log_sync. */
    int (*log_sync)(struct queue *q, const struct queue_sync_msg *m,
                    queue_logged_fn done, void *ctx);
    /* The outbox of delivery events: see queue_event_claim and after. */
    int (*event_claim)(struct queue *q, double now, size_t max, double lease_s,
                       struct queue_event **out, size_t *n);
    int (*event_result)(struct queue *q, const char *id, double at,
                        int http_status, const char *error,
                        enum queue_event_state state, double next_at);
    int (*events_of)(struct queue *q, const char *id,
                     struct queue_event_rec **out, size_t *n);
    int (*events_oldest)(struct queue *q, double now, double *age);
    /* Marks claimed message id started: see queue_start. */
    int (*start)(struct queue *q, const char *id);
    /* Marks several at once: see queue_start_all; NULL: one start each. */
    int (*start_all)(struct queue *q, const char *const *ids, size_t n,
                     int *rcs);
    /* Whether the database answers now: see queue_ping. */
    int (*ping)(struct queue *q);
};

/* The base of every backend's handle; queue.c owns these fields. */
struct queue {
    const struct queue_ops *ops;
    double lease_s;   /* fixed at open */
    pthread_t keeper; /* heartbeat and reaper */
    int keeper_on;
    pthread_mutex_t mu;
    pthread_cond_t cv;          /* closing */
    int closing;                /* guarded by mu */
    queue_wake_fn wake;         /* guarded by mu */
    void *wake_ctx;             /* guarded by mu */
    unsigned long expired;      /* leases reaped; guarded by mu */
    char (*wire)[QUEUE_ID_LEN]; /* claimed here, outcome not recorded
                                       yet; guarded by mu */
    size_t nwire, capwire;      /* guarded by mu */
};

extern const struct queue_ops queue_sqlite_ops;
extern const struct queue_ops queue_postgres_ops;

/* Wall-clock Unix seconds (the queue's clock). */
double queue_wall_now(void);
/* Calls the wake function set by queue_set_wake, if any (a backend's
   listener: another replica enqueued). */
void queue_wake_(struct queue *q);
/* Releases what queue.c set up in the base; a backend's close calls it
   once its own threads (which may call queue_wake_) have stopped, before
   it frees the handle. */
void queue_base_fini_(struct queue *q);

/* One row of a backend's events_of query (ordered by event, then try)
   added to (*out)[0..*n) of capacity *cap: a new event when id differs
   from the last one's, and its try when has_try.  0, or -1 when out of
   memory (what was added stays, for queue_event_recs_free). */
struct queue_event_row {
    const char *id;
    int mstate, state;
    double created_at, delivered_at;
    int has_try;
    double at;
    int http_status;
    const char *error;
};
int queue_event_row_add_(struct queue_event_rec **out, size_t *n, size_t *cap,
                         const struct queue_event_row *row);

#endif /* MAILPOOL_QUEUE_IMPL_H */
