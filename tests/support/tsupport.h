/*
 * tsupport.h - small helpers shared by the test harnesses (peer.c,
 * mpserve.c): clock, sleep, reading a whole file, removing a tree.
 */
#ifndef MAILPOOL_TESTS_TSUPPORT_H
#define MAILPOOL_TESTS_TSUPPORT_H

#include <stddef.h>
#include <sys/types.h>

/* Milliseconds on the monotonic clock. */
long long ts_now_ms(void);
/* Sleeps ms milliseconds (resumed after signals). */
void ts_sleep_ms(int ms);
/* A whole file, NUL-terminated (length in *len when len is not NULL);
   caller frees.  NULL on error. */
char *ts_slurp(const char *path, size_t *len);
/* Removes dir and everything below it; says on stderr what it could not. */
void ts_rmtree(const char *dir);
/* A copy of s with every ' turned into " (JSON written readably in C);
   caller frees; aborts when out of memory. */
char *ts_dq(const char *s);
/* posix_spawn of argv[0] with argv (NULL-ended), standard input from
   /dev/null, standard output and error appended to logpath, no other
   descriptor inherited, no signal blocked and TERM, INT, PIPE and CHLD at
   their defaults.  0 with *pid set, or the errno of the failure. */
int ts_spawn_logged(pid_t *pid, char *const *argv, const char *logpath);

#endif
