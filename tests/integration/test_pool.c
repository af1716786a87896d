/*
 * tests/integration/test_pool.c - the worker pool and its SMTP connection
 * pool against the scriptable fake server (tests/fakes/fake_smtp.py).
 *
 * Every test starts its own fake with a JSON script, runs jobs through
 * pool_new/pool_submit/pool_drain, and checks what crossed the wire from the
 * fake's capture directory: messages.jsonl (one line per accepted message;
 * each test message has its own recipient "rcpt-N@example.org", so "exactly
 * once" is counted per N), conn-N.bin (the bytes of each connection: how
 * many connections, how many MAIL commands, whether QUIT was sent).
 *
 * The fake is started here with fork/exec (tests/support/peer.h did not exist
 * when this was written).  A test is skipped when /usr/bin/python3 is
 * missing and fails when the fake is (run from the repository root, as make
 * test does).  KEEP_CAPTURE=1 keeps the capture directories under /tmp;
 * TEST_LOG=1 shows the pool's debug log lines.
 */
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
#include "server/log.h"
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

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");

    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Reads a whole file (caller frees), or NULL. */
static char *read_file(const char *path, size_t *len)
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
static void fake_start_on(struct fake *f, const char *script, int port)
{
    char path[256], ready[256], portarg[16];
    double deadline;

    if (access(PYTHON, X_OK) != 0)
        skip();                     /* make deps-test installs it */
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
              ready, "--capture-dir", f->cap, "--workdir", f->dir,
              "--port", portarg, (char *)NULL);
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

static void fake_start(struct fake *f, const char *script)
{
    fake_start_on(f, script, 0);
}

static int rm_one(const char *p, const struct stat *sb, int flag,
                  struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(p);
    return 0;
}

static void fake_stop(struct fake *f)
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
static size_t fake_lines(const struct fake *f, const char *name)
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
static void fake_deliveries(const struct fake *f, int *counts, size_t n)
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
        json_array_foreach(rcpts, k, r) {
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
static size_t fake_conns(const struct fake *f)
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
static size_t fake_count(const struct fake *f, int conn, const char *needle)
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

static void tracker_reset(void)
{
    pthread_mutex_lock(&T.mu);
    T.done = 0;
    memset(T.out, 0, sizeof T.out);
    for (size_t i = 0; i < MAXJ; i++)
        T.slot_index[i] = i;
    pthread_mutex_unlock(&T.mu);
}

static void on_done(struct job *job, void *ctx)
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
static void wait_done(size_t n)
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

static char *xstrdup(const char *s)
{
    char *d = strdup(s);

    assert_non_null(d);
    return d;
}

static struct job *send_job(size_t i)
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

static struct job *query_job(enum job_kind kind, const char *arg, size_t i)
{
    struct job *job = job_new(kind);

    assert_non_null(job);
    job->arg = arg != NULL ? xstrdup(arg) : NULL;
    job->done = on_done;
    job->done_ctx = &T.slot_index[i];
    return job;
}

static void submit_ok(struct pool *pool, struct job *job)
{
    assert_int_equal(pool_submit(pool, job), POOL_OK);
}

/* ---- configuration ---- */

static char s_host[] = "127.0.0.1";
static char s_tls[] = "none";
static char s_helo[] = "pool.test";

static void cfg_for(struct cfg *c, int port)
{
    memset(c, 0, sizeof *c);
    c->relay.host = s_host;
    c->relay.port = port;
    c->relay.tls = s_tls;
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

static struct pool *pool_start(const struct cfg *c)
{
    char err[256] = "";
    struct pool *pool = pool_new(c, err, sizeof err);

    if (pool == NULL)
        fail_msg("pool_new: %s", err);
    return pool;
}

static void pool_end(struct pool *pool)
{
    pool_drain(pool, 10);
    pool_free(pool);
}

static int setup(void **state)
{
    (void)state;
    tracker_reset();
    log_set_level(getenv("TEST_LOG") ? "debug" : "error");
    return 0;
}

/* Stops the fake a failed test left running. */
static int teardown(void **state)
{
    (void)state;
    if (live_fake.pid > 0) {
        struct fake f = live_fake;
        fake_stop(&f);
    }
    return 0;
}

/* Sends job i and waits for it (sequential tests). */
static void send_one(struct pool *pool, size_t i)
{
    submit_ok(pool, send_job(i));
    wait_done(i + 1);
}

/* ---- tests ---- */

static void test_batch_delivered_exactly_once_over_pooled_connections(
    void **state)
{
    enum { N = 40 };
    struct fake f;
    struct cfg c;
    struct pool *pool;
    struct pool_stats st;
    int counts[N];

    (void)state;
    fake_start(&f, "{}");
    cfg_for(&c, f.port);
    pool = pool_start(&c);
    for (size_t i = 0; i < N; i++)
        submit_ok(pool, send_job(i));
    wait_done(N);
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(T.out[i].done_calls, 1);
        assert_int_equal(T.out[i].kind, SMTP_OK);
        assert_int_equal(T.out[i].code, 250);
        assert_int_equal(T.out[i].status, SMTP_DELIVERY_SENT);
        assert_int_equal(T.out[i].attempts, 1);
        assert_true(T.out[i].duration_ms > 0);
    }
    pool_stats(pool, &st);
    assert_true(st.conns_opened <= 2);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.workers, 4);
    assert_int_equal(st.conns_failed, 0);
    pool_end(pool);
    fake_deliveries(&f, counts, N);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(counts[i], 1);
    assert_int_equal(fake_lines(&f, "messages.jsonl"), N);
    assert_true(fake_conns(&f) <= 2);               /* reuse */
    assert_int_equal(fake_count(&f, 0, "MAIL FROM:"), N);
    assert_int_equal(fake_count(&f, 0, "QUIT"), fake_conns(&f));
    fake_stop(&f);
}

