/*
 * peer.c - the test harness around the SMTP peers (see peer.h).
 *
 * Process control: each peer is a child made with posix_spawn, stdin from
 * /dev/null, stdout and stderr appended to DIR/peer.log.  The Python peers
 * write their port to DIR/ready once listening (bounded wait: READY_MS);
 * smtp-sink gets a port found free by binding port 0, and is ready when
 * /proc/net/tcp shows it listening (a probe connect() would cost it a
 * session); a failed bind is retried on another port.  peer_stop sends
 * SIGTERM, waits STOP_MS, then SIGKILL, and removes DIR with nftw().
 *
 * Captures: messages.jsonl (fake, aiosmtpd) is parsed with Jansson; the sink's
 * -D dump is split on the -S marker SINK_MARK and parsed by hand.
 *
 * Finding the sources: $MAILPOOL_ROOT, else the first of ".", "..", "../..",
 * "../../.." and the directories above the test binary that holds
 * tests/fakes/fake_smtp.py.  $MAILPOOL_PYTHON overrides /usr/bin/python3,
 * $MAILPOOL_SMTP_SINK overrides /usr/sbin/smtp-sink.
 *
 * Errors: start functions print the reason and return NULL; the others
 * return -1 or NULL.  Thread-safety: none needed beyond one peer per thread.
 */
#include "tests/support/tsupport.h"
#include "tests/support/peer.h"
#include "tests/support/peer_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define READY_MS 10000 /* longest wait for a peer to listen */
#define STOP_MS 5000   /* longest wait after SIGTERM */
#define SINK_TRIES 5
#define SINK_MARK_ARG "\\001peer-sink-message\\n"

/* A growable argv of owned strings, NULL-terminated. */
struct argv {
    char **v;
    size_t n, cap;
    int oom;
};

/* Print "peer: ..." and a newline on stderr. */
__attribute__((format(printf, 1, 2))) void peer_say(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    fputs("peer: ", stderr);
    vfprintf(stderr, f, ap);
    fputc('\n', stderr);
    va_end(ap);
}


/* snprintf into buf, 0 or -1 when it did not fit. */
__attribute__((format(printf, 3, 4))) int peer_fmt(char *buf, size_t size,
                                                   const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int r = vsnprintf(buf, size, f, ap);
    va_end(ap);
    return r < 0 || (size_t)r >= size ? -1 : 0;
}

/* Append a copy of s to a. */
static void argv_add(struct argv *a, const char *s)
{
    if (a->oom)
        return;
    if (a->n + 2 > a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        char **v = realloc(a->v, cap * sizeof *v);
        if (!v) {
            a->oom = 1;
            return;
        }
        a->v = v;
        a->cap = cap;
    }
    if (!(a->v[a->n] = strdup(s))) {
        a->oom = 1;
        return;
    }
    a->v[++a->n] = NULL;
}

/* Append every string of a NULL-terminated list (NULL list: nothing). */
static void argv_add_list(struct argv *a, const char *const *list)
{
    for (size_t i = 0; list && list[i]; i++)
        argv_add(a, list[i]);
}

/* Free the strings and the vector. */
static void argv_free(struct argv *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
    memset(a, 0, sizeof *a);
}


/* Write len bytes to a new file at path; 0 or -1. */
static int write_file(const char *path, const char *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            close(fd);
            return -1;
        }
        off += (size_t)w;
    }
    return close(fd);
}

/* Directory holding tests/fakes/fake_smtp.py, into root; 0 or -1. */
static int find_root(char *root, size_t size)
{
    static const char *const rel[] = { ".", "..", "../..", "../../.." };
    char cand[PATH_MAX], probe[PATH_MAX + 32], exe[PATH_MAX];
    const char *env = getenv("MAILPOOL_ROOT");
    size_t nrel = sizeof rel / sizeof rel[0];

    for (size_t i = 0; i <= 2 * nrel; i++) {
        if (i == 0) {
            if (!env || peer_fmt(cand, sizeof cand, "%s", env) < 0)
                continue;
        } else if (i <= nrel) {
            if (peer_fmt(cand, sizeof cand, "%s", rel[i - 1]) < 0)
                continue;
        } else {
            ssize_t r = readlink("/proc/self/exe", exe, sizeof exe - 1);
            if (r <= 0)
                continue;
            exe[r] = '\0';
            char *slash = strrchr(exe, '/');
            if (slash)
                *slash = '\0';
            if (peer_fmt(cand, sizeof cand, "%s/%s", exe, rel[i - 1 - nrel]) <
                0)
                continue;
        }
        if (peer_fmt(probe, sizeof probe, "%s/tests/fakes/fake_smtp.py", cand) <
            0)
            continue;
        if (access(probe, R_OK) == 0 && realpath(cand, root) &&
            strlen(root) < size)
            return 0;
    }
    peer_say("cannot find tests/fakes/fake_smtp.py; set MAILPOOL_ROOT");
    return -1;
}

