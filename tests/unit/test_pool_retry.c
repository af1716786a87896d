/*
 * tests/unit/test_pool_retry.c - the pool's retry table (server/retry.h):
 * what each SMTP outcome means for the job (done, retry, replace the stale
 * connection) and for the connection (keep, drop), and the backoff.
 * Table-driven; no server needed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "server/retry.h"

struct retry_case {
    const char *name;
    enum pool_phase phase;
    enum smtp_kind kind;
    int code;
    enum smtp_delivery status;
    const char *command;
    size_t naccepted;
    int reused;
    int idempotent;
    enum pool_next want_next;
    enum pool_conn_fate want_fate;
};

#define RUN POOL_PHASE_RUN
#define OPEN POOL_PHASE_OPEN
#define DONE POOL_NEXT_DONE
#define RETRY POOL_NEXT_RETRY
#define REPLACE POOL_NEXT_REPLACE
#define KEEP POOL_CONN_KEEP
#define DROP POOL_CONN_DROP

static const struct retry_case cases[] = {
    /* delivered, or refused for good: never again */
    { "sent", RUN, SMTP_OK, 250, SMTP_DELIVERY_SENT, "", 1, 1, 0, DONE, KEEP },
    { "partial_700", RUN, SMTP_ERR_REJECTED, 700, SMTP_DELIVERY_PARTIAL, "RCPT",
      1, 0, 0, DONE, KEEP },
    { "all_rejected_700", RUN, SMTP_ERR_REJECTED, 700, SMTP_DELIVERY_REJECTED,
      "RCPT", 0, 0, 0, DONE, KEEP },
    { "unknown_after_dot_timeout", RUN, SMTP_ERR_TIMEOUT, 0,
      SMTP_DELIVERY_UNKNOWN, "DATA", 1, 0, 0, DONE, DROP },
    { "unknown_after_dot_eof_on_reused", RUN, SMTP_ERR_CONN, 0,
      SMTP_DELIVERY_UNKNOWN, "DATA", 1, 1, 0, DONE, DROP },
    { "sender_550", RUN, SMTP_ERR_REPLY, 550, SMTP_DELIVERY_FAILED, "MAIL", 0,
      1, 0, DONE, KEEP },
    { "data_refused_554_after_dot", RUN, SMTP_ERR_REPLY, 554,
      SMTP_DELIVERY_FAILED, "DATA", 1, 0, 0, DONE, KEEP },
    /* a reused connection's RSET refused (Exim's 554 after ten
       non-mail commands): the message was not sent; another connection */
    { "rset_554_on_reused", RUN, SMTP_ERR_REPLY, 554, SMTP_DELIVERY_FAILED,
      "RSET", 0, 1, 0, REPLACE, DROP },
    { "rset_450_on_reused", RUN, SMTP_ERR_REPLY, 450, SMTP_DELIVERY_FAILED,
      "RSET", 0, 1, 0, REPLACE, DROP },
    { "local_bad_input", RUN, SMTP_ERR_LOCAL, 0, SMTP_DELIVERY_FAILED, "RCPT",
      0, 1, 0, DONE, KEEP },
    { "auth", RUN, SMTP_ERR_AUTH, 535, SMTP_DELIVERY_FAILED, "AUTH", 0, 0, 0,
      DONE, DROP },
    { "sent_even_if_kind_odd", RUN, SMTP_ERR_CONN, 0, SMTP_DELIVERY_SENT, "", 1,
      1, 0, DONE, DROP },
    /* temporary: retry with backoff, counted */
    { "mail_451", RUN, SMTP_ERR_REPLY, 451, SMTP_DELIVERY_FAILED, "MAIL", 0, 1,
      0, RETRY, KEEP },
    { "dot_451_explicit_refusal", RUN, SMTP_ERR_REPLY, 451,
      SMTP_DELIVERY_FAILED, "DATA", 1, 1, 0, RETRY, KEEP },
    { "mail_421_fresh", RUN, SMTP_ERR_REPLY, 421, SMTP_DELIVERY_FAILED, "MAIL",
      0, 0, 0, RETRY, DROP },
    { "rcpt_421_reused_not_first", RUN, SMTP_ERR_REPLY, 421,
      SMTP_DELIVERY_FAILED, "RCPT", 0, 1, 0, RETRY, DROP },
    { "conn_lost_at_data_before_dot", RUN, SMTP_ERR_CONN, 0,
      SMTP_DELIVERY_FAILED, "DATA", 1, 0, 0, RETRY, DROP },
    { "conn_lost_at_rcpt_reused", RUN, SMTP_ERR_CONN, 0, SMTP_DELIVERY_FAILED,
      "RCPT", 0, 1, 0, RETRY, DROP },
    { "timeout_mail_fresh", RUN, SMTP_ERR_TIMEOUT, 0, SMTP_DELIVERY_FAILED,
      "MAIL", 0, 0, 0, RETRY, DROP },
    { "tls_error_mid_session", RUN, SMTP_ERR_TLS, 0, SMTP_DELIVERY_FAILED,
      "RCPT", 0, 0, 0, RETRY, DROP },
    /* a stale pooled connection: replaced, not counted */
    { "reused_eof_at_rset", RUN, SMTP_ERR_CONN, 0, SMTP_DELIVERY_FAILED, "RSET",
      0, 1, 0, REPLACE, DROP },
    { "reused_eof_at_mail", RUN, SMTP_ERR_CONN, 0, SMTP_DELIVERY_FAILED, "MAIL",
      0, 1, 0, REPLACE, DROP },
    { "reused_421_at_rset", RUN, SMTP_ERR_REPLY, 421, SMTP_DELIVERY_FAILED,
      "RSET", 0, 1, 0, REPLACE, DROP },
    { "reused_garbage_at_rset", RUN, SMTP_ERR_PROTO, 0, SMTP_DELIVERY_FAILED,
      "RSET", 0, 1, 0, REPLACE, DROP },
    { "reused_but_something_accepted", RUN, SMTP_ERR_CONN, 0,
      SMTP_DELIVERY_FAILED, "MAIL", 1, 1, 0, RETRY, DROP },
    /* queries are idempotent */
    { "vrfy_252", RUN, SMTP_OK, 252, SMTP_DELIVERY_NONE, "", 0, 1, 1, DONE,
      KEEP },
    { "vrfy_550", RUN, SMTP_ERR_REPLY, 550, SMTP_DELIVERY_NONE, "VRFY", 0, 1, 1,
      DONE, KEEP },
    { "vrfy_eof_reused", RUN, SMTP_ERR_CONN, 0, SMTP_DELIVERY_NONE, "VRFY", 0,
      1, 1, REPLACE, DROP },
    { "expn_eof_fresh", RUN, SMTP_ERR_CONN, 0, SMTP_DELIVERY_NONE, "EXPN", 0, 0,
      1, RETRY, DROP },
    /* opening failed */
    { "open_refused", OPEN, SMTP_ERR_CONN, 0, SMTP_DELIVERY_NONE, "connect", 0,
      0, 0, RETRY, DROP },
    { "open_timeout", OPEN, SMTP_ERR_TIMEOUT, 0, SMTP_DELIVERY_NONE, "connect",
      0, 0, 0, RETRY, DROP },
    { "open_greeting_421", OPEN, SMTP_ERR_REPLY, 421, SMTP_DELIVERY_NONE,
      "connect", 0, 0, 0, RETRY, DROP },
    { "open_greeting_554", OPEN, SMTP_ERR_REPLY, 554, SMTP_DELIVERY_NONE,
      "connect", 0, 0, 0, DONE, DROP },
    { "open_tls", OPEN, SMTP_ERR_TLS, 0, SMTP_DELIVERY_NONE, "STARTTLS", 0, 0,
      0, RETRY, DROP },
    { "open_auth", OPEN, SMTP_ERR_AUTH, 535, SMTP_DELIVERY_NONE, "AUTH", 0, 0,
      0, DONE, DROP },
    { "open_local", OPEN, SMTP_ERR_LOCAL, 0, SMTP_DELIVERY_NONE, "connect", 0,
      0, 0, DONE, DROP },
};

