/*
 * api/compose_json.c - the composed form of a message in JSON (from,
 * to/cc/bcc, reply_to, subject, text, html, headers, attachments,
 * unsubscribe, envelope) decoded member by member and handed to compose/
 * (GMime), which makes the final bytes; and the RFC 2047 encoding of the
 * envelope form's non-ASCII header values.
 *
 * Public (codec.h): api_composed_form, api_decode_composed,
 * api_headers_encode, api_raw_message_id, api_message_subject.
 *
 * Every problem is a {"field", "message"} named by its member path
 * ("attachments[2].content", "messages[1].cc[0]"), all of them listed,
 * and nothing is composed when there is one.  A composed message becomes
 * a raw job: its bytes are final when the request is accepted (what the
 * queue stores and what a preview shows is what is sent).
 *
 * Errors: API_DECODE_INVALID, API_DECODE_NOMEM.
 * Threads: no shared state (compose/ initialises GMime once).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <smtpcore/smtp.h>

#include "api/codec.h"
#include "compose/compose.h"

#define MAX_SUBJECT 16384 /* octets of a subject */
#define MAX_NAME 1024     /* octets of a display name */

/* The members only the composed form has. */
static const char *const composed_only[] = {
    "subject", "text",     "html",        "attachments", "cc",
    "bcc",     "reply_to", "unsubscribe", "envelope",    NULL
};

/* Header fields a member writes, so "headers" may not. */
static const struct {
    const char *field, *member;
} owned_fields[] = {
    { "From", "from" },
    { "To", "to" },
    { "Cc", "cc" },
    { "Bcc", "bcc" },
    { "Reply-To", "reply_to" },
    { "Subject", "subject" },
    { "Date", NULL },
    { "MIME-Version", NULL },
    { "Content-Type", NULL },
    { "Content-Transfer-Encoding", NULL },
    { "List-Unsubscribe", "unsubscribe" },
    { "List-Unsubscribe-Post", "unsubscribe" },
};

/* One decode: where errors go, and everything the message borrows. */
struct cctx {
    json_t *errors;
    const char *prefix;
    const struct cfg *cfg;
    int invalid, nomem;
    struct compose_message m;
    struct compose_mailbox *lists[4]; /* to, cc, bcc, reply_to */
    struct compose_part *parts;
    struct compose_field *fields;
    const char **env_to;
    struct job *hdrs; /* the decoded "headers" */
    char **owned;     /* strings and bytes to free */
    size_t nowned, capowned;
    size_t decoded; /* attachment bytes so far */
};

