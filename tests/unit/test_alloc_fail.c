/*
 * test_alloc_fail.c - out of memory at every allocation (Jansson's habit):
 * the JSON request decoder (api/codec.c: the errors array, the job and
 * everything decoded into it, Jansson's values it builds) and
 * smtpcore's reply parser fail the Nth allocation for N = 1, 2, ... until
 * a run needs no more than N-1; each failed run must end in the caller's
 * out-of-memory answer, never a crash, a partial success or a leak (the
 * leak half is LeakSanitizer's: build this binary with make's SAN flags,
 * or run it under valgrind).
 *
 * The counter sees Jansson's allocations (json_set_alloc_funcs) and, by
 * the linker's --wrap (see the Makefile), every malloc, calloc, realloc,
 * strdup and strndup called from our own code.  Jansson's blocks alive
 * are counted: a run that leaks a JSON value fails here too.
 * Single-threaded.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/codec.h"
#include "config/config.h"
#include "server/job.h"
#include "smtpcore/src/internal.h"

/* ---- The failing allocator ---- */

static int armed;          /* count (and fail) only while set */
static long fail_at, seen; /* the allocation to fail; those so far */

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t k, size_t n);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);

/* 1 when this allocation is the one to fail. */
static int fail_now(void)
{
    return armed && ++seen == fail_at;
}

void *__wrap_malloc(size_t n)
{
    return fail_now() ? NULL : __real_malloc(n);
}
void *__wrap_calloc(size_t k, size_t n)
{
    return fail_now() ? NULL : __real_calloc(k, n);
}
void *__wrap_realloc(void *p, size_t n)
{
    return fail_now() ? NULL : __real_realloc(p, n);
}
char *__wrap_strdup(const char *s)
{
    return fail_now() ? NULL : __real_strdup(s);
}
char *__wrap_strndup(const char *s, size_t n)
{
    return fail_now() ? NULL : __real_strndup(s, n);
}

/* Jansson's allocator: counts the blocks alive (a leak of a JSON value
   shows without a sanitizer). */
static long json_live;

static void *json_malloc(size_t n)
{
    void *p = fail_now() ? NULL : __real_malloc(n);
    json_live += p != NULL;
    return p;
}

static void json_free(void *p)
{
    json_live -= p != NULL;
    free(p);
}

/* Starts run n: the nth allocation from here on fails. */
static void arm(long n)
{
    fail_at = n;
    seen = 0;
    armed = 1;
}

/* Ends a run: 1 when its nth allocation was reached (and failed). */
static int disarm(void)
{
    armed = 0;
    return seen >= fail_at;
}

/* ---- The JSON decoder ---- */

enum dkind { ONE, BATCH };

struct dcase {
    const char *name;
    enum dkind kind;
    const char *json;
    int want;          /* the verdict with memory enough */
    const char *field; /* of the first error, when invalid */
};

static const struct dcase dcases[] = {
    { "message", ONE,
      "{\"from\":\"a@example.org\",\"to\":[\"b@example.net\",\"c@example.net\"],"
      "\"headers\":{\"Subject\":\"caf\\u00e9\",\"X-Tag\":\"one\"},"
      "\"body\":\"line one\\nline two\\n\"}",
      API_DECODE_OK, NULL },
    { "message_header_pairs", ONE,
      "{\"from\":\"a@example.org\",\"to\":[\"b@example.net\"],"
      "\"headers\":[[\"Subject\",\"x\"],[\"Keywords\",\"y\"]],"
      "\"raw\":\"Subject: x\\r\\n\\r\\nbody\\r\\n\"}",
      API_DECODE_INVALID, NULL },
    { "message_invalid", ONE,
      "{\"from\":\"not an address\",\"to\":[\"b@example.net\",7],"
      "\"body\":1}",
      API_DECODE_INVALID, "from" },
    { "twelve_errors", ONE, /* the errors array grows past 8 */
      "{\"from\":\"a@example.org\",\"to\":[\"b@example.net\"],\"body\":\"x\","
      "\"headers\":{\"H1\":1,\"H2\":2,\"H3\":3,\"H4\":4,\"H5\":5,"
      "\"H6\":6,\"H7\":7,\"H8\":8,\"H9\":9,\"H10\":10,\"H11\":11,"
      "\"H12\":12}}",
      API_DECODE_INVALID, "headers.H12" },
    { "batch", BATCH,
      "{\"messages\":[{\"from\":\"a@example.org\",\"to\":[\"b@example.net\"],"
      "\"body\":\"one\"},{\"from\":\"a@example.org\","
      "\"to\":[\"c@example.net\"],\"headers\":{\"Subject\":\"two\"},"
      "\"body\":\"two\"}]}",
      API_DECODE_OK, NULL },
};

