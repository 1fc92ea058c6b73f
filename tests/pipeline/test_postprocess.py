"""Postprocessing: thresholds to actions, probabilities to labels; the decision document."""

from __future__ import annotations

import json

import numpy as np
import pytest

from streamfer.errors import EngineError
from streamfer.pipeline.config import FraudThresholds, SensorThresholds
from streamfer.pipeline.decisions import (
    SCHEMA,
    DecisionEncoder,
    ModelIdentity,
    SegmentTiming,
    key_text,
)
from streamfer.pipeline.postprocess import (
    FraudPostprocessor,
    SensorPostprocessor,
    labels_from_metadata,
)
from streamfer.streams.codecs import SCHEMA_ID, validate_decision
from streamfer.streams.records import Record

LABELS = ["normal", "hard_brake", "swerve", "impact"]


def test_fraud_score_maps_to_action_by_thresholds() -> None:
    post = FraudPostprocessor(FraudThresholds(review=0.5, decline=0.9))
    scores = np.array([[0.1], [0.5], [0.89], [0.9], [1.0]], dtype=np.float32)
    metas = [{"tx_id": f"t{i}"} for i in range(5)]
    results = post.results({"score": scores}, metas)
    assert [r["action"] for r in results] == ["approve", "review", "review", "decline", "decline"]
    assert results[2]["fraud_score"] == pytest.approx(0.89)


def test_sensor_label_and_uncertain_below_min_confidence() -> None:
    post = SensorPostprocessor(SensorThresholds(min_confidence=0.6), LABELS)
    probs = np.array([[0.1, 0.7, 0.1, 0.1], [0.4, 0.3, 0.2, 0.1]], dtype=np.float32)
    a, b = post.results({"probs": probs}, [None, None])
    assert a == {"class": "hard_brake", "score": pytest.approx(0.7)}
    assert b["class"] == "uncertain"


def test_sensor_label_count_mismatch_is_an_engine_error() -> None:
    post = SensorPostprocessor(SensorThresholds(), LABELS[:3])
    with pytest.raises(EngineError, match="4 class scores for 3 labels"):
        post.results({"probs": np.zeros((1, 4), np.float32)}, [None])


def test_labels_come_from_model_metadata() -> None:
    assert labels_from_metadata({"streamfer.labels": '["a", "b"]'}, "m") == ["a", "b"]
    with pytest.raises(EngineError, match=r"streamfer\.labels"):
        labels_from_metadata({}, "m")


def test_decision_document_carries_source_model_and_latencies() -> None:
    record = Record("payments.tx", 2, 41, b"card-7", b"{}", (), 1_700_000, 0)
    encoder = DecisionEncoder("payments", "transaction", ModelIdentity("fraud", "3",
                                                                       "onnxruntime", "fp32"))
    timing = SegmentTiming(queue_ms=1.23456, preprocess_ms=1.0, infer_ms=2.0, postprocess_ms=0.1)
    raw = encoder.encode(record, {"fraud_score": 0.2, "action": "approve"}, batch_size=8,
                         broker_ms=1.23456, timing=timing)  # fmt: skip
    decision = json.loads(raw)
    validate_decision(decision)
    assert decision["schema"] == SCHEMA == SCHEMA_ID and decision["stream"] == "payments"
    assert decision["source"] == {
        "topic": "payments.tx",
        "partition": 2,
        "offset": 41,
        "key": "card-7",
    }
    assert decision["model"]["engine"] == "onnxruntime"
    latency = decision["latency_ms"]
    assert latency["broker"] == 1.235 and latency["queue"] == 1.235
    assert latency["publish"] is None and latency["e2e"] is None
    assert decision["batch_size"] == 8


def test_a_document_without_timing_is_the_same_document_with_null_latencies() -> None:
    """What the benchmark baselines write: streamfer's bytes, but for the latencies."""
    encoder = DecisionEncoder("payments", "transaction", ModelIdentity("fraud", "3",
                                                                       "onnxruntime", "fp32"))
    results = [{"fraud_score": 0.2, "action": "approve"},
               {"fraud_score": 0.95, "action": "decline"}]  # fmt: skip
    args = ("payments.tx", 1, [7, 9], [b"card-1", None], results, None)
    timed = encoder.encode_segment(*args, [1.0, 2.0], 2, SegmentTiming(1.0, 2.0, 3.0, 4.0))
    bare = encoder.encode_segment(*args, None, 2, None)
    for t, b in zip(timed, bare, strict=True):
        assert isinstance(t, bytes) and isinstance(b, bytes)
        t_doc, b_doc = json.loads(t), json.loads(b)
        validate_decision(b_doc)
        assert set(b_doc["latency_ms"].values()) == {None}
        assert {**t_doc, "latency_ms": None} == {**b_doc, "latency_ms": None}
        assert b.split(b',"batch_size"')[0] == t.split(b',"batch_size"')[0]


def test_non_utf8_keys_are_hex() -> None:
    assert key_text(b"\xff\x00") == "hex:ff00"
    assert key_text(None) is None
