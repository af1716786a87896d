/*
 * queue/queue.h - the durable queue of messages accepted for asynchronous
 * sending, their attempts, and the idempotency keys of requests; also the
 * record of each synchronous send for the message log (queue_log_sync:
 * stored final, never claimed).
 *
 * Two backends behind this one interface (queue/queue.c dispatches, see
 * queue/queue_impl.h): SQLite (queue/sqlite.c: one file, WAL, synchronous
 * FULL by default, so a committed enqueue is on disk; every write goes
 * through one writer thread that commits the writes waiting at that moment
 * together, BEGIN IMMEDIATE; reads use a connection of their own), and
 * PostgreSQL (queue/postgres.c: many replicas share one database; claims
 * with FOR UPDATE SKIP LOCKED, LISTEN/NOTIFY wakes idle replicas).
 *
 * Leases: a claimed message carries its replica's lease; a keeper thread
 * (queue.c) renews every lease/3 seconds the leases of the messages this
 * process claimed and has not recorded or released yet, and reaps the
 * expired ones of any process: a message marked started (queue_start:
 * its SMTP transaction had begun) becomes unknown (its replica died with
 * it on the wire, or its outcome could not be recorded), never resent; a
 * message claimed but never started goes back to queued, sent later by
 * whichever replica claims it.
 *
 * A message's life (enum queue_state): queued or scheduled (send_at in the
 * future) -> sending (claimed, with a lease, before its first byte goes to
 * the relay) -> sent / partial / rejected / failed / unknown, or back to
 * retry (a temporary failure; due again at next_at) or queued (claimed but
 * never attempted, as at a drain).  queued, scheduled and retry may be
 * cancelled.  A message found sending and started when the queue opens
 * (the service died with it on the wire) becomes unknown: the final dot
 * may have gone out, so it is never resent; one found sending but never
 * started goes back to queued.
 *
 * The queue does not look inside a message: it stores an opaque blob
 * (server/job.c encodes and decodes it) and a few fields for people
 * (Message-ID, metadata as JSON text).
 *
 * Ownership: arguments are borrowed for the call (queue_enqueue: until its
 * done callback); results are the caller's, freed by the _free/_clear
 * functions named.  Errors: -1 with a sentence in err (queue_open) or a
 * negative QUEUE_E* code.  Threads: every function may be called from any
 * thread; done callbacks run on the writer thread and must not call
 * queue functions that wait for it (queue_claim, queue_cancel).
 */
#ifndef MAILPOOL_QUEUE_H
#define MAILPOOL_QUEUE_H

#include <stddef.h>

#define QUEUE_ID_LEN 23   /* 128 bits, base64url: 22 + NUL */
#define QUEUE_KEY_MAX 255 /* an Idempotency-Key, visible ASCII */

enum queue_state {
    QUEUE_QUEUED = 0,
    QUEUE_SCHEDULED,
    QUEUE_SENDING,
    QUEUE_RETRY,
    QUEUE_SENT,
    QUEUE_PARTIAL,
    QUEUE_REJECTED,
    QUEUE_FAILED,
    QUEUE_UNKNOWN,
    QUEUE_CANCELLED,
    QUEUE_STATE__COUNT
};

/* Errors. */
#define QUEUE_OK 0
#define QUEUE_EIO (-1) /* the database cannot be written or read */
#define QUEUE_ENOMEM (-2)
#define QUEUE_ENOTFOUND (-3)
#define QUEUE_ECONFLICT (-4) /* the message is no longer cancellable */
#define QUEUE_EIDEM (-5)     /* queue_enqueue: the key was seen before */
#define QUEUE_ECLOSED (-6)   /* the queue is closing */

/* "queued", "sending", ...; "?" out of range. */
const char *queue_state_name(enum queue_state s);
/* 1 for sent, partial, rejected, failed, unknown, cancelled. */
int queue_state_is_final(enum queue_state s);

struct queue_opts {
    const char *backend;       /* "sqlite" (also NULL) or "postgres" */
    const char *path;          /* the SQLite file; created if missing */
    const char *url;           /* postgres: a libpq connection string */
    const char *password_file; /* postgres: its first line is the
                                   password; NULL: libpq's (PGPASSFILE) */
    double lease_s;            /* a sending message's lease; 0: 60 s */
    int sync_normal;           /* synchronous=NORMAL instead of FULL */
    double retention_s;        /* finished messages kept this long */
    double idem_ttl_s;         /* idempotency keys kept this long */
    unsigned event_states;     /* the outbox: bit (1u << state) for each
                                   state whose every change writes an
                                   event row, in the transaction of the
                                   change; 0: none (no webhook) */
    const char *event_config;  /* what the events go to (the webhook's
                                   URL and types); when it differs from
                                   the one stored, the types stopped by a
                                   410 (QUEUE_EV_STOPPED) start again */
};

