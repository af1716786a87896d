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

#define READY_MS    10000   /* longest wait for a peer to listen */
#define STOP_MS     5000    /* longest wait after SIGTERM */
#define POLL_MS     20
#define SINK_TRIES  5
#define SINK_MARK   "\001peer-sink-message\n"   /* what -S below unescapes to */
#define SINK_MARK_ARG "\\001peer-sink-message\\n"

enum peer_kind { PEER_FAKE, PEER_SINK, PEER_AIOSMTPD };

struct peer {
    enum peer_kind kind;
    pid_t pid;              /* 0 once reaped */
    int port;
    char dir[PATH_MAX];
};

/* A growable argv of owned strings, NULL-terminated. */
struct argv {
    char **v;
    size_t n, cap;
    int oom;
};

/* Print "peer: ..." and a newline on stderr. */
__attribute__((format(printf, 1, 2)))
static void say(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    fputs("peer: ", stderr);
    vfprintf(stderr, f, ap);
    fputc('\n', stderr);
    va_end(ap);
}



/* snprintf into buf, 0 or -1 when it did not fit. */
__attribute__((format(printf, 3, 4)))
static int fmt(char *buf, size_t size, const char *f, ...)
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
            if (!env || fmt(cand, sizeof cand, "%s", env) < 0)
                continue;
        } else if (i <= nrel) {
            if (fmt(cand, sizeof cand, "%s", rel[i - 1]) < 0)
                continue;
        } else {
            ssize_t r = readlink("/proc/self/exe", exe, sizeof exe - 1);
            if (r <= 0)
                continue;
            exe[r] = '\0';
            char *slash = strrchr(exe, '/');
            if (slash)
                *slash = '\0';
            if (fmt(cand, sizeof cand, "%s/%s", exe, rel[i - 1 - nrel]) < 0)
                continue;
        }
        if (fmt(probe, sizeof probe, "%s/tests/fakes/fake_smtp.py", cand) < 0)
            continue;
        if (access(probe, R_OK) == 0 && realpath(cand, root) && strlen(root) < size)
            return 0;
    }
    say("cannot find tests/fakes/fake_smtp.py; set MAILPOOL_ROOT");
    return -1;
}

/* Print the last lines of DIR/peer.log to stderr. */
static void show_log(const struct peer *p, size_t tail)
{
    char path[PATH_MAX + 16];
    if (fmt(path, sizeof path, "%s/peer.log", p->dir) < 0)
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
    if (fmt(path, sizeof path, "%s/peer.log", p->dir) < 0)
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
        say("out of memory");
        return NULL;
    }
    p->kind = kind;
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    if (fmt(p->dir, sizeof p->dir, "%s/mailpool-peer-XXXXXX", tmp) < 0
        || !mkdtemp(p->dir)) {
        say("mkdtemp in %s: %s", tmp, strerror(errno));
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
        say("out of memory");
        return -1;
    }
    if (fmt(logpath, sizeof logpath, "%s/peer.log", p->dir) < 0)
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
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    rc = posix_spawn(&p->pid, a->v[0], &fa, &at, a->v, environ);
    posix_spawnattr_destroy(&at);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        say("spawn %s: %s", a->v[0], strerror(rc));
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
            say("%s exited with status %d", p->dir, WEXITSTATUS(status));
        else if (WIFSIGNALED(status))
            say("%s killed by signal %d", p->dir, WTERMSIG(status));
    }
    p->pid = 0;
    return 1;
}

