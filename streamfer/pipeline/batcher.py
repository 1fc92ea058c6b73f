"""A dynamic batcher of row chunks that knows nothing about models, Kafka or threads.

Work arrives as :class:`Chunk` objects (the rows one poll of one partition
prepared, with an optional deadline and key per row) through
:meth:`Batcher.put`; batches of at most ``max_batch`` rows come out of
:meth:`Batcher.poll` as lists of :class:`Segment` (a chunk and which of its
rows), oldest rows first. A chunk is split only where it leads a batch and holds
more rows than the batch has room for; one that would not fit behind others
starts the next batch whole, so a poll's feeds usually reach the engine without
a copy. A batch is formed when

* ``max_batch`` rows are queued (``reason="full"``),
* the oldest row has waited ``max_wait_ns`` (``"wait"``),
* waiting longer would miss the earliest deadline in the queue, given the
  measured latency of a batch of the current size (``"deadline"``), or
* the owner drains the queue (``"drain"``).

Latency per batch size is an EWMA fed back through :meth:`Batcher.observe`.
With ``drop_stale`` a row whose deadline has passed is dropped before it
reaches a batch (reason ``"stale"``); with ``latest_per_key`` a newer row of
the same key replaces the queued one (reason ``"superseded"``).

Every row of every chunk ends in exactly one batch or one drop: drops are
reported through ``on_drop(chunk, rows, reason)``, at most once per row. The
per-row cost is numpy work on whole chunks; only ``latest_per_key`` looks at
rows one by one. The clock is injectable (monotonic nanoseconds) and nothing
here sleeps: :meth:`Batcher.next_flush_ns` says until when the owner may wait.
Not thread-safe: one thread (the engine worker) owns it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

import numpy as np

T = TypeVar("T")
Clock = Callable[[], int]
FlushReason = Literal["full", "wait", "deadline", "drain"]


class Chunk(Generic[T]):
    """``n`` rows of one payload, queued together; ``waiting`` marks rows still queued."""

    __slots__ = ("deadlines_ns", "enqueued_ns", "keys", "n", "payload", "waiting", "waiting_n")

    def __init__(
        self,
        payload: T,
        n: int,
        *,
        deadlines_ns: np.ndarray | None = None,
        keys: Sequence[Hashable] | None = None,
    ) -> None:
        if deadlines_ns is not None and len(deadlines_ns) != n:
            raise ValueError(f"chunk | {len(deadlines_ns)} deadlines for {n} rows")
        if keys is not None and len(keys) != n:
            raise ValueError(f"chunk | {len(keys)} keys for {n} rows")
        self.payload = payload
        self.n = n
        self.deadlines_ns = deadlines_ns
        self.keys = keys
        self.waiting = np.ones(n, dtype=bool)
        self.waiting_n = n
        self.enqueued_ns = 0

    def take(self, rows: np.ndarray) -> None:
        self.waiting[rows] = False
        self.waiting_n -= len(rows)


class Segment(Generic[T]):
    """Rows of one chunk in a batch (indices into the chunk, increasing)."""

    __slots__ = ("chunk", "rows")

    def __init__(self, chunk: Chunk[T], rows: np.ndarray) -> None:
        self.chunk = chunk
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def whole(self) -> bool:
        """Every row of the chunk, in order (feeds can be used without a copy)."""
        return len(self.rows) == self.chunk.n


@dataclass(slots=True)
class Batch(Generic[T]):
    segments: list[Segment[T]]
    formed_ns: int
    reason: FlushReason

    def __len__(self) -> int:
        return sum(len(s.rows) for s in self.segments)


@dataclass
class LatencyModel:
    """EWMA of batch latency per batch size; estimates unseen sizes conservatively."""

    alpha: float = 0.2
    _ewma_ns: dict[int, float] = field(default_factory=dict)

    def observe(self, batch_size: int, latency_ns: int) -> None:
        old = self._ewma_ns.get(batch_size)
        new = float(latency_ns) if old is None else old + self.alpha * (latency_ns - old)
        self._ewma_ns[batch_size] = new

    def estimate_ns(self, batch_size: int) -> int:
        """Latency of a batch of ``batch_size``: measured, else scaled from a known size."""
        if not self._ewma_ns or batch_size < 1:
            return 0
        exact = self._ewma_ns.get(batch_size)
        if exact is not None:
            return int(exact)
        larger = [s for s in self._ewma_ns if s > batch_size]
        if larger:  # a bigger batch is never faster: its time bounds ours
            return int(self._ewma_ns[min(larger)])
        known = max(self._ewma_ns)
        return int(self._ewma_ns[known] * batch_size / known)


DropFn = Callable[[Chunk[T], np.ndarray, str], None]


class Batcher(Generic[T]):
    def __init__(
        self,
        max_batch: int,
        max_wait_ns: int,
        *,
        on_drop: DropFn[T],
        drop_stale: bool = False,
        latest_per_key: bool = False,
        clock: Clock = time.monotonic_ns,
        latency: LatencyModel | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"batcher | max_batch must be >= 1 (got {max_batch})")
        if max_wait_ns < 0:
            raise ValueError(f"batcher | max_wait_ns must be >= 0 (got {max_wait_ns})")
        self.max_batch = max_batch
        self.max_wait_ns = max_wait_ns
        self.drop_stale = drop_stale
        self.latest_per_key = latest_per_key
        self.clock = clock
        self.latency = latency or LatencyModel()
        self._on_drop = on_drop
        self._queue: deque[Chunk[T]] = deque()
        self._n = 0  # rows waiting
        self._by_key: dict[Hashable, tuple[Chunk[T], int]] = {}

    def __len__(self) -> int:
        return self._n

    def put(self, chunk: Chunk[T]) -> None:
        """Queue a chunk's rows. Some may be dropped at once (stale) or later (superseded)."""
        now = self.clock()
        chunk.enqueued_ns = now
        self._queue.append(chunk)
        self._n += chunk.waiting_n
        if self.drop_stale and chunk.deadlines_ns is not None:
            self._drop_stale_in(chunk, now)
        if self.latest_per_key and chunk.keys is not None:
            self._supersede(chunk)

    def _supersede(self, chunk: Chunk[T]) -> None:
        by_key, keys = self._by_key, chunk.keys
        assert keys is not None
        for row in np.flatnonzero(chunk.waiting).tolist():
            key = keys[row]
            if key is None:
                continue
            older = by_key.get(key)
            if older is not None and older[0].waiting[older[1]]:
                self._drop(older[0], np.array([older[1]]), "superseded")
            by_key[key] = (chunk, row)

    def observe(self, batch_size: int, latency_ns: int) -> None:
        """Feed back how long a batch of ``batch_size`` took from dispatch to results."""
        self.latency.observe(batch_size, latency_ns)

    def _head(self) -> Chunk[T] | None:
        queue = self._queue
        while queue and not queue[0].waiting_n:
            queue.popleft()
        return queue[0] if queue else None

    def next_flush_ns(self) -> int | None:
        """When :meth:`poll` will next form a batch (monotonic ns), None when empty."""
        head = self._head()
        if head is None:
            return None
        if self._n >= self.max_batch:
            return self.clock()
        due = head.enqueued_ns + self.max_wait_ns
        earliest = self._earliest_deadline()
        if earliest is not None:
            due = min(due, earliest - self.latency.estimate_ns(min(self._n, self.max_batch)))
        return due

    def poll(self) -> Batch[T] | None:
        """Drop what is stale, then return a batch if one is due now, else None."""
        now = self.clock()
        if self.drop_stale:
            for chunk in list(self._queue):
                self._drop_stale_in(chunk, now)
        head = self._head()
        if head is None:
            return None
        if self._n >= self.max_batch:
            return self._take(now, "full")
        if now >= head.enqueued_ns + self.max_wait_ns:
            return self._take(now, "wait")
        earliest = self._earliest_deadline()
        if earliest is not None and now + self.latency.estimate_ns(self._n) >= earliest:
            return self._take(now, "deadline")
        return None

    def drain(self) -> list[Batch[T]]:
        """Everything queued, as batches of at most ``max_batch`` (stale rows dropped)."""
        now = self.clock()
        if self.drop_stale:
            for chunk in list(self._queue):
                self._drop_stale_in(chunk, now)
        batches = []
        while self._head() is not None:
            batches.append(self._take(now, "drain"))
        return batches

    def _earliest_deadline(self) -> int | None:
        earliest: int | None = None
        for chunk in self._queue:
            d = chunk.deadlines_ns
            if d is None or not chunk.waiting_n:
                continue
            m = int(d[chunk.waiting].min()) if chunk.waiting_n < chunk.n else int(d.min())
            earliest = m if earliest is None else min(earliest, m)
        return earliest

    def _drop_stale_in(self, chunk: Chunk[T], now: int) -> None:
        d = chunk.deadlines_ns
        if d is None or not chunk.waiting_n:
            return
        stale = np.flatnonzero(chunk.waiting & (d <= now))
        if len(stale):
            self._drop(chunk, stale, "stale")

    def _drop(self, chunk: Chunk[T], rows: np.ndarray, reason: str) -> None:
        chunk.take(rows)
        self._n -= len(rows)
        self._on_drop(chunk, rows, reason)

    def _take(self, now: int, reason: FlushReason) -> Batch[T]:
        need = self.max_batch
        segments: list[Segment[T]] = []
        while need and (chunk := self._head()) is not None:
            if segments and chunk.waiting_n > need:
                break  # not split: it starts the next batch whole (its feeds need no copy)
            rows = np.flatnonzero(chunk.waiting)[:need]
            chunk.take(rows)
            segments.append(Segment(chunk, rows))
            need -= len(rows)
        self._n -= self.max_batch - need
        return Batch(segments, now, reason)
