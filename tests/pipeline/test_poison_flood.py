"""A flood of poison: over 10,000 malformed records of each kind among valid ones, one pipeline.

Every kind of bad input the codecs know, generated, plus tombstones with and
without keys written by Kafka's own console producer (``kafka-tools``), mixed
with valid records on two partitions per stream. The pipeline must stay up and
ready; every valid record gets a decision; every bad one is in the dead-letter
topic with the reason its kind of damage calls for (a documented one); the
lag returns to 0 and the committed offsets reach the end. On both clients.
"""

from __future__ import annotations

import contextlib
import json
import random
import struct
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from e2e_helpers import MODELS, committed, pipelines_by_stream, wait_for
from tiny_models import camera_model, sensor_model

from streamfer.models.generators.transactions import TransactionGenerator
from streamfer.streams.admin import create_topics
from streamfer.streams.codecs import encode_camera, encode_sensor, encode_transaction
from streamfer.streams.dlq import ERROR_REASON, SOURCE_OFFSET, SOURCE_PARTITION, VALUE_NULL
from streamfer.streams.local.broker import LocalBroker
from streamfer.streams.reasons import DEAD_LETTER_REASONS

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BAD = 10_200  # malformed records per kind
VALID = {"tx": 400, "imu": 200, "cam": 100}
TOMBSTONES = 10  # per kind and per flavour (with a key, without) from the console producer
DECIDED = "decided"

Expected = tuple[bytes | None, bytes | None, list[tuple[str, bytes]], str]  # ..., outcome


def transactions(rng: random.Random) -> tuple[list[Expected], list[Expected]]:
    gen = TransactionGenerator(seed=31)
    docs = [gen.next()[0] for _ in range(VALID["tx"])]
    valid = [(d["card_id"].encode(), encode_transaction(d), [], DECIDED) for d in docs]

    def changed(**fields: Any) -> bytes:
        return json.dumps({**rng.choice(docs), **fields}).encode()

    def without() -> bytes:
        doc = dict(rng.choice(docs))
        doc.pop(rng.choice(sorted(doc)))
        return json.dumps(doc).encode()

    makers: list[tuple[Callable[[], bytes], str]] = [
        (lambda: b"", "empty"),
        (lambda: b"{\x00" + rng.randbytes(rng.randint(0, 30)), "bad_json"),
        (lambda: b"[1, 2, 3]", "bad_json"),
        (lambda: b'{"tx_id": "\xff\xfe"}', "bad_json"),
        (without, "missing_field"),
        (lambda: changed(amount="12.50"), "bad_field"),
        (lambda: changed(lat=91.0), "bad_field"),
        (lambda: changed(channel="fax"), "bad_field"),
        (lambda: changed(amount=1).replace(b'"amount": 1', b'"amount": 1e400'),
         "number_out_of_range"),
    ]  # fmt: skip
    bad = []
    for i in range(BAD):
        make, reason = makers[i % len(makers)]
        bad.append((rng.choice([None, b"card-x"]), make(), [], reason))
    bad += [(b"card-big", b" " * 70_000, [], "too_large") for _ in range(10)]
    return valid, bad


def sensors(rng: random.Random) -> tuple[list[Expected], list[Expected]]:
    valid = []
    for i in range(VALID["imu"]):
        value, headers = encode_sensor(np.full((100, 6), 0.01 * i, np.float32))
        valid.append((b"vehicle-%d" % (i % 7), value, headers, DECIDED))
    raw = encode_sensor(np.zeros((100, 6), np.float32))[1]
    nan_rows = json.dumps([[float("nan")] * 6] * 100).encode()
    makers: list[tuple[bytes, list[tuple[str, bytes]], str]] = [
        (b"\x00" * 2396, raw, "bad_shape"),
        (b"[[1, 2]]", [], "bad_shape"),
        (b"[[1, 2, 3, 4, 5, 6]]", [("content-type", b"text/plain")], "bad_content_type"),
        (b"[]", [("content-type", b"\xff\xfe")], "bad_content_type"),
        (nan_rows, [("content-type", b"application/json")], "non_finite"),
        (b"", [], "empty"),
        (b"\x00\x01garbage", [], "bad_json"),
        (b"\x00" * 2376, [("content-type", b"application/x-raw;shape=99,6;dtype=float32")],
         "bad_shape"),
    ]  # fmt: skip
    bad = []
    for i in range(BAD):
        value, headers, reason = makers[i % len(makers)]
        bad.append((rng.choice([None, b"vehicle-x"]), value, headers, reason))
    return valid, bad


