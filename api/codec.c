/*
 * api/codec.c - JSON request bodies to jobs, SMTP outcomes to JSON.
 *
 * Public: api_decode_message, api_decode_batch,
 * api_decode_query, api_json_values, api_json_too_many_values,
 * api_error_add, api_jobs_free, api_job_result_json,
 * api_result_message_id (codec.h); the
 * result object itself is result/result_json.c's.
 *
 * Decoding rules (docs/API.md says the same to users):
 * - a message is an object with "from" (string, "" allowed: the null
 *   reverse-path), "to" (non-empty array of strings, at most
 *   http.max_recipients), and either "raw" (a non-empty string: the whole
 *   RFC 5322 message) or "headers" and/or "body"; any other member is an
 *   error, and so is "raw" beside "headers" or "body".  null counts as
 *   absent for the optional members;
 * - "headers" is an object (order kept) or an array of [name, value] pairs;
 *   each is checked with smtp_header_check, and a field RFC 5322 3.6
 *   allows once (smtp_header_unique) given twice under any case is an
 *   error naming both; Bcc is accepted and never sent (smtpcore drops it);
 * - a HELP topic is ASCII (a VRFY or EXPN argument may be UTF-8: smtpcore
 *   sends it only to a relay offering SMTPUTF8);
 * - "body" is a string or an array of strings (lines), joined with CRLF;
 * - addresses are checked with smtp_addr_check.
 * Every problem is reported (up to API_MAX_ERRORS), not only the first.
 *
 * Errors: API_DECODE_INVALID with {"field", "message"} objects appended to
 * the caller's array, or API_DECODE_NOMEM.  Thread-safe (no shared state).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <smtpcore/smtp.h>

#include "api/api.h"
#include "api/codec.h"
#include "result/result_json.h"

/* The state of one decode: where errors go and whether any happened. */
struct dctx {
    json_t *errors;
    const char *prefix;
    int invalid;
    int nomem;
};

/* The index of the '"' that closes the string whose contents start at
   from (len when none does): the first '"' after an even run of
   backslashes (RFC 8259 section 7), found with memchr rather than byte by
   byte (a request's bytes are mostly inside strings). */
static size_t string_end(const char *text, size_t from, size_t len)
{
    for (size_t i = from;;) {
        const char *q = i < len ? memchr(text + i, '"', len - i) : NULL;
        if (q == NULL)
            return len;
        size_t k = (size_t)(q - text), run = 0;
        while (k - run > from && text[k - run - 1] == '\\')
            run++;
        if (run % 2 == 0)
            return k;
        i = k + 1; /* an escaped quote */
    }
}

size_t api_json_values(const char *text, size_t len, size_t max)
{
    size_t n = 0, depth = 0;
    int in_scalar = 0;
    for (size_t i = 0; i < len && n <= max; i++) {
        char ch = text[i];
        if (ch == '"') { /* a string or a member name: one value */
            n++;
            i = string_end(text, i + 1, len);
            in_scalar = 0;
            continue;
        }
        depth += ch == '[' || ch == '{';
        depth -= depth > 0 && (ch == ']' || ch == '}');
        if (depth > JSON_PARSER_MAX_DEPTH)
            return 0; /* Jansson stops there, having built
                                       little: its error is the answer */
        int scalar = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
                     (ch >= 'A' && ch <= 'Z') || ch == '-' || ch == '+' ||
                     ch == '.';
        n += (ch == '[' || ch == '{' || (scalar && !in_scalar));
        in_scalar = scalar;
    }
    return n;
}

int api_json_too_many_values(const char *text, size_t len)
{
    size_t max = len / API_JSON_BYTES_PER_VALUE + API_JSON_VALUES_FLOOR;
    return api_json_values(text, len, max) > max;
}

