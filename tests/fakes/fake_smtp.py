#!/usr/bin/python3
"""fake_smtp.py - mailpool's scriptable fake SMTP server (stdlib only).

Run with /usr/bin/python3:

    fake_smtp.py --script S.json [--ready-file F] [--capture-dir D]
                 [--workdir W] [--port 0]

It listens on 127.0.0.1 (port 0 = ephemeral), then writes the port as one
line to the ready file (atomically, via rename) or to stdout.  Each client
connection is served by its own thread, with blocking sockets, so delays and
hangs of one connection never stall another.

By default it is a correct RFC 5321 server (EHLO/HELO, MAIL, RCPT, DATA, RSET,
NOOP, VRFY, EXPN, HELP, QUIT, optional STARTTLS) that takes pipelined input.
The JSON script bends that behaviour; its format is documented in
tests/README.md and summarised at the top of class Script below.

Capture (all files opened unbuffered, so tests can read while it runs):
    D/conn-N.bin      every byte received on connection N (N from 1); after
                      STARTTLS the decrypted bytes (the TLS records are not
                      kept)
    D/conn-N.out      every byte sent on connection N (plaintext likewise)
    D/messages.jsonl  one object per accepted message: conn, mail_from,
                      mail_params, rcpt_to, data_b64 (the DATA bytes exactly as
                      received, still dot-stuffed, up to and including the
                      CRLF before the final ".CRLF"), tls, helo, reply
    D/rejected.jsonl  same, for a message whose final reply was not 2xx or
                      that got no reply at all
    D/events.jsonl    connect / close / tls / rule events, for debugging

SIGTERM or SIGINT: close every socket and exit 0.  It also exits when its
parent process dies (a crashed test must not leave it running).
"""

import argparse
import base64
import json
import os
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MAKE_CERT = os.path.join(HERE, "..", "peers", "make-cert.sh")

DEFAULT_EXTENSIONS = ["PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES",
                      "SIZE 10485760"]
MAX_LINE = 1 << 20            # a command line longer than this is cut off
DEFAULT_FLOOD_CAP = 16 << 20  # bytes sent by a "flood" rule at most
RECV_SIZE = 65536


class Stop(Exception):
    """Raised inside a connection thread to end that connection."""


# --------------------------------------------------------------------------
# Script: the parsed JSON, rule matching and reply formatting
# --------------------------------------------------------------------------

class Rule:
    """One entry of script["rules"].

    Keys: match (regex, re.search on the command line without CRLF, or on the
    pseudo-commands GREETING and DOT), reply, raw, raw_b64, repeat, prefix,
    suffix, flood, max_bytes, bare_lf, inject, action, conn, after_n, times,
    in_data_bytes.
    """

    KEYS = {"match", "reply", "raw", "raw_b64", "repeat", "prefix", "suffix",
            "flood", "max_bytes", "bare_lf", "inject", "action", "conn",
            "after_n", "times", "fail_handshake", "in_data_bytes", "comment"}
    ACTIONS = {"close", "hang", "drop", "reset", "noreply", "tls_fail",
               "drop_in_data", "reset_in_data"}

    def __init__(self, index, spec):
        self.index = index
        self.spec = spec
        unknown = set(spec) - self.KEYS
        if unknown:
            raise ValueError(f"rule {index}: unknown keys {sorted(unknown)}")
        self.regex = re.compile(spec.get("match", ".*"))
        conn = spec.get("conn")
        if conn is None:
            self.conns = None
        elif isinstance(conn, list):
            self.conns = set(int(c) for c in conn)
        else:
            self.conns = {int(conn)}
        self.after_n = int(spec.get("after_n", 1))
        self.times = spec.get("times")
        action = spec.get("action", [])
        self.actions = action if isinstance(action, list) else [action]
        for a in self.actions:
            if a not in self.ACTIONS and not re.fullmatch(r"delay:[0-9.]+", a):
                raise ValueError(f"rule {index}: unknown action {a!r}")
        self.seen = 0      # matches so far (regex + conn filter)
        self.applied = 0   # times this rule was used

    def delays(self):
        """Seconds to sleep before replying, summed over delay:S actions."""
        total = 0.0
        for a in self.actions:
            if a.startswith("delay:"):
                total += float(a.split(":", 1)[1])
        return total

    def has(self, action):
        return action in self.actions

    def has_override(self):
        """True when the rule supplies its own reply bytes."""
        s = self.spec
        return any(k in s for k in ("reply", "raw", "raw_b64", "flood"))


