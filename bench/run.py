#!/usr/bin/python3
"""run.py - mailpool's benchmarks (`make bench`), printed as one table.

Every figure is the median of RUNS runs; each comparison is a ratio against
a reference measured in the same run (the machine is shared and noisy).
Everything runs on 127.0.0.1 against Postfix's smtp-sink; 1 KiB messages,
one recipient.

  1. SMTP layer: build/bench_smtp (smtpcore, with and without PIPELINING,
     and at N = 8 in chains of 16: smtp_conn_send_mails, each final dot
     carrying the next envelope) against `smtp-source -d -s N -m M -l 1024`,
     N = 1, 8, 32.
  1b. The limit: the best of bench_smtp over a few connection/chain
     settings (N = 8, 16, 32 in chains of 16; N = 8 unchained); every HTTP
     rate row is followed by its fraction of it, and by the rate with the
     message log's record of synchronous sends off (queue.log_sync false).
  2. HTTP end to end: wrk POSTing /v1/messages (32 connections) and
     /v1/messages/batch (100 messages a request) through `mailpool serve`:
     messages/s, p50/p99 latency, peak RSS, CPU seconds per 10,000 messages;
     and composed messages (text + HTML, 5 KB, one 20 KB attachment: the
     MIME built by GMime on the request's thread) against an envelope-form
     message of the same size in the same run (target: at least half).
  3. Peers: Python smtplib with N threads each holding a connection, and
     nodemailer's pooled transport with N connections.
  4. Scale: SMTP connections 1..32, batch sizes 1..1000, RSS with 1,000 idle
     HTTP connections.
  6. DKIM: microseconds to sign a 1 KB and a 100 KB message with RSA-2048
     and Ed25519 (build/bench_dkim), and the HTTP rate (one message a
     request) with signing on (rsa + ed25519) beside off, in one run.
  5. Queue: durable enqueue (Prefer: respond-async) one message a request
     over 32 connections and in batches of 100, with queue.synchronous
     full and normal, against the synchronous rates of the same run; and
     the drain rate from the queue to smtp-sink against smtp-source -d.
  7. Scale-out: a PostgreSQL 15 started for the run (tests/peers/
     postgres-peer.sh, fsync on): the drain rate with 1, 2 and 4 replicas
     on one database beside one replica on SQLite, in one run (ratios
     against SQLite); and claims per second (claim, mark started, record:
     build/bench_claims, no SMTP) with 1 to 16 worker threads in one
     process (ratios against one worker).

Environment: BENCH_RUNS (default 5), BENCH_MESSAGES (default 20000),
BENCH_SECONDS (wrk duration, default 5), BENCH_QUICK=1 (fewer cases),
BENCH_SECTIONS (comma-separated subset of smtp,http,peers,scale,queue,dkim,scaleout; default
all; http needs the smtp-source reference of N=8, so it measures that one
alone when smtp is left out), BUILD (the build directory, as for make;
default build).
"""

import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

from common import free_port, wait_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, os.environ.get("BUILD") or "build")
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
MSGS = int(os.environ.get("BENCH_MESSAGES", "20000"))
SECS = int(os.environ.get("BENCH_SECONDS", "5"))
QUICK = os.environ.get("BENCH_QUICK") == "1"
ALL_SECTIONS = ("smtp", "http", "peers", "scale", "queue", "dkim", "scaleout")
SECTIONS = [x.strip() for x in os.environ.get("BENCH_SECTIONS", "").split(",")
            if x.strip()] or list(ALL_SECTIONS)
rows = []


class Proc:
    """A child process stopped with SIGTERM on exit."""

    def __init__(self, argv, **kw):
        self.p = subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                  stderr=kw.pop("stderr", subprocess.DEVNULL), **kw)

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


def start_sink():
    port = free_port()
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    p = Proc(["/usr/sbin/smtp-sink"] + user + ["127.0.0.1:%d" % port, "1024"])
    if not wait_port(port):
        raise SystemExit("bench: smtp-sink did not start")
    return p, port


def timed(argv):
    t = time.monotonic()
    r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        raise SystemExit("bench: %s failed: %s" % (argv[0], r.stderr[-500:]))
    return time.monotonic() - t, r.stdout


