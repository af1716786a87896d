/*
 * test_compose.c - composed messages (issue 12) where users meet them:
 * posted to `mailpool serve` over HTTP (with the README's curl, and with
 * Prefer: respond-async), and given to `mailpool send --json`, into a real
 * Postfix and into nodemailer's smtp-server.  What arrived is parsed by
 * Python's email package (policy default, tests/support/read_mail.py) and
 * by npm's mailparser (tests/support/read_mail.js) and must give back what
 * was posted: the subject, the display names, the text (UTF-8, emoji, CJK,
 * right-to-left, a line starting with ".", a 2,000-character line), the
 * HTML, every part with its type, charset, filename and Content-ID; no Bcc
 * field anywhere; to, cc and bcc each receive one copy.  Also: the preview
 * route and --dry-run print those bytes without a relay; a batch takes
 * both forms item by item.  test_compose_input.c has the non-ASCII
 * envelope input and the refused input; the fixture is
 * tests/support/compose_fx.h.
 *
 * Needs root (Postfix) and the packages of `scripts/deps.sh test` and
 * `tools`.  MTA_KEEP=1 keeps the servers' directories, MPSERVE_KEEP=1 the
 * service's.
 */
#include "tests/support/compose_fx.h"

/* ---- The tests ---- */

/* The "Done when": the README's curl posts a message with a UTF-8
   subject and display names, text + HTML, an inline image and a PDF, to
   two to, one cc and one bcc; Postfix stores one copy per recipient, and
   each parses back exactly in Python and in mailparser, with no Bcc. */
static void test_readme_curl_message_arrives_at_postfix_and_parses_back(
    void **state)
{
    struct fx *f = *state;
    json_t *req = readme_message("done");
    struct mpserve *svc = service(f->postfix, "plain", NULL);
    char *file = json_file(mta_dir(f->postfix), "message.json", req);
    json_t *res = readme_curl(mpserve_url(svc), file);
    char rcpt[4][96];
    size_t n, idx[4];
    assert_string_equal(jstr(res, "status"), "sent");
    assert_int_equal(json_array_size(json_object_get(res, "accepted")), 4);
    recipients(req, rcpt);
    struct mta_msg *msgs = copies_each(f->postfix, rcpt, 4, &n, idx);
    for (int r = 0; r < 4; r++) {
        char *mid = mta_msg_header(&msgs[idx[r]], "Message-ID");
        assert_non_null(mid);
        assert_string_equal(mid, jstr(res, "message_id"));
        free(mid);
        expect_parsed(msgs[idx[r]].file, req);
    }
    mta_msgs_free(msgs, n);
    assert_int_equal(mpserve_stop_clean(svc, STOP_MS), 0);
    mpserve_free(svc);
    json_decref(res);
    json_decref(req);
    free(file);
}

/* The same message through smtp-server: one transaction naming each of
   the four recipients once; the bytes received have no Bcc field, no bare
   LF, no line over 998 octets, and parse back in both parsers. */
static void test_composed_bytes_on_the_wire_have_no_bcc_and_parse_back(
    void **state)
{
    struct fx *f = *state;
    json_t *req = readme_message("wire");
    struct mpserve *svc = service(f->node, NULL, NULL);
    char *body = json_dumps(req, JSON_COMPACT), rcpt[4][96];
    const char *hdr[] = { "Content-Type: application/json", NULL };
    struct http_resp r;
    struct mta_msg *msgs;
    size_t n;
    char url[256];
    snprintf(url, sizeof url, "%s/v1/messages", mpserve_url(svc));
    assert_int_equal(http_request("POST", url, hdr, body, 0, &r), 0);
    assert_int_equal(r.status, 200);
    http_resp_free(&r);
    assert_true(mta_wait_messages(f->node, 4, ARRIVE_MS) >= 4);
    assert_int_equal(mta_messages(f->node, &msgs, &n), 0);
    recipients(req, rcpt);
    size_t mine = 0;
    for (size_t i = 0; i < n; i++) {
        int k = -1;
        for (int q = 0; q < 4; q++)
            if (strcasecmp(msgs[i].rcpt, rcpt[q]) == 0)
                k = q;
        if (k < 0)
            continue;
        mine++;
        expect_clean_wire(msgs[i].data, msgs[i].len);
        expect_parsed(msgs[i].file, req);
    }
    assert_int_equal(mine, 4);
    mta_msgs_free(msgs, n);
    assert_int_equal(mpserve_stop_clean(svc, STOP_MS), 0);
    mpserve_free(svc);
    free(body);
    json_decref(req);
}

