#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs and starts PostgreSQL and Kafka,
# checks formatting and lints, builds, and runs every test against the real services.
# Extra arguments go to `cargo test` (e.g. a test name filter).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=env.sh
source "$here/env.sh"
export PATH="$HOME/.cargo/bin:$PATH"

"$here/deps.sh"
"$here/postgres.sh" start >/dev/null
"$here/kafka.sh" start

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
cargo test --workspace --locked "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# One closing line for the whole run, summed over every test binary.
read -r passed failed < <(awk '/^test result:/ { p += $4; f += $6 } END { print p + 0, f + 0 }' "$log")
echo "summary: $passed passed, $failed failed"
exit "$status"
