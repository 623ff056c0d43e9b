#!/usr/bin/env python3
"""Writes relay.yaml out of the ConfigMap of a rendered chart.

Usage: extract_relay_config.py RENDERED_YAML OUT_FILE
"""

import sys

import yaml

cm = [
    d
    for d in yaml.safe_load_all(open(sys.argv[1]))
    if d and d["kind"] == "ConfigMap" and "relay.yaml" in d.get("data", {})
]
open(sys.argv[2], "w").write(cm[0]["data"]["relay.yaml"])