/* Prefer: respond-async: the queue stores the composed bytes; the 202's
   message_id is the one that arrives, and the copy parses back. */
static void test_async_composed_message_is_stored_composed_and_arrives(
    void **state)
{
    struct fx *f = *state;
    json_t *req = readme_message("async");
    char qpath[PATH_MAX], url[256], rcpt[4][96];
    snprintf(qpath, sizeof qpath, "%s/queue.db", mta_dir(f->postfix));
    const char *extra[] = { "--queue-path", qpath, "--queue-retry-base", "0.1",
                            NULL };
    struct mpserve *svc = service(f->postfix, "plain", extra);
    const char *hdr[] = { "Content-Type: application/json",
                          "Prefer: respond-async", NULL };
    char *body = json_dumps(req, JSON_COMPACT);
    struct http_resp r;
    size_t n, idx[4];
    snprintf(url, sizeof url, "%s/v1/messages", mpserve_url(svc));
    assert_int_equal(http_request("POST", url, hdr, body, 0, &r), 0);
    assert_int_equal(r.status, 202);
    json_t *acc = json_loads(r.body, 0, NULL);
    http_resp_free(&r);
    recipients(req, rcpt);
    struct mta_msg *msgs = copies_each(f->postfix, rcpt, 4, &n, idx);
    char *mid = mta_msg_header(&msgs[idx[0]], "Message-ID");
    assert_string_equal(mid, jstr(acc, "message_id"));
    expect_parsed(msgs[idx[3]].file, req);
    free(mid);
    mta_msgs_free(msgs, n);
    assert_int_equal(mpserve_stop_clean(svc, STOP_MS), 0);
    mpserve_free(svc);
    json_decref(acc);
    free(body);
    json_decref(req);
}

/* mailpool send --json FILE delivers the same message to Postfix and
   prints its Message-ID; with --dry-run it prints the bytes (parsing back
   the same) and contacts no server. */
static void test_cli_send_json_and_dry_run(void **state)
{
    struct fx *f = *state;
    json_t *req = readme_message("cli");
    char *file = json_file(mta_dir(f->postfix), "cli.json", req);
    char server[64], out_path[PATH_MAX], rcpt[4][96];
    char *out = NULL;
    size_t n, idx[4], len;
    const char *dry[] = { "send", "--json", file, "--dry-run", NULL };
    assert_int_equal(mpserve_run(dry, 30000, &out), 0);
    snprintf(out_path, sizeof out_path, "%s/dry.eml", mta_dir(f->postfix));
    FILE *o = fopen(out_path, "wb");
    len = strlen(out);
    assert_int_equal(fwrite(out, 1, len, o), len);
    fclose(o);
    expect_clean_wire((const unsigned char *)out, len);
    expect_parsed(out_path, req);
    free(out);
    mta_hostport(f->postfix, "plain", server, sizeof server);
    const char *send[] = { "send", "--json", file,   "--server",
                           server, "--tls",  "none", NULL };
    assert_int_equal(mpserve_run(send, 30000, &out), 0);
    json_t *printed = json_loads(out, 0, NULL);
    free(out);
    assert_non_null(printed);
    assert_string_equal(jstr(printed, "status"), "sent");
    recipients(req, rcpt);
    struct mta_msg *msgs = copies_each(f->postfix, rcpt, 4, &n, idx);
    for (int r = 0; r < 4; r++)
        expect_parsed(msgs[idx[r]].file, req);
    /* it prints the Message-ID the relay received, as the API answers */
    char *mid = mta_msg_header(&msgs[idx[0]], "Message-ID");
    assert_non_null(mid);
    assert_non_null(jstr(printed, "message_id"));
    assert_string_equal(jstr(printed, "message_id"), mid);
    free(mid);
    json_decref(printed);
    mta_msgs_free(msgs, n);
    free(file);
    json_decref(req);
}