/* Records a problem at prefix + the formatted path. */
__attribute__((format(printf, 3, 4))) static void cfail(struct cctx *c,
                                                        const char *message,
                                                        const char *fmt, ...)
{
    char path[192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(path, sizeof path, fmt, ap);
    va_end(ap);
    c->invalid = 1;
    if (api_error_at(c->errors, c->prefix, message, path) < 0)
        c->nomem = 1;
}

/* Keeps p to be freed with the context; p itself, NULL when out of
   memory (p freed then). */
static void *own(struct cctx *c, void *p)
{
    if (p == NULL) {
        c->nomem = 1;
        return NULL;
    }
    if (c->nowned == c->capowned) {
        size_t cap = c->capowned ? c->capowned * 2 : 32;
        char **n = realloc(c->owned, cap * sizeof *n);
        if (n == NULL) {
            free(p);
            c->nomem = 1;
            return NULL;
        }
        c->owned = n;
        c->capowned = cap;
    }
    c->owned[c->nowned++] = p;
    return p;
}

/* A member, or NULL when absent or null. */
static json_t *get(json_t *obj, const char *name)
{
    json_t *v = json_object_get(obj, name);
    return json_is_null(v) ? NULL : v;
}

int api_composed_form(json_t *obj)
{
    json_t *to = json_object_get(obj, "to"), *item;
    size_t i;
    for (i = 0; composed_only[i] != NULL; i++)
        if (get(obj, composed_only[i]) != NULL)
            return 1;
    if (json_is_object(json_object_get(obj, "from")))
        return 1;
    json_array_foreach(to, i, item) if (json_is_object(item)) return 1;
    return 0;
}

/* A string member without NUL or (unless multiline) CR/LF or other
   controls; NULL when absent or wrong (reported). */
static const char *text_of(struct cctx *c, json_t *v, int multiline, size_t max,
                           const char *path)
{
    const char *s;
    if (v == NULL)
        return NULL;
    if (!json_is_string(v)) {
        cfail(c, "must be a string", "%s", path);
        return NULL;
    }
    s = json_string_value(v);
    if (strlen(s) != json_string_length(v)) {
        cfail(c, "must not hold NUL", "%s", path);
        return NULL;
    }
    if (max > 0 && json_string_length(v) > max) {
        cfail(c, "is too long", "%s", path);
        return NULL;
    }
    for (size_t i = 0; !multiline && s[i] != '\0'; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            cfail(c, "must be one line without control characters", "%s", path);
            return NULL;
        }
    return s;
}

/* An address (checked, its domain as an A-label) into *out. */
static void address_of(struct cctx *c, const char *addr, const char **out,
                       int allow_empty, const char *path)
{
    char why[200], *a = NULL;
    int rc;
    if (allow_empty && addr[0] == '\0') {
        *out = "";
        return;
    }
    rc = compose_addr_ascii(addr, &a, why, sizeof why);
    if (rc == COMPOSE_OK && smtp_addr_check(a, 0, why, sizeof why) < 0)
        rc = COMPOSE_INVALID;
    if (rc == COMPOSE_NOMEM)
        c->nomem = 1;
    else if (rc != COMPOSE_OK)
        cfail(c, why, "%s", path);
    if (rc != COMPOSE_OK)
        free(a);
    else
        *out = own(c, a);
}

/* {"name", "email"} into mb. */
static void mailbox_object(struct cctx *c, json_t *v,
                           struct compose_mailbox *mb, const char *path)
{
    const char *key, *email;
    json_t *val;
    char sub[224];
    json_object_foreach(v, key, val) if (strcmp(key, "name") != 0 &&
                                         strcmp(key, "email") != 0)
        cfail(c, "unknown member", "%s.%s", path, key);
    snprintf(sub, sizeof sub, "%s.name", path);
    mb->name = text_of(c, get(v, "name"), 0, MAX_NAME, sub);
    snprintf(sub, sizeof sub, "%s.email", path);
    email = text_of(c, get(v, "email"), 0, 0, sub);
    if (get(v, "email") == NULL)
        cfail(c, "is required", "%s", sub);
    else if (email != NULL)
        address_of(c, email, &mb->email, 0, sub);
}

/* A mailbox: "Name <addr>", "addr" or {"name", "email"}. */
static void mailbox(struct cctx *c, json_t *v, struct compose_mailbox *mb,
                    const char *path)
{
    char why[200], *name = NULL, *email = NULL;
    const char *s;
    int rc;
    if (json_is_object(v)) {
        mailbox_object(c, v, mb, path);
        return;
    }
    if ((s = text_of(c, v, 0, MAX_NAME, path)) == NULL)
        return; /* reported (not a string, say) */
    rc = compose_mailbox_parse(s, &name, &email, why, sizeof why);
    if (rc == COMPOSE_NOMEM)
        c->nomem = 1;
    else if (rc != COMPOSE_OK)
        cfail(c, why, "%s", path);
    if (rc != COMPOSE_OK)
        return;
    mb->email = own(c, email);
    mb->name = name != NULL ? own(c, name) : NULL;
}

/* A list member (to, cc, bcc; reply_to may also be one mailbox) into
   lists[k]; the count into *n. */
static void mailbox_list(struct cctx *c, json_t *obj, const char *name, int k,
                         size_t *n)
{
    json_t *v = get(obj, name), *item;
    size_t i;
    char path[64];
    if (v == NULL)
        return;
    if (!json_is_array(v) &&
        !(k == 3 && (json_is_string(v) || json_is_object(v)))) {
        cfail(c, "must be an array of mailboxes", "%s", name);
        return;
    }
    *n = json_is_array(v) ? json_array_size(v) : 1;
    c->lists[k] = calloc(*n + 1, sizeof *c->lists[k]);
    if (c->lists[k] == NULL) {
        c->nomem = 1;
        return;
    }
    if (!json_is_array(v)) {
        mailbox(c, v, &c->lists[k][0], name);
        return;
    }
    json_array_foreach(v, i, item)
    {
        snprintf(path, sizeof path, "%s[%zu]", name, i);
        mailbox(c, item, &c->lists[k][i], path);
    }
}

/* from, to, cc, bcc, reply_to, and the recipient count. */
static void decode_mailboxes(struct cctx *c, json_t *obj)
{
    struct compose_message *m = &c->m;
    size_t total;
    if (get(obj, "from") == NULL)
        cfail(c, "is required", "from");
    else
        mailbox(c, get(obj, "from"), &m->from, "from");
    mailbox_list(c, obj, "to", 0, &m->nto);
    mailbox_list(c, obj, "cc", 1, &m->ncc);
    mailbox_list(c, obj, "bcc", 2, &m->nbcc);
    mailbox_list(c, obj, "reply_to", 3, &m->nreply_to);
    m->to = c->lists[0];
    m->cc = c->lists[1];
    m->bcc = c->lists[2];
    m->reply_to = c->lists[3];
    total = m->nto + m->ncc + m->nbcc;
    if (total == 0 && get(obj, "envelope") == NULL)
        cfail(c, "to, cc or bcc must name a recipient", "to");
    if (c->cfg->http.max_recipients > 0 &&
        total > (size_t)c->cfg->http.max_recipients) {
        char why[96];
        snprintf(why, sizeof why,
                 "to, cc and bcc hold at most %d "
                 "recipients, got %zu",
                 c->cfg->http.max_recipients, total);
        cfail(c, why, "to");
    }
}

/* Content (base64) of attachment i into p; counts it against max_body. */
static void attachment_content(struct cctx *c, json_t *v,
                               struct compose_part *p, size_t i)
{
    unsigned char *bytes = NULL;
    char why[160];
    int rc;
    if (v == NULL || !json_is_string(v)) {
        cfail(c, v == NULL ? "is required" : "must be a base64 string",
              "attachments[%zu].content", i);
        return;
    }
    rc = compose_base64_decode(json_string_value(v), json_string_length(v),
                               &bytes, &p->len, why, sizeof why);
    if (rc == COMPOSE_NOMEM) {
        c->nomem = 1;
        return;
    }
    if (rc != COMPOSE_OK) {
        cfail(c, why, "attachments[%zu].content", i);
        return;
    }
    p->data = own(c, bytes);
    c->decoded += p->len;
    if (c->cfg->http.max_body > 0 && c->decoded > (size_t)c->cfg->http.max_body)
        cfail(c, "the attachments decode to more than http.max_body bytes",
              "attachments[%zu].content", i);
}

/* filename, content_type, disposition, content_id of attachment i. */
static void attachment_fields(struct cctx *c, json_t *v, struct compose_part *p,
                              size_t i)
{
    char path[64], why[200];
    const char *disp;
    snprintf(path, sizeof path, "attachments[%zu].disposition", i);
    disp = text_of(c, get(v, "disposition"), 0, 0, path);
    if (disp != NULL && strcmp(disp, "inline") != 0 &&
        strcmp(disp, "attachment") != 0)
        cfail(c, "must be \"attachment\" or \"inline\"", "%s", path);
    p->is_inline = disp != NULL && strcmp(disp, "inline") == 0;
    snprintf(path, sizeof path, "attachments[%zu].filename", i);
    p->filename = text_of(c, get(v, "filename"), 1, 0, path);
    if (p->filename != NULL &&
        compose_filename_check(p->filename, why, sizeof why) < 0)
        cfail(c, why, "%s", path);
    else if (get(v, "filename") == NULL && !p->is_inline)
        cfail(c, "is required for an attachment", "%s", path);
    snprintf(path, sizeof path, "attachments[%zu].content_type", i);
    p->content_type = text_of(c, get(v, "content_type"), 1, 0, path);
    if (p->content_type == NULL && get(v, "content_type") == NULL)
        p->content_type = "application/octet-stream";
    else if (p->content_type != NULL &&
             compose_content_type_check(p->content_type, why, sizeof why) < 0)
        cfail(c, why, "%s", path);
    snprintf(path, sizeof path, "attachments[%zu].content_id", i);
    p->content_id = text_of(c, get(v, "content_id"), 1, 0, path);
    if (p->content_id != NULL &&
        compose_content_id_check(p->content_id, why, sizeof why) < 0)
        cfail(c, why, "%s", path);
}

/* "attachments": at most http.max_attachments objects. */
static void decode_attachments(struct cctx *c, json_t *v)
{
    static const char *const allowed[] = { "filename",   "content_type",
                                           "content",    "disposition",
                                           "content_id", NULL };
    json_t *item;
    size_t i;
    if (v == NULL)
        return;
    if (!json_is_array(v)) {
        cfail(c, "must be an array of attachments", "attachments");
        return;
    }
    if (c->cfg->http.max_attachments > 0 &&
        json_array_size(v) > (size_t)c->cfg->http.max_attachments) {
        char why[96];
        snprintf(why, sizeof why,
                 "at most %d attachments (http."
                 "max_attachments), got %zu",
                 c->cfg->http.max_attachments, json_array_size(v));
        cfail(c, why, "attachments");
        return;
    }
    c->parts = calloc(json_array_size(v) + 1, sizeof *c->parts);
    if (c->parts == NULL) {
        c->nomem = 1;
        return;
    }
    json_array_foreach(v, i, item)
    {
        const char *key;
        json_t *val;
        if (!json_is_object(item)) {
            cfail(c, "must be an object", "attachments[%zu]", i);
            continue;
        }
        json_object_foreach(item, key, val)
        {
            size_t k = 0;
            while (allowed[k] != NULL && strcmp(allowed[k], key) != 0)
                k++;
            if (allowed[k] == NULL)
                cfail(c, "unknown member", "attachments[%zu].%s", i, key);
        }
        attachment_fields(c, item, &c->parts[i], i);
        attachment_content(c, get(item, "content"), &c->parts[i], i);
    }
    c->m.parts = c->parts;
    c->m.nparts = json_array_size(v);
}

/* "unsubscribe": {"url", "mailto", "one_click"}. */
static void decode_unsubscribe(struct cctx *c, json_t *v)
{
    const char *key;
    json_t *val, *oc;
    char why[200];
    if (v == NULL)
        return;
    if (!json_is_object(v)) {
        cfail(c, "must be an object {url, mailto, one_click}", "unsubscribe");
        return;
    }
    json_object_foreach(v, key, val) if (strcmp(key, "url") &&
                                         strcmp(key, "mailto") &&
                                         strcmp(key, "one_click"))
        cfail(c, "unknown member", "unsubscribe.%s", key);
    c->m.unsub_url = text_of(c, get(v, "url"), 0, 0, "unsubscribe.url");
    if (c->m.unsub_url != NULL &&
        compose_uri_check(c->m.unsub_url, "https://", why, sizeof why) < 0)
        cfail(c, why, "unsubscribe.url");
    c->m.unsub_mailto = text_of(c, get(v, "mailto"), 0, 0,
                                "unsubscribe.mailto");
    if (c->m.unsub_mailto != NULL &&
        compose_uri_check(c->m.unsub_mailto, NULL, why, sizeof why) < 0)
        cfail(c, why, "unsubscribe.mailto");
    if (get(v, "url") == NULL && get(v, "mailto") == NULL)
        cfail(c, "needs url or mailto", "unsubscribe");
    oc = get(v, "one_click");
    if (oc != NULL && !json_is_boolean(oc))
        cfail(c, "must be true or false", "unsubscribe.one_click");
    c->m.unsub_one_click = json_is_true(oc);
    if (c->m.unsub_one_click && get(v, "url") == NULL)
        cfail(c, "one-click needs an https url (RFC 8058)",
              "unsubscribe.one_click");
}

/* "envelope": {"from", "to"}, replacing the default envelope. */
static void decode_envelope(struct cctx *c, json_t *v)
{
    json_t *from, *to, *item;
    size_t i;
    char path[64];
    if (v == NULL)
        return;
    if (!json_is_object(v)) {
        cfail(c, "must be an object {from, to}", "envelope");
        return;
    }
    from = get(v, "from");
    to = get(v, "to");
    if (json_object_size(v) != (size_t)(from != NULL) + (to != NULL))
        cfail(c, "may hold only from and to", "envelope");
    if (from != NULL && text_of(c, from, 0, 0, "envelope.from") != NULL)
        address_of(c, json_string_value(from), &c->m.env_from, 1,
                   "envelope.from");
    if (to == NULL)
        return;
    if (!json_is_array(to) || json_array_size(to) == 0) {
        cfail(c, "must be a non-empty array of addresses", "envelope.to");
        return;
    }
    c->env_to = calloc(json_array_size(to), sizeof *c->env_to);
    if (c->env_to == NULL) {
        c->nomem = 1;
        return;
    }
    json_array_foreach(to, i, item)
    {
        snprintf(path, sizeof path, "envelope.to[%zu]", i);
        if (text_of(c, item, 0, 0, path) != NULL)
            address_of(c, json_string_value(item), &c->env_to[i], 0, path);
    }
    c->m.env_to = c->env_to;
    c->m.nenv_to = json_array_size(to);
}

/* The path of header field i, as the envelope form names it. */
static void header_path(json_t *v, size_t i, const char *name, char *buf,
                        size_t len)
{
    if (json_is_array(v))
        snprintf(buf, len, "headers[%zu][0]", i);
    else
        snprintf(buf, len, "headers.%s", name);
}

/* "headers": checked as in the envelope form, minus the fields a member
   writes (Bcc above all: the bcc member exists). */
static void decode_fields(struct cctx *c, json_t *v)
{
    struct job_message *h;
    char path[256], why[200];
    if (v == NULL)
        return;
    if ((c->hdrs = job_new(JOB_SEND)) == NULL) {
        c->nomem = 1;
        return;
    }
    int rc = api_decode_headers(v, c->hdrs, c->errors, c->prefix);
    if (rc != API_DECODE_OK) {
        c->invalid |= rc == API_DECODE_INVALID;
        c->nomem |= rc == API_DECODE_NOMEM;
        return;
    }
    h = &c->hdrs->msg;
    c->fields = calloc(h->nheaders + 1, sizeof *c->fields);
    if (c->fields == NULL) {
        c->nomem = 1;
        return;
    }
    for (size_t i = 0; i < h->nheaders; i++) {
        c->fields[i] = (struct compose_field){ h->headers[i].name,
                                               h->headers[i].value };
        for (size_t k = 0; k < sizeof owned_fields / sizeof owned_fields[0];
             k++) {
            if (strcasecmp(h->headers[i].name, owned_fields[k].field) != 0)
                continue;
            if (owned_fields[k].member != NULL)
                snprintf(why, sizeof why,
                         "is written from the \"%s\" "
                         "member: use that",
                         owned_fields[k].member);
            else
                snprintf(why, sizeof why, "is written by mailpool");
            header_path(v, i, h->headers[i].name, path, sizeof path);
            cfail(c, why, "%s", path);
        }
    }
    c->m.fields = c->fields;
    c->m.nfields = h->nheaders;
}

/* A member of the envelope form beside the composed form: one error
   naming both. */
static void check_mixed(struct cctx *c, json_t *obj)
{
    static const char *const envelope_only[] = { "body", "raw", NULL };
    char why[256], names[160] = "";
    size_t o = 0;
    for (size_t i = 0; composed_only[i] != NULL; i++)
        if (get(obj, composed_only[i]) != NULL && o < sizeof names - 20)
            o += (size_t)snprintf(names + o, sizeof names - o, "%s%s",
                                  o ? ", " : "", composed_only[i]);
    for (size_t i = 0; envelope_only[i] != NULL; i++) {
        if (get(obj, envelope_only[i]) == NULL)
            continue;
        snprintf(why, sizeof why,
                 "belongs to the envelope form, but the "
                 "request also has the composed form's %s: send one form",
                 names[0] != '\0' ? names : "mailboxes");
        cfail(c, why, "%s", envelope_only[i]);
    }
}

/* Unknown members of the composed form. */
static void check_names(struct cctx *c, json_t *obj)
{
    static const char *const others[] = { "from", "to",  "headers",
                                          "body", "raw", NULL };
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val)
    {
        int known = 0;
        for (size_t i = 0; composed_only[i] != NULL; i++)
            known |= strcmp(key, composed_only[i]) == 0;
        for (size_t i = 0; others[i] != NULL; i++)
            known |= strcmp(key, others[i]) == 0;
        if (!known)
            cfail(c, "unknown member", "%s", key);
    }
}

