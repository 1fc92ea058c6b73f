"""Stopping a stream without Kafka: stuck engines, dead engines behind a full inbox, lag series."""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from pipeline.app import Pipeline
from pipeline.config import parse_config
from pipeline.stream import StreamRuntime


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


def bare_runtime(inbox_size: int) -> StreamRuntime:
    rt = StreamRuntime.__new__(StreamRuntime)
    rt.stream = SimpleNamespace(name="payments")  # type: ignore[assignment]
    rt.inbox = queue.Queue(maxsize=inbox_size)
    rt._lag_partitions = set()
    return rt


def test_a_dead_engine_behind_a_full_inbox_does_not_hang_the_consumer() -> None:
    rt = bare_runtime(1)
    dead = threading.Thread(target=lambda: None)
    dead.start()
    dead.join()
    rt._threads = [threading.current_thread(), dead]
    rt.inbox.put("queued")
    handed: list[bool] = []
    consumer = threading.Thread(target=lambda: handed.append(rt._put("next")), daemon=True)
    consumer.start()
    consumer.join(10)
    assert not consumer.is_alive() and handed == [False]  # told, not blocked for good


class Recorder:
    def __init__(self) -> None:
        self.lag: dict[int, int] = {}

    def set_lag(self, partition: int, n: int) -> None:
        self.lag[partition] = n

    def forget_partition(self, partition: int) -> None:
        del self.lag[partition]


class Source:
    def __init__(self, lags: dict[tuple[str, int], int]) -> None:
        self.lags = lags

    def lag(self) -> dict[tuple[str, int], int]:
        return self.lags

    @property
    def assigned(self) -> frozenset[tuple[str, int]]:
        return frozenset(self.lags)


def test_revoked_partitions_stop_exporting_lag() -> None:
    rt = bare_runtime(1)
    recorder = rt.recorder = Recorder()  # type: ignore[assignment]
    rt.book = SimpleNamespace(set_lag=lambda n: None)  # type: ignore[assignment]
    rt._update_lag(Source({("tx", 0): 5, ("tx", 1): 7}))  # type: ignore[arg-type]
    assert recorder.lag == {0: 5, 1: 7}
    rt._update_lag(Source({("tx", 1): 2}))  # type: ignore[arg-type]
    assert recorder.lag == {1: 2}


def test_engine_alive_reflects_the_engine_thread() -> None:
    rt = bare_runtime(1)
    release = threading.Event()
    engine = threading.Thread(target=release.wait, daemon=True)
    engine.start()
    rt._threads = [threading.current_thread(), engine]
    assert rt.engine_alive
    release.set()
    engine.join(10)
    assert not rt.engine_alive


class Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []

    def send(self, topic: str, value: bytes, key: Any, headers: Any, on_delivery: Any,
             partition: Any = None, only_if: Any = None) -> bool:  # fmt: skip
        if only_if is not None and not only_if():
            return False
        self.sent.append((topic, value))
        return True


def test_output_and_dead_letters_of_abandoned_records_are_not_sent(tmp_path: Path) -> None:
    from pipeline.postprocess import ModelIdentity, build_decision
    from pipeline.preprocess import Prepared
    from pipeline.worker import Work
    from streams.dlq import DeadLetterWriter
    from streams.records import Record

    rt = bare_runtime(1)
    rt.stream = SimpleNamespace(name="payments", output_topic="out")  # type: ignore[assignment]
    rt.recorder = SimpleNamespace(observe_stage=lambda *a: None)  # type: ignore[assignment]
    sink = rt._sink = Sink()  # type: ignore[assignment]
    rt._dlq = DeadLetterWriter(sink)  # type: ignore[arg-type]
    pending: set[int] = {1}
    rt._source = SimpleNamespace(is_pending=lambda r: r.offset in pending)  # type: ignore[assignment]
    stale, live = (Record("tx", 0, o, None, b"{}", (), 0, 0) for o in (0, 1))
    for record in (stale, live):
        work = Work(record, Prepared(None, None, None), 0)  # type: ignore[arg-type]
        work.stage_ns.update(queue=0, infer=0, postprocess=0)
        result = {"fraud_score": 0.1, "action": "approve"}
        model = ModelIdentity("fraud", "1", "onnxruntime", "fp32")
        decision = build_decision(
            stream="payments", kind="transaction", record=record, model=model,
            result=result, batch_size=1, latency_ms={},
        )  # fmt: skip
        rt.publish(work, decision)
        rt.dead_letter(record, RuntimeError("boom"), "engine_error")
    assert [topic for topic, _ in sink.sent] == ["out", "tx.dlq"]  # only the pending one
