#!/bin/sh
# test_deploy.sh - deploy/kubernetes/ and deploy/compose.yaml: yamllint
# (deploy/.yamllint, warnings are errors), then tests/support/deploy_check.py:
# every MAILPOOL_* variable they set is a key of `mailpool serve
# --print-config` and its value loads, the Deployment's hardening and probes,
# and a smoke run of `mailpool serve` with the ConfigMap's environment and the
# service-link variables Kubernetes would inject.  Last line:
# "test_deploy: N passed, M failed".
set -u
cd "$(dirname "$0")/../.."
lint=0
if yamllint -s -c deploy/.yamllint deploy/; then
    echo "ok: yamllint deploy/"
else
    echo "FAIL: yamllint deploy/"
    lint=1
fi
out=$(/usr/bin/python3 tests/support/deploy_check.py)
rc=$?
echo "$out" | sed '$d'
last=$(echo "$out" | tail -1)
pass=$(echo "$last" | sed -n 's/^test_deploy: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p')
failed=$(echo "$last" | sed -n 's/^test_deploy: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p')
[ -n "$pass" ] || { echo "$last"; pass=0; failed=1; }
[ $lint -eq 0 ] && pass=$((pass + 1)) || failed=$((failed + 1))
echo "test_deploy: $pass passed, $failed failed"
[ "$failed" -eq 0 ] && [ $rc -eq 0 ]
