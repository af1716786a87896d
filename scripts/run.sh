#!/bin/sh
# run.sh - the main job for `make run`: a relay on 127.0.0.1 and
# `mailpool serve` in front of it on MAILPOOL_HTTP_LISTEN (default
# 127.0.0.1:$PORT, PORT default 8025: `make run PORT=9025` when 8025 is
# taken).  The relay is RELAY=demo (default: scripts/demo_relay.py, which
# refuses nobody@... so the README's code-700 example answers as shown) or
# RELAY=smtp-sink (Postfix's smtp-sink: accepts everything, for load tests).
# Ctrl-C stops both.
set -eu
cd "$(dirname "$0")/.."
listen="${MAILPOOL_HTTP_LISTEN:-127.0.0.1:${PORT:-8025}}"

# The relay's port: 2525 when it is free (the README's `mailpool send
# --server 127.0.0.1:2525` examples), else any free port (the banner
# names it).
free_port() {
    /usr/bin/python3 -c 'import socket
s = socket.socket()
try:
    s.bind(("127.0.0.1", 2525))
except OSError:
    s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])' 2>/dev/null || echo 2525
}
sink_port=$(free_port)
if [ "$(id -u)" -eq 0 ]; then user="-u nobody"; else user=""; fi
case "${RELAY:-demo}" in
demo)
    /usr/bin/python3 scripts/demo_relay.py "$sink_port" &
    relay_name="the demo relay (refuses nobody@...)" ;;
smtp-sink)
    /usr/sbin/smtp-sink $user 127.0.0.1:"$sink_port" 256 &
    relay_name="smtp-sink" ;;
*)
    echo "run.sh: RELAY must be demo or smtp-sink, not '$RELAY'" >&2
    exit 2 ;;
esac
sink=$!
# The service's first send should not race the relay's start.
/usr/bin/python3 - "$sink_port" <<'PY' || true
import socket, sys, time
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.5).close()
        break
    except OSError:
        time.sleep(0.05)
PY
# Never fails: under set -e a failing cleanup would make Ctrl-C exit 1
# (and make print "*** Error 1") instead of 0.
cleanup() {
    kill "$sink" 2>/dev/null || true
    [ -z "${mp:-}" ] || kill "$mp" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap 'cleanup; exit 0' INT TERM
trap cleanup EXIT

cat <<MSG
mailpool: relay $relay_name on 127.0.0.1:$sink_port, HTTP API on http://$listen
Send a message from another terminal:

  curl -s http://$listen/v1/messages -H 'Content-Type: application/json' \\
    -d '{"from":"me@example.org","to":["you@example.org"],"headers":{"Subject":"hello"},"body":"Hi there."}'

Ctrl-C stops both.
MSG
# The binary of this build (make asan/tsan: the instrumented one).
"${MAILPOOL_BIN:-build/mailpool}" serve --relay-host 127.0.0.1 --relay-port "$sink_port" \
    --relay-tls none --http-listen "$listen" \
    --queue-path "${MAILPOOL_QUEUE_PATH:-build/mailpool-queue.db}" &
mp=$!
wait "$mp"
