/*
 * test_dkim_composed.c - DKIM signing of the composed form (UTF-8 subject
 * and display name, text + HTML, a long one-click unsubscribe URL) where
 * the user meets it: posted to `mailpool serve`, sent by `mailpool send
 * --json`, and in what its --dry-run prints; each message that arrived is
 * verified by dkimpy (tests/peers/dkim_verify.py) with the group's keys,
 * and the same bytes with one byte of the unsubscribe URL changed must
 * fail.  The fixture is tests/support/dkim_fx.h.
 */
#include "tests/support/dkim_fx.h"

/* The tail of the composed message's unsubscribe URL (the part changed to
   tamper with the signed field). */
#define UNSUB_TAIL "Zq7end"

/* A composed message with one-click unsubscribe (an https URL of over
   200 characters and a mailto), a UTF-8 subject and display name, and
   text (a line starting with ".", a 2,000-character line) + HTML.  New
   reference. */
static json_t *composed_unsub(void)
{
    char url[300], text[2200];
    size_t n = 0;
    json_t *j;

    n = (size_t)snprintf(url, sizeof url,
                         "https://" DOMAIN "/unsubscribe"
                         "?list=weekly&token=");
    for (; n < 230; n++)
        url[n] = "abcdefghijklmnopqrstuvwxyz0123456789"[n % 36];
    snprintf(url + n, sizeof url - n, "%s", UNSUB_TAIL);
    n = (size_t)snprintf(text, sizeof text,
                         "Hello,\n.a line starting with "
                         "a dot\n");
    for (size_t i = 0; i < 2000; i++)
        text[n++] = i % 10 == 9 ? ' ' : (char)('a' + i % 26);
    snprintf(text + n, sizeof text - n, "\nso long, composed\n");
    j = json_pack("{s:s, s:[s], s:s, s:s, s:s, s:{s:s, s:s, s:b}}", "from",
                  "Zo\xc3\xab \xc3\x84pfel <app@" DOMAIN ">", "to",
                  "rcpt@example.net", "subject",
                  "Gr\xc3\xbc\xc3\x9f"
                  "e \xe2\x98\x83 weekly",
                  "text", text, "html",
                  "<p>Hallo <b>J\xc3\xb6rg</b>, so long, html</p>",
                  "unsubscribe", "url", url, "mailto",
                  "mailto:unsub@example.org", "one_click", 1);
    assert_non_null(j);
    return j;
}

/* The unfolded value of the header field name in the message m (caller
   frees), or NULL. */
static char *field_value(const char *m, const char *name)
{
    size_t nl = strlen(name), o = 0;
    const char *p = m, *end = strstr(m, "\r\n\r\n");
    char *v;

    assert_non_null(end);
    while (p != NULL && p < end && (strncasecmp(p, name, nl) || p[nl] != ':'))
        if ((p = strstr(p, "\r\n")) != NULL)
            p += 2;
    if (p == NULL || p >= end)
        return NULL;
    p += nl + 1 + (p[nl + 1] == ' ');
    v = malloc((size_t)(end - p) + 1);
    for (; p < end && !(p[0] == '\r' && p[2] != ' ' && p[2] != '\t'); p++)
        if (*p != '\r' && *p != '\n')
            v[o++] = *p;
    v[o] = '\0';
    return v;
}

/* Asserts that the arrived composed message m (posted as req) verifies
   with nsig signatures (rsa-sha256, then ed25519-sha256), each covering
   both unsubscribe fields, which arrived as posted; a changed body byte
   and a changed URL byte fail. */
static void expect_composed_signed(unsigned char *m, size_t len, json_t *req,
                                   size_t nsig)
{
    json_t *u = json_object_get(req, "unsubscribe");
    char want[400], *lu = field_value((char *)m, "List-Unsubscribe");
    char *lup = field_value((char *)m, "List-Unsubscribe-Post");

    assert_memory_equal(m, "DKIM-Signature: ", 16);
    snprintf(want, sizeof want, "<%s>, <%s>",
             json_string_value(json_object_get(u, "url")),
             json_string_value(json_object_get(u, "mailto")));
    assert_non_null(lu);
    assert_string_equal(lu, want);
    assert_non_null(lup);
    assert_string_equal(lup, "List-Unsubscribe=One-Click");
    struct verdict v = verify_and_tamper(m, len, "so long", nsig);
    for (size_t i = 0; i < nsig; i++) {
        assert_string_equal(alg_of(&v, i),
                            i == 0 ? "rsa-sha256" : "ed25519-sha256");
        assert_int_equal(h_count(&v, i, "list-unsubscribe"), 1);
        assert_int_equal(h_count(&v, i, "list-unsubscribe-post"), 1);
        assert_int_equal(h_count(&v, i, "from"), 2);
        assert_int_equal(h_count(&v, i, "subject"), 1);
    }
    json_decref(v.j);
    v = verify_and_tamper(m, len, UNSUB_TAIL, nsig);
    json_decref(v.j);
    free(lu);
    free(lup);
}

