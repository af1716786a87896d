/*
 * tests/support/cfg_fx.h - what the config tests (tests/unit/test_config.c
 * and test_config_sources.c) share: a temporary directory and files in it
 * per test, loading with literal argument and environment lists, one
 * table row's load and expectation, the documented defaults.  Header-only
 * (static inline): each test file takes what it uses.
 */
#ifndef TESTS_SUPPORT_CFG_FX_H
#define TESTS_SUPPORT_CFG_FX_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"

#define MAX_ARGS 16
#define MAX_FILES 8

struct fixture {
    char dir[64];
    char paths[MAX_FILES][160];
    int npaths;
};

/* ---- fixture: a temporary directory and files in it ---- */

/* Makes the test's temporary directory. */
static inline int fx_setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    const char *tmp = getenv("TMPDIR");

    if (f == NULL)
        return -1;
    snprintf(f->dir, sizeof f->dir, "%s/test_config.XXXXXX",
             tmp && tmp[0] && strlen(tmp) < 32 ? tmp : "/tmp");
    if (mkdtemp(f->dir) == NULL) {
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

/* Removes the test's files, then the directory (fails if one is left). */
static inline int fx_teardown(void **state)
{
    struct fixture *f = *state;
    int i, rc = 0;

    for (i = 0; i < f->npaths; i++)
        unlink(f->paths[i]); /* some were never created */
    if (rmdir(f->dir) != 0)
        rc = -1; /* a test left a file behind */
    free(f);
    return rc;
}

/* The path of name in the fixture directory, remembered for teardown. */
static inline const char *fx_path(struct fixture *f, const char *name)
{
    char dir[sizeof f->dir], *p;

    assert_true(f->npaths < MAX_FILES);
    memcpy(dir, f->dir, sizeof dir); /* no overlap, for -Wrestrict */
    p = f->paths[f->npaths++];
    snprintf(p, sizeof f->paths[0], "%s/%s", dir, name);
    return p;
}

/* Writes len bytes of data to name in the fixture directory. */
static inline const char *fx_write_n(struct fixture *f, const char *name,
                                     const char *data, size_t len)
{
    const char *path = fx_path(f, name);
    FILE *fp = fopen(path, "w");

    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(chmod(path, 0600), 0); /* secret files must be */
    return path;
}

/* Writes a text file in the fixture directory. */
static inline const char *fx_write(struct fixture *f, const char *name,
                                   const char *text)
{
    return fx_write_n(f, name, text, strlen(text));
}

/* ---- loading with literal argument and environment lists ---- */

/* Copies a NULL-terminated list into dst (room for MAX_ARGS + 1). */
static inline int dup_list(const char *const *src, char **dst)
{
    int n = 0;

    while (src != NULL && n < MAX_ARGS && src[n] != NULL) {
        dst[n] = strdup(src[n]);
        assert_non_null(dst[n]);
        n++;
    }
    dst[n] = NULL;
    return n;
}

/* Frees what dup_list copied. */
static inline void free_list(char **list)
{
    for (; *list != NULL; list++)
        free(*list);
}

/* cfg_load over copies of args and env (both NULL-terminated; NULL: none). */
static inline int load_full(struct cfg *c, const char *const *args,
                            const char *const *env, int *rest, int *nrest,
                            char *err, size_t errlen)
{
    char *argv[MAX_ARGS + 1], *envp[MAX_ARGS + 1];
    int argc = dup_list(args, argv), rc;

    dup_list(env, envp);
    rc = cfg_load(c, argc, argv, envp, rest, nrest, err, errlen);
    free_list(argv);
    free_list(envp);
    return rc;
}

/* load_full without rest: unknown flags are errors. */
static inline int load(struct cfg *c, const char *const *args,
                       const char *const *env, char *err, size_t errlen)
{
    return load_full(c, args, env, NULL, NULL, err, errlen);
}

/* Fails, showing both, unless needle is in hay. */
static inline void check_contains(const char *hay, const char *needle)
{
    if (strstr(hay, needle) == NULL) {
        print_error("  got:  \"%s\"\n  want: \"%s\" in it\n", hay, needle);
        fail();
    }
}

/* A string field equals want (NULL: unset). */
static inline void check_str(const char *got, const char *want)
{
    if (want == NULL)
        assert_null(got);
    else
        assert_string_equal(got != NULL ? got : "(null)", want);
}

/* ---- one table row: load, then expect a value or an error ---- */

enum kind { K_NONE, K_STR, K_INT, K_LONG, K_DOUBLE };

struct load_case {
    const char *args[MAX_ARGS];
    const char *env[6];
    const char *err; /* NULL: must load; else part of err */
    size_t off;      /* field to check when loaded */
    enum kind kind;
    const char *s;
    long long n;
    double d;
};

#define F(field) offsetof(struct cfg, field)

/* 1 when the loaded field holds what tc expects. */
static inline int case_field_ok(const struct cfg *c, const struct load_case *tc)
{
    const void *field = (const char *)c + tc->off;
    const char *s;

    switch (tc->kind) {
    case K_STR:
        s = *(char *const *)field;
        return tc->s == NULL ? s == NULL : s != NULL && strcmp(s, tc->s) == 0;
    case K_INT: return *(const int *)field == tc->n;
    case K_LONG: return *(const long *)field == tc->n;
    case K_DOUBLE: return *(const double *)field == tc->d;
    case K_NONE:
    default: return 1;
    }
}

/* Runs one row; on a mismatch says which row and what came back. */
static inline void check_case(const struct load_case *tc, size_t i)
{
    struct cfg c = { 0 };
    char err[512] = "";
    const char *env_none[] = { NULL };
    int rc = load(&c, tc->args, tc->env[0] ? tc->env : env_none, err,
                  sizeof err);
    int ok;

    if (tc->err != NULL)
        ok = rc == -1 && strstr(err, tc->err) != NULL;
    else
        ok = rc == 0 && case_field_ok(&c, tc);
    if (!ok) {
        print_error("case %zu (%s %s %s): rc %d, err \"%s\"\n"
                    "  want %s \"%s\"\n",
                    i, tc->args[0] ? tc->args[0] : "",
                    tc->args[0] && tc->args[1] ? tc->args[1] : "",
                    tc->env[0] ? tc->env[0] : "", rc, err,
                    tc->err ? "error" : "value", tc->err ? tc->err : "");
        if (rc == 0)
            cfg_free(&c);
        fail();
    }
    if (rc == 0)
        cfg_free(&c);
}

#define RUN_CASES(table) \
    do { \
        size_t i_; \
        for (i_ = 0; i_ < sizeof(table) / sizeof(table)[0]; i_++) \
            check_case(&(table)[i_], i_); \
    } while (0)

/* Every field holds the default that config/config.h documents. */
static inline void check_defaults(const struct cfg *c)
{
    check_str(c->relay.host, "localhost");
    assert_int_equal(c->relay.port, 25);
    check_str(c->relay.tls, "opportunistic");
    check_str(c->relay.ca_file, NULL);
    check_str(c->relay.cert_file, NULL);
    check_str(c->relay.key_file, NULL);
    assert_int_equal(c->relay.insecure_skip_verify, 0);
    check_str(c->relay.helo_name, NULL);
    check_str(c->relay.auth_user, NULL);
    check_str(c->relay.auth_pass, NULL);
    check_str(c->relay.auth_pass_file, NULL);
    check_str(c->relay.auth_mech, NULL);
    assert_int_equal(c->relay.auth_allow_plaintext, 0);
    assert_int_equal(c->relay.pipelining, 1);
    assert_int_equal(c->relay.connect_timeout, 30);
    assert_int_equal(c->relay.command_timeout, 300);
    assert_int_equal(c->relay.data_timeout, 600);
    check_str(c->http.listen, "127.0.0.1:8025");
    assert_int_equal(c->http.max_body, 10485760);
    assert_int_equal(c->http.max_batch, 1000);
    assert_int_equal(c->http.max_recipients, 100);
    check_str(c->http.api_keys, NULL);
    assert_int_equal(c->http.threads, 2);
    assert_int_equal(c->http.connection_timeout, 60);
    assert_int_equal(c->http.shutdown_delay, 0);
    assert_int_equal(c->http.ready_requires_relay, 1);
    assert_int_equal(c->pool.workers, 8);
    assert_int_equal(c->pool.queue, 1024);
    assert_int_equal(c->pool.connections, 8);
    assert_int_equal(c->pool.messages_per_conn, 1000);
    assert_int_equal(c->pool.idle_timeout, 30);
    assert_int_equal(c->pool.retries, 3);
    assert_int_equal(c->pool.retry_backoff_ms, 200);
    assert_true(c->pool.rate == 0.0);
    assert_int_equal(c->pool.drain_timeout, 30);
    check_str(c->log.level, "info");
}

#endif /* TESTS_SUPPORT_CFG_FX_H */
