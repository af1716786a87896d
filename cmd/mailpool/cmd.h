/*
 * cmd/mailpool/cmd.h - the subcommands of the mailpool command.  Each
 * takes the arguments after its name and returns the exit code.
 */
#ifndef MAILPOOL_CMD_H
#define MAILPOOL_CMD_H

#include <stdio.h>

/* The usage text of every subcommand, on f. */
void cmd_usage(FILE *f);

/* serve: config, queue, pool, HTTP; waits for SIGTERM/SIGINT, drains. */
int cmd_serve(int argc, char **argv);

/* send, verify, expand or help (cmd names which). */
int cmd_client(const char *cmd, int argc, char **argv);

/* healthcheck: GET /healthz on the configured listen address. */
int cmd_healthcheck(int argc, char **argv);

/* dkim-keygen: the DNS TXT record that publishes a key's public half. */
int cmd_dkim_keygen(int argc, char **argv);

#endif /* MAILPOOL_CMD_H */
