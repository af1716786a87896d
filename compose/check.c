/*
 * compose/check.c - the pieces of a composed message checked one by one
 * (compose.h): mailboxes (GMime's parser, then smtpcore's address check),
 * A-labels (libidn2, IDNA 2008), strict base64, Content-Type shapes, file
 * names, Content-IDs, List-Unsubscribe URIs, the envelope, and RFC 2047
 * encoding of the envelope form's non-ASCII header values (GMime).
 *
 * Public: compose_mailbox_parse, compose_addr_ascii,
 * compose_base64_decode, compose_content_type_check,
 * compose_filename_check, compose_content_id_check, compose_uri_check,
 * compose_header_encode; compose_envelope (internal.h).
 * Errors: -1 (COMPOSE_INVALID) with a sentence in why; COMPOSE_NOMEM.
 * Threads: no shared state; GMime initialised once (compose_gmime_init).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gmime/gmime.h>
#include <idn2.h>
#include <smtpcore/smtp.h>

#include "compose/compose.h"
#include "compose/internal.h"

/* 1 when raw holds an RFC 2047 encoded-word over 75 characters (GMime
   3.2 writes longer ones for a long run of text without spaces). */
int compose_long_word(const char *raw)
{
    const char *p = raw, *end;
    if (raw == NULL)
        return 0;
    while ((p = strstr(p, "=?")) != NULL) {
        const char *q = strchr(p + 2, '?');
        if (q == NULL || (q = strchr(q + 1, '?')) == NULL ||
            (end = strstr(q + 1, "?=")) == NULL)
            return 0;
        if (end + 2 - p > 75)
            return 1;
        p = end + 2;
    }
    return 0;
}

/* Appends text as base64 encoded-words of at most 39 octets of UTF-8
   each (64 characters, so that "Reply-To: " and a word fit in 78), cut
   between characters, separated by folds: whitespace between two
   encoded-words is not part of the text. */
void compose_append_words(GString *out, const char *text)
{
    size_t n = strlen(text), i = 0;
    while (i < n) {
        size_t k = n - i > 39 ? 39 : n - i;
        while (i + k < n && ((unsigned char)text[i + k] & 0xC0) == 0x80)
            k--; /* not inside a character */
        gchar *b = g_base64_encode((const guchar *)text + i, k);
        g_string_append_printf(out, "%s=?UTF-8?B?%s?=", i > 0 ? "\n " : "", b);
        g_free(b);
        i += k;
    }
}

/* 1 when s holds a byte over 0x7f. */
static int has_8bit(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s >= 0x80)
            return 1;
    return 0;
}

int compose_addr_ascii(const char *addr, char **out, char *why, size_t whylen)
{
    const char *at = strrchr(addr, '@');
    char *alabel = NULL;
    size_t local;
    int rc;
    *out = NULL;
    if (at == NULL || !has_8bit(at + 1)) {
        *out = strdup(addr);
        return *out != NULL ? COMPOSE_OK : COMPOSE_NOMEM;
    }
    rc = idn2_to_ascii_8z(at + 1, &alabel,
                          IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
    if (rc != IDN2_OK) {
        snprintf(why, whylen, "the domain is not a valid IDNA 2008 name: %s",
                 idn2_strerror(rc));
        return COMPOSE_INVALID;
    }
    local = (size_t)(at - addr);
    *out = malloc(local + 1 + strlen(alabel) + 1);
    if (*out != NULL) {
        memcpy(*out, addr, local + 1);
        memcpy(*out + local + 1, alabel, strlen(alabel) + 1);
    }
    idn2_free(alabel);
    return *out != NULL ? COMPOSE_OK : COMPOSE_NOMEM;
}

/* The one mailbox of text, or NULL with why set. */
static InternetAddressMailbox *one_mailbox(InternetAddressList *list, char *why,
                                           size_t whylen)
{
    InternetAddress *ia;
    if (list == NULL || internet_address_list_length(list) != 1) {
        snprintf(why, whylen,
                 "must be one mailbox: \"Name <addr>\" or "
                 "\"addr\"");
        return NULL;
    }
    ia = internet_address_list_get_address(list, 0);
    if (!INTERNET_ADDRESS_IS_MAILBOX(ia)) {
        snprintf(why, whylen, "must be a mailbox, not a group");
        return NULL;
    }
    return INTERNET_ADDRESS_MAILBOX(ia);
}

int compose_mailbox_parse(const char *text, char **name, char **email,
                          char *why, size_t whylen)
{
    InternetAddressList *list;
    InternetAddressMailbox *mb;
    const char *n;
    int rc = COMPOSE_INVALID;
    *name = *email = NULL;
    compose_gmime_init();
    list = internet_address_list_parse(NULL, text);
    mb = one_mailbox(list, why, whylen);
    if (mb != NULL) {
        rc = compose_addr_ascii(internet_address_mailbox_get_addr(mb), email,
                                why, whylen);
        if (rc == COMPOSE_OK && smtp_addr_check(*email, 0, why, whylen) < 0)
            rc = COMPOSE_INVALID;
        n = internet_address_get_name(INTERNET_ADDRESS(mb));
        if (rc == COMPOSE_OK && n != NULL && n[0] != '\0' &&
            (*name = strdup(n)) == NULL)
            rc = COMPOSE_NOMEM;
    }
    if (list != NULL)
        g_object_unref(list);
    if (rc != COMPOSE_OK) {
        free(*email);
        *email = NULL;
    }
    return rc;
}

/* The value of a base64 digit, -1 for '=', -2 for anything else. */
static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return c == '=' ? -1 : -2;
}

