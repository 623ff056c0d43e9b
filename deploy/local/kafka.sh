#!/usr/bin/env bash
# Local Apache Kafka broker (KRaft, one combined broker+controller node) for
# development and tests, installed from Maven Central through `mvn`.
#
# Usage: deploy/local/kafka.sh [start|stop|status|topics [TopicCommand args]|wipe]
#
#   start   (default) install if needed, format storage once, start the broker in
#           the background and wait until it answers metadata requests.
#           Idempotent: returns at once if the broker is already up.
#   stop    SIGTERM, wait up to OUTBOX_RELAY_KAFKA_STOP_TIMEOUT s (20), then SIGKILL.
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

# ---------------------------------------------------------------------- install

as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

java_major() {
    "$1" -version 2>&1 | sed -n 's/.*version "\([0-9]*\)[."].*/\1/p' | head -n 1
}

find_java() {
    local candidate major
    for candidate in ${JAVA_HOME:+"$JAVA_HOME/bin/java"} "$(command -v java || true)" \
        /usr/lib/jvm/java-17-openjdk-*/bin/java /usr/lib/jvm/java-*-openjdk-*/bin/java; do
        [[ -n "$candidate" && -x "$candidate" ]] || continue
        major="$(java_major "$candidate")"
        if [[ -n "$major" && "$major" -ge 17 ]]; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}

ensure_tools() {
    local need_mvn=0
    JAVA="$(find_java || true)"
    if [[ ! -f "$MARKER" ]] && ! command -v mvn >/dev/null 2>&1; then
        need_mvn=1
    fi
    if [[ -z "$JAVA" || "$need_mvn" -eq 1 ]]; then
        command -v apt-get >/dev/null 2>&1 \
            || die "Java 17+ and Maven are required (no apt-get here to install them)"
        log "installing openjdk-17-jre-headless and maven with apt-get"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            openjdk-17-jre-headless maven >/dev/null
        JAVA="$(find_java || true)"
        [[ -n "$JAVA" ]] || die "no Java 17+ found after installing openjdk-17-jre-headless"
    fi
}

pom_checksum() { sha256sum "$POM" | cut -d' ' -f1; }

installed() {
    [[ -f "$MARKER" ]] && grep -qxF "pom-sha256=$(pom_checksum)" "$MARKER"
}

install_kafka() {
    installed && return 0
    mkdir -p "$KAFKA_HOME"
    # Two checkouts may share the cache: install under a cache-wide lock.
    exec 8>"$KAFKA_HOME/.install.lock"
    flock -w 600 8 || die "timed out waiting for another install of Kafka $KAFKA_VERSION"
    if installed; then
        exec 8>&-
        return 0
    fi
    command -v mvn >/dev/null 2>&1 || die "mvn not found"

    log "installing Kafka $KAFKA_VERSION from Maven Central into $LIBS"
    local work="$KAFKA_HOME/.install.$$" started=$SECONDS
    rm -rf "$work"
    mkdir -p "$work"
    cp "$POM" "$work/pom.xml"
    if ! (cd "$work" && mvn -q -B dependency:copy-dependencies \
            -Dkafka.version="$KAFKA_VERSION" -DincludeScope=runtime \
            -DoutputDirectory="$work/libs") >"$KAFKA_HOME/mvn.log" 2>&1; then
        sed 's/\x1b\[[0-9;]*m//g' "$KAFKA_HOME/mvn.log" | grep -v '^\s*$' | tail -n 25 >&2 || true
        rm -rf "$work"
        die "Maven could not resolve Kafka $KAFKA_VERSION (org.apache.kafka:kafka_2.13 and its" \
            "dependencies, see above and $KAFKA_HOME/mvn.log). Check that mvn reaches Maven" \
            "Central, or set OUTBOX_RELAY_KAFKA_VERSION to a release that is published there."
    fi
    for jar in "kafka_2.13-$KAFKA_VERSION.jar" "kafka-tools-$KAFKA_VERSION.jar" log4j-core-*.jar; do
        compgen -G "$work/libs/$jar" >/dev/null || die "install incomplete: no $jar in $work/libs"
    done
    rm -rf "$LIBS"
    mv "$work/libs" "$LIBS"
    cp "$POM" "$KAFKA_HOME/pom.xml"
    rm -rf "$work"
    printf 'version=%s\npom-sha256=%s\n' "$KAFKA_VERSION" "$(pom_checksum)" >"$MARKER"
    log "installed $(find "$LIBS" -name '*.jar' | wc -l) jars in $((SECONDS - started)) s"
    exec 8>&-
}

# ------------------------------------------------------------------ CLI classes

run_tool() {
    local class="$1"
    shift
    [[ -n "${JAVA:-}" ]] || JAVA="$(find_java)" || die "no Java 17+ found"
    "$JAVA" "${TOOL_JVM_OPTS[@]}" -cp "$LIBS/*" "$class" "$@"
}

admin_config() {
    # Short client timeouts so that a readiness probe against a broker that is
    # not ready yet fails fast instead of waiting for the 60 s API default.
    local file="$CONFIG_DIR/admin-client.properties"
    mkdir -p "$CONFIG_DIR"
    printf '%s\n' request.timeout.ms=5000 default.api.timeout.ms=10000 \
        socket.connection.setup.timeout.ms=1000 socket.connection.setup.timeout.max.ms=2000 \
        >"$file.$$"
    mv "$file.$$" "$file"
    printf '%s\n' "$file"
}

list_topics() {
    run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
        --command-config "$(admin_config)" --list
}

# ------------------------------------------------------------------------ start

escape_sed() { printf '%s' "$1" | sed -e 's/[\\|&]/\\&/g'; }

