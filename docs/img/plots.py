#!/usr/bin/env python3
"""Benchmark plots for docs/: reads the results tables of docs/benchmarks.md and draws them.

Usage: plots.py BENCHMARKS_MD OUT_DIR     (docs/img/plots.sh runs it in a venv with matplotlib)

The numbers are parsed from the markdown (the block tests/compare.sh rewrites, between
"<!-- compare.rs results: begin -->" and "... end -->"), never copied here, so after a new
`tests/compare.sh` run the same command redraws the pictures from the new table. It stops
with a message naming the row when the table no longer has what a plot needs.

Writes:
  relay-vs-debezium-drain.svg    events/s, CPU s per 1M events, peak RSS (1M-event backlog)
  relay-vs-debezium-latency.svg  end-to-end latency p50 / p99 / max at each steady rate
The SVGs keep their text as text and carry no date, so a redraw from the same table with
the same matplotlib is byte-identical.
"""

import os
import re
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 (the backend must be chosen first)
from matplotlib.ticker import FuncFormatter  # noqa: E402

BEGIN = "<!-- compare.rs results: begin -->"
END = "<!-- compare.rs results: end -->"
COLORS = {"pg_recvlogical": "#9e9e9e", "outbox-relay": "#1f77b4", "Debezium": "#ff7f0e"}


def die(msg):
    sys.exit(f"plots.py: {msg}")


def tables(text):
    """Every markdown table in text: a list of rows, each a list of cell strings."""
    out, cur = [], []
    for line in text.splitlines():
        if line.startswith("|") and line.rstrip().endswith("|"):
            cells = [c.strip() for c in line.strip()[1:-1].split("|")]
            if not all(re.fullmatch(r":?-+:?", c) for c in cells):
                cur.append(cells)
        elif cur:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


class Compare:
    """The relay-vs-Debezium results table: rows by metric, columns by system."""

    def __init__(self, md):
        if BEGIN not in md or END not in md:
            die(f"no {BEGIN} … {END} block in the benchmarks file")
        block = md.split(BEGIN, 1)[1].split(END, 1)[0]
        table = next((t for t in tables(block) if t[0] and t[0][0] == "metric"), None)
        if table is None:
            die("no table with a 'metric' column in the compare block")
        self.header = table[0]
        self.rows = {r[0]: r for r in table[1:]}
        run = re.search(r"^Run (.+?) on (.+?)\.$", block, re.M)
        self.run = run.group(1) if run else "?"
        self.machine = run.group(2) if run else "?"

    def row(self, prefix):
        hits = [r for k, r in self.rows.items() if k.startswith(prefix)]
        if len(hits) != 1:
            die(f"want one row starting {prefix!r} in the compare table, found {len(hits)}")
        return hits[0]

    def cell(self, prefix, system):
        if system not in self.header:
            die(f"no column {system!r} in the compare table (have {self.header})")
        return self.row(prefix)[self.header.index(system)]

    def number(self, prefix, system):
        m = re.match(r"\s*([\d.]+)", self.cell(prefix, system))
        if not m:
            die(f"row {prefix!r}, column {system!r}: no number in {self.cell(prefix, system)!r}")
        return float(m.group(1))

    def rates(self):
        """The steady-state rates, from rows like '5000/s: end-to-end latency ms …'."""
        return [int(m.group(1)) for k in self.rows if (m := re.match(r"(\d+)/s: end-to-end latency", k))]


def label_bars(ax, bars, fmt):
    for b in bars:
        ax.annotate(
            fmt(b.get_height()),
            (b.get_x() + b.get_width() / 2, b.get_height()),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=8,
        )


def thousands(v):
    return f"{v:,.0f}"


def drain(c, out):
    systems = ["pg_recvlogical", "outbox-relay", "Debezium"]
    panels = [
        ("drain: events/s", "events/s (higher is better)", thousands),
        ("drain: CPU s per 1M events", "CPU s per 1M events (lower is better)", lambda v: f"{v:g}"),
        ("drain: peak RSS MiB", "peak RSS MiB (lower is better)", lambda v: f"{v:,.1f}"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.8))
    for ax, (prefix, title, fmt) in zip(axes, panels):
        values = [c.number(prefix, s) for s in systems]
        bars = ax.bar(systems, values, color=[COLORS[s] for s in systems])
        label_bars(ax, bars, fmt)
        ax.set_title(title, fontsize=10)
        ax.set_ylim(0, max(values) * 1.15)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: thousands(v)))
        ax.tick_params(axis="x", labelsize=8)
        ax.spines[["top", "right"]].set_visible(False)
    ratio = c.cell("drain: events/s", "relay ÷ Debezium")
    fig.suptitle(
        f"Draining a 1M-event outbox backlog into Kafka: outbox-relay {ratio} Debezium's rate "
        f"(pg_recvlogical: the source's ceiling, no broker)",
        fontsize=10,
    )
    fig.text(
        0.01,
        0.01,
        f"tests/compare.sh, run {c.run} on {c.machine}; numbers from docs/benchmarks.md",
        fontsize=7,
        color="#555",
    )
    fig.tight_layout(rect=(0, 0.04, 1, 0.95))
    save(fig, out, "relay-vs-debezium-drain.svg")


def latency(c, out):
    systems = ["outbox-relay", "Debezium"]
    stats = ["p50", "p99", "max"]
    rates = c.rates()
    if not rates:
        die("no '<rate>/s: end-to-end latency' rows in the compare table")
    fig, axes = plt.subplots(1, len(rates), figsize=(11, 3.8), sharey=True)
    width = 0.38
    for ax, rate in zip(axes, rates):
        for i, s in enumerate(systems):
            cell = c.cell(f"{rate}/s: end-to-end latency ms", s)
            values = [float(v) for v in re.findall(r"[\d.]+", cell)]
            if len(values) != len(stats):
                die(f"{rate}/s latency for {s}: want p50 / p99 / max, have {cell!r}")
            xs = [j + (i - 0.5) * width for j in range(len(stats))]
            bars = ax.bar(xs, values, width, color=COLORS[s], label=s)
            label_bars(ax, bars, lambda v: f"{v:,.0f}")
        ax.set_xticks(range(len(stats)), stats)
        ax.set_yscale("log")
        ax.set_title(f"{rate:,} events/s", fontsize=10)
        ax.spines[["top", "right"]].set_visible(False)
    axes[0].set_ylabel("commit → in Kafka, ms (log scale)")
    axes[0].legend(fontsize=8, frameon=False, loc="upper left")
    ymax = max(b.get_height() for ax in axes for b in ax.patches)
    axes[0].set_ylim(1, ymax * 3)
    fig.suptitle("End-to-end latency at steady write rates (lower is better)", fontsize=10)
    fig.text(
        0.01,
        0.01,
        f"tests/compare.sh, run {c.run} on {c.machine}: 60 s per rate, single-row transactions, "
        f"broker LogAppendTime − insert time; numbers from docs/benchmarks.md",
        fontsize=7,
        color="#555",
    )
    fig.tight_layout(rect=(0, 0.04, 1, 0.95))
    save(fig, out, "relay-vs-debezium-latency.svg")


def save(fig, out, name):
    path = os.path.join(out, name)
    fig.savefig(path, metadata={"Date": None, "Creator": "docs/img/plots.py"})
    plt.close(fig)
    print(path)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "outbox-relay", "font.size": 9})
    with open(sys.argv[1]) as f:
        c = Compare(f.read())
    os.makedirs(sys.argv[2], exist_ok=True)
    drain(c, sys.argv[2])
    latency(c, sys.argv[2])


if __name__ == "__main__":
    main()
