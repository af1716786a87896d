/*
 * tests/unit/test_config.c - the config module: defaults, precedence
 * (defaults < INI file < environment < flags), value parsing tables, error
 * sentences (key, origin, reason), secrets, cfg_print, flags left to the
 * caller.
 *
 * Every test gets a fresh mkdtemp directory for its files, removed in the
 * teardown, and passes an explicit envp so the process environment never
 * leaks in.  Run under valgrind to check that every path frees what it took.
 */
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

#define MAX_ARGS  16
#define MAX_FILES 8

struct fixture {
    char dir[64];
    char paths[MAX_FILES][160];
    int npaths;
};

/* ---- fixture: a temporary directory and files in it ---- */

/* Makes the test's temporary directory. */
static int fx_setup(void **state)
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
static int fx_teardown(void **state)
{
    struct fixture *f = *state;
    int i, rc = 0;

    for (i = 0; i < f->npaths; i++)
        unlink(f->paths[i]);        /* some were never created */
    if (rmdir(f->dir) != 0)
        rc = -1;                    /* a test left a file behind */
    free(f);
    return rc;
}

/* The path of name in the fixture directory, remembered for teardown. */
static const char *fx_path(struct fixture *f, const char *name)
{
    char dir[sizeof f->dir], *p;

    assert_true(f->npaths < MAX_FILES);
    memcpy(dir, f->dir, sizeof dir);    /* no overlap, for -Wrestrict */
    p = f->paths[f->npaths++];
    snprintf(p, sizeof f->paths[0], "%s/%s", dir, name);
    return p;
}

/* Writes len bytes of data to name in the fixture directory. */
static const char *fx_write_n(struct fixture *f, const char *name,
                              const char *data, size_t len)
{
    const char *path = fx_path(f, name);
    FILE *fp = fopen(path, "w");

    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(chmod(path, 0600), 0);  /* secret files must be */
    return path;
}

/* Writes a text file in the fixture directory. */
static const char *fx_write(struct fixture *f, const char *name,
                            const char *text)
{
    return fx_write_n(f, name, text, strlen(text));
}

/* ---- loading with literal argument and environment lists ---- */

/* Copies a NULL-terminated list into dst (room for MAX_ARGS + 1). */
static int dup_list(const char *const *src, char **dst)
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
static void free_list(char **list)
{
    for (; *list != NULL; list++)
        free(*list);
}

/* cfg_load over copies of args and env (both NULL-terminated; NULL: none). */
static int load_full(struct cfg *c, const char *const *args,
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
static int load(struct cfg *c, const char *const *args,
                const char *const *env, char *err, size_t errlen)
{
    return load_full(c, args, env, NULL, NULL, err, errlen);
}

/* Fails, showing both, unless needle is in hay. */
static void check_contains(const char *hay, const char *needle)
{
    if (strstr(hay, needle) == NULL) {
        print_error("  got:  \"%s\"\n  want: \"%s\" in it\n", hay, needle);
        fail();
    }
}

/* A string field equals want (NULL: unset). */
static void check_str(const char *got, const char *want)
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
    const char *err;              /* NULL: must load; else part of err */
    size_t off;                   /* field to check when loaded */
    enum kind kind;
    const char *s;
    long long n;
    double d;
};

#define F(field) offsetof(struct cfg, field)

/* 1 when the loaded field holds what tc expects. */
static int case_field_ok(const struct cfg *c, const struct load_case *tc)
{
    const void *field = (const char *)c + tc->off;
    const char *s;

    switch (tc->kind) {
    case K_STR:
        s = *(char *const *)field;
        return tc->s == NULL ? s == NULL : s != NULL && strcmp(s, tc->s) == 0;
    case K_INT:    return *(const int *)field == tc->n;
    case K_LONG:   return *(const long *)field == tc->n;
    case K_DOUBLE: return *(const double *)field == tc->d;
    case K_NONE:
    default:       return 1;
    }
}

/* Runs one row; on a mismatch says which row and what came back. */
static void check_case(const struct load_case *tc, size_t i)
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
                    "  want %s \"%s\"\n", i,
                    tc->args[0] ? tc->args[0] : "",
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

#define RUN_CASES(table) do { \
        size_t i_; \
        for (i_ = 0; i_ < sizeof(table) / sizeof(table)[0]; i_++) \
            check_case(&(table)[i_], i_); \
    } while (0)

/* Every field holds the default that config/config.h documents. */
static void check_defaults(const struct cfg *c)
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

/* ---- defaults and precedence ---- */

static void test_defaults_match_header(void **state)
{
    struct cfg c = { 0 };
    char err[256] = "";

    (void)state;
    assert_int_equal(cfg_defaults(&c, err, sizeof err), 0);
    check_defaults(&c);
    cfg_free(&c);
}

static void test_load_without_sources_gives_defaults(void **state)
{
    struct cfg c = { 0 };
    char err[256] = "";
    const char *env[] = { "HOME=/root", "MAILPOOL_CONFIG=", NULL };

    (void)state;
    assert_int_equal(load(&c, NULL, env, err, sizeof err), 0);
    check_defaults(&c);
    cfg_free(&c);
}

static void test_file_overrides_default(void **state)
{
    struct fixture *f = *state;
    struct cfg c = { 0 };
    char err[512] = "";
    const char *path = fx_write(f, "m.ini",
        "; comment\n# another\n\n[relay]\nhost = mx.example\nport=2525\n"
        "tls = required\n\n[pool]\nworkers = 4 ; inline comment\n"
        "rate = 2.5\n[http]\nmax_body = 1m\n[log]\nlevel = warn\n");
    const char *args[] = { "--config", path, NULL };
    const char *env[] = { NULL };

    assert_int_equal(load(&c, args, env, err, sizeof err), 0);
    check_str(c.relay.host, "mx.example");
    assert_int_equal(c.relay.port, 2525);
    check_str(c.relay.tls, "required");
    assert_int_equal(c.pool.workers, 4);
    assert_true(c.pool.rate == 2.5);
    assert_int_equal(c.http.max_body, 1048576);
    check_str(c.log.level, "warn");
    assert_int_equal(c.pool.queue, 1024);          /* untouched: default */
    cfg_free(&c);
}

static void test_env_overrides_file(void **state)
{
    struct fixture *f = *state;
    struct cfg c = { 0 };
    char err[512] = "", cfgvar[256];
    const char *path = fx_write(f, "m.ini",
        "[relay]\nhost = file.example\nport = 2525\n[pool]\nworkers = 4\n");
    const char *env[] = { cfgvar, "MAILPOOL_RELAY_HOST=env.example",
                          "MAILPOOL_POOL_WORKERS=5", NULL };

    snprintf(cfgvar, sizeof cfgvar, "MAILPOOL_CONFIG=%s", path);
    assert_int_equal(load(&c, NULL, env, err, sizeof err), 0);
    check_str(c.relay.host, "env.example");
    assert_int_equal(c.pool.workers, 5);
    assert_int_equal(c.relay.port, 2525);          /* only in the file */
    cfg_free(&c);
}

