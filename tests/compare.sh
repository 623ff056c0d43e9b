#!/usr/bin/env bash
# Relay vs Debezium benchmark (docs/benchmarks.md, "Relay vs Debezium"): drain of a 1M-event
# backlog (pg_recvlogical, the relay, Debezium's PostgreSQL connector + Outbox Event Router
# in Kafka Connect standalone) and steady-state end-to-end latency at fixed rates, with
# every output checked for lost or reordered events. Writes its table into
# docs/benchmarks.md. Extra arguments go to the compare binary, e.g.
#   tests/compare.sh --events 100000 --steady-secs 10     # smoke run
#   tests/compare.sh --no-doc                              # do not touch docs/benchmarks.md
#   tests/compare.sh --relay-kafka-property linger.ms=0    # relay producer property
#
# Debezium and Kafka Connect come from Maven Central (tests/debezium/pom.xml), cached in
# $OUTBOX_RELAY_CACHE/debezium-<version>/libs. Not part of deploy/local/test.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=SCRIPTDIR/../deploy/local/env.sh
source "$root/deploy/local/env.sh"
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf 'compare: %s\n' "$*" >&2; }
die() { printf 'compare: error: %s\n' "$*" >&2; exit 1; }

pom="$here/debezium/pom.xml"
pom_prop() { sed -n "s:.*<$1>\([^<]*\)</$1>.*:\1:p" "$pom" | head -n 1; }
debezium_version="${OUTBOX_RELAY_DEBEZIUM_VERSION:-$(pom_prop debezium.version)}"
connect_version="${OUTBOX_RELAY_CONNECT_VERSION:-$(pom_prop kafka.version)}"
kafka_version="$(sed -n 's:.*<kafka\.version>\([^<]*\)</kafka\.version>.*:\1:p' "$root/deploy/local/kafka/pom.xml" | head -n 1)"
kafka_version="${OUTBOX_RELAY_KAFKA_VERSION:-$kafka_version}"

doc_args=(--doc "$root/docs/benchmarks.md")
args=()
for a in "$@"; do
    if [[ "$a" == --no-doc ]]; then doc_args=(); else args+=("$a"); fi
done

"$root/deploy/local/deps.sh"
"$root/deploy/local/postgres.sh" start >/dev/null
"$root/deploy/local/kafka.sh" start

# Debezium + Connect jars, once per pom (same scheme as deploy/local/kafka.sh).
dbz_home="$OUTBOX_RELAY_CACHE/debezium-$debezium_version-connect-$connect_version"
marker="$dbz_home/.installed"
pom_sum="$(sha256sum "$pom" | cut -d' ' -f1)"
if ! [[ -f "$marker" ]] || ! grep -qxF "pom-sha256=$pom_sum" "$marker"; then
    command -v mvn >/dev/null 2>&1 || die "mvn not found (deploy/local/kafka.sh start installs it)"
    log "fetching Debezium $debezium_version and Kafka Connect $connect_version from Maven Central"
    work="$dbz_home/.install.$$"
    rm -rf "$work"
    mkdir -p "$work"
    cp "$pom" "$work/pom.xml"
    if ! (cd "$work" && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime \
            -Ddebezium.version="$debezium_version" -Dkafka.version="$connect_version" \
            -DoutputDirectory="$work/libs") >"$dbz_home/mvn.log" 2>&1; then
        tail -n 25 "$dbz_home/mvn.log" >&2
        rm -rf "$work"
        die "Maven could not resolve Debezium $debezium_version (see $dbz_home/mvn.log)"
    fi
    for jar in "debezium-connector-postgres-$debezium_version.jar" "connect-runtime-$connect_version.jar"; do
        [[ -f "$work/libs/$jar" ]] || die "install incomplete: no $jar"
    done
    rm -rf "$dbz_home/libs"
    mv "$work/libs" "$dbz_home/libs"
    rm -rf "$work"
    printf 'debezium=%s\nconnect=%s\npom-sha256=%s\n' "$debezium_version" "$connect_version" "$pom_sum" >"$marker"
fi

java="java"
[[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]] && java="$JAVA_HOME/bin/java"

cd "$root"
cargo build --release --locked -p outbox-relay -p outbox-relay-tests --bins
commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
git -C "$root" diff --quiet HEAD -- relay connectors 2>/dev/null || commit="$commit+dirty"
"$CARGO_TARGET_DIR/release/compare" \
    --relay-bin "$CARGO_TARGET_DIR/release/outbox-relay" \
    --debezium-libs "$dbz_home/libs" --debezium-dir "$here/debezium" \
    --debezium-version "$debezium_version" --kafka-version "$kafka_version" \
    --connect-version "$connect_version" --java "$java" \
    --relay-commit "$commit" --command "tests/compare.sh${args[*]:+ ${args[*]}}" \
    "${doc_args[@]}" "${args[@]}"
