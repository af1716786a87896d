/*
 * compose/build.c - a composed message to its wire bytes with GMime 3
 * (compose.h).
 *
 * Public: compose_build, compose_result_clear, compose_prepare;
 * compose_gmime_init for
 * check.c.
 *
 * Structure: text and HTML make a multipart/alternative; inline parts with
 * a Content-ID go with the HTML in a multipart/related; any other part
 * makes the whole a multipart/mixed.  Text parts are UTF-8 (charset=utf-8),
 * their line ends LF before GMime sees them; every part's transfer
 * encoding is GMime's best under the 7-bit constraint (quoted-printable or
 * base64).  GMime writes with DOS newlines and through its unix2dos filter,
 * so no bare LF can reach the output; the result is checked anyway.
 * Headers: From, Reply-To, To, Cc (never Bcc), Subject, Date, Message-ID
 * ("<random@id_domain>"), MIME-Version, the extra fields, then
 * List-Unsubscribe ("<url>, <mailto:...>", folded only between the URIs:
 * GMime folds at whitespace and a URI has none) and List-Unsubscribe-Post.
 *
 * Errors: COMPOSE_INVALID (an address GMime or libidn2 refuses, an output
 * line over 998 octets), COMPOSE_NOMEM.
 * Threads: g_mime_init runs once through pthread_once, before any GMime
 * call of any thread; GMime objects are per call.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gmime/gmime.h>

#include "compose/compose.h"
#include "compose/internal.h"

static pthread_once_t compose_once = PTHREAD_ONCE_INIT;

/* GMime's global state (charset tables, iconv cache); once a process. */
static void compose_init_once(void)
{
    g_mime_init();
}

void compose_gmime_init(void)
{
    pthread_once(&compose_once, compose_init_once);
}

void compose_prepare(void)
{
    static const char pdf[] = "%PDF-1.4\n";
    static const struct compose_mailbox to = { "Zo\xc3\xab", "to@example.org" };
    static const struct compose_part parts[] = {
        { "a.pdf", "application/pdf", pdf, sizeof pdf - 1, 0, NULL },
        { NULL, "image/png", pdf, sizeof pdf - 1, 1, "logo@example.org" },
    };
    static const struct compose_field field = { "X-Tag", "\xc3\xa9t\xc3\xa9" };
    const struct compose_message m = {
        .from = { "Zo\xc3\xab", "from@example.org" },
        .to = &to,
        .nto = 1,
        .subject = "\xc3\xa9t\xc3\xa9",
        .text = "text",
        .html = "<p>html</p>",
        .parts = parts,
        .nparts = 2,
        .fields = &field,
        .nfields = 1,
        .unsub_url = "https://example.org/u",
        .unsub_mailto = "u@example.org",
        .unsub_one_click = 1,
    };
    struct compose_result r = { 0 };
    char why[200], *name = NULL, *email = NULL, *dec;
    compose_gmime_init();
    (void)compose_mailbox_parse("Zo\xc3\xab <a@example.org>", &name, &email,
                                why, sizeof why);
    free(name);
    free(email);
    dec = compose_header_decode("=?UTF-8?Q?=C3=A9t=C3=A9?=");
    free(dec);
    (void)compose_build(&m, &r, why, sizeof why);
    compose_result_clear(&r);
}