static void test_flag_overrides_env(void **state)
{
    static const struct load_case cases[] = {
        { .args = { "--pool-workers", "6" },
          .env = { "MAILPOOL_POOL_WORKERS=4" },
          .off = F(pool.workers), .kind = K_INT, .n = 6 },
        { .args = { "--pool-workers=7" },
          .env = { "MAILPOOL_POOL_WORKERS=4" },
          .off = F(pool.workers), .kind = K_INT, .n = 7 },
        { .args = { "--pool-workers=6", "--pool-workers", "9" },
          .env = { "MAILPOOL_POOL_WORKERS=4" },
          .off = F(pool.workers), .kind = K_INT, .n = 9 },   /* last wins */
        { .args = { "--relay-host=flag.example" },
          .env = { "MAILPOOL_RELAY_HOST=env.example" },
          .off = F(relay.host), .kind = K_STR, .s = "flag.example" },
        { .args = { NULL },
          .env = { "MAILPOOL_RELAY_HOST=env.example" },
          .off = F(relay.host), .kind = K_STR, .s = "env.example" },
        { .args = { NULL },    /* duplicates in envp: the first, as getenv */
          .env = { "MAILPOOL_RELAY_PORT=26", "MAILPOOL_RELAY_PORT=27" },
          .off = F(relay.port), .kind = K_INT, .n = 26 },
    };

    (void)state;
    RUN_CASES(cases);
}

static void test_config_file_from_MAILPOOL_CONFIG_or_flag(void **state)
{
    struct fixture *f = *state;
    struct cfg c = { 0 };
    char err[512] = "", cfgvar[256];
    const char *a = fx_write(f, "a.ini", "[relay]\nport = 1001\n");
    const char *b = fx_write(f, "b.ini", "[relay]\nport = 1002\n");
    const char *env[] = { cfgvar, NULL };
    const char *flag_space[] = { "--config", b, NULL };
    char eqflag[256];
    const char *flag_eq[] = { eqflag, NULL };

    snprintf(cfgvar, sizeof cfgvar, "MAILPOOL_CONFIG=%s", a);
    snprintf(eqflag, sizeof eqflag, "--config=%s", b);
    assert_int_equal(load(&c, NULL, env, err, sizeof err), 0);
    assert_int_equal(c.relay.port, 1001);
    cfg_free(&c);
    assert_int_equal(load(&c, flag_space, env, err, sizeof err), 0);
    assert_int_equal(c.relay.port, 1002);
    cfg_free(&c);
    assert_int_equal(load(&c, flag_eq, env, err, sizeof err), 0);
    assert_int_equal(c.relay.port, 1002);
    cfg_free(&c);
}

/* Every source reaches the key by its derived name. */
static void test_key_names_in_flags_env_and_file(void **state)
{
    static const struct {
        const char *section, *key, *flag, *env, *value;
        size_t off;
        enum kind kind;
        const char *s;
        long long n;
        double d;
    } rows[] = {
        { "relay", "host", "--relay-host", "MAILPOOL_RELAY_HOST",
          "mx.example", F(relay.host), K_STR, "mx.example", 0, 0 },
        { "relay", "insecure_skip_verify", "--relay-insecure-skip-verify",
          "MAILPOOL_RELAY_INSECURE_SKIP_VERIFY", "yes",
          F(relay.insecure_skip_verify), K_INT, NULL, 1, 0 },
        { "relay", "data_timeout", "--relay-data-timeout",
          "MAILPOOL_RELAY_DATA_TIMEOUT", "900", F(relay.data_timeout), K_INT,
          NULL, 900, 0 },
        { "http", "listen", "--http-listen", "MAILPOOL_HTTP_LISTEN",
          "[::1]:9000", F(http.listen), K_STR, "[::1]:9000", 0, 0 },
        { "http", "max_body", "--http-max-body", "MAILPOOL_HTTP_MAX_BODY",
          "2m", F(http.max_body), K_LONG, NULL, 2097152, 0 },
        { "http", "connection_timeout", "--http-connection-timeout",
          "MAILPOOL_HTTP_CONNECTION_TIMEOUT", "5", F(http.connection_timeout),
          K_INT, NULL, 5, 0 },
        { "pool", "workers", "--pool-workers", "MAILPOOL_POOL_WORKERS", "16",
          F(pool.workers), K_INT, NULL, 16, 0 },
        { "pool", "messages_per_conn", "--pool-messages-per-conn",
          "MAILPOOL_POOL_MESSAGES_PER_CONN", "50", F(pool.messages_per_conn),
          K_INT, NULL, 50, 0 },
        { "pool", "retry_backoff_ms", "--pool-retry-backoff-ms",
          "MAILPOOL_POOL_RETRY_BACKOFF_MS", "1000", F(pool.retry_backoff_ms),
          K_INT, NULL, 1000, 0 },
        { "pool", "rate", "--pool-rate", "MAILPOOL_POOL_RATE", "12.5",
          F(pool.rate), K_DOUBLE, NULL, 0, 12.5 },
        { "log", "level", "--log-level", "MAILPOOL_LOG_LEVEL", "DEBUG",
          F(log.level), K_STR, "debug", 0, 0 },
    };
    struct fixture *f = *state;
    size_t i;
    int src;

    for (i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        for (src = 0; src < 4; src++) {
            char a0[128], a1[128], e0[160], ini[256], name[32];
            const char *path = NULL;
            struct load_case tc = { .off = rows[i].off, .kind = rows[i].kind,
                                    .s = rows[i].s, .n = rows[i].n,
                                    .d = rows[i].d };

            if (src == 0) {             /* --flag VALUE */
                tc.args[0] = rows[i].flag;
                tc.args[1] = rows[i].value;
            } else if (src == 1) {      /* --flag=VALUE */
                snprintf(a0, sizeof a0, "%s=%s", rows[i].flag, rows[i].value);
                tc.args[0] = a0;
            } else if (src == 2) {      /* environment */
                snprintf(e0, sizeof e0, "%s=%s", rows[i].env, rows[i].value);
                tc.env[0] = e0;
            } else {                    /* INI file */
                snprintf(ini, sizeof ini, "[%s]\n%s = %s\n", rows[i].section,
                         rows[i].key, rows[i].value);
                snprintf(name, sizeof name, "k%zu.ini", i);
                path = fx_write(f, name, ini);
                snprintf(a1, sizeof a1, "--config=%s", path);
                tc.args[0] = a1;
            }
            check_case(&tc, i * 4 + (size_t)src);
            if (src == 3) {
                unlink(path);
                f->npaths--;
            }
        }
    }
}

/* ---- errors name the key and the source ---- */

