/*
 * main.c - the mailpool command: the one place that wires api to server.
 *
 *   mailpool serve [--config FILE] [--<section>-<key> VALUE ...] [--print-config]
 *   mailpool send --server HOST[:PORT] --from ADDR --to ADDR [--to ADDR ...]
 *                 [--header 'Name: value' ...] [--body-file FILE] [TLS/AUTH]
 *   mailpool send --json FILE [--server HOST[:PORT]] [--dry-run]
 *                 (the JSON of POST /v1/messages; --dry-run prints the
 *                 composed message's bytes instead of sending them)
 *   mailpool verify ADDR --server ...   mailpool expand LIST --server ...
 *   mailpool help [TOPIC] --server ...  mailpool healthcheck [--http-listen A]
 *   mailpool dkim-keygen --selector S --domain D --key-file F
 *
 * The one-shot commands print one JSON object (the API's result shape) and
 * exit 0 when code < 400, 1 otherwise, 2 on a usage error.  serve exits 0
 * after a SIGTERM/SIGINT drain, 2 on a bad configuration, 1 when it cannot
 * start.  Signals are taken with sigwait in the main thread: no handler,
 * no global flag; SIGHUP is logged (warn) and ignored.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <pthread.h>

#include <smtpcore/smtp.h>
#include "api/api.h"
#include "api/codec.h"
#include "config/config.h"
#include "dkim/dkim.h"
#include "queue/queue.h"
#include "server/delivery.h"
#include "server/fqdn.h"
#include "server/log.h"
#include "server/pool.h"
#include "server/pool_sys.h"
#include "server/sign.h"
#include "webhook/webhook.h"

#define MAX_TO 1000
#define MAX_HEADERS 200
#define CLI_MAX_BODY ((size_t)1 << 30)   /* a body read from a file or stdin */

static void usage(FILE *f)
{
    fputs("usage:\n"
          "  mailpool serve [--config FILE] [--relay-host H] [--relay-port P]\n"
          "                 [--http-listen ADDR:PORT] [--<section>-<key> V ...]\n"
          "                 [--print-config]\n"
          "  mailpool send --server HOST[:PORT] --from ADDR --to ADDR [--to ADDR ...]\n"
          "                [--header 'Name: value' ...] [--body-file FILE]\n"
          "  mailpool send --json FILE [--server HOST[:PORT]] [--dry-run]\n"
          "  mailpool verify ADDR --server HOST[:PORT]\n"
          "  mailpool expand LIST --server HOST[:PORT]\n"
          "  mailpool help [TOPIC] --server HOST[:PORT]\n"
          "  mailpool healthcheck [--http-listen ADDR:PORT]\n"
          "  mailpool dkim-keygen --selector S --domain D --key-file F\n"
          "client options: --tls none|opportunistic|required|implicit\n"
          "  --ca-file F --insecure-skip-verify --helo NAME (default: this\n"
          "  machine's fully qualified name, else its address literal)\n"
          "  --auth-user U --auth-pass-file F --auth-mech M --auth-allow-plaintext\n"
          "  --timeout SECONDS (per command)\n"
          "send signs with DKIM when given --dkim-domain D --dkim-selector S\n"
          "  --dkim-key-file F [--dkim-ed25519-selector S\n"
          "  --dkim-ed25519-key-file F] [--dkim-sign auto|always|never]\n", f);
}

/* Options of the one-shot client commands. */
struct cli {
    const char *server;
    const char *from;
    const char *to[MAX_TO];
    size_t nto;
    struct smtp_header headers[MAX_HEADERS];
    char *hbuf[MAX_HEADERS];
    size_t nheaders;
    const char *body_file;
    const char *json_file;       /* send --json: the API's message JSON */
    int dry_run;                 /* send --dry-run: print, do not send */
    const char *arg;             /* VRFY / EXPN / HELP argument */
    char *pass;                  /* read from --auth-pass-file */
    char fqdn[256];              /* EHLO name without --helo */
    struct smtp_opts opts;
    struct cfg dkim;             /* only .dkim: --dkim-* (borrowed argv) */
};

