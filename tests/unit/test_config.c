/*
 * tests/unit/test_config.c - the config module: defaults, precedence
 * (defaults < INI file < environment < flags), value parsing tables and
 * error sentences (key, origin, reason).  The INI file, secrets, cfg_print,
 * flags left to the caller, the environment and the API's promises are
 * test_config_sources.c's; the fixture is tests/support/cfg_fx.h.
 *
 * Every test gets a fresh mkdtemp directory for its files, removed in the
 * teardown, and passes an explicit envp so the process environment never
 * leaks in.  Run under valgrind to check that every path frees what it took.
 */
#include "tests/support/cfg_fx.h"

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
    const char *path = fx_write(
        f, "m.ini",
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
    assert_int_equal(c.pool.queue, 1024); /* untouched: default */
    cfg_free(&c);
}

static void test_env_overrides_file(void **state)
{
    struct fixture *f = *state;
    struct cfg c = { 0 };
    char err[512] = "", cfgvar[256];
    const char *path = fx_write(
        f, "m.ini",
        "[relay]\nhost = file.example\nport = 2525\n[pool]\nworkers = 4\n");
    const char *env[] = { cfgvar, "MAILPOOL_RELAY_HOST=env.example",
                          "MAILPOOL_POOL_WORKERS=5", NULL };

    snprintf(cfgvar, sizeof cfgvar, "MAILPOOL_CONFIG=%s", path);
    assert_int_equal(load(&c, NULL, env, err, sizeof err), 0);
    check_str(c.relay.host, "env.example");
    assert_int_equal(c.pool.workers, 5);
    assert_int_equal(c.relay.port, 2525); /* only in the file */
    cfg_free(&c);
}

