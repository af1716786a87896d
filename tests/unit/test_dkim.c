/*
 * test_dkim.c - the DKIM signer: RFC 8463 appendix A reproduced bit for
 * bit (ed25519-sha256), RFC 6376 3.4.5's canonicalisation example, the
 * body hash fed in pieces and with any line end, the h= list (From
 * oversigned, List-Unsubscribe kept), the folding of b=, RSA keys of 2048
 * bits signing (checked with GnuTLS) and of 1024 bits refused, a key file
 * that does not load named without its content; the dkim.* keys and the
 * [dkim.DOMAIN] sections of the configuration.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "config/config.h"
#include "dkim/dkim.h"

/* RFC 8463 A.1: the Ed25519 secret key (RFC 8032 7.1 test 1). */
static const unsigned char rfc8463_seed[32] = {
    0x9d, 0x61, 0xb1, 0x9d, 0xef, 0xfd, 0x5a, 0x60, 0xba, 0x84, 0x4a,
    0xf4, 0x92, 0xec, 0x2c, 0xc4, 0x44, 0x49, 0xc5, 0x69, 0x7b, 0x32,
    0x69, 0x19, 0x70, 0x3b, 0xac, 0x03, 0x1c, 0xae, 0x7f, 0x60,
};

/* RFC 8463 A.3: the message before signing. */
static const char rfc8463_msg[] =
    "From: Joe SixPack <joe@football.example.com>\r\n"
    "To: Suzie Q <suzie@shopping.example.net>\r\n"
    "Subject: Is dinner ready?\r\n"
    "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    "Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
    "\r\n"
    "Hi.\r\n"
    "\r\n"
    "We lost the game.  Are you hungry yet?\r\n"
    "\r\n"
    "Joe.\r\n"
    "\r\n";

/* RFC 8463 A.3: the Ed25519 signature's tags up to b=, as published. */
static const char rfc8463_tags[] =
    "v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
    " d=football.example.com; i=@football.example.com;\r\n"
    " q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
    " subject : date : message-id : from : subject : date;\r\n"
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    " b=";

/* Its b= tag, the folding white space removed. */
static const char rfc8463_b[] =
    "/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus"
    "Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==";

/* The body hash of n bytes fed step bytes at a time. */
static void body_hash(const char *p, size_t n, size_t step,
                      char out[DKIM_BH_LEN + 1])
{
    struct dkim_body *b = dkim_body_new();

    assert_non_null(b);
    for (size_t i = 0; i < n; i += step)
        dkim_body_update(b, p + i, n - i < step ? n - i : step);
    dkim_body_final(b, out);
    dkim_body_free(b);
}

