/*
 * compose/internal.h - what compose/build.c and compose/check.c share.
 */
#ifndef MAILPOOL_COMPOSE_INTERNAL_H
#define MAILPOOL_COMPOSE_INTERNAL_H

#include <glib.h>
#include <gmime/gmime.h>

#include "compose/compose.h"

/* g_mime_init, once a process (pthread_once), before any GMime call. */
void compose_gmime_init(void);
/* out->env_from and out->rcpt from m: the envelope given, else from and
   to + cc + bcc, each address once, domains as A-labels. */
int compose_envelope(const struct compose_message *m,
                     struct compose_result *out, char *why, size_t whylen);

/* 1 when raw holds an RFC 2047 encoded-word over 75 characters. */
int compose_long_word(const char *raw);
/* Appends text as base64 encoded-words of at most 64 characters, folded
   between them. */
void compose_append_words(GString *out, const char *text);
/* Appends the mailboxes of list, display names as such words. */
void compose_rewrite_addresses(GString *v, InternetAddressList *list);

#endif /* MAILPOOL_COMPOSE_INTERNAL_H */
