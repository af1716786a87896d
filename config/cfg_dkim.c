/*
 * config/cfg_dkim.c - the DKIM keys beyond the table: [dkim.DOMAIN]
 * sections (one more signing domain each), their checks, their printing.
 *
 * A section takes selector, key_file, ed25519_selector, ed25519_key_file,
 * sign and expire, as [dkim] does; sign and expire default to [dkim]'s.
 * Sections are read from the INI file only (no environment variable or
 * flag names a domain).  Key files are paths: their content is read by
 * the service at start, never here, so nothing secret passes through
 * the configuration.
 *
 * Internal (cfg_internal.h): cfg_dkim_section_pair, cfg_dkim_check,
 * cfg_dkim_free, cfg_dkim_print, cfg_dkim_check_name,
 * cfg_dkim_sign_choices.
 * Errors: -1 with a sentence (the caller adds the file and line).
 * Threads: no state of its own.
 */
#include "config/cfg_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

const char *const cfg_dkim_sign_choices[] = { "auto", "always", "never", NULL };

/* A domain or selector: dot-separated labels of letters, digits, '-'
   and '_'. */
int cfg_dkim_check_name(const char *value, char *why, size_t whylen)
{
    size_t label = 0;

    for (const char *p = value;; p++) {
        if (*p == '.' || *p == '\0') {
            if (label == 0) {
                snprintf(why, whylen, "must be dot-separated DNS labels");
                return -1;
            }
            if (*p == '\0')
                return 0;
            label = 0;
            continue;
        }
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9') || *p == '-' || *p == '_') ||
            ++label > 63) {
            snprintf(why, whylen,
                     "must be DNS labels (letters, digits, "
                     "'-', '_', at most 63 each)");
            return -1;
        }
    }
}

/* The entry of domain, added (zeroed, expire -1) when new; NULL when out
   of memory. */
static struct cfg_dkim_domain *dkim_entry(struct cfg *cfg, const char *domain)
{
    struct cfg_dkim_domain *v;

    for (size_t i = 0; i < cfg->ndkim_domains; i++)
        if (strcasecmp(cfg->dkim_domains[i].domain, domain) == 0)
            return &cfg->dkim_domains[i];
    v = realloc(cfg->dkim_domains, (cfg->ndkim_domains + 1) * sizeof *v);
    if (v == NULL)
        return NULL;
    cfg->dkim_domains = v;
    v = &v[cfg->ndkim_domains];
    memset(v, 0, sizeof *v);
    v->expire = -1;
    v->domain = strdup(domain);
    if (v->domain == NULL)
        return NULL;
    cfg->ndkim_domains++;
    return v;
}

/* Stores a copy of value in *slot (once). */
static int dkim_set(char **slot, const char *value, char *why, size_t whylen)
{
    if (*slot != NULL) {
        snprintf(why, whylen, "is set again");
        return -1;
    }
    *slot = strdup(value);
    if (*slot == NULL) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    return 0;
}

/* The string slot of a section key, or NULL. */
static char **dkim_slot(struct cfg_dkim_domain *d, const char *name)
{
    if (strcmp(name, "selector") == 0)
        return &d->selector;
    if (strcmp(name, "key_file") == 0)
        return &d->key_file;
    if (strcmp(name, "ed25519_selector") == 0)
        return &d->ed25519_selector;
    if (strcmp(name, "ed25519_key_file") == 0)
        return &d->ed25519_key_file;
    if (strcmp(name, "sign") == 0)
        return &d->sign;
    return NULL;
}

/* Checks the value of a section key; *store gets what to keep. */
static int dkim_value_check(const char *name, const char *value,
                            const char **store, char *why, size_t whylen)
{
    *store = value;
    if (value[0] == '\0') {
        snprintf(why, whylen, "must not be empty");
        return -1;
    }
    if (strcmp(name, "sign") == 0 &&
        cfg_parse_enum(value, cfg_dkim_sign_choices, store) != 0) {
        snprintf(why, whylen, "must be one of auto, always, never");
        return -1;
    }
    if (strstr(name, "selector") != NULL)
        return cfg_dkim_check_name(value, why, whylen);
    return 0;
}

