/*
 * server/job.c - allocation and release of jobs (server/job.h).
 *
 * Public: job_new, job_message, job_set_header, job_free.
 * Errors: job_new returns NULL when out of memory.
 * Threads: a job belongs to one thread at a time; nothing here is shared.
 */
#include "server/job.h"

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
    m->mail_ = (struct smtp_message){ m->from, (const char *const *)m->to,
                                      m->nto, m->headers, m->nheaders,
                                      &m->text_, &m->so_ };
    return &m->mail_;
}

/* Frees a string the job owns that its smtp_header holds as const. */
static void job_free_const(const char *s)
{
    union { const char *c; char *m; } u = { s };

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
    return 0;
}

/* Frees the job, its message, its argument and its result. */
void job_free(struct job *job)
{
    if (job == NULL)
        return;
    free(job->msg.from);
    job_free_strv(job->msg.to, job->msg.nto);
    for (size_t i = 0; job->msg.headers != NULL && i < job->msg.nheaders;
         i++) {
        job_free_const(job->msg.headers[i].name);
        job_free_const(job->msg.headers[i].value);
    }
    free(job->msg.headers);
    free(job->msg.body);
    free(job->arg);
    smtp_result_clear(&job->result);
    free(job);
}
