/*
 * tls.c - the TLS handshake for STARTTLS (RFC 3207) and implicit TLS
 * (RFC 8314), over GnuTLS.
 *
 * The certificate is verified against the system trust store (or ca_file)
 * and the server name, unless the caller asked for the explicitly named
 * insecure mode.  Failures return -1 with a sentence naming the cause;
 * the caller decides whether that ends the session (it always does in
 * "required" and "implicit" modes: no silent downgrade).
 * GnuTLS's global init is done by the library itself on first use (it is
 * reference-counted and thread-safe since GnuTLS 3.3).
 */
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* Loads trust and client credentials; -1 with why. */
static int tls_creds(struct smtp__io *io, const struct smtp__tls_opts *o,
                     char *why, size_t whylen)
{
    int r = gnutls_certificate_allocate_credentials(&io->cred);
    if (r < 0) {
        snprintf(why, whylen, "TLS credentials: %s", gnutls_strerror(r));
        return -1;
    }
    if (o->ca_file != NULL && o->ca_file[0] != '\0')
        r = gnutls_certificate_set_x509_trust_file(io->cred, o->ca_file,
                                                   GNUTLS_X509_FMT_PEM);
    else
        r = gnutls_certificate_set_x509_system_trust(io->cred);
    if (r < 0 && !o->insecure) {
        snprintf(why, whylen, "cannot load CA certificates%s%s: %s",
                 o->ca_file ? " from " : "", o->ca_file ? o->ca_file : "",
                 gnutls_strerror(r));
        return -1;
    }
    if (o->cert_file != NULL && o->cert_file[0] != '\0') {
        r = gnutls_certificate_set_x509_key_file(
            io->cred, o->cert_file, o->key_file ? o->key_file : o->cert_file,
            GNUTLS_X509_FMT_PEM);
        if (r < 0) {
            snprintf(why, whylen, "client certificate %s: %s", o->cert_file,
                     gnutls_strerror(r));
            return -1;
        }
    }
    return 0;
}

/* Names why verification failed, from GnuTLS's status bits. */
static void tls_verify_why(gnutls_session_t s, char *why, size_t whylen)
{
    unsigned status = gnutls_session_get_verify_cert_status(s);
    gnutls_datum_t out = { NULL, 0 };
    if (status != 0 && gnutls_certificate_verification_status_print(
                           status, GNUTLS_CRT_X509, &out, 0) == 0) {
        snprintf(why, whylen, "certificate verification failed: %s",
                 (const char *)out.data);
        gnutls_free(out.data);
        return;
    }
    snprintf(why, whylen, "certificate verification failed");
}

/* Runs the handshake on io->fd (non-blocking) before deadline. */
int smtp__tls_start(struct smtp__io *io, const struct smtp__tls_opts *o,
                    int64_t deadline, char *why, size_t whylen)
{
    if (tls_creds(io, o, why, whylen) < 0)
        return -1;
    int r = gnutls_init(&io->tls, GNUTLS_CLIENT | GNUTLS_NONBLOCK);
    if (r < 0) {
        io->tls = NULL;
        snprintf(why, whylen, "TLS init: %s", gnutls_strerror(r));
        return -1;
    }
    gnutls_set_default_priority(io->tls);
    gnutls_credentials_set(io->tls, GNUTLS_CRD_CERTIFICATE, io->cred);
    const char *name = o->server_name;
    if (name != NULL && name[0] != '\0')
        gnutls_server_name_set(io->tls, GNUTLS_NAME_DNS, name, strlen(name));
    if (!o->insecure)
        gnutls_session_set_verify_cert(io->tls, name, 0);
    gnutls_transport_set_int(io->tls, io->fd);
    gnutls_handshake_set_timeout(io->tls, 0);
    for (;;) {
        r = gnutls_handshake(io->tls);
        if (r == 0)
            return 0;
        if (r == GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR) {
            tls_verify_why(io->tls, why, whylen);
            return -1;
        }
        if (r != GNUTLS_E_AGAIN && r != GNUTLS_E_INTERRUPTED) {
            snprintf(why, whylen, "TLS handshake failed: %s",
                     gnutls_strerror(r));
            return -1;
        }
        int64_t left = deadline - smtp__now_ms();
        if (left <= 0) {
            snprintf(why, whylen, "TLS handshake timed out");
            return -1;
        }
        int dir = gnutls_record_get_direction(io->tls);
        if (smtp__io_wait_fd(io->fd, dir, deadline) <= 0) {
            snprintf(why, whylen, "TLS handshake timed out");
            return -1;
        }
    }
}
