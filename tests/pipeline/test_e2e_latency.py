"""End to end on the real broker: a stream on the ``low`` latency profile decides every
record and commits, and its clients get the profile's waits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import MODELS, committed, config_doc, produce, transactions, wait_for

from streamfer.pipeline import runtime as runtime_module
from streamfer.pipeline.app import Pipeline
from streamfer.pipeline.config import parse_config
from streamfer.pipeline.latency import PROFILES
from streamfer.streams.client import ClientFactory, ConsumerOptions, ProducerOptions

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (MODELS / "fraud.onnx").exists(), reason="models/fraud.onnx missing"),
]


class RecordingFactory:
    """The real client factory, remembering the options each client is made with."""

    def __init__(self, inner: ClientFactory) -> None:
        self.inner = inner
        self.consumers: list[ConsumerOptions] = []
        self.producers: list[ProducerOptions] = []

    def consumer(self, settings: Any, topics: Any, options: ConsumerOptions, *rest: Any) -> Any:
        self.consumers.append(options)
        return self.inner.consumer(settings, topics, options, *rest)

    def producer(self, settings: Any, options: ProducerOptions) -> Any:
        self.producers.append(options)
        return self.inner.producer(settings, options)

    def reader(self, settings: Any, options: Any) -> Any:
        return self.inner.reader(settings, options)


def test_a_low_latency_stream_decides_everything_and_commits(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
    client_name: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[RecordingFactory] = []
    real = runtime_module.client_factory

    def recording(name: Any) -> Any:
        made.append(RecordingFactory(real(name)))
        return made[-1]

    monkeypatch.setattr(runtime_module, "client_factory", recording)
    src, out, group = unique_topic(3), unique_topic(1), unique_group()
    n = produce(kafka_bootstrap, src, transactions(150, seed=3))
    stream = {"name": "payments", "kind": "transaction", "input_topic": src,
              "output_topic": out, "model": "fraud", "latency": {"profile": "low"}}  # fmt: skip
    doc = config_doc(kafka_bootstrap, group, [stream], {"fraud": MODELS / "fraud.onnx"},
                     kafka={"client": client_name})  # fmt: skip
    for section, key in (("consumer", "fetch_max_wait_ms"), ("producer", "linger_ms"),
                         ("runtime", "commit_interval_ms")):  # fmt: skip
        del doc[section][key]  # the profile's, not the test helper's pipeline-wide waits
    cfg = parse_config(doc, "t", tmp_path)
    low = PROFILES["low"]
    assert cfg.streams[0].knobs == low
    with Pipeline(cfg) as pipe:
        pipe.wait_ready(30)
        wait_for(lambda: pipe.stats()["payments"].resolved >= n, 60, "all records resolved")
        wait_for(lambda: sum(committed(kafka_bootstrap, group, src).values()) == n, 30,
                 "offsets committed past every record")  # fmt: skip
        snap = pipe.stats()["payments"]
    assert snap.consumed == n and snap.decided == n and snap.dropped == {}
    factory = made[0]
    assert [(o.fetch_max_wait_ms, o.fetch_min_bytes) for o in factory.consumers] == [
        (low.fetch_max_wait_ms, low.fetch_min_bytes)
    ]
    assert factory.producers and {o.linger_ms for o in factory.producers} == {low.linger_ms}