/* The text with CRLF and lone CR turned into LF (GMime writes line ends). */
static char *lf_text(const char *s)
{
    size_t n = strlen(s), o = 0;
    char *out = malloc(n + 1);
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r') {
            out[o++] = '\n';
            if (s[i + 1] == '\n')
                i++;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

/* Gives part the bytes as content, encoded as GMime finds best in 7 bits. */
static void set_content(GMimePart *part, const void *data, size_t len)
{
    GMimeStream *s = g_mime_stream_mem_new_with_buffer(data, len);
    GMimeDataWrapper *w = g_mime_data_wrapper_new_with_stream(
        s, GMIME_CONTENT_ENCODING_DEFAULT);
    g_mime_part_set_content(part, w);
    g_object_unref(w);
    g_object_unref(s);
    g_mime_part_set_content_encoding(part,
                                     g_mime_part_get_best_content_encoding(
                                         part, GMIME_ENCODING_CONSTRAINT_7BIT));
}

/* A text/<subtype>; charset=utf-8 part, or NULL when out of memory. */
static GMimeObject *text_part(const char *subtype, const char *text)
{
    char *lf = lf_text(text);
    GMimeTextPart *p;
    if (lf == NULL)
        return NULL;
    p = g_mime_text_part_new_with_subtype(subtype);
    set_content(GMIME_PART(p), lf, strlen(lf));
    g_mime_text_part_set_charset(p, "utf-8");
    free(lf);
    return GMIME_OBJECT(p);
}

/* A parameter's RFC 2231 charset set to UTF-8 (GMime would pick
   ISO-8859-1 where it fits). */
static void utf8_param(GMimeParamList *list, const char *name)
{
    GMimeParam *param = list != NULL
                            ? g_mime_param_list_get_parameter(list, name)
                            : NULL;
    if (param != NULL)
        g_mime_param_set_charset(param, "utf-8");
}

/* An attachment or inline part. */
static GMimeObject *file_part(const struct compose_part *cp)
{
    const char *slash = strchr(cp->content_type, '/');
    char type[128];
    GMimePart *p;
    size_t tl = slash != NULL ? (size_t)(slash - cp->content_type) : 0;
    if (tl == 0 || tl >= sizeof type)
        return NULL;
    memcpy(type, cp->content_type, tl);
    type[tl] = '\0';
    p = g_mime_part_new_with_type(type, slash + 1);
    g_mime_object_set_disposition(GMIME_OBJECT(p),
                                  cp->is_inline ? GMIME_DISPOSITION_INLINE
                                                : GMIME_DISPOSITION_ATTACHMENT);
    if (cp->filename != NULL && cp->filename[0] != '\0') {
        g_mime_part_set_filename(p, cp->filename);
        utf8_param(g_mime_content_disposition_get_parameters(
                       g_mime_object_get_content_disposition(GMIME_OBJECT(p))),
                   "filename");
        utf8_param(g_mime_content_type_get_parameters(
                       g_mime_object_get_content_type(GMIME_OBJECT(p))),
                   "name");
    }
    if (cp->content_id != NULL && cp->content_id[0] != '\0')
        g_mime_object_set_content_id(GMIME_OBJECT(p), cp->content_id);
    set_content(p, cp->data, cp->len);
    /* A part that is not text keeps its bytes only in base64: in 7bit or
       quoted-printable its CR and LF octets are line ends, which SMTP
       makes CRLF (RFC 2045 6.8; RFC 2046 5.2.1 keeps message/ parts
       7bit or 8bit). */
    if (strcasecmp(type, "text") != 0 && strcasecmp(type, "message") != 0)
        g_mime_part_set_content_encoding(p, GMIME_CONTENT_ENCODING_BASE64);
    return GMIME_OBJECT(p);
}

/* 1 when part i goes in the multipart/related beside the HTML. */
static int is_related(const struct compose_message *m, size_t i)
{
    const struct compose_part *p = &m->parts[i];
    return m->html != NULL && p->is_inline && p->content_id != NULL &&
           p->content_id[0] != '\0';
}

/* Adds child to mp and drops our reference. */
static void add_part(GMimeMultipart *mp, GMimeObject *child)
{
    g_mime_multipart_add(mp, child);
    g_object_unref(child);
}

/* Adds the part made of cp to mp; -1 when it cannot be made. */
static int add_file(GMimeMultipart *mp, const struct compose_part *cp)
{
    GMimeObject *p = file_part(cp);
    if (p == NULL)
        return -1;
    add_part(mp, p);
    return 0;
}

/* The HTML, alone or in a multipart/related with its inline parts. */
static GMimeObject *html_tree(const struct compose_message *m)
{
    GMimeObject *html = text_part("html", m->html);
    GMimeMultipart *rel = NULL;
    for (size_t i = 0; html != NULL && i < m->nparts; i++) {
        if (!is_related(m, i))
            continue;
        if (rel == NULL) {
            rel = g_mime_multipart_new_with_subtype("related");
            g_mime_object_set_content_type_parameter(GMIME_OBJECT(rel), "type",
                                                     "text/html");
            add_part(rel, html);
        }
        if (add_file(rel, &m->parts[i]) < 0) {
            g_object_unref(rel);
            return NULL;
        }
    }
    return rel != NULL ? GMIME_OBJECT(rel) : html;
}

/* text, HTML (with its related parts), or the alternative of both. */
static GMimeObject *body_tree(const struct compose_message *m)
{
    GMimeObject *text = NULL, *html = NULL;
    if (m->text != NULL && (text = text_part("plain", m->text)) == NULL)
        return NULL;
    if (m->html != NULL && (html = html_tree(m)) == NULL) {
        if (text != NULL)
            g_object_unref(text);
        return NULL;
    }
    if (text == NULL || html == NULL)
        return text != NULL ? text : html;
    GMimeMultipart *alt = g_mime_multipart_new_with_subtype("alternative");
    add_part(alt, text);
    add_part(alt, html);
    return GMIME_OBJECT(alt);
}

/* The whole MIME tree: the body, in a multipart/mixed with the other
   parts when there are any. */
static GMimeObject *mime_tree(const struct compose_message *m)
{
    GMimeObject *body = body_tree(m);
    GMimeMultipart *mixed = NULL;
    for (size_t i = 0; i < m->nparts; i++) {
        if (is_related(m, i))
            continue;
        if (mixed == NULL) {
            mixed = g_mime_multipart_new_with_subtype("mixed");
            if (body != NULL)
                add_part(mixed, body);
        }
        if (add_file(mixed, &m->parts[i]) < 0) {
            g_object_unref(mixed);
            return NULL;
        }
    }
    if (mixed != NULL)
        return GMIME_OBJECT(mixed);
    return body != NULL ? body : text_part("plain", "");
}

/* Adds each mailbox of list to the field of kind type; display names are
   encoded in UTF-8 (GMime would pick ISO-8859-1 where it fits). */
static void add_mailboxes(GMimeMessage *msg, GMimeAddressType type,
                          const struct compose_mailbox *list, size_t n)
{
    InternetAddressList *field = g_mime_message_get_addresses(msg, type);
    for (size_t i = 0; i < n; i++) {
        InternetAddress *ia = internet_address_mailbox_new(
            list[i].name != NULL ? list[i].name : "", list[i].email);
        internet_address_set_charset(ia, "utf-8");
        internet_address_list_add(field, ia);
        g_object_unref(ia);
    }
}

/* The domain of an address, or "mailpool.invalid". */
static const char *domain_of(const char *addr)
{
    const char *at = addr != NULL ? strrchr(addr, '@') : NULL;
    return at != NULL && at[1] != '\0' ? at + 1 : "mailpool.invalid";
}

/* Date and Message-ID; the id (with brackets) copied into out. */
static void add_date_and_id(GMimeMessage *msg, const struct compose_message *m,
                            struct compose_result *out)
{
    GDateTime *now = g_date_time_new_now_utc();
    const char *dom = m->id_domain != NULL && m->id_domain[0] != '\0'
                          ? m->id_domain
                          : domain_of(m->from.email);
    char *id = g_mime_utils_generate_message_id(dom);
    g_mime_message_set_date(msg, now);
    g_date_time_unref(now);
    for (size_t i = 0; i < m->nfields; i++)
        if (strcasecmp(m->fields[i].name, "Message-ID") == 0) {
            g_free(id);
            id = NULL; /* the caller's own, added later */
            snprintf(out->message_id, sizeof out->message_id, "%s",
                     m->fields[i].value);
        }
    if (id != NULL) {
        g_mime_message_set_message_id(msg, id);
        snprintf(out->message_id, sizeof out->message_id, "<%s>", id);
        g_free(id);
    }
}

/* "<url>, <mailto:...>" and, for one-click, List-Unsubscribe-Post.  The
   value is set raw, folded only between the URIs: GMime would otherwise
   treat a URI longer than a line as a word to encode. */
static void add_unsubscribe(GMimeMessage *msg, const struct compose_message *m)
{
    GString *v = g_string_new(NULL);
    GMimeHeader *h;
    if (m->unsub_url != NULL)
        g_string_append_printf(v, " <%s>", m->unsub_url);
    if (m->unsub_mailto != NULL)
        g_string_append_printf(
            v, "%s <%s%s>", v->len > 0 ? ",\n" : "",
            strncasecmp(m->unsub_mailto, "mailto:", 7) == 0 ? "" : "mailto:",
            m->unsub_mailto);
    if (v->len > 0) {
        g_mime_object_append_header(GMIME_OBJECT(msg), "List-Unsubscribe", "-",
                                    NULL);
        h = g_mime_header_list_get_header(
            g_mime_object_get_header_list(GMIME_OBJECT(msg)),
            "List-Unsubscribe");
        g_string_append_c(v, '\n');
        g_mime_header_set_raw_value(h, v->str);
    }
    if (m->unsub_one_click && m->unsub_url != NULL)
        g_mime_object_append_header(GMIME_OBJECT(msg), "List-Unsubscribe-Post",
                                    "List-Unsubscribe=One-Click", NULL);
    g_string_free(v, TRUE);
}

/* The raw value of an address field rebuilt with short encoded-words. */
void compose_rewrite_addresses(GString *v, InternetAddressList *list)
{
    for (int i = 0; list != NULL && i < internet_address_list_length(list);
         i++) {
        InternetAddress *ia = internet_address_list_get_address(list, i);
        const char *name = internet_address_get_name(ia);
        g_string_append(v, i > 0 ? ",\n " : " ");
        if (name != NULL && name[0] != '\0') {
            compose_append_words(v, name);
            g_string_append(v, "\n ");
        }
        g_string_append_printf(v, "<%s>",
                               INTERNET_ADDRESS_IS_MAILBOX(ia)
                                   ? internet_address_mailbox_get_idn_addr(
                                         INTERNET_ADDRESS_MAILBOX(ia))
                                   : "");
    }
}

/* Every field whose encoded-words GMime made longer than RFC 2047's 75
   characters, written again with words of at most 72. */
static void shorten_words(GMimeMessage *msg)
{
    static const struct {
        const char *name;
        GMimeAddressType type;
    } af[] = {
        { "From", GMIME_ADDRESS_TYPE_FROM },
        { "Reply-To", GMIME_ADDRESS_TYPE_REPLY_TO },
        { "To", GMIME_ADDRESS_TYPE_TO },
        { "Cc", GMIME_ADDRESS_TYPE_CC },
    };
    GMimeHeaderList *hl = g_mime_object_get_header_list(GMIME_OBJECT(msg));
    for (int i = 0; i < g_mime_header_list_get_count(hl); i++) {
        GMimeHeader *h = g_mime_header_list_get_header_at(hl, i);
        const char *name = g_mime_header_get_name(h);
        GString *v;
        size_t a = 0;
        if (!compose_long_word(g_mime_header_get_raw_value(h)))
            continue;
        v = g_string_new(NULL);
        while (a < sizeof af / sizeof af[0] &&
               g_ascii_strcasecmp(name, af[a].name) != 0)
            a++;
        if (a < sizeof af / sizeof af[0]) {
            compose_rewrite_addresses(
                v, g_mime_message_get_addresses(msg, af[a].type));
        } else {
            g_string_append_c(v, ' ');
            compose_append_words(v, g_mime_header_get_value(h));
        }
        g_string_append_c(v, '\n');
        g_mime_header_set_raw_value(h, v->str);
        g_string_free(v, TRUE);
    }
}

/* The header fields of the message. */
static void add_headers(GMimeMessage *msg, const struct compose_message *m,
                        struct compose_result *out)
{
    add_mailboxes(msg, GMIME_ADDRESS_TYPE_FROM, &m->from, 1);
    add_mailboxes(msg, GMIME_ADDRESS_TYPE_REPLY_TO, m->reply_to, m->nreply_to);
    add_mailboxes(msg, GMIME_ADDRESS_TYPE_TO, m->to, m->nto);
    add_mailboxes(msg, GMIME_ADDRESS_TYPE_CC, m->cc, m->ncc);
    if (m->subject != NULL)
        g_mime_message_set_subject(msg, m->subject, "utf-8");
    add_date_and_id(msg, m, out);
    for (size_t i = 0; i < m->nfields; i++)
        g_mime_object_append_header(GMIME_OBJECT(msg), m->fields[i].name,
                                    m->fields[i].value, "utf-8");
    add_unsubscribe(msg, m);
    shorten_words(msg);
}

/* The message written with CRLF line ends into a new byte array. */
static GByteArray *write_crlf(GMimeMessage *msg)
{
    GMimeFormatOptions *fo = g_mime_format_options_new();
    GMimeStream *mem = g_mime_stream_mem_new();
    GMimeStream *fs = g_mime_stream_filter_new(mem);
    GMimeFilter *crlf = g_mime_filter_unix2dos_new(FALSE);
    GByteArray *bytes;
    g_mime_format_options_set_newline_format(fo, GMIME_NEWLINE_FORMAT_DOS);
    g_mime_format_options_set_param_encoding_method(
        fo, GMIME_PARAM_ENCODING_METHOD_RFC2231);
    g_mime_stream_filter_add(GMIME_STREAM_FILTER(fs), crlf);
    g_object_unref(crlf);
    g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(mem), FALSE);
    g_mime_object_write_to_stream(GMIME_OBJECT(msg), fo, fs);
    g_mime_stream_flush(fs);
    bytes = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
    g_object_unref(fs);
    g_object_unref(mem);
    g_mime_format_options_free(fo);
    return bytes;
}

