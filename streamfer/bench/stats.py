"""Small statistics the reports share: percentiles and the spread of repeated runs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Spread:
    """Median and range of repeated measurements of one quantity."""

    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        vals = [v for v in values if not math.isnan(v)]
        if not vals:
            return cls(float("nan"), float("nan"), float("nan"), 0)
        return cls(float(np.median(vals)), min(vals), max(vals), len(vals))

    def fmt(self, digits: int = 0, unit: str = "") -> str:
        """``12,345 (11,900–12,600)``: median and range."""
        if self.n == 0:
            return "n/a"
        f = f"{{:,.{digits}f}}"
        return f"{f.format(self.median)}{unit} ({f.format(self.low)}–{f.format(self.high)})"


def percentiles_ms(latencies_ns: np.ndarray, qs: Sequence[float]) -> list[float]:
    """Percentiles (e.g. 50, 99, 99.9) in ms; missing results count as +inf (never met)."""
    if latencies_ns.size == 0:
        return [float("nan")] * len(qs)
    # method="higher": a reported percentile is always an observed latency, never interpolated
    return [float(v) / 1e6 for v in np.percentile(latencies_ns, qs, method="higher")]


def fmt_ms(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "∞ (lost)"
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def fmt_rate(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.0f}"
