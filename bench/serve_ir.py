#!/usr/bin/env python3
"""Instructions a request of `mailpool serve`, by callgrind.

    bench/serve_ir.py [BUILD...]      (default: build)

For each build: smtp-sink, then `mailpool serve` under
`valgrind --tool=callgrind` (all threads), SIR_SMALL then SIR_LARGE
synchronous one-message POSTs over 4 keep-alive connections, SIGTERM (the
message log's writes are committed before it exits); prints
(Ir(large) - Ir(small)) / (large - small): the service's instructions a
request, start-up and shutdown excluded.  SIR_EXTRA adds serve options
(e.g. "--queue-log-sync false"); SIR_ASYNC=1 posts with Prefer:
respond-async messages scheduled an hour ahead (the durable enqueue alone,
delivery idle); SIR_BATCH=K posts batches of K messages to
/v1/messages/batch instead (the counts are then a message's).  Counts, not timings: they hold on a loaded machine.
"""
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402
from common import free_port, wait_port  # noqa: E402

SMALL = int(os.environ.get("SIR_SMALL", "200"))
LARGE = int(os.environ.get("SIR_LARGE", "1200"))
EXTRA = os.environ.get("SIR_EXTRA", "").split()
ASYNC = os.environ.get("SIR_ASYNC") == "1"
BATCH = int(os.environ.get("SIR_BATCH", "0"))
CONNS = 4


def post_all(port, n):
    """n POSTs of run.message() over CONNS keep-alive connections."""
    msg, headers = run.message(), {"Content-Type": "application/json"}
    if ASYNC:
        msg["send_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                       time.gmtime(time.time() + run.HOLD_S))
        headers["Prefer"] = "respond-async"
    body = json.dumps({"messages": [dict(msg, headers={"Subject": "bench %d" % i})
                                    for i in range(BATCH)]} if BATCH else msg).encode()
    path = "/v1/messages/batch" if BATCH else "/v1/messages"

    def client(k):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for _ in range(k):
            c.request("POST", path, body, headers)
            r = c.getresponse()
            r.read()
            if r.status != (202 if ASYNC else 200):
                raise SystemExit("serve_ir: HTTP %d" % r.status)
        c.close()
    ts = [threading.Thread(target=client, args=(n // CONNS + (i < n % CONNS),))
          for i in range(CONNS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def ir(build, sink_port, n, tmp):
    out = os.path.join(tmp, "cg-%d.out" % n)
    port = free_port()
    argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + out,
            os.path.join(build, "mailpool"), "serve", "--relay-host", "127.0.0.1",
            "--relay-port", str(sink_port), "--relay-tls", "none",
            "--http-listen", "127.0.0.1:%d" % port, "--pool-connections", "8",
            "--pool-workers", "8", "--http-threads", "2", "--log-level", "error",
            "--queue-path", os.path.join(tmp, "q-%d.db" % n)] + EXTRA
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not wait_port(port, 120):
        p.kill()
        raise SystemExit("serve_ir: mailpool serve did not start")
    post_all(port, n)
    p.terminate()
    p.wait(300)
    total = 0
    for name in os.listdir(tmp):  # one file a thread with --separate-threads
        if name.startswith("cg-%d.out" % n):
            with open(os.path.join(tmp, name)) as f:
                m = re.search(r"^summary: (\d+)", f.read(), re.M)
            total += int(m.group(1)) if m else 0
    return total


def main():
    builds = sys.argv[1:] or ["build"]
    sink, sink_port = run.start_sink()
    try:
        for b in builds:
            tmp = tempfile.mkdtemp()
            lo, hi = ir(b, sink_port, SMALL, tmp), ir(b, sink_port, LARGE, tmp)
            what = " ".join(EXTRA + (["respond-async"] if ASYNC else []))
            print("%s: instructions a %s: %.0f%s" % (b, "message" if BATCH else "request",
                  (hi - lo) / (LARGE - SMALL) / max(BATCH, 1),
                  " (%s)" % what if what else ""), flush=True)
    finally:
        sink.stop()


if __name__ == "__main__":
    main()
