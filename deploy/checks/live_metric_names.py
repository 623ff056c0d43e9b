#!/usr/bin/env python3
"""Every metric name the dashboard and the rules use was scraped by Prometheus.

Usage: live_metric_names.py USED_NAMES_TXT LABEL_VALUES_JSON
"""

import json
import sys

used = [line.strip() for line in open(sys.argv[1]) if line.strip()]
scraped = set(json.load(open(sys.argv[2]))["data"])
missing = [n for n in used if n not in scraped]
print(f"{len(used)} metric names used by the dashboard and the rules; {len(used) - len(missing)} scraped")
if missing:
    print("not exported by the relay:", ", ".join(missing))
    sys.exit(1)
