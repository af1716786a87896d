/*
 * tests/unit/test_api_codec.c - the API's JSON codec (api/codec.c): request
 * bodies decoded into jobs, with one {"field", "message"} per problem.
 * The encoding side (result_json, the problem document, the Prometheus
 * text, the embedded OpenAPI document) is in test_api_result.c.
 *
 * The decoding cases are a table: body, decoder, expected verdict, the
 * field of the first error and a piece of its message.
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

#include "api/api.h"
#include "api/codec.h"
#include "result/result_json.h"
#include "api/internal.h"
#include "config/config.h"
#include "server/job.h"
#include "tests/support/json_fx.h"

/* max_recipients 3 and max_batch 2 keep the limit cases short. */
static struct cfg test_cfg(void)
{
    struct cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.http.max_recipients = 3;
    cfg.http.max_batch = 2;
    cfg.http.max_body = 1 << 20;
    return cfg;
}

static json_t *parse(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_REJECT_DUPLICATES, &e);
    if (j == NULL)
        fail_msg("test JSON does not parse: %s (%s)", e.text, text);
    return j;
}

/* ---- The table ---- */

enum decoder { D_MSG, D_BATCH, D_VERIFY, D_EXPAND, D_HELP };

struct dcase {
    const char *name;
    enum decoder dec;
    const char *json;
    int rc;
    const char *field;   /* of the first error; NULL when OK */
    const char *message; /* a substring of its message, or NULL */
    size_t nerrors;      /* expected count, 0: not checked */
};

#define OKMSG "\"from\":\"a@x.org\",\"to\":[\"b@x.org\"]"
#define X10 "xxxxxxxxxx"
#define X100 X10 X10 X10 X10 X10 X10 X10 X10 X10 X10
#define X1000 X100 X100 X100 X100 X100 X100 X100 X100 X100 X100
#define X998 \
    X100 X100 X100 X100 X100 X100 X100 X100 X100 X10 X10 X10 X10 X10 X10 X10 \
        X10 X10 "xxxxxxxx"

