/*
 * tests/unit/test_log.c - util/log.c writes one valid JSON object per line.
 *
 * Standard error is redirected into a pipe drained by a reader thread; each
 * captured line is parsed with Jansson.  Covers escaping (quotes, backslash,
 * control characters, invalid UTF-8), the level filter, truncation of long
 * values (still valid JSON, within LOG_LINE_MAX), numbers, and lines written
 * concurrently from several threads never interleaving.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/log.h"

/* ---- capturing stderr ---- */

struct capture {
    int saved_fd;
    int rfd;
    pthread_t reader;
    char *buf;
    size_t len, cap;
};

static void *capture_reader(void *arg)
{
    struct capture *c = arg;
    char chunk[8192];
    ssize_t n;

    while ((n = read(c->rfd, chunk, sizeof chunk)) > 0) {
        if (c->len + (size_t)n + 1 > c->cap) {
            c->cap = (c->len + (size_t)n + 1) * 2;
            c->buf = realloc(c->buf, c->cap);
            if (c->buf == NULL)
                abort();
        }
        memcpy(c->buf + c->len, chunk, (size_t)n);
        c->len += (size_t)n;
        c->buf[c->len] = '\0';
    }
    return NULL;
}

static void capture_start(struct capture *c)
{
    int fds[2];

    memset(c, 0, sizeof *c);
    assert_int_equal(pipe(fds), 0);
    c->saved_fd = dup(STDERR_FILENO);
    assert_true(c->saved_fd >= 0);
    assert_true(dup2(fds[1], STDERR_FILENO) >= 0);
    close(fds[1]);
    c->rfd = fds[0];
    c->buf = calloc(1, 1);
    c->cap = 1;
    assert_int_equal(pthread_create(&c->reader, NULL, capture_reader, c), 0);
}

/* Restores stderr and returns everything written (caller frees). */
static char *capture_stop(struct capture *c)
{
    assert_true(dup2(c->saved_fd, STDERR_FILENO) >= 0);
    close(c->saved_fd);
    pthread_join(c->reader, NULL);
    close(c->rfd);
    return c->buf;
}

/* Counts the lines of s (each must end with '\n'). */
static size_t count_lines(const char *s)
{
    size_t n = 0;

    for (; *s != '\0'; s++)
        n += *s == '\n';
    return n;
}

/* Parses the single line of out; fails the test when it is not JSON. */
static json_t *parse_one(const char *out)
{
    json_error_t err;
    json_t *j;

    assert_int_equal(count_lines(out), 1);
    assert_true(strlen(out) <= LOG_LINE_MAX);
    assert_int_equal(out[strlen(out) - 1], '\n');
    j = json_loads(out, 0, &err);
    if (j == NULL)
        fail_msg("not JSON (%s at %d): %s", err.text, err.position, out);
    assert_true(json_is_object(j));
    return j;
}

