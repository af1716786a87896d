/*
 * mpserve.c - run `mailpool serve` as a child process for the service tests
 * (tests only).  See mpserve.h for what each function promises.
 *
 * Public: mpserve_start, mpserve_port, mpserve_url, mpserve_pid,
 * mpserve_log_path, mpserve_log, mpserve_signal, mpserve_wait,
 * mpserve_stop, mpserve_free, mpserve_free_port, mpserve_binary,
 * mpserve_run, mpserve_raw_http.
 *
 * The child gets an empty signal mask and default dispositions whatever the
 * test set (the service blocks SIGTERM itself and takes it with sigwait),
 * /dev/null as standard input, and no descriptor of ours beyond 2.
 *
 * Errors: NULL / -1, with "mpserve: ..." on stderr.  Threads: see mpserve.h;
 * nothing global is mutable.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/tsupport.h"
#include "tests/support/mpserve.h"

extern char **environ;

#define READY_MS 10000 /* bound on /healthz answering after start */
#define POLL_MS 20
#define START_TRIES 3 /* ports tried when the bind race is lost */
#define MAX_ARGS 128

struct mpserve {
    pid_t pid;  /* 0 once reaped */
    int status; /* how it ended, once reaped */
    int port;
    char url[64];
    char dir[PATH_MAX];
    char log[PATH_MAX + 16];
};

/* "mpserve: ..." and a newline on stderr. */
__attribute__((format(printf, 1, 2))) static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("mpserve: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}


/* The encoded wait status as mpserve.h describes it. */
static int decode_status(int st)
{
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

int mpserve_free_port(void)
{
    struct sockaddr_in sa = { .sin_family = AF_INET };
    socklen_t slen = sizeof sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int port = -1;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &slen) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

const char *mpserve_binary(char *buf, size_t size)
{
    char exe[PATH_MAX];
    const char *env = getenv("MAILPOOL_BIN");
    int n;
    if (env != NULL && env[0] != '\0') {
        n = snprintf(buf, size, "%s", env);
        return n > 0 && (size_t)n < size && access(buf, X_OK) == 0 ? buf : NULL;
    }
    ssize_t r = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (r > 0) {
        exe[r] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash != NULL) {
            *slash = '\0';
            n = snprintf(buf, size, "%s/../mailpool", exe);
            if (n > 0 && (size_t)n < size && access(buf, X_OK) == 0)
                return buf;
        }
    }
    n = snprintf(buf, size, "build/mailpool");
    return n > 0 && (size_t)n < size && access(buf, X_OK) == 0 ? buf : NULL;
}

/* ts_spawn_logged, saying why on failure; 0 or -1. */
static int spawn(pid_t *pid, char *const *argv, const char *logpath)
{
    int rc = ts_spawn_logged(pid, argv, logpath);
    if (rc != 0) {
        say("spawn %s: %s", argv[0], strerror(rc));
        *pid = 0;
        return -1;
    }
    return 0;
}

/* A connected blocking TCP socket to 127.0.0.1:port with timeouts; -1. */
static int connect_local(int port, int timeout_ms)
{
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port) };
    struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int mpserve_raw_http(int port, const char *req, size_t len, int timeout_ms,
                     char **resp)
{
    size_t n = 0, cap = 4096;
    char *buf = malloc(cap);
    int fd = connect_local(port, timeout_ms);
    long long end = ts_now_ms() + timeout_ms;
    *resp = NULL;
    if (buf == NULL || fd < 0) {
        free(buf);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    for (size_t off = 0; off < len;) {
        ssize_t w = send(fd, req + off, len - off, MSG_NOSIGNAL);
        if (w <= 0)
            break; /* the server may answer and close early */
        off += (size_t)w;
    }
    while (ts_now_ms() < end) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int left = (int)(end - ts_now_ms());
        if (poll(&pfd, 1, left > 0 ? left : 0) <= 0)
            break;
        if (cap - n < 1025) {
            char *p = realloc(buf, cap *= 2);
            if (p == NULL)
                break;
            buf = p;
        }
        ssize_t r = recv(fd, buf + n, cap - n - 1, 0);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *resp = buf;
    int code = -1;
    if (n >= 12 && strncmp(buf, "HTTP/1.", 7) == 0 && buf[8] == ' ')
        code = (int)strtol(buf + 9, NULL, 10);
    return code;
}

/* 1 when GET /healthz on port answers 200. */
static int healthy(int port)
{
    static const char req[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              "Connection: close\r\n\r\n";
    char *resp = NULL;
    int code = mpserve_raw_http(port, req, sizeof req - 1, 1000, &resp);
    free(resp);
    return code == 200;
}

/* Reaps the child if it exited; 1 if gone, 0 if it runs. */
static int reap(struct mpserve *s, int block)
{
    int st;
    pid_t r;
    if (s->pid <= 0)
        return 1;
    do
        r = waitpid(s->pid, &st, block ? 0 : WNOHANG);
    while (r < 0 && errno == EINTR);
    if (r == 0)
        return 0;
    s->status = r == s->pid ? decode_status(st) : -1;
    s->pid = 0;
    return 1;
}

/* Prints the last tail bytes of the log on stderr. */
static void show_log(const struct mpserve *s, size_t tail)
{
    size_t len = 0;
    char *log = ts_slurp(s->log, &len);
    if (log == NULL)
        return;
    const char *start = len > tail ? log + len - tail : log;
    fprintf(stderr, "mpserve: --- %s ---\n%s%s", s->log, start,
            len > 0 && log[len - 1] != '\n' ? "\n" : "");
    free(log);
}

/* The argv of one start; strings borrowed from bin, portbuf, qpath,
   extra.  The queue file is the private directory's unless extra names
   one (--queue-path), so that services never share a queue. */
static int build_argv(char **v, const char *bin, const char *listen,
                      const char *relay_port, const char *qpath,
                      const char *const *extra)
{
    const char *fixed[] = { bin,
                            "serve",
                            "--http-listen",
                            listen,
                            "--relay-host",
                            "127.0.0.1",
                            "--relay-port",
                            relay_port,
                            "--relay-tls",
                            "none",
                            "--queue-path",
                            qpath };
    size_t n = 0, nfixed = sizeof fixed / sizeof fixed[0];
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++)
        if (strcmp(extra[i], "--queue-path") == 0)
            nfixed -= 2;
    for (size_t i = 0; i < nfixed; i++)
        v[n++] = (char *)(uintptr_t)fixed[i];
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i++) {
        if (n + 1 >= MAX_ARGS) {
            say("too many extra arguments");
            return -1;
        }
        v[n++] = (char *)(uintptr_t)extra[i];
    }
    v[n] = NULL;
    return 0;
}