static void test_bad_port_names_key_and_source(void **state)
{
    struct fixture *f = *state;
    struct cfg c = { 0 };
    char err[512], want[512], cfgvar[256];
    const char *path = fx_write(f, "p.ini", "[relay]\n\nport = abc\n");
    const char *flag_args[] = { "--relay-port", "abc", NULL };
    const char *flag_eq[] = { "--relay-port=abc", NULL };
    const char *env_port[] = { "MAILPOOL_RELAY_PORT=abc", NULL };
    const char *env_file[] = { cfgvar, NULL };
    const char *env_workers[] = { "MAILPOOL_POOL_WORKERS=0", NULL };

    snprintf(cfgvar, sizeof cfgvar, "MAILPOOL_CONFIG=%s", path);
    assert_int_equal(load(&c, flag_args, NULL, err, sizeof err), -1);
    assert_string_equal(err, "relay.port (from --relay-port): must be an "
                        "integer from 1 to 65535, got 'abc'");
    assert_int_equal(load(&c, flag_eq, NULL, err, sizeof err), -1);
    assert_string_equal(err, "relay.port (from --relay-port): must be an "
                        "integer from 1 to 65535, got 'abc'");
    assert_int_equal(load(&c, NULL, env_port, err, sizeof err), -1);
    assert_string_equal(err, "relay.port (from MAILPOOL_RELAY_PORT): must be "
                        "an integer from 1 to 65535, got 'abc'");
    assert_int_equal(load(&c, NULL, env_file, err, sizeof err), -1);
    snprintf(want, sizeof want, "relay.port (from %s:3): must be an integer "
             "from 1 to 65535, got 'abc'", path);
    assert_string_equal(err, want);
    assert_int_equal(load(&c, NULL, env_workers, err, sizeof err), -1);
    assert_string_equal(err, "pool.workers (from MAILPOOL_POOL_WORKERS): must "
                        "be an integer from 1 to 1024, got '0'");
}

static void test_int_range_table(void **state)
{
    static const struct load_case cases[] = {
        { .args = { "--relay-port", "0" }, .err = "from 1 to 65535, got '0'" },
        { .args = { "--relay-port", "1" }, .off = F(relay.port), .kind = K_INT,
          .n = 1 },
        { .args = { "--relay-port", "65535" }, .off = F(relay.port),
          .kind = K_INT, .n = 65535 },
        { .args = { "--relay-port", "65536" }, .err = "relay.port" },
        { .args = { "--relay-port", "-1" }, .err = "got '-1'" },
        { .args = { "--relay-port", "25x" }, .err = "got '25x'" },
        { .args = { "--relay-port", " 25" }, .err = "got ' 25'" },
        { .args = { "--relay-port=" }, .err = "got ''" },
        { .args = { "--relay-port", "99999999999999999999" },
          .err = "relay.port" },
        { .args = { "--pool-workers", "0" }, .err = "pool.workers" },
        { .args = { "--pool-workers", "1024" }, .off = F(pool.workers),
          .kind = K_INT, .n = 1024 },
        { .args = { "--pool-workers", "1025" }, .err = "from 1 to 1024" },
        { .args = { "--pool-retries", "0" }, .off = F(pool.retries),
          .kind = K_INT, .n = 0 },
        { .args = { "--pool-retries", "101" }, .err = "from 0 to 100" },
        { .args = { "--pool-queue", "1000000" }, .off = F(pool.queue),
          .kind = K_INT, .n = 1000000 },
        { .args = { "--pool-queue", "1000001" }, .err = "pool.queue" },
        { .args = { "--pool-connections", "1025" },
          .err = "pool.connections" },
        { .args = { "--relay-connect-timeout", "0" },
          .err = "relay.connect_timeout" },
        { .args = { "--pool-drain-timeout", "0" },
          .err = "pool.drain_timeout" },
        { .args = { "--http-threads", "0" }, .err = "http.threads" },
        { .args = { "--pool-retry-backoff-ms", "0" },
          .off = F(pool.retry_backoff_ms), .kind = K_INT, .n = 0 },
    };

    (void)state;
    RUN_CASES(cases);
}

static void test_bool_parsing_table(void **state)
{
#define B_OK(v, want) { .args = { "--relay-pipelining", v }, \
        .off = F(relay.pipelining), .kind = K_INT, .n = want }
#define B_BAD(v) { .args = { "--relay-pipelining=" v }, \
        .err = "relay.pipelining (from --relay-pipelining): must be " \
               "true/false, yes/no, on/off or 1/0, got '" v "'" }
    static const struct load_case cases[] = {
        B_OK("true", 1), B_OK("false", 0), B_OK("yes", 1), B_OK("no", 0),
        B_OK("on", 1), B_OK("off", 0), B_OK("1", 1), B_OK("0", 0),
        B_OK("TRUE", 1), B_OK("No", 0), B_OK("oFf", 0),
        B_BAD("2"), B_BAD(""), B_BAD("enable"), B_BAD("truee"), B_BAD("y"),
        B_BAD(" true"),
    };
#undef B_OK
#undef B_BAD

    (void)state;
    RUN_CASES(cases);
}

static void test_size_suffix_table(void **state)
{
#define S_OK(v, want) { .args = { "--http-max-body", v }, \
        .off = F(http.max_body), .kind = K_LONG, .n = want }
#define S_BAD(v) { .args = { "--http-max-body=" v }, \
        .err = "http.max_body (from --http-max-body): must be a size in " \
               "bytes from 1 to 1g (optional suffix k, m or g), got '" v "'" }
    static const struct load_case cases[] = {
        S_OK("1", 1), S_OK("1024", 1024), S_OK("1k", 1024), S_OK("1K", 1024),
        S_OK("10m", 10485760), S_OK("10M", 10485760),
        S_OK("1g", 1073741824), S_OK("1G", 1073741824),
        S_OK("1048576k", 1073741824),
        S_BAD("0"), S_BAD("2g"), S_BAD("1048577k"), S_BAD("1t"), S_BAD("k"),
        S_BAD("-1"), S_BAD("1.5m"), S_BAD("1kb"), S_BAD(" 1k"), S_BAD(""),
        S_BAD("99999999999999999999"), S_BAD("18014398509481985k"),
    };
#undef S_OK
#undef S_BAD

    (void)state;
    RUN_CASES(cases);
}

static void test_rate_number_table(void **state)
{
#define RATE_OK(v, want) { .args = { "--pool-rate", v }, .off = F(pool.rate), \
        .kind = K_DOUBLE, .d = want }
#define RATE_BAD(v) { .args = { "--pool-rate=" v }, \
        .err = "pool.rate (from --pool-rate): must be a number from 0 to " \
               "1000000, got '" v "'" }
    static const struct load_case cases[] = {
        RATE_OK("0", 0.0), RATE_OK("2.5", 2.5), RATE_OK(".5", 0.5),
        RATE_OK("1e3", 1000.0), RATE_OK("1000000", 1000000.0),
        RATE_BAD("-1"), RATE_BAD("abc"), RATE_BAD("nan"), RATE_BAD("inf"),
        RATE_BAD("1e7"), RATE_BAD("0x10"), RATE_BAD("2.5/s"), RATE_BAD(""),
    };
#undef RATE_OK
#undef RATE_BAD

    (void)state;
    RUN_CASES(cases);
}

static void test_enum_values_table(void **state)
{
#define TLS(v, want) { .args = { "--relay-tls", v }, .off = F(relay.tls), \
        .kind = K_STR, .s = want }