def frames(rng: random.Random) -> tuple[list[Expected], list[Expected]]:
    image = np.random.default_rng(3).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    valid = []
    for i in range(VALID["cam"]):
        value, headers = encode_camera(image, capture_ts_ns=time.time_ns(), frame_seq=i)
        valid.append((b"cam-%d" % (i % 3), value, headers, DECIDED))
    jpeg = encode_camera(image)[0]
    huge = bytearray(jpeg)
    sof = huge.index(b"\xff\xc0")
    struct.pack_into(">HH", huge, sof + 5, 20_000, 20_000)  # declares 20000x20000 pixels
    png_type = [("content-type", b"image/png")]
    makers: list[tuple[Callable[[], bytes], list[tuple[str, bytes]], str]] = [
        (lambda: rng.randbytes(rng.randint(1, 64)), [], "corrupt_image"),
        (lambda: b"", [], "empty"),
        (lambda: jpeg, [("content-type", b"image/gif")], "bad_content_type"),
        (lambda: jpeg, png_type, "bad_content_type"),
        (lambda: jpeg[: len(jpeg) * 3 // 5], [], "corrupt_image"),
        (lambda: b"\x00" * 100, [("content-type", b"application/x-raw;shape=4,4,3;dtype=uint8")],
         "bad_shape"),
        (lambda: bytes(huge), [], "image_too_large"),
        (lambda: jpeg, [("capture-ts-ns", b"soon")], "bad_header"),
    ]  # fmt: skip
    bad = []
    for i in range(BAD):
        make, headers, reason = makers[i % len(makers)]
        bad.append((rng.choice([None, b"cam-x"]), make(), headers, reason))
    return valid, bad


def produce_all(bootstrap: str, topic: str, records: list[Expected]) -> dict[tuple[int, int], str]:
    """Every record written (librdkafka); (partition, offset) -> the outcome it must get."""
    outcome: dict[tuple[int, int], str] = {}
    errors: list[object] = []
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})

    def delivered(expected: str) -> Callable[[Any, Any], None]:
        def on_delivery(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(err)
            else:
                outcome[(msg.partition(), msg.offset())] = expected

        return on_delivery

    for key, value, headers, expected in records:
        on_delivery = delivered(expected)
        producer.produce(topic, value, key, headers=headers or None, on_delivery=on_delivery)
        producer.poll(0)
    assert producer.flush(60) == 0 and errors == []
    return outcome


def console_tombstones(topic: str, bootstrap: str) -> subprocess.Popen[bytes]:
    """Kafka's console producer writing tombstones with and without keys (null.marker)."""
    lines = [f"tomb-{i}\tNULL" for i in range(TOMBSTONES)] + ["NULL\tNULL"] * TOMBSTONES
    command = LocalBroker().tool_command(
        "org.apache.kafka.tools.ConsoleProducer", "--bootstrap-server", bootstrap,
        "--topic", topic, "--property", "parse.key=true", "--property", "null.marker=NULL",
    )  # fmt: skip
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    assert process.stdin is not None
    process.stdin.write(("\n".join(lines) + "\n").encode())
    process.stdin.close()
    return process


def read_topic(bootstrap: str, topic: str, partitions: int, n: int) -> list[Any]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader",
                         "enable.auto.commit": False})  # fmt: skip
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out: list[Any] = []
    deadline = time.monotonic() + 60
    while len(out) < n and time.monotonic() < deadline:
        out += [m for m in consumer.consume(5000, 0.5) if m.error() is None]
    consumer.close()
    return out