/* Print the last lines of DIR/peer.log to stderr. */
static void show_log(const struct peer *p, size_t tail)
{
    char path[PATH_MAX + 16];
    if (peer_fmt(path, sizeof path, "%s/peer.log", p->dir) < 0)
        return;
    size_t len = 0;
    char *log = ts_slurp(path, &len);
    if (!log)
        return;
    const char *start = len > tail ? log + len - tail : log;
    if (*start)
        fprintf(stderr, "peer: --- %s ---\n%s%s", path, start,
                start[strlen(start) - 1] == '\n' ? "" : "\n");
    free(log);
}

/* 1 if DIR/peer.log contains needle. */
static int log_mentions(const struct peer *p, const char *needle)
{
    char path[PATH_MAX + 16];
    if (peer_fmt(path, sizeof path, "%s/peer.log", p->dir) < 0)
        return 0;
    char *log = ts_slurp(path, NULL);
    int found = log && strstr(log, needle);
    free(log);
    return found;
}


/* A new peer with a fresh private directory; NULL on error. */
static struct peer *peer_new(enum peer_kind kind)
{
    struct peer *p = calloc(1, sizeof *p);
    if (!p) {
        peer_say("out of memory");
        return NULL;
    }
    p->kind = kind;
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    if (peer_fmt(p->dir, sizeof p->dir, "%s/mailpool-peer-XXXXXX", tmp) < 0 ||
        !mkdtemp(p->dir)) {
        peer_say("mkdtemp in %s: %s", tmp, strerror(errno));
        free(p);
        return NULL;
    }
    return p;
}

/* Spawn argv with stdout/stderr appended to DIR/peer.log; 0 or -1. */
static int spawn(struct peer *p, struct argv *a)
{
    char logpath[PATH_MAX + 16];
    posix_spawn_file_actions_t fa;
    int rc;

    if (a->oom) {
        peer_say("out of memory");
        return -1;
    }
    if (peer_fmt(logpath, sizeof logpath, "%s/peer.log", p->dir) < 0)
        return -1;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, logpath,
                                     O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 34)
    /* the test's own sockets (say, a listener) must not live on in the peer */
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
#endif
    /* default dispositions and an empty mask, whatever the test set */
    posix_spawnattr_t at;
    sigset_t none, deflt;
    sigemptyset(&none);
    sigemptyset(&deflt);
    sigaddset(&deflt, SIGTERM);
    sigaddset(&deflt, SIGINT);
    sigaddset(&deflt, SIGPIPE);
    posix_spawnattr_init(&at);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &deflt);
    posix_spawnattr_setflags(&at,
                             POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    rc = posix_spawn(&p->pid, a->v[0], &fa, &at, a->v, environ);
    posix_spawnattr_destroy(&at);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        peer_say("spawn %s: %s", a->v[0], strerror(rc));
        p->pid = 0;
        return -1;
    }
    return 0;
}

/* 1 if the child has exited (and reap it), 0 if it runs. */
static int child_gone(struct peer *p)
{
    int status;
    if (p->pid <= 0)
        return 1;
    pid_t r = waitpid(p->pid, &status, WNOHANG);
    if (r == 0)
        return 0;
    if (r == p->pid) {
        if (WIFEXITED(status))
            peer_say("%s exited with status %d", p->dir, WEXITSTATUS(status));
        else if (WIFSIGNALED(status))
            peer_say("%s killed by signal %d", p->dir, WTERMSIG(status));
    }
    p->pid = 0;
    return 1;
}

