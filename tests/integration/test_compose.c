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
 * route and --dry-run print those bytes without a relay, the envelope
 * form's non-ASCII Subject and display name arrive as RFC 2047 words, a
 * UTF-8 local part makes the transaction SMTPUTF8 (refused before MAIL by
 * a relay without it) while a UTF-8 domain goes as its A-label, and each
 * bad input is a 422 naming its member with nothing sent; a batch takes
 * both forms item by item.
 *
 * Needs root (Postfix) and the packages of `scripts/deps.sh test` and
 * `tools`.  MTA_KEEP=1 keeps the servers' directories, MPSERVE_KEEP=1 the
 * service's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "tests/support/http.h"
#include "tests/support/mpserve.h"
#include "tests/support/mta.h"
#include "tests/support/tsupport.h"

#define ARRIVE_MS 20000
#define STOP_MS 15000

/* The servers of the file, started once. */
struct fx {
    struct mta *postfix;
    struct mta *node;
};

/* Bytes that are no text: every octet value once, base64 (the inline
   image and the PDF carry them). */
static char *binary_b64(const char *magic)
{
    static const char digits[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char raw[300];
    size_t n = strlen(magic), o = 0;
    char *out = malloc(sizeof raw / 3 * 4 + 8);
    memcpy(raw, magic, n);
    for (size_t i = n; i < sizeof raw; i++)
        raw[i] = (unsigned char)(i - n);
    for (size_t i = 0; i < sizeof raw; i += 3) {
        unsigned v = (unsigned)raw[i] << 16 | (unsigned)raw[i + 1] << 8 |
                     raw[i + 2];
        out[o++] = digits[v >> 18 & 63];
        out[o++] = digits[v >> 12 & 63];
        out[o++] = digits[v >> 6 & 63];
        out[o++] = digits[v & 63];
    }
    out[o] = '\0';
    return out;
}

/* The text part: UTF-8, emoji, CJK, right-to-left, a line starting with
   ".", a 2,000-character line (caller frees). */
static char *rich_text(void)
{
    static const char head[] =
        "Gr\xc3\xbc\xc3\x9f"
        "e aus K\xc3\xb6ln \xf0\x9f\x98\x80\n"
        "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe6\x96\x87\n"
        "\xd7\xa9\xd7\x9c\xd7\x95\xd7\x9d \xd7\xa2\xd7\x95\xd7\x9c\xd7\x9d "
        "\xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7\n"
        ".a line starting with a dot\n"
        "..and two\n";
    char *t = malloc(sizeof head + 2000 + 16);
    size_t n = sizeof head - 1;
    memcpy(t, head, n);
    for (size_t i = 0; i < 2000; i++)
        t[n++] = i % 10 == 9 ? ' ' : (char)('a' + i % 26);
    memcpy(t + n, "\nend\n", 6);
    return t;
}

#define HTML \
    "<p>Hallo <b>J\xc3\xb6rg</b> \xf0\x9f\x8e\x89</p>" \
    "<img src=\"cid:logo@mailpool.test\">"
#define SUBJECT \
    "Gr\xc3\xbc\xc3\x9f" \
    "e \xe2\x98\x83 \xe6\x97\xa5\xe6\x9c\xac"
#define PDF_NAME "Rechnung M\xc3\xa4rz.pdf"

/* The README's message: UTF-8 subject and display names, text + HTML, an
   inline image and a PDF, two to, one cc, one bcc (tag makes the local
   parts unique).  New reference. */
static json_t *readme_message(const char *tag)
{
    char to1[96], to2[96], cc[96], bcc[96];
    char *text = rich_text(), *png = binary_b64("\x89PNG\r\n\x1a\n");
    char *pdf = binary_b64("%PDF-1.4\n");
    snprintf(to1, sizeof to1, "J\xc3\xb6rg M\xc3\xbcller <%s-to1@example.test>",
             tag);
    snprintf(to2, sizeof to2, "%s-to2@example.test", tag);
    snprintf(cc, sizeof cc, "%s-cc@example.test", tag);
    snprintf(bcc, sizeof bcc, "%s-bcc@example.test", tag);
    json_t *j = json_pack(
        "{s:s, s:[s, {s:s, s:s}], s:[s], s:[s], s:s, s:s, s:s,"
        " s:[{s:s, s:s, s:s, s:s, s:s}, {s:s, s:s, s:s}]}",
        "from", "Zo\xc3\xab \xc3\x84pfel <app@mailpool.test>", "to", to1,
        "name", "\xd7\xa9\xd7\xa8\xd7\x94", "email", to2, "cc", cc, "bcc", bcc,
        "subject", SUBJECT, "text", text, "html", HTML, "attachments",
        "filename", "logo.png", "content_type", "image/png", "content", png,
        "disposition", "inline", "content_id", "logo@mailpool.test", "filename",
        PDF_NAME, "content_type", "application/pdf", "content", pdf);
    free(text);
    free(png);
    free(pdf);
    assert_non_null(j);
    return j;
}

/* A string member (fails the test when it is not one). */
static const char *jstr(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (s == NULL)
        fail_msg("member \"%s\" is not a string in %s", key,
                 json_dumps(o, JSON_COMPACT));
    return s;
}

/* Runs a parser script on file; its JSON (caller decrefs). */
static json_t *parse_with(const char *prog, const char *script,
                          const char *file)
{
    char cmd[PATH_MAX * 2 + 64];
    snprintf(cmd, sizeof cmd, "%s tests/support/%s '%s'", prog, script, file);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t cap = 1 << 20, len;
    char *buf = malloc(cap);
    len = fread(buf, 1, cap - 1, p);
    buf[len] = '\0';
    int rc = pclose(p);
    json_t *j = json_loads(buf, 0, NULL);
    if (rc != 0 || j == NULL)
        fail_msg("%s %s on %s: exit %d, printed: %.2000s", prog, script, file,
                 rc, buf);
    free(buf);
    return j;
}

/* Asserts the [name, address] pair at list[i]. */
static void expect_pair(json_t *list, size_t i, const char *name,
                        const char *addr)
{
    json_t *p = json_array_get(list, i);
    const char *n = json_string_value(json_array_get(p, 0));
    assert_non_null(p);
    assert_string_equal(n != NULL ? n : "", name);
    assert_int_equal(strcasecmp(json_string_value(json_array_get(p, 1)), addr),
                     0);
}

/* The address of a "Name <addr>" string, or the string. */
static void addr_of(const char *s, char *out, size_t len)
{
    const char *lt = strchr(s, '<');
    snprintf(out, len, "%s", lt != NULL ? lt + 1 : s);
    char *gt = strchr(out, '>');
    if (gt != NULL)
        *gt = '\0';
}

/* Asserts that a parse (python: read_mail.py's, else mailparser's) gives
   back exactly the posted message req. */
static void expect_same(json_t *got, json_t *req, int python)
{
    json_t *to = json_object_get(req, "to"), *att;
    char a[128];
    assert_string_equal(jstr(got, "subject"), jstr(req, "subject"));
    expect_pair(json_object_get(got, "from"), 0, "Zo\xc3\xab \xc3\x84pfel",
                "app@mailpool.test");
    assert_int_equal(json_array_size(json_object_get(got, "to")), 2);
    addr_of(json_string_value(json_array_get(to, 0)), a, sizeof a);
    expect_pair(json_object_get(got, "to"), 0, "J\xc3\xb6rg M\xc3\xbcller", a);
    expect_pair(json_object_get(got, "to"), 1, "\xd7\xa9\xd7\xa8\xd7\x94",
                jstr(json_array_get(to, 1), "email"));
    assert_int_equal(json_array_size(json_object_get(got, "cc")), 1);
    expect_pair(
        json_object_get(got, "cc"), 0, "",
        json_string_value(json_array_get(json_object_get(req, "cc"), 0)));
    assert_false(json_is_true(json_object_get(got, "bcc_field")));
    assert_string_equal(jstr(got, "text"), jstr(req, "text"));
    assert_string_equal(jstr(got, "html"), jstr(req, "html"));
    att = json_object_get(req, "attachments");
    json_t *files = json_object_get(got, "files");
    assert_int_equal(json_array_size(files), 2);
    for (size_t i = 0; i < 2; i++) {
        json_t *f = json_array_get(files, i), *w = json_array_get(att, i);
        assert_string_equal(jstr(f, "type"), jstr(w, "content_type"));
        assert_string_equal(jstr(f, "filename"), jstr(w, "filename"));
        assert_string_equal(jstr(f, "b64"), jstr(w, "content"));
    }
    assert_string_equal(jstr(json_array_get(files, 0), "content_id"),
                        "logo@mailpool.test");
    assert_string_equal(jstr(json_array_get(files, 0), "disposition"),
                        "inline");
    assert_string_equal(jstr(json_array_get(files, 1), "disposition"),
                        "attachment");
    if (!python)
        return;
    assert_string_equal(jstr(got, "text_charset"), "utf-8");
    assert_string_equal(jstr(got, "html_charset"), "utf-8");
    assert_string_equal(jstr(got, "mime_version"), "1.0");
    assert_string_equal(jstr(got, "structure"),
                        "multipart/mixed(multipart/alternative(text/plain,"
                        "multipart/related(text/html,image/png)),"
                        "application/pdf)");
    assert_int_equal(json_array_size(json_object_get(got, "defects")), 0);
}

/* Both parsers on file, each compared with req. */
static void expect_parsed(const char *file, json_t *req)
{
    json_t *py = parse_with("/usr/bin/python3", "read_mail.py", file);
    json_t *js = parse_with("node", "read_mail.js", file);
    expect_same(py, req, 1);
    expect_same(js, req, 0);
    json_decref(py);
    json_decref(js);
}

/* Asserts the bytes hold no Bcc field, no bare LF and no line over 998
   octets, and that every line of the header section is under 998. */
static void expect_clean_wire(const unsigned char *d, size_t len)
{
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if (d[i] != '\n')
            continue;
        assert_true(i > 0 && d[i - 1] == '\r');
        assert_true(i - 1 - start <= 998);
        if (len - (i + 1) >= 4)
            assert_int_not_equal(
                strncasecmp((const char *)d + i + 1, "bcc:", 4), 0);
        start = i + 1;
    }
    assert_int_not_equal(strncasecmp((const char *)d, "bcc:", 4), 0);
}

