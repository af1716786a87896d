/*
 * config/config.h - mailpool's configuration: one table of keys drives the
 * defaults, the INI file, the environment and the command-line flags.
 *
 * Precedence, lowest first: built-in defaults, the INI file (--config FILE or
 * MAILPOOL_CONFIG), environment MAILPOOL_<SECTION>_<KEY>, flags
 * --<section>-<key> VALUE (underscores in keys become dashes in flags).
 *
 * Errors: cfg_load returns -1 and writes a sentence naming the key (as
 * "section.key") and the reason into err.  Nothing is exited on.
 * Threads: a loaded struct cfg is read-only and may be shared freely.
 */
#ifndef MAILPOOL_CONFIG_H
#define MAILPOOL_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#include "util/hostport.h"

/* relay.tls parsed, in the order of its spellings: plain SMTP; STARTTLS
   when offered (RFC 3207); STARTTLS or fail; TLS from the first byte
   (RFC 8314 3.3). */
enum cfg_tls {
    CFG_TLS_NONE,
    CFG_TLS_OPPORTUNISTIC,
    CFG_TLS_REQUIRED,
    CFG_TLS_IMPLICIT
};

/* Every string is owned by the struct (freed by cfg_free); NULL when unset. */
struct cfg {
    struct {
        char *host;            /* relay.host, default "localhost" */
        int port;              /* relay.port, default 25 */
        char *tls;             /* none|opportunistic|required|implicit;
                                     default "opportunistic" */
        enum cfg_tls tls_mode; /* relay.tls parsed, set with it */
        char *ca_file;
        char *cert_file;
        char *key_file;
        int insecure_skip_verify; /* bool, default 0 */
        char *helo_name;          /* unset: server/fqdn.h decides */
        char *auth_user;
        char *auth_pass;          /* secret */
        char *auth_pass_file;     /* read at load time into auth_pass */
        char *auth_mech;          /* PLAIN|LOGIN|XOAUTH2 or unset */
        int auth_allow_plaintext; /* bool, default 0 */
        int pipelining;           /* bool, default 1 */
        int connect_timeout;      /* seconds, default 30 */
        int command_timeout;      /* seconds, default 300 */
        int data_timeout;         /* seconds, final dot to reply, default 600 */
    } relay;
    struct {
        char *listen;                     /* "127.0.0.1:8025" */
        struct util_hostport listen_addr; /* http.listen parsed, set with
                                             it: host (an address literal
                                             or "localhost"), port (0: any
                                             free port) */
        long max_body;                    /* bytes, default 10485760 */
        long max_inflight;        /* body bytes held at once, default 256m */
        int max_batch;            /* messages per batch, default 1000 */
        int max_recipients;       /* per message, default 100 */
        int max_attachments;      /* per composed message, default 100 */
        char *api_keys;           /* secret; comma-separated bearer keys */
        char *api_keys_file;      /* its one line is api_keys */
        int threads;              /* MHD thread pool size, default 2 */
        int connection_timeout;   /* seconds an idle HTTP client is kept, 60 */
        char *tls_cert_file;      /* PEM chain: HTTPS; unset: plain HTTP */
        char *tls_key_file;       /* PEM key of tls_cert_file */
        int shutdown_delay;       /* seconds not ready before the drain, 0 */
        int ready_requires_relay; /* bool, default 1 */
        int header_timeout;       /* seconds idle before a first request, 10 */
        int body_timeout;         /* seconds before min_body_rate applies, 10 */
        int min_body_rate;        /* bytes/s a body averages; 0: none; 1024 */
        int max_connections;      /* MHD connection limit, default 1000 */
        int max_connections_per_ip; /* per client address; 0: none (default) */
        int send_deadline;          /* seconds a sync send may wait; 0: none */
    } http;
    struct {
        int workers;           /* default 8 */
        int queue;             /* queued jobs at most, default 1024 */
        int connections;       /* SMTP connections at most, default 8 */
        int messages_per_conn; /* default 1000 */
        int idle_timeout;      /* seconds, default 30 */
        int retries;           /* default 3 */
        int retry_backoff_ms;  /* first backoff, doubled, default 200 */
        double rate;           /* messages/second across the pool; 0 off */
        int drain_timeout;     /* seconds, default 30 */
    } pool;
    struct {
        char *path;             /* the SQLite file of the durable queue,
                                     default "mailpool-queue.db" */
        char *synchronous;      /* full|normal, default "full" */
        int high_water;         /* messages waiting before 503, 100000 */
        double retry_base;      /* seconds before the first retry, 30 */
        double retry_max;       /* longest wait between retries, 3600 */
        int max_attempts;       /* attempts before failed, default 10 */
        double max_age;         /* seconds from acceptance to failed, 3 d */
        double max_schedule;    /* send_at at most this far ahead, 3 d */
        double idempotency_ttl; /* seconds a key is kept, 1 d */
        double retention;       /* seconds finished messages are kept, 7 d */
        char *backend;          /* sqlite|postgres, default "sqlite" */
        char *url;              /* postgres: libpq connection string */
        char *password_file;    /* postgres: the password's file */
        double lease;           /* seconds a sending lease lasts, 60 */
        int log_sync;           /* bool: synchronous sends in the
                                     message log, default 1 */
    } queue;
    struct {
        char *id_domain; /* Message-ID domain of composed
                                     messages; unset: the from domain */
    } message;
    struct {
        char *level; /* debug|info|warn|error, default "info" */
    } log;
    struct {
        char *domain;           /* d= of the default signing domain */
        char *selector;         /* s= of its rsa-sha256 signature */
        char *key_file;         /* its RSA private key (PEM), a path */
        char *ed25519_selector; /* s= of a second, ed25519-sha256 one */
        char *ed25519_key_file; /* its Ed25519 private key (PEM) */
        char *sign;             /* auto|always|never, default "auto" */
        int expire;             /* seconds from t= to x=; 0: no x= */
    } dkim;
    struct {
        char *url;            /* where events are POSTed; unset: no
                                     webhook (and no events written) */
        char *secret_file;    /* its signing secret, whsec_<base64> */
        char *events;         /* comma list of event types; unset:
                                     all */
        int timeout;          /* seconds per POST, default 10 */
        char *retry_schedule; /* waits between tries, default
                                     "5s,5m,30m,2h,5h,10h,10h" */
        int tls_verify;       /* bool, default 1 */
    } webhook;
    /* [dkim.DOMAIN] sections: one more signing domain each, in file
       order (config/cfg_dkim.c); owned. */
    struct cfg_dkim_domain *dkim_domains;
    size_t ndkim_domains;
    /* Set by cfg_load, not keys: the MAILPOOL_* variables ignored because
       they have the shape of Kubernetes service links, space-separated
       (as many as fit), and how many there were; for one warning line. */
    char warning[256];
    int env_ignored;
};