static const struct dcase cases[] = {
    /* shapes and required members */
    { "message_not_object", D_MSG, "[1]", API_DECODE_INVALID, "$",
      "must be an object", 1 },
    { "missing_from", D_MSG, "{\"to\":[\"b@x.org\"]}", API_DECODE_INVALID,
      "from", "is required", 1 },
    { "from_not_string", D_MSG, "{\"from\":1,\"to\":[\"b@x.org\"]}",
      API_DECODE_INVALID, "from", "must be a string", 1 },
    { "from_crlf_injection", D_MSG,
      "{\"from\":\"a@x.org>\\r\\nRCPT TO:<e@evil.org\",\"to\":[\"b@x.org\"]}",
      API_DECODE_INVALID, "from", "CR or LF", 1 },
    { "missing_to", D_MSG, "{\"from\":\"a@x.org\"}", API_DECODE_INVALID, "to",
      "is required", 1 },
    { "to_not_array", D_MSG, "{\"from\":\"a@x.org\",\"to\":\"b@x.org\"}",
      API_DECODE_INVALID, "to", "must be an array", 1 },
    { "empty_to", D_MSG, "{\"from\":\"a@x.org\",\"to\":[]}", API_DECODE_INVALID,
      "to", "must not be empty", 1 },
    { "too_many_recipients", D_MSG,
      "{\"from\":\"a@x.org\",\"to\":[\"b@x.org\",\"c@x.org\",\"d@x.org\","
      "\"e@x.org\"]}",
      API_DECODE_INVALID, "to", "at most 3", 1 },
    { "to_item_not_string", D_MSG,
      "{\"from\":\"a@x.org\",\"to\":[\"b@x.org\",5]}", API_DECODE_INVALID,
      "to[1]", "must be a string", 1 },
    { "to_crlf_injection_names_index", D_MSG,
      "{\"from\":\"a@x.org\",\"to\":[\"b@x.org\",\"c@x.org\","
      "\"d@x.org\\r\\nDATA\"]}",
      API_DECODE_INVALID, "to[2]", "CR or LF", 1 },
    { "to_bare_lf", D_MSG, "{\"from\":\"a@x.org\",\"to\":[\"d@x.org\\nX\"]}",
      API_DECODE_INVALID, "to[0]", "CR or LF", 1 },
    { "to_empty_address", D_MSG, "{\"from\":\"a@x.org\",\"to\":[\"\"]}",
      API_DECODE_INVALID, "to[0]", "empty address", 1 },
    { "to_missing_domain", D_MSG, "{\"from\":\"a@x.org\",\"to\":[\"bob\"]}",
      API_DECODE_INVALID, "to[0]", "missing '@domain'", 1 },
    { "to_space_outside_quotes", D_MSG,
      "{\"from\":\"a@x.org\",\"to\":[\"b b@x.org\"]}", API_DECODE_INVALID,
      "to[0]", NULL, 1 },
    { "to_angle_brackets", D_MSG,
      "{\"from\":\"a@x.org\",\"to\":[\"<b@x.org>\"]}", API_DECODE_INVALID,
      "to[0]", NULL, 1 },
    { "unknown_member", D_MSG, "{" OKMSG ",\"priority\":\"high\"}",
      API_DECODE_INVALID, "priority", "unknown member", 1 },
    { "relay_cannot_be_chosen", D_MSG, "{" OKMSG ",\"host\":\"evil.org\"}",
      API_DECODE_INVALID, "host", "unknown member", 1 },
    /* headers */
    { "headers_wrong_type", D_MSG, "{" OKMSG ",\"headers\":\"Subject: x\"}",
      API_DECODE_INVALID, "headers", "object or an array", 1 },
    { "header_object_crlf_in_value", D_MSG,
      "{" OKMSG ",\"headers\":{\"Subject\":\"hi\\r\\nBcc: e@evil.org\"}}",
      API_DECODE_INVALID, "headers.Subject", "CR or LF", 1 },
    { "header_object_control_char", D_MSG,
      "{" OKMSG ",\"headers\":{\"Subject\":\"a\\u0007b\"}}", API_DECODE_INVALID,
      "headers.Subject", "control character", 1 },
    { "header_object_value_not_string", D_MSG,
      "{" OKMSG ",\"headers\":{\"Subject\":1}}", API_DECODE_INVALID,
      "headers.Subject", "must be a string", 1 },
    { "header_object_bad_name", D_MSG,
      "{" OKMSG ",\"headers\":{\"Bad Name\":\"x\"}}", API_DECODE_INVALID,
      "headers.Bad Name", "printable ASCII", 1 },
    { "header_object_colon_in_name", D_MSG,
      "{" OKMSG ",\"headers\":{\"X:Y\":\"x\"}}", API_DECODE_INVALID,
      "headers.X:Y", NULL, 1 },
    { "header_array_not_pair", D_MSG, "{" OKMSG ",\"headers\":[[\"Subject\"]]}",
      API_DECODE_INVALID, "headers[0]", "[name, value] pair", 1 },
    { "header_array_item_not_array", D_MSG,
      "{" OKMSG ",\"headers\":[\"Subject: x\"]}", API_DECODE_INVALID,
      "headers[0]", "[name, value] pair", 1 },
    { "header_array_name_not_string", D_MSG,
      "{" OKMSG ",\"headers\":[[1,\"x\"]]}", API_DECODE_INVALID,
      "headers[0][0]", "must be a string", 1 },
    { "header_array_bad_name", D_MSG,
      "{" OKMSG ",\"headers\":[[\"Sub ject\",\"x\"]]}", API_DECODE_INVALID,
      "headers[0][0]", "printable ASCII", 1 },
    { "header_array_crlf_in_value", D_MSG,
      "{" OKMSG ",\"headers\":[[\"Subject\",\"ok\"],[\"X-A\",\"a\\nb\"]]}",
      API_DECODE_INVALID, "headers[1][1]", "CR or LF", 1 },
    { "header_array_value_not_string", D_MSG,
      "{" OKMSG ",\"headers\":[[\"Subject\",null]]}", API_DECODE_INVALID,
      "headers[0][1]", "must be a string", 1 },
    /* '<' and '>' inside a quoted local part (parameter smuggling) */
    { "to_quoted_gt_smuggles_parameters", D_MSG,
      "{\"from\":\"a@x.org\",\"to\":[\"\\\"a> SIZE=1 RET=FULL\\\"@b.example\"]}",
      API_DECODE_INVALID, "to[0]", "inside a quoted local part", 1 },
    { "from_quoted_lt", D_MSG,
      "{\"from\":\"\\\"<x\\\"@b.example\",\"to\":[\"b@x.org\"]}",
      API_DECODE_INVALID, "from", "inside a quoted local part", 1 },
    { "to_quoted_escaped_gt", D_MSG,
      "{\"from\":\"a@x.org\",\"to\":[\"\\\"a\\\\> NOTIFY=NEVER\\\"@b.example\"]}",
      API_DECODE_INVALID, "to[0]", "inside a quoted local part", 1 },
    { "to_parameters_after_address", D_MSG,
      "{\"from\":\"a@x.org\",\"to\":[\"b@x.org> NOTIFY=NEVER\"]}",
      API_DECODE_INVALID, "to[0]", "bad character '>' in domain", 1 },
    { "from_parameters_after_space", D_MSG,
      "{\"from\":\"a@x.org SIZE=1\",\"to\":[\"b@x.org\"]}", API_DECODE_INVALID,
      "from", "bad character ' ' in domain", 1 },
    /* controls other than HTAB in a value: DEL, ESC, C1 (NEL) */
    { "header_object_del", D_MSG,
      "{" OKMSG ",\"headers\":{\"Subject\":\"a\\u007fb\"}}", API_DECODE_INVALID,
      "headers.Subject", "control character", 1 },
    { "header_array_escape", D_MSG,
      "{" OKMSG ",\"headers\":[[\"Subject\",\"\\u001b[31mred\"]]}",
      API_DECODE_INVALID, "headers[0][1]", "control character", 1 },
    { "header_object_c1_nel", D_MSG,
      "{" OKMSG ",\"headers\":{\"Subject\":\"a\\u0085Bcc: e@evil.org\"}}",
      API_DECODE_INVALID, "headers.Subject", "control character", 1 },
    { "header_object_tab_and_utf8_ok", D_MSG,
      "{" OKMSG ",\"headers\":{\"Subject\":\"a\\tb \\u00a0\\u00e9\"}}",
      API_DECODE_OK, NULL, NULL, 0 },
    /* a field RFC 5322 3.6 allows once, twice under any case: both named */
    { "header_object_from_twice_any_case", D_MSG,
      "{" OKMSG ",\"headers\":{\"From\":\"a@x.org\",\"from\":\"e@evil.org\"}}",
      API_DECODE_INVALID, "headers.from", "repeats headers.From", 1 },
    { "header_array_subject_twice", D_MSG,
      "{" OKMSG ",\"headers\":[[\"Subject\",\"a\"],[\"X-A\",\"b\"],"
      "[\"SUBJECT\",\"c\"]]}",
      API_DECODE_INVALID, "headers[2][0]", "repeats headers[0][0]", 1 },
    { "header_array_bcc_twice", D_MSG,
      "{" OKMSG ",\"headers\":[[\"bcc\",\"a@x.org\"],[\"BCC\",\"b@x.org\"]]}",
      API_DECODE_INVALID, "headers[1][0]", "allows one bcc field", 1 },
    { "header_array_every_repeat_reported", D_MSG,
      "{" OKMSG ",\"headers\":[[\"To\",\"a\"],[\"to\",\"b\"],[\"Date\",\"c\"],"
      "[\"DATE\",\"d\"],[\"tO\",\"e\"]]}",
      API_DECODE_INVALID, "headers[1][0]", "repeats headers[0][0]", 3 },
    { "batch_header_repeat_path", D_BATCH,
      "{\"messages\":[{" OKMSG ",\"headers\":{\"Message-ID\":\"<a@b>\","
      "\"message-id\":\"<c@d>\"}}]}",
      API_DECODE_INVALID, "messages[0].headers.message-id",
      "repeats messages[0].headers.Message-ID", 1 },
    { "header_array_repeatable_fields_ok", D_MSG,
      "{" OKMSG ",\"headers\":[[\"Received\",\"a\"],[\"received\",\"b\"],"
      "[\"Comments\",\"c\"],[\"Keywords\",\"d\"],[\"keywords\",\"e\"],"
      "[\"Resent-To\",\"f\"],[\"Resent-To\",\"g\"]]}",
      API_DECODE_OK, NULL, NULL, 0 },
    /* body and raw */
    { "body_wrong_type", D_MSG, "{" OKMSG ",\"body\":5}", API_DECODE_INVALID,
      "body", "string or an array", 1 },
    { "body_line_not_string", D_MSG, "{" OKMSG ",\"body\":[\"a\",2]}",
      API_DECODE_INVALID, "body[1]", "must be a string", 1 },
    { "raw_with_headers", D_MSG,
      "{" OKMSG ",\"raw\":\"Subject: x\\r\\n\\r\\nhi\","
      "\"headers\":{\"Subject\":\"y\"}}",
      API_DECODE_INVALID, "raw", "replaces headers and body", 1 },
    { "raw_with_body", D_MSG,
      "{" OKMSG ",\"raw\":\"Subject: x\\r\\n\\r\\nhi\",\"body\":\"b\"}",
      API_DECODE_INVALID, "raw", "replaces headers and body", 1 },
    { "raw_not_string", D_MSG, "{" OKMSG ",\"raw\":[\"x\"]}",
      API_DECODE_INVALID, "raw", "must be a string", 1 },
    { "raw_empty", D_MSG, "{" OKMSG ",\"raw\":\"\"}", API_DECODE_INVALID, "raw",
      "must not be empty", 1 },
    { "body_line_over_998", D_MSG,
      "{" OKMSG ",\"body\":\"line one\\n" X1000 "\"}", API_DECODE_INVALID,
      "body", "body line 2 is longer than 998 octets", 1 },
    { "body_lines_item_over_998", D_MSG,
      "{" OKMSG ",\"body\":[\"ok\",\"" X1000 "\"]}", API_DECODE_INVALID, "body",
      "body line 2 is longer than 998 octets", 1 },
    { "raw_header_line_over_998", D_MSG,
      "{" OKMSG ",\"raw\":\"Subject: " X1000 "\\r\\n\\r\\nhi\"}",
      API_DECODE_INVALID, "raw", "line 1 is longer than 998", 1 },
    { "body_line_of_998_ok", D_MSG,
      "{" OKMSG ",\"body\":\"a\\r\\n" X998 "\\rb\"}", API_DECODE_OK, NULL, NULL,
      0 },
    { "every_error_reported", D_MSG,
      "{\"from\":\"a\\r@x.org\",\"to\":[\"\",\"b@x.org\",7],\"x\":1,"
      "\"headers\":[[\"A\",\"\\n\"]]}",
      API_DECODE_INVALID, "x", "unknown member", 5 },
    { "valid_message", D_MSG,
      "{" OKMSG ",\"headers\":{\"Subject\":\"s\"},\"body\":\"b\"}",
      API_DECODE_OK, NULL, NULL, 0 },
    /* batches */
    { "batch_not_object", D_BATCH, "[]", API_DECODE_INVALID, "$",
      "must be an object", 1 },
    { "batch_missing_messages", D_BATCH, "{}", API_DECODE_INVALID, "messages",
      "is required", 1 },
    { "batch_messages_not_array", D_BATCH, "{\"messages\":{}}",
      API_DECODE_INVALID, "messages", "must be an array", 1 },
    { "batch_empty", D_BATCH, "{\"messages\":[]}", API_DECODE_INVALID,
      "messages", "1 to 2", 1 },
    { "batch_too_many", D_BATCH,
      "{\"messages\":[{" OKMSG "},{" OKMSG "},{" OKMSG "}]}",
      API_DECODE_INVALID, "messages", "got 3", 1 },
    { "batch_unknown_member", D_BATCH,
      "{\"messages\":[{" OKMSG "}],\"priority\":1}", API_DECODE_INVALID,
      "priority", "unknown member", 1 },
    { "batch_item_not_object", D_BATCH, "{\"messages\":[5]}",
      API_DECODE_INVALID, "messages[0]", "must be an object", 1 },
    { "batch_item_bad_recipient_path", D_BATCH,
      "{\"messages\":[{" OKMSG "},{\"from\":\"a@x.org\",\"to\":[\"b\\r\"]}]}",
      API_DECODE_INVALID, "messages[1].to[0]", "CR or LF", 1 },
    { "batch_item_header_path", D_BATCH,
      "{\"messages\":[{" OKMSG ",\"headers\":[[\"S\",\"\\r\"]]}]}",
      API_DECODE_INVALID, "messages[0].headers[0][1]", "CR or LF", 1 },
    { "batch_errors_from_every_message", D_BATCH,
      "{\"messages\":[{\"to\":[\"b@x.org\"]},{\"from\":\"a@x.org\"}]}",
      API_DECODE_INVALID, "messages[0].from", "is required", 2 },
    { "valid_batch", D_BATCH, "{\"messages\":[{" OKMSG "},{" OKMSG "}]}",
      API_DECODE_OK, NULL, NULL, 0 },
    /* queries */
    { "verify_not_object", D_VERIFY, "[\"a@x.org\"]", API_DECODE_INVALID, "$",
      "must be an object", 1 },
    { "verify_missing_address", D_VERIFY, "{}", API_DECODE_INVALID, "address",
      "is required", 1 },
    { "verify_crlf", D_VERIFY, "{\"address\":\"bob\\r\\nQUIT\"}",
      API_DECODE_INVALID, "address", "CR or LF", 1 },
    { "verify_control_char", D_VERIFY, "{\"address\":\"bob\\u0001\"}",
      API_DECODE_INVALID, "address", "control character", 1 },
    { "verify_unknown_member", D_VERIFY, "{\"address\":\"bob\",\"user\":1}",
      API_DECODE_INVALID, "user", "unknown member", 1 },
    { "verify_empty", D_VERIFY, "{\"address\":\"\"}", API_DECODE_INVALID,
      "address", "must not be empty", 1 },
    { "expand_missing_list", D_EXPAND, "{\"address\":\"x\"}",
      API_DECODE_INVALID, "address", "unknown member", 2 },
    { "expand_list_not_string", D_EXPAND, "{\"list\":[\"staff\"]}",
      API_DECODE_INVALID, "list", "must be a string", 1 },
    { "help_topic_not_string", D_HELP, "{\"topic\":1}", API_DECODE_INVALID,
      "topic", "must be a string", 1 },
    { "help_unknown_member", D_HELP, "{\"details\":\"MAIL\"}",
      API_DECODE_INVALID, "details", "unknown member", 1 },
    { "help_without_topic", D_HELP, "{}", API_DECODE_OK, NULL, NULL, 0 },
    { "help_non_ascii_topic", D_HELP, "{\"topic\":\"Gr\\u00fc\\u00dfe\"}",
      API_DECODE_INVALID, "topic", "HELP has no SMTPUTF8 form", 1 },
    { "verify_utf8_left_to_the_relay", D_VERIFY,
      "{\"address\":\"j\\u00f6rg@example.org\"}", API_DECODE_OK, NULL, NULL,
      0 },
    { "valid_verify", D_VERIFY, "{\"address\":\"postmaster\"}", API_DECODE_OK,
      NULL, NULL, 0 },
};

