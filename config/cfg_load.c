/*
 * config/cfg_load.c - cfg_load: the defaults, then the INI file, then the
 * environment, then the flags, each overriding the one before; then
 * relay.auth_pass_file and http.api_keys_file are read (each refused when
 * others may read it: cfg_secret_file_check) and the keys are checked
 * against each other.  A secret key (CFG_NO_FLAG) given as a flag is an
 * error naming its variable and its _file key.
 *
 * Public function (config/config.h):
 *   cfg_load  argv holds flags only; rest, when non-NULL, must have room for
 *             argc indexes.  *cfg is written only on success; on error it is
 *             left as it was.
 *
 * The INI file is --config FILE / --config=FILE (anywhere in argv; the last
 * one wins) or else MAILPOOL_CONFIG.  It is parsed by libinih through a
 * reader that counts lines, so that every error names FILE:LINE; an unknown
 * key, a key given twice, a line inih cannot parse or one longer than inih's
 * line buffer is an error.  In the environment, MAILPOOL_<SECTION>_<KEY>
 * sets a key and any other MAILPOOL_<SECTION>_* with a known section is an
 * error (a typo would otherwise go unnoticed); other MAILPOOL_* names are
 * left alone.  A name shaped like the service links Kubernetes injects for
 * a Service named mailpool or mailpool-* (<SVC>_SERVICE_HOST,
 * <SVC>_SERVICE_PORT[_<NAME>], <SVC>_PORT, <SVC>_PORT_<N>_<PROTO>[_PROTO|
 * _PORT|_ADDR]) is ignored, even in a known section, and so is a real key
 * of that shape (MAILPOOL_RELAY_PORT) whose value is a link's
 * "tcp://ADDR:PORT"; the names ignored go into cfg->warning for one log
 * line.  A flag value is the rest of "--x=VALUE" or the next argument,
 * which must not start with "--".  An empty value unsets an optional string.
 *
 * Errors: -1 with a sentence naming section.key and the value's origin (see
 * config.c), or the file and line, or the flag.  Never prints or exits.
 * Threads: reentrant; reads the process environment only when envp is NULL.
 */
#include "config/cfg_internal.h"

#include <assert.h>
#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CFG_PASS_MAX 65536 /* bytes of relay.auth_pass_file */

/* State of one cfg_load call. */
struct cfg_loader {
    struct cfg cfg;                         /* being built */
    struct cfg_origin origin[CFG_MAX_KEYS]; /* where each value came from */
    const char *config_path;                /* --config or MAILPOOL_CONFIG */
    char *err;
    size_t errlen;
};

/* State of one INI file parse, the user pointer of the inih callbacks. */
struct cfg_ini {
    struct cfg_loader *L;
    FILE *fp;
    const char *path;
    int line;     /* of the line last read */
    int err_line; /* 0, or where err was set */
};

/* A human-readable errno text, without strerror's shared buffer. */
static const char *cfg_strerror(int errnum, char *buf, size_t len)
{
    return strerror_r(errnum, buf, len); /* GNU: returns the text */
}

/* "from FILE:LINE" (and so on) for the current value of key k. */
static void cfg_where(const struct cfg_loader *L, const struct cfg_key *k,
                      char *buf, size_t len)
{
    cfg_origin_text(&L->origin[k - cfg_keys], k, buf, len);
}

/* Sets key k from text value and records where it came from. */
static int cfg_apply(struct cfg_loader *L, const struct cfg_key *k,
                     const char *value, const struct cfg_origin *o)
{
    if (cfg_set(&L->cfg, k, value, o, L->err, L->errlen))
        return -1;
    L->origin[k - cfg_keys] = *o;
    return 0;
}

/* The row whose flag is "--" followed by name[0..len), or NULL. */
static const struct cfg_key *cfg_flag_find(const char *name, size_t len)
{
    char flag[96];
    size_t i;

    for (i = 0; i < cfg_nkeys; i++) {
        cfg_key_flag_name(&cfg_keys[i], flag, sizeof flag);
        if (strlen(flag + 2) == len && memcmp(flag + 2, name, len) == 0)
            return &cfg_keys[i];
    }
    return NULL;
}