/* One attempt on a fresh port: 0 ready, 1 lost the bind race, -1 failed. */
static int start_once(struct mpserve *s, const char *bin, int relay_port,
                      const char *const *extra)
{
    char listen[32], rport[16], qpath[PATH_MAX + 16];
    char *argv[MAX_ARGS];
    s->port = mpserve_free_port();
    if (s->port < 0)
        return -1;
    snprintf(listen, sizeof listen, "127.0.0.1:%d", s->port);
    snprintf(rport, sizeof rport, "%d", relay_port);
    snprintf(s->url, sizeof s->url, "http://127.0.0.1:%d", s->port);
    snprintf(qpath, sizeof qpath, "%s/queue.db", s->dir);
    if (build_argv(argv, bin, listen, rport, qpath, extra) < 0 ||
        spawn(&s->pid, argv, s->log) < 0)
        return -1;
    for (long long end = ts_now_ms() + READY_MS; ts_now_ms() < end;
         ts_sleep_ms(POLL_MS)) {
        if (healthy(s->port))
            return 0;
        if (reap(s, 0)) {
            say("mailpool serve exited with status %d before /healthz "
                "answered",
                s->status);
            return s->status == 1 ? 1 : -1;
        }
    }
    say("/healthz on port %d did not answer 200 within %d ms", s->port,
        READY_MS);
    return -1;
}

struct mpserve *mpserve_start(int relay_port, const char *const *extra)
{
    char bin[PATH_MAX];
    const char *tmp = getenv("TMPDIR");
    struct mpserve *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    if (mpserve_binary(bin, sizeof bin) == NULL) {
        say("cannot find the mailpool binary (build it, or set MAILPOOL_BIN)");
        free(s);
        return NULL;
    }
    if (tmp == NULL || tmp[0] == '\0')
        tmp = "/tmp";
    snprintf(s->dir, sizeof s->dir, "%s/mailpool-serve-XXXXXX", tmp);
    if (mkdtemp(s->dir) == NULL) {
        say("mkdtemp in %s: %s", tmp, strerror(errno));
        free(s);
        return NULL;
    }
    snprintf(s->log, sizeof s->log, "%s/stderr.log", s->dir);
    for (int i = 0; i < START_TRIES; i++) {
        int rc = start_once(s, bin, relay_port, extra);
        if (rc == 0)
            return s;
        if (rc < 0)
            break;
    }
    show_log(s, 4000);
    mpserve_free(s);
    return NULL;
}

