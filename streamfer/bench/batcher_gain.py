"""The dynamic batcher's throughput gain at equal p99, isolated from Kafka.

One thread owns the real :class:`streamfer.pipeline.batcher.Batcher` and the real
engine, as the pipeline's engine worker does. Arrivals are open-loop Poisson
at a fixed rate; the worker takes in every item whose arrival time has come
before each batch decision, so an item that arrives while the engine is busy
waits, as it would in the pipeline. Latency is completion minus *scheduled*
arrival. For each batching setting, a bisection finds the highest rate whose
p99 stays within the bound; the gain is the ratio of those rates between the
configured batching and ``max_batch=1``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from streamfer.engines.base import Runner, random_feeds
from streamfer.pipeline.batcher import Batcher, Chunk

SPIN_NS = 300_000  # closer than this to the next event: spin instead of sleep


@dataclass(frozen=True)
class RatePoint:
    rate: float  # offered, items/s
    p50_ms: float
    p99_ms: float
    mean_batch: float
    items: int


@dataclass(frozen=True)
class GainResult:
    max_batch: int
    max_wait_ms: float
    best_rate: float  # highest offered rate found with p99 <= bound
    points: tuple[RatePoint, ...]


def _never_drops(chunk: Chunk[int], rows: np.ndarray, reason: str) -> None:
    raise AssertionError(f"batcher gain | item {chunk.payload} dropped ({reason}) without deadline")


def _wait_until(t_ns: int) -> None:
    while True:
        left = t_ns - time.monotonic_ns()
        if left <= 0:
            return
        if left > SPIN_NS:
            time.sleep((left - SPIN_NS) / 1e9)


def simulate(
    runner: Runner,
    pool: dict[str, np.ndarray],
    rate: float,
    n_items: int,
    max_batch: int,
    max_wait_ms: float,
    seed: int = 1,
) -> RatePoint:
    """Serve ``n_items`` Poisson arrivals at ``rate``/s through batcher + engine."""
    rng = np.random.default_rng(seed)
    pool_n = next(iter(pool.values())).shape[0]
    gaps = rng.exponential(1e9 / rate, n_items)
    t0 = time.monotonic_ns() + 20_000_000
    sched = (t0 + np.cumsum(gaps)).astype(np.int64)
    done = np.zeros(n_items, dtype=np.int64)
    batcher: Batcher[int] = Batcher(max_batch, int(max_wait_ms * 1e6), on_drop=_never_drops)
    sizes: list[int] = []
    i = 0
    while i < n_items or len(batcher):
        now = time.monotonic_ns()
        while i < n_items and sched[i] <= now:
            batcher.put(Chunk(i, 1))  # one arrival: a chunk of one row
            i += 1
        batch = batcher.poll()
        if batch is None:
            nxt = batcher.next_flush_ns()
            wake = min(int(sched[i]) if i < n_items else 2**62, nxt if nxt is not None else 2**62)
            _wait_until(wake)
            continue
        items = [seg.chunk.payload for seg in batch.segments]
        idx = np.asarray(items, dtype=np.int64) % pool_n
        start = time.monotonic_ns()
        runner.infer({name: arr[idx] for name, arr in pool.items()})
        end = time.monotonic_ns()
        batcher.observe(len(batch), end - start)
        done[items] = end
        sizes.append(len(batch))
    lat = done - sched
    p50, p99 = np.percentile(lat, [50, 99], method="higher") / 1e6
    return RatePoint(rate, float(p50), float(p99), float(np.mean(sizes)), n_items)


def best_rate(
    run: Callable[[float], RatePoint],
    bound_ms: float,
    hi_rate: float,
    steps: int = 7,
) -> tuple[float, list[RatePoint]]:
    """Bisection on rate for the highest p99 <= bound, between 0 and ``hi_rate``.

    ``hi_rate`` is grown until it fails first (so the bracket always holds the answer).
    """
    points: list[RatePoint] = []
    lo = 0.0
    for _ in range(6):
        p = run(hi_rate)
        points.append(p)
        if p.p99_ms > bound_ms:
            break
        lo, hi_rate = hi_rate, hi_rate * 2
    hi = hi_rate
    for _ in range(steps):
        mid = (lo + hi) / 2
        p = run(mid)
        points.append(p)
        if p.p99_ms <= bound_ms:
            lo = mid
        else:
            hi = mid
    return lo, sorted(points, key=lambda q: q.rate)


def capacity(runner: Runner, pool: dict[str, np.ndarray], batch: int, repeats: int = 20) -> float:
    """Items/s of back-to-back batches of ``batch`` (median of ``repeats``), for the bracket."""
    pool_n = next(iter(pool.values())).shape[0]
    idx = np.arange(batch) % pool_n
    feeds = {name: arr[idx] for name, arr in pool.items()}
    runner.infer(feeds)
    times = []
    for _ in range(repeats):
        t = time.perf_counter_ns()
        runner.infer(feeds)
        times.append(time.perf_counter_ns() - t)
    return batch / (float(np.median(times)) / 1e9)


def batcher_gain(
    runner: Runner,
    max_batch: int,
    max_wait_ms: float,
    bound_ms: float,
    seconds_per_point: float = 2.0,
    max_items: int = 400_000,
    steps: int = 7,
) -> tuple[GainResult, GainResult]:
    """(``max_batch=1``, configured) best rates at p99 <= ``bound_ms`` on an active runner."""
    pool = random_feeds(runner.input_specs, max(2 * max_batch, 64))
    results = []
    for mb, wait in ((1, 0.0), (max_batch, max_wait_ms)):
        cap = capacity(runner, pool, mb)

        def run(rate: float, mb: int = mb, wait: float = wait) -> RatePoint:
            n = int(min(max_items, max(200, rate * seconds_per_point)))
            return simulate(runner, pool, rate, n, mb, wait)

        rate, points = best_rate(run, bound_ms, hi_rate=cap * 1.1, steps=steps)
        results.append(GainResult(mb, wait, rate, tuple(points)))
    return results[0], results[1]
