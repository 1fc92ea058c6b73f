"""The worked plug-in example (examples/telemetry-anomaly): its training, its model, its
installation as a plug-in, and the whole stream on the real broker."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import yaml
from e2e_helpers import committed, read_all, wait_for

from streamfer.errors import ConfigError
from streamfer.pipeline.app import Pipeline
from streamfer.pipeline.config import load_config, parse_config
from streamfer.pipeline.processors import plugins
from streamfer.streams.codecs import validate_decision
from telemetry_anomaly import TelemetryAnomaly
from telemetry_anomaly.data import FAULTS, TelemetryGenerator, matrix
from telemetry_anomaly.produce import produce, readings
from telemetry_anomaly.train import MODEL_PATH, train

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "telemetry-anomaly"


def flagged(scores: np.ndarray, labels: list[str], threshold: float) -> dict[str, float]:
    """Per label, the share of readings at or above the threshold."""
    arr = np.asarray(labels)
    return {k: float((scores[arr == k] >= threshold).mean()) for k in ("normal", *FAULTS)}


def held_out() -> tuple[np.ndarray, list[str]]:
    """The model card's held-out set: seed 2, 20 % faulty."""
    samples, labels = TelemetryGenerator(seed=2, fault_ratio=0.2).take(10_000)
    return matrix(samples), labels


def onnx_scores(path: Path, x: np.ndarray) -> tuple[np.ndarray, dict[str, str]]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    return session.run(["score"], {"telemetry": x})[0][:, 0], meta


def test_training_separates_faults_and_reproduces_the_committed_model(tmp_path: Path) -> None:
    _, threshold = train(tmp_path / "ae.onnx")
    x, labels = held_out()
    scores, meta = onnx_scores(tmp_path / "ae.onnx", x)
    assert float(meta["telemetry.threshold"]) == pytest.approx(threshold, rel=1e-5)
    rates = flagged(scores, labels, threshold)
    assert rates["normal"] <= 0.01
    assert min(rates[f] for f in FAULTS) >= 0.85, rates
    committed_scores, committed_meta = onnx_scores(MODEL_PATH, x)
    assert np.allclose(scores, committed_scores, rtol=1e-3, atol=1e-5)
    assert committed_meta["telemetry.threshold"] == meta["telemetry.threshold"]


def test_the_committed_model_meets_its_card() -> None:
    x, labels = held_out()
    scores, meta = onnx_scores(MODEL_PATH, x)
    rates = flagged(scores, labels, float(meta["telemetry.threshold"]))
    card = (EXAMPLE / "MODEL_CARD.md").read_text()
    for label, rate in rates.items():
        assert f"| {label} | {rate:.3f} |" in card, (label, rate)
    assert MODEL_PATH.stat().st_size < 4096


def test_the_example_installs_as_a_plugin_and_its_config_is_checked(tmp_path: Path) -> None:
    assert plugins.load("telemetry-anomaly") is TelemetryAnomaly
    cfg = load_config(EXAMPLE / "pipeline.yaml")
    assert cfg.streams[0].processor == "telemetry-anomaly"
    doc = yaml.safe_load((EXAMPLE / "pipeline.yaml").read_text())
    doc["models"]["telemetry_ae"]["path"] = str(MODEL_PATH)
    doc["streams"][0]["processor_config"] = {"alert_header": "bad header!", "threshold": 0}
    with pytest.raises(ConfigError) as info:
        parse_config(doc, "t.yaml", EXAMPLE)
    assert str(info.value).splitlines()[1:] == [
        "  t.yaml: streams[0].processor_config.threshold | Input should be greater than 0 "
        "(got 0). Note: allowed: > 0.0",
    ]
    doc["streams"][0]["processor_config"] = {"alert_header": "bad header!"}
    with pytest.raises(ConfigError) as info:
        parse_config(doc, "t.yaml", EXAMPLE)
    assert str(info.value).splitlines()[1:] == [
        "  t.yaml: streams[0].processor_config.alert_header | not a usable header name "
        "(got 'bad header!'). Note: allowed: 1-64 of A-Z a-z 0-9 _ . -",
    ]


@pytest.mark.integration
def test_the_example_stream_end_to_end(
    kafka_bootstrap: str, unique_topic: Callable[..., str], unique_group: Callable[[], str]
) -> None:
    src, out, group = unique_topic(2), unique_topic(2), unique_group()
    doc: dict[str, Any] = yaml.safe_load((EXAMPLE / "pipeline.yaml").read_text())
    doc["kafka"] = {"bootstrap_servers": kafka_bootstrap, "client_id": f"c-{group}"}
    doc["consumer"]["group_id"] = group
    doc["metrics"] = {"enabled": False}
    doc["runtime"] = {"commit_interval_ms": 100}
    doc["streams"][0].update(input_topic=src, output_topic=out)
    pipe = Pipeline(parse_config(doc, "pipeline.yaml", EXAMPLE))
    sent = list(readings(400, seed=9, fault_ratio=0.1, malformed_ratio=0.03))
    label_of = {value: label for _, value, label in sent}  # healthy and faulty ones are unique
    malformed = sum(label == "malformed" for _, _, label in sent)
    with pipe:
        pipe.wait_ready(30)
        n = produce(kafka_bootstrap, src, iter(sent))
        wait_for(lambda: pipe.stats()["telemetry"].resolved >= n, 60, "every reading resolved")
        wait_for(lambda: sum(committed(kafka_bootstrap, group, src).values()) == n, 30,
                 "offsets committed")  # fmt: skip
        snap = pipe.stats()["telemetry"]
        assert pipe.failure is None

    produced = read_all(kafka_bootstrap, src, lambda m: len(m) >= n)
    inputs = {(m.partition, m.offset): m.value for m in produced}
    verdicts = read_all(kafka_bootstrap, out, lambda m: len(m) >= n - malformed)
    assert len(verdicts) == n - malformed == snap.decided
    by_label: dict[str, list[bool]] = {}
    for m in verdicts:
        doc = json.loads(m.value)
        validate_decision(doc)
        result = doc["result"]
        value = inputs[(doc["source"]["partition"], doc["source"]["offset"])]
        assert result["machine_id"] == json.loads(value)["machine_id"] == m.key.decode()
        assert result["anomaly"] == (result["anomaly_score"] >= result["threshold"])
        headers = dict(m.headers or [])
        assert headers == ({"anomaly": result["suspect"].encode()} if result["anomaly"] else {})
        by_label.setdefault(label_of[value], []).append(result["anomaly"])
    healthy = by_label["normal"]
    assert len(healthy) > 300 and sum(healthy) <= 0.015 * len(healthy)  # false alarms
    faults = [a for label in FAULTS for a in by_label.get(label, [])]
    assert len(faults) >= 20 and sum(faults) >= 0.85 * len(faults)
    letters = read_all(kafka_bootstrap, f"{src}.dlq", lambda m: len(m) >= malformed)
    assert len(letters) == malformed
    reasons = {dict(m.headers)["error-reason"].decode() for m in letters}
    assert reasons <= {"bad_json", "missing_field", "bad_field"} and len(reasons) == 3
    assert sum(snap.dead_lettered.values()) == malformed