#define MECH(v, want) { .args = { "--relay-auth-user", "u", \
        "--relay-auth-mech", v }, .env = { "MAILPOOL_RELAY_AUTH_PASS=p" }, \
        .off = F(relay.auth_mech), .kind = K_STR, .s = want }
    static const struct load_case cases[] = {
        TLS("none", "none"), TLS("opportunistic", "opportunistic"),
        TLS("required", "required"), TLS("implicit", "implicit"),
        TLS("REQUIRED", "required"),
        { .args = { "--relay-tls", "starttls" },
          .err = "relay.tls (from --relay-tls): must be one of none, "
                 "opportunistic, required, implicit, got 'starttls'" },
        { .args = { "--relay-tls=" }, .err = "relay.tls (from --relay-tls): "
          "must not be empty" },
        MECH("PLAIN", "PLAIN"), MECH("login", "LOGIN"),
        MECH("xoauth2", "XOAUTH2"), MECH("", NULL),
        { .args = { "--relay-auth-mech", "CRAM-MD5" },
          .err = "relay.auth_mech (from --relay-auth-mech): must be one of "
                 "PLAIN, LOGIN, XOAUTH2, got 'CRAM-MD5'" },
        { .args = { "--log-level", "error" }, .off = F(log.level),
          .kind = K_STR, .s = "error" },
        { .args = { "--log-level", "warning" },
          .err = "must be one of debug, info, warn, error, got 'warning'" },
    };
#undef TLS
#undef MECH

    (void)state;
    RUN_CASES(cases);
}

static void test_listen_parsing_table(void **state)
{
#define L_OK(v) { .args = { "--http-listen", v }, .off = F(http.listen), \
        .kind = K_STR, .s = v }
#define L_BAD(v) { .args = { "--http-listen", v }, \
        .err = "http.listen (from --http-listen): must be HOST:PORT" }
    /* ":PORT" and "*:PORT" (docs/API.md) are every IPv4 interface. */
    static const struct load_case cases[] = {
        L_OK("127.0.0.1:8025"), L_OK("0.0.0.0:80"), L_OK("localhost:8080"),
        L_OK("[::1]:8025"), L_OK("[::]:443"), L_OK("127.0.0.1:0"),
        L_OK("10.0.0.1:65535"),
        L_BAD("example.com:80"), L_BAD("127.0.0.1"), L_BAD("127.0.0.1:"),
        L_BAD("127.0.0.1:65536"), L_BAD("127.0.0.1:8a"), L_BAD(":x"),
        L_BAD(":"), L_BAD("*:"), L_BAD("**:80"), L_BAD("*8025"),
        L_BAD(":-1"), L_BAD("*:65536"),
        { .args = { "--http-listen", ":8025" }, .off = F(http.listen),
          .kind = K_STR, .s = "0.0.0.0:8025" },
        { .args = { "--http-listen", "*:0" }, .off = F(http.listen),
          .kind = K_STR, .s = "0.0.0.0:0" },
        L_BAD("[::1]"), L_BAD("[::1]8025"), L_BAD("::1:8025"),
        L_BAD("256.1.1.1:80"), L_BAD("[127.0.0.1]:80"), L_BAD("[::1:80"),
        L_BAD("127.0.0.1:-1"), L_BAD("127.0.0.1:0080000"),
        { .args = { "--http-listen", "" },
          .err = "http.listen (from --http-listen): must not be empty" },
        /* The shared grammar (util/hostport.h) says what is wrong. */
        { .args = { "--http-listen", "::1:8025" },
          .err = "(an IPv6 address must be in brackets), got '::1:8025'" },
        { .args = { "--http-listen", "127.0.0.1" },
          .err = "(the port is missing), got '127.0.0.1'" },
        { .args = { "--http-listen", "[::1:80" },
          .err = "(an IPv6 address lacks its ']'), got '[::1:80'" },
        { .args = { "--http-listen", "127.0.0.1:65536" },
          .err = "(the port must be a number from 0 to 65535)" },
    };
#undef L_OK
#undef L_BAD

    (void)state;
    RUN_CASES(cases);
}

static void test_strings_reject_control_characters(void **state)
{
    static const struct load_case cases[] = {
        { .args = { "--relay-helo-name", "a\r\nMAIL FROM:<x>" },
          .err = "relay.helo_name (from --relay-helo-name): must not contain "
                 "control characters or line breaks" },
        { .args = { "--relay-host", "mx example" },
          .err = "relay.host (from --relay-host): must be a host name "
                 "without spaces, got 'mx example'" },
        { .args = { "--relay-host", "" },
          .err = "relay.host (from --relay-host): must not be empty" },
        { .args = { "--relay-auth-user", "u\n" },
          .env = { "MAILPOOL_RELAY_AUTH_PASS=p" },
          .err = "relay.auth_user (from --relay-auth-user): must not contain "
                 "control characters" },
        { .args = { "--relay-ca-file", "/etc/ssl/ca.pem" },
          .off = F(relay.ca_file), .kind = K_STR, .s = "/etc/ssl/ca.pem" },
    };

    (void)state;
    RUN_CASES(cases);
}

static void test_empty_value_unsets_optional_string(void **state)
{
    struct fixture *f = *state;
    struct cfg c = { 0 };
    char err[512] = "";
    const char *path = fx_write(f, "e.ini",
        "[relay]\nca_file = /etc/ca.pem\nauth_user = u\nauth_pass = p\n");
    const char *args[] = { "--config", path, NULL };
    const char *env[] = { "MAILPOOL_RELAY_CA_FILE=",
                          "MAILPOOL_RELAY_AUTH_USER=",
                          "MAILPOOL_RELAY_AUTH_PASS=", NULL };

    assert_int_equal(load(&c, args, env, err, sizeof err), 0);
    check_str(c.relay.ca_file, NULL);
    check_str(c.relay.auth_user, NULL);
    check_str(c.relay.auth_pass, NULL);
    cfg_free(&c);
}

static void test_keys_checked_against_each_other(void **state)
{
    static const struct load_case cases[] = {
        { .args = { "--relay-cert-file", "/c.pem" },
          .err = "relay.cert_file (from --relay-cert-file): needs "
                 "relay.key_file as well" },
        { .args = { "--relay-key-file", "/k.pem" },
          .err = "relay.key_file (from --relay-key-file): needs "
                 "relay.cert_file as well" },
        { .args = { "--relay-cert-file", "/c.pem", "--relay-key-file",
                    "/k.pem" }, .off = F(relay.key_file), .kind = K_STR,
          .s = "/k.pem" },
        { .args = { "--relay-auth-mech", "PLAIN" },
          .err = "relay.auth_mech (from --relay-auth-mech): needs "
                 "relay.auth_user as well" },
        { .args = { NULL }, .env = { "MAILPOOL_RELAY_AUTH_USER=u" },
          .err = "relay.auth_user (from MAILPOOL_RELAY_AUTH_USER): needs "
                 "relay.auth_pass or relay.auth_pass_file as well" },
        { .args = { NULL }, .env = { "MAILPOOL_RELAY_AUTH_PASS=p" },
          .err = "relay.auth_pass (from MAILPOOL_RELAY_AUTH_PASS): needs "
                 "relay.auth_user as well" },
        { .args = { "--relay-tls", "none", "--relay-auth-user", "u" },
          .env = { "MAILPOOL_RELAY_AUTH_PASS=p" },
          .err = "relay.auth_user (from --relay-auth-user): with "
                 "relay.tls=none the password would cross the network in "
                 "clear; set relay.auth_allow_plaintext=true" },
        { .args = { "--relay-tls", "none", "--relay-auth-user", "u",
                    "--relay-auth-allow-plaintext", "yes" },
          .env = { "MAILPOOL_RELAY_AUTH_PASS=p" },
          .off = F(relay.auth_allow_plaintext), .kind = K_INT, .n = 1 },
    };

    (void)state;
    RUN_CASES(cases);
}