/* Appends {"field", "message"} unless the list is full. */
int api_error_add(json_t *errors, const char *field, const char *message)
{
    if (json_array_size(errors) >= API_MAX_ERRORS)
        return 0;
    json_t *e = json_object();
    if (e == NULL || json_object_set_new(e, "field", result_json_text(field)) ||
        json_object_set_new(e, "message", result_json_text(message))) {
        json_decref(e);
        return -1;
    }
    /* _new steals e: the array's now, or freed when it could not grow. */
    return json_array_append_new(errors, e) < 0 ? -1 : 0;
}

/* Writes prefix + path into buf: "to[2]", "messages[3].to[0]", "$". */
__attribute__((format(printf, 4, 5))) static void field_name(
    const struct dctx *d, char *buf, size_t len, const char *fmt, ...)
{
    char path[192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof path, fmt, ap);
    va_end(ap);
    if (d->prefix[0] == '\0')
        snprintf(buf, len, "%s", path[0] != '\0' ? path : "$");
    else if (path[0] == '\0' || path[0] == '[')
        snprintf(buf, len, "%s%s", d->prefix, path);
    else
        snprintf(buf, len, "%s.%s", d->prefix, path);
}

/* Records one problem at an already built field name. */
static void fail_at(struct dctx *d, const char *field, const char *message)
{
    d->invalid = 1;
    if (api_error_add(d->errors, field, message) < 0)
        d->nomem = 1;
}

/* Records one problem at a path below the prefix. */
__attribute__((format(printf, 3, 4))) static void fail(struct dctx *d,
                                                       const char *message,
                                                       const char *fmt, ...)
{
    char path[192], field[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof path, fmt, ap);
    va_end(ap);
    field_name(d, field, sizeof field, "%s", path);
    fail_at(d, field, message);
}

int api_error_at(json_t *errors, const char *prefix, const char *message,
                 const char *path)
{
    struct dctx d = { errors, prefix != NULL ? prefix : "", 0, 0 };
    fail(&d, message, "%s", path);
    return d.nomem ? -1 : 0;
}

/* The decoder's verdict. */
static int verdict(const struct dctx *d)
{
    if (d->nomem)
        return API_DECODE_NOMEM;
    return d->invalid ? API_DECODE_INVALID : API_DECODE_OK;
}

/* A member, or NULL when absent or null. */
static json_t *member(json_t *obj, const char *name)
{
    json_t *v = json_object_get(obj, name);
    return json_is_null(v) ? NULL : v;
}

/* Reports every member of obj whose name is not in allowed (NULL-ended). */
static void check_members(struct dctx *d, json_t *obj,
                          const char *const *allowed)
{
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value)
    {
        size_t i = 0;
        while (allowed[i] != NULL && strcmp(allowed[i], key) != 0)
            i++;
        if (allowed[i] == NULL)
            fail(d, "unknown member", "%s", key);
    }
}

/* strdup that records out-of-memory. */
static char *dup_str(struct dctx *d, const char *s)
{
    char *p = strdup(s);
    if (p == NULL)
        d->nomem = 1;
    return p;
}

/* "from": a string that smtp_addr_check accepts ("" allowed). */
static void decode_from(struct dctx *d, json_t *obj, struct job *job)
{
    json_t *v = json_object_get(obj, "from");
    char why[160];
    if (v == NULL) {
        fail(d, "is required", "from");
        return;
    }
    if (!json_is_string(v)) {
        fail(d, "must be a string", "from");
        return;
    }
    if (smtp_addr_check(json_string_value(v), 1, why, sizeof why) < 0) {
        fail(d, why, "from");
        return;
    }
    job->msg.from = dup_str(d, json_string_value(v));
}

