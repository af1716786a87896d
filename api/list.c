/*
 * api/list.c - GET /v1/messages: the message log, read from the durable
 * queue (queue_list), newest first, never a body.
 *
 * Public (internal.h): api_message_list.
 *
 * Query parameters (RFC 3986 percent-encoding; '+' is a plus sign):
 *   status      one state name or several, comma-separated (queued, sent...)
 *   recipient   one address (any case)
 *   message_id  a Message-ID, with or without its angle brackets
 *   after       RFC 3339: created at or after
 *   before      RFC 3339: created before; or the `next` cursor of a page
 *   limit       1..API_LIST_MAX (default API_LIST_DEFAULT)
 * Any other parameter, one given twice or a value that is not one of these
 * is a 400 whose errors name the parameter.  The answer is
 * {"messages": [...], "next": cursor or null}; `next` is set when more
 * messages match past this page.  The cursor is "<created_at>~<id>"
 * (created_at as a shortest exact decimal), so a page is stable while new
 * messages arrive.
 *
 * Errors: 400 as above, 503 when the queue cannot be read (or is not
 * open).  Threads: MHD's threads; the queue serialises its reads.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/codec.h"
#include "api/internal.h"

#define API_LIST_DEFAULT 50
#define API_LIST_MAX 100
#define API_LIST_VALUE_MAX 998 /* bytes of one decoded value */

/* The parameters as read, and what was wrong with them. */
struct list_args {
    struct queue_list_query q;
    char recipient[API_LIST_VALUE_MAX + 1];
    char message_id[API_LIST_VALUE_MAX + 3];
    char before_id[QUEUE_ID_LEN];
    unsigned seen; /* bit per known parameter */
    json_t *errors;
};

static const char *const params[] = {
    "status", "recipient", "message_id", "after", "before", "limit",
};

/* Percent-decodes v into out (size bytes); -1 when it is too long, holds
   a bad escape, a NUL or a control character.  (MHD hands the values on
   with only unreserved characters decoded: api_unescape.) */
static int decode_value(const char *v, char *out, size_t size)
{
    size_t n = 0;
    for (; *v != '\0'; v++) {
        int ch = (unsigned char)*v;
        if (ch == '%') {
            if (!isxdigit((unsigned char)v[1]) ||
                !isxdigit((unsigned char)v[2]))
                return -1;
            ch = (int)strtol((char[3]){ v[1], v[2], '\0' }, NULL, 16);
            v += 2;
        }
        if (ch < 0x20 || ch == 0x7f || n + 1 >= size)
            return -1;
        out[n++] = (char)ch;
    }
    out[n] = '\0';
    return 0;
}

/* status=a,b: the mask of those states; 0 when one is not a state. */
static unsigned states_of(const char *v)
{
    unsigned mask = 0;
    while (*v != '\0') {
        size_t n = strcspn(v, ",");
        int found = 0;
        for (int s = 0; s < QUEUE_STATE__COUNT; s++) {
            const char *name = queue_state_name((enum queue_state)s);
            if (strlen(name) == n && strncmp(v, name, n) == 0) {
                mask |= 1u << s;
                found = 1;
            }
        }
        if (!found)
            return 0;
        v += n;
        if (*v == ',' && *++v == '\0')
            return 0;
    }
    return mask;
}

/* before=: an RFC 3339 time, or a cursor "<created_at>~<id>". */
static int before_of(struct list_args *a, const char *v)
{
    const char *tilde = strchr(v, '~');
    char *end;
    size_t n;
    if (tilde == NULL)
        return api_time_parse(v, &a->q.before) == 0 && a->q.before > 0 ? 0 : -1;
    errno = 0;
    a->q.before = strtod(v, &end);
    n = strspn(tilde + 1, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                          "0123456789-_");
    if (end != tilde || errno != 0 || !(a->q.before > 0) || n == 0 ||
        n >= QUEUE_ID_LEN || tilde[1 + n] != '\0')
        return -1;
    memcpy(a->before_id, tilde + 1, n + 1);
    a->q.before_id = a->before_id;
    return 0;
}

/* limit=: 1..API_LIST_MAX. */
static int limit_of(struct list_args *a, const char *v)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (end == v || *end != '\0' || errno != 0 || n < 1 || n > API_LIST_MAX)
        return -1;
    a->q.limit = (size_t)n;
    return 0;
}