/* Every member of obj into c->m. */
static void decode_members(struct cctx *c, json_t *obj)
{
    check_names(c, obj);
    check_mixed(c, obj);
    decode_mailboxes(c, obj);
    c->m.subject = text_of(c, get(obj, "subject"), 0, MAX_SUBJECT, "subject");
    c->m.text = text_of(c, get(obj, "text"), 1, 0, "text");
    c->m.html = text_of(c, get(obj, "html"), 1, 0, "html");
    decode_fields(c, get(obj, "headers"));
    decode_attachments(c, get(obj, "attachments"));
    decode_unsubscribe(c, get(obj, "unsubscribe"));
    decode_envelope(c, get(obj, "envelope"));
    if (get(obj, "text") == NULL && get(obj, "html") == NULL &&
        c->m.nparts == 0)
        cfail(c, "text or html is required (or attachments)", "text");
    c->m.id_domain = c->cfg->message.id_domain;
}

/* The composed bytes and envelope become job->msg (a raw message). */
static void take_result(struct compose_result *r, struct job *job)
{
    job->msg.from = r->env_from;
    job->msg.to = r->rcpt;
    job->msg.nto = r->nrcpt;
    job->msg.body = r->data;
    job->msg.body_len = r->len;
    job->msg.raw = 1;
    memset(r, 0, sizeof *r);
}

