/*
 * api/message.c - one message of the durable queue over HTTP:
 * GET /v1/messages/{id} (its status, attempts with the relay's replies,
 * metadata and the webhook's delivery events) and
 * POST /v1/messages/{id}/cancel.
 *
 * Public (internal.h): api_message_get, api_message_cancel.
 *
 * Errors: 404 for an id the queue does not hold (or without a queue), 409
 * for a message past cancelling, 503 with Retry-After when the queue
 * cannot be read or written.  Threads: MHD's threads; the queue
 * serialises its reads and writes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"

/* Splits "a\nb" into a JSON array of strings. */
static json_t *lines_json(const char *s, char sep)
{
    json_t *arr = json_array();
    while (arr != NULL && s != NULL && *s != '\0') {
        const char *e = strchr(s, sep);
        size_t n = e ? (size_t)(e - s) : strlen(s);
        json_array_append_new(arr, json_stringn_nocheck(s, n));
        s = e ? e + 1 : NULL;
    }
    return arr;
}

/* The rejected lines "rcpt\tcode\tenhanced\ttext / text" as objects. */
static json_t *rejected_json(const char *s)
{
    json_t *arr = json_array(), *lines = lines_json(s, '\n');
    size_t i;
    json_t *l;
    json_array_foreach(lines, i, l)
    {
        char *copy = strdup(json_string_value(l)), *f[4] = { 0 }, *p = copy;
        for (int k = 0; p != NULL && k < 4; k++) {
            f[k] = p;
            p = k < 3 ? strchr(p, '\t') : NULL;
            if (p != NULL)
                *p++ = '\0';
        }
        if (f[3] != NULL) {
            json_t *text = json_array();
            for (char *t = f[3]; t != NULL && *t != '\0';) {
                char *e = strstr(t, " / ");
                json_array_append_new(
                    text,
                    json_stringn_nocheck(t, e ? (size_t)(e - t) : strlen(t)));
                t = e ? e + 3 : NULL;
            }
            json_array_append_new(
                arr, json_pack("{s:s, s:i, s:s?, s:o}", "recipient", f[0],
                               "code", (int)strtol(f[1], NULL, 10), "enhanced",
                               f[2][0] ? f[2] : NULL, "text", text));
        }
        free(copy);
    }
    json_decref(lines);
    return arr;
}

/* The delivery events of a message (webhook/): each with its tries. */
static json_t *events_json(const struct queue_event_rec *ev, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < n; i++) {
        json_t *tries = json_array();
        for (size_t k = 0; tries != NULL && k < ev[i].ntries; k++) {
            const struct queue_event_try *t = &ev[i].tries[k];
            json_array_append_new(tries,
                                  json_pack("{s:o, s:o, s:s?}", "at",
                                            api_time_json(t->at), "http_status",
                                            t->http_status > 0
                                                ? json_integer(t->http_status)
                                                : json_null(),
                                            "error", t->error));
        }
        json_array_append_new(
            arr, json_pack("{s:s, s:s?, s:o, s:o, s:s, s:o}", "id", ev[i].id,
                           "type", queue_event_type(ev[i].mstate), "created_at",
                           api_time_json(ev[i].created_at), "delivered_at",
                           api_time_json(ev[i].delivered_at), "state",
                           queue_event_state_name(ev[i].state), "attempts",
                           tries ? tries : json_array()));
    }
    return arr;
}

/* The status document of doc. */
static json_t *status_json(const struct queue_doc *doc)
{
    json_error_t e;
    json_t *attempts = json_array(), *meta = NULL;
    for (size_t i = 0; attempts != NULL && i < doc->nattempts; i++) {
        const struct queue_attempt_rec *r = &doc->attempts[i];
        json_array_append_new(
            attempts,
            json_pack("{s:o, s:s, s:i, s:s?, s:o, s:o, s:o, s:s?}", "at",
                      api_time_json(r->at), "status",
                      r->status ? r->status : "", "code", r->code, "enhanced",
                      r->enhanced && r->enhanced[0] ? r->enhanced : NULL,
                      "text", lines_json(r->text, '\n'), "accepted",
                      lines_json(r->accepted, '\n'), "rejected",
                      rejected_json(r->rejected), "error",
                      r->error && r->error[0] ? r->error : NULL));
    }
    if (doc->metadata != NULL)
        meta = json_loads(doc->metadata, 0, &e);
    return json_pack("{s:s, s:s, s:s?, s:o, s:o, s:o, s:o}", "id", doc->id,
                     "status", queue_state_name(doc->state), "message_id",
                     doc->message_id, "created_at",
                     api_time_json(doc->created_at), "next_attempt_at",
                     api_time_json(doc->next_attempt_at), "attempts",
                     attempts ? attempts : json_array(), "metadata",
                     meta ? meta : json_null());
}

