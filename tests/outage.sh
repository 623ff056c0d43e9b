#!/usr/bin/env bash
# Long destination outages (issue 9): the whole Kafka broker down with on_open park and
# with stall, and one SQS queue cut off by a fault proxy while another stays healthy —
# each for OUTBOX_RELAY_OUTAGE_SECS (default 600, i.e. 10 minutes) while 8 writers keep
# going. The test suite runs the same tests with a 30–60 s outage.
#
#   tests/outage.sh                 all three, 10 minutes each
#   OUTBOX_RELAY_OUTAGE_SECS=120 tests/outage.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=SCRIPTDIR/../deploy/local/env.sh
source "$root/deploy/local/env.sh"
export PATH="$HOME/.cargo/bin:$PATH"
export OUTBOX_RELAY_OUTAGE_SECS="${OUTBOX_RELAY_OUTAGE_SECS:-600}"
"$root/deploy/local/deps.sh"
"$root/deploy/local/postgres.sh" start >/dev/null
"$root/deploy/local/kafka.sh" start
"$root/deploy/local/aws.sh" start
cd "$root"
cargo build --locked -p outbox-relay
cargo test --locked -p outbox-relay-tests --test kafka_outage --test sqs_outage -- --nocapture
