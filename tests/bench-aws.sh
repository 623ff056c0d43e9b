#!/usr/bin/env bash
# SNS/SQS benchmark (docs/benchmarks.md, "SNS and SQS") against the fauxqs emulator: the
# emulator's ceiling with a plain SDK client, a backlog drained by the relay into SQS FIFO
# and SNS FIFO, and steady-state commit → acknowledgement latency. Extra arguments go to
# the bench-aws binary (e.g. --events 20000, --rate 500, --steady-secs 30).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=SCRIPTDIR/../deploy/local/env.sh
source "$root/deploy/local/env.sh"
export PATH="$HOME/.cargo/bin:$PATH"
"$root/deploy/local/deps.sh"
"$root/deploy/local/postgres.sh" start >/dev/null
"$root/deploy/local/aws.sh" fauxqs-start
export OUTBOX_RELAY_AWS_ENDPOINT="http://127.0.0.1:${OUTBOX_RELAY_FAUXQS_PORT:-19325}"
cd "$root"
cargo build --release --locked -p outbox-relay -p outbox-relay-tests --bins
dirty=""
git diff --quiet HEAD -- relay connectors Cargo.lock 2>/dev/null || dirty=" + uncommitted changes under relay/ or connectors/"
fauxqs_pkg="$OUTBOX_RELAY_CACHE/fauxqs-${OUTBOX_RELAY_FAUXQS_VERSION:-1.9.2}/node_modules/fauxqs/package.json"
echo "bench-aws: relay $(git rev-parse --short HEAD)$dirty, fauxqs $(node -p "require('$fauxqs_pkg').version"), node $(node --version), $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p'))" >&2
"$CARGO_TARGET_DIR/release/bench-aws" --relay-bin "$CARGO_TARGET_DIR/release/outbox-relay" "$@"