/* The recipients of req: to, cc and bcc addresses, into rcpt[4]. */
static void recipients(json_t *req, char rcpt[4][96])
{
    json_t *to = json_object_get(req, "to");
    addr_of(json_string_value(json_array_get(to, 0)), rcpt[0], 96);
    snprintf(rcpt[1], 96, "%s", jstr(json_array_get(to, 1), "email"));
    snprintf(rcpt[2], 96, "%s",
             json_string_value(json_array_get(json_object_get(req, "cc"), 0)));
    snprintf(rcpt[3], 96, "%s",
             json_string_value(json_array_get(json_object_get(req, "bcc"), 0)));
}

/* Waits until each of the nr recipients has a copy, then a little
   longer; asserts one copy each (their indexes in idx) and returns the
   messages. */
static struct mta_msg *copies_each(struct mta *m, char (*rcpt)[96], int nr,
                                   size_t *n, size_t *idx)
{
    struct mta_msg *msgs = NULL;
    long long end = ts_now_ms() + ARRIVE_MS;
    size_t k[4];
    for (int settle = 0;;) {
        assert_int_equal(mta_messages(m, &msgs, n), 0);
        int all = 1;
        for (int r = 0; r < nr; r++) {
            k[r] = 0;
            for (size_t i = 0; i < *n; i++)
                if (strcasecmp(msgs[i].rcpt, rcpt[r]) == 0)
                    k[r]++, idx[r] = i;
            all &= k[r] >= 1;
        }
        if ((all && settle++) || ts_now_ms() > end)
            break; /* one more look: a duplicate shows */
        mta_msgs_free(msgs, *n);
        ts_sleep_ms(all ? 300 : 100);
    }
    for (int r = 0; r < nr; r++)
        if (k[r] != 1) {
            mta_show_logs(m);
            fail_msg("%zu copies for %s, want 1", k[r], rcpt[r]);
        }
    return msgs;
}

