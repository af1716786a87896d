/*
 * util/log.c - JSON lines on standard error.
 *
 * Public: log_set_level, log_enabled, log_event, log_event_num (util/log.h).
 *
 * Each call builds one line in a LOG_LINE_MAX (4 KiB, <= PIPE_BUF) buffer on
 * the stack:
 *   {"time":"2026-11-28T13:00:00.123Z","level":"info","event":"smtp",...}\n
 * and writes it with a single write(2).  Strings are escaped for JSON
 * (quote, backslash, control characters as \n, \t ... or \u00XX); bytes that
 * are not valid UTF-8 become \ufffd so that the line always parses.  When the
 * buffer runs out, the value being written is cut on a character boundary,
 * later fields are dropped and "truncated":true closes the object: a
 * LOG_TAIL_RESERVE of bytes is always kept free for that tail.
 *
 * Errors: none reported; a failed write is ignored (there is nowhere else to
 * say it).  errno is preserved.
 * Threads: safe.  The one mutable global is log_min_level (the filter, an
 * atomic int written by log_set_level at start), allowed by CONVENTIONS.md
 * rule 8 as configuration fixed before the threads run.
 */
#include "util/log.h"
#include "util/utf8.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Room kept for  "  ,"truncated":true  }  \n  after the last value. */
#define LOG_TAIL_RESERVE 24
#define LOG_TRUNCATED ",\"truncated\":true"

/* The minimum level written; the module's one mutable global (see top). */
static atomic_int log_min_level = LOG_INFO;

static const char *const log_level_names[] = {
    [LOG_DEBUG] = "debug",
    [LOG_INFO] = "info",
    [LOG_WARN] = "warn",
    [LOG_ERROR] = "error",
};

/* A line being built; len never passes LOG_LINE_MAX - LOG_TAIL_RESERVE
   except by the closing quote of the last value. */
struct log_buf {
    char b[LOG_LINE_MAX];
    size_t len;
    int truncated; /* something was cut or dropped */
    int full;      /* stop adding fields */
};

/* Sets the minimum level by name; -1 (and no change) for an unknown name. */
int log_set_level(const char *name)
{
    if (name == NULL)
        return -1;
    for (int i = LOG_DEBUG; i <= LOG_ERROR; i++) {
        if (strcmp(name, log_level_names[i]) == 0) {
            atomic_store(&log_min_level, i);
            return 0;
        }
    }
    return -1;
}

/* 1 when a line of this level would be written. */
int log_enabled(enum log_level level)
{
    return (int)level >=
           atomic_load_explicit(&log_min_level, memory_order_relaxed);
}

/* Bytes still usable for content. */
static size_t log_room(const struct log_buf *lb)
{
    size_t limit = sizeof lb->b - LOG_TAIL_RESERVE;
    return lb->len < limit ? limit - lb->len : 0;
}

/* Appends n raw bytes when they fit; -1 otherwise (nothing written). */
static int log_raw(struct log_buf *lb, const char *s, size_t n)
{
    if (n > log_room(lb))
        return -1;
    memcpy(lb->b + lb->len, s, n);
    lb->len += n;
    return 0;
}

/* The JSON escape of one ASCII control/special byte into out (<= 7). */
static size_t log_escape_byte(unsigned char c, char *out, size_t cap)
{
    switch (c) {
    case '"': return (size_t)snprintf(out, cap, "\\\"");
    case '\\': return (size_t)snprintf(out, cap, "\\\\");
    case '\n': return (size_t)snprintf(out, cap, "\\n");
    case '\r': return (size_t)snprintf(out, cap, "\\r");
    case '\t': return (size_t)snprintf(out, cap, "\\t");
    case '\b': return (size_t)snprintf(out, cap, "\\b");
    case '\f': return (size_t)snprintf(out, cap, "\\f");
    default: return (size_t)snprintf(out, cap, "\\u%04x", (unsigned)c);
    }
}

/*
 * Appends s as a JSON string.  When it does not fit, writes what fits on a
 * character boundary, closes the quote and marks the line truncated and full.
 * The opening quote must fit (else -1, nothing written).
 */
static int log_str(struct log_buf *lb, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    char esc[8];

    if (log_raw(lb, "\"", 1) < 0)
        return -1;
    while (*p != '\0') {
        size_t in = 1, out;
        const char *unit = esc;

        if (*p < 0x20 || *p == '"' || *p == '\\' || *p == 0x7f) {
            out = log_escape_byte(*p, esc, sizeof esc);
        } else if ((in = util_utf8_len(p, strnlen((const char *)p, 4))) == 0) {
            in = 1;
            out = (size_t)snprintf(esc, sizeof esc, "\\ufffd");
        } else {
            unit = (const char *)p;
            out = in;
        }
        if (log_raw(lb, unit, out) < 0) {
            lb->truncated = lb->full = 1;
            break;
        }
        p += in;
    }
    lb->b[lb->len++] = '"'; /* within LOG_TAIL_RESERVE */
    return 0;
}

