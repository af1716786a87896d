#!/usr/bin/env python3
"""Before/after pairs for the durable queue's rows of docs/BENCHMARKS.md.

    flock /tmp/mailpool-bench.lock bench/queue_pair.py drain DIR...
    flock /tmp/mailpool-bench.lock bench/queue_pair.py enqueue DIR...

Each DIR holds a `mailpool` binary (a build to compare).  One smtp-sink for
the whole run.  `drain`: per round, the smtp-source -d reference (N=8), then
each build drains QP_MESSAGES messages queued with one send_at (run.py's
queue_drain: from send_at to the last one sent).
`enqueue`: per build, the synchronous single-message and batch-of-100 rates
then the durable ones with queue.synchronous FULL and NORMAL while delivery
is idle (messages scheduled an hour ahead: the enqueue alone), then FULL
while the service delivers what it takes, wrk for BENCH_SECONDS.  Ratios are against figures of the same round.
"""
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402

N = int(os.environ.get("QP_MESSAGES", "10000"))
ROUNDS = int(os.environ.get("QP_ROUNDS", "3"))


def drain_rounds(sink_port, dirs):
    for r in range(ROUNDS):
        ref = run.median_rate(["/usr/sbin/smtp-source", "-d", "-s", "8", "-m", str(N),
                               "-l", "1024", "127.0.0.1:%d" % sink_port], N)
        out = ["round %d: smtp-source %.0f" % (r + 1, ref)]
        for d in dirs:
            run.BUILD = d
            v = run.queue_drain(sink_port, N)
            out.append("%s %.0f (%.2f x)" % (d, v, v / ref))
        print(" | ".join(out), flush=True)


def enqueue_rounds(sink_port, dirs):
    run.RUNS = 1
    tmp = tempfile.mkdtemp()
    one, batch = run.enqueue_bodies(tmp, False)
    for d in dirs:
        run.BUILD = d
        s1, sb = run.http_rate(sink_port, one, 1), run.http_rate(sink_port, batch, 100)
        out = ["%s: synchronous one %.0f, batches %.0f" % (d, s1, sb)]
        for sync, held in (("full", True), ("normal", True), ("full", False)):
            a1, ab = run.enqueue_rates(sink_port, tmp, sync, held)
            out.append("%s%s: one %.0f (%.2f x), batches %.0f (%.2f x)"
                       % (sync, ", idle" if held else ", delivering", a1, a1 / s1,
                          ab, ab / sb))
        print(" | ".join(out), flush=True)


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("drain", "enqueue"):
        raise SystemExit("usage: queue_pair.py drain|enqueue DIR...")
    sink, port = run.start_sink()
    try:
        (drain_rounds if sys.argv[1] == "drain" else enqueue_rounds)(port, sys.argv[2:])
    finally:
        sink.stop()


if __name__ == "__main__":
    main()