/* Runs one case through its decoder; returns the verdict, fills errors. */
static int run_case(const struct dcase *c, const struct cfg *cfg,
                    json_t *errors)
{
    json_t *root = parse(c->json);
    int rc;
    if (c->dec == D_BATCH) {
        struct job **jobs = NULL;
        size_t n = 0;
        rc = api_decode_batch(root, cfg, &jobs, &n, errors);
        if (rc == API_DECODE_OK)
            assert_non_null(jobs);
        else
            assert_null(jobs);
        api_jobs_free(jobs, n);
    } else {
        enum job_kind kind = c->dec == D_MSG      ? JOB_SEND
                             : c->dec == D_VERIFY ? JOB_VERIFY
                             : c->dec == D_EXPAND ? JOB_EXPAND
                                                  : JOB_HELP;
        struct job *job = job_new(kind);
        assert_non_null(job);
        rc = kind == JOB_SEND ? api_decode_message(root, cfg, job, errors, "")
                              : api_decode_query(root, job, errors);
        job_free(job);
    }
    json_decref(root);
    return rc;
}

static void test_decode_table(void **state)
{
    struct cfg cfg = test_cfg();
    size_t failures = 0;
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct dcase *c = &cases[i];
        json_t *errors = json_array();
        int rc = run_case(c, &cfg, errors);
        json_t *first = json_array_get(errors, 0);
        const char *field = json_string_value(json_object_get(first, "field"));
        const char *msg = json_string_value(json_object_get(first, "message"));
        int ok = rc == c->rc &&
                 (c->field == NULL
                      ? json_array_size(errors) == 0
                      : field != NULL && strcmp(field, c->field) == 0) &&
                 (c->message == NULL ||
                  (msg != NULL && strstr(msg, c->message) != NULL)) &&
                 (c->nerrors == 0 || json_array_size(errors) == c->nerrors);
        if (!ok) {
            char *dump = json_dumps(errors, JSON_COMPACT);
            print_error("case %s: rc %d (want %d), errors %s\n", c->name, rc,
                        c->rc, dump != NULL ? dump : "?");
            free(dump);
            failures++;
        }
        json_decref(errors);
    }
    assert_int_equal(failures, 0);
    assert_true(sizeof cases / sizeof cases[0] >= 30);
}

