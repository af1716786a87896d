/*
 * compose/internal.h - what compose/build.c and compose/check.c share.
 */
#ifndef MAILPOOL_COMPOSE_INTERNAL_H
#define MAILPOOL_COMPOSE_INTERNAL_H

#include "compose/compose.h"

/* g_mime_init, once a process (pthread_once), before any GMime call. */
void compose_gmime_init(void);
/* out->env_from and out->rcpt from m: the envelope given, else from and
   to + cc + bcc, each address once, domains as A-labels. */
int compose_envelope(const struct compose_message *m,
                     struct compose_result *out, char *why, size_t whylen);

#endif /* MAILPOOL_COMPOSE_INTERNAL_H */
