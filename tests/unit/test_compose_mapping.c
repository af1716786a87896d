/*
 * tests/unit/test_compose_mapping.c - the composed form's JSON -> MIME mapping
 * (api/compose_json.c, compose/): which multipart structure each member
 * makes, the header fields written (never Bcc), the envelope (to + cc +
 * bcc each once, IDNA A-labels, the envelope member), the encodings (RFC
 * 2047 words of at most 75 characters, RFC 2231 file names, quoted-
 * printable for a 2,000-character line), List-Unsubscribe unbroken, CRLF
 * only; the envelope form's non-ASCII header values encoded unless
 * SMTPUTF8; and a table of every 422, each naming its member.
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

/* Small limits keep the limit cases short. */
static struct cfg test_cfg(void)
{
    struct cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.http.max_recipients = 4;
    cfg.http.max_attachments = 2;
    cfg.http.max_body = 64;
    cfg.http.max_batch = 4;
    return cfg;
}

/* Decodes text (which must be valid) into a new job. */
static struct job *composed(const char *text, const struct cfg *cfg)
{
    json_error_t e;
    json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &e);
    json_t *errors = json_array();
    struct job *job = job_new(JOB_SEND);
    if (root == NULL)
        fail_msg("test JSON: %s: %s", e.text, text);
    if (api_decode_message(root, cfg, job, errors, "") != API_DECODE_OK)
        fail_msg("decode failed: %s", json_dumps(errors, JSON_COMPACT));
    json_decref(root);
    json_decref(errors);
    return job;
}

/* The composed bytes as a string (owned by the job). */
static const char *bytes(const struct job *job)
{
    assert_int_equal(job->msg.raw, 1);
    assert_non_null(job->msg.body);
    assert_int_equal(strlen(job->msg.body), job->msg.body_len);
    return job->msg.body;
}

/* Asserts CRLF line ends only, every line under 998 octets, every header
   line under 78 unless it holds one unbreakable word, and every encoded-
   word at most 75 characters. */
static void expect_wire_shape(const char *d)
{
    const char *line = d, *p;
    int in_head = 1;
    for (p = d; *p != '\0'; p++) {
        if (*p != '\n')
            continue;
        assert_true(p > d && p[-1] == '\r');
        size_t n = (size_t)(p - 1 - line);
        assert_true(n <= 998);
        if (n == 0)
            in_head = 0;
        if (in_head && n > 78 && memchr(line, ' ', n) != NULL &&
            strncmp(line, "List-Unsubscribe:", 17) != 0)
            fail_msg("header line of %zu octets: %.*s", n, (int)n, line);
        line = p + 1;
    }
    for (p = strstr(d, "=?"); p != NULL; p = strstr(p + 2, "=?")) {
        const char *end = strstr(p + 2, "?=");
        const char *q1 = strchr(p + 2, '?');
        if (end == NULL || q1 == NULL || q1 > end)
            continue;
        const char *q2 = strchr(q1 + 1, '?');
        if (q2 == NULL || q2 != q1 + 2)
            continue; /* "=?" inside a QP body, not a word */
        end = strstr(q2 + 1, "?=");
        if (end != NULL && end + 2 - p > 75)
            fail_msg("encoded-word of %d characters: %.*s", (int)(end + 2 - p),
                     (int)(end + 2 - p), p);
    }
}

/* 1 when the header section of d has a line starting with field. */
static int has_field(const char *d, const char *field)
{
    const char *end = strstr(d, "\r\n\r\n");
    size_t n = strlen(field);
    for (const char *p = d; p != NULL && p < end; p = strstr(p, "\r\n")) {
        if (p != d)
            p += 2;
        if (strncasecmp(p, field, n) == 0)
            return 1;
    }
    return 0;
}

#define FROM "\"from\":\"App <app@x.org>\",\"to\":[\"b@x.org\"],"