static const char *next_name(enum pool_next n)
{
    return n == DONE ? "DONE" : n == RETRY ? "RETRY" : "REPLACE";
}

static void test_retry_table(void **state)
{
    int bad = 0;

    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct retry_case *c = &cases[i];
        struct smtp_result res;
        struct pool_verdict v;

        memset(&res, 0, sizeof res);
        res.kind = c->kind;
        res.code = c->code;
        res.status = c->status;
        res.naccepted = c->naccepted;
        snprintf(res.command, sizeof res.command, "%s", c->command);
        v = pool_retry_decide(&res, c->phase, c->reused, c->idempotent);
        if (v.next != c->want_next || v.fate != c->want_fate) {
            print_error("%s: got %s/%d, want %s/%d\n", c->name,
                        next_name(v.next), v.fate, next_name(c->want_next),
                        c->want_fate);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}

static void test_unknown_status_is_never_retried(void **state)
{
    static const enum smtp_kind kinds[] = {
        SMTP_OK,        SMTP_ERR_REPLY,   SMTP_ERR_REJECTED,
        SMTP_ERR_CONN,  SMTP_ERR_TIMEOUT, SMTP_ERR_PROTO,
        SMTP_ERR_LOCAL, SMTP_ERR_TLS,     SMTP_ERR_AUTH,
    };
    static const int codes[] = { 0, 250, 421, 451, 554, 700 };

    (void)state;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        for (size_t c = 0; c < sizeof codes / sizeof codes[0]; c++) {
            for (int reused = 0; reused < 2; reused++) {
                struct smtp_result res;
                memset(&res, 0, sizeof res);
                res.kind = kinds[k];
                res.code = codes[c];
                res.status = SMTP_DELIVERY_UNKNOWN;
                snprintf(res.command, sizeof res.command, "RSET");
                struct pool_verdict v = pool_retry_decide(&res, POOL_PHASE_RUN,
                                                          reused, 0);
                assert_int_equal(v.next, POOL_NEXT_DONE);
                assert_int_equal(v.fate, POOL_CONN_DROP);
            }
        }
    }
}