/* Wait for DIR/ready to hold a port; 0 or -1. */
static int wait_ready(struct peer *p)
{
    char path[PATH_MAX + 16];
    if (fmt(path, sizeof path, "%s/ready", p->dir) < 0)
        return -1;
    for (long long end = ts_now_ms() + READY_MS; ts_now_ms() < end; ts_sleep_ms(POLL_MS)) {
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
    say("no ready file after %d ms", READY_MS);
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

    if (find_root(root, sizeof root) < 0
        || fmt(path, sizeof path, "%s/%s", root, script) < 0)
        return start_failed(p, &a);
    argv_add(&a, py && *py ? py : "/usr/bin/python3");
    argv_add(&a, path);
    if (p->kind == PEER_FAKE) {
        fmt(path, sizeof path, "%s/script.json", p->dir);
        argv_add(&a, "--script");
        argv_add(&a, path);
    }
    fmt(path, sizeof path, "%s/ready", p->dir);
    argv_add(&a, "--ready-file");
    argv_add(&a, path);
    fmt(path, sizeof path, "%s/capture", p->dir);
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
    if (fmt(path, sizeof path, "%s/script.json", p->dir) < 0
        || write_file(path, json, strlen(json)) < 0) {
        say("cannot write %s/script.json: %s", p->dir, strerror(errno));
        peer_stop(p);
        return NULL;
    }
    return start_python(p, "tests/fakes/fake_smtp.py", NULL);
}

/* Start aiosmtpd_peer.py with these flags. */
struct peer *peer_start_aiosmtpd(const char *const *extra_args)
{
    struct peer *p = peer_new(PEER_AIOSMTPD);
    return p ? start_python(p, "tests/peers/aiosmtpd_peer.py", extra_args) : NULL;
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
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0
        && getsockname(fd, (struct sockaddr *)&sa, &slen) == 0)
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
    for (char *line = strchr(tab, '\n'); line && !found; line = strchr(line, '\n')) {
        unsigned long addr;
        unsigned lport, st;
        line++;
        if (sscanf(line, "%*u: %lx:%x %*x:%*x %x", &addr, &lport, &st) == 3
            && (int)lport == port && st == 0x0A
            && (addr == 0x0100007FUL || addr == 0))
            found = 1;
    }
    free(tab);
    return found;
}

/* 1 if a TCP connect to 127.0.0.1:port succeeds (fallback probe). */
static int port_connects(int port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
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
    for (long long end = ts_now_ms() + READY_MS; ts_now_ms() < end; ts_sleep_ms(POLL_MS)) {
        int r = port_listening(port);
        if (r == 1 || (r < 0 && port_connects(port)))
            return 0;
        if (child_gone(p))
            return -1;
    }
    say("smtp-sink not listening on %d after %d ms", port, READY_MS);
    return -1;
}

