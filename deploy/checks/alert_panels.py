#!/usr/bin/env python3
"""Every metric an alert rule uses is on a dashboard panel, so whoever is paged can see
the series that fired (up and the process_* series aside: they have their own stat panels
or are generic).

Usage: alert_panels.py DASHBOARD_JSON RULES_YAML
"""

import sys

import yaml
from metric_names import dashboard_exprs, names

dashboard = set()
for expr in dashboard_exprs(sys.argv[1]):
    dashboard |= names(expr)
with open(sys.argv[2]) as f:
    rules = yaml.safe_load(f)
missing = {}
alerts = 0
for group in rules["groups"]:
    for rule in group["rules"]:
        alerts += 1
        for name in sorted(names(rule["expr"]) - dashboard):
            missing.setdefault(name, []).append(rule["alert"])
print(f"{alerts} alerts; every metric they use is on a panel" if not missing else "")
for name, used_by in missing.items():
    print(f"{name} (used by {', '.join(used_by)}) has no dashboard panel")
sys.exit(1 if missing else 0)
