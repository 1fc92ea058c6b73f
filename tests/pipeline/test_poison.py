"""No record can stop a stream: tombstones, empty values and odd headers, every kind.

Each stream of one running pipeline gets valid records mixed with records that
once stopped the pipeline for good (a tombstone without a key: null key and
null value), plus keyed tombstones, empty values, and non-UTF-8 header values.
Every record must end as a decision or a dead letter with a documented reason,
the pipeline must stay up, and the committed offsets must reach the end.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Producer
from e2e_helpers import (
    MODELS,
    committed,
    config_doc,
    decisions,
    pipelines_by_stream,
    read_all,
    wait_for,
    wait_resolved,
)
from tiny_models import camera_model, sensor_model

from streamfer.models.generators.scenes import SceneGenerator
from streamfer.models.generators.sensor import SensorGenerator
from streamfer.models.generators.transactions import TransactionGenerator
from streamfer.pipeline.app import Pipeline
from streamfer.pipeline.config import parse_config
from streamfer.streams.admin import create_topics
from streamfer.streams.codecs import REASONS, encode_camera, encode_sensor, encode_transaction
from streamfer.streams.dlq import (
    HEADERS_DROPPED,
    KEY_TRUNCATED,
    SOURCE_OFFSET,
    VALUE_NULL,
    VALUE_TRUNCATED,
)

pytestmark = pytest.mark.integration

Message = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]
ODD_HEADERS = [("capture-ts-ns", b"\xff\xfe"), ("\u00e9t\u00e9", b"\x00\x01")]


def poison() -> list[Message]:
    """What each stream gets besides its valid records: 4 bad records."""
    return [
        (None, None, []),  # a tombstone without a key
        (b"key-1", None, []),  # a keyed tombstone
        (None, b"", []),  # an empty value
        (b"key-2", None, ODD_HEADERS),  # a tombstone with binary header values
    ]


def produce_raw(bootstrap: str, topic: str, messages: list[Message]) -> None:
    """librdkafka writes null keys and null values together (kafka-python refuses to)."""
    producer = Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 5, "message.max.bytes": 4_000_000}
    )
    for key, value, headers in messages:
        producer.produce(topic, value=value, key=key, headers=headers or None)
    assert producer.flush(30) == 0


def test_tombstones_and_empty_values_go_to_the_dlq_and_every_stream_goes_on(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
    client_name: str,
) -> None:
    topics = {kind: (unique_topic(2), unique_topic(1)) for kind in ("tx", "imu", "cam")}
    streams = [
        {"name": "tx", "kind": "transaction", "model": "fraud"},
        {"name": "imu", "kind": "sensor", "model": "sensor"},
        {"name": "cam", "kind": "camera", "model": "camera", "mode": "replay"},
    ]
    for s in streams:
        s.update(input_topic=topics[s["name"]][0], output_topic=topics[s["name"]][1])
        s["batching"] = {"max_batch": 4, "max_wait_ms": 5}
    models = {
        "fraud": Path(__file__).resolve().parents[2] / "streamfer" / "models" / "fraud.onnx",
        "sensor": sensor_model(tmp_path / "s.onnx"),
        "camera": camera_model(tmp_path / "c.onnx"),
    }
    pipes = pipelines_by_stream(kafka_bootstrap, streams, models, client_name, unique_group,
                                tmp_path)  # fmt: skip

    txs = TransactionGenerator(seed=3)
    sensors = SensorGenerator(seed=3)
    scenes = SceneGenerator(seed=3)
    valid: dict[str, list[Message]] = {"tx": [], "imu": [], "cam": []}
    for i in range(6):
        tx, _ = txs.next()
        valid["tx"].append((tx["card_id"].encode(), encode_transaction(tx), []))
        vehicle, window, _ = sensors.next()
        value, headers = encode_sensor(window)
        valid["imu"].append((vehicle.encode(), value, headers))
        value, headers = encode_camera(
            scenes.render(i).image, capture_ts_ns=time.time_ns(), frame_seq=i
        )
        valid["cam"].append((b"cam-0", value, headers))

    with contextlib.ExitStack() as running:
        for pipe in {id(p): p for p, _ in pipes.values()}.values():
            running.enter_context(pipe)
            pipe.wait_ready(30)
        for name, messages in valid.items():
            # the poison first: records behind it on its partition must still be decided
            produce_raw(kafka_bootstrap, topics[name][0], poison() + messages)
        for name, (src, out) in topics.items():
            n = len(valid[name]) + len(poison())
            pipe, group = pipes[name]
            wait_for(lambda p=pipe, name=name, n=n: p.stats()[name].resolved >= n, 60,
                     f"{name} done")  # fmt: skip
            got = decisions(read_all(kafka_bootstrap, out, lambda m, k=name: len(m) >= 6))
            assert len(got) == len(valid[name])
            letters = read_all(kafka_bootstrap, f"{src}.dlq", lambda m: len(m) >= 4)
            assert len(letters) == 4
            reasons = [dict(m.headers)["error-reason"].decode() for m in letters]
            assert set(reasons) <= REASONS, reasons
            assert sorted(reasons).count("null_value") == 3
            nulls = [m for m in letters if dict(m.headers).get(VALUE_NULL) == b"true"]
            assert len(nulls) == 3 and all(m.value == b"" for m in nulls)
            snap = pipe.stats()[name]
            assert sum(snap.dead_lettered.values()) == 4
            wait_for(
                lambda g=group, src=src, n=n: sum(committed(kafka_bootstrap, g, src).values())
                == n,
                30,
                f"{name} offsets committed",
            )
        for pipe, _ in pipes.values():
            assert pipe.failure is None
            assert pipe.ready


def test_dead_letters_are_cut_to_fit_a_small_dead_letter_topic(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
    client_name: str,
) -> None:
    src, out = unique_topic(1), unique_topic(1)
    dlq = f"{src}.dlq"
    limit = 16 * 1024  # the topic refuses any record batch larger than this
    create_topics(kafka_bootstrap, {dlq: 1}, config={"max.message.bytes": str(limit)})
    group = unique_group()
    streams = [{"name": "tx", "kind": "transaction", "model": "fraud", "input_topic": src,
                "output_topic": out, "batching": {"max_batch": 32, "max_wait_ms": 5}}]  # fmt: skip
    doc = config_doc(
        kafka_bootstrap, group, streams, {"fraud": MODELS / "fraud.onnx"},
        kafka={"client": client_name},
    )  # fmt: skip
    big: list[Message] = [
        (b"card-1", b"{" * 1_000_000, []),  # too_large: its value is cut
        (b"k" * 100_000, b"{", []),  # a key larger than the topic allows
        (None, None, [(f"h{i}", b"\xfe" * 10_000) for i in range(3)]),  # headers too
    ]
    small: list[Message] = [(b"card-%d" % i, b"{bad", []) for i in range(1500)]
    txs = TransactionGenerator(seed=4)
    valid: list[Message] = []
    for _ in range(50):
        tx, _ = txs.next()
        valid.append((tx["card_id"].encode(), encode_transaction(tx), []))
    messages = big + small + valid
    with Pipeline(parse_config(doc, "t", tmp_path)) as pipe:
        pipe.wait_ready(30)
        produce_raw(kafka_bootstrap, src, messages)
        wait_resolved(pipe, "tx", len(messages))
        assert pipe.ready
        snap = pipe.stats()["tx"]
        assert snap.decided == len(valid) and snap.dropped == {}
        assert sum(snap.dead_lettered.values()) == len(big) + len(small)
    letters = read_all(kafka_bootstrap, dlq, lambda m: len(m) >= len(big) + len(small))
    assert sorted(int(dict(m.headers)[SOURCE_OFFSET]) for m in letters) == list(range(1503))
    first = {int(dict(m.headers)[SOURCE_OFFSET]): m for m in letters}
    cut, keyed, headed = (dict(first[i].headers) for i in range(3))
    assert cut[VALUE_TRUNCATED] == b"1000000" and cut["error-reason"] == b"too_large"
    assert first[0].value == b"{" * len(first[0].value) and len(first[0].value) < limit
    assert keyed[KEY_TRUNCATED] == b"100000" and len(first[1].key) < limit
    assert headed[HEADERS_DROPPED] == b"3" and headed[VALUE_NULL] == b"true"
    assert committed(kafka_bootstrap, group, src) == {0: len(messages)}
