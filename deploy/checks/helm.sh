# shellcheck shell=bash disable=SC2154 # variables and functions of the script that sources this part
# deploy/checks/run.sh, part: the Helm chart (lint, kubeconform, rendered objects, schema),
# the dashboard and alert rules, and the results of the relay config checks. Sourced by
# run.sh (its variables, check and log).
# The Prometheus Operator's kinds (ServiceMonitor, PodMonitor, PrometheusRule) against the
# schemas of its CRDs, the rest against Kubernetes'.
KC=(kubeconform -strict -summary -schema-location "$SCHEMAS"
    -schema-location "$CRD_SCHEMAS/{{ .ResourceKind }}{{ .KindSuffix }}.json" -kubernetes-version "$K8S_VERSION")
HT=(helm template outbox-relay "$CHART" --namespace outbox --kube-version "$K8S_VERSION")

for v in standalone sidecar all sqs-fifo sns sidecar-monitoring ha; do
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
check "helm template | kubeconform (sidecar, PodMonitor, PrometheusRule overrides)" template_kubeconform sidecar-monitoring -f "$CHART/ci/sidecar-monitoring-values.yaml"
check "helm template | kubeconform (ha.enabled, 2 replicas: RollingUpdate, PDB, spread over nodes)" template_kubeconform ha -f "$CHART/ci/ha-values.yaml"
ha_variants() { # ha.enabled with one replica; with three, the user's own spread and budget
    template_kubeconform ha-one -f "$CHART/ci/ha-values.yaml" --set replicas=1 &&
        template_kubeconform ha-custom -f "$CHART/ci/ha-values.yaml" --set replicas=3 \
            --set podDisruptionBudget.minAvailable=2 \
            --set-json 'topologySpreadConstraints=[{"maxSkew":1,"topologyKey":"topology.kubernetes.io/zone","whenUnsatisfiable":"DoNotSchedule","labelSelector":{"matchLabels":{"app.kubernetes.io/name":"outbox-relay"}}}]'
}
check "helm template | kubeconform (ha.enabled: 1 replica; 3 replicas with own topologySpreadConstraints and minAvailable)" ha_variants

assert_rendered() { # python assertions over the rendered manifests
    "$PY" "$here/helm_rendered.py" "$work"
}
check "rendered objects: replicas 1 + Recreate (ha: 2 + RollingUpdate, PDB minAvailable 1, node spread, relay.yaml ha), probes, security context, secretKeyRefs, verify-full + CA Secret by default, sidecar forms and probes, helm test Pod, opt-ins" assert_rendered

assert_rendered_aws() { # the sink section of relay.yaml and the AWS-specific objects
    "$PY" "$here/helm_rendered_aws.py" "$work"
}
check "rendered SNS/SQS objects: sink.kind + sink.sns/sink.sqs keys, no Kafka variables, AWS egress" assert_rendered_aws

sidecar_parent_chart() { # a user's chart that includes the sidecar template
    local parent="$work/parent"
    mkdir -p "$parent"
    cp -r "$root/helm/outbox-relay" "$root/helm/examples" "$parent/"
    (cd "$parent/examples/sidecar-app" && helm dependency build . >/dev/null) || return 1
    helm template demo "$parent/examples/sidecar-app" --kube-version "$K8S_VERSION" >"$work/parent.yaml" || return 1
    "${KC[@]}" "$work/parent.yaml" || return 1
    # The same with another relay configuration: the pod's config checksum must change.
    helm template demo "$parent/examples/sidecar-app" --kube-version "$K8S_VERSION" \
        --set 'outbox-relay.outbox.route.template=orders.{aggregatetype}' >"$work/parent-changed.yaml" || return 1
    "$PY" "$here/helm_parent_chart.py" "$work/parent.yaml" "$work/parent-changed.yaml"
}
check "example app chart (helm/examples/sidecar-app): native sidecar without readiness probe, distinct port names, config checksum, PodMonitor job = alerts' job; kubeconform" sidecar_parent_chart

