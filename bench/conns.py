#!/usr/bin/python3
"""conns.py - N concurrent keep-alive HTTP connections through `mailpool
serve`: each connection sends GET /healthz and reads its 200, all N stay
open, then each sends a second request on the same connection; prints the
service's RSS before, with the N connections held, and per connection.

  bench/conns.py [N] [BUILD]        (default 10000, build)

The service runs with --http-max-connections N + 100 and a connection
timeout of 120 s; it is started with its soft RLIMIT_NOFILE as this
process has it (it raises it to the hard limit itself).  Prints one JSON
line: n, served (second-round 200s), rss_before_kib, rss_held_kib,
per_conn_kib, seconds.
"""

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time

from common import free_port, wait_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQ = b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n"


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def round_trip(socks, timeout=60):
    """Sends REQ on every socket, then reads until each has a whole answer
    (its head and Content-Length bytes); how many were 200."""
    sel = selectors.DefaultSelector()
    got = {}
    for s in socks:
        s.sendall(REQ)
        sel.register(s, selectors.EVENT_READ)
        got[s] = b""
    ok, end = 0, time.time() + timeout
    while got and time.time() < end:
        for key, _ in sel.select(1):
            s = key.fileobj
            data = s.recv(4096)
            buf = got[s] + data
            head, sep, body = buf.partition(b"\r\n\r\n")
            n = -1
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    n = int(line.split(b":")[1])
            if not data or (sep and n >= 0 and len(body) >= n):
                ok += buf.startswith(b"HTTP/1.1 200 ")
                sel.unregister(s)
                del got[s]
            else:
                got[s] = buf
    sel.close()
    return ok


def measure(n, build, sink_port=None):
    port = free_port()
    argv = [os.path.join(build, "mailpool"), "serve", "--relay-host", "127.0.0.1",
            "--relay-port", str(sink_port or free_port()), "--relay-tls", "none",
            "--http-listen", "127.0.0.1:%d" % port, "--log-level", "error",
            "--http-max-connections", str(n + 100),
            "--http-connection-timeout", "120",
            "--queue-path", os.path.join(build, "bench-queue-%d.db" % port)]
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    socks = []
    try:
        if not wait_port(port):
            raise SystemExit("conns: mailpool serve did not start")
        time.sleep(0.3)
        before = rss_kib(p.pid)
        t = time.monotonic()
        for _ in range(n):
            socks.append(socket.create_connection(("127.0.0.1", port)))
        first = round_trip(socks)
        held = rss_kib(p.pid)
        served = round_trip(socks)
        secs = time.monotonic() - t
    finally:
        for s in socks:
            s.close()
        p.send_signal(signal.SIGTERM)
        p.wait(20)
        for f in os.listdir(build):
            if f.startswith("bench-queue-%d.db" % port):
                os.unlink(os.path.join(build, f))
    return {"n": n, "first": first, "served": served, "rss_before_kib": before,
            "rss_held_kib": held, "per_conn_kib": (held - before) / max(n, 1),
            "seconds": round(secs, 2)}


if __name__ == "__main__":
    N = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
    B = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "build")
    print(json.dumps(measure(N, os.path.abspath(B))))
