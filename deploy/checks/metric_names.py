#!/usr/bin/env python3
"""Metric names used by the Grafana dashboard and the alert rules.

Usage: metric_names.py DASHBOARD_JSON RULES_YAML   -> one name per line
       metric_names.py --exprs DASHBOARD_JSON        -> the dashboard's PromQL, one per line,
                                                      with Grafana variables replaced
"""

import json
import re
import sys

import yaml

# A metric name is an identifier that is not a PromQL function/keyword, a label name
# (followed by = != =~ !~) or inside a string or {…}/by (…) clause.
KEYWORDS = {
    "sum",
    "by",
    "without",
    "rate",
    "increase",
    "irate",
    "histogram_quantile",
    "changes",
    "absent",
    "or",
    "and",
    "unless",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "max",
    "min",
    "avg",
    "count",
    "label_values",
    "offset",
    "bool",
}


def names(expr):
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    expr = re.sub(r"\{[^}]*\}", "{}", expr)  # label matchers
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    found = set()
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr):
        tok = m.group(0)
        if tok in KEYWORDS or tok.startswith("$") or expr[m.end() :].lstrip().startswith("("):
            continue
        if tok in ("job", "instance", "le", "e") or re.fullmatch(r"\d.*", tok):
            continue
        found.add(tok)
    return found


def dashboard_exprs(path):
    with open(path) as f:
        dash = json.load(f)
    out = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            out.append(t["expr"])
    for v in dash["templating"]["list"]:
        q = v.get("query")
        if isinstance(q, dict):
            m = re.fullmatch(r"label_values\((.*), *\w+\)", q["query"])
            if m:
                out.append(m.group(1))
    return out


def grafana_to_promql(expr):
    return expr.replace("$__rate_interval", "1m").replace("$job", ".+").replace("$instance", ".+")


def main():
    if sys.argv[1] == "--exprs":
        for e in dashboard_exprs(sys.argv[2]):
            print(grafana_to_promql(e).replace("\n", " "))
        return

    exprs = dashboard_exprs(sys.argv[1])
    with open(sys.argv[2]) as f:
        rules = yaml.safe_load(f)
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    result = set()
    for e in exprs:
        result |= names(e)
    print("\n".join(sorted(result)))


if __name__ == "__main__":
    main()
