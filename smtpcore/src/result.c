/*
 * result.c - struct smtp_result and struct smtp_reply: init, clear, names.
 *
 * Public: smtp_result_init, smtp_result_clear, smtp_reply_clear,
 * smtp_result_settle, smtp_kind_name, smtp_delivery_name.
 * smtp_result_settle holds the one rule that gives every failure a code of
 * 400 or more (the table is in smtp.h).  Thread-safe (no shared state).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Frees the lines of a reply and zeroes it. */
void smtp_reply_clear(struct smtp_reply *reply)
{
    if (reply == NULL)
        return;
    for (size_t i = 0; i < reply->nlines; i++)
        free(reply->lines[i]);
    free(reply->lines);
    memset(reply, 0, sizeof *reply);
}

/* An empty result: kind OK, code 0, nothing owned. */
void smtp_result_init(struct smtp_result *res)
{
    memset(res, 0, sizeof *res);
}

/* Frees all a result owns and re-initialises it. */
void smtp_result_clear(struct smtp_result *res)
{
    if (res == NULL)
        return;
    smtp_reply_clear(&res->reply);
    for (size_t i = 0; i < res->naccepted; i++)
        free(res->accepted[i]);
    free(res->accepted);
    for (size_t i = 0; i < res->nrejected; i++) {
        free(res->rejected[i].recipient);
        smtp_reply_clear(&res->rejected[i].reply);
    }
    free(res->rejected);
    smtp_result_init(res);
}

/* Deep copy of a reply. */
int smtp__reply_copy(struct smtp_reply *dst, const struct smtp_reply *src)
{
    smtp_reply_clear(dst);
    dst->code = src->code;
    memcpy(dst->enhanced, src->enhanced, sizeof dst->enhanced);
    if (src->nlines == 0)
        return 0;
    dst->lines = calloc(src->nlines, sizeof *dst->lines);
    if (dst->lines == NULL)
        return -1;
    for (size_t i = 0; i < src->nlines; i++) {
        dst->lines[i] = strdup(src->lines[i]);
        if (dst->lines[i] == NULL) {
            dst->nlines = i;
            smtp_reply_clear(dst);
            return -1;
        }
    }
    dst->nlines = src->nlines;
    return 0;
}

/* Records a failure of the given kind; the sentence goes to res->message. */
int smtp__fail(struct smtp_result *res, int kind, const char *command,
               const char *fmt, ...)
{
    va_list ap;
    res->kind = kind;
    if (command != NULL)
        snprintf(res->command, sizeof res->command, "%s", command);
    va_start(ap, fmt);
    vsnprintf(res->message, sizeof res->message, fmt, ap);
    va_end(ap);
    return kind;
}

/* Moves r into res->reply (r is left empty); res->code follows it. */
void smtp__result_take_reply(struct smtp_result *res, struct smtp_reply *r)
{
    smtp_reply_clear(&res->reply);
    res->reply = *r;
    res->code = r->code;
    memset(r, 0, sizeof *r);
}

/* Records the RFC 3463 status a failure synthesizes (see
   smtp_result_settle); "4.7.4", say. */
void smtp__set_status(struct smtp_result *res, const char *status)
{
    snprintf(res->enhanced, sizeof res->enhanced, "%s", status);
}

/* The status synthesized for a failure of res's kind (smtp.h's table). */
static const char *settle_status(const struct smtp_result *res)
{
    int connecting = strcmp(res->command, "connect") == 0;
    switch (res->kind) {
    case SMTP_ERR_CONN:
    case SMTP_ERR_TIMEOUT: return connecting ? "4.4.1" : "4.4.2";
    case SMTP_ERR_PROTO: return "4.5.0";
    case SMTP_ERR_TLS: return "4.7.5";
    case SMTP_ERR_AUTH: return "5.7.0";
    case SMTP_ERR_LOCAL:
        return strcmp(res->command, "DATA") == 0 ? "5.6.0" : "5.5.0";
    default: return "5.5.0"; /* reply: a success code cannot fail */
    }
}

/* The reply code that goes with a synthesized status. */
static int settle_code(const char *status)
{
    if (status[0] == '4')
        return strncmp(status, "4.4.", 4) == 0   ? 421
               : strncmp(status, "4.7.", 4) == 0 ? 454
                                                 : 451;
    return strncmp(status, "5.1.", 4) == 0 ? 553
           : strcmp(status, "5.3.4") == 0  ? 552
                                           : 554;
}

/* Every failure carries a code of 400 or more (smtp.h); reply untouched. */
void smtp_result_settle(struct smtp_result *res)
{
    if (res == NULL)
        return;
    if (res->kind == SMTP_OK || res->code >= 400) {
        if (!res->code_local && res->code == res->reply.code)
            memcpy(res->enhanced, res->reply.enhanced, sizeof res->enhanced);
        return;
    }
    if (res->enhanced[0] != '4' && res->enhanced[0] != '5')
        smtp__set_status(res, settle_status(res));
    res->code = settle_code(res->enhanced);
    res->code_local = 1;
}

/* Settles res (smtp_result_settle) and returns kind: for return lines. */
int smtp__settled(struct smtp_result *res, int kind)
{
    smtp_result_settle(res);
    return kind;
}

/* Name of a kind, for logs and JSON. */
const char *smtp_kind_name(enum smtp_kind kind)
{
    switch (kind) {
    case SMTP_OK: return "ok";
    case SMTP_ERR_REPLY: return "reply";
    case SMTP_ERR_REJECTED: return "rejected";
    case SMTP_ERR_CONN: return "connection";
    case SMTP_ERR_TIMEOUT: return "timeout";
    case SMTP_ERR_PROTO: return "protocol";
    case SMTP_ERR_LOCAL: return "local";
    case SMTP_ERR_TLS: return "tls";
    case SMTP_ERR_AUTH: return "auth";
    }
    return "unknown";
}

/* Name of a delivery status, as in the JSON "status" member. */
const char *smtp_delivery_name(enum smtp_delivery status)
{
    switch (status) {
    case SMTP_DELIVERY_NONE: return "none";
    case SMTP_DELIVERY_SENT: return "sent";
    case SMTP_DELIVERY_PARTIAL: return "partial";
    case SMTP_DELIVERY_REJECTED: return "rejected";
    case SMTP_DELIVERY_FAILED: return "failed";
    case SMTP_DELIVERY_UNKNOWN: return "unknown";
    }
    return "unknown";
}
