"""A new model version reaches the engine thread at a batch boundary, never inside a batch."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from test_engine import batch, prepared

from streamfer.pipeline.decisions import SegmentTiming
from streamfer.pipeline.handoff import STOP, RowQueue, Swap
from streamfer.pipeline.processors.base import Prepared, Result
from streamfer.pipeline.worker import EngineWorker


class Models:
    """Two models: ``y`` = the offset, ``m`` = which model ran (1 or 2)."""

    def __init__(self) -> None:
        self.inside = threading.Event()  # the old model is running a batch
        self.gate = threading.Event()  # lets it finish

    def old(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.inside.set()
        assert self.gate.wait(10)
        return {"y": feeds["x"].copy(), "m": np.full_like(feeds["x"], 1)}

    @staticmethod
    def new(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": feeds["x"].copy(), "m": np.full_like(feeds["x"], 2)}


class Processor:
    def results(self, outputs: Mapping[str, np.ndarray], metas: Sequence[Any]) -> list[Result]:
        return [
            {"offset": int(y), "model": int(m)}
            for y, m in zip(outputs["y"][:, 0], outputs["m"][:, 0], strict=True)
        ]


class Outlet:
    """Records, per offset, the model that computed it and the version the decision names
    (the stream's identity at publish time, switched by the swap)."""

    def __init__(self) -> None:
        self.version = 1
        self.got: dict[int, tuple[int, int]] = {}

    def publish(self, p: Prepared, rows: np.ndarray, results: Sequence[Result | BaseException],
                batch_size: int, timing: SegmentTiming) -> None:  # fmt: skip
        for res in results:
            assert isinstance(res, dict)
            assert res["offset"] not in self.got, "decided twice"
            self.got[res["offset"]] = (res["model"], self.version)

    def dropped(self, b: Any, rows: np.ndarray, reason: str) -> None:
        raise AssertionError("nothing is dropped")

    def dead_letter(self, b: Any, row: int, error: BaseException, reason: str) -> None:
        raise AssertionError(f"nothing is dead-lettered: {error}")


def test_a_swap_offered_mid_batch_applies_after_it_and_decisions_name_their_model() -> None:
    models, outlet, inbox = Models(), Outlet(), RowQueue(1000)
    worker = EngineWorker(name="s", infer=models.old, processor=Processor(),  # type: ignore[arg-type]
                          outlet=outlet, inbox=inbox, max_batch=4, max_wait_ms=0)  # fmt: skip
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    assert inbox.put(prepared(batch(0, 4)), 4, 1.0)
    assert models.inside.wait(10)  # batch 0..3 is inside the old model now

    def applied() -> None:
        outlet.version = 2

    swap = Swap(Models.new, applied)
    try:
        assert worker.offer_swap(swap)
        assert not worker.offer_swap(Swap(Models.new, applied)), "one slot: the second waits"
    finally:
        models.gate.set()
    assert swap.done.wait(10)
    assert inbox.put(prepared(batch(4, 4)), 4, 1.0)
    inbox.put_nowait(STOP)
    thread.join(10)
    assert not thread.is_alive()
    # the batch in flight was decided by the old model and says so; the next by the new
    assert outlet.got == {**{o: (1, 1) for o in range(4)}, **{o: (2, 2) for o in range(4, 8)}}


def test_a_swap_reaches_an_idle_worker_and_can_be_withdrawn_before() -> None:
    outlet, inbox = Outlet(), RowQueue(1000)
    worker = EngineWorker(name="s", infer=Models.new, processor=Processor(),  # type: ignore[arg-type]
                          outlet=outlet, inbox=inbox, max_batch=4, max_wait_ms=0)  # fmt: skip
    first = Swap(Models.new, lambda: None)
    assert worker.offer_swap(first)
    assert worker.withdraw_swap() is first  # not running: still pending, taken back
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    swap = Swap(Models.new, lambda: None)
    assert worker.offer_swap(swap)
    assert swap.done.wait(5), "an idle engine thread takes a swap without any record"
    inbox.put_nowait(STOP)
    thread.join(10)
    assert worker.withdraw_swap() is None