/* A signing domain of a [dkim.DOMAIN] section; the keys it does not set
   are [dkim]'s (sign, expire) or unset.  Strings owned. */
struct cfg_dkim_domain {
    char *domain;
    char *selector;
    char *key_file;
    char *ed25519_selector;
    char *ed25519_key_file;
    char *sign;
    int expire; /* -1: [dkim]'s */
};

/* Fills cfg with the defaults (cfg must be zeroed or freed before). */
int cfg_defaults(struct cfg *cfg, char *err, size_t errlen);

/*
 * Loads defaults, file, environment (envp, NULL-terminated "K=V"; NULL means
 * the process environment) and flags.  argv[0..argc) holds only the flags
 * (no program or subcommand name).  Flags cfg does not know are left for the
 * caller: their indexes are returned in rest[0..*nrest) when rest is non-NULL,
 * otherwise an unknown flag is an error.  Validates every value.
 * Returns 0, or -1 with err set ("relay.port: must be 1..65535, got 0").
 */
int cfg_load(struct cfg *cfg, int argc, char **argv, char **envp, int *rest,
             int *nrest, char *err, size_t errlen);

/* Releases every string and zeroes cfg. */
void cfg_free(struct cfg *cfg);

/* Writes the effective configuration as INI, secrets as "<redacted>". */
int cfg_print(const struct cfg *cfg, FILE *out);

/* 0 when the secret file at path may be read: a regular file no one but
   its owner can read or write (as ssh wants of a key), or, owned by root,
   readable by its group too (a mounted Kubernetes or Docker secret with
   fsGroup); else -1 with one sentence naming what (e.g. "relay.auth_pass_file")
   and the file in err.  The one check of every secret file mailpool
   reads. */
int cfg_secret_file_check(const char *what, const char *path, char *err,
                          size_t errlen);

/* Sets the key named "section.name" (e.g. "relay.tls") in cfg from the
   option of another command (e.g. "--tls" of mailpool send), checked as
   cfg_load checks it: the one rule of each key.  A secret no flag may set
   is refused.  0, or -1 with err ("relay.tls (from --tls): must be one
   of ..., got 'x'"). */
int cfg_set_option(struct cfg *cfg, const char *key, const char *option,
                   const char *value, char *err, size_t errlen);

#endif /* MAILPOOL_CONFIG_H */