/* An argument that is not ours: its index goes to rest, or it is an error. */
static int cfg_arg_rest(struct cfg_loader *L, char **argv, int i, int *rest,
                        int *n)
{
    const char *arg = argv[i];

    if (rest != NULL) {
        rest[(*n)++] = i;
        return 0;
    }
    if (arg[0] == '-' && arg[1] != '\0' && strcmp(arg, "--") != 0)
        cfg_err(L->err, L->errlen, "unknown flag %.*s", (int)strcspn(arg, "="),
                arg);
    else
        cfg_err(L->err, L->errlen, "unexpected argument '%.80s'", arg);
    return -1;
}

/* The error for a secret given as a flag: it names the replacements. */
static int cfg_no_secret_flag(struct cfg_loader *L, const struct cfg_key *k)
{
    char flag[96], env[96];
    cfg_key_flag_name(k, flag, sizeof flag);
    cfg_key_env_name(k, env, sizeof env);
    cfg_err(L->err, L->errlen,
            "flag %s would put a secret on the command "
            "line (visible in ps): set %s or %s.%s_file instead",
            flag, env, k->section, k->name);
    return -1;
}

/*
 * Walks the flags.  With apply 0: finds --config, fills rest and reports
 * unknown flags and missing values.  With apply 1: sets the config keys
 * (the walk has been checked by then).  "--" ends the flags: it and all
 * after it are rest.
 */
static int cfg_walk_flags(struct cfg_loader *L, int argc, char **argv,
                          int apply, int *rest, int *nrest)
{
    const struct cfg_origin flag = { CFG_SRC_FLAG, NULL, 0 };
    int i = 0, n = 0, ended = 0;

    while (i < argc) {
        const char *arg = argv[i], *name = "", *value;
        const struct cfg_key *k = NULL;
        size_t len = 0;
        int is_config = 0;

        assert(arg != NULL);
        ended = ended || strcmp(arg, "--") == 0;
        if (!ended && strncmp(arg, "--", 2) == 0) {
            name = arg + 2;
            len = strcspn(name, "=");
            is_config = len == 6 && strncmp(name, "config", 6) == 0;
            if (!is_config)
                k = cfg_flag_find(name, len);
        }
        if (!is_config && k == NULL) {
            if (!apply && cfg_arg_rest(L, argv, i, rest, &n))
                return -1;
            i++;
            continue;
        }
        if (name[len] == '=')
            value = name + len + 1;
        else if (i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0)
            value = argv[++i];
        else
            value = NULL;
        i++;
        if (value == NULL || (is_config && value[0] == '\0')) {
            cfg_err(L->err, L->errlen, "flag --%.*s needs a %s", (int)len, name,
                    is_config ? "file name" : "value");
            return -1;
        }
        if (!apply && k != NULL && (k->flags & CFG_NO_FLAG))
            return cfg_no_secret_flag(L, k);
        if (is_config)
            L->config_path = value;
        else if (apply && cfg_apply(L, k, value, &flag))
            return -1;
    }
    if (!apply && nrest != NULL)
        *nrest = n;
    return 0;
}

/* inih's reader: one line at a time, counting, refusing over-long lines. */
static char *cfg_ini_read(char *str, int num, void *stream)
{
    struct cfg_ini *ini = stream;
    size_t len;
    int c;

    if (ini->err_line != 0 || fgets(str, num, ini->fp) == NULL)
        return NULL; /* stop at the first error */
    ini->line++;
    len = strlen(str);
    if (len + 1 == (size_t)num && str[len - 1] != '\n' &&
        (c = fgetc(ini->fp)) != EOF) {
        ungetc(c, ini->fp);
        cfg_err(ini->L->err, ini->L->errlen,
                "%s:%d: line longer than %d "
                "characters",
                ini->path, ini->line, num - 2);
        ini->err_line = ini->line;
        return NULL;
    }
    return str;
}

