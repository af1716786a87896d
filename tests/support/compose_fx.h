/*
 * tests/support/compose_fx.h - what the composition tests
 * (tests/integration/test_compose.c and test_compose_input.c) share: a
 * real Postfix and nodemailer's smtp-server started once per file, the
 * README's composed message and its parts, what Python's email package
 * (tests/support/read_mail.py) and npm's mailparser
 * (tests/support/read_mail.js) parse back from what arrived and its
 * comparison with what was posted, the recipients' copies, the README's
 * curl, `mailpool serve` in front of a server.  Header-only (static
 * inline).
 */
#ifndef TESTS_SUPPORT_COMPOSE_FX_H
#define TESTS_SUPPORT_COMPOSE_FX_H

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
static inline char *binary_b64(const char *magic)
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
static inline char *rich_text(void)
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
static inline json_t *readme_message(const char *tag)
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
static inline const char *jstr(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    if (s == NULL)
        fail_msg("member \"%s\" is not a string in %s", key,
                 json_dumps(o, JSON_COMPACT));
    return s;
}

/* Runs a parser script on file; its JSON (caller decrefs). */
static inline json_t *parse_with(const char *prog, const char *script,
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
static inline void expect_pair(json_t *list, size_t i, const char *name,
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
static inline void addr_of(const char *s, char *out, size_t len)
{
    const char *lt = strchr(s, '<');
    snprintf(out, len, "%s", lt != NULL ? lt + 1 : s);
    char *gt = strchr(out, '>');
    if (gt != NULL)
        *gt = '\0';
}

/* Asserts that a parse (python: read_mail.py's, else mailparser's) gives
   back exactly the posted message req. */
static inline void expect_same(json_t *got, json_t *req, int python)
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
static inline void expect_parsed(const char *file, json_t *req)
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
static inline void expect_clean_wire(const unsigned char *d, size_t len)
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
static inline void recipients(json_t *req, char rcpt[4][96])
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
static inline struct mta_msg *copies_each(struct mta *m, char (*rcpt)[96],
                                          int nr, size_t *n, size_t *idx)
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
static inline char *json_file(const char *dir, const char *name, json_t *j)
{
    char *path = malloc(PATH_MAX);
    snprintf(path, PATH_MAX, "%s/%s", dir, name);
    assert_int_equal(json_dump_file(j, path, JSON_INDENT(2)), 0);
    return path;
}

/* Runs the README's curl (POST the file to /v1/messages); its output. */
static inline json_t *readme_curl(const char *url, const char *file)
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

static inline int servers_up(void **state)
{
    static struct fx f;
    f.postfix = mta_start_postfix();
    f.node = mta_start_node(0, NULL);
    *state = &f;
    return f.postfix != NULL && f.node != NULL ? 0 : -1;
}

static inline int servers_down(void **state)
{
    struct fx *f = *state;
    int rc = mta_stop(f->postfix) | mta_stop(f->node);
    f->postfix = f->node = NULL;
    return rc;
}

/* mailpool serve in front of a server's listener. */
static inline struct mpserve *service(struct mta *m, const char *listener,
                                      const char *const *extra)
{
    struct mpserve *svc = mpserve_start(mta_port(m, listener), extra);
    assert_non_null(svc);
    return svc;
}

#endif /* TESTS_SUPPORT_COMPOSE_FX_H */