static struct cfg alloc_cfg(void)
{
    struct cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.http.max_recipients = 10;
    cfg.http.max_batch = 10;
    cfg.http.max_body = 1 << 20;
    return cfg;
}

/* What one decode gave (owned: dres_free). */
struct dres {
    int rc;
    json_t *errors;
    struct job **jobs; /* BATCH */
    size_t njobs;
    struct job *job; /* ONE */
};

/* Decodes root (c->json parsed) as the POST routes do (errors array,
   decoder); rc API_DECODE_NOMEM when a step ran out of memory. */
static void decode(const struct dcase *c, json_t *root, struct dres *r)
{
    struct cfg cfg = alloc_cfg();

    memset(r, 0, sizeof *r);
    r->rc = API_DECODE_NOMEM;
    if ((r->errors = json_array()) == NULL)
        return;
    if (c->kind == BATCH)
        r->rc = api_decode_batch(root, &cfg, &r->jobs, &r->njobs, r->errors);
    else if ((r->job = job_new(JOB_SEND)) != NULL)
        r->rc = api_decode_message(root, &cfg, r->job, r->errors, "");
}

/* Appends one job's envelope, header fields and body to out. */
static void digest_job(const struct job *job, char *out, size_t len)
{
    const struct job_message *m = &job->msg;
    size_t o = strlen(out);

    o += (size_t)snprintf(out + o, len - o,
                          " from=%s to=", m->from ? m->from : "-");
    for (size_t i = 0; i < m->nto && o < len; i++)
        o += (size_t)snprintf(out + o, len - o, "%s,", m->to[i]);
    for (size_t i = 0; i < m->nheaders && o < len; i++)
        o += (size_t)snprintf(out + o, len - o, " %s: %s", m->headers[i].name,
                              m->headers[i].value);
    if (o < len)
        snprintf(out + o, len - o, " body=%.*s raw=%d", (int)m->body_len,
                 m->body ? m->body : "", m->raw);
}

/* The verdict, the errors and every job decoded, as one line. */
static void digest(const struct dres *r, char *out, size_t len)
{
    char *errs = json_dumps(r->errors, JSON_COMPACT | JSON_SORT_KEYS);

    snprintf(out, len, "rc=%d errors=%s", r->rc, errs ? errs : "-");
    json_free(errs); /* Jansson's block */
    if (r->rc != API_DECODE_OK)
        return;
    for (size_t i = 0; i < r->njobs; i++)
        digest_job(r->jobs[i], out, len);
    if (r->job != NULL)
        digest_job(r->job, out, len);
}

/* Frees what decode built. */
static void dres_free(struct dres *r)
{
    api_jobs_free(r->jobs, r->njobs);
    job_free(r->job);
    json_decref(r->errors);
}

/* Every allocation of every case's decode fails once, in turn: each such
   run answers API_DECODE_NOMEM or, when the decoder recovered, exactly
   what a run with plenty of memory answers (verdict, errors, jobs); the
   first run that needs no failure answers that too.  The parse itself is
   Jansson's and runs with memory enough. */
