#!/usr/bin/env bash
# The test command: installs what the tests need (Debian peers, npm packages),
# builds, runs the whole suite, and ends with a plain "N passed, N failed" line.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-peers.sh || { echo "test: could not install the test peers" >&2; exit 3; }
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund >/dev/null || { echo "test: npm ci failed" >&2; exit 3; }
fi
npm run --silent build || { echo "test: build (tsc, yargs bundle) failed" >&2; exit 2; }
log=$(mktemp)
npx tap --reporter=tap "$@" 2>&1 | tee "$log" | grep -E '^(not ok|ok|#)' | grep -vE '^# (Subtest|time=)' 
status=${PIPESTATUS[0]}
# node-tap's closing summary counts assertions: "# { total: N, pass: P, fail: F, ... }"
summary=$(grep -E '^# \{ total:' "$log" | tail -1)
pass=$(sed -nE 's/.*pass: ([0-9]+).*/\1/p' <<<"$summary"); pass=${pass:-0}
fail=$(sed -nE 's/.*fail: ([0-9]+).*/\1/p' <<<"$summary"); fail=${fail:-0}
if [ "$status" -ne 0 ] && [ "$fail" -eq 0 ]; then fail=1; tail -40 "$log"; fi
grep -B2 -A30 '^not ok' "$log" | head -200
rm -f "$log"
echo "$pass passed, $fail failed"
[ "$status" -eq 0 ] && [ "$fail" -eq 0 ]