/* DIR/sink, writable by the user the sink drops to; 0 or -1. */
static int sink_dirs(const struct peer *p, const char *user)
{
    char path[PATH_MAX + 16];
    if (fmt(path, sizeof path, "%s/sink", p->dir) < 0 || mkdir(path, 0755) < 0) {
        say("mkdir %s/sink: %s", p->dir, strerror(errno));
        return -1;
    }
    if (!user)
        return 0;
    struct passwd *pw = getpwnam(user);
    if (!pw || chmod(p->dir, 0711) < 0 || chown(path, pw->pw_uid, pw->pw_gid) < 0) {
        say("cannot hand %s to user %s: %s", path, user,
            pw ? strerror(errno) : "no such user");
        return -1;
    }
    /* Every parent must let that user through, or the sink dies on the
       first message with "Permission denied" (say, a 0700 TMPDIR). */
    char up[PATH_MAX + 16];
    fmt(up, sizeof up, "%s", p->dir);
    for (char *slash = strrchr(up, '/'); slash != NULL && slash != up;
         slash = strrchr(up, '/')) {
        *slash = '\0';
        struct stat st;
        if (stat(up, &st) == 0 && !(st.st_mode & S_IXOTH)) {
            say("smtp-sink runs as %s, which cannot enter %s (mode %o); "
                "set TMPDIR to a directory others may enter", user, up,
                (unsigned)(st.st_mode & 07777));
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
    fmt(dump, sizeof dump, "%s/sink/dump", p->dir);
    for (int attempt = 0; attempt < SINK_TRIES; attempt++) {
        int port = want_port > 0 ? want_port : free_port();
        if (port < 0 || fmt(addr, sizeof addr, "127.0.0.1:%d", port) < 0)
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
            break;   /* hung, or died of something a new port won't fix */
        say("port %d was taken; retrying", port);
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
        for (long long end = ts_now_ms() + STOP_MS; ts_now_ms() < end; ts_sleep_ms(10)) {
            r = waitpid(p->pid, &status, WNOHANG);
            if (r != 0 && !(r < 0 && errno == EINTR))
                break;
        }
        if (r == 0) {
            say("%s did not stop on SIGTERM; SIGKILL", p->dir);
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
    fmt(buf, sizeof buf, "127.0.0.1:%d", p->port);
    return strdup(buf);
}

/* DIR/name, caller frees. */
char *peer_path(const struct peer *p, const char *name)
{
    size_t n = strlen(p->dir) + strlen(name) + 2;
    char *s = malloc(n);
    if (s && fmt(s, n, "%s/%s", p->dir, name) < 0) {
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
    if (p->kind == PEER_SINK || conn < 1
        || fmt(path, sizeof path, "%s/capture/conn-%d.%s", p->dir, conn, ext) < 0)
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
        if (fmt(path, sizeof path, "%s/capture/conn-%d.bin", p->dir, n + 1) < 0
            || access(path, F_OK) != 0)
            return n;
        n++;
    }
}

/* ---- messages -------------------------------------------------------- */

/* Value of one base64 digit, -1 for anything else. */
static int b64_val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Decode base64 (padding optional) into a NUL-terminated buffer. */
static int b64_decode(const char *in, unsigned char **out, size_t *len)
{
    size_t n = strlen(in), o = 0;
    unsigned acc = 0;
    int bits = 0;
    unsigned char *buf = malloc(n / 4 * 3 + 4);
    if (!buf)
        return -1;
    for (size_t i = 0; i < n && in[i] != '='; i++) {
        int v = b64_val((unsigned char)in[i]);
        if (v < 0) {
            free(buf);
            return -1;
        }
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    buf[o] = '\0';
    *out = buf;
    *len = o;
    return 0;
}

/* A new zeroed slot at the end of *v; NULL on no memory. */
static struct peer_msg *msg_push(struct peer_msg **v, size_t *n, size_t *cap)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        struct peer_msg *nv = realloc(*v, nc * sizeof *nv);
        if (!nv)
            return NULL;
        *v = nv;
        *cap = nc;
    }
    struct peer_msg *m = &(*v)[(*n)++];
    memset(m, 0, sizeof *m);
    m->tls = m->auth = -1;
    return m;
}

/* Free what m holds (not m itself). */
static void msg_clear(struct peer_msg *m)
{
    free(m->mail_from);
    free(m->mail_params);
    for (size_t k = 0; k < m->nrcpt; k++)
        free(m->rcpt_to[k]);
    free(m->rcpt_to);
    free(m->data);
    memset(m, 0, sizeof *m);
}

/* Add a copy of s[0..len) to m's recipients; 0 or -1. */
static int msg_add_rcpt(struct peer_msg *m, const char *s, size_t len)
{
    char **v = realloc(m->rcpt_to, (m->nrcpt + 1) * sizeof *v);
    if (!v)
        return -1;
    m->rcpt_to = v;
    if (!(v[m->nrcpt] = strndup(s, len)))
        return -1;
    m->nrcpt++;
    return 0;
}

/* A JSON string member, or "" when absent or null; copied. */
static char *json_str_dup(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return strdup(s ? s : "");
}

/* MAIL parameters from "mail_params" (fake) or "mail_options" (aiosmtpd). */
static char *json_params(json_t *o)
{
    json_t *arr = json_object_get(o, "mail_options");
    if (!json_is_array(arr))
        return json_str_dup(o, "mail_params");
    size_t total = 1, i;
    json_t *v;
    json_array_foreach(arr, i, v)
        total += strlen(json_string_value(v) ? json_string_value(v) : "") + 1;
    char *s = calloc(1, total);
    if (!s)
        return NULL;
    json_array_foreach(arr, i, v) {
        if (i)
            strncat(s, " ", total - strlen(s) - 1);
        strncat(s, json_string_value(v) ? json_string_value(v) : "",
                total - strlen(s) - 1);
    }
    return s;
}

/* Fill m from one messages.jsonl object; 0 or -1. */
static int msg_from_json(json_t *o, struct peer_msg *m)
{
    json_t *rcpts = json_object_get(o, "rcpt_to"), *v;
    const char *b64 = json_string_value(json_object_get(o, "data_b64"));
    size_t i;

    m->conn = (int)json_integer_value(json_object_get(o, "conn"));
    m->mail_from = json_str_dup(o, "mail_from");
    m->mail_params = json_params(o);
    if (!m->mail_from || !m->mail_params || !b64
        || b64_decode(b64, &m->data, &m->len) < 0)
        return -1;
    json_array_foreach(rcpts, i, v) {
        const char *r = json_string_value(v);
        if (!r || msg_add_rcpt(m, r, strlen(r)) < 0)
            return -1;
    }
    if (json_is_boolean(json_object_get(o, "tls")))
        m->tls = json_is_true(json_object_get(o, "tls"));
    if (json_is_boolean(json_object_get(o, "authenticated")))
        m->auth = json_is_true(json_object_get(o, "authenticated"));
    return 0;
}

/* Parse DIR/capture/messages.jsonl; complete lines only. */
static int read_jsonl(struct peer *p, struct peer_msg **out, size_t *n)
{
    char path[PATH_MAX + 32];
    size_t cap = 0;
    fmt(path, sizeof path, "%s/capture/messages.jsonl", p->dir);
    char *txt = ts_slurp(path, NULL);
    if (!txt)
        return 0;   /* nothing captured yet */
    for (char *line = txt, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        json_error_t err;
        json_t *o = json_loadb(line, (size_t)(nl - line), 0, &err);
        struct peer_msg *m = o ? msg_push(out, n, &cap) : NULL;
        int bad = !m || msg_from_json(o, m) < 0;
        json_decref(o);
        if (bad) {
            say("%s: bad line: %s", path, o ? "fields" : err.text);
            free(txt);
            return -1;
        }
    }
    free(txt);
    return 0;
}

/* "<a@b> SIZE=1" -> addr "a@b", params "SIZE=1" (either may be NULL). */
static int split_path(const char *s, size_t len, char **addr, char **params)
{
    const char *end = s + len, *a = s, *ae, *rest;
    if (len && *s == '<') {
        a = s + 1;
        ae = memchr(a, '>', (size_t)(end - a));
        if (!ae)
            ae = end;
        rest = ae < end ? ae + 1 : end;
    } else {
        ae = memchr(s, ' ', len);
        if (!ae)
            ae = end;
        rest = ae;
    }
    while (rest < end && *rest == ' ')
        rest++;
    if (addr && !(*addr = strndup(a, (size_t)(ae - a))))
        return -1;
    if (params && !(*params = strndup(rest, (size_t)(end - rest))))
        return -1;
    return 0;
}

/* The sink's body (CRs dropped, dots un-stuffed, one extra LF at the end):
 * drop that LF and turn each LF into CRLF. */
static int sink_body(struct peer_msg *m, const char *s, size_t len)
{
    size_t nl = 0;
    if (len && s[len - 1] == '\n')
        len--;
    for (size_t i = 0; i < len; i++)
        nl += s[i] == '\n';
    if (!(m->data = malloc(len + nl + 1)))
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\n')
            m->data[m->len++] = '\r';
        m->data[m->len++] = (unsigned char)s[i];
    }
    m->data[m->len] = '\0';
    return 0;
}

/* One dump block (after the marker): X- records, Received (3 lines), body. */
static int sink_block(struct peer_msg *m, const char *s, size_t len)
{
    const char *end = s + len;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        if (!nl)
            return -1;
        size_t ll = (size_t)(nl - s);
        if (ll > 13 && memcmp(s, "X-Mail-Args: ", 13) == 0) {
            if (split_path(s + 13, ll - 13, &m->mail_from, &m->mail_params) < 0)
                return -1;
        } else if (ll > 13 && memcmp(s, "X-Rcpt-Args: ", 13) == 0) {
            char *r = NULL;
            int bad = split_path(s + 13, ll - 13, &r, NULL) < 0
                      || msg_add_rcpt(m, r, strlen(r)) < 0;
            free(r);
            if (bad)
                return -1;
        } else if (ll >= 10 && memcmp(s, "Received: ", 10) == 0) {
            s = nl + 1;
            for (int k = 0; k < 2 && s < end && *s == '\t'; k++) {
                nl = memchr(s, '\n', (size_t)(end - s));
                s = nl ? nl + 1 : end;
            }
            if (!m->mail_from && !(m->mail_from = strdup("")))
                return -1;
            if (!m->mail_params && !(m->mail_params = strdup("")))
                return -1;
            return sink_body(m, s, (size_t)(end - s));
        }
        s = nl + 1;
    }
    return -1;
}

/* Parse DIR/sink/dump, split on SINK_MARK. */
static int read_sink(struct peer *p, struct peer_msg **out, size_t *n)
{
    char path[PATH_MAX + 32];
    size_t len, cap = 0, mlen = strlen(SINK_MARK);
    fmt(path, sizeof path, "%s/sink/dump", p->dir);
    char *txt = ts_slurp(path, &len);
    if (!txt)
        return 0;
    char *s = txt, *end = txt + len;
    while (s < end) {
        if ((size_t)(end - s) < mlen || memcmp(s, SINK_MARK, mlen) != 0)
            break;
        s += mlen;
        char *next = memmem(s, (size_t)(end - s), SINK_MARK, mlen);
        if (!next)
            next = end;
        struct peer_msg *m = msg_push(out, n, &cap);
        if (!m || sink_block(m, s, (size_t)(next - s)) < 0) {
            if (m && next == end) {   /* last block still being written */
                msg_clear(m);
                (*n)--;
                break;
            }
            say("%s: cannot parse message %zu", path, *n);
            free(txt);
            return -1;
        }
        s = next;
    }
    free(txt);
    return 0;
}

/* Messages from messages.jsonl or the sink dump. */
int peer_messages(struct peer *p, struct peer_msg **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    int r = p->kind == PEER_SINK ? read_sink(p, out, n) : read_jsonl(p, out, n);
    if (r < 0) {
        peer_msgs_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    return r;
}

/* Free a peer_messages array. */
void peer_msgs_free(struct peer_msg *msgs, size_t n)
{
    if (!msgs)
        return;
    for (size_t i = 0; i < n; i++)
        msg_clear(&msgs[i]);
    free(msgs);
}

/* Poll peer_messages until n are there or the time is up. */
int peer_wait_messages(struct peer *p, size_t n, int timeout_ms)
{
    long long end = ts_now_ms() + timeout_ms;
    for (;;) {
        struct peer_msg *m;
        size_t got;
        if (peer_messages(p, &m, &got) < 0)
            return -1;
        peer_msgs_free(m, got);
        if (got >= n || ts_now_ms() >= end)
            return (int)got;
        ts_sleep_ms(POLL_MS);
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
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0
        || setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) < 0
        || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
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
        if (ll < 4 || l[0] < '2' || l[0] > '5' || l[1] < '0' || l[1] > '9'
            || l[2] < '0' || l[2] > '9')
            return -1;
        if (l[3] != '-')
            return (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
        line = n;
    }
}