/* Wait for DIR/ready to hold a port; 0 or -1. */
static int wait_ready(struct peer *p)
{
    char path[PATH_MAX + 16];
    if (peer_fmt(path, sizeof path, "%s/ready", p->dir) < 0)
        return -1;
    for (long long end = ts_now_ms() + READY_MS; ts_now_ms() < end;
         ts_sleep_ms(POLL_MS)) {
        char *txt = ts_slurp(path, NULL);
        if (txt) {
            char *e;
            long port = strtol(txt, &e, 10);
            int ok = e != txt && *e == '\n' && port > 0 && port < 65536;
            free(txt);
            if (ok) {
                p->port = (int)port;
                return 0;
            }
        }
        if (child_gone(p))
            return -1;
    }
    peer_say("no ready file after %d ms", READY_MS);
    return -1;
}

/* Common end of a failed start: stop, show the log, free. */
static struct peer *start_failed(struct peer *p, struct argv *a)
{
    argv_free(a);
    show_log(p, 4000);
    peer_stop(p);
    return NULL;
}

/* Spawn a Python peer (script relative to the repo root) in p's directory;
 * p is consumed on failure. */
static struct peer *start_python(struct peer *p, const char *script,
                                 const char *const *extra)
{
    char root[PATH_MAX], path[2 * PATH_MAX];
    struct argv a = { 0 };
    const char *py = getenv("MAILPOOL_PYTHON");

    if (find_root(root, sizeof root) < 0 ||
        peer_fmt(path, sizeof path, "%s/%s", root, script) < 0)
        return start_failed(p, &a);
    argv_add(&a, py && *py ? py : "/usr/bin/python3");
    argv_add(&a, path);
    if (p->kind == PEER_FAKE) {
        peer_fmt(path, sizeof path, "%s/script.json", p->dir);
        argv_add(&a, "--script");
        argv_add(&a, path);
    }
    peer_fmt(path, sizeof path, "%s/ready", p->dir);
    argv_add(&a, "--ready-file");
    argv_add(&a, path);
    peer_fmt(path, sizeof path, "%s/capture", p->dir);
    argv_add(&a, "--capture-dir");
    argv_add(&a, path);
    argv_add(&a, "--workdir");
    argv_add(&a, p->dir);
    argv_add_list(&a, extra);
    if (spawn(p, &a) < 0 || wait_ready(p) < 0)
        return start_failed(p, &a);
    argv_free(&a);
    return p;
}

/* Write the script to DIR/script.json and start fake_smtp.py on it. */
struct peer *peer_start_fake(const char *script_json)
{
    char path[PATH_MAX + 16];
    const char *json = script_json ? script_json : "{}";
    struct peer *p = peer_new(PEER_FAKE);

    if (!p)
        return NULL;
    if (peer_fmt(path, sizeof path, "%s/script.json", p->dir) < 0 ||
        write_file(path, json, strlen(json)) < 0) {
        peer_say("cannot write %s/script.json: %s", p->dir, strerror(errno));
        peer_stop(p);
        return NULL;
    }
    return start_python(p, "tests/fakes/fake_smtp.py", NULL);
}

/* Start aiosmtpd_peer.py with these flags. */
struct peer *peer_start_aiosmtpd(const char *const *extra_args)
{
    struct peer *p = peer_new(PEER_AIOSMTPD);
    return p ? start_python(p, "tests/peers/aiosmtpd_peer.py", extra_args)
             : NULL;
}

/* ---- smtp-sink ------------------------------------------------------- */

/* A port that was free on 127.0.0.1 a moment ago; -1 on error. */
static int free_port(void)
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

/* 1 if /proc/net/tcp lists 127.0.0.1:port or *:port in LISTEN, 0 if not,
 * -1 if it cannot be read. */
static int port_listening(int port)
{
    char *tab = ts_slurp("/proc/net/tcp", NULL);
    if (!tab)
        return -1;
    int found = 0;
    for (char *line = strchr(tab, '\n'); line && !found;
         line = strchr(line, '\n')) {
        unsigned long addr;
        unsigned lport, st;
        line++;
        if (sscanf(line, "%*u: %lx:%x %*x:%*x %x", &addr, &lport, &st) == 3 &&
            (int)lport == port && st == 0x0A &&
            (addr == 0x0100007FUL || addr == 0))
            found = 1;
    }
    free(tab);
    return found;
}

