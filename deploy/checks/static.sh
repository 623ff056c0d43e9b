# shellcheck shell=bash disable=SC2154 # variables and functions of the script that sources this part
# deploy/checks/run.sh, part: shell scripts, Python, the Dockerfile and its build context,
# compose.yaml; starts the compose relay config check. Sourced by run.sh (its variables,
# check and log).
# Every script, the parts split out of the long ones included (each part names the
# script that sources it; -x follows the sources).
shellcheck_all() {
    local files=()
    mapfile -d '' -t files < <(cd "$root" && git ls-files -z -co --exclude-standard '*.sh')
    echo "${#files[@]} scripts"
    (cd "$root" && shellcheck -x "${files[@]}")
}
check "shellcheck every script (git ls-files '*.sh')" shellcheck_all
ruff_py() { # the checks' Python: lint and formatting (deploy/checks/ruff.toml)
    "$VENV/bin/ruff" check --config "$here/ruff.toml" "$here"/*.py &&
        "$VENV/bin/ruff" format --config "$here/ruff.toml" --check "$here"/*.py
}
check "ruff deploy/checks/*.py (lint + format)" ruff_py
check "hadolint deploy/Dockerfile" "$VENV/bin/hadolint" "$root/deploy/Dockerfile"
check "dashboard: a panel for every metric an alert uses" \
    "$PY" "$here/alert_panels.py" "$root/deploy/grafana/outbox-relay.json" "$root/deploy/prometheus/outbox-relay-rules.yaml"

docker_context() { # the build context deploy/Dockerfile gets (.dockerignore applied) holds a workspace cargo can resolve
    local ctx="$work/docker-context"
    (cd "$root" && git ls-files -co --exclude-standard) >"$work/files.txt" || return 1
    "$PY" "$here/docker_context.py" "$root" "$ctx" "$work/files.txt" || return 1
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
check "compose.yaml structure (services, files, wal_level, KRaft, init DDL = demo.sh; monitoring profile: scrape target relay:10187, rules, data source, dashboard)" compose_structure

compose_spec() { # the default services, then every profile's (examples, monitoring) as well
    compose-config "$root/deploy/compose.yaml" >"$work/compose.resolved.yaml" || return 1
    COMPOSE_PROFILES='*' compose-config "$root/deploy/compose.yaml" >"$work/compose.all.yaml" || return 1
    if ! grep -q '^  prometheus:$' "$work/compose.all.yaml" || ! grep -q '^  grafana:$' "$work/compose.all.yaml"; then
        echo "COMPOSE_PROFILES='*' did not load the monitoring profile"
        return 1
    fi
    if docker compose version >/dev/null 2>&1; then
        docker compose -f "$root/deploy/compose.yaml" config -q || return 1
        docker compose -f "$root/deploy/compose.yaml" --profile '*' config -q || return 1
    else
        echo "note: no 'docker compose' plugin here; validated with compose-go only"
    fi
}
check "compose.yaml against the Compose specification, default and all profiles (compose-go, as 'docker compose config')" compose_spec

compose_prometheus() { # the monitoring profile's prometheus.yml with its mounts laid out as in the container
    local config
    config="$("$PY" "$here/compose_check.py" "$root" --stage-prometheus "$work/compose-prometheus")" || {
        echo "$config"; return 1; }
    promtool check config "$config" | tee "$work/promtool-config.out" || return 1
    grep -Eq 'SUCCESS: [1-9][0-9]* rule files found' "$work/promtool-config.out" || { echo "no rule file loaded"; return 1; }
}
check "compose monitoring profile: promtool check config (prometheus.yml and the mounted rules)" compose_prometheus

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