saga_example_chart() { # the example application (examples/): three services, three native sidecars
    local parent="$work/saga-parent"
    mkdir -p "$parent"
    cp -r "$root/helm/outbox-relay" "$root/helm/examples" "$parent/"
    (cd "$parent/examples/saga" && helm dependency build . >/dev/null) || return 1
    helm template demo "$parent/examples/saga" --kube-version "$K8S_VERSION" >"$work/saga.yaml" || return 1
    "${KC[@]}" "$work/saga.yaml" || return 1
    "$PY" "$here/helm_saga_chart.py" "$work/saga.yaml"
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
    "$PY" "$here/chart_readme_values.py" "$CHART/values.yaml" "$CHART/README.md"
}
check "chart README lists every value" readme_lists_values
check "schema rejects: no database host" expect_schema_error host "at '/database/host': minLength: got 0, want 1" --set kafka.brokers=kafka:9092
check "schema rejects: mode bogus" expect_schema_error mode "at '/mode': value must be one of 'standalone', 'sidecar'" -f "$CHART/ci/standalone-values.yaml" --set mode=bogus
check "schema rejects: standalone with replicas 2 without ha.enabled" expect_schema_error replicas "at '/replicas': value must be 1" -f "$CHART/ci/standalone-values.yaml" --set replicas=2
check "schema accepts: standalone with replicas 2 and ha.enabled" "${HT[@]}" -f "$CHART/ci/standalone-values.yaml" --set replicas=2 --set ha.enabled=true
check "schema rejects: ha.enabled with replicas 0" expect_schema_error ha-replicas "at '/replicas': minimum: got 0, want 1" -f "$CHART/ci/ha-values.yaml" --set replicas=0
check "schema rejects: ha.leaseMs below 1000 (the relay's minimum)" expect_schema_error ha-lease "at '/ha/leaseMs': minimum: got 999, want 1,000" -f "$CHART/ci/ha-values.yaml" --set ha.leaseMs=999
check "schema rejects: ha.enabled in sidecar mode" expect_schema_error ha-sidecar "at '/ha/enabled': value must be false" -f "$CHART/ci/sidecar-values.yaml" --set ha.enabled=true
check "schema accepts: sidecar mode ignores replicas" "${HT[@]}" -f "$CHART/ci/sidecar-values.yaml" --set replicas=2
check "schema rejects: sink.kind kafka without kafka.brokers" expect_schema_error brokers "at '/kafka/brokers': minLength: got 0, want 1" -f "$CHART/ci/sqs-fifo-values.yaml" --set sink.kind=kafka
check "schema rejects: sink.kind bogus" expect_schema_error kind "at '/sink/kind': value must be one of 'kafka', 'sns', 'sqs'" -f "$CHART/ci/standalone-values.yaml" --set sink.kind=bogus
check "schema rejects: sink.kind sqs with the Kafka-style route (no queue URL)" expect_schema_error route "at '/outbox/route/template': 'outbox.event.{aggregatetype}' does not match pattern" -f "$CHART/ci/standalone-values.yaml" --set sink.kind=sqs
check "schema rejects: sink.kind sns with a queue URL as dead-letter destination" expect_schema_error dead-letter "at '/outbox/deadLetterDestination'" -f "$CHART/ci/sns-values.yaml" --set outbox.deadLetterDestination=https://sqs.eu-west-1.amazonaws.com/123456789012/dlq
check "schema rejects: sqs.fifo with a standard queue" expect_schema_error fifo "at '/outbox/route/overrides/0/destination'" -f "$CHART/ci/sqs-fifo-values.yaml" --set 'outbox.route.overrides[0].aggregate_type=Payment,outbox.route.overrides[0].destination=https://sqs.eu-west-1.amazonaws.com/123456789012/payments'
check "schema rejects: sqs.maxConcurrency 0" expect_schema_error concurrency "at '/sqs/maxConcurrency': minimum: got 0, want 1" -f "$CHART/ci/sqs-fifo-values.yaml" --set sqs.maxConcurrency=0
check "schema rejects: sqs.largePayloads.mode s3 without a bucket" expect_schema_error large-payloads "at '/sqs/largePayloads/bucket': minLength: got 0, want 3" -f "$CHART/ci/sqs-fifo-values.yaml" --set sqs.largePayloads.mode=s3
check "schema rejects: sns.maxMessageBytes over the SNS limit" expect_schema_error sns-limit "at '/sns/maxMessageBytes': maximum: got 300,000, want 262,144" -f "$CHART/ci/sns-values.yaml" --set sns.maxMessageBytes=300000
check "schema accepts: sink.kind sqs needs no kafka.brokers" "${HT[@]}" -f "$CHART/ci/sqs-fifo-values.yaml" --set kafka.brokers=
check "schema rejects: podMonitor.enabled without a selector" expect_schema_error podmonitor "at '/podMonitor/selector': minProperties: got 0, want 1" -f "$CHART/ci/sidecar-values.yaml" --set podMonitor.enabled=true
check "schema rejects: sidecar.portName over 15 characters" expect_schema_error port-name "at '/sidecar/portName': maxLength: got 18, want 15" -f "$CHART/ci/sidecar-values.yaml" --set sidecar.portName=relay-metrics-port
check "schema rejects: an unknown key in a prometheusRule.rules override" expect_schema_error rule-key "at '/prometheusRule/rules/OutboxRelayDown': additional properties 'treshold' not allowed" -f "$CHART/ci/standalone-values.yaml" --set prometheusRule.enabled=true --set prometheusRule.rules.OutboxRelayDown.treshold=1
expect_render_error() { # description expected-substring helm-args...: the chart's own fail
    local want="$2" out
    shift 2
    if out="$("${HT[@]}" "$@" 2>&1)"; then
        echo "helm rendered the values"
        return 1
    fi
    echo "$out" | head -n 2
    grep -qF "$want" <<<"$out"
}
check "chart refuses: an override for an alert the rules file does not have" expect_render_error unknown-alert "prometheusRule.rules.OutboxRelayDwn: no such alert in the rules file" -f "$CHART/ci/standalone-values.yaml" --set prometheusRule.enabled=true --set prometheusRule.rules.OutboxRelayDwn.enabled=false
check "chart refuses: ha PodDisruptionBudget minAvailable >= replicas (no drain could proceed)" expect_render_error ha-pdb "podDisruptionBudget.minAvailable 2 with replicas 2: no drain could evict a relay pod" -f "$CHART/ci/ha-values.yaml" --set podDisruptionBudget.minAvailable=2
check "chart refuses: a threshold for an alert without one" expect_render_error no-threshold "prometheusRule.rules.OutboxRelayDown has no threshold; override expr instead" -f "$CHART/ci/standalone-values.yaml" --set prometheusRule.enabled=true --set prometheusRule.rules.OutboxRelayDown.threshold=1

