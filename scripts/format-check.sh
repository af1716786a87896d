#!/bin/sh
# format-check.sh - every tracked .c and .h file is as clang-format (the
# committed .clang-format) writes it; a file that differs is named with the
# first lines of the difference and the command that mends it.
set -u
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null 2>&1 ||
    { echo "format-check: clang-format is missing (scripts/deps.sh lint)" >&2; exit 2; }
bad=0 checked=0
for f in $(git ls-files '*.c' '*.h'); do
    checked=$((checked + 1))
    if clang-format --dry-run "$f" 2>&1 | grep -q .; then
        echo "format-check: $f differs from .clang-format (clang-format -i $f):"
        clang-format "$f" | diff -u "$f" - | sed -n '3,20p'
        bad=1
    fi
done
echo "format-check: $checked files checked"
exit $bad
