"""One isolate-and-retry rule for prepare, inference and results, without Kafka.

A batch holding one record that fails at some stage: that record alone is dead-lettered
with its stage's reason (``processor_error`` for prepare and results, ``engine_error``
for inference), the other records of the batch are decided, and every offset resolves.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from test_outlet import Harness

from streamfer.errors import EngineError, ProcessorError, RecordInferenceError
from streamfer.pipeline.handoff import STOP, RowQueue
from streamfer.pipeline.isolation import each_alone, infer_isolated, prepare_isolated
from streamfer.pipeline.processors.base import Prepared, Result
from streamfer.pipeline.worker import EngineWorker
from streamfer.streams.records import RecordBatch

POISON = 13.0
VALUES = (1.0, 2.0, POISON, 4.0, 5.0)  # offsets 10..14: the poison is offset 12


class Poisoned:
    """Scores ``x / 100``; the stage ``at`` fails on any batch holding the poison."""

    def __init__(self, at: str) -> None:
        self.at = at

    def prepare(self, b: RecordBatch) -> Prepared:
        xs = [float(v) for v in b.values]
        if self.at == "prepare" and POISON in xs:
            raise ValueError(f"cannot prepare {POISON:g}")
        feed = np.asarray(xs, dtype=np.float32)[:, None]
        return Prepared(b, np.arange(len(b), dtype=np.intp), {"x": feed})

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.at == "infer" and (feeds["x"] == POISON).any():
            raise RuntimeError("engine cannot run this input")
        return {"y": feeds["x"].copy()}

    def results(self, outputs: Mapping[str, np.ndarray], metas: Sequence[Any]) -> list[Result]:
        ys = outputs["y"][:, 0].tolist()
        if self.at == "results" and POISON in ys:
            raise KeyError("score")
        return [{"fraud_score": y / 100, "action": "approve"} for y in ys]


def through(at: str) -> Harness:
    """The batch through both threads' paths (on this thread): prepare, rejects, the
    engine worker, the outlet; then every send acknowledged."""
    h = Harness()
    n = len(VALUES)
    values = [b"%g" % v for v in VALUES]
    b = RecordBatch("tx", 2, list(range(10, 10 + n)), [b"card-%d" % i for i in range(n)],
                    values, [None] * n, [1_700_000_000_000] * n, 0)  # fmt: skip
    b.span = h.tracker.add(b.tp, b.offsets)
    processor = Poisoned(at)
    inbox = RowQueue(100)
    worker = EngineWorker(name="s", infer=processor.infer, processor=processor,  # type: ignore[arg-type]
                          outlet=h.outlet, inbox=inbox, max_batch=8, max_wait_ms=1,
                          error_reason="processor_error")  # fmt: skip
    for part in prepare_isolated(processor, b, "processor_error"):  # type: ignore[arg-type]
        h.outlet.rejects(part)
        if len(part):
            assert inbox.put(part, len(part), 1.0)
    inbox.put_nowait(STOP)
    worker.run()  # returns at STOP
    return h


@pytest.mark.parametrize(
    ("at", "reason"),
    [("prepare", "processor_error"), ("infer", "engine_error"), ("results", "processor_error")],
)
def test_the_failing_record_alone_is_dead_lettered_with_its_reason(at: str, reason: str) -> None:
    h = through(at)
    (letter,) = [hd for t, _, _, hd, _ in h.sink.queued if t == "tx.dlq"]
    assert letter["source-offset"] == b"12"
    assert letter["error-reason"] == reason.encode()
    decided = sorted(json.loads(v)["source"]["offset"] for v in h.sink.sent("out"))
    assert decided == [10, 11, 13, 14]
    h.sink.deliver()
    snap = h.book.snapshot()
    assert snap.dead_lettered == {reason: 1} and snap.decided == 4
    assert h.tracker.positions() == {("tx", 2): 15}  # every offset resolved: committable


def test_an_engine_failure_is_an_engine_error_never_a_codec_error() -> None:
    h = through("infer")
    (letter,) = [hd for t, _, _, hd, _ in h.sink.queued if t == "tx.dlq"]
    assert letter["error-class"] == b"RecordInferenceError"
    processor = Poisoned("infer")
    feeds = {"x": np.asarray([[1.0], [POISON]], dtype=np.float32)}
    got = infer_isolated("s", processor.infer, processor, feeds, [None, None],  # type: ignore[arg-type]
                         RuntimeError("batch"), error_reason="processor_error")  # fmt: skip
    assert got[0] == {"fraud_score": 0.01, "action": "approve"}
    assert isinstance(got[1], RecordInferenceError) and not isinstance(got[1], ProcessorError)


def test_an_engine_failing_every_record_alone_stops_with_nothing_resolved() -> None:
    processor = Poisoned("infer")
    feeds = {"x": np.full((3, 1), POISON, dtype=np.float32)}
    with pytest.raises(EngineError, match="every record of a batch of 3 fails alone"):
        infer_isolated("s", processor.infer, processor, feeds, [None] * 3,  # type: ignore[arg-type]
                       RuntimeError("batch"), error_reason="processor_error")  # fmt: skip


def test_each_alone_keeps_order_and_runs_the_records_after_a_failure() -> None:
    def one(i: int) -> int:
        if i == 1:
            raise ValueError("one")
        return i * 10

    got = each_alone(4, one, lambda i, exc: f"failed {i}: {exc}")
    assert got == [0, "failed 1: one", 20, 30]