/* 1 when some key lives in [section]. */
static int cfg_section_known(const char *section)
{
    size_t i;

    for (i = 0; i < cfg_nkeys; i++) {
        if (strcmp(cfg_keys[i].section, section) == 0)
            return 1;
    }
    return 0;
}

/* inih's handler: one "name = value" in [section]. */
static int cfg_ini_pair(void *user, const char *section, const char *name,
                        const char *value)
{
    struct cfg_ini *ini = user;
    struct cfg_loader *L = ini->L;
    const struct cfg_key *k = cfg_key_find(section, name);
    struct cfg_origin here = { CFG_SRC_FILE, ini->path, ini->line };
    const struct cfg_origin *prev;
    char why[200];

    if (k == NULL && strncmp(section, "dkim.", 5) == 0) {
        if (cfg_dkim_section_pair(&L->cfg, section + 5, name, value, why,
                                  sizeof why) == 0)
            return 1;
        cfg_err(L->err, L->errlen, "%s:%d: [%.80s] %.80s: %s", ini->path,
                ini->line, section, name, why);
        ini->err_line = ini->line;
        return 0;
    }
    if (k == NULL) {
        if (section[0] == '\0')
            cfg_err(L->err, L->errlen,
                    "%s:%d: unknown key '%.80s' (outside "
                    "any [section])",
                    ini->path, ini->line, name);
        else if (!cfg_section_known(section))
            cfg_err(L->err, L->errlen,
                    "%s:%d: unknown section [%.40s] "
                    "(key '%.80s')",
                    ini->path, ini->line, section, name);
        else
            cfg_err(L->err, L->errlen, "%s:%d: unknown key '%.40s.%.80s'",
                    ini->path, ini->line, section, name);
        ini->err_line = ini->line;
        return 0;
    }
    prev = &L->origin[k - cfg_keys];
    if (prev->src == CFG_SRC_FILE) {
        cfg_err(L->err, L->errlen,
                "%s:%d: %s.%s is set again (first on line "
                "%d)",
                ini->path, ini->line, k->section, k->name, prev->line);
        ini->err_line = ini->line;
        return 0;
    }
    if (cfg_apply(L, k, value, &here)) {
        ini->err_line = ini->line;
        return 0;
    }
    return 1;
}

/* Reads the INI file at L->config_path. */
static int cfg_load_file(struct cfg_loader *L)
{
    struct cfg_ini ini = { L, NULL, L->config_path, 0, 0 };
    char ebuf[128];
    int rc, read_errno;

    ini.fp = fopen(ini.path, "r");
    if (ini.fp == NULL) {
        cfg_err(L->err, L->errlen, "cannot read config file '%s': %s", ini.path,
                cfg_strerror(errno, ebuf, sizeof ebuf));
        return -1;
    }
    errno = 0;
    rc = ini_parse_stream(cfg_ini_read, &ini, cfg_ini_pair, &ini);
    read_errno = ferror(ini.fp) ? (errno ? errno : EIO) : 0;
    fclose(ini.fp);
    if (rc > 0 && (ini.err_line == 0 || rc < ini.err_line)) {
        cfg_err(L->err, L->errlen,
                "%s:%d: cannot parse this line (want "
                "'[section]' or 'key = value')",
                ini.path, rc);
        return -1;
    }
    if (ini.err_line != 0)
        return -1;
    if (read_errno != 0 || rc < 0) {
        cfg_err(L->err, L->errlen, "cannot read config file '%s': %s", ini.path,
                read_errno ? cfg_strerror(read_errno, ebuf, sizeof ebuf)
                           : "out of memory");
        return -1;
    }
    return 0;
}

/* The value of name in envp, or NULL. */
static const char *cfg_env_get(char **envp, const char *name)
{
    size_t len = strlen(name);

    for (; *envp != NULL; envp++) {
        if (strncmp(*envp, name, len) == 0 && (*envp)[len] == '=')
            return *envp + len + 1;
    }
    return NULL;
}

