/*
 * test_compose_input.c - what `mailpool serve` makes of the input of a
 * composed or envelope message (issue 12), seen by a real Postfix and by
 * nodemailer's smtp-server: the envelope form's non-ASCII Subject and
 * display name arrive as RFC 2047 words, a UTF-8 local part makes the
 * transaction SMTPUTF8 (refused before MAIL by a relay without it) while
 * a UTF-8 domain goes as its A-label, and each bad input is a 422 naming
 * its member with nothing sent.  The fixture is
 * tests/support/compose_fx.h.
 *
 * Needs root (Postfix) and the packages of `scripts/deps.sh test` and
 * `tools`.  MTA_KEEP=1 keeps the servers' directories, MPSERVE_KEEP=1 the
 * service's.
 */
#include "tests/support/compose_fx.h"

/* The envelope form: a non-ASCII Subject and display name are no longer
   refused or sent raw to a relay without SMTPUTF8: they arrive as RFC 2047
   words that Python decodes to what was posted. */
static void test_envelope_form_non_ascii_header_arrives_encoded(void **state)
{
    struct fx *f = *state;
    struct mpserve *svc = service(f->postfix, "plain", NULL);
    char rcpt[1][96] = { "envelope-utf8@example.test" };
    size_t idx[1] = { 0 };
    json_t *req = json_pack("{s:s, s:[s], s:{s:s, s:s, s:s}, s:s}", "from",
                            "app@mailpool.test", "to", rcpt[0], "headers",
                            "From", "Zo\xc3\xab \xc3\x84 <app@mailpool.test>",
                            "Subject",
                            "Gr\xc3\xbc\xc3\x9f"
                            "e \xe2\x98\x83",
                            "To", rcpt[0], "body", "hello\r\n");
    char *body = json_dumps(req, JSON_COMPACT), url[256];
    const char *hdr[] = { "Content-Type: application/json", NULL };
    struct http_resp r;
    struct mta_msg *msgs;
    size_t n;
    snprintf(url, sizeof url, "%s/v1/messages", mpserve_url(svc));
    assert_int_equal(http_request("POST", url, hdr, body, 0, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"status\":\"sent\""));
    http_resp_free(&r);
    msgs = copies_each(f->postfix, rcpt, 1, &n, idx);
    {
        size_t i = idx[0];
        char *subj = mta_msg_header(&msgs[i], "Subject");
        assert_non_null(strstr(subj, "=?UTF-8?"));
        free(subj);
        json_t *py = parse_with("/usr/bin/python3", "read_mail.py",
                                msgs[i].file);
        assert_string_equal(jstr(py, "subject"), "Gr\xc3\xbc\xc3\x9f"
                                                 "e \xe2\x98\x83");
        expect_pair(json_object_get(py, "from"), 0, "Zo\xc3\xab \xc3\x84",
                    "app@mailpool.test");
        json_decref(py);
    }
    mta_msgs_free(msgs, n);
    assert_int_equal(mpserve_stop_clean(svc, STOP_MS), 0);
    mpserve_free(svc);
    free(body);
    json_decref(req);
}

/* POSTs a composed message to svc; the result's JSON. */
static json_t *post_composed(struct mpserve *svc, const char *to)
{
    json_t *req = json_pack("{s:s, s:[s], s:s, s:s}", "from",
                            "app@mailpool.test", "to", to, "subject", "s",
                            "text", "t");
    char *body = json_dumps(req, JSON_COMPACT), url[256];
    const char *hdr[] = { "Content-Type: application/json", NULL };
    struct http_resp r;
    snprintf(url, sizeof url, "%s/v1/messages", mpserve_url(svc));
    assert_int_equal(http_request("POST", url, hdr, body, 0, &r), 0);
    json_t *j = json_loads(r.body, 0, NULL);
    if (r.status != 200 || j == NULL)
        fail_msg("POST: %ld %s", r.status, r.body);
    http_resp_free(&r);
    free(body);
    json_decref(req);
    return j;
}

/* The envelope smtp-server recorded for the copy to rcpt (caller
   decrefs); fails when there is not exactly one. */
static json_t *node_envelope(struct mta *m, const char *rcpt)
{
    struct mta_msg *msgs;
    size_t n, k = 0;
    json_t *env = NULL;
    mta_wait_messages(m, 1, ARRIVE_MS);
    long long end = ts_now_ms() + ARRIVE_MS;
    do {
        assert_int_equal(mta_messages(m, &msgs, &n), 0);
        for (size_t i = 0; i < n; i++)
            if (strcmp(msgs[i].rcpt, rcpt) == 0 && k++ == 0)
                env = json_loads(msgs[i].envelope, 0, NULL);
        mta_msgs_free(msgs, n);
        if (k == 0)
            ts_sleep_ms(100);
    } while (k == 0 && ts_now_ms() < end);
    if (k != 1) {
        assert_int_equal(mta_messages(m, &msgs, &n), 0);
        for (size_t i = 0; i < n; i++)
            fprintf(stderr, "copy %zu: rcpt %s envelope %s\n", i, msgs[i].rcpt,
                    msgs[i].envelope);
        mta_msgs_free(msgs, n);
        fail_msg("%zu copies for %s, want 1", k, rcpt);
    }
    assert_non_null(env);
    return env;
}

/* Asserts the bytes received for rcpt hold the header line given. */
static void expect_to_header(struct mta *m, const char *rcpt, const char *line)
{
    struct mta_msg *msgs;
    size_t n, found = 0;
    assert_int_equal(mta_messages(m, &msgs, &n), 0);
    for (size_t i = 0; i < n; i++)
        if (strcmp(msgs[i].rcpt, rcpt) == 0) {
            found++;
            assert_non_null(strstr((const char *)msgs[i].data, line));
        }
    assert_int_equal(found, 1);
    mta_msgs_free(msgs, n);
}

