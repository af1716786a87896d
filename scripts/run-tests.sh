#!/bin/sh
# run-tests.sh - run test binaries one by one, then print one closing line
# "tests: N passed, N failed" counting binaries.  VALGRIND=1 runs each under
# memcheck.
set -u
pass=0
fail=0
failed=""
for t in "$@"; do
    echo "=== $t"
    if [ -n "${VALGRIND:-}" ]; then
        valgrind --quiet --error-exitcode=99 --leak-check=full \
            --errors-for-leak-kinds=definite --trace-children=no "$t"
    else
        "$t"
    fi
    if [ $? -eq 0 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); failed="$failed $t"; fi
done
[ -n "$failed" ] && echo "failed:$failed"
echo "tests: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
