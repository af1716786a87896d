/*
 * api/metrics.c - counters and histograms of the HTTP API, rendered in the
 * Prometheus text exposition format 0.0.4.
 *
 * Public (internal.h): api_metrics_init, api_metrics_destroy,
 * api_metrics_request, api_metrics_job, api_metrics_render.  The route
 * labels are the route table's names (route.c: api_route_name).
 *
 * Series: mailpool_http_requests_total{route,status},
 * mailpool_messages_total{status}, mailpool_smtp_replies_total{class},
 * mailpool_messages_refused_total{reason} (queue_full, draining),
 * mailpool_http_heads_refused_total (heads libmicrohttpd refused itself),
 * the histograms mailpool_http_request_duration_seconds{route},
 * mailpool_job_wait_seconds (job queue to worker) and
 * mailpool_smtp_transaction_duration_seconds (on the worker), the pool gauges and counters
 * of struct pool_stats, mailpool_build_info{version}, and the standard
 * process metrics (process_cpu_seconds_total, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds, process_max_fds,
 * process_start_time_seconds) read from /proc/self at each scrape (left
 * out where /proc cannot be read).  Labels come from fixed tables only:
 * never a path, an address or a key.
 *
 * mailpool_messages_total adds the queue's delivery outcomes
 * (api_queue_finished); the reply classes and the job histograms are of
 * synchronous sends only.
 *
 * Threads: every function takes m->mu; the counters live in struct
 * api_metrics, a member of struct api (no globals).  Errors: api_metrics_render returns NULL without memory.
 */
#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "api/internal.h"

static const double http_bounds[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                      0.025,  0.05,  0.1,    0.25,  0.5,
                                      1,      2.5,   5,      10,    30 };
static const double smtp_bounds[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                      0.1,   0.25,   0.5,   1,    2.5,   5,
                                      10,    30,     60,    120,  300 };
/* The statuses this API answers; the last slot is "other". */
static const int statuses[API_STATUS_SLOTS - 1] = { 200, 202, 400, 401, 404,
                                                    405, 409, 413, 415, 422,
                                                    500, 502, 503, 414, 431 };
static const char *const reply_classes[API_REPLY_CLASSES] = { "2xx", "3xx",
                                                              "4xx", "5xx",
                                                              "none" };

_Static_assert(sizeof http_bounds / sizeof http_bounds[0] < API_HIST_BUCKETS,
               "http buckets");
_Static_assert(sizeof smtp_bounds / sizeof smtp_bounds[0] < API_HIST_BUCKETS,
               "smtp buckets");

/* Zeroed counters and the histogram bounds. */
int api_metrics_init(struct api_metrics *m)
{
    memset(m, 0, sizeof *m);
    for (size_t r = 0; r < API_ROUTE__COUNT; r++) {
        m->http[r].bounds = http_bounds;
        m->http[r].nbounds = sizeof http_bounds / sizeof http_bounds[0];
    }
    m->wait.bounds = smtp_bounds;
    m->wait.nbounds = sizeof smtp_bounds / sizeof smtp_bounds[0];
    m->smtp.bounds = smtp_bounds;
    m->smtp.nbounds = sizeof smtp_bounds / sizeof smtp_bounds[0];
    return pthread_mutex_init(&m->mu, NULL) == 0 ? 0 : -1;
}

void api_metrics_destroy(struct api_metrics *m)
{
    pthread_mutex_destroy(&m->mu);
}

/* Adds one observation.  Caller holds the metrics lock. */
static void hist_observe(struct api_hist *h, double v)
{
    size_t i = 0;
    while (i < h->nbounds && v > h->bounds[i])
        i++;
    h->counts[i]++; /* i == nbounds: the +Inf bucket */
    h->count++;
    h->sum += v;
}

/* The slot of an HTTP status. */
static size_t status_slot(int status)
{
    for (size_t i = 0; i < API_STATUS_SLOTS - 1; i++)
        if (statuses[i] == status)
            return i;
    return API_STATUS_SLOTS - 1;
}

void api_metrics_request(struct api_metrics *m, enum api_route route,
                         int status, double seconds)
{
    if ((unsigned)route >= API_ROUTE__COUNT)
        route = API_ROUTE_UNMATCHED;
    pthread_mutex_lock(&m->mu);
    m->requests[route][status_slot(status)]++;
    hist_observe(&m->http[route], seconds < 0 ? 0 : seconds);
    pthread_mutex_unlock(&m->mu);
}