/* Frees what the context owns. */
static void cctx_free(struct cctx *c)
{
    for (size_t i = 0; i < c->nowned; i++)
        free(c->owned[i]);
    free(c->owned);
    for (size_t k = 0; k < 4; k++)
        free(c->lists[k]);
    free(c->parts);
    free(c->fields);
    free(c->env_to);
    job_free(c->hdrs);
}

int api_decode_composed(json_t *obj, const struct cfg *cfg, struct job *job,
                        json_t *errors, const char *prefix)
{
    struct cctx c = { .errors = errors, .prefix = prefix, .cfg = cfg };
    struct compose_result r = { 0 };
    char why[200];
    int rc;
    decode_members(&c, obj);
    if (!c.invalid && !c.nomem) {
        rc = compose_build(&c.m, &r, why, sizeof why);
        if (rc == COMPOSE_NOMEM)
            c.nomem = 1;
        else if (rc != COMPOSE_OK)
            cfail(&c, why, "%s", "");
        else
            take_result(&r, job);
        compose_result_clear(&r);
    }
    cctx_free(&c);
    if (c.nomem)
        return API_DECODE_NOMEM;
    return c.invalid ? API_DECODE_INVALID : API_DECODE_OK;
}

/* Field name (with its colon, "Subject:") of a raw message's header
   section, unfolded (each CRLF before a continuation line dropped, RFC
   5322 2.2.3) and without leading blanks: a new string, "" when the field
   is absent, NULL when out of memory.  At most 4 KiB of the value. */