def median_rate(argv, msgs):
    rates = []
    for _ in range(RUNS):
        secs, _ = timed(argv)
        rates.append(msgs / secs)
    return statistics.median(rates)


def row(section, what, value, unit, ref=None, target=None):
    ratio = value / ref if ref else None
    rows.append((section, what, value, unit, ratio, target))
    r = "" if ratio is None else "  x%.2f" % ratio
    print("  %-58s %10.1f %-8s%s" % (what, value, unit, r), flush=True)


def smtp_layer(port):
    print("1. SMTP layer (smtpcore vs smtp-source -d), %d messages" % MSGS)
    ref = {}
    for n in (1, 8, 32):
        src = median_rate(["/usr/sbin/smtp-source", "-d", "-s", str(n), "-m", str(MSGS),
                           "-l", "1024", "127.0.0.1:%d" % port], MSGS)
        ref[n] = src
        row("smtp", "smtp-source -d, N=%d" % n, src, "msg/s")
        pipe = median_rate([os.path.join(BUILD, "bench_smtp"), "--server",
                            "127.0.0.1:%d" % port, "-n", str(n), "-m", str(MSGS)], MSGS)
        row("smtp", "smtpcore PIPELINING, N=%d" % n, pipe, "msg/s", src,
            ">= 1.5" if n == 8 else None)
        nop = median_rate([os.path.join(BUILD, "bench_smtp"), "--server",
                           "127.0.0.1:%d" % port, "-n", str(n), "-m", str(MSGS), "-p"], MSGS)
        row("smtp", "smtpcore no pipelining, N=%d" % n, nop, "msg/s", src)
        if n == 8:
            chain = median_rate([os.path.join(BUILD, "bench_smtp"), "--server",
                                 "127.0.0.1:%d" % port, "-n", str(n), "-m", str(MSGS),
                                 "-c", "16"], MSGS)
            row("smtp", "smtpcore chains of 16 (dot + next envelope), N=8", chain,
                "msg/s", src)
    return ref


def smtp_reference(port):
    """The reference alone (smtp-source -d, N=8), for the HTTP ratios."""
    print("1. SMTP reference only (smtp-source -d, N=8), %d messages" % MSGS)
    src = median_rate(["/usr/sbin/smtp-source", "-d", "-s", "8", "-m", str(MSGS),
                       "-l", "1024", "127.0.0.1:%d" % port], MSGS)
    row("smtp", "smtp-source -d, N=8", src, "msg/s")
    return {8: src}


LIMIT_SETTINGS = ((8, 16), (16, 16), (32, 16), (8, 1))


def limit_row(port):
    """The machine's limit: the best median of bench_smtp (smtpcore's own
    sender) over a few connection/chain settings, in this run."""
    best, which = 0.0, None
    for n, c in (LIMIT_SETTINGS[:2] if QUICK else LIMIT_SETTINGS):
        v = median_rate([os.path.join(BUILD, "bench_smtp"), "--server",
                         "127.0.0.1:%d" % port, "-n", str(n), "-m", str(MSGS),
                         "-c", str(c)], MSGS)
        if v > best:
            best, which = v, (n, c)
    row("limit", "limit: best bench_smtp (N=%d, chains of %d)" % which, best, "msg/s")
    return best


def proc_stats(pid):
    """(peak RSS KiB, CPU seconds) of a process."""
    with open("/proc/%d/status" % pid) as f:
        hwm = int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return hwm, (int(fields[11]) + int(fields[12])) / tick


def start_mailpool(sink_port, conns=8, workers=None, extra=()):
    port = free_port()
    argv = [os.path.join(BUILD, "mailpool"), "serve", "--relay-host", "127.0.0.1",
            "--relay-port", str(sink_port), "--relay-tls", "none",
            "--http-listen", "127.0.0.1:%d" % port,
            "--pool-connections", str(conns), "--pool-workers", str(workers or conns),
            "--pool-queue", "100000", "--http-threads", "2", "--log-level", "error",
            "--http-max-batch", "1000",
            "--queue-path", os.path.join(BUILD, "bench-queue-%d.db" % port)] + list(extra)
    p = Proc(argv)
    if not wait_port(port):
        raise SystemExit("bench: mailpool serve did not start")
    return p, port


def message(i=0):
    return {"from": "sender@example.org", "to": ["bench@example.org"],
            "headers": {"Subject": "bench %d" % i},
            "body": ("x" * 63 + "\n") * 16}