void api_metrics_refused(struct api_metrics *m, int draining, size_t n)
{
    pthread_mutex_lock(&m->mu);
    m->refused[draining ? 1 : 0] += n;
    pthread_mutex_unlock(&m->mu);
}

void api_metrics_head_refused(struct api_metrics *m)
{
    pthread_mutex_lock(&m->mu);
    m->heads_refused++;
    pthread_mutex_unlock(&m->mu);
}

void api_metrics_job(struct api_metrics *m, const struct job *job)
{
    int code = job->result.reply.code;
    size_t cls = code >= 200 && code < 600 ? (size_t)(code / 100 - 2)
                                           : API_REPLY_CLASSES - 1;
    unsigned st = (unsigned)job->result.status;
    pthread_mutex_lock(&m->mu);
    if (job->kind == JOB_SEND && st > 0 && st < API_DELIVERY_SLOTS)
        m->messages[st]++;
    m->replies[cls]++;
    double wait = job->wait_ms > 0 ? job->wait_ms / 1e3 : 0;
    double on_worker = job->duration_ms / 1e3 - wait;
    hist_observe(&m->wait, wait);
    hist_observe(&m->smtp, on_worker > 0 ? on_worker : 0);
    pthread_mutex_unlock(&m->mu);
}

/* ---- Rendering ---- */

/* A growing text buffer; err sticks once an allocation failed. */
struct tbuf {
    char *p;
    size_t len, cap;
    int err;
};