static char *raw_field(const struct job_message *m, const char *name)
{
    const char *p = m->body, *end = m->body + m->body_len;
    size_t nlen = strlen(name);
    while (p < end && *p != '\r' && *p != '\n') {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *next = eol != NULL ? eol + 1 : end;
        if ((size_t)(next - p) > nlen && strncasecmp(p, name, nlen) == 0) {
            char out[4096];
            size_t n = 0;
            const char *v = p + nlen;
            while (v < next && (*v == ' ' || *v == '\t'))
                v++;
            for (;;) { /* this line, then continuations */
                for (; v < next && n < sizeof out - 1; v++)
                    if (*v != '\r' && *v != '\n')
                        out[n++] = *v;
                if (next >= end || (*next != ' ' && *next != '\t'))
                    break;
                v = next;
                eol = memchr(v, '\n', (size_t)(end - v));
                next = eol != NULL ? eol + 1 : end;
            }
            return strndup(out, n);
        }
        p = next;
    }
    return strdup("");
}

/* The Message-ID field of a raw message's header section (a composed
   message has one), or "". */
char *api_raw_message_id(const struct job_message *m)
{
    return raw_field(m, "Message-ID:");
}

char *api_message_subject(const struct job_message *m)
{
    const char *v = NULL;
    char *raw = NULL, *text;
    if (m->raw) {
        if ((raw = raw_field(m, "Subject:")) == NULL)
            return NULL;
        v = raw[0] != '\0' ? raw : NULL;
    } else {
        for (size_t i = 0; i < m->nheaders; i++)
            if (strcasecmp(m->headers[i].name, "Subject") == 0)
                v = m->headers[i].value;
    }
    if (v == NULL) {
        free(raw);
        return strdup("");
    }
    text = compose_header_decode(v);
    free(raw);
    return text;
}