/* "to": a non-empty array of addresses, at most http.max_recipients. */
static void decode_to(struct dctx *d, json_t *obj, const struct cfg *cfg,
                      struct job *job)
{
    json_t *v = json_object_get(obj, "to"), *item;
    size_t i, n;
    char why[160];
    if (v == NULL) {
        fail(d, "is required", "to");
        return;
    }
    if (!json_is_array(v)) {
        fail(d, "must be an array of addresses", "to");
        return;
    }
    n = json_array_size(v);
    if (n == 0) {
        fail(d, "must not be empty", "to");
        return;
    }
    if (cfg->http.max_recipients > 0 && n > (size_t)cfg->http.max_recipients) {
        snprintf(why, sizeof why, "at most %d recipients, got %zu",
                 cfg->http.max_recipients, n);
        fail(d, why, "to");
        return;
    }
    job->msg.to = calloc(n, sizeof *job->msg.to);
    if (job->msg.to == NULL) {
        d->nomem = 1;
        return;
    }
    job->msg.nto = n;
    json_array_foreach(v, i, item)
    {
        if (!json_is_string(item))
            fail(d, "must be a string", "to[%zu]", i);
        else if (smtp_addr_check(json_string_value(item), 0, why, sizeof why) <
                 0)
            fail(d, why, "to[%zu]", i);
        else
            job->msg.to[i] = dup_str(d, json_string_value(item));
    }
}

/* Stores header i (name and value copied). */
static void put_header(struct dctx *d, struct job *job, size_t i,
                       const char *name, const char *value)
{
    if (job_set_header(job, i, name, value) < 0)
        d->nomem = 1;
}

/* Makes room for n headers. */
static int alloc_headers(struct dctx *d, struct job *job, size_t n)
{
    if (n == 0)
        return 0;
    job->msg.headers = calloc(n, sizeof *job->msg.headers);
    if (job->msg.headers == NULL) {
        d->nomem = 1;
        return -1;
    }
    job->msg.nheaders = n;
    return 0;
}

/* A field RFC 5322 3.6 allows once (smtp_header_unique), given again
   under any case: an error at the later one naming both.  names[i] is the
   name of field i (NULL when it is not a string); path formats a field's
   place ("headers.%s" or "headers[%zu][0]"). */
static void check_repeats(struct dctx *d, const char *const *names, size_t n,
                          int pairs)
{
    for (size_t i = 0; i < n; i++) {
        if (names[i] == NULL || !smtp_header_unique(names[i]))
            continue;
        for (size_t j = 0; j < i; j++) {
            char first[256], msg[400];
            if (names[j] == NULL || strcasecmp(names[j], names[i]) != 0)
                continue;
            if (pairs)
                field_name(d, first, sizeof first, "headers[%zu][0]", j);
            else
                field_name(d, first, sizeof first, "headers.%s", names[j]);
            snprintf(msg, sizeof msg,
                     "repeats %s: RFC 5322 3.6 allows one "
                     "%s field",
                     first, names[j]);
            if (pairs)
                fail(d, msg, "headers[%zu][0]", i);
            else
                fail(d, msg, "headers.%s", names[i]);
            break;
        }
    }
}

/* "headers": {"Name": "value", ...}, in the object's order. */
static void decode_header_object(struct dctx *d, json_t *v, struct job *job)
{
    const char *key;
    json_t *value;
    size_t i = 0;
    char why[160];
    const char **names;
    if (alloc_headers(d, job, json_object_size(v)) < 0)
        return;
    names = calloc(json_object_size(v) + 1, sizeof *names);
    if (names == NULL) {
        d->nomem = 1;
        return;
    }
    json_object_foreach(v, key, value)
    {
        names[i] = key;
        if (!json_is_string(value))
            fail(d, "must be a string", "headers.%s", key);
        else if (smtp_header_check(key, json_string_value(value), why,
                                   sizeof why) < 0)
            fail(d, why, "headers.%s", key);
        else
            put_header(d, job, i, key, json_string_value(value));
        i++;
    }
    check_repeats(d, names, i, 0);
    free(names);
}

