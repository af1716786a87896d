/*
 * mta.c - the harness around the real mail servers used as test peers
 * (see mta.h).
 *
 * Process control: every server process we start is our child, made with
 * posix_spawn (stdin /dev/null, stdout and stderr appended to DIR/peer.log).
 * Postfix: `postfix-peer.sh setup DIR` runs to completion, then
 * `postfix -c DIR/etc start-fg` keeps the master in the foreground under the
 * postfix-script shell (our child); mta_stop runs `postfix -c DIR/etc stop`,
 * reaps our child, and checks that the master's pid (queue/pid/master.pid)
 * is gone.  Exim: `exim-peer.sh run DIR` execs through unshare and sh into
 * `exim -bdf`, so our child is the daemon.  smtp-server: node is our child.
 * A server is ready when /proc/net/tcp shows every listener in LISTEN (no
 * probe session), or for node when DIR/ready holds its port.  A start whose
 * listener could not bind (a port taken between the probe and the bind) is
 * tried again from the setup, START_TRIES times.
 *
 * Reading back what arrived is in mta_msg.c.
 *
 * Finding the scripts: $MAILPOOL_ROOT, else the first of ".", "..", "../..",
 * "../../.." and the directories above the test binary that holds
 * tests/peers/postfix-peer.sh.  $MAILPOOL_NODE overrides /usr/bin/node.
 *
 * Errors: start functions print the reason and return NULL; the others
 * return -1 or NULL.  Thread-safety: one struct mta per thread at a time;
 * nothing global is mutable.
 */
#include "tests/support/mta.h"
#include "tests/support/mta_internal.h"
#include "tests/support/tsupport.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define READY_MS 15000 /* longest wait for a server to listen */
#define SETUP_MS 30000 /* longest run of a setup script */
#define STOP_MS 10000  /* longest wait for a server to stop */
#define POLL_MS 25
#define START_TRIES 3

extern char **environ;

/* Print "mta: ..." and a newline on stderr. */
__attribute__((format(printf, 1, 2))) static void say(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    fputs("mta: ", stderr);
    vfprintf(stderr, f, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* snprintf into buf, 0 or -1 when it did not fit. */
__attribute__((format(printf, 3, 4))) int mta_fmt(char *buf, size_t size,
                                                  const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int r = vsnprintf(buf, size, f, ap);
    va_end(ap);
    return r < 0 || (size_t)r >= size ? -1 : 0;
}

/* 1 if dir holds tests/peers/postfix-peer.sh, then its real path in root. */
static int is_root(const char *dir, char *root, size_t size)
{
    char probe[PATH_MAX + 64];
    if (mta_fmt(probe, sizeof probe, "%s/tests/peers/postfix-peer.sh", dir) < 0)
        return 0;
    return access(probe, R_OK) == 0 && realpath(dir, root) &&
           strlen(root) < size;
}

/* The source tree into root (see the top of the file); 0 or -1. */
static int find_root(char *root, size_t size)
{
    static const char *const rel[] = { ".", "..", "../..", "../../.." };
    const char *env = getenv("MAILPOOL_ROOT");
    char exe[PATH_MAX], cand[2 * PATH_MAX];

    if (env && *env && is_root(env, root, size))
        return 0;
    for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++)
        if (is_root(rel[i], root, size))
            return 0;
    ssize_t r = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (r > 0) {
        exe[r] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash)
            *slash = '\0';
        for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++)
            if (mta_fmt(cand, sizeof cand, "%s/%s", exe, rel[i]) == 0 &&
                is_root(cand, root, size))
                return 0;
    }
    say("cannot find tests/peers/postfix-peer.sh; set MAILPOOL_ROOT");
    return -1;
}