def composed_message():
    """A composed message: text + HTML of 5 KB, one 20 KB PDF attachment."""
    import base64
    para = "Gr\u00fc\u00dfe aus K\u00f6ln, a line of a newsletter. " * 2
    return {"from": "Shop <sender@example.org>", "to": ["Bench <bench@example.org>"],
            "subject": "bench \u2603", "text": (para + "\n") * 25,
            "html": ("<p>%s</p>\n" % para) * 20,
            "attachments": [{"filename": "report.pdf", "content_type": "application/pdf",
                             "content": base64.b64encode(bytes(range(256)) * 80).decode()}]}


def envelope_same_size():
    """The envelope form with a body as large as the composed message's
    bytes (about 35 KB of 76-octet lines)."""
    return {"from": "sender@example.org", "to": ["bench@example.org"],
            "headers": {"Subject": "bench"}, "body": ("y" * 75 + "\n") * 460}


def wrk(url, body_file, conns, secs, prefer=None):
    lua = os.path.join(tempfile.gettempdir(), "mailpool-wrk-%d.lua" % os.getpid())
    with open(lua, "w") as f:
        f.write('wrk.method = "POST"\n'
                'wrk.headers["Content-Type"] = "application/json"\n'
                + ('wrk.headers["Prefer"] = "%s"\n' % prefer if prefer else '') +
                'local f = io.open("%s", "rb"); wrk.body = f:read("*a"); f:close()\n'
                'done = function(summary, latency, requests)\n'
                '  io.write(string.format("JSON {\\"requests\\": %%d, \\"p50\\": %%d, \\"p99\\": %%d, \\"errors\\": %%d, \\"status\\": %%d}\\n",\n'
                '    summary.requests, latency:percentile(50), latency:percentile(99),\n'
                '    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,\n'
                '    summary.errors.status))\n'
                'end\n' % body_file)
    out = subprocess.run(["wrk", "-t", "2", "-c", str(conns), "-d", "%ds" % secs,
                          "-s", lua, url], stdout=subprocess.PIPE, text=True).stdout
    os.unlink(lua)
    m = re.search(r"^JSON (.*)$", out, re.M)
    return json.loads(m.group(1))


def answered_2xx(r):
    """The requests of a wrk result answered 2xx (wrk counts every other
    status, such as the queue's 503 past queue.high_water, in errors.status);
    says so when some were not, or when sockets failed."""
    if r["status"]:
        print("bench: %d answers were not 2xx (not counted)" % r["status"])
    if r["errors"]:
        print("bench: %d wrk socket errors or timeouts" % r["errors"])
    return max(r["requests"] - r["status"], 0)


def http_runs(sink_port, path, per_req, prefer=None, extra=()):
    """RUNS runs of wrk POSTing path's body through a fresh service each time:
    lists of messages/s, p50 and p99 (ms), peak RSS (MiB) and CPU seconds
    per 10,000 messages."""
    out = {"rate": [], "p50": [], "p99": [], "rss": [], "cpu": []}
    for _ in range(RUNS):
        mp, port = start_mailpool(sink_port, 8, extra=extra)
        _, cpu0 = proc_stats(mp.p.pid)
        r = wrk("http://127.0.0.1:%d/v1/messages%s" % (port, "/batch" if per_req > 1 else ""),
                path, 32 if per_req == 1 else 4, SECS, prefer)
        hwm, cpu1 = proc_stats(mp.p.pid)
        mp.stop()
        n = answered_2xx(r) * per_req
        out["rate"].append(n / SECS)
        out["p50"].append(r["p50"] / 1000.0)
        out["p99"].append(r["p99"] / 1000.0)
        out["rss"].append(hwm / 1024.0)
        out["cpu"].append((cpu1 - cpu0) / max(n, 1) * 10000)
    return out


def http_rate(sink_port, path, per_req, prefer=None, extra=()):
    """Median messages/s of http_runs."""
    return statistics.median(http_runs(sink_port, path, per_req, prefer, extra)["rate"])


