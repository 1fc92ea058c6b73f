"""Failure paths forced for real: the cluster refuses a publish, a result cannot be encoded.

Nothing here is mocked. A dead-letter topic that refuses a record (a compacted
topic takes no record without a key), an output topic that refuses a decision
(larger than its ``max.message.bytes``), a model that answers NaN. Each must
end as documented, on both clients:

* a refused dead letter or decision stops the stream: ``streamfer run`` exits 1
  with an error naming the record, and no offset past it is committed;
* with ``dead_letters.on_failure: skip`` the refused dead letter is counted as
  ``dead_letter_failed`` and the stream goes on;
* a NaN result is dead-lettered as ``bad_decision``, the rest decided.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from e2e_helpers import (
    MODELS,
    committed,
    config_doc,
    decisions,
    produce,
    read_all,
    transactions,
    wait_for,
    wait_resolved,
)
from tiny_models import nan_sensor_model

from streamfer.pipeline.app import Pipeline
from streamfer.pipeline.config import parse_config
from streamfer.streams.admin import create_topics
from streamfer.streams.codecs import encode_sensor

pytestmark = [pytest.mark.integration, pytest.mark.slow]
Message = tuple[bytes | None, bytes, list[tuple[str, bytes]]]
BAD_AT = 12  # the offset of the record whose publish the cluster refuses
AFTER = 12  # valid records behind it


def transaction_stream(src: str, out: str, **extra: Any) -> dict[str, Any]:
    batching = {"max_batch": 4, "max_wait_ms": 2}
    return {"name": "tx", "kind": "transaction", "model": "fraud", "input_topic": src,
            "output_topic": out, "batching": batching, **extra}  # fmt: skip


def failed_run_error(tmp_path: Path, doc: dict[str, Any], timeout_s: float = 180) -> str:
    """Run ``doc`` with ``streamfer run`` until it exits; it must exit 1 and print an
    ``error: `` line, which is returned."""
    config = tmp_path / "p.yaml"
    config.write_text(json.dumps(doc))
    done = subprocess.run(
        [sys.executable, "-m", "streamfer.pipeline.cli", "run", "-c", str(config)],
        capture_output=True, text=True, timeout=timeout_s,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr[-3000:]
    error = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert error, done.stderr[-3000:]
    return error[0]


def refused_dead_letter(
    bootstrap: str, topic: Callable[..., str]
) -> tuple[str, str, list[Message]]:
    """Input and output topics; the input's DLQ refuses keyless records (compacted)."""
    src, out = topic(1), topic(1)
    create_topics(bootstrap, {f"{src}.dlq": 1}, config={"cleanup.policy": "compact"})
    valid = transactions(BAD_AT + AFTER, seed=11)
    bad: Message = (None, b"{not json", [])  # its dead letter has no key either
    return src, out, [*valid[:BAD_AT], bad, *valid[BAD_AT:]]


def test_a_refused_dead_letter_stops_the_run_naming_the_record(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
    client_name: str,
) -> None:
    src, out, messages = refused_dead_letter(kafka_bootstrap, unique_topic)
    group = unique_group()
    produce(kafka_bootstrap, src, messages)
    doc = config_doc(kafka_bootstrap, group, [transaction_stream(src, out)],
                     {"fraud": MODELS / "fraud.onnx"}, kafka={"client": client_name})  # fmt: skip
    error = failed_run_error(tmp_path, doc)
    assert error.startswith(f"error: {src}[0]@{BAD_AT} | dead letter (bad_json) not published")
    assert "dead_letters.on_failure: skip" in error
    assert committed(kafka_bootstrap, group, src).get(0, 0) <= BAD_AT


