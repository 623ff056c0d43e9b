#!/usr/bin/env python3
"""Assertions over the Helm chart rendered with the ci/ values (standalone, sidecar,
sidecar-classic, all, sidecar-monitoring, ha, ha-one, ha-custom): replicas 1 + Recreate,
probes, security context, secretKeyRefs, verify-full with the CA Secret by default, the
sidecar forms and their probes and port name, the config checksum, the helm test Pod, the
opt-ins; with ha.enabled the replicas, RollingUpdate, the PodDisruptionBudget, the spread
over nodes and relay.yaml's ha section.

Usage: helm_rendered.py WORK_DIR   (WORK_DIR/<values>.yaml from helm template)
"""

import hashlib
import os
import sys

import yaml

work = sys.argv[1]
chart = yaml.safe_load(open(os.path.join(os.path.dirname(__file__), "../../helm/outbox-relay/Chart.yaml")))


def load(name):
    return {
        (d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(open(f"{work}/{name}.yaml")) if d
    }


def kinds(docs):
    return sorted(k for k, _ in docs)


def one(docs, kind):
    (d,) = [d for (k, _), d in docs.items() if k == kind]
    return d


def relay_yaml(docs):
    return next(d for (k, _), d in docs.items() if k == "ConfigMap" and "relay.yaml" in d.get("data", {}))[
        "data"
    ]["relay.yaml"]


def checksum_of(docs):
    """The config checksum annotations must carry: SHA-256 of relay.yaml as the pod mounts it."""
    return hashlib.sha256(relay_yaml(docs).removesuffix("\n").encode()).hexdigest()


sa = load("standalone")
assert kinds(sa) == ["ConfigMap", "Deployment", "Pod", "Service", "ServiceAccount"], kinds(sa)
dep = next(d for (k, _), d in sa.items() if k == "Deployment")
spec = dep["spec"]
assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}, spec["strategy"]
assert spec["revisionHistoryLimit"] == 10, spec
assert spec["template"]["metadata"]["annotations"]["checksum/config"] == checksum_of(sa)
pod = spec["template"]["spec"]
assert "initContainers" not in pod and "topologySpreadConstraints" not in pod, pod
# Without ha.enabled relay.yaml has no ha section: the same file (and checksum) as before.
assert "ha" not in yaml.safe_load(relay_yaml(sa)), relay_yaml(sa)
assert [c["name"] for c in pod["containers"]] == ["outbox-relay"], pod["containers"]
c = pod["containers"][0]
# A real default image: the project's registry and repository, the chart's appVersion.
assert c["image"] == f"ghcr.io/outbox-relay/outbox-relay:{chart['appVersion']}", c["image"]
sc = c["securityContext"]
assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"], sc
assert sc["capabilities"]["drop"] == ["ALL"] and sc["seccompProfile"]["type"] == "RuntimeDefault", sc
assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}, c["livenessProbe"]
assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}, c["readinessProbe"]
assert "startupProbe" not in c, c
assert c["ports"][0] == {"name": "metrics", "containerPort": 10187, "protocol": "TCP"}, c["ports"]
pw = [e for e in c["env"] if e["name"] == "RELAY__SOURCE__PASSWORD"][0]
assert pw["valueFrom"]["secretKeyRef"] == {"name": "orders-db-relay", "key": "password"}, pw
# `kubectl exec … -- outbox-relay status` finds the configuration without --config.
assert {"name": "RELAY_CONFIG", "value": "/etc/outbox-relay/relay.yaml"} in c["env"], c["env"]
assert c["volumeMounts"][0]["mountPath"] == "/etc/outbox-relay"
# Secure by default: verify-full against the CA from a Secret, mounted read-only.
src = yaml.safe_load(next(d for (k, _), d in sa.items() if k == "ConfigMap")["data"]["relay.yaml"])["source"]
assert src["sslmode"] == "verify-full" and src["sslrootcert"] == "/etc/outbox-relay-postgres-ca/ca.crt", src
assert src["channel_binding"] == "prefer" and src["allow_password_without_verified_tls"] is False, src
assert "require_auth" not in src, src
ca_mount = {
    "name": "outbox-relay-postgres-ca",
    "mountPath": "/etc/outbox-relay-postgres-ca",
    "readOnly": True,
}
ca_volume = {
    "name": "outbox-relay-postgres-ca",
    "secret": {"secretName": "outbox-relay-postgres-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]},
}
assert ca_mount in c["volumeMounts"], c["volumeMounts"]
assert ca_volume in pod["volumes"], pod["volumes"]

# helm test: `outbox-relay check` with the relay's image, config, Secrets and account, in a
# Pod the Deployment's ReplicaSet cannot adopt (its labels do not match the selector).
test = one(sa, "Pod")
assert test["metadata"]["annotations"]["helm.sh/hook"] == "test", test["metadata"]
selector = spec["selector"]["matchLabels"]
assert not selector.items() <= test["metadata"]["labels"].items(), (selector, test["metadata"]["labels"])
tpod = test["spec"]
(tc,) = tpod["containers"]
assert tpod["restartPolicy"] == "Never" and tc["image"] == c["image"], (tpod, tc["image"])
assert tc["command"] == ["outbox-relay"] and tc["args"] == [
    "--config",
    "/etc/outbox-relay/relay.yaml",
    "check",
], tc
assert tc["env"] == c["env"] and tc["volumeMounts"] == c["volumeMounts"], (tc["env"], tc["volumeMounts"])
assert tpod["volumes"] == pod["volumes"] and tpod["serviceAccountName"] == pod["serviceAccountName"], tpod
assert tc["securityContext"] == c["securityContext"], tc

sc_ = load("sidecar")
assert kinds(sc_) == ["ConfigMap", "Deployment", "Pod", "ServiceAccount"], kinds(sc_)
ex_dep = next(d for (k, _), d in sc_.items() if k == "Deployment")["spec"]["template"]
ex = ex_dep["spec"]
assert ex_dep["metadata"]["annotations"]["checksum/outbox-relay-config"] == checksum_of(sc_), ex_dep
init = ex["initContainers"][0]
assert init["name"] == "outbox-relay" and init["restartPolicy"] == "Always", init
assert [c["name"] for c in ex["containers"]] == ["app"]
# The sidecar: no readiness probe (the pod's readiness is the app's), liveness on /healthz,
# a port name of its own (the example app has a port named metrics).
assert "readinessProbe" not in init and "startupProbe" not in init, init
assert init["ports"][0] == {"name": "relay-metrics", "containerPort": 10187, "protocol": "TCP"}, init["ports"]
assert init["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "relay-metrics"}, init[
    "livenessProbe"
]
assert ex["containers"][0]["ports"][0]["name"] == "metrics", ex["containers"][0]
assert ex["volumes"][0]["configMap"]["name"] == "outbox-relay-config"
assert ca_volume in ex["volumes"] and ca_mount in init["volumeMounts"], (
    "sidecar: the CA travels with the config volume"
)
classic = next(d for (k, _), d in load("sidecar-classic").items() if k == "Deployment")["spec"]["template"][
    "spec"
]
assert "initContainers" not in classic and [c["name"] for c in classic["containers"]] == [
    "app",
    "outbox-relay",
]
assert "readinessProbe" not in classic["containers"][1], classic["containers"][1]
al = load("all")
want = [
    "ConfigMap",
    "ConfigMap",
    "Deployment",
    "NetworkPolicy",
    "Pod",
    "PodDisruptionBudget",
    "PrometheusRule",
    "Service",
    "ServiceAccount",
    "ServiceMonitor",
]
assert kinds(al) == want, kinds(al)
src_all = yaml.safe_load(
    next(d for (k, n), d in al.items() if k == "ConfigMap" and "relay.yaml" in d.get("data", {}))["data"][
        "relay.yaml"
    ]
)["source"]
assert src_all["sslrootcert"] == "/etc/outbox-relay/ca/ca.crt", src_all
assert src_all["require_auth"] == "scram-sha-256" and src_all["channel_binding"] == "require", src_all
pod_all = next(d for (k, _), d in al.items() if k == "Deployment")["spec"]["template"]["spec"]
assert not any(v["name"] == "outbox-relay-postgres-ca" for v in pod_all["volumes"]), (
    "explicit sslrootcert: no CA Secret"
)
sa_all = next(d for (k, _), d in al.items() if k == "ServiceAccount")
assert "eks.amazonaws.com/role-arn" in sa_all["metadata"]["annotations"]
dash = next(d for (k, n), d in al.items() if k == "ConfigMap" and n.endswith("-dashboard"))
assert dash["metadata"]["labels"]["grafana_dashboard"] == "1"
pod = next(d for (k, _), d in al.items() if k == "Deployment")["spec"]["template"]["spec"]
env = {e["name"]: e for e in pod["containers"][0]["env"]}
sasl = env["RELAY__SINK__KAFKA__PROPERTIES__SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
assert sasl == {"name": "kafka-outbox-relay", "key": "password"}, sasl
assert env["AWS_REGION"]["value"] == "eu-west-1"
dep_all = one(al, "Deployment")["spec"]
# podDisruptionBudget.enabled without ha: one pod, so maxUnavailable (a drain can move it).
assert one(al, "PodDisruptionBudget")["spec"] == {
    "maxUnavailable": 1,
    "selector": {"matchLabels": dep_all["selector"]["matchLabels"]},
}, one(al, "PodDisruptionBudget")
assert dep_all["revisionHistoryLimit"] == 3, dep_all
assert pod["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone", pod
assert [c["name"] for c in pod["initContainers"]] == ["wait-for-db"], pod["initContainers"]
assert [c["name"] for c in pod["containers"]] == ["outbox-relay", "log-shipper"], pod["containers"]
digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
assert pod["containers"][0]["image"] == f"registry.example.com:5000/mirror/outbox-relay@{digest}", pod
sm = one(al, "ServiceMonitor")
assert sm["metadata"]["namespace"] == "monitoring", sm["metadata"]
assert sm["spec"]["namespaceSelector"] == {"matchNames": ["outbox"]}, sm["spec"]
assert sm["spec"]["targetLabels"] == ["app.kubernetes.io/instance"], sm["spec"]
endpoint = sm["spec"]["endpoints"][0]
# job first (the alerts' up{job="outbox-relay"}), then the user's relabelings.
assert endpoint["relabelings"] == [
    {"action": "replace", "targetLabel": "job", "replacement": "outbox-relay"},
    {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node"},
], endpoint
assert endpoint["metricRelabelings"][0]["action"] == "drop", endpoint

# Sidecar mode with the PodMonitor, another port name and other probes.
mon = load("sidecar-monitoring")
assert kinds(mon) == ["ConfigMap", "Deployment", "Pod", "PodMonitor", "PrometheusRule", "ServiceAccount"], (
    kinds(mon)
)
ex_tpl = one(mon, "Deployment")["spec"]["template"]
init = ex_tpl["spec"]["initContainers"][0]
assert init["ports"][0]["name"] == "outbox-metrics" and "readinessProbe" not in init, init
assert init["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "outbox-metrics"}, init["startupProbe"]
assert init["startupProbe"]["failureThreshold"] == 30, init["startupProbe"]
# An explicit port stays; the other liveness settings keep their defaults.
assert init["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 10187}, init["livenessProbe"]
assert init["livenessProbe"]["periodSeconds"] == 20 and init["livenessProbe"]["failureThreshold"] == 6, init
pm = one(mon, "PodMonitor")
assert pm["metadata"]["namespace"] == "monitoring" and pm["metadata"]["labels"]["release"] == "prometheus", pm
assert pm["spec"]["namespaceSelector"] == {"matchNames": ["outbox"]}, pm["spec"]
assert pm["spec"]["selector"]["matchLabels"].items() <= ex_tpl["metadata"]["labels"].items(), pm["spec"]
assert pm["spec"]["podTargetLabels"] == ["app.kubernetes.io/component"], pm["spec"]
pep = pm["spec"]["podMetricsEndpoints"][0]
assert pep["port"] == "outbox-metrics" and pep["path"] == "/metrics", pep
assert pep["relabelings"][0] == {
    "action": "replace",
    "targetLabel": "job",
    "replacement": "orders-outbox-relay",
}
assert pep["relabelings"][1]["targetLabel"] == "node" and pep["metricRelabelings"][0]["action"] == "drop", pep
# ha.enabled (ci/ha-values.yaml): two replicas of one slot, one leader.
ha = load("ha")
assert kinds(ha) == [
    "ConfigMap",
    "Deployment",
    "Pod",
    "PodDisruptionBudget",
    "PrometheusRule",
    "Service",
    "ServiceAccount",
    "ServiceMonitor",
], kinds(ha)
ha_dep = one(ha, "Deployment")["spec"]
ha_selector = ha_dep["selector"]["matchLabels"]
assert ha_dep["replicas"] == 2, ha_dep["replicas"]
# A new pod waits as a standby next to the old ones; an old one goes once its replacement
# is Ready, so a standby is there when the leader's pod stops.
assert ha_dep["strategy"] == {
    "type": "RollingUpdate",
    "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
}, ha_dep["strategy"]
assert yaml.safe_load(relay_yaml(ha))["ha"] == {"enabled": True, "lease_ms": 5000, "poll_interval_ms": 250}, (
    relay_yaml(ha)
)
assert ha_dep["template"]["metadata"]["annotations"]["checksum/config"] == checksum_of(ha)
# On by default with 2+ replicas: a drain always leaves one relay to lead.
assert one(ha, "PodDisruptionBudget")["spec"] == {
    "minAvailable": 1,
    "selector": {"matchLabels": ha_selector},
}, one(ha, "PodDisruptionBudget")
ha_pod = ha_dep["template"]["spec"]
assert ha_pod["topologySpreadConstraints"] == [
    {
        "maxSkew": 1,
        "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": ha_selector},
    }
], ha_pod["topologySpreadConstraints"]
assert ha_selector.items() <= ha_dep["template"]["metadata"]["labels"].items(), ha_dep["template"]["metadata"]
# A standby answers /readyz 200 "standby": the same readiness probe serves leader and standby.
(ha_c,) = ha_pod["containers"]
assert ha_c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}, ha_c["readinessProbe"]
# The helm test Pod is no replica: not spread with them.
assert "topologySpreadConstraints" not in one(ha, "Pod")["spec"], one(ha, "Pod")["spec"]

# ha.enabled with one replica: RollingUpdate, no budget (it would block or do nothing).
ha1 = load("ha-one")
assert "PodDisruptionBudget" not in kinds(ha1), kinds(ha1)
ha1_dep = one(ha1, "Deployment")["spec"]
assert ha1_dep["replicas"] == 1 and ha1_dep["strategy"]["type"] == "RollingUpdate", ha1_dep
# Three replicas with the user's own spread and budget: they replace the chart's.
hac = load("ha-custom")
hac_dep = one(hac, "Deployment")["spec"]
assert hac_dep["replicas"] == 3, hac_dep
assert [c["topologyKey"] for c in hac_dep["template"]["spec"]["topologySpreadConstraints"]] == [
    "topology.kubernetes.io/zone"
], hac_dep["template"]["spec"]["topologySpreadConstraints"]
assert one(hac, "PodDisruptionBudget")["spec"]["minAvailable"] == 2, one(hac, "PodDisruptionBudget")
print("rendered objects as expected")
