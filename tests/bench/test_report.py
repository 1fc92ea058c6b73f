"""Reports render every part and RESULTS.md grows by appending; statistics helpers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from streamfer.bench.machine import probe_machine
from streamfer.bench.report import Report, Table, Target, append_results, render_markdown
from streamfer.bench.stats import Spread, fmt_ms, percentiles_ms


def _report() -> Report:
    return Report(
        "Example",
        "streamfer bench example --fast",
        probe_machine(),
        [Table("numbers", ("a", "b"), (("1", "2"),))],
        [Target("speed", "12x", ">= 10x", True), Target("latency", "80 ms", "<= 50 ms", False)],
        ["a note"],
        ["chart.png"],
        {"runs": [1.5, 2.5]},
    )


def test_markdown_names_machine_command_targets_and_raw_numbers() -> None:
    text = render_markdown(_report())
    m = probe_machine()
    assert f"{m.cores} cores" in text and m.cpu_model in text
    assert "`streamfer bench example --fast`" in text
    assert "| a | b |" in text and "| 1 | 2 |" in text
    assert "**met**" in text and "**MISSED**" in text
    assert "![chart](chart.png)" in text
    assert '"runs": [' in text and "commit" in text


def test_append_creates_header_once_and_keeps_earlier_results(tmp_path: Path) -> None:
    path = tmp_path / "RESULTS.md"
    append_results(_report(), path)
    append_results(_report(), path)
    text = path.read_text()
    assert text.count("# streamfer benchmark results") == 1
    assert text.count("## Example") == 2


def test_spread_and_percentiles() -> None:
    s = Spread.of([3.0, 1.0, 2.0, float("nan")])
    assert (s.median, s.low, s.high, s.n) == (2.0, 1.0, 3.0, 3)
    assert s.fmt() == "2 (1–3)"
    assert Spread.of([]).fmt() == "n/a"
    lat = np.arange(1, 1001, dtype=np.int64) * 1_000_000  # 1..1000 ms
    p50, p99 = percentiles_ms(lat, (50, 99))
    assert p50 == 501.0 and p99 == 991.0  # "higher": always an observed value
    assert fmt_ms(math.inf) == "∞ (lost)"
