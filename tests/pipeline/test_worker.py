"""The engine worker without Kafka: every record ends as a decision, a drop or a dead letter."""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from pipeline.config import StreamConfig
from pipeline.postprocess import FraudPostprocessor, ModelIdentity
from pipeline.preprocess import Prepared
from pipeline.worker import STOP, EngineWorker, Work
from streamfer.errors import CodecError, EngineError, StreamError


class Pre:
    input_name = "features"

    def parallel(self, record: Any) -> Any:
        if record.value == b"bad":
            raise CodecError(f"{record.offset} | bad json", "bad_json")
        return float(record.offset)

    def ordered(self, record: Any, decoded: Any) -> Prepared:
        return Prepared(np.full(3, decoded, np.float32), {"tx_id": str(record.offset)}, None)


class Outlet:
    def __init__(self) -> None:
        self.published: list[tuple[int, dict]] = []
        self.dropped_: list[tuple[int, str]] = []
        self.dead: list[tuple[int, str]] = []

    def publish(self, work: Work, decision: dict[str, Any]) -> None:
        self.published.append((work.record.offset, decision))

    def dropped(self, work: Work, reason: str) -> None:
        self.dropped_.append((work.record.offset, reason))

    def dead_letter(self, record: Any, error: BaseException, reason: str) -> None:
        self.dead.append((record.offset, reason))


def record(offset: int, value: bytes = b"{}") -> SimpleNamespace:
    return SimpleNamespace(
        topic="tx", partition=0, offset=offset, key=b"k", value=value,
        timestamp_ms=0, consumed_ns=0, consumed_wall_ms=0,
    )  # fmt: skip


def run_worker(records: list[Any], infer: Any) -> Outlet:
    stream = StreamConfig(
        name="s", kind="transaction", input_topic="tx", output_topic="out", model="m",
        batching={"max_batch": 4, "max_wait_ms": 1},
    )  # fmt: skip
    inbox: queue.Queue[Any] = queue.Queue(maxsize=100)
    outlet = Outlet()
    pre = Pre()
    worker = EngineWorker(
        stream=stream,
        infer=infer,
        pre=pre,
        post=FraudPostprocessor(stream.fraud),
        identity=ModelIdentity("m", "1", "onnxruntime", "fp32"),
        inbox=inbox,
        outlet=outlet,
    )
    thread = threading.Thread(target=worker.run)
    thread.start()
    for r in records:
        fut: Future[tuple[Any, int]] = Future()
        try:
            fut.set_result((pre.parallel(r), 0))
        except CodecError as exc:
            fut.set_exception(exc)
        inbox.put((r, fut))
    inbox.put(STOP)
    thread.join(timeout=10)
    assert not thread.is_alive()
    return outlet


def test_every_record_gets_exactly_one_outcome() -> None:
    records = [record(i, b"bad" if i % 5 == 0 else b"{}") for i in range(23)]

    def infer(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = feeds["features"]
        assert x.shape[0] <= 4
        return {"score": (x[:, :1] % 10) / 10}

    out = run_worker(records, infer)
    decided = [o for o, _ in out.published]
    dead = [o for o, _ in out.dead]
    assert sorted(decided + dead) == list(range(23))
    assert dead == [0, 5, 10, 15, 20] and {r for _, r in out.dead} == {"bad_json"}
    assert decided == sorted(decided)  # consume order kept
    first = dict(out.published)[1]
    assert first["source"]["offset"] == 1 and first["result"]["action"] == "approve"
    assert 1 <= first["batch_size"] <= 4


def test_failed_batches_are_dead_lettered_not_lost() -> None:
    def infer(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise EngineError("m | boom")

    out = run_worker([record(i) for i in range(6)], infer)
    assert not out.published
    assert sorted(o for o, _ in out.dead) == list(range(6))
    assert {r for _, r in out.dead} == {"engine_error"}


def start_worker(records: list[Any], outlet: Any, futures: list[Future[Any]]) -> EngineWorker:
    stream = StreamConfig(
        name="s", kind="transaction", input_topic="tx", output_topic="out", model="m",
        batching={"max_batch": 4, "max_wait_ms": 1},
    )  # fmt: skip
    inbox: queue.Queue[Any] = queue.Queue(maxsize=100)
    for r, fut in zip(records, futures, strict=True):
        inbox.put((r, fut))
    inbox.put(STOP)
    return EngineWorker(
        stream=stream,
        infer=lambda feeds: {"score": feeds["features"][:, :1] * 0},
        pre=Pre(),
        post=FraudPostprocessor(stream.fraud),
        identity=ModelIdentity("m", "1", "onnxruntime", "fp32"),
        inbox=inbox,
        outlet=outlet,
    )


def done(value: Any = None, error: BaseException | None = None) -> Future[Any]:
    fut: Future[Any] = Future()
    if error is None:
        fut.set_result(value)
    else:
        fut.set_exception(error)
    return fut


def test_a_worker_crash_leaves_queued_records_unresolved() -> None:
    class FullBuffer(Outlet):
        def dead_letter(self, record: Any, error: BaseException, reason: str) -> None:
            if record.offset == 2:
                raise StreamError("out | producer buffer full")
            super().dead_letter(record, error, reason)

    outlet = FullBuffer()
    bad = CodecError("2 | bad json", "bad_json")
    futures = [done((0.0, 0)), done((1.0, 0)), done(error=bad)]
    worker = start_worker([record(0), record(1), record(2, b"bad")], outlet, futures)
    with pytest.raises(StreamError, match="buffer full"):
        worker.run()
    # 0 and 1 were queued in the batcher: not dead-lettered as engine errors, not decided
    assert outlet.dead == [] and outlet.published == []


def test_preprocessing_cancelled_at_shutdown_is_abandoned_not_dead_lettered() -> None:
    cancelled: Future[Any] = Future()
    assert cancelled.cancel()
    outlet = Outlet()
    worker = start_worker([record(0), record(1)], outlet, [cancelled, done((1.0, 0))])
    worker.run()
    assert outlet.dead == []  # 0 stays unresolved: consumed again after a restart
    assert [o for o, _ in outlet.published] == [1]


def test_an_abandoned_worker_admits_nothing_more() -> None:
    outlet = Outlet()
    worker = start_worker([record(0), record(1)], outlet, [done((0.0, 0)), done((1.0, 0))])
    worker.abandon()
    worker.run()
    assert outlet.published == [] and outlet.dead == []


def test_chunked_preprocessing_keeps_each_records_own_outcome() -> None:
    from concurrent.futures import CancelledError, ThreadPoolExecutor

    from pipeline.worker import ChunkSlot, prepare_chunk

    records = [record(0), record(1, b"bad"), record(2)]
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(prepare_chunk, Pre(), records)
        slots = [ChunkSlot(future, i) for i in range(3)]
        assert slots[0].result()[0] == 0.0 and slots[2].result()[0] == 2.0
        with pytest.raises(CodecError, match="bad json"):
            slots[1].result()
    cancelled: Future[list[Any]] = Future()
    assert cancelled.cancel()
    with pytest.raises(CancelledError):
        ChunkSlot(cancelled, 0).result()