/* One "name = value" of [dkim.DOMAIN]. */
int cfg_dkim_section_pair(struct cfg *cfg, const char *domain, const char *name,
                          const char *value, char *why, size_t whylen)
{
    struct cfg_dkim_domain *d;
    char **slot;
    int expire;

    if (cfg_dkim_check_name(domain, why, whylen) < 0)
        return -1;
    d = dkim_entry(cfg, domain);
    if (d == NULL) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    if (strcmp(name, "expire") == 0) {
        if (cfg_parse_int(value, 0, 365 * 86400, &expire) != 0) {
            snprintf(why, whylen, "must be seconds from 0 to 31536000");
            return -1;
        }
        d->expire = expire;
        return 0;
    }
    slot = dkim_slot(d, name);
    if (slot == NULL) {
        snprintf(why, whylen,
                 "unknown key (selector, key_file, "
                 "ed25519_selector, ed25519_key_file, sign, expire)");
        return -1;
    }
    if (dkim_value_check(name, value, &value, why, whylen) < 0)
        return -1;
    return dkim_set(slot, value, why, whylen);
}

/* Checks one signing domain's keys against each other. */
static int dkim_check_one(const char *where, const char *selector,
                          const char *key_file, const char *ed_selector,
                          const char *ed_key_file, char *err, size_t errlen)
{
    if (selector == NULL || key_file == NULL) {
        cfg_err(err, errlen,
                "%s: needs selector and key_file (an "
                "rsa-sha256 signature; Ed25519 is only ever a second one)",
                where);
        return -1;
    }
    if ((ed_selector == NULL) != (ed_key_file == NULL)) {
        cfg_err(err, errlen,
                "%s: ed25519_selector and ed25519_key_file go "
                "together",
                where);
        return -1;
    }
    return 0;
}

/* Checks [dkim] and each [dkim.DOMAIN]. */
int cfg_dkim_check(const struct cfg *cfg, char *err, size_t errlen)
{
    const struct cfg_dkim_domain *d;
    char where[120];

    if ((cfg->dkim.domain != NULL || cfg->dkim.selector != NULL ||
         cfg->dkim.key_file != NULL || cfg->dkim.ed25519_selector != NULL ||
         cfg->dkim.ed25519_key_file != NULL) &&
        (cfg->dkim.domain == NULL ||
         dkim_check_one("dkim", cfg->dkim.selector, cfg->dkim.key_file,
                        cfg->dkim.ed25519_selector, cfg->dkim.ed25519_key_file,
                        err, errlen) < 0)) {
        if (cfg->dkim.domain == NULL)
            cfg_err(err, errlen,
                    "dkim: the selectors and key files need "
                    "dkim.domain");
        return -1;
    }
    for (size_t i = 0; i < cfg->ndkim_domains; i++) {
        d = &cfg->dkim_domains[i];
        snprintf(where, sizeof where, "[dkim.%.100s]", d->domain);
        if (dkim_check_one(where, d->selector, d->key_file, d->ed25519_selector,
                           d->ed25519_key_file, err, errlen) < 0)
            return -1;
    }
    return 0;
}

/* Frees the sections. */
void cfg_dkim_free(struct cfg *cfg)
{
    for (size_t i = 0; i < cfg->ndkim_domains; i++) {
        struct cfg_dkim_domain *d = &cfg->dkim_domains[i];

        free(d->domain);
        free(d->selector);
        free(d->key_file);
        free(d->ed25519_selector);
        free(d->ed25519_key_file);
        free(d->sign);
    }
    free(cfg->dkim_domains);
    cfg->dkim_domains = NULL;
    cfg->ndkim_domains = 0;
}

/* Prints "name = value" when value is set. */
static void dkim_print_kv(FILE *out, const char *name, const char *value)
{
    if (value != NULL)
        fprintf(out, "%s = %s\n", name, value);
}

/* Writes the sections as INI (paths and names only: nothing secret). */
void cfg_dkim_print(const struct cfg *cfg, FILE *out)
{
    for (size_t i = 0; i < cfg->ndkim_domains; i++) {
        const struct cfg_dkim_domain *d = &cfg->dkim_domains[i];

        fprintf(out, "\n[dkim.%s]\n", d->domain);
        dkim_print_kv(out, "selector", d->selector);
        dkim_print_kv(out, "key_file", d->key_file);
        dkim_print_kv(out, "ed25519_selector", d->ed25519_selector);
        dkim_print_kv(out, "ed25519_key_file", d->ed25519_key_file);
        dkim_print_kv(out, "sign", d->sign);
        if (d->expire >= 0)
            fprintf(out, "expire = %d\n", d->expire);
    }
}
