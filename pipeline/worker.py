"""The engine worker of one stream: inbox -> batcher -> runner -> postprocess -> outlet.

It owns the stream's :class:`~pipeline.batcher.Batcher` (one thread, so the
batcher stays lock-free) and knows nothing about Kafka: records arrive in
consume order on a bounded inbox as ``(record, pending)`` pairs, ``pending``
being the thread pool's ``Preprocessor.parallel`` work (anything with a
``Future``-like ``result()``, see :class:`Pending`); every outcome leaves
through an :class:`Outlet`:

* a decision -> ``outlet.publish(work, decision)``;
* a drop (stale, superseded) -> ``outlet.dropped(work, reason)``;
* bad input (``CodecError``) or a failed batch -> ``outlet.dead_letter(record, error, reason)``.

Each record meets exactly one of them (the batcher's completions enforce
it). A ``STOP`` sentinel on the inbox drains the batcher and ends the thread.

Dead letters are for bad input and for a batch that failed (inference or
postprocessing). A crash of the worker itself (the outlet cannot queue
output, say) and a shutdown that cancels preprocessing leave the records
*unresolved*: never committed, so they are consumed again after a restart.
"""

from __future__ import annotations

import functools
import logging
import queue
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import numpy as np

from pipeline.batcher import Batch, Batcher, Completion
from pipeline.config import StreamConfig
from pipeline.postprocess import ModelIdentity, Postprocessor, build_decision
from pipeline.preprocess import Prepared, Preprocessor
from streamfer.errors import CodecError, EngineError, StreamferError

log = logging.getLogger(__name__)

STOP: Final = object()
_IDLE_WAIT_S = 0.05


class Outlet(Protocol):
    def publish(self, work: Work, decision: dict[str, Any]) -> None: ...

    def dropped(self, work: Work, reason: str) -> None: ...

    def dead_letter(self, record: Any, error: BaseException, reason: str) -> None: ...


class Pending(Protocol):
    """One record's preprocessing: ``(decoded, parallel_ns)``, or its error, or CancelledError."""

    def result(self) -> tuple[Any, int]: ...


class ChunkSlot:
    """One record's share of a chunk future (``prepare_chunk``): a ``Pending``."""

    __slots__ = ("future", "index")

    def __init__(self, future: Future[list[Any]], index: int) -> None:
        self.future = future
        self.index = index

    def result(self) -> tuple[Any, int]:
        value = self.future.result()[self.index]
        if isinstance(value, BaseException):
            raise value
        return value  # type: ignore[no-any-return]


def prepare_chunk(pre: Preprocessor, records: list[Any]) -> list[Any]:
    """``timed_parallel`` for several records in one pool task: results or errors, in order."""
    out: list[Any] = []
    for record in records:
        try:
            out.append(timed_parallel(pre, record))
        except Exception as exc:  # raised again by this record's ChunkSlot
            out.append(exc)
    return out


class InferFn(Protocol):
    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


@dataclass(slots=True)
class Work:
    """One record on its way through the engine side, with its stage timings (ns)."""

    record: Any
    prepared: Prepared
    preprocess_ns: int
    stage_ns: dict[str, int] = field(default_factory=dict)

    def latency_ms(self, handoff_ns: int) -> dict[str, float]:
        """Stage latencies in ms as a decision reports them (see pipeline.postprocess)."""
        rec = self.record
        broker_ms = max(0.0, rec.consumed_wall_ms - rec.timestamp_ms)
        out = {"broker": broker_ms, "preprocess": self.preprocess_ns / 1e6}
        out.update({k: v / 1e6 for k, v in self.stage_ns.items()})
        out["e2e"] = broker_ms + (handoff_ns - rec.consumed_ns) / 1e6
        return out


def timed_parallel(pre: Preprocessor, record: Any) -> tuple[Any, int]:
    """Run ``pre.parallel`` and measure it: this is what the thread pool executes."""
    start = time.perf_counter_ns()
    decoded = pre.parallel(record)
    return decoded, time.perf_counter_ns() - start


