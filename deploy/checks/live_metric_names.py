#!/usr/bin/env python3
"""Every metric name the dashboard and the rules use was scraped by Prometheus.

Usage: live_metric_names.py USED_NAMES_TXT LABEL_VALUES_JSON
"""

import json
import sys

# Series that exist only in some setups, so the live relay (Kafka, on_invalid:
# dead_letter) has none: the SNS/SQS circuit breakers, and parked events per destination
# (exported once something is parked). The relay's own tests cover their names.
SINK_SPECIFIC = {"outbox_relay_circuit_state", "outbox_relay_parked_events"}

used = [line.strip() for line in open(sys.argv[1]) if line.strip()]
scraped = set(json.load(open(sys.argv[2]))["data"])
missing = [n for n in used if n not in scraped and n not in SINK_SPECIFIC]
print(f"{len(used)} metric names used by the dashboard and the rules; {len(used) - len(missing)} scraped")
if missing:
    print("not exported by the relay:", ", ".join(missing))
    sys.exit(1)
