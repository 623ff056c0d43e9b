#!/usr/bin/env python3
"""Every value in the chart's values.yaml has a row in the chart README.

Usage: chart_readme_values.py VALUES_YAML README_MD
"""

import sys

import yaml

values = yaml.safe_load(open(sys.argv[1]))
readme = open(sys.argv[2]).read()
WHOLE = {
    "resources",
    "podSecurityContext",
    "securityContext",
    "livenessProbe",
    "readinessProbe",
    "sidecar.livenessProbe",
    "sidecar.readinessProbe",
    "sidecar.startupProbe",
    "podMonitor.selector",
    "prometheusRule.rules",
    "dashboard.labels",
    "kafka.properties",
    "config.extra",
}


def keys(d, prefix=""):
    for k, v in d.items():
        key = prefix + k
        if isinstance(v, dict) and v and key not in WHOLE:
            yield from keys(v, key + ".")
        else:
            yield key


missing = [k for k in keys(values) if f"| `{k}` |" not in readme]
print(f"{len(list(keys(values)))} values; missing from README.md: {missing or 'none'}")
sys.exit(1 if missing else 0)