static void test_text_only_is_one_utf8_part(void **state)
{
    struct cfg cfg = test_cfg();
    struct job *job = composed(
        "{" FROM "\"subject\":\"hi\",\"text\":\"hello\"}", &cfg);
    const char *d = bytes(job);
    (void)state;
    assert_non_null(strstr(d, "\r\nMIME-Version: 1.0\r\n"));
    assert_non_null(
        strstr(d, "\r\nContent-Type: text/plain; charset=utf-8\r\n"));
    assert_null(strstr(d, "multipart"));
    assert_true(has_field(d, "Date: "));
    assert_true(has_field(d, "Message-Id: <"));
    assert_non_null(strstr(d, "@x.org>\r\n")); /* the from domain */
    expect_wire_shape(d);
    job_free(job);
}

static void test_text_and_html_make_an_alternative(void **state)
{
    struct cfg cfg = test_cfg();
    struct job *job = composed("{" FROM "\"text\":\"t\",\"html\":\"<b>h</b>\"}",
                               &cfg);
    const char *d = bytes(job), *alt = strstr(d, "multipart/alternative");
    (void)state;
    assert_non_null(alt);
    assert_true(strstr(alt, "text/plain") < strstr(alt, "text/html"));
    job_free(job);
}

static void test_inline_cid_goes_related_and_attachment_makes_mixed(void **state)
{
    struct cfg cfg = test_cfg();
    struct job *job = composed(
        "{" FROM "\"text\":\"t\",\"html\":\"<img src=cid:i1>\","
        "\"attachments\":[{\"content_type\":\"image/png\",\"content\":\"AAEC\","
        "\"disposition\":\"inline\",\"content_id\":\"i1\"},"
        "{\"filename\":\"Rechnung M\\u00e4rz.pdf\",\"content_type\":"
        "\"application/pdf\",\"content\":\"JVBE\"}]}",
        &cfg);
    const char *d = bytes(job);
    const char *mixed = strstr(d, "multipart/mixed");
    const char *rel = strstr(d, "multipart/related");
    (void)state;
    assert_non_null(mixed);
    assert_non_null(rel);
    assert_true(mixed < strstr(d, "multipart/alternative"));
    assert_true(strstr(d, "multipart/alternative") < rel);
    assert_non_null(strstr(rel, "type=\"text/html\""));
    assert_true(rel < strstr(d, "Content-Id: <i1>"));
    assert_non_null(strstr(d, "filename*=UTF-8''Rechnung%20M%C3%A4rz.pdf"));
    assert_non_null(strstr(d, "Content-Disposition: inline"));
    expect_wire_shape(d);
    job_free(job);
}

static void test_bcc_is_in_the_envelope_only_and_each_rcpt_once(void **state)
{
    struct cfg cfg = test_cfg();
    cfg.http.max_recipients = 5; /* counted as given, before dedup */
    struct job *job = composed(
        "{\"from\":\"app@x.org\",\"to\":[\"b@x.org\",\"c@X.ORG\"],"
        "\"cc\":[\"c@x.org\"],\"bcc\":[\"hidden@x.org\",\"b@x.org\"],"
        "\"text\":\"t\"}",
        &cfg);
    const char *d = bytes(job);
    (void)state;
    assert_string_equal(job->msg.from, "app@x.org");
    assert_int_equal(job->msg.nto, 3);
    assert_string_equal(job->msg.to[0], "b@x.org");
    assert_string_equal(job->msg.to[1], "c@X.ORG");
    assert_string_equal(job->msg.to[2], "hidden@x.org");
    assert_false(has_field(d, "Bcc:"));
    assert_null(strstr(d, "hidden"));
    assert_true(has_field(d, "To: b@x.org, c@X.ORG"));
    assert_true(has_field(d, "Cc: c@x.org"));
    job_free(job);
}

