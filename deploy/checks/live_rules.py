#!/usr/bin/env python3
"""The alert rules loaded in a real Prometheus, all of them, none unhealthy.

Usage: live_rules.py RULES_API_JSON RULES_YAML
"""

import json
import sys

import yaml

rules = [r for g in json.load(open(sys.argv[1]))["data"]["groups"] for r in g["rules"]]
want = sum(len(g["rules"]) for g in yaml.safe_load(open(sys.argv[2]))["groups"])
assert len(rules) == want, (len(rules), want)
bad = [r["name"] for r in rules if r.get("health") == "err"]
assert not bad, bad
print(f"{len(rules)} rules loaded and healthy")