render() {
    sed -e "s|@KAFKA_PORT@|$(escape_sed "$KAFKA_PORT")|g" \
        -e "s|@CONTROLLER_PORT@|$(escape_sed "$CONTROLLER_PORT")|g" \
        -e "s|@DATA_DIR@|$(escape_sed "$DATA_DIR")|g" \
        -e "s|@LOG_DIR@|$(escape_sed "$LOG_DIR")|g" \
        "$1" >"$2.tmp"
    mv "$2.tmp" "$2"
}

random_cluster_id() {
    # Kafka's Uuid format: 16 random bytes, URL-safe base64 without padding;
    # Kafka itself never hands out ids starting with '-'.
    local id
    while :; do
        id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
        [[ "$id" == -* || "$id" == AAAAAAAAAAAAAAAAAAAAA* ]] || break
    done
    printf '%s\n' "$id"
}

format_storage() {
    [[ -f "$DATA_DIR/meta.properties" ]] && return 0
    local cluster_id
    cluster_id="$(random_cluster_id)"
    log "formatting $DATA_DIR (cluster id $cluster_id)"
    mkdir -p "$DATA_DIR"
    if ! run_tool kafka.tools.StorageTool format --ignore-formatted \
            --cluster-id "$cluster_id" --config "$CONFIG_DIR/server.properties" \
            >"$STATE_DIR/format.log" 2>&1; then
        cat "$STATE_DIR/format.log" >&2
        die "kafka.tools.StorageTool format failed for $DATA_DIR"
    fi
}

broker_log_tail() {
    local file
    for file in "$OUT_FILE" "$LOG_DIR/server.log"; do
        if [[ -s "$file" ]]; then
            printf '\n---- last lines of %s ----\n' "$file" >&2
            tail -n 40 "$file" >&2
        fi
    done
}

wait_ready() {
    local pid="$1" started="$2" deadline=$((SECONDS + START_TIMEOUT)) probe_out
    probe_out="$STATE_DIR/ready-probe.log"
    while :; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PID_FILE"
            broker_log_tail
            die "broker (pid $pid) exited during startup"
        fi
        if port_open "$KAFKA_PORT"; then
            # The listener is up; ready once it serves metadata.
            if timeout 30 "$JAVA" "${TOOL_JVM_OPTS[@]}" -cp "$LIBS/*" \
                    org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
                    --command-config "$(admin_config)" --list >"$probe_out" 2>&1; then
                log "ready at $BOOTSTRAP (pid $pid, Kafka $KAFKA_VERSION, $((SECONDS - started)) s)"
                return 0
            fi
        fi
        if ((SECONDS >= deadline)); then
            [[ -s "$probe_out" ]] && { printf '\n---- last readiness probe ----\n' >&2; tail -n 20 "$probe_out" >&2; }
            broker_log_tail
            die "broker (pid $pid) not ready after ${START_TIMEOUT} s; it is left running, see $LOG_DIR/server.log (\`$0 stop\` to stop it)"
        fi
        sleep 0.5
    done
}

cmd_start() {
    local pid started=$SECONDS
    # Fast path, no lock, no JVM: already up.
    if pid="$(broker_pid)" && port_open "$KAFKA_PORT"; then
        log "already running at $BOOTSTRAP (pid $pid)"
        return 0
    fi

    mkdir -p "$OUTBOX_RELAY_RUN"
    exec 9>"$LOCK_FILE"
    flock -w "$((START_TIMEOUT + 60))" 9 || die "timed out waiting for $LOCK_FILE"

    ensure_tools
    if pid="$(broker_pid)"; then
        # Started by someone else meanwhile, or still starting.
        port_open "$KAFKA_PORT" && { log "already running at $BOOTSTRAP (pid $pid)"; return 0; }
        log "broker (pid $pid) is starting; waiting for it"
        wait_ready "$pid" "$started"
        return 0
    fi
    rm -f "$PID_FILE"

    local port
    for port in "$KAFKA_PORT" "$CONTROLLER_PORT"; do
        if port_open "$port"; then
            die "port $port is already in use by another process ($(port_owner "$port" || true));" \
                "stop it or set OUTBOX_RELAY_KAFKA_PORT / OUTBOX_RELAY_KAFKA_CONTROLLER_PORT"
        fi
    done

    install_kafka

    mkdir -p "$CONFIG_DIR" "$LOG_DIR" "$DATA_DIR"
    render "$TEMPLATE_DIR/server.properties.template" "$CONFIG_DIR/server.properties"
    render "$TEMPLATE_DIR/log4j2.xml.template" "$CONFIG_DIR/log4j2.xml"
    format_storage

    log "starting broker ($BOOTSTRAP, controller 127.0.0.1:$CONTROLLER_PORT, data $DATA_DIR)"
    local -a heap
    read -r -a heap <<<"$HEAP_OPTS"
    # setsid: own session, so the broker survives the calling shell/terminal.
    # 8>&- 9>&-: the broker must not inherit (and so hold) the lock files.
    setsid nohup "$JAVA" "${heap[@]}" "${BROKER_JVM_OPTS[@]}" \
        "-Dlog4j2.configurationFile=$CONFIG_DIR/log4j2.xml" \
        "-Dkafka.logs.dir=$LOG_DIR" \
        -cp "$LIBS/*" kafka.Kafka "$CONFIG_DIR/server.properties" \
        </dev/null >"$OUT_FILE" 2>&1 8>&- 9>&- &
    pid=$!
    printf '%s\n' "$pid" >"$PID_FILE"
    wait_ready "$pid" "$started"
}

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
        status) cmd_status ;;
        topics) cmd_topics "$@" ;;
        wipe) cmd_wipe ;;
        -h | --help | help) usage ;;
        *) usage; exit 2 ;;
    esac
}

main "$@"
