#!/bin/sh
# test_dockerfile.sh - the Dockerfile lints clean (dockerfile-utils, npm) and
# its runtime stage installs every shared library `ldd build/mailpool` names
# (directly, or through the Depends of a listed package, or in the base image).
# A missing build/mailpool, or one whose ldd names no library, is a failure.
# The final stage's USER is numeric (uid:gid, not 0), so Kubernetes'
# runAsNonRoot can verify it.
set -u
cd "$(dirname "$0")/../.."
fail=0
tools/node_modules/.bin/dockerfile-utils lint Dockerfile || { echo "FAIL: dockerfile lint"; fail=1; }

# The runtime stage's package list: the apt-get install line after the last FROM.
pkgs=$(awk '/^FROM/{stage++} stage==2' Dockerfile | tr '\\\n' '  ' |
       sed -n 's/.*apt-get install -y --no-install-recommends \([^&]*\)&&.*/\1/p')
[ -n "$pkgs" ] || { echo "FAIL: no runtime apt-get install line found"; exit 1; }
closure=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
          --no-breaks --no-replaces --no-enhances $pkgs 2>/dev/null |
          grep -v '^ ' | sed 's/:.*//' | sort -u)
user=$(awk '/^FROM/{stage++} stage==2 && /^USER/ {print $2}' Dockerfile | tail -1)
if echo "$user" | grep -Eq '^[1-9][0-9]*(:[1-9][0-9]*)?$'; then
    echo "ok: USER $user"
else
    echo "FAIL: the runtime stage's USER is '$user', not a numeric non-root uid[:gid]"
    fail=1
fi

# The image holds a release build, never a sanitizer's: check build/mailpool,
# made (or brought up to date) here with the release flags even when this
# runs under make asan or make tsan.
bin=build/mailpool
make --no-print-directory -s all BUILD=build SAN= OPT="-O2 -g" >/dev/null ||
    { echo "FAIL: make all (release) failed"; fail=1; }
if [ ! -x "$bin" ]; then
    echo "FAIL: $bin does not exist (run make all first)"
    fail=1
    libs=""
else
    libs=$(ldd "$bin" | awk '/=>/ {print $3}')
    [ -n "$libs" ] || { echo "FAIL: ldd $bin names no library"; fail=1; }
fi
# Essential packages of debian:bookworm-slim.
base="libc6 libgcc-s1 libstdc++6 zlib1g libzstd1 liblzma5 libbz2-1.0 libcrypt1 libselinux1 libpcre2-8-0"
for lib in $libs; do
    real=$(readlink -f "$lib")
    pkg=$(dpkg -S "$real" 2>/dev/null | head -1 | cut -d: -f1)
    [ -n "$pkg" ] || pkg=$(dpkg -S "$lib" 2>/dev/null | head -1 | cut -d: -f1)
    if echo "$closure $base" | tr ' ' '\n' | grep -qx "$pkg"; then
        echo "ok: $lib ($pkg)"
    else
        echo "FAIL: $lib comes from $pkg, which the runtime stage does not install"
        fail=1
    fi
done
[ $fail -eq 0 ] && echo "test_dockerfile: 1 passed, 0 failed" || echo "test_dockerfile: 0 passed, 1 failed"
exit $fail
