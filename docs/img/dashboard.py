#!/usr/bin/env python3
"""A picture of the Grafana dashboard without Grafana: its panels' queries, run by
Prometheus over a window, drawn in the dashboard's grid layout with matplotlib.

Usage:
  dashboard.py query PROMETHEUS_URL DASHBOARD_JSON START END STEP RATE_INTERVAL META_JSON OUT_DATA_JSON
  dashboard.py render DASHBOARD_JSON DATA_JSON OUT_PNG

`query` runs every panel target of the dashboard through /api/v1/query_range (the
template variables replaced as Grafana would with "All" selected: $job and $instance
match everything, $__rate_interval is RATE_INTERVAL) and writes the results, with META_JSON
(what ran: versions, workload) merged in, to OUT_DATA_JSON. `render` draws them.

What is drawn follows the dashboard file, not a copy of it: gridPos, titles, panel type,
units (and the byFrameRefID unit/right-axis overrides), legend formats, the stat panels'
value mappings, thresholds and text mode ("auto" shows only the value for a single
series, as Grafana does), min/max and step interpolation. It is not Grafana: fonts, axis
ticks and number formats are approximations, and panel features the dashboard does not
use are not implemented.
docs/img/dashboard.sh makes the live run this draws.
"""

import json
import math
import re
import sys
from datetime import datetime, timezone

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402 (the backend must be chosen first)
import matplotlib.pyplot as plt  # noqa: E402
from dashboard_format import fmt, legend, overrides, stat_color  # noqa: E402
from dashboard_query import query  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402

# Grafana's dark theme and classic palette.
BG = "#111217"
PANEL = "#181b1f"
BORDER = "#2c3235"
TEXT = "#ccccdc"
DIM = "#8e8e8e"
PALETTE = ["#7EB26D", "#EAB839", "#6ED0E0", "#EF843C", "#E24D42", "#1F78C1", "#BA43A9", "#705DA0"]


def draw_stat(fig, rect, panel, results):
    x, y, w, h = rect
    series = [s for r in results for s in r["result"]]
    defaults = (panel.get("fieldConfig") or {}).get("defaults") or {}
    unit = defaults.get("unit", "short")
    if not series:
        fig.add_artist(
            FancyBboxPatch(
                (x, y), w, h, boxstyle="round,pad=0,rounding_size=0.002", fc=PANEL, ec=BORDER, zorder=-1
            )
        )
        fig.text(x + w / 2, y + h / 2, "No data", ha="center", va="center", color=DIM, fontsize=11)
        return
    values = []
    for s in series:
        vals = [float(v) for _, v in s["values"] if v not in ("NaN",)]
        values.append((s["metric"], vals[-1] if vals else None))
    metric, value = values[0]
    text, color = stat_color(panel, value)
    fig.add_artist(
        FancyBboxPatch(
            (x, y), w, h, boxstyle="round,pad=0,rounding_size=0.002", fc=color, ec=BORDER, zorder=-1
        )
    )
    fig.text(
        x + 0.006, y + h - 0.004, panel.get("title", ""), ha="left", va="top", color="#ffffff", fontsize=9
    )
    mode = (panel.get("options") or {}).get("textMode", "auto")
    # The field's display name: displayName, else the target's legend format.
    name = defaults.get("displayName") or ""
    name = re.sub(r"\$\{__field\.labels\.(\w+)\}", lambda m: metric.get(m.group(1), ""), name)
    if not name:
        formats = [t.get("legendFormat") for t in panel.get("targets") or []]
        name = legend(formats[0] if formats else None, metric)
    shown = text or fmt(value, unit)
    if mode == "name" and name:
        shown = name
    elif (mode == "value_and_name" or (mode == "auto" and len(values) > 1)) and name:
        shown = f"{name}\n{shown}"
    fig.text(
        x + w / 2, y + h * 0.42, shown, ha="center", va="center", color="#ffffff", fontsize=20, weight="bold"
    )