/* ---- Successful decodes: what lands in the job ---- */

/* Decodes a message that must be valid. */
static struct job *decode_ok(const char *text, const struct cfg *cfg)
{
    json_t *root = parse(text), *errors = json_array();
    struct job *job = job_new(JOB_SEND);
    assert_non_null(job);
    int rc = api_decode_message(root, cfg, job, errors, "");
    if (rc != API_DECODE_OK) {
        char *dump = json_dumps(errors, JSON_COMPACT);
        fail_msg("decode failed: %s", dump);
    }
    json_decref(root);
    json_decref(errors);
    return job;
}

static void test_header_object_keeps_order(void **state)
{
    struct cfg cfg = test_cfg();
    struct job *job = decode_ok(
        "{\"from\":\"a@x.org\",\"to\":[\"b@x.org\",\"c@x.org\"],"
        "\"headers\":{\"Subject\":\"s\",\"From\":\"f\",\"X-B\":\"b\"},"
        "\"body\":\"hello\"}",
        &cfg);
    (void)state;
    assert_string_equal(job->msg.from, "a@x.org");
    assert_int_equal(job->msg.nto, 2);
    assert_string_equal(job->msg.to[1], "c@x.org");
    assert_int_equal(job->msg.nheaders, 3);
    assert_string_equal(job->msg.headers[0].name, "Subject");
    assert_string_equal(job->msg.headers[1].name, "From");
    assert_string_equal(job->msg.headers[2].name, "X-B");
    assert_string_equal(job->msg.headers[2].value, "b");
    assert_string_equal(job->msg.body, "hello");
    assert_int_equal(job->msg.body_len, 5);
    assert_int_equal(job->msg.raw, 0);
    job_free(job);
}

