/*
 * compose/compose.h - a composed message (from, to/cc/bcc, subject, text,
 * HTML, attachments, extra fields, List-Unsubscribe) turned into the exact
 * bytes that go on the wire, and its envelope.  GMime 3 does all the MIME
 * work (multipart structure, transfer encodings, RFC 2047 encoded-words,
 * RFC 2231 parameters, folding); libidn2 turns UTF-8 domains into A-labels.
 *
 * The bytes are always 7-bit (each part quoted-printable or base64 as
 * GMime finds best), CRLF only, lines folded under 78 octets where the
 * encoding allows and never over 998: they can go to any relay and are
 * composed once, when a request is accepted, so what is queued and what a
 * preview shows is exactly what is sent.  There is never a Bcc field.
 *
 * Ownership: every pointer of struct compose_message is borrowed; a
 * struct compose_result owns its strings (compose_result_clear).
 * Errors: COMPOSE_INVALID with a sentence in why, COMPOSE_NOMEM.
 * Threads: GMime is initialised once (pthread_once) on first use; every
 * function here is safe from any thread.
 */
#ifndef MAILPOOL_COMPOSE_H
#define MAILPOOL_COMPOSE_H

#include <stddef.h>

enum compose_rc { COMPOSE_OK = 0, COMPOSE_INVALID = -1, COMPOSE_NOMEM = -2 };

#define COMPOSE_MAX_URL 900 /* octets of a List-Unsubscribe URI */

/* A mailbox: an optional display name (UTF-8) and an address. */
struct compose_mailbox {
    const char *name; /* NULL or "": none */
    const char *email;
};

/* An attachment or an inline part. */
struct compose_part {
    const char *filename;     /* NULL: none (an inline image, say) */
    const char *content_type; /* "type/subtype" */
    const void *data;         /* the decoded bytes */
    size_t len;
    int is_inline;          /* Content-Disposition: inline */
    const char *content_id; /* without <>; NULL: none */
};

/* An extra header field, value in UTF-8 (encoded as RFC 2047 needs). */
struct compose_field {
    const char *name;
    const char *value;
};

struct compose_message {
    struct compose_mailbox from;
    const struct compose_mailbox *to, *cc, *bcc, *reply_to;
    size_t nto, ncc, nbcc, nreply_to;
    const char *subject; /* NULL: no Subject field */
    const char *text;    /* text/plain, NULL: none */
    const char *html;    /* text/html, NULL: none */
    const struct compose_part *parts;
    size_t nparts;
    const struct compose_field *fields;
    size_t nfields;
    const char *unsub_url; /* List-Unsubscribe (RFC 2369, 8058) */
    const char *unsub_mailto;
    int unsub_one_click;       /* List-Unsubscribe-Post */
    const char *id_domain;     /* Message-ID domain; NULL: from's */
    const char *env_from;      /* NULL: from.email */
    const char *const *env_to; /* NULL: to + cc + bcc, each once */
    size_t nenv_to;
};

/* The message as it goes on the wire and its envelope; all owned. */
struct compose_result {
    char *data; /* header section + body, CRLF */
    size_t len;
    char *env_from; /* the reverse-path */
    char **rcpt;    /* the forward-paths, each once */
    size_t nrcpt;
    char message_id[256]; /* with the brackets */
};

/* Readies GMime in the calling thread: initialises it and builds one
   message (mailbox, encoded words, text, HTML, an attachment, an inline
   part) so that every GObject class those calls use is initialised
   before other threads run.  GLib initialises classes lazily under locks
   of its own, which ThreadSanitizer cannot see, so a server calls this
   once before starting threads.  Optional otherwise; never fails. */
void compose_prepare(void);

/* Builds m into out (zeroed by the caller, or cleared). */
int compose_build(const struct compose_message *m, struct compose_result *out,
                  char *why, size_t whylen);
/* Frees what r owns and zeroes it; NULL is a no-op. */
void compose_result_clear(struct compose_result *r);

/* ---- Pieces the JSON decoder uses to check members one by one. ---- */

/* "Name <addr>", "\"Name\" <addr>" or "addr": *name (NULL when none) and
   *email, both new strings (caller frees). */
int compose_mailbox_parse(const char *text, char **name, char **email,
                          char *why, size_t whylen);
/* addr with a UTF-8 domain turned into its A-label (IDNA 2008); an ASCII
   address is copied as is.  A new string in *out. */
int compose_addr_ascii(const char *addr, char **out, char *why, size_t whylen);
/* Strict base64 (RFC 4648, CR/LF/space/tab between groups ignored): the
   bytes in *out (caller frees, NUL-terminated beyond *len). */
int compose_base64_decode(const char *b64, size_t len, unsigned char **out,
                          size_t *outlen, char *why, size_t whylen);
/* A Content-Type of the shape "type/subtype" (RFC 2045 tokens, no
   parameters, not multipart/ or message/). */
int compose_content_type_check(const char *ct, char *why, size_t whylen);
/* A file name: 1..255 octets of UTF-8, no path separator, no control. */
int compose_filename_check(const char *name, char *why, size_t whylen);
/* A Content-ID: 1..250 printable ASCII octets without <, > or spaces. */
int compose_content_id_check(const char *cid, char *why, size_t whylen);
/* A List-Unsubscribe URI: http(s):// (or mailto:), printable ASCII, no
   <, > , comma or space, at most COMPOSE_MAX_URL octets. */
int compose_uri_check(const char *uri, const char *scheme, char *why,
                      size_t whylen);

/*
 * The value of a header field as it can go without SMTPUTF8: NULL when
 * value is ASCII (send it as is); else a new string: an address field's
 * display names (From, Sender, Reply-To, To, Cc and their Resent- forms)
 * or an unstructured field's text as RFC 2047 encoded-words (UTF-8),
 * unfolded (the header writer folds it).  *invalid is set when an address
 * field does not parse; -1 (and NULL returned) when out of memory.
 */
char *compose_header_encode(const char *name, const char *value, int *invalid);

/*
 * An unstructured field's value for people: its RFC 2047 encoded-words
 * decoded to UTF-8 (GMime), bytes that are not UTF-8 replaced.  A new
 * string (free), NULL when out of memory.
 */
char *compose_header_decode(const char *value);

#endif /* MAILPOOL_COMPOSE_H */
