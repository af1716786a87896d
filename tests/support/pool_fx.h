/*
 * tests/support/pool_fx.h - what the pool tests (tests/integration/
 * test_pool.c and test_pool_limits.c) share: the scriptable fake server
 * (tests/fakes/fake_smtp.py, started with fork/exec) and what it captured,
 * jobs and a tracker of their outcomes, the pool's configuration, the
 * per-test setup and teardown.  Header-only (static inline, one copy of
 * the fake and the tracker per test binary).
 *
 * A test is skipped when /usr/bin/python3 is missing and fails when the
 * fake is (run from the repository root, as make test does).
 * KEEP_CAPTURE=1 keeps the capture directories under /tmp; TEST_LOG=1
 * shows the pool's debug log lines.
 */
#ifndef TESTS_SUPPORT_POOL_FX_H
#define TESTS_SUPPORT_POOL_FX_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "server/job.h"
#include "util/log.h"
#include "server/pool.h"


#define FAKE_PATH "tests/fakes/fake_smtp.py"
#define PYTHON "/usr/bin/python3"
#define MAXJ 128

/* ---- the fake server ---- */

struct fake {
    pid_t pid;
    int port;
    char dir[128];
    char cap[160];
};

static inline double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static inline void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Reads a whole file (caller frees), or NULL. */
static inline char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t n = 0, cap = 0;

    if (f == NULL)
        return NULL;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = (n + 4096 + 1) * 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        size_t r = fread(buf + n, 1, 4096, f);
        n += r;
        if (r == 0)
            break;
    }
    fclose(f);
    buf[n] = '\0';
    if (len != NULL)
        *len = n;
    return buf;
}

/* A copy of the running test's fake, stopped by teardown if a test fails
   (the test's own struct is gone after a failed assertion). */
static struct fake live_fake;

/* Starts the fake with script on port (0: any); skips the test when it
   cannot run. */
static inline void fake_start_on(struct fake *f, const char *script, int port)
{
    char path[256], ready[256], portarg[16];
    double deadline;

    if (access(PYTHON, X_OK) != 0)
        skip(); /* make deps-test installs it */
    if (access(FAKE_PATH, R_OK) != 0)
        fail_msg("%s not found: run from the repository root", FAKE_PATH);
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/mp-test-pool-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->cap, sizeof f->cap, "%s/cap", f->dir);
    snprintf(path, sizeof path, "%s/script.json", f->dir);
    snprintf(ready, sizeof ready, "%s/ready", f->dir);
    write_file(path, script);
    snprintf(portarg, sizeof portarg, "%d", port);
    f->pid = fork();
    assert_true(f->pid >= 0);
    if (f->pid == 0) {
        execl(PYTHON, "python3", FAKE_PATH, "--script", path, "--ready-file",
              ready, "--capture-dir", f->cap, "--workdir", f->dir, "--port",
              portarg, (char *)NULL);
        _exit(127);
    }
    live_fake = *f;
    deadline = now_s() + 15;
    while (now_s() < deadline) {
        char *s = read_file(ready, NULL);
        if (s != NULL) {
            f->port = (int)strtol(s, NULL, 10);
            free(s);
            if (f->port > 0)
                return;
        }
        sleep_ms(20);
    }
    fail_msg("fake SMTP server did not start");
}

static inline void fake_start(struct fake *f, const char *script)
{
    fake_start_on(f, script, 0);
}

static inline int rm_one(const char *p, const struct stat *sb, int flag,
                         struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(p);
    return 0;
}