static void test_flag_overrides_env(void **state)
{
    static const struct load_case cases[] = {
        { .args = { "--pool-workers", "6" },
          .env = { "MAILPOOL_POOL_WORKERS=4" },
          .off = F(pool.workers),
          .kind = K_INT,
          .n = 6 },
        { .args = { "--pool-workers=7" },
          .env = { "MAILPOOL_POOL_WORKERS=4" },
          .off = F(pool.workers),
          .kind = K_INT,
          .n = 7 },
        { .args = { "--pool-workers=6", "--pool-workers", "9" },
          .env = { "MAILPOOL_POOL_WORKERS=4" },
          .off = F(pool.workers),
          .kind = K_INT,
          .n = 9 }, /* last wins */
        { .args = { "--relay-host=flag.example" },
          .env = { "MAILPOOL_RELAY_HOST=env.example" },
          .off = F(relay.host),
          .kind = K_STR,
          .s = "flag.example" },
        { .args = { NULL },
          .env = { "MAILPOOL_RELAY_HOST=env.example" },
          .off = F(relay.host),
          .kind = K_STR,
          .s = "env.example" },
        { .args = { NULL }, /* duplicates in envp: the first, as getenv */
          .env = { "MAILPOOL_RELAY_PORT=26", "MAILPOOL_RELAY_PORT=27" },
          .off = F(relay.port),
          .kind = K_INT,
          .n = 26 },
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

/* A key as each source names it, the value given and what it loads as. */
struct key_row {
    const char *section, *key, *flag, *env, *value;
    size_t off;
    enum kind kind;
    const char *s;
    long long n;
    double d;
};

/* One key of each section and kind, with its flag, variable and a value. */
static const struct key_row key_rows[] = {
    { "relay", "host", "--relay-host", "MAILPOOL_RELAY_HOST", "mx.example",
      F(relay.host), K_STR, "mx.example", 0, 0 },
    { "relay", "insecure_skip_verify", "--relay-insecure-skip-verify",
      "MAILPOOL_RELAY_INSECURE_SKIP_VERIFY", "yes",
      F(relay.insecure_skip_verify), K_INT, NULL, 1, 0 },
    { "relay", "data_timeout", "--relay-data-timeout",
      "MAILPOOL_RELAY_DATA_TIMEOUT", "900", F(relay.data_timeout), K_INT, NULL,
      900, 0 },
    { "http", "listen", "--http-listen", "MAILPOOL_HTTP_LISTEN", "[::1]:9000",
      F(http.listen), K_STR, "[::1]:9000", 0, 0 },
    { "http", "max_body", "--http-max-body", "MAILPOOL_HTTP_MAX_BODY", "2m",
      F(http.max_body), K_LONG, NULL, 2097152, 0 },
    { "http", "connection_timeout", "--http-connection-timeout",
      "MAILPOOL_HTTP_CONNECTION_TIMEOUT", "5", F(http.connection_timeout),
      K_INT, NULL, 5, 0 },
    { "pool", "workers", "--pool-workers", "MAILPOOL_POOL_WORKERS", "16",
      F(pool.workers), K_INT, NULL, 16, 0 },
    { "pool", "messages_per_conn", "--pool-messages-per-conn",
      "MAILPOOL_POOL_MESSAGES_PER_CONN", "50", F(pool.messages_per_conn), K_INT,
      NULL, 50, 0 },
    { "pool", "retry_backoff_ms", "--pool-retry-backoff-ms",
      "MAILPOOL_POOL_RETRY_BACKOFF_MS", "1000", F(pool.retry_backoff_ms), K_INT,
      NULL, 1000, 0 },
    { "pool", "rate", "--pool-rate", "MAILPOOL_POOL_RATE", "12.5", F(pool.rate),
      K_DOUBLE, NULL, 0, 12.5 },
    { "log", "level", "--log-level", "MAILPOOL_LOG_LEVEL", "DEBUG",
      F(log.level), K_STR, "debug", 0, 0 },
};

/* Row i, r, through each source: --flag VALUE, --flag=VALUE, the
   environment, an INI file. */
static void check_key_row(struct fixture *f, const struct key_row *r, size_t i)
{
    for (int src = 0; src < 4; src++) {
        char a0[128], a1[128], e0[160], ini[256], name[32];
        const char *path = NULL;
        struct load_case tc = {
            .off = r->off, .kind = r->kind, .s = r->s, .n = r->n, .d = r->d
        };

        if (src == 0) { /* --flag VALUE */
            tc.args[0] = r->flag;
            tc.args[1] = r->value;
        } else if (src == 1) { /* --flag=VALUE */
            snprintf(a0, sizeof a0, "%s=%s", r->flag, r->value);
            tc.args[0] = a0;
        } else if (src == 2) { /* environment */
            snprintf(e0, sizeof e0, "%s=%s", r->env, r->value);
            tc.env[0] = e0;
        } else { /* INI file */
            snprintf(ini, sizeof ini, "[%s]\n%s = %s\n", r->section, r->key,
                     r->value);
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

/* Every source reaches the key by its derived name. */
static void test_key_names_in_flags_env_and_file(void **state)
{
    struct fixture *f = *state;
    for (size_t i = 0; i < sizeof key_rows / sizeof key_rows[0]; i++)
        check_key_row(f, &key_rows[i], i);
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
    snprintf(want, sizeof want,
             "relay.port (from %s:3): must be an integer "
             "from 1 to 65535, got 'abc'",
             path);
    assert_string_equal(err, want);
    assert_int_equal(load(&c, NULL, env_workers, err, sizeof err), -1);
    assert_string_equal(err, "pool.workers (from MAILPOOL_POOL_WORKERS): must "
                             "be an integer from 1 to 1024, got '0'");
}

static void test_int_range_table(void **state)
{
    static const struct load_case cases[] = {
        { .args = { "--relay-port", "0" }, .err = "from 1 to 65535, got '0'" },
        { .args = { "--relay-port", "1" },
          .off = F(relay.port),
          .kind = K_INT,
          .n = 1 },
        { .args = { "--relay-port", "65535" },
          .off = F(relay.port),
          .kind = K_INT,
          .n = 65535 },
        { .args = { "--relay-port", "65536" }, .err = "relay.port" },
        { .args = { "--relay-port", "-1" }, .err = "got '-1'" },
        { .args = { "--relay-port", "25x" }, .err = "got '25x'" },
        { .args = { "--relay-port", " 25" }, .err = "got ' 25'" },
        { .args = { "--relay-port=" }, .err = "got ''" },
        { .args = { "--relay-port", "99999999999999999999" },
          .err = "relay.port" },
        { .args = { "--pool-workers", "0" }, .err = "pool.workers" },
        { .args = { "--pool-workers", "1024" },
          .off = F(pool.workers),
          .kind = K_INT,
          .n = 1024 },
        { .args = { "--pool-workers", "1025" }, .err = "from 1 to 1024" },
        { .args = { "--pool-retries", "0" },
          .off = F(pool.retries),
          .kind = K_INT,
          .n = 0 },
        { .args = { "--pool-retries", "101" }, .err = "from 0 to 100" },
        { .args = { "--pool-queue", "1000000" },
          .off = F(pool.queue),
          .kind = K_INT,
          .n = 1000000 },
        { .args = { "--pool-queue", "1000001" }, .err = "pool.queue" },
        { .args = { "--pool-connections", "1025" }, .err = "pool.connections" },
        { .args = { "--relay-connect-timeout", "0" },
          .err = "relay.connect_timeout" },
        { .args = { "--pool-drain-timeout", "0" },
          .err = "pool.drain_timeout" },
        { .args = { "--http-threads", "0" }, .err = "http.threads" },
        { .args = { "--pool-retry-backoff-ms", "0" },
          .off = F(pool.retry_backoff_ms),
          .kind = K_INT,
          .n = 0 },
    };

    (void)state;
    RUN_CASES(cases);
}

static void test_bool_parsing_table(void **state)
{
#define B_OK(v, want) \
    { \
        .args = { "--relay-pipelining", v }, .off = F(relay.pipelining), \
        .kind = K_INT, .n = want \
    }
#define B_BAD(v) \
    { \
        .args = { "--relay-pipelining=" v }, \
        .err = "relay.pipelining (from --relay-pipelining): must be " \
               "true/false, yes/no, on/off or 1/0, got '" v "'" \
    }
    static const struct load_case cases[] = {
        B_OK("true", 1), B_OK("false", 0), B_OK("yes", 1), B_OK("no", 0),
        B_OK("on", 1),   B_OK("off", 0),   B_OK("1", 1),   B_OK("0", 0),
        B_OK("TRUE", 1), B_OK("No", 0),    B_OK("oFf", 0), B_BAD("2"),
        B_BAD(""),       B_BAD("enable"),  B_BAD("truee"), B_BAD("y"),
        B_BAD(" true"),
    };
#undef B_OK
#undef B_BAD

    (void)state;
    RUN_CASES(cases);
}

static void test_size_suffix_table(void **state)
{
#define S_OK(v, want) \
    { \
        .args = { "--http-max-body", v }, .off = F(http.max_body), \
        .kind = K_LONG, .n = want \
    }
#define S_BAD(v) \
    { \
        .args = { "--http-max-body=" v }, \
        .err = "http.max_body (from --http-max-body): must be a size in " \
               "bytes from 1 to 1g (optional suffix k, m or g), got '" v "'" \
    }
    static const struct load_case cases[] = {
        S_OK("1", 1),
        S_OK("1024", 1024),
        S_OK("1k", 1024),
        S_OK("1K", 1024),
        S_OK("10m", 10485760),
        S_OK("10M", 10485760),
        S_OK("1g", 1073741824),
        S_OK("1G", 1073741824),
        S_OK("1048576k", 1073741824),
        S_BAD("0"),
        S_BAD("2g"),
        S_BAD("1048577k"),
        S_BAD("1t"),
        S_BAD("k"),
        S_BAD("-1"),
        S_BAD("1.5m"),
        S_BAD("1kb"),
        S_BAD(" 1k"),
        S_BAD(""),
        S_BAD("99999999999999999999"),
        S_BAD("18014398509481985k"),
    };
#undef S_OK
#undef S_BAD

    (void)state;
    RUN_CASES(cases);
}

static void test_rate_number_table(void **state)
{
#define RATE_OK(v, want) \
    { \
        .args = { "--pool-rate", v }, .off = F(pool.rate), .kind = K_DOUBLE, \
        .d = want \
    }
#define RATE_BAD(v) \
    { \
        .args = { "--pool-rate=" v }, \
        .err = "pool.rate (from --pool-rate): must be a number from 0 to " \
               "1000000, got '" v "'" \
    }
    static const struct load_case cases[] = {
        RATE_OK("0", 0.0),
        RATE_OK("2.5", 2.5),
        RATE_OK(".5", 0.5),
        RATE_OK("1e3", 1000.0),
        RATE_OK("1000000", 1000000.0),
        RATE_BAD("-1"),
        RATE_BAD("abc"),
        RATE_BAD("nan"),
        RATE_BAD("inf"),
        RATE_BAD("1e7"),
        RATE_BAD("0x10"),
        RATE_BAD("2.5/s"),
        RATE_BAD(""),
    };
#undef RATE_OK
#undef RATE_BAD

    (void)state;
    RUN_CASES(cases);
}

/* A number key's bounds keep their fractions: queue.retry_base and
   queue.retry_max take 0.001 and refuse 0 (the bound was once kept in an
   integer and became 0). */
static void test_number_bounds_keep_fractions(void **state)
{
    static const struct load_case cases[] = {
        { .args = { "--queue-retry-base", "0.001" },
          .off = F(queue.retry_base),
          .kind = K_DOUBLE,
          .d = 0.001 },
        { .args = { "--queue-retry-base=0" },
          .err = "queue.retry_base (from --queue-retry-base): must be a "
                 "number from 0.001 to 86400, got '0'" },
        { .args = { "--queue-retry-max=0.0005" },
          .err = "queue.retry_max (from --queue-retry-max): must be a "
                 "number from 0.001 to 604800, got '0.0005'" },
    };

    (void)state;
    RUN_CASES(cases);
}

static void test_enum_values_table(void **state)
{
#define TLS(v, want) \
    { \
        .args = { "--relay-tls", v }, .off = F(relay.tls), .kind = K_STR, \
        .s = want \
    }
#define MECH(v, want) \
    { \
        .args = { "--relay-auth-user", "u", "--relay-auth-mech", v }, \
        .env = { "MAILPOOL_RELAY_AUTH_PASS=p" }, .off = F(relay.auth_mech), \
        .kind = K_STR, .s = want \
    }
    static const struct load_case cases[] = {
        TLS("none", "none"),
        TLS("opportunistic", "opportunistic"),
        TLS("required", "required"),
        TLS("implicit", "implicit"),
        TLS("REQUIRED", "required"),
        { .args = { "--relay-tls", "starttls" },
          .err = "relay.tls (from --relay-tls): must be one of none, "
                 "opportunistic, required, implicit, got 'starttls'" },
        { .args = { "--relay-tls=" },
          .err = "relay.tls (from --relay-tls): "
                 "must not be empty" },
        MECH("PLAIN", "PLAIN"),
        MECH("login", "LOGIN"),
        MECH("xoauth2", "XOAUTH2"),
        MECH("", NULL),
        { .args = { "--relay-auth-mech", "CRAM-MD5" },
          .err = "relay.auth_mech (from --relay-auth-mech): must be one of "
                 "PLAIN, LOGIN, XOAUTH2, got 'CRAM-MD5'" },
        { .args = { "--log-level", "error" },
          .off = F(log.level),
          .kind = K_STR,
          .s = "error" },
        { .args = { "--log-level", "warning" },
          .err = "must be one of debug, info, warn, error, got 'warning'" },
    };
#undef TLS
#undef MECH

    (void)state;
    RUN_CASES(cases);
}

#define L_OK(v) \
    { \
        .args = { "--http-listen", v }, .off = F(http.listen), .kind = K_STR, \
        .s = v \
    }
#define L_BAD(v) \
    { \
        .args = { "--http-listen", v }, \
        .err = "http.listen (from --http-listen): must be HOST:PORT" \
    }
/* ":PORT" and "*:PORT" (docs/API.md) are every IPv4 interface. */
static const struct load_case listen_cases[] = {
    L_OK("127.0.0.1:8025"),
    L_OK("0.0.0.0:80"),
    L_OK("localhost:8080"),
    L_OK("[::1]:8025"),
    L_OK("[::]:443"),
    L_OK("127.0.0.1:0"),
    L_OK("10.0.0.1:65535"),
    L_BAD("example.com:80"),
    L_BAD("127.0.0.1"),
    L_BAD("127.0.0.1:"),
    L_BAD("127.0.0.1:65536"),
    L_BAD("127.0.0.1:8a"),
    L_BAD(":x"),
    L_BAD(":"),
    L_BAD("*:"),
    L_BAD("**:80"),
    L_BAD("*8025"),
    L_BAD(":-1"),
    L_BAD("*:65536"),
    { .args = { "--http-listen", ":8025" },
      .off = F(http.listen),
      .kind = K_STR,
      .s = "0.0.0.0:8025" },
    { .args = { "--http-listen", "*:0" },
      .off = F(http.listen),
      .kind = K_STR,
      .s = "0.0.0.0:0" },
    L_BAD("[::1]"),
    L_BAD("[::1]8025"),
    L_BAD("::1:8025"),
    L_BAD("256.1.1.1:80"),
    L_BAD("[127.0.0.1]:80"),
    L_BAD("[::1:80"),
    L_BAD("127.0.0.1:-1"),
    L_BAD("127.0.0.1:0080000"),
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

static void test_listen_parsing_table(void **state)
{
    (void)state;
    RUN_CASES(listen_cases);
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
          .off = F(relay.ca_file),
          .kind = K_STR,
          .s = "/etc/ssl/ca.pem" },
    };

    (void)state;
    RUN_CASES(cases);
}

static void test_empty_value_unsets_optional_string(void **state)
{
    struct fixture *f = *state;
    struct cfg c = { 0 };
    char err[512] = "";
    const char *path = fx_write(
        f, "e.ini",
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
                    "/k.pem" },
          .off = F(relay.key_file),
          .kind = K_STR,
          .s = "/k.pem" },
        { .args = { "--relay-auth-mech", "PLAIN" },
          .err = "relay.auth_mech (from --relay-auth-mech): needs "
                 "relay.auth_user as well" },
        { .args = { NULL },
          .env = { "MAILPOOL_RELAY_AUTH_USER=u" },
          .err = "relay.auth_user (from MAILPOOL_RELAY_AUTH_USER): needs "
                 "relay.auth_pass or relay.auth_pass_file as well" },
        { .args = { NULL },
          .env = { "MAILPOOL_RELAY_AUTH_PASS=p" },
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
          .off = F(relay.auth_allow_plaintext),
          .kind = K_INT,
          .n = 1 },
    };

    (void)state;
    RUN_CASES(cases);
}

/* relay.tls is parsed where it is read (file, environment, flag, another
   command's option), in any case: users read relay.tls_mode, never the
   spelling. */
static void test_relay_tls_is_kept_parsed_from_every_source(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *spelling;
        enum cfg_tls mode;
    } modes[] = { { "none", CFG_TLS_NONE },
                  { "Opportunistic", CFG_TLS_OPPORTUNISTIC },
                  { "REQUIRED", CFG_TLS_REQUIRED },
                  { "implicit", CFG_TLS_IMPLICIT } };
    const char *none[] = { NULL };
    char err[512] = "", line[64], envv[64];
    struct cfg c = { 0 };

    assert_int_equal(load(&c, none, none, err, sizeof err), 0);
    assert_int_equal(c.relay.tls_mode, CFG_TLS_OPPORTUNISTIC); /* default */
    cfg_free(&c);
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        snprintf(line, sizeof line, "[relay]\ntls = %s\n", modes[i].spelling);
        const char *path = fx_write(f, "tls.ini", line);
        const char *file_args[] = { "--config", path, NULL };
        const char *flag_args[] = { "--relay-tls", modes[i].spelling, NULL };
        snprintf(envv, sizeof envv, "MAILPOOL_RELAY_TLS=%s", modes[i].spelling);
        const char *env[] = { envv, NULL };

        assert_int_equal(load(&c, file_args, none, err, sizeof err), 0);
        assert_int_equal(c.relay.tls_mode, modes[i].mode);
        cfg_free(&c);
        assert_int_equal(load(&c, none, env, err, sizeof err), 0);
        assert_int_equal(c.relay.tls_mode, modes[i].mode);
        cfg_free(&c);
        assert_int_equal(load(&c, flag_args, none, err, sizeof err), 0);
        assert_int_equal(c.relay.tls_mode, modes[i].mode);
        assert_int_equal(
            cfg_set_option(&c, "relay.tls", "--tls", "none", err, sizeof err),
            0);
        assert_int_equal(c.relay.tls_mode, CFG_TLS_NONE);
        cfg_free(&c);
    }
}