/* "headers": [["Name", "value"], ...]; errors name [i][0] or [i][1]. */
static void decode_header_array(struct dctx *d, json_t *v, struct job *job)
{
    json_t *pair;
    size_t i;
    char why[160];
    const char **names;
    if (alloc_headers(d, job, json_array_size(v)) < 0)
        return;
    names = calloc(json_array_size(v) + 1, sizeof *names);
    if (names == NULL) {
        d->nomem = 1;
        return;
    }
    json_array_foreach(v, i, pair)
    {
        json_t *n = json_array_get(pair, 0), *val = json_array_get(pair, 1);
        if (json_is_array(pair) && json_array_size(pair) == 2)
            names[i] = json_string_value(n); /* NULL if not a string */
        if (!json_is_array(pair) || json_array_size(pair) != 2) {
            fail(d, "must be a [name, value] pair", "headers[%zu]", i);
            continue;
        }
        if (!json_is_string(n)) {
            fail(d, "must be a string", "headers[%zu][0]", i);
            continue;
        }
        if (smtp_header_check(json_string_value(n), "", why, sizeof why) < 0) {
            fail(d, why, "headers[%zu][0]", i);
            continue;
        }
        if (!json_is_string(val))
            fail(d, "must be a string", "headers[%zu][1]", i);
        else if (smtp_header_check(json_string_value(n), json_string_value(val),
                                   why, sizeof why) < 0)
            fail(d, why, "headers[%zu][1]", i);
        else
            put_header(d, job, i, json_string_value(n), json_string_value(val));
    }
    check_repeats(d, names, json_array_size(v), 1);
    free(names);
}

/* "headers": an object or an array of pairs. */
static void decode_headers(struct dctx *d, json_t *v, struct job *job)
{
    if (json_is_object(v))
        decode_header_object(d, v, job);
    else if (json_is_array(v))
        decode_header_array(d, v, job);
    else
        fail(d, "must be an object or an array of [name, value] pairs",
             "headers");
}

int api_decode_headers(json_t *v, struct job *job, json_t *errors,
                       const char *prefix)
{
    struct dctx d = { errors, prefix != NULL ? prefix : "", 0, 0 };
    decode_headers(&d, v, job);
    return verdict(&d);
}

/* Joins the strings of array v with CRLF into job->msg.body. */
static void join_lines(struct dctx *d, json_t *v, struct job *job)
{
    json_t *item;
    size_t i, total = 0, off = 0;
    int bad = 0;
    json_array_foreach(v, i, item)
    {
        if (!json_is_string(item)) {
            fail(d, "must be a string", "body[%zu]", i);
            bad = 1;
            continue;
        }
        total += json_string_length(item) + 2;
    }
    if (bad)
        return;
    job->msg.body = malloc(total + 1);
    if (job->msg.body == NULL) {
        d->nomem = 1;
        return;
    }
    json_array_foreach(v, i, item)
    {
        size_t n = json_string_length(item);
        memcpy(job->msg.body + off, json_string_value(item), n);
        off += n;
        if (i + 1 < json_array_size(v)) {
            memcpy(job->msg.body + off, "\r\n", 2);
            off += 2;
        }
    }
    job->msg.body[off] = '\0';
    job->msg.body_len = off;
}

/* "body": a string, or an array of lines; absent means empty. */
static void decode_body(struct dctx *d, json_t *v, struct job *job)
{
    if (v == NULL) {
        job->msg.body = dup_str(d, "");
    } else if (json_is_string(v)) {
        job->msg.body = dup_str(d, json_string_value(v));
        job->msg.body_len = json_string_length(v);
    } else if (json_is_array(v)) {
        join_lines(d, v, job);
    } else {
        fail(d, "must be a string or an array of lines", "body");
    }
}

/* "raw": the whole message, instead of headers and body. */
static void decode_raw(struct dctx *d, json_t *obj, json_t *v, struct job *job)
{
    if (member(obj, "headers") != NULL || member(obj, "body") != NULL)
        fail(d, "raw replaces headers and body: send one or the other", "raw");
    if (!json_is_string(v)) {
        fail(d, "must be a string (a whole RFC 5322 message)", "raw");
        return;
    }
    if (json_string_length(v) == 0) {
        fail(d, "must not be empty", "raw");
        return;
    }
    job->msg.body = dup_str(d, json_string_value(v));
    job->msg.body_len = json_string_length(v);
    job->msg.raw = 1;
}

