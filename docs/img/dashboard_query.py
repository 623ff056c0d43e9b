"""dashboard.py's `query`: the dashboard's panel queries, run by Prometheus over a window."""

import json
import re
import sys
import urllib.parse
import urllib.request


def expand(expr, rate_interval):
    """Grafana's variables with "All" selected for job and instance."""
    expr = re.sub(r'(\w+)=~"\$(job|instance)"', r'\1=~".*"', expr)
    return expr.replace("$__rate_interval", rate_interval)


def query(prom, dashboard_path, start, end, step, rate_interval, meta_path, out_path):
    with open(dashboard_path) as f:
        dashboard = json.load(f)
    with open(meta_path) as f:
        meta = json.load(f)
    meta.update(start=float(start), end=float(end), step=step, rate_interval=rate_interval)
    panels = {}
    for p in dashboard["panels"]:
        results = []
        for t in p.get("targets") or []:
            expr = expand(t["expr"], rate_interval)
            qs = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
            with urllib.request.urlopen(f"{prom}/api/v1/query_range?{qs}", timeout=30) as r:
                body = json.load(r)
            if body.get("status") != "success":
                sys.exit(f"dashboard.py: query failed: {expr}: {body}")
            results.append({"refId": t.get("refId"), "expr": expr, "result": body["data"]["result"]})
        panels[str(p["id"])] = results
    with open(out_path, "w") as f:
        json.dump({"meta": meta, "panels": panels}, f)
    print(f"{sum(len(v) for v in panels.values())} queries over {len(panels)} panels -> {out_path}")