class EngineWorker:
    def __init__(
        self,
        *,
        stream: StreamConfig,
        infer: InferFn,
        pre: Preprocessor,
        post: Postprocessor,
        identity: ModelIdentity,
        inbox: queue.Queue[Any],
        outlet: Outlet,
        on_batch: Callable[[int, float, float], None] = lambda n, infer_s, post_s: None,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.stream = stream
        self.infer = infer
        self.pre = pre
        self.post = post
        self.identity = identity
        self.inbox = inbox
        self.outlet = outlet
        self.on_batch = on_batch
        self.clock = clock
        self._abandoned = False
        self.beat: Callable[[], None] = lambda: None  # liveness, once per loop
        self.batcher: Batcher[Work] = Batcher(
            stream.batching.max_batch,
            int(stream.batching.max_wait_ms * 1e6),
            drop_stale=stream.drops_stale,
            latest_per_key=stream.latest_per_key,
            clock=clock,
        )

    def abandon(self) -> None:
        """On the next STOP, return without running what is queued (it stays unresolved,
        so it is never committed and is consumed again after a restart)."""
        self._abandoned = True

    @property
    def queued(self) -> int:
        return len(self.batcher)

    def run(self) -> None:
        """Thread target: until STOP, admit records and run batches when they are due.

        An error escaping here is a crash: what is queued stays unresolved (consumed
        again after a restart, never dead-lettered as if the input were bad) and the
        error propagates, so the stream stops as fatal.
        """
        try:
            self._loop()
        except BaseException:
            log.exception(
                "%s | engine worker failed; %d queued records left unresolved",
                self.stream.name,
                len(self.batcher),
            )
            raise

    def _loop(self) -> None:
        while True:
            self.beat()
            entry = self._next(self._wait_s())
            stop = False
            while entry is not None:
                if self._abandoned:  # checked per entry: nothing more is admitted or run
                    return
                if entry is STOP:
                    stop = True
                    break
                self._admit(*entry)
                if len(self.batcher) >= self.batcher.max_batch:
                    break
                entry = self._next(0)
            if self._abandoned:
                return
            while (batch := self.batcher.poll()) is not None:
                self._run(batch)
            if stop:
                for batch in self.batcher.drain():
                    self._run(batch)
                return

    def _wait_s(self) -> float:
        due = self.batcher.next_flush_ns()
        if due is None:
            return _IDLE_WAIT_S
        return max(0.0, (due - self.clock()) / 1e9)

    def _next(self, timeout_s: float) -> Any:
        try:
            if timeout_s <= 0:
                return self.inbox.get_nowait()
            return self.inbox.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def _admit(self, record: Any, future: Pending) -> None:
        try:
            decoded, parallel_ns = future.result()
            start = time.perf_counter_ns()
            prepared = self.pre.ordered(record, decoded)
            pre_ns = parallel_ns + time.perf_counter_ns() - start
        except CancelledError:  # the pool shut down (stopping): abandoned, consumed again
            return
        except CodecError as exc:
            self.outlet.dead_letter(record, exc, exc.reason)
            return
        except Exception as exc:  # a preprocessing bug must not lose the record
            log.exception("%s | preprocessing %s failed", self.stream.name, _coords(record))
            self.outlet.dead_letter(record, exc, "internal_error")
            return
        work = Work(record, prepared, pre_ns)
        completion = Completion(functools.partial(self._resolved, work))
        self.batcher.put(work, completion, deadline_ns=prepared.deadline_ns, key=record.key)

    def _resolved(self, work: Work, c: Completion) -> None:
        if c.kind == "dropped":
            self.outlet.dropped(work, c.reason or "dropped")
        elif c.kind == "error":
            err = c.error or EngineError("unknown")
            reason = "engine_error" if isinstance(err, StreamferError) else "internal_error"
            self.outlet.dead_letter(work.record, err, reason)
        else:
            assert isinstance(c.value, dict)
            self.outlet.publish(work, c.value)

    def _run(self, batch: Batch[Work]) -> None:
        n = len(batch)
        start = self.clock()
        try:
            rows = np.stack([w.prepared.tensor for w in batch.payloads])
            outputs = self.infer({self.pre.input_name: rows})
        except Exception as exc:
            log.error("%s | batch of %d failed: %s", self.stream.name, n, exc)
            batch.fail_all(exc)
            return
        infer_done = self.clock()
        self.batcher.observe(n, infer_done - start)
        try:
            results = self.post.results(outputs, [w.prepared.meta for w in batch.payloads])
        except Exception as exc:
            log.error("%s | postprocessing a batch of %d failed: %s", self.stream.name, n, exc)
            batch.fail_all(exc)
            return
        post_done = self.clock()
        self.on_batch(n, (infer_done - start) / 1e9, (post_done - infer_done) / 1e9)
        for item, result in zip(batch.items, results, strict=True):
            work = item.payload
            # waiting between poll and inference, preprocessing work excluded
            waited = start - work.record.consumed_ns - work.preprocess_ns
            work.stage_ns["queue"] = max(0, waited)
            work.stage_ns["infer"] = infer_done - start
            work.stage_ns["postprocess"] = post_done - infer_done
            decision = build_decision(
                stream=self.stream.name,
                kind=self.stream.kind,
                record=work.record,
                model=self.identity,
                result=result,
                batch_size=n,
                latency_ms={},  # filled by the outlet at hand-off (publish, e2e)
                meta=work.prepared.meta,
            )
            item.completion.set_result(decision)


def _coords(record: Any) -> str:
    return f"{record.topic}[{record.partition}]@{record.offset}"