/* Print DIR/name (its last tail bytes) on stderr. */
static void show_file(const struct mta *m, const char *name, size_t tail)
{
    char path[2 * PATH_MAX];
    size_t len = 0;
    if (mta_fmt(path, sizeof path, "%s/%s", m->dir, name) < 0)
        return;
    char *log = ts_slurp(path, &len);
    if (!log || len == 0) {
        free(log);
        return;
    }
    const char *start = len > tail ? log + len - tail : log;
    fprintf(stderr, "mta: --- %s ---\n%s%s", path, start,
            log[len - 1] == '\n' ? "" : "\n");
    free(log);
}

/* Print DIR/peer.log (its last tail bytes) on stderr. */
static void show_log(const struct mta *m, size_t tail)
{
    show_file(m, "peer.log", tail);
}

/* The tails of the server's logs on stderr. */
void mta_show_logs(const struct mta *m)
{
    static const char *const names[] = { "peer.log", "maillog", "log/mainlog",
                                         "log/rejectlog", "log/paniclog" };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        show_file(m, names[i], 4000);
}

/* Spawn argv (NULL-ended) with output appended to DIR/peer.log; the pid,
 * or -1. */
static pid_t spawn_logged(const struct mta *m, const char *const *argv)
{
    char logpath[PATH_MAX + 16];
    pid_t pid;
    int rc;

    if (mta_fmt(logpath, sizeof logpath, "%s/peer.log", m->dir) < 0)
        return -1;
    rc = ts_spawn_logged(&pid, (char *const *)(uintptr_t)argv, logpath);
    if (rc != 0) {
        say("spawn %s: %s", argv[0], strerror(rc));
        return -1;
    }
    return pid;
}

/* Waits up to ms for pid; its wait status, or -1 (still running: killed
 * with SIGKILL and reaped). */
static int wait_bounded(pid_t pid, int ms)
{
    int st;
    for (long long end = ts_now_ms() + ms;; ts_sleep_ms(POLL_MS)) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid)
            return st;
        if (r < 0)
            return -1;
        if (ts_now_ms() > end)
            break;
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

/* Runs argv to completion (SETUP_MS at most); 0 when it exited 0. */
static int run_logged(const struct mta *m, const char *const *argv)
{
    pid_t pid = spawn_logged(m, argv);
    if (pid < 0)
        return -1;
    int st = wait_bounded(pid, SETUP_MS);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        say("%s %s failed (status %d)", argv[0], argv[1] ? argv[1] : "", st);
        return -1;
    }
    return 0;
}

/* 1 if our child has exited (and is reaped), 0 if it runs. */
static int child_gone(struct mta *m)
{
    int st;
    if (m->pid <= 0)
        return 1;
    if (waitpid(m->pid, &st, WNOHANG) == 0)
        return 0;
    m->pid = 0;
    return 1;
}

/* 1 if pid is a live process (not a zombie). */
static int alive(pid_t pid)
{
    char path[64];
    if (pid <= 0 || kill(pid, 0) < 0)
        return 0;
    if (mta_fmt(path, sizeof path, "/proc/%d/stat", (int)pid) < 0)
        return 1;
    char *st = ts_slurp(path, NULL);
    if (!st)
        return 0;
    const char *paren = strrchr(st, ')');
    int zombie = paren && paren[1] == ' ' && paren[2] == 'Z';
    free(st);
    return !zombie;
}