def test_a_skipped_dead_letter_is_counted_and_the_stream_goes_on(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
    client_name: str,
) -> None:
    src, out, messages = refused_dead_letter(kafka_bootstrap, unique_topic)
    group = unique_group()
    stream = transaction_stream(src, out, dead_letters={"on_failure": "skip"})
    doc = config_doc(kafka_bootstrap, group, [stream], {"fraud": MODELS / "fraud.onnx"},
                     kafka={"client": client_name})  # fmt: skip
    with Pipeline(parse_config(doc, "t", tmp_path)) as pipe:
        pipe.wait_ready(60)
        produce(kafka_bootstrap, src, messages)
        wait_resolved(pipe, "tx", len(messages))
        assert pipe.ready
        snap = pipe.stats()["tx"]
        assert snap.dropped == {"dead_letter_failed": 1} and snap.dead_lettered == {}
        assert snap.decided == len(messages) - 1
        wait_for(
            lambda: committed(kafka_bootstrap, group, src) == {0: len(messages)},
            30,
            "every offset committed",
        )


def test_a_refused_decision_stops_the_run_naming_the_record(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
    client_name: str,
) -> None:
    src, out, group = unique_topic(1), f"t-small-out-{unique_group()}", unique_group()
    create_topics(kafka_bootstrap, {out: 1}, config={"max.message.bytes": "4000"})
    messages = transactions(BAD_AT + 1 + AFTER, seed=12)
    key, value, headers = messages[BAD_AT]
    long_key = key + b"-" + b"x" * 5000  # its decision carries the key twice: too large
    messages[BAD_AT] = (long_key, value, headers)
    produce(kafka_bootstrap, src, messages)
    doc = config_doc(kafka_bootstrap, group, [transaction_stream(src, out)],
                     {"fraud": MODELS / "fraud.onnx"}, kafka={"client": client_name})  # fmt: skip
    error = failed_run_error(tmp_path, doc)
    assert error.startswith(f"error: {src}[0]@{BAD_AT} | decision not published to {out}")
    assert committed(kafka_bootstrap, group, src).get(0, 0) <= BAD_AT
    published = decisions(read_all(kafka_bootstrap, out, lambda m: len(m) >= BAD_AT, 10))
    assert {d["source"]["offset"] for d in published} >= set(range(BAD_AT))


def test_a_nan_result_is_dead_lettered_as_bad_decision(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
    client_name: str,
) -> None:
    src, out, group = unique_topic(1), unique_topic(1), unique_group()
    stream = {"name": "imu", "kind": "sensor", "model": "sensor", "input_topic": src,
              "output_topic": out, "batching": {"max_batch": 8, "max_wait_ms": 2}}  # fmt: skip
    model = nan_sensor_model(tmp_path / "nan.onnx")
    doc = config_doc(kafka_bootstrap, group, [stream], {"sensor": model},
                     kafka={"client": client_name})  # fmt: skip
    signs = [1.0 if i % 3 else -1.0 for i in range(30)]  # every third window: NaN scores
    messages: list[Message] = []
    for sign in signs:
        value, headers = encode_sensor(np.full((100, 6), sign, np.float32))
        messages.append((b"vehicle-1", value, headers))
    with Pipeline(parse_config(doc, "t", tmp_path)) as pipe:
        pipe.wait_ready(60)
        produce(kafka_bootstrap, src, messages)
        wait_resolved(pipe, "imu", len(messages))
        snap = pipe.stats()["imu"]
        assert snap.dead_lettered == {"bad_decision": signs.count(-1.0)}
        assert snap.decided == signs.count(1.0)
    letters = read_all(kafka_bootstrap, f"{src}.dlq", lambda m: len(m) >= signs.count(-1.0))
    offsets = sorted(int(dict(m.headers)["source-offset"]) for m in letters)
    assert offsets == [i for i, sign in enumerate(signs) if sign < 0]
    for m in letters:
        headers = dict(m.headers)
        assert headers["error-reason"] == b"bad_decision"
        assert b"holds NaN or infinity" in headers["error-message"]
        assert m.value == messages[int(headers["source-offset"])][1]  # the original bytes
