/*
 * cmd/mailpool/client.c - the one-shot commands: send, verify, expand, help.
 *
 *   mailpool send --server HOST[:PORT] --from ADDR --to ADDR [--to ADDR ...]
 *                 [--header 'Name: value' ...] [--body-file FILE] [TLS/AUTH]
 *   mailpool send --json FILE [--server HOST[:PORT]] [--dry-run]
 *                 (the JSON of POST /v1/messages; --dry-run prints the
 *                 composed message's bytes instead of sending them)
 *   mailpool verify ADDR --server ...   mailpool help [TOPIC] --server ...
 *   mailpool expand LIST --server ...
 *
 * The options are parsed with getopt_long.  Each prints one JSON object
 * (result/result_json.h: the API's result shape) and exits 0 when
 * code < 400, 1 otherwise, 2 on a usage error.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <smtpcore/smtp.h>
#include "api/codec.h"
#include "cmd/mailpool/cmd.h"
#include "config/config.h"
#include "result/result_json.h"
#include "server/fqdn.h"
#include "server/pool.h"
#include "server/pool_sys.h"
#include "server/sign.h"

#define MAX_TO 1000
#define MAX_HEADERS 200
#define CLI_MAX_BODY ((size_t)1 << 30) /* a body read from a file or stdin */

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
    const char *json_file; /* send --json: the API's message JSON */
    int dry_run;           /* send --dry-run: print, do not send */
    const char *arg;       /* VRFY / EXPN / HELP argument */
    char *pass;            /* read from --auth-pass-file */
    char fqdn[256];        /* EHLO name without --helo */
    struct smtp_opts opts;
    struct cfg dkim;  /* only .dkim: --dkim-* (borrowed argv) */
    struct cfg relay; /* only the relay.* keys of the options (owned) */
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
        fprintf(stderr, "mailpool: --header wants 'Name: value', got '%s'\n",
                spec);
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

/* The long options of the client commands; val is an enum cli_opt. */
enum cli_opt {
    O_INSECURE = 256,
    O_PLAINTEXT,
    O_NO_PIPELINING,
    O_DRY_RUN,
    O_SERVER,
    O_FROM,
    O_TO,
    O_HEADER,
    O_BODY_FILE,
    O_JSON,
    O_HELO,
    O_CA_FILE,
    O_AUTH_USER,
    O_AUTH_MECH,
    O_AUTH_PASS_FILE,
    O_TIMEOUT,
    O_TLS,
    O_DKIM_DOMAIN,
    O_DKIM_SELECTOR,
    O_DKIM_KEY_FILE,
    O_DKIM_ED_SELECTOR,
    O_DKIM_ED_KEY_FILE,
    O_DKIM_SIGN,
    O_HELP,
};

static const struct option cli_options[] = {
    { "insecure-skip-verify", no_argument, NULL, O_INSECURE },
    { "auth-allow-plaintext", no_argument, NULL, O_PLAINTEXT },
    { "no-pipelining", no_argument, NULL, O_NO_PIPELINING },
    { "dry-run", no_argument, NULL, O_DRY_RUN },
    { "server", required_argument, NULL, O_SERVER },
    { "from", required_argument, NULL, O_FROM },
    { "to", required_argument, NULL, O_TO },
    { "header", required_argument, NULL, O_HEADER },
    { "body-file", required_argument, NULL, O_BODY_FILE },
    { "json", required_argument, NULL, O_JSON },
    { "helo", required_argument, NULL, O_HELO },
    { "ca-file", required_argument, NULL, O_CA_FILE },
    { "auth-user", required_argument, NULL, O_AUTH_USER },
    { "auth-mech", required_argument, NULL, O_AUTH_MECH },
    { "auth-pass-file", required_argument, NULL, O_AUTH_PASS_FILE },
    { "timeout", required_argument, NULL, O_TIMEOUT },
    { "tls", required_argument, NULL, O_TLS },
    { "dkim-domain", required_argument, NULL, O_DKIM_DOMAIN },
    { "dkim-selector", required_argument, NULL, O_DKIM_SELECTOR },
    { "dkim-key-file", required_argument, NULL, O_DKIM_KEY_FILE },
    { "dkim-ed25519-selector", required_argument, NULL, O_DKIM_ED_SELECTOR },
    { "dkim-ed25519-key-file", required_argument, NULL, O_DKIM_ED_KEY_FILE },
    { "help", no_argument, NULL, O_HELP },
    { "dkim-sign", required_argument, NULL, O_DKIM_SIGN },
    { NULL, 0, NULL, 0 },
};

