/*
 * api/codec.h - JSON request bodies to struct job, and job outcomes to JSON
 * (internal to api/, exposed for the unit tests).
 *
 * Every decoder appends one {"field", "message"} object per problem to the
 * caller's `errors` array (at most API_MAX_ERRORS of them) and returns
 * API_DECODE_OK, API_DECODE_INVALID (errors were appended) or
 * API_DECODE_NOMEM.  Field names are paths into the request: "to[2]",
 * "headers.Subject", "headers[1][1]", "messages[3].to[0]"; "$" is the whole
 * body.  Validation uses smtpcore's smtp_addr_check and smtp_header_check,
 * so anything the SMTP library would refuse is refused here first, with its
 * reason.
 *
 * Threads: no shared state; safe from any thread.
 */
#ifndef MAILPOOL_API_CODEC_H
#define MAILPOOL_API_CODEC_H

#include <stddef.h>
#include <jansson.h>
#include "config/config.h"
#include "server/job.h"

#define API_MAX_ERRORS 100 /* field errors listed in one problem */
#define API_MAX_ARG 256    /* bytes of a verify/expand/help argument */

enum api_decode_rc {
    API_DECODE_OK = 0,
    API_DECODE_INVALID = -1,
    API_DECODE_NOMEM = -2
};

/* The JSON values a parse would build: at most one per this many bytes
   of the request, beyond a floor of API_JSON_VALUES_FLOOR, so the decoded
   tree stays a small multiple of the request's size. */
#define API_JSON_BYTES_PER_VALUE 8
#define API_JSON_VALUES_FLOOR 4096

/* 1 when text[0..len), read as JSON, holds more values (strings and
   member names, numbers, literals, arrays, objects) than len /
   API_JSON_BYTES_PER_VALUE + API_JSON_VALUES_FLOOR; counted by one pass
   over the bytes, before anything is allocated.  0 otherwise (also for
   text that is not JSON, or nested deeper than Jansson's
   JSON_PARSER_MAX_DEPTH: the parser says why). */
int api_json_too_many_values(const char *text, size_t len);
/* The count behind it: for text Jansson parses, exactly the values of its
   tree plus the member names; counting stops once past max; 0 when the
   nesting passes JSON_PARSER_MAX_DEPTH. */
size_t api_json_values(const char *text, size_t len, size_t max);

/* Appends {"field", "message"} unless errors already holds API_MAX_ERRORS.
   0, or -1 when out of memory. */
int api_error_add(json_t *errors, const char *field, const char *message);

/*
 * Decodes one message object ({"from", "to", "headers", "body"} or
 * {"from", "to", "raw"}) into job->msg.  job must be a fresh JOB_SEND job;
 * whatever the outcome, it owns what was decoded so far (job_free it on
 * failure).  prefix ("" or "messages[3]") is put before every field name.
 */
int api_decode_message(json_t *obj, const struct cfg *cfg, struct job *job,
                       json_t *errors, const char *prefix);

/*
 * Decodes {"messages": [...]} into *njobs new JOB_SEND jobs (*jobs is a new
 * array, each job owned by the caller: free with api_jobs_free).  Every
 * message is validated before any is returned: on failure *jobs is NULL.
 */
int api_decode_batch(json_t *root, const struct cfg *cfg, struct job ***jobs,
                     size_t *njobs, json_t *errors);

/*
 * Decodes the body of /v1/verify {"address"}, /v1/expand {"list"} or
 * /v1/help {"topic"?} into job->arg (job->kind says which).
 */
int api_decode_query(json_t *root, struct job *job, json_t *errors);

/* Appends {"field": prefix + path, "message"}; 0, or -1 out of memory. */
int api_error_at(json_t *errors, const char *prefix, const char *message,
                 const char *path);

/* "headers" (an object or [name, value] pairs) into job->msg.headers,
   each field checked as in the envelope form. */
int api_decode_headers(json_t *v, struct job *job, json_t *errors,
                       const char *prefix);

/* ---- The composed form (api/compose_json.c) ---- */

/* 1 when obj uses the composed form: subject, text, html, attachments,
   cc, bcc, reply_to, unsubscribe or envelope, or a mailbox object. */
int api_composed_form(json_t *obj);

/*
 * Decodes a composed message (docs/API.md) and composes it (compose/):
 * job->msg becomes a raw message, its bytes final, with the envelope
 * (from, to + cc + bcc each once, or "envelope").  A member of the
 * envelope form beside it (body, raw) is an error naming both.
 */
int api_decode_composed(json_t *obj, const struct cfg *cfg, struct job *job,
                        json_t *errors, const char *prefix);

/*
 * The envelope form's header fields with non-ASCII values, unless the
 * transaction is SMTPUTF8 (an address of the envelope is): unstructured
 * fields and display names become RFC 2047 encoded-words (GMime).
 */
int api_headers_encode(struct job *job, json_t *errors, const char *prefix);

/* The Message-ID of a raw (or composed) message's header section, or ""
   (a new string; NULL when out of memory). */
char *api_raw_message_id(const struct job_message *m);
/* The Subject of a message for people (the message log): from the header
   fields, or a raw or composed message's header section, unfolded, its
   RFC 2047 encoded-words decoded to UTF-8.  A new string, "" when there
   is none, NULL when out of memory. */
char *api_message_subject(const struct job_message *m);

/* job_free on jobs[0..n), then free(jobs); NULL is a no-op. */
void api_jobs_free(struct job **jobs, size_t n);

/* Sets res->message_id from raw message m's own Message-ID field when
   smtpcore left it empty (it writes no header fields of a raw message)
   and m was tried (res->status not none): the id a caller is told for
   what reached, or may have reached, the relay.  No-op otherwise, for a
   message that is not raw, an id longer than res->message_id holds (255
   bytes), or when out of memory.  Used by `mailpool
   send --json` so it prints what the API answers. */
void api_result_message_id(const struct job_message *m,
                           struct smtp_result *res);

/* result_json(&job->result) plus "attempts" and "duration_ms"; the
   message_id as api_result_message_id would set it. */
json_t *api_job_result_json(const struct job *job);

#endif /* MAILPOOL_API_CODEC_H */
