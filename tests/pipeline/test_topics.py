"""Output and dead-letter topics exist before the pipeline publishes (streamfer.pipeline.topics)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import MODELS, write_config

from streamfer.errors import ConfigError, StreamError
from streamfer.pipeline.app import Pipeline
from streamfer.pipeline.config import load_config, parse_config
from streamfer.pipeline.topics import MissingTopic, missing_topics, within_limits
from streamfer.streams.admin import create_topics, max_message_bytes, topic_partitions
from streamfer.streams.client import ProducerOptions

needs_fraud = pytest.mark.skipif(
    not (MODELS / "fraud.onnx").exists(), reason="models/fraud.onnx missing"
)


def stream(name: str, src: str, out: str, **kw: Any) -> dict[str, Any]:
    return {"name": name, "kind": "transaction", "input_topic": src, "output_topic": out,
            "model": "fraud", **kw}  # fmt: skip


def test_missing_topics_take_the_input_partition_count_and_wait_for_a_missing_input(
    tmp_path: Path,
) -> None:
    (tmp_path / "fraud.onnx").write_bytes(b"onnx")
    doc = {
        "models": {"fraud": {"path": "fraud.onnx"}},
        "streams": [stream("a", "in-a", "out-a"), stream("b", "in-b", "out-b", dlq_topic="dl")],
    }
    cfg = parse_config(doc, base_dir=tmp_path)
    existing = {"in-a": 6, "out-b": 2}  # in-b is missing: its topics wait for it (no guess)
    assert missing_topics(cfg, existing) == [
        MissingTopic("out-a", "output", "a", 6),
        MissingTopic("in-a.dlq", "dead-letter", "a", 6),
    ]
    assert missing_topics(cfg, {**existing, "in-b": 4}, streams=["b"]) == [
        MissingTopic("dl", "dead-letter", "b", 4),
    ]
    assert missing_topics(cfg, {**existing, "out-a": 1, "in-a.dlq": 1, "dl": 1}) == []


def fresh(stem: str) -> str:
    return f"t-{stem}-{uuid.uuid4().hex[:10]}"


@pytest.mark.integration
@needs_fraud
def test_start_creates_output_and_dlq_topics_like_the_input(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
) -> None:
    src, out = unique_topic(3), fresh("out")
    dlq = f"{out}.dead"
    assert topic_partitions(kafka_bootstrap, [out, dlq]) == {}
    path = write_config(
        tmp_path / "p.yaml", kafka_bootstrap, unique_group(),
        [stream("payments", src, out, dlq_topic=dlq)], ["fraud"],
    )  # fmt: skip
    with Pipeline(load_config(path)):
        assert topic_partitions(kafka_bootstrap, [out, dlq]) == {out: 3, dlq: 3}


@pytest.mark.integration
@needs_fraud
def test_start_without_create_topics_names_each_missing_topic(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
) -> None:
    src, out = unique_topic(2), fresh("out")
    path = write_config(
        tmp_path / "p.yaml", kafka_bootstrap, unique_group(),
        [stream("payments", src, out)], ["fraud"], kafka={"create_topics": False},
    )  # fmt: skip
    pipe = Pipeline(load_config(path))
    with pytest.raises(ConfigError) as info:
        pipe.start()
    text = str(info.value)
    assert "2 topic(s) missing and kafka.create_topics is false" in text
    assert f"stream payments: output topic {out!r} (2 partitions)" in text
    assert f"stream payments: dead-letter topic '{src}.dlq' (2 partitions)" in text
    assert "Note: create them (partitions as shown) or set kafka.create_topics: true" in text
    # the check itself never creates a topic, although this broker auto-creates on use
    assert topic_partitions(kafka_bootstrap, [out, f"{src}.dlq"]) == {}


@pytest.mark.integration
@needs_fraud
def test_a_refused_creation_fails_the_start_naming_the_topics(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
) -> None:
    src, out = unique_topic(1), fresh("out")
    path = write_config(
        tmp_path / "p.yaml", kafka_bootstrap, unique_group(),
        [stream("payments", src, out)], ["fraud"], kafka={"topic_replication_factor": 3},
    )  # fmt: skip
    with pytest.raises(StreamError) as info:  # the local broker is a single node
        Pipeline(load_config(path)).start()
    text = str(info.value)
    assert "could not create 2 missing topic(s) (INVALID_REPLICATION_FACTOR" in text
    assert f"stream payments: output topic {out!r} (1 partitions)" in text
    assert "replication factor 3) or let this client create them" in text


def test_producer_batches_stay_within_the_smallest_topic_limit() -> None:
    options = ProducerOptions()
    assert within_limits(options, [None, 16 * 1024, 1_000_000]).batch_size == 16 * 1024
    assert within_limits(options, [None, None]) is options
    assert within_limits(options, [options.batch_size * 4]) is options


@pytest.mark.integration
def test_topic_limits_come_from_the_cluster(
    kafka_bootstrap: str, unique_topic: Callable[..., str]
) -> None:
    plain = unique_topic(1)
    small = f"{plain}-small"
    create_topics(kafka_bootstrap, {small: 1}, config={"max.message.bytes": "20000"})
    got = max_message_bytes(kafka_bootstrap, [plain, small, f"{plain}-missing"])
    assert got[small] == 20_000
    assert got[plain] > 20_000  # the broker's own default
    assert f"{plain}-missing" not in got