/* A --dkim-* option (send): its slot in c->dkim, or NULL. */
static char **dkim_slot(struct cli *c, int opt)
{
    switch (opt) {
    case O_DKIM_DOMAIN: return &c->dkim.dkim.domain;
    case O_DKIM_SELECTOR: return &c->dkim.dkim.selector;
    case O_DKIM_KEY_FILE: return &c->dkim.dkim.key_file;
    case O_DKIM_ED_SELECTOR: return &c->dkim.dkim.ed25519_selector;
    case O_DKIM_ED_KEY_FILE: return &c->dkim.dkim.ed25519_key_file;
    case O_DKIM_SIGN: return &c->dkim.dkim.sign;
    default: return NULL;
    }
}

/* --auth-pass-file: the one secret file check, then the secret read. */
static int cli_pass_file(struct cli *c, const char *v)
{
    char perr[512];

    if (cfg_secret_file_check("--auth-pass-file", v, perr, sizeof perr) < 0) {
        fprintf(stderr, "mailpool: %s\n", perr);
        return -1;
    }
    free(c->pass);
    c->pass = read_secret(v);
    if (c->pass == NULL) {
        fprintf(stderr, "mailpool: cannot read --auth-pass-file %s: %s\n", v,
                strerror(errno));
        return -1;
    }
    c->opts.auth_pass = c->pass;
    return 0;
}

/* The options that set a relay.* key: checked by config/ as serve's
   --relay-* flags are (the one rule of each key), then lent to smtpcore. */
static const struct {
    int opt;
    const char *key;
} relay_keys[] = {
    { O_TLS, "relay.tls" },
    { O_HELO, "relay.helo_name" },
    { O_CA_FILE, "relay.ca_file" },
    { O_AUTH_USER, "relay.auth_user" },
    { O_AUTH_MECH, "relay.auth_mech" },
    { O_TIMEOUT, "relay.command_timeout" },
};

/* Lends the key opt set (in c->relay) to the library's options. */
static void relay_apply(struct cli *c, int opt)
{
    const struct cfg *r = &c->relay;
    int ms = r->relay.command_timeout * 1000;

    switch (opt) {
    case O_TLS: c->opts.tls = pool_smtp_tls(r->relay.tls_mode); break;
    case O_HELO: c->opts.helo_name = r->relay.helo_name; break;
    case O_CA_FILE: c->opts.ca_file = r->relay.ca_file; break;
    case O_AUTH_USER: c->opts.auth_user = r->relay.auth_user; break;
    case O_AUTH_MECH: c->opts.auth_mech = r->relay.auth_mech; break;
    default: /* --timeout SECONDS: every per-command timeout */
        c->opts.command_timeout_ms = c->opts.greeting_timeout_ms = ms;
        c->opts.data_init_timeout_ms = c->opts.data_block_timeout_ms = ms;
        c->opts.data_term_timeout_ms = c->opts.connect_timeout_ms = ms;
        break;
    }
}

/* An option that sets a relay.* key: 0, -1 on a bad value (said), 1 when
   opt is not one. */
static int relay_option(struct cli *c, int opt, const char *v)
{
    char flag[48], err[512];
    size_t i = 0, o = 0;

    while (i < sizeof relay_keys / sizeof relay_keys[0] &&
           relay_keys[i].opt != opt)
        i++;
    if (i == sizeof relay_keys / sizeof relay_keys[0])
        return 1;
    while (cli_options[o].val != opt)
        o++;
    snprintf(flag, sizeof flag, "--%s", cli_options[o].name);
    if (cfg_set_option(&c->relay, relay_keys[i].key, flag, v, err, sizeof err) <
        0) {
        fprintf(stderr, "mailpool: %s\n", err);
        return -1;
    }
    relay_apply(c, opt);
    return 0;
}