/* 1 if a TCP connect to 127.0.0.1:port succeeds (fallback probe). */
static int port_connects(int port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port) };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int ok;

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* Wait until the sink listens on port: 0, or -1 (p->pid is 0 if it died). */
static int wait_listening(struct peer *p, int port)
{
    for (long long end = ts_now_ms() + READY_MS; ts_now_ms() < end;
         ts_sleep_ms(POLL_MS)) {
        int r = port_listening(port);
        if (r == 1 || (r < 0 && port_connects(port)))
            return 0;
        if (child_gone(p))
            return -1;
    }
    peer_say("smtp-sink not listening on %d after %d ms", port, READY_MS);
    return -1;
}

/* DIR/sink, writable by the user the sink drops to; 0 or -1. */
static int sink_dirs(const struct peer *p, const char *user)
{
    char path[PATH_MAX + 16];
    if (peer_fmt(path, sizeof path, "%s/sink", p->dir) < 0 ||
        mkdir(path, 0755) < 0) {
        peer_say("mkdir %s/sink: %s", p->dir, strerror(errno));
        return -1;
    }
    if (!user)
        return 0;
    struct passwd *pw = getpwnam(user);
    if (!pw || chmod(p->dir, 0711) < 0 ||
        chown(path, pw->pw_uid, pw->pw_gid) < 0) {
        peer_say("cannot hand %s to user %s: %s", path, user,
                 pw ? strerror(errno) : "no such user");
        return -1;
    }
    /* Every parent must let that user through, or the sink dies on the
       first message with "Permission denied" (say, a 0700 TMPDIR). */
    char up[PATH_MAX + 16];
    peer_fmt(up, sizeof up, "%s", p->dir);
    for (char *slash = strrchr(up, '/'); slash != NULL && slash != up;
         slash = strrchr(up, '/')) {
        *slash = '\0';
        struct stat st;
        if (stat(up, &st) == 0 && !(st.st_mode & S_IXOTH)) {
            peer_say("smtp-sink runs as %s, which cannot enter %s (mode %o); "
                     "set TMPDIR to a directory others may enter",
                     user, up, (unsigned)(st.st_mode & 07777));
            return -1;
        }
    }
    return 0;
}

/* Start smtp-sink with -D/-S capture on port, or (port 0) on a free port,
   retrying a taken one. */
static struct peer *start_sink(int want_port, const char *const *extra_args)
{
    const char *bin = getenv("MAILPOOL_SMTP_SINK");
    const char *user = geteuid() == 0 ? "nobody" : NULL;
    char dump[PATH_MAX + 16], addr[32];
    struct argv a = { 0 };
    struct peer *p = peer_new(PEER_SINK);

    if (!p)
        return NULL;
    if (sink_dirs(p, user) < 0)
        return start_failed(p, &a);
    peer_fmt(dump, sizeof dump, "%s/sink/dump", p->dir);
    for (int attempt = 0; attempt < SINK_TRIES; attempt++) {
        int port = want_port > 0 ? want_port : free_port();
        if (port < 0 || peer_fmt(addr, sizeof addr, "127.0.0.1:%d", port) < 0)
            continue;
        argv_free(&a);
        argv_add(&a, bin && *bin ? bin : "/usr/sbin/smtp-sink");
        if (user) {
            argv_add(&a, "-u");
            argv_add(&a, user);
        }
        argv_add(&a, "-D");
        argv_add(&a, dump);
        argv_add(&a, "-S");
        argv_add(&a, SINK_MARK_ARG);
        argv_add_list(&a, extra_args);
        argv_add(&a, addr);
        argv_add(&a, "64");
        if (spawn(p, &a) < 0)
            break;
        if (wait_listening(p, port) == 0) {
            p->port = port;
            argv_free(&a);
            return p;
        }
        if (p->pid > 0 || !log_mentions(p, "in use") || want_port > 0)
            break; /* hung, or died of something a new port won't fix */
        peer_say("port %d was taken; retrying", port);
    }
    return start_failed(p, &a);
}

struct peer *peer_start_sink(const char *const *extra_args)
{
    return start_sink(0, extra_args);
}

struct peer *peer_start_sink_on(int port, const char *const *extra_args)
{
    return port > 0 ? start_sink(port, extra_args) : NULL;
}

/* ---- stop and accessors ---------------------------------------------- */