static void test_decoder_answers_out_of_memory_at_every_allocation(void **state)
{
    static char want[8192], got[8192];
    (void)state;
    json_set_alloc_funcs(json_malloc, json_free);
    for (size_t i = 0; i < sizeof dcases / sizeof dcases[0]; i++) {
        const struct dcase *c = &dcases[i];
        json_error_t jerr;
        json_t *root = json_loads(c->json, JSON_REJECT_DUPLICATES, &jerr);
        struct dres r;
        long n, nomem = 0, live = json_live;
        int failed;
        assert_non_null(root);
        decode(c, root, &r);
        digest(&r, want, sizeof want);
        assert_int_equal(r.rc, c->want);
        if (c->field != NULL)
            assert_non_null(strstr(want, c->field));
        dres_free(&r);
        for (n = 1, failed = 1; failed && n < 100000; n++) {
            arm(n);
            decode(c, root, &r);
            failed = disarm();
            digest(&r, got, sizeof got);
            dres_free(&r);
            if (json_live != live)
                fail_msg("%s: allocation %ld failed: %ld JSON values leak",
                         c->name, n, json_live - live);
            nomem += r.rc == API_DECODE_NOMEM;
            if (r.rc != API_DECODE_NOMEM && strcmp(got, want) != 0)
                fail_msg("%s: allocation %ld failed, and the decoder "
                         "answered\n  %s\nnot out of memory nor\n  %s",
                         c->name, n, got, want);
        }
        assert_false(failed);
        assert_true(n > 2 && nomem > 0);
        json_decref(root);
        print_message("    %s: %ld allocations, each failed once: %ld out "
                      "of memory, the others recovered\n",
                      c->name, n - 2, nomem);
    }
    json_set_alloc_funcs(malloc, free);
}

/* ---- smtpcore's reply parser ---- */

static const char *const ehlo_lines[] = {
    "250-mx.example.org greets you",
    "250-PIPELINING",
    "250-SIZE 10240000",
    "250-8BITMIME",
    "250-ENHANCEDSTATUSCODES",
    "250 2.0.0 SMTPUTF8",
};

/* Feeds the EHLO reply line by line: 0 with every line kept, or -1 with
   why from the line that failed. */
static int parse_ehlo(struct smtp_reply *r, char *why, size_t whylen)
{
    size_t bytes = 0;
    for (size_t i = 0; i < sizeof ehlo_lines / sizeof ehlo_lines[0]; i++) {
        struct smtp__line ln;
        const char *l = ehlo_lines[i];
        assert_int_equal(smtp__reply_line_parse(l, strlen(l), &ln), 0);
        if (smtp__reply_add(r, &ln, &bytes, why, whylen) < 0)
            return -1;
    }
    return 0;
}

/* Each allocation of a six-line reply fails once in turn: the parser says
   "out of memory", the lines it kept are whole and in order, and
   smtp_reply_clear frees them; then a run with enough memory keeps all. */
static void test_reply_parser_out_of_memory_at_every_allocation(void **state)
{
    long n;
    (void)state;
    for (n = 1; n < 1000; n++) {
        struct smtp_reply r = { 0 };
        char why[100] = "";
        arm(n);
        int rc = parse_ehlo(&r, why, sizeof why);
        int failed = disarm();
        if (!failed) {
            assert_int_equal(rc, 0);
            assert_int_equal(r.nlines, 6);
            assert_int_equal(r.code, 250);
            assert_string_equal(r.lines[5], "2.0.0 SMTPUTF8");
            assert_string_equal(r.enhanced, "2.0.0");
            smtp_reply_clear(&r);
            break;
        }
        assert_int_equal(rc, -1);
        assert_string_equal(why, "out of memory");
        assert_true(r.nlines < 6);
        for (size_t i = 0; i < r.nlines; i++)
            assert_string_equal(r.lines[i], ehlo_lines[i] + 4);
        smtp_reply_clear(&r);
        assert_int_equal(r.nlines, 0);
        assert_null(r.lines);
    }
    assert_int_equal(n, 13); /* two allocations a line */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_decoder_answers_out_of_memory_at_every_allocation),
        cmocka_unit_test(test_reply_parser_out_of_memory_at_every_allocation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
