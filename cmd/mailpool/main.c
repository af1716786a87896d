/*
 * cmd/mailpool/main.c - the mailpool command: picks the subcommand.
 *
 *   mailpool serve ...        serve.c
 *   mailpool send|verify|expand|help ...   client.c
 *   mailpool healthcheck ...  mailpool dkim-keygen ...   healthcheck.c
 *
 * cmd/ is the one place that sees every module (scripts/check-deps.sh).
 */
#include <stdio.h>
#include <string.h>

#include "cmd/mailpool/cmd.h"

/* The usage text of every subcommand. */
void cmd_usage(FILE *f)
{
    fputs(
        "usage:\n"
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
        "  --dkim-ed25519-key-file F] [--dkim-sign auto|always|never]\n",
        f);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        cmd_usage(stderr);
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
        return cmd_client(cmd, argc - 1, argv + 1); /* argv[0]: its name */
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        cmd_usage(stdout);
        return 0;
    }
    fprintf(stderr, "mailpool: unknown command '%s'\n", cmd);
    cmd_usage(stderr);
    return 2;
}