/* --to ADDR, at most MAX_TO of them. */
static int cli_to(struct cli *c, const char *v)
{
    if (c->nto >= MAX_TO) {
        fprintf(stderr, "mailpool: at most %d --to\n", MAX_TO);
        return -1;
    }
    c->to[c->nto++] = v;
    return 0;
}

/* The options whose value is kept as given (borrowed from argv). */
static const char **cli_string_slot(struct cli *c, int opt)
{
    switch (opt) {
    case O_SERVER: return &c->server;
    case O_FROM: return &c->from;
    case O_BODY_FILE: return &c->body_file;
    case O_JSON: return &c->json_file;
    default: return NULL;
    }
}

/* One option getopt_long returned; 0, or -1 on a usage error (said). */
static int cli_option(struct cli *c, int opt, char *v)
{
    const char **s = cli_string_slot(c, opt);
    char **d = dkim_slot(c, opt);
    int rc = relay_option(c, opt, v);

    if (rc <= 0)
        return rc;
    if (s != NULL || d != NULL) {
        if (s != NULL)
            *s = v;
        else
            *d = v;
        return 0;
    }
    switch (opt) {
    case O_INSECURE: c->opts.insecure_skip_verify = 1; return 0;
    case O_PLAINTEXT: c->opts.auth_allow_plaintext = 1; return 0;
    case O_NO_PIPELINING: c->opts.no_pipelining = 1; return 0;
    case O_DRY_RUN: c->dry_run = 1; return 0;
    case O_TO: return cli_to(c, v);
    case O_HEADER: return add_header(c, v);
    case O_AUTH_PASS_FILE: return cli_pass_file(c, v);
    default: return -1;
    }
}

/* getopt_long's complaint, in the command's words. */
static void cli_getopt_error(int opt, char **argv)
{
    const char *a = argv[optind - 1];

    if (opt == ':')
        fprintf(stderr, "mailpool: %s needs a value\n", a);
    else
        fprintf(stderr, "mailpool: unknown option %s\n", a);
}

/* Parses the client options (argv[0] is the command's name); 0, 1 when
   --help or -h asks for the usage, or -1 on a usage error (already
   said). */
static int parse_cli(struct cli *c, int argc, char **argv)
{
    int opt;

    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, ":h", cli_options, NULL)) != -1) {
        if (opt == O_HELP || opt == 'h')
            return 1;
        if (opt == '?' || opt == ':') {
            cli_getopt_error(opt, argv);
            return -1;
        }
        if (cli_option(c, opt, optarg) < 0)
            return -1;
    }
    for (; optind < argc; optind++) {
        if (c->arg != NULL) {
            fprintf(stderr, "mailpool: unexpected argument '%s'\n",
                    argv[optind]);
            return -1;
        }
        c->arg = argv[optind];
    }
    if (c->server == NULL && !c->dry_run) {
        fprintf(stderr, "mailpool: --server HOST[:PORT] is required\n");
        return -1;
    }
    if (c->opts.helo_name == NULL && fqdn_lookup(c->fqdn, sizeof c->fqdn))
        c->opts.helo_name = c->fqdn; /* else the address literal */
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
    json_t *j = result_json(res);
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

