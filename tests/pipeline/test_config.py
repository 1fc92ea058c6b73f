"""Config: defaults, derived values, and every problem reported with key, value and allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from pipeline.config import load_config
from streamfer.errors import ConfigError

MODELS = ("fraud", "sensor", "camera")


def write(tmp_path: Path, doc: dict) -> Path:
    (tmp_path / "fraud.onnx").write_bytes(b"onnx")
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def base(**stream: object) -> dict:
    s = {
        "name": "payments",
        "kind": "transaction",
        "input_topic": "payments.tx",
        "output_topic": "payments.decisions",
        "model": "fraud",
    }
    s.update(stream)
    return {"models": {"fraud": {"path": "fraud.onnx"}}, "streams": [s]}


def problems_of(tmp_path: Path, doc: dict) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, doc))
    return str(info.value)


def test_minimal_config_gets_documented_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, base()))
    s = cfg.streams[0]
    assert s.resolved_dlq_topic == "payments.tx.dlq"
    assert s.delivery == "at_least_once" and s.mode == "realtime"
    assert not s.drops_stale
    assert cfg.models["fraud"].path == tmp_path / "fraud.onnx"  # relative to the file
    with pytest.raises(ValidationError):  # frozen
        s.mode = "replay"  # type: ignore[misc]


def test_camera_drops_stale_by_default_but_not_in_replay(tmp_path: Path) -> None:
    cam = base(kind="camera", deadline_ms=100)
    assert load_config(write(tmp_path, cam)).streams[0].drops_stale
    replay = base(kind="camera", deadline_ms=100, mode="replay")
    assert not load_config(write(tmp_path, replay)).streams[0].drops_stale


def test_every_problem_is_listed_with_file_key_value_and_allowed(tmp_path: Path) -> None:
    doc = base(kind="video", batching={"max_batch": 0})
    doc["models"]["fraud"]["precision"] = "fp8"
    doc["kafka"] = {"colour": "red"}
    doc["streams"].append(
        {
            "name": "payments",
            "kind": "transaction",
            "input_topic": "other",
            "output_topic": "o",
            "model": "nope",
            "drop_stale": True,
            "deadline_ms": 5,
        }
    )
    text = problems_of(tmp_path, doc)
    path = str(tmp_path / "pipeline.yaml")
    lines = text.splitlines()
    assert lines[0].startswith(f"{path} | 7 problems")
    expected = [
        "kafka.colour | unknown key (got 'colour'). Note: allowed: bootstrap_servers",
        "models.fraud.precision | Input should be 'fp32', 'fp16' or 'int8' (got 'fp8')."
        " Note: allowed: fp32, fp16, int8",
        "streams[0].kind | Input should be 'camera', 'sensor' or 'transaction' (got 'video')",
        "streams[0].batching.max_batch | Input should be greater than or equal to 1 (got 0)."
        " Note: allowed: >= 1",
        "streams[1].model | unknown model (got 'nope'). Note: allowed: fraud",
        "streams[1].name | duplicate of streams[0].name (got 'payments')",
        "streams[1].drop_stale | transactions are never dropped (got True)",
    ]
    for want in expected:
        assert any(want in line and line.strip().startswith(path) for line in lines), want


def test_cross_field_rules(tmp_path: Path) -> None:
    doc = base(latest_per_key=True, fraud={"review": 0.95, "decline": 0.9}, detection={"iou": 0.5})
    doc["models"]["fraud"]["max_batch"] = 8
    doc["streams"][0]["batching"] = {"max_batch": 16}
    text = problems_of(tmp_path, doc)
    assert "streams[0].latest_per_key | transactions are never superseded" in text
    assert "streams[0].fraud.review | review threshold above decline threshold (got 0.95)" in text
    assert "streams[0].detection | applies to camera streams only" in text
    assert "streams[0].batching.max_batch | exceeds models.fraud.max_batch (got 16)" in text


def test_missing_model_file_and_sasl_without_credentials(tmp_path: Path) -> None:
    doc = base()
    doc["models"]["fraud"]["path"] = "missing.onnx"
    doc["kafka"] = {"security_protocol": "SASL_SSL", "sasl_password": "hunter2"}
    text = problems_of(tmp_path, doc)
    assert "models.fraud.path | file not found" in text
    assert "kafka.sasl_mechanism | required with security_protocol SASL_SSL" in text
    assert "kafka.sasl_username | SASL needs sasl_username and sasl_password" in text


def test_topics_are_created_by_default_and_the_replication_factor_is_checked(
    tmp_path: Path,
) -> None:
    kafka = load_config(write(tmp_path, base())).kafka
    assert kafka.create_topics is True and kafka.topic_replication_factor == 1
    doc = base()
    doc["kafka"] = {"create_topics": "sometimes", "topic_replication_factor": 0}
    text = problems_of(tmp_path, doc)
    assert "kafka.create_topics | Input should be a valid boolean" in text and "sometimes" in text
    assert "kafka.topic_replication_factor | Input should be greater than or equal to 1" in text
    doc["kafka"] = {"create_topics": False, "topic_replication_factor": 3}
    kafka = load_config(write(tmp_path, doc)).kafka
    assert kafka.create_topics is False and kafka.topic_replication_factor == 3


def test_secrets_are_never_printed(tmp_path: Path) -> None:
    doc = base()
    doc["kafka"] = {"sasl_password": ["not", "a", "string", "hunter2"]}
    text = problems_of(tmp_path, doc)
    assert "kafka.sasl_password" in text and "hunter2" not in text
    doc["kafka"] = {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_username": "u",
        "sasl_password": "hunter2",
    }
    cfg = load_config(write(tmp_path, doc))
    assert "hunter2" not in repr(cfg) and "hunter2" not in cfg.summary()


def test_unreadable_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(bad)
    broken = tmp_path / "broken.yaml"
    broken.write_text("models: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_example_configs_are_valid() -> None:
    root = Path(__file__).resolve().parents[2]
    paths = sorted((root / "deploy" / "configs").glob("*.yaml"))
    if not paths or not all((root / "models" / f"{m}.onnx").exists() for m in MODELS):
        pytest.skip("example configs or model files not there yet")
    for path in paths:
        cfg = load_config(path)
        assert cfg.streams, path
