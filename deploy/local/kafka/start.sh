# shellcheck shell=bash disable=SC2154 # variables and functions of the script that sources this part
# deploy/local/kafka.sh, part: rendering the configuration, formatting the storage once,
# starting the broker and waiting until it answers. Sourced by kafka.sh.
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

# With OUTBOX_RELAY_KAFKA_PROXIED_PORT and OUTBOX_RELAY_KAFKA_PROXY_PORT: a second listener
# on the first port that advertises the second, where a TCP fault proxy forwards to it
# (tests/chaos.sh). Clients that bootstrap through the proxy are then told to reach the
# broker through the proxy too, while the PLAINTEXT listener stays direct.
add_proxied_listener() {
    local file="$1" listen="${OUTBOX_RELAY_KAFKA_PROXIED_PORT:-}" proxy="${OUTBOX_RELAY_KAFKA_PROXY_PORT:-}"
    [[ -n "$listen" && -n "$proxy" ]] || return 0
    sed -i -e "s|^listeners=.*|&,PROXIED://127.0.0.1:$listen|" \
        -e "s|^advertised.listeners=.*|&,PROXIED://127.0.0.1:$proxy|" \
        -e "s|^listener.security.protocol.map=.*|&,PROXIED:PLAINTEXT|" "$file"
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
    add_proxied_listener "$CONFIG_DIR/server.properties"
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