class Script:
    """The whole JSON script.  Top-level keys, all optional:

    hostname (str), extensions (list of str), line_ending ("\\r\\n" or
    "\\n"), max_rcpt (int, 0 = no limit, beyond it RCPT gets 452),
    require_tls (bool, MAIL before STARTTLS gets 530), idle_timeout
    (seconds without input before the server sends idle_reply, default
    "421 4.4.2 <hostname> Error: timeout exceeded", "" for none, and
    closes), tls (object: cert,
    key, inject, fail_handshake "close"|"garbage", fail_after_bytes),
    rules (list of Rule specs).
    """

    KEYS = {"hostname", "extensions", "line_ending", "max_rcpt",
            "require_tls", "idle_timeout", "idle_reply", "tls", "rules",
            "comment"}

    def __init__(self, data, workdir):
        unknown = set(data) - self.KEYS
        if unknown:
            raise ValueError(f"script: unknown keys {sorted(unknown)}")
        self.data = data
        self.hostname = data.get("hostname", "fake.test")
        self.extensions = list(data.get("extensions", DEFAULT_EXTENSIONS))
        self.eol = data.get("line_ending", "\r\n").encode("latin-1")
        self.max_rcpt = int(data.get("max_rcpt", 0))
        self.require_tls = bool(data.get("require_tls", False))
        self.idle_timeout = data.get("idle_timeout")
        self.idle_reply = data.get(
            "idle_reply", f"421 4.4.2 {self.hostname} Error: timeout exceeded")
        self.rules = [Rule(i, r) for i, r in enumerate(data.get("rules", []))]
        self.lock = threading.Lock()
        self.tls = data.get("tls")
        self.tls_ctx = None
        if self.tls is not None:
            self.tls_ctx = self._make_tls_context(self.tls, workdir)

    @staticmethod
    def _make_tls_context(tls, workdir):
        """Server SSLContext from tls.cert/tls.key, or a fresh self-signed
        pair made by make-cert.sh in the workdir."""
        cert, key = tls.get("cert"), tls.get("key")
        if not cert or not key:
            subprocess.run([MAKE_CERT, workdir], check=True,
                           stdout=subprocess.DEVNULL)
            cert = os.path.join(workdir, "cert.pem")
            key = os.path.join(workdir, "key.pem")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        return ctx

    def match(self, command, conn):
        """First rule whose regex, conn, after_n and times all fit."""
        with self.lock:
            for rule in self.rules:
                if not rule.regex.search(command):
                    continue
                if rule.conns is not None and conn not in rule.conns:
                    continue
                rule.seen += 1
                if rule.seen < rule.after_n:
                    continue
                if rule.times is not None and rule.applied >= int(rule.times):
                    continue
                rule.applied += 1
                return rule
        return None


def format_reply(text, eol):
    """'550 a\\nb' -> b'550-a<eol>550 b<eol>'.  Continuation lines may
    repeat the code ('550 b' or '550-b') or not.  Text that does not start
    with three digits is sent as is, one line per \\n."""
    lines = text.split("\n")
    first = lines[0]
    if len(first) < 3 or not first[:3].isdigit():
        return b"".join(l.encode("utf-8") + eol for l in lines)
    code = first[:3]
    rests = []
    for i, line in enumerate(lines):
        if line.startswith(code) and (len(line) == 3 or line[3] in " -"):
            rests.append(line[4:])
        elif i == 0:
            rests.append(line[3:])
        else:
            rests.append(line)
    out = []
    for i, rest in enumerate(rests):
        if i < len(rests) - 1:
            out.append(f"{code}-{rest}")
        else:
            out.append(f"{code} {rest}" if rest else code)
    return b"".join(l.encode("utf-8") + eol for l in out)


def reply_code(data):
    """Numeric code at the start of reply bytes, or 0."""
    if len(data) >= 3 and data[:3].isdigit():
        return int(data[:3])
    return 0


def positive(code):
    return 200 <= code < 400


# --------------------------------------------------------------------------
# Capture
# --------------------------------------------------------------------------

