"""PNG charts written next to RESULTS.md (matplotlib from the ``dev`` extra).

File names are fixed per chart, so each run replaces the previous chart and
RESULTS.md links the latest one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from streamfer.bench.report import Report


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def plot_server(report: Report, out_dir: Path) -> str:
    """p50/p99 vs offered rate with the bound drawn; returns the file name."""
    plt = _pyplot()
    data = report.raw["server"]
    pts = data["points"]
    kind, bound = data["kind"], data["bound_ms"]
    rates = [p["offered_rate"] for p in pts]
    finite = [v for p in pts for v in (p["p50_ms"], p["p99_ms"]) if math.isfinite(v)]
    top = max([bound * 4, *finite]) * 1.5
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    by_rate: dict[float, list[dict[str, Any]]] = {}
    for p in pts:
        by_rate.setdefault(p["offered_rate"], []).append(p)
    xs = sorted(by_rate)
    for key, label, style in (("p99_ms", "p99", "o"), ("p50_ms", "p50", "s")):
        capped = [min(p[key], top) for p in pts]  # a lost p99 is drawn at the top
        line = ax.plot(
            xs,
            [float(np.median([min(p[key], top) for p in by_rate[x]])) for x in xs],
            "-" if key == "p99_ms" else "--",
            label=f"{label} (median per rate)",
        )
        ax.plot(rates, capped, style, color=line[0].get_color(), alpha=0.7)
    lost = [(p["offered_rate"], top) for p in pts if not math.isfinite(p["p99_ms"])]
    if lost:
        ax.plot(*zip(*lost, strict=True), "rx", markersize=10, label="p99 not reached (>1% lost)")
    ax.axhline(bound, color="red", linewidth=1, label=f"bound {bound:g} ms")
    ax.axvline(data["max_rate"], color="gray", linestyle=":", label="max throughput")
    ax.set_yscale("log")
    ax.set_xlabel("offered rate (records/s, Poisson)")
    ax.set_ylabel("latency, scheduled send -> decision (ms)")
    ax.set_title(f"Server scenario: {kind}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    name = f"server-{kind}.png"
    fig.tight_layout()
    fig.savefig(out_dir / name)
    plt.close(fig)
    return name


def plot_batching(curve: dict[str, list[tuple[int, float, float]]], out_dir: Path) -> str:
    """Samples/s and p99 per call vs batch size, one line per model; returns the file name.

    ``curve`` maps model -> [(batch, samples/s, p99 ms)].
    """
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.2), dpi=110)
    for model, pts in curve.items():
        batches = [b for b, _, _ in pts]
        ax1.plot(batches, [s for _, s, _ in pts], "o-", label=model)
        ax2.plot(batches, [p for _, _, p in pts], "o-", label=model)
    for ax, ylabel in ((ax1, "samples/s"), (ax2, "p99 per batch call (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    ax1.set_title("Engine throughput vs batch size")
    ax2.set_title("Engine latency vs batch size")
    name = "batching-curve.png"
    fig.tight_layout()
    fig.savefig(out_dir / name)
    plt.close(fig)
    return name
