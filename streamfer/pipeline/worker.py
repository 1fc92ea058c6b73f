"""The engine thread of one stream: batcher -> runner -> processor results -> outlet.

:class:`EngineWorker` owns the stream's :class:`~pipeline.batcher.Batcher` (one
thread, so the batcher stays lock-free) and knows nothing about Kafka: prepared
record batches (:class:`~pipeline.processors.base.Prepared`) arrive in consume
order on the bounded :class:`~pipeline.handoff.RowQueue`; every row leaves
through the :class:`~pipeline.outlet.Outlet`:

* a result -> ``outlet.publish`` (a segment of rows at a time, with its stage times);
* a drop (stale, superseded) -> ``outlet.dropped``;
* a row whose inference or results failed -> ``outlet.dead_letter``.

Failures are isolated (``pipeline.isolation``, the same rule as the consumer
thread's ``prepare``): a batch whose inference or ``results`` raises is run
again record by record; rows that fail alone are dead-lettered
(``engine_error``, or the processor's reason), the others decided. When every
row fails alone the engine itself is broken, not the input: the worker stops
with the error and nothing of the batch is resolved (so nothing is committed
past it). A :data:`~pipeline.handoff.STOP` sentinel on the queue drains the
batcher and ends the thread; a model :class:`~pipeline.handoff.Swap` is taken
between two batches.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from streamfer.pipeline.batcher import Batch, Batcher, Chunk, Segment
from streamfer.pipeline.decisions import SegmentTiming
from streamfer.pipeline.handoff import STOP, InferFn, RowQueue, Swap
from streamfer.pipeline.isolation import infer_isolated, results_isolated
from streamfer.pipeline.processors.base import Prepared, Processor, Result
from streamfer.streams.records import RecordBatch
from streamfer.threadnames import name_this_thread

log = logging.getLogger(__name__)

_IDLE_WAIT_S = 0.05


class AfterBatch(Protocol):
    """Hears of each batch after its decisions went to the outlet (a shadow scorer)."""

    def __call__(self, segments: list[Segment[Prepared]], feeds: dict[str, np.ndarray],
                 metas: Sequence[Any], results: Sequence[Any], /) -> None: ...  # fmt: skip


class Outcomes(Protocol):
    """Where the worker hands every row (the stream's :class:`~pipeline.outlet.Outlet`)."""

    def publish(self, prepared: Prepared, rows: np.ndarray,
                results: Sequence[Result | BaseException], batch_size: int,
                timing: SegmentTiming) -> None: ...  # fmt: skip

    def dropped(self, batch: RecordBatch, rows: np.ndarray, reason: str) -> None: ...

    def dead_letter(self, batch: RecordBatch, row: int, error: BaseException,
                    reason: str) -> None: ...  # fmt: skip


def deadlines_ns(prepared: Prepared, deadline_ms: float) -> tuple[np.ndarray, int]:
    """Monotonic deadlines of the rows: event time + budget, on this process's clock.

    Event time is the processor's ``event_ns`` (epoch ns), else the Kafka record
    timestamp; returns also how many rows fell back to the timestamp for lack of one.
    """
    batch = prepared.batch
    ts_ns = np.asarray(batch.timestamps_ms, dtype=np.int64)[prepared.rows] * 1_000_000
    fallbacks = 0
    if prepared.event_ns is None:
        event = ts_ns
    else:
        missing = prepared.event_ns < 0
        fallbacks = int(missing.sum())
        event = np.where(missing, ts_ns, prepared.event_ns)
    shift = batch.consumed_ns - batch.consumed_wall_ms * 1_000_000
    return event + shift + int(deadline_ms * 1e6), fallbacks


class EngineWorker:
    """Batches prepared rows onto the engine and hands every outcome to the outlet."""

    def __init__(
        self,
        *,
        name: str,
        infer: InferFn,
        processor: Processor,
        outlet: Outcomes,
        inbox: RowQueue,
        max_batch: int,
        max_wait_ms: float,
        drop_stale: bool = False,
        latest_per_key: bool = False,
        deadline_ms: float | None = None,
        on_batch: Callable[[int, float, float], None] = lambda n, infer_s, post_s: None,
        on_fallbacks: Callable[[int], None] = lambda n: None,
        error_reason: str = "internal_error",
        clock: Callable[[], int] = time.monotonic_ns,
        after_batch: AfterBatch | None = None,
    ) -> None:
        self.name, self.infer, self.processor = name, infer, processor
        self.outlet, self.inbox = outlet, inbox
        self.deadline_ms, self.latest_per_key = deadline_ms, latest_per_key
        self.on_batch, self.on_fallbacks = on_batch, on_fallbacks
        self.error_reason = error_reason  # for an exception escaping the processor
        self.after_batch = after_batch  # a shadow: sees each batch once it is published
        self.clock = clock
        self._abandoned = threading.Event()  # set by the stopping thread, read here
        # a model swap waiting for the next batch boundary: one slot, handed over by the
        # reloading thread, taken by this one (streamfer.pipeline.reload)
        self._swaps: queue.Queue[Swap] = queue.Queue(maxsize=1)
        self.sample: dict[str, np.ndarray] | None = None  # the last batch's feeds (warm-up)
        self.beat: Callable[[], None] = lambda: None  # liveness, once per loop
        self.batcher: Batcher[Prepared] = Batcher(
            max_batch,
            int(max_wait_ms * 1e6),
            on_drop=self._dropped,
            drop_stale=drop_stale,
            latest_per_key=latest_per_key,
            clock=clock,
        )

    def abandon(self) -> None:
        """On the next STOP, return without running what is queued (it stays unresolved,
        so it is never committed and is consumed again after a restart)."""
        self._abandoned.set()

    def offer_swap(self, swap: Swap) -> bool:
        """Have ``swap`` applied between two batches (never inside one); False if one is
        pending already."""
        try:
            self._swaps.put_nowait(swap)
        except queue.Full:
            return False
        return True

    def withdraw_swap(self) -> Swap | None:
        """Take back a swap not applied yet (None: there was none, or it is applied)."""
        try:
            return self._swaps.get_nowait()
        except queue.Empty:
            return None

    def _take_swap(self) -> None:
        try:
            swap = self._swaps.get_nowait()
        except queue.Empty:
            return
        self.infer = swap.infer
        try:
            swap.applied()
        finally:
            swap.done.set()

    @property
    def queued(self) -> int:
        return len(self.batcher)

    def run(self) -> None:
        """Thread target: until STOP, admit prepared batches and run batches when due.

        An error escaping here is a crash: what is queued stays unresolved (consumed
        again after a restart, never dead-lettered as if the input were bad) and the
        error propagates, so the stream stops as fatal.
        """
        name_this_thread()
        try:
            self._loop()
        except BaseException:
            log.exception(
                "%s | engine worker failed; %d queued records left unresolved",
                self.name,
                len(self.batcher),
            )
            raise

    def _loop(self) -> None:
        batcher, abandoned = self.batcher, self._abandoned
        while True:
            self.beat()
            self._take_swap()
            entry = self.inbox.get(self._wait_s())
            stop = False
            while entry is not None:
                if abandoned.is_set():  # checked per entry: nothing more is admitted or run
                    return
                if entry is STOP:
                    stop = True
                    break
                self._admit(entry)
                if len(batcher) >= batcher.max_batch:
                    break
                entry = self.inbox.get(0)
            if abandoned.is_set():
                return
            while (batch := batcher.poll()) is not None:
                self._run(batch)
            if stop:
                for batch in batcher.drain():
                    self._run(batch)
                return

    def _wait_s(self) -> float:
        due = self.batcher.next_flush_ns()
        if due is None:
            return _IDLE_WAIT_S
        return max(0.0, (due - self.clock()) / 1e9)

    def _admit(self, prepared: Prepared) -> None:
        deadlines = None
        if self.deadline_ms is not None:
            deadlines, fallbacks = deadlines_ns(prepared, self.deadline_ms)
            if fallbacks:
                self.on_fallbacks(fallbacks)
        keys = None
        if self.latest_per_key:
            batch_keys = prepared.batch.keys
            keys = [batch_keys[r] for r in prepared.rows.tolist()]
        self.batcher.put(Chunk(prepared, len(prepared), deadlines_ns=deadlines, keys=keys))

    def _dropped(self, chunk: Chunk[Prepared], rows: np.ndarray, reason: str) -> None:
        prepared = chunk.payload
        self.outlet.dropped(prepared.batch, prepared.rows[rows], reason)

    # -- one batch ---------------------------------------------------------------------
    def _run(self, batch: Batch[Prepared]) -> None:
        self._take_swap()  # a batch boundary: one model decides a whole batch
        self._run_segments(batch.segments)

    def _run_segments(self, segments: list[Segment[Prepared]]) -> None:
        n = sum(len(s) for s in segments)
        try:
            feeds = _feeds(segments)
        except ValueError:
            if len(segments) == 1:
                raise
            # polls whose feeds differ along a dynamic axis (text padded per poll) do not
            # stack into one batch: each runs alone
            log.debug("%s | feeds of %d polls differ in shape; run apart", self.name, n)
            for seg in segments:
                self._run_segments([seg])
            return
        metas = _metas(segments)
        self.sample = feeds
        start = self.clock()
        try:
            outputs = self.infer(feeds)
        except Exception as exc:
            log.error("%s | batch of %d failed in the engine: %s", self.name, n, exc)
            self._isolate(segments, feeds, metas, exc)
            return
        infer_done = self.clock()
        self.batcher.observe(n, infer_done - start)
        results = self._results(outputs, metas, n)
        post_done = self.clock()
        self.on_batch(n, (infer_done - start) / 1e9, (post_done - infer_done) / 1e9)
        self._publish(segments, results, n, start, infer_done - start, post_done - infer_done)
        if self.after_batch is not None:
            self.after_batch(segments, feeds, metas, results)

    def _results(
        self, outputs: Mapping[str, np.ndarray], metas: Sequence[Any], n: int
    ) -> list[Result | BaseException]:
        return results_isolated(
            self.processor, outputs, metas, error_reason=self.error_reason, on_fault=self._fault
        )

    def _fault(self, problem: str, error: BaseException | None) -> None:
        if error is None:  # a wrong count: the processor is broken, not a record
            log.error("%s | %s", self.name, problem)
        else:
            log.warning("%s | %s", self.name, problem)

    def _isolate(
        self,
        segments: list[Segment[Prepared]],
        feeds: dict[str, np.ndarray],
        metas: Sequence[Any],
        error: Exception,
    ) -> None:
        """Inference failed for a batch: run each row alone to find the rows at fault."""
        n = sum(len(s) for s in segments)
        outcomes = infer_isolated(
            self.name, self.infer, self.processor, feeds, metas, error,
            error_reason=self.error_reason,
        )  # fmt: skip
        self._publish(segments, outcomes, n, self.clock(), 0, 0)

    def _publish(
        self,
        segments: list[Segment[Prepared]],
        results: Sequence[Any],
        n: int,
        start: int,
        infer_ns: int,
        post_ns: int,
    ) -> None:
        i = 0
        for seg in segments:
            prepared = seg.chunk.payload
            k = len(seg)
            queue_ns = start - prepared.batch.consumed_ns - prepared.prepare_ns
            timing = SegmentTiming(
                max(0, queue_ns) / 1e6, prepared.prepare_ns / 1e6, infer_ns / 1e6, post_ns / 1e6
            )
            rows = prepared.rows[seg.rows]
            self.outlet.publish(prepared, rows, results[i : i + k], n, timing)
            i += k


def _feeds(segments: list[Segment[Prepared]]) -> dict[str, np.ndarray]:
    if len(segments) == 1 and segments[0].whole:
        return segments[0].chunk.payload.feeds
    names = segments[0].chunk.payload.feeds.keys()
    return {
        name: np.concatenate(
            [
                s.chunk.payload.feeds[name] if s.whole else s.chunk.payload.feeds[name][s.rows]
                for s in segments
            ]
        )
        for name in names
    }


def _metas(segments: list[Segment[Prepared]]) -> list[Any]:
    out: list[Any] = []
    for s in segments:
        metas = s.chunk.payload.metas
        if metas is None:
            out.extend([None] * len(s))
        else:
            out.extend(metas[r] for r in s.rows.tolist())
    return out