/* A UTF-8 local part makes the transaction SMTPUTF8 (declared when the
   relay offers it, else refused before MAIL with nothing sent); a UTF-8
   domain with an ASCII local part goes as its A-label without SMTPUTF8. */
static void test_utf8_local_part_needs_smtputf8_idna_domain_does_not(
    void **state)
{
    static const char *const no_utf8[] = { "--no-smtputf8", NULL };
    struct fx *f = *state;
    struct mta *plain = mta_start_node(0, no_utf8);
    struct mpserve *svc = service(f->node, NULL, NULL);
    json_t *j, *env;
    assert_non_null(plain);
    j = post_composed(svc, "J\xc3\xb6rg <j\xc3\xb6rg@example.test>");
    assert_string_equal(jstr(j, "status"), "sent");
    json_decref(j);
    env = node_envelope(f->node, "j\xc3\xb6rg@example.test");
    assert_true(json_is_true(json_object_get(env, "smtputf8")));
    json_decref(env);
    j = post_composed(svc, "u@b\xc3\xbc"
                           "cher.example");
    assert_string_equal(jstr(j, "status"), "sent");
    json_decref(j);
    /* smtp-server reports the A-label it was given as a U-label */
    env = node_envelope(f->node, "u@b\xc3\xbc"
                                 "cher.example");
    assert_false(json_is_true(json_object_get(env, "smtputf8")));
    json_decref(env);
    expect_to_header(f->node,
                     "u@b\xc3\xbc"
                     "cher.example",
                     "To: u@xn--bcher-kva.example\r\n");
    assert_int_equal(mpserve_stop_clean(svc, STOP_MS), 0);
    mpserve_free(svc);
    svc = service(plain, NULL, NULL);
    j = post_composed(svc, "j\xc3\xb6rg@example.test");
    assert_string_equal(jstr(j, "status"), "failed");
    assert_non_null(strstr(jstr(j, "error"), "SMTPUTF8"));
    json_decref(j);
    ts_sleep_ms(300);
    assert_int_equal(mta_wait_messages(plain, 0, 0), 0);
    assert_int_equal(mpserve_stop_clean(svc, STOP_MS), 0);
    mpserve_free(svc);
    assert_int_equal(mta_stop(plain), 0);
}

/* One bad input: the member to set (a JSON fragment replacing it) and the
   field the 422 must name. */
struct bad {
    const char *member;
    const char *json;
    const char *field;
};

/* Each bad input over HTTP: a 422 naming the member, and nothing reaches
   the relay (smtp-server counts no new message). */
static void test_each_bad_input_is_a_422_naming_the_member(void **state)
{
    static const struct bad cases[] = {
        { "attachments",
          "[{\"filename\":\"a.pdf\",\"content\":\"QUJD\"},"
          "{\"filename\":\"b.pdf\",\"content\":\"QUJD\"},"
          "{\"filename\":\"c.pdf\",\"content\":\"QU*D\"}]",
          "attachments[2].content" },
        { "attachments",
          "[{\"filename\":\"a\",\"content_type\":\"pdf\","
          "\"content\":\"\"}]",
          "attachments[0].content_type" },
        { "attachments", "[{\"filename\":\"../etc/passwd\",\"content\":\"\"}]",
          "attachments[0].filename" },
        { "attachments", "[{\"filename\":\"a\\u0001b\",\"content\":\"\"}]",
          "attachments[0].filename" },
        { "attachments",
          "[{\"filename\":\"1\",\"content\":\"\"},"
          "{\"filename\":\"2\",\"content\":\"\"},"
          "{\"filename\":\"3\",\"content\":\"\"},"
          "{\"filename\":\"4\",\"content\":\"\"}]",
          "attachments" },
        { "cc", "[\"not a mailbox\"]", "cc[0]" },
        { "body", "\"mixed\"", "body" },
    };
    struct fx *f = *state;
    const char *extra[] = { "--http-max-attachments", "3", NULL };
    struct mpserve *svc = service(f->node, NULL, extra);
    const char *hdr[] = { "Content-Type: application/json", NULL };
    char url[256];
    int before = mta_wait_messages(f->node, 0, 0);
    snprintf(url, sizeof url, "%s/v1/messages", mpserve_url(svc));
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char body[1024], want[160];
        struct http_resp r;
        snprintf(body, sizeof body,
                 "{\"from\":\"a@mailpool.test\",\"to\":"
                 "[\"bad-%zu@example.test\"],\"subject\":\"s\",\"text\":\"t\","
                 "\"%s\":%s}",
                 i, cases[i].member, cases[i].json);
        assert_int_equal(http_request("POST", url, hdr, body, 0, &r), 0);
        snprintf(want, sizeof want, "\"field\":\"%s\"", cases[i].field);
        if (r.status != 422 || strstr(r.body, want) == NULL)
            fail_msg("case %zu: %ld %s (want 422 naming %s)", i, r.status,
                     r.body, cases[i].field);
        http_resp_free(&r);
    }
    ts_sleep_ms(300);
    assert_int_equal(mta_wait_messages(f->node, 0, 0), before);
    assert_int_equal(mpserve_stop_clean(svc, STOP_MS), 0);
    mpserve_free(svc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_envelope_form_non_ascii_header_arrives_encoded),
        cmocka_unit_test(test_each_bad_input_is_a_422_naming_the_member),
        cmocka_unit_test(
            test_utf8_local_part_needs_smtputf8_idna_domain_does_not),
    };
    return cmocka_run_group_tests(tests, servers_up, servers_down);
}