/* 1 when s holds a byte over 0x7f. */
static int eight_bit(const char *s)
{
    for (; s != NULL && *s != '\0'; s++)
        if ((unsigned char)*s >= 0x80)
            return 1;
    return 0;
}

int api_headers_encode(struct job *job, json_t *errors, const char *prefix)
{
    struct job_message *m = &job->msg;
    int smtputf8 = eight_bit(m->from), invalid = 0;
    char path[256];
    for (size_t i = 0; i < m->nto; i++)
        smtputf8 |= eight_bit(m->to[i]);
    if (smtputf8) /* raw UTF-8 may stay (RFC 6532) */
        return API_DECODE_OK;
    for (size_t i = 0; i < m->nheaders; i++) {
        int bad = 0;
        char *enc = compose_header_encode(m->headers[i].name,
                                          m->headers[i].value, &bad);
        if (bad < 0)
            return API_DECODE_NOMEM;
        if (bad) {
            snprintf(path, sizeof path, "headers.%s", m->headers[i].name);
            if (api_error_at(errors, prefix,
                             "does not parse as a list of "
                             "mailboxes",
                             path) < 0)
                return API_DECODE_NOMEM;
            invalid = 1;
        }
        if (enc != NULL &&
            job_set_header(job, i, m->headers[i].name, enc) < 0) {
            free(enc);
            return API_DECODE_NOMEM;
        }
        free(enc);
    }
    return invalid ? API_DECODE_INVALID : API_DECODE_OK;
}