int mpserve_port(const struct mpserve *s)
{
    return s->port;
}

const char *mpserve_url(const struct mpserve *s)
{
    return s->url;
}

pid_t mpserve_pid(const struct mpserve *s)
{
    return s->pid;
}

const char *mpserve_log_path(const struct mpserve *s)
{
    return s->log;
}

char *mpserve_log(const struct mpserve *s, size_t *len)
{
    return ts_slurp(s->log, len);
}

int mpserve_signal(struct mpserve *s, int sig)
{
    if (reap(s, 0))
        return -1;
    return kill(s->pid, sig);
}

int mpserve_wait(struct mpserve *s, int timeout_ms)
{
    for (long long end = ts_now_ms() + timeout_ms;; ts_sleep_ms(5)) {
        if (reap(s, 0))
            return s->status;
        if (ts_now_ms() >= end)
            return MPSERVE_TIMEOUT;
    }
}

int mpserve_stop(struct mpserve *s, int timeout_ms)
{
    if (reap(s, 0))
        return s->status;
    kill(s->pid, SIGTERM);
    int rc = mpserve_wait(s, timeout_ms);
    if (rc != MPSERVE_TIMEOUT)
        return rc;
    say("mailpool serve (pid %d) did not stop within %d ms of SIGTERM; "
        "SIGKILL",
        (int)s->pid, timeout_ms);
    kill(s->pid, SIGKILL);
    reap(s, 1);
    s->status = MPSERVE_KILLED;
    return MPSERVE_KILLED;
}


int mpserve_stop_clean(struct mpserve *s, int timeout_ms)
{
    int st = mpserve_stop(s, timeout_ms);
    if (st == 0)
        return 0;
    char *log = mpserve_log(s, NULL);
    fprintf(stderr,
            "mailpool serve ended with %d after SIGTERM; its "
            "stderr:\n%s\n",
            st, log != NULL ? log : "");
    free(log);
    return -1;
}

void mpserve_free(struct mpserve *s)
{
    if (s == NULL)
        return;
    if (!reap(s, 0)) {
        kill(s->pid, SIGKILL);
        reap(s, 1);
    }
    if (getenv("MPSERVE_KEEP") != NULL)
        say("kept %s", s->dir);
    else if (s->dir[0] != '\0')
        ts_rmtree(s->dir);
    free(s);
}

int mpserve_run(const char *const *argv, int timeout_ms, char **out)
{
    char bin[PATH_MAX], *v[MAX_ARGS];
    const char *tmp = getenv("TMPDIR");
    struct mpserve s;
    size_t n = 0;
    memset(&s, 0, sizeof s);
    if (out != NULL)
        *out = NULL;
    if (mpserve_binary(bin, sizeof bin) == NULL) {
        say("cannot find the mailpool binary (build it, or set MAILPOOL_BIN)");
        return -1;
    }
    v[n++] = bin;
    for (size_t i = 0; argv != NULL && argv[i] != NULL && n + 1 < MAX_ARGS; i++)
        v[n++] = (char *)(uintptr_t)argv[i];
    v[n] = NULL;
    snprintf(s.dir, sizeof s.dir, "%s/mailpool-run-XXXXXX",
             tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
    if (mkdtemp(s.dir) == NULL) {
        say("mkdtemp: %s", strerror(errno));
        return -1;
    }
    snprintf(s.log, sizeof s.log, "%s/stderr.log", s.dir);
    int rc = -1;
    if (spawn(&s.pid, v, s.log) == 0) {
        rc = mpserve_wait(&s, timeout_ms);
        if (rc == MPSERVE_TIMEOUT) {
            kill(s.pid, SIGKILL);
            reap(&s, 1);
            rc = MPSERVE_KILLED;
        }
        if (out != NULL)
            *out = ts_slurp(s.log, NULL);
    }
    ts_rmtree(s.dir);
    return rc;
}