/* POST /v1/messages/preview answers message/rfc822 bytes that parse back
   as posted, with no relay running at all. */
static void test_preview_returns_the_message_without_a_relay(void **state)
{
    struct fx *f = *state;
    json_t *req = readme_message("preview");
    int dead = mpserve_free_port();
    struct mpserve *svc = mpserve_start(dead, NULL);
    char url[256], path[PATH_MAX];
    const char *hdr[] = { "Content-Type: application/json", NULL };
    char *body = json_dumps(req, JSON_COMPACT), *ctype;
    struct http_resp r;
    assert_non_null(svc);
    snprintf(url, sizeof url, "%s/v1/messages/preview", mpserve_url(svc));
    assert_int_equal(http_request("POST", url, hdr, body, 0, &r), 0);
    assert_int_equal(r.status, 200);
    ctype = http_resp_header(&r, "Content-Type");
    assert_string_equal(ctype, "message/rfc822");
    expect_clean_wire((const unsigned char *)r.body, r.len);
    snprintf(path, sizeof path, "%s/preview.eml", mta_dir(f->postfix));
    FILE *o = fopen(path, "wb");
    assert_int_equal(fwrite(r.body, 1, r.len, o), r.len);
    fclose(o);
    expect_parsed(path, req);
    free(ctype);
    http_resp_free(&r);
    assert_int_equal(mpserve_stop_clean(svc, STOP_MS), 0);
    mpserve_free(svc);
    free(body);
    json_decref(req);
}

/* A batch holding a composed message and an envelope-form one: both
   sent, results in order, and each copy is what its form says (the
   composed one a multipart/alternative, the other its body as given). */
static void test_batch_takes_both_forms_item_by_item(void **state)
{
    struct fx *f = *state;
    struct mpserve *svc = service(f->node, NULL, NULL);
    json_t *req = json_pack(
        "{s:[{s:s, s:[s], s:s, s:s, s:s}, {s:s, s:[s], s:{s:s}, s:s}]}",
        "messages", "from", "Shop <app@mailpool.test>", "to",
        "batch-composed@example.test", "subject", "b", "text", "t", "html",
        "<p>h</p>", "from", "app@mailpool.test", "to",
        "batch-envelope@example.test", "headers", "Subject", "e", "body",
        "plain body\r\n");
    char *body = json_dumps(req, JSON_COMPACT), url[256];
    char rcpt[2][96] = { "batch-composed@example.test",
                         "batch-envelope@example.test" };
    const char *hdr[] = { "Content-Type: application/json", NULL };
    struct http_resp r;
    struct mta_msg *msgs;
    size_t n, idx[2];
    snprintf(url, sizeof url, "%s/v1/messages/batch", mpserve_url(svc));
    assert_int_equal(http_request("POST", url, hdr, body, 0, &r), 0);
    assert_int_equal(r.status, 200);
    json_t *doc = json_loads(r.body, 0, NULL);
    json_t *res = json_object_get(doc, "results");
    assert_string_equal(jstr(json_array_get(res, 0), "status"), "sent");
    assert_string_equal(jstr(json_array_get(res, 1), "status"), "sent");
    json_decref(doc);
    http_resp_free(&r);
    msgs = copies_each(f->node, rcpt, 2, &n, idx);
    assert_non_null(
        strstr((const char *)msgs[idx[0]].data, "multipart/alternative"));
    assert_non_null(strstr(msgs[idx[1]].body, "plain body\r\n"));
    assert_null(strstr((const char *)msgs[idx[1]].data, "MIME-Version"));
    mta_msgs_free(msgs, n);
    assert_int_equal(mpserve_stop_clean(svc, STOP_MS), 0);
    mpserve_free(svc);
    free(body);
    json_decref(req);
}