struct queue;

/* Opens (creating or migrating the schema, under the writer's lock) and
   turns messages left sending into unknown.  0, or -1 with err. */
int queue_open(const struct queue_opts *opts, struct queue **out, char *err,
               size_t errlen);
/* Finishes the writes waiting, stops the writer, closes.  NULL: no-op. */
void queue_close(struct queue *q);
/* How many messages were found sending (and made unknown) at open. */
unsigned long queue_recovered(const struct queue *q);
/* "sqlite" or "postgres". */
const char *queue_backend(const struct queue *q);
/* The lease a claim should ask for (queue_opts.lease_s). */
double queue_lease_s(const struct queue *q);
/* How many expired leases the reaper has made unknown so far. */
unsigned long queue_expired(struct queue *q);

/* Told when messages may have become due without this process enqueuing
   them (another replica did); runs on a queue thread, must not block. */
typedef void (*queue_wake_fn)(void *ctx);
/* Sets (or, fn NULL, clears) the wake function. */
void queue_set_wake(struct queue *q, queue_wake_fn fn, void *ctx);

/* A new id: 128 bits in base64url (22 characters), the first 48 the wall
   clock in milliseconds (big-endian: 8 characters), the other 80 from
   getrandom.  Unguessable (80 random bits; reading a message also takes
   the API key), and the ids of one moment share their first characters,
   so the indexes keyed by id (messages, attempts, message_rcpts) take each
   moment's inserts in a few pages rather than one random page each (the
   message log's writer wrote and read a page per random key).  As UUIDv7
   does (RFC 9562 section 5.7).  Thread-safe. */
void queue_new_id(char id[QUEUE_ID_LEN]);

/* A message to store; borrowed. */
struct queue_new {
    char id[QUEUE_ID_LEN]; /* from queue_new_id */
    const void *blob;      /* the message, opaque */
    size_t blob_len;
    const char *message_id; /* Message-ID with brackets, or NULL */
    const char *metadata;   /* a JSON object's text, or NULL */
    double send_at;         /* Unix seconds; 0 or past: now */
    const char *recipients; /* for queue_list: a JSON array of the
                                   addresses, or NULL */
    const char *subject;    /* for queue_list: the Subject, or NULL */
};

/* An idempotency key and what answers a repeat of its request. */
struct queue_idem {
    const char *key;         /* scoped by the caller (API key) */
    const char *fingerprint; /* of the request: a repeat must match */
    int pending;             /* 1: the answer comes later
                                   (queue_idem_finish) */
    int http_status;         /* the answer, when not pending */
    const char *response;
};

/* What was found under a key that was seen before; caller-owned. */
struct queue_idem_hit {
    int same;    /* the fingerprint matches */
    int pending; /* its request is still being answered */
    int lost;    /* it was pending when the service died */
    int http_status;
    char *response; /* NULL while pending */
};
void queue_idem_hit_clear(struct queue_idem_hit *hit);

/* Told once the enqueue is committed (rc QUEUE_OK), refused because the
   key was seen (QUEUE_EIDEM, hit filled; nothing stored) or failed (rc
   < 0, nothing stored).  Runs on the writer thread. */
typedef void (*queue_done_fn)(void *ctx, int rc,
                              const struct queue_idem_hit *hit);

/* Stores msgs[0..n) and, when idem is not NULL, the key, in one
   transaction.  Everything borrowed stays valid until done is called.
   Returns QUEUE_OK when the write was taken (done follows), else an error
   and done is not called. */
int queue_enqueue(struct queue *q, const struct queue_new *msgs, size_t n,
                  const struct queue_idem *idem, queue_done_fn done, void *ctx);

/* Records the answer of a key stored pending (async, no wait); an
   http_status below 0 forgets the key (nothing was done: a repeat may
   try again). */
int queue_idem_finish(struct queue *q, const char *key, int http_status,
                      const char *response);

/* A claimed message; owned by the array (queue_claimed_free). */
struct queue_claimed {
    char id[QUEUE_ID_LEN];
    void *blob;
    size_t blob_len;
    int attempts; /* counting this one */
    double created_at;
};
/* Marks up to max due messages (queued, scheduled or retry with due time
   <= now) sending with a lease until now + lease_s, oldest due first;
   *out holds *n of them.  Waits for the writer. */
int queue_claim(struct queue *q, double now, size_t max, double lease_s,
                struct queue_claimed **out, size_t *n);
void queue_claimed_free(struct queue_claimed *c, size_t n);