static void test_envelope_member_and_idna_domains(void **state)
{
    struct cfg cfg = test_cfg();
    struct job *job = composed(
        "{\"from\":{\"name\":\"Z\\u00f6\",\"email\":\"z@b\\u00fccher.example\"},"
        "\"to\":[\"u@b\\u00fccher.example\"],\"text\":\"t\","
        "\"envelope\":{\"from\":\"bounce@x.org\",\"to\":[\"r@x.org\"]}}",
        &cfg);
    const char *d = bytes(job);
    (void)state;
    assert_string_equal(job->msg.from, "bounce@x.org");
    assert_int_equal(job->msg.nto, 1);
    assert_string_equal(job->msg.to[0], "r@x.org");
    assert_non_null(strstr(d, "<z@xn--bcher-kva.example>"));
    assert_non_null(strstr(d, "To: u@xn--bcher-kva.example"));
    assert_non_null(strstr(d, "From: =?UTF-8?b?WsO2?= "));
    job_free(job);
    job = composed("{\"from\":\"z@x.org\",\"to\":[\"u@b\\u00fccher.example\"],"
                   "\"text\":\"t\"}",
                   &cfg);
    assert_string_equal(job->msg.to[0], "u@xn--bcher-kva.example");
    job_free(job);
}

static void test_message_id_domain_and_given_message_id(void **state)
{
    struct cfg cfg = test_cfg();
    char dom[] = "ids.example";
    cfg.message.id_domain = dom;
    struct job *job = composed("{" FROM "\"text\":\"t\"}", &cfg);
    (void)state;
    assert_non_null(strstr(bytes(job), "@ids.example>\r\n"));
    job_free(job);
    job = composed("{" FROM "\"text\":\"t\",\"headers\":{\"Message-ID\":"
                   "\"<mine@x.org>\",\"X-Tag\":\"\\u00e9t\\u00e9\"}}",
                   &cfg);
    assert_true(has_field(bytes(job), "Message-Id: <mine@x.org>"));
    assert_null(strstr(bytes(job), "ids.example"));
    assert_true(has_field(bytes(job), "X-Tag: =?UTF-8?"));
    job_free(job);
}

static void test_long_cjk_subject_is_encoded_in_short_words(void **state)
{
    struct cfg cfg = test_cfg();
    char *req = malloc(8000);
    size_t n = 0;
    n += (size_t)snprintf(req, 8000, "{" FROM "\"text\":\"t\",\"subject\":\"");
    for (int i = 0; i < 120; i++) /* 1,080 octets of CJK and emoji */
        n += (size_t)snprintf(req + n, 8000 - n,
                              i % 2 ? "\\u65e5\\u672c\\u8a9e"
                                    : "\\ud83d\\ude00\\u8a9e");
    snprintf(req + n, 8000 - n, "\"}");
    struct job *job = composed(req, &cfg);
    (void)state;
    expect_wire_shape(bytes(job));
    assert_non_null(strstr(bytes(job), "Subject: =?UTF-8?B?"));
    job_free(job);
    free(req);
}

static void test_unsubscribe_url_is_never_folded_inside(void **state)
{
    struct cfg cfg = test_cfg();
    char url[400], req[1024];
    memcpy(url, "https://example.org/unsubscribe/", 32);
    for (int i = 32; i < 330; i++)
        url[i] = (char)('a' + i % 26);
    url[330] = '\0';
    snprintf(req, sizeof req,
             "{" FROM "\"text\":\"t\",\"unsubscribe\":{"
             "\"url\":\"%s\",\"mailto\":\"u@x.org\",\"one_click\":true}}",
             url);
    struct job *job = composed(req, &cfg);
    const char *d = bytes(job);
    char want[512];
    (void)state;
    snprintf(want, sizeof want,
             "List-Unsubscribe: <%s>,\r\n <mailto:u@x.org>"
             "\r\n",
             url);
    assert_non_null(strstr(d, want));
    assert_non_null(strstr(d, "\r\nList-Unsubscribe-Post: "
                              "List-Unsubscribe=One-Click\r\n"));
    expect_wire_shape(d);
    job_free(job);
}

