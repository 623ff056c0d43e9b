#!/usr/bin/env python3
"""The example application chart (helm/examples/sidecar-app) renders a pod carrying the
relay as a native sidecar with the subchart's config and service account.

Usage: helm_parent_chart.py RENDERED_YAML
"""

import sys

import yaml

docs = {d["kind"]: d for d in yaml.safe_load_all(open(sys.argv[1])) if d}
pod = docs["Deployment"]["spec"]["template"]["spec"]
init = pod["initContainers"][0]
assert init["name"] == "outbox-relay" and init["restartPolicy"] == "Always", init
assert pod["volumes"][0]["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"], pod["volumes"]
assert pod["serviceAccountName"] == docs["ServiceAccount"]["metadata"]["name"]
print("parent chart pod carries the native sidecar and the subchart's config")
