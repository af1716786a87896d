/*
 * test_util.c - util/: the host:port grammar every module shares, UTF-8
 * validation and repair, the monotonic clock.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "util/clock.h"
#include "util/hostport.h"
#include "util/utf8.h"

/* util_hostport_parse with a 128-byte reason buffer, emptied first. */
static int parse(const char *in, unsigned flags, struct util_hostport *hp,
                 char why[128])
{
    why[0] = '\0';
    return util_hostport_parse(in, flags, hp, why, 128);
}

/* Each accepted form gives its host (brackets removed) and port. */
static void test_hostport_accepts_names_ipv4_and_bracketed_ipv6(void **state)
{
    static const struct {
        const char *in;
        unsigned flags;
        const char *host;
        int port, v6;
    } cases[] = {
        { "127.0.0.1:25", 0, "127.0.0.1", 25, 0 },
        { "mx.example.com:587", 0, "mx.example.com", 587, 0 },
        { "localhost:65535", 0, "localhost", 65535, 0 },
        { "[::1]:8025", 0, "::1", 8025, 1 },
        { "[2001:db8::1]:1", 0, "2001:db8::1", 1, 1 },
        { "127.0.0.1:0", UTIL_HP_PORT_ZERO, "127.0.0.1", 0, 0 },
        { "[::]:0", UTIL_HP_PORT_ZERO, "::", 0, 1 },
        { "host:00080", 0, "host", 80, 0 },
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct util_hostport hp;
        char why[128];
        if (parse(cases[i].in, cases[i].flags, &hp, why) != 0)
            fail_msg("%s: %s", cases[i].in, why);
        assert_string_equal(hp.host, cases[i].host);
        assert_int_equal(hp.port, cases[i].port);
        assert_int_equal(hp.v6, cases[i].v6);
    }
}

/* Each refused form is refused with the reason that names its fault. */
static void test_hostport_refusals_say_what_is_wrong(void **state)
{
    static const struct {
        const char *in;
        unsigned flags;
        const char *why;
    } cases[] = {
        { "127.0.0.1", 0, "the port is missing" },
        { "127.0.0.1:", 0, "from 1 to 65535" },
        { "127.0.0.1:0", 0, "from 1 to 65535" },
        { "127.0.0.1:65536", UTIL_HP_PORT_ZERO, "from 0 to 65535" },
        { "127.0.0.1:-1", 0, "from 1 to 65535" },
        { "127.0.0.1:+25", 0, "from 1 to 65535" },
        { "127.0.0.1:8a", 0, "from 1 to 65535" },
        { "127.0.0.1:000025", 0, "from 1 to 65535" },
        { "::1:25", 0, "must be in brackets" },
        { "[::1]", 0, "the port is missing" },
        { "[::1]25", 0, "the port is missing" },
        { "[::1:25", 0, "lacks its ']'" },
        { "[127.0.0.1]:25", 0, "not an IPv6 address" },
        { "[example.com]:25", 0, "not an IPv6 address" },
        { ":25", 0, "the host is missing" },
        { "*:25", 0, "the host is missing" },
        { "a b:25", 0, "a blank" },
        { "a]b:25", 0, "a bracket" },
        { "", 0, "the port is missing" },
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct util_hostport hp;
        char why[128];
        int rc = parse(cases[i].in, cases[i].flags, &hp, why);
        if (rc != -1 || strstr(why, cases[i].why) == NULL)
            fail_msg("%s: rc %d, why \"%s\", wanted \"%s\"", cases[i].in, rc,
                     why, cases[i].why);
    }
}

/* A host of 255 bytes fits; 256 is refused, never cut. */
static void test_hostport_host_length_is_bounded(void **state)
{
    char in[300];
    struct util_hostport hp;
    char why[128] = "";
    (void)state;
    memset(in, 'a', 255);
    memcpy(in + 255, ":25", 4);
    assert_int_equal(util_hostport_parse(in, 0, &hp, why, sizeof why), 0);
    assert_int_equal(strlen(hp.host), 255);
    memset(in, 'a', 256);
    memcpy(in + 256, ":25", 4);
    assert_int_equal(util_hostport_parse(in, 0, &hp, why, sizeof why), -1);
    assert_non_null(strstr(why, "longer than 255"));
}

/* Valid sequences have their length; overlong forms, surrogates, code
   points above U+10FFFF, stray continuations and cut sequences are 0. */
static void test_utf8_len_follows_rfc3629(void **state)
{
    static const struct {
        const char *s;
        size_t n, want;
    } cases[] = {
        { "A", 1, 1 },
        { "\xC3\xA9", 2, 2 },
        { "\xE2\x82\xAC", 3, 3 },
        { "\xF0\x9F\x98\x80", 4, 4 },
        { "\xF4\x8F\xBF\xBF", 4, 4 },
        { "\xC0\xAF", 2, 0 },
        { "\xC1\xBF", 2, 0 },
        { "\xE0\x80\xAF", 3, 0 },
        { "\xED\xA0\x80", 3, 0 },
        { "\xF0\x80\x80\xAF", 4, 0 },
        { "\xF4\x90\x80\x80", 4, 0 },
        { "\xF5\x80\x80\x80", 4, 0 },
        { "\x80", 1, 0 },
        { "\xBF", 1, 0 },
        { "\xE2\x82", 2, 0 },
        { "\xE2\x82\xAC", 2, 0 },
        { "\xC3\x28", 2, 0 },
        { "", 0, 0 },
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (util_utf8_len((const unsigned char *)cases[i].s, cases[i].n) !=
            cases[i].want)
            fail_msg("case %zu: wanted %zu", i, cases[i].want);
}

/* Repair keeps valid text byte for byte and turns each bad byte into
   one U+FFFD, including a NUL-free cut sequence at the end. */
static void test_utf8_repair_replaces_each_bad_byte(void **state)
{
    static const char in[] = "caf\xC3\xA9 \xFF x \xC0\xAF \xE2\x82";
    static const char want[] = "caf\xC3\xA9 \xEF\xBF\xBD x "
                               "\xEF\xBF\xBD\xEF\xBF\xBD "
                               "\xEF\xBF\xBD\xEF\xBF\xBD";
    size_t n = 0;
    char *out = util_utf8_repair(in, sizeof in - 1, &n);
    (void)state;
    assert_non_null(out);
    assert_int_equal(n, sizeof want - 1);
    assert_memory_equal(out, want, n);
    assert_int_equal(out[n], '\0');
    free(out);
}

/* The clock moves forward and never back. */
static void test_mono_clock_is_monotonic(void **state)
{
    double a = util_mono_now(), b;
    struct timespec ts = { 0, 20 * 1000 * 1000 };
    (void)state;
    nanosleep(&ts, NULL);
    b = util_mono_now();
    assert_true(a > 0);
    assert_true(b - a >= 0.019);
    assert_true(b - a < 5.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostport_accepts_names_ipv4_and_bracketed_ipv6),
        cmocka_unit_test(test_hostport_refusals_say_what_is_wrong),
        cmocka_unit_test(test_hostport_host_length_is_bounded),
        cmocka_unit_test(test_utf8_len_follows_rfc3629),
        cmocka_unit_test(test_utf8_repair_replaces_each_bad_byte),
        cmocka_unit_test(test_mono_clock_is_monotonic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
