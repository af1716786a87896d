/*
 * config/config.c - mailpool's configuration keys: the one table that drives
 * the defaults, the INI file, the environment, the flags and cfg_print.
 *
 * Every key is a row of cfg_keys below: section, key, type, offset into
 * struct cfg, default (as text, parsed like any other value), flags (secret,
 * required), range or choices, an extra check, and a line of help.  From a
 * row follow the INI name "[section] key", the environment variable
 * MAILPOOL_<SECTION>_<KEY> and the flag --<section>-<key> (dashes for
 * underscores).  Adding a key is adding a field to struct cfg and a row here.
 *
 * Public functions (config/config.h):
 *   cfg_defaults  fill a zeroed struct cfg with the defaults
 *   cfg_load      defaults < INI file < environment < flags, validated
 *                 (in cfg_load.c)
 *   cfg_free      release every string (secrets are wiped first), zero cfg
 *   cfg_print     the effective configuration as INI, secrets "<redacted>"
 *
 * Errors: -1 with one sentence in the caller's err buffer naming the key as
 * "section.key", where the value came from ("from /etc/mailpool.ini:12",
 * "from MAILPOOL_POOL_WORKERS", "from --pool-workers") and what was wrong;
 * secret values are never echoed.  Nothing is printed, nothing exits.
 * Threads: no mutable state here; the table is const.  A loaded struct cfg
 * is read-only and may be shared.  cfg_load reads the process environment
 * only when envp is NULL (then not safe against a concurrent setenv).
 */
#include "config/cfg_internal.h"

#include <assert.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CFG_OFF(field) offsetof(struct cfg, field)

#define CFG_STR(sec, key, def, flags, check, help) \
    { \
#sec, #key, CFG_STRING, CFG_OFF(sec.key), def, flags, 0, 0, NULL, \
            check, help, 0, 0, 0 \
    }
#define CFG_ENUM_(sec, key, def, flags, choices, help) \
    { \
#sec, #key, CFG_ENUM, CFG_OFF(sec.key), def, flags, 0, 0, choices, \
            NULL, help, 0, 0, 0 \
    }
/* An enum key whose choice's index is also kept, in sec.parsed (an
   int-sized enum in the order of choices): users read the parsed value.
   For CFG_REQUIRED keys (an unset key has no index). */
#define CFG_ENUM_PARSED_(sec, key, parsed, def, flags, choices, help) \
    { \
#sec, #key, CFG_ENUM, CFG_OFF(sec.key), def, flags, 0, 0, choices, \
            NULL, help, CFG_OFF(sec.parsed), 0, 0 \
    }
#define CFG_INT_(sec, key, def, lo, hi, help) \
    { \
#sec, #key, CFG_INT, CFG_OFF(sec.key), def, 0, lo, hi, NULL, NULL, \
            help, 0, 0, 0 \
    }
#define CFG_BOOL_(sec, key, def, help) \
    { \
#sec, #key, CFG_BOOL, CFG_OFF(sec.key), def, 0, 0, 1, NULL, NULL, \
            help, 0, 0, 0 \
    }
#define CFG_DOUBLE_(sec, key, def_, lo, hi, help_) \
    { \
        .section = #sec, .name = #key, .type = CFG_DOUBLE, \
        .offset = CFG_OFF(sec.key), .def = def_, .dmin = lo, .dmax = hi, \
        .help = help_ \
    }
#define CFG_SIZE_(sec, key, def, lo, hi, help) \
    { \
#sec, #key, CFG_SIZE, CFG_OFF(sec.key), def, 0, lo, hi, NULL, NULL, \
            help, 0, 0, 0 \
    }

#define DAY 86400

/* In the order of enum cfg_tls (config.h): relay.tls_mode is the index. */
static const char *const cfg_tls_choices[] = { "none", "opportunistic",
                                               "required", "implicit", NULL };
static const char *const cfg_mech_choices[] = { "PLAIN", "LOGIN", "XOAUTH2",
                                                NULL };
static const char *const cfg_sync_choices[] = { "full", "normal", NULL };
static const char *const cfg_backend_choices[] = { "sqlite", "postgres", NULL };
static const char *const cfg_level_choices[] = { "debug", "info", "warn",
                                                 "error", NULL };

