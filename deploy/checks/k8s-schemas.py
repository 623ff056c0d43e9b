#!/usr/bin/env python3
"""Kubernetes JSON schemas for kubeconform, generated from the OpenAPI (swagger 2.0) spec
that ships in the k8s.io/kubernetes Go module (api/openapi-spec/swagger.json), the way
instrumenta's/yannh's openapi2jsonschema does it (--expanded --kubernetes --stand-alone
--strict): every $ref inlined, int-or-string as oneOf string/integer, and
additionalProperties: false wherever properties are listed.

With --crds, the same for CustomResourceDefinitions (their openAPIV3Schema, as
openapi2jsonschema does for CRDs): e.g. the Prometheus Operator's ServiceMonitor, PodMonitor
and PrometheusRule, from the example/prometheus-operator-crd directory of its Go module.

Usage: k8s-schemas.py SWAGGER_JSON OUT_DIR
       k8s-schemas.py --crds CRD_YAML... OUT_DIR
Writes OUT_DIR/<kind><-group>-<version>.json, kubeconform's {{ .ResourceKind }}{{ .KindSuffix }}.
"""

import copy
import json
import os
import sys


def file_name(group, version, kind):
    suffix = ("-" + group.split(".")[0].lower() if group else "") + "-" + version.lower()
    return kind.lower() + suffix + ".json"


def crds(paths, out):
    """openAPIV3Schema of every served version; int-or-string as oneOf; strict wherever
    properties are listed and unknown fields are not preserved."""
    import yaml  # the checks' venv has PyYAML; the Kubernetes part needs only json

    def strict(node):
        if isinstance(node, dict):
            if node.get("x-kubernetes-int-or-string"):
                node.clear()
                node["oneOf"] = [{"type": "string"}, {"type": "integer"}]
                return
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for v in node.values():
                strict(v)
        elif isinstance(node, list):
            for v in node:
                strict(v)

    os.makedirs(out, exist_ok=True)
    written = 0
    for path in paths:
        with open(path) as f:
            for crd in yaml.safe_load_all(f):
                if not crd or crd.get("kind") != "CustomResourceDefinition":
                    continue
                group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
                for v in crd["spec"]["versions"]:
                    if not v.get("served", True):
                        continue
                    schema = v["schema"]["openAPIV3Schema"]
                    props = schema.setdefault("properties", {})
                    props["apiVersion"] = {"type": "string", "enum": [f"{group}/{v['name']}"]}
                    props["kind"] = {"type": "string", "enum": [kind]}
                    strict(schema)
                    schema["$schema"] = "http://json-schema.org/schema#"
                    with open(os.path.join(out, file_name(group, v["name"], kind)), "w") as f:
                        json.dump(schema, f)
                    written += 1
    print(f"k8s-schemas: wrote {written} CRD schemas to {out}")


def main():
    if sys.argv[1] == "--crds":
        return crds(sys.argv[2:-1], sys.argv[-1])
    swagger, out = sys.argv[1], sys.argv[2]
    with open(swagger) as f:
        defs = json.load(f)["definitions"]
    os.makedirs(out, exist_ok=True)
    cache = {}

    def expand(node, stack):
        if isinstance(node, list):
            return [expand(x, stack) for x in node]
        if not isinstance(node, dict):
            return node
        if isinstance(node.get("$ref"), str):
            name = node["$ref"].split("/")[-1]
            if name in stack:  # recursive type (e.g. JSONSchemaProps): leave it open
                return {}
            if name not in cache:
                cache[name] = expand(defs[name], stack | {name})
            return copy.deepcopy(cache[name])
        if node.get("format") == "int-or-string":
            return {"oneOf": [{"type": "string"}, {"type": "integer"}]}
        return {k: expand(v, stack) for k, v in node.items()}

    def strict(node):
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for v in node.values():
                strict(v)
        elif isinstance(node, list):
            for v in node:
                strict(v)

    written = 0
    for name, spec in defs.items():
        for gvk in spec.get("x-kubernetes-group-version-kind", []):
            group, version, kind = gvk["group"], gvk["version"], gvk["kind"]
            schema = expand(spec, {name})
            api_version = f"{group}/{version}" if group else version
            props = schema.setdefault("properties", {})
            props.setdefault("apiVersion", {"type": "string"}).setdefault("enum", [api_version])
            props.setdefault("kind", {"type": "string"}).setdefault("enum", [kind])
            strict(schema)
            schema["$schema"] = "http://json-schema.org/schema#"
            with open(os.path.join(out, file_name(group, version, kind)), "w") as f:
                json.dump(schema, f)
            written += 1
    print(f"k8s-schemas: wrote {written} schemas to {out}")


if __name__ == "__main__":
    main()
