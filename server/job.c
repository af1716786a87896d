/*
 * server/job.c - allocation and release of jobs (server/job.h).
 *
 * Public: job_new, job_message, job_set_header, job_message_encode,
 * job_message_decode, job_free.
 * Errors: job_new returns NULL when out of memory.
 * Threads: a job belongs to one thread at a time; nothing here is shared.
 */
#include "server/job.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A zeroed job of the given kind with an initialised result. */
struct job *job_new(enum job_kind kind)
{
    struct job *job = calloc(1, sizeof *job);

    if (job == NULL)
        return NULL;
    job->kind = kind;
    smtp_result_init(&job->result);
    return job;
}

/* Frees an array of n owned strings and the array itself. */
static void job_free_strv(char **v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Builds the message view in place (see job.h). */
const struct smtp_message *job_message(struct job *job)
{
    struct job_message *m = &job->msg;

    m->text_ = (struct smtp_body){ .text = m->body != NULL ? m->body : "",
                                   .len = m->body != NULL ? m->body_len : 0 };
    m->so_ = (struct smtp_send_opts){ .raw = m->raw };
    m->mail_ = (struct smtp_message){ m->from,     (const char *const *)m->to,
                                      m->nto,      m->headers,
                                      m->nheaders, &m->text_,
                                      &m->so_ };
    return &m->mail_;
}

/* Frees a string the job owns that its smtp_header holds as const. */
static void job_free_const(const char *s)
{
    union {
        const char *c;
        char *m;
    } u = { s };

    free(u.m);
}

/* Copies name and value into header field i. */
int job_set_header(struct job *job, size_t i, const char *name,
                   const char *value)
{
    char *n = strdup(name), *v = strdup(value);

    if (n == NULL || v == NULL) {
        free(n);
        free(v);
        return -1;
    }
    job_free_const(job->msg.headers[i].name);
    job_free_const(job->msg.headers[i].value);
    job->msg.headers[i] = (struct smtp_header){ n, v };
    /* cppcheck-suppress memleak ; n and v are owned by the header now */
    return 0;
}

/* The blob: "MPJ1", then each field as a 4-byte little-endian length and
   its bytes: from, the count of recipients and each, the count of header
   fields and each name and value, raw ("0"/"1"), the body. */
#define JOB_BLOB_MAGIC "MPJ1"

/* Appends n bytes of p, length first, to the buffer (*buf, *len, *cap). */
static int blob_put(char **buf, size_t *len, size_t *cap, const void *p,
                    size_t n)
{
    if (n > UINT32_MAX)
        return -1;
    while (*len + 4 + n > *cap) {
        size_t ncap = *cap ? 2 * *cap : 256;
        char *nb = realloc(*buf, ncap);
        if (nb == NULL)
            return -1;
        *buf = nb;
        *cap = ncap;
    }
    for (int i = 0; i < 4; i++)
        (*buf)[*len + (size_t)i] = (char)((n >> (8 * i)) & 0xff);
    if (n > 0)
        memcpy(*buf + *len + 4, p, n);
    *len += 4 + n;
    return 0;
}

/* Appends a string (NULL as ""). */
static int blob_str(char **buf, size_t *len, size_t *cap, const char *s)
{
    return blob_put(buf, len, cap, s != NULL ? s : "", s ? strlen(s) : 0);
}

/* Appends a count as its decimal text. */
static int blob_count(char **buf, size_t *len, size_t *cap, size_t n)
{
    char t[24];
    int k = snprintf(t, sizeof t, "%zu", n);
    return blob_put(buf, len, cap, t, (size_t)k);
}

int job_message_encode(const struct job *job, void **out, size_t *len)
{
    const struct job_message *m = &job->msg;
    char *buf = NULL;
    size_t n = 0, cap = 64 + m->body_len;
    int r = (buf = malloc(cap)) == NULL;

    if (!r) {
        memcpy(buf, JOB_BLOB_MAGIC, 4);
        n = 4;
    }
    r = r || blob_str(&buf, &n, &cap, m->from) ||
        blob_count(&buf, &n, &cap, m->nto);
    for (size_t i = 0; !r && i < m->nto; i++)
        r = blob_str(&buf, &n, &cap, m->to[i]);
    r = r || blob_count(&buf, &n, &cap, m->nheaders);
    for (size_t i = 0; !r && i < m->nheaders; i++)
        r = blob_str(&buf, &n, &cap, m->headers[i].name) ||
            blob_str(&buf, &n, &cap, m->headers[i].value);
    r = r || blob_str(&buf, &n, &cap, m->raw ? "1" : "0") ||
        blob_put(&buf, &n, &cap, m->body ? m->body : "",
                 m->body ? m->body_len : 0);
    if (r) {
        free(buf);
        return -1;
    }
    *out = buf;
    *len = n;
    return 0;
}

/* Reads the next field of the blob as a new NUL-terminated string. */
static char *blob_get(const unsigned char *b, size_t len, size_t *off,
                      size_t *n)
{
    size_t k = 0;
    char *s;
    if (len - *off < 4)
        return NULL;
    for (int i = 0; i < 4; i++)
        k |= (size_t)b[*off + (size_t)i] << (8 * i);
    *off += 4;
    if (len - *off < k || (s = malloc(k + 1)) == NULL)
        return NULL;
    memcpy(s, b + *off, k);
    s[k] = '\0';
    *off += k;
    if (n != NULL)
        *n = k;
    return s;
}

/* Reads a count field (at most max). */
static int blob_get_count(const unsigned char *b, size_t len, size_t *off,
                          size_t max, size_t *out)
{
    char *t = blob_get(b, len, off, NULL), *end = NULL;
    unsigned long long v = t != NULL ? strtoull(t, &end, 10) : 0;
    int ok = t != NULL && end != t && *end == '\0' && v <= max;
    free(t);
    *out = ok ? (size_t)v : 0;
    return ok ? 0 : -1;
}

int job_message_decode(struct job *job, const void *blob, size_t len)
{
    const unsigned char *b = blob;
    struct job_message *m = &job->msg;
    size_t off = 4, n;
    char *raw;

    if (len < 4 || memcmp(b, JOB_BLOB_MAGIC, 4) != 0 ||
        (m->from = blob_get(b, len, &off, NULL)) == NULL ||
        blob_get_count(b, len, &off, 100000, &n) < 0 ||
        (n > 0 && (m->to = calloc(n, sizeof *m->to)) == NULL))
        return -1;
    for (m->nto = 0; m->nto < n; m->nto++)
        if ((m->to[m->nto] = blob_get(b, len, &off, NULL)) == NULL)
            return -1;
    if (blob_get_count(b, len, &off, 100000, &n) < 0 ||
        (n > 0 && (m->headers = calloc(n, sizeof *m->headers)) == NULL))
        return -1;
    for (m->nheaders = 0; m->nheaders < n; m->nheaders++) {
        char *name = blob_get(b, len, &off, NULL);
        char *value = name ? blob_get(b, len, &off, NULL) : NULL;
        if (value == NULL) {
            free(name);
            return -1;
        }
        m->headers[m->nheaders] = (struct smtp_header){ name, value };
    }
    if ((raw = blob_get(b, len, &off, NULL)) == NULL)
        return -1;
    m->raw = raw[0] == '1';
    free(raw);
    m->body = blob_get(b, len, &off, &m->body_len);
    return m->body != NULL && off == len ? 0 : -1;
}

/* Frees the job, its message, its argument and its result. */
void job_free(struct job *job)
{
    if (job == NULL)
        return;
    free(job->msg.from);
    job_free_strv(job->msg.to, job->msg.nto);
    for (size_t i = 0; job->msg.headers != NULL && i < job->msg.nheaders; i++) {
        job_free_const(job->msg.headers[i].name);
        job_free_const(job->msg.headers[i].value);
    }
    free(job->msg.headers);
    free(job->msg.body);
    free(job->arg);
    smtp_result_clear(&job->result);
    free(job);
}
