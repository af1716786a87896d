#!/bin/sh
# test_container.sh - the image built by `make container`, run the way an
# orchestrator runs it: podman with a read-only root file system, every
# capability dropped, host networking, the service on 127.0.0.1 only, and
# Postfix's smtp-sink on the host as the relay.  Checks that it runs as a
# non-root numeric user, answers /healthz, relays a message (the sink's dump
# holds it), `podman healthcheck run` reports healthy, and `podman stop`
# drains and the container exits 0.  Then once more with HTTPS
# (http.tls_cert_file/tls_key_file mounted read-only): /healthz over TLS
# and the image's HEALTHCHECK (mailpool healthcheck) follow.  Stops the
# containers and the sink it started by their ids.  Last line: "test_container: N passed, M failed".
#   MAILPOOL_IMAGE   the image to run (default localhost/mailpool:latest)
set -u
cd "$(dirname "$0")/../.."
image="${MAILPOOL_IMAGE:-localhost/mailpool:latest}"
podman() { command podman --runtime runc "$@"; }
pass=0
fail=0
cid=""
sink=""
dir=$(mktemp -d "${TMPDIR:-/tmp}/mailpool-ctest.XXXXXX")

ok()  { pass=$((pass + 1)); echo "ok: $*"; }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
check() { desc=$1; shift; if "$@"; then ok "$desc"; else bad "$desc"; fi; }

cleanup() {
    [ -n "$cid" ] && podman rm -f -t 0 "$cid" >/dev/null 2>&1
    [ -n "$sink" ] && kill "$sink" 2>/dev/null && wait "$sink" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Polls CMD... every 0.2 s for up to $1 seconds.
wait_for() {
    n=$(($1 * 5)); shift
    while [ "$n" -gt 0 ]; do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
        n=$((n - 1))
    done
    return 1
}

finish() {
    echo "test_container: $pass passed, $fail failed"
    [ "$fail" -eq 0 ]
    exit $?
}

if ! podman image exists "$image"; then
    bad "image $image is not built (make container)"
    finish
fi
user=$(podman image inspect --format '{{.Config.User}}' "$image")
check "the image's USER ($user) is a numeric non-root uid:gid" \
    sh -c "echo '$user' | grep -Eq '^[1-9][0-9]*:[1-9][0-9]*$'"

# The relay: smtp-sink on the host, dumping what it receives.
sink_port=$(free_port)
http_port=$(free_port)
# smtp-sink -D appends to DIR/dump<random hex>, written as the user it
# drops to.
mkdir "$dir/sink"
chmod 755 "$dir"
if [ "$(id -u)" -eq 0 ]; then
    chown nobody "$dir/sink"
    /usr/sbin/smtp-sink -u nobody -D "$dir/sink/dump" 127.0.0.1:"$sink_port" 16 &
else
    /usr/sbin/smtp-sink -D "$dir/sink/dump" 127.0.0.1:"$sink_port" 16 &
fi
sink=$!

cid=$(podman run -d --network host --read-only --cap-drop ALL \
    --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
    -e MAILPOOL_HTTP_LISTEN=127.0.0.1:"$http_port" \
    -e MAILPOOL_RELAY_HOST=127.0.0.1 -e MAILPOOL_RELAY_PORT="$sink_port" \
    -e MAILPOOL_RELAY_TLS=none \
    "$image" 2>"$dir/podman.err") || {
    cat "$dir/podman.err"; bad "podman run"; cid=""; finish; }
base="http://127.0.0.1:$http_port"

check "/healthz answers 200 within 20 s" \
    wait_for 20 curl -sf "$base/healthz"
if [ "$fail" -ne 0 ]; then
    podman logs "$cid" 2>&1 | tail -20
    finish
fi

uids=$(podman exec "$cid" sh -c 'cat /proc/[0-9]*/status' | awk '/^Uid:/ {print $2}' | sort -u | tr '\n' ' ')
check "every process in the container runs as uid 10001 (got: $uids)" \
    test "$uids" = "10001 "
check "id -u inside the container is 10001" \
    test "$(podman exec "$cid" id -u)" = 10001
check "the root file system is read-only" \
    sh -c "! podman --runtime runc exec '$cid' touch /usr/local/bin/x 2>/dev/null"
capeff=$(podman exec "$cid" awk '/^CapEff:/ {print $2}' /proc/1/status)
check "no capability is effective (CapEff $capeff)" \
    test "$capeff" = 0000000000000000

token="container-test-$$-$(date +%s)"
resp=$(curl -s -o "$dir/resp" -w '%{http_code}' "$base/v1/messages" \
    -H 'Content-Type: application/json' \
    -d "{\"from\":\"sender@example.org\",\"to\":[\"rcpt@example.org\"],\"headers\":{\"Subject\":\"$token\"},\"body\":\"Sent from the container.\"}")
code=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("code"))' "$dir/resp" 2>/dev/null)
check "POST /v1/messages is 200 with code 250 (got HTTP $resp, code $code)" \
    test "$resp" = 200 -a "$code" = 250
