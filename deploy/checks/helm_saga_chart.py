"""The example application's chart (helm/examples/saga): three services, each with its
relay as a native sidecar (no readiness probe, its own port name), its own ServiceAccount,
its own relay configuration and a config checksum; a helm test Pod per relay."""

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
    assert "readinessProbe" not in init, (name, init)
    ports = [p["name"] for c in pod["initContainers"] + pod["containers"] for p in c.get("ports", [])]
    assert len(ports) == len(set(ports)), (name, ports)
    assert len(d["spec"]["template"]["metadata"]["annotations"]["checksum/outbox-relay-config"]) == 64, name
    # The test Pod of this service's relay runs check against the same configuration.
    test = [t for t in docs if t["kind"] == "Pod" and t["metadata"]["name"] == f"{name}-relay-check"]
    assert len(test) == 1 and test[0]["spec"]["volumes"][0] == vol, (name, test)
print("three services, each with its relay as a native sidecar, its own config and a test Pod")
