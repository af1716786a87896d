/*
 * peer_msg.c - the messages a peer captured (see peer.h): messages.jsonl
 * of the fake and aiosmtpd parsed with Jansson, the sink's -D dump split
 * on SINK_MARK and parsed by hand; peer_wait_messages polls for them.
 * Errors: -1.  Thread-safety: none needed beyond one peer per thread.
 */
#include "tests/support/peer.h"
#include "tests/support/peer_internal.h"
#include "tests/support/tsupport.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- messages -------------------------------------------------------- */

/* Value of one base64 digit, -1 for anything else. */
static int b64_val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Decode base64 (padding optional) into a NUL-terminated buffer. */
static int b64_decode(const char *in, unsigned char **out, size_t *len)
{
    size_t n = strlen(in), o = 0;
    unsigned acc = 0;
    int bits = 0;
    unsigned char *buf = malloc(n / 4 * 3 + 4);
    if (!buf)
        return -1;
    for (size_t i = 0; i < n && in[i] != '='; i++) {
        int v = b64_val((unsigned char)in[i]);
        if (v < 0) {
            free(buf);
            return -1;
        }
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    buf[o] = '\0';
    *out = buf;
    *len = o;
    return 0;
}

/* A new zeroed slot at the end of *v; NULL on no memory. */
static struct peer_msg *msg_push(struct peer_msg **v, size_t *n, size_t *cap)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        struct peer_msg *nv = realloc(*v, nc * sizeof *nv);
        if (!nv)
            return NULL;
        *v = nv;
        *cap = nc;
    }
    struct peer_msg *m = &(*v)[(*n)++];
    memset(m, 0, sizeof *m);
    m->tls = m->auth = -1;
    return m;
}

/* Free what m holds (not m itself). */
static void msg_clear(struct peer_msg *m)
{
    free(m->mail_from);
    free(m->mail_params);
    for (size_t k = 0; k < m->nrcpt; k++)
        free(m->rcpt_to[k]);
    free(m->rcpt_to);
    free(m->data);
    memset(m, 0, sizeof *m);
}

/* Add a copy of s[0..len) to m's recipients; 0 or -1. */
static int msg_add_rcpt(struct peer_msg *m, const char *s, size_t len)
{
    char **v = realloc(m->rcpt_to, (m->nrcpt + 1) * sizeof *v);
    if (!v)
        return -1;
    m->rcpt_to = v;
    if (!(v[m->nrcpt] = strndup(s, len)))
        return -1;
    m->nrcpt++;
    return 0;
}

/* A JSON string member, or "" when absent or null; copied. */
static char *json_str_dup(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return strdup(s ? s : "");
}

/* MAIL parameters from "mail_params" (fake) or "mail_options" (aiosmtpd). */
static char *json_params(json_t *o)
{
    json_t *arr = json_object_get(o, "mail_options");
    if (!json_is_array(arr))
        return json_str_dup(o, "mail_params");
    size_t total = 1, i;
    json_t *v;
    json_array_foreach(arr, i, v)
        total += strlen(json_string_value(v) ? json_string_value(v) : "") + 1;
    char *s = calloc(1, total);
    if (!s)
        return NULL;
    json_array_foreach(arr, i, v)
    {
        if (i)
            strncat(s, " ", total - strlen(s) - 1);
        strncat(s, json_string_value(v) ? json_string_value(v) : "",
                total - strlen(s) - 1);
    }
    return s;
}

/* Fill m from one messages.jsonl object; 0 or -1. */
static int msg_from_json(json_t *o, struct peer_msg *m)
{
    json_t *rcpts = json_object_get(o, "rcpt_to"), *v;
    const char *b64 = json_string_value(json_object_get(o, "data_b64"));
    size_t i;

    m->conn = (int)json_integer_value(json_object_get(o, "conn"));
    m->mail_from = json_str_dup(o, "mail_from");
    m->mail_params = json_params(o);
    if (!m->mail_from || !m->mail_params || !b64 ||
        b64_decode(b64, &m->data, &m->len) < 0)
        return -1;
    json_array_foreach(rcpts, i, v)
    {
        const char *r = json_string_value(v);
        if (!r || msg_add_rcpt(m, r, strlen(r)) < 0)
            return -1;
    }
    if (json_is_boolean(json_object_get(o, "tls")))
        m->tls = json_is_true(json_object_get(o, "tls"));
    if (json_is_boolean(json_object_get(o, "authenticated")))
        m->auth = json_is_true(json_object_get(o, "authenticated"));
    return 0;
}

/* Parse DIR/capture/messages.jsonl; complete lines only. */
static int read_jsonl(struct peer *p, struct peer_msg **out, size_t *n)
{
    char path[PATH_MAX + 32];
    size_t cap = 0;
    peer_fmt(path, sizeof path, "%s/capture/messages.jsonl", p->dir);
    char *txt = ts_slurp(path, NULL);
    if (!txt)
        return 0; /* nothing captured yet */
    for (char *line = txt, *nl; (nl = strchr(line, '\n')) != NULL;
         line = nl + 1) {
        json_error_t err;
        json_t *o = json_loadb(line, (size_t)(nl - line), 0, &err);
        struct peer_msg *m = o ? msg_push(out, n, &cap) : NULL;
        int bad = !m || msg_from_json(o, m) < 0;
        json_decref(o);
        if (bad) {
            peer_say("%s: bad line: %s", path, o ? "fields" : err.text);
            free(txt);
            return -1;
        }
    }
    free(txt);
    return 0;
}

