/*
 * util/log.h - one JSON object per line on standard error: the log writer
 * of every module but smtpcore (which logs through its trace hook).  The
 * functions keep the short prefix log_ (Postfix's msg_ in src/util).
 *
 * log_event(LOG_INFO, "request", "request_id", id, "status", "200",
 *           (const char *)NULL):
 * the arguments after the event name are key/value string pairs ended by a
 * null pointer (cast it: a bare NULL may be an int 0 in varargs, which
 * cppcheck's varFuncNullUB flags); a NULL value is skipped.
 * log_event_num adds numbers without formatting them first: it takes an
 * array of struct log_field, each a string (LOG_STR), a number (LOG_NUM,
 * written as a JSON number; NaN and infinities become null) or a boolean
 * (LOG_BOOL, written as true or false).  Values are
 * JSON-escaped; bytes that are not UTF-8 become U+FFFD.  A line is at most
 * LOG_LINE_MAX bytes with its newline: a value too long is cut (on a
 * character boundary) and the object gets "truncated":true, so the line
 * stays valid JSON.  Never pass a body, a password or an API key.
 *
 * Threads: safe; each line is written with a single write(2) of at most
 * PIPE_BUF bytes, so lines from different threads never interleave.
 * Global state: the minimum level (an atomic int in log.c, default "info"),
 * set once at start by log_set_level; the one mutable global of the module.
 */
#ifndef MAILPOOL_LOG_H
#define MAILPOOL_LOG_H

#include <stddef.h>

#define LOG_LINE_MAX 4096

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* "debug", "info", "warn", "error"; returns -1 for anything else. */
int log_set_level(const char *name);
int log_enabled(enum log_level level);
void log_event(enum log_level level, const char *event, ...);

/* One key/value of log_event_num; key and str are borrowed. */
struct log_field {
    const char *key;
    const char *str; /* the value when !is_num; NULL: field skipped */
    double num;      /* the value when is_num or is_bool (0: false) */
    int is_num;
    int is_bool;
};
#define LOG_STR(k, v) ((struct log_field){ .key = (k), .str = (v) })
#define LOG_NUM(k, v) \
    ((struct log_field){ .key = (k), .num = (double)(v), .is_num = 1 })
#define LOG_BOOL(k, v) \
    ((struct log_field){ .key = (k), .num = (v) ? 1 : 0, .is_bool = 1 })

/* Like log_event, with fields[0..n) that may be numbers. */
void log_event_num(enum log_level level, const char *event,
                   const struct log_field *fields, size_t n);

#endif /* MAILPOOL_LOG_H */