/* Frees what parsing the options took. */
static void cli_free(struct cli *c)
{
    cfg_free(&c->relay);
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
        fprintf(stderr,
                "mailpool: %s: malformed JSON at line %d, column "
                "%d: %s\n",
                file, e.line, e.column, e.text);
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
        snprintf(err, errlen,
                 "--dkim-domain needs --dkim-selector and "
                 "--dkim-key-file");
    else if ((dc->dkim.ed25519_selector == NULL) !=
             (dc->dkim.ed25519_key_file == NULL))
        snprintf(err, errlen,
                 "--dkim-ed25519-selector and "
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
        dc.dkim.sign = (char *)(uintptr_t) "auto";
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
        smtp_send_mail(m->from, m->to, m->nto, m->headers, m->nheaders, m->body,
                       c->server, &c->opts, m->sopts, res);
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
        fprintf(stderr,
                "mailpool send: --dry-run shows the composed form "
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
    api_result_message_id(&job->msg, res);
    job_free(job);
    return print_result(res);
}

/* The body of send: --body-file's, else standard input's.  0, or -1 on
   a usage error (said). */
static int send_body(const struct cli *c, char **text, size_t *len)
{
    int fd = 0;

    if (c->body_file != NULL &&
        (fd = open(c->body_file, O_RDONLY | O_CLOEXEC)) < 0) {
        fprintf(stderr, "mailpool: cannot open %s: %s\n", c->body_file,
                strerror(errno));
        return -1;
    }
    if (read_body(fd, text, len) < 0) {
        fprintf(stderr, "mailpool: cannot read the body%s%s: %s\n",
                c->body_file ? " from " : "", c->body_file ? c->body_file : "",
                errno == EFBIG ? "larger than 1 GiB" : strerror(errno));
        if (fd > 0)
            close(fd);
        return -1;
    }
    if (fd > 0)
        close(fd);
    return 0;
}

/* send with --from, --to, --header and the body: 0 with *res filled, -1
   on a usage error (said), 2 when the --dkim-* flags do not go together
   or a key does not load (said). */
static int send_flags(struct cli *c, struct smtp_result *res)
{
    char *text = NULL;
    size_t len = 0;

    if (c->from == NULL || c->nto == 0 || c->arg != NULL) {
        fprintf(stderr, "mailpool send: --from and at least one --to are "
                        "required\n");
        return -1;
    }
    if (send_body(c, &text, &len) < 0)
        return -1;
    if (c->dkim.dkim.domain != NULL)
        return send_signed(c, text, len, res);
    struct smtp_body body = { .text = text, .len = len };
    smtp_send_mail(c->from, c->to, c->nto, c->headers, c->nheaders, &body,
                   c->server, &c->opts, NULL, res);
    free(text);
    return 0;
}

/* verify, expand or help: 0 with *res filled, -1 on a usage error. */
static int query(const char *cmd, const struct cli *c, struct smtp_result *res)
{
    if (strcmp(cmd, "help") == 0) {
        smtp_get_help(c->server, c->arg, &c->opts, res);
        return 0;
    }
    if (c->arg == NULL) {
        fprintf(stderr, "mailpool %s: which %s?\n", cmd,
                cmd[0] == 'v' ? "address" : "list");
        return -1;
    }
    if (cmd[0] == 'v')
        smtp_verify(c->arg, c->server, &c->opts, res);
    else
        smtp_expand(c->arg, c->server, &c->opts, res);
    return 0;
}

/* The command run: its exit code, or -1 on a usage error (said). */
static int client_run(const char *cmd, struct cli *c, struct smtp_result *res)
{
    int rc;

    if (strcmp(cmd, "send") == 0 && c->json_file != NULL)
        return send_json(c, res);
    if (c->dry_run || c->json_file != NULL || c->server == NULL) {
        fprintf(stderr, "mailpool: --dry-run goes with send --json FILE\n");
        return -1;
    }
    rc = strcmp(cmd, "send") == 0 ? send_flags(c, res) : query(cmd, c, res);
    return rc != 0 ? rc : print_result(res);
}

/* send / verify / expand / help; argv[0] is the command's name. */
int cmd_client(const char *cmd, int argc, char **argv)
{
    struct cli c;
    struct smtp_result res;
    int rc = -1;

    memset(&c, 0, sizeof c);
    smtp_result_init(&res);
    int parsed = parse_cli(&c, argc, argv);
    if (parsed == 1) { /* --help: the usage is the answer */
        cmd_usage(stdout);
        rc = 0;
    } else if (parsed == 0) {
        rc = client_run(cmd, &c, &res);
    }
    if (rc < 0)
        cmd_usage(stderr);
    smtp_result_clear(&res);
    cli_free(&c);
    return rc < 0 ? 2 : rc;
}
