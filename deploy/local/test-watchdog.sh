#!/usr/bin/env bash
# Ends a test binary that has run far longer than any test binary should, after printing
# every thread's stack, so that a hang fails the suite at the place it hung instead of
# running into CI's time limit with nothing to show. (A CI run on 2026-12-06 sat for 80
# minutes inside one test after its last bounded wait had passed.)
#
# Usage: test-watchdog.sh <cargo target dir> <limit in seconds> <report file>
# Runs until killed. Each binary it ends gets one "== watchdog: killed" line in the
# report, which deploy/local/test.sh counts as a failure.
set -uo pipefail
deps="$1/debug/deps/"
limit="$2"
report="$3"

while sleep 15; do
  for pid in $(pgrep -f "^$deps" || true); do
    age="$(ps -o etimes= -p "$pid" 2>/dev/null | tr -d ' ')"
    if [ -z "$age" ] || [ "$age" -le "$limit" ]; then
      continue
    fi
    {
      echo "== watchdog: $(ps -o args= -p "$pid" 2>/dev/null) (pid $pid) has run ${age} s, limit ${limit} s; its threads:"
      if command -v gdb >/dev/null; then
        timeout 120 gdb -q -batch -p "$pid" -ex "thread apply all bt 40" 2>&1 |
          grep -E '^(Thread|#)' | head -800
      fi
      # Its relays and helpers would outlive it (their Drop never runs) and keep slots.
      children="$(pgrep -P "$pid" || true)"
      # shellcheck disable=SC2086 # one pid per word
      kill -9 "$pid" $children 2>/dev/null
      echo "== watchdog: killed pid $pid"
    } | tee -a "$report" >&2
  done
done