def queue_drain(sink_port, n, replicas=1, extra=()):
    """Messages/s from send_at to the last one sent, for n queued (posted
    round-robin across the replicas, which share the queue of extra)."""
    mps = [start_mailpool(sink_port, 8, extra=extra) for _ in range(replicas)]
    bases = ["http://127.0.0.1:%d" % port for _, port in mps]
    base = bases[0]
    at = time.time() + 20
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
    for k in range(0, n, 1000):
        msgs = [dict(message(i), send_at=when) for i in range(k, min(n, k + 1000))]
        req = urllib.request.Request(bases[(k // 1000) % replicas] + "/v1/messages/batch",
                                     json.dumps({"messages": msgs}).encode(),
                                     {"Content-Type": "application/json",
                                      "Prefer": "respond-async"})
        urllib.request.urlopen(req).read()
    start = int(at) + 0.0
    while True:
        text = urllib.request.urlopen(base + "/metrics").read().decode()
        m = re.search(r'^mailpool_queue_messages\{status="sent"\} (\d+)', text, re.M)
        if m and int(m.group(1)) >= n:
            break
        time.sleep(0.05)
    done = time.time()
    for mp, _ in mps:
        mp.stop()
    return n / max(done - start, 1e-3)


PG_PEER = os.path.join(ROOT, "tests", "peers", "postgres-peer.sh")


def pg_peer(*args):
    """Runs the PostgreSQL peer script; its words."""
    env = dict(os.environ, MAILPOOL_PG_FSYNC="on")
    r = subprocess.run([PG_PEER] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, env=env)
    if r.returncode != 0:
        raise SystemExit("bench: postgres-peer.sh %s: %s" % (args[0], r.stderr[-300:]))
    return r.stdout.split()


def pg_queue(pg, db):
    """A new database db on pg (dir, port) and its libpq URL."""
    pg_peer("createdb", pg[0], db)
    return "host=127.0.0.1 port=%d user=postgres dbname=%s" % (pg[1], db)


def scaleout_layer(sink_port):
    print("7. Scale-out on PostgreSQL (fsync on)")
    out = pg_peer("start")
    pg = (out[0], int(out[1]))
    pw = os.path.join(pg[0], "password")
    try:
        n = min(MSGS, 10000)
        runs = min(RUNS, 3)
        ref = statistics.median([queue_drain(sink_port, n) for _ in range(runs)])
        row("scaleout", "drain, SQLite, 1 replica, %d messages" % n, ref, "msg/s")
        for r in (1, 2, 4):
            rates = []
            for k in range(runs):
                url = pg_queue(pg, "drain_%d_%d" % (r, k))
                rates.append(queue_drain(sink_port, n, r, (
                    "--queue-backend", "postgres", "--queue-url", url,
                    "--queue-password-file", pw)))
            row("scaleout", "drain, PostgreSQL, %d replica%s, %d messages"
                % (r, "s" if r > 1 else "", n), statistics.median(rates), "msg/s", ref)
        one = None
        for w in (1, 2, 4, 8, 16):
            rates = []
            for k in range(runs):
                url = pg_queue(pg, "claims_%d_%d" % (w, k))
                _, text = timed([os.path.join(BUILD, "bench_claims"), url, pw,
                                 str(min(MSGS, 5000)), str(w)])
                rates.append(json.loads(text)["per_s"])
            v = statistics.median(rates)
            one = one or v
            row("scaleout", "claims/s (claim, start, record), %d worker%s"
                % (w, "s" if w > 1 else ""), v, "claim/s", one)
    finally:
        pg_peer("stop", pg[0])


# The enqueue measured alone: messages sent an hour from now (scheduled),
# so that the service delivers none of them while wrk runs; the high-water
# mark out of the way of what a run stores.
HOLD_S = 3600
HOLD_ARGS = ("--queue-high-water", "1000000000")


def enqueue_bodies(tmp, held):
    """The one-message and batch-of-100 bodies written under tmp: paths
    (one, batch); held: each with send_at HOLD_S seconds from now."""
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + HOLD_S))
    extra = {"send_at": when} if held else {}
    one = os.path.join(tmp, "one%s.json" % ("-held" if held else ""))
    with open(one, "w") as f:
        json.dump(dict(message(), **extra), f)
    batch = os.path.join(tmp, "batch%s.json" % ("-held" if held else ""))
    with open(batch, "w") as f:
        json.dump({"messages": [dict(message(i), **extra) for i in range(100)]}, f)
    return one, batch