static inline void fake_stop(struct fake *f)
{
    if (f->pid > 0 && f->pid == live_fake.pid)
        memset(&live_fake, 0, sizeof live_fake);
    if (f->pid > 0) {
        kill(f->pid, SIGTERM);
        waitpid(f->pid, NULL, 0);
        f->pid = 0;
    }
    if (f->dir[0] != '\0' && getenv("KEEP_CAPTURE") == NULL)
        nftw(f->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    f->dir[0] = '\0';
}

/* Lines in a capture file. */
static inline size_t fake_lines(const struct fake *f, const char *name)
{
    char path[256];
    char *s;
    size_t n = 0;

    snprintf(path, sizeof path, "%s/%s", f->cap, name);
    s = read_file(path, NULL);
    if (s == NULL)
        return 0;
    for (char *p = s; *p; p++)
        n += *p == '\n';
    free(s);
    return n;
}

/* How many accepted messages went to rcpt-<i>@example.org, for each i. */
static inline void fake_deliveries(const struct fake *f, int *counts, size_t n)
{
    char path[256];
    char *s, *line, *nl;

    memset(counts, 0, n * sizeof *counts);
    snprintf(path, sizeof path, "%s/messages.jsonl", f->cap);
    s = read_file(path, NULL);
    if (s == NULL)
        return;
    for (line = s; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        json_error_t err;
        json_t *j, *rcpts;
        size_t k;
        json_t *r;

        *nl = '\0';
        j = json_loads(line, 0, &err);
        assert_non_null(j);
        rcpts = json_object_get(j, "rcpt_to");
        json_array_foreach(rcpts, k, r)
        {
            int i;
            if (sscanf(json_string_value(r), "rcpt-%d@", &i) == 1 && i >= 0 &&
                (size_t)i < n)
                counts[i]++;
        }
        json_decref(j);
    }
    free(s);
}

/* Connections the fake accepted (conn-N.bin files). */
static inline size_t fake_conns(const struct fake *f)
{
    DIR *d = opendir(f->cap);
    struct dirent *e;
    size_t n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        n += strncmp(e->d_name, "conn-", 5) == 0 &&
             strstr(e->d_name, ".bin") != NULL;
    closedir(d);
    return n;
}

/* Occurrences of needle in what connection conn (0: all) sent the fake. */
static inline size_t fake_count(const struct fake *f, int conn,
                                const char *needle)
{
    size_t total = 0, nconns = fake_conns(f);

    for (size_t c = 1; c <= nconns; c++) {
        char path[256];
        char *s;

        if (conn != 0 && (size_t)conn != c)
            continue;
        snprintf(path, sizeof path, "%s/conn-%zu.bin", f->cap, c);
        s = read_file(path, NULL);
        if (s == NULL)
            continue;
        for (char *p = s; (p = strstr(p, needle)) != NULL; p++)
            total++;
        free(s);
    }
    return total;
}

/* ---- jobs and their outcomes ---- */

struct outcome {
    int done_calls;
    enum smtp_kind kind;
    int code;
    enum smtp_delivery status;
    int attempts;
    int unreachable;
    double duration_ms;
    char message[256];
    char line0[128];
};

struct tracker {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t done;
    struct outcome out[MAXJ];
    size_t slot_index[MAXJ];
};

static struct tracker T;

static inline void tracker_reset(void)
{
    pthread_mutex_lock(&T.mu);
    T.done = 0;
    memset(T.out, 0, sizeof T.out);
    for (size_t i = 0; i < MAXJ; i++)
        T.slot_index[i] = i;
    pthread_mutex_unlock(&T.mu);
}

static inline void on_done(struct job *job, void *ctx)
{
    size_t i = *(size_t *)ctx;
    struct outcome *o = &T.out[i];

    pthread_mutex_lock(&T.mu);
    o->done_calls++;
    o->kind = job->result.kind;
    o->code = job->result.code;
    o->status = job->result.status;
    o->attempts = job->attempts;
    o->unreachable = job->unreachable;
    o->duration_ms = job->duration_ms;
    snprintf(o->message, sizeof o->message, "%s", job->result.message);
    if (job->result.reply.nlines > 0)
        snprintf(o->line0, sizeof o->line0, "%s", job->result.reply.lines[0]);
    T.done++;
    pthread_cond_broadcast(&T.cv);
    pthread_mutex_unlock(&T.mu);
    job_free(job);
}

/* Waits until n jobs are done (fails after 30 s). */
static inline void wait_done(size_t n)
{
    double deadline = now_s() + 30;

    pthread_mutex_lock(&T.mu);
    while (T.done < n && now_s() < deadline) {
        pthread_mutex_unlock(&T.mu);
        sleep_ms(5);
        pthread_mutex_lock(&T.mu);
    }
    size_t got = T.done;
    pthread_mutex_unlock(&T.mu);
    if (got < n)
        fail_msg("only %zu of %zu jobs done", got, n);
}

static inline char *xstrdup(const char *s)
{
    char *d = strdup(s);

    assert_non_null(d);
    return d;
}

static inline struct job *send_job(size_t i)
{
    struct job *job = job_new(JOB_SEND);
    char buf[128];

    assert_non_null(job);
    job->msg.from = xstrdup("sender@example.org");
    job->msg.to = calloc(1, sizeof *job->msg.to);
    assert_non_null(job->msg.to);
    snprintf(buf, sizeof buf, "rcpt-%zu@example.org", i);
    job->msg.to[0] = xstrdup(buf);
    job->msg.nto = 1;
    job->msg.headers = calloc(1, sizeof *job->msg.headers);
    assert_non_null(job->msg.headers);
    job->msg.nheaders = 1;
    snprintf(buf, sizeof buf, "test %zu", i);
    assert_int_equal(job_set_header(job, 0, "Subject", buf), 0);
    snprintf(buf, sizeof buf, "secret body %zu\nsecond line\n", i);
    job->msg.body = xstrdup(buf);
    job->msg.body_len = strlen(buf);
    snprintf(job->request_id, sizeof job->request_id, "req-%zu", i);
    job->done = on_done;
    job->done_ctx = &T.slot_index[i];
    return job;
}

static inline struct job *query_job(enum job_kind kind, const char *arg,
                                    size_t i)
{
    struct job *job = job_new(kind);

    assert_non_null(job);
    job->arg = arg != NULL ? xstrdup(arg) : NULL;
    job->done = on_done;
    job->done_ctx = &T.slot_index[i];
    return job;
}

static inline void submit_ok(struct pool *pool, struct job *job)
{
    assert_int_equal(pool_submit(pool, job), POOL_OK);
}

/* ---- configuration ---- */

static char s_host[] = "127.0.0.1";
static char s_tls[] = "none";
static char s_helo[] = "pool.test";

static inline void cfg_for(struct cfg *c, int port)
{
    memset(c, 0, sizeof *c);
    c->relay.host = s_host;
    c->relay.port = port;
    c->relay.tls = s_tls;
    c->relay.tls_mode = CFG_TLS_NONE;
    c->relay.helo_name = s_helo;
    c->relay.pipelining = 1;
    c->relay.connect_timeout = 5;
    c->relay.command_timeout = 5;
    c->relay.data_timeout = 5;
    c->pool.workers = 4;
    c->pool.queue = 64;
    c->pool.connections = 2;
    c->pool.messages_per_conn = 1000;
    c->pool.idle_timeout = 30;
    c->pool.retries = 2;
    c->pool.retry_backoff_ms = 10;
    c->pool.drain_timeout = 10;
}

static inline struct pool *pool_start(const struct cfg *c)
{
    char err[256] = "";
    struct pool *pool = pool_new(c, err, sizeof err);

    if (pool == NULL)
        fail_msg("pool_new: %s", err);
    return pool;
}

static inline void pool_end(struct pool *pool)
{
    pool_drain(pool, 10);
    pool_free(pool);
}

static inline int setup(void **state)
{
    (void)state;
    tracker_reset();
    log_set_level(getenv("TEST_LOG") ? "debug" : "error");
    return 0;
}

/* Stops the fake a failed test left running. */
static inline int teardown(void **state)
{
    (void)state;
    if (live_fake.pid > 0) {
        struct fake f = live_fake;
        fake_stop(&f);
    }
    return 0;
}

/* Sends job i and waits for it (sequential tests). */
static inline void send_one(struct pool *pool, size_t i)
{
    submit_ok(pool, send_job(i));
    wait_done(i + 1);
}

#endif /* TESTS_SUPPORT_POOL_FX_H */