static void test_header_array_keeps_order_and_repeats(void **state)
{
    struct cfg cfg = test_cfg();
    struct job *job = decode_ok(
        "{\"from\":\"a@x.org\",\"to\":[\"b@x.org\"],\"headers\":"
        "[[\"Received\",\"one\"],[\"Subject\",\"\\u00e9t\\u00e9\"],"
        "[\"Received\",\"two\"]]}",
        &cfg);
    (void)state;
    assert_int_equal(job->msg.nheaders, 3);
    assert_string_equal(job->msg.headers[0].name, "Received");
    assert_string_equal(job->msg.headers[0].value, "one");
    /* non-ASCII in an unstructured field: an RFC 2047 encoded-word */
    assert_string_equal(job->msg.headers[1].value, "=?UTF-8?b?w6l0w6k=?=");
    assert_string_equal(job->msg.headers[2].name, "Received");
    assert_string_equal(job->msg.headers[2].value, "two");
    assert_string_equal(job->msg.body, ""); /* no body: empty */
    job_free(job);
}

static void test_body_lines_joined_with_crlf(void **state)
{
    struct cfg cfg = test_cfg();
    struct job *job = decode_ok("{\"from\":\"a@x.org\",\"to\":[\"b@x.org\"],"
                                "\"body\":[\"Hi,\",\"\",\".dot\"]}",
                                &cfg);
    (void)state;
    assert_int_equal(job->msg.body_len, 11);
    assert_memory_equal(job->msg.body, "Hi,\r\n\r\n.dot", 12);
    job_free(job);
}