/* The message's document and its webhook events as of one moment (*ev
   NULL, *has_ev 0 when the events cannot be read).  The queue reads them
   in separate statements, each with its own snapshot on PostgreSQL, so
   the events are read before and after the document, again while they
   differ: an event is written in the transaction of the state change it
   reports and never removed while the message is kept, so the same count
   on both sides means the document's state had exactly those events. */
static int read_message(struct queue *q, const char *id, struct queue_doc *doc,
                        struct queue_event_rec **ev, size_t *nev, int *has_ev)
{
    for (int round = 0;; round++) {
        struct queue_event_rec *after = NULL;
        size_t nafter = 0;
        *ev = NULL;
        *nev = 0;
        *has_ev = queue_events_of(q, id, ev, nev) == QUEUE_OK;
        int rc = queue_get(q, id, doc);
        if (rc != QUEUE_OK || !*has_ev) {
            queue_event_recs_free(*ev, *nev);
            *ev = NULL;
            *nev = 0;
            return rc;
        }
        int same = queue_events_of(q, id, &after, &nafter) == QUEUE_OK &&
                   nafter == *nev;
        queue_event_recs_free(after, nafter);
        if (same || round == 4) /* 5 state changes in a GET: give up */
            return QUEUE_OK;
        queue_doc_clear(doc);
        queue_event_recs_free(*ev, *nev);
    }
}

enum MHD_Result api_message_get(struct api_req *req, struct MHD_Connection *c)
{
    struct queue_doc doc;
    struct queue_event_rec *ev = NULL;
    size_t nev = 0;
    int rc, has_ev = 0;
    if (req->api->queue == NULL)
        return api_reply_problem(req, c, 404, "no such message", NULL, NULL,
                                 NULL);
    rc = read_message(req->api->queue, req->msg_id, &doc, &ev, &nev, &has_ev);
    if (rc == QUEUE_ENOTFOUND)
        return api_reply_problem(req, c, 404, "no such message", NULL, NULL,
                                 NULL);
    if (rc != QUEUE_OK)
        return api_reply_problem(req, c, 503, "the queue cannot be read", NULL,
                                 "Retry-After", "5");
    json_t *j = status_json(&doc);
    queue_doc_clear(&doc);
    if (j != NULL && has_ev)
        json_object_set_new(j, "events", events_json(ev, nev));
    queue_event_recs_free(ev, nev);
    return api_reply_json(req, c, 200, j);
}

enum MHD_Result api_message_cancel(struct api_req *req,
                                   struct MHD_Connection *c)
{
    enum queue_state st = QUEUE_QUEUED;
    int rc = req->api->queue != NULL
                 ? queue_cancel(req->api->queue, req->msg_id, &st)
                 : QUEUE_ENOTFOUND;
    char detail[120];
    switch (rc) {
    case QUEUE_OK:
        return api_reply_json(
            req, c, 200,
            json_pack("{s:s, s:s}", "id", req->msg_id, "status", "cancelled"));
    case QUEUE_ENOTFOUND:
        return api_reply_problem(req, c, 404, "no such message", NULL, NULL,
                                 NULL);
    case QUEUE_ECONFLICT:
        snprintf(detail, sizeof detail,
                 "the message is %s: only queued, "
                 "scheduled or retry messages can be cancelled",
                 queue_state_name(st));
        return api_reply_problem(req, c, 409, detail, NULL, NULL, NULL);
    default:
        return api_reply_problem(req, c, 503, "the queue cannot be written",
                                 NULL, "Retry-After", "5");
    }
}