const struct cfg_key cfg_keys[] = {
    CFG_STR(relay, host, "localhost", CFG_REQUIRED, cfg_check_hostname,
            "SMTP relay host name or address"),
    CFG_INT_(relay, port, "25", 1, 65535,
             "SMTP relay port (25 relay, 587 submission, 465 implicit TLS)"),
    CFG_ENUM_PARSED_(
        relay, tls, tls_mode, "opportunistic", CFG_REQUIRED, cfg_tls_choices,
        "none, opportunistic (STARTTLS if offered; else plaintext, "
        "logged at warn), required (STARTTLS or fail), implicit (TLS "
        "from the start)"),
    CFG_STR(relay, ca_file, NULL, 0, NULL,
            "CA certificates (PEM) to verify the relay; unset: system store"),
    CFG_STR(relay, cert_file, NULL, 0, NULL,
            "client certificate (PEM) for the relay; needs key_file"),
    CFG_STR(relay, key_file, NULL, 0, NULL, "private key (PEM) of cert_file"),
    CFG_BOOL_(relay, insecure_skip_verify, "false",
              "do not verify the relay's certificate (tests only)"),
    CFG_STR(relay, helo_name, NULL, 0, cfg_check_hostname,
            "name sent in EHLO; unset: the machine's fully qualified name, "
            "or the address literal of the connection when it has none"),
    CFG_STR(relay, auth_user, NULL, 0, NULL, "SMTP AUTH user; unset: no AUTH"),
    CFG_STR(relay, auth_pass, NULL, CFG_SECRET | CFG_NO_FLAG, NULL,
            "SMTP AUTH password or XOAUTH2 token (secret; environment or "
            "file only: no flag)"),
    CFG_STR(relay, auth_pass_file, NULL, 0, NULL,
            "file whose one line is auth_pass, read at start; readable by "
            "its owner only"),
    CFG_ENUM_(relay, auth_mech, NULL, 0, cfg_mech_choices,
              "PLAIN, LOGIN or XOAUTH2; unset: chosen from what the relay "
              "offers"),
    CFG_BOOL_(relay, auth_allow_plaintext, "false",
              "allow AUTH over a connection without TLS"),
    CFG_BOOL_(relay, pipelining, "true",
              "use PIPELINING when the relay offers it"),
    CFG_INT_(relay, connect_timeout, "30", 1, DAY,
             "seconds to connect to the relay"),
    CFG_INT_(relay, command_timeout, "300", 1, DAY,
             "seconds to wait for the reply to a command"),
    CFG_INT_(relay, data_timeout, "600", 1, DAY,
             "seconds to wait for the reply after the final dot"),

    CFG_STR(http, listen, "127.0.0.1:8025", CFG_REQUIRED, cfg_check_listen,
            "HOST:PORT to serve HTTP on (IPv4, localhost or [IPv6]; "
            ":PORT or *:PORT for every IPv4 interface; port 0: any free port)"),
    CFG_SIZE_(http, max_body, "10485760", 1, 1LL << 30,
              "largest request body in bytes (suffix k, m or g)"),
    CFG_SIZE_(http, max_inflight, "268435456", 1, 1LL << 40,
              "most request body bytes held at once (being read, or waiting "
              "for their messages); past it a POST gets 503 (at least "
              "max_body is always allowed)"),
    CFG_INT_(http, max_batch, "1000", 1, 1000000,
             "most messages in one batch request"),
    CFG_INT_(http, max_recipients, "100", 1, 100000,
             "most recipients of one message"),
    CFG_INT_(http, max_attachments, "100", 0, 10000,
             "most attachments (and inline parts) of one composed message; "
             "0: no limit"),
    CFG_STR(http, api_keys, NULL, CFG_SECRET | CFG_NO_FLAG, cfg_check_api_keys,
            "comma-separated bearer keys (secret; environment or file "
            "only: no flag)"),
    CFG_STR(http, api_keys_file, NULL, 0, NULL,
            "file whose one line is api_keys, read at start; readable by "
            "its owner only"),
    CFG_INT_(http, threads, "2", 1, 1024, "HTTP server threads"),
    CFG_INT_(http, connection_timeout, "60", 1, DAY,
             "seconds an idle HTTP client connection is kept"),
    CFG_STR(http, tls_cert_file, NULL, 0, NULL,
            "certificate chain (PEM) for HTTPS on http.listen; needs "
            "tls_key_file; unset: plain HTTP"),
    CFG_STR(http, tls_key_file, NULL, 0, NULL,
            "private key (PEM) of http.tls_cert_file"),
    CFG_INT_(http, shutdown_delay, "0", 0, 3600,
             "seconds between SIGTERM and the drain: /readyz answers 503 at "
             "once while new work is still accepted, so a load balancer "
             "stops sending first"),
    CFG_BOOL_(http, ready_requires_relay, "true",
              "/readyz is 503 while the relay cannot be reached; false: "
              "ready whenever the service takes work"),
    CFG_INT_(http, header_timeout, "10", 1, DAY,
             "seconds a new connection may stay silent before its first "
             "request head is in; then it is closed (a kept-alive "
             "connection waits http.connection_timeout)"),
    CFG_INT_(http, body_timeout, "10", 1, DAY,
             "seconds a request body may take before http.min_body_rate "
             "applies to it"),
    CFG_INT_(http, min_body_rate, "1024", 0, 1 << 30,
             "bytes per second a request body must average once it took "
             "http.body_timeout; slower, the connection is closed; 0: no "
             "minimum"),
    CFG_INT_(http, max_connections, "1000", 1, 1000000,
             "most HTTP connections open at once; past it new ones are "
             "closed at once (RLIMIT_NOFILE is raised to fit when allowed)"),
    CFG_INT_(http, send_deadline, "60", 0, DAY,
             "seconds a synchronous send may wait for a worker; one not "
             "started by then is not sent and answered 503 with "
             "Retry-After; 0: no deadline"),
    CFG_INT_(http, max_connections_per_ip, "0", 0, 1000000,
             "most HTTP connections open at once from one client address; "
             "past it new ones are closed at once; 0: no limit (behind a "
             "proxy every client has the proxy's address)"),

    CFG_INT_(pool, workers, "8", 1, 1024, "worker threads sending mail"),
    CFG_INT_(pool, queue, "1024", 1, 1000000, "most jobs waiting in the queue"),
    CFG_INT_(pool, connections, "8", 1, 1024,
             "most SMTP connections open to the relay"),
    CFG_INT_(pool, messages_per_conn, "1000", 1, 1000000,
             "messages sent over one SMTP connection before it is renewed"),
    CFG_INT_(pool, idle_timeout, "30", 1, DAY,
             "seconds an idle SMTP connection is kept open"),
    CFG_INT_(pool, retries, "3", 0, 100, "retries of a temporary failure"),
    CFG_INT_(pool, retry_backoff_ms, "200", 0, 3600000,
             "milliseconds before the first retry, doubled each time"),
    CFG_DOUBLE_(pool, rate, "0", 0, 1000000,
                "messages per second across the pool; 0: no limit"),
    CFG_INT_(pool, drain_timeout, "30", 1, DAY,
             "seconds to finish queued work when shutting down"),

    CFG_STR(queue, path, "mailpool-queue.db", CFG_REQUIRED, NULL,
            "the SQLite file of the durable queue (asynchronous sends)"),
    CFG_ENUM_(queue, synchronous, "full", CFG_REQUIRED, cfg_sync_choices,
              "full (a 202 means on disk) or normal (faster; the last "
              "commits may be lost with the machine, never corrupted)"),
    CFG_INT_(queue, high_water, "100000", 1, 1000000000,
             "messages waiting in the queue before new ones get 503"),
    CFG_DOUBLE_(queue, retry_base, "30", 0.001, DAY,
                "seconds before the first retry of a temporary failure, "
                "doubled each time, with jitter"),
    CFG_DOUBLE_(queue, retry_max, "3600", 0.001, 7 * DAY,
                "longest wait in seconds between two attempts"),
    CFG_INT_(queue, max_attempts, "10", 1, 1000,
             "attempts before a temporary failure becomes failed"),
    CFG_DOUBLE_(queue, max_age, "259200", 1, 30 * DAY,
                "seconds from acceptance after which a message that keeps "
                "failing temporarily is failed"),
    CFG_DOUBLE_(queue, max_schedule, "259200", 1, 365 * DAY,
                "how far ahead send_at may be, in seconds"),
    CFG_DOUBLE_(queue, idempotency_ttl, "86400", 1, 30 * DAY,
                "seconds an Idempotency-Key and its answer are kept"),
    CFG_DOUBLE_(queue, retention, "604800", 1, 365 * DAY,
                "seconds finished messages and their attempts are kept"),
    CFG_ENUM_(queue, backend, "sqlite", CFG_REQUIRED, cfg_backend_choices,
              "sqlite (one file, queue.path) or postgres (a database that "
              "replicas share, queue.url)"),
    CFG_STR(queue, url, NULL, CFG_SECRET, cfg_check_pg_url,
            "postgres: a libpq connection string or URI, without the "
            "password (queue.password_file or PGPASSFILE); redacted in "
            "case one slipped in"),
    CFG_STR(queue, password_file, NULL, 0, NULL,
            "postgres: file whose first line is the database password, "
            "read at start; readable by its owner only"),
    CFG_DOUBLE_(queue, lease, "60", 1, DAY,
                "seconds a sending message's lease lasts; renewed every "
                "third of it while its replica lives, then the message "
                "is unknown"),
    CFG_BOOL_(queue, log_sync, "true",
              "keep each synchronous send in the message log (GET "
              "/v1/messages, /ui/) as a finished message; false for load "
              "tests"),

    CFG_STR(message, id_domain, NULL, 0, cfg_check_hostname,
            "domain of the Message-ID of composed messages; unset: the "
            "domain of their from address"),

    CFG_ENUM_(log, level, "info", CFG_REQUIRED, cfg_level_choices,
              "debug, info, warn or error"),

    CFG_STR(dkim, domain, NULL, 0, cfg_dkim_check_name,
            "DKIM signing domain (d=); more domains in [dkim.DOMAIN] "
            "sections; unset: no signing"),
    CFG_STR(dkim, selector, NULL, 0, cfg_dkim_check_name,
            "selector (s=) of the rsa-sha256 signature"),
    CFG_STR(dkim, key_file, NULL, 0, NULL,
            "RSA private key (PEM, 2048 bits or more) of dkim.selector, "
            "read at start"),
    CFG_STR(dkim, ed25519_selector, NULL, 0, cfg_dkim_check_name,
            "selector of a second, ed25519-sha256 signature (optional)"),
    CFG_STR(dkim, ed25519_key_file, NULL, 0, NULL,
            "Ed25519 private key (PEM) of dkim.ed25519_selector"),
    CFG_ENUM_(dkim, sign, "auto", CFG_REQUIRED, cfg_dkim_sign_choices,
              "auto (when the From domain is the DKIM domain or below it), "
              "always, or never"),
    CFG_INT_(dkim, expire, "0", 0, 365 * DAY,
             "seconds a signature stays valid (x=); 0: no expiry"),

    CFG_STR(webhook, url, NULL, 0, NULL,
            "http(s) URL every delivery event is POSTed to, signed as "
            "Standard Webhooks do; unset: no webhook, no events"),
    CFG_STR(webhook, secret_file, NULL, 0, NULL,
            "file whose first line is the signing secret (whsec_<base64>), "
            "read at start; must not be readable by group or others"),
    CFG_STR(webhook, events, NULL, 0, NULL,
            "comma-separated event types to send (message.sent, "
            "message.deferred, ...); unset: all"),
    CFG_INT_(webhook, timeout, "10", 1, 600,
             "seconds one POST of an event may take"),
    CFG_STR(webhook, retry_schedule, "5s,5m,30m,2h,5h,10h,10h", CFG_REQUIRED,
            NULL,
            "waits before each retry of an event not answered 2xx "
            "(ms, s, m or h; jitter added); past the last the event is "
            "failed"),
    CFG_BOOL_(webhook, tls_verify, "true",
              "verify the certificate of an https webhook.url"),
};

