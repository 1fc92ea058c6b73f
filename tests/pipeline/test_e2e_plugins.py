"""A faulty processor plug-in end to end on the real broker: its faults stay with the records
that cause them, nothing is half-published, and the stream goes on.

``plugin_kit:Faulty`` (kind custom, the tiny sum model) raises in ``prepare`` for every
batch holding a ``raise`` record, raises in ``results`` for every batch holding a
``late`` record, and returns one result too few for every batch holding a ``count``
record. Every record must end exactly once, as the right decision or as a dead letter
with ``processor_error`` and the class of what was raised; the offsets must be
committed past all of them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from e2e_helpers import committed, config_doc, produce, read_all, wait_for
from tiny_models import sum_model

from streamfer.pipeline.app import Pipeline
from streamfer.pipeline.config import parse_config
from streamfer.streams.codecs import validate_decision

pytestmark = pytest.mark.integration

N = 240


def cue(i: int) -> bytes:
    if i % 37 == 5:
        return b"raise"
    if i % 41 == 9:
        return b"late"
    if i in (70, 150):  # far from the late ones: their batches fail by the count alone
        return b"count"
    if i % 29 == 3:
        return b"tag"
    return b"ok"


def test_a_faulty_processor_loses_only_the_records_it_fails_on(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_topic: Callable[..., str],
    unique_group: Callable[[], str],
    client_name: str,
) -> None:
    src, out, group = unique_topic(2), unique_topic(2), unique_group()
    stream = {
        "name": "faulty", "kind": "custom", "processor": "plugin_kit:Faulty", "model": "sum",
        "input_topic": src, "output_topic": out, "batching": {"max_batch": 8, "max_wait_ms": 5},
    }  # fmt: skip
    doc = config_doc(kafka_bootstrap, group, [stream], {"sum": sum_model(tmp_path / "sum.onnx")},
                     kafka={"client": client_name}, consumer={"max_poll_records": 16})  # fmt: skip
    pipe = Pipeline(parse_config(doc, "test", tmp_path))
    with pipe:
        pipe.wait_ready(30)
        produce(kafka_bootstrap, src, [(b"k%d" % (i % 5), cue(i) + b"-%d" % i, [])
                                       for i in range(N)])  # fmt: skip
        wait_for(lambda: pipe.stats()["faulty"].resolved >= N, 60, "every record resolved")
        wait_for(lambda: sum(committed(kafka_bootstrap, group, src).values()) == N, 30,
                 "offsets committed past every record")  # fmt: skip
        assert pipe.failure is None and pipe.ready
        snap = pipe.stats()["faulty"]

    produced = read_all(kafka_bootstrap, src, lambda m: len(m) >= N)
    inputs = {(m.partition, m.offset): m.value for m in produced}
    decided = {}
    for m in read_all(kafka_bootstrap, out, lambda m: len(m) >= snap.decided):
        doc = json.loads(m.value)
        validate_decision(doc)
        where = (doc["source"]["partition"], doc["source"]["offset"])
        assert where not in decided, f"{where} decided twice"
        decided[where] = (doc, dict(m.headers or []))
    letters = {}
    for m in read_all(kafka_bootstrap, f"{src}.dlq", lambda m: len(m) >= N - snap.decided):
        h = dict(m.headers)
        where = (int(h["source-partition"]), int(h["source-offset"]))
        assert where not in letters and where not in decided, f"{where} resolved twice"
        letters[where] = (h["error-class"].decode(), h["error-message"].decode())

    assert decided.keys() | letters.keys() == inputs.keys()  # every record, exactly once
    for where, (doc, headers) in decided.items():
        value = inputs[where]
        n = int(value.split(b"-")[1])
        assert doc["result"] == {"n": n}, (value, doc)
        assert headers == ({"tag": b"%d" % n} if value.startswith(b"tag") else {})
        assert value.startswith((b"ok", b"tag")), value
    for where, (cls, message) in letters.items():
        what = inputs[where].split(b"-")[0]
        if what == b"raise":
            assert cls == "RuntimeError" and "Faulty.prepare raised RuntimeError" in message
        elif what == b"late":
            assert cls == "ValueError" and "Faulty.results raised ValueError" in message
        else:  # sharing an engine batch with a count record: the batch fails, none published
            assert cls == "ProcessorError" and "Faulty.results | returned" in message, message
    faults = {w for w, v in inputs.items() if not v.startswith((b"ok", b"tag"))}
    assert faults <= letters.keys()
    assert sum("results for a batch of" in m for _, m in letters.values()) > 2
    assert snap.dead_lettered == {"processor_error": len(letters)}
    assert snap.decided == len(decided) > N // 2