/* Writes j as a file in dir; its path (caller frees). */
static char *json_file(const char *dir, const char *name, json_t *j)
{
    char *path = malloc(PATH_MAX);
    snprintf(path, PATH_MAX, "%s/%s", dir, name);
    assert_int_equal(json_dump_file(j, path, JSON_INDENT(2)), 0);
    return path;
}

/* Runs the README's curl (POST the file to /v1/messages); its output. */
static json_t *readme_curl(const char *url, const char *file)
{
    char cmd[PATH_MAX + 256], buf[8192];
    snprintf(cmd, sizeof cmd,
             "curl -sS --noproxy '*' %s/v1/messages "
             "-H 'Content-Type: application/json' --data-binary @'%s'",
             url, file);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t len = fread(buf, 1, sizeof buf - 1, p);
    buf[len] = '\0';
    assert_int_equal(pclose(p), 0);
    json_t *j = json_loads(buf, 0, NULL);
    if (j == NULL)
        fail_msg("curl printed: %s", buf);
    return j;
}

/* ---- Fixtures ---- */

static int servers_up(void **state)
{
    static struct fx f;
    f.postfix = mta_start_postfix();
    f.node = mta_start_node(0, NULL);
    *state = &f;
    return f.postfix != NULL && f.node != NULL ? 0 : -1;
}