static void test_unsolicited_421_on_idle_connection_is_replaced(void **state)
{
    struct fake f;
    struct cfg c;
    struct pool *pool;
    int counts[2];

    (void)state;
    /* After the first message the server pushes a 421 nobody asked for:
       it sits unread in the pooled connection and must not be taken as the
       answer to the next command. */
    fake_start(&f, "{\"rules\":[{\"match\":\"DOT\",\"conn\":1,\"times\":1,"
                   "\"inject\":\"421 4.4.2 fake.test idle timeout\\r\\n\"}]}");
    cfg_for(&c, f.port);
    c.pool.workers = 1;
    c.pool.connections = 1;
    pool = pool_start(&c);
    send_one(pool, 0);
    sleep_ms(100);
    send_one(pool, 1);
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(T.out[i].status, SMTP_DELIVERY_SENT);
        assert_int_equal(T.out[i].attempts, 1);
    }
    pool_end(pool);
    fake_deliveries(&f, counts, 2);
    assert_int_equal(counts[0], 1);
    assert_int_equal(counts[1], 1);
    assert_int_equal(fake_conns(&f), 2);
    assert_int_equal(fake_count(&f, 1, "MAIL FROM:"), 1);
    assert_int_equal(fake_count(&f, 2, "MAIL FROM:"), 1);
    fake_stop(&f);
}

static void test_idle_connection_closed_by_server_is_replaced(void **state)
{
    struct fake f1, f2;
    struct cfg c;
    struct pool *pool;
    struct pool_stats st;
    int counts1[2], counts2[2];

    (void)state;
    fake_start(&f1, "{}");
    cfg_for(&c, f1.port);
    c.pool.workers = 1;
    c.pool.connections = 1;
    c.pool.retries = 0;
    pool = pool_start(&c);
    send_one(pool, 0);
    pool_stats(pool, &st);
    assert_int_equal(st.conns_idle, 1);
    /* The relay goes away (closing the idle pooled connection) and a new
       one comes up on the same port.  The fake logs a message just after
       its 250 went out: wait for that line before counting. */
    for (int i = 0; i < 300; i++) {
        fake_deliveries(&f1, counts1, 2);
        if (counts1[0] > 0)
            break;
        sleep_ms(10);
    }
    fake_stop(&f1);
    fake_start_on(&f2, "{}", c.relay.port);
    send_one(pool, 1);
    assert_int_equal(T.out[1].status, SMTP_DELIVERY_SENT);
    assert_int_equal(T.out[1].attempts, 1);
    pool_end(pool);
    fake_deliveries(&f2, counts2, 2);
    assert_int_equal(counts1[0] + counts2[0], 1);
    assert_int_equal(counts1[1] + counts2[1], 1);
    assert_int_equal(fake_conns(&f2), 1);
    assert_int_equal(fake_count(&f2, 0, "MAIL FROM:"), 1);
    fake_stop(&f2);
}

