#!/usr/bin/env python3
"""The chart's PrometheusRule and dashboard ConfigMap carry exactly deploy/'s rules file
and dashboard.

Usage: chart_copies.py RENDERED_ALL_YAML RULES_YAML DASHBOARD_JSON
"""

import json
import sys

import yaml

docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
rule = next(d for d in docs if d["kind"] == "PrometheusRule")
assert rule["spec"] == yaml.safe_load(open(sys.argv[2])), "PrometheusRule spec differs from the rules file"
dash = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboard"))
assert json.loads(dash["data"]["outbox-relay.json"]) == json.load(open(sys.argv[3])), (
    "dashboard ConfigMap differs"
)
print("chart copies, PrometheusRule and dashboard ConfigMap match deploy/")