/* The row whose variable is entry[0..len), or NULL; *in_section set when
   the name starts with a known MAILPOOL_<SECTION>_. */
static const struct cfg_key *cfg_env_find(const char *entry, size_t len,
                                          int *in_section)
{
    char name[96];
    size_t i, plen;

    *in_section = 0;
    for (i = 0; i < cfg_nkeys; i++) {
        cfg_key_env_name(&cfg_keys[i], name, sizeof name);
        if (strlen(name) == len && memcmp(name, entry, len) == 0)
            return &cfg_keys[i];
        plen = strlen("MAILPOOL_") + strlen(cfg_keys[i].section) + 1;
        if (len > plen && memcmp(name, entry, plen) == 0)
            *in_section = 1;
    }
    return NULL;
}

/* 1 when s[0..len) is digits (at least one) only. */
static int cfg_all_digits(const char *s, size_t len)
{
    size_t i;

    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
    }
    return len > 0;
}

/* 1 when s[0..len) is one of Kubernetes' protocol names. */
static int cfg_is_proto(const char *s, size_t len)
{
    return (len == 3 &&
            (memcmp(s, "TCP", 3) == 0 || memcmp(s, "UDP", 3) == 0)) ||
           (len == 4 && memcmp(s, "SCTP", 4) == 0);
}

/* 1 when tail[0..len) (what follows "_PORT_") is <N>_<PROTO> or
   <N>_<PROTO>_PROTO|_PORT|_ADDR. */
static int cfg_link_port_tail(const char *tail, size_t len)
{
    const char *u = memchr(tail, '_', len);
    const char *v;
    size_t plen;

    if (u == NULL || !cfg_all_digits(tail, (size_t)(u - tail)))
        return 0;
    u++;
    len -= (size_t)(u - tail);
    v = memchr(u, '_', len);
    plen = v != NULL ? (size_t)(v - u) : len;
    if (!cfg_is_proto(u, plen))
        return 0;
    if (v == NULL)
        return 1;
    v++;
    len -= plen + 1;
    return (len == 5 && memcmp(v, "PROTO", 5) == 0) ||
           (len == 4 &&
            (memcmp(v, "PORT", 4) == 0 || memcmp(v, "ADDR", 4) == 0));
}

/* 1 when name[0..len) (a MAILPOOL_ name) has the shape of a Kubernetes
   service-link variable of a Service named mailpool or mailpool-*. */
static int cfg_env_is_service_link(const char *name, size_t len)
{
    static const char *const marks[] = { "_SERVICE_HOST", "_SERVICE_PORT",
                                         "_PORT" };
    size_t i, mlen;
    const char *p;

    /* The service's own part ends at the first of the marks that makes
       the rest a valid tail; "MAILPOOL" itself may be the whole service. */
    for (p = name + strlen("MAILPOOL"); p < name + len; p++) {
        if (*p != '_')
            continue;
        for (i = 0; i < sizeof marks / sizeof marks[0]; i++) {
            mlen = strlen(marks[i]);
            if ((size_t)(name + len - p) < mlen ||
                memcmp(p, marks[i], mlen) != 0)
                continue;
            const char *rest = p + mlen;
            size_t rlen = (size_t)(name + len - rest);
            if (rlen == 0)
                return 1; /* _SERVICE_HOST, _SERVICE_PORT, _PORT */
            if (rest[0] != '_' || i == 0)
                continue;
            if (i == 1)
                return 1; /* _SERVICE_PORT_<NAME> */
            if (cfg_link_port_tail(rest + 1, rlen - 1))
                return 1; /* _PORT_<N>_<PROTO>[...] */
        }
    }
    return 0;
}

/* 1 when value is a service link's "tcp://", "udp://" or "sctp://" URL. */
static int cfg_env_is_link_url(const char *value)
{
    return strncmp(value, "tcp://", 6) == 0 ||
           strncmp(value, "udp://", 6) == 0 ||
           strncmp(value, "sctp://", 7) == 0;
}