/* ---- the INI file ---- */

/* Loads a file holding text; err must contain "<path>" + want. */
static void check_file_error(struct fixture *f, const char *text,
                             const char *want)
{
    struct cfg c = { 0 };
    char err[512] = "", full[512];
    const char *path = fx_write(f, "bad.ini", text);
    const char *args[] = { "--config", path, NULL };

    assert_int_equal(load(&c, args, NULL, err, sizeof err), -1);
    snprintf(full, sizeof full, "%s%s", path, want);
    check_contains(err, full);
    unlink(path);
    f->npaths--;
}

static void test_unknown_ini_key_is_error(void **state)
{
    check_file_error(*state, "[relay]\nhost = a\nhots = b\n",
                     ":3: unknown key 'relay.hots'");
    /* The first error is the one reported; parsing stops there. */
    check_file_error(*state, "[relay]\nhots = b\nprot = 1\n",
                     ":2: unknown key 'relay.hots'");
}

static void test_unknown_ini_section_is_error(void **state)
{
    check_file_error(*state, "[relay]\nport = 26\n[smtp]\nhost = x\n",
                     ":4: unknown section [smtp] (key 'host')");
}

static void test_ini_key_outside_section_is_error(void **state)
{
    check_file_error(*state, "host = x\n",
                     ":1: unknown key 'host' (outside any [section])");
}

static void test_ini_syntax_error_names_line(void **state)
{
    check_file_error(*state, "[relay]\nport = 26\nhost localhost\n",
                     ":3: cannot parse this line");
    /* A syntax error before a bad key is the one reported. */
    check_file_error(*state, "[relay\nhots = 1\n",
                     ":1: cannot parse this line");
}

static void test_ini_duplicate_key_is_error(void **state)
{
    check_file_error(*state, "[relay]\nport = 25\n\nport = 26\n",
                     ":4: relay.port is set again (first on line 2)");
}

static void test_ini_long_line_is_error(void **state)
{
    char text[400];

    snprintf(text, sizeof text, "[relay]\nhost = %0300d\n", 0);
    check_file_error(*state, text, ":2: line longer than 198 characters");
}

static void test_ini_value_error_names_file_and_line(void **state)
{
    check_file_error(*state, "[pool]\n; the pool\nworkers = lots\n",
                     ":3): must be an integer from 1 to 1024, got 'lots'");
}

static void test_missing_config_file_names_it(void **state)
{
    struct fixture *f = *state;
    struct cfg c = { 0 };
    char err[512] = "", want[512], cfgvar[256];
    const char *path = fx_path(f, "nope.ini");
    const char *args[] = { "--config", path, NULL };
    const char *env[] = { cfgvar, NULL };

    snprintf(want, sizeof want, "cannot read config file '%s': No such "
             "file or directory", path);
    assert_int_equal(load(&c, args, NULL, err, sizeof err), -1);
    assert_string_equal(err, want);
    snprintf(cfgvar, sizeof cfgvar, "MAILPOOL_CONFIG=%s", path);
    assert_int_equal(load(&c, NULL, env, err, sizeof err), -1);
    assert_string_equal(err, want);
    /* A directory opens but does not read. */
    args[1] = f->dir;
    assert_int_equal(load(&c, args, NULL, err, sizeof err), -1);
    check_contains(err, "Is a directory");
}

/* ---- relay.auth_pass_file ---- */

static void test_auth_pass_file_read(void **state)
{
    static const struct {
        const char *data;
        size_t len;
        const char *pass;           /* NULL: an error containing err */
        const char *err;
    } rows[] = {
        { "s3cret\n", 7, "s3cret", NULL },
        { "s3cret", 6, "s3cret", NULL },
        { "s3cret\r\n", 8, "s3cret", NULL },
        { " sp ace \n", 9, " sp ace ", NULL },
        { "", 0, NULL, "is empty" },
        { "\n", 1, NULL, "is empty" },
        { "a\nb\n", 4, NULL, "must hold a single line" },
        { "a\n\n", 3, NULL, "must hold a single line" },
        { "a\0b", 3, NULL, "holds a NUL byte" },
    };
    struct fixture *f = *state;
    size_t i;

    for (i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct cfg c = { 0 };
        char err[512] = "", arg[256];
        const char *path = fx_write_n(f, "pass", rows[i].data, rows[i].len);
        const char *args[] = { "--relay-auth-user", "u", arg, NULL };
        int rc;

        snprintf(arg, sizeof arg, "--relay-auth-pass-file=%s", path);
        rc = load(&c, args, NULL, err, sizeof err);
        if ((rc == 0) != (rows[i].pass != NULL))
            print_error("row %zu: rc %d, err \"%s\"\n", i, rc, err);
        if (rows[i].pass != NULL) {
            assert_int_equal(rc, 0);
            check_str(c.relay.auth_pass, rows[i].pass);
            check_str(c.relay.auth_pass_file, path);
            cfg_free(&c);
        } else {
            assert_int_equal(rc, -1);
            check_contains(err, "relay.auth_pass_file (from "
                           "--relay-auth-pass-file): ");
            check_contains(err, rows[i].err);
        }
        unlink(path);
        f->npaths--;
    }
}

static void test_auth_pass_file_unreadable_names_key(void **state)
{
    struct fixture *f = *state;
    struct cfg c = { 0 };
    char err[512] = "", want[512], var[256];
    const char *path = fx_path(f, "missing-pass");
    const char *env[] = { "MAILPOOL_RELAY_AUTH_USER=u", var, NULL };

    snprintf(var, sizeof var, "MAILPOOL_RELAY_AUTH_PASS_FILE=%s", path);
    snprintf(want, sizeof want, "relay.auth_pass_file (from "
             "MAILPOOL_RELAY_AUTH_PASS_FILE): cannot read '%s': No such file "
             "or directory", path);
    assert_int_equal(load(&c, NULL, env, err, sizeof err), -1);
    assert_string_equal(err, want);
}

static void test_auth_pass_file_over_64k_is_error(void **state)
{
    struct fixture *f = *state;
    struct cfg c = { 0 };
    char err[512] = "", arg[256], *big = malloc(65537);
    const char *path;
    const char *args[] = { "--relay-auth-user", "u", arg, NULL };

    assert_non_null(big);
    memset(big, 'p', 65537);
    path = fx_write_n(f, "bigpass", big, 65536);      /* the limit: fine */
    snprintf(arg, sizeof arg, "--relay-auth-pass-file=%s", path);
    assert_int_equal(load(&c, args, NULL, err, sizeof err), 0);
    assert_int_equal(strlen(c.relay.auth_pass), 65536);
    cfg_free(&c);
    fx_write_n(f, "bigpass", big, 65537);
    free(big);
    assert_int_equal(load(&c, args, NULL, err, sizeof err), -1);
    check_contains(err, "relay.auth_pass_file (from --relay-auth-pass-file): "
                   "cannot read '");
    check_contains(err, "bigpass': larger than 64 KiB");
}