static void test_long_line_goes_quoted_printable_under_78(void **state)
{
    struct cfg cfg = test_cfg();
    char req[2400];
    size_t n = (size_t)snprintf(req, sizeof req, "{" FROM "\"text\":\"");
    for (int i = 0; i < 2000; i++)
        req[n++] = (char)('a' + i % 26);
    snprintf(req + n, sizeof req - n, "\\n.dot\\nGr\\u00fc\\u00dfe\"}");
    struct job *job = composed(req, &cfg);
    const char *d = bytes(job), *body = strstr(d, "\r\n\r\n") + 4;
    (void)state;
    assert_non_null(strstr(d, "Content-Transfer-Encoding: quoted-printable"));
    for (const char *l = body; *l != '\0';) {
        const char *e = strstr(l, "\r\n");
        size_t len = e != NULL ? (size_t)(e - l) : strlen(l);
        assert_true(len <= 76);
        l = e != NULL ? e + 2 : l + len;
    }
    assert_non_null(strstr(body, "\r\n.dot\r\n")); /* stuffed by smtpcore */
    expect_wire_shape(d);
    job_free(job);
}

static void test_envelope_form_headers_encoded_unless_smtputf8(void **state)
{
    struct cfg cfg = test_cfg();
    struct job *job = composed(
        "{\"from\":\"a@x.org\",\"to\":[\"b@x.org\"],\"headers\":{\"From\":"
        "\"Zo\\u00eb \\u00c4 <a@x.org>\",\"Subject\":\"Gr\\u00fc\\u00dfe "
        "\\u2603\",\"Message-ID\":\"<m@x.org>\"},\"body\":\"b\"}",
        &cfg);
    (void)state;
    assert_int_equal(job->msg.raw, 0);
    assert_string_equal(job->msg.headers[0].value,
                        "=?UTF-8?b?Wm/DqyDDhA==?= <a@x.org>");
    assert_string_equal(job->msg.headers[1].value,
                        "=?UTF-8?b?R3LDvMOfZSDimIM=?=");
    job_free(job);
    job = composed("{\"from\":\"a@x.org\",\"to\":[\"j\\u00f6rg@x.org\"],"
                   "\"headers\":{\"Subject\":\"Gr\\u00fc\\u00dfe\"},"
                   "\"body\":\"b\"}",
                   &cfg);
    assert_string_equal(job->msg.headers[0].value, "Gr\xc3\xbc\xc3\x9f"
                                                   "e");
    job_free(job);
}

/* ---- Every 422 ---- */

struct bad {
    const char *json;
    const char *field;
    const char *message; /* a piece of it */
};

#define ATT(x) "{" FROM "\"text\":\"t\",\"attachments\":[" x "]}"

