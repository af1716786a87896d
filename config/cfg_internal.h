/*
 * config/cfg_internal.h - private to config/: the key table and the helpers
 * that config.c (table, defaults, print), cfg_value.c (value parsers) and
 * cfg_load.c (file, environment, flags) share.  Other modules use
 * config/config.h only; tests may include this to walk the table.
 */
#ifndef MAILPOOL_CFG_INTERNAL_H
#define MAILPOOL_CFG_INTERNAL_H

#include <stddef.h>
#include "config/config.h"

enum cfg_type {
    CFG_STRING, /* char *, owned */
    CFG_ENUM,   /* char *, owned, one of choices (canonical spelling) */
    CFG_INT,    /* int in [min, max] */
    CFG_BOOL,   /* int 0/1 */
    CFG_DOUBLE, /* double in [min, max], finite */
    CFG_SIZE    /* long bytes in [min, max], suffix k/m/g allowed */
};

#define CFG_SECRET 0x1u   /* never printed, never echoed in an error */
#define CFG_REQUIRED 0x2u /* a string that may not be empty or unset */
#define CFG_NO_FLAG 0x4u  /* a secret: no --flag (it would show in ps) */

/* Extra check for a string value: 0, or -1 with a reason in why. */
typedef int (*cfg_check_fn)(const char *value, char *why, size_t whylen);

/* One configuration key: everything the loaders and cfg_print need. */
struct cfg_key {
    const char *section; /* "relay" */
    const char *name;    /* "auth_pass_file" */
    enum cfg_type type;
    size_t offset;              /* into struct cfg */
    const char *def;            /* default as text; NULL means unset */
    unsigned flags;             /* CFG_SECRET, CFG_REQUIRED */
    long long min, max;         /* CFG_INT, CFG_SIZE */
    const char *const *choices; /* CFG_ENUM: NULL-terminated */
    cfg_check_fn check;         /* CFG_STRING: optional */
    const char *help;           /* one line, printed by cfg_print */
    size_t index_offset;        /* CFG_ENUM: where the choice's index goes
                                   (an int-sized enum in struct cfg); 0:
                                   nowhere */
    double dmin, dmax;          /* CFG_DOUBLE (fractions kept: 0.001) */
};

/* Where a value came from, for error messages. */
enum cfg_src {
    CFG_SRC_DEFAULT,
    CFG_SRC_FILE,
    CFG_SRC_ENV,
    CFG_SRC_FLAG,
    CFG_SRC_OPTION /* another command's option: file names it */
};

struct cfg_origin {
    enum cfg_src src;
    const char *file; /* CFG_SRC_FILE: path, borrowed */
    int line;         /* CFG_SRC_FILE */
};

/* cfg_nkeys is at most this (checked in config.c), so per-key state can
   live in fixed arrays. */
#define CFG_MAX_KEYS 96

extern const struct cfg_key cfg_keys[];
extern const size_t cfg_nkeys;

/* config.c */
void cfg_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const struct cfg_key *cfg_key_find(const char *section, const char *name);
void cfg_key_env_name(const struct cfg_key *k, char *buf, size_t len);
void cfg_key_flag_name(const struct cfg_key *k, char *buf, size_t len);
void cfg_origin_text(const struct cfg_origin *o, const struct cfg_key *k,
                     char *buf, size_t len);
int cfg_set(struct cfg *cfg, const struct cfg_key *k, const char *value,
            const struct cfg_origin *o, char *err, size_t errlen);
char **cfg_str_field(struct cfg *cfg, const struct cfg_key *k);
void cfg_free_secret(char *s);

/* cfg_value.c: each returns 0, or -1 (the caller words the error). */
int cfg_parse_int(const char *s, long long min, long long max, int *out);
int cfg_parse_bool(const char *s, int *out);
int cfg_parse_double(const char *s, double min, double max, double *out);
int cfg_parse_size(const char *s, long long min, long long max, long *out);
int cfg_parse_enum(const char *s, const char *const *choices,
                   const char **canonical);
void cfg_size_text(long long n, char *buf, size_t len);
int cfg_check_listen(const char *value, char *why, size_t whylen);
const char *cfg_listen_canonical(const char *value, char *buf, size_t len);
/* A value cfg_check_listen accepted, parsed into *out. */
void cfg_listen_parse(const char *value, struct util_hostport *out);
int cfg_check_hostname(const char *value, char *why, size_t whylen);
int cfg_check_api_keys(const char *value, char *why, size_t whylen);
int cfg_check_line(const char *value, char *why, size_t whylen);
int cfg_check_pg_url(const char *value, char *why, size_t whylen);

/* cfg_dkim.c: the [dkim.DOMAIN] sections. */
extern const char *const cfg_dkim_sign_choices[];
int cfg_dkim_check_name(const char *value, char *why, size_t whylen);
int cfg_dkim_section_pair(struct cfg *cfg, const char *domain, const char *name,
                          const char *value, char *why, size_t whylen);
int cfg_dkim_check(const struct cfg *cfg, char *err, size_t errlen);
void cfg_dkim_free(struct cfg *cfg);
void cfg_dkim_print(const struct cfg *cfg, FILE *out);

#endif /* MAILPOOL_CFG_INTERNAL_H */