__attribute__((format(printf, 2, 3))) static void tb_printf(struct tbuf *b,
                                                            const char *fmt,
                                                            ...)
{
    va_list ap;
    int n;
    if (b->err)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->err = 1;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n;
        char *p = realloc(b->p, cap);
        if (p == NULL) {
            b->err = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

/* "# HELP" and "# TYPE" lines. */
static void tb_head(struct tbuf *b, const char *name, const char *type,
                    const char *help)
{
    tb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The samples of one histogram: cumulative buckets, +Inf, _sum, _count;
   label is "" or one label pair with its comma ("route=\"/healthz\","). */
static void tb_hist_samples(struct tbuf *b, const char *name, const char *label,
                            const struct api_hist *h)
{
    unsigned long long cum = 0;
    size_t n = strlen(label);
    int bare = n == 0; /* no label: no braces */
    for (size_t i = 0; i < h->nbounds; i++) {
        cum += h->counts[i];
        tb_printf(b, "%s_bucket{%sle=\"%g\"} %llu\n", name, label, h->bounds[i],
                  cum);
    }
    tb_printf(b, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, label, h->count);
    if (bare)
        tb_printf(b, "%s_sum %.9g\n%s_count %llu\n", name, h->sum, name,
                  h->count);
    else
        tb_printf(b, "%s_sum{%.*s} %.9g\n%s_count{%.*s} %llu\n", name,
                  (int)n - 1, label, h->sum, name, (int)n - 1, label, h->count);
}

/* A histogram without labels. */
static void tb_hist(struct tbuf *b, const char *name, const char *help,
                    const struct api_hist *h)
{
    tb_head(b, name, "histogram", help);
    tb_hist_samples(b, name, "", h);
}

/* The HTTP duration histogram, one series per route that was used. */
static void tb_hist_routes(struct tbuf *b, const struct api_metrics *m)
{
    static const char name[] = "mailpool_http_request_duration_seconds";
    char label[96];
    tb_head(b, name, "histogram",
            "Time from the request's headers to its completion, by route.");
    for (size_t r = 0; r < API_ROUTE__COUNT; r++) {
        if (m->http[r].count == 0)
            continue;
        snprintf(label, sizeof label, "route=\"%s\",",
                 api_route_name((enum api_route)r));
        tb_hist_samples(b, name, label, &m->http[r]);
    }
}

/* The counters; queued as for api_metrics_render.  Caller holds m->mu. */
static void render_counters(struct tbuf *b, const struct api_metrics *m,
                            const unsigned long long *queued)
{
    tb_head(b, "mailpool_http_requests_total", "counter",
            "HTTP requests answered, by route and status.");
    for (size_t r = 0; r < API_ROUTE__COUNT; r++)
        for (size_t s = 0; s < API_STATUS_SLOTS; s++) {
            if (m->requests[r][s] == 0)
                continue;
            if (s < API_STATUS_SLOTS - 1)
                tb_printf(b,
                          "mailpool_http_requests_total{route=\"%s\","
                          "status=\"%d\"} %llu\n",
                          api_route_name((enum api_route)r), statuses[s],
                          m->requests[r][s]);
            else
                tb_printf(b,
                          "mailpool_http_requests_total{route=\"%s\","
                          "status=\"other\"} %llu\n",
                          api_route_name((enum api_route)r), m->requests[r][s]);
        }
    tb_head(b, "mailpool_http_heads_refused_total", "counter",
            "Requests libmicrohttpd answered itself (400, 414 or 431) "
            "because their head was malformed or larger than its buffer.");
    tb_printf(b, "mailpool_http_heads_refused_total %llu\n", m->heads_refused);
    tb_head(b, "mailpool_messages_total", "counter",
            "Messages finished, synchronous sends and the queue's "
            "deliveries, by delivery status.");
    for (unsigned s = 1; s < API_DELIVERY_SLOTS; s++)
        tb_printf(b, "mailpool_messages_total{status=\"%s\"} %llu\n",
                  smtp_delivery_name((enum smtp_delivery)s),
                  m->messages[s] + (queued != NULL ? queued[s] : 0));
    tb_head(b, "mailpool_messages_refused_total", "counter",
            "Messages refused before any was tried (503), by reason.");
    tb_printf(b,
              "mailpool_messages_refused_total{reason=\"queue_full\"} "
              "%llu\n",
              m->refused[0]);
    tb_printf(b,
              "mailpool_messages_refused_total{reason=\"draining\"} "
              "%llu\n",
              m->refused[1]);
    tb_head(b, "mailpool_smtp_replies_total", "counter",
            "Deciding SMTP replies of finished jobs, by class.");
    for (size_t c = 0; c < API_REPLY_CLASSES; c++)
        tb_printf(b, "mailpool_smtp_replies_total{class=\"%s\"} %llu\n",
                  reply_classes[c], m->replies[c]);
    tb_hist_routes(b, m);
    tb_hist(b, "mailpool_job_wait_seconds",
            "Time a job waited in the job queue for a worker.", &m->wait);
    tb_hist(b, "mailpool_smtp_transaction_duration_seconds",
            "Time a job spent on a worker: connection, SMTP dialogue and "
            "retries, the queue wait excluded.",
            &m->smtp);
}

/* The gauges and counters of the pool. */
static void render_pool(struct tbuf *b, const struct pool_stats *ps)
{
    tb_head(b, "mailpool_pool_connections", "gauge",
            "SMTP connections open, by state.");
    tb_printf(b, "mailpool_pool_connections{state=\"idle\"} %zu\n",
              ps->conns_idle);
    tb_printf(b, "mailpool_pool_connections{state=\"busy\"} %zu\n",
              ps->conns_busy);
    tb_head(b, "mailpool_pool_connections_open", "gauge",
            "SMTP connections open (idle + busy).");
    tb_printf(b, "mailpool_pool_connections_open %zu\n", ps->conns_open);
    tb_head(b, "mailpool_pool_queue_depth", "gauge", "Jobs waiting.");
    tb_printf(b, "mailpool_pool_queue_depth %zu\n", ps->queued);
    tb_head(b, "mailpool_pool_workers_busy", "gauge", "Workers on a job.");
    tb_printf(b, "mailpool_pool_workers_busy %zu\n", ps->busy_workers);
    tb_head(b, "mailpool_pool_workers", "gauge", "Worker threads.");
    tb_printf(b, "mailpool_pool_workers %zu\n", ps->workers);
    tb_head(b, "mailpool_pool_draining", "gauge", "1 while draining.");
    tb_printf(b, "mailpool_pool_draining %d\n", ps->draining ? 1 : 0);
    tb_head(b, "mailpool_pool_connections_opened_total", "counter",
            "SMTP connections opened.");
    tb_printf(b, "mailpool_pool_connections_opened_total %llu\n",
              ps->conns_opened);
    tb_head(b, "mailpool_pool_connections_failed_total", "counter",
            "SMTP connections that could not be opened.");
    tb_printf(b, "mailpool_pool_connections_failed_total %llu\n",
              ps->conns_failed);
    tb_head(b, "mailpool_pool_retries_total", "counter", "SMTP retries.");
    tb_printf(b, "mailpool_pool_retries_total %llu\n", ps->retries);
}

/* What /proc/self/stat and /proc/stat say of this process. */
struct proc_self {
    double cpu_seconds;       /* utime + stime */
    double start_time;        /* seconds since the epoch */
    unsigned long long vsize; /* bytes */
    unsigned long long rss;   /* bytes */
};

/* The boot time (seconds since the epoch) from /proc/stat; 0 if unknown. */
static unsigned long long boot_time(void)
{
    char line[256];
    unsigned long long bt = 0;
    FILE *f = fopen("/proc/stat", "re");
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "btime %llu", &bt) == 1)
            break;
    fclose(f);
    return bt;
}

/* Fills *p from /proc/self/stat; 0, or -1 when it cannot be read. */
static int proc_self_read(struct proc_self *p)
{
    char buf[1024];
    unsigned long long utime, stime, start, vsize, rss;
    FILE *f = fopen("/proc/self/stat", "re");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may hold spaces and parentheses: skip to the last
       ')'; then field 3 (state) onwards. */
    const char *q = strrchr(buf, ')');
    long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    if (q == NULL || tck <= 0 || page <= 0 ||
        sscanf(q + 2,
               "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu "
               "%*d %*d %*d %*d %*d %*d %llu %llu %llu",
               &utime, &stime, &start, &vsize, &rss) != 5)
        return -1;
    unsigned long long bt = boot_time();
    p->cpu_seconds = (double)(utime + stime) / (double)tck;
    p->start_time = bt > 0 ? (double)bt + (double)start / (double)tck : 0;
    p->vsize = vsize;
    p->rss = rss * (unsigned long long)page;
    return 0;
}

/* Entries of /proc/self/fd, less the one the listing itself holds; -1 if
   it cannot be read. */
static long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    long n = 0;
    if (d == NULL)
        return -1;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;
}