static const struct bad bad_cases[] = {
    { "{\"to\":[\"b@x.org\"],\"text\":\"t\"}", "from", "required" },
    { "{\"from\":\"not an address\",\"to\":[\"b@x.org\"],\"text\":\"t\"}",
      "from", NULL },
    { "{\"from\":{\"name\":\"n\"},\"to\":[\"b@x.org\"],\"text\":\"t\"}",
      "from.email", "required" },
    { "{" FROM "\"cc\":[{\"email\":\"c@x.org\",\"nick\":1}],\"text\":\"t\"}",
      "cc[0].nick", "unknown member" },
    { "{" FROM "\"cc\":\"c@x.org\",\"text\":\"t\"}", "cc", "array" },
    { "{" FROM "\"bcc\":[\"x@\"],\"text\":\"t\"}", "bcc[0]", NULL },
    { "{\"from\":\"a@x.org\",\"subject\":\"s\",\"text\":\"t\"}", "to",
      "recipient" },
    { "{" FROM "\"cc\":[\"1@x.org\",\"2@x.org\",\"3@x.org\",\"4@x.org\"],"
      "\"text\":\"t\"}",
      "to", "at most 4" },
    { "{" FROM "\"subject\":\"two\\nlines\",\"text\":\"t\"}", "subject",
      "one line" },
    { "{" FROM "\"subject\":\"s\"}", "text", "required" },
    { "{" FROM "\"text\":\"t\",\"body\":\"b\"}", "body", "text" },
    { "{" FROM "\"html\":\"h\",\"raw\":\"r\"}", "raw", "html" },
    { "{" FROM "\"text\":\"t\",\"priority\":1}", "priority", "unknown" },
    { "{" FROM "\"text\":\"t\",\"headers\":{\"Bcc\":\"x@x.org\"}}",
      "headers.Bcc", "bcc" },
    { "{" FROM "\"text\":\"t\",\"headers\":[[\"Subject\",\"s\"]]}",
      "headers[0][0]", "subject" },
    { "{" FROM "\"text\":\"t\",\"headers\":{\"Content-Type\":\"a/b\"}}",
      "headers.Content-Type", "mailpool" },
    { "{" FROM "\"text\":\"t\",\"attachments\":{}}", "attachments", "array" },
    { ATT("1"), "attachments[0]", "object" },
    { ATT("{\"filename\":\"a\",\"content\":\"QUJD\",\"size\":3}"),
      "attachments[0].size", "unknown" },
    { ATT("{\"filename\":\"a\"}"), "attachments[0].content", "required" },
    { ATT("{\"filename\":\"a\",\"content\":\"QU*D\"}"),
      "attachments[0].content", "base64" },
    { ATT("{\"filename\":\"a\",\"content\":\"QUJ\"}"), "attachments[0].content",
      "multiple of 4" },
    { ATT("{\"filename\":\"a\",\"content\":\"Q===\"}"),
      "attachments[0].content", "padding" },
    { ATT("{\"filename\":\"a\",\"content\":\"\",\"content_type\":\"pdf\"}"),
      "attachments[0].content_type", "type/subtype" },
    { ATT("{\"filename\":\"a\",\"content\":\"\",\"content_type\":"
          "\"text/plain; charset=x\"}"),
      "attachments[0].content_type", "no parameters" },
    { ATT("{\"filename\":\"a\",\"content\":\"\",\"content_type\":"
          "\"multipart/mixed\"}"),
      "attachments[0].content_type", "multipart" },
    { ATT("{\"filename\":\"dir/a\",\"content\":\"\"}"),
      "attachments[0].filename", "path separator" },
    { ATT("{\"filename\":\"c:\\\\a\",\"content\":\"\"}"),
      "attachments[0].filename", "path separator" },
    { ATT("{\"filename\":\"a\\tb\",\"content\":\"\"}"),
      "attachments[0].filename", "control" },
    { ATT("{\"content\":\"\"}"), "attachments[0].filename", "required" },
    { ATT("{\"filename\":\"a\",\"content\":\"\",\"disposition\":\"x\"}"),
      "attachments[0].disposition", "inline" },
    { ATT("{\"content\":\"\",\"disposition\":\"inline\",\"content_id\":"
          "\"<a b>\"}"),
      "attachments[0].content_id", "printable" },
    { ATT("{\"filename\":\"a\",\"content\":\"\"},{\"filename\":\"b\","
          "\"content\":\"\"},{\"filename\":\"c\",\"content\":\"\"}"),
      "attachments", "at most 2" },
    { ATT("{\"filename\":\"a\",\"content\":\"QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"
          "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB\"}"),
      "attachments[0].content", "max_body" },
    { "{" FROM "\"text\":\"t\",\"unsubscribe\":\"u\"}", "unsubscribe",
      "object" },
    { "{" FROM "\"text\":\"t\",\"unsubscribe\":{\"url\":\"ftp://x\"}}",
      "unsubscribe.url", "https://" },
    { "{" FROM "\"text\":\"t\",\"unsubscribe\":{\"url\":\"https://a b\"}}",
      "unsubscribe.url", "spaces" },
    { "{" FROM "\"text\":\"t\",\"unsubscribe\":{\"mailto\":\"u@x.org\","
      "\"one_click\":true}}",
      "unsubscribe.one_click", "RFC 8058" },
    { "{" FROM "\"text\":\"t\",\"unsubscribe\":{}}", "unsubscribe",
      "url or mailto" },
    { "{" FROM "\"text\":\"t\",\"envelope\":{\"to\":[]}}", "envelope.to",
      "non-empty" },
    { "{" FROM "\"text\":\"t\",\"envelope\":{\"to\":[\"x\"]}}",
      "envelope.to[0]", NULL },
    { "{" FROM "\"text\":\"t\",\"envelope\":{\"from\":\"a@x.org\","
      "\"cc\":[]}}",
      "envelope", "only from and to" },
};