/* Reads a secret file (one trailing newline dropped); NULL on error. */
static char *read_secret(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    char *buf = calloc(1, 4096);
    size_t n = buf ? fread(buf, 1, 4095, f) : 0;
    fclose(f);
    if (buf == NULL)
        return NULL;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    return buf;
}

/* "Name: value" into a header entry. */
static int add_header(struct cli *c, const char *spec)
{
    const char *colon = strchr(spec, ':');
    if (colon == NULL || c->nheaders >= MAX_HEADERS) {
        fprintf(stderr, "mailpool: --header wants 'Name: value', got '%s'\n", spec);
        return -1;
    }
    char *copy = strdup(spec);
    if (copy == NULL)
        return -1;
    copy[colon - spec] = '\0';
    const char *v = copy + (colon - spec) + 1;
    while (*v == ' ')
        v++;
    c->hbuf[c->nheaders] = copy;
    c->headers[c->nheaders].name = copy;
    c->headers[c->nheaders].value = v;
    c->nheaders++;
    return 0;
}

/* Parses a seconds value into ms; -1 on garbage. */
static int parse_secs(const char *s)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < 1 || v > 86400)
        return -1;
    return (int)v * 1000;
}

/* A --dkim-* flag (send): its slot in c->dkim, or NULL. */
static char **dkim_flag(struct cli *c, const char *a)
{
    static const struct { const char *flag; size_t off; } t[] = {
        { "--dkim-domain", offsetof(struct cfg, dkim.domain) },
        { "--dkim-selector", offsetof(struct cfg, dkim.selector) },
        { "--dkim-key-file", offsetof(struct cfg, dkim.key_file) },
        { "--dkim-ed25519-selector", offsetof(struct cfg, dkim.ed25519_selector) },
        { "--dkim-ed25519-key-file", offsetof(struct cfg, dkim.ed25519_key_file) },
        { "--dkim-sign", offsetof(struct cfg, dkim.sign) },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (strcmp(a, t[i].flag) == 0)
            return (char **)(void *)((char *)&c->dkim + t[i].off);
    return NULL;
}

/* Parses the client flags; 0, or -1 on a usage error (already said). */
static int parse_cli(struct cli *c, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int takes = 1;
        if (strcmp(a, "--insecure-skip-verify") == 0) {
            c->opts.insecure_skip_verify = 1;
            takes = 0;
        } else if (strcmp(a, "--auth-allow-plaintext") == 0) {
            c->opts.auth_allow_plaintext = 1;
            takes = 0;
        } else if (strcmp(a, "--no-pipelining") == 0) {
            c->opts.no_pipelining = 1;
            takes = 0;
        } else if (strcmp(a, "--dry-run") == 0) {
            c->dry_run = 1;
            takes = 0;
        } else if (a[0] != '-' || a[1] != '-') {
            if (c->arg != NULL) {
                fprintf(stderr, "mailpool: unexpected argument '%s'\n", a);
                return -1;
            }
            c->arg = a;
            takes = 0;
        } else if (v == NULL) {
            fprintf(stderr, "mailpool: %s needs a value\n", a);
            return -1;
        } else if (dkim_flag(c, a) != NULL) {
            *dkim_flag(c, a) = argv[i + 1];
        } else if (strcmp(a, "--server") == 0) {
            c->server = v;
        } else if (strcmp(a, "--from") == 0) {
            c->from = v;
        } else if (strcmp(a, "--to") == 0) {
            if (c->nto >= MAX_TO) {
                fprintf(stderr, "mailpool: at most %d --to\n", MAX_TO);
                return -1;
            }
            c->to[c->nto++] = v;
        } else if (strcmp(a, "--header") == 0) {
            if (add_header(c, v) < 0)
                return -1;
        } else if (strcmp(a, "--body-file") == 0) {
            c->body_file = v;
        } else if (strcmp(a, "--json") == 0) {
            c->json_file = v;
        } else if (strcmp(a, "--helo") == 0) {
            c->opts.helo_name = v;
        } else if (strcmp(a, "--ca-file") == 0) {
            c->opts.ca_file = v;
        } else if (strcmp(a, "--auth-user") == 0) {
            c->opts.auth_user = v;
        } else if (strcmp(a, "--auth-mech") == 0) {
            c->opts.auth_mech = v;
        } else if (strcmp(a, "--auth-pass-file") == 0) {
            char perr[512];
            if (cfg_secret_file_check("--auth-pass-file", v, perr,
                                      sizeof perr) < 0) {
                fprintf(stderr, "mailpool: %s\n", perr);
                return -1;
            }
            c->pass = read_secret(v);
            if (c->pass == NULL) {
                fprintf(stderr, "mailpool: cannot read --auth-pass-file %s: %s\n",
                        v, strerror(errno));
                return -1;
            }
            c->opts.auth_pass = c->pass;
        } else if (strcmp(a, "--timeout") == 0) {
            int ms = parse_secs(v);
            if (ms < 0) {
                fprintf(stderr, "mailpool: --timeout wants seconds, got '%s'\n", v);
                return -1;
            }
            c->opts.command_timeout_ms = c->opts.greeting_timeout_ms = ms;
            c->opts.data_init_timeout_ms = c->opts.data_block_timeout_ms = ms;
            c->opts.data_term_timeout_ms = c->opts.connect_timeout_ms = ms;
        } else if (strcmp(a, "--tls") == 0) {
            static const char *const modes[] = { "none", "opportunistic",
                                                 "required", "implicit" };
            size_t m = 0;
            while (m < 4 && strcmp(v, modes[m]) != 0)
                m++;
            if (m == 4) {
                fprintf(stderr, "mailpool: --tls wants none|opportunistic|"
                                "required|implicit, got '%s'\n", v);
                return -1;
            }
            c->opts.tls = (enum smtp_tls_mode)m;
        } else {
            fprintf(stderr, "mailpool: unknown option %s\n", a);
            return -1;
        }
        i += takes;
    }
    if (c->server == NULL && !c->dry_run) {
        fprintf(stderr, "mailpool: --server HOST[:PORT] is required\n");
        return -1;
    }
    if (c->opts.helo_name == NULL && fqdn_lookup(c->fqdn, sizeof c->fqdn))
        c->opts.helo_name = c->fqdn;    /* else the address literal */
    return 0;
}

