/*
 * transcript.h - the transcript case files of tests/transcripts/ (tests
 * only): reading a case, the escaped line form of the expected client
 * bytes, a readable diff, and writing a case back with new expected bytes.
 *
 * A case file (the format is described in full in tests/README.md):
 *
 *     # comments, before the first section only
 *     title: a plain message, relay offers PIPELINING
 *     paths: library serve cli            (optional; default all three)
 *     helo: client.test
 *     tls: none
 *     pipelining: on
 *     xfail: serve cli: why these paths send other bytes today
 *     --- script
 *     {fake_smtp.py JSON}
 *     --- message
 *     {the JSON of POST /v1/messages}
 *     --- outcome
 *     status: sent
 *     code: 250
 *     accepted: bob@example.org
 *     --- conn 1
 *     EHLO client.test
 *     ...
 *
 * In a conn section each line stands for its bytes followed by CRLF.
 * Escapes: \\ \r \n \t \s (a space, written for trailing spaces) \xHH,
 * \{N*TEXT} (TEXT N times), and \c at the very end of a line (no CRLF
 * after it).
 *
 * Errors: -1 / NULL with a reason in the caller's buffer.  Nothing global;
 * a struct tr_case is used by one thread at a time.
 */
#ifndef MAILPOOL_TESTS_TRANSCRIPT_H
#define MAILPOOL_TESTS_TRANSCRIPT_H

#include <stddef.h>

/* The ways a message reaches the relay. */
enum tr_path { TR_LIBRARY = 0, TR_SERVE, TR_CLI, TR_NPATHS };

/* Expected bytes of one connection. */
struct tr_conn {
    int n;       /* connection number, from 1 */
    int path;    /* -1: every path; else the one enum tr_path */
    char *bytes; /* decoded; NUL after len */
    size_t len;
};

/* A refused recipient and its reply code. */
struct tr_rejected {
    char *rcpt;
    int code;
};

/* The outcome of one send, as the case states it or as a path reported it. */
struct tr_outcome {
    int http;        /* HTTP status of the serve path (200) */
    char status[16]; /* "sent", "partial", ... */
    int code;
    char **accepted;
    size_t naccepted;
    struct tr_rejected *rejected;
    size_t nrejected;
};

/* One case file. */
struct tr_case {
    char *file; /* path as given */
    char *name; /* base name without ".case" */
    char *title;
    char *helo;                 /* EHLO name; default "localhost" */
    int pipelining;             /* 1 on (default), 0 off */
    unsigned paths;             /* bit (1 << enum tr_path) per path run */
    unsigned xfail;             /* paths known to fail today */
    char *xfail_why[TR_NPATHS]; /* the reason given for each */
    char *script;               /* fake_smtp.py JSON */
    char *message;              /* POST /v1/messages JSON */
    struct tr_outcome want;
    struct tr_conn *conns;
    size_t nconns;
    char *text;      /* the whole file */
    size_t keep_len; /* bytes before the first outcome/conn
                                    section: kept as is by tr_write_new */
};

/* Reads and checks a case file; 0, or -1 with why. */
int tr_case_load(const char *file, struct tr_case *c, char *why, size_t whylen);
/* Frees what c owns; a zeroed case is fine. */
void tr_case_free(struct tr_case *c);

/* The expected bytes of connection n on path p (an override for p first,
   then the common section); NULL when the case has none. */
const struct tr_conn *tr_case_conn(const struct tr_case *c, int n,
                                   enum tr_path p);
/* How many connections path p is expected to open. */
int tr_case_nconns(const struct tr_case *c, enum tr_path p);

/* "library", "serve", "cli". */
const char *tr_path_name(enum tr_path p);

/* Frees what an outcome owns and zeroes it. */
void tr_outcome_clear(struct tr_outcome *o);
/* Appends to an outcome's lists; 0 or -1 (no memory). */
int tr_outcome_accept(struct tr_outcome *o, const char *rcpt);
int tr_outcome_reject(struct tr_outcome *o, const char *rcpt, int code);

/* Decodes one escaped line (len bytes, no newline) and appends its bytes,
   with CRLF unless it ends in \c, to *out (a malloc'd buffer of *outlen
   bytes, grown as needed).  0, or -1 with why. */
int tr_decode_line(const char *line, size_t len, char **out, size_t *outlen,
                   char *why, size_t whylen);
/* The escaped line form of bytes: one line per CRLF-ended line, each ended
   by '\n'; caller frees.  NULL on no memory. */
char *tr_escape(const char *bytes, size_t len);

/* NULL when want and got are equal; else a readable report (the first
   differing line, expected and got, both escaped, with a line of context
   and the byte counts), caller frees. */
char *tr_diff(const char *want, size_t wlen, const char *got, size_t glen);
/* NULL when the outcomes agree; else a report, caller frees. */
char *tr_outcome_diff(const struct tr_outcome *want,
                      const struct tr_outcome *got);

/* Writes FILE.new: the case's text up to its first outcome or conn section,
   then the outcome got and one conn section per connection (bytes[i] of
   lens[i], connection i + 1).  0, or -1 with why. */
int tr_write_new(const struct tr_case *c, const struct tr_outcome *got,
                 char *const *bytes, const size_t *lens, int nconns, char *why,
                 size_t whylen);

#endif
