"""dashboard.py's units, legends and value mappings, as Grafana formats them."""

import math
import re

# Grafana's named colours, as the dashboard's value mappings and thresholds name them.
NAMED = {"green": "#73BF69", "red": "#F2495C", "yellow": "#FADE2A", "orange": "#FF9830", "blue": "#5794F2"}


def si(v, suffixes, base):
    if v == 0 or not math.isfinite(v):
        return 0, suffixes[0]
    i = 0
    while abs(v) >= base and i < len(suffixes) - 1:
        v /= base
        i += 1
    return v, suffixes[i]


def num(v):
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}".rstrip("0").rstrip(".")
    return f"{v:.2f}".rstrip("0").rstrip(".")


def fmt(v, unit):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if unit == "bytes":
        x, s = si(v, ["B", "KiB", "MiB", "GiB", "TiB"], 1024)
        return f"{num(x)} {s}"
    if unit == "decbytes":
        x, s = si(v, ["B", "kB", "MB", "GB", "TB"], 1000)
        return f"{num(x)} {s}"
    if unit == "s":
        a = abs(v)
        if a == 0:
            return "0 s"
        if a < 1e-3:
            return f"{num(v * 1e6)} µs"
        if a < 1:
            return f"{num(v * 1e3)} ms"
        if a < 60:
            return f"{num(v)} s"
        return f"{num(v / 60)} min"
    if unit == "ops":
        x, s = si(v, ["", "K", "M", "B"], 1000)
        return f"{num(x)}{s} ops/s"
    x, s = si(v, ["", " K", " Mil", " Bil"], 1000)  # short
    return f"{num(x)}{s}"


# ---------------------------------------------------------------- render


def legend(fmt_, metric):
    if not fmt_:
        return "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items())) + "}"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt_).strip()


def overrides(panel):
    """refId -> {unit, right} from byFrameRefID overrides."""
    out = {}
    for o in (panel.get("fieldConfig") or {}).get("overrides") or []:
        m = o.get("matcher") or {}
        if m.get("id") != "byFrameRefID":
            continue
        props = {p["id"]: p["value"] for p in o.get("properties") or []}
        out[m.get("options")] = {
            "unit": props.get("unit"),
            "right": props.get("custom.axisPlacement") == "right",
        }
    return out


def stat_color(panel, value):
    defaults = (panel.get("fieldConfig") or {}).get("defaults") or {}
    for mp in defaults.get("mappings") or []:
        if mp.get("type") == "value":
            hit = (mp.get("options") or {}).get(num(value) if value is not None else "")
            if hit:
                return hit.get("text"), NAMED.get(hit.get("color"), hit.get("color"))
    steps = (defaults.get("thresholds") or {}).get("steps") or [
        {"color": "green", "value": None},
        {"color": "red", "value": 80},
    ]
    color = steps[0]["color"]
    for s in steps[1:]:
        if value is not None and value >= s["value"]:
            color = s["color"]
    return None, NAMED.get(color, color)
