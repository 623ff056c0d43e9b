#!/usr/bin/env bash
# The example application on one machine, from a fresh clone: installs and starts
# PostgreSQL, Kafka and the SNS/SQS emulator, builds the relay and the example, and runs
# three services with their own databases and three relays (`saga up`). The console page
# is printed at the end.
#
#   examples/demo.sh          start (idempotent)
#   examples/demo.sh stop     stop the example, remove its databases, topics and queues,
#                             and stop PostgreSQL, Kafka and the emulators
#
# Environment: SAGA_PORT (console, default 8080), SAGA_PREFIX (default saga),
# OUTBOX_RELAY_PROFILE (release, default, or debug).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
local_dir="$root/deploy/local"
# shellcheck source=SCRIPTDIR/../deploy/local/env.sh
source "$local_dir/env.sh"
export PATH="$HOME/.cargo/bin:$PATH"

port="${SAGA_PORT:-8080}"
prefix="${SAGA_PREFIX:-saga}"
profile="${OUTBOX_RELAY_PROFILE:-release}"
state="$OUTBOX_RELAY_RUN/saga"
pidfile="$state/saga.pid"
log="$state/saga.log"
endpoint_file="$state/aws-endpoint"
if [ "$profile" = release ]; then bin="$CARGO_TARGET_DIR/release"; else bin="$CARGO_TARGET_DIR/debug"; fi
mkdir -p "$state"

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

if [ "${1:-}" = "stop" ]; then
  if running; then
    kill -TERM "$(cat "$pidfile")"
    for _ in $(seq 1 100); do running || break; sleep 0.2; done
    echo "example stopped"
  fi
  rm -f "$pidfile"
  if [ -x "$bin/saga" ]; then
    "$bin/saga" teardown --prefix "$prefix" \
      --aws-endpoint "$(cat "$endpoint_file" 2>/dev/null || echo http://127.0.0.1:19325)" || true
  fi
  "$local_dir/aws.sh" fauxqs-stop || true
  "$local_dir/aws.sh" stop || true
  "$local_dir/kafka.sh" stop || true
  "$local_dir/postgres.sh" stop || true
  exit 0
fi

"$local_dir/deps.sh"
"$local_dir/postgres.sh" start >/dev/null
"$local_dir/kafka.sh" start
# fauxqs (Node.js) is fast; moto (Python) is the fallback, at a few events per second.
if "$local_dir/aws.sh" fauxqs-start; then
  endpoint="http://127.0.0.1:${OUTBOX_RELAY_FAUXQS_PORT:-19325}"
else
  echo "demo: fauxqs unavailable (needs Node.js >= 20); using moto, which is slower"
  "$local_dir/aws.sh" start
  endpoint="http://127.0.0.1:${OUTBOX_RELAY_AWS_PORT:-19324}"
fi
echo "$endpoint" >"$endpoint_file"

cd "$root"
if [ "$profile" = release ]; then
  cargo build --release --locked -p outbox-relay -p outbox-saga-example --bins
else
  cargo build --locked -p outbox-relay -p outbox-saga-example --bins
fi

if running; then
  echo "example already running (pid $(cat "$pidfile")), log: $log"
else
  nohup "$bin/saga" up --prefix "$prefix" --listen "127.0.0.1:$port" \
    --relay-bin "$bin/outbox-relay" --aws-endpoint "$endpoint" --state-dir "$state" \
    --kafka-script "$local_dir/kafka.sh" --postgres-script "$local_dir/postgres.sh" \
    >>"$log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 900); do
    curl -fs "127.0.0.1:$port/api/audit" >/dev/null 2>&1 && break
    running || { tail -n 30 "$log"; echo "demo: saga up exited" >&2; exit 1; }
    sleep 0.2
  done
fi

cat <<TXT

  The saga example is running: open http://127.0.0.1:$port/

  orders API      curl -s -XPOST 127.0.0.1:18101/orders -H 'content-type: application/json' \\
                    -d '{"customer":"ada","sku":"widget","qty":1,"amountCents":2500,"card":"4242424242424242"}'
  chaos (CLI)     $bin/saga chaos --console http://127.0.0.1:$port \\
                    kill-relay orders | kill-service payments | kafka-outage 30 | restart-postgres
  books           curl -s 127.0.0.1:$port/api/audit
  logs, configs   $state/
  stop            examples/demo.sh stop
TXT
