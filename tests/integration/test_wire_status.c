/*
 * test_wire_status.c - status and code never disagree, proven three ways
 * against tests/fakes/fake_smtp.py (the library, `mailpool serve` over
 * HTTP, `mailpool send` / `verify`; tests/support/wire_fx.h): for each
 * fault of a table (nobody listens, no greeting, a drop before and after
 * the final dot, garbage, refusals, local refusals) a success has its code
 * below 400, anything else 400 or more, synthesized when no server reply
 * decided; over HTTP a session that cannot be opened is a 502 naming the
 * cause.
 */
#include <signal.h>

#include "tests/support/wire_fx.h"

/* ---- 18: status and code never disagree ---- */

struct fault {
    const char *name;
    const char *script; /* NULL: nobody listens */
    struct job job;
    int code; /* the code wanted (all ways) */
    const char *enhanced;
    int local_code;
    int text_lines; /* lines of the server's reply kept */
    const char *status;
    int at_open; /* over HTTP: a 502 naming the cause */
};

static const struct fault FAULTS[] = {
    { "sent", "{}", { 0 }, 250, "2.0.0", 0, 1, "sent", 0 },
    { "nobody listens", NULL, { 0 }, 421, "4.4.1", 1, 0, "failed", 0 },
    { "no greeting (timeout)",
      "{'rules': [{'match': '^GREETING$', 'action': "
      "'hang'}]}",
      { 0 },
      421,
      "4.4.2",
      1,
      0,
      "failed",
      1 },
    { "dropped at MAIL",
      "{'rules': [{'match': '^MAIL', 'action': 'drop'}]}",
      { 0 },
      421,
      "4.4.2",
      1,
      0,
      "failed",
      0 },
    { "dropped after the final dot",
      "{'rules': [{'match': '^DOT$', "
      "'action': 'drop'}]}",
      { 0 },
      421,
      "4.4.2",
      1,
      0,
      "unknown",
      0 },
    { "garbage greeting",
      "{'rules': [{'match': '^GREETING$', 'raw': "
      "'HTTP/1.1 400 Bad Request\\r\\n\\r\\n'}]}",
      { 0 },
      451,
      "4.5.0",
      1,
      0,
      "failed",
      1 },
    { "DATA answered 250",
      "{" NOPIPE ", 'rules': [{'match': '^DATA', "
      "'reply': '250 2.0.0 sure'}]}",
      { 0 },
      554,
      "5.5.0",
      1,
      1,
      "failed",
      0 },
    { "TLS required, not offered",
      "{}",
      { .tls_required = 1 },
      454,
      "4.7.4",
      1,
      0,
      "failed",
      1 },
    { "AUTH not offered", "{}", { .auth = 1 }, 554, "5.7.0", 1, 0, "failed", 0 },
    { "body line over 998 octets (local)",
      "{}",
      { .body = "x" },
      554,
      "5.6.0",
      1,
      0,
      "failed",
      0 },
    { "550 to MAIL",
      "{'rules': [{'match': '^MAIL', 'reply': '550 5.7.1 no'}]}",
      { 0 },
      550,
      "5.7.1",
      0,
      1,
      "failed",
      0 },
    { "every recipient refused",
      "{'rules': [{'match': '^RCPT', 'reply': "
      "'550 5.1.1 unknown'}]}",
      { 0 },
      700,
      NULL,
      0,
      -1,
      "rejected",
      0 },
    { "VRFY refused",
      "{'rules': [{'match': '^VRFY', 'reply': '550 5.1.1 who'}]}",
      { .verb = "verify", .arg = "x" },
      550,
      "5.1.1",
      0,
      1,
      "none",
      0 },
};

/* Points f->host at a port nobody listens on any more (f->p2, a second
   fake, holds the CLI's files meanwhile). */
static void nobody_listens(struct fx *f)
{
    if (f->p2 == NULL) /* holds the CLI's files */
        f->p2 = peer_start_fake(NULL);
    assert_non_null(f->p2);
    fake(f, NULL);
    int port = peer_port(f->p);
    peer_stop(f->p);
    f->p = NULL;
    free(f->host);
    f->host = malloc(32);
    snprintf(f->host, 32, "127.0.0.1:%d", port);
}

/* Checks the outcome of fault c one way: what differs from the table is
   appended to bad (of size n); what matches must have its status and code
   agree. */
static void check_fault(const struct fault *c, enum way w,
                        const struct outcome *o, char *bad, size_t n)
{
    size_t room = n - strlen(bad);
    if (w == HTTP && (o->http != (c->at_open ? 502 : 200) ||
                      (c->at_open && o->error[0] == '\0'))) {
        snprintf(bad + strlen(bad), room, "[%s, %s: HTTP %d] ", c->name,
                 WAY_NAME[w], o->http);
        return;
    }
    if (w == HTTP && c->at_open)
        return; /* a problem document, no result */
    if (o->code != c->code || strcmp(o->status, c->status) != 0 ||
        o->local_code != c->local_code ||
        (c->enhanced && strcmp(o->enhanced, c->enhanced) != 0) ||
        (c->text_lines >= 0 && (int)o->ntext != c->text_lines))
        snprintf(bad + strlen(bad), room,
                 "[%s, %s: %s %s %d %s local "
                 "%d, %zu lines: %s] ",
                 c->name, WAY_NAME[w], o->status, o->kind, o->code, o->enhanced,
                 o->local_code, o->ntext, o->error);
    else
        assert_code_agrees(o, c->name);
}

static void test_status_and_code_never_disagree(void **state)
{
    struct fx *f = *state;
    char longline[1000];
    memset(longline, 'x', 999);
    longline[999] = '\0';
    f->opts.greeting_timeout_ms = f->opts.command_timeout_ms = 1500;
    char bad[4096] = "";
    for (size_t i = 0; i < sizeof FAULTS / sizeof FAULTS[0]; i++) {
        const struct fault *c = &FAULTS[i];
        struct job j = c->job;
        if (j.body != NULL)
            j.body = longline;
        for (int w = LIB; w < NWAYS; w++) {
            /* the service refuses a bad body itself (422): library and CLI */
            if (j.body != NULL && w == HTTP)
                continue;
            gc_flush(f);
            if (c->script == NULL) {
                nobody_listens(f);
                if (w == HTTP) /* an unreachable relay is a 502 */
                    continue;
            } else {
                fake(f, c->script);
            }
            struct outcome o;
            if (w == HTTP && strcmp(c->name, "no greeting (timeout)") == 0)
                continue; /* covered by the library and CLI */
            run_way(f, (enum way)w, &j, &o);
            check_fault(c, (enum way)w, &o, bad, sizeof bad);
        }
    }
    if (bad[0])
        fail_msg("%s", bad);
}

/* ---- fixture ---- */

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
#define T(t) cmocka_unit_test_setup_teardown(t, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_status_and_code_never_disagree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