const size_t cfg_nkeys = sizeof cfg_keys / sizeof cfg_keys[0];

_Static_assert(sizeof cfg_keys / sizeof cfg_keys[0] <= CFG_MAX_KEYS,
               "raise CFG_MAX_KEYS in config/cfg_internal.h");

/* Writes a formatted sentence into err when there is room for one. */
void cfg_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* The row for [section] name, or NULL. */
const struct cfg_key *cfg_key_find(const char *section, const char *name)
{
    size_t i;

    for (i = 0; i < cfg_nkeys; i++) {
        if (strcmp(cfg_keys[i].section, section) == 0 &&
            strcmp(cfg_keys[i].name, name) == 0)
            return &cfg_keys[i];
    }
    return NULL;
}

/* "MAILPOOL_RELAY_AUTH_PASS" for relay.auth_pass. */
void cfg_key_env_name(const struct cfg_key *k, char *buf, size_t len)
{
    char *p;

    snprintf(buf, len, "MAILPOOL_%s_%s", k->section, k->name);
    for (p = buf; *p != '\0'; p++)
        *p = (char)toupper((unsigned char)*p);
}

/* "--relay-auth-pass" for relay.auth_pass. */
void cfg_key_flag_name(const struct cfg_key *k, char *buf, size_t len)
{
    char *p;

    snprintf(buf, len, "--%s-%s", k->section, k->name);
    for (p = buf; *p != '\0'; p++) {
        if (*p == '_')
            *p = '-';
    }
}