def draw_timeseries(fig, rect, panel, results):
    x, y, w, h = rect
    fig.add_artist(
        FancyBboxPatch(
            (x, y), w, h, boxstyle="round,pad=0,rounding_size=0.002", fc=PANEL, ec=BORDER, zorder=-1
        )
    )
    fig.text(x + 0.006, y + h - 0.004, panel.get("title", ""), ha="left", va="top", color=TEXT, fontsize=9)
    defaults = (panel.get("fieldConfig") or {}).get("defaults") or {}
    unit = defaults.get("unit", "short")
    ov = overrides(panel)
    custom = defaults.get("custom") or {}
    fill = (custom.get("fillOpacity") or 0) / 100
    lines = []
    targets = {t.get("refId"): t for t in panel.get("targets") or []}
    for r in results:
        for s in r["result"]:
            ts = [datetime.fromtimestamp(float(t), timezone.utc) for t, _ in s["values"]]
            vs = [float(v) for _, v in s["values"]]
            label = legend(targets.get(r["refId"], {}).get("legendFormat"), s["metric"])
            lines.append((r["refId"], label, ts, vs))
    has_right = any(ov.get(ref, {}).get("right") for ref, *_ in lines)
    # Layout in inches: the title, the plot, the x labels, then Grafana's list legend at
    # the bottom in as many columns as its longest label allows.
    fig_w, fig_h = fig.get_size_inches()
    w_in, h_in = w * fig_w, h * fig_h
    col_in = max((len(label) for _, label, *_ in lines), default=0) * 0.052 + 0.4
    ncol = max(1, min(len(lines), int((w_in - 0.2) / col_in))) if lines else 1
    legend_rows = math.ceil(len(lines) / ncol) if lines else 0
    row_in = 0.15
    bottom_in = 0.08 + legend_rows * row_in + 0.22  # legend, then the time labels
    left_in, right_in, top_in = 0.8, 0.75 if has_right else 0.15, 0.32
    ax = fig.add_axes(
        (
            x + left_in / fig_w,
            y + bottom_in / fig_h,
            (w_in - left_in - right_in) / fig_w,
            (h_in - bottom_in - top_in) / fig_h,
        )
    )
    legend_top = y + (0.08 + legend_rows * row_in) / fig_h
    ax.set_facecolor(PANEL)
    for sp in ax.spines.values():
        sp.set_visible(False)
    ax.tick_params(colors=DIM, labelsize=7, length=0)
    ax.grid(True, color=BORDER, linewidth=0.6)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=timezone.utc))
    ax.xaxis.set_major_locator(mdates.MinuteLocator(tz=timezone.utc))
    ax.yaxis.set_major_locator(MaxNLocator(4))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v, unit)))
    if not lines:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(0.5, 0.5, "No data", transform=ax.transAxes, ha="center", va="center", color=DIM, fontsize=11)
        return
    right = None
    if has_right:
        right = ax.twinx()
        right.set_facecolor("none")
        for sp in right.spines.values():
            sp.set_visible(False)
        right.tick_params(colors=DIM, labelsize=7, length=0)
        right.yaxis.set_major_locator(MaxNLocator(4))
        runit = next(ov[ref]["unit"] for ref, *_ in lines if ov.get(ref, {}).get("right"))
        right.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v, runit)))
    handles = []
    for i, (ref, label, ts, vs) in enumerate(lines):
        target_ax = right if right is not None and ov.get(ref, {}).get("right") else ax
        color = PALETTE[i % len(PALETTE)]
        step = "steps-post" if custom.get("lineInterpolation") == "stepAfter" else "default"
        (ln,) = target_ax.plot(ts, vs, color=color, linewidth=1.1, label=label, drawstyle=step)
        if fill:
            where = {"step": "post"} if step != "default" else {}
            target_ax.fill_between(ts, vs, alpha=fill, color=color, linewidth=0, **where)
        handles.append(ln)
    for a in [ax] + ([right] if right is not None else []):
        lo, hi = a.get_ylim()
        if lo > 0:
            a.set_ylim(0, hi)
    if defaults.get("min") is not None or defaults.get("max") is not None:
        lo, hi = ax.get_ylim()
        pad = 0.05 * ((defaults.get("max") or hi) - (defaults.get("min") or lo) or 1)
        ax.set_ylim(
            defaults["min"] - pad if defaults.get("min") is not None else lo,
            defaults["max"] + pad if defaults.get("max") is not None else hi,
        )
    start = datetime.fromtimestamp(META["start"], timezone.utc)
    end = datetime.fromtimestamp(META["end"], timezone.utc)
    ax.set_xlim(start, end)
    fig.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(x + 0.1 / fig_w, legend_top),
        bbox_transform=fig.transFigure,
        ncol=ncol,
        fontsize=7,
        frameon=False,
        handlelength=1.2,
        columnspacing=1.0,
        borderaxespad=0,
        borderpad=0,
        labelcolor=TEXT,
    )


META = {}


def render(dashboard_path, data_path, out_path):
    with open(dashboard_path) as f:
        dashboard = json.load(f)
    with open(data_path) as f:
        data = json.load(f)
    META.update(data["meta"])
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dashboard["panels"])
    width_in = 16.0
    unit_w = width_in / 24 * 0.985
    unit_h = 0.3
    header_in, footer_in = 0.75, 0.45
    height_in = header_in + rows * unit_h + footer_in
    fig = plt.figure(figsize=(width_in, height_in), facecolor=BG)
    margin = 0.0075
    for p in dashboard["panels"]:
        g = p["gridPos"]
        x = margin + g["x"] * unit_w / width_in
        w = g["w"] * unit_w / width_in - 0.004
        top = 1 - (header_in + g["y"] * unit_h) / height_in
        h = g["h"] * unit_h / height_in - 0.003
        rect = (x, top - h, w, h)
        results = data["panels"].get(str(p["id"]), [])
        if p.get("type") == "stat":
            draw_stat(fig, rect, p, results)
        else:
            draw_timeseries(fig, rect, p, results)
    start = datetime.fromtimestamp(META["start"], timezone.utc)
    end = datetime.fromtimestamp(META["end"], timezone.utc)
    fig.text(
        margin,
        1 - 0.22 / height_in,
        dashboard.get("title", ""),
        color=TEXT,
        fontsize=14,
        weight="bold",
        va="top",
    )
    fig.text(
        margin,
        1 - 0.5 / height_in,
        f"Data source: Prometheus    Job: All    Instance: All        "
        f"{start:%Y-%m-%d %H:%M:%S} to {end:%H:%M:%S} UTC, step {META['step']}, "
        f"$__rate_interval {META['rate_interval']}",
        color=DIM,
        fontsize=8,
        va="top",
    )
    fig.text(
        margin,
        0.32 / height_in,
        "A rendering of deploy/grafana/outbox-relay.json's panels from a live run (docs/img/dashboard.sh), "
        "drawn with matplotlib, not a Grafana screenshot. " + META.get("what", ""),
        color=DIM,
        fontsize=7,
        va="top",
        wrap=True,
    )
    fig.savefig(out_path, facecolor=BG, dpi=int(META.get("dpi", 90)), metadata={"Software": None})
    print(out_path)


def main():
    if len(sys.argv) == 10 and sys.argv[1] == "query":
        query(*sys.argv[2:])
    elif len(sys.argv) == 5 and sys.argv[1] == "render":
        render(*sys.argv[2:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
