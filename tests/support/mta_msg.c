/*
 * mta_msg.c - what arrived at the real mail servers (see mta.h): the
 * Maildir (DIR/mail/inbox/{new,cur}) for Postfix and Exim, with LF turned
 * back into CRLF; DIR/capture/N.{eml,json,parsed.json} for node, parsed
 * with Jansson.  mta_wait_messages polls for a count.
 *
 * Public: mta_messages, mta_msgs_free, mta_msg_header, mta_wait_messages.
 * Errors: -1 or NULL.  Thread-safety: one struct mta per thread at a time;
 * nothing global is mutable.
 */
#include "tests/support/mta.h"
#include "tests/support/mta_internal.h"
#include "tests/support/tsupport.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- Reading back ---------------------------------------------------- */

/* A growable array of copies. */
struct msgs {
    struct mta_msg *v;
    size_t n, cap;
};

/* A free slot at the end; NULL on no memory. */
static struct mta_msg *msgs_push(struct msgs *a)
{
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 64;
        struct mta_msg *v = realloc(a->v, cap * sizeof *v);
        if (!v)
            return NULL;
        a->v = v;
        a->cap = cap;
    }
    memset(&a->v[a->n], 0, sizeof a->v[0]);
    return &a->v[a->n++];
}

/* Points msg->body after the first empty line. */
static void set_body(struct mta_msg *msg)
{
    const char *d = (const char *)msg->data;
    const char *e = strstr(d, "\r\n\r\n");
    msg->body = e ? e + 4 : d + msg->len;
    if (d[0] == '\r' && d[1] == '\n')
        msg->body = d + 2;
}

/* LF -> CRLF (a stored CRLF stays as is); caller frees. */
static unsigned char *lf_to_crlf(const char *in, size_t len, size_t *out_len)
{
    unsigned char *out = malloc(2 * len + 1);
    size_t o = 0;
    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
            out[o++] = '\r';
        out[o++] = (unsigned char)in[i];
    }
    out[o] = '\0';
    *out_len = o;
    return out;
}

/* The first field called name, unfolded and trimmed; caller frees. */
char *mta_msg_header(const struct mta_msg *msg, const char *name)
{
    const char *p = (const char *)msg->data, *end = msg->body;
    size_t nl = strlen(name);
    while (p < end) {
        const char *eol = strstr(p, "\r\n");
        if (!eol || eol >= end)
            break;
        if ((size_t)(eol - p) > nl && strncasecmp(p, name, nl) == 0 &&
            p[nl] == ':') {
            const char *v = p + nl + 1;
            const char *stop = eol;
            while (stop + 2 < end && (stop[2] == ' ' || stop[2] == '\t'))
                stop = strstr(stop + 2, "\r\n"); /* folded: take the lines */
            size_t len = (size_t)(stop - v), o = 0;
            char *out = malloc(len + 1);
            if (!out)
                return NULL;
            for (size_t i = 0; i < len; i++)
                if (v[i] != '\r' && v[i] != '\n')
                    out[o++] = v[i];
            out[o] = '\0';
            char *s = out;
            while (*s == ' ' || *s == '\t')
                s++;
            memmove(out, s, strlen(s) + 1);
            return out;
        }
        p = eol + 2;
    }
    return NULL;
}

/* Appends the Maildir files of one subdirectory; 0 or -1. */
static int read_maildir(const struct mta *m, const char *sub, struct msgs *a)
{
    char dpath[PATH_MAX + 32], fpath[2 * PATH_MAX];
    mta_fmt(dpath, sizeof dpath, "%s/mail/inbox/%s", m->dir, sub);
    DIR *d = opendir(dpath);
    if (!d)
        return errno == ENOENT ? 0 : -1;
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.')
            continue;
        if (mta_fmt(fpath, sizeof fpath, "%s/%s", dpath, e->d_name) < 0)
            continue;
        size_t len;
        char *raw = ts_slurp(fpath, &len);
        struct mta_msg *msg = raw ? msgs_push(a) : NULL;
        if (!msg || !(msg->data = lf_to_crlf(raw, len, &msg->len)) ||
            !(msg->file = strdup(fpath))) {
            free(raw);
            rc = -1;
            break;
        }
        free(raw);
        set_body(msg);
        msg->rcpt = mta_msg_header(msg, m->kind == MTA_POSTFIX ? "Delivered-To"
                                                               : "Envelope-to");
        if (!msg->rcpt)
            msg->rcpt = strdup("");
    }
    closedir(d);
    return rc;
}

