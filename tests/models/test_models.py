"""The committed reference models: load, shapes, metadata, and the card's metrics hold.

No torch here: onnxruntime and numpy only. Metrics are recomputed on fresh
generated samples (seeds never used in training) and compared with the cards.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest

from streamfer.models import evaluate as ev
from streamfer.models.features import FEATURE_NAMES
from streamfer.models.generators.scenes import DETECTION_LABELS
from streamfer.models.generators.sensor import SENSOR_LABELS

MODELS = Path(ev.__file__).parent
SPECS = {
    # name: (input name, per-item input shape, output name, per-item output shape, task, labels)
    "fraud": ("features", (len(FEATURE_NAMES),), "score", (1,), "fraud", ["fraud"]),
    "sensor": ("window", (100, 6), "probs", (4,), "sensor", list(SENSOR_LABELS)),
    "camera": ("images", (3, 256, 256), "output0", (8, 1280), "detection", list(DETECTION_LABELS)),
}


def card_value(name: str, row: str) -> float:
    text = (MODELS / f"{name}.md").read_text()
    match = re.search(rf"^\| {re.escape(row)} \| ([0-9.]+) \|$", text, re.MULTILINE)
    assert match, f"{name}.md has no '{row}' row"
    return float(match.group(1))


@pytest.mark.parametrize("name", list(SPECS))
def test_model_file_metadata_and_card(name: str) -> None:
    path = MODELS / f"{name}.onnx"
    assert path.stat().st_size < 5 * 1024 * 1024
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    in_name, _, out_name, _, task, labels = SPECS[name]
    assert meta["streamfer.name"] == name
    assert meta["streamfer.task"] == task
    assert json.loads(meta["streamfer.labels"]) == labels
    assert meta["streamfer.version"]
    if name == "camera":
        assert meta["streamfer.input_size"] == "256"
    if name == "fraud":
        assert meta["streamfer.features"].split(",") == list(FEATURE_NAMES)
    assert [i.name for i in model.graph.input] == [in_name]
    assert [o.name for o in model.graph.output] == [out_name]
    assert model.opset_import[0].version >= 17
    card = (MODELS / f"{name}.md").read_text()
    assert "python -m streamfer.models.train " + name in card


@pytest.mark.parametrize("name", list(SPECS))
@pytest.mark.parametrize("batch", [1, 64])
def test_outputs_have_documented_shapes(name: str, batch: int) -> None:
    in_name, in_shape, out_name, out_shape, _, _ = SPECS[name]
    sess = ev.session(MODELS / f"{name}.onnx")
    rng = np.random.default_rng(batch)
    x = rng.random((batch, *in_shape), dtype=np.float32)
    (out,) = sess.run([out_name], {in_name: x})
    assert out.shape == (batch, *out_shape) and out.dtype == np.float32
    assert np.isfinite(out).all()
    if name == "sensor":
        assert np.allclose(out.sum(axis=1), 1.0, atol=1e-5)
    if name == "fraud":
        assert ((out >= 0) & (out <= 1)).all()
    if name == "camera":
        assert ((out[:, 4:] >= 0) & (out[:, 4:] <= 1)).all()
        assert (out[:, 2:4] >= 0).all()


def test_fraud_auc_on_a_fresh_sample_matches_the_card() -> None:
    card_auc = card_value("fraud", "ROC-AUC (held-out)")
    m = ev.evaluate_fraud(ev.FRAUD_ONNX, ev.FRAUD_CHECK)
    # 20k records carry ~200 frauds: the AUC's sampling error is about 0.01
    assert abs(m["roc_auc"] - card_auc) < 0.03, (m, card_auc)
    assert m["precision_at_review_rate"] > 0.5


def test_fraud_scores_rank_a_burst_above_routine_spend() -> None:
    from streamfer.models.features import FraudFeaturizer

    feat = FraudFeaturizer()
    t0 = 1_767_261_600_000  # 2026-01-01T10:00Z, daytime in Europe
    base = {"card_id": "c", "currency": "EUR", "merchant_id": "m", "lat": 48.86, "lon": 2.35}
    rows = [
        feat.transform({**base, "ts": t0 + i * 86_400_000, "amount": 30.0, "mcc": "5411",
                        "channel": "pos"})
        for i in range(5)
    ]  # fmt: skip
    # then, 20 minutes later, 3 big online purchases from Lagos at electronics stores
    t1 = t0 + 4 * 86_400_000 + 1_200_000
    for k in range(3):
        rows.append(feat.transform({**base, "ts": t1 + k * 60_000, "amount": 900.0, "mcc": "5732",
                                    "channel": "ecom", "lat": 6.5, "lon": 3.4}))  # fmt: skip
    sess = ev.session(ev.FRAUD_ONNX)
    scores = sess.run(None, {"features": np.stack(rows)})[0][:, 0]
    assert scores[5:].min() > 0.5 > scores[1:5].max()


def test_sensor_accuracy_on_fresh_windows() -> None:
    card_acc = card_value("sensor", "accuracy (held-out)")
    m = ev.evaluate_sensor(ev.SENSOR_ONNX, seed=3003, n=1500)
    assert m["accuracy"] > min(0.9, card_acc - 0.03), m
    for label in SENSOR_LABELS:
        assert m[f"recall_{label}"] > 0.7, (label, m)


def test_detector_finds_objects_on_fresh_scenes() -> None:
    card_recall = card_value("camera", "recall at score 0.25")
    scenes = ev.camera_sample(seed=3003, n=40)
    found = ev.detect_scenes(ev.CAMERA_ONNX, scenes, score_threshold=0.25)
    hits = total = 0
    for scene, dets in zip(scenes, found, strict=True):
        truth_labels = np.array([DETECTION_LABELS.index(x) for x in scene.labels])
        boxes = np.array([d.box for d in dets], np.float32).reshape(-1, 4)
        labels = np.array([DETECTION_LABELS.index(d.label) for d in dets])
        hits += ev.match_count(scene.boxes, truth_labels, boxes, labels)
        total += len(scene.labels)
    assert total > 100
    assert hits / total > max(0.3, card_recall - 0.15), (hits, total, card_recall)