class Capture:
    """Owns the capture directory; every write is unbuffered."""

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.lock = threading.Lock()
        self.messages = open(os.path.join(directory, "messages.jsonl"), "ab",
                             buffering=0)
        self.rejected = open(os.path.join(directory, "rejected.jsonl"), "ab",
                             buffering=0)
        self.events = open(os.path.join(directory, "events.jsonl"), "ab",
                           buffering=0)

    def conn_files(self, n):
        """(received, sent) unbuffered files for connection n."""
        rx = open(os.path.join(self.dir, f"conn-{n}.bin"), "ab", buffering=0)
        tx = open(os.path.join(self.dir, f"conn-{n}.out"), "ab", buffering=0)
        return rx, tx

    def _line(self, f, obj):
        data = (json.dumps(obj, ensure_ascii=True) + "\n").encode("ascii")
        with self.lock:
            f.write(data)

    def message(self, obj, accepted):
        self._line(self.messages if accepted else self.rejected, obj)

    def event(self, conn, event, **detail):
        obj = {"conn": conn, "t": round(time.time(), 3), "event": event}
        obj.update(detail)
        self._line(self.events, obj)


# --------------------------------------------------------------------------
# One connection
# --------------------------------------------------------------------------

def text_of(raw):
    """Command bytes -> str for regex matching and JSON (never fails)."""
    return raw.decode("utf-8", errors="replace")


PATH_RE = re.compile(r"^(?:MAIL FROM|RCPT TO):\s*<([^>]*)>\s*(.*)$",
                     re.IGNORECASE)