/* One attempt's outcome, for the record; borrowed, copied. */
struct queue_attempt {
    double at;          /* Unix seconds */
    const char *status; /* smtp_delivery_name */
    int code;
    const char *enhanced;   /* "" when none */
    const char *text;       /* reply lines joined with '\n' */
    const char *accepted;   /* recipients joined with '\n' */
    const char *rejected;   /* "rcpt\tcode\tenhanced\ttext" lines */
    const char *error;      /* a sentence for people, or "" */
    const void *retry_blob; /* with QUEUE_RETRY: the message the next
                                   attempt sends (its recipients narrowed
                                   to those deferred with 4xx), stored in
                                   place of the old; NULL: unchanged */
    size_t retry_blob_len;
};
/* Records attempt a of message id and moves it to state (due again at
   next_at for QUEUE_RETRY).  Async: no wait. */
int queue_record(struct queue *q, const char *id, const struct queue_attempt *a,
                 enum queue_state state, double next_at);
/* A claimed message that was never attempted goes back to queued, its
   attempt uncounted.  Async. */
int queue_release(struct queue *q, const char *id);
/* Marks claimed message id started: its SMTP transaction is about to
   begin, so a replica that dies from now on leaves it unknown (never
   resent); a claimed message never started goes back to queued once its
   lease ends.  Waits until the mark is stored: QUEUE_OK; QUEUE_ECONFLICT
   when the message is no longer this process's claim (its lease ended and
   it went back): it must not be sent; QUEUE_EIO. */
int queue_start(struct queue *q, const char *id);
/* queue_start for ids[0..n) at once (SQLite: one commit for all): rcs[i]
   is what queue_start would return for ids[i].  Waits until the marks are
   stored; QUEUE_OK when they were written (an rcs[i] may still be
   QUEUE_ECONFLICT), else the error (QUEUE_EIO, QUEUE_ECLOSED, ...). */
int queue_start_all(struct queue *q, const char *const *ids, size_t n,
                    int *rcs);
/* QUEUE_OK when the queue's database answers now, else QUEUE_EIO (for
   /readyz).  Waits at most for one round trip or reconnection. */
int queue_ping(struct queue *q);

/* Cancels a queued, scheduled or retry message: QUEUE_OK,
   QUEUE_ENOTFOUND, or QUEUE_ECONFLICT with its state in *state. */
int queue_cancel(struct queue *q, const char *id, enum queue_state *state);

/* A message's status document; caller-owned (queue_doc_clear). */
struct queue_doc {
    char id[QUEUE_ID_LEN];
    enum queue_state state;
    double created_at, next_attempt_at; /* next: 0 when none */
    char *message_id, *metadata;        /* NULL when none */
    size_t nattempts;
    struct queue_attempt_rec {
        double at;
        char *status, *enhanced, *text, *accepted, *rejected, *error;
        int code;
    } * attempts;
};
/* Reads message id: QUEUE_OK, QUEUE_ENOTFOUND or QUEUE_EIO. */
int queue_get(struct queue *q, const char *id, struct queue_doc *doc);
void queue_doc_clear(struct queue_doc *doc);

/* Messages per state, and the age in seconds of the oldest due one (0
   when none).  QUEUE_OK or QUEUE_EIO. */
int queue_counts(struct queue *q, double now,
                 unsigned long counts[QUEUE_STATE__COUNT],
                 double *oldest_due_age);
/* The due time of the next message waiting (queued, scheduled, retry):
   1 with *when set, 0 when none, < 0 on error. */
int queue_next_due(struct queue *q, double *when);

/* ---- the message log (queue_list) ---- */

/* Which messages queue_list returns, newest first; borrowed. */
struct queue_list_query {
    unsigned states;        /* bit (1u << state) per state; 0: any */
    const char *recipient;  /* one address, any case; NULL: any */
    const char *message_id; /* exact, with brackets; NULL: any */
    double after;           /* created at or after; 0: no bound */
    double before;          /* created before; 0: no bound */
    const char *before_id;  /* with before: also created at exactly
                                   `before` with a smaller id (a page's
                                   cursor); NULL: none */
    size_t limit;           /* at most this many (1 or more) */
};

/* One message of the log, never its body; owned by the array. */
struct queue_item {
    char id[QUEUE_ID_LEN];
    enum queue_state state;
    double created_at;
    int attempts;               /* attempts started */
    int last_code;              /* the last attempt's reply code; 0: none */
    char *recipients;           /* JSON array text, or NULL */
    char *subject, *message_id; /* NULL when none */
};

/* The messages matching qry, newest (created_at, then id) first: *out
   holds *n of them (caller frees: queue_list_free).  QUEUE_OK, QUEUE_EIO
   or QUEUE_ENOMEM. */
int queue_list(struct queue *q, const struct queue_list_query *qry,
               struct queue_item **out, size_t *n);
void queue_list_free(struct queue_item *items, size_t n);

/* ---- synchronous sends in the message log (queue_log_sync) ---- */

/* A message already sent synchronously (outside the queue), for the
   message log; borrowed until the done callback. */
