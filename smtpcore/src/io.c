/*
 * io.c - the byte transport under a connection: plain TCP or GnuTLS, with
 * a deadline on every wait (poll), a bounded line reader and write-all.
 *
 * Lines must end in CRLF: a bare LF, a NUL or a line longer than
 * SMTP_MAX_REPLY_LINE is a protocol error (SMTP-NOTES 2, RFC 5321 2.3.8).
 * Errors come back as negative smtp_kind values; nothing is logged.
 * A struct smtp__io belongs to its connection's thread.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* Monotonic milliseconds, for deadlines. */
int64_t smtp__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for events until deadline: 1 ready, 0 timed out, -1 error. */
static int io_wait(int fd, short events, int64_t deadline);

/* Waits to read (write = 0) or write (1) on fd; as io_wait. */
int smtp__io_wait_fd(int fd, int write, int64_t deadline)
{
    return io_wait(fd, write ? POLLOUT : POLLIN, deadline);
}

static int io_wait(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - smtp__now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = { .fd = fd, .events = events, .revents = 0 };
        int n = poll(&p, 1, left > 60000 ? 60000 : (int)left);
        if (n > 0)
            return 1;
        if (n < 0 && errno != EINTR)
            return -1;
    }
}

/* One receive into the read buffer: >0 bytes, 0 EOF, or negative kind. */
static int io_fill(struct smtp__io *io, int64_t deadline, int *err)
{
    if (io->rpos == io->rlen)
        io->rpos = io->rlen = 0;
    if (io->rpos > 0 && io->rlen == sizeof io->rbuf) {
        memmove(io->rbuf, io->rbuf + io->rpos, io->rlen - io->rpos);
        io->rlen -= io->rpos;
        io->rpos = 0;
    }
    char *dst = io->rbuf + io->rlen;
    size_t room = sizeof io->rbuf - io->rlen;
    for (;;) {
        ssize_t n;
        if (io->tls != NULL && gnutls_record_check_pending(io->tls) > 0) {
            n = gnutls_record_recv(io->tls, dst, room);
        } else {
            int w = io_wait(io->fd, POLLIN, deadline);
            if (w == 0)
                return SMTP_ERR_TIMEOUT;
            if (w < 0) {
                *err = errno;
                return SMTP_ERR_CONN;
            }
            n = io->tls != NULL ? gnutls_record_recv(io->tls, dst, room)
                                : recv(io->fd, dst, room, 0);
        }
        if (io->tls != NULL) {
            if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
                continue;
            if (n == GNUTLS_E_PREMATURE_TERMINATION)
                return 0;
            if (n < 0) {
                *err = EPROTO;
                return SMTP_ERR_TLS;
            }
        } else if (n < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            *err = errno;
            return SMTP_ERR_CONN;
        }
        io->rlen += (size_t)n;
        return (int)(n > 0 ? 1 : 0);
    }
}

/* Reads one CRLF line (without the CRLF) into line[SMTP_MAX_REPLY_LINE+1]. */
int smtp__io_read_line(struct smtp__io *io, char *line, size_t *len,
                       int64_t deadline, int *err, const char **why)
{
    size_t n = 0;
    *err = 0;
    for (;;) {
        while (io->rpos < io->rlen) {
            char c = io->rbuf[io->rpos++];
            if (c == '\n') {
                if (n == 0 || line[n - 1] != '\r') {
                    *why = "bare LF in reply";
                    return SMTP_ERR_PROTO;
                }
                line[--n] = '\0';
                *len = n;
                return SMTP_OK;
            }
            if (c == '\0') {
                *why = "NUL byte in reply";
                return SMTP_ERR_PROTO;
            }
            if (n > 0 && line[n - 1] == '\r') {
                *why = "bare CR in reply";
                return SMTP_ERR_PROTO;
            }
            if (n >= SMTP_MAX_REPLY_LINE) {
                *why = "reply line too long";
                return SMTP_ERR_PROTO;
            }
            line[n++] = c;
        }
        int r = io_fill(io, deadline, err);
        if (r == 0) {
            *why = "connection closed by server";
            return SMTP_ERR_CONN;
        }
        if (r < 0) {
            *why = r == SMTP_ERR_TIMEOUT ? "timed out waiting for reply"
                                         : "receive failed";
            return r;
        }
    }
}

/* Writes all bytes before the deadline; *done (may be NULL) counts the
   bytes handed to the transport, also when the write fails. */
int smtp__io_write(struct smtp__io *io, const void *p, size_t n,
                   int64_t deadline, int *err, size_t *done)
{
    const char *s = p;
    *err = 0;
    if (done != NULL)
        *done = 0;
    while (n > 0) {
        ssize_t w;
        if (io->tls != NULL)
            w = gnutls_record_send(io->tls, s, n);
        else
            w = send(io->fd, s, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            s += w;
            n -= (size_t)w;
            if (done != NULL)
                *done += (size_t)w;
            continue;
        }
        int again = io->tls != NULL
                        ? (w == GNUTLS_E_AGAIN || w == GNUTLS_E_INTERRUPTED)
                        : (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
                                     errno == EINTR));
        if (!again) {
            *err = io->tls != NULL ? EPIPE : errno;
            return io->tls != NULL && w != GNUTLS_E_PUSH_ERROR ? SMTP_ERR_TLS
                                                               : SMTP_ERR_CONN;
        }
        int r = io_wait(io->fd, POLLOUT, deadline);
        if (r == 0)
            return SMTP_ERR_TIMEOUT;
        if (r < 0) {
            *err = errno;
            return SMTP_ERR_CONN;
        }
    }
    return SMTP_OK;
}

/* 1 when bytes wait unread (in our buffer or in TLS records). */
int smtp__io_pending(const struct smtp__io *io)
{
    if (io->rpos < io->rlen)
        return 1;
    return io->tls != NULL && gnutls_record_check_pending(io->tls) > 0;
}

/* 1 when bytes nobody asked for are here: unread in our buffer or in TLS
   records, or waiting in the socket right now.  The end of the stream is
   not bytes.  Over TLS what arrived is decrypted into the buffer (a TLS 1.3
   session ticket carries no data and counts as nothing). */
int smtp__io_unasked(struct smtp__io *io)
{
    if (smtp__io_pending(io))
        return 1;
    if (io->fd < 0)
        return 0;
    struct pollfd p = { .fd = io->fd, .events = POLLIN, .revents = 0 };
    if (poll(&p, 1, 0) <= 0 || !(p.revents & POLLIN))
        return 0;
    if (io->tls == NULL) {
        char b;
        return recv(io->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
    }
    if (io->rpos == io->rlen)
        io->rpos = io->rlen = 0;
    if (io->rlen == sizeof io->rbuf)
        return 1;
    ssize_t n = gnutls_record_recv(io->tls, io->rbuf + io->rlen,
                                   sizeof io->rbuf - io->rlen);
    if (n <= 0)
        return 0;
    io->rlen += (size_t)n;
    return 1;
}

/* Forgets every buffered byte (after STARTTLS, RFC 3207 4.2). */
void smtp__io_discard(struct smtp__io *io)
{
    io->rpos = io->rlen = 0;
}

/* Closes the socket and ends TLS; idempotent. */
void smtp__io_close(struct smtp__io *io)
{
    if (io->tls != NULL) {
        gnutls_deinit(io->tls);
        io->tls = NULL;
    }
    if (io->cred != NULL) {
        gnutls_certificate_free_credentials(io->cred);
        io->cred = NULL;
    }
    if (io->fd >= 0) {
        close(io->fd);
        io->fd = -1;
    }
    io->rpos = io->rlen = 0;
}
