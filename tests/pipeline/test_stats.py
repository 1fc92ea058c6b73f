"""Stream stats: counters by reason and nearest-rank percentiles of recent latencies."""

from __future__ import annotations

import numpy as np

from streamfer.pipeline.stats import RECENT, StatsBook


def test_snapshot_counts_and_percentiles() -> None:
    book = StatsBook("payments", "transaction")
    book.consumed(5)
    book.decided(np.array([4.0, 1.0]))
    book.decided(np.array([3.0, 2.0]))
    book.dropped("stale")
    book.dead_lettered("bad_json")
    book.set_lag(7)
    snap = book.snapshot(in_flight=0)
    assert (snap.consumed, snap.decided, snap.lag) == (5, 4, 7)
    assert snap.dropped == {"stale": 1} and snap.dead_lettered == {"bad_json": 1}
    assert snap.resolved == 6
    assert snap.p50_ms == 2.0  # nearest rank: ceil(0.5 * 4) = 2nd smallest
    assert snap.p99_ms == 4.0
    assert snap.percentile_ms(0) == 1.0
    # the whole run, to 1 %: the same observations as the e2e histogram
    assert abs(snap.run_percentile_ms(99) - 4.0) <= 0.04  # type: ignore[operator]
    assert abs(snap.run_percentile_ms(50) - 2.0) <= 0.02  # type: ignore[operator]


def test_only_recent_latencies_are_kept() -> None:
    book = StatsBook("s", "camera")
    book.decided(np.arange(RECENT + 10, dtype=float))
    snap = book.snapshot()
    assert snap.decided == RECENT + 10
    assert len(snap.e2e_ms) == RECENT and snap.e2e_ms[0] == 10.0
    assert snap.run_percentile_ms(0.001) is not None and snap.run_percentile_ms(0.001) < 1
    assert StatsBook("empty", "sensor").snapshot().p99_ms is None
    assert StatsBook("empty", "sensor").snapshot().run_percentile_ms(99) is None


def test_the_run_counts_are_the_same_for_short_and_long_arrays() -> None:
    values = np.random.default_rng(5).exponential(20.0, size=300)
    values[:4] = [0.01, 0.0, 1e7, 1e9]  # an edge itself, below the first, the last, beyond
    short, long = StatsBook("s", "transaction"), StatsBook("s", "transaction")
    for at in range(0, 300, 3):
        short.decided(values[at : at + 3])  # bisect
    long.decided(values)  # numpy
    assert short.snapshot().run_e2e_counts == long.snapshot().run_e2e_counts
    assert sum(short.snapshot().run_e2e_counts) == 300
