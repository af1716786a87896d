/*
 * api/daemon.c - starting and stopping the libmicrohttpd daemon.
 *
 * Public: api_start, api_port, api_set_draining, api_set_stopping,
 * api_stop
 * (api.h).
 *
 * MHD runs an internal thread pool (http.threads) over epoll, with
 * suspend/resume allowed, a connection timeout (http.connection_timeout;
 * http.header_timeout until a connection's first request head is in),
 * http.max_connections and http.max_connections_per_ip (MHD closes a
 * connection past either at once; RLIMIT_NOFILE is raised to its hard
 * limit first),
 * a memory pool per connection of API_HTTP_POOL bytes (room for a head
 * past the API's own limits, which head.c then answers 414 or 431), the
 * URI log, access and request-completed callbacks of request.c and the
 * unescape callback of head.c, and
 * its messages sent to the JSON log at debug level.  With
 * http.tls_cert_file and http.tls_key_file the listener speaks HTTPS through
 * MHD's own GnuTLS support (the PEM files are read at start; the key is
 * wiped when the api is freed).  http.listen is
 * "host:port", "[v6]:port", ":port" or "*:port" (all addresses); port 0
 * picks a free port, which api_port tells.  http.api_keys is split at
 * commas, blanks trimmed.
 *
 * Stopping: MHD must not be stopped with a connection suspended, so api_stop
 * waits until every job's done callback has resumed its connection (after
 * pool_drain that is at once); if jobs are still out after the drain
 * timeout and 5 s, their requests are resumed and answered 503.  Then it
 * stops accepting connections and gives the requests in progress up to 5 s
 * to write their answers before MHD closes everything.  The api state is
 * freed only once every job came back (else it is leaked, with an error
 * logged, rather than freed under a worker's feet).
 *
 * Errors: api_start returns NULL with a sentence naming http.listen.
 * Threads: api_start/api_stop on the main thread; api_set_draining and
 * api_port anywhere.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "api/http.h"
#include "api/internal.h"
#include "util/log.h"
#include "util/hostport.h"

/* MHD's messages go to the log at debug level; while starting, the last
   one is also kept for api_start's error. */
__attribute__((format(printf, 2, 0))) static void on_mhd_log(void *cls,
                                                             const char *fmt,
                                                             va_list ap)
{
    struct api *api = cls;
    char msg[256];
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\r\n")] = '\0';
    if (atomic_load(&api->starting)) {
        pthread_mutex_lock(&api->mu);
        snprintf(api->start_msg, sizeof api->start_msg, "%.*s",
                 (int)sizeof api->start_msg - 1, msg);
        pthread_mutex_unlock(&api->mu);
    }
    log_event(LOG_DEBUG, "http_server", "message", msg, (const char *)NULL);
}

/* ---- Start and stop ---- */

/* http.listen (parsed by config/) as the socket address to bind. */
static int listen_address(const struct cfg *cfg, struct sockaddr_storage *ss,
                          socklen_t *sslen, char *err, size_t errlen)
{
    static const struct util_hostport fallback = { "127.0.0.1", 8025, 0 };
    const struct util_hostport *hp = cfg->http.listen != NULL
                                         ? &cfg->http.listen_addr
                                         : &fallback;
    char port[8];
    struct addrinfo hints, *ai = NULL;
    snprintf(port, sizeof port, "%d", hp->port);
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int rc = getaddrinfo(hp->host, port, &hints, &ai);
    if (rc != 0 || ai == NULL || ai->ai_addrlen > sizeof *ss) {
        snprintf(err, errlen, "http.listen: cannot resolve \"%s\": %s",
                 hp->host, rc != 0 ? gai_strerror(rc) : "no address");
        if (ai != NULL)
            freeaddrinfo(ai);
        return -1;
    }
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *sslen = ai->ai_addrlen;
    freeaddrinfo(ai);
    return 0;
}

