#!/usr/bin/env python3
"""The SQLite writer thread's instructions a message, by callgrind.

    bench/writer_ir.py [BUILD...]      (default: build)

For each build and each of bench_writer's modes (log, enqueue, drain), runs
`valgrind --tool=callgrind --toggle-collect=sq_writer_main` on a small and a
large N and prints (Ir(large) - Ir(small)) / (large - small): the writer's
instructions a message, start-up and the schema excluded.  Counts, not
timings: they hold on a loaded machine.  WIR_SMALL, WIR_LARGE set the Ns.
"""
import os
import re
import subprocess
import sys
import tempfile

SMALL = int(os.environ.get("WIR_SMALL", "200"))
LARGE = int(os.environ.get("WIR_LARGE", "2200"))
MODES = os.environ.get("WIR_MODES", "log,enqueue,drain").split(",")


def ir(build, mode, n, tmp):
    db = os.path.join(tmp, "q-%s-%d.db" % (mode, n))
    out = os.path.join(tmp, "cg-%s-%d.out" % (mode, n))
    subprocess.run(["valgrind", "--tool=callgrind", "--toggle-collect=sq_writer_main",
                    "--callgrind-out-file=" + out,
                    os.path.join(build, "bench_writer"), db, mode, str(n)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(out) as f:
        m = re.search(r"^summary: (\d+)", f.read(), re.M)
    return int(m.group(1))


def main():
    builds = sys.argv[1:] or ["build"]
    for b in builds:
        tmp = tempfile.mkdtemp()
        row = []
        for mode in MODES:
            lo, hi = ir(b, mode, SMALL, tmp), ir(b, mode, LARGE, tmp)
            row.append("%s %.0f" % (mode, (hi - lo) / (LARGE - SMALL)))
        print("%s: writer instructions a message: %s" % (b, ", ".join(row)), flush=True)


if __name__ == "__main__":
    main()