/* Starts the service with the flags in front of the relay at port, posts
   json synchronously (200) and stops it. */
static void serve_post_once(int port, const char *const *flags,
                            const char *json)
{
    struct mpserve *s = serve(port, flags);

    assert_int_equal(post(s, json, 0), 200);
    assert_int_equal(mpserve_stop_clean(s, 10000), 0);
    mpserve_free(s);
}

static void test_http_composed_unsubscribe_signed_rsa_and_ed25519(void **st)
{
    const char *flags[16];
    json_t *req = composed_unsub();
    char *json = json_dumps(req, JSON_COMPACT);
    struct peer *p = peer_start_aiosmtpd(NULL);
    struct peer_msg *m = NULL;
    size_t n = 0, blen = 0;
    (void)st;

    assert_non_null(p);
    serve_post_once(peer_port(p), RSA_ONLY, json);
    serve_post_once(peer_port(p), both_flags(flags), json);
    assert_int_equal(peer_messages(p, &m, &n), 0);
    assert_int_equal(n, 2);
    expect_composed_signed(m[0].data, m[0].len, req, 1);
    expect_composed_signed(m[1].data, m[1].len, req, 2);
    /* the dot line went dot-stuffed; the signature is over it unstuffed */
    char *wire = peer_conn_bytes(p, 1, &blen);
    assert_non_null(memmem(wire, blen, "\r\n..a line starting", 19));
    free(wire);
    peer_msgs_free(m, n);
    peer_stop(p);
    free(json);
    json_decref(req);
}

static void test_send_json_composed_unsubscribe_signed_and_dry_run(void **st)
{
    const char *flags[16];
    json_t *req = composed_unsub();
    char file[200], server[64], *out = NULL;
    struct peer *p = peer_start_aiosmtpd(NULL);
    struct peer_msg *m = NULL;
    size_t n = 0, na = 0;
    const char *argv[24] = { "send", "--json", file };
    (void)st;

    assert_non_null(p);
    snprintf(file, sizeof file, "%s/composed.json", K.dir);
    assert_int_equal(json_dump_file(req, file, JSON_INDENT(2)), 0);
    snprintf(server, sizeof server, "127.0.0.1:%d", peer_port(p));
    for (const char **f = both_flags(flags); *f != NULL; f++)
        argv[3 + na++] = *f;
    argv[3 + na] = "--dry-run";
    /* --dry-run prints the signed bytes; RSA alone (the first 6 flags) */
    const char *rsa_dry[] = { argv[0], argv[1],     argv[2], argv[3],
                              argv[4], argv[5],     argv[6], argv[7],
                              argv[8], "--dry-run", NULL };
    assert_int_equal(mpserve_run(rsa_dry, 30000, &out), 0);
    expect_composed_signed((unsigned char *)out, strlen(out), req, 1);
    free(out);
    assert_int_equal(mpserve_run(argv, 30000, &out), 0);
    expect_composed_signed((unsigned char *)out, strlen(out), req, 2);
    free(out);
    argv[3 + na] = "--server";
    argv[4 + na] = server;
    argv[5 + na] = "--tls";
    argv[6 + na] = "none";
    assert_int_equal(mpserve_run(argv, 30000, &out), 0);
    assert_non_null(strstr(out, "\"status\":\"sent\""));
    free(out);
    assert_int_equal(peer_messages(p, &m, &n), 0);
    assert_int_equal(n, 1);
    expect_composed_signed(m[0].data, m[0].len, req, 2);
    peer_msgs_free(m, n);
    peer_stop(p);
    json_decref(req);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_composed_unsubscribe_signed_rsa_and_ed25519),
        cmocka_unit_test(
            test_send_json_composed_unsubscribe_signed_and_dry_run),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