static void test_reused_connection_dead_at_rset_is_replaced_uncounted(
    void **state)
{
    struct fake f;
    struct cfg c;
    struct pool *pool;
    struct pool_stats st;
    int counts[2];

    (void)state;
    /* The stale connection passes the idle check but dies at RSET. */
    fake_start(&f, "{\"rules\":[{\"match\":\"^RSET\",\"conn\":1,"
                   "\"action\":\"drop\"}]}");
    cfg_for(&c, f.port);
    c.pool.workers = 1;
    c.pool.connections = 1;
    c.pool.retries = 0;             /* a replacement is not a retry */
    pool = pool_start(&c);
    send_one(pool, 0);
    send_one(pool, 1);
    assert_int_equal(T.out[1].status, SMTP_DELIVERY_SENT);
    assert_int_equal(T.out[1].attempts, 1);
    pool_stats(pool, &st);
    assert_int_equal(st.retries, 1);
    pool_end(pool);
    fake_deliveries(&f, counts, 2);
    assert_int_equal(counts[0], 1);
    assert_int_equal(counts[1], 1);
    assert_int_equal(fake_conns(&f), 2);
    fake_stop(&f);
}

static void test_421_at_mail_retried_on_fresh_connection(void **state)
{
    struct fake f;
    struct cfg c;
    struct pool *pool;
    int counts[1];

    (void)state;
    fake_start(&f, "{\"rules\":[{\"match\":\"^MAIL\",\"conn\":1,"
                   "\"reply\":\"421 4.7.0 too busy\",\"action\":\"close\"}]}");
    cfg_for(&c, f.port);
    c.pool.connections = 1;
    pool = pool_start(&c);
    send_one(pool, 0);
    assert_int_equal(T.out[0].status, SMTP_DELIVERY_SENT);
    assert_int_equal(T.out[0].attempts, 2);
    pool_end(pool);
    fake_deliveries(&f, counts, 1);
    assert_int_equal(counts[0], 1);
    assert_int_equal(fake_conns(&f), 2);
    fake_stop(&f);
}

static void test_no_reply_after_dot_is_unknown_and_never_resent(void **state)
{
    struct fake f;
    struct cfg c;
    struct pool *pool;

    (void)state;
    fake_start(&f, "{\"rules\":[{\"match\":\"DOT\",\"action\":\"drop\"}]}");
    cfg_for(&c, f.port);
    c.pool.retries = 3;
    pool = pool_start(&c);
    send_one(pool, 0);
    assert_int_equal(T.out[0].status, SMTP_DELIVERY_UNKNOWN);
    assert_int_equal(T.out[0].attempts, 1);
    assert_int_equal(T.out[0].unreachable, 0);
    pool_end(pool);
    assert_int_equal(fake_count(&f, 0, "MAIL FROM:"), 1);
    assert_int_equal(fake_conns(&f), 1);
    assert_int_equal(fake_lines(&f, "messages.jsonl"), 0);
    assert_int_equal(fake_lines(&f, "rejected.jsonl"), 1);
    fake_stop(&f);
}

static void test_5xx_is_final_and_keeps_the_connection(void **state)
{
    struct fake f;
    struct cfg c;
    struct pool *pool;
    struct pool_stats st;

    (void)state;
    fake_start(&f, "{\"rules\":[{\"match\":\"^MAIL\",\"times\":1,"
                   "\"reply\":\"550 5.7.1 sender refused\"}]}");
    cfg_for(&c, f.port);
    c.pool.workers = 1;
    pool = pool_start(&c);
    send_one(pool, 0);
    assert_int_equal(T.out[0].kind, SMTP_ERR_REPLY);
    assert_int_equal(T.out[0].code, 550);
    assert_int_equal(T.out[0].status, SMTP_DELIVERY_FAILED);
    assert_int_equal(T.out[0].attempts, 1);
    send_one(pool, 1);
    assert_int_equal(T.out[1].status, SMTP_DELIVERY_SENT);
    pool_stats(pool, &st);
    assert_int_equal(st.conns_opened, 1);
    assert_int_equal(st.retries, 0);
    pool_end(pool);
    assert_int_equal(fake_count(&f, 0, "MAIL FROM:"), 2);
    fake_stop(&f);
}