/* The decoded body (or raw message) as SMTP would carry it: no line over
   998 octets (smtp_body_check); refused here rather than by the relay
   connection later. */
static void check_text(struct dctx *d, const struct job *job, const char *field)
{
    char why[160];
    if (job->msg.body != NULL &&
        smtp_body_check(job->msg.body, job->msg.body_len, why, sizeof why) < 0)
        fail(d, why, "%s", field);
}

/* Decodes one message object into job->msg. */
int api_decode_message(json_t *obj, const struct cfg *cfg, struct job *job,
                       json_t *errors, const char *prefix)
{
    static const char *const allowed[] = { "from", "to",  "headers",
                                           "body", "raw", NULL };
    struct dctx d = { errors, prefix != NULL ? prefix : "", 0, 0 };
    json_t *raw, *headers;
    if (!json_is_object(obj)) {
        fail(&d, "must be an object", "%s", "");
        return verdict(&d);
    }
    if (api_composed_form(obj)) /* subject, text, html, ...: composed */
        return api_decode_composed(obj, cfg, job, errors, d.prefix);
    check_members(&d, obj, allowed);
    decode_from(&d, obj, job);
    decode_to(&d, obj, cfg, job);
    raw = member(obj, "raw");
    if (raw != NULL) {
        decode_raw(&d, obj, raw, job);
        check_text(&d, job, "raw");
        return verdict(&d);
    }
    headers = member(obj, "headers");
    if (headers != NULL)
        decode_headers(&d, headers, job);
    decode_body(&d, member(obj, "body"), job);
    check_text(&d, job, "body");
    if (verdict(&d) == API_DECODE_OK) /* non-ASCII values: RFC 2047 */
        return api_headers_encode(job, errors, d.prefix);
    return verdict(&d);
}

/* job_free on every job, then the array. */
void api_jobs_free(struct job **jobs, size_t n)
{
    if (jobs == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        job_free(jobs[i]);
    free(jobs);
}

/* The "messages" array: 1..max_batch message objects, all decoded. */
static int decode_batch_items(struct dctx *d, json_t *list,
                              const struct cfg *cfg, struct job **jobs)
{
    json_t *item;
    size_t i;
    char prefix[48];
    json_array_foreach(list, i, item)
    {
        jobs[i] = job_new(JOB_SEND);
        if (jobs[i] == NULL)
            return API_DECODE_NOMEM;
        snprintf(prefix, sizeof prefix, "messages[%zu]", i);
        int rc = api_decode_message(item, cfg, jobs[i], d->errors, prefix);
        if (rc == API_DECODE_NOMEM)
            return rc;
        if (rc == API_DECODE_INVALID) {
            d->invalid = 1;
            if (json_array_size(d->errors) >= API_MAX_ERRORS)
                break; /* the list is full: stop early */
        }
    }
    return verdict(d);
}

/* {"messages": [...]}: every message decoded, or none. */
int api_decode_batch(json_t *root, const struct cfg *cfg, struct job ***jobs,
                     size_t *njobs, json_t *errors)
{
    static const char *const allowed[] = { "messages", NULL };
    struct dctx d = { errors, "", 0, 0 };
    json_t *list;
    size_t n;
    char why[96];
    *jobs = NULL;
    *njobs = 0;
    if (!json_is_object(root)) {
        fail(&d, "must be an object", "%s", "");
        return verdict(&d);
    }
    check_members(&d, root, allowed);
    list = json_object_get(root, "messages");
    if (list == NULL) {
        fail(&d, "is required", "messages");
        return verdict(&d);
    }
    if (!json_is_array(list)) {
        fail(&d, "must be an array of messages", "messages");
        return verdict(&d);
    }
    n = json_array_size(list);
    if (n == 0 ||
        (cfg->http.max_batch > 0 && n > (size_t)cfg->http.max_batch)) {
        snprintf(why, sizeof why, "must hold 1 to %d messages, got %zu",
                 cfg->http.max_batch, n);
        fail(&d, why, "messages");
        return verdict(&d);
    }
    if (d.invalid) /* unknown members: nothing decoded */
        return verdict(&d);
    struct job **out = calloc(n, sizeof *out);
    if (out == NULL)
        return API_DECODE_NOMEM;
    int rc = decode_batch_items(&d, list, cfg, out);
    if (rc != API_DECODE_OK) {
        api_jobs_free(out, n);
        return rc;
    }
    *jobs = out;
    *njobs = n;
    return API_DECODE_OK;
}

/* An argument of VRFY/EXPN/HELP: printable, bounded, on one line. */
static void decode_arg(struct dctx *d, json_t *root, const char *name,
                       int required, struct job *job)
{
    json_t *v = member(root, name);
    if (v == NULL) {
        if (required)
            fail(d, "is required", "%s", name);
        return;
    }
    if (!json_is_string(v)) {
        fail(d, "must be a string", "%s", name);
        return;
    }
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0) {
        if (required)
            fail(d, "must not be empty", "%s", name);
        return; /* HELP with "" is HELP alone */
    }
    if (n > API_MAX_ARG) {
        fail(d, "longer than 256 bytes", "%s", name);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r' || c == '\n') {
            fail(d, "CR or LF not allowed", "%s", name);
            return;
        }
        if (c < 32 || c == 127) {
            fail(d, "control character not allowed", "%s", name);
            return;
        }
        if (c >= 0x80 && job->kind == JOB_HELP) {
            fail(d, "must be ASCII: HELP has no SMTPUTF8 form", "%s", name);
            return;
        }
    }
    job->arg = dup_str(d, s);
}