/* Base64 of the SHA-256 of s, computed apart from the signer. */
static void sha256_b64(const char *s, char out[DKIM_BH_LEN + 1])
{
    static const char t[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char d[33] = { 0 };
    size_t o = 0;

    assert_int_equal(gnutls_hash_fast(GNUTLS_DIG_SHA256, s, strlen(s), d), 0);
    for (size_t i = 0; i < 32; i += 3) {
        unsigned v = (unsigned)d[i] << 16 | (unsigned)d[i + 1] << 8 |
                     (i + 2 < 32 ? d[i + 2] : 0);
        out[o++] = t[v >> 18 & 63];
        out[o++] = t[v >> 12 & 63];
        out[o++] = t[v >> 6 & 63];
        out[o++] = i + 2 < 32 ? t[v & 63] : '=';
    }
    out[o] = '\0';
}

/* Removes white space and CRLF from s in place. */
static void squeeze(char *s)
{
    char *w = s;

    for (; *s != '\0'; s++)
        if (strchr(" \t\r\n", *s) == NULL)
            *w++ = *s;
    *w = '\0';
}

/* The text of tag t in a signature value (white space removed). */
static char *tag(const char *value, const char *t)
{
    static char buf[1024];
    char key[16];
    const char *p;

    snprintf(key, sizeof key, " %s=", t);
    p = strstr(value, key);
    if (p == NULL && strncmp(value, key + 1, strlen(key) - 1) == 0)
        p = value - 1;
    assert_non_null(p);
    p += strlen(key);
    snprintf(buf, sizeof buf, "%.*s", (int)strcspn(p, ";"), p);
    squeeze(buf);
    return buf;
}

static void test_rfc8463_ed25519_example_reproduced_bit_for_bit(void **st)
{
    static const char *const h[] = { "from",       "to",   "subject", "date",
                                     "message-id", "from", "subject", "date" };
    struct dkim_key *key = NULL;
    struct dkim_field *f = NULL;
    size_t nf = 0, off = 0;
    char why[256], bh[DKIM_BH_LEN + 1], *value = NULL;
    (void)st;

    assert_int_equal(
        dkim_key_from_ed25519_seed(rfc8463_seed, &key, why, sizeof why), 0);
    assert_int_equal(
        dkim_parse_header(rfc8463_msg, strlen(rfc8463_msg), &f, &nf, &off), 0);
    assert_int_equal(nf, 5);
    body_hash(rfc8463_msg + off, strlen(rfc8463_msg) - off, 4096, bh);
    assert_string_equal(bh, "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=");

    struct dkim_sign_opts o = { .domain = "football.example.com",
                                .selector = "brisbane",
                                .key = key,
                                .tags = rfc8463_tags,
                                .h = h,
                                .nh = 8 };
    assert_int_equal(dkim_sign(&o, f, nf, bh, &value, why, sizeof why), 0);
    assert_int_equal(strncmp(value, rfc8463_tags, strlen(rfc8463_tags)), 0);
    squeeze(value + strlen(rfc8463_tags));
    assert_string_equal(value + strlen(rfc8463_tags), rfc8463_b);

    char *txt = NULL;
    assert_int_equal(dkim_key_txt_record(key, &txt, why, sizeof why), 0);
    assert_string_equal(txt, "v=DKIM1; k=ed25519; "
                             "p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=");
    free(txt);
    free(value);
    free(f);
    dkim_key_free(key);
}

static void test_rfc6376_canonicalisation_example(void **st)
{
    static const char msg[] = "A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n"
                              " C \r\nD \t E\r\n\r\n\r\n";
    struct dkim_field *f = NULL;
    size_t nf = 0, off = 0;
    char out[64], bh[DKIM_BH_LEN + 1], want[DKIM_BH_LEN + 1];
    (void)st;

    assert_int_equal(dkim_parse_header(msg, strlen(msg), &f, &nf, &off), 0);
    assert_int_equal(nf, 2);
    size_t n = dkim_canon_header(&f[0], out, sizeof out);
    assert_memory_equal(out, "a:X\r\n", n);
    n = dkim_canon_header(&f[1], out, sizeof out);
    assert_int_equal(n, strlen("b:Y Z\r\n"));
    assert_memory_equal(out, "b:Y Z\r\n", n);
    body_hash(msg + off, strlen(msg) - off, 4096, bh);
    sha256_b64(" C\r\nD E\r\n", want);
    assert_string_equal(bh, want);
    free(f);
}

static void test_body_hash_same_for_any_pieces_and_line_ends(void **st)
{
    static const char crlf[] = "a  b \t\r\n.dot\r\n\r\n  \r\nend\r\n\r\n";
    static const char lf[] = "a  b \t\n.dot\n\n  \nend\n\n";
    static const char cr[] = "a  b \t\r.dot\r\r  \rend";
    char whole[DKIM_BH_LEN + 1], h[DKIM_BH_LEN + 1], want[DKIM_BH_LEN + 1];
    (void)st;

    sha256_b64("a b\r\n.dot\r\n\r\n\r\nend\r\n", want);
    body_hash(crlf, strlen(crlf), 4096, whole);
    assert_string_equal(whole, want);
    for (size_t step = 1; step < 8; step++) {
        body_hash(crlf, strlen(crlf), step, h);
        assert_string_equal(h, want);
        body_hash(lf, strlen(lf), step, h);
        assert_string_equal(h, want);
        body_hash(cr, strlen(cr), step, h);
        assert_string_equal(h, want);
    }
    body_hash("", 0, 1, h);
    sha256_b64("", want);
    assert_string_equal(h, want);
    body_hash("\r\n\r\n", 4, 1, h);
    assert_string_equal(h, want);
}

/* A fresh RSA key of bits, as PEM (caller frees). */
static char *rsa_pem(unsigned bits, size_t *len)
{
    gnutls_x509_privkey_t k;
    gnutls_datum_t d;
    char *out;

    assert_int_equal(gnutls_x509_privkey_init(&k), 0);
    assert_int_equal(gnutls_x509_privkey_generate(k, GNUTLS_PK_RSA, bits, 0),
                     0);
    assert_int_equal(gnutls_x509_privkey_export2(k, GNUTLS_X509_FMT_PEM, &d),
                     0);
    out = malloc(d.size);
    memcpy(out, d.data, d.size);
    *len = d.size;
    gnutls_free(d.data);
    gnutls_x509_privkey_deinit(k);
    return out;
}

static void test_rsa_1024_refused_2048_signs_with_oversigned_from(void **st)
{
    static const char msg[] =
        "From: a@example.test\r\nTo: b@example.net\r\nSubject: hi\r\n"
        "List-Unsubscribe: <https://example.test/u?x=1>, "
        "<mailto:u@example.test>\r\n"
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        "X-Other: not signed\r\n\r\nbody\r\n";
    struct dkim_key *key = NULL;
    struct dkim_field *f = NULL;
    size_t len, nf, off;
    char why[256], bh[DKIM_BH_LEN + 1], *value = NULL, *pem;
    (void)st;

    pem = rsa_pem(1024, &len);
    assert_int_equal(dkim_key_from_pem(pem, len, &key, why, sizeof why), -1);
    assert_non_null(strstr(why, "1024 bits"));
    free(pem);
    pem = rsa_pem(2048, &len);
    assert_int_equal(dkim_key_from_pem(pem, len, &key, why, sizeof why), 0);
    free(pem);
    assert_int_equal(dkim_parse_header(msg, strlen(msg), &f, &nf, &off), 0);
    body_hash(msg + off, strlen(msg) - off, 3, bh);
    struct dkim_sign_opts o = { .domain = "example.test",
                                .selector = "s1",
                                .key = key,
                                .t = 1700000000,
                                .x = 1700086400 };
    assert_int_equal(dkim_sign(&o, f, nf, bh, &value, why, sizeof why), 0);
    assert_string_equal(tag(value, "a"), "rsa-sha256");
    assert_string_equal(tag(value, "c"), "relaxed/relaxed");
    assert_string_equal(tag(value, "t"), "1700000000");
    assert_string_equal(tag(value, "x"), "1700086400");
    assert_string_equal(tag(value, "h"),
                        "from:from:to:subject:"
                        "list-unsubscribe:list-unsubscribe-post");
    assert_string_equal(tag(value, "bh"), bh);
    assert_int_equal(strlen(tag(value, "b")), 344);

    char *folded = NULL;
    assert_int_equal(dkim_fold_field(value, &folded), 0);
    for (char *l = folded; *l != '\0';) {
        char *e = strstr(l, "\r\n");
        assert_non_null(e);
        assert_true(e - l <= 78);
        l = e + 2;
    }
    struct dkim_field sig = { "DKIM-Signature", 14, value, strlen(value) };
    assert_true(dkim_has_signature(&sig, 1, "EXAMPLE.test", "s1"));
    assert_false(dkim_has_signature(&sig, 1, "example.test", "s2"));
    free(folded);
    free(value);
    free(f);
    dkim_key_free(key);
}

static void test_key_file_that_does_not_load_is_named_not_echoed(void **st)
{
    char path[] = "/tmp/dkim-test-XXXXXX", why[512];
    struct dkim_key *key = NULL;
    int fd = mkstemp(path);
    (void)st;

    assert_true(fd >= 0);
    assert_int_equal(write(fd, "SECRETSTUFF\n", 12), 12);
    close(fd);
    assert_int_equal(dkim_key_load_file(path, &key, why, sizeof why), -1);
    assert_non_null(strstr(why, path));
    assert_null(strstr(why, "SECRETSTUFF"));
    unlink(path);
    assert_int_equal(dkim_key_load_file(path, &key, why, sizeof why), -1);
    assert_non_null(strstr(why, path));
    assert_null(key);
}

static void test_from_domain_alignment(void **st)
{
    (void)st;
    assert_true(dkim_domain_matches("Joe <joe@example.test>", "example.test"));
    assert_true(dkim_domain_matches("joe@News.Example.test", "example.test"));
    assert_false(dkim_domain_matches("joe@badexample.test", "example.test"));
    assert_false(dkim_domain_matches("joe@example.test.evil", "example.test"));
    assert_false(dkim_domain_matches("no address", "example.test"));
}

/* Loads an INI text as the configuration; 0 or -1 with err. */
static int load_ini(const char *text, struct cfg *cfg, char *path, size_t plen,
                    char *err, size_t errlen)
{
    int fd;
    char flag[] = "--config";
    char *argv[] = { flag, path, NULL };
    char *envp[] = { NULL };

    snprintf(path, plen, "/tmp/dkim-cfg-XXXXXX");
    fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    memset(cfg, 0, sizeof *cfg);
    int rc = cfg_load(cfg, 2, argv, envp, NULL, NULL, err, errlen);
    unlink(path);
    return rc;
}

static void test_dkim_sections_load_and_print_paths_only(void **st)
{
    static const char ini[] =
        "[dkim]\ndomain = example.test\nselector = s1\n"
        "key_file = /keys/main.pem\nexpire = 3600\n\n"
        "[dkim.other.test]\nselector = o1\nkey_file = /keys/o.pem\n"
        "ed25519_selector = e1\ned25519_key_file = /keys/e.pem\n"
        "sign = ALWAYS\n\n[dkim.third.test]\nselector = t1\n"
        "key_file = /keys/t.pem\nexpire = 0\n";
    struct cfg cfg;
    char path[64], err[256], *out = NULL;
    size_t len = 0;
    FILE *f;
    (void)st;

    if (load_ini(ini, &cfg, path, sizeof path, err, sizeof err) < 0)
        fail_msg("%s", err);
    assert_string_equal(cfg.dkim.domain, "example.test");
    assert_string_equal(cfg.dkim.sign, "auto");
    assert_int_equal(cfg.dkim.expire, 3600);
    assert_int_equal(cfg.ndkim_domains, 2);
    assert_string_equal(cfg.dkim_domains[0].domain, "other.test");
    assert_string_equal(cfg.dkim_domains[0].sign, "always");
    assert_string_equal(cfg.dkim_domains[0].ed25519_key_file, "/keys/e.pem");
    assert_int_equal(cfg.dkim_domains[0].expire, -1);
    assert_null(cfg.dkim_domains[1].sign);
    assert_int_equal(cfg.dkim_domains[1].expire, 0);
    f = open_memstream(&out, &len);
    assert_int_equal(cfg_print(&cfg, f), 0);
    fclose(f);
    assert_non_null(strstr(out, "[dkim]\n"));
    assert_non_null(strstr(out, "[dkim.other.test]\nselector = o1\n"
                                "key_file = /keys/o.pem\n"));
    assert_non_null(strstr(out, "[dkim.third.test]"));
    free(out);
    cfg_free(&cfg);
}

static void test_dkim_section_mistakes_named_with_file_and_line(void **st)
{
    static const struct {
        const char *ini, *want;
    } cases[] = {
        { "[dkim.x.test]\nselector = a\nkey = b\n",
          ":3: [dkim.x.test] key: unknown key" },
        { "[dkim.x.test]\nsign = sometimes\n",
          ":2: [dkim.x.test] sign: must be one of auto, always, never" },
        { "[dkim.x.test]\nselector = a\n",
          "[dkim.x.test]: needs selector and key_file" },
        { "[dkim.x.test]\nselector = a\nkey_file = k\n"
          "ed25519_selector = e\n",
          "[dkim.x.test]: ed25519_selector and ed25519_key_file go together" },
        { "[dkim]\nselector = a\nkey_file = k\n", "need dkim.domain" },
        { "[dkim.bad domain]\nselector = a\n", "DNS labels" },
        { "[dkim.x.test]\nselector = a\nselector = b\n",
          ":3: [dkim.x.test] selector: is set again" },
    };
    struct cfg cfg;
    char path[64], err[256];
    (void)st;

    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_int_equal(
            load_ini(cases[i].ini, &cfg, path, sizeof path, err, sizeof err),
            -1);
        if (strstr(err, cases[i].want) == NULL)
            fail_msg("case %zu: %s", i, err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc8463_ed25519_example_reproduced_bit_for_bit),
        cmocka_unit_test(test_rfc6376_canonicalisation_example),
        cmocka_unit_test(test_body_hash_same_for_any_pieces_and_line_ends),
        cmocka_unit_test(test_rsa_1024_refused_2048_signs_with_oversigned_from),
        cmocka_unit_test(test_key_file_that_does_not_load_is_named_not_echoed),
        cmocka_unit_test(test_from_domain_alignment),
        cmocka_unit_test(test_dkim_sections_load_and_print_paths_only),
        cmocka_unit_test(test_dkim_section_mistakes_named_with_file_and_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