/* Decodes the n (a multiple of 4) digits of s into out; bytes written or
   -1 when the padding is misplaced. */
static long b64_run(const unsigned char *s, size_t n, unsigned char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++)
            v[k] = b64_value(s[i + k]);
        if (v[0] < 0 || v[1] < 0 || (v[2] < 0 && v[3] >= 0) ||
            ((v[2] < 0 || v[3] < 0) && i + 4 != n))
            return -1;
        out[o++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
        if (v[2] >= 0)
            out[o++] = (unsigned char)((v[1] & 15) << 4 | v[2] >> 2);
        if (v[3] >= 0)
            out[o++] = (unsigned char)((v[2] & 3) << 6 | v[3]);
    }
    return (long)o;
}

int compose_base64_decode(const char *b64, size_t len, unsigned char **out,
                          size_t *outlen, char *why, size_t whylen)
{
    unsigned char *digits = malloc(len + 1), *bytes;
    size_t n = 0;
    long got;
    *out = NULL;
    *outlen = 0;
    if (digits == NULL)
        return COMPOSE_NOMEM;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)b64[i];
        if (c == '\r' || c == '\n' || c == ' ' || c == '\t')
            continue;
        if (b64_value(c) == -2) {
            snprintf(why, whylen,
                     "is not base64: octet %zu is not a base64 "
                     "digit",
                     i);
            free(digits);
            return COMPOSE_INVALID;
        }
        digits[n++] = c;
    }
    if (n % 4 != 0) {
        snprintf(why, whylen,
                 "is not base64: %zu digits, not a multiple of "
                 "4",
                 n);
        free(digits);
        return COMPOSE_INVALID;
    }
    bytes = malloc(n / 4 * 3 + 1);
    if (bytes == NULL) {
        free(digits);
        return COMPOSE_NOMEM;
    }
    got = b64_run(digits, n, bytes);
    free(digits);
    if (got < 0) {
        snprintf(why, whylen, "is not base64: misplaced '=' padding");
        free(bytes);
        return COMPOSE_INVALID;
    }
    bytes[got] = '\0';
    *out = bytes;
    *outlen = (size_t)got;
    return COMPOSE_OK;
}

/* Length of the RFC 2045 token at s. */
static size_t token_len(const char *s)
{
    size_t n = 0;
    while (s[n] > 0x20 && s[n] < 0x7f &&
           strchr("()<>@,;:\\\"/[]?=", s[n]) == NULL)
        n++;
    return n;
}

