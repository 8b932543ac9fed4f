#!/usr/bin/env bash
# Time one round of a test command as a whole process, on a quiet machine (nothing else using the
# CPU): load average before and after, commit, pytest's closing line, CPU time and wall time.
#   benchmarks/time_test_suite.sh LOG make test          # or: make test-fast; bash .ci/run
# Run it at least 3 times per command and quote the median and the spread; the rounds of issue 25
# are in benchmarks/results/test_suite.json.
set -uo pipefail
log=$1; shift
{ echo "uptime before: $(uptime)"; echo "commit: $(git rev-parse HEAD)$(git diff --quiet HEAD || echo ' (with uncommitted changes)')"; } > "$log"
start=$(date +%s.%N)
CI=true /usr/bin/time -f "cpu: user %U s, system %S s, wall %e s" "$@" >> "$log" 2>&1
rc=$?
end=$(date +%s.%N)
{ echo "rc: $rc"; echo "wall_s: $(echo "$end - $start" | bc)"; echo "uptime after: $(uptime)"; } >> "$log"
exit $rc