static void test_rejected_recipient_is_700_and_final(void **state)
{
    struct fake f;
    struct cfg c;
    struct pool *pool;

    (void)state;
    fake_start(&f, "{\"rules\":[{\"match\":\"^RCPT\","
                   "\"reply\":\"550 5.1.1 no such user\"}]}");
    cfg_for(&c, f.port);
    pool = pool_start(&c);
    send_one(pool, 0);
    assert_int_equal(T.out[0].kind, SMTP_ERR_REJECTED);
    assert_int_equal(T.out[0].code, 700);
    assert_int_equal(T.out[0].status, SMTP_DELIVERY_REJECTED);
    assert_int_equal(T.out[0].attempts, 1);
    pool_end(pool);
    assert_int_equal(fake_count(&f, 0, "MAIL FROM:"), 1);
    fake_stop(&f);
}

static void test_4xx_retried_until_the_limit(void **state)
{
    struct fake f;
    struct cfg c;
    struct pool *pool;
    struct pool_stats st;

    (void)state;
    fake_start(&f, "{\"rules\":[{\"match\":\"^MAIL\","
                   "\"reply\":\"451 4.3.0 try again later\"}]}");
    cfg_for(&c, f.port);
    c.pool.retries = 2;
    pool = pool_start(&c);
    send_one(pool, 0);
    assert_int_equal(T.out[0].kind, SMTP_ERR_REPLY);
    assert_int_equal(T.out[0].code, 451);
    assert_int_equal(T.out[0].status, SMTP_DELIVERY_FAILED);
    assert_int_equal(T.out[0].attempts, 3);
    /* backoff 10 + 20 ms at least */
    assert_true(T.out[0].duration_ms >= 30);
    pool_stats(pool, &st);
    assert_int_equal(st.retries, 2);
    assert_int_equal(st.conns_opened, 1);     /* a 451 keeps it */
    pool_end(pool);
    assert_int_equal(fake_count(&f, 0, "MAIL FROM:"), 3);
    assert_int_equal(fake_lines(&f, "messages.jsonl"), 0);
    fake_stop(&f);
}

/* A TCP port on 127.0.0.1 that nothing listens on. */
static int closed_port(void)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), port;

    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    port = ntohs(a.sin_port);
    close(fd);
    return port;
}

static void test_unreachable_relay_is_flagged(void **state)
{
    struct cfg c;
    struct pool *pool;
    struct pool_stats st;

    (void)state;
    cfg_for(&c, closed_port());
    c.pool.retries = 2;
    pool = pool_start(&c);
    assert_int_equal(pool_ready(pool), 0);
    send_one(pool, 0);
    assert_int_equal(T.out[0].kind, SMTP_ERR_CONN);
    assert_int_equal(T.out[0].status, SMTP_DELIVERY_FAILED);
    assert_int_equal(T.out[0].attempts, 3);
    assert_int_equal(T.out[0].unreachable, 1);
    pool_stats(pool, &st);
    assert_int_equal(st.conns_failed, 3);
    assert_int_equal(st.conns_open, 0);
    pool_end(pool);
}

static void test_ready_when_relay_answers(void **state)
{
    struct fake f;
    struct cfg c;
    struct pool *pool;

    (void)state;
    fake_start(&f, "{}");
    cfg_for(&c, f.port);
    pool = pool_start(&c);
    assert_int_equal(pool_ready(pool), 1);          /* by a probe */
    assert_int_equal(fake_conns(&f), 1);
    assert_int_equal(pool_ready(pool), 1);          /* cached: no probe */
    assert_int_equal(fake_conns(&f), 1);
    assert_int_equal(fake_count(&f, 1, "QUIT"), 1);
    send_one(pool, 0);
    assert_int_equal(pool_ready(pool), 1);          /* an open conn */
    pool_end(pool);
    fake_stop(&f);
}