/* Reads all of fd (a regular file's size known from fstat, a pipe's
   as it comes) into *out, NUL-terminated; at most CLI_MAX_BODY bytes.
   The body is then lent to smtpcore as text, so SIZE=, the 8-bit and
   line checks and the 452 follow-up apply before anything is sent.
   0, or -1 with errno (EFBIG past the cap). */
static int read_body(int fd, char **out, size_t *len)
{
    struct stat st;
    size_t cap = 64 * 1024, n = 0;
    char *buf;

    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        if ((unsigned long long)st.st_size > CLI_MAX_BODY) {
            errno = EFBIG;
            return -1;
        }
        cap = (size_t)st.st_size + 1;
    }
    if ((buf = malloc(cap + 1)) == NULL)
        return -1;
    for (;;) {
        ssize_t r;

        if (n == cap) {
            char *more = cap >= CLI_MAX_BODY ? NULL : realloc(buf, 2 * cap + 1);

            if (more == NULL) {
                free(buf);
                errno = cap >= CLI_MAX_BODY ? EFBIG : ENOMEM;
                return -1;
            }
            buf = more;
            cap *= 2;
        }
        r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            free(buf);
            return -1;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

/* Prints the result object and returns the exit code. */
static int print_result(const struct smtp_result *res)
{
    json_t *j = api_result_json(res);
    if (j == NULL)
        return 1;
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (s == NULL)
        return 1;
    puts(s);
    free(s);
    return res->code > 0 && res->code < 400 && res->kind == SMTP_OK ? 0 : 1;
}

static void cli_free(struct cli *c)
{
    for (size_t i = 0; i < c->nheaders; i++)
        free(c->hbuf[i]);
    if (c->pass != NULL) {
        explicit_bzero(c->pass, strlen(c->pass));
        free(c->pass);
    }
}

/* The JSON of FILE with send_at and metadata (kept only by the queue)
   dropped; NULL when it cannot be read or parsed (said). */
static json_t *load_message_json(const char *file)
{
    json_error_t e;
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    char *text = NULL;
    size_t len = 0;
    json_t *root;
    if (fd < 0 || read_body(fd, &text, &len) < 0) {
        fprintf(stderr, "mailpool: cannot read %s: %s\n", file,
                strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    close(fd);
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &e);
    free(text);
    if (root == NULL) {
        fprintf(stderr, "mailpool: %s: malformed JSON at line %d, column "
                "%d: %s\n", file, e.line, e.column, e.text);
        return NULL;
    }
    json_object_del(root, "send_at");
    json_object_del(root, "metadata");
    return root;
}

/* The message of --json FILE as a job (composed by the API's decoder);
   NULL when it cannot be (the 422's errors printed on stdout). */
static struct job *json_job(const char *file)
{
    struct cfg cfg;
    char err[256];
    json_t *root = load_message_json(file), *errors = json_array();
    struct job *job = job_new(JOB_SEND);
    int rc = API_DECODE_NOMEM;
    memset(&cfg, 0, sizeof cfg);
    if (root != NULL && errors != NULL && job != NULL &&
        cfg_defaults(&cfg, err, sizeof err) == 0)
        rc = api_decode_message(root, &cfg, job, errors, "");
    if (rc == API_DECODE_INVALID) {
        char *s = json_dumps(errors, JSON_COMPACT);
        printf("{\"errors\":%s}\n", s != NULL ? s : "[]");
        free(s);
    } else if (rc == API_DECODE_NOMEM && root != NULL) {
        fprintf(stderr, "mailpool: out of memory\n");
    }
    cfg_free(&cfg);
    json_decref(root);
    json_decref(errors);
    if (rc != API_DECODE_OK) {
        job_free(job);
        return NULL;
    }
    return job;
}

/* Fills the job's message from the command line and the body (taken). */
static int send_job_fill(struct job *job, const struct cli *c, char *text,
                         size_t len)
{
    struct job_message *m = &job->msg;

    m->body = text;
    m->body_len = len;
    m->from = strdup(c->from);
    m->to = calloc(c->nto, sizeof *m->to);
    m->headers = calloc(c->nheaders + 1, sizeof *m->headers);
    if (m->from == NULL || m->to == NULL || m->headers == NULL)
        return -1;
    for (; m->nto < c->nto; m->nto++)
        if ((m->to[m->nto] = strdup(c->to[m->nto])) == NULL)
            return -1;
    for (; m->nheaders < c->nheaders; m->nheaders++)
        if (job_set_header(job, m->nheaders, c->headers[m->nheaders].name,
                           c->headers[m->nheaders].value) < 0)
            return -1;
    return 0;
}

/* The --dkim-* flags go together as the dkim.* keys do. */
static int send_dkim_check(const struct cfg *dc, char *err, size_t errlen)
{
    const char *sign = dc->dkim.sign;

    if (dc->dkim.selector == NULL || dc->dkim.key_file == NULL)
        snprintf(err, errlen, "--dkim-domain needs --dkim-selector and "
                 "--dkim-key-file");
    else if ((dc->dkim.ed25519_selector == NULL) !=
             (dc->dkim.ed25519_key_file == NULL))
        snprintf(err, errlen, "--dkim-ed25519-selector and "
                 "--dkim-ed25519-key-file go together");
    else if (strcmp(sign, "auto") && strcmp(sign, "always") &&
             strcmp(sign, "never"))
        snprintf(err, errlen, "--dkim-sign wants auto, always or never");
    else
        return 0;
    return -1;
}

/* Signs job with the --dkim-* flags as the service signs (server/sign.c).
   0; -1 when the flags do not go together or a key does not load (said
   on stderr: exit 2); -2 when signing failed (the sentence in err). */
static int send_job_sign(const struct cli *c, struct job *job, char *err,
                         size_t errlen)
{
    struct cfg dc = c->dkim;
    struct sign_set *set;
    int rc;

    if (dc.dkim.sign == NULL)
        dc.dkim.sign = (char *)(uintptr_t)"auto";
    if (send_dkim_check(&dc, err, errlen) < 0 ||
        (set = sign_set_new(&dc, err, errlen)) == NULL) {
        fprintf(stderr, "mailpool: %s\n", err);
        return -1;
    }
    rc = sign_message(set, &job->msg, time(NULL), err, errlen);
    sign_set_free(set);
    return rc < 0 ? -2 : 0;
}

/* send with --dkim-*: the message is signed as the service signs it,
   then sent.  2 when a key does not load or the flags do not go together
   (said on stderr); else 0 with *res filled. */
static int send_signed(const struct cli *c, char *text, size_t len,
                       struct smtp_result *res)
{
    char err[512];
    struct job *job = job_new(JOB_SEND);
    int rc = 0;

    if (job == NULL || send_job_fill(job, c, text, len) < 0) {
        if (job == NULL)
            free(text);
        pool_result_local(res, SMTP_DELIVERY_FAILED, "out of memory");
    } else if ((rc = send_job_sign(c, job, err, sizeof err)) == -2) {
        pool_result_local(res, SMTP_DELIVERY_FAILED, err);
    } else if (rc == 0) {
        const struct smtp_message *m = job_message(job);
        smtp_send_mail(m->from, m->to, m->nto, m->headers, m->nheaders,
                       m->body, c->server, &c->opts, m->sopts, res);
    }
    job_free(job);
    return rc == -1 ? 2 : 0;
}

/* send --json FILE [--dry-run] [--dkim-*]: the exit code, or -1 on a
   usage error (said).  With --dkim-* the message is signed first, so
   --dry-run shows the signed bytes. */
static int send_json(struct cli *c, struct smtp_result *res)
{
    char err[512];
    int rc;
    struct job *job;
    const struct smtp_message *m;
    if (c->from != NULL || c->nto > 0 || c->nheaders > 0 ||
        c->body_file != NULL || c->arg != NULL) {
        fprintf(stderr, "mailpool send: --json takes the whole message; no "
                "--from, --to, --header or --body-file beside it\n");
        return -1;
    }
    if ((job = json_job(c->json_file)) == NULL)
        return 2;
    if (c->dry_run && !job->msg.raw) {
        fprintf(stderr, "mailpool send: --dry-run shows the composed form "
                "(or raw); the envelope form's header fields are completed "
                "only when sent\n");
        job_free(job);
        return 2;
    }
    if (c->dkim.dkim.domain != NULL &&
        (rc = send_job_sign(c, job, err, sizeof err)) < 0) {
        if (rc == -2)
            fprintf(stderr, "mailpool: %s\n", err);
        job_free(job);
        return 2;
    }
    if (c->dry_run) {
        int ok = fwrite(job->msg.body, 1, job->msg.body_len, stdout) ==
                 job->msg.body_len;
        job_free(job);
        return ok && fflush(stdout) == 0 ? 0 : 1;
    }
    m = job_message(job);
    smtp_send_mail(m->from, m->to, m->nto, m->headers, m->nheaders, m->body,
                   c->server, &c->opts, m->sopts, res);
    job_free(job);
    return print_result(res);
}

/* send / verify / expand / help. */
static int cmd_client(const char *cmd, int argc, char **argv)
{
    struct cli c;
    struct smtp_result res;
    memset(&c, 0, sizeof c);
    smtp_result_init(&res);
    int rc = 2;
    if (parse_cli(&c, argc, argv) < 0)
        goto usage;
    if (strcmp(cmd, "send") == 0 && c.json_file != NULL) {
        rc = send_json(&c, &res);
        if (rc < 0)
            goto usage;
        smtp_result_clear(&res);
        cli_free(&c);
        return rc;
    }
    if (c.dry_run || c.json_file != NULL || c.server == NULL) {
        fprintf(stderr, "mailpool: --dry-run goes with send --json FILE\n");
        goto usage;
    }
    if (strcmp(cmd, "send") == 0) {
        if (c.from == NULL || c.nto == 0 || c.arg != NULL) {
            fprintf(stderr, "mailpool send: --from and at least one --to are "
                            "required\n");
            goto usage;
        }
        int fd = 0;
        char *text = NULL;
        size_t len = 0;
        if (c.body_file != NULL && (fd = open(c.body_file, O_RDONLY | O_CLOEXEC)) < 0) {
            fprintf(stderr, "mailpool: cannot open %s: %s\n", c.body_file,
                    strerror(errno));
            goto usage;
        }
        if (read_body(fd, &text, &len) < 0) {
            fprintf(stderr, "mailpool: cannot read the body%s%s: %s\n",
                    c.body_file ? " from " : "", c.body_file ? c.body_file : "",
                    errno == EFBIG ? "larger than 1 GiB" : strerror(errno));
            if (fd > 0)
                close(fd);
            goto usage;
        }
        if (fd > 0)
            close(fd);
        if (c.dkim.dkim.domain != NULL) {
            if (send_signed(&c, text, len, &res) == 2) {
                cli_free(&c);
                return 2;
            }
        } else {
            struct smtp_body body = { .text = text, .len = len };
            smtp_send_mail(c.from, c.to, c.nto, c.headers, c.nheaders, &body,
                           c.server, &c.opts, NULL, &res);
            free(text);
        }
    } else if (strcmp(cmd, "verify") == 0 || strcmp(cmd, "expand") == 0) {
        if (c.arg == NULL) {
            fprintf(stderr, "mailpool %s: which %s?\n", cmd,
                    cmd[0] == 'v' ? "address" : "list");
            goto usage;
        }
        if (cmd[0] == 'v')
            smtp_verify(c.arg, c.server, &c.opts, &res);
        else
            smtp_expand(c.arg, c.server, &c.opts, &res);
    } else {
        smtp_get_help(c.server, c.arg, &c.opts, &res);
    }
    rc = print_result(&res);
    smtp_result_clear(&res);
    cli_free(&c);
    return rc;
usage:
    usage(stderr);
    cli_free(&c);
    return 2;
}

/* SIGHUP (log rotation, a terminal gone) is logged and otherwise
   ignored: the log is standard error, which needs no reopening. */
static void log_sighup(void)
{
    log_event(LOG_WARN, "signal", "signal", "HUP", "action",
              "ignored: SIGTERM or SIGINT stops the service",
              (const char *)NULL);
}

/* Waits for SIGTERM or SIGINT, logging and ignoring each SIGHUP. */
static int wait_ending_signal(const sigset_t *sigs)
{
    int sig = 0;
    for (;;) {
        if (sigwait(sigs, &sig) != 0)
            continue;
        if (sig != SIGHUP)
            return sig;
        log_sighup();
    }
}

/* http.shutdown_delay: /readyz says 503 while work is still taken for
   seconds, or until a second signal (*sig is then that one). */
static void shutdown_delay(struct api *api, const sigset_t *sigs, int seconds,
                           int *sig)
{
    struct log_field f[] = {
        LOG_STR("signal", *sig == SIGTERM ? "TERM" : "INT"),
        LOG_NUM("shutdown_delay", seconds),
    };
    log_event_num(LOG_INFO, "stopping", f, sizeof f / sizeof f[0]);
    api_set_stopping(api);
    struct timespec end, now;
    clock_gettime(CLOCK_MONOTONIC, &end);
    end.tv_sec += seconds;
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long long ms = (long long)(end.tv_sec - now.tv_sec) * 1000 +
                       (end.tv_nsec - now.tv_nsec) / 1000000;
        if (ms <= 0)
            return;
        struct timespec wait = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000 };
        int s = sigtimedwait(sigs, NULL, &wait);
        if (s == SIGHUP) {
            log_sighup();
        } else if (s > 0) {
            *sig = s;
            return;
        }
    }
}

