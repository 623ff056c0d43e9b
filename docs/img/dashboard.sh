#!/usr/bin/env bash
# docs/img/dashboard.png: the Grafana dashboard's panels from a live run, without Grafana.
#
# Runs the relay (the debug build in $CARGO_TARGET_DIR unless OUTBOX_RELAY_BIN names one)
# against the local PostgreSQL and Kafka (deploy/local/*.sh start) with a table, slot and
# publication of its own, and Prometheus (the Debian package, as deploy/checks/run.sh
# installs it) scraping it every 5 s, as in deploy/compose.yaml's monitoring profile. A
# writer produces about five minutes of traffic: 200 events/s, 1,000 events/s, one
# 30,000-row transaction, 400 events/s during which the server ends the replication
# connection twice and three invalid rows (dead letters) come twice, then idle (the
# second time shows in the rate panels: the relay creates a labelled counter at its
# first increment, so rate() and increase() see only later ones). Then every panel query of
# deploy/grafana/outbox-relay.json runs over that window (docs/img/dashboard.py query)
# and the panels are drawn in the dashboard's grid (docs/img/dashboard.py render).
# Everything it created (slot, publication, table, progress row, topics) is dropped at
# the end, also on failure or Ctrl-C.
#
# Usage: docs/img/dashboard.sh            the run and the picture (~6 minutes)
#        docs/img/dashboard.sh --render   redraw from the last run's data
#                                         ($OUTBOX_RELAY_RUN/docs-dashboard/data.json)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=SCRIPTDIR/../../deploy/local/env.sh
source "$root/deploy/local/env.sh"
# shellcheck source=SCRIPTDIR/venv.sh
source "$here/venv.sh"

DASHBOARD="$root/deploy/grafana/outbox-relay.json"
OUT="$here/dashboard.png"
keep="$OUTBOX_RELAY_RUN/docs-dashboard"
mkdir -p "$keep"
plots_venv
PY="$PLOTS_VENV/bin/python"

if [[ "${1:-}" == "--render" ]]; then
    "$PY" "$here/dashboard.py" render "$DASHBOARD" "$keep/data.json" "$OUT"
    exit 0
fi

RELAY="${OUTBOX_RELAY_BIN:-$CARGO_TARGET_DIR/debug/outbox-relay}"
[[ -x "$RELAY" ]] || { echo "no relay binary at $RELAY (cargo build -p outbox-relay, or set OUTBOX_RELAY_BIN)" >&2; exit 1; }
command -v prometheus >/dev/null || { echo "prometheus missing: apt-get install prometheus" >&2; exit 1; }

SCRAPE=5s                # as deploy/compose/prometheus.yml
STEP=5s                  # Grafana's step for this window at its default resolution
RATE_INTERVAL=20s        # Grafana's $__rate_interval: max(4 x scrape interval, step + scrape interval)
suffix="$$"
table="docs_dashboard_outbox_$suffix"
slot="docs_dashboard_$suffix"
topics="docs-dashboard-$suffix"
work="$(mktemp -d /tmp/outbox-relay-dashboard.XXXXXX)"
relay_pid=""
prom_pid=""
psql_() { "$root/deploy/local/postgres.sh" psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }
log() { printf '[dashboard] %s\n' "$*" >&2; }

