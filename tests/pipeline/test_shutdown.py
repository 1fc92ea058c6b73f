"""Stopping a stream without Kafka: stuck engines, dead engines behind a full inbox, lag series."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from streamfer.pipeline.app import Pipeline
from streamfer.pipeline.config import parse_config
from streamfer.pipeline.handoff import RowQueue, hand_over
from streamfer.pipeline.metrics import StreamRecorder
from streamfer.pipeline.readiness import LagReporter
from streamfer.pipeline.stats import StatsBook


def config(tmp_path: Path) -> Any:
    (tmp_path / "fraud.onnx").write_bytes(b"onnx")
    stream = {
        "name": "payments", "kind": "transaction", "input_topic": "tx",
        "output_topic": "out", "model": "fraud",
    }  # fmt: skip
    doc = {
        "models": {"fraud": {"path": "fraud.onnx"}},
        "streams": [stream],
        "metrics": {"enabled": False, "port": 0},
    }
    return parse_config(doc, base_dir=tmp_path)


class Runner:
    def __init__(self) -> None:
        self.deactivated = False

    def deactivate(self) -> None:
        self.deactivated = True


class Runtime:
    """What Pipeline.stop needs of a StreamRuntime."""

    def __init__(self, runner: Runner, engine_alive: bool) -> None:
        self.runner = runner
        self.engine_alive = engine_alive

    def request_stop(self, drain: bool = True) -> None:
        pass

    def join(self, timeout_s: float) -> None:
        pass


def test_a_runner_whose_engine_thread_still_runs_is_not_deactivated(tmp_path: Path) -> None:
    pipe = Pipeline(config(tmp_path), serve_http=False)
    stuck, idle = Runner(), Runner()
    pipe._runners = {"fraud": stuck, "other": idle}  # type: ignore[dict-item]
    pipe._streams = {
        "payments": Runtime(stuck, engine_alive=True),  # type: ignore[dict-item]
        "other": Runtime(idle, engine_alive=False),  # type: ignore[dict-item]
    }
    pipe.stop(drain=False)
    assert not stuck.deactivated  # inference may still run on it: keep its buffers
    assert idle.deactivated


def test_a_dead_engine_behind_a_full_queue_does_not_hang_the_consumer() -> None:
    inbox = RowQueue(1)
    assert inbox.put("queued", 1, 0)
    handed: list[bool] = []
    consumer = threading.Thread(
        target=lambda: handed.append(hand_over(inbox, "next", 1, engine_alive=lambda: False)),
        daemon=True,
    )
    consumer.start()
    consumer.join(10)
    assert not consumer.is_alive() and handed == [False]  # told, not blocked for good


def test_a_live_engine_gets_the_item_once_there_is_room() -> None:
    inbox = RowQueue(1)
    assert inbox.put("queued", 1, 0)
    threading.Timer(0.1, inbox.get, args=(0,)).start()
    assert hand_over(inbox, "next", 1, engine_alive=lambda: True, deadline=time.monotonic() + 10)
    assert inbox.get(0) == "next"


class Recorder(StreamRecorder):
    """Keeps the exported lag series and refuses to forget one never exported."""

    def __init__(self, book: StatsBook) -> None:
        super().__init__(book)
        self.lag: dict[int, int] = {}
        self.age: dict[int, float] = {}
        self.assigned = -1

    def set_lag(self, partition: int, n: int) -> None:
        self.lag[partition] = n

    def set_lag_seconds(self, partition: int, seconds: float) -> None:
        self.age[partition] = seconds

    def set_partitions_assigned(self, n: int) -> None:
        self.assigned = n

    def forget_partition(self, partition: int) -> None:
        assert partition in self.lag or partition in self.age
        self.lag.pop(partition, None)
        self.age.pop(partition, None)


def test_revoked_partitions_stop_exporting_lag() -> None:
    book = StatsBook("payments", "transaction")
    recorder = Recorder(book)
    lag = LagReporter(recorder)
    lag.update({("tx", 0): 5, ("tx", 1): 7}, {("tx", 0), ("tx", 1)})
    assert recorder.lag == {0: 5, 1: 7} and book.snapshot().lag == 12
    lag.update({("tx", 1): 2}, {("tx", 1)})
    assert recorder.lag == {1: 2} and book.snapshot().lag == 2


def test_lag_in_seconds_and_the_assignment_follow_the_partitions() -> None:
    book = StatsBook("payments", "transaction")
    recorder = Recorder(book)
    lag = LagReporter(recorder)
    lag.update({("tx", 0): 5}, {("tx", 0), ("tx", 1)}, {("tx", 0): 0.0, ("tx", 1): 2.5})
    assert recorder.age == {0: 0.0, 1: 2.5} and recorder.assigned == 2
    lag.update({}, set(), {})  # every partition revoked: idle
    assert recorder.lag == {} and recorder.age == {} and recorder.assigned == 0