/* Records name[0..len) as ignored in cfg->warning (names past the room
   are counted only). */
static void cfg_env_ignore(struct cfg_loader *L, const char *name, size_t len)
{
    struct cfg *c = &L->cfg;
    size_t used = strlen(c->warning);
    int n;

    c->env_ignored++;
    if (used + len + 8 >= sizeof c->warning)
        return;
    n = snprintf(c->warning + used, sizeof c->warning - used, "%s%.*s",
                 used > 0 ? " " : "", (int)len, name);
    if (n < 0)
        c->warning[used] = '\0';
}

/* Applies every MAILPOOL_<SECTION>_<KEY> of envp (the first of duplicates,
   as getenv would). */
static int cfg_load_env(struct cfg_loader *L, char **envp)
{
    const struct cfg_origin env = { CFG_SRC_ENV, NULL, 0 };
    const struct cfg_key *k;
    const char *eq;
    int in_section;

    for (; *envp != NULL; envp++) {
        if (strncmp(*envp, "MAILPOOL_", 9) != 0 ||
            (eq = strchr(*envp, '=')) == NULL)
            continue;
        size_t nlen = (size_t)(eq - *envp);
        k = cfg_env_find(*envp, nlen, &in_section);
        if (cfg_env_is_service_link(*envp, nlen) &&
            (k == NULL || cfg_env_is_link_url(eq + 1))) {
            cfg_env_ignore(L, *envp, nlen);
            continue;
        }
        if (k == NULL && in_section) {
            cfg_err(L->err, L->errlen, "unknown environment variable %.*s",
                    (int)(eq - *envp), *envp);
            return -1;
        }
        if (k == NULL || L->origin[k - cfg_keys].src == CFG_SRC_ENV)
            continue;
        if (cfg_apply(L, k, eq + 1, &env))
            return -1;
    }
    return 0;
}

/* Reads all of path (at most CFG_PASS_MAX bytes) into a new string; NULL
   with errno set (EFBIG when larger). */
static char *cfg_slurp(const char *path, size_t *lenp)
{
    char *buf = malloc(CFG_PASS_MAX + 1);
    FILE *fp;
    size_t len;
    int bad, saved;

    if (buf == NULL)
        return NULL;
    if ((fp = fopen(path, "r")) == NULL) {
        free(buf);
        return NULL;
    }
    errno = 0;
    len = fread(buf, 1, CFG_PASS_MAX + 1, fp);
    bad = ferror(fp) || len > CFG_PASS_MAX;
    saved = ferror(fp) ? (errno ? errno : EIO) : EFBIG;
    fclose(fp);
    if (bad) {
        explicit_bzero(buf, CFG_PASS_MAX + 1);
        free(buf);
        errno = saved;
        return NULL;
    }
    buf[len] = '\0';
    *lenp = len;
    return buf;
}

/* What is wrong with the contents of a password file, or NULL. */
static const char *cfg_pass_problem(const char *buf, size_t len)
{
    if (len == 0)
        return "is empty";
    if (strlen(buf) != len)
        return "holds a NUL byte";
    if (strpbrk(buf, "\r\n") != NULL)
        return "must hold a single line";
    return NULL;
}

int cfg_secret_file_check(const char *what, const char *path, char *err,
                          size_t errlen)
{
    struct stat st;
    char ebuf[128];
    if (stat(path, &st) != 0) {
        cfg_err(err, errlen, "%s: cannot read '%s': %s", what, path,
                cfg_strerror(errno, ebuf, sizeof ebuf));
        return -1;
    }
    mode_t bad = S_IRWXO | S_IWGRP | S_IXGRP | (st.st_uid == 0 ? 0 : S_IRGRP);
    if (!S_ISREG(st.st_mode) || (st.st_mode & bad) != 0) {
        cfg_err(err, errlen,
                "%s: '%s' is %s (mode %04o): a secret file must "
                "be readable by its owner only (chmod 600), or owned by root "
                "and readable by its group",
                what, path,
                S_ISREG(st.st_mode) ? "open to others" : "not a regular file",
                (unsigned)(st.st_mode & 07777));
        return -1;
    }
    return 0;
}

