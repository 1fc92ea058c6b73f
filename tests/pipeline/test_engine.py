"""The engine worker without Kafka: every row ends as a decision, a drop or a dead letter."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from streamfer.errors import CodecError, EngineError, RecordInferenceError, StreamError
from streamfer.pipeline.decisions import SegmentTiming
from streamfer.pipeline.handoff import STOP, RowQueue
from streamfer.pipeline.processors.base import Prepared, Result
from streamfer.pipeline.worker import EngineWorker, deadlines_ns
from streamfer.streams.records import RecordBatch
from streamfer.streams.tracker import OffsetTracker


def batch(first: int, n: int, partition: int = 0) -> RecordBatch:
    b = RecordBatch("tx", partition, list(range(first, first + n)), [b"k"] * n,
                    [b"%d" % i for i in range(first, first + n)], [None] * n,
                    [1_700_000_000_000] * n, 0)  # fmt: skip
    b.span = OffsetTracker().add(b.tp, b.offsets)
    return b


def prepared(b: RecordBatch, rows: Sequence[int] | None = None) -> Prepared:
    """Every row (or ``rows``) accepted; the feed is the offset itself."""
    idx = np.arange(len(b)) if rows is None else np.asarray(rows)
    feed = np.asarray([b.offsets[i] for i in idx], dtype=np.float32)[:, None]
    return Prepared(b, idx.astype(np.intp), {"x": feed})


class Processor:
    """results: ``{"offset": x}`` per row; refuses rows whose offset is in ``bad``."""

    def __init__(self, bad: frozenset[int] = frozenset(), wrong_count: bool = False) -> None:
        self.bad = bad
        self.wrong_count = wrong_count

    def prepare(self, b: RecordBatch) -> Prepared:
        raise AssertionError("the worker never prepares")

    def results(self, outputs: Mapping[str, np.ndarray], metas: Sequence[Any]) -> list[Result]:
        ys = outputs["y"][:, 0].astype(int).tolist()
        assert len(metas) == len(ys)
        if self.bad & set(ys):
            raise ValueError(f"cannot handle {sorted(self.bad & set(ys))}")
        out: list[Result] = [{"offset": y} for y in ys]
        return out[:-1] if self.wrong_count and len(out) > 1 else out


class Outlet:
    """Keeps every outcome by offset and refuses an offset resolved twice."""

    def __init__(self) -> None:
        self.outcome: dict[int, tuple[str, object]] = {}
        self.batch_sizes: list[int] = []

    def _end(self, b: RecordBatch, row: int, what: str, detail: object) -> None:
        offset = b.offsets[row]
        assert offset not in self.outcome, f"{offset} resolved twice"
        self.outcome[offset] = (what, detail)

    def publish(self, p: Prepared, rows: np.ndarray, results: Sequence[Result | BaseException],
                batch_size: int, timing: SegmentTiming) -> None:  # fmt: skip
        assert len(rows) == len(results) and set(rows.tolist()) <= set(p.rows.tolist())
        assert timing.queue_ms >= 0 and timing.infer_ms >= 0
        self.batch_sizes.append(batch_size)
        for row, res in zip(rows.tolist(), results, strict=True):
            if isinstance(res, BaseException):
                assert isinstance(res, CodecError | RecordInferenceError)  # as Outlet reads it
                self._end(p.batch, row, "dead", res.reason)
            else:
                assert res == {"offset": p.batch.offsets[row]}
                self._end(p.batch, row, "decided", res)

    def dropped(self, b: RecordBatch, rows: np.ndarray, reason: str) -> None:
        for row in rows.tolist():
            self._end(b, row, "dropped", reason)

    def dead_letter(self, b: RecordBatch, row: int, error: BaseException, reason: str) -> None:
        self._end(b, row, "dead", reason)


def identity(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"y": feeds["x"].copy()}


def run(items: list[Prepared], *, infer: Any = identity, processor: Any = None,
        max_batch: int = 4, **kw: Any) -> Outlet:  # fmt: skip
    outlet = Outlet()
    inbox = RowQueue(1000)
    worker = EngineWorker(name="s", infer=infer, processor=processor or Processor(),
                          outlet=outlet, inbox=inbox, max_batch=max_batch, max_wait_ms=1,
                          **kw)  # fmt: skip
    thread = threading.Thread(target=worker.run)
    thread.start()
    for p in items:
        assert inbox.put(p, len(p), 1.0)
    inbox.put_nowait(STOP)
    thread.join(timeout=10)
    assert not thread.is_alive()
    return outlet


def test_every_accepted_row_is_decided_once_in_batches_across_polls() -> None:
    a, b = batch(0, 7), batch(100, 5, partition=1)
    out = run([prepared(a, [0, 2, 3, 4, 6]), prepared(b)])
    decided = {o for o, (w, _) in out.outcome.items() if w == "decided"}
    assert decided == {0, 2, 3, 4, 6, 100, 101, 102, 103, 104}
    assert max(out.batch_sizes) <= 4


def test_rows_the_engine_fails_on_alone_are_dead_lettered_the_rest_decided() -> None:
    def infer(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if (feeds["x"] == 2).any():
            raise EngineError("m | cannot run record 2")
        return identity(feeds)

    out = run([prepared(batch(0, 6))], infer=infer)
    assert out.outcome[2] == ("dead", "engine_error")
    assert all(out.outcome[o][0] == "decided" for o in (0, 1, 3, 4, 5))


def test_an_engine_that_fails_every_record_stops_the_stream_with_nothing_resolved() -> None:
    def infer(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise EngineError("m | device lost")

    outlet = Outlet()
    inbox = RowQueue(100)
    worker = EngineWorker(name="s", infer=infer, processor=Processor(), outlet=outlet,
                          inbox=inbox, max_batch=4, max_wait_ms=1)  # fmt: skip
    inbox.put(prepared(batch(0, 4)), 4, 1.0)
    inbox.put_nowait(STOP)
    with pytest.raises(EngineError, match="engine is broken"):
        worker.run()
    assert outlet.outcome == {}  # uncommitted: a restart decides them again


def test_a_result_failure_is_isolated_to_its_record() -> None:
    out = run([prepared(batch(0, 5))], processor=Processor(bad=frozenset({3})),
              error_reason="processor_error")  # fmt: skip
    assert out.outcome[3] == ("dead", "processor_error")
    assert sum(w == "decided" for w, _ in out.outcome.values()) == 4


def test_a_wrong_number_of_results_fails_the_batch_before_anything_is_published() -> None:
    out = run([prepared(batch(0, 4))], processor=Processor(wrong_count=True))
    assert {v for v in out.outcome.values()} == {("dead", "processor_error")}
    assert len(out.outcome) == 4


def test_stale_rows_are_dropped_and_missing_event_times_fall_back_to_the_timestamp() -> None:
    import time

    b = batch(0, 3)
    now_ms = time.time_ns() // 1_000_000
    b.timestamps_ms = [now_ms] * 3
    b.consumed_ns = time.monotonic_ns()
    p = prepared(b)
    p.event_ns = np.array([now_ms * 1_000_000, -1, (now_ms - 60_000) * 1_000_000])
    deadlines, fallbacks = deadlines_ns(p, 1000.0)
    assert fallbacks == 1 and deadlines[0] == deadlines[1] > deadlines[2]
    counted: list[int] = []
    out = run([p], drop_stale=True, deadline_ms=1000.0, on_fallbacks=counted.append)
    assert out.outcome[2] == ("dropped", "stale")  # captured a minute ago
    assert out.outcome[0][0] == out.outcome[1][0] == "decided"
    assert counted == [1]


def test_a_worker_crash_leaves_queued_rows_unresolved() -> None:
    class Broken(Outlet):
        def publish(self, *args: Any) -> None:
            raise StreamError("out | producer gone")

    outlet = Broken()
    inbox = RowQueue(100)
    worker = EngineWorker(name="s", infer=identity, processor=Processor(), outlet=outlet,
                          inbox=inbox, max_batch=2, max_wait_ms=1)  # fmt: skip
    inbox.put(prepared(batch(0, 4)), 4, 1.0)
    inbox.put_nowait(STOP)
    with pytest.raises(StreamError, match="producer gone"):
        worker.run()
    assert outlet.outcome == {}


def test_an_abandoned_worker_admits_nothing_more() -> None:
    outlet = Outlet()
    inbox = RowQueue(100)
    worker = EngineWorker(name="s", infer=identity, processor=Processor(), outlet=outlet,
                          inbox=inbox, max_batch=4, max_wait_ms=1)  # fmt: skip
    inbox.put(prepared(batch(0, 2)), 2, 1.0)
    inbox.put_nowait(STOP)
    worker.abandon()
    worker.run()
    assert outlet.outcome == {}


def test_row_queue_bounds_rows_not_batches() -> None:
    q = RowQueue(10)
    assert q.put("a", 8, 0.01)
    assert not q.put("b", 5, 0.01)  # 13 > 10: no room
    assert q.get(0) == "a" and q.rows == 0
    assert q.put("big", 50, 0.01)  # alone in the queue: taken whatever its size
    assert q.get(0) == "big" and q.get(0.01) is None


def test_a_row_the_processor_refuses_after_inference_is_dead_lettered_alone() -> None:
    class Refusing(Processor):
        def results(self, outputs: Mapping[str, np.ndarray], metas: Sequence[Any]) -> list[Any]:
            out: list[Any] = list(super().results(outputs, metas))
            return [CodecError("too big", "over_limit") if r["offset"] == 2 else r for r in out]

    out = run([prepared(batch(0, 4))], processor=Refusing())
    assert out.outcome[2] == ("dead", "over_limit")
    assert all(out.outcome[o][0] == "decided" for o in (0, 1, 3))


def test_polls_whose_feeds_differ_along_a_dynamic_axis_run_apart() -> None:
    """Text padded per poll: [n, 5] from one poll and [m, 7] from the next."""

    def padded(b: RecordBatch, width: int) -> Prepared:
        p = prepared(b)
        p.feeds["x"] = np.pad(p.feeds["x"], ((0, 0), (0, width - 1)))
        return p

    sizes: list[int] = []

    def infer(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sizes.append(len(feeds["x"]))
        return identity(feeds)

    outlet = Outlet()
    inbox = RowQueue(100)
    worker = EngineWorker(name="s", infer=infer, processor=Processor(), outlet=outlet,
                          inbox=inbox, max_batch=8, max_wait_ms=1)  # fmt: skip
    for p in (padded(batch(0, 2), 5), padded(batch(10, 2), 7)):  # queued before the worker runs:
        inbox.put(p, len(p), 1.0)  # both polls land in one batch of the batcher
    inbox.put_nowait(STOP)
    worker.run()
    decided = {o: w for o, (w, _) in outlet.outcome.items()}
    assert decided == dict.fromkeys((0, 1, 10, 11), "decided")
    assert sizes == [2, 2]