static void test_backoff_doubles_and_caps(void **state)
{
    (void)state;
    assert_int_equal(pool_backoff_ms(200, 1, 0), 200);
    assert_int_equal(pool_backoff_ms(200, 2, 0), 400);
    assert_int_equal(pool_backoff_ms(200, 3, 0), 800);
    assert_int_equal(pool_backoff_ms(200, 7, 0), 10000);
    assert_int_equal(pool_backoff_ms(200, 1000, 0), 10000);
    assert_int_equal(pool_backoff_ms(20000, 1, 0), 10000);
    assert_int_equal(pool_backoff_ms(200, 3, 1), 250); /* draining */
    assert_int_equal(pool_backoff_ms(100, 1, 1), 100);
    assert_int_equal(pool_backoff_ms(0, 3, 0), 0);
    assert_int_equal(pool_backoff_ms(-5, 3, 0), 0);
}

static void test_transport_kinds(void **state)
{
    (void)state;
    assert_true(pool_kind_is_transport(SMTP_ERR_CONN));
    assert_true(pool_kind_is_transport(SMTP_ERR_TIMEOUT));
    assert_true(pool_kind_is_transport(SMTP_ERR_PROTO));
    assert_true(pool_kind_is_transport(SMTP_ERR_TLS));
    assert_false(pool_kind_is_transport(SMTP_OK));
    assert_false(pool_kind_is_transport(SMTP_ERR_REPLY));
    assert_false(pool_kind_is_transport(SMTP_ERR_REJECTED));
    assert_false(pool_kind_is_transport(SMTP_ERR_LOCAL));
    assert_false(pool_kind_is_transport(SMTP_ERR_AUTH));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_table),
        cmocka_unit_test(test_unknown_status_is_never_retried),
        cmocka_unit_test(test_backoff_doubles_and_caps),
        cmocka_unit_test(test_transport_kinds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
