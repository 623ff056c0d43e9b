#!/usr/bin/env bash
# Local Apache Kafka broker (KRaft, one combined broker+controller node) for
# development and tests, installed from Maven Central through `mvn`.
#
# Usage: deploy/local/kafka.sh [start|stop|kill|status|topics [TopicCommand args]|wipe]
#
#   start   (default) install if needed, format storage once, start the broker in
#           the background and wait until it answers metadata requests.
#           Idempotent: returns at once if the broker is already up.
#   stop    SIGTERM, wait up to OUTBOX_RELAY_KAFKA_STOP_TIMEOUT s (20), then SIGKILL.
#   kill    SIGKILL at once (a crash: the next start recovers the logs); for the chaos
#           suite's private broker, never the shared one.
#   status  exit 0 if running and listening, 1 otherwise.
#   topics  list topics (extra arguments are handed to TopicCommand instead of --list,
#           e.g. `kafka.sh topics --describe --topic foo`).
#   wipe    stop, then delete all of the broker's runtime state (data, logs, config).
#
# Settings come from deploy/local/env.sh. Also:
#   OUTBOX_RELAY_KAFKA_VERSION        Kafka version (default: kafka.version in kafka/pom.xml)
#   OUTBOX_RELAY_KAFKA_START_TIMEOUT  seconds to wait for readiness (default 120)
#   OUTBOX_RELAY_KAFKA_STOP_TIMEOUT   seconds to wait after SIGTERM (default 20)
#   OUTBOX_RELAY_KAFKA_HEAP_OPTS      broker heap (default "-Xms2g -Xmx2g")
#   OUTBOX_RELAY_KAFKA_PROXIED_PORT,  a second listener on the first port, advertised as
#   OUTBOX_RELAY_KAFKA_PROXY_PORT     the second (a fault proxy's); both or neither
#
# Layout:
#   $OUTBOX_RELAY_CACHE/kafka-<version>/libs/    jars (kept; .installed marks completion)
#   $OUTBOX_RELAY_RUN/kafka/data/                log.dirs (formatted once)
#   $OUTBOX_RELAY_RUN/kafka/config/              rendered server.properties, log4j2.xml
#   $OUTBOX_RELAY_RUN/kafka/logs/server.log      broker log (log4j2, INFO/WARN)
#   $OUTBOX_RELAY_RUN/kafka/logs/gc.log          GC pauses and safepoints
#   $OUTBOX_RELAY_RUN/kafka/kafka.out            broker stdout+stderr
#   $OUTBOX_RELAY_RUN/kafka/kafka.pid            broker pid
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/env.sh
source "$SCRIPT_DIR/env.sh"

TEMPLATE_DIR="$SCRIPT_DIR/kafka"
POM="$TEMPLATE_DIR/pom.xml"

KAFKA_PORT="$OUTBOX_RELAY_KAFKA_PORT"
CONTROLLER_PORT="$OUTBOX_RELAY_KAFKA_CONTROLLER_PORT"
BOOTSTRAP="$OUTBOX_RELAY_KAFKA_BOOTSTRAP"

pom_kafka_version() {
    sed -n 's:.*<kafka\.version>\([^<]*\)</kafka\.version>.*:\1:p' "$POM" | head -n 1
}
KAFKA_VERSION="${OUTBOX_RELAY_KAFKA_VERSION:-$(pom_kafka_version)}"

KAFKA_HOME="$OUTBOX_RELAY_CACHE/kafka-$KAFKA_VERSION"
LIBS="$KAFKA_HOME/libs"
MARKER="$KAFKA_HOME/.installed"

STATE_DIR="$OUTBOX_RELAY_RUN/kafka"
DATA_DIR="$STATE_DIR/data"
CONFIG_DIR="$STATE_DIR/config"
LOG_DIR="$STATE_DIR/logs"
PID_FILE="$STATE_DIR/kafka.pid"
OUT_FILE="$STATE_DIR/kafka.out"
LOCK_FILE="$OUTBOX_RELAY_RUN/kafka.lock"

START_TIMEOUT="${OUTBOX_RELAY_KAFKA_START_TIMEOUT:-120}"
STOP_TIMEOUT="${OUTBOX_RELAY_KAFKA_STOP_TIMEOUT:-20}"
HEAP_OPTS="${OUTBOX_RELAY_KAFKA_HEAP_OPTS:--Xms2g -Xmx2g}"