def enqueue_rates(sink_port, tmp, sync, held):
    """Durable enqueue rates (one a request, batches of 100) with
    queue.synchronous sync; held: with delivery idle (enqueue_bodies)."""
    one, batch = enqueue_bodies(tmp, held)
    x = ("--queue-synchronous", sync) + (HOLD_ARGS if held else ())
    return (http_rate(sink_port, one, 1, "respond-async", x),
            http_rate(sink_port, batch, 100, "respond-async", x))


def queue_layer(sink_port, ref):
    print("5. Durable queue (Prefer: respond-async)")
    tmp = tempfile.mkdtemp()
    one, batch = enqueue_bodies(tmp, False)
    sync1 = http_rate(sink_port, one, 1)
    syncb = http_rate(sink_port, batch, 100)
    row("queue", "synchronous, one message a request", sync1, "msg/s")
    row("queue", "synchronous, batches of 100", syncb, "msg/s")
    for sync in ("full", "normal"):
        a1, ab = enqueue_rates(sink_port, tmp, sync, True)
        row("queue", "durable enqueue (%s), one a request, delivery idle" % sync,
            a1, "msg/s", sync1, ">= 2.0" if sync == "full" else None)
        row("queue", "durable enqueue (%s), batches of 100, delivery idle" % sync,
            ab, "msg/s", syncb, ">= 1.5" if sync == "full" else None)
    a1, ab = enqueue_rates(sink_port, tmp, "full", False)
    row("queue", "durable enqueue (full), one a request, delivering meanwhile",
        a1, "msg/s", sync1)
    row("queue", "durable enqueue (full), batches of 100, delivering meanwhile",
        ab, "msg/s", syncb)
    n = min(MSGS, 20000)
    drains = [queue_drain(sink_port, n) for _ in range(min(RUNS, 3))]
    row("queue", "drain from the queue to smtp-sink, %d messages" % n,
        statistics.median(drains), "msg/s", ref[8], ">= 1.5")


def http_layer(sink_port, ref):
    print("2. HTTP end to end (wrk -> mailpool serve -> smtp-sink)")
    tmp = tempfile.mkdtemp()
    one = os.path.join(tmp, "one.json")
    with open(one, "w") as f:
        json.dump(message(), f)
    batch = os.path.join(tmp, "batch.json")
    with open(batch, "w") as f:
        json.dump({"messages": [message(i) for i in range(100)]}, f)
    for name, path, per_req, target in (("one message a request", one, 1, 0.6),
                                        ("batches of 100", batch, 100, 1.0)):
        m = {k: statistics.median(v) for k, v in http_runs(sink_port, path, per_req).items()}
        row("http", "HTTP %s, 8 SMTP conns" % name, m["rate"], "msg/s",
            ref[8], ">= %.1f" % target)
        if ref.get("limit"):
            row("http", "  the same, as a fraction of the limit", m["rate"], "msg/s",
                ref["limit"], ">= %.2f" % (0.6 if per_req == 1 else 0.85))
        row("http", "  p50 latency per request", m["p50"], "ms")
        row("http", "  p99 latency per request", m["p99"], "ms", None,
            "< 5" if per_req == 1 else None)
        row("http", "  peak RSS of mailpool", m["rss"], "MiB")
        row("http", "  CPU seconds per 10,000 messages", m["cpu"], "s")
        if ref.get("limit"):
            off = statistics.median(http_runs(sink_port, path, per_req, extra=(
                "--queue-log-sync", "false"))["rate"])
            row("http", "  the same, queue.log_sync false, of the limit", off, "msg/s",
                ref["limit"], ">= %.2f" % (0.6 if per_req == 1 else 0.85))
    if not QUICK:
        composed_rows(sink_port, tmp)


def composed_rows(sink_port, tmp):
    """The composed form beside the envelope form of the same size."""
    paths = {}
    for name, doc in (("envelope", envelope_same_size()),
                      ("composed", composed_message())):
        paths[name] = os.path.join(tmp, name + ".json")
        with open(paths[name], "w") as f:
            json.dump(doc, f)
    env = statistics.median(http_runs(sink_port, paths["envelope"], 1)["rate"])
    row("http", "HTTP envelope form, 35 KB body, one a request", env, "msg/s")
    m = {k: statistics.median(v) for k, v in http_runs(sink_port, paths["composed"], 1).items()}
    row("http", "HTTP composed (text + HTML 5 KB, 20 KB attachment), one a request",
        m["rate"], "msg/s", env, ">= 0.5")
    row("http", "  CPU seconds per 10,000 composed messages", m["cpu"], "s")


