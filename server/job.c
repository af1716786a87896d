/*
 * server/job.c - allocation and release of jobs (server/job.h).
 *
 * Public: job_new, job_free.
 * Errors: job_new returns NULL when out of memory.
 * Threads: a job belongs to one thread at a time; nothing here is shared.
 */
#include "server/job.h"

#include <stdlib.h>

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

/* Frees the job, its message, its argument and its result. */
void job_free(struct job *job)
{
    if (job == NULL)
        return;
    free(job->msg.from);
    job_free_strv(job->msg.to, job->msg.nto);
    job_free_strv(job->msg.hnames, job->msg.nheaders);
    job_free_strv(job->msg.hvalues, job->msg.nheaders);
    free(job->msg.body);
    free(job->arg);
    smtp_result_clear(&job->result);
    free(job);
}
