"""The example application's chart (helm/examples/saga): three services, each with its
relay as a native sidecar, its own ServiceAccount and its own relay configuration."""

import sys

import yaml

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
    if "configMap" in vol:
        ref = ("ConfigMap", vol["configMap"]["name"])
    else:
        ref = ("Secret", vol["secret"]["secretName"])
    assert ref in names, (name, ref)
print("three services, each with its relay as a native sidecar and its own config")