# Broker JVM: ZGC, with thread counts for 2 cores. This broker shares two cores with
# PostgreSQL, the writers and the relay under test, and every produce request in flight
# waits out a stop-the-world pause. With G1 (Kafka's default, as in kafka-server-start.sh)
# its pauses were the latency tail measured by tests/compare.sh: with the heap growing from
# 256m, ~170 MB live kept G1 above its 35% initiating occupancy, so a concurrent cycle
# with an 80-90 ms Remark ran every few seconds; with a fixed 1g heap, young pauses still
# reached 180-400 ms when PostgreSQL took the cores (5k events/s p99 132 ms, the broker
# silent for the length of each pause on the wire). ZGC's pauses stay under 1 ms (same
# run: p99 18 ms, no pause of 1 ms or more); it wants headroom, hence 2g.
BROKER_JVM_OPTS=(
    -server
    -XX:+UseZGC -XX:ConcGCThreads=1
    -XX:CICompilerCount=2 -XX:MaxInlineLevel=15
    -XX:+ExitOnOutOfMemoryError
    # Pauses are the first suspect when produce latency has a tail: keep them on record.
    "-Xlog:gc,safepoint:file=$LOG_DIR/gc.log:uptime,time:filecount=2,filesize=20m"
    -Djava.awt.headless=true
)
# CLI tools: short-lived, so start fast rather than run fast.
TOOL_JVM_OPTS=(
    -Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto
    -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$TEMPLATE_DIR/tools-log4j2.xml"
)

log() { printf 'kafka: %s\n' "$*" >&2; }
die() { printf 'kafka: error: %s\n' "$*" >&2; exit 1; }

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
}

# ---------------------------------------------------------------- process state

# Pid of our broker if it is alive, from the pid file; checks the command line
# so that a recycled pid or another checkout's broker is not mistaken for ours.
broker_pid() {
    local pid cmdline
    [[ -r "$PID_FILE" ]] || return 1
    pid="$(<"$PID_FILE")"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ "$cmdline" == *"kafka.Kafka $CONFIG_DIR/server.properties"* ]] || return 1
    printf '%s\n' "$pid"
}

port_open() {
    # Bash's /dev/tcp: no JVM, no extra tools; a closed loopback port fails at once.
    # shellcheck disable=SC2016 # $1 is expanded by the inner bash, on purpose.
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

port_owner() {
    ss -Hltnp "sport = :$1" 2>/dev/null | sed -n 's/.*users:((\(.*\)))/\1/p' | head -n 1
}

# shellcheck source=SCRIPTDIR/kafka/install.sh
source "$SCRIPT_DIR/kafka/install.sh"
# shellcheck source=SCRIPTDIR/kafka/start.sh
source "$SCRIPT_DIR/kafka/start.sh"

# ------------------------------------------------------------------------- stop

cmd_stop() {
    local pid i
    if ! pid="$(broker_pid)"; then
        rm -f "$PID_FILE"
        log "not running"
        return 0
    fi
    log "stopping broker (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "still running after ${STOP_TIMEOUT} s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -f "$PID_FILE"
    log "stopped"
}

cmd_kill() {
    local pid i
    if ! pid="$(broker_pid)"; then
        log "not running"
        return 0
    fi
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    rm -f "$PID_FILE"
    log "killed (pid $pid)"
}

# ----------------------------------------------------------------------- status

cmd_status() {
    local pid
    if pid="$(broker_pid)"; then
        if port_open "$KAFKA_PORT"; then
            echo "running: pid $pid, bootstrap $BOOTSTRAP, Kafka $KAFKA_VERSION, data $DATA_DIR, log $LOG_DIR/server.log"
            return 0
        fi
        echo "starting or unresponsive: pid $pid, port $KAFKA_PORT not answering (log $LOG_DIR/server.log)"
        return 1
    fi
    if port_open "$KAFKA_PORT"; then
        echo "not running (but port $KAFKA_PORT is in use by another process: $(port_owner "$KAFKA_PORT" || true))"
    else
        echo "not running"
    fi
    return 1
}

cmd_topics() {
    broker_pid >/dev/null || port_open "$KAFKA_PORT" || die "broker not running (\`$0 start\`)"
    [[ -f "$MARKER" ]] || die "Kafka $KAFKA_VERSION is not installed in $KAFKA_HOME (\`$0 start\`)"
    if (($# == 0)); then
        list_topics
    else
        run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" "$@"
    fi
}

cmd_wipe() {
    mkdir -p "$OUTBOX_RELAY_RUN"
    exec 9>"$LOCK_FILE"
    flock -w "$((START_TIMEOUT + 60))" 9 || die "timed out waiting for $LOCK_FILE"
    cmd_stop
    rm -rf "$STATE_DIR"
    log "wiped $STATE_DIR"
}

main() {
    local cmd="${1:-start}"
    (($# > 0)) && shift
    case "$cmd" in
        start) cmd_start ;;
        stop) cmd_stop ;;
        kill) cmd_kill ;;
        status) cmd_status ;;
        topics) cmd_topics "$@" ;;
        wipe) cmd_wipe ;;
        -h | --help | help) usage ;;
        *) usage; exit 2 ;;
    esac
}

main "$@"
