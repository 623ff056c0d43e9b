#!/usr/bin/env python3
"""The example application chart (helm/examples/sidecar-app) renders a pod carrying the
relay as a native sidecar with the subchart's config and service account, and:

- the relay container has no readiness probe (in a pod every container's readiness makes
  the pod's: a relay /readyz failing while Kafka or PostgreSQL is down would take the
  application out of its Service), liveness on /healthz;
- no two containers of the pod share a port name (the app has its own `metrics`);
- the pod's config checksum annotation is the SHA-256 of the relay.yaml the pod mounts,
  and changes when the relay configuration changes (RENDERED_CHANGED_YAML: the same chart
  with another route template);
- the PodMonitor selects this pod, scrapes the relay's port, and gives the targets the job
  label the PrometheusRule's up{job=…} alerts select.

Usage: helm_parent_chart.py RENDERED_YAML RENDERED_CHANGED_YAML
"""

import hashlib
import re
import sys

import yaml


def load(path):
    return {d["kind"]: d for d in yaml.safe_load_all(open(path)) if d}


docs = load(sys.argv[1])
template = docs["Deployment"]["spec"]["template"]
pod = template["spec"]
init = pod["initContainers"][0]
assert init["name"] == "outbox-relay" and init["restartPolicy"] == "Always", init
assert pod["volumes"][0]["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"], pod["volumes"]
assert pod["serviceAccountName"] == docs["ServiceAccount"]["metadata"]["name"]
# The image of the subchart's own scope (.Subcharts): its appVersion, not "latest".
assert re.fullmatch(r"ghcr\.io/outbox-relay/outbox-relay:\d+\.\d+\.\d+", init["image"]), init["image"]

# Readiness: the application's alone.
assert "readinessProbe" not in init, ("the relay sidecar must not gate the pod's readiness", init)
relay_port = init["ports"][0]["name"]
assert relay_port == "relay-metrics", init["ports"]
assert init["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": relay_port}, init["livenessProbe"]
assert "startupProbe" not in init, init
names = [p["name"] for c in pod["initContainers"] + pod["containers"] for p in c.get("ports", [])]
assert len(names) == len(set(names)), ("port names collide in the pod", names)
app_ports = [p["name"] for c in pod["containers"] for p in c.get("ports", [])]
assert "metrics" in app_ports and relay_port not in app_ports, app_ports

# The checksum covers exactly what the pod mounts, and follows a configuration change.
relay_yaml = docs["ConfigMap"]["data"]["relay.yaml"]
checksum = template["metadata"]["annotations"]["checksum/outbox-relay-config"]
assert checksum == hashlib.sha256(relay_yaml.removesuffix("\n").encode()).hexdigest(), checksum
changed = load(sys.argv[2])
changed_checksum = changed["Deployment"]["spec"]["template"]["metadata"]["annotations"][
    "checksum/outbox-relay-config"
]
assert changed["ConfigMap"]["data"]["relay.yaml"] != relay_yaml, "the second rendering changes nothing"
assert changed_checksum != checksum, "config changed, checksum did not: the pod would not roll"

# Sidecar mode has no Service: the PodMonitor is the scrape target the alerts need.
pm = docs["PodMonitor"]["spec"]
selector = pm["selector"]["matchLabels"]
assert selector.items() <= template["metadata"]["labels"].items(), (selector, template["metadata"]["labels"])
endpoint = pm["podMetricsEndpoints"][0]
assert endpoint["port"] == relay_port, endpoint
job_relabels = [r for r in endpoint.get("relabelings") or [] if r.get("targetLabel") == "job"]
assert len(job_relabels) == 1, ("the PodMonitor must set the job label the alerts select", endpoint)
job_relabel = job_relabels[0]
assert job_relabel["action"] == "replace", job_relabel
rules = {r["alert"]: r for g in docs["PrometheusRule"]["spec"]["groups"] for r in g["rules"]}
for alert in ("OutboxRelayDown", "OutboxRelayAbsent"):
    jobs = re.findall(r'job="([^"]*)"', rules[alert]["expr"])
    assert jobs == [job_relabel["replacement"]], (alert, jobs, job_relabel)
print(
    f"parent chart pod: native sidecar without readiness probe, port {relay_port} distinct from "
    f"{app_ports}, config checksum follows relay.yaml, PodMonitor job {job_relabel['replacement']!r} "
    "= the alerts' job"
)