static int servers_down(void **state)
{
    struct fx *f = *state;
    int rc = mta_stop(f->postfix) | mta_stop(f->node);
    f->postfix = f->node = NULL;
    return rc;
}

/* mailpool serve in front of a server's listener. */
static struct mpserve *service(struct mta *m, const char *listener,
                               const char *const *extra)
{
    struct mpserve *svc = mpserve_start(mta_port(m, listener), extra);
    assert_non_null(svc);
    return svc;
}

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

/* mailpool send --json FILE delivers the same message to Postfix; with
   --dry-run it prints the bytes (parsing back the same) and contacts no
   server. */
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
    assert_non_null(strstr(out, "\"status\":\"sent\""));
    free(out);
    recipients(req, rcpt);
    struct mta_msg *msgs = copies_each(f->postfix, rcpt, 4, &n, idx);
    for (int r = 0; r < 4; r++)
        expect_parsed(msgs[idx[r]].file, req);
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

/* The envelope form: a non-ASCII Subject and display name are no longer
   refused or sent raw to a relay without SMTPUTF8: they arrive as RFC 2047
   words that Python decodes to what was posted. */
static void test_envelope_form_non_ascii_header_arrives_encoded(void **state)
{
    struct fx *f = *state;
    struct mpserve *svc = service(f->postfix, "plain", NULL);
    char rcpt[1][96] = { "envelope-utf8@example.test" };
    size_t idx[1];
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
        cmocka_unit_test(
            test_readme_curl_message_arrives_at_postfix_and_parses_back),
        cmocka_unit_test(
            test_composed_bytes_on_the_wire_have_no_bcc_and_parse_back),
        cmocka_unit_test(
            test_async_composed_message_is_stored_composed_and_arrives),
        cmocka_unit_test(test_cli_send_json_and_dry_run),
        cmocka_unit_test(test_preview_returns_the_message_without_a_relay),
        cmocka_unit_test(test_envelope_form_non_ascii_header_arrives_encoded),
        cmocka_unit_test(test_each_bad_input_is_a_422_naming_the_member),
        cmocka_unit_test(
            test_utf8_local_part_needs_smtputf8_idna_domain_does_not),
        cmocka_unit_test(test_batch_takes_both_forms_item_by_item),
    };
    return cmocka_run_group_tests(tests, servers_up, servers_down);
}