/* serve: config, pool, HTTP; waits for SIGTERM/SIGINT, then drains. */
static int cmd_serve(int argc, char **argv)
{
    struct cfg cfg;
    char err[512];
    int rest[64], nrest = 64, print = 0;
    memset(&cfg, 0, sizeof cfg);
    if (cfg_load(&cfg, argc, argv, NULL, rest, &nrest, err, sizeof err) < 0) {
        fprintf(stderr, "mailpool: %s\n", err);
        cfg_free(&cfg);
        return 2;
    }
    for (int i = 0; i < nrest; i++) {
        if (strcmp(argv[rest[i]], "--print-config") == 0) {
            print = 1;
        } else {
            fprintf(stderr, "mailpool serve: unknown option %s\n", argv[rest[i]]);
            usage(stderr);
            cfg_free(&cfg);
            return 2;
        }
    }
    if (print) {
        cfg_print(&cfg, stdout);
        cfg_free(&cfg);
        return 0;
    }
    log_set_level(cfg.log.level);
    if (cfg.env_ignored > 0) {
        struct log_field f[] = {
            LOG_STR("message", "ignored MAILPOOL_* variables shaped like "
                               "Kubernetes service links"),
            LOG_NUM("count", cfg.env_ignored), LOG_STR("names", cfg.warning),
        };
        log_event_num(LOG_WARN, "config", f, sizeof f / sizeof f[0]);
    }

    /* DKIM keys: a key that does not load stops the start (exit 2). */
    struct sign_set *signer = sign_set_new(&cfg, err, sizeof err);
    if (signer == NULL) {
        fprintf(stderr, "mailpool: %s\n", err);
        cfg_free(&cfg);
        return 2;
    }

    /* Every thread inherits this mask; only sigwait below takes them. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);       /* never ends the service */
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* The webhook: its keys and secret before the queue, whose outbox
       writes events only for the types it sends (none without it). */
    struct webhook *hook = NULL;
    if (cfg.webhook.url != NULL &&
        (hook = webhook_new(&cfg, err, sizeof err)) == NULL) {
        fprintf(stderr, "mailpool: %s\n", err);
        sign_set_free(signer);
        cfg_free(&cfg);
        return 2;
    }
    struct queue_opts qo = {
        .backend = cfg.queue.backend,
        .url = cfg.queue.url,
        .password_file = cfg.queue.password_file,
        .lease_s = cfg.queue.lease,
        .path = cfg.queue.path,
        .sync_normal = strcmp(cfg.queue.synchronous, "normal") == 0,
        .retention_s = cfg.queue.retention,
        .idem_ttl_s = cfg.queue.idempotency_ttl,
        .event_states = hook != NULL ? webhook_event_states(hook) : 0,
        .event_config = hook != NULL ? webhook_config_text(hook) : NULL,
    };
    struct queue *queue = NULL;
    if (queue_open(&qo, &queue, err, sizeof err) < 0) {
        fprintf(stderr, "mailpool: %s: %s\n",
                strcmp(cfg.queue.backend, "postgres") == 0 ? "queue.url"
                                                          : "queue.path", err);
        webhook_free(hook);
        sign_set_free(signer);
        cfg_free(&cfg);
        return 2;                   /* the operator must fix it */
    }
    if (queue_recovered(queue) > 0) {
        char n[24];
        snprintf(n, sizeof n, "%lu", queue_recovered(queue));
        log_event(LOG_WARN, "queue_recovered", "unknown", n, "reason",
                  "found sending at start: may have been delivered; not "
                  "resent", (const char *)NULL);
    }
    struct pool *pool = pool_new(&cfg, err, sizeof err);
    if (pool == NULL || (hook != NULL &&
                         webhook_start(hook, queue, err, sizeof err) < 0)) {
        fprintf(stderr, "mailpool: %s\n", err);
        pool_free(pool);
        webhook_free(hook);
        queue_close(queue);
        sign_set_free(signer);
        cfg_free(&cfg);
        return 1;
    }
    pool_set_signer(pool, signer);
    struct delivery *delivery = delivery_start(pool, queue, &cfg, err,
                                               sizeof err);
    struct api *api = delivery != NULL
                          ? api_start(&cfg, pool, queue, delivery, err,
                                      sizeof err)
                          : NULL;
    if (api == NULL) {
        fprintf(stderr, "mailpool: %s\n", err);
        delivery_stop(delivery);
        pool_drain(pool, 0);
        pool_free(pool);
        delivery_free(delivery);
        webhook_free(hook);
        queue_close(queue);
        sign_set_free(signer);
        cfg_free(&cfg);
        return 1;
    }
    api_set_webhook(api, hook);
    log_event_num(LOG_INFO, "listening", (struct log_field[]){
                      LOG_STR("listen", cfg.http.listen),
                      LOG_NUM("port", api_port(api)),
                      LOG_STR("relay", cfg.relay.host) }, 3);
    int sig = wait_ending_signal(&sigs);
    if (cfg.http.shutdown_delay > 0)
        shutdown_delay(api, &sigs, cfg.http.shutdown_delay, &sig);
    log_event(LOG_INFO, "draining", "signal", sig == SIGTERM ? "TERM" : "INT",
              "reason", sig == SIGTERM ? "SIGTERM received: stopping"
                                       : "SIGINT received: stopping",
              (const char *)NULL);
    api_set_draining(api, 1);
    delivery_stop(delivery);        /* no new claims; the rest stay queued */
    pool_drain(pool, cfg.pool.drain_timeout);
    api_stop(api);
    pool_free(pool);
    delivery_free(delivery);
    webhook_free(hook);             /* a POST under way is abandoned */
    queue_close(queue);
    sign_set_free(signer);
    log_event(LOG_INFO, "stopped", (const char *)NULL);
    cfg_free(&cfg);
    return 0;
}

