/*
 * result/result_json.c - a send's or a query's result as the JSON object
 * both the HTTP API and the mailpool command answer with.
 *
 * Public: result_json, result_json_text (result/result_json.h).  The
 * names are the API's, kept where they were called; the unit itself needs
 * only smtpcore's public header, util's UTF-8 repair and Jansson, so the
 * command line prints a result without api/.  Thread-safe (no state).
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <smtpcore/smtp.h>

#include "result/result_json.h"
#include "util/utf8.h"

/* A JSON string; bytes that are not UTF-8 become U+FFFD. */
json_t *result_json_text(const char *s)
{
    if (s == NULL)
        return json_null();
    json_t *j = json_string(s);
    if (j != NULL)
        return j;
    size_t o;
    char *out = util_utf8_repair(s, strlen(s), &o);
    if (out == NULL)
        return NULL;
    j = json_stringn(out, o);
    free(out);
    return j;
}

/* The lines of a reply as a JSON array. */
static json_t *reply_lines(const struct smtp_reply *r)
{
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < r->nlines; i++)
        if (json_array_append_new(a, result_json_text(r->lines[i])) < 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

/* "x.y.z", or null when the reply had none. */
static json_t *enhanced(const struct smtp_reply *r)
{
    return r->enhanced[0] != '\0' ? result_json_text(r->enhanced) : json_null();
}

/* [{"recipient", "code", "enhanced", "text"}] of the refused recipients. */
static json_t *rejected_json(const struct smtp_result *res)
{
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < res->nrejected; i++) {
        const struct smtp_rcpt_failure *f = &res->rejected[i];
        json_t *o = json_object();
        if (o == NULL ||
            json_object_set_new(o, "recipient",
                                result_json_text(f->recipient)) ||
            json_object_set_new(o, "code", json_integer(f->reply.code)) ||
            json_object_set_new(o, "enhanced", enhanced(&f->reply)) ||
            json_object_set_new(o, "text", reply_lines(&f->reply)) ||
            json_array_append_new(a, o)) {
            json_decref(o);
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

/* ["a@x.org", ...] of the accepted recipients. */
static json_t *accepted_json(const struct smtp_result *res)
{
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < res->naccepted; i++)
        if (json_array_append_new(a, result_json_text(res->accepted[i])) < 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

/* The members only a send has: status, accepted, rejected, message_id. */
static int add_delivery(json_t *o, const struct smtp_result *res)
{
    return json_object_set_new(o, "status",
                               json_string(smtp_delivery_name(res->status))) ||
           json_object_set_new(o, "accepted", accepted_json(res)) ||
           json_object_set_new(o, "rejected", rejected_json(res)) ||
           json_object_set_new(o, "message_id",
                               res->message_id[0] != '\0'
                                   ? result_json_text(res->message_id)
                                   : json_null());
}

/* The status going with the result's code: the one smtp_result_settle
   chose (the server's or synthesized), else the deciding reply's. */
static json_t *result_enhanced(const struct smtp_result *res)
{
    return res->enhanced[0] != '\0' ? result_json_text(res->enhanced)
                                    : enhanced(&res->reply);
}

/* The result object shared by the HTTP API and the command line; "code"
   and "enhanced" were synthesized by mailpool when "local_code" is true
   (then "text" holds only what the relay said, often nothing). */
json_t *result_json(const struct smtp_result *res)
{
    json_t *o = json_object();
    if (o == NULL || json_object_set_new(o, "code", json_integer(res->code)) ||
        json_object_set_new(o, "text", reply_lines(&res->reply)) ||
        json_object_set_new(o, "enhanced", result_enhanced(res)) ||
        json_object_set_new(o, "local_code",
                            json_boolean(res->code_local != 0)) ||
        json_object_set_new(o, "kind",
                            json_string(smtp_kind_name(res->kind))) ||
        (res->status != SMTP_DELIVERY_NONE && add_delivery(o, res)) ||
        (res->message[0] != '\0' &&
         json_object_set_new(o, "error", result_json_text(res->message)))) {
        json_decref(o);
        return NULL;
    }
    return o;
}