struct queue_sync_msg {
    char id[QUEUE_ID_LEN];        /* from queue_new_id */
    const char *message_id;       /* Message-ID with brackets, or NULL */
    const char *metadata;         /* a JSON object's text, or NULL */
    const char *recipients;       /* a JSON array of the addresses, or NULL */
    const char *subject;          /* the Subject, or NULL */
    double created_at;            /* Unix seconds: when it was submitted */
    enum queue_state state;       /* final (queue_state_is_final) */
    struct queue_attempt attempt; /* its one attempt; .at: finished */
};

/* Told once the record is committed (rc QUEUE_OK) or failed (rc < 0,
   nothing stored).  SQLite: on the writer thread; PostgreSQL: before
   queue_log_sync returns. */
typedef void (*queue_logged_fn)(void *ctx, int rc);

/* Stores m as a finished message with its one attempt (an empty blob: it
   is never claimed or sent again; the retention applies to it as to any
   finished message).  SQLite: handed to the writer (group commit), no
   wait.  Returns QUEUE_OK when the write was taken (done follows), else
   an error and done is not called. */
int queue_log_sync(struct queue *q, const struct queue_sync_msg *m,
                   queue_logged_fn done, void *ctx);

/* ---- the outbox: delivery events (webhook/) ---- */

/* Every change of a message to a state of queue_opts.event_states writes
   an event row in the same transaction (a trigger of each backend), so an
   event exists exactly when its change was committed.  webhook/ claims
   the due events with a lease, POSTs them and records each try. */

#define QUEUE_EVENT_ID_LEN 37 /* "evt_" + 128 random bits in hex + NUL */

/* An event's delivery state. */
enum queue_event_state {
    QUEUE_EV_PENDING = 0, /* due at its next try */
    QUEUE_EV_DELIVERED,   /* a 2xx answered */
    QUEUE_EV_FAILED,      /* its tries ran out */
    QUEUE_EV_STOPPED,     /* its type was stopped by a 410 */
    QUEUE_EV__COUNT
};

/* "pending", "delivered", "failed", "stopped"; "?" out of range. */
const char *queue_event_state_name(enum queue_event_state s);
/* The event type of a change to message state s ("message.sent",
   "message.deferred" for retry, ...); NULL for a state without events
   (queued, scheduled, sending). */
const char *queue_event_type(enum queue_state s);

/* A claimed event and what its payload says; owned by the array
   (queue_events_free).  The attempt's strings are NULL when the change
   had no attempt of its own (cancelled). */
struct queue_event {
    char id[QUEUE_EVENT_ID_LEN];
    char message[QUEUE_ID_LEN];  /* the message's queue id */
    enum queue_state state;      /* the state the message moved to */
    double created_at;           /* when the change was committed */
    int attempt;                 /* the message's attempts by then */
    int tries;                   /* deliveries tried before this one */
    char *message_id, *metadata; /* NULL when none */
    char *status, *enhanced, *text, *accepted, *rejected;
    int code; /* 0 without an attempt */
};
/* Leases up to max pending events due at now (oldest first) until now +
   lease_s: another claim skips them meanwhile; *out holds *n of them. */
int queue_event_claim(struct queue *q, double now, size_t max, double lease_s,
                      struct queue_event **out, size_t *n);
void queue_events_free(struct queue_event *ev, size_t n);

/* One try of event id at time at: http_status (0: no answer) and error
   ("" or NULL when none) are recorded, then the event becomes state:
   PENDING (due again at next_at), DELIVERED, FAILED, or STOPPED (a 410:
   every pending event of its type too, and the type's events written
   from now on, until queue_opts.event_config changes). */
int queue_event_result(struct queue *q, const char *id, double at,
                       int http_status, const char *error,
                       enum queue_event_state state, double next_at);

/* An event as GET /v1/messages/{id} shows it; owned by the array
   (queue_event_recs_free). */
struct queue_event_rec {
    char id[QUEUE_EVENT_ID_LEN];
    enum queue_state mstate; /* its type: queue_event_type */
    enum queue_event_state state;
    double created_at, delivered_at; /* delivered: 0 when not */
    size_t ntries;
    struct queue_event_try {
        double at;
        int http_status; /* 0: no answer */
        char *error;     /* NULL when none */
    } * tries;
};
/* The events of message id, oldest first: QUEUE_OK (*n may be 0) or
   QUEUE_EIO / QUEUE_ENOMEM. */
int queue_events_of(struct queue *q, const char *id,
                    struct queue_event_rec **out, size_t *n);
void queue_event_recs_free(struct queue_event_rec *ev, size_t n);
/* The age in seconds at now of the oldest pending event (0: none). */
int queue_events_oldest(struct queue *q, double now, double *age);

#endif /* MAILPOOL_QUEUE_H */