stop_pid() { # pid: TERM, wait up to 10 s, KILL
    [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null || return 0
    kill -TERM "$1" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
}

drop_objects() { # name suffix: slot (after its walsender), publication, table, progress row, topics
    local s="docs_dashboard_$1"
    psql_ -c "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
              WHERE slot_name = '$s' AND active_pid IS NOT NULL" >/dev/null 2>&1 || true
    for _ in $(seq 1 50); do
        psql_ -c "SELECT pg_drop_replication_slot('$s') FROM pg_replication_slots
                  WHERE slot_name = '$s' AND NOT active" >/dev/null 2>&1 || true
        [[ "$(psql_ -c "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$s'" 2>/dev/null)" == 0 ]] && break
        sleep 0.2
    done
    psql_ -c "DROP PUBLICATION IF EXISTS $s" -c "DROP TABLE IF EXISTS docs_dashboard_outbox_$1" >/dev/null 2>&1 || true
    psql_ -c "DELETE FROM outbox_relay.progress WHERE slot = '$s'" >/dev/null 2>&1 || true
    "$root/deploy/local/kafka.sh" topics --delete --if-exists --topic "docs-dashboard-$1\\..*" >/dev/null 2>&1 || true
}

cleanup() {
    stop_pid "$relay_pid"
    stop_pid "$prom_pid"
    drop_objects "$suffix"
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for() { # seconds command...
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Objects of earlier runs killed before their cleanup (their process is gone).
for name in $(psql_ -c "SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'docs\_dashboard\_%' AND NOT active" 2>/dev/null); do
    pid="${name##*_}"
    if [[ "$pid" =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null; then
        log "dropping the leftovers of run $pid"
        drop_objects "$pid"
    fi
done

"$root/deploy/local/postgres.sh" start >/dev/null
"$root/deploy/local/kafka.sh" start >/dev/null

relay_port="$(free_port)"
psql_ -c "CREATE TABLE $table (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  aggregatetype varchar(255) NOT NULL,
  aggregateid varchar(255),            -- nullable on purpose: a NULL becomes a dead letter
  type varchar(255) NOT NULL,
  payload jsonb,
  timestamp timestamptz NOT NULL DEFAULT now(),
  tracingspancontext varchar(512))"
cat >"$work/relay.yaml" <<EOF
source:
  host: $OUTBOX_RELAY_PG_HOST
  port: $OUTBOX_RELAY_PG_PORT
  database: $OUTBOX_RELAY_PG_DATABASE
  user: $OUTBOX_RELAY_PG_USER
  slot: $slot
  publication: $slot
  heartbeat_interval_ms: 5000
outbox:
  tables:
    - table: public.$table
  route:
    template: "$topics.{aggregatetype}"
  on_invalid: dead_letter
  dead_letter_destination: $topics.dead-letter
sink:
  kind: kafka
  kafka:
    brokers: $OUTBOX_RELAY_KAFKA_BOOTSTRAP
    properties:
      statistics.interval.ms: "5000"
telemetry:
  listen: 127.0.0.1:$relay_port
EOF
# The version now: a rebuild of the binary during the run would change what --version says later.
relay_version="$("$RELAY" --version | cut -d' ' -f2-)"
started="$(date +%s)"
RELAY__SOURCE__PASSWORD="$OUTBOX_RELAY_PG_PASSWORD" "$RELAY" --config "$work/relay.yaml" run >"$work/relay.log" 2>&1 &
relay_pid=$!
wait_for 60 curl -fs "127.0.0.1:$relay_port/readyz" || { tail -n 20 "$work/relay.log"; exit 1; }
log "relay $relay_version ready on 127.0.0.1:$relay_port (slot $slot)"

prom_port="$(free_port)"
cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: $SCRAPE
scrape_configs:
  - job_name: outbox-relay
    static_configs:
      - targets: ["127.0.0.1:$relay_port"]
EOF
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prom-data" \
    --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
prom_pid=$!
wait_for 60 curl -fs "127.0.0.1:$prom_port/-/ready" || { tail -n 20 "$work/prometheus.log"; exit 1; }
log "prometheus $(prometheus --version 2>&1 | awk 'NR==1{print $3}') on 127.0.0.1:$prom_port, scraping every $SCRAPE"
sleep 15   # a few scrapes of the idle relay first

# The writer: one session, ticks of 0.5 s (each tick sleeps what its insert left of it).
insert() { # first last: rows first..last, three aggregate types, 500 aggregates
    cat <<EOF
INSERT INTO $table (aggregatetype, aggregateid, type, payload)
SELECT (ARRAY['Order', 'Payment', 'Shipment'])[1 + i % 3], 'agg-' || (i % 500), 'Changed',
       jsonb_build_object('seq', i, 'note', repeat('x', 200))
FROM generate_series($1, $2) AS i;
EOF
}
workload() {
    local seq=0 tick per
    echo "SET synchronous_commit = on;"   # a commit reaches the walsender at once (see docs/benchmarks.md)
    for tick in $(seq 0 579); do           # 290 s
        echo "SELECT clock_timestamp() AS t0 \\gset"
        if ((tick < 120)); then per=100; elif ((tick < 240)); then per=500; elif ((tick < 480)); then per=200; else per=0; fi
        if ((tick == 240)); then insert $((seq + 1)) $((seq + 30000)); seq=$((seq + 30000)); fi
        if ((tick == 300 || tick == 340)); then
            echo "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = '$slot' AND active_pid IS NOT NULL;"
        fi
        if ((tick == 360 || tick == 400)); then
            echo "INSERT INTO $table (aggregatetype, aggregateid, type, payload) SELECT 'Order', NULL, 'Broken', '{}' FROM generate_series(1, 3);"
        fi
        if ((per > 0)); then insert $((seq + 1)) $((seq + per)); seq=$((seq + per)); fi
        echo "SELECT pg_sleep(greatest(0, 0.5 - extract(epoch FROM clock_timestamp() - :'t0'::timestamptz)));"
    done
}
log "writing: 60 s at 200 events/s, 60 s at 1,000/s, a 30,000-row transaction, 120 s at 400/s (walsender ended at 150 and 170 s, 3 invalid rows at 180 and 200 s), 50 s idle"
workload | psql_ -f - >/dev/null
sleep 15
ended="$(date +%s)"
kill -0 "$relay_pid" || { log "the relay exited"; tail -n 20 "$work/relay.log"; exit 1; }

case "$RELAY" in */release/*) build="release build" ;; */debug/*) build="debug build" ;; *) build="$RELAY" ;; esac
cat >"$work/meta.json" <<EOF
{"what": "outbox-relay $relay_version ($build) against the local PostgreSQL $(psql_ -c 'SHOW server_version' | cut -d' ' -f1) and Kafka of deploy/local on a shared 2-vCPU machine, scraped every $SCRAPE by Prometheus $(prometheus --version 2>&1 | awk 'NR==1{print $3}'). Writer: 60 s at 200 events/s, 60 s at 1,000/s, one 30,000-row transaction, 120 s at 400/s with the replication connection ended by the server at 150 and 170 s and 3 invalid rows (dead letters) at 180 and 200 s, then idle."}
EOF
"$PY" "$here/dashboard.py" query "http://127.0.0.1:$prom_port" "$DASHBOARD" "$started" "$ended" "$STEP" \
    "$RATE_INTERVAL" "$work/meta.json" "$keep/data.json"
"$PY" "$here/dashboard.py" render "$DASHBOARD" "$keep/data.json" "$OUT"
