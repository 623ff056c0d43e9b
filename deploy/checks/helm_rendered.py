#!/usr/bin/env python3
"""Assertions over the Helm chart rendered with the ci/ values (standalone, sidecar,
sidecar-classic, all): replicas 1 + Recreate, probes, security context, secretKeyRefs,
verify-full with the CA Secret by default, the sidecar forms, the opt-ins.

Usage: helm_rendered.py WORK_DIR   (WORK_DIR/<values>.yaml from helm template)
"""

import sys

import yaml

work = sys.argv[1]


def load(name):
    return {
        (d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(open(f"{work}/{name}.yaml")) if d
    }


def kinds(docs):
    return sorted(k for k, _ in docs)


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
assert c["ports"][0] == {"name": "metrics", "containerPort": 10187, "protocol": "TCP"}, c["ports"]
pw = [e for e in c["env"] if e["name"] == "RELAY__SOURCE__PASSWORD"][0]
assert pw["valueFrom"]["secretKeyRef"] == {"name": "orders-db-relay", "key": "password"}, pw
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
sc_ = load("sidecar")
assert kinds(sc_) == ["ConfigMap", "Deployment", "ServiceAccount"], kinds(sc_)
ex = next(d for (k, _), d in sc_.items() if k == "Deployment")["spec"]["template"]["spec"]
init = ex["initContainers"][0]
assert init["name"] == "outbox-relay" and init["restartPolicy"] == "Always", init
assert [c["name"] for c in ex["containers"]] == ["app"]
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
al = load("all")
want = [
    "ConfigMap",
    "ConfigMap",
    "Deployment",
    "NetworkPolicy",
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
print("rendered objects as expected")