static void test_each_bad_input_names_its_member(void **state)
{
    struct cfg cfg = test_cfg();
    (void)state;
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const struct bad *b = &bad_cases[i];
        json_error_t e;
        json_t *root = json_loads(b->json, 0, &e), *errors = json_array();
        struct job *job = job_new(JOB_SEND);
        if (root == NULL)
            fail_msg("case %zu: test JSON: %s", i, e.text);
        int rc = api_decode_message(root, &cfg, job, errors, "");
        int found = 0;
        for (size_t k = 0; k < json_array_size(errors); k++) {
            json_t *o = json_array_get(errors, k);
            const char *f = json_string_value(json_object_get(o, "field"));
            const char *m = json_string_value(json_object_get(o, "message"));
            found |= strcmp(f, b->field) == 0 &&
                     (b->message == NULL || strcasestr(m, b->message) != NULL);
        }
        if (rc != API_DECODE_INVALID || !found)
            fail_msg("case %zu (%s): rc %d, errors %s; want %s: %s", i, b->json,
                     rc, json_dumps(errors, JSON_COMPACT), b->field,
                     b->message ? b->message : "");
        assert_null(job->msg.body); /* nothing composed */
        job_free(job);
        json_decref(root);
        json_decref(errors);
    }
}

static void test_batch_item_errors_carry_the_item_path(void **state)
{
    struct cfg cfg = test_cfg();
    json_t *root = json_loads(
        "{\"messages\":[{" FROM "\"text\":\"t\"},{" FROM "\"text\":\"t\","
        "\"attachments\":[{\"filename\":\"a\",\"content\":\"!\"}]}]}",
        0, NULL);
    json_t *errors = json_array();
    struct job **jobs;
    size_t n;
    (void)state;
    assert_int_equal(api_decode_batch(root, &cfg, &jobs, &n, errors),
                     API_DECODE_INVALID);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(errors, 0), "field")),
        "messages[1].attachments[0].content");
    json_decref(root);
    json_decref(errors);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_only_is_one_utf8_part),
        cmocka_unit_test(test_text_and_html_make_an_alternative),
        cmocka_unit_test(
            test_inline_cid_goes_related_and_attachment_makes_mixed),
        cmocka_unit_test(test_bcc_is_in_the_envelope_only_and_each_rcpt_once),
        cmocka_unit_test(test_envelope_member_and_idna_domains),
        cmocka_unit_test(test_message_id_domain_and_given_message_id),
        cmocka_unit_test(test_long_cjk_subject_is_encoded_in_short_words),
        cmocka_unit_test(test_unsubscribe_url_is_never_folded_inside),
        cmocka_unit_test(test_long_line_goes_quoted_printable_under_78),
        cmocka_unit_test(test_envelope_form_headers_encoded_unless_smtputf8),
        cmocka_unit_test(test_each_bad_input_names_its_member),
        cmocka_unit_test(test_batch_item_errors_carry_the_item_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