/* Waits until the pool reports n busy workers. */
static void wait_busy(struct pool *pool, size_t n)
{
    double deadline = now_s() + 10;
    struct pool_stats st;

    do {
        pool_stats(pool, &st);
        if (st.busy_workers >= n)
            return;
        sleep_ms(5);
    } while (now_s() < deadline);
    fail_msg("workers never got busy");
}

static void test_full_queue_answers_at_once(void **state)
{
    struct fake f;
    struct cfg c;
    struct pool *pool;
    struct pool_stats st;
    struct job *extra;
    double t0;
    int counts[3];

    (void)state;
    fake_start(&f, "{\"rules\":[{\"match\":\"DOT\","
                   "\"action\":\"delay:0.5\"}]}");
    cfg_for(&c, f.port);
    c.pool.workers = 1;
    c.pool.queue = 2;
    pool = pool_start(&c);
    submit_ok(pool, send_job(0));
    wait_busy(pool, 1);
    submit_ok(pool, send_job(1));
    submit_ok(pool, send_job(2));
    extra = send_job(3);
    t0 = now_s();
    assert_int_equal(pool_submit(pool, extra), POOL_FULL);
    assert_true(now_s() - t0 < 0.05);               /* never blocks */
    pool_stats(pool, &st);
    assert_int_equal(st.queued, 2);
    assert_int_equal(st.busy_workers, 1);
    job_free(extra);                                /* still ours */
    wait_done(3);
    pool_end(pool);
    fake_deliveries(&f, counts, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(counts[i], 1);
    fake_stop(&f);
}

static void test_drain_finishes_in_flight_and_quits(void **state)
{
    enum { N = 6 };
    struct fake f;
    struct cfg c;
    struct pool *pool;
    struct pool_stats st;
    struct job *late;
    int counts[N];

    (void)state;
    fake_start(&f, "{\"rules\":[{\"match\":\"DOT\","
                   "\"action\":\"delay:0.2\"}]}");
    cfg_for(&c, f.port);
    c.pool.workers = 2;
    pool = pool_start(&c);
    for (size_t i = 0; i < N; i++)
        submit_ok(pool, send_job(i));
    wait_busy(pool, 1);
    pool_drain(pool, 10);
    assert_int_equal(T.done, N);                    /* all answered */
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(T.out[i].done_calls, 1);
        assert_int_equal(T.out[i].status, SMTP_DELIVERY_SENT);
    }
    late = send_job(N);
    assert_int_equal(pool_submit(pool, late), POOL_DRAINING);
    job_free(late);
    pool_stats(pool, &st);
    assert_int_equal(st.draining, 1);
    assert_int_equal(st.conns_open, 0);
    pool_drain(pool, 10);                           /* twice is harmless */
    pool_free(pool);
    fake_deliveries(&f, counts, N);
    for (size_t i = 0; i < N; i++)
        assert_int_equal(counts[i], 1);
    assert_int_equal(fake_count(&f, 0, "QUIT"), fake_conns(&f));
    fake_stop(&f);
}

static void test_drain_deadline_fails_queued_without_sending(void **state)
{
    struct fake f;
    struct cfg c;
    struct pool *pool;
    int counts[3];

    (void)state;
    fake_start(&f, "{\"rules\":[{\"match\":\"DOT\","
                   "\"action\":\"delay:0.8\"}]}");
    cfg_for(&c, f.port);
    c.pool.workers = 1;
    c.pool.connections = 1;
    pool = pool_start(&c);
    for (size_t i = 0; i < 3; i++)
        submit_ok(pool, send_job(i));
    wait_busy(pool, 1);
    pool_drain(pool, 0);
    assert_int_equal(T.done, 3);
    assert_int_equal(T.out[0].status, SMTP_DELIVERY_SENT);  /* in flight */
    for (size_t i = 1; i < 3; i++) {
        assert_int_equal(T.out[i].done_calls, 1);
        assert_int_equal(T.out[i].kind, SMTP_ERR_LOCAL);
        assert_int_equal(T.out[i].status, SMTP_DELIVERY_FAILED);
        assert_int_equal(T.out[i].attempts, 0);
        assert_string_equal(T.out[i].message,
                            "mailpool is shutting down; not sent");
    }
    pool_free(pool);
    fake_deliveries(&f, counts, 3);
    assert_int_equal(counts[0], 1);
    assert_int_equal(counts[1], 0);
    assert_int_equal(fake_count(&f, 0, "MAIL FROM:"), 1);
    fake_stop(&f);
}