/* SIGTERM, bounded wait, SIGKILL; remove DIR; free p. */
void peer_stop(struct peer *p)
{
    if (!p)
        return;
    if (p->pid > 0) {
        int status;
        pid_t r = 0;
        kill(p->pid, SIGTERM);
        for (long long end = ts_now_ms() + STOP_MS; ts_now_ms() < end;
             ts_sleep_ms(10)) {
            r = waitpid(p->pid, &status, WNOHANG);
            if (r != 0 && !(r < 0 && errno == EINTR))
                break;
        }
        if (r == 0) {
            peer_say("%s did not stop on SIGTERM; SIGKILL", p->dir);
            kill(p->pid, SIGKILL);
            while (waitpid(p->pid, &status, 0) < 0 && errno == EINTR)
                ;
        }
        p->pid = 0;
    }
    if (getenv("PEER_VERBOSE"))
        show_log(p, (size_t)1 << 20);
    if (p->dir[0])
        ts_rmtree(p->dir);
    free(p);
}

/* The listening port. */
int peer_port(const struct peer *p)
{
    return p->port;
}

/* The private directory (borrowed). */
const char *peer_dir(const struct peer *p)
{
    return p->dir;
}

/* "127.0.0.1:PORT", caller frees. */
char *peer_hostport(const struct peer *p)
{
    char buf[32];
    peer_fmt(buf, sizeof buf, "127.0.0.1:%d", p->port);
    return strdup(buf);
}

/* DIR/name, caller frees. */
char *peer_path(const struct peer *p, const char *name)
{
    size_t n = strlen(p->dir) + strlen(name) + 2;
    char *s = malloc(n);
    if (s && peer_fmt(s, n, "%s/%s", p->dir, name) < 0) {
        free(s);
        s = NULL;
    }
    return s;
}

/* ---- captured bytes -------------------------------------------------- */

/* DIR/capture/conn-N.<ext> as a buffer; NULL for the sink or when absent. */
static char *conn_file(struct peer *p, int conn, const char *ext, size_t *len)
{
    char path[PATH_MAX + 64];
    if (len)
        *len = 0;
    if (p->kind == PEER_SINK || conn < 1 ||
        peer_fmt(path, sizeof path, "%s/capture/conn-%d.%s", p->dir, conn,
                 ext) < 0)
        return NULL;
    return ts_slurp(path, len);
}

/* Bytes received on connection conn. */
char *peer_conn_bytes(struct peer *p, int conn, size_t *len)
{
    return conn_file(p, conn, "bin", len);
}

/* Bytes sent on connection conn. */
char *peer_conn_sent(struct peer *p, int conn, size_t *len)
{
    return conn_file(p, conn, "out", len);
}

/* Number of conn-N.bin files (connections accepted). */
int peer_conn_count(struct peer *p)
{
    char path[PATH_MAX + 64];
    int n = 0;
    if (p->kind == PEER_SINK)
        return -1;
    /* connection numbers are dense from 1: count until a gap */
    for (;;) {
        if (peer_fmt(path, sizeof path, "%s/capture/conn-%d.bin", p->dir,
                     n + 1) < 0 ||
            access(path, F_OK) != 0)
            return n;
        n++;
    }
}


/* ---- raw-socket helpers ---------------------------------------------- */

/* Blocking socket to the peer with 5 s timeouts. */
int peer_connect(const struct peer *p)
{
    struct sockaddr_in sa = { .sin_family = AF_INET,
                              .sin_port = htons((uint16_t)p->port) };
    struct timeval tv = { 5, 0 };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0)
        return -1;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0 ||
        connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* send() all of s, no SIGPIPE. */
int peer_send(int fd, const char *s)
{
    size_t len = strlen(s), off = 0;
    while (off < len) {
        ssize_t w = send(fd, s + off, len - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        off += (size_t)w;
    }
    return 0;
}

/* Read one whole reply byte by byte, so nothing after it is consumed. */
int peer_read_reply(int fd, char *buf, size_t size)
{
    size_t n = 0, line = 0;
    for (;;) {
        char c;
        ssize_t r = recv(fd, &c, 1, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || n + 1 >= size)
            return -1;
        buf[n++] = c;
        buf[n] = '\0';
        if (c != '\n')
            continue;
        const char *l = buf + line;
        size_t ll = n - line;
        if (ll < 4 || l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '9' ||
            l[2] < '0' || l[2] > '9')
            return -1;
        if (l[3] != '-')
            return (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
        line = n;
    }
}
