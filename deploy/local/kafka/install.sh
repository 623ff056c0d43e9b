# shellcheck shell=bash disable=SC2154 # variables and functions of the script that sources this part
# deploy/local/kafka.sh, part: installing Kafka from Maven Central and running its CLI
# classes.
# Sourced by kafka.sh (its settings, log and die).
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
