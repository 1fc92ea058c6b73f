"""Per-stream counts for people, the demo and the run summary (:class:`StatsBook`).

The book is fed by the stream's recorder (``streamfer.pipeline.recorder``): the
runtime records an event once, on the recorder, which counts it here and, with
metrics on, in Prometheus. ``StreamRuntime.stats()`` reads a snapshot.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

RECENT = 2048  # e2e latencies kept for the live percentiles
# Whole-run e2e percentiles: log-spaced buckets 1 % apart from 10 us to 10,000 s, so a
# run of any length is summarised in fixed memory with 1 % resolution.
_RUN_EDGES_MS = np.geomspace(0.01, 1e7, int(np.log(1e9) / np.log(1.01)) + 1)
_RUN_EDGES_LIST: list[float] = _RUN_EDGES_MS.tolist()
_FEW = 16  # decided() buckets more latencies than this with numpy, fewer with bisect


@dataclass(frozen=True)
class StreamStats:
    """A consistent snapshot of one stream.

    ``decided`` counts decisions acknowledged by Kafka; ``e2e_ms`` holds the most
    recent end-to-end latencies (record timestamp -> decision acked), newest last;
    ``absorbed`` counts records resolved without a decision of their own (samples
    held in a window's state).
    """

    name: str
    kind: str
    consumed: int = 0
    decided: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    dead_lettered: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0
    lag: int = 0
    e2e_ms: tuple[float, ...] = ()
    run_e2e_counts: tuple[int, ...] = ()  # whole run, per bucket of _RUN_EDGES_MS
    absorbed: int = 0

    @property
    def resolved(self) -> int:
        return (self.decided + sum(self.dropped.values()) + sum(self.dead_lettered.values())
                + self.absorbed)  # fmt: skip

    def percentile_ms(self, q: float) -> float | None:
        """Nearest-rank percentile (``q`` in 0..100) of the recent e2e latencies."""
        if not self.e2e_ms:
            return None
        ordered = sorted(self.e2e_ms)
        rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
        return ordered[rank]

    @property
    def p50_ms(self) -> float | None:
        return self.percentile_ms(50)

    @property
    def p99_ms(self) -> float | None:
        return self.percentile_ms(99)

    def run_percentile_ms(self, q: float) -> float | None:
        """Percentile ``q`` (0..100) of every e2e latency of the run (1 % resolution):
        the same observations as ``streamfer_e2e_latency_seconds``, in finer buckets."""
        counts = np.asarray(self.run_e2e_counts, dtype=np.int64)
        total = int(counts.sum()) if len(counts) else 0
        if not total:
            return None
        rank = max(1, math.ceil(q / 100 * total))
        i = int(np.searchsorted(np.cumsum(counts), rank))
        return float(_RUN_EDGES_MS[min(i, len(_RUN_EDGES_MS) - 1)])


class StatsBook:
    """Thread-safe counters behind :class:`StreamStats`."""

    def __init__(self, name: str, kind: str) -> None:
        self.name, self.kind = name, kind
        self._lock = threading.Lock()
        self._consumed = 0
        self._decided = 0
        self._dropped: Counter[str] = Counter()
        self._dead: Counter[str] = Counter()
        self._e2e: deque[float] = deque(maxlen=RECENT)
        self._run = np.zeros(len(_RUN_EDGES_MS) + 1, dtype=np.int64)
        self._lag = 0
        self._absorbed = 0

    def consumed(self, n: int) -> None:
        with self._lock:
            self._consumed += n

    def decided(self, e2e_ms: np.ndarray) -> None:
        """Decisions acknowledged, with their e2e latencies (ms)."""
        values = e2e_ms.tolist()
        if len(values) > _FEW:
            slots = np.bincount(np.searchsorted(_RUN_EDGES_MS, e2e_ms), minlength=len(self._run))
            with self._lock:
                self._e2e.extend(values)
                self._decided += len(values)
                self._run += slots
            return
        few = [bisect_left(_RUN_EDGES_LIST, v) for v in values]  # as searchsorted (left)
        with self._lock:
            self._e2e.extend(values)
            self._decided += len(values)
            run = self._run
            for i in few:
                run[i] += 1

    def dropped(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self._dropped[reason] += n

    def dead_lettered(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self._dead[reason] += n

    def absorbed(self, n: int) -> None:
        with self._lock:
            self._absorbed += n

    def set_lag(self, lag: int) -> None:
        with self._lock:
            self._lag = lag

    def snapshot(self, in_flight: int = 0) -> StreamStats:
        with self._lock:
            return StreamStats(
                self.name,
                self.kind,
                self._consumed,
                self._decided,
                dict(self._dropped),
                dict(self._dead),
                in_flight,
                self._lag,
                tuple(self._e2e),
                tuple(self._run.tolist()),
                self._absorbed,
            )
