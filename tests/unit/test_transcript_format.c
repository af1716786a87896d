/*
 * test_transcript_format.c - the escaped line form of the transcript case
 * files (tests/support/transcript.c): what each escape decodes to, that
 * every byte string survives escape-then-decode, the errors a hand-edited
 * case gets, and the diff a mismatch prints.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/transcript.h"

/* Decodes a whole section (lines ended by '\n'); *len set.  Caller frees. */
static char *decode_all(const char *text, size_t *len)
{
    char *out = NULL, why[256];
    *len = 0;
    for (const char *s = text; *s != '\0';) {
        const char *nl = strchr(s, '\n');
        size_t n = nl != NULL ? (size_t)(nl - s) : strlen(s);
        if (tr_decode_line(s, n, &out, len, why, sizeof why) < 0)
            fail_msg("decode '%.*s': %s", (int)n, s, why);
        s += n + (nl != NULL);
    }
    if (out == NULL)
        out = calloc(1, 1);
    return out;
}

/* Decoding one line gives want (wlen bytes). */
static void expect_decode(const char *line, const char *want, size_t wlen)
{
    size_t len = 0;
    char *got = NULL, why[256];
    if (tr_decode_line(line, strlen(line), &got, &len, why, sizeof why) < 0)
        fail_msg("decode '%s': %s", line, why);
    assert_int_equal(len, wlen);
    assert_memory_equal(got, want, wlen);
    free(got);
}

static void test_each_escape_decodes_to_its_bytes(void **state)
{
    (void)state;
    expect_decode("EHLO client.test", "EHLO client.test\r\n", 18);
    expect_decode("", "\r\n", 2);
    expect_decode("a\\\\b", "a\\b\r\n", 5);
    expect_decode("bare\\nLF\\rCR\\ttab", "bare\nLF\rCR\ttab\r\n", 16);
    expect_decode("x\\s\\s", "x  \r\n", 5);
    expect_decode("\\x00\\xc3\\xA9", "\0\xc3\xa9\r\n", 5);
    expect_decode("no line end\\c", "no line end", 11);
    expect_decode("\\{3*ab}!", "ababab!\r\n", 9);
    expect_decode("\\{2*\\x7d\\s}", "} } \r\n", 6);
    expect_decode("Gr\xc3\xbc\xc3\x9f"
                  "e",
                  "Gr\xc3\xbc\xc3\x9f"
                  "e\r\n",
                  9);
}

static void test_a_998_octet_dot_line_is_written_compactly(void **state)
{
    (void)state;
    char line[1001];
    line[0] = '.';
    memset(line + 1, 'y', 997);
    memcpy(line + 998, "\r\n", 3);
    expect_decode(".\\{997*y}", line, 1000);
    char *esc = tr_escape(line, 1000);
    assert_string_equal(esc, ".\\{997*y}\n");
    free(esc);
    esc = tr_escape("x                    \r\n", 23); /* 20 trailing */
    assert_string_equal(esc, "x\\{20*\\s}\n");
    free(esc);
}

/* escape then decode gives back the bytes, and the escaped text has no
   raw control byte, no byte over 127 and no trailing blank on a line. */
static void round_trip(const char *bytes, size_t len)
{
    char *esc = tr_escape(bytes, len);
    assert_non_null(esc);
    for (const unsigned char *p = (const unsigned char *)esc; *p; p++) {
        assert_true(*p == '\n' || (*p >= 0x20 && *p < 0x7f));
        if (p[1] == '\n')
            assert_true(*p != ' ');
        if (p == (const unsigned char *)esc || p[-1] == '\n')
            assert_true(strncmp((const char *)p, "--- ", 4) != 0);
    }
    size_t n;
    char *back = decode_all(esc, &n);
    if (n != len || memcmp(back, bytes, len) != 0)
        fail_msg("round trip changed the bytes; escaped form:\n%s", esc);
    free(back);
    free(esc);
}

static void test_any_bytes_survive_escape_and_decode(void **state)
{
    (void)state;
    static const char *const cases[] = {
        "QUIT\r\n",
        "",
        "\r\n\r\n",
        "no crlf at the end",
        "trailing  \r\n",
        "   \r\n",
        "bare\nLF\r\n",
        "bare CR\r\r\n",
        "\r",
        "\n",
        "--- conn 2\r\n",
        "---\r\n",
        "back\\slash\\\r\n",
        "}}}}}}}}}}}}}}}}}}}}\r\n",
        "\xff\xfe\x80\x7f\x01\t\r\n",
        ".\r\n..\r\n...\r\n",
        "                                        \r\n",
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        round_trip(cases[i], strlen(cases[i]));
    round_trip("nul\0inside\r\n", 12);
    unsigned char all[512];
    for (size_t i = 0; i < sizeof all; i++)
        all[i] = (unsigned char)(i * 7 + i / 256);
    round_trip((const char *)all, sizeof all);
}

/* Decoding line fails with a reason containing want. */
static void expect_error(const char *line, const char *want)
{
    char *out = NULL, why[256] = "";
    size_t len = 0;
    assert_int_equal(
        tr_decode_line(line, strlen(line), &out, &len, why, sizeof why), -1);
    if (strstr(why, want) == NULL)
        fail_msg("'%s': reason '%s' does not say '%s'", line, why, want);
    free(out);
}

static void test_hand_edit_mistakes_are_named(void **state)
{
    (void)state;
    expect_error("MAIL FROM:<a@b> ", "\\s");
    expect_error("tab\t", "\\t");
    expect_error("cr\r", "raw CR");
    expect_error("\\q", "unknown escape \\q");
    expect_error("\\xg0", "two hex digits");
    expect_error("\\{0*y}", "1 <= N");
    expect_error("\\{3y}", "'*'");
    expect_error("\\{3*y", "closing");
    expect_error("ends in \\", "lone backslash");
    expect_error("\\c in the middle", "unknown escape \\c");
}

static void test_diff_names_the_first_differing_line_escaped(void **state)
{
    (void)state;
    const char *want = "EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n";
    const char *got =
        "EHLO x\r\nMAIL FROM:<a@b> BODY=8BITMIME \r\nRCPT TO:<c@d>\r\n";
    assert_null(tr_diff(want, strlen(want), want, strlen(want)));
    char *d = tr_diff(want, strlen(want), got, strlen(got));
    assert_non_null(d);
    assert_non_null(strstr(d, "first difference at line 2 (byte 8)"));
    assert_non_null(strstr(d, "same      line 1: EHLO x\n"));
    assert_non_null(strstr(d, "expected  line 2: MAIL FROM:<a@b>\n"));
    assert_non_null(
        strstr(d, "got       line 2: MAIL FROM:<a@b> BODY=8BITMIME\\s\n"));
    free(d);
    d = tr_diff(want, strlen(want), "EHLO x\r\n", 8);
    assert_non_null(strstr(d, "got       line 2: (no more bytes)"));
    free(d);
    d = tr_diff("QUIT\r\n", 6, "QUIT", 4);
    assert_non_null(strstr(d, "got       line 1: QUIT\\c"));
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_escape_decodes_to_its_bytes),
        cmocka_unit_test(test_a_998_octet_dot_line_is_written_compactly),
        cmocka_unit_test(test_any_bytes_survive_escape_and_decode),
        cmocka_unit_test(test_hand_edit_mistakes_are_named),
        cmocka_unit_test(test_diff_names_the_first_differing_line_escaped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