static void test_raw_message(void **state)
{
    struct cfg cfg = test_cfg();
    struct job *job = decode_ok(
        "{\"from\":\"\",\"to\":[\"b@x.org\"],\"headers\":null,"
        "\"raw\":\"Subject: x\\r\\n\\r\\nbody\\r\\n\"}",
        &cfg);
    (void)state;
    assert_string_equal(job->msg.from, ""); /* null reverse-path */
    assert_int_equal(job->msg.raw, 1);
    assert_string_equal(job->msg.body, "Subject: x\r\n\r\nbody\r\n");
    assert_int_equal(job->msg.body_len, 20);
    assert_int_equal(job->msg.nheaders, 0);
    job_free(job);
}

static void test_limits_off_when_zero(void **state)
{
    struct cfg cfg = test_cfg();
    cfg.http.max_recipients = 0;
    struct job *job = decode_ok(
        "{\"from\":\"a@x.org\",\"to\":[\"b@x.org\",\"c@x.org\",\"d@x.org\","
        "\"e@x.org\",\"f@x.org\"]}",
        &cfg);
    (void)state;
    assert_int_equal(job->msg.nto, 5);
    job_free(job);
}

static void test_errors_are_capped(void **state)
{
    struct cfg cfg = test_cfg();
    json_t *root = json_pack("{s:s, s:[]}", "from", "a@x.org", "to");
    json_t *errors = json_array();
    struct job *job = job_new(JOB_SEND);
    (void)state;
    cfg.http.max_recipients = 0;
    for (int i = 0; i < 3 * API_MAX_ERRORS; i++)
        json_array_append_new(json_object_get(root, "to"),
                              json_string("no-at-sign"));
    assert_int_equal(api_decode_message(root, &cfg, job, errors, ""),
                     API_DECODE_INVALID);
    assert_int_equal(json_array_size(errors), API_MAX_ERRORS);
    job_free(job);
    json_decref(root);
    json_decref(errors);
}