static void test_auth_pass_and_pass_file_together_is_error(void **state)
{
    struct fixture *f = *state;
    struct cfg c = { 0 };
    char err[512] = "", arg[256];
    const char *path = fx_write(f, "pass", "filepass\n");
    const char *args[] = { "--relay-auth-user", "u", arg, NULL };
    const char *env[] = { "MAILPOOL_RELAY_AUTH_PASS=envpass", NULL };

    snprintf(arg, sizeof arg, "--relay-auth-pass-file=%s", path);
    assert_int_equal(load(&c, args, env, err, sizeof err), -1);
    assert_string_equal(err, "relay.auth_pass_file (from "
                        "--relay-auth-pass-file) and relay.auth_pass (from "
                        "MAILPOOL_RELAY_AUTH_PASS) are both set; set one");
    assert_null(strstr(err, "envpass"));
}

/* ---- secrets ---- */

/* cfg_print into a new string (free it). */
static char *print_to_string(const struct cfg *c)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);

    assert_non_null(fp);
    assert_int_equal(cfg_print(c, fp), 0);
    assert_int_equal(fclose(fp), 0);
    return buf;
}

static void test_print_config_redacts_secrets(void **state)
{
    struct fixture *f = *state;
    struct cfg c = { 0 };
    char err[512] = "", arg[256], *out;
    const char *args[] = { "--relay-auth-user", "alice", NULL };
    const char *env[] = { "MAILPOOL_RELAY_AUTH_PASS=hunter2",
                          "MAILPOOL_HTTP_API_KEYS=key-one,key-two", NULL };
    const char *path = fx_write(f, "pass", "filesecret\n");
    const char *args2[] = { "--relay-auth-user", "alice", arg, NULL };

    assert_int_equal(load(&c, args, env, err, sizeof err), 0);
    out = print_to_string(&c);
    assert_null(strstr(out, "hunter2"));
    assert_null(strstr(out, "key-one"));
    check_contains(out, "\nauth_pass = <redacted>\n");
    check_contains(out, "\napi_keys = <redacted>\n");
    check_contains(out, "\nauth_user = alice\n");
    check_contains(out, "[relay]\n");
    check_contains(out, "\nport = 25\n");
    check_contains(out, "\nmax_body = 10485760\n");
    check_contains(out, "\npipelining = true\n");
    check_contains(out, "\nrate = 0\n");
    check_contains(out, "\nca_file =\n");
    free(out);
    cfg_free(&c);

    snprintf(arg, sizeof arg, "--relay-auth-pass-file=%s", path);
    assert_int_equal(load(&c, args2, NULL, err, sizeof err), 0);
    out = print_to_string(&c);
    assert_null(strstr(out, "filesecret"));
    check_contains(out, "\n; auth_pass = <redacted> (read from "
                   "auth_pass_file)\n");
    check_contains(out, path);
    free(out);
    cfg_free(&c);
}

/* A secret file others (or its group, unless root owns it) may read or
   write is refused at start, naming the key and the file; 0600 is read. */
static void test_secret_file_open_to_others_is_refused(void **state)
{
    struct fixture *f = *state;
    struct cfg c = { 0 };
    char err[512] = "", a1[256], a2[256];
    const char *pass = fx_write(f, "pass", "filesecret\n");
    const char *keys = fx_write(f, "keys", "key-one, key-two\n");
    const char *args[] = { "--relay-auth-user", "u", a1, a2, NULL };
    snprintf(a1, sizeof a1, "--relay-auth-pass-file=%s", pass);
    snprintf(a2, sizeof a2, "--http-api-keys-file=%s", keys);
    assert_int_equal(load(&c, args, NULL, err, sizeof err), 0);
    check_str(c.relay.auth_pass, "filesecret");
    check_str(c.http.api_keys, "key-one, key-two");
    cfg_free(&c);
    static const mode_t bad[] = { 0644, 0604, 0620, 0660, 0606 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char want[160];
        assert_int_equal(chmod(pass, bad[i]), 0);
        assert_int_equal(load(&c, args, NULL, err, sizeof err), -1);
        snprintf(want, sizeof want, "relay.auth_pass_file (from "
                 "--relay-auth-pass-file): '%s' is open to others (mode "
                 "%04o)", pass, (unsigned)bad[i]);
        check_contains(err, want);
        assert_null(strstr(err, "filesecret"));
    }
    /* Group-readable: a mounted secret (root-owned, fsGroup) only. */
    assert_int_equal(chmod(pass, 0640), 0);
    assert_int_equal(load(&c, args, NULL, err, sizeof err),
                     geteuid() == 0 ? 0 : -1);
    cfg_free(&c);
    assert_int_equal(chmod(pass, 0400), 0);
    assert_int_equal(chmod(keys, 0644), 0);
    assert_int_equal(load(&c, args, NULL, err, sizeof err), -1);
    check_contains(err, "http.api_keys_file (from --http-api-keys-file): '");
    check_contains(err, "chmod 600");
    assert_int_equal(chmod(keys, 0600), 0);
    assert_int_equal(load(&c, args, NULL, err, sizeof err), 0);
    cfg_free(&c);
}

static void test_secret_value_not_echoed_in_error(void **state)
{
    static const struct load_case cases[] = {
        { .args = { NULL }, .env = { "MAILPOOL_HTTP_API_KEYS=topsecret key" },
          .err = "http.api_keys (from MAILPOOL_HTTP_API_KEYS): keys must not "
                 "contain spaces or control characters" },
        { .args = { NULL }, .env = { "MAILPOOL_HTTP_API_KEYS=a,,b" },
          .err = "http.api_keys (from MAILPOOL_HTTP_API_KEYS): must be a "
                 "comma-separated list of non-empty keys" },
        /* Secrets never as flags: they would show in ps. */
        { .args = { "--relay-auth-pass", "topsecret" },
          .err = "flag --relay-auth-pass would put a secret on the command "
                 "line (visible in ps): set MAILPOOL_RELAY_AUTH_PASS or "
                 "relay.auth_pass_file instead" },
        { .args = { "--http-api-keys=topsecret" },
          .err = "flag --http-api-keys would put a secret on the command "
                 "line (visible in ps): set MAILPOOL_HTTP_API_KEYS or "
                 "http.api_keys_file instead" },
        { .args = { NULL }, .env = { "MAILPOOL_RELAY_AUTH_PASS=top\rsecret" },
          .err = "relay.auth_pass (from MAILPOOL_RELAY_AUTH_PASS): must not "
                 "contain control characters or line breaks" },
        { .args = { "--bogus=topsecret" }, .err = "unknown flag --bogus" },
    };
    size_t i;

    (void)state;
    RUN_CASES(cases);
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct cfg c = { 0 };
        char err[512] = "";
        const char *env_none[] = { NULL };

        load(&c, cases[i].args, cases[i].env[0] ? cases[i].env : env_none,
             err, sizeof err);
        assert_null(strstr(err, "topsecret"));
        assert_null(strstr(err, "secret'"));
    }
}

