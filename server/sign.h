/*
 * server/sign.h - DKIM signing of a job's message (dkim/dkim.h) by the
 * configured domains (dkim.* and [dkim.DOMAIN], config/config.h).
 *
 * The set of keys is loaded once at start (sign_set_new) and only read
 * afterwards, so workers share it freely.  sign_message signs a message
 * in place, in either of its forms, just before it is attempted; see
 * server/sign.c for what is signed and when.
 */
#ifndef MAILPOOL_SIGN_H
#define MAILPOOL_SIGN_H

#include <stddef.h>
#include <time.h>

#include "config/config.h"
#include "server/job.h"

struct sign_set;

/* Loads the keys of every signing domain the configuration names (none
   for sign = never).  NULL with err naming the key file that does not
   load (never its content).  A configuration without DKIM gives an empty
   set, which signs nothing. */
struct sign_set *sign_set_new(const struct cfg *cfg, char *err, size_t errlen);
/* How many signing domains the set holds. */
size_t sign_set_count(const struct sign_set *set);
/* Frees the set and its keys; NULL is a no-op. */
void sign_set_free(struct sign_set *set);

/* Signs m (a job's message) with the domain its From chooses, at time
   now: 0 when signed or when nothing is to be signed (no domain chosen,
   or every signature already present by the same d= and s=); -1 with
   why when signing failed (the message must not go out unsigned then). */
int sign_message(const struct sign_set *set, struct job_message *m, time_t now,
                 char *why, size_t whylen);

#endif /* MAILPOOL_SIGN_H */