check "the sink's dump holds the message (Subject: $token)" \
    wait_for 5 sh -c "cat '$dir'/sink/dump* | grep -q '^Subject: $token'"

check "podman healthcheck run reports healthy" \
    sh -c "podman --runtime runc healthcheck run '$cid' 2>>'$dir/podman.err'"
status=$(podman inspect --format '{{.State.Health.Status}}' "$cid" 2>/dev/null)
check "the container's health status is healthy (got: $status)" \
    test "$status" = healthy

podman stop -t 30 "$cid" >/dev/null 2>>"$dir/podman.err"
exit_code=$(podman inspect --format '{{.State.ExitCode}}' "$cid")
check "podman stop: the container exits 0 (got: $exit_code)" \
    test "$exit_code" = 0
check "podman stop: the service logged the drain" \
    sh -c "podman --runtime runc logs '$cid' 2>&1 | grep -q draining"
podman rm -f -t 0 "$cid" >/dev/null 2>&1
cid=""

# HTTPS: a self-signed pair readable by the image's user, mounted read-only.
sh tests/peers/make-cert.sh "$dir/tls" >/dev/null
chmod 755 "$dir/tls"
chmod 644 "$dir/tls/cert.pem"
if [ "$(id -u)" -eq 0 ]; then chown 10001:10001 "$dir/tls/key.pem"; else chmod 644 "$dir/tls/key.pem"; fi
http_port=$(free_port)
cid=$(podman run -d --network host --read-only --cap-drop ALL \
    --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
    -v "$dir/tls:/tls:ro" \
    -e MAILPOOL_HTTP_LISTEN=127.0.0.1:"$http_port" \
    -e MAILPOOL_HTTP_TLS_CERT_FILE=/tls/cert.pem \
    -e MAILPOOL_HTTP_TLS_KEY_FILE=/tls/key.pem \
    -e MAILPOOL_RELAY_HOST=127.0.0.1 -e MAILPOOL_RELAY_PORT="$sink_port" \
    -e MAILPOOL_RELAY_TLS=none \
    "$image" 2>>"$dir/podman.err") || { bad "podman run (HTTPS)"; cid=""; finish; }
check "HTTPS: /healthz answers 200 over TLS within 20 s" \
    wait_for 20 curl -sf --cacert "$dir/tls/cert.pem" "https://127.0.0.1:$http_port/healthz"
check "HTTPS: podman healthcheck run (mailpool healthcheck over TLS) reports healthy" \
    sh -c "podman --runtime runc healthcheck run '$cid' 2>>'$dir/podman.err'"
podman stop -t 30 "$cid" >/dev/null 2>>"$dir/podman.err"
check "HTTPS: podman stop: the container exits 0" \
    test "$(podman inspect --format '{{.State.ExitCode}}' "$cid")" = 0
finish
