#!/usr/bin/env bash
# Local SNS/SQS emulator (moto server) for development and the connector tests.
#
# Usage: deploy/local/aws.sh [start|stop|status|env|extended-client|fauxqs-start|fauxqs-stop]
#
#   start   (default) install moto into a venv if needed, start `moto_server` in the
#           background on $OUTBOX_RELAY_AWS_HOST:$OUTBOX_RELAY_AWS_PORT and wait until it
#           answers. Idempotent: returns at once if it is already up.
#   stop    SIGTERM, wait up to 10 s, then SIGKILL. Moto keeps everything in memory, so
#           stopping wipes all topics and queues.
#   status  exit 0 if running and answering, 1 otherwise.
#   env     print the environment the tests and the relay need (eval "$(aws.sh env)").
#   extended-client
#           install the Amazon SQS Extended Client Library for Python (PyPI
#           amazon-sqs-extended-client, the consumer side of large_payloads: s3) into its
#           own venv if needed and print that venv's python. Idempotent.
#   fauxqs-start / fauxqs-stop
#           optional second emulator, fauxqs (npm, Node.js >= 20), much faster than moto,
#           for throughput runs: OUTBOX_RELAY_AWS_ENDPOINT=http://127.0.0.1:19325. It
#           listens on all interfaces (fauxqs has no bind-address setting).
#
# Settings come from deploy/local/env.sh. Also:
#   OUTBOX_RELAY_AWS_HOST          listen address (default 127.0.0.1)
#   OUTBOX_RELAY_AWS_PORT          listen port (default 19324)
#   OUTBOX_RELAY_AWS_ENDPOINT      endpoint URL the tests use (default http://HOST:PORT)
#   OUTBOX_RELAY_MOTO_VERSION      pip requirement for moto (default "moto[server]>=5,<6")
#   OUTBOX_RELAY_AWS_START_TIMEOUT seconds to wait for readiness (default 60)
#   OUTBOX_RELAY_SQS_EXTENDED_VERSION pip requirement for the extended client
#                                  (default "amazon-sqs-extended-client==1.0.1")
#   OUTBOX_RELAY_FAUXQS_PORT       fauxqs port (default 19325)
#   OUTBOX_RELAY_FAUXQS_VERSION    fauxqs npm version (default 1.9.2)
#
# Credentials for the emulator are fixed test values (AWS_ACCESS_KEY_ID=test,
# AWS_SECRET_ACCESS_KEY=test, AWS_REGION=us-east-1); moto accepts any.
#
# Layout:
#   $OUTBOX_RELAY_CACHE/moto-venv/     the virtualenv (.installed marks completion)
#   $OUTBOX_RELAY_RUN/aws/moto.out     server stdout+stderr
#   $OUTBOX_RELAY_RUN/aws/moto.pid     server pid
#   $OUTBOX_RELAY_CACHE/sqs-extended-venv/ the extended client's virtualenv
#   $OUTBOX_RELAY_CACHE/fauxqs-<version>/  fauxqs npm install; $OUTBOX_RELAY_RUN/aws/fauxqs.{out,pid}
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=SCRIPTDIR/env.sh
source "$SCRIPT_DIR/env.sh"

AWS_HOST="${OUTBOX_RELAY_AWS_HOST:-127.0.0.1}"
AWS_PORT="${OUTBOX_RELAY_AWS_PORT:-19324}"
AWS_ENDPOINT="${OUTBOX_RELAY_AWS_ENDPOINT:-http://$AWS_HOST:$AWS_PORT}"
MOTO_REQUIREMENT="${OUTBOX_RELAY_MOTO_VERSION:-moto[server]>=5,<6}"
START_TIMEOUT="${OUTBOX_RELAY_AWS_START_TIMEOUT:-60}"

FAUXQS_PORT="${OUTBOX_RELAY_FAUXQS_PORT:-19325}"
FAUXQS_VERSION="${OUTBOX_RELAY_FAUXQS_VERSION:-1.9.2}"
FAUXQS_HOME="$OUTBOX_RELAY_CACHE/fauxqs-$FAUXQS_VERSION"

VENV="$OUTBOX_RELAY_CACHE/moto-venv"
EXTENDED_REQUIREMENT="${OUTBOX_RELAY_SQS_EXTENDED_VERSION:-amazon-sqs-extended-client==1.0.1}"
EXTENDED_VENV="$OUTBOX_RELAY_CACHE/sqs-extended-venv"
MARKER="$VENV/.installed"
STATE_DIR="$OUTBOX_RELAY_RUN/aws"
PID_FILE="$STATE_DIR/moto.pid"
OUT_FILE="$STATE_DIR/moto.out"

log() { printf 'aws: %s\n' "$*" >&2; }
die() { printf 'aws: error: %s\n' "$*" >&2; exit 1; }

running_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE")"
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && { echo "$pid"; return 0; }
    return 1
}

