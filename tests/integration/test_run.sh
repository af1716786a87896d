#!/bin/sh
# test_run.sh - `make run PORT=N` as the README tells a user: the service
# answers on 127.0.0.1:N, the message of the printed curl command is
# relayed (250), the README's code-700 example (its JSON read from the
# README) answers 700 with nobody@example.org refused in the demo relay's
# words, and Ctrl-C (SIGINT to the whole process group,
# as a terminal sends it) stops the service and the sink with no
# "make: *** ..." line.  Last line: "test_run: N passed, M failed".
cd "$(dirname "$0")/../.."
exec /usr/bin/python3 - <<'PY'
import json, os, re, signal, socket, subprocess, time, urllib.request

res = {"pass": 0, "fail": 0}
def check(ok, what):
    res["pass" if ok else "fail"] += 1
    print(("ok: " if ok else "FAIL: ") + what, flush=True)

def readme_example_700():
    """The JSON body of the README's curl command after "code` is 700"."""
    text = open("README.md").read()
    block = text[text.index("`code` is 700"):]
    m = re.search(r"-d '(\{.*?\})'\n", block, re.S)
    return m.group(1).encode()

def post(body):
    req = urllib.request.Request(base + "/v1/messages", data=body,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())
    except OSError as e:
        return {"error": str(e)}

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
        got = post(json.dumps({"from": "me@example.org", "to": ["you@example.org"],
                               "headers": {"Subject": "hello"}, "body": "Hi there."}).encode())
        check(got.get("code") == 250 and got.get("status") == "sent",
              "the README's message is relayed (got %s)" % got)
        got = post(readme_example_700())
        rej = got.get("rejected") or [{}]
        check(got.get("code") == 700 and got.get("status") == "partial"
              and got.get("accepted") == ["you@example.org"]
              and rej[0].get("recipient") == "nobody@example.org"
              and rej[0].get("code") == 550 and rej[0].get("enhanced") == "5.1.1"
              and rej[0].get("text") == ["5.1.1 no such user"],
              "the README's code-700 example answers as the README shows (got %s)" % got)
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
    # The relay and the service may take a moment to exit on a loaded
    # machine; what must not happen is one of them staying.
    for _ in range(100):
        left = subprocess.run(["pgrep", "-g", str(p.pid)], capture_output=True,
                              text=True).stdout.split()
        if not left:
            break
        time.sleep(0.1)
    what = subprocess.run(["ps", "-o", "pid,args", "-p", ",".join(left)],
                          capture_output=True, text=True).stdout if left else ""
    check(not left, "Ctrl-C: nothing of the process group is left (%s)" % what)
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
