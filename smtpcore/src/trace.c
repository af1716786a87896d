/*
 * trace.c - the connection's state and its trace (smtp.h: enum
 * smtp_conn_state, smtp_trace_fn).
 *
 * smtp__set_state is the only way the state changes (curl's "the only way
 * to change SMTP state"); it tells the trace hook.  smtp__trace_sent and
 * smtp__trace_received hand the hook each line, with the content of a
 * message (state DATA) left out and AUTH credentials redacted.
 * Public: smtp_conn_state, smtp_conn_state_name.
 * Errors: none; a hook is told nothing when it is NULL.
 * Threads: as the connection (one thread at a time).
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

static const char *const state_names[] = {
    [SMTP_CONN_CLOSED] = "CLOSED",       [SMTP_CONN_GREETING] = "GREETING",
    [SMTP_CONN_CONNECTED] = "CONNECTED", [SMTP_CONN_AUTH] = "AUTH",
    [SMTP_CONN_READY] = "READY",         [SMTP_CONN_DATA] = "DATA",
};

/* The state's name; "?" for a value outside the enum. */
const char *smtp_conn_state_name(enum smtp_conn_state state)
{
    size_t i = (size_t)state;
    return i < sizeof state_names / sizeof state_names[0] ? state_names[i]
                                                          : "?";
}

/* The connection's state. */
enum smtp_conn_state smtp_conn_state(const struct smtp_conn *conn)
{
    return conn != NULL ? conn->state : SMTP_CONN_CLOSED;
}

/* Hands the n bytes at p to the hook as one NUL-terminated line. */
static void trace_line(const struct smtp_conn *c, enum smtp_trace_kind kind,
                       const char *p, size_t n)
{
    char line[SMTP_MAX_REPLY_LINE + 1];

    if (n > SMTP_MAX_REPLY_LINE)
        n = SMTP_MAX_REPLY_LINE;
    memcpy(line, p, n);
    line[n] = '\0';
    c->opts.trace(c->opts.trace_ctx, kind, line, n);
}

/* The one setter: a closed connection only reopens to GREETING. */
void smtp__set_state(struct smtp_conn *c, enum smtp_conn_state s)
{
    char line[48];
    int n;

    if (c->state == s ||
        (c->state == SMTP_CONN_CLOSED && s != SMTP_CONN_GREETING))
        return;
    if (c->opts.trace != NULL) {
        n = snprintf(line, sizeof line, "%s -> %s",
                     smtp_conn_state_name(c->state), smtp_conn_state_name(s));
        if (n > 0 && (size_t)n < sizeof line)
            trace_line(c, SMTP_TRACE_STATE, line, (size_t)n);
    }
    c->state = s;
}

/* A sent line as the trace shows it: credentials in state AUTH redacted
   (the command keeps its verb and mechanism). */
static void trace_sent_line(const struct smtp_conn *c, const char *p, size_t n)
{
    static const char redacted[] = "<redacted>";
    char line[64];
    size_t verb, mech;
    int k;

    if (c->state != SMTP_CONN_AUTH) {
        trace_line(c, SMTP_TRACE_SENT, p, n);
        return;
    }
    if (n < 5 || strncasecmp(p, "AUTH ", 5) != 0) {
        trace_line(c, SMTP_TRACE_SENT, redacted, sizeof redacted - 1);
        return;
    }
    verb = 5;
    for (mech = verb; mech < n && mech - verb < 20 && p[mech] != ' '; mech++)
        ;
    k = snprintf(line, sizeof line, "AUTH %.*s%s", (int)(mech - verb), p + verb,
                 mech < n ? " <redacted>" : "");
    if (k > 0 && (size_t)k < sizeof line)
        trace_line(c, SMTP_TRACE_SENT, line, (size_t)k);
}

/* Traces the CRLF-separated lines of the n bytes at p, sent. */
void smtp__trace_sent(const struct smtp_conn *c, const char *p, size_t n)
{
    if (c->opts.trace == NULL || c->state == SMTP_CONN_DATA)
        return;
    while (n > 0) {
        const char *eol = memchr(p, '\n', n);
        size_t len = eol != NULL ? (size_t)(eol - p) : n;
        size_t step = eol != NULL ? len + 1 : n;
        if (len > 0 && p[len - 1] == '\r')
            len--;
        trace_sent_line(c, p, len);
        p += step;
        n -= step;
    }
}

/* Traces one reply line received (len bytes, without CRLF). */
void smtp__trace_received(const struct smtp_conn *c, const char *line,
                          size_t len)
{
    if (c->opts.trace != NULL)
        trace_line(c, SMTP_TRACE_RECEIVED, line, len);
}
