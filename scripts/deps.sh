#!/bin/sh
# deps.sh - install the Debian 12 packages mailpool needs to build, run and
# test.  As root it runs apt-get; otherwise it prints the command and fails.
#   scripts/deps.sh build   compiler and libraries
#   scripts/deps.sh run     build + the smtp-sink relay used by `make run`
#   scripts/deps.sh test    run + every test peer and tool
#   scripts/deps.sh tools   the npm tools in tools/ (npm ci): linters, and
#                           smtp-server + mailparser for the test peers
#   scripts/deps.sh exim    Exim 4 from Debian's .debs, extracted (never
#                           installed: that would remove Postfix) into
#                           $MAILPOOL_EXIM_DIR (default /var/cache/mailpool-test/exim)
#   scripts/deps.sh container  podman, runc and debootstrap for `make container`
#   scripts/deps.sh lint    clang-format, clang-tidy and cppcheck (make lint,
#                           make format-check)
set -eu

build_pkgs="gcc make pkg-config libc6-dev libmicrohttpd-dev libjansson-dev
libgnutls28-dev libinih-dev libsqlite3-dev libgmime-3.0-dev libidn2-dev nettle-dev libpq-dev
libcurl4-gnutls-dev"
run_pkgs="postfix curl python3 python3-aiosmtpd"
# sasl2-bin: the Postfix peer's sasldb; the lib* after it: what the unpacked
# (not installed) Exim binary links against; postgresql-15: the server the
# queue tests start for themselves (tests/peers/postgres-peer.sh).
test_pkgs="libcmocka-dev libcurl4-gnutls-dev python3 python3-aiosmtpd gnutls-bin valgrind
python3-dkim python3-jsonschema
sasl2-bin libsasl2-modules libidn12 libgnutls-dane0 libpcre2-8-0 libdb5.3
postgresql-15"

# Linters for deploy/ (yamllint) and /metrics (promtool, in prometheus).
ops_pkgs="yamllint prometheus"
container_pkgs="podman runc debootstrap"
# The message log page's browser test (tests/integration/test_ui.c drives
# Debian's Chromium through playwright-core, from tools/).
ui_pkgs="chromium chromium-driver"

# npm tools (linters) live in tools/, pinned by tools/package-lock.json.
if [ "${1:-}" = tools ]; then
    cd "$(dirname "$0")/../tools"
    if ! command -v npm >/dev/null 2>&1; then
        "$0" npm || exit 1
    fi
    [ -d node_modules/dockerfile-utils ] && [ -d node_modules/@redocly/cli ] &&
        [ -d node_modules/smtp-server ] && [ -d node_modules/mailparser ] &&
        [ -d node_modules/playwright-core ] && exit 0
    echo "deps: npm ci in tools/" >&2
    npm ci --no-audit --no-fund --loglevel=error >&2
    exit $?
fi

# Exim's binary and its shared files, unpacked from the Debian packages.
if [ "${1:-}" = exim ]; then
    dir=${MAILPOOL_EXIM_DIR:-/var/cache/mailpool-test/exim}
    [ -x "$dir/root/usr/sbin/exim4" ] && exit 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "deps: the Exim peer needs root (apt-get download, a mount namespace)" >&2
        exit 1
    fi
    echo "deps: unpacking exim4-daemon-light and exim4-base into $dir" >&2
    tmp=$(mktemp -d)
    chown _apt "$tmp" 2>/dev/null || chmod 0777 "$tmp"   # apt downloads as _apt
    trap 'rm -rf "$tmp"' EXIT
    (cd "$tmp" && { apt-get download exim4-daemon-light exim4-base >&2 ||
        { apt-get update -q >&2 && apt-get download exim4-daemon-light exim4-base >&2; }; })
    mkdir -p "$dir"
    rm -rf "$dir/root.new"
    for f in "$tmp"/*.deb; do dpkg -x "$f" "$dir/root.new"; done
    rm -rf "$dir/root"
    mv "$dir/root.new" "$dir/root"
    if ldd "$dir/root/usr/sbin/exim4" | grep 'not found' >&2; then
        echo "deps: the unpacked exim4 misses the libraries above (scripts/deps.sh test)" >&2
        exit 1
    fi
    exit 0
fi

case "${1:-test}" in
    npm)   want="nodejs npm" ;;
    fuzz)  want="$build_pkgs clang libclang-rt-14-dev" ;;
    bench) want="$build_pkgs $run_pkgs wrk python3 postgresql-15" ;;
    build) want="$build_pkgs" ;;
    run)   want="$build_pkgs $run_pkgs" ;;
    test)  want="$build_pkgs $run_pkgs $test_pkgs" ;;
    lint)  want="$build_pkgs clang-format clang-tidy cppcheck" ;;
    container) want="$container_pkgs" ;;
    *) echo "usage: $0 build|run|test|tools|exim|bench|fuzz|container" >&2; exit 2 ;;
esac

[ "${1:-test}" = test ] && want="$want $ops_pkgs"
[ "${1:-test}" = test ] && want="$want $ui_pkgs"

missing=""
for p in $want; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "mailpool needs these Debian packages:$missing" >&2
    echo "install them with:  sudo apt-get install -y$missing" >&2
    exit 1
fi
echo "deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# postfix must not start a daemon of its own on port 25.
echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections 2>/dev/null || true
# postgresql-15 must not create and start a cluster of its own on port 5432.
if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
fi
apt-get update -q >&2
apt-get install -y -q --no-install-recommends $missing >&2