static const char *str_of(json_t *j, const char *key)
{
    json_t *v = json_object_get(j, key);

    assert_non_null(v);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

static int setup(void **state)
{
    (void)state;
    assert_int_equal(log_set_level("debug"), 0);
    return 0;
}

/* ---- tests ---- */

static void test_line_has_time_level_event_and_pairs(void **state)
{
    struct capture c;
    json_t *j;
    const char *t;
    char *out;

    (void)state;
    capture_start(&c);
    log_event(LOG_INFO, "request", "request_id", "r-1", "status", "200",
              (const char *)NULL);
    out = capture_stop(&c);
    j = parse_one(out);
    t = str_of(j, "time");
    /* 2026-11-28T13:00:00.123Z */
    assert_int_equal(strlen(t), 24);
    assert_int_equal(t[10], 'T');
    assert_int_equal(t[19], '.');
    assert_int_equal(t[23], 'Z');
    assert_string_equal(str_of(j, "level"), "info");
    assert_string_equal(str_of(j, "event"), "request");
    assert_string_equal(str_of(j, "request_id"), "r-1");
    assert_string_equal(str_of(j, "status"), "200");
    assert_int_equal(json_object_size(j), 5);
    assert_true(strncmp(out, "{\"time\":", 8) == 0);
    json_decref(j);
    free(out);
}

static void test_null_value_is_skipped(void **state)
{
    struct capture c;
    json_t *j;
    char *out;

    (void)state;
    capture_start(&c);
    log_event(LOG_WARN, "x", "a", (const char *)NULL, "b", "2",
              (const char *)NULL);
    out = capture_stop(&c);
    j = parse_one(out);
    assert_null(json_object_get(j, "a"));
    assert_string_equal(str_of(j, "b"), "2");
    assert_string_equal(str_of(j, "level"), "warn");
    json_decref(j);
    free(out);
}

static void test_escapes_quotes_backslash_and_controls(void **state)
{
    static const char nasty[] = "say \"hi\"\\path\nline2\r\tend\x01\x1f\x7f\b\f";
    struct capture c;
    json_t *j;
    char *out;

    (void)state;
    capture_start(&c);
    log_event(LOG_ERROR, "ev\"il\n", "k\"ey", nasty, (const char *)NULL);
    out = capture_stop(&c);
    j = parse_one(out);
    assert_string_equal(str_of(j, "k\"ey"), nasty);
    assert_string_equal(str_of(j, "event"), "ev\"il\n");
    /* control characters never appear raw on the line */
    for (const char *p = out; *p != '\n'; p++)
        assert_true((unsigned char)*p >= 0x20 && *p != 0x7f);
    assert_non_null(strstr(out, "\\u0001"));
    assert_non_null(strstr(out, "\\u001f"));
    json_decref(j);
    free(out);
}

static void test_utf8_kept_and_invalid_bytes_replaced(void **state)
{
    struct capture c;
    json_t *j;
    char *out;

    (void)state;
    capture_start(&c);
    log_event(LOG_INFO, "u", "ok", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
              "bad",
              "a\xff"
              "b\xc3(c\xed\xa0\x80"
              "d\xc0\xaf",
              (const char *)NULL);
    out = capture_stop(&c);
    j = parse_one(out);
    assert_string_equal(str_of(j, "ok"),
                        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    /* U+FFFD is EF BF BD */
    assert_string_equal(str_of(j, "bad"), "a\xef\xbf\xbd"
                                          "b\xef\xbf\xbd(c"
                                          "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
                                          "d\xef\xbf\xbd\xef\xbf\xbd");
    json_decref(j);
    free(out);
}

static void test_level_filter(void **state)
{
    struct capture c;
    char *out;

    (void)state;
    assert_int_equal(log_set_level("warn"), 0);
    assert_false(log_enabled(LOG_INFO));
    assert_true(log_enabled(LOG_WARN));
    assert_true(log_enabled(LOG_ERROR));
    assert_int_equal(log_set_level("verbose"), -1); /* unchanged */
    assert_int_equal(log_set_level(NULL), -1);
    assert_false(log_enabled(LOG_INFO));
    capture_start(&c);
    log_event(LOG_DEBUG, "d", (const char *)NULL);
    log_event(LOG_INFO, "i", (const char *)NULL);
    log_event(LOG_WARN, "w", (const char *)NULL);
    log_event_num(LOG_INFO, "i2", NULL, 0);
    log_event(LOG_ERROR, "e", (const char *)NULL);
    out = capture_stop(&c);
    assert_int_equal(count_lines(out), 2);
    assert_null(strstr(out, "\"event\":\"i\""));
    assert_non_null(strstr(out, "\"event\":\"w\""));
    assert_non_null(strstr(out, "\"event\":\"e\""));
    free(out);
    assert_int_equal(log_set_level("error"), 0);
    assert_false(log_enabled(LOG_WARN));
    assert_int_equal(log_set_level("debug"), 0);
    assert_true(log_enabled(LOG_DEBUG));
}

/* A value of n copies of unit, as a malloc'd string. */
static char *repeat(const char *unit, size_t n)
{
    size_t ul = strlen(unit);
    char *s = malloc(ul * n + 1);

    assert_non_null(s);
    for (size_t i = 0; i < n; i++)
        memcpy(s + i * ul, unit, ul);
    s[ul * n] = '\0';
    return s;
}

static void check_truncated(const char *unit, size_t n)
{
    struct capture c;
    json_t *j;
    char *big = repeat(unit, n);
    const char *v;
    char *out;

    capture_start(&c);
    log_event(LOG_INFO, "big", "first", "1", "value", big, "after", "x",
              (const char *)NULL);
    out = capture_stop(&c);
    j = parse_one(out); /* valid JSON, <= LOG_LINE_MAX */
    assert_true(strlen(out) > LOG_LINE_MAX - 64);
    assert_string_equal(str_of(j, "first"), "1");
    v = str_of(j, "value");
    assert_true(strlen(v) > 0);
    assert_true(strlen(v) < strlen(big));
    assert_memory_equal(v, big, strlen(v)); /* a prefix, cut cleanly */
    assert_int_equal(strlen(v) % strlen(unit), 0);
    assert_null(json_object_get(j, "after"));
    assert_true(json_is_true(json_object_get(j, "truncated")));
    json_decref(j);
    free(out);
    free(big);
}

static void test_long_value_truncated_keeps_json_valid(void **state)
{
    (void)state;
    check_truncated("a", 10000);
    check_truncated("\xc3\xa9", 5000);         /* 2-byte characters */
    check_truncated("\xf0\x9f\x98\x80", 3000); /* 4-byte characters */
    check_truncated("\x01", 5000);             /* 6 bytes escaped each */
    check_truncated("\"", 5000);               /* 2 bytes escaped each */
}

static void test_many_fields_dropped_when_line_full(void **state)
{
    struct capture c;
    struct log_field f[200];
    char keys[200][16];
    json_t *j;
    char *out;

    (void)state;
    for (int i = 0; i < 200; i++) {
        snprintf(keys[i], sizeof keys[i], "key%03d", i);
        f[i] = i % 2 ? LOG_NUM(keys[i], 123456.5)
                     : LOG_STR(keys[i], "0123456789abcdef");
    }
    capture_start(&c);
    log_event_num(LOG_INFO, "many", f, 200);
    out = capture_stop(&c);
    j = parse_one(out);
    assert_true(json_is_true(json_object_get(j, "truncated")));
    assert_non_null(json_object_get(j, "key000"));
    assert_null(json_object_get(j, "key199"));
    json_decref(j);
    free(out);
}

static void test_numbers_are_json_numbers(void **state)
{
    struct capture c;
    struct log_field f[] = {
        LOG_STR("request_id", "abc"), LOG_NUM("code", 250),
        LOG_NUM("attempts", 1),       LOG_NUM("duration_ms", 12.3456),
        LOG_NUM("neg", -3),           LOG_NUM("nan", NAN),
        LOG_STR("skipped", NULL),
    };
    json_t *j;
    char *out;

    (void)state;
    capture_start(&c);
    log_event_num(LOG_INFO, "smtp", f, sizeof f / sizeof f[0]);
    out = capture_stop(&c);
    j = parse_one(out);
    assert_true(json_is_integer(json_object_get(j, "code")));
    assert_int_equal(json_integer_value(json_object_get(j, "code")), 250);
    assert_int_equal(json_integer_value(json_object_get(j, "attempts")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "neg")), -3);
    assert_true(json_is_real(json_object_get(j, "duration_ms")));
    assert_true(fabs(json_real_value(json_object_get(j, "duration_ms")) -
                     12.346) < 1e-9);
    assert_true(json_is_null(json_object_get(j, "nan")));
    assert_null(json_object_get(j, "skipped"));
    assert_string_equal(str_of(j, "request_id"), "abc");
    json_decref(j);
    free(out);
}

static void test_booleans_are_json_booleans(void **state)
{
    struct capture c;
    struct log_field f[] = {
        LOG_BOOL("timed_out", 0),
        LOG_BOOL("unreachable", 1),
        LOG_BOOL("seven", 7),
        LOG_STR("after", "x"),
    };
    json_t *j;
    char *out;

    (void)state;
    capture_start(&c);
    log_event_num(LOG_INFO, "pool_drained", f, sizeof f / sizeof f[0]);
    out = capture_stop(&c);
    assert_non_null(strstr(out, "\"timed_out\":false,\"unreachable\":true,"
                                "\"seven\":true,\"after\":\"x\""));
    j = parse_one(out);
    assert_true(json_is_false(json_object_get(j, "timed_out")));
    assert_true(json_is_true(json_object_get(j, "unreachable")));
    json_decref(j);
    free(out);
}

#define NTHREADS 8
#define NLINES 300

static void *writer(void *arg)
{
    char id[16], pad[301];

    snprintf(id, sizeof id, "t%d", (int)(intptr_t)arg);
    memset(pad, 'x' + (int)(intptr_t)arg % 3, sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    for (int i = 0; i < NLINES; i++) {
        char n[16];
        snprintf(n, sizeof n, "%d", i);
        log_event(LOG_INFO, "burst", "thread", id, "i", n, "pad", pad,
                  (const char *)NULL);
    }
    return NULL;
}

static void test_concurrent_lines_never_interleave(void **state)
{
    struct capture c;
    pthread_t t[NTHREADS];
    char *out, *line, *nl;
    size_t n = 0;

    (void)state;
    capture_start(&c);
    for (intptr_t i = 0; i < NTHREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, writer, (void *)i), 0);
    for (int i = 0; i < NTHREADS; i++)
        pthread_join(t[i], NULL);
    out = capture_stop(&c);
    assert_int_equal(count_lines(out), NTHREADS * NLINES);
    for (line = out; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        json_error_t err;
        *nl = '\0';
        json_t *j = json_loads(line, 0, &err);
        if (j == NULL)
            fail_msg("interleaved or invalid line: %.80s", line);
        assert_int_equal(strlen(str_of(j, "pad")), 300);
        json_decref(j);
        n++;
    }
    assert_int_equal(n, NTHREADS * NLINES);
    free(out);
}

static void test_errno_preserved(void **state)
{
    struct capture c;

    (void)state;
    capture_start(&c);
    errno = 42;
    log_event(LOG_INFO, "e", (const char *)NULL);
    assert_int_equal(errno, 42);
    free(capture_stop(&c));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_line_has_time_level_event_and_pairs, setup),
        cmocka_unit_test_setup(test_null_value_is_skipped, setup),
        cmocka_unit_test_setup(test_escapes_quotes_backslash_and_controls,
                               setup),
        cmocka_unit_test_setup(test_utf8_kept_and_invalid_bytes_replaced,
                               setup),
        cmocka_unit_test_setup(test_level_filter, setup),
        cmocka_unit_test_setup(test_long_value_truncated_keeps_json_valid,
                               setup),
        cmocka_unit_test_setup(test_many_fields_dropped_when_line_full, setup),
        cmocka_unit_test_setup(test_numbers_are_json_numbers, setup),
        cmocka_unit_test_setup(test_booleans_are_json_booleans, setup),
        cmocka_unit_test_setup(test_concurrent_lines_never_interleave, setup),
        cmocka_unit_test_setup(test_errno_preserved, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
