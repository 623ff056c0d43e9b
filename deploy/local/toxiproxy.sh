#!/usr/bin/env bash
# Toxiproxy (a TCP proxy that injects network faults: cut connections, latency, bandwidth
# limits, slow close, half-open connections) for the chaos suite (tests/chaos.sh), which
# puts it between the relay and PostgreSQL and between the relay and Kafka.
#
# Usage: deploy/local/toxiproxy.sh [start|stop|status|install]
#
#   install  build toxiproxy-server from the Go module proxy into $OUTBOX_RELAY_CACHE/bin
#            (first time on a machine: a minute or two). Idempotent.
#   start    (default) install, then start the server with its HTTP API on
#            127.0.0.1:$OUTBOX_RELAY_TOXIPROXY_PORT. Idempotent. Proxies are created
#            through the API by whoever uses it; a restarted server has none.
#   stop     SIGTERM.
#   status   exit 0 if the API answers.
#
# Settings from deploy/local/env.sh; also OUTBOX_RELAY_TOXIPROXY_PORT (default 18474, not
# toxiproxy's 8474, which is a common development port) and OUTBOX_RELAY_TOXIPROXY_VERSION
# (default v2.5.0, the newest v2 the module proxy serves here).
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/env.sh
source "$SCRIPT_DIR/env.sh"
export PATH="/usr/local/go/bin:$PATH"

VERSION="${OUTBOX_RELAY_TOXIPROXY_VERSION:-v2.5.0}"
PORT="${OUTBOX_RELAY_TOXIPROXY_PORT:-18474}"
BIN="$OUTBOX_RELAY_CACHE/bin/toxiproxy-server"
STAMP="$OUTBOX_RELAY_CACHE/bin/.toxiproxy.version"
RUN="$OUTBOX_RELAY_RUN/toxiproxy-$PORT"

log() { printf 'toxiproxy: %s\n' "$*" >&2; }

install() {
    if [[ -x "$BIN" && "$(cat "$STAMP" 2>/dev/null)" == "$VERSION" ]]; then return 0; fi
    log "building github.com/Shopify/toxiproxy/v2/cmd/server@$VERSION"
    mkdir -p "$OUTBOX_RELAY_CACHE/bin"
    local work
    work="$(mktemp -d)"
    # As a tool dependency of a scratch module, like deploy/local/jaeger.sh: the same
    # build whether or not the module's go.mod would let `go install pkg@version` have it.
    (cd "$work" && go mod init toxiproxy-build >/dev/null 2>&1 &&
        go get -tool "github.com/Shopify/toxiproxy/v2/cmd/server@$VERSION" &&
        GOFLAGS=-trimpath go build -o "$BIN" github.com/Shopify/toxiproxy/v2/cmd/server)
    rm -rf "$work"
    printf '%s' "$VERSION" >"$STAMP"
}

answering() { curl -fs "http://127.0.0.1:$PORT/version" >/dev/null 2>&1; }

start() {
    install
    if answering; then return 0; fi
    mkdir -p "$RUN"
    # setsid: its own session, so it outlives the calling shell (as kafka.sh does).
    setsid nohup "$BIN" -host 127.0.0.1 -port "$PORT" >"$RUN/toxiproxy.out" 2>&1 </dev/null &
    echo $! >"$RUN/toxiproxy.pid"
    for _ in $(seq 50); do
        if answering; then
            log "ready: API http://127.0.0.1:$PORT"
            return 0
        fi
        if ! kill -0 "$(cat "$RUN/toxiproxy.pid")" 2>/dev/null; then break; fi
        sleep 0.2
    done
    log "did not start; last output:"
    tail -n 20 "$RUN/toxiproxy.out" >&2
    return 1
}

stop() {
    if [[ -f "$RUN/toxiproxy.pid" ]]; then
        kill "$(cat "$RUN/toxiproxy.pid")" 2>/dev/null || true
        rm -f "$RUN/toxiproxy.pid"
    fi
}

case "${1:-start}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    status) answering ;;
    *) echo "usage: $0 [start|stop|status|install]" >&2; exit 2 ;;
esac
