/*
 * result/result_json.h - the JSON shape of an SMTP outcome, shared by the
 * HTTP API (api/) and the mailpool command (cmd/mailpool/).  Needs only
 * smtpcore's public header and Jansson.
 */
#ifndef MAILPOOL_RESULT_JSON_H
#define MAILPOOL_RESULT_JSON_H

#include <jansson.h>
#include <smtpcore/smtp.h>

/*
 * The result object: {"code", "text", "enhanced", "kind", "status",
 * "accepted", "rejected": [{"recipient", "code", "enhanced", "text"}],
 * "message_id"} plus "error" (a sentence) when res->message is set.
 * "enhanced" and "message_id" are null when empty; "kind" is
 * smtp_kind_name(res->kind).  For queries (status SMTP_DELIVERY_NONE)
 * status, accepted, rejected and message_id are left out.  Bytes that are
 * not UTF-8 in server text become U+FFFD.  New reference, NULL when out of
 * memory.
 */
json_t *result_json(const struct smtp_result *res);

/* A JSON string of s; invalid UTF-8 sequences become U+FFFD.  New ref. */
json_t *result_json_text(const char *s);

#endif /* MAILPOOL_RESULT_JSON_H */