/* healthcheck: GET /healthz on the configured listen address. */
static int cmd_healthcheck(int argc, char **argv)
{
    struct cfg cfg;
    char err[512];
    memset(&cfg, 0, sizeof cfg);
    if (cfg_load(&cfg, argc, argv, NULL, NULL, NULL, err, sizeof err) < 0) {
        fprintf(stderr, "mailpool: %s\n", err);
        cfg_free(&cfg);
        return 2;
    }
    int rc = api_healthcheck(&cfg) == 0 ? 0 : 1;
    cfg_free(&cfg);
    return rc;
}

/* dkim-keygen: the DNS TXT record that publishes a key's public half,
   as a zone-file line with strings of at most 255 octets. */
static int cmd_dkim_keygen(int argc, char **argv)
{
    const char *sel = NULL, *dom = NULL, *file = NULL;
    struct dkim_key *key = NULL;
    char err[512], *txt = NULL;

    for (int i = 0; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--selector") == 0)
            sel = argv[i + 1];
        else if (strcmp(argv[i], "--domain") == 0)
            dom = argv[i + 1];
        else if (strcmp(argv[i], "--key-file") == 0)
            file = argv[i + 1];
    }
    if (sel == NULL || dom == NULL || file == NULL || argc % 2 != 0) {
        fprintf(stderr, "usage: mailpool dkim-keygen --selector S --domain D "
                        "--key-file F\n");
        return 2;
    }
    if (dkim_key_load_file(file, &key, err, sizeof err) < 0 ||
        dkim_key_txt_record(key, &txt, err, sizeof err) < 0) {
        fprintf(stderr, "mailpool: %s\n", err);
        dkim_key_free(key);
        return 2;
    }
    printf("%s._domainkey.%s. IN TXT (", sel, dom);
    for (size_t off = 0, n = strlen(txt); off < n; off += 255)
        printf(" \"%.255s\"", txt + off);
    printf(" )\n");
    free(txt);
    dkim_key_free(key);
    return fflush(stdout) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 2, argv + 2);
    if (strcmp(cmd, "healthcheck") == 0)
        return cmd_healthcheck(argc - 2, argv + 2);
    if (strcmp(cmd, "dkim-keygen") == 0)
        return cmd_dkim_keygen(argc - 2, argv + 2);
    if (strcmp(cmd, "send") == 0 || strcmp(cmd, "verify") == 0 ||
        strcmp(cmd, "expand") == 0 || strcmp(cmd, "help") == 0)
        return cmd_client(cmd, argc - 2, argv + 2);
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "mailpool: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
