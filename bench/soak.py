#!/usr/bin/python3
"""soak.py - `make soak`: push SOAK_MESSAGES (default 1,000,000) messages
through `mailpool serve` (HTTP batches of 100 from 4 client threads) to
Postfix's smtp-sink on 127.0.0.1, with faults injected: every SOAK_FAULT_EVERY
(default 5,000) messages the relay is killed and, a moment later, started
again on the same port (connections die mid-transaction; the relay is down
for a while; the service must recover without a restart).

At the end it checks, from what the clients were told and what the sink
counted (its -c counters, summed over restarts):
  requested == sent + failed + unknown          (every message accounted for)
  sent <= delivered <= sent + unknown            (nothing lost, nothing twice)
and that mailpool's RSS at the end is within 5% (the issue's target) of
its RSS after the first 10% of the messages, both taken at rest: the
clients pause, what is in flight finishes, and after more than a second a
request that is refused (422, nothing sent) lets the service run its
periodic malloc_trim; so the two samples hold the same load (none), where
a sample under load holds whatever requests and jobs are in flight at
that instant.  The RSS under load is printed every SOAK_REPORT_SECONDS.
BUILD names the build directory (default build).  Exit 0 when all hold.
Not part of `make test`.
"""

import atexit
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from common import free_port, wait_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, os.environ.get("BUILD") or "build")
TOTAL = int(os.environ.get("SOAK_MESSAGES", "1000000"))
FAULT_EVERY = int(os.environ.get("SOAK_FAULT_EVERY", "5000"))
REPORT_EVERY = float(os.environ.get("SOAK_REPORT_SECONDS", "30"))
BATCH = 100
CLIENTS = 4


class Sink:
    """smtp-sink with -c; delivered() sums its counter over restarts."""

    def __init__(self, port, workdir):
        self.port, self.workdir, self.p, self.done, self.n = port, workdir, None, 0, 0
        self.start()

    def start(self):
        self.n += 1
        self.out = os.path.join(self.workdir, "sink-%d.out" % self.n)
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        with open(self.out, "wb") as f:
            self.p = subprocess.Popen(["/usr/sbin/smtp-sink", "-c"] + user +
                                      ["127.0.0.1:%d" % self.port, "256"],
                                      stdout=f, stderr=subprocess.DEVNULL)

    @staticmethod
    def count(path):
        with open(path, "rb") as f:
            found = re.findall(rb"mesg=(\d+)", f.read())
        return int(found[-1]) if found else 0

    def kill(self):
        self.p.kill()
        self.p.wait()
        self.done += self.count(self.out)

    def delivered(self):
        return self.done + (self.count(self.out) if self.p.poll() is None else 0)


def rss_parts(pid):
    """RssAnon, RssFile and RssShmem of pid, as one string."""
    with open("/proc/%d/status" % pid) as f:
        text = f.read()
    return ", ".join("%s %s KiB" % (k, re.search(r"%s:\s+(\d+)" % k, text).group(1))
                     for k in ("RssAnon", "RssFile", "RssShmem"))


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def rest_rss(pid, hport):
    """RSS in KiB at rest: past the periodic trim's second, one refused
    request (its end runs the trim), a moment to settle."""
    time.sleep(1.2)
    conn = http.client.HTTPConnection("127.0.0.1", hport, timeout=30)
    conn.request("POST", "/v1/messages", "{}", {"Content-Type": "application/json"})
    conn.getresponse().read()
    conn.close()
    time.sleep(0.3)
    return rss_kib(pid)


