#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs and starts PostgreSQL and Kafka,
# checks formatting and lints, builds, and runs every test against the real services.
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
cargo test --workspace --locked "$@"
