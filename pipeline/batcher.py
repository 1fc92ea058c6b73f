"""A dynamic batcher that knows nothing about models, Kafka or threads.

Items go in with :meth:`Batcher.put`, batches come out of :meth:`Batcher.poll`.
A batch is formed when

* ``max_batch`` items are queued (``reason="full"``),
* the oldest item has waited ``max_wait_ns`` (``"wait"``),
* waiting longer would miss the earliest deadline in the queue, given the
  measured latency of a batch of the current size (``"deadline"``), or
* the owner drains the queue (``"drain"``).

Latency per batch size is an EWMA fed back through :meth:`Batcher.observe`.
With ``drop_stale`` an item whose deadline has passed is dropped before it
reaches a batch (reason ``"stale"``); with ``latest_per_key`` a newer item of
the same key replaces the queued one (reason ``"superseded"``).

Every item carries a :class:`Completion` that is resolved exactly once, with a
result, a drop reason or an error; resolving it a second time raises. The
clock is injectable (monotonic nanoseconds) and nothing here sleeps, so the
owner decides how to wait: :meth:`Batcher.next_flush_ns` says until when.
The batcher is not thread-safe: one thread (the engine worker) owns it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

T = TypeVar("T")
Clock = Callable[[], int]
FlushReason = Literal["full", "wait", "deadline", "drain"]
OutcomeKind = Literal["result", "dropped", "error"]


class AlreadyResolved(RuntimeError):
    """A completion was resolved twice: a bug in the owner, never swallowed."""


class Completion:
    """One item's outcome, resolved exactly once; an optional callback sees it."""

    __slots__ = ("_callback", "error", "kind", "reason", "value")

    def __init__(self, callback: Callable[[Completion], None] | None = None) -> None:
        self._callback = callback
        self.kind: OutcomeKind | None = None
        self.value: object = None
        self.reason: str | None = None
        self.error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.kind is not None

    def set_result(self, value: object) -> None:
        self._resolve("result")
        self.value = value
        self._notify()

    def drop(self, reason: str) -> None:
        self._resolve("dropped")
        self.reason = reason
        self._notify()

    def fail(self, error: BaseException) -> None:
        self._resolve("error")
        self.error = error
        self._notify()

    def _resolve(self, kind: OutcomeKind) -> None:
        if self.kind is not None:
            raise AlreadyResolved(f"completion | already {self.kind}, cannot become {kind}")
        self.kind = kind

    def _notify(self) -> None:
        if self._callback is not None:
            self._callback(self)


@dataclass(slots=True)
class Item(Generic[T]):
    payload: T
    completion: Completion
    enqueued_ns: int
    deadline_ns: int | None = None
    key: Hashable | None = None


@dataclass(slots=True)
class Batch(Generic[T]):
    items: list[Item[T]]
    formed_ns: int
    reason: FlushReason

    def __len__(self) -> int:
        return len(self.items)

    @property
    def payloads(self) -> list[T]:
        return [item.payload for item in self.items]

    def fail_all(self, error: BaseException) -> None:
        """Resolve every still-open item of the batch with ``error``."""
        for item in self.items:
            if not item.completion.done:
                item.completion.fail(error)


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


class Batcher(Generic[T]):
    def __init__(
        self,
        max_batch: int,
        max_wait_ns: int,
        *,
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
        self._queue: dict[int, Item[T]] = {}  # insertion-ordered: FIFO with O(1) removal
        self._by_key: dict[Hashable, int] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._queue)

    def put(
        self,
        payload: T,
        completion: Completion,
        *,
        deadline_ns: int | None = None,
        key: Hashable | None = None,
    ) -> None:
        """Queue one item. It may be resolved at once (stale) or later (superseded)."""
        now = self.clock()
        if self.drop_stale and deadline_ns is not None and now >= deadline_ns:
            completion.drop("stale")
            return
        item = Item(payload, completion, now, deadline_ns, key)
        if self.latest_per_key and key is not None:
            older = self._by_key.pop(key, None)
            if older is not None:
                self._queue.pop(older).completion.drop("superseded")
            self._by_key[key] = self._seq
        self._queue[self._seq] = item
        self._seq += 1

    def observe(self, batch_size: int, latency_ns: int) -> None:
        """Feed back how long a batch of ``batch_size`` took from dispatch to results."""
        self.latency.observe(batch_size, latency_ns)

    def next_flush_ns(self) -> int | None:
        """When :meth:`poll` will next form a batch (monotonic ns), None when empty."""
        if not self._queue:
            return None
        if len(self._queue) >= self.max_batch:
            return self.clock()
        oldest = next(iter(self._queue.values()))
        due = oldest.enqueued_ns + self.max_wait_ns
        earliest = self._earliest_deadline()
        if earliest is not None:
            due = min(due, earliest - self.latency.estimate_ns(len(self._queue)))
        return due

    def poll(self) -> Batch[T] | None:
        """Drop what is stale, then return a batch if one is due now, else None."""
        now = self.clock()
        if self.drop_stale:
            self._drop_stale(now)
        if not self._queue:
            return None
        if len(self._queue) >= self.max_batch:
            return self._take(now, "full")
        oldest = next(iter(self._queue.values()))
        if now >= oldest.enqueued_ns + self.max_wait_ns:
            return self._take(now, "wait")
        earliest = self._earliest_deadline()
        if earliest is not None and now + self.latency.estimate_ns(len(self._queue)) >= earliest:
            return self._take(now, "deadline")
        return None

    def drain(self) -> list[Batch[T]]:
        """Everything queued, as batches of at most ``max_batch`` (stale items dropped)."""
        now = self.clock()
        if self.drop_stale:
            self._drop_stale(now)
        batches = []
        while self._queue:
            batches.append(self._take(now, "drain"))
        return batches

    def fail_all(self, error: BaseException) -> None:
        """Resolve every queued item with ``error`` (used when the engine is gone)."""
        for batch in self.drain():
            batch.fail_all(error)

    def _earliest_deadline(self) -> int | None:
        deadlines = [i.deadline_ns for i in self._queue.values() if i.deadline_ns is not None]
        return min(deadlines) if deadlines else None

    def _drop_stale(self, now: int) -> None:
        stale = [
            seq
            for seq, item in self._queue.items()
            if item.deadline_ns is not None and now >= item.deadline_ns
        ]
        for seq in stale:
            self._remove(seq).completion.drop("stale")

    def _remove(self, seq: int) -> Item[T]:
        item = self._queue.pop(seq)
        if item.key is not None and self._by_key.get(item.key) == seq:
            del self._by_key[item.key]
        return item

    def _take(self, now: int, reason: FlushReason) -> Batch[T]:
        seqs = list(itertools.islice(self._queue, self.max_batch))
        return Batch([self._remove(seq) for seq in seqs], now, reason)
