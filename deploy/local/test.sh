#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs and starts PostgreSQL and Kafka,
# checks formatting and lints, builds, and runs every test against the real services
# (PostgreSQL 15; tests/matrix.sh runs the server-dependent ones on 13 to 18).
# Extra arguments go to `cargo test` (e.g. a test name filter).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=SCRIPTDIR/env.sh
source "$here/env.sh"
export PATH="$HOME/.cargo/bin:$PATH"

"$here/deps.sh"
"$here/postgres.sh" start >/dev/null
"$here/kafka.sh" start
"$here/aws.sh" start
"$here/aws.sh" fauxqs-start

cd "$root"
echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== build"
cargo build --workspace --bins --locked
echo "== tests"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --locked --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

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
echo "summary: $passed passed, $failed failed"
if [ "$status" -ne 0 ]; then exit "$status"; fi
exit "$checks_status"