static void test_queries_run_on_a_pooled_connection(void **state)
{
    struct fake f;
    struct cfg c;
    struct pool *pool;
    struct pool_stats st;

    (void)state;
    fake_start(&f, "{}");
    cfg_for(&c, f.port);
    c.pool.workers = 1;
    pool = pool_start(&c);
    submit_ok(pool, query_job(JOB_VERIFY, "postmaster", 0));
    wait_done(1);
    submit_ok(pool, query_job(JOB_HELP, NULL, 1));
    wait_done(2);
    submit_ok(pool, query_job(JOB_EXPAND, "staff", 2));
    wait_done(3);
    send_one(pool, 3);
    assert_int_equal(T.out[0].kind, SMTP_OK);
    assert_int_equal(T.out[0].code, 252);
    assert_int_equal(T.out[1].code, 214);
    assert_int_equal(T.out[2].kind, SMTP_ERR_REPLY);
    assert_int_equal(T.out[2].code, 502);
    assert_int_equal(T.out[2].attempts, 1);
    assert_int_equal(T.out[3].status, SMTP_DELIVERY_SENT);
    pool_stats(pool, &st);
    assert_int_equal(st.conns_opened, 1);
    pool_end(pool);
    assert_int_equal(fake_count(&f, 1, "VRFY postmaster"), 1);
    fake_stop(&f);
}

static void test_messages_per_conn_rotates_connections(void **state)
{
    struct fake f;
    struct cfg c;
    struct pool *pool;

    (void)state;
    fake_start(&f, "{}");
    cfg_for(&c, f.port);
    c.pool.workers = 1;
    c.pool.messages_per_conn = 2;
    pool = pool_start(&c);
    for (size_t i = 0; i < 5; i++)
        send_one(pool, i);
    pool_end(pool);
    assert_int_equal(fake_conns(&f), 3);
    assert_int_equal(fake_count(&f, 1, "MAIL FROM:"), 2);
    assert_int_equal(fake_count(&f, 1, "QUIT"), 1);
    assert_int_equal(fake_count(&f, 3, "MAIL FROM:"), 1);
    fake_stop(&f);
}

static void test_idle_timeout_quits_connection(void **state)
{
    struct fake f;
    struct cfg c;
    struct pool *pool;
    struct pool_stats st;

    (void)state;
    fake_start(&f, "{}");
    cfg_for(&c, f.port);
    c.pool.idle_timeout = 1;
    pool = pool_start(&c);
    send_one(pool, 0);
    pool_stats(pool, &st);
    assert_int_equal(st.conns_open, 1);
    assert_int_equal(st.conns_idle, 1);
    sleep_ms(2300);
    pool_stats(pool, &st);
    assert_int_equal(st.conns_open, 0);
    assert_int_equal(fake_count(&f, 1, "QUIT"), 1);
    send_one(pool, 1);                              /* opens a new one */
    assert_int_equal(T.out[1].status, SMTP_DELIVERY_SENT);
    pool_end(pool);
    assert_int_equal(fake_conns(&f), 2);
    fake_stop(&f);
}

static void test_rate_limit_spaces_sends_across_workers(void **state)
{
    enum { N = 10 };
    struct fake f;
    struct cfg c;
    struct pool *pool;
    double t0;

    (void)state;
    fake_start(&f, "{}");
    cfg_for(&c, f.port);
    c.pool.workers = 4;
    c.pool.rate = 20;                               /* one per 50 ms */
    pool = pool_start(&c);
    t0 = now_s();
    for (size_t i = 0; i < N; i++)
        submit_ok(pool, send_job(i));
    wait_done(N);
    assert_true(now_s() - t0 >= (N - 1) * 0.05 - 0.01);
    pool_end(pool);
    assert_int_equal(fake_lines(&f, "messages.jsonl"), N);
    fake_stop(&f);
}

