#!/usr/bin/env python3
"""The chart's prometheusRule.* overrides (ci/sidecar-monitoring-values.yaml) change exactly
what they name and nothing else: each rule of the rendered PrometheusRule equals the rules
file's, with the override applied (threshold, for, severity, labels, expr, annotations, a
dropped alert), the job label of monitoring.job in up{job=…}, and runbook_url on the
mirror's base. Also: every alert of the rules file has a runbook_url to its own section of
docs/runbooks.md, and that section exists.

Writes the overridden spec to OUT_RULES_YAML (for `promtool check rules`).

Usage: chart_rules.py RULES_YAML RENDERED_YAML RUNBOOKS_MD OUT_RULES_YAML
"""

import copy
import re
import sys

import yaml

RUNBOOKS = "https://github.com/outbox-relay/outbox-relay/blob/main/docs/runbooks.md"
# What ci/sidecar-monitoring-values.yaml sets: the comparison each threshold sits in, before
# and after.
THRESHOLDS = {
    "OutboxRelayReplicationLagHigh": ("> 1073741824", "> 4294967296"),
    "OutboxRelayEndToEndLatencyHigh": (") > 30", ") > 60"),
    "OutboxRelayErrorRateHigh": ("> 0.1", "> 0.5"),
    "OutboxRelayDeadLetters": (") > 0", ") > 10"),
    "OutboxRelayDeliveryStalled": ("> 300", "> 600"),
    "OutboxRelaySlotNearInvalidation": ("< 0.2 *", "< 0.3 *"),
    "OutboxRelaySourceLagHigh": ("> 300", "> 900"),
    "OutboxRelayEventsParked": (") > 0", ") > 5"),
}
JOB = "orders-outbox-relay"
MIRROR = "https://wiki.example.com/outbox-relay/runbooks"

file_rules = {r["alert"]: r for g in yaml.safe_load(open(sys.argv[1]))["groups"] for r in g["rules"]}
docs = [d for d in yaml.safe_load_all(open(sys.argv[2])) if d]
spec = next(d for d in docs if d["kind"] == "PrometheusRule")["spec"]
rendered = {r["alert"]: r for g in spec["groups"] for r in g["rules"]}

# Runbooks: one section per alert, linked by its anchor (GitHub: the heading in lower case).
headings = re.findall(r"^## (\w+)\s*$", open(sys.argv[3]).read(), re.M)
assert sorted(headings) == sorted(file_rules), ("docs/runbooks.md sections vs alerts", headings)
for name, rule in file_rules.items():
    assert rule["annotations"]["runbook_url"] == f"{RUNBOOKS}#{name.lower()}", (name, rule["annotations"])

want = {}
for name, rule in file_rules.items():
    r = copy.deepcopy(rule)
    if name in THRESHOLDS:
        old, new = THRESHOLDS[name]
        assert r["expr"].count(old) == 1, (name, old, r["expr"])
        r["expr"] = r["expr"].replace(old, new)
    r["expr"] = r["expr"].replace('job="outbox-relay"', f'job="{JOB}"')
    r["annotations"] = {
        k: v.replace('job="outbox-relay"', f'job="{JOB}"') for k, v in r["annotations"].items()
    }
    r["annotations"]["runbook_url"] = f"{MIRROR}#{name.lower()}"
    r["labels"]["team"] = "payments"
    want[name] = r
want["OutboxRelayReplicationLagHigh"]["for"] = "20m"
want["OutboxRelayErrorRateHigh"]["labels"]["severity"] = "info"
want["OutboxRelaySourceLagHigh"]["labels"].update(team="orders", pager="true")
want["OutboxRelayRestartLoop"]["expr"] = "increase(outbox_relay_restarts_total[30m]) > 10"
want["OutboxRelayRestartLoop"]["annotations"]["dashboard"] = "https://grafana.example.com/d/outbox-relay"
del want["OutboxRelayCircuitOpen"]

assert sorted(rendered) == sorted(want), (sorted(rendered), sorted(want))
for name in want:
    assert rendered[name] == want[name], (name, rendered[name], want[name])
# The rules keep the file's order.
assert list(rendered) == [n for n in file_rules if n in want], list(rendered)
yaml.safe_dump(spec, open(sys.argv[4], "w"), sort_keys=False)
print(
    f"{len(rendered)} rules: {len(THRESHOLDS)} thresholds, for, severity, labels, expr and annotations "
    f"overridden as set, 1 dropped, job {JOB!r}, runbooks on {MIRROR}; "
    f"{len(headings)} runbook sections, one per alert"
)