/* http.listen is kept parsed (host, port) where it is read, ":PORT" as
   every IPv4 interface: the listener and the healthcheck read the parsed
   address. */
static void test_http_listen_is_kept_parsed(void **state)
{
    static const struct {
        const char *value, *host;
        int port, v6;
    } rows[] = { { NULL, "127.0.0.1", 8025, 0 },
                 { ":9000", "0.0.0.0", 9000, 0 },
                 { "*:9001", "0.0.0.0", 9001, 0 },
                 { "[::1]:0", "::1", 0, 1 },
                 { "localhost:8080", "localhost", 8080, 0 } };
    const char *none[] = { NULL };
    char err[512] = "";

    (void)state;
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        const char *args[] = { "--http-listen", rows[i].value, NULL };
        struct cfg c = { 0 };
        assert_int_equal(load(&c, rows[i].value != NULL ? args : none, none,
                              err, sizeof err),
                         0);
        assert_string_equal(c.http.listen_addr.host, rows[i].host);
        assert_int_equal(c.http.listen_addr.port, rows[i].port);
        assert_int_equal(c.http.listen_addr.v6, rows[i].v6);
        cfg_free(&c);
    }
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
        T(test_number_bounds_keep_fractions),
        T(test_enum_values_table),
        T(test_relay_tls_is_kept_parsed_from_every_source),
        T(test_http_listen_is_kept_parsed),
        T(test_listen_parsing_table),
        T(test_strings_reject_control_characters),
        T(test_empty_value_unsets_optional_string),
        T(test_keys_checked_against_each_other),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
