/*
 * cmd/mailpool/healthcheck.c - mailpool healthcheck (GET /healthz on the
 * configured listen address, for a container's HEALTHCHECK) and
 * mailpool dkim-keygen (the DNS TXT record of a DKIM key).
 *
 *   mailpool healthcheck [--http-listen ADDR:PORT]
 *   mailpool dkim-keygen --selector S --domain D --key-file F
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "cmd/mailpool/cmd.h"
#include "config/config.h"
#include "dkim/dkim.h"

/* healthcheck: GET /healthz on the configured listen address. */
int cmd_healthcheck(int argc, char **argv)
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
int cmd_dkim_keygen(int argc, char **argv)
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
