#!/usr/bin/env bash
# Stress the xdist isolation: run the A.2.1 tests RUNS times in a row (default 50) with -n 2 and
# report every failed run with the tests that failed. Not a test: its output goes in the README.
#   scripts/stress-a21.sh [RUNS] [extra pytest args...]
# Exit status: 0 when every run passed, 1 otherwise. Logs: captures/stress-<time>/run-<i>.log
set -uo pipefail
cd "$(dirname "$0")/.."
runs=${1:-50}
shift || true
py=.venv/bin/python
logs=captures/stress-$(date +%Y%m%d-%H%M%S)
mkdir -p "$logs"
failed=0
start=$(date +%s)
for i in $(seq 1 "$runs"); do
  t0=$(date +%s)
  # Each run is bounded: a hang shows as a failed run (status 124), not as a stuck script.
  timeout 600 "$py" -m pytest -q -n 2 -p no:cacheprovider -rfE testcases/test_a2_1.py "$@" >"$logs/run-$i.log" 2>&1
  rc=$?
  if [ $rc -ne 0 ]; then
    failed=$((failed + 1))
    echo "run $i/$runs FAILED (status $rc, $(( $(date +%s) - t0 )) s): $logs/run-$i.log"
    grep -E '^(FAILED|ERROR) ' "$logs/run-$i.log" | sed 's/^/    /'
  else
    echo "run $i/$runs ok ($(( $(date +%s) - t0 )) s): $(tail -1 "$logs/run-$i.log")"
  fi
done
echo "stress-a21: $runs runs, $failed failed, $(( $(date +%s) - start )) s in all (logs in $logs)"
[ $failed -eq 0 ]
