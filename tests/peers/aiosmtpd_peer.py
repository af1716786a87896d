#!/usr/bin/python3
"""aiosmtpd_peer.py - a real SMTP server (aiosmtpd 1.4.x) for integration tests.

Run with /usr/bin/python3 (Debian's python3-aiosmtpd):

    aiosmtpd_peer.py --ready-file F --capture-dir D [--workdir W]
        [--tls | --tls-cert C --tls-key K] [--require-starttls]
        [--auth-user U --auth-pass P] [--auth-require-tls | --no-auth-require-tls]
        [--smtputf8] [--size N] [--hostname H] [--port 0]

Listens on 127.0.0.1 (port 0 = ephemeral) with a plain asyncio server whose
protocol factory builds aiosmtpd.smtp.SMTP objects, then writes the port as
one line to the ready file (atomically) or to stdout.

STARTTLS is offered when --tls-cert/--tls-key are given, or with --tls, which
makes a self-signed pair (tests/peers/make-cert.sh) as W/cert.pem, W/key.pem.
With --auth-user/--auth-pass, AUTH PLAIN, LOGIN and XOAUTH2 (the token is
--auth-pass; a wrong one gets the RFC 7628 error challenge, then 535) are
offered and required
before MAIL; --auth-require-tls (the default when STARTTLS is configured)
hides AUTH until TLS is up.  Without --auth-user, AUTH is never advertised.

Capture, in the same layout as tests/fakes/fake_smtp.py:
    D/conn-N.bin      bytes received on connection N (decrypted after TLS)
    D/conn-N.out      reply lines sent
    D/messages.jsonl  one object per message: conn, mail_from, mail_options,
                      rcpt_to, rcpt_options, data_b64 (envelope.original_content:
                      aiosmtpd has already removed the dot-stuffing and the
                      final ".CRLF"), tls, authenticated, smtputf8
SIGTERM / SIGINT: close the server and exit 0; also exits when its parent
process dies.
"""

import argparse
import asyncio
import base64
import json
import logging
import os
import signal
import ssl
import subprocess
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

HERE = os.path.dirname(os.path.abspath(__file__))
MAKE_CERT = os.path.join(HERE, "make-cert.sh")


class Capture:
    """Unbuffered capture files (tests read them while we run)."""

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.messages = open(os.path.join(directory, "messages.jsonl"), "ab",
                             buffering=0)
        self.files = {}

    def conn(self, n):
        rx = open(os.path.join(self.dir, f"conn-{n}.bin"), "ab", buffering=0)
        tx = open(os.path.join(self.dir, f"conn-{n}.out"), "ab", buffering=0)
        return rx, tx

    def message(self, obj):
        line = json.dumps(obj, ensure_ascii=True) + "\n"
        self.messages.write(line.encode("ascii"))


class CapturingSMTP(SMTP):
    """aiosmtpd's SMTP, recording what crosses the wire.  After STARTTLS
    aiosmtpd's SSLProtocol hands decrypted bytes to this same protocol
    object, so data_received sees plaintext throughout."""

    def __init__(self, handler, conn_no, capture, **kwargs):
        super().__init__(handler, **kwargs)
        self.conn_no = conn_no
        self.rx, self.tx = capture.conn(conn_no)

    def data_received(self, data):
        self.rx.write(data)
        super().data_received(data)

    async def push(self, status):
        data = status if isinstance(status, bytes) else status.encode(
            "utf-8", errors="replace")
        self.tx.write(data + b"\r\n")
        await super().push(status)


class Handler:
    """Accepts every message and logs it to the capture."""

    def __init__(self, capture, creds):
        self.capture = capture
        self._auth_on = creds is not None
        self._creds = creds             # (user, password-or-token) or None
        self.count = 0

    async def auth_XOAUTH2(self, server, args):
        """SASL XOAUTH2: base64 of "user=U^Aauth=Bearer TOKEN^A^A".  A bad
        token gets a 334 with a base64 JSON error, which the client answers
        with an empty line; then 535."""
        if len(args) == 2:
            blob = args[1]
        else:
            blob = await server.challenge_auth("", encode_to_b64=False)
            if not isinstance(blob, bytes):
                return AuthResult(success=False, handled=False)
            blob = blob.decode("ascii", "replace")
        try:
            text = base64.b64decode(blob, validate=True).decode("utf-8")
        except Exception:
            await server.push("501 5.5.2 Can't decode base64")
            return AuthResult(success=False, handled=True)
        want = None
        if self._creds is not None:
            want = f"user={self._creds[0]}\x01auth=Bearer {self._creds[1]}\x01\x01"
        if text == want:
            return AuthResult(success=True, handled=False,
                              auth_data=LoginPassword(
                                  self._creds[0].encode(),
                                  self._creds[1].encode()))
        error = json.dumps({"status": "401", "schemes": "bearer",
                            "scope": "https://mail.example/"})
        await server.challenge_auth(error)          # client sends ""
        return AuthResult(success=False, handled=False)

    async def handle_EHLO(self, server, session, envelope, hostname,
                          responses):
        """Drop the AUTH line when no credentials are configured; keep
        everything else as aiosmtpd would send it."""
        session.host_name = hostname
        if self._auth_on:
            return responses
        return [r for r in responses if not r[4:].startswith("AUTH")]

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        data = envelope.original_content or b""
        if isinstance(data, str):
            data = data.encode("utf-8", errors="surrogateescape")
        self.capture.message({
            "conn": server.conn_no,
            "mail_from": envelope.mail_from,
            "mail_options": envelope.mail_options,
            "rcpt_to": envelope.rcpt_tos,
            "rcpt_options": envelope.rcpt_options,
            "data_b64": base64.b64encode(data).decode("ascii"),
            "tls": session.ssl is not None,
            "authenticated": bool(session.authenticated),
            "smtputf8": bool(envelope.smtp_utf8),
        })
        return f"250 2.0.0 Ok: queued as {self.count}"


