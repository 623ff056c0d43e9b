#!/usr/bin/env python3
"""What the alert rules and the dashboard make of a real standby (a relay with ha.enabled
whose slot's lock another session holds, scraped as job outbox-relay-standby) next to the
real relay without ha.enabled (job outbox-relay): OutboxRelayNoLeader is pending or
firing for the standby's job and not for the other; OutboxRelayNotReplicating and
OutboxRelaySinkDown (both true of a standby's raw series) are not active for it; the
dashboard's Replicating and Sink up panels show it as STANDBY (2).

Usage: live_standby.py PROMETHEUS_URL DASHBOARD_JSON
"""

import json
import sys
import time
import urllib.parse
import urllib.request

prom, dashboard = sys.argv[1], sys.argv[2]
STANDBY_JOB = "outbox-relay-standby"


def get(path, **params):
    url = f"{prom}{path}?{urllib.parse.urlencode(params)}" if params else f"{prom}{path}"
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]


def active():
    return [
        (a["labels"]["alertname"], a["labels"].get("job"), a["state"])
        for a in get("/api/v1/alerts")["alerts"]
    ]


# The rules are evaluated every second; the standby's series arrive with its first scrape.
deadline = time.monotonic() + 30
while not any(name == "OutboxRelayNoLeader" and job == STANDBY_JOB for name, job, _ in active()):
    assert time.monotonic() < deadline, ("OutboxRelayNoLeader never became active for the standby", active())
    time.sleep(0.5)
time.sleep(3)  # more evaluations: anything else that would go active has done so
alerts = active()
print("active alerts:", sorted(set(alerts)))
no_leader = sorted(job for name, job, _ in alerts if name == "OutboxRelayNoLeader")
assert no_leader == [STANDBY_JOB], (
    "OutboxRelayNoLeader should be active for the standby's job only",
    no_leader,
)
wrong = [
    (n, j)
    for n, j, _ in alerts
    if j == STANDBY_JOB and n in ("OutboxRelayNotReplicating", "OutboxRelaySinkDown")
]
assert not wrong, ("a standby is not an outage", wrong)

# The standby's raw series are what would have fired them.
raw = {
    m: get("/api/v1/query", query=f'{m}{{job="{STANDBY_JOB}"}}')["result"][0]["value"][1]
    for m in ("outbox_relay_leader", "outbox_relay_replicating", "outbox_relay_sink_up")
}
assert raw == {"outbox_relay_leader": "0", "outbox_relay_replicating": "0", "outbox_relay_sink_up": "0"}, raw

panels = {p["title"]: p for p in json.load(open(dashboard))["panels"]}
for title in ("Replicating", "Sink up"):
    expr = panels[title]["targets"][0]["expr"]
    shown = {}
    for job in (STANDBY_JOB, "outbox-relay"):
        (series,) = get("/api/v1/query", query=expr.replace("$job", job).replace("$instance", ".+"))["result"]
        shown[job] = series["value"][1]
    text = panels[title]["fieldConfig"]["defaults"]["mappings"][0]["options"]
    assert shown[STANDBY_JOB] == "2" and text["2"]["text"] == "STANDBY", (title, shown)
    assert shown["outbox-relay"] == "1" and text["1"]["text"] == "UP", (title, shown)
    print(f"{title}: the standby {text['2']['text']}, the non-HA relay {text['1']['text']}")
leaders_expr = panels["Leaders"]["targets"][0]["expr"].replace("$job", STANDBY_JOB)
(leaders,) = get("/api/v1/query", query=leaders_expr)["result"]
assert leaders["value"][1] == "0", leaders
print("OutboxRelayNoLeader active for the standby's job only, NotReplicating/SinkDown not; Leaders 0")
