#!/bin/sh
# test_run.sh - `make run PORT=N` as the README tells a user: the service
# answers on 127.0.0.1:N, the message of the printed curl command is
# relayed by smtp-sink (250), and Ctrl-C (SIGINT to the whole process group,
# as a terminal sends it) stops the service and the sink with no
# "make: *** ..." line.  Last line: "test_run: N passed, M failed".
cd "$(dirname "$0")/../.."
exec /usr/bin/python3 - <<'PY'
import json, os, signal, socket, subprocess, time, urllib.request

res = {"pass": 0, "fail": 0}
def check(ok, what):
    res["pass" if ok else "fail"] += 1
    print(("ok: " if ok else "FAIL: ") + what, flush=True)

s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
base = "http://127.0.0.1:%d" % port
p = subprocess.Popen(["make", "--no-print-directory", "run", "PORT=%d" % port],
                     start_new_session=True, stdout=subprocess.PIPE,
                     stderr=subprocess.STDOUT)
try:
    up = False
    for _ in range(300):
        try:
            with urllib.request.urlopen(base + "/healthz", timeout=2) as r:
                up = r.status == 200
        except OSError:
            pass
        if up or p.poll() is not None:
            break
        time.sleep(0.1)
    check(up, "make run PORT=%d: /healthz answers on 127.0.0.1:%d" % (port, port))
    if up:
        body = json.dumps({"from": "me@example.org", "to": ["you@example.org"],
                           "headers": {"Subject": "hello"}, "body": "Hi there."})
        req = urllib.request.Request(base + "/v1/messages", data=body.encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                got = json.loads(r.read())
        except OSError as e:
            got = {"error": str(e)}
        check(got.get("code") == 250 and got.get("status") == "sent",
              "the README's message is relayed by smtp-sink (got %s)" % got)
    os.killpg(p.pid, signal.SIGINT)
    try:
        out, _ = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, _ = p.communicate()
    text = out.decode(errors="replace")
    check("*** " not in text, "Ctrl-C: no make error line (%s)"
          % [l for l in text.splitlines() if "*** " in l])
    check('"event":"stopped"' in text, "Ctrl-C: the service drained and stopped")
    time.sleep(0.2)
    left = subprocess.run(["pgrep", "-g", str(p.pid)], capture_output=True, text=True).stdout.split()
    check(not left, "Ctrl-C: nothing of the process group is left (%s)" % left)
finally:
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    for pid in subprocess.run(["pgrep", "-g", str(p.pid)], capture_output=True,
                              text=True).stdout.split():
        os.kill(int(pid), signal.SIGKILL)
print("test_run: %d passed, %d failed" % (res["pass"], res["fail"]))
raise SystemExit(1 if res["fail"] else 0)
PY
