/*
 * fuzz_json.c - libFuzzer target: the JSON request decoder (api/codec.h).
 *
 * The input is parsed the way api/routes.c parses a POST body (json_loadb
 * with JSON_REJECT_DUPLICATES); whatever parses goes through every decoder
 * the routes use: api_decode_message (/v1/messages), api_decode_batch
 * (/v1/messages/batch) and api_decode_query for VERIFY, EXPAND and HELP.
 * Each runs twice: with the defaults of cfg_defaults and with small limits
 * (2 recipients, 3 messages a batch) so that the limit paths are reached
 * by small inputs.  The raw bytes also go through result_json_text.
 *
 * Properties (abort() when broken, so libFuzzer reports them):
 * - a decoder returns OK, INVALID or NOMEM, never anything else;
 * - INVALID lists 1..API_MAX_ERRORS errors, each {"field", "message"}
 *   strings; OK lists none;
 * - an accepted message has a sender, 1..max_recipients recipients that
 *   smtp_addr_check accepts, headers that smtp_header_check accepts, and a
 *   body whose length is body_len that smtp_body_check accepts (raw:
 *   non-empty);
 * - an accepted batch has 1..max_batch such messages; a refused one
 *   returns no jobs;
 * - an accepted query argument is at most API_MAX_ARG bytes of printable
 *   characters (no CR, LF, NUL or control);
 * - result_json_text never fails on a NUL-terminated string;
 * - for whatever parses, api_json_values counts exactly the tree's values
 *   and member names (the bound the routes apply before parsing); for any
 *   input, what json_fx_values_bytewise counts (with no bound and with a
 *   bound of 3).
 * ASan and UBSan (scripts/fuzz.sh) catch the rest, LeakSanitizer the leaks.
 *
 * Globals: the two struct cfg, filled once on the first input and then
 * read-only (libFuzzer calls the target from one thread).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <smtpcore/smtp.h>

#include "api/codec.h"
#include "tests/support/json_fx.h"
#include "result/result_json.h"
#include "config/config.h"
#include "server/job.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The configurations the decoders see; see the file comment. */
static struct cfg cfg_default, cfg_small;
static int cfg_ready;

/* Fills both configurations once. */
static void init_cfgs(void)
{
    char err[256];
    if (cfg_ready)
        return;
    if (cfg_defaults(&cfg_default, err, sizeof err) != 0 ||
        cfg_defaults(&cfg_small, err, sizeof err) != 0)
        abort();
    cfg_small.http.max_recipients = 2;
    cfg_small.http.max_batch = 3;
    cfg_ready = 1;
}

/* The verdict and the error list agree. */
static void check_errors(int rc, json_t *errors)
{
    size_t n = json_array_size(errors), i;
    json_t *e;
    if (rc != API_DECODE_OK && rc != API_DECODE_INVALID &&
        rc != API_DECODE_NOMEM)
        abort();
    if (rc == API_DECODE_OK && n != 0)
        abort();
    if (rc == API_DECODE_INVALID && (n == 0 || n > API_MAX_ERRORS))
        abort();
    json_array_foreach(errors, i, e)
    {
        if (!json_is_string(json_object_get(e, "field")) ||
            !json_is_string(json_object_get(e, "message")))
            abort();
    }
}

/* An accepted message is one the SMTP library would accept too. */
static void check_message(const struct job *job, const struct cfg *cfg)
{
    const struct job_message *m = &job->msg;
    char why[160];
    if (m->from == NULL || smtp_addr_check(m->from, 1, why, sizeof why) != 0)
        abort();
    if (m->nto == 0 || m->to == NULL ||
        m->nto > (size_t)cfg->http.max_recipients)
        abort();
    for (size_t i = 0; i < m->nto; i++)
        if (m->to[i] == NULL ||
            smtp_addr_check(m->to[i], 0, why, sizeof why) != 0)
            abort();
    for (size_t i = 0; i < m->nheaders; i++)
        if (m->headers[i].name == NULL || m->headers[i].value == NULL ||
            smtp_header_check(m->headers[i].name, m->headers[i].value, why,
                              sizeof why) != 0)
            abort();
    if (m->body == NULL || m->body[m->body_len] != '\0' ||
        smtp_body_check(m->body, m->body_len, why, sizeof why) != 0)
        abort();
    if (m->raw && (m->body_len == 0 || m->nheaders != 0))
        abort();
}

/* /v1/messages. */
static void fuzz_message(json_t *root, const struct cfg *cfg)
{
    json_t *errors = json_array();
    struct job *job = job_new(JOB_SEND);
    if (errors == NULL || job == NULL)
        abort();
    int rc = api_decode_message(root, cfg, job, errors, "");
    check_errors(rc, errors);
    if (rc == API_DECODE_OK)
        check_message(job, cfg);
    job_free(job);
    json_decref(errors);
}

/* /v1/messages/batch. */
static void fuzz_batch(json_t *root, const struct cfg *cfg)
{
    json_t *errors = json_array();
    struct job **jobs = NULL;
    size_t njobs = 0;
    if (errors == NULL)
        abort();
    int rc = api_decode_batch(root, cfg, &jobs, &njobs, errors);
    check_errors(rc, errors);
    if (rc == API_DECODE_OK) {
        if (jobs == NULL || njobs == 0 || njobs > (size_t)cfg->http.max_batch)
            abort();
        for (size_t i = 0; i < njobs; i++)
            check_message(jobs[i], cfg);
    } else if (jobs != NULL || njobs != 0) {
        abort();
    }
    api_jobs_free(jobs, njobs);
    json_decref(errors);
}

/* /v1/verify, /v1/expand, /v1/help. */
static void fuzz_query(json_t *root, enum job_kind kind)
{
    json_t *errors = json_array();
    struct job *job = job_new(kind);
    if (errors == NULL || job == NULL)
        abort();
    int rc = api_decode_query(root, job, errors);
    check_errors(rc, errors);
    if (rc == API_DECODE_OK && job->arg != NULL) {
        size_t n = strlen(job->arg);
        if (n == 0 || n > API_MAX_ARG)
            abort();
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)job->arg[i];
            if (c < 32 || c == 127)
                abort();
        }
    }
    if (rc == API_DECODE_OK && kind != JOB_HELP && job->arg == NULL)
        abort();
    job_free(job);
    json_decref(errors);
}

/* The raw bytes, up to the first NUL, as response text. */
static void fuzz_text(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL)
        abort();
    memcpy(s, data, size);
    s[size] = '\0';
    json_t *j = result_json_text(s);
    if (!json_is_string(j))
        abort();
    json_decref(j);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t jerr;
    init_cfgs();
    fuzz_text(data, size);
    /* every input, parsed or not, and a small max: as counted byte by byte */
    if (api_json_values((const char *)data, size, SIZE_MAX - 1) !=
            json_fx_values_bytewise((const char *)data, size, SIZE_MAX - 1) ||
        api_json_values((const char *)data, size, 3) !=
            json_fx_values_bytewise((const char *)data, size, 3))
        abort();
    json_t *root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES,
                              &jerr);
    if (root == NULL)
        return 0;
    if (api_json_values((const char *)data, size, SIZE_MAX - 1) !=
        json_fx_tree_values(root))
        abort();
    fuzz_message(root, &cfg_default);
    fuzz_message(root, &cfg_small);
    fuzz_batch(root, &cfg_default);
    fuzz_batch(root, &cfg_small);
    fuzz_query(root, JOB_VERIFY);
    fuzz_query(root, JOB_EXPAND);
    fuzz_query(root, JOB_HELP);
    json_decref(root);
    return 0;
}