/* What cfg_print writes, loaded back as a file, is the same config. */
static void test_print_config_round_trips(void **state)
{
    struct fixture *f = *state;
    struct cfg a = { 0 }, b = { 0 };
    char err[512] = "", *out, *out2;
    const char *args[] = { "--relay-host", "mx.example", "--relay-tls",
                           "implicit", "--relay-port", "465",
                           "--relay-ca-file", "/etc/ca.pem", "--pool-rate",
                           "0.1", "--http-max-body", "3k",
                           "--relay-pipelining",
                           "off", "--http-listen", "[::1]:0", NULL };
    const char *path;
    const char *args2[] = { "--config", NULL, NULL };

    assert_int_equal(load(&a, args, NULL, err, sizeof err), 0);
    out = print_to_string(&a);
    path = fx_write(f, "printed.ini", out);
    args2[1] = path;
    assert_int_equal(load(&b, args2, NULL, err, sizeof err), 0);
    out2 = print_to_string(&b);
    assert_string_equal(out, out2);
    assert_true(b.pool.rate == 0.1);
    check_str(b.relay.ca_file, "/etc/ca.pem");
    check_str(b.relay.auth_user, NULL);
    free(out);
    free(out2);
    cfg_free(&a);
    cfg_free(&b);
}

/* ---- flags left to the caller ---- */

static void test_unknown_flags_go_to_rest(void **state)
{
    struct fixture *f = *state;
    struct cfg c = { 0 };
    char err[512] = "";
    const char *path = fx_write(f, "r.ini", "[relay]\nport = 2600\n");
    const char *args[] = { "--print-config", "--relay-host", "mx", "serve",
                           "--listen-fd=3", "--config", path, "-v", "--",
                           "--relay-port", "26", NULL };
    int rest[16], nrest = -1;
    static const int want[] = { 0, 3, 4, 7, 8, 9, 10 };
    size_t i;

    assert_int_equal(load_full(&c, args, NULL, rest, &nrest, err,
                               sizeof err), 0);
    assert_int_equal(nrest, sizeof want / sizeof want[0]);
    for (i = 0; i < sizeof want / sizeof want[0]; i++)
        assert_int_equal(rest[i], want[i]);
    check_str(c.relay.host, "mx");
    assert_int_equal(c.relay.port, 2600);   /* from the file, not after -- */
    cfg_free(&c);
}

static void test_unknown_flag_without_rest_is_error(void **state)
{
    static const struct load_case cases[] = {
        { .args = { "--print-config" }, .err = "unknown flag --print-config" },
        { .args = { "--relay-hots=x" }, .err = "unknown flag --relay-hots" },
        { .args = { "--relay_host", "x" },
          .err = "unknown flag --relay_host" },
        { .args = { "-v" }, .err = "unknown flag -v" },
        { .args = { "serve" }, .err = "unexpected argument 'serve'" },
        { .args = { "--" }, .err = "unexpected argument '--'" },
        { .args = { "" }, .err = "unexpected argument ''" },
        { .args = { "x" }, .err = "unexpected argument 'x'" },
        { .args = { "-" }, .err = "unexpected argument '-'" },
    };

    (void)state;
    RUN_CASES(cases);
}

static void test_flag_missing_value_is_error(void **state)
{
    static const struct load_case cases[] = {
        { .args = { "--relay-host" },
          .err = "flag --relay-host needs a value" },
        { .args = { "--relay-host", "--relay-port", "26" },
          .err = "flag --relay-host needs a value" },
        { .args = { "--relay-pipelining" },
          .err = "flag --relay-pipelining needs a value" },
        { .args = { "--config" }, .err = "flag --config needs a file name" },
        { .args = { "--config=" }, .err = "flag --config needs a file name" },
        { .args = { "--relay-port", "-1" },      /* "-1" is a value */
          .err = "relay.port (from --relay-port): must be an integer" },
    };

    (void)state;
    RUN_CASES(cases);
}

static void test_rest_count_is_zero_on_error(void **state)
{
    struct cfg c = { 0 };
    char err[256] = "";
    const char *args[] = { "--x", "--relay-port", "0", NULL };
    int rest[4], nrest = -1;

    (void)state;
    assert_int_equal(load_full(&c, args, NULL, rest, &nrest, err, sizeof err),
                     -1);
    assert_int_equal(nrest, 0);
}

/* ---- the environment ---- */

static void test_unknown_env_var_in_known_section_is_error(void **state)
{
    static const struct load_case cases[] = {
        { .args = { NULL }, .env = { "MAILPOOL_RELAY_HOTS=x" },
          .err = "unknown environment variable MAILPOOL_RELAY_HOTS" },
        { .args = { NULL }, .env = { "MAILPOOL_POOL_WORKER=3" },
          .err = "unknown environment variable MAILPOOL_POOL_WORKER" },
        { .args = { NULL },       /* not a config section: left alone */
          .env = { "MAILPOOL_BIN=/x", "MAILPOOL_TEST_PORT=1", "MAILPOOL_=1",
                   "MAILPOOL_LOGDIR=/x", "MAILPOOL_POOL_WORKERS=3" },
          .off = F(pool.workers), .kind = K_INT, .n = 3 },
        { .args = { NULL }, .env = { "mailpool_pool_workers=3" },
          .off = F(pool.workers), .kind = K_INT, .n = 8 },
    };

    (void)state;
    RUN_CASES(cases);
}

/* What Kubernetes injects for a Service named mailpool-relay (port 25,
   named smtp) and one named mailpool (port 8025), next to two real keys. */
static const char *const k8s_links_env[] = {
    "MAILPOOL_RELAY_SERVICE_HOST=10.96.0.10",
    "MAILPOOL_RELAY_SERVICE_PORT=25",
    "MAILPOOL_RELAY_SERVICE_PORT_SMTP=25",
    "MAILPOOL_RELAY_PORT=tcp://10.96.0.10:25",
    "MAILPOOL_RELAY_PORT_25_TCP=tcp://10.96.0.10:25",
    "MAILPOOL_RELAY_PORT_25_TCP_PROTO=tcp",
    "MAILPOOL_RELAY_PORT_25_TCP_PORT=25",
    "MAILPOOL_RELAY_PORT_25_TCP_ADDR=10.96.0.10",
    "MAILPOOL_SERVICE_HOST=10.96.0.11",
    "MAILPOOL_SERVICE_PORT=8025",
    "MAILPOOL_PORT=tcp://10.96.0.11:8025",
    "MAILPOOL_PORT_8025_TCP=tcp://10.96.0.11:8025",
    "MAILPOOL_PORT_8025_UDP_ADDR=10.96.0.11",
    "MAILPOOL_POOL_PORT_9_SCTP_PORT=9",
    "MAILPOOL_RELAY_HOST=relay.example",
    "MAILPOOL_POOL_WORKERS=3",
    NULL
};

