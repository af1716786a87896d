/*
 * test_reply.c - the reply grammar: line parsing, enhanced codes, caps.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "smtpcore/src/internal.h"

static void test_reply_line_grammar_table(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        int ok, code, more;
        const char *text;
    } cases[] = {
        { "250 Ok", 1, 250, 0, "Ok" },
        { "250-PIPELINING", 1, 250, 1, "PIPELINING" },
        { "250", 1, 250, 0, "" },
        { "354 go ahead", 1, 354, 0, "go ahead" },
        { "421 4.3.2 closing", 1, 421, 0, "4.3.2 closing" },
        { "559 x", 1, 559, 0, "x" },
        { "599 second digit above 5", 0, 0, 0, NULL },
        { "199 no", 0, 0, 0, NULL },
        { "600 no", 0, 0, 0, NULL },
        { "260 no", 0, 0, 0, NULL },
        { "25 short", 0, 0, 0, NULL },
        { "250x", 0, 0, 0, NULL },
        { "abc def", 0, 0, 0, NULL },
        { "", 0, 0, 0, NULL },
        { "2500 ok", 0, 0, 0, NULL },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct smtp__line ln;
        int r = smtp__reply_line_parse(cases[i].line, strlen(cases[i].line),
                                       &ln);
        assert_int_equal(r == 0, cases[i].ok);
        if (!cases[i].ok)
            continue;
        assert_int_equal(ln.code, cases[i].code);
        assert_int_equal(ln.more, cases[i].more);
        assert_int_equal(ln.textlen, strlen(cases[i].text));
        assert_memory_equal(ln.text, cases[i].text, ln.textlen);
    }
}

static void test_enhanced_code_table(void **state)
{
    (void)state;
    static const struct {
        int code;
        const char *text, *want;
    } cases[] = {
        { 250, "2.0.0 Ok", "2.0.0" },
        { 550, "5.1.1 no such user", "5.1.1" },
        { 452, "4.5.3 too many", "4.5.3" },
        { 550, "4.1.1 class mismatch", "" },
        { 250, "2.100.200 big", "2.100.200" },
        { 250, "2.1000.0 too long", "" },
        { 250, "Ok", "" },
        { 250, "2.0.0", "2.0.0" },
        { 250, "2.0.0x", "" },
        { 250, "2..0 x", "" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[16];
        smtp__enhanced_parse(cases[i].code, cases[i].text,
                             strlen(cases[i].text), out);
        assert_string_equal(out, cases[i].want);
    }
}

static int add(struct smtp_reply *r, const char *line, size_t *bytes)
{
    struct smtp__line ln;
    char why[100];
    if (smtp__reply_line_parse(line, strlen(line), &ln) < 0)
        return -2;
    return smtp__reply_add(r, &ln, bytes, why, sizeof why);
}

static void test_multiline_reply_keeps_lines_in_order(void **state)
{
    (void)state;
    struct smtp_reply r = { 0 };
    size_t bytes = 0;
    assert_int_equal(add(&r, "250-mx.example.org", &bytes), 0);
    assert_int_equal(add(&r, "250-PIPELINING", &bytes), 0);
    assert_int_equal(add(&r, "250 2.0.0 SIZE 100", &bytes), 0);
    assert_int_equal(r.code, 250);
    assert_int_equal(r.nlines, 3);
    assert_string_equal(r.lines[0], "mx.example.org");
    assert_string_equal(r.lines[2], "2.0.0 SIZE 100");
    assert_string_equal(r.enhanced, "2.0.0");
    smtp_reply_clear(&r);
}

/* "220-..." then "521 ... blocked": the change is reported, the lines are
   kept and the last code is the reply's (the reader decides: a refusal
   stands, a success is a protocol error). */
static void test_code_change_mid_reply_keeps_lines_and_last_code(void **state)
{
    (void)state;
    struct smtp_reply r = { 0 };
    size_t bytes = 0;
    assert_int_equal(add(&r, "250-a", &bytes), 0);
    assert_int_equal(add(&r, "550 5.7.1 b", &bytes), 1);
    assert_int_equal(r.code, 550);
    assert_int_equal(r.nlines, 2);
    assert_string_equal(r.lines[0], "a");
    assert_string_equal(r.lines[1], "5.7.1 b");
    assert_string_equal(r.enhanced, "5.7.1");
    smtp_reply_clear(&r);
}

static void test_reply_line_count_is_capped(void **state)
{
    (void)state;
    struct smtp_reply r = { 0 };
    size_t bytes = 0;
    int i;
    for (i = 0; i < SMTP_MAX_REPLY_LINES; i++)
        assert_int_equal(add(&r, "250-x", &bytes), 0);
    assert_int_equal(add(&r, "250-x", &bytes), -1);
    assert_int_equal(r.nlines, SMTP_MAX_REPLY_LINES);
    smtp_reply_clear(&r);
}

static void test_reply_bytes_are_capped(void **state)
{
    (void)state;
    static char line[4000];
    memset(line, 'x', sizeof line - 1);
    memcpy(line, "250-", 4);
    struct smtp_reply r = { 0 };
    size_t bytes = 0;
    int r2 = 0, n = 0;
    while ((r2 = add(&r, line, &bytes)) == 0)
        n++;
    assert_int_equal(r2, -1);
    assert_true(n * 4000 <= SMTP_MAX_REPLY_BYTES + 4000);
    smtp_reply_clear(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reply_line_grammar_table),
        cmocka_unit_test(test_enhanced_code_table),
        cmocka_unit_test(test_multiline_reply_keeps_lines_in_order),
        cmocka_unit_test(test_code_change_mid_reply_keeps_lines_and_last_code),
        cmocka_unit_test(test_reply_line_count_is_capped),
        cmocka_unit_test(test_reply_bytes_are_capped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