/* Appends one entry per recipient of capture/BASE.json; 0 or -1. */
static int read_node_one(const struct mta *m, const char *base, struct msgs *a)
{
    char path[2 * PATH_MAX];
    size_t len;
    mta_fmt(path, sizeof path, "%s/capture/%s.json", m->dir, base);
    char *env = ts_slurp(path, NULL);
    mta_fmt(path, sizeof path, "%s/capture/%s.parsed.json", m->dir, base);
    char *parsed = ts_slurp(path, NULL);
    mta_fmt(path, sizeof path, "%s/capture/%s.eml", m->dir, base);
    char *raw = ts_slurp(path, &len);
    json_t *j = env ? json_loads(env, 0, NULL) : NULL;
    json_t *rcpts = json_object_get(j, "rcpt_to");
    int rc = env && parsed && raw && json_is_array(rcpts) ? 0 : -1;
    for (size_t i = 0; rc == 0 && i < json_array_size(rcpts); i++) {
        struct mta_msg *msg = msgs_push(a);
        const char *r = json_string_value(json_array_get(rcpts, i));
        if (!msg) {
            rc = -1;
            break;
        }
        msg->len = len;
        msg->data = malloc(len + 1);
        msg->rcpt = strdup(r ? r : "");
        msg->envelope = strdup(env);
        msg->parsed = strdup(parsed);
        msg->file = strdup(path);
        if (!msg->data || !msg->rcpt || !msg->envelope || !msg->parsed ||
            !msg->file) {
            rc = -1;
            break;
        }
        memcpy(msg->data, raw, len + 1);
        set_body(msg);
    }
    json_decref(j);
    free(env);
    free(parsed);
    free(raw);
    return rc;
}

/* Appends every captured message of node; 0 or -1. */
static int read_node(const struct mta *m, struct msgs *a)
{
    char dpath[PATH_MAX + 16], base[NAME_MAX + 1];
    mta_fmt(dpath, sizeof dpath, "%s/capture", m->dir);
    DIR *d = opendir(dpath);
    if (!d)
        return errno == ENOENT ? 0 : -1;
    int rc = 0;
    for (struct dirent *e; rc == 0 && (e = readdir(d)) != NULL;) {
        size_t l = strlen(e->d_name);
        if (l < 6 || l - 5 >= sizeof base ||
            strcmp(e->d_name + l - 5, ".json") != 0 ||
            strstr(e->d_name, ".parsed.json"))
            continue;
        memcpy(base, e->d_name, l - 5);
        base[l - 5] = '\0';
        rc = read_node_one(m, base, a);
    }
    closedir(d);
    return rc;
}

/* Order: by file, then by recipient. */
static int msg_cmp(const void *x, const void *y)
{
    const struct mta_msg *a = x, *b = y;
    int c = strcmp(a->file, b->file);
    return c ? c : strcmp(a->rcpt, b->rcpt);
}

/* Every copy delivered so far (see mta.h). */
int mta_messages(struct mta *m, struct mta_msg **out, size_t *n)
{
    struct msgs a = { 0 };
    int rc;
    if (m->kind == MTA_NODE)
        rc = read_node(m, &a);
    else
        rc = read_maildir(m, "new", &a) < 0 ? -1 : read_maildir(m, "cur", &a);
    if (rc < 0) {
        mta_msgs_free(a.v, a.n);
        return -1;
    }
    if (a.n > 1)
        qsort(a.v, a.n, sizeof a.v[0], msg_cmp);
    *out = a.v;
    *n = a.n;
    return 0;
}

/* Frees what mta_messages returned. */
void mta_msgs_free(struct mta_msg *msgs, size_t n)
{
    for (size_t i = 0; msgs && i < n; i++) {
        free(msgs[i].rcpt);
        free(msgs[i].data);
        free(msgs[i].envelope);
        free(msgs[i].parsed);
        free(msgs[i].file);
    }
    free(msgs);
}

/* Copies delivered so far: Maildir entries, or node's recipients. */
static int count_copies(struct mta *m)
{
    if (m->kind == MTA_NODE) {
        struct mta_msg *v;
        size_t n;
        if (mta_messages(m, &v, &n) < 0)
            return -1;
        mta_msgs_free(v, n);
        return (int)n;
    }
    int count = 0;
    static const char *const sub[] = { "new", "cur" };
    for (size_t i = 0; i < 2; i++) {
        char dpath[PATH_MAX + 32];
        mta_fmt(dpath, sizeof dpath, "%s/mail/inbox/%s", m->dir, sub[i]);
        DIR *d = opendir(dpath);
        for (struct dirent *e; d && (e = readdir(d)) != NULL;)
            count += e->d_name[0] != '.';
        if (d)
            closedir(d);
    }
    return count;
}

/* Polls until n copies are there or timeout_ms passed. */
int mta_wait_messages(struct mta *m, size_t n, int timeout_ms)
{
    int seen = -1;
    for (long long end = ts_now_ms() + timeout_ms;; ts_sleep_ms(50)) {
        seen = count_copies(m);
        if (seen < 0 || (size_t)seen >= n || ts_now_ms() > end)
            return seen;
    }
}