/* 1 if /proc/net/tcp lists 127.0.0.1:port in LISTEN. */
static int port_listening(int port)
{
    char *tab = ts_slurp("/proc/net/tcp", NULL);
    int found = 0;
    for (char *line = tab ? strchr(tab, '\n') : NULL; line && !found;
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

/* Reads DIR/ports ("NAME PORT" lines) into m->ports; 0 or -1. */
static int read_ports(struct mta *m)
{
    char path[PATH_MAX + 16];
    if (mta_fmt(path, sizeof path, "%s/ports", m->dir) < 0)
        return -1;
    char *txt = ts_slurp(path, NULL);
    if (!txt) {
        say("no %s", path);
        return -1;
    }
    m->nports = 0;
    char *save = NULL;
    for (char *line = strtok_r(txt, "\n", &save); line && m->nports < MAX_PORTS;
         line = strtok_r(NULL, "\n", &save)) {
        struct mta_port *p = &m->ports[m->nports];
        char *sp = strchr(line, ' ');
        if (!sp || (size_t)(sp - line) >= sizeof p->name)
            continue;
        memcpy(p->name, line, (size_t)(sp - line));
        p->name[sp - line] = '\0';
        char *e;
        long v = strtol(sp + 1, &e, 10);
        if (e == sp + 1 || v <= 0 || v > 65535)
            continue;
        p->port = (int)v;
        m->nports++;
    }
    free(txt);
    return m->nports > 0 ? 0 : -1;
}

/* Waits until every listener is in LISTEN; 0, or -1 when the child died
 * or READY_MS passed. */
static int wait_listening(struct mta *m)
{
    for (long long end = ts_now_ms() + READY_MS; ts_now_ms() < end;
         ts_sleep_ms(POLL_MS)) {
        size_t up = 0;
        for (size_t i = 0; i < m->nports; i++)
            up += (size_t)port_listening(m->ports[i].port);
        if (up == m->nports)
            return 0;
        if (child_gone(m))
            return -1;
    }
    say("%s: not listening after %d ms", m->dir, READY_MS);
    return -1;
}

/* A new struct with a fresh private directory; NULL on error. */
static struct mta *mta_new(enum mta_kind kind)
{
    struct mta *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->kind = kind;
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    if (find_root(m->root, sizeof m->root) < 0 ||
        mta_fmt(m->dir, sizeof m->dir, "%s/mailpool-mta-XXXXXX", tmp) < 0 ||
        !mkdtemp(m->dir)) {
        say("cannot make a directory in %s: %s", tmp, strerror(errno));
        free(m);
        return NULL;
    }
    return m;
}

/* Empties the directory for another try (the log stays). */
static void clear_dir(struct mta *m)
{
    char path[PATH_MAX + 16];
    static const char *const sub[] = { "etc",  "queue", "data", "mail",
                                       "sasl", "spool", "log",  "nss" };
    for (size_t i = 0; i < sizeof sub / sizeof sub[0]; i++)
        if (mta_fmt(path, sizeof path, "%s/%s", m->dir, sub[i]) == 0)
            ts_rmtree(path);
}

/* A failed start: show the log, stop what runs, free. */
static struct mta *start_failed(struct mta *m)
{
    show_log(m, 6000);
    mta_stop(m);
    return NULL;
}

/* One try at Postfix: setup, start-fg, wait; 0 or -1. */
static int postfix_try(struct mta *m)
{
    char script[PATH_MAX + 64], etc[PATH_MAX + 16], pidf[PATH_MAX + 32];
    mta_fmt(script, sizeof script, "%s/tests/peers/postfix-peer.sh", m->root);
    mta_fmt(etc, sizeof etc, "%s/etc", m->dir);
    const char *setup[] = { "/bin/bash", script, "setup", m->dir, NULL };
    const char *run[] = { "/usr/sbin/postfix", "-c", etc, "start-fg", NULL };
    if (run_logged(m, setup) < 0 || read_ports(m) < 0)
        return -1;
    if ((m->pid = spawn_logged(m, run)) < 0) {
        m->pid = 0;
        return -1;
    }
    if (wait_listening(m) < 0)
        return -1;
    mta_fmt(pidf, sizeof pidf, "%s/queue/pid/master.pid", m->dir);
    for (long long end = ts_now_ms() + READY_MS;
         ts_now_ms() < end && !m->master; ts_sleep_ms(POLL_MS)) {
        char *txt = ts_slurp(pidf, NULL);
        long v = txt ? strtol(txt, NULL, 10) : 0;
        free(txt);
        m->master = v > 0 ? (pid_t)v : 0;
    }
    return m->master ? 0 : -1;
}

/* Start a private Postfix (see mta.h). */
struct mta *mta_start_postfix(void)
{
    struct mta *m = mta_new(MTA_POSTFIX);
    if (!m)
        return NULL;
    for (int i = 0; i < START_TRIES; i++) {
        if (postfix_try(m) == 0)
            return m;
        if (m->pid > 0 || m->master > 0)
            break; /* not a lost bind race: give up */
        clear_dir(m);
    }
    return start_failed(m);
}

/* Start a private Exim (see mta.h). */
struct mta *mta_start_exim(void)
{
    char script[PATH_MAX + 64];
    struct mta *m = mta_new(MTA_EXIM);
    if (!m)
        return NULL;
    mta_fmt(script, sizeof script, "%s/tests/peers/exim-peer.sh", m->root);
    const char *setup[] = { "/bin/bash", script, "setup", m->dir, NULL };
    const char *run[] = { "/bin/bash", script, "run", m->dir, NULL };
    for (int i = 0; i < START_TRIES; i++) {
        if (run_logged(m, setup) < 0 || read_ports(m) < 0)
            return start_failed(m);
        if ((m->pid = spawn_logged(m, run)) < 0) {
            m->pid = 0;
            return start_failed(m);
        }
        if (wait_listening(m) == 0)
            return m;
        if (m->pid > 0)
            break;
        clear_dir(m);
    }
    return start_failed(m);
}

/* Waits for DIR/ready to hold node's port; 0 or -1. */
static int node_ready(struct mta *m)
{
    char path[PATH_MAX + 16];
    mta_fmt(path, sizeof path, "%s/ready", m->dir);
    for (long long end = ts_now_ms() + READY_MS; ts_now_ms() < end;
         ts_sleep_ms(POLL_MS)) {
        char *txt = ts_slurp(path, NULL);
        long v = txt ? strtol(txt, NULL, 10) : 0;
        free(txt);
        if (v > 0 && v < 65536) {
            memcpy(m->ports[0].name, "smtp", 5);
            m->ports[0].port = (int)v;
            m->nports = 1;
            return 0;
        }
        if (child_gone(m))
            return -1;
    }
    say("%s: no ready file after %d ms", m->dir, READY_MS);
    return -1;
}

/* Writes DIR/authpass; 0 or -1. */
static int write_authpass(const struct mta *m)
{
    char path[PATH_MAX + 16];
    mta_fmt(path, sizeof path, "%s/authpass", m->dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs("s3cret-pw\n", f);
    if (fclose(f) != 0)
        return -1;
    return chmod(path, 0600); /* mailpool refuses a secret others read */
}

/* Start smtp_server_peer.js (see mta.h). */
struct mta *mta_start_node(int flags, const char *const *extra)
{
    char js[PATH_MAX + 64], ready[PATH_MAX + 16], cap[PATH_MAX + 16],
        cert[PATH_MAX + 16], key[PATH_MAX + 16], pass[PATH_MAX + 16],
        mkcert[PATH_MAX + 64];
    const char *argv[48];
    size_t n = 0;
    const char *node = getenv("MAILPOOL_NODE");
    struct mta *m = mta_new(MTA_NODE);
    if (!m)
        return NULL;
    mta_fmt(js, sizeof js, "%s/tests/peers/smtp_server_peer.js", m->root);
    mta_fmt(ready, sizeof ready, "%s/ready", m->dir);
    mta_fmt(cap, sizeof cap, "%s/capture", m->dir);
    mta_fmt(cert, sizeof cert, "%s/cert.pem", m->dir);
    mta_fmt(key, sizeof key, "%s/key.pem", m->dir);
    mta_fmt(pass, sizeof pass, "%s/authpass", m->dir);
    mta_fmt(mkcert, sizeof mkcert, "%s/tests/peers/make-cert.sh", m->root);
    const char *mk[] = { "/bin/sh", mkcert, m->dir, NULL };
    if (run_logged(m, mk) < 0 || write_authpass(m) < 0)
        return start_failed(m);
    argv[n++] = node && *node ? node : "/usr/bin/node";
    argv[n++] = js;
    argv[n++] = "--ready-file";
    argv[n++] = ready;
    argv[n++] = "--capture-dir";
    argv[n++] = cap;
    if (flags & MTA_NODE_TLS) {
        argv[n++] = "--tls-cert";
        argv[n++] = cert;
        argv[n++] = "--tls-key";
        argv[n++] = key;
    }
    if (flags & MTA_NODE_AUTH) {
        argv[n++] = "--auth-user";
        argv[n++] = MTA_AUTH_USER;
        argv[n++] = "--auth-pass-file";
        argv[n++] = pass;
    }
    for (size_t i = 0;
         extra && extra[i] && n < sizeof argv / sizeof argv[0] - 1; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    if ((m->pid = spawn_logged(m, argv)) < 0) {
        m->pid = 0;
        return start_failed(m);
    }
    if (node_ready(m) < 0)
        return start_failed(m);
    return m;
}

/* Stops Postfix: `postfix stop`, reap the script, check the master. */
static int stop_postfix(struct mta *m)
{
    char etc[PATH_MAX + 16];
    int rc = 0;
    mta_fmt(etc, sizeof etc, "%s/etc", m->dir);
    const char *stop[] = { "/usr/sbin/postfix", "-c", etc, "stop", NULL };
    if (m->pid > 0 || alive(m->master))
        run_logged(m, stop);
    if (m->pid > 0 && wait_bounded(m->pid, STOP_MS) == -1) {
        say("%s: postfix start-fg did not end; killed", m->dir);
        rc = -1;
    }
    m->pid = 0;
    for (long long end = ts_now_ms() + STOP_MS;
         alive(m->master) && ts_now_ms() < end;)
        ts_sleep_ms(POLL_MS);
    if (alive(m->master)) {
        say("%s: postfix master %d still runs; killed", m->dir, (int)m->master);
        kill(m->master, SIGKILL);
        rc = -1;
    }
    return rc;
}

/* Stop (see mta.h). */
int mta_stop(struct mta *m)
{
    int rc = 0;
    if (!m)
        return 0;
    if (m->kind == MTA_POSTFIX) {
        rc = stop_postfix(m);
    } else if (m->pid > 0) {
        kill(m->pid, SIGTERM);
        if (wait_bounded(m->pid, STOP_MS) == -1) {
            say("%s: pid %d did not stop on SIGTERM; killed", m->dir,
                (int)m->pid);
            rc = -1;
        }
        m->pid = 0;
    }
    const char *verbose = getenv("PEER_VERBOSE");
    if (verbose && *verbose && strcmp(verbose, "0") != 0)
        mta_show_logs(m);
    const char *keep = getenv("MTA_KEEP");
    if (keep && *keep && strcmp(keep, "0") != 0)
        say("kept %s", m->dir);
    else
        ts_rmtree(m->dir);
    free(m);
    return rc;
}

/* The port of a listener by name (NULL: the first); -1 if none. */
int mta_port(const struct mta *m, const char *listener)
{
    for (size_t i = 0; i < m->nports; i++)
        if (!listener || strcmp(m->ports[i].name, listener) == 0)
            return m->ports[i].port;
    return -1;
}

/* "127.0.0.1:PORT" of a listener into buf. */
const char *mta_hostport(const struct mta *m, const char *listener, char *buf,
                         size_t size)
{
    int port = mta_port(m, listener);
    return port > 0 && mta_fmt(buf, size, "127.0.0.1:%d", port) == 0 ? buf
                                                                     : NULL;
}

/* The private directory. */
const char *mta_dir(const struct mta *m)
{
    return m->dir;
}

/* DIR/name, caller frees. */
char *mta_path(const struct mta *m, const char *name)
{
    char path[2 * PATH_MAX];
    return mta_fmt(path, sizeof path, "%s/%s", m->dir, name) == 0 ? strdup(path)
                                                                  : NULL;
}

/* Our child's pid. */
pid_t mta_pid(const struct mta *m)
{
    return m->pid;
}

/* Postfix's master, or our child. */
pid_t mta_server_pid(const struct mta *m)
{
    return m->kind == MTA_POSTFIX ? m->master : m->pid;
}