static void test_batch_decodes_every_message(void **state)
{
    struct cfg cfg = test_cfg();
    json_t *root = parse("{\"messages\":[{\"from\":\"a@x.org\",\"to\":"
                         "[\"b@x.org\"],\"body\":\"one\"},{\"from\":"
                         "\"c@x.org\",\"to\":[\"d@x.org\"],\"raw\":\"two\"}]}");
    json_t *errors = json_array();
    struct job **jobs = NULL;
    size_t n = 0;
    (void)state;
    assert_int_equal(api_decode_batch(root, &cfg, &jobs, &n, errors),
                     API_DECODE_OK);
    assert_int_equal(n, 2);
    assert_int_equal(jobs[0]->kind, JOB_SEND);
    assert_string_equal(jobs[0]->msg.body, "one");
    assert_string_equal(jobs[1]->msg.from, "c@x.org");
    assert_int_equal(jobs[1]->msg.raw, 1);
    api_jobs_free(jobs, n);
    json_decref(root);
    json_decref(errors);
}

static void test_query_arguments(void **state)
{
    json_t *errors = json_array();
    struct job *v = job_new(JOB_VERIFY), *h = job_new(JOB_HELP),
               *h2 = job_new(JOB_HELP), *e = job_new(JOB_EXPAND);
    json_t *rv = parse("{\"address\":\"bob@x.org\"}");
    json_t *rh = parse("{\"topic\":\"\"}");
    json_t *rh2 = parse("{\"topic\":\"MAIL\"}");
    json_t *re = parse("{\"list\":\"staff\"}");
    (void)state;
    assert_int_equal(api_decode_query(rv, v, errors), API_DECODE_OK);
    assert_string_equal(v->arg, "bob@x.org");
    assert_int_equal(api_decode_query(rh, h, errors), API_DECODE_OK);
    assert_null(h->arg); /* "" is HELP alone */
    assert_int_equal(api_decode_query(rh2, h2, errors), API_DECODE_OK);
    assert_string_equal(h2->arg, "MAIL");
    assert_int_equal(api_decode_query(re, e, errors), API_DECODE_OK);
    assert_string_equal(e->arg, "staff");
    assert_int_equal(json_array_size(errors), 0);
    job_free(v), job_free(h), job_free(h2), job_free(e);
    json_decref(rv), json_decref(rh), json_decref(rh2), json_decref(re);
    json_decref(errors);
}

