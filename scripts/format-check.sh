#!/bin/sh
# format-check.sh - every tracked .c and .h file is as clang-format (the
# committed .clang-format) writes it, except those in
# scripts/format-baseline.txt: the files written before .clang-format, not
# reformatted so that work on them merges.  A baseline file that has become
# clean is named, to be dropped from the list.
#   scripts/format-check.sh            check
#   scripts/format-check.sh --baseline print the files that differ now
set -u
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null 2>&1 ||
    { echo "format-check: clang-format is missing (scripts/deps.sh lint)" >&2; exit 2; }
base=scripts/format-baseline.txt
files=$(git ls-files '*.c' '*.h')
if [ "${1:-}" = --baseline ]; then
    for f in $files; do
        clang-format --dry-run "$f" 2>&1 | grep -q . && echo "$f"
    done
    exit 0
fi
bad=0 checked=0 excused=0
for f in $files; do
    if grep -qxF "$f" "$base"; then
        excused=$((excused + 1))
        clang-format --dry-run "$f" 2>&1 | grep -q . ||
            echo "format-check: $f is clean now: drop it from $base"
        continue
    fi
    checked=$((checked + 1))
    if clang-format --dry-run "$f" 2>&1 | grep -q .; then
        echo "format-check: $f differs from .clang-format (clang-format -i $f):"
        clang-format "$f" | diff -u "$f" - | sed -n '3,20p'
        bad=1
    fi
done
echo "format-check: $checked files checked, $excused in the baseline"
exit $bad
