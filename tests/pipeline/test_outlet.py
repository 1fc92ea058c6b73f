"""The outlet: every record ends published, dropped or dead-lettered, and resolves only then."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

from streamfer.errors import CodecError, EngineError, ProcessorError
from streamfer.pipeline.decisions import DecisionEncoder, ModelIdentity, SegmentTiming
from streamfer.pipeline.handoff import STOP, RowQueue
from streamfer.pipeline.metrics import Metrics
from streamfer.pipeline.outlet import LogLimiter, Outlet
from streamfer.pipeline.processors.base import Output, Prepared, Reject, Result
from streamfer.pipeline.worker import EngineWorker
from streamfer.streams.acks import Resolver
from streamfer.streams.client import Outgoing, ProducerOptions
from streamfer.streams.codecs import validate_decision
from streamfer.streams.dlq import DeadLetterWriter
from streamfer.streams.records import RecordBatch
from streamfer.streams.tracker import OffsetTracker

TIMING = SegmentTiming(queue_ms=1.0, preprocess_ms=0.5, infer_ms=2.0, postprocess_ms=0.1)


class Sink:
    """Queues what the outlet sends, as the client would; ``ack``/``fail`` deliver it."""

    options = ProducerOptions()

    def __init__(self) -> None:
        self.queued: list[tuple[str, bytes, bytes | None, dict, Callable[..., None]]] = []

    def send(self, topic: str, value: bytes, key: bytes | None = None, headers: Any = (),
             on_delivery: Any = None, partition: Any = None,
             only_if: Any = None) -> bool:  # fmt: skip
        assert isinstance(value, bytes) and on_delivery is not None
        if only_if is not None and not only_if():
            return False
        self.queued.append((topic, value, key, dict(headers), on_delivery))
        return True

    def send_many(self, out: Outgoing, only_if: Any = None) -> bool:
        headers = out.headers
        assert len(out.values) == len(out.keys)
        assert headers is None or (len(headers) == len(out.values) and any(headers))
        if only_if is not None and not only_if():
            return False
        for i, (value, key) in enumerate(zip(out.values, out.keys, strict=True)):
            assert value is not None
            self.send(out.topic, value, key, headers[i] if headers else (), out.on_delivery)
        return True

    def deliver(self, error: object | None = None, topic: str | None = None) -> None:
        for queued in list(self.queued):
            if topic is None or queued[0] == topic:
                self.queued.remove(queued)
                queued[4](error, None)

    def sent(self, topic: str) -> list[bytes]:
        return [v for t, v, *_ in self.queued if t == topic]


class Harness:
    def __init__(
        self, kind: str = "transaction", on_failure: str = "stop", limiter: LogLimiter | None = None
    ) -> None:
        self.tracker = OffsetTracker()
        self.sink = Sink()
        self.fatal: list[BaseException] = []
        self.metrics = Metrics(process_collectors=False)
        recorder = self.metrics.stream("s", model="m", engine="onnxruntime", kind=kind)
        self.book = recorder.book
        self.outlet = Outlet(
            stream="s",
            output_topic="out",
            sink=self.sink,  # type: ignore[arg-type]
            dead_letters=DeadLetterWriter(self.sink),  # type: ignore[arg-type]
            resolver=Resolver(self.tracker, recorder),
            encoder=DecisionEncoder("s", kind, ModelIdentity("m", "3", "onnxruntime", "fp32")),
            recorder=recorder,
            on_fatal=self.fatal.append,
            on_dead_letter_failure=on_failure,  # type: ignore[arg-type]
            log_limiter=limiter,
        )

    def batch(self, n: int, first: int = 10) -> RecordBatch:
        b = RecordBatch("tx", 2, list(range(first, first + n)), [b"card-%d" % i for i in range(n)],
                        [b"{}"] * n, [None] * n, [1_700_000_000_000] * n, 0)  # fmt: skip
        b.span = self.tracker.add(b.tp, b.offsets)
        return b


def prepared(b: RecordBatch) -> Prepared:
    return Prepared(b, np.arange(len(b)), {})


def score(x: float) -> dict[str, Any]:
    return {"fraud_score": x, "action": "approve"}


def test_decisions_resolve_only_when_every_one_of_the_segment_is_acknowledged() -> None:
    h = Harness()
    b = h.batch(3)
    h.outlet.publish(prepared(b), np.arange(3), [score(0.1), score(0.2), score(0.3)], 3, TIMING)
    docs = [json.loads(v) for v in h.sink.sent("out")]
    for doc in docs:
        validate_decision(doc)
    assert [d["source"]["offset"] for d in docs] == [10, 11, 12]
    assert docs[1]["source"] == {"topic": "tx", "partition": 2, "offset": 11, "key": "card-1"}
    assert docs[0]["latency_ms"]["infer"] == 2.0 and docs[0]["latency_ms"]["e2e"] is None
    assert h.tracker.in_flight() == 3
    first = h.sink.queued.pop(0)
    first[4](None, None)
    assert h.tracker.in_flight() == 3  # one of three: nothing resolves yet
    h.sink.deliver()
    assert h.tracker.in_flight() == 0 and h.tracker.positions() == {("tx", 2): 13}
    assert h.book.snapshot().decided == 3


def test_a_failed_decision_stops_the_stream_and_leaves_the_segment_unresolved() -> None:
    h = Harness()
    b = h.batch(2)
    h.outlet.publish(prepared(b), np.arange(2), [score(0.1), score(0.2)], 2, TIMING)
    h.sink.deliver(error="Broker: Message size too large")
    assert len(h.fatal) == 1 and "tx[2]@10" in str(h.fatal[0])
    assert "too large" in str(h.fatal[0])
    assert h.tracker.in_flight() == 2 and h.tracker.positions() == {}


def test_a_result_that_is_not_json_or_not_finite_is_dead_lettered() -> None:
    h = Harness()
    b = h.batch(3)
    results = [score(float("nan")), {"when": object()}, score(0.5)]
    h.outlet.publish(prepared(b), np.arange(3), results, 3, TIMING)
    assert len(h.sink.sent("out")) == 1
    letters = [(hd["source-offset"], hd["error-reason"]) for t, _, _, hd, _ in h.sink.queued
               if t == "tx.dlq"]  # fmt: skip
    assert letters == [(b"10", b"bad_decision"), (b"11", b"bad_decision")]
    h.sink.deliver()
    assert h.tracker.positions() == {("tx", 2): 13}
    assert h.book.snapshot().dead_lettered == {"bad_decision": 2}


def test_output_and_dead_letters_of_abandoned_records_are_not_sent() -> None:
    h = Harness()
    b = h.batch(2)
    h.tracker.remove([b.tp])  # an abort or a revocation abandoned the poll
    h.outlet.publish(prepared(b), np.arange(1), [score(0.1)], 1, TIMING)
    h.outlet.dead_letter(b, 1, CodecError("bad", "bad_json"), "bad_json")
    assert h.sink.queued == []


def test_rejects_and_drops_resolve_with_their_reasons() -> None:
    h = Harness()
    b = h.batch(4)
    p = Prepared(b, np.array([0, 3]), {}, rejects=[
        Reject(1, "bad_json", CodecError("tx[2]@11 | invalid JSON", "bad_json")),
        Reject(2, "null_value", CodecError("tx[2]@12 | null", "null_value"))])  # fmt: skip
    h.outlet.rejects(p)
    h.outlet.dropped(b, np.array([0]), "stale")
    h.outlet.publish(p, np.array([3]), [score(0.9)], 1, TIMING)
    h.sink.deliver()
    snap = h.book.snapshot()
    assert snap.dead_lettered == {"bad_json": 1, "null_value": 1}
    assert snap.dropped == {"stale": 1} and snap.decided == 1
    assert h.tracker.positions() == {("tx", 2): 14}


@pytest.mark.parametrize("policy", ["stop", "skip"])
def test_a_dead_letter_that_cannot_be_published_stops_or_is_counted(policy: str) -> None:
    h = Harness(on_failure=policy)
    b = h.batch(1)
    h.outlet.dead_letter(b, 0, CodecError("tx[2]@10 | bad", "bad_json"), "bad_json")
    h.sink.deliver(error="Broker: Topic authorization failed")
    if policy == "stop":
        assert len(h.fatal) == 1 and "tx[2]@10" in str(h.fatal[0])
        assert "dead_letters.on_failure" in str(h.fatal[0])
        assert h.tracker.in_flight() == 1  # never committed past it
    else:
        assert h.fatal == [] and h.book.snapshot().dropped == {"dead_letter_failed": 1}
        assert h.tracker.positions() == {("tx", 2): 11}


def test_camera_decisions_carry_the_frame_block_and_validate() -> None:
    h = Harness(kind="camera")
    b = h.batch(1)
    det = {"detections": [{"label": "car", "score": 0.8, "box": [1.0, 2.0, 3.0, 4.0]}]}
    frame = {"seq": 7, "capture_ts_ns": 5, "width": 640, "height": 360}
    h.outlet.publish(prepared(b), np.arange(1), [Output(det, {"frame": frame})], 1, TIMING)
    (doc,) = [json.loads(v) for v in h.sink.sent("out")]
    validate_decision(doc)
    assert doc["frame"] == frame and doc["kind"] == "camera"


def test_output_key_and_headers_reach_kafka_and_the_source_key_stays_the_inputs() -> None:
    h = Harness()
    b = h.batch(3)
    results = [
        score(0.1),  # plain: the input's key, no headers
        Output(score(0.95), key=b"alerts", headers=[("severity", b"high")]),
        Output(score(0.2), extra={"note": "kept"}),
    ]
    h.outlet.publish(prepared(b), np.arange(3), results, 3, TIMING)
    sent = [(key, headers, json.loads(v)) for t, v, key, headers, _ in h.sink.queued if t == "out"]
    assert [(key, headers) for key, headers, _ in sent] == [
        (b"card-0", {}),
        (b"alerts", {"severity": b"high"}),
        (b"card-2", {}),
    ]
    assert [doc["source"]["key"] for _, _, doc in sent] == ["card-0", "card-1", "card-2"]
    assert sent[2][2]["note"] == "kept"
    for _, _, doc in sent:
        validate_decision(doc)
    h.sink.deliver()
    assert h.tracker.positions() == {("tx", 2): 13}


def test_unpublishable_outputs_are_dead_lettered_and_the_rest_published() -> None:
    h = Harness()
    b = h.batch(6)
    results: list[Any] = [
        Output(score(0.1), key="text-not-bytes"),  # type: ignore[arg-type]
        Output(score(0.1), headers=[("n", 1)]),  # type: ignore[list-item]
        Output(score(0.1), extra={"result": "twice"}),  # the decision's own field
        Output(score(0.1), extra={"x": float("inf")}),
        0.7,  # not a mapping
        score(0.3),
    ]
    h.outlet.publish(prepared(b), np.arange(6), results, 6, TIMING)
    assert [json.loads(v)["source"]["offset"] for v in h.sink.sent("out")] == [15]
    letters = {hd["source-offset"]: (hd["error-reason"], hd["error-message"])
               for t, _, _, hd, _ in h.sink.queued if t == "tx.dlq"}  # fmt: skip
    assert {o: r for o, (r, _) in letters.items()} == {
        b"%d" % o: b"bad_decision" for o in range(10, 15)
    }
    assert b"Output.key is a str" in letters[b"10"][1]
    assert b"not a (str, bytes) pair" in letters[b"11"][1]
    assert b"['result']" in letters[b"12"][1]
    assert b"NaN or infinity" in letters[b"13"][1]
    assert b"result is a float" in letters[b"14"][1]
    h.sink.deliver()
    assert h.tracker.positions() == {("tx", 2): 16}


def test_a_processor_error_keeps_the_class_it_caught_in_the_dead_letter() -> None:
    h = Harness()
    b = h.batch(2)
    err = ProcessorError("Mine.results raised KeyError: 'x'", error_class="KeyError")
    h.outlet.publish(prepared(b), np.arange(2), [err, score(0.2)], 2, TIMING)
    (letter,) = [hd for t, _, _, hd, _ in h.sink.queued if t == "tx.dlq"]
    assert letter["error-class"] == b"KeyError"
    assert letter["error-reason"] == b"processor_error"
    assert letter["error-message"] == b"tx[2]@10 | Mine.results raised KeyError: 'x'"


def test_a_reason_outside_the_documented_set_is_written_as_processor_error() -> None:
    h = Harness()
    b = h.batch(1)
    h.outlet.dead_letter(b, 0, CodecError("tx[2]@10 | odd input", "plugin_code"), "plugin_code")
    ((_, _, _, headers, _),) = h.sink.queued
    assert headers["error-reason"] == b"processor_error"
    message = headers["error-message"].decode()
    assert message.startswith("tx[2]@10 | odd input (reason 'plugin_code'). Note: ")
    h.sink.deliver()
    assert h.book.snapshot().dead_lettered == {"processor_error": 1}


def test_bad_records_log_one_warning_each_within_a_rate_and_tracebacks_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    h = Harness(limiter=LogLimiter(per_s=3, clock=lambda: now[0]))
    b = h.batch(8)
    try:
        raise ValueError("inner")
    except ValueError as exc:
        cause = exc
    error = CodecError("tx[2]@10 | bad", "bad_json")
    error.__cause__ = cause
    with caplog.at_level(logging.DEBUG, logger="streamfer.pipeline.outlet"):
        for row in range(5):
            h.outlet.dead_letter(b, row, error, "bad_json")
        now[0] = 1.5
        h.outlet.dead_letter(b, 5, error, "bad_json")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "s | dead letter (bad_json): tx[2]@10 | bad",
        "s | dead letter (bad_json): tx[2]@10 | bad",
        "s | dead letter (bad_json): tx[2]@10 | bad",
        "2 more bad-record lines held back in the last second",
        "s | dead letter (bad_json): tx[2]@10 | bad",
    ]
    assert all(r.exc_info is None for r in warnings)  # no traceback at WARNING
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(debug) == 6 and all(r.exc_info for r in debug)


def test_each_decision_carries_its_own_records_broker_latency() -> None:
    """broker = the record's own Kafka timestamp -> the poll's consumption, per record."""
    h = Harness()
    b = h.batch(4)
    wall = b.consumed_wall_ms
    ages = [5, 50, 500, 5000]
    b.timestamps_ms = [wall - age for age in ages]
    bad = CodecError("tx[2]@11 | cannot decide", "engine_error")
    h.outlet.publish(prepared(b), np.array([3, 1, 0, 2]), [score(0.1), bad, score(0.3),
                     score(0.4)], 4, TIMING)  # fmt: skip
    docs = {d["source"]["offset"]: d for d in map(json.loads, h.sink.sent("out"))}
    assert {o: d["latency_ms"]["broker"] for o, d in docs.items()} == {13: 5000, 10: 5, 12: 500}
    h.sink.deliver()  # acknowledged together: e2e = own broker age + the same time since
    e2e = sorted(h.book.snapshot().e2e_ms)
    assert [x - e2e[0] for x in e2e] == pytest.approx([0, 495, 4995])


def test_the_broker_stage_is_observed_once_per_record_that_leaves() -> None:
    """The broker latency is read in the outlet: each record published (or failed in the
    engine), dropped or absorbed is observed once, with its own age."""
    h = Harness()
    b = h.batch(6)
    b.timestamps_ms = [b.consumed_wall_ms - 40] * 6
    h.outlet.publish(prepared(b), np.array([0, 1, 2]), [score(0.1)] * 3, 3, TIMING)
    h.outlet.dropped(b, np.array([3]), "stale")
    h.outlet.absorbed(b, np.array([4, 5]))
    h.outlet.dropped(b, np.array([3]), "stale")  # resolved already: not observed again
    labels = {"stream": "s", "model": "m", "engine": "onnxruntime", "stage": "broker"}
    get = h.metrics.registry.get_sample_value
    assert get("streamfer_stage_latency_seconds_count", labels) == 6
    assert get("streamfer_stage_latency_seconds_sum", labels) == pytest.approx(6 * 0.04)
    h.sink.deliver()
    assert h.tracker.positions() == {("tx", 2): 16} and h.book.snapshot().absorbed == 2


def test_an_engine_failure_reaches_the_dead_letter_topic_as_engine_error() -> None:
    """The engine worker and the real outlet together: the reason the dead letter carries
    is what the code gives it, not what a test double assumes."""
    class Identity:
        def prepare(self, b: RecordBatch) -> Prepared:
            raise AssertionError("the worker never prepares")

        def results(self, outputs: dict[str, np.ndarray], metas: Sequence[Any]) -> list[Result]:
            return [score(float(x)) for x in outputs["y"][:, 0]]

    def infer(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if (feeds["x"] == 12).any():
            raise EngineError("m | cannot run record 12")
        return {"y": feeds["x"] / 100}

    h = Harness()
    b = h.batch(4)
    inbox = RowQueue(100)
    worker = EngineWorker(name="s", infer=infer, processor=Identity(), outlet=h.outlet,
                          inbox=inbox, max_batch=4, max_wait_ms=1)  # fmt: skip
    feed = np.asarray(b.offsets, dtype=np.float32)[:, None]
    assert inbox.put(Prepared(b, np.arange(4), {"x": feed}), 4, 1.0)
    inbox.put_nowait(STOP)
    thread = threading.Thread(target=worker.run)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    (letter,) = [(k, hd) for t, _, k, hd, _ in h.sink.queued if t == "tx.dlq"]
    assert letter[1]["error-reason"] == b"engine_error", letter
    assert letter[1]["source-offset"] == b"12"
    assert b"engine failed on this record alone" in letter[1]["error-message"]
    assert sorted(json.loads(v)["source"]["offset"] for v in h.sink.sent("out")) == [10, 11, 13]
    h.sink.deliver()
    assert h.book.snapshot().dead_lettered == {"engine_error": 1}
    assert h.tracker.positions() == {("tx", 2): 14}