def main():
    work = tempfile.mkdtemp()
    os.chmod(work, 0o755)
    sport, hport = free_port(), free_port()
    sink = Sink(sport, work)
    # An interrupted soak (Ctrl-C, SIGTERM) still stops what it started.
    atexit.register(lambda: sink.p.poll() is None and sink.kill())
    wait_port(sport)
    mp = subprocess.Popen([os.path.join(BUILD, "mailpool"), "serve",
                           "--relay-host", "127.0.0.1", "--relay-port", str(sport),
                           "--relay-tls", "none", "--http-listen", "127.0.0.1:%d" % hport,
                           "--log-level", "error", "--pool-retries", "5",
                           "--pool-retry-backoff-ms", "100",
                           "--queue-path", os.path.join(BUILD, "soak-queue.db")],
                          stderr=subprocess.DEVNULL)
    atexit.register(lambda: mp.poll() is None and (mp.kill(), mp.wait()))
    wait_port(hport)
    body = json.dumps({"messages": [{"from": "soak@example.org",
                                     "to": ["sink@example.org"],
                                     "headers": {"Subject": "soak"},
                                     "body": ("x" * 63 + "\n") * 16}] * BATCH})
    lock = threading.Lock()
    tally = {"requested": 0, "sent": 0, "failed": 0, "unknown": 0, "http_errors": 0}
    rss = {}
    next_fault = [FAULT_EVERY]
    # The pause at 10%: clients wait on rest while paused; inflight counts
    # the requests between their start and their answer (under lock).
    rest = threading.Condition(lock)
    state = {"paused": False, "inflight": 0}

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", hport, timeout=120)
        while True:
            with lock:
                if tally["requested"] >= TOTAL:
                    return
                if tally["requested"] >= TOTAL // 10 and "first" not in rss:
                    state["paused"] = True
                while state["paused"]:
                    rest.wait()
                if tally["requested"] >= TOTAL:
                    return
                tally["requested"] += BATCH
                state["inflight"] += 1
            try:
                conn.request("POST", "/v1/messages/batch", body,
                             {"Content-Type": "application/json"})
                r = conn.getresponse()
                data = r.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", hport, timeout=120)
                with lock:
                    state["inflight"] -= 1
                    tally["http_errors"] += 1
                    tally["failed"] += BATCH
                    rest.notify_all()
                continue
            with lock:
                state["inflight"] -= 1
                if r.status != 200:
                    tally["http_errors"] += 1
                    tally["failed"] += BATCH
                else:
                    for res in json.loads(data)["results"]:
                        st = res.get("status")
                        key = "sent" if st == "sent" else "unknown" if st == "unknown" else "failed"
                        tally[key] += 1
                rest.notify_all()

    def sample_first():
        """At 10%: once every client waits and nothing is in flight, the
        RSS at rest; then the clients go on."""
        with lock:
            while not (state["paused"] and state["inflight"] == 0):
                if tally["requested"] >= TOTAL:
                    return
                rest.wait(1)
        rss["first"] = rest_rss(mp.pid, hport)
        with lock:
            state["paused"] = False
            rest.notify_all()

    def faults():
        while True:
            with lock:
                n = tally["requested"]
                if n >= TOTAL:
                    return
            if n >= next_fault[0]:
                next_fault[0] += FAULT_EVERY
                sink.kill()
                time.sleep(0.3)
                sink.start()
            time.sleep(0.05)

    t0 = time.time()
    threads = [threading.Thread(target=client, daemon=True)
               for _ in range(CLIENTS)]
    threads.append(threading.Thread(target=faults, daemon=True))
    threads.append(threading.Thread(target=sample_first, daemon=True))
    for t in threads:
        t.start()
    last = time.time()
    while any(t.is_alive() for t in threads):
        time.sleep(1)
        if time.time() - last > REPORT_EVERY:
            last = time.time()
            print("soak: %d requested, %d sent, %d failed, %d unknown, RSS %d KiB (%s)" %
                  (tally["requested"], tally["sent"], tally["failed"], tally["unknown"],
                   rss_kib(mp.pid), rss_parts(mp.pid)), flush=True)
    rss["end"] = rest_rss(mp.pid, hport)
    mp.send_signal(signal.SIGTERM)
    rc = mp.wait(60)
    delivered = sink.delivered()
    sink.kill()
    secs = time.time() - t0
    print("soak: %d messages in %.0f s (%.0f/s), %d relay restarts" %
          (tally["requested"], secs, tally["requested"] / secs, sink.n - 1))
    print("soak: client view: sent %(sent)d, failed %(failed)d, unknown %(unknown)d, "
          "HTTP errors %(http_errors)d" % tally)
    print("soak: relay counted %d delivered" % delivered)
    print("soak: RSS at rest after 10%%: %d KiB, at the end: %d KiB (%+.1f%%)" %
          (rss.get("first", 0), rss["end"],
           100.0 * (rss["end"] - rss.get("first", 0)) / max(rss.get("first", 0), 1)))
    ok = True
    checks = [
        ("requested == sent + failed + unknown",
         tally["requested"] == tally["sent"] + tally["failed"] + tally["unknown"]),
        ("sent <= delivered <= sent + unknown",
         tally["sent"] <= delivered <= tally["sent"] + tally["unknown"]),
        ("RSS at rest at the end within 5% of RSS at rest after 10%",
         rss["end"] <= rss.get("first", 0) * 1.05),
        ("mailpool exited 0 after SIGTERM", rc == 0),
    ]
    for name, good in checks:
        print("soak: %s: %s" % ("ok" if good else "FAILED", name))
        ok &= good
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    main()