answering() {
    # moto answers GET / with 200 once its WSGI app is up.
    if command -v curl >/dev/null 2>&1; then
        curl -fsS -o /dev/null --max-time 2 "$AWS_ENDPOINT/" 2>/dev/null
    else
        "$VENV/bin/python" - "$AWS_ENDPOINT" <<'EOF' >/dev/null 2>&1
import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + "/", timeout=2)
EOF
    fi
}

install() {
    [[ -f "$MARKER" ]] && return 0
    command -v python3 >/dev/null || die "python3 is required (apt-get install python3 python3-venv)"
    log "installing $MOTO_REQUIREMENT into $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV" || die "python3 -m venv failed (apt-get install python3-venv)"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "$MOTO_REQUIREMENT"
    touch "$MARKER"
}

# A separate venv: the extended client pins its own boto3, which moto's must not follow.
extended_client() {
    local marker="$EXTENDED_VENV/.installed-$EXTENDED_REQUIREMENT"
    if [[ ! -f "$marker" ]]; then
        command -v python3 >/dev/null || die "python3 is required (apt-get install python3 python3-venv)"
        log "installing $EXTENDED_REQUIREMENT into $EXTENDED_VENV"
        rm -rf "$EXTENDED_VENV"
        python3 -m venv "$EXTENDED_VENV" || die "python3 -m venv failed (apt-get install python3-venv)"
        "$EXTENDED_VENV/bin/pip" install --quiet --disable-pip-version-check "$EXTENDED_REQUIREMENT" >&2
        touch "$marker"
    fi
    echo "$EXTENDED_VENV/bin/python"
}

start() {
    if running_pid >/dev/null && answering; then
        return 0
    fi
    install
    mkdir -p "$STATE_DIR"
    if pid="$(running_pid)"; then
        log "pid $pid is not answering; restarting it"
        kill "$pid" 2>/dev/null || true
        sleep 1
    fi
    log "starting moto on $AWS_ENDPOINT"
    nohup "$VENV/bin/moto_server" -H "$AWS_HOST" -p "$AWS_PORT" >"$OUT_FILE" 2>&1 &
    echo $! >"$PID_FILE"
    local waited=0
    until answering; do
        running_pid >/dev/null || die "moto exited; see $OUT_FILE"
        ((waited++ < START_TIMEOUT * 5)) || die "moto did not answer within ${START_TIMEOUT}s; see $OUT_FILE"
        sleep 0.2
    done
    log "moto is up ($AWS_ENDPOINT)"
}

stop() {
    local pid
    pid="$(running_pid)" || { rm -f "$PID_FILE"; return 0; }
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$PID_FILE"
    log "stopped"
}

pid_alive() {
    [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

fauxqs_answering() {
    curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$FAUXQS_PORT/health" 2>/dev/null
}

fauxqs_start() {
    local pid_file="$STATE_DIR/fauxqs.pid" out_file="$STATE_DIR/fauxqs.out"
    if pid_alive "$pid_file" && fauxqs_answering; then
        return 0
    fi
    command -v node >/dev/null || die "fauxqs needs Node.js >= 20 (apt-get install nodejs npm)"
    command -v curl >/dev/null || die "fauxqs-start needs curl"
    if [[ ! -f "$FAUXQS_HOME/.installed" ]]; then
        log "installing fauxqs@$FAUXQS_VERSION into $FAUXQS_HOME"
        mkdir -p "$FAUXQS_HOME"
        npm install --prefix "$FAUXQS_HOME" --no-audit --no-fund --loglevel=error "fauxqs@$FAUXQS_VERSION"
        touch "$FAUXQS_HOME/.installed"
    fi
    mkdir -p "$STATE_DIR"
    log "starting fauxqs on port $FAUXQS_PORT"
    FAUXQS_PORT="$FAUXQS_PORT" FAUXQS_LOGGER=false \
        nohup node "$FAUXQS_HOME/node_modules/fauxqs/dist/cli.js" >"$out_file" 2>&1 &
    echo $! >"$pid_file"
    local waited=0
    until fauxqs_answering; do
        pid_alive "$pid_file" || die "fauxqs exited; see $out_file"
        ((waited++ < START_TIMEOUT * 5)) || die "fauxqs did not answer within ${START_TIMEOUT}s; see $out_file"
        sleep 0.2
    done
    log "fauxqs is up (http://127.0.0.1:$FAUXQS_PORT)"
}

fauxqs_stop() {
    local pid_file="$STATE_DIR/fauxqs.pid"
    if pid_alive "$pid_file"; then
        kill "$(cat "$pid_file")" 2>/dev/null || true
        log "fauxqs stopped"
    fi
    rm -f "$pid_file"
}

print_env() {
    cat <<EOF
export OUTBOX_RELAY_AWS_ENDPOINT=$AWS_ENDPOINT
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=us-east-1
EOF
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    status) running_pid >/dev/null && answering ;;
    env) print_env ;;
    extended-client) extended_client ;;
    fauxqs-start) fauxqs_start ;;
    fauxqs-stop) fauxqs_stop ;;
    *) die "usage: $0 [start|stop|status|env|extended-client|fauxqs-start|fauxqs-stop]" ;;
esac