def test_a_flood_of_malformed_records_leaves_every_stream_up_and_every_record_resolved(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
    client_name: str,
) -> None:
    rng = random.Random(7)
    kinds = {"tx": transactions(rng), "imu": sensors(rng), "cam": frames(rng)}
    topics = {name: (unique_topic(2), unique_topic(2)) for name in kinds}
    streams = [
        {"name": "tx", "kind": "transaction", "model": "fraud"},
        {"name": "imu", "kind": "sensor", "model": "sensor"},
        {"name": "cam", "kind": "camera", "model": "camera", "mode": "replay"},
    ]
    for s in streams:
        src, out = topics[s["name"]]
        s.update(input_topic=src, output_topic=out, batching={"max_batch": 32, "max_wait_ms": 5})
    models = {
        "fraud": MODELS / "fraud.onnx",
        "sensor": sensor_model(tmp_path / "s.onnx"),
        "camera": camera_model(tmp_path / "c.onnx"),
    }
    pipes = pipelines_by_stream(kafka_bootstrap, streams, models, client_name, unique_group,
                                tmp_path)  # fmt: skip
    running = list({id(p): p for p, _ in pipes.values()}.values())
    for src, _ in topics.values():  # the dead-letter topics, as the pipeline would make them
        create_topics(kafka_bootstrap, {f"{src}.dlq": 2})
    expected: dict[str, dict[tuple[int, int], str]] = {}
    with contextlib.ExitStack() as stack:
        for pipe in running:
            stack.enter_context(pipe)
            pipe.wait_ready(30)
        consoles = [console_tombstones(src, kafka_bootstrap) for src, _ in topics.values()]
        for name, (valid, bad) in kinds.items():
            mixed = valid + bad
            rng.shuffle(mixed)
            expected[name] = produce_all(kafka_bootstrap, topics[name][0], mixed)
        for console in consoles:
            assert console.wait(60) == 0, console.stderr.read() if console.stderr else ""
        totals = {name: len(e) + 2 * TOMBSTONES for name, e in expected.items()}

        def stats() -> dict[str, Any]:
            return {n: s for p in running for n, s in p.stats().items()}

        wait_for(
            lambda: any(p.failure is not None for p in running)
            or all(stats()[n].resolved >= total for n, total in totals.items()),
            120,
            "every record resolved",
        )
        assert all(p.failure is None and p.ready for p in running)
        wait_for(lambda: all(s.lag == 0 for s in stats().values()), 30, "lag back to 0")
        for name, (src, _) in topics.items():
            wait_for(
                lambda g=pipes[name][1], src=src, n=totals[name]: sum(
                    committed(kafka_bootstrap, g, src).values()
                )
                == n,
                30,
                f"{name}: every offset committed",
            )
        snaps = stats()
    for name, (src, out) in topics.items():
        want = expected[name]
        valid = {coords for coords, outcome in want.items() if outcome == DECIDED}
        decisions = read_topic(kafka_bootstrap, out, 2, len(valid))
        got = {(d["source"]["partition"], d["source"]["offset"])
               for d in (json.loads(m.value()) for m in decisions)}  # fmt: skip
        assert got == valid and len(decisions) == len(valid), name
        letters = read_topic(kafka_bootstrap, f"{src}.dlq", 2, totals[name] - len(valid))
        reasons: dict[tuple[int, int], str] = {}
        tombstones = 0
        for m in letters:
            headers = dict(m.headers())
            coords = (int(headers[SOURCE_PARTITION]), int(headers[SOURCE_OFFSET]))
            assert coords not in reasons, f"{name}: {coords} dead-lettered twice"
            reasons[coords] = headers[ERROR_REASON].decode()
            if coords not in want:  # one of the console producer's
                assert headers.get(VALUE_NULL) == b"true" and m.value() == b""
                assert reasons[coords] == "null_value"
                tombstones += 1
        assert tombstones == 2 * TOMBSTONES, name
        assert set(reasons.values()) <= set(DEAD_LETTER_REASONS), name
        wrong = {c: (r, want[c]) for c, r in reasons.items() if c in want and want[c] != r}
        assert wrong == {}, f"{name}: {len(wrong)} dead letters with another reason"
        assert len(reasons) - tombstones == len(want) - len(valid), name
        assert snaps[name].dead_lettered == dict(Counter(reasons.values())), name
        assert snaps[name].dropped == {} and snaps[name].decided == len(valid), name
