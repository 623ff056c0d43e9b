#!/usr/bin/env bash
# The chaos suite (issue 13, docs/reliability.md): a write load through a seeded schedule of
# faults — relay SIGKILL/SIGSTOP, PostgreSQL immediate and fast restarts, Kafka broker
# SIGKILL, network faults (Toxiproxy) between the relay and PostgreSQL and between the relay
# and Kafka — then the sink's whole history checked: nothing lost, no phantom, nothing
# reordered per aggregate, every duplicate inside a fault's replay window, byte-exact
# records, confirmed_flush_lsn never moving back. Prints the schedule, a JSON summary
# (also written to --json, default chaos-summary.json) and a table per fault kind.
#
#   tests/chaos.sh                          the full run: ≥ 1M events, 110 faults (~21 min on 2 cores)
#   tests/chaos.sh --variant short          the test suite's variant (≥ 50k events, 19 faults)
#   tests/chaos.sh --seed 1234              replay a run's schedule and load
#   tests/chaos.sh --replicas 2             two replicas with ha.enabled: + leader failover
#
# It uses its own PostgreSQL cluster (port 54359), Kafka broker (29092, proxied listener
# 29094) and Toxiproxy (API 18474, proxies 29095-29097), all under /tmp/outbox-relay-chaos;
# the shared services of the other tests are not touched. One chaos run at a time: a second
# one waits for the first's lock (/tmp/outbox-relay-chaos/chaos.lock).
# OUTBOX_RELAY_BIN runs another relay binary (e.g. a mutated one: docs/reliability.md).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=SCRIPTDIR/../deploy/local/env.sh
source "$root/deploy/local/env.sh"
export PATH="$HOME/.cargo/bin:$PATH"
"$root/deploy/local/deps.sh"
cd "$root"
cargo build --locked -p outbox-relay -p outbox-relay-tests --bin outbox-relay --bin chaos
exec "$CARGO_TARGET_DIR/debug/chaos" "$@"
