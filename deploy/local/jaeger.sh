#!/usr/bin/env bash
# Local Jaeger (v2, on the OpenTelemetry Collector) as the OTLP receiver of the relay's
# batch spans (telemetry.otlp), for the OpenTelemetry tests and for looking at traces.
#
# Usage: deploy/local/jaeger.sh [start|stop|status|install]
#
#   install  build the jaeger binary from the Go module proxy into $OUTBOX_RELAY_CACHE/bin
#            (first time on a machine: a few minutes). Idempotent.
#   start    (default) install, then start Jaeger with in-memory storage: OTLP/HTTP on
#            127.0.0.1:$OUTBOX_RELAY_JAEGER_OTLP_PORT, the query API and UI on
#            127.0.0.1:$OUTBOX_RELAY_JAEGER_QUERY_PORT. Idempotent.
#   stop     SIGTERM (traces are in memory: gone).
#   status   exit 0 if the query API answers.
#
# Settings from deploy/local/env.sh; also OUTBOX_RELAY_JAEGER_VERSION (default v1.75.0,
# the release whose cmd/jaeger is Jaeger v2).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/env.sh
source "$SCRIPT_DIR/env.sh"
export PATH="/usr/local/go/bin:$PATH"

VERSION="${OUTBOX_RELAY_JAEGER_VERSION:-v1.75.0}"
BIN="$OUTBOX_RELAY_CACHE/bin/jaeger"
STAMP="$OUTBOX_RELAY_CACHE/bin/.jaeger.version"
RUN="$OUTBOX_RELAY_RUN/jaeger"
OTLP_PORT="$OUTBOX_RELAY_JAEGER_OTLP_PORT"
QUERY_PORT="$OUTBOX_RELAY_JAEGER_QUERY_PORT"

log() { printf 'jaeger: %s\n' "$*" >&2; }

install() {
    if [[ -x "$BIN" && "$(cat "$STAMP" 2>/dev/null)" == "$VERSION" ]]; then return 0; fi
    log "building github.com/jaegertracing/jaeger/cmd/jaeger@$VERSION (first run: a few minutes)"
    mkdir -p "$OUTBOX_RELAY_CACHE/bin"
    local work
    work="$(mktemp -d)"
    # The module's go.mod has replace directives, so `go install pkg@version` refuses it;
    # as a tool dependency of a scratch module it builds.
    (cd "$work" && go mod init jaeger-build >/dev/null 2>&1 &&
        go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$VERSION" &&
        GOFLAGS=-trimpath go build -o "$BIN" github.com/jaegertracing/jaeger/cmd/jaeger)
    rm -rf "$work"
    printf '%s' "$VERSION" >"$STAMP"
}

answering() { curl -fs "http://127.0.0.1:$QUERY_PORT/api/services" >/dev/null 2>&1; }

start() {
    install
    if answering; then return 0; fi
    mkdir -p "$RUN"
    # In-memory storage, only the OTLP/HTTP receiver, no listeners beyond the two ports.
    cat >"$RUN/config.yaml" <<YAML
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: []
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:$QUERY_PORT
    grpc:
      endpoint: 127.0.0.1:$((QUERY_PORT + 1))
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:$OTLP_PORT
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
YAML
    nohup "$BIN" --config "$RUN/config.yaml" >"$RUN/jaeger.out" 2>&1 &
    echo $! >"$RUN/jaeger.pid"
    for _ in $(seq 60); do
        if answering; then
            log "ready: OTLP/HTTP http://127.0.0.1:$OTLP_PORT, UI http://127.0.0.1:$QUERY_PORT"
            return 0
        fi
        if ! kill -0 "$(cat "$RUN/jaeger.pid")" 2>/dev/null; then break; fi
        sleep 0.5
    done
    log "did not start; last output:"
    tail -n 20 "$RUN/jaeger.out" >&2
    return 1
}

stop() {
    if [[ -f "$RUN/jaeger.pid" ]]; then
        kill "$(cat "$RUN/jaeger.pid")" 2>/dev/null || true
        rm -f "$RUN/jaeger.pid"
    fi
}

case "${1:-start}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    status) answering ;;
    *) echo "usage: $0 [start|stop|status|install]" >&2; exit 2 ;;
esac