/* Splits http.api_keys at commas, trimming blanks; empty entries skipped. */
static int parse_keys(struct api *api, const char *list)
{
    const char *p = list;
    size_t n = 1;
    if (list == NULL)
        return 0;
    for (const char *q = list; *q != '\0'; q++)
        n += *q == ',';
    api->keys = calloc(n, sizeof *api->keys);
    api->keylens = calloc(n, sizeof *api->keylens);
    if (api->keys == NULL || api->keylens == NULL)
        return -1;
    while (*p != '\0') {
        size_t len = strcspn(p, ",");
        const char *s = p, *e = p + len;
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (e > s) {
            api->keys[api->nkeys] = strndup(s, (size_t)(e - s));
            if (api->keys[api->nkeys] == NULL)
                return -1;
            api->keylens[api->nkeys++] = (size_t)(e - s);
        }
        p += len + (p[len] == ',');
    }
    return 0;
}

/* Frees everything but the daemon. */
static void api_free(struct api *api)
{
    for (size_t i = 0; i < api->nkeys; i++) {
        explicit_bzero(api->keys[i], api->keylens[i]);
        free(api->keys[i]);
    }
    free(api->keys);
    free(api->keylens);
    free(api->tls_cert);
    if (api->tls_key != NULL) {
        explicit_bzero(api->tls_key, strlen(api->tls_key));
        free(api->tls_key);
    }
    api_metrics_destroy(&api->metrics);
    pthread_cond_destroy(&api->cond);
    pthread_mutex_destroy(&api->mu);
    free(api);
}

/* Allocates the api and its locks. */
static struct api *api_alloc(const struct cfg *cfg, struct pool *pool)
{
    struct api *api = calloc(1, sizeof *api);
    if (api == NULL)
        return NULL;
    if (pthread_mutex_init(&api->mu, NULL) != 0) {
        free(api);
        return NULL;
    }
    if (pthread_cond_init(&api->cond, NULL) != 0) {
        pthread_mutex_destroy(&api->mu);
        free(api);
        return NULL;
    }
    if (api_metrics_init(&api->metrics) != 0) {
        pthread_cond_destroy(&api->cond);
        pthread_mutex_destroy(&api->mu);
        free(api);
        return NULL;
    }
    api->cfg = cfg;
    api->pool = pool;
    atomic_init(&api->draining, 0);
    atomic_init(&api->stopping, 0);
    atomic_init(&api->idseq, 0);
    atomic_init(&api->held, 0);
    api->max_held = (size_t)(cfg->http.max_inflight > cfg->http.max_body
                                 ? cfg->http.max_inflight
                                 : cfg->http.max_body);
    atomic_init(&api->nsuspended, 0);
    atomic_init(&api->nlive, 0);
    atomic_init(&api->starting, 0);
    return api;
}

/* The whole of a PEM file (at most 1 MiB) as a new string; NULL with err
   naming key. */
static char *read_pem(const char *key, const char *path, char *err,
                      size_t errlen)
{
    enum { PEM_MAX = 1 << 20 };
    FILE *f = fopen(path, "re");
    char *buf = f != NULL ? malloc(PEM_MAX + 1) : NULL;
    size_t n = buf != NULL ? fread(buf, 1, PEM_MAX + 1, f) : 0;
    int bad = f == NULL || buf == NULL || ferror(f) || n == 0 || n > PEM_MAX;
    int e = errno;
    if (f != NULL)
        fclose(f);
    if (bad) {
        snprintf(err, errlen, "%s: cannot read '%s': %s", key, path,
                 f == NULL     ? strerror(e)
                 : n == 0      ? "empty file"
                 : n > PEM_MAX ? "larger than 1 MiB"
                               : "read error");
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

/* Reads http.tls_cert_file and http.tls_key_file when set; 0 or -1. */
static int load_tls(struct api *api, const struct cfg *cfg, char *err,
                    size_t errlen)
{
    if (cfg->http.tls_cert_file == NULL)
        return 0;
    api->tls_cert = read_pem("http.tls_cert_file", cfg->http.tls_cert_file, err,
                             errlen);
    if (api->tls_cert == NULL)
        return -1;
    api->tls_key = read_pem("http.tls_key_file", cfg->http.tls_key_file, err,
                            errlen);
    return api->tls_key != NULL ? 0 : -1;
}

/* Raises the soft RLIMIT_NOFILE to the hard one, so that
   http.max_connections fit beside the relay connections and the queue;
   a warn line when they still cannot. */
static void raise_nofile(const struct cfg *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        (void)getrlimit(RLIMIT_NOFILE, &rl);
    }
    rlim_t need = (rlim_t)cfg->http.max_connections + 64 +
                  (rlim_t)cfg->pool.connections;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need) {
        struct log_field f[] = {
            LOG_STR("message", "RLIMIT_NOFILE is below http.max_connections "
                               "and the service's own files: connections "
                               "past it are refused by the system"),
            LOG_NUM("nofile", (double)rl.rlim_cur),
            LOG_NUM("max_connections", cfg->http.max_connections),
        };
        log_event_num(LOG_WARN, "config", f, sizeof f / sizeof f[0]);
    }
}

