/*
 * api/healthcheck.c - `mailpool healthcheck` (the image's HEALTHCHECK):
 * GET /healthz on the configured http.listen, over HTTPS when
 * http.tls_cert_file is set.  A wildcard listen address (0.0.0.0, ::) is
 * asked on the loopback.  5 s send and receive timeouts.
 *
 * Public (api.h): api_healthcheck.
 *
 * The TLS session does not verify the certificate: the check asks this
 * service's own listener by address, which its certificate rarely names;
 * it proves the listener answers, not who it is.
 *
 * Errors: -1 when no connection, no handshake, or no "200" status line.
 * Threads: reentrant; no state.
 */
#include <gnutls/gnutls.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "api/api.h"
#include "util/hostport.h"

static const char hc_req[] = "GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n";

/* 1 when buf (n bytes) starts with an HTTP status line of 200. */
static int hc_is_200(const char *buf, ssize_t n)
{
    return n > 12 && strncmp(buf, "HTTP/1.", 7) == 0 &&
           strncmp(buf + 8, " 200", 4) == 0;
}

/* A connected TCP socket to http.listen (parsed), with 5 s timeouts; -1 on
   failure. */
static int hc_connect(const struct util_hostport *hp)
{
    char port[8];
    snprintf(port, sizeof port, "%d", hp->port);
    const char *host = hp->host;
    if (host[0] == '\0' || strcmp(host, "0.0.0.0") == 0)
        host = "127.0.0.1";
    else if (strcmp(host, "::") == 0)
        host = "::1";
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
    if (getaddrinfo(host, port, &hints, &ai) != 0)
        return -1;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = { .tv_sec = 5 };
    if (fd >= 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(ai);
    return fd;
}

/* The request in plain HTTP on fd; 0 on a 200. */
static int hc_plain(int fd)
{
    char buf[64] = "";
    if (write(fd, hc_req, sizeof hc_req - 1) != (ssize_t)(sizeof hc_req - 1))
        return -1;
    return hc_is_200(buf, read(fd, buf, sizeof buf - 1)) ? 0 : -1;
}

/* The request over TLS on fd (no certificate verification, see top);
   0 on a 200. */
static int hc_tls(int fd)
{
    gnutls_session_t s = NULL;
    gnutls_certificate_credentials_t cred = NULL;
    char buf[64] = "";
    int ok = -1, rc;
    if (gnutls_certificate_allocate_credentials(&cred) < 0)
        return -1;
    if (gnutls_init(&s, GNUTLS_CLIENT) < 0 ||
        gnutls_set_default_priority(s) < 0 ||
        gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred) < 0)
        goto out;
    gnutls_transport_set_int(s, fd);
    gnutls_handshake_set_timeout(s, 5000);
    do
        rc = gnutls_handshake(s);
    while (rc < 0 && !gnutls_error_is_fatal(rc));
    if (rc < 0 || gnutls_record_send(s, hc_req, sizeof hc_req - 1) !=
                      (ssize_t)(sizeof hc_req - 1))
        goto out;
    ok = hc_is_200(buf, gnutls_record_recv(s, buf, sizeof buf - 1)) ? 0 : -1;
    gnutls_bye(s, GNUTLS_SHUT_WR);
out:
    if (s != NULL)
        gnutls_deinit(s);
    gnutls_certificate_free_credentials(cred);
    return ok;
}

int api_healthcheck(const struct cfg *cfg)
{
    int fd = hc_connect(&cfg->http.listen_addr);
    if (fd < 0)
        return -1;
    int rc = cfg->http.tls_cert_file != NULL ? hc_tls(fd) : hc_plain(fd);
    close(fd);
    return rc;
}
