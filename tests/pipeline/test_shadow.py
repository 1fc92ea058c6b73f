"""The shadow scorer without Kafka: pairing by source coordinates, metrics, isolation."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_engine import batch, prepared

from streamfer.errors import ConfigError
from streamfer.pipeline.batcher import Chunk, Segment
from streamfer.pipeline.config import parse_config
from streamfer.pipeline.decisions import DecisionEncoder, ModelIdentity
from streamfer.pipeline.metrics import Metrics
from streamfer.pipeline.processors.base import Prepared, Result
from streamfer.pipeline.shadow import ShadowScorer
from streamfer.streams.client import Outgoing


class Processor:
    """``{"score": y, "action": "decline" if y >= 0.5 else "approve"}``."""

    def results(self, outputs: Mapping[str, np.ndarray], metas: Sequence[Any]) -> list[Result]:
        return [
            {"score": float(y), "action": "decline" if y >= 0.5 else "approve"}
            for y in outputs["y"][:, 0]
        ]


class Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None]] = []
        self.lock = threading.Lock()

    def start(self) -> Sink:
        return self

    def close(self, timeout_s: float = 10.0) -> None:
        pass

    def send_many(self, out: Outgoing) -> bool:
        with self.lock:
            self.sent += [(out.topic, v, k) for v, k in zip(out.values, out.keys, strict=True)]
        return True


def scorer(infer: Any, sink: Sink, metrics: Metrics, **kw: Any) -> ShadowScorer:
    ident = ModelIdentity("candidate", "7", "onnxruntime", "fp32")
    options: dict[str, Any] = {"sample": 1.0, "max_backlog": 8, **kw}
    return ShadowScorer(
        stream="s", infer=infer, processor=Processor(),  # type: ignore[arg-type]
        encoder=DecisionEncoder("s", "transaction", ident), sink=sink,  # type: ignore[arg-type]
        topic="side", recorder=metrics.shadow("s", "candidate"), **options,
    )  # fmt: skip


def segments(*parts: Prepared) -> tuple[list[Segment[Prepared]], dict[str, np.ndarray]]:
    segs = [Segment(Chunk(p, len(p)), np.arange(len(p))) for p in parts]
    feeds = {"x": np.concatenate([p.feeds["x"] for p in parts])}
    return segs, feeds


def primary(feeds: dict[str, np.ndarray]) -> list[Result]:
    return Processor().results({"y": feeds["x"] / 100}, [None] * len(feeds["x"]))


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def wait(cond: Any) -> None:
    end = time.monotonic() + 10
    while not cond():
        assert time.monotonic() < end
        time.sleep(0.01)  # poll interval


def test_shadow_decisions_carry_the_primarys_source_coordinates_and_are_compared() -> None:
    metrics, sink = Metrics(process_collectors=False), Sink()
    # the shadow scores offset/100 + 0.2: rows 30..49 of 0..59 cross 0.5 where the primary not
    shadow = scorer(lambda f: {"y": f["x"] / 100 + 0.2}, sink, metrics)
    shadow.start()
    try:
        segs, feeds = segments(prepared(batch(0, 30, partition=0)),
                               prepared(batch(30, 30, partition=2)))  # fmt: skip
        shadow.offer(segs, feeds, [None] * 60, primary(feeds))
        wait(lambda: len(sink.sent) == 60)
    finally:
        shadow.close()
    docs = [json.loads(v) for _, v, _ in sink.sent]
    assert {t for t, _, _ in sink.sent} == {"side"}
    coords = [(d["source"]["partition"], d["source"]["offset"]) for d in docs]
    assert coords == [(0, o) for o in range(30)] + [(2, o) for o in range(30, 60)]
    assert {d["model"]["name"] for d in docs} == {"candidate"}
    assert all(d["result"]["score"] == np.float32(d["source"]["offset"] / 100 + 0.2)
               or abs(d["result"]["score"] - (d["source"]["offset"] / 100 + 0.2)) < 1e-6
               for d in docs)  # fmt: skip
    assert value(metrics, "streamfer_shadow_decisions_total", stream="s", model="candidate") == 60
    assert value(metrics, "streamfer_shadow_disagreements_total", stream="s",
                 field="action") == 20  # fmt: skip
    assert value(metrics, "streamfer_shadow_score_delta_count", stream="s", field="score") == 60
    assert value(metrics, "streamfer_shadow_latency_seconds_count", stream="s",
                 model="candidate") == 1  # fmt: skip


def test_a_failing_shadow_is_counted_and_the_next_batch_still_scored() -> None:
    metrics, sink = Metrics(process_collectors=False), Sink()
    calls = {"n": 0}

    def flaky(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("device lost")
        return {"y": feeds["x"] / 100}

    shadow = scorer(flaky, sink, metrics)
    shadow.start()
    try:
        for first in (0, 10):
            segs, feeds = segments(prepared(batch(first, 10)))
            shadow.offer(segs, feeds, [None] * 10, primary(feeds))
        wait(lambda: len(sink.sent) == 10)
    finally:
        shadow.close()
    assert value(metrics, "streamfer_shadow_shed_total", stream="s", reason="failed") == 10
    assert [json.loads(v)["source"]["offset"] for _, v, _ in sink.sent] == list(range(10, 20))


def test_a_shadow_that_falls_behind_sheds_batches_and_never_blocks_the_caller() -> None:
    metrics, sink = Metrics(process_collectors=False), Sink()
    gate = threading.Event()

    def stuck(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert gate.wait(10)
        return {"y": feeds["x"] / 100}

    shadow = scorer(stuck, sink, metrics, max_backlog=2)
    shadow.start()
    try:
        start = time.monotonic()
        for first in range(0, 100, 10):
            segs, feeds = segments(prepared(batch(first, 10)))
            shadow.offer(segs, feeds, [None] * 10, primary(feeds))
        assert time.monotonic() - start < 1.0, "offer waited for the shadow"
        shed = value(metrics, "streamfer_shadow_shed_total", stream="s", reason="backlog")
        assert 70 <= shed <= 80  # one batch in the model, two queued (one maybe not yet taken)
    finally:
        gate.set()
        shadow.close()


def test_sampling_scores_about_that_share_of_the_rows() -> None:
    metrics, sink = Metrics(process_collectors=False), Sink()
    shadow = scorer(lambda f: {"y": f["x"] / 100}, sink, metrics, sample=0.25, seed=3,
                    max_backlog=32)
    shadow.start()
    try:
        for first in range(0, 2000, 100):
            segs, feeds = segments(prepared(batch(first, 100)))
            shadow.offer(segs, feeds, [None] * 100, primary(feeds))
        wait(lambda: value(metrics, "streamfer_shadow_latency_seconds_count", stream="s",
                           model="candidate") == 20)  # fmt: skip
    finally:
        shadow.close()
    assert 400 <= len(sink.sent) <= 600  # 2000 rows, 25 %: 500 +- 4.5 standard deviations


def test_a_shadow_must_name_another_known_model(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")

    def doc(shadow_model: str) -> dict[str, Any]:
        return {
            "models": {"fraud": {"path": str(model)}},
            "streams": [{"name": "p", "kind": "transaction", "model": "fraud",
                         "input_topic": "tx", "output_topic": "out",
                         "shadow": {"model": shadow_model, "output_topic": "side"}}],
        }  # fmt: skip

    with pytest.raises(ConfigError, match=r"streams\[0\]\.shadow\.model \| unknown model"):
        parse_config(doc("nope"))
    with pytest.raises(ConfigError, match=r"streams\[0\]\.shadow\.model \| the stream's own"):
        parse_config(doc("fraud"))
