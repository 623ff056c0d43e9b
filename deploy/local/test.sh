#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs and starts PostgreSQL and Kafka,
# checks formatting and lints, builds, and runs every test against the real services
# (PostgreSQL 15, plus the server-dependent tests on 18; tests/matrix.sh runs them on 13 to 18).
# Extra arguments go to `cargo test` (e.g. a test name filter).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=SCRIPTDIR/env.sh
source "$here/env.sh"
export PATH="$HOME/.cargo/bin:$PATH"

"$here/deps.sh"
"$here/postgres.sh" start >/dev/null
# Slots that killed or failed test runs left behind (named by tests/src unique():
# <prefix>_<pid>_<8 hex>, and <…>_<shard> for source.shards) would keep their WAL forever
# on a machine that runs the suite again and again; inactive ones are dropped. (Four
# shard slots of a failed run once held 6.5 GB each: the pattern missed the suffix.)
"$here/postgres.sh" psql -Atc "SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots
  WHERE NOT active AND slot_name ~ '_[0-9]+_[0-9a-f]{8}(_[0-9]+)?\$'" | sed 's/^/dropped leftover test slots: /'
"$here/kafka.sh" start
"$here/aws.sh" start
"$here/aws.sh" fauxqs-start
"$here/jaeger.sh" start
# The chaos test (tests/tests/chaos.rs) starts its own PostgreSQL, Kafka and Toxiproxy;
# building Toxiproxy up front keeps that out of the test's time.
"$here/toxiproxy.sh" install

cd "$root"
echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== build"
cargo build --workspace --bins --locked
echo "== tests"
log="$(mktemp)"
watchdog_report="$(mktemp)"
# The longest test binary takes about 4 minutes; one still running after 15 is hung.
"$here/test-watchdog.sh" "$CARGO_TARGET_DIR" "${OUTBOX_RELAY_TEST_LIMIT_SECS:-900}" "$watchdog_report" &
watchdog=$!
trap 'kill "$watchdog" 2>/dev/null; rm -f "$log" "$watchdog_report"' EXIT
set +e
cargo test --workspace --locked --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# The server-dependent tests again on the newest PostgreSQL (its own cluster, from the
# embedded server build on Maven Central); the whole matrix 13–18 is tests/matrix.sh.
echo "== PostgreSQL 18: e2e, crash, pg_restart, slot_lost, wal_safety, failover_slot, pgoutput_versions"
set +e
"$root/tests/matrix.sh" 18 2>&1 | tee -a "$log"
newest_status=${PIPESTATUS[0]}
set -e
if [ "$status" -eq 0 ]; then status=$newest_status; fi

echo "== deployment checks (image, compose, chart, dashboards, alerts)"
set +e
"$root/deploy/checks/run.sh" 2>&1 | tee -a "$log"
checks_status=${PIPESTATUS[0]}
set -e

# One closing line for the whole run: every cargo test binary plus the deployment checks.
read -r passed failed < <(awk '
  /^test result:/ { p += $4; f += $6 }
  /^[0-9]+ passed, [0-9]+ failed$/ { p += $1; f += $3 }
  END { print p + 0, f + 0 }' "$log")
hung=$(grep -c '^== watchdog: killed' "$watchdog_report" || true)
failed=$((failed + hung))
if [ "$hung" -gt 0 ]; then
  echo "the watchdog ended $hung hung test binaries (stacks above, under '== watchdog')"
  if [ "$status" -eq 0 ]; then status=1; fi
fi
echo "summary: $passed passed, $failed failed"
if [ "$status" -ne 0 ]; then exit "$status"; fi
exit "$checks_status"