/* The secret file of key section.file_key, if set, becomes section.key
   (which must not be set too); its mode is checked first. */
static int cfg_read_secret_file(struct cfg_loader *L, const char *section,
                                const char *key, const char *file_key)
{
    const struct cfg_key *kf = cfg_key_find(section, file_key);
    const struct cfg_key *kp = cfg_key_find(section, key);
    char **dst = (char **)((char *)&L->cfg + kp->offset);
    const char *path = *(char **)((char *)&L->cfg + kf->offset), *problem;
    char where[320], where2[320], what[400], ebuf[128], *buf;
    size_t len = 0;

    if (path == NULL)
        return 0;
    cfg_where(L, kf, where, sizeof where);
    snprintf(what, sizeof what, "%s.%s (%s)", section, file_key, where);
    if (*dst != NULL) {
        cfg_where(L, kp, where2, sizeof where2);
        cfg_err(L->err, L->errlen,
                "%s and %s.%s (%s) are both set; "
                "set one",
                what, section, key, where2);
        return -1;
    }
    if (cfg_secret_file_check(what, path, L->err, L->errlen) < 0)
        return -1;
    if ((buf = cfg_slurp(path, &len)) == NULL) {
        cfg_err(L->err, L->errlen, "%s: cannot read '%s': %s", what, path,
                errno == EFBIG ? "larger than 64 KiB"
                               : cfg_strerror(errno, ebuf, sizeof ebuf));
        return -1;
    }
    if (len > 0 && buf[len - 1] == '\n')
        buf[--len] = '\0';
    if (len > 0 && buf[len - 1] == '\r')
        buf[--len] = '\0';
    if ((problem = cfg_pass_problem(buf, len)) != NULL) {
        cfg_err(L->err, L->errlen, "%s: '%s' %s", what, path, problem);
        cfg_free_secret(buf);
        return -1;
    }
    *dst = strdup(buf);
    cfg_free_secret(buf);
    if (*dst == NULL) {
        cfg_err(L->err, L->errlen, "%s: out of memory", what);
        return -1;
    }
    L->origin[kp - cfg_keys] = L->origin[kf - cfg_keys];
    return 0;
}

/* relay.auth_pass_file and http.api_keys_file, when set, are read (the
   api keys then checked as if set directly); queue.password_file, read
   by the PostgreSQL backend, has its mode checked. */
static int cfg_read_pass_files(struct cfg_loader *L)
{
    const struct cfg_key *kk = cfg_key_find("http", "api_keys");
    char why[256];
    if (cfg_read_secret_file(L, "relay", "auth_pass", "auth_pass_file") ||
        cfg_read_secret_file(L, "http", "api_keys", "api_keys_file"))
        return -1;
    if (L->cfg.queue.password_file != NULL) { /* read by the backend */
        const struct cfg_key *kq = cfg_key_find("queue", "password_file");
        char where[320], what[400];
        cfg_where(L, kq, where, sizeof where);
        snprintf(what, sizeof what, "queue.password_file (%s)", where);
        if (cfg_secret_file_check(what, L->cfg.queue.password_file, L->err,
                                  L->errlen) < 0)
            return -1;
    }
    if (L->cfg.http.api_keys_file != NULL &&
        kk->check(L->cfg.http.api_keys, why, sizeof why) < 0) {
        cfg_err(L->err, L->errlen, "http.api_keys_file ('%s'): %s",
                L->cfg.http.api_keys_file, why);
        return -1;
    }
    return 0;
}

/* Fails with "section.a (from X): needs b" when key a is set and b is
   not. */