/* MHD's options for cfg into o (room for 12), ended by MHD_OPTION_END. */
static void daemon_options(const struct api *api, const struct cfg *cfg,
                           struct MHD_OptionItem *o)
{
    size_t n = 0;
    o[n++] = (struct MHD_OptionItem){ MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                                      API_HTTP_POOL, NULL };
    o[n++] = (struct MHD_OptionItem){ MHD_OPTION_CONNECTION_TIMEOUT,
                                      cfg->http.connection_timeout > 0
                                          ? cfg->http.connection_timeout
                                          : 0,
                                      NULL };
    if (cfg->http.threads > 1)
        o[n++] = (struct MHD_OptionItem){ MHD_OPTION_THREAD_POOL_SIZE,
                                          cfg->http.threads, NULL };
    o[n++] = (struct MHD_OptionItem){ MHD_OPTION_CONNECTION_LIMIT,
                                      cfg->http.max_connections, NULL };
    if (cfg->http.max_connections_per_ip > 0)
        o[n++] = (struct MHD_OptionItem){ MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                                          cfg->http.max_connections_per_ip,
                                          NULL };
    if (api->tls_cert != NULL) {
        o[n++] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_CERT, 0,
                                          api->tls_cert };
        o[n++] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_KEY, 0,
                                          api->tls_key };
    }
    o[n] = (struct MHD_OptionItem){ MHD_OPTION_END, 0, NULL };
}

/* Starts MHD on ss with the callbacks of request.c and head.c; 0, or -1
   with err set (MHD's last word named). */
