/*
 * transcript_case.c - reading a transcript case file and writing it back
 * as FILE.new with the bytes a path sent (see transcript.h; the format is
 * in tests/README.md).
 *
 * Public: tr_case_load, tr_case_free, tr_case_conn, tr_case_nconns,
 * tr_write_new.
 *
 * Errors: -1, with the reason (file and line) in the caller's buffer.
 * libc only; nothing global is mutable; a struct tr_case is used by one
 * thread at a time.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/support/transcript.h"
#include "tests/support/transcript_internal.h"
#include "tests/support/tsupport.h"

/* The path of this name, or -1. */
static int path_of(const char *s, size_t len)
{
    for (int p = 0; p < TR_NPATHS; p++)
        if (strlen(tr_path_name((enum tr_path)p)) == len &&
            memcmp(tr_path_name((enum tr_path)p), s, len) == 0)
            return p;
    return -1;
}

/* ---- Reading a case ---- */

/* Where the reader is: the header lines, or a section. */
enum sect { S_HEAD, S_SCRIPT, S_MESSAGE, S_OUTCOME, S_CONN };

/* The state of one load. */
struct rd {
    struct tr_case *c;
    enum sect sect;
    struct tb script, message;
    int seen_outcome;
    int have_keep; /* keep_len is set */
    char *why;
    size_t whylen;
};