extract_config() { # values-name: relay.yaml out of the rendered ConfigMap
    "$PY" "$here/extract_relay_config.py" "$work/$1.yaml" "$work/$1-relay.yaml"
}
for v in standalone sidecar all ha; do
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
same_copies() {
    cmp "$root/deploy/grafana/outbox-relay.json" "$CHART/files/outbox-relay.json" &&
        cmp "$root/deploy/prometheus/outbox-relay-rules.yaml" "$CHART/files/outbox-relay-rules.yaml" &&
        "$PY" "$here/chart_copies.py" "$work/all.yaml" "$root/deploy/prometheus/outbox-relay-rules.yaml" "$root/deploy/grafana/outbox-relay.json"
}
check "dashboard and rules: chart copies identical to deploy/grafana, deploy/prometheus" same_copies
check "promtool check rules" promtool check rules "$root/deploy/prometheus/outbox-relay-rules.yaml"
chart_rule_overrides() { # prometheusRule.* applied as asked, nothing else changed; valid rules; a runbook per alert
    "$PY" "$here/chart_rules.py" "$root/deploy/prometheus/outbox-relay-rules.yaml" \
        "$work/sidecar-monitoring.yaml" "$root/docs/runbooks.md" "$work/overridden-rules.yaml" &&
        promtool check rules "$work/overridden-rules.yaml"
}
check "chart PrometheusRule overrides (thresholds, for, severity, labels, expr, enabled, job, runbook URL) + promtool; docs/runbooks.md has every alert" chart_rule_overrides
check "promtool test rules (every alert fires from synthetic series)" \
    promtool test rules "$root/deploy/prometheus/tests/outbox-relay-rules.test.yaml"

check "compose relay config (deploy/local/relay.yaml + compose RELAY__ env) passes 'outbox-relay check' config" config_result compose
for v in standalone sidecar all ha; do
    check "helm-rendered relay.yaml ($v, + password variables) passes 'outbox-relay check' config" config_result "$v"
done
check "helm-rendered relay.yaml (sqs-fifo) passes 'outbox-relay check' config; the relay builds the SQS sink" config_result sqs-fifo SQS
check "helm-rendered relay.yaml (sns) passes 'outbox-relay check' config; the relay builds the SNS sink" config_result sns SNS