def make_authenticator(user, password):
    """aiosmtpd authenticator accepting exactly user/password."""
    want = LoginPassword(user.encode("utf-8"), password.encode("utf-8"))

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login == want.login
              and auth_data.password == want.password)
        # handled=False lets aiosmtpd send its standard 535 on failure
        return AuthResult(success=ok, handled=False)
    return authenticator


def tls_context(args):
    """Server context from --tls-cert/--tls-key or a fresh self-signed pair."""
    cert, key = args.tls_cert, args.tls_key
    if args.tls and not (cert and key):
        subprocess.run([MAKE_CERT, args.workdir], check=True,
                       stdout=subprocess.DEVNULL)
        cert = os.path.join(args.workdir, "cert.pem")
        key = os.path.join(args.workdir, "key.pem")
    if not (cert and key):
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def write_ready(path, port):
    if not path:
        print(port, flush=True)
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.rename(tmp, path)


def parse_args():
    ap = argparse.ArgumentParser(description="aiosmtpd test peer")
    ap.add_argument("--ready-file")
    ap.add_argument("--capture-dir", default="capture")
    ap.add_argument("--workdir", default=".")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--hostname", default="aiosmtpd.test")
    ap.add_argument("--tls", action="store_true",
                    help="offer STARTTLS with a self-signed cert in workdir")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--require-starttls", action="store_true")
    ap.add_argument("--implicit-tls", action="store_true",
                    help="TLS from the first byte (port 465 style), no STARTTLS")
    ap.add_argument("--auth-user")
    ap.add_argument("--auth-pass", default="")
    ap.add_argument("--auth-require-tls", dest="auth_require_tls",
                    action="store_true", default=None)
    ap.add_argument("--no-auth-require-tls", dest="auth_require_tls",
                    action="store_false")
    ap.add_argument("--smtputf8", action="store_true")
    ap.add_argument("--size", type=int, default=10485760,
                    help="SIZE limit advertised and enforced (0 = none)")
    return ap.parse_args()


async def serve(args):
    loop = asyncio.get_running_loop()
    capture = Capture(args.capture_dir)
    ctx = tls_context(args)
    auth_configured = args.auth_user is not None
    handler = Handler(capture, (args.auth_user, args.auth_pass)
                      if auth_configured else None)
    require_tls = args.auth_require_tls
    if require_tls is None:
        require_tls = ctx is not None
    listen_ssl = ctx if args.implicit_tls else None
    if args.implicit_tls:
        ctx = None                      # no STARTTLS on a TLS listener
    kwargs = dict(hostname=args.hostname, enable_SMTPUTF8=args.smtputf8,
                  data_size_limit=args.size or None, tls_context=ctx,
                  require_starttls=args.require_starttls and ctx is not None,
                  auth_require_tls=require_tls, loop=loop)
    if auth_configured:
        kwargs["auth_required"] = True
        kwargs["authenticator"] = make_authenticator(args.auth_user,
                                                     args.auth_pass)
    counter = [0]

    def factory():
        counter[0] += 1
        return CapturingSMTP(handler, counter[0], capture, **kwargs)

    server = await loop.create_server(factory, host="127.0.0.1",
                                      port=args.port, ssl=listen_ssl)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(1))
    write_ready(args.ready_file, server.sockets[0].getsockname()[1])
    parent = os.getppid()
    while not stop.done():
        if os.getppid() != parent:   # the test died without stopping us
            break
        await asyncio.wait([stop], timeout=0.5)
    server.close()


def main():
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # aiosmtpd warns about its own use of Session.login_data on every AUTH
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    args = parse_args()
    asyncio.run(serve(args))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # open client sessions must not delay the exit


if __name__ == "__main__":
    main()
