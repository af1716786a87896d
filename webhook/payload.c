/*
 * webhook/payload.c - the JSON body of a delivery event:
 *   {"type": "message.sent", "id": "evt_...", "created_at": RFC 3339,
 *    "data": {"id", "message_id", "status", "code", "enhanced", "text",
 *             "accepted", "rejected", "attempt", "metadata"}}
 * data.id is the message's queue id, status the state it moved to (as
 * GET /v1/messages/{id} names it), code/enhanced/text the relay's reply
 * of the attempt that moved it (null for a cancel), text and accepted
 * arrays of lines, rejected objects {recipient, code, enhanced, text},
 * attempt the message's attempts so far, metadata the caller's object.
 *
 * Public (webhook/internal.h): webhook_payload_.
 * Errors: NULL when out of memory.  Threads: no state; safe.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util/utf8.h"
#include "webhook/internal.h"

/* RFC 3339 UTC with milliseconds; null for 0. */
static json_t *when_json(double t)
{
    char buf[48];
    time_t s = (time_t)t;
    struct tm tm;
    if (t <= 0 || gmtime_r(&s, &tm) == NULL)
        return json_null();
    size_t k = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + k, sizeof buf - k, ".%03dZ",
             (int)((t - (double)s) * 1000) % 1000);
    return json_string(buf);
}

/* The n bytes at p as a JSON string; a byte that does not start a valid
   UTF-8 sequence (a relay's reply may hold any) becomes U+FFFD, the rest
   is kept.  NULL when out of memory. */
static json_t *text_json(const char *p, size_t n)
{
    json_t *j = json_stringn(p, n);
    if (j != NULL)
        return j;
    size_t len;
    char *copy = util_utf8_repair(p, n, &len);
    if (copy == NULL)
        return NULL;
    j = json_stringn(copy, len);
    free(copy);
    return j;
}

/* The '\n'-separated lines of s as an array of strings (none for NULL). */
static json_t *lines_of(const char *s)
{
    json_t *arr = json_array();
    for (const char *p = s; arr != NULL && p != NULL && *p != '\0';) {
        const char *nl = strchr(p, '\n');
        size_t n = nl != NULL ? (size_t)(nl - p) : strlen(p);
        json_array_append_new(arr, text_json(p, n));
        p = nl != NULL ? nl + 1 : NULL;
    }
    return arr;
}

/* One "rcpt\tcode\tenhanced\ttext" line as an object; NULL if malformed. */
static json_t *rejected_one(json_t *line)
{
    const char *l = json_string_value(line);
    const char *t1 = l ? strchr(l, '\t') : NULL;
    const char *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
    const char *t3 = t2 ? strchr(t2 + 1, '\t') : NULL;
    if (t3 == NULL)
        return NULL;
    return json_pack(
        "{s:o, s:i, s:o, s:o}", "recipient", text_json(l, (size_t)(t1 - l)),
        "code", (int)strtol(t1 + 1, NULL, 10), "enhanced",
        t3 > t2 + 1 ? text_json(t2 + 1, (size_t)(t3 - t2 - 1)) : json_null(),
        "text", text_json(t3 + 1, strlen(t3 + 1)));
}

/* The rejected recipients of an attempt as objects. */
static json_t *rejected_of(const char *s)
{
    json_t *arr = json_array(), *lines = lines_of(s), *l;
    size_t i;
    json_array_foreach(lines, i, l)
    {
        json_t *o = rejected_one(l);
        if (o != NULL)
            json_array_append_new(arr, o);
    }
    json_decref(lines);
    return arr;
}

/* The data object of ev. */
static json_t *data_of(const struct queue_event *ev)
{
    json_error_t e;
    int reply = ev->state != QUEUE_CANCELLED && ev->status != NULL;
    json_t *meta = ev->metadata ? json_loads(ev->metadata, 0, &e) : NULL;
    return json_pack(
        "{s:s, s:o, s:s, s:o, s:o, s:o, s:o, s:o, s:i, s:o}", "id", ev->message,
        "message_id",
        ev->message_id ? json_string(ev->message_id) : json_null(), "status",
        queue_state_name(ev->state), "code",
        reply && ev->code > 0 ? json_integer(ev->code) : json_null(),
        "enhanced",
        reply && ev->enhanced && ev->enhanced[0]
            ? text_json(ev->enhanced, strlen(ev->enhanced))
            : json_null(),
        "text", reply ? lines_of(ev->text) : json_array(), "accepted",
        reply ? lines_of(ev->accepted) : json_array(), "rejected",
        reply ? rejected_of(ev->rejected) : json_array(), "attempt",
        ev->attempt, "metadata", meta ? meta : json_null());
}

char *webhook_payload_(const struct queue_event *ev)
{
    json_t *j = json_pack(
        "{s:s, s:s, s:o, s:o}", "type", queue_event_type(ev->state), "id",
        ev->id, "created_at", when_json(ev->created_at), "data", data_of(ev));
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return body;
}