/* 0 when every line of the bytes ends in CRLF and fits 998 octets. */
static int check_wire(const char *p, size_t len, char *why, size_t whylen)
{
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r')) {
            snprintf(why, whylen, "composed a bare LF at octet %zu", i);
            return -1;
        }
        if (p[i] == '\n') {
            if (i - 1 - start > 998) {
                snprintf(why, whylen, "composed a line over 998 octets");
                return -1;
            }
            start = i + 1;
        }
    }
    return 0;
}

/* Copies the GMime output into out->data (NUL-terminated). */
static int take_bytes(GByteArray *b, struct compose_result *out, char *why,
                      size_t whylen)
{
    int rc = COMPOSE_OK;
    if (check_wire((const char *)b->data, b->len, why, whylen) < 0)
        rc = COMPOSE_INVALID;
    else if ((out->data = malloc(b->len + 1)) == NULL)
        rc = COMPOSE_NOMEM;
    else {
        memcpy(out->data, b->data, b->len);
        out->data[b->len] = '\0';
        out->len = b->len;
    }
    g_byte_array_free(b, TRUE);
    return rc;
}

int compose_build(const struct compose_message *m, struct compose_result *out,
                  char *why, size_t whylen)
{
    GMimeMessage *msg;
    GMimeObject *tree;
    int rc;
    compose_gmime_init();
    why[0] = '\0';
    rc = compose_envelope(m, out, why, whylen);
    if (rc != COMPOSE_OK)
        return rc;
    msg = g_mime_message_new(TRUE);
    add_headers(msg, m, out);
    tree = mime_tree(m);
    if (tree == NULL) {
        g_object_unref(msg);
        snprintf(why, whylen, "a part could not be built");
        return COMPOSE_INVALID;
    }
    g_mime_message_set_mime_part(msg, tree);
    g_object_unref(tree);
    rc = take_bytes(write_crlf(msg), out, why, whylen);
    g_object_unref(msg);
    return rc;
}

void compose_result_clear(struct compose_result *r)
{
    if (r == NULL)
        return;
    free(r->data);
    free(r->env_from);
    for (size_t i = 0; i < r->nrcpt; i++)
        free(r->rcpt[i]);
    free(r->rcpt);
    memset(r, 0, sizeof *r);
}