def peers(sink_port, ref):
    print("3. Peers on the same sink (N=8 connections)")
    n, m = 8, MSGS // 4
    py = median_rate(["/usr/bin/python3", os.path.join(ROOT, "bench", "peer_smtplib.py"),
                      str(sink_port), str(n), str(m)], m)
    mine = median_rate([os.path.join(BUILD, "bench_smtp"), "--server",
                        "127.0.0.1:%d" % sink_port, "-n", str(n), "-m", str(m)], m)
    row("peers", "Python smtplib, 8 threads", py, "msg/s")
    row("peers", "smtpcore vs smtplib, 8 connections", mine, "msg/s", py, ">= 2")
    node = os.path.join(ROOT, "tools", "node_modules", "nodemailer")
    if os.path.isdir(node):
        nm = median_rate(["node", os.path.join(ROOT, "bench", "peer_nodemailer.js"),
                          str(sink_port), str(n), str(min(1000, m // 2))], min(1000, m // 2))
        row("peers", "nodemailer pool, 8 connections", nm, "msg/s")
        row("peers", "smtpcore vs nodemailer, 8 connections", mine, "msg/s", nm, ">= 20")


def scale(sink_port):
    print("4. Scale")
    tmp = tempfile.mkdtemp()
    one = os.path.join(tmp, "one.json")
    with open(one, "w") as f:
        json.dump(message(), f)
    for conns in ((1, 8, 32) if QUICK else (1, 2, 4, 8, 16, 32)):
        vals = []
        for _ in range(max(1, RUNS // 2)):
            mp, port = start_mailpool(sink_port, conns)
            r = wrk("http://127.0.0.1:%d/v1/messages" % port, one, 32, max(2, SECS // 2))
            mp.stop()
            vals.append(answered_2xx(r) / max(2, SECS // 2))
        row("scale", "HTTP one message a request, %d SMTP conns" % conns,
            statistics.median(vals), "msg/s")
    for size in ((1, 100) if QUICK else (1, 10, 100, 1000)):
        path = os.path.join(tmp, "b%d.json" % size)
        with open(path, "w") as f:
            json.dump({"messages": [message(i) for i in range(size)]}, f)
        mp, port = start_mailpool(sink_port, 8)
        r = wrk("http://127.0.0.1:%d/v1/messages/batch" % port, path, 4, max(2, SECS // 2))
        hwm, _ = proc_stats(mp.p.pid)
        mp.stop()
        row("scale", "batch of %d: messages/s" % size, answered_2xx(r) * size / max(2, SECS // 2), "msg/s")
        row("scale", "batch of %d: peak RSS" % size, hwm / 1024.0, "MiB")
    mp, port = start_mailpool(sink_port, 8)
    socks = []
    for _ in range(1000):
        s = socket.create_connection(("127.0.0.1", port))
        socks.append(s)
    time.sleep(1)
    hwm, _ = proc_stats(mp.p.pid)
    for s in socks:
        s.close()
    mp.stop()
    row("scale", "peak RSS with 1,000 idle HTTP connections", hwm / 1024.0, "MiB", None, "<= 64")
    full_queue_rss()


def full_queue_rss():
    """Peak RSS with 1,000 HTTP connections each waiting on a message and
    the job queue full: a sink that sits 60 s on every final dot, the
    default queue (1024) and 8 workers; 1,000 single-message requests, then
    a batch of 100 that fills the queue (its overflow is answered at once).
    """
    port = free_port()
    user = ["-u", "nobody"] if os.geteuid() == 0 else []
    slow = Proc(["/usr/sbin/smtp-sink"] + user + ["-W", ".:60", "127.0.0.1:%d" % port, "1024"])
    if not wait_port(port):
        raise SystemExit("bench: slow smtp-sink did not start")
    hp = free_port()
    mp = Proc([os.path.join(BUILD, "mailpool"), "serve", "--relay-host", "127.0.0.1",
               "--relay-port", str(port), "--relay-tls", "none",
               "--http-listen", "127.0.0.1:%d" % hp, "--log-level", "error",
               "--queue-path", os.path.join(BUILD, "bench-queue-%d.db" % hp)])
    socks = []
    try:
        if not wait_port(hp):
            raise SystemExit("bench: mailpool serve did not start")
        def post(path, doc):
            body = json.dumps(doc).encode()
            s = socket.create_connection(("127.0.0.1", hp))
            s.sendall(b"POST %s HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % (path.encode(), len(body)) + body)
            socks.append(s)
        for i in range(1000):
            post("/v1/messages", message(i))
        post("/v1/messages/batch", {"messages": [message(i) for i in range(100)]})
        depth = 0
        for _ in range(50):
            time.sleep(0.2)
            m = subprocess.run(["curl", "-s", "http://127.0.0.1:%d/metrics" % hp],
                               stdout=subprocess.PIPE, text=True).stdout
            g = re.search(r"^mailpool_pool_queue_depth (\d+)", m, re.M)
            depth = int(g.group(1)) if g else 0
            if depth >= 1024:
                break
        hwm, _ = proc_stats(mp.p.pid)
    finally:
        for s in socks:
            s.close()
        mp.stop()
        slow.stop()
    row("scale", "peak RSS, 1,000 HTTP connections, queue %d/1024" % depth, hwm / 1024.0,
        "MiB", None, "<= 64")


def dkim_layer(sink_port):
    print("6. DKIM signing")
    out = subprocess.run([os.path.join(BUILD, "bench_dkim")],
                         stdout=subprocess.PIPE, text=True, check=True).stdout
    for line in out.splitlines():
        r = json.loads(line)
        row("dkim", "sign %s, %d KB message" % (r["alg"], r["bytes"] // 1024),
            r["us"], "us")
    tmp = tempfile.mkdtemp()
    keys = {}
    for alg, extra in (("rsa", ["--bits", "2048"]), ("ed25519", [])):
        keys[alg] = os.path.join(tmp, alg + ".pem")
        subprocess.run(["certtool", "--generate-privkey", "--key-type", alg,
                        "--no-text", "--outfile", keys[alg]] + extra,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=True)
    one = os.path.join(tmp, "one.json")
    with open(one, "w") as f:
        json.dump(message(), f)
    off = http_rate(sink_port, one, 1)
    on = http_rate(sink_port, one, 1, extra=(
        "--dkim-domain", "example.org", "--dkim-selector", "b1",
        "--dkim-key-file", keys["rsa"], "--dkim-ed25519-selector", "b2",
        "--dkim-ed25519-key-file", keys["ed25519"]))
    row("dkim", "HTTP one message a request, signing off", off, "msg/s")
    row("dkim", "HTTP one message a request, rsa + ed25519 on", on, "msg/s",
        off)


def main():
    bad = [x for x in SECTIONS if x not in ALL_SECTIONS]
    if bad:
        raise SystemExit("bench: unknown section(s) %s; choose from %s" %
                         (", ".join(bad), ",".join(ALL_SECTIONS)))
    print("mailpool benchmarks: %d runs each, median; %s, %d cores; %s" %
          (RUNS, os.uname().machine, os.cpu_count(), BUILD))
    sink, port = start_sink()
    try:
        ref = None
        if "smtp" in SECTIONS:
            ref = smtp_layer(port)
        elif "http" in SECTIONS or "queue" in SECTIONS:
            ref = smtp_reference(port)
        if "http" in SECTIONS:
            ref["limit"] = limit_row(port)
            http_layer(port, ref)
        if "peers" in SECTIONS:
            peers(port, ref)
        if "scale" in SECTIONS:
            scale(port)
        if "queue" in SECTIONS:
            queue_layer(port, ref)
        if "dkim" in SECTIONS:
            dkim_layer(port)
        if "scaleout" in SECTIONS:
            scaleout_layer(port)
    finally:
        sink.stop()
    print("\n| section | measurement | value | unit | ratio | target |")
    print("|---|---|---|---|---|---|")
    for s, w, v, u, r, t in rows:
        print("| %s | %s | %.1f | %s | %s | %s |" % (s, w.strip(), v, u,
              "" if r is None else "%.2f" % r, t or ""))


if __name__ == "__main__":
    main()