int compose_content_type_check(const char *ct, char *why, size_t whylen)
{
    size_t t = token_len(ct), st;
    if (t == 0 || ct[t] != '/' || (st = token_len(ct + t + 1)) == 0 ||
        ct[t + 1 + st] != '\0' || strlen(ct) > 127) {
        snprintf(why, whylen,
                 "must be \"type/subtype\" (RFC 2045 tokens, "
                 "no parameters), such as \"application/pdf\"");
        return COMPOSE_INVALID;
    }
    if (strncasecmp(ct, "multipart/", 10) == 0 ||
        strncasecmp(ct, "message/", 8) == 0) {
        snprintf(why, whylen,
                 "multipart/ and message/ types are built by "
                 "mailpool, not attached");
        return COMPOSE_INVALID;
    }
    return COMPOSE_OK;
}

int compose_filename_check(const char *name, char *why, size_t whylen)
{
    size_t n = strlen(name);
    if (n == 0 || n > 255) {
        snprintf(why, whylen, "must be 1 to 255 octets");
        return COMPOSE_INVALID;
    }
    if (!g_utf8_validate(name, (gssize)n, NULL)) {
        snprintf(why, whylen, "must be UTF-8");
        return COMPOSE_INVALID;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '/' || c == '\\') {
            snprintf(why, whylen, "must not hold a path separator");
            return COMPOSE_INVALID;
        }
        if (c < 0x20 || c == 0x7f) {
            snprintf(why, whylen, "must not hold a control character");
            return COMPOSE_INVALID;
        }
    }
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
        snprintf(why, whylen, "must name a file");
        return COMPOSE_INVALID;
    }
    return COMPOSE_OK;
}

int compose_content_id_check(const char *cid, char *why, size_t whylen)
{
    size_t n = strlen(cid);
    int ok = n > 0 && n <= 250;
    for (size_t i = 0; ok && i < n; i++)
        ok = cid[i] > 0x20 && cid[i] < 0x7f && cid[i] != '<' && cid[i] != '>';
    if (!ok) {
        snprintf(why, whylen,
                 "must be 1 to 250 printable ASCII characters "
                 "without <, > or spaces (the HTML refers to it as cid:...)");
        return COMPOSE_INVALID;
    }
    return COMPOSE_OK;
}

int compose_uri_check(const char *uri, const char *scheme, char *why,
                      size_t whylen)
{
    size_t n = strlen(uri);
    int ok = n > 0 && n <= COMPOSE_MAX_URL;
    for (size_t i = 0; ok && i < n; i++)
        ok = uri[i] > 0x20 && uri[i] < 0x7f && strchr("<>,\"", uri[i]) == NULL;
    if (!ok) {
        snprintf(why, whylen,
                 "must be 1 to %d printable ASCII characters "
                 "without spaces, <, >, commas or quotes (percent-encode "
                 "them)",
                 COMPOSE_MAX_URL);
        return COMPOSE_INVALID;
    }
    if (scheme != NULL && strncasecmp(uri, scheme, strlen(scheme)) != 0 &&
        !(strcmp(scheme, "https://") == 0 &&
          strncasecmp(uri, "http://", 7) == 0)) {
        snprintf(why, whylen, "must start with %s", scheme);
        return COMPOSE_INVALID;
    }
    return COMPOSE_OK;
}

/* 1 when two addresses are the same mailbox (RFC 5321 2.4: the local part
   exactly, the domain without case). */
static int same_mailbox(const char *a, const char *b)
{
    const char *aa = strrchr(a, '@'), *bb = strrchr(b, '@');
    if (aa == NULL || bb == NULL)
        return strcmp(a, b) == 0;
    return aa - a == bb - b && strncmp(a, b, (size_t)(aa - a)) == 0 &&
           strcasecmp(aa, bb) == 0;
}

/* Appends addr (as its A-label form) to out->rcpt unless already there. */
static int add_rcpt(struct compose_result *out, const char *addr, char *why,
                    size_t whylen)
{
    char *a;
    int rc = compose_addr_ascii(addr, &a, why, whylen);
    if (rc != COMPOSE_OK)
        return rc;
    for (size_t i = 0; i < out->nrcpt; i++)
        if (same_mailbox(out->rcpt[i], a)) {
            free(a);
            return COMPOSE_OK;
        }
    out->rcpt[out->nrcpt++] = a;
    return COMPOSE_OK;
}