/* A decimal int in [lo, hi] from s (len bytes); 0, or -1. */
static int parse_int(const char *s, size_t len, long lo, long hi, int *out)
{
    char buf[24];
    if (len == 0 || len >= sizeof buf)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    errno = 0;
    long v = strtol(buf, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

/* "key: value" into key and value (both trimmed); 0, or -1. */
static int split_kv(const char *line, size_t len, const char **key,
                    size_t *klen, const char **val, size_t *vlen)
{
    const char *colon = memchr(line, ':', len);
    if (colon == NULL)
        return -1;
    *key = line;
    *klen = (size_t)(colon - line);
    *val = colon + 1;
    *vlen = len - *klen - 1;
    while (*vlen > 0 && (**val == ' ' || **val == '\t')) {
        (*val)++;
        (*vlen)--;
    }
    while (*vlen > 0 && ((*val)[*vlen - 1] == ' ' || (*val)[*vlen - 1] == '\t'))
        (*vlen)--;
    return 0;
}

/* A set of path names separated by blanks into a bit set; 0, or -1. */
static int parse_paths(const char *s, size_t len, unsigned *set)
{
    *set = 0;
    size_t i = 0;
    while (i < len) {
        while (i < len && s[i] == ' ')
            i++;
        size_t j = i;
        while (j < len && s[j] != ' ')
            j++;
        if (j > i) {
            int p = path_of(s + i, j - i);
            if (p < 0)
                return -1;
            *set |= 1u << p;
        }
        i = j;
    }
    return *set != 0 ? 0 : -1;
}

/* "xfail: PATH... : reason". */
static int head_xfail(struct rd *r, const char *v, size_t vlen)
{
    const char *colon = memchr(v, ':', vlen);
    unsigned set;
    if (colon == NULL || parse_paths(v, (size_t)(colon - v), &set) < 0)
        return tr_fail_why(r->why, r->whylen, "xfail wants 'PATH...: reason'");
    const char *why = colon + 1;
    while (*why == ' ')
        why++;
    size_t wlen = vlen - (size_t)(why - v);
    for (int p = 0; p < TR_NPATHS; p++) {
        if (!(set & (1u << p)))
            continue;
        free(r->c->xfail_why[p]);
        r->c->xfail_why[p] = strndup(why, wlen);
        if (r->c->xfail_why[p] == NULL)
            return tr_fail_why(r->why, r->whylen, "out of memory");
    }
    r->c->xfail |= set;
    return 0;
}

/* One header line: title, paths, helo, tls, pipelining, xfail. */
static int head_line(struct rd *r, const char *line, size_t len)
{
    const char *k, *v;
    size_t kl, vl;
    if (split_kv(line, len, &k, &kl, &v, &vl) < 0)
        return tr_fail_why(r->why, r->whylen, "want 'key: value'");
#define KEY(s) (kl == sizeof(s) - 1 && memcmp(k, s, kl) == 0)
    if (KEY("title") || KEY("helo")) {
        char **dst = KEY("title") ? &r->c->title : &r->c->helo;
        free(*dst);
        return (*dst = strndup(v, vl)) != NULL ? 0 : -1;
    }
    if (KEY("paths"))
        return parse_paths(v, vl, &r->c->paths) == 0
                   ? 0
                   : tr_fail_why(r->why, r->whylen, "paths: library serve cli");
    if (KEY("tls"))
        return vl == 4 && memcmp(v, "none", 4) == 0
                   ? 0
                   : tr_fail_why(r->why, r->whylen,
                                 "tls: only none is supported");
    if (KEY("pipelining")) {
        if (vl == 2 && memcmp(v, "on", 2) == 0)
            r->c->pipelining = 1;
        else if (vl == 3 && memcmp(v, "off", 3) == 0)
            r->c->pipelining = 0;
        else
            return tr_fail_why(r->why, r->whylen, "pipelining: on or off");
        return 0;
    }
    if (KEY("xfail"))
        return head_xfail(r, v, vl);
#undef KEY
    return tr_fail_why(r->why, r->whylen, "unknown key '%.*s'", (int)kl, k);
}

/* One outcome line: http, status, code, accepted, rejected. */
static int outcome_line(struct rd *r, const char *line, size_t len)
{
    struct tr_outcome *o = &r->c->want;
    const char *k, *v;
    size_t kl, vl;
    if (split_kv(line, len, &k, &kl, &v, &vl) < 0)
        return tr_fail_why(r->why, r->whylen, "want 'key: value'");
#define KEY(s) (kl == sizeof(s) - 1 && memcmp(k, s, kl) == 0)
    if (KEY("http") || KEY("code"))
        return parse_int(v, vl, 0, 999, KEY("http") ? &o->http : &o->code) == 0
                   ? 0
                   : tr_fail_why(r->why, r->whylen, "a number 0..999");
    if (KEY("status")) {
        if (vl == 0 || vl >= sizeof o->status)
            return tr_fail_why(r->why, r->whylen, "status: sent, partial, ...");
        memcpy(o->status, v, vl);
        o->status[vl] = '\0';
        return 0;
    }
    char addr[600];
    if (KEY("accepted")) {
        if (vl == 0 || vl >= sizeof addr)
            return tr_fail_why(r->why, r->whylen, "accepted: ADDRESS");
        memcpy(addr, v, vl);
        addr[vl] = '\0';
        return tr_outcome_accept(o, addr);
    }
    if (KEY("rejected")) {
        const char *sp = vl > 0 ? memrchr(v, ' ', vl) : NULL;
        int code;
        if (sp == NULL || (size_t)(sp - v) >= sizeof addr ||
            parse_int(sp + 1, vl - (size_t)(sp - v) - 1, 0, 999, &code) < 0)
            return tr_fail_why(r->why, r->whylen, "rejected: ADDRESS CODE");
        memcpy(addr, v, (size_t)(sp - v));
        addr[sp - v] = '\0';
        return tr_outcome_reject(o, addr, code);
    }
#undef KEY
    return tr_fail_why(r->why, r->whylen, "unknown key '%.*s'", (int)kl, k);
}

/* "--- NAME [ARGS]": switches section. */
static int section_line(struct rd *r, const char *line, size_t len)
{
    const char *s = line + 4;
    size_t n = len - 4;
    if (n == 6 && memcmp(s, "script", 6) == 0) {
        r->sect = S_SCRIPT;
    } else if (n == 7 && memcmp(s, "message", 7) == 0) {
        r->sect = S_MESSAGE;
    } else if (n == 7 && memcmp(s, "outcome", 7) == 0) {
        r->sect = S_OUTCOME;
        r->seen_outcome = 1;
    } else if (n > 5 && memcmp(s, "conn ", 5) == 0) {
        const char *num = s + 5, *sp = memchr(num, ' ', n - 5);
        size_t nl = sp != NULL ? (size_t)(sp - num) : n - 5;
        struct tr_conn cn = { .path = -1 };
        if (parse_int(num, nl, 1, 1000, &cn.n) < 0 ||
            (sp != NULL && (cn.path = path_of(sp + 1, n - 5 - nl - 1)) < 0))
            return tr_fail_why(r->why, r->whylen, "want '--- conn N [PATH]'");
        for (size_t i = 0; i < r->c->nconns; i++)
            if (r->c->conns[i].n == cn.n && r->c->conns[i].path == cn.path)
                return tr_fail_why(r->why, r->whylen, "connection %d twice",
                                   cn.n);
        struct tr_conn *nc = realloc(r->c->conns,
                                     (r->c->nconns + 1) * sizeof *nc);
        if (nc == NULL)
            return tr_fail_why(r->why, r->whylen, "out of memory");
        r->c->conns = nc;
        nc[r->c->nconns++] = cn;
        r->sect = S_CONN;
    } else {
        return tr_fail_why(r->why, r->whylen, "unknown section '%.*s'", (int)n,
                           s);
    }
    if ((r->sect == S_OUTCOME || r->sect == S_CONN) && !r->have_keep) {
        r->c->keep_len = (size_t)(line - r->c->text);
        r->have_keep = 1;
    }
    return 0;
}

/* One line of the file (without its newline). */
static int one_line(struct rd *r, const char *line, size_t len)
{
    if (len >= 4 && memcmp(line, "--- ", 4) == 0)
        return section_line(r, line, len);
    switch (r->sect) {
    case S_HEAD:
        if (len == 0 || line[0] == '#')
            return 0;
        return head_line(r, line, len);
    case S_SCRIPT:
    case S_MESSAGE: {
        struct tb *b = r->sect == S_SCRIPT ? &r->script : &r->message;
        tr_tb_add(b, line, len);
        tr_tb_add(b, "\n", 1);
        return b->ok ? 0 : -1;
    }
    case S_OUTCOME: return len == 0 ? 0 : outcome_line(r, line, len);
    case S_CONN: {
        struct tr_conn *cn = &r->c->conns[r->c->nconns - 1];
        return tr_decode_line(line, len, &cn->bytes, &cn->len, r->why,
                              r->whylen);
    }
    }
    return -1;
}

/* Checks that the parts every case needs are there. */
static int check_case(struct rd *r)
{
    struct tr_case *c = r->c;
    if (c->title == NULL)
        return tr_fail_why(r->why, r->whylen, "no title");
    if (r->script.len == 0 || r->message.len == 0)
        return tr_fail_why(r->why, r->whylen, "no script or message section");
    if (!r->seen_outcome || c->want.status[0] == '\0')
        return tr_fail_why(r->why, r->whylen,
                           "no outcome section with a status");
    if (c->xfail & ~c->paths)
        return tr_fail_why(r->why, r->whylen, "xfail names a path not run");
    c->script = tr_tb_take(&r->script);
    c->message = tr_tb_take(&r->message);
    r->script.p = r->message.p = NULL;
    if (c->helo == NULL)
        c->helo = strdup("localhost");
    for (size_t i = 0; i < c->nconns; i++)
        if (c->conns[i].bytes == NULL &&
            (c->conns[i].bytes = strdup("")) == NULL)
            return -1;
    return c->script && c->message && c->helo ? 0 : -1;
}

/* Base name of file without ".case"; caller frees. */
static char *case_name(const char *file)
{
    const char *base = strrchr(file, '/');
    base = base != NULL ? base + 1 : file;
    size_t n = strlen(base);
    if (n > 5 && strcmp(base + n - 5, ".case") == 0)
        n -= 5;
    return strndup(base, n);
}

/* Reads and checks a case file; 0, or -1 with why. */
int tr_case_load(const char *file, struct tr_case *c, char *why, size_t whylen)
{
    memset(c, 0, sizeof *c);
    c->pipelining = 1;
    c->want.http = 200;
    c->paths = (1u << TR_NPATHS) - 1;
    c->file = strdup(file);
    c->name = case_name(file);
    size_t len;
    c->text = ts_slurp(file, &len);
    if (c->text == NULL || c->file == NULL || c->name == NULL)
        return tr_fail_why(why, whylen, "%s: %s", file, strerror(errno));
    char sub[384] = "";
    struct rd r = { .c = c,
                    .sect = S_HEAD,
                    .script = { .ok = 1 },
                    .message = { .ok = 1 },
                    .why = sub,
                    .whylen = sizeof sub };
    size_t pos = 0, lineno = 0;
    int rc = 0;
    while (pos < len && rc == 0) {
        const char *nl = memchr(c->text + pos, '\n', len - pos);
        size_t n = nl != NULL ? (size_t)(nl - (c->text + pos)) : len - pos;
        lineno++;
        rc = one_line(&r, c->text + pos, n);
        pos += n + 1;
    }
    if (rc == 0) {
        lineno = 0;
        rc = check_case(&r);
    }
    free(r.script.p);
    free(r.message.p);
    if (rc < 0) {
        if (lineno > 0)
            return tr_fail_why(why, whylen, "%s:%zu: %s", file, lineno,
                               sub[0] ? sub : "out of memory");
        return tr_fail_why(why, whylen, "%s: %s", file,
                           sub[0] ? sub : "out of memory");
    }
    if (!r.have_keep)
        c->keep_len = len;
    return 0;
}

/* Frees what c owns. */
void tr_case_free(struct tr_case *c)
{
    free(c->file);
    free(c->name);
    free(c->title);
    free(c->helo);
    for (int p = 0; p < TR_NPATHS; p++)
        free(c->xfail_why[p]);
    free(c->script);
    free(c->message);
    tr_outcome_clear(&c->want);
    for (size_t i = 0; i < c->nconns; i++)
        free(c->conns[i].bytes);
    free(c->conns);
    free(c->text);
    memset(c, 0, sizeof *c);
}

/* The expected bytes of connection n on path p, or NULL. */
const struct tr_conn *tr_case_conn(const struct tr_case *c, int n,
                                   enum tr_path p)
{
    const struct tr_conn *common = NULL;
    for (size_t i = 0; i < c->nconns; i++) {
        if (c->conns[i].n != n)
            continue;
        if (c->conns[i].path == (int)p)
            return &c->conns[i];
        if (c->conns[i].path < 0)
            common = &c->conns[i];
    }
    return common;
}

/* How many connections path p is expected to open. */
int tr_case_nconns(const struct tr_case *c, enum tr_path p)
{
    int max = 0;
    for (size_t i = 0; i < c->nconns; i++)
        if ((c->conns[i].path < 0 || c->conns[i].path == (int)p) &&
            c->conns[i].n > max)
            max = c->conns[i].n;
    return max;
}

/* ---- Writing FILE.new ---- */

/* The outcome section as the reader takes it. */
static void write_outcome(struct tb *b, const struct tr_outcome *o)
{
    tr_tb_printf(b, "--- outcome\n");
    if (o->http != 200)
        tr_tb_printf(b, "http: %d\n", o->http);
    tr_tb_printf(b, "status: %s\ncode: %d\n", o->status, o->code);
    for (size_t i = 0; i < o->naccepted; i++)
        tr_tb_printf(b, "accepted: %s\n", o->accepted[i]);
    for (size_t i = 0; i < o->nrejected; i++)
        tr_tb_printf(b, "rejected: %s %d\n", o->rejected[i].rcpt,
                     o->rejected[i].code);
}

/* Writes FILE.new with the outcome and the bytes got. */
int tr_write_new(const struct tr_case *c, const struct tr_outcome *got,
                 char *const *bytes, const size_t *lens, int nconns, char *why,
                 size_t whylen)
{
    struct tb b = { .ok = 1 };
    tr_tb_add(&b, c->text, c->keep_len);
    if (c->keep_len > 0 && c->text[c->keep_len - 1] != '\n')
        tr_tb_add(&b, "\n", 1);
    write_outcome(&b, got);
    for (int i = 0; i < nconns; i++) {
        char *esc = tr_escape(bytes[i] != NULL ? bytes[i] : "", lens[i]);
        tr_tb_printf(&b, "--- conn %d\n", i + 1);
        if (esc == NULL)
            b.ok = 0;
        else
            tr_tb_add(&b, esc, strlen(esc));
        free(esc);
    }
    char *text = tr_tb_take(&b);
    if (text == NULL)
        return tr_fail_why(why, whylen, "out of memory");
    char path[4096];
    snprintf(path, sizeof path, "%s.new", c->file);
    FILE *f = fopen(path, "w");
    int rc = f != NULL && fwrite(text, 1, strlen(text), f) == strlen(text) ? 0
                                                                           : -1;
    if (f != NULL && fclose(f) != 0)
        rc = -1;
    free(text);
    return rc == 0 ? 0
                   : tr_fail_why(why, whylen, "%s: %s", path, strerror(errno));
}