/* "from FILE:LINE", "from MAILPOOL_X_Y", "from --x-y" or "default". */
void cfg_origin_text(const struct cfg_origin *o, const struct cfg_key *k,
                     char *buf, size_t len)
{
    char name[96];

    switch (o->src) {
    case CFG_SRC_FILE:
        snprintf(buf, len, "from %s:%d", o->file, o->line);
        break;
    case CFG_SRC_ENV:
        cfg_key_env_name(k, name, sizeof name);
        snprintf(buf, len, "from %s", name);
        break;
    case CFG_SRC_FLAG:
        cfg_key_flag_name(k, name, sizeof name);
        snprintf(buf, len, "from %s", name);
        break;
    case CFG_SRC_OPTION: snprintf(buf, len, "from %s", o->file); break;
    case CFG_SRC_DEFAULT:
    default: snprintf(buf, len, "default"); break;
    }
}

/* The char * field of a CFG_STRING or CFG_ENUM key. */
char **cfg_str_field(struct cfg *cfg, const struct cfg_key *k)
{
    assert(k->type == CFG_STRING || k->type == CFG_ENUM);
    return (char **)(void *)((char *)cfg + k->offset);
}

/* Wipes and frees a string that may hold a secret; NULL is a no-op. */
void cfg_free_secret(char *s)
{
    if (s != NULL) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

/* Writes "must be one of a, b, c" for a NULL-terminated choices list. */
static void cfg_choices_text(const char *const *choices, char *buf, size_t len)
{
    size_t used, i;

    snprintf(buf, len, "must be one of");
    for (i = 0; choices[i] != NULL; i++) {
        used = strlen(buf);
        if (used + 1 >= len)
            return;
        snprintf(buf + used, len - used, "%s %s", i ? "," : "", choices[i]);
    }
}

/* Validates a string or enum value into why; *store gets what to keep
   (NULL for an empty optional value). */
static int cfg_check_string(const struct cfg_key *k, const char *value,
                            const char **store, char *why, size_t whylen)
{
    if (value[0] == '\0') {
        if (k->flags & CFG_REQUIRED) {
            snprintf(why, whylen, "must not be empty");
            return -1;
        }
        *store = NULL;
        return 0;
    }
    *store = value;
    if (k->type == CFG_ENUM) {
        if (cfg_parse_enum(value, k->choices, store) == 0)
            return 0;
        cfg_choices_text(k->choices, why, whylen);
        return -1;
    }
    if (cfg_check_line(value, why, whylen))
        return -1;
    return k->check ? k->check(value, why, whylen) : 0;
}

/* Parses a scalar value into its field, or words the reason into why. */
static int cfg_set_scalar(struct cfg *cfg, const struct cfg_key *k,
                          const char *value, char *why, size_t whylen)
{
    void *field = (char *)cfg + k->offset;
    char lo[32], hi[32];

    switch (k->type) {
    case CFG_INT:
        if (cfg_parse_int(value, k->min, k->max, field) == 0)
            return 0;
        snprintf(why, whylen, "must be an integer from %lld to %lld", k->min,
                 k->max);
        return -1;
    case CFG_BOOL:
        if (cfg_parse_bool(value, field) == 0)
            return 0;
        snprintf(why, whylen, "must be true/false, yes/no, on/off or 1/0");
        return -1;
    case CFG_DOUBLE:
        if (cfg_parse_double(value, k->dmin, k->dmax, field) == 0)
            return 0;
        snprintf(why, whylen, "must be a number from %.15g to %.15g", k->dmin,
                 k->dmax);
        return -1;
    case CFG_SIZE:
        if (cfg_parse_size(value, k->min, k->max, field) == 0)
            return 0;
        cfg_size_text(k->min, lo, sizeof lo);
        cfg_size_text(k->max, hi, sizeof hi);
        snprintf(why, whylen,
                 "must be a size in bytes from %s to %s "
                 "(optional suffix k, m or g)",
                 lo, hi);
        return -1;
    case CFG_STRING:
    case CFG_ENUM:
    default: assert(!"not a scalar key"); return -1;
    }
}

/* An enum key's choice as its index, where the key keeps it (see
   CFG_ENUM_PARSED_); choice is the canonical spelling cfg_parse_enum gave.
   Such keys are CFG_REQUIRED, never unset; a NULL choice changes
   nothing. */
static void cfg_store_index(struct cfg *cfg, const struct cfg_key *k,
                            const char *choice)
{
    _Static_assert(sizeof(enum cfg_tls) == sizeof(int), "int-sized enums");
    int index = 0;

    if (k->type != CFG_ENUM || k->index_offset == 0 || choice == NULL)
        return;
    for (int i = 0; k->choices[i] != NULL; i++)
        if (k->choices[i] == choice)
            index = i;
    memcpy((char *)cfg + k->index_offset, &index, sizeof index);
}

/* Parses value (text from origin o) into the field of key k, replacing the
   previous value.  On error the field is unchanged and err names the key,
   the origin and the reason (and the value, unless the key is secret). */
int cfg_set(struct cfg *cfg, const struct cfg_key *k, const char *value,
            const struct cfg_origin *o, char *err, size_t errlen)
{
    char why[192], where[320], canon[96];
    const char *store;
    char *copy = NULL, **field;
    int rc;

    why[0] = '\0';
    if (k->type == CFG_STRING || k->type == CFG_ENUM) {
        const char *v = k->check == cfg_check_listen
                            ? cfg_listen_canonical(value, canon, sizeof canon)
                            : value;
        rc = cfg_check_string(k, v, &store, why, sizeof why);
        if (rc == 0 && store != NULL && (copy = strdup(store)) == NULL) {
            snprintf(why, sizeof why, "out of memory");
            rc = -1;
        }
        if (rc == 0) {
            field = cfg_str_field(cfg, k);
            cfg_free_secret(*field);
            *field = copy;
            cfg_store_index(cfg, k, store);
            if (k->offset == CFG_OFF(http.listen) && copy != NULL)
                cfg_listen_parse(copy, &cfg->http.listen_addr);
        }
    } else {
        rc = cfg_set_scalar(cfg, k, value, why, sizeof why);
    }
    if (rc == 0)
        return 0;
    cfg_origin_text(o, k, where, sizeof where);
    if (k->flags & CFG_SECRET)
        cfg_err(err, errlen, "%s.%s (%s): %s", k->section, k->name, where, why);
    else
        cfg_err(err, errlen, "%s.%s (%s): %s, got '%.80s%s'", k->section,
                k->name, where, why, value, strlen(value) > 80 ? "..." : "");
    return -1;
}

/* Fills cfg with the defaults (cfg must be zeroed or freed before). */
int cfg_defaults(struct cfg *cfg, char *err, size_t errlen)
{
    const struct cfg_origin def = { CFG_SRC_DEFAULT, NULL, 0 };
    size_t i;

    assert(cfg != NULL);
    for (i = 0; i < cfg_nkeys; i++) {
        const struct cfg_key *k = &cfg_keys[i];

        if (k->def == NULL) {
            assert(k->type == CFG_STRING || k->type == CFG_ENUM);
            continue; /* zeroed: unset */
        }
        if (cfg_set(cfg, k, k->def, &def, err, errlen)) {
            cfg_free(cfg);
            return -1;
        }
    }
    return 0;
}

/* Releases every string (secrets wiped first) and zeroes cfg. */
void cfg_free(struct cfg *cfg)
{
    size_t i;

    if (cfg == NULL)
        return;
    for (i = 0; i < cfg_nkeys; i++) {
        if (cfg_keys[i].type == CFG_STRING || cfg_keys[i].type == CFG_ENUM)
            cfg_free_secret(*cfg_str_field(cfg, &cfg_keys[i]));
    }
    cfg_dkim_free(cfg);
    memset(cfg, 0, sizeof *cfg);
}

/* Writes the shortest "%.Ng" of v that reads back as v. */
static void cfg_double_text(double v, char *buf, size_t len)
{
    int prec;

    for (prec = 6; prec < 17; prec++) {
        snprintf(buf, len, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
    snprintf(buf, len, "%.17g", v);
}

/* Writes "name = value" for one key; secrets as "<redacted>". */
static void cfg_print_key(const struct cfg *cfg, const struct cfg_key *k,
                          FILE *out)
{
    const void *field = (const char *)cfg + k->offset;
    char buf[64];
    const char *s;

    switch (k->type) {
    case CFG_STRING:
    case CFG_ENUM:
        s = *(char *const *)field;
        if (s != NULL && (k->flags & CFG_SECRET)) {
            if (k->offset == CFG_OFF(relay.auth_pass) &&
                cfg->relay.auth_pass_file != NULL)
                fprintf(out, "; %s = <redacted> (read from auth_pass_file)\n",
                        k->name);
            else
                fprintf(out, "%s = <redacted>\n", k->name);
            return;
        }
        fprintf(out, "%s =%s%s\n", k->name, s ? " " : "", s ? s : "");
        return;
    case CFG_INT:
        fprintf(out, "%s = %d\n", k->name, *(const int *)field);
        return;
    case CFG_BOOL:
        fprintf(out, "%s = %s\n", k->name,
                *(const int *)field ? "true" : "false");
        return;
    case CFG_DOUBLE:
        cfg_double_text(*(const double *)field, buf, sizeof buf);
        fprintf(out, "%s = %s\n", k->name, buf);
        return;
    case CFG_SIZE:
        fprintf(out, "%s = %ld\n", k->name, *(const long *)field);
        return;
    default: assert(!"unknown key type");
    }
}

/* Writes the effective configuration as INI, one help comment per key,
   secrets as "<redacted>".  Returns 0, or -1 when writing failed. */
int cfg_print(const struct cfg *cfg, FILE *out)
{
    const char *section = NULL;
    size_t i;

    assert(cfg != NULL && out != NULL);
    fputs("; mailpool configuration (effective values)\n", out);
    for (i = 0; i < cfg_nkeys; i++) {
        const struct cfg_key *k = &cfg_keys[i];

        if (section == NULL || strcmp(section, k->section) != 0) {
            section = k->section;
            fprintf(out, "\n[%s]\n", section);
        }
        fprintf(out, "; %s\n", k->help);
        cfg_print_key(cfg, k, out);
    }
    cfg_dkim_print(cfg, out);
    return fflush(out) == 0 && !ferror(out) ? 0 : -1;
}

/* One key ("relay.tls") from another command's option, validated as
   cfg_load validates it. */
int cfg_set_option(struct cfg *cfg, const char *key, const char *option,
                   const char *value, char *err, size_t errlen)
{
    const struct cfg_origin o = { CFG_SRC_OPTION, option, 0 };
    const char *dot = strchr(key, '.');
    char section[32];
    const struct cfg_key *k = NULL;

    if (dot != NULL && (size_t)(dot - key) < sizeof section) {
        memcpy(section, key, (size_t)(dot - key));
        section[dot - key] = '\0';
        k = cfg_key_find(section, dot + 1);
    }
    if (k == NULL || (k->flags & CFG_NO_FLAG)) {
        cfg_err(err, errlen, "%s: not a key an option may set", key);
        return -1;
    }
    return cfg_set(cfg, k, value, &o, err, errlen);
}
