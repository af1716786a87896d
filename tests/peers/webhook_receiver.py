#!/usr/bin/python3
"""webhook_receiver.py - a webhook receiver for the tests (127.0.0.1 only).

Every POST (any path but /_mode and /_stats) is checked with verify()
below, the code README.md shows, against the secret of --secret-file, and
appended as one JSON line to --log: {"id", "type", "valid", "status",
"body"}, and "valid_other": the same check under --other-secret-file when
given (a test gives the receiver a wrong secret and the right one there).  What it answers is its mode, set by --mode or by a POST to /_mode
(the body is the mode):
  ok          200
  fail:N      500 to the first N deliveries of each webhook-id, then 200
  gone        410
  redirect    307 to /elsewhere (a POST there is logged like any other)
  slow:S      sleeps S seconds, then 200
GET /_stats answers {"received", "valid", "invalid", "ids": {id: count}}
from the log, so counts survive a restart on the same log.

  webhook_receiver.py --port P (0: a free one) --port-file F
                      --secret-file S --log L [--mode M]
                      [--other-secret-file S2] [--tls-dir D]
With --tls-dir it speaks HTTPS with D/cert.pem and D/key.pem
(tests/peers/make-cert.sh).
The port is written to --port-file once listening.

  webhook_receiver.py --check-readme README.md
checks that README.md's verify() is this file's, character for character,
and that it accepts README.md's example request under its example secret;
exits 0, or 1 saying what differs.
"""
import argparse
import base64
import hashlib
import hmac
import inspect
import json
import os
import re
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


# --- the README's receiver code (keep the two the same) ---
def verify(secret, headers, body, tolerance=300):
    """True when body (bytes) carries a valid Standard Webhooks signature."""
    key = (base64.b64decode(secret[len("whsec_"):])
           if secret.startswith("whsec_") else secret.encode())
    msg_id = headers["webhook-id"]
    ts = headers["webhook-timestamp"]
    if abs(time.time() - int(ts)) > tolerance:
        return False
    signed = f"{msg_id}.{ts}.".encode() + body
    mac = hmac.new(key, signed, hashlib.sha256).digest()
    want = "v1," + base64.b64encode(mac).decode()
    return any(hmac.compare_digest(want, sig)
               for sig in headers["webhook-signature"].split())
# --- end of the README's code ---


def checked(secret, headers, body):
    """verify(), with a missing or malformed header as not valid."""
    try:
        return verify(secret, headers, body)
    except (KeyError, ValueError):
        return False


def read_secret(path):
    with open(path) as f:
        return f.readline().strip()


class State:
    def __init__(self, secret, log, mode, other=None):
        self.secret = secret
        self.other = other
        self.log = log
        self.mode = mode
        self.mu = threading.Lock()
        self.tries = {}             # webhook-id -> POSTs seen by this run

    def record(self, line):
        with self.mu, open(self.log, "a") as f:
            f.write(json.dumps(line) + "\n")

    def stats(self):
        out = {"received": 0, "valid": 0, "invalid": 0, "ids": {}}
        if os.path.exists(self.log):
            with self.mu, open(self.log) as f:
                for raw in f:
                    e = json.loads(raw)
                    out["received"] += 1
                    out["valid" if e["valid"] else "invalid"] += 1
                    out["ids"][e["id"]] = out["ids"].get(e["id"], 0) + 1
        return out


def make_handler(state):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def reply(self, status, body=b""):
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/_stats":
                self.reply(200, json.dumps(state.stats()).encode())
            else:
                self.reply(404)

        def answer(self, msg_id):
            mode = state.mode
            with state.mu:
                state.tries[msg_id] = state.tries.get(msg_id, 0) + 1
                n = state.tries[msg_id]
            if mode == "gone":
                return 410
            if mode == "redirect":
                return 307
            if mode.startswith("fail:"):
                return 500 if n <= int(mode[5:]) else 200
            if mode.startswith("slow:"):
                time.sleep(float(mode[5:]))
            return 200

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length",
                                                        "0")))
            if self.path == "/_mode":
                state.mode = body.decode().strip()
                self.reply(200)
                return
            hdrs = {k.lower(): v for k, v in self.headers.items()}
            valid = checked(state.secret, hdrs, body)
            other = checked(state.other, hdrs, body) if state.other else None
            msg_id = hdrs.get("webhook-id", "")
            status = self.answer(msg_id)
            try:
                doc = json.loads(body)
            except ValueError:
                doc = None
            state.record({"id": msg_id, "valid": valid, "status": status,
                          "path": self.path,
                          "valid_other": other,
                          "type": (doc or {}).get("type"), "body": doc,
                          "at": time.time()})
            if status == 307:
                self.send_response(307)
                self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.reply(status)

    return Handler


def check_readme(path):
    """0 when README's verify() is ours and accepts README's example."""
    with open(path) as f:
        text = f.read()
    code = re.search(r"```python\n.*?\n\n(def verify\(.*?)```", text, re.S)
    if code is None or code.group(1) != inspect.getsource(verify):
        print("README.md's verify() is not tests/peers/webhook_receiver.py's")
        return 1
    req = re.search(r"```\nPOST /hook HTTP/1.1\n(.*?)\n\n(.*?)\n```", text,
                    re.S)
    secret = re.search(r"example secret\s+`(whsec_[A-Za-z0-9+/=]+)`", text)
    if req is None or secret is None:
        print("README.md's example request or secret is missing")
        return 1
    headers = dict(line.split(": ", 1) for line in req.group(1).split("\n"))
    if not verify(secret.group(1), headers, req.group(2).encode(),
                  tolerance=float("inf")):
        print("README.md's example request does not verify")
        return 1
    print("ok")
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--port-file")
    ap.add_argument("--secret-file")
    ap.add_argument("--log")
    ap.add_argument("--mode", default="ok")
    ap.add_argument("--other-secret-file")
    ap.add_argument("--check-readme")
    ap.add_argument("--tls-dir")
    a = ap.parse_args()
    if a.check_readme:
        sys.exit(check_readme(a.check_readme))
    state = State(read_secret(a.secret_file), a.log, a.mode,
                  read_secret(a.other_secret_file)
                  if a.other_secret_file else None)
    ThreadingHTTPServer.allow_reuse_address = True
    ThreadingHTTPServer.daemon_threads = True
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), make_handler(state))
    if a.tls_dir:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(a.tls_dir, "cert.pem"),
                            os.path.join(a.tls_dir, "key.pem"))
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(tmp, a.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