/* Reads parameter i's decoded value v into a; -1 when it is not valid. */
static int take(struct list_args *a, int i, const char *v)
{
    switch (i) {
    case 0: return (a->q.states = states_of(v)) != 0 ? 0 : -1;
    case 1:
        snprintf(a->recipient, sizeof a->recipient, "%s", v);
        a->q.recipient = a->recipient;
        return v[0] != '\0' ? 0 : -1;
    case 2:
        snprintf(a->message_id, sizeof a->message_id,
                 v[0] == '<' ? "%s" : "<%s>", v);
        a->q.message_id = a->message_id;
        return v[0] != '\0' ? 0 : -1;
    case 3:
        return api_time_parse(v, &a->q.after) == 0 && a->q.after > 0 ? 0 : -1;
    case 4: return before_of(a, v);
    default: return limit_of(a, v);
    }
}

/* What each parameter must be, for its error. */
static const char *const musts[] = {
    "must be one or more of queued, scheduled, sending, retry, sent, "
    "partial, rejected, failed, unknown, cancelled, comma-separated",
    "must be an address",
    "must be a Message-ID",
    "must be an RFC 3339 date-time such as 2026-12-01T09:30:00Z",
    "must be an RFC 3339 date-time or the next cursor of a page",
    "must be an integer from 1 to 100",
};

/* MHD_get_connection_values callback: one query parameter. */
static enum MHD_Result one_arg(void *cls, enum MHD_ValueKind kind,
                               const char *key, const char *value)
{
    struct list_args *a = cls;
    char v[API_LIST_VALUE_MAX + 1];
    (void)kind;
    for (int i = 0; i < (int)(sizeof params / sizeof params[0]); i++) {
        if (strcmp(key, params[i]) != 0)
            continue;
        if (a->seen & (1u << i))
            api_error_add(a->errors, key, "is given more than once");
        else if (value == NULL || decode_value(value, v, sizeof v) < 0 ||
                 take(a, i, v) < 0)
            api_error_add(a->errors, key, musts[i]);
        a->seen |= 1u << i;
        return MHD_YES;
    }
    char name[64];
    snprintf(name, sizeof name, "%s", key);
    api_error_add(a->errors, name, "is not a parameter of this route");
    return MHD_YES;
}

/* One message of the log as JSON (no subject or message_id member when
   it has none). */
static json_t *item_json(const struct queue_item *it)
{
    json_error_t e;
    json_t *rcpts = it->recipients != NULL ? json_loads(it->recipients, 0, &e)
                                           : NULL;
    return json_pack(
        "{s:s, s:s, s:o, s:s*, s:s*, s:o, s:i, s:o}", "id", it->id, "status",
        queue_state_name(it->state), "recipients",
        json_is_array(rcpts) ? rcpts : json_array(), "subject", it->subject,
        "message_id", it->message_id, "created_at",
        api_time_json(it->created_at), "attempts", it->attempts, "last_code",
        it->last_code > 0 ? json_integer(it->last_code) : json_null());
}

/* {"messages": [...], "next": ...} of n items, of which limit are shown. */
static json_t *page_json(const struct queue_item *items, size_t n, size_t limit)
{
    json_t *arr = json_array(), *next = json_null();
    char cur[64];
    for (size_t i = 0; arr != NULL && i < n && i < limit; i++)
        if (json_array_append_new(arr, item_json(&items[i])) < 0)
            json_decref(arr), arr = NULL;
    if (n > limit) {
        snprintf(cur, sizeof cur, "%.17g~%s", items[limit - 1].created_at,
                 items[limit - 1].id);
        json_decref(next);
        next = json_string(cur);
    }
    return json_pack("{s:o?, s:o?}", "messages", arr, "next", next);
}

enum MHD_Result api_message_list(struct api_req *req, struct MHD_Connection *c)
{
    struct list_args a;
    struct queue_item *items;
    size_t n, limit;
    memset(&a, 0, sizeof a);
    a.q.limit = API_LIST_DEFAULT;
    a.errors = json_array();
    if (a.errors == NULL)
        return MHD_NO;
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, one_arg, &a);
    if (json_array_size(a.errors) > 0)
        return api_reply_problem(req, c, 400,
                                 "the query has invalid "
                                 "parameters",
                                 a.errors, NULL, NULL);
    json_decref(a.errors);
    if (req->api->queue == NULL)
        return api_reply_problem(req, c, 503,
                                 "the durable queue is not "
                                 "open",
                                 NULL, "Retry-After", "5");
    limit = a.q.limit;
    a.q.limit = limit + 1; /* one more: is there a next page? */
    if (queue_list(req->api->queue, &a.q, &items, &n) != QUEUE_OK)
        return api_reply_problem(req, c, 503, "the queue cannot be read", NULL,
                                 "Retry-After", "5");
    json_t *doc = page_json(items, n, limit);
    queue_list_free(items, n);
    return api_reply_json(req, c, 200, doc);
}