/* Starts the object with time, level and event. */
static void log_begin(struct log_buf *lb, enum log_level level,
                      const char *event)
{
    struct timespec ts;
    struct tm tm;
    char when[64];
    size_t n;

    lb->len = 0;
    lb->truncated = lb->full = 0;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof when - n, ".%03ldZ", ts.tv_nsec / 1000000L);
    n = (size_t)snprintf(lb->b, sizeof lb->b,
                         "{\"time\":\"%s\",\"level\":\"%s\",\"event\":", when,
                         log_level_names[level]);
    lb->len = n;
    log_str(lb, event != NULL ? event : "");
}

/* Appends ,"key": ; on failure drops this and every later field. */
static int log_key(struct log_buf *lb, const char *key)
{
    size_t mark = lb->len;

    if (lb->full)
        return -1;
    if (log_raw(lb, ",", 1) < 0 || log_str(lb, key) < 0 || lb->full ||
        log_raw(lb, ":", 1) < 0) {
        lb->len = mark;
        lb->truncated = lb->full = 1;
        return -1;
    }
    return 0;
}

/* Appends "key":"value" (value escaped, cut when too long). */
static void log_field_str(struct log_buf *lb, const char *key,
                          const char *value)
{
    size_t mark = lb->len;

    if (value == NULL || log_key(lb, key) < 0)
        return;
    if (log_str(lb, value) < 0) {
        lb->len = mark;
        lb->truncated = lb->full = 1;
    }
}

/* Appends "key":number (integers without a fraction; NaN/inf as null). */
static void log_field_num(struct log_buf *lb, const char *key, double v)
{
    char num[48];
    size_t mark = lb->len;
    int n;

    if (log_key(lb, key) < 0)
        return;
    if (!isfinite(v))
        n = snprintf(num, sizeof num, "null");
    else if (v > -1e15 && v < 1e15 && v == (double)(long long)v)
        n = snprintf(num, sizeof num, "%.0f", v);
    else
        n = snprintf(num, sizeof num, "%.3f", v);
    if (n < 0 || (size_t)n >= sizeof num || log_raw(lb, num, (size_t)n) < 0) {
        lb->len = mark;
        lb->truncated = lb->full = 1;
    }
}

/* Appends "key":true or "key":false. */
static void log_field_bool(struct log_buf *lb, const char *key, int v)
{
    size_t mark = lb->len;

    if (log_key(lb, key) < 0)
        return;
    if (log_raw(lb, v ? "true" : "false", v ? 4 : 5) < 0) {
        lb->len = mark;
        lb->truncated = lb->full = 1;
    }
}

/* Closes the object and writes the line with one write(2). */
static void log_finish(struct log_buf *lb)
{
    size_t off = 0;
    int saved = errno;

    if (lb->truncated) {
        memcpy(lb->b + lb->len, LOG_TRUNCATED, sizeof LOG_TRUNCATED - 1);
        lb->len += sizeof LOG_TRUNCATED - 1;
    }
    lb->b[lb->len++] = '}';
    lb->b[lb->len++] = '\n';
    while (off < lb->len) {
        ssize_t w = write(STDERR_FILENO, lb->b + off, lb->len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    errno = saved;
}

/* Clamps a level to the known range. */
static enum log_level log_clamp(enum log_level level)
{
    if ((int)level < LOG_DEBUG)
        return LOG_DEBUG;
    if ((int)level > LOG_ERROR)
        return LOG_ERROR;
    return level;
}

/* Writes one line: event plus key/value string pairs ended by a NULL key. */
void log_event(enum log_level level, const char *event, ...)
{
    struct log_buf lb;
    va_list ap;
    const char *key;

    level = log_clamp(level);
    if (!log_enabled(level))
        return;
    log_begin(&lb, level, event);
    va_start(ap, event);
    while ((key = va_arg(ap, const char *)) != NULL) {
        const char *value = va_arg(ap, const char *);
        log_field_str(&lb, key, value);
    }
    va_end(ap);
    log_finish(&lb);
}

/* Writes one line: event plus fields[0..n), strings, numbers or booleans. */
void log_event_num(enum log_level level, const char *event,
                   const struct log_field *fields, size_t n)
{
    struct log_buf lb;

    level = log_clamp(level);
    if (!log_enabled(level))
        return;
    log_begin(&lb, level, event);
    for (size_t i = 0; i < n; i++) {
        if (fields[i].key == NULL)
            continue;
        if (fields[i].is_bool)
            log_field_bool(&lb, fields[i].key, fields[i].num != 0);
        else if (fields[i].is_num)
            log_field_num(&lb, fields[i].key, fields[i].num);
        else
            log_field_str(&lb, fields[i].key, fields[i].str);
    }
    log_finish(&lb);
}