/* The pre-parse count equals the tree's for strings with escaped quotes
   and backslash runs of every parity, numbers, literals and nesting; it
   stops past max; an unclosed string counts once. */
static void test_json_values_count_the_tree(void **state)
{
    static const char *const texts[] = {
        "{\"from\":\"a@b\",\"to\":[\"c@d\",\"e@f\"],\"body\":\"x\"}",
        "[\"\\\"\",\"\\\\\",\"\\\\\\\"\\\\\",1]",
        "{\"a\\\\\":{\"b\\\"c\":[true,false,null,-1.5e+3]}}",
        "[\"\\u0022\",\"{[\",\"]}\",[],{},\"\\\\\\\\\"]",
        "  {\"k\" : [ 1 , 22 , 333 ] , \"s\" : \"caf\u00e9 \\n\" }  ",
        "\"only\"",
    };
    (void)state;
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        json_error_t e;
        json_t *root = json_loads(texts[i], JSON_DECODE_ANY, &e);
        assert_non_null(root);
        if (api_json_values(texts[i], strlen(texts[i]), SIZE_MAX - 1) !=
            json_fx_tree_values(root))
            fail_msg("case %zu: %s: %zu values, the tree has %zu", i, texts[i],
                     api_json_values(texts[i], strlen(texts[i]), SIZE_MAX - 1),
                     json_fx_tree_values(root));
        json_decref(root);
    }
    assert_int_equal(api_json_values("[1,2,3,4,5,6]", 13, 2), 3);
    assert_int_equal(api_json_values("[\"ab\\\"c", 7, 10), 2);
}

/* On text that is not JSON the count is the byte-by-byte one: a string
   right before a scalar, empty strings back to back, an unclosed string,
   escapes at the end, and a bound. */
static void test_json_values_match_the_bytewise_count(void **state)
{
    static const char *const texts[] = {
        "\"a\"1",  "\"\"\"\"",  "1\"a\"2",    "\"\\\\\"x\"",
        "\"abc",   "\"ab\\",    "[\"a\"b]",   "{\"k\":tru\"e\"}",
        "\\\"\"x", "\"\"1\"\"", "a\"\\\"\"b",
    };
    (void)state;
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        for (size_t max = 0; max < 6; max++) {
            size_t len = strlen(texts[i]),
                   got = api_json_values(texts[i], len, max),
                   want = json_fx_values_bytewise(texts[i], len, max);
            if (got != want)
                fail_msg("%s (max %zu): %zu, byte by byte %zu", texts[i], max,
                         got, want);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_table),
        cmocka_unit_test(test_header_object_keeps_order),
        cmocka_unit_test(test_header_array_keeps_order_and_repeats),
        cmocka_unit_test(test_body_lines_joined_with_crlf),
        cmocka_unit_test(test_raw_message),
        cmocka_unit_test(test_limits_off_when_zero),
        cmocka_unit_test(test_errors_are_capped),
        cmocka_unit_test(test_batch_decodes_every_message),
        cmocka_unit_test(test_query_arguments),
        cmocka_unit_test(test_json_values_count_the_tree),
        cmocka_unit_test(test_json_values_match_the_bytewise_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
