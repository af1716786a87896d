/*
 * mpserve.h - run `mailpool serve` as a child process for the service tests
 * (tests only).
 *
 * mpserve_start picks a free port on 127.0.0.1 (bind to port 0, read it,
 * close), runs
 *     build/mailpool serve --http-listen 127.0.0.1:PORT
 *         --relay-host 127.0.0.1 --relay-port RELAY --relay-tls none EXTRA...
 * with its standard error (the JSON log lines) and standard output in files
 * of a private temp directory, and waits (at most 10 s) until GET /healthz
 * answers 200.  If the child exits before that with status 1 (the port was
 * taken between our probe and its bind), it tries again with another port,
 * three times at most.
 *
 * The binary is $MAILPOOL_BIN, else ../mailpool next to the running test
 * (build/tests/x -> build/mailpool, so BUILD=build-asan works), else
 * build/mailpool under the current directory.
 *
 * mpserve_stop sends SIGTERM, waits (bounded), falls back to SIGKILL and
 * returns how the child ended; the log stays readable until mpserve_free,
 * which also kills a child still running and removes the directory
 * (MPSERVE_KEEP=1 in the environment keeps it and prints its path).
 *
 * This file uses POSIX only (no libcurl, no cmocka): it is linked into every
 * test binary.  Errors: NULL / -1 with the reason on stderr.  Threads: a
 * struct mpserve is used by one thread at a time, except mpserve_port,
 * mpserve_url and mpserve_pid, which only read fields fixed at start.
 */
#ifndef MAILPOOL_TESTS_MPSERVE_H
#define MAILPOOL_TESTS_MPSERVE_H

#include <stddef.h>
#include <sys/types.h>

struct mpserve;

/* How mpserve_stop / mpserve_wait say the child ended, besides 0..255
   (its exit code) and 128+N (killed by signal N). */
#define MPSERVE_KILLED (-2)  /* did not stop in time: we sent SIGKILL */
#define MPSERVE_TIMEOUT (-3) /* mpserve_wait: still running */

/* Starts the service in front of 127.0.0.1:relay_port; extra (NULL-ended,
   may be NULL) is appended to the command line.  Caller owns the result:
   mpserve_free.  NULL on failure, with the log's tail on stderr. */
struct mpserve *mpserve_start(int relay_port, const char *const *extra);

/* The HTTP port, "http://127.0.0.1:PORT" (borrowed), the child's pid. */
int mpserve_port(const struct mpserve *s);
const char *mpserve_url(const struct mpserve *s);
pid_t mpserve_pid(const struct mpserve *s);

/* Path of the file holding the child's standard error (borrowed). */
const char *mpserve_log_path(const struct mpserve *s);
/* The log so far, NUL-terminated; caller frees.  NULL on error. */
char *mpserve_log(const struct mpserve *s, size_t *len);

/* kill(pid, sig) while the child runs; 0 or -1. */
int mpserve_signal(struct mpserve *s, int sig);
/* Waits up to timeout_ms for the child to exit: its exit code, 128+signal,
   or MPSERVE_TIMEOUT.  Once reaped, later calls return the same value. */
int mpserve_wait(struct mpserve *s, int timeout_ms);
/* SIGTERM, then mpserve_wait(timeout_ms), then SIGKILL: the exit code,
   128+signal, or MPSERVE_KILLED.  Idempotent. */
int mpserve_stop(struct mpserve *s, int timeout_ms);
/* mpserve_stop for a child that must end cleanly: 0 when it exited 0; else
   -1, after printing how it ended and its standard error on stderr. */
int mpserve_stop_clean(struct mpserve *s, int timeout_ms);
/* Stops the child if it runs (SIGKILL), removes the directory, frees.
   NULL is a no-op. */
void mpserve_free(struct mpserve *s);

/* ---- Helpers that need no running service ---- */

/* A TCP port that was free on 127.0.0.1 a moment ago; -1 on error. */
int mpserve_free_port(void);

/* Writes the path of the mailpool binary (found as described above) into
   buf of size bytes and returns buf; NULL when it cannot be found. */
const char *mpserve_binary(char *buf, size_t size);

/* Runs `mailpool ARGV...` (argv NULL-ended, without the program name) to
   completion within timeout_ms; its standard error (and output) into
   *out (caller frees; may be NULL).  Returns the exit code, 128+signal, or
   MPSERVE_KILLED when it had to be killed; -1 when it could not start. */
int mpserve_run(const char *const *argv, int timeout_ms, char **out);

/* One HTTP exchange over a raw socket to 127.0.0.1:port: writes req (len
   bytes, exactly as given: for requests libcurl would not send, such as a
   Content-Length with the body held back), then reads until the server
   closes or timeout_ms passes.  *resp is NUL-terminated (caller frees;
   NULL when no connection could be made).
   Returns the status code of the response's first line, -1 on error or
   when no status line came. */
int mpserve_raw_http(int port, const char *req, size_t len, int timeout_ms,
                     char **resp);

#endif /* MAILPOOL_TESTS_MPSERVE_H */
