/*
 * tests/unit/test_config_sources.c - the config module's sources and
 * promises: the INI file, relay.auth_pass_file, secrets and cfg_print,
 * flags left to the caller, the environment, and what the API promises
 * (a failed load leaves cfg untouched, cfg_free twice, small buffers).
 * Defaults, precedence and the value tables are test_config.c's; the
 * fixture is tests/support/cfg_fx.h.
 *
 * Every test gets a fresh mkdtemp directory for its files, removed in the
 * teardown, and passes an explicit envp so the process environment never
 * leaks in.
 */
#include "tests/support/cfg_fx.h"

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

    snprintf(want, sizeof want,
             "cannot read config file '%s': No such "
             "file or directory",
             path);
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
        const char *pass; /* NULL: an error containing err */
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
    snprintf(want, sizeof want,
             "relay.auth_pass_file (from "
             "MAILPOOL_RELAY_AUTH_PASS_FILE): cannot read '%s': No such file "
             "or directory",
             path);
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
    path = fx_write_n(f, "bigpass", big, 65536); /* the limit: fine */
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
    assert_string_equal(err,
                        "relay.auth_pass_file (from "
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
        snprintf(want, sizeof want,
                 "relay.auth_pass_file (from "
                 "--relay-auth-pass-file): '%s' is open to others (mode "
                 "%04o)",
                 pass, (unsigned)bad[i]);
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
        { .args = { NULL },
          .env = { "MAILPOOL_HTTP_API_KEYS=topsecret key" },
          .err = "http.api_keys (from MAILPOOL_HTTP_API_KEYS): keys must not "
                 "contain spaces or control characters" },
        { .args = { NULL },
          .env = { "MAILPOOL_HTTP_API_KEYS=a,,b" },
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
        { .args = { NULL },
          .env = { "MAILPOOL_RELAY_AUTH_PASS=top\rsecret" },
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

        load(&c, cases[i].args, cases[i].env[0] ? cases[i].env : env_none, err,
             sizeof err);
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
    const char *args[] = { "--relay-host",
                           "mx.example",
                           "--relay-tls",
                           "implicit",
                           "--relay-port",
                           "465",
                           "--relay-ca-file",
                           "/etc/ca.pem",
                           "--pool-rate",
                           "0.1",
                           "--http-max-body",
                           "3k",
                           "--relay-pipelining",
                           "off",
                           "--http-listen",
                           "[::1]:0",
                           NULL };
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
    const char *args[] = { "--print-config",
                           "--relay-host",
                           "mx",
                           "serve",
                           "--listen-fd=3",
                           "--config",
                           path,
                           "-v",
                           "--",
                           "--relay-port",
                           "26",
                           NULL };
    int rest[16], nrest = -1;
    static const int want[] = { 0, 3, 4, 7, 8, 9, 10 };
    size_t i;

    assert_int_equal(load_full(&c, args, NULL, rest, &nrest, err, sizeof err),
                     0);
    assert_int_equal(nrest, sizeof want / sizeof want[0]);
    for (i = 0; i < sizeof want / sizeof want[0]; i++)
        assert_int_equal(rest[i], want[i]);
    check_str(c.relay.host, "mx");
    assert_int_equal(c.relay.port, 2600); /* from the file, not after -- */
    cfg_free(&c);
}

static void test_unknown_flag_without_rest_is_error(void **state)
{
    static const struct load_case cases[] = {
        { .args = { "--print-config" }, .err = "unknown flag --print-config" },
        { .args = { "--relay-hots=x" }, .err = "unknown flag --relay-hots" },
        { .args = { "--relay_host", "x" }, .err = "unknown flag --relay_host" },
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
        { .args = { "--relay-port", "-1" }, /* "-1" is a value */
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
        { .args = { NULL },
          .env = { "MAILPOOL_RELAY_HOTS=x" },
          .err = "unknown environment variable MAILPOOL_RELAY_HOTS" },
        { .args = { NULL },
          .env = { "MAILPOOL_POOL_WORKER=3" },
          .err = "unknown environment variable MAILPOOL_POOL_WORKER" },
        { .args = { NULL }, /* not a config section: left alone */
          .env = { "MAILPOOL_BIN=/x", "MAILPOOL_TEST_PORT=1", "MAILPOOL_=1",
                   "MAILPOOL_LOGDIR=/x", "MAILPOOL_POOL_WORKERS=3" },
          .off = F(pool.workers),
          .kind = K_INT,
          .n = 3 },
        { .args = { NULL },
          .env = { "mailpool_pool_workers=3" },
          .off = F(pool.workers),
          .kind = K_INT,
          .n = 8 },
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
        fail_msg("%s", err); /* "unknown environment variable ..." */
    check_str(c.relay.host, "relay.example");
    assert_int_equal(c.pool.workers, 3);
    assert_int_equal(c.relay.port, 25); /* the link URL: ignored */
    assert_int_equal(c.env_ignored, 14);
    check_contains(c.warning, "MAILPOOL_RELAY_SERVICE_HOST ");
    check_contains(c.warning, " MAILPOOL_RELAY_PORT ");
    check_contains(c.warning, " MAILPOOL_RELAY_PORT_25_TCP_ADDR");
    assert_null(strstr(c.warning, "MAILPOOL_RELAY_HOST"));
    assert_null(strstr(c.warning, "10.96")); /* names, never values */
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
        { .args = { NULL },
          .env = { "MAILPOOL_RELAY_HSOT=relay.example" },
          .err = "unknown environment variable MAILPOOL_RELAY_HSOT" },
        { .args = { NULL },
          .env = { "MAILPOOL_RELAY_SERVICE_HOTS=x" },
          .err = "unknown environment variable MAILPOOL_RELAY_SERVICE_HOTS" },
        { .args = { NULL },
          .env = { "MAILPOOL_RELAY_PORT_25=x" },
          .err = "unknown environment variable MAILPOOL_RELAY_PORT_25" },
        { .args = { NULL },
          .env = { "MAILPOOL_RELAY_PORT_25_TCP_HOST=x" },
          .err =
              "unknown environment variable MAILPOOL_RELAY_PORT_25_TCP_HOST" },
        { .args = { NULL },
          .env = { "MAILPOOL_POOL_PORT_X_TCP=x" },
          .err = "unknown environment variable MAILPOOL_POOL_PORT_X_TCP" },
        { .args = { NULL },
          .env = { "MAILPOOL_RELAY_PORT=tcp" },
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