/* {"address"} for VRFY, {"list"} for EXPN, {"topic"?} for HELP. */
int api_decode_query(json_t *root, struct job *job, json_t *errors)
{
    static const char *const verify[] = { "address", NULL };
    static const char *const expand[] = { "list", NULL };
    static const char *const help[] = { "topic", NULL };
    const char *const *allowed = job->kind == JOB_VERIFY   ? verify
                                 : job->kind == JOB_EXPAND ? expand
                                                           : help;
    struct dctx d = { errors, "", 0, 0 };
    if (!json_is_object(root)) {
        fail(&d, "must be an object", "%s", "");
        return verdict(&d);
    }
    check_members(&d, root, allowed);
    decode_arg(&d, root, allowed[0], job->kind != JOB_HELP, job);
    return verdict(&d);
}

/* ---- Outcomes to JSON ---- */

/* Raw message m's own Message-ID when res lacks one and m was tried;
   malloc'd, NULL otherwise. */
static char *raw_id_to_report(const struct job_message *m,
                              const struct smtp_result *res)
{
    char *id;
    if (!m->raw || res->status == SMTP_DELIVERY_NONE ||
        res->message_id[0] != '\0' || (id = api_raw_message_id(m)) == NULL)
        return NULL;
    if (id[0] == '\0') {
        free(id);
        return NULL;
    }
    return id;
}

/* res->message_id from a raw message's own field (one that does not fit
   its 256 bytes is left out). */
void api_result_message_id(const struct job_message *m, struct smtp_result *res)
{
    char *id = raw_id_to_report(m, res);
    if (id != NULL && strlen(id) < sizeof res->message_id)
        memcpy(res->message_id, id, strlen(id) + 1);
    free(id);
}

/* The result of a finished job, with "attempts" and "duration_ms". */
json_t *api_job_result_json(const struct job *job)
{
    json_t *o = result_json(&job->result);
    char *id = raw_id_to_report(&job->msg, &job->result);
    if (o != NULL && id != NULL)
        json_object_set_new(o, "message_id", result_json_text(id));
    free(id);
    double ms = (double)(long long)(job->duration_ms * 1000.0 + 0.5) / 1000.0;
    if (o == NULL ||
        json_object_set_new(o, "attempts", json_integer(job->attempts)) ||
        json_object_set_new(o, "duration_ms", json_real(ms))) {
        json_decref(o);
        return NULL;
    }
    return o;
}
