#!/usr/bin/env bash
# The main job on a fresh machine: installs and starts PostgreSQL and Kafka, builds and
# starts the relay, writes sample outbox rows the way a service would, and shows the
# messages arriving in Kafka. `demo.sh stop` stops the relay and the services.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=SCRIPTDIR/env.sh
source "$here/env.sh"
export PATH="$HOME/.cargo/bin:$PATH"
pidfile="$OUTBOX_RELAY_RUN/relay.pid"
log="$OUTBOX_RELAY_RUN/relay.log"

if [ "${1:-}" = "stop" ]; then
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill -TERM "$(cat "$pidfile")"
    echo "relay stopped"
  fi
  rm -f "$pidfile"
  "$here/kafka.sh" stop || true
  "$here/postgres.sh" stop || true
  exit 0
fi

"$here/deps.sh"
"$here/postgres.sh" start >/dev/null
"$here/kafka.sh" start
cd "$root"
cargo build --release --locked -p outbox-relay -p outbox-relay-tests --bins
bin="$CARGO_TARGET_DIR/release"

psql_() { "$here/postgres.sh" psql -v ON_ERROR_STOP=1 -q "$@"; }
# The outbox table exactly as Debezium's Outbox Event Router expects it.
psql_ -c "CREATE TABLE IF NOT EXISTS outbox (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  aggregatetype varchar(255) NOT NULL,
  aggregateid varchar(255) NOT NULL,
  type varchar(255) NOT NULL,
  payload jsonb,
  timestamp timestamptz NOT NULL DEFAULT now(),
  tracingspancontext varchar(512))"

if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "relay already running (pid $(cat "$pidfile"))"
else
  "$bin/outbox-relay" --config "$here/relay.yaml" check
  nohup "$bin/outbox-relay" --config "$here/relay.yaml" run >>"$log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 100); do
    curl -fs 127.0.0.1:10187/readyz >/dev/null 2>&1 && break
    sleep 0.2
  done
  echo "relay running (pid $(cat "$pidfile")), log: $log"
fi

echo "== a service writes its business change and the event in one transaction"
psql_ <<'SQL'
BEGIN;
INSERT INTO outbox (aggregatetype, aggregateid, type, payload, tracingspancontext)
VALUES ('Order', 'order-1001', 'OrderCreated', '{"orderId": "order-1001", "total": 42.50, "items": 3}',
        'traceparent=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
INSERT INTO outbox (aggregatetype, aggregateid, type, payload)
VALUES ('Customer', 'customer-7', 'CustomerRegistered', '{"customerId": "customer-7", "email": "ada@example.com"}');
COMMIT;
BEGIN;
INSERT INTO outbox (aggregatetype, aggregateid, type, payload)
VALUES ('Order', 'order-1001', 'OrderPaid', '{"orderId": "order-1001", "paid": true}');
ROLLBACK; -- rolled back: never published
INSERT INTO outbox (aggregatetype, aggregateid, type, payload)
VALUES ('Order', 'order-1001', 'OrderShipped', '{"orderId": "order-1001", "carrier": "DHL"}');
-- A table-less event, written as a logical message.
SELECT pg_logical_emit_message(true, 'outbox',
  '{"id": "5b8c3c1e-6f0e-4a55-9f6e-1f2b3c4d5e6f", "aggregatetype": "Order", "aggregateid": "order-1002", "type": "OrderCreated", "payload": {"orderId": "order-1002", "total": 7}}');
SQL

echo "== messages in Kafka (topics outbox.event.*)"
"$bin/kafka-tail" --prefix outbox.event --idle-secs 15
echo
echo "metrics: curl -s 127.0.0.1:10187/metrics | grep ^outbox_relay_"
echo "write more: deploy/local/postgres.sh psql -c \"INSERT INTO outbox (aggregatetype, aggregateid, type, payload) VALUES ('Order','order-1','OrderCreated','{}')\""
echo "stop everything: deploy/local/demo.sh stop"