static void test_smtp_log_line_has_ids_but_no_addresses_or_body(void **state)
{
    struct fake f;
    struct cfg c;
    struct pool *pool;
    char path[256];
    int saved, fd;
    char *out;

    (void)state;
    fake_start(&f, "{}");
    cfg_for(&c, f.port);
    snprintf(path, sizeof path, "%s/stderr.log", f.dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
    log_set_level("debug");
    pool = pool_start(&c);
    send_one(pool, 0);
    pool_end(pool);
    log_set_level("error");
    dup2(saved, STDERR_FILENO);
    close(saved);
    out = read_file(path, NULL);
    assert_non_null(out);
    assert_non_null(strstr(out, "\"event\":\"smtp\""));
    assert_non_null(strstr(out, "\"request_id\":\"req-0\""));
    assert_non_null(strstr(out, "\"status\":\"sent\""));
    assert_non_null(strstr(out, "\"code\":250"));
    assert_non_null(strstr(out, "\"attempts\":1"));
    assert_non_null(strstr(out, "\"message_id\":\"<"));
    assert_null(strstr(out, "example.org\""));
    assert_null(strstr(out, "rcpt-0"));
    assert_null(strstr(out, "sender@"));
    assert_null(strstr(out, "secret body"));
    for (char *line = out, *nl; (nl = strchr(line, '\n')) != NULL;
         line = nl + 1) {
        json_error_t err;
        *nl = '\0';
        json_t *j = json_loads(line, 0, &err);
        if (j == NULL)
            fail_msg("log line not JSON: %s", line);
        json_decref(j);
    }
    free(out);
    fake_stop(&f);
}

static void test_bad_settings_refused(void **state)
{
    struct cfg c;
    char err[256] = "";

    (void)state;
    cfg_for(&c, 25);
    c.pool.workers = 0;
    assert_null(pool_new(&c, err, sizeof err));
    assert_non_null(strstr(err, "pool.workers"));
    cfg_for(&c, 25);
    c.relay.tls = s_helo;                   /* not a TLS mode */
    assert_null(pool_new(&c, err, sizeof err));
    assert_non_null(strstr(err, "relay.tls"));
}

#define POOL_TEST(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    pthread_mutex_init(&T.mu, NULL);
    pthread_cond_init(&T.cv, NULL);
    const struct CMUnitTest tests[] = {
        POOL_TEST(test_batch_delivered_exactly_once_over_pooled_connections),
        POOL_TEST(test_unsolicited_421_on_idle_connection_is_replaced),
        POOL_TEST(test_idle_connection_closed_by_server_is_replaced),
        POOL_TEST(test_reused_connection_dead_at_rset_is_replaced_uncounted),
        POOL_TEST(test_421_at_mail_retried_on_fresh_connection),
        POOL_TEST(test_no_reply_after_dot_is_unknown_and_never_resent),
        POOL_TEST(test_5xx_is_final_and_keeps_the_connection),
        POOL_TEST(test_rejected_recipient_is_700_and_final),
        POOL_TEST(test_4xx_retried_until_the_limit),
        POOL_TEST(test_unreachable_relay_is_flagged),
        POOL_TEST(test_ready_when_relay_answers),
        POOL_TEST(test_full_queue_answers_at_once),
        POOL_TEST(test_drain_finishes_in_flight_and_quits),
        POOL_TEST(test_drain_deadline_fails_queued_without_sending),
        POOL_TEST(test_queries_run_on_a_pooled_connection),
        POOL_TEST(test_messages_per_conn_rotates_connections),
        POOL_TEST(test_idle_timeout_quits_connection),
        POOL_TEST(test_rate_limit_spaces_sends_across_workers),
        POOL_TEST(test_smtp_log_line_has_ids_but_no_addresses_or_body),
        POOL_TEST(test_bad_settings_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