static int start_daemon(struct api *api, const struct cfg *cfg,
                        const struct sockaddr_storage *ss, char *err,
                        size_t errlen)
{
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL |
                         MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG |
                         (ss->ss_family == AF_INET6 ? MHD_USE_IPv6 : 0) |
                         (api->tls_cert != NULL ? MHD_USE_TLS : 0);
    struct MHD_OptionItem opts[12];
    daemon_options(api, cfg, opts);
    raise_nofile(cfg);
    atomic_store(&api->starting, 1);
    uint16_t port = ntohs(ss->ss_family == AF_INET6
                              ? ((const struct sockaddr_in6 *)ss)->sin6_port
                              : ((const struct sockaddr_in *)ss)->sin_port);
    api->daemon =
        MHD_start_daemon(/* port: for MHD's messages only */
                         flags, port, NULL, NULL, api_on_access, api,
                         MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, api,
                         MHD_OPTION_SOCK_ADDR, (const struct sockaddr *)ss,
                         MHD_OPTION_NOTIFY_COMPLETED, api_on_completed, api,
                         MHD_OPTION_NOTIFY_CONNECTION, api_on_connection, api,
                         MHD_OPTION_URI_LOG_CALLBACK, api_on_uri, api,
                         MHD_OPTION_UNESCAPE_CALLBACK, api_unescape, NULL,
                         MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    atomic_store(&api->starting, 0);
    if (api->daemon != NULL)
        return 0;
    pthread_mutex_lock(&api->mu);
    snprintf(err, errlen, "http.listen: cannot listen on %s%s%s",
             cfg->http.listen != NULL ? cfg->http.listen : "127.0.0.1:8025",
             api->start_msg[0] != '\0' ? ": " : "", api->start_msg);
    pthread_mutex_unlock(&api->mu);
    return -1;
}

struct api *api_start(const struct cfg *cfg, struct pool *pool,
                      struct queue *queue, struct delivery *delivery, char *err,
                      size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    struct api *api = api_alloc(cfg, pool);
    if (api == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    api->queue = queue; /* before any MHD thread runs */
    api->delivery = delivery;
    if (listen_address(cfg, &ss, &sslen, err, errlen) < 0) {
        api_free(api);
        return NULL;
    }
    if (parse_keys(api, cfg->http.api_keys) < 0) {
        snprintf(err, errlen, "out of memory");
        api_free(api);
        return NULL;
    }
    if (load_tls(api, cfg, err, errlen) < 0) {
        api_free(api);
        return NULL;
    }
    if (start_daemon(api, cfg, &ss, err, errlen) < 0) {
        api_free(api);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(
        api->daemon, MHD_DAEMON_INFO_BIND_PORT);
    api->port = info != NULL ? info->port : 0;
    return api;
}

int api_port(const struct api *api)
{
    return api->port;
}

void api_set_draining(struct api *api, int draining)
{
    atomic_store(&api->draining, draining ? 1 : 0);
}

void api_set_stopping(struct api *api)
{
    atomic_store(&api->stopping, 1);
}

/* Waits until *count is 0, up to timeout_s; 0 when it is. */
static int wait_zero(atomic_size_t *count, int timeout_s)
{
    const struct timespec tick = { 0, 10 * 1000 * 1000 };
    for (long i = 0; i < (long)timeout_s * 100; i++) {
        if (atomic_load(count) == 0)
            return 0;
        nanosleep(&tick, NULL);
    }
    return atomic_load(count) == 0 ? 0 : -1;
}

/* Waits on api->cond until no request is left, up to timeout_s. */
static int wait_no_reqs(struct api *api, int timeout_s)
{
    struct timespec dl;
    int rc = 0;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_s;
    pthread_mutex_lock(&api->mu);
    while (api->nreqs > 0 && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&api->cond, &api->mu, &dl);
    rc = api->nreqs > 0 ? -1 : 0;
    pthread_mutex_unlock(&api->mu);
    return rc;
}

/* Resumes one request still suspended on jobs (it answers 503); 0 when
   none is left.  MHD is called with no lock held; the request cannot go
   away meanwhile since its jobs still hold references. */
static int abandon_one(struct api *api)
{
    struct MHD_Connection *c = NULL;
    pthread_mutex_lock(&api->mu);
    for (struct api_req *r = api->waiting; r != NULL && c == NULL;
         r = r->wnext) {
        pthread_mutex_lock(&r->mu);
        if (r->suspended && r->conn != NULL) {
            r->suspended = 0;
            r->abandoned = 1;
            c = r->conn;
        }
        pthread_mutex_unlock(&r->mu);
    }
    pthread_mutex_unlock(&api->mu);
    if (c == NULL)
        return 0;
    MHD_resume_connection(c);
    atomic_fetch_sub(&api->nsuspended, 1);
    return 1;
}

void api_stop(struct api *api)
{
    int grace;
    if (api == NULL)
        return;
    api_set_draining(api, 1);
    grace = api->cfg->pool.drain_timeout > 0 ? api->cfg->pool.drain_timeout
                                             : 30;
    /* Normally pool_drain ran first and every job's done callback has
       resumed its connection: MHD must have none suspended when stopped. */
    if (wait_zero(&api->nsuspended, grace + 5) < 0) {
        log_event(LOG_WARN, "api_stop", "message",
                  "requests still waiting on jobs: answering 503",
                  (const char *)NULL);
        while (abandon_one(api))
            ;
        (void)wait_zero(&api->nsuspended, 5); /* done callbacks resuming */
    }
    /* No new connections; then let the resumed requests write their
       answers (and the rest finish) before MHD closes every connection. */
    MHD_socket lsock = MHD_quiesce_daemon(api->daemon);
    if (lsock != MHD_INVALID_SOCKET)
        close(lsock);
    if (wait_zero(&api->nlive, 5) < 0)
        log_event(LOG_WARN, "api_stop", "message",
                  "closing HTTP requests still in progress",
                  (const char *)NULL);
    MHD_stop_daemon(api->daemon);
    /* Abandoned requests are freed when their jobs come back. */
    if (wait_no_reqs(api, grace + 5) < 0) {
        log_event(LOG_ERROR, "api_stop", "message",
                  "jobs never finished: leaking the api state",
                  (const char *)NULL);
        return;
    }
    /* The records of synchronous sends still with the queue's writer. */
    if (wait_zero(&api->nlogging, 10) < 0) {
        log_event(LOG_ERROR, "api_stop", "message",
                  "message log writes never finished: leaking the api "
                  "state",
                  (const char *)NULL);
        return;
    }
    api_free(api);
}
