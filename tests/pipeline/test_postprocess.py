"""Postprocessing: thresholds to actions, probabilities to labels, the decision document."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from streamfer.errors import EngineError
from streamfer.pipeline.config import FraudThresholds, SensorThresholds
from streamfer.pipeline.postprocess import (
    SCHEMA,
    FraudPostprocessor,
    ModelIdentity,
    SensorPostprocessor,
    build_decision,
    key_text,
    labels_from_metadata,
)
from streamfer.streams.codecs import validate_decision
from streamfer.streams.codecs.decision import LATENCY_STAGES

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
    record = SimpleNamespace(
        topic="payments.tx", partition=2, offset=41, key=b"card-7", timestamp_ms=1_700_000
    )
    model = ModelIdentity("fraud", "3", "onnxruntime", "fp32")
    decision = build_decision(
        stream="payments",
        kind="transaction",
        record=record,
        model=model,
        result={"fraud_score": 0.2, "action": "approve"},
        batch_size=8,
        latency_ms={s: 1.23456 for s in LATENCY_STAGES} | {"publish": None},
    )
    validate_decision(decision)
    assert decision["schema"] == SCHEMA
    assert decision["source"] == {
        "topic": "payments.tx",
        "partition": 2,
        "offset": 41,
        "key": "card-7",
    }
    assert decision["model"]["engine"] == "onnxruntime"
    assert decision["latency_ms"]["broker"] == 1.235 and decision["latency_ms"]["publish"] is None
    assert decision["batch_size"] == 8


def test_non_utf8_keys_are_hex() -> None:
    assert key_text(b"\xff\x00") == "hex:ff00"
    assert key_text(None) is None