static void test_service_link_env_vars_are_ignored_and_named(void **state)
{
    struct cfg c = { 0 };
    char err[512] = "";

    (void)state;
    if (load(&c, NULL, k8s_links_env, err, sizeof err) != 0)
        fail_msg("%s", err);   /* "unknown environment variable ..." */
    check_str(c.relay.host, "relay.example");
    assert_int_equal(c.pool.workers, 3);
    assert_int_equal(c.relay.port, 25);          /* the link URL: ignored */
    assert_int_equal(c.env_ignored, 14);
    check_contains(c.warning, "MAILPOOL_RELAY_SERVICE_HOST ");
    check_contains(c.warning, " MAILPOOL_RELAY_PORT ");
    check_contains(c.warning, " MAILPOOL_RELAY_PORT_25_TCP_ADDR");
    assert_null(strstr(c.warning, "MAILPOOL_RELAY_HOST"));
    assert_null(strstr(c.warning, "10.96"));     /* names, never values */
    cfg_free(&c);
}

static void test_real_port_key_next_to_links_still_applies(void **state)
{
    struct cfg c = { 0 };
    char err[512] = "";
    const char *env[] = { "MAILPOOL_RELAY_SERVICE_HOST=10.96.0.10",
                          "MAILPOOL_RELAY_PORT=2525", NULL };

    (void)state;
    assert_int_equal(load(&c, NULL, env, err, sizeof err), 0);
    assert_int_equal(c.relay.port, 2525);
    assert_int_equal(c.env_ignored, 1);
    assert_string_equal(c.warning, "MAILPOOL_RELAY_SERVICE_HOST");
    cfg_free(&c);
}

static void test_near_miss_of_a_key_is_still_an_error(void **state)
{
    static const struct load_case cases[] = {
        { .args = { NULL }, .env = { "MAILPOOL_RELAY_HSOT=relay.example" },
          .err = "unknown environment variable MAILPOOL_RELAY_HSOT" },
        { .args = { NULL }, .env = { "MAILPOOL_RELAY_SERVICE_HOTS=x" },
          .err = "unknown environment variable MAILPOOL_RELAY_SERVICE_HOTS" },
        { .args = { NULL }, .env = { "MAILPOOL_RELAY_PORT_25=x" },
          .err = "unknown environment variable MAILPOOL_RELAY_PORT_25" },
        { .args = { NULL }, .env = { "MAILPOOL_RELAY_PORT_25_TCP_HOST=x" },
          .err = "unknown environment variable MAILPOOL_RELAY_PORT_25_TCP_HOST" },
        { .args = { NULL }, .env = { "MAILPOOL_POOL_PORT_X_TCP=x" },
          .err = "unknown environment variable MAILPOOL_POOL_PORT_X_TCP" },
        { .args = { NULL }, .env = { "MAILPOOL_RELAY_PORT=tcp" },
          .err = "relay.port (from MAILPOOL_RELAY_PORT): must be an integer" },
    };

    (void)state;
    RUN_CASES(cases);
}

/* ---- the API's promises ---- */

static void test_failed_load_leaves_cfg_untouched(void **state)
{
    struct cfg c = { 0 }, copy;
    char err[256] = "";
    const char *good[] = { "--relay-host", "mx.example", NULL };
    const char *bad[] = { "--relay-host", "other", "--pool-workers", "0",
                          NULL };

    (void)state;
    assert_int_equal(load(&c, good, NULL, err, sizeof err), 0);
    memcpy(&copy, &c, sizeof c);
    assert_int_equal(load(&c, bad, NULL, err, sizeof err), -1);
    assert_memory_equal(&c, &copy, sizeof c);
    check_str(c.relay.host, "mx.example");
    cfg_free(&c);
}

static void test_cfg_free_null_and_twice(void **state)
{
    struct cfg c = { 0 };
    char err[64];

    (void)state;
    cfg_free(NULL);
    assert_int_equal(cfg_defaults(&c, err, sizeof err), 0);
    cfg_free(&c);
    assert_null(c.relay.host);
    cfg_free(&c);
}

static void test_small_or_missing_err_buffer_is_safe(void **state)
{
    struct cfg c = { 0 };
    char err[12];
    const char *bad[] = { "--relay-port", "0", NULL };

    (void)state;
    memset(err, 'x', sizeof err);
    assert_int_equal(load(&c, bad, NULL, err, sizeof err), -1);
    assert_int_equal(strlen(err), sizeof err - 1);
    assert_string_equal(err, "relay.port ");
    assert_int_equal(load(&c, bad, NULL, NULL, 0), -1);
}

static void test_process_environment_used_when_envp_is_null(void **state)
{
    struct cfg c = { 0 };
    char err[256] = "";

    (void)state;
    assert_int_equal(setenv("MAILPOOL_POOL_RETRIES", "7", 1), 0);
    assert_int_equal(cfg_load(&c, 0, NULL, NULL, NULL, NULL, err, sizeof err),
                     0);
    unsetenv("MAILPOOL_POOL_RETRIES");
    assert_int_equal(c.pool.retries, 7);
    cfg_free(&c);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_defaults_match_header),
        T(test_load_without_sources_gives_defaults),
        T(test_file_overrides_default),
        T(test_env_overrides_file),
        T(test_flag_overrides_env),
        T(test_config_file_from_MAILPOOL_CONFIG_or_flag),
        T(test_key_names_in_flags_env_and_file),
        T(test_bad_port_names_key_and_source),
        T(test_int_range_table),
        T(test_bool_parsing_table),
        T(test_size_suffix_table),
        T(test_rate_number_table),
        T(test_enum_values_table),
        T(test_listen_parsing_table),
        T(test_strings_reject_control_characters),
        T(test_empty_value_unsets_optional_string),
        T(test_keys_checked_against_each_other),
        T(test_unknown_ini_key_is_error),
        T(test_unknown_ini_section_is_error),
        T(test_ini_key_outside_section_is_error),
        T(test_ini_syntax_error_names_line),
        T(test_ini_duplicate_key_is_error),
        T(test_ini_long_line_is_error),
        T(test_ini_value_error_names_file_and_line),
        T(test_missing_config_file_names_it),
        T(test_auth_pass_file_read),
        T(test_auth_pass_file_unreadable_names_key),
        T(test_auth_pass_file_over_64k_is_error),
        T(test_auth_pass_and_pass_file_together_is_error),
        T(test_print_config_redacts_secrets),
        T(test_secret_value_not_echoed_in_error),
        T(test_secret_file_open_to_others_is_refused),
        T(test_print_config_round_trips),
        T(test_unknown_flags_go_to_rest),
        T(test_unknown_flag_without_rest_is_error),
        T(test_flag_missing_value_is_error),
        T(test_rest_count_is_zero_on_error),
        T(test_unknown_env_var_in_known_section_is_error),
        T(test_service_link_env_vars_are_ignored_and_named),
        T(test_real_port_key_next_to_links_still_applies),
        T(test_near_miss_of_a_key_is_still_an_error),
        T(test_failed_load_leaves_cfg_untouched),
        T(test_cfg_free_null_and_twice),
        T(test_small_or_missing_err_buffer_is_safe),
        T(test_process_environment_used_when_envp_is_null),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
