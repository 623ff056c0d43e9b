#!/usr/bin/env bash
# Drain benchmark (docs/benchmarks.md): 1M outbox events drained by pg_recvlogical, the
# relay with the null sink and the relay with Kafka. Extra arguments go to the bench
# binary (e.g. --events 200000, --skip-kafka).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=SCRIPTDIR/../deploy/local/env.sh
source "$root/deploy/local/env.sh"
export PATH="$HOME/.cargo/bin:$PATH"
"$root/deploy/local/deps.sh"
"$root/deploy/local/postgres.sh" start >/dev/null
"$root/deploy/local/kafka.sh" start
cd "$root"
cargo build --release --locked -p outbox-relay -p outbox-relay-tests --bins
"$CARGO_TARGET_DIR/release/bench" --relay-bin "$CARGO_TARGET_DIR/release/outbox-relay" "$@"
