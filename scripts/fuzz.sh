#!/bin/sh
# fuzz.sh SECONDS TARGET... - build each tests/fuzz/TARGET.c with clang's
# libFuzzer (+ASan, UBSan) and run it for SECONDS from the seed corpus in
# tests/fuzz/corpus/<name>/ (copied, so the tree stays unchanged).  A crash
# leaves its input in build/fuzz/ and fails the run.
set -u
secs=$1; shift
cd "$(dirname "$0")/.."
command -v clang >/dev/null || { echo "fuzz: needs clang (apt-get install clang)"; exit 1; }
mkdir -p build/fuzz
src="$(ls smtpcore/src/*.c)"
fail=0
for t in "$@"; do
    name=${t#fuzz_}
    extra=""
    [ "$name" = json ] && extra="$(ls api/*.c result/*.c config/*.c server/*.c queue/*.c dkim/*.c util/*.c webhook/*.c) api/openapi_data.S api/ui_data.S $(ls compose/*.c) $(pkg-config --cflags --libs gmime-3.0 libidn2 libpq hogweed nettle) -ljansson -lmicrohttpd -linih -lsqlite3 -lgmp -lcurl"
    clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
        -D_GNU_SOURCE -I. -Ismtpcore/include tests/fuzz/$t.c $src $extra \
        -lgnutls -pthread -o build/fuzz/$t || { fail=1; continue; }
    work=$(mktemp -d)
    cp tests/fuzz/corpus/$name/* "$work"/ 2>/dev/null
    echo "=== $t for ${secs}s"
    if build/fuzz/$t -max_total_time="$secs" -artifact_prefix=build/fuzz/$t- \
        -print_final_stats=1 "$work" 2>build/fuzz/$t.log; then
        grep -E "stat::number_of_executed_units|Done" build/fuzz/$t.log | tail -2
    else
        echo "fuzz: $t found a crash; see build/fuzz/$t.log and build/fuzz/$t-*"
        fail=1
    fi
    rm -rf "$work"
done
exit $fail