static int cfg_needs_in(struct cfg_loader *L, const char *section,
                        const char *a, int a_set, int b_set, const char *b)
{
    char where[320];

    if (!a_set || b_set)
        return 0;
    cfg_where(L, cfg_key_find(section, a), where, sizeof where);
    cfg_err(L->err, L->errlen, "%s.%s (%s): needs %s as well", section, a,
            where, b);
    return -1;
}

/* cfg_needs_in for a key of [relay]. */
static int cfg_needs(struct cfg_loader *L, const char *a, int a_set, int b_set,
                     const char *b)
{
    return cfg_needs_in(L, "relay", a, a_set, b_set, b);
}

/* Checks of keys against each other, after every source is in. */
static int cfg_cross_check(struct cfg_loader *L)
{
    const struct cfg *c = &L->cfg;
    char where[320];

    if (cfg_needs(L, "cert_file", c->relay.cert_file != NULL,
                  c->relay.key_file != NULL, "relay.key_file") ||
        cfg_needs(L, "key_file", c->relay.key_file != NULL,
                  c->relay.cert_file != NULL, "relay.cert_file") ||
        cfg_needs(L, "auth_mech", c->relay.auth_mech != NULL,
                  c->relay.auth_user != NULL, "relay.auth_user") ||
        cfg_needs(L, "auth_user", c->relay.auth_user != NULL,
                  c->relay.auth_pass != NULL,
                  "relay.auth_pass or relay.auth_pass_file") ||
        cfg_needs(L, "auth_pass", c->relay.auth_pass != NULL,
                  c->relay.auth_user != NULL, "relay.auth_user") ||
        cfg_needs_in(L, "http", "tls_cert_file", c->http.tls_cert_file != NULL,
                     c->http.tls_key_file != NULL, "http.tls_key_file") ||
        cfg_needs_in(L, "http", "tls_key_file", c->http.tls_key_file != NULL,
                     c->http.tls_cert_file != NULL, "http.tls_cert_file"))
        return -1;
    if (c->relay.auth_user != NULL && c->relay.tls_mode == CFG_TLS_NONE &&
        !c->relay.auth_allow_plaintext) {
        cfg_where(L, cfg_key_find("relay", "auth_user"), where, sizeof where);
        cfg_err(L->err, L->errlen,
                "relay.auth_user (%s): with relay.tls=none "
                "the password would cross the network in clear; set "
                "relay.auth_allow_plaintext=true to allow that",
                where);
        return -1;
    }
    return 0;
}

/* Loads defaults, file, environment and flags into cfg; see config.h. */
int cfg_load(struct cfg *cfg, int argc, char **argv, char **envp, int *rest,
             int *nrest, char *err, size_t errlen)
{
    struct cfg_loader L;
    char *empty_env[] = { NULL };

    assert(cfg != NULL && argc >= 0 && (argc == 0 || argv != NULL));
    memset(&L, 0, sizeof L);
    L.err = err;
    L.errlen = errlen;
    if (envp == NULL)
        envp = environ != NULL ? environ : empty_env;
    if (nrest != NULL)
        *nrest = 0;
    if (cfg_defaults(&L.cfg, err, errlen) ||
        cfg_walk_flags(&L, argc, argv, 0, rest, nrest))
        goto fail;
    if (L.config_path == NULL) {
        L.config_path = cfg_env_get(envp, "MAILPOOL_CONFIG");
        if (L.config_path != NULL && L.config_path[0] == '\0')
            L.config_path = NULL;
    }
    if ((L.config_path != NULL && cfg_load_file(&L)) ||
        cfg_load_env(&L, envp) ||
        cfg_walk_flags(&L, argc, argv, 1, NULL, NULL) ||
        cfg_read_pass_files(&L) || cfg_cross_check(&L) ||
        cfg_dkim_check(&L.cfg, err, errlen))
        goto fail;
    *cfg = L.cfg;
    return 0;
fail:
    if (nrest != NULL)
        *nrest = 0;
    cfg_free(&L.cfg);
    return -1;
}