/* Attachments whose bytes are all ASCII (a bare CR, a bare LF, a PDF's
   first line) arrive byte for byte: a part that is not text goes base64,
   never 7bit, where SMTP would make every line end CRLF. */
static void test_ascii_attachments_arrive_byte_for_byte(void **state)
{
    struct fx *f = *state;
    static const char *const files[][3] = {
        { "cr.bin", "application/octet-stream",
          "YWJjDWRlZg0=" }, /* abc\rdef\r */
        { "doc.pdf", "application/pdf",
          "JVBERi0xLjQKJSVFT0YK" }, /* %PDF-1.4\n%%EOF\n */
    };
    json_t *att = json_array();
    for (size_t i = 0; i < 2; i++)
        json_array_append_new(att,
                              json_pack("{s:s, s:s, s:s}", "filename",
                                        files[i][0], "content_type",
                                        files[i][1], "content", files[i][2]));
    json_t *req = json_pack("{s:s, s:[s], s:s, s:s, s:o}", "from",
                            "app@mailpool.test", "to", "ascii@example.test",
                            "subject", "ascii attachments", "text", "see files",
                            "attachments", att);
    struct mpserve *svc = service(f->node, NULL, NULL);
    char *body = json_dumps(req, JSON_COMPACT), url[256];
    const char *hdr[] = { "Content-Type: application/json", NULL };
    struct http_resp r;
    struct mta_msg *msgs;
    size_t n, seen = 0;
    snprintf(url, sizeof url, "%s/v1/messages", mpserve_url(svc));
    assert_int_equal(http_request("POST", url, hdr, body, 0, &r), 0);
    assert_int_equal(r.status, 200);
    http_resp_free(&r);
    for (int tries = 0;; tries++) { /* the copy may be written just after
                                       the relay's 250 */
        assert_int_equal(mta_messages(f->node, &msgs, &n), 0);
        for (size_t i = 0; i < n; i++)
            seen += strcasecmp(msgs[i].rcpt, "ascii@example.test") == 0;
        if (seen > 0 || tries == 50)
            break;
        mta_msgs_free(msgs, n);
        usleep(100 * 1000);
    }
    seen = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(msgs[i].rcpt, "ascii@example.test") != 0)
            continue;
        seen++;
        json_t *got = parse_with("/usr/bin/python3", "read_mail.py",
                                 msgs[i].file);
        json_t *parts = json_object_get(got, "files");
        assert_int_equal(json_array_size(parts), 2);
        for (size_t k = 0; k < 2; k++)
            assert_string_equal(jstr(json_array_get(parts, k), "b64"),
                                files[k][2]);
        json_decref(got);
    }
    assert_int_equal(seen, 1);
    mta_msgs_free(msgs, n);
    assert_int_equal(mpserve_stop_clean(svc, STOP_MS), 0);
    mpserve_free(svc);
    free(body);
    json_decref(req);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(
            test_readme_curl_message_arrives_at_postfix_and_parses_back),
        cmocka_unit_test(
            test_composed_bytes_on_the_wire_have_no_bcc_and_parse_back),
        cmocka_unit_test(
            test_async_composed_message_is_stored_composed_and_arrives),
        cmocka_unit_test(test_cli_send_json_and_dry_run),
        cmocka_unit_test(test_preview_returns_the_message_without_a_relay),
        cmocka_unit_test(test_batch_takes_both_forms_item_by_item),
        cmocka_unit_test(test_ascii_attachments_arrive_byte_for_byte),
    };
    return cmocka_run_group_tests(tests, servers_up, servers_down);
}