int compose_envelope(const struct compose_message *m,
                     struct compose_result *out, char *why, size_t whylen)
{
    size_t n = m->env_to != NULL ? m->nenv_to : m->nto + m->ncc + m->nbcc;
    int rc = compose_addr_ascii(m->env_from != NULL ? m->env_from
                                                    : m->from.email,
                                &out->env_from, why, whylen);
    if (rc != COMPOSE_OK)
        return rc;
    out->rcpt = calloc(n + 1, sizeof *out->rcpt);
    if (out->rcpt == NULL)
        return COMPOSE_NOMEM;
    for (size_t i = 0; rc == COMPOSE_OK && i < n; i++) {
        const char *a = m->env_to != NULL ? m->env_to[i]
                        : i < m->nto      ? m->to[i].email
                        : i < m->nto + m->ncc
                            ? m->cc[i - m->nto].email
                            : m->bcc[i - m->nto - m->ncc].email;
        rc = add_rcpt(out, a, why, whylen);
    }
    if (rc == COMPOSE_OK && out->nrcpt == 0) {
        snprintf(why, whylen, "the message has no recipient");
        rc = COMPOSE_INVALID;
    }
    return rc;
}

/* 1 for the fields holding address lists (RFC 5322 3.6.2, 3.6.3, 3.6.6). */
static int address_field(const char *name)
{
    static const char *const names[] = {
        "From",      "Sender",    "Reply-To",    "To",
        "Cc",        "Bcc",       "Resent-From", "Resent-Sender",
        "Resent-To", "Resent-Cc", "Resent-Bcc",  NULL
    };
    for (size_t i = 0; names[i] != NULL; i++)
        if (strcasecmp(name, names[i]) == 0)
            return 1;
    return 0;
}

/* 1 for the unstructured fields: Subject, Comments, X-*. */
static int unstructured_field(const char *name)
{
    return strcasecmp(name, "Subject") == 0 ||
           strcasecmp(name, "Comments") == 0 || strncasecmp(name, "X-", 2) == 0;
}

/* s (g_malloc'd) without its folding CR and LF, as a malloc'd string;
   NULL with *invalid -1 when out of memory. */
static char *unfold(char *s, int *invalid)
{
    size_t o = 0, n = strlen(s);
    char *out = malloc(n + 1);
    if (out != NULL) {
        for (size_t i = 0; i < n; i++)
            if (s[i] != '\r' && s[i] != '\n')
                out[o++] = s[i];
        out[o] = '\0';
    } else {
        *invalid = -1;
    }
    g_free(s);
    return out;
}

char *compose_header_encode(const char *name, const char *value, int *invalid)
{
    *invalid = 0;
    if (!has_8bit(value))
        return NULL;
    compose_gmime_init();
    if (address_field(name)) {
        InternetAddressList *list = internet_address_list_parse(NULL, value);
        char *s;
        if (list == NULL || internet_address_list_length(list) == 0) {
            if (list != NULL)
                g_object_unref(list);
            *invalid = 1;
            return NULL;
        }
        for (int i = 0; i < internet_address_list_length(list); i++)
            internet_address_set_charset(
                internet_address_list_get_address(list, i), "utf-8");
        s = internet_address_list_to_string(list, NULL, TRUE);
        if (compose_long_word(s)) {
            GString *v = g_string_new(NULL);
            compose_rewrite_addresses(v, list);
            g_free(s);
            s = g_string_free(v, FALSE);
        }
        g_object_unref(list);
        return unfold(s, invalid);
    }
    if (!unstructured_field(name))
        return NULL;
    char *s = g_mime_utils_header_encode_text(NULL, value, "utf-8");
    if (compose_long_word(s)) {
        GString *v = g_string_new(NULL);
        compose_append_words(v, value);
        g_free(s);
        s = g_string_free(v, FALSE);
    }
    return unfold(s, invalid);
}

char *compose_header_decode(const char *value)
{
    char *g, *out;
    compose_gmime_init();
    g = g_mime_utils_header_decode_text(NULL, value);
    if (g == NULL)
        return strdup(value);
    if (!g_utf8_validate(g, -1, NULL)) {
        char *fixed = g_utf8_make_valid(g, -1);
        g_free(g);
        g = fixed;
    }
    out = strdup(g);
    g_free(g);
    return out;
}
