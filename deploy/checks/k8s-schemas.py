#!/usr/bin/env python3
"""Kubernetes JSON schemas for kubeconform, generated from the OpenAPI (swagger 2.0) spec
that ships in the k8s.io/kubernetes Go module (api/openapi-spec/swagger.json), the way
instrumenta's/yannh's openapi2jsonschema does it (--expanded --kubernetes --stand-alone
--strict): every $ref inlined, int-or-string as oneOf string/integer, and
additionalProperties: false wherever properties are listed.

Usage: k8s-schemas.py SWAGGER_JSON OUT_DIR
Writes OUT_DIR/<kind><-group>-<version>.json, kubeconform's {{ .ResourceKind }}{{ .KindSuffix }}.
"""

import copy
import json
import os
import sys


def main():
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
            suffix = ("-" + group.split(".")[0].lower() if group else "") + "-" + version.lower()
            with open(os.path.join(out, kind.lower() + suffix + ".json"), "w") as f:
                json.dump(schema, f)
            written += 1
    print(f"k8s-schemas: wrote {written} schemas to {out}")


if __name__ == "__main__":
    main()