class Session:
    """State and I/O of one client connection."""

    def __init__(self, server, sock, n):
        self.server = server
        self.script = server.script
        self.cap = server.capture
        self.sock = sock
        self.n = n
        self.buf = bytearray()
        self.rx, self.tx = self.cap.conn_files(n)
        self.tls = False
        self.helo = None
        self.reset_txn()

    def reset_txn(self):
        self.mail_from = None
        self.mail_params = ""
        self.rcpts = []

    # ---- low-level I/O ---------------------------------------------------

    def recv_more(self, idle=True):
        """Read one chunk into self.buf; raise Stop at EOF or error.  With
        idle and script idle_timeout set, a silent client gets idle_reply
        and the connection is closed."""
        limit = self.script.idle_timeout if idle else None
        try:
            self.sock.settimeout(limit)
            data = self.sock.recv(RECV_SIZE)
        except TimeoutError:
            self.cap.event(self.n, "idle_timeout")
            if self.script.idle_reply:
                self.send(self.r(self.script.idle_reply))
            self.close()
            raise Stop("idle timeout")
        except (OSError, ssl.SSLError):
            data = b""
        if not data:
            raise Stop("eof")
        self.rx.write(data)
        self.buf += data

    def send(self, data):
        if not data:
            return
        try:
            self.sock.sendall(data)
        except (OSError, ssl.SSLError):
            raise Stop("send failed")
        self.tx.write(data)

    def read_line(self):
        """One line including its LF (bare LF accepted), as bytes."""
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            if len(self.buf) > MAX_LINE:
                line = bytes(self.buf)
                self.buf.clear()
                return line
            self.recv_more()

    def read_data(self):
        """DATA bytes up to and including the CRLF before the final
        '.CRLF' (empty for an immediate '.CRLF').  Only CRLF.CRLF ends it:
        bare-LF dots do not."""
        start = 0
        while True:
            if self.buf.startswith(b".\r\n"):
                del self.buf[:3]
                return b""
            i = self.buf.find(b"\r\n.\r\n", start)
            if i >= 0:
                data = bytes(self.buf[:i + 2])
                del self.buf[:i + 5]
                return data
            start = max(0, len(self.buf) - 4)
            self.recv_more()

    def close(self, rst=False):
        try:
            if rst:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                     struct.pack("ii", 1, 0))
            self.sock.close()
        except OSError:
            pass

    # ---- rule application -------------------------------------------------

    def rule_bytes(self, rule):
        """Reply bytes a rule supplies (not for flood)."""
        s = rule.spec
        eol = b"\n" if s.get("bare_lf") else self.script.eol
        if "raw_b64" in s or "raw" in s:
            unit = (base64.b64decode(s["raw_b64"]) if "raw_b64" in s
                    else s["raw"].encode("latin-1"))
            return (s.get("prefix", "").encode("latin-1")
                    + unit * int(s.get("repeat", 1))
                    + s.get("suffix", "").encode("latin-1"))
        return format_reply(s["reply"], eol)

    def flood(self, rule):
        """Send the flood line over and over until the client goes away or
        max_bytes went out; then end the connection."""
        s = rule.spec
        eol = b"\n" if s.get("bare_lf") else self.script.eol
        line = s["flood"].encode("latin-1") + eol
        chunk = line * max(1, RECV_SIZE // len(line))
        cap = int(s.get("max_bytes", DEFAULT_FLOOD_CAP))
        sent = 0
        while sent < cap:
            self.send(chunk)
            sent += len(chunk)
        self.cap.event(self.n, "flood_cap", bytes=sent)
        raise Stop("flood done")

    def cut_data(self, nbytes, rst):
        """After the reply to DATA: read at least nbytes of message data,
        then end the connection (FIN, or RST) before the final dot can be
        answered; nothing is logged as a message."""
        while len(self.buf) < nbytes:
            self.recv_more()
        self.cap.event(self.n, "cut_data", bytes=len(self.buf),
                       final_dot_seen=b"\r\n.\r\n" in self.buf)
        self.close(rst=rst)
        raise Stop("cut in data")

    def hang(self):
        """Never answer again; keep capturing until the client leaves."""
        while True:
            self.buf.clear()
            self.recv_more(idle=False)

    def respond(self, command, default, effect=None, always=None):
        """Answer one command (or GREETING / DOT).

        default: the bytes the correct server would send; effect: a callable
        applied when the reply actually sent is positive (2xx/3xx); always: a
        callable run after the reply whatever it was (QUIT's close).
        Returns the reply bytes sent (b"" for none)."""
        rule = self.script.match(command, self.n)
        if rule is None:
            self.send(default)
            if effect and positive(reply_code(default)):
                effect()
            if always:
                always()
            return default
        self.cap.event(self.n, "rule", rule=rule.index, command=command[:200])
        delay = rule.delays()
        if delay > 0:
            time.sleep(delay)
        if rule.has("drop"):
            self.close()
            raise Stop("drop")
        if rule.has("reset"):
            self.close(rst=True)
            raise Stop("reset")
        if rule.has("hang"):
            self.hang()
        if "flood" in rule.spec:
            self.flood(rule)
        sent = self.rule_bytes(rule) if rule.has_override() else default
        if rule.has("noreply"):
            sent = b""
        self.send(sent)
        if "inject" in rule.spec:
            self.send(rule.spec["inject"].encode("latin-1"))
        if rule.has("close"):
            self.last_sent = sent   # a 250 before the close still counts
            self.close()
            raise Stop("close")
        if rule.has("tls_fail"):
            self.tls_fail(rule.spec.get("fail_handshake", "close"))
        if rule.has("drop_in_data") or rule.has("reset_in_data"):
            self.cut_data(int(rule.spec.get("in_data_bytes", 1)),
                          rst=rule.has("reset_in_data"))
        if effect and (positive(reply_code(sent))
                       or (rule.has("noreply") and
                           positive(reply_code(default)))):
            effect()
        if always:
            always()
        return sent

    # ---- the protocol -------------------------------------------------------

    def r(self, text):
        return format_reply(text, self.script.eol)

    def run(self):
        self.respond("GREETING",
                     self.r(f"220 {self.script.hostname} ESMTP fake_smtp"))
        while True:
            raw = self.read_line()
            line = text_of(raw.rstrip(b"\r\n"))
            self.command(line)

    def command(self, line):
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        handler = getattr(self, "cmd_" + verb, None)
        if handler is None or len(line) > 4096:
            self.respond(line, self.r("500 5.5.2 Error: command not recognized"))
            return
        handler(line, arg.strip())

    def cmd_EHLO(self, line, arg):
        if not arg:
            self.respond(line, self.r("501 5.5.4 Syntax: EHLO hostname"))
            return
        exts = list(self.script.extensions)
        if self.script.tls_ctx and not self.tls and "STARTTLS" not in exts:
            exts.append("STARTTLS")
        if self.tls:
            exts = [e for e in exts if e != "STARTTLS"]
        text = "\n".join([f"250 {self.script.hostname} greets {arg}"] + exts)

        def effect():
            self.helo = arg
            self.reset_txn()
        self.respond(line, self.r(text), effect)

    def cmd_HELO(self, line, arg):
        if not arg:
            self.respond(line, self.r("501 5.5.4 Syntax: HELO hostname"))
            return

        def effect():
            self.helo = arg
            self.reset_txn()
        self.respond(line, self.r(f"250 {self.script.hostname}"), effect)

    def cmd_MAIL(self, line, arg):
        m = PATH_RE.match(line)
        if self.helo is None:
            default = "503 5.5.1 Error: send HELO/EHLO first"
        elif self.script.require_tls and not self.tls:
            default = "530 5.7.0 Must issue a STARTTLS command first"
        elif self.mail_from is not None:
            default = "503 5.5.1 Error: nested MAIL command"
        elif m is None:
            default = "501 5.5.4 Syntax: MAIL FROM:<address>"
        else:
            default = "250 2.1.0 Ok"

        def effect():
            self.reset_txn()
            self.mail_from = m.group(1) if m else ""
            self.mail_params = m.group(2) if m else ""
        self.respond(line, self.r(default), effect)

    def cmd_RCPT(self, line, arg):
        m = PATH_RE.match(line)
        limit = self.script.max_rcpt
        if self.mail_from is None:
            default = "503 5.5.1 Error: need MAIL command"
        elif m is None:
            default = "501 5.5.4 Syntax: RCPT TO:<address>"
        elif limit and len(self.rcpts) >= limit:
            default = "452 4.5.3 Error: too many recipients"
        else:
            default = "250 2.1.5 Ok"

        def effect():
            self.rcpts.append(m.group(1) if m else line)
        self.respond(line, self.r(default), effect)

    def cmd_DATA(self, line, arg):
        if self.mail_from is None:
            default = "503 5.5.1 Error: need MAIL command"
        elif not self.rcpts:
            default = "554 5.5.1 Error: no valid recipients"
        elif arg:
            default = "501 5.5.4 Syntax: DATA"
        else:
            default = "354 End data with <CR><LF>.<CR><LF>"
        self.respond(line, self.r(default), self.receive_message)

    def receive_message(self):
        """After a positive DATA reply: read the data, answer DOT, log."""
        data = self.read_data()
        qid = self.server.next_queue_id()
        record = {"conn": self.n, "mail_from": self.mail_from,
                  "mail_params": self.mail_params, "rcpt_to": self.rcpts,
                  "data_b64": base64.b64encode(data).decode("ascii"),
                  "tls": self.tls, "helo": self.helo}
        logged = []

        def log(accepted, reply):
            if not logged:
                logged.append(1)
                record["reply"] = text_of(reply).rstrip("\r\n")
                self.cap.message(record, accepted)
        self.last_sent = b""
        try:
            sent = self.respond("DOT",
                                self.r(f"250 2.0.0 Ok: queued as {qid}"))
        except Stop:
            last = self.last_sent
            log(bool(last) and reply_code(last) // 100 == 2, last)
            raise
        log(reply_code(sent) // 100 == 2, sent)
        self.reset_txn()

    def cmd_RSET(self, line, arg):
        self.respond(line, self.r("250 2.0.0 Ok"), self.reset_txn)

    def cmd_NOOP(self, line, arg):
        self.respond(line, self.r("250 2.0.0 Ok"))

    def cmd_VRFY(self, line, arg):
        if not arg:
            self.respond(line, self.r("501 5.5.4 Syntax: VRFY address"))
            return
        self.respond(line, self.r(
            "252 2.0.0 Cannot VRFY user, but will accept message"))

    def cmd_EXPN(self, line, arg):
        if not arg:
            self.respond(line, self.r("501 5.5.4 Syntax: EXPN list"))
            return
        self.respond(line, self.r("502 5.5.1 EXPN not implemented"))

    def cmd_HELP(self, line, arg):
        self.respond(line, self.r(
            "214 2.0.0 Commands:\n"
            "EHLO HELO MAIL RCPT DATA RSET NOOP VRFY EXPN HELP QUIT STARTTLS"))

    def cmd_QUIT(self, line, arg):
        def bye():
            self.close()
            raise Stop("quit")
        self.respond(line, self.r("221 2.0.0 Bye"), always=bye)

    def cmd_STARTTLS(self, line, arg):
        if self.script.tls_ctx is None or self.tls:
            default = "502 5.5.1 Error: STARTTLS not available"
        elif arg:
            default = "501 5.5.4 Syntax: STARTTLS"
        else:
            default = "220 2.0.0 Ready to start TLS"
        self.respond(line, self.r(default), self.start_tls)

    def start_tls(self):
        """After 220: optional plaintext injection and handshake faults from
        the script's tls block, then the handshake; state is forgotten."""
        tls = self.script.tls or {}
        if self.buf:
            # RFC 3207: bytes pipelined after STARTTLS must be discarded.
            self.cap.event(self.n, "tls_discard", bytes=len(self.buf))
            self.buf.clear()
        if tls.get("inject"):
            self.send(tls["inject"].encode("latin-1"))
        if tls.get("fail_handshake"):
            self.tls_fail(tls["fail_handshake"])
        try:
            self.sock.settimeout(10)
            self.sock = self.script.tls_ctx.wrap_socket(self.sock,
                                                        server_side=True)
            self.sock.settimeout(None)
        except (OSError, ssl.SSLError) as e:
            self.cap.event(self.n, "tls_failed", error=str(e))
            self.close()
            raise Stop("handshake failed")
        self.tls = True
        self.helo = None
        self.reset_txn()
        self.cap.event(self.n, "tls", version=self.sock.version(),
                       cipher=self.sock.cipher()[0])

    def tls_fail(self, how):
        """Break the handshake: read a few ClientHello bytes (not captured),
        then close ("close") or answer with non-TLS junk ("garbage")."""
        want = int((self.script.tls or {}).get("fail_after_bytes", 5))
        got = 0
        self.sock.settimeout(5)
        try:
            while got < want:
                chunk = self.sock.recv(want - got)
                if not chunk:
                    break
                got += len(chunk)
            if how == "garbage":
                self.sock.sendall(b"this is not a TLS ServerHello\r\n")
        except OSError:
            pass
        self.cap.event(self.n, "tls_fail", how=how, read=got)
        self.close()
        raise Stop("tls_fail")


# --------------------------------------------------------------------------
# The listener
# --------------------------------------------------------------------------

class Server:
    def __init__(self, script, capture):
        self.script = script
        self.capture = capture
        self.lock = threading.Lock()
        self.conn_count = 0
        self.queue_id = 0
        self.open = set()

    def next_queue_id(self):
        with self.lock:
            self.queue_id += 1
            return self.queue_id

    def serve_one(self, sock, n):
        session = Session(self, sock, n)
        self.capture.event(n, "connect")
        reason = "closed"
        try:
            session.run()
        except Stop as e:
            reason = str(e)
        except Exception as e:  # keep serving others; say what broke
            reason = f"error: {e!r}"
            print(f"fake_smtp: conn {n}: {e!r}", file=sys.stderr)
        finally:
            session.close()
            with self.lock:
                self.open.discard(sock)
            self.capture.event(n, "close", reason=reason)

    def accept_loop(self, listener, stop):
        parent = os.getppid()
        while not stop.is_set():
            if os.getppid() != parent:   # the test died without stopping us
                break
            try:
                sock, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:
                if stop.is_set():
                    break
                raise
            sock.settimeout(None)
            with self.lock:
                self.conn_count += 1
                n = self.conn_count
                self.open.add(sock)
            threading.Thread(target=self.serve_one, args=(sock, n),
                             daemon=True).start()

    def close_all(self):
        with self.lock:
            socks = list(self.open)
        for s in socks:
            try:
                s.close()
            except OSError:
                pass


def write_ready(path, port):
    """Write 'PORT\\n' atomically to path, or to stdout."""
    if not path:
        print(port, flush=True)
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.rename(tmp, path)


def main():
    ap = argparse.ArgumentParser(description="scriptable fake SMTP server")
    ap.add_argument("--script", help="JSON script file (default: {})")
    ap.add_argument("--ready-file")
    ap.add_argument("--capture-dir", default="capture")
    ap.add_argument("--workdir", default=".",
                    help="where a self-signed cert is made if needed")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()

    data = {}
    if args.script:
        with open(args.script, encoding="utf-8") as f:
            data = json.load(f)
    script = Script(data, args.workdir)
    capture = Capture(args.capture_dir)
    server = Server(script, capture)

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", args.port))
    listener.listen(128)
    listener.settimeout(0.2)

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    write_ready(args.ready_file, listener.getsockname()[1])
    server.accept_loop(listener, stop)
    listener.close()
    server.close_all()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # daemon threads may sit in recv(); all files are unbuffered


if __name__ == "__main__":
    main()