/* "<a@b> SIZE=1" -> addr "a@b", params "SIZE=1" (either may be NULL). */
static int split_path(const char *s, size_t len, char **addr, char **params)
{
    const char *end = s + len, *a = s, *ae, *rest;
    if (len && *s == '<') {
        a = s + 1;
        ae = memchr(a, '>', (size_t)(end - a));
        if (!ae)
            ae = end;
        rest = ae < end ? ae + 1 : end;
    } else {
        ae = memchr(s, ' ', len);
        if (!ae)
            ae = end;
        rest = ae;
    }
    while (rest < end && *rest == ' ')
        rest++;
    if (addr && !(*addr = strndup(a, (size_t)(ae - a))))
        return -1;
    if (params && !(*params = strndup(rest, (size_t)(end - rest))))
        return -1;
    return 0;
}

/* The sink's body (CRs dropped, dots un-stuffed, one extra LF at the end):
 * drop that LF and turn each LF into CRLF. */
static int sink_body(struct peer_msg *m, const char *s, size_t len)
{
    size_t nl = 0;
    if (len && s[len - 1] == '\n')
        len--;
    for (size_t i = 0; i < len; i++)
        nl += s[i] == '\n';
    if (!(m->data = malloc(len + nl + 1)))
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '\n')
            m->data[m->len++] = '\r';
        m->data[m->len++] = (unsigned char)s[i];
    }
    m->data[m->len] = '\0';
    return 0;
}

/* One dump block (after the marker): X- records, Received (3 lines), body. */
static int sink_block(struct peer_msg *m, const char *s, size_t len)
{
    const char *end = s + len;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        if (!nl)
            return -1;
        size_t ll = (size_t)(nl - s);
        if (ll > 13 && memcmp(s, "X-Mail-Args: ", 13) == 0) {
            if (split_path(s + 13, ll - 13, &m->mail_from, &m->mail_params) < 0)
                return -1;
        } else if (ll > 13 && memcmp(s, "X-Rcpt-Args: ", 13) == 0) {
            char *r = NULL;
            int bad = split_path(s + 13, ll - 13, &r, NULL) < 0 ||
                      msg_add_rcpt(m, r, strlen(r)) < 0;
            free(r);
            if (bad)
                return -1;
        } else if (ll >= 10 && memcmp(s, "Received: ", 10) == 0) {
            s = nl + 1;
            for (int k = 0; k < 2 && s < end && *s == '\t'; k++) {
                nl = memchr(s, '\n', (size_t)(end - s));
                s = nl ? nl + 1 : end;
            }
            if (!m->mail_from && !(m->mail_from = strdup("")))
                return -1;
            if (!m->mail_params && !(m->mail_params = strdup("")))
                return -1;
            return sink_body(m, s, (size_t)(end - s));
        }
        s = nl + 1;
    }
    return -1;
}

/* Parse DIR/sink/dump, split on SINK_MARK. */
static int read_sink(struct peer *p, struct peer_msg **out, size_t *n)
{
    char path[PATH_MAX + 32];
    size_t len, cap = 0, mlen = strlen(SINK_MARK);
    peer_fmt(path, sizeof path, "%s/sink/dump", p->dir);
    char *txt = ts_slurp(path, &len);
    if (!txt)
        return 0;
    char *s = txt, *end = txt + len;
    while (s < end) {
        if ((size_t)(end - s) < mlen || memcmp(s, SINK_MARK, mlen) != 0)
            break;
        s += mlen;
        char *next = memmem(s, (size_t)(end - s), SINK_MARK, mlen);
        if (!next)
            next = end;
        struct peer_msg *m = msg_push(out, n, &cap);
        if (!m || sink_block(m, s, (size_t)(next - s)) < 0) {
            if (m && next == end) { /* last block still being written */
                msg_clear(m);
                (*n)--;
                break;
            }
            peer_say("%s: cannot parse message %zu", path, *n);
            free(txt);
            return -1;
        }
        s = next;
    }
    free(txt);
    return 0;
}

/* Messages from messages.jsonl or the sink dump. */
int peer_messages(struct peer *p, struct peer_msg **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    int r = p->kind == PEER_SINK ? read_sink(p, out, n) : read_jsonl(p, out, n);
    if (r < 0) {
        peer_msgs_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    return r;
}

/* Free a peer_messages array. */
void peer_msgs_free(struct peer_msg *msgs, size_t n)
{
    if (!msgs)
        return;
    for (size_t i = 0; i < n; i++)
        msg_clear(&msgs[i]);
    free(msgs);
}

/* Poll peer_messages until n are there or the time is up. */
int peer_wait_messages(struct peer *p, size_t n, int timeout_ms)
{
    long long end = ts_now_ms() + timeout_ms;
    for (;;) {
        struct peer_msg *m;
        size_t got;
        if (peer_messages(p, &m, &got) < 0)
            return -1;
        peer_msgs_free(m, got);
        if (got >= n || ts_now_ms() >= end)
            return (int)got;
        ts_sleep_ms(POLL_MS);
    }
}
