#!/bin/sh
# run.sh - `make bench`: see bench/run.py.
exec /usr/bin/python3 "$(dirname "$0")/run.py" "$@"
