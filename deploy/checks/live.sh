# shellcheck shell=bash disable=SC2154 # variables and functions of the script that sources this part
# deploy/checks/run.sh, part: a live relay scraped by Prometheus. Sourced by run.sh (its
# variables, check and log).
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

suffix="$$"
table="deploy_checks_outbox_$suffix"
slot="deploy_checks_$suffix"
relay_pid=""
prom_pid=""
# ha.enabled: a standby whose slot's leadership lock a psql session holds (it never leads).
standby_slot="${slot}_ha"
standby_pid=""
standby_port=""
lock_pid=""
psql_() { "$root/deploy/local/postgres.sh" psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }

stop_pid() { # pid: TERM, up to 10 s, then KILL
    [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null || return 0
    kill -TERM "$1" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null
}

cleanup_live() {
    stop_pid "$relay_pid"
    stop_pid "$standby_pid"
    if [[ -n "$lock_pid" ]]; then
        # A backend in pg_sleep does not notice its client leave: end it, then psql.
        psql_ -c "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory'
                  AND classid = hashtext('outbox-relay') AND objid = hashtext('$standby_slot')" >/dev/null 2>&1
        stop_pid "$lock_pid"
    fi
    standby_pid=""
    lock_pid=""
    if [[ -n "$prom_pid" ]] && kill -0 "$prom_pid" 2>/dev/null; then
        kill -TERM "$prom_pid" 2>/dev/null
        wait "$prom_pid" 2>/dev/null
    fi
    relay_pid=""
    prom_pid=""
    # A slot left behind holds WAL forever: drop it (after its walsender is gone).
    psql_ -c "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
              WHERE slot_name = '$slot' AND active_pid IS NOT NULL" >/dev/null 2>&1
    for _ in $(seq 1 50); do
        psql_ -c "SELECT pg_drop_replication_slot('$slot') FROM pg_replication_slots
                  WHERE slot_name = '$slot' AND NOT active" >/dev/null 2>&1
        [[ "$(psql_ -c "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$slot'" 2>/dev/null)" == 0 ]] && break
        sleep 0.2
    done
    psql_ -c "DROP PUBLICATION IF EXISTS $slot" -c "DROP TABLE IF EXISTS $table" >/dev/null 2>&1
}

cleanup_all() {
    cleanup_live
    rm -rf "$work"
}
trap cleanup_all EXIT
trap 'exit 130' INT TERM

wait_for() { # seconds command...
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

live_services() {
    "$root/deploy/local/postgres.sh" start >/dev/null && "$root/deploy/local/kafka.sh" start
}

relay_exports() { curl -fs "127.0.0.1:$relay_port/metrics" | grep -qF "$1"; }
prometheus_has() { curl -fs "127.0.0.1:$prom_port/api/v1/label/__name__/values" | grep -qF "\"$1\""; }

sweep_stale() { # objects of earlier runs that were killed before their cleanup
    local name pid
    for name in $(psql_ -c "SELECT slot_name FROM pg_replication_slots
                            WHERE slot_name LIKE 'deploy\_checks\_%' AND NOT active"); do
        pid="${name##*_}"
        if ! [[ "$pid" =~ ^[0-9]+$ ]] || kill -0 "$pid" 2>/dev/null; then continue; fi
        echo "dropping stale slot $name"
        psql_ -c "SELECT pg_drop_replication_slot('$name')" \
            -c "DROP PUBLICATION IF EXISTS $name" -c "DROP TABLE IF EXISTS deploy_checks_outbox_$pid" >/dev/null
    done
}

live_relay() {
    sweep_stale
    relay_port="$(free_port)"
    psql_ -c "CREATE TABLE $table (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      aggregatetype varchar(255) NOT NULL,
      aggregateid varchar(255),            -- nullable on purpose: a NULL goes to the dead letters
      type varchar(255) NOT NULL,
      payload jsonb,
      timestamp timestamptz NOT NULL DEFAULT now(),
      tracingspancontext varchar(512))" || return 1
    cat >"$work/relay.yaml" <<EOF
source:
  host: $OUTBOX_RELAY_PG_HOST
  port: $OUTBOX_RELAY_PG_PORT
  database: $OUTBOX_RELAY_PG_DATABASE
  user: $OUTBOX_RELAY_PG_USER
  slot: $slot
  publication: $slot
  heartbeat_interval_ms: 1000
outbox:
  tables:
    - table: public.$table
  route:
    template: "deploy-checks.{aggregatetype}"
  # The invalid row below must reach the dead-letter series the dashboard and the
  # alerts use (the default, park, keeps it in the state tables instead).
  on_invalid: dead_letter
  dead_letter_destination: deploy-checks.dead-letter
sink:
  kind: kafka
  kafka:
    brokers: $OUTBOX_RELAY_KAFKA_BOOTSTRAP
    # librdkafka statistics every second (default 10 s), for the kafka_* series.
    properties:
      statistics.interval.ms: "1000"
telemetry:
  listen: 127.0.0.1:$relay_port
EOF
    RELAY__SOURCE__PASSWORD="$OUTBOX_RELAY_PG_PASSWORD" "$RELAY" --config "$work/relay.yaml" run \
        >"$work/relay.log" 2>&1 &
    relay_pid=$!
    if ! wait_for 60 curl -fs "127.0.0.1:$relay_port/readyz"; then
        tail -n 20 "$work/relay.log"
        return 1
    fi
    # Two good events and one invalid row (NULL aggregateid -> dead letter), so the
    # labelled counters exist; then end the replication session once from the server
    # side, so errors_total{kind="postgres"} and restarts_total move.
    psql_ -c "INSERT INTO $table (aggregatetype, aggregateid, type, payload) VALUES
              ('Order', 'order-1', 'OrderCreated', '{\"n\": 1}'),
              ('Order', 'order-1', 'OrderPaid', '{\"n\": 2}'),
              ('Order', NULL, 'Broken', '{}')" || return 1
    wait_for 30 relay_exports 'outbox_relay_dead_letter_events_total{' || {
        echo "no dead-letter series after 30 s"; tail -n 20 "$work/relay.log"; return 1; }
    psql_ -c "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
              WHERE slot_name = '$slot' AND active_pid IS NOT NULL" >/dev/null || return 1
    wait_for 30 relay_exports 'outbox_relay_errors_total{' || { echo "no errors_total series"; return 1; }
    wait_for 30 curl -fs "127.0.0.1:$relay_port/readyz" || { echo "relay did not reconnect"; return 1; }
    curl -fs "127.0.0.1:$relay_port/metrics" | grep -E '^outbox_relay_(events_published|dead_letter|errors|restarts)'
}

standby_lock_held() {
    [[ "$(psql_ -c "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
                    AND classid = hashtext('outbox-relay') AND objid = hashtext('$standby_slot')")" == 1 ]]
}
standby_says_standby() { [[ "$(curl -fs "127.0.0.1:$standby_port/readyz")" == standby ]]; }

live_standby() { # a relay with ha.enabled that stays a standby: psql holds its slot's lock
    # postgres.sh execs psql, so $! is psql itself; stopping it releases the lock.
    "$root/deploy/local/postgres.sh" psql -X -q \
        -c "SELECT pg_advisory_lock(hashtext('outbox-relay'), hashtext('$standby_slot'))" \
        -c "SELECT pg_sleep(600)" >/dev/null 2>&1 &
    lock_pid=$!
    wait_for 20 standby_lock_held || { echo "psql did not take the lock"; return 1; }
    standby_port="$(free_port)"
    sed -e "s/^  slot: .*/  slot: $standby_slot/" -e "s/^  publication: .*/  publication: $standby_slot/" \
        -e "s/^  listen: .*/  listen: 127.0.0.1:$standby_port/" "$work/relay.yaml" >"$work/standby.yaml"
    printf 'ha:\n  enabled: true\n  poll_interval_ms: 200\n' >>"$work/standby.yaml"
    RELAY__SOURCE__PASSWORD="$OUTBOX_RELAY_PG_PASSWORD" "$RELAY" --config "$work/standby.yaml" run \
        >"$work/standby.log" 2>&1 &
    standby_pid=$!
    wait_for 30 standby_says_standby || { tail -n 20 "$work/standby.log"; return 1; }
    grep -q "^  slot: $standby_slot$" "$work/standby.yaml" || { echo "no slot line replaced"; return 1; }
    curl -fs "127.0.0.1:$standby_port/metrics" | grep -E '^outbox_relay_(leader|replicating|sink_up) '
}

live_prometheus() {
    prom_port="$(free_port)"
    mkdir -p "$work/prom-data"
    cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $root/deploy/prometheus/outbox-relay-rules.yaml
scrape_configs:
  - job_name: outbox-relay
    static_configs:
      - targets: ["127.0.0.1:$relay_port"]
EOF
    if [[ -n "$standby_pid" ]]; then
        printf '  - job_name: outbox-relay-standby\n    static_configs:\n      - targets: ["127.0.0.1:%s"]\n' \
            "$standby_port" >>"$work/prometheus.yml"
    fi
    prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prom-data" \
        --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
    prom_pid=$!
    wait_for 60 curl -fs "127.0.0.1:$prom_port/-/ready" || { tail -n 20 "$work/prometheus.log"; return 1; }
    # A few scrapes, until the relay's series are in.
    wait_for 30 prometheus_has outbox_relay_dead_letter_events_total || return 1
    # librdkafka's batch and queue-wait windows describe the last second only: keep
    # producing until Prometheus has scraped a report that holds a batch.
    for _ in $(seq 30); do
        prometheus_has outbox_relay_kafka_batch_records && prometheus_has outbox_relay_kafka_queue_latency_seconds && break
        psql_ -c "INSERT INTO $table (aggregatetype, aggregateid, type, payload)
                  VALUES ('Order', 'order-2', 'OrderSeen', '{}')" >/dev/null || return 1
        sleep 1
    done
    sleep 2
    curl -fs "127.0.0.1:$prom_port/api/v1/label/__name__/values" >"$work/names.json"
}

live_names() {
    "$PY" "$here/metric_names.py" "$root/deploy/grafana/outbox-relay.json" \
        "$root/deploy/prometheus/outbox-relay-rules.yaml" >"$work/used.txt" || return 1
    "$PY" "$here/live_metric_names.py" "$work/used.txt" "$work/names.json"
}

live_queries() { # every dashboard query parses and most return data
    local expr n=0 empty=0 resp
    while IFS= read -r expr; do
        n=$((n + 1))
        resp="$(curl -fsG "127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$expr")" || {
            echo "query failed: $expr"; return 1; }
        grep -q '"status":"success"' <<<"$resp" || { echo "query error: $expr: $resp"; return 1; }
        grep -q '"result":\[\]' <<<"$resp" && { empty=$((empty + 1)); echo "no data (yet): $expr"; }
    done < <("$PY" "$here/metric_names.py" --exprs "$root/deploy/grafana/outbox-relay.json")
    echo "$n dashboard queries accepted by Prometheus, $empty without data"
    ((n > 0))
}

live_rules() { # the rules load in a real Prometheus, and a healthy relay fires none
    local resp
    curl -fs "127.0.0.1:$prom_port/api/v1/rules" >"$work/rules.json" || return 1
    "$PY" "$here/live_rules.py" "$work/rules.json" "$root/deploy/prometheus/outbox-relay-rules.yaml" || return 1
}

live_standby_alerts() { # the rules and the dashboard on a real standby and the real non-HA relay
    "$PY" "$here/live_standby.py" "http://127.0.0.1:$prom_port" "$root/deploy/grafana/outbox-relay.json"
}

live_ok=0
if check "live: PostgreSQL and Kafka (deploy/local/*.sh start)" live_services &&
    check "live: relay run (own table/slot/publication; events, a dead letter, a session restart)" live_relay; then
    live_ok=1
fi
standby_ok=0
if ((live_ok)) &&
    check "live: relay with ha.enabled as a standby (psql holds its slot's lock): /readyz 200 standby" live_standby; then
    standby_ok=1
fi
if ((live_ok)) && kill -0 "$relay_pid" 2>/dev/null; then
    check "live: Prometheus $(prometheus --version 2>&1 | awk 'NR==1{print $3}') scrapes the relay every 1 s" live_prometheus
    check "live: every metric name in the dashboard and the rules was scraped" live_names
    check "live: every dashboard query runs in Prometheus" live_queries
    check "live: alert rules load in Prometheus" live_rules
    if ((standby_ok)); then
        check "live: only a standby in its job: OutboxRelayNoLeader pending there, not for the non-HA relay; NotReplicating/SinkDown not for the standby; dashboard STANDBY" \
            live_standby_alerts
    else
        failed=$((failed + 1))
        echo "FAIL  live: standby alert checks skipped (no standby)"
    fi
else
    failed=$((failed + 1))
    echo "FAIL  live: Prometheus checks skipped (the relay did not start)"
fi
cleanup_live
live_dropped() { # nothing of the live checks stays in PostgreSQL
    [[ "$(psql_ -c "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$slot'")" == 0 ]] ||
        { echo "slot $slot left"; return 1; }
    ! standby_lock_held || { echo "the standby's advisory lock is still held"; return 1; }
}
check "live: slot, publication and table dropped; the standby's lock released" live_dropped