/* The standard process_* series of Prometheus' client libraries. */
static void render_process(struct tbuf *b)
{
    struct proc_self p;
    struct rlimit rl;
    long fds = open_fds();
    if (proc_self_read(&p) == 0) {
        tb_head(b, "process_cpu_seconds_total", "counter",
                "Total user and system CPU time spent in seconds.");
        tb_printf(b, "process_cpu_seconds_total %.2f\n", p.cpu_seconds);
        tb_head(b, "process_resident_memory_bytes", "gauge",
                "Resident memory size in bytes.");
        tb_printf(b, "process_resident_memory_bytes %llu\n", p.rss);
        tb_head(b, "process_virtual_memory_bytes", "gauge",
                "Virtual memory size in bytes.");
        tb_printf(b, "process_virtual_memory_bytes %llu\n", p.vsize);
        if (p.start_time > 0) {
            tb_head(b, "process_start_time_seconds", "gauge",
                    "Start time of the process since unix epoch in seconds.");
            tb_printf(b, "process_start_time_seconds %.2f\n", p.start_time);
        }
    }
    if (fds >= 0) {
        tb_head(b, "process_open_fds", "gauge",
                "Number of open file descriptors.");
        tb_printf(b, "process_open_fds %ld\n", fds);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        tb_head(b, "process_max_fds", "gauge",
                "Maximum number of open file descriptors.");
        tb_printf(b, "process_max_fds %llu\n", (unsigned long long)rl.rlim_cur);
    }
}

/* The whole exposition, malloc'd. */
char *api_metrics_render(struct api_metrics *m, const struct pool_stats *ps,
                         const unsigned long long *queued, size_t *len)
{
    struct tbuf b = { malloc(8192), 0, 8192, 0 };
    if (b.p == NULL)
        return NULL;
    pthread_mutex_lock(&m->mu);
    render_counters(&b, m, queued);
    pthread_mutex_unlock(&m->mu);
    if (ps != NULL)
        render_pool(&b, ps);
    tb_head(&b, "mailpool_build_info", "gauge", "Build information.");
    tb_printf(&b, "mailpool_build_info{version=\"%s\"} 1\n", MAILPOOL_VERSION);
    render_process(&b);
    if (b.err) {
        free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}
